/* Memory: optim_step allocates nothing, the drivers allocate only when they start (not per
 * step), and every allocation the optim functions make can fail and is reported as
 * AD_ERR_NOMEM (or NULL) with nothing leaked (the sanitizer build checks the leaks). */
#include "testutil.h"
#include "optim.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Two parameters with a gradient in their buffers. */
static void make_params(ad_tensor **ps)
{
    ps[0] = ad_param_new("w", AD_F32, AD_SHAPE(4, 3));
    ps[1] = ad_param_new("b", AD_F64, AD_SHAPE(3));
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(ps[i]);
        for (int64_t k = 0; k < ad_tensor_size(ps[i]); k++) {
            ad_tensor_set(ps[i], k, 0.1 * (double)k);
            if (i == 0) ((float *)ad_tensor_grad_data(ps[i]))[k] = (float)(1 + k);
            else ((double *)ad_tensor_grad_data(ps[i]))[k] = -1.0 - (double)k;
        }
    }
}

START_TEST(step_allocates_nothing)
{
    ad_tensor *ps[2];
    make_params(ps);
    for (int kind = OPTIM_GD; kind <= OPTIM_RMSPROP; kind++) {
        optim_cfg c = optim_defaults((optim_kind)kind, 0.01);
        if (kind == OPTIM_RMSPROP) c.momentum = 0.5;
        c.clip_norm = 1;
        c.clip_value = 2;
        c.schedule = (optim_schedule){.kind = OPTIM_SCHED_COSINE, .t_max = 5, .warmup = 2};
        optim *o = optim_new(ps, 2, &c, NULL, 0);
        ck_assert_ptr_nonnull(o);
        long before = ad_alloc_count();
        for (int s = 0; s < 20; s++) {
            ck_assert_int_eq(optim_step(o), AD_OK);
            optim_zero_grad(o);
        }
        ck_assert_int_eq(ad_alloc_count(), before);
        optim_free(o);
    }
    ad_tensor_free(ps[0]);
    ad_tensor_free(ps[1]);
}
END_TEST

typedef struct { ad_tensor *theta; } problem;

static ad_node *batch_loss(ad_graph *g, const int64_t *batch, int64_t j, void *user)
{
    problem *p = user;
    double d[8];
    for (int64_t k = 0; k < j; k++) d[k] = (double)batch[k];
    ad_node *diff = ad_sub(g, ad_param(g, p->theta), ad_const(g, AD_F64, AD_SHAPE(j), d));
    return ad_mean(g, ad_mul(g, diff, diff));
}

static ad_node *full_loss(ad_graph *g, void *user)
{
    static const int64_t all[4] = {0, 1, 2, 3};
    return batch_loss(g, all, 4, user);
}

/* Allocations made by one optim_sgd call of `steps` steps. */
static long sgd_allocations(int64_t steps)
{
    problem p = {ad_param_new("theta", AD_F64, AD_SHAPE0)};
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.01);
    optim *o = optim_new(&p.theta, 1, &c, NULL, 0);
    long before = ad_alloc_count();
    ck_assert_int_eq(optim_sgd(o, batch_loss, &p, &(optim_sgd_cfg){.n = 8, .batch = 4, .steps = steps, .seed = 1}, NULL),
                     AD_OK);
    long used = ad_alloc_count() - before;
    optim_free(o);
    ad_tensor_free(p.theta);
    return used;
}

START_TEST(drivers_allocate_only_when_they_start)
{
    /* the graph's arena and the sampler are set up by the first step and reused: 3 steps and
     * 300 steps (75 epochs of reshuffling) cost the same allocations */
    ck_assert_int_eq(sgd_allocations(3), sgd_allocations(300));
}
END_TEST

START_TEST(every_allocation_failure_is_reported)
{
    char dir[] = "/tmp/test_optim_mem_XXXXXX", path[64], err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/optim.safetensors", dir);
    ad_tensor *ps[2];
    make_params(ps);
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.01);

    /* optim_new: fail the k-th allocation for k = 1, 2, ... until it succeeds */
    int k = 1;
    optim *o;
    for (;; k++) {
        ad_fail_alloc_at(k);
        err[0] = 0;
        o = optim_new(ps, 2, &c, err, sizeof err);
        if (o) break;
        ck_assert_msg(strstr(err, "optim_new: out of memory") != NULL, "k = %d: %s", k, err);
    }
    ad_fail_alloc_at(0);
    ck_assert_int_ge(k, 6); /* the object, two arrays, four state tensors (each its own allocations) */
    ck_assert_int_eq(optim_step(o), AD_OK);

    /* optim_save, then optim_load: a failure leaves the optimizer as it was */
    for (k = 1;; k++) {
        ad_fail_alloc_at(k);
        ad_status st = optim_save(o, path);
        if (st == AD_OK) break;
        ck_assert_msg(st == AD_ERR_NOMEM, "k = %d: %s", k, optim_error(o));
    }
    ad_fail_alloc_at(0);
    ck_assert_int_gt(k, 1);
    optim *fresh = optim_new(ps, 2, &c, NULL, 0);
    for (k = 1;; k++) {
        ad_fail_alloc_at(k);
        ad_status st = optim_load(fresh, path);
        if (st == AD_OK) break;
        /* ad_safetensors_load reports no status, only a message: a failed read is IO */
        ck_assert_msg(st == AD_ERR_NOMEM || st == AD_ERR_IO, "k = %d: %s", k, optim_error(fresh));
        ck_assert_int_eq(optim_steps(fresh), 0);
    }
    ad_fail_alloc_at(0);
    ck_assert_int_gt(k, 1);
    ck_assert_int_eq(optim_steps(fresh), 1);
    optim_free(fresh);

    /* the drivers: the graph, the sampler, and the arena inside the loss */
    problem p = {ad_param_new("theta", AD_F64, AD_SHAPE0)};
    optim *po = optim_new(&p.theta, 1, &c, NULL, 0);
    for (k = 1;; k++) {
        ad_fail_alloc_at(k);
        ad_status st = optim_sgd(po, batch_loss, &p, &(optim_sgd_cfg){.n = 8, .batch = 4, .steps = 2}, NULL);
        if (st == AD_OK) break;
        ck_assert_msg(st == AD_ERR_NOMEM, "k = %d: %s", k, optim_error(po));
    }
    ck_assert_int_gt(k, 2); /* the graph and the sampler at least */
    for (k = 1;; k++) {
        ad_fail_alloc_at(k);
        ad_status st = optim_gd(po, full_loss, &p, &(optim_gd_cfg){.eps = 1e300, .max_iter = 2}, NULL);
        if (st == AD_OK) break;
        ck_assert_msg(st == AD_ERR_NOMEM, "k = %d: %s", k, optim_error(po));
    }
    ck_assert_int_gt(k, 1);
    for (k = 1;; k++) {
        ad_fail_alloc_at(k);
        optim_sampler *s = optim_sampler_new(10, 3, 1, false, err, sizeof err);
        if (s) {
            optim_sampler_free(s);
            break;
        }
        ck_assert_str_eq(err, "optim_sampler_new: out of memory for 10 indices");
    }
    ad_fail_alloc_at(0);
    optim_free(po);
    ad_tensor_free(p.theta);
    optim_free(o);
    ad_tensor_free(ps[0]);
    ad_tensor_free(ps[1]);
    remove(path);
    rmdir(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_memory");
    TCase *tc = tcase_create("memory");
    tcase_add_test(tc, step_allocates_nothing);
    tcase_add_test(tc, drivers_allocate_only_when_they_start);
    tcase_add_test(tc, every_allocation_failure_is_reported);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
