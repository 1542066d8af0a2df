// ADOL-C's side of bench_hessian: the same Rosenbrock loop traced with adouble, and ADOL-C's
// drivers on the trace.  C++ because ADOL-C is; the benchmark (C) calls these four functions.
// Built only when meson finds ADOL-C.  Each returns ADOL-C's return code (negative: failed).
#include <adolc/adolc.h>
#include <vector>

extern "C" {
int adolc_trace_rosenbrock(short tag, int n, const double *x, double *value);
int adolc_gradient(short tag, int n, const double *x, double *g);
int adolc_hessian(short tag, int n, const double *x, double *H);
int adolc_hess_vec(short tag, int n, const double *x, const double *v, double *hv);
}

// Traced once per point set; ADOL-C replays the trace at any x (Rosenbrock has no branches).
// The buffers hold the whole trace, so ADOL-C writes no tape files.
int adolc_trace_rosenbrock(short tag, int n, const double *x, double *value)
{
    unsigned buf = 32u * (unsigned)n + 4096u;
    trace_on(tag, 0, buf, buf, buf, buf);
    std::vector<adouble> ax(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) ax[static_cast<size_t>(i)] <<= x[i];
    adouble f = 0;
    for (int i = 0; i + 1 < n; i++) {
        adouble t = ax[static_cast<size_t>(i) + 1] - ax[static_cast<size_t>(i)] * ax[static_cast<size_t>(i)];
        adouble u = 1 - ax[static_cast<size_t>(i)];
        f = f + (t * t * 100 + u * u);
    }
    f >>= *value;
    trace_off();
    return 0;
}

int adolc_gradient(short tag, int n, const double *x, double *g)
{
    return gradient(tag, n, x, g);
}

// hessian() fills the lower triangle of H given as row pointers; the upper is left alone.
int adolc_hessian(short tag, int n, const double *x, double *H)
{
    std::vector<double *> rows(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) rows[static_cast<size_t>(i)] = H + static_cast<size_t>(i) * static_cast<size_t>(n);
    return hessian(tag, n, const_cast<double *>(x), rows.data());
}

int adolc_hess_vec(short tag, int n, const double *x, const double *v, double *hv)
{
    return hess_vec(tag, n, const_cast<double *>(x), const_cast<double *>(v), hv);
}
