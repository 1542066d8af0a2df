/* The gradient reduction hook of optim_step and the flat-buffer helpers a communicator (MPI,
 * or a single process playing several ranks) fills it with.  Nothing here knows any
 * communicator: the library stays libc/libm. */
#include "optim_impl.h"
#include "ad_parallel.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Every block of the flat layout starts at a multiple of this, so a float64 gradient after
 * an odd number of float32 ones is still read through an aligned double pointer. */
enum { BLOCK_ALIGN = 8 };

static size_t block_bytes(const ad_tensor *p)
{
    size_t b = (size_t)ad_tensor_size(p) * ad_dtype_size(ad_tensor_dtype(p));
    return (b + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN;
}

ad_status optim_set_grad_reduce(optim *o, optim_grad_reduce_fn fn, void *ctx)
{
    if (!o) return AD_ERR_NULL;
    if (fn && o->fuse) /* the sweep would update from this rank's gradient alone */
        return optim_failo(o, AD_ERR_ARG, "optim_set_grad_reduce: the update is fused into the backward sweep "
                           "(optim_fuse), so it cannot wait for the other ranks' gradients");
    o->reduce = fn;
    o->reduce_ctx = fn ? ctx : NULL;
    return AD_OK;
}

ad_status optim_reduce_grads(optim *o)
{
    if (!o->reduce) return AD_OK;
    char why[sizeof o->msg - 64];
    why[0] = 0;
    ad_status st = o->reduce(o->reduce_ctx, o->params, o->n, why, sizeof why);
    if (st == AD_OK) return AD_OK;
    return optim_failo(o, st, "optim_step: step %lld: %s", (long long)o->step,
                       why[0] ? why : "the gradient reduction hook failed without a message");
}

/* Checks the list the helpers take: every parameter present with a gradient buffer. */
static ad_status check_list(const char *fn, ad_tensor *const *params, int n, char *err, size_t errlen)
{
    if (!params || n < 1)
        return optim_fail(params ? AD_ERR_ARG : AD_ERR_NULL, err, errlen,
                          "%s: params = %p, n = %d, want at least one parameter", fn, (const void *)params, n);
    for (int i = 0; i < n; i++)
        if (!params[i] || !ad_tensor_grad_data(params[i]))
            return optim_fail(AD_ERR_NULL, err, errlen, "%s: parameter %d is NULL or has no gradient buffer", fn, i);
    return AD_OK;
}

size_t optim_grad_bytes(ad_tensor *const *params, int n)
{
    size_t total = 0;
    for (int i = 0; params && i < n; i++) {
        if (!params[i]) return 0;
        total += block_bytes(params[i]);
    }
    return total;
}

/* Checks a caller's buffer against the layout's size; returns that size in *need. */
static ad_status check_buffer(const char *fn, ad_tensor *const *params, int n, const void *buf, size_t bytes,
                              size_t *need, char *err, size_t errlen)
{
    ad_status st = check_list(fn, params, n, err, errlen);
    if (st != AD_OK) return st;
    *need = optim_grad_bytes(params, n);
    if (!buf) return optim_fail(AD_ERR_NULL, err, errlen, "%s: the buffer is NULL", fn);
    if (bytes < *need)
        return optim_fail(AD_ERR_ARG, err, errlen, "%s: a buffer of %zu bytes, the %d gradients need %zu", fn, bytes, n,
                          *need);
    return AD_OK;
}

ad_status optim_grad_flatten(ad_tensor *const *params, int n, void *buf, size_t bytes, char *err, size_t errlen)
{
    size_t need;
    ad_status st = check_buffer("optim_grad_flatten", params, n, buf, bytes, &need, err, errlen);
    if (st != AD_OK) return st;
    char *at = buf;
    for (int i = 0; i < n; i++) {
        size_t b = block_bytes(params[i]), used = (size_t)ad_tensor_size(params[i]) * ad_dtype_size(ad_tensor_dtype(params[i]));
        memcpy(at, ad_tensor_grad_data(params[i]), used);
        memset(at + used, 0, b - used); /* the padding too, so the buffer's bytes are all defined */
        at += b;
    }
    return AD_OK;
}

ad_status optim_grad_unflatten(ad_tensor *const *params, int n, const void *buf, size_t bytes, char *err,
                               size_t errlen)
{
    size_t need;
    ad_status st = check_buffer("optim_grad_unflatten", params, n, buf, bytes, &need, err, errlen);
    if (st != AD_OK) return st;
    const char *at = buf;
    for (int i = 0; i < n; i++) {
        memcpy(ad_tensor_grad_data(params[i]), at, (size_t)ad_tensor_size(params[i]) * ad_dtype_size(ad_tensor_dtype(params[i])));
        at += block_bytes(params[i]);
    }
    return AD_OK;
}

/* One optim_grad_sum, split across threads by element like optim_step: the elements of all
 * parameters in order form one index space.  Each element's sum runs over the shards in the
 * same order whatever the split, so the bits do not depend on the thread count. */
typedef struct {
    ad_tensor *const *params;
    int n, nshards;
    const char *shards;
    size_t stride;
    const double *weights;
} sum_job;

/* g[k] = w[0] s[0][k] + w[1] s[1][k] + ... left to right, in T.  One pass per shard over a
 * slice that stays in cache; the library is built with -ffp-contract=off, so the product and
 * the sum round separately on every CPU. */
#define SUM_SLICE(T)                                                                                                   \
    AD_VECTOR_CLONES static void sum_slice_##T(T *g, const char *shards, size_t stride, int nshards,                  \
                                               const double *w, size_t off, int64_t len)                               \
    {                                                                                                                  \
        for (int r = 0; r < nshards; r++) {                                                                            \
            const T *s = (const T *)(const void *)(shards + (size_t)r * stride + off);                                 \
            T wr = w ? (T)w[r] : (T)1;                                                                                 \
            if (r == 0)                                                                                                \
                for (int64_t k = 0; k < len; k++) g[k] = wr * s[k];                                                    \
            else                                                                                                       \
                for (int64_t k = 0; k < len; k++) g[k] = g[k] + wr * s[k];                                             \
        }                                                                                                              \
    }
SUM_SLICE(float)
SUM_SLICE(double)

static void sum_range(void *ctx, int64_t lo, int64_t hi)
{
    const sum_job *j = ctx;
    int64_t at = 0;   /* index of parameter i's first element */
    size_t block = 0; /* byte offset of its block */
    for (int i = 0; i < j->n && at < hi; i++) {
        ad_tensor *p = j->params[i];
        int64_t m = ad_tensor_size(p), k0 = lo > at ? lo - at : 0, k1 = hi - at < m ? hi - at : m;
        if (k0 < k1) {
            size_t es = ad_dtype_size(ad_tensor_dtype(p));
            char *g = (char *)ad_tensor_grad_data(p) + (size_t)k0 * es;
            size_t off = block + (size_t)k0 * es;
            if (ad_tensor_dtype(p) == AD_F32)
                sum_slice_float((float *)(void *)g, j->shards, j->stride, j->nshards, j->weights, off, k1 - k0);
            else
                sum_slice_double((double *)(void *)g, j->shards, j->stride, j->nshards, j->weights, off, k1 - k0);
        }
        at += m;
        block += block_bytes(p);
    }
}

/* Elements per thread below which waking another thread costs more than it saves. */
enum { SUM_GRAIN = 32768 };

ad_status optim_grad_sum(ad_tensor *const *params, int n, const void *shards, int nshards, size_t stride,
                         const double *weights, char *err, size_t errlen)
{
    static const char fn[] = "optim_grad_sum";
    size_t need;
    ad_status st = check_buffer(fn, params, n, shards, stride, &need, err, errlen);
    if (st != AD_OK) return st;
    if (nshards < 1) return optim_fail(AD_ERR_ARG, err, errlen, "%s: nshards = %d, want at least 1", fn, nshards);
    if (stride % BLOCK_ALIGN || (uintptr_t)shards % BLOCK_ALIGN)
        return optim_fail(AD_ERR_ARG, err, errlen, "%s: stride %zu and buffer %p must be multiples of %d bytes", fn,
                          stride, shards, BLOCK_ALIGN);
    for (int r = 0; weights && r < nshards; r++)
        if (!isfinite(weights[r]))
            return optim_fail(AD_ERR_ARG, err, errlen, "%s: weights[%d] = %g, want a finite number", fn, r, weights[r]);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += ad_tensor_size(params[i]);
    sum_job j = {params, n, nshards, shards, stride, weights};
    ad_parallel_for(total, SUM_GRAIN, sum_range, &j);
    return AD_OK;
}
