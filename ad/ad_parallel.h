/* ad_parallel.h — the library's thread pool and wide loops, for code built on top of it.
 *
 * The ops, the optimisers and the minibatch iterator split their large loops over the same
 * process-wide pool of ad_get_threads() threads (ad_set_threads in ad.h sets the count).  A
 * library or program built on backprop can use that pool too, instead of starting threads of
 * its own that would compete with it for the cores.
 */
#ifndef AD_PARALLEL_H
#define AD_PARALLEL_H

#include "ad.h"
#include <stdint.h>

AD_BEGIN_DECLS

/* 1 when the including file is compiled with ThreadSanitizer (GCC's __SANITIZE_THREAD__ or
 * Clang's __has_feature(thread_sanitizer)), else 0; AD_VECTOR_CLONES depends on it, and tests
 * use it to leave out what TSan cannot follow. */
#if defined(__SANITIZE_THREAD__)
#define AD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AD_TSAN 1
#endif
#endif
#ifndef AD_TSAN
#define AD_TSAN 0
#endif

/* Put before a function whose loops should run as wide as the CPU allows: the compiler builds
 * it for AVX-512, AVX2 and baseline x86-64, and the dynamic loader binds the best (GNU ifunc,
 * so glibc on x86-64 with GCC >= 6 or Clang >= 14 only; elsewhere it expands to nothing).
 * Compile with -ffp-contract=off, as the library is, if the three builds must round alike.
 * Empty under ThreadSanitizer: the loader runs ifunc resolvers before TSan's runtime is up,
 * and instrumented resolvers crash the program before main. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__ELF__) && !AD_TSAN && \
    (defined(__clang__) ? __clang_major__ >= 14 : defined(__GNUC__) && __GNUC__ >= 6)
#define AD_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AD_VECTOR_CLONES
#endif

/* The work of an ad_parallel_for: fn(ctx, begin, end) handles the items [begin, end). */
typedef void (*ad_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Runs fn over [0, n) split into at most ad_get_threads() contiguous slices of at least grain
 * items, on the library's pool, and returns when every slice is done.  When n < 2 grain (or
 * one thread is set) it is one call fn(ctx, 0, n) on the calling thread.  Slices run
 * concurrently, so each must write only its own items; pick grain so a slice is worth a
 * thread's wake-up (about 64K floating-point operations).  Safe to call from several threads
 * and from inside fn: a call made while the pool is busy runs on its own thread. */
void ad_parallel_for(int64_t n, int64_t grain, ad_range_fn fn, void *ctx);

AD_END_DECLS
#endif
