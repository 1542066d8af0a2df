/* The flat scalar tape (ad_real.h): values carry up to two pending terms, merged by each
 * operation and written to the tape only on overflow.  The merge cases one by one (what is
 * written, and the gradients), random expressions against the graph engine and against
 * central differences, out-of-memory at every allocation, and steady-state allocation.  Then
 * second order (ad_real_hvp, ad_real_hessian): every row's second derivatives, Hessians
 * against differences of gradients, Rosenbrock's closed form, and the same memory rules. */
#include "testutil.h"
#include "ad_real.h"
#include "bench/rosenbrock.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static double rel_err(double got, double want) { return fabs(got - want) / fmax(1, fabs(want)); }

/* ---- the merge, case by case ------------------------------------------------------------- */

START_TEST(constants_and_variables)
{
    ad_tape *t = ad_tape_new();
    ad_real c = ad_real_const(2.5), x = ad_real_var(t, 3);
    ck_assert_int_eq(c.i[0], -1);
    ck_assert_int_eq(x.i[0], 0);
    ck_assert_int_eq(x.i[1], -1);
    ck_assert_double_eq(x.d[0], 1);
    /* constants never reach the tape, whatever is done with them */
    ad_real k = ad_real_mul(t, ad_real_add(t, c, c), ad_real_sin(t, c));
    ck_assert_int_eq(k.i[0], -1);
    ck_assert_double_eq(k.v, 5 * sin(2.5));
    /* a constant operand leaves the other's terms, scaled */
    ad_real y = ad_real_mul(t, ad_real_sub(t, c, x), c); /* (2.5 - x) * 2.5 */
    ck_assert_int_eq(t->n, 1);
    ck_assert_int_eq(t->nedge, 0);
    ck_assert_int_eq(ad_tape_backward(t, y), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), -2.5);
    ck_assert_double_eq(ad_real_grad(t, c), 0);
    /* the gradient of a constant is 0 everywhere */
    ck_assert_int_eq(ad_tape_backward(t, k), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(square_is_one_term)
{
    ad_tape *t = ad_tape_new();
    ad_real x = ad_real_var(t, 3);
    ad_real y = ad_real_mul(t, x, x);
    ck_assert_int_eq(y.i[0], x.i[0]);
    ck_assert_int_eq(y.i[1], -1);
    ck_assert_double_eq(y.d[0], 6);
    ad_real z = ad_real_mul(t, y, x); /* x^3 */
    ck_assert_int_eq(t->n, 1);        /* nothing but the variable */
    ck_assert_int_eq(t->nedge, 0);
    ck_assert_int_eq(ad_tape_backward(t, z), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), 27);
    /* a two-term value times itself stays two terms: t*t of t = x - y */
    ad_real w = ad_real_var(t, 2), d = ad_real_sub(t, x, w), dd = ad_real_mul(t, d, d);
    ck_assert_int_eq(t->n, 2);
    ck_assert_int_eq(ad_tape_backward(t, dd), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), 2);
    ck_assert_double_eq(ad_real_grad(t, w), -2);
    ad_tape_free(t);
}
END_TEST

/* Every way two operands of one or two terms can overlap, with what it costs the tape. */
START_TEST(duplicates_merge)
{
    ad_tape *t = ad_tape_new();
    ad_real x = ad_real_var(t, 1.5), y = ad_real_var(t, -2), z = ad_real_var(t, 0.5);
    ad_real xy = ad_real_add(t, x, y), yx = ad_real_add(t, y, x);
    struct {
        ad_real f;
        double gx, gy, gz;
        int entries; /* written besides the three variables */
    } c[] = {
        {ad_real_add(t, xy, x), 2, 1, 0, 0},          /* two terms + one, first matches */
        {ad_real_add(t, xy, y), 1, 2, 0, 0},          /* ... second matches */
        {ad_real_add(t, x, xy), 2, 1, 0, 0},          /* one + two */
        {ad_real_add(t, y, xy), 1, 2, 0, 0},
        {ad_real_sub(t, xy, yx), 0, 0, 0, 0},         /* same terms, crossed order */
        {ad_real_add(t, xy, xy), 2, 2, 0, 0},         /* same order */
        {ad_real_mul(t, xy, yx), -1, -1, 0, 0},       /* d(x+y)^2 = 2(x+y) = -1 */
        {ad_real_add(t, xy, ad_real_add(t, x, z)), 2, 1, 1, 1}, /* one shared: three terms */
        {ad_real_add(t, xy, ad_real_add(t, z, y)), 1, 2, 1, 1},
        {ad_real_add(t, xy, ad_real_add(t, z, x)), 2, 1, 1, 1},
        {ad_real_add(t, xy, ad_real_add(t, y, z)), 1, 2, 1, 1},
        {ad_real_add(t, xy, z), 1, 1, 1, 1},           /* two + one new */
        {ad_real_add(t, z, xy), 1, 1, 1, 1},           /* one new + two */
    };
    int n = (int)(sizeof c / sizeof *c), written = 0;
    for (int k = 0; k < n; k++) written += c[k].entries;
    ck_assert_int_eq(t->n, 3 + written);
    for (int k = 0; k < n; k++) {
        ck_assert_int_eq(ad_tape_backward(t, c[k].f), AD_OK);
        ck_assert_msg(ad_real_grad(t, x) == c[k].gx && ad_real_grad(t, y) == c[k].gy &&
                          ad_real_grad(t, z) == c[k].gz,
                      "case %d: %g %g %g", k, ad_real_grad(t, x), ad_real_grad(t, y), ad_real_grad(t, z));
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(overflow_writes_one_entry)
{
    ad_tape *t = ad_tape_new();
    ad_real x = ad_real_var(t, 1), y = ad_real_var(t, 2), z = ad_real_var(t, 3), w = ad_real_var(t, 4);
    /* three distinct terms: one entry with three edges, and the result is that entry */
    ad_real s = ad_real_add(t, ad_real_mul_scalar(t, ad_real_add(t, x, y), 2), z);
    ck_assert_int_eq(t->n, 5);
    ck_assert_int_eq(t->nedge, 3);
    ck_assert_int_eq(s.i[0], 4);
    ck_assert_int_eq(s.i[1], -1);
    ck_assert_double_eq(s.d[0], 1);
    ck_assert_double_eq(s.v, 9);
    /* four: (x - y) * (z + w) */
    ad_real p = ad_real_mul(t, ad_real_sub(t, x, y), ad_real_add(t, z, w));
    ck_assert_int_eq(t->n, 6);
    ck_assert_int_eq(t->nedge, 7);
    ck_assert_int_eq(ad_tape_backward(t, p), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), 7);
    ck_assert_double_eq(ad_real_grad(t, y), -7);
    ck_assert_double_eq(ad_real_grad(t, z), -1);
    ck_assert_double_eq(ad_real_grad(t, w), -1);
    /* a written entry has an adjoint of its own: d(s * s)/ds = 2s */
    ad_real q = ad_real_mul(t, s, s);
    ck_assert_int_eq(ad_tape_backward(t, q), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, s), 18);
    ck_assert_double_eq(ad_real_grad(t, x), 36);
    /* a pending combination has none */
    ck_assert_double_eq(ad_real_grad(t, ad_real_add(t, x, y)), 0);
    ck_assert_double_eq(ad_real_grad(t, ad_real_mul_scalar(t, x, 2)), 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(dead_relu_is_a_constant)
{
    ad_tape *t = ad_tape_new();
    ad_real x = ad_real_var(t, -1), y = ad_real_var(t, 2);
    ad_real r = ad_real_relu(t, ad_real_add(t, x, y)), d = ad_real_relu(t, ad_real_sub(t, x, y));
    ck_assert_int_eq(d.i[0], -1);
    ck_assert_double_eq(d.v, 0);
    ad_real f = ad_real_add(t, ad_real_mul(t, r, d), r);
    ck_assert_int_eq(ad_tape_backward(t, f), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), 1);
    ck_assert_double_eq(ad_real_grad(t, y), 1);
    ad_tape_free(t);
}
END_TEST

START_TEST(backward_checks_its_argument)
{
    ad_tape *t = ad_tape_new();
    ad_real x = ad_real_var(t, 1), y = ad_real_var(t, 2), z = ad_real_var(t, 3);
    ad_real f = ad_real_add(t, ad_real_add(t, x, y), z); /* three terms: written, entry 3 */
    ck_assert_int_eq(f.i[0], 3);
    ad_tape_reset(t);
    (void)ad_real_var(t, 1);
    ck_assert_int_eq(ad_tape_backward(t, f), AD_ERR_ARG); /* from before the reset */
    ck_assert_int_eq(ad_tape_backward(t, x), AD_ERR_ARG); /* the error is kept */
    ck_assert_int_eq(ad_tape_backward(NULL, x), AD_ERR_NULL);
    ck_assert_double_eq(ad_real_grad(NULL, x), 0);
    ad_tape_reset(t);
    x = ad_real_var(t, 1);
    ck_assert_int_eq(ad_tape_backward(t, x), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, x), 1);
    ad_tape_free(t);
}
END_TEST

/* ---- the Rosenbrock loop: one entry per iteration ---------------------------------------- */

/* rosenbrock_tape, the loop the benchmarks time (tests/bench/rosenbrock.h). */

/* The same arithmetic in the same order on plain doubles. */
static double rosenbrock_plain(const double *x, int n)
{
    double f = 0;
    for (int i = 0; i + 1 < n; i++) {
        double t = x[i + 1] - x[i] * x[i], u = 1 - x[i];
        f = f + (t * t * 100 + u * u);
    }
    return f;
}

START_TEST(rosenbrock_gradient)
{
    enum { N = 1000 };
    double x[N], g[N], f;
    for (int i = 0; i < N; i++) x[i] = 0.5 + 0.37 * sin(i);
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_real_gradient(t, rosenbrock_tape, N, x, NULL, &f, g), AD_OK);
    ck_assert_double_eq(f, rosenbrock_plain(x, N));
    ck_assert_int_eq(t->n, N + (N - 2)); /* the variables, then one entry per iteration but the first */
    ck_assert_int_eq(t->nedge, 3 * (N - 2));
    for (int i = 0; i < N; i++) {
        double want = (i + 1 < N ? -400 * x[i] * (x[i + 1] - x[i] * x[i]) - 2 * (1 - x[i]) : 0) +
                      (i > 0 ? 200 * (x[i] - x[i - 1] * x[i - 1]) : 0);
        ck_assert_msg(rel_err(g[i], want) < 1e-12, "g[%d] = %.17g, want %.17g", i, g[i], want);
    }
    /* a tape made inside gives the same */
    double g2[N], f2;
    ck_assert_int_eq(ad_real_gradient(NULL, rosenbrock_tape, N, x, NULL, &f2, g2), AD_OK);
    ck_assert_double_eq(f2, f);
    ck_assert_mem_eq(g2, g, sizeof g);
    ck_assert_int_eq(ad_real_gradient(t, rosenbrock_tape, 0, NULL, NULL, &f2, NULL), AD_OK);
    ck_assert_double_eq(f2, 0);
    ck_assert_int_eq(ad_real_gradient(t, NULL, 1, x, NULL, &f2, NULL), AD_ERR_NULL);
    ad_tape_free(t);
}
END_TEST

/* ---- random expressions: one script, replayed on the tape and on the graph --------------- */

enum {
    S_CONST, S_ADD, S_SUB, S_MUL, S_DIV, S_POW, S_MAX, S_MIN, S_ADDC, S_MULC, S_CSUB, S_CDIV,
    S_NEG, S_SQUARE, S_SQRT, S_EXP, S_LOG, S_SIN, S_COS, S_TAN, S_TANH, S_SIGMOID, S_POWC,
    S_ABS, S_RELU, S_COUNT
};
enum { MAXSTEP = 120 };

typedef struct {
    int op, a, b;  /* operands: earlier slots (the variables are slots 0..n-1) */
    double c;      /* the constant of S_CONST, S_ADDC, ... */
} step;

typedef struct {
    int nvar, nstep;
    step s[MAXSTEP];
} script;

/* The value of one step on plain doubles, to choose steps that stay in their domains. */
static double eval_step(const step *s, const double *v)
{
    double a = v[s->a], b = v[s->b], c = s->c;
    switch (s->op) {
    case S_CONST: return c;
    case S_ADD: return a + b;
    case S_SUB: return a - b;
    case S_MUL: return a * b;
    case S_DIV: return a / b;
    case S_POW: return pow(a, b);
    case S_MAX: return fmax(a, b);
    case S_MIN: return fmin(a, b);
    case S_ADDC: return a + c;
    case S_MULC: return a * c;
    case S_CSUB: return c - a;
    case S_CDIV: return c / a;
    case S_NEG: return -a;
    case S_SQUARE: return a * a;
    case S_SQRT: return sqrt(a);
    case S_EXP: return exp(a);
    case S_LOG: return log(a);
    case S_SIN: return sin(a);
    case S_COS: return cos(a);
    case S_TAN: return tan(a);
    case S_TANH: return tanh(a);
    case S_SIGMOID: return 1 / (1 + exp(-a));
    case S_POWC: return pow(a, c);
    case S_ABS: return fabs(a);
    default: return a > 0 ? a : 0;
    }
}

/* Whether a step is well away from trouble at these values: domains, overflow, and (when
 * smooth) kinks, so that central differences see one branch. */
static bool step_ok(const step *s, const double *v, bool smooth)
{
    double a = v[s->a], b = v[s->b];
    switch (s->op) {
    case S_DIV: if (fabs(b) < 0.2) return false; break;
    case S_CDIV: if (fabs(a) < 0.2) return false; break;
    case S_POW: if (a < 0.2 || fabs(b) > 3) return false; break;
    case S_POWC: case S_SQRT: case S_LOG: if (a < 0.2) return false; break;
    case S_EXP: if (fabs(a) > 3) return false; break;
    case S_TAN: if (fabs(a) > 1.2) return false; break;
    case S_MAX: case S_MIN: if (smooth && fabs(a - b) < 1e-3) return false; break;
    case S_ABS: case S_RELU: if (smooth && fabs(a) < 1e-3) return false; break;
    default: break;
    }
    double r = eval_step(s, v);
    return isfinite(r) && fabs(r) < 50;
}

/* Operands favour the latest slots and the variables, and are often the same slot, so that
 * terms overlap in every way the merge distinguishes. */
static int pick(ad_rng *r, int nslot, int nvar)
{
    double u = ad_rng_uniform(r);
    if (u < 0.3) return (int)(ad_rng_uniform(r) * nvar);
    int back = 1 + (int)(ad_rng_uniform(r) * 6);
    return nslot - back >= 0 ? nslot - back : 0;
}

static void make_script(script *sc, uint64_t seed, int nvar, bool smooth, double *x)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    double v[MAXSTEP + 16];
    sc->nvar = nvar;
    for (int i = 0; i < nvar; i++) v[i] = x[i] = 2 * ad_rng_uniform(&r) - 1;
    int n = 0;
    while (n < MAXSTEP) {
        step s = {.op = (int)(ad_rng_uniform(&r) * S_COUNT), .c = 4 * ad_rng_uniform(&r) - 2};
        if (smooth && (s.op == S_ABS || s.op == S_RELU || s.op == S_MAX || s.op == S_MIN)) continue;
        s.a = pick(&r, nvar + n, nvar);
        s.b = ad_rng_uniform(&r) < 0.2 ? s.a : pick(&r, nvar + n, nvar);
        if (s.op == S_POWC) s.c = (double[]){-1.5, 0.5, 2, 3}[(int)(ad_rng_uniform(&r) * 4)];
        if (!step_ok(&s, v, smooth)) s.op = S_SIN;
        v[nvar + n] = eval_step(&s, v);
        sc->s[n++] = s;
    }
    sc->nstep = n;
}

/* The output: the sum of the last few slots, so that many paths reach it. */
enum { OUTPUTS = 5 };

static ad_real script_tape(ad_tape *t, const ad_real *x, int n, void *user)
{
    const script *sc = user;
    ad_real v[MAXSTEP + 16];
    for (int i = 0; i < n; i++) v[i] = x[i];
    for (int k = 0; k < sc->nstep; k++) {
        const step *s = &sc->s[k];
        ad_real a = v[s->a], b = v[s->b], *o = &v[n + k];
        double c = s->c;
        switch (s->op) {
        case S_CONST: *o = ad_real_const(c); break;
        case S_ADD: *o = ad_real_add(t, a, b); break;
        case S_SUB: *o = ad_real_sub(t, a, b); break;
        case S_MUL: *o = ad_real_mul(t, a, b); break;
        case S_DIV: *o = ad_real_div(t, a, b); break;
        case S_POW: *o = ad_real_pow(t, a, b); break;
        case S_MAX: *o = ad_real_max(t, a, b); break;
        case S_MIN: *o = ad_real_min(t, a, b); break;
        case S_ADDC: *o = ad_real_add_scalar(t, a, c); break;
        case S_MULC: *o = ad_real_mul_scalar(t, a, c); break;
        case S_CSUB: *o = ad_real_scalar_sub(t, c, a); break;
        case S_CDIV: *o = ad_real_scalar_div(t, c, a); break;
        case S_NEG: *o = ad_real_neg(t, a); break;
        case S_SQUARE: *o = ad_real_square(t, a); break;
        case S_SQRT: *o = ad_real_sqrt(t, a); break;
        case S_EXP: *o = ad_real_exp(t, a); break;
        case S_LOG: *o = ad_real_log(t, a); break;
        case S_SIN: *o = ad_real_sin(t, a); break;
        case S_COS: *o = ad_real_cos(t, a); break;
        case S_TAN: *o = ad_real_tan(t, a); break;
        case S_TANH: *o = ad_real_tanh(t, a); break;
        case S_SIGMOID: *o = ad_real_sigmoid(t, a); break;
        case S_POWC: *o = ad_real_pow_scalar(t, a, c); break;
        case S_ABS: *o = ad_real_abs(t, a); break;
        default: *o = ad_real_relu(t, a); break;
        }
    }
    ad_real y = v[n + sc->nstep - 1];
    for (int k = 2; k <= OUTPUTS; k++) y = ad_real_add(t, y, v[n + sc->nstep - k]);
    return y;
}

static ad_node *script_graph(ad_graph *g, ad_node *const *x, int n, void *user)
{
    const script *sc = user;
    ad_node *v[MAXSTEP + 16];
    for (int i = 0; i < n; i++) v[i] = x[i];
    for (int k = 0; k < sc->nstep; k++) {
        const step *s = &sc->s[k];
        ad_node *a = v[s->a], *b = v[s->b], **o = &v[n + k];
        double c = s->c;
        switch (s->op) {
        case S_CONST: *o = ad_const_scalar(g, c); break;
        case S_ADD: *o = ad_add(g, a, b); break;
        case S_SUB: *o = ad_sub(g, a, b); break;
        case S_MUL: *o = ad_mul(g, a, b); break;
        case S_DIV: *o = ad_div(g, a, b); break;
        case S_POW: *o = ad_pow(g, a, b); break;
        case S_MAX: *o = ad_max(g, a, b); break;
        case S_MIN: *o = ad_min(g, a, b); break;
        case S_ADDC: *o = ad_add_scalar(g, a, c); break;
        case S_MULC: *o = ad_mul_scalar(g, a, c); break;
        case S_CSUB: *o = ad_add_scalar(g, ad_neg(g, a), c); break;
        case S_CDIV: *o = ad_mul_scalar(g, ad_recip(g, a), c); break;
        case S_NEG: *o = ad_neg(g, a); break;
        case S_SQUARE: *o = ad_mul(g, a, a); break;
        case S_SQRT: *o = ad_sqrt(g, a); break;
        case S_EXP: *o = ad_exp(g, a); break;
        case S_LOG: *o = ad_log(g, a); break;
        case S_SIN: *o = ad_sin(g, a); break;
        case S_COS: *o = ad_cos(g, a); break;
        case S_TAN: *o = ad_tan(g, a); break;
        case S_TANH: *o = ad_tanh(g, a); break;
        case S_SIGMOID: *o = ad_sigmoid(g, a); break;
        case S_POWC: *o = ad_pow(g, a, ad_const_scalar(g, c)); break;
        case S_ABS: *o = ad_abs(g, a); break;
        default: *o = ad_relu(g, a); break;
        }
    }
    ad_node *y = v[n + sc->nstep - 1];
    for (int k = 2; k <= OUTPUTS; k++) y = ad_add(g, y, v[n + sc->nstep - k]);
    return y;
}

enum { NVAR = 6 };

START_TEST(random_expressions_match_the_graph)
{
    ad_tape *t = ad_tape_new();
    ad_graph *g = ad_graph_new();
    static script sc;
    int64_t entries = 0, steps = 0;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        double x[NVAR], gt[NVAR], gg[NVAR], ft, fg;
        make_script(&sc, seed, NVAR, false, x);
        ck_assert_int_eq(ad_real_gradient(t, script_tape, NVAR, x, &sc, &ft, gt), AD_OK);
        ad_graph_reset(g);
        ck_assert_int_eq(ad_gradient(g, script_graph, NVAR, x, &sc, &fg, gg), AD_OK);
        ck_assert_msg(rel_err(ft, fg) < 1e-13, "seed %d: f %.17g vs %.17g", (int)seed, ft, fg);
        for (int i = 0; i < NVAR; i++)
            ck_assert_msg(rel_err(gt[i], gg[i]) < 1e-10, "seed %d: df/dx%d %.17g (tape) vs %.17g (graph)",
                          (int)seed, i, gt[i], gg[i]);
        entries += t->n - NVAR;
        steps += sc.nstep + OUTPUTS - 1;
    }
    /* most operations write nothing */
    ck_assert_msg(entries * 2 < steps, "%lld entries for %lld operations", (long long)entries, (long long)steps);
    ad_graph_free(g);
    ad_tape_free(t);
}
END_TEST

START_TEST(random_expressions_gradcheck)
{
    static script sc;
    for (uint64_t seed = 1000; seed < 1100; seed++) {
        double x[NVAR];
        make_script(&sc, seed, NVAR, true, x);
        ad_check_report rep;
        ad_status st = ad_real_gradcheck(script_tape, NVAR, x, &sc, NULL, &rep);
        ck_assert_msg(st == AD_OK, "seed %d: %s", (int)seed, rep.msg);
        ck_assert_int_eq(rep.checked, NVAR);
    }
}
END_TEST

/* ---- memory: out of memory at each allocation, reserve, steady state --------------------- */

START_TEST(out_of_memory_everywhere)
{
    enum { N = 3000 };
    double x[N];
    for (int i = 0; i < N; i++) x[i] = 0.5 + 0.37 * sin(i);
    double want = rosenbrock_plain(x, N);
    int failures = 0;
    for (long k = 1; k < 100; k++) {
        ad_tape *t = ad_tape_new();
        ck_assert_ptr_nonnull(t);
        ad_real v[N];
        ad_fail_alloc_at(k);
        for (int i = 0; i < N; i++) v[i] = ad_real_var(t, x[i]);
        ad_real f = rosenbrock_tape(t, v, N, NULL);
        ad_status st = ad_tape_backward(t, f);
        ad_fail_alloc_at(0);
        ck_assert_double_eq(f.v, want); /* values are computed whatever happens to the tape */
        if (st == AD_OK) {
            ad_tape_free(t);
            break;
        }
        failures++;
        ck_assert_int_eq(st, AD_ERR_NOMEM);
        ck_assert_int_eq(ad_tape_backward(t, f), AD_ERR_NOMEM); /* sticky */
        /* after a reset the same tape works */
        ad_tape_reset(t);
        ad_real y = ad_real_var(t, 2);
        ck_assert_int_eq(ad_tape_backward(t, ad_real_mul(t, y, y)), AD_OK);
        ck_assert_double_eq(ad_real_grad(t, y), 4);
        ad_tape_free(t);
    }
    ck_assert_int_gt(failures, 3);
    /* the one-call form reports it too, and leaks nothing (the sanitizer build checks) */
    for (long k = 1; k < 40; k++) {
        double g[N], f;
        ad_fail_alloc_at(k);
        ad_status st = ad_real_gradient(NULL, rosenbrock_tape, N, x, NULL, &f, g);
        ad_fail_alloc_at(0);
        if (st == AD_OK) break;
        ck_assert_int_eq(st, AD_ERR_NOMEM);
    }
}
END_TEST

START_TEST(reserve_and_steady_state)
{
    enum { N = 500 };
    double x[N], g[N], f;
    for (int i = 0; i < N; i++) x[i] = 0.1 * i;
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_reserve(t, 2 * N, 3 * N), AD_OK);
    ck_assert_int_eq(ad_tape_reserve(t, -1, 0), AD_ERR_ARG);
    ad_tape_reset(t);
    uint64_t before = t->mallocs;
    ad_real v[N];
    for (int i = 0; i < N; i++) v[i] = ad_real_var(t, x[i]);
    ad_real y = rosenbrock_tape(t, v, N, NULL);
    ck_assert_uint_eq(t->mallocs, before); /* recording fit in what was reserved */
    ck_assert_int_eq(ad_tape_backward(t, y), AD_OK);
    /* a loop that records the same each time allocates nothing after its first pass */
    uint64_t after_first = 0;
    for (int it = 0; it < 20; it++) {
        ck_assert_int_eq(ad_real_gradient(t, rosenbrock_tape, N, x, NULL, &f, g), AD_OK);
        if (it == 0) after_first = t->mallocs;
    }
    ck_assert_uint_eq(t->mallocs, after_first);
    ad_tape_free(t);
}
END_TEST

/* ---- second order: ad_real_hvp and ad_real_hessian ---------------------------------------- */

/* Central differences of ad_real_gradient, column by column: the Hessian by another road. */
static void hessian_by_differences(ad_real_fn f, int n, const double *x, void *user, double *H)
{
    double p[16], gp[16], gm[16];
    ck_assert_int_le(n, 16);
    memcpy(p, x, (size_t)n * sizeof *p);
    for (int j = 0; j < n; j++) {
        double h = 1e-5 * fmax(1, fabs(x[j]));
        p[j] = x[j] + h;
        ck_assert_int_eq(ad_real_gradient(NULL, f, n, p, user, NULL, gp), AD_OK);
        p[j] = x[j] - h;
        ck_assert_int_eq(ad_real_gradient(NULL, f, n, p, user, NULL, gm), AD_OK);
        p[j] = x[j];
        for (int i = 0; i < n; i++) H[i * n + j] = (gp[i] - gm[i]) / (2 * h);
    }
}

/* H from ad_real_hessian against the differences, 1e-6 relative to max(1, |H|); the value
 * and gradient against ad_real_gradient's. */
static void check_hessian(ad_real_fn f, int n, const double *x, void *user, const char *what)
{
    double H[256], D[256], g[16], g1[16], v, v1;
    ck_assert_int_eq(ad_real_hessian(NULL, f, n, x, user, &v, g, H), AD_OK);
    ck_assert_int_eq(ad_real_gradient(NULL, f, n, x, user, &v1, g1), AD_OK);
    ck_assert_msg(rel_err(v, v1) < 1e-14, "%s: value %.17g vs %.17g", what, v, v1);
    for (int i = 0; i < n; i++)
        ck_assert_msg(rel_err(g[i], g1[i]) < 1e-13, "%s: grad[%d] %.17g vs %.17g", what, i, g[i], g1[i]);
    hessian_by_differences(f, n, x, user, D);
    for (int k = 0; k < n * n; k++)
        ck_assert_msg(rel_err(H[k], D[k]) < 1e-6, "%s: H[%d][%d] = %.12g, differences %.12g", what,
                      k / n, k % n, H[k], D[k]);
}

/* One row applied to its variables directly (its Hessian is the row's closed forms) and to
 * nonlinear inner functions (its Hessian needs the tangents of the operands). */
typedef struct {
    int row;      /* index into the tables below */
    bool inner;   /* applied to u(x), w(x) rather than to x0, x1 */
    double p;     /* leaky_relu's slope */
} row_case;

/* u = x0 x1 / 2 + 0.3 sin x0 and w = x1 + x2^2 / 5: in (0.2, 0.75) and (0.4, 1.2) for
 * x in [0.4, 1]^3, where every row is smooth and finite. */
static ad_real inner_u(ad_tape *t, const ad_real *x)
{
    return ad_real_add(t, ad_real_mul_scalar(t, ad_real_mul(t, x[0], x[1]), 0.5),
                       ad_real_mul_scalar(t, ad_real_sin(t, x[0]), 0.3));
}
static ad_real inner_w(ad_tape *t, const ad_real *x)
{
    return ad_real_add(t, x[1], ad_real_mul_scalar(t, ad_real_square(t, x[2]), 0.2));
}

#define UNARY_ROW_(ID, name, ...)                                                             \
    static ad_real row_##name(ad_tape *t, const ad_real *x, int n, void *user)                \
    {                                                                                         \
        (void)n;                                                                              \
        const row_case *c = user;                                                             \
        return ad_real_##name(t, c->inner ? inner_u(t, x) : x[0]);                            \
    }                                                                                         \
    static double row_##name##_d2(double x, double p) { (void)p; return ad_ew_##name##_d2(x, ad_ew_##name(x, 0), 0); }
#define UNARY_P_ROW_(ID, name, ...)                                                           \
    static ad_real row_##name(ad_tape *t, const ad_real *x, int n, void *user)                \
    {                                                                                         \
        (void)n;                                                                              \
        const row_case *c = user;                                                             \
        return ad_real_##name(t, c->inner ? inner_u(t, x) : x[0], c->p);                      \
    }                                                                                         \
    static double row_##name##_d2(double x, double p) { return ad_ew_##name##_d2(x, ad_ew_##name(x, p), p); }
#define BINARY_ROW_(ID, name, ...)                                                            \
    static ad_real row_##name(ad_tape *t, const ad_real *x, int n, void *user)                \
    {                                                                                         \
        (void)n;                                                                              \
        const row_case *c = user;                                                             \
        return c->inner ? ad_real_##name(t, inner_u(t, x), inner_w(t, x)) : ad_real_##name(t, x[0], x[1]); \
    }                                                                                         \
    static void row_##name##_d2(double a, double b, double *h)                                \
    {                                                                                         \
        double y = ad_ew_##name(a, b);                                                        \
        h[0] = ad_ew_##name##_daa(a, b, y), h[1] = h[2] = ad_ew_##name##_dab(a, b, y);        \
        h[3] = ad_ew_##name##_dbb(a, b, y);                                                   \
    }
AD_EW_UNARY(UNARY_ROW_)
AD_EW_UNARY_P(UNARY_P_ROW_)
AD_EW_BINARY(BINARY_ROW_)

#define UNARY_ENTRY_(ID, name, ...) {#name, row_##name, row_##name##_d2},
static const struct {
    const char *name;
    ad_real_fn f;
    double (*d2)(double x, double p);
} unary_rows[] = {AD_EW_UNARY(UNARY_ENTRY_) AD_EW_UNARY_P(UNARY_ENTRY_)};
#define BINARY_ENTRY_(ID, name, ...) {#name, row_##name, row_##name##_d2},
static const struct {
    const char *name;
    ad_real_fn f;
    void (*d2)(double a, double b, double *h);
} binary_rows[] = {AD_EW_BINARY(BINARY_ENTRY_)};

START_TEST(hessian_of_every_row)
{
    ad_rng r;
    ad_rng_seed(&r, 7);
    int nu = (int)(sizeof unary_rows / sizeof *unary_rows), nb = (int)(sizeof binary_rows / sizeof *binary_rows);
    for (int trial = 0; trial < 20; trial++) {
        double x[3];
        for (int i = 0; i < 3; i++) x[i] = 0.4 + 0.6 * ad_rng_uniform(&r);
        if (trial % 2) x[0] = -x[0]; /* the other side of relu, abs and leaky_relu */
        for (int k = 0; k < nu; k++) {
            row_case c = {k, false, 0.1};
            char what[64];
            double H, v = 1, hv;
            /* directly: the row's second derivative itself */
            bool neg_ok = strcmp(unary_rows[k].name, "log") && strcmp(unary_rows[k].name, "sqrt");
            double x0 = neg_ok || x[0] > 0 ? x[0] : -x[0];
            ck_assert_int_eq(ad_real_hessian(NULL, unary_rows[k].f, 1, &x0, &c, NULL, NULL, &H), AD_OK);
            double want = unary_rows[k].d2(x0, c.p);
            ck_assert_msg(rel_err(H, want) < 1e-12, "%s''(%g) = %.17g, want %.17g", unary_rows[k].name, x0, H, want);
            ck_assert_int_eq(ad_real_hvp(NULL, unary_rows[k].f, 1, &x0, &v, &c, NULL, NULL, &hv), AD_OK);
            ck_assert_double_eq(hv, H);
            /* of a function of three variables, against differences of gradients */
            c.inner = true;
            double xi[3] = {fabs(x[0]), x[1], x[2]};
            snprintf(what, sizeof what, "%s(u(x))", unary_rows[k].name);
            check_hessian(unary_rows[k].f, 3, xi, &c, what);
        }
        for (int k = 0; k < nb; k++) {
            row_case c = {k, false, 0};
            char what[64];
            double H[4], want[4], xa[2] = {fabs(x[0]), x[1]};
            if (fabs(xa[0] - xa[1]) < 1e-3) xa[1] += 0.01; /* max and min away from ties */
            ck_assert_int_eq(ad_real_hessian(NULL, binary_rows[k].f, 2, xa, &c, NULL, NULL, H), AD_OK);
            binary_rows[k].d2(xa[0], xa[1], want);
            for (int j = 0; j < 4; j++)
                ck_assert_msg(rel_err(H[j], want[j]) < 1e-12, "%s at (%g, %g): H[%d] = %.17g, want %.17g",
                              binary_rows[k].name, xa[0], xa[1], j, H[j], want[j]);
            c.inner = true;
            double xi[3] = {fabs(x[0]), x[1], x[2]};
            snprintf(what, sizeof what, "%s(u(x), w(x))", binary_rows[k].name);
            check_hessian(binary_rows[k].f, 3, xi, &c, what);
        }
    }
}
END_TEST

/* The conveniences with a plain double, and leaky_relu's slope, inside a function that also
 * merges terms. */
static ad_real conveniences(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)n, (void)user;
    ad_real u = ad_real_add(t, ad_real_mul(t, x[0], x[1]), ad_real_mul_scalar(t, x[2], 0.5));
    ad_real a = ad_real_scalar_div(t, 2, u);                                  /* 2 / u */
    ad_real b = ad_real_pow_scalar(t, ad_real_add_scalar(t, x[1], 0.3), 2.5); /* (x1 + 0.3)^2.5 */
    ad_real c = ad_real_scalar_sub(t, 1, ad_real_mul(t, x[0], x[2]));         /* 1 - x0 x2 */
    ad_real d = ad_real_leaky_relu(t, ad_real_scalar_sub(t, 0.2, ad_real_mul(t, x[1], x[1])), 0.3);
    return ad_real_add(t, ad_real_mul(t, a, b), ad_real_mul(t, ad_real_mul(t, c, c), ad_real_exp(t, d)));
}

START_TEST(hessian_of_the_conveniences)
{
    ad_rng r;
    ad_rng_seed(&r, 11);
    for (int trial = 0; trial < 20; trial++) {
        double x[3];
        for (int i = 0; i < 3; i++) x[i] = 0.5 + 0.5 * ad_rng_uniform(&r);
        check_hessian(conveniences, 3, x, NULL, "conveniences");
    }
}
END_TEST

/* What first order preaccumulates: x*x + 3x is one term 2x + 3 to it, and sin(x*y) one pair
 * of terms; the second order sees the products through. */
static ad_real square_plus(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)n, (void)user;
    return ad_real_add(t, ad_real_mul(t, x[0], x[0]), ad_real_mul_scalar(t, x[0], 3));
}
static ad_real sin_xy(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)n, (void)user;
    return ad_real_sin(t, ad_real_mul(t, x[0], x[1]));
}
/* (x - y)^2 + ((x + y) 2 + z)^2: a two-term value squared, and a three-term one (written out
 * by first order) squared. */
static ad_real merged_squares(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)n, (void)user;
    ad_real d = ad_real_sub(t, x[0], x[1]);
    ad_real s = ad_real_add(t, ad_real_mul_scalar(t, ad_real_add(t, x[0], x[1]), 2), x[2]);
    return ad_real_add(t, ad_real_mul(t, d, d), ad_real_mul(t, s, s));
}

START_TEST(second_order_sees_through_preaccumulation)
{
    double x = 0.7, H, g, f;
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_real_hessian(t, square_plus, 1, &x, NULL, &f, &g, &H), AD_OK);
    ck_assert_double_eq(f, x * x + 3 * x);
    ck_assert_double_eq(g, 2 * x + 3);
    ck_assert_double_eq(H, 2);
    double xy[2] = {0.8, -1.3}, H2[4], s = sin(0.8 * -1.3), c = cos(0.8 * -1.3);
    ck_assert_int_eq(ad_real_hessian(t, sin_xy, 2, xy, NULL, &f, NULL, H2), AD_OK);
    double want[4] = {-xy[1] * xy[1] * s, c - xy[0] * xy[1] * s, c - xy[0] * xy[1] * s, -xy[0] * xy[0] * s};
    for (int k = 0; k < 4; k++) ck_assert_msg(rel_err(H2[k], want[k]) < 1e-15, "H[%d] %.17g vs %.17g", k, H2[k], want[k]);
    double xyz[3] = {0.3, -0.4, 1.1}, H3[9];
    ck_assert_int_eq(ad_real_hessian(t, merged_squares, 3, xyz, NULL, NULL, NULL, H3), AD_OK);
    double want3[9] = {2 + 8, -2 + 8, 4, -2 + 8, 2 + 8, 4, 4, 4, 2};
    for (int k = 0; k < 9; k++) ck_assert_double_eq(H3[k], want3[k]);
    ad_tape_free(t);
}
END_TEST

/* Kinks have second derivative 0 (and first derivatives as first order's). */
static ad_real kinks(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)n, (void)user;
    ad_real r = ad_real_relu(t, x[0]), a = ad_real_abs(t, x[1]);
    ad_real m = ad_real_max(t, x[0], x[1]), k = ad_real_min(t, x[0], x[1]);
    ad_real l = ad_real_leaky_relu(t, x[0], 0.25);
    return ad_real_add(t, ad_real_add(t, ad_real_add(t, r, a), ad_real_add(t, m, k)), l);
}

START_TEST(second_derivative_zero_at_kinks)
{
    double x[2] = {0, 0}, H[4], g[2], g1[2];
    ck_assert_int_eq(ad_real_hessian(NULL, kinks, 2, x, NULL, NULL, g, H), AD_OK);
    ck_assert_int_eq(ad_real_gradient(NULL, kinks, 2, x, NULL, NULL, g1), AD_OK);
    for (int k = 0; k < 4; k++) ck_assert_double_eq(H[k], 0);
    ck_assert_double_eq(g[0], g1[0]);
    ck_assert_double_eq(g[1], g1[1]);
    ck_assert_double_eq(g[0], 0 + 0.5 + 0.5 + 0.25); /* relu 0, max and min half, leaky slope */
    double y[2] = {-0.5, 0.5};
    ck_assert_int_eq(ad_real_hessian(NULL, kinks, 2, y, NULL, NULL, g, H), AD_OK);
    for (int k = 0; k < 4; k++) ck_assert_double_eq(H[k], 0);
    ck_assert_double_eq(g[0], 0 + 0 + 1 + 0.25);
}
END_TEST

/* Rosenbrock's Hessian is tridiagonal: 1200 x_i^2 - 400 x_{i+1} + 2 (+ 200 past the first) on
 * the diagonal, -400 x_i beside it (rosenbrock_hessian_row). */
START_TEST(rosenbrock_hessian_closed_form)
{
    enum { N = 60 };
    static double x[N], H[N * N], g[N], g1[N];
    double f, f1;
    for (int i = 0; i < N; i++) x[i] = 0.5 + 0.37 * sin(i);
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_real_hessian(t, rosenbrock_tape, N, x, NULL, &f, g, H), AD_OK);
    ck_assert_int_eq(ad_real_gradient(t, rosenbrock_tape, N, x, NULL, &f1, g1), AD_OK);
    ck_assert_double_eq(f, f1);
    for (int i = 0; i < N; i++) ck_assert_msg(rel_err(g[i], g1[i]) < 1e-13, "g[%d]", i);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double row[3], want = 0;
            rosenbrock_hessian_row(x, N, i, row);
            if (j >= i - 1 && j <= i + 1) want = row[j - i + 1];
            ck_assert_msg(rel_err(H[i * N + j], want) < 1e-12, "H[%d][%d] = %.17g, want %.17g", i, j, H[i * N + j], want);
        }
    ad_tape_free(t);
}
END_TEST

START_TEST(hessian_symmetric_and_hvp_is_h_times_v)
{
    ad_rng r;
    ad_rng_seed(&r, 3);
    static script sc;
    ad_tape *t = ad_tape_new();
    for (uint64_t seed = 2000; seed < 2100; seed++) {
        double x[NVAR], H[NVAR * NVAR], v[NVAR], hv[NVAR], col[NVAR][NVAR], e[NVAR] = {0};
        make_script(&sc, seed, NVAR, true, x);
        ck_assert_int_eq(ad_real_hessian(t, script_tape, NVAR, x, &sc, NULL, NULL, H), AD_OK);
        /* column j is H e_j, and the columns agree with the rows to rounding */
        for (int j = 0; j < NVAR; j++) {
            e[j] = 1;
            ck_assert_int_eq(ad_real_hvp(t, script_tape, NVAR, x, e, &sc, NULL, NULL, col[j]), AD_OK);
            e[j] = 0;
        }
        double scale = 0;
        for (int k = 0; k < NVAR * NVAR; k++) scale = fmax(scale, fabs(H[k]));
        for (int i = 0; i < NVAR; i++)
            for (int j = 0; j < NVAR; j++) {
                ck_assert_double_eq(H[i * NVAR + j], col[j][i]);
                ck_assert_msg(fabs(col[j][i] - col[i][j]) <= 1e-12 * fmax(1, scale), "seed %d: (%d, %d) %.17g vs %.17g",
                              (int)seed, i, j, col[j][i], col[i][j]);
            }
        for (int i = 0; i < NVAR; i++) v[i] = 2 * ad_rng_uniform(&r) - 1;
        ck_assert_int_eq(ad_real_hvp(t, script_tape, NVAR, x, v, &sc, NULL, NULL, hv), AD_OK);
        for (int i = 0; i < NVAR; i++) {
            double want = 0, size = 0;
            for (int j = 0; j < NVAR; j++) want += H[i * NVAR + j] * v[j], size += fabs(H[i * NVAR + j] * v[j]);
            ck_assert_msg(fabs(hv[i] - want) <= 1e-12 * fmax(1, size), "seed %d: (Hv)[%d] %.17g vs %.17g", (int)seed, i,
                          hv[i], want);
        }
    }
    ad_tape_free(t);
}
END_TEST

/* The random scripts of the first-order tests (every operation, overlapping terms, written
 * entries) against differences of their gradients. */
START_TEST(random_expressions_hessian)
{
    static script sc;
    for (uint64_t seed = 3000; seed < 3100; seed++) {
        double x[NVAR];
        char what[32];
        make_script(&sc, seed, NVAR, true, x);
        snprintf(what, sizeof what, "seed %d", (int)seed);
        check_hessian(script_tape, NVAR, x, &sc, what);
    }
}
END_TEST

/* An f that makes a variable of its own, and one that returns a value kept from an earlier
 * recording. */
static ad_real own_variable(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)n, (void)user;
    return ad_real_mul(t, x[0], ad_real_var(t, 2));
}
static ad_real stale_value(ad_tape *t, const ad_real *x, int n, void *user)
{
    (void)t, (void)x, (void)n;
    return *(const ad_real *)user;
}

START_TEST(second_order_arguments)
{
    double x[2] = {1, 2}, v[2] = {1, 0}, hv[2], H[4], f;
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_real_hvp(t, NULL, 2, x, v, NULL, NULL, NULL, hv), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hvp(t, sin_xy, 2, NULL, v, NULL, NULL, NULL, hv), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hvp(t, sin_xy, 2, x, NULL, NULL, NULL, NULL, hv), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hvp(t, sin_xy, 2, x, v, NULL, NULL, NULL, NULL), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hvp(t, sin_xy, -1, x, v, NULL, NULL, NULL, hv), AD_ERR_ARG);
    ck_assert_int_eq(ad_real_hessian(t, NULL, 2, x, NULL, NULL, NULL, H), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hessian(t, sin_xy, 2, NULL, NULL, NULL, NULL, H), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hessian(t, sin_xy, 2, x, NULL, NULL, NULL, NULL), AD_ERR_NULL);
    ck_assert_int_eq(ad_real_hessian(t, sin_xy, -3, x, NULL, NULL, NULL, H), AD_ERR_ARG);
    /* no variables: the value, and nothing else to write */
    ck_assert_int_eq(ad_real_hvp(t, rosenbrock_tape, 0, NULL, NULL, NULL, &f, NULL, NULL), AD_OK);
    ck_assert_double_eq(f, 0);
    ck_assert_int_eq(ad_real_hessian(NULL, rosenbrock_tape, 0, NULL, NULL, &f, NULL, NULL), AD_OK);
    ck_assert_int_eq(ad_real_hvp(t, own_variable, 2, x, v, NULL, NULL, NULL, hv), AD_ERR_ARG);
    /* a value from the recording before */
    ck_assert_int_eq(ad_real_hvp(t, sin_xy, 2, x, v, NULL, NULL, NULL, hv), AD_OK);
    ad_real old = ad_real_dual_(1, 5000, 1, 0);
    ck_assert_int_eq(ad_real_hvp(t, stale_value, 2, x, v, &old, NULL, NULL, hv), AD_ERR_ARG);
    ad_real first = ad_real_terms_(1, 0, 1, -1, 0); /* a first-order value */
    ck_assert_int_eq(ad_real_hvp(t, stale_value, 2, x, v, &first, NULL, NULL, hv), AD_ERR_ARG);
    /* and the tape still works after each of them */
    ck_assert_int_eq(ad_real_hessian(t, sin_xy, 2, x, NULL, &f, NULL, H), AD_OK);
    ck_assert_double_eq(f, sin(2));
    ad_tape_free(t);
}
END_TEST

/* First order on a tape that has recorded second order gives what a fresh tape gives. */
START_TEST(first_order_after_second)
{
    enum { N = 300 };
    double x[N], g[N], g1[N], H[16], f, f1, xs[4] = {0.3, 0.6, 0.9, 1.2};
    for (int i = 0; i < N; i++) x[i] = 0.5 + 0.37 * sin(i);
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_real_gradient(NULL, rosenbrock_tape, N, x, NULL, &f1, g1), AD_OK);
    ck_assert_int_eq(ad_real_hessian(t, rosenbrock_tape, 4, xs, NULL, NULL, NULL, H), AD_OK);
    ck_assert_int_eq(ad_real_gradient(t, rosenbrock_tape, N, x, NULL, &f, g), AD_OK);
    ck_assert_double_eq(f, f1);
    ck_assert_mem_eq(g, g1, sizeof g);
    ck_assert_int_eq(t->n, N + (N - 2)); /* and records as little as first order does */
    /* by hand too */
    ad_tape_reset(t);
    ad_real a = ad_real_var(t, 3), b = ad_real_mul(t, a, a);
    ck_assert_int_eq(ad_tape_backward(t, b), AD_OK);
    ck_assert_double_eq(ad_real_grad(t, a), 6);
    ad_tape_free(t);
}
END_TEST

/* Counts the runs of f, to see the tape grown and f run again. */
static ad_real counted_rosenbrock(ad_tape *t, const ad_real *x, int n, void *user)
{
    ++*(int *)user;
    return rosenbrock_tape(t, x, n, NULL);
}

START_TEST(second_order_steady_state)
{
    enum { N = 2000 };
    static double x[N], v[N], hv[N], g[N], H[9];
    for (int i = 0; i < N; i++) x[i] = 0.5 + 0.37 * sin(i), v[i] = cos(i);
    ad_tape *t = ad_tape_new();
    int runs = 0;
    /* a new tape is too small: f runs until it fits, and the answer is the same */
    ck_assert_int_eq(ad_real_hvp(t, counted_rosenbrock, N, x, v, &runs, NULL, g, hv), AD_OK);
    ck_assert_int_gt(runs, 1);
    ck_assert_int_le(runs, 3); /* the first run counts what did not fit */
    uint64_t mallocs = t->mallocs;
    long allocs = ad_alloc_count();
    double hv2[N];
    for (int it = 0; it < 10; it++) {
        runs = 0;
        ck_assert_int_eq(ad_real_hvp(t, counted_rosenbrock, N, x, v, &runs, NULL, NULL, hv2), AD_OK);
        ck_assert_int_eq(runs, 1);
        ck_assert_mem_eq(hv2, hv, sizeof hv);
        ck_assert_int_eq(ad_real_hessian(t, rosenbrock_tape, 3, x, NULL, NULL, NULL, H), AD_OK);
    }
    ck_assert_uint_eq(t->mallocs, mallocs);
    ck_assert_int_eq(ad_alloc_count(), allocs);
    /* H v against the closed form */
    for (int i = 0; i < N; i++) {
        double d = (i + 1 < N ? 1200 * x[i] * x[i] - 400 * x[i + 1] + 2 : 0) + (i > 0 ? 200 : 0);
        double want = d * v[i] + (i + 1 < N ? -400 * x[i] * v[i + 1] : 0) + (i > 0 ? -400 * x[i - 1] * v[i - 1] : 0);
        ck_assert_msg(rel_err(hv[i], want) < 1e-12, "hv[%d] = %.17g, want %.17g", i, hv[i], want);
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(second_order_out_of_memory)
{
    enum { N = 1000 };
    static double x[N], v[N], hv[N], want[N], H[16];
    for (int i = 0; i < N; i++) x[i] = 0.5 + 0.37 * sin(i), v[i] = 1;
    ck_assert_int_eq(ad_real_hvp(NULL, rosenbrock_tape, N, x, v, NULL, NULL, NULL, want), AD_OK);
    int failures = 0;
    for (long k = 1; k < 60; k++) {
        ad_fail_alloc_at(k);
        ad_status st = ad_real_hvp(NULL, rosenbrock_tape, N, x, v, NULL, NULL, NULL, hv);
        ad_fail_alloc_at(0);
        if (st == AD_OK) {
            ck_assert_mem_eq(hv, want, sizeof hv);
            break;
        }
        ck_assert_int_eq(st, AD_ERR_NOMEM);
        failures++;
    }
    ck_assert_int_gt(failures, 3);
    /* a reused tape that fails once works on the next call */
    for (long k = 1; k < 40; k++) {
        ad_tape *t = ad_tape_new();
        ad_fail_alloc_at(k);
        ad_status st = ad_real_hessian(t, rosenbrock_tape, 4, x, NULL, NULL, NULL, H);
        ad_fail_alloc_at(0);
        if (st != AD_OK) ck_assert_int_eq(st, AD_ERR_NOMEM);
        ck_assert_int_eq(ad_real_hvp(t, rosenbrock_tape, N, x, v, NULL, NULL, NULL, hv), AD_OK);
        ck_assert_mem_eq(hv, want, sizeof hv);
        ad_tape_free(t);
        if (st == AD_OK) break;
    }
}
END_TEST

/* Five results of six variables for jacobian_steady_state: w = x0 x1 + x2 x3 is 0 at the test
 * point and written out, so sqrt(w) has an infinite partial and z = sqrt(w) + x4 x5 is an
 * entry above w with an infinite edge to it (a sweep from w must not pass through it: inf * 0
 * is NaN); a constant result; a result that is one variable; a long chain. */
static void jac_fn(ad_tape *t, const ad_real *x, int n, ad_real *y, int m, void *user)
{
    (void)n, (void)user;
    ad_real w = ad_real_add(t, ad_real_mul(t, x[0], x[1]), ad_real_mul(t, x[2], x[3]));
    ad_real z = ad_real_add(t, ad_real_sqrt(t, w), ad_real_mul(t, x[4], x[5]));
    ad_real c = x[0];
    for (int k = 0; k < 20; k++) c = ad_real_add(t, ad_real_sin(t, ad_real_mul(t, c, x[k % 6])), ad_real_mul(t, x[(k + 1) % 6], x[(k + 3) % 6]));
    ad_real r[] = {w, z, ad_real_const(2), x[3], c, ad_real_mul(t, z, c)};
    for (int i = 0; i < m; i++) y[i] = r[i % 6];
}

/* ad_real_jacobian on a reused tape allocates nothing after the first call, and its rows are
 * bit for bit what one ad_tape_backward per result gives (it sweeps two results at once);
 * afterwards ad_real_grad reads the last result's gradient, as after the last of those
 * sweeps. */
START_TEST(jacobian_steady_state)
{
    enum { N = 6, M = 6 };
    const double x[N] = {1, 2, -2, 1, 0.3, -0.7};
    ad_tape *t = ad_tape_new(), *ref = ad_tape_new();
    for (int m = 0; m <= M; m++) {
        /* by hand: record once, one sweep per result */
        double want[M * N], want_y[M], J[M * N], y[M];
        ad_tape_reset(ref);
        ad_real v[N], r[M];
        for (int j = 0; j < N; j++) v[j] = ad_real_var(ref, x[j]);
        jac_fn(ref, v, N, r, m, NULL);
        for (int i = 0; i < m; i++) {
            ck_assert_int_eq(ad_tape_backward(ref, r[i]), AD_OK);
            want_y[i] = r[i].v;
            for (int j = 0; j < N; j++) want[i * N + j] = ad_real_grad(ref, v[j]);
        }
        ck_assert_int_eq(ad_real_jacobian(t, jac_fn, N, x, NULL, m, y, J), AD_OK);
        uint64_t mallocs = t->mallocs;
        long allocs = ad_alloc_count();
        for (int it = 0; it < 5; it++) {
            memset(J, 0, sizeof J);
            ck_assert_int_eq(ad_real_jacobian(t, jac_fn, N, x, NULL, m, y, J), AD_OK);
            ck_assert_mem_eq(J, want, (size_t)m * N * sizeof *J);
            ck_assert_mem_eq(y, want_y, (size_t)m * sizeof *y);
        }
        ck_assert_uint_eq(t->mallocs, mallocs);
        ck_assert_int_eq(ad_alloc_count(), allocs);
        for (int j = 0; m > 0 && j < N; j++) {
            double g = ad_real_grad(t, ad_real_terms_(x[j], j, 1, -1, 0)), h = ad_real_grad(ref, v[j]);
            ck_assert_mem_eq(&g, &h, sizeof g);
        }
    }
    /* the NaN-free rows really saw the infinite edge: w's row is finite, z's is not */
    double J[2 * N];
    ck_assert_int_eq(ad_real_jacobian(t, jac_fn, N, x, NULL, 2, NULL, J), AD_OK);
    for (int j = 0; j < N; j++) ck_assert(isfinite(J[j]));
    ck_assert(!isfinite(J[N]));
    /* a one-call tape too */
    double J1[2 * N];
    ck_assert_int_eq(ad_real_jacobian(NULL, jac_fn, N, x, NULL, 2, NULL, J1), AD_OK);
    ck_assert_mem_eq(J1, J, sizeof J);
    ad_tape_free(t);
    ad_tape_free(ref);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_tape");
    TCase *tc = tcase_create("tape");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, constants_and_variables);
    tcase_add_test(tc, square_is_one_term);
    tcase_add_test(tc, duplicates_merge);
    tcase_add_test(tc, overflow_writes_one_entry);
    tcase_add_test(tc, dead_relu_is_a_constant);
    tcase_add_test(tc, backward_checks_its_argument);
    tcase_add_test(tc, rosenbrock_gradient);
    tcase_add_test(tc, random_expressions_match_the_graph);
    tcase_add_test(tc, random_expressions_gradcheck);
    tcase_add_test(tc, out_of_memory_everywhere);
    tcase_add_test(tc, reserve_and_steady_state);
    tcase_add_test(tc, jacobian_steady_state);
    suite_add_tcase(s, tc);
    TCase *t2 = tcase_create("second_order");
    tcase_set_timeout(t2, 120);
    tcase_add_test(t2, hessian_of_every_row);
    tcase_add_test(t2, hessian_of_the_conveniences);
    tcase_add_test(t2, second_order_sees_through_preaccumulation);
    tcase_add_test(t2, second_derivative_zero_at_kinks);
    tcase_add_test(t2, rosenbrock_hessian_closed_form);
    tcase_add_test(t2, hessian_symmetric_and_hvp_is_h_times_v);
    tcase_add_test(t2, random_expressions_hessian);
    tcase_add_test(t2, second_order_arguments);
    tcase_add_test(t2, first_order_after_second);
    tcase_add_test(t2, second_order_steady_state);
    tcase_add_test(t2, second_order_out_of_memory);
    suite_add_tcase(s, t2);
    return run_suite(s);
}
