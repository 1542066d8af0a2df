/* Shapes, dtypes, persistent tensors and parameters, and the random generator. */
#include "internal.h"
#include <stdatomic.h>
#include <stdlib.h>

int64_t ad_shape_size(const ad_shape *s)
{
    if (!s || s->rank < 0 || s->rank > AD_MAX_RANK) return -1;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->dim[i] < 0) return -1;
        if (s->dim[i] && n > INT64_MAX / s->dim[i]) return -1;
        n *= s->dim[i];
    }
    return n;
}

char *ad_shape_str(const ad_shape *s, char *buf, size_t len)
{
    if (!buf || !len) return buf;
    size_t at = 0;
    buf[0] = 0;
    at += (size_t)snprintf(buf, len, "[");
    for (int i = 0; s && i < s->rank && i < AD_MAX_RANK && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, i ? ",%lld" : "%lld", (long long)s->dim[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
    return buf;
}

size_t ad_dtype_size(ad_dtype t) { return t == AD_F32 ? sizeof(float) : sizeof(double); }
const char *ad_dtype_name(ad_dtype t) { return t == AD_F32 ? "float32" : "float64"; }

/* ---- tensors ---- */

static ad_tensor *tensor_alloc(ad_dtype t, const ad_shape *shape, bool with_grad, const char *name)
{
    if ((t != AD_F64 && t != AD_F32) || ad_shape_size(shape) < 0) return NULL;
    int64_t n = ad_shape_size(shape);
    if ((uint64_t)n > SIZE_MAX / 8) return NULL;
    ad_tensor *x = ad_xcalloc(1, sizeof *x);
    if (!x) return NULL;
    x->shape = *shape;
    x->size = n;
    x->dtype = t;
    x->data = ad_xcalloc((size_t)n, ad_dtype_size(t));
    x->grad = with_grad ? ad_xcalloc((size_t)n, ad_dtype_size(t)) : NULL;
    if (name) {
        size_t l = strlen(name) + 1;
        if ((x->name = ad_xmalloc(l))) memcpy(x->name, name, l);
    }
    if (!x->data || (with_grad && !x->grad) || (name && !x->name)) {
        ad_tensor_free(x);
        return NULL;
    }
    return x;
}

ad_tensor *ad_tensor_new(ad_dtype t, ad_shape shape) { return tensor_alloc(t, &shape, false, NULL); }

ad_tensor *ad_tensor_from(ad_dtype t, ad_shape shape, const double *values)
{
    ad_tensor *x = tensor_alloc(t, &shape, false, NULL);
    if (x && values)
        for (int64_t i = 0; i < x->size; i++) store(x->data, t, i, values[i]);
    return x;
}

ad_tensor *ad_param_new(const char *name, ad_dtype t, ad_shape shape)
{
    return tensor_alloc(t, &shape, true, name);
}

/* Tensors with a ready function: while there are none, a sweep skips counting them. */
static atomic_int ready_tensors;

int grad_ready_tensors(void) { return atomic_load_explicit(&ready_tensors, memory_order_relaxed); }

void ad_param_set_grad_ready(ad_tensor *p, ad_grad_ready_fn fn, void *ctx)
{
    if (!p || !p->grad) return;
    if (!p->ready != !fn) atomic_fetch_add_explicit(&ready_tensors, fn ? 1 : -1, memory_order_relaxed);
    p->ready = fn;
    p->ready_ctx = ctx;
}

int ad_param_take_grad_handed(ad_tensor *p)
{
    if (!p) return 0;
    int h = p->handed;
    p->handed = 0;
    return h;
}

void ad_tensor_free(ad_tensor *t)
{
    if (!t) return;
    ad_param_set_grad_ready(t, NULL, NULL);
    ad_xfree(t->data);
    ad_xfree(t->grad);
    ad_xfree(t->name);
    ad_xfree(t);
}

ad_shape ad_tensor_shape(const ad_tensor *t) { return t ? t->shape : AD_SHAPE0; }
ad_dtype ad_tensor_dtype(const ad_tensor *t) { return t ? t->dtype : AD_F64; }
int64_t ad_tensor_size(const ad_tensor *t) { return t ? t->size : 0; }
const char *ad_tensor_name(const ad_tensor *t) { return t ? t->name : NULL; }
void *ad_tensor_data(ad_tensor *t) { return t ? t->data : NULL; }
void *tensor_grad_now(ad_tensor *t)
{
    if (t->grad_zero) {
        memset(t->grad, 0, (size_t)t->size * ad_dtype_size(t->dtype));
        t->grad_zero = false;
    }
    return t->grad;
}

void *ad_tensor_grad_data(ad_tensor *t) { return t && t->grad ? tensor_grad_now(t) : NULL; }

double ad_tensor_get(const ad_tensor *t, int64_t i)
{
    return t && i >= 0 && i < t->size ? load(t->data, t->dtype, i) : NAN;
}

double ad_tensor_grad_get(const ad_tensor *t, int64_t i)
{
    return t && t->grad && i >= 0 && i < t->size ? (t->grad_zero ? 0.0 : load(t->grad, t->dtype, i)) : NAN;
}

void ad_tensor_set(ad_tensor *t, int64_t i, double v)
{
    if (t && i >= 0 && i < t->size) store(t->data, t->dtype, i, v);
}

void ad_tensor_read(const ad_tensor *t, double *out)
{
    if (!t || !out) return;
    for (int64_t i = 0; i < t->size; i++) out[i] = load(t->data, t->dtype, i);
}

void ad_tensor_fill(ad_tensor *t, double v)
{
    if (!t) return;
    for (int64_t i = 0; i < t->size; i++) store(t->data, t->dtype, i, v);
}

void ad_tensor_rand_uniform(ad_tensor *t, ad_rng *rng, double lo, double hi)
{
    if (!t || !rng) return;
    for (int64_t i = 0; i < t->size; i++) store(t->data, t->dtype, i, lo + (hi - lo) * ad_rng_uniform(rng));
}

void ad_tensor_rand_normal(ad_tensor *t, ad_rng *rng, double mean, double std)
{
    if (!t || !rng) return;
    for (int64_t i = 0; i < t->size; i++) store(t->data, t->dtype, i, mean + std * ad_rng_normal(rng));
}

ad_status ad_tensor_copy(ad_tensor *dst, const ad_tensor *src)
{
    if (!dst || !src) return AD_ERR_NULL;
    if (dst->size != src->size || dst->shape.rank != src->shape.rank ||
        memcmp(dst->shape.dim, src->shape.dim, sizeof(int64_t) * (size_t)src->shape.rank) != 0)
        return AD_ERR_SHAPE;
    if (dst->dtype == src->dtype) memcpy(dst->data, src->data, (size_t)src->size * ad_dtype_size(src->dtype));
    else
        for (int64_t i = 0; i < src->size; i++) store(dst->data, dst->dtype, i, load(src->data, src->dtype, i));
    return AD_OK;
}

void ad_tensor_zero_grad(ad_tensor *t)
{
    if (t && t->grad) t->grad_zero = true;
}

/* ---- xoshiro256** (Blackman & Vigna), seeded by splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void ad_rng_seed(ad_rng *r, uint64_t seed)
{
    if (!r) return;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ad_rng_next(ad_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double ad_rng_uniform(ad_rng *r) { return (double)(ad_rng_next(r) >> 11) * 0x1.0p-53; }

double ad_rng_normal(ad_rng *r)
{
    double u1 = 1.0 - ad_rng_uniform(r); /* in (0, 1]: log stays finite */
    double u2 = ad_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
