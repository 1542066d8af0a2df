/* Extended Rosenbrock, n = 100,000, float64: the gradient's cost over a plain C evaluation,
 * for the one-operation-per-call forms (an ordinary C loop, on the tape and on the graph) and
 * the tensor form.  The tape's time is also split into recording and sweep.
 *
 * Against the machine: the tensor form's gradient must at least read x and write the gradient,
 * 16 n bytes (1.6 MB, which fits in L3 and not in L2), and the plain C loop read x, 8 n bytes;
 * each figure's bytes a second are printed as a fraction of the L3 triad's bandwidth measured
 * first (tests/bench/peak.c), `bench: rosenbrock_tensor_peak_fraction`.  The bytes the tensor
 * form really moves (its intermediates) are not counted: the fraction says how far it is from
 * streaming its inputs and outputs once. */
#include "bench.h"
#include "peak.h"
#include "rosenbrock.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { N = 100000 };

static double plain(const double *x, int n)
{
    double f = 0;
    for (int i = 0; i + 1 < n; i++) {
        double t = x[i + 1] - x[i] * x[i], u = 1 - x[i];
        f += 100 * t * t + u * u;
    }
    return f;
}

static void analytic(const double *x, int n, double *g)
{
    for (int i = 0; i < n; i++) {
        g[i] = 0;
        if (i + 1 < n) g[i] += -400 * x[i] * (x[i + 1] - x[i] * x[i]) - 2 * (1 - x[i]);
        if (i > 0) g[i] += 200 * (x[i] - x[i - 1] * x[i - 1]);
    }
}

static double max_rel_err(const double *a, const double *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]) / fmax(1, fabs(b[i])));
    return m;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 31;
    if (runs < 1) runs = 1;
    static double x[N], want[N], got[N];
    for (int i = 0; i < N; i++) x[i] = 0.5 + 1e-6 * i;
    analytic(x, N, want);
    double *t = malloc((size_t)runs * sizeof *t);
    if (!t) return 1;
    double l3_gbs = peak_triad_measure(PEAK_L3_BYTES, 50, 0.002);

    volatile double sink = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        for (int k = 0; k < 10; k++) sink += plain(x, N);
        t[r] = (now_seconds() - t0) / 10;
    }
    double t_plain = median(t, runs), f_plain = plain(x, N);

    /* The graph recorded at every evaluation, and recorded once and replayed, alternating: the
     * replay is timed from setting the inputs to reading the gradient. */
    ad_graph *g = ad_graph_new(), *rec = ad_graph_new();
    static ad_node *leaf[N];
    static double x2[N], got2[N];
    for (int i = 0; i < N; i++) leaf[i] = ad_var(rec, NULL, 0), x2[i] = x[i] * (1 + 1e-3);
    ad_node *froot = rosenbrock_graph(rec, leaf, N, NULL);
    double *t_rep = malloc((size_t)runs * sizeof *t_rep), *t_prog = malloc((size_t)runs * sizeof *t_prog);
    /* and compiled to a program (ad_program), evaluated in its workspace */
    ad_program *prog = froot ? ad_program_new(rec, 1, &froot, N, leaf) : NULL;
    ad_program_ws *ws = prog ? ad_program_ws_new(prog) : NULL;
    static double got3[N];
    double f_prog = 0;
    if (!froot || !t_rep || !t_prog || !ws) return 1;
    double f = 0, f_rep = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        ad_status st = ad_gradient(g, rosenbrock_graph, N, x, NULL, &f, got);
        t[r] = now_seconds() - t0;
        /* replayed at x2 and then at x, so that every replay's values are new */
        for (int pass = 0; pass < 2 && st == AD_OK; pass++) {
            const double *at = pass ? x : x2;
            t0 = now_seconds();
            for (int i = 0; i < N && st == AD_OK; i++) st = ad_set_value(rec, leaf[i], at[i]);
            if (st == AD_OK) st = ad_replay(rec);
            ad_zero_grad(rec);
            if (st == AD_OK) st = ad_backward(rec, froot);
            for (int i = 0; i < N; i++) got2[i] = ad_grad(leaf[i]);
            f_rep = ad_value(froot);
            if (pass) t_rep[r] = now_seconds() - t0;
        }
        for (int pass = 0; pass < 2 && st == AD_OK; pass++) {
            t0 = now_seconds();
            st = ad_program_gradient(prog, ws, pass ? x : x2, &f_prog, got3);
            if (pass) t_prog[r] = now_seconds() - t0;
        }
        if (st != AD_OK) {
            fprintf(stderr, "rosenbrock: %s / %s\n", ad_error(g) ? ad_error(g) : "", ad_error(rec) ? ad_error(rec) : "");
            return 1;
        }
    }
    double t_graph = median(t, runs), err_graph = max_rel_err(got, want, N);
    double t_replay = median(t_rep, runs), err_replay = max_rel_err(got2, want, N);
    bool replay_same = !memcmp(got, got2, sizeof got) && !memcmp(&f, &f_rep, sizeof f);
    bool prog_same = !memcmp(got, got3, sizeof got) && !memcmp(&f, &f_prog, sizeof f);
    double t_program = median(t_prog, runs);
    uint32_t prog_nodes = ad_program_size(prog);
    ad_program_ws_free(ws);
    ad_program_free(prog);
    free(t_prog);
    uint64_t nodes = ad_graph_get_stats(g).nodes;
    ad_graph_free(rec);
    free(t_rep);

    ad_tape *tp = ad_tape_new();
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        ad_status st = ad_real_gradient(tp, rosenbrock_tape, N, x, NULL, &f, got);
        t[r] = now_seconds() - t0;
        if (st != AD_OK) {
            fprintf(stderr, "rosenbrock: tape failed (status %d)\n", (int)st);
            return 1;
        }
    }
    double t_scalar = median(t, runs), err_scalar = max_rel_err(got, want, N);
    double ferr_scalar = fabs(f - f_plain) / fabs(f_plain);
    int32_t entries = (int32_t)tp->n, edges = (int32_t)tp->nedge;

    /* The same by hand, timed in two parts: variables and forward pass, then the sweep. */
    static ad_real xv[N];
    double *t_sweep = malloc((size_t)runs * sizeof *t_sweep);
    if (!t_sweep) return 1;
    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        ad_tape_reset(tp);
        for (int i = 0; i < N; i++) xv[i] = ad_real_var(tp, x[i]);
        ad_real y = rosenbrock_tape(tp, xv, N, NULL);
        double t1 = now_seconds();
        if (ad_tape_backward(tp, y) != AD_OK) {
            fprintf(stderr, "rosenbrock: tape failed\n");
            return 1;
        }
        t[r] = t1 - t0;
        t_sweep[r] = now_seconds() - t1;
    }
    double t_record = median(t, runs), t_back = median(t_sweep, runs);
    free(t_sweep);
    ad_tape_free(tp);

    for (int r = 0; r < runs; r++) {
        double t0 = now_seconds();
        ad_graph_reset(g);
        ad_node *xv = ad_var_array(g, "x", AD_F64, AD_SHAPE(N), x);
        ad_node *y = rosenbrock_tensor(g, xv, N);
        if (ad_backward(g, y) != AD_OK) {
            fprintf(stderr, "rosenbrock: %s\n", ad_error(g));
            return 1;
        }
        memcpy(got, ad_node_grad_data(xv), sizeof got);
        f = ad_value(y);
        t[r] = now_seconds() - t0;
    }
    double t_tensor = median(t, runs), err_tensor = max_rel_err(got, want, N);
    double ferr_tensor = fabs(f - f_plain) / fabs(f_plain);
    ad_graph_free(g);

    /* ==== elementwise fusion (ad_set_fusion; issue 19, part 3) ====
     * The tensor form recorded once and replayed at every evaluation, without fusion and with
     * it (a graph each), alternating within each run, at the default thread count and at one
     * thread: timed from writing x into the leaf to reading f and the gradient, replayed at x2
     * and then at x, so that every replay's values are new.  Both must give the recorded
     * tensor form's bits.  Their ratios are to plain C timed in the same runs. */
    ad_graph *fg[2];
    ad_node *fx[2], *fy[2];
    static double fgrad[2][N];
    double ff[2] = {0, 0}, *ft[2][2], *fplain = malloc((size_t)runs * sizeof *fplain);
    if (!fplain) return 1;
    bool fused_same = true;
    for (int k = 0; k < 2; k++) {
        fg[k] = ad_graph_new();
        fx[k] = ad_var_array(fg[k], "x", AD_F64, AD_SHAPE(N), x);
        fy[k] = rosenbrock_tensor(fg[k], fx[k], N);
        ft[k][0] = malloc((size_t)runs * sizeof **ft), ft[k][1] = malloc((size_t)runs * sizeof **ft);
        if (!fy[k] || !ft[k][0] || !ft[k][1]) return 1;
    }
    ad_set_fusion(fg[1], true);
    int default_threads = ad_get_threads();
    for (int one = 0; one < 2; one++) {
        ad_set_threads(one ? 1 : 0);
        for (int r = 0; r < runs; r++) {
            /* plain C in the same runs, for the ratios: a shared machine's load comes and goes */
            double t0 = now_seconds();
            for (int k = 0; k < 10; k++) sink += plain(x, N);
            if (!one) fplain[r] = (now_seconds() - t0) / 10;
            for (int side = 0; side < 2; side++) {
                int k = (r + side) % 2; /* unfused first in even runs, fused first in odd ones */
                for (int pass = 0; pass < 2; pass++) {
                    double t0 = now_seconds();
                    ad_status st = ad_set_data(fg[k], fx[k], pass ? x : x2);
                    if (st == AD_OK) st = ad_replay(fg[k]);
                    ad_zero_grad(fg[k]);
                    if (st == AD_OK) st = ad_backward(fg[k], fy[k]);
                    if (st != AD_OK) {
                        fprintf(stderr, "rosenbrock: fused %d: %s\n", k, ad_error(fg[k]));
                        return 1;
                    }
                    memcpy(fgrad[k], ad_node_grad_data(fx[k]), sizeof fgrad[k]);
                    ff[k] = ad_value(fy[k]);
                    if (pass) ft[k][one][r] = now_seconds() - t0;
                }
                fused_same = fused_same && !memcmp(fgrad[k], got, sizeof got) && !memcmp(&ff[k], &f, sizeof f);
            }
        }
    }
    ad_set_threads(0);
    double t_trep = median(ft[0][0], runs), t_fused = median(ft[1][0], runs);
    double t_trep1 = median(ft[0][1], runs), t_fused1 = median(ft[1][1], runs), t_fplain = median(fplain, runs);
    for (int k = 0; k < 2; k++) ad_graph_free(fg[k]), free(ft[k][0]), free(ft[k][1]);
    free(fplain);
    /* ==== end of elementwise fusion ==== */
    free(t);

    printf("rosenbrock n=%d, f = %.10g, median of %d runs; gradient max rel. error: tape %.2e, "
           "graph %.2e, tensor %.2e; value rel. error %.2e / %.2e; %d tape entries with %d edges, %llu graph "
           "nodes\n",
           N, sink / (10.0 * runs), runs, err_scalar, err_graph, err_tensor, ferr_scalar, ferr_tensor, (int)entries,
           (int)edges, (unsigned long long)nodes);
    printf("bench: rosenbrock_plain_c %.1f us\n", t_plain * 1e6);
    printf("bench: rosenbrock_scalar %.3f ms\n", t_scalar * 1e3);
    printf("bench: rosenbrock_scalar_record %.3f ms (ad_real_var and the loop)\n", t_record * 1e3);
    printf("bench: rosenbrock_scalar_sweep %.3f ms (ad_tape_backward)\n", t_back * 1e3);
    printf("bench: rosenbrock_graph_scalar %.3f ms\n", t_graph * 1e3);
    printf("bench: rosenbrock_graph_replay %.3f ms (recorded once; replay and sweep, %s as recording again)\n",
           t_replay * 1e3, replay_same ? "the same bits" : "NOT the same bits");
    printf("bench: rosenbrock_tensor %.3f ms\n", t_tensor * 1e3);
    printf("bench: rosenbrock_scalar_ratio %.1f x\n", t_scalar / t_plain);
    printf("bench: rosenbrock_graph_scalar_ratio %.1f x\n", t_graph / t_plain);
    printf("bench: rosenbrock_graph_replay_ratio %.1f x\n", t_replay / t_plain);
    printf("bench: rosenbrock_program %.3f ms (the graph compiled, %u nodes; %s as recording again)\n",
           t_program * 1e3, prog_nodes, prog_same ? "the same bits" : "NOT the same bits");
    printf("bench: rosenbrock_program_ratio %.1f x\n", t_program / t_plain);
    printf("bench: rosenbrock_tensor_ratio %.1f x\n", t_tensor / t_plain);
    printf("rosenbrock: fractions of the L3 triad's bandwidth for the bytes each form must move at least (tensor "
           "gradient: read x, write the gradient, 16 n; plain C: read x, 8 n)\n");
    printf("bench: bandwidth_l3_gbs %.1f\n", l3_gbs);
    peak_print_fraction("rosenbrock_tensor", "gbs", 16.0 * N, t_tensor, l3_gbs);
    peak_print_fraction("rosenbrock_plain_c", "gbs", 8.0 * N, t_plain, l3_gbs);
    /* ==== elementwise fusion ==== */
    printf("rosenbrock: the tensor form recorded once, replayed unfused and fused (ad_set_fusion), alternating; %s "
           "as the tensor form recorded each time; %d threads, then 1\n",
           fused_same ? "the same bits" : "NOT the same bits", default_threads);
    printf("bench: rosenbrock_fused_runs_plain_c %.1f us (plain C within these runs)\n", t_fplain * 1e6);
    printf("bench: rosenbrock_tensor_replay %.3f ms\n", t_trep * 1e3);
    printf("bench: rosenbrock_tensor_fused %.3f ms\n", t_fused * 1e3);
    printf("bench: rosenbrock_tensor_replay_1t %.3f ms\n", t_trep1 * 1e3);
    printf("bench: rosenbrock_tensor_fused_1t %.3f ms\n", t_fused1 * 1e3);
    printf("bench: rosenbrock_tensor_replay_ratio %.1f x\n", t_trep / t_fplain);
    printf("bench: rosenbrock_tensor_fused_ratio %.1f x\n", t_fused / t_fplain);
    printf("bench: rosenbrock_tensor_fused_1t_ratio %.1f x\n", t_fused1 / t_fplain);
    peak_print_fraction("rosenbrock_tensor_fused", "gbs", 16.0 * N, t_fused, l3_gbs);
    peak_print_fraction("rosenbrock_tensor_fused_1t", "gbs", 16.0 * N, t_fused1, l3_gbs);
    /* ==== end of elementwise fusion ==== */
    if (err_scalar > 1e-9 || err_graph > 1e-9 || err_tensor > 1e-9 || err_replay > 1e-9 || !replay_same || !prog_same ||
        !fused_same) {
        fprintf(stderr, "rosenbrock: gradient does not match the analytic one\n");
        return 1;
    }
    return 0;
}
