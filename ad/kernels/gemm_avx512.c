/* The AVX-512 micro-kernel family: 14 x 32 floats / 14 x 16 doubles.  28 zmm accumulators,
 * two B vectors and a broadcast per k step (the broadcast feeds two FMAs).  Edges: a kernel
 * per row count 1..14 and one or two column vectors, C's last vector under a mask, so every
 * element of C is computed by the same instruction sequence wherever its tile falls.
 * Packing handles both operand orientations with in-register transposes and masked edges. */
#include "gemm_impl.h"

#if GEMM_HAVE_X86
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw")))
#define INLINE static inline __attribute__((always_inline))

enum { MR = 14 };

/* Lanes [0, w) set (none for w <= 0). */
static inline __mmask16 mask16(int64_t w)
{
    return w >= 16 ? 0xFFFF : w <= 0 ? 0 : (__mmask16)((1u << w) - 1);
}
static inline __mmask8 mask8(int64_t w) { return w >= 8 ? 0xFF : w <= 0 ? 0 : (__mmask8)((1u << w) - 1); }

/* ---- in-register transposes ---- */

/* r[i] = row i of a 16x16 block in, column i out. */
INLINE AVX512 void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* per 128-bit lane L, r[4i + j] then holds column 4L + j of rows 4i..4i+3 */
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        __m512 u = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        __m512 v = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        t[j] = _mm512_shuffle_f32x4(u, v, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(u, v, 0xDD);
        t[4 + j] = _mm512_shuffle_f32x4(u1, v1, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(u1, v1, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* The same for an 8x8 block of doubles. */
INLINE AVX512 void transpose8(__m512d r[8])
{
    __m512d t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
    }
    /* per 128-bit lane L, t[2i + j] holds column 2L + j of rows 2i, 2i+1 */
    for (int j = 0; j < 2; j++) {
        __m512d u = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88);
        __m512d u1 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xDD);
        __m512d v = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88);
        __m512d v1 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xDD);
        r[j] = _mm512_shuffle_f64x2(u, v, 0x88);
        r[4 + j] = _mm512_shuffle_f64x2(u, v, 0xDD);
        r[2 + j] = _mm512_shuffle_f64x2(u1, v1, 0x88);
        r[6 + j] = _mm512_shuffle_f64x2(u1, v1, 0xDD);
    }
}

/* ---- packing, float32 ---- */

/* Rows [0, rows) of X (stride ldx), elements [p0, p0 + w), transposed: out[q] lane r = X(r, p0 + q). */
INLINE AVX512 void load_t16(const float *X, int64_t ldx, int64_t rows, int64_t w, __m512 v[16])
{
    __mmask16 m = mask16(w);
    for (int r = 0; r < 16; r++)
        v[r] = r < rows ? _mm512_maskz_loadu_ps(m, X + r * ldx) : _mm512_setzero_ps();
    transpose16(v);
}

static AVX512 void pack_a_f32(const gemm_kernel *K, bool ta, const void *Av, int64_t lda,
                              int64_t mc, int64_t kc, void *dst)
{
    (void)K;
    const float *A = Av;
    for (int64_t r0 = 0; r0 < mc; r0 += MR) {
        int64_t mr = mc - r0 < MR ? mc - r0 : MR;
        __mmask16 m = mask16(mr);
        float *d = (float *)dst + r0 * kc;
        if (ta)
            for (int64_t p = 0; p < kc; p++)
                _mm512_mask_storeu_ps(d + p * mr, m, _mm512_maskz_loadu_ps(m, A + p * lda + r0));
        else
            for (int64_t p0 = 0; p0 < kc; p0 += 16) {
                int64_t w = kc - p0 < 16 ? kc - p0 : 16;
                __m512 v[16];
                load_t16(A + r0 * lda + p0, lda, mr, w, v);
                for (int q = 0; q < w; q++) _mm512_mask_storeu_ps(d + (p0 + q) * mr, m, v[q]);
            }
    }
}

static AVX512 void pack_b_f32(const gemm_kernel *K, bool tb, const void *Bv, int64_t ldb,
                              int64_t nc, int64_t kc, void *dst)
{
    const float *B = Bv;
    for (int64_t c0 = 0; c0 < nc; c0 += K->nr) {
        int64_t nr = nc - c0 < K->nr ? nc - c0 : K->nr, w = nr > 16 ? 32 : 16;
        float *d = (float *)dst + c0 * kc;
        if (!tb) {
            __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
            for (int64_t p = 0; p < kc; p++) {
                _mm512_storeu_ps(d + p * w, _mm512_maskz_loadu_ps(m0, B + p * ldb + c0));
                if (w == 32)
                    _mm512_storeu_ps(d + p * w + 16, _mm512_maskz_loadu_ps(m1, B + p * ldb + c0 + 16));
            }
        } else
            for (int64_t h = 0; h < w; h += 16)
                for (int64_t p0 = 0; p0 < kc; p0 += 16) {
                    int64_t wp = kc - p0 < 16 ? kc - p0 : 16;
                    __m512 v[16];
                    load_t16(B + (c0 + h) * ldb + p0, ldb, nr - h, wp, v);
                    for (int q = 0; q < wp; q++) _mm512_storeu_ps(d + (p0 + q) * w + h, v[q]);
                }
    }
}

/* ---- packing, float64 ---- */

INLINE AVX512 void load_t8(const double *X, int64_t ldx, int64_t rows, int64_t w, __m512d v[8])
{
    __mmask8 m = mask8(w);
    for (int r = 0; r < 8; r++)
        v[r] = r < rows ? _mm512_maskz_loadu_pd(m, X + r * ldx) : _mm512_setzero_pd();
    transpose8(v);
}

static AVX512 void pack_a_f64(const gemm_kernel *K, bool ta, const void *Av, int64_t lda,
                              int64_t mc, int64_t kc, void *dst)
{
    (void)K;
    const double *A = Av;
    for (int64_t r0 = 0; r0 < mc; r0 += MR) {
        int64_t mr = mc - r0 < MR ? mc - r0 : MR;
        double *d = (double *)dst + r0 * kc;
        for (int64_t h = 0; h < mr; h += 8) { /* rows h..h+7 of the panel */
            __mmask8 m = mask8(mr - h);
            if (ta)
                for (int64_t p = 0; p < kc; p++)
                    _mm512_mask_storeu_pd(d + p * mr + h, m,
                                          _mm512_maskz_loadu_pd(m, A + p * lda + r0 + h));
            else
                for (int64_t p0 = 0; p0 < kc; p0 += 8) {
                    int64_t w = kc - p0 < 8 ? kc - p0 : 8;
                    __m512d v[8];
                    load_t8(A + (r0 + h) * lda + p0, lda, mr - h, w, v);
                    for (int q = 0; q < w; q++) _mm512_mask_storeu_pd(d + (p0 + q) * mr + h, m, v[q]);
                }
        }
    }
}

static AVX512 void pack_b_f64(const gemm_kernel *K, bool tb, const void *Bv, int64_t ldb,
                              int64_t nc, int64_t kc, void *dst)
{
    const double *B = Bv;
    for (int64_t c0 = 0; c0 < nc; c0 += K->nr) {
        int64_t nr = nc - c0 < K->nr ? nc - c0 : K->nr, w = nr > 8 ? 16 : 8;
        double *d = (double *)dst + c0 * kc;
        if (!tb) {
            __mmask8 m0 = mask8(nr), m1 = mask8(nr - 8);
            for (int64_t p = 0; p < kc; p++) {
                _mm512_storeu_pd(d + p * w, _mm512_maskz_loadu_pd(m0, B + p * ldb + c0));
                if (w == 16)
                    _mm512_storeu_pd(d + p * w + 8, _mm512_maskz_loadu_pd(m1, B + p * ldb + c0 + 8));
            }
        } else
            for (int64_t h = 0; h < w; h += 8)
                for (int64_t p0 = 0; p0 < kc; p0 += 8) {
                    int64_t wp = kc - p0 < 8 ? kc - p0 : 8;
                    __m512d v[8];
                    load_t8(B + (c0 + h) * ldb + p0, ldb, nr - h, wp, v);
                    for (int q = 0; q < wp; q++) _mm512_storeu_pd(d + (p0 + q) * w + h, v[q]);
                }
    }
}

/* ---- micro-kernels ---- */

/* One R x (NV vectors) tile; R and NV are constants after inlining, so the 2R accumulators
 * are registers.  C's rows are prefetched while the k loop runs. */
#define TILE(S, T, V, VL, M, ZERO, LOAD, BCAST, FMA, ADD, MLOAD, MSTORE)                       \
    INLINE AVX512 void tile_##S(const int R, const int NV, int64_t kc, const T *a, const T *b, \
                                T *c, int64_t ldc, M last, bool add)                           \
    {                                                                                          \
        V acc0[MR], acc1[MR];                                                                  \
        GEMM_UNROLL for (int i = 0; i < R; i++) {                                              \
            acc0[i] = acc1[i] = ZERO();                                                        \
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                            \
            _mm_prefetch((const char *)(c + i * ldc + NV * VL - 1), _MM_HINT_T0);              \
        }                                                                                      \
        GEMM_UNROLL4 for (int64_t p = 0; p < kc; p++) {                             \
            V b0 = LOAD(b), b1 = NV == 2 ? LOAD(b + VL) : b0;                                  \
            GEMM_UNROLL for (int i = 0; i < R; i++) {                                          \
                V ai = BCAST(a[i]);                                                            \
                acc0[i] = FMA(ai, b0, acc0[i]);                                                \
                if (NV == 2) acc1[i] = FMA(ai, b1, acc1[i]);                                   \
            }                                                                                  \
            a += R;                                                                            \
            b += NV * VL;                                                                      \
        }                                                                                      \
        M full = (M)-1, m0 = NV == 2 ? full : last;                                            \
        GEMM_UNROLL for (int i = 0; i < R; i++) {                                              \
            T *ci = c + i * ldc;                                                               \
            MSTORE(ci, m0, add ? ADD(acc0[i], MLOAD(m0, ci)) : acc0[i]);                       \
            if (NV == 2) MSTORE(ci + VL, last, add ? ADD(acc1[i], MLOAD(last, ci + VL)) : acc1[i]); \
        }                                                                                      \
    }
TILE(f32, float, __m512, 16, __mmask16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps,
     _mm512_fmadd_ps, _mm512_add_ps, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps)
TILE(f64, double, __m512d, 8, __mmask8, _mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd,
     _mm512_fmadd_pd, _mm512_add_pd, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd)

#define CASE(S, R)                                                                             \
    case R:                                                                                    \
        if (nv == 2) tile_##S(R, 2, kc, a, b, c, ldc, last, add);                              \
        else tile_##S(R, 1, kc, a, b, c, ldc, last, add);                                      \
        return;
#define MICRO(S, T, VL, M, MASK)                                                                  \
    static AVX512 void micro_##S(int mr, int nr, int64_t kc, const void *av, const void *bv,   \
                                 void *cv, int64_t ldc, bool add)                              \
    {                                                                                          \
        const T *a = av, *b = bv;                                                              \
        T *c = cv;                                                                             \
        int nv = nr > VL ? 2 : 1;                                                              \
        M last = MASK(nr - (nv - 1) * VL);                                   \
        switch (mr) {                                                                          \
            CASE(S, 1) CASE(S, 2) CASE(S, 3) CASE(S, 4) CASE(S, 5) CASE(S, 6) CASE(S, 7)       \
            CASE(S, 8) CASE(S, 9) CASE(S, 10) CASE(S, 11) CASE(S, 12) CASE(S, 13) CASE(S, 14)  \
        }                                                                                      \
    }
MICRO(f32, float, 16, __mmask16, mask16)
MICRO(f64, double, 8, __mmask8, mask8)

const gemm_kernel gemm_avx512_f32 = {"avx512", MR, 32, 16, 256, 196, 4096,
                                     pack_a_f32, pack_b_f32, micro_f32};
const gemm_kernel gemm_avx512_f64 = {"avx512", MR, 16, 8, 256, 196, 4096,
                                     pack_a_f64, pack_b_f64, micro_f64};
#endif
