/* libFuzzer target: any bytes as an optimizer checkpoint, loaded into an optimizer of every
 * kind over the parameters the seed corpus was saved from (w [3,2] and b [2], float64).  A
 * load that succeeds must leave an optimizer that steps to finite parameters, or says why
 * not: a crafted step count or schedule made the parameters NaN while optim_step returned OK
 * (issue 20, defect 6). */
#include "fuzz_file.h"
#include "optim.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".safetensors");
    if (!path) return 0;
    ad_tensor *w = ad_param_new("w", AD_F64, AD_SHAPE(3, 2)), *b = ad_param_new("b", AD_F64, AD_SHAPE(2));
    ad_tensor *ps[] = {w, b};
    for (int kind = OPTIM_GD; kind <= OPTIM_RMSPROP && w && b; kind++) {
        ad_tensor_fill(w, 0.5);
        ad_tensor_fill(b, -0.25);
        optim_cfg c = optim_defaults((optim_kind)kind, 0.1);
        optim *o = optim_new(ps, 2, &c, NULL, 0);
        if (o && optim_load(o, path) == AD_OK) {
            for (int step = 0; step < 3; step++) {
                for (int i = 0; i < 2; i++) {
                    double *g = ad_tensor_grad_data(ps[i]);
                    for (int64_t k = 0; g && k < ad_tensor_size(ps[i]); k++) g[k] = 1;
                }
                if (optim_step(o) != AD_OK) break;
                for (int i = 0; i < 2; i++)
                    for (int64_t k = 0; k < ad_tensor_size(ps[i]); k++)
                        if (!isfinite(ad_tensor_get(ps[i], k))) {
                            fprintf(stderr, "fuzz_checkpoint: optim_step returned OK with parameter %d[%lld] = %g "
                                    "(%s, step %lld, rate %g)\n", i, (long long)k, ad_tensor_get(ps[i], k),
                                    optim_kind_name((optim_kind)kind), (long long)optim_steps(o), optim_lr(o));
                            abort();
                        }
            }
        }
        optim_free(o);
    }
    ad_tensor_free(w);
    ad_tensor_free(b);
    return 0;
}
