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

/* One R x (NV vectors) tile; R, NV and AROWS are constants after inlining, so the
 * accumulators live in registers.  Operand addressing as gemm_micro_fn; B's and C's last
 * vector are masked by `last`. */
#define TILE(S, T, V, VL, LOAD, BCAST, FMA, ADD, STORE, MLOAD, MSTORE)                         \
    INLINE AVX2 void tile_##S(const int R, const int NV, const bool AROWS, int64_t kc,         \
                              const T *a, int64_t as, const T *b, int64_t bs, T *c,            \
                              int64_t ldc, __m256i last, bool add)                             \
    {                                                                                          \
        V acc0[MR], acc1[MR];                                                                  \
        GEMM_UNROLL for (int i = 0; i < R; i++) acc0[i] = acc1[i] = (V){0};                    \
        const int64_t astep = AROWS ? 1 : as;                                                  \
        for (int64_t p = 0; p < kc; p++, a += astep, b += bs) {                                \
            V b0 = NV == 2 ? LOAD(b) : MLOAD(b, last);                                         \
            V b1 = NV == 2 ? MLOAD(b + VL, last) : b0;                                         \
            GEMM_UNROLL for (int i = 0; i < R; i++) {                                          \
                V ai = BCAST(AROWS ? a + i * as : a + i);                                      \
                acc0[i] = FMA(ai, b0, acc0[i]);                                                \
                if (NV == 2) acc1[i] = FMA(ai, b1, acc1[i]);                                   \
            }                                                                                  \
        }                                                                                      \
        GEMM_UNROLL for (int i = 0; i < R; i++, c += ldc) {                                    \
            if (NV == 2) {                                                                     \
                STORE(c, add ? ADD(acc0[i], LOAD(c)) : acc0[i]);                               \
                MSTORE(c + VL, last, add ? ADD(acc1[i], MLOAD(c + VL, last)) : acc1[i]);       \
            } else                                                                             \
                MSTORE(c, last, add ? ADD(acc0[i], MLOAD(c, last)) : acc0[i]);                 \
        }                                                                                      \
    }
TILE(f32, float, __m256, 8, _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_add_ps,
     _mm256_storeu_ps, _mm256_maskload_ps, _mm256_maskstore_ps)
TILE(f64, double, __m256d, 4, _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd,
     _mm256_add_pd, _mm256_storeu_pd, _mm256_maskload_pd, _mm256_maskstore_pd)

/* One function per tile shape, called through a table (as the AVX-512 family does). */
#define FOR_ROWS(F, ...)                                                                       \
    F(1, __VA_ARGS__) F(2, __VA_ARGS__) F(3, __VA_ARGS__) F(4, __VA_ARGS__) F(5, __VA_ARGS__)  \
    F(6, __VA_ARGS__)
#define TILE_FN(R, S, T, NV, AR)                                                               \
    static AVX2 void tile_##S##_##R##_##NV##_##AR(int64_t kc, const T *a, int64_t as,          \
                                                  const T *b, int64_t bs, T *c, int64_t ldc,   \
                                                  __m256i last, bool add)                      \
    {                                                                                          \
        tile_##S(R, NV, AR, kc, a, as, b, bs, c, ldc, last, add);                              \
    }
#define TILE_REF(R, S, NV, AR) tile_##S##_##R##_##NV##_##AR,
#define TILES(S, T, VL, LANES)                                                                 \
    FOR_ROWS(TILE_FN, S, T, 1, 0) FOR_ROWS(TILE_FN, S, T, 2, 0)                                \
    FOR_ROWS(TILE_FN, S, T, 1, 1) FOR_ROWS(TILE_FN, S, T, 2, 1)                                \
    typedef void (*tile_##S##_fn)(int64_t, const T *, int64_t, const T *, int64_t, T *, int64_t, \
                                  __m256i, bool);                                              \
    static const tile_##S##_fn tiles_##S[2][2][MR] = {                                         \
        {{FOR_ROWS(TILE_REF, S, 1, 0)}, {FOR_ROWS(TILE_REF, S, 2, 0)}},                        \
        {{FOR_ROWS(TILE_REF, S, 1, 1)}, {FOR_ROWS(TILE_REF, S, 2, 1)}}};                       \
    INLINE AVX2 void micro_##S(int mr, int nr, int64_t kc, const T *a, int64_t as, bool arows, \
                               const T *b, int64_t bs, T *c, int64_t ldc, bool add)            \
    {                                                                                          \
        int nv = nr > VL ? 2 : 1;                                                              \
        tiles_##S[arows][nv - 1][mr - 1](kc, a, as, b, bs, c, ldc, LANES(nr - (nv - 1) * VL),  \
                                         add);                                                 \
    }
TILES(f32, float, 8, lanes32)
TILES(f64, double, 4, lanes64)
GEMM_DEFINE_MACRO(macro_f32, AVX2, float, micro_f32, MR, 16, 8)
GEMM_DEFINE_MACRO(macro_f64, AVX2, double, micro_f64, MR, 8, 4)

const gemm_kernel gemm_avx2_f32 = {"avx2", MR, 16, 8, 256, 144, 4096,
                                   gemm_pack_a_f32, gemm_pack_b_f32, macro_f32};
const gemm_kernel gemm_avx2_f64 = {"avx2", MR, 8, 4, 256, 96, 4096,
                                   gemm_pack_a_f64, gemm_pack_b_f64, macro_f64};
#endif
