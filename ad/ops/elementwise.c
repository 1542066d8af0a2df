/* Elementwise primitives.  Each op is a pair of scalar formulas (value, local derivative)
 * beside the words traces print; one engine applies them to float64 scalars (recording the
 * partials at forward time), and to tensors of either dtype with NumPy broadcasting. */
#include "../internal.h"
#include "../kernels/kernels.h"

static void ew_forward(const ad_op_ctx *c);
static ad_status ew_backward(const ad_op_ctx *c);
static ad_status ew_jvp(const ad_op_ctx *c);
static ad_node *ew_grad_graph(const ad_op_ctx *c, ad_node *gy, int i);

/* The registry entries, one per row of ad_ew.h. */
#define UNARY_ENTRY_(ID, name, sym, pre, text, F, D, D2, G)                                   \
    const op_entry op_##name = {.def = {#name, 1, NULL, ew_forward, ew_backward, text, ew_jvp, 0, NULL, ew_grad_graph}, \
                                .f1 = ad_ew_##name, .d1 = ad_ew_##name##_d, .dd1 = ad_ew_##name##_d2,   \
                                .symbol = sym, .prefix = pre};
#define UNARY_P_ENTRY_(ID, name, sym, pre, text, F, D, D2, G)                                 \
    const op_entry op_##name = {.def = {#name, 1, NULL, ew_forward, ew_backward, text, ew_jvp, 0, NULL, ew_grad_graph}, \
                                .f1 = ad_ew_##name, .d1 = ad_ew_##name##_d, .dd1 = ad_ew_##name##_d2,   \
                                .nparam = 1, .param_names = "(slope)", .symbol = sym, .prefix = pre};
#define BINARY_ENTRY_(ID, name, inf, text, ta, tb, fll, ffl, flr, ffr, F, DA, DB, DAA, DAB, DBB, GA, GB) \
    const op_entry op_##name = {.def = {#name, 2, NULL, ew_forward, ew_backward, text, ew_jvp, 0, NULL, ew_grad_graph}, \
                                .f2 = ad_ew_##name, .d2a = ad_ew_##name##_da, .d2b = ad_ew_##name##_db, \
                                .d2aa = ad_ew_##name##_daa, .d2ab = ad_ew_##name##_dab,                 \
                                .d2bb = ad_ew_##name##_dbb, .infix = inf, .formula = {ta, tb},          \
                                .fold_label = {fll, flr}, .fold_formula = {ffl, ffr}};
AD_EW_UNARY(UNARY_ENTRY_)
AD_EW_UNARY_P(UNARY_P_ENTRY_)
AD_EW_BINARY(BINARY_ENTRY_)

/* ---- broadcasting iteration ---- */

/* Strides of a and b over the output's index space (0 along broadcast axes), so one odometer
 * walks all three tensors. */
typedef struct {
    int rank;
    int64_t dim[AD_MAX_RANK], sa[AD_MAX_RANK], sb[AD_MAX_RANK];
    int64_t size, inner;
} bcast;


static void bcast_strides(const ad_shape *out, const ad_shape *s, int64_t *st)
{
    int64_t stride = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int k = i - (out->rank - s->rank);
        int64_t d = k >= 0 ? s->dim[k] : 1;
        st[i] = d == 1 ? 0 : stride;
        stride *= d;
    }
}

/* Adjacent axes along which both inputs are laid out like the output (or both broadcast)
 * merge into one, so same-shape and scalar operands become a single flat loop. */
static void bcast_init(bcast *it, const ad_shape *out, const ad_shape *a, const ad_shape *b)
{
    int64_t sa[AD_MAX_RANK], sb[AD_MAX_RANK];
    it->size = ad_shape_size(out);
    if (it->size == 0) { /* strides of [0, 2^62, 2^62] exceed int64, and nothing moves anyway */
        it->rank = 1, it->dim[0] = 0, it->sa[0] = it->sb[0] = 0, it->inner = 0;
        return;
    }
    bcast_strides(out, a, sa);
    bcast_strides(out, b, sb);
    int r = 0;
    for (int d = 0; d < out->rank; d++) {
        if (r > 0 && it->sa[r - 1] == sa[d] * out->dim[d] && it->sb[r - 1] == sb[d] * out->dim[d]) {
            it->dim[r - 1] *= out->dim[d];
            it->sa[r - 1] = sa[d];
            it->sb[r - 1] = sb[d];
            continue;
        }
        it->dim[r] = out->dim[d];
        it->sa[r] = sa[d];
        it->sb[r] = sb[d];
        r++;
    }
    if (r == 0) it->dim[0] = 1, it->sa[0] = it->sb[0] = 0, r = 1;
    it->rank = r;
    it->inner = it->dim[r - 1];
}

/* Calls BODY(i, ia, ib) for every output element i; ia and ib are the elements of a and b
 * that broadcast onto it.  The last axis is the inner loop. */
/* The inner loop, specialised for unit and zero strides so the compiler can vectorise it. */
#define BCAST_INNER_(it, BODY, SA, SB)                                                      \
    for (int64_t j_ = 0; j_ < (it)->inner; j_++) {                                        \
        int64_t i = i_ + j_, ia = ia0_ + j_ * (SA), ib = ib0_ + j_ * (SB);                \
        (void)ia, (void)ib;                                                               \
        BODY;                                                                             \
    }
#define BCAST_LOOP(it, BODY)                                                              \
    do {                                                                                  \
        int64_t idx_[AD_MAX_RANK] = {0}, ia0_ = 0, ib0_ = 0, i_ = 0;                      \
        int last_ = (it)->rank - 1;                                                       \
        int64_t sal_ = (it)->sa[last_], sbl_ = (it)->sb[last_];                           \
        while (i_ < (it)->size) {                                                         \
            if (sal_ == 1 && sbl_ == 1) { BCAST_INNER_(it, BODY, 1, 1) }                      \
            else if (sal_ == 1 && sbl_ == 0) { BCAST_INNER_(it, BODY, 1, 0) }                 \
            else if (sal_ == 0 && sbl_ == 1) { BCAST_INNER_(it, BODY, 0, 1) }                 \
            else { BCAST_INNER_(it, BODY, sal_, sbl_) }                                       \
            i_ += (it)->inner;                                                            \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                     \
                ia0_ += (it)->sa[d_];                                                     \
                ib0_ += (it)->sb[d_];                                                     \
                if (++idx_[d_] < (it)->dim[d_]) break;                                    \
                ia0_ -= (it)->sa[d_] * (it)->dim[d_];                                     \
                ib0_ -= (it)->sb[d_] * (it)->dim[d_];                                     \
                idx_[d_] = 0;                                                             \
            }                                                                             \
        }                                                                                 \
    } while (0)

#define BINARY_FORWARD(T)                                                                 \
    AD_VECTOR_CLONES                                                                      \
    static void binary_forward_##T(const op_entry *e, int op, bcast *it, const T *A,      \
                                   const T *B, T *Y)                                      \
    {                                                                                     \
        switch (op) {                                                                     \
        case OP_ADD: BCAST_LOOP(it, Y[i] = A[ia] + B[ib]); break;                        \
        case OP_SUB: BCAST_LOOP(it, Y[i] = A[ia] - B[ib]); break;                        \
        case OP_MUL: BCAST_LOOP(it, Y[i] = A[ia] * B[ib]); break;                        \
        case OP_DIV: BCAST_LOOP(it, Y[i] = (T)ad_ew_div(A[ia], B[ib])); break;           \
        default: BCAST_LOOP(it, Y[i] = (T)e->f2(A[ia], B[ib])); break;                   \
        }                                                                                 \
    }
BINARY_FORWARD(double)
BINARY_FORWARD(float)

/* Writes into the gradient D with `=` when the buffer is fresh (then D is not broadcast, so
 * every element is written exactly once) and with `+=` otherwise; the condition is loop
 * invariant, so the compiler unswitches it. */
#define PUT(dst, v) do { if (assign) (dst) = (v); else (dst) += (v); } while (0)

/* The vector-Jacobian product for input `side` (0: a, indexed by ia; 1: b, by ib). */
#define BINARY_BACKWARD(T)                                                                \
    AD_VECTOR_CLONES                                                                      \
    static void binary_backward_##T(const op_entry *e, int op, int side, bcast *it,       \
                                    const T *A, const T *B, const T *Y, const T *G, T *D, \
                                    bool assign)                                          \
    {                                                                                     \
        if (side == 0) switch (op) {                                                      \
            case OP_ADD: case OP_SUB: BCAST_LOOP(it, PUT(D[ia], G[i])); break;           \
            case OP_MUL: BCAST_LOOP(it, PUT(D[ia], G[i] * B[ib])); break;                \
            case OP_DIV: BCAST_LOOP(it, PUT(D[ia], (T)(G[i] * ad_ew_div_da(A[ia], B[ib], Y[i])))); break; \
            default: BCAST_LOOP(it, PUT(D[ia], (T)(G[i] * e->d2a(A[ia], B[ib], Y[i])))); break; \
            }                                                                             \
        else switch (op) {                                                                \
            case OP_ADD: BCAST_LOOP(it, PUT(D[ib], G[i])); break;                        \
            case OP_SUB: BCAST_LOOP(it, PUT(D[ib], -G[i])); break;                       \
            case OP_MUL: BCAST_LOOP(it, PUT(D[ib], G[i] * A[ia])); break;                \
            case OP_DIV: BCAST_LOOP(it, PUT(D[ib], (T)(G[i] * ad_ew_div_db(A[ia], B[ib], Y[i])))); break; \
            default: BCAST_LOOP(it, PUT(D[ib], (T)(G[i] * e->d2b(A[ia], B[ib], Y[i])))); break; \
            }                                                                             \
    }
BINARY_BACKWARD(double)
BINARY_BACKWARD(float)

/* Common rows whose formulas are cheap (BA's square, sqrt, recip; div above) inline instead
 * of one call per element through the registry: the same ad_ew.h formula on the same
 * operands, so the same bits (the library is built with -ffp-contract=off), and the loop can
 * be vectorised.  The rest still go through e->f1 / e->d1. */
#define UNARY_FWD_INLINE_(T, ID, name)                                                    \
    case OP_##ID: for (int64_t i = 0; i < n; i++) Y[i] = (T)ad_ew_##name(X[i], p); break;
#define UNARY_BWD_INLINE_(T, ID, name)                                                    \
    case OP_##ID:                                                                         \
        for (int64_t i = 0; i < n; i++) PUT(D[i], (T)(G[i] * ad_ew_##name##_d(X[i], Y[i], p))); \
        break;
#define UNARY_LOOPS(T)                                                                    \
    AD_VECTOR_CLONES                                                                      \
    static void unary_forward_##T(const op_entry *e, int op, int64_t n, const T *X,       \
                                  double p, T *Y)                                         \
    {                                                                                     \
        switch (op) {                                                                     \
        case OP_RELU: for (int64_t i = 0; i < n; i++) Y[i] = !(X[i] <= 0) ? X[i] : 0; break; \
        case OP_NEG: for (int64_t i = 0; i < n; i++) Y[i] = -X[i]; break;                 \
        UNARY_FWD_INLINE_(T, SQUARE, square)                                              \
        UNARY_FWD_INLINE_(T, SQRT, sqrt)                                                  \
        UNARY_FWD_INLINE_(T, RECIP, recip)                                                \
        default: for (int64_t i = 0; i < n; i++) Y[i] = (T)e->f1(X[i], p); break;         \
        }                                                                                 \
    }                                                                                     \
    AD_VECTOR_CLONES                                                                      \
    static void unary_backward_##T(const op_entry *e, int op, int64_t n, const T *X,      \
                                   const T *Y, double p, const T *G, T *D, bool assign)   \
    {                                                                                     \
        switch (op) {                                                                     \
        case OP_RELU: /* G read unconditionally: a select, not a mispredicted branch */   \
            for (int64_t i = 0; i < n; i++) {                                             \
                T g_ = G[i], x_ = X[i];                                                   \
                PUT(D[i], x_ <= 0 ? 0 : g_); /* at a NaN the gradient passes, as torch.relu's */ \
            }                                                                             \
            break;                                                                        \
        case OP_NEG: for (int64_t i = 0; i < n; i++) PUT(D[i], -G[i]); break;             \
        UNARY_BWD_INLINE_(T, SQUARE, square)                                              \
        UNARY_BWD_INLINE_(T, SQRT, sqrt)                                                  \
        UNARY_BWD_INLINE_(T, RECIP, recip)                                                \
        default:                                                                          \
            for (int64_t i = 0; i < n; i++) PUT(D[i], (T)(G[i] * e->d1(X[i], Y[i], p)));  \
            break;                                                                        \
        }                                                                                 \
    }
UNARY_LOOPS(double)
UNARY_LOOPS(float)

/* x*x: both sides' gradients in one pass, D (+)= v + v with v = G x, as the two passes of
 * the general path would leave it when D is fresh. */
#define SQUARE_BACKWARD(T)                                                                \
    AD_VECTOR_CLONES static void square_backward_##T(int64_t n, const T *X, const T *G, T *D, \
                                                     bool assign)                         \
    {                                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                 \
            T v = G[i] * X[i];                                                            \
            PUT(D[i], v + v);                                                             \
        }                                                                                 \
    }
SQUARE_BACKWARD(double)
SQUARE_BACKWARD(float)

static double op_p(const ad_op_ctx *c) { return c->nparam > 0 ? c->param[0] : 0.0; }

/* ---- large loops on the pool's threads ----
 *
 * A flat loop (operands of the output's shape, or scalars) of at least two grains is split
 * into contiguous slices, one per thread.  Element i's result does not depend on the split,
 * so the output is bitwise the same for any thread count.  Broadcast loops, and gradients
 * that sum over a broadcast operand, stay on one thread. */
enum { EW_GRAIN = 1 << 15 };

typedef enum { EW_UNARY_FWD, EW_UNARY_BWD, EW_BINARY_FWD, EW_BINARY_BWD, EW_SQUARE_BWD } ew_kind;

typedef struct {
    ew_kind kind;
    const op_entry *e;
    int op, side;
    bool f64, assign;
    double p;
    int64_t sa, sb;              /* flat strides of A and B: 1, or 0 for a scalar */
    const char *A, *B, *Y, *G;   /* unary ops: A is the input */
    char *D;
} ew_job;

static void ew_range(void *ctx, int64_t lo, int64_t hi)
{
    const ew_job *j = ctx;
    size_t es = j->f64 ? sizeof(double) : sizeof(float);
    int64_t n = hi - lo;
    const char *A = j->A + (size_t)(lo * j->sa) * es, *B = j->B ? j->B + (size_t)(lo * j->sb) * es : NULL;
    const char *Y = j->Y + (size_t)lo * es, *G = j->G ? j->G + (size_t)lo * es : NULL;
    char *D = j->D ? j->D + (size_t)(lo * (j->side ? j->sb : j->sa)) * es : NULL;
    bcast it = {.rank = 1, .dim = {n}, .sa = {j->sa}, .sb = {j->sb}, .size = n, .inner = n};
    switch (j->kind) {
    case EW_UNARY_FWD:
        if (j->f64) unary_forward_double(j->e, j->op, n, (const double *)A, j->p, (double *)Y);
        else unary_forward_float(j->e, j->op, n, (const float *)A, j->p, (float *)Y);
        break;
    case EW_UNARY_BWD:
        if (j->f64)
            unary_backward_double(j->e, j->op, n, (const double *)A, (const double *)Y, j->p, (const double *)G,
                                  (double *)D, j->assign);
        else
            unary_backward_float(j->e, j->op, n, (const float *)A, (const float *)Y, j->p, (const float *)G,
                                 (float *)D, j->assign);
        break;
    case EW_BINARY_FWD:
        if (j->f64) binary_forward_double(j->e, j->op, &it, (const double *)A, (const double *)B, (double *)Y);
        else binary_forward_float(j->e, j->op, &it, (const float *)A, (const float *)B, (float *)Y);
        break;
    case EW_BINARY_BWD:
        if (j->f64)
            binary_backward_double(j->e, j->op, j->side, &it, (const double *)A, (const double *)B, (const double *)Y,
                                   (const double *)G, (double *)D, j->assign);
        else
            binary_backward_float(j->e, j->op, j->side, &it, (const float *)A, (const float *)B, (const float *)Y,
                                  (const float *)G, (float *)D, j->assign);
        break;
    case EW_SQUARE_BWD:
        if (j->f64) square_backward_double(n, (const double *)A, (const double *)G, (double *)D, j->assign);
        else square_backward_float(n, (const float *)A, (const float *)G, (float *)D, j->assign);
        break;
    }
}

/* Runs j over n flat elements, split across threads when it pays (see above). */
static void ew_run(ew_job *j, int64_t n, bool splittable)
{
    if (splittable) ad_parallel_for(n, EW_GRAIN, ew_range, j);
    else ew_range(j, 0, n);
}

static void ew_forward(const ad_op_ctx *c)
{
    ad_node *y = c->out;
    const op_entry *e = op_entry_get(y->op);
    ew_job j = {.e = e, .op = y->op, .f64 = y->dtype == AD_F64, .p = op_p(c), .sa = 1,
                .A = node_data(c->in[0]), .Y = node_data(y)};
    if (c->nin == 1) {
        j.kind = EW_UNARY_FWD;
        ew_run(&j, node_size(y), true);
        return;
    }
    ad_shape so = node_shape(y), sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    bcast it;
    bcast_init(&it, &so, &sa, &sb);
    j.B = node_data(c->in[1]);
    if (it.rank == 1) {
        j.kind = EW_BINARY_FWD, j.sa = it.sa[0], j.sb = it.sb[0];
        ew_run(&j, it.size, true);
    } else if (j.f64) {
        binary_forward_double(e, y->op, &it, (const double *)j.A, (const double *)j.B, (double *)j.Y);
    } else {
        binary_forward_float(e, y->op, &it, (const float *)j.A, (const float *)j.B, (float *)j.Y);
    }
}

void ew_unary_inplace(int op, ad_dtype t, void *Y, int64_t ldy, int64_t rows, int64_t cols, double p)
{
    const op_entry *e = op_entry_get(op);
    size_t es = ad_dtype_size(t);
    for (int64_t r = 0; r < rows; r++) {
        void *y = (char *)Y + (size_t)(r * ldy) * es;
        if (t == AD_F64) unary_forward_double(e, op, cols, y, p, y);
        else unary_forward_float(e, op, cols, y, p, y);
    }
}

void ew_unary_grad(int op, ad_dtype t, int64_t n, const void *X, const void *Y, double p, const void *G, void *D)
{
    ew_job j = {.kind = EW_UNARY_BWD, .e = op_entry_get(op), .op = op, .f64 = t == AD_F64, .assign = true,
                .p = p, .sa = 1, .A = X, .Y = Y, .G = G, .D = D};
    ew_run(&j, n, true);
}

static ad_status ew_backward(const ad_op_ctx *c)
{
    ad_node *y = c->out;
    const op_entry *e = op_entry_get(y->op);
    void *G = ad_node_grad_data(y), *Y = node_data(y);
    if (!G) return AD_OK;
    ew_job j = {.e = e, .op = y->op, .f64 = y->dtype == AD_F64, .p = op_p(c), .sa = 1,
                .A = node_data(c->in[0]), .Y = Y, .G = G};
    if (c->nin == 1 || (y->op == OP_MUL && c->in[0] == c->in[1])) {
        if (!(j.D = grad_for_write(c->graph, c->in[0], true, &j.assign))) return c->graph->status;
        j.kind = c->nin == 1 ? EW_UNARY_BWD : EW_SQUARE_BWD;
        ew_run(&j, node_size(y), true);
        return AD_OK;
    }
    ad_shape so = node_shape(y), sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    bcast it;
    bcast_init(&it, &so, &sa, &sb);
    j.B = node_data(c->in[1]);
    j.kind = EW_BINARY_BWD, j.sa = it.sa[0], j.sb = it.sb[0];
    /* one input at a time: for x (op) x the second request finds the first's sum live */
    for (int side = 0; side < 2; side++) {
        ad_node *in = c->in[side];
        if (!(j.D = grad_for_write(c->graph, in, node_size(in) == node_size(y), &j.assign))) {
            if (c->graph->status) return c->graph->status;
            continue;
        }
        j.side = side;
        if (it.rank == 1) {
            /* a scalar operand's gradient is a sum over every element: one thread */
            ew_run(&j, it.size, (side ? j.sb : j.sa) != 0);
        } else if (j.f64) {
            binary_backward_double(e, y->op, side, &it, (const double *)j.A, (const double *)j.B, (const double *)Y,
                                   (const double *)G, (double *)j.D, j.assign);
        } else {
            binary_backward_float(e, y->op, side, &it, (const float *)j.A, (const float *)j.B, (const float *)Y,
                                  (const float *)G, (float *)j.D, j.assign);
        }
    }
    return AD_OK;
}

/* Forward rule: t_y = f'(x) t_x for a unary op; t_y = df/da t_a + df/db t_b (broadcast) for a
 * binary one, with a zero tangent's term left out. */
#define BINARY_JVP(T)                                                                     \
    AD_VECTOR_CLONES                                                                      \
    static void binary_jvp_##T(const op_entry *e, int op, bcast *it, const T *A,          \
                               const T *B, const T *Y, const T *TA, const T *TB, T *D)    \
    {                                                                                     \
        /* the common ops inline, as in the forward pass */                               \
        if (op == OP_ADD || op == OP_SUB) {                                               \
            T s = op == OP_ADD ? 1 : -1;                                                  \
            if (TA && TB) BCAST_LOOP(it, D[i] = TA[ia] + s * TB[ib]);                     \
            else if (TA) BCAST_LOOP(it, D[i] = TA[ia]; (void)ib);                         \
            else BCAST_LOOP(it, D[i] = s * TB[ib]; (void)ia);                             \
            return;                                                                       \
        }                                                                                 \
        if (op == OP_MUL) {                                                               \
            if (TA && TB) BCAST_LOOP(it, D[i] = B[ib] * TA[ia] + A[ia] * TB[ib]);         \
            else if (TA) BCAST_LOOP(it, D[i] = B[ib] * TA[ia]);                           \
            else BCAST_LOOP(it, D[i] = A[ia] * TB[ib]);                                   \
            return;                                                                       \
        }                                                                                 \
        if (TA && TB)                                                                     \
            BCAST_LOOP(it, D[i] = (T)(e->d2a(A[ia], B[ib], Y[i]) * TA[ia] +               \
                                      e->d2b(A[ia], B[ib], Y[i]) * TB[ib]));              \
        else if (TA)                                                                      \
            BCAST_LOOP(it, D[i] = (T)(e->d2a(A[ia], B[ib], Y[i]) * TA[ia]));              \
        else                                                                              \
            BCAST_LOOP(it, D[i] = (T)(e->d2b(A[ia], B[ib], Y[i]) * TB[ib]));              \
    }
BINARY_JVP(double)
BINARY_JVP(float)

static ad_status ew_jvp(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    ad_node *y = c->out;
    const void *TA = ad_tangent_data(g, c->in[0]), *A = node_data(c->in[0]), *Y = node_data(y);
    const void *TB = c->nin > 1 ? ad_tangent_data(g, c->in[1]) : NULL, *B = c->nin > 1 ? node_data(c->in[1]) : NULL;
    /* every element is written below when an input has a tangent; zeros otherwise */
    void *T = TA || TB ? tangent_buffer_to_fill(g, y) : ad_tangent_buffer(g, y);
    if (!T) return g->status;
    if (c->nin == 1) {
        if (TA) ew_unary_grad(y->op, (ad_dtype)y->dtype, node_size(y), A, Y, op_p(c), TA, T);
        return AD_OK;
    }
    if (!TA && !TB) return AD_OK;
    ad_shape so = node_shape(y), sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    bcast it;
    bcast_init(&it, &so, &sa, &sb);
    const op_entry *e = op_entry_get(y->op);
    if (y->dtype == AD_F64) binary_jvp_double(e, y->op, &it, A, B, Y, TA, TB, T);
    else binary_jvp_float(e, y->op, &it, A, B, Y, TA, TB, T);
    return AD_OK;
}

/* ---- gradients as graphs ----
 *
 * A row's G columns (ad_ew.h) write its derivative with the graph's own ops, so the gradient
 * graph they build can be differentiated again, to any order.  Where a row's derivative is
 * piecewise constant (relu, abs, max: "LOCAL"), and for ops registered by their formulas, the
 * derivative is instead one ew_deriv node: the row's formula evaluated per element, whose own
 * derivative is the second-derivative formula (zero for the piecewise-constant rows). */

/* The params of an ew_deriv node: the op whose derivative it is, the input it is taken
 * along, and that op's parameter.  The side is 0 or 1 for a first derivative, and 2 + 2 s + k
 * for the second derivative along inputs s and k (2 for a unary op's): a registered op's
 * gradient graph differentiated once more, whose own derivatives are unknown. */
enum { DERIV_OP, DERIV_SIDE, DERIV_P, DERIV_NPARAM };

static int deriv_params(const ad_op_ctx *c, char *msg, size_t len)
{
    if (!param_int(c->param[DERIV_OP], 0, ad_op_count() - 1, "op", msg, len)) return 1;
    const op_entry *e = op_entry_get((int)c->param[DERIV_OP]);
    int arity = e->f1 ? 1 : 2;
    if (!op_is_elementwise(e) || arity != c->nin) {
        snprintf(msg, len, "op '%s' is not an elementwise op of %d input%s", e->def.name, c->nin,
                 c->nin == 1 ? "" : "s");
        return 1;
    }
    return param_int(c->param[DERIV_SIDE], 0, arity == 1 ? 2 : 5, "side", msg, len) ? 0 : 1;
}

typedef struct {
    const op_entry *e;
    int side;
    int second; /* -1, or the second input k of a second derivative along side and k */
    double p;
} deriv_of;

static deriv_of deriv_get(const ad_op_ctx *c)
{
    int s = (int)c->param[DERIV_SIDE];
    deriv_of d = {op_entry_get((int)c->param[DERIV_OP]), s < 2 ? s : (s - 2) / 2, s < 2 ? -1 : (s - 2) % 2,
                  c->param[DERIV_P]};
    if (d.e->f1) d.side = 0;
    return d;
}

static double deriv_second(const deriv_of *d, int k, double a, double b);

/* The derivative d stands for at one element: along d.side, or its second derivative. */
static double deriv_value(const deriv_of *d, double a, double b)
{
    if (d->second >= 0) return deriv_second(d, d->second, a, b);
    if (d->e->f1) return d->e->d1(a, d->e->f1(a, d->p), d->p);
    double y = d->e->f2(a, b);
    return d->side ? d->e->d2b(a, b, y) : d->e->d2a(a, b, y);
}

/* Its derivative along input k, or NaN when the op's registration gave no such formula. */
static double deriv_second(const deriv_of *d, int k, double a, double b)
{
    const op_entry *e = d->e;
    if (e->f1) return e->dd1 ? e->dd1(a, e->f1(a, d->p), d->p) : NAN;
    double y = e->f2(a, b);
    ew2_d_fn f = d->side + k == 0 ? e->d2aa : d->side + k == 1 ? e->d2ab : e->d2bb;
    return f ? f(a, b, y) : NAN;
}

/* Whether the op that d differentiates has the second derivatives it needs. */
static bool deriv_has_second(const deriv_of *d)
{
    return d->e->f1 ? d->e->dd1 != NULL : d->e->d2aa && d->e->d2ab && d->e->d2bb;
}

static void deriv_forward(const ad_op_ctx *c)
{
    deriv_of d = deriv_get(c);
    ad_node *y = c->out, *a = c->in[0], *b = c->nin > 1 ? c->in[1] : a;
    ad_shape so = node_shape(y), sa = node_shape(a), sb = node_shape(b);
    bcast it;
    bcast_init(&it, &so, &sa, &sb);
    const void *A = node_data(a), *B = node_data(b);
    void *Y = node_data(y);
    ad_dtype t = (ad_dtype)y->dtype;
    BCAST_LOOP(&it, store(Y, t, i, deriv_value(&d, load(A, t, ia), load(B, t, ib))));
}

static ad_status deriv_missing(const ad_op_ctx *c, const deriv_of *d)
{
    if (d->second >= 0)
        return ad_set_error(c->graph, AD_ERR_NO_BACKWARD,
                            "second derivative of '%s' (node %u): a registered op's third derivative is "
                            "unknown (its derivatives are known only as numbers)", d->e->def.name, c->out->id);
    return ad_set_error(c->graph, AD_ERR_NO_BACKWARD,
                        "derivative of '%s' (node %u): the op was registered without its second "
                        "derivative", d->e->def.name, c->out->id);
}

/* What ew_deriv's reverse and forward rules read: the derivative, the operands (b is a for a
 * unary op) and the broadcast walk over the output. */
typedef struct {
    deriv_of d;
    ad_dtype t;
    ad_shape so;
    const void *A, *B;
    bcast it;
} deriv_operands;

/* The operands of node c->out, or a status if its second derivatives are not known. */
static ad_status deriv_operands_get(const ad_op_ctx *c, deriv_operands *o)
{
    o->d = deriv_get(c);
    if (!deriv_has_second(&o->d) || o->d.second >= 0) return deriv_missing(c, &o->d);
    ad_node *a = c->in[0], *b = c->nin > 1 ? c->in[1] : a;
    ad_shape sa = node_shape(a), sb = node_shape(b);
    o->t = (ad_dtype)c->out->dtype;
    o->so = node_shape(c->out);
    o->A = node_data(a);
    o->B = node_data(b);
    bcast_init(&o->it, &o->so, &sa, &sb);
    return AD_OK;
}

/* Input k's gradient: the output's gradient times the second derivative, summed over the
 * axes input k was broadcast along. */
static ad_status deriv_backward(const ad_op_ctx *c)
{
    deriv_operands o;
    ad_status st = deriv_operands_get(c, &o);
    if (st) return st;
    ad_graph *g = c->graph;
    ad_node *y = c->out;
    ad_dtype t = o.t;
    const void *G = ad_node_grad_data(y);
    void *tmp = node_scratch(g, y, (size_t)node_size(y) * ad_dtype_size(t) + 1);
    if (!tmp) return g->status;
    for (int k = 0; k < c->nin; k++) {
        void *D = ad_input_grad_buffer(g, c->in[k]);
        if (!D) {
            if (g->status) return g->status;
            continue;
        }
        BCAST_LOOP(&o.it, store(tmp, t, i, load(G, t, i) * deriv_second(&o.d, k, load(o.A, t, ia), load(o.B, t, ib))));
        ad_shape sk = node_shape(c->in[k]);
        reduce_broadcast_add(t, tmp, &o.so, D, &sk, 1.0);
    }
    return AD_OK;
}

/* One element's tangent: the second derivatives times the inputs' tangents. */
static double deriv_tangent(const deriv_operands *o, const void *TA, const void *TB, int64_t ia, int64_t ib)
{
    double va = load(o->A, o->t, ia), vb = load(o->B, o->t, ib), s = 0;
    if (TA) s += deriv_second(&o->d, 0, va, vb) * load(TA, o->t, ia);
    if (TB) s += deriv_second(&o->d, 1, va, vb) * load(TB, o->t, ib);
    return s;
}

static ad_status deriv_jvp(const ad_op_ctx *c)
{
    deriv_operands o;
    ad_status st = deriv_operands_get(c, &o);
    if (st) return st;
    ad_graph *g = c->graph;
    const void *TA = ad_tangent_data(g, c->in[0]), *TB = c->nin > 1 ? ad_tangent_data(g, c->in[1]) : NULL;
    void *T = ad_tangent_buffer(g, c->out);
    if (!T) return g->status;
    BCAST_LOOP(&o.it, store(T, o.t, i, deriv_tangent(&o, TA, TB, ia, ib)));
    return AD_OK;
}

/* Differentiated once more: zero for the built-in ops, which use ew_deriv only where a
 * derivative is piecewise constant (LOCAL, STEP, SIGN and mae's sign); for a registered op,
 * its second derivative as an ew_deriv node, which cannot be differentiated again. */
static ad_node *deriv_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    deriv_of d = deriv_get(c);
    if ((int)c->param[DERIV_OP] < OP_BUILTIN_COUNT) return NULL;
    if (!deriv_has_second(&d) || d.second >= 0) {
        deriv_missing(c, &d);
        return NULL;
    }
    double p[DERIV_NPARAM] = {c->param[DERIV_OP], 2 + 2 * d.side + i, d.p};
    ad_node *m = ad_apply(c->graph, OP_EW_DERIV, c->in, c->nin, p, DERIV_NPARAM);
    if (!m) return NULL;
    ad_node *dx = ad_mul(c->graph, gy, m);
    ad_shape to = node_shape(c->in[i]);
    return dx ? sum_to_shape(c->graph, dx, &to) : NULL;
}

const op_entry op_ew_deriv = {.def = {"ew_deriv", AD_VARIADIC, NULL, deriv_forward, deriv_backward,
                                      "d/dx[f'(x)] = f''(x)", deriv_jvp, 0, NULL, deriv_grad_graph},
                              .nparam = DERIV_NPARAM, .nparam_min = DERIV_NPARAM,
                              .param_names = "(op, side, p)", .params = deriv_params};

/* The derivative of unary op `op` at n, as one ew_deriv node (relu's: a step; abs's: the
 * sign). */
static ad_node *derivative_of(ad_graph *g, int op, ad_node *n)
{
    double p[DERIV_NPARAM] = {op, 0, 0};
    return ad_apply(g, OP_EW_DERIV, &n, 1, p, DERIV_NPARAM);
}

/* The derivative of y's op along input `side` as one ew_deriv node. */
static ad_node *deriv_node(const ad_op_ctx *c, int side)
{
    double p[DERIV_NPARAM] = {c->out->op, side, op_p(c)};
    return ad_apply(c->graph, OP_EW_DERIV, c->in, c->nin, p, DERIV_NPARAM);
}

ad_node *scalar_const_like(ad_graph *g, const ad_node *like, double v)
{
    return like->dtype == AD_F64 ? ad_const_scalar(g, v) : ad_full(g, AD_F32, AD_SHAPE0, v);
}

/* n summed over the axes along which it was broadcast from `to` (NumPy's rules backward). */
ad_node *sum_to_shape(ad_graph *g, ad_node *n, const ad_shape *to)
{
    while (n && node_shape(n).rank > to->rank) n = ad_sum_axis(g, n, 0, false);
    for (int d = 0; n && d < to->rank; d++)
        if (to->dim[d] == 1 && node_shape(n).dim[d] != 1) n = ad_sum_axis(g, n, d, true);
    return n;
}

/* The G columns, evaluated: the multiplier of the output's gradient for input `side`, with
 * *sign set instead (and NULL returned) where it is +1 or -1. */
static ad_node *ew_multiplier(const ad_op_ctx *c, int side, int *sign)
{
    ad_graph *g = c->graph;
    ad_node *a = c->in[0], *b = c->nin > 1 ? c->in[1] : NULL, *x = a, *y = c->out;
    double p = op_p(c);
    (void)b, (void)x, (void)y, (void)p;
#define K(v) scalar_const_like(g, a, (v))
#define ONE (*sign = 1, (ad_node *)NULL)
#define NEG_ONE (*sign = -1, (ad_node *)NULL)
#define ZERO (*sign = 0, (ad_node *)NULL)
#define LOCAL deriv_node(c, side)
#define STEP(n) derivative_of(g, OP_RELU, (n))
#define SIGN(n) derivative_of(g, OP_ABS, (n))
#define G_UNARY_(ID, name, sym, pre, text, F, D, D2, G) case OP_##ID: return G;
#define G_BINARY_(ID, name, inf, text, ta, tb, fll, ffl, flr, ffr, F, DA, DB, DAA, DAB, DBB, GA, GB) \
    case OP_##ID: return side == 0 ? (GA) : (GB);
    switch (c->out->op) {
        AD_EW_UNARY(G_UNARY_)
        AD_EW_UNARY_P(G_UNARY_)
        AD_EW_BINARY(G_BINARY_)
    default: return deriv_node(c, side); /* an op registered by its formulas */
    }
#undef K
#undef ONE
#undef NEG_ONE
#undef ZERO
#undef LOCAL
#undef STEP
#undef SIGN
#undef G_UNARY_
#undef G_BINARY_
}

static ad_node *ew_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    ad_graph *g = c->graph;
    int sign = 0;
    ad_node *m = ew_multiplier(c, i, &sign);
    ad_node *d = m ? ad_mul(g, gy, m) : sign > 0 ? gy : sign < 0 ? ad_neg(g, gy) : NULL;
    if (!d) return NULL;
    ad_shape to = node_shape(c->in[i]);
    return sum_to_shape(g, d, &to);
}

void reduce_broadcast_add(ad_dtype t, const void *src, const ad_shape *sshape, void *dst,
                          const ad_shape *dshape, double scale)
{
    bcast it;
    bcast_init(&it, sshape, dshape, dshape);
    if (t == AD_F64) {
        const double *S = src;
        double *D = dst;
        BCAST_LOOP(&it, D[ia] += scale * S[i]; (void)ib);
    } else {
        const float *S = src;
        float *D = dst;
        float sc = (float)scale;
        BCAST_LOOP(&it, D[ia] += sc * S[i]; (void)ib);
    }
}

/* ---- entry points ---- */

/* A float64 scalar result of float64 scalar inputs: one node, value and partials computed
 * here, nothing else touched.  This is the one-node-per-number form's whole cost. */
static inline ad_node *scalar_node(ad_graph *g, int op, ad_node *a, ad_node *b)
{
    ad_node *n = node_alloc(g);
    if (!n) return NULL;
    n->a = a;
    n->b = b;
    n->g = 0;
    n->x = NULL;
    n->op = (uint16_t)op;
    n->dtype = AD_F64;
    n->nin = b ? 2 : 1;
    uint8_t need = op_no_grad(op) ? 0 : (a->flags | (b ? b->flags : 0)) & F_NEEDS_GRAD;
    n->flags = F_SCALAR | F_PARTIALS | (g->nograd ? 0 : need);
    return n;
}

ad_node *ew_scalar_apply(ad_graph *g, int op, ad_node *a, ad_node *b)
{
    const op_entry *e = op_entry_get(op);
    ad_node *n = scalar_node(g, op, a, b);
    if (!n) return NULL;
    if (b) {
        n->v = e->f2(a->v, b->v);
        n->da = e->d2a(a->v, b->v, n->v);
        n->db = e->d2b(a->v, b->v, n->v);
    } else {
        n->v = e->f1(a->v, 0);
        n->da = e->d1(a->v, n->v, 0);
        n->db = 0;
    }
    return g->anomaly ? anomaly_forward(g, n) : n;
}

/* The public functions, one per row of ad_ew.h.  On float64 scalars the formulas are inlined
 * here, so ad_add costs what a hand-written scalar op would. */
#define BINARY_FN_(ID, name, ...)                                                             \
    ad_node *ad_##name(ad_graph *g, ad_node *a, ad_node *b)                                   \
    {                                                                                         \
        if (g && a && b && node_is_live(g, a) && node_is_live(g, b) &&                        \
            (a->flags & b->flags & F_SCALAR)) {                                               \
            ad_node *n = scalar_node(g, OP_##ID, a, b);                                       \
            if (!n) return NULL;                                                              \
            n->v = ad_ew_##name(a->v, b->v);                                                  \
            n->da = ad_ew_##name##_da(a->v, b->v, n->v);                                      \
            n->db = ad_ew_##name##_db(a->v, b->v, n->v);                                      \
            return g->anomaly ? anomaly_forward(g, n) : n;                                    \
        }                                                                                     \
        ad_node *in[2] = {a, b};                                                              \
        return ad_apply(g, OP_##ID, in, 2, NULL, 0);                                          \
    }
#define UNARY_FN_(ID, name, ...)                                                              \
    ad_node *ad_##name(ad_graph *g, ad_node *a)                                               \
    {                                                                                         \
        if (g && a && node_is_live(g, a) && (a->flags & F_SCALAR)) {                          \
            ad_node *n = scalar_node(g, OP_##ID, a, NULL);                                    \
            if (!n) return NULL;                                                              \
            n->v = ad_ew_##name(a->v, 0);                                                     \
            n->da = ad_ew_##name##_d(a->v, n->v, 0);                                          \
            n->db = 0;                                                                        \
            return g->anomaly ? anomaly_forward(g, n) : n;                                    \
        }                                                                                     \
        return ad_apply(g, OP_##ID, &a, 1, NULL, 0);                                          \
    }
AD_EW_BINARY(BINARY_FN_)
AD_EW_UNARY(UNARY_FN_)

ad_node *ad_leaky_relu(ad_graph *g, ad_node *a, double slope)
{
    return ad_apply(g, OP_LEAKY_RELU, &a, 1, &slope, 1);
}

/* The constant takes the input's dtype, so float32 tensors stay float32. */
static ad_node *with_scalar(ad_graph *g, int op, ad_node *a, double c)
{
    if (!check_inputs(g, op_entry_get(op)->def.name, &a, 1)) return NULL;
    ad_node *k = a->dtype == AD_F64 ? ad_const_scalar(g, c) : ad_full(g, AD_F32, AD_SHAPE0, c);
    ad_node *in[2] = {a, k};
    return ad_apply(g, op, in, 2, NULL, 0);
}

ad_node *ad_add_scalar(ad_graph *g, ad_node *a, double c) { return with_scalar(g, OP_ADD, a, c); }
ad_node *ad_mul_scalar(ad_graph *g, ad_node *a, double c) { return with_scalar(g, OP_MUL, a, c); }
ad_node *ad_pow_scalar(ad_graph *g, ad_node *a, double c) { return with_scalar(g, OP_POW, a, c); }

void broadcast_copy(ad_dtype t, const void *src, const ad_shape *sshape, void *dst,
                    const ad_shape *dshape)
{
    bcast it;
    bcast_init(&it, dshape, sshape, sshape);
    if (t == AD_F64) {
        const double *S = src;
        double *D = dst;
        BCAST_LOOP(&it, D[i] = S[ia]; (void)ib);
    } else {
        const float *S = src;
        float *D = dst;
        BCAST_LOOP(&it, D[i] = S[ia]; (void)ib);
    }
}
