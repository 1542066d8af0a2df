/* Record once, evaluate many: replaying a recorded graph at new leaf values, branch guards,
 * and workspaces for replaying in several threads (docs/design.md, "Replay"). */
#include "internal.h"
#include <stdio.h>

/* A scalar fast-path node's value and partials from its inputs' values: the same formulas,
 * inlined from ad_ew.h, that recorded them, so a replay gives the recording's bits. */
static inline void scalar_eval(ad_node *n)
{
    double a = n->a->v, b = n->b ? n->b->v : 0, y;
#define REPLAY_BINARY_(ID, name, ...)                                                        \
    case OP_##ID:                                                                           \
        n->v = y = ad_ew_##name(a, b);                                                      \
        n->da = ad_ew_##name##_da(a, b, y);                                                 \
        n->db = ad_ew_##name##_db(a, b, y);                                                 \
        return;
#define REPLAY_UNARY_(ID, name, ...)                                                         \
    case OP_##ID:                                                                           \
        n->v = y = ad_ew_##name(a, 0);                                                      \
        n->da = ad_ew_##name##_d(a, y, 0);                                                  \
        return;
    switch (n->op) {
        AD_EW_BINARY(REPLAY_BINARY_)
        AD_EW_UNARY(REPLAY_UNARY_)
        AD_EW_UNARY_P(REPLAY_UNARY_)
    default: break;
    }
#undef REPLAY_BINARY_
#undef REPLAY_UNARY_
    const op_entry *e = op_entry_get(n->op); /* an op registered by its formulas */
    if (n->b) {
        n->v = y = e->f2(a, b);
        n->da = e->d2a(a, b, y);
        n->db = e->d2b(a, b, y);
    } else {
        n->v = y = e->f1(a, 0);
        n->da = e->d1(a, y, 0);
    }
}

/* An operand in a message: its name, or "node N". */
static const char *operand_name(const ad_node *n, char *buf, size_t len)
{
    if (n->x && n->x->name) snprintf(buf, len, "%s", n->x->name);
    else snprintf(buf, len, "node %u", n->id);
    return buf;
}

/* The guard's message: which node, what it compared, which way it went. */
static ad_status retape(ad_graph *g, const ad_node *n, bool now)
{
    const op_entry *e = op_entry_get(n->op);
    char what[200] = "";
    if (n->nin == 2 && e->infix) {
        char an[80], bn[80];
        snprintf(what, sizeof what, " (%s%s%s)", operand_name(node_in(n, 0), an, sizeof an), e->infix,
                 operand_name(node_in(n, 1), bn, sizeof bn));
    }
    return ad_set_error(g, AD_ERR_RETAPE,
                        "replay: branch on %s node %u%s was %s when recorded and is %s now; record the "
                        "graph again at these values",
                        e->def.name, n->id, what, now ? "false" : "true", now ? "true" : "false");
}

ad_status ad_replay(ad_graph *g)
{
    if (!g) return AD_ERR_NULL;
    if (g->status) return g->status;
    bool fused = fuse_replay_begin(g);
    uint32_t run_end = 0; /* nodes below it belong to a fused group's run, evaluated already */
    for (uint32_t s = 0; (uint64_t)s << SLAB_BITS < g->nnodes; s++) {
        ad_node *n = g->slab[s];
        uint32_t left = g->nnodes - (s << SLAB_BITS);
        ad_node *end = n + (left < SLAB_NODES ? left : SLAB_NODES);
        for (; n < end; n++) {
            /* the last sweep's inner gradients, cleared here while the node is in cache, so
             * that the next sweep need not pass over the graph to clear them */
            if (!(n->flags & F_LEAF)) {
                n->g = 0;
                n->flags &= (uint8_t)~F_GRAD_LIVE;
            }
            if (fused && n->id >= run_end) {
                uint32_t e = fuse_replay_at(g, n->id);
                if (e) run_end = e;
            }
            if (n->id < run_end) {
                /* its group computed it */
            } else if (n->flags & F_PARTIALS) scalar_eval(n);
            else if (n->op >= OP_FIRST_COMPUTED && !(n->flags & F_VIEW)) {
                ad_node *pair[2];
                ad_op_ctx c = node_ctx(g, n, pair);
                op_entry_get(n->op)->def.forward(&c);
            }
            if (n->guard) {
                bool now = load(node_data(n), (ad_dtype)n->dtype, 0) != 0;
                if (now != (n->guard == 2)) return retape(g, n, now);
            }
            if (g->anomaly && !anomaly_forward(g, n)) return g->status;
        }
    }
    g->dirty = 0;
    return AD_OK;
}

/* The leaf whose values ad_set_value / ad_set_data may change. */
static bool settable(ad_graph *g, ad_node *n, const char *fn)
{
    if (!n) return ad_set_error(g, AD_ERR_NULL, "%s: node is NULL", fn), false;
    if (!node_is_live(g, n)) return ad_set_error(g, AD_ERR_ARG, "%s: the node is not of this graph", fn), false;
    if (n->op != OP_VAR && n->op != OP_CONST)
        return ad_set_error(g, AD_ERR_ARG, "%s: node %u is %s, not a variable or constant%s", fn, n->id,
                            op_entry_get(n->op)->def.name,
                            n->op == OP_PARAM ? " (a parameter's values are its tensor's: write those)" : ""),
               false;
    return true;
}

ad_status ad_set_value(ad_graph *g, ad_node *leaf, double v)
{
    if (!g) return AD_ERR_NULL;
    if (!settable(g, leaf, "set_value")) return g->status;
    if (node_size(leaf) != 1) {
        char b[96];
        ad_shape s = node_shape(leaf);
        return ad_set_error(g, AD_ERR_ARG, "set_value: node %u has shape %s, not one element (ad_set_data)",
                            leaf->id, ad_shape_str(&s, b, sizeof b));
    }
    store(node_data(leaf), (ad_dtype)leaf->dtype, 0, v);
    return AD_OK;
}

ad_status ad_set_data(ad_graph *g, ad_node *leaf, const double *v)
{
    if (!g) return AD_ERR_NULL;
    if (!settable(g, leaf, "set_data")) return g->status;
    if (!v) return ad_set_error(g, AD_ERR_NULL, "set_data: values are NULL");
    /* a copy, not a store per element: a replay's input is a pass over memory like any other */
    void *d = node_data(leaf);
    int64_t n = node_size(leaf);
    if (leaf->dtype == AD_F64) memmove(d, v, (size_t)n * sizeof *v);
    else
        for (int64_t i = 0; i < n; i++) ((float *)d)[i] = (float)v[i];
    return AD_OK;
}

ad_status ad_node_set_arg(ad_graph *g, ad_node *n, const void *arg)
{
    if (!g) return AD_ERR_NULL;
    if (!n) return ad_set_error(g, AD_ERR_NULL, "set_arg: node is NULL");
    if (!node_is_live(g, n)) return ad_set_error(g, AD_ERR_ARG, "set_arg: the node is not of this graph");
    const op_entry *e = op_entry_get(n->op);
    if (!e->def.init || !n->x)
        return ad_set_error(g, AD_ERR_ARG, "set_arg: node %u is %s, which takes no argument", n->id, e->def.name);
    ad_node *pair[2];
    ad_op_ctx c = node_ctx(g, n, pair);
    char msg[256] = "";
    ad_status st = e->def.init(&c, arg, msg, sizeof msg);
    if (st) return msg[0] ? ad_set_error(g, st, "%s: %s", e->def.name, msg) : g->status ? g->status : st;
    return AD_OK;
}

bool ad_branch(ad_graph *g, ad_node *n)
{
    if (!g) return false;
    if (!n) return ad_set_error(g, AD_ERR_NULL, "branch: node is NULL"), false;
    if (!node_is_live(g, n)) return ad_set_error(g, AD_ERR_ARG, "branch: the node is not of this graph"), false;
    if (node_size(n) != 1) {
        char b[96];
        ad_shape s = node_shape(n);
        return ad_set_error(g, AD_ERR_ARG, "branch: node %u has shape %s; a branch takes one truth value",
                            n->id, ad_shape_str(&s, b, sizeof b)),
               false;
    }
    bool v = load(node_data(n), (ad_dtype)n->dtype, 0) != 0;
    n->guard = v ? 2 : 1;
    return v;
}

/* ---- workspaces ---- */

/* Which op a workspace cannot hold, or NULL. */
static const char *not_clonable(const ad_node *n)
{
    if (n->op == OP_DROPOUT) return "dropout draws its masks from one ad_rng, which threads would share";
    if (norm_not_clonable(n)) return norm_not_clonable(n);
    /* a user op's state may point anywhere (its input nodes, the caller's memory), and a copy
     * would still point there, into what other threads replay */
    if (n->op >= OP_BUILTIN_COUNT && (op_entry_get(n->op)->def.state_size || (n->x && n->x->blocks)))
        return "an op of ad_op_register with state, whose pointers a copy would share";
    return NULL;
}

/* The copy of node n's ext in workspace w (whose node n2 has n's id and inputs already
 * mapped); false when memory runs out. */
static bool clone_ext(ad_graph *w, const ad_node *n, ad_node *n2)
{
    const ad_ext *x = n->x;
    ad_ext *y = arena_alloc(w, sizeof *y);
    if (!y) return false;
    *y = *x;
    n2->x = y;
    size_t es = ad_dtype_size((ad_dtype)n->dtype), bytes = (size_t)x->size * es;
    if (x->in) {
        if (!(y->in = arena_alloc(w, (size_t)n->nin * sizeof *y->in))) return false;
        for (int i = 0; i < n->nin; i++) y->in[i] = node_at(w, x->in[i]->id);
    }
    if (x->name && !(y->name = arena_strdup(w, x->name))) return false;
    if (x->nparam) {
        if (!(y->param_v = arena_alloc(w, (size_t)x->nparam * sizeof *y->param_v))) return false;
        memcpy(y->param_v, x->param_v, (size_t)x->nparam * sizeof *y->param_v);
    }
    /* values: inline, a view, shared (a tensor's storage), or a copy */
    if (x->data == &n->v) y->data = &n2->v;
    else if ((n->flags & F_VIEW) && n->nin) {
        const ad_node *in = node_in(n, 0);
        y->data = (char *)node_data(node_at(w, in->id)) + ((const char *)x->data - (const char *)node_data((ad_node *)in));
    } else if (!(n->flags & F_VIEW)) {
        if (!(y->data = arena_alloc(w, bytes ? bytes : 1))) return false;
        memcpy(y->data, x->data, bytes);
    }
    y->scratch = NULL, y->scratch_bytes = 0; /* its own, made on first use */
    /* gradients: the workspace's own, made on first use (a parameter's too) */
    y->param = NULL;
    y->grad = x->grad == &n->g ? &n2->g : NULL;
    if (!y->grad) n2->flags &= (uint8_t)~F_GRAD_LIVE;
    /* op state, and the blocks it points into */
    op_block **tail = &y->blocks; /* in the same order, for the pairing below */
    *tail = NULL;
    for (const op_block *b = x->blocks; b; b = b->next) {
        op_block *c = arena_alloc(w, sizeof *c);
        void *p = arena_alloc(w, b->bytes);
        if (!c || !p) return false;
        memcpy(p, b->p, b->bytes);
        *c = (op_block){NULL, p, b->bytes};
        *tail = c;
        tail = &c->next;
        if (x->saved == b->p) y->saved = p;
    }
    size_t state = op_entry_get(n->op)->def.state_size;
    if (y->saved && y->saved != x->saved) /* point the state's pointers at the copies */
        for (size_t k = 0; k + sizeof(void *) <= state; k += sizeof(void *)) {
            void *ptr;
            memcpy(&ptr, (char *)y->saved + k, sizeof ptr);
            for (const op_block *b = x->blocks, *c = y->blocks; b; b = b->next, c = c->next)
                if (ptr == b->p) memcpy((char *)y->saved + k, &c->p, sizeof c->p);
        }
    return true;
}

ad_graph *ad_graph_clone(ad_graph *g)
{
    if (!g) return NULL;
    if (g->status) return NULL;
    fuse_current(g); /* the copy's values are all current */
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const ad_node *n = node_at(g, i);
        const char *why = not_clonable(n);
        if (why) {
            ad_set_error(g, AD_ERR_ARG, "clone: node %u (%s) cannot be copied into a workspace: %s", n->id,
                         op_entry_get(n->op)->def.name, why);
            return NULL;
        }
    }
    ad_graph *w = ad_graph_new();
    if (!w) goto oom;
    w->nograd = g->nograd;
    w->anomaly = g->anomaly;
    w->fuse_on = g->fuse_on;
    for (uint32_t i = 0; i < g->nnodes; i++) {
        const ad_node *n = node_at(g, i);
        ad_node *n2 = node_alloc(w);
        if (!n2) goto oom;
        *n2 = *n;
        n2->a = n->a ? node_at(w, n->a->id) : NULL;
        n2->b = n->b ? node_at(w, n->b->id) : NULL;
        if (n->x && !clone_ext(w, n, n2)) goto oom;
        if (n2->flags & F_LEAF) n2->g = 0; /* the workspace's gradients start at 0 */
    }
    return w;
oom:
    ad_graph_free(w);
    ad_set_error(g, AD_ERR_NOMEM, "clone: out of memory for a workspace of %u nodes", g->nnodes);
    return NULL;
}
