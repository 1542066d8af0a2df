/* bench_peak: one core's float32 and float64 FMA peak for every instruction set the CPU runs,
 * and the streaming triad's bandwidth in L2, L3 and DRAM (the method: tests/bench/peak.c).
 *
 *     bench_peak [--repeat R] [--ms M] [--dram-mib D]
 *
 * Best of R rounds (default 60), each running every case once for about M milliseconds
 * (default 2; the DRAM triad's one pass takes longer); the DRAM triad's three arrays take D MiB
 * together (default 384, far beyond any L3 here).  Prints `bench: peak_f32_ISA_gflops X` per instruction set, then
 * `bench: peak_f32_gflops X` and `bench: peak_f64_gflops X` (the best instruction set), then
 * `bench: bandwidth_l2_gbs X`, `bench: bandwidth_l3_gbs X` and `bench: bandwidth_dram_gbs X`.
 * One thread.  Exit status 1 when a figure could not be measured. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peak.h"

enum { LEVELS = 3 };

int main(int argc, char **argv)
{
    int repeat = 60;
    double ms = 2;
    long dram_mib = 384;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (ok && !strcmp(a, "--repeat")) ok = (repeat = atoi(v)) > 0 && repeat <= 1000;
        else if (ok && !strcmp(a, "--ms")) ok = (ms = atof(v)) > 0 && ms <= 1000;
        else if (ok && !strcmp(a, "--dram-mib")) ok = (dram_mib = atol(v)) > 0 && dram_mib <= 1 << 16;
        else ok = 0;
        if (!ok) {
            fprintf(stderr, "usage: bench_peak [--repeat R] [--ms M] [--dram-mib D]\n");
            return 2;
        }
    }
    double t_start = now_seconds(), s = ms * 1e-3;
    static const char *const level[LEVELS] = {"l2", "l3", "dram"};
    size_t bytes[LEVELS] = {PEAK_L2_BYTES, PEAK_L3_BYTES, (size_t)dram_mib << 20}, n[LEVELS];
    double *arrays[LEVELS];
    for (int l = 0; l < LEVELS; l++) {
        n[l] = bytes[l] / (3 * sizeof(double));
        if (!(arrays[l] = peak_triad_new(&n[l]))) {
            fprintf(stderr, "bench_peak: out of memory for the %s triad (%zu bytes)\n", level[l], bytes[l]);
            return 1;
        }
    }
    double fma[PEAK_NISA][2] = {{0}}, bw[LEVELS] = {0};
    for (int r = 0; r < repeat; r++) {
        for (int isa = 0; isa < PEAK_NISA; isa++)
            for (int f64 = 0; f64 < 2; f64++) {
                double g = peak_fma_once((peak_isa)isa, f64, s);
                if (g > fma[isa][f64]) fma[isa][f64] = g;
            }
        for (int l = 0; l < LEVELS; l++) {
            double g = peak_triad_once(arrays[l], n[l], s);
            if (g > bw[l]) bw[l] = g;
        }
    }
    for (int l = 0; l < LEVELS; l++) free(arrays[l]);

    printf("peak: one core, best of %d rounds of %.0f ms a case; FMA = 2 FLOPs; triad a = b + s c on float64, "
           "24 bytes an element (write-allocate not counted)\n", repeat, ms);
    int bad = 0;
    peak_fma best = {.isa = peak_best_isa()};
    for (int isa = PEAK_NISA - 1; isa >= 0; isa--) {
        if (!peak_isa_runs((peak_isa)isa)) {
            printf("peak: %s: not run (the CPU lacks it)\n", peak_isa_name((peak_isa)isa));
            continue;
        }
        for (int f64 = 0; f64 < 2; f64++) {
            printf("bench: peak_%s_%s_gflops %.1f\n", f64 ? "f64" : "f32", peak_isa_name((peak_isa)isa),
                   fma[isa][f64]);
            bad |= !(fma[isa][f64] > 0);
        }
    }
    best.f32_gflops = fma[best.isa][0];
    best.f64_gflops = fma[best.isa][1];
    peak_fma_print(&best);
    for (int l = 0; l < LEVELS; l++) {
        printf("peak: %s triad: 3 arrays of %.0f KiB\n", level[l], (double)n[l] * sizeof(double) / 1024);
        printf("bench: bandwidth_%s_gbs %.1f\n", level[l], bw[l]);
        bad |= !(bw[l] > 0);
    }
    printf("peak: %.1f s\n", now_seconds() - t_start);
    return bad;
}
