/* Second order on neural networks, without PyTorch (tests/higher_torch.py holds the
 * comparison with it): ad_grad_graph through every layer and loss nn builds on, the Hessian of
 * an MLP's loss with respect to all its parameters (symmetric, equal to central differences of
 * the gradient, H v equal to ad_hvp_graph), and a training step with a penalty on the input
 * gradient, whose parameter gradient is checked against central differences of the penalised
 * loss. */
#include "testutil.h"
#include "nn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 5, MAX_PARAMS = 6 };

/* How a network turns its parameters into a graph.  nn_mlp_forward makes its leaves itself;
 * the others make them here, so the leaves passed to the Hessian are the ones the loss uses. */
typedef enum { BUILD_MLP, BUILD_FUSED, BUILD_SOFTPLUS } build_kind;
typedef enum { LOSS_MSE, LOSS_CROSS_ENTROPY, LOSS_SOFTMAX_MSE, LOSS_LOG_SOFTMAX_NLL } loss_kind;

typedef struct {
    const char *name;
    int in, hidden, out;
    nn_act mlp_act;  /* BUILD_MLP */
    ad_act fused;    /* BUILD_FUSED: ad_linear_act's activation on the hidden layer */
    build_kind build;
    loss_kind loss;
} net_case;

static const net_case cases[] = {
    {"mlp tanh, mse", 3, 4, 2, NN_TANH, AD_ACT_NONE, BUILD_MLP, LOSS_MSE},
    {"mlp sigmoid, cross-entropy", 3, 4, 3, NN_SIGMOID, AD_ACT_NONE, BUILD_MLP, LOSS_CROSS_ENTROPY},
    {"linear_act tanh, softmax + mse", 3, 4, 3, NN_TANH, AD_ACT_TANH, BUILD_FUSED, LOSS_SOFTMAX_MSE},
    {"linear_act sigmoid, log_softmax", 3, 4, 3, NN_TANH, AD_ACT_SIGMOID, BUILD_FUSED, LOSS_LOG_SOFTMAX_NLL},
    {"linear_act leaky relu, cross-entropy", 3, 5, 3, NN_TANH, AD_ACT_LEAKY_RELU, BUILD_FUSED, LOSS_CROSS_ENTROPY},
    {"linear_act relu, mse", 3, 5, 2, NN_TANH, AD_ACT_RELU, BUILD_FUSED, LOSS_MSE},
    {"linear, no activation, cross-entropy", 3, 4, 3, NN_TANH, AD_ACT_NONE, BUILD_FUSED, LOSS_CROSS_ENTROPY},
    {"linear + softplus, mse", 3, 4, 2, NN_TANH, AD_ACT_NONE, BUILD_SOFTPLUS, LOSS_MSE},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* A case's model and data. */
typedef struct {
    const net_case *c;
    nn_mlp *m;
    double x[N * 4], y[N * 4];
    int32_t labels[N];
} problem;

static problem problem_new(const net_case *c, uint64_t seed)
{
    problem p = {.c = c};
    nn_mlp_cfg cfg = {.in = c->in, .hidden = {c->hidden}, .out = c->out, .act = c->mlp_act, .dtype = AD_F64,
                      .seed = seed, .task = c->loss == LOSS_MSE ? NN_REGRESS : NN_CLASSIFY};
    p.m = nn_mlp_new(&cfg);
    ck_assert_ptr_nonnull(p.m);
    ad_rng r;
    ad_rng_seed(&r, seed * 977);
    /* biases start at zero; their second derivatives should be exercised too */
    for (int i = 0; i < 2; i++) ad_tensor_rand_uniform(nn_mlp_layer(p.m, i)->bias, &r, -0.5, 0.5);
    for (int i = 0; i < N * c->in; i++) p.x[i] = 3 * ad_rng_uniform(&r) - 1.5;
    for (int i = 0; i < N; i++) p.labels[i] = (int32_t)(i % c->out);
    for (int i = 0; i < N * c->out; i++)
        p.y[i] = c->loss == LOSS_MSE ? 2 * ad_rng_uniform(&r) - 1 : i % c->out == p.labels[i / c->out];
    return p;
}

/* The network's scores on x; leaves (may be NULL) receives W_1, b_1, W_2, b_2. */
static ad_node *forward(ad_graph *g, const problem *p, ad_node *x, ad_node **leaves)
{
    ad_tensor *const *t = nn_mlp_params(p->m);
    if (p->c->build == BUILD_MLP) {
        ad_node *s = nn_mlp_forward(g, p->m, x, NN_EVAL);
        for (int k = 0; leaves && k < 4; k++) leaves[k] = ad_param_node(g, t[k]);
        return s;
    }
    ad_node *l[4];
    for (int k = 0; k < 4; k++) l[k] = ad_param(g, t[k]);
    if (leaves) memcpy(leaves, l, sizeof l);
    ad_node *h = p->c->build == BUILD_SOFTPLUS ? ad_softplus(g, ad_linear(g, x, l[0], l[1]))
                                               : ad_linear_act(g, x, l[0], l[1], p->c->fused, 0.1);
    return ad_linear(g, h, l[2], l[3]);
}

static ad_node *loss_of(ad_graph *g, const problem *p, ad_node *scores)
{
    ad_node *y = ad_const(g, AD_F64, AD_SHAPE(N, p->c->out), p->y);
    switch (p->c->loss) {
    case LOSS_MSE: return nn_squared_loss(g, scores, y);
    case LOSS_CROSS_ENTROPY: return nn_cross_entropy(g, scores, p->labels);
    case LOSS_SOFTMAX_MSE: return ad_mse(g, ad_softmax(g, scores, 1), y);
    default: return ad_mul_scalar(g, ad_sum(g, ad_mul(g, ad_log_softmax(g, scores, 1), y)), -1.0 / N);
    }
}

static ad_node *loss_on(ad_graph *g, const problem *p, ad_node **leaves)
{
    return loss_of(g, p, forward(g, p, ad_const(g, AD_F64, AD_SHAPE(N, p->c->in), p->x), leaves));
}

/* Every parameter element in parameters() order, as pointers into the model. */
static int64_t param_count(const problem *p) { return nn_mlp_num_param_elements(p->m); }

static void param_locate(const problem *p, int64_t i, ad_tensor **t, int64_t *j)
{
    ad_tensor *const *ps = nn_mlp_params(p->m);
    for (int k = 0;; k++) {
        if (i < ad_tensor_size(ps[k])) {
            *t = ps[k], *j = i;
            return;
        }
        i -= ad_tensor_size(ps[k]);
    }
}

/* The gradient of the loss from ad_backward, flattened; g is reset and reused, as the
 * difference loops call this hundreds of times. */
static void backward_gradient(ad_graph *g, const problem *p, double *grad)
{
    ad_graph_reset(g);
    nn_mlp_zero_grad(p->m);
    ad_node *loss = loss_on(g, p, NULL);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    for (int64_t i = 0; i < param_count(p); i++) {
        ad_tensor *t;
        int64_t j;
        param_locate(p, i, &t, &j);
        grad[i] = ad_tensor_grad_get(t, j);
    }
}

START_TEST(grad_graph_equals_backward_through_every_layer_and_loss)
{
    const problem p = problem_new(&cases[_i], 1 + (uint64_t)_i);
    int64_t P = param_count(&p);
    double *want = malloc((size_t)P * sizeof *want);
    ad_graph *g = ad_graph_new();
    backward_gradient(g, &p, want);
    ad_graph_reset(g);
    ad_node *leaves[4], *grads[4];
    ad_node *loss = loss_on(g, &p, leaves);
    ck_assert_int_eq(ad_grad_graph(g, loss, NULL, 4, leaves, grads), AD_OK);
    for (int k = 0, at = 0; k < 4; at += (int)ad_node_size(grads[k]), k++)
        for (int64_t j = 0; j < ad_node_size(grads[k]); j++) {
            double got = ad_node_get(grads[k], j), w = want[at + j];
            ck_assert_msg(fabs(got - w) <= 1e-14 * fmax(1, fabs(w)), "%s: parameter %d element %lld: grad_graph %.17g, backward %.17g",
                          cases[_i].name, k, (long long)j, got, w);
        }
    ad_graph_free(g);
    free(want);
    nn_mlp_free(p.m);
}
END_TEST

START_TEST(mlp_hessian_is_symmetric_matches_differences_and_hvp)
{
    problem p = problem_new(&cases[_i], 20 + (uint64_t)_i);
    int64_t P = param_count(&p);
    double *H = malloc((size_t)(P * P) * sizeof *H), *gp = malloc((size_t)P * sizeof *gp),
           *gm = malloc((size_t)P * sizeof *gm), *v = malloc((size_t)P * sizeof *v), *hv = malloc((size_t)P * sizeof *hv);
    ad_graph *g = ad_graph_new();
    ad_node *leaves[4];
    ad_node *loss = loss_on(g, &p, leaves);
    ck_assert_int_eq(ad_hessian_graph(g, loss, 4, leaves, H), AD_OK);
    double scale = 0;
    for (int64_t i = 0; i < P * P; i++) scale = fmax(scale, fabs(H[i]));
    ck_assert_msg(scale > 1e-3, "%s: a Hessian of zeros tests nothing", cases[_i].name);
    for (int64_t i = 0; i < P; i++)
        for (int64_t j = 0; j < i; j++)
            ck_assert_msg(fabs(H[i * P + j] - H[j * P + i]) <= 1e-14 * scale, "%s: H[%lld,%lld] = %.17g, H[%lld,%lld] = %.17g",
                          cases[_i].name, (long long)i, (long long)j, H[i * P + j], (long long)j, (long long)i, H[j * P + i]);

    /* ad_hvp_graph on the same graph against H v */
    ad_rng r;
    ad_rng_seed(&r, 5);
    for (int64_t i = 0; i < P; i++) v[i] = 2 * ad_rng_uniform(&r) - 1;
    const double *vk[4];
    double *hvk[4];
    for (int k = 0, at = 0; k < 4; at += (int)ad_node_size(leaves[k]), k++) vk[k] = v + at, hvk[k] = hv + at;
    ck_assert_int_eq(ad_hvp_graph(g, loss, 4, leaves, vk, hvk), AD_OK);
    for (int64_t i = 0; i < P; i++) {
        double want = 0;
        for (int64_t j = 0; j < P; j++) want += H[i * P + j] * v[j];
        ck_assert_msg(fabs(hv[i] - want) <= 1e-13 * fmax(1, scale), "%s: (Hv)[%lld] = %.17g, H times v %.17g",
                      cases[_i].name, (long long)i, hv[i], want);
    }

    /* column j against central differences of backward's gradient */
    for (int64_t j = 0; j < P; j++) {
        ad_tensor *t;
        int64_t e;
        param_locate(&p, j, &t, &e);
        double x0 = ad_tensor_get(t, e), h = 1e-5;
        ad_tensor_set(t, e, x0 + h);
        backward_gradient(g, &p, gp);
        ad_tensor_set(t, e, x0 - h);
        backward_gradient(g, &p, gm);
        ad_tensor_set(t, e, x0);
        for (int64_t i = 0; i < P; i++) {
            double fd = (gp[i] - gm[i]) / (2 * h);
            ck_assert_msg(fabs(H[i * P + j] - fd) <= 1e-7 * fmax(1, fabs(fd)), "%s: H[%lld,%lld] = %.17g, differences %.17g",
                          cases[_i].name, (long long)i, (long long)j, H[i * P + j], fd);
        }
    }
    ad_graph_free(g);
    free(H), free(gp), free(gm), free(v), free(hv);
    nn_mlp_free(p.m);
}
END_TEST

/* ---- a training step with a penalty on the input gradient ---- */

/* loss + lambda |d loss / d x|^2, the input being a variable so its gradient can be taken as
 * a graph; ad_backward on the result reaches the parameters through that graph. */
static ad_node *penalised(ad_graph *g, const problem *p, double lambda, ad_node **leaves)
{
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(N, p->c->in), p->x), *gx;
    ad_node *loss = loss_of(g, p, forward(g, p, x, leaves));
    if (ad_grad_graph(g, loss, NULL, 1, &x, &gx) != AD_OK) return NULL;
    return ad_add(g, loss, ad_mul_scalar(g, ad_sum(g, ad_square(g, gx)), lambda));
}

static double penalised_value(ad_graph *g, const problem *p, double lambda)
{
    ad_graph_reset(g);
    ad_node *total = penalised(g, p, lambda, NULL);
    ck_assert_msg(total != NULL, "%s", ad_error(g));
    return ad_value(total);
}

START_TEST(penalty_step_gradient_matches_differences)
{
    const double lambda = 2.0;
    problem p = problem_new(&cases[_i], 40 + (uint64_t)_i);
    ad_graph *g = ad_graph_new(), *fd_g = ad_graph_new();
    nn_mlp_zero_grad(p.m);
    ad_node *total = penalised(g, &p, lambda, NULL);
    ck_assert_msg(total != NULL, "%s", ad_error(g));
    ck_assert_int_eq(ad_backward(g, total), AD_OK);
    /* the penalty must matter, or this is a first-order test */
    ck_assert_double_gt(fabs(ad_value(total) - penalised_value(fd_g, &p, 0)), 1e-4 * fabs(ad_value(total)));
    for (int64_t i = 0; i < param_count(&p); i++) {
        ad_tensor *t;
        int64_t e;
        param_locate(&p, i, &t, &e);
        double x0 = ad_tensor_get(t, e), h = 1e-6 * fmax(1, fabs(x0)), got = ad_tensor_grad_get(t, e);
        ad_tensor_set(t, e, x0 + h);
        double fp = penalised_value(fd_g, &p, lambda);
        ad_tensor_set(t, e, x0 - h);
        double fm = penalised_value(fd_g, &p, lambda);
        ad_tensor_set(t, e, x0);
        double fd = (fp - fm) / (2 * h);
        ck_assert_msg(fabs(got - fd) <= 1e-7 + 1e-6 * fabs(fd), "%s: parameter element %lld: backward %.17g, differences %.17g",
                      cases[_i].name, (long long)i, got, fd);
    }
    ad_graph_free(g), ad_graph_free(fd_g);
    nn_mlp_free(p.m);
}
END_TEST

/* Third order through a network: the Hessian of the penalised loss with respect to the
 * parameters differentiates the input gradient's graph twice more. */
START_TEST(hessian_of_penalised_loss_matches_differences)
{
    const double lambda = 0.5;
    problem p = problem_new(&cases[_i], 60 + (uint64_t)_i);
    int64_t P = param_count(&p);
    double *H = malloc((size_t)(P * P) * sizeof *H);
    ad_graph *g = ad_graph_new();
    ad_node *leaves[4];
    ad_node *total = penalised(g, &p, lambda, leaves);
    ck_assert_msg(total != NULL, "%s", ad_error(g));
    ck_assert_int_eq(ad_hessian_graph(g, total, 4, leaves, H), AD_OK);
    double *gp = malloc((size_t)P * sizeof *gp), *gm = malloc((size_t)P * sizeof *gm);
    for (int64_t j = 0; j < P; j++) {
        ad_tensor *t;
        int64_t e;
        param_locate(&p, j, &t, &e);
        double x0 = ad_tensor_get(t, e), h = 1e-5;
        for (int side = 0; side < 2; side++) {
            ad_tensor_set(t, e, x0 + (side ? -h : h));
            ad_graph_reset(g);
            nn_mlp_zero_grad(p.m);
            ck_assert_int_eq(ad_backward(g, penalised(g, &p, lambda, NULL)), AD_OK);
            for (int64_t i = 0; i < P; i++) {
                ad_tensor *ti;
                int64_t ei;
                param_locate(&p, i, &ti, &ei);
                (side ? gm : gp)[i] = ad_tensor_grad_get(ti, ei);
            }
        }
        ad_tensor_set(t, e, x0);
        for (int64_t i = 0; i < P; i++) {
            double fd = (gp[i] - gm[i]) / (2 * h);
            ck_assert_msg(fabs(H[i * P + j] - fd) <= 1e-6 * fmax(1, fabs(fd)), "%s: H[%lld,%lld] = %.17g, differences %.17g",
                          cases[_i].name, (long long)i, (long long)j, H[i * P + j], fd);
        }
    }
    ad_graph_free(g);
    free(H), free(gp), free(gm);
    nn_mlp_free(p.m);
}
END_TEST

/* A seed weights the elements of a non-scalar root: with seed ones, the input gradient of a
 * network's outputs is that of their sum, and a seed made of nodes is differentiated through. */
START_TEST(seeded_grad_graph_on_network_outputs)
{
    problem p = problem_new(&cases[0], 80);
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(N, 3), p.x), *gs, *gsum;
    ad_node *scores = forward(g, &p, x, NULL);
    ad_node *ones = ad_full(g, AD_F64, ad_node_shape(scores), 1);
    ck_assert_int_eq(ad_grad_graph(g, scores, ones, 1, &x, &gs), AD_OK);
    ck_assert_int_eq(ad_grad_graph(g, ad_sum(g, scores), NULL, 1, &x, &gsum), AD_OK);
    for (int64_t i = 0; i < N * 3; i++) ck_assert_double_eq_tol(ad_node_get(gs, i), ad_node_get(gsum, i), 1e-15);
    /* a seed that is a variable is differentiated through: gx = J^T s, so the gradient of
     * <gx, u> with respect to s is J u, the forward-mode derivative along u (the "double
     * backward" trick for JVPs) */
    double s0[N * 4], u[N * 3];
    ad_rng r;
    ad_rng_seed(&r, 9);
    for (int i = 0; i < N * 4; i++) s0[i] = ad_rng_uniform(&r);
    for (int i = 0; i < N * 3; i++) u[i] = 2 * ad_rng_uniform(&r) - 1;
    ad_node *sv = ad_var_array(g, "s", AD_F64, ad_node_shape(scores), s0), *gx, *ju;
    ck_assert_int_eq(ad_grad_graph(g, scores, sv, 1, &x, &gx), AD_OK);
    ad_node *inner = ad_sum(g, ad_mul(g, gx, ad_const(g, AD_F64, AD_SHAPE(N, 3), u)));
    ck_assert_int_eq(ad_grad_graph(g, inner, NULL, 1, &sv, &ju), AD_OK);
    const double *seeds[] = {u};
    ck_assert_int_eq(ad_jvp_graph(g, scores, 1, &x, seeds), AD_OK);
    for (int64_t i = 0; i < ad_node_size(scores); i++)
        ck_assert_double_eq_tol(ad_node_get(ju, i), ad_tangent_get(g, scores, i), 1e-14);
    /* a seed of another shape is refused, and the message says why */
    ad_node *bad = ad_full(g, AD_F64, AD_SHAPE(N), 1), *gb;
    ck_assert_int_eq(ad_grad_graph(g, scores, bad, 1, &x, &gb), AD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ad_error(g), "seed"));
    ad_graph_free(g);
    nn_mlp_free(p.m);
}
END_TEST

/* ad_param_node finds the leaf a forward made for a parameter, and nothing else. */
START_TEST(param_node_finds_the_forwards_leaves)
{
    ad_tensor *w = ad_param_new("w", AD_F64, AD_SHAPE(2)), *other = ad_param_new("o", AD_F64, AD_SHAPE(2));
    ad_tensor *plain = ad_tensor_new(AD_F64, AD_SHAPE(2));
    ad_graph *g = ad_graph_new();
    ad_node *c = ad_const_tensor(g, plain), *leaf = ad_param(g, w);
    ad_param(g, w); /* a second leaf of the same parameter: the first is found */
    ck_assert_ptr_eq(ad_param_node(g, w), leaf);
    ck_assert_ptr_null(ad_param_node(g, other));
    ck_assert_ptr_null(ad_param_node(g, plain));
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(ad_param_node(NULL, w));
    ck_assert_ptr_null(ad_param_node(g, NULL));
    ad_graph_reset(g);
    ck_assert_ptr_null(ad_param_node(g, w));
    ad_graph_free(g);
    ad_tensor_free(w);
    ad_tensor_free(other);
    ad_tensor_free(plain);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_higher");
    TCase *tc = tcase_create("higher");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, grad_graph_equals_backward_through_every_layer_and_loss, 0, NCASES);
    tcase_add_loop_test(tc, mlp_hessian_is_symmetric_matches_differences_and_hvp, 0, NCASES);
    tcase_add_loop_test(tc, penalty_step_gradient_matches_differences, 0, NCASES);
    tcase_add_loop_test(tc, hessian_of_penalised_loss_matches_differences, 0, NCASES);
    tcase_add_test(tc, seeded_grad_graph_on_network_outputs);
    tcase_add_test(tc, param_node_finds_the_forwards_leaves);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
