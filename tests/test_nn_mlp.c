/* The MLP against the lecture's definition computed with plain loops, initialisation
 * statistics, the parameter list and its PyTorch names, dropout's train/test semantics
 * (statistically), and every error message of model building. */
#include "testutil.h"
#include "nn.h"
#include "nn_data.h"
#include "optim.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the lecture's MLP with plain loops, in double ---- */

static double sigma(nn_act a, double z, double slope)
{
    switch (a) {
    case NN_RELU: return z > 0 ? z : 0;
    case NN_LEAKY_RELU: return z > slope * z ? z : slope * z; /* max(0.1z, z) */
    case NN_SIGMOID: return 1 / (1 + exp(-z));
    default: return tanh(z);
    }
}

/* z_0 = x; z_i = σ(W_i z_{i-1} + b_i) [times 1 - p, the lecture's test-time dropout];
 * scores = W_{D+1} z_D + b_{D+1}; probabilities = softmax(scores).  One row at a time. */
static void reference(const nn_mlp *m, const double *x, int64_t N, double *scores, double *probs)
{
    const nn_mlp_cfg *c = nn_mlp_config(m);
    double keep = c->inverted_dropout ? 1 : 1 - c->dropout, keep_in = c->inverted_dropout ? 1 : 1 - c->input_dropout;
    for (int64_t n = 0; n < N; n++) {
        double z[512], next[512];
        int width = c->in;
        for (int j = 0; j < width; j++) z[j] = x[n * width + j] * keep_in;
        for (int i = 0; i <= nn_mlp_depth(m); i++) {
            const nn_linear *l = nn_mlp_layer(m, i);
            for (int u = 0; u < l->out; u++) {
                double s = ad_tensor_get(l->bias, u);
                for (int j = 0; j < l->in; j++) s += ad_tensor_get(l->weight, (int64_t)u * l->in + j) * z[j];
                next[u] = i < nn_mlp_depth(m) ? sigma(c->act, s, c->slope) * keep : s;
            }
            width = l->out;
            memcpy(z, next, (size_t)width * sizeof *z);
        }
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < width; k++) scores[n * width + k] = z[k], mx = fmax(mx, z[k]);
        for (int k = 0; k < width; k++) sum += exp(z[k] - mx);
        for (int k = 0; probs && k < width; k++) probs[n * width + k] = exp(z[k] - mx) / sum;
    }
}

static nn_mlp_cfg cfg_of(int in, const int *hidden, int nh, int out, nn_act act, ad_dtype t, nn_task task)
{
    nn_mlp_cfg c = {.in = in, .out = out, .act = act, .dtype = t, .task = task, .seed = 11};
    for (int i = 0; i < nh; i++) c.hidden[i] = hidden[i];
    return c;
}

/* Biases are zero after initialisation; make them matter. */
static void randomise_biases(nn_mlp *m, ad_rng *r)
{
    for (int i = 0; i <= nn_mlp_depth(m); i++) ad_tensor_rand_uniform(nn_mlp_layer(m, i)->bias, r, -0.5, 0.5);
}

START_TEST(forward_is_the_lecture_definition)
{
    static const int widths[] = {7, 5, 6};
    ad_rng r;
    ad_rng_seed(&r, 3);
    int cases = 0;
    for (int depth = 0; depth <= 3; depth++)
        for (int act = NN_RELU; act <= NN_TANH; act++)
            for (int t = 0; t < 2; t++)
                for (int task = 0; task < 2; task++) {
                    ad_dtype dt = t ? AD_F32 : AD_F64;
                    nn_mlp_cfg c = cfg_of(4, widths, depth, task ? 1 : 3, (nn_act)act, dt, (nn_task)task);
                    c.dropout = depth % 2 ? 0.25 : 0, c.input_dropout = depth == 3 ? 0.1 : 0;
                    c.inverted_dropout = act == NN_TANH;
                    nn_mlp *m = nn_mlp_new(&c);
                    ck_assert_ptr_nonnull(m);
                    randomise_biases(m, &r);
                    enum { N = 9 };
                    double x[N * 4], want[N * 3], wantp[N * 3], got[N * 3];
                    for (int i = 0; i < N * 4; i++) x[i] = 4 * ad_rng_uniform(&r) - 2;
                    reference(m, x, N, want, wantp);
                    ad_graph *g = ad_graph_new();
                    ad_node *xs = ad_const(g, dt, AD_SHAPE(N, 4), x);
                    ad_node *s = nn_mlp_forward(g, m, xs, NN_EVAL), *p = task ? NULL : nn_mlp_probs(g, m, xs, NN_EVAL);
                    ck_assert_msg(s != NULL, "%s", ad_error(g));
                    ad_shape sh = ad_node_shape(s);
                    ck_assert_int_eq(sh.rank, 2);
                    ck_assert_int_eq(sh.dim[0], N);
                    ck_assert_int_eq(sh.dim[1], c.out);
                    double tol = dt == AD_F64 ? 1e-12 : 2e-6;
                    for (int i = 0; i < N * c.out; i++) {
                        ck_assert_double_eq_tol(ad_node_get(s, i), want[i], tol * (1 + fabs(want[i])));
                        if (p) ck_assert_double_eq_tol(ad_node_get(p, i), wantp[i], tol);
                    }
                    /* nn_mlp_predict: the same probabilities (or outputs), and the argmax */
                    ad_tensor *xt = ad_tensor_from(dt, AD_SHAPE(N, 4), x);
                    int32_t cls[N];
                    ck_assert_int_eq(nn_mlp_predict(NULL, m, xt, got, task ? NULL : cls), AD_OK);
                    for (int n = 0; n < N; n++) {
                        int best = 0;
                        for (int k = 0; k < c.out; k++) {
                            ck_assert_double_eq_tol(got[n * c.out + k], task ? want[n * c.out + k] : wantp[n * c.out + k],
                                                    tol * (1 + fabs(want[n * c.out + k])));
                            if (wantp[n * c.out + k] > wantp[n * c.out + best]) best = k;
                        }
                        if (!task) ck_assert_int_eq(cls[n], best);
                    }
                    ad_tensor_free(xt);
                    ad_graph_free(g);
                    nn_mlp_free(m);
                    cases++;
                }
    ck_assert_int_eq(cases, 4 * 4 * 2 * 2);
}
END_TEST

/* Prediction runs in chunks of rows; a set larger than a chunk gives the same answer as one
 * forward over everything. */
START_TEST(predict_in_chunks_matches_one_pass)
{
    static const int h[] = {8};
    nn_mlp_cfg c = cfg_of(3, h, 1, 4, NN_RELU, AD_F32, NN_CLASSIFY);
    nn_mlp *m = nn_mlp_new(&c);
    ad_rng r;
    ad_rng_seed(&r, 5);
    randomise_biases(m, &r);
    enum { N = 1000 };
    ad_tensor *x = ad_tensor_new(AD_F32, AD_SHAPE(N, 3));
    ad_tensor_rand_normal(x, &r, 0, 1);
    double *got = malloc(N * 4 * sizeof *got);
    int32_t *cls = malloc(N * sizeof *cls);
    ad_graph *g = ad_graph_new();
    ck_assert_int_eq(nn_mlp_predict(g, m, x, got, cls), AD_OK);
    ad_graph_reset(g);
    ad_node *p = nn_mlp_probs(g, m, ad_const_tensor(g, x), NN_EVAL);
    for (int64_t i = 0; i < N * 4; i++) ck_assert_double_eq(got[i], ad_node_get(p, i));
    /* a regression model gives no classes */
    nn_mlp_cfg rc = cfg_of(3, h, 1, 1, NN_RELU, AD_F32, NN_REGRESS);
    nn_mlp *rm = nn_mlp_new(&rc);
    ck_assert_int_eq(nn_mlp_predict(g, rm, x, got, cls), AD_ERR_ARG);
    ck_assert_str_eq(ad_error(g), "nn_mlp_predict: classes requested from a regression model");
    ck_assert_int_eq(nn_mlp_predict(g, rm, x, got, NULL), AD_OK);
    ad_tensor *x64 = ad_tensor_new(AD_F64, AD_SHAPE(2, 3)), *x4 = ad_tensor_new(AD_F32, AD_SHAPE(2, 4));
    ck_assert_int_eq(nn_mlp_predict(g, m, x64, got, NULL), AD_ERR_DTYPE);
    ck_assert_str_eq(ad_error(g), "nn_mlp_predict: input is float64, the model is float32");
    ck_assert_int_eq(nn_mlp_predict(g, m, x4, got, NULL), AD_ERR_SHAPE);
    ck_assert_str_eq(ad_error(g), "nn_mlp_predict: input [2,4] does not match the model's 3 inputs (expected [N,3])");
    ck_assert_int_eq(nn_mlp_predict(NULL, m, NULL, got, NULL), AD_ERR_NULL);
    ad_tensor_free(x64), ad_tensor_free(x4), ad_tensor_free(x);
    free(got), free(cls);
    ad_graph_free(g);
    nn_mlp_free(m), nn_mlp_free(rm);
}
END_TEST

/* ---- initialisation ---- */

/* Mean and variance of a tensor's elements, and the largest magnitude. */
static void moments(const ad_tensor *t, double *mean, double *var, double *maxabs)
{
    int64_t n = ad_tensor_size(t);
    double s = 0, q = 0;
    *maxabs = 0;
    for (int64_t i = 0; i < n; i++) s += ad_tensor_get(t, i), *maxabs = fmax(*maxabs, fabs(ad_tensor_get(t, i)));
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) q += (ad_tensor_get(t, i) - *mean) * (ad_tensor_get(t, i) - *mean);
    *var = q / (double)n;
}

START_TEST(initialisation_statistics)
{
    enum { OUT = 200, IN = 300, N = OUT * IN };
    ad_rng r;
    ad_rng_seed(&r, 1);
    ad_tensor *w = ad_tensor_new(AD_F64, AD_SHAPE(OUT, IN));
    double mean, var, mx;
    /* Xavier: U(-a, a), a = sqrt(6/(in+out)), variance a^2/3 = 2/(in+out).  The sample
     * variance's standard error is sqrt(Var(x^2)/N) = a^2 sqrt(4/45/N) for a uniform. */
    nn_init_xavier(w, &r);
    moments(w, &mean, &var, &mx);
    double a = sqrt(6.0 / (IN + OUT)), v = 2.0 / (IN + OUT);
    ck_assert_double_le(mx, a);
    ck_assert_double_gt(mx, 0.999 * a);
    ck_assert_double_le(fabs(mean), 5 * sqrt(v / N));
    ck_assert_double_le(fabs(var - v), 5 * a * a * sqrt(4.0 / 45 / N));
    /* He: N(0, 2/in), and 2/((1 + 0.1^2) in) for leaky relu; for a normal the sample variance's
     * standard error is sigma^2 sqrt(2/N). */
    for (int leaky = 0; leaky < 2; leaky++) {
        double slope = leaky ? 0.1 : 0, want = 2.0 / ((1 + slope * slope) * IN);
        nn_init_he(w, &r, slope);
        moments(w, &mean, &var, &mx);
        ck_assert_double_le(fabs(mean), 5 * sqrt(want / N));
        ck_assert_double_le(fabs(var - want), 5 * want * sqrt(2.0 / N));
    }
    ad_tensor_free(w);
}
END_TEST

START_TEST(initialisation_is_reproducible_and_picks_by_activation)
{
    static const int h[] = {30, 20};
    nn_mlp_cfg c = cfg_of(40, h, 2, 10, NN_RELU, AD_F32, NN_CLASSIFY);
    nn_mlp *a = nn_mlp_new(&c), *b = nn_mlp_new(&c);
    c.seed = 12;
    nn_mlp *d = nn_mlp_new(&c);
    ad_tensor *const *pa = nn_mlp_params(a), *const *pb = nn_mlp_params(b), *const *pd = nn_mlp_params(d);
    for (int i = 0; pa[i]; i++) {
        size_t bytes = (size_t)ad_tensor_size(pa[i]) * sizeof(float);
        ck_assert_int_eq(memcmp(ad_tensor_data(pa[i]), ad_tensor_data(pb[i]), bytes), 0);
        if (i % 2 == 0) ck_assert_int_ne(memcmp(ad_tensor_data(pa[i]), ad_tensor_data(pd[i]), bytes), 0);
        else for (int64_t k = 0; k < ad_tensor_size(pa[i]); k++) ck_assert_double_eq(ad_tensor_get(pa[i], k), 0);
    }
    ck_assert_int_eq(nn_mlp_config(a)->init, NN_INIT_HE);
    /* the seed fixes the bits: the first weight of seed 11 is the generator's first normal
     * draw times He's standard deviation sqrt(2/40) */
    ad_rng r;
    ad_rng_seed(&r, 11);
    ck_assert_float_eq((float)ad_tensor_get(pa[0], 0), (float)(ad_rng_normal(&r) * sqrt(2.0 / 40)));
    nn_mlp_free(a), nn_mlp_free(b), nn_mlp_free(d);
    c.act = NN_TANH;
    a = nn_mlp_new(&c);
    ck_assert_int_eq(nn_mlp_config(a)->init, NN_INIT_XAVIER);
    double mean, var, mx;
    moments(nn_mlp_params(a)[0], &mean, &var, &mx);
    ck_assert_double_le(mx, sqrt(6.0 / (40 + 30)));
    nn_mlp_free(a);
    c.act = NN_LEAKY_RELU;
    a = nn_mlp_new(&c);
    ck_assert_double_eq(nn_mlp_config(a)->slope, 0.1); /* the slide's max(0.1z, z) */
    ck_assert_int_eq(nn_mlp_config(a)->init, NN_INIT_HE);
    nn_mlp_free(a);
}
END_TEST

/* ---- parameters ---- */

START_TEST(parameters_follow_pytorch_sequential)
{
    /* nn.Sequential(Linear(784,256), ReLU(), Linear(256,128), ReLU(), Linear(128,10)) */
    static const int h[] = {256, 128};
    nn_mlp_cfg c = cfg_of(784, h, 2, 10, NN_RELU, AD_F32, NN_CLASSIFY);
    nn_mlp *m = nn_mlp_new(&c);
    const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"};
    const int64_t shapes[][2] = {{256, 784}, {256, 0}, {128, 256}, {128, 0}, {10, 128}, {10, 0}};
    ad_tensor *const *p = nn_mlp_params(m);
    ck_assert_int_eq(nn_mlp_num_params(m), 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(ad_tensor_name(p[i]), names[i]);
        ad_shape s = ad_tensor_shape(p[i]);
        ck_assert_int_eq(s.rank, shapes[i][1] ? 2 : 1);
        ck_assert_int_eq(s.dim[0], shapes[i][0]);
        if (shapes[i][1]) ck_assert_int_eq(s.dim[1], shapes[i][1]);
        ck_assert_ptr_nonnull(ad_tensor_grad_data(p[i]));
    }
    ck_assert_ptr_null(p[6]);
    /* 784*256 + 256 + 256*128 + 128 + 128*10 + 10 */
    ck_assert_int_eq(nn_mlp_num_param_elements(m), 235146);
    nn_mlp_free(m);
    /* Dropout modules take indices too: Dropout, Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear */
    c.dropout = 0.5, c.input_dropout = 0.2;
    m = nn_mlp_new(&c);
    const char *dn[] = {"1.weight", "1.bias", "4.weight", "4.bias", "7.weight", "7.bias"};
    for (int i = 0; i < 6; i++) ck_assert_str_eq(ad_tensor_name(nn_mlp_params(m)[i]), dn[i]);
    nn_mlp_free(m);
    /* D = 0: softmax regression, one Linear */
    nn_mlp_cfg lin = cfg_of(5, NULL, 0, 3, NN_RELU, AD_F64, NN_CLASSIFY);
    m = nn_mlp_new(&lin);
    ck_assert_int_eq(nn_mlp_depth(m), 0);
    ck_assert_int_eq(nn_mlp_num_params(m), 2);
    ck_assert_str_eq(ad_tensor_name(nn_mlp_params(m)[0]), "0.weight");
    ck_assert_int_eq(nn_mlp_num_param_elements(m), 5 * 3 + 3);
    nn_mlp_free(m);
}
END_TEST

START_TEST(zero_grad_clears_every_parameter)
{
    static const int h[] = {4};
    nn_mlp_cfg c = cfg_of(3, h, 1, 2, NN_SIGMOID, AD_F64, NN_CLASSIFY);
    nn_mlp *m = nn_mlp_new(&c);
    ad_graph *g = ad_graph_new();
    int32_t y[2] = {0, 1};
    ad_node *loss = nn_cross_entropy(g, nn_mlp_forward(g, m, ad_full(g, AD_F64, AD_SHAPE(2, 3), 0.5), NN_TRAIN), y);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    double total = 0;
    for (ad_tensor *const *p = nn_mlp_params(m); *p; p++)
        for (int64_t i = 0; i < ad_tensor_size(*p); i++) total += fabs(ad_tensor_grad_get(*p, i));
    ck_assert_double_gt(total, 0);
    nn_mlp_zero_grad(m);
    for (ad_tensor *const *p = nn_mlp_params(m); *p; p++)
        for (int64_t i = 0; i < ad_tensor_size(*p); i++) ck_assert_double_eq(ad_tensor_grad_get(*p, i), 0);
    ad_graph_free(g);
    nn_mlp_free(m);
}
END_TEST

/* ---- dropout ---- */

START_TEST(dropout_layer_semantics)
{
    enum { N = 20000 };
    const double p = 0.3;
    ad_graph *g = ad_graph_new();
    ad_rng r;
    ad_rng_seed(&r, 9);
    for (int inv = 0; inv < 2; inv++) {
        ad_graph_reset(g);
        ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(N), NULL);
        double *xd = ad_node_data(x);
        for (int i = 0; i < N; i++) xd[i] = 1 + i % 7;
        ad_node *y = nn_dropout(g, x, p, inv, NN_TRAIN, &r);
        ck_assert_int_eq(ad_backward(g, ad_sum(g, y)), AD_OK);
        int zeros = 0;
        double scale = inv ? 1 / (1 - p) : 1; /* survivors: unscaled (lecture) or 1/(1-p) */
        for (int i = 0; i < N; i++) {
            double v = ad_node_get(y, i);
            if (v == 0) {
                zeros++;
                ck_assert_double_eq(ad_node_grad_get(x, i), 0);
            } else {
                ck_assert_double_eq(v, xd[i] * scale);
                ck_assert_double_eq(ad_node_grad_get(x, i), scale);
            }
        }
        /* a binomial count: mean N p, standard deviation sqrt(N p (1-p)) */
        ck_assert_double_le(fabs(zeros - N * p), 5 * sqrt(N * p * (1 - p)));
        /* test time: the lecture scales by 1 - p, inverted dropout is the identity */
        ad_node *e = nn_dropout(g, x, p, inv, NN_EVAL, &r);
        for (int i = 0; i < N; i += 97) ck_assert_double_eq(ad_node_get(e, i), inv ? xd[i] : xd[i] * (1 - p));
        ck_assert_ptr_eq(nn_dropout(g, x, 0, inv, NN_TRAIN, &r), x);
    }
    ck_assert_ptr_null(nn_dropout(g, ad_const_scalar(g, 1), 1.0, false, NN_TRAIN, &r));
    ck_assert_str_eq(ad_error(g), "nn_dropout: probability 1 outside [0,1)");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_dropout(g, ad_const_scalar(g, 1), 0.5, false, NN_TRAIN, NULL));
    ck_assert_str_eq(ad_error(g), "nn_dropout: rng is NULL");
    ad_graph_free(g);
}
END_TEST

/* The lecture's claim: scaling by 1 - p at test time "matches expectation under dropout".
 * With dropout after the last hidden layer the scores are linear in the dropped units, so the
 * mean of many training-mode outputs must equal the test output, within a tolerance from the
 * sample's own standard error.  Same for the inverted form. */
START_TEST(expected_training_output_is_test_output)
{
    enum { K = 4000, N = 4, IN = 6, OUT = 3 };
    static const int h[] = {20};
    for (int inv = 0; inv < 2; inv++) {
        nn_mlp_cfg c = cfg_of(IN, h, 1, OUT, NN_RELU, AD_F64, NN_CLASSIFY);
        c.dropout = 0.5, c.inverted_dropout = inv;
        nn_mlp *m = nn_mlp_new(&c);
        ad_rng r;
        ad_rng_seed(&r, 21);
        randomise_biases(m, &r);
        ad_tensor *x = ad_tensor_new(AD_F64, AD_SHAPE(N, IN));
        ad_tensor_rand_normal(x, &r, 0, 1);
        ad_graph *g = ad_graph_new();
        double test[N * OUT], sum[N * OUT] = {0}, sq[N * OUT] = {0}, nodrop[N * OUT];
        ad_node *e = nn_mlp_forward(g, m, ad_const_tensor(g, x), NN_EVAL);
        for (int i = 0; i < N * OUT; i++) test[i] = ad_node_get(e, i);
        for (int k = 0; k < K; k++) {
            ad_graph_reset(g);
            ad_node *s = nn_mlp_forward(g, m, ad_const_tensor(g, x), NN_TRAIN);
            for (int i = 0; i < N * OUT; i++) sum[i] += ad_node_get(s, i), sq[i] += ad_node_get(s, i) * ad_node_get(s, i);
        }
        /* what a wrong test-time rule would give: the hidden layer without any scaling */
        const nn_linear *l1 = nn_mlp_layer(m, 0), *l2 = nn_mlp_layer(m, 1);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OUT; o++) {
                double s = ad_tensor_get(l2->bias, o);
                for (int u = 0; u < 20; u++) {
                    double a = ad_tensor_get(l1->bias, u);
                    for (int j = 0; j < IN; j++) a += ad_tensor_get(l1->weight, u * IN + j) * ad_tensor_get(x, n * IN + j);
                    s += ad_tensor_get(l2->weight, o * 20 + u) * (a > 0 ? a : 0) * (inv ? 0.5 : 1);
                }
                nodrop[n * OUT + o] = s;
            }
        double worst_power = 0;
        for (int i = 0; i < N * OUT; i++) {
            double mean = sum[i] / K, sd = sqrt(fmax(sq[i] / K - mean * mean, 0)), se = sd / sqrt(K);
            ck_assert_msg(fabs(mean - test[i]) <= 5 * se + 1e-12, "%s output %d: mean %g, test %g, se %g",
                          inv ? "inverted" : "lecture", i, mean, test[i], se);
            worst_power = fmax(worst_power, fabs(nodrop[i] - test[i]) / (5 * se + 1e-12));
        }
        ck_assert_double_gt(worst_power, 3); /* the check would catch a missing (1-p) */
        ad_tensor_free(x);
        ad_graph_free(g);
        nn_mlp_free(m);
    }
}
END_TEST

START_TEST(eval_is_deterministic_and_reseed_replays)
{
    static const int h[] = {16, 16};
    nn_mlp_cfg c = cfg_of(5, h, 2, 3, NN_RELU, AD_F32, NN_CLASSIFY);
    c.dropout = 0.4, c.input_dropout = 0.2;
    nn_mlp *m = nn_mlp_new(&c);
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_full(g, AD_F32, AD_SHAPE(3, 5), 1.0);
    ad_node *e1 = nn_mlp_forward(g, m, x, NN_EVAL), *e2 = nn_mlp_forward(g, m, x, NN_EVAL);
    nn_mlp_reseed(m, 77);
    ad_node *t1 = nn_mlp_forward(g, m, x, NN_TRAIN), *t2 = nn_mlp_forward(g, m, x, NN_TRAIN);
    nn_mlp_reseed(m, 77);
    ad_node *t3 = nn_mlp_forward(g, m, x, NN_TRAIN);
    bool differ = false;
    for (int i = 0; i < 9; i++) {
        ck_assert_float_eq(ad_node_get(e1, i), ad_node_get(e2, i));
        ck_assert_float_eq(ad_node_get(t1, i), ad_node_get(t3, i));
        differ |= ad_node_get(t1, i) != ad_node_get(t2, i);
    }
    ck_assert(differ);
    ad_graph_free(g);
    nn_mlp_free(m);
}
END_TEST

/* ---- errors ---- */

START_TEST(config_errors_name_the_field)
{
    struct { nn_mlp_cfg c; const char *msg; } cases[] = {
        {{.in = 0, .out = 2}, "nn_mlp_new: in = 0: a model needs at least one input"},
        {{.in = 3, .out = 0}, "nn_mlp_new: out = 0: classification needs at least 1 output (one logit for two classes)"},
        {{.in = 3, .out = 0, .task = NN_REGRESS}, "nn_mlp_new: out = 0: regression needs at least 1 output"},
        {{.in = 3, .out = 2, .hidden = {4, -5}}, "nn_mlp_new: hidden[1] = -5: widths must be positive"},
        {{.in = 3, .out = 2, .hidden = {4, 0, 6}}, "nn_mlp_new: hidden[2] = 6 follows the terminating 0 at hidden[1]"},
        {{.in = 3, .out = 2, .act = (nn_act)9}, "nn_mlp_new: unknown activation 9"},
        {{.in = 3, .out = 2, .task = (nn_task)5}, "nn_mlp_new: unknown task 5"},
        {{.in = 3, .out = 2, .dtype = (ad_dtype)7}, "nn_mlp_new: unknown dtype 7"},
        {{.in = 3, .out = 2, .init = (nn_init)4}, "nn_mlp_new: unknown initialisation 4"},
        {{.in = 3, .out = 2, .slope = 1.5}, "nn_mlp_new: slope = 1.5: leaky relu's slope must lie in (0,1)"},
        {{.in = 3, .out = 2, .dropout = 1}, "nn_mlp_new: dropout = 1 outside [0,1)"},
        {{.in = 3, .out = 2, .input_dropout = -0.1}, "nn_mlp_new: input_dropout = -0.1 outside [0,1)"},
        {{.in = 3, .out = 2, .dropout = NAN}, "nn_mlp_new: dropout = nan outside [0,1)"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(nn_mlp_check(&cases[i].c, err, sizeof err), AD_ERR_ARG);
        ck_assert_str_eq(err, cases[i].msg);
        ck_assert_ptr_null(nn_mlp_new(&cases[i].c));
    }
    ck_assert_int_eq(nn_mlp_check(NULL, err, sizeof err), AD_ERR_NULL);
    ck_assert_str_eq(err, "nn_mlp_new: cfg is NULL");
    ck_assert_int_eq(nn_mlp_check(&(nn_mlp_cfg){.in = 1, .out = 2}, NULL, 0), AD_OK);
    nn_mlp_free(NULL);
}
END_TEST

START_TEST(forward_errors_name_the_shapes)
{
    static const int h[] = {256, 128};
    nn_mlp_cfg c = cfg_of(784, h, 2, 10, NN_RELU, AD_F32, NN_CLASSIFY);
    nn_mlp *m = nn_mlp_new(&c);
    ad_graph *g = ad_graph_new();
    ck_assert_ptr_null(nn_mlp_forward(g, m, ad_const(g, AD_F32, AD_SHAPE(64, 783), NULL), NN_TRAIN));
    ck_assert_str_eq(ad_error(g), "nn_mlp_forward: input [64,783] does not match the model's 784 inputs (expected [N,784])");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_SHAPE);
    ad_clear_error(g);
    ck_assert_ptr_null(nn_mlp_forward(g, m, ad_const(g, AD_F64, AD_SHAPE(64, 784), NULL), NN_TRAIN));
    ck_assert_str_eq(ad_error(g), "nn_mlp_forward: input [64,784] is float64, the model is float32");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_mlp_forward(g, m, ad_const(g, AD_F32, AD_SHAPE(784), NULL), NN_TRAIN));
    ck_assert_str_eq(ad_error(g), "nn_mlp_forward: input [784] does not match the model's 784 inputs (expected [N,784])");
    ad_clear_error(g);
    /* NULL passes on: the first message is kept */
    ad_node *bad = ad_matmul(g, ad_const(g, AD_F32, AD_SHAPE(2, 3), NULL), ad_const(g, AD_F32, AD_SHAPE(2, 3), NULL));
    ck_assert_ptr_null(nn_cross_entropy(g, nn_mlp_forward(g, m, bad, NN_EVAL), (int32_t[]){0, 1}));
    ck_assert_ptr_nonnull(strstr(ad_error(g), "matmul: [2,3] x [2,3]"));
    ad_clear_error(g);
    ck_assert_ptr_null(nn_mlp_forward(g, NULL, ad_const_scalar(g, 1), NN_EVAL));
    ck_assert_str_eq(ad_error(g), "nn_mlp_forward: model is NULL");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_linear_forward(g, nn_mlp_layer(m, 1), ad_const(g, AD_F32, AD_SHAPE(4, 255), NULL)));
    ck_assert_str_eq(ad_error(g), "nn_linear_forward: input [4,255] does not fit a layer of 256 inputs (expected [N,256])");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_activate(g, ad_const_scalar(g, 1), (nn_act)8, 0));
    ck_assert_str_eq(ad_error(g), "nn_activate: unknown activation 8");
    ck_assert_ptr_null(nn_mlp_layer(m, 3));
    ck_assert_ptr_null(nn_mlp_forward(NULL, m, NULL, NN_EVAL));
    ad_graph_free(g);
    nn_mlp_free(m);
}
END_TEST

START_TEST(linear_layer_on_its_own)
{
    nn_linear l;
    ad_rng r;
    ad_rng_seed(&r, 1);
    ck_assert_int_eq(nn_linear_init(&l, "fc", 3, 2, AD_F64, NN_INIT_XAVIER, 0, &r), AD_OK);
    ck_assert_str_eq(ad_tensor_name(l.weight), "fc.weight");
    ck_assert_str_eq(ad_tensor_name(l.bias), "fc.bias");
    double w[6] = {1, 2, 3, -1, 0, 1}, b[2] = {0.5, -0.5}, x[3] = {1, 1, 2};
    for (int i = 0; i < 6; i++) ad_tensor_set(l.weight, i, w[i]);
    for (int i = 0; i < 2; i++) ad_tensor_set(l.bias, i, b[i]);
    ad_graph *g = ad_graph_new();
    ad_node *y = nn_linear_forward(g, &l, ad_const(g, AD_F64, AD_SHAPE(1, 3), x));
    ck_assert_double_eq(ad_node_get(y, 0), 1 + 2 + 6 + 0.5); /* row 0 of W times x, plus b_0 */
    ck_assert_double_eq(ad_node_get(y, 1), -1 + 0 + 2 - 0.5);
    nn_linear_release(&l);
    ck_assert_ptr_null(l.weight);
    ck_assert_int_eq(nn_linear_init(&l, "x", 0, 2, AD_F64, NN_INIT_HE, 0, &r), AD_ERR_ARG);
    ck_assert_ptr_null(l.weight); /* a failed init leaves nothing to release */
    nn_linear_release(NULL);
    ad_graph_free(g);
    nn_linear l2;
    ck_assert_int_eq(nn_linear_init(&l2, NULL, 2, 2, AD_F32, NN_INIT_HE, 0, &r), AD_OK);
    ck_assert_str_eq(ad_tensor_name(l2.weight), "linear.weight");
    nn_linear_release(&l2);
}
END_TEST

/* A classifier with one logit: nn_cross_entropy is BCE-with-logits against the labels, the
 * probability is the sigmoid, predict thresholds it at 1/2; training by nn_step replays the
 * recording with each batch's labels (an ad_labels node) and learns a separable problem. */
static ad_node *binary_loss(ad_graph *g, ad_node *x, const int32_t *labels, ad_node *y, void *user)
{
    (void)y;
    return nn_cross_entropy(g, nn_mlp_forward(g, user, x, NN_TRAIN), labels);
}

START_TEST(binary_classifier_with_one_logit)
{
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 2, .hidden = {8}, .out = 1, .act = NN_TANH, .dtype = AD_F64, .seed = 3});
    ck_assert_ptr_nonnull(m);
    /* the loss by hand at the initial weights: mean of max(z,0) - z t + log(1 + e^-|z|) */
    ad_graph *g = ad_graph_new();
    const double xs[8] = {1, 2, -1, 0.5, 0.3, -2, -1.5, -0.5};
    const int32_t lab[4] = {1, 0, 1, 0};
    ad_node *z = nn_mlp_forward(g, m, ad_const(g, AD_F64, AD_SHAPE(4, 2), xs), NN_EVAL);
    ad_node *loss = nn_cross_entropy(g, z, lab);
    ck_assert_msg(loss != NULL, "%s", ad_error(g));
    double want = 0;
    for (int r = 0; r < 4; r++) {
        double v = ad_node_get(z, r);
        want += fmax(v, 0) - v * lab[r] + log1p(exp(-fabs(v)));
    }
    ck_assert_double_eq_tol(ad_value(loss), want / 4, 1e-14);
    ck_assert_ptr_null(nn_cross_entropy(g, z, (const int32_t[]){1, 2, 0, 0}));
    ck_assert_str_eq(ad_error(g), "labels: label 2 at row 1 outside [0,2)");
    ad_graph_free(g);

    /* two classes on either side of x0 + x1 = 0 */
    nn_dataset *d = nn_dataset_new(256, 2, AD_F64, 0);
    ad_rng r;
    ad_rng_seed(&r, 5);
    for (int i = 0; i < 256; i++) {
        double a = 2 * ad_rng_uniform(&r) - 1, b = 2 * ad_rng_uniform(&r) - 1;
        ad_tensor_set(d->x, 2 * i, a), ad_tensor_set(d->x, 2 * i + 1, b);
        d->labels[i] = a + b > 0;
    }
    d->classes = 2;
    char err[256];
    nn_batches *it = nn_batches_new(d, 32, true, 1, err, sizeof err);
    optim_cfg oc = optim_defaults(OPTIM_ADAM, 0.05);
    optim *o = optim_new(nn_mlp_params(m), nn_mlp_num_params(m), &oc, err, sizeof err);
    nn_step *step = nn_step_new(binary_loss, m);
    nn_batch b;
    double l = NAN;
    for (int e = 0; e < 20; e++)
        while (nn_batches_next(it, &b)) {
            optim_zero_grad(o);
            ck_assert_int_eq(nn_step_run(step, &b, &l), AD_OK);
            ck_assert_int_eq(optim_step(o), AD_OK);
        }
    int64_t recorded, replayed;
    nn_step_counts(step, &recorded, &replayed);
    ck_assert_int_eq(recorded, 1);
    ck_assert_int_gt(replayed, 100);
    int32_t pred[256];
    double p[256];
    ck_assert_int_eq(nn_mlp_predict(NULL, m, d->x, p, pred), AD_OK);
    ck_assert_double_ge(nn_accuracy(pred, d->labels, 256), 0.97);
    for (int i = 0; i < 256; i++) ck_assert(p[i] > 0 && p[i] < 1 && pred[i] == (p[i] > 0.5));
    nn_step_free(step);
    optim_free(o);
    nn_batches_free(it);
    nn_dataset_free(d);
    nn_mlp_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_mlp");
    TCase *tc = tcase_create("mlp");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, forward_is_the_lecture_definition);
    tcase_add_test(tc, predict_in_chunks_matches_one_pass);
    tcase_add_test(tc, initialisation_statistics);
    tcase_add_test(tc, initialisation_is_reproducible_and_picks_by_activation);
    tcase_add_test(tc, parameters_follow_pytorch_sequential);
    tcase_add_test(tc, zero_grad_clears_every_parameter);
    tcase_add_test(tc, dropout_layer_semantics);
    tcase_add_test(tc, expected_training_output_is_test_output);
    tcase_add_test(tc, eval_is_deterministic_and_reseed_replays);
    tcase_add_test(tc, config_errors_name_the_field);
    tcase_add_test(tc, forward_errors_name_the_shapes);
    tcase_add_test(tc, linear_layer_on_its_own);
    tcase_add_test(tc, binary_classifier_with_one_logit);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
