/* A recorded float64 scalar graph compiled to a flat program: the fast form of replay, and a
 * recording that threads share read-only (docs/design.md, "Replay"). */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>

/* One operation: its op, its inputs' slots (a where's two sides are in `sides`, a its
 * condition) and its guard.  The output's slot is the instruction's index past the leaves'
 * slots, so it is not stored. */
typedef struct {
    uint32_t a, b;
    uint16_t op;
    uint8_t guard; /* ad_branch's outcome: 0 none, 1 false, 2 true */
    uint8_t pad_;
} insn;

struct ad_program {
    uint32_t nleaf, ninsn;   /* slots: the leaves', then one per instruction */
    insn *code;
    double *leaf_value;      /* the leaves' recorded values (constants keep theirs) */
    uint32_t *input;         /* the inputs' slots */
    int n;
    uint32_t *root;          /* the roots' slots */
    int m;
    uint32_t (*sides)[2];    /* a where's two sides, by the index its insn's b holds */
    uint32_t *node_of;       /* slot -> node id of the recording, for messages */
    /* Per root, a bit per instruction: whether the graph's sweep from that root passes through
     * it (the node needs a gradient and the sweep reaches it).  The others are skipped, as the
     * graph skips them: a 0 gradient times an infinite partial would be NaN. */
    uint64_t *swept;
    size_t swept_words;      /* per root */
    bool *all_swept;         /* per root: every instruction up to it is swept (no test needed) */
    uint32_t *leaf_guard;    /* guarded leaves (ad_branch on an input itself): slot, outcome */
    uint32_t nleaf_guard;
};

/* What a thread evaluates a program in: a value and a gradient per slot, side by side so that
 * a node's pair shares a cache line. */
typedef struct { double v, g; } slot;
struct ad_program_ws {
    slot *s;
    uint32_t nslots;
    char err[256];
};

void ad_program_free(ad_program *p)
{
    if (!p) return;
    ad_xfree(p->code), ad_xfree(p->leaf_value), ad_xfree(p->input), ad_xfree(p->root);
    ad_xfree(p->sides), ad_xfree(p->node_of), ad_xfree(p->swept), ad_xfree(p->all_swept);
    ad_xfree(p->leaf_guard);
    ad_xfree(p);
}

/* Whether node n can be an instruction: a float64 scalar elementwise node of the fast path, or
 * a where of float64 scalars. */
static bool compilable(const ad_node *n)
{
    if (n->flags & F_PARTIALS) return true;
    if (n->op != OP_WHERE || !(n->flags & F_SCALAR)) return false;
    for (int k = 0; k < 3; k++)
        if (!(node_in(n, k)->flags & F_SCALAR)) return false;
    return true;
}

ad_program *ad_program_new(ad_graph *g, int m, ad_node *const *roots, int n, ad_node *const *inputs)
{
    if (!g) return NULL;
    if (g->status) return NULL;
    if (m < 1 || !roots || n < 0 || (n > 0 && !inputs)) {
        ad_set_error(g, AD_ERR_ARG, "program: %d roots and %d inputs (with %s arrays)", m, n,
                     !roots || (n > 0 && !inputs) ? "NULL" : "their");
        return NULL;
    }
    uint32_t end = 0;
    for (int r = 0; r < m; r++) {
        if (!roots[r] || !node_is_live(g, roots[r])) {
            ad_set_error(g, AD_ERR_ARG, "program: root %d is not a node of this graph", r);
            return NULL;
        }
        if (roots[r]->id + 1 > end) end = roots[r]->id + 1;
    }
    for (int i = 0; i < n; i++) {
        if (!inputs[i] || !node_is_live(g, inputs[i]) || inputs[i]->nin != 0 || !(inputs[i]->flags & F_SCALAR)) {
            ad_set_error(g, AD_ERR_ARG, "program: input %d is not a float64 scalar leaf of this graph", i);
            return NULL;
        }
        if (inputs[i]->id + 1 > end) end = inputs[i]->id + 1;
    }
    ad_program *p = ad_xcalloc(1, sizeof *p);
    uint32_t *slot_of = ad_xmalloc((size_t)end * sizeof *slot_of);
    uint8_t *need = ad_xcalloc(end, 1);
    if (!p || !slot_of || !need) goto oom;
    /* what the roots depend on, walking down, and the guards recorded on the way: a branch
     * decided the graph's shape even where no root uses its condition's value */
    for (int r = 0; r < m; r++) need[roots[r]->id] = 1;
    for (uint32_t i = 0; i < end; i++)
        if (node_at(g, i)->guard) need[i] = 1;
    uint32_t nleaf = 0, ninsn = 0, nwhere = 0;
    for (uint32_t i = end; i-- > 0;) {
        if (!need[i]) continue;
        ad_node *v = node_at(g, i);
        if (v->nin == 0) {
            if (!(v->flags & F_SCALAR) && !(v->x && v->x->size == 1 && v->dtype == AD_F64)) goto refuse;
            nleaf++;
            continue;
        }
        if (!compilable(v)) goto refuse;
        ninsn++;
        nwhere += v->op == OP_WHERE;
        for (int k = 0; k < v->nin; k++) need[node_in(v, k)->id] = 1;
        continue;
    refuse:;
        char b[96];
        ad_shape s = node_shape(v);
        ad_set_error(g, AD_ERR_ARG, "program: node %u (%s, %s %s) is not a float64 scalar elementwise op or where",
                     v->id, op_entry_get(v->op)->def.name, ad_dtype_name((ad_dtype)v->dtype), ad_shape_str(&s, b, sizeof b));
        goto fail;
    }
    for (int i = 0; i < n; i++) /* an input nothing depends on still gets its slot (gradient 0) */
        if (!need[inputs[i]->id]) need[inputs[i]->id] = 1, nleaf++;
    p->nleaf = nleaf, p->ninsn = ninsn, p->n = n, p->m = m;
    p->code = ad_xmalloc(((size_t)ninsn + 1) * sizeof *p->code);
    p->leaf_value = ad_xmalloc(((size_t)nleaf + 1) * sizeof *p->leaf_value);
    p->input = ad_xmalloc(((size_t)n + 1) * sizeof *p->input);
    p->root = ad_xmalloc((size_t)m * sizeof *p->root);
    p->sides = ad_xmalloc(((size_t)nwhere + 1) * sizeof *p->sides);
    p->node_of = ad_xmalloc(((size_t)nleaf + ninsn) * sizeof *p->node_of);
    p->swept_words = ((size_t)ninsn + 63) / 64;
    p->swept = ad_xcalloc((size_t)m * p->swept_words + 1, sizeof *p->swept);
    p->all_swept = ad_xcalloc((size_t)m, sizeof *p->all_swept);
    p->leaf_guard = ad_xmalloc(2 * ((size_t)nleaf + 1) * sizeof *p->leaf_guard);
    if (!p->code || !p->leaf_value || !p->input || !p->root || !p->sides || !p->node_of || !p->swept ||
        !p->all_swept || !p->leaf_guard)
        goto oom;
    uint32_t li = 0, ii = 0, wi = 0;
    for (uint32_t i = 0; i < end; i++) {
        if (!need[i]) continue;
        ad_node *v = node_at(g, i);
        if (v->nin == 0) {
            slot_of[i] = li;
            p->node_of[li] = i;
            if (v->guard) {
                p->leaf_guard[2 * p->nleaf_guard] = li;
                p->leaf_guard[2 * p->nleaf_guard++ + 1] = (uint32_t)v->guard;
            }
            p->leaf_value[li++] = load(node_data(v), AD_F64, 0);
            continue;
        }
        uint32_t s = nleaf + ii;
        slot_of[i] = s;
        p->node_of[s] = i;
        insn *c = &p->code[ii++];
        c->op = v->op;
        c->guard = (uint8_t)v->guard;
        c->pad_ = 0;
        c->a = slot_of[node_in(v, 0)->id];
        c->b = v->nin > 1 ? slot_of[node_in(v, 1)->id] : c->a;
        if (v->op == OP_WHERE) {
            p->sides[wi][0] = slot_of[node_in(v, 1)->id];
            p->sides[wi][1] = slot_of[node_in(v, 2)->id];
            c->b = wi++;
        }
    }
    for (int i = 0; i < n; i++) p->input[i] = slot_of[inputs[i]->id];
    for (int r = 0; r < m; r++) p->root[r] = slot_of[roots[r]->id];
    /* each root's sweep, as backward.c decides it: a node is passed through when it needs a
     * gradient and a node passed through reached it (elementwise: both inputs; where: both
     * sides) */
    for (int r = 0; r < m; r++) {
        memset(need, 0, end);
        need[roots[r]->id] = 1;
        for (uint32_t i = roots[r]->id + 1; i-- > 0;) {
            ad_node *v = node_at(g, i);
            if (!need[i] || v->nin == 0 || !(v->flags & F_NEEDS_GRAD)) continue;
            uint32_t k = slot_of[i] - nleaf;
            p->swept[(size_t)r * p->swept_words + k / 64] |= (uint64_t)1 << (k % 64);
            for (int j = v->op == OP_WHERE ? 1 : 0; j < v->nin; j++) need[node_in(v, j)->id] = 1;
        }
        uint32_t upto = p->root[r] < nleaf ? 0 : p->root[r] - nleaf + 1, k = 0;
        while (k < upto && p->swept[(size_t)r * p->swept_words + k / 64] >> (k % 64) & 1) k++;
        p->all_swept[r] = k == upto;
    }
    ad_xfree(slot_of);
    ad_xfree(need);
    return p;
oom:
    ad_set_error(g, AD_ERR_NOMEM, "program: out of memory for a program of %u nodes", end);
fail:
    ad_xfree(slot_of);
    ad_xfree(need);
    ad_program_free(p);
    return NULL;
}

ad_program_ws *ad_program_ws_new(const ad_program *p)
{
    if (!p) return NULL;
    ad_program_ws *w = ad_xcalloc(1, sizeof *w);
    if (!w) return NULL;
    w->nslots = p->nleaf + p->ninsn;
    if (!(w->s = ad_xmalloc(((size_t)w->nslots + 1) * sizeof *w->s))) {
        ad_xfree(w);
        return NULL;
    }
    for (uint32_t i = 0; i < p->nleaf; i++) w->s[i].v = p->leaf_value[i];
    return w;
}

void ad_program_ws_free(ad_program_ws *w)
{
    if (!w) return;
    ad_xfree(w->s);
    ad_xfree(w);
}

const char *ad_program_ws_error(const ad_program_ws *w) { return w && w->err[0] ? w->err : NULL; }

/* Forward: every slot's value from its inputs' with the formulas that recorded it (the same
 * inline functions of ad_ew.h: the same bits), gradients zeroed on the way. */
static ad_status run_forward(const ad_program *p, ad_program_ws *w)
{
    slot *S = w->s;
    for (uint32_t i = 0; i < p->nleaf; i++) S[i].g = 0;
    for (uint32_t k = 0; k < p->nleaf_guard; k++) {
        uint32_t i = p->leaf_guard[2 * k], was = p->leaf_guard[2 * k + 1];
        if ((S[i].v != 0) != (was == 2)) {
            snprintf(w->err, sizeof w->err,
                     "program: branch on leaf node %u was %s when recorded and is %s now; record the graph "
                     "again at these values", p->node_of[i], was == 2 ? "true" : "false", was == 2 ? "false" : "true");
            return AD_ERR_RETAPE;
        }
    }
    slot *out = S + p->nleaf;
    for (uint32_t k = 0; k < p->ninsn; k++, out++) {
        const insn *c = &p->code[k];
        double a = S[c->a].v, b = S[c->b].v;
        /* the commonest ops first, by compare and branch, which predicts better than the
         * switch's one indirect jump */
        if (c->op == OP_MUL) out->v = ad_ew_mul(a, b);
        else if (c->op == OP_ADD) out->v = ad_ew_add(a, b);
        else if (c->op == OP_SUB) out->v = ad_ew_sub(a, b);
        else switch (c->op) {
#define PROGRAM_BINARY_(ID, name, ...) case OP_##ID: out->v = ad_ew_##name(a, b); break;
#define PROGRAM_UNARY_(ID, name, ...) case OP_##ID: out->v = ad_ew_##name(a, 0); break;
            AD_EW_BINARY(PROGRAM_BINARY_)
            AD_EW_UNARY(PROGRAM_UNARY_)
            AD_EW_UNARY_P(PROGRAM_UNARY_)
#undef PROGRAM_BINARY_
#undef PROGRAM_UNARY_
        case OP_WHERE: out->v = a != 0 ? S[p->sides[c->b][0]].v : S[p->sides[c->b][1]].v; break;
        default: { /* an op registered by its formulas */
            const op_entry *e = op_entry_get(c->op);
            out->v = e->f2 ? e->f2(a, b) : e->f1(a, 0);
        }
        }
        out->g = 0;
        if (c->guard && (out->v != 0) != (c->guard == 2)) {
            snprintf(w->err, sizeof w->err,
                     "program: branch on %s node %u was %s when recorded and is %s now; record the graph again "
                     "at these values", op_entry_get(c->op)->def.name, p->node_of[p->nleaf + k],
                     c->guard == 2 ? "true" : "false", c->guard == 2 ? "false" : "true");
            return AD_ERR_RETAPE;
        }
    }
    return AD_OK;
}

/* Backward from the slot `root`: the graph's sweep, in its order, with the partials computed
 * again from the values (the formulas that recorded them: the same bits as the recorded
 * ones), so the forward pass stores none. */
static void run_backward(const ad_program *p, ad_program_ws *w, int r)
{
    slot *S = w->s;
    uint32_t root = p->root[r];
    const uint64_t *swept = p->swept + (size_t)r * p->swept_words;
    S[root].g += 1;
    if (root < p->nleaf) return; /* a leaf: nothing to sweep */
    bool all = p->all_swept[r];
    for (uint32_t k = root - p->nleaf + 1; k-- > 0;) {
        if (!all && !(swept[k / 64] >> (k % 64) & 1)) continue;
        const insn *c = &p->code[k];
        double gv = S[p->nleaf + k].g, y = S[p->nleaf + k].v, a = S[c->a].v, b = S[c->b].v;
        if (c->op == OP_MUL) {
            S[c->a].g += ad_ew_mul_da(a, b, y) * gv;
            S[c->b].g += ad_ew_mul_db(a, b, y) * gv;
        } else if (c->op == OP_ADD) {
            S[c->a].g += ad_ew_add_da(a, b, y) * gv;
            S[c->b].g += ad_ew_add_db(a, b, y) * gv;
        } else if (c->op == OP_SUB) {
            S[c->a].g += ad_ew_sub_da(a, b, y) * gv;
            S[c->b].g += ad_ew_sub_db(a, b, y) * gv;
        } else switch (c->op) {
#define PROGRAM_BINARY_(ID, name, ...)                                                      \
    case OP_##ID:                                                                           \
        S[c->a].g += ad_ew_##name##_da(a, b, y) * gv;                                       \
        S[c->b].g += ad_ew_##name##_db(a, b, y) * gv;                                       \
        break;
#define PROGRAM_UNARY_(ID, name, ...)                                                       \
    case OP_##ID: S[c->a].g += ad_ew_##name##_d(a, y, 0) * gv; break;
            AD_EW_BINARY(PROGRAM_BINARY_)
            AD_EW_UNARY(PROGRAM_UNARY_)
            AD_EW_UNARY_P(PROGRAM_UNARY_)
#undef PROGRAM_BINARY_
#undef PROGRAM_UNARY_
        case OP_WHERE: S[p->sides[c->b][a != 0 ? 0 : 1]].g += gv; break;
        default: {
            const op_entry *e = op_entry_get(c->op);
            if (e->f2) {
                S[c->a].g += e->d2a(a, b, y) * gv;
                S[c->b].g += e->d2b(a, b, y) * gv;
            } else {
                S[c->a].g += e->d1(a, y, 0) * gv;
            }
        }
        }
    }
}

ad_status ad_program_jacobian(const ad_program *p, ad_program_ws *w, const double *x, double *value, double *J)
{
    if (!p || !w || w->nslots != p->nleaf + p->ninsn) return AD_ERR_NULL;
    if (p->n > 0 && !x) return AD_ERR_NULL;
    w->err[0] = 0;
    for (int i = 0; i < p->n; i++) w->s[p->input[i]].v = x[i];
    ad_status st = run_forward(p, w);
    if (st) return st;
    for (int r = 0; r < p->m; r++) {
        if (value) value[r] = w->s[p->root[r]].v;
        if (!J) continue;
        if (r > 0)
            for (uint32_t i = 0; i < w->nslots; i++) w->s[i].g = 0;
        run_backward(p, w, r);
        for (int i = 0; i < p->n; i++) J[(size_t)r * (size_t)p->n + (size_t)i] = w->s[p->input[i]].g;
    }
    return AD_OK;
}

ad_status ad_program_gradient(const ad_program *p, ad_program_ws *w, const double *x, double *value, double *grad)
{
    if (p && p->m != 1) {
        if (w) snprintf(w->err, sizeof w->err, "program: gradient of a program with %d roots (ad_program_jacobian)", p->m);
        return AD_ERR_ARG;
    }
    return ad_program_jacobian(p, w, x, value, grad);
}

int ad_program_num_inputs(const ad_program *p) { return p ? p->n : 0; }
int ad_program_num_roots(const ad_program *p) { return p ? p->m : 0; }
uint32_t ad_program_size(const ad_program *p) { return p ? p->nleaf + p->ninsn : 0; }
