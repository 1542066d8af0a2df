/* The flat scalar tape behind ad_real.h: growth, the backward sweep, one-call gradients. */
#include "ad_real.h"
#include "internal.h"
#include <stdlib.h>

ad_tape *ad_tape_new(void)
{
    ad_tape *t = ad_xcalloc(1, sizeof *t);
    if (t) t->mallocs = 1;
    return t;
}

void ad_tape_free(ad_tape *t)
{
    if (!t) return;
    ad_xfree(t->end);
    ad_xfree(t->arg);
    ad_xfree(t->partial);
    ad_xfree(t->adj);
    ad_xfree(t);
}

void ad_tape_reset(ad_tape *t)
{
    if (!t) return;
    t->n = t->nedge = t->adj_n = 0;
    t->status = AD_OK;
}

static bool grow_to(void **p, int64_t n, size_t elem, uint64_t *mallocs)
{
    void *q = ad_xrealloc(*p, (size_t)n * elem);
    if (!q) return false;
    *p = q;
    ++*mallocs;
    return true;
}

ad_status ad_tape_reserve(ad_tape *t, int64_t values, int64_t edges)
{
    if (!t) return AD_ERR_NULL;
    if (values > INT32_MAX || edges > INT32_MAX || values < 0 || edges < 0) return t->status = AD_ERR_ARG;
    if (values > t->cap) {
        if (!grow_to((void **)&t->end, values, sizeof *t->end, &t->mallocs)) return t->status = AD_ERR_NOMEM;
        t->cap = (int32_t)values;
    }
    if (edges > t->edge_cap) {
        if (!grow_to((void **)&t->arg, edges, sizeof *t->arg, &t->mallocs) ||
            !grow_to((void **)&t->partial, edges, sizeof *t->partial, &t->mallocs))
            return t->status = AD_ERR_NOMEM;
        t->edge_cap = (int32_t)edges;
    }
    return AD_OK;
}

/* Doubling keeps recording amortised O(1); a failure marks the tape, recording goes on
 * computing values, and the sweep reports it. */
bool ad_tape_grow_(ad_tape *t, int edges)
{
    if (t->status != AD_OK) return false;
    int64_t v = t->n >= t->cap ? 2 * (int64_t)t->cap + 1024 : t->cap;
    int64_t e = t->nedge + edges > t->edge_cap ? 2 * (int64_t)t->edge_cap + 2048 : t->edge_cap;
    if (v > INT32_MAX || e > INT32_MAX) {
        t->status = AD_ERR_NOMEM;
        return false;
    }
    return ad_tape_reserve(t, v, e) == AD_OK;
}

/* The highest entry among y's terms; -1 for a constant, -2 if y is not a value of this tape
 * (a term names an entry the tape does not have, as a value kept across a reset can). */
static int64_t top_entry(const ad_tape *t, ad_real y)
{
    if (y.i[0] < 0) return y.i[1] < 0 ? -1 : -2;
    if (y.i[0] >= t->n || y.i[1] >= t->n) return -2;
    return y.i[0] > y.i[1] ? y.i[0] : y.i[1];
}

ad_status ad_tape_backward(ad_tape *t, ad_real y)
{
    if (!t) return AD_ERR_NULL;
    if (t->status != AD_OK) return t->status;
    int64_t top = top_entry(t, y);
    if (top == -2) return t->status = AD_ERR_ARG;
    if (t->adj_cap < t->n) {
        double *a = ad_xrealloc(t->adj, (size_t)t->cap * sizeof *a);
        if (!a) return t->status = AD_ERR_NOMEM;
        t->adj = a;
        t->adj_cap = t->cap;
        t->mallocs++;
    }
    double *adj = t->adj;
    if (t->n > 0) memset(adj, 0, (size_t)t->n * sizeof *adj);
    t->adj_n = t->n;
    if (top < 0) return AD_OK; /* a constant: every gradient is 0 */
    for (int k = 0; k < 2 && y.i[k] >= 0; k++) adj[y.i[k]] += y.d[k];
    /* restrict: the arrays never overlap, so adjoint updates need not reload the tape */
    double *restrict A = adj;
    const int32_t *restrict end = t->end, *restrict arg = t->arg;
    const double *restrict partial = t->partial;
    /* end[] never decreases, so once it is 0 no entry below has edges (the variables, when
     * they were made first): the sweep stops there. */
    int32_t hi = end[top];
    for (int32_t i = (int32_t)top; hi > 0; i--) {
        int32_t lo = i ? end[i - 1] : 0;
        double a = A[i];
        for (int32_t e = lo; e < hi; e++) A[arg[e]] += partial[e] * a;
        hi = lo;
    }
    return AD_OK;
}

double ad_real_grad(const ad_tape *t, ad_real x)
{
    /* only a value that is exactly one entry has an adjoint of its own */
    if (!t || x.i[0] < 0 || x.i[0] >= t->adj_n || x.i[1] >= 0 || x.d[0] != 1) return 0.0;
    return t->adj[x.i[0]];
}

ad_status ad_real_gradient(ad_tape *t, ad_real_fn f, int n, const double *x, void *user,
                           double *value, double *grad)
{
    if (!f || n < 0 || (n && !x)) return AD_ERR_NULL;
    bool own = !t;
    if (own && !(t = ad_tape_new())) return AD_ERR_NOMEM;
    ad_tape_reset(t);
    ad_status st = ad_tape_reserve(t, n > t->cap ? n : t->cap, t->edge_cap);
    ad_real *v = st == AD_OK ? ad_xmalloc((size_t)(n ? n : 1) * sizeof *v) : NULL;
    if (!v) st = AD_ERR_NOMEM;
    if (st == AD_OK) {
        /* The variables are entries 0..n-1 with no edges, made in one pass (what n calls of
         * ad_real_var would do); so after the sweep the gradient is adj[0..n-1] in order. */
        if (n > 0) memset(t->end, 0, (size_t)n * sizeof *t->end);
        for (int i = 0; i < n; i++) v[i] = ad_real_terms_(x[i], i, 1, -1, 0);
        t->n = n;
        ad_real y = f(t, v, n, user);
        st = ad_tape_backward(t, y);
        if (st == AD_OK && value) *value = y.v;
        if (st == AD_OK && grad && n > 0) memcpy(grad, t->adj, (size_t)n * sizeof *grad);
    }
    ad_xfree(v);
    if (own) ad_tape_free(t);
    return st;
}

/* f's value at shifted points gives the numeric derivative, ad_real_gradient the analytic
 * one; the scoring is the graph checker's. */
ad_status ad_real_gradcheck(ad_real_fn f, int n, const double *x, void *user,
                            const ad_check_opts *o, ad_check_report *rep)
{
    if (rep) *rep = (ad_check_report){.worst_input = -1, .worst_index = -1};
    if (!f || n < 0 || (n && !x)) return AD_ERR_NULL;
    double eps, rtol, atol;
    check_opts(o, &eps, &rtol, &atol);
    ad_check_report r = {.worst_input = -1, .worst_index = -1};
    ad_tape *t = ad_tape_new();
    double *p = ad_xmalloc((size_t)(n ? n : 1) * sizeof *p), *grad = ad_xmalloc((size_t)(n ? n : 1) * sizeof *grad);
    ad_status st = t && p && grad ? AD_OK : AD_ERR_NOMEM;
    double y0, worst = -1;
    if (st == AD_OK) {
        memcpy(p, x, (size_t)n * sizeof *p);
        st = ad_real_gradient(t, f, n, p, user, &y0, grad);
    }
    for (int i = 0; st == AD_OK && i < n; i++) {
        double keep = p[i], h = eps * fmax(1.0, fabs(keep)), yp, ym;
        p[i] = keep + h;
        st = ad_real_gradient(t, f, n, p, user, &yp, NULL);
        p[i] = keep - h;
        if (st == AD_OK) st = ad_real_gradient(t, f, n, p, user, &ym, NULL);
        p[i] = keep;
        if (st != AD_OK) break;
        check_record(&r, &worst, 0, i, grad[i], (yp - ym) / (2 * h), atol, rtol);
    }
    st = check_finish(&r, worst, st, rtol, atol);
    ad_xfree(p);
    ad_xfree(grad);
    ad_tape_free(t);
    if (rep) *rep = r;
    return st;
}
