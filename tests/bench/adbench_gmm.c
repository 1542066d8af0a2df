/* GMM: the plain C objective and its gradient in each engine.
 *
 *   tape    ad_real_gradient per point (one point's term, all parameters as variables), the
 *           gradients summed; then the rest (alphas' logsumexp, the prior) once;
 *   graph   the same on scalar graph nodes, the graph reset between points (the whole
 *           objective as one scalar graph is ~2e8 nodes at d=64, K=100);
 *   replay  one point's term recorded once, replayed at every point (see adbench_replay.c);
 *   tensor  all points at once: Q_c^T built from icf by slices and concat, X Q_c^T as a batched
 *           matmul (the library's GEMM), the logsumexps as reductions;
 *   adolc   adbench_adolc.cc. */
#include "adbench.h"
#include "ad.h"
#include "ad_real.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A node pointer as one name, so that the bodies' "const T *" and "T a, b" mean what they say. */
typedef ad_node *adb_node;

double gmm_constant(const gmm_input *in)
{
    int d = in->d, N = d + in->m + 1;
    double lgd = 0.25 * d * (d - 1) * log(ADB_PI);
    for (int j = 1; j <= d; j++) lgd += lgamma(0.5 * N + 0.5 * (1 - j));
    double C = N * d * (log(in->gamma) - 0.5 * log(2.0)) - lgd;
    return -(double)in->n * d * 0.5 * log(2 * ADB_PI) - in->k * C;
}

/* ---- plain C ---- */

size_t gmm_plain_work_size(const gmm_input *in)
{
    return (size_t)in->k * (in->d + 2) + 2 * (size_t)in->d;
}

/* out = Q x, Q = diag(qdiag) + L (L's strictly-lower entries column by column). */
static void qtimesx(int d, const double *restrict qdiag, const double *restrict L, const double *restrict x,
                    double *restrict out)
{
    for (int j = 0; j < d; j++) out[j] = qdiag[j] * x[j];
    for (int i = 0; i < d; i++) {
        double xi = x[i];
        for (int j = i + 1; j < d; j++) out[j] += L[j - i - 1] * xi;
        L += d - 1 - i;
    }
}

static double logsumexp(int n, const double *x)
{
    double mx = x[0], s = 0;
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) s += exp(x[i] - mx);
    return log(s) + mx;
}

double gmm_objective(const gmm_input *in, double *work)
{
    int d = in->d, k = in->k, n = in->n, icf_sz = d * (d + 1) / 2;
    double *qdiag = work, *sumq = qdiag + (size_t)k * d, *mains = sumq + k, *xc = mains + k, *qx = xc + d;
    for (int c = 0; c < k; c++) {
        const double *q = in->icf + (size_t)c * icf_sz;
        sumq[c] = 0;
        for (int j = 0; j < d; j++) sumq[c] += q[j], qdiag[(size_t)c * d + j] = exp(q[j]);
    }
    double slse = 0;
    for (int i = 0; i < n; i++) {
        const double *x = in->x + (size_t)i * d;
        for (int c = 0; c < k; c++) {
            const double *mu = in->means + (size_t)c * d;
            for (int j = 0; j < d; j++) xc[j] = x[j] - mu[j];
            qtimesx(d, qdiag + (size_t)c * d, in->icf + (size_t)c * icf_sz + d, xc, qx);
            double sq = 0;
            for (int j = 0; j < d; j++) sq += qx[j] * qx[j];
            mains[c] = in->alphas[c] + sumq[c] - 0.5 * sq;
        }
        slse += logsumexp(k, mains);
    }
    double prior = 0;
    for (int c = 0; c < k; c++) {
        const double *qd = qdiag + (size_t)c * d, *L = in->icf + (size_t)c * icf_sz + d;
        double frob = 0;
        for (int j = 0; j < d; j++) frob += qd[j] * qd[j];
        for (int j = 0; j < icf_sz - d; j++) frob += L[j] * L[j];
        prior += 0.5 * in->gamma * in->gamma * frob - in->m * sumq[c];
    }
    return gmm_constant(in) + slse - n * logsumexp(k, in->alphas) + prior;
}

/* ---- the scalar parts on the tape and on graph nodes ---- */

#define GMM_T ad_real
#define GMM_CX ad_tape *cx
#define GMM_FN(name) name##_tape
#define ADD(a, b) ad_real_add(cx, a, b)
#define SUB(a, b) ad_real_sub(cx, a, b)
#define MUL(a, b) ad_real_mul(cx, a, b)
#define MAX(a, b) ad_real_max(cx, a, b)
#define SQR(a) ad_real_square(cx, a)
#define EXP(a) ad_real_exp(cx, a)
#define LOG(a) ad_real_log(cx, a)
#define MULC(a, c) ad_real_mul_scalar(cx, a, c)
#include "adbench_gmm_body.h"

#define GMM_T adb_node
#define GMM_CX ad_graph *cx
#define GMM_FN(name) name##_graph
#define GMM_SCOPE /* shared: the replay engines record these */
#define ADD(a, b) ad_add(cx, a, b)
#define SUB(a, b) ad_sub(cx, a, b)
#define MUL(a, b) ad_mul(cx, a, b)
#define MAX(a, b) ad_max(cx, a, b)
#define SQR(a) ad_square(cx, a)
#define EXP(a) ad_exp(cx, a)
#define LOG(a) ad_log(cx, a)
#define MULC(a, c) ad_mul_scalar(cx, a, c)
#include "adbench_gmm_body.h"

struct gmm_work {
    adb_engine e;
    int np;             /* parameters */
    double *params;     /* np: alphas, means, icf as one vector */
    double *gtmp;       /* np */
    ad_tape *tape;
    ad_real *rs;        /* tape scratch: xc, qx (d), mains (k), x (d) */
    ad_graph *g;
    ad_node **nodes;    /* graph: np parameter leaves, then xc, qx, mains, x */
    ad_tensor *xt;      /* tensor: the points, viewed by a constant */
    double *mx;         /* tensor: n maxima */
    adolc_gmm *adolc;
    void *replay;       /* adbench_replay.c's state */
};

static int np_of(const gmm_input *in) { return gmm_grad_size(in); }

/* The parameters as one vector, in the gradient's order. */
static void pack_params(const gmm_input *in, double *p)
{
    int k = in->k, d = in->d, icf_sz = d * (d + 1) / 2;
    memcpy(p, in->alphas, (size_t)k * sizeof *p);
    memcpy(p + k, in->means, (size_t)k * d * sizeof *p);
    memcpy(p + k + (size_t)k * d, in->icf, (size_t)k * icf_sz * sizeof *p);
}

/* ---- tape ---- */

typedef struct {
    const gmm_input *in;
    const double *x; /* the point, or NULL for the rest */
    ad_real *rs;
} tape_user;

static ad_real tape_fn(ad_tape *t, const ad_real *p, int np, void *user)
{
    (void)np;
    tape_user *u = user;
    const gmm_input *in = u->in;
    int k = in->k, d = in->d;
    const ad_real *alphas = p, *means = p + k, *icf = p + k + (size_t)k * d;
    if (!u->x) return gmm_rest_tape(t, d, k, in->n, in->gamma, in->m, alphas, icf);
    ad_real *xc = u->rs, *qx = xc + d, *mains = qx + d, *x = mains + k;
    for (int j = 0; j < d; j++) x[j] = ad_real_const(u->x[j]);
    return gmm_term_tape(t, d, k, alphas, means, icf, x, xc, qx, mains);
}

static int eval_tape(gmm_work *w, const gmm_input *in, double *f, double *grad, char *err, size_t errlen)
{
    int np = w->np;
    tape_user u = {in, NULL, w->rs};
    double v, total = 0;
    ad_status st = ad_real_gradient(w->tape, tape_fn, np, w->params, &u, &v, grad);
    total += v;
    for (int i = 0; i < in->n && st == AD_OK; i++) {
        u.x = in->x + (size_t)i * in->d;
        st = ad_real_gradient(w->tape, tape_fn, np, w->params, &u, &v, w->gtmp);
        total += v;
        for (int j = 0; j < np; j++) grad[j] += w->gtmp[j];
    }
    if (st != AD_OK) {
        snprintf(err, errlen, "tape: ad_real_gradient failed: %s", ad_status_name(st));
        return 1;
    }
    *f = total + gmm_constant(in);
    return 0;
}

/* ---- graph ---- */

/* Records the point's term (x non-NULL) or the rest on a reset graph and sweeps it; adds the
 * parameters' gradients into grad and the value into *f. */
static int graph_part(gmm_work *w, const gmm_input *in, const double *xv, double *f, double *grad, char *err,
                      size_t errlen)
{
    ad_graph *g = w->g;
    int k = in->k, d = in->d, np = w->np;
    ad_node **p = w->nodes, **xc = p + np, **qx = xc + d, **mains = qx + d, **x = mains + k;
    ad_graph_reset(g);
    for (int j = 0; j < np; j++) p[j] = ad_var(g, NULL, w->params[j]);
    ad_node *out;
    if (xv) {
        for (int j = 0; j < d; j++) x[j] = ad_const_scalar(g, xv[j]);
        out = gmm_term_graph(g, d, k, p, p + k, p + k + (size_t)k * d, x, xc, qx, mains);
    } else {
        out = gmm_rest_graph(g, d, k, in->n, in->gamma, in->m, p, p + k + (size_t)k * d);
    }
    if (ad_backward(g, out) != AD_OK) {
        snprintf(err, errlen, "graph: %s", ad_error(g));
        return 1;
    }
    *f += ad_value(out);
    for (int j = 0; j < np; j++) grad[j] += ad_grad(p[j]);
    return 0;
}

static int eval_graph(gmm_work *w, const gmm_input *in, double *f, double *grad, char *err, size_t errlen)
{
    double total = 0;
    memset(grad, 0, (size_t)w->np * sizeof *grad);
    if (graph_part(w, in, NULL, &total, grad, err, errlen)) return 1;
    for (int i = 0; i < in->n; i++)
        if (graph_part(w, in, in->x + (size_t)i * in->d, &total, grad, err, errlen)) return 1;
    *f = total + gmm_constant(in);
    return 0;
}

/* ---- tensor ---- */

static int eval_tensor(gmm_work *w, const gmm_input *in, double *f, double *grad, char *err, size_t errlen)
{
    ad_graph *g = w->g;
    int64_t k = in->k, d = in->d, n = in->n, icf_sz = d * (d + 1) / 2;
    ad_graph_reset(g);
    ad_node *alphas = ad_var_array(g, "alphas", AD_F64, AD_SHAPE(k), in->alphas);
    ad_node *means = ad_var_array(g, "means", AD_F64, AD_SHAPE(k, d), in->means);
    ad_node *icf = ad_var_array(g, "icf", AD_F64, AD_SHAPE(k, icf_sz), in->icf);
    ad_node *X = ad_const_tensor(g, w->xt);
    ad_node *q = ad_slice(g, icf, 1, 0, d), *L = d > 1 ? ad_slice(g, icf, 1, d, icf_sz) : NULL;
    ad_node *qd = ad_exp(g, q), *sumq = ad_sum_axis(g, q, 1, false);
    /* Q_c^T row by row: row i is (0 ... 0, exp(q_i), L(i+1,i), ..., L(d-1,i)), and the
     * column-by-column layout of L makes the last part one contiguous slice */
    ad_node **pieces = w->nodes;
    int np = 0;
    int64_t off = 0;
    for (int64_t i = 0; i < d; i++) {
        if (i > 0) pieces[np++] = ad_full(g, AD_F64, AD_SHAPE(k, i), 0);
        pieces[np++] = ad_slice(g, qd, 1, i, i + 1);
        if (i + 1 < d) pieces[np++] = ad_slice(g, L, 1, off, off + d - 1 - i);
        off += d - 1 - i;
    }
    ad_node *QT = ad_reshape(g, np > 1 ? ad_concat(g, pieces, np, 1) : pieces[0], AD_SHAPE(k, d, d));
    /* Q_c (x_i - mu_c) for every c and i as rows of X Q_c^T - mu_c Q_c^T: [k, n, d] */
    ad_node *XQ = ad_matmul(g, X, QT);
    ad_node *muQ = ad_matmul(g, ad_reshape(g, means, AD_SHAPE(k, 1, d)), QT);
    ad_node *sq = ad_sum_axis(g, ad_square(g, ad_sub(g, XQ, muQ)), 2, false); /* [k, n] */
    ad_node *a = ad_reshape(g, ad_add(g, alphas, sumq), AD_SHAPE(k, 1));
    ad_node *mains = ad_sub(g, a, ad_mul_scalar(g, sq, 0.5));
    if (!mains) {
        snprintf(err, errlen, "tensor: %s", ad_error(g));
        return 1;
    }
    /* logsumexp over c, the maxima taken from the values (a recording is redone each time) */
    const double *mv = ad_node_data(mains);
    for (int64_t i = 0; i < n; i++) {
        double mx = mv[i];
        for (int64_t c = 1; c < k; c++) mx = mv[c * n + i] > mx ? mv[c * n + i] : mx;
        w->mx[i] = mx;
    }
    ad_node *mxn = ad_const(g, AD_F64, AD_SHAPE(1, n), w->mx);
    ad_node *lse = ad_add(g, ad_log(g, ad_sum_axis(g, ad_exp(g, ad_sub(g, mains, mxn)), 0, true)), mxn);
    double amx = in->alphas[0];
    for (int64_t c = 1; c < k; c++) amx = in->alphas[c] > amx ? in->alphas[c] : amx;
    ad_node *lse_a = ad_add_scalar(g, ad_log(g, ad_sum(g, ad_exp(g, ad_add_scalar(g, alphas, -amx)))), amx);
    ad_node *frob = ad_sum(g, ad_square(g, qd));
    if (L) frob = ad_add(g, frob, ad_sum(g, ad_square(g, L)));
    ad_node *prior = ad_sub(g, ad_mul_scalar(g, frob, 0.5 * in->gamma * in->gamma),
                            ad_mul_scalar(g, ad_sum(g, sumq), (double)in->m));
    ad_node *out = ad_add(g, ad_sub(g, ad_sum(g, lse), ad_mul_scalar(g, lse_a, (double)n)), prior);
    if (ad_backward(g, out) != AD_OK) {
        snprintf(err, errlen, "tensor: %s", ad_error(g));
        return 1;
    }
    *f = ad_value(out) + gmm_constant(in);
    const ad_node *leaves[3] = {alphas, means, icf};
    int64_t sizes[3] = {k, k * d, k * icf_sz};
    double *gp = grad;
    for (int l = 0; l < 3; l++) {
        const double *gd = ad_node_grad_data((ad_node *)leaves[l]);
        if (gd) memcpy(gp, gd, (size_t)sizes[l] * sizeof *gp);
        else memset(gp, 0, (size_t)sizes[l] * sizeof *gp);
        gp += sizes[l];
    }
    return 0;
}

/* ---- the workspace ---- */

gmm_work *gmm_work_new(adb_engine e, const gmm_input *in, char *err, size_t errlen)
{
    gmm_work *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->e = e;
    w->np = np_of(in);
    int d = in->d, k = in->k;
    w->params = malloc((size_t)w->np * sizeof *w->params);
    w->gtmp = malloc((size_t)w->np * sizeof *w->gtmp);
    if (!w->params || !w->gtmp) goto oom;
    pack_params(in, w->params);
    switch (e) {
    case ENG_TAPE:
        w->tape = ad_tape_new();
        w->rs = malloc((size_t)(3 * d + k) * sizeof *w->rs);
        if (!w->tape || !w->rs) goto oom;
        break;
    case ENG_GRAPH:
        w->g = ad_graph_new();
        w->nodes = malloc(((size_t)w->np + 3 * (size_t)d + (size_t)k) * sizeof *w->nodes);
        if (!w->g || !w->nodes) goto oom;
        break;
    case ENG_TENSOR:
        w->g = ad_graph_new();
        w->nodes = malloc(3 * (size_t)d * sizeof *w->nodes);
        w->mx = malloc((size_t)in->n * sizeof *w->mx);
        w->xt = ad_tensor_from(AD_F64, AD_SHAPE(in->n, d), in->x);
        if (!w->g || !w->nodes || !w->mx || !w->xt) goto oom;
        break;
    case ENG_REPLAY:
        if (!(w->replay = gmm_replay_new(in))) goto oom;
        break;
    case ENG_PROGRAM:
        if (!(w->replay = gmm_program_new(in))) goto oom;
        break;
    case ENG_ADOLC:
        if (!(w->adolc = adolc_gmm_new(in))) {
            snprintf(err, errlen, "adolc: tracing failed or out of memory");
            gmm_work_free(w);
            return NULL;
        }
        break;
    default:
        snprintf(err, errlen, "engine %d is not in this build", (int)e);
        gmm_work_free(w);
        return NULL;
    }
    return w;
oom:
    snprintf(err, errlen, "%s: out of memory for d=%d k=%d", adb_engine_name(e), in->d, in->k);
    gmm_work_free(w);
    return NULL;
}

int gmm_eval(gmm_work *w, const gmm_input *in, double *f, double *grad, char *err, size_t errlen)
{
    pack_params(in, w->params);
    switch (w->e) {
    case ENG_TAPE: return eval_tape(w, in, f, grad, err, errlen);
    case ENG_GRAPH: return eval_graph(w, in, f, grad, err, errlen);
    case ENG_TENSOR: return eval_tensor(w, in, f, grad, err, errlen);
    case ENG_REPLAY: return gmm_replay_eval(w->replay, in, w->params, f, grad, err, errlen);
    case ENG_PROGRAM: return gmm_program_eval(w->replay, in, w->params, f, grad, err, errlen);
    case ENG_ADOLC:
        if (adolc_gmm_eval(w->adolc, in, f, grad)) {
            snprintf(err, errlen, "adolc: gradient() failed");
            return 1;
        }
        *f += gmm_constant(in);
        return 0;
    default: break;
    }
    snprintf(err, errlen, "no such engine");
    return 1;
}

unsigned long long gmm_work_mallocs(const gmm_work *w)
{
    unsigned long long m = 0;
    if (w->tape) m += w->tape->mallocs;
    if (w->g) m += ad_graph_get_stats(w->g).mallocs;
    if (w->replay && w->e == ENG_REPLAY) m += gmm_replay_mallocs(w->replay); /* a program has no arena */
    return m;
}

void gmm_work_free(gmm_work *w)
{
    if (!w) return;
    free(w->params), free(w->gtmp), free(w->rs), free(w->nodes), free(w->mx);
    ad_tape_free(w->tape);
    ad_graph_free(w->g);
    ad_tensor_free(w->xt);
    if (w->adolc) adolc_gmm_free(w->adolc);
    if (w->replay) (w->e == ENG_PROGRAM ? gmm_program_free : gmm_replay_free)(w->replay);
    free(w);
}
