/* GEMM throughput: our sgemm and dgemm (ad/kernels) against OpenBLAS measured in the same run,
 * on square sizes and on the shapes of MLP training (linear layer forward C = X W^T and its
 * backward dX = G W, dW = G^T X), with 1 and 2 threads.
 *
 * OpenBLAS is optional: it is loaded with dlopen (OPENBLAS_CORETYPE=SkylakeX forced, so its
 * AVX-512 kernels run whatever it detects) and when absent only our numbers are printed.
 * Usage: bench_gemm [rounds]  (rounds = 1: a quick smoke run that also checks our results
 * against OpenBLAS's).
 *
 * Each shape's GFLOP/s (2 m n k FLOPs a call) is also printed as a fraction of threads x one
 * core's FMA peak of its precision, measured at the start of the run (tests/bench/peak.c):
 * `bench: sgemm_SHAPE_Tt_peak_fraction F`, and `..._openblas_peak_fraction` for OpenBLAS. */
#include "ad.h"
#include "bench.h"
#include "kernels/kernels.h"
#include "peak.h"
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int,
                         const double *, int, double, double *, int);

static struct {
    sgemm_fn sgemm;
    dgemm_fn dgemm;
    void (*set_threads)(int);
} blas;


static bool load_openblas(void)
{
    if (AD_TSAN) return false; /* TSan cannot see OpenBLAS's (uninstrumented) synchronisation */
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    static const char *const names[] = {
        "libopenblas.so.0", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        *(void **)&blas.sgemm = dlsym(h, "cblas_sgemm");
        *(void **)&blas.dgemm = dlsym(h, "cblas_dgemm");
        *(void **)&blas.set_threads = dlsym(h, "openblas_set_num_threads");
        if (blas.sgemm && blas.dgemm && blas.set_threads) return true;
        dlclose(h);
        memset(&blas, 0, sizeof blas);
    }
    return false;
}

typedef struct {
    char name[48];
    bool ta, tb;
    int m, n, k;
} shape;

typedef struct {
    const shape *s;
    ad_dtype t;
    void *A, *B, *C;
} problem;

static void run_ours(const problem *p)
{
    const shape *s = p->s;
    gemm(p->t, s->ta, s->tb, s->m, s->n, s->k, p->A, s->ta ? s->m : s->k, p->B,
         s->tb ? s->k : s->n, p->C, s->n, false);
}

static void run_blas(const problem *p)
{
    const shape *s = p->s;
    int ta = s->ta ? TRANS : NO_TRANS, tb = s->tb ? TRANS : NO_TRANS;
    if (p->t == AD_F32)
        blas.sgemm(ROW_MAJOR, ta, tb, s->m, s->n, s->k, 1.0f, p->A, s->ta ? s->m : s->k, p->B,
                   s->tb ? s->k : s->n, 0.0f, p->C, s->n);
    else
        blas.dgemm(ROW_MAJOR, ta, tb, s->m, s->n, s->k, 1.0, p->A, s->ta ? s->m : s->k, p->B,
                   s->tb ? s->k : s->n, 0.0, p->C, s->n);
}

/* Seconds per call, repeating until min_time has passed. */
static double time_calls(void (*f)(const problem *), const problem *p, double min_time)
{
    int reps = 0;
    double t0 = now_seconds(), t;
    do {
        f(p);
        reps++;
    } while ((t = now_seconds() - t0) < min_time);
    return t / reps;
}

/* 64-byte aligned, as the library's own tensors are. */
static void *rand_buf(ad_rng *r, ad_dtype t, size_t n)
{
    size_t bytes = (n * ad_dtype_size(t) + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        double v = 2 * ad_rng_uniform(r) - 1;
        if (t == AD_F64) ((double *)p)[i] = v;
        else ((float *)p)[i] = (float)v;
    }
    return p;
}

/* Largest |ours - theirs| relative to the largest |theirs|. */
static double compare(const problem *p, const void *theirs)
{
    size_t n = (size_t)p->s->m * (size_t)p->s->n;
    double diff = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        double a = p->t == AD_F64 ? ((double *)p->C)[i] : ((float *)p->C)[i];
        double b = p->t == AD_F64 ? ((const double *)theirs)[i] : ((const float *)theirs)[i];
        diff = fmax(diff, fabs(a - b));
        big = fmax(big, fabs(b));
    }
    return diff / (big > 0 ? big : 1);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    rounds = rounds < 1 ? 1 : rounds > 15 ? 15 : rounds;
    bool smoke = rounds == 1, have_blas = load_openblas();
    double min_time = smoke ? 0 : 0.03;

    shape shapes[32];
    int ns = 0;
    static const int squares[] = {256, 512, 1024};
    for (int i = 0; i < 3; i++) {
        int s = squares[i];
        shapes[ns] = (shape){.m = s, .n = s, .k = s};
        snprintf(shapes[ns++].name, sizeof shapes[0].name, "%d", s);
    }
    static const int mlp[][3] = {{64, 784, 256}, {64, 256, 128}, {64, 128, 10}, {8, 784, 256},
                                 {1024, 784, 256}}; /* batch, in, out */
    for (int i = 0; i < 5; i++) {
        int N = mlp[i][0], in = mlp[i][1], out = mlp[i][2];
        shapes[ns] = (shape){.ta = false, .tb = true, .m = N, .n = out, .k = in}; /* X W^T */
        snprintf(shapes[ns++].name, sizeof shapes[0].name, "fwd_%dx%dx%d", N, in, out);
        shapes[ns] = (shape){.ta = false, .tb = false, .m = N, .n = in, .k = out}; /* G W */
        snprintf(shapes[ns++].name, sizeof shapes[0].name, "dx_%dx%dx%d", N, in, out);
        shapes[ns] = (shape){.ta = true, .tb = false, .m = out, .n = in, .k = N}; /* G^T X */
        snprintf(shapes[ns++].name, sizeof shapes[0].name, "dw_%dx%dx%d", N, in, out);
    }

    printf("gemm: our kernels: %s; OpenBLAS: %s; %d round(s), median\n",
           gemm_isa_name(gemm_current_isa()), have_blas ? "loaded (SkylakeX)" : "not found",
           rounds);
    peak_fma peak = smoke ? peak_fma_measure(5, 0.002) : peak_fma_quick();
    peak_fma_print(&peak);
    ad_rng r;
    ad_rng_seed(&r, 1);
    int bad = 0;
    for (int threads = 1; threads <= 2; threads++) {
        ad_set_threads(threads);
        if (have_blas) blas.set_threads(threads);
        for (int dt = 0; dt < 2; dt++)
            for (int i = 0; i < ns; i++) {
                ad_dtype t = dt ? AD_F64 : AD_F32;
                const shape *s = &shapes[i];
                size_t ca = (size_t)s->m * s->k, cb = (size_t)s->k * s->n, cc = (size_t)s->m * s->n;
                problem p = {s, t, rand_buf(&r, t, ca), rand_buf(&r, t, cb), rand_buf(&r, t, cc)};
                void *theirs = aligned_alloc(64, (cc * ad_dtype_size(t) + 63) / 64 * 64);
                if (!p.A || !p.B || !p.C || !theirs) {
                    fprintf(stderr, "gemm: out of memory\n");
                    return 1;
                }
                double ours[15], bl[15];
                for (int k = 0; k < rounds; k++) { /* alternate, so both see the same noise */
                    if (have_blas) {
                        bl[k] = time_calls(run_blas, &(problem){s, t, p.A, p.B, theirs}, min_time);
                        /* OpenBLAS's idle threads spin for ~0.1 s after a call, taking the
                         * core our worker needs: let them go to sleep first */
                        if (threads > 1 && !smoke) nanosleep(&(struct timespec){0, 150000000}, NULL);
                    }
                    ours[k] = time_calls(run_ours, &p, min_time);
                }
                double flops = 2.0 * s->m * s->n * s->k;
                double g_ours = flops / median(ours, rounds) * 1e-9;
                const char *tn = dt ? "dgemm" : "sgemm";
                double top = threads * (dt ? peak.f64_gflops : peak.f32_gflops);
                printf("bench: %s_%s_%dt %.1f GFLOP/s\n", tn, s->name, threads, g_ours);
                printf("bench: %s_%s_%dt_peak_fraction %.3f\n", tn, s->name, threads, g_ours / top);
                if (have_blas) {
                    double g_blas = flops / median(bl, rounds) * 1e-9, err = compare(&p, theirs);
                    printf("bench: %s_%s_%dt_openblas %.1f GFLOP/s\n", tn, s->name, threads, g_blas);
                    printf("bench: %s_%s_%dt_openblas_peak_fraction %.3f\n", tn, s->name, threads, g_blas / top);
                    printf("bench: %s_%s_%dt_vs_openblas %.2f x\n", tn, s->name, threads, g_ours / g_blas);
                    double tol = (dt ? 1e-15 : 1e-6) * s->k;
                    if (err > tol) {
                        fprintf(stderr, "gemm: %s_%s: differs from OpenBLAS by %.3g (relative)\n",
                                tn, s->name, err);
                        bad = 1;
                    }
                }
                free(p.A), free(p.B), free(p.C), free(theirs);
            }
    }
    ad_set_threads(0);
    return bad;
}
