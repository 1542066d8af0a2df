/* The plain-C micro-kernel family (any CPU), and the scalar packers any family may use. */
#include "gemm_impl.h"

/* ---- scalar packers: the layouts of gemm_impl.h for any MR, NR, VL ---- */

#define PACKERS(T, S)                                                                        \
    void gemm_pack_a_##S(const gemm_kernel *K, bool ta, const void *Av, int64_t lda,         \
                         int64_t mc, int64_t kc, void *dst)                                  \
    {                                                                                        \
        const T *A = Av;                                                                     \
        for (int64_t r0 = 0; r0 < mc; r0 += K->mr) {                                         \
            int64_t mr = mc - r0 < K->mr ? mc - r0 : K->mr;                                  \
            T *d = (T *)dst + r0 * kc;                                                       \
            if (ta) /* rows of op(A) are contiguous: copy mr elements per p */                \
                for (int64_t p = 0; p < kc; p++)                                             \
                    for (int64_t r = 0; r < mr; r++) d[p * mr + r] = A[p * lda + r0 + r];    \
            else /* read each row contiguously, write it strided */                          \
                for (int64_t r = 0; r < mr; r++)                                             \
                    for (int64_t p = 0; p < kc; p++) d[p * mr + r] = A[(r0 + r) * lda + p];  \
        }                                                                                    \
    }                                                                                        \
    void gemm_pack_b_##S(const gemm_kernel *K, bool tb, const void *Bv, int64_t ldb,         \
                         int64_t nc, int64_t kc, void *dst)                                  \
    {                                                                                        \
        const T *B = Bv;                                                                     \
        for (int64_t c0 = 0; c0 < nc; c0 += K->nr) {                                         \
            int64_t nr = nc - c0 < K->nr ? nc - c0 : K->nr;                                  \
            int64_t w = (nr + K->vl - 1) / K->vl * K->vl;                                    \
            T *d = (T *)dst + c0 * kc;                                                       \
            if (!tb)                                                                         \
                for (int64_t p = 0; p < kc; p++)                                             \
                    for (int64_t c = 0; c < nr; c++) d[p * w + c] = B[p * ldb + c0 + c];     \
            else                                                                             \
                for (int64_t c = 0; c < nr; c++)                                             \
                    for (int64_t p = 0; p < kc; p++) d[p * w + c] = B[(c0 + c) * ldb + p];   \
            if (w > nr)                                                                      \
                for (int64_t p = 0; p < kc; p++)                                             \
                    for (int64_t c = nr; c < w; c++) d[p * w + c] = 0;                       \
        }                                                                                    \
    }
PACKERS(float, f32)
PACKERS(double, f64)

/* ---- the portable micro-kernel: an R x NR block of accumulators, R a constant in each
 * specialisation, so the compiler keeps them in (vector) registers.  Each element is one sum
 * over p in order, so the tile's position (and hence the thread count) never changes a
 * result. ---- */

enum { P_MR = 4, P_NR = 8 };

/* Columns [0, W) of one k step (W = P_NR for a full tile, so the loop vectorises). */
#define STEP(T, W)                                                                           \
    for (int i = 0; i < R; i++) {                                                            \
        T ai = AROWS ? a[i * as] : a[i];                                                     \
        for (int j = 0; j < (W); j++) acc[i][j] += ai * b[j];                                \
    }
#define TILE(T, S)                                                                           \
    static inline void tile_##S(const int R, const bool AROWS, int nr, int64_t kc,           \
                                const T *a, int64_t as, const T *b, int64_t bs, T *c,        \
                                int64_t ldc, bool add)                                       \
    {                                                                                        \
        T acc[P_MR][P_NR] = {{0}};                                                           \
        const int64_t astep = AROWS ? 1 : as;                                                \
        if (nr == P_NR)                                                                      \
            for (int64_t p = 0; p < kc; p++, a += astep, b += bs) { STEP(T, P_NR) }          \
        else                                                                                 \
            for (int64_t p = 0; p < kc; p++, a += astep, b += bs) { STEP(T, nr) }            \
        for (int i = 0; i < R; i++)                                                          \
            for (int j = 0; j < nr; j++)                                                     \
                c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];               \
    }                                                                                        \
    static void micro_##S##_1(int nr, int64_t kc, const T *a, int64_t as, const T *b,        \
                              int64_t bs, T *c, int64_t ldc, bool add)                       \
    {                                                                                        \
        tile_##S(1, false, nr, kc, a, as, b, bs, c, ldc, add);                               \
    }                                                                                        \
    static void micro_##S##_2(int nr, int64_t kc, const T *a, int64_t as, const T *b,        \
                              int64_t bs, T *c, int64_t ldc, bool add)                       \
    {                                                                                        \
        tile_##S(2, false, nr, kc, a, as, b, bs, c, ldc, add);                               \
    }                                                                                        \
    static void micro_##S##_3(int nr, int64_t kc, const T *a, int64_t as, const T *b,        \
                              int64_t bs, T *c, int64_t ldc, bool add)                       \
    {                                                                                        \
        tile_##S(3, false, nr, kc, a, as, b, bs, c, ldc, add);                               \
    }                                                                                        \
    static void micro_##S##_4(int nr, int64_t kc, const T *a, int64_t as, const T *b,        \
                              int64_t bs, T *c, int64_t ldc, bool add)                       \
    {                                                                                        \
        tile_##S(4, false, nr, kc, a, as, b, bs, c, ldc, add);                               \
    }                                                                                        \
    static void micro_##S##_rows(int mr, int nr, int64_t kc, const T *a, int64_t as,         \
                                 const T *b, int64_t bs, T *c, int64_t ldc, bool add)        \
    { /* row-major A read in place: one row at a time */                                     \
        for (int i = 0; i < mr; i++)                                                         \
            tile_##S(1, true, nr, kc, a + i * as, as, b, bs, c + i * ldc, ldc, add);         \
    }                                                                                        \
    static inline void micro_##S(int mr, int nr, int64_t kc, const T *a, int64_t as,        \
                                 bool arows, const T *b, int64_t bs, T *c, int64_t ldc,      \
                                 bool add)                                                   \
    {                                                                                        \
        static void (*const tiles[P_MR])(int, int64_t, const T *, int64_t, const T *,        \
                                         int64_t, T *, int64_t, bool) = {                    \
            micro_##S##_1, micro_##S##_2, micro_##S##_3, micro_##S##_4};                     \
        if (arows) micro_##S##_rows(mr, nr, kc, a, as, b, bs, c, ldc, add);                  \
        else tiles[mr - 1](nr, kc, a, as, b, bs, c, ldc, add);                               \
    }
TILE(float, f32)
TILE(double, f64)
GEMM_DEFINE_MACRO(macro_f32, , float, micro_f32, P_MR, P_NR, P_NR)
GEMM_DEFINE_MACRO(macro_f64, , double, micro_f64, P_MR, P_NR, P_NR)

const gemm_kernel gemm_portable_f32 = {"portable", P_MR, P_NR, P_NR, 256, 128, 2048,
                                       gemm_pack_a_f32, gemm_pack_b_f32, macro_f32};
const gemm_kernel gemm_portable_f64 = {"portable", P_MR, P_NR, P_NR, 256, 128, 2048,
                                       gemm_pack_a_f64, gemm_pack_b_f64, macro_f64};
