/* The lecture's sigmoid neuron, built gate by gate with the C API, then walked backward. */
#include "ad.h"
#include <stdio.h>

int main(void)
{
    ad_graph *g = ad_graph_new();
    /* the variables in the slides' argument order: the gradient comes out in this order */
    ad_node *x0 = ad_var(g, "x0", -1), *x1 = ad_var(g, "x1", -2);
    ad_node *w0 = ad_var(g, "w0", 2), *w1 = ad_var(g, "w1", -3), *w2 = ad_var(g, "w2", -3);
    ad_node *a = ad_mul(g, w0, x0);                 /* one statement per gate keeps the */
    ad_node *b = ad_mul(g, w1, x1);                 /* node order what the slides show */
    ad_node *s = ad_add(g, ad_add(g, a, b), w2);
    ad_node *e = ad_exp(g, ad_neg(g, s));
    ad_node *f = ad_recip(g, ad_add(g, ad_const_scalar(g, 1), e));   /* 1/(1 + e^-s) */
    if (ad_backward(g, f) != AD_OK) {
        fprintf(stderr, "%s\n", ad_error(g));
        return 1;
    }
    printf("f = %.2f\n", ad_value(f));
    printf("gradient = (%.2f, %.2f, %.2f, %.2f, %.2f)\n", ad_grad(x0), ad_grad(x1), ad_grad(w0),
           ad_grad(w1), ad_grad(w2));
    ad_trace_backward(g, f, stdout, 2);
    ad_graph_free(g);
    return 0;
}
