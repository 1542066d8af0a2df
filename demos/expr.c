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

bool expr_is_function(const char *name)
{
    int arity;
    return function_id(name, &arity) >= 0;
}

void expr_list_functions(FILE *out)
{
    for (int pass = 1; pass <= 2; pass++)
        for (int id = 0; id < ad_op_count(); id++) {
            int arity, nparam;
            if (!ad_op_is_elementwise(id, &arity, &nparam) || nparam > 0 || arity != pass) continue;
            fprintf(out, "%s(%s)\n", ad_op_get(id)->name, arity == 1 ? "x" : "a,b");
        }
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

static operand expression(parser *p);

/* primary := number | identifier | function '(' args ')' | '(' expression ')' */
static operand primary(parser *p)
{
    operand bad = {NULL, false, 0};
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
            return bad;
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
            return bad;
        }
        memcpy(name, c, (size_t)len);
        name[len] = 0;
        p->pos += len;
        int arity, fn = function_id(name, &arity);
        if (fn >= 0) {
            if (!expect(p, '(')) return bad;
            operand a = expression(p);
            if (!a.n && !a.literal) return bad;
            operand b = a;
            if (arity == 2) {
                if (!expect(p, ',')) return bad;
                b = expression(p);
                if (!b.n && !b.literal) return bad;
            }
            if (!expect(p, ')')) return bad;
            ad_node *in[2] = {node_of(p, a), arity == 2 ? node_of(p, b) : NULL};
            return node(ad_apply(p->g, fn, in, arity, NULL, 0));
        }
        skip_space(p);
        if (p->s[p->pos] == '(') {
            fail(p, start, "unknown function '%s'", name);
            return bad;
        }
        for (int i = 0; i < p->nvars; i++)
            if (strcmp(p->vars[i].name, name) == 0) {
                p->vars[i].used = true;
                return node(p->vars[i].node);
            }
        fail(p, start, "variable '%s' has no value (give it one: %s=...)", name, name);
        return bad;
    }
    if (*c == '(') {
        p->pos++;
        operand e = expression(p);
        if (!e.n && !e.literal) return bad;
        if (!expect(p, ')')) return bad;
        return e;
    }
    if (*c) fail(p, start, "unexpected '%c'", *c);
    else fail(p, start, "expected a number, a name or '(' before the end of the formula");
    return bad;
}

static bool ok(const operand *o) { return o->n || o->literal; }

static operand unary(parser *p);

/* power := primary ('^' unary)?   -- right-associative, and binds tighter than unary minus */
static operand power(parser *p)
{
    operand base = primary(p);
    if (!ok(&base) || !accept(p, '^')) return base;
    operand ex = unary(p);
    if (!ok(&ex)) return ex;
    return node(ad_pow(p->g, node_of(p, base), node_of(p, ex)));
}

/* unary := '-' unary | '+' unary | power */
static operand unary(parser *p)
{
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->pos, "formula nested too deeply");
        return (operand){NULL, false, 0};
    }
    operand r;
    if (accept(p, '-')) {
        r = unary(p);
        if (ok(&r)) r = r.literal ? (operand){NULL, true, -r.v} : node(ad_neg(p->g, r.n));
    } else if (accept(p, '+')) {
        r = unary(p);
    } else {
        r = power(p);
    }
    p->depth--;
    return r;
}

/* term := unary (('*' | '/') unary)*   -- 1/x is the reciprocal gate */
static operand term(parser *p)
{
    operand a = unary(p);
    while (ok(&a)) {
        char op;
        if (accept(p, '*')) op = '*';
        else if (accept(p, '/')) op = '/';
        else break;
        operand b = unary(p);
        if (!ok(&b)) return b;
        if (op == '/' && a.literal && a.v == 1 && !b.literal) a = node(ad_recip(p->g, b.n));
        else if (op == '*') a = node(ad_mul(p->g, node_of(p, a), node_of(p, b)));
        else a = node(ad_div(p->g, node_of(p, a), node_of(p, b)));
    }
    return a;
}

/* expression := term (('+' | '-') term)* */
static operand expression(parser *p)
{
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->pos, "formula nested too deeply");
        return (operand){NULL, false, 0};
    }
    operand a = term(p);
    while (ok(&a)) {
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
        a = node(op == '+' ? ad_add(p->g, x, y) : ad_sub(p->g, x, y));
    }
    p->depth--;
    return a;
}

ad_node *expr_build(ad_graph *g, const char *text, expr_var *vars, int nvars, expr_error *err)
{
    memset(err, 0, sizeof *err);
    parser p = {g, text, 0, vars, nvars, err, 0};
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
