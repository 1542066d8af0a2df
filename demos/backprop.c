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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *FOOTER =
    "EXPR: numbers, names, + - * / ^ (right-associative), unary minus, parentheses, and the\n"
    "      library's elementwise ops as functions: exp(x), max(a,b), ... (see --functions).\n"
    "example: backprop '1/(1+exp(-(w0*x0+w1*x1+w2)))' x0=-1 x1=-2 w0=2 w1=-3 w2=-3\n";

enum { MAX_VARS = 64 };
enum mode { TEXT, DOT, SVG, HTML, JSON };

/* Where a NaN or infinity came from: the first node holding one, named as the traces name it. */
static void report_nonfinite(ad_graph *g, ad_node *root, bool grads)
{
    ad_node *bad = ad_find_nonfinite(g, root, grads);
    if (!bad) return;
    double x = grads ? ad_node_grad_get(bad, 0) : ad_node_get(bad, 0);
    const char *what = isnan(x) ? "NaN" : "an infinity";
    char at[64];
    if (ad_node_name(bad)) snprintf(at, sizeof at, "%s", ad_node_name(bad));
    else snprintf(at, sizeof at, "#%u", ad_node_id(bad));
    fprintf(stderr, "backprop: the %s holds %s: it first appears at node %s (%s)\n",
            grads ? "gradient" : "value", what, at, ad_node_op_name(bad));
}

/* One number as the report prints it: `digits` decimals, or every digit a double holds. */
static const char *format_number(char *buf, size_t len, double x, int digits)
{
    if (digits < 0) snprintf(buf, len, "%.17g", x);
    else snprintf(buf, len, "%.*f", digits, x);
    return buf;
}

/* JSON has no NaN or infinity: those are null, as the value and the gradient print them. */
static void print_json_number(double x)
{
    if (isfinite(x)) printf("%.17g", x);
    else printf("null");
}

/* The formula and the name=value arguments, as given. */
static const char *text;
static expr_var vars[MAX_VARS];
static char names[MAX_VARS][64];
static double values[MAX_VARS];
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
        if (!expr_parse_number(eq + 1, &values[nvars - 1])) return opts_error(spec, "malformed number in '%s'", a);
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

int main(int argc, char **argv)
{
    int mode = TEXT, digits = 2;
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
        {"--digits", OPTS_INT, &digits, "N", .help = "decimals in the text report and pictures (default 2; -1: full precision)",
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
    for (int i = 0; i < nvars; i++) vars[i].node = ad_var(g, vars[i].name, values[i]);
    expr_error err;
    ad_node *f = expr_build(g, text, vars, nvars, &err);
    int status = 0;
    double *H = NULL;
    if (!f) {
        if (err.column) fprintf(stderr, "backprop: column %d: %s\n", err.column, err.msg);
        else fprintf(stderr, "backprop: %s\n", err.msg);
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
    switch (mode) {
    case JSON:
        printf("{\"value\": ");
        print_json_number(ad_value(f));
        printf(", \"gradient\": {");
        for (int i = 0; i < nvars; i++) {
            printf("%s\"%s\": ", i ? ", " : "", vars[i].name);
            print_json_number(ad_grad(vars[i].node));
        }
        printf("}");
        if (hessian) print_hessian_json(H);
        printf("}\n");
        break;
    case DOT: st = ad_write_dot(g, f, stdout, digits); break;
    case SVG: st = ad_write_svg(g, f, stdout, digits); break;
    case HTML: {
        char title[1024];
        snprintf(title, sizeof title, "f = %s", text);
        st = ad_write_html(g, f, stdout, digits, title);
        break;
    }
    case TEXT:
        printf("f = %s\n", text);
        printf("value: f = %s\n", format_number(num, sizeof num, ad_value(f), digits));
        printf("gradient:");
        for (int i = 0; i < nvars; i++)
            printf("%s df/d%s = %s", i ? "," : "", vars[i].name,
                   format_number(num, sizeof num, ad_grad(vars[i].node), digits));
        printf("\n");
        if (hessian) print_hessian_text(H, digits);
        printf("\n");
        if (trace) {
            st = ad_trace_forward(g, f, stdout, digits);
            printf("\n");
        }
        if (st == AD_OK) st = ad_trace_backward(g, f, stdout, digits);
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
    ad_graph_free(g);
    return status;
}
