/* Tensor ops on fixed shapes and arguments, printed for tests/ops_torch.py to redo in PyTorch.
 *
 * Prints one JSON array on stdout, one object per case: the case's name (ops_torch.py keys its
 * PyTorch twin by it), the float64 inputs, the output, the weights W of the scalar L = sum(W *
 * output) and the gradient of L with respect to each input (null where the op gives none).
 * Inputs are drawn uniformly from the case's range with a seeded generator, so every run prints
 * the same numbers; they are printed with 17 significant digits, which read back exactly.
 * Exit status 0, or 1 with the case and the graph's message on stderr. */
#include "ad.h"
#include <stdio.h>
#include <stdlib.h>

enum { MAXIN = 4 };

typedef ad_node *(*builder)(ad_graph *g, ad_node **x);

typedef struct {
    const char *name; /* the key of its twin in ops_torch.py: the op and its arguments */
    int nin;
    ad_shape shape[MAXIN];
    builder build;
    double lo, hi;    /* inputs' range */
} torch_case;

/* A shape in a static initialiser (AD_SHAPE is a compound literal). */
#define S(...) {.rank = AD_NARGS(__VA_ARGS__), .dim = {__VA_ARGS__}}

static ad_node *softmax_axis1(ad_graph *g, ad_node **x) { return ad_softmax(g, x[0], 1); }
static ad_node *matmul(ad_graph *g, ad_node **x) { return ad_matmul(g, x[0], x[1]); }
static ad_node *where_gt(ad_graph *g, ad_node **x) { return ad_where(g, ad_gt(g, x[0], x[1]), x[0], x[2]); }

/* builders of index.c, shape.c and matmul.c's cases (ops_torch.py's twins take the indices
 * counted from 0: torch refuses negative ones here) */
static ad_node *index_select1(ad_graph *g, ad_node **x)
{
    return ad_index_select(g, x[0], 1, (const int64_t[]){2, 0, 2, -1}, 4);
}
static ad_node *gather1(ad_graph *g, ad_node **x)
{
    return ad_gather(g, x[0], 1, AD_SHAPE(2, 3), (const int64_t[]){3, 0, 3, -1, 1, 1});
}
static ad_node *embedding(ad_graph *g, ad_node **x)
{
    return ad_embedding(g, x[0], AD_SHAPE(2, 3), (const int64_t[]){4, 0, 4, -5, 2, 1});
}
static ad_node *stack1(ad_graph *g, ad_node **x) { return ad_stack(g, x, 3, 1); }
static ad_node *stack0(ad_graph *g, ad_node **x) { return ad_stack(g, x, 3, 0); }
static ad_node *permute201(ad_graph *g, ad_node **x) { return ad_permute(g, x[0], (const int[]){2, 0, 1}); }
static ad_node *slice_1_7_2(ad_graph *g, ad_node **x) { return ad_slice_step(g, x[0], 1, 1, 7, 2); }
static ad_node *times_detached(ad_graph *g, ad_node **x) { return ad_mul(g, x[0], ad_detach(g, x[1])); }

/* builders of reduce.c and loss.c's cases */
static ad_node *max_axis1(ad_graph *g, ad_node **x) { return ad_max_axis(g, x[0], 1, false); }
static ad_node *min_axis_keep(ad_graph *g, ad_node **x) { return ad_min_axis(g, x[0], -1, true); }
static ad_node *times_argmax(ad_graph *g, ad_node **x) { return ad_mul(g, x[0], ad_argmax(g, x[0], 1, true)); }
static ad_node *times_argmin(ad_graph *g, ad_node **x) { return ad_mul(g, x[0], ad_argmin(g, x[0], 0, false)); }
static ad_node *logsumexp1(ad_graph *g, ad_node **x) { return ad_logsumexp(g, x[0], 1, false); }
static ad_node *logsumexp_keep(ad_graph *g, ad_node **x) { return ad_logsumexp(g, x[0], -1, true); }
static ad_node *bce(ad_graph *g, ad_node **x) { return ad_bce_with_logits(g, x[0], ad_sigmoid(g, x[1])); }

/* builders of conv.c's cases */
static ad_node *conv2d_pad1(ad_graph *g, ad_node **x)
{
    return ad_conv2d(g, x[0], x[1], x[2], &(ad_conv_opts){.padding = {1, 1}});
}
static ad_node *conv2d_all(ad_graph *g, ad_node **x)
{
    ad_conv_opts o = {.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}, .groups = 2};
    return ad_conv2d(g, x[0], x[1], NULL, &o);
}
static ad_node *conv2d_uneven(ad_graph *g, ad_node **x)
{
    return ad_conv2d(g, x[0], x[1], x[2], &(ad_conv_opts){.stride = {2, 1}, .padding = {0, 2}, .dilation = {1, 3}});
}
static ad_node *conv2d_pointwise(ad_graph *g, ad_node **x) { return ad_conv2d(g, x[0], x[1], x[2], NULL); }
static ad_node *conv1d_all(ad_graph *g, ad_node **x)
{
    ad_conv_opts o = {.stride = {2}, .padding = {1}, .dilation = {2}, .groups = 2};
    return ad_conv1d(g, x[0], x[1], x[2], &o);
}
static ad_node *max_pool_2x2(ad_graph *g, ad_node **x) { return ad_max_pool2d(g, x[0], 2, 2, NULL); }
static ad_node *max_pool_pad(ad_graph *g, ad_node **x)
{
    return ad_max_pool2d(g, x[0], 3, 3, &(ad_conv_opts){.stride = {2, 1}, .padding = {1, 1}});
}
static ad_node *max_pool_dilated(ad_graph *g, ad_node **x)
{
    return ad_max_pool2d(g, x[0], 3, 2, &(ad_conv_opts){.stride = {1, 1}, .padding = {1, 1}, .dilation = {2, 2}});
}
static ad_node *avg_pool_2x2(ad_graph *g, ad_node **x) { return ad_avg_pool2d(g, x[0], 2, 2, NULL); }
static ad_node *avg_pool_pad(ad_graph *g, ad_node **x)
{
    return ad_avg_pool2d(g, x[0], 3, 2, &(ad_conv_opts){.stride = {2, 1}, .padding = {1, 1}});
}

/* builders of norm.c's cases */
static ad_node *layer_norm1(ad_graph *g, ad_node **x) { return ad_layer_norm(g, x[0], 1, x[1], x[2], 1e-5); }
static ad_node *layer_norm2(ad_graph *g, ad_node **x) { return ad_layer_norm(g, x[0], 2, NULL, NULL, 1e-3); }
static ad_node *batch_norm_train(ad_graph *g, ad_node **x)
{
    return ad_batch_norm(g, x[0], x[1], x[2], NULL, NULL, true, 0.1, 1e-5);
}
/* Running statistics [3] as ops_torch.py's twins make them: fixed ones for evaluation, and
 * PyTorch's initial ones (zeros and ones) for training. */
static ad_tensor *stats[2][2];
static ad_node *batch_norm_eval(ad_graph *g, ad_node **x)
{
    if (!stats[0][0]) {
        stats[0][0] = ad_tensor_from(AD_F64, AD_SHAPE(3), (double[]){0.3, -0.1, 1.2});
        stats[0][1] = ad_tensor_from(AD_F64, AD_SHAPE(3), (double[]){0.5, 2.0, 0.8});
    }
    return ad_batch_norm(g, x[0], x[1], x[2], stats[0][0], stats[0][1], false, 0.1, 1e-5);
}
/* The output flattened, then the running statistics after the forward pass. */
static ad_node *batch_norm_running(ad_graph *g, ad_node **x)
{
    if (!stats[1][0]) {
        stats[1][0] = ad_tensor_from(AD_F64, AD_SHAPE(3), (double[]){0, 0, 0});
        stats[1][1] = ad_tensor_from(AD_F64, AD_SHAPE(3), (double[]){1, 1, 1});
    }
    ad_node *y = ad_batch_norm(g, x[0], x[1], x[2], stats[1][0], stats[1][1], true, 0.3, 1e-5);
    ad_node *parts[3] = {y ? ad_reshape(g, y, AD_SHAPE(ad_node_size(y))) : NULL};
    for (int k = 0; k < 2; k++) parts[1 + k] = ad_const(g, AD_F64, AD_SHAPE(3), ad_tensor_data(stats[1][k]));
    return ad_concat(g, parts, 3, 0);
}

static const torch_case cases[] = {
    {"softmax(x0, 1)", 1, {S(3, 4)}, softmax_axis1, -2, 2},
    {"matmul", 2, {S(2, 3, 4), S(4, 5)}, matmul, -2, 2},
    {"where(x0 > x1, x0, x2)", 3, {S(3, 1), S(4), S(3, 4)}, where_gt, -2, 2},
    /* indexing and shapes: index.c, shape.c, matmul.c */
    {"index_select(x0, 1, [2, 0, 2, 3])", 1, {S(3, 4)}, index_select1, -2, 2},
    {"gather(x0, 1, [[3, 0, 3], [3, 1, 1]])", 1, {S(2, 4)}, gather1, -2, 2},
    {"embedding([[4, 0, 4], [0, 2, 1]], x0)", 1, {S(5, 3)}, embedding, -2, 2},
    {"stack(x0, x1, x2; 1)", 3, {S(2, 3), S(2, 3), S(2, 3)}, stack1, -2, 2},
    {"stack of scalars", 3, {{.rank = 0}, {.rank = 0}, {.rank = 0}}, stack0, -2, 2},
    {"x0.permute(2, 0, 1)", 1, {S(2, 3, 4)}, permute201, -2, 2},
    {"x0[:, 1:7:2]", 1, {S(3, 8)}, slice_1_7_2, -2, 2},
    {"x0 * x1.detach()", 2, {S(3, 4), S(3, 4)}, times_detached, -2, 2},
    {"matmul [4] x [4]", 2, {S(4), S(4)}, matmul, -2, 2},
    {"matmul [3] x [3,5]", 2, {S(3), S(3, 5)}, matmul, -2, 2},
    {"matmul [2,3,4] x [4]", 2, {S(2, 3, 4), S(4)}, matmul, -2, 2},
    {"matmul [3] x [2,3,4]", 2, {S(3), S(2, 3, 4)}, matmul, -2, 2},
    {"matmul [2,1,3,4] x [5,4,6]", 2, {S(2, 1, 3, 4), S(5, 4, 6)}, matmul, -2, 2},

    /* reductions along an axis and losses: reduce.c, loss.c */
    {"torch.max(x0, 1).values", 1, {S(3, 4)}, max_axis1, -2, 2},
    {"torch.min(x0, -1, keepdim=True).values", 1, {S(2, 3, 4)}, min_axis_keep, -2, 2},
    {"x0 * torch.argmax(x0, 1, keepdim=True)", 1, {S(3, 4)}, times_argmax, -2, 2},
    {"x0 * torch.argmin(x0, 0)", 1, {S(3, 4)}, times_argmin, -2, 2},
    {"torch.logsumexp(x0, 1)", 1, {S(3, 4)}, logsumexp1, -2, 2},
    {"torch.logsumexp(x0, -1, keepdim=True) of large values", 1, {S(2, 3, 4)}, logsumexp_keep, -800, 800},
    {"F.binary_cross_entropy_with_logits(x0, sigmoid(x1))", 2, {S(3, 4), S(3, 4)}, bce, -4, 4},

    /* convolution and pooling: conv.c */
    {"F.conv2d(x0, x1, x2, padding=1)", 3, {S(2, 3, 6, 5), S(4, 3, 3, 3), S(4)}, conv2d_pad1, -2, 2},
    {"F.conv2d(x0, x1, stride=2, padding=1, dilation=2, groups=2)", 2, {S(2, 4, 9, 8), S(6, 2, 3, 3)}, conv2d_all, -2, 2},
    {"F.conv2d(x0, x1, x2, stride=(2,1), padding=(0,2), dilation=(1,3))", 3, {S(1, 2, 7, 6), S(3, 2, 2, 3), S(3)}, conv2d_uneven, -2, 2},
    {"F.conv2d(x0, x1, x2) 1x1", 3, {S(2, 3, 4, 5), S(2, 3, 1, 1), S(2)}, conv2d_pointwise, -2, 2},
    {"F.conv1d(x0, x1, x2, stride=2, padding=1, dilation=2, groups=2)", 3, {S(2, 4, 11), S(6, 2, 3), S(6)}, conv1d_all, -2, 2},
    {"F.max_pool2d(x0, 2)", 1, {S(2, 3, 6, 7)}, max_pool_2x2, -2, 2},
    {"F.max_pool2d(x0, 3, stride=(2,1), padding=1)", 1, {S(2, 2, 7, 6)}, max_pool_pad, -2, 2},
    /* every element equal: each window's gradient goes to its first element, as torch's */
    {"F.max_pool2d(x0, 3, stride=(2,1), padding=1) ties", 1, {S(1, 2, 6, 5)}, max_pool_pad, 0.5, 0.5},
    {"F.max_pool2d(x0, 2) ties", 1, {S(1, 2, 4, 6)}, max_pool_2x2, -1, -1},
    {"F.max_pool2d(x0, (3,2), stride=1, padding=1, dilation=2)", 1, {S(2, 2, 7, 6)}, max_pool_dilated, -2, 2},
    {"F.avg_pool2d(x0, 2)", 1, {S(2, 3, 6, 7)}, avg_pool_2x2, -2, 2},
    {"F.avg_pool2d(x0, (3,2), stride=(2,1), padding=1)", 1, {S(2, 2, 7, 6)}, avg_pool_pad, -2, 2},

    /* normalisation: norm.c */
    {"F.layer_norm(x0, [4], x1, x2)", 3, {S(2, 3, 4), S(4), S(4)}, layer_norm1, -2, 2},
    {"F.layer_norm(x0, [3, 4], eps=1e-3)", 1, {S(2, 3, 4)}, layer_norm2, -2, 2},
    {"F.batch_norm(x0, None, None, x1, x2, training=True)", 3, {S(4, 3, 2, 2), S(3), S(3)}, batch_norm_train, -2, 2},
    {"F.batch_norm(x0, mean, var, x1, x2) in evaluation", 3, {S(2, 3, 5), S(3), S(3)}, batch_norm_eval, -2, 2},
    {"F.batch_norm training, then its running statistics", 3, {S(5, 3), S(3), S(3)}, batch_norm_running, -2, 2},

};

static void print_array(const char *key, ad_node *n, bool grad)
{
    ad_shape s = ad_node_shape(n);
    printf("\"%s\": {\"shape\": [", key);
    for (int d = 0; d < s.rank; d++) printf("%s%lld", d ? ", " : "", (long long)s.dim[d]);
    printf("], \"data\": [");
    for (int64_t i = 0; i < ad_node_size(n); i++)
        printf("%s%.17g", i ? ", " : "", grad ? ad_node_grad_get(n, i) : ad_node_get(n, i));
    printf("]}");
}

int main(void)
{
    ad_graph *g = ad_graph_new();
    if (!g) return 1;
    printf("[");
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const torch_case *k = &cases[c];
        ad_rng r;
        ad_rng_seed(&r, 1 + c);
        ad_graph_reset(g);
        ad_node *x[MAXIN];
        for (int i = 0; i < k->nin; i++) {
            int64_t n = ad_shape_size(&k->shape[i]);
            double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
            if (!v) return 1;
            for (int64_t j = 0; j < n; j++) v[j] = k->lo + (k->hi - k->lo) * ad_rng_uniform(&r);
            x[i] = ad_var_array(g, NULL, AD_F64, k->shape[i], v);
            free(v);
        }
        ad_node *y = k->build(g, x);
        if (!y) {
            fprintf(stderr, "ops_torch_driver: %s: %s\n", k->name, ad_error(g));
            return 1;
        }
        int64_t m = ad_node_size(y);
        double *w = malloc((size_t)(m ? m : 1) * sizeof *w);
        if (!w) return 1;
        for (int64_t j = 0; j < m; j++) w[j] = 2 * ad_rng_uniform(&r) - 1;
        if (ad_backward_seed(g, y, w) != AD_OK) {
            fprintf(stderr, "ops_torch_driver: %s: backward: %s\n", k->name, ad_error(g));
            return 1;
        }
        printf("%s\n{\"name\": \"%s\", \"inputs\": [", c ? "," : "", k->name);
        for (int i = 0; i < k->nin; i++) {
            printf("%s{", i ? ", " : "");
            print_array("x", x[i], false);
            printf("}");
        }
        printf("], ");
        print_array("output", y, false);
        printf(", \"weights\": [");
        for (int64_t j = 0; j < m; j++) printf("%s%.17g", j ? ", " : "", w[j]);
        printf("], \"grads\": [");
        for (int i = 0; i < k->nin; i++) {
            printf("%s", i ? ", " : "");
            if (ad_node_grad_data(x[i])) {
                printf("{");
                print_array("g", x[i], true);
                printf("}");
            } else
                printf("null");
        }
        printf("]}");
        free(w);
    }
    printf("\n]\n");
    ad_graph_free(g);
    return 0;
}
