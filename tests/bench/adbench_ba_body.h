/* BA's reprojection residual, written once for every engine: included by adbench_ba.c once
 * per value type, with
 *   BA_T           the value type (double, ad_real, ad_node *: scalars, or vectors over
 *                  observations for the tensor form)
 *   BA_CX          the context parameter, named cx
 *   BA_FN(name)    the function's name for this type
 *   ADD SUB MUL DIV SQR SQRT SIN COS RECIP (two or one values), ADDC(a, c) (a + a double),
 *   RSUBC(c, a) (a double minus a value);
 *   BA_SCOPE       optional: the function's linkage (static unless defined, e.g. empty to share it).
 * ADBench's order (ba.h: rodrigues_rotate_point, project, computeReprojError).  The branch on
 * theta^2 == 0 is taken by the caller (zero_theta), which knows the values. */

/* cam: r (3), C (3), f, u0, v0, k1, k2; X (3); w; the feature (fx, fy); out: 2 residuals. */
#ifndef BA_SCOPE
#define BA_SCOPE static
#endif

BA_SCOPE void BA_FN(ba_residual)(BA_CX, const BA_T *cam, const BA_T *X, BA_T w, BA_T fx, BA_T fy, bool zero_theta,
                               BA_T *out)
{
    (void)cx;
    const BA_T *r = cam;
    BA_T xo[3], xcam[3];
    for (int j = 0; j < 3; j++) xo[j] = SUB(X[j], cam[3 + j]);
    if (!zero_theta) {
        BA_T th = SQRT(ADD(ADD(SQR(r[0]), SQR(r[1])), SQR(r[2])));
        BA_T c = COS(th), s = SIN(th), inv = RECIP(th);
        BA_T u[3] = {MUL(r[0], inv), MUL(r[1], inv), MUL(r[2], inv)};
        BA_T cr[3] = {SUB(MUL(u[1], xo[2]), MUL(u[2], xo[1])), SUB(MUL(u[2], xo[0]), MUL(u[0], xo[2])),
                      SUB(MUL(u[0], xo[1]), MUL(u[1], xo[0]))};
        BA_T tmp = MUL(ADD(ADD(MUL(u[0], xo[0]), MUL(u[1], xo[1])), MUL(u[2], xo[2])), RSUBC(1, c));
        for (int j = 0; j < 3; j++) xcam[j] = ADD(ADD(MUL(xo[j], c), MUL(cr[j], s)), MUL(u[j], tmp));
    } else {
        BA_T cr[3] = {SUB(MUL(r[1], xo[2]), MUL(r[2], xo[1])), SUB(MUL(r[2], xo[0]), MUL(r[0], xo[2])),
                      SUB(MUL(r[0], xo[1]), MUL(r[1], xo[0]))};
        for (int j = 0; j < 3; j++) xcam[j] = ADD(xo[j], cr[j]);
    }
    BA_T px = DIV(xcam[0], xcam[2]), py = DIV(xcam[1], xcam[2]);
    BA_T rsq = ADD(SQR(px), SQR(py));
    BA_T L = ADD(ADDC(MUL(cam[9], rsq), 1), MUL(cam[10], SQR(rsq)));
    out[0] = MUL(w, SUB(ADD(MUL(cam[6], MUL(px, L)), cam[7]), fx));
    out[1] = MUL(w, SUB(ADD(MUL(cam[6], MUL(py, L)), cam[8]), fy));
}

/* Undefined here, so that each inclusion defines its own. */
#undef BA_T
#undef BA_CX
#undef BA_FN
#undef ADD
#undef SUB
#undef MUL
#undef DIV
#undef SQR
#undef SQRT
#undef SIN
#undef COS
#undef RECIP
#undef ADDC
#undef RSUBC
#undef BA_SCOPE
