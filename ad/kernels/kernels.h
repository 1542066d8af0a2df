/* Hot loops shared by the ops: the matrix kernel (gemm) and the thread pool that runs it.
 * Internal to ad/ and its tests; nothing here is public API (what other modules may use of the
 * pool and the vector clones is in ad_parallel.h).
 *
 * gemm is BLIS-shaped: op(B) is packed into a KC x NC block of NR-wide panels, op(A) into an
 * MC x KC block of MR-tall panels, and a register-tiled micro-kernel multiplies one panel of
 * each into an MR x NR tile of C.  The micro-kernel is chosen at run time (AVX-512, AVX2+FMA,
 * portable C).  Threads split C into blocks of rows or columns, never K, so every element of C
 * is the same sum in the same order whatever the thread count: results are bitwise identical
 * for 1, 2, ... threads. */
#ifndef AD_KERNELS_H
#define AD_KERNELS_H

#include "ad_parallel.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* C[m,n] (+)= op(A)[m,k] op(B)[k,n], row-major with leading dimensions lda, ldb, ldc;
 * op(X) = X^T when tX (A is then stored [k,m], B [n,k]).  accumulate adds into C, otherwise
 * C is overwritten (its old contents, even NaN, are ignored).  Never fails: if scratch memory
 * cannot be had it falls back to unpacked loops. */
void gemm(ad_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
          int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, bool accumulate);

/* Work on C done where C is made: fn(ctx, c, ldc, rows, cols) runs once on every block of C
 * right after its last K block, while the block is still in cache, on the thread that made
 * it.  Blocks do not overlap and together cover C; an elementwise fn therefore gives the same
 * result as a pass over C after gemm, without the pass. */
typedef struct {
    void (*fn)(void *ctx, void *c, int64_t ldc, int64_t rows, int64_t cols);
    void *ctx;
} gemm_epilogue;

/* gemm, then ep (may be NULL) on each block of C as it is finished. */
void gemm_ex(ad_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
             int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, bool accumulate,
             const gemm_epilogue *ep);

/* Micro-kernel families, for tests and benchmarks. */
typedef enum { GEMM_ISA_AUTO = 0, GEMM_ISA_PORTABLE, GEMM_ISA_AVX2, GEMM_ISA_AVX512 } gemm_isa;
/* Whether this CPU (and this build) can run a family. */
bool gemm_isa_supported(gemm_isa isa);
/* Forces a family for every later gemm call (GEMM_ISA_AUTO: the best supported).  Returns
 * false, changing nothing, if the family is not supported. */
bool gemm_force_isa(gemm_isa isa);
/* The family gemm uses now, and its name ("avx512", "avx2", "portable"). */
gemm_isa gemm_current_isa(void);
const char *gemm_isa_name(gemm_isa isa);

/* ---- thread pool ----
 *
 * One process-wide pool of ad_get_threads() - 1 workers, started on first use; the calling
 * thread is the remaining participant.  A call made while the pool serves another caller (or
 * from inside a task) runs on the calling thread, so nesting and concurrent callers are safe.
 * ad_parallel_for (ad_parallel.h) splits a range of items over it. */

/* A task: fn(ctx, block, worker) for one block; worker is 0 for the calling thread,
 * 1..threads-1 for pool threads: an index for per-thread scratch that is unique among the
 * threads of one call (two concurrent calls both have a worker 0, so scratch indexed by it
 * belongs in the call's ctx, not in a global). */
typedef void (*pool_task_fn)(void *ctx, int64_t block, int worker);
/* Runs fn for every block in [0, nblocks) on up to `threads` threads (<= 0: ad_get_threads())
 * and returns when all are done.  Blocks are handed out dynamically, so make each block's
 * result independent of which thread runs it.  Returns the number of threads used. */
int pool_parallel_for(int64_t nblocks, int threads, pool_task_fn fn, void *ctx);

/* Stops and joins the workers and frees the pool (it restarts on next use).  Must not be
 * called while another thread is inside pool_parallel_for.  Runs at library unload too. */
void pool_shutdown(void);

#endif
