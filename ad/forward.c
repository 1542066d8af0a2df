/* Forward mode: tangents pushed through the recorded graph in creation order, by each op's
 * forward rule (Jacobian-vector product). */
#include "internal.h"

ad_op_ctx node_ctx(ad_graph *g, ad_node *n, ad_node **pair)
{
    pair[0] = n->a;
    pair[1] = n->b;
    ad_op_ctx c = {g, n, n->nin, n->x && n->x->in ? n->x->in : pair,
                   n->x ? n->x->param_v : NULL, n->x ? n->x->nparam : 0, n->x ? n->x->saved : NULL};
    return c;
}

static bool tangent_valid(const ad_graph *g, const ad_node *n)
{
    return g && n && node_is_live(g, n) && n->id < g->ntangent;
}

const void *ad_tangent_data(const ad_graph *g, const ad_node *n)
{
    return tangent_valid(g, n) ? g->tangent[n->id] : NULL;
}

/* The tangent buffer of n, made on first use; zeroed when zero is set (a seed overwrites it). */
static void *tangent_buffer(ad_graph *g, ad_node *n, bool zero)
{
    if (!tangent_valid(g, n)) {
        if (g) ad_set_error(g, AD_ERR_ARG, "jvp: tangent requested outside a forward-mode sweep");
        return NULL;
    }
    if (g->tangent[n->id]) return g->tangent[n->id];
    void *t;
    if (n->flags & F_SCALAR) {
        t = &g->tangent_v[n->id];
    } else if (g->tangent_mem[n->id]) {
        t = g->tangent_mem[n->id];
    } else {
        size_t bytes = (size_t)node_size(n) * ad_dtype_size(n->dtype);
        if (!(t = g->tangent_mem[n->id] = arena_alloc(g, bytes ? bytes : 1))) {
            ad_set_error(g, AD_ERR_NOMEM, "jvp: out of memory for the tangent of %s node %u",
                         op_entry_get(n->op)->def.name, n->id);
            return NULL;
        }
    }
    if (zero) memset(t, 0, (size_t)node_size(n) * ad_dtype_size(n->dtype));
    return g->tangent[n->id] = t;
}

void *ad_tangent_buffer(ad_graph *g, ad_node *n) { return tangent_buffer(g, n, true); }

void *tangent_buffer_to_fill(ad_graph *g, ad_node *n) { return tangent_buffer(g, n, false); }

void tangent_set_view(ad_graph *g, ad_node *n, const void *t) { g->tangent[n->id] = (void *)(uintptr_t)t; }

double ad_tangent_get(const ad_graph *g, const ad_node *n, int64_t i)
{
    if (!g || !n || i < 0 || i >= node_size(n)) return NAN;
    const void *t = ad_tangent_data(g, n);
    return t ? load(t, n->dtype, i) : 0.0;
}

/* A stand-in for node n whose value is the tangent t (zeros where t is NULL): what the
 * forward pass of a linear op reads as its input.  x is the stand-in's extension. */
static ad_node stand_in(ad_graph *g, ad_node *n, ad_ext *x, const void *t, bool *ok)
{
    ad_node s = *n;
    if (!t) t = ad_tangent_buffer(g, n); /* zeros, kept as the node's tangent */
    *ok = t != NULL;
    if (!t) return s;
    if (n->x) {
        *x = *n->x;
        x->data = (void *)t;
        s.x = x;
    } else {
        s.v = *(const double *)t;
    }
    return s;
}

ad_status jvp_linear(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    /* stand-ins on the stack for the usual few inputs; a long concat gets them from the heap */
    enum { ON_STACK = 8 };
    ad_node in_stack[ON_STACK], *p_stack[ON_STACK];
    ad_ext x_stack[ON_STACK];
    ad_node *in_s = in_stack, **in_p = p_stack;
    ad_ext *in_x = x_stack, out_x;
    if (c->nin > ON_STACK) {
        in_s = ad_xmalloc((size_t)c->nin * sizeof *in_s);
        in_p = ad_xmalloc((size_t)c->nin * sizeof *in_p);
        in_x = ad_xmalloc((size_t)c->nin * sizeof *in_x);
    }
    ad_status st = in_s && in_p && in_x ? AD_OK
                   : ad_set_error(g, AD_ERR_NOMEM, "jvp: out of memory for %s with %d inputs",
                                  op_entry_get(c->out->op)->def.name, c->nin);
    bool ok = true;
    for (int i = 0; !st && i < c->nin; i++) {
        in_s[i] = stand_in(g, c->in[i], &in_x[i], ad_tangent_data(g, c->in[i]), &ok);
        if (!ok) st = g->status;
        in_p[i] = &in_s[i];
    }
    void *T = st ? NULL : tangent_buffer_to_fill(g, c->out); /* the forward pass writes it all */
    if (!st && !T) st = g->status;
    if (!st) {
        ad_node out_s = stand_in(g, c->out, &out_x, T, &ok);
        /* inputs beyond two are reached through x->in: point the stand-in's list at ours */
        if (out_s.x && out_s.x->in) out_s.x->in = in_p;
        out_s.a = c->nin > 0 ? in_p[0] : NULL;
        out_s.b = c->nin > 1 ? in_p[1] : NULL;
        ad_op_ctx s = *c;
        s.out = &out_s;
        s.in = in_p;
        op_entry_get(c->out->op)->def.forward(&s);
        if (!out_s.x) *(double *)T = out_s.v;
    }
    if (in_s != in_stack) ad_xfree(in_s), ad_xfree(in_p), ad_xfree(in_x);
    return st;
}

/* Makes room for one tangent per node and clears them. */
static ad_status tangents_begin(ad_graph *g, uint32_t n)
{
    if (n > g->tangent_cap) {
        void **t = ad_xrealloc(g->tangent, (size_t)n * sizeof *t);
        if (t) g->tangent = t;
        void **m = t ? ad_xrealloc(g->tangent_mem, (size_t)n * sizeof *m) : NULL;
        if (m) g->tangent_mem = m;
        double *v = m ? ad_xrealloc(g->tangent_v, (size_t)n * sizeof *v) : NULL;
        if (v) g->tangent_v = v;
        if (!t || !m || !v) return ad_set_error(g, AD_ERR_NOMEM, "jvp: out of memory for %u tangents", n);
        g->tangent_cap = n;
    }
    memset(g->tangent, 0, (size_t)n * sizeof *g->tangent);
    if (n > g->ntangent_mem) { /* nodes recorded since the last sweep have no buffer yet */
        memset(g->tangent_mem + g->ntangent_mem, 0, (size_t)(n - g->ntangent_mem) * sizeof *g->tangent_mem);
        g->ntangent_mem = n;
    }
    g->ntangent = n;
    return AD_OK;
}

/* The sweep of ad_jvp_graph (seeds of doubles) and ad_jvp_graph_data (seeds in each leaf's
 * dtype, used in place). */
static ad_status jvp_sweep(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                           const void *const *seeds, bool in_place)
{
    if (!g) return AD_ERR_NULL;
    if (!root) return ad_set_error(g, AD_ERR_NULL, "jvp: root is NULL");
    if (!node_is_live(g, root))
        return ad_set_error(g, AD_ERR_ARG, "jvp: root is not a node of this graph");
    if (n < 0 || (n > 0 && (!leaves || !seeds)))
        return ad_set_error(g, AD_ERR_NULL, "jvp: %d leaves with a NULL array", n);
    fuse_current(g); /* tangents of inner nodes read their values */
    ad_status st = tangents_begin(g, root->id + 1);
    if (st) return st;
    for (int k = 0; k < n; k++) {
        ad_node *l = leaves[k];
        if (!l || !node_is_live(g, l) || l->id > root->id) {
            g->ntangent = 0;
            return ad_set_error(g, AD_ERR_ARG, "jvp: leaf %d is not a node of this graph up to the root", k);
        }
        if (l->nin != 0) {
            g->ntangent = 0;
            return ad_set_error(g, AD_ERR_ARG, "jvp: leaf %d (node %u) is a %s, not a leaf", k,
                                l->id, op_entry_get(l->op)->def.name);
        }
        if (!seeds[k]) continue;
        if (in_place && !(l->flags & F_SCALAR)) {
            /* a leaf's tangent is only ever read: no copy of a model-sized direction */
            g->tangent[l->id] = (void *)(uintptr_t)seeds[k];
            continue;
        }
        void *t = tangent_buffer(g, l, false); /* every element is written below */
        if (!t) return g->status;
        int64_t size = node_size(l);
        const double *d = seeds[k];
        if (in_place || l->dtype == AD_F64) memcpy(t, seeds[k], (size_t)size * ad_dtype_size(l->dtype));
        else
            for (int64_t i = 0; i < size; i++) ((float *)t)[i] = (float)d[i];
    }
    for (uint32_t id = 0; id <= root->id; id++) {
        ad_node *m = node_at(g, id);
        if (m->nin == 0) continue;
        ad_node *pair[2];
        ad_op_ctx c = node_ctx(g, m, pair);
        bool any = false;
        for (int i = 0; i < m->nin && !any; i++) any = g->tangent[c.in[i]->id] != NULL;
        if (!any) continue; /* a zero tangent in gives zero out */
        if (m->flags & F_PARTIALS) { /* the scalar fast path kept its partials */
            const double *ta = g->tangent[m->a->id], *tb = m->b ? g->tangent[m->b->id] : NULL;
            g->tangent_v[id] = (ta ? m->da * *ta : 0) + (tb ? m->db * *tb : 0);
            g->tangent[id] = &g->tangent_v[id];
            continue;
        }
        const op_entry *e = op_entry_get(m->op);
        if (!e->def.jvp) {
            st = ad_set_error(g, AD_ERR_NO_JVP, "jvp: op '%s' (node %u) has no forward rule",
                              e->def.name, id);
        } else {
            st = e->def.jvp(&c);
        }
        if (st) {
            g->ntangent = 0; /* a half-done sweep's tangents are not answers */
            return st;
        }
    }
    return AD_OK;
}

ad_status ad_jvp_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                       const double *const *seeds)
{
    return jvp_sweep(g, root, n, leaves, (const void *const *)seeds, false);
}

ad_status ad_jvp_graph_data(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                            const void *const *seeds)
{
    return jvp_sweep(g, root, n, leaves, seeds, true);
}

ad_status ad_jvp(ad_graph *g, ad_fn f, int n, const double *x, const double *v, void *user,
                 int64_t m, double *value, double *jv)
{
    if (!f || n < 0 || (n > 0 && (!x || !v))) {
        if (g) ad_set_error(g, AD_ERR_NULL, "jvp: NULL function, point or direction");
        return AD_ERR_NULL;
    }
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **xs, *y = record_fn(g, "jvp", f, n, x, user, m, &xs);
    const double **seeds = y ? arena_alloc(g, (size_t)(n ? n : 1) * sizeof *seeds) : NULL;
    ad_status st = seeds ? AD_OK : y ? ad_set_error(g, AD_ERR_NOMEM, "jvp: out of memory") : g->status;
    for (int i = 0; !st && i < n; i++) seeds[i] = &v[i]; /* one direction element per variable */
    if (!st) st = ad_jvp_graph(g, y, n, xs, seeds);
    for (int64_t i = 0; !st && i < m; i++) {
        if (value) value[i] = ad_node_get(y, i);
        if (jv) jv[i] = ad_tangent_get(g, y, i);
    }
    if (own) ad_graph_free(g);
    return st;
}
