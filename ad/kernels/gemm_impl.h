/* What gemm.c's blocking driver needs from a micro-kernel family; private to ad/kernels/.
 *
 * Packed layouts (elements of the kernel's dtype):
 *   A block, mc x kc of op(A): row panels of mr = min(MR, rows left) rows, the panel of rows
 *     [r0, r0+mr) at offset r0*kc, element (r, p) at panel[p*mr + r].
 *   B block, kc x nc of op(B): column panels of nr = min(NR, columns left) columns, the panel
 *     of columns [c0, c0+nr) at offset c0*kc, element (p, c) at panel[p*w + c] with w = nr
 *     rounded up to the vector length VL; columns nr..w-1 hold zeros. */
#ifndef AD_GEMM_IMPL_H
#define AD_GEMM_IMPL_H

#include "kernels.h"

typedef struct gemm_kernel gemm_kernel;

/* Packs op(X) for rows (A: rows of op(A); B: columns of op(B)) x kc, X pointing at the
 * block's first element of op(X): X(r, p) = trans ? X[p*ldx + r] : X[r*ldx + p] for A, and
 * X(p, c) = trans ? X[c*ldx + p] : X[p*ldx + c] for B. */
typedef void (*gemm_pack_fn)(const gemm_kernel *K, bool trans, const void *X, int64_t ldx,
                             int64_t rows, int64_t kc, void *dst);
/* One block for the macro-kernel: C[mc, nc] (+)= op(A) block [mc, kc] x op(B) block [kc, nc].
 * The row panel of op(A) at r0 starts at a + r0*a_step; its element (i, p) is a[i + p*as]
 * with as = mr (packed panel) or lda (op(A) = A^T read in place), or a[i*lda + p] when arows
 * (A read in place, row-major).  The column panel of op(B) at c0 starts at b + c0*b_step; its
 * element (p, j) is b[p*bs + j] with bs = nr rounded up to VL (packed) or ldb (in place).
 * Only columns [0, nr) of B are read. */
typedef struct {
    int64_t mc, nc, kc;
    const void *a;
    int64_t a_step, lda;
    bool a_packed, arows;
    const void *b;
    int64_t b_step, ldb;
    bool b_packed;
    void *c;
    int64_t ldc;
    bool add;
} gemm_block;
typedef void (*gemm_macro_fn)(const gemm_block *x);

/* The macro-kernel loop: B panels outer (one stays in L1), A panels inner; MICRO(mr, nr, kc,
 * a, as, arows, b, bs, c, ldc, add) computes one tile and is inlined here. */
#define GEMM_DEFINE_MACRO(NAME, ATTR, T, MICRO, MR_, NR_, VL_)                                 \
    static ATTR void NAME(const gemm_block *x)                                                 \
    {                                                                                          \
        const T *A = x->a, *B = x->b;                                                          \
        for (int64_t jr = 0; jr < x->nc; jr += NR_) {                                          \
            int nr = x->nc - jr < NR_ ? (int)(x->nc - jr) : NR_;                               \
            const T *b = B + jr * x->b_step;                                                   \
            int64_t bs = x->b_packed ? (nr + VL_ - 1) / VL_ * VL_ : x->ldb;                    \
            T *c = (T *)x->c + jr;                                                             \
            for (int64_t ir = 0; ir < x->mc; ir += MR_, c += MR_ * x->ldc) {                   \
                int mr = x->mc - ir < MR_ ? (int)(x->mc - ir) : MR_;                           \
                MICRO(mr, nr, x->kc, A + ir * x->a_step, x->a_packed ? mr : x->lda, x->arows,  \
                      b, bs, c, x->ldc, x->add);                                               \
            }                                                                                  \
        }                                                                                      \
    }

struct gemm_kernel {
    const char *name;
    int mr, nr, vl;     /* register tile and vector length, in elements */
    int kc, mc, nc;     /* cache blocks: kc x nr panel of B in L1, mc x kc of A in L2 */
    gemm_pack_fn pack_a, pack_b;
    gemm_macro_fn macro;
};

/* Scalar packers for any MR, NR, VL (used by the AVX2 and portable families). */
void gemm_pack_a_f32(const gemm_kernel *K, bool ta, const void *A, int64_t lda, int64_t mc,
                     int64_t kc, void *dst);
void gemm_pack_b_f32(const gemm_kernel *K, bool tb, const void *B, int64_t ldb, int64_t nc,
                     int64_t kc, void *dst);
void gemm_pack_a_f64(const gemm_kernel *K, bool ta, const void *A, int64_t lda, int64_t mc,
                     int64_t kc, void *dst);
void gemm_pack_b_f64(const gemm_kernel *K, bool tb, const void *B, int64_t ldb, int64_t nc,
                     int64_t kc, void *dst);

extern const gemm_kernel gemm_portable_f32, gemm_portable_f64;

/* The x86 families exist when the compiler can target them (GCC or clang on x86-64). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define GEMM_HAVE_X86 1
extern const gemm_kernel gemm_avx2_f32, gemm_avx2_f64, gemm_avx512_f32, gemm_avx512_f64;
/* C[m, n] (+)= A[m, k] B[n, k]^T for 1 <= m <= SKINNY_M, A and B row-major and read in place,
 * K blocked by kcb as gemm_ex blocks it: the same bits as the packed path without packing B^T.
 * Columns go in groups of the vector length; a caller splitting n should split on them. */
enum { SKINNY_M = 8 };
typedef void (*gemm_skinny_fn)(int64_t m, int64_t n, int64_t k, int64_t kcb, const void *a,
                               int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc,
                               bool add);
void gemm_avx512_skinny_f32(int64_t m, int64_t n, int64_t k, int64_t kcb, const void *a,
                            int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc, bool add);
void gemm_avx512_skinny_f64(int64_t m, int64_t n, int64_t k, int64_t kcb, const void *a,
                            int64_t lda, const void *b, int64_t ldb, void *c, int64_t ldc, bool add);
#else
#define GEMM_HAVE_X86 0
#endif

/* Forces complete unrolling of a short loop whose trip count is a compile-time constant once
 * the always-inline tile functions are specialised.  (Unrolling the k loop as well measured
 * no faster and tripled compile times.) */
#if defined(__clang__)
#define GEMM_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define GEMM_UNROLL _Pragma("GCC unroll 16")
#else
#define GEMM_UNROLL
#endif

#endif
