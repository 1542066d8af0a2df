/* Internals shared by the files of ad/; nothing outside ad/ includes this. */
#ifndef AD_INTERNAL_H
#define AD_INTERNAL_H

#include "ad.h"
#include "ad_ew.h"
#include "ad_op.h"
#include <math.h>
#include <string.h>

/* The length (1 to 4) of the well-formed UTF-8 sequence that starts at s, or 0 for a byte that
 * starts none (a stray continuation byte, an overlong form, a surrogate, a code point past
 * U+10FFFF, a sequence cut short, also by the NUL).  Names are the user's bytes, and JSON and
 * XML writers must not copy invalid UTF-8 into their output. */
static inline int utf8_len(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    for (int k = 1; k < len; k++)
        if ((p[k] & 0xC0) != 0x80) return 0;
    /* the second byte's range rules out overlongs, surrogates and code points past U+10FFFF */
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
        (c == 0xF4 && p[1] > 0x8F))
        return 0;
    return len;
}

/* U+FFFD, what invalid UTF-8 becomes in the writers' output. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/* Node flags. */
enum {
    F_SCALAR = 1 << 0,     /* float64 rank-0: value, gradient, partials live in the node */
    F_NEEDS_GRAD = 1 << 1, /* some input (transitively) is a variable or parameter */
    F_LEAF = 1 << 2,       /* variable or parameter: its gradient accumulates across sweeps */
    F_GRAD_LIVE = 1 << 3,  /* tensor gradient buffer holds this sweep's sum */
    F_PARTIALS = 1 << 4,   /* scalar fast path: da/db hold the local partials */
    F_VIEW = 1 << 5        /* data is a view of storage the node does not own: its input's
                            * (a contiguous slice) or a tensor's (ad_param, ad_const_tensor) */
};

/* The ops that are not elementwise, each defined in its family's file under ops/ as
 * op_NAME: X(ID, name). */
#define AD_TENSOR_OPS(X)                                                                      \
    X(SUM, sum) X(MEAN, mean) X(SUM_AXIS, sum_axis) X(MEAN_AXIS, mean_axis)                   \
    X(MATMUL, matmul) X(TRANSPOSE, transpose) X(RESHAPE, reshape)                             \
    X(BROADCAST_TO, broadcast_to) X(SLICE, slice) X(CONCAT, concat) X(SOFTMAX, softmax)       \
    X(LOG_SOFTMAX, log_softmax) X(CROSS_ENTROPY, cross_entropy) X(MSE, mse) X(MAE, mae)       \
    X(DROPOUT, dropout) X(LINEAR, linear) X(EW_DERIV, ew_deriv)         \
    X(DROPOUT_MASK, dropout_mask) X(WHERE, where) X(CE_ONEHOT, ce_onehot) X(LABELS, labels) \
    AD_OPS_INDEX(X) AD_OPS_AXIS(X) AD_OPS_CONV(X) AD_OPS_NORM(X)

/* The families of issue 17, one list each (filled in by index.c/shape.c, reduce.c/loss.c,
 * conv.c and norm.c). */
#define AD_OPS_INDEX(X)                                                                       \
    X(INDEX_SELECT, index_select) X(EMBEDDING, embedding) X(GATHER, gather)                   \
    X(INDEX_ADD, index_add) X(INDEX_TAKE, index_take) X(STACK, stack) X(PERMUTE, permute)     \
    X(SLICE_STEP, slice_step) X(DETACH, detach)

#define AD_OPS_AXIS(X)                                                                        \
    X(MAX_AXIS, max_axis) X(MIN_AXIS, min_axis) X(ARGMAX, argmax) X(ARGMIN, argmin)           \
    X(LOGSUMEXP, logsumexp) X(BCE_WITH_LOGITS, bce_with_logits)

#define AD_OPS_CONV(X)                                                                        \
    X(CONV2D, conv2d) X(CONV2D_INPUT_GRAD, conv2d_input_grad)                                 \
    X(CONV2D_WEIGHT_GRAD, conv2d_weight_grad) X(MAX_POOL2D, max_pool2d)                       \
    X(MAX_POOL2D_SCATTER, max_pool2d_scatter) X(MAX_POOL2D_GATHER, max_pool2d_gather)         \
    X(AVG_POOL2D, avg_pool2d) X(AVG_POOL2D_GRAD, avg_pool2d_grad)

#define AD_OPS_NORM(X) X(LAYER_NORM, layer_norm) X(BATCH_NORM, batch_norm)

/* Built-in op ids, in the registry's order: the leaves, the elementwise ops of ad_ew.h, then
 * the tensor ops. */
#define OP_ID_(ID, ...) OP_##ID,
#define OP_TENSOR_ID_(ID, name) OP_##ID,
enum {
    OP_CONST, OP_VAR, OP_PARAM,
    AD_EW_BINARY(OP_ID_) AD_EW_UNARY(OP_ID_) AD_EW_UNARY_P(OP_ID_)
    AD_TENSOR_OPS(OP_TENSOR_ID_)
    OP_BUILTIN_COUNT
};
#undef OP_ID_
#undef OP_TENSOR_ID_
/* The first elementwise op: the leaves come before it. */
#define OP_FIRST_COMPUTED OP_ADD
/* Ops whose output carries no gradient: the comparisons (conditions, not quantities, as in
 * PyTorch, where they give booleans), argmax and argmin (indices), dropout's mask,
 * cross_entropy's one-hot labels, class labels (ad_labels) and detach (stop_gradient).  Their nodes never need a
 * gradient. */
static inline bool op_no_grad(int op)
{
    return (op >= OP_LT && op <= OP_NE) || op == OP_ARGMAX || op == OP_ARGMIN || op == OP_DROPOUT_MASK ||
           op == OP_CE_ONEHOT || op == OP_LABELS || op == OP_DETACH;
}

/* Tensor part of a node: every node that is not a plain float64 scalar has one; named
 * scalars and scalars with op parameters have one too (then data/grad point into the node). */
typedef struct ad_ext {
    ad_shape shape;
    int64_t size;
    void *data;
    void *grad;           /* NULL until the node first receives a gradient */
    ad_tensor *param;     /* parameter leaf: data and grad alias it */
    ad_node **in;         /* all inputs when there are more than two */
    const char *name;
    double *param_v;      /* op parameters, nparam of them */
    int nparam;
    void *saved;          /* op-specific state kept for backward (mask, labels, ...) */
    struct op_block *blocks; /* the memory ad_op_alloc gave the op, for workspaces to copy */
    void *scratch;        /* node_scratch's buffer, kept for the node's next sweep (a replay's) */
    size_t scratch_bytes;
} ad_ext;

/* One allocation of ad_op_alloc for a node's op: ad_graph_clone copies it and points the
 * copied state at the copy. */
typedef struct op_block {
    struct op_block *next;
    void *p;
    size_t bytes;
} op_block;

/* 72 bytes, so most nodes straddle two cache lines.  A 64-byte node leaves no room for a 32-bit
 * input count beside id, op, flags and dtype; one squeezed to 64 bytes (24-bit id, 8-bit
 * count) timed no faster on the scalar-graph benchmarks (docs/design.md), so the fields keep
 * their full widths.  The assert keeps this comment and the docs honest. */
struct ad_node {
    ad_node *a, *b;       /* first two inputs */
    double v, g;          /* float64 scalar value and gradient */
    double da, db;        /* local partials recorded by the scalar fast path */
    ad_ext *x;            /* NULL for a plain float64 scalar */
    uint32_t id;
    uint16_t op;
    uint8_t flags;
    uint8_t dtype;
    int32_t nin;          /* number of inputs */
    int32_t guard;        /* ad_branch's recorded outcome: 0 none, 1 false, 2 true */
};
_Static_assert(sizeof(void *) != 8 || sizeof(struct ad_node) == 72,
               "ad_node's size changed: update the comment above and docs/design.md");

struct ad_tensor {
    ad_shape shape;
    int64_t size;
    ad_dtype dtype;
    void *data;
    void *grad;
    char *name;
    /* ad_tensor_zero_grad only sets this: the buffer's contents are stale and stand for 0.  The
     * next backward writes over them (grad_for_write) and readers see zeros (tensor_grad_now),
     * so a training step never spends a pass over memory on zeroing gradients. */
    bool grad_zero;
    /* ad_param_set_grad_ready: the function, and what the sweep that may call it counted of
     * this tensor in its graph (parameter nodes, their consumers); handed: 0, 1 or -1 as
     * ad_param_take_grad_handed returns it */
    ad_grad_ready_fn ready;
    void *ready_ctx;
    int32_t ready_nodes, ready_uses;
    int8_t handed;
};

/* The tensor whose gradient n's op may hand to its ready function now (ad_param_set_grad_ready),
 * or NULL: n must be its only parameter node, used once, and the gradient zeroed before the
 * sweep.  Call before the op's first write of the gradient. */
ad_tensor *grad_handable(const ad_node *n);
/* Marks p's gradient as handed by this sweep (after its blocks were given to p->ready). */
void grad_handed(ad_tensor *p);
/* How many tensors have a ready function now. */
int grad_ready_tensors(void);

/* The gradient buffer of a parameter made current: zeroed now if only marked zero. */
void *tensor_grad_now(ad_tensor *t);

#define SLAB_BITS 12
#define SLAB_NODES (1u << SLAB_BITS)
/* Slabs start on 2^19-byte boundaries (a slab is 288 KiB), so a node's address names its
 * slab's start, and slab_tab finds the slab from that start in one probe: node_is_live. */
#define SLAB_ALIGN_BITS 19
#define SLAB_TAB 1024

typedef struct block {
    struct block *next;
    size_t cap, used;
    /* data follows, 64-byte aligned */
} block;

struct ad_graph {
    ad_node **slab;       /* node slabs of SLAB_NODES each, kept across resets */
    uint32_t nslab, slab_cap;
    uint32_t nnodes;
    ad_node *cur, *cur_end; /* free slots of the current slab */
    block *first, *blk;   /* byte arena: list of blocks and the one in use */
    uint64_t mallocs, reserved, used;
    /* The arena had blocks when this graph began, and still had to take a new one: the graph
     * outgrew them, and the next reset makes them one block (graph.c). */
    bool had_blocks, outgrew;
    uint32_t slab_tab[SLAB_TAB]; /* 1 + the slab starting at k << SLAB_ALIGN_BITS (mod SLAB_TAB); 0: none */
    /* node_is_live's cache: a full slab (not the current one) where it last found an input,
     * [live_base, live_base + live_len); live_len is 0 after a reset */
    uintptr_t live_base, live_len;
    uint32_t dirty;       /* nodes [0, dirty) may hold gradients of an earlier sweep */
    bool nograd;
    bool anomaly;         /* check every value and gradient (anomaly.c) */
    /* Forward mode (forward.c): tangent[i] is node i's tangent, NULL where it is zero, for
     * nodes [0, ntangent); a float64 scalar's lives in tangent_v[i].  tangent_mem[i] is the
     * arena buffer node i's tangent was last computed in, for nodes [0, ntangent_mem): a
     * later sweep over the same recording (a Jacobian's columns) reuses it.  The arrays are
     * kept across resets. */
    void **tangent, **tangent_mem;
    double *tangent_v;
    uint32_t ntangent, ntangent_mem, tangent_cap;
    /* Second order on scalar graphs (higher.c): per node, its tangent, gradient and the
     * gradient's tangent, kept across calls so that a Hessian's sweeps allocate once. */
    struct hvp_slot *hvp;
    uint32_t hvp_cap;
    /* The ids of the leaves among nodes [0, leaf_upto), for ad_zero_grad: a graph replayed
     * many times is not scanned whole for its few leaves at every step.  Kept across resets. */
    uint32_t *leaf;
    uint32_t nleaf, leaf_cap, leaf_upto;
    ad_status status;
    char err[320];
    /* Elementwise fusion (fuse.c): on (ad_set_fusion), the plan, and whether a fused replay
     * left inner values unwritten since (fuse_current). */
    struct fuse_plan *fuse;
    bool fuse_on, fuse_stale;
};

/* Registry entry as the engine sees it: the public definition plus, for elementwise ops,
 * the scalar formulas of ad_ew.h (or of the user's ad_op_register_unary) and the words that
 * traces and pictures use. */
typedef double (*ew1_fn)(double x, double p);
typedef double (*ew1_d_fn)(double x, double y, double p);
typedef double (*ew2_fn)(double a, double b);
typedef double (*ew2_d_fn)(double a, double b, double y);
typedef struct {
    ad_op_def def;
    ew1_fn f1; ew1_d_fn d1, dd1;                      /* unary elementwise */
    ew2_fn f2; ew2_d_fn d2a, d2b, d2aa, d2ab, d2bb;   /* binary elementwise */
    /* Parameters, checked by ad_apply_with before anything reads them: the op takes
     * nparam_min..nparam of them (a unary elementwise op's one is optional), named in messages
     * by param_names, and params (if any) checks their ranges.  An op of ad_op_register
     * declares none of this (any_params): its own callbacks judge what they are given. */
    int nparam;
    int nparam_min;
    bool any_params;
    const char *param_names;   /* "(axis, keepdim)" */
    int (*params)(const ad_op_ctx *c, char *msg, size_t len);
    const char *symbol;        /* the gate's label (NULL: the name) */
    const char *prefix;        /* unary: written before the operand ("-", "1/") */
    const char *infix;         /* binary: written between the operands (" + ") */
    const char *formula[2];    /* binary: local gradient text per input */
    const char *fold_label[2], *fold_formula[2]; /* a constant folded in on the left, right */
} op_entry;

static inline bool op_is_elementwise(const op_entry *e) { return e->f1 || e->f2; }
const op_entry *op_entry_get(int id);

/* Parameter p as an integer in [lo, hi], or false with "<what> <p> is not an integer in
 * [lo, hi]" written into msg.  Every op checks its parameters so before converting them:
 * converting NaN or 1e300 to an integer is undefined behaviour. */
bool param_int(double p, double lo, double hi, const char *what, char *msg, size_t len);
/* The largest dimension or index a parameter may give: 2^62, exact as a double and far
 * beyond any real tensor, so that no conversion or sum of two of them overflows. */
#define PARAM_DIM_MAX 4611686018427387904.0
/* An axis splits a tensor into [outer, n, inner] (n along the axis).  For a tensor with no
 * elements the products outside the axis may exceed int64 ([0, 2^62, 2^62]): then outer and
 * inner are 0, as every loop over the tensor has nothing to do. */
typedef struct { int64_t outer, n, inner; } axis_split;
axis_split split_axis(const ad_shape *s, int axis);
/* The parameter check of ops whose first parameter is an axis (more of them are checked by
 * the op's own). */
int params_axis(const ad_op_ctx *c, char *msg, size_t len);
/* log(sum exp) of the n elements X[base + k stride] (loss.c), as torch.logsumexp: the maximum
 * taken out first, so it never overflows; -inf for no elements or all -inf, +inf with a +inf,
 * NaN with a NaN. */
double lane_lse(ad_dtype t, const void *X, int64_t base, int64_t n, int64_t stride);
/* Why node n cannot be copied into a workspace (norm.c: a batch norm that updates running
 * statistics), or NULL. */
const char *norm_not_clonable(const ad_node *n);

/* Arena. */
void *arena_alloc(ad_graph *g, size_t bytes);  /* 64-byte aligned, uninitialised */
ad_node *node_alloc_slow(ad_graph *g);         /* starts a slab */
/* The next node slot, or NULL on OOM (error set).  Inline: it is half of a scalar op's cost. */
static inline ad_node *node_alloc(ad_graph *g)
{
    if (g->cur == g->cur_end) return node_alloc_slow(g);
    ad_node *n = g->cur++;
    n->id = g->nnodes++;
    n->guard = 0;
    return n;
}
/* Node id of g: inline, since the passes over a small replayed graph touch every node at every
 * sweep, where a call per node was most of their cost. */
static inline ad_node *node_at(const ad_graph *g, uint32_t id)
{
    return &g->slab[id >> SLAB_BITS][id & (SLAB_NODES - 1)];
}
/* Takes back node n of a call that failed after making it, so that no walker (backward,
 * ad_find_nonfinite, ad_graph_node) meets a half-made node: the newest node is unmade; one
 * with newer nodes after it (an op's callbacks made some) becomes a plain constant 0. */
void node_discard(ad_graph *g, ad_node *n);
bool node_is_live_slow(const ad_graph *g, const ad_node *n);
/* Whether n is a node of g made since the last reset: inside one of g's slabs, below the node
 * count.  Decided from the address alone, so a node of another graph, even a freed one, is
 * never read: the slab start that n's address implies is looked up in slab_tab (a slab the
 * table could not hold, two starts sharing an entry, is found by node_is_live_slow). */
static inline bool node_is_live(const ad_graph *g, const ad_node *n)
{
    uintptr_t p = (uintptr_t)n, base = p >> SLAB_ALIGN_BITS << SLAB_ALIGN_BITS;
    /* most inputs are recent: in the current slab (the one g->cur points into), below cur */
    if (((p ^ (uintptr_t)g->cur) >> SLAB_ALIGN_BITS) == 0 && p < (uintptr_t)g->cur) return true;
    /* most others are in the slab the last such input was in (a model's parameters) */
    if (p - g->live_base < g->live_len) return true;
    uint32_t s = g->slab_tab[(base >> SLAB_ALIGN_BITS) & (SLAB_TAB - 1)];
    if (!s || (uintptr_t)g->slab[s - 1] != base) return node_is_live_slow(g, n);
    /* nodes of slab s-1 below the count: all of it, or the first nnodes mod SLAB_NODES */
    int64_t live = (int64_t)g->nnodes - ((int64_t)(s - 1) << SLAB_BITS);
    if (live >= (int64_t)SLAB_NODES) { /* a full slab: remember it (the cache is not state) */
        ((ad_graph *)g)->live_base = base;
        ((ad_graph *)g)->live_len = SLAB_NODES * sizeof(ad_node);
    }
    return live > 0 && p - base < (uint64_t)live * sizeof(ad_node);
}
char *arena_strdup(ad_graph *g, const char *s);
/* Short names for the counting allocator of alloc.c (public as ad_malloc, ...). */
#define ad_xmalloc ad_malloc
#define ad_xcalloc ad_calloc
#define ad_xrealloc ad_realloc
#define ad_xfree ad_free
void *ad_aligned_alloc(size_t align, size_t n);

/* Node creation shared by all ops: a tensor node of dtype/shape with a fresh data buffer (a
 * float64 scalar keeps its value inline), inputs linked, flags derived from the inputs. */
ad_node *node_new(ad_graph *g, int op, ad_dtype t, const ad_shape *shape, ad_node *const *in,
                  int nin);
/* The same for a node whose value is a view of `view` (another node's storage): no copy. */
ad_node *node_new_view(ad_graph *g, int op, ad_dtype t, const ad_shape *shape,
                       ad_node *const *in, int nin, void *view);
/* A scratch buffer of at least `bytes` for a callback of node n (an op's backward), the same
 * one at every sweep: a replayed graph is never reset, so memory taken from the arena at each
 * sweep would pile up.  NULL with the error set if memory runs out. */
void *node_scratch(ad_graph *g, ad_node *n, size_t bytes);
/* An extension for a node that has none yet (names, op parameters). */
ad_ext *node_ext(ad_graph *g, ad_node *n);
/* Copies op parameters into the node. */
bool node_set_params(ad_graph *g, ad_node *n, const double *p, int np);

static inline ad_shape node_shape(const ad_node *n) { return n->x ? n->x->shape : AD_SHAPE0; }
static inline int64_t node_size(const ad_node *n) { return n->x ? n->x->size : 1; }
static inline void *node_data(ad_node *n) { return n->x ? n->x->data : (void *)&n->v; }
static inline ad_node *node_in(const ad_node *n, int i) {
    return n->x && n->x->in ? n->x->in[i] : (i == 0 ? n->a : n->b);
}
static inline double node_param(const ad_node *n, int i) { return n->x->param_v[i]; }
/* Short names for the public accessors, which the kernels use on every line. */
static inline double load(const void *p, ad_dtype t, int64_t i) { return ad_data_get(p, t, i); }
static inline void store(void *p, ad_dtype t, int64_t i, double v) { ad_data_set(p, t, i, v); }

/* Checks shared by op entry points: a usable graph and non-NULL inputs of one dtype.  On
 * failure records "<op>: ..." and returns false. */
bool check_inputs(ad_graph *g, const char *op, ad_node *const *in, int nin);
/* Resolves a possibly negative axis against rank; records an error naming op and shape. */
bool check_axis(ad_graph *g, const char *op, const ad_node *a, int *axis);
/* Broadcast shape of a and b, or false with the message "<op>: [..] and [..] do not
 * broadcast" recorded. */
bool broadcast_shapes(const ad_shape *a, const ad_shape *b, ad_shape *out);

/* The gradient buffer of n for a backward that will write it.  A buffer that holds nothing
 * yet is handed over unzeroed with *assign set when can_assign (the caller then writes every
 * element with `=`), zeroed otherwise.  NULL if n needs no gradient (or on OOM, error set). */
void *grad_for_write(ad_graph *g, ad_node *n, bool can_assign, bool *assign);

/* The one-node fast path of an elementwise op on float64 scalars a (and b for a binary op). */
ad_node *ew_scalar_apply(ad_graph *g, int op, ad_node *a, ad_node *b);
/* The forward rule of ops that are linear in their inputs (sums, shape ops, dropout): their
 * own forward pass run on the inputs' tangents. */
ad_status jvp_linear(const ad_op_ctx *c);
/* ad_tangent_buffer without the zeroing, for a forward rule that writes every element. */
void *tangent_buffer_to_fill(ad_graph *g, ad_node *n);
/* Makes t (part of another node's tangent, never written through) n's tangent: a view, as
 * n's value is a view (contiguous slices).  n must not be a float64 scalar. */
void tangent_set_view(ad_graph *g, ad_node *n, const void *t);
/* The arguments of an op's callbacks for node n. */
ad_op_ctx node_ctx(ad_graph *g, ad_node *n, ad_node **pair);

/* Elementwise engines, used by built-in and shape ops. */
void ew_binary_forward(const op_entry *e, ad_node *out, ad_node *a, ad_node *b);
ad_status ew_binary_backward(ad_graph *g, const op_entry *e, ad_node *out, ad_node *a,
                             ad_node *b);
/* Unary op `op` (parameter p) applied in place to rows x cols of Y (row stride ldy), with the
 * op's own loop: the same bits as the op's node would compute. */
void ew_unary_inplace(int op, ad_dtype t, void *Y, int64_t ldy, int64_t rows, int64_t cols, double p);
/* D = G * op'(x, y) over n elements, as the op's backward writes a fresh gradient (split
 * across the pool's threads when large). */
void ew_unary_grad(int op, ad_dtype t, int64_t n, const void *X, const void *Y, double p, const void *G,
                   void *D);
/* A scalar constant of like's dtype (it broadcasts against like in any binary op). */
ad_node *scalar_const_like(ad_graph *g, const ad_node *like, double v);
/* n summed over the axes along which it was broadcast from shape `to` (for reverse rules
 * written as graphs); NULL on error. */
ad_node *sum_to_shape(ad_graph *g, ad_node *n, const ad_shape *to);
/* Adds src (shape of out) into dst (shape `dshape`, which broadcasts to out's shape). */
void reduce_broadcast_add(ad_dtype t, const void *src, const ad_shape *sshape, void *dst,
                          const ad_shape *dshape, double scale);

/* Copies src (shape sshape) broadcast to dshape into dst. */
void broadcast_copy(ad_dtype t, const void *src, const ad_shape *sshape, void *dst,
                    const ad_shape *dshape);
/* Adds n elements of src into dst (same dtype). */
static inline void add_into(ad_dtype t, void *dst, const void *src, int64_t n)
{
    if (t == AD_F64)
        for (int64_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
    else
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
}

/* Matrix kernel: C[m,n] (+)= op(A)[m,k] * op(B)[k,n], row-major with leading dimensions. */
void gemm(ad_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
          int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, bool accumulate);

/* Op families' table entries, filled in by each ops/ file. */
extern const op_entry ops_elementwise[];
extern const int ops_elementwise_count;

ad_status backward_node(ad_graph *g, ad_node *n);

/* Anomaly mode: n if its value is finite, else NULL with the error recorded; and the check
 * of the gradients a node's backward produced. */
ad_node *anomaly_forward(ad_graph *g, ad_node *n);
ad_status anomaly_backward(ad_graph *g, ad_node *n);

/* f recorded at x on g (reset first), for the one-call entry points (ad_gradient, ad_jvp,
 * ad_vjp, ad_jacobian): n scalar variables in *xs (arena), the result, which must have m
 * elements (any for m < 0); NULL with the error set, its message starting with who. */
ad_node *record_fn(ad_graph *g, const char *who, ad_fn f, int n, const double *x, void *user,
                   int64_t m, ad_node ***xs);

/* The gradient checkers' shared bookkeeping: score one element (|analytic - numeric| against
 * atol + rtol |numeric|, the worst kept), then turn the worst score into a status and message. */
void check_opts(const ad_check_opts *o, double *eps, double *rtol, double *atol);
void check_record(ad_check_report *r, double *worst, int input, int64_t index, double analytic,
                  double numeric, double atol, double rtol);
ad_status check_finish(ad_check_report *r, double worst, ad_status st, double rtol, double atol);

/* ---- elementwise fusion (fuse.c) ---- */

typedef struct fuse_plan fuse_plan;
/* Whether this replay of g fuses: fusion on, no anomaly mode, and a plan (made or brought up to
 * date here) with a group.  Then fuse_replay_at(g, id) is called for each node outside a
 * group's run, in order: if a group's run starts at id, it evaluates the group and returns the
 * id after its run, whose nodes the replay then skips; 0 otherwise. */
bool fuse_replay_begin(ad_graph *g);
uint32_t fuse_replay_at(ad_graph *g, uint32_t id);
/* Writes every value a fused replay left unwritten (inner nodes'). */
void fuse_materialize(ad_graph *g);
/* Called before anything reads or records on g's values: recording, traces, pictures,
 * forward mode, workspaces. */
static inline void fuse_current(ad_graph *g)
{
    if (g && g->fuse_stale) fuse_materialize(g);
}
/* Whether this sweep of g fuses (if not, values are brought up to date for it).  Then the
 * sweep offers fuse_sweep_at each node it would run a backward for: true if the node is in a
 * group, whose whole backward (for its nodes up to n) then runs once, *st its status. */
bool fuse_sweep_begin(ad_graph *g);
bool fuse_sweep_at(ad_graph *g, ad_node *n, ad_status *st);
/* ad_graph_reset's and ad_graph_free's part. */
void fuse_reset(ad_graph *g);
void fuse_free(ad_graph *g);

#endif
