/*
 * One Fashion-MNIST training epoch, timed: MLP 784-256-128-10 (ReLU), float32, softmax +
 * cross-entropy, SGD with momentum 0.9 at rate 0.01, shuffled minibatches, no dropout and no
 * validation split: the epoch tests/bench/fashion_torch.py times in PyTorch.
 *
 *     bench_fashion_epoch [--batch B[,B...]] [--threads T[,T...]] [--repeat R] [--limit N]
 *
 * For every batch size and thread count it trains R fresh models for one epoch each in three
 * ways, alternating: the graph recorded once and replayed (nn_step) with the update fused into
 * the backward sweep (optim_fuse), the same with the update as a pass after the sweep, and the
 * graph recorded at every step.  It prints the median epoch times, the speedups and the
 * allocations made after the first step, then the peak resident set size of the whole run (the
 * training images as float32 are 179 MiB of it).  Exit status 2 when the dataset is missing,
 * so the comparator can tell.
 *
 * Against the machine: it first measures one core's float32 FMA peak (tests/bench/peak.c,
 * 0.2 s) and prints it, and the epoch's FLOPs (`bench: fashion_epoch_gflop`, the matrix
 * products only: mlp_epoch_flops); then, for each case, the replayed epoch's GFLOP/s and its
 * fraction of threads x that peak (`bench: fashion_epoch_bB_tT_peak_fraction`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ad.h"
#include "bench.h"
#include "nn.h"
#include "nn_data.h"
#include "optim.h"
#include "peak.h"

#define MAX_LIST 8

/* The MLP's layer sizes, for the model and for its FLOP count. */
enum { LAYER_IN = 784, LAYER_H1 = 256, LAYER_H2 = 128, LAYER_OUT = 10 };

static int parse_list(const char *s, int *out)
{
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 1 << 20) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* The loss nn_step records once and replays. */
static ad_node *mlp_loss(ad_graph *g, ad_node *x, const int32_t *labels, ad_node *y, void *user)
{
    (void)y;
    return nn_cross_entropy(g, nn_mlp_forward(g, user, x, NN_TRAIN), labels);
}

/* Trains a fresh model for one epoch, recording the graph at every step or (replay) once and
 * replaying it; returns the seconds it took (negative on failure) and the allocations made
 * after the first step in *allocs. */
static double epoch(const nn_dataset *train, int batch, bool replay, bool fused, long *allocs, double *last_loss)
{
    nn_mlp_cfg cfg = {.in = LAYER_IN, .hidden = {LAYER_H1, LAYER_H2}, .out = LAYER_OUT, .dtype = AD_F32, .seed = 1};
    char err[256];
    nn_mlp *m = nn_mlp_new(&cfg);
    optim_cfg oc = optim_defaults(OPTIM_MOMENTUM, 0.01);
    oc.form = OPTIM_FORM_PYTORCH;
    optim *o = m ? optim_new(nn_mlp_params(m), nn_mlp_num_params(m), &oc, err, sizeof err) : NULL;
    nn_batches *it = nn_batches_new(train, batch, true, 1, err, sizeof err);
    ad_graph *g = ad_graph_new();
    nn_step *step = m ? nn_step_new(mlp_loss, m) : NULL;
    double t = -1;
    if (!m || !o || !it || !g || !step || (fused && optim_fuse(o, true) != AD_OK)) goto out;
    double t0 = now_seconds();
    nn_batch b;
    long steps = 0;
    while (nn_batches_next(it, &b)) {
        optim_zero_grad(o);
        if (replay) {
            if (nn_step_run(step, &b, last_loss) != AD_OK || optim_step(o) != AD_OK) {
                fprintf(stderr, "bench_fashion_epoch: %s\n", ad_error(nn_step_graph(step)));
                goto out;
            }
        } else {
            ad_graph_reset(g);
            ad_node *scores = nn_mlp_forward(g, m, ad_const_tensor(g, b.x), NN_TRAIN);
            ad_node *loss = nn_cross_entropy(g, scores, b.labels);
            if (ad_backward(g, loss) != AD_OK || optim_step(o) != AD_OK) {
                fprintf(stderr, "bench_fashion_epoch: %s\n", ad_error(g));
                goto out;
            }
            *last_loss = ad_value(loss);
        }
        if (++steps == 1) *allocs = ad_alloc_count();
    }
    t = now_seconds() - t0;
    *allocs = ad_alloc_count() - *allocs;
out:
    nn_step_free(step);
    ad_graph_free(g);
    nn_batches_free(it);
    optim_free(o);
    nn_mlp_free(m);
    return t;
}

/* The process's peak resident set in KiB (VmHWM), or -1.  Not getrusage's ru_maxrss: Linux
 * carries that across execve, so a child of a big process (the Python comparator) would
 * report its parent's peak. */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    int batches[MAX_LIST] = {64, 1024, 8}, nb = 3;
    int threads[MAX_LIST] = {1, 2}, nt = 2;
    int repeat = 3;
    long limit = 0;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (ok && !strcmp(a, "--batch")) ok = (nb = parse_list(v, batches)) > 0;
        else if (ok && !strcmp(a, "--threads")) ok = (nt = parse_list(v, threads)) > 0;
        else if (ok && !strcmp(a, "--repeat")) ok = (repeat = atoi(v)) > 0 && repeat <= 99;
        else if (ok && !strcmp(a, "--limit")) ok = (limit = atol(v)) > 0;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_fashion_epoch [--batch B,...] [--threads T,...] [--repeat R] [--limit N]\n");
            return 2;
        }
    }
    char err[512];
    nn_dataset *train = nn_fashion_mnist(NULL, true, AD_F32, err, sizeof err);
    if (!train) {
        fprintf(stderr, "bench_fashion_epoch: %s\n", err);
        return 2;
    }
    if (limit && limit < train->n) train->n = limit;
    printf("Fashion-MNIST epoch: %lld images, MLP 784-256-128-10 float32, SGD momentum, median of %d\n",
           (long long)train->n, repeat);
    peak_fma peak = peak_fma_quick();
    peak_fma_print(&peak);
    static const int sizes[] = {LAYER_IN, LAYER_H1, LAYER_H2, LAYER_OUT};
    double flops = mlp_epoch_flops(sizes, 3, (long)train->n);
    printf("bench: fashion_epoch_gflop %.3f\n", flops * 1e-9);
    printf("fashion_epoch: GFLOP counts the matrix products only (forward, weight gradients, input gradients "
           "of layers 2 and 3), not bias, activations, loss or optimizer\n");
    int status = 0;
    for (int ti = 0; ti < nt; ti++) {
        ad_set_threads(threads[ti]);
        for (int bi = 0; bi < nb; bi++) {
            /* recorded once and replayed (the library's way, nn_step) with the update fused into
             * the backward sweep (optim_fuse), alternating with the update as a pass after the
             * sweep and with the graph recorded at every step: the same losses, bit for bit */
            double t[99], t_rec[99], t_unf[99], loss = 0, loss_rec = 0, loss_unf = 0;
            long allocs = 0, allocs_rec = 0, allocs_unf = 0;
            for (int r = 0; r < repeat; r++) {
                t[r] = epoch(train, batches[bi], true, true, &allocs, &loss);
                t_unf[r] = epoch(train, batches[bi], true, false, &allocs_unf, &loss_unf);
                t_rec[r] = epoch(train, batches[bi], false, true, &allocs_rec, &loss_rec);
                if (t[r] < 0 || t_rec[r] < 0 || t_unf[r] < 0 || memcmp(&loss, &loss_rec, sizeof loss) ||
                    memcmp(&loss, &loss_unf, sizeof loss))
                    status = 1;
            }
            double tm = median(t, repeat), tr = median(t_rec, repeat), tu = median(t_unf, repeat);
            printf("bench: fashion_epoch_unfused_b%d_t%d %.3f s  (optimizer after the sweep; last loss %s)\n",
                   batches[bi], threads[ti], tu, memcmp(&loss, &loss_unf, sizeof loss) ? "DIFFERS" : "the same bits");
            printf("bench: fashion_fuse_speedup_b%d_t%d %.3f\n", batches[bi], threads[ti], tu / tm);
            printf("bench: fashion_epoch_b%d_t%d %.3f s  (last loss %.4f, %ld allocations after step 1)\n",
                   batches[bi], threads[ti], tm, loss, allocs);
            printf("bench: fashion_epoch_rerecord_b%d_t%d %.3f s  (recorded at every step; last loss %s, %ld "
                   "allocations after step 1)\n", batches[bi], threads[ti], tr,
                   memcmp(&loss, &loss_rec, sizeof loss) ? "DIFFERS" : "the same bits", allocs_rec);
            printf("bench: fashion_replay_speedup_b%d_t%d %.3f\n", batches[bi], threads[ti], tr / tm);
            char name[64];
            snprintf(name, sizeof name, "fashion_epoch_b%d_t%d", batches[bi], threads[ti]);
            peak_print_fraction(name, "gflops", flops, tm, threads[ti] * peak.f32_gflops);
            fflush(stdout);
        }
    }
    long rss = peak_rss_kib();
    if (rss >= 0)
        printf("bench: fashion_peak_rss %.1f MiB  (training images as float32: %.1f MiB)\n", (double)rss / 1024.0,
               (double)ad_tensor_size(train->x) * 4 / (1024.0 * 1024.0));
    nn_dataset_free(train);
    return status;
}
