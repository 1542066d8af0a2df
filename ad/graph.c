/* The graph: node slabs, the byte arena, errors, leaves and node accessors. */
#include "internal.h"
#include "ad_io.h"
#include <stdarg.h>
#include <stdlib.h>

enum { BLOCK_MIN = 1 << 20, ALIGN = 64 };

ad_status ad_set_error(ad_graph *g, ad_status st, const char *fmt, ...)
{
    if (!g || g->status != AD_OK) return st;
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(g->err, sizeof g->err, NULL, NULL, fmt, ap);
    va_end(ap);
    g->status = st;
    return st;
}

const char *ad_error(const ad_graph *g)
{
    if (!g) return "graph is NULL";
    return g->status == AD_OK ? NULL : g->err;
}

ad_status ad_status_of(const ad_graph *g) { return g ? g->status : AD_ERR_NULL; }

void ad_clear_error(ad_graph *g)
{
    if (!g) return;
    g->status = AD_OK;
    g->err[0] = 0;
}

bool ad_set_grad_enabled(ad_graph *g, bool enabled)
{
    if (!g) return false;
    bool was = !g->nograd;
    g->nograd = !enabled;
    return was;
}

ad_graph *ad_graph_new(void)
{
    ad_graph *g = ad_xcalloc(1, sizeof *g);
    if (g) g->mallocs = 1;
    return g;
}

void ad_graph_free(ad_graph *g)
{
    if (!g) return;
    for (uint32_t i = 0; i < g->nslab; i++) ad_xfree(g->slab[i]);
    ad_xfree(g->slab);
    ad_xfree(g->tangent);
    ad_xfree(g->tangent_v);
    ad_xfree(g->tangent_mem);
    ad_xfree(g->hvp);
    ad_xfree(g->leaf);
    fuse_free(g);
    for (block *b = g->first, *nx; b; b = nx) {
        nx = b->next;
        ad_xfree(b);
    }
    ad_xfree(g);
}

static size_t block_header(void);

/* A graph that outgrew the kept blocks would otherwise add a block at every reset (an
 * exact-size one for each request over BLOCK_MIN, never reused for a larger request) and keep
 * them all: 19 GB after 600 steps of a graph growing one row a step.  So its blocks become one,
 * of the size it used plus a quarter: a graph growing slowly fits again for many steps, and
 * the reserve stays within about twice the largest graph.  Old blocks go first, so the peak
 * is no higher than it already was; if the new block cannot be had, the arena starts empty. */
static void arena_coalesce(ad_graph *g)
{
    size_t need = (size_t)g->used, cap = need + need / 4;
    cap = (cap + BLOCK_MIN - 1) / BLOCK_MIN * BLOCK_MIN;
    for (block *b = g->first, *nx; b; b = nx) {
        nx = b->next;
        g->reserved -= b->cap;
        ad_xfree(b);
    }
    g->first = NULL;
    block *b = cap <= SIZE_MAX - block_header() ? ad_aligned_alloc(ALIGN, block_header() + cap) : NULL;
    if (!b) return;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    g->first = b;
    g->mallocs++;
    g->reserved += cap;
}

void ad_graph_reset(ad_graph *g)
{
    if (!g) return;
    g->nnodes = 0;
    g->live_len = 0;
    g->cur = g->cur_end = NULL;
    if (g->outgrew) arena_coalesce(g);
    for (block *b = g->first; b; b = b->next) b->used = 0;
    g->blk = g->first;
    g->had_blocks = g->first != NULL;
    g->outgrew = false;
    g->used = 0;
    g->dirty = 0;
    g->ntangent = g->ntangent_mem = 0;
    g->nleaf = g->leaf_upto = 0;
    fuse_reset(g);
    ad_clear_error(g);
}

ad_graph_stats ad_graph_get_stats(const ad_graph *g)
{
    ad_graph_stats s = {0};
    if (!g) return s;
    s.mallocs = g->mallocs;
    s.bytes_reserved = g->reserved;
    s.bytes_used = g->used;
    s.nodes = g->nnodes;
    return s;
}

static size_t block_header(void) { return (sizeof(block) + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

/* Bump allocation.  A request that does not fit the current block moves on to the next kept
 * block that fits; only when none does is a new block taken from the system.  A loop that
 * makes the same requests each iteration therefore stops allocating after its first one. */
void *arena_alloc(ad_graph *g, size_t bytes)
{
    bytes = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (bytes == 0) bytes = ALIGN;
    block *b = g->blk, *prev = NULL;
    for (; b; b = b->next) {
        if (b->cap - b->used >= bytes) break;
    }
    if (!b) {
        size_t cap = bytes > BLOCK_MIN ? bytes : BLOCK_MIN;
        void *raw = NULL;
        if (cap > SIZE_MAX - block_header() || !(raw = ad_aligned_alloc(ALIGN, block_header() + cap)))
            return NULL;
        b = raw;
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
        g->mallocs++;
        g->reserved += cap;
        g->outgrew = g->had_blocks;
        if (!g->first) g->first = b;
        else {
            for (prev = g->first; prev->next; prev = prev->next) {}
            prev->next = b;
        }
    }
    g->blk = b;
    void *p = (char *)b + block_header() + b->used;
    b->used += bytes;
    g->used += bytes;
    return p;
}

_Static_assert(SLAB_NODES * sizeof(ad_node) <= (size_t)1 << SLAB_ALIGN_BITS,
               "a slab must fit in its alignment, or two slabs could share a start");

/* Whether n lies in slab s (*off its byte offset there). */
static bool in_slab(const ad_graph *g, uint32_t s, const ad_node *n, uintptr_t *off)
{
    *off = (uintptr_t)n - (uintptr_t)g->slab[s];
    return *off < SLAB_NODES * sizeof(ad_node);
}

/* A scan: only for foreign nodes and for slabs that share a slab_tab entry with another (a
 * scan for every input took the Rosenbrock graph's recording from 175 to 370 million
 * instructions). */
bool node_is_live_slow(const ad_graph *g, const ad_node *n)
{
    uintptr_t off;
    uint32_t s = 0;
    while (s < g->nslab && !in_slab(g, s, n, &off)) s++;
    return s < g->nslab && off % sizeof(ad_node) == 0 &&
           ((uint64_t)s << SLAB_BITS) + off / sizeof(ad_node) < g->nnodes;
}

void node_discard(ad_graph *g, ad_node *n)
{
    if (!n) return;
    if (n->id + 1 == g->nnodes && g->cur == n + 1) {
        g->cur--;
        g->nnodes--;
        return;
    }
    memset(n, 0, offsetof(ad_node, id));
    n->op = OP_CONST;
    n->flags = F_SCALAR;
    n->dtype = AD_F64;
    n->nin = 0;
}

ad_node *node_alloc_slow(ad_graph *g)
{
    uint32_t s = g->nnodes >> SLAB_BITS;
    if (s == g->nslab) {
        if (g->nslab == g->slab_cap) {
            uint32_t cap = g->slab_cap ? 2 * g->slab_cap : 16;
            ad_node **ns = ad_xrealloc(g->slab, cap * sizeof *ns);
            if (!ns) goto oom;
            g->slab = ns;
            g->slab_cap = cap;
            g->mallocs++;
        }
        void *p = ad_aligned_alloc((size_t)1 << SLAB_ALIGN_BITS, SLAB_NODES * sizeof(ad_node));
        if (!p) goto oom;
        uint32_t *t = &g->slab_tab[((uintptr_t)p >> SLAB_ALIGN_BITS) & (SLAB_TAB - 1)];
        if (!*t) *t = g->nslab + 1;
        g->slab[g->nslab++] = p;
        g->mallocs++;
        g->reserved += SLAB_NODES * sizeof(ad_node);
    }
    g->cur = g->slab[s];
    g->cur_end = g->cur + SLAB_NODES;
    ad_node *n = g->cur++;
    n->id = g->nnodes++;
    n->guard = 0;
    return n;
oom:
    ad_set_error(g, AD_ERR_NOMEM, "graph: out of memory for node %u", g->nnodes);
    return NULL;
}

char *arena_strdup(ad_graph *g, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = arena_alloc(g, n);
    if (d) memcpy(d, s, n);
    return d;
}

ad_ext *node_ext(ad_graph *g, ad_node *n)
{
    if (n->x) return n->x;
    ad_ext *x = arena_alloc(g, sizeof *x);
    if (!x) {
        ad_set_error(g, AD_ERR_NOMEM, "graph: out of memory");
        return NULL;
    }
    memset(x, 0, sizeof *x);
    x->size = 1;
    x->data = &n->v;
    x->grad = &n->g;
    n->x = x;
    return x;
}

void *node_scratch(ad_graph *g, ad_node *n, size_t bytes)
{
    ad_ext *x = node_ext(g, n);
    if (!x) return NULL;
    if (x->scratch_bytes < bytes) {
        void *p = arena_alloc(g, bytes);
        if (!p) {
            ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory for %zu bytes of scratch at node %u",
                         op_entry_get(n->op)->def.name, bytes, n->id);
            return NULL;
        }
        x->scratch = p;
        x->scratch_bytes = bytes;
    }
    return x->scratch;
}

bool node_set_params(ad_graph *g, ad_node *n, const double *p, int np)
{
    if (np <= 0) return true;
    ad_ext *x = node_ext(g, n);
    double *d = x ? arena_alloc(g, (size_t)np * sizeof *d) : NULL;
    if (!d) return ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", op_entry_get(n->op)->def.name), false;
    memcpy(d, p, (size_t)np * sizeof *d);
    x->param_v = d;
    x->nparam = np;
    return true;
}

ad_node *node_new(ad_graph *g, int op, ad_dtype t, const ad_shape *shape, ad_node *const *in,
                  int nin)
{
    return node_new_view(g, op, t, shape, in, nin, NULL);
}

ad_node *node_new_view(ad_graph *g, int op, ad_dtype t, const ad_shape *shape,
                       ad_node *const *in, int nin, void *view)
{
    const char *opname = op_entry_get(op)->def.name;
    int64_t size = ad_shape_size(shape);
    fuse_current(g); /* the new node's op reads its inputs' values */
    char s[96];
    if (size < 0) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: invalid shape %s", opname, ad_shape_str(shape, s, sizeof s));
        return NULL;
    }
    if ((uint64_t)size > SIZE_MAX / 8) {
        ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory for a %s tensor of shape %s",
                     opname, ad_dtype_name(t), ad_shape_str(shape, s, sizeof s));
        return NULL;
    }
    ad_node *n = node_alloc(g);
    if (!n) return NULL;
    n->a = nin > 0 ? in[0] : NULL;
    n->b = nin > 1 ? in[1] : NULL;
    n->v = n->g = n->da = n->db = 0;
    n->x = NULL;
    n->op = (uint16_t)op;
    n->dtype = (uint8_t)t;
    n->nin = nin;
    n->flags = view ? F_VIEW : 0;
    if (!g->nograd)
        for (int i = 0; i < nin; i++)
            if (in[i]->flags & F_NEEDS_GRAD) n->flags |= F_NEEDS_GRAD;
    if (t == AD_F64 && shape->rank == 0 && !view) {
        n->flags |= F_SCALAR;
        if (nin <= 2) return n;
    }
    ad_ext *x = node_ext(g, n);
    if (!x) {
        node_discard(g, n);
        return NULL;
    }
    void *data = view;
    if (!view && !(n->flags & F_SCALAR) &&
        !(data = arena_alloc(g, (size_t)size * ad_dtype_size(t)))) {
        ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory for a %s tensor of shape %s",
                     opname, ad_dtype_name(t), ad_shape_str(shape, s, sizeof s));
        node_discard(g, n);
        return NULL;
    }
    if (nin > 2) {
        x->in = arena_alloc(g, (size_t)nin * sizeof *x->in);
        if (!x->in) {
            ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", opname);
            node_discard(g, n);
            return NULL;
        }
        memcpy(x->in, in, (size_t)nin * sizeof *x->in);
    }
    /* the shape last: a node never claims elements it has no storage for */
    x->shape = *shape;
    x->size = size;
    if (data) {
        x->grad = NULL;
        x->data = data;
    }
    return n;
}

bool check_inputs(ad_graph *g, const char *op, ad_node *const *in, int nin)
{
    if (!g) return false;
    for (int i = 0; i < nin; i++) {
        if (!in[i]) {
            ad_set_error(g, AD_ERR_NULL, "%s: input %d is NULL", op, i + 1);
            return false;
        }
        /* a node of another graph would be swept by that graph's backward (a silently wrong
         * gradient) or read after its graph was freed */
        if (!node_is_live(g, in[i])) {
            ad_set_error(g, AD_ERR_ARG,
                         "%s: input %d is not a node of this graph (a node of another graph, or "
                         "one made before ad_graph_reset)", op, i + 1);
            return false;
        }
    }
    for (int i = 1; i < nin; i++)
        if (in[i]->dtype != in[0]->dtype) {
            char s0[96], s1[96];
            ad_shape a = node_shape(in[0]), b = node_shape(in[i]);
            ad_set_error(g, AD_ERR_DTYPE, "%s: %s %s and %s %s: dtypes differ", op,
                         ad_dtype_name(in[0]->dtype), ad_shape_str(&a, s0, sizeof s0),
                         ad_dtype_name(in[i]->dtype), ad_shape_str(&b, s1, sizeof s1));
            return false;
        }
    return true;
}

bool check_axis(ad_graph *g, const char *op, const ad_node *a, int *axis)
{
    ad_shape s = node_shape(a);
    int ax = *axis < 0 ? *axis + s.rank : *axis;
    if (ax < 0 || ax >= s.rank) {
        char b[96];
        ad_set_error(g, AD_ERR_ARG, "%s: axis %d out of range for shape %s", op, *axis,
                     ad_shape_str(&s, b, sizeof b));
        return false;
    }
    *axis = ax;
    return true;
}

/* ---- leaves ---- */

static ad_node *leaf(ad_graph *g, int op, ad_dtype t, const ad_shape *shape, const char *name,
                     bool needs_grad)
{
    if (!g) return NULL;
    if (t != AD_F64 && t != AD_F32) {
        ad_set_error(g, AD_ERR_DTYPE, "%s: unknown dtype %d", op_entry_get(op)->def.name, (int)t);
        return NULL;
    }
    if (shape->rank < 0 || shape->rank > AD_MAX_RANK) {
        ad_set_error(g, AD_ERR_SHAPE, "%s: rank %d outside 0..%d", op_entry_get(op)->def.name,
                     shape->rank, AD_MAX_RANK);
        return NULL;
    }
    ad_node *n = node_new(g, op, t, shape, NULL, 0);
    if (!n) return NULL;
    if (needs_grad) n->flags |= F_NEEDS_GRAD | F_LEAF;
    if (name) {
        ad_ext *x = node_ext(g, n);
        if (!x || !(x->name = arena_strdup(g, name))) {
            ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", op_entry_get(op)->def.name);
            node_discard(g, n);
            return NULL;
        }
    }
    return n;
}

static void fill_from(ad_node *n, const double *data)
{
    void *d = node_data(n);
    int64_t size = node_size(n);
    if (!data) memset(d, 0, (size_t)size * ad_dtype_size(n->dtype));
    else if (n->dtype == AD_F64) memcpy(d, data, (size_t)size * sizeof *data);
    else
        for (int64_t i = 0; i < size; i++) ((float *)d)[i] = (float)data[i];
}

ad_node *ad_var(ad_graph *g, const char *name, double value)
{
    ad_node *n = leaf(g, OP_VAR, AD_F64, &AD_SHAPE0, name, true);
    if (n) n->v = value;
    return n && g->anomaly ? anomaly_forward(g, n) : n;
}

ad_node *ad_var_array(ad_graph *g, const char *name, ad_dtype t, ad_shape shape,
                      const double *data)
{
    ad_node *n = leaf(g, OP_VAR, t, &shape, name, true);
    if (n) fill_from(n, data);
    return n && g->anomaly ? anomaly_forward(g, n) : n;
}

ad_node *ad_const_scalar(ad_graph *g, double value)
{
    ad_node *n = leaf(g, OP_CONST, AD_F64, &AD_SHAPE0, NULL, false);
    if (n) n->v = value;
    return n;
}

ad_node *ad_const(ad_graph *g, ad_dtype t, ad_shape shape, const double *data)
{
    ad_node *n = leaf(g, OP_CONST, t, &shape, NULL, false);
    if (n) fill_from(n, data);
    return n && g->anomaly ? anomaly_forward(g, n) : n;
}

ad_node *ad_full(ad_graph *g, ad_dtype t, ad_shape shape, double v)
{
    ad_node *n = leaf(g, OP_CONST, t, &shape, NULL, false);
    if (!n) return NULL;
    void *d = node_data(n);
    for (int64_t i = 0; i < node_size(n); i++) store(d, t, i, v);
    return n;
}

static ad_node *rand_leaf(ad_graph *g, ad_dtype t, ad_shape shape, ad_rng *rng, double a,
                          double b, bool normal)
{
    if (g && !rng) {
        ad_set_error(g, AD_ERR_NULL, "%s: rng is NULL", normal ? "rand_normal" : "rand_uniform");
        return NULL;
    }
    ad_node *n = leaf(g, OP_CONST, t, &shape, NULL, false);
    if (!n) return NULL;
    void *d = node_data(n);
    for (int64_t i = 0; i < node_size(n); i++)
        store(d, t, i, normal ? a + b * ad_rng_normal(rng) : a + (b - a) * ad_rng_uniform(rng));
    return n;
}

ad_node *ad_rand_uniform(ad_graph *g, ad_dtype t, ad_shape shape, ad_rng *rng, double lo,
                         double hi)
{
    return rand_leaf(g, t, shape, rng, lo, hi, false);
}

ad_node *ad_rand_normal(ad_graph *g, ad_dtype t, ad_shape shape, ad_rng *rng, double mean,
                        double std)
{
    return rand_leaf(g, t, shape, rng, mean, std, true);
}

/* A leaf viewing a persistent tensor's storage: never F_SCALAR, even at rank 0, so that its
 * gradient goes straight into the parameter's buffer. */
static ad_node *tensor_leaf(ad_graph *g, ad_tensor *p, bool as_param)
{
    if (!g) return NULL;
    if (!p) {
        ad_set_error(g, AD_ERR_NULL, "%s: tensor is NULL", as_param ? "param" : "const");
        return NULL;
    }
    bool grad = as_param && p->grad;
    ad_node *n = node_alloc(g);
    if (!n) return NULL;
    memset(n, 0, offsetof(ad_node, id));
    n->nin = 0;
    n->op = grad ? OP_PARAM : OP_CONST;
    n->dtype = (uint8_t)p->dtype;
    n->flags = F_VIEW | (grad ? F_NEEDS_GRAD | F_LEAF : 0);
    ad_ext *x = arena_alloc(g, sizeof *x);
    if (!x) {
        ad_set_error(g, AD_ERR_NOMEM, "param: out of memory");
        node_discard(g, n);
        return NULL;
    }
    memset(x, 0, sizeof *x);
    n->x = x;
    x->shape = p->shape;
    x->size = p->size;
    x->data = p->data;
    x->grad = grad ? p->grad : NULL;
    x->param = grad ? p : NULL;
    x->name = p->name;
    if (grad) n->flags |= F_GRAD_LIVE;
    return g->anomaly ? anomaly_forward(g, n) : n;
}

ad_node *ad_param(ad_graph *g, ad_tensor *p) { return tensor_leaf(g, p, true); }
ad_node *ad_const_tensor(ad_graph *g, ad_tensor *t) { return tensor_leaf(g, t, false); }

ad_node *ad_param_node(const ad_graph *g, const ad_tensor *p)
{
    for (uint32_t i = 0; g && p && i < g->nnodes; i++) {
        ad_node *n = node_at(g, i);
        if (n->op == OP_PARAM && n->x->param == p) return n;
    }
    return NULL;
}

/* ---- reading nodes ---- */

double ad_value(const ad_node *n) { return n ? load(node_data((ad_node *)n), n->dtype, 0) : NAN; }

double ad_grad(const ad_node *n) { return n ? ad_node_grad_get(n, 0) : NAN; }

double ad_node_get(const ad_node *n, int64_t i)
{
    if (!n || i < 0 || i >= node_size(n)) return NAN;
    return load(node_data((ad_node *)n), n->dtype, i);
}

double ad_node_grad_get(const ad_node *n, int64_t i)
{
    if (!n || i < 0 || i >= node_size(n)) return NAN;
    /* the scalar fast path writes into constants' slots too (cheaper than a test): a node
     * that needs no gradient has none */
    if (!(n->flags & F_NEEDS_GRAD)) return 0.0;
    if (!n->x || (n->flags & F_SCALAR)) return n->g;
    if (!n->x->grad || !(n->flags & F_GRAD_LIVE) || (n->x->param && n->x->param->grad_zero)) return 0.0;
    return load(n->x->grad, n->dtype, i);
}

ad_shape ad_node_shape(const ad_node *n) { return n ? node_shape(n) : AD_SHAPE0; }
ad_dtype ad_node_dtype(const ad_node *n) { return n ? (ad_dtype)n->dtype : AD_F64; }
int64_t ad_node_size(const ad_node *n) { return n ? node_size(n) : 0; }
const char *ad_node_name(const ad_node *n) { return n && n->x ? n->x->name : NULL; }
uint32_t ad_node_id(const ad_node *n) { return n ? n->id : UINT32_MAX; }
int ad_node_op(const ad_node *n) { return n ? n->op : -1; }
const char *ad_node_op_name(const ad_node *n) { return n ? op_entry_get(n->op)->def.name : NULL; }
int ad_node_num_inputs(const ad_node *n) { return n ? n->nin : 0; }
bool ad_node_needs_grad(const ad_node *n) { return n && (n->flags & F_NEEDS_GRAD); }
void *ad_node_data(ad_node *n) { return n ? node_data(n) : NULL; }

ad_node *ad_node_input(const ad_node *n, int i)
{
    if (!n || i < 0 || i >= n->nin) return NULL;
    return node_in(n, i);
}

void *ad_node_grad_data(ad_node *n)
{
    if (!n) return NULL;
    if (n->flags & F_SCALAR) return &n->g;
    if (!n->x || !n->x->grad || !(n->flags & F_GRAD_LIVE)) return NULL;
    return n->x->param ? tensor_grad_now(n->x->param) : n->x->grad;
}

uint32_t ad_graph_num_nodes(const ad_graph *g) { return g ? g->nnodes : 0; }

ad_node *ad_graph_node(const ad_graph *g, uint32_t i)
{
    return g && i < g->nnodes ? node_at(g, i) : NULL;
}

int ad_node_uses(const ad_graph *g, const ad_node *n, const ad_node *root)
{
    if (!g || !n) return 0;
    uint32_t last = root ? root->id : g->nnodes - 1;
    int uses = 0;
    for (uint32_t i = n->id + 1; i <= last && i < g->nnodes; i++) {
        const ad_node *m = node_at(g, i);
        for (int k = 0; k < m->nin; k++) uses += node_in(m, k) == n;
    }
    return uses;
}

double ad_node_local_grad(const ad_node *n, int i)
{
    if (!n || !(n->flags & F_PARTIALS) || i < 0 || i >= n->nin) return NAN;
    return i == 0 ? n->da : n->db;
}

ad_status ad_set_name(ad_graph *g, ad_node *n, const char *name)
{
    if (!g || !n) return AD_ERR_NULL;
    fuse_current(g); /* a named node is kept from the next replay on: readable from now on */
    ad_ext *x = node_ext(g, n);
    if (!x) return g->status;
    x->name = name ? arena_strdup(g, name) : NULL;
    if (name && !x->name) return ad_set_error(g, AD_ERR_NOMEM, "set_name: out of memory");
    return AD_OK;
}

const char *ad_status_name(ad_status s)
{
    switch (s) {
    case AD_OK: return "ok";
    case AD_ERR_NULL: return "err_null";
    case AD_ERR_SHAPE: return "err_shape";
    case AD_ERR_DTYPE: return "err_dtype";
    case AD_ERR_ARG: return "err_arg";
    case AD_ERR_NOMEM: return "err_nomem";
    case AD_ERR_NO_BACKWARD: return "err_no_backward";
    case AD_ERR_CHECK: return "err_check";
    case AD_ERR_IO: return "err_io";
    case AD_ERR_NUMERIC: return "err_numeric";
    case AD_ERR_NO_JVP: return "err_no_jvp";
    case AD_NOT_CONVERGED: return "not_converged";
    case AD_STOPPED: return "stopped";
    case AD_ERR_LOSS: return "err_loss";
    case AD_ERR_FORMAT: return "err_format";
    case AD_ERR_RETAPE: return "err_retape";
    }
    return "unknown";
}
