/* A gate's backward rule in matrix form, with the shapes: one text for the CLI's walk
 * (demos/walk.c) and the HTML stepper (html.c), so that both say the same thing. */
#include "internal.h"
#include <ctype.h>
#include <stdarg.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len, at;
} sink;

static void put(sink *s, const char *fmt, ...)
{
    if (s->at >= s->len) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(s->buf + s->at, s->len - s->at, fmt, ap);
    va_end(ap);
    if (k > 0) s->at = s->at + (size_t)k < s->len ? s->at + (size_t)k : s->len - 1;
}

/* The registry's derivative "d/dx[exp(x)] = exp(x)" as its right side in u: "exp(u)". */
static void rule_in_u(const char *local, char *buf, size_t len)
{
    const char *eq = local ? strstr(local, "] = ") : NULL;
    const char *r = eq ? eq + 4 : "f'(u)";
    size_t k = 0;
    for (size_t i = 0; r[i] && k + 1 < len; i++) {
        bool alone = (i == 0 || !(isalnum((unsigned char)r[i - 1]) || r[i - 1] == '_')) &&
                     !(isalnum((unsigned char)r[i + 1]) || r[i + 1] == '_');
        buf[k++] = r[i] == 'x' && alone ? 'u' : r[i];
    }
    buf[k] = 0;
}

/* " summed over the broadcast axes to [3]" when an input of shape b was broadcast to a. */
static void broadcast_note(char *buf, size_t len, const ad_shape *a, const ad_shape *b)
{
    bool same = a->rank == b->rank;
    for (int d = 0; same && d < a->rank; d++) same = a->dim[d] == b->dim[d];
    char sb[96];
    if (same) buf[0] = 0;
    else snprintf(buf, len, " summed over the broadcast axes to %s", ad_shape_str(b, sb, sizeof sb));
}

/* The traces' symbol of an op ("+", "1/x"), else its name. */
static const char *symbol(const char *op)
{
    static const char *const sym[][2] = {{"add", "+"}, {"sub", "-"}, {"mul", "*"}, {"div", "/"},
                                         {"pow", "^"}, {"recip", "1/x"}, {"neg", "neg"}};
    for (size_t i = 0; i < sizeof sym / sizeof *sym; i++)
        if (strcmp(op, sym[i][0]) == 0) return sym[i][1];
    return op;
}

char *ad_rule_text(char *buf, size_t len, const char *op, int nin, const char *const ref[], const ad_shape in[],
                   const bool needs_grad[], const ad_shape *out)
{
    if (!buf || !len) return buf;
    buf[0] = 0;
    if (!op || nin < 0 || (nin > 0 && (!ref || !in || !needs_grad)) || !out) return buf;
    sink s = {buf, len, 0};
    char s0[96] = "", s1[96] = "", d0[96] = "", d1[96] = "", b0[128], b1[128];
    const char *a = nin > 0 ? ref[0] : "", *b = nin > 1 ? ref[1] : "";
    if (nin > 0) ad_shape_str(&in[0], s0, sizeof s0), snprintf(d0, sizeof d0, "d%s", a);
    if (nin > 1) ad_shape_str(&in[1], s1, sizeof s1), snprintf(d1, sizeof d1, "d%s", b);
    if (strcmp(op, "matmul") == 0 && nin == 2) {
        int ra = in[0].rank, rb = in[1].rank;
        put(&s, "%s %s@%s: downstream ", ra == 1 && rb == 1 ? "dot" : "matmul", s0, s1);
        if (ra == 1 && rb == 1) put(&s, "%s = upstream · %s %s; %s = upstream · %s %s", d0, b, s0, d1, a, s1);
        else {
            if (rb == 1) put(&s, "%s = upstream ⊗ %s %s", d0, b, s0);
            else put(&s, "%s = upstream · %sᵀ %s", d0, b, s0);
            if (ra == 1) put(&s, "; %s = %s ⊗ upstream %s", d1, a, s1);
            else put(&s, "; %s = %sᵀ · upstream %s", d1, a, s1);
        }
        if (ra == 3 || rb == 3) put(&s, " (for each batch)");
        return buf;
    }
    if ((strcmp(op, "sum") == 0 || strcmp(op, "mean") == 0) && nin == 1) {
        int64_t n = ad_shape_size(&in[0]), m = ad_shape_size(out);
        char by[48] = "";
        if (op[0] == 'm') snprintf(by, sizeof by, " / %lld", (long long)(n / (m > 0 ? m : 1)));
        put(&s, "%s: downstream = upstream%s broadcast to %s", op, by, s0);
        return buf;
    }
    if (strcmp(op, "reshape") == 0 && nin == 1) {
        put(&s, "reshape: downstream = upstream reshaped to %s", s0);
        return buf;
    }
    if (nin == 1) {
        char r[200];
        int id = ad_op_find(op);
        rule_in_u(id >= 0 && ad_op_get(id) ? ad_op_get(id)->local_grad : NULL, r, sizeof r);
        bool wrap = strchr(r, ' ') != NULL;
        put(&s, "%s: downstream = upstream ⊙ %s%s%s, u = %s %s", symbol(op), wrap ? "(" : "", r, wrap ? ")" : "", a, s0);
        return buf;
    }
    if (nin != 2) {
        put(&s, "%s: no rule to show", op);
        return buf;
    }
    broadcast_note(b0, sizeof b0, out, &in[0]);
    broadcast_note(b1, sizeof b1, out, &in[1]);
    const char *r0, *r1;
    char t0[200], t1[200];
    if (strcmp(op, "add") == 0) r0 = "upstream", r1 = "upstream";
    else if (strcmp(op, "sub") == 0) r0 = "upstream", r1 = "−upstream";
    else if (strcmp(op, "mul") == 0) {
        snprintf(t0, sizeof t0, "upstream ⊙ %s", b), snprintf(t1, sizeof t1, "upstream ⊙ %s", a);
        r0 = t0, r1 = t1;
    } else if (strcmp(op, "div") == 0) {
        snprintf(t0, sizeof t0, "upstream / %s", b), snprintf(t1, sizeof t1, "−upstream ⊙ %s / %s²", a, b);
        r0 = t0, r1 = t1;
    } else if (strcmp(op, "pow") == 0) {
        snprintf(t0, sizeof t0, "upstream ⊙ %s·%s^(%s−1)", b, a, b), snprintf(t1, sizeof t1, "upstream ⊙ %s^%s·log(%s)", a, b, a);
        r0 = t0, r1 = t1;
    } else {
        snprintf(t0, sizeof t0, "upstream ⊙ ∂/∂u %s(u, v)", op), snprintf(t1, sizeof t1, "upstream ⊙ ∂/∂v %s(u, v)", op);
        r0 = t0, r1 = t1;
    }
    const char *l = symbol(op);
    if (isalpha((unsigned char)l[0])) put(&s, "%s %s, %s", l, s0, s1);
    else put(&s, "%s %s %s", s0, l, s1);
    put(&s, ": downstream");
    if (needs_grad[0]) put(&s, " %s = %s%s %s", d0, r0, b0, s0);
    if (needs_grad[1]) put(&s, "%s %s = %s%s %s", needs_grad[0] ? ";" : "", d1, r1, b1, s1);
    return buf;
}
