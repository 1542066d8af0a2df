/* The lecture's algorithms as drivers: gradient descent with its stopping rule (converging on
 * a convex quadratic in the predicted number of iterations, "not converged" on Rosenbrock,
 * divergence), momentum escaping a saddle where plain GD stalls, minibatch SGD (J = N is GD,
 * J = 1 jumps to the sampled example), the minibatch sampler, and the drivers' errors. */
#include "testutil.h"
#include "optim.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-12

static ad_tensor *scalar_param(const char *name, double v)
{
    ad_tensor *p = ad_param_new(name, AD_F64, AD_SHAPE0);
    ck_assert_ptr_nonnull(p);
    ad_tensor_set(p, 0, v);
    return p;
}

static optim *new_or_fail(ad_tensor *const *ps, int n, optim_cfg c)
{
    char err[256];
    optim *o = optim_new(ps, n, &c, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    return o;
}

/* ========================================================================================== *
 * Gradient descent with the stopping rule
 */

/* L(theta) = 1/2 (theta_1^2 + 4 theta_2^2), with theta one [2] parameter. */
static ad_node *quadratic(ad_graph *g, void *user)
{
    static const double curv[2] = {1, 4};
    ad_node *p = ad_param(g, user);
    return ad_mul_scalar(g, ad_sum(g, ad_mul(g, ad_const(g, AD_F64, AD_SHAPE(2), curv), ad_mul(g, p, p))), 0.5);
}

START_TEST(gd_converges_on_a_quadratic_in_the_predicted_iterations)
{
    /* eta = 0.25 from (1, 1): theta_2's factor 1 - 0.25*4 = 0 zeroes it in the first step,
     * theta_1's factor is 0.75, so L_i = 0.5 * 0.5625^i for i >= 1 (L_0 = 2.5) and
     * L_i - L_{i+1} = 0.5 * 0.4375 * 0.5625^i = 0.21875 * 0.5625^i.
     * That falls below eps = 1e-6 first when 0.5625^i < 4.571e-6, i > ln(4.571e-6)/ln(0.5625)
     * = 21.37: at i = 22 (21: 1.24e-6, 22: 6.96e-7, both far from the threshold), i.e. after
     * the 23rd update.  Then theta_1 = 0.75^23 = 0.0013378550367377784 and
     * L = 0.5 * 0.75^46 = 8.949280496623212e-07. */
    ad_tensor *th = ad_param_new("theta", AD_F64, AD_SHAPE(2));
    ad_tensor_fill(th, 1);
    optim *o = new_or_fail(&th, 1, optim_defaults(OPTIM_GD, 0.25));
    optim_result r;
    ad_status st = optim_gd(o, quadratic, th, &(optim_gd_cfg){.eps = 1e-6, .max_iter = 1000}, &r);
    ck_assert_msg(st == AD_OK, "%s", optim_error(o));
    ck_assert_int_eq(r.iters, 23);
    ck_assert_int_eq(optim_steps(o), 23);
    ck_assert(fabs(ad_tensor_get(th, 0) - pow(0.75, 23)) <= TOL);
    ck_assert_double_eq(ad_tensor_get(th, 1), 0);
    ck_assert(fabs(r.loss - 0.5 * pow(0.75, 46)) <= TOL);
    /* the gradient at the returned point is left in the buffer: (theta_1, 4 theta_2) */
    ck_assert(fabs(ad_tensor_grad_get(th, 0) - pow(0.75, 23)) <= TOL);
    ck_assert_str_eq(optim_error(o), "");
    optim_free(o);
    ad_tensor_free(th);
}
END_TEST

typedef struct { ad_tensor *x, *y; } xy;

/* Rosenbrock: f(x, y) = (1 - x)^2 + 100 (y - x^2)^2. */
static ad_node *rosenbrock(ad_graph *g, void *user)
{
    xy *p = user;
    ad_node *x = ad_param(g, p->x), *y = ad_param(g, p->y);
    ad_node *a = ad_add_scalar(g, ad_neg(g, x), 1), *b = ad_sub(g, y, ad_mul(g, x, x));
    return ad_add(g, ad_mul(g, a, a), ad_mul_scalar(g, ad_mul(g, b, b), 100));
}

START_TEST(gd_reports_not_converged_on_rosenbrock)
{
    /* From (-1.2, 1), f = 2.2^2 + 100 (1 - 1.44)^2 = 4.84 + 19.36 = 24.2 and
     * grad f = (-2 (1 - x) - 400 x (y - x^2), 200 (y - x^2)) = (-4.4 - 211.2, -88) = (-215.6, -88).
     * One step of eta = 1e-3: (-0.9844, 1.088), f = 1.9844^2 + 100 (1.088 - 0.96904336)^2
     * = 3.93784336 + 1.41506822... = 5.35291158000896.  With i_max = 1 that is "not converged"
     * and the last loss. */
    xy p = {scalar_param("x", -1.2), scalar_param("y", 1)};
    ad_tensor *ps[] = {p.x, p.y};
    optim *o = new_or_fail(ps, 2, optim_defaults(OPTIM_GD, 1e-3));
    optim_result r;
    ck_assert_int_eq(optim_gd(o, rosenbrock, &p, &(optim_gd_cfg){.eps = 1e-9, .max_iter = 1}, &r), AD_NOT_CONVERGED);
    ck_assert_int_eq(r.iters, 1);
    ck_assert(fabs(ad_tensor_get(p.x, 0) + 0.9844) <= TOL);
    ck_assert(fabs(ad_tensor_get(p.y, 0) - 1.088) <= TOL);
    ck_assert(fabs(r.loss - 5.35291158000896) <= TOL);
    /* the message is the slide's exception with the last loss, printed to read back exactly */
    const char *msg = optim_error(o), *at = strstr(msg, "last loss ");
    ck_assert_ptr_nonnull(strstr(msg, "optim_gd: not converged in 1 iterations"));
    ck_assert_ptr_nonnull(at);
    ck_assert_double_eq(strtod(at + strlen("last loss "), NULL), r.loss);

    /* Rosenbrock's curved valley takes GD thousands of iterations at this rate; i_max = 100
     * is too few, however small the decrease per step becomes: not converged, the loss lower
     * than where it started but nowhere near the minimum 0 at (1, 1). */
    ck_assert_int_eq(optim_gd(o, rosenbrock, &p, &(optim_gd_cfg){.eps = 1e-9, .max_iter = 100}, &r),
                     AD_NOT_CONVERGED);
    ck_assert_int_eq(r.iters, 100);
    ck_assert_int_eq(optim_steps(o), 101);
    ck_assert(r.loss < 5.35291158000896 && r.loss > 1);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "not converged in 100 iterations"));
    optim_free(o);
    ad_tensor_free(p.x);
    ad_tensor_free(p.y);
}
END_TEST

/* L = x^2 / 2 with x a scalar parameter: g = x, so GD multiplies x by 1 - eta. */
static ad_node *half_square(ad_graph *g, void *user)
{
    ad_node *x = ad_param(g, user);
    return ad_mul_scalar(g, ad_mul(g, x, x), 0.5);
}

START_TEST(gd_rises_are_not_convergence_and_divergence_is_an_error)
{
    /* eta = 2.5: x <- -1.5 x, the loss rises every step (a negative "decrease", which the
     * slide's test would take for convergence): after i_max = 5, not converged with
     * L = 0.5 * 1.5^10 = 28.8325195312 */
    ad_tensor *x = scalar_param("x", 1);
    optim *o = new_or_fail(&x, 1, optim_defaults(OPTIM_GD, 2.5));
    optim_result r;
    ck_assert_int_eq(optim_gd(o, half_square, x, &(optim_gd_cfg){.eps = 1e-6, .max_iter = 5}, &r), AD_NOT_CONVERGED);
    ck_assert_int_eq(r.iters, 5);
    ck_assert_double_eq(r.loss, 0.5 * pow(1.5, 10));
    optim_free(o);

    /* eta = 1000: |x| = 999^i; x^2/2 overflows past 1.8e308 when 2 i log10(999) > 308.55,
     * i > 51.4: the loss at iteration 52 is inf, an error after 52 updates */
    ad_tensor_set(x, 0, 1);
    o = new_or_fail(&x, 1, optim_defaults(OPTIM_GD, 1000));
    ck_assert_int_eq(optim_gd(o, half_square, x, &(optim_gd_cfg){.eps = 1e-6, .max_iter = 1000}, &r),
                     AD_ERR_NUMERIC);
    ck_assert_int_eq(r.iters, 52);
    ck_assert(isinf(r.loss));
    ck_assert_ptr_nonnull(strstr(optim_error(o), "optim_gd: iteration 52: the loss is inf (diverged: lr = 1000"));
    optim_free(o);
    ad_tensor_free(x);
}
END_TEST

static ad_node *broken_loss(ad_graph *g, void *user)
{
    ad_node *x = ad_param(g, user);
    return ad_matmul(g, x, x); /* rank-0 operands: the engine refuses and names the op */
}

static ad_node *vector_loss(ad_graph *g, void *user)
{
    (void)user;
    return ad_const(g, AD_F64, AD_SHAPE(2, 3), NULL);
}

static bool stop_at_three(optim *o, double loss, void *user)
{
    (void)loss, (void)user;
    return optim_steps(o) < 3;
}

START_TEST(gd_errors)
{
    ad_tensor *x = scalar_param("x", 1);
    optim *o = new_or_fail(&x, 1, optim_defaults(OPTIM_GD, 0.1));
    optim_result r = {.iters = 7};
    ck_assert_int_eq(optim_gd(o, broken_loss, x, &(optim_gd_cfg){.eps = 1e-6, .max_iter = 10}, &r), AD_ERR_LOSS);
    ck_assert_int_eq(r.iters, 0);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "optim_gd: iteration 0: the loss callback failed: matmul"));
    ck_assert_int_eq(optim_gd(o, vector_loss, x, &(optim_gd_cfg){.eps = 1e-6, .max_iter = 10}, &r), AD_ERR_LOSS);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "the loss has shape [2,3], want one element"));
    ck_assert_int_eq(optim_gd(o, half_square, x, &(optim_gd_cfg){.eps = 0, .max_iter = 10}, &r), AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "eps = 0, max_iter = 10, want eps > 0"));
    ck_assert_int_eq(optim_gd(o, half_square, x, &(optim_gd_cfg){.eps = 1, .max_iter = 0}, &r), AD_ERR_ARG);
    ck_assert_int_eq(optim_gd(o, NULL, x, &(optim_gd_cfg){.eps = 1, .max_iter = 1}, &r), AD_ERR_NULL);
    ck_assert_int_eq(optim_gd(o, half_square, x, NULL, &r), AD_ERR_NULL);
    ck_assert_int_eq(optim_gd(NULL, half_square, x, &(optim_gd_cfg){.eps = 1, .max_iter = 1}, NULL), AD_ERR_NULL);
    /* on_step stops it: 3 updates, x = 0.9^3 = 0.729, L = 0.729^2/2 */
    ck_assert_int_eq(optim_gd(o, half_square, x, &(optim_gd_cfg){.eps = 1e-12, .max_iter = 100, .on_step = stop_at_three},
                              &r), AD_STOPPED);
    ck_assert_int_eq(r.iters, 3);
    ck_assert(fabs(ad_tensor_get(x, 0) - 0.729) <= TOL);
    ck_assert(fabs(r.loss - 0.5 * 0.729 * 0.729) <= TOL);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "optim_gd: stopped by on_step after 3 iterations"));
    optim_free(o);
    ad_tensor_free(x);
}
END_TEST

/* The example at the top of optim.h, verbatim but for the printing. */
static ad_node *tutorial_loss(ad_graph *g, void *user)
{
    ad_node *w = ad_param(g, (ad_tensor *)user);
    return ad_pow_scalar(g, ad_add_scalar(g, w, -3.0), 2.0);
}

START_TEST(header_tutorial_runs)
{
    /* f(w) = (w - 3)^2 from 0 with eta = 0.1: w - 3 shrinks by 1 - 0.2 = 0.8 a step, so
     * L_i = 9 * 0.64^i and L_i - L_{i+1} = 3.24 * 0.64^i, below 1e-12 first at
     * i > ln(1e-12/3.24)/ln(0.64) = 64.55: i = 65 (64: 1.28e-12, 65: 8.2e-13), 66 updates,
     * w = 3 - 3 * 0.8^66. */
    ad_tensor *w = ad_param_new("w", AD_F64, AD_SHAPE0);
    optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
    char err[256];
    optim *o = optim_new(&w, 1, &c, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    optim_result r;
    ck_assert_int_eq(optim_gd(o, tutorial_loss, w, &(optim_gd_cfg){.eps = 1e-12, .max_iter = 1000}, &r), AD_OK);
    ck_assert_int_eq(r.iters, 66);
    ck_assert(fabs(ad_tensor_get(w, 0) - (3 - 3 * pow(0.8, 66))) <= 1e-13);
    optim_free(o);
    ad_tensor_free(w);
}
END_TEST

/* ========================================================================================== *
 * Momentum at a saddle
 */

/* f(x, y) = x^2 - y^2 + y^4/4: a saddle at (0, 0), minima f = -1 at (0, +-sqrt 2). */
static ad_node *saddle(ad_graph *g, void *user)
{
    xy *p = user;
    ad_node *x = ad_param(g, p->x), *y = ad_param(g, p->y), *y2 = ad_mul(g, y, y);
    return ad_add(g, ad_sub(g, ad_mul(g, x, x), y2), ad_mul_scalar(g, ad_mul(g, y2, y2), 0.25));
}

/* Steps of cfg from (0.5, 1e-4) until y > 1 (most of the way down to sqrt 2), at most 2000;
 * writes y after `peek` steps into *y_at_peek. */
static int steps_to_escape(optim_cfg c, int peek, double *y_at_peek)
{
    xy p = {scalar_param("x", 0.5), scalar_param("y", 1e-4)};
    ad_tensor *ps[] = {p.x, p.y};
    optim *o = new_or_fail(ps, 2, c);
    ad_graph *g = ad_graph_new();
    int steps = 0;
    while (steps < 2000 && ad_tensor_get(p.y, 0) <= 1) {
        ad_graph_reset(g);
        optim_zero_grad(o);
        ck_assert_int_eq(ad_backward(g, saddle(g, &p)), AD_OK);
        ck_assert_int_eq(optim_step(o), AD_OK);
        if (++steps == peek) *y_at_peek = ad_tensor_get(p.y, 0);
    }
    ad_graph_free(g);
    optim_free(o);
    ad_tensor_free(p.x);
    ad_tensor_free(p.y);
    return steps;
}

START_TEST(momentum_escapes_a_saddle_where_gd_stalls)
{
    /* The y direction does not depend on x: y <- y + eta (2y - y^3).
     * GD, eta = 0.01: while 0 < y <= 1 the factor 1 + eta (2 - y^2) lies in [1.01, 1.02], so
     * from 1e-4 to past 1 takes between ln(1e4)/ln(1.02) = 465.1 and ln(1e4)/ln(1.01) = 925.6
     * steps: 466 <= n_gd <= 926.
     * Momentum, gamma = 0.9: near the saddle y_{k+1} = (1 + gamma + 2 eta) y_k - gamma y_{k-1},
     * roots of z^2 - 1.92 z + 0.9: z = 1.10697 and 0.81303.  With y_0 = 1e-4, y_1 = 1.02e-4 the
     * growing part is (1.02 - 0.81303)/(1.10697 - 0.81303) = 0.704 of y_0, so y passes 1 near
     * k = ln(1/0.704e-4)/ln(1.10697) = 94.1 (later, as y^3 brakes near 1): allow up to 115.
     * At that many steps GD's y is at most 1e-4 * 1.02^115 < 1e-3: still at the saddle. */
    double gd_y = 0, unused;
    optim_cfg mom = optim_defaults(OPTIM_MOMENTUM, 0.01);
    int n_mom = steps_to_escape(mom, -1, &unused);
    int n_gd = steps_to_escape(optim_defaults(OPTIM_GD, 0.01), n_mom, &gd_y);
    ck_assert_msg(n_mom >= 94 && n_mom <= 115, "momentum escaped after %d steps", n_mom);
    ck_assert_msg(n_gd >= 466 && n_gd <= 926, "gd escaped after %d steps", n_gd);
    ck_assert_msg(gd_y < 1e-3, "gd's y after %d steps: %g", n_mom, gd_y);
    ck_assert_msg(n_gd >= 4 * n_mom, "gd %d vs momentum %d steps", n_gd, n_mom);
    /* PyTorch's form at a constant rate is the same trajectory: the same count */
    mom.form = OPTIM_FORM_PYTORCH;
    ck_assert_int_eq(steps_to_escape(mom, -1, &unused), n_mom);
}
END_TEST

/* ========================================================================================== *
 * Minibatch SGD
 */

typedef struct {
    ad_tensor *theta;
    const double *d;   /* the data set */
    int64_t last[64];  /* the last minibatch */
    int64_t seen[64];  /* how often each example was drawn */
} mean_problem;

/* L_B(theta) = mean over n in B of (theta - d_n)^2 / 2: gradient theta - mean_B(d). */
static ad_node *mean_loss(ad_graph *g, const int64_t *batch, int64_t j, void *user)
{
    mean_problem *m = user;
    double v[64];
    for (int64_t k = 0; k < j; k++) v[k] = m->d[batch[k]], m->last[k] = batch[k], m->seen[batch[k]]++;
    ad_node *diff = ad_sub(g, ad_param(g, m->theta), ad_const(g, AD_F64, AD_SHAPE(j), v));
    return ad_mul_scalar(g, ad_mean(g, ad_mul(g, diff, diff)), 0.5);
}

START_TEST(sgd_full_batch_is_gd)
{
    /* J = N = 4, d = (1, 2, 3, 6), mean 3: every minibatch is the whole data set (in some
     * order; these sums are exact in any order), so theta <- theta - 0.5 (theta - 3):
     * 0 -> 1.5 -> 2.25 -> 2.625.  The last minibatch loss, at 2.25, is
     * (1.25^2 + 0.25^2 + 0.75^2 + 3.75^2) / 8 = 16.25 / 8 = 2.03125. */
    static const double d[4] = {1, 2, 3, 6};
    mean_problem m = {.theta = scalar_param("theta", 0), .d = d};
    optim *o = new_or_fail(&m.theta, 1, optim_defaults(OPTIM_GD, 0.5));
    optim_result r;
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, &(optim_sgd_cfg){.n = 4, .batch = 4, .steps = 3, .seed = 7}, &r),
                     AD_OK);
    ck_assert_int_eq(r.iters, 3);
    ck_assert_double_eq(ad_tensor_get(m.theta, 0), 2.625);
    ck_assert_double_eq(r.loss, 2.03125);
    for (int k = 0; k < 4; k++) ck_assert_int_eq(m.seen[k], 3);
    optim_free(o);
    ad_tensor_free(m.theta);
}
END_TEST

static bool theta_is_last_example(optim *o, double loss, void *user)
{
    (void)loss;
    mean_problem *m = user;
    ck_assert_double_eq(ad_tensor_get(optim_param(o, 0), 0), m->d[m->last[0]]);
    return true;
}

START_TEST(sgd_single_example_batches)
{
    /* J = 1 and eta = 1: theta <- theta - (theta - d_n) = d_n, so after every step theta is
     * the example just drawn (checked in on_step).  Without replacement, 8 steps over N = 4
     * are two epochs: every example exactly twice. */
    static const double d[4] = {10, 20, 30, 40};
    mean_problem m = {.theta = scalar_param("theta", 0), .d = d};
    optim *o = new_or_fail(&m.theta, 1, optim_defaults(OPTIM_GD, 1));
    optim_sgd_cfg c = {.n = 4, .batch = 1, .steps = 8, .seed = 3, .on_step = theta_is_last_example};
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, &c, NULL), AD_OK);
    for (int k = 0; k < 4; k++) ck_assert_int_eq(m.seen[k], 2);
    optim_free(o);
    ad_tensor_free(m.theta);
}
END_TEST

typedef struct { ad_tensor *w, *b; double x[64], y[64]; } regression;

/* Mean squared error of w x + b against y over the minibatch. */
static ad_node *regression_loss(ad_graph *g, const int64_t *batch, int64_t j, void *user)
{
    regression *r = user;
    double xb[64], yb[64];
    for (int64_t k = 0; k < j; k++) xb[k] = r->x[batch[k]], yb[k] = r->y[batch[k]];
    ad_node *pred = ad_add(g, ad_mul(g, ad_param(g, r->w), ad_const(g, AD_F64, AD_SHAPE(j), xb)), ad_param(g, r->b));
    return ad_mse(g, pred, ad_const(g, AD_F64, AD_SHAPE(j), yb));
}

START_TEST(sgd_fits_a_line_and_resumes_where_it_stopped)
{
    /* y = 2x + 1 on 64 points in (-1, 1), J = 8, eta = 0.1.  Without noise every minibatch
     * gradient vanishes at (2, 1), so SGD converges linearly: the slowest direction (w, with
     * E[x^2] = 1/3) contracts by about 1 - 2 * 0.1/3 per step, 0.9333^600 = 1e-18: w and b
     * reach the line to 1e-9. */
    regression r = {.w = scalar_param("w", 0), .b = scalar_param("b", 0)};
    for (int i = 0; i < 64; i++) r.x[i] = -1 + 2 * (i + 0.5) / 64, r.y[i] = 2 * r.x[i] + 1;
    ad_tensor *ps[] = {r.w, r.b};
    optim *o = new_or_fail(ps, 2, optim_defaults(OPTIM_GD, 0.1));
    optim_sgd_cfg c = {.n = 64, .batch = 8, .steps = 600, .seed = 11};
    optim_result res;
    ck_assert_int_eq(optim_sgd(o, regression_loss, &r, &c, &res), AD_OK);
    ck_assert_int_eq(res.iters, 600);
    ck_assert(fabs(ad_tensor_get(r.w, 0) - 2) < 1e-9);
    ck_assert(fabs(ad_tensor_get(r.b, 0) - 1) < 1e-9);
    optim_free(o);

    /* 10 steps in one call, and 4 + 6 in two: the minibatch of step t follows the
     * optimizer's step count, so both end on the same bits */
    double once[2];
    for (int split = 0; split < 2; split++) {
        ad_tensor_set(r.w, 0, 0);
        ad_tensor_set(r.b, 0, 0);
        optim_cfg mc = optim_defaults(OPTIM_MOMENTUM, 0.05);
        o = new_or_fail(ps, 2, mc);
        c.steps = split ? 4 : 10;
        ck_assert_int_eq(optim_sgd(o, regression_loss, &r, &c, NULL), AD_OK);
        if (split) {
            c.steps = 6;
            ck_assert_int_eq(optim_sgd(o, regression_loss, &r, &c, NULL), AD_OK);
            ck_assert_int_eq(optim_steps(o), 10);
            ck_assert(ad_tensor_get(r.w, 0) == once[0] && ad_tensor_get(r.b, 0) == once[1]);
        } else {
            once[0] = ad_tensor_get(r.w, 0), once[1] = ad_tensor_get(r.b, 0);
        }
        optim_free(o);
    }
    ad_tensor_free(r.w);
    ad_tensor_free(r.b);
}
END_TEST

static ad_node *failing_batch_loss(ad_graph *g, const int64_t *batch, int64_t j, void *user)
{
    (void)batch, (void)j, (void)user;
    return ad_add(g, NULL, NULL);
}

START_TEST(sgd_errors)
{
    static const double d[4] = {1, 2, 3, 4};
    mean_problem m = {.theta = scalar_param("theta", 0), .d = d};
    optim *o = new_or_fail(&m.theta, 1, optim_defaults(OPTIM_GD, 0.1));
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, &(optim_sgd_cfg){.n = 4, .batch = 5, .steps = 1}, NULL), AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "optim_sgd: n = 4, batch = 5, steps = 1, want 1 <= batch (<= n without replacement)"));
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, &(optim_sgd_cfg){.n = 4, .batch = 0, .steps = 1}, NULL), AD_ERR_ARG);
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, NULL, NULL), AD_ERR_NULL);
    optim_result r = {.iters = 5};
    ck_assert_int_eq(optim_sgd(o, failing_batch_loss, &m, &(optim_sgd_cfg){.n = 4, .batch = 2, .steps = 3}, &r),
                     AD_ERR_LOSS);
    ck_assert_int_eq(r.iters, 0);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "optim_sgd: iteration 0: the loss callback failed: add"));
    /* zero steps is a valid no-op */
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, &(optim_sgd_cfg){.n = 4, .batch = 2, .steps = 0}, &r), AD_OK);
    ck_assert_int_eq(r.iters, 0);
    ck_assert_int_eq(optim_sgd(o, mean_loss, &m, &(optim_sgd_cfg){.n = 4, .batch = 2, .steps = 9,
                                                                 .on_step = stop_at_three}, &r), AD_STOPPED);
    ck_assert_int_eq(r.iters, 3);
    optim_free(o);
    ad_tensor_free(m.theta);
}
END_TEST

/* ========================================================================================== *
 * The sampler
 */

START_TEST(sampler_epochs_without_replacement)
{
    /* N = 10, J = 3: three minibatches per epoch, one example left out (a different one each
     * epoch).  Within an epoch the 9 indices are distinct; over 30 epochs every example is
     * drawn (the chance that one is always the left-out one is 10 * 0.1^30). */
    optim_sampler *s = optim_sampler_new(10, 3, 42, false, NULL, 0);
    ck_assert_ptr_nonnull(s);
    int total[10] = {0};
    for (int e = 0; e < 30; e++) {
        int in_epoch[10] = {0};
        for (int b = 0; b < 3; b++) {
            const int64_t *idx = optim_sampler_batch(s, 3 * e + b);
            for (int k = 0; k < 3; k++) {
                ck_assert(idx[k] >= 0 && idx[k] < 10);
                ck_assert_int_eq(in_epoch[idx[k]]++, 0);
                total[idx[k]]++;
            }
        }
    }
    for (int k = 0; k < 10; k++) ck_assert_int_gt(total[k], 0);
    /* random access: batch 7 is the same before and after visiting batch 0 */
    int64_t first[3], again[3];
    memcpy(first, optim_sampler_batch(s, 7), sizeof first);
    (void)optim_sampler_batch(s, 0);
    memcpy(again, optim_sampler_batch(s, 7), sizeof again);
    ck_assert_mem_eq(first, again, sizeof first);
    /* another seed gives another order (the same 10! permutation has chance 1/3628800) */
    optim_sampler *s2 = optim_sampler_new(10, 3, 43, false, NULL, 0);
    int same = 0;
    for (int b = 0; b < 3; b++)
        same += !memcmp(optim_sampler_batch(s, b), optim_sampler_batch(s2, b), 3 * sizeof(int64_t));
    ck_assert_int_lt(same, 3);
    ck_assert_ptr_null(optim_sampler_batch(s, -1));
    ck_assert_ptr_null(optim_sampler_batch(NULL, 0));
    optim_sampler_free(s);
    optim_sampler_free(s2);
    optim_sampler_free(NULL);
}
END_TEST

START_TEST(sampler_with_replacement)
{
    /* 20 minibatches of 1000 draws over N = 10: each count is Binomial(20000, 0.1), mean 2000,
     * sd 42.4; +-300 is 7 sd.  A minibatch can repeat an example (J = 1000 > N). */
    optim_sampler *s = optim_sampler_new(10, 1000, 5, true, NULL, 0);
    ck_assert_ptr_nonnull(s);
    int count[10] = {0};
    for (int t = 0; t < 20; t++) {
        const int64_t *idx = optim_sampler_batch(s, t);
        for (int k = 0; k < 1000; k++) {
            ck_assert(idx[k] >= 0 && idx[k] < 10);
            count[idx[k]]++;
        }
    }
    for (int k = 0; k < 10; k++) ck_assert_msg(abs(count[k] - 2000) < 300, "example %d drawn %d times", k, count[k]);
    int64_t a = optim_sampler_batch(s, 3)[17];
    (void)optim_sampler_batch(s, 4);
    ck_assert_int_eq(optim_sampler_batch(s, 3)[17], a);
    optim_sampler_free(s);
    char err[128];
    ck_assert_ptr_null(optim_sampler_new(5, 6, 1, false, err, sizeof err));
    ck_assert_str_eq(err, "optim_sampler_new: n = 5, j = 6, want n >= 1 and 1 <= j <= n (without replacement)");
    ck_assert_ptr_null(optim_sampler_new(0, 1, 1, true, err, sizeof err));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_drivers");
    TCase *gd = tcase_create("gd");
    tcase_add_test(gd, gd_converges_on_a_quadratic_in_the_predicted_iterations);
    tcase_add_test(gd, gd_reports_not_converged_on_rosenbrock);
    tcase_add_test(gd, gd_rises_are_not_convergence_and_divergence_is_an_error);
    tcase_add_test(gd, gd_errors);
    tcase_add_test(gd, header_tutorial_runs);
    tcase_add_test(gd, momentum_escapes_a_saddle_where_gd_stalls);
    suite_add_tcase(s, gd);
    TCase *sgd = tcase_create("sgd");
    tcase_add_test(sgd, sgd_full_batch_is_gd);
    tcase_add_test(sgd, sgd_single_example_batches);
    tcase_add_test(sgd, sgd_fits_a_line_and_resumes_where_it_stopped);
    tcase_add_test(sgd, sgd_errors);
    tcase_add_test(sgd, sampler_epochs_without_replacement);
    tcase_add_test(sgd, sampler_with_replacement);
    suite_add_tcase(s, sgd);
    return run_suite(s);
}
