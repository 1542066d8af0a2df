/*
 * ad_alloc.h — the library's allocator and its fault injection, for tests and for the modules
 * built on ad (nn, optim).  ad.h includes it; a program that only differentiates never needs
 * to read it.
 */
#ifndef AD_ALLOC_H
#define AD_ALLOC_H

#include "ad_version.h"
#include <stddef.h>

AD_BEGIN_DECLS

/* The allocator.  Every allocation of the library (ad, nn, optim) goes through these, so
 * tests can count allocations and make one fail.  Memory from them is released with ad_free.
 */
void *ad_malloc(size_t n);
/* calloc through the counting allocator. */
void *ad_calloc(size_t n, size_t size);
/* realloc through the counting allocator. */
void *ad_realloc(void *p, size_t n);
/* Frees memory from ad_malloc, ad_calloc or ad_realloc (NULL is ignored). */
void ad_free(void *p);
/* Allocations made since the process started (all threads). */
long ad_alloc_count(void);
/* Fault injection for tests: the n-th allocation from now on returns NULL (n <= 0 turns it
 * off).  One failure per call; the library must then report AD_ERR_NOMEM and leak nothing. */
void ad_fail_alloc_at(long n);

AD_END_DECLS
#endif
