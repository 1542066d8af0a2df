/* Record once, evaluate many (docs/c-functions.md, "Record once, evaluate many"): a function
 * with a branch, recorded at one point and replayed at a thousand, its gradient checked against
 * the closed form at every one; then the same function with a C `if` read by ad_branch, whose
 * replay across the branch asks for a new recording. */
#include "ad.h"
#include <math.h>
#include <stdio.h>

/* f(x, y) = x^2 y where x > y, else sin(x) + y: the branch as an op, decided at every replay. */
static ad_node *f_select(ad_graph *g, ad_node *x, ad_node *y)
{
    ad_node *taken = ad_mul(g, ad_mul(g, x, x), y);
    ad_node *other = ad_add(g, ad_sin(g, x), y);
    return ad_where(g, ad_gt(g, x, y), taken, other);
}

/* The same with a C branch: the recording holds one side, and ad_branch guards it. */
static ad_node *f_branch(ad_graph *g, ad_node *x, ad_node *y)
{
    if (ad_branch(g, ad_gt(g, x, y))) return ad_mul(g, ad_mul(g, x, x), y);
    return ad_add(g, ad_sin(g, x), y);
}

int main(void)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 2), *y = ad_var(g, "y", 1);
    ad_node *f = f_select(g, x, y); /* recorded once, at (2, 1) */
    double worst = 0;
    for (int k = 0; k < 1000; k++) {
        double a = sin(0.1 * k) * 3, b = cos(0.07 * k) * 2;
        ad_set_value(g, x, a);
        ad_set_value(g, y, b);
        if (ad_replay(g) != AD_OK) return 1; /* no node made, nothing allocated */
        ad_zero_grad(g);
        if (ad_backward(g, f) != AD_OK) return 1;
        double dx = a > b ? 2 * a * b : cos(a), dy = a > b ? a * a : 1;
        worst = fmax(worst, fmax(fabs(ad_grad(x) - dx), fabs(ad_grad(y) - dy)));
    }
    printf("select form: 1000 points from one recording, largest gradient error %g\n", worst);

    ad_graph *h = ad_graph_new();
    ad_node *u = ad_var(h, "x", 2), *v = ad_var(h, "y", 1);
    f_branch(h, u, v); /* x > y taken */
    ad_set_value(h, u, 0.5);
    ad_status st = ad_replay(h); /* now x < y: the recording is the wrong side */
    printf("branch form: %s\n  %s\n", ad_status_name(st), ad_error(h));
    ad_graph_free(h);
    ad_graph_free(g);
    return worst <= 1e-14 && st == AD_ERR_RETAPE ? 0 : 1;
}
