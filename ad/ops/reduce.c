/* Reductions: sum and mean of all elements or along one axis. */
#include "../internal.h"

/* An axis splits a tensor into [outer, n, inner]: the reduction runs over n. */
typedef struct { int64_t outer, n, inner; } split3;

static split3 split_at(const ad_shape *s, int axis)
{
    split3 r = {1, s->dim[axis], 1};
    for (int i = 0; i < axis; i++) r.outer *= s->dim[i];
    for (int i = axis + 1; i < s->rank; i++) r.inner *= s->dim[i];
    return r;
}

static int all_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
    *out = AD_SHAPE0;
    return 0;
}

static bool is_mean(int op) { return op == OP_MEAN || op == OP_MEAN_AXIS; }

/* Sums in double whatever the dtype, so a float32 mean of a million elements stays exact to
 * float32 precision. */
static void all_forward(const ad_op_ctx *c)
{
    ad_node *a = c->in[0];
    int64_t n = node_size(a);
    const void *A = node_data(a);
    double s = 0;
    if (a->dtype == AD_F64)
        for (int64_t i = 0; i < n; i++) s += ((const double *)A)[i];
    else
        for (int64_t i = 0; i < n; i++) s += ((const float *)A)[i];
    if (is_mean(c->out->op)) s /= (double)n;
    store(node_data(c->out), c->out->dtype, 0, s);
}

static ad_status all_backward(const ad_op_ctx *c)
{
    ad_node *a = c->in[0];
    bool assign;
    void *GA = grad_for_write(c->graph, a, true, &assign);
    if (!GA) return c->graph->status;
    int64_t n = node_size(a);
    double g = load(ad_node_grad_data(c->out), c->out->dtype, 0);
    if (is_mean(c->out->op)) g /= (double)n;
    if (assign) {
        if (a->dtype == AD_F64)
            for (int64_t i = 0; i < n; i++) ((double *)GA)[i] = g;
        else
            for (int64_t i = 0; i < n; i++) ((float *)GA)[i] = (float)g;
    } else if (a->dtype == AD_F64)
        for (int64_t i = 0; i < n; i++) ((double *)GA)[i] += g;
    else
        for (int64_t i = 0; i < n; i++) ((float *)GA)[i] += (float)g;
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
    split3 p = split_at(&s, (int)c->param[0]);
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
    void *GA = ad_grad_buffer(c->graph, a);
    if (!GA) return c->graph->status;
    ad_shape s = node_shape(a);
    split3 p = split_at(&s, (int)c->param[0]);
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

const op_entry op_sum = {.def = {"sum", 1, all_shape, all_forward, all_backward, "d/dx_i[sum_j x_j] = 1"}};
const op_entry op_mean = {.def = {"mean", 1, all_shape, all_forward, all_backward, "d/dx_i[mean_j x_j] = 1/n"}};
const op_entry op_sum_axis = {.def = {"sum_axis", 1, axis_shape, axis_forward, axis_backward, "d/dx_i[sum over axis] = 1"}};
const op_entry op_mean_axis = {.def = {"mean_axis", 1, axis_shape, axis_forward, axis_backward, "d/dx_i[mean over axis] = 1/n"}};

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
