/* Second order on small MLPs, printed for tests/higher_torch.py to redo in PyTorch.
 *
 * Prints one JSON document on stdout:
 *   "hessians":  for each case the weights, the data, the loss, the dense Hessian of the loss
 *                with respect to every parameter element (ad_hessian_graph over the parameter
 *                leaves) and H v along a fixed direction (ad_hvp_graph);
 *   "penalties": for each case the initial weights, the data and the objective of each of 20
 *                training steps whose loss carries a penalty on its gradient with respect to
 *                the input (ad_grad_graph, then ad_backward through that gradient).
 * Parameters are listed as nn.Sequential's parameters() are: W_1, b_1, W_2, ... with W [out,
 * in] row-major, so a flat index means the same element on both sides.  Numbers are printed
 * with 17 significant digits, which a float64 reads back exactly.
 * Exit status 0, or 1 with a message on stderr if a call failed. */
#include "nn.h"
#include "optim.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LAYERS = 3, MAX_PARAMS = 2 * MAX_LAYERS, N = 6, STEPS = 20 };
/* The data's stream is not the weights' (a model seeded with s draws from stream s). */
enum { DATA_SEED = 7919 };

/* What the hidden layers apply, and how the graph is built: nn_mlp_forward (fused
 * ad_linear_act, leaves made inside) or ad_linear and the activation's own op on leaves made
 * here.  softplus exists only as an op, so it is always built from nodes. */
typedef enum { ACT_TANH, ACT_SIGMOID, ACT_RELU, ACT_SOFTPLUS } act_kind;
static const char *const act_names[] = {"tanh", "sigmoid", "relu", "softplus"};

typedef enum { LOSS_MSE, LOSS_CROSS_ENTROPY, LOSS_SOFTMAX_MSE } loss_kind;
static const char *const loss_names[] = {"mse", "cross_entropy", "softmax_mse"};

typedef struct {
    const char *name;
    int sizes[MAX_LAYERS + 1]; /* in, hidden..., out; ended by 0 */
    act_kind act;
    bool from_nodes;
    loss_kind loss;
} hessian_case;

static const hessian_case hessian_cases[] = {
    {"tanh_mse", {3, 4, 2}, ACT_TANH, false, LOSS_MSE},
    {"sigmoid_cross_entropy", {3, 4, 3}, ACT_SIGMOID, false, LOSS_CROSS_ENTROPY},
    {"softplus_softmax_mse", {3, 4, 2}, ACT_SOFTPLUS, true, LOSS_SOFTMAX_MSE},
    {"tanh_nodes_cross_entropy", {3, 4, 3}, ACT_TANH, true, LOSS_CROSS_ENTROPY},
    {"relu_two_hidden_cross_entropy", {3, 5, 4, 3}, ACT_RELU, false, LOSS_CROSS_ENTROPY},
};

/* WGAN-GP's critic loss, mean D(fake) - mean D(real) + lambda mean_n (|grad_x D(x_n)| - 1)^2 at
 * fixed interpolates, or a regression loss plus lambda |grad_x loss|^2. */
typedef enum { PEN_INPUT_GRAD_SQUARED, PEN_WGAN_GP } penalty_kind;
static const char *const penalty_names[] = {"input_grad_squared", "wgan_gp"};

typedef struct {
    const char *name;
    int sizes[MAX_LAYERS + 1];
    act_kind act;
    bool from_nodes;
    penalty_kind penalty;
    double lambda;
    optim_cfg opt;
} penalty_case;

static penalty_case penalty_cases[] = {
    {"mse_penalty_tanh_sgd", {2, 6, 1}, ACT_TANH, false, PEN_INPUT_GRAD_SQUARED, 1.0, {0}},
    {"wgan_gp_softplus_momentum", {2, 5, 5, 1}, ACT_SOFTPLUS, true, PEN_WGAN_GP, 10.0, {0}},
    {"mse_penalty_sigmoid_adam", {3, 5, 2}, ACT_SIGMOID, false, PEN_INPUT_GRAD_SQUARED, 0.5, {0}},
};

/* A model: an nn_mlp holds the parameters either way (its init is as good as any), and the
 * case says how the graph uses them. */
typedef struct {
    nn_mlp *m;
    int layers;
    act_kind act;
    bool from_nodes;
} net;

static int count_layers(const int *sizes)
{
    int k = 0;
    while (k < MAX_LAYERS && sizes[k + 1]) k++;
    return k;
}

static net net_new(const int *sizes, act_kind act, bool from_nodes, bool classify, uint64_t seed)
{
    net n = {.layers = count_layers(sizes), .act = act, .from_nodes = from_nodes};
    nn_mlp_cfg c = {.in = sizes[0], .out = sizes[n.layers], .dtype = AD_F64, .seed = seed,
                    .task = classify ? NN_CLASSIFY : NN_REGRESS,
                    .act = act == ACT_SIGMOID ? NN_SIGMOID : act == ACT_RELU ? NN_RELU : NN_TANH};
    for (int i = 1; i < n.layers; i++) c.hidden[i - 1] = sizes[i];
    n.m = nn_mlp_new(&c);
    if (!n.m) return n;
    /* biases start at zero; second derivatives through them should be exercised too */
    ad_rng r;
    ad_rng_seed(&r, seed + 1000);
    for (int i = 0; i < n.layers; i++) ad_tensor_rand_uniform(nn_mlp_layer(n.m, i)->bias, &r, -0.5, 0.5);
    return n;
}

/* The network's output on x; leaves receives the parameter leaves in parameters() order.
 * Built from nodes, each call makes its own leaves (as nn_mlp_forward does). */
static ad_node *forward(ad_graph *g, const net *n, ad_node *x, ad_node **leaves)
{
    ad_tensor *const *p = nn_mlp_params(n->m);
    if (!n->from_nodes) {
        ad_node *y = nn_mlp_forward(g, n->m, x, NN_EVAL);
        for (int k = 0; leaves && k < 2 * n->layers; k++) leaves[k] = ad_param_node(g, p[k]);
        return y;
    }
    ad_node *z = x;
    for (int i = 0; i < n->layers; i++) {
        ad_node *w = ad_param(g, p[2 * i]), *b = ad_param(g, p[2 * i + 1]);
        if (leaves) leaves[2 * i] = w, leaves[2 * i + 1] = b;
        z = ad_linear(g, z, w, b);
        if (i + 1 == n->layers) break;
        switch (n->act) {
        case ACT_TANH: z = ad_tanh(g, z); break;
        case ACT_SIGMOID: z = ad_sigmoid(g, z); break;
        case ACT_RELU: z = ad_relu(g, z); break;
        case ACT_SOFTPLUS: z = ad_softplus(g, z); break;
        }
    }
    return z;
}

static void print_array(const char *key, const double *a, int64_t n)
{
    printf("\"%s\": [", key);
    for (int64_t i = 0; i < n; i++) printf("%s%.17g", i ? ", " : "", a[i]);
    printf("]");
}

static void print_net(const net *n, const int *sizes)
{
    printf("\"sizes\": [");
    for (int i = 0; i <= n->layers; i++) printf("%s%d", i ? ", " : "", sizes[i]);
    printf("], \"act\": \"%s\", \"params\": [", act_names[n->act]);
    ad_tensor *const *p = nn_mlp_params(n->m);
    for (int k = 0; p[k]; k++) {
        int64_t size = ad_tensor_size(p[k]);
        double *v = malloc((size_t)size * sizeof *v);
        ad_tensor_read(p[k], v);
        printf("%s{\"name\": \"%s\", ", k ? ", " : "", ad_tensor_name(p[k]));
        print_array("values", v, size);
        printf("}");
        free(v);
    }
    printf("]");
}

static void fill_uniform(ad_rng *r, double *a, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * ad_rng_uniform(r);
}

static int fail(ad_graph *g, const char *name, const char *what)
{
    fprintf(stderr, "higher_torch_driver: %s: %s: %s\n", name, what, g && ad_error(g) ? ad_error(g) : "failed");
    return 1;
}

static int print_hessian_case(const hessian_case *c, uint64_t seed)
{
    net n = net_new(c->sizes, c->act, c->from_nodes, c->loss != LOSS_MSE, seed);
    if (!n.m) return fail(NULL, c->name, "nn_mlp_new");
    int in = c->sizes[0], out = c->sizes[n.layers];
    int64_t P = nn_mlp_num_param_elements(n.m);
    double x[N * 4], y[N * 4], *H = malloc((size_t)(P * P) * sizeof *H), *v = malloc((size_t)P * sizeof *v),
           *hv = malloc((size_t)P * sizeof *hv);
    int32_t labels[N];
    ad_rng r;
    ad_rng_seed(&r, seed + DATA_SEED);
    fill_uniform(&r, x, N * in, -1.5, 1.5);
    fill_uniform(&r, y, N * out, -1, 1);
    fill_uniform(&r, v, P, -1, 1);
    for (int i = 0; i < N; i++) labels[i] = (int32_t)((unsigned)(i * 7 + (int)seed) % (unsigned)out);
    if (c->loss == LOSS_SOFTMAX_MSE) /* one-hot targets for the probabilities */
        for (int i = 0; i < N * out; i++) y[i] = i % out == labels[i / out];

    ad_graph *g = ad_graph_new();
    ad_node *leaves[MAX_PARAMS];
    ad_node *xs = ad_const(g, AD_F64, AD_SHAPE(N, in), x), *pred = forward(g, &n, xs, leaves), *loss;
    ad_node *ys = ad_const(g, AD_F64, AD_SHAPE(N, out), y);
    if (c->loss == LOSS_MSE) loss = ad_mse(g, pred, ys);
    else if (c->loss == LOSS_CROSS_ENTROPY) loss = ad_cross_entropy(g, pred, labels);
    else loss = ad_mse(g, ad_softmax(g, pred, 1), ys);
    int st = 0;
    if (!loss || ad_hessian_graph(g, loss, 2 * n.layers, leaves, H) != AD_OK) st = fail(g, c->name, "hessian");
    /* the direction, cut at the parameters' boundaries */
    const double *vk[MAX_PARAMS];
    double *hvk[MAX_PARAMS];
    for (int k = 0, at = 0; k < 2 * n.layers; at += (int)ad_node_size(leaves[k]), k++) vk[k] = v + at, hvk[k] = hv + at;
    if (!st && ad_hvp_graph(g, loss, 2 * n.layers, leaves, vk, hvk) != AD_OK) st = fail(g, c->name, "hvp");
    if (!st) {
        printf("{\"name\": \"%s\", \"loss_kind\": \"%s\", ", c->name, loss_names[c->loss]);
        print_net(&n, c->sizes);
        printf(", ");
        print_array("x", x, N * in);
        printf(", ");
        print_array("y", y, N * out);
        printf(", \"labels\": [");
        for (int i = 0; i < N; i++) printf("%s%d", i ? ", " : "", labels[i]);
        printf("], \"loss\": %.17g, ", ad_value(loss));
        print_array("hessian", H, P * P);
        printf(", ");
        print_array("v", v, P);
        printf(", ");
        print_array("hv", hv, P);
        printf("}");
    }
    ad_graph_free(g);
    nn_mlp_free(n.m);
    free(H), free(v), free(hv);
    return st;
}

/* The penalised objective of one step; its parameter gradients come from ad_backward on it,
 * through the input gradient's graph. */
static ad_node *penalised(ad_graph *g, const penalty_case *c, const net *n, const double *x,
                          const double *y)
{
    int in = c->sizes[0], out = c->sizes[n->layers];
    ad_node *gx;
    if (c->penalty == PEN_INPUT_GRAD_SQUARED) {
        ad_node *xs = ad_var_array(g, "x", AD_F64, AD_SHAPE(N, in), x);
        ad_node *loss = ad_mse(g, forward(g, n, xs, NULL), ad_const(g, AD_F64, AD_SHAPE(N, out), y));
        if (ad_grad_graph(g, loss, NULL, 1, &xs, &gx) != AD_OK) return NULL;
        return ad_add(g, loss, ad_mul_scalar(g, ad_sum(g, ad_square(g, gx)), c->lambda));
    }
    /* x holds real, fake and interpolated rows, N each */
    ad_node *real = ad_const(g, AD_F64, AD_SHAPE(N, in), x), *fake = ad_const(g, AD_F64, AD_SHAPE(N, in), x + N * in);
    ad_node *mid = ad_var_array(g, "x_hat", AD_F64, AD_SHAPE(N, in), x + 2 * N * in);
    ad_node *wasserstein = ad_sub(g, ad_mean(g, forward(g, n, fake, NULL)), ad_mean(g, forward(g, n, real, NULL)));
    if (ad_grad_graph(g, ad_sum(g, forward(g, n, mid, NULL)), NULL, 1, &mid, &gx) != AD_OK) return NULL;
    ad_node *norm = ad_sqrt(g, ad_sum_axis(g, ad_square(g, gx), 1, false));
    ad_node *gp = ad_mean(g, ad_square(g, ad_add_scalar(g, norm, -1)));
    return ad_add(g, wasserstein, ad_mul_scalar(g, gp, c->lambda));
}

static int print_penalty_case(const penalty_case *c, uint64_t seed)
{
    net n = net_new(c->sizes, c->act, c->from_nodes, false, seed);
    if (!n.m) return fail(NULL, c->name, "nn_mlp_new");
    int in = c->sizes[0], out = c->sizes[n.layers];
    double x[3 * N * 4], y[N * 4], losses[STEPS];
    ad_rng r;
    ad_rng_seed(&r, seed + DATA_SEED);
    fill_uniform(&r, x, 2 * N * in, -1.5, 1.5);
    fill_uniform(&r, y, N * out, -1, 1);
    if (c->penalty == PEN_WGAN_GP) {
        for (int i = 0; i < N * in; i++) x[N * in + i] += 1.0; /* the fakes sit off the reals */
        for (int i = 0; i < N; i++) {
            double e = ad_rng_uniform(&r);
            for (int j = 0; j < in; j++) x[2 * N * in + i * in + j] = e * x[i * in + j] + (1 - e) * x[N * in + i * in + j];
        }
    }
    char err[256];
    optim *o = optim_new(nn_mlp_params(n.m), nn_mlp_num_params(n.m), &c->opt, err, sizeof err);
    if (!o) {
        fprintf(stderr, "higher_torch_driver: %s: %s\n", c->name, err);
        return 1;
    }
    printf("{\"name\": \"%s\", \"penalty\": \"%s\", \"lambda\": %.17g, \"optimizer\": \"%s\", \"lr\": %.17g, "
           "\"momentum\": %.17g, ", c->name, penalty_names[c->penalty], c->lambda, optim_kind_name(c->opt.kind),
           c->opt.lr, c->opt.momentum);
    print_net(&n, c->sizes);
    printf(", ");
    print_array("x", x, (c->penalty == PEN_WGAN_GP ? 3 : 1) * N * in);
    printf(", ");
    print_array("y", y, N * out);
    ad_graph *g = ad_graph_new();
    int st = 0;
    for (int s = 0; !st && s < STEPS; s++) {
        ad_graph_reset(g);
        optim_zero_grad(o);
        ad_node *total = penalised(g, c, &n, x, y);
        if (!total || ad_backward(g, total) != AD_OK) st = fail(g, c->name, "penalised step");
        else if (optim_step(o) != AD_OK) st = fail(NULL, c->name, optim_error(o));
        losses[s] = ad_value(total);
    }
    printf(", ");
    print_array("losses", losses, STEPS);
    printf("}");
    ad_graph_free(g);
    optim_free(o);
    nn_mlp_free(n.m);
    return st;
}

int main(void)
{
    penalty_cases[0].opt = optim_defaults(OPTIM_GD, 0.2);
    penalty_cases[1].opt = optim_defaults(OPTIM_MOMENTUM, 0.01);
    penalty_cases[1].opt.form = OPTIM_FORM_PYTORCH; /* torch.optim.SGD's recursion, rounding and all */
    penalty_cases[2].opt = optim_defaults(OPTIM_ADAM, 0.02);
    int st = 0;
    printf("{\"hessians\": [");
    for (size_t i = 0; !st && i < sizeof hessian_cases / sizeof *hessian_cases; i++) {
        if (i) printf(", ");
        st = print_hessian_case(&hessian_cases[i], 11 + i);
    }
    printf("], \"penalties\": [");
    for (size_t i = 0; !st && i < sizeof penalty_cases / sizeof *penalty_cases; i++) {
        if (i) printf(", ");
        st = print_penalty_case(&penalty_cases[i], 31 + i);
    }
    printf("]}\n");
    return st;
}
