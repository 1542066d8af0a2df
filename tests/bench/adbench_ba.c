/* BA: the plain C residuals and the sparse Jacobian in each engine.  Each observation's two
 * residuals depend on 15 numbers (its camera's 11, its point's 3, its weight), so the Jacobian
 * is one dense 2 x 15 block per observation, written in ADBench's CSR order, and the weight
 * rows' -2 w_i.
 *
 *   tape    ad_real_jacobian per observation (recorded, then two reverse sweeps);
 *   graph   the same on scalar graph nodes, the graph reset between observations;
 *   replay  the projection recorded once per branch and replayed (adbench_replay.c);
 *   tensor  every observation at once: the 15 inputs as vectors over observations, so that
 *           the reverse sweep from the sum of all x residuals gives every block's x row (each
 *           residual depends on its own observation's inputs only), and likewise for y;
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

#define BA_T double
#define BA_CX void *cx
#define BA_FN(name) name##_plain
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define MUL(a, b) ((a) * (b))
#define DIV(a, b) ((a) / (b))
#define SQR(a) ((a) * (a))
#define SQRT(a) sqrt(a)
#define SIN(a) sin(a)
#define COS(a) cos(a)
#define RECIP(a) (1 / (a))
#define ADDC(a, c) ((a) + (c))
#define RSUBC(c, a) ((c) - (a))
#include "adbench_ba_body.h"

#define BA_T ad_real
#define BA_CX ad_tape *cx
#define BA_FN(name) name##_tape
#define ADD(a, b) ad_real_add(cx, a, b)
#define SUB(a, b) ad_real_sub(cx, a, b)
#define MUL(a, b) ad_real_mul(cx, a, b)
#define DIV(a, b) ad_real_div(cx, a, b)
#define SQR(a) ad_real_square(cx, a)
#define SQRT(a) ad_real_sqrt(cx, a)
#define SIN(a) ad_real_sin(cx, a)
#define COS(a) ad_real_cos(cx, a)
#define RECIP(a) ad_real_recip(cx, a)
#define ADDC(a, c) ad_real_add_scalar(cx, a, c)
#define RSUBC(c, a) ad_real_scalar_sub(cx, c, a)
#include "adbench_ba_body.h"

/* graph nodes: scalars (graph, replay) or vectors over observations (tensor) */
#define BA_T adb_node
#define BA_CX ad_graph *cx
#define BA_FN(name) name##_graph
#define BA_SCOPE /* shared: the replay engines record it */
#define ADD(a, b) ad_add(cx, a, b)
#define SUB(a, b) ad_sub(cx, a, b)
#define MUL(a, b) ad_mul(cx, a, b)
#define DIV(a, b) ad_div(cx, a, b)
#define SQR(a) ad_square(cx, a)
#define SQRT(a) ad_sqrt(cx, a)
#define SIN(a) ad_sin(cx, a)
#define COS(a) ad_cos(cx, a)
#define RECIP(a) ad_recip(cx, a)
#define ADDC(a, c) ad_add_scalar(cx, a, c)
#define RSUBC(c, a) ad_sub(cx, ad_const_scalar(cx, c), a)
#include "adbench_ba_body.h"

bool adb_zero_theta(const double *cam)
{
    return cam[0] * cam[0] + cam[1] * cam[1] + cam[2] * cam[2] == 0;
}

/* Observation i's 15 inputs: camera, point, weight. */
static void gather(const ba_input *in, int i, double *x)
{
    memcpy(x, in->cams + 11 * (size_t)in->obs[2 * i], 11 * sizeof *x);
    memcpy(x + 11, in->X + 3 * (size_t)in->obs[2 * i + 1], 3 * sizeof *x);
    x[14] = in->w[i];
}

void ba_objective(const ba_input *in, double *reproj, double *wres)
{
    for (int i = 0; i < in->p; i++) {
        const double *cam = in->cams + 11 * (size_t)in->obs[2 * i], *X = in->X + 3 * (size_t)in->obs[2 * i + 1];
        ba_residual_plain(NULL, cam, X, in->w[i], in->feats[2 * i], in->feats[2 * i + 1], adb_zero_theta(cam),
                          reproj + 2 * (size_t)i);
    }
    for (int i = 0; i < in->p; i++) wres[i] = 1 - in->w[i] * in->w[i];
}

struct ba_work {
    adb_engine e;
    ad_tape *tape;
    ad_graph *g;
    double *cols;  /* tensor: 15 gathered inputs by observation of a group, 15 x p */
    double *feat;  /* tensor: 2 x p */
    int *idx;      /* tensor: the observations of each branch, p */
    void *replay;
    adolc_ba *adolc;
};

/* ---- tape ---- */

typedef struct {
    double fx, fy;
    bool zero;
} tape_user;

static void tape_fn(ad_tape *t, const ad_real *x, int n, ad_real *y, int m, void *user)
{
    (void)n, (void)m;
    tape_user *u = user;
    ba_residual_tape(t, x, x + 11, x[14], ad_real_const(u->fx), ad_real_const(u->fy), u->zero, y);
}

static int eval_tape(ba_work *w, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    for (int i = 0; i < in->p; i++) {
        double x[15];
        gather(in, i, x);
        tape_user u = {in->feats[2 * i], in->feats[2 * i + 1], adb_zero_theta(x)};
        ad_status st = ad_real_jacobian(w->tape, tape_fn, 15, x, &u, 2, reproj + 2 * (size_t)i, vals + 30 * (size_t)i);
        if (st != AD_OK) {
            snprintf(err, errlen, "tape: ad_real_jacobian failed at observation %d: %s", i, ad_status_name(st));
            return 1;
        }
    }
    return 0;
}

/* ---- graph ---- */

static int eval_graph(ba_work *w, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    ad_graph *g = w->g;
    for (int i = 0; i < in->p; i++) {
        double x[15];
        gather(in, i, x);
        ad_graph_reset(g);
        ad_node *v[15], *out[2];
        for (int j = 0; j < 15; j++) v[j] = ad_var(g, NULL, x[j]);
        ba_residual_graph(g, v, v + 11, v[14], ad_const_scalar(g, in->feats[2 * i]),
                          ad_const_scalar(g, in->feats[2 * i + 1]), adb_zero_theta(x), out);
        for (int r = 0; r < 2; r++) {
            if (r) ad_zero_grad(g);
            if (ad_backward(g, out[r]) != AD_OK) {
                snprintf(err, errlen, "graph: observation %d: %s", i, ad_error(g));
                return 1;
            }
            reproj[2 * (size_t)i + r] = ad_value(out[r]);
            for (int j = 0; j < 15; j++) vals[30 * (size_t)i + 15 * r + j] = ad_grad(v[j]);
        }
    }
    return 0;
}

/* ---- tensor ---- */

/* Observations per tensor-form recording: a chunk's ~70 vectors and their gradients (~1 MB at
 * 1024) stay in cache; a whole BA file's (~40 MB) would not. */
#ifndef BA_CHUNK
#define BA_CHUNK 1024
#endif

/* One branch's observations idx[0..np-1], vectorised. */
static int tensor_group(ba_work *w, const ba_input *in, const int *idx, int np, bool zero, double *reproj,
                        double *vals, char *err, size_t errlen)
{
    ad_graph *g = w->g;
    double *cols = w->cols, *feat = w->feat;
    for (int t = 0; t < np; t++) {
        double x[15];
        gather(in, idx[t], x);
        for (int j = 0; j < 15; j++) cols[(size_t)j * np + t] = x[j];
        feat[t] = in->feats[2 * idx[t]], feat[np + t] = in->feats[2 * idx[t] + 1];
    }
    ad_node *v[15], *out[2];
    for (int j = 0; j < 15; j++) v[j] = ad_var_array(g, NULL, AD_F64, AD_SHAPE(np), cols + (size_t)j * np);
    ad_node *fx = ad_const(g, AD_F64, AD_SHAPE(np), feat), *fy = ad_const(g, AD_F64, AD_SHAPE(np), feat + np);
    ba_residual_graph(g, v, v + 11, v[14], fx, fy, zero, out);
    for (int r = 0; r < 2; r++) {
        if (r) ad_zero_grad(g);
        if (ad_backward(g, ad_sum(g, out[r])) != AD_OK) {
            snprintf(err, errlen, "tensor: %s", ad_error(g));
            return 1;
        }
        const double *val = ad_node_data(out[r]), *gd[15];
        for (int j = 0; j < 15; j++) gd[j] = ad_node_grad_data(v[j]);
        for (int t = 0; t < np; t++) {
            double *dst = vals + 30 * (size_t)idx[t] + 15 * r;
            reproj[2 * (size_t)idx[t] + r] = val[t];
            for (int j = 0; j < 15; j++) dst[j] = gd[j] ? gd[j][t] : 0;
        }
    }
    return 0;
}

static int eval_tensor(ba_work *w, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    int p = in->p, na = 0, nb = 0;
    /* the branch taken: theta^2 != 0 from the front of idx, == 0 from the back */
    for (int i = 0; i < p; i++) {
        if (adb_zero_theta(in->cams + 11 * (size_t)in->obs[2 * i])) w->idx[p - 1 - nb++] = i;
        else w->idx[na++] = i;
    }
    /* in chunks, so that a chunk's values and gradients stay in cache through both sweeps */
    for (int s = 0; s < p; s += BA_CHUNK) {
        int end = s + BA_CHUNK < p ? s + BA_CHUNK : p;
        if (s < na && end > na) end = na; /* a chunk holds one branch */
        ad_graph_reset(w->g);
        if (tensor_group(w, in, w->idx + s, end - s, s >= na, reproj, vals, err, errlen)) return 1;
        s = end - BA_CHUNK;
    }
    return 0;
}

/* ---- the workspace ---- */

ba_work *ba_work_new(adb_engine e, const ba_input *in, char *err, size_t errlen)
{
    ba_work *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->e = e;
    switch (e) {
    case ENG_TAPE:
        if (!(w->tape = ad_tape_new())) goto oom;
        break;
    case ENG_GRAPH:
        if (!(w->g = ad_graph_new())) goto oom;
        break;
    case ENG_TENSOR:
        w->g = ad_graph_new();
        w->cols = malloc(15 * (size_t)BA_CHUNK * sizeof *w->cols);
        w->feat = malloc(2 * (size_t)BA_CHUNK * sizeof *w->feat);
        w->idx = malloc((size_t)in->p * sizeof *w->idx);
        if (!w->g || !w->cols || !w->feat || !w->idx) goto oom;
        break;
    case ENG_REPLAY:
        if (!(w->replay = ba_replay_new(in))) goto oom;
        break;
    case ENG_PROGRAM:
        if (!(w->replay = ba_program_new(in))) goto oom;
        break;
    case ENG_ADOLC:
        if (!(w->adolc = adolc_ba_new(in))) {
            snprintf(err, errlen, "adolc: tracing failed or out of memory");
            ba_work_free(w);
            return NULL;
        }
        break;
    default:
        snprintf(err, errlen, "engine %d is not in this build", (int)e);
        ba_work_free(w);
        return NULL;
    }
    return w;
oom:
    snprintf(err, errlen, "%s: out of memory for p=%d", adb_engine_name(e), in->p);
    ba_work_free(w);
    return NULL;
}

int ba_eval(ba_work *w, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    int st;
    switch (w->e) {
    case ENG_TAPE: st = eval_tape(w, in, reproj, vals, err, errlen); break;
    case ENG_GRAPH: st = eval_graph(w, in, reproj, vals, err, errlen); break;
    case ENG_TENSOR: st = eval_tensor(w, in, reproj, vals, err, errlen); break;
    case ENG_REPLAY: st = ba_replay_eval(w->replay, in, reproj, vals, err, errlen); break;
    case ENG_PROGRAM: st = ba_program_eval(w->replay, in, reproj, vals, err, errlen); break;
    case ENG_ADOLC:
        st = adolc_ba_eval(w->adolc, in, reproj, vals);
        if (st) snprintf(err, errlen, "adolc: jacobian() failed");
        break;
    default: snprintf(err, errlen, "no such engine"); return 1;
    }
    if (st) return 1;
    /* the weight rows: d(1 - w_i^2)/dw_i */
    double *wv = vals + 30 * (size_t)in->p;
    for (int i = 0; i < in->p; i++) wv[i] = -2 * in->w[i];
    return 0;
}

unsigned long long ba_work_mallocs(const ba_work *w)
{
    unsigned long long m = 0;
    if (w->tape) m += w->tape->mallocs;
    if (w->g) m += ad_graph_get_stats(w->g).mallocs;
    if (w->replay && w->e == ENG_REPLAY) m += ba_replay_mallocs(w->replay); /* a program has no arena */
    return m;
}

void ba_work_free(ba_work *w)
{
    if (!w) return;
    ad_tape_free(w->tape);
    ad_graph_free(w->g);
    free(w->cols), free(w->feat), free(w->idx);
    if (w->replay) (w->e == ENG_PROGRAM ? ba_program_free : ba_replay_free)(w->replay);
    if (w->adolc) adolc_ba_free(w->adolc);
    free(w);
}
