/*
 * Convolution and pooling, forward and backward, at the shapes of the Fashion-MNIST CNN
 * (batch 64, float32): the two convolutions Conv2d(1,32,3,padding=1) on 28x28 and
 * Conv2d(32,64,3,padding=1) on 14x14, with dx, dW and db, and MaxPool2d(2) on [64,32,28,28].
 *
 *     bench_conv [--threads T] [--iters K] [--repeat R]
 *
 * Each step records the graph, y = op(x, ...), L = sum(y), and sweeps it backward, as PyTorch
 * does in tests/bench/conv_torch.py, which times its side and runs this program in turn (R = 1)
 * so that the two alternate.  Prints `bench: conv2d_L1_ms T` (the median over R of the mean
 * of K steps, in milliseconds) for conv2d_L1, conv2d_L2 and max_pool2d.
 *
 * Against the machine: one core's float32 FMA peak, measured first (tests/bench/peak.c), and
 * for each convolution its FLOPs a step, `bench: conv2d_L1_gflop G`: three products of
 * 2 N Cout Hout Wout Cin Kh Kw each (y, dx and dW; the padding's zeros counted, as every
 * convention does; db's sums left out), then its GFLOP/s and fraction of threads x peak.
 * Pooling does no floating-point arithmetic, only comparisons, and has no fraction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ad.h"
#include "bench.h"
#include "peak.h"

typedef struct {
    const char *name;
    ad_shape x, w; /* w.rank 0: a max pooling */
} conv_case;

static const conv_case cases[] = {
    {"conv2d_L1", {4, {64, 1, 28, 28}}, {4, {32, 1, 3, 3}}},
    {"conv2d_L2", {4, {64, 32, 14, 14}}, {4, {64, 32, 3, 3}}},
    {"max_pool2d", {4, {64, 32, 28, 28}}, {0, {0}}},
};

static ad_tensor *random_tensor(ad_shape s, ad_rng *r)
{
    ad_tensor *t = ad_param_new("p", AD_F32, s);
    float *d = t ? ad_tensor_data(t) : NULL;
    for (int64_t i = 0; d && i < ad_tensor_size(t); i++) d[i] = (float)(2 * ad_rng_uniform(r) - 1);
    return t;
}

/* The FLOPs of one step of convolution case c (see the top). */
static double conv_step_flops(const conv_case *c)
{
    const int64_t *x = c->x.dim, *w = c->w.dim;
    int64_t hout = x[2] + 2 - w[2] + 1, wout = x[3] + 2 - w[3] + 1; /* stride 1, padding 1 */
    double pass = 2.0 * (double)x[0] * (double)w[0] * (double)(hout * wout) * (double)x[1] * (double)(w[2] * w[3]);
    return 3 * pass;
}

/* Milliseconds per step over k steps of case c, or -1 on failure. */
static double time_case(const conv_case *c, int k)
{
    ad_rng r;
    ad_rng_seed(&r, 1);
    bool conv = c->w.rank != 0;
    ad_tensor *x = random_tensor(c->x, &r), *w = conv ? random_tensor(c->w, &r) : NULL;
    ad_tensor *b = conv ? random_tensor(AD_SHAPE(c->w.dim[0]), &r) : NULL;
    ad_graph *g = ad_graph_new();
    double ms = -1;
    if (!x || !g || (conv && (!w || !b))) goto out;
    double t0 = 0;
    for (int step = -2; step < k; step++) { /* two steps to warm up */
        if (step == 0) t0 = now_seconds();
        ad_graph_reset(g);
        ad_node *y = conv ? ad_conv2d(g, ad_param(g, x), ad_param(g, w), ad_param(g, b),
                                      &(ad_conv_opts){.padding = {1, 1}})
                          : ad_max_pool2d(g, ad_param(g, x), 2, 2, NULL);
        ad_tensor_zero_grad(x);
        if (conv) ad_tensor_zero_grad(w), ad_tensor_zero_grad(b);
        if (ad_backward(g, ad_sum(g, y)) != AD_OK) {
            fprintf(stderr, "bench_conv: %s: %s\n", c->name, ad_error(g));
            goto out;
        }
    }
    ms = 1e3 * (now_seconds() - t0) / k;
out:
    ad_graph_free(g);
    ad_tensor_free(x);
    ad_tensor_free(w);
    ad_tensor_free(b);
    return ms;
}

int main(int argc, char **argv)
{
    int threads = 1, iters = 10, repeat = 5;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (ok && !strcmp(a, "--threads")) ok = (threads = atoi(v)) > 0;
        else if (ok && !strcmp(a, "--iters")) ok = (iters = atoi(v)) > 0;
        else if (ok && !strcmp(a, "--repeat")) ok = (repeat = atoi(v)) > 0 && repeat <= 99;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_conv [--threads T] [--iters K] [--repeat R]\n");
            return 2;
        }
    }
    ad_set_threads(threads);
    peak_fma peak = peak_fma_quick();
    peak_fma_print(&peak);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        double t[99];
        for (int r = 0; r < repeat; r++)
            if ((t[r] = time_case(&cases[c], iters)) < 0) return 1;
        double ms = median(t, repeat);
        printf("bench: %s_ms %.3f\n", cases[c].name, ms);
        if (cases[c].w.rank) {
            double flops = conv_step_flops(&cases[c]);
            printf("bench: %s_gflop %.4f\n", cases[c].name, flops * 1e-9);
            peak_print_fraction(cases[c].name, "gflops", flops, ms * 1e-3, threads * peak.f32_gflops);
        }
        fflush(stdout);
    }
    return 0;
}
