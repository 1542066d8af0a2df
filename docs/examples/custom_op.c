/* A user op from outside the library: softplus(x) = log(1 + e^x), registered once, then used,
 * gradchecked and traced like a built-in. */
#include "ad_op.h"
#include <math.h>
#include <stdio.h>

/* Forward: y = log(1 + e^x), written so e^x never overflows. */
static void softplus_forward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0], *y = c->out;
    for (int64_t i = 0; i < ad_node_size(y); i++) {
        double v = ad_node_get(x, i);
        double s = v > 0 ? v + log1p(exp(-v)) : log1p(exp(v));
        if (ad_node_dtype(y) == AD_F64) ((double *)ad_node_data(y))[i] = s;
        else ((float *)ad_node_data(y))[i] = (float)s;
    }
}

/* Backward: a vector-Jacobian product that ADDS into the input's gradient:
 * dx += g * sigmoid(x). */
static ad_status softplus_backward(const ad_op_ctx *c)
{
    ad_node *x = c->in[0], *y = c->out;
    void *gx = ad_grad_buffer(c->graph, x);
    if (!gx) return ad_status_of(c->graph); /* x needs no gradient, or out of memory */
    for (int64_t i = 0; i < ad_node_size(y); i++) {
        double d = ad_node_grad_get(y, i) / (1 + exp(-ad_node_get(x, i)));
        if (ad_node_dtype(x) == AD_F64) ((double *)gx)[i] += d;
        else ((float *)gx)[i] += (float)d;
    }
    return AD_OK;
}

static int softplus_id;

static ad_node *softplus(ad_graph *g, ad_node *x)
{
    return ad_apply(g, softplus_id, &x, 1, NULL, 0);
}

/* The function to check: sum(softplus(x) * x). */
static ad_node *f(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)n, (void)user;
    return ad_sum(g, ad_mul(g, softplus(g, x[0]), x[0]));
}

int main(void)
{
    ad_op_def def = {
        .name = "softplus",
        .arity = 1,
        .shape = NULL, /* elementwise: the output has the input's shape */
        .forward = softplus_forward,
        .backward = softplus_backward,
        .local_grad = "d/dx[log(1+e^x)] = sigmoid(x)",
    };
    softplus_id = ad_op_register(&def);
    if (softplus_id < 0) return 1;

    ad_rng r;
    ad_rng_seed(&r, 1);
    ad_tensor *x = ad_tensor_new(AD_F64, AD_SHAPE(3, 4));
    ad_tensor_rand_normal(x, &r, 0, 2);
    ad_check_report rep;
    ad_status st = ad_gradcheck_tensors(f, 1, &x, NULL, NULL, &rep);
    printf("gradcheck of softplus: %s (%lld elements, max abs error %.1e)\n",
           st == AD_OK ? "ok" : rep.msg, (long long)rep.checked, rep.max_abs_err);

    /* traced like any built-in: its name and local gradient text appear in the walk */
    ad_graph *g = ad_graph_new();
    ad_node *v = ad_var(g, "v", 0.5), *y = softplus(g, v);
    ad_backward(g, y);
    ad_trace_backward(g, y, stdout, 2);
    ad_graph_free(g);
    ad_tensor_free(x);
    return st == AD_OK ? 0 : 1;
}
