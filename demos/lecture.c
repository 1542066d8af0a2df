/* lecture: the lecture's backpropagation examples, step by step, exactly as the backprop CLI
 * prints them (the same formula parser, expr.h, and the same traces, ad_trace_forward and
 * ad_trace_backward), each followed by the numbers the slides give, checked.
 *
 *   lecture [--example 1|2|3] [--digits N] [--svg DIR]
 *   lecture --part momentum|minibatch|dropout|early-stopping [--svg DIR]
 *
 * 1. f = z(x + y) at (2, 3, -2); 2. the sigmoid neuron 1/(1 + e^-(w0 x0 + w1 x1 + w2)) at
 * x0 = -1, x1 = -2, w0 = 2, w1 = -3, w2 = -3; 3. a variable used more than once: the copy
 * node, in f = x x + x at x = 3. */
#include "ad.h"
#include "expr.h"
#include "lecture_parts.h"
#include "opts.h"
#include "ad_io.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *USAGE =
    "usage: lecture [options]\n"
    "Prints the lecture's backpropagation examples step by step (the forward pass, then the\n"
    "backward pass node by node: upstream gradient x local gradient = downstream gradient) as\n"
    "`backprop --trace` prints them, and checks the numbers against the slides'.  --part prints\n"
    "one of the training and regularisation slides as a page with its picture instead.\n";

enum { MAX_VARS = 5 };

typedef struct {
    const char *title;
    const char *intro;
    const char *formula;
    const char *args[MAX_VARS]; /* name=value, in the slides' argument order */
    int nargs;
    double slide_value;         /* f as the slides give it ... */
    double slide_grad[MAX_VARS];/* ... and the gradient ... */
    int slide_decimals;         /* ... rounded to this many decimals */
    const char *source;         /* where those numbers come from */
    const char *outro;
} example;

static const example EXAMPLES[] = {
    {
        .title = "1. f(x, y, z) = z(x + y) at x = 2, y = 3, z = -2",
        .intro = "The function as a graph of primitive operations: a + gate, then a * gate.  The forward\n"
                 "pass computes every node's value; the backward pass starts with df/df = 1 at the output\n"
                 "and, at every node, multiplies the upstream gradient by the local gradient and passes the\n"
                 "result on as the downstream gradient.\n",
        .formula = "z*(x+y)",
        .args = {"x=2", "y=3", "z=-2"},
        .nargs = 3,
        .slide_value = -10,
        .slide_grad = {-2, -2, 5},
        .slide_decimals = 0,
        .source = "the slides",
        .outro = "df/dz is the other input of the * gate, x + y = 5; x and y receive the + gate's upstream\n"
                 "gradient z = -2 unchanged.\n",
    },
    {
        .title = "2. The sigmoid neuron 1/(1 + e^-(w0 x0 + w1 x1 + w2)) at (-1, -2, 2, -3, -3)",
        .intro = "At x0 = -1, x1 = -2, w0 = 2, w1 = -3, w2 = -3, with the gates the slides draw: two *,\n"
                 "two +, neg (the slides' *(-1)), exp, +1 and 1/x.  Backward, gate by gate as on the slides:\n"
                 "1/x turns the upstream 1 into -1/1.37^2 = -0.53; +1 passes it on; exp multiplies by\n"
                 "e^-1 = 0.37 (-0.20); neg flips the sign (0.20); both + gates copy 0.20 to each input;\n"
                 "each * sends each input the other input's value times 0.20.\n",
        .formula = "1/(1+exp(-(w0*x0+w1*x1+w2)))",
        .args = {"x0=-1", "x1=-2", "w0=2", "w1=-3", "w2=-3"},
        .nargs = 5,
        .slide_value = 0.73,
        .slide_grad = {0.4, -0.6, -0.2, -0.4, 0.2},
        .slide_decimals = 1,
        .source = "the slides",
        .outro = "The gradient is listed in the order of the arguments (x0, x1, w0, w1, w2): the slides'\n"
                 "\"note ordering of arguments\".\n",
    },
    {
        .title = "3. A variable used more than once: the copy node, f = x x + x at x = 3",
        .intro = "\"Introduce a copy node that copies the variable in forward pass and adds the gradients\n"
                 "in the backward pass.\"  x feeds three inputs, so its copy node sums three upstream\n"
                 "gradients.\n",
        .formula = "x*x + x",
        .args = {"x=3"},
        .nargs = 1,
        .slide_value = 12,
        .slide_grad = {7},
        .slide_decimals = 0,
        .source = "by hand (f = x^2 + x, df/dx = 2x + 1)",
        .outro = "The copy line sums the three uses' gradients: 1 + 3 + 3 = 7.\n",
    },
};
enum { NEXAMPLES = sizeof EXAMPLES / sizeof *EXAMPLES };

static const char *fmt_num(char *buf, size_t len, double v, int digits)
{
    if (digits < 0) snprintf(buf, len, "%.17g", v);
    else snprintf(buf, len, "%.*f", digits, v);
    return buf;
}

/* The slides' numbers, rounded as they print them; +0 for -0. */
static bool same_as_slide(double v, double slide, int decimals)
{
    double p = pow(10, decimals);
    return round(v * p) / p + 0.0 == slide + 0.0;
}

/* One example: the CLI's text report (backprop --trace), then the slides' numbers. */
typedef struct { ad_graph *g; ad_node *f; int digits; ad_status st; } svg_job;

static bool put_svg(FILE *out, void *ctx)
{
    svg_job *j = ctx;
    return (j->st = ad_write_svg(j->g, j->f, out, j->digits)) == AD_OK;
}

static int run_example(const example *e, int digits, const char *svg_dir, int index)
{
    printf("== %s ==\n\n%s\n$ backprop --trace '%s'", e->title, e->intro, e->formula);
    for (int i = 0; i < e->nargs; i++) printf(" %s", e->args[i]);
    printf("\n");

    ad_graph *g = ad_graph_new();
    if (!g) {
        fprintf(stderr, "lecture: out of memory\n");
        return 1;
    }
    expr_var vars[MAX_VARS];
    char names[MAX_VARS][16];
    for (int i = 0; i < e->nargs; i++) {
        const char *eq = strchr(e->args[i], '=');
        double v = 0;
        snprintf(names[i], sizeof names[i], "%.*s", (int)(eq - e->args[i]), e->args[i]);
        expr_parse_number(eq + 1, &v);
        vars[i] = (expr_var){names[i], ad_var(g, names[i], v), false};
    }
    expr_error err;
    ad_node *f = expr_build(g, e->formula, vars, e->nargs, &err);
    if (!f || ad_backward(g, f) != AD_OK) {
        fprintf(stderr, "lecture: %s\n", f ? ad_error(g) : err.msg);
        ad_graph_free(g);
        return 1;
    }

    /* the report, as backprop prints it */
    char num[64];
    printf("f = %s\n", e->formula);
    printf("value: f = %s\n", fmt_num(num, sizeof num, ad_value(f), digits));
    printf("gradient:");
    for (int i = 0; i < e->nargs; i++)
        printf("%s df/d%s = %s", i ? "," : "", names[i], fmt_num(num, sizeof num, ad_grad(vars[i].node), digits));
    printf("\n\n");
    ad_status st = ad_trace_forward(g, f, stdout, digits);
    printf("\n");
    if (st == AD_OK) st = ad_trace_backward(g, f, stdout, digits);

    /* what the slides say */
    bool agree = same_as_slide(ad_value(f), e->slide_value, e->slide_decimals >= 2 ? e->slide_decimals : 2);
    printf("\n%s: f = %g, gradient (", e->source, e->slide_value);
    for (int i = 0; i < e->nargs; i++) {
        printf("%s%g", i ? ", " : "", e->slide_grad[i]);
        agree = agree && same_as_slide(ad_grad(vars[i].node), e->slide_grad[i], e->slide_decimals);
    }
    printf(")%s: %s\n", e->slide_decimals ? " to one decimal" : "",
           agree ? "the same" : "DIFFERENT from what backprop computes");
    printf("%s\n", e->outro);

    if (svg_dir && st == AD_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/lecture-%d.svg", svg_dir, index);
        svg_job job = {g, f, digits, AD_OK};
        char why[4200];
        /* atomic: a full disk leaves the old picture, not a torn one */
        if (ad_write_atomic(path, put_svg, &job, why, sizeof why) == AD_OK) printf("picture: %s\n\n", path);
        else if (job.st != AD_OK) fprintf(stderr, "lecture: could not draw %s: %s\n", path, ad_status_name(job.st)), st = job.st;
        else fprintf(stderr, "lecture: %s\n", why), st = AD_ERR_IO;
    }
    ad_graph_free(g);
    if (!agree) fprintf(stderr, "lecture: example %d does not match the slides\n", index);
    return st == AD_OK && agree ? 0 : 1;
}

int main(int argc, char **argv)
{
    int only = 0, digits = 2;
    const char *svg_dir = NULL, *part = NULL;
    opts_def defs[] = {
        {"--example", OPTS_INT, &only, "N", .help = "only example N: 1 f = z(x+y), 2 the sigmoid neuron, 3 the copy node",
         .lo = 1, .hi = NEXAMPLES, .want = "1, 2 or 3"},
        {"--digits", OPTS_INT, &digits, "N", .help = "decimals printed (default 2, as the slides; -1: full precision)", .lo = -1,
         .hi = 17},
        {"--svg", OPTS_TEXT, &svg_dir, "DIR",
         .help = "also draw each example's graph into DIR/lecture-N.svg (values in green,\ngradients in red, as backprop --svg "
         "draws them)", .want = "a folder"},
        {"--part", OPTS_TEXT, &part, "NAME",
         .help = "instead of the examples, a page on the training and regularisation slides, its\n"
         "picture in DIR/lecture-NAME.svg with --svg: momentum (gradient descent against\n"
         "momentum at a saddle), minibatch (SGD's noisy loss against full-batch descent),\n"
         "dropout (training against test-time scaling), early-stopping (the chosen epoch)",
         .want = "momentum, minibatch, dropout or early-stopping"},
    };
    opts_spec spec = {.prog = "lecture", .usage = USAGE, .defs = defs,
                      .ndefs = sizeof defs / sizeof *defs};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL, 0);
    if (rc >= 0) return rc;
    if (part) {
        bool known = false;
        for (int i = 0; i < LECTURE_NPARTS; i++) known = known || strcmp(part, LECTURE_PARTS[i]) == 0;
        if (!known) return opts_error(&spec, "--part takes momentum, minibatch, dropout or early-stopping, not '%s'", part);
        if (only) return opts_error(&spec, "--part and --example choose different pages: give one");
        return lecture_part(part, svg_dir, stdout);
    }
    if (!only) {
        printf("Backpropagation, as the lecture does it by hand: \"start at the output.  At every node,\n"
               "take the upstream gradient, multiply it with the local gradient, and propagate the result\n"
               "as downstream gradient.\"  Each example below is what `backprop --trace` prints for it.\n\n");
    }
    int status = 0;
    for (int k = 0; k < NEXAMPLES; k++)
        if (!only || only == k + 1)
            if (run_example(&EXAMPLES[k], digits, svg_dir, k + 1)) status = 1;
    return status;
}
