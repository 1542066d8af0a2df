/* The replay engine needs ad_replay (ad.h), which is not in this library yet: until it is,
 * the engine is reported as not built. */
#include "adbench.h"
#include <stddef.h>

const bool adb_have_replay = false;

void *gmm_replay_new(const gmm_input *in) { (void)in; return NULL; }
int gmm_replay_eval(void *r, const gmm_input *in, const double *params, double *f, double *grad, char *err,
                    size_t errlen)
{
    (void)r, (void)in, (void)params, (void)f, (void)grad, (void)err, (void)errlen;
    return 1;
}
unsigned long long gmm_replay_mallocs(const void *r) { (void)r; return 0; }
void gmm_replay_free(void *r) { (void)r; }
void *ba_replay_new(const ba_input *in) { (void)in; return NULL; }
int ba_replay_eval(void *r, const ba_input *in, double *reproj, double *vals, char *err, size_t errlen)
{
    (void)r, (void)in, (void)reproj, (void)vals, (void)err, (void)errlen;
    return 1;
}
unsigned long long ba_replay_mallocs(const void *r) { (void)r; return 0; }
void ba_replay_free(void *r) { (void)r; }
