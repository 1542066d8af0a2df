/* The CLI's numbers and its walk in matrix form (walk.h). */
#include "walk.h"
#include "ad_op.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Decimals that show two significant digits of x, which is nonzero and below 0.01. */
static int small_decimals(double x) { return 1 - (int)floor(log10(fabs(x))); }

const char *walk_num(char *buf, size_t len, double x, int digits)
{
    if (isnan(x)) snprintf(buf, len, "nan");
    else if (isinf(x)) snprintf(buf, len, x > 0 ? "inf" : "-inf");
    else if (digits == -1) snprintf(buf, len, "%.17g", x);
    else if (digits == DIGITS_AUTO && x != 0 && fabs(x) < 0.005) {
        int d = small_decimals(x);
        if (d <= 8) snprintf(buf, len, "%.*f", d, x);
        else snprintf(buf, len, "%.1e", x);
    } else {
        snprintf(buf, len, "%.*f", digits < 0 ? 2 : digits, x);
        /* "-0.00" says nothing a student can use, as the library's traces print it */
        if (buf[0] == '-' && strspn(buf + 1, "0.") == strlen(buf + 1)) memmove(buf, buf + 1, strlen(buf));
    }
    return buf;
}

static int need(double x, int d)
{
    if (!isfinite(x) || x == 0 || fabs(x) >= 0.005) return d;
    int k = small_decimals(x);
    return k > d ? k : d;
}

int walk_library_digits(const ad_graph *g, ad_node *root, int digits)
{
    if (digits != DIGITS_AUTO) return digits;
    int d = 2;
    uint32_t last = ad_node_id(root);
    for (uint32_t i = 0; i <= last; i++) {
        ad_node *n = ad_graph_node(g, i);
        double gr = ad_node_grad_get(n, 0);
        for (int64_t j = 0; j < ad_node_size(n); j++) {
            d = need(ad_node_get(n, j), d);
            d = need(ad_node_grad_get(n, j), d);
        }
        for (int k = 0; k < ad_node_num_inputs(n); k++) {
            double l = ad_node_local_grad(n, k);
            if (!isnan(l)) d = need(l, need(l * gr, d));
        }
    }
    return d > 17 ? -1 : d;
}

/* ---- tensors ---- */

static void put_axis(FILE *out, const double *x, ad_shape s, int axis, int64_t at, bool whole, int digits)
{
    char nb[64];
    if (axis == s.rank) {
        fputs(walk_num(nb, sizeof nb, x[at], digits), out);
        return;
    }
    int64_t stride = 1;
    for (int d = axis + 1; d < s.rank; d++) stride *= s.dim[d];
    fputc('[', out);
    for (int64_t i = 0; i < s.dim[axis]; i++) {
        if (!whole && s.dim[axis] > 6 && i == 3) {
            fputs(", ...", out);
            i = s.dim[axis] - 3;
        }
        if (i) fputs(", ", out);
        put_axis(out, x, s, axis + 1, at + i * stride, whole, digits);
    }
    fputc(']', out);
}

void walk_tensor(FILE *out, const double *x, ad_shape s, int digits)
{
    int64_t size = ad_shape_size(&s);
    char nb[64];
    if (s.rank == 0) {
        fputs(walk_num(nb, sizeof nb, x[0], digits), out);
        return;
    }
    bool whole = size <= 48;
    put_axis(out, x, s, 0, 0, whole, digits);
}

void walk_node(FILE *out, ad_node *n, bool grad, int digits)
{
    int64_t size = ad_node_size(n);
    double *x = malloc(sizeof *x * (size_t)(size ? size : 1));
    if (!x) {
        fputs("[...]", out);
        return;
    }
    for (int64_t i = 0; i < size; i++) x[i] = grad ? ad_node_grad_get(n, i) : ad_node_get(n, i);
    walk_tensor(out, x, ad_node_shape(n), digits);
    free(x);
}

/* ---- the walk ---- */

typedef struct {
    ad_graph *g;
    const expr_notes *notes;
    uint32_t n;
    uint8_t *live, *hidden;
    char (*ref)[72];
    int digits;
} walker;

static const char *shape(const ad_node *n, char *buf, size_t len)
{
    ad_shape s = ad_node_shape(n);
    return ad_shape_str(&s, buf, len);
}

/* The gate's symbol, one name in every medium: the traces' ("+", "1/x", "exp", ...). */
static const char *gate_label(const walker *w, ad_node *n)
{
    const expr_gate *gt = expr_gate_of(w->notes, n);
    if (gt) {
        static const char *const names[] = {"matmul", "sum", "mean", "softmax", "log_softmax", "ce"};
        return names[gt->kind];
    }
    const char *op = ad_node_op_name(n);
    static const char *const sym[][2] = {{"add", "+"}, {"sub", "-"}, {"mul", "*"}, {"div", "/"},
                                         {"pow", "^"}, {"recip", "1/x"}, {"neg", "neg"}};
    for (size_t i = 0; i < sizeof sym / sizeof *sym; i++)
        if (strcmp(op, sym[i][0]) == 0) return sym[i][1];
    return op;
}

static int gate_inputs(const walker *w, ad_node *n, ad_node **in)
{
    const expr_gate *gt = expr_gate_of(w->notes, n);
    if (gt) {
        in[0] = gt->in[0];
        in[1] = gt->kind == EXPR_MATMUL ? gt->in[1] : NULL;
        return gt->kind == EXPR_MATMUL ? 2 : 1;
    }
    int k = ad_node_num_inputs(n);
    for (int i = 0; i < k && i < 2; i++) in[i] = ad_node_input(n, i);
    return k < 2 ? k : 2;
}

static bool setup(walker *w, ad_graph *g, ad_node *root, const expr_notes *notes, int digits)
{
    *w = (walker){.g = g, .notes = notes, .n = ad_node_id(root) + 1, .digits = digits};
    w->live = calloc(w->n, 1);
    w->hidden = calloc(w->n, 1);
    w->ref = calloc(w->n, sizeof *w->ref);
    if (!w->live || !w->hidden || !w->ref) return false;
    for (int i = 0; i < notes->ngates; i++)
        for (uint32_t k = notes->gate[i].first; k < ad_node_id(notes->gate[i].node) && k < w->n; k++) w->hidden[k] = 1;
    w->live[w->n - 1] = 1;
    for (uint32_t i = w->n; i-- > 0;) {
        if (!w->live[i]) continue;
        ad_node *n = ad_graph_node(g, i), *in[2];
        int k = w->hidden[i] ? 0 : gate_inputs(w, n, in);
        if (w->hidden[i])
            for (int j = 0; j < ad_node_num_inputs(n); j++) w->live[ad_node_id(ad_node_input(n, j))] = 1;
        for (int j = 0; j < k; j++) w->live[ad_node_id(in[j])] = 1;
        /* an op's own inputs (a matmul's reshapes) are live through it */
        if (!w->hidden[i] && expr_gate_of(notes, n))
            for (int j = 0; j < ad_node_num_inputs(n); j++) w->live[ad_node_id(ad_node_input(n, j))] = 1;
    }
    int count = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        ad_node *n = ad_graph_node(g, i);
        if (ad_node_num_inputs(n) == 0) {
            if (ad_node_name(n)) snprintf(w->ref[i], sizeof w->ref[i], "%s", ad_node_name(n));
            else if (ad_node_size(n) == 1) snprintf(w->ref[i], sizeof w->ref[i], "%.6g", ad_node_get(n, 0));
            else snprintf(w->ref[i], sizeof w->ref[i], "const");
        } else if (w->live[i] && !w->hidden[i]) {
            snprintf(w->ref[i], sizeof w->ref[i], "#%d", ++count);
        }
    }
    return true;
}

static void teardown(walker *w)
{
    free(w->live);
    free(w->hidden);
    free(w->ref);
}

static const char *R(const walker *w, const ad_node *n) { return w->ref[ad_node_id(n)]; }

static bool is_leaf(const ad_node *n) { return ad_node_num_inputs(n) == 0; }

static void forward(FILE *out, const walker *w)
{
    char sb[96], what[200];
    fprintf(out, "forward pass: each node's value from its inputs, with its shape\n");
    for (uint32_t i = 0; i < w->n; i++) {
        ad_node *n = ad_graph_node(w->g, i), *in[2];
        if (!w->live[i] || w->hidden[i]) continue;
        /* a variable mentioned k times is k leaves: shown once, at its first mention */
        if (is_leaf(n) && ad_node_name(n)) {
            bool seen = false;
            for (uint32_t j = 0; j < i && !seen; j++)
                seen = w->live[j] && is_leaf(ad_graph_node(w->g, j)) && strcmp(w->ref[j], w->ref[i]) == 0;
            if (seen) continue;
        }
        if (is_leaf(n) && !ad_node_name(n) && ad_node_size(n) == 1) continue; /* a number of the formula */
        if (is_leaf(n)) snprintf(what, sizeof what, "%s", ad_node_name(n) ? "var" : "const");
        else {
            int k = gate_inputs(w, n, in);
            const expr_gate *gt = expr_gate_of(w->notes, n);
            if (gt && gt->kind == EXPR_MATMUL) snprintf(what, sizeof what, "@      (%s, %s)", R(w, in[0]), R(w, in[1]));
            else if (k == 2) snprintf(what, sizeof what, "%-6s (%s, %s)", gate_label(w, n), R(w, in[0]), R(w, in[1]));
            else snprintf(what, sizeof what, "%-6s (%s)", gate_label(w, n), R(w, in[0]));
            if (gt && gt->kind == EXPR_CE) {
                size_t at = strlen(what) - 1;
                if (gt->in[1]) snprintf(what + at, sizeof what - at, ", %s)", ad_node_name(gt->in[1]));
                else snprintf(what + at, sizeof what - at, ", %d)", gt->label);
            }
        }
        fprintf(out, "  %-6s %-22s %-8s = ", R(w, n), what, shape(n, sb, sizeof sb));
        walk_node(out, n, false, w->digits);
        fputc('\n', out);
    }
}

/* The local rule in matrix form, with the shapes. */
static void rule(FILE *out, const walker *w, ad_node *n)
{
    ad_node *in[2];
    int k = gate_inputs(w, n, in);
    const expr_gate *gt = expr_gate_of(w->notes, n);
    const char *ref[2] = {k > 0 ? R(w, in[0]) : "", k > 1 ? R(w, in[1]) : ""};
    ad_shape sh[2] = {0}, so = ad_node_shape(n);
    bool needs[2] = {false, false};
    for (int j = 0; j < k; j++) sh[j] = ad_node_shape(in[j]), needs[j] = ad_node_needs_grad(in[j]);
    char s0[96], text[1024];
    if (k > 0) ad_shape_str(&sh[0], s0, sizeof s0);
    /* the formula's gates that are one library op (matmul, a sum of all) read as that op */
    const char *op = ad_node_op_name(n);
    if (gt) {
        switch (gt->kind) {
        case EXPR_MATMUL: op = "matmul"; break;
        case EXPR_SUM:
        case EXPR_MEAN: {
            const char *nm = gt->kind == EXPR_SUM ? "sum" : "mean";
            if (gt->axis == EXPR_ALL_AXES) {
                op = nm;
                break;
            }
            int64_t cnt = ad_node_size(in[0]) / (ad_node_size(n) ? ad_node_size(n) : 1);
            char by[48] = "";
            if (gt->kind == EXPR_MEAN) snprintf(by, sizeof by, " / %lld", (long long)cnt);
            fprintf(out, "%s axis %d: downstream = upstream%s broadcast along axis %d to %s", nm, gt->axis, by, gt->axis, s0);
            return;
        }
        case EXPR_SOFTMAX:
            fprintf(out, "softmax axis %d: downstream = s ⊙ (upstream − Σ upstream ⊙ s), s = softmax(%s) %s", gt->axis, ref[0], s0);
            return;
        case EXPR_LOG_SOFTMAX:
            fprintf(out, "log_softmax axis %d: downstream = upstream − softmax(%s) · Σ upstream %s", gt->axis, ref[0], s0);
            return;
        case EXPR_CE: {
            ad_shape z = ad_node_shape(in[0]);
            fprintf(out, "softmax + ce: downstream = softmax(z) − onehot(y)");
            if (z.rank == 2) fprintf(out, ", each row / %lld", (long long)z.dim[0]);
            if (ad_node_grad_get(n, 0) != 1) fprintf(out, ", times upstream");
            if (gt->in[1]) fprintf(out, " %s (z = %s, y = %s)", s0, ref[0], ad_node_name(gt->in[1]));
            else fprintf(out, " %s (z = %s, y = %d)", s0, ref[0], gt->label);
            return;
        }
        }
    }
    fputs(ad_rule_text(text, sizeof text, op, k, ref, sh, needs, &so), out);
}

static void backward(FILE *out, const walker *w, const expr_var *vars, int nvars)
{
    char sb[96];
    fprintf(out, "backward pass: upstream gradient x local gradient = downstream gradient, in matrix form\n");
    for (uint32_t i = w->n; i-- > 0;) {
        ad_node *n = ad_graph_node(w->g, i), *in[2];
        if (!w->live[i] || w->hidden[i] || is_leaf(n) || !ad_node_needs_grad(n)) continue;
        fprintf(out, "  %-6s %-6s upstream %s ", R(w, n), gate_label(w, n), shape(n, sb, sizeof sb));
        walk_node(out, n, true, w->digits);
        fprintf(out, "\n         ");
        rule(out, w, n);
        fprintf(out, "\n         downstream ");
        int k = gate_inputs(w, n, in), shown = 0;
        for (int j = 0; j < k; j++) {
            if (!ad_node_needs_grad(in[j])) continue;
            fprintf(out, "%s", shown++ ? ", " : "");
            walk_node(out, in[j], true, w->digits);
            fprintf(out, " -> %s", R(w, in[j]));
        }
        if (!shown) fprintf(out, "none (its inputs are constants)");
        fputc('\n', out);
    }
    /* copy nodes: a variable mentioned k > 1 times sums its k leaves' gradients */
    const expr_notes *nt = w->notes;
    for (int v = 0; v < nvars; v++) {
        int uses = 0;
        for (int l = 0; l < nt->nleaves; l++) uses += nt->leaf_var[l] == v && ad_node_id(nt->leaf[l]) < w->n && w->live[ad_node_id(nt->leaf[l])];
        if (uses < 2) continue;
        fprintf(out, "  %-6s copy   upstream ", vars[v].name);
        int t = 0;
        for (int l = nt->nleaves; l-- > 0;) {
            if (nt->leaf_var[l] != v || ad_node_id(nt->leaf[l]) >= w->n || !w->live[ad_node_id(nt->leaf[l])]) continue;
            fprintf(out, "%s", t++ ? " + " : "");
            walk_node(out, nt->leaf[l], true, w->digits);
        }
        fprintf(out, "   sum of %d uses ", uses);
        walk_node(out, vars[v].node, true, w->digits);
        fputc('\n', out);
    }
    fprintf(out, "gradient:");
    for (int v = 0, k = 0; v < nvars; v++) {
        fprintf(out, "%s %s = ", k++ ? "," : "", vars[v].name);
        walk_node(out, vars[v].node, true, w->digits);
    }
    fputc('\n', out);
}

ad_status walk_matrix_form(FILE *out, ad_graph *g, ad_node *root, const expr_notes *notes, const expr_var *vars,
                           int nvars, bool fwd, int digits)
{
    walker w;
    if (!setup(&w, g, root, notes, digits)) {
        teardown(&w);
        return AD_ERR_NOMEM;
    }
    if (fwd) {
        forward(out, &w);
        fputc('\n', out);
    }
    backward(out, &w, vars, nvars);
    teardown(&w);
    return ferror(out) ? AD_ERR_IO : AD_OK;
}
