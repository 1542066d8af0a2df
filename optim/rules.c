/* The update rules, one small loop each (rules_loop.h), applied by optim_step.  Each element is
 * updated in its parameter's own precision; the formulas follow the slides and, operation for
 * operation, torch.optim's single-tensor code, so runs agree with PyTorch's to rounding.  */
#include "optim_impl.h"
#include "ad_parallel.h"
#include <math.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

/* What one step needs besides the buffers, computed once per step. */
typedef struct {
    double lr, wd, mom;
    double b1, b2, step_size, bc2_sqrt; /* Adam: step_size = lr / (1 - b1^t), sqrt(1 - b2^t) */
    double alpha, eps;
} coeffs;

/* One parameter's buffers. */
typedef struct {
    void *p, *g, *s0, *s1;
    int64_t n;
} bufs;

/* The loops below take their switches (dtype, form, ...) as arguments and are always inlined
 * into call sites that pass constants, so each variant compiles to its own branch-free loop,
 * which the compiler can vectorise; tested inside the loop they cost about 4x. */
#if defined(__GNUC__)
#define RULE static inline __attribute__((always_inline)) void
#else
#define RULE static inline void
#endif

#define T float
#define SQRT sqrtf
#include "rules_loop.h"
#undef T
#undef SQRT
#define T double
#define SQRT sqrt
#include "rules_loop.h"
#undef T
#undef SQRT

/* Runs kind's rule on one parameter, choosing the specialised loop. */
AD_VECTOR_CLONES static void apply(const optim_cfg *cfg, const bufs *b, const coeffs *c, bool f32)
{
    bool lec = cfg->form == OPTIM_FORM_LECTURE, nest = cfg->nesterov;
    switch (cfg->kind) {
    case OPTIM_GD:
        f32 ? rule_gd_float(b, c) : rule_gd_double(b, c);
        break;
    case OPTIM_MOMENTUM:
        if (f32) {
            if (lec) nest ? rule_momentum_float(b, c, true, true) : rule_momentum_float(b, c, true, false);
            else nest ? rule_momentum_float(b, c, false, true) : rule_momentum_float(b, c, false, false);
        } else {
            if (lec) nest ? rule_momentum_double(b, c, true, true) : rule_momentum_double(b, c, true, false);
            else nest ? rule_momentum_double(b, c, false, true) : rule_momentum_double(b, c, false, false);
        }
        break;
    case OPTIM_ADAM:
    case OPTIM_ADAMW:
        if (cfg->kind == OPTIM_ADAMW) f32 ? rule_adam_float(b, c, true) : rule_adam_double(b, c, true);
        else f32 ? rule_adam_float(b, c, false) : rule_adam_double(b, c, false);
        break;
    case OPTIM_RMSPROP:
        if (cfg->momentum > 0) f32 ? rule_rmsprop_float(b, c, true) : rule_rmsprop_double(b, c, true);
        else f32 ? rule_rmsprop_float(b, c, false) : rule_rmsprop_double(b, c, false);
        break;
    }
}

/* Clips as configured; a non-finite norm stops the step before anything is updated. */
static ad_status clip(optim *o)
{
    char why[200];
    if (o->cfg.clip_value > 0 && optim_clip_grad_value(o->params, o->n, o->cfg.clip_value, why, sizeof why) != AD_OK)
        return optim_failo(o, AD_ERR_ARG, "optim_step: %s", why);
    if (o->cfg.clip_norm > 0) {
        ad_status st = optim_clip_grad_norm(o->params, o->n, o->cfg.clip_norm, NULL, why, sizeof why);
        if (st != AD_OK)
            return optim_failo(o, st, "optim_step: step %lld: %s", (long long)o->step, why);
    }
    return AD_OK;
}

/* One step's work, split across threads by element: the elements of all parameters in order
 * form one index space [0, total).  Every element's update is independent of the others, so
 * the result is the same for any split. */
typedef struct {
    const optim *o;
    coeffs c;
} step_job;

/* Elements per thread below which waking another thread costs more than it saves. */
enum { STEP_GRAIN = 32768 };

/* State that decays geometrically toward 0 (the velocity of a weight whose input is always 0,
 * as Fashion-MNIST's border pixels are) spends hundreds of steps among the denormal numbers,
 * where x86 takes a slow microcode assist for every operation that reads or makes
 * one: the batch-8 epoch's updates took 3.0 s instead of 0.66 s.  So the update runs with
 * denormals flushed to zero (MXCSR's FTZ and DAZ, set for this loop only and restored; other
 * CPUs keep IEEE behaviour).  Only values below 1.2e-38 (float32) or 2.2e-308 (float64) are
 * affected, far below anything that moves a parameter. */
static unsigned flush_denormals_begin(void)
{
#ifdef HAVE_MXCSR
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040); /* FTZ (bit 15): results; DAZ (bit 6): inputs */
    return old;
#else
    return 0;
#endif
}

static void flush_denormals_end(unsigned old)
{
#ifdef HAVE_MXCSR
    _mm_setcsr(old);
#else
    (void)old;
#endif
}

static void step_range(void *ctx, int64_t lo, int64_t hi)
{
    const step_job *j = ctx;
    unsigned mxcsr = flush_denormals_begin();
    const optim *o = j->o;
    int64_t at = 0; /* index of parameter i's first element */
    for (int i = 0; i < o->n && at < hi; i++) {
        ad_tensor *p = o->params[i];
        int64_t n = ad_tensor_size(p), k0 = lo > at ? lo - at : 0, k1 = hi - at < n ? hi - at : n;
        if (k0 < k1 && !(o->fuse && o->fuse[i].handed)) { /* a handed one is updated already */
            size_t off = (size_t)k0 * ad_dtype_size(ad_tensor_dtype(p));
            char *s0 = o->nslots > 0 ? ad_tensor_data(o->state[i * o->nslots]) : NULL;
            char *s1 = o->nslots > 1 ? ad_tensor_data(o->state[i * o->nslots + 1]) : NULL;
            bufs b = {
                .p = (char *)ad_tensor_data(p) + off, .g = (char *)ad_tensor_grad_data(p) + off,
                .s0 = s0 ? s0 + off : NULL, .s1 = s1 ? s1 + off : NULL, .n = k1 - k0,
            };
            apply(&o->cfg, &b, &j->c, ad_tensor_dtype(p) == AD_F32);
        }
        at += n;
    }
    flush_denormals_end(mxcsr);
}

/* The coefficients of step o->step: the same for optim_step and the fused blocks. */
static coeffs step_coeffs(const optim *o)
{
    const optim_cfg *cfg = &o->cfg;
    coeffs c = {
        .lr = optim_schedule_lr(&cfg->schedule, cfg->lr, o->step),
        .wd = cfg->weight_decay, .mom = cfg->momentum,
        .b1 = cfg->beta1, .b2 = cfg->beta2, .alpha = cfg->alpha, .eps = cfg->eps,
    };
    if (cfg->kind == OPTIM_ADAM || cfg->kind == OPTIM_ADAMW) {
        double t = (double)(o->step + 1); /* Adam counts steps from 1 */
        c.step_size = c.lr / (1 - pow(c.b1, t));
        c.bc2_sqrt = sqrt(1 - pow(c.b2, t));
    }
    return c;
}

ad_status optim_step(optim *o)
{
    if (!o) return AD_ERR_NULL;
    if (o->step >= OPTIM_MAX_STEPS) /* a loaded count at the limit: past it the rate is not exact */
        return optim_failo(o, AD_ERR_ARG, "optim_step: step %lld: the count has reached OPTIM_MAX_STEPS", (long long)o->step);
    if (o->fuse) {
        int over = -1;
        for (int i = 0; i < o->n; i++)
            if ((o->fuse[i].handed = ad_param_take_grad_handed(o->params[i])) < 0 && over < 0) over = i;
        if (over >= 0)
            return optim_failo(o, AD_ERR_ARG,
                               "optim_step: step %lld: parameter %d ('%s') was updated during a backward "
                               "sweep that a later sweep then added to; a fused optimizer (optim_fuse) "
                               "takes one backward per step",
                               (long long)o->step, over, ad_tensor_name(o->params[over]) ? ad_tensor_name(o->params[over]) : "");
    }
    ad_status st = clip(o);
    if (st != AD_OK) return st;
    /* a gradient still marked zero is made real here, once, not by racing threads below */
    for (int i = 0; i < o->n; i++) ad_tensor_grad_data(o->params[i]);
    step_job j = {o, step_coeffs(o)};
    ad_parallel_for(o->total, STEP_GRAIN, step_range, &j);
    o->step++;
    return AD_OK;
}

/* The ready function optim_fuse gives each parameter: the step's rule on one block of it. */
static void fused_block(void *ctx, ad_tensor *p, int64_t offset, int64_t ld, int64_t rows, int64_t cols)
{
    const struct optim_fuse_slot *f = ctx;
    const optim *o = f->o;
    coeffs c = step_coeffs(o);
    size_t es = ad_dtype_size(ad_tensor_dtype(p));
    char *s0 = o->nslots > 0 ? ad_tensor_data(o->state[f->i * o->nslots]) : NULL;
    char *s1 = o->nslots > 1 ? ad_tensor_data(o->state[f->i * o->nslots + 1]) : NULL;
    char *data = ad_tensor_data(p), *grad = ad_tensor_grad_data(p);
    unsigned mxcsr = flush_denormals_begin();
    for (int64_t r = 0; r < rows; r++) {
        size_t off = (size_t)(offset + r * ld) * es;
        bufs b = {.p = data + off, .g = grad + off, .s0 = s0 ? s0 + off : NULL,
                  .s1 = s1 ? s1 + off : NULL, .n = cols};
        apply(&o->cfg, &b, &c, ad_tensor_dtype(p) == AD_F32);
    }
    flush_denormals_end(mxcsr);
}

ad_status optim_fuse(optim *o, bool on)
{
    if (!o) return AD_ERR_NULL;
    if (!on) {
        if (o->fuse)
            for (int i = 0; i < o->n; i++) {
                ad_param_set_grad_ready(o->params[i], NULL, NULL);
                ad_param_take_grad_handed(o->params[i]);
            }
        ad_free(o->fuse);
        o->fuse = NULL;
        return AD_OK;
    }
    if (o->cfg.clip_norm > 0 || o->cfg.clip_value > 0)
        return optim_failo(o, AD_ERR_ARG, "optim_fuse: the configuration clips gradients (clip_norm %g, "
                           "clip_value %g), which needs every gradient before any update",
                           o->cfg.clip_norm, o->cfg.clip_value);
    if (o->fuse) return AD_OK;
    if (!(o->fuse = ad_calloc((size_t)o->n, sizeof *o->fuse)))
        return optim_failo(o, AD_ERR_NOMEM, "optim_fuse: out of memory");
    for (int i = 0; i < o->n; i++) {
        o->fuse[i] = (struct optim_fuse_slot){o, i, 0};
        ad_param_take_grad_handed(o->params[i]); /* a mark from before counts for nothing */
        ad_param_set_grad_ready(o->params[i], fused_block, &o->fuse[i]);
    }
    return AD_OK;
}
