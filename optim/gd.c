/* The lecture's gradient descent with its stopping rule, as a loop that owns its graph. */
#include "optim_impl.h"
#include <math.h>

ad_status optim_backprop_loss(optim *o, ad_graph *g, ad_node *loss, const char *fn, int64_t i, double *value)
{
    /* out of memory inside the graph is the caller's NOMEM, not a fault of their loss */
    ad_status oom = ad_status_of(g) == AD_ERR_NOMEM ? AD_ERR_NOMEM : AD_ERR_LOSS;
    if (!loss || ad_status_of(g) != AD_OK)
        return optim_failo(o, oom, "%s: iteration %lld: the loss callback failed: %s", fn, (long long)i,
                           ad_error(g) ? ad_error(g) : "it returned NULL");
    if (ad_node_size(loss) != 1) {
        char shape[64];
        ad_shape s = ad_node_shape(loss);
        return optim_failo(o, AD_ERR_LOSS, "%s: iteration %lld: the loss has shape %s, want one element", fn,
                           (long long)i, ad_shape_str(&s, shape, sizeof shape));
    }
    double v = ad_value(loss);
    *value = v;
    if (!isfinite(v))
        return optim_failo(o, AD_ERR_NUMERIC, "%s: iteration %lld: the loss is %s (diverged: lr = %g too large?)", fn,
                           (long long)i, isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf", optim_lr(o));
    optim_zero_grad(o);
    ad_status bst = ad_backward(g, loss);
    if (bst != AD_OK)
        return optim_failo(o, bst == AD_ERR_NOMEM ? AD_ERR_NOMEM : AD_ERR_LOSS,
                           "%s: iteration %lld: backward failed: %s", fn, (long long)i, ad_error(g));
    return AD_OK;
}

/* L(theta) and its gradient at the parameters' current values. */
static ad_status eval(optim *o, ad_graph *g, optim_loss_fn loss, void *user, int64_t i, double *value)
{
    ad_graph_reset(g);
    return optim_backprop_loss(o, g, loss(g, user), "optim_gd", i, value);
}

ad_status optim_gd(optim *o, optim_loss_fn loss, void *user, const optim_gd_cfg *cfg, optim_result *res)
{
    optim_result r = {.iters = 0, .loss = NAN};
    if (res) *res = r;
    if (!o) return AD_ERR_NULL;
    if (!loss || !cfg) return optim_failo(o, AD_ERR_NULL, "optim_gd: the loss callback or cfg is NULL");
    /* eps = 0 could never be met (a decrease d with 0 <= d < 0), so it is refused. */
    if (!(cfg->eps > 0) || cfg->max_iter < 1)
        return optim_failo(o, AD_ERR_ARG, "optim_gd: eps = %g, max_iter = %lld, want eps > 0 and max_iter >= 1",
                           cfg->eps, (long long)cfg->max_iter);
    ad_graph *g = ad_graph_new();
    if (!g) return optim_failo(o, AD_ERR_NOMEM, "optim_gd: out of memory for a graph");
    double prev, cur = NAN, drop = NAN;
    ad_status st = eval(o, g, loss, user, 0, &prev);
    r.loss = prev;
    bool converged = false;
    for (int64_t i = 0; st == AD_OK && i < cfg->max_iter && !converged; i++) {
        if ((st = optim_step(o)) != AD_OK) break;  /* theta_{i+1} = theta_i - eta grad L(theta_i) */
        r.iters = i + 1;
        cur = NAN;
        st = eval(o, g, loss, user, i + 1, &cur);
        r.loss = cur; /* an inf loss is reported too */
        if (st != AD_OK) break;
        if (cfg->on_step && !cfg->on_step(o, cur, user)) {
            st = optim_failo(o, AD_STOPPED, "optim_gd: stopped by on_step after %lld iterations (loss %.17g)",
                             (long long)r.iters, cur);
            break;
        }
        drop = prev - cur;                            /* L(theta_i) - L(theta_{i+1}) */
        converged = drop >= 0 && drop < cfg->eps;
        prev = cur;
    }
    if (st == AD_OK && !converged)
        st = optim_failo(o, AD_NOT_CONVERGED,
                         "optim_gd: not converged in %lld iterations: last loss %.17g (last decrease %g, eps %g)",
                         (long long)cfg->max_iter, r.loss, drop, cfg->eps);
    ad_graph_free(g);
    if (res) *res = r;
    return st;
}
