/* Two ops of your own: an elementwise one given by its formulas, and a general one with
 * state, a reverse rule and a forward rule.  Built and run by the test suite (docs/custom-op.md
 * walks through it). */
#include "ad_op.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* softsign(x) = x / (1 + |x|), by its value, derivative and second derivative: the engine
 * supplies broadcasting, both dtypes, threads, the scalar fast path, backward, forward mode
 * and traces. */
static double softsign(double x, double p) { (void)p; return x / (1 + fabs(x)); }
static double softsign_d(double x, double y, double p) { (void)y, (void)p; return 1 / ((1 + fabs(x)) * (1 + fabs(x))); }
static double softsign_d2(double x, double y, double p)
{
    (void)y, (void)p;
    double s = 1 + fabs(x);
    return (x > 0 ? -2 : x < 0 ? 2 : 0) / (s * s * s);
}

/* dot_with(x; w) = sum_i w_i x_i, where the weights w are the op's argument: copied into the
 * node's state when it is recorded, read again by backward, by forward mode and by the reverse
 * rule as a graph. */
typedef struct { double *w; int64_t n; } dot_state;

static ad_status dot_init(const ad_op_ctx *c, const void *arg, char *msg, size_t len)
{
    dot_state *s = c->state;
    if (!arg) return snprintf(msg, len, "weights are NULL"), AD_ERR_NULL;
    s->n = ad_node_size(c->in[0]);
    if (!(s->w = ad_op_alloc(c, (size_t)s->n * sizeof *s->w))) return AD_ERR_NOMEM; /* message recorded */
    memcpy(s->w, arg, (size_t)s->n * sizeof *s->w);
    return AD_OK;
}

static int dot_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
    *out = AD_SHAPE0; /* a scalar */
    return 0;
}

static void dot_forward(const ad_op_ctx *c)
{
    const dot_state *s = c->state;
    double y = 0;
    for (int64_t i = 0; i < s->n; i++) y += s->w[i] * ad_node_get(c->in[0], i);
    *(double *)ad_node_data(c->out) = y;
}

static ad_status dot_backward(const ad_op_ctx *c) /* dx_i += g w_i */
{
    const dot_state *s = c->state;
    double *gx = ad_input_grad_buffer(c->graph, c->in[0]), g = ad_grad(c->out);
    for (int64_t i = 0; gx && i < s->n; i++) gx[i] += g * s->w[i];
    return ad_status_of(c->graph);
}

static ad_status dot_jvp(const ad_op_ctx *c) /* t_y = sum_i w_i t_x_i */
{
    const dot_state *s = c->state;
    const double *tx = ad_tangent_data(c->graph, c->in[0]);
    double *ty = ad_tangent_buffer(c->graph, c->out);
    if (!ty) return ad_status_of(c->graph);
    for (int64_t i = 0; tx && i < s->n; i++) *ty += s->w[i] * tx[i];
    return AD_OK;
}

/* The reverse rule as a graph, for gradients of gradients: gy * w, with w a constant node. */
static ad_node *dot_grad_graph(const ad_op_ctx *c, ad_node *gy, int i)
{
    (void)i;
    const dot_state *s = c->state;
    ad_node *w = ad_const(c->graph, AD_F64, ad_node_shape(c->in[0]), s->w);
    return ad_mul(c->graph, gy, w);
}

int main(void)
{
    ad_unary_def softsign_def = {.name = "softsign", .f = softsign, .df = softsign_d, .d2f = softsign_d2,
                                 .local_grad = "d/dx[x/(1+|x|)] = 1/(1+|x|)^2"};
    ad_op_def dot_def = {.name = "dot_with", .arity = 1, .shape = dot_shape, .forward = dot_forward,
                         .backward = dot_backward, .local_grad = "d/dx_i[sum w x] = w_i",
                         .jvp = dot_jvp, .state_size = sizeof(dot_state), .init = dot_init,
                         .grad_graph = dot_grad_graph};
    int softsign_id = ad_op_register_unary(&softsign_def), dot_id = ad_op_register(&dot_def);
    if (softsign_id < 0 || dot_id < 0) return 1;

    /* f(x) = dot_with(softsign(x); w) on a float64 vector */
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(3), (double[]){-2, 0.5, 3});
    double w[3] = {1, 2, -1};
    ad_node *f = ad_apply_with(g, dot_id, (ad_node *[]){ad_apply(g, softsign_id, &x, 1, NULL, 0)}, 1, NULL, 0, w);
    if (!f || ad_backward(g, f) != AD_OK) {
        fprintf(stderr, "%s\n", ad_error(g));
        return 1;
    }
    /* df/dx_i = w_i / (1 + |x_i|)^2 */
    double want[3] = {1 / 9.0, 2 / 2.25, -1 / 16.0}, v[3] = {1, 1, 1};
    for (int i = 0; i < 3; i++)
        if (fabs(ad_node_grad_get(x, i) - want[i]) > 1e-15) return 1;
    /* forward mode: the derivative along v = (1, 1, 1) is the sum of the gradient */
    if (ad_jvp_graph(g, f, 1, &x, (const double *const[]){v}) != AD_OK) return 1;
    double dir = ad_tangent_get(g, f, 0);
    if (fabs(dir - (want[0] + want[1] + want[2])) > 1e-15) return 1;
    /* second order through both ops: the Hessian is diagonal, w_i softsign''(x_i) */
    double H[9], xs[3] = {-2, 0.5, 3};
    if (ad_hessian_graph(g, f, 1, &x, H) != AD_OK) return 1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (fabs(H[3 * i + j] - (i == j ? w[i] * softsign_d2(xs[i], 0, 0) : 0)) > 1e-15) return 1;
    printf("f = %.6f, df/dx = [%.6f, %.6f, %.6f], along (1,1,1): %.6f, diag H = [%.6f, %.6f, %.6f]\n",
           ad_value(f), ad_node_grad_get(x, 0), ad_node_grad_get(x, 1), ad_node_grad_get(x, 2), dir, H[0],
           H[4], H[8]);
    ad_graph_free(g);
    return 0;
}
