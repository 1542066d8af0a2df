/* Matrix product with NumPy's rules (torch.matmul): a 1-D operand is a row (on the left) or a
 * column (on the right) whose axis the output drops, and the batch axes before the last two
 * broadcast.  Every product is a gemm on one matrix of each operand, found by its offset (a
 * broadcast batch axis has stride 0), so the 2-D and [B,m,k] x [k,n] cases make the same calls
 * as before broadcasting existed.  Backward reuses the kernel with transposed operands:
 * dA = dC B^T, dB = A^T dC, accumulated into a broadcast operand's one matrix; no transpose is
 * ever materialised. */
#include "../internal.h"
#include "../kernels/kernels.h"

enum { MM_BATCH = AD_MAX_RANK - 2 };

/* The operands as matrices: a 1-D a is [1,k], a 1-D b is [k,1]. */
static ad_shape as_matrix(ad_shape s, bool left)
{
    if (s.rank == 1) s = left ? AD_SHAPE(1, s.dim[0]) : AD_SHAPE(s.dim[0], 1);
    return s;
}

/* The output's shape with both operands as matrices: the broadcast batch axes, then m, n. */
static bool product_shape(const ad_shape *a, const ad_shape *b, ad_shape *out)
{
    ad_shape ba = *a, bb = *b;
    ba.rank -= 2, bb.rank -= 2;
    if (!broadcast_shapes(&ba, &bb, out)) return false;
    out->dim[out->rank++] = a->dim[a->rank - 2];
    out->dim[out->rank++] = b->dim[b->rank - 1];
    return true;
}

/* The product's geometry, walked batch by batch (mm_next): each operand's matrix offset. */
typedef struct {
    int64_t batch, m, k, n;
    int rank;                               /* batch axes of the output */
    int64_t dim[MM_BATCH], sa[MM_BATCH], sb[MM_BATCH], pos[MM_BATCH];
    int64_t oa, ob;                         /* the current matrices' offsets in elements */
} mm_dims;

/* Called only when the output has elements: then every batch axis and m and n are positive,
 * and the operands' sizes bound the strides. */
static mm_dims dims_of(const ad_shape *a0, const ad_shape *b0)
{
    ad_shape a = as_matrix(*a0, true), b = as_matrix(*b0, false), o;
    product_shape(&a, &b, &o);
    mm_dims d = {.m = a.dim[a.rank - 2], .k = a.dim[a.rank - 1], .n = b.dim[b.rank - 1], .rank = o.rank - 2};
    d.batch = 1;
    int64_t st_a = d.m * d.k, st_b = d.k * d.n;
    for (int i = d.rank - 1; i >= 0; i--) {
        int ia = i - (d.rank - (a.rank - 2)), ib = i - (d.rank - (b.rank - 2));
        int64_t da = ia >= 0 ? a.dim[ia] : 1, db = ib >= 0 ? b.dim[ib] : 1;
        d.dim[i] = o.dim[i];
        d.sa[i] = da == 1 ? 0 : st_a;
        d.sb[i] = db == 1 ? 0 : st_b;
        st_a *= da, st_b *= db;
        d.batch *= o.dim[i];
        d.pos[i] = 0;
    }
    d.oa = d.ob = 0;
    return d;
}

/* To the next batch element. */
static void mm_next(mm_dims *d)
{
    for (int i = d->rank - 1; i >= 0; i--) {
        d->oa += d->sa[i], d->ob += d->sb[i];
        if (++d->pos[i] < d->dim[i]) return;
        d->oa -= d->sa[i] * d->dim[i], d->ob -= d->sb[i] * d->dim[i];
        d->pos[i] = 0;
    }
}

static int matmul_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape a = node_shape(c->in[0]), b = node_shape(c->in[1]);
    char sa[96], sb[96];
    ad_shape_str(&a, sa, sizeof sa);
    ad_shape_str(&b, sb, sizeof sb);
    if (a.rank < 1 || b.rank < 1) {
        snprintf(msg, len, "%s x %s: operands must be 1-D or more (a scalar has no matrix product: use mul)", sa, sb);
        return 1;
    }
    ad_shape ma = as_matrix(a, true), mb = as_matrix(b, false);
    if (ma.dim[ma.rank - 1] != mb.dim[mb.rank - 2]) {
        snprintf(msg, len, "%s x %s: inner dimensions %lld and %lld differ", sa, sb,
                 (long long)ma.dim[ma.rank - 1], (long long)mb.dim[mb.rank - 2]);
        return 1;
    }
    if (!product_shape(&ma, &mb, out)) {
        ad_shape ba = ma, bb = mb;
        ba.rank -= 2, bb.rank -= 2;
        char b0[96], b1[96];
        snprintf(msg, len, "%s x %s: batch dimensions %s and %s do not broadcast", sa, sb,
                 ad_shape_str(&ba, b0, sizeof b0), ad_shape_str(&bb, b1, sizeof b1));
        return 1;
    }
    /* the axes a 1-D operand stood for are dropped */
    if (a.rank == 1) out->dim[out->rank - 2] = out->dim[out->rank - 1], out->rank--;
    if (b.rank == 1) out->rank--;
    return 0;
}

static void matmul_forward(const ad_op_ctx *c)
{
    if (node_size(c->out) == 0) return;
    ad_shape sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    mm_dims d = dims_of(&sa, &sb);
    size_t es = ad_dtype_size(c->out->dtype);
    const char *A = node_data(c->in[0]), *B = node_data(c->in[1]);
    char *C = node_data(c->out);
    for (int64_t t = 0; t < d.batch; t++, mm_next(&d))
        gemm(c->out->dtype, false, false, d.m, d.n, d.k, A + (size_t)d.oa * es, d.k, B + (size_t)d.ob * es, d.n,
             C + (size_t)(t * d.m * d.n) * es, d.n, false);
}

static ad_status matmul_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    if (node_size(c->out) == 0) return AD_OK;
    ad_shape sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    mm_dims d = dims_of(&sa, &sb);
    size_t es = ad_dtype_size(c->out->dtype);
    const char *A = node_data(c->in[0]), *B = node_data(c->in[1]), *G = ad_node_grad_data(c->out);
    char *GA = ad_input_grad_buffer(g, c->in[0]), *GB = ad_input_grad_buffer(g, c->in[1]);
    if (g->status) return g->status;
    for (int64_t t = 0; t < d.batch; t++, mm_next(&d)) {
        const char *Gt = G + (size_t)(t * d.m * d.n) * es;
        if (GA) /* dA[m,k] += dC[m,n] B[k,n]^T */
            gemm(c->out->dtype, false, true, d.m, d.k, d.n, Gt, d.n, B + (size_t)d.ob * es, d.n,
                 GA + (size_t)d.oa * es, d.k, true);
        if (GB) /* dB[k,n] += A[m,k]^T dC[m,n] */
            gemm(c->out->dtype, true, false, d.k, d.n, d.m, A + (size_t)d.oa * es, d.k, Gt, d.n,
                 GB + (size_t)d.ob * es, d.n, true);
    }
    return AD_OK;
}

/* ---- linear: x W^T + b, the layer of an MLP, with W stored [out, in] as the lecture and
 * PyTorch store it; fusing the transpose and the bias saves two passes and a copy ---- */

static int linear_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape x = node_shape(c->in[0]), w = node_shape(c->in[1]);
    char sx[96], sw[96], sb[96];
    ad_shape_str(&x, sx, sizeof sx);
    ad_shape_str(&w, sw, sizeof sw);
    if (x.rank != 2 || w.rank != 2) {
        snprintf(msg, len, "x %s, W %s: x must be [N,in] and W [out,in]", sx, sw);
        return 1;
    }
    if (x.dim[1] != w.dim[1]) {
        snprintf(msg, len, "x %s, W %s: input widths %lld and %lld differ", sx, sw,
                 (long long)x.dim[1], (long long)w.dim[1]);
        return 1;
    }
    if (c->nin == 3) {
        ad_shape b = node_shape(c->in[2]);
        if (b.rank != 1 || b.dim[0] != w.dim[0]) {
            snprintf(msg, len, "W %s, b %s: b must be [%lld]", sw, ad_shape_str(&b, sb, sizeof sb),
                     (long long)w.dim[0]);
            return 1;
        }
    }
    *out = AD_SHAPE(x.dim[0], w.dim[0]);
    return 0;
}

/* A fused activation (ad_linear_act): its unary op and parameter, op -1 for none. */
typedef struct {
    int op;
    ad_dtype t;
    double p;
} act_of_linear;

/* Parameters (activation, slope), or none. */
static int linear_params(const ad_op_ctx *c, char *msg, size_t len)
{
    if (c->nparam == 0) return 0;
    if (c->nparam != 2) {
        snprintf(msg, len, "takes 0 or 2 parameters (activation, slope), given %d", c->nparam);
        return 1;
    }
    if (!param_int(c->param[0], AD_ACT_NONE, AD_ACT_TANH, "activation", msg, len)) return 1;
    /* the backward reads leaky relu's derivative off the output's sign */
    if (c->param[0] == AD_ACT_LEAKY_RELU && !(c->param[1] > 0 && isfinite(c->param[1]))) {
        snprintf(msg, len, "leaky_relu slope %g must be a positive number", c->param[1]);
        return 1;
    }
    return 0;
}

static act_of_linear linear_act(const ad_op_ctx *c)
{
    static const int ops[] = {[AD_ACT_RELU] = OP_RELU, [AD_ACT_LEAKY_RELU] = OP_LEAKY_RELU,
                              [AD_ACT_SIGMOID] = OP_SIGMOID, [AD_ACT_TANH] = OP_TANH};
    act_of_linear a = {-1, (ad_dtype)c->out->dtype, 0};
    if (c->nparam >= 2 && c->param[0] > AD_ACT_NONE && c->param[0] <= AD_ACT_TANH)
        a.op = ops[(int)c->param[0]], a.p = c->param[1];
    return a;
}

/* The gemm epilogue: the activation on a finished block of the product. */
static void activate_block(void *ctx, void *c, int64_t ldc, int64_t rows, int64_t cols)
{
    const act_of_linear *a = ctx;
    ew_unary_inplace(a->op, a->t, c, ldc, rows, cols, a->p);
}

/* A parameter's gradient handed block by block as gemm finishes it. */
typedef struct {
    ad_tensor *p;
    const char *base;
    size_t es;
} hand_ctx;

static void hand_block(void *ctx, void *c, int64_t ldc, int64_t rows, int64_t cols)
{
    const hand_ctx *h = ctx;
    h->p->ready(h->p->ready_ctx, h->p, (int64_t)(((const char *)c - h->base) / h->es), ldc, rows, cols);
}

static void linear_forward(const ad_op_ctx *c)
{
    ad_shape x = node_shape(c->in[0]), w = node_shape(c->in[1]);
    int64_t n = x.dim[0], in = x.dim[1], out = w.dim[0];
    ad_dtype t = c->out->dtype;
    void *Y = node_data(c->out);
    if (c->nin == 3)
        for (int64_t r = 0; r < n; r++)
            memcpy((char *)Y + (size_t)(r * out) * ad_dtype_size(t), node_data(c->in[2]),
                   (size_t)out * ad_dtype_size(t));
    act_of_linear a = linear_act(c);
    gemm_epilogue ep = {activate_block, &a};
    gemm_ex(t, false, true, n, out, in, node_data(c->in[0]), in, node_data(c->in[1]), in, Y, out,
            c->nin == 3, a.op >= 0 ? &ep : NULL);
}

static ad_status linear_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    ad_shape x = node_shape(c->in[0]), w = node_shape(c->in[1]);
    int64_t n = x.dim[0], in = x.dim[1], out = w.dim[0];
    ad_dtype t = c->out->dtype;
    const void *G = ad_node_grad_data(c->out);
    act_of_linear a = linear_act(c);
    if (a.op >= 0 && n * out > 0) {
        /* the gradient before the activation; its derivative read off the output: y > 0
         * exactly where x > 0 for relu and leaky relu (slope > 0), and sigmoid's and tanh's
         * derivatives are functions of y */
        const void *Y = node_data(c->out);
        void *GP = node_scratch(g, c->out, (size_t)(n * out) * ad_dtype_size(t));
        if (!GP) return g->status;
        ew_unary_grad(a.op, t, n * out, Y, Y, a.p, G, GP);
        G = GP;
    }
    bool assign;
    void *GX = grad_for_write(g, c->in[0], true, &assign);
    if (GX) /* dx[n,in] (+)= G[n,out] W[out,in] */
        gemm(t, false, false, n, in, out, G, out, node_data(c->in[1]), in, GX, in, !assign);
    /* dx is done, so W's values are read for the last time: a W whose gradient may be handed
     * (ad_param_set_grad_ready) gets each block of it while the block is in cache */
    ad_tensor *hand_w = grad_handable(c->in[1]);
    void *GW = grad_for_write(g, c->in[1], true, &assign);
    if (GW) { /* dW[out,in] (+)= G^T[out,n] x[n,in] */
        hand_ctx h = {hand_w, GW, ad_dtype_size(t)};
        gemm_epilogue ep = {hand_block, &h};
        gemm_ex(t, true, false, out, in, n, G, out, node_data(c->in[0]), in, GW, in, !assign,
                hand_w && assign ? &ep : NULL);
        if (hand_w && assign) grad_handed(hand_w);
    }
    ad_tensor *hand_b = c->nin == 3 ? grad_handable(c->in[2]) : NULL;
    void *GB = c->nin == 3 ? ad_input_grad_buffer(g, c->in[2]) : NULL;
    if (GB) {
        ad_shape ys = node_shape(c->out), bs = node_shape(c->in[2]);
        reduce_broadcast_add(t, G, &ys, GB, &bs, 1.0);
        if (hand_b) {
            hand_b->ready(hand_b->ready_ctx, hand_b, 0, bs.dim[0], 1, bs.dim[0]);
            grad_handed(hand_b);
        }
    }
    return g->status;
}

/* t_y = act'(y) (t_x W^T + x t_W^T + t_b). */
static ad_status linear_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    ad_shape x = node_shape(c->in[0]), w = node_shape(c->in[1]);
    int64_t n = x.dim[0], in = x.dim[1], out = w.dim[0];
    ad_dtype t = c->out->dtype;
    size_t es = ad_dtype_size(t);
    const void *TX = ad_tangent_data(g, c->in[0]), *TW = ad_tangent_data(g, c->in[1]);
    const void *TB = c->nin == 3 ? ad_tangent_data(g, c->in[2]) : NULL;
    char *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    if (TB)
        for (int64_t r = 0; r < n; r++) memcpy(T + (size_t)(r * out) * es, TB, (size_t)out * es);
    if (TX) gemm(t, false, true, n, out, in, TX, in, node_data(c->in[1]), in, T, out, true);
    if (TW) gemm(t, false, true, n, out, in, node_data(c->in[0]), in, TW, in, T, out, true);
    act_of_linear a = linear_act(c);
    if (a.op >= 0) ew_unary_grad(a.op, t, n * out, node_data(c->out), node_data(c->out), a.p, T, T);
    return AD_OK;
}

/* x W^T + b's adjoints as graph ops.  With a fused activation, its derivative is read off
 * the output y as the fused backward reads it: 1 - y^2 for tanh, y (1 - y) for sigmoid, and
 * for relu and leaky relu (slope > 0) the derivative at y, which is the derivative at the
 * product since the two have the same sign. */
static ad_node *linear_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    ad_graph *g = c->graph;
    ad_node *x = c->in[0], *w = c->in[1], *y = c->out;
    act_of_linear a = linear_act(c);
    if (a.op >= 0) {
        ad_node *one = scalar_const_like(g, y, 1), *d;
        if (a.op == OP_TANH) d = ad_sub(g, one, ad_square(g, y));
        else if (a.op == OP_SIGMOID) d = ad_mul(g, y, ad_sub(g, one, y));
        else d = ad_apply(g, OP_EW_DERIV, &y, 1, (double[]){a.op, 0, a.p}, 3);
        if (!(gy = ad_mul(g, gy, d))) return NULL;
    }
    if (i == 0) return ad_matmul(g, gy, w);                    /* [N,out] [out,in] */
    if (i == 1) return ad_matmul(g, ad_transpose(g, gy), x);   /* [out,N] [N,in] */
    return ad_sum_axis(g, gy, 0, false);
}

/* dA = G B^T and dB = A^T G with the operands as matrices (a 1-D one reshaped to its row or
 * column, G to the product's shape), summed over the batch axes the operand was broadcast
 * along, and back to the operand's shape. */
static ad_node *matmul_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    ad_graph *g = c->graph;
    ad_shape sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    ad_shape ma = as_matrix(sa, true), mb = as_matrix(sb, false), mo;
    product_shape(&ma, &mb, &mo);
    ad_node *a = sa.rank == 1 ? ad_reshape(g, c->in[0], ma) : c->in[0];
    ad_node *b = sb.rank == 1 ? ad_reshape(g, c->in[1], mb) : c->in[1];
    if (sa.rank == 1 || sb.rank == 1) gy = ad_reshape(g, gy, mo);
    ad_node *d = i == 0 ? ad_matmul(g, gy, ad_transpose(g, b)) : ad_matmul(g, ad_transpose(g, a), gy);
    d = sum_to_shape(g, d, i == 0 ? &ma : &mb);
    return (i == 0 ? sa : sb).rank == 1 ? ad_reshape(g, d, i == 0 ? sa : sb) : d;
}

const op_entry op_linear = {.def = {"linear", AD_VARIADIC, linear_shape, linear_forward, linear_backward,
                                    "d/dx[x W^T + b] = G W, d/dW = G^T x, d/db = sum of G over rows",
                                    linear_jvp, 0, NULL, linear_grad_graph},
                            .nparam = 2, .param_names = "(activation, slope)", .params = linear_params};

ad_node *ad_linear(ad_graph *g, ad_node *x, ad_node *w, ad_node *b)
{
    ad_node *in[3] = {x, w, b};
    return ad_apply(g, OP_LINEAR, in, b ? 3 : 2, NULL, 0);
}

ad_node *ad_linear_act(ad_graph *g, ad_node *x, ad_node *w, ad_node *b, ad_act act, double slope)
{
    if (!g) return NULL;
    if ((int)act < AD_ACT_NONE || act > AD_ACT_TANH) {
        ad_set_error(g, AD_ERR_ARG, "linear: unknown activation %d", (int)act);
        return NULL;
    }
    if (act == AD_ACT_LEAKY_RELU && !(slope > 0 && isfinite(slope))) {
        ad_set_error(g, AD_ERR_ARG, "linear: leaky_relu slope %g must be a positive number", slope);
        return NULL;
    }
    if (act == AD_ACT_NONE) return ad_linear(g, x, w, b);
    ad_node *in[3] = {x, w, b};
    double p[2] = {(double)act, act == AD_ACT_LEAKY_RELU ? slope : 0};
    return ad_apply(g, OP_LINEAR, in, b ? 3 : 2, p, 2);
}

/* t_C = t_A B + A t_B, batch by batch. */
static ad_status matmul_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    if (node_size(c->out) == 0) return AD_OK;
    ad_shape sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    mm_dims d = dims_of(&sa, &sb);
    ad_dtype t = c->out->dtype;
    size_t es = ad_dtype_size(t);
    const char *A = node_data(c->in[0]), *B = node_data(c->in[1]);
    const char *TA = ad_tangent_data(g, c->in[0]), *TB = ad_tangent_data(g, c->in[1]);
    char *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    for (int64_t k = 0; k < d.batch; k++, mm_next(&d)) {
        char *Tk = T + (size_t)(k * d.m * d.n) * es;
        if (TA)
            gemm(t, false, false, d.m, d.n, d.k, TA + (size_t)d.oa * es, d.k, B + (size_t)d.ob * es, d.n, Tk, d.n, true);
        if (TB)
            gemm(t, false, false, d.m, d.n, d.k, A + (size_t)d.oa * es, d.k, TB + (size_t)d.ob * es, d.n, Tk, d.n, true);
    }
    return AD_OK;
}

const op_entry op_matmul = {.def = {"matmul", 2, matmul_shape, matmul_forward, matmul_backward,
                             "d/dA[A B] = G B^T, d/dB[A B] = A^T G", matmul_jvp, 0, NULL, matmul_grad_graph}};

ad_node *ad_matmul(ad_graph *g, ad_node *a, ad_node *b)
{
    ad_node *in[2] = {a, b};
    return ad_apply(g, OP_MATMUL, in, 2, NULL, 0);
}
