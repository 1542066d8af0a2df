/* Record once, evaluate many: ad_replay against recording again (bit for bit), branch guards,
 * where, leaf setters, op arguments, second order and workspaces.  The property test replays
 * every random case too (test_ad_property); concurrent replays are in test_ad_threads. */
#include "testutil.h"
#include "ad_alloc.h"
#include "ad_op.h"
#include "nn_data.h"
#include <math.h>
#include <string.h>

static bool same_bits(double a, double b) { return !memcmp(&a, &b, sizeof a); }

/* A parameter (it has a gradient) with uniform values in [lo, hi). */
static ad_tensor *rand_param(ad_rng *r, ad_shape s, double lo, double hi)
{
    ad_tensor *t = ad_param_new("p", AD_F64, s);
    ad_tensor_rand_uniform(t, r, lo, hi);
    return t;
}

/* ---- the scalar fast path, every elementwise op ---- */

static double softsign(double x, double p) { (void)p; return x / (1 + fabs(x)); }
static double softsign_d(double x, double y, double p) { (void)y, (void)p; return 1 / ((1 + fabs(x)) * (1 + fabs(x))); }

/* f(x, y) = sum over the elementwise ops of op(x, y) or op(x), each scaled, on float64 scalars:
 * every node takes the one-node fast path. */
static ad_node *every_op(ad_graph *g, ad_node *x, ad_node *y)
{
    ad_node *f = ad_const_scalar(g, 0);
    for (int id = 0; id < ad_op_count(); id++) {
        int arity, nparam;
        if (!ad_op_is_elementwise(id, &arity, &nparam)) continue;
        ad_node *in[2] = {x, y};
        ad_node *t = ad_apply(g, id, in, arity, NULL, 0);
        f = ad_add(g, f, ad_mul(g, t, ad_const_scalar(g, 0.01 * (id + 1))));
    }
    return f;
}

START_TEST(scalar_every_op)
{
    static int registered = -2;
    if (registered == -2) registered = ad_op_register_unary(&(ad_unary_def){"replay_softsign", softsign, softsign_d, NULL, NULL});
    ck_assert_int_ge(registered, 0);
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0.7), *y = ad_var(g, "y", 1.3);
    ad_node *f = every_op(g, x, y);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    const double pts[][2] = {{1.1, 0.4}, {0.4, 1.1}, {0.9, 0.9}, {2.5, -0.5}, {-0.3, 0.2}};
    for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++) {
        ck_assert_int_eq(ad_set_value(g, x, pts[k][0]), AD_OK);
        ck_assert_int_eq(ad_set_value(g, y, pts[k][1]), AD_OK);
        ck_assert_int_eq(ad_replay(g), AD_OK);
        ad_zero_grad(g);
        ck_assert_int_eq(ad_backward(g, f), AD_OK);
        ad_graph_reset(fresh);
        ad_node *x2 = ad_var(fresh, "x", pts[k][0]), *y2 = ad_var(fresh, "y", pts[k][1]);
        ad_node *f2 = every_op(fresh, x2, y2);
        ck_assert_int_eq(ad_backward(fresh, f2), AD_OK);
        ck_assert_msg(same_bits(ad_value(f), ad_value(f2)), "point %zu: replayed %.17g, recorded %.17g", k,
                      ad_value(f), ad_value(f2));
        ck_assert(same_bits(ad_grad(x), ad_grad(x2)));
        ck_assert(same_bits(ad_grad(y), ad_grad(y2)));
    }
    ad_graph_free(fresh);
    ad_graph_free(g);
}
END_TEST

/* The lecture's neuron, replayed elsewhere and back: the slides' numbers again. */
START_TEST(lecture_neuron_back_and_forth)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = lecture_neuron(g), *v[5];
    const char *names[5] = {"x0", "x1", "w0", "w1", "w2"};
    for (int i = 0; i < 5; i++) {
        v[i] = NULL;
        for (uint32_t k = 0; k < ad_graph_num_nodes(g); k++) {
            ad_node *n = ad_graph_node(g, k);
            if (ad_node_name(n) && !strcmp(ad_node_name(n), names[i]) && ad_node_num_inputs(n) == 0) v[i] = n;
        }
        ck_assert_ptr_nonnull(v[i]);
    }
    const double lecture[5] = {-1, -2, 2, -3, -3}, other[5] = {0.5, 1.5, -1, 2, 0.25};
    for (int round = 0; round < 3; round++) {
        const double *at = round == 1 ? other : lecture;
        for (int i = 0; i < 5; i++) ck_assert_int_eq(ad_set_value(g, v[i], at[i]), AD_OK);
        ck_assert_int_eq(ad_replay(g), AD_OK);
        ad_zero_grad(g);
        ck_assert_int_eq(ad_backward(g, f), AD_OK);
        if (round == 1) {
            ck_assert(fabs(ad_value(f) - 1 / (1 + exp(-(-1 * 0.5 + 2 * 1.5 + 0.25)))) < 1e-15);
            continue;
        }
        ck_assert(fabs(round_to(ad_value(f), 2) - 0.73) < 1e-12);
        const double want[5] = {0.39, -0.59, -0.20, -0.39, 0.20}; /* x0 x1 w0 w1 w2 */
        for (int i = 0; i < 5; i++)
            ck_assert_msg(fabs(round_to(ad_grad(v[i]), 2) - want[i]) < 1e-12, "%d: %.17g", i, ad_grad(v[i]));
    }
    ad_graph_free(g);
}
END_TEST

/* ---- branch guards ---- */

static ad_node *piecewise(ad_graph *g, ad_node *x, ad_node *y)
{
    if (ad_branch(g, ad_lt(g, x, y))) return ad_mul(g, x, y);
    return ad_sub(g, x, y);
}

START_TEST(branch_guard_retape)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1), *y = ad_var(g, "y", 2);
    ad_node *f = piecewise(g, x, y);
    ck_assert(fabs(ad_value(f) - 2) < 1e-15);
    ad_set_value(g, x, 1.5); /* x < y still: replays */
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert(ad_value(f) == 3.0);
    ad_set_value(g, x, 3); /* now x > y: the recording is the other branch */
    ck_assert_int_eq(ad_replay(g), AD_ERR_RETAPE);
    const char *e = ad_error(g);
    ck_assert_msg(strstr(e, "lt") && strstr(e, "(x < y)") && strstr(e, "was true when recorded and is false now") &&
                      strstr(e, "record the graph again"), "%s", e);
    ck_assert_str_eq(ad_status_name(AD_ERR_RETAPE), "err_retape");
    /* the error stands until cleared, as every error does */
    ad_set_value(g, x, 0.5);
    ck_assert_int_eq(ad_replay(g), AD_ERR_RETAPE);
    ad_clear_error(g);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert(ad_value(f) == 1.0);
    /* a tensor condition is refused: a C branch takes one truth value */
    ad_node *v = ad_var_array(g, "v", AD_F64, AD_SHAPE(2), (double[]){1, 2});
    ck_assert(!ad_branch(g, ad_gt(g, v, ad_const_scalar(g, 0))));
    ck_assert_msg(strstr(ad_error(g), "branch: node") && strstr(ad_error(g), "[2]"), "%s", ad_error(g));
    ad_clear_error(g);
    ck_assert(!ad_branch(g, NULL));
    ck_assert_int_eq(ad_status_of(g), AD_ERR_NULL);
    ad_graph_free(g);
}
END_TEST

/* A guard on a tensor graph: a float32 one-element comparison. */
START_TEST(branch_guard_tensor)
{
    ad_graph *g = ad_graph_new();
    ad_node *v = ad_var_array(g, "v", AD_F32, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_node *s = ad_sum(g, v);
    bool big = ad_branch(g, ad_ge(g, s, ad_full(g, AD_F32, AD_SHAPE0, 5)));
    ck_assert(big);
    ck_assert_int_eq(ad_set_data(g, v, (double[]){1, 1, 1}), AD_OK);
    ck_assert_int_eq(ad_replay(g), AD_ERR_RETAPE);
    ck_assert_msg(strstr(ad_error(g), "ge"), "%s", ad_error(g));
    ad_graph_free(g);
}
END_TEST

/* ---- where ---- */

static ad_node *abs_by_where(ad_graph *g, ad_node *x)
{
    return ad_where(g, ad_gt(g, x, ad_const_scalar(g, 0)), ad_mul(g, x, x), ad_neg(g, x));
}

START_TEST(where_redecided)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 2);
    ad_node *f = abs_by_where(g, x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ck_assert(ad_value(f) == 4 && ad_grad(x) == 4);
    ad_set_value(g, x, -3);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ad_zero_grad(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ck_assert(ad_value(f) == 3 && ad_grad(x) == -1);
    /* the untaken branch's NaN never reaches the value */
    ad_node *y = ad_var(g, "y", -1);
    ad_node *h = ad_where(g, ad_gt(g, y, ad_const_scalar(g, 0)), ad_log(g, y), ad_const_scalar(g, 0));
    ck_assert_int_eq(ad_backward(g, h), AD_OK);
    ck_assert(ad_value(h) == 0 && ad_grad(y) == 0);
    ad_graph_free(g);
}
END_TEST

/* where with broadcasting in both dtypes, against torch.where's rule: a [2,3], b [3], cond
 * [2,1]; the gradient of b sums over the rows that took b. */
START_TEST(where_broadcast)
{
    for (int t = 0; t < 2; t++) {
        ad_dtype dt = t ? AD_F32 : AD_F64;
        ad_graph *g = ad_graph_new();
        ad_node *c = ad_const(g, dt, AD_SHAPE(2, 1), (double[]){1, 0});
        ad_node *a = ad_var_array(g, "a", dt, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
        ad_node *b = ad_var_array(g, "b", dt, AD_SHAPE(3), (double[]){-1, -2, -3});
        ad_node *w = ad_where(g, c, a, b);
        ck_assert_ptr_nonnull(w);
        const double want[6] = {1, 2, 3, -1, -2, -3};
        for (int i = 0; i < 6; i++) ck_assert(ad_node_get(w, i) == want[i]);
        ad_node *L = ad_sum(g, ad_mul(g, w, ad_const(g, dt, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6})));
        ck_assert_int_eq(ad_backward(g, L), AD_OK);
        const double ga[6] = {1, 2, 3, 0, 0, 0}, gb[3] = {4, 5, 6};
        for (int i = 0; i < 6; i++) ck_assert(ad_node_grad_get(a, i) == ga[i]);
        for (int i = 0; i < 3; i++) ck_assert(ad_node_grad_get(b, i) == gb[i]);
        ck_assert_ptr_null(ad_where(g, ad_const(g, dt, AD_SHAPE(4), NULL), a, b));
        ck_assert_msg(strstr(ad_error(g), "where: cond [4], a [2,3] and b [3] do not broadcast"), "%s", ad_error(g));
        ad_graph_free(g);
    }
}
END_TEST

/* ---- leaves and op arguments ---- */

START_TEST(setters_refuse)
{
    ad_graph *g = ad_graph_new(), *other = ad_graph_new();
    ad_tensor *p = ad_param_new("w", AD_F64, AD_SHAPE(2));
    ad_node *x = ad_var(g, "x", 1), *pw = ad_param(g, p), *s = ad_sum(g, ad_mul(g, pw, x));
    ad_node *v = ad_var_array(g, "v", AD_F64, AD_SHAPE(2), NULL);
    ck_assert_int_eq(ad_set_value(g, pw, 1), AD_ERR_ARG);
    ck_assert_msg(strstr(ad_error(g), "is param, not a variable or constant (a parameter's values are its tensor's"),
                  "%s", ad_error(g));
    ad_clear_error(g);
    ck_assert_int_eq(ad_set_value(g, s, 1), AD_ERR_ARG);
    ck_assert_msg(strstr(ad_error(g), "is sum, not a variable"), "%s", ad_error(g));
    ad_clear_error(g);
    ck_assert_int_eq(ad_set_value(g, v, 1), AD_ERR_ARG);
    ck_assert_msg(strstr(ad_error(g), "has shape [2], not one element"), "%s", ad_error(g));
    ad_clear_error(g);
    ad_node *y = ad_var(other, "y", 1);
    ck_assert_int_eq(ad_set_value(g, y, 1), AD_ERR_ARG);
    ad_clear_error(g);
    ck_assert_int_eq(ad_set_data(g, v, NULL), AD_ERR_NULL);
    ad_clear_error(g);
    ck_assert_int_eq(ad_set_value(NULL, x, 1), AD_ERR_NULL);
    ck_assert_int_eq(ad_replay(NULL), AD_ERR_NULL);
    ck_assert_int_eq(ad_node_set_arg(g, x, NULL), AD_ERR_ARG);
    ck_assert_msg(strstr(ad_error(g), "takes no argument"), "%s", ad_error(g));
    ad_clear_error(g);
    /* a failed recording is not replayed */
    ck_assert_ptr_null(ad_add(g, x, NULL));
    ck_assert_int_eq(ad_replay(g), AD_ERR_NULL);
    ad_graph_free(other);
    ad_graph_free(g);
    ad_tensor_free(p);
}
END_TEST

/* A classifier step: new inputs by ad_set_data, new labels by ad_node_set_arg. */
static ad_node *classifier(ad_graph *g, ad_tensor *w, ad_tensor *b, ad_node *x, const int32_t *labels)
{
    return ad_cross_entropy(g, ad_linear_act(g, x, ad_param(g, w), ad_param(g, b), AD_ACT_NONE, 0), labels);
}

START_TEST(labels_by_set_arg)
{
    ad_rng r;
    ad_rng_seed(&r, 5);
    ad_tensor *w = rand_param(&r, AD_SHAPE(3, 4), -1, 1), *b = rand_param(&r, AD_SHAPE(3), -1, 1);
    ad_tensor *w2 = ad_param_new("w", AD_F64, AD_SHAPE(3, 4)), *b2 = ad_param_new("b", AD_F64, AD_SHAPE(3));
    ad_tensor_copy(w2, w);
    ad_tensor_copy(b2, b);
    double x0[8], x1[8];
    for (int i = 0; i < 8; i++) x0[i] = ad_rng_uniform(&r), x1[i] = ad_rng_uniform(&r) - 0.5;
    const int32_t l0[2] = {0, 2}, l1[2] = {1, 1}, bad[2] = {1, 7};
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *x = ad_const(g, AD_F64, AD_SHAPE(2, 4), x0);
    ad_node *L = classifier(g, w, b, x, l0);
    ck_assert_int_eq(ad_set_data(g, x, x1), AD_OK);
    ck_assert_int_eq(ad_node_set_arg(g, L, l1), AD_OK);
    ck_assert_int_eq(ad_node_set_arg(g, L, bad), AD_ERR_ARG); /* refused, the labels stay l1 */
    ck_assert_msg(strstr(ad_error(g), "cross_entropy: label 7 at row 1 outside [0,3)"), "%s", ad_error(g));
    ad_clear_error(g);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert_int_eq(ad_backward(g, L), AD_OK);
    ad_node *L2 = classifier(fresh, w2, b2, ad_const(fresh, AD_F64, AD_SHAPE(2, 4), x1), l1);
    ck_assert_int_eq(ad_backward(fresh, L2), AD_OK);
    ck_assert(same_bits(ad_value(L), ad_value(L2)));
    for (int i = 0; i < 12; i++) ck_assert(same_bits(ad_tensor_grad_get(w, i), ad_tensor_grad_get(w2, i)));
    for (int i = 0; i < 3; i++) ck_assert(same_bits(ad_tensor_grad_get(b, i), ad_tensor_grad_get(b2, i)));
    ad_graph_free(fresh);
    ad_graph_free(g);
    ad_tensor_free(w), ad_tensor_free(b), ad_tensor_free(w2), ad_tensor_free(b2);
}
END_TEST

/* Dropout draws a new mask at each replay: the one recording again would draw. */
static ad_node *dropped(ad_graph *g, const double *x0, ad_rng *r, ad_node **x)
{
    *x = ad_var_array(g, "x", AD_F32, AD_SHAPE(8, 8), x0);
    ad_node *d = ad_dropout(g, *x, 0.5, true, r);
    return ad_sum(g, ad_mul(g, d, d));
}

START_TEST(dropout_redraws)
{
    ad_rng r, copy;
    ad_rng_seed(&r, 11);
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    double x0[64];
    for (int i = 0; i < 64; i++) x0[i] = i + 1;
    ad_node *x, *x2;
    ad_node *L = dropped(g, x0, &r, &x);
    double first = ad_value(L);
    copy = r; /* where the replay's draws start */
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert_int_eq(ad_backward(g, L), AD_OK);
    ck_assert(ad_value(L) != first); /* another mask (2^-64 odds of the same) */
    ad_node *L2 = dropped(fresh, x0, &copy, &x2);
    ck_assert_int_eq(ad_backward(fresh, L2), AD_OK);
    ck_assert(same_bits(ad_value(L), ad_value(L2)));
    for (int i = 0; i < 64; i++) ck_assert(same_bits(ad_node_grad_get(x, i), ad_node_grad_get(x2, i)));
    ad_graph_free(fresh);
    ad_graph_free(g);
}
END_TEST

START_TEST(no_allocation_after_first_replay)
{
    ad_rng r;
    ad_rng_seed(&r, 3);
    ad_tensor *w1 = rand_param(&r, AD_SHAPE(16, 8), -0.5, 0.5), *b1 = rand_param(&r, AD_SHAPE(16), -0.5, 0.5);
    ad_tensor *w2 = rand_param(&r, AD_SHAPE(4, 16), -0.5, 0.5);
    ad_tensor *xt = rand_tensor(&r, AD_SHAPE(32, 8), -1, 1);
    int32_t labels[32];
    for (int i = 0; i < 32; i++) labels[i] = i % 4;
    ad_graph *g = ad_graph_new();
    ad_node *h = ad_linear_act(g, ad_const_tensor(g, xt), ad_param(g, w1), ad_param(g, b1), AD_ACT_RELU, 0);
    ad_node *L = ad_cross_entropy(g, ad_linear(g, h, ad_param(g, w2), NULL), labels);
    ad_node *xs = ad_var(g, "s", 0.5), *q = ad_sin(g, ad_mul(g, xs, xs));
    long before = 0;
    uint64_t used = 0;
    for (int step = 0; step < 20; step++) {
        if (step == 1) before = ad_alloc_count(), used = ad_graph_get_stats(g).bytes_used;
        ad_tensor_rand_uniform(xt, &r, -1, 1); /* the minibatch, in place */
        ad_set_value(g, xs, 0.1 * step);
        ck_assert_int_eq(ad_node_set_arg(g, L, labels), AD_OK);
        ck_assert_int_eq(ad_replay(g), AD_OK);
        ad_tensor_zero_grad(w1), ad_tensor_zero_grad(b1), ad_tensor_zero_grad(w2);
        ad_zero_grad(g);
        ck_assert_int_eq(ad_backward(g, L), AD_OK);
        ck_assert_int_eq(ad_backward(g, q), AD_OK);
    }
    ck_assert_int_eq(ad_alloc_count(), before);
    ck_assert_uint_eq(ad_graph_get_stats(g).bytes_used, used); /* not even from the arena */
    ad_graph_free(g);
    ad_tensor_free(w1), ad_tensor_free(b1), ad_tensor_free(w2), ad_tensor_free(xt);
}
END_TEST

/* ---- second order ---- */

static ad_node *rosen(ad_graph *g, ad_node *const *x, int n)
{
    ad_node *f = ad_const_scalar(g, 0);
    for (int i = 0; i + 1 < n; i++) {
        ad_node *t = ad_sub(g, x[i + 1], ad_square(g, x[i])), *u = ad_sub(g, ad_const_scalar(g, 1), x[i]);
        ad_node *term = ad_add(g, ad_mul(g, ad_const_scalar(g, 100), ad_square(g, t)), ad_square(g, u));
        /* a where, so that the gradient graph holds one too */
        f = ad_add(g, f, ad_where(g, ad_gt(g, x[i], ad_const_scalar(g, 10)), ad_mul(g, x[i], x[i]), term));
    }
    return f;
}

START_TEST(second_order_replayed)
{
    enum { N = 6 };
    double x0[N] = {-1.2, 1, 0.5, -0.3, 2, 0.1}, x1[N] = {0.3, -0.7, 1.1, 0.9, -2, 0.4};
    double v[N] = {1, -1, 0.5, 0.25, 2, -0.5};
    const double *vs[N];
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *x[N], *y[N], *gx[N], *gy[N];
    for (int i = 0; i < N; i++) x[i] = ad_var(g, "x", x0[i]), y[i] = ad_var(fresh, "x", x1[i]), vs[i] = &v[i];
    ad_node *f = rosen(g, x, N), *f2 = rosen(fresh, y, N);
    ck_assert_int_eq(ad_grad_graph(g, f, NULL, N, x, gx), AD_OK);
    ck_assert_int_eq(ad_grad_graph(fresh, f2, NULL, N, y, gy), AD_OK);
    for (int i = 0; i < N; i++) ad_set_value(g, x[i], x1[i]);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    /* the gradient graph, replayed, is the gradient at the new point; its JVP is H v */
    double hv1[N], hv2[N], s1[N], s2[N];
    double *o1[N], *o2[N];
    for (int i = 0; i < N; i++) o1[i] = &s1[i], o2[i] = &s2[i];
    uint32_t nodes = ad_graph_num_nodes(g);
    for (int i = 0; i < N; i++) {
        ck_assert(same_bits(ad_value(gx[i]), ad_value(gy[i])));
        ck_assert_int_eq(ad_jvp_graph(g, gx[i], N, x, vs), AD_OK);
        hv1[i] = ad_tangent_get(g, gx[i], 0);
        ck_assert_int_eq(ad_jvp_graph(fresh, gy[i], N, y, vs), AD_OK);
        hv2[i] = ad_tangent_get(fresh, gy[i], 0);
        ck_assert(same_bits(hv1[i], hv2[i]));
    }
    ck_assert_int_eq(ad_graph_num_nodes(g), nodes); /* forward over the replayed gradient: no node */
    /* ad_hvp_graph on the replayed values (it builds its own gradient graph: where is not a
     * scalar fast-path node) */
    ck_assert_int_eq(ad_hvp_graph(g, f, N, x, vs, o1), AD_OK);
    ck_assert_int_eq(ad_hvp_graph(fresh, f2, N, y, vs, o2), AD_OK);
    for (int i = 0; i < N; i++) {
        ck_assert(same_bits(s1[i], s2[i]));
        ck_assert_msg(fabs(s1[i] - hv1[i]) <= 1e-12 * (1 + fabs(hv1[i])), "%d: %.17g %.17g", i, s1[i], hv1[i]);
    }
    ad_graph_free(fresh);
    ad_graph_free(g);
}
END_TEST

START_TEST(anomaly_in_replay)
{
    ad_graph *g = ad_graph_new();
    ad_set_anomaly(g, true);
    ad_node *x = ad_var(g, "x", 2);
    ad_node *f = ad_log(g, x);
    (void)f;
    ad_set_value(g, x, -1);
    ck_assert_int_eq(ad_replay(g), AD_ERR_NUMERIC);
    ck_assert_msg(strstr(ad_error(g), "anomaly: log"), "%s", ad_error(g));
    ad_graph_free(g);
}
END_TEST

/* ---- workspaces ---- */

START_TEST(clone_replays_alone)
{
    ad_rng r;
    ad_rng_seed(&r, 9);
    ad_tensor *w = rand_param(&r, AD_SHAPE(3, 4), -1, 1), *b = rand_param(&r, AD_SHAPE(3), -1, 1);
    double x0[8], x1[8];
    for (int i = 0; i < 8; i++) x0[i] = ad_rng_uniform(&r), x1[i] = -ad_rng_uniform(&r);
    const int32_t l0[2] = {0, 2}, l1[2] = {1, 0};
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_const(g, AD_F64, AD_SHAPE(2, 4), x0);
    ad_node *L = classifier(g, w, b, ad_slice(g, x, 0, 0, 2), l0); /* a view slice too */
    ad_node *s = ad_var(g, "s", 0.5);
    ad_node *q = ad_where(g, ad_lt(g, s, ad_const_scalar(g, 0)), ad_neg(g, s), ad_exp(g, s));
    ad_graph *w1 = ad_graph_clone(g);
    ck_assert_ptr_nonnull(w1);
    ck_assert_int_eq(ad_graph_num_nodes(w1), ad_graph_num_nodes(g));
    ad_node *cx = ad_graph_node(w1, ad_node_id(x)), *cL = ad_graph_node(w1, ad_node_id(L));
    ad_node *cs = ad_graph_node(w1, ad_node_id(s)), *cq = ad_graph_node(w1, ad_node_id(q));
    ck_assert(same_bits(ad_value(cL), ad_value(L)));
    /* the workspace at new inputs and labels; the recording stays at the old */
    ad_set_data(w1, cx, x1);
    ad_node_set_arg(w1, cL, l1);
    ad_set_value(w1, cs, -2);
    ck_assert_int_eq(ad_replay(w1), AD_OK);
    ck_assert_int_eq(ad_backward(w1, cL), AD_OK);
    ck_assert_int_eq(ad_backward(w1, cq), AD_OK);
    ck_assert(ad_value(cq) == 2 && ad_grad(cs) == -1);
    ck_assert(same_bits(ad_value(q), exp(0.5)));
    for (int i = 0; i < 12; i++) ck_assert(ad_tensor_grad_get(w, i) == 0); /* the workspace keeps its own */
    /* the same replay on the recording: the same bits */
    double ws_value = ad_value(cL), ws_grad[12];
    ad_node *cw = ad_graph_node(w1, ad_node_id(ad_param_node(g, w)));
    for (int i = 0; i < 12; i++) ws_grad[i] = ad_node_grad_get(cw, i);
    ad_set_data(g, x, x1);
    ad_node_set_arg(g, L, l1);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert_int_eq(ad_backward(g, L), AD_OK);
    ck_assert(same_bits(ws_value, ad_value(L)));
    for (int i = 0; i < 12; i++) ck_assert(same_bits(ws_grad[i], ad_tensor_grad_get(w, i)));
    /* zeroing the workspace's gradients zeroes its parameters' too */
    ad_zero_grad(w1);
    ck_assert(ad_node_grad_get(cw, 0) == 0);
    /* a workspace of a workspace */
    ad_graph *w2 = ad_graph_clone(w1);
    ck_assert_ptr_nonnull(w2);
    ck_assert_int_eq(ad_replay(w2), AD_OK);
    ck_assert(same_bits(ad_value(ad_graph_node(w2, ad_node_id(L))), ws_value));
    ad_graph_free(w2);
    ad_graph_free(w1);
    /* dropout cannot be copied */
    ad_node *d = ad_dropout(g, ad_var_array(g, "z", AD_F64, AD_SHAPE(4), NULL), 0.5, true, &r);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_null(ad_graph_clone(g));
    ck_assert_msg(strstr(ad_error(g), "clone: node") && strstr(ad_error(g), "(dropout) cannot be copied"), "%s",
                  ad_error(g));
    ad_graph_free(g);
    ad_tensor_free(w), ad_tensor_free(b);
}
END_TEST

START_TEST(clone_out_of_memory)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_node *L = ad_cross_entropy(g, ad_reshape(g, x, AD_SHAPE(1, 3)), (const int32_t[]){2});
    ck_assert_ptr_nonnull(L);
    for (long k = 0;; k++) {
        ad_fail_alloc_at(ad_alloc_count() + k);
        ad_graph *w = ad_graph_clone(g);
        ad_fail_alloc_at(0);
        if (w) {
            ck_assert_int_eq(ad_replay(w), AD_OK);
            ck_assert(same_bits(ad_value(ad_graph_node(w, ad_node_id(L))), ad_value(L)));
            ad_graph_free(w);
            break;
        }
        ck_assert_int_eq(ad_status_of(g), AD_ERR_NOMEM);
        ad_clear_error(g);
    }
    ad_graph_free(g);
}
END_TEST

/* ---- programs ---- */

/* The every-op function compiled: the program's value and gradient are the graph's, bit for
 * bit, at every point (registered ops included). */
START_TEST(program_every_op)
{
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0.7), *y = ad_var(g, "y", 1.3), *in[2] = {x, y};
    ad_node *f = every_op(g, x, y);
    ad_program *p = ad_program_new(g, 1, &f, 2, in);
    ck_assert_msg(p != NULL, "%s", ad_error(g));
    ad_graph_free(g); /* the program stands alone */
    ad_program_ws *w = ad_program_ws_new(p);
    ck_assert_int_eq(ad_program_num_inputs(p), 2);
    ck_assert_int_eq(ad_program_num_roots(p), 1);
    const double pts[][2] = {{1.1, 0.4}, {0.4, 1.1}, {0.9, 0.9}, {2.5, -0.5}, {-0.3, 0.2}, {0, 0}};
    for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++) {
        double value, grad[2];
        ck_assert_int_eq(ad_program_gradient(p, w, pts[k], &value, grad), AD_OK);
        ad_graph_reset(fresh);
        ad_node *x2 = ad_var(fresh, "x", pts[k][0]), *y2 = ad_var(fresh, "y", pts[k][1]);
        ad_node *f2 = every_op(fresh, x2, y2);
        ck_assert_int_eq(ad_backward(fresh, f2), AD_OK);
        ck_assert_msg(same_bits(value, ad_value(f2)), "point %zu: %.17g vs %.17g", k, value, ad_value(f2));
        ck_assert_msg(same_bits(grad[0], ad_grad(x2)) && same_bits(grad[1], ad_grad(y2)),
                      "point %zu: (%.17g, %.17g) vs (%.17g, %.17g)", k, grad[0], grad[1], ad_grad(x2), ad_grad(y2));
    }
    ad_program_ws_free(w);
    ad_program_free(p);
    ad_graph_free(fresh);
}
END_TEST

/* Two roots with where, a guard and a branch a root does not depend on: the Jacobian by rows,
 * against the graph's sweeps; then a guard that changes. */
static void two_roots(ad_graph *g, ad_node *const *x, ad_node **r)
{
    ad_node *zero = ad_const_scalar(g, 0);
    ad_node *s = ad_where(g, ad_gt(g, x[0], zero), ad_log(g, x[0]), ad_mul(g, x[0], x[1]));
    r[0] = ad_add(g, s, ad_sin(g, x[2]));
    r[1] = ad_mul(g, ad_exp(g, x[1]), ad_sqrt(g, x[2])); /* sqrt: infinite slope at 0 */
    if (ad_branch(g, ad_lt(g, x[2], ad_const_scalar(g, 10)))) r[1] = ad_add(g, r[1], x[0]);
}

START_TEST(program_jacobian_rows)
{
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *x[3], *r[2];
    for (int i = 0; i < 3; i++) x[i] = ad_var(g, "x", 0.5 + i);
    two_roots(g, x, r);
    ad_program *p = ad_program_new(g, 2, r, 3, x);
    ck_assert_msg(p != NULL, "%s", ad_error(g));
    ad_program_ws *w = ad_program_ws_new(p);
    const double pts[][3] = {{0.5, 1, 2}, {-1, 2, 0}, {2, -1, 3}, {0, 0, 0}};
    for (size_t k = 0; k < 4; k++) {
        double value[2], J[6];
        ck_assert_int_eq(ad_program_jacobian(p, w, pts[k], value, J), AD_OK);
        for (int row = 0; row < 2; row++) {
            ad_graph_reset(fresh);
            ad_node *y[3], *q[2];
            for (int i = 0; i < 3; i++) y[i] = ad_var(fresh, "x", pts[k][i]);
            two_roots(fresh, y, q);
            ck_assert_int_eq(ad_backward(fresh, q[row]), AD_OK);
            ck_assert(same_bits(value[row], ad_value(q[row])));
            for (int i = 0; i < 3; i++)
                ck_assert_msg(same_bits(J[row * 3 + i], ad_grad(y[i])), "point %zu row %d input %d: %.17g vs %.17g", k,
                              row, i, J[row * 3 + i], ad_grad(y[i]));
        }
    }
    /* x2 >= 10: the recorded branch is wrong there */
    ck_assert_int_eq(ad_program_jacobian(p, w, (double[]){1, 1, 12}, NULL, NULL), AD_ERR_RETAPE);
    ck_assert_msg(strstr(ad_program_ws_error(w), "branch on lt node") &&
                      strstr(ad_program_ws_error(w), "was true when recorded and is false now"),
                  "%s", ad_program_ws_error(w));
    ck_assert_int_eq(ad_program_gradient(p, w, (double[]){1, 1, 1}, NULL, NULL), AD_ERR_ARG); /* two roots */
    {   /* a guard on an input itself */
        ad_graph *h = ad_graph_new();
        ad_node *z = ad_var(h, "z", 1), *q = ad_branch(h, z) ? ad_exp(h, z) : ad_neg(h, z);
        ad_program *pz = ad_program_new(h, 1, &q, 1, &z);
        ad_program_ws *wz = ad_program_ws_new(pz);
        ck_assert_int_eq(ad_program_gradient(pz, wz, (double[]){2}, NULL, NULL), AD_OK);
        ck_assert_int_eq(ad_program_gradient(pz, wz, (double[]){0}, NULL, NULL), AD_ERR_RETAPE);
        ck_assert_msg(strstr(ad_program_ws_error(wz), "branch on leaf node 0"), "%s", ad_program_ws_error(wz));
        ad_program_ws_free(wz);
        ad_program_free(pz);
        ad_graph_free(h);
    }
    ck_assert_int_eq(ad_program_jacobian(p, w, (double[]){1, 1, 1}, NULL, NULL), AD_OK);
    ck_assert_ptr_null(ad_program_ws_error(w));
    ad_program_ws_free(w);
    ad_program_free(p);
    ad_graph_free(fresh);
    ad_graph_free(g);
}
END_TEST

/* cross_entropy's gradient as a graph, built once: new labels (ad_node_set_arg) must reach its
 * one-hot rows at the next replay, as they reach the loss. */
START_TEST(ce_grad_graph_follows_labels)
{
    const double z0[6] = {0.1, -0.4, 0.7, 1.2, 0.3, -0.8};
    const int32_t l0[2] = {0, 2}, l1[2] = {1, 0};
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *z = ad_var_array(g, "z", AD_F64, AD_SHAPE(2, 3), z0), *gz;
    ad_node *L = ad_cross_entropy(g, z, l0);
    ck_assert_int_eq(ad_grad_graph(g, L, NULL, 1, &z, &gz), AD_OK);
    ck_assert_int_eq(ad_node_set_arg(g, L, l1), AD_OK);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ad_node *z2 = ad_var_array(fresh, "z", AD_F64, AD_SHAPE(2, 3), z0), *gz2;
    ad_node *L2 = ad_cross_entropy(fresh, z2, l1);
    ck_assert_int_eq(ad_grad_graph(fresh, L2, NULL, 1, &z2, &gz2), AD_OK);
    ck_assert(same_bits(ad_value(L), ad_value(L2)));
    for (int i = 0; i < 6; i++)
        ck_assert_msg(same_bits(ad_node_get(gz, i), ad_node_get(gz2, i)), "element %d: replayed %.17g, recorded %.17g",
                      i, ad_node_get(gz, i), ad_node_get(gz2, i));
    ad_graph_free(fresh);
    ad_graph_free(g);
}
END_TEST

START_TEST(program_refuses)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1), *v = ad_var_array(g, "v", AD_F64, AD_SHAPE(3), NULL);
    ad_node *t = ad_add(g, x, ad_sum(g, v));
    ck_assert_ptr_null(ad_program_new(g, 1, &t, 1, &x));
    ck_assert_msg(strstr(ad_error(g), "program: node") && strstr(ad_error(g), "(sum, float64 [])"), "%s", ad_error(g));
    ad_clear_error(g);
    ad_node *f = ad_mul(g, x, x);
    ck_assert_ptr_null(ad_program_new(g, 1, &f, 1, &v)); /* a tensor input */
    ck_assert_msg(strstr(ad_error(g), "input 0 is not a float64 scalar leaf"), "%s", ad_error(g));
    ad_clear_error(g);
    ck_assert_ptr_null(ad_program_new(g, 0, &f, 1, &x));
    ck_assert_int_eq(ad_status_of(g), AD_ERR_ARG);
    ad_clear_error(g);
    /* out of memory at every allocation of a compilation and of a workspace */
    for (long k = 0;; k++) {
        ad_fail_alloc_at(ad_alloc_count() + k);
        ad_program *p = ad_program_new(g, 1, &f, 1, &x);
        ad_program_ws *w = p ? ad_program_ws_new(p) : NULL;
        ad_fail_alloc_at(0);
        if (w) {
            double value, grad;
            ck_assert_int_eq(ad_program_gradient(p, w, (double[]){3}, &value, &grad), AD_OK);
            ck_assert(value == 9 && grad == 6);
            ad_program_ws_free(w);
            ad_program_free(p);
            break;
        }
        ad_program_free(p);
        ad_clear_error(g);
    }
    ck_assert_int_eq(ad_program_gradient(NULL, NULL, NULL, NULL, NULL), AD_ERR_NULL);
    ad_graph_free(g);
}
END_TEST

/* A user op whose state holds a pointer (here to its input node): a workspace's copy would
 * point into the recording, which other threads share.  ad.h: clone refuses such an op. */
typedef struct { ad_node *in; } keep_state;
static void keep_forward(const ad_op_ctx *c)
{
    keep_state *st = c->state;
    st->in = c->in[0];
    ad_data_set(ad_node_data(c->out), AD_F64, 0, 2 * ad_data_get(ad_node_data(st->in), AD_F64, 0));
}

START_TEST(clone_refuses_stateful_user_op)
{
    static int op = -2;
    if (op == -2) op = ad_op_register(&(ad_op_def){.name = "replay_keep", .arity = 1, .forward = keep_forward,
                                                    .state_size = sizeof(keep_state)});
    ck_assert_int_ge(op, 0);
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1.5);
    ad_node *y = ad_apply(g, op, &x, 1, NULL, 0);
    ck_assert_ptr_nonnull(y);
    ad_graph *w = ad_graph_clone(g);
    if (w) { /* what the copy would do: write the recording's node from the workspace */
        ad_set_value(w, ad_graph_node(w, ad_node_id(x)), 4);
        ad_replay(w);
        ad_graph_free(w);
    }
    ck_assert_msg(!w, "a user op with state was copied into a workspace");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_ARG);
    ck_assert_msg(strstr(ad_error(g), "replay_keep"), "%s", ad_error(g));
    ad_graph_free(g);
}
END_TEST

/* nn_step with a loss that branches (ad_branch) on the batch: a batch that goes the other way
 * is recorded again, as AD_ERR_RETAPE asks, not reported as a failed step. */
static ad_node *branchy_loss(ad_graph *g, ad_node *x, const int32_t *labels, ad_node *y, void *user)
{
    (void)labels, (void)y;
    ad_node *w = ad_param(g, user), *s = ad_sum(g, ad_mul(g, x, w));
    if (ad_branch(g, ad_gt(g, s, ad_const_scalar(g, 0)))) return ad_square(g, s);
    return ad_neg(g, s);
}

START_TEST(nn_step_rerecords_on_retape)
{
    ad_tensor *w = ad_param_new("w", AD_F64, AD_SHAPE(2, 2)), *x = ad_tensor_new(AD_F64, AD_SHAPE(2, 2));
    for (int i = 0; i < 4; i++) ad_tensor_set(w, i, 0.5 + i), ad_tensor_set(x, i, 1);
    nn_step *s = nn_step_new(branchy_loss, w);
    nn_batch b = {x, NULL, NULL, 2};
    double loss;
    ck_assert_int_eq(nn_step_run(s, &b, &loss), AD_OK);
    ck_assert(loss == 64);
    for (int i = 0; i < 4; i++) ad_tensor_set(x, i, -1); /* the next batch, in place */
    ck_assert_msg(nn_step_run(s, &b, &loss) == AD_OK, "%s", ad_error(nn_step_graph(s)));
    ck_assert(loss == 8);
    int64_t rec, rep;
    nn_step_counts(s, &rec, &rep);
    ck_assert(rec == 2 && rep == 0);
    ck_assert_int_eq(nn_step_run(s, &b, &loss), AD_OK); /* and replays that recording */
    nn_step_counts(s, &rec, &rep);
    ck_assert(loss == 8 && rec == 2 && rep == 1);
    nn_step_free(s);
    ad_tensor_free(w), ad_tensor_free(x);
}
END_TEST

/* A loss through the three indexing ops and a detach, of x [4,5]: nodes[] gets the indexing
 * nodes, whose indices ad_node_set_arg replaces. */
static ad_node *indexed_loss(ad_graph *g, ad_node *x, const int64_t *const idx[3], ad_node **nodes)
{
    nodes[0] = ad_index_select(g, x, 1, idx[0], 3);
    nodes[1] = ad_gather(g, x, 0, AD_SHAPE(2, 5), idx[1]);
    nodes[2] = ad_embedding(g, x, AD_SHAPE(3), idx[2]);
    ad_node *a = ad_sum(g, ad_mul(g, ad_square(g, nodes[0]), nodes[0]));
    ad_node *b = ad_sum(g, ad_square(g, nodes[1]));
    ad_node *c = ad_sum(g, ad_mul(g, ad_sin(g, nodes[2]), ad_detach(g, nodes[2])));
    return ad_add(g, ad_add(g, a, b), c);
}

/* New indices by ad_node_set_arg reach the loss, its backward and its gradient graph (whose
 * index_add and index_take nodes read them from the indexing nodes), in the graph and in a
 * workspace, with the bits of a recording at those indices; detach is a view of its input's
 * values that a replay leaves alone, and carries no gradient and no tangent. */
START_TEST(indices_by_set_arg)
{
    const int64_t s0[3] = {4, 0, 4}, g0[10] = {0, 1, 2, 3, 0, 3, 2, 1, 0, 3}, i0[3] = {1, 1, 3};
    const int64_t s1[3] = {-1, 2, 2}, g1[10] = {3, 3, 3, 3, 3, 0, 0, 1, 1, 2}, i1[3] = {0, -2, 0};
    const int64_t *const idx0[3] = {s0, g0, i0}, *const idx1[3] = {s1, g1, i1};
    double x0[20], x1[20];
    for (int i = 0; i < 20; i++) x0[i] = 0.1 * i - 0.7, x1[i] = 0.9 - 0.07 * i;
    ad_graph *g = ad_graph_new(), *fresh = ad_graph_new();
    ad_node *nodes[3], *nodes2[3], *gx, *gx2;
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(4, 5), x0);
    ad_node *L = indexed_loss(g, x, idx0, nodes);
    ck_assert_int_eq(ad_grad_graph(g, L, NULL, 1, &x, &gx), AD_OK);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(ad_node_set_arg(g, nodes[k], &(ad_index){idx1[k], k == 1 ? 10 : 3}), AD_OK);
    ck_assert_int_eq(ad_set_data(g, x, x1), AD_OK);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert_int_eq(ad_backward(g, L), AD_OK);
    ad_node *x2 = ad_var_array(fresh, "x", AD_F64, AD_SHAPE(4, 5), x1);
    ad_node *L2 = indexed_loss(fresh, x2, idx1, nodes2);
    ck_assert_int_eq(ad_grad_graph(fresh, L2, NULL, 1, &x2, &gx2), AD_OK);
    ck_assert_int_eq(ad_backward(fresh, L2), AD_OK);
    ck_assert(same_bits(ad_value(L), ad_value(L2)));
    for (int i = 0; i < 20; i++) {
        ck_assert(same_bits(ad_node_grad_get(x, i), ad_node_grad_get(x2, i)));
        ck_assert_msg(same_bits(ad_node_get(gx, i), ad_node_get(gx2, i)), "element %d: replayed %.17g, recorded %.17g",
                      i, ad_node_get(gx, i), ad_node_get(gx2, i));
    }
    /* a workspace copies the indices: new ones there leave the recording's alone */
    ad_graph *w = ad_graph_clone(g);
    ck_assert_ptr_nonnull(w);
    ad_node *wx = ad_graph_node(w, ad_node_id(x)), *wL = ad_graph_node(w, ad_node_id(L));
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(ad_node_set_arg(w, ad_graph_node(w, ad_node_id(nodes[k])), &(ad_index){idx0[k], k == 1 ? 10 : 3}),
                         AD_OK);
    ck_assert_int_eq(ad_set_data(w, wx, x0), AD_OK);
    ck_assert_int_eq(ad_replay(w), AD_OK);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert(same_bits(ad_value(L), ad_value(L2)));
    ad_graph_reset(fresh);
    x2 = ad_var_array(fresh, "x", AD_F64, AD_SHAPE(4, 5), x0);
    ck_assert(same_bits(ad_value(wL), ad_value(indexed_loss(fresh, x2, idx0, nodes2))));
    ad_graph_free(w);
    /* detach: a view, the same values after a replay, no gradient, a zero tangent */
    ad_node *d = ad_detach(g, x), *y = ad_mul(g, x, d);
    ck_assert_ptr_eq(ad_node_data(d), ad_node_data(x));
    ck_assert(!ad_node_needs_grad(d));
    ck_assert_int_eq(ad_set_data(g, x, x0), AD_OK);
    ck_assert_int_eq(ad_replay(g), AD_OK);
    ck_assert(ad_node_get(d, 7) == x0[7] && ad_node_get(y, 7) == x0[7] * x0[7]);
    ad_zero_grad(g);
    ck_assert_int_eq(ad_backward(g, ad_sum(g, y)), AD_OK);
    ck_assert(ad_node_grad_get(x, 7) == x0[7]);
    double v[20];
    for (int i = 0; i < 20; i++) v[i] = 1;
    ck_assert_int_eq(ad_jvp_graph(g, y, 1, &x, (const double *const[]){v}), AD_OK);
    ck_assert(ad_tangent_get(g, d, 7) == 0 && ad_tangent_get(g, y, 7) == x0[7]);
    ad_node *s = ad_var(g, "s", 3), *ds = ad_detach(g, s), *gs; /* a float64 scalar is copied */
    ck_assert_int_eq(ad_grad_graph(g, ad_mul(g, s, ds), NULL, 1, &s, &gs), AD_OK);
    ck_assert(ad_value(ds) == 3 && ad_value(gs) == 3);
    ad_graph_free(fresh);
    ad_graph_free(g);
}
END_TEST

/* Batch norm in training: each replay is one forward pass, so it moves the running statistics
 * once, from the new batch, as a fresh recording at that batch moves a second pair of
 * tensors, with the same bits in the statistics, the output and the gradient.  A workspace
 * would share the tensors, so ad_graph_clone refuses the graph; an evaluation graph replayed
 * reads the statistics as they are then. */
static ad_node *bn_loss(ad_graph *g, const double *v, ad_tensor *rm, ad_tensor *rv, ad_node **x, ad_node **y)
{
    static const double w[8] = {0.3, -1.2, 0.7, 0.1, -0.4, 0.9, 1.5, -0.8};
    *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(4, 2), v);
    *y = ad_batch_norm(g, *x, NULL, NULL, rm, rv, true, 0.1, 1e-5);
    return ad_sum(g, ad_mul(g, ad_square(g, *y), ad_const(g, AD_F64, AD_SHAPE(4, 2), w)));
}

START_TEST(batch_norm_replay_updates_running_stats_once)
{
    ad_tensor *rm = ad_tensor_new(AD_F64, AD_SHAPE(2)), *rv = ad_tensor_new(AD_F64, AD_SHAPE(2));
    ad_tensor *rm2 = ad_tensor_new(AD_F64, AD_SHAPE(2)), *rv2 = ad_tensor_new(AD_F64, AD_SHAPE(2));
    ad_tensor_fill(rv, 1), ad_tensor_fill(rv2, 1);
    double v[8] = {1, 10, 2, 25, 3, 30, 4.5, 40};
    ad_graph *g = ad_graph_new(), *e = ad_graph_new();
    ad_node *x, *y, *L = bn_loss(g, v, rm, rv, &x, &y);
    ad_node *ev = ad_batch_norm(e, ad_const(e, AD_F64, AD_SHAPE(4, 2), v), NULL, NULL, rm, rv, false, 0.1, 1e-5);
    for (int step = 0; step < 4; step++) {
        if (step) {
            for (int i = 0; i < 8; i++) v[i] = v[i] * 1.1 + (i % 3) - 1; /* the next batch */
            ck_assert_int_eq(ad_set_data(g, x, v), AD_OK);
            ck_assert_int_eq(ad_replay(g), AD_OK);
        }
        ad_zero_grad(g);
        ck_assert_int_eq(ad_backward(g, L), AD_OK);
        ad_graph *fresh = ad_graph_new();
        ad_node *x2, *y2, *L2 = bn_loss(fresh, v, rm2, rv2, &x2, &y2);
        ck_assert_int_eq(ad_backward(fresh, L2), AD_OK);
        for (int c = 0; c < 2; c++)
            ck_assert_msg(same_bits(ad_tensor_get(rm, c), ad_tensor_get(rm2, c)) &&
                              same_bits(ad_tensor_get(rv, c), ad_tensor_get(rv2, c)),
                          "step %d channel %d: running mean %.17g var %.17g, recorded %.17g %.17g", step, c,
                          ad_tensor_get(rm, c), ad_tensor_get(rv, c), ad_tensor_get(rm2, c), ad_tensor_get(rv2, c));
        ck_assert(same_bits(ad_value(L), ad_value(L2)));
        for (int i = 0; i < 8; i++)
            ck_assert(same_bits(ad_node_get(y, i), ad_node_get(y2, i)) &&
                      same_bits(ad_node_grad_get(x, i), ad_node_grad_get(x2, i)));
        ad_graph_free(fresh);
        ck_assert_int_eq(ad_replay(e), AD_OK); /* evaluation by the statistics of now */
        double want = (1 - ad_tensor_get(rm, 0)) / sqrt(ad_tensor_get(rv, 0) + 1e-5);
        ck_assert_double_eq_tol(ad_node_get(ev, 0), want, 1e-15);
    }
    ck_assert_ptr_null(ad_graph_clone(g));
    ck_assert_msg(strstr(ad_error(g), "batch_norm in training writes its running statistics"), "%s", ad_error(g));
    ad_graph_free(g), ad_graph_free(e);
    ad_tensor_free(rm), ad_tensor_free(rv), ad_tensor_free(rm2), ad_tensor_free(rv2);
}
END_TEST

/* ==== elementwise fusion (ad_set_fusion; issue 19, part 3) ==== */

#include "bench/rosenbrock.h"
#include <stdio.h>
#include <stdlib.h>

/* Random chains of elementwise ops, fused and not: one graph of each, made by the same calls. */
enum { FZ_CASE_OPS = 24 };

typedef struct {
    ad_graph *g;
    ad_tensor *pt;                  /* a parameter of the graph's own */
    ad_node *leaf[8];               /* those with gradients */
    int nleaf;
    ad_node *pool[64];              /* nodes of the case's shape, finite, for more ops */
    int npool;
    ad_node *named[8];
    int nnamed;
    ad_node *root;
} fz_case;

/* The smallest and largest element of n, or false if one is not finite. */
static bool fz_range(ad_node *n, double *lo, double *hi)
{
    *lo = INFINITY, *hi = -INFINITY;
    for (int64_t i = 0; i < ad_node_size(n); i++) {
        double v = ad_node_get(n, i);
        if (!isfinite(v) || fabs(v) > 1e4) return false;
        *lo = fmin(*lo, v), *hi = fmax(*hi, v);
    }
    return true;
}

/* Op k of a random chain on a (and b, or a broadcast operand), or NULL where its inputs' values
 * are outside the op's comfortable domain (so that replays nearby stay finite). */
static ad_node *fz_op(ad_graph *g, int k, ad_node *a, ad_node *b, double c)
{
    double lo, hi, blo, bhi;
    fz_range(a, &lo, &hi);
    fz_range(b, &blo, &bhi);
    switch (k) {
    case 0: return ad_add(g, a, b);
    case 1: return ad_sub(g, a, b);
    case 2: return ad_mul(g, a, b);
    case 3: return blo > 0.2 ? ad_div(g, a, b) : NULL;
    case 4: return ad_max(g, a, b);
    case 5: return ad_min(g, a, b);
    case 6: return lo > 0.2 && hi < 10 && fabs(blo) < 3 && fabs(bhi) < 3 ? ad_pow(g, a, b) : NULL;
    case 7: return ad_lt(g, a, b);
    case 8: return ad_ge(g, a, b);
    case 9: return ad_ne(g, a, b);
    case 10: return ad_neg(g, a);
    case 11: return hi < 8 ? ad_exp(g, a) : NULL;
    case 12: return lo > 0.05 ? ad_log(g, a) : NULL;
    case 13: return lo > 0.05 ? ad_sqrt(g, a) : NULL;
    case 14: return ad_sin(g, a);
    case 15: return ad_tanh(g, a);
    case 16: return ad_sigmoid(g, a);
    case 17: return ad_relu(g, a);
    case 18: return ad_abs(g, a);
    case 19: return ad_square(g, a);
    case 20: return ad_softplus(g, a);
    case 21: return ad_gelu(g, a);
    case 22: return ad_silu(g, a);
    case 23: return ad_leaky_relu(g, a, 0.125);
    case 24: return lo > 0.2 ? ad_recip(g, a) : NULL;
    case 25: return ad_mul_scalar(g, a, c);
    case 26: return ad_add_scalar(g, a, c);
    case 27: return lo > 0.2 && hi < 10 ? ad_pow_scalar(g, a, 1.5 + c) : NULL;
    case 28: return ad_erf(g, a);
    case 29: return lo > -0.9 ? ad_log1p(g, a) : NULL;
    case 30: return ad_mul(g, a, a);
    default: return ad_cos(g, a);
    }
}

static const double fz_consts[] = {0.5, -1.25, 3.0, 0.75};

/* The case's leaves: variables, a constant and a parameter of the shape, broadcast operands
 * (a row, a column, a float64 scalar), and for vectors three overlapping slices of a longer
 * variable; their values are drawn from r. */
static void fz_leaves(fz_case *c, ad_dtype t, ad_shape s, ad_rng *r, ad_node **bcast, int *nb)
{
    ad_graph *g = c->g;
    int64_t n = ad_shape_size(&s);
    double *v = malloc((size_t)(n + 2) * sizeof *v);
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; i < n; i++) v[i] = 0.5 + ad_rng_uniform(r);
        c->pool[c->npool++] = c->leaf[c->nleaf++] = ad_var_array(g, k ? "x1" : "x0", t, s, v);
    }
    for (int64_t i = 0; i < n; i++) v[i] = 2 * ad_rng_uniform(r) - 1;
    c->pool[c->npool++] = ad_const(g, t, s, v);
    c->pt = ad_param_new("p", t, s);
    for (int64_t i = 0; i < n; i++) ad_tensor_set(c->pt, i, 2 * ad_rng_uniform(r) - 1);
    c->pool[c->npool++] = ad_param(g, c->pt);
    *nb = 0;
    ad_shape row = {1, {s.dim[s.rank - 1]}};
    for (int64_t i = 0; i < row.dim[0]; i++) v[i] = 0.5 + ad_rng_uniform(r);
    bcast[(*nb)++] = c->leaf[c->nleaf++] = ad_var_array(g, "row", t, row, v);
    if (s.rank > 1) {
        ad_shape col = s;
        for (int d = 1; d < s.rank; d++) col.dim[d] = 1;
        for (int64_t i = 0; i < col.dim[0]; i++) v[i] = ad_rng_uniform(r) - 0.5;
        bcast[(*nb)++] = ad_const(g, t, col, v);
    }
    if (t == AD_F64) bcast[(*nb)++] = c->leaf[c->nleaf++] = ad_var(g, "s", 0.75);
    if (s.rank == 1) {
        for (int64_t i = 0; i < n + 2; i++) v[i] = 0.5 + ad_rng_uniform(r);
        ad_node *z = c->leaf[c->nleaf++] = ad_var_array(g, "z", t, AD_SHAPE(n + 2), v);
        int first = (int)(ad_rng_next(r) % 3); /* offsets rising or falling with the ids */
        for (int k = 0; k < 3; k++) c->pool[c->npool++] = ad_slice(g, z, 0, (first + 2 * k) % 3, n + (first + 2 * k) % 3);
    }
    free(v);
}

/* Case `seed` on c->g: leaves, FZ_CASE_OPS random ops on the pool (a node whose values are not
 * finite leaves it), now and then a sum along axis 0 used later as a broadcast operand (a node
 * used outside its chain) or a name, then the loss: the sum or mean of the last node, plus on
 * odd seeds the sum of an earlier one. */
static void fz_build(fz_case *c, uint64_t seed, ad_dtype t, ad_shape s)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    ad_graph *g = c->g;
    ad_node *bcast[8];
    int nb;
    fz_leaves(c, t, s, &r, bcast, &nb);
    for (int k = 0; k < FZ_CASE_OPS; k++) {
        ad_node *a = c->pool[ad_rng_next(&r) % (uint64_t)c->npool];
        int op = (int)(ad_rng_next(&r) % 32), how = (int)(ad_rng_next(&r) % 8);
        ad_node *b = how < 5 ? c->pool[ad_rng_next(&r) % (uint64_t)c->npool] : bcast[ad_rng_next(&r) % (uint64_t)nb];
        ad_node *y = how == 7 ? fz_op(g, op, b, a, 0) : fz_op(g, op, a, b, fz_consts[k % 4]);
        double lo, hi;
        ck_assert_msg(ad_status_of(g) == AD_OK, "seed %llu: %s", (unsigned long long)seed, ad_error(g));
        if (!y || !fz_range(y, &lo, &hi) || ad_node_size(y) != ad_shape_size(&s)) continue;
        c->pool[c->npool++] = y;
        if (how == 5 && s.rank > 1 && nb < 8) bcast[nb++] = ad_sum_axis(g, y, 0, true);
        if (how == 6 && c->nnamed < 8) {
            ad_set_name(g, y, "kept");
            c->named[c->nnamed++] = y;
        }
    }
    ad_node *last = c->pool[c->npool - 1];
    c->root = seed % 3 ? ad_sum(g, last) : ad_mean(g, last);
    if (seed % 2) c->root = ad_add(g, c->root, ad_sum(g, c->pool[c->npool / 2]));
    ck_assert_msg(ad_status_of(g) == AD_OK, "seed %llu: %s", (unsigned long long)seed, ad_error(g));
}

/* Leaf values moved by a factor 1 + e, for a replay at a new point. */
static void fz_move(fz_case *c, double e)
{
    for (int k = 0; k < c->nleaf; k++) {
        ad_node *l = c->leaf[k];
        void *d = ad_node_data(l);
        for (int64_t i = 0; i < ad_node_size(l); i++)
            ad_data_set(d, ad_node_dtype(l), i, ad_data_get(d, ad_node_dtype(l), i) * (1 + e));
    }
    for (int64_t i = 0; i < ad_tensor_size(c->pt); i++) ad_tensor_set(c->pt, i, ad_tensor_get(c->pt, i) * (1 + e));
}

/* The same bits in two buffers of like's size and dtype (two NULLs, two absent gradients, are
 * the same too). */
static bool fz_same(const void *a, const void *b, ad_node *like)
{
    if (!a || !b) return !a && !b;
    return !memcmp(a, b, (size_t)ad_node_size(like) * ad_dtype_size(ad_node_dtype(like)));
}

static void fz_step(fz_case *c)
{
    ck_assert_int_eq(ad_replay(c->g), AD_OK);
    ad_zero_grad(c->g);
    ad_tensor_zero_grad(c->pt);
    ck_assert_int_eq(ad_backward(c->g, c->root), AD_OK);
}

/* Both graphs replayed and swept at the same points: every value and gradient either keeps
 * (the root, leaves, named nodes) is the same bits; an inner node's gradient is absent or the
 * same; turning fusion off makes every value the same. Returns how many pool nodes had no
 * gradient in the fused graph (inner nodes). */
static int fz_compare(uint64_t seed, ad_dtype t, ad_shape s)
{
    fz_case A = {.g = ad_graph_new()}, B = {.g = ad_graph_new()};
    fz_build(&A, seed, t, s);
    fz_build(&B, seed, t, s);
    ck_assert(!ad_set_fusion(B.g, true));
    int inner = 0;
    for (int pass = 0; pass < 2; pass++) {
        fz_move(&A, pass ? -1e-3 : 2e-3), fz_move(&B, pass ? -1e-3 : 2e-3);
        fz_step(&A), fz_step(&B);
        double va = ad_value(A.root), vb = ad_value(B.root);
        ck_assert_msg(same_bits(va, vb), "seed %llu: loss %.17g fused, %.17g not", (unsigned long long)seed, vb, va);
        for (int k = 0; k < A.nleaf; k++)
            ck_assert_msg(fz_same(ad_node_grad_data(A.leaf[k]), ad_node_grad_data(B.leaf[k]), A.leaf[k]),
                          "seed %llu %s: gradient of leaf %s differs", (unsigned long long)seed, ad_dtype_name(t),
                          ad_node_name(A.leaf[k]));
        ck_assert(fz_same(ad_tensor_grad_data(A.pt), ad_tensor_grad_data(B.pt), A.pool[3]));
        for (int k = 0; k < A.nnamed; k++) {
            ck_assert(fz_same(ad_node_data(A.named[k]), ad_node_data(B.named[k]), A.named[k]));
            ck_assert(fz_same(ad_node_grad_data(A.named[k]), ad_node_grad_data(B.named[k]), A.named[k]));
        }
        inner = 0;
        for (int k = 0; k < A.npool; k++) {
            void *ga = ad_node_grad_data(A.pool[k]), *gb = ad_node_grad_data(B.pool[k]);
            if (ga && !gb) inner++;
            else ck_assert_msg(fz_same(ga, gb, A.pool[k]), "seed %llu: gradient of node %u differs",
                               (unsigned long long)seed, ad_node_id(A.pool[k]));
        }
    }
    ck_assert(ad_set_fusion(B.g, false)); /* writes the inner values */
    for (int k = 0; k < A.npool; k++)
        ck_assert_msg(fz_same(ad_node_data(A.pool[k]), ad_node_data(B.pool[k]), A.pool[k]),
                      "seed %llu: value of node %u differs", (unsigned long long)seed, ad_node_id(A.pool[k]));
    ad_graph_free(A.g), ad_graph_free(B.g);
    ad_tensor_free(A.pt), ad_tensor_free(B.pt);
    return inner;
}

START_TEST(fuse_random_chains)
{
    const ad_shape shapes[] = {AD_SHAPE(1), AD_SHAPE(7), AD_SHAPE(1000), AD_SHAPE(9, 131), AD_SHAPE(3, 4, 67),
                               AD_SHAPE(40000)};
    int was = ad_get_threads(), inner = 0;
    for (int threads = 1; threads <= 2; threads++) {
        ad_set_threads(threads);
        for (uint64_t seed = 1; seed <= 24; seed++) {
            ad_shape s = shapes[seed % 6];
            if (s.rank == 1 && s.dim[0] == 40000 && seed > 12) continue; /* a few large ones */
            inner += fz_compare(seed, AD_F64, s);
            inner += fz_compare(seed, AD_F32, s);
        }
    }
    ad_set_threads(was);
    ck_assert_int_gt(inner, 50); /* fusion happened */
}
END_TEST

/* Tensor Rosenbrock: the benchmark's graph, fused and not, at several lengths (one tile, a
 * partial tile, several sum blocks) and thread counts: the same loss and gradient bits. */
START_TEST(fuse_rosenbrock_same_bits)
{
    const int lengths[] = {2, 3, 33, 1001, 100000};
    int was = ad_get_threads();
    for (int threads = 1; threads <= 2; threads++) {
        ad_set_threads(threads);
        for (int k = 0; k < 5; k++) {
            int n = lengths[k];
            double *x = malloc((size_t)n * sizeof *x);
            for (int i = 0; i < n; i++) x[i] = 0.5 + 1e-6 * i;
            ad_graph *a = ad_graph_new(), *b = ad_graph_new();
            ad_node *xa = ad_var_array(a, "x", AD_F64, AD_SHAPE(n), x), *ya = rosenbrock_tensor(a, xa, n);
            ad_node *xb = ad_var_array(b, "x", AD_F64, AD_SHAPE(n), x), *yb = rosenbrock_tensor(b, xb, n);
            ad_set_fusion(b, true);
            for (int pass = 0; pass < 3; pass++) {
                for (int i = 0; i < n; i++) x[i] *= pass == 1 ? 0.999 : 1.002;
                ck_assert_int_eq(ad_set_data(a, xa, x), AD_OK);
                ck_assert_int_eq(ad_set_data(b, xb, x), AD_OK);
                ck_assert_int_eq(ad_replay(a), AD_OK);
                ck_assert_int_eq(ad_replay(b), AD_OK);
                ad_zero_grad(a), ad_zero_grad(b);
                ck_assert_int_eq(ad_backward(a, ya), AD_OK);
                ck_assert_int_eq(ad_backward(b, yb), AD_OK);
                ck_assert(same_bits(ad_value(ya), ad_value(yb)));
                ck_assert_msg(fz_same(ad_node_grad_data(xa), ad_node_grad_data(xb), xa), "n %d pass %d", n, pass);
            }
            ad_graph_free(a), ad_graph_free(b);
            free(x);
        }
    }
    ad_set_threads(was);
}
END_TEST

/* What can be read of a fused graph, against the same graph unfused: y = sum(exp(p) + t) with
 * p = x*x (inner), t = tanh(x) named (kept), q = p*3 used by a sum along an axis (outside its
 * chain, so kept).  After a fused replay and sweep: the loss, x's gradient, t's and q's values
 * and gradients are the unfused bits; p has no gradient buffer.  A node recorded from p, a
 * trace, a workspace, a search for non-finite values and turning fusion off all see p's current
 * value; anomaly mode sweeps unfused, with every gradient. */
static ad_node *fz_small(ad_graph *g, const double *x0, ad_node **x, ad_node **p, ad_node **t, ad_node **q)
{
    *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(4, 5), x0);
    *p = ad_mul(g, *x, *x);
    *t = ad_tanh(g, *x);
    ad_set_name(g, *t, "t");
    *q = ad_mul_scalar(g, *p, 3);
    ad_node *e = ad_add(g, ad_exp(g, *p), *t);
    ad_node *f = ad_add(g, e, *q);
    return ad_add(g, ad_sum(g, f), ad_sum(g, ad_sum_axis(g, *q, 1, false)));
}

static char *fz_trace(ad_graph *g, ad_node *root)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(ad_trace_forward(g, root, f, 6), AD_OK);
    fclose(f);
    return buf;
}

/* Both graphs replayed at x (b fused: its inner values stay those last written elsewhere). */
static void fz_at(ad_graph *a, ad_node *xa, ad_graph *b, ad_node *xb, const double *x)
{
    ad_set_data(a, xa, x), ad_set_data(b, xb, x);
    ck_assert_int_eq(ad_replay(a), AD_OK);
    ck_assert_int_eq(ad_replay(b), AD_OK);
}

START_TEST(fuse_inner_nodes_as_defined)
{
    double x0[20], x1[20];
    for (int i = 0; i < 20; i++) x0[i] = 0.1 * (i - 10), x1[i] = 0.07 * (i - 9);
    ad_graph *a = ad_graph_new(), *b = ad_graph_new();
    ad_node *xa, *pa, *ta, *qa, *xb, *pb, *tb, *qb;
    ad_node *ya = fz_small(a, x0, &xa, &pa, &ta, &qa), *yb = fz_small(b, x0, &xb, &pb, &tb, &qb);
    ad_set_fusion(b, true);
    /* each check below follows a fused replay at a point other than the one b's inner values
     * were last written at, by the check before */
    fz_at(a, xa, b, xb, x1);
    ck_assert(!fz_same(ad_node_data(pa), ad_node_data(pb), pa)); /* p is inner: not written */
    char *tra = fz_trace(a, ya), *trb = fz_trace(b, yb); /* a trace shows current values */
    ck_assert_str_eq(tra, trb);
    free(tra), free(trb);
    fz_at(a, xa, b, xb, x0);
    ad_graph *w = ad_graph_clone(b); /* a workspace copies current values */
    ck_assert_ptr_nonnull(w);
    ck_assert(fz_same(ad_node_data(pa), ad_node_data(ad_graph_node(w, ad_node_id(pb))), pa));
    ck_assert_int_eq(ad_backward(a, ya), AD_OK);
    ck_assert_int_eq(ad_backward(b, yb), AD_OK);
    ck_assert(same_bits(ad_value(ya), ad_value(yb)));
    ck_assert(fz_same(ad_node_grad_data(xa), ad_node_grad_data(xb), xa));
    ck_assert(fz_same(ad_node_data(ta), ad_node_data(tb), ta));
    ck_assert(fz_same(ad_node_grad_data(ta), ad_node_grad_data(tb), ta));
    ck_assert(fz_same(ad_node_data(qa), ad_node_data(qb), qa));
    ck_assert(fz_same(ad_node_grad_data(qa), ad_node_grad_data(qb), qa));
    ck_assert_ptr_nonnull(ad_node_grad_data(pa));
    ck_assert_ptr_null(ad_node_grad_data(pb));
    /* the workspace replays and sweeps fused too, to the same bits */
    ck_assert_int_eq(ad_replay(w), AD_OK);
    ck_assert_int_eq(ad_backward(w, ad_graph_node(w, ad_node_id(yb))), AD_OK);
    ck_assert(fz_same(ad_node_grad_data(xa), ad_node_grad_data(ad_graph_node(w, ad_node_id(xb))), xa));
    ad_graph_free(w);
    /* forward mode reads inner values */
    fz_at(a, xa, b, xb, x1);
    const double *dir[1] = {x0};
    ck_assert_int_eq(ad_jvp_graph(a, ya, 1, &xa, dir), AD_OK);
    ck_assert_int_eq(ad_jvp_graph(b, yb, 1, &xb, dir), AD_OK);
    ck_assert(same_bits(ad_tangent_get(a, ya, 0), ad_tangent_get(b, yb, 0)));
    /* a node named after a fused replay is readable at once: exp(p), inner until then */
    fz_at(a, xa, b, xb, x0);
    ad_node *ea = ad_graph_node(a, ad_node_id(pa) + 4), *eb = ad_graph_node(b, ad_node_id(pb) + 4);
    ck_assert_str_eq(ad_node_op_name(eb), "exp");
    ck_assert_int_eq(ad_set_name(b, eb, "e"), AD_OK);
    ck_assert(fz_same(ad_node_data(ea), ad_node_data(eb), ea));
    /* recording reads current values: a node made from p after a fused replay */
    fz_at(a, xa, b, xb, x1);
    ad_node *ra = ad_exp(a, pa), *rb = ad_exp(b, pb);
    ck_assert(fz_same(ad_node_data(ra), ad_node_data(rb), ra));
    ck_assert(fz_same(ad_node_data(pa), ad_node_data(pb), pa));
    /* the graph grew: the next replay plans again, p now used outside its chain */
    ad_node *za = ad_add(a, ya, ad_sum(a, ra)), *zb = ad_add(b, yb, ad_sum(b, rb));
    for (int pass = 0; pass < 2; pass++) {
        ad_set_data(a, xa, pass ? x0 : x1), ad_set_data(b, xb, pass ? x0 : x1);
        ck_assert_int_eq(ad_replay(a), AD_OK);
        ck_assert_int_eq(ad_replay(b), AD_OK);
        ad_zero_grad(a), ad_zero_grad(b);
        ck_assert_int_eq(ad_backward(a, za), AD_OK);
        ck_assert_int_eq(ad_backward(b, zb), AD_OK);
        ck_assert(same_bits(ad_value(za), ad_value(zb)));
        ck_assert(fz_same(ad_node_grad_data(xa), ad_node_grad_data(xb), xa));
        ck_assert(fz_same(ad_node_data(pa), ad_node_data(pb), pa));
        ck_assert(fz_same(ad_node_grad_data(pa), ad_node_grad_data(pb), pa));
    }
    /* anomaly mode: an unfused replay and sweep, every gradient there */
    ad_set_anomaly(b, true);
    ck_assert_int_eq(ad_replay(b), AD_OK);
    ad_zero_grad(b);
    ck_assert_int_eq(ad_backward(b, yb), AD_OK);
    ck_assert_ptr_nonnull(ad_node_grad_data(ad_graph_node(b, ad_node_id(eb) + 1))); /* exp(p) + t, inner */
    ad_set_anomaly(b, false);
    /* a search for non-finite values sees an inner node's current value: exp(800) */
    double xs[8] = {0};
    ad_graph *c = ad_graph_new();
    ad_node *xc = ad_var_array(c, "x", AD_F64, AD_SHAPE(8), xs), *ec = ad_exp(c, xc);
    ad_node *yc = ad_sum(c, ad_mul_scalar(c, ec, 2));
    ad_set_fusion(c, true);
    xs[5] = 800;
    ad_set_data(c, xc, xs);
    ck_assert_int_eq(ad_replay(c), AD_OK);
    ck_assert_ptr_eq(ad_find_nonfinite(c, yc, false), ec);
    ad_graph_free(c);
    /* fusion off after a fused replay: every value written */
    ck_assert_int_eq(ad_replay(b), AD_OK);
    ck_assert(ad_set_fusion(b, false));
    for (uint32_t i = 0; i < ad_graph_num_nodes(a); i++)
        ck_assert(fz_same(ad_node_data(ad_graph_node(a, i)), ad_node_data(ad_graph_node(b, i)), ad_graph_node(a, i)));
    ck_assert(!ad_set_fusion(NULL, true));
    ad_graph_free(a), ad_graph_free(b);
}
END_TEST

/* A fused training loop allocates nothing after its first step, replayed or recorded again at
 * each step; and a plan that cannot be had (every allocation of the first fused step made to
 * fail in turn) leaves the step unfused, with the same bits. */
START_TEST(fuse_no_allocation_and_out_of_memory)
{
    enum { N = 3000 };
    static double x[N];
    for (int i = 0; i < N; i++) x[i] = 0.5 + 1e-4 * i;
    for (int rerecord = 0; rerecord < 2; rerecord++) {
        ad_graph *g = ad_graph_new();
        ad_set_fusion(g, true);
        ad_node *xv = NULL, *y = NULL;
        long before = 0;
        uint64_t used = 0;
        for (int step = 0; step < 12; step++) {
            if (step == 1) before = ad_alloc_count(), used = ad_graph_get_stats(g).bytes_used;
            x[step] += 1e-3;
            if (!xv || rerecord) {
                ad_graph_reset(g);
                xv = ad_var_array(g, "x", AD_F64, AD_SHAPE(N), x);
                y = rosenbrock_tensor(g, xv, N);
            } else {
                ck_assert_int_eq(ad_set_data(g, xv, x), AD_OK);
                ck_assert_int_eq(ad_replay(g), AD_OK);
            }
            ad_zero_grad(g);
            ck_assert_int_eq(ad_backward(g, y), AD_OK);
        }
        ck_assert_int_eq(ad_alloc_count(), before);
        ck_assert_uint_eq(ad_graph_get_stats(g).bytes_used, used);
        ad_graph_free(g);
    }
    ad_graph *a = ad_graph_new();
    ad_node *xa = ad_var_array(a, "x", AD_F64, AD_SHAPE(N), x), *ya = rosenbrock_tensor(a, xa, N);
    ck_assert_int_eq(ad_backward(a, ya), AD_OK);
    for (long k = 1; k < 12; k++) {
        ad_graph *b = ad_graph_new();
        ad_node *xb = ad_var_array(b, "x", AD_F64, AD_SHAPE(N), x), *yb = rosenbrock_tensor(b, xb, N);
        ad_set_fusion(b, true);
        ad_fail_alloc_at(k);
        ad_status st = ad_replay(b);
        ad_zero_grad(b);
        if (st == AD_OK) st = ad_backward(b, yb);
        ad_fail_alloc_at(0);
        ck_assert_msg(st == AD_OK || st == AD_ERR_NOMEM, "allocation %ld: %s", k, ad_error(b));
        if (st == AD_OK) {
            ck_assert(same_bits(ad_value(ya), ad_value(yb)));
            ck_assert(fz_same(ad_node_grad_data(xa), ad_node_grad_data(xb), xa));
        }
        ad_graph_free(b);
    }
    ad_graph_free(a);
}
END_TEST
/* The orders that fusion must keep, each on a graph built to break it (bits of the sums below
 * change with the order of their additions):
 * - a broadcast operand's gradient is a sum over every element: s (a float64 scalar) and a row
 *   used by two ops each, whose unfused gradients are two sums one after the other;
 * - three slices of z recorded with falling offsets, whose gradients z sums element by element;
 * - s = p + q hands its gradient on unchanged to both p and q, and p gets more after;
 * - a slice's gradient of -0, which its base's zeroed buffer turns into +0. */
static ad_node *fz_orders(ad_graph *g, int which, ad_dtype t, const double *v, int n, ad_node **leaf)
{
    ad_shape sh = AD_SHAPE(n / 100, 100);
    switch (which) {
    case 0: {
        ad_node *x = ad_var_array(g, "x", t, sh, v), *row = ad_var_array(g, "row", t, AD_SHAPE(100), v + 7);
        leaf[0] = x, leaf[1] = row;
        ad_node *s = t == AD_F64 ? (leaf[2] = ad_var(g, "s", 0.3)) : row;
        ad_node *a = ad_mul(g, ad_mul(g, x, s), row), *b = ad_mul(g, ad_tanh(g, x), s);
        return ad_sum(g, ad_add(g, ad_mul(g, a, row), b));
    }
    case 1: {
        ad_node *z = leaf[0] = ad_var_array(g, "z", t, AD_SHAPE(n + 2), v);
        ad_node *c = ad_slice(g, z, 0, 2, n + 2), *b = ad_slice(g, z, 0, 1, n + 1), *a = ad_slice(g, z, 0, 0, n);
        ad_node *u = ad_add(g, ad_mul(g, a, ad_sin(g, c)), ad_mul(g, b, ad_cos(g, c)));
        return ad_sum(g, ad_add(g, u, ad_mul(g, c, ad_exp(g, b))));
    }
    case 3: { /* slices' gradients of -0 (relu's 0 times -10): their base's is 0 + -0 + -0 = +0 */
        ad_node *z = leaf[0] = ad_var_array(g, "z", t, AD_SHAPE(n + 1), v);
        ad_node *a = ad_slice(g, z, 0, 0, n), *b = ad_slice(g, z, 0, 1, n + 1);
        ad_node *ra = ad_relu(g, ad_add_scalar(g, ad_mul_scalar(g, a, -10), 5));
        return ad_sum(g, ad_add(g, ra, ad_relu(g, ad_add_scalar(g, ad_mul_scalar(g, b, -10), 5))));
    }
    default: {
        ad_node *x = leaf[0] = ad_var_array(g, "x", t, AD_SHAPE(n), v);
        ad_node *p = ad_mul(g, x, x), *q = ad_exp(g, x), *r = ad_mul(g, p, q), *s = ad_add(g, p, q);
        return ad_sum(g, ad_add(g, ad_sin(g, s), r));
    }
    }
}

START_TEST(fuse_keeps_orders)
{
    enum { N = 40000 }; /* two blocks of a sum: two threads, whose edge case 3 writes */
    static double v[N + 2];
    ad_rng r;
    ad_rng_seed(&r, 19);
    for (int i = 0; i < N + 2; i++) v[i] = 0.5 + ad_rng_uniform(&r);
    int was = ad_get_threads();
    ad_set_threads(2);
    for (int which = 0; which < 4; which++)
        for (int k = 0; k < 2; k++) {
            ad_dtype t = k ? AD_F32 : AD_F64;
            ad_graph *a = ad_graph_new(), *b = ad_graph_new();
            ad_node *la[3] = {0}, *lb[3] = {0};
            ad_node *ya = fz_orders(a, which, t, v, N, la), *yb = fz_orders(b, which, t, v, N, lb);
            ad_set_fusion(b, true);
            ck_assert_int_eq(ad_replay(a), AD_OK);
            ck_assert_int_eq(ad_replay(b), AD_OK);
            ck_assert_int_eq(ad_backward(a, ya), AD_OK);
            ck_assert_int_eq(ad_backward(b, yb), AD_OK);
            ck_assert(same_bits(ad_value(ya), ad_value(yb)));
            for (int l = 0; l < 3 && la[l]; l++)
                ck_assert_msg(fz_same(ad_node_grad_data(la[l]), ad_node_grad_data(lb[l]), la[l]), "case %d %s: leaf %s",
                              which, ad_dtype_name(t), ad_node_name(la[l]));
            ad_graph_free(a), ad_graph_free(b);
        }
    ad_set_threads(was);
}
END_TEST
/* ==== end of elementwise fusion ==== */

int main(void)
{
    Suite *s = suite_create("ad_replay");
    TCase *tc = tcase_create("replay");
    tcase_add_test(tc, scalar_every_op);
    tcase_add_test(tc, lecture_neuron_back_and_forth);
    tcase_add_test(tc, branch_guard_retape);
    tcase_add_test(tc, branch_guard_tensor);
    tcase_add_test(tc, where_redecided);
    tcase_add_test(tc, where_broadcast);
    tcase_add_test(tc, setters_refuse);
    tcase_add_test(tc, labels_by_set_arg);
    tcase_add_test(tc, dropout_redraws);
    tcase_add_test(tc, no_allocation_after_first_replay);
    tcase_add_test(tc, second_order_replayed);
    tcase_add_test(tc, anomaly_in_replay);
    tcase_add_test(tc, clone_replays_alone);
    tcase_add_test(tc, clone_out_of_memory);
    tcase_add_test(tc, program_every_op);
    tcase_add_test(tc, program_jacobian_rows);
    tcase_add_test(tc, program_refuses);
    tcase_add_test(tc, ce_grad_graph_follows_labels);
    tcase_add_test(tc, clone_refuses_stateful_user_op);
    tcase_add_test(tc, nn_step_rerecords_on_retape);
    tcase_add_test(tc, indices_by_set_arg);
    tcase_add_test(tc, batch_norm_replay_updates_running_stats_once);
    /* elementwise fusion */
    tcase_add_test(tc, fuse_random_chains);
    tcase_add_test(tc, fuse_rosenbrock_same_bits);
    tcase_add_test(tc, fuse_inner_nodes_as_defined);
    tcase_add_test(tc, fuse_no_allocation_and_out_of_memory);
    tcase_add_test(tc, fuse_keeps_orders);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
