/* The op registry: one table for the built-in primitives and the user's ops, and ad_apply,
 * the generic way to record any of them. */
#include "internal.h"
#include <stdlib.h>

static void leaf_forward(const ad_op_ctx *c) { (void)c; }

static const op_entry op_const = {.def = {.name = "const", .forward = leaf_forward, .local_grad = "a constant: no gradient"}};
static const op_entry op_var = {.def = {.name = "var", .forward = leaf_forward, .local_grad = "a variable: its gradient is the result"}};
static const op_entry op_param = {.def = {.name = "param", .forward = leaf_forward, .local_grad = "a parameter: its gradient accumulates in its buffer"}};

/* Each family file defines its entries as op_NAME; the lists of ad_ew.h and internal.h tie
 * them to their ids. */
#define DECLARE_(ID, name, ...) extern const op_entry op_##name;
#define DECLARE_TENSOR_(ID, name) extern const op_entry op_##name;
AD_EW_BINARY(DECLARE_) AD_EW_UNARY(DECLARE_) AD_EW_UNARY_P(DECLARE_) AD_TENSOR_OPS(DECLARE_TENSOR_)

#define ENTRY_(ID, name, ...) [OP_##ID] = &op_##name,
#define ENTRY_TENSOR_(ID, name) [OP_##ID] = &op_##name,
static const op_entry *const builtin[OP_BUILTIN_COUNT] = {
    [OP_CONST] = &op_const, [OP_VAR] = &op_var, [OP_PARAM] = &op_param,
    AD_EW_BINARY(ENTRY_) AD_EW_UNARY(ENTRY_) AD_EW_UNARY_P(ENTRY_) AD_TENSOR_OPS(ENTRY_TENSOR_)
};

/* User ops: a growing array; entries never move once handed out (ids index it). */
static op_entry **user;
static int nuser, user_cap;

const op_entry *op_entry_get(int id)
{
    if (id >= 0 && id < OP_BUILTIN_COUNT) return builtin[id];
    id -= OP_BUILTIN_COUNT;
    return id >= 0 && id < nuser ? user[id] : NULL;
}

int ad_op_count(void) { return OP_BUILTIN_COUNT + nuser; }

const ad_op_def *ad_op_get(int id)
{
    const op_entry *e = op_entry_get(id);
    return e ? &e->def : NULL;
}

int ad_op_find(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < ad_op_count(); i++)
        if (strcmp(op_entry_get(i)->def.name, name) == 0) return i;
    return -1;
}

/* Adds a copy of e under a new id, or returns -1. */
static int add_entry(const op_entry *e)
{
    if (!e->def.name || !e->def.name[0] || !e->def.forward) return -1;
    if (e->def.arity != AD_VARIADIC && (e->def.arity < 0 || e->def.arity > 64)) return -1;
    if (ad_op_find(e->def.name) >= 0) return -1;
    if (OP_BUILTIN_COUNT + nuser >= UINT16_MAX) return -1;
    if (nuser == user_cap) {
        int cap = user_cap ? 2 * user_cap : 16;
        op_entry **nu = ad_xrealloc(user, (size_t)cap * sizeof *nu);
        if (!nu) return -1;
        user = nu;
        user_cap = cap;
    }
    op_entry *c = ad_xmalloc(sizeof *c);
    if (!c) return -1;
    *c = *e;
    user[nuser] = c;
    return OP_BUILTIN_COUNT + nuser++;
}

int ad_op_register(const ad_op_def *def)
{
    if (!def) return -1;
    op_entry e = {.def = *def, .any_params = true};
    return add_entry(&e);
}

int ad_op_register_unary(const ad_unary_def *d)
{
    if (!d || !d->f || !d->df) return -1;
    const op_entry *like = op_entry_get(OP_EXP); /* the elementwise engine's callbacks */
    op_entry e = {.def = like->def, .f1 = d->f, .d1 = d->df, .dd1 = d->d2f, .nparam = 1, .param_names = "(p)"};
    e.def.name = d->name;
    e.def.local_grad = d->local_grad;
    return add_entry(&e);
}

int ad_op_register_binary(const ad_binary_def *d)
{
    if (!d || !d->f || !d->da || !d->db) return -1;
    const op_entry *like = op_entry_get(OP_ADD);
    op_entry e = {.def = like->def, .f2 = d->f, .d2a = d->da, .d2b = d->db, .d2aa = d->daa,
                  .d2ab = d->dab, .d2bb = d->dbb};
    e.def.name = d->name;
    e.def.local_grad = d->local_grad;
    return add_entry(&e);
}

bool ad_op_is_elementwise(int id, int *arity, int *nparam)
{
    const op_entry *e = op_entry_get(id);
    if (!e || !op_is_elementwise(e)) return false;
    if (arity) *arity = e->def.arity;
    if (nparam) *nparam = e->nparam;
    return true;
}

void *ad_op_alloc(const ad_op_ctx *c, size_t bytes)
{
    if (!c || !c->graph) return NULL;
    void *p = arena_alloc(c->graph, bytes ? bytes : 1);
    op_block *b = p && c->out && c->out->x ? arena_alloc(c->graph, sizeof *b) : NULL;
    if (!p || (c->out && c->out->x && !b)) {
        ad_set_error(c->graph, AD_ERR_NOMEM, "%s: out of memory for %zu bytes of state",
                     c->out ? op_entry_get(c->out->op)->def.name : "op", bytes);
        return NULL;
    }
    if (b) { /* listed, so that a workspace (ad_graph_clone) can copy it */
        *b = (op_block){c->out->x->blocks, p, bytes ? bytes : 1};
        c->out->x->blocks = b;
    }
    return p;
}

bool broadcast_shapes(const ad_shape *a, const ad_shape *b, ad_shape *out)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dim[ia] : 1, db = ib >= 0 ? b->dim[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        out->dim[i] = da == 1 ? db : da;
    }
    return true;
}

/* Elementwise shape rule for ops without one: every input broadcasts to a common shape. */
static int broadcast_all(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    *out = AD_SHAPE0;
    for (int i = 0; i < c->nin; i++) {
        ad_shape s = node_shape(c->in[i]), o = *out;
        if (!broadcast_shapes(&o, &s, out)) {
            char b0[96], b1[96];
            snprintf(msg, len, "%s and %s do not broadcast", ad_shape_str(&o, b0, sizeof b0),
                     ad_shape_str(&s, b1, sizeof b1));
            return 1;
        }
    }
    return 0;
}

ad_node *ad_apply(ad_graph *g, int op, ad_node *const *in, int nin, const double *param,
                  int nparam)
{
    return ad_apply_with(g, op, in, nin, param, nparam, NULL);
}

ad_node *ad_apply_with(ad_graph *g, int op, ad_node *const *in, int nin, const double *param,
                       int nparam, const void *arg)
{
    if (!g) return NULL;
    const op_entry *e = op_entry_get(op);
    if (!e || op < OP_FIRST_COMPUTED) {
        ad_set_error(g, AD_ERR_ARG, "apply: no op with id %d", op);
        return NULL;
    }
    const char *name = e->def.name;
    if (nin > 0 && !in) {
        ad_set_error(g, AD_ERR_NULL, "%s: input array is NULL", name);
        return NULL;
    }
    if (e->def.arity == AD_VARIADIC && nin < 0) {
        ad_set_error(g, AD_ERR_ARG, "%s: given %d inputs", name, nin);
        return NULL;
    }
    if (e->def.arity != AD_VARIADIC && nin != e->def.arity) {
        ad_set_error(g, AD_ERR_ARG, "%s: takes %d inputs, given %d", name, e->def.arity, nin);
        return NULL;
    }
    if (nparam < 0 || (nparam && !param)) {
        ad_set_error(g, AD_ERR_ARG, "%s: bad parameter list", name);
        return NULL;
    }
    if (!e->any_params && (nparam < e->nparam_min || nparam > e->nparam)) {
        char takes[32];
        if (e->nparam_min == e->nparam) snprintf(takes, sizeof takes, "%d", e->nparam);
        else snprintf(takes, sizeof takes, "%d to %d", e->nparam_min, e->nparam);
        ad_set_error(g, AD_ERR_ARG, "%s: takes %s parameter%s%s%s, given %d", name, takes,
                     e->nparam == 1 ? "" : "s", e->param_names ? " " : "",
                     e->param_names ? e->param_names : "", nparam);
        return NULL;
    }
    if (!check_inputs(g, name, in, nin)) return NULL;
    if (op_is_elementwise(e) && nparam == 0 && (in[0]->flags & in[nin - 1]->flags & F_SCALAR))
        return ew_scalar_apply(g, op, in[0], nin == 2 ? in[1] : NULL);
    ad_op_ctx c = {g, NULL, nin, in, param, nparam, NULL};
    ad_shape shape;
    char msg[256] = "";
    if (e->params && e->params(&c, msg, sizeof msg)) {
        ad_set_error(g, AD_ERR_ARG, "%s: %s", name, msg);
        return NULL;
    }
    if ((e->def.shape ? e->def.shape : broadcast_all)(&c, &shape, msg, sizeof msg)) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: %s", name, msg);
        return NULL;
    }
    if (shape.rank < 0 || shape.rank > AD_MAX_RANK) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: shape rule gave rank %d", name, shape.rank);
        return NULL;
    }
    ad_node *n = node_new(g, op, nin ? (ad_dtype)in[0]->dtype : AD_F64, &shape, in, nin);
    if (!n) return NULL;
    if (op_no_grad(op)) n->flags &= (uint8_t)~F_NEEDS_GRAD;
    if (!node_set_params(g, n, param, nparam)) goto fail;
    c.out = n;
    c.param = n->x ? n->x->param_v : NULL;
    if (e->def.state_size || e->def.init) {
        ad_ext *x = node_ext(g, n);
        if (!x) goto fail;
        if (e->def.state_size) {
            if (!(x->saved = ad_op_alloc(&c, e->def.state_size))) goto fail;
            memset(x->saved, 0, e->def.state_size);
        }
        c.state = x->saved;
        msg[0] = 0;
        ad_status st = e->def.init ? e->def.init(&c, arg, msg, sizeof msg) : AD_OK;
        if (st) {
            /* an initialiser whose ad_op_alloc failed may leave msg empty: the graph holds
             * "out of memory" then (unless an earlier error already stands) */
            if (msg[0]) ad_set_error(g, st, "%s: %s", name, msg);
            else ad_set_error(g, st, "%s: out of memory for its state", name);
            goto fail;
        }
    }
    e->def.forward(&c);
    return g->anomaly ? anomaly_forward(g, n) : n;
fail:
    node_discard(g, n);
    return NULL;
}

bool param_int(double p, double lo, double hi, const char *what, char *msg, size_t len)
{
    if (p >= lo && p <= hi && p == floor(p)) return true;
    snprintf(msg, len, "%s %g is not an integer in [%.0f, %.0f]", what, p, lo, hi);
    return false;
}

int params_axis(const ad_op_ctx *c, char *msg, size_t len)
{
    return !param_int(c->param[0], 0, AD_MAX_RANK - 1, "axis", msg, len);
}

axis_split split_axis(const ad_shape *s, int axis)
{
    axis_split r = {1, s->dim[axis], 1};
    int64_t size = ad_shape_size(s);
    for (int i = 0; i < s->rank; i++) {
        if (i == axis) continue;
        int64_t *p = i < axis ? &r.outer : &r.inner, d = s->dim[i];
        if (d != 0 && *p > INT64_MAX / d) return (axis_split){0, r.n, 0}; /* only when size is 0 */
        *p *= d;
    }
    if (size == 0 && r.n != 0) r.outer = r.inner = 0;
    return r;
}

void *grad_for_write(ad_graph *g, ad_node *n, bool can_assign, bool *assign)
{
    *assign = false;
    if (!g || !n || !(n->flags & F_NEEDS_GRAD)) return NULL;
    if (n->flags & F_SCALAR) { /* reached by the sweep: its backward runs even if g stays 0 */
        n->flags |= F_GRAD_LIVE;
        return &n->g;
    }
    ad_ext *x = n->x;
    if (x->param && x->param->handed) x->param->handed = -1; /* added to after it was handed */
    if (x->param && x->param->grad_zero) { /* zeroed lazily: this write is the first */
        if (can_assign) *assign = true;
        else memset(x->grad, 0, (size_t)x->size * ad_dtype_size(n->dtype));
        x->param->grad_zero = false;
        return x->grad;
    }
    if (!(n->flags & F_GRAD_LIVE)) {
        size_t bytes = (size_t)x->size * ad_dtype_size(n->dtype);
        if (!x->grad && !(x->grad = arena_alloc(g, bytes))) {
            ad_set_error(g, AD_ERR_NOMEM, "backward: out of memory for the gradient of %s node %u",
                         op_entry_get(n->op)->def.name, n->id);
            return NULL;
        }
        if (can_assign) *assign = true;
        else memset(x->grad, 0, bytes);
        n->flags |= F_GRAD_LIVE;
    }
    return x->grad;
}

void *ad_input_grad_buffer(ad_graph *g, ad_node *n)
{
    bool assign;
    return grad_for_write(g, n, false, &assign);
}
