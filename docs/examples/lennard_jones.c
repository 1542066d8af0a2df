/* Newton's method on the energy of a 2-D Lennard-Jones cluster: the gradient and the Hessian
 * from one call (ad_hessian), a small Cholesky solver, and the cluster's zero modes. */
#include "ad.h"
#include <math.h>
#include <stdbool.h>
#include <stdio.h>

enum { ATOMS = 7, DIM = 2 * ATOMS };

/* E = sum over pairs of 4 ((1/r)^12 - (1/r)^6) (epsilon = sigma = 1), from s = 1/r^2 so no
 * square root is taken: (1/r)^6 = s^3.  x holds x_0, y_0, x_1, y_1, ... */
static ad_node *energy(ad_graph *g, ad_node *const *x, int n, void *user)
{
    (void)user;
    ad_node *e = ad_const_scalar(g, 0);
    for (int i = 0; i < n / 2; i++)
        for (int j = i + 1; j < n / 2; j++) {
            ad_node *dx = ad_sub(g, x[2 * i], x[2 * j]), *dy = ad_sub(g, x[2 * i + 1], x[2 * j + 1]);
            ad_node *s = ad_recip(g, ad_add(g, ad_square(g, dx), ad_square(g, dy)));
            ad_node *s3 = ad_mul(g, s, ad_square(g, s));
            e = ad_add(g, e, ad_mul_scalar(g, ad_sub(g, ad_square(g, s3), s3), 4));
        }
    return e;
}

/* Solves (H + shift I) d = -grad by Cholesky; false when H + shift I is not positive
 * definite (then no factor exists and the caller shifts more). */
static bool newton_step(const double *H, double shift, const double *grad, double *d)
{
    double L[DIM][DIM] = {{0}}, z[DIM];
    for (int i = 0; i < DIM; i++)
        for (int j = 0; j <= i; j++) {
            double s = H[i * DIM + j] + (i == j ? shift : 0);
            for (int k = 0; k < j; k++) s -= L[i][k] * L[j][k];
            if (i == j && s <= 0) return false;
            L[i][j] = i == j ? sqrt(s) : s / L[j][j];
        }
    for (int i = 0; i < DIM; i++) { /* L z = -grad */
        double s = -grad[i];
        for (int k = 0; k < i; k++) s -= L[i][k] * z[k];
        z[i] = s / L[i][i];
    }
    for (int i = DIM - 1; i >= 0; i--) { /* L^T d = z */
        double s = z[i];
        for (int k = i + 1; k < DIM; k++) s -= L[k][i] * d[k];
        d[i] = s / L[i][i];
    }
    return true;
}

int main(void)
{
    /* a hexagon around a centre atom, bent out of shape */
    double x[DIM], grad[DIM], H[DIM * DIM], d[DIM], E = 0, norm = INFINITY;
    for (int i = 0; i < ATOMS; i++) {
        double r = i ? 1.1 : 0, a = 1.0472 * i;
        x[2 * i] = r * cos(a) + 0.05 * sin(3.0 * i + 1);
        x[2 * i + 1] = r * sin(a) + 0.05 * cos(5.0 * i + 2);
    }
    ad_graph *g = ad_graph_new(); /* kept, so iterations after the first allocate nothing */
    printf("iter  energy               |grad|    shift\n");
    for (int it = 0; it < 30; it++) {
        if (ad_hessian(g, energy, DIM, x, NULL, &E, grad, H) != AD_OK) {
            fprintf(stderr, "%s\n", ad_error(g));
            return 1;
        }
        norm = 0;
        for (int i = 0; i < DIM; i++) norm += grad[i] * grad[i];
        norm = sqrt(norm);
        if (norm < 1e-12) {
            printf("%4d  %.15f  %.2e\n", it, E, norm);
            break;
        }
        /* Moving or turning the cluster rigidly leaves E alone, so H is singular along the 2
         * translations, and along the rotation at a minimum; elsewhere the rotation's
         * curvature is of the order of |grad| and may be negative.  So H + shift I is
         * factored with the smallest shift (from 1e-8 up by tens) that makes it positive
         * definite: the step then goes downhill, moves nothing along the translations (the
         * gradient has no part there), and as the shift falls with |grad| the convergence
         * stays quadratic (Levenberg's damping). */
        double shift = 1e-8;
        while (!newton_step(H, shift, grad, d)) shift *= 10;
        printf("%4d  %.15f  %.2e  %.0e\n", it, E, norm, shift);
        for (int i = 0; i < DIM; i++) x[i] += d[i];
    }
    /* At the minimum, H v = 0 for the rigid motions: checked with Hessian-vector products
     * (one gradient graph and one forward sweep each, no n x n matrix). */
    double cx = 0, cy = 0, modes[3][DIM], hv[DIM];
    for (int i = 0; i < ATOMS; i++) cx += x[2 * i] / ATOMS, cy += x[2 * i + 1] / ATOMS;
    for (int i = 0; i < ATOMS; i++) {
        modes[0][2 * i] = 1, modes[0][2 * i + 1] = 0;
        modes[1][2 * i] = 0, modes[1][2 * i + 1] = 1;
        modes[2][2 * i] = -(x[2 * i + 1] - cy), modes[2][2 * i + 1] = x[2 * i] - cx;
    }
    double worst = 0;
    for (int m = 0; m < 3; m++) {
        if (ad_hvp(g, energy, DIM, x, modes[m], NULL, NULL, NULL, hv) != AD_OK) return 1;
        for (int i = 0; i < DIM; i++) worst = fmax(worst, fabs(hv[i]));
    }
    printf("E = %.12f, |grad| = %.1e; |H v| <= %.1e along the 3 rigid motions\n", E, norm, worst);
    ad_graph_free(g);
    return norm < 1e-10 && worst < 1e-9 ? 0 : 1;
}
