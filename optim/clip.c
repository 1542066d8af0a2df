/* Gradient clipping over a list of parameters, in place on their gradient buffers. */
#include "optim_impl.h"
#include <math.h>

static ad_status check_params(const char *fn, ad_tensor *const *params, int n, char *err, size_t errlen)
{
    if (!params || n < 0)
        return optim_fail(params ? AD_ERR_ARG : AD_ERR_NULL, err, errlen, "%s: params = %p, n = %d", fn,
                          (const void *)params, n);
    for (int i = 0; i < n; i++)
        if (!params[i] || !ad_tensor_grad_data(params[i]))
            return optim_fail(AD_ERR_NULL, err, errlen, "%s: parameter %d is NULL or has no gradient buffer", fn, i);
    return AD_OK;
}

/* sqrt(sum g^2) over all gradients.  The plain sum overflows past |g| ~ 1e154 (float64), so
 * if it does with every element finite, sum again scaled by the largest |g|. */
static double global_norm(ad_tensor *const *params, int n)
{
    double ss = 0, big = 0;
    for (int i = 0; i < n; i++) {
        const void *g = ad_tensor_grad_data(params[i]);
        ad_dtype t = ad_tensor_dtype(params[i]);
        for (int64_t k = 0, m = ad_tensor_size(params[i]); k < m; k++) {
            double x = ad_data_get(g, t, k);
            ss += x * x;
        }
    }
    if (!isinf(ss)) return sqrt(ss);
    for (int i = 0; i < n; i++) {
        const void *g = ad_tensor_grad_data(params[i]);
        ad_dtype t = ad_tensor_dtype(params[i]);
        for (int64_t k = 0, m = ad_tensor_size(params[i]); k < m; k++) big = fmax(big, fabs(ad_data_get(g, t, k)));
    }
    if (isinf(big)) return big;
    ss = 0;
    for (int i = 0; i < n; i++) {
        const void *g = ad_tensor_grad_data(params[i]);
        ad_dtype t = ad_tensor_dtype(params[i]);
        for (int64_t k = 0, m = ad_tensor_size(params[i]); k < m; k++) {
            double x = ad_data_get(g, t, k) / big;
            ss += x * x;
        }
    }
    return big * sqrt(ss);
}

ad_status optim_clip_grad_norm(ad_tensor *const *params, int n, double max_norm, double *norm, char *err,
                               size_t errlen)
{
    static const char fn[] = "optim_clip_grad_norm";
    ad_status st = check_params(fn, params, n, err, errlen);
    if (st != AD_OK) return st;
    if (!(max_norm > 0) || isinf(max_norm))
        return optim_fail(AD_ERR_ARG, err, errlen, "%s: max_norm = %g, want a finite norm > 0", fn, max_norm);
    double total = global_norm(params, n);
    if (norm) *norm = total;
    if (!isfinite(total))
        return optim_fail(AD_ERR_NUMERIC, err, errlen, "%s: the gradient norm is %s; gradients left as they are",
                          fn, isnan(total) ? "NaN" : "inf"); /* printf may spell NaN "-nan" */
    /* PyTorch's coefficient, 1e-6 included, so clipped gradients match torch's to rounding. */
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1) return AD_OK;
    for (int i = 0; i < n; i++) {
        void *g = ad_tensor_grad_data(params[i]);
        ad_dtype t = ad_tensor_dtype(params[i]);
        for (int64_t k = 0, m = ad_tensor_size(params[i]); k < m; k++) ad_data_set(g, t, k, ad_data_get(g, t, k) * coef);
    }
    return AD_OK;
}

ad_status optim_clip_grad_value(ad_tensor *const *params, int n, double max_value, char *err, size_t errlen)
{
    static const char fn[] = "optim_clip_grad_value";
    ad_status st = check_params(fn, params, n, err, errlen);
    if (st != AD_OK) return st;
    if (!(max_value > 0))
        return optim_fail(AD_ERR_ARG, err, errlen, "%s: max_value = %g, want > 0", fn, max_value);
    for (int i = 0; i < n; i++) {
        void *g = ad_tensor_grad_data(params[i]);
        ad_dtype t = ad_tensor_dtype(params[i]);
        for (int64_t k = 0, m = ad_tensor_size(params[i]); k < m; k++) {
            double x = ad_data_get(g, t, k);
            /* comparisons are false for NaN, so NaN passes through unchanged */
            if (x > max_value) ad_data_set(g, t, k, max_value);
            else if (x < -max_value) ad_data_set(g, t, k, -max_value);
        }
    }
    return AD_OK;
}
