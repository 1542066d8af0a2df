/* Selection: where(cond, a, b), the choice a replay makes again at new values. */
#include "../internal.h"

/* Three shapes broadcast to one output: per output element, the offsets into cond, a and b
 * (stride 0 along broadcast axes), walked as an odometer over the output's axes. */
typedef struct {
    int rank;
    int64_t dim[AD_MAX_RANK], idx[AD_MAX_RANK];
    int64_t stride[3][AD_MAX_RANK];
    int64_t off[3];
} where_iter;

static void where_iter_init(where_iter *w, const ad_shape *out, ad_node *const in[3])
{
    memset(w, 0, sizeof *w);
    w->rank = out->rank;
    for (int d = 0; d < out->rank; d++) w->dim[d] = out->dim[d];
    for (int k = 0; k < 3; k++) {
        ad_shape s = node_shape(in[k]);
        int64_t st = 1;
        for (int d = s.rank - 1; d >= 0; d--) {
            int od = d + out->rank - s.rank;
            w->stride[k][od] = s.dim[d] == 1 ? 0 : st;
            st *= s.dim[d];
        }
    }
}

/* To the next output element. */
static inline void where_iter_next(where_iter *w)
{
    for (int d = w->rank - 1; d >= 0; d--) {
        for (int k = 0; k < 3; k++) w->off[k] += w->stride[k][d];
        if (++w->idx[d] < w->dim[d]) return;
        for (int k = 0; k < 3; k++) w->off[k] -= w->stride[k][d] * w->dim[d];
        w->idx[d] = 0;
    }
}

static int where_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s[3] = {node_shape(c->in[0]), node_shape(c->in[1]), node_shape(c->in[2])}, ab;
    if (broadcast_shapes(&s[1], &s[2], &ab) && broadcast_shapes(&s[0], &ab, out)) return 0;
    char b0[96], b1[96], b2[96];
    snprintf(msg, len, "cond %s, a %s and b %s do not broadcast", ad_shape_str(&s[0], b0, sizeof b0),
             ad_shape_str(&s[1], b1, sizeof b1), ad_shape_str(&s[2], b2, sizeof b2));
    return 1;
}

static void where_forward(const ad_op_ctx *c)
{
    ad_node *y = c->out;
    ad_dtype t = y->dtype;
    const void *C = node_data(c->in[0]), *A = node_data(c->in[1]), *B = node_data(c->in[2]);
    void *Y = node_data(y);
    where_iter w;
    ad_shape s = node_shape(y);
    where_iter_init(&w, &s, c->in);
    for (int64_t i = 0; i < node_size(y); i++, where_iter_next(&w))
        store(Y, t, i, load(C, t, w.off[0]) != 0 ? load(A, t, w.off[1]) : load(B, t, w.off[2]));
}

/* Each element's gradient goes to the input chosen there, summed where that input was
 * broadcast; cond gets none. */
static ad_status where_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    ad_node *y = c->out;
    ad_dtype t = y->dtype;
    void *GA = ad_input_grad_buffer(g, c->in[1]);
    void *GB = ad_input_grad_buffer(g, c->in[2]);
    if (g->status) return g->status;
    const void *C = node_data(c->in[0]), *G = ad_node_grad_data(y);
    where_iter w;
    ad_shape s = node_shape(y);
    where_iter_init(&w, &s, c->in);
    for (int64_t i = 0; i < node_size(y); i++, where_iter_next(&w)) {
        bool take_a = load(C, t, w.off[0]) != 0;
        void *D = take_a ? GA : GB;
        int64_t j = w.off[take_a ? 1 : 2];
        if (D) store(D, t, j, load(D, t, j) + load(G, t, i));
    }
    return AD_OK;
}

static ad_status where_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    ad_node *y = c->out;
    ad_dtype t = y->dtype;
    const void *TA = ad_tangent_data(g, c->in[1]), *TB = ad_tangent_data(g, c->in[2]);
    void *T = ad_tangent_buffer(g, y);
    if (!T) return g->status;
    const void *C = node_data(c->in[0]);
    where_iter w;
    ad_shape s = node_shape(y);
    where_iter_init(&w, &s, c->in);
    for (int64_t i = 0; i < node_size(y); i++, where_iter_next(&w)) {
        bool take_a = load(C, t, w.off[0]) != 0;
        const void *TX = take_a ? TA : TB;
        store(T, t, i, TX ? load(TX, t, w.off[take_a ? 1 : 2]) : 0.0);
    }
    return AD_OK;
}

/* where(cond, gy, 0) for a, where(cond, 0, gy) for b, each summed to its input's shape. */
static ad_node *where_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    if (i == 0) return NULL;
    ad_graph *g = c->graph;
    ad_node *zero = scalar_const_like(g, gy, 0);
    ad_node *d = zero ? ad_where(g, c->in[0], i == 1 ? gy : zero, i == 1 ? zero : gy) : NULL;
    ad_shape to = node_shape(c->in[i]);
    return d ? sum_to_shape(g, d, &to) : NULL;
}

const op_entry op_where = {.def = {"where", 3, where_rule, where_forward, where_backward,
                                   "d/da[where(c, a, b)] = [c], d/db = [not c]", where_jvp, 0, NULL,
                                   where_grad_graph}};

ad_node *ad_where(ad_graph *g, ad_node *cond, ad_node *a, ad_node *b)
{
    ad_node *in[3] = {cond, a, b};
    return ad_apply(g, OP_WHERE, in, 3, NULL, 0);
}
