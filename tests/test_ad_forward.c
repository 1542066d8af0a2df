/* The op as one unit and forward mode: every row of ad_ew.h has consistent formulas and the
 * same meaning in the graph, on the tape and in dual numbers; every op's forward rule agrees
 * with the Jacobian assembled from reverse sweeps and with central differences, on random
 * shapes with broadcasting and fan-out, in both dtypes; user ops registered by their formulas
 * get what built-in ones get. */
#include "testutil.h"
#include "ad_real.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the formulas of each row: derivatives against central differences ---- */

static void near(double got, double want, double tol, const char *what, const char *name, double at)
{
    double err = fabs(got - want), scale = fmax(1, fabs(want));
    ck_assert_msg(err <= tol * scale, "%s of %s at %g: %.17g, expected %.17g", what, name, at, got, want);
}

#define CHECK_UNARY_(ID, name, ...)                                                           \
    for (int k = 0; k < 7; k++) {                                                             \
        double x = 0.15 + 0.37 * k, h = 1e-5, p = 0.1;                                        \
        double y = ad_ew_##name(x, p);                                                        \
        double num = (ad_ew_##name(x + h, p) - ad_ew_##name(x - h, p)) / (2 * h);             \
        near(ad_ew_##name##_d(x, y, p), num, 1e-6, "derivative", #name, x);                   \
        double d_hi = ad_ew_##name##_d(x + h, ad_ew_##name(x + h, p), p);                     \
        double d_lo = ad_ew_##name##_d(x - h, ad_ew_##name(x - h, p), p);                     \
        near(ad_ew_##name##_d2(x, y, p), (d_hi - d_lo) / (2 * h), 1e-6, "second derivative", \
             #name, x);                                                                       \
    }
#define CHECK_BINARY_(ID, name, ...)                                                          \
    for (int k = 0; k < 5; k++) {                                                             \
        double a = 0.3 + 0.41 * k, b = 1.9 - 0.29 * k, h = 1e-5;                              \
        double y = ad_ew_##name(a, b);                                                        \
        near(ad_ew_##name##_da(a, b, y), (ad_ew_##name(a + h, b) - ad_ew_##name(a - h, b)) / (2 * h), \
             1e-6, "d/da", #name, a);                                                         \
        near(ad_ew_##name##_db(a, b, y), (ad_ew_##name(a, b + h) - ad_ew_##name(a, b - h)) / (2 * h), \
             1e-6, "d/db", #name, b);                                                         \
        double ya = ad_ew_##name(a + h, b), yA = ad_ew_##name(a - h, b);                      \
        double yb = ad_ew_##name(a, b + h), yB = ad_ew_##name(a, b - h);                      \
        near(ad_ew_##name##_daa(a, b, y),                                                     \
             (ad_ew_##name##_da(a + h, b, ya) - ad_ew_##name##_da(a - h, b, yA)) / (2 * h), 1e-6, \
             "d2/da2", #name, a);                                                             \
        near(ad_ew_##name##_dab(a, b, y),                                                     \
             (ad_ew_##name##_da(a, b + h, yb) - ad_ew_##name##_da(a, b - h, yB)) / (2 * h), 1e-6, \
             "d2/da db", #name, a);                                                           \
        near(ad_ew_##name##_dbb(a, b, y),                                                     \
             (ad_ew_##name##_db(a, b + h, yb) - ad_ew_##name##_db(a, b - h, yB)) / (2 * h), 1e-6, \
             "d2/db2", #name, b);                                                             \
    }

START_TEST(formulas_of_every_row)
{
    AD_EW_UNARY(CHECK_UNARY_)
    AD_EW_UNARY_P(CHECK_UNARY_)
    AD_EW_BINARY(CHECK_BINARY_)
}
END_TEST

/* PyTorch's values at fixed points (torch 1.13, float64), for the ops whose definitions have
 * variants: softplus's threshold, the two GELUs. */
START_TEST(values_match_pytorch)
{
    ck_assert_double_eq_tol(ad_ew_softplus(0.3, 0), 0.85435524446852718, 1e-15);
    ck_assert_double_eq(ad_ew_softplus(25, 0), 25);
    ck_assert_double_eq_tol(ad_ew_gelu(0.3, 0), 0.1853734266566858, 1e-15);
    ck_assert_double_eq_tol(ad_ew_gelu_tanh(0.3, 0), 0.18537092354275922, 1e-15);
    ck_assert_double_eq_tol(ad_ew_silu(-1.5, 0), -0.27363828570953452, 1e-15);
    ck_assert_double_eq_tol(ad_ew_erf(0.5, 0), 0.52049987781304652, 1e-15);
}
END_TEST

/* ---- one row, three engines: the graph's scalar fast path and its tensor path, the tape,
 * dual numbers ---- */

#define ENGINES_UNARY_(ID, name, ...)                                                         \
    {                                                                                         \
        double x0 = 0.7;                                                                      \
        ad_graph *g = ad_graph_new();                                                         \
        ad_node *x = ad_var(g, "x", x0), *y = ad_##name(g, x);                                \
        ck_assert_int_eq(ad_backward(g, y), AD_OK);                                           \
        ck_assert_msg(!isnan(ad_node_local_grad(y, 0)), #name ": no scalar fast path");       \
        ad_node *xt = ad_var_array(g, "xt", AD_F64, AD_SHAPE(1), &x0), *yt = ad_##name(g, xt); \
        ck_assert_int_eq(ad_backward(g, yt), AD_OK);                                          \
        ck_assert_double_eq(ad_value(yt), ad_value(y));                                       \
        ck_assert_double_eq(ad_grad(xt), ad_grad(x));                                         \
        ad_tape *t = ad_tape_new();                                                           \
        ad_real xr = ad_real_var(t, x0), yr = ad_real_##name(t, xr);                          \
        ck_assert_int_eq(ad_tape_backward(t, yr), AD_OK);                                     \
        ck_assert_double_eq(yr.v, ad_value(y));                                               \
        ck_assert_double_eq(ad_real_grad(t, xr), ad_grad(x));                                 \
        ad_dual yd = ad_dual_##name(ad_dual_make(x0, 1));                                     \
        ck_assert_double_eq(yd.v, ad_value(y));                                               \
        ck_assert_double_eq(yd.t, ad_grad(x));                                                \
        ck_assert_int_eq(ad_jvp_graph(g, y, 1, &x, (const double *const[]){(double[]){1}}), AD_OK); \
        ck_assert_double_eq(ad_tangent_get(g, y, 0), ad_grad(x));                             \
        ad_tape_free(t);                                                                      \
        ad_graph_free(g);                                                                     \
    }
#define ENGINES_BINARY_(ID, name, ...)                                                        \
    {                                                                                         \
        double a0 = 0.7, b0 = 1.3;                                                            \
        ad_graph *g = ad_graph_new();                                                         \
        ad_node *a = ad_var(g, "a", a0), *b = ad_var(g, "b", b0), *y = ad_##name(g, a, b);    \
        ck_assert_int_eq(ad_backward(g, y), AD_OK);                                           \
        ad_tape *t = ad_tape_new();                                                           \
        ad_real ar = ad_real_var(t, a0), br = ad_real_var(t, b0), yr = ad_real_##name(t, ar, br); \
        ck_assert_int_eq(ad_tape_backward(t, yr), AD_OK);                                     \
        ck_assert_double_eq(yr.v, ad_value(y));                                               \
        ck_assert_double_eq(ad_real_grad(t, ar), ad_grad(a));                                 \
        ck_assert_double_eq(ad_real_grad(t, br), ad_grad(b));                                 \
        ad_dual yd = ad_dual_##name(ad_dual_make(a0, 0.25), ad_dual_make(b0, -2));            \
        ck_assert_double_eq_tol(yd.t, 0.25 * ad_grad(a) - 2 * ad_grad(b), 1e-15);             \
        ad_tape_free(t);                                                                      \
        ad_graph_free(g);                                                                     \
    }

START_TEST(graph_tape_and_dual_agree)
{
    AD_EW_UNARY(ENGINES_UNARY_)
    AD_EW_BINARY(ENGINES_BINARY_)
}
END_TEST

/* ---- forward rules of every op, against reverse sweeps and central differences ---- */

enum { MAXIN = 4 };
typedef struct {
    const char *name;
    int nin;
    ad_shape shape[MAXIN];
    ad_node *(*build)(ad_graph *g, ad_node **x);
} op_case;

static int current_op; /* the elementwise op that the generic builders apply */
static ad_node *ew1(ad_graph *g, ad_node **x) { return ad_apply(g, current_op, x, 1, NULL, 0); }
static ad_node *ew2(ad_graph *g, ad_node **x) { return ad_apply(g, current_op, x, 2, NULL, 0); }
static ad_node *ew2_fanout(ad_graph *g, ad_node **x)
{
    ad_node *in[2] = {x[0], x[0]};
    return ad_apply(g, current_op, in, 2, NULL, 0);
}
static ad_node *leaky(ad_graph *g, ad_node **x) { return ad_leaky_relu(g, x[0], 0.05); }
static ad_node *matmul(ad_graph *g, ad_node **x) { return ad_matmul(g, x[0], x[1]); }
static ad_node *linear(ad_graph *g, ad_node **x) { return ad_linear(g, x[0], x[1], x[2]); }
static ad_node *linear_nobias(ad_graph *g, ad_node **x) { return ad_linear(g, x[0], x[1], NULL); }
static ad_act act_of_case;
static ad_node *linear_act(ad_graph *g, ad_node **x)
{
    return ad_linear_act(g, x[0], x[1], x[2], act_of_case, 0.1);
}
static ad_node *softmax0(ad_graph *g, ad_node **x) { return ad_softmax(g, x[0], 0); }
static ad_node *softmax1(ad_graph *g, ad_node **x) { return ad_softmax(g, x[0], -1); }
static ad_node *logsm(ad_graph *g, ad_node **x) { return ad_log_softmax(g, x[0], 1); }
static ad_node *xent(ad_graph *g, ad_node **x)
{
    static const int32_t labels[3] = {2, 0, 3};
    return ad_cross_entropy(g, x[0], labels);
}
static ad_node *mse(ad_graph *g, ad_node **x) { return ad_mse(g, x[0], x[1]); }
static ad_node *mae(ad_graph *g, ad_node **x) { return ad_mae(g, x[0], x[1]); }
static ad_node *sum(ad_graph *g, ad_node **x) { return ad_sum(g, x[0]); }
static ad_node *mean(ad_graph *g, ad_node **x) { return ad_mean(g, x[0]); }
static ad_node *sum_axis(ad_graph *g, ad_node **x) { return ad_sum_axis(g, x[0], 1, false); }
static ad_node *mean_axis(ad_graph *g, ad_node **x) { return ad_mean_axis(g, x[0], 0, true); }
static ad_node *transpose(ad_graph *g, ad_node **x) { return ad_transpose(g, x[0]); }
static ad_node *reshape(ad_graph *g, ad_node **x) { return ad_reshape(g, x[0], AD_SHAPE(4, 3)); }
static ad_node *bcast(ad_graph *g, ad_node **x) { return ad_broadcast_to(g, x[0], AD_SHAPE(2, 3, 4)); }
static ad_node *slice(ad_graph *g, ad_node **x) { return ad_slice(g, x[0], 1, 1, 3); }
static ad_node *concat(ad_graph *g, ad_node **x) { return ad_concat(g, x, 3, 0); }
static ad_node *dropout(ad_graph *g, ad_node **x)
{
    ad_rng r;
    ad_rng_seed(&r, 7); /* the same mask on every rebuild, so differences see one function */
    return ad_dropout(g, x[0], 0.4, true, &r);
}
/* A small network with fan-out: the same input feeds two paths. */
static ad_node *net(ad_graph *g, ad_node **x)
{
    ad_node *h = ad_tanh(g, ad_linear(g, x[0], x[1], x[2]));
    return ad_add(g, ad_mul(g, h, h), ad_sigmoid(g, ad_matmul(g, h, ad_transpose(g, x[1]))));
}

/* builders of index.c, shape.c and matmul.c's cases */

/* y^3: the linear ops made curved, so that second and third order pass through the gradient
 * graphs of their gradient graphs (index_add and index_take for the indexing ops). */
static ad_node *cubed(ad_graph *g, ad_node *y) { return ad_mul(g, ad_square(g, y), y); }
static ad_node *index_select_c(ad_graph *g, ad_node **x)
{
    static const int64_t idx[5] = {3, -1, 0, 3, 1}; /* repeated, and -1 is 3 again */
    return cubed(g, ad_index_select(g, x[0], -1, idx, 5));
}
static ad_node *gather_c(ad_graph *g, ad_node **x)
{
    static const int64_t idx[6] = {2, 0, -1, 1, 1, 0};
    return cubed(g, ad_gather(g, x[0], 1, AD_SHAPE(2, 3), idx));
}
static ad_node *embedding_c(ad_graph *g, ad_node **x)
{
    static const int64_t ids[6] = {4, 0, 4, -5, 2, 1};
    return cubed(g, ad_embedding(g, x[0], AD_SHAPE(2, 3), ids));
}
static ad_node *stack_c(ad_graph *g, ad_node **x) { return cubed(g, ad_stack(g, x, 3, -1)); }
static ad_node *stack_scalars(ad_graph *g, ad_node **x) { return cubed(g, ad_stack(g, x, 3, 0)); }
static ad_node *permute_c(ad_graph *g, ad_node **x) { return cubed(g, ad_permute(g, x[0], (const int[]){2, 0, 1})); }
static ad_node *permute_rows(ad_graph *g, ad_node **x) { return cubed(g, ad_permute(g, x[0], (const int[]){1, 0, -1})); }
static ad_node *permute_last2(ad_graph *g, ad_node **x) { return cubed(g, ad_permute(g, x[0], (const int[]){0, 2, 1})); }
static ad_node *slice_step_c(ad_graph *g, ad_node **x) { return cubed(g, ad_slice_step(g, x[0], 1, 1, 7, 2)); }

/* builders of reduce.c and loss.c's cases */
static ad_node *max_axis1(ad_graph *g, ad_node **x) { return ad_max_axis(g, x[0], 1, false); }
static ad_node *min_axis_last(ad_graph *g, ad_node **x) { return ad_min_axis(g, x[0], -1, true); }
/* argmax enters the value but carries no tangent and no gradient */
static ad_node *max_times_argmax(ad_graph *g, ad_node **x)
{
    return ad_mul(g, ad_max_axis(g, x[0], 0, true), ad_add_scalar(g, ad_argmax(g, x[0], 0, true), 1));
}
static ad_node *min_times_argmin(ad_graph *g, ad_node **x)
{
    return ad_mul(g, ad_min_axis(g, x[0], -2, false), ad_add_scalar(g, ad_argmin(g, x[0], -2, false), 1));
}
static ad_node *logsumexp0(ad_graph *g, ad_node **x) { return ad_logsumexp(g, x[0], 0, false); }
static ad_node *logsumexp_last(ad_graph *g, ad_node **x) { return ad_logsumexp(g, x[0], -1, true); }
static ad_node *bce(ad_graph *g, ad_node **x) { return ad_bce_with_logits(g, ad_add_scalar(g, x[0], -1.2), x[1]); }

/* builders of conv.c's cases */
static ad_node *conv2d_groups(ad_graph *g, ad_node **x)
{
    return ad_conv2d(g, x[0], x[1], x[2], &(ad_conv_opts){.padding = {1, 1}, .groups = 2});
}
static ad_node *conv2d_strided(ad_graph *g, ad_node **x)
{
    return ad_conv2d(g, x[0], x[1], NULL, &(ad_conv_opts){.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}});
}
static ad_node *conv1d_pad(ad_graph *g, ad_node **x)
{
    return ad_conv1d(g, x[0], x[1], x[2], &(ad_conv_opts){.padding = {1}, .stride = {2}});
}
static ad_node *max_pool_pad(ad_graph *g, ad_node **x)
{
    return ad_max_pool2d(g, x[0], 3, 3, &(ad_conv_opts){.stride = {2, 2}, .padding = {1, 1}});
}
static ad_node *max_pool_2x2(ad_graph *g, ad_node **x) { return ad_max_pool2d(g, x[0], 2, 2, NULL); }
static ad_node *avg_pool_pad(ad_graph *g, ad_node **x)
{
    return ad_avg_pool2d(g, x[0], 3, 2, &(ad_conv_opts){.stride = {2, 1}, .padding = {1, 1}});
}
/* conv, pool, conv: products of the layers' weights reach the second derivative */
static ad_node *conv_net(ad_graph *g, ad_node **x)
{
    ad_node *h = ad_max_pool2d(g, ad_tanh(g, ad_conv2d(g, x[0], x[1], NULL, &(ad_conv_opts){.padding = {1, 1}})), 2, 2, NULL);
    return ad_avg_pool2d(g, ad_conv2d(g, h, x[2], NULL, NULL), 2, 2, NULL);
}

/* builders of norm.c's cases */
static ad_node *layer_norm1(ad_graph *g, ad_node **x) { return ad_layer_norm(g, x[0], 1, x[1], x[2], 1e-5); }
static ad_node *layer_norm2(ad_graph *g, ad_node **x) { return ad_layer_norm(g, x[0], 2, x[1], NULL, 1e-5); }
static ad_node *batch_norm_train(ad_graph *g, ad_node **x)
{
    return ad_batch_norm(g, x[0], x[1], x[2], NULL, NULL, true, 0.1, 1e-5);
}
static ad_node *batch_norm_train_plain(ad_graph *g, ad_node **x)
{
    return ad_batch_norm(g, x[0], NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
}
/* Evaluation with running statistics [3] that stay as made (reachable for the process). */
static ad_node *batch_norm_eval(ad_graph *g, ad_node **x)
{
    static ad_tensor *stats[2][2];
    ad_dtype t = (ad_dtype)ad_node_dtype(x[0]);
    if (!stats[t][0]) {
        stats[t][0] = ad_tensor_from(t, AD_SHAPE(3), (double[]){0.3, -0.1, 1.2});
        stats[t][1] = ad_tensor_from(t, AD_SHAPE(3), (double[]){0.5, 2.0, 0.8});
    }
    return ad_batch_norm(g, x[0], x[1], x[2], stats[t][0], stats[t][1], false, 0.1, 1e-5);
}

/* A shape in a static initialiser (AD_SHAPE is a compound literal). */
#define S(...) {.rank = AD_NARGS(__VA_ARGS__), .dim = {__VA_ARGS__}}

static const op_case cases[] = {
    {"leaky_relu", 1, {S(3, 4)}, leaky},
    {"matmul", 2, {S(3, 4), S(4, 2)}, matmul},
    {"matmul batched", 2, {S(2, 3, 4), S(4, 2)}, matmul},
    {"linear", 3, {S(3, 4), S(2, 4), S(2)}, linear},
    {"linear without bias", 2, {S(3, 4), S(2, 4)}, linear_nobias},
    {"linear_act", 3, {S(3, 4), S(2, 4), S(2)}, linear_act},
    {"softmax axis 0", 1, {S(3, 4)}, softmax0},
    {"softmax axis -1", 1, {S(2, 3, 4)}, softmax1},
    {"log_softmax", 1, {S(3, 4)}, logsm},
    {"cross_entropy", 1, {S(3, 4)}, xent},
    {"mse", 2, {S(3, 4), S(3, 4)}, mse},
    {"mae", 2, {S(3, 4), S(3, 4)}, mae},
    {"sum", 1, {S(3, 4)}, sum},
    {"mean", 1, {S(3, 4)}, mean},
    {"sum_axis", 1, {S(3, 4)}, sum_axis},
    {"mean_axis", 1, {S(3, 4)}, mean_axis},
    {"transpose", 1, {S(2, 3, 4)}, transpose},
    {"reshape", 1, {S(3, 4)}, reshape},
    {"broadcast_to", 1, {S(3, 1)}, bcast},
    {"slice", 1, {S(3, 4)}, slice},
    {"concat", 3, {S(1, 4), S(2, 4), S(3, 4)}, concat},
    {"dropout", 1, {S(3, 4)}, dropout},
    /* indexing and shapes: index.c, shape.c, matmul.c */
    {"index_select", 1, {S(3, 4)}, index_select_c},
    {"gather", 1, {S(3, 4)}, gather_c},
    {"embedding", 1, {S(5, 3)}, embedding_c},
    {"stack", 3, {S(2, 3), S(2, 3), S(2, 3)}, stack_c},
    {"stack of scalars", 3, {{.rank = 0}, {.rank = 0}, {.rank = 0}}, stack_scalars},
    {"permute", 1, {S(2, 3, 4)}, permute_c},
    {"permute of rows", 1, {S(2, 3, 4)}, permute_rows},
    {"permute of the last two", 1, {S(2, 3, 4)}, permute_last2},
    {"slice_step", 1, {S(3, 8)}, slice_step_c},
    {"matmul 1-D x 1-D", 2, {S(4), S(4)}, matmul},
    {"matmul 1-D x 3-D", 2, {S(3), S(2, 3, 4)}, matmul},
    {"matmul 3-D x 1-D", 2, {S(2, 3, 4), S(4)}, matmul},
    {"matmul broadcast", 2, {S(2, 1, 3, 4), S(5, 4, 2)}, matmul},

    /* reductions along an axis and losses: reduce.c, loss.c */
    {"max_axis", 1, {S(3, 4)}, max_axis1},
    {"min_axis keepdim", 1, {S(2, 3, 4)}, min_axis_last},
    {"max_axis times argmax", 1, {S(3, 4)}, max_times_argmax},
    {"min_axis times argmin", 1, {S(2, 3, 4)}, min_times_argmin},
    {"logsumexp", 1, {S(3, 4)}, logsumexp0},
    {"logsumexp keepdim", 1, {S(2, 3, 4)}, logsumexp_last},
    {"bce_with_logits", 2, {S(3, 4), S(3, 4)}, bce},

    /* convolution and pooling: conv.c */
    {"conv2d groups 2", 3, {S(2, 4, 4, 4), S(4, 2, 3, 3), S(4)}, conv2d_groups},
    {"conv2d strided, dilated", 2, {S(1, 2, 5, 6), S(3, 2, 2, 2)}, conv2d_strided},
    {"conv1d", 3, {S(2, 2, 6), S(3, 2, 3), S(3)}, conv1d_pad},
    {"max_pool2d padded", 1, {S(1, 2, 5, 5)}, max_pool_pad},
    {"max_pool2d 2x2", 1, {S(2, 2, 4, 4)}, max_pool_2x2},
    {"avg_pool2d", 1, {S(1, 2, 5, 4)}, avg_pool_pad},
    {"conv, max pool, conv, avg pool", 3, {S(1, 1, 4, 4), S(2, 1, 3, 3), S(2, 2, 1, 1)}, conv_net},

    /* normalisation: norm.c */
    {"layer_norm", 3, {S(3, 4), S(4), S(4)}, layer_norm1},
    {"layer_norm over 2 axes", 2, {S(2, 3, 4), S(3, 4)}, layer_norm2},
    {"batch_norm training", 3, {S(4, 3), S(3), S(3)}, batch_norm_train},
    {"batch_norm training [N,C,H,W]", 1, {S(2, 3, 2, 2)}, batch_norm_train_plain},
    {"batch_norm evaluation", 3, {S(2, 3, 2), S(3), S(3)}, batch_norm_eval},

    {"network with fan-out", 3, {S(3, 4), S(4, 4), S(4)}, net},
};

/* Builds the case at x (doubles) in dtype t on a fresh graph; returns the root. */
static ad_node *build_at(ad_graph *g, const op_case *c, ad_dtype t, double *const *x, ad_node **in)
{
    ad_graph_reset(g);
    for (int k = 0; k < c->nin; k++) in[k] = ad_var_array(g, NULL, t, c->shape[k], x[k]);
    ad_node *y = c->build(g, in);
    ck_assert_msg(y != NULL, "%s: %s", c->name, ad_error(g));
    return y;
}

/* The forward rule of case c in dtype t: J v from ad_jvp_graph equals J v assembled row by row
 * from reverse sweeps, and (float64) the central difference along v. */
static void check_case(const op_case *c, ad_dtype t, uint64_t seed)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    double *x[MAXIN], *v[MAXIN];
    int64_t n[MAXIN];
    for (int k = 0; k < c->nin; k++) {
        n[k] = ad_shape_size(&c->shape[k]);
        x[k] = malloc((size_t)n[k] * sizeof *x[k]);
        v[k] = malloc((size_t)n[k] * sizeof *v[k]);
        for (int64_t i = 0; i < n[k]; i++) {
            x[k][i] = 0.4 + 1.6 * ad_rng_uniform(&r); /* in every op's domain */
            v[k][i] = ad_rng_uniform(&r) - 0.5;
            if (t == AD_F32) x[k][i] = (float)x[k][i], v[k][i] = (float)v[k][i];
        }
    }
    ad_graph *g = ad_graph_new();
    ad_node *in[MAXIN];
    ad_node *y = build_at(g, c, t, x, in);
    int64_t m = ad_node_size(y);
    ck_assert_int_eq(ad_jvp_graph(g, y, c->nin, in, (const double *const *)v), AD_OK);
    double *jv = malloc((size_t)m * sizeof *jv), *seed_row = calloc((size_t)m, sizeof *seed_row);
    for (int64_t i = 0; i < m; i++) jv[i] = ad_tangent_get(g, y, i);
    double tol = t == AD_F64 ? 1e-10 : 2e-4;
    for (int64_t i = 0; i < m; i++) {
        ad_zero_grad(g);
        seed_row[i] = 1;
        ck_assert_int_eq(ad_backward_seed(g, y, seed_row), AD_OK);
        seed_row[i] = 0;
        double row = 0, scale = 0;
        for (int k = 0; k < c->nin; k++)
            for (int64_t j = 0; j < n[k]; j++) {
                row += ad_node_grad_get(in[k], j) * v[k][j];
                scale += fabs(ad_node_grad_get(in[k], j) * v[k][j]);
            }
        ck_assert_msg(fabs(jv[i] - row) <= tol * (1 + scale), "%s (%s) element %lld: jvp %.17g, reverse %.17g",
                      c->name, ad_dtype_name(t), (long long)i, jv[i], row);
    }
    if (t == AD_F64) {
        double h = 1e-6, *xp[MAXIN], *xm[MAXIN];
        for (int k = 0; k < c->nin; k++) {
            xp[k] = malloc((size_t)n[k] * sizeof *xp[k]);
            xm[k] = malloc((size_t)n[k] * sizeof *xm[k]);
            for (int64_t j = 0; j < n[k]; j++) xp[k][j] = x[k][j] + h * v[k][j], xm[k][j] = x[k][j] - h * v[k][j];
        }
        double *yp = malloc((size_t)m * sizeof *yp);
        ad_node *yy = build_at(g, c, t, xp, in);
        for (int64_t i = 0; i < m; i++) yp[i] = ad_node_get(yy, i);
        yy = build_at(g, c, t, xm, in);
        for (int64_t i = 0; i < m; i++) {
            double num = (yp[i] - ad_node_get(yy, i)) / (2 * h);
            ck_assert_msg(fabs(jv[i] - num) <= 1e-6 * (1 + fabs(num)), "%s element %lld: jvp %.17g, central %.17g",
                          c->name, (long long)i, jv[i], num);
        }
        free(yp);
        for (int k = 0; k < c->nin; k++) free(xp[k]), free(xm[k]);
    }
    free(jv);
    free(seed_row);
    for (int k = 0; k < c->nin; k++) free(x[k]), free(v[k]);
    ad_graph_free(g);
}

START_TEST(jvp_tensor_ops)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int t = 0; t < 2; t++) {
            if (cases[i].build == linear_act)
                for (act_of_case = AD_ACT_RELU; act_of_case <= AD_ACT_TANH; act_of_case++)
                    check_case(&cases[i], (ad_dtype)t, 11 + i);
            else
                check_case(&cases[i], (ad_dtype)t, 11 + i);
        }
}
END_TEST

/* ---- second and third order: gradients as graphs, for every op ---- */

/* Random numbers of a given count, in float32's grid when t is float32. */
static double *random_array(ad_rng *r, int64_t n, double lo, double hi, ad_dtype t)
{
    double *a = malloc((size_t)(n ? n : 1) * sizeof *a);
    for (int64_t i = 0; i < n; i++) {
        a[i] = lo + (hi - lo) * ad_rng_uniform(r);
        if (t == AD_F32) a[i] = (float)a[i];
    }
    return a;
}

/* sum(y * W) for a fixed W: a scalar that every element of y reaches. */
static ad_node *weighted_sum(ad_graph *g, ad_node *y, const double *w)
{
    ad_node *W = ad_const(g, (ad_dtype)ad_node_dtype(y), ad_node_shape(y), w);
    return ad_sum(g, ad_mul(g, y, W));
}

/* sum over k of sum(a[k] * V[k]), V[k] constants of a[k]'s shape. */
static ad_node *dot_nodes(ad_graph *g, int n, ad_node **a, double *const *v)
{
    ad_node *s = NULL;
    for (int k = 0; k < n; k++) {
        ad_node *d = weighted_sum(g, a[k], v[k]);
        s = s ? ad_add(g, s, d) : d;
    }
    return s;
}

/* Case c in dtype t, made scalar as L = sum(y W):
 * - the gradient graph's values equal ad_backward's gradient;
 * - H v from ad_hvp_graph (forward over reverse) equals H v by reverse over reverse (the
 *   gradient graph swept backward) and (float64) the central difference of the gradient;
 * - (float64, unless `third` is false) the third derivative: the gradient of u.(H v) through
 *   the graph of H v, along z, against the central difference of u.(H v) along z. */
static void check_second_order(const op_case *c, ad_dtype t, uint64_t seed, bool third)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    double *x[MAXIN], *v[MAXIN], *u[MAXIN], *z[MAXIN];
    int64_t n[MAXIN];
    for (int k = 0; k < c->nin; k++) {
        n[k] = ad_shape_size(&c->shape[k]);
        x[k] = random_array(&r, n[k], 0.4, 2.0, t); /* in every op's domain, away from kinks */
        v[k] = random_array(&r, n[k], -0.5, 0.5, t);
        u[k] = random_array(&r, n[k], -0.5, 0.5, t);
        z[k] = random_array(&r, n[k], -0.5, 0.5, t);
    }
    ad_graph *g = ad_graph_new();
    ad_node *in[MAXIN], *gr[MAXIN], *hvn[MAXIN];
    ad_node *y = build_at(g, c, t, x, in);
    double *w = random_array(&r, ad_node_size(y), -1, 1, t);
    ad_node *L = weighted_sum(g, y, w);
    double tol = t == AD_F64 ? 1e-11 : 2e-4;
    /* first order through the graph against the kernels */
    ck_assert_msg(ad_grad_graph(g, L, NULL, c->nin, in, gr) == AD_OK, "%s: %s", c->name, ad_error(g));
    ck_assert_int_eq(ad_backward(g, L), AD_OK);
    for (int k = 0; k < c->nin; k++)
        for (int64_t j = 0; j < n[k]; j++) {
            double a = ad_node_get(gr[k], j), b = ad_node_grad_get(in[k], j);
            ck_assert_msg(fabs(a - b) <= tol * (1 + fabs(b)), "%s (%s) input %d [%lld]: gradient graph %.17g, backward %.17g",
                          c->name, ad_dtype_name(t), k, (long long)j, a, b);
        }
    /* H v two ways */
    double *hv[MAXIN];
    for (int k = 0; k < c->nin; k++) hv[k] = malloc((size_t)(n[k] ? n[k] : 1) * sizeof *hv[k]);
    ck_assert_msg(ad_hvp_graph(g, L, c->nin, in, (const double *const *)v, hv) == AD_OK, "%s: %s", c->name, ad_error(g));
    ad_node *S = dot_nodes(g, c->nin, gr, v);
    ad_zero_grad(g);
    ck_assert_int_eq(ad_backward(g, S), AD_OK);
    for (int k = 0; k < c->nin; k++)
        for (int64_t j = 0; j < n[k]; j++) {
            double a = hv[k][j], b = ad_node_grad_get(in[k], j);
            ck_assert_msg(fabs(a - b) <= tol * (1 + fabs(b)), "%s (%s) input %d [%lld]: hvp %.17g, reverse over reverse %.17g",
                          c->name, ad_dtype_name(t), k, (long long)j, a, b);
        }
    if (t == AD_F64) { /* central differences of the kernels' gradient along v */
        double h = 1e-5, *xs[MAXIN], *gp[MAXIN];
        for (int side = 0; side < 2; side++) {
            for (int k = 0; k < c->nin; k++) {
                xs[k] = malloc((size_t)(n[k] ? n[k] : 1) * sizeof *xs[k]);
                for (int64_t j = 0; j < n[k]; j++) xs[k][j] = x[k][j] + (side ? -h : h) * v[k][j];
            }
            ad_node *yy = build_at(g, c, t, xs, in);
            ck_assert_int_eq(ad_backward(g, weighted_sum(g, yy, w)), AD_OK);
            for (int k = 0; k < c->nin; k++) {
                if (!side) gp[k] = malloc((size_t)(n[k] ? n[k] : 1) * sizeof *gp[k]);
                for (int64_t j = 0; j < n[k]; j++) {
                    double gj = ad_node_grad_get(in[k], j);
                    if (!side) gp[k][j] = gj;
                    else {
                        double num = (gp[k][j] - gj) / (2 * h);
                        ck_assert_msg(fabs(hv[k][j] - num) <= 1e-6 * (1 + fabs(num)),
                                      "%s input %d [%lld]: hvp %.17g, central %.17g", c->name, k, (long long)j,
                                      hv[k][j], num);
                    }
                }
                free(xs[k]);
            }
        }
        for (int k = 0; k < c->nin; k++) free(gp[k]);
    }
    if (t == AD_F64 && third) {
        /* P = u.(H v) as a graph at x, and its gradient dotted with z; then P at x +- h z */
        double P[2], dP = 0, h = 1e-5, *xs[MAXIN];
        y = build_at(g, c, t, x, in);
        ck_assert_int_eq(ad_grad_graph(g, weighted_sum(g, y, w), NULL, c->nin, in, gr), AD_OK);
        ck_assert_int_eq(ad_grad_graph(g, dot_nodes(g, c->nin, gr, v), NULL, c->nin, in, hvn), AD_OK);
        ad_node *Pn = dot_nodes(g, c->nin, hvn, u), *g3[MAXIN];
        ck_assert_msg(ad_grad_graph(g, Pn, NULL, c->nin, in, g3) == AD_OK, "%s: %s", c->name, ad_error(g));
        for (int k = 0; k < c->nin; k++)
            for (int64_t j = 0; j < n[k]; j++) dP += ad_node_get(g3[k], j) * z[k][j];
        for (int side = 0; side < 2; side++) {
            for (int k = 0; k < c->nin; k++) {
                xs[k] = malloc((size_t)(n[k] ? n[k] : 1) * sizeof *xs[k]);
                for (int64_t j = 0; j < n[k]; j++) xs[k][j] = x[k][j] + (side ? -h : h) * z[k][j];
            }
            ad_node *yy = build_at(g, c, t, xs, in);
            ck_assert_int_eq(ad_grad_graph(g, weighted_sum(g, yy, w), NULL, c->nin, in, gr), AD_OK);
            ck_assert_int_eq(ad_grad_graph(g, dot_nodes(g, c->nin, gr, v), NULL, c->nin, in, hvn), AD_OK);
            P[side] = ad_value(dot_nodes(g, c->nin, hvn, u));
            for (int k = 0; k < c->nin; k++) free(xs[k]);
        }
        double num = (P[0] - P[1]) / (2 * h);
        ck_assert_msg(fabs(dP - num) <= 1e-6 * (1 + fabs(num)), "%s: third derivative %.17g, central %.17g", c->name,
                      dP, num);
    }
    for (int k = 0; k < c->nin; k++) free(x[k]), free(v[k]), free(u[k]), free(z[k]), free(hv[k]);
    free(w);
    ad_graph_free(g);
}

START_TEST(second_order_tensor_ops)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int t = 0; t < 2; t++) {
            if (cases[i].build == linear_act)
                for (act_of_case = AD_ACT_RELU; act_of_case <= AD_ACT_TANH; act_of_case++)
                    check_second_order(&cases[i], (ad_dtype)t, 31 + i, true);
            else
                check_second_order(&cases[i], (ad_dtype)t, 31 + i, true);
        }
}
END_TEST

/* f(x, y, z) = x^3 y + sin(x) y^2 + exp(x z), with its gradient and Hessian in closed form. */
static ad_node *cubic_fn(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    ad_node *a = ad_mul(g, ad_mul(g, ad_mul(g, x[0], x[0]), x[0]), x[1]);
    ad_node *b = ad_mul(g, ad_sin(g, x[0]), ad_square(g, x[1]));
    return ad_add(g, ad_add(g, a, b), ad_exp(g, ad_mul(g, x[0], x[2])));
}

static void cubic_closed_form(const double *p, double *grad, double *H)
{
    double x = p[0], y = p[1], z = p[2], e = exp(x * z);
    grad[0] = 3 * x * x * y + cos(x) * y * y + z * e;
    grad[1] = x * x * x + 2 * sin(x) * y;
    grad[2] = x * e;
    double h[9] = {6 * x * y - sin(x) * y * y + z * z * e, 3 * x * x + 2 * cos(x) * y, e + x * z * e,
                   3 * x * x + 2 * cos(x) * y, 2 * sin(x), 0,
                   e + x * z * e, 0, x * x * e};
    memcpy(H, h, sizeof h);
}

/* The one-call Hessian (the scalar graph's forward over reverse), the Hessian of the graph
 * through gradient nodes (forward and reverse Jacobians of the gradient), and the closed
 * form agree; the Hessian is symmetric; H v is the product. */
START_TEST(hessian_of_a_c_function)
{
    double x[3] = {0.7, -1.3, 0.4}, grad[3], H[9], want_g[3], want_H[9], value;
    cubic_closed_form(x, want_g, want_H);
    ck_assert_int_eq(ad_hessian(NULL, cubic_fn, 3, x, NULL, &value, grad, H), AD_OK);
    for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(grad[i], want_g[i], 1e-14);
    for (int i = 0; i < 9; i++) ck_assert_msg(fabs(H[i] - want_H[i]) <= 1e-14 * (1 + fabs(want_H[i])), "H[%d] %.17g, want %.17g", i, H[i], want_H[i]);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < i; j++) ck_assert_double_eq_tol(H[i * 3 + j], H[j * 3 + i], 1e-14);
    double v[3] = {0.3, -2, 1.5}, hv[3];
    ck_assert_int_eq(ad_hvp(NULL, cubic_fn, 3, x, v, NULL, NULL, NULL, hv), AD_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq_tol(hv[i], want_H[3 * i] * v[0] + want_H[3 * i + 1] * v[1] + want_H[3 * i + 2] * v[2], 1e-13);
    /* the general path on the same recording: gradient nodes, then their Jacobian */
    ad_graph *g = ad_graph_new();
    ad_node *xs[3], *gr[3];
    for (int i = 0; i < 3; i++) xs[i] = ad_var(g, NULL, x[i]);
    ad_node *y = cubic_fn(g, xs, 3, NULL);
    ck_assert_int_eq(ad_grad_graph(g, y, NULL, 3, xs, gr), AD_OK);
    ad_node *parts[3];
    for (int i = 0; i < 3; i++) parts[i] = ad_reshape(g, gr[i], AD_SHAPE(1));
    ad_node *gvec = ad_concat(g, parts, 3, 0);
    double J[9];
    for (int mode = AD_JAC_FORWARD; mode <= AD_JAC_REVERSE; mode++) {
        ck_assert_int_eq(ad_jacobian_graph(g, gvec, 3, xs, (ad_jac_mode)mode, J), AD_OK);
        for (int i = 0; i < 9; i++) ck_assert_double_eq_tol(J[i], want_H[i], 1e-13 * (1 + fabs(want_H[i])));
    }
    ad_graph_free(g);
}
END_TEST

/* Derivatives of every order from gradients of gradients, against closed forms: the k-th
 * derivative of x^5, exp(2x), e^x sin x, log x and 1/x up to the fourth. */
typedef struct {
    const char *name;
    ad_node *(*build)(ad_graph *g, ad_node *x);
    double (*d[5])(double x);
} closed_form;

static ad_node *pow5(ad_graph *g, ad_node *x) { return ad_pow_scalar(g, x, 5); }
static ad_node *exp2x(ad_graph *g, ad_node *x) { return ad_exp(g, ad_mul_scalar(g, x, 2)); }
static ad_node *expsin(ad_graph *g, ad_node *x) { return ad_mul(g, ad_exp(g, x), ad_sin(g, x)); }
static ad_node *logx(ad_graph *g, ad_node *x) { return ad_log(g, x); }
static ad_node *recipx(ad_graph *g, ad_node *x) { return ad_div(g, ad_const_scalar(g, 1), x); }
static double p5_0(double x) { return pow(x, 5); }
static double p5_1(double x) { return 5 * pow(x, 4); }
static double p5_2(double x) { return 20 * pow(x, 3); }
static double p5_3(double x) { return 60 * x * x; }
static double p5_4(double x) { return 120 * x; }
static double e2_0(double x) { return exp(2 * x); }
static double e2_1(double x) { return 2 * exp(2 * x); }
static double e2_2(double x) { return 4 * exp(2 * x); }
static double e2_3(double x) { return 8 * exp(2 * x); }
static double e2_4(double x) { return 16 * exp(2 * x); }
static double es_0(double x) { return exp(x) * sin(x); }
static double es_1(double x) { return exp(x) * (sin(x) + cos(x)); }
static double es_2(double x) { return 2 * exp(x) * cos(x); }
static double es_3(double x) { return 2 * exp(x) * (cos(x) - sin(x)); }
static double es_4(double x) { return -4 * exp(x) * sin(x); }
static double lg_0(double x) { return log(x); }
static double lg_1(double x) { return 1 / x; }
static double lg_2(double x) { return -1 / (x * x); }
static double lg_3(double x) { return 2 / (x * x * x); }
static double lg_4(double x) { return -6 / (x * x * x * x); }
static double rc_0(double x) { return 1 / x; }
static double rc_1(double x) { return -1 / (x * x); }
static double rc_2(double x) { return 2 / (x * x * x); }
static double rc_3(double x) { return -6 / (x * x * x * x); }
static double rc_4(double x) { return 24 / (x * x * x * x * x); }

START_TEST(derivatives_of_any_order)
{
    static const closed_form forms[] = {
        {"x^5", pow5, {p5_0, p5_1, p5_2, p5_3, p5_4}},
        {"exp(2x)", exp2x, {e2_0, e2_1, e2_2, e2_3, e2_4}},
        {"e^x sin x", expsin, {es_0, es_1, es_2, es_3, es_4}},
        {"log x", logx, {lg_0, lg_1, lg_2, lg_3, lg_4}},
        {"1/x", recipx, {rc_0, rc_1, rc_2, rc_3, rc_4}},
    };
    const double at[] = {0.3, 1.1, 2.7};
    for (size_t f = 0; f < sizeof forms / sizeof *forms; f++)
        for (size_t p = 0; p < sizeof at / sizeof *at; p++)
            for (int t = 0; t < 2; t++) { /* a float64 scalar, and a float64 tensor of one element */
                ad_graph *g = ad_graph_new();
                ad_node *x = t ? ad_var_array(g, "x", AD_F64, AD_SHAPE(1), &at[p]) : ad_var(g, "x", at[p]);
                ad_node *d = forms[f].build(g, x);
                for (int k = 0; k <= 4; k++) {
                    double want = forms[f].d[k](at[p]), got = ad_node_get(d, 0);
                    ck_assert_msg(fabs(got - want) <= 1e-12 * (1 + fabs(want)), "%s: derivative %d at %g: %.17g, want %.17g",
                                  forms[f].name, k, at[p], got, want);
                    if (k < 4) ck_assert_int_eq(ad_grad_graph(g, d, NULL, 1, &x, &d), AD_OK);
                }
                ad_graph_free(g);
            }
}
END_TEST

/* At a kink the second derivative is 0, as PyTorch's (relu, abs, max, min, leaky_relu). */
static ad_node *kinks_fn(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    ad_node *a = ad_mul(g, ad_relu(g, x[0]), x[1]), *b = ad_mul(g, ad_abs(g, x[0]), x[1]);
    ad_node *c = ad_mul(g, ad_max(g, x[0], x[1]), x[1]), *d = ad_leaky_relu(g, ad_mul(g, x[0], x[1]), 0.1);
    return ad_add(g, ad_add(g, a, b), ad_add(g, c, ad_add(g, d, ad_min(g, x[0], x[1]))));
}

START_TEST(kinks_have_second_derivative_zero)
{
    double x[2] = {0, 0}, H[4];
    /* torch.autograd.functional.hessian of the same function at (0, 0) (torch 1.13): [[0, 0.6],
     * [0.6, 1]]: half of max's tie and leaky_relu's slope at 0 in the cross term */
    const double want[4] = {0, 0.6, 0.6, 1};
    ck_assert_int_eq(ad_hessian(NULL, kinks_fn, 2, x, NULL, NULL, NULL, H), AD_OK);
    for (int i = 0; i < 4; i++) ck_assert_msg(fabs(H[i] - want[i]) < 1e-15, "H[%d] = %.17g, want %g", i, H[i], want[i]);
    /* the general path: the same function on rank-0 tensors (no scalar fast path) */
    ad_graph *g = ad_graph_new();
    ad_node *xs[2] = {ad_var_array(g, "a", AD_F64, AD_SHAPE0, &x[0]), ad_var_array(g, "b", AD_F64, AD_SHAPE0, &x[1])};
    ck_assert_int_eq(ad_hessian_graph(g, kinks_fn(g, xs, 2, NULL), 2, xs, H), AD_OK);
    for (int i = 0; i < 4; i++) ck_assert_msg(fabs(H[i] - want[i]) < 1e-15, "H[%d] = %.17g, want %g", i, H[i], want[i]);
    ad_graph_free(g);
}
END_TEST

static void no_graph_rule_forward(const ad_op_ctx *c)
{
    ad_data_set(ad_node_data(c->out), ad_node_dtype(c->out), 0, 2 * ad_node_get(c->in[0], 0));
}
static ad_status no_graph_rule_backward(const ad_op_ctx *c)
{
    double *gx = ad_input_grad_buffer(c->graph, c->in[0]);
    if (gx) gx[0] += 2 * ad_node_grad_get(c->out, 0);
    return AD_OK;
}

/* Bad calls get a status and a message; a user op without a reverse rule as a graph says
 * so by name; nothing is left half-made. */
START_TEST(second_order_bad_calls)
{
    ad_graph *g = ad_graph_new(), *other = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0.5), *v2 = ad_var_array(g, "v", AD_F64, AD_SHAPE(2), (double[]){1, 2});
    ad_node *z = ad_var(g, "z", 3), *inner = ad_sum(g, v2);
    ad_node *y = ad_mul(g, x, ad_sum(g, ad_mul(g, v2, v2))), *gr[3], *ox = ad_var(other, "x", 1);
    double H[9], hv[2], dir[2] = {1, 1};
    const double *vs[1] = {dir};
    double *hs[1] = {hv};
    ck_assert_int_eq(ad_grad_graph(NULL, y, NULL, 1, &x, gr), AD_ERR_NULL);
    ck_assert_int_eq(ad_grad_graph(g, NULL, NULL, 1, &x, gr), AD_ERR_NULL);
    ad_clear_error(g);
    ck_assert_int_eq(ad_grad_graph(g, y, NULL, 1, &ox, gr), AD_ERR_ARG);
    ad_clear_error(g);
    ck_assert_int_eq(ad_grad_graph(g, v2, NULL, 1, &x, gr), AD_ERR_SHAPE); /* two elements, no seed */
    ck_assert_ptr_nonnull(strstr(ad_error(g), "seed"));
    ad_clear_error(g);
    ck_assert_int_eq(ad_grad_graph(g, v2, x, 1, &x, gr), AD_ERR_SHAPE); /* a seed of the wrong shape */
    ad_clear_error(g);
    ck_assert_int_eq(ad_hessian_graph(g, y, 1, &ox, H), AD_ERR_ARG);
    ad_clear_error(g);
    ck_assert_int_eq(ad_hvp_graph(g, y, 1, &inner, vs, hs), AD_ERR_ARG); /* not a leaf */
    ad_clear_error(g);
    ck_assert_int_eq(ad_hessian_graph(g, v2, 1, &v2, H), AD_ERR_SHAPE);
    ad_clear_error(g);
    ck_assert_int_eq(ad_hessian(NULL, NULL, 1, dir, NULL, NULL, NULL, H), AD_ERR_NULL);
    ck_assert_int_eq(ad_hvp(NULL, cubic_fn, 3, dir, NULL, NULL, NULL, NULL, hv), AD_ERR_NULL);
    /* a gradient with respect to an inner node the root does not use, and one it does not
     * reach; then a node made after the root */
    ad_node *sq = ad_node_input(ad_node_input(y, 1), 0), *wrt[3] = {inner, z, sq};
    ck_assert_int_eq(ad_grad_graph(g, y, NULL, 3, wrt, gr), AD_OK);
    ck_assert_double_eq(ad_value(gr[0]), 0);
    ck_assert_double_eq(ad_value(gr[1]), 0);
    ck_assert_double_eq(ad_node_get(gr[2], 1), 0.5);
    ad_node *late = ad_var(g, "late", 1);
    ck_assert_int_eq(ad_grad_graph(g, y, NULL, 1, &late, gr), AD_ERR_ARG);
    ad_clear_error(g);
    /* an op without a reverse rule as a graph */
    ad_op_def def = {.name = "twice_nograph", .arity = 1, .forward = no_graph_rule_forward,
                     .backward = no_graph_rule_backward};
    int op = ad_op_find("twice_nograph") >= 0 ? ad_op_find("twice_nograph") : ad_op_register(&def);
    ck_assert_int_ge(op, 0);
    ad_node *w = ad_var_array(g, "w", AD_F64, AD_SHAPE0, (double[]){1.5});
    ad_node *q = ad_apply(g, op, &w, 1, NULL, 0), *gq;
    ck_assert_int_eq(ad_grad_graph(g, ad_mul(g, q, q), NULL, 1, &w, &gq), AD_ERR_NO_BACKWARD);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "twice_nograph"));
    ck_assert_ptr_null(gq);
    ad_graph_free(g);
    ad_graph_free(other);
}
END_TEST

/* Corners a review found: pow's guards (0 where its formula's derivative is 0), an empty
 * part of a concat, a seed of a freed graph, grads and wrt one array, and pruning (an op
 * without a graph rule on a path that leads to no requested input is never asked). */
static void register_user_ops(void);
static double softsign_d2(double x, double y, double p);

static ad_node *pow_fn(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    return ad_pow(g, x[0], x[1]);
}

START_TEST(second_order_corners)
{
    /* pow at a <= 0 and b = 0: the gradient graph agrees with backward, the Hessian with the
     * scalar path's (PyTorch: d/db x^b at x = 0 is 0) */
    const double pts[][2] = {{-2, 2}, {0, 2}, {0, 0}, {1.5, 0}, {0, 3}};
    for (size_t k = 0; k < sizeof pts / sizeof *pts; k++) {
        double Hs[4], Ht[4], gs[2];
        ck_assert_int_eq(ad_hessian(NULL, pow_fn, 2, pts[k], NULL, NULL, gs, Hs), AD_OK);
        ad_graph *g = ad_graph_new();
        ad_node *xs[2] = {ad_var_array(g, "a", AD_F64, AD_SHAPE0, &pts[k][0]),
                          ad_var_array(g, "b", AD_F64, AD_SHAPE0, &pts[k][1])}, *gr[2];
        ad_node *y = pow_fn(g, xs, 2, NULL);
        ck_assert_int_eq(ad_grad_graph(g, y, NULL, 2, xs, gr), AD_OK);
        ck_assert_int_eq(ad_backward(g, y), AD_OK);
        for (int i = 0; i < 2; i++) {
            ck_assert_msg(ad_value(gr[i]) == ad_grad(xs[i]), "pow at (%g, %g): d/dx%d graph %g, backward %g", pts[k][0],
                          pts[k][1], i, ad_value(gr[i]), ad_grad(xs[i]));
            ck_assert_double_eq(gs[i], ad_grad(xs[i]));
        }
        ck_assert_int_eq(ad_hessian_graph(g, y, 2, xs, Ht), AD_OK);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(Ht[i] == Hs[i] || fabs(Ht[i] - Hs[i]) < 1e-12, "pow at (%g, %g): H[%d] tensor %g, scalar %g",
                          pts[k][0], pts[k][1], i, Ht[i], Hs[i]);
        ad_graph_free(g);
    }
    /* a registered op with its second derivative: a gradient of a gradient, but no third */
    register_user_ops();
    {
        ad_graph *h = ad_graph_new();
        ad_node *u = ad_var_array(h, "u", AD_F64, AD_SHAPE(2), (double[]){-0.5, 2}), *d1, *d2, *d3;
        ad_node *sy = ad_sum(h, ad_apply(h, ad_op_find("softsign"), &u, 1, NULL, 0));
        ck_assert_int_eq(ad_grad_graph(h, sy, NULL, 1, &u, &d1), AD_OK);
        ck_assert_int_eq(ad_grad_graph(h, ad_sum(h, d1), NULL, 1, &u, &d2), AD_OK);
        ck_assert_double_eq_tol(ad_node_get(d2, 0), softsign_d2(-0.5, 0, 0), 1e-15);
        ck_assert_double_eq_tol(ad_node_get(d2, 1), softsign_d2(2, 0, 0), 1e-15);
        ck_assert_int_eq(ad_grad_graph(h, ad_sum(h, d2), NULL, 1, &u, &d3), AD_ERR_NO_BACKWARD);
        ck_assert_ptr_nonnull(strstr(ad_error(h), "softsign"));
        ad_graph_free(h);
    }
    /* d^3/dx^3 x^2 at 0 is 0, not NaN */
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0), *d = ad_pow_scalar(g, x, 2);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(ad_grad_graph(g, d, NULL, 1, &x, &d), AD_OK);
    ck_assert_double_eq(ad_value(d), 0);
    /* an empty part of a concat */
    ad_node *e = ad_var_array(g, "e", AD_F64, AD_SHAPE(0), NULL), *v = ad_var_array(g, "v", AD_F64, AD_SHAPE(2), (double[]){1, 2});
    ad_node *parts[2] = {v, e}, *gr[2];
    ad_node *r = ad_sum(g, ad_square(g, ad_concat(g, parts, 2, 0)));
    ck_assert_msg(ad_grad_graph(g, r, NULL, 2, parts, gr) == AD_OK, "%s", ad_error(g));
    ck_assert_double_eq(ad_node_get(gr[0], 1), 4);
    ck_assert_int_eq(ad_node_size(gr[1]), 0);
    /* a seed of a freed graph is refused without being read */
    ad_graph *other = ad_graph_new();
    ad_node *stale = ad_var_array(other, "s", AD_F64, AD_SHAPE(2), (double[]){1, 1});
    ad_graph_free(other);
    ck_assert_int_eq(ad_grad_graph(g, v, stale, 1, &v, gr), AD_ERR_ARG);
    ck_assert_ptr_null(gr[0]);
    ad_clear_error(g);
    /* grads and wrt one array */
    ad_node *arr[1] = {v};
    ck_assert_int_eq(ad_grad_graph(g, r, NULL, 1, arr, arr), AD_OK);
    ck_assert_double_eq(ad_node_get(arr[0], 0), 2);
    /* pruning: the op without a graph rule feeds only what is not asked for */
    ad_op_def def = {.name = "twice_nograph", .arity = 1, .forward = no_graph_rule_forward,
                     .backward = no_graph_rule_backward};
    int op = ad_op_find("twice_nograph") >= 0 ? ad_op_find("twice_nograph") : ad_op_register(&def);
    ad_node *w = ad_var_array(g, "w", AD_F64, AD_SHAPE0, (double[]){1.5}), *z = ad_var(g, "z", 2);
    ad_node *q = ad_add(g, ad_apply(g, op, &w, 1, NULL, 0), ad_mul(g, z, z)), *gz;
    ck_assert_msg(ad_grad_graph(g, q, NULL, 1, &z, &gz) == AD_OK, "%s", ad_error(g));
    ck_assert_double_eq(ad_value(gz), 4);
    ck_assert_int_eq(ad_grad_graph(g, q, NULL, 1, &w, &gz), AD_ERR_NO_BACKWARD);
    ad_graph_free(g);
}
END_TEST

/* Every allocation of a Hessian made to fail in turn: a clean AD_ERR_NOMEM each time (or the
 * failure absorbed), never a crash or a wrong answer. */
START_TEST(hessian_out_of_memory)
{
    double x[3] = {0.7, -1.3, 0.4}, H[9], want_g[3], want_H[9];
    cubic_closed_form(x, want_g, want_H);
    for (int path = 0; path < 2; path++) {
        long before = ad_alloc_count();
        ad_graph *g = ad_graph_new();
        ad_node *xs[3];
        for (int i = 0; i < 3; i++)
            xs[i] = path ? ad_var_array(g, NULL, AD_F64, AD_SHAPE0, &x[i]) : ad_var(g, NULL, x[i]);
        ck_assert_int_eq(ad_hessian_graph(g, cubic_fn(g, xs, 3, NULL), 3, xs, H), AD_OK);
        ad_graph_free(g);
        long total = ad_alloc_count() - before;
        for (long n = 1; n <= total; n++) {
            ad_fail_alloc_at(n);
            g = ad_graph_new();
            ad_status st = AD_ERR_NOMEM;
            if (g) {
                for (int i = 0; i < 3; i++)
                    xs[i] = path ? ad_var_array(g, NULL, AD_F64, AD_SHAPE0, &x[i]) : ad_var(g, NULL, x[i]);
                ad_node *y = cubic_fn(g, xs, 3, NULL);
                st = y ? ad_hessian_graph(g, y, 3, xs, H) : ad_status_of(g);
            }
            ad_fail_alloc_at(0);
            ck_assert_msg(st == AD_OK || st == AD_ERR_NOMEM, "allocation %ld: %d", n, (int)st);
            for (int i = 0; st == AD_OK && i < 9; i++) ck_assert_double_eq_tol(H[i], want_H[i], 1e-13 * (1 + fabs(want_H[i])));
            ad_graph_free(g);
        }
    }
}
END_TEST

static void register_user_ops(void);

/* Every elementwise op, unary on [3,4], binary with broadcasting and with fan-out, to third
 * order (second for the registered ops: their derivatives are known only as numbers; a
 * registered op without second-derivative formulas reports that it has none). */
START_TEST(second_order_elementwise_ops)
{
    register_user_ops();
    for (current_op = 0; current_op < ad_op_count(); current_op++) {
        int arity, nparam;
        if (!ad_op_is_elementwise(current_op, &arity, &nparam)) continue;
        const char *name = ad_op_get(current_op)->name;
        if (strcmp(name, "hypot") == 0) continue; /* below */
        bool builtin = ad_op_find("softsign") != current_op;
        op_case one = {name, 1, {AD_SHAPE(3, 4)}, ew1};
        op_case two = {name, 2, {AD_SHAPE(2, 1, 4), AD_SHAPE(3, 1)}, ew2};
        op_case fan = {name, 1, {AD_SHAPE(5)}, ew2_fanout};
        op_case sc1 = {name, 1, {AD_SHAPE0}, ew1}, sc2 = {name, 2, {AD_SHAPE0, AD_SHAPE0}, ew2};
        for (int t = 0; t < 2; t++) {
            if (arity == 1) {
                check_second_order(&one, (ad_dtype)t, 3 + (uint64_t)current_op, builtin);
                check_second_order(&sc1, (ad_dtype)t, 4 + (uint64_t)current_op, builtin);
            } else {
                check_second_order(&two, (ad_dtype)t, 5 + (uint64_t)current_op, builtin);
                check_second_order(&fan, (ad_dtype)t, 7 + (uint64_t)current_op, builtin);
                check_second_order(&sc2, (ad_dtype)t, 9 + (uint64_t)current_op, builtin);
            }
        }
    }
    /* hypot was registered without second derivatives */
    ad_graph *g = ad_graph_new();
    ad_node *a = ad_var(g, "a", 0.3), *b = ad_var(g, "b", 0.4), *in[2] = {a, b};
    ad_node *y = ad_apply(g, ad_op_find("hypot"), in, 2, NULL, 0), *gr[2];
    double H[4];
    ck_assert_int_eq(ad_grad_graph(g, y, NULL, 2, in, gr), AD_OK);
    ck_assert_double_eq_tol(ad_value(gr[0]), 0.6, 1e-15);
    ck_assert_int_eq(ad_hessian_graph(g, y, 2, in, H), AD_ERR_NO_BACKWARD);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "hypot"));
    ad_graph_free(g);
}
END_TEST

/* Every elementwise op of the registry (built-in and user), on tensors: unary on [3,4];
 * binary with broadcasting ([2,1,4] against [3,1]) and with fan-out (x op x). */
START_TEST(jvp_elementwise_ops)
{
    register_user_ops();
    for (current_op = 0; current_op < ad_op_count(); current_op++) {
        int arity, nparam;
        if (!ad_op_is_elementwise(current_op, &arity, &nparam)) continue;
        const char *name = ad_op_get(current_op)->name;
        op_case one = {name, 1, {AD_SHAPE(3, 4)}, ew1};
        op_case two = {name, 2, {AD_SHAPE(2, 1, 4), AD_SHAPE(3, 1)}, ew2};
        op_case fan = {name, 1, {AD_SHAPE(5)}, ew2_fanout};
        for (int t = 0; t < 2; t++) {
            if (arity == 1) check_case(&one, (ad_dtype)t, 3 + (uint64_t)current_op);
            else {
                check_case(&two, (ad_dtype)t, 5 + (uint64_t)current_op);
                check_case(&fan, (ad_dtype)t, 7 + (uint64_t)current_op);
            }
        }
    }
}
END_TEST

/* Scalar graphs: the fast path's partials carry tangents too; ad_jvp on a C function. */
static ad_node *scalar_fn(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    ad_node *s = ad_mul(g, x[0], ad_sin(g, x[1]));
    return ad_add(g, ad_softplus(g, s), ad_div(g, ad_square(g, x[0]), ad_exp(g, x[1])));
}

static double scalar_fn_value(double a, double b)
{
    return log1p(exp(a * sin(b))) + a * a / exp(b);
}

START_TEST(jvp_of_a_c_function)
{
    double x[2] = {0.8, -0.4}, v[2] = {0.3, 1.7}, y, jv, h = 1e-6;
    ck_assert_int_eq(ad_jvp(NULL, scalar_fn, 2, x, v, NULL, 1, &y, &jv), AD_OK);
    ck_assert_double_eq_tol(y, scalar_fn_value(x[0], x[1]), 1e-15);
    double num = (scalar_fn_value(x[0] + h * v[0], x[1] + h * v[1]) -
                  scalar_fn_value(x[0] - h * v[0], x[1] - h * v[1])) / (2 * h);
    ck_assert_double_eq_tol(jv, num, 1e-8);
    double grad[2], val;
    ck_assert_int_eq(ad_gradient(NULL, scalar_fn, 2, x, NULL, &val, grad), AD_OK);
    ck_assert_double_eq_tol(jv, grad[0] * v[0] + grad[1] * v[1], 1e-14);
    /* the result's size is checked */
    ad_graph *g = ad_graph_new();
    ck_assert_int_eq(ad_jvp(g, scalar_fn, 2, x, v, NULL, 3, &y, &jv), AD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "not 3 elements"));
    ad_graph_free(g);
}
END_TEST

/* ---- user ops as strong as built-ins ---- */

static double softsign(double x, double p) { (void)p; return x / (1 + fabs(x)); }
static double softsign_d(double x, double y, double p) { (void)y, (void)p; return 1 / ((1 + fabs(x)) * (1 + fabs(x))); }
static double softsign_d2(double x, double y, double p)
{
    (void)y, (void)p;
    double s = 1 + fabs(x);
    return -2 * (x > 0 ? 1 : x < 0 ? -1 : 0) / (s * s * s);
}
static double hyp(double a, double b) { return hypot(a, b); }
static double hyp_da(double a, double b, double y) { (void)b; return a / y; }
static double hyp_db(double a, double b, double y) { (void)a; return b / y; }

static const ad_unary_def softsign_def = {"softsign", softsign, softsign_d, softsign_d2,
                                          "d/dx[x/(1+|x|)] = 1/(1+|x|)^2"};
static const ad_binary_def hypot_def = {"hypot", hyp, hyp_da, hyp_db, NULL, NULL, NULL, "d/da[hypot(a,b)] = a/y"};

static void register_user_ops(void)
{
    if (ad_op_find("softsign") < 0) ad_op_register_unary(&softsign_def);
    if (ad_op_find("hypot") < 0) ad_op_register_binary(&hypot_def);
}

START_TEST(user_elementwise_ops)
{
    const ad_unary_def u = softsign_def;
    int us = ad_op_register_unary(&u), hy = ad_op_register_binary(&hypot_def);
    ck_assert_int_ge(us, 0);
    ck_assert_int_ge(hy, 0);
    ck_assert_int_eq(ad_op_register_unary(&u), -1); /* the name is taken */
    int arity, nparam;
    ck_assert(ad_op_is_elementwise(us, &arity, &nparam) && arity == 1);
    ck_assert(ad_op_is_elementwise(hy, &arity, &nparam) && arity == 2);
    ck_assert(!ad_op_is_elementwise(ad_op_find("matmul"), &arity, &nparam));

    ad_graph *g = ad_graph_new();
    /* the scalar fast path: one node with its partial recorded */
    ad_node *x = ad_var(g, "x", -0.5), *y = ad_apply(g, us, &x, 1, NULL, 0);
    ck_assert_double_eq_tol(ad_node_local_grad(y, 0), 1 / 2.25, 1e-15);
    ck_assert_int_eq(ad_backward(g, y), AD_OK);
    ck_assert_double_eq_tol(ad_grad(x), 1 / 2.25, 1e-15);
    /* its words in the trace */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(ad_trace_backward(g, y, f, 2), AD_OK);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "\u2202/\u2202x [x/(1+|x|)] = 1/(1+|x|)^2 = 0.44"));
    free(buf);

    /* float32 with broadcasting, and a tensor large enough for the pool's threads: the same
     * bits as the float32 rounding of the formula element by element */
    enum { N = 1 << 17 };
    ad_set_threads(2);
    double *big = malloc(N * sizeof *big);
    for (int i = 0; i < N; i++) big[i] = (i % 201 - 100) / 37.0;
    ad_node *xt = ad_var_array(g, "xt", AD_F32, AD_SHAPE(N), big);
    ad_node *yt = ad_apply(g, us, &xt, 1, NULL, 0);
    ck_assert_ptr_nonnull(yt);
    for (int i = 0; i < N; i += 997)
        ck_assert_float_eq(((float *)ad_node_data(yt))[i], (float)softsign((float)big[i], 0));
    ad_node *col = ad_var_array(g, "col", AD_F32, AD_SHAPE(3, 1), (double[]){1, 2, 3});
    ad_node *row = ad_var_array(g, "row", AD_F32, AD_SHAPE(4), (double[]){4, 5, 6, 7});
    ad_node *h = ad_apply(g, hy, (ad_node *[]){col, row}, 2, NULL, 0);
    ad_shape hs = ad_node_shape(h);
    ck_assert_int_eq(hs.rank, 2);
    ck_assert_int_eq(hs.dim[0], 3);
    ck_assert_int_eq(hs.dim[1], 4);
    ck_assert_float_eq_tol(ad_node_get(h, 1 * 4 + 2), (float)hypot(2, 6), 1e-6);
    ad_node *loss = ad_sum(g, h);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    double want = 0;
    for (int j = 0; j < 4; j++) want += 2 / hypot(2, 4 + j);
    ck_assert_float_eq_tol(ad_node_grad_get(col, 1), want, 1e-5);
    free(big);
    ad_graph_free(g);
    ad_set_threads(0);
    /* forward mode on them: jvp_elementwise_ops, which covers every registered op */
}
END_TEST

/* A general user op with state from forward to backward and a forward rule: y = sum w_i x_i
 * with the weights w given to ad_apply_with and kept in the node. */
typedef struct { double *w; int64_t n; } wsum_state;

static ad_status wsum_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    wsum_state *st = c->state;
    if (!arg) return snprintf(msg, len, "weights are NULL"), AD_ERR_NULL;
    st->n = ad_node_size(c->in[0]);
    if (!(st->w = ad_op_alloc(c, (size_t)st->n * sizeof *st->w))) return AD_ERR_NOMEM;
    memcpy(st->w, arg, (size_t)st->n * sizeof *st->w);
    return AD_OK;
}
static int wsum_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
    *out = AD_SHAPE0;
    return 0;
}
static void wsum_forward(const ad_op_ctx *c)
{
    const wsum_state *st = c->state;
    double s = 0;
    for (int64_t i = 0; i < st->n; i++) s += st->w[i] * ad_node_get(c->in[0], i);
    *(double *)ad_node_data(c->out) = s;
}
static ad_status wsum_backward(const ad_op_ctx *c)
{
    const wsum_state *st = c->state;
    double *gx = ad_input_grad_buffer(c->graph, c->in[0]), gy = ad_grad(c->out);
    for (int64_t i = 0; gx && i < st->n; i++) gx[i] += st->w[i] * gy;
    return ad_status_of(c->graph);
}
static ad_status wsum_jvp(const ad_op_ctx *c)
{
    const wsum_state *st = c->state;
    const double *tx = ad_tangent_data(c->graph, c->in[0]);
    double *ty = ad_tangent_buffer(c->graph, c->out);
    if (!ty) return ad_status_of(c->graph);
    for (int64_t i = 0; tx && i < st->n; i++) *ty += st->w[i] * tx[i];
    return AD_OK;
}

START_TEST(user_op_with_state_and_forward_rule)
{
    ad_op_def d = {.name = "wsum", .arity = 1, .shape = wsum_shape, .forward = wsum_forward,
                   .backward = wsum_backward, .local_grad = "d/dx_i[sum w x] = w_i", .jvp = wsum_jvp,
                   .state_size = sizeof(wsum_state), .init = wsum_init};
    int id = ad_op_register(&d);
    ck_assert_int_ge(id, 0);
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(3), (double[]){1, 2, 3});
    double w[3] = {0.5, -1, 2};
    ad_node *y = ad_apply_with(g, id, &x, 1, NULL, 0, w);
    w[0] = 100; /* the node keeps its own copy */
    ck_assert_double_eq(ad_value(y), 0.5 - 2 + 6);
    ck_assert_int_eq(ad_backward(g, y), AD_OK);
    ck_assert_double_eq(ad_node_grad_get(x, 2), 2);
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &x, (const double *const[]){(double[]){1, 1, 1}}), AD_OK);
    ck_assert_double_eq(ad_tangent_get(g, y, 0), 1.5);
    ck_assert_ptr_null(ad_apply(g, id, &x, 1, NULL, 0));
    ck_assert_str_eq(ad_error(g), "wsum: weights are NULL");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_NULL);
    /* an op without a forward rule says so */
    ad_graph_reset(g);
    ad_op_def nojvp = d;
    nojvp.name = "wsum_nojvp";
    nojvp.jvp = NULL;
    int id2 = ad_op_register(&nojvp);
    x = ad_var_array(g, "x", AD_F64, AD_SHAPE(3), (double[]){1, 2, 3});
    y = ad_apply_with(g, id2, &x, 1, NULL, 0, (double[]){1, 1, 1});
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &x, (const double *const[]){(double[]){1, 1, 1}}), AD_ERR_NO_JVP);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "wsum_nojvp"));
    ad_graph_free(g);
}
END_TEST

/* Forward mode makes nothing after the first sweep: tangents reuse the graph's memory. */
START_TEST(jvp_allocates_nothing_in_a_loop)
{
    ad_graph *g = ad_graph_new();
    long before = 0;
    for (int step = 0; step < 4; step++) {
        ad_graph_reset(g);
        ad_node *x = ad_var_array(g, "x", AD_F32, AD_SHAPE(16, 8), NULL);
        ad_node *w = ad_var_array(g, "w", AD_F32, AD_SHAPE(4, 8), NULL);
        ad_node *y = ad_sum(g, ad_tanh(g, ad_linear(g, x, w, NULL)));
        double seed[32] = {1};
        ck_assert_int_eq(ad_jvp_graph(g, y, 1, &w, (const double *const[]){seed}), AD_OK);
        if (step == 1) before = ad_alloc_count();
    }
    ck_assert_int_eq(ad_alloc_count(), before);
    ad_graph_free(g);
}
END_TEST

/* Seeds in the leaves' dtype, used in place, give the tangents that double seeds give. */
START_TEST(jvp_with_typed_seeds)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F32, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_node *w = ad_var_array(g, "w", AD_F32, AD_SHAPE(4, 3), NULL);
    ad_node *s = ad_var(g, "s", 0.5);
    ad_node *y = ad_mul(g, ad_sum(g, ad_sigmoid(g, ad_linear(g, x, w, NULL))), ad_full(g, AD_F32, AD_SHAPE0, 1));
    ad_node *z = ad_add(g, ad_mul(g, s, s), ad_const_scalar(g, 1));
    double dw[12], ds = 2;
    float dw32[12];
    for (int i = 0; i < 12; i++) dw32[i] = (float)(dw[i] = 0.1 * i - 0.4);
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &w, (const double *const[]){dw}), AD_OK);
    double want = ad_tangent_get(g, y, 0);
    ck_assert_int_eq(ad_jvp_graph_data(g, y, 1, &w, (const void *const[]){dw32}), AD_OK);
    ck_assert_double_eq(ad_tangent_get(g, y, 0), want);
    ck_assert_double_ne(want, 0);
    /* a float64 scalar leaf: its seed is copied into the graph */
    ck_assert_int_eq(ad_jvp_graph_data(g, z, 1, &s, (const void *const[]){&ds}), AD_OK);
    ck_assert_double_eq(ad_tangent_get(g, z, 0), 2 * 0.5 * 2);
    ad_graph_free(g);
}
END_TEST

/* ---- Jacobians ---- */

/* R^3 -> R^4: (x0 x1, sin x2, x0 + x1 x2, exp(x0) / x2), as a [4] vector. */
static ad_node *vec_fn(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    ad_node *part[4] = {ad_mul(g, x[0], x[1]), ad_sin(g, x[2]), ad_add(g, x[0], ad_mul(g, x[1], x[2])),
                        ad_div(g, ad_exp(g, x[0]), x[2])};
    for (int i = 0; i < 4; i++) part[i] = ad_reshape(g, part[i], AD_SHAPE(1));
    return ad_concat(g, part, 4, 0);
}

static void vec_fn_real(ad_tape *t, const ad_real *x, int n, ad_real *y, int m, void *user)
{
    (void)n, (void)m, (void)user;
    y[0] = ad_real_mul(t, x[0], x[1]);
    y[1] = ad_real_sin(t, x[2]);
    y[2] = ad_real_add(t, x[0], ad_real_mul(t, x[1], x[2]));
    y[3] = ad_real_div(t, ad_real_exp(t, x[0]), x[2]);
}

START_TEST(jacobian_of_a_c_function)
{
    double x[3] = {0.5, -1.5, 2}, want[12] = {x[1], x[0], 0, 0, 0, cos(x[2]), 1, x[2], x[1],
                                              exp(x[0]) / x[2], 0, -exp(x[0]) / (x[2] * x[2])};
    for (int mode = AD_JAC_AUTO; mode <= AD_JAC_REVERSE; mode++) {
        double J[12], y[4];
        ck_assert_int_eq(ad_jacobian(NULL, vec_fn, 3, x, NULL, 4, (ad_jac_mode)mode, y, J), AD_OK);
        for (int i = 0; i < 12; i++) ck_assert_double_eq_tol(J[i], want[i], 1e-15);
        ck_assert_double_eq_tol(y[1], sin(2), 1e-15);
    }
    /* u^T J and J v agree with the Jacobian */
    double u[4] = {1, -2, 0.5, 3}, v[3] = {0.25, 1, -1}, uJ[3], Jv[4];
    ck_assert_int_eq(ad_vjp(NULL, vec_fn, 3, x, u, NULL, 4, NULL, uJ), AD_OK);
    ck_assert_int_eq(ad_jvp(NULL, vec_fn, 3, x, v, NULL, 4, NULL, Jv), AD_OK);
    for (int j = 0; j < 3; j++) {
        double s = 0;
        for (int i = 0; i < 4; i++) s += u[i] * want[i * 3 + j];
        ck_assert_double_eq_tol(uJ[j], s, 1e-14);
    }
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int j = 0; j < 3; j++) s += want[i * 3 + j] * v[j];
        ck_assert_double_eq_tol(Jv[i], s, 1e-14);
    }
    double Jt[12], yt[4];
    ck_assert_int_eq(ad_real_jacobian(NULL, vec_fn_real, 3, x, NULL, 4, yt, Jt), AD_OK);
    for (int i = 0; i < 12; i++) ck_assert_double_eq_tol(Jt[i], want[i], 1e-15);
    ck_assert_double_eq_tol(yt[3], exp(0.5) / 2, 1e-15);
    /* the size is checked */
    ad_graph *g = ad_graph_new();
    double J[12];
    ck_assert_int_eq(ad_jacobian(g, vec_fn, 3, x, NULL, 5, AD_JAC_AUTO, NULL, J), AD_ERR_SHAPE);
    ad_graph_free(g);
}
END_TEST

/* Tensor leaves, a variable and a parameter, both modes, twice in a row (nothing accumulates),
 * against central differences. */
START_TEST(jacobian_of_a_graph)
{
    for (int t = 0; t < 2; t++) {
        ad_dtype dt = (ad_dtype)t;
        ad_graph *g = ad_graph_new();
        ad_tensor *w = ad_param_new("w", dt, AD_SHAPE(2, 3));
        for (int i = 0; i < 6; i++) ad_tensor_set(w, i, 0.3 * i - 0.7);
        double xv[6] = {0.5, 1, -0.25, 2, 0.75, -1};
        ad_node *x = ad_var_array(g, "x", dt, AD_SHAPE(2, 3), xv), *wn = ad_param(g, w);
        ad_node *y = ad_tanh(g, ad_sum_axis(g, ad_mul(g, ad_square(g, x), wn), 1, false)); /* [2] */
        ad_node *leaves[2] = {x, wn};
        double Jf[24], Jr[24];
        ck_assert_int_eq(ad_jacobian_graph(g, y, 2, leaves, AD_JAC_FORWARD, Jf), AD_OK);
        for (int rep = 0; rep < 2; rep++)
            ck_assert_int_eq(ad_jacobian_graph(g, y, 2, leaves, AD_JAC_REVERSE, Jr), AD_OK);
        double tol = t == 0 ? 1e-14 : 1e-6;
        for (int i = 0; i < 24; i++) ck_assert_double_eq_tol(Jf[i], Jr[i], tol);
        /* d y_r / d x_rc = (1 - y_r^2) 2 x_rc w_rc, and 0 across rows */
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 6; c++) {
                double yr = ad_node_get(y, r);
                double want = c / 3 == r ? (1 - yr * yr) * 2 * xv[c] * ad_tensor_get(w, c) : 0;
                ck_assert_double_eq_tol(Jr[r * 12 + c], want, t == 0 ? 1e-14 : 1e-5);
            }
        ad_tensor_free(w);
        ad_graph_free(g);
    }
}
END_TEST

/* A concat of more inputs than jvp_linear keeps on its stack, and a stateful op recorded while
 * an earlier error stands (found in review: it refused to record). */
START_TEST(jvp_long_concat_and_state_after_an_error)
{
    ad_graph *g = ad_graph_new();
    enum { K = 65 };
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2), (double[]){1, 2}), *parts[K];
    for (int k = 0; k < K; k++) parts[k] = ad_mul_scalar(g, x, k);
    ad_node *y = ad_sum(g, ad_concat(g, parts, K, 0));
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &x, (const double *const[]){(double[]){1, 0}}), AD_OK);
    ck_assert_double_eq(ad_tangent_get(g, y, 0), K * (K - 1) / 2);
    ck_assert_ptr_null(ad_add(g, ad_const(g, AD_F64, AD_SHAPE(2, 3), NULL), ad_const(g, AD_F64, AD_SHAPE(2, 2), NULL)));
    int32_t labels[2] = {0, 2};
    ad_node *ce = ad_cross_entropy(g, ad_const(g, AD_F64, AD_SHAPE(2, 3), NULL), labels);
    ck_assert_ptr_nonnull(ce);
    ck_assert_double_eq_tol(ad_value(ce), log(3.0), 1e-15);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "do not broadcast")); /* the first error still stands */
    ad_graph_free(g);
}
END_TEST

/* Bad calls fail with a message. */
START_TEST(jvp_bad_calls)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1), *y = ad_exp(g, x);
    ck_assert_int_eq(ad_jvp_graph(g, NULL, 0, NULL, NULL), AD_ERR_NULL);
    ad_clear_error(g);
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &y, (const double *const[]){(double[]){1}}), AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "not a leaf"));
    ad_clear_error(g);
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, NULL, NULL), AD_ERR_NULL);
    ck_assert(isnan(ad_tangent_get(g, NULL, 0)));
    /* nodes of another graph, alive or freed, are refused before they are read */
    ad_graph *other = ad_graph_new();
    ad_node *ox = ad_var(other, "ox", 1), *oy = ad_exp(other, ox);
    ad_clear_error(g);
    ck_assert_int_eq(ad_jvp_graph(g, oy, 0, NULL, NULL), AD_ERR_ARG);
    ad_clear_error(g);
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &ox, (const double *const[]){(double[]){1}}), AD_ERR_ARG);
    double J;
    ad_clear_error(g);
    ck_assert_int_eq(ad_jacobian_graph(g, y, 1, &ox, AD_JAC_AUTO, &J), AD_ERR_ARG);
    ad_graph_free(other);
    ad_clear_error(g);
    ck_assert_int_eq(ad_jacobian_graph(g, oy, 1, &x, AD_JAC_AUTO, &J), AD_ERR_ARG);
    ad_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_forward");
    TCase *t = tcase_create("forward");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, formulas_of_every_row);
    tcase_add_test(t, values_match_pytorch);
    tcase_add_test(t, graph_tape_and_dual_agree);
    tcase_add_test(t, jvp_tensor_ops);
    tcase_add_test(t, jvp_elementwise_ops);
    tcase_add_test(t, jvp_of_a_c_function);
    tcase_add_test(t, user_elementwise_ops);
    tcase_add_test(t, user_op_with_state_and_forward_rule);
    tcase_add_test(t, jvp_allocates_nothing_in_a_loop);
    tcase_add_test(t, jvp_with_typed_seeds);
    tcase_add_test(t, jvp_bad_calls);
    tcase_add_test(t, jvp_long_concat_and_state_after_an_error);
    tcase_add_test(t, jacobian_of_a_c_function);
    tcase_add_test(t, jacobian_of_a_graph);
    suite_add_tcase(s, t);
    t = tcase_create("second order");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, second_order_tensor_ops);
    tcase_add_test(t, second_order_elementwise_ops);
    tcase_add_test(t, hessian_of_a_c_function);
    tcase_add_test(t, derivatives_of_any_order);
    tcase_add_test(t, kinks_have_second_derivative_zero);
    tcase_add_test(t, second_order_bad_calls);
    tcase_add_test(t, second_order_corners);
    tcase_add_test(t, hessian_out_of_memory);
    suite_add_tcase(s, t);
    return run_suite(s);
}
