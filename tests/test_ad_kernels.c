/* The matrix kernel and the thread pool: gemm against a naive triple loop in double for random
 * and edge shapes, all four transpose combinations, accumulate on and off, padded leading
 * dimensions, both dtypes and every micro-kernel family this CPU runs; results bitwise equal
 * for 1 to 4 threads; the pool's parallel-for, its nesting and concurrent callers; the thread
 * count's default from BACKPROP_THREADS; the elementwise ops, sums and optimizer updates that
 * the pool splits give the same bits for any thread count. */
#include "testutil.h"
#include "kernels/kernels.h"
#include "optim.h"
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const gemm_isa isas[] = {GEMM_ISA_PORTABLE, GEMM_ISA_AVX2, GEMM_ISA_AVX512};
enum { NISA = sizeof isas / sizeof isas[0] };

/* A gemm problem with its operands stored as the kernel reads them (A [m,k] or [k,m] when
 * transposed, B [k,n] or [n,k]), each row padded by a few elements; values in [-1, 1). */
typedef struct {
    ad_dtype t;
    bool ta, tb, acc;
    int64_t m, n, k, lda, ldb, ldc;
    void *A, *B, *C, *C0; /* C0: C before the call */
} problem;

static double get(const void *p, ad_dtype t, int64_t i)
{
    return t == AD_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

static void *rand_buf(ad_rng *r, ad_dtype t, int64_t n)
{
    void *p = malloc((size_t)n * ad_dtype_size(t));
    ck_assert_ptr_nonnull(p);
    for (int64_t i = 0; i < n; i++) {
        double v = 2 * ad_rng_uniform(r) - 1;
        if (t == AD_F64) ((double *)p)[i] = v;
        else ((float *)p)[i] = (float)v;
    }
    return p;
}

static problem make(ad_rng *r, ad_dtype t, bool ta, bool tb, bool acc, int64_t m, int64_t n,
                    int64_t k)
{
    problem p = {.t = t, .ta = ta, .tb = tb, .acc = acc, .m = m, .n = n, .k = k};
    int64_t pad = (int64_t)(ad_rng_next(r) % 4);
    p.lda = (ta ? m : k) + pad;
    p.ldb = (tb ? k : n) + (int64_t)(ad_rng_next(r) % 4);
    p.ldc = n + (int64_t)(ad_rng_next(r) % 4);
    p.A = rand_buf(r, t, (ta ? k : m) * p.lda + 1);
    p.B = rand_buf(r, t, (tb ? n : k) * p.ldb + 1);
    p.C = rand_buf(r, t, m * p.ldc + 1);
    size_t cb = (size_t)(m * p.ldc + 1) * ad_dtype_size(t);
    p.C0 = malloc(cb);
    ck_assert_ptr_nonnull(p.C0);
    memcpy(p.C0, p.C, cb);
    return p;
}

static void drop(problem *p)
{
    free(p->A), free(p->B), free(p->C), free(p->C0);
}

static void run(problem *p)
{
    gemm(p->t, p->ta, p->tb, p->m, p->n, p->k, p->A, p->lda, p->B, p->ldb, p->C, p->ldc, p->acc);
}

/* Compares C with the double-precision product.  Each element may be off by the rounding of
 * a k-term sum: (k + 2) eps times the sum of the magnitudes.  Padding stays untouched.
 * (One assertion per problem: Check records every assertion it passes.) */
static void check(const problem *p, const char *what)
{
    double eps = p->t == AD_F64 ? DBL_EPSILON : FLT_EPSILON;
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j = 0; j < p->ldc; j++) {
            int64_t ci = i * p->ldc + j;
            double got = get(p->C, p->t, ci);
            if (j >= p->n) {
                if (got != get(p->C0, p->t, ci))
                    ck_abort_msg("%s: padding C[%lld,%lld] overwritten", what, (long long)i, (long long)j);
                continue;
            }
            double s = p->acc ? get(p->C0, p->t, ci) : 0, mag = fabs(s);
            for (int64_t q = 0; q < p->k; q++) {
                double a = get(p->A, p->t, p->ta ? q * p->lda + i : i * p->lda + q);
                double b = get(p->B, p->t, p->tb ? j * p->ldb + q : q * p->ldb + j);
                s += a * b;
                mag += fabs(a * b);
            }
            double tol = (double)(p->k + 2) * eps * mag + 1e-300;
            if (!(fabs(got - s) <= tol))
                ck_abort_msg("%s: C[%lld,%lld] = %.17g, expected %.17g (tolerance %g)", what,
                             (long long)i, (long long)j, got, s, tol);
        }
}

static void describe(char *buf, size_t len, const problem *p)
{
    snprintf(buf, len, "%s %s ta=%d tb=%d acc=%d m=%lld n=%lld k=%lld", gemm_isa_name(gemm_current_isa()),
             ad_dtype_name(p->t), p->ta, p->tb, p->acc, (long long)p->m, (long long)p->n,
             (long long)p->k);
}

static void one(ad_rng *r, ad_dtype t, bool ta, bool tb, bool acc, int64_t m, int64_t n, int64_t k)
{
    problem p = make(r, t, ta, tb, acc, m, n, k);
    char what[160];
    describe(what, sizeof what, &p);
    run(&p);
    check(&p, what);
    drop(&p);
}

/* Forces family i for a test, or reports that the CPU lacks it. */
static bool use_isa(int i)
{
    if (!gemm_isa_supported(isas[i])) {
        fprintf(stderr, "note: %s kernels not supported here, not tested\n", gemm_isa_name(isas[i]));
        return false;
    }
    ck_assert(gemm_force_isa(isas[i]));
    ck_assert_int_eq(gemm_current_isa(), isas[i]);
    return true;
}

/* ========================================================================================== *
 * gemm against the naive loop
 */

/* Every tile edge of every family: sizes around MR (4, 6, 14) and NR (8, 16, 32), k around
 * the unrolling and the packers' 8/16-wide transposes. */
START_TEST(gemm_edges)
{
    if (!use_isa(_i)) return;
    static const int64_t mn[] = {1, 5, 6, 7, 13, 14, 15, 16, 17, 29, 32, 33};
    static const int64_t ks[] = {1, 3, 8, 16, 17};
    ad_rng r;
    ad_rng_seed(&r, 100 + (uint64_t)_i);
    for (int dt = 0; dt < 2; dt++)
        for (int tr = 0; tr < 4; tr++)
            for (size_t a = 0; a < sizeof mn / sizeof *mn; a++)
                for (size_t b = 0; b < sizeof mn / sizeof *mn; b++)
                    for (size_t c = 0; c < sizeof ks / sizeof *ks; c++)
                        one(&r, dt ? AD_F32 : AD_F64, tr & 1, tr & 2, (a + b + c) % 2, mn[a], mn[b], ks[c]);
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* A dimension: 1, a prime, or anything up to 300. */
static int64_t rand_dim(ad_rng *r)
{
    static const int64_t primes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53,
                                     61, 67, 89, 97, 101, 127, 131, 151, 193, 197, 211, 251,
                                     257, 263, 277, 293};
    switch (ad_rng_next(r) % 4) {
    case 0: return 1 + (int64_t)(ad_rng_next(r) % 300);
    case 1: return primes[ad_rng_next(r) % (sizeof primes / sizeof *primes)];
    case 2: return 1 + (int64_t)(ad_rng_next(r) % 40);
    default: return ad_rng_next(r) % 8 == 0 ? 1 : 150 + (int64_t)(ad_rng_next(r) % 151);
    }
}

START_TEST(gemm_random_shapes)
{
    if (!use_isa(_i)) return;
    ad_rng r;
    ad_rng_seed(&r, 7 + (uint64_t)_i);
    for (int trial = 0; trial < 48; trial++) {
        int64_t m = rand_dim(&r), n = rand_dim(&r), k = rand_dim(&r);
        while (m * n * k > 1500000) { /* keep the naive reference quick */
            if (m >= n && m >= k) m /= 2;
            else if (n >= k) n /= 2;
            else k /= 2;
        }
        int tr = trial % 4;
        one(&r, trial % 8 < 4 ? AD_F32 : AD_F64, tr & 1, tr & 2, trial % 3 == 0, m, n, k);
    }
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* Long sums: several K blocks (KC = 256), and the MLP's shapes (linear layer forward,
 * dX = G W, dW = G^T X). */
START_TEST(gemm_long_k_and_mlp_shapes)
{
    if (!use_isa(_i)) return;
    ad_rng r;
    ad_rng_seed(&r, 11);
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype t = dt ? AD_F32 : AD_F64;
        one(&r, t, false, true, false, 64, 40, 784);   /* forward of a 784-input layer */
        one(&r, t, true, false, true, 17, 33, 1031);   /* dW with a large batch */
        one(&r, t, false, false, false, 8, 130, 520);  /* dX */
        one(&r, t, true, true, true, 30, 20, 600);
        one(&r, t, false, true, true, 64, 10, 128);    /* the last layer */
        one(&r, t, true, false, false, 10, 128, 64);
    }
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* accumulate = false ignores what C held (NaN included); k = 0 gives zeros or leaves C. */
START_TEST(gemm_overwrite_and_empty)
{
    if (!use_isa(_i)) return;
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 0, 1, 1, 1}, C[4];
    for (int i = 0; i < 4; i++) C[i] = NAN;
    gemm(AD_F32, false, false, 2, 2, 3, A, 3, B, 2, C, 2, false); /* [1 2 3; 4 5 6] [1 0; 0 1; 1 1] */
    ck_assert(C[0] == 4 && C[1] == 5 && C[2] == 10 && C[3] == 11);
    gemm(AD_F32, false, false, 2, 2, 0, A, 3, B, 2, C, 2, true);
    ck_assert(C[0] == 4 && C[3] == 11);
    gemm(AD_F32, false, false, 2, 2, 0, A, 3, B, 2, C, 2, false);
    ck_assert(C[0] == 0 && C[1] == 0 && C[2] == 0 && C[3] == 0);
    double D[1] = {7};
    gemm(AD_F64, true, true, 0, 1, 3, A, 1, B, 1, D, 1, false);
    gemm(AD_F64, true, true, 1, 0, 3, A, 1, B, 1, D, 1, false);
    ck_assert(D[0] == 7);
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* Without memory for packing, gemm falls back to plain loops.  A fresh thread has no packing
 * buffers yet, so its first gemm allocates (and here fails to). */
static void *gemm_failing_alloc(void *v)
{
    problem *p = v;
    long before = ad_alloc_count();
    ad_fail_alloc_at(1);
    run(p);
    ad_fail_alloc_at(0);
    ck_assert_int_eq(ad_alloc_count(), before + 1);
    return NULL;
}

START_TEST(gemm_without_memory)
{
    if (!use_isa(_i)) return;
    ad_set_threads(1);
    ad_rng r;
    ad_rng_seed(&r, 3);
    for (int dt = 0; dt < 2; dt++)
        for (int tr = 0; tr < 4; tr++) {
            problem p = make(&r, dt ? AD_F32 : AD_F64, tr & 1, tr & 2, tr == 1, 37, 45, 29);
            pthread_t t;
            ck_assert_int_eq(pthread_create(&t, NULL, gemm_failing_alloc, &p), 0);
            pthread_join(t, NULL);
            check(&p, "gemm without scratch memory");
            drop(&p);
        }
    ad_set_threads(0);
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* ========================================================================================== *
 * Threads
 */

/* The same bits for 1, 2, 3 and 4 threads, for shapes large enough to be split. */
START_TEST(gemm_bitwise_any_thread_count)
{
    if (!use_isa(_i)) return;
    static const int64_t shapes[][3] = { /* N, in, out of a linear layer */
        {64, 784, 256}, {64, 256, 128}, {8, 784, 256}, {150, 97, 301}};
    ad_rng r;
    ad_rng_seed(&r, 5);
    for (int dt = 0; dt < 2; dt++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int form = 0; form < 3; form++) {
                int64_t N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
                /* forward x W^T, dX = G W, dW = G^T X */
                int64_t m = form == 2 ? out : N, n = form == 0 ? out : in, k = form == 0 ? in : form == 1 ? out : N;
                problem p = make(&r, dt ? AD_F32 : AD_F64, form == 2, form == 0, form == 1, m, n, k);
                size_t bytes = (size_t)(m * p.ldc + 1) * ad_dtype_size(p.t);
                void *first = malloc(bytes);
                ck_assert_ptr_nonnull(first);
                for (int threads = 1; threads <= 4; threads++) {
                    memcpy(p.C, p.C0, bytes);
                    ad_set_threads(threads);
                    ck_assert_int_eq(ad_get_threads(), threads);
                    run(&p);
                    if (threads == 1) memcpy(first, p.C, bytes);
                    else
                        ck_assert_msg(memcmp(first, p.C, bytes) == 0,
                                      "%s %s shape %zu form %d: %d threads differ from 1",
                                      gemm_isa_name(isas[_i]), ad_dtype_name(p.t), s, form, threads);
                }
                if (s == 3) { /* the other shapes are checked against the loop above */
                    char what[160];
                    describe(what, sizeof what, &p);
                    check(&p, what);
                }
                free(first);
                drop(&p);
            }
    ad_set_threads(0);
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* A row of C is the same bits however many rows the call has: a few rows times a transposed B
 * take another path (C^T = B A^T, see gemm.c), and data-parallel training relies on a shard's
 * rows coming out as they do in the whole batch.  k past one K block, accumulate on and off. */
START_TEST(gemm_rows_independent_of_m)
{
    if (!use_isa(_i)) return;
    enum { BIG = 40 };
    static const int64_t nk[][2] = {{256, 784}, {37, 600}, {300, 5}};
    static const int64_t ms[] = {1, 3, 8, 14, 16, 17};
    ad_rng r;
    ad_rng_seed(&r, 9);
    for (int dt = 0; dt < 2; dt++)
        for (size_t s = 0; s < sizeof nk / sizeof *nk; s++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++)
                    for (int threads = 1; threads <= 2; threads++) {
                        ad_set_threads(threads);
                        problem p = make(&r, dt ? AD_F32 : AD_F64, false, tb, acc, BIG, nk[s][0], nk[s][1]);
                        run(&p);
                        size_t es = ad_dtype_size(p.t);
                        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++) {
                            int64_t m = ms[mi];
                            void *C = malloc((size_t)(m * p.ldc) * es);
                            ck_assert_ptr_nonnull(C);
                            memcpy(C, p.C0, (size_t)(m * p.ldc) * es);
                            gemm(p.t, false, p.tb, m, p.n, p.k, p.A, p.lda, p.B, p.ldb, C, p.ldc, p.acc);
                            for (int64_t i = 0; i < m; i++)
                                ck_assert_msg(!memcmp((char *)C + (size_t)(i * p.ldc) * es,
                                                      (char *)p.C + (size_t)(i * p.ldc) * es, (size_t)p.n * es),
                                              "%s %s n=%lld k=%lld tb=%d acc=%d: row %lld of %lld rows differs "
                                              "from the same row of %d", gemm_isa_name(isas[_i]), ad_dtype_name(p.t),
                                              (long long)p.n, (long long)p.k, tb, acc, (long long)i, (long long)m, BIG);
                            free(C);
                        }
                        drop(&p);
                    }
    ad_set_threads(0);
    gemm_force_isa(GEMM_ISA_AUTO);
}
END_TEST

/* A graph over vectors long enough for the pool to split every kind of loop: unary ops,
 * same-shape and scalar-broadcast binary ops, x*x, whole sums and means; returns the loss and
 * leaves the gradient of x in grad (n elements, as doubles). */
static double split_graph(ad_dtype t, const double *xv, int64_t n, double *grad)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var_array(g, "x", t, AD_SHAPE(n), xv);
    ad_node *e = ad_exp(g, ad_mul_scalar(g, x, 0.01));
    ad_node *r = ad_relu(g, ad_add_scalar(g, ad_mul_scalar(g, x, -1), 0.5));
    ad_node *q = ad_mul(g, ad_tanh(g, x), ad_div(g, e, ad_add_scalar(g, ad_mul(g, x, x), 1)));
    ad_node *loss = ad_add(g, ad_sum(g, ad_add(g, q, r)), ad_mean(g, ad_mul(g, e, x)));
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    for (int64_t i = 0; i < n; i++) grad[i] = ad_node_grad_get(x, i);
    double v = ad_value(loss);
    ad_graph_free(g);
    return v;
}

START_TEST(ops_bitwise_any_thread_count)
{
    enum { N = 200003 }; /* > 2 grains of every split loop, and not a multiple of anything */
    double *x = malloc(N * sizeof *x), *first = malloc(N * sizeof *first), *grad = malloc(N * sizeof *grad);
    ck_assert(x && first && grad);
    ad_rng r;
    ad_rng_seed(&r, 11);
    for (int i = 0; i < N; i++) x[i] = 4 * ad_rng_uniform(&r) - 2;
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype t = dt ? AD_F32 : AD_F64;
        double v1 = 0;
        for (int threads = 1; threads <= 4; threads++) {
            ad_set_threads(threads);
            double v = split_graph(t, x, N, grad);
            if (threads == 1) {
                v1 = v;
                memcpy(first, grad, N * sizeof *grad);
            } else {
                ck_assert_msg(memcmp(&v, &v1, sizeof v) == 0, "%s loss: %d threads %.17g, 1 thread %.17g",
                              ad_dtype_name(t), threads, v, v1);
                ck_assert_msg(memcmp(grad, first, N * sizeof *grad) == 0, "%s gradient: %d threads differ from 1",
                              ad_dtype_name(t), threads);
            }
        }
    }
    ad_set_threads(0);
    free(x), free(first), free(grad);
}
END_TEST

/* The blocked, 32-lane sum is still the sum: integers add exactly in double, so the result
 * must be exact for every length around the lane and block boundaries. */
START_TEST(sum_exact_on_integers)
{
    static const int64_t lens[] = {1, 31, 32, 33, 1000, 16383, 16384, 16385, 65537, 1048577};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++)
        for (int dt = 0; dt < 2; dt++) {
            int64_t n = lens[k];
            ad_tensor *v = ad_tensor_new(dt ? AD_F32 : AD_F64, AD_SHAPE(n));
            double want = 0;
            for (int64_t i = 0; i < n; i++) {
                double e = (double)(i % 7) - 3 + (i % 3 == 0 ? 1000 : 0);
                ad_tensor_set(v, i, e);
                want += e;
            }
            ad_graph *g = ad_graph_new();
            ad_node *s = ad_sum(g, ad_const_tensor(g, v));
            if (dt) want = (float)want; /* summed in double, stored as float32 */
            ck_assert_msg(ad_value(s) == want, "n = %lld: sum %.17g, want %.17g", (long long)n, ad_value(s), want);
            ad_graph_free(g);
            ad_tensor_free(v);
        }
}
END_TEST

/* optim_step splits the parameters' elements across threads: same bits for any count; a
 * gradient zeroed (lazily) and never written updates nothing. */
START_TEST(optim_step_bitwise_any_thread_count)
{
    enum { N = 150001 };
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype t = dt ? AD_F32 : AD_F64;
        ad_tensor *first = ad_tensor_new(t, AD_SHAPE(N, 2));
        for (int threads = 1; threads <= 3; threads++) {
            ad_set_threads(threads);
            ad_tensor *p[2] = {ad_param_new("a", t, AD_SHAPE(N, 2)), ad_param_new("b", t, AD_SHAPE(7))};
            ad_rng r;
            ad_rng_seed(&r, 3);
            for (int64_t i = 0; i < 2 * N; i++) ad_tensor_set(p[0], i, ad_rng_uniform(&r));
            optim_cfg c = optim_defaults(OPTIM_ADAM, 0.01);
            optim *o = optim_new(p, 2, &c, NULL, 0);
            ck_assert_ptr_nonnull(o);
            for (int step = 0; step < 3; step++) {
                double *gr = ad_tensor_grad_data(p[0]);
                for (int64_t i = 0; i < 2 * N; i++) {
                    double gv = sin((double)i * 0.001 + step);
                    if (t == AD_F64) gr[i] = gv;
                    else ((float *)(void *)gr)[i] = (float)gv;
                }
                ck_assert_int_eq(optim_step(o), AD_OK);
                optim_zero_grad(o); /* p[1]'s gradient is never written: it must stay put */
            }
            ck_assert_double_eq(ad_tensor_get(p[1], 3), 0);
            if (threads == 1) ad_tensor_copy(first, p[0]);
            else
                ck_assert_msg(memcmp(ad_tensor_data(first), ad_tensor_data(p[0]), 2 * N * ad_dtype_size(t)) == 0,
                              "%s: %d threads differ from 1", ad_dtype_name(t), threads);
            optim_free(o);
            ad_tensor_free(p[0]);
            ad_tensor_free(p[1]);
        }
        ad_tensor_free(first);
    }
    ad_set_threads(0);
}
END_TEST

typedef struct {
    atomic_int *hits;
    atomic_int nested;
    int64_t n;
} count_ctx;

static void count_block(void *c, int64_t b, int worker)
{
    count_ctx *x = c;
    if (worker >= 0 && worker < 8) atomic_fetch_add(&x->hits[b], 1); /* else: counted 0 times */
}

START_TEST(pool_runs_every_block_once)
{
    static const int64_t sizes[] = {1, 2, 3, 7, 100, 1000};
    atomic_int hits[1000];
    for (int threads = 1; threads <= 5; threads++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            count_ctx c = {.hits = hits, .n = sizes[s]};
            for (int64_t b = 0; b < c.n; b++) atomic_init(&hits[b], 0);
            int used = pool_parallel_for(c.n, threads, count_block, &c);
            ck_assert(used >= 1 && used <= threads);
            for (int64_t b = 0; b < c.n; b++) ck_assert_int_eq(atomic_load(&hits[b]), 1);
        }
    pool_shutdown();
    count_ctx c = {.hits = hits, .n = 10}; /* the pool restarts after a shutdown */
    for (int64_t b = 0; b < c.n; b++) atomic_init(&hits[b], 0);
    pool_parallel_for(c.n, 2, count_block, &c);
    for (int64_t b = 0; b < c.n; b++) ck_assert_int_eq(atomic_load(&hits[b]), 1);
}
END_TEST

static void nested_block(void *c, int64_t b, int worker)
{
    (void)worker;
    count_ctx *x = c;
    atomic_int inner[4];
    for (int i = 0; i < 4; i++) atomic_init(&inner[i], 0);
    count_ctx y = {.hits = inner, .n = 4};
    ck_assert_int_eq(pool_parallel_for(4, 4, count_block, &y), 1); /* runs inline */
    for (int i = 0; i < 4; i++) ck_assert_int_eq(atomic_load(&inner[i]), 1);
    atomic_fetch_add(&x->hits[b], 1);
    atomic_fetch_add(&x->nested, 1);
}

START_TEST(pool_nested_calls_run_inline)
{
    atomic_int hits[16];
    for (int i = 0; i < 16; i++) atomic_init(&hits[i], 0);
    count_ctx c = {.hits = hits, .n = 16};
    atomic_init(&c.nested, 0);
    pool_parallel_for(16, 3, nested_block, &c);
    for (int i = 0; i < 16; i++) ck_assert_int_eq(atomic_load(&hits[i]), 1);
    ck_assert_int_eq(atomic_load(&c.nested), 16);
}
END_TEST

static void range_mark(void *c, int64_t begin, int64_t end)
{
    atomic_int *hits = c;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&hits[i], 1);
}

START_TEST(pool_range_covers_once)
{
    static const int64_t ns[] = {1, 5, 64, 999};
    atomic_int hits[999];
    ad_set_threads(3);
    for (size_t s = 0; s < sizeof ns / sizeof *ns; s++)
        for (int64_t grain = 1; grain <= 300; grain *= 7) {
            for (int64_t i = 0; i < ns[s]; i++) atomic_init(&hits[i], 0);
            ad_parallel_for(ns[s], grain, range_mark, hits);
            for (int64_t i = 0; i < ns[s]; i++) ck_assert_int_eq(atomic_load(&hits[i]), 1);
        }
    ad_set_threads(0);
}
END_TEST

/* Two application threads multiplying at once: one gets the pool, the other runs inline. */
typedef struct { uint64_t seed; int ok; } caller_arg;

static void *caller(void *v)
{
    caller_arg *c = v;
    ad_rng r;
    ad_rng_seed(&r, c->seed);
    for (int i = 0; i < 6; i++) {
        problem p = make(&r, i % 2 ? AD_F32 : AD_F64, i % 3 == 0, i % 2 == 0, false, 70, 90, 110);
        run(&p);
        char what[160];
        describe(what, sizeof what, &p);
        check(&p, what);
        drop(&p);
    }
    c->ok = 1;
    return NULL;
}

START_TEST(pool_concurrent_callers)
{
    ad_set_threads(2);
    pthread_t t[3];
    caller_arg a[3] = {{1, 0}, {2, 0}, {3, 0}};
    for (int i = 0; i < 3; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, caller, &a[i]), 0);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(a[i].ok, 1);
    ad_set_threads(0);
}
END_TEST

/* A child of fork has no workers: the pool starts afresh there, and resizing it does not wait
 * for threads that did not survive the fork. */
/* The caller's block waits (at most about a second) for a worker to run one. */
static void wait_for_worker_block(void *c, int64_t b, int worker)
{
    (void)b;
    atomic_int *worker_ran = c;
    if (worker != 0) atomic_store(worker_ran, 1);
    else
        for (int i = 0; i < 100000 && !atomic_load(worker_ran); i++)
            nanosleep(&(struct timespec){.tv_nsec = 10000}, NULL);
}

START_TEST(pool_after_fork)
{
    ad_set_threads(2);
    atomic_int hits[64];
    for (int i = 0; i < 64; i++) atomic_init(&hits[i], 0);
    count_ctx c = {.hits = hits, .n = 64};
    /* Fork only once the parent's worker has run a block: a thread still inside its start-up
     * (AddressSanitizer's thread set-up takes the sanitizer's own locks) would leave the child
     * a lock that nobody will release, a hang of the sanitizer, not of the pool. */
    atomic_int worker_ran;
    atomic_init(&worker_ran, 0);
    pool_parallel_for(2, 2, wait_for_worker_block, &worker_ran);
    ck_assert_int_eq(atomic_load(&worker_ran), 1);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* ThreadSanitizer cannot start threads after a multi-threaded fork: one thread there */
        int t = AD_TSAN ? 1 : 2;
        for (int i = 0; i < 64; i++) atomic_store(&hits[i], 0);
        int used = pool_parallel_for(64, t, count_block, &c);
        ad_set_threads(1);
        ad_set_threads(AD_TSAN ? 1 : 3);
        used += pool_parallel_for(64, AD_TSAN ? 1 : 3, count_block, &c);
        int ok = used >= 2;
        for (int i = 0; i < 64; i++) ok &= atomic_load(&hits[i]) == 2;
        _exit(ok ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ad_set_threads(0);
}
END_TEST

static const char *self; /* argv[0] (not /proc/self/exe, which is valgrind under valgrind) */

/* The default thread count, seen by a fresh copy of this program (the default is read once
 * per process). */
static int threads_in_child(const char *env)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (env) setenv("BACKPROP_THREADS", env, 1);
        else unsetenv("BACKPROP_THREADS");
        execlp(self, self, "--print-threads", (char *)NULL);
        _exit(255);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(threads_setting_and_default)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ad_set_threads(3);
    ck_assert_int_eq(ad_get_threads(), 3);
    ad_set_threads(1);
    ck_assert_int_eq(ad_get_threads(), 1);
    ad_set_threads(-2);
    int def = ad_get_threads();
    ck_assert_int_ge(def, 1);
    ad_set_threads(0);
    ck_assert_int_eq(ad_get_threads(), def);
    ck_assert_int_eq(threads_in_child("3"), 3);
    ck_assert_int_eq(threads_in_child("17"), 17);
    ck_assert_int_eq(threads_in_child(NULL), cores);
    ck_assert_int_eq(threads_in_child("zero"), cores);
    ck_assert_int_eq(threads_in_child("-4"), cores);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-threads") == 0) return ad_get_threads();
    self = argv[0];
    Suite *s = suite_create("ad_kernels");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, gemm_edges, 0, NISA);
    tcase_add_loop_test(tc, gemm_random_shapes, 0, NISA);
    tcase_add_loop_test(tc, gemm_long_k_and_mlp_shapes, 0, NISA);
    tcase_add_loop_test(tc, gemm_overwrite_and_empty, 0, NISA);
    tcase_add_loop_test(tc, gemm_without_memory, 0, NISA);
    tcase_add_loop_test(tc, gemm_bitwise_any_thread_count, 0, NISA);
    tcase_add_loop_test(tc, gemm_rows_independent_of_m, 0, NISA);
    suite_add_tcase(s, tc);
    tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, pool_runs_every_block_once);
    tcase_add_test(tc, pool_nested_calls_run_inline);
    tcase_add_test(tc, pool_range_covers_once);
    tcase_add_test(tc, pool_concurrent_callers);
    tcase_add_test(tc, pool_after_fork);
    tcase_add_test(tc, threads_setting_and_default);
    suite_add_tcase(s, tc);
    tc = tcase_create("split ops");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ops_bitwise_any_thread_count);
    tcase_add_test(tc, sum_exact_on_integers);
    tcase_add_test(tc, optim_step_bitwise_any_thread_count);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
