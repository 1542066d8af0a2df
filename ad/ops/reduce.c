/* Reductions: sum and mean of all elements or along one axis. */
#include "../internal.h"
#include "../kernels/kernels.h"

/* Parameters (axis, keepdim). */
static int axis_params(const ad_op_ctx *c, char *msg, size_t len)
{
    return params_axis(c, msg, len) || !param_int(c->param[1], 0, 1, "keepdim", msg, len);
}

static int all_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
    *out = AD_SHAPE0;
    return 0;
}

static bool is_mean(int op) { return op == OP_MEAN || op == OP_MEAN_AXIS; }

/* Sums are in double whatever the dtype, so a float32 mean of a million elements stays exact
 * to float32 precision.  A long sum keeps SUM_LANES running sums, lane k taking elements k,
 * k + SUM_LANES, ..., added in lane order at the end, then the tail.  Independent lanes let
 * the loop run at vector width instead of one add latency per element, and the order is fixed
 * by the source, so every instruction set gives the same bits.  Shorter sums (n < SUM_LANES)
 * are plain left-to-right sums. */
enum { SUM_LANES = 32 };
#define SUM_RUN(T)                                                                         \
    AD_VECTOR_CLONES static double sum_run_##T(const T *a, int64_t n)                     \
    {                                                                                      \
        double acc[SUM_LANES] = {0}, s = 0;                                               \
        int64_t i = 0;                                                                     \
        for (; i + SUM_LANES <= n; i += SUM_LANES)                                         \
            for (int k = 0; k < SUM_LANES; k++) acc[k] += (double)a[i + k];                \
        for (int k = 0; k < SUM_LANES; k++) s += acc[k];                                   \
        for (; i < n; i++) s += (double)a[i];                                              \
        return s;                                                                          \
    }
SUM_RUN(double)
SUM_RUN(float)

/* A whole-tensor sum is cut into at most SUM_BLOCKS equal blocks of at least SUM_MIN_BLOCK
 * elements, by n alone; threads take whole blocks and the block sums are added in order, so
 * the result does not depend on the thread count. */
enum { SUM_BLOCKS = 64, SUM_MIN_BLOCK = 1 << 14 };

typedef struct {
    const void *a;
    bool f64;
    int64_t n, blocks;
    double part[SUM_BLOCKS];
} sum_job;

static void sum_blocks(void *ctx, int64_t b0, int64_t b1)
{
    sum_job *j = ctx;
    for (int64_t b = b0; b < b1; b++) {
        int64_t lo = j->n * b / j->blocks, hi = j->n * (b + 1) / j->blocks;
        j->part[b] = j->f64 ? sum_run_double((const double *)j->a + lo, hi - lo)
                            : sum_run_float((const float *)j->a + lo, hi - lo);
    }
}

static void all_forward(const ad_op_ctx *c)
{
    ad_node *a = c->in[0];
    sum_job j = {.a = node_data(a), .f64 = a->dtype == AD_F64, .n = node_size(a)};
    j.blocks = j.n / SUM_MIN_BLOCK < 1 ? 1 : j.n / SUM_MIN_BLOCK > SUM_BLOCKS ? SUM_BLOCKS : j.n / SUM_MIN_BLOCK;
    ad_parallel_for(j.blocks, 1, sum_blocks, &j);
    double s = 0;
    for (int64_t b = 0; b < j.blocks; b++) s += j.part[b];
    if (is_mean(c->out->op)) s /= (double)j.n;
    store(node_data(c->out), c->out->dtype, 0, s);
}

/* Every element's gradient is the same number: written (fresh buffer) or added. */
typedef struct {
    void *d;
    bool f64, assign;
    double g;
} fill_job;

static void fill_range(void *ctx, int64_t lo, int64_t hi)
{
    const fill_job *j = ctx;
    if (j->f64) {
        double *d = j->d, g = j->g;
        if (j->assign)
            for (int64_t i = lo; i < hi; i++) d[i] = g;
        else
            for (int64_t i = lo; i < hi; i++) d[i] += g;
    } else {
        float *d = j->d, g = (float)j->g;
        if (j->assign)
            for (int64_t i = lo; i < hi; i++) d[i] = g;
        else
            for (int64_t i = lo; i < hi; i++) d[i] += g;
    }
}

static ad_status all_backward(const ad_op_ctx *c)
{
    ad_node *a = c->in[0];
    bool assign;
    void *GA = grad_for_write(c->graph, a, true, &assign);
    if (!GA) return c->graph->status;
    fill_job j = {.d = GA, .f64 = a->dtype == AD_F64, .assign = assign,
                  .g = load(ad_node_grad_data(c->out), c->out->dtype, 0)};
    if (is_mean(c->out->op)) j.g /= (double)node_size(a);
    ad_parallel_for(node_size(a), 1 << 15, fill_range, &j);
    return AD_OK;
}

static int axis_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    bool keep = c->param[1] != 0;
    if (axis < 0 || axis >= s.rank) {
        char b[96];
        snprintf(msg, len, "axis %d out of range for shape %s", axis, ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    *out = s;
    if (keep) out->dim[axis] = 1;
    else {
        for (int i = axis; i < s.rank - 1; i++) out->dim[i] = s.dim[i + 1];
        out->rank--;
    }
    return 0;
}

static void axis_forward(const ad_op_ctx *c)
{
    ad_node *a = c->in[0], *y = c->out;
    ad_shape s = node_shape(a);
    axis_split p = split_axis(&s, (int)c->param[0]);
    const void *A = node_data(a);
    void *Y = node_data(y);
    double scale = is_mean(y->op) ? 1.0 / (double)p.n : 1.0;
    for (int64_t o = 0; o < p.outer; o++)
        for (int64_t i = 0; i < p.inner; i++) {
            double acc = 0;
            for (int64_t k = 0; k < p.n; k++) acc += load(A, a->dtype, (o * p.n + k) * p.inner + i);
            store(Y, y->dtype, o * p.inner + i, acc * scale);
        }
}

static ad_status axis_backward(const ad_op_ctx *c)
{
    ad_node *a = c->in[0], *y = c->out;
    void *GA = ad_input_grad_buffer(c->graph, a);
    if (!GA) return c->graph->status;
    ad_shape s = node_shape(a);
    axis_split p = split_axis(&s, (int)c->param[0]);
    const void *G = ad_node_grad_data(y);
    double scale = is_mean(y->op) ? 1.0 / (double)p.n : 1.0;
    for (int64_t o = 0; o < p.outer; o++)
        for (int64_t k = 0; k < p.n; k++)
            for (int64_t i = 0; i < p.inner; i++) {
                int64_t j = (o * p.n + k) * p.inner + i;
                store(GA, a->dtype, j, load(GA, a->dtype, j) + scale * load(G, y->dtype, o * p.inner + i));
            }
    return AD_OK;
}

/* The gradient spread back over the summed elements (and divided by their number for a
 * mean), as graph ops: gy reshaped to keep the summed axis, then broadcast. */
static ad_node *sum_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_node *a = c->in[0];
    ad_shape s = node_shape(a), kept = AD_SHAPE0;
    double n = (double)node_size(a);
    if (c->out->op == OP_SUM_AXIS || c->out->op == OP_MEAN_AXIS) {
        int axis = (int)c->param[0];
        kept = s;
        kept.dim[axis] = 1;
        n = (double)s.dim[axis];
        gy = ad_reshape(g, gy, kept);
    }
    ad_node *d = ad_broadcast_to(g, gy, s);
    return d && is_mean(c->out->op) ? ad_mul(g, d, scalar_const_like(g, d, 1 / n)) : d;
}

const op_entry op_sum = {.def = {"sum", 1, all_shape, all_forward, all_backward, "d/dx_i[sum_j x_j] = 1", jvp_linear, 0, NULL, sum_grad_graph}};
const op_entry op_mean = {.def = {"mean", 1, all_shape, all_forward, all_backward, "d/dx_i[mean_j x_j] = 1/n", jvp_linear, 0, NULL, sum_grad_graph}};
const op_entry op_sum_axis = {.def = {"sum_axis", 1, axis_shape, axis_forward, axis_backward, "d/dx_i[sum over axis] = 1", jvp_linear, 0, NULL, sum_grad_graph},
                              .nparam = 2, .nparam_min = 2, .param_names = "(axis, keepdim)", .params = axis_params};
const op_entry op_mean_axis = {.def = {"mean_axis", 1, axis_shape, axis_forward, axis_backward, "d/dx_i[mean over axis] = 1/n", jvp_linear, 0, NULL, sum_grad_graph},
                               .nparam = 2, .nparam_min = 2, .param_names = "(axis, keepdim)", .params = axis_params};

ad_node *ad_sum(ad_graph *g, ad_node *a) { return ad_apply(g, OP_SUM, &a, 1, NULL, 0); }
ad_node *ad_mean(ad_graph *g, ad_node *a) { return ad_apply(g, OP_MEAN, &a, 1, NULL, 0); }

static ad_node *reduce_axis(ad_graph *g, int op, ad_node *a, int axis, bool keepdim)
{
    if (!check_inputs(g, op_entry_get(op)->def.name, &a, 1) ||
        !check_axis(g, op_entry_get(op)->def.name, a, &axis))
        return NULL;
    double p[2] = {axis, keepdim};
    return ad_apply(g, op, &a, 1, p, 2);
}

ad_node *ad_sum_axis(ad_graph *g, ad_node *a, int axis, bool keepdim)
{
    return reduce_axis(g, OP_SUM_AXIS, a, axis, keepdim);
}

ad_node *ad_mean_axis(ad_graph *g, ad_node *a, int axis, bool keepdim)
{
    return reduce_axis(g, OP_MEAN_AXIS, a, axis, keepdim);
}

/* ---- the largest or smallest element along an axis, its index, and logsumexp ----
 *
 * max_axis and min_axis are torch.max(a, dim).values: the whole gradient goes to the one
 * element argmax (argmin) reports, not split among ties as torch.amax would. */

static bool is_arg(int op) { return op == OP_ARGMAX || op == OP_ARGMIN; }
static bool is_min(int op) { return op == OP_MIN_AXIS || op == OP_ARGMIN; }

/* The position along a lane of n elements (X[base + k stride]) of its largest element, or
 * smallest when min: the first among equals, and the first NaN before any number, as
 * torch.max(a, dim) and torch.argmax report. */
static int64_t lane_pick(ad_dtype t, const void *X, int64_t base, int64_t n, int64_t stride, bool min)
{
    int64_t best = 0;
    double b = load(X, t, base);
    for (int64_t k = 1; k < n && !isnan(b); k++) {
        double v = load(X, t, base + k * stride);
        if (isnan(v) || (min ? v < b : v > b)) best = k, b = v;
    }
    return best;
}

/* axis_shape, refusing an empty axis: a lane with no elements has nothing to pick. */
static int pick_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    if (axis_shape(c, out, msg, len)) return 1;
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    if (s.dim[axis] == 0) {
        char b[96];
        snprintf(msg, len, "axis %d of %s has no elements to choose from", axis, ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    return 0;
}

/* Per lane (outer o, inner i) of a split along the op's axis, the statement after `out`, with
 * `base` the lane's first element and `out` the output element it gives. */
#define FOR_LANES(p, base, out, ...)                                                       \
    for (int64_t o_ = 0; o_ < (p).outer; o_++)                                              \
        for (int64_t i_ = 0; i_ < (p).inner; i_++) {                                        \
            int64_t base = o_ * (p).n * (p).inner + i_, out = o_ * (p).inner + i_;           \
            __VA_ARGS__;                                                                    \
        }

/* What the passes of an op along an axis read: the dtype, the split along the axis, and the
 * input's and output's values. */
typedef struct {
    ad_dtype t;
    axis_split p;
    const void *A;
    void *Y;
} lanes;

static lanes lanes_of(const ad_op_ctx *c)
{
    ad_shape s = node_shape(c->in[0]);
    return (lanes){(ad_dtype)c->out->dtype, split_axis(&s, (int)c->param[0]), node_data(c->in[0]), node_data(c->out)};
}

/* The element of a's that lane `base` picks. */
static inline int64_t picked(const lanes *L, int64_t base, bool min)
{
    return base + lane_pick(L->t, L->A, base, L->p.n, L->p.inner, min) * L->p.inner;
}

static void pick_forward(const ad_op_ctx *c)
{
    lanes L = lanes_of(c);
    bool arg = is_arg(c->out->op), min = is_min(c->out->op);
    FOR_LANES(L.p, base, j, {
        int64_t e = picked(&L, base, min);
        store(L.Y, L.t, j, arg ? (double)((e - base) / L.p.inner) : load(L.A, L.t, e));
    })
}

/* Each output's gradient to the element it picked (found again: a comparison per element
 * costs less than keeping the indices). */
static ad_status pick_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    lanes L = lanes_of(c);
    const void *G = ad_node_grad_data(c->out);
    bool min = is_min(c->out->op);
    FOR_LANES(L.p, base, j, {
        int64_t e = picked(&L, base, min);
        store(GA, L.t, e, load(GA, L.t, e) + load(G, L.t, j));
    })
    return AD_OK;
}

static ad_status pick_jvp(const ad_op_ctx *c)
{
    const void *TA = ad_tangent_data(c->graph, c->in[0]);
    void *T = ad_tangent_buffer(c->graph, c->out);
    if (!T || !TA) return c->graph->status;
    lanes L = lanes_of(c);
    bool min = is_min(c->out->op);
    FOR_LANES(L.p, base, j, store(T, L.t, j, load(TA, L.t, picked(&L, base, min))))
    return AD_OK;
}

/* gy (its axis kept) times the one-hot mask of the picked elements, the mask made of ops a
 * replay recomputes: [0, 1, ..., n-1] along the axis == argmax(a, axis, keepdim). */
static ad_node *pick_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_node *a = c->in[0];
    int axis = (int)c->param[0];
    ad_shape s = node_shape(a), kept = s, lane = {.rank = s.rank - axis};
    kept.dim[axis] = 1;
    for (int d = 0; d < lane.rank; d++) lane.dim[d] = d ? 1 : s.dim[axis];
    ad_node *index = ad_const(g, (ad_dtype)a->dtype, lane, NULL);
    if (!index) return NULL;
    for (int64_t k = 0; k < s.dim[axis]; k++) store(node_data(index), (ad_dtype)a->dtype, k, (double)k);
    ad_node *at = reduce_axis(g, is_min(c->out->op) ? OP_ARGMIN : OP_ARGMAX, a, axis, true);
    return ad_mul(g, ad_eq(g, index, at), ad_reshape(g, gy, kept));
}

/* argmax and argmin: indices, with no gradient and a zero tangent. */
static ad_status no_backward(const ad_op_ctx *c) { (void)c; return AD_OK; }
static ad_node *no_grad_graph(const ad_op_ctx *c, ad_node *gy, int i) { (void)c, (void)gy, (void)i; return NULL; }

/* logsumexp: y = log sum exp(a) per lane; its derivative is the lane's softmax, exp(a - y). */
static void lse_forward(const ad_op_ctx *c)
{
    lanes L = lanes_of(c);
    FOR_LANES(L.p, base, j, store(L.Y, L.t, j, lane_lse(L.t, L.A, base, L.p.n, L.p.inner)))
}

/* g exp(a - y): NaN where y is infinite, as in PyTorch. */
static ad_status lse_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    lanes L = lanes_of(c);
    const void *G = ad_node_grad_data(c->out);
    FOR_LANES(L.p, base, j, {
        double yj = load(L.Y, L.t, j), gj = load(G, L.t, j);
        for (int64_t e = base; e < base + L.p.n * L.p.inner; e += L.p.inner)
            store(GA, L.t, e, load(GA, L.t, e) + gj * exp(load(L.A, L.t, e) - yj));
    })
    return AD_OK;
}

static ad_status lse_jvp(const ad_op_ctx *c)
{
    const void *TA = ad_tangent_data(c->graph, c->in[0]);
    void *T = ad_tangent_buffer(c->graph, c->out);
    if (!T || !TA) return c->graph->status;
    lanes L = lanes_of(c);
    FOR_LANES(L.p, base, j, {
        double yj = load(L.Y, L.t, j), dot = 0;
        for (int64_t e = base; e < base + L.p.n * L.p.inner; e += L.p.inner)
            dot += exp(load(L.A, L.t, e) - yj) * load(TA, L.t, e);
        store(T, L.t, j, dot);
    })
    return AD_OK;
}

/* softmax(a) along the axis times gy, its axis kept: softmax has rules of every order. */
static ad_node *lse_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_node *a = c->in[0];
    int axis = (int)c->param[0];
    ad_shape kept = node_shape(a);
    kept.dim[axis] = 1;
    return ad_mul(g, ad_softmax(g, a, axis), ad_reshape(g, gy, kept));
}

#define PICK_ENTRY(nm, grad_text)                                                               \
    const op_entry op_##nm = {.def = {#nm, 1, pick_shape, pick_forward, pick_backward, grad_text, pick_jvp, 0, \
                                      NULL, pick_grad_graph},                                   \
                              .nparam = 2, .nparam_min = 2, .param_names = "(axis, keepdim)", .params = axis_params};
PICK_ENTRY(max_axis, "d/dx_i[max over axis] = [i = argmax]")
PICK_ENTRY(min_axis, "d/dx_i[min over axis] = [i = argmin]")
#undef PICK_ENTRY
const op_entry op_argmax = {.def = {"argmax", 1, pick_shape, pick_forward, no_backward, "an index: no gradient",
                                    no_backward, 0, NULL, no_grad_graph},
                            .nparam = 2, .nparam_min = 2, .param_names = "(axis, keepdim)", .params = axis_params};
const op_entry op_argmin = {.def = {"argmin", 1, pick_shape, pick_forward, no_backward, "an index: no gradient",
                                    no_backward, 0, NULL, no_grad_graph},
                            .nparam = 2, .nparam_min = 2, .param_names = "(axis, keepdim)", .params = axis_params};
const op_entry op_logsumexp = {.def = {"logsumexp", 1, axis_shape, lse_forward, lse_backward,
                                       "d/dx_i[log sum_j exp x_j] = softmax(x)_i", lse_jvp, 0, NULL, lse_grad_graph},
                               .nparam = 2, .nparam_min = 2, .param_names = "(axis, keepdim)", .params = axis_params};

ad_node *ad_max_axis(ad_graph *g, ad_node *a, int axis, bool keepdim) { return reduce_axis(g, OP_MAX_AXIS, a, axis, keepdim); }
ad_node *ad_min_axis(ad_graph *g, ad_node *a, int axis, bool keepdim) { return reduce_axis(g, OP_MIN_AXIS, a, axis, keepdim); }
ad_node *ad_argmax(ad_graph *g, ad_node *a, int axis, bool keepdim) { return reduce_axis(g, OP_ARGMAX, a, axis, keepdim); }
ad_node *ad_argmin(ad_graph *g, ad_node *a, int axis, bool keepdim) { return reduce_axis(g, OP_ARGMIN, a, axis, keepdim); }
ad_node *ad_logsumexp(ad_graph *g, ad_node *a, int axis, bool keepdim) { return reduce_axis(g, OP_LOGSUMEXP, a, axis, keepdim); }
