/* The flat scalar tape behind ad_real.h: growth, the backward sweep, one-call gradients, and
 * second order (the sweep in dual numbers, ad_real_hvp and ad_real_hessian). */
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
    ad_xfree(t->dpartial);
    ad_xfree(t->tangent);
    ad_xfree(t->adj_t);
    ad_xfree(t->xs);
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
    if (t->dual) { /* a first-order write while f runs on the dual form: see ad_real_hvp */
        t->status = AD_ERR_ARG;
        return false;
    }
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

/* Two sweeps at once, from y0 into A0 and from y1 into A1 (each n long, apart from each other
 * and from t->adj unless one of them is t->adj), for ad_real_jacobian: the two adjoint chains
 * are independent, so the processor runs them side by side where one sweep waits on the
 * store-to-load latency of its own updates.  Each chain does exactly what ad_tape_backward
 * does from its own y, in the same order (entries above its own top are not visited by it:
 * partial * 0 is not always 0), so the results are its bit for bit.  top0 and top1 are the
 * values' top entries, both >= 0. */
static void backward_pair(const ad_tape *t, ad_real y0, int64_t top0, double *restrict A0, ad_real y1,
                          int64_t top1, double *restrict A1)
{
    memset(A0, 0, (size_t)t->n * sizeof *A0);
    memset(A1, 0, (size_t)t->n * sizeof *A1);
    for (int k = 0; k < 2 && y0.i[k] >= 0; k++) A0[y0.i[k]] += y0.d[k];
    for (int k = 0; k < 2 && y1.i[k] >= 0; k++) A1[y1.i[k]] += y1.d[k];
    const int32_t *restrict end = t->end, *restrict arg = t->arg;
    const double *restrict partial = t->partial;
    /* the entries only the higher of the two reaches, swept alone ... */
    double *restrict A = top0 > top1 ? A0 : A1;
    int64_t top = top0 > top1 ? top0 : top1, both = top0 > top1 ? top1 : top0;
    int32_t i = (int32_t)top, hi = end[top];
    for (; i > both && hi > 0; i--) {
        int32_t lo = i ? end[i - 1] : 0;
        double a = A[i];
        for (int32_t e = lo; e < hi; e++) A[arg[e]] += partial[e] * a;
        hi = lo;
    }
    /* ... then both chains together, down to the variables as in ad_tape_backward */
    for (; hi > 0; i--) {
        int32_t lo = i ? end[i - 1] : 0;
        double a0 = A0[i], a1 = A1[i];
        for (int32_t e = lo; e < hi; e++) {
            double p = partial[e];
            int32_t j = arg[e];
            A0[j] += p * a0;
            A1[j] += p * a1;
        }
        hi = lo;
    }
}

ad_status ad_real_jacobian(ad_tape *t, ad_real_vec_fn f, int n, const double *x, void *user,
                           int m, double *value, double *J)
{
    if (!f || n < 0 || m < 0 || (n && !x) || (m && !J)) return AD_ERR_NULL;
    bool own = !t;
    if (own && !(t = ad_tape_new())) return AD_ERR_NOMEM;
    ad_tape_reset(t);
    /* the variables and the results live in the tape's xs (which ad_real_hvp uses for its
     * variables), so a reused tape allocates nothing once it is large enough */
    ad_status st = AD_OK;
    int64_t nv = (int64_t)n + m > 0 ? (int64_t)n + m : 1;
    if (t->xs_cap < nv) {
        if (!grow_to((void **)&t->xs, nv, sizeof *t->xs, &t->mallocs)) st = AD_ERR_NOMEM;
        else t->xs_cap = nv;
    }
    ad_real *v = t->xs, *y = st == AD_OK ? t->xs + n : NULL;
    for (int i = 0; !st && i < n; i++) v[i] = ad_real_var(t, x[i]);
    if (!st) f(t, v, n, y, m, user);
    /* The tape is recorded once and swept once per output, two outputs at a time where both
     * reach the tape: the first into adj + cap, the second into adj itself, so that after the
     * call adj holds the last output's adjoints, as after one sweep per output.  Variables are
     * entries 0..n-1 (made first on a reset tape), so a row of J is adj[0..n-1] (what
     * ad_real_grad reads) once the recording succeeded. */
    int i = 0;
    while (!st && i < m) {
        if ((st = t->status) != AD_OK) break;
        int64_t top0 = top_entry(t, y[i]), top1 = i + 1 < m ? top_entry(t, y[i + 1]) : -1;
        if (top0 >= 0 && top1 >= 0 && t->adj_cap < 2 * t->cap) {
            double *a = ad_xrealloc(t->adj, 2 * (size_t)t->cap * sizeof *a);
            if (!a) {
                st = t->status = AD_ERR_NOMEM;
                break;
            }
            t->adj = a;
            t->adj_cap = 2 * t->cap;
            t->mallocs++;
        }
        if (top0 >= 0 && top1 >= 0) {
            backward_pair(t, y[i], top0, t->adj + t->cap, y[i + 1], top1, t->adj);
            t->adj_n = t->n;
            const double *rows[2] = {t->adj + t->cap, t->adj};
            for (int r = 0; r < 2; r++, i++) {
                if (value) value[i] = y[i].v;
                if (n > 0) memcpy(J + (int64_t)i * n, rows[r], (size_t)n * sizeof *J);
            }
            continue;
        }
        if ((st = ad_tape_backward(t, y[i])) != AD_OK) break;
        if (value) value[i] = y[i].v;
        for (int j = 0; j < n; j++) J[(int64_t)i * n + j] = ad_real_grad(t, v[j]);
        i++;
    }
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

/* ---- second order: forward over reverse, the forward part done while f runs ----
 *
 * ad_real_hvp runs f on variables in the dual form (ad_real.h): every value's partial is a
 * dual number p + eps p', p' being p's derivative along v; every entry keeps its value's
 * tangent (tangent[]) and every edge its partial's derivative (dpartial[]).  The reverse sweep
 * in dual numbers then gives the gradient and its derivative along v, H v.  Preaccumulation
 * needs no special care: merging terms is linear algebra on the partials, and done on dual
 * partials it carries their derivatives along. */

/* Room for the dual form: `values` entries and `edges` edges in the first-order arrays and in
 * tangent, adj_t, dpartial; the tape's own room if that is more. */
static ad_status reserve_dual(ad_tape *t, int64_t values, int64_t edges)
{
    ad_status st = ad_tape_reserve(t, values > t->cap ? values : t->cap, edges > t->edge_cap ? edges : t->edge_cap);
    if (st != AD_OK) return st;
    if (t->cap2 < t->cap) {
        if (!grow_to((void **)&t->tangent, t->cap, sizeof *t->tangent, &t->mallocs) ||
            !grow_to((void **)&t->adj_t, t->cap, sizeof *t->adj_t, &t->mallocs))
            return t->status = AD_ERR_NOMEM;
        t->cap2 = t->cap;
    }
    if (t->edge_cap2 < t->edge_cap) {
        if (!grow_to((void **)&t->dpartial, t->edge_cap, sizeof *t->dpartial, &t->mallocs))
            return t->status = AD_ERR_NOMEM;
        t->edge_cap2 = t->edge_cap;
    }
    if (t->adj_cap < t->cap) {
        if (!grow_to((void **)&t->adj, t->cap, sizeof *t->adj, &t->mallocs)) return t->status = AD_ERR_NOMEM;
        t->adj_cap = t->cap;
    }
    return AD_OK;
}

/* The sweep in dual numbers from y (in the dual form or a constant): adj gets the gradient,
 * adj_t its derivative along the direction. */
static ad_status dual_backward(ad_tape *t, ad_real y)
{
    if (y.i[0] >= 0 || -2 - (int64_t)y.i[0] >= t->n) return t->status = AD_ERR_ARG;
    if (t->n > 0) {
        memset(t->adj, 0, (size_t)t->n * sizeof *t->adj);
        memset(t->adj_t, 0, (size_t)t->n * sizeof *t->adj_t);
    }
    t->adj_n = t->n;
    if (y.i[0] == -1) return AD_OK; /* a constant: every derivative is 0 */
    int32_t top = -2 - y.i[0];
    double *restrict A = t->adj, *restrict At = t->adj_t;
    const int32_t *restrict end = t->end, *restrict arg = t->arg;
    const double *restrict partial = t->partial, *restrict dpartial = t->dpartial;
    A[top] = y.d[0];
    At[top] = y.d[1];
    /* as ad_tape_backward: the variables, entries 0..n-1, have no edges and end the sweep */
    int32_t hi = end[top];
    for (int32_t i = top; hi > 0; i--) {
        int32_t lo = i ? end[i - 1] : 0;
        double a = A[i], at = At[i];
        for (int32_t e = lo; e < hi; e++) {
            A[arg[e]] += partial[e] * a;
            At[arg[e]] += partial[e] * at + dpartial[e] * a;
        }
        hi = lo;
    }
    return AD_OK;
}

/* One run of f on the dual form along v (or, v NULL, along unit vector `unit`) and the dual
 * sweep.  A run that finds the tape too small (AD_ERR_NOMEM from the inline recording, which
 * never allocates) is repeated on a tape with room for what it counted, and at least twice
 * as large: the count is a lower bound, since after the first entry that did not fit the
 * values stand on one entry and merge more than they would. */
static ad_status hvp_on(ad_tape *t, ad_real_fn f, int n, const double *x, const double *v, int unit,
                        void *user, double *value, double *grad, double *hv)
{
    ad_status st = reserve_dual(t, n, 0);
    if (st == AD_OK && t->xs_cap < n) {
        if (!grow_to((void **)&t->xs, n, sizeof *t->xs, &t->mallocs)) st = AD_ERR_NOMEM;
        else t->xs_cap = n;
    }
    ad_real y = ad_real_const(0);
    while (st == AD_OK) {
        ad_tape_reset(t);
        /* the variables are entries 0..n-1 with no edges, as in ad_real_gradient */
        if (n > 0) memset(t->end, 0, (size_t)n * sizeof *t->end);
        for (int i = 0; i < n; i++) {
            t->tangent[i] = v ? v[i] : i == unit;
            t->xs[i] = ad_real_dual_(x[i], i, 1, 0);
        }
        t->n = n;
        t->dual_short = 0;
        /* cap and edge_cap read 0 while f runs, so first-order writes reach ad_tape_grow_ */
        int64_t cap = t->cap, edge_cap = t->edge_cap;
        t->cap = t->edge_cap = 0;
        t->dual = true;
        y = f(t, t->xs, n, user);
        t->dual = false;
        t->cap = cap, t->edge_cap = edge_cap;
        st = t->status;
        if (st != AD_ERR_NOMEM) break;
        int64_t values = t->n + t->dual_short, edges = t->nedge + 2 * t->dual_short;
        values = values > 2 * cap ? values : 2 * cap, edges = edges > 2 * edge_cap ? edges : 2 * edge_cap;
        if (values + 1024 > INT32_MAX || edges + 2048 > INT32_MAX) break;
        t->status = AD_OK;
        st = reserve_dual(t, values + 1024, edges + 2048);
    }
    if (st == AD_OK) st = dual_backward(t, y);
    if (st != AD_OK) return st;
    if (value) *value = y.v;
    if (grad && n > 0) memcpy(grad, t->adj, (size_t)n * sizeof *grad);
    if (hv && n > 0) memcpy(hv, t->adj_t, (size_t)n * sizeof *hv);
    return AD_OK;
}

ad_status ad_real_hvp(ad_tape *t, ad_real_fn f, int n, const double *x, const double *v, void *user,
                      double *value, double *grad, double *hv)
{
    if (n < 0) return AD_ERR_ARG;
    if (!f || (n && (!x || !v || !hv))) return AD_ERR_NULL;
    bool own = !t;
    if (own && !(t = ad_tape_new())) return AD_ERR_NOMEM;
    ad_status st = hvp_on(t, f, n, x, v, -1, user, value, grad, hv);
    if (own) ad_tape_free(t);
    return st;
}

ad_status ad_real_hessian(ad_tape *t, ad_real_fn f, int n, const double *x, void *user,
                          double *value, double *grad, double *H)
{
    if (n < 0) return AD_ERR_ARG;
    if (!f || (n && (!x || !H))) return AD_ERR_NULL;
    bool own = !t;
    if (own && !(t = ad_tape_new())) return AD_ERR_NOMEM;
    /* H e_k is column k: each run writes it into row k, and the transpose puts it in place
     * (not averaged with row k: the symmetry is left for the caller to see, as the graph's
     * ad_hessian and PyTorch leave it) */
    ad_status st = hvp_on(t, f, n, x, NULL, 0, user, value, grad, n ? H : NULL);
    for (int k = 1; st == AD_OK && k < n; k++)
        st = hvp_on(t, f, n, x, NULL, k, user, NULL, NULL, H + (size_t)k * (size_t)n);
    for (int i = 0; st == AD_OK && i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double *u = &H[(size_t)i * (size_t)n + (size_t)j], *l = &H[(size_t)j * (size_t)n + (size_t)i];
            double keep = *u;
            *u = *l;
            *l = keep;
        }
    if (own) ad_tape_free(t);
    return st;
}
