/* Differentiating a C function in one call, and the finite-difference gradient checker. */
#include "internal.h"
#include <stdlib.h>

ad_node *record_fn(ad_graph *g, const char *who, ad_fn f, int n, const double *x, void *user,
                   int64_t m, ad_node ***xs)
{
    ad_graph_reset(g);
    ad_node **v = *xs = arena_alloc(g, (size_t)(n ? n : 1) * sizeof *v);
    if (!v) {
        ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory for %d inputs", who, n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!(v[i] = ad_var(g, NULL, x[i]))) return NULL;
    ad_node *y = f(g, v, n, user);
    if (!y) {
        if (!g->status) ad_set_error(g, AD_ERR_NULL, "%s: the function returned NULL", who);
        return NULL;
    }
    if (m >= 0 && node_size(y) != m) {
        char b[96];
        ad_shape s = node_shape(y);
        ad_set_error(g, AD_ERR_SHAPE, "%s: the result has shape %s, not %lld elements", who,
                     ad_shape_str(&s, b, sizeof b), (long long)m);
        return NULL;
    }
    return y;
}

ad_status ad_gradient(ad_graph *g, ad_fn f, int n, const double *x, void *user,
                      double *value, double *grad)
{
    if (!f || n < 0 || (n && !x)) return g ? ad_set_error(g, AD_ERR_NULL, "gradient: NULL function or point") : AD_ERR_NULL;
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **v, *y = record_fn(g, "gradient", f, n, x, user, -1, &v);
    ad_status st = y ? ad_backward(g, y) : g->status;
    if (!st && value) *value = ad_value(y);
    if (!st && grad)
        for (int i = 0; i < n; i++) grad[i] = v[i]->g;
    if (own) ad_graph_free(g);
    return st;
}

void check_opts(const ad_check_opts *o, double *eps, double *rtol, double *atol)
{
    *eps = o && o->eps > 0 ? o->eps : 1e-6;
    *rtol = o && o->rtol > 0 ? o->rtol : 1e-5;
    *atol = o && o->atol > 0 ? o->atol : 1e-7;
}

void check_record(ad_check_report *r, double *worst, int input, int64_t index, double analytic,
                  double numeric, double atol, double rtol)
{
    double err = fabs(analytic - numeric), score = err / (atol + rtol * fabs(numeric));
    if (!(score <= *worst)) {
        *worst = isnan(score) ? INFINITY : score;
        r->worst_input = input, r->worst_index = index;
        r->analytic = analytic, r->numeric = numeric;
    }
    r->max_abs_err = fmax(r->max_abs_err, err);
    r->max_rel_err = fmax(r->max_rel_err, err / fmax(fabs(numeric), 1e-300));
    r->checked++;
}

ad_status check_finish(ad_check_report *r, double worst, ad_status st, double rtol, double atol)
{
    if (st != AD_OK) {
        if (!r->msg[0]) snprintf(r->msg, sizeof r->msg, "gradcheck: evaluation failed (status %d)", (int)st);
        return st;
    }
    if (worst <= 1) return AD_OK;
    snprintf(r->msg, sizeof r->msg,
             "gradcheck: input %d element %lld: analytic %.10g, numeric %.10g (rtol %g, atol %g)",
             r->worst_input, (long long)r->worst_index, r->analytic, r->numeric, rtol, atol);
    return AD_ERR_CHECK;
}

/* One evaluation for the checker: inputs become variables, a non-scalar result is projected
 * on proj (made on first use), and grads (if given) receive the analytic gradient. */
typedef struct {
    ad_fn f;
    int n;
    const ad_shape *shapes;
    double **vals;
    void *user;
    double *proj;
    int64_t proj_n;
} check_ctx;

static ad_status evaluate(ad_graph *g, check_ctx *c, double *value, double **grads)
{
    ad_graph_reset(g);
    ad_node **v = arena_alloc(g, (size_t)(c->n ? c->n : 1) * sizeof *v);
    if (!v) return ad_set_error(g, AD_ERR_NOMEM, "gradcheck: out of memory");
    for (int i = 0; i < c->n; i++)
        if (!(v[i] = ad_var_array(g, NULL, AD_F64, c->shapes[i], c->vals[i]))) return g->status;
    ad_node *y = c->f(g, v, c->n, c->user);
    if (!y) return g->status ? g->status : ad_set_error(g, AD_ERR_NULL, "gradcheck: the function returned NULL");
    int64_t m = node_size(y);
    if (!c->proj && m > 1) {
        if (!(c->proj = ad_xmalloc((size_t)m * sizeof *c->proj))) return AD_ERR_NOMEM;
        ad_rng r;
        ad_rng_seed(&r, 12345);
        for (int64_t i = 0; i < m; i++) c->proj[i] = ad_rng_uniform(&r) * 2 - 1;
        c->proj_n = m;
    }
    if (m > 1 && m != c->proj_n)
        return ad_set_error(g, AD_ERR_SHAPE, "gradcheck: the result's size changed between calls");
    double s = 0;
    for (int64_t i = 0; i < m; i++) s += (m > 1 ? c->proj[i] : 1.0) * ad_node_get(y, i);
    *value = s;
    if (!grads) return AD_OK;
    ad_status st = m > 1 ? ad_backward_seed(g, y, c->proj) : ad_backward(g, y);
    if (st != AD_OK) return st;
    for (int i = 0; i < c->n; i++)
        for (int64_t j = 0; j < ad_shape_size(&c->shapes[i]); j++) grads[i][j] = ad_node_grad_get(v[i], j);
    return AD_OK;
}

static ad_status check_core(check_ctx *c, const ad_check_opts *o, ad_check_report *rep)
{
    double eps, rtol, atol;
    check_opts(o, &eps, &rtol, &atol);
    ad_check_report r = {.worst_input = -1, .worst_index = -1};
    ad_graph *g = ad_graph_new();
    double **grads = ad_xcalloc((size_t)(c->n ? c->n : 1), sizeof *grads);
    ad_status st = g && grads ? AD_OK : AD_ERR_NOMEM;
    for (int i = 0; st == AD_OK && i < c->n; i++)
        if (!(grads[i] = ad_xmalloc((size_t)ad_shape_size(&c->shapes[i]) * sizeof **grads + 1))) st = AD_ERR_NOMEM;
    double y0, worst = -1;
    if (st == AD_OK) st = evaluate(g, c, &y0, grads);
    for (int i = 0; st == AD_OK && i < c->n; i++)
        for (int64_t j = 0; st == AD_OK && j < ad_shape_size(&c->shapes[i]); j++) {
            double keep = c->vals[i][j], h = eps * fmax(1.0, fabs(keep)), yp, ym;
            c->vals[i][j] = keep + h;
            st = evaluate(g, c, &yp, NULL);
            c->vals[i][j] = keep - h;
            if (st == AD_OK) st = evaluate(g, c, &ym, NULL);
            c->vals[i][j] = keep;
            if (st != AD_OK) break;
            check_record(&r, &worst, i, j, grads[i][j], (yp - ym) / (2 * h), atol, rtol);
        }
    if (st != AD_OK && g && ad_error(g)) snprintf(r.msg, sizeof r.msg, "%s", ad_error(g));
    st = check_finish(&r, worst, st, rtol, atol);
    for (int i = 0; grads && i < c->n; i++) ad_xfree(grads[i]);
    ad_xfree(grads);
    ad_xfree(c->proj);
    ad_graph_free(g);
    if (rep) *rep = r;
    return st;
}

ad_status ad_gradcheck(ad_fn f, int n, const double *x, void *user, const ad_check_opts *o,
                       ad_check_report *rep)
{
    if (rep) *rep = (ad_check_report){.worst_input = -1, .worst_index = -1};
    if (!f || n < 0 || (n && !x)) return AD_ERR_NULL;
    ad_shape *shapes = ad_xcalloc((size_t)(n ? n : 1), sizeof *shapes);
    double **vals = ad_xcalloc((size_t)(n ? n : 1), sizeof *vals);
    double *copy = ad_xmalloc((size_t)(n ? n : 1) * sizeof *copy);
    ad_status st = AD_ERR_NOMEM;
    if (shapes && vals && copy) {
        for (int i = 0; i < n; i++) shapes[i] = AD_SHAPE0, copy[i] = x[i], vals[i] = &copy[i];
        check_ctx c = {f, n, shapes, vals, user, NULL, 0};
        st = check_core(&c, o, rep);
    }
    ad_xfree(shapes);
    ad_xfree(vals);
    ad_xfree(copy);
    return st;
}

ad_status ad_gradcheck_tensors(ad_fn f, int n, ad_tensor *const *inputs, void *user,
                               const ad_check_opts *o, ad_check_report *rep)
{
    if (rep) *rep = (ad_check_report){.worst_input = -1, .worst_index = -1};
    if (!f || n < 0 || (n && !inputs)) return AD_ERR_NULL;
    for (int i = 0; i < n; i++)
        if (!inputs[i] || inputs[i]->dtype != AD_F64) {
            if (rep) snprintf(rep->msg, sizeof rep->msg, "gradcheck: input %d is %s", i,
                              inputs[i] ? "not float64" : "NULL");
            return inputs[i] ? AD_ERR_DTYPE : AD_ERR_NULL;
        }
    ad_shape *shapes = ad_xcalloc((size_t)(n ? n : 1), sizeof *shapes);
    double **vals = ad_xcalloc((size_t)(n ? n : 1), sizeof *vals);
    ad_status st = AD_ERR_NOMEM;
    if (shapes && vals) {
        for (int i = 0; i < n; i++) shapes[i] = inputs[i]->shape, vals[i] = inputs[i]->data;
        check_ctx c = {f, n, shapes, vals, user, NULL, 0};
        st = check_core(&c, o, rep);
    }
    ad_xfree(shapes);
    ad_xfree(vals);
    return st;
}
