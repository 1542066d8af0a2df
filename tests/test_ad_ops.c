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

/* Indices live in labels (int32; the builders widen them), their count or the number of axes
 * in start; negative ones count from the end, and repeats are likely. */
static void draw_indices(ad_rng *r, args *a, int64_t count, int64_t n)
{
    a->start = count;
    for (int64_t k = 0; k < count; k++) a->labels[k] = (int32_t)((int64_t)(ad_rng_next(r) % (uint64_t)(2 * n)) - n);
}
static int64_t *widen(const args *a, int64_t *to)
{
    for (int64_t k = 0; k < a->start; k++) to[k] = a->labels[k];
    return to;
}
static int along(const ad_shape *s, int axis) { return axis < 0 ? axis + s->rank : axis; }
static void random_axis(ad_rng *r, args *a, int rank)
{
    a->axis = (int)(ad_rng_next(r) % (uint64_t)rank) - (ad_rng_next(r) % 2 ? rank : 0);
}
static void index_select1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    random_axis(r, a, s[0].rank);
    draw_indices(r, a, 1 + (int64_t)(ad_rng_next(r) % 6), s[0].dim[along(&s[0], a->axis)]);
}
static void gather1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 3);
    random_axis(r, a, s[0].rank);
    int ax = along(&s[0], a->axis);
    a->target = s[0];
    for (int d = 0; d < s[0].rank; d++)
        a->target.dim[d] = d == ax ? dim(r) : 1 + (int64_t)(ad_rng_next(r) % (uint64_t)s[0].dim[d]);
    draw_indices(r, a, ad_shape_size(&a->target), s[0].dim[ax]);
}
static void embedding1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = AD_SHAPE(dim(r) + 1, dim(r));
    a->target = rand_shape(r, 0, 3);
    draw_indices(r, a, ad_shape_size(&a->target), s[0].dim[0]);
}
static void stack3(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = s[1] = s[2] = rand_shape(r, 0, 3);
    random_axis(r, a, s[0].rank + 1);
}
/* A random permutation in labels, its entries negative at random. */
static void permute1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 0, 4);
    a->start = s[0].rank;
    for (int d = 0; d < s[0].rank; d++) a->labels[d] = d;
    for (int d = s[0].rank - 1; d > 0; d--) {
        int k = (int)(ad_rng_next(r) % (uint64_t)(d + 1));
        int32_t t = a->labels[d];
        a->labels[d] = a->labels[k], a->labels[k] = t;
    }
    for (int d = 0; d < s[0].rank; d++)
        if (ad_rng_next(r) % 3 == 0) a->labels[d] -= s[0].rank;
}
static void slice_step1(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    s[0].dim[ad_rng_next(r) % (uint64_t)s[0].rank] += 3; /* an axis worth stepping along */
    random_axis(r, a, s[0].rank);
    int64_t n = s[0].dim[along(&s[0], a->axis)];
    a->start = (int64_t)(ad_rng_next(r) % (uint64_t)n); /* gradcheck needs an output */
    a->end = a->start + 1 + (int64_t)(ad_rng_next(r) % (uint64_t)(n - a->start));
    a->seed = 1 + ad_rng_next(r) % 3; /* the step */
}
/* torch.matmul's cases: 1-D operands on either side, and batch axes that broadcast both ways
 * (each drawn from one shape with some axes set to 1 or dropped). */
static ad_shape with_matrix(ad_shape batch, int64_t rows, int64_t cols)
{
    batch.dim[batch.rank++] = rows;
    batch.dim[batch.rank++] = cols;
    return batch;
}
static void matmul_nd(ad_rng *r, ad_shape *s, args *a)
{
    (void)a;
    int64_t m = dim(r), k = dim(r), n = dim(r);
    ad_shape o = rand_shape(r, 0, 2), ba = broadcastable_to(r, &o), bb = broadcastable_to(r, &o);
    switch (ad_rng_next(r) % 4) {
    case 0: s[0] = AD_SHAPE(k), s[1] = AD_SHAPE(k); break;
    case 1: s[0] = AD_SHAPE(k), s[1] = with_matrix(bb, k, n); break;
    case 2: s[0] = with_matrix(ba, m, k), s[1] = AD_SHAPE(k); break;
    default: s[0] = with_matrix(ba, m, k), s[1] = with_matrix(bb, k, n); break;
    }
}
static ad_node *b_index_select(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    int64_t idx[64];
    (void)n;
    return ad_index_select(g, x[0], a->axis, widen(a, idx), a->start);
}
static ad_node *b_gather(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    int64_t idx[64];
    (void)n;
    return ad_gather(g, x[0], a->axis, a->target, widen(a, idx));
}
static ad_node *b_embedding(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    int64_t idx[64];
    (void)n;
    return ad_embedding(g, x[0], a->target, widen(a, idx));
}
static ad_node *b_stack(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; return ad_stack(g, x, n, a->axis); }
static ad_node *b_permute(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    int perm[8];
    (void)n;
    for (int d = 0; d < a->start; d++) perm[d] = a->labels[d];
    return ad_permute(g, x[0], perm);
}
static ad_node *b_slice_step(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    (void)n;
    return ad_slice_step(g, x[0], a->axis, a->start, a->end, (int64_t)a->seed);
}

/* builders of reduce.c and loss.c's cases */
static ad_node *b_max_axis(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_max_axis(g, x[0], a->axis, a->keepdim); }
static ad_node *b_min_axis(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_min_axis(g, x[0], a->axis, a->keepdim); }
/* The index enters the value and must give no gradient: max * (1 + argmax), min * (1 + argmin). */
static ad_node *b_argmax(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    (void)n;
    return ad_mul(g, ad_max_axis(g, x[0], a->axis, a->keepdim), ad_add_scalar(g, ad_argmax(g, x[0], a->axis, a->keepdim), 1));
}
static ad_node *b_argmin(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    (void)n;
    return ad_mul(g, ad_min_axis(g, x[0], a->axis, a->keepdim), ad_add_scalar(g, ad_argmin(g, x[0], a->axis, a->keepdim), 1));
}
static ad_node *b_logsumexp(ad_graph *g, ad_node *const *x, int n, void *u) { args *a = u; (void)n; return ad_logsumexp(g, x[0], a->axis, a->keepdim); }
/* Targets in [0, 1]: the second input drawn in [0, 1] (lo and hi of the row). */
static ad_node *b_bce(ad_graph *g, ad_node *const *x, int n, void *u) { (void)n, (void)u; return ad_bce_with_logits(g, ad_mul_scalar(g, x[0], 4), x[1]); }

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
/* x of rank 1 to 4 normalised over its last a->axis axes; weight and bias of their shape. */
static void layer_norm3(ad_rng *r, ad_shape *s, args *a)
{
    s[0] = rand_shape(r, 1, 4);
    a->axis = 1 + (int)(ad_rng_next(r) % (uint64_t)s[0].rank);
    s[1] = s[2] = (ad_shape){.rank = a->axis};
    for (int d = 0; d < a->axis; d++) s[1].dim[d] = s[2].dim[d] = s[0].dim[s[0].rank - a->axis + d];
}
/* x [N, C] to [N, C, H, W] with N >= 2; weight and bias [C]. */
static void batch_norm3(ad_rng *r, ad_shape *s, args *a)
{
    (void)a;
    s[0] = rand_shape(r, 2, 4);
    s[0].dim[0] = 1 + dim(r);
    s[1] = s[2] = AD_SHAPE(s[0].dim[1]);
}
static ad_node *b_layer_norm(ad_graph *g, ad_node *const *x, int n, void *u)
{
    args *a = u;
    return ad_layer_norm(g, x[0], a->axis, n > 1 ? x[1] : NULL, n > 2 ? x[2] : NULL, 1e-5);
}
/* Running statistics per dtype and channel count, made on first use and kept (reachable) for
 * the process: the training rows' ones, which every evaluation moves, and fixed ones for
 * evaluation, mean 0.1 c - 0.2 and variance 0.5 + 0.3 c. */
static ad_tensor *running(ad_dtype t, int64_t c, bool eval, bool var)
{
    static ad_tensor *kept[2][2][2][8];
    ad_tensor **k = &kept[t][eval][var][c];
    if (!*k) {
        *k = ad_tensor_new(t, AD_SHAPE(c));
        for (int64_t i = 0; i < c; i++) ad_tensor_set(*k, i, !eval ? var : var ? 0.5 + 0.3 * (double)i : 0.1 * (double)i - 0.2);
    }
    return *k;
}
static ad_node *batch_norm_row(ad_graph *g, ad_node *const *x, int n, bool training, bool track)
{
    ad_dtype t = (ad_dtype)ad_node_dtype(x[0]);
    int64_t c = ad_node_shape(x[0]).dim[1];
    ad_tensor *rm = track ? running(t, c, !training, false) : NULL, *rv = track ? running(t, c, !training, true) : NULL;
    return ad_batch_norm(g, x[0], n > 1 ? x[1] : NULL, n > 2 ? x[2] : NULL, rm, rv, training, 0.1, 1e-5);
}
static ad_node *b_bn_train(ad_graph *g, ad_node *const *x, int n, void *u) { (void)u; return batch_norm_row(g, x, n, true, true); }
static ad_node *b_bn_train_untracked(ad_graph *g, ad_node *const *x, int n, void *u) { (void)u; return batch_norm_row(g, x, n, true, false); }
static ad_node *b_bn_eval(ad_graph *g, ad_node *const *x, int n, void *u) { (void)u; return batch_norm_row(g, x, n, false, true); }

/* torch.max(a, dim)'s choices: a NaN is the largest and smallest, the first one reported and
 * given the gradient, the first among equals otherwise; logsumexp's infinities as torch's. */
START_TEST(axis_reductions_at_nan_and_inf)
{
    ad_graph *g = ad_graph_new();
    double v[8] = {1, NAN, 3, NAN, 2, 2, 1, 0};
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2, 4), v);
    ad_node *mx = ad_max_axis(g, x, 1, false), *mn = ad_min_axis(g, x, -1, false);
    ck_assert(isnan(ad_node_get(mx, 0)) && ad_node_get(mx, 1) == 2);
    ck_assert(isnan(ad_node_get(mn, 0)) && ad_node_get(mn, 1) == 0);
    ad_node *am = ad_argmax(g, x, 1, false), *an = ad_argmin(g, x, 1, true);
    ck_assert(ad_node_get(am, 0) == 1 && ad_node_get(am, 1) == 0);
    ck_assert(ad_node_get(an, 0) == 1 && ad_node_get(an, 1) == 3);
    ck_assert_int_eq(ad_node_shape(an).rank, 2);
    ck_assert_int_eq(ad_backward(g, ad_sum(g, mx)), AD_OK);
    for (int i = 0; i < 8; i++) ck_assert(ad_node_grad_get(x, i) == (i == 1 || i == 4));
    double w[8] = {-INFINITY, -INFINITY, INFINITY, 1, NAN, 1, 1000, 1000};
    ad_node *l = ad_logsumexp(g, ad_const(g, AD_F64, AD_SHAPE(4, 2), w), 1, false);
    ck_assert(ad_node_get(l, 0) == -INFINITY && ad_node_get(l, 1) == INFINITY && isnan(ad_node_get(l, 2)));
    ck_assert_double_eq_tol(ad_node_get(l, 3), 1000 + log(2), 1e-12);
    ad_graph_free(g);
}
END_TEST

/* Training moves the running statistics toward the batch's mean and unbiased variance, by
 * momentum, from PyTorch's initial zeros and ones; evaluation then normalises by them. */
START_TEST(batch_norm_running_statistics_by_hand)
{
    ad_graph *g = ad_graph_new();
    ad_tensor *rm = ad_tensor_new(AD_F64, AD_SHAPE(2)), *rv = ad_tensor_new(AD_F64, AD_SHAPE(2));
    ad_tensor_fill(rv, 1);
    double v[8] = {1, 10, 2, 20, 3, 30, 4, 40}; /* [4, 2]: channel 0 is 1..4, channel 1 10..40 */
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(4, 2), v);
    ad_node *y = ad_batch_norm(g, x, NULL, NULL, rm, rv, true, 0.1, 1e-5);
    ck_assert_double_eq_tol(ad_node_get(y, 0), -1.5 / sqrt(1.25 + 1e-5), 1e-14);
    ck_assert_double_eq_tol(ad_node_get(y, 7), 15 / sqrt(125 + 1e-5), 1e-14);
    ck_assert_double_eq_tol(ad_tensor_get(rm, 0), 0.25, 1e-15);
    ck_assert_double_eq_tol(ad_tensor_get(rm, 1), 2.5, 1e-15);
    ck_assert_double_eq_tol(ad_tensor_get(rv, 0), 0.9 + 0.1 * 5 / 3.0, 1e-15);
    ck_assert_double_eq_tol(ad_tensor_get(rv, 1), 0.9 + 0.1 * 500 / 3.0, 1e-13);
    ad_node *e = ad_batch_norm(g, x, NULL, NULL, rm, rv, false, 0.1, 1e-5);
    ck_assert_double_eq_tol(ad_node_get(e, 1), (10 - 2.5) / sqrt(0.9 + 0.1 * 500 / 3.0 + 1e-5), 1e-14);
    ck_assert_double_eq_tol(ad_tensor_get(rm, 1), 2.5, 1e-15); /* evaluation leaves them */
    ad_graph_free(g);
    ad_tensor_free(rm), ad_tensor_free(rv);
}
END_TEST

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
    {"index_select", 1, b_index_select, index_select1, -2, 2, false},
    {"gather", 1, b_gather, gather1, -2, 2, false},
    {"embedding", 1, b_embedding, embedding1, -2, 2, false},
    {"stack", 3, b_stack, stack3, -2, 2, false},
    {"permute", 1, b_permute, permute1, -2, 2, false},
    {"slice_step", 1, b_slice_step, slice_step1, -2, 2, false},
    {"matmul 1-D and broadcast", 2, b_matmul, matmul_nd, -2, 2, false},

    /* reductions along an axis and losses: reduce.c, loss.c */
    {"max_axis", 1, b_max_axis, axis1, -2, 2, false},
    {"min_axis", 1, b_min_axis, axis1, -2, 2, false},
    {"argmax", 1, b_argmax, axis1, -2, 2, false},
    {"argmin", 1, b_argmin, axis1, -2, 2, false},
    {"logsumexp", 1, b_logsumexp, axis1, -3, 3, false},
    {"bce_with_logits", 2, b_bce, equal2, 0, 1, false},

    /* convolution and pooling: conv.c */
    {"conv2d", 3, b_conv2d, conv2d3, -2, 2, false},
    {"conv2d_nobias", 2, b_conv2d, conv2d3, -2, 2, false},
    {"conv1d", 3, b_conv1d, conv1d3, -2, 2, false},
    {"max_pool2d", 1, b_max_pool2d, pool1, -2, 2, false},
    {"avg_pool2d", 1, b_avg_pool2d, pool1, -2, 2, false},

    /* normalisation: norm.c */
    {"layer_norm", 3, b_layer_norm, layer_norm3, -2, 2, false},
    {"layer_norm_weight_only", 2, b_layer_norm, layer_norm3, -2, 2, false},
    {"layer_norm_no_affine", 1, b_layer_norm, layer_norm3, -2, 2, false},
    {"batch_norm_training", 3, b_bn_train, batch_norm3, -2, 2, false},
    {"batch_norm_training_untracked_weight_only", 2, b_bn_train_untracked, batch_norm3, -2, 2, false},
    {"batch_norm_training_no_affine", 1, b_bn_train, batch_norm3, -2, 2, false},
    {"batch_norm_eval", 3, b_bn_eval, batch_norm3, -2, 2, false},
    {"batch_norm_eval_no_affine", 1, b_bn_eval, batch_norm3, -2, 2, false},

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
    tcase_add_test(tc, axis_reductions_at_nan_and_inf);
    tcase_add_test(tc, batch_norm_running_statistics_by_hand);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
