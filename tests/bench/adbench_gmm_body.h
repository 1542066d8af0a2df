/* The GMM objective's scalar parts, written once for every scalar engine: included by
 * adbench_gmm.c once per value type, with
 *   GMM_T          the value type (ad_real, ad_node *)
 *   GMM_CX         the context parameter, named cx (ad_tape *cx, ad_graph *cx)
 *   GMM_FN(name)   the function's name for this type
 *   ADD SUB MUL SQR EXP LOG MAX (two or one values), MULC(a, c) (a value times a double);
 *   GMM_SCOPE      optional: the functions' linkage (static unless defined, e.g. empty to share them).
 * Operations in ADBench's order (gmm.h: gmm_objective, Qtimesx, logsumexp, log_wishart_prior). */

/* One point's term, logsumexp over c of alpha_c + sum_j q_cj - 1/2 |Q_c (x - mu_c)|^2.  The
 * maximum is taken with MAX, so that a replay decides it again.  xc, qx (d) and mains (k) are
 * scratch. */
#ifndef GMM_SCOPE
#define GMM_SCOPE static
#endif

GMM_SCOPE GMM_T GMM_FN(gmm_term)(GMM_CX, int d, int k, const GMM_T *alphas, const GMM_T *means, const GMM_T *icf,
                              const GMM_T *x, GMM_T *xc, GMM_T *qx, GMM_T *mains)
{
    (void)cx;
    int icf_sz = d * (d + 1) / 2;
    for (int c = 0; c < k; c++) {
        const GMM_T *q = icf + (size_t)c * icf_sz, *L = q + d, *mu = means + (size_t)c * d;
        GMM_T sumq = q[0];
        for (int j = 1; j < d; j++) sumq = ADD(sumq, q[j]);
        for (int j = 0; j < d; j++) xc[j] = SUB(x[j], mu[j]);
        for (int j = 0; j < d; j++) qx[j] = MUL(EXP(q[j]), xc[j]);
        int idx = 0;
        for (int i = 0; i < d; i++)
            for (int j = i + 1; j < d; j++) qx[j] = ADD(qx[j], MUL(L[idx++], xc[i]));
        GMM_T sq = SQR(qx[0]);
        for (int j = 1; j < d; j++) sq = ADD(sq, SQR(qx[j]));
        mains[c] = SUB(ADD(alphas[c], sumq), MULC(sq, 0.5));
    }
    GMM_T mx = mains[0];
    for (int c = 1; c < k; c++) mx = MAX(mx, mains[c]);
    GMM_T s = EXP(SUB(mains[0], mx));
    for (int c = 1; c < k; c++) s = ADD(s, EXP(SUB(mains[c], mx)));
    return ADD(LOG(s), mx);
}

/* The rest of the objective but its constants: -n logsumexp(alphas) plus the Wishart prior's
 * sum over c of 1/2 gamma^2 (|exp(q_c)|^2 + |L_c|^2) - m sum_j q_cj. */
GMM_SCOPE GMM_T GMM_FN(gmm_rest)(GMM_CX, int d, int k, int n, double gamma, int m, const GMM_T *alphas, const GMM_T *icf)
{
    (void)cx;
    int icf_sz = d * (d + 1) / 2;
    GMM_T mx = alphas[0];
    for (int c = 1; c < k; c++) mx = MAX(mx, alphas[c]);
    GMM_T s = EXP(SUB(alphas[0], mx));
    for (int c = 1; c < k; c++) s = ADD(s, EXP(SUB(alphas[c], mx)));
    GMM_T out = MULC(ADD(LOG(s), mx), -(double)n);
    for (int c = 0; c < k; c++) {
        const GMM_T *q = icf + (size_t)c * icf_sz;
        GMM_T sumq = q[0], frob = SQR(EXP(q[0]));
        for (int j = 1; j < d; j++) sumq = ADD(sumq, q[j]), frob = ADD(frob, SQR(EXP(q[j])));
        for (int j = d; j < icf_sz; j++) frob = ADD(frob, SQR(q[j]));
        out = ADD(out, SUB(MULC(frob, 0.5 * gamma * gamma), MULC(sumq, (double)m)));
    }
    return out;
}

/* Undefined here, so that each inclusion defines its own. */
#undef GMM_T
#undef GMM_CX
#undef GMM_FN
#undef ADD
#undef SUB
#undef MUL
#undef MAX
#undef SQR
#undef EXP
#undef LOG
#undef MULC
#undef GMM_SCOPE
