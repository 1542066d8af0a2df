/* Every error path of the engine: what it returns (NULL or a status), the status the graph
 * records, and the message, which must name the op and the shapes so a user can find the bad
 * line without a debugger.  Nothing may abort, print or leak (the suite also runs under
 * AddressSanitizer and LeakSanitizer). */
#include "testutil.h"
#include <math.h>
#include <string.h>

/* The graph holds status st and a message containing want (the message is the contract,
 * so a substring check is as strict as the message's wording allows). */
#define EXPECT_ERROR(g, st, want)                                                              \
    do {                                                                                       \
        const char *e_ = ad_error(g);                                                          \
        ck_assert_int_eq(ad_status_of(g), (st));                                               \
        ck_assert_msg(e_ != NULL, "no error recorded, expected \"%s\"", (want));              \
        ck_assert_msg(strstr(e_, (want)) != NULL, "error \"%s\" lacks \"%s\"", e_, (want));    \
    } while (0)

/* The op returned NULL and recorded st with a message containing want; then the error is
 * cleared so the next check starts clean. */
#define EXPECT_FAIL(g, node, st, want)                                                         \
    do {                                                                                       \
        ck_assert_msg((node) == NULL, "expected NULL for \"%s\"", (want));                     \
        EXPECT_ERROR(g, st, want);                                                             \
        ad_clear_error(g);                                                                     \
    } while (0)

static ad_node *zeros(ad_graph *g, ad_dtype t, ad_shape s) { return ad_const(g, t, s, NULL); }

START_TEST(matmul_message_is_exact)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = zeros(g, AD_F64, AD_SHAPE(64, 784)), *w = ad_var_array(g, "w", AD_F64, AD_SHAPE(256, 784), NULL);
    ad_node *y = ad_matmul(g, x, w);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(ad_status_of(g), AD_ERR_SHAPE);
    ck_assert_str_eq(ad_error(g), "matmul: [64,784] x [256,784]: inner dimensions 784 and 256 differ");
    ad_clear_error(g);
    /* the other matmul rules */
    EXPECT_FAIL(g, ad_matmul(g, zeros(g, AD_F64, AD_SHAPE0), zeros(g, AD_F64, AD_SHAPE(3, 2))),
                AD_ERR_SHAPE, "matmul: [] x [3,2]: operands must be 1-D or more (a scalar has no matrix product: use mul)");
    EXPECT_FAIL(g, ad_matmul(g, zeros(g, AD_F64, AD_SHAPE(2, 4, 3)), zeros(g, AD_F64, AD_SHAPE(3, 3, 5))),
                AD_ERR_SHAPE, "matmul: [2,4,3] x [3,3,5]: batch dimensions [2] and [3] do not broadcast");
    /* and the transpose (rank >= 2) */
    EXPECT_FAIL(g, ad_transpose(g, zeros(g, AD_F64, AD_SHAPE(5))), AD_ERR_SHAPE,
                "transpose: [5]: needs rank >= 2");
    ad_graph_free(g);
}
END_TEST

/* ---- NULL inputs ---- */

typedef ad_node *(*unary_fn)(ad_graph *, ad_node *);
typedef ad_node *(*binary_fn)(ad_graph *, ad_node *, ad_node *);

static ad_node *leaky(ad_graph *g, ad_node *a) { return ad_leaky_relu(g, a, 0.1); }
static ad_node *add_s(ad_graph *g, ad_node *a) { return ad_add_scalar(g, a, 1); }
static ad_node *mul_s(ad_graph *g, ad_node *a) { return ad_mul_scalar(g, a, 2); }
static ad_node *pow_s(ad_graph *g, ad_node *a) { return ad_pow_scalar(g, a, 2); }
static ad_node *sum_ax(ad_graph *g, ad_node *a) { return ad_sum_axis(g, a, 0, false); }
static ad_node *mean_ax(ad_graph *g, ad_node *a) { return ad_mean_axis(g, a, 0, true); }
static ad_node *smax(ad_graph *g, ad_node *a) { return ad_softmax(g, a, 0); }
static ad_node *lsmax(ad_graph *g, ad_node *a) { return ad_log_softmax(g, a, 0); }
static ad_node *resh(ad_graph *g, ad_node *a) { return ad_reshape(g, a, AD_SHAPE(1)); }
static ad_node *bcast(ad_graph *g, ad_node *a) { return ad_broadcast_to(g, a, AD_SHAPE(2)); }
static ad_node *slc(ad_graph *g, ad_node *a) { return ad_slice(g, a, 0, 0, 1); }

static ad_rng drop_rng;
static ad_node *drop(ad_graph *g, ad_node *a) { return ad_dropout(g, a, 0.5, true, &drop_rng); }
static ad_node *xent(ad_graph *g, ad_node *a) { return ad_cross_entropy(g, a, (const int32_t[]){0}); }

static const struct { unary_fn f; const char *name; } unaries[] = {
    {ad_neg, "neg"}, {ad_recip, "recip"}, {ad_exp, "exp"}, {ad_log, "log"}, {ad_sqrt, "sqrt"},
    {ad_sin, "sin"}, {ad_cos, "cos"}, {ad_tan, "tan"}, {ad_tanh, "tanh"},
    {ad_sigmoid, "sigmoid"}, {ad_relu, "relu"}, {ad_abs, "abs"}, {leaky, "leaky_relu"},
    {add_s, "add"}, {mul_s, "mul"}, {pow_s, "pow"}, {ad_sum, "sum"}, {ad_mean, "mean"},
    {sum_ax, "sum_axis"}, {mean_ax, "mean_axis"}, {ad_transpose, "transpose"},
    {resh, "reshape"}, {bcast, "broadcast_to"}, {slc, "slice"}, {smax, "softmax"},
    {lsmax, "log_softmax"}, {drop, "dropout"}, {xent, "cross_entropy"},
};

static const struct { binary_fn f; const char *name; } binaries[] = {
    {ad_add, "add"}, {ad_sub, "sub"}, {ad_mul, "mul"}, {ad_div, "div"}, {ad_pow, "pow"},
    {ad_max, "max"}, {ad_min, "min"}, {ad_matmul, "matmul"}, {ad_mse, "mse"}, {ad_mae, "mae"},
};

START_TEST(null_input_to_unary_ops)
{
    ad_graph *g = ad_graph_new();
    ad_rng_seed(&drop_rng, 1);
    char want[64];
    for (size_t i = 0; i < sizeof unaries / sizeof unaries[0]; i++) {
        snprintf(want, sizeof want, "%s: input 1 is NULL", unaries[i].name);
        EXPECT_FAIL(g, unaries[i].f(g, NULL), AD_ERR_NULL, want);
    }
    ck_assert_uint_eq(ad_graph_num_nodes(g), 0); /* failures record no nodes */
    ad_graph_free(g);
}
END_TEST

START_TEST(null_input_to_binary_ops)
{
    ad_graph *g = ad_graph_new();
    char want[64];
    for (size_t i = 0; i < sizeof binaries / sizeof binaries[0]; i++) {
        /* a scalar and a tensor operand: both entry paths (scalar fast path, ad_apply) */
        ad_node *ok[2] = {ad_var(g, "s", 1), zeros(g, AD_F64, AD_SHAPE(2, 2))};
        for (int k = 0; k < 2; k++) {
            snprintf(want, sizeof want, "%s: input 1 is NULL", binaries[i].name);
            EXPECT_FAIL(g, binaries[i].f(g, NULL, ok[k]), AD_ERR_NULL, want);
            snprintf(want, sizeof want, "%s: input 2 is NULL", binaries[i].name);
            EXPECT_FAIL(g, binaries[i].f(g, ok[k], NULL), AD_ERR_NULL, want);
        }
        EXPECT_FAIL(g, binaries[i].f(g, NULL, NULL), AD_ERR_NULL, "input 1 is NULL");
    }
    ad_graph_free(g);
}
END_TEST

START_TEST(null_input_to_variadic_and_leaf_ops)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2, 3));
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){a, NULL, a}, 3, 0), AD_ERR_NULL,
                "concat: input 2 is NULL");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){NULL}, 1, 0), AD_ERR_NULL,
                "concat: input 1 is NULL");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){a}, 0, 0), AD_ERR_ARG,
                "concat: needs at least one input (given 0)");
    EXPECT_FAIL(g, ad_param(g, NULL), AD_ERR_NULL, "param: tensor is NULL");
    EXPECT_FAIL(g, ad_const_tensor(g, NULL), AD_ERR_NULL, "const: tensor is NULL");
    EXPECT_FAIL(g, ad_rand_uniform(g, AD_F64, AD_SHAPE(2), NULL, 0, 1), AD_ERR_NULL,
                "rand_uniform: rng is NULL");
    EXPECT_FAIL(g, ad_rand_normal(g, AD_F32, AD_SHAPE(2), NULL, 0, 1), AD_ERR_NULL,
                "rand_normal: rng is NULL");
    ad_node *in[2] = {a, NULL};
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("add"), in, 2, NULL, 0), AD_ERR_NULL,
                "add: input 2 is NULL");
    ad_graph_free(g);
}
END_TEST

/* The status and message a call leaves on a fresh graph, captured before the graph is freed
 * so that the assertions after it leak nothing when they fail (CK_FORK=no under LSan). */
typedef struct { ad_node *ret; ad_status st; char msg[320]; } outcome;
typedef ad_node *(*call_fn)(ad_graph *g);

static outcome run_on_fresh_graph(call_fn f)
{
    outcome o = {0};
    ad_graph *g = ad_graph_new();
    o.ret = f(g);
    o.st = ad_status_of(g);
    snprintf(o.msg, sizeof o.msg, "%s", ad_error(g) ? ad_error(g) : "");
    ad_graph_free(g);
    return o;
}

static ad_node *apply_null_array(ad_graph *g) { return ad_apply(g, ad_op_find("add"), NULL, 2, NULL, 0); }
static ad_node *concat_null_array(ad_graph *g) { return ad_concat(g, NULL, 2, 0); }
static ad_node *concat_negative_count(ad_graph *g)
{
    const double axis = 0;
    return ad_apply(g, ad_op_find("concat"), (ad_node *const[]){zeros(g, AD_F64, AD_SHAPE(2))}, -1,
                    &axis, 1);
}

/* An array argument that is NULL is "a NULL argument" (AD_ERR_NULL in ad.h), and the message
 * must not contradict itself.  Today ad_apply says "add: takes 2 inputs, given 2" and
 * ad_concat "concat: needs at least one input (given 2)", both as AD_ERR_ARG. */
START_TEST(apply_null_input_array)
{
    outcome o = run_on_fresh_graph(apply_null_array);
    ck_assert_ptr_null(o.ret);
    ck_assert_msg(strstr(o.msg, "given 2") == NULL, "contradictory: %s", o.msg);
    ck_assert_int_eq(o.st, AD_ERR_NULL);
    ck_assert_ptr_nonnull(strstr(o.msg, "NULL"));
}
END_TEST

START_TEST(concat_null_input_array)
{
    outcome o = run_on_fresh_graph(concat_null_array);
    ck_assert_ptr_null(o.ret);
    ck_assert_msg(strstr(o.msg, "given 2") == NULL, "contradictory: %s", o.msg);
    ck_assert_int_eq(o.st, AD_ERR_NULL);
    ck_assert_ptr_nonnull(strstr(o.msg, "NULL"));
}
END_TEST

/* A negative input count for a variadic op is refused, but the message must not claim the op
 * "takes -1 inputs" (AD_VARIADIC leaking into the text); today it reads
 * "concat: takes -1 inputs, given -1". */
START_TEST(apply_negative_count_to_variadic)
{
    outcome o = run_on_fresh_graph(concat_negative_count);
    ck_assert_ptr_null(o.ret);
    ck_assert_int_eq(o.st, AD_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(o.msg, "given -1"));
    ck_assert_msg(strstr(o.msg, "takes -1") == NULL, "misleading: %s", o.msg);
}
END_TEST

START_TEST(null_graph)
{
    /* valid nodes from another graph, so only the graph argument is missing */
    ad_graph *h = ad_graph_new();
    ad_node *s = ad_var(h, "s", 2), *t = ad_var_array(h, "t", AD_F64, AD_SHAPE(2, 2), NULL);
    ad_rng r;
    ad_rng_seed(&r, 3);
    drop_rng = r; /* so that dropout lacks only its graph */
    ad_tensor *P = ad_param_new("P", AD_F64, AD_SHAPE(2));
    for (size_t i = 0; i < sizeof unaries / sizeof unaries[0]; i++) {
        ck_assert_ptr_null(unaries[i].f(NULL, s));
        ck_assert_ptr_null(unaries[i].f(NULL, t));
    }
    for (size_t i = 0; i < sizeof binaries / sizeof binaries[0]; i++) {
        ck_assert_ptr_null(binaries[i].f(NULL, s, s));
        ck_assert_ptr_null(binaries[i].f(NULL, t, t));
    }
    ck_assert_ptr_null(ad_var(NULL, "x", 1));
    ck_assert_ptr_null(ad_var_array(NULL, "x", AD_F64, AD_SHAPE(2), NULL));
    ck_assert_ptr_null(ad_const_scalar(NULL, 1));
    ck_assert_ptr_null(ad_const(NULL, AD_F64, AD_SHAPE(2), NULL));
    ck_assert_ptr_null(ad_full(NULL, AD_F32, AD_SHAPE(2), 1));
    ck_assert_ptr_null(ad_rand_uniform(NULL, AD_F64, AD_SHAPE(2), &r, 0, 1));
    ck_assert_ptr_null(ad_rand_normal(NULL, AD_F64, AD_SHAPE(2), NULL, 0, 1));
    ck_assert_ptr_null(ad_param(NULL, P));
    ck_assert_ptr_null(ad_const_tensor(NULL, P));
    ck_assert_ptr_null(ad_concat(NULL, (ad_node *const[]){t, t}, 2, 0));
    ck_assert_ptr_null(ad_apply(NULL, ad_op_find("add"), (ad_node *const[]){s, s}, 2, NULL, 0));
    ck_assert_int_eq(ad_backward(NULL, s), AD_ERR_NULL);
    ck_assert_int_eq(ad_backward_seed(NULL, t, (const double[]){1, 1, 1, 1}), AD_ERR_NULL);
    ck_assert_int_eq(ad_status_of(NULL), AD_ERR_NULL);
    ck_assert_str_eq(ad_error(NULL), "graph is NULL");
    ck_assert_int_eq(ad_set_error(NULL, AD_ERR_ARG, "ignored %d", 1), AD_ERR_ARG);
    ck_assert(!ad_set_grad_enabled(NULL, true));
    ck_assert_ptr_null(ad_input_grad_buffer(NULL, s));
    ck_assert_uint_eq(ad_graph_num_nodes(NULL), 0);
    ck_assert_ptr_null(ad_graph_node(NULL, 0));
    ck_assert_uint_eq(ad_graph_get_stats(NULL).mallocs, 0);
    /* these have nothing to report; they must simply not crash */
    ad_graph_reset(NULL);
    ad_clear_error(NULL);
    ad_zero_grad(NULL);
    ad_graph_free(NULL);
    /* the nodes' own graph saw none of it */
    ck_assert_ptr_null(ad_error(h));
    ck_assert_uint_eq(ad_graph_num_nodes(h), 2);
    ad_graph_free(h);
    ad_tensor_free(P);
}
END_TEST

/* ---- the first error is kept ---- */

START_TEST(first_error_is_sticky)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2, 3), NULL);
    ad_node *e = ad_exp(g, NULL);
    ck_assert_ptr_null(e);
    ck_assert_str_eq(ad_error(g), "exp: input 1 is NULL");
    /* later ops given the NULL pass it on and keep the first message and status */
    ad_node *y = ad_add(g, e, x);
    ad_node *z = ad_sum(g, ad_mul(g, y, x));
    ck_assert_ptr_null(y);
    ck_assert_ptr_null(z);
    ck_assert_str_eq(ad_error(g), "exp: input 1 is NULL");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_NULL);
    /* a different kind of error afterwards does not overwrite it either */
    ck_assert_ptr_null(ad_matmul(g, x, x));
    ck_assert_ptr_null(ad_softmax(g, x, 7));
    ck_assert_int_eq(ad_set_error(g, AD_ERR_CHECK, "user: %s", "later"), AD_ERR_CHECK);
    ck_assert_str_eq(ad_error(g), "exp: input 1 is NULL");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_NULL);
    /* the single check at the end: backward of the NULL result */
    ck_assert_int_eq(ad_backward(g, z), AD_ERR_NULL);
    ck_assert_str_eq(ad_error(g), "exp: input 1 is NULL");

    /* ad_clear_error forgets it; the next error is recorded afresh */
    ad_clear_error(g);
    ck_assert_ptr_null(ad_error(g));
    ck_assert_int_eq(ad_status_of(g), AD_OK);
    ck_assert_ptr_null(ad_matmul(g, x, x));
    ck_assert_str_eq(ad_error(g), "matmul: [2,3] x [2,3]: inner dimensions 3 and 2 differ");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_SHAPE);
    /* the graph stays usable after an error */
    ad_node *ok = ad_sum(g, ad_mul(g, x, x));
    ck_assert_ptr_nonnull(ok);

    /* ad_graph_reset clears it too */
    ad_graph_reset(g);
    ck_assert_ptr_null(ad_error(g));
    ck_assert_int_eq(ad_status_of(g), AD_OK);
    /* and a user's ad_set_error is recorded like any other, printf-formatted */
    ck_assert_int_eq(ad_set_error(g, AD_ERR_ARG, "myop: bad k=%d", 7), AD_ERR_ARG);
    ck_assert_str_eq(ad_error(g), "myop: bad k=7");
    ck_assert_int_eq(ad_status_of(g), AD_ERR_ARG);
    ad_graph_free(g);
}
END_TEST

/* ---- dtypes ---- */

START_TEST(dtype_mismatch_names_both)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = zeros(g, AD_F32, AD_SHAPE(2, 3)), *d = zeros(g, AD_F64, AD_SHAPE(2, 3));
    ad_node *r = ad_add(g, f, d);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(ad_status_of(g), AD_ERR_DTYPE);
    ck_assert_str_eq(ad_error(g), "add: float32 [2,3] and float64 [2,3]: dtypes differ");
    ad_clear_error(g);
    /* a float64 scalar variable does not silently promote a float32 tensor */
    ad_node *s = ad_var(g, "s", 1), *v = zeros(g, AD_F32, AD_SHAPE(4));
    EXPECT_FAIL(g, ad_mul(g, s, v), AD_ERR_DTYPE, "mul: float64 [] and float32 [4]: dtypes differ");
    EXPECT_FAIL(g, ad_matmul(g, d, zeros(g, AD_F32, AD_SHAPE(3, 2))), AD_ERR_DTYPE,
                "matmul: float64 [2,3] and float32 [3,2]: dtypes differ");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){d, d, f}, 3, 0), AD_ERR_DTYPE,
                "concat: float64 [2,3] and float32 [2,3]: dtypes differ");
    EXPECT_FAIL(g, ad_mse(g, f, d), AD_ERR_DTYPE, "mse: float32 [2,3] and float64 [2,3]");
    /* an unknown dtype for a leaf */
    EXPECT_FAIL(g, ad_const(g, (ad_dtype)7, AD_SHAPE(2), NULL), AD_ERR_DTYPE, "const: unknown dtype 7");
    EXPECT_FAIL(g, ad_var_array(g, "x", (ad_dtype)9, AD_SHAPE(2), NULL), AD_ERR_DTYPE,
                "var: unknown dtype 9");
    ad_graph_free(g);
}
END_TEST

/* ---- shapes and arguments ---- */

START_TEST(binary_ops_that_do_not_broadcast)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2, 3)), *b = zeros(g, AD_F64, AD_SHAPE(4));
    ad_node *c = zeros(g, AD_F64, AD_SHAPE(3, 2));
    EXPECT_FAIL(g, ad_add(g, a, b), AD_ERR_SHAPE, "add: [2,3] and [4] do not broadcast");
    EXPECT_FAIL(g, ad_mul(g, a, c), AD_ERR_SHAPE, "mul: [2,3] and [3,2] do not broadcast");
    EXPECT_FAIL(g, ad_pow(g, c, a), AD_ERR_SHAPE, "pow: [3,2] and [2,3] do not broadcast");
    ad_node *a32 = zeros(g, AD_F32, AD_SHAPE(2, 3)), *b32 = zeros(g, AD_F32, AD_SHAPE(2, 2));
    EXPECT_FAIL(g, ad_max(g, a32, b32), AD_ERR_SHAPE, "max: [2,3] and [2,2] do not broadcast");
    /* broadcasting that is allowed still works after those failures */
    ck_assert_ptr_nonnull(ad_add(g, a, zeros(g, AD_F64, AD_SHAPE(3))));
    ck_assert_ptr_null(ad_error(g));
    ad_graph_free(g);
}
END_TEST

START_TEST(axis_out_of_range)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2, 3)), *s = ad_const_scalar(g, 1);
    EXPECT_FAIL(g, ad_sum_axis(g, a, 2, false), AD_ERR_ARG, "sum_axis: axis 2 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_sum_axis(g, a, -3, true), AD_ERR_ARG, "sum_axis: axis -3 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_mean_axis(g, a, 5, false), AD_ERR_ARG, "mean_axis: axis 5 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_softmax(g, a, 2), AD_ERR_ARG, "softmax: axis 2 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_log_softmax(g, a, -4), AD_ERR_ARG, "log_softmax: axis -4 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_softmax(g, s, 0), AD_ERR_ARG, "softmax: axis 0 out of range for shape []");
    EXPECT_FAIL(g, ad_slice(g, a, 2, 0, 1), AD_ERR_ARG, "slice: axis 2 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){a, a}, 2, 2), AD_ERR_ARG,
                "concat: axis 2 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){a, a}, 2, -3), AD_ERR_ARG,
                "concat: axis -3 out of range for shape [2,3]");
    /* negative axes in range are fine */
    ck_assert_ptr_nonnull(ad_sum_axis(g, a, -1, false));
    ck_assert_ptr_nonnull(ad_softmax(g, a, -2));
    ck_assert_ptr_null(ad_error(g));
    ad_graph_free(g);
}
END_TEST

START_TEST(reshape_and_broadcast_to)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2, 3));
    EXPECT_FAIL(g, ad_reshape(g, a, AD_SHAPE(4, 2)), AD_ERR_SHAPE, "reshape: [2,3] to [4,2]: sizes differ");
    EXPECT_FAIL(g, ad_reshape(g, a, AD_SHAPE0), AD_ERR_SHAPE, "reshape: [2,3] to []: sizes differ");
    EXPECT_FAIL(g, ad_reshape(g, a, AD_SHAPE(-2, -3)), AD_ERR_SHAPE, "reshape: invalid target shape (rank 2)");
    ad_shape r7 = {.rank = AD_MAX_RANK + 1};
    EXPECT_FAIL(g, ad_reshape(g, a, r7), AD_ERR_SHAPE, "reshape: invalid target shape (rank 7)");
    EXPECT_FAIL(g, ad_broadcast_to(g, a, AD_SHAPE(4, 3)), AD_ERR_SHAPE,
                "broadcast_to: [2,3] does not broadcast to [4,3]");
    /* broadcasting never drops axes */
    EXPECT_FAIL(g, ad_broadcast_to(g, a, AD_SHAPE(3)), AD_ERR_SHAPE,
                "broadcast_to: [2,3] does not broadcast to [3]");
    EXPECT_FAIL(g, ad_broadcast_to(g, a, AD_SHAPE(5, 1, 3)), AD_ERR_SHAPE,
                "broadcast_to: [2,3] does not broadcast to [5,1,3]");
    EXPECT_FAIL(g, ad_broadcast_to(g, a, r7), AD_ERR_SHAPE, "broadcast_to: invalid target shape (rank 7)");
    ck_assert_ptr_nonnull(ad_broadcast_to(g, a, AD_SHAPE(5, 2, 3)));
    ck_assert_ptr_nonnull(ad_reshape(g, a, AD_SHAPE(3, 1, 2)));
    ad_graph_free(g);
}
END_TEST

START_TEST(slice_range_out_of_bounds)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2, 3));
    EXPECT_FAIL(g, ad_slice(g, a, 1, 1, 5), AD_ERR_SHAPE, "slice: [2,3]: range 1..5 outside 0..3 on axis 1");
    EXPECT_FAIL(g, ad_slice(g, a, 0, -1, 1), AD_ERR_SHAPE, "slice: [2,3]: range -1..1 outside 0..2 on axis 0");
    EXPECT_FAIL(g, ad_slice(g, a, -1, 2, 2), AD_ERR_SHAPE, "slice: [2,3]: range 2..2 outside 0..3 on axis 1");
    EXPECT_FAIL(g, ad_slice(g, a, 0, 2, 1), AD_ERR_SHAPE, "range 2..1");
    ck_assert_ptr_nonnull(ad_slice(g, a, 1, 0, 3));
    ad_graph_free(g);
}
END_TEST

START_TEST(concat_mismatched_shapes)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2, 3)), *b = zeros(g, AD_F64, AD_SHAPE(3, 3));
    ad_node *v = zeros(g, AD_F64, AD_SHAPE(6));
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){a, b}, 2, 1), AD_ERR_SHAPE,
                "concat: [2,3] and [3,3] differ off axis 1");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *const[]){a, a, v}, 3, 0), AD_ERR_SHAPE,
                "concat: [2,3] and [6] differ off axis 0");
    ad_node *ok = ad_concat(g, (ad_node *const[]){a, b}, 2, 0);
    ck_assert_ptr_nonnull(ok);
    ck_assert_int_eq(ad_node_shape(ok).dim[0], 5);
    ad_graph_free(g);
}
END_TEST

START_TEST(cross_entropy_errors)
{
    ad_graph *g = ad_graph_new();
    ad_node *z = zeros(g, AD_F64, AD_SHAPE(2, 3));
    EXPECT_FAIL(g, ad_cross_entropy(g, z, (const int32_t[]){0, 3}), AD_ERR_ARG,
                "cross_entropy: label 3 at row 1 outside [0,3)");
    EXPECT_FAIL(g, ad_cross_entropy(g, z, (const int32_t[]){-1, 0}), AD_ERR_ARG,
                "cross_entropy: label -1 at row 0 outside [0,3)");
    EXPECT_FAIL(g, ad_cross_entropy(g, z, NULL), AD_ERR_NULL, "cross_entropy: labels are NULL");
    const int32_t lab[6] = {0};
    EXPECT_FAIL(g, ad_cross_entropy(g, zeros(g, AD_F64, AD_SHAPE(6)), lab), AD_ERR_SHAPE,
                "cross_entropy: logits [6]: expected a non-empty [N,C] matrix");
    EXPECT_FAIL(g, ad_cross_entropy(g, zeros(g, AD_F32, AD_SHAPE(2, 3, 1)), lab), AD_ERR_SHAPE,
                "cross_entropy: logits [2,3,1]: expected a non-empty [N,C] matrix");
    EXPECT_FAIL(g, ad_cross_entropy(g, zeros(g, AD_F64, AD_SHAPE(0, 3)), lab), AD_ERR_SHAPE,
                "cross_entropy: logits [0,3]: expected a non-empty [N,C] matrix");
    EXPECT_FAIL(g, ad_cross_entropy(g, ad_const_scalar(g, 1), lab), AD_ERR_SHAPE,
                "cross_entropy: logits []");
    ck_assert_ptr_nonnull(ad_cross_entropy(g, z, (const int32_t[]){2, 0}));
    ad_graph_free(g);
}
END_TEST

START_TEST(mse_and_mae_shape_mismatch)
{
    ad_graph *g = ad_graph_new();
    ad_node *p = zeros(g, AD_F64, AD_SHAPE(2, 3)), *t = zeros(g, AD_F64, AD_SHAPE(3, 2));
    EXPECT_FAIL(g, ad_mse(g, p, t), AD_ERR_SHAPE, "mse: prediction [2,3] and target [3,2]: shapes differ");
    EXPECT_FAIL(g, ad_mae(g, p, t), AD_ERR_SHAPE, "mae: prediction [2,3] and target [3,2]: shapes differ");
    /* the losses do not broadcast: [2,3] against [3] is a mistake, not a convenience */
    EXPECT_FAIL(g, ad_mse(g, p, zeros(g, AD_F64, AD_SHAPE(3))), AD_ERR_SHAPE,
                "mse: prediction [2,3] and target [3]: shapes differ");
    ad_graph_free(g);
}
END_TEST

START_TEST(dropout_arguments)
{
    ad_graph *g = ad_graph_new();
    ad_rng r;
    ad_rng_seed(&r, 4);
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(4));
    EXPECT_FAIL(g, ad_dropout(g, a, 1.0, false, &r), AD_ERR_ARG, "dropout: probability 1 outside [0,1)");
    EXPECT_FAIL(g, ad_dropout(g, a, -0.5, true, &r), AD_ERR_ARG, "dropout: probability -0.5 outside [0,1)");
    EXPECT_FAIL(g, ad_dropout(g, a, 1.5, true, &r), AD_ERR_ARG, "dropout: probability 1.5 outside [0,1)");
    EXPECT_FAIL(g, ad_dropout(g, a, NAN, true, &r), AD_ERR_ARG, "outside [0,1)");
    EXPECT_FAIL(g, ad_dropout(g, a, 0.5, true, NULL), AD_ERR_NULL, "dropout: rng is NULL");
    ck_assert_ptr_nonnull(ad_dropout(g, a, 0.0, true, &r));
    ad_graph_free(g);
}
END_TEST

/* A user op whose shape rule refuses everything, and one whose rule returns a bad rank. */
static void nop_forward(const ad_op_ctx *c) { (void)c; }
static int refuse_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)out;
    char b[64];
    ad_shape s = ad_node_shape(c->in[0]);
    snprintf(msg, len, "%s is not welcome", ad_shape_str(&s, b, sizeof b));
    return 1;
}
static int rank7_rule(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
    out->rank = AD_MAX_RANK + 1;
    return 0;
}

static int op_id(const ad_op_def *def)
{
    int id = ad_op_find(def->name); /* the registry persists across tests under CK_FORK=no */
    if (id < 0) id = ad_op_register(def);
    ck_assert_int_ge(id, 0);
    return id;
}

START_TEST(apply_bad_op_arity_and_params)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = zeros(g, AD_F64, AD_SHAPE(2)), *in3[3] = {a, a, a};
    EXPECT_FAIL(g, ad_apply(g, 9999, in3, 1, NULL, 0), AD_ERR_ARG, "apply: no op with id 9999");
    EXPECT_FAIL(g, ad_apply(g, -1, in3, 1, NULL, 0), AD_ERR_ARG, "apply: no op with id -1");
    EXPECT_FAIL(g, ad_apply(g, ad_op_count(), in3, 1, NULL, 0), AD_ERR_ARG, "apply: no op with id");
    /* leaves are made by their constructors, never applied */
    int var = ad_op_find("var"), cst = ad_op_find("const"), par = ad_op_find("param");
    char want[64];
    snprintf(want, sizeof want, "apply: no op with id %d", var);
    EXPECT_FAIL(g, ad_apply(g, var, in3, 0, NULL, 0), AD_ERR_ARG, want);
    snprintf(want, sizeof want, "apply: no op with id %d", cst);
    EXPECT_FAIL(g, ad_apply(g, cst, in3, 0, NULL, 0), AD_ERR_ARG, want);
    snprintf(want, sizeof want, "apply: no op with id %d", par);
    EXPECT_FAIL(g, ad_apply(g, par, in3, 0, NULL, 0), AD_ERR_ARG, want);
    /* ops that keep state take it through ad_apply_with, and say what is missing */
    ad_node *logits = zeros(g, AD_F64, AD_SHAPE(1, 2));
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("cross_entropy"), &logits, 1, NULL, 0), AD_ERR_NULL,
                "cross_entropy: labels are NULL");
    int32_t label = 1;
    ad_node *ce = ad_apply_with(g, ad_op_find("cross_entropy"), &logits, 1, NULL, 0, &label);
    ck_assert_ptr_nonnull(ce);
    ck_assert_double_eq_tol(ad_value(ce), log(2.0), 1e-15);
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("dropout"), in3, 1, NULL, 0), AD_ERR_ARG,
                "dropout: takes 2 parameters (p, inverted), given 0");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("dropout"), in3, 1, (double[]){0.5, 1}, 2), AD_ERR_NULL,
                "dropout: rng is NULL");
    /* wrong arity */
    int add = ad_op_find("add"), exp_id = ad_op_find("exp");
    EXPECT_FAIL(g, ad_apply(g, add, in3, 1, NULL, 0), AD_ERR_ARG, "add: takes 2 inputs, given 1");
    EXPECT_FAIL(g, ad_apply(g, add, in3, 3, NULL, 0), AD_ERR_ARG, "add: takes 2 inputs, given 3");
    EXPECT_FAIL(g, ad_apply(g, exp_id, in3, 0, NULL, 0), AD_ERR_ARG, "exp: takes 1 inputs, given 0");
    EXPECT_FAIL(g, ad_apply(g, add, in3, -1, NULL, 0), AD_ERR_ARG, "add: takes 2 inputs, given -1");
    /* parameter lists */
    EXPECT_FAIL(g, ad_apply(g, add, in3, 2, NULL, -1), AD_ERR_ARG, "add: bad parameter list");
    EXPECT_FAIL(g, ad_apply(g, add, in3, 2, NULL, 2), AD_ERR_ARG, "add: bad parameter list");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("reshape"), in3, 1, (const double[]){3, 1, 1, 1}, 2),
                AD_ERR_SHAPE, "reshape: bad target shape");
    /* user shape rules: their message is prefixed with the op's name */
    static const ad_op_def refuse = {.name = "user_refuse", .arity = 1, .shape = refuse_rule, .forward = nop_forward, .backward = NULL, .local_grad = ""};
    static const ad_op_def bad_rank = {.name = "user_rank7", .arity = 1, .shape = rank7_rule, .forward = nop_forward, .backward = NULL, .local_grad = ""};
    EXPECT_FAIL(g, ad_apply(g, op_id(&refuse), in3, 1, NULL, 0), AD_ERR_SHAPE,
                "user_refuse: [2] is not welcome");
    EXPECT_FAIL(g, ad_apply(g, op_id(&bad_rank), in3, 1, NULL, 0), AD_ERR_SHAPE,
                "user_rank7: shape rule gave rank 7");
    /* after all that, a well-formed call still works */
    ck_assert_ptr_nonnull(ad_apply(g, add, in3, 2, NULL, 0));
    ck_assert_ptr_null(ad_error(g));
    ad_graph_free(g);
}
END_TEST

START_TEST(leaf_shape_errors)
{
    ad_graph *g = ad_graph_new();
    ad_shape r7 = {.rank = AD_MAX_RANK + 1}, rneg = {.rank = -1};
    EXPECT_FAIL(g, ad_const(g, AD_F64, r7, NULL), AD_ERR_SHAPE, "const: rank 7 outside 0..6");
    EXPECT_FAIL(g, ad_var_array(g, "v", AD_F32, rneg, NULL), AD_ERR_SHAPE, "var: rank -1 outside 0..6");
    EXPECT_FAIL(g, ad_full(g, AD_F64, AD_SHAPE(2, -1), 0), AD_ERR_SHAPE, "const: invalid shape [2,-1]");
    EXPECT_FAIL(g, ad_var_array(g, "v", AD_F64, AD_SHAPE(-3), NULL), AD_ERR_SHAPE,
                "var: invalid shape [-3]");
    EXPECT_FAIL(g, ad_const(g, AD_F64, AD_SHAPE(INT64_MAX / 2 + 1, 2), NULL), AD_ERR_SHAPE,
                "const: invalid shape");
    ck_assert_uint_eq(ad_graph_num_nodes(g), 0);
    ad_graph_free(g);
}
END_TEST

/* ---- backward ---- */

START_TEST(backward_bad_roots)
{
    ad_graph *g = ad_graph_new(), *h = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1), *f = ad_mul(g, x, x);
    ck_assert_int_eq(ad_backward(g, NULL), AD_ERR_NULL);
    EXPECT_ERROR(g, AD_ERR_NULL, "backward: root is NULL");
    ad_clear_error(g);
    ck_assert_int_eq(ad_backward_seed(g, NULL, (const double[]){1}), AD_ERR_NULL);
    EXPECT_ERROR(g, AD_ERR_NULL, "backward: root is NULL");
    ad_clear_error(g);
    ck_assert_int_eq(ad_backward_seed(g, f, NULL), AD_ERR_NULL);
    EXPECT_ERROR(g, AD_ERR_NULL, "backward: seed is NULL");
    ad_clear_error(g);

    /* a root from another graph: one whose id is past this graph's end ... */
    ad_node *u = NULL;
    for (int i = 0; i < 5; i++) u = ad_var(h, "u", i);
    ck_assert_int_eq(ad_backward(g, u), AD_ERR_ARG);
    EXPECT_ERROR(g, AD_ERR_ARG, "backward: root is not a node of this graph");
    ad_clear_error(g);
    /* ... and one whose id exists here too */
    ad_node *h0 = ad_graph_node(h, 1);
    ck_assert_uint_lt(ad_node_id(h0), ad_graph_num_nodes(g));
    ck_assert_int_eq(ad_backward(g, h0), AD_ERR_ARG);
    EXPECT_ERROR(g, AD_ERR_ARG, "backward: root is not a node of this graph");
    ad_clear_error(g);
    ck_assert_int_eq(ad_backward_seed(g, h0, (const double[]){1}), AD_ERR_ARG);
    EXPECT_ERROR(g, AD_ERR_ARG, "not a node of this graph");
    ad_clear_error(g);
    ck_assert_double_eq(ad_grad(x), 0); /* nothing was swept */
    ck_assert_ptr_null(ad_error(h));    /* and the other graph is untouched */

    /* a non-scalar root needs a seed */
    ad_node *t = ad_var_array(g, "t", AD_F32, AD_SHAPE(3, 1), NULL);
    ck_assert_int_eq(ad_backward(g, t), AD_ERR_SHAPE);
    EXPECT_ERROR(g, AD_ERR_SHAPE, "backward: root has shape [3,1]; a root with more than one "
                                  "element needs a seed gradient (ad_backward_seed)");
    ad_clear_error(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ck_assert_double_eq(ad_grad(x), 2);
    ad_graph_free(g);
    ad_graph_free(h);
}
END_TEST

/* ---- ad_gradient and the checkers ---- */

static ad_node *returns_null(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)g, (void)x, (void)n, (void)user;
    return NULL;
}

static ad_node *bad_matmul(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    return ad_matmul(g, x[0], x[0]);
}

static ad_node *square_sum(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)user;
    ad_node *s = ad_mul(g, x[0], x[0]);
    for (int i = 1; i < n; i++) s = ad_add(g, s, ad_mul(g, x[i], x[i]));
    return ad_sum(g, s);
}

START_TEST(gradient_and_gradcheck_errors)
{
    ad_graph *g = ad_graph_new();
    double x[2] = {1, 2}, v = -1, gr[2] = {-1, -1};
    ck_assert_int_eq(ad_gradient(NULL, NULL, 2, x, NULL, &v, gr), AD_ERR_NULL);
    ck_assert_int_eq(ad_gradient(g, NULL, 2, x, NULL, &v, gr), AD_ERR_NULL);
    EXPECT_ERROR(g, AD_ERR_NULL, "gradient: NULL function or point");
    ad_clear_error(g);
    ck_assert_int_eq(ad_gradient(g, square_sum, 2, NULL, NULL, &v, gr), AD_ERR_NULL);
    EXPECT_ERROR(g, AD_ERR_NULL, "gradient: NULL function or point");
    ck_assert_int_eq(ad_gradient(g, square_sum, -1, x, NULL, &v, gr), AD_ERR_NULL);
    ck_assert_int_eq(ad_gradient(g, returns_null, 2, x, NULL, &v, gr), AD_ERR_NULL);
    EXPECT_ERROR(g, AD_ERR_NULL, "gradient: the function returned NULL");
    /* the function's own error is reported as it was recorded */
    ck_assert_int_eq(ad_gradient(g, bad_matmul, 1, x, NULL, &v, gr), AD_ERR_SHAPE);
    EXPECT_ERROR(g, AD_ERR_SHAPE, "matmul: [] x []: operands must be 1-D or more");
    ck_assert_int_eq(ad_gradient(NULL, bad_matmul, 1, x, NULL, &v, gr), AD_ERR_SHAPE);
    /* outputs are untouched on failure */
    ck_assert_double_eq(v, -1);
    ck_assert_double_eq(gr[0], -1);

    ad_check_report rep;
    ck_assert_int_eq(ad_gradcheck(NULL, 2, x, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_int_eq(ad_gradcheck(square_sum, 2, NULL, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_int_eq(ad_gradcheck(returns_null, 2, x, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_ptr_nonnull(strstr(rep.msg, "gradcheck: the function returned NULL"));
    ck_assert_int_eq(ad_gradcheck(bad_matmul, 1, x, NULL, NULL, &rep), AD_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(rep.msg, "matmul: [] x []"));

    ad_tensor *t64 = ad_tensor_from(AD_F64, AD_SHAPE(2), x), *t32 = ad_tensor_from(AD_F32, AD_SHAPE(2), x);
    ad_tensor *in[2] = {t64, t32};
    ck_assert_int_eq(ad_gradcheck_tensors(square_sum, 2, in, NULL, NULL, &rep), AD_ERR_DTYPE);
    ck_assert_str_eq(rep.msg, "gradcheck: input 1 is not float64");
    in[1] = NULL;
    ck_assert_int_eq(ad_gradcheck_tensors(square_sum, 2, in, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_str_eq(rep.msg, "gradcheck: input 1 is NULL");
    ck_assert_int_eq(ad_gradcheck_tensors(NULL, 1, in, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_int_eq(ad_gradcheck_tensors(square_sum, 1, NULL, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_int_eq(ad_gradcheck_tensors(returns_null, 1, in, NULL, NULL, &rep), AD_ERR_NULL);
    ck_assert_ptr_nonnull(strstr(rep.msg, "gradcheck: the function returned NULL"));
    /* and the happy path with the same inputs */
    ck_assert_int_eq(ad_gradcheck_tensors(square_sum, 1, in, NULL, NULL, &rep), AD_OK);
    ad_tensor_free(t64);
    ad_tensor_free(t32);
    ad_graph_free(g);
}
END_TEST

/* ---- issue 20: what an attack on the API found ---- */

/* Defect 3: every built-in op through ad_apply, with no parameters and with absurd ones.  The
 * ops that read parameters refuse a missing list (they dereferenced NULL), and a parameter that
 * is not a representable integer is refused before any float-to-int conversion (which would
 * be undefined). */
START_TEST(apply_builtin_ops_with_missing_and_absurd_params)
{
    ad_graph *g = ad_graph_new();
    ad_node *m = ad_var_array(g, "m", AD_F64, AD_SHAPE(2, 2), NULL), *in[3] = {m, m, m};
    static const struct { const char *op; int nin; const char *want; } missing[] = {
        {"sum_axis", 1, "sum_axis: takes 2 parameters (axis, keepdim), given 0"},
        {"mean_axis", 1, "mean_axis: takes 2 parameters (axis, keepdim), given 0"},
        {"slice", 1, "slice: takes 3 parameters (axis, start, end), given 0"},
        {"concat", 2, "concat: takes 1 parameter (axis), given 0"},
        {"softmax", 1, "softmax: takes 1 parameter (axis), given 0"},
        {"log_softmax", 1, "log_softmax: takes 1 parameter (axis), given 0"},
        {"reshape", 1, "reshape: takes 1 to 7 parameters (rank, dimensions), given 0"},
        {"broadcast_to", 1, "broadcast_to: takes 1 to 7 parameters (rank, dimensions), given 0"},
    };
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++)
        EXPECT_FAIL(g, ad_apply(g, ad_op_find(missing[i].op), in, missing[i].nin, NULL, 0), AD_ERR_ARG,
                    missing[i].want);
    /* too many parameters for an op that takes none */
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("matmul"), in, 2, (double[]){1}, 1), AD_ERR_ARG,
                "matmul: takes 0 parameters, given 1");
    static const struct { const char *op; int nin, np; double p[3]; const char *want; } absurd[] = {
        {"sum_axis", 1, 2, {NAN, 0}, "sum_axis: axis nan is not an integer"},
        {"mean_axis", 1, 2, {1e300, 0}, "mean_axis: axis 1e+300 is not an integer"},
        {"sum_axis", 1, 2, {0, 0.5}, "sum_axis: keepdim 0.5 is not an integer in [0, 1]"},
        {"slice", 1, 3, {0, 0, 1e300}, "slice: end 1e+300 is not an integer"},
        {"slice", 1, 3, {0, -INFINITY, 1}, "slice: start -inf is not an integer"},
        {"slice", 1, 3, {0.5, 0, 1}, "slice: axis 0.5 is not an integer"},
        {"concat", 2, 1, {NAN}, "concat: axis nan is not an integer"},
        {"softmax", 1, 1, {-1e300}, "softmax: axis -1e+300 is not an integer"},
        {"log_softmax", 1, 1, {INFINITY}, "log_softmax: axis inf is not an integer"},
        {"reshape", 1, 2, {1, 1e300}, "reshape: dimension 1e+300 is not an integer"},
        {"reshape", 1, 1, {NAN}, "reshape: rank nan is not an integer in [0, 6]"},
        {"broadcast_to", 1, 3, {2, 2, NAN}, "broadcast_to: dimension nan is not an integer"},
        {"linear", 2, 2, {1.5, 0}, "linear: activation 1.5 is not an integer in [0, 4]"},
        {"linear", 2, 2, {NAN, 0}, "linear: activation nan is not an integer in [0, 4]"},
        {"dropout", 1, 2, {NAN, 1}, "dropout: probability nan outside [0,1)"},
    };
    for (size_t i = 0; i < sizeof absurd / sizeof *absurd; i++)
        EXPECT_FAIL(g, ad_apply(g, ad_op_find(absurd[i].op), in, absurd[i].nin, absurd[i].p, absurd[i].np),
                    AD_ERR_ARG, absurd[i].want);
    /* the public slice takes int64 bounds: INT64_MAX as a double is 2^63, beyond int64 */
    EXPECT_FAIL(g, ad_slice(g, m, 0, 0, INT64_MAX), AD_ERR_ARG, "slice: end 9.22337e+18 is not an integer");
    /* and every op, built-in or user, with any short list of absurd parameters: an error or a
     * node, never a crash (the sanitizer builds check for undefined behaviour) */
    static const double junk[] = {NAN, 1e300, -1e300, INFINITY, 0.5, -1, 3};
    for (int op = ad_op_find("add"); op < ad_op_count(); op++) {
        const ad_op_def *d = ad_op_get(op);
        int nin = d->arity == AD_VARIADIC ? 2 : d->arity;
        for (int np = 0; np <= 4; np++)
            for (size_t k = 0; k < sizeof junk / sizeof *junk; k++) {
                double p[4] = {junk[k], junk[(k + 1) % 7], junk[(k + 2) % 7], junk[(k + 3) % 7]};
                ad_node *y = ad_apply(g, op, in, nin, np ? p : NULL, np);
                ck_assert_msg(y ? ad_status_of(g) == AD_OK : ad_status_of(g) != AD_OK, "%s", d->name);
                ad_clear_error(g);
            }
    }
    ad_graph_free(g);
}
END_TEST

/* Defect 4: a node whose size check fails (2^62 elements) must not stay behind, half made,
 * for the walkers to read: the graph is as it was before the call. */
START_TEST(failed_op_leaves_no_half_made_node)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1.0), *t = ad_var_array(g, "t", AD_F64, AD_SHAPE(1, 1), NULL);
    uint32_t before = ad_graph_num_nodes(g);
    ck_assert_ptr_null(ad_full(g, AD_F64, AD_SHAPE((int64_t)1 << 31, (int64_t)1 << 31), 1.0));
    ck_assert_ptr_null(ad_broadcast_to(g, t, AD_SHAPE((int64_t)1 << 31, (int64_t)1 << 31)));
    ck_assert_ptr_null(ad_var_array(g, "v", AD_F32, AD_SHAPE((int64_t)1 << 62), NULL));
    ck_assert_int_eq(ad_status_of(g), AD_ERR_NOMEM);
    ck_assert_uint_eq(ad_graph_num_nodes(g), before);
    /* the documented style: record on, check once at the end */
    ad_node *y = ad_exp(g, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_ptr_null(ad_find_nonfinite(g, y, false));
    for (uint32_t i = 0; i < ad_graph_num_nodes(g); i++) {
        ad_node *n = ad_graph_node(g, i);
        ck_assert_int_le(ad_node_size(n), 1);
        ck_assert(isfinite(ad_node_get(n, ad_node_size(n) - 1)));
    }
    ad_graph_free(g);
}
END_TEST

/* Defect 5: a node of another graph, alive or freed, and a node from before a reset are
 * refused on entry to every op: the scalar fast paths, ad_apply and the tensor ops. */
START_TEST(inputs_from_another_graph_are_refused)
{
    ad_graph *g1 = ad_graph_new(), *g2 = ad_graph_new();
    ad_node *x = ad_var(g1, "x", 5.0), *y = ad_var(g2, "y", 2.0);
    ad_node *z = ad_mul(g2, x, y);
    EXPECT_FAIL(g2, z, AD_ERR_ARG, "mul: input 1 is not a node of this graph");
    EXPECT_FAIL(g2, ad_mul(g2, y, x), AD_ERR_ARG, "mul: input 2 is not a node of this graph");
    EXPECT_FAIL(g2, ad_exp(g2, x), AD_ERR_ARG, "exp: input 1 is not a node of this graph");
    EXPECT_FAIL(g2, ad_apply(g2, ad_op_find("add"), (ad_node *[]){y, x}, 2, NULL, 0), AD_ERR_ARG,
                "add: input 2 is not a node of this graph");
    ad_node *a = ad_var_array(g1, "a", AD_F64, AD_SHAPE(2, 2), NULL);
    ad_node *b = ad_var_array(g2, "b", AD_F64, AD_SHAPE(2, 2), NULL);
    EXPECT_FAIL(g2, ad_matmul(g2, b, a), AD_ERR_ARG, "matmul: input 2 is not a node of this graph");
    EXPECT_FAIL(g2, ad_sum_axis(g2, a, 0, false), AD_ERR_ARG, "sum_axis: input 1 is not a node of this graph");
    EXPECT_FAIL(g2, ad_slice(g2, a, 0, 0, 1), AD_ERR_ARG, "slice: input 1 is not a node of this graph");
    EXPECT_FAIL(g2, ad_concat(g2, (ad_node *[]){b, a}, 2, 0), AD_ERR_ARG, "concat: input 2 is not a node of this graph");
    EXPECT_FAIL(g2, ad_add_scalar(g2, a, 1), AD_ERR_ARG, "add: input 1 is not a node of this graph");
    ck_assert_int_eq(ad_backward(g2, x), AD_ERR_ARG);
    ad_clear_error(g2);
    /* with the other graph freed: no read of the dead node (AddressSanitizer would see it) */
    ad_graph_free(g1);
    EXPECT_FAIL(g2, ad_add(g2, y, x), AD_ERR_ARG, "add: input 2 is not a node of this graph");
    EXPECT_FAIL(g2, ad_relu(g2, a), AD_ERR_ARG, "relu: input 1 is not a node of this graph");
    /* a node from before a reset whose slot no new node has taken yet */
    ad_node *p = ad_var(g2, "p", 1.0), *q = ad_mul(g2, p, p);
    ck_assert_ptr_nonnull(q);
    ad_graph_reset(g2);
    ad_node *r = ad_var(g2, "r", 3.0);
    EXPECT_FAIL(g2, ad_add(g2, r, q), AD_ERR_ARG, "add: input 2 is not a node of this graph");
    ad_graph_free(g2);
}
END_TEST

/* Defect 11: zero-element tensors with huge dimensions, as a safetensors file may declare
 * them: every op either works (on no elements) or refuses, with no signed overflow (the
 * UBSan build checks). */
START_TEST(zero_element_tensors_with_huge_dimensions)
{
    ad_graph *g = ad_graph_new();
    const int64_t H = (int64_t)1 << 62;
    ad_node *z = ad_var_array(g, "z", AD_F64, AD_SHAPE(0, H, H), NULL);
    ad_node *one = ad_var_array(g, "one", AD_F64, AD_SHAPE(1, 1, 1), NULL);
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(ad_node_size(z), 0);
    ad_node *ok[] = {
        ad_transpose(g, z), ad_add(g, z, z), ad_mul(g, z, one), ad_sub(g, one, z), ad_exp(g, z),
        ad_concat(g, (ad_node *[]){z, z}, 2, 0), ad_softmax(g, z, 0), ad_log_softmax(g, z, 2),
        ad_sum_axis(g, z, 1, false), ad_sum(g, z), ad_mean_axis(g, z, 2, true),
        ad_broadcast_to(g, one, AD_SHAPE(0, H, H)), ad_matmul(g, z, ad_transpose(g, z)),
        ad_reshape(g, z, AD_SHAPE(H, 0, H)), ad_slice(g, z, 1, 1, 3),
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        ck_assert_msg(ok[i] != NULL, "op %zu: %s", i, ad_error(g) ? ad_error(g) : "");
    ad_node *s = ad_sum(g, ad_add(g, ad_transpose(g, z), ad_transpose(g, z)));
    ck_assert_int_eq(ad_backward(g, s), AD_OK);
    ck_assert_int_eq(ad_status_of(g), AD_OK);
    /* a concat whose axis would exceed int64 */
    EXPECT_FAIL(g, ad_concat(g, (ad_node *[]){z, z}, 2, 1), AD_ERR_SHAPE, "concat: [0,");
    ad_graph_free(g);
}
END_TEST

/* The indexing and shape ops of ad_ops/index.c and shape.c, and matmul's broadcasting: every
 * refusal names the op, the arguments and the shapes. */
START_TEST(indexing_and_shape_op_errors)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(3, 4), NULL);
    const int64_t idx[3] = {0, 5, 1}, neg[2] = {-3, -4};
    /* index_select */
    EXPECT_FAIL(g, ad_index_select(g, x, 0, idx, 3), AD_ERR_ARG,
                "index_select: index 5 (position 1) out of range for axis 0 of [3,4]");
    EXPECT_FAIL(g, ad_index_select(g, x, -2, neg, 2), AD_ERR_ARG,
                "index_select: index -4 (position 1) out of range for axis 0 of [3,4]");
    EXPECT_FAIL(g, ad_index_select(g, x, 2, idx, 1), AD_ERR_ARG, "index_select: axis 2 out of range for shape [3,4]");
    EXPECT_FAIL(g, ad_index_select(g, x, 0, NULL, 2), AD_ERR_NULL, "index_select: indices are NULL");
    EXPECT_FAIL(g, ad_index_select(g, x, 0, idx, -1), AD_ERR_ARG, "index_select: -1 indices");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("index_select"), &x, 1, (double[]){NAN, 1, 2}, 3), AD_ERR_ARG,
                "index_select: axis nan is not an integer in [0, 5]");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("index_select"), &x, 1, (double[]){0, 1, 1e300}, 3), AD_ERR_ARG,
                "index_select: index dimension 1e+300 is not an integer");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("index_select"), &x, 1, (double[]){0, 2, 1, 1}, 4), AD_ERR_SHAPE,
                "index_select: the index must be 1-D (given rank 2)");
    /* gather */
    EXPECT_FAIL(g, ad_gather(g, x, 1, AD_SHAPE(3), idx), AD_ERR_SHAPE, "gather: input [3,4] and index [3]: ranks differ");
    EXPECT_FAIL(g, ad_gather(g, x, 1, AD_SHAPE(4, 1), idx), AD_ERR_SHAPE,
                "gather: input [3,4] and index [4,1]: index is larger on axis 0");
    EXPECT_FAIL(g, ad_gather(g, x, 1, AD_SHAPE(1, 3), idx), AD_ERR_ARG,
                "gather: index 5 (position 1) out of range for axis 1 of [3,4]");
    /* embedding */
    ad_node *w3 = ad_var_array(g, "w", AD_F64, AD_SHAPE(2, 3, 4), NULL);
    EXPECT_FAIL(g, ad_embedding(g, w3, AD_SHAPE(2), idx), AD_ERR_SHAPE,
                "embedding: weight [2,3,4]: expected a [num, dim] table indexed along axis 0");
    EXPECT_FAIL(g, ad_embedding(g, x, AD_SHAPE(3), idx), AD_ERR_ARG,
                "embedding: index 5 (position 1) out of range for axis 0 of [3,4]");
    EXPECT_FAIL(g, ad_embedding(g, x, AD_SHAPE(1, 1, 1, 1, 1, 1), idx), AD_ERR_SHAPE,
                "embedding: [3,4] indexed by [1,1,1,1,1,1] would have more than 6 axes");
    /* new indices for a recorded node: the same count, checked as at recording */
    ad_node *sel = ad_index_select(g, x, 1, (const int64_t[]){1, 2}, 2);
    ck_assert_ptr_nonnull(sel);
    ck_assert_int_eq(ad_node_set_arg(g, sel, &(ad_index){idx, 3}), AD_ERR_ARG);
    EXPECT_ERROR(g, AD_ERR_ARG, "index_select: 3 indices given for an index of shape [2]");
    ad_clear_error(g);
    ck_assert_int_eq(ad_node_set_arg(g, sel, &(ad_index){(const int64_t[]){3, 4}, 2}), AD_ERR_ARG);
    EXPECT_ERROR(g, AD_ERR_ARG, "index_select: index 4 (position 1) out of range for axis 1 of [3,4]");
    ad_clear_error(g);
    ck_assert_int_eq(ad_node_set_arg(g, sel, NULL), AD_ERR_NULL);
    ad_clear_error(g);
    /* stack and concat */
    ad_node *y = ad_var_array(g, "y", AD_F64, AD_SHAPE(4, 3), NULL), *s = ad_var(g, "s", 1);
    EXPECT_FAIL(g, ad_stack(g, (ad_node *[]){x, y}, 2, 0), AD_ERR_SHAPE, "stack: [3,4] and [4,3] differ (input 2)");
    EXPECT_FAIL(g, ad_stack(g, (ad_node *[]){x, x}, 2, 3), AD_ERR_ARG,
                "stack: axis 3 out of range for stacking [3,4] (the output has 3 axes)");
    EXPECT_FAIL(g, ad_stack(g, (ad_node *[]){x, x}, 2, -4), AD_ERR_ARG, "stack: axis -4 out of range");
    EXPECT_FAIL(g, ad_stack(g, NULL, 2, 0), AD_ERR_NULL, "stack: input array is NULL");
    EXPECT_FAIL(g, ad_stack(g, (ad_node *[]){x}, 0, 0), AD_ERR_ARG, "stack: needs at least one input (given 0)");
    EXPECT_FAIL(g, ad_concat(g, (ad_node *[]){s, s}, 2, 0), AD_ERR_SHAPE,
                "concat: input 1 is a scalar (0-D), which has no axis to join along; ad_stack joins scalars into a vector");
    /* permute */
    EXPECT_FAIL(g, ad_permute(g, x, (const int[]){0, 0}), AD_ERR_SHAPE, "permute: (0,0) is not a permutation of the axes of [3,4]");
    EXPECT_FAIL(g, ad_permute(g, x, (const int[]){0, 2}), AD_ERR_SHAPE, "permute: axis 2 out of range for shape [3,4]");
    EXPECT_FAIL(g, ad_permute(g, x, NULL), AD_ERR_NULL, "permute: perm is NULL");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("permute"), &x, 1, (double[]){1}, 1), AD_ERR_SHAPE,
                "permute: (1) is not a permutation of the axes of [3,4]");
    /* slice_step */
    EXPECT_FAIL(g, ad_slice_step(g, x, 1, 0, 4, 0), AD_ERR_ARG, "slice_step: step 0 must be at least 1");
    EXPECT_FAIL(g, ad_slice_step(g, x, 1, 0, 5, 2), AD_ERR_ARG,
                "slice_step: [3,4]: start 0 and end 5 must be in 0..4 on axis 1 (clamp them first, as Python does)");
    EXPECT_FAIL(g, ad_slice_step(g, x, 1, -1, 4, 2), AD_ERR_ARG, "slice_step: [3,4]: start -1 and end 4");
    EXPECT_FAIL(g, ad_slice_step(g, x, 2, 0, 1, 2), AD_ERR_ARG, "slice_step: axis 2 out of range for shape [3,4]");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("slice_step"), &x, 1, (double[]){1, 0, 4, NAN}, 4), AD_ERR_ARG,
                "slice_step: step nan is not an integer");
    /* the internal ops of the gradient graphs refuse anything but an indexing node */
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("index_add"), (ad_node *[]){x, y}, 2, NULL, 0), AD_ERR_SHAPE,
                "index_add: input 2 is a var node, not index_select, embedding or gather");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("index_take"), (ad_node *[]){y, sel}, 2, NULL, 0), AD_ERR_SHAPE,
                "index_take: input [4,3], expected [3,4]");
    /* detach */
    EXPECT_FAIL(g, ad_detach(g, NULL), AD_ERR_NULL, "detach: ");
    /* matmul: the batch axes broadcast, the inner ones match */
    ad_node *a4 = ad_var_array(g, "a", AD_F32, AD_SHAPE(2, 1, 3, 4), NULL);
    ad_node *b3 = ad_var_array(g, "b", AD_F32, AD_SHAPE(5, 4, 6), NULL);
    ad_node *p = ad_matmul(g, a4, b3);
    ck_assert_ptr_nonnull(p);
    ad_shape ps = ad_node_shape(p);
    ck_assert(ps.rank == 4 && ps.dim[0] == 2 && ps.dim[1] == 5 && ps.dim[2] == 3 && ps.dim[3] == 6);
    EXPECT_FAIL(g, ad_matmul(g, b3, a4), AD_ERR_SHAPE, "matmul: [5,4,6] x [2,1,3,4]: inner dimensions 6 and 3 differ");
    EXPECT_FAIL(g, ad_matmul(g, ad_var_array(g, "v", AD_F32, AD_SHAPE(3), NULL), b3), AD_ERR_SHAPE,
                "matmul: [3] x [5,4,6]: inner dimensions 3 and 4 differ");
    ad_graph_free(g);
}
END_TEST

/* Axis reductions, BCE and the norms: bad axes, empty axes, shapes, dtypes, parameters and
 * running statistics, each refused with its message and no node left behind. */
START_TEST(axis_reduction_and_norm_errors)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = zeros(g, AD_F64, AD_SHAPE(2, 3)), *empty = zeros(g, AD_F64, AD_SHAPE(2, 0));
    ad_node *v2 = zeros(g, AD_F64, AD_SHAPE(2)), *v3 = zeros(g, AD_F64, AD_SHAPE(3)), *f3 = zeros(g, AD_F32, AD_SHAPE(3));
    ad_tensor *t2 = ad_tensor_new(AD_F64, AD_SHAPE(2)), *t3 = ad_tensor_new(AD_F64, AD_SHAPE(3));
    ad_tensor *f32 = ad_tensor_new(AD_F32, AD_SHAPE(3));
    ad_node *xt = zeros(g, AD_F64, AD_SHAPE(3, 2)), *one = zeros(g, AD_F64, AD_SHAPE(1, 3, 1));
    uint32_t nodes = ad_graph_num_nodes(g);
    EXPECT_FAIL(g, ad_max_axis(g, x, 2, false), AD_ERR_ARG, "max_axis: axis 2 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_argmin(g, x, -3, true), AD_ERR_ARG, "argmin: axis -3 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_logsumexp(g, x, 5, true), AD_ERR_ARG, "logsumexp: axis 5 out of range for shape [2,3]");
    EXPECT_FAIL(g, ad_min_axis(g, empty, 1, false), AD_ERR_SHAPE, "min_axis: axis 1 of [2,0] has no elements to choose from");
    EXPECT_FAIL(g, ad_argmax(g, empty, -1, true), AD_ERR_SHAPE, "argmax: axis 1 of [2,0] has no elements to choose from");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("argmax"), &x, 1, (double[]){0, 2}, 2), AD_ERR_ARG,
                "argmax: keepdim 2 is not an integer in [0, 1]");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("max_axis"), &x, 1, (double[]){NAN, 0}, 2), AD_ERR_ARG,
                "max_axis: axis nan is not an integer in [0, 5]");
    EXPECT_FAIL(g, ad_bce_with_logits(g, x, xt), AD_ERR_SHAPE,
                "bce_with_logits: logits [2,3] and target [3,2]: shapes differ");
    EXPECT_FAIL(g, ad_bce_with_logits(g, x, NULL), AD_ERR_NULL, "bce_with_logits: input 2 is NULL");
    EXPECT_FAIL(g, ad_layer_norm(g, x, 3, NULL, NULL, 1e-5), AD_ERR_SHAPE, "layer_norm: x [2,3] has fewer than 3 axes to normalise");
    EXPECT_FAIL(g, ad_layer_norm(g, x, 0, NULL, NULL, 1e-5), AD_ERR_ARG, "layer_norm: axes 0 is not an integer in [1, 6]");
    EXPECT_FAIL(g, ad_layer_norm(g, x, 1, v2, NULL, 1e-5), AD_ERR_SHAPE,
                "layer_norm: weight [2] for x [2,3] normalised over its last 1 axis: expected [3]");
    EXPECT_FAIL(g, ad_layer_norm(g, x, 2, NULL, v3, 1e-5), AD_ERR_SHAPE,
                "layer_norm: bias [3] for x [2,3] normalised over its last 2 axes: expected [2,3]");
    EXPECT_FAIL(g, ad_layer_norm(g, x, 1, f3, NULL, 1e-5), AD_ERR_DTYPE, "layer_norm: float64 [2,3] and float32 [3]: dtypes differ");
    EXPECT_FAIL(g, ad_layer_norm(g, x, 1, NULL, NULL, NAN), AD_ERR_ARG, "layer_norm: eps nan is not a finite number >= 0");
    EXPECT_FAIL(g, ad_batch_norm(g, v3, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), AD_ERR_SHAPE,
                "batch_norm: x [3]: expected [N,C] or [N,C,...]");
    EXPECT_FAIL(g, ad_batch_norm(g, one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), AD_ERR_SHAPE,
                "batch_norm: x [1,3,1]: expected more than 1 value per channel when training");
    EXPECT_FAIL(g, ad_batch_norm(g, x, v2, NULL, NULL, NULL, true, 0.1, 1e-5), AD_ERR_SHAPE,
                "batch_norm: weight [2] for x [2,3]: expected [3]");
    EXPECT_FAIL(g, ad_batch_norm(g, x, NULL, NULL, t3, NULL, true, 0.1, 1e-5), AD_ERR_ARG,
                "batch_norm: running_mean and running_var: give both or neither");
    EXPECT_FAIL(g, ad_batch_norm(g, x, NULL, NULL, t2, t2, true, 0.1, 1e-5), AD_ERR_ARG,
                "batch_norm: running_mean float64 [2] for x float64 [2,3]: expected [3] of x's dtype");
    EXPECT_FAIL(g, ad_batch_norm(g, x, NULL, NULL, t3, f32, false, 0.1, 1e-5), AD_ERR_ARG,
                "batch_norm: running_var float32 [3] for x float64 [2,3]: expected [3] of x's dtype");
    EXPECT_FAIL(g, ad_batch_norm(g, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), AD_ERR_ARG,
                "batch_norm: evaluation needs running_mean and running_var");
    EXPECT_FAIL(g, ad_batch_norm(g, x, NULL, NULL, t3, t3, true, NAN, 1e-5), AD_ERR_ARG,
                "batch_norm: momentum nan is not in [0, 1]");
    EXPECT_FAIL(g, ad_batch_norm(g, x, NULL, NULL, t3, t3, false, 0.1, -1), AD_ERR_ARG,
                "batch_norm: eps -1 is not a finite number >= 0");
    ck_assert_uint_eq(ad_graph_num_nodes(g), nodes);
    /* the refusals touched no running statistic */
    for (int i = 0; i < 3; i++) ck_assert(ad_tensor_get(t3, i) == 0);
    ad_tensor_free(t2), ad_tensor_free(t3), ad_tensor_free(f32);
    ad_graph_free(g);
}
END_TEST

/* ---- convolution and pooling (conv.c) ---- */

START_TEST(conv_and_pool_errors)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2, 3, 5, 5), NULL);
    ad_node *w = ad_var_array(g, "w", AD_F64, AD_SHAPE(4, 2, 3, 3), NULL);
    ad_node *w3 = ad_var_array(g, "w3", AD_F64, AD_SHAPE(4, 3, 3, 3), NULL);
    ad_node *b5 = ad_var_array(g, "b", AD_F64, AD_SHAPE(5), NULL);
    /* channels, groups, bias, ranks */
    EXPECT_FAIL(g, ad_conv2d(g, x, w, NULL, NULL), AD_ERR_SHAPE,
                "conv2d: input [2,3,5,5] and weight [4,2,3,3]: the input has 3 channels, the weight takes 2 per group in 1 groups");
    EXPECT_FAIL(g, ad_conv2d(g, x, w, NULL, &(ad_conv_opts){.groups = 2}), AD_ERR_SHAPE,
                "conv2d: input [2,3,5,5] and weight [4,2,3,3]: groups 2 must divide the 3 input and 4 output channels");
    EXPECT_FAIL(g, ad_conv2d(g, x, w3, b5, NULL), AD_ERR_SHAPE,
                "conv2d: bias [5]: expected [4], one per output channel");
    EXPECT_FAIL(g, ad_conv2d(g, b5, w3, NULL, NULL), AD_ERR_SHAPE,
                "conv2d: input [5] and weight [4,3,3,3]: expected input [N,C,H,W] and weight [O,C/groups,KH,KW]");
    /* a kernel larger than the padded input; with padding it fits */
    ad_node *big = ad_var_array(g, "big", AD_F64, AD_SHAPE(1, 3, 6, 3), NULL);
    EXPECT_FAIL(g, ad_conv2d(g, x, big, NULL, NULL), AD_ERR_SHAPE,
                "conv2d: input [2,3,5,5] and weight [1,3,6,3]: the kernel 6x3 (dilation 1x1) does not fit the padded input 5x5");
    ck_assert_ptr_nonnull(ad_conv2d(g, x, big, NULL, &(ad_conv_opts){.padding = {1, 0}}));
    EXPECT_FAIL(g, ad_conv2d(g, x, w3, NULL, &(ad_conv_opts){.dilation = {3, 1}}), AD_ERR_SHAPE,
                "the kernel 3x3 (dilation 3x1) does not fit the padded input 5x5");
    /* bad options: zero means the default, negative is refused before use */
    EXPECT_FAIL(g, ad_conv2d(g, x, w3, NULL, &(ad_conv_opts){.stride = {1, -2}}), AD_ERR_ARG,
                "conv2d: stride_w -2 is not an integer in [1, 2147483647]");
    EXPECT_FAIL(g, ad_conv2d(g, x, w3, NULL, &(ad_conv_opts){.padding = {-1, 0}}), AD_ERR_ARG,
                "conv2d: padding_h -1 is not an integer in [0, 2147483647]");
    EXPECT_FAIL(g, ad_conv2d(g, x, w3, NULL, &(ad_conv_opts){.groups = -1}), AD_ERR_ARG,
                "conv2d: groups -1 is not an integer");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("conv2d"), (ad_node *[]){x, w3}, 2, (double[]){1, 1, 0, 0, 1, NAN, 1}, 7),
                AD_ERR_ARG, "conv2d: dilation_w nan is not an integer");
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("conv2d"), (ad_node *[]){x, w3}, 2, (double[]){1}, 1), AD_ERR_ARG,
                "conv2d: takes 7 parameters (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups), given 1");
    /* conv1d names its own shapes */
    ad_node *x1 = ad_var_array(g, "x1", AD_F64, AD_SHAPE(2, 3, 4), NULL);
    ad_node *w1 = ad_var_array(g, "w1", AD_F64, AD_SHAPE(2, 2, 3), NULL);
    EXPECT_FAIL(g, ad_conv1d(g, x1, w1, NULL, NULL), AD_ERR_SHAPE,
                "conv1d: input [2,3,4] and weight [2,2,3]: the input has 3 channels, the weight takes 2 per group in 1 groups");
    EXPECT_FAIL(g, ad_conv1d(g, x, w, NULL, NULL), AD_ERR_SHAPE,
                "conv1d: input [2,3,5,5] and weight [4,2,3,3]: expected input [N,C,L] and weight [O,C/groups,K]");
    EXPECT_FAIL(g, ad_conv1d(g, x1, ad_var_array(g, "w5", AD_F64, AD_SHAPE(2, 3, 5), NULL), NULL, NULL), AD_ERR_SHAPE,
                "conv1d: input [2,3,4] and weight [2,3,5]: the kernel 1x5");
    EXPECT_FAIL(g, ad_conv1d(g, x1, w1, NULL, &(ad_conv_opts){.stride = {-1}}), AD_ERR_ARG,
                "conv1d: stride_w -1 is not an integer");
    /* pooling: padding at most half the kernel, as torch; windows that do not fit; ranks */
    EXPECT_FAIL(g, ad_max_pool2d(g, x, 3, 3, &(ad_conv_opts){.padding = {2, 0}}), AD_ERR_ARG,
                "max_pool2d: padding 2 must be at most half the kernel's height 3");
    EXPECT_FAIL(g, ad_avg_pool2d(g, x, 2, 2, &(ad_conv_opts){.padding = {0, 2}}), AD_ERR_ARG,
                "avg_pool2d: padding 2 must be at most half the kernel's width 2");
    EXPECT_FAIL(g, ad_max_pool2d(g, x, 6, 2, NULL), AD_ERR_SHAPE,
                "max_pool2d: input [2,3,5,5]: the window 6x2 (dilation 1x1) does not fit the padded input 5x5");
    EXPECT_FAIL(g, ad_max_pool2d(g, x, 0, 2, NULL), AD_ERR_ARG, "max_pool2d: kernel_h 0 is not an integer in [1, 2147483647]");
    EXPECT_FAIL(g, ad_avg_pool2d(g, x1, 2, 2, NULL), AD_ERR_SHAPE, "avg_pool2d: input [2,3,4]: expected [N,C,H,W]");
    EXPECT_FAIL(g, ad_avg_pool2d(g, x, 2, 2, &(ad_conv_opts){.dilation = {2, 1}}), AD_ERR_ARG,
                "avg_pool2d: dilation 2x1: average pooling has none");
    /* the internal adjoint ops check what ad_apply gives them */
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("max_pool2d_scatter"), (ad_node *[]){x, x}, 2, NULL, 0), AD_ERR_SHAPE,
                "max_pool2d_scatter: the second input is a var node, not the max_pool2d node whose maxima it follows");
    ad_node *y = ad_max_pool2d(g, x, 2, 2, NULL);
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("max_pool2d_gather"), (ad_node *[]){y, y}, 2, NULL, 0), AD_ERR_SHAPE,
                "max_pool2d_gather: gradient [2,3,2,2]: expected [2,3,5,5]");
    ad_node *gy = ad_var_array(g, "gy", AD_F64, AD_SHAPE(2, 4, 3, 3), NULL);
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("conv2d_input_grad"), (ad_node *[]){gy, w3}, 2,
                            (double[]){1, 1, 0, 0, 1, 1, 1, 6, 5}, 9),
                AD_ERR_SHAPE, "conv2d_input_grad: gradient [2,4,3,3]: the convolution's output is [2,4,4,3]");
    ck_assert_ptr_nonnull(ad_apply(g, ad_op_find("conv2d_input_grad"), (ad_node *[]){gy, w3}, 2,
                                   (double[]){1, 1, 0, 0, 1, 1, 1, 5, 5}, 9));
    EXPECT_FAIL(g, ad_apply(g, ad_op_find("avg_pool2d_grad"), &gy, 1, (double[]){2, 2, 2, 2, 0, 0, 5, 5}, 8),
                AD_ERR_SHAPE, "avg_pool2d_grad: gradient [2,4,3,3]: pooling [2,4,5,5] gives 2x2");
    ad_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_errors");
    TCase *t = tcase_create("null");
    tcase_add_test(t, null_input_to_unary_ops);
    tcase_add_test(t, null_input_to_binary_ops);
    tcase_add_test(t, null_input_to_variadic_and_leaf_ops);
    tcase_add_test(t, apply_null_input_array);
    tcase_add_test(t, concat_null_input_array);
    tcase_add_test(t, apply_negative_count_to_variadic);
    tcase_add_test(t, null_graph);
    tcase_add_test(t, first_error_is_sticky);
    suite_add_tcase(s, t);

    t = tcase_create("shapes");
    tcase_add_test(t, matmul_message_is_exact);
    tcase_add_test(t, dtype_mismatch_names_both);
    tcase_add_test(t, binary_ops_that_do_not_broadcast);
    tcase_add_test(t, axis_out_of_range);
    tcase_add_test(t, reshape_and_broadcast_to);
    tcase_add_test(t, slice_range_out_of_bounds);
    tcase_add_test(t, concat_mismatched_shapes);
    tcase_add_test(t, cross_entropy_errors);
    tcase_add_test(t, mse_and_mae_shape_mismatch);
    tcase_add_test(t, dropout_arguments);
    tcase_add_test(t, leaf_shape_errors);
    suite_add_tcase(s, t);

    t = tcase_create("apply_backward");
    tcase_add_test(t, apply_bad_op_arity_and_params);
    tcase_add_test(t, backward_bad_roots);
    tcase_add_test(t, gradient_and_gradcheck_errors);
    suite_add_tcase(s, t);

    t = tcase_create("hardening_ii");
    tcase_add_test(t, apply_builtin_ops_with_missing_and_absurd_params);
    tcase_add_test(t, failed_op_leaves_no_half_made_node);
    tcase_add_test(t, inputs_from_another_graph_are_refused);
    tcase_add_test(t, zero_element_tensors_with_huge_dimensions);
    tcase_add_test(t, indexing_and_shape_op_errors);
    tcase_add_test(t, axis_reduction_and_norm_errors);
    suite_add_tcase(s, t);

    t = tcase_create("conv");
    tcase_add_test(t, conv_and_pool_errors);
    suite_add_tcase(s, t);
    return run_suite(s);
}
