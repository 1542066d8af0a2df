/* The AVX-512 micro-kernel family: 14 x 32 floats / 14 x 16 doubles.  28 zmm accumulators,
 * two B vectors and a broadcast per k step (the broadcast feeds two FMAs).  Edges: a kernel
 * per row count 1..14 and one or two column vectors, B's and C's last vector under a mask, so
 * every element of C is computed by the same instruction sequence wherever its tile falls.
 * Packing handles both operand orientations with in-register transposes (16x16 floats, 8x8
 * doubles) and masked edges; the tiles also read A and B in place when the driver skips
 * packing (row-major A through five address registers, see arow).  For C = A B^T with at most
 * 8 rows, skinny_* skip packing B^T and transpose B's blocks in registers as they go. */
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
INLINE AVX512 void transpose16_from(__m512 t[16], __m512 r[16]);
INLINE AVX512 void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    transpose16_from(t, r);
}

/* 16 whole rows of X (stride ldx) transposed into r, each pair unpacked as soon as it is loaded
 * (loading all sixteen first made GCC spill them). */
INLINE AVX512 void load_t16_full(const float *X, int64_t ldx, __m512 r[16])
{
    __m512 t[16];
    const float *x4 = X + 4 * ldx, *x8 = X + 8 * ldx, *x12 = X + 12 * ldx;
    const float *base[4] = {X, x4, x8, x12};
    for (int i = 0; i < 16; i += 2) {
        const float *x = base[i / 4] + (i % 4) * ldx;
        __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + ldx);
        t[i] = _mm512_unpacklo_ps(a, b);
        t[i + 1] = _mm512_unpackhi_ps(a, b);
    }
    transpose16_from(t, r);
}

/* The rest of transpose16, from the unpacked pairs t (clobbered). */
INLINE AVX512 void transpose16_from(__m512 t[16], __m512 r[16])
{
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

INLINE AVX512 void load_t8_full(const double *X, int64_t ldx, __m512d r[8])
{
    for (int i = 0; i < 8; i++) r[i] = _mm512_loadu_pd(X + i * ldx);
    transpose8(r);
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

/* Row i of an unpacked row-major A, as x86 addressing (base + index*{1,2,4,8}) reaches it from
 * bases rows 0, 5, 10 and byte strides lb, 3 lb: five registers instead of fourteen. */
INLINE const char *arow(int i, const char *a0, const char *a5, const char *a10, int64_t lb,
                        int64_t lb3)
{
    switch (i) {
    case 0: return a0;
    case 1: return a0 + lb;
    case 2: return a0 + 2 * lb;
    case 3: return a0 + lb3;
    case 4: return a0 + 4 * lb;
    case 5: return a5;
    case 6: return a5 + lb;
    case 7: return a5 + 2 * lb;
    case 8: return a0 + 8 * lb;
    case 9: return a5 + 4 * lb;
    case 10: return a10;
    case 11: return a10 + lb;
    case 12: return a10 + 2 * lb;
    default: return a10 + lb3;
    }
}

/* One R x (NV vectors) tile; R, NV and AROWS are constants after inlining, so the 2R
 * accumulators are registers.  A(i, p) is a[i + p*as] (packed, or rows of op(A) contiguous)
 * or, with AROWS, a[i*as + p] (op(A) = A row-major, unpacked); B(p, j) is b[p*bs + j].  B's
 * last vector and C's are masked by `last`.  C's rows are prefetched during long k loops. */
#define TILE(S, T, V, VL, M, ZERO, LOAD, BCAST, FMA, ADD, MLOAD, MSTORE)                       \
    INLINE AVX512 void tile_##S(const int R, const int NV, const bool AROWS, int64_t kc,       \
                                const T *a, int64_t as, const T *b, int64_t bs, T *c,          \
                                int64_t ldc, M last, bool add)                                 \
    {                                                                                          \
        V acc0[MR], acc1[MR];                                                                  \
        GEMM_UNROLL for (int i = 0; i < R; i++) acc0[i] = acc1[i] = ZERO();                    \
        if (kc >= 64)                                                                          \
            GEMM_UNROLL for (int i = 0; i < R; i++) {                                          \
                _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                        \
                _mm_prefetch((const char *)(c + i * ldc + NV * VL - 1), _MM_HINT_T0);          \
            }                                                                                  \
        /* unpacked rows: three moving bases and two strides reach all 14 rows (arow) */     \
        const int64_t astep = AROWS ? 1 : as, lb = as * (int64_t)sizeof(T), lb3 = 3 * lb;      \
        const char *a5 = (const char *)a + (R > 5 ? 5 * lb : 0);                               \
        const char *a10 = (const char *)a + (R > 10 ? 10 * lb : 0);                           \
        for (int64_t p = 0; p < kc; p++) {                                                     \
            V b0 = NV == 2 ? LOAD(b) : MLOAD(last, b);                                         \
            V b1 = NV == 2 ? MLOAD(last, b + VL) : b0;                                         \
            GEMM_UNROLL for (int i = 0; i < R; i++) {                                          \
                V ai = BCAST(AROWS ? *(const T *)arow(i, (const char *)a, a5, a10, lb, lb3)    \
                                   : a[i]);                                                    \
                acc0[i] = FMA(ai, b0, acc0[i]);                                                \
                if (NV == 2) acc1[i] = FMA(ai, b1, acc1[i]);                                   \
            }                                                                                  \
            a += astep;                                                                        \
            if (AROWS) a5 += sizeof(T), a10 += sizeof(T);                                      \
            b += bs;                                                                           \
        }                                                                                      \
        M m0 = NV == 2 ? (M)-1 : last;                                                         \
        GEMM_UNROLL for (int i = 0; i < R; i++, c += ldc) {                                    \
            MSTORE(c, m0, add ? ADD(acc0[i], MLOAD(m0, c)) : acc0[i]);                         \
            if (NV == 2)                                                                       \
                MSTORE(c + VL, last, add ? ADD(acc1[i], MLOAD(last, c + VL)) : acc1[i]);       \
        }                                                                                      \
    }
TILE(f32, float, __m512, 16, __mmask16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps,
     _mm512_fmadd_ps, _mm512_add_ps, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps)
TILE(f64, double, __m512d, 8, __mmask8, _mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd,
     _mm512_fmadd_pd, _mm512_add_pd, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd)

#define CALL(S, R, NV, AROWS) tile_##S(R, NV, AROWS, kc, a, as, b, bs, c, ldc, last, add)
/* One function per tile shape (rows 1..14 x one or two vectors x A packed or row-major),
 * called through a table: small functions keep compile times sane; a call per tile is noise. */
#define FOR_ROWS(F, ...)                                                                       \
    F(1, __VA_ARGS__) F(2, __VA_ARGS__) F(3, __VA_ARGS__) F(4, __VA_ARGS__) F(5, __VA_ARGS__)  \
    F(6, __VA_ARGS__) F(7, __VA_ARGS__) F(8, __VA_ARGS__) F(9, __VA_ARGS__) F(10, __VA_ARGS__) \
    F(11, __VA_ARGS__) F(12, __VA_ARGS__) F(13, __VA_ARGS__) F(14, __VA_ARGS__)
#define TILE_FN(R, S, T, M, NV, AR)                                                            \
    static AVX512 void tile_##S##_##R##_##NV##_##AR(int64_t kc, const T *a, int64_t as,        \
                                                    const T *b, int64_t bs, T *c, int64_t ldc, \
                                                    M last, bool add)                          \
    {                                                                                          \
        tile_##S(R, NV, AR, kc, a, as, b, bs, c, ldc, last, add);                              \
    }
#define TILE_REF(R, S, NV, AR) tile_##S##_##R##_##NV##_##AR,
#define TILES(S, T, M, VL, MASK)                                                               \
    FOR_ROWS(TILE_FN, S, T, M, 1, 0) FOR_ROWS(TILE_FN, S, T, M, 2, 0)                          \
    FOR_ROWS(TILE_FN, S, T, M, 1, 1) FOR_ROWS(TILE_FN, S, T, M, 2, 1)                          \
    typedef void (*tile_##S##_fn)(int64_t, const T *, int64_t, const T *, int64_t, T *, int64_t, \
                                  M, bool);                                                    \
    static const tile_##S##_fn tiles_##S[2][2][MR] = {                                         \
        {{FOR_ROWS(TILE_REF, S, 1, 0)}, {FOR_ROWS(TILE_REF, S, 2, 0)}},                        \
        {{FOR_ROWS(TILE_REF, S, 1, 1)}, {FOR_ROWS(TILE_REF, S, 2, 1)}}};                       \
    INLINE AVX512 void micro_##S(int mr, int nr, int64_t kc, const T *a, int64_t as,           \
                                 bool arows, const T *b, int64_t bs, T *c, int64_t ldc,        \
                                 bool add)                                                     \
    {                                                                                          \
        int nv = nr > VL ? 2 : 1;                                                              \
        tiles_##S[arows][nv - 1][mr - 1](kc, a, as, b, bs, c, ldc, MASK(nr - (nv - 1) * VL),   \
                                         add);                                                 \
    }
TILES(f32, float, __mmask16, 16, mask16)
TILES(f64, double, __mmask8, 8, mask8)
GEMM_DEFINE_MACRO(macro_f32, AVX512, float, micro_f32, MR, 32, 16)
GEMM_DEFINE_MACRO(macro_f64, AVX512, double, micro_f64, MR, 16, 8)

/* ---- a few rows times B^T, B read in place ----
 *
 * C[R, n] (+)= A[R, k] B[n, k]^T for R <= SKINNY_M: packing op(B) = B^T would copy all of B
 * to use it for R rows, so each VL x VL block of B (VL columns of C, VL k's) is transposed in
 * registers instead, vector q then holding B[j0.., p0+q], and feeds full-width FMAs with A's
 * elements broadcast.  Per element this is the packed tiles' arithmetic exactly: K blocks of
 * kcb, acc = 0 then acc = fma(a, b, acc) over the block in order, then C = acc or
 * C = acc + C, so the bits match the other paths. */
#define SKINNY_FMAS(Q, T, FMA, BCAST)                                                                      \
    GEMM_UNROLL for (int i = 0; i < R; i++)                                                    \
        acc[i] = FMA(BCAST(((const T *)arow(i, a0, a5, a5, lb, lb3))[Q]), v[Q], acc[i]);
#define SKINNY(S, T, V, VL, M, MASK, LOADT, LOADFULL, ZERO, BCAST, FMA, ADD, MLOAD, MSTORE) \
    INLINE AVX512 void skinny_##S(const int R, int64_t n, int64_t k, int64_t kcb, const T *a,   \
                                  int64_t lda, const T *b, int64_t ldb, T *c, int64_t ldc,      \
                                  bool add)                                                     \
    {                                                                                           \
        const int64_t lb = lda * (int64_t)sizeof(T), lb3 = 3 * lb;                              \
        for (int64_t j0 = 0; j0 < n; j0 += VL) {                                                \
            int64_t nr = n - j0 < VL ? n - j0 : VL;                                             \
            M last = MASK(nr);                                                                  \
            const T *bj = b + j0 * ldb;                                                         \
            for (int64_t pc = 0; pc < k; pc += kcb) {                                           \
                int64_t kc = k - pc < kcb ? k - pc : kcb;                                       \
                V acc[SKINNY_M];                                                                \
                GEMM_UNROLL for (int i = 0; i < R; i++) acc[i] = ZERO();                        \
                const char *a0 = (const char *)(a + pc), *a5 = a0 + (R > 5 ? 5 * lb : 0);       \
                int64_t p0 = 0;                                                                 \
                if (nr == VL) /* whole blocks without masks (masks made GCC spill) */           \
                    for (; p0 + VL <= kc; p0 += VL) {                                           \
                        V v[VL];                                                                \
                        LOADFULL(bj + pc + p0, ldb, v);                                         \
                        GEMM_UNROLL for (int q = 0; q < VL; q++) { SKINNY_FMAS(q, T, FMA, BCAST) }             \
                        a0 += VL * sizeof(T), a5 += VL * sizeof(T);                             \
                    }                                                                           \
                for (; p0 < kc; p0 += VL) {                                                     \
                    int64_t w = kc - p0 < VL ? kc - p0 : VL;                                    \
                    V v[VL];                                                                    \
                    LOADT(bj + pc + p0, ldb, nr, w, v);                                         \
                    for (int q = 0; q < w; q++) { SKINNY_FMAS(q, T, FMA, BCAST) }                              \
                    a0 += VL * sizeof(T), a5 += VL * sizeof(T);                                 \
                }                                                                               \
                bool addc = add || pc > 0;                                                      \
                T *cj = c + j0;                                                                 \
                GEMM_UNROLL for (int i = 0; i < R; i++, cj += ldc)                              \
                    MSTORE(cj, last, addc ? ADD(acc[i], MLOAD(last, cj)) : acc[i]);             \
            }                                                                                   \
        }                                                                                       \
    }
SKINNY(f32, float, __m512, 16, __mmask16, mask16, load_t16, load_t16_full, _mm512_setzero_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_maskz_loadu_ps,
       _mm512_mask_storeu_ps)
SKINNY(f64, double, __m512d, 8, __mmask8, mask8, load_t8, load_t8_full, _mm512_setzero_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_maskz_loadu_pd,
       _mm512_mask_storeu_pd)

/* One function per row count, as for the tiles. */
#define FOR_SKINNY_ROWS(F, ...)                                                                \
    F(1, __VA_ARGS__) F(2, __VA_ARGS__) F(3, __VA_ARGS__) F(4, __VA_ARGS__) F(5, __VA_ARGS__)  \
    F(6, __VA_ARGS__) F(7, __VA_ARGS__) F(8, __VA_ARGS__)
#define SKINNY_FN(R, S, T)                                                                     \
    static AVX512 void skinny_##S##_##R(int64_t n, int64_t k, int64_t kcb, const T *a,         \
                                        int64_t lda, const T *b, int64_t ldb, T *c,            \
                                        int64_t ldc, bool add)                                 \
    {                                                                                          \
        skinny_##S(R, n, k, kcb, a, lda, b, ldb, c, ldc, add);                                 \
    }
#define SKINNY_REF(R, S, T) skinny_##S##_##R,
#define SKINNY_ENTRY(S, T)                                                                     \
    FOR_SKINNY_ROWS(SKINNY_FN, S, T)                                                           \
    void gemm_avx512_skinny_##S(int64_t m, int64_t n, int64_t k, int64_t kcb, const void *a,   \
                                int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc, \
                                bool add)                                                      \
    {                                                                                          \
        static void (*const fns[SKINNY_M])(int64_t, int64_t, int64_t, const T *, int64_t,      \
                                           const T *, int64_t, T *, int64_t, bool) = {         \
            FOR_SKINNY_ROWS(SKINNY_REF, S, T)};                                                \
        fns[m - 1](n, k, kcb, a, lda, b, ldb, c, ldc, add);                                    \
    }
SKINNY_ENTRY(f32, float)
SKINNY_ENTRY(f64, double)

const gemm_kernel gemm_avx512_f32 = {"avx512", MR, 32, 16, 256, 196, 4096,
                                     pack_a_f32, pack_b_f32, macro_f32};
const gemm_kernel gemm_avx512_f64 = {"avx512", MR, 16, 8, 256, 196, 4096,
                                     pack_a_f64, pack_b_f64, macro_f64};
#endif
