/* The Hessian-vector product's cost over the gradient's, extended Rosenbrock n = 100,000,
 * float64, graph engine: the scalar form (one node per operation, as a C function written
 * with the API records) and the tensor form.  The two sides alternate within one run; the
 * product is checked against the analytic tridiagonal Hessian times v. */
#include "bench.h"
#include "rosenbrock.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { N = 100000 };

static double max_rel_err(const double *a, const double *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]) / fmax(1, fabs(b[i])));
    return m;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 21;
    if (runs < 1) runs = 1;
    static double x[N], v[N], want[N], hv[N], grad[N];
    for (int i = 0; i < N; i++) x[i] = 0.5 + 1e-6 * i, v[i] = sin(0.1 * i);
    rosenbrock_hv(x, v, N, want);
    double *tg = malloc(sizeof(double) * (size_t)runs * 4);
    double *tgrad_s = tg, *thvp_s = tg + runs, *tgrad_t = tg + 2 * runs, *thvp_t = tg + 3 * runs;
    ad_graph *gs = ad_graph_new(), *gt = ad_graph_new();
    double err_s = 0, err_t = 0, value;
    for (int r = 0; r < runs; r++) {
        /* scalar form: ad_gradient, then ad_hvp (record, gradient graph, forward sweep) */
        double t0 = now_seconds();
        if (ad_gradient(gs, rosenbrock_graph, N, x, NULL, &value, grad) != AD_OK) return fprintf(stderr, "%s\n", ad_error(gs)), 1;
        double t1 = now_seconds();
        if (ad_hvp(gs, rosenbrock_graph, N, x, v, NULL, NULL, NULL, hv) != AD_OK) return fprintf(stderr, "%s\n", ad_error(gs)), 1;
        double t2 = now_seconds();
        tgrad_s[r] = t1 - t0, thvp_s[r] = t2 - t1;
        err_s = fmax(err_s, max_rel_err(hv, want, N));
        /* tensor form: record + backward, then record + ad_hvp_graph */
        t0 = now_seconds();
        ad_graph_reset(gt);
        ad_node *xt = ad_var_array(gt, "x", AD_F64, AD_SHAPE(N), x);
        if (ad_backward(gt, rosenbrock_tensor(gt, xt, N)) != AD_OK) return fprintf(stderr, "%s\n", ad_error(gt)), 1;
        t1 = now_seconds();
        ad_graph_reset(gt);
        xt = ad_var_array(gt, "x", AD_F64, AD_SHAPE(N), x);
        const double *vs[1] = {v};
        double *hs[1] = {hv};
        if (ad_hvp_graph(gt, rosenbrock_tensor(gt, xt, N), 1, &xt, vs, hs) != AD_OK) return fprintf(stderr, "%s\n", ad_error(gt)), 1;
        t2 = now_seconds();
        tgrad_t[r] = t1 - t0, thvp_t[r] = t2 - t1;
        err_t = fmax(err_t, max_rel_err(hv, want, N));
    }
    double gs_ms = 1e3 * median(tgrad_s, runs), hs_ms = 1e3 * median(thvp_s, runs);
    double gt_ms = 1e3 * median(tgrad_t, runs), ht_ms = 1e3 * median(thvp_t, runs);
    printf("bench: graph_scalar_gradient_ms %.3f\n", gs_ms);
    printf("bench: graph_scalar_hvp_ms %.3f\n", hs_ms);
    printf("bench: graph_scalar_hvp_over_grad_rosenbrock_1e5 %.2f\n", hs_ms / gs_ms);
    printf("bench: graph_tensor_gradient_ms %.3f\n", gt_ms);
    printf("bench: graph_tensor_hvp_ms %.3f\n", ht_ms);
    printf("bench: graph_tensor_hvp_over_grad_rosenbrock_1e5 %.2f\n", ht_ms / gt_ms);
    printf("hvp max relative error against the closed form: scalar %.3g, tensor %.3g\n", err_s, err_t);
    ad_graph_free(gs);
    ad_graph_free(gt);
    free(tg);
    return err_s < 1e-12 && err_t < 1e-12 ? 0 : 1;
}
