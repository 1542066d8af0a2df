/* Normalisation: layer norm and batch norm, as torch.nn.functional's.
 *
 * Both normalise groups of x's elements by the group's mean and biased variance, y = (x - mean)
 * / sqrt(var + eps).  x is seen as [A, G, B], group g being the elements x[a, g, b] for every a
 * and b: layer norm's groups are the rows of the normalised axes (A = 1, B their size), batch
 * norm's the channels (A = N, G = C, B the spatial size).  The node is that normalisation only;
 * weight and bias are applied after it by the broadcasting mul and add, whose rules hold
 * already.  Batch norm in evaluation mode normalises by the running statistics, an affine map
 * made of ops. */
#include "../internal.h"
#include "../ad_parallel.h"

typedef struct { int64_t A, G, B; } groups;

/* What a node keeps from its last forward pass, per group: mean, biased variance and
 * 1/sqrt(var + eps); batch norm's running statistics (NULL: not tracked). */
typedef struct {
    double *mean, *var, *rstd;
    ad_tensor *running_mean, *running_var;
} norm_state;

/* batch_norm's argument to ad_apply_with. */
typedef struct { ad_tensor *mean, *var; } running_stats;

/* The groups of x for a node of op (whose first parameter is layer norm's axis count).  A
 * tensor with no elements has no groups (its dimensions' products might not fit). */
static groups groups_of(int op, const ad_shape *s, const double *param)
{
    if (ad_shape_size(s) == 0) return (groups){0, 0, 0};
    groups p = {1, 1, 1};
    if (op == OP_LAYER_NORM) {
        int first = s->rank - (int)param[0];
        for (int d = 0; d < s->rank; d++) *(d < first ? &p.G : &p.B) *= s->dim[d];
    } else {
        p.A = s->dim[0], p.G = s->dim[1];
        for (int d = 2; d < s->rank; d++) p.B *= s->dim[d];
    }
    return p;
}

static groups node_groups(const ad_op_ctx *c)
{
    ad_shape s = node_shape(c->in[0]);
    return groups_of(c->out->op, &s, c->param);
}

/* The statement after e for each element e of group g, a's and then b's order. */
#define FOR_GROUP(p, g, e, ...)                                                                 \
    for (int64_t a_ = 0; a_ < (p)->A; a_++)                                                     \
        for (int64_t e = (a_ * (p)->G + (g)) * (p)->B, end_ = e + (p)->B; e < end_; e++) {      \
            __VA_ARGS__;                                                                        \
        }

/* Groups split across threads, a slice worth at least ~64K element visits. */
static int64_t group_grain(const groups *p)
{
    int64_t m = p->A * p->B;
    return m >= 1 << 14 ? 1 : (1 << 14) / (m ? m : 1);
}

/* ---- the kernels: normalisation, and its Jacobian applied to a vector ---- */

typedef struct {
    groups p;
    ad_dtype t;
    const void *X;
    void *Y;
    norm_state *st;
    double eps;
} normalise_job;

/* Sums in double whatever the dtype; the variance by a second pass over x - mean, which
 * loses nothing to cancellation. */
static void normalise_groups(void *ctx, int64_t g0, int64_t g1)
{
    const normalise_job *j = ctx;
    const groups *p = &j->p;
    double m = (double)(p->A * p->B);
    for (int64_t g = g0; g < g1; g++) {
        double s = 0, v = 0;
        FOR_GROUP(p, g, e, s += load(j->X, j->t, e))
        double mean = s / m;
        FOR_GROUP(p, g, e, double d = load(j->X, j->t, e) - mean; v += d * d)
        double var = v / m, rstd = 1 / sqrt(var + j->eps);
        FOR_GROUP(p, g, e, store(j->Y, j->t, e, (load(j->X, j->t, e) - mean) * rstd))
        j->st->mean[g] = mean, j->st->var[g] = var, j->st->rstd[g] = rstd;
    }
}

static void normalise(const ad_op_ctx *c, double eps)
{
    normalise_job j = {node_groups(c), (ad_dtype)c->out->dtype, node_data(c->in[0]), node_data(c->out), c->state, eps};
    ad_parallel_for(j.p.G, group_grain(&j.p), normalise_groups, &j);
}

/* The Jacobian of y = normalise(x) is, per group of m elements, rstd (I - 1/m - y y^T / m):
 * symmetric, so the reverse rule (V the output's gradient, OUT += J V) and the forward rule (V
 * the input's tangent, OUT = J V) are the same product. */
typedef struct {
    groups p;
    ad_dtype t;
    const void *Y, *V;
    void *OUT;
    const double *rstd;
    bool accumulate;
} jacobian_job;

static void jacobian_groups(void *ctx, int64_t g0, int64_t g1)
{
    const jacobian_job *j = ctx;
    const groups *p = &j->p;
    double m = (double)(p->A * p->B);
    for (int64_t g = g0; g < g1; g++) {
        double sv = 0, syv = 0;
        FOR_GROUP(p, g, e, double v = load(j->V, j->t, e); sv += v; syv += load(j->Y, j->t, e) * v)
        double mv = sv / m, myv = syv / m, r = j->rstd[g];
        FOR_GROUP(p, g, e, {
            double d = r * (load(j->V, j->t, e) - mv - load(j->Y, j->t, e) * myv);
            store(j->OUT, j->t, e, j->accumulate ? load(j->OUT, j->t, e) + d : d);
        })
    }
}

static void jacobian_apply(const ad_op_ctx *c, const void *V, void *OUT, bool accumulate)
{
    const norm_state *st = c->state;
    jacobian_job j = {node_groups(c), (ad_dtype)c->out->dtype, node_data(c->out), V, OUT, st->rstd, accumulate};
    ad_parallel_for(j.p.G, group_grain(&j.p), jacobian_groups, &j);
}

static ad_status norm_backward(const ad_op_ctx *c)
{
    void *GX = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GX) return c->graph->status;
    jacobian_apply(c, ad_node_grad_data(c->out), GX, true);
    return AD_OK;
}

static ad_status norm_jvp(const ad_op_ctx *c)
{
    const void *TX = ad_tangent_data(c->graph, c->in[0]);
    if (!TX) return AD_OK;
    void *T = tangent_buffer_to_fill(c->graph, c->out); /* jacobian_apply writes it all */
    if (!T) return c->graph->status;
    jacobian_apply(c, TX, T, false);
    return AD_OK;
}

/* The mean of each group of v (seen as [A, G, B]), as [1, G, 1]. */
static ad_node *group_mean(ad_graph *g, ad_node *v)
{
    return ad_mean_axis(g, ad_mean_axis(g, v, 2, true), 0, true);
}

/* The reverse rule with ops: rstd (gy - mean(gy) - y mean(gy y)) per group, rstd made from x
 * again, so that the result can be differentiated to any order.  Batch norm's running
 * statistics are not touched: the ops are not a batch_norm node. */
static ad_node *norm_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_node *x = c->in[0];
    groups p = node_groups(c);
    ad_shape s3 = AD_SHAPE(p.A, p.G, p.B), sx = node_shape(x);
    ad_node *x3 = ad_reshape(g, x, s3), *y3 = ad_reshape(g, c->out, s3), *g3 = ad_reshape(g, gy, s3);
    ad_node *d = ad_sub(g, x3, group_mean(g, x3));
    ad_node *rstd = ad_recip(g, ad_sqrt(g, ad_add_scalar(g, group_mean(g, ad_mul(g, d, d)), c->param[1])));
    ad_node *dx = ad_sub(g, ad_sub(g, g3, group_mean(g, g3)), ad_mul(g, y3, group_mean(g, ad_mul(g, g3, y3))));
    return ad_reshape(g, ad_mul(g, rstd, dx), sx);
}

/* The state's per-group arrays, made once (ad_node_set_arg runs init again). */
static ad_status state_alloc(const ad_op_ctx *c)
{
    norm_state *st = c->state;
    ad_shape s = node_shape(c->in[0]);
    int64_t G = groups_of(c->out->op, &s, c->param).G;
    if (!st->mean) {
        double *m = ad_op_alloc(c, (size_t)(3 * G + 1) * sizeof *m);
        if (!m) return AD_ERR_NOMEM;
        st->mean = m, st->var = m + G, st->rstd = m + 2 * G;
    }
    return AD_OK;
}

/* eps: a number >= 0, as torch takes it. */
static bool eps_ok(double eps, char *msg, size_t len)
{
    if (eps >= 0 && isfinite(eps)) return true;
    snprintf(msg, len, "eps %g is not a finite number >= 0", eps);
    return false;
}

/* ---- layer norm: parameters (axes, eps) ---- */

static int ln_params(const ad_op_ctx *c, char *msg, size_t len)
{
    return !param_int(c->param[0], 1, AD_MAX_RANK, "axes", msg, len) || !eps_ok(c->param[1], msg, len);
}

static int ln_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    if ((int)c->param[0] > s.rank) {
        char b[96];
        snprintf(msg, len, "x %s has fewer than %d axes to normalise", ad_shape_str(&s, b, sizeof b), (int)c->param[0]);
        return 1;
    }
    *out = s;
    return 0;
}

static ad_status ln_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    (void)arg, (void)msg, (void)len;
    return state_alloc(c);
}

static void ln_forward(const ad_op_ctx *c) { normalise(c, c->param[1]); }

const op_entry op_layer_norm = {.def = {"layer_norm", 1, ln_shape, ln_forward, norm_backward,
                                        "d/dx[(x - mean) rstd] = rstd (I - 1/n - y y^T/n) per row", norm_jvp,
                                        sizeof(norm_state), ln_init, norm_grad_graph},
                                .nparam = 2, .nparam_min = 2, .param_names = "(axes, eps)", .params = ln_params};

/* ---- batch norm in training mode: parameters (momentum, eps) ---- */

static int bn_params(const ad_op_ctx *c, char *msg, size_t len)
{
    if (!(c->param[0] >= 0 && c->param[0] <= 1)) {
        snprintf(msg, len, "momentum %g is not in [0, 1]", c->param[0]);
        return 1;
    }
    return !eps_ok(c->param[1], msg, len);
}

/* x [N, C, ...] with more than one value per channel: a variance needs two. */
static int bn_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    char b[96];
    if (s.rank < 2) {
        snprintf(msg, len, "x %s: expected [N,C] or [N,C,...]", ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    groups p = groups_of(OP_BATCH_NORM, &s, c->param);
    if (p.A * p.B == 1) {
        snprintf(msg, len, "x %s: expected more than 1 value per channel when training", ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    *out = s;
    return 0;
}

/* Running statistics: both or neither, each [C] of x's dtype. */
static bool running_ok(const ad_node *x, const running_stats *r, char *msg, size_t len)
{
    if (!r->mean != !r->var) {
        snprintf(msg, len, "running_mean and running_var: give both or neither");
        return false;
    }
    ad_shape s = node_shape(x);
    const ad_tensor *t[2] = {r->mean, r->var};
    for (int k = 0; k < 2 && t[k]; k++)
        if (t[k]->shape.rank != 1 || t[k]->shape.dim[0] != s.dim[1] || t[k]->dtype != x->dtype) {
            char b0[96], b1[96];
            snprintf(msg, len, "%s %s %s for x %s %s: expected [%lld] of x's dtype", k ? "running_var" : "running_mean",
                     ad_dtype_name(t[k]->dtype), ad_shape_str(&t[k]->shape, b0, sizeof b0), ad_dtype_name(x->dtype),
                     ad_shape_str(&s, b1, sizeof b1), (long long)s.dim[1]);
            return false;
        }
    return true;
}

static ad_status bn_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    const running_stats none = {NULL, NULL}, *r = arg ? arg : &none;
    if (!running_ok(c->in[0], r, msg, len)) return AD_ERR_ARG;
    norm_state *st = c->state;
    st->running_mean = r->mean, st->running_var = r->var;
    return state_alloc(c);
}

/* Normalises by the batch's statistics and moves the running ones toward them: once per
 * forward pass, so once when recorded and once per replay.  The running variance is the
 * unbiased one, var m / (m - 1), as PyTorch's. */
static void bn_forward(const ad_op_ctx *c)
{
    normalise(c, c->param[1]);
    const norm_state *st = c->state;
    if (!st->running_mean) return;
    groups p = node_groups(c);
    double mom = c->param[0], m = (double)(p.A * p.B);
    ad_dtype t = st->running_mean->dtype;
    for (int64_t g = 0; g < p.G; g++) {
        void *RM = st->running_mean->data, *RV = st->running_var->data;
        store(RM, t, g, (1 - mom) * load(RM, t, g) + mom * st->mean[g]);
        store(RV, t, g, (1 - mom) * load(RV, t, g) + mom * st->var[g] * m / (m - 1));
    }
}

const op_entry op_batch_norm = {.def = {"batch_norm", 1, bn_shape, bn_forward, norm_backward,
                                        "d/dx[(x - mean) rstd] = rstd (I - 1/m - y y^T/m) per channel", norm_jvp,
                                        sizeof(norm_state), bn_init, norm_grad_graph},
                                .nparam = 2, .nparam_min = 2, .param_names = "(momentum, eps)", .params = bn_params};

const char *norm_not_clonable(const ad_node *n)
{
    if (n->op != OP_BATCH_NORM || !((const norm_state *)n->x->saved)->running_mean) return NULL;
    return "batch_norm in training writes its running statistics, tensors that every copy would share";
}

/* ---- the public functions: the normalisation, then weight and bias ---- */

/* y * weight + bias, weight and bias (either may be NULL) reshaped to `to` to broadcast. */
static ad_node *affine(ad_graph *g, ad_node *y, ad_node *weight, ad_node *bias, ad_shape to)
{
    if (y && weight) y = ad_mul(g, y, ad_reshape(g, weight, to));
    if (y && bias) y = ad_add(g, y, ad_reshape(g, bias, to));
    return y;
}

/* x, weight and bias usable together (weight and bias of shape `want`), or false with the
 * error recorded: checked before any node is made, so a refusal leaves none behind. */
static bool affine_ok(ad_graph *g, const char *op, ad_node *x, ad_node *weight, ad_node *bias, const ad_shape *want,
                      const char *how)
{
    ad_node *in[3] = {x};
    int n = 1;
    if (weight) in[n++] = weight;
    if (bias) in[n++] = bias;
    if (!check_inputs(g, op, in, n)) return false;
    ad_node *wb[2] = {weight, bias};
    for (int k = 0; k < 2; k++) {
        if (!wb[k]) continue;
        ad_shape s = node_shape(wb[k]), sx = node_shape(x);
        if (ad_shape_size(&s) == ad_shape_size(want) && s.rank == want->rank &&
            memcmp(s.dim, want->dim, (size_t)s.rank * sizeof *s.dim) == 0)
            continue;
        char b0[96], b1[96], b2[96];
        ad_set_error(g, AD_ERR_SHAPE, "%s: %s %s for x %s%s: expected %s", op, k ? "bias" : "weight",
                     ad_shape_str(&s, b0, sizeof b0), ad_shape_str(&sx, b1, sizeof b1), how,
                     ad_shape_str(want, b2, sizeof b2));
        return false;
    }
    return true;
}

ad_node *ad_layer_norm(ad_graph *g, ad_node *x, int axes, ad_node *weight, ad_node *bias, double eps)
{
    if (!check_inputs(g, "layer_norm", &x, 1)) return NULL;
    ad_shape s = node_shape(x), want = {.rank = axes};
    if (axes >= 1 && axes <= s.rank) {
        for (int d = 0; d < axes; d++) want.dim[d] = s.dim[s.rank - axes + d];
        char how[48];
        snprintf(how, sizeof how, " normalised over its last %d ax%s", axes, axes == 1 ? "is" : "es");
        if (!affine_ok(g, "layer_norm", x, weight, bias, &want, how)) return NULL;
    }
    double p[2] = {axes, eps};
    return affine(g, ad_apply(g, OP_LAYER_NORM, &x, 1, p, 2), weight, bias, want);
}

ad_node *ad_batch_norm(ad_graph *g, ad_node *x, ad_node *weight, ad_node *bias, ad_tensor *running_mean,
                       ad_tensor *running_var, bool training, double momentum, double eps)
{
    if (!check_inputs(g, "batch_norm", &x, 1)) return NULL;
    ad_shape s = node_shape(x), per_channel = AD_SHAPE0, channel = AD_SHAPE0;
    char msg[256], b[96];
    if (s.rank < 2) {
        ad_set_error(g, AD_ERR_SHAPE, "batch_norm: x %s: expected [N,C] or [N,C,...]", ad_shape_str(&s, b, sizeof b));
        return NULL;
    }
    per_channel = AD_SHAPE(s.dim[1]);
    channel.rank = s.rank - 1; /* [C, 1, ...]: broadcasts along x's axes from 1 */
    for (int d = 0; d < channel.rank; d++) channel.dim[d] = d ? 1 : s.dim[1];
    if (!affine_ok(g, "batch_norm", x, weight, bias, &per_channel, "")) return NULL;
    running_stats r = {running_mean, running_var};
    if (training) {
        double p[2] = {momentum, eps};
        return affine(g, ad_apply_with(g, OP_BATCH_NORM, &x, 1, p, 2, &r), weight, bias, channel);
    }
    ad_op_ctx c = {.graph = g, .param = (double[2]){momentum, eps}, .nparam = 2};
    if (bn_params(&c, msg, sizeof msg) || !running_ok(x, &r, msg, sizeof msg)) {
        ad_set_error(g, AD_ERR_ARG, "batch_norm: %s", msg);
        return NULL;
    }
    if (!running_mean) {
        ad_set_error(g, AD_ERR_ARG, "batch_norm: evaluation needs running_mean and running_var");
        return NULL;
    }
    /* views of the running statistics, so that a replay reads their values then */
    ad_node *mean = ad_reshape(g, ad_const_tensor(g, running_mean), channel);
    ad_node *var = ad_reshape(g, ad_const_tensor(g, running_var), channel);
    ad_node *y = ad_mul(g, ad_sub(g, x, mean), ad_recip(g, ad_sqrt(g, ad_add_scalar(g, var, eps))));
    return affine(g, y, weight, bias, channel);
}
