/* Shape ops: transpose, permute, reshape, broadcast_to, slice (with a step), concat, stack and
 * detach.  They move elements; their backward moves gradients the opposite way (and sums where
 * forward duplicated). */
#include "../internal.h"

static char *shp(const ad_node *n, char *buf, size_t len)
{
    ad_shape s = node_shape(n);
    return ad_shape_str(&s, buf, len);
}

/* Shapes travel as op parameters: rank, then the dimensions (their count is the shape
 * rule's to check). */
static int shape_params(const ad_op_ctx *c, char *msg, size_t len)
{
    if (!param_int(c->param[0], 0, AD_MAX_RANK, "rank", msg, len)) return 1;
    for (int i = 1; i < c->nparam; i++)
        if (!param_int(c->param[i], 0, PARAM_DIM_MAX, "dimension", msg, len)) return 1;
    return 0;
}

static int param_shape(const double *p, int np, ad_shape *s)
{
    if (np < 1 || p[0] < 0 || p[0] > AD_MAX_RANK || np != 1 + (int)p[0]) return 1;
    s->rank = (int)p[0];
    for (int i = 0; i < s->rank; i++) s->dim[i] = (int64_t)p[1 + i];
    return 0;
}

static int shape_to_params(const ad_shape *s, double *p)
{
    p[0] = s->rank;
    for (int i = 0; i < s->rank; i++) p[1 + i] = (double)s->dim[i];
    return 1 + s->rank;
}

/* ---- transpose: swap the last two axes ---- */

static int transpose_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    if (s.rank < 2) {
        char b[96];
        snprintf(msg, len, "%s: needs rank >= 2", ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    *out = s;
    out->dim[s.rank - 2] = s.dim[s.rank - 1];
    out->dim[s.rank - 1] = s.dim[s.rank - 2];
    return 0;
}

/* Y[b][j][i] (op)= X[b][i][j] for a batch of m x n matrices X. */
static void transpose_move(ad_dtype t, const ad_shape *xs, const void *X, void *Y, bool add)
{
    int64_t m = xs->dim[xs->rank - 2], n = xs->dim[xs->rank - 1];
    int64_t size = ad_shape_size(xs);
    if (size == 0) return; /* m * n may exceed int64 ([0, 2^62, 2^62]) */
    int64_t mn = m * n, batch = size / mn;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                int64_t src = b * m * n + i * n + j, dst = b * m * n + j * m + i;
                double v = load(X, t, src);
                store(Y, t, dst, add ? load(Y, t, dst) + v : v);
            }
}

static void transpose_forward(const ad_op_ctx *c)
{
    ad_shape s = node_shape(c->in[0]);
    transpose_move(c->out->dtype, &s, node_data(c->in[0]), node_data(c->out), false);
}

static ad_status transpose_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    ad_shape s = node_shape(c->out);
    transpose_move(c->out->dtype, &s, ad_node_grad_data(c->out), GA, true);
    return AD_OK;
}

/* ---- reshape ---- */

static int reshape_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    char b0[96], b1[96];
    if (param_shape(c->param, c->nparam, out)) {
        snprintf(msg, len, "bad target shape");
        return 1;
    }
    if (ad_shape_size(out) != node_size(c->in[0])) {
        snprintf(msg, len, "%s to %s: sizes differ", shp(c->in[0], b0, sizeof b0),
                 ad_shape_str(out, b1, sizeof b1));
        return 1;
    }
    return 0;
}

static void copy_forward(const ad_op_ctx *c)
{
    memcpy(node_data(c->out), node_data(c->in[0]),
           (size_t)node_size(c->out) * ad_dtype_size(c->out->dtype));
}

static ad_status copy_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    add_into(c->out->dtype, GA, ad_node_grad_data(c->out), node_size(c->out));
    return AD_OK;
}

/* ---- broadcast_to ---- */

static int broadcast_to_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    char b0[96], b1[96];
    ad_shape s = node_shape(c->in[0]), r;
    if (param_shape(c->param, c->nparam, out)) {
        snprintf(msg, len, "bad target shape");
        return 1;
    }
    if (!broadcast_shapes(&s, out, &r) || r.rank != out->rank ||
        memcmp(r.dim, out->dim, sizeof(int64_t) * (size_t)r.rank) != 0) {
        snprintf(msg, len, "%s does not broadcast to %s", ad_shape_str(&s, b0, sizeof b0),
                 ad_shape_str(out, b1, sizeof b1));
        return 1;
    }
    return 0;
}

static void broadcast_to_forward(const ad_op_ctx *c)
{
    ad_shape s = node_shape(c->in[0]), o = node_shape(c->out);
    broadcast_copy(c->out->dtype, node_data(c->in[0]), &s, node_data(c->out), &o);
}

static ad_status broadcast_to_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    ad_shape s = node_shape(c->in[0]), o = node_shape(c->out);
    reduce_broadcast_add(c->out->dtype, ad_node_grad_data(c->out), &o, GA, &s, 1.0);
    return AD_OK;
}

/* ---- slice and concat: contiguous runs of `inner` elements along an axis ---- */

/* Parameters (axis, start, end). */
static int slice_params(const ad_op_ctx *c, char *msg, size_t len)
{
    return params_axis(c, msg, len) || !param_int(c->param[1], -PARAM_DIM_MAX, PARAM_DIM_MAX, "start", msg, len) ||
           !param_int(c->param[2], -PARAM_DIM_MAX, PARAM_DIM_MAX, "end", msg, len);
}

static int slice_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], end = (int64_t)c->param[2];
    char b[96];
    if (axis < 0 || axis >= s.rank) {
        snprintf(msg, len, "axis %d out of range for shape %s", axis, ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    if (start < 0 || end > s.dim[axis] || start >= end) {
        snprintf(msg, len, "%s: range %lld..%lld outside 0..%lld on axis %d",
                 ad_shape_str(&s, b, sizeof b), (long long)start, (long long)end,
                 (long long)s.dim[axis], axis);
        return 1;
    }
    *out = s;
    out->dim[axis] = end - start;
    return 0;
}

/* Copies (or adds) the slice's rows between the big tensor and the slice. */
static void slice_move(ad_dtype t, const ad_shape *big, int axis, int64_t start, int64_t cnt,
                       void *B, void *S, bool to_slice, bool add)
{
    axis_split r = split_axis(big, axis);
    size_t es = ad_dtype_size(t);
    for (int64_t o = 0; o < r.outer; o++) {
        char *bp = (char *)B + (size_t)((o * r.n + start) * r.inner) * es;
        char *sp = (char *)S + (size_t)(o * cnt * r.inner) * es;
        int64_t m = cnt * r.inner;
        if (add) add_into(t, to_slice ? (void *)sp : (void *)bp, to_slice ? bp : sp, m);
        else memcpy(to_slice ? sp : bp, to_slice ? bp : sp, (size_t)m * es);
    }
}

static void slice_forward(const ad_op_ctx *c)
{
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], cnt = (int64_t)c->param[2] - start;
    slice_move(c->out->dtype, &s, axis, start, cnt, node_data(c->in[0]), node_data(c->out), true, false);
}

static ad_status slice_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], cnt = (int64_t)c->param[2] - start;
    slice_move(c->out->dtype, &s, axis, start, cnt, GA, ad_node_grad_data(c->out), false, true);
    return AD_OK;
}

/* A contiguous slice's tangent is a view of its input's, as its value is; otherwise it is the
 * copy that jvp_linear makes. */
static ad_status slice_jvp(const ad_op_ctx *c)
{
    ad_shape s = node_shape(c->in[0]);
    axis_split r = split_axis(&s, (int)c->param[0]);
    const char *T = ad_tangent_data(c->graph, c->in[0]);
    if (r.outer != 1 || !T) return jvp_linear(c);
    tangent_set_view(c->graph, c->out, T + (size_t)((int64_t)c->param[1] * r.inner) * ad_dtype_size(c->out->dtype));
    return AD_OK;
}

static int concat_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s0 = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    char b0[96], b1[96];
    if (axis < 0 || axis >= s0.rank) {
        snprintf(msg, len, "axis %d out of range for shape %s", axis, ad_shape_str(&s0, b0, sizeof b0));
        return 1;
    }
    *out = s0;
    for (int k = 1; k < c->nin; k++) {
        ad_shape s = node_shape(c->in[k]);
        bool ok = s.rank == s0.rank;
        for (int i = 0; ok && i < s.rank; i++) ok = i == axis || s.dim[i] == s0.dim[i];
        if (!ok) {
            snprintf(msg, len, "%s and %s differ off axis %d", ad_shape_str(&s0, b0, sizeof b0),
                     ad_shape_str(&s, b1, sizeof b1), axis);
            return 1;
        }
        if (s.dim[axis] > INT64_MAX - out->dim[axis]) {
            snprintf(msg, len, "%s and %s: axis %d would exceed 2^63 elements", ad_shape_str(out, b0, sizeof b0),
                     ad_shape_str(&s, b1, sizeof b1), axis);
            return 1;
        }
        out->dim[axis] += s.dim[axis];
    }
    return 0;
}

/* Input k's extent along the output's axis: its own for concat, 1 for stack (a new axis). */
static int64_t part_len(const ad_op_ctx *c, int k, int axis)
{
    return c->out->op == OP_STACK ? 1 : node_shape(c->in[k]).dim[axis];
}

/* Parameter (axis) of the output; the inputs are of one shape. */
static int stack_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s0 = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    char b0[96], b1[96];
    if (axis > s0.rank || s0.rank == AD_MAX_RANK) {
        snprintf(msg, len, "axis %d out of range for stacking %s", axis, ad_shape_str(&s0, b0, sizeof b0));
        return 1;
    }
    for (int k = 1; k < c->nin; k++) {
        ad_shape s = node_shape(c->in[k]);
        if (s.rank != s0.rank || memcmp(s.dim, s0.dim, sizeof s.dim[0] * (size_t)s.rank) != 0) {
            snprintf(msg, len, "%s and %s differ (input %d)", ad_shape_str(&s0, b0, sizeof b0),
                     ad_shape_str(&s, b1, sizeof b1), k + 1);
            return 1;
        }
    }
    out->rank = s0.rank + 1;
    for (int d = 0, i = 0; d < out->rank; d++) out->dim[d] = d == axis ? c->nin : s0.dim[i++];
    return 0;
}

static void concat_forward(const ad_op_ctx *c)
{
    ad_shape o = node_shape(c->out);
    int axis = (int)c->param[0];
    int64_t at = 0;
    for (int k = 0; k < c->nin; k++) {
        int64_t cnt = part_len(c, k, axis);
        slice_move(c->out->dtype, &o, axis, at, cnt, node_data(c->out), node_data(c->in[k]), false, false);
        at += cnt;
    }
}

static ad_status concat_backward(const ad_op_ctx *c)
{
    ad_shape o = node_shape(c->out);
    int axis = (int)c->param[0];
    int64_t at = 0;
    void *G = ad_node_grad_data(c->out);
    for (int k = 0; k < c->nin; k++) {
        int64_t cnt = part_len(c, k, axis);
        void *GK = ad_input_grad_buffer(c->graph, c->in[k]);
        if (GK) slice_move(c->out->dtype, &o, axis, at, cnt, G, GK, true, true);
        else if (c->graph->status) return c->graph->status;
        at += cnt;
    }
    return AD_OK;
}

/* ---- slice_step: every step-th element of start..end-1 along an axis ---- */

/* Parameters (axis, start, end, step); start and end are in [0, n], checked by the rule. */
static int slice_step_params(const ad_op_ctx *c, char *msg, size_t len)
{
    return params_axis(c, msg, len) || !param_int(c->param[1], 0, PARAM_DIM_MAX, "start", msg, len) ||
           !param_int(c->param[2], 0, PARAM_DIM_MAX, "end", msg, len) ||
           !param_int(c->param[3], 1, PARAM_DIM_MAX, "step", msg, len);
}

/* The elements start, start + step, ... below end: none when end <= start, as Python's. */
static int64_t step_count(int64_t start, int64_t end, int64_t step)
{
    return end > start ? (end - start + step - 1) / step : 0;
}

static int slice_step_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], end = (int64_t)c->param[2];
    char b[96];
    if (axis >= s.rank) {
        snprintf(msg, len, "axis %d out of range for shape %s", axis, ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    if (start > s.dim[axis] || end > s.dim[axis]) {
        snprintf(msg, len, "%s: start %lld and end %lld must be in 0..%lld on axis %d", ad_shape_str(&s, b, sizeof b),
                 (long long)start, (long long)end, (long long)s.dim[axis], axis);
        return 1;
    }
    *out = s;
    out->dim[axis] = step_count(start, end, (int64_t)c->param[3]);
    return 0;
}

/* Copies the strided slice out of X, or adds it back into X. */
static void slice_step_move(const ad_op_ctx *c, void *X, void *S, bool to_slice)
{
    ad_shape s = node_shape(c->in[0]), o = node_shape(c->out);
    if (ad_shape_size(&o) == 0) return;
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], step = (int64_t)c->param[3], cnt = o.dim[axis];
    axis_split r = split_axis(&s, axis);
    ad_dtype t = c->out->dtype;
    size_t es = ad_dtype_size(t), row = (size_t)r.inner * es;
    for (int64_t k = 0; k < r.outer; k++)
        for (int64_t j = 0; j < cnt; j++) {
            char *xp = (char *)X + (size_t)(k * r.n + start + j * step) * row;
            char *sp = (char *)S + (size_t)(k * cnt + j) * row;
            if (to_slice) memcpy(sp, xp, row);
            else add_into(t, xp, sp, r.inner);
        }
}

static void slice_step_forward(const ad_op_ctx *c) { slice_step_move(c, node_data(c->in[0]), node_data(c->out), true); }

static ad_status slice_step_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    slice_step_move(c, GA, ad_node_grad_data(c->out), false);
    return AD_OK;
}

/* ---- permute ---- */

/* Parameters: the permutation, one entry per axis (the rule checks it is one). */
static int permute_params(const ad_op_ctx *c, char *msg, size_t len)
{
    for (int i = 0; i < c->nparam; i++)
        if (!param_int(c->param[i], 0, AD_MAX_RANK - 1, "axis", msg, len)) return 1;
    return 0;
}

static int permute_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    bool seen[AD_MAX_RANK] = {false}, ok = c->nparam == s.rank;
    for (int i = 0; ok && i < s.rank; i++) {
        int p = (int)c->param[i];
        ok = p < s.rank && !seen[p];
        if (ok) seen[p] = true, out->dim[i] = s.dim[p];
    }
    if (!ok) {
        char b[96], q[64] = "";
        for (int i = 0; i < c->nparam; i++)
            snprintf(q + strlen(q), sizeof q - strlen(q), "%s%d", i ? "," : "", (int)c->param[i]);
        snprintf(msg, len, "(%s) is not a permutation of the axes of %s", q, ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    out->rank = s.rank;
    return 0;
}

/* Y (+)= X permuted: Y's axis i is X's axis perm[i] (X of shape xs).  Axes at the end that stay
 * in place make rows copied whole; swapping the last two is transpose's loop. */
static void permute_move(ad_dtype t, const ad_shape *xs, const int *perm, const void *X, void *Y, bool add)
{
    int r = xs->rank;
    int64_t size = ad_shape_size(xs);
    if (size == 0) return;
    int keep = r; /* axes keep.. stay in place */
    while (keep > 0 && perm[keep - 1] == keep - 1) keep--;
    if (r >= 2 && perm[r - 1] == r - 2 && perm[r - 2] == r - 1) {
        bool batch_in_place = true;
        for (int i = 0; i < r - 2; i++) batch_in_place &= perm[i] == i;
        if (batch_in_place) {
            transpose_move(t, xs, X, Y, add);
            return;
        }
    }
    int64_t xstride[AD_MAX_RANK], inner = 1, pos[AD_MAX_RANK] = {0}, off = 0;
    for (int d = r - 1; d >= 0; d--) xstride[d] = inner, inner *= xs->dim[d];
    inner = 1;
    for (int d = keep; d < r; d++) inner *= xs->dim[d];
    size_t es = ad_dtype_size(t), row = (size_t)inner * es;
    for (int64_t i = 0; i < size / inner; i++) {
        const char *src = (const char *)X + (size_t)off * es;
        char *dst = (char *)Y + (size_t)i * row;
        if (add) add_into(t, dst, src, inner);
        else memcpy(dst, src, row);
        for (int d = keep - 1; d >= 0; d--) { /* the odometer over Y's first keep axes */
            int64_t st = xstride[perm[d]];
            off += st;
            if (++pos[d] < xs->dim[perm[d]]) break;
            off -= st * xs->dim[perm[d]];
            pos[d] = 0;
        }
    }
}

static void perm_of(const ad_op_ctx *c, int *perm, int *inv)
{
    for (int i = 0; i < c->nparam; i++) perm[i] = (int)c->param[i], inv[perm[i]] = i;
}

static void permute_forward(const ad_op_ctx *c)
{
    int perm[AD_MAX_RANK], inv[AD_MAX_RANK];
    perm_of(c, perm, inv);
    ad_shape s = node_shape(c->in[0]);
    permute_move(c->out->dtype, &s, perm, node_data(c->in[0]), node_data(c->out), false);
}

/* The inverse permutation carries the gradient back. */
static ad_status permute_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    int perm[AD_MAX_RANK], inv[AD_MAX_RANK];
    perm_of(c, perm, inv);
    ad_shape o = node_shape(c->out);
    permute_move(c->out->dtype, &o, inv, ad_node_grad_data(c->out), GA, true);
    return AD_OK;
}

/* ---- detach: the input's values, no derivative ---- */

static int same_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)msg, (void)len;
    *out = node_shape(c->in[0]);
    return 0;
}

/* Derivative 0: no sweep reaches a detach node (op_no_grad), and a tangent left unset is 0. */
static ad_status detach_backward(const ad_op_ctx *c) { (void)c; return AD_OK; }
static ad_node *detach_grad_graph(const ad_op_ctx *c, ad_node *gy, int i) { (void)c, (void)gy, (void)i; return NULL; }

/* ---- reverse rules as graphs: each is the op's adjoint written with the shape ops ---- */

/* x with `before` zeros ahead of it and `after` behind it along axis. */
static ad_node *pad_axis(ad_graph *g, ad_node *x, int axis, int64_t before, int64_t after)
{
    ad_node *parts[3];
    int k = 0;
    ad_shape z = node_shape(x);
    if (before > 0) z.dim[axis] = before, parts[k++] = ad_full(g, (ad_dtype)x->dtype, z, 0);
    parts[k++] = x;
    if (after > 0) z.dim[axis] = after, parts[k++] = ad_full(g, (ad_dtype)x->dtype, z, 0);
    return k == 1 ? x : ad_concat(g, parts, k, axis);
}

static ad_node *transpose_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    return ad_transpose(c->graph, gy);
}

static ad_node *reshape_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    return ad_reshape(c->graph, gy, node_shape(c->in[0]));
}

static ad_node *broadcast_to_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_shape to = node_shape(c->in[0]);
    return sum_to_shape(c->graph, gy, &to);
}

/* The slice's gradient put back in place: zeros before and after it along the axis. */
static ad_node *slice_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], end = (int64_t)c->param[2];
    return pad_axis(c->graph, gy, axis, start, node_shape(c->in[0]).dim[axis] - end);
}

/* The strided slice's gradient put back in place: each row of gy followed by step - 1 rows of
 * zeros (gy seen as [outer, cnt, 1, inner] joined with zeros along the third axis, whatever the
 * input's rank), cut after the last element taken, padded to the input's extent. */
static ad_node *slice_step_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    int64_t start = (int64_t)c->param[1], step = (int64_t)c->param[3], cnt = node_shape(gy).dim[axis];
    if (node_size(gy) == 0) return NULL; /* nothing was taken: the gradient is 0 */
    axis_split r = split_axis(&s, axis);
    ad_node *parts[2] = {ad_reshape(g, gy, AD_SHAPE(r.outer, cnt, 1, r.inner)), NULL};
    parts[1] = ad_full(g, (ad_dtype)gy->dtype, AD_SHAPE(r.outer, cnt, step - 1, r.inner), 0);
    ad_node *spread = ad_reshape(g, ad_concat(g, parts, 2, 2), AD_SHAPE(r.outer, cnt * step, r.inner));
    int64_t taken = (cnt - 1) * step + 1; /* from start to the last element taken */
    if (taken < cnt * step) spread = ad_slice(g, spread, 1, 0, taken);
    ad_node *d = pad_axis(g, spread, 1, start, r.n - start - taken);
    return d ? ad_reshape(g, d, s) : NULL;
}

static ad_node *permute_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    int perm[AD_MAX_RANK], inv[AD_MAX_RANK];
    perm_of(c, perm, inv);
    return ad_permute(c->graph, gy, inv);
}

/* Input i's part of the gradient: its slice of gy along the new axis, without that axis. */
static ad_node *stack_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    int axis = (int)c->param[0];
    return ad_reshape(c->graph, ad_slice(c->graph, gy, axis, i, i + 1), node_shape(c->in[i]));
}

/* Input i's part of the gradient: its slice of gy along the axis. */
static ad_node *concat_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    int axis = (int)c->param[0];
    int64_t at = 0;
    for (int k = 0; k < i; k++) at += node_shape(c->in[k]).dim[axis];
    int64_t len = node_shape(c->in[i]).dim[axis];
    return len ? ad_slice(c->graph, gy, axis, at, at + len) : NULL; /* an empty part: nothing */
}

const op_entry op_transpose = {.def = {"transpose", 1, transpose_shape, transpose_forward, transpose_backward, "d/dX[X^T] = the gradient transposed back", jvp_linear, 0, NULL, transpose_grad_graph}};
const op_entry op_reshape = {.def = {"reshape", 1, reshape_shape, copy_forward, copy_backward, "d/dx[reshape(x)] = 1 (the gradient reshaped back)", jvp_linear, 0, NULL, reshape_grad_graph},
                             .nparam = 1 + AD_MAX_RANK, .nparam_min = 1, .param_names = "(rank, dimensions)", .params = shape_params};
const op_entry op_broadcast_to = {.def = {"broadcast_to", 1, broadcast_to_shape, broadcast_to_forward, broadcast_to_backward, "d/dx[broadcast(x)] = sum over the broadcast axes", jvp_linear, 0, NULL, broadcast_to_grad_graph},
                                  .nparam = 1 + AD_MAX_RANK, .nparam_min = 1, .param_names = "(rank, dimensions)", .params = shape_params};
const op_entry op_slice = {.def = {"slice", 1, slice_shape, slice_forward, slice_backward, "d/dx[x[a:b]] = 1 inside the slice, 0 outside", slice_jvp, 0, NULL, slice_grad_graph},
                           .nparam = 3, .nparam_min = 3, .param_names = "(axis, start, end)", .params = slice_params};
const op_entry op_stack = {.def = {"stack", AD_VARIADIC, stack_shape, concat_forward, concat_backward, "d/dx_k[stack] = the k-th slice of the gradient", jvp_linear, 0, NULL, stack_grad_graph},
                           .nparam = 1, .nparam_min = 1, .param_names = "(axis)", .params = params_axis};
const op_entry op_slice_step = {.def = {"slice_step", 1, slice_step_shape, slice_step_forward, slice_step_backward, "d/dx[x[a:b:k]] = 1 at the elements taken, 0 elsewhere", jvp_linear, 0, NULL, slice_step_grad_graph},
                                .nparam = 4, .nparam_min = 4, .param_names = "(axis, start, end, step)", .params = slice_step_params};
const op_entry op_permute = {.def = {"permute", 1, permute_shape, permute_forward, permute_backward, "d/dx[permute(x, p)] = the gradient permuted back by p's inverse", jvp_linear, 0, NULL, permute_grad_graph},
                             .nparam = AD_MAX_RANK, .nparam_min = 0, .param_names = "(axes)", .params = permute_params};
const op_entry op_detach = {.def = {"detach", 1, same_shape, copy_forward, detach_backward, "d/dx[detach(x)] = 0", detach_backward, 0, NULL, detach_grad_graph}};
const op_entry op_concat = {.def = {"concat", AD_VARIADIC, concat_shape, concat_forward, concat_backward, "d/dx_k[concat] = the k-th part of the gradient", jvp_linear, 0, NULL, concat_grad_graph},
                            .nparam = 1, .nparam_min = 1, .param_names = "(axis)", .params = params_axis};

ad_node *ad_transpose(ad_graph *g, ad_node *a) { return ad_apply(g, OP_TRANSPOSE, &a, 1, NULL, 0); }

static ad_node *to_shape(ad_graph *g, int op, ad_node *a, const ad_shape *s)
{
    if (!g) return NULL;
    if (s->rank < 0 || s->rank > AD_MAX_RANK || ad_shape_size(s) < 0) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: invalid target shape (rank %d)", op_entry_get(op)->def.name, s->rank);
        return NULL;
    }
    double p[1 + AD_MAX_RANK];
    return ad_apply(g, op, &a, 1, p, shape_to_params(s, p));
}

ad_node *ad_reshape(ad_graph *g, ad_node *a, ad_shape s) { return to_shape(g, OP_RESHAPE, a, &s); }
ad_node *ad_broadcast_to(ad_graph *g, ad_node *a, ad_shape s) { return to_shape(g, OP_BROADCAST_TO, a, &s); }

/* A slice whose elements are contiguous in the input (nothing but size-1 axes before the
 * sliced one) is a view: no copy forward. */
ad_node *ad_slice(ad_graph *g, ad_node *a, int axis, int64_t start, int64_t end)
{
    if (!check_inputs(g, "slice", &a, 1) || !check_axis(g, "slice", a, &axis)) return NULL;
    double p[3] = {axis, (double)start, (double)end};
    ad_shape s = node_shape(a), out;
    axis_split r = split_axis(&s, axis);
    ad_op_ctx c = {g, NULL, 1, &a, p, 3, NULL};
    char msg[256];
    if (r.outer != 1 || slice_params(&c, msg, sizeof msg) || slice_shape(&c, &out, msg, sizeof msg))
        return ad_apply(g, OP_SLICE, &a, 1, p, 3);
    char *base = (char *)node_data(a) + (size_t)(start * r.inner) * ad_dtype_size(a->dtype);
    ad_node *n = node_new_view(g, OP_SLICE, (ad_dtype)a->dtype, &out, &a, 1, base);
    return n && node_set_params(g, n, p, 3) ? n : NULL;
}

/* The checks of concat's and stack's input list. */
static bool join_inputs(ad_graph *g, const char *op, ad_node *const *xs, int k)
{
    if (!g) return false;
    if (!xs && k > 0) {
        ad_set_error(g, AD_ERR_NULL, "%s: input array is NULL", op);
        return false;
    }
    if (k < 1) {
        ad_set_error(g, AD_ERR_ARG, "%s: needs at least one input (given %d)", op, k);
        return false;
    }
    return check_inputs(g, op, xs, k);
}

ad_node *ad_concat(ad_graph *g, ad_node *const *xs, int k, int axis)
{
    if (!join_inputs(g, "concat", xs, k)) return NULL;
    if (node_shape(xs[0]).rank == 0) { /* as torch.cat, which refuses 0-d tensors too */
        ad_set_error(g, AD_ERR_SHAPE, "concat: input 1 is a scalar (0-D), which has no axis to join along; "
                     "ad_stack joins scalars into a vector");
        return NULL;
    }
    if (!check_axis(g, "concat", xs[0], &axis)) return NULL;
    double p = axis;
    return ad_apply(g, OP_CONCAT, xs, k, &p, 1);
}

ad_node *ad_stack(ad_graph *g, ad_node *const *xs, int k, int axis)
{
    if (!join_inputs(g, "stack", xs, k)) return NULL;
    ad_shape s = node_shape(xs[0]);
    int ax = axis < 0 ? axis + s.rank + 1 : axis;
    if (ax < 0 || ax > s.rank) {
        char b[96];
        ad_set_error(g, AD_ERR_ARG, "stack: axis %d out of range for stacking %s (the output has %d axes)", axis,
                     ad_shape_str(&s, b, sizeof b), s.rank + 1);
        return NULL;
    }
    double p = ax;
    return ad_apply(g, OP_STACK, xs, k, &p, 1);
}

ad_node *ad_permute(ad_graph *g, ad_node *a, const int *perm)
{
    if (!check_inputs(g, "permute", &a, 1)) return NULL;
    int r = node_shape(a).rank;
    if (!perm && r > 0) {
        ad_set_error(g, AD_ERR_NULL, "permute: perm is NULL");
        return NULL;
    }
    double p[AD_MAX_RANK];
    for (int i = 0; i < r; i++) p[i] = perm[i] < 0 ? perm[i] + r : perm[i];
    for (int i = 0; i < r; i++)
        if (p[i] < 0 || p[i] >= r) {
            char b[96];
            ad_shape s = node_shape(a);
            ad_set_error(g, AD_ERR_SHAPE, "permute: axis %d out of range for shape %s", perm[i],
                         ad_shape_str(&s, b, sizeof b));
            return NULL;
        }
    return ad_apply(g, OP_PERMUTE, &a, 1, p, r);
}

ad_node *ad_slice_step(ad_graph *g, ad_node *a, int axis, int64_t start, int64_t end, int64_t step)
{
    if (!check_inputs(g, "slice_step", &a, 1) || !check_axis(g, "slice_step", a, &axis)) return NULL;
    if (step < 1) {
        ad_set_error(g, AD_ERR_ARG, "slice_step: step %lld must be at least 1", (long long)step);
        return NULL;
    }
    int64_t n = node_shape(a).dim[axis];
    if (start < 0 || end < 0 || start > n || end > n) {
        char b[96];
        ad_shape s = node_shape(a);
        ad_set_error(g, AD_ERR_ARG,
                     "slice_step: %s: start %lld and end %lld must be in 0..%lld on axis %d (clamp them first, "
                     "as Python does)",
                     ad_shape_str(&s, b, sizeof b), (long long)start, (long long)end, (long long)n, axis);
        return NULL;
    }
    if (step == 1 && start < end) return ad_slice(g, a, axis, start, end);
    double p[4] = {axis, (double)start, (double)end, (double)step};
    return ad_apply(g, OP_SLICE_STEP, &a, 1, p, 4);
}

/* A view of a's values (no copy, as a contiguous slice): a replay skips it, and a's values,
 * made first, are its own.  A float64 scalar keeps its value in the node, so it is copied. */
ad_node *ad_detach(ad_graph *g, ad_node *a)
{
    if (!check_inputs(g, "detach", &a, 1)) return NULL;
    if (a->flags & F_SCALAR) return ad_apply(g, OP_DETACH, &a, 1, NULL, 0);
    ad_shape s = node_shape(a);
    ad_node *n = node_new_view(g, OP_DETACH, (ad_dtype)a->dtype, &s, &a, 1, node_data(a));
    if (!n) return NULL;
    n->flags &= (uint8_t)~F_NEEDS_GRAD;
    return g->anomaly ? anomaly_forward(g, n) : n;
}
