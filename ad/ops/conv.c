/* Convolution and pooling over NCHW tensors, as PyTorch's conv2d, conv1d, max_pool2d and
 * avg_pool2d.
 *
 * A convolution is a matrix product per image and group: the image's receptive fields laid out
 * as columns (im2col, [C/groups KH KW, OH OW]) multiplied by the weight's rows ([O/groups,
 * C/groups KH KW]) on the project's gemm.  Its adjoints are products of the same three
 * matrices: dW = gy col^T and dcol = W^T gy, the latter folded back onto the image (col2im).
 * The reverse rules as graphs need the two adjoints as ops of their own, conv2d_input_grad (gy,
 * w) -> dx and conv2d_weight_grad (x, gy) -> dw; each of the three is bilinear and each one's
 * adjoints are the other two, so derivatives of any order stay inside this family.
 *
 * Max pooling records the position of each window's maximum; its adjoint scatters gy to those
 * positions (max_pool2d_scatter) and the scatter's adjoint gathers from them
 * (max_pool2d_gather), both reading the positions from the pooling node they take as an input.
 * Average pooling is linear: its adjoint is avg_pool2d_grad, whose adjoint is avg_pool2d.
 *
 * Threads: images are independent in the forward pass and in dx; dW sums over the images, so
 * the batch is cut into a fixed number of chunks (whatever the thread count), each chunk's dW
 * made in its own buffer and the chunks summed in order: results do not depend on the thread
 * count. */
#include "../internal.h"
#include "../kernels/kernels.h"
#include <stdint.h>

enum {
    DW_CHUNKS = 8,          /* the batch's chunks for dW (fixed: results must not depend on threads) */
    PAR_FLOPS = 1 << 21,    /* below this a convolution runs on the calling thread */
    POOL_GRAIN = 1 << 15,   /* elements of windows per slice of a pooling loop */
    SUM_LANES = 16          /* db's running sums per channel */
};

/* ---- geometry ---- */

/* A convolution's sizes: input [n, c, h, w], weight [o, cg, kh, kw], output [n, o, oh, ow],
 * per group cg input channels, og output channels and ck = cg kh kw rows of im2col. */
typedef struct {
    int64_t n, c, h, w, o, kh, kw, oh, ow;
    int64_t sh, sw, ph, pw, dh, dw, groups;
    int64_t cg, og, ck, hw, ohw;
} geom;

/* The parameters of every convolution op: (stride_h, stride_w, pad_h, pad_w, dilation_h,
 * dilation_w, groups), then the internal ops' two sizes. */
enum { CP_SH, CP_SW, CP_PH, CP_PW, CP_DH, CP_DW, CP_GROUPS, CP_COUNT };
#define CONV_PARAM_NAMES "(stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups"

/* The output length along one axis: false when the dilated kernel is longer than the padded
 * input (or the kernel is empty).  Division, not a product, keeps d (k - 1) from overflowing. */
static bool out_len(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int64_t *out)
{
    int64_t padded = in + 2 * p;
    if (k < 1 || padded < 1 || k - 1 > (padded - 1) / d) return false;
    *out = (padded - d * (k - 1) - 1) / s + 1;
    return true;
}

/* The geometry of x and w, or 1 with a message that names them as `shown` (NULL: their
 * shapes; conv1d names the 3-D shapes it was given). */
static int conv_geom(const ad_shape *x, const ad_shape *w, const double *p, const char *shown, geom *G,
                     char *msg, size_t len)
{
    char sx[96], sw[96], both[240];
    *G = (geom){0};
    if (!shown) {
        snprintf(both, sizeof both, "input %s and weight %s", ad_shape_str(x, sx, sizeof sx),
                 ad_shape_str(w, sw, sizeof sw));
        shown = both;
    }
    if (x->rank != 4 || w->rank != 4) {
        snprintf(msg, len, "%s: expected input [N,C,H,W] and weight [O,C/groups,KH,KW]",
                 shown);
        return 1;
    }
    *G = (geom){.n = x->dim[0], .c = x->dim[1], .h = x->dim[2], .w = x->dim[3], .o = w->dim[0],
                .kh = w->dim[2], .kw = w->dim[3], .sh = (int64_t)p[CP_SH], .sw = (int64_t)p[CP_SW],
                .ph = (int64_t)p[CP_PH], .pw = (int64_t)p[CP_PW], .dh = (int64_t)p[CP_DH],
                .dw = (int64_t)p[CP_DW], .groups = (int64_t)p[CP_GROUPS]};
    if (G->c % G->groups || G->o % G->groups) {
        snprintf(msg, len, "%s: groups %lld must divide the %lld input and %lld output channels",
                 shown, (long long)G->groups, (long long)G->c, (long long)G->o);
        return 1;
    }
    if (w->dim[1] != G->c / G->groups) {
        snprintf(msg, len, "%s: the input has %lld channels, the weight takes %lld per group in %lld groups",
                 shown, (long long)G->c, (long long)w->dim[1], (long long)G->groups);
        return 1;
    }
    if (!out_len(G->h, G->kh, G->sh, G->ph, G->dh, &G->oh) || !out_len(G->w, G->kw, G->sw, G->pw, G->dw, &G->ow)) {
        snprintf(msg, len, "%s: the kernel %lldx%lld (dilation %lldx%lld) does not fit the padded input %lldx%lld",
                 shown, (long long)G->kh, (long long)G->kw, (long long)G->dh, (long long)G->dw,
                 (long long)(G->h + 2 * G->ph), (long long)(G->w + 2 * G->pw));
        return 1;
    }
    G->cg = G->c / G->groups;
    G->og = G->o / G->groups;
    G->ck = G->cg * G->kh * G->kw;
    G->hw = G->h * G->w;
    G->ohw = G->oh * G->ow;
    return 0;
}

/* The parameter checks before anything converts them: every convolution op's first seven,
 * then (internal ops) two sizes, at least `min_size` each. */
static int check_conv_params(const ad_op_ctx *c, int64_t min_size, char *msg, size_t len)
{
    static const char *const what[CP_COUNT] = {"stride_h", "stride_w", "padding_h", "padding_w",
                                               "dilation_h", "dilation_w", "groups"};
    for (int i = 0; i < CP_COUNT; i++)
        if (!param_int(c->param[i], i == CP_PH || i == CP_PW ? 0 : 1, INT32_MAX, what[i], msg, len))
            return 1;
    for (int i = CP_COUNT; i < c->nparam; i++)
        if (!param_int(c->param[i], (double)min_size, PARAM_DIM_MAX, "size", msg, len)) return 1;
    return 0;
}
static int conv_params(const ad_op_ctx *c, char *msg, size_t len) { return check_conv_params(c, 0, msg, len); }
static int conv_kernel_params(const ad_op_ctx *c, char *msg, size_t len) { return check_conv_params(c, 1, msg, len); }

/* The geometry of a recorded node of any of the three convolution ops. */
static geom node_geom(const ad_op_ctx *c)
{
    ad_shape x, w;
    geom G;
    char msg[1024];
    if (c->out->op == OP_CONV2D) x = node_shape(c->in[0]), w = node_shape(c->in[1]);
    else if (c->out->op == OP_CONV2D_INPUT_GRAD) x = node_shape(c->out), w = node_shape(c->in[1]);
    else x = node_shape(c->in[0]), w = node_shape(c->out);
    conv_geom(&x, &w, c->param, NULL, &G, msg, sizeof msg); /* checked when the node was made */
    return G;
}

/* ---- kernels, per dtype ---- */

/* The valid output columns [lo, hi) of kernel column j: those whose input column
 * ow sw - pw + j dw lies in [0, w). */
static void valid_cols(const geom *G, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t off = j * G->dw - G->pw;
    *lo = off >= 0 ? 0 : (-off + G->sw - 1) / G->sw;
    *hi = G->w - off <= 0 ? 0 : (G->w - off + G->sw - 1) / G->sw;
    if (*hi > G->ow) *hi = G->ow;
    if (*lo > *hi) *lo = *hi;
}

/* im2col: the receptive fields of one image's group (cg channels at X) as col[ck, ohw].
 * col2im: the transpose, adding col into the image's group.  bias_rows: Y[r, :] += b[r].
 * sum_rows: db[o] += the sum of gy over the images and positions.  sum_parts: dst (+)= the sum
 * of the parts in order. */
#define CONV_KERNELS(T)                                                                         \
    static void im2col_##T(const geom *G, const T *X, T *col)                                  \
    {                                                                                           \
        for (int64_t ch = 0; ch < G->cg; ch++)                                                  \
            for (int64_t i = 0; i < G->kh; i++)                                                 \
                for (int64_t j = 0; j < G->kw; j++) {                                           \
                    T *row = col + ((ch * G->kh + i) * G->kw + j) * G->ohw;                     \
                    int64_t lo, hi, off = j * G->dw - G->pw;                                    \
                    valid_cols(G, j, &lo, &hi);                                                 \
                    for (int64_t oh = 0; oh < G->oh; oh++) {                                    \
                        T *d = row + oh * G->ow;                                                \
                        int64_t ih = oh * G->sh - G->ph + i * G->dh;                            \
                        if (ih < 0 || ih >= G->h) {                                             \
                            memset(d, 0, (size_t)G->ow * sizeof(T));                            \
                            continue;                                                           \
                        }                                                                       \
                        const T *s = X + ch * G->hw + ih * G->w + off;                          \
                        for (int64_t q = 0; q < lo; q++) d[q] = 0;                              \
                        if (G->sw == 1) memcpy(d + lo, s + lo, (size_t)(hi - lo) * sizeof(T));  \
                        else                                                                    \
                            for (int64_t q = lo; q < hi; q++) d[q] = s[q * G->sw];              \
                        for (int64_t q = hi; q < G->ow; q++) d[q] = 0;                          \
                    }                                                                           \
                }                                                                               \
    }                                                                                           \
    static void col2im_##T(const geom *G, const T *col, T *X)                                  \
    {                                                                                           \
        for (int64_t ch = 0; ch < G->cg; ch++)                                                  \
            for (int64_t i = 0; i < G->kh; i++)                                                 \
                for (int64_t j = 0; j < G->kw; j++) {                                           \
                    const T *row = col + ((ch * G->kh + i) * G->kw + j) * G->ohw;               \
                    int64_t lo, hi, off = j * G->dw - G->pw;                                    \
                    valid_cols(G, j, &lo, &hi);                                                 \
                    for (int64_t oh = 0; oh < G->oh; oh++) {                                    \
                        int64_t ih = oh * G->sh - G->ph + i * G->dh;                            \
                        if (ih < 0 || ih >= G->h) continue;                                     \
                        const T *s = row + oh * G->ow;                                          \
                        T *d = X + ch * G->hw + ih * G->w + off;                                \
                        if (G->sw == 1)                                                         \
                            for (int64_t q = lo; q < hi; q++) d[q] += s[q];                     \
                        else                                                                    \
                            for (int64_t q = lo; q < hi; q++) d[q * G->sw] += s[q];             \
                    }                                                                           \
                }                                                                               \
    }                                                                                           \
    static void bias_rows_##T(T *Y, int64_t ldy, const T *b, int64_t rows, int64_t cols)       \
    {                                                                                           \
        for (int64_t r = 0; r < rows; r++)                                                      \
            for (int64_t q = 0; q < cols; q++) Y[r * ldy + q] += b[r];                          \
    }                                                                                           \
    AD_VECTOR_CLONES static void sum_rows_##T(const T *gy, T *db, int64_t n, int64_t o, int64_t ohw) \
    {                                                                                           \
        for (int64_t r = 0; r < o; r++) {                                                       \
            T lane[SUM_LANES] = {0}, s = 0; /* independent sums, so the loop vectorises */      \
            for (int64_t k = 0; k < n; k++) {                                                   \
                const T *g = gy + (k * o + r) * ohw;                                            \
                int64_t q = 0;                                                                  \
                for (; q + SUM_LANES <= ohw; q += SUM_LANES)                                    \
                    for (int l = 0; l < SUM_LANES; l++) lane[l] += g[q + l];                    \
                for (; q < ohw; q++) lane[q % SUM_LANES] += g[q];                               \
            }                                                                                   \
            for (int l = 0; l < SUM_LANES; l++) s += lane[l];                                   \
            db[r] += s;                                                                         \
        }                                                                                       \
    }                                                                                           \
    static void sum_parts_##T(T *dst, const T *parts, int64_t nparts, int64_t size, bool acc)  \
    {                                                                                           \
        for (int64_t i = 0; i < size; i++) {                                                    \
            T s = parts[i];                                                                     \
            for (int64_t p = 1; p < nparts; p++) s += parts[p * size + i];                      \
            dst[i] = acc ? dst[i] + s : s;                                                      \
        }                                                                                       \
    }
CONV_KERNELS(float)
CONV_KERNELS(double)

static void im2col(ad_dtype t, const geom *G, const void *X, void *col)
{
    if (t == AD_F32) im2col_float(G, X, col);
    else im2col_double(G, X, col);
}

static void col2im(ad_dtype t, const geom *G, const void *col, void *X)
{
    if (t == AD_F32) col2im_float(G, col, X);
    else col2im_double(G, col, X);
}

/* A 1x1 kernel with stride 1 and no padding reads the image as its own im2col matrix. */
static bool is_pointwise(const geom *G)
{
    return G->kh == 1 && G->kw == 1 && G->sh == 1 && G->sw == 1 && G->ph == 0 && G->pw == 0;
}

static size_t round64(size_t b) { return (b + 63) / 64 * 64; }
static size_t col_bytes(const geom *G, ad_dtype t) { return round64((size_t)(G->ck * G->ohw) * ad_dtype_size(t) + 1); }
static int64_t dw_chunks(const geom *G) { return G->n < DW_CHUNKS ? (G->n > 0 ? G->n : 1) : DW_CHUNKS; }

/* How many threads a convolution's loops use: the pool's, when the work pays for them. */
static int conv_threads(const geom *G, int64_t items)
{
    double flops = 2.0 * (double)G->n * (double)G->o * (double)G->ck * (double)G->ohw;
    int t = flops < PAR_FLOPS ? 1 : ad_get_threads();
    return t > items ? (int)(items > 0 ? items : 1) : t;
}

/* ---- the three products ---- */

/* The operands of one convolution product (either dtype): y = conv(x, w) + b, or its
 * adjoints dx += conv_input_grad(gy, w) and dw (+)= conv_weight_grad(x, gy). */
typedef struct {
    geom G;
    ad_dtype t;
    size_t es;
    const char *x, *w, *b, *gy;
    char *y, *dx, *dw;
    bool acc;         /* y or dw: add into it rather than overwrite */
    char *work;       /* one im2col matrix of `slot` bytes per worker */
    size_t slot;
    char *parts;      /* dW of each chunk of the batch, when there are several */
    int64_t chunks;
} conv_job;

typedef struct {
    const conv_job *j;
    const char *base; /* the image's block of Y: the epilogue's block c is row (c - base) / ldc */
    const char *b;
} bias_ctx;

/* The bias added where gemm finishes a block of Y, while it is in cache. */
static void bias_block(void *ctx, void *c, int64_t ldc, int64_t rows, int64_t cols)
{
    const bias_ctx *bc = ctx;
    size_t es = bc->j->es;
    int64_t r = (int64_t)(((const char *)c - bc->base) / (ptrdiff_t)es) / ldc;
    if (bc->j->t == AD_F32) bias_rows_float(c, ldc, (const float *)bc->b + r, rows, cols);
    else bias_rows_double(c, ldc, (const double *)bc->b + r, rows, cols);
}

/* y[n] (+)= W col(x[n]) + b, group by group. */
static void forward_image(void *ctx, int64_t n, int worker)
{
    const conv_job *j = ctx;
    const geom *G = &j->G;
    size_t es = j->es;
    char *col = j->work + (size_t)worker * j->slot;
    for (int64_t g = 0; g < G->groups; g++) {
        const char *xg = j->x + (size_t)((n * G->c + g * G->cg) * G->hw) * es;
        char *yg = j->y + (size_t)((n * G->o + g * G->og) * G->ohw) * es;
        const char *B = xg;
        if (!is_pointwise(G)) {
            im2col(j->t, G, xg, col);
            B = col;
        }
        bias_ctx bc = {j, yg, j->b ? j->b + (size_t)(g * G->og) * es : NULL};
        gemm_epilogue ep = {bias_block, &bc};
        gemm_ex(j->t, false, false, G->og, G->ohw, G->ck, j->w + (size_t)(g * G->og * G->ck) * es,
                G->ck, B, G->ohw, yg, G->ohw, j->acc, j->b ? &ep : NULL);
    }
}

/* Images [k n / chunks, (k + 1) n / chunks): their dx (each image its own), and their part of
 * dW, in the chunk's own buffer unless the batch is one chunk. */
static void backward_chunk(void *ctx, int64_t k, int worker)
{
    const conv_job *j = ctx;
    const geom *G = &j->G;
    size_t es = j->es;
    char *col = j->work + (size_t)worker * j->slot;
    char *dw = !j->dw ? NULL : j->chunks > 1 ? j->parts + (size_t)(k * G->o * G->ck) * es : j->dw;
    bool acc = j->chunks > 1 ? false : j->acc;
    int64_t n0 = G->n * k / j->chunks, n1 = G->n * (k + 1) / j->chunks;
    for (int64_t n = n0; n < n1; n++)
        for (int64_t g = 0; g < G->groups; g++) {
            const char *wg = j->w + (size_t)(g * G->og * G->ck) * es;
            const char *gyg = j->gy + (size_t)((n * G->o + g * G->og) * G->ohw) * es;
            size_t xoff = (size_t)((n * G->c + g * G->cg) * G->hw) * es;
            if (dw) { /* dW[og, ck] (+)= gy[og, ohw] col[ck, ohw]^T */
                const char *B = j->x + xoff;
                if (!is_pointwise(G)) {
                    im2col(j->t, G, B, col);
                    B = col;
                }
                gemm(j->t, false, true, G->og, G->ck, G->ohw, gyg, G->ohw, B, G->ohw,
                     dw + (size_t)(g * G->og * G->ck) * es, G->ck, acc || n > n0);
            }
            if (j->dx) { /* dcol[ck, ohw] = W[og, ck]^T gy[og, ohw], folded onto dx */
                if (is_pointwise(G))
                    gemm(j->t, true, false, G->ck, G->ohw, G->og, wg, G->ck, gyg, G->ohw, j->dx + xoff,
                         G->ohw, true);
                else {
                    gemm(j->t, true, false, G->ck, G->ohw, G->og, wg, G->ck, gyg, G->ohw, col, G->ohw, false);
                    col2im(j->t, G, col, j->dx + xoff);
                }
            }
        }
}

/* The scratch a run of `threads` workers needs: an im2col matrix each, and dW's chunks. */
static size_t work_bytes(const geom *G, ad_dtype t, int threads, bool with_dw)
{
    int64_t chunks = dw_chunks(G);
    size_t parts = with_dw && chunks > 1 ? (size_t)(chunks * G->o * G->ck) * ad_dtype_size(t) : 0;
    return (size_t)threads * col_bytes(G, t) + parts;
}

static conv_job make_job(const geom *G, ad_dtype t, char *work, int threads)
{
    return (conv_job){.G = *G, .t = t, .es = ad_dtype_size(t), .work = work, .slot = col_bytes(G, t),
                      .parts = work + (size_t)threads * col_bytes(G, t)};
}

/* y (+)= conv(x, w) + b (b may be NULL). */
static void run_forward(ad_dtype t, const geom *G, const void *x, const void *w, const void *b,
                        void *y, bool acc, char *work, int threads)
{
    conv_job j = make_job(G, t, work, threads);
    j.x = x, j.w = w, j.b = b, j.y = y, j.acc = acc;
    if (G->n * G->o * G->ohw > 0) pool_parallel_for(G->n, threads, forward_image, &j);
}

/* dx += the adjoint of conv(., w) at gy, and dw (+)= the adjoint of conv(x, .) at gy; either
 * may be NULL. */
static void run_backward(ad_dtype t, const geom *G, const void *x, const void *w, const void *gy,
                         void *dx, void *dw, bool acc, char *work, int threads)
{
    conv_job j = make_job(G, t, work, threads);
    j.x = x, j.w = w, j.gy = gy, j.dx = dx, j.dw = dw, j.acc = acc;
    j.chunks = dw ? dw_chunks(G) : G->n > 0 ? G->n : 1;
    size_t dw_size = (size_t)(G->o * G->ck);
    if (dw && !acc && G->n * G->ohw == 0) memset(dw, 0, dw_size * j.es);
    if (G->n * G->ohw == 0) return;
    pool_parallel_for(j.chunks, threads, backward_chunk, &j);
    if (dw && j.chunks > 1) {
        if (t == AD_F32) sum_parts_float(dw, (const float *)j.parts, j.chunks, (int64_t)dw_size, acc);
        else sum_parts_double(dw, (const double *)j.parts, j.chunks, (int64_t)dw_size, acc);
    }
}

/* A sweep's scratch for node n (a reverse rule's): NULL with the error set if memory ran out. */
static char *sweep_scratch(ad_graph *g, ad_node *n, const geom *G, int threads, bool with_dw)
{
    return node_scratch(g, n, work_bytes(G, (ad_dtype)n->dtype, threads, with_dw));
}

/* ---- the three convolution ops ---- */

/* Each keeps the im2col matrices of its forward pass (and of its forward rule, which is two
 * forward passes), made when it is recorded so that neither a replay nor a workspace's copy
 * allocates; a replay uses the threads there were at recording. */
typedef struct {
    char *work;
    int threads;
} conv_state;

/* The shapes of x and w for the three ops, from their inputs and parameters. */
static int op_geom(const ad_op_ctx *c, int op, geom *G, char *msg, size_t len)
{
    ad_shape a = node_shape(c->in[0]), b = node_shape(c->in[1]), x = a, w = b;
    char sa[96], sb[96];
    if (op != OP_CONV2D && (a.rank != 4 || b.rank != 4)) {
        snprintf(msg, len, "%s and %s: expected 4-D operands", ad_shape_str(&a, sa, sizeof sa),
                 ad_shape_str(&b, sb, sizeof sb));
        return 1;
    }
    int64_t groups = (int64_t)c->param[CP_GROUPS];
    if (op == OP_CONV2D_INPUT_GRAD && b.dim[1] > INT64_MAX / 4 / groups) {
        snprintf(msg, len, "weight %s: too many channels for %lld groups", ad_shape_str(&b, sb, sizeof sb),
                 (long long)groups);
        return 1;
    }
    if (op == OP_CONV2D_INPUT_GRAD) /* (gy, w) -> x [N, C, H, W] */
        x = AD_SHAPE(a.dim[0], b.dim[1] * groups, (int64_t)c->param[CP_COUNT], (int64_t)c->param[CP_COUNT + 1]);
    if (op == OP_CONV2D_WEIGHT_GRAD) /* (x, gy) -> w [O, C/groups, KH, KW] */
        w = AD_SHAPE(b.dim[1], a.dim[1] / groups, (int64_t)c->param[CP_COUNT], (int64_t)c->param[CP_COUNT + 1]);
    if (conv_geom(&x, &w, c->param, NULL, G, msg, len)) return 1;
    if (op != OP_CONV2D) {
        ad_shape gy = op == OP_CONV2D_INPUT_GRAD ? a : b, want = AD_SHAPE(G->n, G->o, G->oh, G->ow);
        if (gy.dim[0] != want.dim[0] || gy.dim[1] != want.dim[1] || gy.dim[2] != want.dim[2] ||
            gy.dim[3] != want.dim[3]) {
            snprintf(msg, len, "gradient %s: the convolution's output is %s", ad_shape_str(&gy, sa, sizeof sa),
                     ad_shape_str(&want, sb, sizeof sb));
            return 1;
        }
    }
    return 0;
}

static int conv2d_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    geom G;
    if (c->nin != 2 && c->nin != 3) {
        snprintf(msg, len, "takes 2 or 3 inputs (x, w, b), given %d", c->nin);
        return 1;
    }
    if (op_geom(c, OP_CONV2D, &G, msg, len)) return 1;
    if (c->nin == 3) {
        ad_shape b = node_shape(c->in[2]);
        if (b.rank != 1 || b.dim[0] != G.o) {
            char sb[96];
            snprintf(msg, len, "bias %s: expected [%lld], one per output channel",
                     ad_shape_str(&b, sb, sizeof sb), (long long)G.o);
            return 1;
        }
    }
    *out = AD_SHAPE(G.n, G.o, G.oh, G.ow);
    return 0;
}

static int input_grad_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    geom G;
    if (op_geom(c, OP_CONV2D_INPUT_GRAD, &G, msg, len)) return 1;
    *out = AD_SHAPE(G.n, G.c, G.h, G.w);
    return 0;
}

static int weight_grad_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    geom G;
    if (op_geom(c, OP_CONV2D_WEIGHT_GRAD, &G, msg, len)) return 1;
    *out = AD_SHAPE(G.o, G.cg, G.kh, G.kw);
    return 0;
}

/* The forward pass's scratch: conv2d's runs over the images, input_grad's too, weight_grad's
 * over dW's chunks (with their buffers). */
static ad_status conv_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    (void)arg, (void)msg, (void)len;
    conv_state *st = c->state;
    geom G = node_geom(c);
    bool dw = c->out->op == OP_CONV2D_WEIGHT_GRAD;
    st->threads = conv_threads(&G, dw ? dw_chunks(&G) : G.n);
    st->work = ad_op_alloc(c, work_bytes(&G, (ad_dtype)c->out->dtype, st->threads, dw));
    return st->work ? AD_OK : AD_ERR_NOMEM;
}

static void conv2d_forward(const ad_op_ctx *c)
{
    const conv_state *st = c->state;
    geom G = node_geom(c);
    run_forward((ad_dtype)c->out->dtype, &G, node_data(c->in[0]), node_data(c->in[1]),
                c->nin == 3 ? node_data(c->in[2]) : NULL, node_data(c->out), false, st->work, st->threads);
}

static ad_status conv2d_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    geom G = node_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    bool assign;
    void *GX = ad_input_grad_buffer(g, c->in[0]);
    void *GW = grad_for_write(g, c->in[1], true, &assign);
    void *GB = c->nin == 3 ? ad_input_grad_buffer(g, c->in[2]) : NULL;
    if (g->status) return g->status;
    const void *GY = ad_node_grad_data(c->out);
    if (GX || GW) {
        int threads = conv_threads(&G, GW ? dw_chunks(&G) : G.n);
        char *work = sweep_scratch(g, c->out, &G, threads, GW != NULL);
        if (!work) return g->status;
        run_backward(t, &G, node_data(c->in[0]), node_data(c->in[1]), GY, GX, GW, !assign, work, threads);
    }
    if (GB) {
        if (t == AD_F32) sum_rows_float(GY, GB, G.n, G.o, G.ohw);
        else sum_rows_double(GY, GB, G.n, G.o, G.ohw);
    }
    return AD_OK;
}

/* Bilinear: t_y = conv(t_x, w) + conv(x, t_w) + t_b. */
static ad_status conv2d_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    const conv_state *st = c->state;
    geom G = node_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    const void *TX = ad_tangent_data(g, c->in[0]), *TW = ad_tangent_data(g, c->in[1]);
    const void *TB = c->nin == 3 ? ad_tangent_data(g, c->in[2]) : NULL;
    char *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    if (TX) run_forward(t, &G, TX, node_data(c->in[1]), NULL, T, true, st->work, st->threads);
    if (TW) run_forward(t, &G, node_data(c->in[0]), TW, NULL, T, true, st->work, st->threads);
    size_t es = ad_dtype_size(t);
    if (TB)
        for (int64_t n = 0; n < G.n; n++) {
            char *Tn = T + (size_t)(n * G.o * G.ohw) * es;
            if (t == AD_F32) bias_rows_float((float *)Tn, G.ohw, TB, G.o, G.ohw);
            else bias_rows_double((double *)Tn, G.ohw, TB, G.o, G.ohw);
        }
    return AD_OK;
}

/* One of the family on a and b with the node's geometry and, for the adjoint ops, two sizes. */
static ad_node *conv_op(const ad_op_ctx *c, int op, ad_node *a, ad_node *b, int64_t s0, int64_t s1)
{
    double p[CP_COUNT + 2];
    memcpy(p, c->param, CP_COUNT * sizeof *p);
    p[CP_COUNT] = (double)s0, p[CP_COUNT + 1] = (double)s1;
    ad_node *in[2] = {a, b};
    return ad_apply(c->graph, op, in, 2, p, op == OP_CONV2D ? CP_COUNT : CP_COUNT + 2);
}

static ad_node *conv2d_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    geom G = node_geom(c);
    if (i == 0) return conv_op(c, OP_CONV2D_INPUT_GRAD, gy, c->in[1], G.h, G.w);
    if (i == 1) return conv_op(c, OP_CONV2D_WEIGHT_GRAD, c->in[0], gy, G.kh, G.kw);
    ad_shape per_channel = AD_SHAPE(G.o, 1, 1);
    return ad_reshape(c->graph, sum_to_shape(c->graph, gy, &per_channel), AD_SHAPE(G.o));
}

const op_entry op_conv2d = {
    .def = {"conv2d", AD_VARIADIC, conv2d_rule, conv2d_forward, conv2d_backward,
            "d/dx[conv(x, w) + b] = conv_input_grad(G, w), d/dw = conv_weight_grad(x, G), d/db = sum of G per channel",
            conv2d_jvp, sizeof(conv_state), conv_init, conv2d_grad_graph},
    .nparam = CP_COUNT, .nparam_min = CP_COUNT, .param_names = CONV_PARAM_NAMES ")",
    .params = conv_params};

/* dx = conv_input_grad(gy, w): the adjoint of conv(., w). */
static void input_grad_forward(const ad_op_ctx *c)
{
    const conv_state *st = c->state;
    geom G = node_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    memset(node_data(c->out), 0, (size_t)node_size(c->out) * ad_dtype_size(t));
    run_backward(t, &G, NULL, node_data(c->in[1]), node_data(c->in[0]), node_data(c->out), NULL, false,
                 st->work, st->threads);
}

/* <G, dx(gy, w)> = <conv(G, w), gy>: d/dgy = conv(G, w), d/dw = conv_weight_grad(G, gy). */
static ad_status input_grad_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    geom G = node_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    bool assign;
    void *GGY = ad_input_grad_buffer(g, c->in[0]);
    void *GW = grad_for_write(g, c->in[1], true, &assign);
    if (g->status) return g->status;
    const void *GX = ad_node_grad_data(c->out);
    int threads = conv_threads(&G, GW ? dw_chunks(&G) : G.n);
    char *work = sweep_scratch(g, c->out, &G, threads, GW != NULL);
    if (!work) return g->status;
    if (GGY) run_forward(t, &G, GX, node_data(c->in[1]), NULL, GGY, true, work, threads);
    if (GW) run_backward(t, &G, GX, NULL, node_data(c->in[0]), NULL, GW, !assign, work, threads);
    return AD_OK;
}

/* The adjoint ops are bilinear too: t = op(t_a, b) + op(a, t_b), for input_grad (a, b) =
 * (gy, w) and weight_grad (a, b) = (x, gy). */
static ad_status adjoint_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    const conv_state *st = c->state;
    geom G = node_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    const void *TA = ad_tangent_data(g, c->in[0]), *TB = ad_tangent_data(g, c->in[1]);
    char *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    bool dx = c->out->op == OP_CONV2D_INPUT_GRAD;
    for (int side = 0; side < 2; side++) {
        if (!(side ? TB : TA)) continue;
        const void *a = side ? node_data(c->in[0]) : TA, *b = side ? TB : node_data(c->in[1]);
        if (dx) run_backward(t, &G, NULL, b, a, T, NULL, false, st->work, st->threads);
        else run_backward(t, &G, a, NULL, b, NULL, T, true, st->work, st->threads);
    }
    return AD_OK;
}

static ad_node *input_grad_grad_graph(const ad_op_ctx *c, ad_node *gx, int i)
{
    geom G = node_geom(c);
    if (i == 0) return conv_op(c, OP_CONV2D, gx, c->in[1], 0, 0);
    return conv_op(c, OP_CONV2D_WEIGHT_GRAD, gx, c->in[0], G.kh, G.kw);
}

const op_entry op_conv2d_input_grad = {
    .def = {"conv2d_input_grad", 2, input_grad_rule, input_grad_forward, input_grad_backward,
            "d/dgy[conv_input_grad(gy, w)] = conv(G, w), d/dw = conv_weight_grad(G, gy)",
            adjoint_jvp, sizeof(conv_state), conv_init, input_grad_grad_graph},
    .nparam = CP_COUNT + 2, .nparam_min = CP_COUNT + 2, .param_names = CONV_PARAM_NAMES ", height, width)",
    .params = conv_params};

/* dw = conv_weight_grad(x, gy): the adjoint of conv(x, .). */
static void weight_grad_forward(const ad_op_ctx *c)
{
    const conv_state *st = c->state;
    geom G = node_geom(c);
    run_backward((ad_dtype)c->out->dtype, &G, node_data(c->in[0]), NULL, node_data(c->in[1]), NULL,
                 node_data(c->out), false, st->work, st->threads);
}

/* <G, dw(x, gy)> = <conv(x, G), gy>: d/dx = conv_input_grad(gy, G), d/dgy = conv(x, G). */
static ad_status weight_grad_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    geom G = node_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    void *GX = ad_input_grad_buffer(g, c->in[0]), *GGY = ad_input_grad_buffer(g, c->in[1]);
    if (g->status) return g->status;
    const void *GW = ad_node_grad_data(c->out);
    int threads = conv_threads(&G, G.n);
    char *work = sweep_scratch(g, c->out, &G, threads, false);
    if (!work) return g->status;
    if (GX) run_backward(t, &G, NULL, GW, node_data(c->in[1]), GX, NULL, false, work, threads);
    if (GGY) run_forward(t, &G, node_data(c->in[0]), GW, NULL, GGY, true, work, threads);
    return AD_OK;
}

static ad_node *weight_grad_grad_graph(const ad_op_ctx *c, ad_node *gw, int i)
{
    geom G = node_geom(c);
    if (i == 0) return conv_op(c, OP_CONV2D_INPUT_GRAD, c->in[1], gw, G.h, G.w);
    return conv_op(c, OP_CONV2D, c->in[0], gw, 0, 0);
}

const op_entry op_conv2d_weight_grad = {
    .def = {"conv2d_weight_grad", 2, weight_grad_rule, weight_grad_forward, weight_grad_backward,
            "d/dx[conv_weight_grad(x, gy)] = conv_input_grad(gy, G), d/dgy = conv(x, G)",
            adjoint_jvp, sizeof(conv_state), conv_init, weight_grad_grad_graph},
    .nparam = CP_COUNT + 2, .nparam_min = CP_COUNT + 2, .param_names = CONV_PARAM_NAMES ", kernel_h, kernel_w)",
    .params = conv_kernel_params};

/* ---- pooling ---- */

/* A pooling's sizes: planes = n c images of h x w, windows kh x kw, output oh x ow. */
typedef struct {
    int64_t planes, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
} pgeom;

/* Parameters: (kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w), then max pooling's
 * (dilation_h, dilation_w) or avg_pool2d_grad's (height, width). */
enum { PP_KH, PP_KW, PP_SH, PP_SW, PP_PH, PP_PW, PP_COUNT };

/* As PyTorch, the padding is at most half the kernel: no window lies in the padding alone. */
static int check_pool_params(const ad_op_ctx *c, bool dilated, char *msg, size_t len)
{
    static const char *const what[PP_COUNT] = {"kernel_h", "kernel_w", "stride_h", "stride_w"};
    const double *p = c->param;
    for (int i = 0; i < PP_PH; i++)
        if (!param_int(p[i], 1, INT32_MAX, what[i], msg, len)) return 1;
    for (int i = PP_PH; i <= PP_PW; i++) {
        double half = floor(p[i - PP_PH] / 2);
        if (!param_int(p[i], 0, INT32_MAX, i == PP_PH ? "padding_h" : "padding_w", msg, len)) return 1;
        if (p[i] > half) {
            snprintf(msg, len, "padding %g must be at most half the kernel's %s %g", p[i],
                     i == PP_PH ? "height" : "width", p[i - PP_PH]);
            return 1;
        }
    }
    for (int i = PP_COUNT; i < c->nparam; i++)
        if (!param_int(p[i], dilated ? 1 : 0, dilated ? INT32_MAX : PARAM_DIM_MAX,
                       dilated ? "dilation" : "size", msg, len))
            return 1;
    return 0;
}
static int max_pool_params(const ad_op_ctx *c, char *msg, size_t len) { return check_pool_params(c, true, msg, len); }
static int avg_pool_params(const ad_op_ctx *c, char *msg, size_t len) { return check_pool_params(c, false, msg, len); }

/* The geometry of pooling x with parameters p (dilated: p holds the dilations). */
static int pool_geom(const ad_shape *x, const double *p, bool dilated, pgeom *P, char *msg, size_t len)
{
    char sx[96];
    ad_shape_str(x, sx, sizeof sx);
    *P = (pgeom){0};
    if (x->rank != 4) {
        snprintf(msg, len, "input %s: expected [N,C,H,W]", sx);
        return 1;
    }
    *P = (pgeom){.h = x->dim[2], .w = x->dim[3], .kh = (int64_t)p[PP_KH], .kw = (int64_t)p[PP_KW],
                 .sh = (int64_t)p[PP_SH], .sw = (int64_t)p[PP_SW], .ph = (int64_t)p[PP_PH],
                 .pw = (int64_t)p[PP_PW], .dh = dilated ? (int64_t)p[PP_COUNT] : 1,
                 .dw = dilated ? (int64_t)p[PP_COUNT + 1] : 1};
    if (P->w > 0 && P->h > INT32_MAX / P->w) { /* max pooling keeps positions as int32 */
        snprintf(msg, len, "input %s: a plane of more than 2^31 - 1 elements", sx);
        return 1;
    }
    if (!out_len(P->h, P->kh, P->sh, P->ph, P->dh, &P->oh) || !out_len(P->w, P->kw, P->sw, P->pw, P->dw, &P->ow)) {
        snprintf(msg, len, "input %s: the window %lldx%lld (dilation %lldx%lld) does not fit the padded input %lldx%lld",
                 sx, (long long)P->kh, (long long)P->kw, (long long)P->dh, (long long)P->dw,
                 (long long)(P->h + 2 * P->ph), (long long)(P->w + 2 * P->pw));
        return 1;
    }
    P->planes = x->dim[0] * x->dim[1];
    return 0;
}

static bool is_2x2(const pgeom *P)
{
    return P->kh == 2 && P->kw == 2 && P->sh == 2 && P->sw == 2 && P->ph == 0 && P->pw == 0 &&
           P->dh == 1 && P->dw == 1;
}

/* Max pooling of planes [p0, p1): each window's largest element and its position in the plane
 * (-1 for a window wholly in the padding, which dilation allows), the first of equals and NaN
 * taken over any number, as PyTorch's CPU kernel.  scatter: dx[argmax] += gy; gather: out (+)=
 * g[argmax].  Average pooling: the window's sum over kh kw (the padding counts as zeros), and
 * its adjoint. */
#define POOL_KERNELS(T)                                                                         \
    AD_VECTOR_CLONES static void max_pool_##T(const pgeom *P, const T *X, T *Y, int32_t *A, int64_t p0, int64_t p1) \
    {                                                                                           \
        int64_t W = P->w, hw = P->h * P->w, ohw = P->oh * P->ow;                                \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            const T *x = X + pl * hw;                                                           \
            T *y = Y + pl * ohw;                                                                \
            int32_t *a = A + pl * ohw;                                                          \
            if (is_2x2(P)) { /* selects, not branches: the loop vectorises */                  \
                for (int64_t oh = 0; oh < P->oh; oh++) {                                        \
                    const T *r0 = x + 2 * oh * W, *r1 = r0 + W;                                 \
                    T *yr = y + oh * P->ow;                                                     \
                    int32_t *ar = a + oh * P->ow, base = (int32_t)(2 * oh * W);                 \
                    for (int64_t ow = 0; ow < P->ow; ow++) {                                    \
                        T v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1]; \
                        int32_t k = base + (int32_t)(2 * ow);                                   \
                        bool t1 = v1 > v0 || v1 != v1;                                          \
                        T m = t1 ? v1 : v0;                                                     \
                        int32_t best = t1 ? k + 1 : k;                                          \
                        bool t2 = v2 > m || v2 != v2;                                           \
                        m = t2 ? v2 : m;                                                        \
                        best = t2 ? k + (int32_t)W : best;                                      \
                        bool t3 = v3 > m || v3 != v3;                                           \
                        yr[ow] = t3 ? v3 : m;                                                   \
                        ar[ow] = t3 ? k + (int32_t)W + 1 : best;                                \
                    }                                                                           \
                }                                                                               \
                continue;                                                                       \
            }                                                                                   \
            for (int64_t oh = 0; oh < P->oh; oh++)                                              \
                for (int64_t ow = 0; ow < P->ow; ow++) {                                        \
                    T m = (T)-INFINITY;                                                         \
                    int32_t best = -1;                                                          \
                    for (int64_t i = 0; i < P->kh; i++) {                                       \
                        int64_t ih = oh * P->sh - P->ph + i * P->dh;                            \
                        if (ih < 0 || ih >= P->h) continue;                                     \
                        for (int64_t j = 0; j < P->kw; j++) {                                   \
                            int64_t iw = ow * P->sw - P->pw + j * P->dw;                        \
                            if (iw < 0 || iw >= W) continue;                                    \
                            T v = x[ih * W + iw];                                               \
                            if (best < 0 || v > m || v != v) m = v, best = (int32_t)(ih * W + iw); \
                        }                                                                       \
                    }                                                                           \
                    y[oh * P->ow + ow] = m;                                                     \
                    a[oh * P->ow + ow] = best;                                                  \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
    static void scatter_##T(const pgeom *P, const int32_t *A, const T *gy, T *dx, int64_t p0, int64_t p1) \
    {                                                                                           \
        int64_t hw = P->h * P->w, ohw = P->oh * P->ow;                                          \
        for (int64_t pl = p0; pl < p1; pl++)                                                    \
            for (int64_t o = pl * ohw; o < (pl + 1) * ohw; o++)                                 \
                if (A[o] >= 0) dx[pl * hw + A[o]] += gy[o];                                     \
    }                                                                                           \
    static void gather_##T(const pgeom *P, const int32_t *A, const T *g, T *out, bool acc,     \
                           int64_t p0, int64_t p1)                                              \
    {                                                                                           \
        int64_t hw = P->h * P->w, ohw = P->oh * P->ow;                                          \
        for (int64_t pl = p0; pl < p1; pl++)                                                    \
            for (int64_t o = pl * ohw; o < (pl + 1) * ohw; o++) {                               \
                T v = A[o] >= 0 ? g[pl * hw + A[o]] : 0;                                        \
                out[o] = acc ? out[o] + v : v;                                                  \
            }                                                                                   \
    }                                                                                           \
    static void avg_pool_##T(const pgeom *P, const T *X, T *Y, bool acc, int64_t p0, int64_t p1) \
    {                                                                                           \
        int64_t W = P->w, hw = P->h * P->w, ohw = P->oh * P->ow;                                \
        T area = (T)(P->kh * P->kw);                                                            \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            const T *x = X + pl * hw;                                                           \
            T *y = Y + pl * ohw;                                                                \
            for (int64_t oh = 0; oh < P->oh; oh++)                                              \
                for (int64_t ow = 0; ow < P->ow; ow++) {                                        \
                    T s = 0;                                                                    \
                    if (is_2x2(P)) {                                                            \
                        const T *r = x + 2 * oh * W + 2 * ow;                                   \
                        s = r[0] + r[1] + r[W] + r[W + 1];                                      \
                    } else                                                                      \
                        for (int64_t i = 0; i < P->kh; i++) {                                   \
                            int64_t ih = oh * P->sh - P->ph + i;                                \
                            if (ih < 0 || ih >= P->h) continue;                                 \
                            for (int64_t j = 0; j < P->kw; j++) {                               \
                                int64_t iw = ow * P->sw - P->pw + j;                            \
                                if (iw >= 0 && iw < W) s += x[ih * W + iw];                     \
                            }                                                                   \
                        }                                                                       \
                    y[oh * P->ow + ow] = acc ? y[oh * P->ow + ow] + s / area : s / area;        \
                }                                                                               \
        }                                                                                       \
    }                                                                                           \
    static void avg_pool_grad_##T(const pgeom *P, const T *GY, T *DX, int64_t p0, int64_t p1)  \
    {                                                                                           \
        int64_t W = P->w, hw = P->h * P->w, ohw = P->oh * P->ow;                                \
        T area = (T)(P->kh * P->kw);                                                            \
        for (int64_t pl = p0; pl < p1; pl++) {                                                  \
            T *dx = DX + pl * hw;                                                               \
            const T *gy = GY + pl * ohw;                                                        \
            for (int64_t oh = 0; oh < P->oh; oh++)                                              \
                for (int64_t ow = 0; ow < P->ow; ow++) {                                        \
                    T d = gy[oh * P->ow + ow] / area;                                           \
                    for (int64_t i = 0; i < P->kh; i++) {                                       \
                        int64_t ih = oh * P->sh - P->ph + i;                                    \
                        if (ih < 0 || ih >= P->h) continue;                                     \
                        for (int64_t j = 0; j < P->kw; j++) {                                   \
                            int64_t iw = ow * P->sw - P->pw + j;                                \
                            if (iw >= 0 && iw < W) dx[ih * W + iw] += d;                        \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
        }                                                                                       \
    }
POOL_KERNELS(float)
POOL_KERNELS(double)

/* One pass of a pooling kernel over all planes, split across the pool's threads (planes are
 * independent, so the split changes no result). */
typedef enum { PK_MAX, PK_SCATTER, PK_GATHER, PK_AVG, PK_AVG_GRAD } pool_kind;
typedef struct {
    pgeom P;
    pool_kind kind;
    ad_dtype t;
    const void *in;
    void *out;
    int32_t *argmax;
    bool acc;
} pool_job;

static void pool_range(void *ctx, int64_t p0, int64_t p1)
{
    const pool_job *j = ctx;
    bool f = j->t == AD_F32;
    switch (j->kind) {
    case PK_MAX:
        if (f) max_pool_float(&j->P, j->in, j->out, j->argmax, p0, p1);
        else max_pool_double(&j->P, j->in, j->out, j->argmax, p0, p1);
        break;
    case PK_SCATTER:
        if (f) scatter_float(&j->P, j->argmax, j->in, j->out, p0, p1);
        else scatter_double(&j->P, j->argmax, j->in, j->out, p0, p1);
        break;
    case PK_GATHER:
        if (f) gather_float(&j->P, j->argmax, j->in, j->out, j->acc, p0, p1);
        else gather_double(&j->P, j->argmax, j->in, j->out, j->acc, p0, p1);
        break;
    case PK_AVG:
        if (f) avg_pool_float(&j->P, j->in, j->out, j->acc, p0, p1);
        else avg_pool_double(&j->P, j->in, j->out, j->acc, p0, p1);
        break;
    case PK_AVG_GRAD:
        if (f) avg_pool_grad_float(&j->P, j->in, j->out, p0, p1);
        else avg_pool_grad_double(&j->P, j->in, j->out, p0, p1);
        break;
    }
}

static void pool_run(const pgeom *P, pool_kind kind, ad_dtype t, const void *in, void *out,
                     int32_t *argmax, bool acc)
{
    pool_job j = {*P, kind, t, in, out, argmax, acc};
    int64_t per_plane = P->oh * P->ow * P->kh * P->kw;
    ad_parallel_for(P->planes, per_plane > 0 ? 1 + POOL_GRAIN / per_plane : 1, pool_range, &j);
}

/* ---- max pooling, and the scatter and gather of its gradients ---- */

typedef struct {
    int32_t *argmax; /* per output element, the position of its window's maximum in the plane */
} max_state;

static int max_pool_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape x = node_shape(c->in[0]);
    pgeom P;
    if (pool_geom(&x, c->param, true, &P, msg, len)) return 1;
    *out = AD_SHAPE(x.dim[0], x.dim[1], P.oh, P.ow);
    return 0;
}

static ad_status max_pool_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    (void)arg, (void)msg, (void)len;
    max_state *st = c->state;
    st->argmax = ad_op_alloc(c, (size_t)node_size(c->out) * sizeof *st->argmax);
    return st->argmax ? AD_OK : AD_ERR_NOMEM;
}

/* The geometry of max_pool2d node y. */
static pgeom max_geom(ad_node *y)
{
    ad_shape x = node_shape(node_in(y, 0));
    pgeom P;
    char msg[1024];
    pool_geom(&x, y->x->param_v, true, &P, msg, sizeof msg); /* checked when y was made */
    return P;
}
static int32_t *argmax_of(ad_node *y) { return ((max_state *)y->x->saved)->argmax; }

static void max_pool_forward(const ad_op_ctx *c)
{
    pgeom P = max_geom(c->out);
    pool_run(&P, PK_MAX, (ad_dtype)c->out->dtype, node_data(c->in[0]), node_data(c->out),
             argmax_of(c->out), false);
}

static ad_status max_pool_backward(const ad_op_ctx *c)
{
    void *GX = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GX) return c->graph->status;
    pgeom P = max_geom(c->out);
    pool_run(&P, PK_SCATTER, (ad_dtype)c->out->dtype, ad_node_grad_data(c->out), GX, argmax_of(c->out), false);
    return AD_OK;
}

/* t_y = t_x at each window's maximum. */
static ad_status max_pool_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    const void *TX = ad_tangent_data(g, c->in[0]);
    void *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    pgeom P = max_geom(c->out);
    if (TX) pool_run(&P, PK_GATHER, (ad_dtype)c->out->dtype, TX, T, argmax_of(c->out), false);
    return AD_OK;
}

static ad_node *max_pool_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    ad_node *in[2] = {gy, c->out};
    return ad_apply(c->graph, OP_MAX_POOL2D_SCATTER, in, 2, NULL, 0);
}

const op_entry op_max_pool2d = {
    .def = {"max_pool2d", 1, max_pool_rule, max_pool_forward, max_pool_backward,
            "d/dx[max_pool2d(x)] = G at each window's first maximum, 0 elsewhere", max_pool_jvp,
            sizeof(max_state), max_pool_init, max_pool_grad_graph},
    .nparam = PP_COUNT + 2, .nparam_min = PP_COUNT + 2,
    .param_names = "(kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w)",
    .params = max_pool_params};

/* scatter (gy, y) -> x's shape and gather (g, y) -> y's shape, y the max_pool2d node whose
 * maxima they follow (shapes: what the input must be, what the output is). */
static int follow_rule(const ad_op_ctx *c, bool scatter, ad_shape *out, char *msg, size_t len)
{
    ad_node *y = c->in[1];
    if (y->op != OP_MAX_POOL2D) {
        snprintf(msg, len, "the second input is a %s node, not the max_pool2d node whose maxima it follows",
                 op_entry_get(y->op)->def.name);
        return 1;
    }
    ad_shape a = node_shape(c->in[0]), ys = node_shape(y), xs = node_shape(node_in(y, 0));
    ad_shape want = scatter ? ys : xs;
    bool same = a.rank == want.rank;
    for (int d = 0; same && d < a.rank; d++) same = a.dim[d] == want.dim[d];
    if (!same) {
        char sa[96], sw[96];
        snprintf(msg, len, "gradient %s: expected %s", ad_shape_str(&a, sa, sizeof sa),
                 ad_shape_str(&want, sw, sizeof sw));
        return 1;
    }
    *out = scatter ? xs : ys;
    return 0;
}
static int scatter_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len) { return follow_rule(c, true, out, msg, len); }
static int gather_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len) { return follow_rule(c, false, out, msg, len); }

static void scatter_forward(const ad_op_ctx *c)
{
    pgeom P = max_geom(c->in[1]);
    ad_dtype t = (ad_dtype)c->out->dtype;
    memset(node_data(c->out), 0, (size_t)node_size(c->out) * ad_dtype_size(t));
    pool_run(&P, PK_SCATTER, t, node_data(c->in[0]), node_data(c->out), argmax_of(c->in[1]), false);
}

static void gather_forward(const ad_op_ctx *c)
{
    pgeom P = max_geom(c->in[1]);
    pool_run(&P, PK_GATHER, (ad_dtype)c->out->dtype, node_data(c->in[0]), node_data(c->out),
             argmax_of(c->in[1]), false);
}

/* Each is the other's adjoint; the positions (input 1) get no gradient. */
static ad_status follow_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    pgeom P = max_geom(c->in[1]);
    bool scatter = c->out->op == OP_MAX_POOL2D_SCATTER;
    pool_run(&P, scatter ? PK_GATHER : PK_SCATTER, (ad_dtype)c->out->dtype, ad_node_grad_data(c->out),
             GA, argmax_of(c->in[1]), true);
    return AD_OK;
}

static ad_status follow_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    const void *TA = ad_tangent_data(g, c->in[0]);
    void *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    pgeom P = max_geom(c->in[1]);
    bool scatter = c->out->op == OP_MAX_POOL2D_SCATTER;
    if (TA) pool_run(&P, scatter ? PK_SCATTER : PK_GATHER, (ad_dtype)c->out->dtype, TA, T, argmax_of(c->in[1]), true);
    return AD_OK;
}

static ad_node *follow_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    if (i == 1) return NULL;
    ad_node *in[2] = {gy, c->in[1]};
    bool scatter = c->out->op == OP_MAX_POOL2D_SCATTER;
    return ad_apply(c->graph, scatter ? OP_MAX_POOL2D_GATHER : OP_MAX_POOL2D_SCATTER, in, 2, NULL, 0);
}

const op_entry op_max_pool2d_scatter = {
    .def = {"max_pool2d_scatter", 2, scatter_rule, scatter_forward, follow_backward,
            "d/dgy[scatter(gy) to the maxima of y] = G gathered from them", follow_jvp, 0, NULL,
            follow_grad_graph}};

const op_entry op_max_pool2d_gather = {
    .def = {"max_pool2d_gather", 2, gather_rule, gather_forward, follow_backward,
            "d/dg[g gathered at the maxima of y] = G scattered to them", follow_jvp, 0, NULL,
            follow_grad_graph}};

/* ---- average pooling and its adjoint ---- */

static int avg_pool_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape x = node_shape(c->in[0]);
    pgeom P;
    if (pool_geom(&x, c->param, false, &P, msg, len)) return 1;
    *out = AD_SHAPE(x.dim[0], x.dim[1], P.oh, P.ow);
    return 0;
}

/* gy [N, C, OH, OW] -> [N, C, height, width]. */
static int avg_pool_grad_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape gy = node_shape(c->in[0]);
    char sg[96], sx[96];
    if (gy.rank != 4) {
        snprintf(msg, len, "gradient %s: expected [N,C,OH,OW]", ad_shape_str(&gy, sg, sizeof sg));
        return 1;
    }
    ad_shape x = AD_SHAPE(gy.dim[0], gy.dim[1], (int64_t)c->param[PP_COUNT], (int64_t)c->param[PP_COUNT + 1]);
    pgeom P;
    if (pool_geom(&x, c->param, false, &P, msg, len)) return 1;
    if (gy.dim[2] != P.oh || gy.dim[3] != P.ow) {
        snprintf(msg, len, "gradient %s: pooling %s gives %lldx%lld", ad_shape_str(&gy, sg, sizeof sg),
                 ad_shape_str(&x, sx, sizeof sx), (long long)P.oh, (long long)P.ow);
        return 1;
    }
    *out = x;
    return 0;
}

/* The geometry of an average pooling (x the pooled shape). */
static pgeom avg_geom(const ad_op_ctx *c)
{
    ad_shape x = node_shape(c->out->op == OP_AVG_POOL2D ? c->in[0] : c->out);
    pgeom P;
    char msg[1024];
    pool_geom(&x, c->param, false, &P, msg, sizeof msg); /* checked when the node was made */
    return P;
}

static void avg_pool_forward(const ad_op_ctx *c)
{
    pgeom P = avg_geom(c);
    pool_run(&P, PK_AVG, (ad_dtype)c->out->dtype, node_data(c->in[0]), node_data(c->out), NULL, false);
}

static void avg_pool_grad_forward(const ad_op_ctx *c)
{
    pgeom P = avg_geom(c);
    ad_dtype t = (ad_dtype)c->out->dtype;
    memset(node_data(c->out), 0, (size_t)node_size(c->out) * ad_dtype_size(t));
    pool_run(&P, PK_AVG_GRAD, t, node_data(c->in[0]), node_data(c->out), NULL, false);
}

/* Each is the other's adjoint. */
static ad_status avg_backward(const ad_op_ctx *c)
{
    void *GA = ad_input_grad_buffer(c->graph, c->in[0]);
    if (!GA) return c->graph->status;
    pgeom P = avg_geom(c);
    bool pool = c->out->op == OP_AVG_POOL2D;
    pool_run(&P, pool ? PK_AVG_GRAD : PK_AVG, (ad_dtype)c->out->dtype, ad_node_grad_data(c->out), GA, NULL, true);
    return AD_OK;
}

static ad_node *avg_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    double p[PP_COUNT + 2];
    memcpy(p, c->param, PP_COUNT * sizeof *p);
    bool pool = c->out->op == OP_AVG_POOL2D;
    if (pool) {
        ad_shape x = node_shape(c->in[0]);
        p[PP_COUNT] = (double)x.dim[2], p[PP_COUNT + 1] = (double)x.dim[3];
    }
    return ad_apply(c->graph, pool ? OP_AVG_POOL2D_GRAD : OP_AVG_POOL2D, &gy, 1, p, pool ? PP_COUNT + 2 : PP_COUNT);
}

const op_entry op_avg_pool2d = {
    .def = {"avg_pool2d", 1, avg_pool_rule, avg_pool_forward, avg_backward,
            "d/dx[avg_pool2d(x)] = G / (kh kw) spread over each window", jvp_linear, 0, NULL, avg_grad_graph},
    .nparam = PP_COUNT, .nparam_min = PP_COUNT,
    .param_names = "(kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w)", .params = avg_pool_params};

const op_entry op_avg_pool2d_grad = {
    .def = {"avg_pool2d_grad", 1, avg_pool_grad_rule, avg_pool_grad_forward, avg_backward,
            "d/dgy[avg_pool2d_grad(gy)] = avg_pool2d(G)", jvp_linear, 0, NULL, avg_grad_graph},
    .nparam = PP_COUNT + 2, .nparam_min = PP_COUNT + 2,
    .param_names = "(kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, height, width)",
    .params = avg_pool_params};

/* ---- the public functions ---- */

/* A field of the options, or its default where it is zero (negative values go on, for the
 * op's parameter check to refuse with its message). */
static double field(const ad_conv_opts *o, const int *v, int i, double dflt)
{
    return o && v[i] ? v[i] : dflt;
}

/* The convolution parameters of o for spatial axes (rows, cols) = entries (i, j) of o; conv1d's
 * one axis is the columns of a height-1 image. */
static void conv_params_of(const ad_conv_opts *o, bool one_axis, double *p)
{
    const int *st = o ? o->stride : NULL, *pd = o ? o->padding : NULL, *dl = o ? o->dilation : NULL;
    p[CP_SH] = one_axis ? 1 : field(o, st, 0, 1);
    p[CP_SW] = field(o, st, one_axis ? 0 : 1, 1);
    p[CP_PH] = one_axis ? 0 : field(o, pd, 0, 0);
    p[CP_PW] = field(o, pd, one_axis ? 0 : 1, 0);
    p[CP_DH] = one_axis ? 1 : field(o, dl, 0, 1);
    p[CP_DW] = field(o, dl, one_axis ? 0 : 1, 1);
    p[CP_GROUPS] = o && o->groups ? o->groups : 1;
}

ad_node *ad_conv2d(ad_graph *g, ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    double p[CP_COUNT];
    conv_params_of(o, false, p);
    ad_node *in[3] = {x, w, b};
    return ad_apply(g, OP_CONV2D, in, b ? 3 : 2, p, CP_COUNT);
}

ad_node *ad_conv1d(ad_graph *g, ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o)
{
    ad_node *in[3] = {x, w, b};
    if (!check_inputs(g, "conv1d", in, b ? 3 : 2)) return NULL;
    ad_shape xs = node_shape(x), ws = node_shape(w);
    char sx[96], sw[96], msg[1024];
    if (xs.rank != 3 || ws.rank != 3) {
        ad_set_error(g, AD_ERR_SHAPE, "conv1d: input %s and weight %s: expected input [N,C,L] and weight [O,C/groups,K]",
                     ad_shape_str(&xs, sx, sizeof sx), ad_shape_str(&ws, sw, sizeof sw));
        return NULL;
    }
    /* as conv2d on [N, C, 1, L] and [O, C/groups, 1, K], but checked here so that a message
     * names conv1d and the shapes it was given */
    double p[CP_COUNT];
    conv_params_of(o, true, p);
    ad_shape x4 = AD_SHAPE(xs.dim[0], xs.dim[1], 1, xs.dim[2]), w4 = AD_SHAPE(ws.dim[0], ws.dim[1], 1, ws.dim[2]);
    ad_op_ctx c = {.graph = g, .nin = 2, .in = in, .param = p, .nparam = CP_COUNT};
    geom G;
    if (conv_params(&c, msg, sizeof msg)) {
        ad_set_error(g, AD_ERR_ARG, "conv1d: %s", msg);
        return NULL;
    }
    char shown[240];
    snprintf(shown, sizeof shown, "input %s and weight %s", ad_shape_str(&xs, sx, sizeof sx),
             ad_shape_str(&ws, sw, sizeof sw));
    if (conv_geom(&x4, &w4, p, shown, &G, msg, sizeof msg)) {
        ad_set_error(g, AD_ERR_SHAPE, "conv1d: %s", msg);
        return NULL;
    }
    ad_node *y = ad_conv2d(g, ad_reshape(g, x, x4), ad_reshape(g, w, w4), b, &(ad_conv_opts){
        .stride = {1, (int)p[CP_SW]}, .padding = {0, (int)p[CP_PW]}, .dilation = {1, (int)p[CP_DW]},
        .groups = (int)p[CP_GROUPS]});
    return y ? ad_reshape(g, y, AD_SHAPE(G.n, G.o, G.ow)) : NULL;
}

/* The pooling parameters of o with kernel kh x kw (the stride defaults to the kernel). */
static void pool_params_of(const ad_conv_opts *o, int kh, int kw, bool dilated, double *p)
{
    p[PP_KH] = kh, p[PP_KW] = kw;
    p[PP_SH] = field(o, o ? o->stride : NULL, 0, kh);
    p[PP_SW] = field(o, o ? o->stride : NULL, 1, kw);
    p[PP_PH] = field(o, o ? o->padding : NULL, 0, 0);
    p[PP_PW] = field(o, o ? o->padding : NULL, 1, 0);
    if (dilated) {
        p[PP_COUNT] = field(o, o ? o->dilation : NULL, 0, 1);
        p[PP_COUNT + 1] = field(o, o ? o->dilation : NULL, 1, 1);
    }
}

ad_node *ad_max_pool2d(ad_graph *g, ad_node *x, int kh, int kw, const ad_conv_opts *o)
{
    double p[PP_COUNT + 2];
    pool_params_of(o, kh, kw, true, p);
    return ad_apply(g, OP_MAX_POOL2D, &x, 1, p, PP_COUNT + 2);
}

ad_node *ad_avg_pool2d(ad_graph *g, ad_node *x, int kh, int kw, const ad_conv_opts *o)
{
    if (!g) return NULL;
    if (o && ((o->dilation[0] != 0 && o->dilation[0] != 1) || (o->dilation[1] != 0 && o->dilation[1] != 1))) {
        ad_set_error(g, AD_ERR_ARG, "avg_pool2d: dilation %dx%d: average pooling has none (as torch's avg_pool2d)",
                     o->dilation[0], o->dilation[1]);
        return NULL;
    }
    double p[PP_COUNT];
    pool_params_of(o, kh, kw, false, p);
    return ad_apply(g, OP_AVG_POOL2D, &x, 1, p, PP_COUNT);
}
