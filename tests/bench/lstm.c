/* One LSTM training step, forward and backward over a sequence: T = 32 steps of a batch of 32,
 * 64 inputs, 256 hidden units, float32, one thread, as lstm_torch.py times torch.nn.LSTM.
 *
 *     bench_lstm [REPEATS]      # default 20; prints the medians in ms
 *
 * The loss is sum(y * r) for a fixed random r over the outputs y [T, N, H], so backward runs
 * through every step.  Timed twice: recording the graph each step (what a loop that builds its
 * graph every step pays) and replaying one recording (ad_replay).
 *
 * Against the machine: one core's float32 FMA peak, measured first (tests/bench/peak.c), the
 * step's FLOPs (`bench: lstm_step_gflop`, lstm_step_flops) and each timing's GFLOP/s and
 * fraction of the peak. */
#include "ad.h"
#include "bench.h"
#include "nn.h"
#include "peak.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { T = 32, N = 32, IN = 64, H = 256 };

/* The step's matrix products, 2 m n k FLOPs each, as nn_rnn_forward and the backward sweep
 * run them: the inputs' projection x W_ih^T for all T steps at once and its weight gradient
 * (x is a constant: no input gradient); the state's h W_hh^T, its weight gradient and its
 * input gradient at steps 1..T-1 only (the initial state is zero and its terms left out).
 * The gate nonlinearities, the cell's products and the bias adds (O(T N H)) are not counted. */
static double lstm_step_flops(void)
{
    double ih = 2.0 * T * N * IN * 4 * H, hh = 2.0 * (T - 1) * N * H * 4 * H;
    return 2 * ih + 3 * hh;
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 20;
    if (repeats < 1) return fprintf(stderr, "usage: bench_lstm [REPEATS]\n"), 2;
    ad_set_threads(1);
    peak_fma peak = peak_fma_quick();
    nn_model *m = nn_model_new(AD_F32);
    ad_rng rng;
    ad_rng_seed(&rng, 1);
    nn_rnn l;
    ad_tensor *x = ad_tensor_new(AD_F32, AD_SHAPE(T, N, IN)), *r = ad_tensor_new(AD_F32, AD_SHAPE(T, N, H));
    ad_graph *g = ad_graph_new();
    double *rec = malloc((size_t)repeats * sizeof *rec), *rep = malloc((size_t)repeats * sizeof *rep);
    if (!m || !x || !r || !g || !rec || !rep || nn_rnn_add(m, &l, NN_LSTM, "lstm", IN, H, &rng) != AD_OK)
        return fprintf(stderr, "bench_lstm: out of memory\n"), 1;
    ad_tensor_rand_uniform(x, &rng, -1, 1);
    ad_tensor_rand_uniform(r, &rng, -1, 1);
    ad_node *loss = NULL;
    for (int k = -2; k < repeats; k++) { /* two warm-up steps */
        double t0 = now_seconds();
        ad_graph_reset(g);
        ad_node *y = nn_rnn_forward(g, &l, ad_const_tensor(g, x), NULL, NULL, NULL, NULL);
        loss = ad_sum(g, ad_mul(g, y, ad_const_tensor(g, r)));
        nn_model_zero_grad(m);
        if (!loss || ad_backward(g, loss) != AD_OK) return fprintf(stderr, "bench_lstm: %s\n", ad_error(g)), 1;
        if (k >= 0) rec[k] = now_seconds() - t0;
    }
    for (int k = -2; k < repeats; k++) {
        double t0 = now_seconds();
        nn_model_zero_grad(m);
        if (ad_replay(g) != AD_OK || ad_backward(g, loss) != AD_OK) return fprintf(stderr, "bench_lstm: %s\n", ad_error(g)), 1;
        if (k >= 0) rep[k] = now_seconds() - t0;
    }
    if (!isfinite(ad_value(loss)) || !isfinite(ad_tensor_grad_get(l.weight_hh, 0)))
        return fprintf(stderr, "bench_lstm: the loss or its gradient is not finite\n"), 1;
    double t_rec = median(rec, repeats), t_rep = median(rep, repeats), flops = lstm_step_flops();
    printf("bench: lstm_step_ms %.3f\n", 1e3 * t_rec);
    printf("bench: lstm_step_replay_ms %.3f\n", 1e3 * t_rep);
    peak_fma_print(&peak);
    printf("bench: lstm_step_gflop %.4f\n", flops * 1e-9);
    peak_print_fraction("lstm_step", "gflops", flops, t_rec, peak.f32_gflops);
    peak_print_fraction("lstm_step_replay", "gflops", flops, t_rep, peak.f32_gflops);
    free(rec), free(rep);
    ad_graph_free(g);
    ad_tensor_free(x), ad_tensor_free(r);
    nn_model_free(m);
    return 0;
}
