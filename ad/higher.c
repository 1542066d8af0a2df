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

ad_status ad_grad_graph(ad_graph *g, ad_node *root, ad_node *seed, int n, ad_node *const *wrt,
                        ad_node **grads)
{
    if (!g) return AD_ERR_NULL;
    if (!root || n < 0 || (n > 0 && (!wrt || !grads)))
        return ad_set_error(g, AD_ERR_NULL, "grad_graph: NULL root, inputs or output array");
    if (!node_is_live(g, root))
        return ad_set_error(g, AD_ERR_ARG, "grad_graph: root is not a node of this graph");
    for (int k = 0; k < n; k++)
        if (!node_upto(g, wrt[k], root))
            return ad_set_error(g, AD_ERR_ARG, "grad_graph: input %d is not a node of this graph up to the root", k);
    char b1[96], b2[96];
    ad_shape rs = node_shape(root);
    if (seed) {
        ad_shape ss = node_shape(seed);
        if (!node_is_live(g, seed) || !same_shape(&ss, &rs) || seed->dtype != root->dtype)
            return ad_set_error(g, AD_ERR_SHAPE, "grad_graph: the seed (%s) must be a node of this graph with the root's shape %s and dtype",
                                ad_shape_str(&ss, b1, sizeof b1), ad_shape_str(&rs, b2, sizeof b2));
    } else if (node_size(root) != 1) {
        return ad_set_error(g, AD_ERR_SHAPE, "grad_graph: root has shape %s; a root with more than one element needs a seed",
                            ad_shape_str(&rs, b1, sizeof b1));
    }
    if (g->status) return g->status;
    for (int k = 0; k < n; k++) grads[k] = NULL;
    /* adj[i]: node i's gradient as a node, NULL while nothing has reached it */
    uint32_t top = root->id;
    ad_node **adj = ad_xcalloc((size_t)top + 1, sizeof *adj);
    if (!adj) return ad_set_error(g, AD_ERR_NOMEM, "grad_graph: out of memory for %u gradients", top + 1);
    ad_status st = AD_OK;
    if (root->flags & F_NEEDS_GRAD) {
        adj[top] = seed ? seed : root->flags & F_SCALAR ? ad_const_scalar(g, 1)
                                                          : ad_full(g, (ad_dtype)root->dtype, rs, 1);
        if (!adj[top]) st = g->status;
    }
    /* The recording is in topological order, so walking it backward finishes each node's
     * gradient before its op passes it on; the nodes this appends come after the root and are
     * not walked. */
    for (int64_t id = top; !st && id >= 0; id--) {
        ad_node *m = node_at(g, (uint32_t)id), *gy = adj[id];
        if (!gy || (m->flags & F_LEAF) || !(m->flags & F_NEEDS_GRAD) || m->nin == 0) continue;
        const op_entry *e = op_entry_get(m->op);
        if (!e->def.grad_graph) {
            st = ad_set_error(g, AD_ERR_NO_BACKWARD, "grad_graph: op '%s' (node %u) has no reverse rule as a graph",
                              e->def.name, m->id);
            break;
        }
        ad_node *pair[2];
        ad_op_ctx c = node_ctx(g, m, pair);
        for (int i = 0; !st && i < m->nin; i++) {
            ad_node *in = c.in[i];
            if (!(in->flags & F_NEEDS_GRAD)) continue;
            ad_node *d = e->def.grad_graph(&c, gy, i);
            if (!d) {
                st = g->status; /* no error: this input's part is zero */
                continue;
            }
            adj[in->id] = adj[in->id] ? ad_add(g, adj[in->id], d) : d;
            if (!adj[in->id]) st = g->status ? g->status : AD_ERR_NOMEM;
        }
    }
    for (int k = 0; !st && k < n; k++)
        if (!(grads[k] = adj[wrt[k]->id] ? adj[wrt[k]->id] : zero_like(g, wrt[k]))) st = g->status;
    ad_xfree(adj);
    if (st)
        for (int k = 0; k < n; k++) grads[k] = NULL;
    return st;
}

/* The gradient graph of a scalar root with respect to leaves, and the newest of its nodes
 * (the end of a forward sweep that reaches them all). */
static ad_status grad_nodes(ad_graph *g, const char *who, ad_node *root, int n, ad_node *const *leaves,
                            ad_node **grads, ad_node **last)
{
    for (int k = 0; k < n; k++)
        if (!leaves[k] || !node_is_live(g, leaves[k]) || leaves[k]->id > root->id || !(leaves[k]->flags & F_LEAF))
            return ad_set_error(g, AD_ERR_ARG, "%s: leaf %d is not a variable or parameter of this graph up to the root",
                                who, k);
    ad_status st = ad_grad_graph(g, root, NULL, n, leaves, grads);
    *last = root;
    for (int k = 0; !st && k < n; k++)
        if (grads[k]->id > (*last)->id) *last = grads[k];
    return st;
}

ad_status ad_hvp_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                       const double *const *v, double *const *hv)
{
    if (!g) return AD_ERR_NULL;
    if (!root || n < 0 || (n > 0 && (!leaves || !v || !hv)))
        return ad_set_error(g, AD_ERR_NULL, "hvp: NULL root, leaves, direction or output");
    ad_node **grads = ad_xmalloc((size_t)(n ? n : 1) * sizeof *grads), *last;
    if (!grads) return ad_set_error(g, AD_ERR_NOMEM, "hvp: out of memory");
    ad_status st = grad_nodes(g, "hvp", root, n, leaves, grads, &last);
    /* forward over reverse: the tangent of the gradient along v is H v */
    if (!st) st = ad_jvp_graph(g, last, n, leaves, v);
    for (int k = 0; !st && k < n; k++)
        for (int64_t j = 0; j < node_size(leaves[k]); j++) hv[k][j] = ad_tangent_get(g, grads[k], j);
    ad_xfree(grads);
    return st;
}

ad_status ad_hessian_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves, double *H)
{
    if (!g) return AD_ERR_NULL;
    if (!root || !H || n < 0 || (n > 0 && !leaves))
        return ad_set_error(g, AD_ERR_NULL, "hessian: NULL root, leaves or output");
    int64_t N = 0, longest = 1;
    for (int k = 0; k < n; k++)
        if (leaves[k] && node_is_live(g, leaves[k])) {
            N += node_size(leaves[k]);
            longest = node_size(leaves[k]) > longest ? node_size(leaves[k]) : longest;
        }
    ad_node **grads = ad_xmalloc((size_t)(n ? n : 1) * sizeof *grads), *last;
    const double **seeds = ad_xcalloc((size_t)(n ? n : 1), sizeof *seeds);
    double *unit = ad_xcalloc((size_t)longest, sizeof *unit);
    ad_status st = grads && seeds && unit ? AD_OK : ad_set_error(g, AD_ERR_NOMEM, "hessian: out of memory");
    if (!st) st = grad_nodes(g, "hessian", root, n, leaves, grads, &last);
    /* column c: the gradient's tangent when input element c has tangent 1 */
    int64_t c = 0;
    for (int k = 0; !st && k < n; k++) {
        seeds[k] = unit;
        for (int64_t j = 0; !st && j < node_size(leaves[k]); j++, c++) {
            unit[j] = 1;
            st = ad_jvp_graph(g, last, n, leaves, seeds);
            unit[j] = 0;
            int64_t r = 0;
            for (int q = 0; !st && q < n; q++)
                for (int64_t i = 0; i < node_size(leaves[q]); i++, r++) H[r * N + c] = ad_tangent_get(g, grads[q], i);
        }
        seeds[k] = NULL;
    }
    ad_xfree(grads);
    ad_xfree(seeds);
    ad_xfree(unit);
    return st;
}

/* Records f at x and builds its gradient graph: the shared start of ad_hvp and ad_hessian. */
static ad_node *record_grad(ad_graph *g, const char *who, ad_fn f, int n, const double *x, void *user,
                            ad_node ***xs, ad_node ***grads, ad_node **last)
{
    ad_node *y = record_fn(g, who, f, n, x, user, 1, xs);
    if (!y) return NULL;
    *grads = arena_alloc(g, (size_t)(n ? n : 1) * sizeof **grads);
    if (!*grads) {
        ad_set_error(g, AD_ERR_NOMEM, "%s: out of memory", who);
        return NULL;
    }
    return grad_nodes(g, who, y, n, *xs, *grads, last) ? NULL : y;
}

ad_status ad_hvp(ad_graph *g, ad_fn f, int n, const double *x, const double *v, void *user,
                 double *value, double *grad, double *hv)
{
    if (!f || n < 0 || (n > 0 && (!x || !v))) {
        if (g) ad_set_error(g, AD_ERR_NULL, "hvp: NULL function, point or direction");
        return AD_ERR_NULL;
    }
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **xs, **grads = NULL, *last, *y = record_grad(g, "hvp", f, n, x, user, &xs, &grads, &last);
    const double **seeds = y ? arena_alloc(g, (size_t)(n ? n : 1) * sizeof *seeds) : NULL;
    ad_status st = seeds ? AD_OK : y ? ad_set_error(g, AD_ERR_NOMEM, "hvp: out of memory") : g->status;
    for (int i = 0; !st && i < n; i++) seeds[i] = &v[i];
    if (!st && hv) st = ad_jvp_graph(g, last, n, xs, seeds);
    if (!st && value) *value = ad_value(y);
    for (int i = 0; !st && i < n; i++) {
        if (grad) grad[i] = ad_node_get(grads[i], 0);
        if (hv) hv[i] = ad_tangent_get(g, grads[i], 0);
    }
    if (own) ad_graph_free(g);
    return st;
}

ad_status ad_hessian(ad_graph *g, ad_fn f, int n, const double *x, void *user, double *value,
                     double *grad, double *H)
{
    if (!f || n < 0 || (n > 0 && (!x || !H))) {
        if (g) ad_set_error(g, AD_ERR_NULL, "hessian: NULL function, point or output");
        return AD_ERR_NULL;
    }
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **xs, **grads = NULL, *last, *y = record_grad(g, "hessian", f, n, x, user, &xs, &grads, &last);
    const double **seeds = y ? arena_alloc(g, (size_t)(n ? n : 1) * sizeof *seeds) : NULL;
    ad_status st = seeds ? AD_OK : y ? ad_set_error(g, AD_ERR_NOMEM, "hessian: out of memory") : g->status;
    double one = 1;
    for (int j = 0; !st && j < n; j++) {
        for (int i = 0; i < n; i++) seeds[i] = i == j ? &one : NULL;
        st = ad_jvp_graph(g, last, n, xs, seeds);
        for (int i = 0; !st && i < n; i++) H[(int64_t)i * n + j] = ad_tangent_get(g, grads[i], 0);
    }
    if (!st && value) *value = ad_value(y);
    for (int i = 0; !st && grad && i < n; i++) grad[i] = ad_node_get(grads[i], 0);
    if (own) ad_graph_free(g);
    return st;
}
