/*
 * The machine's limits, measured rather than taken from a data sheet: the machines here may be
 * Intel or AMD, their clocks move with load and with the other jobs on the host, so each
 * benchmark measures the peak in its own run (bench_peak, peak_main.c, prints them all).
 *
 * FMA peak.  A loop of fused multiply-adds x_k = x_k m + a on K accumulators, each its own
 * dependency chain.  One chain runs at one FMA per latency (4 cycles); the core starts one per
 * pipe per cycle (2 pipes), so at least latency x pipes = 8 chains are needed to fill it: 16
 * zmm accumulators for AVX-512 (of 32 registers) and 12 ymm for AVX2 (of 16), each an
 * explicit variable so that they stay in registers (an array of __m512 at -O2 was spilled to
 * memory and ran at a quarter of the speed).  m = 1 - 1e-6 and a = 1e-6 keep the values near
 * 1, away from overflow and subnormals.  The FLOPs are 2 x lanes x K per iteration.  Each
 * instruction set has its own function with a target attribute, run only when CPUID says the
 * CPU has it; the rest of the program stays at the baseline ISA.  The portable loop is plain C
 * (a multiply and an add, which the compiler may pack into baseline SIMD); it is the answer on
 * machines without AVX2.
 *
 * Bandwidth.  The STREAM triad a[i] = b[i] + s c[i] on float64 arrays, vectorised the same
 * way, at working sets (the three arrays together) that fit in L2, in L3, and in neither.  It
 * counts 24 bytes an element: b and c read, a written.  A store to a line not in cache also
 * reads it first (write-allocate), so DRAM moves 32 bytes an element; like STREAM, that read is
 * not counted, so the DRAM figure is what a program can stream, not what the bus carries.
 *
 * Best of many.  Anything else on the machine can only slow a run down, never speed it up, so
 * the fastest of several runs is the nearest to what the core can do.  The runs are short
 * (2 ms): on this 2-core machine, busy with other builds, the best of 5 runs of 20 ms ranged
 * from 161 to 228 GFLOP/s (float32, AVX-512) over six trials; a few minutes later, at a load
 * of 4, the best of 50 runs of 2 ms ranged from 232 to 236 over six.  Interleaving the cases
 * (each round runs every case once) spreads a busy spell over all of them.
 */
#include "peak.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEAK_X86 1
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))
#else
#define PEAK_X86 0
#endif

/* The multiplier and addend of every chain: the fixed point a / (1 - m) is 1. */
#define FMA_M 0.999999
#define FMA_A 0.000001

#define CHAINS12(X, ...)                                                                                   \
    X(0, __VA_ARGS__) X(1, __VA_ARGS__) X(2, __VA_ARGS__) X(3, __VA_ARGS__) X(4, __VA_ARGS__) X(5, __VA_ARGS__) \
    X(6, __VA_ARGS__) X(7, __VA_ARGS__) X(8, __VA_ARGS__) X(9, __VA_ARGS__) X(10, __VA_ARGS__) X(11, __VA_ARGS__)
#define CHAINS16(X, ...) \
    CHAINS12(X, __VA_ARGS__) X(12, __VA_ARGS__) X(13, __VA_ARGS__) X(14, __VA_ARGS__) X(15, __VA_ARGS__)

#define FMA_DECL(k, vec, scalar, set1) vec x##k = set1((scalar)(0.5 + 0.01 * k));
#define FMA_STEP(k, fmadd) x##k = fmadd(x##k, m, a);
#define FMA_SUM(k, add) s = add(s, x##k);

/* A function `name` (with attributes attr) running the FMA chains on vectors vec of scalar
 * (CHAINS of them) for iters iterations.  It returns the sum of every lane of every
 * accumulator, so that the compiler must compute them all. */
#define FMA_LOOP(name, attr, CHAINS, vec, scalar, set1, fmadd, add)                                      \
    attr static double name(long iters)                                                                 \
    {                                                                                                   \
        const vec m = set1((scalar)FMA_M), a = set1((scalar)FMA_A);                                     \
        CHAINS(FMA_DECL, vec, scalar, set1)                                                             \
        for (long i = 0; i < iters; i++) {                                                              \
            CHAINS(FMA_STEP, fmadd)                                                                     \
        }                                                                                               \
        vec s = set1((scalar)0);                                                                        \
        CHAINS(FMA_SUM, add)                                                                            \
        scalar lanes[sizeof s / sizeof(scalar)];                                                        \
        memcpy(lanes, &s, sizeof s);                                                                    \
        double sum = 0;                                                                                 \
        for (size_t k = 0; k < sizeof lanes / sizeof *lanes; k++) sum += lanes[k];                      \
        return sum;                                                                                     \
    }

/* A triad `name` on vectors of `lanes` float64, two a step: n a multiple of 16 and the arrays
 * 64-byte aligned (peak_triad_new). */
#define TRIAD_LOOP(name, attr, lanes, vec, set1, load, store, fmadd)                                    \
    attr static void name(double *restrict a, const double *restrict b, const double *restrict c, size_t n) \
    {                                                                                                   \
        const vec s = set1(3.0);                                                                        \
        for (size_t i = 0; i < n; i += 2 * (lanes)) {                                                   \
            store(a + i, fmadd(s, load(c + i), load(b + i)));                                           \
            store(a + i + (lanes), fmadd(s, load(c + i + (lanes)), load(b + i + (lanes))));             \
        }                                                                                               \
    }

#if PEAK_X86
FMA_LOOP(fma_avx512_f32, AVX512, CHAINS16, __m512, float, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps)
FMA_LOOP(fma_avx512_f64, AVX512, CHAINS16, __m512d, double, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd)
FMA_LOOP(fma_avx2_f32, AVX2, CHAINS12, __m256, float, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps)
FMA_LOOP(fma_avx2_f64, AVX2, CHAINS12, __m256d, double, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd)
TRIAD_LOOP(triad_avx512, AVX512, 8, __m512d, _mm512_set1_pd, _mm512_load_pd, _mm512_store_pd, _mm512_fmadd_pd)
TRIAD_LOOP(triad_avx2, AVX2, 4, __m256d, _mm256_set1_pd, _mm256_load_pd, _mm256_store_pd, _mm256_fmadd_pd)
#endif

/* Plain C: a multiply and an add (no FMA at the baseline ISA, and no contraction in ISO C). */
#define SAME(x) (x)
#define MUL_ADD(x, m, a) ((x) * (m) + (a))
#define PLUS(x, y) ((x) + (y))
FMA_LOOP(fma_portable_f32, , CHAINS12, float, float, SAME, MUL_ADD, PLUS)
FMA_LOOP(fma_portable_f64, , CHAINS12, double, double, SAME, MUL_ADD, PLUS)

static void triad_portable(double *restrict a, const double *restrict b, const double *restrict c, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0 * c[i];
}

bool peak_isa_runs(peak_isa isa)
{
    switch (isa) {
    case PEAK_PORTABLE:
        return true;
#if PEAK_X86
    case PEAK_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case PEAK_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return false;
    }
}

const char *peak_isa_name(peak_isa isa)
{
    static const char *const names[PEAK_NISA] = {"portable", "avx2", "avx512"};
    return (unsigned)isa < PEAK_NISA ? names[isa] : "?";
}

peak_isa peak_best_isa(void)
{
    peak_isa best = PEAK_PORTABLE;
    for (int i = 0; i < PEAK_NISA; i++)
        if (peak_isa_runs((peak_isa)i)) best = (peak_isa)i;
    return best;
}

typedef double (*fma_loop)(long);

/* The loop for isa and its FLOPs an iteration (2 x lanes x chains); NULL when not built. */
static fma_loop fma_for(peak_isa isa, bool f64, double *flops_per_iter)
{
    switch (isa) {
#if PEAK_X86
    case PEAK_AVX512:
        *flops_per_iter = 2.0 * (f64 ? 8 : 16) * 16;
        return f64 ? fma_avx512_f64 : fma_avx512_f32;
    case PEAK_AVX2:
        *flops_per_iter = 2.0 * (f64 ? 4 : 8) * 12;
        return f64 ? fma_avx2_f64 : fma_avx2_f32;
#endif
    case PEAK_PORTABLE:
        *flops_per_iter = 2.0 * 12;
        return f64 ? fma_portable_f64 : fma_portable_f32;
    default:
        return NULL;
    }
}

/* Keeps every loop's result alive. */
static volatile double sink;

double peak_fma_once(peak_isa isa, bool f64, double seconds)
{
    double per_iter;
    fma_loop f = peak_isa_runs(isa) ? fma_for(isa, f64, &per_iter) : NULL;
    if (!f) return 0;
    /* a short run sizes the timed one (a few microseconds: its noise only changes the length) */
    long iters = 1 << 12;
    double t0 = now_seconds();
    sink += f(iters);
    double t = now_seconds() - t0;
    if (t > 0) iters = (long)((double)iters * seconds / t) + 1;
    t0 = now_seconds();
    sink += f(iters);
    t = now_seconds() - t0;
    return t > 0 ? per_iter * (double)iters / t * 1e-9 : 0;
}

double *peak_triad_new(size_t *n)
{
    *n = (*n + 15) / 16 * 16;
    if (*n == 0 || *n > SIZE_MAX / (3 * sizeof(double))) return NULL;
    double *p = aligned_alloc(64, 3 * *n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < 3 * *n; i++) p[i] = 1.0;
    return p;
}

typedef void (*triad_fn)(double *restrict, const double *restrict, const double *restrict, size_t);

static triad_fn triad_for(peak_isa isa)
{
#if PEAK_X86
    if (isa == PEAK_AVX512) return triad_avx512;
    if (isa == PEAK_AVX2) return triad_avx2;
#endif
    (void)isa;
    return triad_portable;
}

double peak_triad_once(double *arrays, size_t n, double seconds)
{
    triad_fn f = triad_for(peak_best_isa());
    double *a = arrays, *b = arrays + n, *c = arrays + 2 * n;
    double t0 = now_seconds();
    f(a, b, c, n); /* one pass sizes the timed run, and brings the arrays in where they fit */
    double t = now_seconds() - t0;
    long passes = t > 0 ? (long)(seconds / t) + 1 : 1;
    t0 = now_seconds();
    for (long p = 0; p < passes; p++) f(a, b, c, n);
    t = now_seconds() - t0;
    sink += a[n / 2];
    return t > 0 ? 24.0 * (double)n * (double)passes / t * 1e-9 : 0;
}

peak_fma peak_fma_measure(int repeats, double seconds)
{
    peak_fma p = {.isa = peak_best_isa()};
    for (int r = 0; r < repeats; r++) {
        double f32 = peak_fma_once(p.isa, false, seconds), f64 = peak_fma_once(p.isa, true, seconds);
        if (f32 > p.f32_gflops) p.f32_gflops = f32;
        if (f64 > p.f64_gflops) p.f64_gflops = f64;
    }
    return p;
}

peak_fma peak_fma_quick(void)
{
    return peak_fma_measure(50, 0.002);
}

void peak_fma_print(const peak_fma *p)
{
    printf("peak: one core's FMA peak with %s (tests/bench/peak.c)\n", peak_isa_name(p->isa));
    printf("bench: peak_f32_gflops %.1f\n", p->f32_gflops);
    printf("bench: peak_f64_gflops %.1f\n", p->f64_gflops);
}

double peak_triad_measure(size_t total_bytes, int repeats, double seconds)
{
    size_t n = total_bytes / (3 * sizeof(double));
    double *arrays = peak_triad_new(&n), best = 0;
    for (int r = 0; arrays && r < repeats; r++) {
        double gbs = peak_triad_once(arrays, n, seconds);
        if (gbs > best) best = gbs;
    }
    free(arrays);
    return best;
}

void peak_print_fraction(const char *name, const char *unit, double amount, double seconds, double peak)
{
    double rate = seconds > 0 ? amount / seconds * 1e-9 : 0;
    printf("bench: %s_%s %.1f\n", name, unit, rate);
    printf("bench: %s_peak_fraction %.3f\n", name, peak > 0 ? rate / peak : 0);
}

double mlp_epoch_flops(const int *sizes, int n_layers, long images)
{
    double products = 0, input_grads = 0;
    for (int l = 0; l < n_layers; l++) {
        double mn = (double)sizes[l] * sizes[l + 1];
        products += mn;
        if (l > 0) input_grads += mn;
    }
    /* forward and weight gradients: one product each per layer; input gradients: layers 2.. */
    return 2.0 * (double)images * (2 * products + input_grads);
}
