/* Helpers shared by the Check suites. */
#ifndef TESTUTIL_H
#define TESTUTIL_H
#include "ad.h"
#include <check.h>

/* x rounded to d decimals, the way the slides print numbers. */
double round_to(double x, int d);
/* A float64 tensor of the given shape with uniform values in [lo, hi). */
ad_tensor *rand_tensor(ad_rng *r, ad_shape s, double lo, double hi);
/* Runs the suite and returns the process exit status. */
int run_suite(Suite *s);
#endif
