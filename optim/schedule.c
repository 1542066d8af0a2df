/* Learning-rate schedules.  Each rate is a closed form in the step count, not a running
 * product (PyTorch's chainable schedulers multiply lr by gamma each step), so a resumed run
 * computes the very same doubles as an uninterrupted one. */
#include "optim_impl.h"
#include <math.h>

static const double PI = 3.14159265358979323846;

double optim_schedule_lr(const optim_schedule *s, double base, int64_t t)
{
    if (!s || t < 0) return NAN;
    if (t < s->warmup) {
        double f0 = s->warmup_start;
        return base * (f0 + (1 - f0) * (double)t / (double)s->warmup);
    }
    t -= s->warmup;
    switch (s->kind) {
    case OPTIM_SCHED_CONSTANT: return base;
    case OPTIM_SCHED_STEP:
        if (s->step_size <= 0) return NAN; /* unchecked schedule: never divide by zero */
        return base * pow(s->gamma, (double)(t / s->step_size));
    case OPTIM_SCHED_EXPONENTIAL: return base * pow(s->gamma, (double)t);
    case OPTIM_SCHED_COSINE:
        if (s->t_max <= 0) return NAN;
        if (t >= s->t_max) return s->eta_min;
        return s->eta_min + (base - s->eta_min) * (1 + cos(PI * (double)t / (double)s->t_max)) / 2;
    }
    return NAN;
}

static const char *sched_name(optim_sched_kind k)
{
    switch (k) {
    case OPTIM_SCHED_CONSTANT: return "constant";
    case OPTIM_SCHED_STEP: return "step";
    case OPTIM_SCHED_EXPONENTIAL: return "exponential";
    case OPTIM_SCHED_COSINE: return "cosine";
    }
    return NULL;
}

ad_status optim_schedule_check(const optim_schedule *s, char *err, size_t errlen)
{
    if (!s) return optim_fail(AD_ERR_NULL, err, errlen, "optim_schedule_check: schedule is NULL");
    const char *k = sched_name(s->kind);
    if (!k) return optim_fail(AD_ERR_ARG, err, errlen, "optim_schedule_check: unknown schedule kind %d", (int)s->kind);
    if (s->warmup < 0 || !(s->warmup_start >= 0 && s->warmup_start <= 1))
        return optim_fail(AD_ERR_ARG, err, errlen,
                          "optim_schedule_check: %s: warmup = %lld, warmup_start = %g, want warmup >= 0 and warmup_start "
                          "in [0, 1]", k, (long long)s->warmup, s->warmup_start);
    if (s->warmup > OPTIM_MAX_STEPS || s->step_size > OPTIM_MAX_STEPS || s->t_max > OPTIM_MAX_STEPS)
        return optim_fail(AD_ERR_ARG, err, errlen,
                          "optim_schedule_check: %s: warmup = %lld, step_size = %lld, t_max = %lld, want at most "
                          "OPTIM_MAX_STEPS = %lld", k, (long long)s->warmup, (long long)s->step_size, (long long)s->t_max,
                          (long long)OPTIM_MAX_STEPS);
    bool decays = s->kind == OPTIM_SCHED_STEP || s->kind == OPTIM_SCHED_EXPONENTIAL;
    if (decays && !(s->gamma > 0 && isfinite(s->gamma)))
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_schedule_check: %s: gamma = %g, want a finite factor > 0", k,
                          s->gamma);
    if (s->kind == OPTIM_SCHED_STEP && s->step_size <= 0)
        return optim_fail(AD_ERR_ARG, err, errlen, "optim_schedule_check: step: step_size = %lld, want > 0",
                          (long long)s->step_size);
    if (s->kind == OPTIM_SCHED_COSINE && (s->t_max <= 0 || !(s->eta_min >= 0 && isfinite(s->eta_min))))
        return optim_fail(AD_ERR_ARG, err, errlen,
                          "optim_schedule_check: cosine: t_max = %lld, eta_min = %g, want t_max > 0 and eta_min >= 0",
                          (long long)s->t_max, s->eta_min);
    /* A field of another kind set here is most likely a forgotten `kind`: say so. */
    if ((!decays && s->gamma != 0) || (s->kind != OPTIM_SCHED_STEP && s->step_size != 0) ||
        (s->kind != OPTIM_SCHED_COSINE && (s->t_max != 0 || s->eta_min != 0)))
        return optim_fail(AD_ERR_ARG, err, errlen,
                          "optim_schedule_check: %s: gamma = %g, step_size = %lld, t_max = %lld, eta_min = %g: a field "
                          "of another schedule kind is set (forgot .kind?)", k, s->gamma, (long long)s->step_size,
                          (long long)s->t_max, s->eta_min);
    return AD_OK;
}
