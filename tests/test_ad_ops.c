/* Every primitive against finite differences in float64 on random shapes (broadcasting and
 * axis reductions included), and every primitive in float32 against its float64 result. */
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { TRIALS = 25 };

/* What a case's builder receives: the op's extra arguments, drawn per trial. */
typedef struct {
    int axis;
    bool keepdim;
    ad_shape target;
    int64_t start, end;
    int32_t labels[64];
    uint64_t seed;
} args;

typedef ad_node *(*builder)(ad_graph *g, ad_node *const *x, int n, void *user);

/* Shapes of a case's inputs for one trial, and the range its values are drawn from. */
typedef struct {
    const char *name;
    int nin;
    builder build;
    void (*shapes)(ad_rng *r, ad_shape *s, args *a);
    double lo, hi;
    bool positive_b; /* second input drawn from [0.5, 2) (divisor, exponent base) */
} op_case;

static int64_t dim(ad_rng *r) { return 1 + (int64_t)(ad_rng_next(r) % 4); }

static ad_shape rand_shape(ad_rng *r, int min_rank, int max_rank)
{
    ad_shape s = {.rank = min_rank + (int)(ad_rng_next(r) % (uint64_t)(max_rank - min_rank + 1))};
    for (int i = 0; i < s.rank; i++) s.dim[i] = dim(r);
    return s;
}

/* A shape that broadcasts to s: some leading axes dropped, some axes set to 1. */
static ad_shape broadcastable_to(ad_rng *r, const ad_shape *s)
{
    int drop = s->rank ? (int)(ad_rng_next(r) % (uint64_t)(s->rank + 1)) : 0;
    ad_shape b = {.rank = s->rank - drop};
    for (int i = 0; i < b.rank; i++) b.dim[i] = ad_rng_next(r) % 3 == 0 ? 1 : s->dim[i + drop];
    return b;
}

static void same1(ad_rng *r, ad_shape *s, args *a) { (void)a; s[0] = rand_shape(r, 0, 4); }
static void axis1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    a->axis = (int)(ad_rng_next(r) % (uint64_t)s[0].rank) - (ad_rng_next(r) % 2 ? s[0].rank : 0);
    a->keepdim = ad_rng_next(r) % 2;
}
static void bcast2(ad_rng *r, ad_shape *s, args *a)
{
    (void)a;
    ad_shape o = rand_shape(r, 0, 4);
    bool swap = ad_rng_next(r) % 2;
    s[swap] = o;
    s[!swap] = broadcastable_to(r, &o);
}
static void equal2(ad_rng *r, ad_shape *s, args *a) { (void)a; s[0] = s[1] = rand_shape(r, 0, 4); }
static void matrix2(ad_rng *r, ad_shape *s, args *a)
{
    (void)a;
    int64_t m = dim(r), k = dim(r), n = dim(r), b = dim(r);
    switch (ad_rng_next(r) % 4) {
    case 0: s[0] = AD_SHAPE(m, k), s[1] = AD_SHAPE(k, n); break;
    case 1: s[0] = AD_SHAPE(b, m, k), s[1] = AD_SHAPE(b, k, n); break;
    case 2: s[0] = AD_SHAPE(b, m, k), s[1] = AD_SHAPE(k, n); break;
    default: s[0] = AD_SHAPE(m, k), s[1] = AD_SHAPE(b, k, n); break;
    }
}
static void linear3(ad_rng *r, ad_shape *s, args *a)
{
    (void)a;
    int64_t n = dim(r), in = dim(r), out = dim(r);
    s[0] = AD_SHAPE(n, in), s[1] = AD_SHAPE(out, in), s[2] = AD_SHAPE(out);
}
static void rank2plus(ad_rng *r, ad_shape *s, args *a) { (void)a; s[0] = rand_shape(r, 2, 4); }
static void reshape1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    a->target = (ad_shape){.rank = s[0].rank};
    for (int i = 0; i < s[0].rank; i++) a->target.dim[i] = s[0].dim[s[0].rank - 1 - i];
}
static void broadcast1(ad_rng *r, ad_shape *s, args *a)
{
    a->target = rand_shape(r, 0, 4);
    s[0] = broadcastable_to(r, &a->target);
}
static void slice1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    a->axis = (int)(ad_rng_next(r) % (uint64_t)s[0].rank);
    int64_t n = s[0].dim[a->axis];
    a->start = (int64_t)(ad_rng_next(r) % (uint64_t)n);
    a->end = a->start + 1 + (int64_t)(ad_rng_next(r) % (uint64_t)(n - a->start));
}
static void concat3(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    a->axis = (int)(ad_rng_next(r) % (uint64_t)s[0].rank);
    for (int k = 1; k < 3; k++) s[k] = s[0], s[k].dim[a->axis] = dim(r);
}
static void logits1(ad_rng *r, ad_shape *s, args *a)
{
    int64_t n = dim(r) + 1, c = dim(r) + 1;
    s[0] = AD_SHAPE(n, c);
    for (int64_t i = 0; i < n; i++) a->labels[i] = (int32_t)(ad_rng_next(r) % (uint64_t)c);
}
static void dropout1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    a->seed = ad_rng_next(r);
}

#define UN(op) \
    static ad_node *b_##op(ad_graph *g, ad_node *const *x, int n, void *u) { (void)n, (void)u; return ad_##op(g, x[0]); }
#define BIN(op) \
    static ad_node *b_##op(ad_graph *g, ad_node *const *x, int n, void *u) { (void)n, (void)u; return ad_##op(g, x[0], x[1]); }
UN(neg) UN(recip) UN(exp) UN(log) UN(sqrt) UN(sin) UN(cos) UN(tan) UN(tanh) UN(sigmoid)
UN(relu) UN(abs) UN(sum) UN(mean) UN(transpose)
BIN(add) BIN(sub) BIN(mul) BIN(div) BIN(pow) BIN(max) BIN(min) BIN(matmul) BIN(mse) BIN(mae)

static ad_node *b_linear(ad_graph *g, ad_node *const *x, int n, void *u) { (void)u; return ad_linear(g, x[0], x[1], n == 3 ? x[2] : NULL); }
static ad_node *b_leaky(ad_graph *g, ad_node *const *x, int n, void *u) { (void)n, (void)u; return ad_leaky_relu(g, x[0], 0.1); }
#define LINEAR_ACT(nm, act)                                                                \
    static ad_node *b_linear_##nm(ad_graph *g, ad_node *const *x, int n, void *u)          \
    {                                                                                      \
        (void)u;                                                                           \
        return ad_linear_act(g, x[0], x[1], n == 3 ? x[2] : NULL, act, 0.1);               \
    }
LINEAR_ACT(relu, AD_ACT_RELU)
LINEAR_ACT(leaky, AD_ACT_LEAKY_RELU)
LINEAR_ACT(sigmoid, AD_ACT_SIGMOID)
LINEAR_ACT(tanh, AD_ACT_TANH)
static ad_node *b_sum_axis(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_sum_axis(g, x[0], a->axis, a->keepdim); }
static ad_node *b_mean_axis(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_mean_axis(g, x[0], a->axis, a->keepdim); }
static ad_node *b_softmax(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_softmax(g, x[0], a->axis); }
static ad_node *b_log_softmax(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_log_softmax(g, x[0], a->axis); }
static ad_node *b_reshape(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_reshape(g, x[0], a->target); }
static ad_node *b_broadcast(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_broadcast_to(g, x[0], a->target); }
static ad_node *b_slice(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_slice(g, x[0], a->axis, a->start, a->end); }
static ad_node *b_concat(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; return ad_concat(g, x, n, a->axis); }
static ad_node *b_ce(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_cross_entropy(g, x[0], a->labels); }
/* The mask must be the same at every evaluation, so the generator is seeded inside. */
static ad_node *b_dropout(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    (void)n;
    ad_rng r;
    ad_rng_seed(&r, a->seed);
    return ad_dropout(g, x[0], 0.3, a->seed % 2, &r);
}

/* builders of index.c, shape.c and matmul.c's cases */

/* builders of reduce.c and loss.c's cases */

/* builders of conv.c's cases */

/* A convolution's or pooling's geometry rides in args' labels (the table's args is shared by
 * every family): stride, padding and dilation per axis, groups, then a pool's kernel. */
enum { CV_STRIDE, CV_PAD = 2, CV_DIL = 4, CV_GROUPS = 6, CV_KERNEL = 7 };
static int32_t upto(ad_rng *r, int n) { return (int32_t)(ad_rng_next(r) % (uint64_t)n); }
static ad_conv_opts conv_opts_of(const args *a)
{
    const int32_t *l = a->labels;
    return (ad_conv_opts){.stride = {l[CV_STRIDE], l[CV_STRIDE + 1]}, .padding = {l[CV_PAD], l[CV_PAD + 1]},
                          .dilation = {l[CV_DIL], l[CV_DIL + 1]}, .groups = l[CV_GROUPS]};
}
/* An input length that the kernel k (dilation d, padding p) fits, with room to spare. */
static int64_t fitting(ad_rng *r, int32_t k, int32_t d, int32_t p)
{
    int64_t span = (int64_t)d * (k - 1) + 1 - 2 * p;
    return (span < 1 ? 1 : span) + upto(r, 4);
}
/* x [N, C, (H,) W], w [O, C/groups, (KH,) KW], b [O]; rank 4 (conv2d) or 3 (conv1d, whose
 * geometry is in the labels' column entries). */
static void conv_shapes(ad_rng *r, ad_shape *s, args *a, int rank)
{
    int32_t *l = a->labels, g = 1 + upto(r, 2), k[2];
    int64_t n = 1 + upto(r, 2), cg = 1 + upto(r, 2), og = 1 + upto(r, 2), len[2];
    l[CV_GROUPS] = g;
    for (int ax = 0; ax < 2; ax++) {
        k[ax] = 1 + upto(r, 3);
        l[CV_STRIDE + ax] = 1 + upto(r, 2);
        l[CV_PAD + ax] = upto(r, 3);
        l[CV_DIL + ax] = 1 + upto(r, 2);
        len[ax] = fitting(r, k[ax], l[CV_DIL + ax], l[CV_PAD + ax]);
    }
    if (rank == 4) {
        s[0] = AD_SHAPE(n, g * cg, len[0], len[1]);
        s[1] = AD_SHAPE(g * og, cg, k[0], k[1]);
    } else {
        s[0] = AD_SHAPE(n, g * cg, len[1]);
        s[1] = AD_SHAPE(g * og, cg, k[1]);
    }
    s[2] = AD_SHAPE(g * og);
}
static void conv2d3(ad_rng *r, ad_shape *s, args *a) { conv_shapes(r, s, a, 4); }
static void conv1d3(ad_rng *r, ad_shape *s, args *a) { conv_shapes(r, s, a, 3); }
/* x [N, C, H, W] and a window with padding at most half of it; dilation (max pooling's) only
 * without padding, so that no window lies in the padding alone (its maximum is -inf). */
static void pool1(ad_rng *r, ad_shape *s, args *a)
{
    int32_t *l = a->labels;
    int64_t len[2];
    for (int ax = 0; ax < 2; ax++) {
        int32_t k = 1 + upto(r, 3);
        l[CV_KERNEL + ax] = k;
        l[CV_STRIDE + ax] = 1 + upto(r, 3);
        l[CV_PAD + ax] = upto(r, k / 2 + 1);
        l[CV_DIL + ax] = l[CV_PAD + ax] ? 1 : 1 + upto(r, 2);
        len[ax] = fitting(r, k, l[CV_DIL + ax], l[CV_PAD + ax]);
    }
    s[0] = AD_SHAPE(1 + upto(r, 2), 1 + upto(r, 3), len[0], len[1]);
}
static ad_node *b_conv2d(ad_graph *g, ad_node *const *x, int n, void *u)
{
    ad_conv_opts o = conv_opts_of(u);
    return ad_conv2d(g, x[0], x[1], n == 3 ? x[2] : NULL, &o);
}
static ad_node *b_conv1d(ad_graph *g, ad_node *const *x, int n, void *u)
{
    ad_conv_opts o = conv_opts_of(u);
    o.stride[0] = o.stride[1], o.padding[0] = o.padding[1], o.dilation[0] = o.dilation[1];
    return ad_conv1d(g, x[0], x[1], n == 3 ? x[2] : NULL, &o);
}
static ad_node *b_max_pool2d(ad_graph *g, ad_node *const *x, int n, void *u)
{
    (void)n;
    const args *a = u;
    ad_conv_opts o = conv_opts_of(a);
    return ad_max_pool2d(g, x[0], a->labels[CV_KERNEL], a->labels[CV_KERNEL + 1], &o);
}
static ad_node *b_avg_pool2d(ad_graph *g, ad_node *const *x, int n, void *u)
{
    (void)n;
    const args *a = u;
    ad_conv_opts o = conv_opts_of(a);
    o.dilation[0] = o.dilation[1] = 0;
    return ad_avg_pool2d(g, x[0], a->labels[CV_KERNEL], a->labels[CV_KERNEL + 1], &o);
}

/* builders of norm.c's cases */

static const op_case cases[] = {
    {"neg", 1, b_neg, same1, -2, 2, false},
    {"recip", 1, b_recip, same1, 0.5, 2, false},
    {"exp", 1, b_exp, same1, -2, 2, false},
    {"log", 1, b_log, same1, 0.1, 3, false},
    {"sqrt", 1, b_sqrt, same1, 0.1, 3, false},
    {"sin", 1, b_sin, same1, -3, 3, false},
    {"cos", 1, b_cos, same1, -3, 3, false},
    {"tan", 1, b_tan, same1, -1, 1, false},
    {"tanh", 1, b_tanh, same1, -2, 2, false},
    {"sigmoid", 1, b_sigmoid, same1, -4, 4, false},
    {"relu", 1, b_relu, same1, -2, 2, false},
    {"leaky_relu", 1, b_leaky, same1, -2, 2, false},
    {"abs", 1, b_abs, same1, -2, 2, false},
    {"add", 2, b_add, bcast2, -2, 2, false},
    {"sub", 2, b_sub, bcast2, -2, 2, false},
    {"mul", 2, b_mul, bcast2, -2, 2, false},
    {"div", 2, b_div, bcast2, -2, 2, true},
    {"pow", 2, b_pow, bcast2, 0.5, 2, false},
    {"max", 2, b_max, bcast2, -2, 2, false},
    {"min", 2, b_min, bcast2, -2, 2, false},
    {"sum", 1, b_sum, same1, -2, 2, false},
    {"mean", 1, b_mean, same1, -2, 2, false},
    {"sum_axis", 1, b_sum_axis, axis1, -2, 2, false},
    {"mean_axis", 1, b_mean_axis, axis1, -2, 2, false},
    {"matmul", 2, b_matmul, matrix2, -2, 2, false},
    {"linear", 3, b_linear, linear3, -2, 2, false},
    {"linear_nobias", 2, b_linear, linear3, -2, 2, false},
    {"linear_relu", 3, b_linear_relu, linear3, -2, 2, false},
    {"linear_leaky_relu", 3, b_linear_leaky, linear3, -2, 2, false},
    {"linear_sigmoid_nobias", 2, b_linear_sigmoid, linear3, -2, 2, false},
    {"linear_tanh", 3, b_linear_tanh, linear3, -2, 2, false},
    {"transpose", 1, b_transpose, rank2plus, -2, 2, false},
    {"reshape", 1, b_reshape, reshape1, -2, 2, false},
    {"broadcast_to", 1, b_broadcast, broadcast1, -2, 2, false},
    {"slice", 1, b_slice, slice1, -2, 2, false},
    {"concat", 3, b_concat, concat3, -2, 2, false},
    {"softmax", 1, b_softmax, axis1, -3, 3, false},
    {"log_softmax", 1, b_log_softmax, axis1, -3, 3, false},
    {"cross_entropy", 1, b_ce, logits1, -3, 3, false},
    {"mse", 2, b_mse, equal2, -2, 2, false},
    {"mae", 2, b_mae, equal2, -2, 2, false},
    {"dropout", 1, b_dropout, dropout1, -2, 2, false},
    /* indexing and shapes: index.c, shape.c, matmul.c */

    /* reductions along an axis and losses: reduce.c, loss.c */

    /* convolution and pooling: conv.c */
    {"conv2d", 3, b_conv2d, conv2d3, -2, 2, false},
    {"conv2d_nobias", 2, b_conv2d, conv2d3, -2, 2, false},
    {"conv1d", 3, b_conv1d, conv1d3, -2, 2, false},
    {"max_pool2d", 1, b_max_pool2d, pool1, -2, 2, false},
    {"avg_pool2d", 1, b_avg_pool2d, pool1, -2, 2, false},

    /* normalisation: norm.c */

};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* Value and gradient of <proj, f(x)> with inputs of dtype t; grads[i] receives input i's. */
static double run_dtype(const op_case *c, args *a, ad_dtype t, ad_tensor **in, double **grads)
{
    ad_graph *g = ad_graph_new();
    ad_node *x[3];
    for (int i = 0; i < c->nin; i++) {
        double *v = malloc((size_t)ad_tensor_size(in[i]) * sizeof *v + 1);
        ad_tensor_read(in[i], v);
        x[i] = ad_var_array(g, "x", t, ad_tensor_shape(in[i]), v);
        free(v);
    }
    ad_node *y = c->build(g, x, c->nin, a);
    ck_assert_msg(y != NULL, "%s: %s", c->name, ad_error(g));
    ck_assert_int_eq(ad_node_dtype(y), t);
    int64_t m = ad_node_size(y);
    double *proj = malloc((size_t)m * sizeof *proj + 1), value = 0;
    ad_rng r;
    ad_rng_seed(&r, 99);
    for (int64_t i = 0; i < m; i++) {
        proj[i] = ad_rng_uniform(&r) * 2 - 1;
        value += proj[i] * ad_node_get(y, i);
    }
    ck_assert_int_eq(ad_backward_seed(g, y, proj), AD_OK);
    for (int i = 0; i < c->nin; i++)
        for (int64_t j = 0; j < ad_node_size(x[i]); j++) grads[i][j] = ad_node_grad_get(x[i], j);
    free(proj);
    ad_graph_free(g);
    return value;
}

static const char *shape_of(const ad_tensor *t)
{
    static char buf[64];
    ad_shape s = ad_tensor_shape(t);
    return ad_shape_str(&s, buf, sizeof buf);
}

static void make_inputs(const op_case *c, ad_rng *r, args *a, ad_tensor **in)
{
    ad_shape s[3];
    memset(a, 0, sizeof *a);
    c->shapes(r, s, a);
    for (int i = 0; i < c->nin; i++) {
        bool pos = c->positive_b && i == 1;
        in[i] = rand_tensor(r, s[i], pos ? 0.5 : c->lo, pos ? 2 : c->hi);
    }
}

START_TEST(gradcheck_float64)
{
    const op_case *c = &cases[_i];
    ad_rng r;
    ad_rng_seed(&r, 1000 + (uint64_t)_i);
    for (int trial = 0; trial < TRIALS; trial++) {
        ad_tensor *in[3];
        args a;
        make_inputs(c, &r, &a, in);
        ad_check_report rep;
        ad_status st = ad_gradcheck_tensors(c->build, c->nin, in, &a, NULL, &rep);
        ck_assert_msg(st == AD_OK, "%s trial %d: %s", c->name, trial, rep.msg);
        ck_assert_int_gt(rep.checked, 0);
        for (int i = 0; i < c->nin; i++) ad_tensor_free(in[i]);
    }
}
END_TEST

START_TEST(float32_matches_float64)
{
    const op_case *c = &cases[_i];
    ad_rng r;
    ad_rng_seed(&r, 2000 + (uint64_t)_i);
    for (int trial = 0; trial < TRIALS; trial++) {
        ad_tensor *in[3];
        args a;
        make_inputs(c, &r, &a, in);
        double *g64[3], *g32[3];
        for (int i = 0; i < c->nin; i++) {
            g64[i] = malloc((size_t)ad_tensor_size(in[i]) * sizeof(double) + 1);
            g32[i] = malloc((size_t)ad_tensor_size(in[i]) * sizeof(double) + 1);
        }
        /* float32 inputs are the float64 ones rounded, so round first for a fair reference */
        for (int i = 0; i < c->nin; i++)
            for (int64_t j = 0; j < ad_tensor_size(in[i]); j++)
                ad_tensor_set(in[i], j, (float)ad_tensor_get(in[i], j));
        double v64 = run_dtype(c, &a, AD_F64, in, g64);
        double v32 = run_dtype(c, &a, AD_F32, in, g32);
        ck_assert_msg(fabs(v32 - v64) <= 1e-4 * (1 + fabs(v64)), "%s: value %g vs %g", c->name, v32, v64);
        for (int i = 0; i < c->nin; i++) {
            for (int64_t j = 0; j < ad_tensor_size(in[i]); j++)
                ck_assert_msg(fabs(g32[i][j] - g64[i][j]) <= 1e-4 * (1 + fabs(g64[i][j])),
                              "%s: input %d %s element %lld: float32 %g, float64 %g", c->name, i,
                              shape_of(in[i]), (long long)j, g32[i][j], g64[i][j]);
            free(g64[i]);
            free(g32[i]);
            ad_tensor_free(in[i]);
        }
    }
}
END_TEST

/* Stability at the extremes the issue names. */
START_TEST(cross_entropy_is_stable_for_huge_logits)
{
    ad_graph *g = ad_graph_new();
    double z[6] = {1000, -1000, 0, -1000, 1000, 999};
    int32_t y[2] = {0, 2};
    ad_node *x = ad_var_array(g, "z", AD_F64, AD_SHAPE(2, 3), z);
    ad_node *l = ad_cross_entropy(g, x, y);
    ck_assert_int_eq(ad_backward(g, l), AD_OK);
    /* row 0: loss 0; row 1: lse = 1000 + log(1 + e^-1), loss = lse - 999 */
    double want = (0 + 1 + log1p(exp(-1))) / 2;
    ck_assert_double_eq_tol(ad_value(l), want, 1e-12);
    for (int i = 0; i < 6; i++) ck_assert(isfinite(ad_node_grad_get(x, i)));
    ck_assert_double_eq_tol(ad_node_grad_get(x, 0), 0, 1e-12);
    ck_assert_double_eq_tol(ad_node_grad_get(x, 4), 0.5 / (1 + exp(-1)), 1e-12);
    ck_assert_double_eq_tol(ad_node_grad_get(x, 5), -0.5 / (1 + exp(-1)), 1e-12);
    ad_graph_free(g);
}
END_TEST

START_TEST(softmax_is_stable_and_sums_to_one)
{
    ad_graph *g = ad_graph_new();
    double z[4] = {1000, 1000, -1000, 0};
    ad_node *s = ad_softmax(g, ad_const(g, AD_F32, AD_SHAPE(4), z), 0);
    ck_assert_double_eq_tol(ad_node_get(s, 0), 0.5, 1e-7);
    ck_assert_double_eq_tol(ad_node_get(s, 1), 0.5, 1e-7);
    ck_assert_double_eq(ad_node_get(s, 2), 0);
    ad_node *ls = ad_log_softmax(g, ad_const(g, AD_F64, AD_SHAPE(4), z), -1);
    ck_assert_double_eq_tol(ad_node_get(ls, 0), -log(2), 1e-12);
    ck_assert_double_eq_tol(ad_node_get(ls, 2), -2000 - log(2), 1e-9);
    ck_assert_double_eq(ad_value(ad_sigmoid(g, ad_const_scalar(g, -1000))), 0);
    ck_assert_double_eq(ad_value(ad_sigmoid(g, ad_const_scalar(g, 1000))), 1);
    ad_graph_free(g);
}
END_TEST

/* The documented subgradients at non-differentiable points. */
/* ad_linear_act against the two nodes it replaces: the same bits in the output and in the
 * gradients of x, W and b, for every activation, both dtypes, 1 and 2 threads, and a product
 * large enough to be cut into several blocks (so the activation runs block by block). */
START_TEST(linear_act_equals_linear_then_activation)
{
    static const ad_act acts[] = {AD_ACT_RELU, AD_ACT_LEAKY_RELU, AD_ACT_SIGMOID, AD_ACT_TANH};
    enum { N = 230, IN = 300, OUT = 150 };
    ad_rng r;
    ad_rng_seed(&r, 77);
    ad_tensor *in[3] = {rand_tensor(&r, AD_SHAPE(N, IN), -1, 1), rand_tensor(&r, AD_SHAPE(OUT, IN), -0.2, 0.2),
                        rand_tensor(&r, AD_SHAPE(OUT), -0.5, 0.5)};
    for (size_t k = 0; k < sizeof acts / sizeof *acts; k++)
        for (int dt = 0; dt < 2; dt++)
            for (int threads = 1; threads <= 2; threads++) {
                ad_set_threads(threads);
                ad_dtype t = dt ? AD_F32 : AD_F64;
                void *out[2], *grad[2][3];
                for (int fused = 0; fused < 2; fused++) {
                    ad_graph *g = ad_graph_new();
                    ad_node *x[3];
                    for (int i = 0; i < 3; i++) {
                        double *v = malloc((size_t)ad_tensor_size(in[i]) * sizeof *v);
                        ad_tensor_read(in[i], v);
                        x[i] = ad_var_array(g, "x", t, ad_tensor_shape(in[i]), v);
                        free(v);
                    }
                    ad_node *y;
                    if (fused) y = ad_linear_act(g, x[0], x[1], x[2], acts[k], 0.1);
                    else {
                        ad_node *z = ad_linear(g, x[0], x[1], x[2]);
                        y = acts[k] == AD_ACT_RELU ? ad_relu(g, z)
                            : acts[k] == AD_ACT_LEAKY_RELU ? ad_leaky_relu(g, z, 0.1)
                            : acts[k] == AD_ACT_SIGMOID ? ad_sigmoid(g, z) : ad_tanh(g, z);
                    }
                    ad_node *loss = ad_sum(g, ad_mul(g, y, ad_cos(g, y)));
                    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
                    size_t yb = (size_t)ad_node_size(y) * ad_dtype_size(t);
                    out[fused] = malloc(yb);
                    memcpy(out[fused], ad_node_data(y), yb);
                    for (int i = 0; i < 3; i++) {
                        size_t b = (size_t)ad_node_size(x[i]) * ad_dtype_size(t);
                        grad[fused][i] = malloc(b);
                        memcpy(grad[fused][i], ad_node_grad_data(x[i]), b);
                    }
                    ad_graph_free(g);
                }
                ck_assert_msg(memcmp(out[0], out[1], (size_t)N * OUT * ad_dtype_size(t)) == 0,
                              "act %d %s %d threads: outputs differ", (int)acts[k], ad_dtype_name(t), threads);
                for (int i = 0; i < 3; i++) {
                    ck_assert_msg(memcmp(grad[0][i], grad[1][i], (size_t)ad_tensor_size(in[i]) * ad_dtype_size(t)) == 0,
                                  "act %d %s %d threads: gradient of input %d differs", (int)acts[k], ad_dtype_name(t),
                                  threads, i);
                    free(grad[0][i]), free(grad[1][i]);
                }
                free(out[0]), free(out[1]);
            }
    ad_set_threads(0);
    for (int i = 0; i < 3; i++) ad_tensor_free(in[i]);
}
END_TEST

/* Bad activations are refused with a message naming the op. */
START_TEST(linear_act_refuses_bad_arguments)
{
    ad_graph *g = ad_graph_new();
    double v[6] = {1, 2, 3, 4, 5, 6};
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2, 3), v), *w = ad_var_array(g, "w", AD_F64, AD_SHAPE(2, 3), v);
    ck_assert_ptr_null(ad_linear_act(g, x, w, NULL, (ad_act)9, 0));
    ck_assert_str_eq(ad_error(g), "linear: unknown activation 9");
    ad_graph_free(g);
    g = ad_graph_new();
    x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2, 3), v), w = ad_var_array(g, "w", AD_F64, AD_SHAPE(2, 3), v);
    ck_assert_ptr_null(ad_linear_act(g, x, w, NULL, AD_ACT_LEAKY_RELU, 0));
    ck_assert_str_eq(ad_error(g), "linear: leaky_relu slope 0 must be a positive number");
    ad_graph_free(g);
}
END_TEST

START_TEST(subgradients_at_kinks)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0), *y = ad_var(g, "y", 0);
    ad_node *r = ad_relu(g, x), *a = ad_abs(g, x), *l = ad_leaky_relu(g, x, 0.1);
    ad_node *m = ad_max(g, x, y);
    ck_assert_double_eq(ad_node_local_grad(r, 0), 0);
    ck_assert_double_eq(ad_node_local_grad(a, 0), 0);
    ck_assert_int_eq(ad_backward(g, l), AD_OK);
    ck_assert_double_eq_tol(ad_grad(x), 0.1, 1e-15);
    ck_assert_double_eq(ad_node_local_grad(m, 0), 0.5);
    ck_assert_double_eq(ad_node_local_grad(m, 1), 0.5);
    ad_graph_free(g);
}
END_TEST

/* Lecture semantics: survivors are not rescaled; the inverted form scales by 1/(1-p). */
START_TEST(dropout_masks_and_scales)
{
    ad_graph *g = ad_graph_new();
    ad_rng r;
    ad_rng_seed(&r, 5);
    ad_node *ones = ad_full(g, AD_F64, AD_SHAPE(10000), 1);
    ad_node *d = ad_dropout(g, ones, 0.25, false, &r), *di = ad_dropout(g, ones, 0.25, true, &r);
    int64_t kept = 0;
    for (int64_t i = 0; i < 10000; i++) {
        double v = ad_node_get(d, i), w = ad_node_get(di, i);
        ck_assert(v == 0 || v == 1);
        ck_assert(w == 0 || fabs(w - 1 / 0.75) < 1e-15);
        kept += v == 1;
    }
    /* Binomial(10000, 0.75): sd ~ 43; 5 sd */
    ck_assert_int_lt(llabs(kept - 7500), 217);
    ad_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_ops");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, gradcheck_float64, 0, NCASES);
    tcase_add_loop_test(tc, float32_matches_float64, 0, NCASES);
    tcase_add_test(tc, cross_entropy_is_stable_for_huge_logits);
    tcase_add_test(tc, softmax_is_stable_and_sums_to_one);
    tcase_add_test(tc, subgradients_at_kinks);
    tcase_add_test(tc, linear_act_equals_linear_then_activation);
    tcase_add_test(tc, linear_act_refuses_bad_arguments);
    tcase_add_test(tc, dropout_masks_and_scales);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
