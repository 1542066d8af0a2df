/* Linear layers, activations, dropout and weight initialisation: the pieces an MLP is made of,
 * built only from ad's public API. */
#include "nn.h"
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
