/* What traces and pictures show of a graph: the nodes the root depends on, their fan-out
 * (copy nodes), and each node as the lecture draws it: a gate with a label, the local
 * gradient of each input as a formula and a number. */
#include "view.h"
#include "ad_io.h"
#include <stdlib.h>

static bool is_scalar_const(const ad_node *n)
{
    return n->op == OP_CONST && node_size(n) == 1 && !(n->flags & F_NEEDS_GRAD);
}

static bool is_binary_elementwise(int op) { return op_entry_get(op)->f2 != NULL; }

/* A scalar constant feeding a binary elementwise op becomes part of the gate's label ("+1",
 * "*2", "1/x"), as the slides draw it; the other input must not be a constant too. */
int view_folded(const ad_node *n)
{
    if (n->nin != 2 || !is_binary_elementwise(n->op)) return -1;
    bool c0 = is_scalar_const(n->a), c1 = is_scalar_const(n->b);
    if (c1 && !c0) return 1;
    if (c0 && !c1) return 0;
    return -1;
}

ad_status view_build(gview *v, const ad_graph *g, ad_node *root)
{
    memset(v, 0, sizeof *v);
    if (!g || !root) return AD_ERR_NULL;
    if (root->id >= g->nnodes || node_at(g, root->id) != root) return AD_ERR_ARG;
    v->g = g;
    v->root = root;
    v->n = root->id + 1;
    v->live = ad_xcalloc(v->n, 1);
    v->uses = ad_xcalloc(v->n, sizeof *v->uses);
    v->cstart = ad_xcalloc((size_t)v->n + 1, sizeof *v->cstart);
    if (!v->live || !v->uses || !v->cstart) goto oom;
    v->live[root->id] = 1;
    int64_t edges = 0;
    for (uint32_t i = v->n; i-- > 0;) {
        ad_node *m = node_at(g, i);
        if (!v->live[i]) continue;
        int skip = view_folded(m);
        for (int k = 0; k < m->nin; k++) {
            if (k == skip) continue;
            ad_node *in = node_in(m, k);
            v->live[in->id] = 1;
            v->uses[in->id]++;
            edges++;
        }
    }
    /* consumers of each node, in CSR form: (consumer id, input slot) pairs */
    for (uint32_t i = 0; i < v->n; i++) v->cstart[i + 1] = v->cstart[i] + v->uses[i];
    v->cons = ad_xmalloc((size_t)(edges ? edges : 1) * sizeof *v->cons);
    int32_t *fill = ad_xmalloc((size_t)v->n * sizeof *fill);
    if (!v->cons || !fill) {
        ad_xfree(fill);
        goto oom;
    }
    memcpy(fill, v->cstart, (size_t)v->n * sizeof *fill);
    for (uint32_t i = 0; i < v->n; i++) {
        ad_node *m = node_at(g, i);
        if (!v->live[i]) continue;
        int skip = view_folded(m);
        for (int k = 0; k < m->nin; k++)
            if (k != skip) {
                ad_node *in = node_in(m, k);
                v->cons[fill[in->id]++] = (view_edge){i, k};
            }
    }
    ad_xfree(fill);
    return AD_OK;
oom:
    view_free(v);
    return AD_ERR_NOMEM;
}

void view_free(gview *v)
{
    ad_xfree(v->live);
    ad_xfree(v->uses);
    ad_xfree(v->cstart);
    ad_xfree(v->cons);
    memset(v, 0, sizeof *v);
}

/* ---- numbers ---- */

char *view_num(double x, int digits, char *buf, size_t len)
{
    if (isnan(x)) snprintf(buf, len, "nan");
    else if (isinf(x)) snprintf(buf, len, x > 0 ? "inf" : "-inf");
    else if (digits < 0) snprintf(buf, len, "%.17g", x);
    else {
        snprintf(buf, len, "%.*f", digits, x);
        /* "-0.00" says nothing a student can use: a value that rounds to zero prints as 0 */
        if (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1)) memmove(buf, buf + 1, strlen(buf));
    }
    return buf;
}

/* A compact constant for labels: "1", "0.5", "-3". */
static char *const_str(double c, char *buf, size_t len)
{
    snprintf(buf, len, "%.6g", c);
    return buf;
}

char *view_values(ad_node *n, bool grad, int digits, char *buf, size_t len)
{
    int64_t size = node_size(n);
    ad_shape s = node_shape(n);
    char nb[64];
    if (s.rank == 0 && size == 1)
        return view_num(grad ? ad_node_grad_get(n, 0) : ad_node_get(n, 0), digits, buf, len);
    size_t at = 0;
    char sb[96];
    at += (size_t)snprintf(buf, len, "%s [", ad_shape_str(&s, sb, sizeof sb));
    for (int64_t i = 0; i < size && at < len; i++) {
        if (size > 6 && i == 3) {
            at += (size_t)snprintf(buf + at, len - at, ", ...");
            i = size - 3;
        }
        double x = grad ? ad_node_grad_get(n, i) : ad_node_get(n, i);
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", view_num(x, digits, nb, sizeof nb));
    }
    if (at < len) snprintf(buf + at, len - at, "]");
    return buf;
}

/* A name cut to fit buf ends before the character that did not fit, not inside it (which the
 * writers would show as U+FFFD). */
static void cut_at_character(char *buf, size_t len, const char *name)
{
    size_t n = strlen(buf);
    if (!len || n == strlen(name)) return;
    size_t k = n;
    while (k > 0 && n - k < 3 && ((unsigned char)buf[k - 1] & 0xC0) == 0x80) k--;
    bool lead = k > 0 && (unsigned char)buf[k - 1] >= 0xC0;
    if (lead && utf8_len(name + k - 1) > (int)(n - k + 1)) buf[k - 1] = 0;
}

char *view_ref(const ad_node *n, char *buf, size_t len)
{
    const char *name = n->x ? n->x->name : NULL;
    if (name) snprintf(buf, len, "%s", name), cut_at_character(buf, len, name);
    else if (is_scalar_const(n)) const_str(ad_node_get(n, 0), buf, len);
    else snprintf(buf, len, "#%u", n->id);
    return buf;
}

/* ---- gates ---- */

/* The gate's label: its symbol, its infix operator without the spaces, or its name. */
static void symbol(int op, char *buf, size_t len)
{
    const op_entry *e = op_entry_get(op);
    const char *s = e->symbol ? e->symbol : e->infix ? e->infix : e->def.name;
    size_t k = 0;
    for (; *s && k + 1 < len; s++)
        if (*s != ' ') buf[k++] = *s;
    buf[k] = 0;
}

/* pattern with every {c} replaced by c. */
static void fill_constant(const char *pattern, const char *c, char *buf, size_t len)
{
    size_t k = 0;
    for (const char *p = pattern ? pattern : ""; *p && k + 1 < len; p++) {
        if (strncmp(p, "{c}", 3) == 0) {
            k += (size_t)snprintf(buf + k, len - k, "%s", c);
            if (k >= len) k = len - 1;
            p += 2;
        } else {
            buf[k++] = *p;
        }
    }
    buf[k] = 0;
}

/* The local partial derivative d out / d input k as a number, for float64 scalars: recorded
 * by the fast path, or recomputed from the op's formulas. */
static double local_number(ad_node *n, int k)
{
    if (n->flags & F_PARTIALS) return k == 0 ? n->da : n->db;
    if (node_size(n) != 1 || n->nin > 2) return NAN;
    const op_entry *e = op_entry_get(n->op);
    double y = ad_node_get(n, 0);
    if (n->nin == 1 && e->d1)
        return e->d1(ad_node_get(n->a, 0), y, n->x && n->x->nparam ? n->x->param_v[0] : 0);
    if (n->nin == 2 && e->d2a && node_size(n->a) == 1 && node_size(n->b) == 1) {
        double a = ad_node_get(n->a, 0), b = ad_node_get(n->b, 0);
        return k == 0 ? e->d2a(a, b, y) : e->d2b(a, b, y);
    }
    return NAN;
}

void view_gate(ad_node *n, gate *gt)
{
    memset(gt, 0, sizeof *gt);
    char c[32];
    int fold = view_folded(n);
    if (n->nin == 0) {
        snprintf(gt->label, sizeof gt->label, "%s", op_entry_get(n->op)->def.name);
        return;
    }
    if (fold >= 0) {
        int k = !fold; /* the input that stays an edge */
        const_str(ad_node_get(node_in(n, fold), 0), c, sizeof c);
        gt->nshown = 1;
        gt->slot[0] = k;
        gt->local[0] = local_number(n, k);
        const op_entry *e = op_entry_get(n->op);
        int side = fold == 0 ? 0 : 1; /* constant on the left: c - x, c/x, c^x */
        fill_constant(e->fold_label[side], c, gt->label, sizeof gt->label);
        fill_constant(e->fold_formula[side], c, gt->formula[0], sizeof gt->formula[0]);
        if (!e->fold_label[side]) snprintf(gt->label, sizeof gt->label, "%s(x,%s)", e->def.name, c);
        return;
    }
    const op_entry *e = op_entry_get(n->op);
    symbol(n->op, gt->label, sizeof gt->label);
    if (op_is_elementwise(e) && n->x && n->x->nparam) /* a parameter shows in the gate */
        snprintf(gt->label, sizeof gt->label, "%s(%s)", e->def.name, const_str(n->x->param_v[0], c, sizeof c));
    if (n->op == OP_LINEAR && n->x && n->x->nparam >= 2) { /* ad_linear_act */
        static const char *const acts[] = {"", "relu", "leaky_relu", "sigmoid", "tanh"};
        int a = (int)n->x->param_v[0];
        snprintf(gt->label, sizeof gt->label, "linear+%s", a > 0 && a <= AD_ACT_TANH ? acts[a] : "?");
    }
    gt->nshown = n->nin < VIEW_MAX_SHOWN ? n->nin : VIEW_MAX_SHOWN;
    for (int k = 0; k < gt->nshown; k++) {
        gt->slot[k] = k;
        gt->local[k] = local_number(n, k);
        const char *text = e->f2 && e->formula[k] ? e->formula[k]
                           : k == 0 && e->def.local_grad ? e->def.local_grad : "";
        snprintf(gt->formula[k], sizeof gt->formula[k], "%s", text);
    }
}

void view_xml(FILE *out, const char *s)
{
    /* in pieces through a fixed buffer: an entity is at most 6 bytes, so nothing is cut; a
     * piece ends before a UTF-8 sequence, not inside one (after 3 continuation bytes in a row,
     * the next one is stray wherever the cut falls) */
    char piece[64], buf[sizeof piece * 6];
    while (s && *s) {
        size_t n = strnlen(s, sizeof piece - 1);
        for (int k = 0; k < 3 && s[n] && ((unsigned char)s[n] & 0xC0) == 0x80; k++) n--;
        memcpy(piece, s, n);
        piece[n] = 0;
        ad_xml_escape(buf, sizeof buf, piece);
        fputs(buf, out);
        s += n;
    }
}
