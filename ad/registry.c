/* The op registry: one table for the built-in primitives and the user's ops, and ad_apply,
 * the generic way to record any of them. */
#include "internal.h"
#include <stdlib.h>

static void leaf_forward(const ad_op_ctx *c) { (void)c; }

static const op_entry op_const = {.def = {"const", 0, NULL, leaf_forward, NULL, "a constant: no gradient"}};
static const op_entry op_var = {.def = {"var", 0, NULL, leaf_forward, NULL, "a variable: its gradient is the result"}};
static const op_entry op_param = {.def = {"param", 0, NULL, leaf_forward, NULL, "a parameter: its gradient accumulates in its buffer"}};

/* Each family file defines its entries; this list ties them to the ids of internal.h. */
extern const op_entry op_add, op_sub, op_mul, op_div, op_pow, op_max, op_min, op_neg, op_recip,
    op_exp, op_log, op_sqrt, op_sin, op_cos, op_tan, op_tanh, op_sigmoid, op_relu,
    op_leaky_relu, op_abs, op_sum, op_mean, op_sum_axis, op_mean_axis, op_matmul,
    op_transpose, op_reshape, op_broadcast_to, op_slice, op_concat, op_softmax,
    op_log_softmax, op_cross_entropy, op_mse, op_mae, op_dropout, op_linear;

static const op_entry *const builtin[OP_BUILTIN_COUNT] = {
    [OP_CONST] = &op_const, [OP_VAR] = &op_var, [OP_PARAM] = &op_param,
    [OP_ADD] = &op_add, [OP_SUB] = &op_sub, [OP_MUL] = &op_mul, [OP_DIV] = &op_div,
    [OP_POW] = &op_pow, [OP_MAX] = &op_max, [OP_MIN] = &op_min, [OP_NEG] = &op_neg,
    [OP_RECIP] = &op_recip, [OP_EXP] = &op_exp, [OP_LOG] = &op_log, [OP_SQRT] = &op_sqrt,
    [OP_SIN] = &op_sin, [OP_COS] = &op_cos, [OP_TAN] = &op_tan, [OP_TANH] = &op_tanh,
    [OP_SIGMOID] = &op_sigmoid, [OP_RELU] = &op_relu, [OP_LEAKY_RELU] = &op_leaky_relu,
    [OP_ABS] = &op_abs, [OP_SUM] = &op_sum, [OP_MEAN] = &op_mean,
    [OP_SUM_AXIS] = &op_sum_axis, [OP_MEAN_AXIS] = &op_mean_axis, [OP_MATMUL] = &op_matmul,
    [OP_TRANSPOSE] = &op_transpose, [OP_RESHAPE] = &op_reshape,
    [OP_BROADCAST_TO] = &op_broadcast_to, [OP_SLICE] = &op_slice, [OP_CONCAT] = &op_concat,
    [OP_SOFTMAX] = &op_softmax, [OP_LOG_SOFTMAX] = &op_log_softmax,
    [OP_CROSS_ENTROPY] = &op_cross_entropy, [OP_MSE] = &op_mse, [OP_MAE] = &op_mae,
    [OP_DROPOUT] = &op_dropout, [OP_LINEAR] = &op_linear,
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

int ad_op_register(const ad_op_def *def)
{
    if (!def || !def->name || !def->name[0] || !def->forward) return -1;
    if (def->arity != AD_VARIADIC && (def->arity < 0 || def->arity > 64)) return -1;
    if (ad_op_find(def->name) >= 0) return -1;
    if (OP_BUILTIN_COUNT + nuser >= UINT16_MAX) return -1;
    if (nuser == user_cap) {
        int cap = user_cap ? 2 * user_cap : 16;
        op_entry **nu = ad_xrealloc(user, (size_t)cap * sizeof *nu);
        if (!nu) return -1;
        user = nu;
        user_cap = cap;
    }
    op_entry *e = ad_xcalloc(1, sizeof *e);
    if (!e) return -1;
    e->def = *def;
    user[nuser] = e;
    return OP_BUILTIN_COUNT + nuser++;
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
    if (!g) return NULL;
    const op_entry *e = op_entry_get(op);
    if (!e || op < OP_ADD) {
        ad_set_error(g, AD_ERR_ARG, "apply: no op with id %d", op);
        return NULL;
    }
    const char *name = e->def.name;
    if (op == OP_CROSS_ENTROPY || op == OP_DROPOUT) {
        ad_set_error(g, AD_ERR_ARG, "%s: keeps labels or a mask; call ad_%s", name, name);
        return NULL;
    }
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
    if (!check_inputs(g, name, in, nin)) return NULL;
    ad_op_ctx c = {g, NULL, nin, in, param, nparam};
    ad_shape shape;
    char msg[256] = "";
    if ((e->def.shape ? e->def.shape : broadcast_all)(&c, &shape, msg, sizeof msg)) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: %s", name, msg);
        return NULL;
    }
    if (shape.rank < 0 || shape.rank > AD_MAX_RANK) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: shape rule gave rank %d", name, shape.rank);
        return NULL;
    }
    ad_node *n = node_new(g, op, nin ? (ad_dtype)in[0]->dtype : AD_F64, &shape, in, nin);
    if (!n || !node_set_params(g, n, param, nparam)) return NULL;
    c.out = n;
    c.param = n->x ? n->x->param_v : NULL;
    e->def.forward(&c);
    return g->anomaly ? anomaly_forward(g, n) : n;
}

void *grad_for_write(ad_graph *g, ad_node *n, bool can_assign, bool *assign)
{
    *assign = false;
    if (!g || !n || !(n->flags & F_NEEDS_GRAD)) return NULL;
    if (n->flags & F_SCALAR) return &n->g;
    ad_ext *x = n->x;
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

void *ad_grad_buffer(ad_graph *g, ad_node *n)
{
    bool assign;
    return grad_for_write(g, n, false, &assign);
}
