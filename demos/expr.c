/* Recursive descent over the grammar in expr.h, building nodes as it goes. */
#include "expr.h"
#include "ad_io.h"
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A parsed operand: a node, or a number literal not yet made a node, so that 1/x can become
 * the reciprocal gate and -3 a constant rather than neg(3). */
typedef struct {
    ad_node *n;
    bool literal;
    double v;
} operand;

typedef struct {
    ad_graph *g;
    const char *s;
    int pos;
    expr_var *vars;
    int nvars;
    expr_error *err;
    int depth;
    expr_notes *notes; /* NULL: nothing recorded */
} parser;

enum { MAX_DEPTH = 200 };

/* The functions are the library's elementwise ops that need no parameter, found by name in
 * its registry: a new op is a new function here with no edit. */
static int function_id(const char *name, int *arity)
{
    int id = ad_op_find(name), nparam = 0;
    if (id < 0 || !ad_op_is_elementwise(id, arity, &nparam) || nparam > 0) return -1;
    return id;
}

/* The tensor functions, which are not elementwise: their own gates in the trace. */
static const struct {
    const char *name, *args;
    expr_gate_kind kind;
} TENSOR_FUNCTIONS[] = {
    {"sum", "x[,axis]", EXPR_SUM},           {"mean", "x[,axis]", EXPR_MEAN},
    {"softmax", "x[,axis]", EXPR_SOFTMAX},   {"log_softmax", "x[,axis]", EXPR_LOG_SOFTMAX},
    {"ce", "logits,label", EXPR_CE},
};
enum { NTENSOR_FUNCTIONS = sizeof TENSOR_FUNCTIONS / sizeof *TENSOR_FUNCTIONS };

static int tensor_function(const char *name)
{
    for (int i = 0; i < NTENSOR_FUNCTIONS; i++)
        if (strcmp(TENSOR_FUNCTIONS[i].name, name) == 0) return i;
    return -1;
}

bool expr_is_function(const char *name)
{
    int arity;
    return function_id(name, &arity) >= 0 || tensor_function(name) >= 0;
}

void expr_list_functions(FILE *out)
{
    for (int pass = 1; pass <= 2; pass++)
        for (int id = 0; id < ad_op_count(); id++) {
            int arity, nparam;
            if (!ad_op_is_elementwise(id, &arity, &nparam) || nparam > 0 || arity != pass) continue;
            fprintf(out, "%s(%s)\n", ad_op_get(id)->name, arity == 1 ? "x" : "a,b");
        }
    for (int i = 0; i < NTENSOR_FUNCTIONS; i++) fprintf(out, "%s(%s)\n", TENSOR_FUNCTIONS[i].name, TENSOR_FUNCTIONS[i].args);
}

bool expr_is_identifier(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_')) return false;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return false;
    return true;
}

/* Length of the number at s (digits, one '.', an exponent), 0 if none starts there. */
static int number_length(const char *s)
{
    int i = 0, digits = 0;
    while (isdigit((unsigned char)s[i])) i++, digits++;
    if (s[i] == '.') {
        i++;
        while (isdigit((unsigned char)s[i])) i++, digits++;
    }
    if (!digits) return 0;
    if (s[i] == 'e' || s[i] == 'E') {
        int j = i + 1;
        if (s[j] == '+' || s[j] == '-') j++;
        if (!isdigit((unsigned char)s[j])) return -1; /* "1e" or "1e+" */
        while (isdigit((unsigned char)s[j])) j++;
        i = j;
    }
    return i;
}

/* The value of the number that starts at s (number_length has checked it), or false when it
 * is too large for a double: strtod would round it to infinity, which the user did not write. */
static bool number_value(const char *s, double *out)
{
    double v = strtod(s, NULL);
    if (isinf(v)) return false;
    *out = v;
    return true;
}

bool expr_parse_number(const char *s, double *out)
{
    int sign = 1;
    if (*s == '-' || *s == '+') sign = *s++ == '-' ? -1 : 1;
    int len = number_length(s);
    double v;
    if (len <= 0 || s[len] != 0 || !number_value(s, &v)) return false;
    *out = sign * v;
    return true;
}

static void fail(parser *p, int at, const char *fmt, ...)
{
    if (p->err->msg[0]) return;
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(p->err->msg, sizeof p->err->msg, NULL, NULL, fmt, ap);
    va_end(ap);
    p->err->column = at + 1;
}

static void skip_space(parser *p)
{
    while (isspace((unsigned char)p->s[p->pos])) p->pos++;
}

static bool accept(parser *p, char c)
{
    skip_space(p);
    if (p->s[p->pos] != c) return false;
    p->pos++;
    return true;
}

static bool expect(parser *p, char c)
{
    if (accept(p, c)) return true;
    if (p->s[p->pos]) fail(p, p->pos, "expected '%c'", c);
    else fail(p, p->pos, "expected '%c' before the end of the formula", c);
    return false;
}

static ad_node *node_of(parser *p, operand o)
{
    if (!o.literal) return o.n;
    return ad_const_scalar(p->g, o.v);
}

static operand node(ad_node *n) { return (operand){n, false, 0}; }

static const operand BAD = {NULL, false, 0};

static bool ok(const operand *o) { return o->n || o->literal; }

/* The node an op made, or a failure at column `at` (the operator's) with the graph's message,
 * which names the op and the shapes. */
static operand made(parser *p, ad_node *n, int at)
{
    if (n) return node(n);
    fail(p, at, "%s", ad_error(p->g) ? ad_error(p->g) : "could not build the graph");
    return BAD;
}

static bool note(parser *p, expr_gate gt)
{
    expr_notes *nt = p->notes;
    if (!nt) return true;
    if (nt->ngates == nt->cap) {
        int cap = nt->cap ? 2 * nt->cap : 16;
        expr_gate *m = realloc(nt->gate, sizeof *m * (size_t)cap);
        if (!m) return false;
        nt->gate = m, nt->cap = cap;
    }
    nt->gate[nt->ngates++] = gt;
    return true;
}

/* A mention of variable i: its node, or with notes->untie a leaf of its own. */
static operand mention(parser *p, int i, int at)
{
    expr_notes *nt = p->notes;
    ad_node *v = p->vars[i].node;
    p->vars[i].used = true;
    if (!nt || !nt->untie) return node(v);
    if (nt->nleaves == nt->leafcap) {
        int cap = nt->leafcap ? 2 * nt->leafcap : 16;
        ad_node **l = realloc(nt->leaf, sizeof *l * (size_t)cap);
        if (l) nt->leaf = l;
        int *w = realloc(nt->leaf_var, sizeof *w * (size_t)cap);
        if (w) nt->leaf_var = w;
        if (!l || !w) {
            fail(p, at, "out of memory");
            return BAD;
        }
        nt->leafcap = cap;
    }
    ad_shape s = ad_node_shape(v);
    ad_node *c = s.rank == 0 ? ad_var(p->g, p->vars[i].name, ad_value(v))
                             : ad_var_array(p->g, p->vars[i].name, AD_F64, s, ad_node_data(v));
    if (!c) return made(p, c, at);
    nt->leaf[nt->nleaves] = c;
    nt->leaf_var[nt->nleaves++] = i;
    return node(c);
}

static operand expression(parser *p);

/* a @ b with NumPy's rules for 1-D operands: a vector on the left is a row [1,k], on the right
 * a column [k,1], and the added axis is dropped from the result (so [k] @ [k] is a scalar). */
static operand matmul(parser *p, ad_node *a, ad_node *b, int at)
{
    ad_shape sa = ad_node_shape(a), sb = ad_node_shape(b);
    char ba[96], bb[96];
    if (sa.rank == 0 || sb.rank == 0) {
        fail(p, at, "matmul: %s @ %s: @ takes vectors and matrices; scale by a number with *",
             ad_shape_str(&sa, ba, sizeof ba), ad_shape_str(&sb, bb, sizeof bb));
        return BAD;
    }
    if (sa.rank == 1 && sb.rank == 1 && sa.dim[0] != sb.dim[0]) {
        fail(p, at, "matmul: %s @ %s: the vectors' lengths %lld and %lld differ", ad_shape_str(&sa, ba, sizeof ba),
             ad_shape_str(&sb, bb, sizeof bb), (long long)sa.dim[0], (long long)sb.dim[0]);
        return BAD;
    }
    if (sa.dim[sa.rank - 1] != sb.dim[sb.rank == 1 ? 0 : sb.rank - 2]) {
        fail(p, at, "matmul: %s @ %s: inner dimensions %lld and %lld differ", ad_shape_str(&sa, ba, sizeof ba),
             ad_shape_str(&sb, bb, sizeof bb), (long long)sa.dim[sa.rank - 1],
             (long long)sb.dim[sb.rank == 1 ? 0 : sb.rank - 2]);
        return BAD;
    }
    uint32_t first = ad_graph_num_nodes(p->g);
    ad_node *A = sa.rank == 1 ? ad_reshape(p->g, a, AD_SHAPE(1, sa.dim[0])) : a;
    ad_node *B = sb.rank == 1 ? ad_reshape(p->g, b, AD_SHAPE(sb.dim[0], 1)) : b;
    ad_node *m = ad_matmul(p->g, A, B);
    if (m && (sa.rank == 1 || sb.rank == 1)) {
        ad_shape s = ad_node_shape(m), t = {0, {0}};
        for (int d = 0; d < s.rank; d++)
            if (!(sb.rank == 1 && d == s.rank - 1) && !(sa.rank == 1 && d == s.rank - 2)) t.dim[t.rank++] = s.dim[d];
        m = ad_reshape(p->g, m, t);
    }
    operand r = made(p, m, at);
    if (ok(&r) && !note(p, (expr_gate){EXPR_MATMUL, m, {a, b}, first, EXPR_ALL_AXES, 0})) fail(p, at, "out of memory");
    return r;
}

/* An axis argument: a whole number written in the formula. */
static bool axis_arg(parser *p, operand o, int at, int *axis)
{
    if (!o.literal || o.v != floor(o.v) || fabs(o.v) > AD_MAX_RANK) {
        fail(p, at, "an axis is a whole number written in the formula (0, 1, -1, ...)");
        return false;
    }
    *axis = (int)o.v;
    return true;
}

/* ce(logits, label): PyTorch's cross_entropy, its labels read now from a number or a leaf. */
static operand cross_entropy(parser *p, operand lo, operand la, int at, int at_label)
{
    ad_node *z = node_of(p, lo);
    if (!z) return made(p, z, at);
    ad_shape s = ad_node_shape(z);
    char bs[96];
    if (s.rank != 1 && s.rank != 2) {
        fail(p, at, "ce: logits %s: give one row of class scores [C] or a batch [N,C]", ad_shape_str(&s, bs, sizeof bs));
        return BAD;
    }
    int64_t n = s.rank == 1 ? 1 : s.dim[0];
    ad_node *ln = la.literal ? NULL : la.n;
    if (ln && ad_node_num_inputs(ln) != 0) {
        fail(p, at_label, "ce: the label is a class number or a variable holding them, not a formula");
        return BAD;
    }
    int64_t have = ln ? ad_node_size(ln) : 1;
    if (have != n || (ln && s.rank == 1 && ad_node_shape(ln).rank != 0)) {
        fail(p, at_label, "ce: logits %s take %s, not %lld", ad_shape_str(&s, bs, sizeof bs),
             s.rank == 1 ? "one label" : "one label per row", (long long)have);
        return BAD;
    }
    int32_t *labels = malloc(sizeof *labels * (size_t)n);
    if (!labels) {
        fail(p, at, "out of memory");
        return BAD;
    }
    for (int64_t i = 0; i < n; i++) {
        double v = ln ? ad_node_get(ln, i) : la.v;
        if (v != floor(v) || v < 0 || v >= (double)s.dim[s.rank - 1]) {
            fail(p, at_label, "ce: label %g is not a class of logits %s (0 to %lld)", v, ad_shape_str(&s, bs, sizeof bs),
                 (long long)s.dim[s.rank - 1] - 1);
            free(labels);
            return BAD;
        }
        labels[i] = (int32_t)v;
    }
    int label = labels[0];
    uint32_t first = ad_graph_num_nodes(p->g);
    ad_node *z2 = s.rank == 1 ? ad_reshape(p->g, z, AD_SHAPE(1, s.dim[0])) : z;
    ad_node *c = ad_cross_entropy(p->g, z2, labels);
    free(labels);
    operand r = made(p, c, at);
    if (ok(&r) && !note(p, (expr_gate){EXPR_CE, c, {z, ln}, first, EXPR_ALL_AXES, label})) fail(p, at, "out of memory");
    return r;
}

/* sum, mean, softmax, log_softmax (axis optional) and ce, after their name. */
static operand tensor_call(parser *p, int fn, int at)
{
    if (!expect(p, '(')) return BAD;
    operand a = expression(p);
    if (!ok(&a)) return BAD;
    operand b = BAD;
    bool two = false;
    int at_b = 0;
    if (accept(p, ',')) {
        skip_space(p);
        at_b = p->pos;
        b = expression(p);
        if (!ok(&b)) return BAD;
        two = true;
    }
    if (!expect(p, ')')) return BAD;
    expr_gate_kind kind = TENSOR_FUNCTIONS[fn].kind;
    if (kind == EXPR_CE) {
        if (!two) {
            fail(p, p->pos - 1, "ce takes the logits and the label: ce(z, 2)");
            return BAD;
        }
        return cross_entropy(p, a, b, at, at_b);
    }
    int axis = kind == EXPR_SOFTMAX || kind == EXPR_LOG_SOFTMAX ? -1 : EXPR_ALL_AXES;
    if (two && !axis_arg(p, b, at_b, &axis)) return BAD;
    ad_node *x = node_of(p, a);
    uint32_t first = ad_graph_num_nodes(p->g);
    ad_node *y = NULL;
    switch (kind) {
    case EXPR_SUM: y = axis == EXPR_ALL_AXES ? ad_sum(p->g, x) : ad_sum_axis(p->g, x, axis, false); break;
    case EXPR_MEAN: y = axis == EXPR_ALL_AXES ? ad_mean(p->g, x) : ad_mean_axis(p->g, x, axis, false); break;
    case EXPR_SOFTMAX: y = ad_softmax(p->g, x, axis); break;
    default: y = ad_log_softmax(p->g, x, axis); break;
    }
    operand r = made(p, y, at);
    if (ok(&r) && !note(p, (expr_gate){kind, y, {x, NULL}, first, axis, 0})) fail(p, at, "out of memory");
    return r;
}

/* The constants a formula may name without giving them. */
static bool constant(const char *name, double *v)
{
    if (strcmp(name, "pi") == 0) *v = 3.14159265358979323846;
    else if (strcmp(name, "e") == 0) *v = exp(1.0);
    else return false;
    return true;
}

/* primary := number | identifier | function '(' args ')' | '(' expression ')' */
static operand primary(parser *p)
{
    skip_space(p);
    const char *c = p->s + p->pos;
    int start = p->pos;
    if (isdigit((unsigned char)*c) || (*c == '.' && isdigit((unsigned char)c[1]))) {
        int len = number_length(c);
        double v = 0;
        if (len <= 0 || isalnum((unsigned char)c[len]) || c[len] == '.' || c[len] == '_' ||
            !number_value(c, &v)) {
            int end = len > 0 ? len : 1;
            while (isalnum((unsigned char)c[end]) || c[end] == '.' || c[end] == '_') end++;
            fail(p, start, "malformed number '%.*s'", end, c);
            return BAD;
        }
        p->pos += len;
        return (operand){NULL, true, v};
    }
    if (isalpha((unsigned char)*c) || *c == '_') {
        int len = 0;
        while (isalnum((unsigned char)c[len]) || c[len] == '_') len++;
        char name[64];
        if (len >= (int)sizeof name) {
            fail(p, start, "name too long");
            return BAD;
        }
        memcpy(name, c, (size_t)len);
        name[len] = 0;
        p->pos += len;
        int tf = tensor_function(name);
        if (tf >= 0) return tensor_call(p, tf, start);
        int arity, fn = function_id(name, &arity);
        if (fn >= 0) {
            if (!expect(p, '(')) return BAD;
            operand a = expression(p);
            if (!ok(&a)) return BAD;
            operand b = a;
            if (arity == 2) {
                if (!expect(p, ',')) return BAD;
                b = expression(p);
                if (!ok(&b)) return BAD;
            }
            if (!expect(p, ')')) return BAD;
            ad_node *in[2] = {node_of(p, a), arity == 2 ? node_of(p, b) : NULL};
            return made(p, ad_apply(p->g, fn, in, arity, NULL, 0), start);
        }
        skip_space(p);
        if (p->s[p->pos] == '(') {
            fail(p, start, "unknown function '%s'", name);
            return BAD;
        }
        for (int i = 0; i < p->nvars; i++)
            if (strcmp(p->vars[i].name, name) == 0) return mention(p, i, start);
        double k;
        if (constant(name, &k)) return (operand){NULL, true, k};
        fail(p, start, "variable '%s' has no value (give it one: %s=...)", name, name);
        return BAD;
    }
    if (*c == '(') {
        p->pos++;
        operand e = expression(p);
        if (!ok(&e)) return BAD;
        if (!expect(p, ')')) return BAD;
        return e;
    }
    if (*c == '*' && start > 0 && p->s[start - 1] == '*')
        fail(p, start, "unexpected '*': a power is written with ^ (x^2, not x**2)");
    else if (*c) fail(p, start, "unexpected '%c'", *c);
    else fail(p, start, "expected a number, a name or '(' before the end of the formula");
    return BAD;
}

static operand unary(parser *p);

/* power := primary ('^' unary)?   -- right-associative, and binds tighter than unary minus */
static operand power(parser *p)
{
    operand base = primary(p);
    skip_space(p);
    int at = p->pos;
    if (!ok(&base) || !accept(p, '^')) return base;
    operand ex = unary(p);
    if (!ok(&ex)) return ex;
    return made(p, ad_pow(p->g, node_of(p, base), node_of(p, ex)), at);
}

/* unary := '-' unary | '+' unary | power */
static operand unary(parser *p)
{
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->pos, "formula nested too deeply");
        return BAD;
    }
    operand r;
    skip_space(p);
    int at = p->pos;
    if (accept(p, '-')) {
        r = unary(p);
        if (ok(&r)) r = r.literal ? (operand){NULL, true, -r.v} : made(p, ad_neg(p->g, r.n), at);
    } else if (accept(p, '+')) {
        r = unary(p);
    } else {
        r = power(p);
    }
    p->depth--;
    return r;
}

/* term := unary (('*' | '/' | '@') unary)*   -- 1/x is the reciprocal gate */
static operand term(parser *p)
{
    operand a = unary(p);
    while (ok(&a)) {
        skip_space(p);
        int at = p->pos;
        char op;
        if (accept(p, '*')) op = '*';
        else if (accept(p, '/')) op = '/';
        else if (accept(p, '@')) op = '@';
        else break;
        operand b = unary(p);
        if (!ok(&b)) return b;
        if (op == '@') a = matmul(p, node_of(p, a), node_of(p, b), at);
        else if (op == '/' && a.literal && a.v == 1 && !b.literal) a = made(p, ad_recip(p->g, b.n), at);
        else if (op == '*') a = made(p, ad_mul(p->g, node_of(p, a), node_of(p, b)), at);
        else a = made(p, ad_div(p->g, node_of(p, a), node_of(p, b)), at);
    }
    return a;
}

/* expression := term (('+' | '-') term)* */
static operand expression(parser *p)
{
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->pos, "formula nested too deeply");
        return BAD;
    }
    operand a = term(p);
    while (ok(&a)) {
        skip_space(p);
        int at = p->pos;
        char op;
        if (accept(p, '+')) op = '+';
        else if (accept(p, '-')) op = '-';
        else break;
        operand b = term(p);
        if (!ok(&b)) {
            a = b;
            break;
        }
        ad_node *x = node_of(p, a), *y = node_of(p, b);
        a = made(p, op == '+' ? ad_add(p->g, x, y) : ad_sub(p->g, x, y), at);
    }
    p->depth--;
    return a;
}

ad_node *expr_build_traced(ad_graph *g, const char *text, expr_var *vars, int nvars, expr_notes *notes,
                           expr_error *err)
{
    memset(err, 0, sizeof *err);
    parser p = {g, text, 0, vars, nvars, err, 0, notes};
    operand r = expression(&p);
    skip_space(&p);
    if (ok(&r) && text[p.pos]) {
        if (text[p.pos] == ')') fail(&p, p.pos, "unmatched ')'");
        else fail(&p, p.pos, "unexpected '%c'", text[p.pos]);
    }
    if (err->msg[0]) return NULL;
    ad_node *root = node_of(&p, r);
    if (!root) {
        snprintf(err->msg, sizeof err->msg, "%s", ad_error(g) ? ad_error(g) : "could not build the graph");
        err->column = 0;
    }
    return root;
}

ad_node *expr_build(ad_graph *g, const char *text, expr_var *vars, int nvars, expr_error *err)
{
    return expr_build_traced(g, text, vars, nvars, NULL, err);
}

void expr_notes_free(expr_notes *notes)
{
    free(notes->gate);
    free(notes->leaf);
    free(notes->leaf_var);
    *notes = (expr_notes){.untie = notes->untie};
}

const expr_gate *expr_gate_of(const expr_notes *notes, const ad_node *n)
{
    for (int i = 0; notes && i < notes->ngates; i++)
        if (notes->gate[i].node == n) return &notes->gate[i];
    return NULL;
}

/* ---- tensor values in NumPy's nesting ---- */

typedef struct {
    const char *s;
    int pos;
    int rank;            /* depth of the numbers, -1 until the first */
    int64_t dim[AD_MAX_RANK];
    double *data;
    int64_t n, cap;
    char *msg;
    size_t msglen;
} value_parser;

static void vskip(value_parser *v)
{
    while (isspace((unsigned char)v->s[v->pos])) v->pos++;
}

static bool vfail(value_parser *v, const char *why)
{
    if (!v->msg[0]) snprintf(v->msg, v->msglen, "%s at character %d", why, v->pos + 1);
    return false;
}

static bool vnumber(value_parser *v, int depth)
{
    if (v->rank < 0) v->rank = depth;
    if (depth != v->rank) return vfail(v, "a number where the nesting wants a list (ragged nesting)");
    const char *c = v->s + v->pos;
    int sign = 0;
    if (*c == '-' || *c == '+') sign = 1;
    int len = number_length(c + sign);
    double x;
    if (len <= 0 || !number_value(c + sign, &x)) return vfail(v, "malformed number");
    if (v->n == v->cap) {
        int64_t cap = v->cap ? 2 * v->cap : 16;
        double *d = realloc(v->data, sizeof *d * (size_t)cap);
        if (!d) return vfail(v, "out of memory");
        v->data = d, v->cap = cap;
    }
    v->data[v->n++] = *c == '-' ? -x : x;
    v->pos += sign + len;
    return true;
}

static bool vlist(value_parser *v, int depth)
{
    if (depth >= AD_MAX_RANK) return vfail(v, "nested deeper than the largest rank, 6,");
    if (v->rank >= 0 && depth >= v->rank) return vfail(v, "a list where the nesting wants a number (ragged nesting)");
    v->pos++; /* '[' */
    int64_t count = 0;
    vskip(v);
    if (v->s[v->pos] == ']') return vfail(v, "an empty list");
    for (;;) {
        vskip(v);
        if (v->s[v->pos] == '[') {
            if (!vlist(v, depth + 1)) return false;
        } else if (!vnumber(v, depth + 1)) {
            return false;
        }
        count++;
        vskip(v);
        if (v->s[v->pos] == ',') {
            v->pos++;
            continue;
        }
        if (v->s[v->pos] == ']') break;
        return vfail(v, v->s[v->pos] ? "expected ',' or ']'" : "expected ']' before the end");
    }
    v->pos++;
    if (v->dim[depth] == 0) v->dim[depth] = count;
    else if (v->dim[depth] != count) return vfail(v, "rows of different lengths (ragged nesting)");
    return true;
}

double *expr_parse_value(const char *s, ad_shape *shape, char *msg, size_t msglen)
{
    value_parser v = {.s = s, .rank = -1, .msg = msg, .msglen = msglen};
    msg[0] = 0;
    vskip(&v);
    bool good = v.s[v.pos] == '[' ? vlist(&v, 0) : vnumber(&v, 0);
    vskip(&v);
    if (good && v.s[v.pos]) good = vfail(&v, "unexpected text after the value");
    if (!good) {
        free(v.data);
        return NULL;
    }
    shape->rank = v.rank;
    for (int d = 0; d < v.rank; d++) shape->dim[d] = v.dim[d];
    return v.data;
}
