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

/* ---- the portable micro-kernel: MR x NR accumulators in an array the compiler keeps in
 * vector registers where it can.  Each element is one sum over p in order, so the tile's
 * position (and hence the thread count) never changes a result. ---- */

enum { P_MR = 4, P_NR = 16 };

#define MICRO(T, S)                                                                          \
    static void micro_##S(int mr, int nr, int64_t kc, const void *av, const void *bv,        \
                          void *cv, int64_t ldc, bool add)                                   \
    {                                                                                        \
        const T *a = av, *b = bv;                                                            \
        T *c = cv;                                                                           \
        T acc[P_MR][P_NR] = {{0}};                                                           \
        for (int64_t p = 0; p < kc; p++, a += mr, b += P_NR)                                 \
            for (int i = 0; i < mr; i++)                                                     \
                for (int j = 0; j < P_NR; j++) acc[i][j] += a[i] * b[j];                     \
        for (int i = 0; i < mr; i++)                                                         \
            for (int j = 0; j < nr; j++)                                                     \
                c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];               \
    }
MICRO(float, f32)
MICRO(double, f64)

const gemm_kernel gemm_portable_f32 = {"portable", P_MR, P_NR, P_NR, 256, 128, 2048,
                                       gemm_pack_a_f32, gemm_pack_b_f32, micro_f32};
const gemm_kernel gemm_portable_f64 = {"portable", P_MR, P_NR, P_NR, 256, 128, 2048,
                                       gemm_pack_a_f64, gemm_pack_b_f64, micro_f64};
