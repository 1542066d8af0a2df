/* The AVX2+FMA micro-kernel family: 6 x 16 floats / 6 x 8 doubles (12 ymm accumulators, two
 * B vectors and a broadcast fill the 16 registers).  Packing is the scalar one. */
#include "gemm_impl.h"

#if GEMM_HAVE_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

enum { MR = 6 };

/* Lanes [0, w) set. */
INLINE AVX2 __m256i lanes32(int w)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE AVX2 __m256i lanes64(int w)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(w), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* One R x (NV vectors) tile; R and NV are constants after inlining, so the accumulators live
 * in registers.  The last vector's columns are masked by `last`. */
#define TILE(S, T, V, VL, LOAD, BCAST, FMA, ADD, STORE, MLOAD, MSTORE)                         \
    INLINE AVX2 void tile_##S(const int R, const int NV, int64_t kc, const T *a, const T *b,   \
                              T *c, int64_t ldc, __m256i last, bool add)                       \
    {                                                                                          \
        V acc0[MR], acc1[MR];                                                                  \
        GEMM_UNROLL for (int i = 0; i < R; i++) acc0[i] = acc1[i] = (V){0};                    \
        for (int64_t p = 0; p < kc; p++, a += R, b += NV * VL) {                               \
            V b0 = LOAD(b), b1 = NV == 2 ? LOAD(b + VL) : b0;                                  \
            GEMM_UNROLL for (int i = 0; i < R; i++) {                                          \
                V ai = BCAST(a + i);                                                           \
                acc0[i] = FMA(ai, b0, acc0[i]);                                                \
                if (NV == 2) acc1[i] = FMA(ai, b1, acc1[i]);                                   \
            }                                                                                  \
        }                                                                                      \
        GEMM_UNROLL for (int i = 0; i < R; i++) {                                              \
            T *ci = c + i * ldc;                                                               \
            if (NV == 2) {                                                                     \
                STORE(ci, add ? ADD(acc0[i], LOAD(ci)) : acc0[i]);                             \
                MSTORE(ci + VL, last, add ? ADD(acc1[i], MLOAD(ci + VL, last)) : acc1[i]);     \
            } else                                                                             \
                MSTORE(ci, last, add ? ADD(acc0[i], MLOAD(ci, last)) : acc0[i]);               \
        }                                                                                      \
    }
TILE(f32, float, __m256, 8, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_add_ps,
     _mm256_storeu_ps, _mm256_maskload_ps, _mm256_maskstore_ps)
TILE(f64, double, __m256d, 4, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
     _mm256_add_pd, _mm256_storeu_pd, _mm256_maskload_pd, _mm256_maskstore_pd)

#define CASE(S, R)                                                                             \
    case R:                                                                                    \
        if (nv == 2) tile_##S(R, 2, kc, a, b, c, ldc, last, add);                              \
        else tile_##S(R, 1, kc, a, b, c, ldc, last, add);                                      \
        return;
#define MICRO(S, T, VL, LANES)                                                                 \
    static AVX2 void micro_##S(int mr, int nr, int64_t kc, const void *av, const void *bv,     \
                               void *cv, int64_t ldc, bool add)                                \
    {                                                                                          \
        const T *a = av, *b = bv;                                                              \
        T *c = cv;                                                                             \
        int nv = nr > VL ? 2 : 1;                                                              \
        __m256i last = LANES(nr - (nv - 1) * VL);                                              \
        switch (mr) {                                                                          \
            CASE(S, 1) CASE(S, 2) CASE(S, 3) CASE(S, 4) CASE(S, 5) CASE(S, 6)                  \
        }                                                                                      \
    }
MICRO(f32, float, 8, lanes32)
MICRO(f64, double, 4, lanes64)

const gemm_kernel gemm_avx2_f32 = {"avx2", MR, 16, 8, 256, 144, 4096,
                                   gemm_pack_a_f32, gemm_pack_b_f32, micro_f32};
const gemm_kernel gemm_avx2_f64 = {"avx2", MR, 8, 4, 256, 96, 4096,
                                   gemm_pack_a_f64, gemm_pack_b_f64, micro_f64};
#endif
