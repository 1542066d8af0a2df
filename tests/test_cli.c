/* The backprop CLI, run as a user runs it: golden outputs for the lecture's examples, and
 * every kind of bad input (one clear line on stderr, exit code 2, never a crash). */
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *cli;    /* path of the backprop binary (argv[1]) */
static const char *golden; /* folder of the golden files (argv[2]) */

/* Runs the CLI with args (NULL-terminated). */
static run_result run(const char *const *args) { return run_program(cli, args, NULL, NULL, NULL); }

static void done(run_result *r) { run_done(r); }

static char *read_golden(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", golden, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing golden file %s", path);
    char *buf = slurp_fd(fileno(f));
    fclose(f);
    return buf;
}

static void check_golden(const char *name, const char *const *args)
{
    run_result r = run(args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.err, "");
    char *want = read_golden(name);
    ck_assert_msg(strcmp(r.out, want) == 0, "%s differs:\n--- got\n%s--- want\n%s", name, r.out, want);
    free(want);
    done(&r);
}

/* Bad input: exit code 2, nothing on stdout, and exactly msg on stderr. */
static void expect_bad_input(const char *const *args, const char *msg)
{
    run_result r = run(args);
    ck_assert_msg(r.status == 2, "%s: exit %d (%s)", args[0], r.status, r.err);
    ck_assert_str_eq(r.out, "");
    ck_assert_str_eq(r.err, msg);
    done(&r);
}

#define NEURON "1/(1+exp(-(w0*x0+w1*x1+w2)))", "x0=-1", "x1=-2", "w0=2", "w1=-3", "w2=-3"

START_TEST(golden_neuron) { check_golden("neuron.txt", ARGS("--trace", NEURON)); }
END_TEST
START_TEST(golden_sum) { check_golden("sum.txt", ARGS("--trace", "z*(x+y)", "x=2", "y=3", "z=-2")); }
END_TEST
START_TEST(golden_copy) { check_golden("copy.txt", ARGS("--trace", "x*x + x", "x=3")); }
END_TEST
START_TEST(golden_neuron_json) { check_golden("neuron.json", ARGS("--json", NEURON)); }
END_TEST
START_TEST(golden_neuron_svg) { check_golden("neuron.svg", ARGS("--svg", NEURON)); }
END_TEST
START_TEST(golden_sum_dot) { check_golden("sum.dot", ARGS("--dot", "z*(x+y)", "x=2", "y=3", "z=-2")); }
END_TEST
START_TEST(golden_neuron_html) { check_golden("neuron.html", ARGS("--html", NEURON)); }
END_TEST

/* The stepper page: one self-contained file whose steps carry the lecture's sentences. */
START_TEST(html_stepper)
{
    run_result r = run(ARGS("--html", "x*x + x", "x=3"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.err, "");
    ck_assert(strncmp(r.out, "<!DOCTYPE html>", 15) == 0);
    ck_assert_ptr_nonnull(strstr(r.out, "<h1>f = x*x + x</h1>"));
    ck_assert_ptr_nonnull(strstr(r.out, "copy of x: 1.00 + 3.00 + 3.00 = <span class=\"g\">7.00</span>"));
    ck_assert_ptr_nonnull(strstr(r.out, "id=\"panel\""));
    ck_assert_ptr_null(strstr(r.out, "src="));
    done(&r);
    r = run(ARGS("--digits", "1", "--html", NEURON));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "(-2.0) · 0.2 = <span class=\"g\">-0.4</span> &#8594; w1, "
                                        "(-3.0) · 0.2 = <span class=\"g\">-0.6</span> &#8594; x1"));
    done(&r);
    /* bad input stays one message on stderr (the formula and a caret under the fault), no page */
    expect_bad_input(ARGS("--html", "x+", "x=1"),
                     "backprop: column 3: expected a number, a name or '(' before the end of the formula\n"
                     "  x+\n"
                     "    ^\n");
    r = run(ARGS("--help"));
    ck_assert_ptr_nonnull(strstr(r.out, "--html"));
    done(&r);
}
END_TEST

/* The slides' numbers, as a reader checks them in the default report. */
START_TEST(default_report_has_the_slides_numbers)
{
    run_result r = run(ARGS(NEURON));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "value: f = 0.73"));
    ck_assert_ptr_nonnull(strstr(r.out, "df/dx0 = 0.39, df/dx1 = -0.59, df/dw0 = -0.20, df/dw1 = -0.39, df/dw2 = 0.20"));
    ck_assert_ptr_nonnull(strstr(r.out, "1/x    upstream 1.00   at u = #12 = 1.37\n"
                                        "         local ∂/∂u [1/u] = -1/u^2 = -1/1.37^2 = -0.53   downstream (-0.53) · 1.00 = -0.53"));
    ck_assert_ptr_nonnull(strstr(r.out, "+1     upstream -0.53   at u = #10 = 0.37\n"
                                        "         local ∂/∂u [u + 1] = 1   downstream 1 · (-0.53) = -0.53"));
    ck_assert_ptr_nonnull(strstr(r.out, "local ∂/∂u [exp(u)] = exp(u) = exp(-1.00) = 0.37   downstream 0.37 · (-0.53) = -0.20"));
    ck_assert_ptr_null(strstr(r.out, "forward pass")); /* only --trace adds the forward walk */
    done(&r);
    r = run(ARGS("--digits", "1", NEURON));
    ck_assert_ptr_nonnull(strstr(r.out, "df/dx0 = 0.4, df/dx1 = -0.6, df/dw0 = -0.2, df/dw1 = -0.4, df/dw2 = 0.2"));
    done(&r);
    /* a gate with a constant folded in names its named operand: 2/y, not 2/x beside the x */
    r = run(ARGS("--trace", "2/y + x", "y=4", "x=1"));
    ck_assert_ptr_nonnull(strstr(r.out, "2/y    2 / y = 2 / 4.00 = 0.50"));
    ck_assert_ptr_null(strstr(r.out, "2/x"));
    done(&r);
}
END_TEST

START_TEST(json_is_one_object_in_argument_order)
{
    run_result r = run(ARGS("--json", "a*b + sin(c)", "c=0.5", "a=2", "b=3"));
    ck_assert_int_eq(r.status, 0);
    char want[256];
    snprintf(want, sizeof want, "{\"value\": %.17g, \"gradient\": {\"c\": %.17g, \"a\": 3, \"b\": 2}}\n",
             6 + sin(0.5), cos(0.5));
    ck_assert_str_eq(r.out, want);
    done(&r);
}
END_TEST

START_TEST(grammar)
{
    struct { const char *expr; double want; } cases[] = {
        {"2^3^2 + 0*x", 512}, {"-x^2", -9}, {"(-x)^2", 9}, {"2*3+4 + 0*x", 10}, {"2+3*4 + 0*x", 14},
        {"8/2/2 + 0*x", 2}, {"1e-3*1000 + 0*x", 1}, {"-0.5+x", 2.5}, {"max(x, 4) + min(x, 4)", 7},
        {"pow(x, 2)", 9}, {"sqrt(x*x)", 3}, {"abs(-x) + relu(-x)", 3}, {"x - -x", 6},
        {"tanh(0) + sigmoid(0) + log(exp(x))", 3.5}, {"cos(0) + sin(0) + tan(0) + 0*x", 1},
        {".5 + x", 3.5}, {"2^-1 + x", 3.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result r = run(ARGS("--json", cases[i].expr, "x=3"));
        ck_assert_msg(r.status == 0, "%s: %s", cases[i].expr, r.err);
        double v = strtod(r.out + strlen("{\"value\": "), NULL);
        ck_assert_msg(fabs(v - cases[i].want) < 1e-12, "%s = %g, want %g", cases[i].expr, v, cases[i].want);
        done(&r);
    }
}
END_TEST

/* Each bad input: exit code 2 and one line naming the problem. */
START_TEST(bad_input)
{
    struct { const char *const *args; const char *msg; } cases[] = {
        {ARGS("(x+1", "x=1"), "backprop: column 5: expected ')' before the end of the formula\n  (x+1\n      ^\n"},
        {ARGS("x*(y+", "x=1", "y=2"), "backprop: column 6: expected a number, a name or '(' before the end of the formula\n  x*(y+\n       ^\n"},
        {ARGS("foo(x)", "x=1"), "backprop: column 1: unknown function 'foo'\n  foo(x)\n  ^\n"},
        {ARGS("x+y", "x=1"), "backprop: column 3: variable 'y' has no value (give it one: y=...)\n  x+y\n    ^\n"},
        {ARGS("x", "x=1", "q=2"), "backprop: a value is given for 'q', which the formula does not use\n"},
        {ARGS("x", "x=1.2.3"), "backprop: malformed number in 'x=1.2.3'\n(backprop --help for usage)\n"},
        {ARGS("1.2.3*x", "x=1"), "backprop: column 1: malformed number '1.2.3'\n  1.2.3*x\n  ^\n"},
        {ARGS("x +* 2", "x=1"), "backprop: column 4: unexpected '*'\n  x +* 2\n     ^\n"},
        {ARGS("x)", "x=1"), "backprop: column 2: unmatched ')'\n  x)\n   ^\n"},
        {ARGS("x", "x"), "backprop: expected name=value, not 'x'\n(backprop --help for usage)\n"},
        {ARGS("x", "x=1", "x=2"), "backprop: 'x' is given twice\n(backprop --help for usage)\n"},
        {ARGS("exp", "x=1"), "backprop: column 4: expected '(' before the end of the formula\n  exp\n     ^\n"},
        {ARGS("--bogus", "x", "x=1"), "backprop: unknown option '--bogus'\n(backprop --help for usage)\n"},
        {ARGS("--digits", "many", "x", "x=1"), "backprop: --digits takes a whole number from -1 to 17, not 'many'\n(backprop --help for usage)\n"},
        {ARGS("exp=1", "x=1"), "backprop: column 4: expected '('\n  exp=1\n     ^\n"},
        {ARGS("x", "exp=1"), "backprop: 'exp' is not a variable name\n(backprop --help for usage)\n"},
        /* issue 20, defect 14: numbers that overflow to infinity are malformed, not values */
        {ARGS("x", "x=1e999"), "backprop: malformed number in 'x=1e999'\n(backprop --help for usage)\n"},
        {ARGS("x", "x=-1e309"), "backprop: malformed number in 'x=-1e309'\n(backprop --help for usage)\n"},
        {ARGS("1e999*x", "x=1"), "backprop: column 1: malformed number '1e999'\n  1e999*x\n  ^\n"},
        {ARGS("x + 2*1.7976931348623159e308*x", "x=1"), "backprop: column 7: malformed number '1.7976931348623159e308'\n  x + 2*1.7976931348623159e308*x\n        ^\n"},
        {ARGS("--", "--bogus", "x=1"), "backprop: column 3: variable 'bogus' has no value (give it one: bogus=...)\n  --bogus\n    ^\n"},
        {ARGS("--", "--help"), "backprop: column 3: variable 'help' has no value (give it one: help=...)\n  --help\n    ^\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) expect_bad_input(cases[i].args, cases[i].msg);
    run_result r = run(ARGS(NULL));
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "usage: backprop"));
    done(&r);
}
END_TEST

/* Issue 20, defect 14: "--" ends the options (opts.c, so in every demo): what follows is the
 * formula and the values, even when they start with '-'. */
START_TEST(double_dash_ends_the_options)
{
    run_result r = run(ARGS("--", "-x", "x=1"));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "-1"));
    done(&r);
    r = run(ARGS("--json", "--", "--x", "x=2"));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(r.out, "{\"value\": 2, \"gradient\": {\"x\": 1}}\n");
    done(&r);
    r = run(ARGS("--json", "--", "x", "--", "x=2"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "backprop: expected name=value, not '--'\n(backprop --help for usage)\n");
    done(&r);
}
END_TEST

/* A formula of n nested parentheses around x, or n unary minus signs before it (malloc'd). */
static char *nested(int n, bool parens)
{
    char *f = malloc((size_t)(2 * n + 2));
    ck_assert_ptr_nonnull(f);
    int k = 0;
    for (int i = 0; i < n; i++) f[k++] = parens ? '(' : '-';
    f[k++] = 'x';
    for (int i = 0; parens && i < n; i++) f[k++] = ')';
    f[k] = 0;
    return f;
}

/* Issue 20, defect 14: the man page documents every option of --help (it missed --html) and
 * the limits, and the limits are the ones it states. */
START_TEST(man_page_documents_options_and_limits)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/../../demos/backprop.1", golden);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing %s", path);
    char *man = slurp_fd(fileno(f));
    fclose(f);
    run_result r = run(ARGS("--help"));
    ck_assert_int_eq(r.status, 0);
    for (const char *p = strstr(r.out, "  --"); p; p = strstr(p + 1, "  --")) {
        char opt[64], want[80];
        sscanf(p + 4, "%63[a-z-]", opt);
        char want_flag[80];
        snprintf(want_flag, sizeof want_flag, ".B \\-\\-%s\n", opt);
        snprintf(want, sizeof want, ".BI \\-\\-%s \"", opt);
        ck_assert_msg(strstr(man, want_flag) || strstr(man, want), "the man page does not document --%s", opt);
    }
    done(&r);
    ck_assert_ptr_nonnull(strstr(man, "At most 64 variables"));
    ck_assert_ptr_nonnull(strstr(man, "at most 63 characters"));
    ck_assert_ptr_nonnull(strstr(man, "99 nested\nparentheses fit and 100 are refused"));
    ck_assert_ptr_nonnull(strstr(man, "nests at most 200 levels"));
    free(man);

    char *ok = nested(99, true), *deep = nested(100, true), *signs = nested(198, false), *more = nested(199, false);
    r = run(ARGS("--json", ok, "x=1"));
    ck_assert_msg(r.status == 0, "99 parentheses: %s", r.err);
    done(&r);
    r = run(ARGS("--json", deep, "x=1"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "formula nested too deeply"));
    done(&r);
    r = run(ARGS("--json", "--", signs, "x=1"));
    ck_assert_msg(r.status == 0, "198 signs: %s", r.err);
    done(&r);
    r = run(ARGS("--json", "--", more, "x=1"));
    ck_assert_int_eq(r.status, 2);
    done(&r);
    free(ok), free(deep), free(signs), free(more);

    /* 64 variables of 63 characters: v00xxx...; one more variable, or one more character, fails */
    static char names[66][80], formula[66 * 66];
    const char *args[70];
    size_t at = 0;
    for (int i = 0; i < 65; i++) {
        snprintf(names[i], sizeof names[i], "v%02d%060d=1", i, 0);
        at += (size_t)snprintf(formula + at, sizeof formula - at, "%s%.63s", i ? "+" : "", names[i]);
    }
    args[0] = "--json";
    args[1] = formula;
    for (int i = 0; i < 65; i++) args[2 + i] = names[i];
    args[2 + 64] = NULL;
    formula[64 * 64 - 1] = 0; /* the first 64 names */
    r = run(args);
    ck_assert_msg(r.status == 0, "64 variables: %s", r.err);
    done(&r);
    formula[64 * 64 - 1] = '+';
    args[2 + 64] = names[64];
    args[2 + 65] = NULL;
    r = run(args);
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "backprop: too many variables (at most 64)\n(backprop --help for usage)\n");
    done(&r);
    snprintf(names[65], sizeof names[65], "v%063d=1", 0);
    r = run(ARGS("x", names[65]));
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "variable name too long"));
    done(&r);
}
END_TEST

START_TEST(nonfinite_results_are_reported)
{
    run_result r = run(ARGS("log(x - 1) * y", "x=0", "y=2"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "backprop: the value holds NaN: it first appears at node #4 (log)\n");
    done(&r);
    r = run(ARGS("1/x", "x=0"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "backprop: the value holds an infinity: it first appears at node #1 (1/x)\n");
    done(&r);
    r = run(ARGS("--json", "sqrt(x)", "x=0"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.out, "{\"value\": 0, \"gradient\": {\"x\": null}}\n");
    ck_assert_str_eq(r.err, "backprop: the gradient holds an infinity: it first appears at node x (var)\n");
    done(&r);
}
END_TEST

START_TEST(help_exits_zero)
{
    run_result r = run(ARGS("--help"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "--trace"));
    done(&r);
}
END_TEST

/* ---- --hessian ------------------------------------------------------------------------------ */

/* f = x*y*z + x^2: d2f/dx2 = 2, d2f/dx dy = z, d2f/dx dz = y, d2f/dy dz = x, the rest 0. */
START_TEST(golden_hessian) { check_golden("hessian.txt", ARGS("--hessian", "x*y*z + x^2", "x=2", "y=3", "z=5")); }
END_TEST

START_TEST(hessian_json_in_argument_order)
{
    run_result r = run(ARGS("--json", "--hessian", "x*y*z + x^2", "x=2", "y=3", "z=5"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.err, "");
    ck_assert_str_eq(r.out, "{\"value\": 34, \"gradient\": {\"x\": 19, \"y\": 10, \"z\": 6}, \"hessian\": "
                            "{\"x\": {\"x\": 2, \"y\": 5, \"z\": 3}, \"y\": {\"x\": 5, \"y\": 0, \"z\": 2}, "
                            "\"z\": {\"x\": 3, \"y\": 2, \"z\": 0}}}\n");
    done(&r);
    /* rows and columns follow the command line, not the formula */
    r = run(ARGS("--hessian", "--json", "x*y*z + x^2", "z=5", "x=2", "y=3"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "{\"value\": 34, \"gradient\": {\"z\": 6, \"x\": 19, \"y\": 10}, \"hessian\": "
                            "{\"z\": {\"z\": 0, \"x\": 3, \"y\": 2}, \"x\": {\"z\": 3, \"x\": 2, \"y\": 5}, "
                            "\"y\": {\"z\": 2, \"x\": 5, \"y\": 0}}}\n");
    done(&r);
    /* without variables the matrix is empty, and without --hessian there is none */
    r = run(ARGS("--json", "--hessian", "2+3"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "{\"value\": 5, \"gradient\": {}, \"hessian\": {}}\n");
    done(&r);
    r = run(ARGS("--json", "x*y", "x=1", "y=2"));
    ck_assert_ptr_null(strstr(r.out, "hessian"));
    done(&r);
}
END_TEST

/* The table's columns line up under their names, and --digits holds for its numbers too. */
START_TEST(hessian_text_honours_digits)
{
    run_result r = run(ARGS("--hessian", "--digits", "1", "x*y*z + x^2", "z=5", "x=2", "y=3"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "gradient: df/dz = 6.0, df/dx = 19.0, df/dy = 10.0\n"
                                        "hessian: d2f/d(row) d(column)\n"
                                        "       z    x    y\n"
                                        "  z  0.0  3.0  2.0\n"
                                        "  x  3.0  2.0  5.0\n"
                                        "  y  2.0  5.0  0.0\n\n"
                                        "backward pass"));
    done(&r);
    r = run(ARGS("--hessian", "--digits", "-1", "long_name*x/3", "long_name=1", "x=1"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "hessian: d2f/d(row) d(column)\n"
                                        "                       long_name                    x\n"
                                        "  long_name                    0  0.33333333333333331\n"
                                        "  x          0.33333333333333331                    0\n"));
    done(&r);
    /* --trace composes: the forward walk still follows the report */
    r = run(ARGS("--hessian", "--trace", "x*x", "x=3"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "hessian: d2f/d(row) d(column)\n        x\n  x  2.00\n\nforward pass"));
    done(&r);
    /* and the walks do not see the Hessian's nodes, appended to the same graph after the root */
    r = run(ARGS("--hessian", "--trace", NEURON));
    ck_assert_int_eq(r.status, 0);
    char *want = read_golden("neuron.txt");
    ck_assert_ptr_nonnull(strstr(r.out, "\nforward pass"));
    ck_assert_str_eq(strstr(r.out, "\nforward pass"), strstr(want, "\nforward pass"));
    free(want);
    done(&r);
}
END_TEST

/* Reads "hessian": {...} of a --json report into H (n x n, row-major) in key order. */
static void parse_hessian(const char *json, int n, double *H)
{
    const char *p = strstr(json, "\"hessian\": {");
    ck_assert_ptr_nonnull(p);
    for (int k = 0; k < n * n; k++) {
        do { /* past the keys of the object and of the rows, to a column's */
            p = strstr(p + 1, "\": ");
            ck_assert_ptr_nonnull(p);
        } while (p[3] == '{');
        char *end;
        H[k] = strtod(p + 3, &end);
        ck_assert_msg(end != p + 3, "no number at %.20s", p);
    }
}

/* The lecture's neuron against torch.autograd.functional.hessian in float64 (computed once;
 * rows and columns x0, x1, w0, w1, w2). */
START_TEST(hessian_of_the_neuron_matches_torch)
{
    static const double want[5][5] = {
        {-0.36343099069179358, 0.54514648603769034, 0.37832742858737867, 0.36343099069179358, -0.18171549534589679},
        {0.54514648603769045, -0.81771972905653567, -0.27257324301884522, -0.3485345527962086, 0.27257324301884522},
        {0.37832742858737867, -0.27257324301884517, -0.090857747672948394, -0.18171549534589679, 0.090857747672948394},
        {0.36343099069179358, -0.34853455279620849, -0.18171549534589679, -0.36343099069179358, 0.18171549534589679},
        {-0.18171549534589679, 0.27257324301884517, 0.090857747672948394, 0.18171549534589679, -0.090857747672948394},
    };
    run_result r = run(ARGS("--json", "--hessian", NEURON));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "\"hessian\": {\"x0\": {\"x0\": "));
    ck_assert_ptr_nonnull(strstr(r.out, "\"w2\": {\"x0\": "));
    double H[25];
    parse_hessian(r.out, 5, H);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            ck_assert_msg(fabs(H[i * 5 + j] - want[i][j]) <= 1e-12 * fabs(want[i][j]) + 1e-15,
                          "H[%d][%d] = %.17g, torch %.17g", i, j, H[i * 5 + j], want[i][j]);
    done(&r);
    r = run(ARGS("--hessian", NEURON));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "\n  x1   0.55  -0.82  -0.27  -0.35   0.27\n"));
    done(&r);
}
END_TEST

/* At a kink the second derivative is 0 and the first is PyTorch's (relu'(0) = 0, abs'(0) = 0,
 * max and min split a tie evenly), so a product of kinks keeps its cross terms: the
 * numbers are torch.autograd.functional.hessian's at x = y = 0. */
START_TEST(hessian_at_kinks_is_torchs)
{
    run_result r = run(ARGS("--json", "--hessian", "relu(x) + abs(y) + max(x,y) + min(x,y)", "x=0", "y=0"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "{\"value\": 0, \"gradient\": {\"x\": 1, \"y\": 1}, \"hessian\": "
                            "{\"x\": {\"x\": 0, \"y\": 0}, \"y\": {\"x\": 0, \"y\": 0}}}\n");
    done(&r);
    r = run(ARGS("--json", "--hessian", "x*relu(x) + y*abs(y) + max(x,y)*min(x,y)", "x=0", "y=0"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "{\"value\": 0, \"gradient\": {\"x\": 0, \"y\": 0}, \"hessian\": "
                            "{\"x\": {\"x\": 0.5, \"y\": 0.5}, \"y\": {\"x\": 0.5, \"y\": 0.5}}}\n");
    done(&r);
}
END_TEST

/* Bad combinations are usage errors with nothing on stdout; a non-finite entry is printed as
 * null (JSON) or inf/nan (text), named on stderr, and the exit status is 1. */
START_TEST(hessian_errors)
{
    static const char *const pictures[] = {"--dot", "--svg", "--html"};
    for (int i = 0; i < 3; i++) {
        run_result r = run(ARGS("--hessian", pictures[i], "x*y", "x=1", "y=2"));
        ck_assert_int_eq(r.status, 2);
        ck_assert_str_eq(r.out, "");
        char want[200];
        snprintf(want, sizeof want,
                 "backprop: --hessian goes with the text report or --json, not with %s\n(backprop --help for usage)\n",
                 pictures[i]);
        ck_assert_str_eq(r.err, want);
        done(&r);
    }
    run_result r = run(ARGS("--hessian", "--hessian=1", "x", "x=1"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "backprop: --hessian takes no value\n(backprop --help for usage)\n");
    done(&r);
    r = run(ARGS("--hessian", "x+", "x=1"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.out, "");
    done(&r);
    /* finite value and gradient, infinite curvature: d2/dx2 x^1.5 = 0.75/sqrt(x) */
    r = run(ARGS("--json", "--hessian", "x^1.5 + y", "x=0", "y=1"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.out, "{\"value\": 1, \"gradient\": {\"x\": 0, \"y\": 1}, \"hessian\": "
                            "{\"x\": {\"x\": null, \"y\": 0}, \"y\": {\"x\": 0, \"y\": 0}}}\n");
    ck_assert_str_eq(r.err, "backprop: the Hessian holds an infinity: d2f/dx dx\n");
    done(&r);
    r = run(ARGS("--hessian", "x^1.5", "x=0"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.out, "\n  x  inf\n"));
    done(&r);
    /* a gradient already non-finite is reported where it starts, once */
    r = run(ARGS("--json", "--hessian", "sqrt(x)", "x=0"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "backprop: the gradient holds an infinity: it first appears at node x (var)\n");
    done(&r);
    r = run(ARGS("--help"));
    ck_assert_ptr_nonnull(strstr(r.out, "--hessian"));
    done(&r);
}
END_TEST


/* ---- issue 18: a friendlier CLI ------------------------------------------------------------- */

START_TEST(power_hint_constants_and_names)
{
    expect_bad_input(ARGS("x**2", "x=3"), "backprop: column 3: unexpected '*': a power is written with ^ (x^2, not x**2)\n"
                                          "  x**2\n"
                                          "    ^\n");
    char want[128];
    run_result r = run(ARGS("--json", "pi*x + e", "x=2"));
    ck_assert_int_eq(r.status, 0);
    snprintf(want, sizeof want, "{\"value\": %.17g, \"gradient\": {\"x\": %.17g}}\n", 2 * 3.14159265358979323846 + exp(1.0),
             3.14159265358979323846);
    ck_assert_str_eq(r.out, want);
    done(&r);
    /* a variable the student names e is theirs, not Euler's number */
    r = run(ARGS("--json", "e*2", "e=3"));
    ck_assert_str_eq(r.out, "{\"value\": 6, \"gradient\": {\"e\": 2}}\n");
    done(&r);
    /* the caret sits under the operator whose shapes do not fit */
    expect_bad_input(ARGS("x + W@v", "x=1", "W=[[1,2]]", "v=[1,2,3]"),
                     "backprop: column 6: matmul: [1,2] @ [3]: inner dimensions 2 and 3 differ\n"
                     "  x + W@v\n"
                     "       ^\n");
}
END_TEST

/* The default digits: 2 decimals, as the slides, and two significant digits for a number that
 * would print as 0.00; --help says so. */
START_TEST(small_numbers_never_print_as_zero)
{
    run_result r = run(ARGS("1e-3*x", "x=2"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "value: f = 0.0020\ngradient: df/dx = 0.0010\n"));
    ck_assert_ptr_null(strstr(r.out, "0.00 "));
    ck_assert_ptr_null(strstr(r.out, "0.00\n"));
    done(&r);
    r = run(ARGS("x*1e-12 + y", "x=1", "y=3"));
    ck_assert_ptr_nonnull(strstr(r.out, "value: f = 3.00\ngradient: df/dx = 1.0e-12, df/dy = 1.00\n"));
    done(&r);
    r = run(ARGS("--digits", "2", "1e-3*x", "x=2"));
    ck_assert_ptr_nonnull(strstr(r.out, "value: f = 0.00\n"));
    done(&r);
    /* the slides' examples keep their two decimals */
    r = run(ARGS(NEURON));
    ck_assert_ptr_nonnull(strstr(r.out, "value: f = 0.73\n"));
    done(&r);
    r = run(ARGS("--help"));
    ck_assert_ptr_nonnull(strstr(r.out, "so that no nonzero number prints as 0.00"));
    done(&r);
}
END_TEST

/* ---- issue 18: tensors ---------------------------------------------------------------------- */

#define NET "ce(W2@relu(W1@x+b1)+b2, 1)", "W1=[[1,-1],[0.5,2]]", "b1=[0,1]", "W2=[[1,0],[-1,1],[0.5,0.5]]", \
            "b2=[0,0,0]", "x=[1,2]"

START_TEST(tensor_values_and_numpy_matmul)
{
    /* [2,2] @ [2] is a vector, [2] @ [2] a number, [2] @ [2,2] a vector: NumPy's rules */
    run_result r = run(ARGS("--json", "sum(W@x) + x@x + sum(x@W)", "W=[[1,2],[3,4]]", "x=[1,-1]"));
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_str_eq(r.out, "{\"value\": -4, \"gradient\": {\"W\": [[2, 0], [0, -2]], \"x\": [9, 11]}}\n");
    done(&r);
    /* NumPy's broadcasting: [2,3] + [3] */
    r = run(ARGS("--json", "sum((A + b)^2)", "A=[[1,2,3],[4,5,6]]", "b=[1,0,-1]"));
    ck_assert_str_eq(r.out, "{\"value\": 87, \"gradient\": {\"A\": [[4, 4, 4], [10, 10, 10]], \"b\": [14, 14, 14]}}\n");
    done(&r);
    /* axes */
    r = run(ARGS("--json", "sum(sum(A, 0) * mean(A, -1)@B)", "A=[[1,2],[3,4]]", "B=[[1,0],[0,1]]"));
    ck_assert_msg(r.status == 0, "%s", r.err);
    done(&r);
}
END_TEST

START_TEST(tensor_walk_in_matrix_form)
{
    run_result r = run(ARGS("--trace", NET));
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert_str_eq(r.err, "");
    ck_assert_ptr_nonnull(strstr(r.out, "  W1     var                    [2,2]    = [[1.00, -1.00], [0.50, 2.00]]\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "  #1     @      (W1, x)         [2]      = [-1.00, 4.50]\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "softmax + ce: downstream = softmax(z) − onehot(y) [3] (z = #5, y = 1)\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "matmul [3,2]@[2]: downstream dW2 = upstream ⊗ #3 [3,2]; d#3 = W2ᵀ · upstream [2]\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "[2] + [2]: downstream d#1 = upstream [2]; db1 = upstream [2]\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "relu: downstream = upstream ⊙ (1 if u > 0, else 0), u = #2 [2]\n"));
    done(&r);
    r = run(ARGS("W@x + sum(W)", "W=[[1,2,3],[4,5,6]]", "x=[[1],[0],[-1]]"));
    ck_assert_msg(r.status == 2, "%s", r.err); /* [2,1]: not one number */
    ck_assert_str_eq(r.err, "backprop: f has shape [2,1], and a gradient is of one number: reduce it, as sum(...) or "
                            "mean(...) does\n");
    done(&r);
    r = run(ARGS("sum(W@x)", "W=[[1,2,3],[4,5,6]]", "x=[[1],[0],[-1]]"));
    ck_assert_ptr_nonnull(strstr(r.out, "matmul [2,3]@[3,1]: downstream dW = upstream · xᵀ [2,3]; dx = Wᵀ · upstream [3,1]\n"));
    ck_assert_ptr_nonnull(strstr(r.out, "sum: downstream = upstream broadcast to [2,1]\n"));
    done(&r);
    /* a variable used twice: its copy line sums the two edges' gradients */
    r = run(ARGS("sum(W*W)", "W=[[1,2],[3,4]]"));
    ck_assert_ptr_nonnull(strstr(r.out, "  W      copy   upstream [[1.00, 2.00], [3.00, 4.00]] + [[1.00, 2.00], [3.00, 4.00]]   "
                                        "sum of 2 uses [[2.00, 4.00], [6.00, 8.00]]\n"));
    done(&r);
    /* a larger tensor is summarised, first and last three entries per axis */
    r = run(ARGS("sum(x)", "x=[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,"
                 "34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50]"));
    ck_assert_ptr_nonnull(strstr(r.out, "[1.00, 1.00, 1.00, ..., 1.00, 1.00, 1.00]"));
    done(&r);
}
END_TEST

START_TEST(tensor_errors)
{
    struct { const char *const *args; const char *msg; } cases[] = {
        {ARGS("sum(x)", "x=[1,[2]]"),
         "backprop: malformed tensor in 'x=[1,[2]]': a list where the nesting wants a number (ragged nesting) at character 4\n"
         "(backprop --help for usage)\n"},
        {ARGS("sum(x)", "x=[[1,2],[3]]"),
         "backprop: malformed tensor in 'x=[[1,2],[3]]': rows of different lengths (ragged nesting) at character 11\n"
         "(backprop --help for usage)\n"},
        {ARGS("sum(x)", "x=[]"), "backprop: malformed tensor in 'x=[]': an empty list at character 2\n(backprop --help for usage)\n"},
        {ARGS("sum(x)", "x=[1,2"), "backprop: malformed tensor in 'x=[1,2': expected ']' before the end at character 5\n"
                                   "(backprop --help for usage)\n"},
        {ARGS("--hessian", "sum(x)", "x=[1,2]"), "backprop: --hessian takes variables that are numbers, not tensors\n"},
        {ARGS("ce(z, 3)", "z=[1,2,3]"), "backprop: column 7: ce: label 3 is not a class of logits [3] (0 to 2)\n  ce(z, 3)\n        ^\n"},
        {ARGS("ce(z, y)", "z=[[1,2],[3,4]]", "y=[1]"),
         "backprop: column 7: ce: logits [2,2] take one label per row, not 1\n  ce(z, y)\n        ^\n"},
        {ARGS("ce(z)", "z=[1,2]"), "backprop: column 5: ce takes the logits and the label: ce(z, 2)\n  ce(z)\n      ^\n"},
        {ARGS("sum(x, y)", "x=[1,2]", "y=0"),
         "backprop: column 8: an axis is a whole number written in the formula (0, 1, -1, ...)\n  sum(x, y)\n         ^\n"},
        {ARGS("sum(x + y)", "x=[1,2]", "y=[1,2,3]"), NULL},
        {ARGS("x@2", "x=[1,2]"),
         "backprop: column 2: matmul: [2] @ []: @ takes vectors and matrices; scale by a number with *\n  x@2\n   ^\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result r = run(cases[i].args);
        ck_assert_msg(r.status == 2, "case %zu: exit %d (%s)", i, r.status, r.err);
        if (cases[i].msg) ck_assert_str_eq(r.err, cases[i].msg);
        else ck_assert_ptr_nonnull(strstr(r.err, "backprop: column 7: add: "));
        ck_assert_str_eq(r.out, "");
        done(&r);
    }
}
END_TEST

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_cli BACKPROP_BINARY GOLDEN_DIR\n");
        return 2;
    }
    cli = argv[1];
    golden = argv[2];
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, golden_neuron);
    tcase_add_test(tc, golden_sum);
    tcase_add_test(tc, golden_copy);
    tcase_add_test(tc, golden_neuron_json);
    tcase_add_test(tc, golden_neuron_svg);
    tcase_add_test(tc, golden_sum_dot);
    tcase_add_test(tc, golden_neuron_html);
    tcase_add_test(tc, html_stepper);
    tcase_add_test(tc, default_report_has_the_slides_numbers);
    tcase_add_test(tc, json_is_one_object_in_argument_order);
    tcase_add_test(tc, grammar);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, nonfinite_results_are_reported);
    tcase_add_test(tc, double_dash_ends_the_options);
    tcase_add_test(tc, man_page_documents_options_and_limits);
    tcase_add_test(tc, help_exits_zero);
    tcase_add_test(tc, golden_hessian);
    tcase_add_test(tc, hessian_json_in_argument_order);
    tcase_add_test(tc, hessian_text_honours_digits);
    tcase_add_test(tc, hessian_of_the_neuron_matches_torch);
    tcase_add_test(tc, hessian_at_kinks_is_torchs);
    tcase_add_test(tc, hessian_errors);
    tcase_add_test(tc, power_hint_constants_and_names);
    tcase_add_test(tc, small_numbers_never_print_as_zero);
    tcase_add_test(tc, tensor_values_and_numpy_matmul);
    tcase_add_test(tc, tensor_walk_in_matrix_form);
    tcase_add_test(tc, tensor_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
