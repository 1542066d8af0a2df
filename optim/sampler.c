/* Minibatch sampling.  Batch t is a pure function of (seed, n, j, t): each epoch's permutation
 * (or, with replacement, each batch) is drawn from its own generator seeded from the seed and
 * the epoch (or batch) number, so a resumed run asks for batch t and gets what the
 * uninterrupted run got, with no generator state to save. */
#include "optim_impl.h"

struct optim_sampler {
    int64_t n, j;
    uint64_t seed;
    bool replacement;
    int64_t epoch;  /* whose permutation perm holds; -1 before the first */
    int64_t *perm;  /* n indices without replacement, j with */
};

/* A 64-bit finaliser (splitmix64's): nearby inputs give unrelated outputs. */
static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* The generator of epoch or batch k; the two modes hash differently so they never share. */
static void stream(ad_rng *r, const optim_sampler *s, int64_t k)
{
    ad_rng_seed(r, mix(mix(s->seed) ^ mix(2 * (uint64_t)k + (s->replacement ? 1u : 0u))));
}

/* Uniform in [0, bound) without modulo bias: reject the top 2^64 mod bound values. */
static uint64_t below(ad_rng *r, uint64_t bound)
{
    uint64_t floor = -bound % bound;
    for (;;) {
        uint64_t x = ad_rng_next(r);
        if (x >= floor) return x % bound;
    }
}

optim_sampler *optim_sampler_new(int64_t n, int64_t j, uint64_t seed, bool replacement, char *err, size_t errlen)
{
    if (n < 1 || j < 1 || (j > n && !replacement)) {
        optim_fail(AD_ERR_ARG, err, errlen, "optim_sampler_new: n = %lld, j = %lld, want n >= 1 and 1 <= j%s",
                   (long long)n, (long long)j, replacement ? "" : " <= n (without replacement)");
        return NULL;
    }
    optim_sampler *s = ad_calloc(1, sizeof *s);
    int64_t len = replacement ? j : n;
    if (s && (uint64_t)len <= SIZE_MAX / sizeof *s->perm) s->perm = ad_malloc((size_t)len * sizeof *s->perm);
    if (!s || !s->perm) {
        optim_sampler_free(s);
        optim_fail(AD_ERR_NOMEM, err, errlen, "optim_sampler_new: out of memory for %lld indices", (long long)len);
        return NULL;
    }
    *s = (optim_sampler){.n = n, .j = j, .seed = seed, .replacement = replacement, .epoch = -1, .perm = s->perm};
    return s;
}

const int64_t *optim_sampler_batch(optim_sampler *s, int64_t t)
{
    if (!s || t < 0) return NULL;
    ad_rng r;
    if (s->replacement) {
        stream(&r, s, t);
        for (int64_t k = 0; k < s->j; k++) s->perm[k] = (int64_t)below(&r, (uint64_t)s->n);
        return s->perm;
    }
    int64_t per_epoch = s->n / s->j, epoch = t / per_epoch;
    if (epoch != s->epoch) {
        /* Fisher-Yates from the identity, so the permutation depends on the epoch alone. */
        stream(&r, s, epoch);
        for (int64_t k = 0; k < s->n; k++) s->perm[k] = k;
        for (int64_t k = s->n - 1; k > 0; k--) {
            int64_t m = (int64_t)below(&r, (uint64_t)k + 1), x = s->perm[k];
            s->perm[k] = s->perm[m];
            s->perm[m] = x;
        }
        s->epoch = epoch;
    }
    return s->perm + (t % per_epoch) * s->j;
}

void optim_sampler_free(optim_sampler *s)
{
    if (!s) return;
    ad_free(s->perm);
    ad_free(s);
}
