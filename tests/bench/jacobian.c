/* Dense Jacobians on the graph engine, forward sweeps against reverse sweeps, for a wide
 * function (n = 4 inputs, m = 2000 outputs) and a tall one (n = 2000, m = 4), float64, as one
 * recording swept n or m times.  The sides alternate; AD_JAC_AUTO should pick the faster.
 *
 *   bench_jacobian [reps]     (default 9; 1 for the smoke test) */
#include "ad.h"
#include "bench.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { SMALL = 4, LARGE = 2000 };

/* y = tanh(A x) * sum(x^2): A is m x n, fixed. */
static ad_node *build(ad_graph *g, ad_node *x, ad_node *A)
{
    ad_node *h = ad_tanh(g, ad_matmul(g, A, ad_reshape(g, x, AD_SHAPE(ad_node_size(x), 1))));
    return ad_mul(g, ad_reshape(g, h, AD_SHAPE(ad_node_size(h))), ad_sum(g, ad_square(g, x)));
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 9;
    if (reps < 1) reps = 1;
    ad_set_threads(1);
    ad_rng r;
    ad_rng_seed(&r, 3);
    int failed = 0;
    static const struct { const char *name; int n, m; } cases[] = {{"wide_n4_m2000", SMALL, LARGE},
                                                                   {"tall_n2000_m4", LARGE, SMALL}};
    for (int ci = 0; ci < 2; ci++) {
        int n = cases[ci].n, m = cases[ci].m;
        double *xv = malloc((size_t)n * sizeof *xv), *av = malloc((size_t)n * m * sizeof *av);
        double *J = malloc((size_t)n * m * sizeof *J), *J2 = malloc((size_t)n * m * sizeof *J2);
        for (int i = 0; i < n; i++) xv[i] = ad_rng_uniform(&r) - 0.5;
        for (int i = 0; i < n * m; i++) av[i] = (ad_rng_uniform(&r) - 0.5) / sqrt(n);
        ad_graph *g = ad_graph_new();
        ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(n), xv);
        ad_node *y = build(g, x, ad_const(g, AD_F64, AD_SHAPE(m, n), av));
        double tf[64], tr[64];
        for (int rep = 0; rep < reps && rep < 64; rep++)
            for (int side = 0; side < 2; side++) {
                bool fwd = (rep + side) % 2;
                double t0 = now_seconds();
                if (ad_jacobian_graph(g, y, 1, &x, fwd ? AD_JAC_FORWARD : AD_JAC_REVERSE, fwd ? J : J2) != AD_OK) {
                    fprintf(stderr, "bench_jacobian: %s\n", ad_error(g));
                    failed = 1;
                }
                (fwd ? tf : tr)[rep] = now_seconds() - t0;
            }
        double worst = 0;
        for (int i = 0; i < n * m; i++) worst = fmax(worst, fabs(J[i] - J2[i]));
        int k = reps < 64 ? reps : 64;
        double f = median(tf, k), rv = median(tr, k);
        printf("bench: jacobian_%s_forward_ms %.3f\n", cases[ci].name, 1e3 * f);
        printf("bench: jacobian_%s_reverse_ms %.3f\n", cases[ci].name, 1e3 * rv);
        printf("bench: jacobian_%s_reverse_over_forward %.3g\n", cases[ci].name, rv / f);
        printf("bench: jacobian_%s_max_mode_difference %.2e\n", cases[ci].name, worst);
        if (worst > 1e-12) failed = 1;
        ad_graph_free(g);
        free(xv), free(av), free(J), free(J2);
    }
    return failed;
}
