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
 * of 4, the best of 50 runs of 2 ms ranged from 232 to 236 over six.  Interleaving the cases (each round runs every case once) spreads a busy spell over
 * all of them.
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

#define CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define CHAINS16(X) CHAINS12(X) X(12) X(13) X(14) X(15)

/* Each loop returns the sum of its accumulators, so that the compiler must compute them. */
#if PEAK_X86
#define DECL512PS(k) __m512 x##k = _mm512_set1_ps(0.5f + 0.01f * k);
#define STEP512PS(k) x##k = _mm512_fmadd_ps(x##k, m, a);
#define SUM512PS(k) s = _mm512_add_ps(s, x##k);
AVX512 static double fma_avx512_f32(long iters)
{
    const __m512 m = _mm512_set1_ps((float)FMA_M), a = _mm512_set1_ps((float)FMA_A);
    CHAINS16(DECL512PS)
    for (long i = 0; i < iters; i++) {
        CHAINS16(STEP512PS)
    }
    __m512 s = _mm512_setzero_ps();
    CHAINS16(SUM512PS)
    return _mm512_reduce_add_ps(s);
}

#define DECL512PD(k) __m512d x##k = _mm512_set1_pd(0.5 + 0.01 * k);
#define STEP512PD(k) x##k = _mm512_fmadd_pd(x##k, m, a);
#define SUM512PD(k) s = _mm512_add_pd(s, x##k);
AVX512 static double fma_avx512_f64(long iters)
{
    const __m512d m = _mm512_set1_pd(FMA_M), a = _mm512_set1_pd(FMA_A);
    CHAINS16(DECL512PD)
    for (long i = 0; i < iters; i++) {
        CHAINS16(STEP512PD)
    }
    __m512d s = _mm512_setzero_pd();
    CHAINS16(SUM512PD)
    return _mm512_reduce_add_pd(s);
}

#define DECL256PS(k) __m256 x##k = _mm256_set1_ps(0.5f + 0.01f * k);
#define STEP256PS(k) x##k = _mm256_fmadd_ps(x##k, m, a);
#define SUM256PS(k) s = _mm256_add_ps(s, x##k);
AVX2 static double fma_avx2_f32(long iters)
{
    const __m256 m = _mm256_set1_ps((float)FMA_M), a = _mm256_set1_ps((float)FMA_A);
    CHAINS12(DECL256PS)
    for (long i = 0; i < iters; i++) {
        CHAINS12(STEP256PS)
    }
    __m256 s = _mm256_setzero_ps();
    CHAINS12(SUM256PS)
    float v[8];
    _mm256_storeu_ps(v, s);
    return (double)v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

#define DECL256PD(k) __m256d x##k = _mm256_set1_pd(0.5 + 0.01 * k);
#define STEP256PD(k) x##k = _mm256_fmadd_pd(x##k, m, a);
#define SUM256PD(k) s = _mm256_add_pd(s, x##k);
AVX2 static double fma_avx2_f64(long iters)
{
    const __m256d m = _mm256_set1_pd(FMA_M), a = _mm256_set1_pd(FMA_A);
    CHAINS12(DECL256PD)
    for (long i = 0; i < iters; i++) {
        CHAINS12(STEP256PD)
    }
    __m256d s = _mm256_setzero_pd();
    CHAINS12(SUM256PD)
    double v[4];
    _mm256_storeu_pd(v, s);
    return v[0] + v[1] + v[2] + v[3];
}

/* n is a multiple of 16 and the arrays 64-byte aligned (peak_triad_new). */
AVX512 static void triad_avx512(double *restrict a, const double *restrict b, const double *restrict c, size_t n)
{
    const __m512d s = _mm512_set1_pd(3.0);
    for (size_t i = 0; i < n; i += 16) {
        _mm512_store_pd(a + i, _mm512_fmadd_pd(s, _mm512_load_pd(c + i), _mm512_load_pd(b + i)));
        _mm512_store_pd(a + i + 8, _mm512_fmadd_pd(s, _mm512_load_pd(c + i + 8), _mm512_load_pd(b + i + 8)));
    }
}

AVX2 static void triad_avx2(double *restrict a, const double *restrict b, const double *restrict c, size_t n)
{
    const __m256d s = _mm256_set1_pd(3.0);
    for (size_t i = 0; i < n; i += 8) {
        _mm256_store_pd(a + i, _mm256_fmadd_pd(s, _mm256_load_pd(c + i), _mm256_load_pd(b + i)));
        _mm256_store_pd(a + i + 4, _mm256_fmadd_pd(s, _mm256_load_pd(c + i + 4), _mm256_load_pd(b + i + 4)));
    }
}
#endif

#define DECLF(k) float x##k = 0.5f + 0.01f * k;
#define DECLD(k) double x##k = 0.5 + 0.01 * k;
#define STEP(k) x##k = x##k * m + a;
#define SUM(k) s += x##k;
static double fma_portable_f32(long iters)
{
    const float m = (float)FMA_M, a = (float)FMA_A;
    CHAINS12(DECLF)
    for (long i = 0; i < iters; i++) {
        CHAINS12(STEP)
    }
    float s = 0;
    CHAINS12(SUM)
    return s;
}

static double fma_portable_f64(long iters)
{
    const double m = FMA_M, a = FMA_A;
    CHAINS12(DECLD)
    for (long i = 0; i < iters; i++) {
        CHAINS12(STEP)
    }
    double s = 0;
    CHAINS12(SUM)
    return s;
}

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
