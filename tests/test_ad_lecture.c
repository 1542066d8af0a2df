/* The lecture's worked examples, asserted at the precision the slides print them. */
#include "testutil.h"
#include <math.h>

START_TEST(sum_times_z)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 2), *y = ad_var(g, "y", 3), *z = ad_var(g, "z", -2);
    ad_node *q = ad_add(g, x, y), *f = ad_mul(g, q, z);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ck_assert_double_eq(ad_value(q), 5);
    ck_assert_double_eq(ad_value(f), -10);
    ck_assert_double_eq(ad_grad(f), 1);
    ck_assert_double_eq(ad_grad(q), -2);
    ck_assert_double_eq(ad_grad(x), -2);
    ck_assert_double_eq(ad_grad(y), -2);
    ck_assert_double_eq(ad_grad(z), 5);
    ad_graph_free(g);
}
END_TEST

/* The slides' neuron, gate by gate: mul, mul, add, add, neg, exp, +1, 1/x. */
typedef struct { ad_node *x0, *x1, *w0, *w1, *w2, *m0, *m1, *s0, *s1, *neg, *e, *p1, *f; } neuron;

static neuron build_neuron(ad_graph *g)
{
    neuron n;
    n.x0 = ad_var(g, "x0", -1), n.x1 = ad_var(g, "x1", -2);
    n.w0 = ad_var(g, "w0", 2), n.w1 = ad_var(g, "w1", -3), n.w2 = ad_var(g, "w2", -3);
    n.m0 = ad_mul(g, n.w0, n.x0);
    n.m1 = ad_mul(g, n.w1, n.x1);
    n.s0 = ad_add(g, n.m0, n.m1);
    n.s1 = ad_add(g, n.s0, n.w2);
    n.neg = ad_neg(g, n.s1);
    n.e = ad_exp(g, n.neg);
    n.p1 = ad_add(g, n.e, ad_const_scalar(g, 1));
    n.f = ad_recip(g, n.p1);
    return n;
}

static const double S = 0.7310585786300049;      /* sigmoid(1) */
static const double DS = 0.19661193324148185;    /* sigmoid'(1) */

START_TEST(neuron_from_primitives)
{
    ad_graph *g = ad_graph_new();
    neuron n = build_neuron(g);
    ck_assert_int_eq(ad_backward(g, n.f), AD_OK);
    /* forward values as the slides show them */
    ck_assert_double_eq(ad_value(n.m0), -2);
    ck_assert_double_eq(ad_value(n.m1), 6);
    ck_assert_double_eq(ad_value(n.s0), 4);
    ck_assert_double_eq(ad_value(n.s1), 1);
    ck_assert_double_eq(ad_value(n.neg), -1);
    ck_assert_double_eq_tol(round_to(ad_value(n.e), 2), 0.37, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_value(n.p1), 2), 1.37, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_value(n.f), 2), 0.73, 1e-12);
    ck_assert_double_eq_tol(ad_value(n.f), S, 1e-12);
    /* backward: upstream x local = downstream, node by node */
    ck_assert_double_eq(ad_grad(n.f), 1);
    ck_assert_double_eq_tol(round_to(ad_node_local_grad(n.f, 0), 2), -0.53, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.p1), 2), -0.53, 1e-12);
    ck_assert_double_eq(ad_node_local_grad(n.p1, 0), 1);
    ck_assert_double_eq_tol(round_to(ad_grad(n.e), 2), -0.53, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.neg), 1), -0.2, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.s1), 1), 0.2, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.s0), 1), 0.2, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.w2), 1), 0.2, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.m0), 1), 0.2, 1e-12);
    ck_assert_double_eq_tol(round_to(ad_grad(n.m1), 1), 0.2, 1e-12);
    /* the gradient in the slides' argument order (x0, x1, w0, w1, w2) */
    double want[5] = {0.4, -0.6, -0.2, -0.4, 0.2};
    double exact[5] = {2 * DS, -3 * DS, -1 * DS, -2 * DS, DS};
    ad_node *args[5] = {n.x0, n.x1, n.w0, n.w1, n.w2};
    for (int i = 0; i < 5; i++) {
        ck_assert_double_eq_tol(round_to(ad_grad(args[i]), 1), want[i], 1e-12);
        ck_assert_double_eq_tol(ad_grad(args[i]), exact[i], 1e-12);
    }
    ad_graph_free(g);
}
END_TEST

START_TEST(neuron_with_sigmoid_primitive)
{
    ad_graph *g = ad_graph_new();
    neuron n = build_neuron(g);
    ck_assert_int_eq(ad_backward(g, n.f), AD_OK);
    ad_graph *h = ad_graph_new();
    ad_node *x0 = ad_var(h, "x0", -1), *x1 = ad_var(h, "x1", -2);
    ad_node *w0 = ad_var(h, "w0", 2), *w1 = ad_var(h, "w1", -3), *w2 = ad_var(h, "w2", -3);
    ad_node *f = ad_sigmoid(h, ad_add(h, ad_add(h, ad_mul(h, w0, x0), ad_mul(h, w1, x1)), w2));
    ck_assert_int_eq(ad_backward(h, f), AD_OK);
    ck_assert_double_eq_tol(ad_value(f), S, 1e-15);
    ad_node *a[5] = {n.x0, n.x1, n.w0, n.w1, n.w2}, *b[5] = {x0, x1, w0, w1, w2};
    for (int i = 0; i < 5; i++) ck_assert_double_eq_tol(ad_grad(a[i]), ad_grad(b[i]), 1e-15);
    ad_graph_free(g);
    ad_graph_free(h);
}
END_TEST

/* Lecture: "what if a variable occurs in different places? Introduce a copy node." */
START_TEST(copy_node_sums_gradients)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 3);
    ad_node *f = ad_add(g, ad_mul(g, x, x), x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ck_assert_double_eq(ad_value(f), 12);
    ck_assert_double_eq(ad_grad(x), 2 * 3 + 1);
    ck_assert_int_eq(ad_node_uses(g, x, f), 3);
    ad_graph_free(g);
}
END_TEST

START_TEST(fan_out_of_inner_nodes)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = ad_var(g, "a", 1);
    ad_node *b = ad_add(g, a, a);
    ad_node *c = ad_add(g, b, b);
    ck_assert_int_eq(ad_backward(g, c), AD_OK);
    ck_assert_double_eq(ad_grad(a), 4);
    ck_assert_double_eq(ad_grad(b), 2);
    ck_assert_int_eq(ad_node_uses(g, b, c), 2);
    ad_graph_free(g);
}
END_TEST

START_TEST(long_chain_without_recursion)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0.5), *y = x;
    for (int i = 0; i < 100000; i++) y = ad_add(g, y, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(ad_backward(g, y), AD_OK);
    ck_assert_double_eq(ad_grad(x), 100001);
    ck_assert_double_eq(ad_value(y), 0.5 * 100001);
    ad_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_lecture");
    TCase *tc = tcase_create("lecture");
    tcase_add_test(tc, sum_times_z);
    tcase_add_test(tc, neuron_from_primitives);
    tcase_add_test(tc, neuron_with_sigmoid_primitive);
    tcase_add_test(tc, copy_node_sums_gradients);
    tcase_add_test(tc, fan_out_of_inner_nodes);
    tcase_add_test(tc, long_chain_without_recursion);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
