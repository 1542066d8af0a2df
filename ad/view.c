/* What traces and pictures show of a graph: the nodes the root depends on, their fan-out
 * (copy nodes), and each node as the lecture draws it: a gate with a label, the local
 * gradient of each input as a formula and a number. */
#include "view.h"
#include "ad_io.h"
#include <ctype.h>
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

/* The symbols that name unnamed inner inputs in formulas, a pair per gate; the first pair that
 * no node's name and no letter of the gate's formula uses. */
static const char *const SYMS[][2] = {{"u", "v"}, {"p", "q"}, {"s", "t"}, {"a", "b"}, {"m", "n"}, {"g", "h"}};
enum { NSYMS = sizeof SYMS / sizeof *SYMS };

ad_status view_build(gview *v, const ad_graph *g, ad_node *root)
{
    memset(v, 0, sizeof *v);
    if (!g || !root) return AD_ERR_NULL;
    fuse_current((ad_graph *)g); /* traces and pictures show every value */
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
    for (uint32_t i = 0; i < v->n; i++) {
        ad_node *m = node_at(g, i);
        if (!v->live[i] || !m->x || !m->x->name) continue;
        for (int c = 0; c < NSYMS; c++)
            if (!strcmp(m->x->name, SYMS[c][0]) || !strcmp(m->x->name, SYMS[c][1])) v->clash |= 1u << c;
    }
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

/* A label's operand placeholder x (a lone letter: "2/x", "{c}^x") becomes the name of a named
 * input, so `2/y` shows as "2/y", not "2/x" beside the student's own x.  An unnamed inner input
 * keeps the slides' x ("1/x"). */
static void name_operand(char *label, size_t len, const char *name)
{
    if (!name || !*name) return;
    char out[48] = "";
    size_t k = 0;
    for (const char *p = label; *p && k < sizeof out; p++) {
        bool lone = *p == 'x' && (p == label || !isalnum((unsigned char)p[-1])) && !isalnum((unsigned char)p[1]);
        int w = lone ? snprintf(out + k, sizeof out - k, "%s", name) : snprintf(out + k, sizeof out - k, "%c", *p);
        if (w < 0 || (size_t)w >= sizeof out - k) return; /* too long for a label: keep the placeholder */
        k += (size_t)w;
    }
    snprintf(label, len, "%s", out);
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
        name_operand(gt->label, sizeof gt->label, ad_node_name(node_in(n, k)));
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

/* ---- the walk as the slides write it ---- */

char *view_operand(double x, int digits, char *buf, size_t len)
{
    char nb[64];
    view_num(x, digits, nb, sizeof nb);
    snprintf(buf, len, nb[0] == '-' ? "(%s)" : "%s", nb);
    return buf;
}

int view_width(const char *s)
{
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static bool ident_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Whether identifier id occurs in text as a whole identifier (not inside "exp" or "x0"). */
static bool has_ident(const char *text, const char *id)
{
    size_t n = strlen(id);
    for (const char *p = text; *p;) {
        if (!ident_start(*p)) {
            p++;
            continue;
        }
        const char *q = p;
        while (ident_char(*q)) q++;
        if ((size_t)(q - p) == n && !strncmp(p, id, n)) return true;
        p = q;
    }
    return false;
}

/* What a formula may call and still read well with numbers put in. */
static bool known_function(const char *p, size_t n)
{
    static const char *const fns[] = {"exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "erf", "pi"};
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        if (strlen(fns[i]) == n && !strncmp(p, fns[i], n)) return true;
    return false;
}

/* text with the identifiers x and y replaced by rx and ry and '*' written as '·'.  A negative
 * replacement is put in parentheses, except where it is all of the text or all of a call's
 * argument: exp(-1.00).  With strict, fails (returns false) on any other identifier but a known
 * function's, and on text that is not arithmetic (case splits, Iverson brackets, side
 * definitions after a comma), which reads worse with numbers. */
static bool rewrite(const char *t, const char *rx, const char *ry, bool strict, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    if (strict && strpbrk(t, "[,|")) return false;
#define PUT(...) (at += (size_t)snprintf(buf + at, at < len ? len - at : 0, __VA_ARGS__))
    for (const char *p = t; *p;) {
        if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
            const char *q = p;
            while (isdigit((unsigned char)*q) || *q == '.') q++;
            PUT("%.*s", (int)(q - p), p);
            p = q;
        } else if (ident_start(*p)) {
            const char *q = p;
            while (ident_char(*q)) q++;
            size_t n = (size_t)(q - p);
            const char *put = n == 1 && *p == 'x' ? rx : n == 1 && *p == 'y' ? ry : NULL;
            if (put) {
                bool bare = (p == t && !*q) || (p > t && p[-1] == '(' && *q == ')');
                PUT(put[0] == '-' && !bare ? "(%s)" : "%s", put);
            } else if (strict && !known_function(p, n)) {
                return false;
            } else {
                PUT("%.*s", (int)n, p);
            }
            p = q;
        } else {
            if (*p == '*') PUT("\u00b7");
            else PUT("%c", *p);
            p++;
        }
    }
#undef PUT
    return at < len;
}

/* Whether text is a number as written ("1", "-1", "0.5"): then it is the local gradient as it
 * stands, with nothing to evaluate. */
static bool plain_number(const char *text)
{
    char *end;
    strtod(text, &end);
    return *text && end != text && *end == 0;
}

static bool is_symbol_input(const ad_node *in) { return !(in->x && in->x->name) && !is_scalar_const(in); }

void view_walk(const gview *v, ad_node *n, const gate *gt, int digits, gate_walk *w)
{
    memset(w, 0, sizeof *w);
    const op_entry *e = op_entry_get(n->op);
    bool ew = op_is_elementwise(e), scalar = node_size(n) == 1;
    /* the pair of symbols: clear of every name and of the formula's own letters */
    int pair = 0;
    for (; pair < NSYMS; pair++) {
        bool ok = !(v->clash >> pair & 1);
        for (int k = 0; k < gt->nshown && ok; k++)
            ok = !has_ident(gt->formula[k], SYMS[pair][0]) && !has_ident(gt->formula[k], SYMS[pair][1]);
        if (ok) break;
    }
    int next = 0;
    for (int k = 0; k < gt->nshown; k++) {
        ad_node *in = node_in(n, gt->slot[k]);
        scalar = scalar && node_size(in) == 1;
        int same = -1;
        for (int j = 0; j < k; j++)
            if (node_in(n, gt->slot[j]) == in) same = j;
        if (same >= 0) snprintf(w->sym[k], sizeof w->sym[k], "%s", w->sym[same]);
        else if (ew && is_symbol_input(in) && pair < NSYMS && next < 2)
            snprintf(w->sym[k], sizeof w->sym[k], "%s", SYMS[pair][next++]);
        else view_ref(in, w->sym[k], sizeof w->sym[k]);
        if (same >= 0) continue;
        /* where the gate is evaluated: each input once, "u = #12 = 1.37", "w0 = 2.00" */
        char r[64], val[160];
        size_t at = strlen(w->at);
        if (node_size(in) == 1) view_num(ad_node_get(in, 0), digits, val, sizeof val);
        else {
            ad_shape s = node_shape(in);
            ad_shape_str(&s, val, sizeof val);
        }
        if (strcmp(w->sym[k], view_ref(in, r, sizeof r)))
            snprintf(w->at + at, sizeof w->at - at, "%s%s = %s%s%s", at ? ", " : "", w->sym[k], r,
                     node_size(in) == 1 ? " = " : " ", val);
        else snprintf(w->at + at, sizeof w->at - at, "%s%s%s%s", at ? ", " : "", r, node_size(in) == 1 ? " = " : " ", val);
    }
    double up = scalar ? ad_node_grad_get(n, 0) : NAN;
    char xs[64] = "", ys[64] = "", nb[64], ub[64], named[320], valued[320];
    if (scalar) {
        view_num(ad_node_get(node_in(n, gt->slot[0]), 0), digits, xs, sizeof xs);
        if (gt->nshown > 1) view_num(ad_node_get(node_in(n, gt->slot[1]), 0), digits, ys, sizeof ys);
    }
    for (int k = 0; k < gt->nshown; k++) {
        const char *f = gt->formula[k];
        /* registry ops speak of their inputs in their own words: their text as it is */
        bool templ = ew && !strncmp(f, "d/d", 3) && (f[3] == 'x' || f[3] == 'y') && !ident_char(f[4]);
        const char *eq = templ ? strstr(f, "] = ") : NULL;
        if (!templ) {
            snprintf(w->local[k], sizeof w->local[k], "%s", f);
        } else {
            const char *sx = w->sym[0], *sy = gt->nshown > 1 ? w->sym[1] : "y";
            const char *wrt = f[3] == 'x' ? sx : sy;
            int used = snprintf(w->local[k], sizeof w->local[k], "\u2202/\u2202%s%s", wrt, f[4] == '[' ? " " : "");
            rewrite(f + 4, sx, sy, false, named, sizeof named);
            snprintf(w->local[k] + used, sizeof w->local[k] - (size_t)used, "%s", named);
        }
        double local = gt->local[k];
        if (isnan(local) || !scalar) continue;
        view_num(local, digits, nb, sizeof nb);
        const char *rhs = eq ? eq + 4 : "";
        size_t at = strlen(w->local[k]);
        if (eq && rewrite(rhs, xs, gt->nshown > 1 ? ys : NULL, true, valued, sizeof valued) &&
            (has_ident(rhs, "x") || has_ident(rhs, "y")) && strcmp(valued, nb))
            at += (size_t)snprintf(w->local[k] + at, sizeof w->local[k] - at, " = %s", valued);
        if (!plain_number(rhs) && at < sizeof w->local[k])
            snprintf(w->local[k] + at, sizeof w->local[k] - at, " = %s", nb);
        /* the product with its factors: a local gradient written as a number stays as written */
        char factor[64];
        if (plain_number(rhs)) snprintf(factor, sizeof factor, rhs[0] == '-' ? "(%s)" : "%s", rhs);
        else view_operand(local, digits, factor, sizeof factor);
        snprintf(w->down[k], sizeof w->down[k], "%s \u00b7 %s = %s", factor, view_operand(up, digits, ub, sizeof ub),
                 view_num(local * up, digits, nb, sizeof nb));
    }
}

char *view_copy_sum(const gview *v, ad_node *n, int digits, char *buf, size_t len)
{
    if (node_size(n) != 1) return view_values(n, true, digits, buf, len);
    size_t at = 0;
    char nb[64];
    buf[0] = 0;
    for (int32_t e = v->cstart[n->id + 1]; e-- > v->cstart[n->id] && at < len;) {
        bool first = e + 1 == v->cstart[n->id + 1];
        double part = view_edge_grad(node_at(v->g, v->cons[e].node), v->cons[e].slot);
        at += (size_t)snprintf(buf + at, len - at, "%s%s", first ? "" : " + ",
                               first ? view_num(part, digits, nb, sizeof nb) : view_operand(part, digits, nb, sizeof nb));
    }
    if (at < len) snprintf(buf + at, len - at, " = %s", view_num(ad_node_grad_get(n, 0), digits, nb, sizeof nb));
    return buf;
}

char *view_expr(ad_node *n, bool numbers, int digits, char *buf, size_t len)
{
    int fold = view_folded(n), shown = n->nin < VIEW_MAX_SHOWN ? n->nin : VIEW_MAX_SHOWN;
    const op_entry *e = op_entry_get(n->op);
    /* negative numbers need parentheses after an operator, not inside a call: exp(-1.00) */
    bool call = !e->infix && !e->prefix;
    char s[2][64];
    for (int k = 0; k < 2 && k < n->nin; k++) {
        ad_node *in = node_in(n, k);
        if (!numbers || k == fold) view_ref(in, s[k], sizeof s[k]);
        else if (call) view_num(ad_node_get(in, 0), digits, s[k], sizeof s[k]);
        else view_operand(ad_node_get(in, 0), digits, s[k], sizeof s[k]);
    }
    const char *infix = e->infix && !strcmp(e->infix, " * ") ? " \u00b7 " : e->infix;
    if (e->prefix && !strcmp(e->prefix, "-")) /* -(1.00), not --1.00 or a bare -1.00 that reads as the result */
        snprintf(buf, len, numbers && s[0][0] != '(' ? "-(%s)" : "-%s", s[0]);
    else if (e->prefix) snprintf(buf, len, "%s%s", e->prefix, s[0]);
    else if (infix) snprintf(buf, len, "%s%s%s", s[0], infix, s[1]);
    else {
        size_t at = (size_t)snprintf(buf, len, "%s(", e->def.name);
        for (int k = 0; k < shown && at < len; k++) {
            char r[64];
            at += (size_t)snprintf(buf + at, len - at, "%s%s", k ? ", " : "", k < 2 ? s[k] : view_ref(node_in(n, k), r, sizeof r));
        }
        if (at < len) snprintf(buf + at, len - at, "%s)", n->nin > shown ? ", ..." : "");
    }
    return buf;
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
