/* The multilayer perceptron: z_0 = x, z_i = σ(W_i z_{i-1} + b_i), output W_{D+1} z_D + b_{D+1}
 * (softmax applied by the loss or by nn_mlp_probs), on minibatches. */
#include "nn.h"
#include "mlp_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Rows evaluated per graph by nn_mlp_predict: large enough for the matrix kernels, small
 * enough that the activations of a 10000-image test set never sit in memory at once. */
enum { PREDICT_CHUNK = 256 };

int nn_mlp_hidden_count(const nn_mlp_cfg *c)
{
    int d = 0;
    while (d < NN_MAX_HIDDEN && c->hidden[d] != 0) d++;
    return d;
}

ad_status nn_mlp_check(const nn_mlp_cfg *c, char *err, size_t errlen)
{
#define BAD(...) (err && errlen ? snprintf(err, errlen, "nn_mlp_new: " __VA_ARGS__) : 0, AD_ERR_ARG)
    if (!c) return err && errlen ? snprintf(err, errlen, "nn_mlp_new: cfg is NULL") : 0, AD_ERR_NULL;
    if (c->in < 1) return BAD("in = %d: a model needs at least one input", c->in);
    if (c->task != NN_CLASSIFY && c->task != NN_REGRESS) return BAD("unknown task %d", (int)c->task);
    if (c->out < 1)
        return BAD("out = %d: %s", c->out, c->task == NN_CLASSIFY ? "classification needs at least 1 output (one logit for two classes)" : "regression needs at least 1 output");
    int d = nn_mlp_hidden_count(c);
    for (int i = 0; i < d; i++)
        if (c->hidden[i] < 0) return BAD("hidden[%d] = %d: widths must be positive", i, c->hidden[i]);
    for (int i = d; i < NN_MAX_HIDDEN; i++)
        if (c->hidden[i] != 0) return BAD("hidden[%d] = %d follows the terminating 0 at hidden[%d]", i, c->hidden[i], d);
    if ((unsigned)c->act > NN_TANH) return BAD("unknown activation %d", (int)c->act);
    if (c->dtype != AD_F32 && c->dtype != AD_F64) return BAD("unknown dtype %d", (int)c->dtype);
    if ((unsigned)c->init > NN_INIT_HE) return BAD("unknown initialisation %d", (int)c->init);
    if (c->slope != 0 && !(c->slope > 0 && c->slope < 1)) return BAD("slope = %g: leaky relu's slope must lie in (0,1)", c->slope);
    if (!(c->dropout >= 0 && c->dropout < 1)) return BAD("dropout = %g outside [0,1)", c->dropout);
    if (!(c->input_dropout >= 0 && c->input_dropout < 1)) return BAD("input_dropout = %g outside [0,1)", c->input_dropout);
    return AD_OK;
#undef BAD
}

int nn_mlp_module_index(const nn_mlp_cfg *c, int layer)
{
    /* PyTorch's nn.Sequential numbers every module: [Dropout], then per hidden layer Linear,
     * activation, [Dropout], then the output Linear. */
    int per = 2 + (c->dropout > 0);
    return (c->input_dropout > 0) + layer * per;
}

nn_mlp *nn_mlp_new(const nn_mlp_cfg *cfg)
{
    if (nn_mlp_check(cfg, NULL, 0) != AD_OK) return NULL;
    nn_mlp *m = ad_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    if (m->cfg.slope == 0) m->cfg.slope = 0.1;
    if (m->cfg.init == NN_INIT_AUTO)
        m->cfg.init = m->cfg.act == NN_RELU || m->cfg.act == NN_LEAKY_RELU ? NN_INIT_HE : NN_INIT_XAVIER;
    int D = m->depth = nn_mlp_hidden_count(cfg);
    m->layers = ad_calloc((size_t)D + 1, sizeof *m->layers);
    m->params = ad_calloc(2 * (size_t)D + 3, sizeof *m->params);
    if (!m->layers || !m->params) {
        nn_mlp_free(m);
        return NULL;
    }
    ad_rng init;
    ad_rng_seed(&init, m->cfg.seed);
    double slope = m->cfg.act == NN_LEAKY_RELU ? m->cfg.slope : 0.0;
    for (int i = 0; i <= D; i++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "%d", nn_mlp_module_index(&m->cfg, i));
        int in = i ? cfg->hidden[i - 1] : cfg->in, out = i < D ? cfg->hidden[i] : cfg->out;
        if (nn_linear_init(&m->layers[i], prefix, in, out, m->cfg.dtype, m->cfg.init, slope, &init) != AD_OK) {
            nn_mlp_free(m);
            return NULL;
        }
        m->params[2 * i] = m->layers[i].weight;
        m->params[2 * i + 1] = m->layers[i].bias;
    }
    /* A stream of its own, so changing the dropout rate leaves the initial weights alone. */
    ad_rng_seed(&m->drop, m->cfg.seed ^ 0x5eedd509u);
    return m;
}

void nn_mlp_free(nn_mlp *m)
{
    if (!m) return;
    for (int i = 0; m->layers && i <= m->depth; i++) nn_linear_release(&m->layers[i]);
    ad_free(m->layers);
    ad_free(m->params);
    ad_free(m);
}

const nn_mlp_cfg *nn_mlp_config(const nn_mlp *m) { return m ? &m->cfg : NULL; }
int nn_mlp_depth(const nn_mlp *m) { return m ? m->depth : 0; }

const nn_linear *nn_mlp_layer(const nn_mlp *m, int i)
{
    return m && i >= 0 && i <= m->depth ? &m->layers[i] : NULL;
}

ad_node *nn_mlp_forward(ad_graph *g, nn_mlp *m, ad_node *x, nn_mode mode)
{
    if (!g) return NULL;
    if (!m || !x) {
        ad_set_error(g, AD_ERR_NULL, "nn_mlp_forward: %s is NULL", m ? "input" : "model");
        return NULL;
    }
    ad_shape s = ad_node_shape(x);
    char b[96];
    if (s.rank != 2 || s.dim[1] != m->cfg.in) {
        ad_set_error(g, AD_ERR_SHAPE, "nn_mlp_forward: input %s does not match the model's %d inputs (expected [N,%d])",
                     ad_shape_str(&s, b, sizeof b), m->cfg.in, m->cfg.in);
        return NULL;
    }
    if (ad_node_dtype(x) != m->cfg.dtype) {
        ad_set_error(g, AD_ERR_DTYPE, "nn_mlp_forward: input %s is %s, the model is %s", ad_shape_str(&s, b, sizeof b),
                     ad_dtype_name(ad_node_dtype(x)), ad_dtype_name(m->cfg.dtype));
        return NULL;
    }
    const nn_mlp_cfg *c = &m->cfg;
    ad_node *z = nn_dropout(g, x, c->input_dropout, c->inverted_dropout, mode, &m->drop);
    for (int i = 0; i < m->depth; i++) {
        z = nn_linear_act_forward(g, &m->layers[i], z, c->act, c->slope);
        z = nn_dropout(g, z, c->dropout, c->inverted_dropout, mode, &m->drop);
    }
    return nn_linear_forward(g, &m->layers[m->depth], z);
}

ad_node *nn_mlp_probs(ad_graph *g, nn_mlp *m, ad_node *x, nn_mode mode)
{
    ad_node *z = nn_mlp_forward(g, m, x, mode);
    /* one logit: the probability of class 1, as BCE-with-logits trains it */
    return m && m->cfg.out == 1 ? ad_sigmoid(g, z) : ad_softmax(g, z, 1);
}

static ad_status predict_rows(nn_mlp *m, ad_graph *g, ad_tensor *x, double *out, int32_t *classes)
{
    ad_shape s = ad_tensor_shape(x);
    char b[96];
    if (classes && m->cfg.task != NN_CLASSIFY)
        return ad_set_error(g, AD_ERR_ARG, "nn_mlp_predict: classes requested from a regression model");
    if (s.rank != 2 || s.dim[1] != m->cfg.in)
        return ad_set_error(g, AD_ERR_SHAPE, "nn_mlp_predict: input %s does not match the model's %d inputs (expected [N,%d])",
                            ad_shape_str(&s, b, sizeof b), m->cfg.in, m->cfg.in);
    int64_t T = m->cfg.out;
    for (int64_t r0 = 0; r0 < s.dim[0]; r0 += PREDICT_CHUNK) {
        int64_t r1 = r0 + PREDICT_CHUNK < s.dim[0] ? r0 + PREDICT_CHUNK : s.dim[0];
        ad_graph_reset(g);
        ad_node *xb = ad_slice(g, ad_const_tensor(g, x), 0, r0, r1);
        ad_node *y = m->cfg.task == NN_CLASSIFY ? nn_mlp_probs(g, m, xb, NN_EVAL) : nn_mlp_forward(g, m, xb, NN_EVAL);
        if (!y) return ad_status_of(g) ? ad_status_of(g) : AD_ERR_NULL;
        const void *v = ad_node_data(y);
        for (int64_t r = 0; r < r1 - r0; r++) {
            int32_t best = 0;
            double bv = -INFINITY;
            for (int64_t k = 0; k < T; k++) {
                double p = ad_data_get(v, m->cfg.dtype, r * T + k);
                if (out) out[(r0 + r) * T + k] = p;
                if (p > bv) bv = p, best = (int32_t)k; /* the first of equal maxima, like argmax */
            }
            if (classes) classes[r0 + r] = T == 1 ? ad_data_get(v, m->cfg.dtype, r) > 0.5 : best;
        }
    }
    return AD_OK;
}

ad_status nn_mlp_predict(ad_graph *g, nn_mlp *m, ad_tensor *x, double *out, int32_t *classes)
{
    ad_graph *own = g ? NULL : ad_graph_new();
    ad_graph *use = g ? g : own;
    if (!use) return AD_ERR_NOMEM;
    ad_graph_reset(use);
    ad_status st;
    if (!m || !x) st = ad_set_error(use, AD_ERR_NULL, "nn_mlp_predict: %s is NULL", m ? "input" : "model");
    else if (ad_tensor_dtype(x) != m->cfg.dtype)
        st = ad_set_error(use, AD_ERR_DTYPE, "nn_mlp_predict: input is %s, the model is %s",
                          ad_dtype_name(ad_tensor_dtype(x)), ad_dtype_name(m->cfg.dtype));
    else {
        bool was = ad_set_grad_enabled(use, false);
        st = predict_rows(m, use, x, out, classes);
        ad_set_grad_enabled(use, was);
    }
    ad_graph_free(own);
    return st;
}

ad_tensor *const *nn_mlp_params(const nn_mlp *m) { return m ? m->params : NULL; }
int nn_mlp_num_params(const nn_mlp *m) { return m ? 2 * (m->depth + 1) : 0; }

int64_t nn_mlp_num_param_elements(const nn_mlp *m)
{
    int64_t n = 0;
    for (int i = 0; m && m->params[i]; i++) n += ad_tensor_size(m->params[i]);
    return n;
}

void nn_mlp_zero_grad(nn_mlp *m)
{
    for (int i = 0; m && m->params[i]; i++) ad_tensor_zero_grad(m->params[i]);
}

void nn_mlp_reseed(nn_mlp *m, uint64_t seed)
{
    if (m) ad_rng_seed(&m->drop, seed ^ 0x5eedd509u);
}
