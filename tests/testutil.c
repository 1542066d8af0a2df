#include "testutil.h"
#include <math.h>
#include <stdlib.h>

double round_to(double x, int d)
{
    double k = pow(10, d);
    return round(x * k) / k;
}

ad_tensor *rand_tensor(ad_rng *r, ad_shape s, double lo, double hi)
{
    ad_tensor *t = ad_tensor_new(AD_F64, s);
    ck_assert_ptr_nonnull(t);
    ad_tensor_rand_uniform(t, r, lo, hi);
    return t;
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
