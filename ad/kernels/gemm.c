/* The GEMM driver: picks a micro-kernel family, splits C into one block per thread, and runs
 * the BLIS loop nest on each block:
 *
 *   for jc in n by NC:            B block  kc x NC   (L3)
 *     for pc in k by KC:          pack op(B)[pc.., jc..] into NR-wide panels
 *       for ic in m by MC:        pack op(A)[ic.., pc..] into MR-tall panels (L2)
 *         for jr in NC by NR:     one B panel stays in L1 ...        } the family's
 *           for ir in MC by MR:   ... while the tiles run down A     } macro-kernel
 *
 * Skinny shapes skip a packing that would not pay (an A used by one B panel, a row-major B
 * passed by few A panels): the tiles then read the operand in place.
 *
 * K is blocked the same way whatever the thread count (k split evenly into blocks of at most
 * KC), a thread owns whole tiles of C, and packed or in place a tile does the same
 * arithmetic, so results are bitwise identical for any number of threads. */
#include "gemm_impl.h"
#include "../internal.h"
#include <pthread.h>
#include <stdatomic.h>

enum {
    PAR_MIN_FLOPS = 1 << 20,   /* 2mnk below this runs on the calling thread */
    PAR_TASK_FLOPS = 1 << 19,  /* and each thread gets at least this much */
    PACK_COST = 8,             /* packing one element ~ this many multiply-adds (task split) */
    DIRECT_B_PANELS = 5        /* at most this many A panels pass over an unpacked B panel */
};

/* ---- choosing a family ---- */

static atomic_int forced; /* a gemm_isa; GEMM_ISA_AUTO: the best supported */

bool gemm_isa_supported(gemm_isa isa)
{
    switch (isa) {
    case GEMM_ISA_AUTO:
    case GEMM_ISA_PORTABLE:
        return true;
#if GEMM_HAVE_X86
    case GEMM_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GEMM_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#endif
    default:
        return false;
    }
}

static gemm_isa best_isa(void)
{
    static atomic_int best; /* computed once; a race computes the same value twice */
    int b = atomic_load_explicit(&best, memory_order_relaxed);
    if (!b) {
        b = gemm_isa_supported(GEMM_ISA_AVX512) ? GEMM_ISA_AVX512
            : gemm_isa_supported(GEMM_ISA_AVX2) ? GEMM_ISA_AVX2 : GEMM_ISA_PORTABLE;
        atomic_store_explicit(&best, b, memory_order_relaxed);
    }
    return (gemm_isa)b;
}

bool gemm_force_isa(gemm_isa isa)
{
    if (!gemm_isa_supported(isa)) return false;
    atomic_store_explicit(&forced, (int)isa, memory_order_relaxed);
    return true;
}

gemm_isa gemm_current_isa(void)
{
    int f = atomic_load_explicit(&forced, memory_order_relaxed);
    return f != GEMM_ISA_AUTO ? (gemm_isa)f : best_isa();
}

const char *gemm_isa_name(gemm_isa isa)
{
    static const char *const names[] = {"auto", "portable", "avx2", "avx512"};
    return (unsigned)isa < 4 ? names[isa] : "?";
}

static const gemm_kernel *kernel_for(ad_dtype t)
{
    switch (gemm_current_isa()) {
#if GEMM_HAVE_X86
    case GEMM_ISA_AVX512: return t == AD_F64 ? &gemm_avx512_f64 : &gemm_avx512_f32;
    case GEMM_ISA_AVX2: return t == AD_F64 ? &gemm_avx2_f64 : &gemm_avx2_f32;
#endif
    default: return t == AD_F64 ? &gemm_portable_f64 : &gemm_portable_f32;
    }
}

/* ---- packing buffers: each calling thread keeps one, grown on demand and freed by a key
 * destructor when the thread exits.  The caller sizes it for all of a call's tasks, so pool
 * workers never allocate and a loop's allocations all happen in its first iteration. ---- */

static _Thread_local struct { void *p; size_t cap; } scratch;
static pthread_key_t scratch_key;
static bool scratch_key_ok;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_make_key(void) { scratch_key_ok = pthread_key_create(&scratch_key, ad_free) == 0; }

static char *scratch_get(size_t bytes)
{
    if (scratch.cap >= bytes) return scratch.p;
    pthread_once(&scratch_once, scratch_make_key);
    if (!scratch_key_ok) return NULL;
    void *p = ad_aligned_alloc(64, bytes);
    if (!p) return NULL;
    ad_free(scratch.p);
    scratch.p = p;
    scratch.cap = bytes;
    pthread_setspecific(scratch_key, p);
    return p;
}

/* ---- the loop nest ---- */

typedef struct {
    const gemm_kernel *K;
    ad_dtype t;
    size_t es;
    bool ta, tb, acc;
    int64_t m, n, k, lda, ldb, ldc;
    const char *A, *B;
    char *C;
    int64_t kcb;            /* K block: k split evenly into blocks of at most KC */
    int64_t pm, pn, tm, tn; /* row and column panels of C; task grid */
    char *buf;              /* packing space, task_bytes per task; NULL if none could be had */
    size_t task_bytes;
    const gemm_epilogue *ep; /* NULL: none */
} gemm_job;

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t gcd64(int64_t a, int64_t b) { return b ? gcd64(b, a % b) : a; }

/* Unpacked loops for a block, when no scratch memory can be had. */
#define NAIVE(T)                                                                             \
    static void naive_##T(const gemm_job *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) \
    {                                                                                        \
        const T *A = (const T *)g->A, *B = (const T *)g->B;                                  \
        T *C = (T *)g->C;                                                                    \
        for (int64_t i = i0; i < i1; i++)                                                    \
            for (int64_t j = j0; j < j1; j++) {                                              \
                T s = 0;                                                                     \
                for (int64_t p = 0; p < g->k; p++)                                           \
                    s += (g->ta ? A[p * g->lda + i] : A[i * g->lda + p]) *                   \
                         (g->tb ? B[j * g->ldb + p] : B[p * g->ldb + j]);                    \
                C[i * g->ldc + j] = g->acc ? C[i * g->ldc + j] + s : s;                      \
            }                                                                                \
    }
NAIVE(float)
NAIVE(double)

static int64_t round64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

/* Packing space for a block of at most rows x cols (an upper bound of run_block's use). */
static size_t block_bytes(const gemm_job *g, int64_t rows, int64_t cols)
{
    const gemm_kernel *K = g->K;
    int64_t es = (int64_t)g->es;
    return (size_t)(round64(min64(cdiv(rows, K->mr) * K->mr, K->mc) * g->kcb * es) +
                    round64(g->kcb * min64(K->nc, cdiv(cols, K->nr) * K->nr) * es));
}

/* How many of the L1's 64 sets (of 64-byte lines) the same column of consecutive rows
 * `stride` bytes apart falls in: a stride of 4 KiB puts every row in one set. */
static int64_t l1_sets(int64_t stride)
{
    return stride % 64 ? 64 : 64 / gcd64(stride / 64 % 64, 64);
}

/* C[i0:i1, j0:j1], packing into buf (block_bytes of it). */
static void run_block(const gemm_job *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, char *buf)
{
    const gemm_kernel *K = g->K;
    const int64_t MR = K->mr, NR = K->nr, es = (int64_t)g->es;
    /* An operand is read in place when packing would not pay: A when a single B panel passes
     * over it, or when it is row-major and a tile's MR rows fall in different L1 sets (the
     * tiles then stream them from L2 as fast as a packed panel: measured 0-7% faster, since the
     * copy is gone); B (if row-major) when few A panels pass over each B panel and its kc rows
     * spread over enough L1 sets (64 sets of 64 bytes) to stay cached between them. */
    bool direct_a = j1 - j0 <= NR || (!g->ta && l1_sets(g->lda * es) >= 16);
    int64_t a_panels = cdiv(i1 - i0, MR), sets = l1_sets(g->ldb * es);
    bool direct_b = !g->tb && (a_panels <= 2 || (a_panels <= DIRECT_B_PANELS && g->kcb <= 6 * sets));
    int64_t mcb = cdiv(cdiv(i1 - i0, cdiv(i1 - i0, K->mc)), MR) * MR; /* even M blocks */
    if (!buf && !(direct_a && direct_b)) {
        if (g->t == AD_F64) naive_double(g, i0, i1, j0, j1);
        else naive_float(g, i0, i1, j0, j1);
        if (g->ep) g->ep->fn(g->ep->ctx, g->C + (i0 * g->ldc + j0) * es, g->ldc, i1 - i0, j1 - j0);
        return;
    }
    char *abuf = buf, *bbuf = direct_a ? buf : buf + round64(mcb * g->kcb * es);
    for (int64_t jc = j0; jc < j1; jc += K->nc) {
        int64_t nc = min64(K->nc, j1 - jc);
        for (int64_t pc = 0; pc < g->k; pc += g->kcb) {
            int64_t kc = min64(g->kcb, g->k - pc);
            const char *B = g->B + (g->tb ? jc * g->ldb + pc : pc * g->ldb + jc) * es;
            if (!direct_b) K->pack_b(K, g->tb, B, g->ldb, nc, kc, bbuf);
            bool add = g->acc || pc > 0;
            for (int64_t ic = i0; ic < i1; ic += mcb) {
                int64_t mc = min64(mcb, i1 - ic);
                const char *A = g->A + (g->ta ? pc * g->lda + ic : ic * g->lda + pc) * es;
                if (!direct_a) K->pack_a(K, g->ta, A, g->lda, mc, kc, abuf);
                gemm_block x = {
                    .mc = mc, .nc = nc, .kc = kc,
                    .a = direct_a ? A : abuf, .a_step = direct_a ? (g->ta ? 1 : g->lda) : kc,
                    .lda = g->lda, .a_packed = !direct_a, .arows = direct_a && !g->ta,
                    .b = direct_b ? B : bbuf, .b_step = direct_b ? 1 : kc, .ldb = g->ldb,
                    .b_packed = !direct_b,
                    .c = g->C + (ic * g->ldc + jc) * es, .ldc = g->ldc, .add = add};
                K->macro(&x);
                if (g->ep && pc + kc >= g->k) g->ep->fn(g->ep->ctx, x.c, g->ldc, mc, nc);
            }
        }
    }
}

/* Task b of the tm x tn grid: whole row panels and column panels of C. */
static void gemm_task(void *ctx, int64_t b, int worker)
{
    (void)worker;
    const gemm_job *g = ctx;
    int64_t a = b / g->tn, c = b % g->tn, MR = g->K->mr, NR = g->K->nr;
    int64_t i0 = g->pm * a / g->tm * MR, i1 = min64(g->m, g->pm * (a + 1) / g->tm * MR);
    int64_t j0 = g->pn * c / g->tn * NR, j1 = min64(g->n, g->pn * (c + 1) / g->tn * NR);
    if (i0 < i1 && j0 < j1) run_block(g, i0, i1, j0, j1, g->buf ? g->buf + b * g->task_bytes : NULL);
}

/* The grid of at most `threads` tasks that minimises the largest task's cost: its tiles'
 * multiply-adds plus the packing of its A rows and B columns. */
static void choose_grid(gemm_job *g, int threads)
{
    double flops = 2.0 * (double)g->m * (double)g->n * (double)g->k;
    int64_t t = flops < PAR_MIN_FLOPS ? 1 : min64(threads, (int64_t)(flops / PAR_TASK_FLOPS));
    g->tm = g->tn = 1;
    double best = -1;
    for (int64_t tm = 1; tm <= t; tm++)
        for (int64_t tn = 1; tm * tn <= t; tn++) {
            if (tm > g->pm || tn > g->pn) continue;
            double rows = (double)(cdiv(g->pm, tm) * g->K->mr), cols = (double)(cdiv(g->pn, tn) * g->K->nr);
            double cost = rows * cols + PACK_COST * (rows + cols);
            /* more tasks only if they pay: each extra one must cut the cost */
            if (best < 0 || cost < best * 0.98 - 1e-9) {
                best = cost;
                g->tm = tm;
                g->tn = tn;
            }
        }
}

void gemm(ad_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
          int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, bool accumulate)
{
    gemm_ex(t, ta, tb, m, n, k, A, lda, B, ldb, C, ldc, accumulate, NULL);
}

void gemm_ex(ad_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
             int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, bool accumulate,
             const gemm_epilogue *ep)
{
    if (m <= 0 || n <= 0) return;
    size_t es = ad_dtype_size(t);
    if (k <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < m; i++) memset((char *)C + (size_t)(i * ldc) * es, 0, (size_t)n * es);
        if (ep) ep->fn(ep->ctx, C, ldc, m, n);
        return;
    }
    gemm_job g = {.K = kernel_for(t), .t = t, .es = es, .ta = ta, .tb = tb, .acc = accumulate,
                  .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc,
                  .A = A, .B = B, .C = C, .ep = ep};
    g.kcb = cdiv(k, cdiv(k, g.K->kc));
    g.pm = cdiv(m, g.K->mr);
    g.pn = cdiv(n, g.K->nr);
    choose_grid(&g, ad_get_threads());
    int64_t tasks = g.tm * g.tn;
    g.task_bytes = block_bytes(&g, cdiv(g.pm, g.tm) * g.K->mr, cdiv(g.pn, g.tn) * g.K->nr);
    g.buf = scratch_get(g.task_bytes * (size_t)tasks);
    if (tasks == 1) run_block(&g, 0, m, 0, n, g.buf);
    else pool_parallel_for(tasks, (int)tasks, gemm_task, &g);
}
