/* simulate: differentiating an ordinary C function — a damped oscillator integrated with
 * explicit Euler in a plain for loop — and fitting its parameters to observations.
 *
 *   simulate [--damping 0.5] [--stiffness 4] [--seed 1] [--svg simulate.svg] ...
 *
 * The model: x'' = -c x' - k x with x(0) = 1, x'(0) = 0, stepped 1,000 times with dt = 0.01:
 *     x_{n+1} = x_n + dt v_n,   v_{n+1} = v_n + dt (-c v_n - k x_n).
 * Observations are the positions every 10 steps from the true (c, k), plus noise.  The loss
 * L(c, k) = mean (x(t_i) - observed_i)^2 is the C loop itself, written with the API's scalar
 * ops; ad_gradient gives its exact gradient (checked against central differences by
 * ad_gradcheck), and optim_gd minimises it with the lecture's rule: stop when
 * L(theta_i) - L(theta_{i+1}) < eps. */
#include "ad.h"
#include "optim.h"
#include "opts.h"
#include "plot.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: simulate [options]\n"
    "Fits the damping c and stiffness k of x'' = -c x' - k x (explicit Euler, 1,000 steps of\n"
    "dt = 0.01 in a C loop) to noisy observed positions, by gradient descent on the squared error\n"
    "with the lecture's stopping rule; checks the gradient against finite differences first.\n";

enum { EVERY = 10 };

typedef struct {
    int steps;        /* Euler steps */
    double dt, x0, v0;
    const double *obs;/* observed positions after steps EVERY, 2 EVERY, ... */
    int nobs;
} sim;

/* The plain C simulation, for making the observations and drawing trajectories: writes the
 * position after every step into x[0..steps] (x[0] = x0). */
static void simulate_plain(const sim *s, double c, double k, double *x)
{
    double p = s->x0, v = s->v0;
    x[0] = p;
    for (int n = 1; n <= s->steps; n++) {
        double a = -c * v - k * p;
        p += s->dt * v;
        v += s->dt * a;
        x[n] = p;
    }
}

/* The same loop on the graph: L(c, k), the mean squared distance between the simulated and
 * the observed positions.  An ad_fn: p[0] = c, p[1] = k. */
static ad_node *sim_loss(ad_graph *g, ad_node *const *p, int np, void *user)
{
    const sim *s = user;
    ad_node *c = p[0], *k = p[1];
    (void)np;
    ad_node *x = ad_const_scalar(g, s->x0), *v = ad_const_scalar(g, s->v0), *sum = NULL;
    for (int n = 1; n <= s->steps; n++) {
        ad_node *a = ad_neg(g, ad_add(g, ad_mul(g, c, v), ad_mul(g, k, x)));
        x = ad_add(g, x, ad_mul_scalar(g, v, s->dt));
        v = ad_add(g, v, ad_mul_scalar(g, a, s->dt));
        if (n % EVERY == 0) {
            ad_node *d = ad_add_scalar(g, x, -s->obs[n / EVERY - 1]);
            ad_node *sq = ad_mul(g, d, d);
            sum = sum ? ad_add(g, sum, sq) : sq;
        }
    }
    return ad_mul_scalar(g, sum, 1.0 / s->nobs);
}

/* optim_gd's callback: the parameters' leaves, then the same function. */
typedef struct {
    sim *s;
    ad_tensor *c, *k;
    int64_t next, printed; /* the next iteration to print (1, 2, 5, 10, 20, ...), the last printed */
} fit_ctx;

static ad_node *gd_loss(ad_graph *g, void *user)
{
    fit_ctx *f = user;
    ad_node *p[2] = {ad_param(g, f->c), ad_param(g, f->k)};
    return sim_loss(g, p, 2, f->s);
}

static bool on_step(optim *o, double loss, void *user)
{
    fit_ctx *f = user;
    int64_t i = optim_steps(o);
    if (i == f->next) {
        printf("  %7lld  %.10f  %9.6f  %9.6f\n", (long long)i, loss, ad_tensor_get(f->c, 0),
               ad_tensor_get(f->k, 0));
        fflush(stdout);
        f->printed = i;
        /* 1, 2, 5, 10, 20, 50, ...: a few lines however long the run */
        int64_t d = f->next;
        while (d >= 10) d /= 10;
        f->next = d == 2 ? f->next / 2 * 5 : f->next * 2;
    }
    return true;
}

/* --start's "C,K": two numbers from 0 to 1000 into dest (double[2]). */
static bool parse_start(const char *s, void *dest)
{
    double v[2];
    for (int i = 0; i < 2; i++) {
        char *end;
        errno = 0;
        v[i] = strtod(s, &end);
        if (end == s || errno || !(v[i] >= 0 && v[i] <= 1000) || *end != (i == 0 ? ',' : 0)) return false;
        s = end + 1;
    }
    memcpy(dest, v, sizeof v);
    return true;
}

int main(int argc, char **argv)
{
    double c_true = 0.5, k_true = 4, start[2] = {0.2, 3}, noise = 0.02, rate = 1, eps = 1e-12;
    long steps = 1000, max_iter = 10000, seed = 1;
    const char *svg = "simulate.svg";
    opts_def defs[] = {
        {"--damping", OPTS_REAL, &c_true, "C", .help = "true damping that makes the observations (default 0.5)", .lo = 0,
         .hi = 100},
        {"--stiffness", OPTS_REAL, &k_true, "K", .help = "true stiffness (default 4)", .lo = 0.01, .hi = 1000},
        {"--start", OPTS_CUSTOM, start, "C,K", .help = "where gradient descent starts (default 0.2,3)", .parse = parse_start,
         .want = "two numbers C,K from 0 to 1000"},
        {"--noise", OPTS_REAL, &noise, "S", .help = "standard deviation of the observation noise (default 0.02, 0 to 1)",
         .lo = 0, .hi = 1},
        {"--steps", OPTS_LONG, &steps, "N", .help = "Euler steps (default 1000, 10 to 1000000); an observation every 10",
         .lo = 10, .hi = 1000000},
        {"--rate", OPTS_REAL, &rate, "R", .help = "gradient descent's eta (default 1)", .lo = 1e-12, .hi = 1000},
        {"--eps", OPTS_REAL, &eps, "E", .help = "stop when the loss falls by less than E in one step (default 1e-12)", .lo = 0,
         .hi = 1},
        {"--max-iter", OPTS_LONG, &max_iter, "N", .help = "give up after N updates (default 10000)", .lo = 1, .hi = 1e8},
        {"--seed", OPTS_LONG, &seed, "N", .help = "seeds the observation noise (default 1)", .lo = 0, .hi = 2147483647},
        {"--svg", OPTS_TEXT, &svg, "PATH", .help = "the picture of observations and trajectories (default simulate.svg)"},
    };
    opts_spec spec = {.prog = "simulate", .usage = USAGE, .defs = defs,
                      .ndefs = sizeof defs / sizeof *defs};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL, 0);
    if (rc >= 0) return rc;

    int nsteps = (int)steps, nobs = nsteps / EVERY;
    double *obs = malloc(sizeof(double) * (size_t)nobs);
    double *traj = malloc(sizeof(double) * 3 * (size_t)(nsteps + 1));
    double *tt = malloc(sizeof(double) * (size_t)(nsteps + 1));
    double *ot = malloc(sizeof(double) * (size_t)nobs);
    ad_tensor *pc = ad_param_new("c", AD_F64, AD_SHAPE0), *pk = ad_param_new("k", AD_F64, AD_SHAPE0);
    optim *o = NULL;
    int status = 1;
    if (!obs || !traj || !tt || !ot || !pc || !pk) {
        fprintf(stderr, "simulate: out of memory\n");
        goto out;
    }
    sim s = {.steps = nsteps, .dt = 0.01, .x0 = 1, .v0 = 0, .obs = obs, .nobs = nobs};
    double *x_true = traj, *x_start = traj + (nsteps + 1), *x_fit = traj + 2 * (nsteps + 1);

    /* the observations: the true trajectory every EVERY steps, plus noise */
    ad_rng rng;
    ad_rng_seed(&rng, (uint64_t)seed);
    simulate_plain(&s, c_true, k_true, x_true);
    double biggest = 0;
    for (int n = 0; n <= nsteps; n++) biggest = fmax(biggest, fabs(x_true[n]));
    if (!(biggest <= 10)) {
        fprintf(stderr, "simulate: explicit Euler with dt = %g is unstable for c = %g, k = %g: the positions grow to %.3g "
                        "(more damping or less stiffness keeps it stable)\n", s.dt, c_true, k_true, biggest);
        status = 2;
        goto out;
    }
    for (int i = 0; i < nobs; i++) {
        obs[i] = x_true[(i + 1) * EVERY] + noise * ad_rng_normal(&rng);
        ot[i] = (i + 1) * EVERY * s.dt;
    }
    printf("simulate: x'' = -c x' - k x, x(0) = 1, x'(0) = 0; explicit Euler, %d steps of dt = %g in a C loop\n",
           nsteps, s.dt);
    printf("observed: x every %d steps (%d positions) from c = %g, k = %g, plus N(0, %g^2) noise (seed %ld)\n",
           EVERY, nobs, c_true, k_true, noise, seed);

    /* value and exact gradient at the start, and the check against central differences */
    double value, grad[2];
    ad_graph *g = ad_graph_new();
    if (!g || ad_gradient(g, sim_loss, 2, start, &s, &value, grad) != AD_OK) {
        fprintf(stderr, "simulate: the gradient failed: %s\n", g && ad_error(g) ? ad_error(g) : "out of memory");
        ad_graph_free(g);
        goto out;
    }
    printf("loss: L(c, k) = mean (x(t_i) - observed_i)^2, one graph node per number (%u nodes)\n\n",
           ad_graph_num_nodes(g));
    ad_graph_free(g);
    printf("at the start (c, k) = (%g, %g): L = %.10f, gradient (dL/dc, dL/dk) = (%.10f, %.10f)\n", start[0],
           start[1], value, grad[0], grad[1]);
    ad_check_report rep;
    ad_status cs = ad_gradcheck(sim_loss, 2, start, &s, NULL, &rep);
    printf("gradcheck against central differences (eps 1e-6): %s, largest error %.1e (relative %.1e)\n",
           cs == AD_OK ? "passed" : "FAILED", rep.max_abs_err, rep.max_rel_err);
    printf("  worst element d/d%s: backprop %.10f, finite differences %.10f\n\n", rep.worst_input ? "k" : "c",
           rep.analytic, rep.numeric);
    if (cs != AD_OK) {
        fprintf(stderr, "simulate: gradcheck failed: %s\n", rep.msg);
        goto out;
    }

    /* gradient descent with the lecture's stopping rule */
    ad_tensor_set(pc, 0, start[0]);
    ad_tensor_set(pk, 0, start[1]);
    ad_tensor *ps[2] = {pc, pk};
    optim_cfg oc = optim_defaults(OPTIM_GD, rate);
    char err[256];
    o = optim_new(ps, 2, &oc, err, sizeof err);
    if (!o) {
        fprintf(stderr, "simulate: %s\n", err);
        goto out;
    }
    fit_ctx f = {.s = &s, .c = pc, .k = pk, .next = 1};
    printf("gradient descent: theta <- theta - %g grad L(theta) until L(theta_i) - L(theta_i+1) < %g\n", rate, eps);
    printf("     iter  loss           damping c  stiffness k\n");
    printf("  %7d  %.10f  %9.6f  %9.6f\n", 0, value, start[0], start[1]);
    optim_result res;
    ad_status st = optim_gd(o, gd_loss, &f, &(optim_gd_cfg){.eps = eps, .max_iter = (int64_t)max_iter,
                                                                 .on_step = on_step}, &res);
    double c_fit = ad_tensor_get(pc, 0), k_fit = ad_tensor_get(pk, 0);
    if (f.printed != res.iters)
        printf("  %7lld  %.10f  %9.6f  %9.6f\n", (long long)res.iters, res.loss, c_fit, k_fit);
    if (st != AD_OK) {
        fprintf(stderr, "simulate: %s\n", optim_error(o));
        goto out;
    }
    printf("converged after %lld iterations: the loss fell by less than %g\n\n", (long long)res.iters, eps);
    printf("            damping c  stiffness k\n");
    printf("  true      %9.6f  %9.6f\n", c_true, k_true);
    printf("  start     %9.6f  %9.6f\n", start[0], start[1]);
    printf("  fitted    %9.6f  %9.6f\n", c_fit, k_fit);

    /* the picture */
    simulate_plain(&s, start[0], start[1], x_start);
    simulate_plain(&s, c_fit, k_fit, x_fit);
    for (int n = 0; n <= nsteps; n++) tt[n] = n * s.dt;
    char lt[64], ls[64], lf[64], title[128];
    snprintf(lt, sizeof lt, "true c=%g k=%g", c_true, k_true);
    snprintf(ls, sizeof ls, "start c=%g k=%g", start[0], start[1]);
    snprintf(lf, sizeof lf, "fitted c=%.3f k=%.3f", c_fit, k_fit);
    snprintf(title, sizeof title, "damped oscillator: fitting c and k through %d Euler steps", nsteps);
    plot_series ser[] = {
        {.x = tt, .y = x_true, .n = nsteps + 1, .label = lt, .color = "#aaaaaa"},
        {.x = tt, .y = x_start, .n = nsteps + 1, .label = ls, .color = "#E69F00"},
        {.x = tt, .y = x_fit, .n = nsteps + 1, .label = lf, .color = "#0072B2"},
        {.x = ot, .y = obs, .n = nobs, .label = "observed", .color = "#333333", .points = true},
    };
    if (plot_lines_svg(svg, &(plot_cfg){.title = title, .xlabel = "time t", .ylabel = "position x",
                                        .width = 720, .height = 420}, ser, 4, err,
                       sizeof err)) {
        fprintf(stderr, "simulate: %s\n", err);
        goto out;
    }
    printf("\npicture: %s\n", svg);
    status = 0;
out:
    optim_free(o);
    ad_tensor_free(pc);
    ad_tensor_free(pk);
    free(obs);
    free(traj);
    free(tt);
    free(ot);
    return status;
}
