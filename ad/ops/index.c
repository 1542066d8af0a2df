/* Indexing: index_select, embedding and gather, which read a tensor at a list of int64
 * indices kept in the node, and the two internal ops of their gradients as graphs.
 *
 * index_select and embedding are one kernel, "take": out = a[:axis] + index shape + a[axis+1:]
 * (index_select's index is 1-D, embedding's ids any shape on axis 0 of a [num, dim] table),
 * copying whole rows of the axes after `axis`.  gather reads one element per index, the index
 * replacing the position along axis.  The reverse rule of each is scatter-add.
 *
 * The gradient graphs are built from index_add (scatter-add of a gradient into the input's
 * shape) and index_take (the op's own gather applied to another tensor), whose reverse rules
 * are each other.  Both read the indices from the public node they were made for (their
 * second input, whose values they never read), as ce_onehot reads cross_entropy's labels, so
 * that ad_node_set_arg's new indices reach the gradient graph at the next replay. */
#include "../internal.h"
#include "../ad_parallel.h"

/* The indices, normalised into [0, n) along the axis. */
typedef struct {
    int64_t *idx;
    int64_t n;
} index_state;

/* Parameters: (axis, index rank, index dimensions...). */
static int index_params(const ad_op_ctx *c, char *msg, size_t len)
{
    if (params_axis(c, msg, len) || !param_int(c->param[1], 0, AD_MAX_RANK, "index rank", msg, len)) return 1;
    if (c->nparam != 2 + (int)c->param[1]) {
        snprintf(msg, len, "index rank %d needs %d dimensions, given %d", (int)c->param[1], (int)c->param[1],
                 c->nparam - 2);
        return 1;
    }
    for (int i = 2; i < c->nparam; i++)
        if (!param_int(c->param[i], 0, PARAM_DIM_MAX, "index dimension", msg, len)) return 1;
    return 0;
}

static ad_shape index_shape_of(const double *p)
{
    ad_shape s = {.rank = (int)p[1]};
    for (int i = 0; i < s.rank; i++) s.dim[i] = (int64_t)p[2 + i];
    return s;
}

static bool is_take(int op) { return op == OP_INDEX_SELECT || op == OP_EMBEDDING; }

/* a[:axis] + index shape + a[axis+1:], for index_select and embedding. */
static int take_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape a = node_shape(c->in[0]), ix = index_shape_of(c->param);
    int axis = (int)c->param[0];
    char b0[96], b1[96];
    if (axis >= a.rank) {
        snprintf(msg, len, "axis %d out of range for shape %s", axis, ad_shape_str(&a, b0, sizeof b0));
        return 1;
    }
    if (a.rank - 1 + ix.rank > AD_MAX_RANK) {
        snprintf(msg, len, "%s indexed by %s would have more than %d axes", ad_shape_str(&a, b0, sizeof b0),
                 ad_shape_str(&ix, b1, sizeof b1), AD_MAX_RANK);
        return 1;
    }
    out->rank = a.rank - 1 + ix.rank;
    int k = 0;
    for (int d = 0; d < axis; d++) out->dim[k++] = a.dim[d];
    for (int d = 0; d < ix.rank; d++) out->dim[k++] = ix.dim[d];
    for (int d = axis + 1; d < a.rank; d++) out->dim[k++] = a.dim[d];
    return 0;
}

static int index_select_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    if (c->param[1] != 1) {
        snprintf(msg, len, "the index must be 1-D (given rank %d)", (int)c->param[1]);
        return 1;
    }
    return take_shape(c, out, msg, len);
}

static int embedding_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape w = node_shape(c->in[0]);
    if (w.rank != 2 || c->param[0] != 0) {
        char b[96];
        snprintf(msg, len, "weight %s: expected a [num, dim] table indexed along axis 0",
                 ad_shape_str(&w, b, sizeof b));
        return 1;
    }
    return take_shape(c, out, msg, len);
}

/* The index's shape, of a's rank and no larger than a off the axis (torch.gather's rule). */
static int gather_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape a = node_shape(c->in[0]), ix = index_shape_of(c->param);
    int axis = (int)c->param[0];
    char b0[96], b1[96];
    ad_shape_str(&a, b0, sizeof b0);
    ad_shape_str(&ix, b1, sizeof b1);
    if (axis >= a.rank) {
        snprintf(msg, len, "axis %d out of range for shape %s", axis, b0);
        return 1;
    }
    if (ix.rank != a.rank) {
        snprintf(msg, len, "input %s and index %s: ranks differ", b0, b1);
        return 1;
    }
    for (int d = 0; d < a.rank; d++)
        if (d != axis && ix.dim[d] > a.dim[d]) {
            snprintf(msg, len, "input %s and index %s: index is larger on axis %d", b0, b1, d);
            return 1;
        }
    *out = ix;
    return 0;
}

/* Copies and checks the indices (an ad_index: at recording, and from ad_node_set_arg). */
static ad_status index_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    const ad_index *ix = arg;
    index_state *st = c->state;
    ad_shape a = node_shape(c->in[0]), is = index_shape_of(c->param);
    int axis = (int)c->param[0];
    int64_t n = ad_shape_size(&is), dim = a.dim[axis];
    if (!ix || (ix->n > 0 && !ix->index)) {
        snprintf(msg, len, "indices are NULL");
        return AD_ERR_NULL;
    }
    if (ix->n != n) {
        char b[96];
        snprintf(msg, len, "%lld indices given for an index of shape %s", (long long)ix->n,
                 ad_shape_str(&is, b, sizeof b));
        return AD_ERR_ARG;
    }
    for (int64_t k = 0; k < n; k++)
        if (ix->index[k] < -dim || ix->index[k] >= dim) {
            char b[96];
            snprintf(msg, len, "index %lld (position %lld) out of range for axis %d of %s", (long long)ix->index[k],
                     (long long)k, axis, ad_shape_str(&a, b, sizeof b));
            return AD_ERR_ARG;
        }
    /* a second call (ad_node_set_arg, for a replay) reuses the buffer */
    if (!st->idx && !(st->idx = ad_op_alloc(c, (size_t)(n ? n : 1) * sizeof *st->idx))) return AD_ERR_NOMEM;
    st->n = n;
    for (int64_t k = 0; k < n; k++) st->idx[k] = ix->index[k] < 0 ? ix->index[k] + dim : ix->index[k];
    return AD_OK;
}

/* ---- the kernel: between A (the indexed input's shape) and O (the op's output shape) ---- */

typedef enum { GATHER, GATHER_ADD, SCATTER_ADD } index_dir;

/* Rows of `inner` elements per index of a take: the work of ad_parallel_for. */
typedef struct {
    ad_dtype t;
    const int64_t *idx;
    int64_t n, an, inner, rows; /* rows = outer n */
    char *A, *O;
    bool add;
} take_rows;

/* Output rows [begin, end) (row r = o n + j) from input rows o an + idx[j]. */
static void take_range(void *ctx, int64_t begin, int64_t end)
{
    const take_rows *w = ctx;
    size_t es = ad_dtype_size(w->t), row = (size_t)w->inner * es;
    for (int64_t r = begin; r < end; r++) {
        int64_t o = r / w->n, j = r % w->n;
        const char *src = w->A + (size_t)(o * w->an + w->idx[j]) * row;
        char *dst = w->O + (size_t)r * row;
        if (w->add) add_into(w->t, dst, src, w->inner);
        else memcpy(dst, src, row);
    }
}

/* Columns [begin, end) of every row, added back to the input rows they came from: each
 * element's sum runs over the rows in order whatever the split, so the result does not depend
 * on the thread count. */
static void untake_range(void *ctx, int64_t begin, int64_t end)
{
    const take_rows *w = ctx;
    size_t es = ad_dtype_size(w->t), row = (size_t)w->inner * es;
    for (int64_t r = 0; r < w->rows; r++) {
        int64_t o = r / w->n, j = r % w->n;
        add_into(w->t, w->A + (size_t)(o * w->an + w->idx[j]) * row + (size_t)begin * es,
                 w->O + (size_t)r * row + (size_t)begin * es, end - begin);
    }
}

/* The op of node ref (index_select, embedding or gather) between A, of its input's shape, and
 * O, of its own: O (+)= A at the indices (GATHER, GATHER_ADD) or A += O there (SCATTER_ADD). */
static void index_move(const ad_node *ref, ad_dtype t, void *A, void *O, index_dir dir)
{
    const index_state *st = ref->x->saved;
    ad_shape a = node_shape(node_in(ref, 0)), o = node_shape(ref);
    int axis = (int)node_param(ref, 0);
    if (ad_shape_size(&o) == 0) return; /* then a's products may exceed int64 */
    /* o has elements, so every index is in range and a has elements too */
    if (is_take(ref->op)) {
        axis_split s = split_axis(&a, axis);
        take_rows w = {t, st->idx, st->n, s.n, s.inner, s.outer * st->n, A, O, dir == GATHER_ADD};
        /* a slice of at least 2^15 elements is worth a thread */
        if (dir != SCATTER_ADD) ad_parallel_for(w.rows, 1 + (1 << 15) / s.inner, take_range, &w);
        else ad_parallel_for(s.inner, 1 + (1 << 15) / w.rows, untake_range, &w);
        return;
    }
    /* gather: an odometer over the index's positions, with a's offset kept beside it */
    int64_t stride[AD_MAX_RANK], pos[AD_MAX_RANK] = {0}, off = 0, size = ad_shape_size(&o);
    for (int64_t d = a.rank - 1, s = 1; d >= 0; d--) stride[d] = s, s *= a.dim[d];
    for (int64_t i = 0; i < size; i++) {
        int64_t at = off + st->idx[i] * stride[axis];
        if (dir == SCATTER_ADD) store(A, t, at, load(A, t, at) + load(O, t, i));
        else store(O, t, i, dir == GATHER_ADD ? load(O, t, i) + load(A, t, at) : load(A, t, at));
        for (int d = o.rank - 1; d >= 0; d--) {
            if (d != axis) off += stride[d];
            if (++pos[d] < o.dim[d]) break;
            if (d != axis) off -= stride[d] * o.dim[d];
            pos[d] = 0;
        }
    }
}

/* ---- the gathers: the public ops, and index_take(gz, ref) (ref's gather applied to gz) ---- */

/* The node whose op and indices a gather follows: its own, or index_take's reference. */
static const ad_node *ref_of(const ad_op_ctx *c) { return c->nin == 2 ? c->in[1] : c->out; }

static void index_forward(const ad_op_ctx *c)
{
    index_move(ref_of(c), c->out->dtype, node_data(c->in[0]), node_data(c->out), GATHER);
}

static ad_status index_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    index_move(ref_of(c), c->out->dtype, GA, ad_node_grad_data(c->out), SCATTER_ADD);
    return AD_OK;
}

/* The same gather on the tangent. */
static ad_status index_jvp(const ad_op_ctx *c)
{
    void *TA = (void *)(uintptr_t)ad_tangent_data(c->graph, c->in[0]);
    void *T = TA ? tangent_buffer_to_fill(c->graph, c->out) : NULL;
    if (!T) return c->graph->status;
    index_move(ref_of(c), c->out->dtype, TA, T, GATHER);
    return AD_OK;
}

static ad_node *index_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_node *in[2] = {gy, c->out};
    return ad_apply(c->graph, OP_INDEX_ADD, in, 2, NULL, 0);
}

/* ---- index_add(gy, ref): ref's scatter-add; and index_take's shape ---- */

static int ref_check(const ad_op_ctx *c, const ad_shape *want, char *msg, size_t len)
{
    ad_node *ref = c->in[1];
    if (!is_take(ref->op) && ref->op != OP_GATHER) {
        snprintf(msg, len, "input 2 is a %s node, not index_select, embedding or gather",
                 op_entry_get(ref->op)->def.name);
        return 1;
    }
    ad_shape s = node_shape(c->in[0]);
    if (s.rank != want->rank || memcmp(s.dim, want->dim, sizeof s.dim[0] * (size_t)s.rank) != 0) {
        char b0[96], b1[96];
        snprintf(msg, len, "input %s, expected %s", ad_shape_str(&s, b0, sizeof b0), ad_shape_str(want, b1, sizeof b1));
        return 1;
    }
    return 0;
}

static int index_add_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape y = node_shape(c->in[1]);
    if (ref_check(c, &y, msg, len)) return 1;
    *out = node_shape(node_in(c->in[1], 0));
    return 0;
}

static int index_take_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape a = is_take(c->in[1]->op) || c->in[1]->op == OP_GATHER ? node_shape(node_in(c->in[1], 0)) : AD_SHAPE0;
    if (ref_check(c, &a, msg, len)) return 1;
    *out = node_shape(c->in[1]);
    return 0;
}

static void index_add_forward(const ad_op_ctx *c)
{
    ad_node *y = c->out;
    memset(node_data(y), 0, (size_t)node_size(y) * ad_dtype_size(y->dtype));
    index_move(c->in[1], y->dtype, node_data(y), node_data(c->in[0]), SCATTER_ADD);
}

/* The reference input gets nothing: its values are never read. */
static ad_status index_add_backward(const ad_op_ctx *c)
{
    bool assign;
    void *GY = grad_for_write(c->graph, c->in[0], true, &assign);
    if (!GY) return c->graph->status;
    index_move(c->in[1], c->out->dtype, ad_node_grad_data(c->out), GY, assign ? GATHER : GATHER_ADD);
    return AD_OK;
}

static ad_status index_add_jvp(const ad_op_ctx *c)
{
    void *TY = (void *)(uintptr_t)ad_tangent_data(c->graph, c->in[0]);
    void *T = TY ? ad_tangent_buffer(c->graph, c->out) : NULL;
    if (!T) return c->graph->status;
    index_move(c->in[1], c->out->dtype, T, TY, SCATTER_ADD);
    return AD_OK;
}

/* Each is the other's adjoint; the reference gets no gradient. */
static ad_node *index_pair_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    if (i == 1) return NULL;
    ad_node *in[2] = {gy, c->in[1]};
    return ad_apply(c->graph, c->out->op == OP_INDEX_ADD ? OP_INDEX_TAKE : OP_INDEX_ADD, in, 2, NULL, 0);
}

#define INDEX_PARAMS .nparam = 2 + AD_MAX_RANK, .nparam_min = 2, .param_names = "(axis, index rank, index dimensions)", \
                     .params = index_params
const op_entry op_index_select = {.def = {"index_select", 1, index_select_shape, index_forward, index_backward,
                                          "d/da[a[idx]] = the gradient added back at idx", index_jvp,
                                          sizeof(index_state), index_init, index_grad_graph},
                                  INDEX_PARAMS};
const op_entry op_embedding = {.def = {"embedding", 1, embedding_shape, index_forward, index_backward,
                                       "d/dW[W[ids]] = the gradient rows added back at ids", index_jvp,
                                       sizeof(index_state), index_init, index_grad_graph},
                               INDEX_PARAMS};
const op_entry op_gather = {.def = {"gather", 1, gather_shape, index_forward, index_backward,
                                    "d/da[gather(a, idx)] = the gradient scattered back at idx", index_jvp,
                                    sizeof(index_state), index_init, index_grad_graph},
                            INDEX_PARAMS};
const op_entry op_index_add = {.def = {"index_add", 2, index_add_shape, index_add_forward, index_add_backward,
                                       "d/dg[scatter_add(g)] = gather", index_add_jvp, 0, NULL,
                                       index_pair_grad_graph}};
const op_entry op_index_take = {.def = {"index_take", 2, index_take_shape, index_forward, index_backward,
                                        "d/dg[gather(g)] = scatter_add", index_jvp, 0, NULL,
                                        index_pair_grad_graph}};

/* The node of op at axis with the indices of shape is (embedding's shape rule judges its
 * weight and axis 0 itself). */
static ad_node *index_op(ad_graph *g, int op, ad_node *a, int axis, const ad_shape *is, const int64_t *index)
{
    const char *name = op_entry_get(op)->def.name;
    if (!check_inputs(g, name, &a, 1) || (op != OP_EMBEDDING && !check_axis(g, name, a, &axis))) return NULL;
    int64_t n = is->rank >= 0 && is->rank <= AD_MAX_RANK ? ad_shape_size(is) : -1;
    if (n < 0) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: invalid index shape (rank %d)", name, is->rank);
        return NULL;
    }
    double p[2 + AD_MAX_RANK] = {axis, is->rank};
    for (int d = 0; d < is->rank; d++) p[2 + d] = (double)is->dim[d];
    return ad_apply_with(g, op, &a, 1, p, 2 + is->rank, &(ad_index){index, n});
}

ad_node *ad_index_select(ad_graph *g, ad_node *a, int axis, const int64_t *index, int64_t n)
{
    if (!g) return NULL;
    if (n < 0) {
        ad_set_error(g, AD_ERR_ARG, "index_select: %lld indices", (long long)n);
        return NULL;
    }
    return index_op(g, OP_INDEX_SELECT, a, axis, &AD_SHAPE(n), index);
}

ad_node *ad_gather(ad_graph *g, ad_node *a, int axis, ad_shape index_shape, const int64_t *index)
{
    return g ? index_op(g, OP_GATHER, a, axis, &index_shape, index) : NULL;
}

ad_node *ad_embedding(ad_graph *g, ad_node *weight, ad_shape ids_shape, const int64_t *ids)
{
    return g ? index_op(g, OP_EMBEDDING, weight, 0, &ids_shape, ids) : NULL;
}
