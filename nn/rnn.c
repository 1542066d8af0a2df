/* Recurrent layers: one layer of torch.nn.RNN (tanh), LSTM and GRU, built from ad's ops, so
 * every rule (reverse, forward, gradient graphs, replay) comes from theirs. */
#include "nn.h"
#include "model_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Gates per kind: the rows of weight_ih are G blocks of `hidden`, in PyTorch's order. */
static int gate_count(nn_rnn_kind kind) { return kind == NN_LSTM ? 4 : kind == NN_GRU ? 3 : 1; }

/* The kinds as messages name them. */
static const char *const KIND_NAMES[] = {[NN_RNN_TANH] = "an RNN", [NN_LSTM] = "an LSTM", [NN_GRU] = "a GRU"};

ad_status nn_rnn_add(nn_model *m, nn_rnn *l, nn_rnn_kind kind, const char *prefix, int in, int hidden,
                     ad_rng *rng)
{
    if (!m || !l || !rng) return m ? model_fail(m, AD_ERR_NULL, "nn_rnn_add: %s is NULL", l ? "rng" : "layer") : AD_ERR_NULL;
    memset(l, 0, sizeof *l);
    if ((unsigned)kind > NN_GRU) return model_fail(m, AD_ERR_ARG, "nn_rnn_add: unknown kind %d", (int)kind);
    ad_status st = model_check_sizes(m, "nn_rnn_add", 2, (const char *[]){"in", "hidden"}, (int[]){in, hidden});
    if (st) return st;
    int64_t gh = (int64_t)gate_count(kind) * hidden;
    char name[256];
    ad_tensor **slot[] = {&l->weight_ih, &l->weight_hh, &l->bias_ih, &l->bias_hh};
    const char *names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
    ad_shape shapes[] = {AD_SHAPE(gh, in), AD_SHAPE(gh, hidden), AD_SHAPE(gh), AD_SHAPE(gh)};
    for (int k = 0; k < 4; k++) {
        if (!(*slot[k] = nn_model_param(m, model_tensor_name(name, sizeof name, prefix, names[k]), shapes[k]))) {
            memset(l, 0, sizeof *l);
            return model_status(m);
        }
    }
    /* torch.nn.RNNBase.reset_parameters: every tensor uniform in +-1/sqrt(hidden), drawn in
     * the order the parameters were registered */
    double bound = 1.0 / sqrt((double)hidden);
    for (int k = 0; k < 4; k++) ad_tensor_rand_uniform(*slot[k], rng, -bound, bound);
    l->kind = kind, l->in = in, l->hidden = hidden;
    return AD_OK;
}

/* Gate k of the G gates laid side by side along the last axis of gates ([N, G*hidden], or
 * the bias [G*hidden] alone where the state is zero). */
static ad_node *gate(ad_graph *g, ad_node *gates, int k, int hidden)
{
    return ad_slice(g, gates, -1, (int64_t)k * hidden, (int64_t)(k + 1) * hidden);
}

/* One step from the input's projection xi = x W_ih^T + b_ih [N, G*hidden], with whh and bhh the
 * leaves of weight_hh and bias_hh: PyTorch's cell formulas (aten's RNN.cpp), each product in
 * the same order, so float64 runs match its to rounding.  A NULL state is zero, and its terms
 * are left out rather than multiplied by 0. */
static ad_node *step(ad_graph *g, const nn_rnn *l, ad_node *xi, ad_node *whh, ad_node *bhh, ad_node *h, ad_node *c,
                     ad_node **c_out)
{
    int H = l->hidden;
    ad_node *hh = h ? ad_linear(g, h, whh, bhh) : bhh;
    switch (l->kind) {
    case NN_RNN_TANH:
        return ad_tanh(g, ad_add(g, xi, hh));
    case NN_LSTM: {
        ad_node *gates = ad_add(g, xi, hh);
        ad_node *i = ad_sigmoid(g, gate(g, gates, 0, H)), *f = ad_sigmoid(g, gate(g, gates, 1, H));
        ad_node *cand = ad_tanh(g, gate(g, gates, 2, H)), *o = ad_sigmoid(g, gate(g, gates, 3, H));
        ad_node *ig = ad_mul(g, i, cand);
        ad_node *c1 = c ? ad_add(g, ad_mul(g, f, c), ig) : ig;
        if (c_out) *c_out = c1;
        return ad_mul(g, o, ad_tanh(g, c1));
    }
    case NN_GRU: {
        /* r and z from the sums of both projections; n = tanh(xi_n + r (W_hn h + b_hn));
         * h' = (h - n) z + n, which is (1 - z) n + z h */
        ad_node *r = ad_sigmoid(g, ad_add(g, gate(g, xi, 0, H), gate(g, hh, 0, H)));
        ad_node *z = ad_sigmoid(g, ad_add(g, gate(g, xi, 1, H), gate(g, hh, 1, H)));
        ad_node *n = ad_tanh(g, ad_add(g, gate(g, xi, 2, H), ad_mul(g, r, gate(g, hh, 2, H))));
        ad_node *diff = h ? ad_sub(g, h, n) : ad_neg(g, n);
        return ad_add(g, ad_mul(g, diff, z), n);
    }
    }
    return NULL;
}

/* Checks the layer, a [.., N, size] node of rank `rank` and its dtype; on a mismatch records
 * "fn: what [shape] ..." in g and returns false. */
static bool check_node(ad_graph *g, const char *fn, const nn_rnn *l, ad_node *x, const char *what, int rank,
                       int64_t rows, int64_t size)
{
    ad_shape s = ad_node_shape(x);
    char b[96];
    ad_shape_str(&s, b, sizeof b);
    bool fits = s.rank == rank && s.dim[rank - 1] == size && (rows < 0 || s.dim[rank - 2] == rows);
    if (!fits) {
        char want[64];
        if (rank == 3) snprintf(want, sizeof want, "[T,N,%lld]", (long long)size);
        else if (rows < 0) snprintf(want, sizeof want, "[N,%lld]", (long long)size);
        else snprintf(want, sizeof want, "[%lld,%lld]", (long long)rows, (long long)size);
        ad_set_error(g, AD_ERR_SHAPE, "%s: %s %s does not fit %s of %d inputs and %d hidden units (expected %s)", fn,
                     what, b, KIND_NAMES[l->kind], l->in, l->hidden, want);
        return false;
    }
    if (ad_node_dtype(x) != ad_tensor_dtype(l->weight_ih)) {
        ad_set_error(g, AD_ERR_DTYPE, "%s: %s %s is %s, the layer is %s", fn, what, b, ad_dtype_name(ad_node_dtype(x)),
                     ad_dtype_name(ad_tensor_dtype(l->weight_ih)));
        return false;
    }
    return true;
}

/* The layer itself, its input x (rank 2 or 3) and the states h and c (NULL or [N, hidden]). */
static bool check_call(ad_graph *g, const char *fn, const nn_rnn *l, ad_node *x, int rank, ad_node *h, ad_node *c)
{
    if (!g) return false;
    if (!l || !l->weight_ih || !l->weight_hh || !l->bias_ih || !l->bias_hh || (unsigned)l->kind > NN_GRU || !x) {
        ad_set_error(g, AD_ERR_NULL, "%s: %s", fn, x ? "the layer is NULL or not made by nn_rnn_add" : "input is NULL");
        return false;
    }
    if (!check_node(g, fn, l, x, "input", rank, -1, l->in)) return false;
    int64_t n = ad_node_shape(x).dim[rank - 2];
    if (h && !check_node(g, fn, l, h, "state h", 2, n, l->hidden)) return false;
    if (c && l->kind != NN_LSTM) {
        ad_set_error(g, AD_ERR_ARG, "%s: a cell state c is for an LSTM, not %s", fn, KIND_NAMES[l->kind]);
        return false;
    }
    return !c || check_node(g, fn, l, c, "state c", 2, n, l->hidden);
}

ad_node *nn_rnn_cell(ad_graph *g, const nn_rnn *l, ad_node *x, ad_node *h, ad_node *c, ad_node **c_out)
{
    if (c_out) *c_out = NULL;
    if (!check_call(g, "nn_rnn_cell", l, x, 2, h, c)) return NULL;
    ad_node *xi = ad_linear(g, x, ad_param(g, l->weight_ih), ad_param(g, l->bias_ih));
    return step(g, l, xi, ad_param(g, l->weight_hh), ad_param(g, l->bias_hh), h, c, c_out);
}

/* The output's pieces are gathered here up to this many steps, beyond it in a heap array. */
enum { STACK_STEPS = 256 };

ad_node *nn_rnn_forward(ad_graph *g, const nn_rnn *l, ad_node *x, ad_node *h0, ad_node *c0, ad_node **h_last,
                        ad_node **c_last)
{
    if (h_last) *h_last = NULL;
    if (c_last) *c_last = NULL;
    if (!check_call(g, "nn_rnn_forward", l, x, 3, h0, c0)) return NULL;
    ad_shape s = ad_node_shape(x);
    int64_t T = s.dim[0], N = s.dim[1];
    if (T < 1 || N < 1 || T > INT32_MAX) {
        char b[96];
        ad_set_error(g, AD_ERR_SHAPE, "nn_rnn_forward: input %s: T must be in [1, 2^31) and N at least 1",
                     ad_shape_str(&s, b, sizeof b));
        return NULL;
    }
    /* One product for the inputs of every step: a [T*N, in] x [in, G*hidden] matrix product
     * runs at the kernel's speed, where T products of N rows would not. */
    ad_node *flat = ad_reshape(g, x, AD_SHAPE(T * N, l->in));
    ad_node *xi = ad_linear(g, flat, ad_param(g, l->weight_ih), ad_param(g, l->bias_ih));
    ad_node *stack_outs[STACK_STEPS];
    ad_node **outs = T <= STACK_STEPS ? stack_outs : malloc((size_t)T * sizeof *outs);
    if (!outs) {
        ad_set_error(g, AD_ERR_NOMEM, "nn_rnn_forward: out of memory for %lld steps", (long long)T);
        return NULL;
    }
    /* one leaf per parameter for the whole sequence: ad_param_node finds it, so gradient graphs
     * and Hessians with respect to the parameter see every step */
    ad_node *whh = ad_param(g, l->weight_hh), *bhh = ad_param(g, l->bias_hh);
    ad_node *h = h0, *c = c0;
    for (int64_t t = 0; t < T; t++) {
        ad_node *xt = ad_slice(g, xi, 0, t * N, (t + 1) * N);
        h = step(g, l, xt, whh, bhh, h, c, l->kind == NN_LSTM ? &c : NULL);
        outs[t] = ad_reshape(g, h, AD_SHAPE(1, N, l->hidden));
    }
    ad_node *y = T == 1 ? outs[0] : ad_concat(g, outs, (int)T, 0);
    if (outs != stack_outs) free(outs);
    if (!y) return NULL;
    if (h_last) *h_last = h;
    if (c_last) *c_last = c;
    return y;
}
