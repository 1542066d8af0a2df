/* Datasets, the train/validation split, standardisation and the minibatch iterator. */
#include "nn_data.h"
#include "ad_parallel.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ERR(...) (err && errlen ? (void)snprintf(err, errlen, __VA_ARGS__) : (void)0)

nn_dataset *nn_dataset_new(int64_t n, int dim, ad_dtype t, int targets)
{
    if (n < 1 || dim < 1 || targets < 0 || (uint64_t)n > SIZE_MAX / sizeof(int32_t)) return NULL;
    nn_dataset *d = ad_calloc(1, sizeof *d);
    if (!d) return NULL;
    d->n = n, d->dim = dim;
    d->x = ad_tensor_new(t, AD_SHAPE(n, dim));
    if (targets) d->y = ad_tensor_new(t, AD_SHAPE(n, targets));
    else d->labels = ad_calloc((size_t)n, sizeof *d->labels);
    if (!d->x || (targets ? !d->y : !d->labels)) {
        nn_dataset_free(d);
        return NULL;
    }
    return d;
}

void nn_dataset_free(nn_dataset *d)
{
    if (!d) return;
    ad_tensor_free(d->x);
    ad_tensor_free(d->y);
    ad_free(d->labels);
    ad_free(d);
}

static size_t row_bytes(const ad_tensor *t)
{
    ad_shape s = ad_tensor_shape(t);
    return (size_t)s.dim[1] * ad_dtype_size(ad_tensor_dtype(t));
}

/* Copies row `from` of src into row `to` of dst (both datasets of one layout). */
static void copy_row(const nn_dataset *src, int64_t from, nn_dataset *dst, int64_t to)
{
    size_t xb = row_bytes(src->x);
    memcpy((char *)ad_tensor_data(dst->x) + (size_t)to * xb, (char *)ad_tensor_data(src->x) + (size_t)from * xb, xb);
    if (src->labels) dst->labels[to] = src->labels[from];
    if (src->y) {
        size_t yb = row_bytes(src->y);
        memcpy((char *)ad_tensor_data(dst->y) + (size_t)to * yb, (char *)ad_tensor_data(src->y) + (size_t)from * yb, yb);
    }
}

/* A uniform draw in [0, n) without modulo bias (rejection from the top of the range). */
static uint64_t below(ad_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = ad_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* Fisher–Yates. */
static void shuffle(int64_t *perm, int64_t n, ad_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)below(r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

ad_status nn_dataset_split(const nn_dataset *d, double val_fraction, uint64_t seed,
                           nn_dataset **train, nn_dataset **val, char *err, size_t errlen)
{
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (!d || !train || !val) return ERR("nn_dataset_split: %s is NULL", d ? "an output" : "dataset"), AD_ERR_NULL;
    int64_t nv = (int64_t)llround((double)d->n * val_fraction);
    if (!(val_fraction > 0 && val_fraction < 1) || nv < 1 || nv >= d->n)
        return ERR("nn_dataset_split: a fraction of %g of %lld rows leaves one part empty", val_fraction, (long long)d->n),
               AD_ERR_ARG;
    ad_dtype t = ad_tensor_dtype(d->x);
    int targets = d->y ? (int)ad_tensor_shape(d->y).dim[1] : 0;
    int64_t *perm = ad_malloc((size_t)d->n * sizeof *perm);
    nn_dataset *a = nn_dataset_new(d->n - nv, d->dim, t, targets), *b = nn_dataset_new(nv, d->dim, t, targets);
    if (!perm || !a || !b) {
        ad_free(perm), nn_dataset_free(a), nn_dataset_free(b);
        return ERR("nn_dataset_split: out of memory for %lld rows", (long long)d->n), AD_ERR_NOMEM;
    }
    ad_rng r;
    ad_rng_seed(&r, seed);
    for (int64_t i = 0; i < d->n; i++) perm[i] = i;
    shuffle(perm, d->n, &r);
    for (int64_t i = 0; i < nv; i++) copy_row(d, perm[i], b, i);
    for (int64_t i = nv; i < d->n; i++) copy_row(d, perm[i], a, i - nv);
    a->classes = b->classes = d->classes;
    ad_free(perm);
    *train = a, *val = b;
    return AD_OK;
}

/* ---- standardisation ---- */

ad_status nn_scaler_fit(nn_scaler *s, const nn_dataset *d, char *err, size_t errlen)
{
    if (!s || !d) return ERR("nn_scaler_fit: %s is NULL", s ? "dataset" : "scaler"), AD_ERR_NULL;
    memset(s, 0, sizeof *s);
    s->mean = ad_calloc((size_t)d->dim, sizeof *s->mean);
    s->std = ad_calloc((size_t)d->dim, sizeof *s->std);
    if (!s->mean || !s->std) {
        nn_scaler_free(s);
        return ERR("nn_scaler_fit: out of memory"), AD_ERR_NOMEM;
    }
    s->dim = d->dim;
    /* Two passes (mean, then squared deviations): the one-pass formula E[x²] - E[x]² cancels
     * catastrophically for features far from zero. */
    for (int64_t i = 0; i < d->n; i++)
        for (int j = 0; j < d->dim; j++) s->mean[j] += ad_tensor_get(d->x, i * d->dim + j);
    for (int j = 0; j < d->dim; j++) s->mean[j] /= (double)d->n;
    for (int64_t i = 0; i < d->n; i++)
        for (int j = 0; j < d->dim; j++) {
            double v = ad_tensor_get(d->x, i * d->dim + j) - s->mean[j];
            s->std[j] += v * v;
        }
    for (int j = 0; j < d->dim; j++) {
        s->std[j] = sqrt(s->std[j] / (double)d->n);
        if (!(s->std[j] > 0)) s->std[j] = 1;
    }
    return AD_OK;
}

ad_status nn_scaler_apply(const nn_scaler *s, nn_dataset *d, char *err, size_t errlen)
{
    if (!s || !d || !s->mean) return ERR("nn_scaler_apply: %s is NULL or unfitted", d ? "scaler" : "dataset"), AD_ERR_NULL;
    if (s->dim != d->dim)
        return ERR("nn_scaler_apply: the scaler was fitted on %d features, the dataset has %d", s->dim, d->dim), AD_ERR_SHAPE;
    for (int64_t i = 0; i < d->n; i++)
        for (int j = 0; j < d->dim; j++) {
            int64_t k = i * d->dim + j;
            ad_tensor_set(d->x, k, (ad_tensor_get(d->x, k) - s->mean[j]) / s->std[j]);
        }
    return AD_OK;
}

void nn_scaler_free(nn_scaler *s)
{
    if (!s) return;
    ad_free(s->mean);
    ad_free(s->std);
    memset(s, 0, sizeof *s);
}

/* ---- minibatches ---- */

struct nn_batches {
    const nn_dataset *d;
    int64_t batch, at;
    bool shuffle, fresh;      /* fresh: the next call starts an epoch */
    ad_rng rng;
    int64_t *perm;
    nn_dataset full, tail;    /* views of the batch buffers: a full batch and the last one */
};

static void release_buffers(nn_dataset *b)
{
    ad_tensor_free(b->x);
    ad_tensor_free(b->y);
    ad_free(b->labels);
}

void nn_batches_free(nn_batches *it)
{
    if (!it) return;
    release_buffers(&it->full);
    release_buffers(&it->tail);
    ad_free(it->perm);
    ad_free(it);
}

/* Buffers for batches of `rows` rows; the last batch of an epoch may be shorter, so it gets
 * tensors of its own shape rather than a resized one. */
static bool make_buffers(nn_dataset *b, const nn_dataset *d, int64_t rows)
{
    if (rows == 0) return true;
    ad_dtype t = ad_tensor_dtype(d->x);
    b->n = rows, b->dim = d->dim, b->classes = d->classes;
    b->x = ad_tensor_new(t, AD_SHAPE(rows, d->dim));
    if (d->y) b->y = ad_tensor_new(t, AD_SHAPE(rows, ad_tensor_shape(d->y).dim[1]));
    if (d->labels) b->labels = ad_calloc((size_t)rows, sizeof *b->labels);
    return b->x && (!d->y || b->y) && (!d->labels || b->labels);
}

nn_batches *nn_batches_new(const nn_dataset *d, int batch_size, bool shuffle, uint64_t seed,
                           char *err, size_t errlen)
{
    if (!d || !d->x) return ERR("nn_batches_new: dataset is NULL"), NULL;
    if (batch_size < 1) return ERR("nn_batches_new: batch size %d must be >= 1", batch_size), NULL;
    nn_batches *it = ad_calloc(1, sizeof *it);
    if (!it) return ERR("nn_batches_new: out of memory"), NULL;
    it->d = d;
    it->batch = batch_size < d->n ? batch_size : d->n;
    it->shuffle = shuffle, it->fresh = true;
    ad_rng_seed(&it->rng, seed);
    it->perm = ad_malloc((size_t)d->n * sizeof *it->perm);
    if (!it->perm || !make_buffers(&it->full, d, it->batch) || !make_buffers(&it->tail, d, d->n % it->batch)) {
        nn_batches_free(it);
        return ERR("nn_batches_new: out of memory for batches of %d rows", batch_size), NULL;
    }
    for (int64_t i = 0; i < d->n; i++) it->perm[i] = i;
    return it;
}

/* Gathering a batch: the rows sit at random places in a large dataset, so the copy waits on
 * memory, and two threads fetching halves of it finish sooner. */
typedef struct {
    nn_batches *it;
    nn_dataset *buf;
} gather_job;

/* Rows ahead whose lines are requested while the current row is copied, so several rows'
 * memory latencies overlap instead of adding up. */
enum { GATHER_AHEAD = 4 };

static void gather_rows(void *ctx, int64_t r0, int64_t r1)
{
    const gather_job *j = ctx;
    const nn_dataset *d = j->it->d;
    const int64_t *rows = j->it->perm + j->it->at;
    size_t xb = row_bytes(d->x);
    const char *x = ad_tensor_data(d->x);
    for (int64_t r = r0; r < r1; r++) {
#if defined(__GNUC__)
        if (r + GATHER_AHEAD < r1)
            for (size_t off = 0; off < xb; off += 64) __builtin_prefetch(x + (size_t)rows[r + GATHER_AHEAD] * xb + off);
#endif
        copy_row(d, rows[r], j->buf, r);
    }
}

/* Bytes per thread below which a second thread does not pay for its wake-up. */
enum { GATHER_GRAIN_BYTES = 64 << 10 };

bool nn_batches_next(nn_batches *it, nn_batch *b)
{
    if (!it || !b) return false;
    if (it->fresh) {
        if (it->shuffle) shuffle(it->perm, it->d->n, &it->rng);
        it->at = 0, it->fresh = false;
    }
    if (it->at >= it->d->n) {
        it->fresh = true;
        return false;
    }
    int64_t rows = it->d->n - it->at < it->batch ? it->d->n - it->at : it->batch;
    nn_dataset *buf = rows == it->batch ? &it->full : &it->tail;
    gather_job j = {it, buf};
    ad_parallel_for(rows, 1 + GATHER_GRAIN_BYTES / (int64_t)row_bytes(it->d->x), gather_rows, &j);
    it->at += rows;
    b->x = buf->x, b->y = buf->y, b->labels = buf->labels, b->rows = rows;
    return true;
}
