/* Elementwise fusion (docs/design.md, "Fusion"): a replay evaluates each chain of elementwise
 * ops over one shape tile by tile, so that a chain's inner values live in a few kilobytes of
 * scratch instead of passing through memory, and the backward sweep does the same in reverse.
 * Every element is computed by the same expression, on the same operands, in the same order as
 * the ops of ops/elementwise.c and ops/reduce.c compute it, so the bits do not change. */
#include "internal.h"
#include "kernels/kernels.h"

enum {
    FZ_MAX_UNITS = 64,          /* members and views of one group */
    FZ_MAX_EXTS = 64,           /* distinct outside inputs of one group */
    FZ_SCRATCH = 96 * 1024,     /* bytes of tile scratch per thread, on its stack */
    FZ_TILE_MAX = 512,          /* elements of a tile (a multiple of SUM_LANES) */
    FZ_GRAIN = 1 << 15,         /* elements of a block of a group without a sum */
    FZ_MAX_STEPS = 1 + 2 * FZ_MAX_UNITS,
    /* Threads sweep a group whose slices write their base's gradient at different offsets,
     * stashing the few elements both sides of a thread's edge write (the spread), when these
     * are within bounds: */
    FZ_MAX_SLICES = 16, FZ_MAX_VIEWS = 8, FZ_MAX_SPREAD = 16,
    /* reduce.c's whole-tensor sum, which a fused sum must reproduce: SUM_LANES running sums
     * per block, blocks of at least SUM_MIN_BLOCK elements, at most SUM_BLOCKS of them */
    SUM_LANES = 32, SUM_BLOCKS = 64, SUM_MIN_BLOCK = 1 << 14
};

/* An operand as a tile reads it: FLAT, the node's own elements [lo, lo + len); SPLAT, its one
 * element; GATHER, a broadcast input copied into a scratch slot. */
enum { FLAT, SPLAT, GATHER };

/* A node of a group: a member (an elementwise op) or a view (a contiguous slice of an outside
 * node, read in place, whose gradient is added into its base's). */
typedef struct {
    ad_node *n;
    const op_entry *e;
    double p;           /* a unary op's parameter */
    int32_t in[2];      /* inputs: >= 0 a unit of the group, < 0 outside input -1 - k */
    int64_t off;        /* a view: its first element's place in its base */
    int16_t vslot, gslot; /* scratch slots of its value (members) and gradient */
    uint8_t nin, view;
    /* Written to memory by every replay, its gradient kept in its buffer: used outside the
     * group, used by nothing (an output), or named. */
    uint8_t kept;
    uint8_t used_outside;
    uint32_t uses;
} fz_unit;

/* An input from outside the group, and how its elements map onto the group's. */
typedef struct {
    ad_node *n;
    uint8_t how;
    int16_t slot;       /* GATHER */
    int rank;           /* the broadcast walk (merged axes; strides 0 along broadcast axes) */
    int64_t dim[AD_MAX_RANK], st[AD_MAX_RANK];
} fz_ext;

typedef struct {
    uint32_t lo, hi;        /* ids of its first and last node (a view, a member, the sum) */
    uint32_t u0, nu, x0, nx, members;
    ad_node *sum;           /* an absorbed sum or mean of unit sum_unit, or NULL */
    int32_t sum_unit;
    ad_shape shape;
    int64_t n, tile;
    ad_dtype dtype;
    bool par_bwd;           /* the backward may split across threads */
    int spread;             /* the largest difference of two offsets that write one node */
    bool has_inner;
    int nslots, tmp_slot;
    size_t slot_bytes;      /* a tile */
} fz_group;

struct fuse_plan {
    bool valid;
    uint32_t nnodes;
    fz_group *gr;
    fz_unit *un;
    fz_ext *ex;
    uint32_t ngr, gr_cap, nun, un_cap, nex, ex_cap;
    /* for the build, per node: 1 + its group (units and absorbed sums) or 0, and its unit's
     * index in un or -1 */
    int32_t *gid, *uix;
    uint32_t gid_cap;
    /* the open group's gradient writes outside itself, in the sweep's order reversed */
    struct fz_write { const ad_node *n; int64_t off; bool reduce, view; } wr[FZ_MAX_STEPS];
    int nwr;
    int64_t at;             /* the replay's or the sweep's cursor: the group it last looked at */
    int64_t done;           /* the group the current sweep has run */
};

/* ---- tile kernels: the loops of ops/elementwise.c, on a tile, with the same expressions ---- */

/* Operand strides are 1 (a tile of the operand) or 0 (one element): a loop for each case, so
 * that each vectorises. */
#define FZ_FOR_(SA, SB, BODY)                                                              \
    for (int64_t i = 0; i < n; i++) {                                                      \
        const int64_t ia = (SA) ? i : 0, ib = (SB) ? i : 0;                                \
        (void)ia, (void)ib;                                                                \
        BODY;                                                                              \
    }
#define FZ_LOOP2(BODY)                                                                     \
    do {                                                                                   \
        if (sa && sb) FZ_FOR_(1, 1, BODY)                                                  \
        else if (sa) FZ_FOR_(1, 0, BODY)                                                   \
        else if (sb) FZ_FOR_(0, 1, BODY)                                                   \
        else FZ_FOR_(0, 0, BODY)                                                           \
    } while (0)

#define PUT(dst, v) do { if (assign) (dst) = (v); else (dst) += (v); } while (0)

#define FWD2_CASE_(ID, name, ...) case OP_##ID: FZ_LOOP2(Y[i] = (fz_t)ad_ew_##name(A[ia], B[ib])); break;
#define FWD1_CASE_(ID, name, ...) case OP_##ID: for (int64_t i = 0; i < n; i++) Y[i] = (fz_t)ad_ew_##name(X[i], p); break;
#define BWD1_CASE_(ID, name, ...)                                                          \
    case OP_##ID: for (int64_t i = 0; i < n; i++) PUT(D[i], (fz_t)(G[i] * ad_ew_##name##_d(X[i], Y[i], p))); break;
#define BWD2A_CASE_(ID, name, ...)                                                         \
    case OP_##ID: FZ_LOOP2(PUT(D[i], (fz_t)(G[i] * ad_ew_##name##_da(A[ia], B[ib], Y[i])))); break;
#define BWD2B_CASE_(ID, name, ...)                                                         \
    case OP_##ID: FZ_LOOP2(PUT(D[i], (fz_t)(G[i] * ad_ew_##name##_db(A[ia], B[ib], Y[i])))); break;

/* add, sub and mul in T, as the unfused loops; every other row through its ad_ew.h formula in
 * double, rounded to T, which is what the registry's function pointers compute.  No two
 * operands of a kernel share memory (restrict: no runtime overlap checks before each tile's
 * loop), which the steps see to: the one step that could (an alias for x + x) is a copy. */
#define FZ_KERNELS(T)                                                                               \
    AD_VECTOR_CLONES static void fwd2_##T(const op_entry *e, int op, int64_t n, const T *restrict A, \
                                          int64_t sa, const T *restrict B, int64_t sb, T *restrict Y) \
    {                                                                                               \
        typedef T fz_t;                                                                             \
        if (op == OP_ADD) FZ_LOOP2(Y[i] = A[ia] + B[ib]);                                           \
        else if (op == OP_SUB) FZ_LOOP2(Y[i] = A[ia] - B[ib]);                                      \
        else if (op == OP_MUL) FZ_LOOP2(Y[i] = A[ia] * B[ib]);                                      \
        else switch (op) {                                                                          \
            AD_EW_BINARY(FWD2_CASE_)                                                                \
            default: FZ_LOOP2(Y[i] = (T)e->f2(A[ia], B[ib])); break;                                \
            }                                                                                       \
    }                                                                                               \
    AD_VECTOR_CLONES static void fwd1_##T(const op_entry *e, int op, int64_t n, const T *restrict X, \
                                          double p, T *restrict Y)                                  \
    {                                                                                               \
        typedef T fz_t;                                                                             \
        if (op == OP_RELU) for (int64_t i = 0; i < n; i++) Y[i] = !(X[i] <= 0) ? X[i] : 0;          \
        else if (op == OP_NEG) for (int64_t i = 0; i < n; i++) Y[i] = -X[i];                        \
        else switch (op) {                                                                          \
            AD_EW_UNARY(FWD1_CASE_)                                                                 \
            AD_EW_UNARY_P(FWD1_CASE_)                                                               \
            default: for (int64_t i = 0; i < n; i++) Y[i] = (T)e->f1(X[i], p); break;               \
            }                                                                                       \
    }                                                                                               \
    AD_VECTOR_CLONES static void bwd1_##T(const op_entry *e, int op, int64_t n, const T *restrict X, \
                                          const T *restrict Y, double p, const T *restrict G, T *restrict D, bool assign) \
    {                                                                                               \
        typedef T fz_t;                                                                             \
        if (op == OP_RELU)                                                                          \
            for (int64_t i = 0; i < n; i++) {                                                       \
                T g_ = G[i], x_ = X[i];                                                             \
                PUT(D[i], x_ <= 0 ? 0 : g_);                                                        \
            }                                                                                       \
        else if (op == OP_NEG) for (int64_t i = 0; i < n; i++) PUT(D[i], -G[i]);                    \
        else switch (op) {                                                                          \
            AD_EW_UNARY(BWD1_CASE_)                                                                 \
            AD_EW_UNARY_P(BWD1_CASE_)                                                               \
            default:                                                                                \
                for (int64_t i = 0; i < n; i++) PUT(D[i], (T)(G[i] * e->d1(X[i], Y[i], p)));        \
                break;                                                                              \
            }                                                                                       \
    }                                                                                               \
    /* G is one number for every element when gs is 0 (add, sub and mul only) */                   \
    AD_VECTOR_CLONES static void bwd2_##T(const op_entry *e, int op, int side, int64_t n,           \
                                          const T *restrict A, int64_t sa, const T *restrict B, int64_t sb, \
                                          const T *restrict Y, const T *restrict G, int64_t gs,     \
                                          T *restrict D, bool assign)                               \
    {                                                                                               \
        typedef T fz_t;                                                                             \
        T g0 = G[0];                                                                                \
        if (side == 0) {                                                                            \
            if ((op == OP_ADD || op == OP_SUB) && !gs) FZ_LOOP2(PUT(D[i], g0));                      \
            else if (op == OP_ADD || op == OP_SUB) FZ_LOOP2(PUT(D[i], G[i]));                       \
            else if (op == OP_MUL && !gs) FZ_LOOP2(PUT(D[i], g0 * B[ib]));                          \
            else if (op == OP_MUL) FZ_LOOP2(PUT(D[i], G[i] * B[ib]));                               \
            else switch (op) {                                                                      \
                AD_EW_BINARY(BWD2A_CASE_)                                                           \
                default: FZ_LOOP2(PUT(D[i], (T)(G[i] * e->d2a(A[ia], B[ib], Y[i])))); break;        \
                }                                                                                   \
        } else {                                                                                    \
            if (op == OP_ADD && !gs) FZ_LOOP2(PUT(D[i], g0));                                       \
            else if (op == OP_ADD) FZ_LOOP2(PUT(D[i], G[i]));                                       \
            else if (op == OP_SUB && !gs) FZ_LOOP2(PUT(D[i], -g0));                                 \
            else if (op == OP_SUB) FZ_LOOP2(PUT(D[i], -G[i]));                                      \
            else if (op == OP_MUL && !gs) FZ_LOOP2(PUT(D[i], g0 * A[ia]));                          \
            else if (op == OP_MUL) FZ_LOOP2(PUT(D[i], G[i] * A[ia]));                               \
            else switch (op) {                                                                      \
                AD_EW_BINARY(BWD2B_CASE_)                                                           \
                default: FZ_LOOP2(PUT(D[i], (T)(G[i] * e->d2b(A[ia], B[ib], Y[i])))); break;        \
                }                                                                                   \
        }                                                                                           \
    }                                                                                               \
    /* x*x: both sides in one pass, as ew_backward does it */                                       \
    AD_VECTOR_CLONES static void bwdsq_##T(int64_t n, const T *restrict X, const T *restrict G,     \
                                           int64_t gs, T *restrict D, bool assign)                  \
    {                                                                                               \
        T g0 = G[0];                                                                                \
        if (!gs)                                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                       \
                T v = g0 * X[i];                                                                    \
                PUT(D[i], v + v);                                                                   \
            }                                                                                       \
        else                                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                       \
                T v = G[i] * X[i];                                                                  \
                PUT(D[i], v + v);                                                                   \
            }                                                                                       \
    }                                                                                               \
    /* sum's and mean's backward: every element the same number */                                  \
    AD_VECTOR_CLONES static void fill_##T(int64_t n, double gv, T *restrict D, bool assign)         \
    {                                                                                               \
        T g_ = (T)gv;                                                                               \
        if (assign) for (int64_t i = 0; i < n; i++) D[i] = g_;                                      \
        else for (int64_t i = 0; i < n; i++) D[i] += g_;                                            \
    }                                                                                               \
    /* a slice's gradient into its base's: 0 + S into a fresh buffer, as zeroing it first */        \
    AD_VECTOR_CLONES static void add_##T(int64_t n, const T *restrict S, T *restrict D, bool assign) \
    {                                                                                               \
        if (assign) for (int64_t i = 0; i < n; i++) D[i] = (T)0 + S[i];                             \
        else for (int64_t i = 0; i < n; i++) D[i] += S[i];                                          \
    }                                                                                               \
    /* reduce.c's lanes: lane k takes the elements k, k + SUM_LANES, ... from the block start */    \
    AD_VECTOR_CLONES static void lanes_##T(int64_t n, const T *a, double *lanes)                    \
    {                                                                                               \
        double acc[SUM_LANES]; /* in registers: lanes might alias a */                              \
        memcpy(acc, lanes, sizeof acc);                                                             \
        for (int64_t i = 0; i + SUM_LANES <= n; i += SUM_LANES)                                     \
            for (int k = 0; k < SUM_LANES; k++) acc[k] += (double)a[i + k];                         \
        memcpy(lanes, acc, sizeof acc);                                                             \
    }
FZ_KERNELS(double)
FZ_KERNELS(float)

/* ---- the broadcast walk of an outside input over the group's elements ---- */

/* Strides of input shape s over the group's shape out, 0 along broadcast axes, with adjacent
 * axes merged where the walk continues straight on. */
static void walk_init(fz_ext *x, const ad_shape *out, const ad_shape *s)
{
    int64_t st[AD_MAX_RANK], stride = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int k = i - (out->rank - s->rank);
        int64_t d = k >= 0 ? s->dim[k] : 1;
        st[i] = d == 1 ? 0 : stride;
        stride *= d;
    }
    int r = 0;
    for (int d = 0; d < out->rank; d++) {
        if (out->dim[d] == 1) continue;
        if (r > 0 && x->st[r - 1] == st[d] * out->dim[d]) {
            x->dim[r - 1] *= out->dim[d];
            x->st[r - 1] = st[d];
            continue;
        }
        x->dim[r] = out->dim[d];
        x->st[r] = st[d];
        r++;
    }
    if (r == 0) x->dim[0] = 1, x->st[0] = 0, r = 1;
    x->rank = r;
}

/* The input's element under group element lo, and the walk's position there. */
static int64_t walk_start(const fz_ext *x, int64_t lo, int64_t *idx)
{
    int64_t off = 0;
    for (int d = x->rank - 1; d >= 0; d--) {
        idx[d] = lo % x->dim[d];
        lo /= x->dim[d];
        off += idx[d] * x->st[d];
    }
    return off;
}

static int64_t walk_next(const fz_ext *x, int64_t off, int64_t *idx)
{
    for (int d = x->rank - 1; d >= 0; d--) {
        off += x->st[d];
        if (++idx[d] < x->dim[d]) return off;
        off -= x->st[d] * x->dim[d];
        idx[d] = 0;
    }
    return off;
}

/* dst[i] = src[walk(lo + i)]. */
static void gather(const fz_ext *x, size_t es, const void *src, int64_t lo, int64_t n, void *dst)
{
    int64_t idx[AD_MAX_RANK], off = walk_start(x, lo, idx);
    for (int64_t i = 0; i < n; i++, off = walk_next(x, off, idx))
        memcpy((char *)dst + (size_t)i * es, (const char *)src + (size_t)off * es, es);
}

/* D[walk(lo + i)] += S[i], in the order of i: the order of the unfused loop's `+=`. */
static void scatter_add(const fz_ext *x, ad_dtype t, const void *S, int64_t lo, int64_t n, void *D)
{
    int64_t idx[AD_MAX_RANK], off = walk_start(x, lo, idx);
    if (t == AD_F64)
        for (int64_t i = 0; i < n; i++, off = walk_next(x, off, idx)) ((double *)D)[off] += ((const double *)S)[i];
    else
        for (int64_t i = 0; i < n; i++, off = walk_next(x, off, idx)) ((float *)D)[off] += ((const float *)S)[i];
}

/* ---- building the plan ---- */

static bool grow(void **p, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = ad_xrealloc(*p, (size_t)c * size);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static bool is_leaf(const ad_node *n) { return n->nin == 0 && n->op < OP_FIRST_COMPUTED; }

/* An elementwise op the engine of ops/elementwise.c evaluates (a built-in row or an op
 * registered by its formulas), on a tensor: float64 scalars keep their fast path. */
static bool fusable_op(const ad_node *n)
{
    if (!n->x || (n->flags & (F_SCALAR | F_VIEW | F_PARTIALS)) || n->guard || n->nin < 1 || n->nin > 2)
        return false;
    const op_entry *e = op_entry_get(n->op);
    return op_is_elementwise(e) && e->def.forward == op_entry_get(OP_ADD)->def.forward && n->x->size > 0;
}

/* A contiguous slice read in place. */
static bool fusable_view(const ad_node *n)
{
    return n->op == OP_SLICE && (n->flags & F_VIEW) && n->nin == 1 && n->x && !n->guard && n->x->size > 0 &&
           node_in(n, 0)->x;
}

static bool same_shape(const ad_shape *a, const ad_shape *b)
{
    if (a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (a->dim[d] != b->dim[d]) return false;
    return true;
}

/* The reference of input `in` of a new member of group G: its unit, or its outside entry
 * (made on first use); INT32_MIN when the group has no room for another. */
static int32_t input_ref(fuse_plan *p, fz_group *G, int32_t gi, ad_node *in)
{
    if (p->gid[in->id] == gi + 1 && p->uix[in->id] >= 0) return p->uix[in->id] - (int32_t)G->u0;
    for (uint32_t k = 0; k < G->nx; k++)
        if (p->ex[G->x0 + k].n == in) return -1 - (int32_t)k;
    if (G->nx == FZ_MAX_EXTS || !grow((void **)&p->ex, &p->ex_cap, p->nex + 1, sizeof *p->ex)) return INT32_MIN;
    fz_ext *x = &p->ex[p->nex++];
    memset(x, 0, sizeof *x);
    x->n = in;
    ad_shape s = node_shape(in);
    x->how = node_size(in) == G->n ? FLAT : node_size(in) == 1 ? SPLAT : GATHER;
    walk_init(x, &G->shape, &s);
    return -1 - (int32_t)G->nx++;
}

/* Whether the gradient writes that unit u's backward makes outside the group keep, done tile
 * by tile, the unfused order of every element's additions; if so they join the group's list.
 * The sweep runs u's writes before those of the units already in the group (its id is
 * larger), side 0 before side 1.  A write at element offset o touches element j in the tile of
 * j - o, so a later write to the same node must not have a larger offset.  A broadcast input's
 * gradient sums over many elements, in order: it may have only one writer in a group.  Then
 * u starts a group of its own. */
static bool writes_in_order(fuse_plan *p, fz_group *G, const fz_unit *u)
{
    struct fz_write w[2];
    int nw = 0;
    if (u->view) {
        ad_node *base = node_in(u->n, 0);
        if (base->flags & F_NEEDS_GRAD) w[nw++] = (struct fz_write){base, u->off, false, true};
    } else {
        for (int k = 0; k < u->nin; k++) {
            if (u->in[k] >= 0) continue;
            const fz_ext *x = &p->ex[G->x0 + (uint32_t)(-1 - u->in[k])];
            if (x->n->flags & F_NEEDS_GRAD) w[nw++] = (struct fz_write){x->n, 0, x->how != FLAT, false};
        }
    }
    if (nw == 2 && w[0].n == w[1].n && (w[0].reduce || w[1].off > w[0].off)) return false;
    for (int i = 0; i < nw; i++)
        for (int k = 0; k < p->nwr; k++)
            if (p->wr[k].n == w[i].n && (w[i].reduce || p->wr[k].reduce || w[i].off < p->wr[k].off)) return false;
    for (int i = 0; i < nw; i++) p->wr[p->nwr++] = w[i];
    return true;
}

/* Adds n to group gi as a member (or a view); false (nothing added) if it does not fit. */
static bool add_unit(fuse_plan *p, int32_t gi, ad_node *n, bool view)
{
    fz_group *G = &p->gr[gi];
    if (G->nu == FZ_MAX_UNITS || !grow((void **)&p->un, &p->un_cap, p->nun + 1, sizeof *p->un)) return false;
    fz_unit u = {.n = n, .e = op_entry_get(n->op), .nin = (uint8_t)n->nin, .view = view};
    uint32_t nex = p->nex, nx = G->nx;
    if (view) {
        ad_node *base = node_in(n, 0);
        u.off = ((const char *)n->x->data - (const char *)base->x->data) / (ptrdiff_t)ad_dtype_size(n->dtype);
        u.in[0] = INT32_MIN; /* its base is reached through its data and its gradient step */
    } else {
        u.p = n->x->nparam > 0 ? n->x->param_v[0] : 0.0;
        for (int k = 0; k < n->nin; k++)
            if ((u.in[k] = input_ref(p, G, gi, node_in(n, k))) == INT32_MIN) {
                p->nex = nex, G->nx = nx; /* the entries made for it go again */
                return false;
            }
    }
    if (!writes_in_order(p, G, &u)) {
        p->nex = nex, G->nx = nx;
        return false;
    }
    p->gid[n->id] = gi + 1;
    p->uix[n->id] = (int32_t)p->nun;
    p->un[p->nun++] = u;
    G->nu++;
    G->members += !view;
    G->hi = n->id;
    return true;
}

static bool open_group(fuse_plan *p, ad_node *n, bool view)
{
    if (!grow((void **)&p->gr, &p->gr_cap, p->ngr + 1, sizeof *p->gr)) return false;
    fz_group *G = &p->gr[p->ngr];
    memset(G, 0, sizeof *G);
    G->lo = G->hi = n->id;
    G->u0 = p->nun, G->x0 = p->nex;
    G->shape = n->x->shape;
    G->n = n->x->size;
    G->dtype = (ad_dtype)n->dtype;
    G->sum_unit = -1;
    p->nwr = 0;
    p->ngr++;
    if (add_unit(p, (int32_t)p->ngr - 1, n, view)) return true;
    p->ngr--;
    return false;
}

/* A group is worth its plan with two computations or more (a member and a sum, or two
 * members); otherwise its nodes go back to being evaluated one by one. */
static void close_group(fuse_plan *p)
{
    fz_group *G = &p->gr[p->ngr - 1];
    /* Threads may take blocks of tiles when no write sums over elements (a broadcast input's
     * gradient), and writes at different offsets into one node come from few slices, close
     * together (their elements near a thread's edge are stashed: run_parallel). */
    G->par_bwd = true;
    G->spread = 0;
    int views = 0;
    for (int i = 0; i < p->nwr; i++) {
        views += p->wr[i].view;
        if (p->wr[i].reduce) G->par_bwd = false;
        for (int k = 0; k < p->nwr; k++) {
            if (p->wr[i].n != p->wr[k].n || p->wr[i].off == p->wr[k].off) continue;
            if (!p->wr[i].view || !p->wr[k].view) G->par_bwd = false;
            int64_t d = p->wr[i].off - p->wr[k].off;
            if (d > G->spread) G->spread = d > FZ_MAX_SPREAD ? FZ_MAX_SPREAD + 1 : (int)d;
        }
    }
    if (G->spread > FZ_MAX_SPREAD || (G->spread && views > FZ_MAX_VIEWS)) G->par_bwd = false;
    if (G->members >= 1 && G->members + (G->sum != NULL) >= 2) return;
    for (uint32_t u = 0; u < G->nu; u++) {
        ad_node *n = p->un[G->u0 + u].n;
        p->gid[n->id] = 0, p->uix[n->id] = -1;
    }
    if (G->sum) p->gid[G->sum->id] = 0;
    p->nun = G->u0, p->nex = G->x0;
    p->ngr--;
}

/* Scratch slots and the tile length: a tile of every slot fits in FZ_SCRATCH. */
static void layout(fuse_plan *p, fz_group *G)
{
    int s = 0;
    bool reduce = false;
    for (uint32_t u = 0; u < G->nu; u++) {
        fz_unit *U = &p->un[G->u0 + u];
        U->vslot = U->view ? -1 : (int16_t)s++;
        U->gslot = (int16_t)s++;
    }
    for (uint32_t k = 0; k < G->nx; k++) {
        fz_ext *x = &p->ex[G->x0 + k];
        x->slot = x->how == GATHER ? (int16_t)s++ : -1;
        if (x->how != FLAT && (x->n->flags & F_NEEDS_GRAD)) reduce = true;
    }
    G->tmp_slot = reduce ? s++ : -1;
    G->nslots = s;
    int64_t t = FZ_SCRATCH / s / (int64_t)ad_dtype_size(G->dtype);
    t = t / SUM_LANES * SUM_LANES;
    G->tile = t > FZ_TILE_MAX ? FZ_TILE_MAX : t < SUM_LANES ? SUM_LANES : t;
    G->slot_bytes = (size_t)G->tile * ad_dtype_size(G->dtype);
}

/* Which units are kept (used outside their group, by nothing, or named), then each group's
 * scratch. */
static void finish(fuse_plan *p, ad_graph *g)
{
    for (uint32_t id = 0; id < g->nnodes; id++) {
        ad_node *c = node_at(g, id);
        for (int k = 0; k < c->nin; k++) {
            ad_node *in = node_in(c, k);
            int32_t ui = p->uix[in->id];
            if (ui < 0) continue;
            p->un[ui].uses++;
            if (p->gid[c->id] != p->gid[in->id]) p->un[ui].used_outside = 1;
        }
    }
    for (uint32_t gi = 0; gi < p->ngr; gi++) {
        fz_group *G = &p->gr[gi];
        for (uint32_t u = 0; u < G->nu; u++) {
            fz_unit *U = &p->un[G->u0 + u];
            U->kept = U->used_outside || !U->uses || U->n->x->name;
        }
        layout(p, G);
    }
}

static void plan_clear(fuse_plan *p)
{
    p->valid = false;
    p->ngr = p->nun = p->nex = 0;
}

/* Groups form in recording order: a run of nodes in which every computed node is a member (an
 * elementwise op of the group's shape and dtype), a leading view, or a closing sum of a member;
 * leaves may sit between them.  Nothing outside a group is computed inside its run, so its
 * outside inputs are all ready when it starts, and no other node's backward falls between its
 * members' backward steps. */
static bool build(ad_graph *g, fuse_plan *p)
{
    plan_clear(p);
    uint32_t cap = p->gid_cap;
    if (!grow((void **)&p->uix, &cap, g->nnodes + 1, sizeof *p->uix) ||
        !grow((void **)&p->gid, &p->gid_cap, g->nnodes + 1, sizeof *p->gid))
        return false;
    for (uint32_t i = 0; i < g->nnodes; i++) p->gid[i] = 0, p->uix[i] = -1;
    int32_t cur = -1;
    for (uint32_t id = 0; id < g->nnodes; id++) {
        ad_node *n = node_at(g, id);
        if (is_leaf(n)) continue;
        bool op = fusable_op(n), view = !op && fusable_view(n);
        if (cur >= 0) {
            fz_group *G = &p->gr[cur];
            bool fits = (op || view) && n->dtype == G->dtype && same_shape(&n->x->shape, &G->shape);
            if (fits && op && add_unit(p, cur, n, false)) continue;
            if (fits && view && G->members == 0 && add_unit(p, cur, n, true)) continue;
            if ((n->op == OP_SUM || n->op == OP_MEAN) && n->nin == 1 && !n->guard && !G->sum) {
                ad_node *in = node_in(n, 0);
                int32_t ui = p->uix[in->id];
                if (p->gid[in->id] == cur + 1 && ui >= 0 && !p->un[ui].view) {
                    G->sum = n;
                    G->sum_unit = ui - (int32_t)G->u0;
                    G->hi = id;
                    p->gid[id] = cur + 1;
                    close_group(p);
                    cur = -1;
                    continue;
                }
            }
            close_group(p);
            cur = -1;
        }
        if ((op || view) && open_group(p, n, view)) cur = (int32_t)p->ngr - 1;
    }
    if (cur >= 0) close_group(p);
    finish(p, g);
    p->nnodes = g->nnodes;
    p->valid = true;
    return true;
}

/* ---- running a group ---- */

typedef enum { S_FILL, S_UNARY, S_BINARY, S_SQUARE, S_VIEW } step_kind;
/* Where a backward step writes: a unit's gradient (its slot or its buffer), memory at
 * D + lo + off (an outside input's gradient, or a view's base's), or an outside broadcast
 * input's gradient, through the tmp slot and the input's walk. */
typedef enum { T_UNIT, T_MEM, T_REDUCE } target_kind;

/* One backward step of the sweep, in the sweep's order: a node's backward for one input (both
 * for x*x), the sum's fill, or a view's addition into its base. */
typedef struct {
    uint8_t kind, side, assign, tk;
    /* A copy (G into a fresh slot) of a gradient that nothing reads after this node's steps:
     * the slot becomes the gradient's instead, for the rest of the tile. */
    uint8_t alias;
    int16_t unit;       /* whose backward it is */
    int16_t to;         /* T_UNIT: the unit written; T_REDUCE: the outside input */
    int8_t stash;       /* S_VIEW with threads: its row of the stash, or -1 */
    int64_t zone;       /* ... and the first element of a thread's edge it writes, from the edge */
    int64_t width;      /* ... and how many (its base's spread) */
    void *D;
    int64_t off;
    double gv;          /* S_FILL */
} fz_step;

typedef struct {
    const fz_group *G;
    const fz_unit *U;
    const fz_ext *X;
    bool backward, write_all;
    uint32_t upto;              /* backward: the units with ids up to this one take part */
    int64_t blocks;
    const fz_step *steps;
    int nsteps;
    char *udata[FZ_MAX_UNITS], *xdata[FZ_MAX_EXTS]; /* the nodes' values in memory */
    void *gbuf[FZ_MAX_UNITS];   /* backward: a unit's gradient buffer, or NULL for its slot */
    /* backward on threads: slice k of the blocks starts at element edge[k]; a slice write to
     * base elements near an edge that another slice writes too goes to the stash, for
     * stash_apply, instead of the base */
    int nslices;
    int64_t edge[FZ_MAX_SLICES];
    double stash[FZ_MAX_SLICES][FZ_MAX_VIEWS][FZ_MAX_SPREAD];
    /* backward: the inner values and gathered inputs the steps read, to compute again */
    uint8_t need[FZ_MAX_UNITS], xneed[FZ_MAX_EXTS];
    double part[SUM_BLOCKS];
} fz_run;

/* Operand `ref` of a tile, and its stride. */
static const char *operand(const fz_run *r, char *const *vals, char *const *xv, int32_t ref, int64_t *stride)
{
    if (ref >= 0) return *stride = 1, vals[ref];
    *stride = r->X[-1 - ref].how == SPLAT ? 0 : 1;
    return xv[-1 - ref];
}

/* A slice's gradient [lo, lo + len) into its base's (D, at lo + off), except the elements near
 * a thread's edge that a slice on its other side writes too: those go to the stash. */
static void view_write(const fz_run *r, const fz_step *st, int64_t lo, int64_t len, const char *S, char *D, bool assign)
{
    bool f64 = r->G->dtype == AD_F64;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    int64_t at = lo, end = lo + len;
    for (int k = 1; k < r->nslices && st->stash >= 0; k++) {
        int64_t z0 = r->edge[k] + st->zone, z1 = z0 + st->width; /* its elements near edge k */
        if (z1 <= at || z0 >= end) continue;
        if (z0 > at) {
            if (f64) add_double(z0 - at, (const double *)(S + (size_t)(at - lo) * es), (double *)(D + (size_t)(at - lo) * es), assign);
            else add_float(z0 - at, (const float *)(S + (size_t)(at - lo) * es), (float *)(D + (size_t)(at - lo) * es), assign);
            at = z0;
        }
        for (; at < z1 && at < end; at++) {
            const char *v = S + (size_t)(at - lo) * es;
            ((fz_run *)r)->stash[k][st->stash][at - z0] = f64 ? *(const double *)v : (double)*(const float *)v;
        }
    }
    if (at < end) {
        if (f64) add_double(end - at, (const double *)(S + (size_t)(at - lo) * es), (double *)(D + (size_t)(at - lo) * es), assign);
        else add_float(end - at, (const float *)(S + (size_t)(at - lo) * es), (float *)(D + (size_t)(at - lo) * es), assign);
    }
}

/* Unit u's gradient, one number so far, written out over its slot (u's own: a copy shares the
 * number, not the slot). */
static void spread_out(const fz_run *r, uint32_t u, char **grads, uint8_t *one, char *scratch, int64_t len)
{
    const fz_group *G = r->G;
    char *d = scratch + (size_t)r->U[u].gslot * G->slot_bytes;
    if (G->dtype == AD_F64) fill_double(len, *(const double *)grads[u], (double *)d, true);
    else fill_float(len, *(const float *)grads[u], (float *)d, true);
    grads[u] = d;
    one[u] = 0;
}

/* The backward steps of one tile, after its values. */
static void tile_backward(const fz_run *r, int64_t lo, int64_t len, char *scratch, char *const *vals,
                          char *const *xv)
{
    const fz_group *G = r->G;
    size_t es = ad_dtype_size(G->dtype), slot = G->slot_bytes;
    bool f64 = G->dtype == AD_F64;
    char *grads[FZ_MAX_UNITS];
    /* A sum's gradient is one number for every element, and so are the unchanged copies of it
     * (add's, sub's left): kept as that number (one[u], in ones[u]) until a kernel that reads
     * G element by element, or a later addition, needs it written out: the same values. */
    uint8_t one[FZ_MAX_UNITS];
    _Alignas(8) char ones[FZ_MAX_UNITS][8];
    for (uint32_t u = 0; u < G->nu; u++) {
        grads[u] = r->gbuf[u] ? (char *)r->gbuf[u] + (size_t)lo * es : scratch + (size_t)r->U[u].gslot * slot;
        one[u] = 0;
    }
    char *tmp = G->tmp_slot >= 0 ? scratch + (size_t)G->tmp_slot * slot : NULL;
    for (int s = 0; s < r->nsteps; s++) {
        const fz_step *st = &r->steps[s];
        if (st->alias) {
            grads[st->to] = grads[st->unit];
            one[st->to] = one[st->unit];
            continue;
        }
        const fz_unit *U = &r->U[st->unit];
        int op = U->n->op;
        if (st->kind == S_FILL && st->tk == T_UNIT && st->assign && !r->gbuf[st->to]) {
            if (f64) memcpy(ones[st->to], &(double){st->gv}, sizeof(double));
            else memcpy(ones[st->to], &(float){(float)st->gv}, sizeof(float));
            grads[st->to] = ones[st->to];
            one[st->to] = 1;
            continue;
        }
        bool reads_one = st->kind == S_SQUARE || (st->kind == S_BINARY && (op == OP_ADD || op == OP_SUB || op == OP_MUL));
        if (one[st->unit] && (!reads_one || st->kind == S_FILL)) spread_out(r, st->unit, grads, one, scratch, len);
        if (st->tk == T_UNIT && one[st->to]) spread_out(r, st->to, grads, one, scratch, len); /* to be added to */
        char *D = st->tk == T_UNIT ? grads[st->to] : st->tk == T_MEM ? (char *)st->D + (size_t)(lo + st->off) * es : tmp;
        bool assign = st->tk == T_REDUCE || st->assign;
        const char *Gu = grads[st->unit], *Y = vals[st->unit], *A = NULL, *B = NULL;
        int64_t sa = 1, sb = 1, gs = !one[st->unit];
        if (st->kind != S_FILL && st->kind != S_VIEW) A = operand(r, vals, xv, U->in[0], &sa);
        if (st->kind == S_BINARY) B = operand(r, vals, xv, U->in[1], &sb);
        switch ((step_kind)st->kind) {
        case S_FILL:
            if (f64) fill_double(len, st->gv, (double *)D, assign);
            else fill_float(len, st->gv, (float *)D, assign);
            break;
        case S_VIEW:
            view_write(r, st, lo, len, Gu, D, assign);
            break;
        case S_SQUARE:
            if (f64) bwdsq_double(len, (const double *)A, (const double *)Gu, gs, (double *)D, assign);
            else bwdsq_float(len, (const float *)A, (const float *)Gu, gs, (float *)D, assign);
            break;
        case S_UNARY:
            if (f64)
                bwd1_double(U->e, op, len, (const double *)A, (const double *)Y, U->p, (const double *)Gu,
                            (double *)D, assign);
            else
                bwd1_float(U->e, op, len, (const float *)A, (const float *)Y, U->p, (const float *)Gu,
                           (float *)D, assign);
            break;
        case S_BINARY:
            if (f64)
                bwd2_double(U->e, op, st->side, len, (const double *)A, sa, (const double *)B, sb,
                            (const double *)Y, (const double *)Gu, gs, (double *)D, assign);
            else
                bwd2_float(U->e, op, st->side, len, (const float *)A, sa, (const float *)B, sb,
                           (const float *)Y, (const float *)Gu, gs, (float *)D, assign);
            break;
        }
        if (st->tk == T_REDUCE) scatter_add(&r->X[st->to], G->dtype, tmp, lo, len, st->D);
    }
}

/* One tile [lo, lo + len): outside inputs gathered, members evaluated in recording order, into
 * memory where they are kept (all of them when write_all) and into scratch otherwise; going
 * backward, kept members are read from memory instead, then the steps run.  With lanes, the
 * summed member's elements go into reduce.c's running sums; with *sum, the tile is its block's
 * last, and the lanes and the block's tail become the block's sum there. */
static void run_tile(const fz_run *r, int64_t lo, int64_t len, char *scratch, double *lanes, double *sum)
{
    const fz_group *G = r->G;
    size_t es = ad_dtype_size(G->dtype), slot = G->slot_bytes;
    bool f64 = G->dtype == AD_F64;
    char *vals[FZ_MAX_UNITS], *xv[FZ_MAX_EXTS];
    for (uint32_t k = 0; k < G->nx; k++) {
        const fz_ext *x = &r->X[k];
        char *data = r->xdata[k];
        if (x->how == FLAT) xv[k] = data + (size_t)lo * es;
        else if (x->how == SPLAT) xv[k] = data;
        else if (!r->backward || r->xneed[k]) gather(x, es, data, lo, len, xv[k] = scratch + (size_t)x->slot * slot);
        else xv[k] = NULL;
    }
    for (uint32_t u = 0; u < G->nu; u++) {
        const fz_unit *U = &r->U[u];
        char *mem = r->udata[u] + (size_t)lo * es;
        vals[u] = mem;
        if (U->view || (r->backward && U->kept)) continue;
        if (!U->kept && !r->write_all) vals[u] = scratch + (size_t)U->vslot * slot;
        if (r->backward && !r->need[u]) continue;
        int64_t sa, sb = 0;
        const char *A = operand(r, vals, xv, U->in[0], &sa);
        if (U->nin == 1) {
            if (f64) fwd1_double(U->e, U->n->op, len, (const double *)A, U->p, (double *)vals[u]);
            else fwd1_float(U->e, U->n->op, len, (const float *)A, U->p, (float *)vals[u]);
        } else {
            const char *B = operand(r, vals, xv, U->in[1], &sb);
            if (f64) fwd2_double(U->e, U->n->op, len, (const double *)A, sa, (const double *)B, sb, (double *)vals[u]);
            else fwd2_float(U->e, U->n->op, len, (const float *)A, sa, (const float *)B, sb, (float *)vals[u]);
        }
    }
    if (lanes) {
        const char *S = vals[G->sum_unit];
        if (f64) lanes_double(len, (const double *)S, lanes);
        else lanes_float(len, (const float *)S, lanes);
        if (sum) {
            double s = 0;
            for (int k = 0; k < SUM_LANES; k++) s += lanes[k];
            for (int64_t i = len / SUM_LANES * SUM_LANES; i < len; i++)
                s += f64 ? ((const double *)S)[i] : (double)((const float *)S)[i];
            *sum = s;
        }
    }
    if (r->backward) tile_backward(r, lo, len, scratch, vals, xv);
}

/* Blocks [b0, b1) of the group, each in tiles from its start, so that a tile starts a whole
 * number of lanes into its block. */
static void run_blocks(void *ctx, int64_t b0, int64_t b1)
{
    fz_run *r = ctx;
    const fz_group *G = r->G;
    _Alignas(64) char scratch[FZ_SCRATCH];
    bool sum = !r->backward && !r->write_all && G->sum;
    for (int64_t b = b0; b < b1; b++) {
        int64_t lo = G->n * b / r->blocks, hi = G->n * (b + 1) / r->blocks;
        double lanes[SUM_LANES] = {0};
        for (int64_t t = lo; t < hi; t += G->tile) {
            int64_t len = hi - t < G->tile ? hi - t : G->tile;
            run_tile(r, t, len, scratch, sum ? lanes : NULL, sum && t + len == hi ? &r->part[b] : NULL);
        }
    }
}

/* Blocks as reduce.c cuts a whole-tensor sum (by the length alone), or of FZ_GRAIN elements. */
static int64_t block_count(const fz_group *G)
{
    int64_t b = G->n / (G->sum ? SUM_MIN_BLOCK : FZ_GRAIN);
    return b < 1 ? 1 : G->sum && b > SUM_BLOCKS ? SUM_BLOCKS : b;
}

static void run_init(fz_run *r, const fuse_plan *p, const fz_group *G)
{
    memset(r, 0, offsetof(fz_run, udata));
    r->G = G;
    r->U = p->un + G->u0;
    r->X = p->ex + G->x0;
    r->blocks = block_count(G);
    for (uint32_t u = 0; u < G->nu; u++) r->udata[u] = node_data(r->U[u].n);
    for (uint32_t k = 0; k < G->nx; k++) r->xdata[k] = node_data(r->X[k].n);
}

/* Forward: the members' values (all of them with write_all), and the sum's. */
static void group_forward(const fuse_plan *p, const fz_group *G, bool write_all)
{
    fz_run r;
    run_init(&r, p, G);
    r.write_all = write_all;
    ad_parallel_for(r.blocks, 1, run_blocks, &r);
    if (!G->sum || write_all) return;
    double s = 0;
    for (int64_t b = 0; b < r.blocks; b++) s += r.part[b];
    if (G->sum->op == OP_MEAN) s /= (double)G->n;
    store(node_data(G->sum), (ad_dtype)G->sum->dtype, 0, s);
}

/* Slices [s0, s1) of the blocks: the blocks of a thread. */
static void run_slices(void *ctx, int64_t s0, int64_t s1)
{
    fz_run *r = ctx;
    run_blocks(r, r->blocks * s0 / r->nslices, r->blocks * s1 / r->nslices);
}

/* The backward's slices, on threads when par, then the stashed writes, in the sweep's order for
 * each element, as one thread would have made them. */
static void run_parallel(fz_run *r, bool par)
{
    int64_t t = par ? ad_get_threads() : 1;
    r->nslices = (int)(t < r->blocks ? t : r->blocks);
    if (r->nslices > FZ_MAX_SLICES) r->nslices = FZ_MAX_SLICES;
    if (r->nslices <= 1) {
        r->nslices = 1;
        run_blocks(r, 0, r->blocks);
        return;
    }
    for (int k = 0; k < r->nslices; k++) r->edge[k] = r->G->n * (r->blocks * k / r->nslices) / r->blocks;
    ad_parallel_for(r->nslices, 1, run_slices, r);
    bool f64 = r->G->dtype == AD_F64;
    for (int k = 1; k < r->nslices; k++)
        for (int s = 0; s < r->nsteps; s++) {
            const fz_step *st = &r->steps[s];
            if (st->kind != S_VIEW || st->stash < 0) continue;
            for (int64_t e = 0; e < st->width; e++) {
                int64_t i = r->edge[k] + st->zone + e, j = i + st->off; /* group element, base element */
                if (i < 0 || i >= r->G->n) continue;
                double v = r->stash[k][st->stash][e];
                if (f64) ((double *)st->D)[j] = st->assign ? 0.0 + v : ((double *)st->D)[j] + v;
                else ((float *)st->D)[j] = st->assign ? 0.0f + (float)v : ((float *)st->D)[j] + (float)v;
            }
        }
}

/* ---- the sweep's steps ---- */

/* What the backward of a group knows about each unit during one sweep. */
typedef struct {
    uint8_t live[FZ_MAX_UNITS];    /* reached: its gradient has had a contribution */
    uint8_t fresh[FZ_MAX_UNITS];   /* its slot holds nothing yet (the first write assigns) */
    fz_step steps[FZ_MAX_STEPS];
    int n, nstash;
} fz_sweep;

/* Where a step of unit u's backward writes input `ref`'s gradient, as grad_for_write would
 * give it: false if the input needs none (or memory ran out: the status says which). */
static bool target(ad_graph *g, fz_run *r, fz_sweep *w, int32_t ref, bool can_assign, fz_step *st)
{
    if (ref < 0) {
        const fz_ext *x = &r->X[-1 - ref];
        bool assign;
        if (!(st->D = grad_for_write(g, x->n, can_assign, &assign))) return false;
        st->assign = assign;
        st->tk = x->how == FLAT ? T_MEM : T_REDUCE;
        st->to = (int16_t)(-1 - ref);
        return true;
    }
    const fz_unit *U = &r->U[ref];
    if (!(U->n->flags & F_NEEDS_GRAD)) return false;
    st->tk = T_UNIT;
    st->to = (int16_t)ref;
    if (r->gbuf[ref] || U->kept) {
        bool assign;
        void *D = grad_for_write(g, U->n, can_assign, &assign);
        if (!D) return false;
        r->gbuf[ref] = D;
        st->assign = assign;
    } else {
        st->assign = w->fresh[ref]; /* a unit has the group's shape: it can always be assigned */
        w->fresh[ref] = 0;
    }
    w->live[ref] = 1;
    return true;
}

/* What a step reads of its node's operands (a, b) and value (y), as its kernel reads them. */
static void step_reads(const fz_unit *U, const fz_step *st, bool *a, bool *b, bool *y)
{
    int op = U->n->op;
    *a = *b = *y = false;
    if (st->kind == S_SQUARE) *a = true;
    else if (st->kind == S_UNARY) *a = op != OP_NEG, *y = op != OP_NEG && op != OP_RELU;
    else if (st->kind == S_BINARY && op == OP_MUL) *a = st->side == 1, *b = st->side == 0;
    else if (st->kind == S_BINARY && op != OP_ADD && op != OP_SUB) *a = *b = *y = true;
}

static void need_ref(fz_run *r, int32_t ref)
{
    if (ref >= 0) r->need[ref] = 1;
    else r->xneed[-1 - ref] = 1;
}

/* The values the steps read, and what those are computed from, down to memory. */
static void needed(fz_run *r, const fz_sweep *w)
{
    const fz_group *G = r->G;
    memset(r->need, 0, G->nu);
    memset(r->xneed, 0, G->nx);
    for (int s = 0; s < w->n; s++) {
        const fz_step *st = &w->steps[s];
        const fz_unit *U = &r->U[st->unit];
        bool a, b, y;
        step_reads(U, st, &a, &b, &y);
        if (a) need_ref(r, U->in[0]);
        if (b) need_ref(r, U->in[1]);
        if (y) r->need[st->unit] = 1;
    }
    for (uint32_t u = G->nu; u-- > 0;) {
        const fz_unit *U = &r->U[u];
        if (!r->need[u] || U->view || U->kept) continue;
        for (int k = 0; k < U->nin; k++) need_ref(r, U->in[k]);
    }
}

/* A step that copies its node's gradient into a fresh slot (add's sides, sub's left) of an
 * inner unit, from an inner unit's slot. */
static bool pass_through(const fz_run *r, const fz_step *st)
{
    const fz_unit *U = &r->U[st->unit];
    int op = U->n->op;
    return st->kind == S_BINARY && (op == OP_ADD || (op == OP_SUB && st->side == 0)) && st->tk == T_UNIT &&
           st->assign && !r->gbuf[st->to] && !r->gbuf[st->unit] && U->in[0] != U->in[1]; /* x + x: restrict */
}

/* Copies that need not be made.  A node's gradient is final once its steps start, and read by
 * them only: a copy of it that no later step writes can share its memory, any number of such
 * copies; a copy that later steps add to can too, alone (those additions land in the node's
 * gradient, which nothing reads by then, and would be seen by a second sharer). */
static void aliases(const fz_run *r, fz_sweep *w)
{
    for (int s = 0; s < w->n;) {
        int e = s;
        while (e < w->n && w->steps[e].unit == w->steps[s].unit) e++; /* the node's steps */
        bool written = false;
        for (int k = s; k < e; k++)
            for (int l = e; pass_through(r, &w->steps[k]) && l < w->n; l++)
                written = written || (w->steps[l].tk == T_UNIT && w->steps[l].to == w->steps[k].to);
        for (int k = s, n = 0; k < e; k++)
            if (pass_through(r, &w->steps[k]) && (!written || !n++)) w->steps[k].alias = 1;
        s = e;
    }
}

/* The steps of a sweep that entered the group at node `upto`, in the unfused sweep's order
 * (and with its liveness, zeroing and assignment), with every gradient buffer it writes
 * obtained as the unfused ops obtain them. */
static ad_status plan_steps(ad_graph *g, fz_run *r, fz_sweep *w)
{
    const fz_group *G = r->G;
    w->n = w->nstash = 0;
    for (uint32_t u = 0; u < G->nu; u++) {
        ad_node *n = r->U[u].n;
        bool live = n->id <= r->upto && (n->flags & F_GRAD_LIVE);
        w->live[u] = live;
        w->fresh[u] = !live;
        r->gbuf[u] = live ? ad_node_grad_data(n) : NULL;
    }
    ad_node *S = G->sum;
    if (S && S->id <= r->upto && (S->flags & F_GRAD_LIVE) && (S->flags & F_NEEDS_GRAD)) {
        fz_step st = {.kind = S_FILL, .unit = (int16_t)G->sum_unit};
        st.gv = load(ad_node_grad_data(S), (ad_dtype)S->dtype, 0);
        if (S->op == OP_MEAN) st.gv /= (double)G->n;
        if (target(g, r, w, G->sum_unit, true, &st)) w->steps[w->n++] = st;
        else if (g->status) return g->status;
    }
    for (uint32_t u = G->nu; u-- > 0;) {
        const fz_unit *U = &r->U[u];
        if (!w->live[u] || !(U->n->flags & F_NEEDS_GRAD)) continue;
        if (U->view) {
            /* slice's backward zeroes a fresh buffer and adds; instead the first write is
             * 0 + g where the slice lies and the rest is zeroed: the same bits, a pass less */
            ad_node *base = node_in(U->n, 0);
            fz_step st = {.kind = S_VIEW, .unit = (int16_t)u, .tk = T_MEM, .off = U->off};
            bool assign;
            if (!(st.D = grad_for_write(g, base, true, &assign))) {
                if (g->status) return g->status;
                continue;
            }
            if (assign) {
                size_t es = ad_dtype_size(G->dtype);
                memset(st.D, 0, (size_t)U->off * es);
                memset((char *)st.D + (size_t)(U->off + G->n) * es, 0, (size_t)(node_size(base) - U->off - G->n) * es);
            }
            st.assign = assign;
            /* near an edge, base elements [edge + lo, edge + hi) get writes from both sides,
             * lo and hi the smallest and largest offset into the base: this slice writes them
             * from its elements [edge + lo - off, edge + hi - off) */
            st.stash = -1;
            int64_t omin = U->off, omax = U->off;
            for (uint32_t v = 0; v < G->nu; v++)
                if (r->U[v].view && node_in(r->U[v].n, 0) == base) {
                    omin = r->U[v].off < omin ? r->U[v].off : omin;
                    omax = r->U[v].off > omax ? r->U[v].off : omax;
                }
            if (omax > omin) st.stash = (int8_t)w->nstash++, st.zone = omin - U->off, st.width = omax - omin;
            w->steps[w->n++] = st;
            continue;
        }
        bool one = U->nin == 1 || (U->n->op == OP_MUL && U->in[0] == U->in[1]);
        for (int side = 0; side < (one ? 1 : 2); side++) {
            fz_step st = {.kind = U->nin == 1 ? S_UNARY : one ? S_SQUARE : S_BINARY, .side = (uint8_t)side,
                          .unit = (int16_t)u};
            int32_t ref = U->in[side];
            bool can_assign = ref >= 0 || r->X[-1 - ref].how == FLAT;
            if (!target(g, r, w, ref, can_assign, &st)) {
                if (g->status) return g->status;
                continue;
            }
            w->steps[w->n++] = st;
        }
    }
    aliases(r, w);
    needed(r, w);
    return AD_OK;
}

/* ---- the library's side ---- */

static fuse_plan *plan_of(ad_graph *g)
{
    if (!g->fuse && !(g->fuse = ad_xcalloc(1, sizeof *g->fuse))) return NULL;
    return g->fuse;
}

/* g's plan, made or brought up to date; NULL when fusion is off or cannot be had. */
static fuse_plan *plan_ready(ad_graph *g)
{
    if (!g->fuse_on || g->anomaly) return NULL;
    fuse_plan *p = plan_of(g);
    if (!p) return NULL;
    if ((!p->valid || p->nnodes != g->nnodes) && !build(g, p)) {
        plan_clear(p); /* no memory for a plan: evaluate one node at a time */
        return NULL;
    }
    /* a name given since the plan was made keeps its node from now on */
    for (uint32_t gi = 0; gi < p->ngr; gi++) {
        fz_group *G = &p->gr[gi];
        G->has_inner = false;
        for (uint32_t u = 0; u < G->nu; u++) {
            fz_unit *U = &p->un[G->u0 + u];
            if (U->n->x->name) U->kept = 1;
            if (!U->kept && !U->view) G->has_inner = true;
        }
    }
    return p;
}

bool fuse_replay_begin(ad_graph *g)
{
    fuse_plan *p = plan_ready(g);
    if (!p) return false;
    p->at = 0;
    return p->ngr > 0;
}

uint32_t fuse_replay_at(ad_graph *g, uint32_t id)
{
    fuse_plan *p = g->fuse;
    while ((uint32_t)p->at < p->ngr && p->gr[p->at].lo < id) p->at++;
    if ((uint32_t)p->at == p->ngr || p->gr[p->at].lo != id) return 0;
    const fz_group *G = &p->gr[p->at];
    group_forward(p, G, false);
    if (G->has_inner) g->fuse_stale = true;
    return G->hi + 1;
}

void fuse_materialize(ad_graph *g)
{
    fuse_plan *p = g->fuse;
    g->fuse_stale = false;
    if (!p || !p->valid) return;
    for (uint32_t gi = 0; gi < p->ngr; gi++)
        if (p->gr[gi].has_inner) group_forward(p, &p->gr[gi], true);
}

bool fuse_sweep_begin(ad_graph *g)
{
    fuse_plan *p = plan_ready(g);
    if (!p || !p->ngr) {
        if (g->fuse_stale) fuse_materialize(g); /* the unfused sweep reads every value */
        return false;
    }
    p->at = (int64_t)p->ngr - 1;
    p->done = -1;
    return true;
}

bool fuse_sweep_at(ad_graph *g, ad_node *n, ad_status *st)
{
    fuse_plan *p = g->fuse;
    *st = AD_OK;
    while (p->at >= 0 && p->gr[p->at].lo > n->id) p->at--;
    if (p->at < 0 || p->gr[p->at].hi < n->id) return false;
    if (p->done == p->at) return true;
    p->done = p->at;
    const fz_group *G = &p->gr[p->at];
    fz_run r;
    run_init(&r, p, G);
    r.backward = true;
    r.upto = n->id;
    fz_sweep w;
    if ((*st = plan_steps(g, &r, &w)) != AD_OK || !w.n) return true;
    r.steps = w.steps;
    r.nsteps = w.n;
    run_parallel(&r, G->par_bwd);
    return true;
}

void fuse_reset(ad_graph *g)
{
    g->fuse_stale = false;
    if (g->fuse) plan_clear(g->fuse);
}

void fuse_free(ad_graph *g)
{
    fuse_plan *p = g->fuse;
    if (!p) return;
    ad_xfree(p->gr), ad_xfree(p->un), ad_xfree(p->ex), ad_xfree(p->gid), ad_xfree(p->uix);
    ad_xfree(p);
    g->fuse = NULL;
}

bool ad_set_fusion(ad_graph *g, bool on)
{
    if (!g) return false;
    bool was = g->fuse_on;
    if (!on && g->fuse_stale) fuse_materialize(g);
    g->fuse_on = on;
    return was;
}
