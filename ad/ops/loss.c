/* Softmax, log-softmax, the fused cross-entropy, regression losses and dropout. */
#include "../internal.h"

/* Softmax runs along one axis: `outer * inner` independent lanes of n elements, stride inner
 * (split_axis). */

static int axis_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    int axis = (int)c->param[0];
    if (axis < 0 || axis >= s.rank) {
        char b[96];
        snprintf(msg, len, "axis %d out of range for shape %s", axis, ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    *out = s;
    return 0;
}

double lane_lse(ad_dtype t, const void *X, int64_t base, int64_t n, int64_t stride)
{
    double mx = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        double v = load(X, t, base + k * stride);
        if (isnan(v)) return v;
        mx = fmax(mx, v);
    }
    if (isinf(mx)) return mx;
    double s = 0;
    for (int64_t k = 0; k < n; k++) s += exp(load(X, t, base + k * stride) - mx);
    return mx + log(s);
}

static void softmax_forward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0], *y = c->out;
    ad_shape s = node_shape(x);
    axis_split L = split_axis(&s, (int)c->param[0]);
    bool logsm = y->op == OP_LOG_SOFTMAX;
    const void *X = node_data(x);
    void *Y = node_data(y);
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            int64_t base = o * L.n * L.inner + i;
            double lse = lane_lse(x->dtype, X, base, L.n, L.inner);
            for (int64_t k = 0; k < L.n; k++) {
                double z = load(X, x->dtype, base + k * L.inner) - lse;
                store(Y, y->dtype, base + k * L.inner, logsm ? z : exp(z));
            }
        }
}

/* softmax: dx = y (g - <g, y>);  log_softmax: dx = g - softmax(x) * sum(g). */
static ad_status softmax_backward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0], *y = c->out;
    void *GX = ad_input_grad_buffer(c->graph, x);
    if (!GX) return c->graph->status;
    ad_shape s = node_shape(x);
    axis_split L = split_axis(&s, (int)c->param[0]);
    bool logsm = y->op == OP_LOG_SOFTMAX;
    const void *Y = node_data(y), *G = ad_node_grad_data(y);
    ad_dtype t = y->dtype;
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            int64_t base = o * L.n * L.inner + i;
            double dot = 0;
            for (int64_t k = 0; k < L.n; k++) {
                int64_t j = base + k * L.inner;
                dot += logsm ? load(G, t, j) : load(G, t, j) * load(Y, t, j);
            }
            for (int64_t k = 0; k < L.n; k++) {
                int64_t j = base + k * L.inner;
                double yj = load(Y, t, j), gj = load(G, t, j);
                double d = logsm ? gj - exp(yj) * dot : yj * (gj - dot);
                store(GX, t, j, load(GX, t, j) + d);
            }
        }
    return AD_OK;
}

/* ---- cross-entropy from logits [N,C] and integer labels ---- */

typedef struct { int32_t *labels; double *lse; } ce_state;

static int ce_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    if (s.rank != 2 || s.dim[0] < 1 || s.dim[1] < 1) {
        char b[96];
        snprintf(msg, len, "logits %s: expected a non-empty [N,C] matrix", ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    *out = AD_SHAPE0;
    return 0;
}

/* Checks n labels (an ad_apply_with argument) against [0, classes) and copies them into *dst,
 * allocated at the first call and reused by the next (ad_node_set_arg, for a replay). */
static ad_status store_labels(const ad_op_ctx *c, const void *arg, int64_t n, int64_t classes, int32_t **dst,
                              char *msg, size_t len)
{
    const int32_t *labels = arg;
    if (!labels) {
        snprintf(msg, len, "labels are NULL");
        return AD_ERR_NULL;
    }
    for (int64_t r = 0; r < n; r++)
        if (labels[r] < 0 || labels[r] >= classes) {
            snprintf(msg, len, "label %d at row %lld outside [0,%lld)", (int)labels[r], (long long)r,
                     (long long)classes);
            return AD_ERR_ARG;
        }
    if (!*dst && !(*dst = ad_op_alloc(c, (size_t)(n ? n : 1) * sizeof **dst)))
        return AD_ERR_NOMEM; /* the graph holds the message */
    memcpy(*dst, labels, (size_t)n * sizeof *labels);
    return AD_OK;
}

/* Copies and checks the labels (the argument of ad_apply_with). */
static ad_status ce_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    ce_state *st = c->state;
    ad_shape s = node_shape(c->in[0]);
    int64_t N = s.dim[0], C = s.dim[1];
    ad_status r = store_labels(c, arg, N, C, &st->labels, msg, len);
    if (r) return r;
    if (!st->lse && !(st->lse = ad_op_alloc(c, (size_t)N * sizeof *st->lse))) return AD_ERR_NOMEM;
    return AD_OK;
}

static void ce_forward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0];
    ce_state *st = c->state;
    ad_shape s = node_shape(x);
    int64_t N = s.dim[0], C = s.dim[1];
    const void *X = node_data(x);
    double total = 0;
    for (int64_t r = 0; r < N; r++) {
        st->lse[r] = lane_lse(x->dtype, X, r * C, C, 1);
        total += st->lse[r] - load(X, x->dtype, r * C + st->labels[r]);
    }
    store(node_data(c->out), c->out->dtype, 0, total / (double)N);
}

/* d/dz[lse(z) - z_y] = softmax(z) - onehot(y), times g/N. */
static ad_status ce_backward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0];
    void *GX = ad_input_grad_buffer(c->graph, x);
    if (!GX) return c->graph->status;
    ce_state *st = c->state;
    ad_shape s = node_shape(x);
    int64_t N = s.dim[0], C = s.dim[1];
    const void *X = node_data(x);
    double g = load(ad_node_grad_data(c->out), c->out->dtype, 0) / (double)N;
    for (int64_t r = 0; r < N; r++)
        for (int64_t k = 0; k < C; k++) {
            int64_t j = r * C + k;
            double p = exp(load(X, x->dtype, j) - st->lse[r]) - (k == st->labels[r]);
            store(GX, x->dtype, j, load(GX, x->dtype, j) + g * p);
        }
    return AD_OK;
}

/* ---- mean squared error, mean absolute error, binary cross-entropy from logits ----
 *
 * BCE is the mean of max(z, 0) - z t + log(1 + e^-|z|) over logits z and targets t, which is
 * -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) without overflow; d/dz = (sigmoid(z) - t)/n,
 * d/dt = -z/n (targets get a gradient, as in PyTorch). */

/* The shape rule of a loss of two equal-shaped inputs, the first called `first` in the
 * message: one number. */
static int same_shapes(const ad_op_ctx *c, const char *first, ad_shape *out, char *msg, size_t len)
{
    ad_shape a = node_shape(c->in[0]), b = node_shape(c->in[1]);
    bool same = a.rank == b.rank;
    for (int i = 0; same && i < a.rank; i++) same = a.dim[i] == b.dim[i];
    if (!same) {
        char s0[96], s1[96];
        snprintf(msg, len, "%s %s and target %s: shapes differ", first, ad_shape_str(&a, s0, sizeof s0),
                 ad_shape_str(&b, s1, sizeof s1));
        return 1;
    }
    *out = AD_SHAPE0;
    return 0;
}

static int same_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    return same_shapes(c, "prediction", out, msg, len);
}

static int bce_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    return same_shapes(c, "logits", out, msg, len);
}

/* One element's term of a loss of two equal-shaped inputs (p the prediction or the logit, t
 * the target), and its derivatives along p and t: mse, mae and bce_with_logits are the mean of
 * these terms, and share their passes. */
static double loss_term(int op, double p, double t, double *dp, double *dt)
{
    if (op == OP_BCE_WITH_LOGITS) {
        *dp = ad_ew_sigmoid(p, 0) - t, *dt = -p;
        return fmax(p, 0) - p * t + log1p(exp(-fabs(p)));
    }
    double d = p - t;
    *dp = op == OP_MSE ? 2 * d : (d > 0) - (d < 0);
    *dt = -*dp;
    return op == OP_MSE ? d * d : fabs(d);
}

static void loss_forward(const ad_op_ctx *c)
{
    ad_node *p = c->in[0], *t = c->in[1];
    ad_dtype dt = p->dtype;
    const void *P = node_data(p), *T = node_data(t);
    int64_t n = node_size(p);
    double s = 0, dp, dq;
    for (int64_t i = 0; i < n; i++) s += loss_term(c->out->op, load(P, dt, i), load(T, dt, i), &dp, &dq);
    store(node_data(c->out), c->out->dtype, 0, s / (double)n);
}

static ad_status loss_backward(const ad_op_ctx *c)
{
    ad_node *p = c->in[0], *t = c->in[1];
    void *GP = ad_input_grad_buffer(c->graph, p), *GT = ad_input_grad_buffer(c->graph, t);
    if (c->graph->status) return c->graph->status;
    ad_dtype dt = p->dtype;
    const void *P = node_data(p), *T = node_data(t);
    int64_t n = node_size(p);
    double g = load(ad_node_grad_data(c->out), c->out->dtype, 0) / (double)n, dp, dq;
    for (int64_t i = 0; i < n; i++) {
        loss_term(c->out->op, load(P, dt, i), load(T, dt, i), &dp, &dq);
        if (GP) store(GP, dt, i, load(GP, dt, i) + g * dp);
        if (GT) store(GT, dt, i, load(GT, dt, i) + g * dq);
    }
    return AD_OK;
}

/* t = (1/n) sum of the terms' derivatives times the inputs' tangents. */
static ad_status loss_jvp(const ad_op_ctx *c)
{
    ad_node *p = c->in[0], *t = c->in[1];
    const void *TP = ad_tangent_data(c->graph, p), *TT = ad_tangent_data(c->graph, t);
    void *TY = ad_tangent_buffer(c->graph, c->out);
    if (!TY) return c->graph->status;
    ad_dtype dt = p->dtype;
    const void *P = node_data(p), *T = node_data(t);
    int64_t n = node_size(p);
    double s = 0, dp, dq;
    for (int64_t i = 0; i < n; i++) {
        loss_term(c->out->op, load(P, dt, i), load(T, dt, i), &dp, &dq);
        s += (TP ? dp * load(TP, dt, i) : 0) + (TT ? dq * load(TT, dt, i) : 0);
    }
    store(TY, c->out->dtype, 0, s / (double)n);
    return AD_OK;
}

/* ---- dropout: the mask is drawn at record time and kept for backward ---- */

static int same_as_input(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)msg, (void)len;
    *out = node_shape(c->in[0]);
    return 0;
}

/* Parameters p and inverted (0 or 1); the state is the ad_rng given to ad_apply_with, the mask
 * drawn from it by each forward pass (recording or replay), one byte per element (1 = kept),
 * and the survivors' scale. */
typedef struct { ad_rng *rng; uint8_t *keep; double scale; } dropout_state;

static ad_status dropout_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    ad_rng *rng = (ad_rng *)arg;
    dropout_state *st = c->state;
    double p = c->param[0];
    if (!(p >= 0 && p < 1)) {
        snprintf(msg, len, "probability %g outside [0,1)", p);
        return AD_ERR_ARG;
    }
    if (!rng) {
        snprintf(msg, len, "rng is NULL");
        return AD_ERR_NULL;
    }
    st->scale = c->param[1] != 0 ? 1 / (1 - p) : 1;
    st->rng = rng;
    if (!st->keep && !(st->keep = ad_op_alloc(c, (size_t)node_size(c->out)))) return AD_ERR_NOMEM;
    return AD_OK;
}

/* Y = the mask applied to X: the forward pass, and the forward rule on tangents. */
static void dropout_apply(const dropout_state *st, ad_dtype t, const void *X, void *Y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) store(Y, t, i, st->keep[i] ? st->scale * load(X, t, i) : 0.0);
}

static void dropout_forward(const ad_op_ctx *c)
{
    ad_node *y = c->out;
    dropout_state *st = c->state;
    double p = c->param[0];
    for (int64_t i = 0; i < node_size(y); i++) st->keep[i] = ad_rng_uniform(st->rng) >= p;
    dropout_apply(st, y->dtype, node_data(c->in[0]), node_data(y), node_size(y));
}

/* The mask of the last forward pass, not a new one: jvp_linear would run the forward again. */
static ad_status dropout_jvp(const ad_op_ctx *c)
{
    const void *TX = ad_tangent_data(c->graph, c->in[0]);
    void *T = ad_tangent_buffer(c->graph, c->out);
    if (!T || !TX) return c->graph->status;
    dropout_apply(c->state, c->out->dtype, TX, T, node_size(c->out));
    return AD_OK;
}

static ad_status dropout_backward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0], *y = c->out;
    void *GX = ad_input_grad_buffer(c->graph, x);
    if (!GX) return c->graph->status;
    const dropout_state *st = c->state;
    const void *G = ad_node_grad_data(y);
    for (int64_t i = 0; i < node_size(y); i++)
        if (st->keep[i]) store(GX, x->dtype, i, load(GX, x->dtype, i) + st->scale * load(G, y->dtype, i));
    return AD_OK;
}

/* ---- forward rules ---- */

/* softmax: t_y = y (t_x - <y, t_x>);  log_softmax: t_y = t_x - <softmax(x), t_x>, per lane. */
static ad_status softmax_jvp(const ad_op_ctx *c)
{
    ad_node *x = c->in[0], *y = c->out;
    const void *TX = ad_tangent_data(c->graph, x);
    void *T = ad_tangent_buffer(c->graph, y);
    if (!T || !TX) return c->graph->status;
    ad_shape s = node_shape(x);
    axis_split L = split_axis(&s, (int)c->param[0]);
    bool logsm = y->op == OP_LOG_SOFTMAX;
    const void *Y = node_data(y);
    ad_dtype t = y->dtype;
    for (int64_t o = 0; o < L.outer; o++)
        for (int64_t i = 0; i < L.inner; i++) {
            int64_t base = o * L.n * L.inner + i;
            double dot = 0;
            for (int64_t k = 0; k < L.n; k++) {
                int64_t j = base + k * L.inner;
                double p = logsm ? exp(load(Y, t, j)) : load(Y, t, j);
                dot += p * load(TX, t, j);
            }
            for (int64_t k = 0; k < L.n; k++) {
                int64_t j = base + k * L.inner;
                double tj = load(TX, t, j) - dot;
                store(T, t, j, logsm ? tj : load(Y, t, j) * tj);
            }
        }
    return AD_OK;
}

/* t = (1/N) sum over rows of <softmax(z_r), t_r> - t_r[label]. */
static ad_status ce_jvp(const ad_op_ctx *c)
{
    ad_node *x = c->in[0];
    const void *TX = ad_tangent_data(c->graph, x);
    void *T = ad_tangent_buffer(c->graph, c->out);
    if (!T || !TX) return c->graph->status;
    const ce_state *st = c->state;
    ad_shape s = node_shape(x);
    int64_t N = s.dim[0], C = s.dim[1];
    const void *X = node_data(x);
    double total = 0;
    for (int64_t r = 0; r < N; r++) {
        for (int64_t k = 0; k < C; k++) {
            int64_t j = r * C + k;
            total += exp(load(X, x->dtype, j) - st->lse[r]) * load(TX, x->dtype, j);
        }
        total -= load(TX, x->dtype, r * C + st->labels[r]);
    }
    store(T, c->out->dtype, 0, total / (double)N);
    return AD_OK;
}

/* ---- reverse rules as graphs ---- */

/* softmax: y (g - sum(g y));  log_softmax: g - exp(y) sum(g), sums along the axis. */
static ad_node *softmax_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_node *y = c->out;
    int axis = (int)c->param[0];
    if (y->op == OP_LOG_SOFTMAX)
        return ad_sub(g, gy, ad_mul(g, ad_exp(g, y), ad_sum_axis(g, gy, axis, true)));
    return ad_mul(g, y, ad_sub(g, gy, ad_sum_axis(g, ad_mul(g, gy, y), axis, true)));
}

/* (softmax(z) - onehot(labels)) g / N, the one-hot rows a ce_onehot node reading the labels
 * from the cross_entropy node's state: a constant would keep the labels of the recording, and
 * ad_node_set_arg gives a replay new ones. */
static ad_node *ce_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_graph *g = c->graph;
    ad_node *z = c->in[0], *y = c->out;
    int64_t N = node_shape(z).dim[0];
    ad_node *onehot = ad_apply(g, OP_CE_ONEHOT, &y, 1, NULL, 0);
    if (!onehot) return NULL;
    ad_node *d = ad_sub(g, ad_softmax(g, z, 1), onehot);
    return ad_mul(g, d, ad_mul(g, gy, scalar_const_like(g, z, 1.0 / (double)N)));
}

/* mse: 2 (p - t) g / n;  mae: sign(p - t) g / n (the derivative of abs, 0 at 0); the target's
 * is the negative. */
static ad_node *err_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    ad_graph *g = c->graph;
    ad_node *p = c->in[0], *d = ad_sub(g, p, c->in[1]);
    double n = (double)node_size(p);
    if (d && c->out->op == OP_MAE) {
        double abs_d[3] = {OP_ABS, 0, 0}; /* ew_deriv's (op, side, p) */
        d = ad_apply(g, OP_EW_DERIV, &d, 1, abs_d, 3);
    }
    double k = (c->out->op == OP_MSE ? 2 : 1) / n * (i == 0 ? 1 : -1);
    return d ? ad_mul(g, d, ad_mul(g, gy, scalar_const_like(g, p, k))) : NULL;
}

/* bce_with_logits: (sigmoid(z) - t) g / n for the logits, -z g / n for the targets. */
static ad_node *bce_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    ad_graph *g = c->graph;
    ad_node *z = c->in[0];
    double n = (double)node_size(z);
    ad_node *d = i == 0 ? ad_sub(g, ad_sigmoid(g, z), c->in[1]) : z;
    return ad_mul(g, d, ad_mul(g, gy, scalar_const_like(g, z, (i == 0 ? 1 : -1) / n)));
}

/* The mask times the scale, as a dropout_mask node reading the dropout node's state: a
 * constant would keep the mask of the recording, and a replay draws a new one. */
static ad_node *dropout_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_node *y = c->out, *m = ad_apply(c->graph, OP_DROPOUT_MASK, &y, 1, NULL, 0);
    return m ? ad_mul(c->graph, gy, m) : NULL;
}

/* dropout_mask: an internal op, the mask of its input (a dropout node) times the scale, with
 * derivative 0. */
static int mask_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    if (c->in[0]->op != OP_DROPOUT) {
        snprintf(msg, len, "input is a %s node, not dropout", op_entry_get(c->in[0]->op)->def.name);
        return 1;
    }
    *out = node_shape(c->in[0]);
    return 0;
}

static void mask_forward(const ad_op_ctx *c)
{
    const dropout_state *st = c->in[0]->x->saved;
    for (int64_t k = 0; k < node_size(c->out); k++)
        store(node_data(c->out), c->out->dtype, k, st->keep[k] ? st->scale : 0.0);
}

/* ce_onehot: an internal op, the one-hot rows of the labels of its input (a cross_entropy
 * node), in the shape of its logits, with derivative 0. */
static int onehot_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    if (c->in[0]->op != OP_CROSS_ENTROPY) {
        snprintf(msg, len, "input is a %s node, not cross_entropy", op_entry_get(c->in[0]->op)->def.name);
        return 1;
    }
    *out = node_shape(node_in(c->in[0], 0));
    return 0;
}

static void onehot_forward(const ad_op_ctx *c)
{
    const ce_state *st = c->in[0]->x->saved;
    ad_node *y = c->out;
    ad_shape s = node_shape(y);
    for (int64_t k = 0; k < node_size(y); k++) store(node_data(y), y->dtype, k, 0.0);
    for (int64_t r = 0; r < s.dim[0]; r++) store(node_data(y), y->dtype, r * s.dim[1] + st->labels[r], 1.0);
}

/* labels: a batch's class labels as a column [N, 1] of values, for losses that take their
 * targets as a node (bce_with_logits).  The labels live in the node's state, so
 * ad_node_set_arg gives a replay the next batch's, as it gives cross_entropy's. */
typedef struct {
    int32_t *labels;
} labels_state;

static int labels_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape s = node_shape(c->in[0]);
    if (s.rank < 1) {
        char b[96];
        snprintf(msg, len, "like %s: expected [N, ...] rows to label", ad_shape_str(&s, b, sizeof b));
        return 1;
    }
    *out = AD_SHAPE(s.dim[0], 1);
    return 0;
}

static ad_status labels_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    labels_state *st = c->state;
    return store_labels(c, arg, node_shape(c->out).dim[0], (int64_t)c->param[0], &st->labels, msg, len);
}

static void labels_forward(const ad_op_ctx *c)
{
    const labels_state *st = c->state;
    for (int64_t r = 0; r < node_size(c->out); r++) store(node_data(c->out), c->out->dtype, r, st->labels[r]);
}

static int labels_params(const ad_op_ctx *c, char *msg, size_t len)
{
    return !param_int(c->param[0], 1, INT32_MAX, "classes", msg, len);
}

/* Derivative 0: nothing to add, and a tangent left unset is zero. */
static ad_status mask_backward(const ad_op_ctx *c) { (void)c; return AD_OK; }
static ad_node *mask_grad_graph(const ad_op_ctx *c, ad_node *gy, int i) { (void)c, (void)gy, (void)i; return NULL; }

const op_entry op_softmax = {.def = {"softmax", 1, axis_rule, softmax_forward, softmax_backward,
                                     "d/dx_j[softmax(x)_i] = y_i ([i=j] - y_j)", softmax_jvp, 0, NULL,
                                     softmax_grad_graph},
                             .nparam = 1, .nparam_min = 1, .param_names = "(axis)", .params = params_axis};
const op_entry op_log_softmax = {.def = {"log_softmax", 1, axis_rule, softmax_forward, softmax_backward,
                                         "d/dx_j[log_softmax(x)_i] = [i=j] - softmax(x)_j", softmax_jvp, 0, NULL,
                                         softmax_grad_graph},
                                 .nparam = 1, .nparam_min = 1, .param_names = "(axis)", .params = params_axis};
const op_entry op_cross_entropy = {.def = {"cross_entropy", 1, ce_rule, ce_forward, ce_backward,
                                           "d/dz[mean -log softmax(z)_y] = (softmax(z) - onehot(y))/N", ce_jvp,
                                           sizeof(ce_state), ce_init, ce_grad_graph}};
const op_entry op_mse = {.def = {"mse", 2, same_rule, loss_forward, loss_backward, "d/dp[mean (p - t)^2] = 2(p - t)/n",
                                 loss_jvp, 0, NULL, err_grad_graph}};
const op_entry op_mae = {.def = {"mae", 2, same_rule, loss_forward, loss_backward,
                                 "d/dp[mean |p - t|] = sign(p - t)/n (0 at 0)", loss_jvp, 0, NULL,
                                 err_grad_graph}};
const op_entry op_bce_with_logits = {.def = {"bce_with_logits", 2, bce_rule, loss_forward, loss_backward,
                                             "d/dz[mean bce(sigmoid(z), t)] = (sigmoid(z) - t)/n, d/dt = -z/n",
                                             loss_jvp, 0, NULL, bce_grad_graph}};
const op_entry op_dropout_mask = {.def = {"dropout_mask", 1, mask_rule, mask_forward, mask_backward,
                                          "d/dy[mask(y)] = 0", mask_backward, 0, NULL, mask_grad_graph}};
const op_entry op_ce_onehot = {.def = {"ce_onehot", 1, onehot_rule, onehot_forward, mask_backward,
                                        "d/dy[onehot(labels)] = 0", mask_backward, 0, NULL, mask_grad_graph}};
const op_entry op_labels = {.def = {"labels", 1, labels_rule, labels_forward, mask_backward,
                                    "d/dx[labels] = 0: class ids, not quantities", mask_backward, sizeof(labels_state),
                                    labels_init, mask_grad_graph},
                            .nparam = 1, .nparam_min = 1, .param_names = "(classes)", .params = labels_params};
const op_entry op_dropout = {.def = {"dropout", 1, same_as_input, dropout_forward, dropout_backward,
                                     "d/dx[dropout(x)] = mask * scale", dropout_jvp, sizeof(dropout_state),
                                     dropout_init, dropout_grad_graph},
                             .nparam = 2, .nparam_min = 2, .param_names = "(p, inverted)"};

static ad_node *along_axis(ad_graph *g, int op, ad_node *a, int axis)
{
    if (!check_inputs(g, op_entry_get(op)->def.name, &a, 1) ||
        !check_axis(g, op_entry_get(op)->def.name, a, &axis))
        return NULL;
    double p = axis;
    return ad_apply(g, op, &a, 1, &p, 1);
}

ad_node *ad_softmax(ad_graph *g, ad_node *a, int axis) { return along_axis(g, OP_SOFTMAX, a, axis); }
ad_node *ad_log_softmax(ad_graph *g, ad_node *a, int axis) { return along_axis(g, OP_LOG_SOFTMAX, a, axis); }

ad_node *ad_mse(ad_graph *g, ad_node *p, ad_node *t)
{
    ad_node *in[2] = {p, t};
    return ad_apply(g, OP_MSE, in, 2, NULL, 0);
}

ad_node *ad_mae(ad_graph *g, ad_node *p, ad_node *t)
{
    ad_node *in[2] = {p, t};
    return ad_apply(g, OP_MAE, in, 2, NULL, 0);
}

ad_node *ad_bce_with_logits(ad_graph *g, ad_node *logits, ad_node *target)
{
    ad_node *in[2] = {logits, target};
    return ad_apply(g, OP_BCE_WITH_LOGITS, in, 2, NULL, 0);
}

ad_node *ad_cross_entropy(ad_graph *g, ad_node *logits, const int32_t *labels)
{
    return ad_apply_with(g, OP_CROSS_ENTROPY, &logits, 1, NULL, 0, labels);
}

ad_node *ad_labels(ad_graph *g, ad_node *like, int classes, const int32_t *labels)
{
    double p = classes;
    return ad_apply_with(g, OP_LABELS, &like, 1, &p, 1, labels);
}

ad_node *ad_dropout(ad_graph *g, ad_node *a, double p, bool inverted, ad_rng *rng)
{
    double param[2] = {p, inverted};
    return ad_apply_with(g, OP_DROPOUT, &a, 1, param, 2, rng);
}
