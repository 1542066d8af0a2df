/* Learning-rate schedules (values by hand at chosen steps, their checks, and their use inside
 * an optimizer) and gradient clipping by global norm and by value. */
#include "testutil.h"
#include "optim.h"
#include <math.h>
#include <string.h>

#define TOL 1e-12

static void lr_is(const optim_schedule *s, double base, int64_t t, double want)
{
    double got = optim_schedule_lr(s, base, t);
    ck_assert_msg(fabs(got - want) <= TOL, "schedule %d at step %lld: %.17g, want %.17g", (int)s->kind, (long long)t,
                  got, want);
}

START_TEST(constant_step_exponential)
{
    optim_schedule c = {0}; /* the zero value is a constant rate */
    ck_assert_int_eq(optim_schedule_check(&c, NULL, 0), AD_OK);
    lr_is(&c, 0.1, 0, 0.1);
    lr_is(&c, 0.1, 1000000, 0.1);

    /* 0.1 * 0.5^floor(t/3): steps 0-2 at 0.1, 3-5 at 0.05, 6 at 0.025 */
    optim_schedule st = {.kind = OPTIM_SCHED_STEP, .step_size = 3, .gamma = 0.5};
    ck_assert_int_eq(optim_schedule_check(&st, NULL, 0), AD_OK);
    lr_is(&st, 0.1, 0, 0.1);
    lr_is(&st, 0.1, 2, 0.1);
    lr_is(&st, 0.1, 3, 0.05);
    lr_is(&st, 0.1, 5, 0.05);
    lr_is(&st, 0.1, 6, 0.025);

    /* 0.1 * 0.9^t: 0.1, 0.09, 0.081, ... 0.9^10 = 0.3486784401 */
    optim_schedule ex = {.kind = OPTIM_SCHED_EXPONENTIAL, .gamma = 0.9};
    lr_is(&ex, 0.1, 0, 0.1);
    lr_is(&ex, 0.1, 1, 0.09);
    lr_is(&ex, 0.1, 2, 0.081);
    lr_is(&ex, 0.1, 10, 0.03486784401);
    ck_assert(isnan(optim_schedule_lr(NULL, 0.1, 0)));
    ck_assert(isnan(optim_schedule_lr(&ex, 0.1, -1)));
}
END_TEST

START_TEST(cosine_and_warmup)
{
    /* base 1, eta_min 0, t_max 4: (1 + cos(pi t/4))/2 = 1, 1/2 + sqrt(2)/4, 1/2, 1/2 - sqrt(2)/4,
     * 0, and eta_min after t_max (no rise again) */
    optim_schedule cs = {.kind = OPTIM_SCHED_COSINE, .t_max = 4};
    ck_assert_int_eq(optim_schedule_check(&cs, NULL, 0), AD_OK);
    double r2 = sqrt(2.0) / 4;
    lr_is(&cs, 1, 0, 1);
    lr_is(&cs, 1, 1, 0.5 + r2);
    lr_is(&cs, 1, 2, 0.5);
    lr_is(&cs, 1, 3, 0.5 - r2);
    lr_is(&cs, 1, 4, 0);
    lr_is(&cs, 1, 9, 0);
    /* with eta_min 0.2: 0.2 + 0.8 (1 + cos(pi/2))/2 = 0.6 at t = 2, 0.2 from t = 4 on */
    cs.eta_min = 0.2;
    lr_is(&cs, 1, 2, 0.6);
    lr_is(&cs, 1, 7, 0.2);

    /* warm-up of 4 steps from 0.25 on a constant: 0.25 + 0.75 t/4 = 0.25, 0.4375, 0.625,
     * 0.8125, then 1 */
    optim_schedule w = {.warmup = 4, .warmup_start = 0.25};
    ck_assert_int_eq(optim_schedule_check(&w, NULL, 0), AD_OK);
    lr_is(&w, 1, 0, 0.25);
    lr_is(&w, 1, 1, 0.4375);
    lr_is(&w, 1, 2, 0.625);
    lr_is(&w, 1, 3, 0.8125);
    lr_is(&w, 1, 4, 1);
    lr_is(&w, 1, 50, 1);

    /* warm-up of 2 from 0, then cosine over 2: 0, 0.5 | 1, 0.5, 0: the cosine starts at its top
     * when the warm-up ends */
    optim_schedule wc = {.kind = OPTIM_SCHED_COSINE, .t_max = 2, .warmup = 2};
    lr_is(&wc, 1, 0, 0);
    lr_is(&wc, 1, 1, 0.5);
    lr_is(&wc, 1, 2, 1);
    lr_is(&wc, 1, 3, 0.5);
    lr_is(&wc, 1, 4, 0);
}
END_TEST

static void sched_refused(const optim_schedule *s, const char *want)
{
    char err[256] = "";
    ck_assert_int_ne(optim_schedule_check(s, err, sizeof err), AD_OK);
    ck_assert_msg(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
}

START_TEST(schedule_checks)
{
    sched_refused(NULL, "schedule is NULL");
    sched_refused(&(optim_schedule){.kind = (optim_sched_kind)9}, "unknown schedule kind 9");
    sched_refused(&(optim_schedule){.kind = OPTIM_SCHED_STEP, .gamma = 0.5}, "step: step_size = 0, want > 0");
    sched_refused(&(optim_schedule){.kind = OPTIM_SCHED_STEP, .step_size = 2}, "step: gamma = 0, want a finite factor");
    sched_refused(&(optim_schedule){.kind = OPTIM_SCHED_EXPONENTIAL, .gamma = -1}, "exponential: gamma = -1");
    sched_refused(&(optim_schedule){.kind = OPTIM_SCHED_COSINE}, "cosine: t_max = 0");
    sched_refused(&(optim_schedule){.kind = OPTIM_SCHED_COSINE, .t_max = 5, .eta_min = -1}, "eta_min = -1");
    sched_refused(&(optim_schedule){.warmup = -1}, "warmup = -1");
    sched_refused(&(optim_schedule){.warmup = 5, .warmup_start = 1.5}, "warmup_start = 1.5");
    /* a decay factor with the kind left at constant is a forgotten .kind */
    sched_refused(&(optim_schedule){.gamma = 0.5}, "constant: gamma = 0.5, step_size = 0");
    sched_refused(&(optim_schedule){.kind = OPTIM_SCHED_EXPONENTIAL, .gamma = 0.9, .t_max = 3}, "forgot .kind?");
    /* an unchecked schedule never divides by zero */
    ck_assert(isnan(optim_schedule_lr(&(optim_schedule){.kind = OPTIM_SCHED_STEP}, 1, 5)));
    ck_assert(isnan(optim_schedule_lr(&(optim_schedule){.kind = OPTIM_SCHED_COSINE}, 1, 5)));
}
END_TEST

START_TEST(optimizer_follows_its_schedule)
{
    /* GD on L = x^2/2 (g = x) from 1 with rates 0.1, 0.05, 0.025 (step decay by 0.5 each step):
     * 1 - 0.1 = 0.9;  0.9 - 0.05*0.9 = 0.855;  0.855 - 0.025*0.855 = 0.833625 */
    ad_tensor *x = ad_param_new("x", AD_F64, AD_SHAPE0);
    ad_tensor_set(x, 0, 1);
    optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
    c.schedule = (optim_schedule){.kind = OPTIM_SCHED_STEP, .step_size = 1, .gamma = 0.5};
    optim *o = optim_new(&x, 1, &c, NULL, 0);
    ck_assert_ptr_nonnull(o);
    static const double rate[3] = {0.1, 0.05, 0.025}, want[3] = {0.9, 0.855, 0.833625};
    for (int s = 0; s < 3; s++) {
        ck_assert(fabs(optim_lr(o) - rate[s]) <= TOL);
        ((double *)ad_tensor_grad_data(x))[0] = ad_tensor_get(x, 0);
        ck_assert_int_eq(optim_step(o), AD_OK);
        ck_assert(fabs(ad_tensor_get(x, 0) - want[s]) <= TOL);
    }
    /* set_lr changes the base; the schedule keeps scaling it: 1 * 0.5^3 */
    ck_assert_int_eq(optim_set_lr(o, 1), AD_OK);
    ck_assert_double_eq(optim_lr(o), 0.125);
    optim_free(o);
    ad_tensor_free(x);
}
END_TEST

/* A float64 parameter whose gradient buffer holds g. */
static ad_tensor *with_grad(ad_shape s, const double *g)
{
    ad_tensor *p = ad_param_new(NULL, AD_F64, s);
    ck_assert_ptr_nonnull(p);
    for (int64_t i = 0; i < ad_tensor_size(p); i++) ((double *)ad_tensor_grad_data(p))[i] = g[i];
    return p;
}

START_TEST(clip_by_global_norm)
{
    /* gradients (3, 4) and (12): global norm sqrt(9 + 16 + 144) = 13.  max_norm 6.5 scales by
     * 6.5 / (13 + 1e-6) = 0.49999996153846449704 -> (1.4999998846153934911,
     * 1.9999998461538579882, 5.9999995384615739645) */
    ad_tensor *a = with_grad(AD_SHAPE(2), (double[]){3, 4}), *b = with_grad(AD_SHAPE(1), (double[]){12});
    ad_tensor *ps[] = {a, b};
    double norm = 0;
    ck_assert_int_eq(optim_clip_grad_norm(ps, 2, 20, &norm, NULL, 0), AD_OK);
    ck_assert_double_eq(norm, 13);
    /* under the limit: untouched, bit for bit */
    ck_assert_double_eq(ad_tensor_grad_get(a, 0), 3);
    ck_assert_double_eq(ad_tensor_grad_get(b, 0), 12);
    ck_assert_int_eq(optim_clip_grad_norm(ps, 2, 6.5, &norm, NULL, 0), AD_OK);
    ck_assert_double_eq(norm, 13);
    ck_assert(fabs(ad_tensor_grad_get(a, 0) - 1.4999998846153934911) <= TOL);
    ck_assert(fabs(ad_tensor_grad_get(a, 1) - 1.9999998461538579882) <= TOL);
    ck_assert(fabs(ad_tensor_grad_get(b, 0) - 5.9999995384615739645) <= TOL);
    ad_tensor_free(a);
    ad_tensor_free(b);

    /* gradients near 1e200 overflow a plain sum of squares; the norm is still 1e200 sqrt(2) */
    ad_tensor *big = with_grad(AD_SHAPE(2), (double[]){1e200, -1e200});
    ck_assert_int_eq(optim_clip_grad_norm(&big, 1, 1, &norm, NULL, 0), AD_OK);
    ck_assert(fabs(norm / (1e200 * sqrt(2.0)) - 1) <= 1e-15);
    ck_assert(fabs(ad_tensor_grad_get(big, 0) - sqrt(0.5)) <= 1e-12);
    ck_assert(fabs(ad_tensor_grad_get(big, 1) + sqrt(0.5)) <= 1e-12);
    ad_tensor_free(big);

    /* a non-finite gradient: reported, nothing scaled */
    char err[256];
    ad_tensor *bad = with_grad(AD_SHAPE(2), (double[]){1, INFINITY});
    ck_assert_int_eq(optim_clip_grad_norm(&bad, 1, 1, &norm, err, sizeof err), AD_ERR_NUMERIC);
    ck_assert(isinf(norm));
    ck_assert_ptr_nonnull(strstr(err, "optim_clip_grad_norm: the gradient norm is inf"));
    ck_assert_double_eq(ad_tensor_grad_get(bad, 0), 1);
    ((double *)ad_tensor_grad_data(bad))[1] = NAN;
    ck_assert_int_eq(optim_clip_grad_norm(&bad, 1, 1, NULL, NULL, 0), AD_ERR_NUMERIC);
    ck_assert_int_eq(optim_clip_grad_norm(&bad, 1, 0, NULL, err, sizeof err), AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err, "max_norm = 0"));
    ck_assert_int_eq(optim_clip_grad_norm(NULL, 1, 1, NULL, err, sizeof err), AD_ERR_NULL);
    ad_tensor *plain = ad_tensor_new(AD_F64, AD_SHAPE(2));
    ck_assert_int_eq(optim_clip_grad_norm(&plain, 1, 1, NULL, err, sizeof err), AD_ERR_NULL);
    ck_assert_ptr_nonnull(strstr(err, "parameter 0 is NULL or has no gradient buffer"));
    ad_tensor_free(plain);
    ad_tensor_free(bad);
}
END_TEST

START_TEST(clip_by_value)
{
    /* clamp to [-1, 1]: (-3, 0.5, 2, NaN) -> (-1, 0.5, 1, NaN); float32 the same */
    ad_tensor *a = with_grad(AD_SHAPE(4), (double[]){-3, 0.5, 2, NAN});
    ad_tensor *f = ad_param_new(NULL, AD_F32, AD_SHAPE(2));
    ((float *)ad_tensor_grad_data(f))[0] = -0.25f;
    ((float *)ad_tensor_grad_data(f))[1] = 7.0f;
    ad_tensor *ps[] = {a, f};
    ck_assert_int_eq(optim_clip_grad_value(ps, 2, 1, NULL, 0), AD_OK);
    ck_assert_double_eq(ad_tensor_grad_get(a, 0), -1);
    ck_assert_double_eq(ad_tensor_grad_get(a, 1), 0.5);
    ck_assert_double_eq(ad_tensor_grad_get(a, 2), 1);
    ck_assert(isnan(ad_tensor_grad_get(a, 3)));
    ck_assert_double_eq(ad_tensor_grad_get(f, 0), -0.25);
    ck_assert_double_eq(ad_tensor_grad_get(f, 1), 1);
    char err[128];
    ck_assert_int_eq(optim_clip_grad_value(ps, 2, -1, err, sizeof err), AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err, "optim_clip_grad_value: max_value = -1"));
    ad_tensor_free(a);
    ad_tensor_free(f);
}
END_TEST

START_TEST(optimizer_clips_before_its_update)
{
    /* GD, lr 1, clip_norm 1, gradient (3, 4) of norm 5: the step is (3, 4) / (5 + 1e-6), i.e.
     * theta = -(0.59999988000002400, 0.79999984000003200) from 0 */
    ad_tensor *p = with_grad(AD_SHAPE(2), (double[]){3, 4});
    optim_cfg c = optim_defaults(OPTIM_GD, 1);
    c.clip_norm = 1;
    optim *o = optim_new(&p, 1, &c, NULL, 0);
    ck_assert_int_eq(optim_step(o), AD_OK);
    ck_assert(fabs(ad_tensor_get(p, 0) + 0.59999988000002400) <= TOL);
    ck_assert(fabs(ad_tensor_get(p, 1) + 0.79999984000003200) <= TOL);
    /* clip_value 0.5 as well: clamp to (0.5, 0.5) first, norm 0.7071 < 1, step -(0.5, 0.5) */
    c.clip_value = 0.5;
    optim *o2 = optim_new(&p, 1, &c, NULL, 0);
    ((double *)ad_tensor_grad_data(p))[0] = 3;
    ((double *)ad_tensor_grad_data(p))[1] = 4;
    ck_assert_int_eq(optim_step(o2), AD_OK);
    ck_assert(fabs(ad_tensor_get(p, 0) + 1.09999988000002400) <= TOL);
    ck_assert(fabs(ad_tensor_get(p, 1) + 1.29999984000003200) <= TOL);
    /* a NaN gradient: the step is refused and does not count */
    ((double *)ad_tensor_grad_data(p))[0] = NAN;
    ck_assert_int_eq(optim_step(o2), AD_ERR_NUMERIC);
    ck_assert_int_eq(optim_steps(o2), 1);
    ck_assert(fabs(ad_tensor_get(p, 0) + 1.09999988000002400) <= TOL);
    ck_assert_ptr_nonnull(strstr(optim_error(o2), "optim_step: step 1: optim_clip_grad_norm: the gradient norm is NaN"));
    optim_free(o);
    optim_free(o2);
    ad_tensor_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_sched");
    TCase *tc = tcase_create("schedules_and_clipping");
    tcase_add_test(tc, constant_step_exponential);
    tcase_add_test(tc, cosine_and_warmup);
    tcase_add_test(tc, schedule_checks);
    tcase_add_test(tc, optimizer_follows_its_schedule);
    tcase_add_test(tc, clip_by_global_norm);
    tcase_add_test(tc, clip_by_value);
    tcase_add_test(tc, optimizer_clips_before_its_update);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
