/* The backward sweep: one reverse walk of the tape. */
#include "internal.h"

ad_status backward_node(ad_graph *g, ad_node *n)
{
    const op_entry *e = op_entry_get(n->op);
    if (!e->def.backward)
        return ad_set_error(g, AD_ERR_NO_BACKWARD, "backward: op '%s' (node %u) has no backward",
                            e->def.name, n->id);
    ad_node *pair[2];
    ad_op_ctx c = node_ctx(g, n, pair);
    return e->def.backward(&c);
}

/* Inner nodes' gradients from an earlier sweep are stale: zero those the new sweep can reach.
 * Leaves keep theirs (gradients accumulate until zeroed).  Slab by slab, a pointer walk. */
static void clear_stale(ad_graph *g, uint32_t upto)
{
    for (uint32_t s = 0; (uint64_t)s << SLAB_BITS < upto; s++) {
        uint32_t left = upto - (s << SLAB_BITS);
        ad_node *n = g->slab[s], *end = n + (left < SLAB_NODES ? left : SLAB_NODES);
        for (; n < end; n++) {
            if (n->flags & F_LEAF) continue;
            n->g = 0;
            n->flags &= (uint8_t)~F_GRAD_LIVE;
        }
    }
}

/* The parameter with a ready function that node n is, or NULL. */
static ad_tensor *ready_param(const ad_node *n)
{
    return n->op == OP_PARAM && n->x && n->x->param && n->x->param->ready ? n->x->param : NULL;
}

/* Counts, for each tensor with a ready function, its parameter nodes among the first `upto`
 * nodes and their consumers, which grad_handable reads: a tensor met twice, or used twice, may
 * be read by the sweep after one consumer's backward, so its values must not change then. */
static void count_ready_uses(ad_graph *g, uint32_t upto)
{
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < upto; i++) {
            ad_node *n = node_at(g, i);
            ad_tensor *p = ready_param(n);
            if (p && pass == 0) p->ready_nodes = p->ready_uses = 0;
            if (pass == 0) continue;
            if (p) p->ready_nodes++;
            for (int k = 0; k < n->nin; k++) {
                ad_node *in = node_in(n, k);
                if (in && (p = ready_param(in))) p->ready_uses++;
            }
        }
}

ad_tensor *grad_handable(const ad_node *n)
{
    ad_tensor *p = ready_param(n);
    return p && p->ready_nodes == 1 && p->ready_uses == 1 && p->grad_zero && p->handed == 0 ? p : NULL;
}

void grad_handed(ad_tensor *p) { p->handed = p->handed == 0 ? 1 : -1; }

static ad_status sweep(ad_graph *g, ad_node *root, const double *seed)
{
    if (!g) return AD_ERR_NULL;
    if (!root) return ad_set_error(g, AD_ERR_NULL, "backward: root is NULL");
    if (!node_is_live(g, root))
        return ad_set_error(g, AD_ERR_ARG, "backward: root is not a node of this graph");
    uint32_t end = root->id + 1;
    clear_stale(g, end < g->dirty ? end : g->dirty);
    if (g->dirty < end) g->dirty = end;
    if (!(root->flags & F_NEEDS_GRAD)) return AD_OK; /* a constant: every gradient is 0 */

    if (grad_ready_tensors() > 0) count_ready_uses(g, end);
    void *G = ad_input_grad_buffer(g, root);
    if (!G) return g->status;
    for (int64_t i = 0; i < node_size(root); i++)
        store(G, root->dtype, i, load(G, root->dtype, i) + (seed ? seed[i] : 1.0));

    ad_status st = AD_OK;
    bool fused = fuse_sweep_begin(g);
    for (int64_t s = (int64_t)(root->id >> SLAB_BITS); s >= 0; s--) {
        ad_node *base = g->slab[s];
        int64_t k = s == (int64_t)(root->id >> SLAB_BITS) ? (int64_t)(root->id & (SLAB_NODES - 1))
                                                           : (int64_t)SLAB_NODES - 1;
        for (; k >= 0; k--) {
            ad_node *n = base + k;
            uint8_t f = n->flags;
            if ((f & (F_NEEDS_GRAD | F_LEAF)) != F_NEEDS_GRAD) continue;
            /* Skip what the sweep did not reach (F_GRAD_LIVE unset): the root does not depend
             * on it, its partials may be infinite (exp(1000)) and 0 * inf would poison its
             * inputs' gradients with NaN, and its op need not have a backward.  What it did
             * reach passes its gradient on even when that is 0, as the tensor path and PyTorch
             * do: relu(log(0)) has gradient 0 * inf = NaN at 0 on every path (docs/design.md,
             * "Subgradients"). */
            if (!(f & F_GRAD_LIVE)) continue;
            if (fused && fuse_sweep_at(g, n, &st)) { /* its group's backward, all at once */
                if (st) return st;
                continue;
            }
            if (f & F_PARTIALS) {
                double gv = n->g;
                n->a->g += n->da * gv;
                n->a->flags |= F_GRAD_LIVE;
                if (n->b) {
                    n->b->g += n->db * gv;
                    n->b->flags |= F_GRAD_LIVE;
                }
                if (g->anomaly && (st = anomaly_backward(g, n)) != AD_OK) return st;
                continue;
            }
            if ((st = backward_node(g, n)) != AD_OK) return st;
            if (g->anomaly && (st = anomaly_backward(g, n)) != AD_OK) return st;
        }
    }
    return AD_OK;
}

ad_status ad_backward(ad_graph *g, ad_node *root)
{
    if (g && root && node_is_live(g, root) && node_size(root) != 1) {
        char b[96];
        ad_shape s = node_shape(root);
        return ad_set_error(g, AD_ERR_SHAPE,
                            "backward: root has shape %s; a root with more than one element "
                            "needs a seed gradient (ad_backward_seed)",
                            ad_shape_str(&s, b, sizeof b));
    }
    return sweep(g, root, NULL);
}

ad_status ad_backward_seed(ad_graph *g, ad_node *root, const double *seed)
{
    if (g && !seed) return ad_set_error(g, AD_ERR_NULL, "backward: seed is NULL");
    return sweep(g, root, seed);
}

static void zero_leaf(ad_node *n)
{
    if (n->x && n->x->param) return; /* a tensor's: ad_tensor_zero_grad */
    n->g = 0;
    n->flags &= (uint8_t)~F_GRAD_LIVE;
}

void ad_zero_grad(ad_graph *g)
{
    if (!g) return;
    /* the leaves made since the last call join the index; without memory for it, a scan */
    for (; g->leaf_upto < g->nnodes; g->leaf_upto++) {
        ad_node *n = node_at(g, g->leaf_upto);
        if (!(n->flags & F_LEAF)) continue;
        if (g->nleaf == g->leaf_cap) {
            uint32_t cap = g->leaf_cap ? 2 * g->leaf_cap : 64;
            uint32_t *l = ad_xrealloc(g->leaf, (size_t)cap * sizeof *l);
            if (!l) break;
            g->leaf = l;
            g->leaf_cap = cap;
        }
        g->leaf[g->nleaf++] = n->id;
    }
    for (uint32_t i = 0; i < g->nleaf; i++) zero_leaf(node_at(g, g->leaf[i]));
    for (uint32_t i = g->leaf_upto; i < g->nnodes; i++)
        if (node_at(g, i)->flags & F_LEAF) zero_leaf(node_at(g, i));
}
