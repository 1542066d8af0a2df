/* The thread pool: ad_get_threads() - 1 persistent workers and a parallel-for over blocks.
 *
 * A job is posted by bumping a generation counter.  Workers spin on it for a short while after
 * each job (back-to-back GEMMs of a training step then start without a futex wake-up) and
 * sleep on a condition variable otherwise.  A worker joins a job by registering under the
 * mutex while the job is open; the caller closes the job when it runs out of blocks and waits
 * for the registered workers only, so a worker that wakes late never touches a finished job.
 * One caller at a time: a second concurrent caller, or a task that calls back in, runs its
 * blocks itself. */
#include "kernels.h"
#include "../internal.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

enum {
    MAX_THREADS = 256,
    SPIN_ROUNDS = 4000 /* pauses (~20-40 ns each) a worker or a caller spins before sleeping */
};

static struct {
    pthread_mutex_t submit;   /* held by the one caller whose job the pool serves */
    pthread_mutex_t mu;       /* guards everything below but the atomics */
    pthread_cond_t wake;      /* workers: a new generation (or stop) */
    pthread_cond_t done;      /* caller: the last registered worker left */
    pthread_t *tid;
    int nworkers;
    bool stop;
    atomic_uint_fast64_t gen; /* bumped under mu for each job and for stop */
    uint64_t start_gen[MAX_THREADS];
    /* the current job */
    pool_task_fn fn;
    void *ctx;
    int64_t nblocks;
    int width;                /* workers 1..width-1 may join */
    bool open;                /* workers may still join */
    atomic_int_fast64_t next; /* next block to hand out */
    atomic_int active;        /* workers registered and not yet finished */
} P = {.submit = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER,
       .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static _Thread_local bool in_task; /* running blocks (worker, or a caller inside its job) */

static atomic_int threads_set;     /* ad_set_threads' value; 0: the default */
static int threads_default = 1;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static inline void cpu_relax(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#endif
}

/* BACKPROP_THREADS if it is a positive integer, else the online cores. */
static void find_default(void)
{
    long n = 0;
    const char *env = getenv("BACKPROP_THREADS");
    if (env && *env) {
        char *end;
        n = strtol(env, &end, 10);
        if (*end) n = 0;
    }
    if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
    threads_default = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

int ad_get_threads(void)
{
    int n = atomic_load_explicit(&threads_set, memory_order_relaxed);
    if (n > 0) return n;
    pthread_once(&default_once, find_default);
    return threads_default;
}

static void run_blocks(pool_task_fn fn, void *ctx, int64_t nblocks, int worker)
{
    int64_t b;
    while ((b = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed)) < nblocks)
        fn(ctx, b, worker);
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    in_task = true;
    pthread_mutex_lock(&P.mu);
    uint64_t seen = P.start_gen[id];
    pthread_mutex_unlock(&P.mu);
    for (;;) {
        for (int s = 0; s < SPIN_ROUNDS; s++) {
            if (atomic_load_explicit(&P.gen, memory_order_acquire) != seen) break;
            cpu_relax();
        }
        pthread_mutex_lock(&P.mu);
        while (atomic_load_explicit(&P.gen, memory_order_relaxed) == seen && !P.stop)
            pthread_cond_wait(&P.wake, &P.mu);
        if (P.stop) {
            pthread_mutex_unlock(&P.mu);
            return NULL;
        }
        seen = atomic_load_explicit(&P.gen, memory_order_relaxed);
        bool join = P.open && id < P.width;
        pool_task_fn fn = P.fn;
        void *ctx = P.ctx;
        int64_t nblocks = P.nblocks;
        if (join) atomic_fetch_add_explicit(&P.active, 1, memory_order_relaxed);
        pthread_mutex_unlock(&P.mu);
        if (!join) continue;
        run_blocks(fn, ctx, nblocks, id);
        if (atomic_fetch_sub_explicit(&P.active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&P.mu);
            pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.mu);
        }
    }
}

/* A child of fork has none of the workers (only the forking thread survives) and maybe a
 * pool locked by a thread that no longer exists: start it afresh. */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&P.submit, NULL);
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.wake, NULL);
    pthread_cond_init(&P.done, NULL);
    P.nworkers = 0;
    P.stop = P.open = false;
    atomic_store_explicit(&P.active, 0, memory_order_relaxed);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

/* Starts workers until there are want - 1 (fewer if the system refuses).  Holds submit. */
static void grow(int want)
{
    if (want - 1 <= P.nworkers) return;
    pthread_once(&atfork_once, register_atfork);
    if (!P.tid) {
        P.tid = ad_malloc(sizeof(pthread_t) * (MAX_THREADS - 1));
        if (!P.tid) return;
    }
    sigset_t all, old; /* workers take no signals: they belong to the application's threads */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (P.nworkers < want - 1) {
        int id = P.nworkers + 1;
        pthread_mutex_lock(&P.mu);
        P.start_gen[id] = atomic_load_explicit(&P.gen, memory_order_relaxed);
        pthread_mutex_unlock(&P.mu);
        if (pthread_create(&P.tid[P.nworkers], NULL, worker_main, (void *)(intptr_t)id) != 0) break;
        P.nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Stops and joins every worker.  Holds submit. */
static void stop_workers(void)
{
    if (!P.nworkers) return;
    pthread_mutex_lock(&P.mu);
    P.stop = true;
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.nworkers; i++) pthread_join(P.tid[i], NULL);
    P.nworkers = 0;
    P.stop = false;
}

int pool_parallel_for(int64_t nblocks, int threads, pool_task_fn fn, void *ctx)
{
    if (nblocks <= 0) return 0;
    int want = threads > 0 ? threads : ad_get_threads();
    if (want > nblocks) want = (int)nblocks;
    if (want > MAX_THREADS) want = MAX_THREADS;
    if (want <= 1 || in_task || pthread_mutex_trylock(&P.submit) != 0) {
        for (int64_t b = 0; b < nblocks; b++) fn(ctx, b, 0);
        return 1;
    }
    grow(want);
    int width = want < P.nworkers + 1 ? want : P.nworkers + 1;
    if (width <= 1) {
        pthread_mutex_unlock(&P.submit);
        for (int64_t b = 0; b < nblocks; b++) fn(ctx, b, 0);
        return 1;
    }
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.ctx = ctx;
    P.nblocks = nblocks;
    P.width = width;
    P.open = true;
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);

    in_task = true;
    run_blocks(fn, ctx, nblocks, 0);
    in_task = false;

    pthread_mutex_lock(&P.mu); /* no one joins from now on */
    P.open = false;
    pthread_mutex_unlock(&P.mu);
    for (int s = 0; s < SPIN_ROUNDS && atomic_load_explicit(&P.active, memory_order_acquire); s++)
        cpu_relax();
    if (atomic_load_explicit(&P.active, memory_order_acquire)) {
        pthread_mutex_lock(&P.mu);
        while (atomic_load_explicit(&P.active, memory_order_acquire))
            pthread_cond_wait(&P.done, &P.mu);
        pthread_mutex_unlock(&P.mu);
    }
    pthread_mutex_unlock(&P.submit);
    return width;
}

typedef struct {
    ad_range_fn fn;
    void *ctx;
    int64_t n, slices;
} range_job;

static void range_task(void *c, int64_t b, int worker)
{
    (void)worker;
    const range_job *j = c;
    j->fn(j->ctx, j->n * b / j->slices, j->n * (b + 1) / j->slices);
}

void ad_parallel_for(int64_t n, int64_t grain, ad_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t slices = n / grain, t = ad_get_threads();
    if (slices > t) slices = t;
    if (slices <= 1) {
        fn(ctx, 0, n);
        return;
    }
    range_job j = {fn, ctx, n, slices};
    pool_parallel_for(slices, (int)slices, range_task, &j);
}

void ad_set_threads(int n)
{
    n = n <= 0 ? 0 : n > MAX_THREADS ? MAX_THREADS : n;
    atomic_store_explicit(&threads_set, n, memory_order_relaxed);
    if (in_task) return; /* the pool is busy with our own job: resize it later */
    pthread_mutex_lock(&P.submit); /* fewer threads: let the extra workers go */
    if (P.nworkers > ad_get_threads() - 1) stop_workers();
    pthread_mutex_unlock(&P.submit);
}

void pool_shutdown(void)
{
    pthread_mutex_lock(&P.submit);
    stop_workers();
    ad_free(P.tid);
    P.tid = NULL;
    pthread_mutex_unlock(&P.submit);
}

/* A library unloaded (dlclose) with live workers would pull their code from under them. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((destructor)) static void pool_fini(void) { pool_shutdown(); }
#endif
