/*
 * optim.h — optimizers over any list of parameters: the lecture's gradient descent (with its
 * stopping rule), minibatch SGD and momentum, plus Nesterov, Adam, AdamW, RMSprop, learning-rate
 * schedules, gradient clipping and checkpoints.
 *
 * Tutorial.  Minimise f(w) = (w - 3)^2 by gradient descent with the lecture's stopping rule:
 *
 *     static ad_node *loss(ad_graph *g, void *user) {
 *         ad_node *w = ad_param(g, (ad_tensor *)user);
 *         return ad_pow_scalar(g, ad_add_scalar(g, w, -3.0), 2.0);
 *     }
 *     ad_tensor *w = ad_param_new("w", AD_F64, AD_SHAPE0);
 *     optim_cfg c = optim_defaults(OPTIM_GD, 0.1);          // eta = 0.1
 *     char err[256];
 *     optim *o = optim_new(&w, 1, &c, err, sizeof err);
 *     optim_result r;
 *     if (optim_gd(o, loss, w, &(optim_gd_cfg){.eps = 1e-12, .max_iter = 1000}, &r) != AD_OK)
 *         fprintf(stderr, "%s\n", optim_error(o));          // "optim_gd: not converged ..."
 *     printf("w = %g after %lld iterations\n", ad_tensor_get(w, 0), (long long)r.iters);
 *     optim_free(o);
 *     ad_tensor_free(w);
 *
 * Or drive the steps yourself (any loss, any data):
 *
 *     for (...) {
 *         ad_graph_reset(g);
 *         optim_zero_grad(o);
 *         ad_backward(g, build_loss(g, ...));
 *         optim_step(o);
 *     }
 *
 * Configuration.  Start from optim_defaults(kind, lr) — it fills the lecture's and PyTorch's
 * defaults (momentum 0.9; Adam beta1 0.9, beta2 0.999, eps 1e-8; ...) — and change fields.
 * Every field is used as given; optim_new refuses values that make no sense (a zero beta2 or
 * eps for Adam, OPTIM_MOMENTUM with momentum 0) with a message, so a half-filled struct
 * literal fails loudly instead of training with zeros.
 *
 * Momentum.  OPTIM_MOMENTUM means the lecture's form: v <- -eta*g + gamma*v, theta <- theta + v.
 * PyTorch's form (b <- gamma*b + g, theta <- theta - eta*b) is cfg.form = OPTIM_FORM_PYTORCH.
 * With a constant eta both give the same trajectory (v = -eta*b); when eta changes they differ:
 * the lecture's velocity remembers each gradient scaled by the rate of its own step, PyTorch
 * rescales the whole remembered sum by today's rate.  docs/optimizers.md shows both.
 *
 * Arithmetic.  Updates are computed in the parameter's precision (float32 in float32, as
 * torch.optim does); state buffers (velocity, Adam's moments) have the parameter's dtype and
 * shape.  They are allocated by optim_new, so optim_step allocates nothing.
 *
 * Ownership.  The optimizer keeps pointers to the parameters (made with ad_param_new), which
 * must outlive it; it owns its state.  optim_free frees the state, never the parameters.
 *
 * Errors.  No function aborts, exits or prints.  Functions return an ad_status; the
 * message (naming the function and the values) is in optim_error(o), or in the err buffer
 * given to functions that have no optimizer.  "Not converged" is an error status
 * (AD_NOT_CONVERGED) whose message carries the last loss, like the slide's exception.
 */
#ifndef OPTIM_H
#define OPTIM_H

#include "ad.h"

AD_BEGIN_DECLS

/* ------------------------------------------------------------------------------------------
 * Learning-rate schedules: a value type evaluated at each step (a pure function of the step
 * count, so a resumed run gets the same rates bit for bit).  The zero value is a constant
 * rate.
 */
typedef enum {
    OPTIM_SCHED_CONSTANT = 0, /* base */
    OPTIM_SCHED_STEP,         /* base * gamma^floor(t / step_size) */
    OPTIM_SCHED_EXPONENTIAL,  /* base * gamma^t */
    OPTIM_SCHED_COSINE        /* eta_min + (base - eta_min) (1 + cos(pi t / t_max)) / 2, then eta_min */
} optim_sched_kind;

/* The largest step count an optimizer reaches and the largest step_size, t_max and warmup a
 * schedule takes: 2^53, the last count a double (Adam's bias correction, the schedules'
 * ratios) holds exactly, and far from int64_t overflow. */
#define OPTIM_MAX_STEPS ((int64_t)1 << 53)

/* A learning-rate schedule; see optim_schedule_lr for the formulas. */
typedef struct {
    optim_sched_kind kind;  /* which formula */
    int64_t step_size;    /* STEP: steps between decays (> 0) */
    double gamma;         /* STEP, EXPONENTIAL: the decay factor (> 0) */
    int64_t t_max;        /* COSINE: steps from base to eta_min (> 0) */
    double eta_min;       /* COSINE: the final rate (>= 0) */
    int64_t warmup;       /* linear warm-up steps before the schedule starts (0: none) */
    double warmup_start;  /* the rate factor at warm-up step 0, in [0, 1] */
} optim_schedule;

/* The learning rate of step t (0 for the first update) for base rate base.  During a warm-up
 * of W steps the rate rises linearly, base * (f0 + (1 - f0) t / W) with f0 = warmup_start;
 * from step W on, the schedule runs on t - W, so base is reached exactly at the end of the
 * warm-up.  Cosine stays at eta_min after t_max (PyTorch's closed form would rise again).
 * Returns NaN for a NULL schedule or a negative t; does not validate (optim_schedule_check). */
double optim_schedule_lr(const optim_schedule *s, double base, int64_t t);

/* Checks a schedule's fields for its kind (step_size > 0, gamma > 0, ...) and returns
 * AD_OK, or AD_ERR_ARG with a message naming the field and its value in err (which may
 * be NULL). */
ad_status optim_schedule_check(const optim_schedule *s, char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------
 * Gradient clipping over a list of parameters (in place on their gradient buffers).
 */

/* Scales all gradients by max_norm / (norm + 1e-6) when their global L2 norm (over every
 * element of every parameter, summed in double) exceeds max_norm, as PyTorch's
 * clip_grad_norm_.  Writes the norm before clipping to *norm (may be NULL).  A non-finite norm
 * leaves the gradients untouched and returns AD_ERR_NUMERIC; NULL or gradient-less
 * parameters and max_norm <= 0 give AD_ERR_NULL / AD_ERR_ARG.  Messages go to err. */
ad_status optim_clip_grad_norm(ad_tensor *const *params, int n, double max_norm, double *norm,
                               char *err, size_t errlen);

/* Clamps every gradient element into [-max_value, max_value] (NaN stays NaN), as PyTorch's
 * clip_grad_value_.  max_value must be > 0. */
ad_status optim_clip_grad_value(ad_tensor *const *params, int n, double max_value,
                                char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------
 * Optimizers.
 */
typedef enum {
    OPTIM_GD = 0,     /* theta <- theta - eta g (the lecture's gradient descent / SGD step) */
    OPTIM_MOMENTUM,   /* the lecture's momentum (or PyTorch's form, or Nesterov) */
    OPTIM_ADAM,       /* Adam with bias correction; weight_decay is L2 (added to g) */
    OPTIM_ADAMW,      /* Adam with decoupled weight decay: theta <- theta (1 - eta lambda) first */
    OPTIM_RMSPROP     /* RMSprop (PyTorch's, not centered), optional momentum */
} optim_kind;

/* Which momentum recursion OPTIM_MOMENTUM runs. */
typedef enum {
    OPTIM_FORM_LECTURE = 0, /* v <- -eta g + gamma v;  theta <- theta + v */
    OPTIM_FORM_PYTORCH      /* b <- gamma b + g;       theta <- theta - eta b */
} optim_momentum_form;

/* An optimizer's configuration: start from optim_defaults(kind, lr). */
typedef struct {
    optim_kind kind;        /* the update rule */
    double lr;              /* eta, the base rate (the schedule scales it), >= 0 */
    double momentum;        /* gamma: OPTIM_MOMENTUM in (0, 1), RMSprop in [0, 1); else 0 */
    bool nesterov;          /* OPTIM_MOMENTUM: Nesterov's look-ahead step */
    optim_momentum_form form; /* OPTIM_MOMENTUM: the lecture's recursion or PyTorch's */
    double weight_decay;    /* lambda >= 0: L2 (g += lambda theta), decoupled for AdamW */
    double beta1;           /* Adam(W): the first moment's decay, in [0, 1) */
    double beta2;           /* Adam(W): the second moment's decay, in (0, 1) */
    double alpha;           /* RMSprop's smoothing constant, in (0, 1) */
    double eps;             /* Adam(W), RMSprop: > 0, added to the root of the second moment */
    double clip_norm;       /* > 0: optim_step clips the global gradient norm first; 0: off */
    double clip_value;      /* > 0: optim_step clamps gradient elements first; 0: off */
    optim_schedule schedule;/* zero: constant rate */
} optim_cfg;

/* An optimizer: the parameter list, the configuration and the state buffers (opaque). */
typedef struct optim optim;

/* "gd", "momentum", "adam", "adamw", "rmsprop", or "unknown". */
const char *optim_kind_name(optim_kind k);

/* A configuration of the given kind and base rate with the usual defaults: OPTIM_MOMENTUM
 * gets gamma = 0.9 in the lecture's form; Adam and AdamW beta1 = 0.9, beta2 = 0.999,
 * eps = 1e-8 (PyTorch's, so trajectories can be compared), AdamW weight_decay = 0.01;
 * RMSprop alpha = 0.99, eps = 1e-8.  Everything else is 0/off: no weight decay, no clipping,
 * a constant schedule. */
optim_cfg optim_defaults(optim_kind kind, double lr);

/* A new optimizer over n parameters (each made with ad_param_new, no duplicates), with its
 * state buffers allocated now and zeroed (v_0 = 0).  Returns NULL on a bad argument or out of
 * memory, with a message in err (may be NULL) naming the field or parameter and its value. */
optim *optim_new(ad_tensor *const *params, int n, const optim_cfg *cfg, char *err, size_t errlen);

/* Frees the optimizer and its state (never the parameters); NULL is ignored. */
void optim_free(optim *o);

/* One update of every parameter from its gradient buffer, at the rate
 * optim_schedule_lr(schedule, lr, t) where t = optim_steps(o), after clipping if the
 * configuration asks for it; then the step count grows by 1.  Allocates nothing.  Returns
 * AD_OK, AD_ERR_NULL, AD_ERR_NUMERIC if clipping found a non-finite norm, or AD_ERR_ARG once
 * the count has reached OPTIM_MAX_STEPS (then nothing is updated and the step does not
 * count). */
ad_status optim_step(optim *o);

/* Zeroes every parameter's gradient buffer (backward accumulates into them). */
void optim_zero_grad(optim *o);

/* Fuses the update into the backward sweep (on true) or stops fusing it (false).  While on,
 * the sweep hands each weight's gradient block to the optimizer as a linear layer finishes it
 * (ad_param_set_grad_ready), and the optimizer updates that block of the weight and its state
 * while the gradient is still in cache; optim_step then updates only the parameters the sweep
 * did not hand (see ad_param_set_grad_ready for when it does) and counts the step.  The
 * results are the same bits as unfused steps.  The parameters' values change during
 * ad_backward, so run exactly one backward between optim_zero_grad and optim_step (a second
 * sweep that adds to a handed gradient makes optim_step fail with AD_ERR_ARG, naming the
 * parameter), and read a weight's old values before the backward if you need them.  Refused
 * (AD_ERR_ARG, nothing changed) when the configuration clips gradients, which needs every
 * gradient before any update.  Allocates when first turned on, never in a step. */
ad_status optim_fuse(optim *o, bool on);

/* Sets the base rate (the schedule scales it from the next step on).  Returns AD_ERR_ARG
 * for a negative or non-finite rate. */
ad_status optim_set_lr(optim *o, double lr);

/* The rate the next step will use (the schedule applied to the base rate); NaN for NULL. */
double optim_lr(const optim *o);

/* Updates made so far (restored by optim_load); 0 for NULL. */
int64_t optim_steps(const optim *o);

/* The configuration in force (after optim_load, the checkpoint's). */
optim_cfg optim_get_cfg(const optim *o);

/* Number of parameters, and parameter i (NULL out of range). */
int optim_num_params(const optim *o);
/* Parameter i of the optimizer (NULL out of range). */
ad_tensor *optim_param(const optim *o, int i);

/* A state buffer of parameter i by its name — "velocity" (lecture momentum), "momentum_buffer"
 * (PyTorch momentum, RMSprop momentum), "exp_avg", "exp_avg_sq" (Adam), "square_avg"
 * (RMSprop) — or NULL if this optimizer keeps none of that name.  Owned by the optimizer; for
 * reading (a teacher printing v) or for tests. */
ad_tensor *optim_state(const optim *o, int i, const char *name);

/* The message of the last failed call on o, or "" if none failed. */
const char *optim_error(const optim *o);

/* ------------------------------------------------------------------------------------------
 * Drivers: the lecture's algorithms as loops that own their graph.
 */

/* Builds a scalar loss on g (reset before each call) from ad_param(g, p) leaves of the
 * optimizer's parameters; returns NULL or leaves an error in g on failure. */
typedef ad_node *(*optim_loss_fn)(ad_graph *g, void *user);

/* The same for a minibatch: batch holds j example indices in [0, n). */
typedef ad_node *(*optim_batch_loss_fn)(ad_graph *g, const int64_t *batch, int64_t j,
                                        void *user);

/* Called after each update with the loss the driver just computed (see optim_result.loss);
 * returning false stops the driver with AD_STOPPED (e.g. early stopping on a validation
 * set).  May read parameters and optim_steps(o). */
typedef bool (*optim_step_fn)(optim *o, double loss, void *user);

/* What a driver did: updates made by this call and the last loss it computed. */
typedef struct {
    int64_t iters;          /* updates made */
    double loss;            /* the last loss computed */
} optim_result;

/* How optim_gd runs: the lecture's epsilon and i_max. */
typedef struct {
    double eps;             /* epsilon: stop when 0 <= L(theta_i) - L(theta_{i+1}) < eps */
    int64_t max_iter;       /* i_max: updates before "not converged" (>= 1) */
    optim_step_fn on_step;  /* may be NULL */
} optim_gd_cfg;

/* Gradient descent with the lecture's stopping rule, using o's update (plain GD for
 * OPTIM_GD; any other kind works too).  Each iteration computes L(theta_i) and its gradient
 * once, updates, and compares with L(theta_{i+1}).  Returns AD_OK when the loss fell by
 * less than eps — theta_{i+1} is in the parameters and res->loss = L(theta_{i+1}), its
 * gradient in the parameters' buffers; a rise does not count as convergence (with a too
 * large eta the slide's test would "converge" on a rise).  After max_iter updates without
 * that, returns AD_NOT_CONVERGED with the last loss in res->loss and in the message.
 * AD_ERR_LOSS if the callback or backward fails, AD_ERR_NUMERIC if the loss becomes
 * inf or NaN (res->loss holds it), AD_ERR_NOMEM if memory runs out (in the graph too).
 * Allocates a graph when it starts, and nothing per iteration once the graph's arena has
 * grown to the loss's size.  res may be NULL. */
ad_status optim_gd(optim *o, optim_loss_fn loss, void *user, const optim_gd_cfg *cfg,
                   optim_result *res);

/* How optim_sgd runs: data set size, minibatch size, steps, seed. */
typedef struct {
    int64_t n;              /* N, examples in the data set (>= 1) */
    int64_t batch;          /* J, the minibatch size, 1 <= J (<= N without replacement) */
    int64_t steps;          /* updates this call makes */
    uint64_t seed;          /* picks the minibatches (see optim_sampler) */
    bool replacement;       /* draw each minibatch independently, with replacement */
    optim_step_fn on_step;  /* may be NULL */
} optim_sgd_cfg;

/* The lecture's minibatch SGD: `steps` updates, each on the gradient of the loss of a random
 * minibatch B of J examples, with o's update rule (OPTIM_GD for the slide; momentum and the
 * others work too).  The minibatch of update t is a function of (seed, N, J, t) alone with
 * t = optim_steps(o), so a run resumed from a checkpoint draws the same minibatches as the
 * uninterrupted one.  res->loss is the loss of the last minibatch, before its update.  Errors
 * as optim_gd. */
ad_status optim_sgd(optim *o, optim_batch_loss_fn loss, void *user, const optim_sgd_cfg *cfg,
                    optim_result *res);

/* ------------------------------------------------------------------------------------------
 * Minibatch sampling, for the SGD driver and for hand-written loops.
 *
 * Without replacement (the default), the data is visited in epochs: epoch e is a permutation
 * of 0..N-1 drawn from (seed, e), cut into floor(N/J) minibatches of J; the N mod J examples
 * left over are skipped in that epoch (they differ each epoch), so every minibatch has
 * exactly J examples.  With replacement, each minibatch is J independent uniform draws from
 * (seed, t).  Either way batch t can be asked for in any order.
 */
typedef struct optim_sampler optim_sampler;

/* A sampler over n examples in minibatches of j (j <= n unless with replacement), or NULL
 * with a message in err. */
optim_sampler *optim_sampler_new(int64_t n, int64_t j, uint64_t seed, bool replacement,
                                 char *err, size_t errlen);
/* The indices of minibatch t (j of them), valid until the next call on s; NULL for a NULL
 * sampler or t < 0.  Reshuffles only when t enters a new epoch. */
const int64_t *optim_sampler_batch(optim_sampler *s, int64_t t);
/* Frees the sampler; NULL is ignored. */
void optim_sampler_free(optim_sampler *s);

/* ------------------------------------------------------------------------------------------
 * Checkpoints (safetensors, next to the model's file).  The file holds every state buffer
 * ("state.<i>.<name>", e.g. "state.0.exp_avg") and, as metadata, the step count, the whole
 * configuration (floats printed with 17 digits, so they read back exactly) and the number of
 * parameters.  Parameters themselves are the model's to save.
 */

/* Writes o's state to path atomically (a temporary file renamed over path).  AD_ERR_IO
 * (or AD_ERR_NOMEM) with the reason in optim_error(o) on failure. */
ad_status optim_save(optim *o, const char *path);

/* Restores the state, step count and configuration saved by optim_save into o, which must
 * have the same kind, number of parameters and buffer shapes and dtypes, and whose buffers must
 * hold finite numbers, second moments >= 0 (AD_ERR_FORMAT otherwise, naming what differs); like PyTorch's load_state_dict, the saved hyperparameters
 * replace o's.  Nothing changes unless the whole file fits.  Resuming from a checkpoint then
 * reproduces the uninterrupted run bit for bit (given the same gradients).  A file that cannot
 * be read (missing, corrupt, or memory ran out while reading) is AD_ERR_IO. */
ad_status optim_load(optim *o, const char *path);

AD_END_DECLS
#endif
