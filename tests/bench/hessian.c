/* Second order, Rosenbrock again.  (i) The dense Hessian for n = 1000 with ad_real_hessian
 * and the graph's ad_hessian, against ADOL-C's hessian() driver when the build found ADOL-C
 * (the tape's and ADOL-C's compared element by element, all against the closed form).  (ii) One
 * Hessian-vector product against one gradient for n = 100,000: ad_real_hvp over
 * ad_real_gradient, alternated in one run, with ADOL-C's hess_vec and gradient beside it.
 * Prints "bench: NAME VALUE" lines; the first argument is the number of timed runs. */
#include "ad_real.h"
#include "bench.h"
#include "rosenbrock.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef HAVE_ADOLC
int adolc_trace_rosenbrock(short tag, int n, const double *x, double *value);
int adolc_gradient(short tag, int n, const double *x, double *g);
int adolc_hessian(short tag, int n, const double *x, double *H);
int adolc_hess_vec(short tag, int n, const double *x, const double *v, double *hv);
#endif

enum { NH = 1000, NV = 100000 };

/* Largest |got - want| / max(1, |want|) of a dense Hessian against the closed form. */
static double dense_error(const double *H, const double *x, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) {
        double h[3];
        rosenbrock_hessian_row(x, n, i, h);
        for (int j = 0; j < n; j++) {
            double want = j == i - 1 ? h[0] : j == i ? h[1] : j == i + 1 ? h[2] : 0;
            m = fmax(m, fabs(H[(size_t)i * n + j] - want) / fmax(1, fabs(want)));
        }
    }
    return m;
}

/* The same for H v. */
static double hv_error(const double *hv, const double *x, const double *v, int n)
{
    double *want = malloc((size_t)n * sizeof *want), m = 0;
    if (!want) return INFINITY;
    rosenbrock_hv(x, v, n, want);
    for (int i = 0; i < n; i++) m = fmax(m, fabs(hv[i] - want[i]) / fmax(1, fabs(want[i])));
    free(want);
    return m;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 31;
    if (runs < 1) runs = 1;
    int hruns = runs < 7 ? runs : 7; /* a Hessian takes a thousand gradients' time */
    double *t1 = malloc((size_t)runs * sizeof *t1), *t2 = malloc((size_t)runs * sizeof *t2);
    double *H = malloc((size_t)NH * NH * sizeof *H), *x = malloc(NV * sizeof *x), *v = malloc(NV * sizeof *v);
    double *g = malloc(NV * sizeof *g), *hv = malloc(NV * sizeof *hv);
    ad_tape *tape = ad_tape_new(), *tape_g = ad_tape_new();
    if (!t1 || !t2 || !H || !x || !v || !g || !hv || !tape || !tape_g) return 1;
    for (int i = 0; i < NV; i++) x[i] = 0.5 + 1e-6 * i, v[i] = cos(0.1 * i);
    int status = 0;
    double f;

    /* (i) the Hessian, n = 1000 */
    for (int r = 0; r < hruns; r++) {
        double t0 = now_seconds();
        ad_status st = ad_real_hessian(tape, rosenbrock_tape, NH, x, NULL, &f, g, H);
        t1[r] = now_seconds() - t0;
        if (st != AD_OK) {
            fprintf(stderr, "hessian: ad_real_hessian failed (status %d)\n", (int)st);
            return 1;
        }
    }
    double t_ours = median(t1, hruns), err_ours = dense_error(H, x, NH);
    printf("rosenbrock n=%d: dense Hessian, median of %d runs; max rel. error against the closed form %.2e\n", NH,
           hruns, err_ours);
    printf("bench: hessian_rosenbrock_1000_tape %.2f ms\n", t_ours * 1e3);
    if (err_ours > 1e-12) status = 1;
    /* the graph engine: one recording, then n forward-over-reverse sweeps over it */
    ad_graph *graph = ad_graph_new();
    for (int r = 0; r < hruns; r++) {
        double t0 = now_seconds();
        ad_status st = ad_hessian(graph, rosenbrock_graph, NH, x, NULL, &f, g, H);
        t2[r] = now_seconds() - t0;
        if (st != AD_OK) {
            fprintf(stderr, "hessian: ad_hessian failed: %s\n", ad_error(graph));
            return 1;
        }
    }
    ad_graph_free(graph);
    double t_graph = median(t2, hruns), err_graph = dense_error(H, x, NH);
    printf("graph engine: max rel. error against the closed form %.2e\n", err_graph);
    printf("bench: hessian_rosenbrock_1000_graph %.2f ms\n", t_graph * 1e3);
    if (err_graph > 1e-12) status = 1;
#ifdef HAVE_ADOLC
    double *HA = calloc((size_t)NH * NH, sizeof *HA), fa;
    if (!HA) return 1;
    double t0 = now_seconds();
    adolc_trace_rosenbrock(1, NH, x, &fa);
    double t_trace = now_seconds() - t0;
    for (int r = 0; r < hruns; r++) {
        t0 = now_seconds();
        int rc = adolc_hessian(1, NH, x, HA);
        t1[r] = now_seconds() - t0;
        if (rc < 0) {
            fprintf(stderr, "hessian: ADOL-C's hessian() returned %d\n", rc);
            return 1;
        }
    }
    double t_adolc = median(t1, hruns), diff = 0, scale = 0;
    /* ADOL-C fills the lower triangle; ours is symmetric, so compare there */
    for (int i = 0; i < NH; i++)
        for (int j = 0; j <= i; j++) {
            diff = fmax(diff, fabs(H[(size_t)i * NH + j] - HA[(size_t)i * NH + j]));
            scale = fmax(scale, fabs(HA[(size_t)i * NH + j]));
        }
    printf("ADOL-C: trace %.2f ms, hessian() %.2f ms (lower triangle, trace made once beforehand); value "
           "%.17g vs ours %.17g; max |H_tape - H_adolc| = %.3e (largest |H| %.3e)\n",
           t_trace * 1e3, t_adolc * 1e3, fa, f, diff, scale);
    printf("bench: hessian_rosenbrock_1000_adolc %.2f ms\n", t_adolc * 1e3);
    printf("bench: hessian_rosenbrock_1000_tape_over_adolc %.2f x\n", t_ours / t_adolc);
    printf("bench: hessian_rosenbrock_1000_graph_over_adolc %.2f x\n", t_graph / t_adolc);
    printf("bench: hessian_rosenbrock_1000_max_abs_diff %.3e\n", diff);
    if (diff > 1e-9 * fmax(1, scale)) status = 1;
    free(HA);
#else
    printf("ADOL-C: not found by the build (Debian: libadolc-dev), only the tape's side is timed\n");
#endif

    /* (ii) one H v against one gradient, n = 100,000, alternated */
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        ad_status sg = ad_real_gradient(tape_g, rosenbrock_tape, NV, x, NULL, &f, g);
        double tm = now_seconds();
        ad_status sh = ad_real_hvp(tape, rosenbrock_tape, NV, x, v, NULL, &f, NULL, hv);
        t1[r] = tm - t0;
        t2[r] = now_seconds() - tm;
        if (sg != AD_OK || sh != AD_OK) {
            fprintf(stderr, "hessian: gradient or hvp failed (%d, %d)\n", (int)sg, (int)sh);
            return 1;
        }
    }
    double ratio[64];
    int nratio = runs < 64 ? runs : 64;
    for (int r = 0; r < nratio; r++) ratio[r] = t2[r] / t1[r];
    double t_grad = median(t1, runs), t_hvp = median(t2, runs), err_hv = hv_error(hv, x, v, NV);
    printf("rosenbrock n=%d: median of %d alternated runs; H v max rel. error against the closed form %.2e; "
           "tape: %lld entries, %lld edges for H v\n",
           NV, runs, err_hv, (long long)tape->n, (long long)tape->nedge);
    printf("bench: tape_grad_rosenbrock_1e5 %.3f ms\n", t_grad * 1e3);
    printf("bench: tape_hvp_rosenbrock_1e5 %.3f ms\n", t_hvp * 1e3);
    printf("bench: tape_hvp_over_grad_rosenbrock_1e5 %.2f\n", median(ratio, nratio));
    if (err_hv > 1e-12) status = 1;
#ifdef HAVE_ADOLC
    double fb;
    adolc_trace_rosenbrock(2, NV, x, &fb);
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        int rg = adolc_gradient(2, NV, x, g);
        double tm = now_seconds();
        int rh = adolc_hess_vec(2, NV, x, v, hv);
        t1[r] = tm - t0;
        t2[r] = now_seconds() - tm;
        if (rg < 0 || rh < 0) {
            fprintf(stderr, "hessian: ADOL-C's gradient or hess_vec returned %d, %d\n", rg, rh);
            return 1;
        }
    }
    for (int r = 0; r < nratio; r++) ratio[r] = t2[r] / t1[r];
    double a_grad = median(t1, runs), a_hvp = median(t2, runs);
    printf("ADOL-C (trace made once beforehand): gradient %.3f ms, hess_vec %.3f ms, H v max rel. error %.2e\n",
           a_grad * 1e3, a_hvp * 1e3, hv_error(hv, x, v, NV));
    printf("bench: adolc_hess_vec_rosenbrock_1e5 %.3f ms\n", a_hvp * 1e3);
    printf("bench: adolc_hess_vec_over_grad_rosenbrock_1e5 %.2f\n", median(ratio, nratio));
    printf("bench: tape_hvp_over_adolc_hess_vec_1e5 %.2f x\n", t_hvp / a_hvp);
#endif
    if (status) fprintf(stderr, "hessian: a result does not match the closed form or ADOL-C\n");
    ad_tape_free(tape);
    ad_tape_free(tape_g);
    free(t1), free(t2), free(H), free(x), free(v), free(g), free(hv);
    return status;
}
