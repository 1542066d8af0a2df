/* moons: the classic two-moons classifier, trained three ways on the same data from the same
 * initial weights, and timed.
 *
 *   moons [--points 100] [--steps 100] [--seed 1] [--svg moons.svg] ...
 *
 * An MLP 2-16-16-1 (relu) learns to separate two interleaved half circles with the max-margin
 * (hinge) loss mean(max(0, 1 - y f(x))) + lambda * sum(theta^2), by gradient descent at the
 * decaying rate eta_t = eta_0 (1 - 0.9 t / steps) — micrograd's demo.  The same steps run on
 *   1. the scalar graph: one ad_node per number, the network written as loops over weights
 *      and inputs, exactly as a teacher draws it;
 *   2. the scalar tape (ad_real.h): the same loops on active doubles, which merge their terms
 *      and write a tape entry only when a value needs more than two;
 *   3. tensors: nn_mlp (ad_linear on parameter tensors) with optim's gradient descent.
 * All three run in float64 and must end at the same loss (to 1e-9).  The picture shows the
 * trained classifier's score over the plane, its decision boundary f(x) = 0 and the points. */
#include "ad.h"
#include "ad_real.h"
#include "nn.h"
#include "optim.h"
#include "opts.h"
#include "plot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *USAGE =
    "usage: moons [options]\n"
    "Trains an MLP 2-16-16-1 (relu) on the two-moons data with the hinge loss + L2 by gradient\n"
    "descent, three times from the same weights: on the scalar graph (one node per number), on\n"
    "the scalar tape (ad_real) and on tensors (nn_mlp); prints the accuracy and the timings and\n"
    "draws the decision boundary.\n";

/* ---- data --------------------------------------------------------------------------------- */

typedef struct {
    int n;
    double *x; /* n rows of 2 */
    double *y; /* n labels, -1 (outer moon) or +1 (inner moon) */
} moons_data;

/* scikit-learn's make_moons: the outer half circle (cos t, sin t) and the inner one
 * (1 - cos t, 0.5 - sin t), t evenly spaced in [0, pi], plus N(0, noise^2) on each
 * coordinate. */
static bool make_moons(moons_data *d, int n, double noise, ad_rng *rng)
{
    d->n = n;
    d->x = malloc(sizeof(double) * 2 * (size_t)n);
    d->y = malloc(sizeof(double) * (size_t)n);
    if (!d->x || !d->y) return false;
    int n_out = n / 2, n_in = n - n_out;
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < n; i++) {
        bool outer = i < n_out;
        int k = outer ? i : i - n_out, m = outer ? n_out : n_in;
        double t = m > 1 ? pi * k / (m - 1) : 0;
        d->x[2 * i] = outer ? cos(t) : 1 - cos(t);
        d->x[2 * i + 1] = outer ? sin(t) : 0.5 - sin(t);
        d->y[i] = outer ? -1 : 1;
    }
    for (int i = 0; i < 2 * n; i++) d->x[i] += noise * ad_rng_normal(rng);
    return true;
}

/* ---- the network's parameters, flat, in nn_mlp_params' order: W1 b1 W2 b2 W3 b3 ----------- */

enum { IN = 2, H1 = 16, H2 = 16, OUT = 1 };
enum {
    OW1 = 0, OB1 = OW1 + H1 * IN,
    OW2 = OB1 + H1, OB2 = OW2 + H2 * H1,
    OW3 = OB2 + H2, OB3 = OW3 + OUT * H2,
    NPARAM = OB3 + OUT
};

typedef struct {
    const moons_data *d;
    int steps;
    double rate, lambda;
} train_cfg;

/* One run's record: loss and accuracy before each update (and after the last), time spent in
 * the steps (forward, backward, update). */
typedef struct {
    const char *name;
    double *loss, *acc;
    double seconds, best; /* this run's time, the fastest of the repeats */
    uint64_t nodes; /* graph nodes (or tape entries) per step */
} run_log;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rate_at(const train_cfg *c, int t) { return c->rate * (1 - 0.9 * t / c->steps); }

/* The progress table is printed while the first engine runs. */
static void progress(const run_log *r, const train_cfg *c, int t, bool print)
{
    int every = c->steps >= 10 ? c->steps / 10 : 1;
    if (print && (t % every == 0 || t == c->steps))
        printf("  %5d  %10.6f  %6.1f%%\n", t, r->loss[t], 100 * r->acc[t]);
    if (print) fflush(stdout);
}

/* ---- 1. the scalar graph: one node per number ---------------------------------------------- */

/* One layer of units, as the lecture draws it: z_j = sigma(b_j + sum_k w_jk x_k). */
static void scalar_layer(ad_graph *g, ad_node *const *w, ad_node *const *b, int in, int out,
                         ad_node *const *x, ad_node **z, bool relu)
{
    for (int j = 0; j < out; j++) {
        ad_node *s = b[j];
        for (int k = 0; k < in; k++) s = ad_add(g, s, ad_mul(g, w[j * in + k], x[k]));
        z[j] = relu ? ad_relu(g, s) : s;
    }
}

/* L(theta) on the graph from the parameter nodes p; counts the correctly classified points. */
static ad_node *scalar_loss(ad_graph *g, ad_node *const *p, const train_cfg *c, int *correct)
{
    const moons_data *d = c->d;
    ad_node *sum = NULL;
    *correct = 0;
    for (int i = 0; i < d->n; i++) {
        ad_node *x[IN] = {ad_const_scalar(g, d->x[2 * i]), ad_const_scalar(g, d->x[2 * i + 1])};
        ad_node *z1[H1], *z2[H2], *f;
        scalar_layer(g, p + OW1, p + OB1, IN, H1, x, z1, true);
        scalar_layer(g, p + OW2, p + OB2, H1, H2, z1, z2, true);
        scalar_layer(g, p + OW3, p + OB3, H2, OUT, z2, &f, false);
        *correct += ad_value(f) * d->y[i] > 0;
        /* the hinge max(0, 1 - y f(x)) */
        ad_node *h = ad_relu(g, ad_add_scalar(g, ad_mul_scalar(g, f, -d->y[i]), 1));
        sum = sum ? ad_add(g, sum, h) : h;
    }
    ad_node *reg = NULL;
    for (int k = 0; k < NPARAM; k++) {
        ad_node *sq = ad_mul(g, p[k], p[k]);
        reg = reg ? ad_add(g, reg, sq) : sq;
    }
    return ad_add(g, ad_mul_scalar(g, sum, 1.0 / d->n), ad_mul_scalar(g, reg, c->lambda));
}

static bool run_scalar_graph(double *theta, const train_cfg *c, run_log *r, bool print)
{
    ad_graph *g = ad_graph_new();
    if (!g) {
        fprintf(stderr, "moons: out of memory\n");
        return false;
    }
    ad_node *p[NPARAM];
    int t;
    for (t = 0; t <= c->steps; t++) {
        double t0 = now();
        ad_graph_reset(g);
        for (int k = 0; k < NPARAM; k++) p[k] = ad_var(g, NULL, theta[k]);
        int correct;
        ad_node *loss = scalar_loss(g, p, c, &correct);
        if (!loss) break;
        r->loss[t] = ad_value(loss);
        r->acc[t] = (double)correct / c->d->n;
        if (t < c->steps) {
            if (ad_backward(g, loss) != AD_OK) break;
            double eta = rate_at(c, t);
            for (int k = 0; k < NPARAM; k++) theta[k] -= eta * ad_grad(p[k]);
            r->seconds += now() - t0;
            r->nodes = ad_graph_get_stats(g).nodes;
        }
        progress(r, c, t, print);
    }
    bool ok = t > c->steps;
    if (!ok) fprintf(stderr, "moons: scalar graph: %s\n", ad_error(g) ? ad_error(g) : "failed");
    ad_graph_free(g);
    return ok;
}

/* ---- 2. the scalar tape: the same loops on ad_real ------------------------------------------ */

static void tape_layer(ad_tape *t, const ad_real *w, const ad_real *b, int in, int out,
                       const ad_real *x, ad_real *z, bool relu)
{
    for (int j = 0; j < out; j++) {
        ad_real s = b[j];
        for (int k = 0; k < in; k++) s = ad_real_add(t, s, ad_real_mul(t, w[j * in + k], x[k]));
        z[j] = relu ? ad_real_relu(t, s) : s;
    }
}

static ad_real tape_loss(ad_tape *t, const ad_real *p, const train_cfg *c, int *correct)
{
    const moons_data *d = c->d;
    ad_real sum = ad_real_const(0);
    *correct = 0;
    for (int i = 0; i < d->n; i++) {
        ad_real x[IN] = {ad_real_const(d->x[2 * i]), ad_real_const(d->x[2 * i + 1])};
        ad_real z1[H1], z2[H2], f;
        tape_layer(t, p + OW1, p + OB1, IN, H1, x, z1, true);
        tape_layer(t, p + OW2, p + OB2, H1, H2, z1, z2, true);
        tape_layer(t, p + OW3, p + OB3, H2, OUT, z2, &f, false);
        *correct += f.v * d->y[i] > 0;
        ad_real h = ad_real_relu(t, ad_real_add_scalar(t, ad_real_mul_scalar(t, f, -d->y[i]), 1));
        sum = i ? ad_real_add(t, sum, h) : h;
    }
    ad_real reg = ad_real_const(0);
    for (int k = 0; k < NPARAM; k++) {
        ad_real sq = ad_real_mul(t, p[k], p[k]);
        reg = k ? ad_real_add(t, reg, sq) : sq;
    }
    return ad_real_add(t, ad_real_mul_scalar(t, sum, 1.0 / d->n), ad_real_mul_scalar(t, reg, c->lambda));
}

static bool run_scalar_tape(double *theta, const train_cfg *c, run_log *r)
{
    ad_tape *tp = ad_tape_new();
    ad_real p[NPARAM];
    bool ok = tp != NULL;
    for (int t = 0; ok && t <= c->steps; t++) {
        double t0 = now();
        ad_tape_reset(tp);
        for (int k = 0; k < NPARAM; k++) p[k] = ad_real_var(tp, theta[k]);
        int correct;
        ad_real loss = tape_loss(tp, p, c, &correct);
        r->loss[t] = loss.v;
        r->acc[t] = (double)correct / c->d->n;
        if (t < c->steps) {
            if (ad_tape_backward(tp, loss) != AD_OK) {
                fprintf(stderr, "moons: scalar tape: out of memory\n");
                ok = false;
                break;
            }
            double eta = rate_at(c, t);
            for (int k = 0; k < NPARAM; k++) theta[k] -= eta * ad_real_grad(tp, p[k]);
            r->seconds += now() - t0;
            r->nodes = (uint64_t)tp->n;
        }
    }
    if (!tp) fprintf(stderr, "moons: out of memory\n");
    ad_tape_free(tp);
    return ok;
}

/* ---- 3. tensors: nn_mlp and optim ---------------------------------------------------------- */

static bool run_tensor(nn_mlp *m, const train_cfg *c, run_log *r)
{
    const moons_data *d = c->d;
    ad_tensor *xs = ad_tensor_from(AD_F64, AD_SHAPE(d->n, IN), d->x);
    ad_tensor *ys = ad_tensor_from(AD_F64, AD_SHAPE(d->n, 1), d->y);
    ad_graph *g = ad_graph_new();
    char err[256] = "out of memory";
    optim_cfg oc = optim_defaults(OPTIM_GD, c->rate);
    optim *o = xs && ys && g ? optim_new(nn_mlp_params(m), nn_mlp_num_params(m), &oc, err, sizeof err) : NULL;
    bool ok = o != NULL;
    if (!ok) fprintf(stderr, "moons: tensors: %s\n", err);
    for (int t = 0; ok && t <= c->steps; t++) {
        double t0 = now();
        ad_graph_reset(g);
        optim_zero_grad(o);
        ad_node *f = nn_mlp_forward(g, m, ad_const_tensor(g, xs), NN_TRAIN); /* [N,1] */
        ad_node *hinge = ad_relu(g, ad_add_scalar(g, ad_neg(g, ad_mul(g, ad_const_tensor(g, ys), f)), 1));
        ad_node *loss = nn_regularized(g, ad_mean(g, hinge), m, NN_L2, c->lambda, false);
        if (!loss) {
            fprintf(stderr, "moons: tensors: %s\n", ad_error(g));
            ok = false;
            break;
        }
        r->loss[t] = ad_value(loss);
        int correct = 0;
        for (int i = 0; i < d->n; i++) correct += ad_node_get(f, i) * d->y[i] > 0;
        r->acc[t] = (double)correct / d->n;
        if (t < c->steps) {
            if (ad_backward(g, loss) != AD_OK) {
                fprintf(stderr, "moons: tensors: %s\n", ad_error(g));
                ok = false;
                break;
            }
            optim_set_lr(o, rate_at(c, t));
            optim_step(o);
            r->seconds += now() - t0;
            r->nodes = ad_graph_get_stats(g).nodes;
        }
    }
    optim_free(o);
    ad_graph_free(g);
    ad_tensor_free(xs);
    ad_tensor_free(ys);
    return ok;
}

/* Puts the flat parameter vector back into the model. */
static void set_params(nn_mlp *m, const double *theta)
{
    for (ad_tensor *const *p = nn_mlp_params(m); *p; p++)
        for (int64_t i = 0; i < ad_tensor_size(*p); i++) ad_tensor_set(*p, i, *theta++);
}

/* ---- the picture ------------------------------------------------------------------------- */

static int draw(const char *path, nn_mlp *m, const moons_data *d, double acc, int steps)
{
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < d->n; i++) {
        x0 = fmin(x0, d->x[2 * i]), x1 = fmax(x1, d->x[2 * i]);
        y0 = fmin(y0, d->x[2 * i + 1]), y1 = fmax(y1, d->x[2 * i + 1]);
    }
    x0 = floor((x0 - 0.3) * 2) / 2, x1 = ceil((x1 + 0.3) * 2) / 2;
    y0 = floor((y0 - 0.3) * 2) / 2, y1 = ceil((y1 + 0.3) * 2) / 2;
    enum { NX = 84, NY = 56 };
    double *grid = malloc(sizeof(double) * NX * NY * 2), *z = malloc(sizeof(double) * NX * NY);
    double *px = malloc(sizeof(double) * (size_t)d->n * 2);
    ad_tensor *gx = NULL;
    int rc = 1;
    if (!grid || !z || !px) {
        fprintf(stderr, "moons: out of memory\n");
        goto out;
    }
    for (int j = 0; j < NY; j++)
        for (int i = 0; i < NX; i++) {
            grid[2 * (j * NX + i)] = x0 + (x1 - x0) * (i + 0.5) / NX;
            grid[2 * (j * NX + i) + 1] = y0 + (y1 - y0) * (j + 0.5) / NY;
        }
    gx = ad_tensor_from(AD_F64, AD_SHAPE(NX * NY, IN), grid);
    ad_graph *g = ad_graph_new();
    ad_status st = gx && g ? nn_mlp_predict(g, m, gx, z, NULL) : AD_ERR_NOMEM;
    if (st != AD_OK) fprintf(stderr, "moons: %s\n", g && ad_error(g) ? ad_error(g) : "out of memory");
    ad_graph_free(g);
    if (st != AD_OK) goto out;
    /* the two classes as two series of markers */
    int na = 0, nb = 0;
    for (int i = 0; i < d->n; i++)
        if (d->y[i] < 0) na++;
    double *ax = px, *ay = px + na, *bx = px + 2 * na, *by = bx + (d->n - na);
    for (int i = 0, ia = 0; i < d->n; i++) {
        if (d->y[i] < 0) ax[ia] = d->x[2 * i], ay[ia++] = d->x[2 * i + 1];
        else bx[nb] = d->x[2 * i], by[nb++] = d->x[2 * i + 1];
    }
    plot_series s[2] = {
        {.x = ax, .y = ay, .n = na, .label = "y = -1 (outer moon)", .color = "#08468c", .points = true},
        {.x = bx, .y = by, .n = nb, .label = "y = +1 (inner moon)", .color = "#a0101c", .points = true},
    };
    char title[160];
    snprintf(title, sizeof title, "two moons: MLP 2-16-16-1, hinge loss + L2, %d steps: %.0f%% accuracy",
             steps, 100 * acc);
    plot_field fd = {.z = z, .nx = NX, .ny = NY, .x0 = x0, .x1 = x1, .y0 = y0, .y1 = y1,
                     .level = 0, .scale = 2, .level_label = "decision boundary f(x) = 0"};
    char err[512];
    if (plot_field_svg(path, &(plot_cfg){.title = title, .xlabel = "x1", .ylabel = "x2", .width = 640, .height = 440},
                       &fd, s, 2, err, sizeof err)) {
        fprintf(stderr, "moons: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    ad_tensor_free(gx);
    free(grid);
    free(z);
    free(px);
    return rc;
}

/* ---- main -------------------------------------------------------------------------------- */

static void print_run(const run_log *r, int steps)
{
    printf("  %-38s %9.1f ms %9.3f ms  %10llu  %.15f  %5.1f%%\n", r->name, 1e3 * r->best,
           1e3 * r->best / steps, (unsigned long long)r->nodes, r->loss[steps], 100 * r->acc[steps]);
}

int main(int argc, char **argv)
{
    long points = 100, steps = 100, seed = 1, repeat = 1;
    double noise = 0.1, rate = 1.0, lambda = 1e-4;
    const char *svg = "moons.svg";
    opts_def defs[] = {
        {"--points", OPTS_LONG, &points, "N", .help = "data points, half per moon (default 100, 4 to 5000)", .lo = 4, .hi = 5000},
        {"--noise", OPTS_REAL, &noise, "S", .help = "standard deviation of the noise added to the points (default 0.1, 0 to 1)",
         .lo = 0, .hi = 1},
        {"--steps", OPTS_LONG, &steps, "N", .help = "gradient-descent steps (default 100, 1 to 100000)", .lo = 1, .hi = 100000},
        {"--rate", OPTS_REAL, &rate, "R", .help = "initial learning rate eta_0; step t uses eta_0 (1 - 0.9 t/steps) (default 1)",
         .lo = 1e-9, .hi = 100, .want = "a number from 1e-9 to 100"},
        {"--lambda", OPTS_REAL, &lambda, "L", .help = "weight of the L2 term sum(theta^2) (default 1e-4, 0 to 1)", .lo = 0, .hi = 1},
        {"--seed", OPTS_LONG, &seed, "N", .help = "seeds the data and the initial weights (default 1)", .lo = 0, .hi = 2147483647},
        {"--svg", OPTS_TEXT, &svg, "PATH", .help = "the decision-boundary picture (default moons.svg)"},
        {"--repeat", OPTS_LONG, &repeat, "N", .help = "train N times on each engine and report the fastest time (default 1)",
         .lo = 1, .hi = 1000},
    };
    opts_spec spec = {.prog = "moons", .usage = USAGE, .defs = defs,
                      .ndefs = sizeof defs / sizeof *defs};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL, 0);
    if (rc >= 0) return rc;

    ad_rng rng;
    ad_rng_seed(&rng, (uint64_t)seed);
    moons_data d = {0};
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = IN, .hidden = {H1, H2}, .out = OUT, .act = NN_RELU,
                                         .task = NN_REGRESS, .dtype = AD_F64, .seed = (uint64_t)seed});
    double theta0[NPARAM], theta[NPARAM];
    run_log runs[3] = {{.name = "scalar graph (one ad_node per number)"},
                       {.name = "scalar tape (ad_real)"},
                       {.name = "tensors (nn_mlp: ad_linear, [N,16])"}};
    int status = 1;
    for (int k = 0; k < 3; k++) {
        runs[k].loss = calloc((size_t)steps + 1, sizeof(double));
        runs[k].acc = calloc((size_t)steps + 1, sizeof(double));
        if (!runs[k].loss || !runs[k].acc) goto oom;
    }
    if (!m || !make_moons(&d, (int)points, noise, &rng)) goto oom;
    if (nn_mlp_num_param_elements(m) != NPARAM) {
        fprintf(stderr, "moons: the model has %lld parameters, not %d\n", (long long)nn_mlp_num_param_elements(m), NPARAM);
        goto out;
    }
    /* the tensor model's initial weights, flattened for the scalar engines */
    {
        int off = 0;
        for (ad_tensor *const *p = nn_mlp_params(m); *p; p++) {
            ad_tensor_read(*p, theta0 + off);
            off += (int)ad_tensor_size(*p);
        }
    }

    train_cfg c = {.d = &d, .steps = (int)steps, .rate = rate, .lambda = lambda};
    printf("two moons: %d points (seed %ld, noise %.2f); MLP 2-16-16-1 (relu), %d parameters\n",
           d.n, seed, noise, NPARAM);
    printf("L(theta) = mean(max(0, 1 - y f(x))) + %g sum(theta^2); %ld steps of gradient descent,\n"
           "rate eta_t = %g (1 - 0.9 t/%ld); the same weights and data on three engines, float64\n\n",
           lambda, steps, rate, steps);
    printf("scalar graph, as it trains:\n     step        loss  accuracy\n");
    for (long rep = 0; rep < repeat; rep++) {
        for (int k = 0; k < 3; k++) runs[k].seconds = 0;
        memcpy(theta, theta0, sizeof theta);
        if (!run_scalar_graph(theta, &c, &runs[0], rep == 0)) goto out;
        memcpy(theta, theta0, sizeof theta);
        if (!run_scalar_tape(theta, &c, &runs[1])) goto out;
        set_params(m, theta0);
        if (!run_tensor(m, &c, &runs[2])) goto out;
        for (int k = 0; k < 3; k++)
            if (rep == 0 || runs[k].seconds < runs[k].best) runs[k].best = runs[k].seconds;
    }

    printf("\n  %-38s %12s %12s  %10s  %-17s  %s\n", "engine", repeat > 1 ? "best time" : "time", "per step",
           "nodes/step", "final loss", "accuracy");
    for (int k = 0; k < 3; k++) print_run(&runs[k], (int)steps);
    double d01 = fabs(runs[0].loss[steps] - runs[2].loss[steps]);
    double d12 = fabs(runs[1].loss[steps] - runs[2].loss[steps]);
    printf("\nfinal losses agree: scalar graph - tensors %.1e, scalar tape - tensors %.1e (limit 1e-9)\n", d01, d12);
    printf("speed: tensors %.0fx faster than the scalar graph, %.0fx faster than the scalar tape\n",
           runs[0].best / runs[2].best, runs[1].best / runs[2].best);
    if (!(d01 <= 1e-9 && d12 <= 1e-9)) {
        fprintf(stderr, "moons: the engines disagree: final losses %.17g, %.17g, %.17g\n", runs[0].loss[steps],
                runs[1].loss[steps], runs[2].loss[steps]);
        goto out;
    }
    if (draw(svg, m, &d, runs[2].acc[steps], (int)steps)) goto out;
    printf("decision boundary: %s\n", svg);
    status = 0;
    goto out;
oom:
    fprintf(stderr, "moons: out of memory\n");
out:
    for (int k = 0; k < 3; k++) {
        free(runs[k].loss);
        free(runs[k].acc);
    }
    free(d.x);
    free(d.y);
    nn_mlp_free(m);
    return status;
}
