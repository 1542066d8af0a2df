/* The lecture's training and regularisation slides as pictures (lecture_parts.h).  Every
 * number comes from the library: its optimizers (optim_gd with the slide's stopping rule,
 * momentum in the slide's form, the minibatch sampler), its dropout op and its early stopping. */
#include "lecture_parts.h"
#include "ad.h"
#include "nn.h"
#include "optim.h"
#include "plot.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const LECTURE_PARTS[] = {"momentum", "minibatch", "dropout", "early-stopping"};

/* DIR/lecture-NAME.svg into path; false (and a line on stderr) if it does not fit. */
static bool picture_path(char *path, size_t len, const char *dir, const char *name)
{
    if ((size_t)snprintf(path, len, "%s/lecture-%s.svg", dir, name) < len) return true;
    fprintf(stderr, "lecture: the folder name is too long: %s\n", dir);
    return false;
}

static int drawn(int rc, const char *err, const char *path, FILE *out)
{
    if (rc) {
        fprintf(stderr, "lecture: %s\n", err);
        return 1;
    }
    fprintf(out, "picture: %s\n", path);
    return 0;
}

/* A line chart of part `name` into DIR/lecture-NAME.svg, named on out. */
static int draw_lines(const char *dir, const char *name, const plot_cfg *cfg, const plot_series *s, int ns, FILE *out)
{
    char path_svg[4096], e[4400];
    if (!picture_path(path_svg, sizeof path_svg, dir, name)) return 1;
    return drawn(plot_lines_svg(path_svg, cfg, s, ns, e, sizeof e), e, path_svg, out);
}

/* ---- gradient descent against momentum at a saddle ---------------------------------------- */

enum { MAX_PATH = 400 };
typedef struct {
    ad_tensor *p;
    double a[MAX_PATH + 1], b[MAX_PATH + 1];
    int n;
} path;

/* L(a, b) = a^2 + b^4/4 - b^2/2: a saddle at (0, 0), where L = 0, and minima at (0, +-1),
 * where L = -1/4.  Descent that starts at a = 2 with b almost 0 rolls into the saddle. */
static ad_node *saddle_loss(ad_graph *g, void *user)
{
    ad_node *p = ad_param(g, ((path *)user)->p);
    ad_node *a = ad_slice(g, p, 0, 0, 1), *b = ad_slice(g, p, 0, 1, 2);
    ad_node *b2 = ad_square(g, b);
    ad_node *l = ad_add(g, ad_square(g, a), ad_sub(g, ad_mul_scalar(g, ad_square(g, b2), 0.25), ad_mul_scalar(g, b2, 0.5)));
    return ad_sum(g, l);
}

static double saddle(double a, double b) { return a * a + b * b * b * b / 4 - b * b / 2; }

static bool record(optim *o, double loss, void *user)
{
    (void)o, (void)loss;
    path *q = user;
    if (q->n < MAX_PATH) {
        q->n++;
        q->a[q->n] = ad_tensor_get(q->p, 0);
        q->b[q->n] = ad_tensor_get(q->p, 1);
    }
    return true;
}

/* Runs optim_gd from (2, 0.0001) with the slide's stopping rule; fills q. */
static ad_status descend(path *q, optim_kind kind, optim_result *res)
{
    static const double start[2] = {2.0, 0.0001};
    q->p = ad_param_new("theta", AD_F64, AD_SHAPE(2));
    if (!q->p) return AD_ERR_NOMEM;
    ad_tensor_set(q->p, 0, start[0]);
    ad_tensor_set(q->p, 1, start[1]);
    q->a[0] = start[0], q->b[0] = start[1], q->n = 0;
    optim_cfg c = optim_defaults(kind, 0.1);
    if (kind == OPTIM_MOMENTUM) c.momentum = 0.9, c.form = OPTIM_FORM_LECTURE;
    char err[256];
    optim *o = optim_new(&q->p, 1, &c, err, sizeof err);
    if (!o) return AD_ERR_ARG;
    optim_gd_cfg gc = {.eps = 1e-5, .max_iter = MAX_PATH, .on_step = record};
    ad_status st = optim_gd(o, saddle_loss, q, &gc, res);
    (void)st;
    optim_free(o);
    return AD_OK;
}

static int part_momentum(const char *dir, FILE *out)
{
    fprintf(out, "== Gradient descent against momentum at a saddle ==\n\n"
                 "L(a, b) = a^2 + b^4/4 - b^2/2 has a saddle at (0, 0), where L = 0, and its minima at\n"
                 "(0, 1) and (0, -1), where L = -0.25.  Both runs start at (2, 0.0001) with eta = 0.1 and\n"
                 "the slide's stopping rule: stop when L(theta_i) - L(theta_i+1) < epsilon = 1e-5.\n\n");
    static path gd, mo;
    optim_result rg = {0, 0}, rm = {0, 0};
    if (descend(&gd, OPTIM_GD, &rg) != AD_OK || descend(&mo, OPTIM_MOMENTUM, &rm) != AD_OK) {
        fprintf(stderr, "lecture: could not run the optimizers\n");
        ad_tensor_free(gd.p), ad_tensor_free(mo.p);
        return 1;
    }
    fprintf(out, "gradient descent: stops after %d steps at (%.3f, %.3f), L = %.4f: the step there is\n"
                 "  the local slope, almost 0, so the loss falls by less than epsilon and the rule stops\n"
                 "  it at the saddle.\n",
            gd.n, gd.a[gd.n], gd.b[gd.n], saddle(gd.a[gd.n], gd.b[gd.n]));
    fprintf(out, "momentum (gamma = 0.9, v <- -eta grad + gamma v): stops after %d steps at (%.3f, %.3f),\n"
                 "  L = %.4f: the discounted old steps carry it through the saddle into a minimum.\n\n",
            mo.n, mo.a[mo.n], mo.b[mo.n], saddle(mo.a[mo.n], mo.b[mo.n]));
    int rc = 0;
    if (dir) {
        enum { NX = 120, NY = 80 };
        static double z[NX * NY];
        const double x0 = -2.5, x1 = 2.5, y0 = -1.6, y1 = 1.6;
        for (int j = 0; j < NY; j++)
            for (int i = 0; i < NX; i++)
                z[j * NX + i] = saddle(x0 + (i + 0.5) * (x1 - x0) / NX, y0 + (j + 0.5) * (y1 - y0) / NY);
        plot_field f = {.z = z, .nx = NX, .ny = NY, .x0 = x0, .x1 = x1, .y0 = y0, .y1 = y1, .level = 0,
                        .scale = 0.5, .level_label = "L = 0, through the saddle"};
        double sa[1] = {0}, sb[1] = {0}, ma[2] = {0, 0}, mb[2] = {1, -1};
        plot_series s[] = {
            {.x = mo.a, .y = mo.b, .n = mo.n + 1, .label = "momentum, gamma = 0.9", .color = "#e69f00"},
            {.x = gd.a, .y = gd.b, .n = gd.n + 1, .label = "gradient descent (stops at the saddle)", .color = "#0072b2"},
            {.x = sa, .y = sb, .n = 1, .label = "saddle", .color = "#cc79a7", .points = true},
            {.x = ma, .y = mb, .n = 2, .label = "minima", .color = "#009e73", .points = true},
        };
        char path_svg[4096], err[4400];
        if (!picture_path(path_svg, sizeof path_svg, dir, "momentum")) rc = 1;
        else rc = drawn(plot_field_svg(path_svg, &(plot_cfg){.title = "L(a, b) = a^2 + b^4/4 - b^2/2: both paths from (2, 0.0001)",
                                                             .xlabel = "a", .ylabel = "b", .width = 720, .height = 480},
                                       &f, s, 4, err, sizeof err),
                        err, path_svg, out);
    }
    ad_tensor_free(gd.p);
    ad_tensor_free(mo.p);
    return rc;
}

/* ---- minibatch noise ------------------------------------------------------------------------ */

enum { N_DATA = 512, N_FEAT = 3, SGD_STEPS = 150, BATCH = 4 };

typedef struct {
    double x[N_DATA * N_FEAT], y[N_DATA];
    ad_tensor *w;
} regression;

/* The mean squared error of rows idx[0..n-1] (all rows when idx is NULL). */
static ad_node *mse_rows(ad_graph *g, regression *r, const int64_t *idx, int64_t n)
{
    static double xb[N_DATA * N_FEAT], yb[N_DATA];
    for (int64_t i = 0; i < n; i++) {
        int64_t k = idx ? idx[i] : i;
        memcpy(xb + i * N_FEAT, r->x + k * N_FEAT, sizeof *xb * N_FEAT);
        yb[i] = r->y[k];
    }
    ad_node *X = ad_const(g, AD_F64, AD_SHAPE(n, N_FEAT), xb), *Y = ad_const(g, AD_F64, AD_SHAPE(n, 1), yb);
    return ad_mse(g, ad_matmul(g, X, ad_param(g, r->w)), Y);
}

static double full_loss(ad_graph *g, regression *r)
{
    ad_graph_reset(g);
    bool was = ad_set_grad_enabled(g, false);
    double l = ad_value(mse_rows(g, r, NULL, N_DATA));
    ad_set_grad_enabled(g, was);
    return l;
}

/* steps updates of o, each on the rows the sampler gives (all rows when s is NULL); loss[t] is
 * the loss on all the data before update t. */
static bool train_regression(regression *r, optim *o, optim_sampler *s, double *loss)
{
    ad_graph *g = ad_graph_new();
    if (!g) return false;
    bool good = true;
    for (int t = 0; t <= SGD_STEPS && good; t++) {
        loss[t] = full_loss(g, r);
        if (t == SGD_STEPS) break;
        ad_graph_reset(g);
        optim_zero_grad(o);
        ad_node *l = s ? mse_rows(g, r, optim_sampler_batch(s, t), BATCH) : mse_rows(g, r, NULL, N_DATA);
        good = l && ad_backward(g, l) == AD_OK && optim_step(o) == AD_OK;
    }
    ad_graph_free(g);
    return good;
}

static int part_minibatch(const char *dir, FILE *out)
{
    static regression r;
    ad_rng rng;
    ad_rng_seed(&rng, 18);
    static const double truth[N_FEAT] = {0.5, 2.0, -1.0};
    for (int i = 0; i < N_DATA; i++) {
        r.x[i * N_FEAT] = 1; /* the constant attribute x_0 = 1 */
        double y = truth[0];
        for (int k = 1; k < N_FEAT; k++) y += truth[k] * (r.x[i * N_FEAT + k] = ad_rng_normal(&rng));
        r.y[i] = y + 0.5 * ad_rng_normal(&rng);
    }
    static double gd_loss[SGD_STEPS + 1], sgd_loss[SGD_STEPS + 1], iter[SGD_STEPS + 1];
    char err[256];
    bool good = true;
    for (int run = 0; run < 2 && good; run++) {
        r.w = ad_param_new("theta", AD_F64, AD_SHAPE(N_FEAT, 1));
        optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
        optim *o = r.w ? optim_new(&r.w, 1, &c, err, sizeof err) : NULL;
        optim_sampler *s = run ? optim_sampler_new(N_DATA, BATCH, 7, false, err, sizeof err) : NULL;
        good = o && (!run || s) && train_regression(&r, o, s, run ? sgd_loss : gd_loss);
        optim_sampler_free(s);
        optim_free(o);
        ad_tensor_free(r.w);
    }
    if (!good) {
        fprintf(stderr, "lecture: could not train the regression\n");
        return 1;
    }
    int rises = 0;
    for (int t = 1; t <= SGD_STEPS; t++) {
        iter[t] = t;
        rises += sgd_loss[t] > sgd_loss[t - 1];
    }
    fprintf(out, "== Minibatch noise: SGD against full-batch gradient descent ==\n\n"
                 "Linear regression, y = 0.5 + 2 x1 - x2 + noise, on N = %d examples; squared loss, eta = 0.1,\n"
                 "theta_0 = 0.  Full-batch gradient descent uses all %d examples per step; minibatch SGD a\n"
                 "random J = %d.  Both curves are the loss on all the data.\n\n",
            N_DATA, N_DATA, BATCH);
    fprintf(out, "after %d steps: gradient descent %.4f, SGD %.4f (the noise alone: 0.25).\n"
                 "The SGD loss rose on %d of its %d steps, while gradient descent's fell on every one: \"loss on\n"
                 "all of the data not guaranteed to fall at every SGD step, but will still fall on average\",\n"
                 "at 1/%d of the cost per step.\n\n",
            SGD_STEPS, gd_loss[SGD_STEPS], sgd_loss[SGD_STEPS], rises, SGD_STEPS, N_DATA / BATCH);
    if (!dir) return 0;
    /* on a log scale, so that the noise near the end is not flattened by the first steps */
    static double lg[SGD_STEPS + 1], ls[SGD_STEPS + 1];
    for (int t = 0; t <= SGD_STEPS; t++) lg[t] = log10(gd_loss[t]), ls[t] = log10(sgd_loss[t]);
    plot_series s[] = {
        {.x = iter, .y = lg, .n = SGD_STEPS + 1, .label = "full-batch gradient descent"},
        {.x = iter, .y = ls, .n = SGD_STEPS + 1, .label = "minibatch SGD, J = 4"},
    };
    return draw_lines(dir, "minibatch", &(plot_cfg){.title = "Loss on the complete data set over the steps",
                                                    .xlabel = "step", .ylabel = "log10 of the mean squared error"},
                      s, 2, out);
}

/* ---- dropout's train/test scaling ----------------------------------------------------------- */

enum { UNITS = 20, DRAWS = 400 };

static int part_dropout(const char *dir, FILE *out)
{
    const double p = 0.5;
    double act[UNITS], w[UNITS];
    ad_rng rng;
    ad_rng_seed(&rng, 5);
    for (int i = 0; i < UNITS; i++) act[i] = 0.5 + ad_rng_uniform(&rng), w[i] = 0.2 + 0.3 * ad_rng_uniform(&rng);
    ad_graph *g = ad_graph_new();
    ad_rng masks;
    ad_rng_seed(&masks, 11);
    /* z = w . dropout(a): recorded once, replayed for each new mask */
    ad_node *a = g ? ad_const(g, AD_F64, AD_SHAPE(UNITS), act) : NULL;
    ad_node *z = ad_sum(g, ad_mul(g, ad_const(g, AD_F64, AD_SHAPE(UNITS), w), ad_dropout(g, a, p, false, &masks)));
    ad_node *full = ad_sum(g, ad_mul(g, ad_const(g, AD_F64, AD_SHAPE(UNITS), w), a));
    static double draw[DRAWS], zs[DRAWS], mean[DRAWS];
    bool good = z && full;
    double total = 0;
    for (int k = 0; k < DRAWS && good; k++) {
        if (k) good = ad_replay(g) == AD_OK;
        draw[k] = k + 1;
        zs[k] = ad_value(z);
        total += zs[k];
        mean[k] = total / (k + 1);
    }
    double zfull = good ? ad_value(full) : 0, ztest = (1 - p) * zfull;
    ad_graph_free(g);
    if (!good) {
        fprintf(stderr, "lecture: could not draw the dropout masks\n");
        return 1;
    }
    fprintf(out, "== Dropout: training and test time ==\n\n"
                 "A unit receives %d activations through weights; dropout with p = %.1f (the lecture's form:\n"
                 "survivors unscaled) zeroes each at training time.  Its input z = sum w_i m_i a_i over %d masks:\n\n",
            UNITS, p, DRAWS);
    fprintf(out, "without dropout, z = %.3f; mean over the masks %.3f; the test-time rule, (1 - p) z = %.3f.\n"
                 "Keeping all activations at test time would feed the unit twice what it saw in training;\n"
                 "multiplying by 1 - p matches the expectation under dropout.\n\n",
            zfull, mean[DRAWS - 1], ztest);
    if (!dir) return 0;
    double ends[2] = {1, DRAWS}, yt[2] = {ztest, ztest}, yf[2] = {zfull, zfull};
    plot_series s[] = {
        {.x = draw, .y = zs, .n = DRAWS, .label = "z in training, one mask each", .points = true, .color = "#999999"},
        {.x = draw, .y = mean, .n = DRAWS, .label = "mean of the training z so far", .color = "#0072b2"},
        {.x = ends, .y = yt, .n = 2, .label = "test time: (1 - p) z", .color = "#d55e00"},
        {.x = ends, .y = yf, .n = 2, .label = "test time without the rule: z", .color = "#000000"},
    };
    return draw_lines(dir, "dropout", &(plot_cfg){.title = "Dropout, p = 0.5: a unit's input at training and test time",
                                                  .xlabel = "mask drawn", .ylabel = "z = sum w_i m_i a_i",
                                                  .width = 720, .height = 420},
                      s, 4, out);
}

/* ---- early stopping -------------------------------------------------------------------------- */

enum { N_TRAIN = 16, N_VAL = 200, EPOCHS = 1500, PATIENCE = 200 };

static void sine_data(ad_rng *rng, double *x, double *y, int n)
{
    for (int i = 0; i < n; i++) {
        x[i] = -1 + 2 * ad_rng_uniform(rng);
        y[i] = sin(3 * x[i]) + 0.3 * ad_rng_normal(rng);
    }
}

static double mlp_mse(ad_graph *g, nn_mlp *m, const double *x, const double *y, int n, bool grad)
{
    ad_graph_reset(g);
    bool was = ad_set_grad_enabled(g, grad);
    ad_node *l = ad_mse(g, nn_mlp_forward(g, m, ad_const(g, AD_F64, AD_SHAPE(n, 1), x), NN_EVAL),
                        ad_const(g, AD_F64, AD_SHAPE(n, 1), y));
    double v = l ? ad_value(l) : NAN;
    if (grad && (!l || ad_backward(g, l) != AD_OK)) v = NAN;
    ad_set_grad_enabled(g, was);
    return v;
}

static int part_early_stopping(const char *dir, FILE *out)
{
    static double xt[N_TRAIN], yt[N_TRAIN], xv[N_VAL], yv[N_VAL];
    static double epoch[EPOCHS], train[EPOCHS], val[EPOCHS];
    ad_rng rng;
    ad_rng_seed(&rng, 3);
    sine_data(&rng, xt, yt, N_TRAIN);
    sine_data(&rng, xv, yv, N_VAL);
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 1, .hidden = {64, 64}, .out = 1, .act = NN_TANH, .task = NN_REGRESS,
                                         .dtype = AD_F64, .seed = 4});
    char err[256];
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.003);
    optim *o = m ? optim_new(nn_mlp_params(m), nn_mlp_num_params(m), &c, err, sizeof err) : NULL;
    nn_early_stop *es = m ? nn_early_stop_new(nn_mlp_params(m), PATIENCE, 0) : NULL;
    ad_graph *g = ad_graph_new();
    int n = 0, stopped = -1;
    bool good = o && es && g;
    for (int e = 0; e < EPOCHS && good; e++, n++) {
        optim_zero_grad(o);
        train[e] = mlp_mse(g, m, xt, yt, N_TRAIN, true);
        good = isfinite(train[e]) && optim_step(o) == AD_OK;
        val[e] = mlp_mse(g, m, xv, yv, N_VAL, false);
        epoch[e] = e;
        /* the whole run is drawn; the rule's stop is marked where patience ran out */
        if (good && nn_early_stop_update(es, val[e]) && stopped < 0) stopped = e;
    }
    int best = es ? nn_early_stop_best_epoch(es) : -1;
    double best_loss = es ? nn_early_stop_best(es) : NAN;
    nn_early_stop_free(es);
    optim_free(o);
    nn_mlp_free(m);
    ad_graph_free(g);
    if (!good || best < 0) {
        fprintf(stderr, "lecture: could not train the network\n");
        return 1;
    }
    fprintf(out, "== Early stopping ==\n\n"
                 "A network with two hidden layers of 64 tanh units (%d weights for %d examples) fits\n"
                 "y = sin(3x) + noise on %d training points with Adam (eta = 0.003), full batch; %d more points\n"
                 "are the validation set.  nn_early_stop keeps the weights of the best validation loss and\n"
                 "stops when %d epochs bring no improvement.\n\n",
            64 + 64 + 64 * 64 + 64 + 64 + 1, N_TRAIN, N_TRAIN, N_VAL, PATIENCE);
    fprintf(out, "validation loss is lowest, %.4f, at epoch %d (training loss %.4f); patience runs out at\n"
                 "epoch %d, and the model keeps epoch %d's weights.  By epoch %d training loss is %.4f and\n"
                 "validation loss %.4f: the rest of the training only fits the noise.\n\n",
            best_loss, best, train[best], stopped, best, n - 1, train[n - 1], val[n - 1]);
    if (!dir) return 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int e = 0; e < n; e++) lo = fmin(lo, fmin(train[e], val[e])), hi = fmax(hi, fmax(train[e], val[e]));
    double bx[2] = {best, best}, by[2] = {lo, hi}, px[1] = {best}, py[1] = {best_loss};
    plot_series s[] = {
        {.x = epoch, .y = train, .n = n, .label = "training loss"},
        {.x = epoch, .y = val, .n = n, .label = "validation loss"},
        {.x = bx, .y = by, .n = 2, .label = "the chosen epoch", .color = "#000000"},
        {.x = px, .y = py, .n = 1, .label = NULL, .color = "#000000", .points = true},
    };
    return draw_lines(dir, "early-stopping", &(plot_cfg){.title = "Early stopping: stop where the validation loss is lowest",
                                                         .xlabel = "epoch", .ylabel = "mean squared error"},
                      s, 4, out);
}

int lecture_part(const char *name, const char *svg_dir, FILE *out)
{
    if (strcmp(name, "momentum") == 0) return part_momentum(svg_dir, out);
    if (strcmp(name, "minibatch") == 0) return part_minibatch(svg_dir, out);
    if (strcmp(name, "dropout") == 0) return part_dropout(svg_dir, out);
    if (strcmp(name, "early-stopping") == 0) return part_early_stopping(svg_dir, out);
    fprintf(stderr, "lecture: no part '%s' (momentum, minibatch, dropout or early-stopping)\n", name);
    return 1;
}
