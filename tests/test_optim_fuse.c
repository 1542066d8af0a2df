/* optim_fuse: the update made inside the backward sweep, block by block as a linear layer
 * finishes each weight's gradient, gives the same bits as optim_step after the sweep, for every
 * rule and both dtypes; the sweep hands a gradient only when changing the weight then is safe;
 * misuse (two sweeps per step, clipping) is refused with a message; steps allocate nothing. */
#include "testutil.h"
#include "ad_alloc.h"
#include "optim.h"
#include <stdio.h>
#include <string.h>

enum { N = 29, IN = 53, HID = 37, OUT = 7, STEPS = 4 };

/* A two-layer network's parameters: W1 [HID, IN], b1, W2 [OUT, HID], b2. */
typedef struct {
    ad_tensor *p[4];
} net;

static void net_make(net *m, ad_dtype t)
{
    static const char *names[4] = {"W1", "b1", "W2", "b2"};
    ad_shape shapes[4] = {AD_SHAPE(HID, IN), AD_SHAPE(HID), AD_SHAPE(OUT, HID), AD_SHAPE(OUT)};
    ad_rng rng;
    ad_rng_seed(&rng, 7);
    for (int i = 0; i < 4; i++) {
        m->p[i] = ad_param_new(names[i], t, shapes[i]);
        ck_assert_ptr_nonnull(m->p[i]);
        ad_tensor_rand_uniform(m->p[i], &rng, -0.5, 0.5);
    }
}

static void net_free(net *m)
{
    for (int i = 0; i < 4; i++) ad_tensor_free(m->p[i]);
}

/* The loss on fixed inputs: relu(x W1^T + b1) W2^T + b2, squared error against targets; with
 * shared, W1 is used by two layers (x W1^T twice), so it has two consumers. */
static ad_node *loss_of(ad_graph *g, net *m, ad_dtype t, bool shared)
{
    double x[N * IN], y[N * OUT];
    for (int i = 0; i < N * IN; i++) x[i] = (double)((i * 37) % 19) / 19.0 - 0.4;
    for (int i = 0; i < N * OUT; i++) y[i] = (double)((i * 11) % 5) / 5.0;
    ad_node *xn = ad_const(g, t, AD_SHAPE(N, IN), x);
    ad_node *w1 = ad_param(g, m->p[0]);
    ad_node *h = ad_linear_act(g, xn, w1, ad_param(g, m->p[1]), AD_ACT_RELU, 0);
    if (shared) h = ad_add(g, h, ad_linear(g, xn, w1, NULL));
    ad_node *out = ad_linear(g, h, ad_param(g, m->p[2]), ad_param(g, m->p[3]));
    ad_node *d = ad_sub(g, out, ad_const(g, t, AD_SHAPE(N, OUT), y));
    return ad_mean(g, ad_mul(g, d, d));
}

/* Trains STEPS steps (graph recorded once and replayed) and returns the optimizer's message
 * on failure; *handed counts the parameters handed to the optimizer at the last step. */
static void train(net *m, const optim_cfg *c, ad_dtype t, bool fused, bool shared)
{
    optim *o = optim_new(m->p, 4, c, NULL, 0);
    ck_assert_ptr_nonnull(o);
    if (fused) ck_assert_int_eq(optim_fuse(o, true), AD_OK);
    ad_graph *g = ad_graph_new();
    ad_node *loss = loss_of(g, m, t, shared);
    long allocs = 0;
    for (int s = 0; s < STEPS; s++) {
        if (s == 1) allocs = ad_alloc_count();
        optim_zero_grad(o);
        if (s > 0) ck_assert_int_eq(ad_replay(g), AD_OK);
        /* fused, a weight the sweep hands changes during the sweep: W2 always, W1 unless shared */
        char before[2][HID * IN * sizeof(double)];
        for (int k = 0; k < 2; k++)
            memcpy(before[k], ad_tensor_data(m->p[2 * k]), (size_t)ad_tensor_size(m->p[2 * k]) * ad_dtype_size(t));
        ck_assert_int_eq(ad_backward(g, loss), AD_OK);
        for (int k = 0; k < 2; k++) {
            bool changed = memcmp(before[k], ad_tensor_data(m->p[2 * k]),
                                  (size_t)ad_tensor_size(m->p[2 * k]) * ad_dtype_size(t)) != 0;
            ck_assert_int_eq(changed, fused && (k == 1 || !shared));
        }
        ck_assert_msg(optim_step(o) == AD_OK, "%s", optim_error(o));
    }
    ck_assert_int_eq(ad_alloc_count(), allocs);
    ad_graph_free(g);
    optim_free(o);
}

static bool same_bits(net *a, net *b)
{
    for (int i = 0; i < 4; i++) {
        size_t bytes = (size_t)ad_tensor_size(a->p[i]) * ad_dtype_size(ad_tensor_dtype(a->p[i]));
        if (memcmp(ad_tensor_data(a->p[i]), ad_tensor_data(b->p[i]), bytes)) return false;
    }
    return true;
}

/* Every rule's configurations worth telling apart. */
static optim_cfg rule_cfg(int r)
{
    switch (r) {
    case 0: return optim_defaults(OPTIM_GD, 0.1);
    case 1: return optim_defaults(OPTIM_MOMENTUM, 0.05);
    case 2: {
        optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.05);
        c.form = OPTIM_FORM_PYTORCH;
        c.nesterov = true;
        c.weight_decay = 0.01;
        return c;
    }
    case 3: {
        optim_cfg c = optim_defaults(OPTIM_ADAM, 0.01);
        c.schedule = (optim_schedule){.kind = OPTIM_SCHED_COSINE, .t_max = 10};
        return c;
    }
    case 4: return optim_defaults(OPTIM_ADAMW, 0.01);
    case 5: {
        optim_cfg c = optim_defaults(OPTIM_RMSPROP, 0.01);
        c.momentum = 0.5;
        return c;
    }
    default: return optim_defaults(OPTIM_RMSPROP, 0.01);
    }
}

START_TEST(fused_same_bits)
{
    int rule = _i / 4, shared = _i % 2;
    ad_dtype t = (_i / 2) % 2 ? AD_F64 : AD_F32;
    optim_cfg c = rule_cfg(rule);
    for (int threads = 1; threads <= 2; threads++) {
        ad_set_threads(threads);
        net a, b;
        net_make(&a, t);
        net_make(&b, t);
        train(&a, &c, t, false, shared);
        train(&b, &c, t, true, shared);
        ck_assert_msg(same_bits(&a, &b), "rule %d, %s, %s, %d threads: fused and unfused differ", rule,
                      t == AD_F32 ? "float32" : "float64", shared ? "shared W1" : "plain", threads);
        net_free(&a);
        net_free(&b);
    }
    ad_set_threads(0);
}
END_TEST

/* A ready function that counts how often each element of the gradient is handed. */
typedef struct {
    int counts[HID * IN];
    int calls;
} coverage;

static void count_block(void *ctx, ad_tensor *p, int64_t offset, int64_t ld, int64_t rows, int64_t cols)
{
    coverage *c = ctx;
    (void)p;
    c->calls++;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) c->counts[offset + r * ld + k]++;
}

/* Which sweeps hand W1's gradient: one that zeroed it first and uses it once, in two threads
 * too (blocks then come from both); not one that adds to an unzeroed gradient, nor one where
 * W1 has two consumers, nor a clone's. */
START_TEST(handed_exactly_when_safe)
{
    static coverage cov;
    for (int threads = 1; threads <= 2; threads++) {
        ad_set_threads(threads);
        for (int shared = 0; shared < 2; shared++) {
            net m;
            net_make(&m, AD_F32);
            memset(&cov, 0, sizeof cov);
            ad_param_set_grad_ready(m.p[0], count_block, &cov);
            ad_graph *g = ad_graph_new();
            ad_node *loss = loss_of(g, &m, AD_F32, shared);
            ad_tensor_zero_grad(m.p[0]);
            ck_assert_int_eq(ad_backward(g, loss), AD_OK);
            int handed = ad_param_take_grad_handed(m.p[0]);
            if (shared) {
                ck_assert_int_eq(handed, 0);
                ck_assert_int_eq(cov.calls, 0);
            } else {
                ck_assert_int_eq(handed, 1);
                ck_assert_int_ge(cov.calls, 1);
                for (int k = 0; k < HID * IN; k++) ck_assert_int_eq(cov.counts[k], 1);
            }
            /* a second sweep without zeroing adds to the gradient: nothing handed */
            cov.calls = 0;
            ck_assert_int_eq(ad_backward(g, loss), AD_OK);
            ck_assert_int_eq(ad_param_take_grad_handed(m.p[0]), 0);
            ck_assert_int_eq(cov.calls, 0);
            /* a clone's gradients are its own: never handed */
            if (!shared) {
                ad_graph *w = ad_graph_clone(g);
                ck_assert_ptr_nonnull(w);
                ad_tensor_zero_grad(m.p[0]);
                ck_assert_int_eq(ad_backward(w, ad_graph_node(w, ad_node_id(loss))), AD_OK);
                ck_assert_int_eq(cov.calls, 0);
                ad_graph_free(w);
            }
            ad_graph_free(g);
            net_free(&m);
        }
    }
    ad_set_threads(0);
}
END_TEST

/* Two sweeps in one fused step: the first updated the weights, so the step fails and says why;
 * clipping cannot be fused. */
START_TEST(misuse_refused)
{
    net m;
    net_make(&m, AD_F64);
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.05);
    optim *o = optim_new(m.p, 4, &c, NULL, 0);
    ck_assert_int_eq(optim_fuse(o, true), AD_OK);
    ad_graph *g = ad_graph_new();
    ad_node *loss = loss_of(g, &m, AD_F64, false);
    optim_zero_grad(o);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    ck_assert_int_eq(optim_step(o), AD_ERR_ARG);
    ck_assert_str_eq(optim_error(o),
                     "optim_step: step 0: parameter 0 ('W1') was updated during a backward sweep that a "
                     "later sweep then added to; a fused optimizer (optim_fuse) takes one backward per step");
    /* turned off, the next step is an ordinary one */
    ck_assert_int_eq(optim_fuse(o, false), AD_OK);
    optim_zero_grad(o);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    ck_assert_int_eq(optim_step(o), AD_OK);
    ad_graph_free(g);
    optim_free(o);

    c.clip_norm = 1;
    o = optim_new(m.p, 4, &c, NULL, 0);
    ck_assert_int_eq(optim_fuse(o, true), AD_ERR_ARG);
    ck_assert_str_eq(optim_error(o), "optim_fuse: the configuration clips gradients (clip_norm 1, clip_value 0), "
                                     "which needs every gradient before any update");
    ck_assert_int_eq(optim_fuse(NULL, true), AD_ERR_NULL);
    optim_free(o);
    net_free(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_fuse");
    TCase *tc = tcase_create("fuse");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, fused_same_bits, 0, 7 * 4);
    tcase_add_test(tc, handed_exactly_when_safe);
    tcase_add_test(tc, misuse_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
