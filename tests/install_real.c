/* Built by install_test.sh against the installed library with `pkg-config --libs backprop`
 * alone.  ad_real.h's inline functions call libm (sin, cos, exp) from this program's own
 * object, so it links only if the .pc file puts -lm in Libs. */
#include "ad_real.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    /* read at run time, so the compiler cannot fold sin and exp away */
    double x0 = argc > 1 ? strtod(argv[1], NULL) : 0.7;
    ad_tape *t = ad_tape_new();
    if (!t) return 1;
    ad_real x = ad_real_var(t, x0);
    ad_real y = ad_real_mul(t, ad_real_sin(t, x), ad_real_exp(t, x)); /* sin(x) e^x */
    double got = ad_tape_backward(t, y) == AD_OK ? ad_real_grad(t, x) : NAN;
    double want = (cos(x0) + sin(x0)) * exp(x0);
    ad_tape_free(t);
    printf("ad_real: dy/dx = %.12f, exact %.12f\n", got, want);
    return fabs(got - want) <= 1e-12 * fabs(want) ? 0 : 1;
}
