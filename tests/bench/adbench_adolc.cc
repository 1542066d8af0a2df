// ADOL-C's side of adbench: the same GMM and BA code (adbench_gmm_body.h, adbench_ba_body.h)
// traced with adouble, then evaluated by ADOL-C's drivers, zos_forward for the values and
// fos_reverse / fov_reverse for the derivatives.  Traced once per workspace, as ADOL-C is
// meant to be used: GMM's one point's term (the point's coordinates as independents too, so
// one trace serves every point) and the rest; BA's one observation per branch of theta^2 == 0
// (the feature as two more independents).  The buffers hold whole traces, so ADOL-C writes no
// tape files.  Built only when meson finds ADOL-C.
#include "adbench.h"
#include <adolc/adolc.h>
#include <cmath>
#include <cstring>
#include <vector>

#define GMM_T adouble
#define GMM_CX void *cx
#define GMM_FN(name) name##_adolc
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define MUL(a, b) ((a) * (b))
#define MAX(a, b) fmax(a, b)
#define SQR(a) ((a) * (a))
#define EXP(a) exp(a)
#define LOG(a) log(a)
#define MULC(a, c) ((a) * (c))
#include "adbench_gmm_body.h"

#define BA_T adouble
#define BA_CX void *cx
#define BA_FN(name) name##_adolc
#define ADD(a, b) ((a) + (b))
#define SUB(a, b) ((a) - (b))
#define MUL(a, b) ((a) * (b))
#define SQR(a) ((a) * (a))
#define DIV(a, b) ((a) / (b))
#define SQRT(a) sqrt(a)
#define SIN(a) sin(a)
#define COS(a) cos(a)
#define RECIP(a) (1 / (a))
#define ADDC(a, c) ((a) + (c))
#define RSUBC(c, a) ((c) - (a))
#include "adbench_ba_body.h"

namespace {
short next_tag = 1;

unsigned buffer_size(size_t ops)
{
    size_t b = 16 * ops + 65536;
    return b > 2000000000u ? 2000000000u : static_cast<unsigned>(b);
}
} // namespace

struct adolc_gmm {
    short tag_term, tag_rest;
    int np, d;
    std::vector<double> in, g;
};

adolc_gmm *adolc_gmm_new(const gmm_input *in)
{
    adolc_gmm *a = new adolc_gmm;
    int d = in->d, k = in->k, np = gmm_grad_size(in);
    a->np = np, a->d = d;
    a->tag_term = next_tag++, a->tag_rest = next_tag++;
    a->in.resize(static_cast<size_t>(np + d));
    a->g.resize(static_cast<size_t>(np + d));
    std::memcpy(a->in.data(), in->alphas, static_cast<size_t>(k) * sizeof(double));
    std::memcpy(a->in.data() + k, in->means, static_cast<size_t>(k) * d * sizeof(double));
    std::memcpy(a->in.data() + k + static_cast<size_t>(k) * d, in->icf,
                static_cast<size_t>(k) * d * (d + 1) / 2 * sizeof(double));
    std::memcpy(a->in.data() + np, in->x, static_cast<size_t>(d) * sizeof(double));
    unsigned buf = buffer_size(static_cast<size_t>(k) * (static_cast<size_t>(d) * d + 4 * static_cast<size_t>(d) + 8));
    double y;
    {
        trace_on(a->tag_term, 0, buf, buf, buf, buf);
        std::vector<adouble> p(static_cast<size_t>(np + d)), xc(static_cast<size_t>(d)), qx(static_cast<size_t>(d)),
            mains(static_cast<size_t>(k));
        for (int i = 0; i < np + d; i++) p[static_cast<size_t>(i)] <<= a->in[static_cast<size_t>(i)];
        adouble f = gmm_term_adolc(nullptr, d, k, &p[0], &p[static_cast<size_t>(k)],
                                   &p[static_cast<size_t>(k) + static_cast<size_t>(k) * d], &p[static_cast<size_t>(np)],
                                   xc.data(), qx.data(), mains.data());
        f >>= y;
        trace_off();
    }
    {
        trace_on(a->tag_rest, 0, buf, buf, buf, buf);
        std::vector<adouble> p(static_cast<size_t>(np));
        for (int i = 0; i < np; i++) p[static_cast<size_t>(i)] <<= a->in[static_cast<size_t>(i)];
        adouble f = gmm_rest_adolc(nullptr, d, k, in->n, in->gamma, in->m, &p[0],
                                   &p[static_cast<size_t>(k) + static_cast<size_t>(k) * d]);
        f >>= y;
        trace_off();
    }
    return a;
}

int adolc_gmm_eval(adolc_gmm *a, const gmm_input *in, double *f, double *grad)
{
    int d = in->d, k = in->k, np = a->np;
    double *x = a->in.data(), one = 1, y;
    std::memcpy(x, in->alphas, static_cast<size_t>(k) * sizeof(double));
    std::memcpy(x + k, in->means, static_cast<size_t>(k) * d * sizeof(double));
    std::memcpy(x + k + static_cast<size_t>(k) * d, in->icf, static_cast<size_t>(k) * d * (d + 1) / 2 * sizeof(double));
    if (zos_forward(a->tag_rest, 1, np, 1, x, &y) < 0 || fos_reverse(a->tag_rest, 1, np, &one, grad) < 0) return 1;
    *f = y;
    for (int i = 0; i < in->n; i++) {
        std::memcpy(x + np, in->x + static_cast<size_t>(i) * d, static_cast<size_t>(d) * sizeof(double));
        if (zos_forward(a->tag_term, 1, np + d, 1, x, &y) < 0 ||
            fos_reverse(a->tag_term, 1, np + d, &one, a->g.data()) < 0)
            return 1;
        *f += y;
        for (int j = 0; j < np; j++) grad[j] += a->g[static_cast<size_t>(j)];
    }
    return 0;
}

void adolc_gmm_free(adolc_gmm *a)
{
    delete a;
}

struct adolc_ba {
    short tag[2]; // theta^2 != 0, == 0
    double u[2][2], z[2][17];
    double *U[2], *Z[2];
};

adolc_ba *adolc_ba_new(const ba_input *in)
{
    adolc_ba *a = new adolc_ba;
    double x[17];
    std::memcpy(x, in->cams, 11 * sizeof(double));
    std::memcpy(x + 11, in->X, 3 * sizeof(double));
    x[14] = in->w[0], x[15] = in->feats[0], x[16] = in->feats[1];
    for (int b = 0; b < 2; b++) {
        a->tag[b] = next_tag++;
        // the branch is fixed at trace time, whatever x's rotation is
        trace_on(a->tag[b], 0, 65536, 65536, 65536, 65536);
        adouble v[17], out[2];
        for (int j = 0; j < 17; j++) v[j] <<= x[j];
        ba_residual_adolc(nullptr, v, v + 11, v[14], v[15], v[16], b == 1, out);
        double y[2];
        out[0] >>= y[0];
        out[1] >>= y[1];
        trace_off();
    }
    a->u[0][0] = 1, a->u[0][1] = 0, a->u[1][0] = 0, a->u[1][1] = 1;
    for (int r = 0; r < 2; r++) a->U[r] = a->u[r], a->Z[r] = a->z[r];
    return a;
}

int adolc_ba_eval(adolc_ba *a, const ba_input *in, double *reproj, double *vals)
{
    for (int i = 0; i < in->p; i++) {
        double x[17];
        const double *cam = in->cams + 11 * static_cast<size_t>(in->obs[2 * i]);
        std::memcpy(x, cam, 11 * sizeof(double));
        std::memcpy(x + 11, in->X + 3 * static_cast<size_t>(in->obs[2 * i + 1]), 3 * sizeof(double));
        x[14] = in->w[i], x[15] = in->feats[2 * i], x[16] = in->feats[2 * i + 1];
        short tag = a->tag[cam[0] * cam[0] + cam[1] * cam[1] + cam[2] * cam[2] == 0];
        if (zos_forward(tag, 2, 17, 1, x, reproj + 2 * static_cast<size_t>(i)) < 0 ||
            fov_reverse(tag, 2, 17, 2, a->U, a->Z) < 0)
            return 1;
        for (int r = 0; r < 2; r++) std::memcpy(vals + 30 * static_cast<size_t>(i) + 15 * r, a->z[r], 15 * sizeof(double));
    }
    return 0;
}

void adolc_ba_free(adolc_ba *a)
{
    delete a;
}
