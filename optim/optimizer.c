/* The optimizer object: configuration defaults and checks, creation with every state buffer
 * allocated up front, accessors and error messages.  The update rules are in rules.c. */
#include "optim_impl.h"
#include "ad_io.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

const char *optim_kind_name(optim_kind k)
{
    switch (k) {
    case OPTIM_GD: return "gd";
    case OPTIM_MOMENTUM: return "momentum";
    case OPTIM_ADAM: return "adam";
    case OPTIM_ADAMW: return "adamw";
    case OPTIM_RMSPROP: return "rmsprop";
    }
    return "unknown";
}

ad_status optim_fail(ad_status st, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(err, errlen, NULL, NULL, fmt, ap);
    va_end(ap);
    return st;
}

ad_status optim_failo(optim *o, ad_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(o->msg, sizeof o->msg, NULL, NULL, fmt, ap);
    va_end(ap);
    return st;
}

optim_cfg optim_defaults(optim_kind kind, double lr)
{
    optim_cfg c = {.kind = kind, .lr = lr};
    switch (kind) {
    case OPTIM_GD: break;
    case OPTIM_MOMENTUM: c.momentum = 0.9; break; /* the slide's "e.g. gamma = 0.9" */
    case OPTIM_ADAM:
    case OPTIM_ADAMW:
        c.beta1 = 0.9, c.beta2 = 0.999, c.eps = 1e-8;           /* PyTorch's, to compare runs */
        c.weight_decay = kind == OPTIM_ADAMW ? 0.01 : 0.0;
        break;
    case OPTIM_RMSPROP: c.alpha = 0.99; c.eps = 1e-8; break;
    }
    return c;
}

/* True for x in [lo, hi) (or [lo, hi] when closed); false for NaN. */
static bool in_range(double x, double lo, double hi, bool closed)
{
    return x >= lo && (closed ? x <= hi : x < hi);
}

ad_status optim_cfg_check(const optim_cfg *c, char *err, size_t errlen)
{
    if (!c) return optim_fail(AD_ERR_NULL, err, errlen, "optim_new: cfg is NULL");
    const char *k = optim_kind_name(c->kind);
    if (!strcmp(k, "unknown"))
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: unknown kind %d", (int)c->kind);
    if (!in_range(c->lr, 0, INFINITY, false))
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s: lr = %g, want a finite rate >= 0", k, c->lr);
    if (!in_range(c->weight_decay, 0, INFINITY, false))
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s: weight_decay = %g, want >= 0", k, c->weight_decay);
    if (!in_range(c->clip_norm, 0, INFINITY, false) || !in_range(c->clip_value, 0, INFINITY, false))
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s: clip_norm = %g, clip_value = %g, want >= 0 (0: off)",
                          k, c->clip_norm, c->clip_value);
    if (c->form != OPTIM_FORM_LECTURE && c->form != OPTIM_FORM_PYTORCH)
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s: unknown momentum form %d", k, (int)c->form);
    if (c->nesterov && c->kind != OPTIM_MOMENTUM)
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s: nesterov needs kind OPTIM_MOMENTUM", k);
    /* A field another kind uses but this one ignores would silently do nothing: refuse it. */
    bool uses_momentum = c->kind == OPTIM_MOMENTUM || c->kind == OPTIM_RMSPROP;
    if (!uses_momentum && c->momentum != 0)
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s: momentum = %g given, but %s has none%s", k,
                          c->momentum, k, c->kind == OPTIM_GD ? " (use kind OPTIM_MOMENTUM)" : "");
    switch (c->kind) {
    case OPTIM_GD: break;
    case OPTIM_MOMENTUM:
        if (!in_range(c->momentum, 0, 1, false) || c->momentum == 0)
            return optim_fail(AD_ERR_ARG, err, errlen,
                              "optim_new: momentum: momentum (gamma) = %g, want 0 < gamma < 1 (the lecture uses 0.9; "
                              "start from optim_defaults)", c->momentum);
        break;
    case OPTIM_ADAM:
    case OPTIM_ADAMW:
        if (!in_range(c->beta1, 0, 1, false) || !in_range(c->beta2, 0, 1, false) || c->beta2 == 0)
            return optim_fail(AD_ERR_ARG, err, errlen,
                              "optim_new: %s: beta1 = %g, beta2 = %g, want 0 <= beta1 < 1 and 0 < beta2 < 1 (defaults 0.9, "
                              "0.999: start from optim_defaults)", k, c->beta1, c->beta2);
        break;
    case OPTIM_RMSPROP:
        if (!in_range(c->alpha, 0, 1, false) || c->alpha == 0)
            return optim_fail(AD_ERR_ARG, err, errlen,
                              "optim_new: rmsprop: alpha = %g, want 0 < alpha < 1 (default 0.99: start from optim_defaults)",
                              c->alpha);
        if (!in_range(c->momentum, 0, 1, false))
            return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: rmsprop: momentum = %g, want 0 <= momentum < 1",
                              c->momentum);
        break;
    }
    bool uses_eps = c->kind == OPTIM_ADAM || c->kind == OPTIM_ADAMW || c->kind == OPTIM_RMSPROP;
    if (uses_eps && !(c->eps > 0 && isfinite(c->eps)))
        return optim_fail(AD_ERR_ARG, err, errlen,
                          "optim_new: %s: eps = %g, want > 0 (it keeps g / sqrt(v) finite where v = 0; default 1e-8)", k, c->eps);
    char why[200];
    if (optim_schedule_check(&c->schedule, why, sizeof why) != AD_OK)
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: %s", why);
    return AD_OK;
}

int optim_slots_for(const optim_cfg *c, const char **names)
{
    switch (c->kind) {
    case OPTIM_GD: return 0;
    case OPTIM_MOMENTUM:
        /* Different names for different contents: the lecture's v includes -eta, PyTorch's
         * buffer does not, so a file of one form cannot be loaded as the other. */
        names[0] = c->form == OPTIM_FORM_LECTURE ? "velocity" : "momentum_buffer";
        return 1;
    case OPTIM_ADAM:
    case OPTIM_ADAMW: names[0] = "exp_avg"; names[1] = "exp_avg_sq"; return 2;
    case OPTIM_RMSPROP:
        names[0] = "square_avg";
        if (c->momentum == 0) return 1;
        names[1] = "momentum_buffer";
        return 2;
    }
    return 0;
}

void optim_free(optim *o)
{
    if (!o) return;
    optim_fuse(o, false);
    if (o->state)
        for (int i = 0; i < o->n * o->nslots; i++) ad_tensor_free(o->state[i]);
    ad_free(o->state);
    ad_free(o->params);
    ad_free(o);
}

/* Checks parameter i: present, with a gradient buffer, not listed twice. */
static ad_status check_param(ad_tensor *const *params, int i, char *err, size_t errlen)
{
    ad_tensor *p = params[i];
    if (!p) return optim_fail(AD_ERR_NULL, err, errlen, "optim_new: parameter %d is NULL", i);
    const char *name = ad_tensor_name(p) ? ad_tensor_name(p) : "";
    if (!ad_tensor_grad_data(p))
        return optim_fail(AD_ERR_ARG, err, errlen,
                          "optim_new: parameter %d (\"%s\") has no gradient buffer (made with ad_tensor_new, not "
                          "ad_param_new?)", i, name);
    /* A duplicate would be updated twice per step; n is a model's tensor count, so O(n^2)
     * is nothing next to one training step. */
    for (int k = 0; k < i; k++)
        if (params[k] == p)
            return optim_fail(AD_ERR_ARG, err, errlen, "optim_new: parameters %d and %d are the same tensor (\"%s\")",
                              k, i, name);
    return AD_OK;
}

optim *optim_new(ad_tensor *const *params, int n, const optim_cfg *cfg, char *err, size_t errlen)
{
    if (optim_cfg_check(cfg, err, errlen) != AD_OK) return NULL;
    if (!params || n < 1) {
        optim_fail(params ? AD_ERR_ARG : AD_ERR_NULL, err, errlen,
                   "optim_new: %s: params = %p, n = %d, want at least one parameter", optim_kind_name(cfg->kind),
                   (const void *)params, n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (check_param(params, i, err, errlen) != AD_OK) return NULL;
    optim *o = ad_calloc(1, sizeof *o);
    if (!o) goto nomem;
    o->cfg = *cfg;
    o->n = n;
    o->nslots = optim_slots_for(cfg, o->slot);
    o->params = ad_malloc((size_t)n * sizeof *o->params);
    if (!o->params) goto nomem;
    memcpy(o->params, params, (size_t)n * sizeof *o->params);
    for (int i = 0; i < n; i++) o->total += ad_tensor_size(params[i]);
    if (o->nslots) {
        o->state = ad_calloc((size_t)n * (size_t)o->nslots, sizeof *o->state);
        if (!o->state) goto nomem;
        for (int i = 0; i < n * o->nslots; i++) {
            ad_tensor *p = params[i / o->nslots];
            if (!(o->state[i] = ad_tensor_new(ad_tensor_dtype(p), ad_tensor_shape(p)))) goto nomem;
        }
    }
    return o;
nomem:
    optim_free(o);
    optim_fail(AD_ERR_NOMEM, err, errlen, "optim_new: out of memory for %d parameters", n);
    return NULL;
}

void optim_zero_grad(optim *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) ad_tensor_zero_grad(o->params[i]);
}

ad_status optim_set_lr(optim *o, double lr)
{
    if (!o) return AD_ERR_NULL;
    if (!in_range(lr, 0, INFINITY, false))
        return optim_failo(o, AD_ERR_ARG, "optim_set_lr: lr = %g, want a finite rate >= 0", lr);
    o->cfg.lr = lr;
    return AD_OK;
}

double optim_lr(const optim *o) { return o ? optim_schedule_lr(&o->cfg.schedule, o->cfg.lr, o->step) : NAN; }
int64_t optim_steps(const optim *o) { return o ? o->step : 0; }
optim_cfg optim_get_cfg(const optim *o) { return o ? o->cfg : (optim_cfg){0}; }
int optim_num_params(const optim *o) { return o ? o->n : 0; }
ad_tensor *optim_param(const optim *o, int i) { return o && i >= 0 && i < o->n ? o->params[i] : NULL; }
const char *optim_error(const optim *o) { return o ? o->msg : "optim: NULL optimizer"; }

ad_tensor *optim_state(const optim *o, int i, const char *name)
{
    if (!o || !name || i < 0 || i >= o->n) return NULL;
    for (int s = 0; s < o->nslots; s++)
        if (!strcmp(o->slot[s], name)) return o->state[i * o->nslots + s];
    return NULL;
}
