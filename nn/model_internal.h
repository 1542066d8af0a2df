/* What nn/'s files share about nn_model; not installed. */
#ifndef NN_MODEL_INTERNAL_H
#define NN_MODEL_INTERNAL_H

#include "nn.h"

/* Records a printf-style message as the model's error (nn_model_error) and returns st. */
ad_status model_fail(nn_model *m, ad_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The status of the model's last failure (what model_fail recorded). */
ad_status model_status(const nn_model *m);

/* "<prefix>.<attr>" in buf, or attr alone for an empty or NULL prefix: a layer's tensor named
 * as PyTorch names a module's attribute under its parent.  Returns buf. */
const char *model_tensor_name(char *buf, size_t len, const char *prefix, const char *attr);

/* AD_OK if each of the n sizes v[i] (called what[i]) is at least 1; else AD_ERR_ARG with
 * "fn: what = v must be positive" for the first that is not, recorded in m. */
ad_status model_check_sizes(nn_model *m, const char *fn, int n, const char *const *what, const int *v);

#endif
