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

/* builders of index.c, shape.c and matmul.c's cases */

/* builders of reduce.c and loss.c's cases */

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

static const torch_case cases[] = {
    {"softmax(x0, 1)", 1, {S(3, 4)}, softmax_axis1, -2, 2},
    {"matmul", 2, {S(2, 3, 4), S(4, 5)}, matmul, -2, 2},
    {"where(x0 > x1, x0, x2)", 3, {S(3, 1), S(4), S(3, 4)}, where_gt, -2, 2},
    /* indexing and shapes: index.c, shape.c, matmul.c */

    /* reductions along an axis and losses: reduce.c, loss.c */

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
