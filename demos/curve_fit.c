/* curve_fit: regression with a one-hidden-layer MLP on noisy sin(x) with outliers, fitted
 * three ways from the same initial weights: the squared loss, the absolute loss, and the
 * squared loss with an L2 penalty.
 *
 *   curve_fit [--points 40] [--outliers 0.15] [--steps 3000] [--seed 1] [--svg curve_fit.svg]
 *
 * The lecture's regression losses: l2 = (f(x) - y)^2 is pulled hard by a few wild targets,
 * l1 = |f(x) - y| gives each point a pull of at most 1 and so follows the majority; the
 * regularizer lambda * sum(theta^2) keeps the weights, and so the curve, from bending to fit
 * the noise.  The picture shows the data, the outliers, sin(x) and the three fits. */
#include "ad.h"
#include "nn.h"
#include "optim.h"
#include "opts.h"
#include "plot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: curve_fit [options]\n"
    "Fits an MLP 1-H-1 (tanh) to noisy samples of sin(x) on [-pi, pi], some of them replaced by\n"
    "outliers, with the squared loss, the absolute loss, and the squared loss + L2 (Adam, full\n"
    "batch, the same initial weights); prints how close each fit gets to sin(x) and draws them.\n";

enum { FITS = 3, CURVE = 241 };
static const char *const FIT_NAME[FITS] = {"squared loss", "absolute loss", "squared loss + L2"};
static const char *const FIT_COLOR[FITS] = {"#D55E00", "#0072B2", "#009E73"};

typedef struct {
    long points, hidden, steps, seed;
    double outliers, noise, rate, lambda;
    const char *svg;
} options;

/* Parses argv into o; returns -1 to go on, or the exit status (0 for --help, 2 for an error). */
static int parse_options(int argc, char **argv, options *o)
{
    opts_def defs[] = {
        {"--points", OPTS_LONG, &o->points, "N", .help = "data points (default 40, 5 to 100000)", .lo = 5, .hi = 100000},
        {"--outliers", OPTS_REAL, &o->outliers, "F",
         .help = "fraction of the points that are outliers, sin(x) + 2..3 (default 0.15, 0 to 0.5)", .lo = 0, .hi = 0.5},
        {"--noise", OPTS_REAL, &o->noise, "S", .help = "standard deviation of the noise on the other points (default 0.1, 0 to 1)",
         .lo = 0, .hi = 1},
        {"--hidden", OPTS_LONG, &o->hidden, "H", .help = "hidden units (default 24, 1 to 1024)", .lo = 1, .hi = 1024},
        {"--steps", OPTS_LONG, &o->steps, "N", .help = "optimizer steps (default 3000, 1 to 1000000)", .lo = 1, .hi = 1000000},
        {"--rate", OPTS_REAL, &o->rate, "R", .help = "Adam's learning rate (default 0.01)", .lo = 1e-9, .hi = 10,
         .want = "a number from 1e-9 to 10"},
        {"--lambda", OPTS_REAL, &o->lambda, "L", .help = "weight of the L2 term in the third fit (default 0.001, 0 to 10)",
         .lo = 0, .hi = 10},
        {"--seed", OPTS_LONG, &o->seed, "N", .help = "seeds the data and the initial weights (default 1)", .lo = 0,
         .hi = 2147483647},
        {"--svg", OPTS_TEXT, &o->svg, "PATH", .help = "the picture (default curve_fit.svg)"},
    };
    opts_spec spec = {.prog = "curve_fit", .usage = USAGE, .defs = defs,
                      .ndefs = sizeof defs / sizeof *defs};
    return opts_parse(&spec, argc, argv, NULL, NULL, 0);
}

/* The objective of fit k on the whole data set. */
static ad_node *objective(ad_graph *g, nn_mlp *m, int k, ad_tensor *x, ad_tensor *y, double lambda)
{
    ad_node *pred = nn_mlp_forward(g, m, ad_const_tensor(g, x), NN_TRAIN);
    ad_node *target = ad_const_tensor(g, y);
    ad_node *loss = k == 1 ? nn_absolute_loss(g, pred, target) : nn_squared_loss(g, pred, target);
    return k == 2 ? nn_regularized(g, loss, m, NN_L2, lambda, false) : loss;
}

int main(int argc, char **argv)
{
    options o = {.points = 40, .hidden = 24, .steps = 3000, .seed = 1, .outliers = 0.15, .noise = 0.1,
                 .rate = 0.01, .lambda = 1e-3, .svg = "curve_fit.svg"};
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;

    const double pi = 3.14159265358979323846;
    int n = (int)o.points, nout = (int)lround(o.outliers * n);
    double *xs = malloc(sizeof(double) * (size_t)n), *ys = malloc(sizeof(double) * (size_t)n);
    bool *is_out = calloc((size_t)n, sizeof *is_out);
    double *cx = malloc(sizeof(double) * CURVE), *cy = malloc(sizeof(double) * CURVE * (FITS + 1));
    nn_mlp *m[FITS] = {0};
    optim *opt[FITS] = {0};
    ad_tensor *tx = NULL, *ty = NULL, *tc = NULL;
    ad_graph *g = ad_graph_new();
    double *px = NULL;
    char err[512] = "out of memory";
    int status = 1;
    if (!xs || !ys || !is_out || !cx || !cy || !g) goto fail;

    /* the data: x uniform on [-pi, pi], y = sin(x) + noise; nout of them, picked at random,
     * become outliers sin(x) + 2..3 */
    ad_rng rng;
    ad_rng_seed(&rng, (uint64_t)o.seed);
    for (int i = 0; i < n; i++) {
        xs[i] = -pi + 2 * pi * ad_rng_uniform(&rng);
        ys[i] = sin(xs[i]) + o.noise * ad_rng_normal(&rng);
    }
    for (int k = 0; k < nout;) {
        int i = (int)(ad_rng_uniform(&rng) * n);
        if (is_out[i]) continue;
        is_out[i] = true;
        ys[i] = sin(xs[i]) + 2 + ad_rng_uniform(&rng);
        k++;
    }
    tx = ad_tensor_from(AD_F64, AD_SHAPE(n, 1), xs);
    ty = ad_tensor_from(AD_F64, AD_SHAPE(n, 1), ys);
    if (!tx || !ty) goto fail;

    /* three models with the same seed: the same initial weights */
    for (int k = 0; k < FITS; k++) {
        m[k] = nn_mlp_new(&(nn_mlp_cfg){.in = 1, .hidden = {(int)o.hidden}, .out = 1, .act = NN_TANH,
                                        .task = NN_REGRESS, .dtype = AD_F64, .seed = (uint64_t)o.seed});
        optim_cfg oc = optim_defaults(OPTIM_ADAM, o.rate);
        if (!m[k] || !(opt[k] = optim_new(nn_mlp_params(m[k]), nn_mlp_num_params(m[k]), &oc, err, sizeof err)))
            goto fail;
    }
    printf("curve_fit: %d points of sin(x) + N(0, %.2f^2) on [-pi, pi], %d of them outliers (seed %ld)\n", n,
           o.noise, nout, o.seed);
    printf("MLP 1-%ld-1 (tanh), %lld parameters; %ld steps of Adam (rate %g), full batch, same start\n", o.hidden,
           (long long)nn_mlp_num_param_elements(m[0]), o.steps, o.rate);
    printf("objectives: mean (f(x)-y)^2 | mean |f(x)-y| | mean (f(x)-y)^2 + %g sum(theta^2)\n\n", o.lambda);
    printf("   step  %14s  %14s  %18s\n", FIT_NAME[0], FIT_NAME[1], FIT_NAME[2]);

    long every = o.steps >= 10 ? o.steps / 10 : 1;
    double last[FITS] = {0};
    for (long t = 0; t <= o.steps; t++) {
        for (int k = 0; k < FITS; k++) {
            ad_graph_reset(g);
            optim_zero_grad(opt[k]);
            ad_node *loss = objective(g, m[k], k, tx, ty, o.lambda);
            if (!loss || (t < o.steps && ad_backward(g, loss) != AD_OK)) {
                snprintf(err, sizeof err, "%s", ad_error(g) ? ad_error(g) : "failed");
                goto fail;
            }
            last[k] = ad_value(loss);
            if (!isfinite(last[k])) {
                snprintf(err, sizeof err, "the %s diverged at step %ld (try a smaller --rate)", FIT_NAME[k], t);
                goto fail;
            }
            if (t < o.steps && optim_step(opt[k]) != AD_OK) {
                snprintf(err, sizeof err, "%s", optim_error(opt[k]));
                goto fail;
            }
        }
        if (t % every == 0 || t == o.steps) {
            printf("  %5ld  %14.6f  %14.6f  %18.6f\n", t, last[0], last[1], last[2]);
            fflush(stdout);
        }
    }

    /* the fits on a fine grid, and how far each is from sin(x) */
    for (int i = 0; i < CURVE; i++) {
        cx[i] = -pi + 2 * pi * i / (CURVE - 1);
        cy[i] = sin(cx[i]);
    }
    tc = ad_tensor_from(AD_F64, AD_SHAPE(CURVE, 1), cx);
    if (!tc) goto fail;
    printf("\n  %-18s  %-27s  %s\n", "fit", "RMS distance to sin(x)", "largest distance");
    for (int k = 0; k < FITS; k++) {
        double *f = cy + CURVE * (k + 1);
        if (nn_mlp_predict(g, m[k], tc, f, NULL) != AD_OK) {
            snprintf(err, sizeof err, "%s", ad_error(g));
            goto fail;
        }
        double ss = 0, worst = 0;
        for (int i = 0; i < CURVE; i++) {
            ss += (f[i] - cy[i]) * (f[i] - cy[i]);
            worst = fmax(worst, fabs(f[i] - cy[i]));
        }
        printf("  %-18s  %-27.3f  %.3f\n", FIT_NAME[k], sqrt(ss / CURVE), worst);
    }

    /* the picture: inliers, outliers, sin(x), the fits */
    px = malloc(sizeof(double) * 4 * (size_t)n);
    if (!px) goto fail;
    double *ix = px, *iy = px + n, *ox = px + 2 * n, *oy = px + 3 * n;
    int ni = 0, no = 0;
    for (int i = 0; i < n; i++) {
        if (is_out[i]) ox[no] = xs[i], oy[no++] = ys[i];
        else ix[ni] = xs[i], iy[ni++] = ys[i];
    }
    plot_series s[3 + FITS] = {{.x = cx, .y = cy, .n = CURVE, .label = "sin(x)", .color = "#aaaaaa"}};
    for (int k = 0; k < FITS; k++)
        s[1 + k] = (plot_series){.x = cx, .y = cy + CURVE * (k + 1), .n = CURVE, .label = FIT_NAME[k],
                                 .color = FIT_COLOR[k]};
    s[1 + FITS] = (plot_series){.x = ix, .y = iy, .n = ni, .label = "data", .color = "#333333", .points = true};
    s[2 + FITS] = (plot_series){.x = ox, .y = oy, .n = no, .label = "outliers", .color = "#CC79A7", .points = true};
    char title[160];
    snprintf(title, sizeof title, "MLP 1-%ld-1 fitted to sin(x) with %d outliers: squared vs absolute loss, L2",
             o.hidden, nout);
    plot_cfg pc = {.title = title, .xlabel = "x", .ylabel = "y", .width = 720, .height = 420};
    if (plot_lines_svg(o.svg, &pc, s, 3 + FITS, err, sizeof err))
        goto fail;
    printf("\npicture: %s\n", o.svg);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "curve_fit: %s\n", err);
out:
    for (int k = 0; k < FITS; k++) {
        optim_free(opt[k]);
        nn_mlp_free(m[k]);
    }
    ad_tensor_free(tx);
    ad_tensor_free(ty);
    ad_tensor_free(tc);
    ad_graph_free(g);
    free(xs);
    free(ys);
    free(is_out);
    free(cx);
    free(cy);
    free(px);
    return status;
}
