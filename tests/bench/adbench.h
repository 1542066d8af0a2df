/* adbench: ADBench's GMM and bundle-adjustment (BA) objectives and their derivatives, in each
 * of backprop's engines and in ADOL-C, against a plain C evaluation of the objective.
 *
 * The input formats and the objectives are ADBench's (microsoft/ADBench, src/cpp/shared):
 * see the readers in adbench_io.c.  Each engine has a workspace made once per input
 * (allocations happen there and in the first evaluation, never in later ones) and an
 * evaluation that fills the objective and its derivative:
 *
 *   GMM: the objective value and its gradient with respect to (alphas, means, icf), flattened
 *        in ADBench's order (gmm_grad_size numbers);
 *   BA:  the reprojection residuals (2p) and the values of the sparse Jacobian (31p numbers in
 *        ADBench's CSR order: per observation two rows of 15, then p weight rows of 1).
 *
 * Errors are messages: an evaluation that fails returns non-zero and writes why into err. */
#ifndef ADBENCH_H
#define ADBENCH_H
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ADBench's pi (defs.h), which its constants use. */
#define ADB_PI 3.14159265359

typedef enum { ENG_TAPE, ENG_GRAPH, ENG_REPLAY, ENG_PROGRAM, ENG_TENSOR, ENG_ADOLC, ENG_COUNT } adb_engine;

/* An engine's name ("tape", ...). */
const char *adb_engine_name(adb_engine e);
/* Whether this build has the engine (ADOL-C only when meson found it). */
bool adb_engine_available(adb_engine e);

/* ---- GMM ---- */
typedef struct {
    int d, k, n;    /* dimension, components, points */
    double *alphas; /* k */
    double *means;  /* k x d */
    double *icf;    /* k x d(d+1)/2: q (d), then L's strictly-lower entries column by column */
    double *x;      /* n x d */
    double gamma;   /* Wishart prior */
    int m;
} gmm_input;

/* Reads a GMM file; on failure returns non-zero with the reason in err. */
int gmm_read(const char *path, gmm_input *in, char *err, size_t errlen);
void gmm_free(gmm_input *in);
/* The number of parameters: k + k d + k d(d+1)/2. */
int gmm_grad_size(const gmm_input *in);
/* The parts of the objective that do not depend on the parameters: -(n d/2) log(2 pi) - k C. */
double gmm_constant(const gmm_input *in);

/* The plain C objective (ADBench's gmm_objective in double).  work holds gmm_plain_work_size
 * doubles. */
size_t gmm_plain_work_size(const gmm_input *in);
double gmm_objective(const gmm_input *in, double *work);

typedef struct gmm_work gmm_work;
/* An engine's workspace for this input's sizes; NULL with err set on failure. */
gmm_work *gmm_work_new(adb_engine e, const gmm_input *in, char *err, size_t errlen);
/* Objective and gradient (gmm_grad_size numbers). */
int gmm_eval(gmm_work *w, const gmm_input *in, double *f, double *grad, char *err, size_t errlen);
/* Allocations the engine's own memory (graph arena, tape) has made so far: must not grow
 * after the first evaluation. */
unsigned long long gmm_work_mallocs(const gmm_work *w);
void gmm_work_free(gmm_work *w);

/* ---- BA ---- */
typedef struct {
    int n, m, p;     /* cameras, points, observations */
    double *cams;    /* n x 11: r (3), C (3), f, u0, v0, k1, k2 */
    double *X;       /* m x 3 */
    double *w;       /* p */
    double *feats;   /* p x 2 */
    int *obs;        /* p x 2: camera, point */
} ba_input;

/* Reads a BA file (one camera, point, weight and feature, copied as ADBench's reader does). */
int ba_read(const char *path, ba_input *in, char *err, size_t errlen);
void ba_free(ba_input *in);
/* 31 p: the Jacobian's nonzeros. */
long long ba_nnz(const ba_input *in);

/* The plain C objective: reprojection residuals (2p) and weight residuals (p). */
void ba_objective(const ba_input *in, double *reproj, double *wres);

typedef struct ba_work ba_work;
ba_work *ba_work_new(adb_engine e, const ba_input *in, char *err, size_t errlen);
/* Reprojection residuals (2p) and the Jacobian's values (ba_nnz, CSR order). */
int ba_eval(ba_work *w, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen);
unsigned long long ba_work_mallocs(const ba_work *w);
void ba_work_free(ba_work *w);

/* Writes the Jacobian as ADBench's write_J_sparse does, through a temporary file renamed into
 * place; non-zero with err set on failure. */
int ba_write_jacobian(const char *path, const ba_input *in, const double *vals, char *err, size_t errlen);
/* Writes f then the gradient, one %.17g per line, the same way. */
int gmm_write(const char *path, double f, const double *grad, int n, char *err, size_t errlen);

/* The objectives on scalar graph nodes, defined once by the graph engine (adbench_gmm.c,
 * adbench_ba.c, from the body headers) and recorded once by the replay engines. */
struct ad_graph;
struct ad_node;
struct ad_node *gmm_term_graph(struct ad_graph *cx, int d, int k, struct ad_node *const *alphas,
                               struct ad_node *const *means, struct ad_node *const *icf, struct ad_node *const *x,
                               struct ad_node **xc, struct ad_node **qx, struct ad_node **mains);
struct ad_node *gmm_rest_graph(struct ad_graph *cx, int d, int k, int n, double gamma, int m,
                               struct ad_node *const *alphas, struct ad_node *const *icf);
void ba_residual_graph(struct ad_graph *cx, struct ad_node *const *cam, struct ad_node *const *X, struct ad_node *w,
                       struct ad_node *fx, struct ad_node *fy, bool zero_theta, struct ad_node **out);
/* Whether camera cam takes BA's theta^2 == 0 branch (ADBench's test, in its order). */
bool adb_zero_theta(const double *cam);

/* ---- the replay engine (adbench_replay.c): its state behind the workspaces above ---- */
extern const bool adb_have_replay; /* false while the library has no ad_replay */
void *gmm_replay_new(const gmm_input *in);
int gmm_replay_eval(void *r, const gmm_input *in, const double *params, double *f, double *grad, char *err,
                    size_t errlen);
unsigned long long gmm_replay_mallocs(const void *r);
void gmm_replay_free(void *r);
void *ba_replay_new(const ba_input *in);
int ba_replay_eval(void *r, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen);
unsigned long long ba_replay_mallocs(const void *r);
void ba_replay_free(void *r);
/* ---- the same recordings compiled (ad_program), in adbench_replay.c ---- */
void *gmm_program_new(const gmm_input *in);
int gmm_program_eval(void *r, const gmm_input *in, const double *params, double *f, double *grad, char *err,
                     size_t errlen);
void gmm_program_free(void *r);
void *ba_program_new(const ba_input *in);
int ba_program_eval(void *r, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen);
void ba_program_free(void *r);

/* ---- ADOL-C (adbench_adolc.cc; only with HAVE_ADOLC) ----
 * Traces are made once per workspace (one point's term and the rest for GMM, one
 * observation's projection per branch for BA); evaluations replay them with ADOL-C's drivers
 * (gradient, jacobian).  Each returns non-zero on failure. */
typedef struct adolc_gmm adolc_gmm;
adolc_gmm *adolc_gmm_new(const gmm_input *in);
int adolc_gmm_eval(adolc_gmm *a, const gmm_input *in, double *f, double *grad);
void adolc_gmm_free(adolc_gmm *a);
typedef struct adolc_ba adolc_ba;
adolc_ba *adolc_ba_new(const ba_input *in);
int adolc_ba_eval(adolc_ba *a, const ba_input *in, double *reproj, double *vals);
void adolc_ba_free(adolc_ba *a);

#ifdef __cplusplus
}
#endif
#endif
