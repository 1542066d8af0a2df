/* Beyond the gradient: gradients as graphs (each op's reverse rule run as ordinary nodes),
 * and from them Hessian-vector products (forward mode over the gradient graph) and Hessians
 * (one such sweep per input element over one gradient graph). */
#include "internal.h"
#include <stdlib.h>

/* Whether n is a node of g up to `last` (by id). */
static bool node_upto(const ad_graph *g, const ad_node *n, const ad_node *last)
{
    return n && node_is_live(g, n) && n->id <= last->id;
}

static bool same_shape(const ad_shape *a, const ad_shape *b)
{
    if (a->rank != b->rank) return false;
    for (int d = 0; d < a->rank; d++)
        if (a->dim[d] != b->dim[d]) return false;
    return true;
}

/* A zero of n's dtype and shape: the gradient of what the root does not depend on. */
static ad_node *zero_like(ad_graph *g, const ad_node *n)
{
    return n->flags & F_SCALAR ? ad_const_scalar(g, 0) : ad_full(g, (ad_dtype)n->dtype, node_shape(n), 0);
}

/* The checks of ad_grad_graph's arguments. */
static ad_status grad_graph_args(ad_graph *g, ad_node *root, ad_node *seed, int n, ad_node *const *wrt)
{
    if (!node_is_live(g, root)) return ad_set_error(g, AD_ERR_ARG, "grad_graph: root is not a node of this graph");
    for (int k = 0; k < n; k++)
        if (!node_upto(g, wrt[k], root))
            return ad_set_error(g, AD_ERR_ARG, "grad_graph: input %d is not a node of this graph up to the root", k);
    char b1[96], b2[96];
    ad_shape rs = node_shape(root);
    if (seed) {
        if (!node_is_live(g, seed)) /* read nothing of it: it may be another graph's, or freed */
            return ad_set_error(g, AD_ERR_ARG, "grad_graph: the seed is not a node of this graph");
        ad_shape ss = node_shape(seed);
        if (!same_shape(&ss, &rs) || seed->dtype != root->dtype)
            return ad_set_error(g, AD_ERR_SHAPE, "grad_graph: the seed (%s %s) must have the root's shape and dtype (%s %s)",
                                ad_shape_str(&ss, b1, sizeof b1), ad_dtype_name((ad_dtype)seed->dtype),
                                ad_shape_str(&rs, b2, sizeof b2), ad_dtype_name((ad_dtype)root->dtype));
    } else if (node_size(root) != 1) {
        return ad_set_error(g, AD_ERR_SHAPE, "grad_graph: root has shape %s; a root with more than one element needs a seed",
                            ad_shape_str(&rs, b1, sizeof b1));
    }
    return g->status;
}

/* The walk of ad_grad_graph: adj[i] becomes node i's gradient as a node (NULL while nothing
 * has reached it).  Only what leads to some wrt node is walked (as PyTorch's autograd.grad
 * prunes): leads[i] marks those nodes. */
static ad_status grad_graph_walk(ad_graph *g, ad_node *root, ad_node *seed, ad_node **adj, uint8_t *leads)
{
    uint32_t top = root->id;
    for (uint32_t id = 0; id <= top; id++) {
        ad_node *m = node_at(g, id);
        for (int i = 0; !leads[id] && i < m->nin; i++) leads[id] = leads[node_in(m, i)->id];
    }
    if (!(root->flags & F_NEEDS_GRAD) || !leads[top]) return AD_OK;
    adj[top] = seed ? seed : root->flags & F_SCALAR ? ad_const_scalar(g, 1)
                                                      : ad_full(g, (ad_dtype)root->dtype, node_shape(root), 1);
    if (!adj[top]) return g->status;
    /* The recording is in topological order, so walking it backward finishes each node's
     * gradient before its op passes it on; the nodes this appends come after the root and are
     * not walked. */
    for (int64_t id = top; id >= 0; id--) {
        ad_node *m = node_at(g, (uint32_t)id), *gy = adj[id];
        if (!gy || (m->flags & F_LEAF) || !(m->flags & F_NEEDS_GRAD) || m->nin == 0) continue;
        const op_entry *e = op_entry_get(m->op);
        if (!e->def.grad_graph)
            return ad_set_error(g, AD_ERR_NO_BACKWARD, "grad_graph: op '%s' (node %u) has no reverse rule as a graph",
                                e->def.name, m->id);
        ad_node *pair[2];
        ad_op_ctx c = node_ctx(g, m, pair);
        for (int i = 0; i < m->nin; i++) {
            ad_node *in = c.in[i];
            if (!(in->flags & F_NEEDS_GRAD) || !leads[in->id]) continue;
            ad_node *d = e->def.grad_graph(&c, gy, i);
            if (!d) {
                if (g->status) return g->status;
                continue; /* no error: this input's part is zero */
            }
            adj[in->id] = adj[in->id] ? ad_add(g, adj[in->id], d) : d;
            if (!adj[in->id]) return g->status ? g->status : AD_ERR_NOMEM;
        }
    }
    return AD_OK;
}

ad_status ad_grad_graph(ad_graph *g, ad_node *root, ad_node *seed, int n, ad_node *const *wrt,
                        ad_node **grads)
{
    if (!g) return AD_ERR_NULL;
    ad_status st = !root || n < 0 || (n > 0 && (!wrt || !grads))
                       ? ad_set_error(g, AD_ERR_NULL, "grad_graph: NULL root, inputs or output array")
                       : grad_graph_args(g, root, seed, n, wrt);
    uint32_t count = st ? 1 : root->id + 1;
    ad_node **adj = st ? NULL : ad_xcalloc(count, sizeof *adj);
    uint8_t *leads = st ? NULL : ad_xcalloc(count, 1);
    if (!st && (!adj || !leads)) st = ad_set_error(g, AD_ERR_NOMEM, "grad_graph: out of memory for %u gradients", count);
    for (int k = 0; !st && k < n; k++) leads[wrt[k]->id] = 1;
    if (!st) st = grad_graph_walk(g, root, seed, adj, leads);
    /* wrt[k] is read before grads[k] is written: the two may be one array */
    for (int k = 0; !st && k < n; k++)
        if (!(grads[k] = adj[wrt[k]->id] ? adj[wrt[k]->id] : zero_like(g, wrt[k]))) st = g->status;
    if (st && grads)
        for (int k = 0; k < n; k++) grads[k] = NULL;
    ad_xfree(adj);
    ad_xfree(leads);
    return st;
}

/* Every leaf a variable or parameter of g up to root, and root one element. */
static ad_status check_leaves(ad_graph *g, const char *who, ad_node *root, int n, ad_node *const *leaves)
{
    if (!node_is_live(g, root)) return ad_set_error(g, AD_ERR_ARG, "%s: root is not a node of this graph", who);
    if (node_size(root) != 1) {
        char b[96];
        ad_shape s = node_shape(root);
        return ad_set_error(g, AD_ERR_SHAPE, "%s: root has shape %s; second order needs a root with one element", who,
                            ad_shape_str(&s, b, sizeof b));
    }
    for (int k = 0; k < n; k++)
        if (!leaves[k] || !node_is_live(g, leaves[k]) || leaves[k]->id > root->id || !(leaves[k]->flags & F_LEAF))
            return ad_set_error(g, AD_ERR_ARG, "%s: leaf %d is not a variable or parameter of this graph up to the root",
                                who, k);
    return g->status;
}

/* ---- forward over reverse on float64 scalar graphs ----
 *
 * A graph of float64 scalars recorded by the fast path holds each node's local partials, and
 * its op's row gives the second derivatives.  So H v needs no gradient graph: one forward
 * sweep carries the tangents t (t_y = da t_a + db t_b), then one backward sweep carries each
 * gradient g with its tangent gd along v:
 *     g_a += da g,   gd_a += da gd + g (daa t_a + dab t_b)   (and the same for b).
 * Two passes over the nodes and no new ones: about twice a gradient's cost. */
struct hvp_slot {
    double t, g, gd;
    bool reached; /* as the gradient sweep's F_GRAD_LIVE: passes its gradient on, even 0 */
};

static bool has_second(const op_entry *e)
{
    return e->f1 ? e->dd1 != NULL : e->d2aa && e->d2ab && e->d2bb;
}

/* Whether every node up to root that needs a gradient is a leaf or a float64 scalar of the
 * fast path, with every leaf a scalar: what the sweeps below handle. */
static bool scalar_graph(const ad_graph *g, const ad_node *root, int n, ad_node *const *leaves)
{
    for (int k = 0; k < n; k++)
        if (!(leaves[k]->flags & F_SCALAR)) return false;
    for (uint32_t s = 0; s <= root->id >> SLAB_BITS; s++) {
        const ad_node *base = g->slab[s];
        uint32_t hi = s == root->id >> SLAB_BITS ? (root->id & (SLAB_NODES - 1)) + 1 : SLAB_NODES;
        for (uint32_t k = 0; k < hi; k++) {
            const ad_node *m = base + k;
            if ((m->flags & (F_NEEDS_GRAD | F_LEAF | F_PARTIALS)) == F_NEEDS_GRAD) return false;
            /* an op registered without second derivatives: the general path says so */
            if ((m->flags & F_PARTIALS) && m->op >= OP_BUILTIN_COUNT && !has_second(op_entry_get(m->op)))
                return false;
        }
    }
    return true;
}

/* The second derivative of n's op at n: along input i, then input j (0 = a, 1 = b).  The
 * common ops are written out: the others call their row's formula. */
static double second(const ad_node *n, int i, int j)
{
    switch (n->op) {
    case OP_ADD: case OP_SUB: case OP_NEG: return 0;
    case OP_MUL: return i != j;
    case OP_SQUARE: return 2;
    default: break;
    }
    const op_entry *e = op_entry_get(n->op);
    if (!n->b) return e->dd1 ? e->dd1(n->a->v, n->v, 0) : NAN;
    ew2_d_fn f = i + j == 0 ? e->d2aa : i + j == 1 ? e->d2ab : e->d2bb;
    return f ? f(n->a->v, n->b->v, n->v) : NAN;
}

/* H v (and the gradient) of a scalar graph: v[k][0] is leaf k's direction, NULL for 0. */
static ad_status hvp_scalar(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                            const double *const *v, double *hv, double *grad)
{
    uint32_t count = root->id + 1;
    if (count > g->hvp_cap) {
        struct hvp_slot *w = ad_xrealloc(g->hvp, (size_t)count * sizeof *w);
        if (!w) return ad_set_error(g, AD_ERR_NOMEM, "hvp: out of memory for %u nodes", count);
        g->hvp = w;
        g->hvp_cap = count;
    }
    struct hvp_slot *W = g->hvp;
    memset(W, 0, (size_t)count * sizeof *W);
    for (int k = 0; k < n; k++)
        if (v[k]) W[leaves[k]->id].t = v[k][0];
    uint32_t last_slab = root->id >> SLAB_BITS;
    for (uint32_t s = 0; s <= last_slab; s++) {
        ad_node *base = g->slab[s];
        uint32_t hi = s == last_slab ? (root->id & (SLAB_NODES - 1)) + 1 : SLAB_NODES;
        struct hvp_slot *ws = W + ((size_t)s << SLAB_BITS);
        for (uint32_t k = 0; k < hi; k++) {
            const ad_node *m = base + k;
            if ((m->flags & (F_NEEDS_GRAD | F_LEAF)) != F_NEEDS_GRAD) continue;
            /* a zero tangent contributes nothing, even through an infinite partial, as in
             * the forward sweep */
            double ta = W[m->a->id].t, tb = m->b ? W[m->b->id].t : 0;
            ws[k].t = (ta != 0 ? m->da * ta : 0) + (tb != 0 ? m->db * tb : 0);
        }
    }
    W[root->id].g = 1;
    W[root->id].reached = true;
    for (int64_t s = last_slab; s >= 0; s--) {
        ad_node *base = g->slab[s];
        int64_t k = s == last_slab ? (int64_t)(root->id & (SLAB_NODES - 1)) : (int64_t)SLAB_NODES - 1;
        struct hvp_slot *ws = W + ((size_t)s << SLAB_BITS);
        for (; k >= 0; k--) {
            const ad_node *m = base + k;
            double gy = ws[k].g, gyd = ws[k].gd;
            if ((m->flags & (F_NEEDS_GRAD | F_LEAF)) != F_NEEDS_GRAD || !ws[k].reached) continue;
            struct hvp_slot *A = &W[m->a->id];
            A->reached = true;
            if (!m->b) {
                A->g += m->da * gy;
                A->gd += (gyd != 0 ? m->da * gyd : 0) + (A->t != 0 ? gy * second(m, 0, 0) * A->t : 0);
                continue;
            }
            struct hvp_slot *B = &W[m->b->id];
            B->reached = true;
            double ta = A->t, tb = B->t, ca = 0, cb = 0;
            if (ta != 0 || tb != 0) {
                double dab = second(m, 0, 1);
                ca = gy * ((ta != 0 ? second(m, 0, 0) * ta : 0) + (tb != 0 ? dab * tb : 0));
                cb = gy * ((ta != 0 ? dab * ta : 0) + (tb != 0 ? second(m, 1, 1) * tb : 0));
            }
            A->g += m->da * gy;
            A->gd += (gyd != 0 ? m->da * gyd : 0) + ca;
            B->g += m->db * gy;
            B->gd += (gyd != 0 ? m->db * gyd : 0) + cb;
        }
    }
    for (int k = 0; k < n; k++) {
        if (hv) hv[k] = W[leaves[k]->id].gd;
        if (grad) grad[k] = W[leaves[k]->id].g;
    }
    return AD_OK;
}

/* The gradient graph of root with respect to leaves, and the newest of its nodes (the end of
 * a forward sweep that reaches them all). */
static ad_status grad_nodes(ad_graph *g, ad_node *root, int n, ad_node *const *leaves, ad_node **grads,
                            ad_node **last)
{
    ad_status st = ad_grad_graph(g, root, NULL, n, leaves, grads);
    *last = root;
    for (int k = 0; !st && k < n; k++)
        if (grads[k]->id > (*last)->id) *last = grads[k];
    return st;
}

/* Second order of a one-element root with respect to leaves: sweeps(ctx, column) is called
 * once per direction with seeds set, and reads the answer through hv_get.  On a scalar graph
 * each direction is one hvp_scalar; otherwise the gradient graph is built once and each
 * direction is a forward sweep over it. */
typedef struct {
    ad_graph *g;
    ad_node *root, *last;
    int n;
    ad_node *const *leaves;
    ad_node **grads;  /* NULL on a scalar graph */
    double *hv_scalar, *grad_scalar;
} second_order;

static ad_status so_begin(second_order *so, ad_graph *g, const char *who, ad_node *root, int n,
                          ad_node *const *leaves)
{
    *so = (second_order){.g = g, .root = root, .n = n, .leaves = leaves};
    ad_status st = check_leaves(g, who, root, n, leaves);
    if (st) return st;
    size_t k = (size_t)(n ? n : 1);
    if (scalar_graph(g, root, n, leaves)) {
        so->hv_scalar = ad_xmalloc(2 * k * sizeof *so->hv_scalar);
        so->grad_scalar = so->hv_scalar ? so->hv_scalar + k : NULL;
        return so->hv_scalar ? AD_OK : ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", who);
    }
    so->grads = ad_xmalloc(k * sizeof *so->grads);
    if (!so->grads) return ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", who);
    return grad_nodes(g, root, n, leaves, so->grads, &so->last);
}

/* One direction: v[k] is leaf k's part (NULL for zero). */
static ad_status so_sweep(second_order *so, const double *const *v)
{
    if (so->hv_scalar) return hvp_scalar(so->g, so->root, so->n, so->leaves, v, so->hv_scalar, so->grad_scalar);
    bool f64 = true; /* then the directions serve as the leaves' tangents as they are */
    for (int k = 0; k < so->n; k++) f64 &= so->leaves[k]->dtype == AD_F64;
    return f64 ? ad_jvp_graph_data(so->g, so->last, so->n, so->leaves, (const void *const *)v)
               : ad_jvp_graph(so->g, so->last, so->n, so->leaves, v);
}

/* Leaf k's part of the last direction's H v, all of it. */
static void so_hv_copy(const second_order *so, int k, double *out)
{
    if (so->hv_scalar) {
        out[0] = so->hv_scalar[k];
        return;
    }
    const ad_node *gk = so->grads[k];
    const void *t = ad_tangent_data(so->g, gk);
    int64_t n = node_size(gk);
    if (!t) memset(out, 0, (size_t)n * sizeof *out);
    else if (gk->dtype == AD_F64) memcpy(out, t, (size_t)n * sizeof *out);
    else
        for (int64_t i = 0; i < n; i++) out[i] = ((const float *)t)[i];
}

/* Element i of leaf k's part of the last direction's H v, and of the gradient. */
static double so_hv(const second_order *so, int k, int64_t i)
{
    return so->hv_scalar ? so->hv_scalar[k] : ad_tangent_get(so->g, so->grads[k], i);
}

static double so_grad(const second_order *so, int k, int64_t i)
{
    return so->hv_scalar ? so->grad_scalar[k] : ad_node_get(so->grads[k], i);
}

static void so_end(second_order *so)
{
    ad_xfree(so->hv_scalar);
    ad_xfree(so->grads);
}

ad_status ad_hvp_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                       const double *const *v, double *const *hv)
{
    if (!g) return AD_ERR_NULL;
    if (!root || n < 0 || (n > 0 && (!leaves || !v || !hv)))
        return ad_set_error(g, AD_ERR_NULL, "hvp: NULL root, leaves, direction or output");
    second_order so;
    ad_status st = so_begin(&so, g, "hvp", root, n, leaves);
    if (!st) st = so_sweep(&so, v);
    for (int k = 0; !st && k < n; k++) so_hv_copy(&so, k, hv[k]);
    so_end(&so);
    return st;
}

/* Fills H (N x N) one column per element of the leaves: column c is H e_c. */
static ad_status so_hessian(second_order *so, double *H)
{
    int n = so->n;
    int64_t N = 0, longest = 1;
    for (int k = 0; k < n; k++) {
        N += node_size(so->leaves[k]);
        longest = node_size(so->leaves[k]) > longest ? node_size(so->leaves[k]) : longest;
    }
    const double **seeds = ad_xcalloc((size_t)(n ? n : 1), sizeof *seeds);
    double *unit = ad_xcalloc((size_t)longest, sizeof *unit);
    ad_status st = seeds && unit ? AD_OK : ad_set_error(so->g, AD_ERR_NOMEM, "hessian: out of memory");
    int64_t c = 0;
    for (int k = 0; !st && k < n; k++) {
        seeds[k] = unit;
        for (int64_t j = 0; !st && j < node_size(so->leaves[k]); j++, c++) {
            unit[j] = 1;
            st = so_sweep(so, seeds);
            unit[j] = 0;
            int64_t r = 0;
            for (int q = 0; !st && q < n; q++)
                for (int64_t i = 0; i < node_size(so->leaves[q]); i++, r++) H[r * N + c] = so_hv(so, q, i);
        }
        seeds[k] = NULL;
    }
    ad_xfree(seeds);
    ad_xfree(unit);
    return st;
}

ad_status ad_hessian_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves, double *H)
{
    if (!g) return AD_ERR_NULL;
    if (!root || !H || n < 0 || (n > 0 && !leaves))
        return ad_set_error(g, AD_ERR_NULL, "hessian: NULL root, leaves or output");
    second_order so;
    ad_status st = so_begin(&so, g, "hessian", root, n, leaves);
    if (!st) st = so_hessian(&so, H);
    so_end(&so);
    return st;
}

/* The one-call forms: f recorded at x with its variables as the leaves; then hv (n numbers)
 * for direction v, or H (n x n) when v is NULL. */
static ad_status second_of_fn(ad_graph *g, const char *who, ad_fn f, int n, const double *x, const double *v,
                              void *user, double *value, double *grad, double *hv, double *H)
{
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **xs, *y = record_fn(g, who, f, n, x, user, 1, &xs);
    const double **seeds = y ? arena_alloc(g, (size_t)(n ? n : 1) * sizeof *seeds) : NULL;
    ad_status st = seeds ? AD_OK : y ? ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", who) : g->status;
    second_order so = {0};
    if (!st) st = so_begin(&so, g, who, y, n, xs);
    if (!st && H) st = so_hessian(&so, H);
    for (int i = 0; !st && !H && i < n; i++) seeds[i] = &v[i];
    if (!st && !H) st = so_sweep(&so, seeds);
    for (int i = 0; !st && i < n; i++) {
        if (grad) grad[i] = so_grad(&so, i, 0);
        if (hv) hv[i] = so_hv(&so, i, 0);
    }
    if (!st && value) *value = ad_value(y);
    so_end(&so);
    if (own) ad_graph_free(g);
    return st;
}

ad_status ad_hvp(ad_graph *g, ad_fn f, int n, const double *x, const double *v, void *user,
                 double *value, double *grad, double *hv)
{
    if (!f || n < 0 || (n > 0 && (!x || !v))) {
        if (g) ad_set_error(g, AD_ERR_NULL, "hvp: NULL function, point or direction");
        return AD_ERR_NULL;
    }
    return second_of_fn(g, "hvp", f, n, x, v, user, value, grad, hv, NULL);
}

ad_status ad_hessian(ad_graph *g, ad_fn f, int n, const double *x, void *user, double *value,
                     double *grad, double *H)
{
    if (!f || n < 0 || (n > 0 && (!x || !H))) {
        if (g) ad_set_error(g, AD_ERR_NULL, "hessian: NULL function, point or output");
        return AD_ERR_NULL;
    }
    return second_of_fn(g, "hessian", f, n, x, NULL, user, value, grad, NULL, H);
}
