/* adbench: ADBench's GMM and BA derivatives in each engine, timed against the plain C
 * objective (ADBench's J/F ratio, with the same denominator F for every engine, as ADBench
 * uses the tool-independent double evaluation for operator-overloading tools).
 *
 *   adbench gmm FILE [--engine E] [--out F] [--repeat N]
 *   adbench ba FILE [--engine E] [--out F] [--repeat N]
 *
 * Engines: tape, graph, replay, program (the replay's recordings compiled), tensor, adolc (those built); default all, run round-robin:
 * each of N rounds times F once and then every engine once, starting from a different engine
 * each round, and the medians are reported.  One untimed evaluation of each comes first; no
 * engine may allocate after it (checked on the arenas and tapes).
 *
 * --out F writes the result of the engine given (of the tape with all of them): for gmm the
 * objective and then the gradient, one %.17g per line; for ba the Jacobian as ADBench's
 * write_J_sparse.  Prints `bench: NAME VALUE` lines; exits 0, or 1 for bad arguments or input
 * or a failed evaluation, or 2 when an engine's objective differs from the plain C one, or its
 * derivative from the tape's, by more than 1e-9 in ADBench's measure |x-y| / max(1, |x|+|y|). */
#include "adbench.h"
#include "bench.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const engine_names[ENG_COUNT] = {"tape", "graph", "replay", "program", "tensor", "adolc"};

const char *adb_engine_name(adb_engine e)
{
    return (unsigned)e < ENG_COUNT ? engine_names[e] : "?";
}

bool adb_engine_available(adb_engine e)
{
    switch (e) {
    case ENG_REPLAY:
    case ENG_PROGRAM: return adb_have_replay;
#ifdef HAVE_ADOLC
    case ENG_ADOLC: return true;
#else
    case ENG_ADOLC: return false;
#endif
    case ENG_TAPE:
    case ENG_GRAPH:
    case ENG_TENSOR: return true;
    default: return false;
    }
}

#define TOL 1e-9

/* ADBench's measure (docs/JacobianCheck.md), the largest over n pairs. */
static double max_diff(const double *a, const double *b, long long n)
{
    double m = 0;
    for (long long i = 0; i < n; i++) {
        double x = a[i], y = b[i], dlt = fabs(x - y) / fmax(1, fabs(x) + fabs(y));
        if (!(dlt <= m)) m = dlt; /* NaN wins */
    }
    return m;
}

static int usage(const char *msg)
{
    fprintf(stderr,
            "adbench: %s\nusage: adbench gmm|ba FILE [--engine tape|graph|replay|program|tensor|adolc] [--out FILE] "
            "[--repeat N]\n",
            msg);
    return 1;
}

typedef struct {
    bool gmm;
    const char *file, *out;
    int engine; /* -1: all */
    int repeat;
} options;

static int parse(int argc, char **argv, options *o)
{
    *o = (options){.engine = -1, .repeat = 5};
    if (argc < 3) return usage("missing arguments");
    if (!strcmp(argv[1], "gmm")) o->gmm = true;
    else if (strcmp(argv[1], "ba")) return usage("the first argument must be gmm or ba");
    o->file = argv[2];
    for (int i = 3; i < argc; i++) {
        char msg[256];
        if (i + 1 >= argc) {
            snprintf(msg, sizeof msg, "%s needs a value", argv[i]);
            return usage(msg);
        }
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--engine")) {
            o->engine = -2;
            for (int e = 0; e < ENG_COUNT; e++)
                if (!strcmp(v, engine_names[e])) o->engine = e;
            if (o->engine == -2) {
                snprintf(msg, sizeof msg, "unknown engine '%s'", v);
                return usage(msg);
            }
            if (!adb_engine_available((adb_engine)o->engine)) {
                snprintf(msg, sizeof msg, "engine '%s' is not in this build", v);
                return usage(msg);
            }
        } else if (!strcmp(argv[i - 1], "--out")) {
            o->out = v;
        } else if (!strcmp(argv[i - 1], "--repeat")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || end == v || n < 1 || n > 100000) {
                snprintf(msg, sizeof msg, "--repeat '%s': a count from 1 to 100000 is needed", v);
                return usage(msg);
            }
            o->repeat = (int)n;
        } else {
            snprintf(msg, sizeof msg, "unknown option '%s'", argv[i - 1]);
            return usage(msg);
        }
    }
    return 0;
}

/* The engines to run, in order. */
static int engine_list(const options *o, adb_engine *list)
{
    int n = 0;
    for (int e = 0; e < ENG_COUNT; e++)
        if ((o->engine < 0 || o->engine == e) && adb_engine_available((adb_engine)e)) list[n++] = (adb_engine)e;
    return n;
}

/* What each benchmark does with one engine, so that the timing loop is written once. */
typedef struct {
    int (*eval)(void *ctx, int e, char *err, size_t errlen); /* e: engine slot; -1: the plain objective */
    void *ctx;
} bench_fns;

typedef struct {
    int ne;
    adb_engine list[ENG_COUNT];
    double med_f, med_j[ENG_COUNT];
} timings;

/* Warm-up, then `repeat` rounds of F and every engine, the engines' order rotated per round. */
static int run_rounds(const bench_fns *b, timings *t, int repeat, unsigned long long (*mallocs)(void *, int))
{
    char err[512];
    double *tf = malloc((size_t)repeat * sizeof *tf), *tj = malloc((size_t)repeat * ENG_COUNT * sizeof *tj);
    if (!tf || !tj) {
        fprintf(stderr, "adbench: out of memory\n");
        free(tf), free(tj);
        return 1;
    }
    int st = 0;
    for (int s = -1; s < t->ne && !st; s++)
        if (b->eval(b->ctx, s, err, sizeof err)) fprintf(stderr, "adbench: %s\n", err), st = 1;
    unsigned long long before[ENG_COUNT];
    for (int s = 0; s < t->ne; s++) before[s] = mallocs(b->ctx, s);
    for (int r = 0; r < repeat && !st; r++) {
        double t0 = now_seconds();
        b->eval(b->ctx, -1, err, sizeof err);
        tf[r] = now_seconds() - t0;
        for (int k = 0; k < t->ne && !st; k++) {
            int s = (r + k) % t->ne;
            t0 = now_seconds();
            if (b->eval(b->ctx, s, err, sizeof err)) fprintf(stderr, "adbench: %s\n", err), st = 1;
            tj[s * repeat + r] = now_seconds() - t0;
        }
    }
    for (int s = 0; s < t->ne && !st; s++) {
        unsigned long long grew = mallocs(b->ctx, s) - before[s];
        if (grew) {
            fprintf(stderr, "adbench: %s allocated %llu blocks after its first evaluation\n",
                    adb_engine_name(t->list[s]), grew);
            st = 2;
        }
    }
    if (st != 1) {
        t->med_f = median(tf, repeat);
        for (int s = 0; s < t->ne; s++) t->med_j[s] = median(tj + s * repeat, repeat);
    }
    free(tf), free(tj);
    return st;
}

static void print_times(const char *obj, const timings *t, int repeat)
{
    printf("%s: median of %d alternated rounds; F (plain C objective) %.4f ms\n", obj, repeat, t->med_f * 1e3);
    printf("bench: %s_F_ms %.6g\n", obj, t->med_f * 1e3);
    for (int s = 0; s < t->ne; s++) {
        const char *e = adb_engine_name(t->list[s]);
        printf("bench: %s_J_%s_ms %.6g\n", obj, e, t->med_j[s] * 1e3);
        printf("bench: %s_ratio_%s %.4g\n", obj, e, t->med_j[s] / t->med_f);
    }
}

/* ---- GMM ---- */

typedef struct {
    gmm_input in;
    double *plain_work, f_plain;
    gmm_work *w[ENG_COUNT];
    double f[ENG_COUNT], *grad[ENG_COUNT];
    const adb_engine *list;
} gmm_ctx;

static int gmm_bench_eval(void *ctx, int s, char *err, size_t errlen)
{
    gmm_ctx *c = ctx;
    if (s < 0) {
        c->f_plain = gmm_objective(&c->in, c->plain_work);
        return 0;
    }
    return gmm_eval(c->w[s], &c->in, &c->f[s], c->grad[s], err, errlen);
}

static unsigned long long gmm_bench_mallocs(void *ctx, int s)
{
    return gmm_work_mallocs(((gmm_ctx *)ctx)->w[s]);
}

static int run_gmm(const options *o)
{
    gmm_ctx c = {0};
    char err[512];
    timings t = {0};
    t.ne = engine_list(o, t.list);
    c.list = t.list;
    if (gmm_read(o->file, &c.in, err, sizeof err)) {
        fprintf(stderr, "adbench: %s\n", err);
        return 1;
    }
    int st = 1, np = gmm_grad_size(&c.in);
    c.plain_work = malloc(gmm_plain_work_size(&c.in) * sizeof(double));
    if (!c.plain_work) goto oom;
    for (int s = 0; s < t.ne; s++) {
        c.grad[s] = calloc((size_t)np, sizeof(double));
        if (!c.grad[s]) goto oom;
        if (!(c.w[s] = gmm_work_new(t.list[s], &c.in, err, sizeof err))) {
            fprintf(stderr, "adbench: %s\n", err);
            goto out;
        }
    }
    printf("gmm %s: d=%d k=%d n=%d, %d parameters\n", o->file, c.in.d, c.in.k, c.in.n, np);
    bench_fns b = {gmm_bench_eval, &c};
    st = run_rounds(&b, &t, o->repeat, gmm_bench_mallocs);
    if (st == 1) goto out;
    print_times("gmm", &t, o->repeat);
    /* the derivative's reference: the tape's, or the first engine's */
    int ref = 0;
    for (int s = 0; s < t.ne; s++)
        if (t.list[s] == ENG_TAPE) ref = s;
    for (int s = 0; s < t.ne; s++) {
        const char *e = adb_engine_name(t.list[s]);
        double df = max_diff(&c.f[s], &c.f_plain, 1), dg = max_diff(c.grad[s], c.grad[ref], np);
        printf("%s: objective %.17g (plain C %.17g), difference %.2e; gradient difference from %s %.2e\n", e, c.f[s],
               c.f_plain, df, adb_engine_name(t.list[ref]), dg);
        printf("bench: gmm_objdiff_%s %.3g\n", e, df);
        printf("bench: gmm_graddiff_%s %.3g\n", e, dg);
        if (!(df <= TOL && dg <= TOL)) {
            fprintf(stderr, "adbench: gmm: %s differs by more than %g\n", e, TOL);
            st = 2;
        }
    }
    if (o->out && gmm_write(o->out, c.f[ref], c.grad[ref], np, err, sizeof err)) {
        fprintf(stderr, "adbench: %s\n", err);
        st = 1;
    }
    goto out;
oom:
    fprintf(stderr, "adbench: out of memory for %d parameters\n", np);
out:
    for (int s = 0; s < t.ne; s++) gmm_work_free(c.w[s]), free(c.grad[s]);
    free(c.plain_work);
    gmm_free(&c.in);
    return st;
}

/* ---- BA ---- */

typedef struct {
    ba_input in;
    double *reproj_plain, *wres_plain;
    ba_work *w[ENG_COUNT];
    double *reproj[ENG_COUNT], *vals[ENG_COUNT];
} ba_ctx;

static int ba_bench_eval(void *ctx, int s, char *err, size_t errlen)
{
    ba_ctx *c = ctx;
    if (s < 0) {
        ba_objective(&c->in, c->reproj_plain, c->wres_plain);
        return 0;
    }
    return ba_eval(c->w[s], &c->in, c->reproj[s], c->vals[s], err, errlen);
}

static unsigned long long ba_bench_mallocs(void *ctx, int s)
{
    return ba_work_mallocs(((ba_ctx *)ctx)->w[s]);
}

static int run_ba(const options *o)
{
    ba_ctx c = {0};
    char err[512];
    timings t = {0};
    t.ne = engine_list(o, t.list);
    if (ba_read(o->file, &c.in, err, sizeof err)) {
        fprintf(stderr, "adbench: %s\n", err);
        return 1;
    }
    int st = 1;
    long long p = c.in.p, nnz = ba_nnz(&c.in);
    c.reproj_plain = malloc(2 * (size_t)p * sizeof(double));
    c.wres_plain = malloc((size_t)p * sizeof(double));
    if (!c.reproj_plain || !c.wres_plain) goto oom;
    for (int s = 0; s < t.ne; s++) {
        c.reproj[s] = malloc(2 * (size_t)p * sizeof(double));
        c.vals[s] = malloc((size_t)nnz * sizeof(double));
        if (!c.reproj[s] || !c.vals[s]) goto oom;
        if (!(c.w[s] = ba_work_new(t.list[s], &c.in, err, sizeof err))) {
            fprintf(stderr, "adbench: %s\n", err);
            goto out;
        }
    }
    printf("ba %s: n=%d m=%d p=%d, Jacobian %lld x %lld with %lld nonzeros\n", o->file, c.in.n, c.in.m, c.in.p,
           3 * p, 11LL * c.in.n + 3LL * c.in.m + p, nnz);
    bench_fns b = {ba_bench_eval, &c};
    st = run_rounds(&b, &t, o->repeat, ba_bench_mallocs);
    if (st == 1) goto out;
    print_times("ba", &t, o->repeat);
    int ref = 0;
    for (int s = 0; s < t.ne; s++)
        if (t.list[s] == ENG_TAPE) ref = s;
    for (int s = 0; s < t.ne; s++) {
        const char *e = adb_engine_name(t.list[s]);
        double df = max_diff(c.reproj[s], c.reproj_plain, 2 * p), dj = max_diff(c.vals[s], c.vals[ref], nnz);
        printf("%s: residuals' difference from plain C %.2e; Jacobian's difference from %s %.2e\n", e, df,
               adb_engine_name(t.list[ref]), dj);
        printf("bench: ba_objdiff_%s %.3g\n", e, df);
        printf("bench: ba_jacdiff_%s %.3g\n", e, dj);
        if (!(df <= TOL && dj <= TOL)) {
            fprintf(stderr, "adbench: ba: %s differs by more than %g\n", e, TOL);
            st = 2;
        }
    }
    if (o->out && ba_write_jacobian(o->out, &c.in, c.vals[ref], err, sizeof err)) {
        fprintf(stderr, "adbench: %s\n", err);
        st = 1;
    }
    goto out;
oom:
    fprintf(stderr, "adbench: out of memory for p=%lld\n", p);
out:
    for (int s = 0; s < t.ne; s++) ba_work_free(c.w[s]), free(c.reproj[s]), free(c.vals[s]);
    free(c.reproj_plain), free(c.wres_plain);
    ba_free(&c.in);
    return st;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o)) return 1;
    int st = o.gmm ? run_gmm(&o) : run_ba(&o);
    fflush(stdout);
    return st;
}
