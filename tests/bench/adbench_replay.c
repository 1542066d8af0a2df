/* The replay engine: a scalar graph recorded once and replayed at new leaf values (ad_replay).
 *
 * GMM: one point's term recorded with every parameter as a variable and the point's
 * coordinates as constants; each evaluation sets the parameters, then for every point sets the
 * coordinates, replays and sweeps backward, the variables' gradients accumulating across the
 * sweeps.  The rest (alphas' logsumexp, the prior) is a second graph, replayed once.  The
 * logsumexp's maximum is an ad_max node, so a replay decides it again.
 *
 * BA: one observation's projection recorded once per branch of theta^2 == 0 (a C `if` a replay
 * could not see, so the branch picks the graph); each observation sets its 15 inputs and its
 * feature, replays, and takes its 2 x 15 block by two reverse sweeps (15 forward sweeps would
 * be the alternative: two are fewer). */
#include "adbench.h"
#include "ad.h"
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

const bool adb_have_replay = true;

/* ---- GMM ---- */

typedef struct {
    ad_graph *g, *gr;  /* the term, the rest */
    int np, d;
    ad_node **p, **pr; /* the parameters' leaves in each graph */
    ad_node **x;       /* the point's coordinates */
    ad_node *term, *rest;
} gmm_replay;

void gmm_replay_free(void *r)
{
    gmm_replay *s = r;
    if (!s) return;
    ad_graph_free(s->g), ad_graph_free(s->gr);
    free(s->p), free(s->pr), free(s->x);
    free(s);
}

void *gmm_replay_new(const gmm_input *in)
{
    gmm_replay *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    int d = in->d, k = in->k, np = gmm_grad_size(in);
    s->np = np, s->d = d;
    s->g = ad_graph_new(), s->gr = ad_graph_new();
    s->p = malloc((size_t)np * sizeof *s->p), s->pr = malloc((size_t)np * sizeof *s->pr);
    s->x = malloc((size_t)d * sizeof *s->x);
    ad_node **scratch = malloc((2 * (size_t)d + (size_t)k) * sizeof *scratch);
    if (!s->g || !s->gr || !s->p || !s->pr || !s->x || !scratch) goto fail;
    const double *src[3] = {in->alphas, in->means, in->icf};
    int sizes[3] = {k, k * d, k * d * (d + 1) / 2}, j = 0;
    for (int part = 0; part < 3; part++)
        for (int i = 0; i < sizes[part]; i++, j++) {
            s->p[j] = ad_var(s->g, NULL, src[part][i]);
            s->pr[j] = ad_var(s->gr, NULL, src[part][i]);
        }
    for (int i = 0; i < d; i++) s->x[i] = ad_const_scalar(s->g, in->x[i]);
    s->term = gmm_term_graph(s->g, d, k, s->p, s->p + k, s->p + k + (size_t)k * d, s->x, scratch, scratch + d,
                              scratch + 2 * d);
    s->rest = gmm_rest_graph(s->gr, d, k, in->n, in->gamma, in->m, s->pr, s->pr + k + (size_t)k * d);
    free(scratch);
    if (!s->term || !s->rest) goto fail;
    return s;
fail:
    free(scratch);
    gmm_replay_free(s);
    return NULL;
}

int gmm_replay_eval(void *r, const gmm_input *in, const double *params, double *f, double *grad, char *err,
                    size_t errlen)
{
    gmm_replay *s = r;
    ad_graph *g = s->g, *gr = s->gr;
    int np = s->np, d = s->d;
    for (int j = 0; j < np; j++) ad_set_value(g, s->p[j], params[j]), ad_set_value(gr, s->pr[j], params[j]);
    ad_zero_grad(g), ad_zero_grad(gr);
    if (ad_replay(gr) != AD_OK || ad_backward(gr, s->rest) != AD_OK) {
        snprintf(err, errlen, "replay: %s", ad_error(gr));
        return 1;
    }
    double total = ad_value(s->rest);
    for (int i = 0; i < in->n; i++) {
        const double *x = in->x + (size_t)i * d;
        for (int j = 0; j < d; j++) ad_set_value(g, s->x[j], x[j]);
        if (ad_replay(g) != AD_OK || ad_backward(g, s->term) != AD_OK) {
            snprintf(err, errlen, "replay: point %d: %s", i, ad_error(g));
            return 1;
        }
        total += ad_value(s->term);
    }
    for (int j = 0; j < np; j++) grad[j] = ad_grad(s->p[j]) + ad_grad(s->pr[j]);
    *f = total + gmm_constant(in);
    return 0;
}

unsigned long long gmm_replay_mallocs(const void *r)
{
    const gmm_replay *s = r;
    return ad_graph_get_stats(s->g).mallocs + ad_graph_get_stats(s->gr).mallocs;
}

/* ---- BA ---- */

typedef struct {
    ad_graph *g[2];      /* theta^2 != 0, == 0 */
    ad_node *v[2][17];   /* 15 inputs, then the feature */
    ad_node *out[2][2];
} ba_replay;

void ba_replay_free(void *r)
{
    ba_replay *s = r;
    if (!s) return;
    ad_graph_free(s->g[0]), ad_graph_free(s->g[1]);
    free(s);
}

void *ba_replay_new(const ba_input *in)
{
    ba_replay *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    for (int b = 0; b < 2; b++) {
        ad_graph *g = s->g[b] = ad_graph_new();
        if (!g) goto fail;
        double x[17];
        memcpy(x, in->cams, 11 * sizeof *x);
        memcpy(x + 11, in->X, 3 * sizeof *x);
        x[14] = in->w[0], x[15] = in->feats[0], x[16] = in->feats[1];
        /* values in the branch recorded (a replay overwrites them) */
        if (b) x[0] = x[1] = x[2] = 0;
        else if (adb_zero_theta(x)) x[0] = 0.1, x[1] = 0.2, x[2] = 0.3;
        for (int j = 0; j < 15; j++) s->v[b][j] = ad_var(g, NULL, x[j]);
        s->v[b][15] = ad_const_scalar(g, x[15]), s->v[b][16] = ad_const_scalar(g, x[16]);
        ba_residual_graph(g, s->v[b], s->v[b] + 11, s->v[b][14], s->v[b][15], s->v[b][16], b == 1, s->out[b]);
        if (!s->out[b][0] || !s->out[b][1]) goto fail;
    }
    return s;
fail:
    ba_replay_free(s);
    return NULL;
}

int ba_replay_eval(void *r, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    ba_replay *s = r;
    for (int i = 0; i < in->p; i++) {
        const double *cam = in->cams + 11 * (size_t)in->obs[2 * i], *X = in->X + 3 * (size_t)in->obs[2 * i + 1];
        int b = adb_zero_theta(cam);
        ad_graph *g = s->g[b];
        ad_node **v = s->v[b];
        for (int j = 0; j < 11; j++) ad_set_value(g, v[j], cam[j]);
        for (int j = 0; j < 3; j++) ad_set_value(g, v[11 + j], X[j]);
        ad_set_value(g, v[14], in->w[i]);
        ad_set_value(g, v[15], in->feats[2 * i]), ad_set_value(g, v[16], in->feats[2 * i + 1]);
        if (ad_replay(g) != AD_OK) goto fail;
        for (int row = 0; row < 2; row++) {
            ad_zero_grad(g);
            if (ad_backward(g, s->out[b][row]) != AD_OK) goto fail;
            reproj[2 * (size_t)i + row] = ad_value(s->out[b][row]);
            double *dst = vals + 30 * (size_t)i + 15 * row;
            for (int j = 0; j < 15; j++) dst[j] = ad_grad(v[j]);
        }
        continue;
    fail:
        snprintf(err, errlen, "replay: observation %d: %s", i, ad_error(g));
        return 1;
    }
    return 0;
}

unsigned long long ba_replay_mallocs(const void *r)
{
    const ba_replay *s = r;
    return ad_graph_get_stats(s->g[0]).mallocs + ad_graph_get_stats(s->g[1]).mallocs;
}

/* ---- the same recordings compiled (ad_program) ----
 *
 * GMM: the term's program takes the parameters and the point's coordinates as inputs (the
 * coordinates' gradients are ignored); each point is one evaluation, its gradient added up.
 * BA: one program per branch, two roots, 17 inputs (the feature's two are ignored). */

typedef struct {
    ad_program *term, *rest;
    ad_program_ws *wt, *wr;
    int np, d;
    double *in, *g; /* the term's inputs, its gradient */
} gmm_program;

void gmm_program_free(void *r)
{
    gmm_program *s = r;
    if (!s) return;
    ad_program_ws_free(s->wt), ad_program_ws_free(s->wr);
    ad_program_free(s->term), ad_program_free(s->rest);
    free(s->in), free(s->g);
    free(s);
}

void *gmm_program_new(const gmm_input *in)
{
    gmm_replay *rec = gmm_replay_new(in);
    gmm_program *s = calloc(1, sizeof *s);
    ad_node **leaves = rec ? malloc(((size_t)rec->np + (size_t)rec->d) * sizeof *leaves) : NULL;
    if (!rec || !s || !leaves) goto fail;
    s->np = rec->np, s->d = rec->d;
    memcpy(leaves, rec->p, (size_t)rec->np * sizeof *leaves);
    memcpy(leaves + rec->np, rec->x, (size_t)rec->d * sizeof *leaves);
    s->term = ad_program_new(rec->g, 1, &rec->term, rec->np + rec->d, leaves);
    s->rest = ad_program_new(rec->gr, 1, &rec->rest, rec->np, rec->pr);
    s->wt = s->term ? ad_program_ws_new(s->term) : NULL;
    s->wr = s->rest ? ad_program_ws_new(s->rest) : NULL;
    s->in = malloc(((size_t)s->np + (size_t)s->d) * sizeof *s->in);
    s->g = malloc(((size_t)s->np + (size_t)s->d) * sizeof *s->g);
    if (!s->wt || !s->wr || !s->in || !s->g) goto fail;
    free(leaves);
    gmm_replay_free(rec); /* the programs stand alone */
    return s;
fail:
    if (rec && (ad_error(rec->g) || ad_error(rec->gr)))
        fprintf(stderr, "adbench: program: %s\n", ad_error(rec->g) ? ad_error(rec->g) : ad_error(rec->gr));
    free(leaves);
    gmm_replay_free(rec);
    gmm_program_free(s);
    return NULL;
}

int gmm_program_eval(void *r, const gmm_input *in, const double *params, double *f, double *grad, char *err,
                     size_t errlen)
{
    gmm_program *s = r;
    int np = s->np, d = s->d;
    double total;
    if (ad_program_gradient(s->rest, s->wr, params, &total, grad) != AD_OK) {
        snprintf(err, errlen, "program: %s", ad_program_ws_error(s->wr));
        return 1;
    }
    memcpy(s->in, params, (size_t)np * sizeof *s->in);
    for (int i = 0; i < in->n; i++) {
        memcpy(s->in + np, in->x + (size_t)i * d, (size_t)d * sizeof *s->in);
        double v;
        if (ad_program_gradient(s->term, s->wt, s->in, &v, s->g) != AD_OK) {
            snprintf(err, errlen, "program: point %d: %s", i, ad_program_ws_error(s->wt));
            return 1;
        }
        total += v;
        for (int j = 0; j < np; j++) grad[j] += s->g[j];
    }
    *f = total + gmm_constant(in);
    return 0;
}

typedef struct {
    ad_program *p[2];
    ad_program_ws *w[2];
} ba_program;

void ba_program_free(void *r)
{
    ba_program *s = r;
    if (!s) return;
    for (int b = 0; b < 2; b++) ad_program_ws_free(s->w[b]), ad_program_free(s->p[b]);
    free(s);
}

void *ba_program_new(const ba_input *in)
{
    ba_replay *rec = ba_replay_new(in);
    ba_program *s = calloc(1, sizeof *s);
    if (!rec || !s) goto fail;
    for (int b = 0; b < 2; b++) {
        s->p[b] = ad_program_new(rec->g[b], 2, rec->out[b], 17, rec->v[b]);
        if (!s->p[b] || !(s->w[b] = ad_program_ws_new(s->p[b]))) goto fail;
    }
    ba_replay_free(rec);
    return s;
fail:
    if (rec && (ad_error(rec->g[0]) || ad_error(rec->g[1])))
        fprintf(stderr, "adbench: program: %s\n", ad_error(rec->g[0]) ? ad_error(rec->g[0]) : ad_error(rec->g[1]));
    ba_replay_free(rec);
    ba_program_free(s);
    return NULL;
}

int ba_program_eval(void *r, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    ba_program *s = r;
    for (int i = 0; i < in->p; i++) {
        const double *cam = in->cams + 11 * (size_t)in->obs[2 * i], *X = in->X + 3 * (size_t)in->obs[2 * i + 1];
        int b = adb_zero_theta(cam);
        double x[17], J[34];
        memcpy(x, cam, 11 * sizeof *x);
        memcpy(x + 11, X, 3 * sizeof *x);
        x[14] = in->w[i], x[15] = in->feats[2 * i], x[16] = in->feats[2 * i + 1];
        if (ad_program_jacobian(s->p[b], s->w[b], x, reproj + 2 * (size_t)i, J) != AD_OK) {
            snprintf(err, errlen, "program: observation %d: %s", i, ad_program_ws_error(s->w[b]));
            return 1;
        }
        memcpy(vals + 30 * (size_t)i, J, 15 * sizeof *J);
        memcpy(vals + 30 * (size_t)i + 15, J + 17, 15 * sizeof *J);
    }
    return 0;
}
