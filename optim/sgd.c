/* The lecture's minibatch SGD as a loop that owns its graph and its sampler. */
#include "optim_impl.h"
#include <math.h>

ad_status optim_sgd(optim *o, optim_batch_loss_fn loss, void *user, const optim_sgd_cfg *cfg, optim_result *res)
{
    optim_result r = {.iters = 0, .loss = NAN};
    if (res) *res = r;
    if (!o) return AD_ERR_NULL;
    if (!loss || !cfg) return optim_failo(o, AD_ERR_NULL, "optim_sgd: the loss callback or cfg is NULL");
    if (cfg->steps < 0 || cfg->n < 1 || cfg->batch < 1 || (cfg->batch > cfg->n && !cfg->replacement))
        return optim_failo(o, AD_ERR_ARG, "optim_sgd: n = %lld, batch = %lld, steps = %lld, want 1 <= batch (<= n "
                           "without replacement) and steps >= 0", (long long)cfg->n, (long long)cfg->batch,
                           (long long)cfg->steps);
    ad_graph *g = ad_graph_new();
    optim_sampler *s = optim_sampler_new(cfg->n, cfg->batch, cfg->seed, cfg->replacement, NULL, 0);
    ad_status st = AD_OK;
    if (!g || !s) st = optim_failo(o, AD_ERR_NOMEM, "optim_sgd: out of memory for a graph and %lld indices",
                                   (long long)cfg->n);
    for (int64_t i = 0; st == AD_OK && i < cfg->steps; i++) {
        int64_t t = optim_steps(o); /* the batch follows the optimizer, so resuming continues it */
        const int64_t *batch = optim_sampler_batch(s, t);
        ad_graph_reset(g);
        if ((st = optim_backprop_loss(o, g, loss(g, batch, cfg->batch, user), "optim_sgd", t, &r.loss)) != AD_OK)
            break;
        if ((st = optim_step(o)) != AD_OK) break; /* theta_{i+1} = theta_i - eta grad L_B(theta_i) */
        r.iters = i + 1;
        if (cfg->on_step && !cfg->on_step(o, r.loss, user))
            st = optim_failo(o, AD_STOPPED, "optim_sgd: stopped by on_step after %lld steps (loss %.17g)",
                             (long long)r.iters, r.loss);
    }
    optim_sampler_free(s);
    ad_graph_free(g);
    if (res) *res = r;
    return st;
}
