/* The update rules' loops, written once for both element types: rules.c includes this file
 * with T = float and T = double, so a float32 parameter is updated in float32 arithmetic
 * (as torch.optim does it, and at twice the vector width) and a float64 one in float64.
 * Coefficients are rounded to T once per call, as PyTorch passes Python floats to its
 * float32 kernels. */
#ifndef T
#error "define T (float or double) and SQRT before including rules_loop.h"
#endif
#define RULE_CAT2(a, b) a##_##b
#define RULE_CAT(a, b) RULE_CAT2(a, b)
#define NAME(rule) RULE_CAT(rule, T)

/* L2 weight decay enters as a gradient term; skipped when 0 so an inf parameter does not turn
 * a finite gradient into NaN through 0 * inf (a select, not a branch, to stay vectorisable). */
static inline T NAME(decayed)(T g, T th, T wd) { return g + (wd != 0 ? wd * th : (T)0); }

/* theta_{i+1} = theta_i - eta grad L(theta_i) */
RULE NAME(rule_gd)(const bufs *b, const coeffs *c)
{
    T *P = b->p;
    const T *G = b->g, lr = (T)c->lr, wd = (T)c->wd;
    for (int64_t k = 0; k < b->n; k++) P[k] = P[k] - lr * NAME(decayed)(G[k], P[k], wd);
}

/* Lecture: v_{i+1} = -eta g + gamma v_i, theta_{i+1} = theta_i + v_{i+1}; Nesterov looks one
 * velocity ahead: theta_{i+1} = theta_i + gamma v_{i+1} - eta g.
 * PyTorch: b <- gamma b + g, theta <- theta - eta b; Nesterov: theta <- theta - eta (g + gamma b). */
RULE NAME(rule_momentum)(const bufs *b, const coeffs *c, bool lecture, bool nesterov)
{
    T *P = b->p, *V = b->s0;
    const T *G = b->g, lr = (T)c->lr, wd = (T)c->wd, mom = (T)c->mom;
    for (int64_t k = 0; k < b->n; k++) {
        T th = P[k], g = NAME(decayed)(G[k], th, wd), v = V[k];
        if (lecture) {
            v = -lr * g + mom * v;
            th = nesterov ? th + (mom * v - lr * g) : th + v;
        } else {
            v = mom * v + g;
            th = th - lr * (nesterov ? g + mom * v : v);
        }
        V[k] = v;
        P[k] = th;
    }
}

/* m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
 * theta <- theta - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)   (PyTorch's grouping).
 * AdamW first shrinks theta by (1 - lr lambda) instead of adding lambda theta to g. */
RULE NAME(rule_adam)(const bufs *b, const coeffs *c, bool decoupled)
{
    T *P = b->p, *M = b->s0, *V = b->s1;
    const T *G = b->g, wd = (T)c->wd, b1 = (T)c->b1, b2 = (T)c->b2, eps = (T)c->eps;
    const T shrink = (T)(1 - c->lr * c->wd), step_size = (T)c->step_size, bc2_sqrt = (T)c->bc2_sqrt;
    for (int64_t k = 0; k < b->n; k++) {
        T th = P[k], g = G[k];
        if (decoupled) th *= shrink;
        else g = NAME(decayed)(g, th, wd);
        T m = b1 * M[k] + (1 - b1) * g;
        T v = b2 * V[k] + (1 - b2) * g * g;
        T denom = SQRT(v) / bc2_sqrt + eps;
        M[k] = m;
        V[k] = v;
        P[k] = th - step_size * (m / denom);
    }
}

/* s <- alpha s + (1-alpha) g^2;  theta <- theta - lr g / (sqrt(s) + eps), or with momentum
 * mu: b <- mu b + g / (sqrt(s) + eps), theta <- theta - lr b. */
RULE NAME(rule_rmsprop)(const bufs *b, const coeffs *c, bool momentum)
{
    T *P = b->p, *S = b->s0, *B = b->s1;
    const T *G = b->g, lr = (T)c->lr, wd = (T)c->wd, mom = (T)c->mom, alpha = (T)c->alpha, eps = (T)c->eps;
    for (int64_t k = 0; k < b->n; k++) {
        T th = P[k], g = NAME(decayed)(G[k], th, wd);
        T s = alpha * S[k] + (1 - alpha) * g * g;
        T avg = SQRT(s) + eps;
        S[k] = s;
        if (momentum) {
            T m = mom * B[k] + g / avg;
            B[k] = m;
            th = th - lr * m;
        } else {
            th = th - lr * (g / avg);
        }
        P[k] = th;
    }
}

#undef NAME
#undef RULE_CAT
#undef RULE_CAT2
