/*
 * ad_real.h — the fast scalar path: active doubles on a flat tape.
 *
 * For differentiating ordinary C code with one operation per number (a cost function, a
 * simulation step, a likelihood) at the cost of the best operator-overloading tools.  A value
 * is a small struct returned in registers; each operation appends its local partial
 * derivatives to a flat tape, and the backward sweep is one multiply-add per edge.
 *
 *     ad_tape *t = ad_tape_new();
 *     ad_real x = ad_real_var(t, 2.0), y = ad_real_var(t, 3.0);
 *     ad_real f = ad_real_mul(t, ad_real_add(t, x, y), ad_real_sin(t, x));
 *     if (ad_tape_backward(t, f) == AD_OK)
 *         printf("%g %g %g\n", f.v, ad_tape_grad(t, x), ad_tape_grad(t, y));
 *     ad_tape_free(t);
 *
 * Compared with ad_node graphs (ad.h): no tensors, no names, no traces; float64 only; values
 * are not stored on the tape, so a sweep costs about a third of the memory traffic.  Use
 * graphs to teach, to see, to work with tensors; use tapes for hot scalar loops.
 *
 * Ownership and errors: the tape owns its memory; ad_tape_reset keeps it for the next
 * recording, so a loop allocates nothing once the tape is large enough.  If memory runs out
 * while recording, values keep being computed but the tape is marked failed, and
 * ad_tape_backward returns AD_ERR_NOMEM.  Constants (ad_real_const, or index -1) are never
 * recorded.  Gradients are recomputed by every sweep (they do not accumulate across sweeps).
 */
#ifndef AD_REAL_H
#define AD_REAL_H

#include "ad.h"
#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An active double: its value and its slot on the tape (-1 for a constant). */
typedef struct {
    double v;  /* the value */
    int32_t i; /* its slot on the tape, -1 for a constant */
} ad_real;

/* The tape's storage is visible so that the operations below can be inlined; treat the
 * fields as private. */
typedef struct ad_tape {
    /* Counters are int64_t although they stay below 2^31: the int32_t stores into end[] and
     * arg[] then cannot alias them, so inlined recording keeps them in registers. */
    int64_t n;                /* values recorded */
    int64_t cap;              /* room for values */
    int64_t nedge;            /* edges recorded */
    int64_t edge_cap;         /* room for edges */
    int32_t *end;             /* end[i]: one past the last edge of value i */
    int32_t *arg;             /* edge e: the value it points back to ... */
    double *partial;          /* ... and the local partial derivative along it */
    double *adj;              /* adjoints, filled by the sweep */
    int64_t adj_n;            /* adjoints the last sweep computed */
    int64_t adj_cap;          /* room for adjoints */
    ad_status status;         /* AD_OK, or why recording failed */
    uint64_t mallocs;         /* allocations made, for tests of steady-state loops */
} ad_tape;

/* A new empty tape, or NULL if memory runs out. */
ad_tape *ad_tape_new(void);
/* Frees the tape; NULL is ignored. */
void ad_tape_free(ad_tape *t);
/* Forgets every recorded value but keeps the memory. */
void ad_tape_reset(ad_tape *t);
/* Makes room for `values` values and `edges` edges in total, so recording never grows. */
ad_status ad_tape_reserve(ad_tape *t, int64_t values, int64_t edges);
/* Sweeps backward from y, seeding its adjoint with 1; afterwards ad_tape_grad gives dy/dx. */
ad_status ad_tape_backward(ad_tape *t, ad_real y);
/* dy/dx from the last sweep (0 for constants and for values the sweep did not reach). */
double ad_tape_grad(const ad_tape *t, ad_real x);
/* Grows the tape for one more value with up to `edges` edges; false (and status set) on OOM. */
bool ad_tape_grow_(ad_tape *t, int edges);

/* A function of n active doubles, for ad_gradient_real. */
typedef ad_real (*ad_real_fn)(ad_tape *t, const ad_real *x, int n, void *user);
/* Value and gradient of f at x[0..n-1] in one call.  t may be NULL (a tape is made and freed
 * inside) or a tape to reuse (it is reset first). */
ad_status ad_gradient_real(ad_tape *t, ad_real_fn f, int n, const double *x, void *user,
                           double *value, double *grad);
/* Central differences against the tape's gradient (defaults as ad_gradcheck). */
ad_status ad_gradcheck_real(ad_real_fn f, int n, const double *x, void *user,
                            const ad_check_opts *o, ad_check_report *rep);

/* ---- recording (inline) ---- */

static inline ad_real ad_real_const(double v) { ad_real r = {v, -1}; return r; }

/* A new independent variable. */
static inline ad_real ad_real_var(ad_tape *t, double v)
{
    ad_real r = {v, -1};
    if (t->n >= t->cap && !ad_tape_grow_(t, 0)) return r;
    t->end[t->n] = (int32_t)t->nedge;
    r.i = (int32_t)t->n++;
    return r;
}

/* One value with one edge back to a (a constant a makes a constant result). */
static inline ad_real ad_tape_rec1_(ad_tape *t, double v, ad_real a, double da)
{
    ad_real r = {v, -1};
    if (a.i < 0) return r;
    if ((t->n >= t->cap || t->nedge + 1 > t->edge_cap) && !ad_tape_grow_(t, 1)) return r;
    int64_t e = t->nedge;
    t->arg[e] = a.i;
    t->partial[e] = da;
    t->nedge = e + 1;
    t->end[t->n] = (int32_t)(e + 1);
    r.i = (int32_t)t->n++;
    return r;
}

/* One value with edges back to a and b; the same input twice is one edge (x*x). */
static inline ad_real ad_tape_rec2_(ad_tape *t, double v, ad_real a, double da, ad_real b,
                                    double db)
{
    if (b.i < 0) return ad_tape_rec1_(t, v, a, da);
    if (a.i < 0) return ad_tape_rec1_(t, v, b, db);
    if (a.i == b.i) return ad_tape_rec1_(t, v, a, da + db);
    ad_real r = {v, -1};
    if ((t->n >= t->cap || t->nedge + 2 > t->edge_cap) && !ad_tape_grow_(t, 2)) return r;
    int64_t e = t->nedge;
    t->arg[e] = a.i;
    t->partial[e] = da;
    t->arg[e + 1] = b.i;
    t->partial[e + 1] = db;
    t->nedge = e + 2;
    t->end[t->n] = (int32_t)(e + 2);
    r.i = (int32_t)t->n++;
    return r;
}

/* a + b. */
static inline ad_real ad_real_add(ad_tape *t, ad_real a, ad_real b) { return ad_tape_rec2_(t, a.v + b.v, a, 1, b, 1); }
/* a - b. */
static inline ad_real ad_real_sub(ad_tape *t, ad_real a, ad_real b) { return ad_tape_rec2_(t, a.v - b.v, a, 1, b, -1); }
/* a * b (x*x records one edge). */
static inline ad_real ad_real_mul(ad_tape *t, ad_real a, ad_real b) { return ad_tape_rec2_(t, a.v * b.v, a, b.v, b, a.v); }
/* a / b. */
static inline ad_real ad_real_div(ad_tape *t, ad_real a, ad_real b)
{
    double q = a.v / b.v;
    return ad_tape_rec2_(t, q, a, 1 / b.v, b, -q / b.v);
}
/* a + c, a * c, c - a, c / a with a plain double c. */
static inline ad_real ad_real_addc(ad_tape *t, ad_real a, double c) { return ad_tape_rec1_(t, a.v + c, a, 1); }
/* a * c with a plain double c. */
static inline ad_real ad_real_mulc(ad_tape *t, ad_real a, double c) { return ad_tape_rec1_(t, a.v * c, a, c); }
/* c - a with a plain double c. */
static inline ad_real ad_real_csub(ad_tape *t, double c, ad_real a) { return ad_tape_rec1_(t, c - a.v, a, -1); }
/* c / a with a plain double c. */
static inline ad_real ad_real_cdiv(ad_tape *t, double c, ad_real a)
{
    double q = c / a.v;
    return ad_tape_rec1_(t, q, a, -q / a.v);
}
/* -a. */
static inline ad_real ad_real_neg(ad_tape *t, ad_real a) { return ad_tape_rec1_(t, -a.v, a, -1); }
/* a^2. */
static inline ad_real ad_real_square(ad_tape *t, ad_real a) { return ad_tape_rec1_(t, a.v * a.v, a, 2 * a.v); }
/* The square root. */
static inline ad_real ad_real_sqrt(ad_tape *t, ad_real a)
{
    double s = sqrt(a.v);
    return ad_tape_rec1_(t, s, a, 0.5 / s);
}
/* e^a. */
static inline ad_real ad_real_exp(ad_tape *t, ad_real a)
{
    double e = exp(a.v);
    return ad_tape_rec1_(t, e, a, e);
}
/* The natural logarithm. */
static inline ad_real ad_real_log(ad_tape *t, ad_real a) { return ad_tape_rec1_(t, log(a.v), a, 1 / a.v); }
/* sin(a). */
static inline ad_real ad_real_sin(ad_tape *t, ad_real a) { return ad_tape_rec1_(t, sin(a.v), a, cos(a.v)); }
/* cos(a). */
static inline ad_real ad_real_cos(ad_tape *t, ad_real a) { return ad_tape_rec1_(t, cos(a.v), a, -sin(a.v)); }
/* tan(a). */
static inline ad_real ad_real_tan(ad_tape *t, ad_real a)
{
    double y = tan(a.v);
    return ad_tape_rec1_(t, y, a, 1 + y * y);
}
/* tanh(a). */
static inline ad_real ad_real_tanh(ad_tape *t, ad_real a)
{
    double y = tanh(a.v);
    return ad_tape_rec1_(t, y, a, 1 - y * y);
}
/* 1/(1+e^-a), without overflow. */
static inline ad_real ad_real_sigmoid(ad_tape *t, ad_real a)
{
    double y = a.v >= 0 ? 1 / (1 + exp(-a.v)) : exp(a.v) / (1 + exp(a.v));
    return ad_tape_rec1_(t, y, a, y * (1 - y));
}
/* a^b; d/db is taken as 0 where a <= 0, as ad_pow. */
static inline ad_real ad_real_pow(ad_tape *t, ad_real a, ad_real b)
{
    double y = pow(a.v, b.v);
    return ad_tape_rec2_(t, y, a, b.v == 0 ? 0 : b.v * pow(a.v, b.v - 1), b, a.v > 0 ? y * log(a.v) : 0);
}
/* a^c with a plain double c. */
static inline ad_real ad_real_powc(ad_tape *t, ad_real a, double c)
{
    return ad_tape_rec1_(t, pow(a.v, c), a, c == 0 ? 0 : c * pow(a.v, c - 1));
}
/* Subgradients as the graph ops: 0 at 0 for abs and relu, half each on max/min ties. */
static inline ad_real ad_real_abs(ad_tape *t, ad_real a)
{
    return ad_tape_rec1_(t, fabs(a.v), a, a.v > 0 ? 1 : a.v < 0 ? -1 : 0);
}
/* max(0, a); 0 at 0. */
static inline ad_real ad_real_relu(ad_tape *t, ad_real a) { return ad_tape_rec1_(t, a.v > 0 ? a.v : 0, a, a.v > 0); }
/* max(a, b); ties split the gradient evenly. */
static inline ad_real ad_real_max(ad_tape *t, ad_real a, ad_real b)
{
    double da = a.v > b.v ? 1 : a.v < b.v ? 0 : 0.5;
    return ad_tape_rec2_(t, a.v >= b.v ? a.v : b.v, a, da, b, 1 - da);
}
/* min(a, b); ties split the gradient evenly. */
static inline ad_real ad_real_min(ad_tape *t, ad_real a, ad_real b)
{
    double da = a.v < b.v ? 1 : a.v > b.v ? 0 : 0.5;
    return ad_tape_rec2_(t, a.v <= b.v ? a.v : b.v, a, da, b, 1 - da);
}

#ifdef __cplusplus
}
#endif
#endif
