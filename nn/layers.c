/* Linear layers, activations, dropout and weight initialisation: the pieces an MLP is made of,
 * built only from ad's public API. */
#include "nn.h"
#include "model_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void nn_init_xavier(ad_tensor *w, ad_rng *rng)
{
    ad_shape s = ad_tensor_shape(w);
    if (!w || !rng || s.rank != 2 || s.dim[0] + s.dim[1] < 1) return;
    double a = sqrt(6.0 / (double)(s.dim[0] + s.dim[1]));
    ad_tensor_rand_uniform(w, rng, -a, a);
}

void nn_init_he(ad_tensor *w, ad_rng *rng, double slope)
{
    ad_shape s = ad_tensor_shape(w);
    if (!w || !rng || s.rank != 2 || s.dim[1] < 1) return;
    ad_tensor_rand_normal(w, rng, 0.0, sqrt(2.0 / ((1.0 + slope * slope) * (double)s.dim[1])));
}

ad_status nn_linear_init(nn_linear *l, const char *prefix, int in, int out, ad_dtype t,
                         nn_init init, double slope, ad_rng *rng)
{
    if (!l || !rng) return AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    if (in < 1 || out < 1 || (t != AD_F32 && t != AD_F64)) return AD_ERR_ARG;
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix ? prefix : "linear");
    l->weight = ad_param_new(name, t, AD_SHAPE(out, in));
    snprintf(name, sizeof name, "%s.bias", prefix ? prefix : "linear");
    l->bias = ad_param_new(name, t, AD_SHAPE(out));
    if (!l->weight || !l->bias) {
        nn_linear_release(l);
        return AD_ERR_NOMEM;
    }
    l->in = in, l->out = out;
    if (init == NN_INIT_XAVIER) nn_init_xavier(l->weight, rng);
    else nn_init_he(l->weight, rng, slope);
    return AD_OK;
}

void nn_linear_release(nn_linear *l)
{
    if (!l) return;
    ad_tensor_free(l->weight);
    ad_tensor_free(l->bias);
    memset(l, 0, sizeof *l);
}

/* The layer on x, checked, with activation act (AD_ACT_NONE: none) fused into the node. */
static ad_node *linear_checked(ad_graph *g, const char *fn, const nn_linear *l, ad_node *x, ad_act act, double slope)
{
    if (!g) return NULL;
    if (!l || !l->weight || !x) {
        ad_set_error(g, AD_ERR_NULL, "%s: %s is NULL", fn, x ? "layer" : "input");
        return NULL;
    }
    ad_shape s = ad_node_shape(x);
    char b[96];
    if (s.rank != 2 || s.dim[1] != l->in) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: input %s does not fit a layer of %d inputs (expected [N,%d])", fn,
                     ad_shape_str(&s, b, sizeof b), l->in, l->in);
        return NULL;
    }
    if (ad_node_dtype(x) != ad_tensor_dtype(l->weight)) {
        ad_set_error(g, AD_ERR_DTYPE, "%s: input %s is %s, the layer is %s", fn, b,
                     ad_dtype_name(ad_node_dtype(x)), ad_dtype_name(ad_tensor_dtype(l->weight)));
        return NULL;
    }
    return ad_linear_act(g, x, ad_param(g, l->weight), l->bias ? ad_param(g, l->bias) : NULL, act, slope);
}

ad_node *nn_linear_forward(ad_graph *g, const nn_linear *l, ad_node *x)
{
    return linear_checked(g, "nn_linear_forward", l, x, AD_ACT_NONE, 0);
}

ad_node *nn_linear_act_forward(ad_graph *g, const nn_linear *l, ad_node *x, nn_act act, double slope)
{
    static const ad_act acts[] = {[NN_RELU] = AD_ACT_RELU, [NN_LEAKY_RELU] = AD_ACT_LEAKY_RELU,
                                  [NN_SIGMOID] = AD_ACT_SIGMOID, [NN_TANH] = AD_ACT_TANH};
    if ((int)act < 0 || (size_t)act >= sizeof acts / sizeof *acts) {
        if (g) ad_set_error(g, AD_ERR_ARG, "nn_linear_act_forward: unknown activation %d", (int)act);
        return NULL;
    }
    return linear_checked(g, "nn_linear_act_forward", l, x, acts[act], slope);
}

ad_node *nn_activate(ad_graph *g, ad_node *x, nn_act act, double slope)
{
    switch (act) {
    case NN_RELU: return ad_relu(g, x);
    case NN_LEAKY_RELU: return ad_leaky_relu(g, x, slope);
    case NN_SIGMOID: return ad_sigmoid(g, x);
    case NN_TANH: return ad_tanh(g, x);
    }
    ad_set_error(g, AD_ERR_ARG, "nn_activate: unknown activation %d", (int)act);
    return NULL;
}

ad_node *nn_dropout(ad_graph *g, ad_node *x, double p, bool inverted, nn_mode mode,
                    ad_rng *rng)
{
    if (!g) return NULL;
    if (!(p >= 0 && p < 1)) {
        ad_set_error(g, AD_ERR_ARG, "nn_dropout: probability %g outside [0,1)", p);
        return NULL;
    }
    if (p == 0 || !x) return x;
    if (mode == NN_TRAIN) {
        if (!rng) {
            ad_set_error(g, AD_ERR_NULL, "nn_dropout: rng is NULL");
            return NULL;
        }
        return ad_dropout(g, x, p, inverted, rng);
    }
    /* The lecture: "the activation of a node is multiplied with (1-p) ... such that it matches
     * expectation under dropout".  Inverted dropout did that scaling at training time. */
    return inverted ? x : ad_mul_scalar(g, x, 1.0 - p);
}

/* ---- layers of any model (nn_model) ---- */

/* torch.nn's default for weights and biases of Linear and Conv: kaiming_uniform_ with
 * a = sqrt(5) gives the bound 1/sqrt(fan_in) for the weight, and the bias uses the same. */
static void init_fan_in(ad_tensor *t, ad_rng *rng, int64_t fan_in)
{
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0;
    if (t) ad_tensor_rand_uniform(t, rng, -bound, bound);
}



ad_status nn_linear_add(nn_model *m, nn_linear *l, const char *prefix, int in, int out, bool bias, ad_rng *rng)
{
    if (!m || !l || !rng) return m ? model_fail(m, AD_ERR_NULL, "nn_linear_add: %s is NULL", l ? "rng" : "layer") : AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    ad_status st = model_check_sizes(m, "nn_linear_add", 2, (const char *[]){"in", "out"}, (int[]){in, out});
    if (st) return st;
    char name[256];
    l->weight = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "weight"), AD_SHAPE(out, in));
    if (!l->weight || (bias && !(l->bias = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "bias"), AD_SHAPE(out)))))
        return model_status(m);
    l->in = in, l->out = out;
    init_fan_in(l->weight, rng, in);
    init_fan_in(l->bias, rng, in);
    return AD_OK;
}

ad_status nn_conv2d_add(nn_model *m, nn_conv2d *l, const char *prefix, int in, int out, int kh, int kw,
                        const ad_conv_opts *o, bool bias, ad_rng *rng)
{
    if (!m || !l || !rng) return m ? model_fail(m, AD_ERR_NULL, "nn_conv2d_add: %s is NULL", l ? "rng" : "layer") : AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    ad_conv_opts opts = o ? *o : (ad_conv_opts){0};
    int groups = opts.groups ? opts.groups : 1;
    ad_status st = model_check_sizes(m, "nn_conv2d_add", 5, (const char *[]){"in", "out", "kh", "kw", "groups"},
                               (int[]){in, out, kh, kw, groups});
    if (st) return st;
    if (in % groups || out % groups)
        return model_fail(m, AD_ERR_ARG, "nn_conv2d_add: groups = %d must divide in = %d and out = %d", groups, in, out);
    char name[256];
    l->weight = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "weight"), AD_SHAPE(out, in / groups, kh, kw));
    if (!l->weight || (bias && !(l->bias = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "bias"), AD_SHAPE(out)))))
        return model_status(m);
    l->in = in, l->out = out, l->kh = kh, l->kw = kw, l->opts = opts;
    int64_t fan_in = (int64_t)(in / groups) * kh * kw;
    init_fan_in(l->weight, rng, fan_in);
    init_fan_in(l->bias, rng, fan_in);
    return AD_OK;
}



ad_node *nn_flatten(ad_graph *g, ad_node *x)
{
    if (!g) return NULL;
    if (!x) {
        ad_set_error(g, AD_ERR_NULL, "nn_flatten: input is NULL");
        return NULL;
    }
    ad_shape s = ad_node_shape(x);
    if (s.rank < 1) {
        ad_set_error(g, AD_ERR_SHAPE, "nn_flatten: input is a scalar (expected [N,...])");
        return NULL;
    }
    int64_t rest = 1;
    for (int d = 1; d < s.rank; d++) rest *= s.dim[d];
    return s.rank == 2 ? x : ad_reshape(g, x, AD_SHAPE(s.dim[0], rest));
}

ad_status nn_layer_norm_add(nn_model *m, nn_layer_norm *l, const char *prefix, int dim, double eps)
{
    if (!m || !l) return m ? model_fail(m, AD_ERR_NULL, "nn_layer_norm_add: layer is NULL") : AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    ad_status st = model_check_sizes(m, "nn_layer_norm_add", 1, (const char *[]){"dim"}, (int[]){dim});
    if (st) return st;
    if (!(eps >= 0) || !isfinite(eps))
        return model_fail(m, AD_ERR_ARG, "nn_layer_norm_add: eps = %g must be finite and >= 0", eps);
    char name[256];
    if (!(l->weight = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "weight"), AD_SHAPE(dim))) ||
        !(l->bias = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "bias"), AD_SHAPE(dim))))
        return model_status(m);
    ad_tensor_fill(l->weight, 1);
    l->dim = dim;
    l->eps = eps > 0 ? eps : 1e-5;
    return AD_OK;
}


ad_status nn_batch_norm_add(nn_model *m, nn_batch_norm *l, const char *prefix, int channels, double eps,
                            double momentum)
{
    if (!m || !l) return m ? model_fail(m, AD_ERR_NULL, "nn_batch_norm_add: layer is NULL") : AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    ad_status st = model_check_sizes(m, "nn_batch_norm_add", 1, (const char *[]){"channels"}, (int[]){channels});
    if (st) return st;
    if (!(eps >= 0) || !isfinite(eps) || !(momentum >= 0 && momentum <= 1))
        return model_fail(m, AD_ERR_ARG, "nn_batch_norm_add: eps = %g must be finite and >= 0, momentum = %g in [0,1]",
                          eps, momentum);
    char name[256];
    ad_shape c = AD_SHAPE(channels);
    if (!(l->weight = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "weight"), c)) ||
        !(l->bias = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "bias"), c)) ||
        !(l->running_mean = nn_model_buffer(m, model_tensor_name(name, sizeof name, prefix, "running_mean"), c)) ||
        !(l->running_var = nn_model_buffer(m, model_tensor_name(name, sizeof name, prefix, "running_var"), c)) ||
        !(l->num_batches_tracked = nn_model_buffer(m, model_tensor_name(name, sizeof name, prefix, "num_batches_tracked"), AD_SHAPE0)))
        return model_status(m);
    ad_tensor_fill(l->weight, 1);
    ad_tensor_fill(l->running_var, 1);
    l->channels = channels;
    l->eps = eps > 0 ? eps : 1e-5;
    l->momentum = momentum > 0 ? momentum : 0.1;
    return AD_OK;
}


ad_status nn_embedding_add(nn_model *m, nn_embedding *l, const char *prefix, int num, int dim, ad_rng *rng)
{
    if (!m || !l || !rng) return m ? model_fail(m, AD_ERR_NULL, "nn_embedding_add: %s is NULL", l ? "rng" : "layer") : AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    ad_status st = model_check_sizes(m, "nn_embedding_add", 2, (const char *[]){"num", "dim"}, (int[]){num, dim});
    if (st) return st;
    char name[256];
    if (!(l->weight = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, "weight"), AD_SHAPE(num, dim))))
        return model_status(m);
    ad_tensor_rand_normal(l->weight, rng, 0, 1);
    l->num = num, l->dim = dim;
    return AD_OK;
}

/* Whether x is a node of rank `rank` (0: any of at least 2) with `dim` along axis 1 (0: any)
 * and the layer's dtype; records "fn: ..." in g otherwise. */
static bool check_input(ad_graph *g, const char *fn, ad_node *x, const ad_tensor *w, int rank, int axis, int dim,
                        const char *expected)
{
    if (!g) return false;
    if (!x || !w) {
        ad_set_error(g, AD_ERR_NULL, "%s: %s is NULL", fn, x ? "layer" : "input");
        return false;
    }
    ad_shape s = ad_node_shape(x);
    char b[96];
    ad_shape_str(&s, b, sizeof b);
    int ax = axis < 0 ? s.rank + axis : axis;
    if ((rank && s.rank != rank) || s.rank < 1 || ax < 0 || ax >= s.rank || (dim && s.dim[ax] != dim)) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: input %s does not fit the layer (expected %s)", fn, b, expected);
        return false;
    }
    if (ad_node_dtype(x) != ad_tensor_dtype(w)) {
        ad_set_error(g, AD_ERR_DTYPE, "%s: input %s is %s, the layer is %s", fn, b, ad_dtype_name(ad_node_dtype(x)),
                     ad_dtype_name(ad_tensor_dtype(w)));
        return false;
    }
    return true;
}


ad_node *nn_conv2d_forward(ad_graph *g, const nn_conv2d *l, ad_node *x)
{
    char want[64];
    snprintf(want, sizeof want, "[N,%d,H,W]", l ? l->in : 0);
    if (!check_input(g, "nn_conv2d_forward", x, l ? l->weight : NULL, 4, 1, l ? l->in : 0, want)) return NULL;
    return ad_conv2d(g, x, ad_param(g, l->weight), l->bias ? ad_param(g, l->bias) : NULL, &l->opts);
}

ad_node *nn_layer_norm_forward(ad_graph *g, const nn_layer_norm *l, ad_node *x)
{
    char want[64];
    snprintf(want, sizeof want, "[...,%d]", l ? l->dim : 0);
    if (!check_input(g, "nn_layer_norm_forward", x, l ? l->weight : NULL, 0, -1, l ? l->dim : 0, want)) return NULL;
    return ad_layer_norm(g, x, 1, ad_param(g, l->weight), ad_param(g, l->bias), l->eps);
}

ad_node *nn_batch_norm_forward(ad_graph *g, nn_batch_norm *l, ad_node *x, nn_mode mode)
{
    char want[64];
    snprintf(want, sizeof want, "[N,%d] or [N,%d,...]", l ? l->channels : 0, l ? l->channels : 0);
    if (!check_input(g, "nn_batch_norm_forward", x, l ? l->weight : NULL, 0, 1, l ? l->channels : 0, want)) return NULL;
    ad_node *y = ad_batch_norm(g, x, ad_param(g, l->weight), ad_param(g, l->bias), l->running_mean, l->running_var,
                               mode == NN_TRAIN, l->momentum, l->eps);
    /* PyTorch counts the batches; with a momentum given the count changes no result */
    if (y && mode == NN_TRAIN) ad_tensor_set(l->num_batches_tracked, 0, ad_tensor_get(l->num_batches_tracked, 0) + 1);
    return y;
}

ad_node *nn_embedding_forward(ad_graph *g, const nn_embedding *l, ad_shape ids_shape, const int64_t *ids)
{
    if (!g) return NULL;
    if (!l || !l->weight || !ids) {
        ad_set_error(g, AD_ERR_NULL, "nn_embedding_forward: %s is NULL", ids ? "layer" : "ids");
        return NULL;
    }
    return ad_embedding(g, ad_param(g, l->weight), ids_shape, ids);
}
