/* Losses and regularizers against hand computations, the gradient of a whole regularized MLP
 * objective against central differences, metrics, early stopping, and training loops that
 * learn and allocate nothing after their first step. */
#include "testutil.h"
#include "nn.h"
#include "nn_data.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- losses ---- */

START_TEST(cross_entropy_by_hand)
{
    /* scores [[1,2,3],[0,0,0]], labels {2, 0}:
     * -log softmax = lse - z_y = log(e + e^2 + e^3) - 3 and log 3; the loss is their mean. */
    double s[6] = {1, 2, 3, 0, 0, 0};
    int32_t y[2] = {2, 0};
    double want = (log(exp(1) + exp(2) + exp(3)) - 3 + log(3)) / 2;
    for (int t = 0; t < 2; t++) {
        ad_graph *g = ad_graph_new();
        ad_node *v = ad_var_array(g, "s", t ? AD_F32 : AD_F64, AD_SHAPE(2, 3), s);
        ad_node *l = nn_cross_entropy(g, v, y);
        ck_assert_double_eq_tol(ad_value(l), want, t ? 1e-6 : 1e-14);
        /* d/dz = (softmax(z) - onehot(y)) / N */
        ck_assert_int_eq(ad_backward(g, l), AD_OK);
        double Z = exp(1) + exp(2) + exp(3);
        ck_assert_double_eq_tol(ad_node_grad_get(v, 2), (exp(3) / Z - 1) / 2, t ? 1e-6 : 1e-14);
        ck_assert_double_eq_tol(ad_node_grad_get(v, 4), (1.0 / 3) / 2, t ? 1e-6 : 1e-14);
        /* stable for scores of ±1000: the loss of a confident right answer is ~0, a wrong one ~2000 */
        ad_node *big = ad_const(g, AD_F64, AD_SHAPE(1, 2), (double[]){1000, -1000});
        ck_assert_double_eq_tol(ad_value(nn_cross_entropy(g, big, (int32_t[]){0})), 0, 1e-12);
        ck_assert_double_eq_tol(ad_value(nn_cross_entropy(g, big, (int32_t[]){1})), 2000, 1e-9);
        ad_graph_free(g);
    }
}
END_TEST

START_TEST(regression_losses_by_hand)
{
    /* pred [3,1] = {1, 2, 4}, target {0, 2, 1}: squared (1 + 0 + 9)/3, absolute (1 + 0 + 3)/3 */
    ad_graph *g = ad_graph_new();
    ad_node *p = ad_var_array(g, "p", AD_F64, AD_SHAPE(3, 1), (double[]){1, 2, 4});
    ad_node *t = ad_const(g, AD_F64, AD_SHAPE(3), (double[]){0, 2, 1});
    ad_node *sq = nn_squared_loss(g, p, t), *ab = nn_absolute_loss(g, p, t);
    ck_assert_double_eq_tol(ad_value(sq), 10.0 / 3, 1e-15);
    ck_assert_double_eq_tol(ad_value(ab), 4.0 / 3, 1e-15);
    ck_assert_int_eq(ad_backward(g, sq), AD_OK);
    ck_assert_double_eq_tol(ad_node_grad_get(p, 2), 2.0 * 3 / 3, 1e-15); /* 2(p - t)/N */
    ck_assert_ptr_null(nn_squared_loss(g, p, ad_const(g, AD_F64, AD_SHAPE(4), NULL)));
    ck_assert_ptr_nonnull(strstr(ad_error(g), "prediction [3,1] and target [4]"));
    ad_graph_free(g);
}
END_TEST

START_TEST(regularizers_by_hand)
{
    static const int h[] = {3};
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 2, .hidden = {h[0]}, .out = 2, .seed = 4});
    ad_rng r;
    ad_rng_seed(&r, 2);
    double l1 = 0, l2 = 0, l1w = 0, l2w = 0;
    ad_tensor *const *p = nn_mlp_params(m);
    for (int i = 0; p[i]; i++) {
        ad_tensor_rand_uniform(p[i], &r, -1, 1);
        for (int64_t k = 0; k < ad_tensor_size(p[i]); k++) {
            double v = ad_tensor_get(p[i], k);
            l1 += fabs(v), l2 += v * v;
            if (i % 2 == 0) l1w += fabs(v), l2w += v * v;
        }
    }
    ad_graph *g = ad_graph_new();
    ck_assert_double_eq_tol(ad_value(nn_regularizer(g, m, NN_L2, false)), l2, 1e-13);
    ck_assert_double_eq_tol(ad_value(nn_regularizer(g, m, NN_L1, false)), l1, 1e-13);
    ck_assert_double_eq_tol(ad_value(nn_regularizer(g, m, NN_L2, true)), l2w, 1e-13);
    ck_assert_double_eq_tol(ad_value(nn_regularizer(g, m, NN_L1, true)), l1w, 1e-13);
    ad_node *loss = ad_const_scalar(g, 0.25);
    ck_assert_double_eq_tol(ad_value(nn_regularized(g, loss, m, NN_L2, 0.1, false)), 0.25 + 0.1 * l2, 1e-13);
    ck_assert_ptr_eq(nn_regularized(g, loss, m, NN_L1, 0, false), loss);
    /* the gradient of λ Σθ² is 2λθ, of λ Σ|θ| is λ sign(θ) */
    ad_node *obj = nn_regularized(g, nn_regularized(g, loss, m, NN_L2, 0.1, false), m, NN_L1, 0.3, true);
    ck_assert_int_eq(ad_backward(g, obj), AD_OK);
    for (int i = 0; p[i]; i++)
        for (int64_t k = 0; k < ad_tensor_size(p[i]); k++) {
            double v = ad_tensor_get(p[i], k), want = 0.2 * v + (i % 2 == 0 ? 0.3 * (v > 0 ? 1 : -1) : 0);
            ck_assert_double_eq_tol(ad_tensor_grad_get(p[i], k), want, 1e-13);
        }
    ck_assert_ptr_null(nn_regularized(g, loss, m, NN_L2, -1, false));
    ck_assert_str_eq(ad_error(g), "nn_regularized: lambda = -1 must be finite and >= 0");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_regularizer(g, NULL, NN_L2, false));
    ck_assert_str_eq(ad_error(g), "nn_regularizer: model is NULL");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_regularizer(g, m, (nn_norm)3, false));
    ck_assert_str_eq(ad_error(g), "nn_regularizer: unknown norm 3");
    ad_graph_free(g);
    nn_mlp_free(m);
}
END_TEST

/* ---- the gradient of a whole objective ---- */

typedef struct {
    nn_mlp *m;
    ad_graph *g;
    ad_tensor *x, *t;
    int32_t y[8];
    bool classify;
} problem;

/* L(θ) = mean loss + 0.01 Σ|θ| + 0.02 Σθ², dropout masks replayed from one seed so every
 * evaluation sees the same network. */
static double objective(problem *p, bool backward)
{
    ad_graph_reset(p->g);
    nn_mlp_reseed(p->m, 5);
    ad_node *s = nn_mlp_forward(p->g, p->m, ad_const_tensor(p->g, p->x), NN_TRAIN);
    ad_node *loss = p->classify ? nn_cross_entropy(p->g, s, p->y) : nn_squared_loss(p->g, s, ad_const_tensor(p->g, p->t));
    ad_node *L = nn_regularized(p->g, nn_regularized(p->g, loss, p->m, NN_L1, 0.01, false), p->m, NN_L2, 0.02, false);
    ck_assert_msg(L != NULL, "%s", ad_error(p->g));
    if (backward) ck_assert_int_eq(ad_backward(p->g, L), AD_OK);
    return ad_value(L);
}

/* Every parameter's gradient against (L(θ + h) - L(θ - h)) / 2h, in float64. */
START_TEST(gradcheck_whole_mlp_with_l1_l2)
{
    int checked = 0;
    for (int act = NN_RELU; act <= NN_TANH; act++)
        for (int classify = 0; classify < 2; classify++) {
            problem p = {.classify = classify};
            nn_mlp_cfg c = {.in = 4, .hidden = {5, 4}, .out = classify ? 3 : 1, .act = (nn_act)act,
                            .task = classify ? NN_CLASSIFY : NN_REGRESS, .dtype = AD_F64, .seed = 8,
                            .dropout = 0.3, .input_dropout = act == NN_TANH ? 0.2 : 0};
            p.m = nn_mlp_new(&c);
            p.g = ad_graph_new();
            ad_rng r;
            ad_rng_seed(&r, 100 + (uint64_t)act);
            p.x = rand_tensor(&r, AD_SHAPE(8, 4), -2, 2);
            p.t = rand_tensor(&r, AD_SHAPE(8, 1), -1, 1);
            for (int i = 0; i < 8; i++) p.y[i] = (int32_t)(ad_rng_next(&r) % 3);
            ad_tensor *const *params = nn_mlp_params(p.m);
            for (int i = 0; params[i]; i++)
                if (i % 2) ad_tensor_rand_uniform(params[i], &r, -0.5, 0.5); /* |b| away from its kink */
            nn_mlp_zero_grad(p.m);
            objective(&p, true);
            const double h = 1e-6;
            for (int i = 0; params[i]; i++)
                for (int64_t k = 0; k < ad_tensor_size(params[i]); k++) {
                    double v = ad_tensor_get(params[i], k), analytic = ad_tensor_grad_get(params[i], k);
                    ad_tensor_set(params[i], k, v + h);
                    double up = objective(&p, false);
                    ad_tensor_set(params[i], k, v - h);
                    double down = objective(&p, false);
                    ad_tensor_set(params[i], k, v);
                    double numeric = (up - down) / (2 * h);
                    ck_assert_msg(fabs(analytic - numeric) <= 1e-7 + 1e-5 * fabs(numeric),
                                  "act %d %s: %s[%lld]: backward %.10g, differences %.10g", act,
                                  classify ? "cross-entropy" : "squared loss", ad_tensor_name(params[i]), (long long)k,
                                  analytic, numeric);
                    checked++;
                }
            ad_tensor_free(p.x), ad_tensor_free(p.t);
            ad_graph_free(p.g);
            nn_mlp_free(p.m);
        }
    /* (4*5+5) + (5*4+4) + (4*3+3) = 64 for classification; the regression output layer has
     * 4*1+1 = 5 instead of 15, so 54 */
    ck_assert_int_eq(checked, 4 * (64 + 54));
}
END_TEST

/* ---- metrics ---- */

START_TEST(metrics_by_hand)
{
    int32_t pred[6] = {0, 1, 2, 2, 1, 0}, lab[6] = {0, 1, 1, 2, 1, 2};
    ck_assert_double_eq(nn_accuracy(pred, lab, 6), 4.0 / 6);
    ck_assert(isnan(nn_accuracy(pred, lab, 0)));
    int64_t cm[9];
    char err[256];
    ck_assert_int_eq(nn_confusion_matrix(pred, lab, 6, 3, cm, err, sizeof err), AD_OK);
    /* rows: true class; columns: predicted */
    const int64_t want[9] = {1, 0, 0, 0, 2, 1, 1, 0, 1};
    for (int i = 0; i < 9; i++) ck_assert_int_eq(cm[i], want[i]);
    lab[4] = 3;
    ck_assert_int_eq(nn_confusion_matrix(pred, lab, 6, 3, cm, err, sizeof err), AD_ERR_ARG);
    ck_assert_str_eq(err, "nn_confusion_matrix: row 4: label 3, prediction 1: outside [0,3)");
    ck_assert_int_eq(nn_confusion_matrix(NULL, lab, 6, 3, cm, err, sizeof err), AD_ERR_NULL);
    double p[3] = {1, 2, 3}, t[3] = {1, 0, 6};
    ck_assert_double_eq(nn_mean_squared_error(p, t, 3), (0 + 4 + 9) / 3.0);
    ck_assert(isnan(nn_mean_squared_error(p, NULL, 3)));
}
END_TEST

/* ---- early stopping ---- */

START_TEST(early_stopping_restores_the_best)
{
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 2, .hidden = {3}, .out = 2, .seed = 1});
    ad_tensor *w = nn_mlp_params(m)[0];
    nn_early_stop *e = nn_early_stop_new(nn_mlp_params(m), 2, 0.01);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(nn_early_stop_best_epoch(e), -1);
    /* epoch: 0     1     2      3     4 (stop: no improvement > 0.01 in epochs 3 and 4)
     * loss:  1.0   0.5   0.495  0.6   0.55 */
    const double loss[] = {1.0, 0.5, 0.495, 0.6, 0.55};
    const bool stop[] = {false, false, false, true, true};
    double w_at_best = 0;
    for (int ep = 0; ep < 5; ep++) {
        ad_tensor_set(w, 0, 10.0 + ep); /* "training" changes the weights every epoch */
        if (ep == 1) w_at_best = ad_tensor_get(w, 0);
        bool s = nn_early_stop_update(e, loss[ep]);
        ck_assert_int_eq(s, stop[ep]);
        if (ep == 3) ck_assert_int_eq(nn_early_stop_best_epoch(e), 1); /* 0.495 is within min_delta */
        if (s) break;
    }
    ck_assert_double_eq(nn_early_stop_best(e), 0.5);
    nn_early_stop_restore(e);
    ck_assert_double_eq(ad_tensor_get(w, 0), w_at_best);
    nn_early_stop_free(e);
    /* NaN never improves; bad arguments give NULL */
    e = nn_early_stop_new(nn_mlp_params(m), 1, 0);
    ck_assert(nn_early_stop_update(e, NAN));
    ck_assert_int_eq(nn_early_stop_best_epoch(e), -1);
    nn_early_stop_restore(e); /* nothing to restore: a no-op */
    nn_early_stop_free(e);
    ck_assert_ptr_null(nn_early_stop_new(nn_mlp_params(m), 0, 0));
    ck_assert_ptr_null(nn_early_stop_new(NULL, 1, 0));
    ck_assert_ptr_null(nn_early_stop_new(nn_mlp_params(m), 1, -1));
    nn_mlp_free(m);
}
END_TEST

/* ---- training ---- */

static void sgd_step(nn_mlp *m, double lr)
{
    for (ad_tensor *const *p = nn_mlp_params(m); *p; p++) {
        if (ad_tensor_dtype(*p) == AD_F32) {
            float *v = ad_tensor_data(*p), *gr = ad_tensor_grad_data(*p);
            for (int64_t i = 0; i < ad_tensor_size(*p); i++) v[i] -= (float)lr * gr[i];
        } else {
            double *v = ad_tensor_data(*p), *gr = ad_tensor_grad_data(*p);
            for (int64_t i = 0; i < ad_tensor_size(*p); i++) v[i] -= lr * gr[i];
        }
    }
    nn_mlp_zero_grad(m);
}

/* Two interleaved spirals: not linearly separable, the lecture's motivating picture. */
static nn_dataset *spirals(int n, ad_dtype t, uint64_t seed)
{
    nn_dataset *d = nn_dataset_new(n, 2, t, 0);
    ad_rng r;
    ad_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        int c = i % 2;
        double k = 0.25 + 3.0 * ad_rng_uniform(&r), a = k + c * 3.14159265358979323846;
        ad_tensor_set(d->x, 2 * i, k * cos(a) / 3 + 0.03 * ad_rng_normal(&r));
        ad_tensor_set(d->x, 2 * i + 1, k * sin(a) / 3 + 0.03 * ad_rng_normal(&r));
        d->labels[i] = c;
    }
    d->classes = 2;
    return d;
}

START_TEST(sgd_learns_spirals_without_allocating)
{
    nn_dataset *d = spirals(400, AD_F32, 3);
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 2, .hidden = {32, 32}, .out = 2, .act = NN_TANH,
                                         .dtype = AD_F32, .seed = 2});
    nn_batches *it = nn_batches_new(d, 32, true, 1, NULL, 0);
    ad_graph *g = ad_graph_new();
    nn_batch b;
    long allocs_after_first = -1;
    double first_loss = -1, last_loss = 0;
    int steps = 0;
    for (int epoch = 0; epoch < 150; epoch++)
        while (nn_batches_next(it, &b)) {
            ad_graph_reset(g);
            ad_node *s = nn_mlp_forward(g, m, ad_const_tensor(g, b.x), NN_TRAIN);
            ad_node *loss = nn_regularized(g, nn_cross_entropy(g, s, b.labels), m, NN_L2, 1e-5, true);
            ck_assert_int_eq(ad_backward(g, loss), AD_OK);
            sgd_step(m, 0.3);
            if (first_loss < 0) first_loss = ad_value(loss);
            last_loss = ad_value(loss);
            /* after one full epoch every batch shape has been seen */
            if (++steps == 13) allocs_after_first = ad_alloc_count();
        }
    ck_assert_int_eq(ad_alloc_count(), allocs_after_first);
    int32_t *cls = malloc(400 * sizeof *cls);
    ck_assert_int_eq(nn_mlp_predict(g, m, d->x, NULL, cls), AD_OK);
    double acc = nn_accuracy(cls, d->labels, 400);
    ck_assert_msg(acc > 0.95, "accuracy %g, loss %g -> %g", acc, first_loss, last_loss);
    ck_assert_double_lt(last_loss, first_loss / 5);
    free(cls);
    ad_graph_free(g);
    nn_batches_free(it);
    nn_mlp_free(m);
    nn_dataset_free(d);
}
END_TEST

/* Regression: T = 1, no softmax, squared loss, fitting sin on [-3, 3]. */
START_TEST(sgd_fits_a_curve)
{
    enum { N = 200 };
    nn_dataset *d = nn_dataset_new(N, 1, AD_F64, 1);
    for (int i = 0; i < N; i++) {
        double x = -3 + 6.0 * i / (N - 1);
        ad_tensor_set(d->x, i, x);
        ad_tensor_set(d->y, i, sin(x));
    }
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 1, .hidden = {24}, .out = 1, .act = NN_TANH,
                                         .task = NN_REGRESS, .seed = 5});
    nn_batches *it = nn_batches_new(d, 20, true, 4, NULL, 0);
    ad_graph *g = ad_graph_new();
    nn_batch b;
    for (int epoch = 0; epoch < 300; epoch++)
        while (nn_batches_next(it, &b)) {
            ad_graph_reset(g);
            ad_node *loss = nn_squared_loss(g, nn_mlp_forward(g, m, ad_const_tensor(g, b.x), NN_TRAIN),
                                            ad_const_tensor(g, b.y));
            ck_assert_int_eq(ad_backward(g, loss), AD_OK);
            sgd_step(m, 0.05);
        }
    double pred[N], target[N];
    ck_assert_int_eq(nn_mlp_predict(g, m, d->x, pred, NULL), AD_OK);
    ad_tensor_read(d->y, target);
    double mse = nn_mean_squared_error(pred, target, N);
    /* sin² averages (3 - sin(6)/2)/6 = 0.52 on [-3,3]: the fit must explain over 98% of it
     * (plain SGD; an adaptive optimizer gets far lower) */
    ck_assert_msg(mse < 0.01, "mse %g", mse);
    ad_graph_free(g);
    nn_batches_free(it);
    nn_mlp_free(m);
    nn_dataset_free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cross_entropy_by_hand);
    tcase_add_test(tc, regression_losses_by_hand);
    tcase_add_test(tc, regularizers_by_hand);
    tcase_add_test(tc, gradcheck_whole_mlp_with_l1_l2);
    tcase_add_test(tc, metrics_by_hand);
    tcase_add_test(tc, early_stopping_restores_the_best);
    tcase_add_test(tc, sgd_learns_spirals_without_allocating);
    tcase_add_test(tc, sgd_fits_a_curve);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
