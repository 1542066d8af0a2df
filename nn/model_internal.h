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

#endif
