/* The library's allocator: every allocation of ad, nn and optim passes here, so a test can
 * count them and make the n-th one fail (fault injection), and a loop can prove it allocates
 * nothing in its steady state. */
#include "internal.h"
#include <stdatomic.h>
#include <stdlib.h>

static atomic_long allocations;   /* made since the process started */
static atomic_long fail_at;       /* the allocation number that fails; 0: none */

/* True when this allocation is the one chosen to fail. */
static bool fails(void)
{
    long n = atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed) + 1;
    long f = atomic_load_explicit(&fail_at, memory_order_relaxed);
    return f > 0 && n == f;
}

void *ad_malloc(size_t n) { return fails() ? NULL : malloc(n ? n : 1); }
void *ad_calloc(size_t n, size_t size) { return fails() ? NULL : calloc(n ? n : 1, size ? size : 1); }
void *ad_realloc(void *p, size_t n) { return fails() ? NULL : realloc(p, n ? n : 1); }
void ad_free(void *p) { free(p); }

void *ad_aligned_alloc(size_t align, size_t n)
{
    void *p = NULL;
    if (fails() || posix_memalign(&p, align, n ? n : 1) != 0) return NULL;
    return p;
}

long ad_alloc_count(void) { return atomic_load_explicit(&allocations, memory_order_relaxed); }

void ad_fail_alloc_at(long n)
{
    long base = n > 0 ? ad_alloc_count() : 0;
    atomic_store_explicit(&fail_at, n > 0 ? base + n : 0, memory_order_relaxed);
}
