/* The gradient reduction hook of optim_step (optim_set_grad_reduce) and the flat-buffer
 * helpers a communicator fills it with: a fake hook that plays two ranks holding the same
 * gradient, called exactly once per step and before clipping; a failing hook that leaves
 * every parameter, state buffer and the step count alone; the flat layout (mixed dtypes,
 * padding) through flatten and unflatten; and optim_grad_sum's fixed order, whatever the
 * thread count. */
#include "testutil.h"
#include "optim.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Two parameters of different dtypes and odd sizes, so the layout needs its padding: a float32
 * [3] and a float64 [2], gradients set by hand. */
typedef struct {
    ad_tensor *p[2];
} pair;

static pair pair_new(void)
{
    pair q = {{ad_param_new("a", AD_F32, AD_SHAPE(3)), ad_param_new("b", AD_F64, AD_SHAPE(2))}};
    ck_assert_ptr_nonnull(q.p[0]);
    ck_assert_ptr_nonnull(q.p[1]);
    for (int k = 0; k < 3; k++) ad_tensor_set(q.p[0], k, 1.0 + k);
    for (int k = 0; k < 2; k++) ad_tensor_set(q.p[1], k, -1.0 - k);
    return q;
}

static void pair_set_grads(pair *q, double scale)
{
    float *ga = ad_tensor_grad_data(q->p[0]);
    double *gb = ad_tensor_grad_data(q->p[1]);
    ga[0] = (float)(0.5 * scale), ga[1] = (float)(-0.25 * scale), ga[2] = (float)(0.1 * scale);
    gb[0] = 0.3 * scale, gb[1] = -0.7 * scale;
}

static void pair_free(pair *q)
{
    ad_tensor_free(q->p[0]);
    ad_tensor_free(q->p[1]);
}

/* A fake communicator of two ranks that hold the same gradient: it flattens it into both
 * slots of a gathered buffer, as MPI_Allgather would leave it, and sums them. */
typedef struct {
    int calls;
    int n_seen;
    ad_tensor *const *params_seen;
    double *slots; /* 2 strides, 8-aligned */
    size_t stride;
    ad_status fail; /* AD_OK: work; else fail with this status */
    const char *msg;
} fake;

static ad_status fake_reduce(void *ctx, ad_tensor *const *params, int n, char *err, size_t errlen)
{
    fake *f = ctx;
    f->calls++;
    f->n_seen = n;
    f->params_seen = params;
    if (f->fail != AD_OK) {
        if (f->msg) snprintf(err, errlen, "%s", f->msg);
        return f->fail;
    }
    char *slots = (char *)f->slots;
    for (int r = 0; r < 2; r++) {
        ad_status st = optim_grad_flatten(params, n, slots + (size_t)r * f->stride, f->stride, err, errlen);
        if (st != AD_OK) return st;
    }
    return optim_grad_sum(params, n, slots, 2, f->stride, NULL, err, errlen);
}

static fake fake_new(pair *q)
{
    fake f = {.stride = optim_grad_bytes(q->p, 2)};
    f.slots = calloc(2, f.stride);
    ck_assert_ptr_nonnull(f.slots);
    return f;
}

START_TEST(the_layout_pads_each_block_to_8_bytes)
{
    pair q = pair_new();
    ck_assert_uint_eq(optim_grad_bytes(q.p, 2), 16 + 16); /* 3 floats padded to 16, 2 doubles */
    ck_assert_uint_eq(optim_grad_bytes(q.p, 1), 16);
    ck_assert_uint_eq(optim_grad_bytes(NULL, 2), 0);
    ad_tensor *with_null[2] = {q.p[0], NULL};
    ck_assert_uint_eq(optim_grad_bytes(with_null, 2), 0);
    pair_set_grads(&q, 1);
    unsigned char buf[32];
    memset(buf, 0xff, sizeof buf);
    char err[256];
    ck_assert_int_eq(optim_grad_flatten(q.p, 2, buf, sizeof buf, err, sizeof err), AD_OK);
    float a[3];
    double b[2];
    memcpy(a, buf, sizeof a);
    memcpy(b, buf + 16, sizeof b);
    ck_assert(a[0] == 0.5f && a[1] == -0.25f && a[2] == (float)0.1);
    ck_assert(b[0] == 0.3 && b[1] == -0.7);
    for (int k = 12; k < 16; k++) ck_assert_int_eq(buf[k], 0); /* the padding is defined */
    /* back, into zeroed gradients */
    ad_tensor_zero_grad(q.p[0]);
    ad_tensor_zero_grad(q.p[1]);
    ck_assert_int_eq(optim_grad_unflatten(q.p, 2, buf, sizeof buf, err, sizeof err), AD_OK);
    ck_assert(ad_tensor_grad_get(q.p[0], 2) == (double)(float)0.1 && ad_tensor_grad_get(q.p[1], 1) == -0.7);
    pair_free(&q);
}
END_TEST

START_TEST(the_helpers_refuse_bad_buffers_with_a_message)
{
    pair q = pair_new();
    char err[256];
    double buf[8];
    ck_assert_int_eq(optim_grad_flatten(q.p, 2, buf, 31, err, sizeof err), AD_ERR_ARG);
    ck_assert_msg(strstr(err, "optim_grad_flatten: a buffer of 31 bytes, the 2 gradients need 32"), "%s", err);
    ck_assert_int_eq(optim_grad_unflatten(q.p, 2, NULL, 32, err, sizeof err), AD_ERR_NULL);
    ck_assert_msg(strstr(err, "optim_grad_unflatten: the buffer is NULL"), "%s", err);
    ck_assert_int_eq(optim_grad_flatten(q.p, 0, buf, sizeof buf, err, sizeof err), AD_ERR_ARG);
    ck_assert_msg(strstr(err, "n = 0"), "%s", err);
    ad_tensor *plain[1] = {ad_tensor_new(AD_F64, AD_SHAPE(2))};
    ck_assert_int_eq(optim_grad_flatten(plain, 1, buf, sizeof buf, err, sizeof err), AD_ERR_NULL);
    ck_assert_msg(strstr(err, "parameter 0 is NULL or has no gradient buffer"), "%s", err);
    ad_tensor_free(plain[0]);
    ck_assert_int_eq(optim_grad_sum(q.p, 2, buf, 0, 32, NULL, err, sizeof err), AD_ERR_ARG);
    ck_assert_msg(strstr(err, "optim_grad_sum: nshards = 0"), "%s", err);
    ck_assert_int_eq(optim_grad_sum(q.p, 2, buf, 1, 36, NULL, err, sizeof err), AD_ERR_ARG);
    ck_assert_msg(strstr(err, "stride 36"), "%s", err);
    ck_assert_int_eq(optim_grad_sum(q.p, 2, (char *)buf + 4, 1, 32, NULL, err, sizeof err), AD_ERR_ARG);
    double w[1] = {NAN};
    ck_assert_int_eq(optim_grad_sum(q.p, 2, buf, 1, 32, w, err, sizeof err), AD_ERR_ARG);
    ck_assert_msg(strstr(err, "weights[0] = nan") || strstr(err, "weights[0] = -nan"), "%s", err);
    ck_assert_int_eq(optim_set_grad_reduce(NULL, fake_reduce, NULL), AD_ERR_NULL);
    pair_free(&q);
}
END_TEST

/* An optimizer of configuration c over a new pair, with the fake hook set. */
typedef struct {
    pair q;
    fake f;
    optim *o;
} rig;

static rig *rig_new(optim_cfg c)
{
    rig *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    r->q = pair_new();
    char err[256];
    r->o = optim_new(r->q.p, 2, &c, err, sizeof err);
    ck_assert_msg(r->o != NULL, "%s", err);
    r->f = fake_new(&r->q);
    ck_assert_int_eq(optim_set_grad_reduce(r->o, fake_reduce, &r->f), AD_OK);
    return r;
}

static void rig_free(rig *r)
{
    optim_free(r->o);
    free(r->f.slots);
    pair_free(&r->q);
    free(r);
}

/* GD with lr 0.5 through a hook that doubles the gradient: theta - 0.5 * 2 g = theta - g. */
START_TEST(the_hook_runs_once_per_step_on_every_parameter)
{
    rig *r = rig_new(optim_defaults(OPTIM_GD, 0.5));
    ad_tensor **p = r->q.p;
    for (int s = 1; s <= 3; s++) {
        float a0 = (float)ad_tensor_get(p[0], 0);
        double b1 = ad_tensor_get(p[1], 1);
        pair_set_grads(&r->q, 1);
        ck_assert_int_eq(optim_step(r->o), AD_OK);
        ck_assert_int_eq(r->f.calls, s);
        ck_assert_int_eq(r->f.n_seen, 2);
        ck_assert(r->f.params_seen[0] == p[0] && r->f.params_seen[1] == p[1]);
        ck_assert(ad_tensor_grad_get(p[1], 1) == -1.4); /* the hook's sum is what stays */
        ck_assert((float)ad_tensor_get(p[0], 0) == a0 - 0.5f * 1.0f);
        ck_assert(ad_tensor_get(p[1], 1) == b1 - 0.5 * -1.4);
    }
    /* removed: the gradient is used as it is */
    ck_assert_int_eq(optim_set_grad_reduce(r->o, NULL, &r->f), AD_OK);
    double b0 = ad_tensor_get(p[1], 0);
    pair_set_grads(&r->q, 1);
    ck_assert_int_eq(optim_step(r->o), AD_OK);
    ck_assert_int_eq(r->f.calls, 3);
    ck_assert(ad_tensor_get(p[1], 0) == b0 - 0.5 * 0.3);
    rig_free(r);
}
END_TEST

/* Clipping sees the combined gradient: with max_norm between |g| and |2g|, the doubled
 * gradient is clipped; the single one would not be. */
START_TEST(clipping_sees_the_reduced_gradient)
{
    pair q = pair_new();
    char err[256];
    pair_set_grads(&q, 1);
    double norm1;
    ck_assert_int_eq(optim_clip_grad_norm(q.p, 2, 1e9, &norm1, err, sizeof err), AD_OK);
    pair_free(&q);
    optim_cfg c = optim_defaults(OPTIM_GD, 1.0);
    c.clip_norm = 1.5 * norm1;
    rig *r = rig_new(c);
    pair_set_grads(&r->q, 1);
    ck_assert_int_eq(optim_step(r->o), AD_OK);
    double g = ad_tensor_grad_get(r->q.p[1], 0), want = 0.6 * c.clip_norm / (2 * norm1 + 1e-6);
    ck_assert_msg(fabs(g - want) < 1e-12, "gradient %.17g after clipping, want %.17g", g, want);
    rig_free(r);
}
END_TEST

/* A failing hook: optim_step returns its status with its message and changes nothing. */
START_TEST(a_failing_hook_changes_nothing)
{
    rig *r = rig_new(optim_defaults(OPTIM_MOMENTUM, 0.1));
    ad_tensor **p = r->q.p;
    pair_set_grads(&r->q, 1);
    ck_assert_int_eq(optim_step(r->o), AD_OK); /* a velocity that is not zero */
    r->f.fail = AD_ERR_IO, r->f.msg = "fake_reduce: rank 1 is gone";
    double before[5], vel[5];
    for (int k = 0; k < 5; k++) {
        before[k] = ad_tensor_get(p[k / 3], k % 3);
        vel[k] = ad_tensor_get(optim_state(r->o, k / 3, "velocity"), k % 3);
    }
    pair_set_grads(&r->q, 1);
    ck_assert_int_eq(optim_step(r->o), AD_ERR_IO);
    ck_assert_str_eq(optim_error(r->o), "optim_step: step 1: fake_reduce: rank 1 is gone");
    r->f.msg = NULL;
    ck_assert_int_eq(optim_step(r->o), AD_ERR_IO);
    ck_assert_str_eq(optim_error(r->o), "optim_step: step 1: the gradient reduction hook failed without a message");
    ck_assert_int_eq(r->f.calls, 3);
    ck_assert_int_eq(optim_steps(r->o), 1);
    for (int k = 0; k < 5; k++) {
        ck_assert(ad_tensor_get(p[k / 3], k % 3) == before[k]);
        ck_assert(ad_tensor_get(optim_state(r->o, k / 3, "velocity"), k % 3) == vel[k]);
    }
    rig_free(r);
}
END_TEST

/* A fused update (optim_fuse) happens inside the backward sweep, before any hook could run:
 * the two refuse each other, whichever comes first, and change nothing. */
START_TEST(fusing_and_a_hook_refuse_each_other)
{
    rig *r = rig_new(optim_defaults(OPTIM_MOMENTUM, 0.1));
    ck_assert_int_eq(optim_fuse(r->o, true), AD_ERR_ARG);
    ck_assert_msg(strstr(optim_error(r->o), "optim_fuse: a gradient reduction hook is set"), "%s", optim_error(r->o));
    ck_assert_int_eq(optim_set_grad_reduce(r->o, NULL, NULL), AD_OK);
    ck_assert_int_eq(optim_fuse(r->o, true), AD_OK);
    ck_assert_int_eq(optim_set_grad_reduce(r->o, fake_reduce, &r->f), AD_ERR_ARG);
    ck_assert_msg(strstr(optim_error(r->o), "optim_set_grad_reduce: the update is fused"), "%s", optim_error(r->o));
    pair_set_grads(&r->q, 1);
    ck_assert_int_eq(optim_step(r->o), AD_OK);
    ck_assert_int_eq(r->f.calls, 0);
    ck_assert_int_eq(optim_fuse(r->o, false), AD_OK);
    ck_assert_int_eq(optim_set_grad_reduce(r->o, fake_reduce, &r->f), AD_OK);
    rig_free(r);
}
END_TEST

/* The hook belongs to the optimizer object, not to its saved state: it stays through a load. */
START_TEST(the_hook_stays_through_optim_load)
{
    rig *r = rig_new(optim_defaults(OPTIM_ADAM, 0.01));
    char dir[512], path[600];
    scratch_dir_make(dir, sizeof dir, "test_optim_reduce");
    snprintf(path, sizeof path, "%s/o.safetensors", dir);
    pair_set_grads(&r->q, 1);
    ck_assert_int_eq(optim_step(r->o), AD_OK);
    ck_assert_msg(optim_save(r->o, path) == AD_OK, "%s", optim_error(r->o));
    ck_assert_msg(optim_load(r->o, path) == AD_OK, "%s", optim_error(r->o));
    ck_assert_int_eq(optim_step(r->o), AD_OK);
    ck_assert_int_eq(r->f.calls, 2);
    scratch_dir_remove(dir);
    rig_free(r);
}
END_TEST

/* optim_grad_sum against the sum written out left to right in float: the same bits, with 1
 * and 2 threads (the parameter is large enough to be split), and one shard of weight 1
 * reproduces the shard exactly, -0.0 included. */
START_TEST(the_sum_is_left_to_right_whatever_the_threads)
{
    enum { N = 200003, R = 3 };
    ad_tensor *p = ad_param_new("w", AD_F32, AD_SHAPE(N));
    size_t stride = optim_grad_bytes(&p, 1);
    ck_assert_uint_eq(stride, (N * 4 + 7) / 8 * 8);
    double *mem = malloc(R * stride);
    ck_assert_ptr_nonnull(mem);
    ad_rng rng;
    ad_rng_seed(&rng, 7);
    for (int r = 0; r < R; r++) {
        float *s = (float *)(void *)((char *)mem + (size_t)r * stride);
        for (int k = 0; k < N; k++) s[k] = (float)(ad_rng_normal(&rng) * pow(10, (k % 7) - 3));
    }
    ((float *)mem)[5] = -0.0f;
    const double w[R] = {0.3, 1.0 / 3, 0.37};
    char err[256];
    int old = ad_get_threads();
    float *got[2];
    for (int t = 0; t < 2; t++) {
        ad_set_threads(t + 1);
        ck_assert_int_eq(optim_grad_sum(&p, 1, mem, R, stride, w, err, sizeof err), AD_OK);
        got[t] = malloc(N * sizeof(float));
        memcpy(got[t], ad_tensor_grad_data(p), N * sizeof(float));
    }
    ad_set_threads(old);
    ck_assert(memcmp(got[0], got[1], N * sizeof(float)) == 0);
    for (int k = 0; k < N; k++) {
        volatile float acc = (float)w[0] * ((float *)mem)[k];
        for (int r = 1; r < R; r++) {
            volatile float prod = (float)w[r] * ((float *)(void *)((char *)mem + (size_t)r * stride))[k];
            acc = acc + prod;
        }
        ck_assert_msg(memcmp(&got[0][k], (const void *)&acc, sizeof acc) == 0, "element %d: %.9g, want %.9g", k,
                      got[0][k], (double)acc);
    }
    const double one = 1.0;
    ck_assert_int_eq(optim_grad_sum(&p, 1, mem, 1, stride, &one, err, sizeof err), AD_OK);
    ck_assert(memcmp(ad_tensor_grad_data(p), mem, N * sizeof(float)) == 0);
    ck_assert(signbit(((float *)ad_tensor_grad_data(p))[5]));
    free(got[0]);
    free(got[1]);
    free(mem);
    ad_tensor_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_reduce");
    TCase *tc = tcase_create("reduce");
    tcase_add_test(tc, the_layout_pads_each_block_to_8_bytes);
    tcase_add_test(tc, the_helpers_refuse_bad_buffers_with_a_message);
    tcase_add_test(tc, the_hook_runs_once_per_step_on_every_parameter);
    tcase_add_test(tc, clipping_sees_the_reduced_gradient);
    tcase_add_test(tc, a_failing_hook_changes_nothing);
    tcase_add_test(tc, fusing_and_a_hook_refuse_each_other);
    tcase_add_test(tc, the_hook_stays_through_optim_load);
    tcase_add_test(tc, the_sum_is_left_to_right_whatever_the_threads);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
