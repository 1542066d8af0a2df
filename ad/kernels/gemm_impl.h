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
/* C tile [mr, nr] (mr <= MR, nr <= NR) = (add ? C + : ) A panel x B panel over kc. */
typedef void (*gemm_micro_fn)(int mr, int nr, int64_t kc, const void *a, const void *b,
                              void *c, int64_t ldc, bool add);

struct gemm_kernel {
    const char *name;
    int mr, nr, vl;     /* register tile and vector length, in elements */
    int kc, mc, nc;     /* cache blocks: kc x nr panel of B in L1, mc x kc of A in L2 */
    gemm_pack_fn pack_a, pack_b;
    gemm_micro_fn micro;
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
#else
#define GEMM_HAVE_X86 0
#endif

/* GEMM_UNROLL forces complete unrolling of a short loop whose trip count is a compile-time
 * constant once the always-inline tile functions are specialised; GEMM_UNROLL4 unrolls the
 * k loop four times. */
#if defined(__clang__)
#define GEMM_UNROLL _Pragma("unroll")
#define GEMM_UNROLL4 _Pragma("unroll 4")
#elif defined(__GNUC__)
#define GEMM_UNROLL _Pragma("GCC unroll 16")
#define GEMM_UNROLL4 _Pragma("GCC unroll 4")
#else
#define GEMM_UNROLL
#define GEMM_UNROLL4
#endif

#endif
