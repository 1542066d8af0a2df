/* backprop: type a formula, see the lecture's walk through it.
 *
 *   backprop '1/(1+exp(-(w0*x0+w1*x1+w2)))' x0=-1 x1=-2 w0=2 w1=-3 w2=-3
 *
 * prints the value, the gradient in the order the values were given, and the backward trace
 * (upstream gradient x local gradient = downstream gradient, node by node).  --hessian adds the
 * matrix of second derivatives, rows and columns in that same order. */
#include "ad.h"
#include "expr.h"
#include "opts.h"
#include "walk.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *FOOTER =
    "EXPR: numbers, the constants pi and e, names, + - * / @ ^ (^ right-associative, @ NumPy's\n"
    "      matmul), unary minus, parentheses, the library's elementwise ops as functions:\n"
    "      exp(x), max(a,b), ..., and sum mean softmax log_softmax (axis optional: sum(W, 0))\n"
    "      and ce(logits, label) (see --functions).\n"
    "VALUE: a number, or a tensor in NumPy's nesting: x=[1,-1] W=[[1,2],[3,4]].\n"
    "example: backprop '1/(1+exp(-(w0*x0+w1*x1+w2)))' x0=-1 x1=-2 w0=2 w1=-3 w2=-3\n"
    "         backprop 'ce(W2@relu(W1@x+b1)+b2, 1)' W1=[[1,-1],[0.5,2]] b1=[0,1] \\\n"
    "                  W2=[[1,0],[-1,1],[0.5,0.5]] b2=[0,0,0] x=[1,2]\n";

enum { MAX_VARS = 64 };
enum mode { TEXT, DOT, SVG, HTML, JSON };

/* The gate's label as the traces and pictures print it ("1/x", "+1", "exp"), read from the
 * library's JSON dump, which carries it: one name per gate in every medium.  Falls back to the
 * op's name. */
static void trace_label(const ad_graph *g, ad_node *root, ad_node *n, char *buf, size_t len)
{
    snprintf(buf, len, "%s", ad_node_op_name(n));
    FILE *t = tmpfile();
    if (!t) return;
    if (ad_write_json(g, root, t) == AD_OK) {
        long size = ftell(t);
        char *all = size > 0 ? malloc((size_t)size + 1) : NULL;
        rewind(t);
        if (all && fread(all, 1, (size_t)size, t) == (size_t)size) {
            all[size] = 0;
            char key[64];
            snprintf(key, sizeof key, "{\"id\": %u, ", ad_node_id(n));
            const char *at = strstr(all, key), *lab = at ? strstr(at, "\"label\": \"") : NULL;
            const char *end = lab ? strchr(lab + 10, '"') : NULL;
            if (end && (size_t)(end - lab - 10) < len && !memchr(lab + 10, '\\', (size_t)(end - lab - 10)))
                snprintf(buf, len, "%.*s", (int)(end - lab - 10), lab + 10);
        }
        free(all);
    }
    fclose(t);
}

/* Where a NaN or infinity came from: the first node holding one, named as the traces name it. */
static void report_nonfinite(ad_graph *g, ad_node *root, bool grads)
{
    ad_node *bad = ad_find_nonfinite(g, root, grads);
    if (!bad) return;
    double x = NAN;
    for (int64_t i = 0; i < ad_node_size(bad) && isfinite(x = grads ? ad_node_grad_get(bad, i) : ad_node_get(bad, i));) i++;
    const char *what = isnan(x) ? "NaN" : "an infinity";
    char at[64], label[64];
    if (ad_node_name(bad)) snprintf(at, sizeof at, "%s", ad_node_name(bad));
    else snprintf(at, sizeof at, "#%u", ad_node_id(bad));
    if (ad_node_num_inputs(bad) == 0) snprintf(label, sizeof label, "%s", ad_node_op_name(bad));
    else trace_label(g, root, bad, label, sizeof label);
    fprintf(stderr, "backprop: the %s holds %s: it first appears at node %s (%s)\n",
            grads ? "gradient" : "value", what, at, label);
}

/* One number as the report prints it (walk.h: DIGITS_AUTO, decimals, or every digit). */
static const char *format_number(char *buf, size_t len, double x, int digits)
{
    if (digits == -1) snprintf(buf, len, "%.17g", x);
    else if (digits >= 0) snprintf(buf, len, "%.*f", digits, x);
    else walk_num(buf, len, x, digits);
    return buf;
}

/* JSON has no NaN or infinity: those are null, as the value and the gradient print them. */
static void print_json_number(double x)
{
    if (isfinite(x)) printf("%.17g", x);
    else printf("null");
}

/* A node's value or gradient in JSON: a number, or nested lists in NumPy's nesting. */
static void print_json_axis(ad_node *n, bool grad, const ad_shape *s, int axis, int64_t at)
{
    if (axis == s->rank) {
        print_json_number(grad ? ad_node_grad_get(n, at) : ad_node_get(n, at));
        return;
    }
    int64_t stride = 1;
    for (int d = axis + 1; d < s->rank; d++) stride *= s->dim[d];
    printf("[");
    for (int64_t i = 0; i < s->dim[axis]; i++) {
        if (i) printf(", ");
        print_json_axis(n, grad, s, axis + 1, at + i * stride);
    }
    printf("]");
}

static void print_json_node(ad_node *n, bool grad)
{
    ad_shape s = ad_node_shape(n);
    print_json_axis(n, grad, &s, 0, 0);
}

/* The formula and the name=value arguments, as given. */
static const char *text;
static expr_var vars[MAX_VARS];
static char names[MAX_VARS][64];
static double *values[MAX_VARS]; /* each variable's elements, row-major */
static ad_shape shapes[MAX_VARS];
static int nvars;

/* Reads the positional arguments: the formula, then name=value pairs.  Returns -1 to go on or
 * the exit status of a usage error. */
static int read_values(const opts_spec *spec, const char *const *args, int nargs)
{
    for (int i = 0; i < nargs; i++) {
        const char *a = args[i];
        if (!text) {
            text = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        if (!eq) return opts_error(spec, "expected name=value, not '%s'", a);
        if (nvars == MAX_VARS) return opts_error(spec, "too many variables (at most %d)", MAX_VARS);
        size_t len = (size_t)(eq - a);
        if (len >= sizeof names[0]) return opts_error(spec, "variable name too long in '%s'", a);
        char *name = names[nvars];
        memcpy(name, a, len);
        name[len] = 0;
        vars[nvars] = (expr_var){name, NULL, false};
        nvars++;
        if (!expr_is_identifier(name) || expr_is_function(name))
            return opts_error(spec, "'%s' is not a variable name", name);
        for (int k = 0; k + 1 < nvars; k++)
            if (strcmp(vars[k].name, name) == 0) return opts_error(spec, "'%s' is given twice", name);
        char why[160];
        double x;
        if (eq[1] != '[' && !expr_parse_number(eq + 1, &x)) return opts_error(spec, "malformed number in '%s'", a);
        values[nvars - 1] = expr_parse_value(eq + 1, &shapes[nvars - 1], why, sizeof why);
        if (!values[nvars - 1]) return opts_error(spec, "malformed tensor in '%s': %s", a, why);
    }
    return -1;
}

/* The Hessian as a table labelled by the variables' names, every column as wide as its widest
 * entry so that a reader can run down a column; H is nvars x nvars, row-major. */
static void print_hessian_text(const double *H, int digits)
{
    int label = 0, width = 0;
    char num[64];
    for (int i = 0; i < nvars; i++) {
        int len = (int)strlen(vars[i].name);
        label = len > label ? len : label;
        width = len > width ? len : width;
    }
    for (int k = 0; k < nvars * nvars; k++) {
        int len = (int)strlen(format_number(num, sizeof num, H[k], digits));
        width = len > width ? len : width;
    }
    printf("hessian: d2f/d(row) d(column)\n");
    if (nvars == 0) return;
    printf("  %*s", label, "");
    for (int j = 0; j < nvars; j++) printf("  %*s", width, vars[j].name);
    printf("\n");
    for (int i = 0; i < nvars; i++) {
        printf("  %-*s", label, vars[i].name);
        for (int j = 0; j < nvars; j++) printf("  %*s", width, format_number(num, sizeof num, H[i * nvars + j], digits));
        printf("\n");
    }
}

static void print_hessian_json(const double *H)
{
    printf(", \"hessian\": {");
    for (int i = 0; i < nvars; i++) {
        printf("%s\"%s\": {", i ? ", " : "", vars[i].name);
        for (int j = 0; j < nvars; j++) {
            printf("%s\"%s\": ", j ? ", " : "", vars[j].name);
            print_json_number(H[i * nvars + j]);
        }
        printf("}");
    }
    printf("}");
}

/* The first non-finite entry of the Hessian, named by its two variables, when the value and the
 * gradient are finite (otherwise report_nonfinite has said where the trouble starts).  True if
 * there was one. */
static bool report_nonfinite_hessian(const double *H)
{
    for (int k = 0; k < nvars * nvars; k++)
        if (!isfinite(H[k])) {
            fprintf(stderr, "backprop: the Hessian holds %s: d2f/d%s d%s\n", isnan(H[k]) ? "NaN" : "an infinity",
                    vars[k / nvars].name, vars[k % nvars].name);
            return true;
        }
    return false;
}

/* The parse error with the formula echoed and a caret under its column. */
static void report_parse_error(const expr_error *err)
{
    if (!err->column) {
        fprintf(stderr, "backprop: %s\n", err->msg);
        return;
    }
    fprintf(stderr, "backprop: column %d: %s\n  %s\n  ", err->column, err->msg, text);
    /* a tab stays a tab so that the caret lines up under it; UTF-8 continuation bytes take
     * no column */
    for (int i = 0; i < err->column - 1 && text[i]; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80) fputc(text[i] == '\t' ? '\t' : ' ', stderr);
    fprintf(stderr, "^\n");
}

/* True if any node root depends on holds more than one number: the walk then goes in matrix
 * form. */
static bool has_tensors(const ad_graph *g, ad_node *root)
{
    for (uint32_t i = 0; i <= ad_node_id(root); i++)
        if (ad_node_shape(ad_graph_node(g, i)).rank > 0) return true;
    return false;
}

/* The text report's walk for a formula over tensors: the formula built again with every
 * mention of a variable its own leaf, so that each edge's gradient can be shown. */
static ad_status tensor_walk(bool forward, int digits)
{
    ad_graph *g = ad_graph_new();
    expr_notes notes = {.untie = true};
    expr_var mine[MAX_VARS];
    memcpy(mine, vars, sizeof mine);
    expr_error err;
    ad_status st = AD_ERR_NOMEM;
    ad_node *f = g ? expr_build_traced(g, text, mine, nvars, &notes, &err) : NULL;
    if (f && (st = ad_backward(g, f)) == AD_OK) st = walk_matrix_form(stdout, g, f, &notes, vars, nvars, forward, digits);
    expr_notes_free(&notes);
    ad_graph_free(g);
    return st;
}

int main(int argc, char **argv)
{
    int mode = TEXT, digits = DIGITS_AUTO;
    bool trace = false, functions = false, hessian = false;
    opts_def defs[] = {
        {"--trace", OPTS_FLAG, &trace, NULL, .help = "forward and backward walk (the default output adds the backward trace)"},
        {"--dot", OPTS_CONST, &mode, NULL, .help = "print the graph in Graphviz DOT instead of the text report", .lo = DOT},
        {"--svg", OPTS_CONST, &mode, NULL, .help = "print the graph as an SVG picture instead of the text report", .lo = SVG},
        {"--html", OPTS_CONST, &mode, NULL,
         .help = "print an interactive page that steps through the forward and backward\n"
         "passes one node at a time (backprop --html 'EXPR' x=1 > walk.html)", .lo = HTML},
        {"--json", OPTS_CONST, &mode, NULL,
         .help = "print {\"value\": V, \"gradient\": {\"x\": G, ...}} instead of the text report", .lo = JSON},
        {"--hessian", OPTS_FLAG, &hessian, NULL,
         .help = "add the Hessian, d2f/dx dy for every pair of variables in the order given, to\n"
         "the text report (a table) or --json (\"hessian\": {\"x\": {\"y\": H, ...}, ...})"},
        {"--digits", OPTS_INT, &digits, "N",
         .help = "decimals in the text report and pictures (-1: full precision); by default 2,\n"
         "as the slides, and two significant digits where a number is smaller (0.0010),\n"
         "so that no nonzero number prints as 0.00",
         .lo = -1, .hi = 17},
        {"--functions", OPTS_FLAG, &functions, NULL, .help = "list the functions EXPR may call"},
    };
    opts_spec spec = {.prog = "backprop", .usage = "usage: backprop [options] 'EXPR' name=value ...\n", .defs = defs,
                      .ndefs = sizeof defs / sizeof *defs, .footer = FOOTER, .hint_below = true};
    const char **args = malloc(sizeof *args * (size_t)argc);
    int nargs = 0;
    if (!args) return opts_error(&spec, "out of memory");
    int rc = opts_parse(&spec, argc, argv, args, &nargs, argc);
    if (rc < 0) rc = read_values(&spec, args, nargs);
    free(args);
    if (rc >= 0) return rc;
    if (functions) {
        expr_list_functions(stdout);
        return 0;
    }
    if (!text) {
        opts_help(&spec, stderr);
        return 2;
    }
    /* A picture has no place for a matrix; saying so beats a picture without what was asked. */
    if (hessian && (mode == DOT || mode == SVG || mode == HTML))
        return opts_error(&spec, "--hessian goes with the text report or --json, not with %s",
                          mode == DOT ? "--dot" : mode == SVG ? "--svg" : "--html");

    ad_graph *g = ad_graph_new();
    if (!g) return opts_error(&spec, "out of memory");
    bool tensors = false;
    for (int i = 0; i < nvars; i++) {
        vars[i].node = shapes[i].rank == 0 ? ad_var(g, vars[i].name, values[i][0])
                                           : ad_var_array(g, vars[i].name, AD_F64, shapes[i], values[i]);
        tensors = tensors || shapes[i].rank > 0;
    }
    expr_error err;
    ad_node *f = expr_build(g, text, vars, nvars, &err);
    int status = 0;
    double *H = NULL;
    if (!f) {
        report_parse_error(&err);
        status = 2;
        goto out;
    }
    if (ad_node_size(f) != 1) {
        ad_shape s = ad_node_shape(f);
        char sb[96];
        fprintf(stderr, "backprop: f has shape %s, and a gradient is of one number: reduce it, as sum(...) or "
                        "mean(...) does\n", ad_shape_str(&s, sb, sizeof sb));
        status = 2;
        goto out;
    }
    if (hessian && tensors) {
        fprintf(stderr, "backprop: --hessian takes variables that are numbers, not tensors\n");
        status = 2;
        goto out;
    }
    for (int i = 0; i < nvars; i++)
        if (!vars[i].used) {
            fprintf(stderr, "backprop: a value is given for '%s', which the formula does not use\n", vars[i].name);
            status = 2;
            goto out;
        }
    if (ad_backward(g, f) != AD_OK) {
        fprintf(stderr, "backprop: %s\n", ad_error(g));
        status = 1;
        goto out;
    }
    /* Before anything is printed, so that a failure leaves no half report.  The Hessian's nodes
     * come after the root, which every walk below stops at. */
    if (hessian) {
        H = malloc(sizeof *H * (size_t)(nvars ? nvars * nvars : 1));
        ad_node *leaves[MAX_VARS];
        for (int i = 0; i < nvars; i++) leaves[i] = vars[i].node;
        if (!H) {
            fprintf(stderr, "backprop: out of memory for the Hessian\n");
            status = 1;
            goto out;
        }
        if (ad_hessian_graph(g, f, nvars, leaves, H) != AD_OK) {
            fprintf(stderr, "backprop: %s\n", ad_error(g));
            status = 1;
            goto out;
        }
    }

    ad_status st = AD_OK;
    char num[64];
    tensors = tensors || has_tensors(g, f);
    /* the library's walks and pictures print fixed decimals: enough for the smallest number */
    int lib_digits = walk_library_digits(g, f, digits);
    switch (mode) {
    case JSON:
        printf("{\"value\": ");
        print_json_number(ad_value(f));
        printf(", \"gradient\": {");
        for (int i = 0; i < nvars; i++) {
            printf("%s\"%s\": ", i ? ", " : "", vars[i].name);
            print_json_node(vars[i].node, true);
        }
        printf("}");
        if (hessian) print_hessian_json(H);
        printf("}\n");
        break;
    case DOT: st = ad_write_dot(g, f, stdout, lib_digits); break;
    case SVG: st = ad_write_svg(g, f, stdout, lib_digits); break;
    case HTML: {
        char title[1024];
        snprintf(title, sizeof title, "f = %s", text);
        st = ad_write_html(g, f, stdout, lib_digits, title);
        break;
    }
    case TEXT:
        printf("f = %s\n", text);
        printf("value: f = %s\n", format_number(num, sizeof num, ad_value(f), digits));
        printf("gradient:");
        for (int i = 0; i < nvars; i++) {
            printf("%s df/d%s = ", i ? "," : "", vars[i].name);
            if (shapes[i].rank == 0) printf("%s", format_number(num, sizeof num, ad_grad(vars[i].node), digits));
            else walk_node(stdout, vars[i].node, true, digits);
        }
        printf("\n");
        if (hessian) print_hessian_text(H, digits);
        printf("\n");
        if (tensors) {
            st = tensor_walk(trace, digits);
            break;
        }
        if (trace) {
            st = ad_trace_forward(g, f, stdout, lib_digits);
            printf("\n");
        }
        if (st == AD_OK) st = ad_trace_backward(g, f, stdout, lib_digits);
        break;
    }
    if (st == AD_ERR_ARG && (mode == SVG || mode == HTML))
        fprintf(stderr, "backprop: the graph is too large to draw (more than %d parts); the picture holds a summary\n",
                AD_SVG_MAX_NODES);
    if (st != AD_OK) status = 1;
    if (!isfinite(ad_value(f)) || ad_find_nonfinite(g, f, true)) {
        report_nonfinite(g, f, !ad_find_nonfinite(g, f, false));
        status = 1;
    } else if (hessian && report_nonfinite_hessian(H)) {
        status = 1;
    }
out:
    free(H);
    for (int i = 0; i < nvars; i++) free(values[i]);
    ad_graph_free(g);
    return status;
}
