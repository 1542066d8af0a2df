/* Extended Rosenbrock, f = sum 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2, in each form the
 * benchmarks time (one ad_real call per operation, one graph node per operation, whole
 * vectors) and its closed-form Hessian, shared by rosenbrock.c, hvp.c and hessian.c. */
#ifndef BENCH_ROSENBROCK_H
#define BENCH_ROSENBROCK_H
#include "ad.h"
#include "ad_real.h"

/* As a user differentiating the plain C loop would write it: one call per operation. */
static inline ad_real rosenbrock_tape(ad_tape *tp, const ad_real *x, int n, void *user)
{
    (void)user;
    ad_real f = ad_real_const(0);
    for (int i = 0; i + 1 < n; i++) {
        ad_real t = ad_real_sub(tp, x[i + 1], ad_real_mul(tp, x[i], x[i]));
        ad_real u = ad_real_scalar_sub(tp, 1, x[i]);
        f = ad_real_add(tp, f, ad_real_add(tp, ad_real_mul_scalar(tp, ad_real_mul(tp, t, t), 100), ad_real_mul(tp, u, u)));
    }
    return f;
}

/* The same loop on graph nodes (what a teaching trace of it would record). */
static inline ad_node *rosenbrock_graph(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)user;
    ad_node *one = ad_const_scalar(g, 1), *hundred = ad_const_scalar(g, 100), *f = ad_const_scalar(g, 0);
    for (int i = 0; i + 1 < n; i++) {
        ad_node *t = ad_sub(g, x[i + 1], ad_mul(g, x[i], x[i]));
        ad_node *u = ad_sub(g, one, x[i]);
        f = ad_add(g, f, ad_add(g, ad_mul(g, hundred, ad_mul(g, t, t)), ad_mul(g, u, u)));
    }
    return f;
}

/* The same over whole vectors: a = x[0:n-1], b = x[1:n]. */
static inline ad_node *rosenbrock_tensor(ad_graph *g, ad_node *x, int n)
{
    ad_node *a = ad_slice(g, x, 0, 0, n - 1), *b = ad_slice(g, x, 0, 1, n);
    ad_node *t = ad_sub(g, b, ad_mul(g, a, a));
    ad_node *u = ad_sub(g, ad_const_scalar(g, 1), a);
    return ad_sum(g, ad_add(g, ad_mul_scalar(g, ad_mul(g, t, t), 100), ad_mul(g, u, u)));
}

/* Row i of the Hessian, which is tridiagonal: entries i-1, i, i+1 into h[0..2]. */
static inline void rosenbrock_hessian_row(const double *x, int n, int i, double *h)
{
    h[0] = i > 0 ? -400 * x[i - 1] : 0;
    h[1] = (i + 1 < n ? 1200 * x[i] * x[i] - 400 * x[i + 1] + 2 : 0) + (i > 0 ? 200 : 0);
    h[2] = i + 1 < n ? -400 * x[i] : 0;
}

/* H v from the closed form. */
static inline void rosenbrock_hv(const double *x, const double *v, int n, double *hv)
{
    for (int i = 0; i < n; i++) {
        double h[3];
        rosenbrock_hessian_row(x, n, i, h);
        hv[i] = h[1] * v[i] + (i > 0 ? h[0] * v[i - 1] : 0) + (i + 1 < n ? h[2] * v[i + 1] : 0);
    }
}
#endif
