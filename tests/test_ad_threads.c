/* Separate graphs used from separate threads at the same time: each thread's results equal
 * the single-threaded run's, bit for bit (and ThreadSanitizer, in CI, sees no race). */
#include "testutil.h"
#include "ad_real.h"
#include <pthread.h>
#include <math.h>
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

/* One recording, replayed from THREADS threads at once, each in its own workspace at its own
 * points: values and gradients equal the serial replays on the recording, bit for bit.  The
 * recording: a float32 layer over shared parameters with cross-entropy, and a float64 scalar
 * part with a where. */
enum { POINTS = 12, BATCH = 6, IN = 5, OUT = 3 };

typedef struct {
    ad_graph *ws;          /* the thread's workspace */
    uint32_t x_id, s_id, loss_id, q_id, w_id;
    int first;             /* the points this thread replays: first, first + THREADS, ... */
    double loss[POINTS], q[POINTS], grad_w[POINTS][OUT * IN], grad_s[POINTS];
} replay_job;

static double point_x(int p, int i) { return sin(0.37 * (p + 1) * (i + 1)); }

static void replay_point(ad_graph *g, const replay_job *ids, int p, replay_job *out)
{
    double x[BATCH * IN];
    int32_t labels[BATCH];
    for (int i = 0; i < BATCH * IN; i++) x[i] = point_x(p, i);
    for (int i = 0; i < BATCH; i++) labels[i] = (p + i) % OUT;
    ad_node *loss = ad_graph_node(g, ids->loss_id), *q = ad_graph_node(g, ids->q_id);
    ck_assert_int_eq(ad_set_data(g, ad_graph_node(g, ids->x_id), x), AD_OK);
    ck_assert_int_eq(ad_set_value(g, ad_graph_node(g, ids->s_id), 0.25 * p - 1.4), AD_OK);
    ck_assert_int_eq(ad_node_set_arg(g, loss, labels), AD_OK);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ad_zero_grad(g);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    ck_assert_int_eq(ad_backward(g, q), AD_OK);
    out->loss[p] = ad_value(loss);
    out->q[p] = ad_value(q);
    out->grad_s[p] = ad_grad(ad_graph_node(g, ids->s_id));
    for (int i = 0; i < OUT * IN; i++) out->grad_w[p][i] = ad_node_grad_get(ad_graph_node(g, ids->w_id), i);
}

static void *replay_work(void *arg)
{
    replay_job *j = arg;
    for (int p = j->first; p < POINTS; p += THREADS) replay_point(j->ws, j, p, j);
    return NULL;
}

START_TEST(concurrent_replays_agree_with_serial)
{
    ad_rng r;
    ad_rng_seed(&r, 21);
    ad_tensor *w = ad_param_new("w", AD_F32, AD_SHAPE(OUT, IN)), *b = ad_param_new("b", AD_F32, AD_SHAPE(OUT));
    ad_tensor_rand_uniform(w, &r, -1, 1);
    ad_tensor_rand_uniform(b, &r, -1, 1);
    ad_graph *g = ad_graph_new();
    int32_t labels[BATCH] = {0};
    ad_node *x = ad_const(g, AD_F32, AD_SHAPE(BATCH, IN), NULL);
    ad_node *wn = ad_param(g, w);
    ad_node *loss = ad_cross_entropy(g, ad_tanh(g, ad_linear(g, x, wn, ad_param(g, b))), labels);
    ad_node *s = ad_var(g, "s", 0);
    ad_node *q = ad_where(g, ad_gt(g, s, ad_const_scalar(g, 0)), ad_mul(g, s, ad_exp(g, s)), ad_sin(g, s));
    ck_assert_ptr_nonnull(q);
    replay_job ids = {.x_id = ad_node_id(x), .s_id = ad_node_id(s), .loss_id = ad_node_id(loss),
                      .q_id = ad_node_id(q), .w_id = ad_node_id(wn)};
    static replay_job serial, jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = ids;
        jobs[t].first = t;
        ck_assert_ptr_nonnull(jobs[t].ws = ad_graph_clone(g));
    }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) ck_assert_int_eq(pthread_create(&th[t], NULL, replay_work, &jobs[t]), 0);
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    for (int p = 0; p < POINTS; p++) { /* the recording's parameter gradients are the tensors' */
        ad_tensor_zero_grad(w), ad_tensor_zero_grad(b);
        replay_point(g, &ids, p, &serial);
    }
    for (int p = 0; p < POINTS; p++) {
        const replay_job *j = &jobs[p % THREADS];
        ck_assert_mem_eq(&j->loss[p], &serial.loss[p], sizeof(double));
        ck_assert_mem_eq(&j->q[p], &serial.q[p], sizeof(double));
        ck_assert_mem_eq(&j->grad_s[p], &serial.grad_s[p], sizeof(double));
        ck_assert_mem_eq(j->grad_w[p], serial.grad_w[p], sizeof serial.grad_w[p]);
    }
    ck_assert(serial.q[0] != serial.q[POINTS - 1]); /* the points differ, and both branches ran */
    for (int t = 0; t < THREADS; t++) ad_graph_free(jobs[t].ws);
    ad_graph_free(g);
    ad_tensor_free(w), ad_tensor_free(b);
}
END_TEST

/* One program, evaluated from THREADS threads at once, each in its own workspace: the same
 * bits as serial evaluations. */
typedef struct {
    const ad_program *p;
    int first;
    double value[POINTS], grad[POINTS][3];
} program_job;

static void program_point(const ad_program *p, ad_program_ws *w, int k, double *value, double *grad)
{
    double x[3] = {sin(0.3 * k), cos(0.2 * k), 0.1 * k - 0.5};
    ck_assert_int_eq(ad_program_gradient(p, w, x, value, grad), AD_OK);
}

static void *program_work(void *arg)
{
    program_job *j = arg;
    ad_program_ws *w = ad_program_ws_new(j->p);
    for (int k = j->first; k < POINTS; k += THREADS) program_point(j->p, w, k, &j->value[k], j->grad[k]);
    ad_program_ws_free(w);
    return NULL;
}

START_TEST(concurrent_programs_agree_with_serial)
{
    ad_graph *g = ad_graph_new();
    ad_node *x[3];
    for (int i = 0; i < 3; i++) x[i] = ad_var(g, "x", 0.5);
    ad_node *f = ad_add(g, ad_mul(g, ad_exp(g, x[0]), ad_sin(g, x[1])),
                        ad_where(g, ad_gt(g, x[2], x[0]), ad_square(g, x[2]), ad_tanh(g, x[1])));
    ad_program *p = ad_program_new(g, 1, &f, 3, x);
    ck_assert_ptr_nonnull(p);
    ad_graph_free(g);
    static program_job jobs[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (program_job){.p = p, .first = t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, program_work, &jobs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    ad_program_ws *w = ad_program_ws_new(p);
    for (int k = 0; k < POINTS; k++) {
        double value, grad[3];
        program_point(p, w, k, &value, grad);
        const program_job *j = &jobs[k % THREADS];
        ck_assert_mem_eq(&j->value[k], &value, sizeof value);
        ck_assert_mem_eq(j->grad[k], grad, sizeof grad);
    }
    ad_program_ws_free(w);
    ad_program_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_threads");
    TCase *tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, threads_agree_with_one_thread);
    tcase_add_test(tc, concurrent_replays_agree_with_serial);
    tcase_add_test(tc, concurrent_programs_agree_with_serial);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
