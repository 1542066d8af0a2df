/* Separate graphs used from separate threads at the same time: each thread's results equal
 * the single-threaded run's, bit for bit (and ThreadSanitizer, in CI, sees no race). */
#include "testutil.h"
#include "ad_real.h"
#include <pthread.h>
#include <string.h>

enum { THREADS = 4, STEPS = 30 };

typedef struct {
    uint64_t seed;
    double loss[STEPS];
    double tape_grad[4];
} job;

/* A few steps of gradient descent on a small two-layer net, plus a tape gradient. */
static void *work(void *arg)
{
    job *j = arg;
    ad_rng r;
    ad_rng_seed(&r, j->seed);
    ad_tensor *w1 = ad_param_new("w1", AD_F64, AD_SHAPE(8, 3)), *b1 = ad_param_new("b1", AD_F64, AD_SHAPE(8));
    ad_tensor *w2 = ad_param_new("w2", AD_F64, AD_SHAPE(2, 8));
    ad_tensor_rand_normal(w1, &r, 0, 0.5);
    ad_tensor_rand_normal(w2, &r, 0, 0.5);
    double xs[12];
    for (int i = 0; i < 12; i++) xs[i] = ad_rng_uniform(&r) * 2 - 1;
    int32_t ys[4] = {0, 1, 1, 0};
    ad_graph *g = ad_graph_new();
    ad_tensor *ps[3] = {w1, b1, w2};
    for (int s = 0; s < STEPS; s++) {
        ad_graph_reset(g);
        ad_node *x = ad_const(g, AD_F64, AD_SHAPE(4, 3), xs);
        ad_node *h = ad_tanh(g, ad_linear(g, x, ad_param(g, w1), ad_param(g, b1)));
        ad_node *l = ad_cross_entropy(g, ad_linear(g, h, ad_param(g, w2), NULL), ys);
        ad_backward(g, l);
        j->loss[s] = ad_value(l);
        for (int p = 0; p < 3; p++) {
            double *d = ad_tensor_data(ps[p]), *gr = ad_tensor_grad_data(ps[p]);
            for (int64_t i = 0; i < ad_tensor_size(ps[p]); i++) d[i] -= 0.5 * gr[i];
            ad_tensor_zero_grad(ps[p]);
        }
    }
    ad_tape *t = ad_tape_new();
    ad_real a = ad_real_var(t, 0.3), b = ad_real_var(t, -1.2), c = ad_real_var(t, 2.0), d = ad_real_var(t, 0.7);
    ad_real f = ad_real_mul(t, ad_real_exp(t, ad_real_mul(t, a, b)), ad_real_sin(t, ad_real_add(t, c, d)));
    ad_tape_backward(t, f);
    ad_real v[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) j->tape_grad[i] = ad_real_grad(t, v[i]);
    ad_tape_free(t);
    ad_graph_free(g);
    for (int p = 0; p < 3; p++) ad_tensor_free(ps[p]);
    return NULL;
}

START_TEST(threads_agree_with_one_thread)
{
    job alone[THREADS], together[THREADS];
    for (int i = 0; i < THREADS; i++) {
        alone[i] = (job){.seed = 100 + (uint64_t)i};
        together[i] = alone[i];
        work(&alone[i]);
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, work, &together[i]), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        ck_assert_mem_eq(alone[i].loss, together[i].loss, sizeof alone[i].loss);
        ck_assert_mem_eq(alone[i].tape_grad, together[i].tape_grad, sizeof alone[i].tape_grad);
        ck_assert(alone[i].loss[STEPS - 1] < alone[i].loss[0]); /* it did learn */
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_agree_with_one_thread);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
