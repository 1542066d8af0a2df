/* The update rules: the first three steps of each optimizer on the quadratic
 * L(theta) = 1/2 (theta_1^2 + 4 theta_2^2) from theta_0 = (1, -0.5), whose gradient is
 * (theta_1, 4 theta_2), against values worked out by hand (float64, to 1e-12); the lecture's
 * and PyTorch's momentum forms side by side; float32 parameters; denormal state flushed inside
 * the step and the caller's floating-point mode left alone; and optim_new's checks. */
#include "testutil.h"
#include "optim.h"
#include <float.h>
#include <math.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#define TOL 1e-12

static const double CURV[2] = {1, 4};

/* A parameter theta = (1, -0.5) of the given dtype. */
static ad_tensor *theta0(ad_dtype t)
{
    ad_tensor *p = ad_param_new("theta", t, AD_SHAPE(2));
    ck_assert_ptr_nonnull(p);
    ad_tensor_set(p, 0, 1.0);
    ad_tensor_set(p, 1, -0.5);
    return p;
}

/* One step of o on the quadratic: the gradient by backward through the graph, then the
 * update. */
static void quad_step(optim *o, ad_graph *g, ad_tensor *th)
{
    ad_graph_reset(g);
    optim_zero_grad(o);
    ad_node *p = ad_param(g, th);
    ad_node *a = ad_const(g, ad_tensor_dtype(th), AD_SHAPE(2), CURV);
    ad_node *L = ad_mul_scalar(g, ad_sum(g, ad_mul(g, a, ad_mul(g, p, p))), 0.5);
    ck_assert_msg(L != NULL, "%s", ad_error(g));
    ck_assert_int_eq(ad_backward(g, L), AD_OK);
    ck_assert_int_eq(optim_step(o), AD_OK);
}

/* Runs three steps of cfg and checks theta after each against want[step][coordinate]. */
static void check_three_steps(const optim_cfg *cfg, const double want[3][2])
{
    ad_tensor *th = theta0(AD_F64);
    ad_graph *g = ad_graph_new();
    char err[256];
    optim *o = optim_new(&th, 1, cfg, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    for (int s = 0; s < 3; s++) {
        quad_step(o, g, th);
        ck_assert_int_eq(optim_steps(o), s + 1);
        for (int k = 0; k < 2; k++)
            ck_assert_msg(fabs(ad_tensor_get(th, k) - want[s][k]) <= TOL, "%s step %d theta_%d = %.17g, want %.17g",
                          optim_kind_name(cfg->kind), s + 1, k + 1, ad_tensor_get(th, k), want[s][k]);
    }
    optim_free(o);
    ad_graph_free(g);
    ad_tensor_free(th);
}

START_TEST(gd_three_steps)
{
    /* theta <- theta - 0.1 (theta_1, 4 theta_2): coordinate factors 0.9 and 0.6.
     * (1, -0.5) -> (0.9, -0.3) -> (0.81, -0.18) -> (0.729, -0.108) */
    static const double want[3][2] = {{0.9, -0.3}, {0.81, -0.18}, {0.729, -0.108}};
    optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
    check_three_steps(&c, want);
}
END_TEST

START_TEST(gd_weight_decay_three_steps)
{
    /* L2 decay lambda = 0.5 adds 0.5 theta to the gradient: factors 1 - 0.1 (1 + 0.5) = 0.85
     * and 1 - 0.1 (4 + 0.5) = 0.55.  theta_1: 0.85, 0.7225, 0.614125;
     * theta_2: -0.5 * 0.55 = -0.275, -0.15125, -0.0831875 */
    static const double want[3][2] = {{0.85, -0.275}, {0.7225, -0.15125}, {0.614125, -0.0831875}};
    optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
    c.weight_decay = 0.5;
    check_three_steps(&c, want);
}
END_TEST

/* The lecture's momentum with eta = 0.1, gamma = 0.9: v <- -0.1 g + 0.9 v, theta <- theta + v.
 *   theta_1: g 1     -> v -0.1                    -> 0.9
 *            g 0.9   -> v -0.09 - 0.09 = -0.18    -> 0.72
 *            g 0.72  -> v -0.072 - 0.162 = -0.234 -> 0.486
 *   theta_2: g -2    -> v 0.2                     -> -0.3
 *            g -1.2  -> v 0.12 + 0.18 = 0.3       -> 0
 *            g 0     -> v 0 + 0.27 = 0.27         -> 0.27 */
static const double MOMENTUM_WANT[3][2] = {{0.9, -0.3}, {0.72, 0.0}, {0.486, 0.27}};

START_TEST(momentum_lecture_three_steps)
{
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.1);
    ck_assert_double_eq(c.momentum, 0.9); /* the slide's gamma is the default */
    ck_assert_int_eq(c.form, OPTIM_FORM_LECTURE);
    check_three_steps(&c, MOMENTUM_WANT);
}
END_TEST

START_TEST(momentum_pytorch_three_steps_and_buffers)
{
    /* PyTorch's form: b <- 0.9 b + g, theta <- theta - 0.1 b; with a constant rate b = -v/eta,
     * so the same theta: b_1: 1, 0.9 + 0.9 = 1.8, 1.62 + 0.72 = 2.34;
     * b_2: -2, -1.8 - 1.2 = -3, -2.7 + 0 = -2.7 */
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.1);
    c.form = OPTIM_FORM_PYTORCH;
    check_three_steps(&c, MOMENTUM_WANT);

    ad_tensor *th = theta0(AD_F64), *th2 = theta0(AD_F64);
    ad_graph *g = ad_graph_new();
    optim *pt = optim_new(&th, 1, &c, NULL, 0);
    c.form = OPTIM_FORM_LECTURE;
    optim *lec = optim_new(&th2, 1, &c, NULL, 0);
    ck_assert_ptr_nonnull(pt);
    ck_assert_ptr_nonnull(lec);
    ck_assert_ptr_null(optim_state(pt, 0, "velocity")); /* the names say which form */
    ck_assert_ptr_null(optim_state(lec, 0, "momentum_buffer"));
    for (int s = 0; s < 3; s++) quad_step(pt, g, th), quad_step(lec, g, th2);
    ad_tensor *b = optim_state(pt, 0, "momentum_buffer"), *v = optim_state(lec, 0, "velocity");
    ck_assert(fabs(ad_tensor_get(b, 0) - 2.34) <= TOL);
    ck_assert(fabs(ad_tensor_get(b, 1) + 2.7) <= TOL);
    ck_assert(fabs(ad_tensor_get(v, 0) + 0.234) <= TOL);
    ck_assert(fabs(ad_tensor_get(v, 1) - 0.27) <= TOL);
    /* the two trajectories agree to rounding under a constant rate (they are not the same
     * floating-point operations, so not bit for bit) */
    for (int k = 0; k < 2; k++) ck_assert(fabs(ad_tensor_get(th, k) - ad_tensor_get(th2, k)) <= 1e-15);
    optim_free(pt);
    optim_free(lec);
    ad_graph_free(g);
    ad_tensor_free(th);
    ad_tensor_free(th2);
}
END_TEST

START_TEST(momentum_forms_differ_when_the_rate_changes)
{
    /* eta halves every step (0.1, 0.05, 0.025) on theta_1 alone (g = theta_1, from 1):
     * lecture: v -0.1 -> 0.9;  v -0.05*0.9 + 0.9*(-0.1) = -0.135 -> 0.765;
     *          v -0.025*0.765 + 0.9*(-0.135) = -0.019125 - 0.1215 = -0.140625 -> 0.624375
     * PyTorch: b 1 -> 0.9;  b 0.9 + 0.9 = 1.8 -> 0.9 - 0.05*1.8 = 0.81;
     *          b 1.62 + 0.81 = 2.43 -> 0.81 - 0.025*2.43 = 0.74925
     * The lecture's velocity keeps each old step at the rate it was taken; PyTorch rescales
     * the remembered gradients by today's smaller rate, so it slows down at once. */
    static const double lecture[3] = {0.9, 0.765, 0.624375}, pytorch[3] = {0.9, 0.81, 0.74925};
    for (int form = 0; form < 2; form++) {
        optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.1);
        c.form = form ? OPTIM_FORM_PYTORCH : OPTIM_FORM_LECTURE;
        c.schedule = (optim_schedule){.kind = OPTIM_SCHED_STEP, .step_size = 1, .gamma = 0.5};
        ad_tensor *th = theta0(AD_F64);
        ad_graph *g = ad_graph_new();
        optim *o = optim_new(&th, 1, &c, NULL, 0);
        ck_assert_ptr_nonnull(o);
        for (int s = 0; s < 3; s++) {
            quad_step(o, g, th);
            double want = form ? pytorch[s] : lecture[s];
            ck_assert_msg(fabs(ad_tensor_get(th, 0) - want) <= TOL, "form %d step %d: %.17g, want %.17g", form, s + 1,
                          ad_tensor_get(th, 0), want);
        }
        optim_free(o);
        ad_graph_free(g);
        ad_tensor_free(th);
    }
}
END_TEST

/* Nesterov, both forms, eta = 0.1, gamma = 0.9.  Lecture: v <- 0.9 v - 0.1 g,
 * theta <- theta + 0.9 v - 0.1 g.
 *   theta_1: g 1      -> v -0.1     -> 1 - 0.09 - 0.1 = 0.81
 *            g 0.81   -> v -0.09 - 0.081 = -0.171     -> 0.81 - 0.1539 - 0.081 = 0.5751
 *            g 0.5751 -> v -0.1539 - 0.05751 = -0.21141 -> 0.5751 - 0.190269 - 0.05751 = 0.327321
 *   theta_2: g -2     -> v 0.2      -> -0.5 + 0.18 + 0.2 = -0.12
 *            g -0.48  -> v 0.18 + 0.048 = 0.228       -> -0.12 + 0.2052 + 0.048 = 0.1332
 *            g 0.5328 -> v 0.2052 - 0.05328 = 0.15192 -> 0.1332 + 0.136728 - 0.05328 = 0.216648
 * PyTorch: b <- 0.9 b + g, theta <- theta - 0.1 (g + 0.9 b): b = -v / 0.1, the same theta. */
static const double NESTEROV_WANT[3][2] = {{0.81, -0.12}, {0.5751, 0.1332}, {0.327321, 0.216648}};

START_TEST(nesterov_three_steps_both_forms)
{
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.1);
    c.nesterov = true;
    check_three_steps(&c, NESTEROV_WANT);
    c.form = OPTIM_FORM_PYTORCH;
    check_three_steps(&c, NESTEROV_WANT);
}
END_TEST

START_TEST(adam_three_steps)
{
    /* lr 0.1, beta1 0.9, beta2 0.999, eps 1e-8; bias corrections 1 - 0.9^t = 0.1, 0.19, 0.271
     * and sqrt(1 - 0.999^t) = 0.0316227766, 0.0447101778, 0.0547448719.
     * step 1: m = 0.1 g, v = 0.001 g^2, so m/0.1 = g and sqrt(v)/sqrt(0.001) = |g|:
     *   theta_1 = 1 - 0.1 * 1/(1 + 1e-8) = 0.9000000009999999900
     *   theta_2 = -0.5 + 0.1 * 2/(2 + 1e-8) = -0.4000000004999999975
     * step 2: g = (0.9000000010, -1.6000000020)
     *   m = 0.9 m + 0.1 g = (0.1800000001, -0.3400000002)
     *   v = 0.999 v + 0.001 g^2 = (0.0018090000018, 0.0065560000064)
     *   theta -= (0.1/0.19) m / (sqrt(v)/0.0447101778 + 1e-8)
     *         = (0.80041222971233739111, -0.30118742062342934015)
     * step 3: g = (0.80041222971, -1.20474968249)
     *   m = (0.24204122306123373821, -0.42647496842937173516)
     *   v = (0.00244785073927127554, 0.00800086580386231276)
     *   theta -= (0.1/0.271) m / (sqrt(v)/0.0547448719 + 1e-8)
     *         = (0.70158627450441421423, -0.20487125097072312915) */
    static const double want[3][2] = {{0.90000000099999999, -0.40000000049999999750},
                                      {0.80041222971233739111, -0.30118742062342934015},
                                      {0.70158627450441421423, -0.20487125097072312915}};
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.1);
    ck_assert_double_eq(c.beta1, 0.9);
    ck_assert_double_eq(c.beta2, 0.999);
    ck_assert_double_eq(c.eps, 1e-8);
    ck_assert_double_eq(c.weight_decay, 0);
    check_three_steps(&c, want);
}
END_TEST

START_TEST(adam_l2_weight_decay_three_steps)
{
    /* Adam's weight_decay is L2: g + 0.1 theta, so step 1 has g = (1.1, -2.2) and
     * theta_1 = 1 - 0.1 * 1.1/(1.1 + 1e-8) = 0.90000000090909090083 (m = 0.11, v = 0.00121);
     * theta_2 = -0.5 + 0.1 * 2.05/(2.05 + 1e-8) = -0.40000000048780487567 (g_2 = -2 - 0.05).
     * step 2: g = 1.1 theta + (0, 3 theta_2) = (0.990000001, -1.640000002) -> theta (0.80041222952678371083,
     *   -0.30118742059816746769); step 3 -> (0.70158627422107154840, -0.20487125093195298853).
     * The direction barely changes: Adam divides the decay term out again, which is why AdamW
     * decouples it. */
    static const double want[3][2] = {{0.90000000090909090083, -0.40000000048780487567},
                                      {0.80041222952678371083, -0.30118742059816746769},
                                      {0.70158627422107154840, -0.20487125093195298853}};
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.1);
    c.weight_decay = 0.1;
    check_three_steps(&c, want);
}
END_TEST

START_TEST(adamw_three_steps)
{
    /* AdamW, lr 0.1, lambda 0.1: theta first shrinks by 1 - 0.1 * 0.1 = 0.99, then Adam's step
     * on the undecayed gradient.
     * step 1: theta_1 = 0.99 - 0.1/(1 + 1e-8) = 0.8900000009999999900;
     *         theta_2 = -0.495 + 0.1 * 2/(2 + 1e-8) = -0.3950000004999999975
     * step 2: g = (0.890000001, -1.580000002), m = (0.1790000001, -0.3380000002),
     *         v = (0.00179110000178, 0.00649240000632)
     *         -> theta = (0.78157185695416035183, -0.29233870322270674400)
     * step 3: -> (0.67510122318920006141, -0.19341560270340202860) */
    static const double want[3][2] = {{0.89000000099999999, -0.39500000049999999750},
                                      {0.78157185695416035183, -0.29233870322270674400},
                                      {0.67510122318920006141, -0.19341560270340202860}};
    optim_cfg c = optim_defaults(OPTIM_ADAMW, 0.1);
    ck_assert_double_eq(c.weight_decay, 0.01); /* PyTorch's AdamW default */
    c.weight_decay = 0.1;
    check_three_steps(&c, want);
}
END_TEST

START_TEST(rmsprop_three_steps)
{
    /* lr 0.01, alpha 0.99, eps 1e-8: s <- 0.99 s + 0.01 g^2, theta -= 0.01 g/(sqrt(s) + 1e-8).
     * step 1: s = (0.01, 0.04), sqrt = (0.1, 0.2): theta_1 = 1 - 0.01/0.10000001 = 0.90000001
     *         (0.900000009999999900), theta_2 = -0.5 + 0.02/0.20000001 = -0.40000000499999975
     * step 2: g = (0.90000001, -1.60000002), s = (0.01800000018, 0.06520000064)
     *         -> theta = (0.83291797526505919018, -0.33733917097922822594)
     * step 3: s = (0.02475752371339644070, 0.08275563523791244827)
     *         -> theta = (0.77998228198235399273, -0.29043321828950746569) */
    static const double want[3][2] = {{0.9000000099999999, -0.40000000499999975},
                                      {0.83291797526505919018, -0.33733917097922822594},
                                      {0.77998228198235399273, -0.29043321828950746569}};
    optim_cfg c = optim_defaults(OPTIM_RMSPROP, 0.01);
    ck_assert_double_eq(c.alpha, 0.99);
    ck_assert_double_eq(c.eps, 1e-8);
    check_three_steps(&c, want);
}
END_TEST

START_TEST(rmsprop_momentum_three_steps)
{
    /* RMSprop with momentum 0.9: b <- 0.9 b + g/(sqrt(s) + eps), theta -= 0.01 b.
     * step 1: b = (9.9999990000001, -9.999999500000025): the same theta as without momentum
     * step 2: b = 0.9 b + g/(sqrt(s) + eps) with s as without momentum = (15.708202573494070982,
     *         -15.266082952077174906) -> theta (0.74291798426505829018, -0.24733917547922800094)
     * step 3: b = (19.000303103065051757, -17.368186722114995064)
     *         -> theta (0.55291495323440777261, -0.07365730825807805030) */
    static const double want[3][2] = {{0.9000000099999999, -0.40000000499999975},
                                      {0.74291798426505829018, -0.24733917547922800094},
                                      {0.55291495323440777261, -0.07365730825807805030}};
    optim_cfg c = optim_defaults(OPTIM_RMSPROP, 0.01);
    c.momentum = 0.9;
    check_three_steps(&c, want);
}
END_TEST

START_TEST(float32_parameters)
{
    /* The update runs in double and is stored as float: after one GD step theta is
     * ((float)0.9, (float)-0.3); the state buffers are float32 too. */
    ad_tensor *th = theta0(AD_F32);
    ad_graph *g = ad_graph_new();
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.1);
    optim *o = optim_new(&th, 1, &c, NULL, 0);
    ck_assert_ptr_nonnull(o);
    quad_step(o, g, th);
    const float *d = ad_tensor_data(th);
    ck_assert_float_eq(d[0], 0.9f);
    ck_assert_float_eq(d[1], -0.3f);
    ad_tensor *v = optim_state(o, 0, "velocity");
    ck_assert_int_eq(ad_tensor_dtype(v), AD_F32);
    ck_assert_float_eq(((const float *)ad_tensor_data(v))[0], -0.1f);
    /* step 2 from the float values: v = -0.1 * 0.9f + 0.9 * (-0.1f), theta = 0.9f + v;
     * the float result is within one float rounding of the exact 0.72 (and -0.3 -> 0) */
    quad_step(o, g, th);
    ck_assert_float_eq_tol(d[0], 0.72f, 2e-7f);
    ck_assert_float_eq_tol(d[1], 0.0f, 2e-7f);
    optim_free(o);
    ad_graph_free(g);
    ad_tensor_free(th);
}
END_TEST

START_TEST(several_parameters_and_accessors)
{
    /* Two parameters of different shapes and dtypes in one optimizer; zero_grad clears both. */
    ad_tensor *a = ad_param_new("a", AD_F64, AD_SHAPE(2, 3)), *b = ad_param_new("b", AD_F32, AD_SHAPE0);
    ad_tensor *ps[] = {a, b};
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.01);
    optim *o = optim_new(ps, 2, &c, NULL, 0);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(optim_num_params(o), 2);
    ck_assert_ptr_eq(optim_param(o, 1), b);
    ck_assert_ptr_null(optim_param(o, 2));
    ck_assert_int_eq(ad_tensor_size(optim_state(o, 0, "exp_avg_sq")), 6);
    ck_assert_int_eq(ad_tensor_dtype(optim_state(o, 1, "exp_avg")), AD_F32);
    ck_assert_ptr_null(optim_state(o, 0, "velocity"));
    ck_assert_ptr_null(optim_state(o, 2, "exp_avg"));
    ((double *)ad_tensor_grad_data(a))[5] = 3;
    ((float *)ad_tensor_grad_data(b))[0] = 4;
    optim_zero_grad(o);
    ck_assert_double_eq(ad_tensor_grad_get(a, 5), 0);
    ck_assert_double_eq(ad_tensor_grad_get(b, 0), 0);
    ck_assert_double_eq(optim_lr(o), 0.01);
    ck_assert_int_eq(optim_set_lr(o, 0.5), AD_OK);
    ck_assert_double_eq(optim_lr(o), 0.5);
    ck_assert_double_eq(optim_get_cfg(o).lr, 0.5);
    ck_assert_int_eq(optim_set_lr(o, -1), AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "optim_set_lr: lr = -1"));
    ck_assert_int_eq(optim_set_lr(o, NAN), AD_ERR_ARG);
    ck_assert_double_eq(optim_lr(o), 0.5);
    optim_free(o);
    optim_free(NULL);
    ck_assert_int_eq(optim_step(NULL), AD_ERR_NULL);
    ck_assert(isnan(optim_lr(NULL)));
    ck_assert_int_eq(optim_steps(NULL), 0);
    ad_tensor_free(a);
    ad_tensor_free(b);
}
END_TEST

/* optim_new(cfg) must fail with a message containing want. */
static void refuses(ad_tensor *const *ps, int n, const optim_cfg *c, const char *want)
{
    char err[256] = "";
    optim *o = optim_new(ps, n, c, err, sizeof err);
    ck_assert_msg(o == NULL, "accepted, want refusal with \"%s\"", want);
    ck_assert_msg(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
}

START_TEST(new_refuses_bad_configurations)
{
    ad_tensor *p = ad_param_new("w", AD_F64, AD_SHAPE(3)), *plain = ad_tensor_new(AD_F64, AD_SHAPE(3));
    ad_tensor *one[] = {p}, *twice[] = {p, p}, *noparam[] = {plain}, *withnull[] = {p, NULL};
    optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
    refuses(NULL, 1, &c, "optim_new: gd: params = ");
    refuses(one, 0, &c, "n = 0, want at least one parameter");
    refuses(one, 1, NULL, "optim_new: cfg is NULL");
    refuses(noparam, 1, &c, "parameter 0 (\"\") has no gradient buffer");
    refuses(twice, 2, &c, "parameters 0 and 1 are the same tensor (\"w\")");
    refuses(withnull, 2, &c, "parameter 1 is NULL");

    c.lr = -0.1;
    refuses(one, 1, &c, "optim_new: gd: lr = -0.1");
    c.lr = INFINITY;
    refuses(one, 1, &c, "lr = inf");
    c = optim_defaults(OPTIM_GD, 0.1);
    c.momentum = 0.9;
    refuses(one, 1, &c, "momentum = 0.9 given, but gd has none (use kind OPTIM_MOMENTUM)");
    c = optim_defaults(OPTIM_GD, 0.1);
    c.nesterov = true;
    refuses(one, 1, &c, "nesterov needs kind OPTIM_MOMENTUM");
    /* half-filled struct literals fail loudly instead of training with zeros */
    refuses(one, 1, &(optim_cfg){.kind = OPTIM_MOMENTUM, .lr = 0.1}, "momentum (gamma) = 0, want 0 < gamma < 1");
    refuses(one, 1, &(optim_cfg){.kind = OPTIM_ADAM, .lr = 0.1}, "beta2 = 0, want 0 <= beta1 < 1 and 0 < beta2 < 1");
    refuses(one, 1, &(optim_cfg){.kind = OPTIM_RMSPROP, .lr = 0.1}, "rmsprop: alpha = 0");
    c = optim_defaults(OPTIM_ADAMW, 0.1);
    c.eps = 0;
    refuses(one, 1, &c, "adamw: eps = 0, want > 0");
    c = optim_defaults(OPTIM_ADAM, 0.1);
    c.beta1 = 1;
    refuses(one, 1, &c, "beta1 = 1");
    c = optim_defaults(OPTIM_MOMENTUM, 0.1);
    c.momentum = 1;
    refuses(one, 1, &c, "momentum (gamma) = 1");
    c.momentum = 0.9;
    c.form = (optim_momentum_form)7;
    refuses(one, 1, &c, "unknown momentum form 7");
    c = optim_defaults(OPTIM_GD, 0.1);
    c.weight_decay = -1;
    refuses(one, 1, &c, "weight_decay = -1");
    c.weight_decay = 0;
    c.clip_norm = -1;
    refuses(one, 1, &c, "clip_norm = -1");
    c.clip_norm = 0;
    c.schedule.kind = OPTIM_SCHED_STEP;
    refuses(one, 1, &c, "optim_new: optim_schedule_check: step: gamma = 0");
    c = (optim_cfg){.kind = (optim_kind)42};
    refuses(one, 1, &c, "optim_new: unknown kind 42");
    ck_assert_str_eq(optim_kind_name((optim_kind)42), "unknown");
    ck_assert_str_eq(ad_status_name(AD_NOT_CONVERGED), "not_converged");
    ck_assert_str_eq(ad_status_name((ad_status)99), "unknown");
    ad_tensor_free(p);
    ad_tensor_free(plain);
}
END_TEST

/* Whether this x86 honours flush-to-zero (valgrind's emulated CPU does not). */
static bool cpu_flushes_denormals(void)
{
#if defined(__SSE__)
    unsigned old = _mm_getcsr();
    _mm_setcsr(old | 0x8040);
    volatile float tiny = FLT_MIN;
    tiny = tiny / 4;
    _mm_setcsr(old);
    return tiny == 0;
#else
    return false;
#endif
}

/* A velocity left to decay (gradient 0 after the first step) shrinks by gamma per step.  Under
 * IEEE arithmetic it never reaches 0: 0.9 times the smallest denormal rounds back to it, so
 * the velocity stays a denormal, and slow, for good.  With the step's flush-to-zero it is 0
 * once below FLT_MIN (~829 steps) on x86.  Either way the caller's own arithmetic must still
 * make denormals after every step. */
START_TEST(decaying_state_flushed_and_fp_mode_restored)
{
    ad_tensor *p = ad_param_new("w", AD_F32, AD_SHAPE(1));
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.1);
    c.form = OPTIM_FORM_PYTORCH;
    optim *o = optim_new(&p, 1, &c, NULL, 0);
    ck_assert_ptr_nonnull(o);
    ad_tensor *v = optim_state(o, 0, "momentum_buffer");
    ((float *)ad_tensor_grad_data(p))[0] = 1;
    int steps = 0;
    do {
        ck_assert_int_eq(optim_step(o), AD_OK);
        optim_zero_grad(o);
        steps++;
        volatile float tiny = FLT_MIN;
        tiny = tiny / 4; /* a denormal, unless the step left flush-to-zero on */
        ck_assert_msg(tiny != 0, "step %d left denormals flushed in the caller's thread", steps);
    } while (ad_tensor_get(v, 0) != 0 && steps < 1200);
    if (cpu_flushes_denormals()) {
        ck_assert_int_le(steps, 830);
        ck_assert_int_ge(steps, 820);
    }
    optim_free(o);
    ad_tensor_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_rules");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, gd_three_steps);
    tcase_add_test(tc, gd_weight_decay_three_steps);
    tcase_add_test(tc, momentum_lecture_three_steps);
    tcase_add_test(tc, momentum_pytorch_three_steps_and_buffers);
    tcase_add_test(tc, momentum_forms_differ_when_the_rate_changes);
    tcase_add_test(tc, nesterov_three_steps_both_forms);
    tcase_add_test(tc, adam_three_steps);
    tcase_add_test(tc, adam_l2_weight_decay_three_steps);
    tcase_add_test(tc, adamw_three_steps);
    tcase_add_test(tc, rmsprop_three_steps);
    tcase_add_test(tc, rmsprop_momentum_three_steps);
    tcase_add_test(tc, float32_parameters);
    tcase_add_test(tc, several_parameters_and_accessors);
    tcase_add_test(tc, new_refuses_bad_configurations);
    tcase_add_test(tc, decaying_state_flushed_and_fp_mode_restored);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
