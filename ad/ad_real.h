/*
 * ad_real.h — the fast scalar path: active doubles on a flat tape.
 *
 * For differentiating ordinary C code with one operation per number (a cost function, a
 * simulation step, a likelihood) at the cost of the best operator-overloading tools.  A value
 * is a small struct that carries its derivative as a combination of at most two tape entries;
 * operations combine those terms in registers and write to the tape only when a result would
 * need more (then it becomes one entry whose edges are its terms).  The backward sweep is one
 * multiply-add per edge.
 *
 *     ad_tape *t = ad_tape_new();
 *     ad_real x = ad_real_var(t, 2.0), y = ad_real_var(t, 3.0);
 *     ad_real f = ad_real_mul(t, ad_real_add(t, x, y), ad_real_sin(t, x));
 *     if (ad_tape_backward(t, f) == AD_OK)
 *         printf("%g %g %g\n", f.v, ad_real_grad(t, x), ad_real_grad(t, y));
 *     ad_tape_free(t);
 *
 * Compared with ad_node graphs (ad.h): no tensors, no names, no traces; float64 only; values
 * are not stored on the tape, and most operations store nothing at all (the Rosenbrock loop
 * writes one entry per iteration where a graph makes eight nodes).  Use graphs to teach, to
 * see, to work with tensors; use tapes for hot scalar loops.
 *
 * Ownership and errors: the tape owns its memory; ad_tape_reset keeps it for the next
 * recording, so a loop allocates nothing once the tape is large enough.  If memory runs out
 * while recording, values keep being computed but the tape is marked failed, and
 * ad_tape_backward returns AD_ERR_NOMEM.  Constants (ad_real_const) are never recorded.
 * Gradients are recomputed by every sweep (they do not accumulate across sweeps).  An ad_real
 * belongs to the tape it was made on, until that tape is reset.
 *
 * Second order: the function written once as an ad_real_fn also gives exact Hessian-vector
 * products and Hessians (ad_real_hvp, ad_real_hessian), forward over reverse with the rows'
 * second derivatives; see ad_real for the dual form its values take meanwhile.
 */
#ifndef AD_REAL_H
#define AD_REAL_H

#include "ad.h"
#include "ad_ew.h"
#include <math.h>

AD_BEGIN_DECLS

/* An active double: its value, and its derivative as a linear combination of at most two tape
 * entries, dv = d[0] d(entry i[0]) + d[1] d(entry i[1]).  A constant has no terms (i[0] = -1),
 * a variable one (its own entry, partial 1).  Operations merge their operands' terms instead of
 * recording a node (runtime statement-level preaccumulation: what expression templates do at
 * compile time, done as the code runs): sin(x*y) and x*x + 3*x are still combinations of x
 * and y and cost the tape nothing.  A result that would need three or four terms is written to
 * the tape as one entry with those terms as edges, and is one term again.  Two terms, not
 * more: a 32-byte value, and a merge that is a handful of compares (see ad_real_lin2_).  Treat
 * the fields other than v as private. */
typedef struct {
    double v;       /* the value */
    double d[2];    /* the partials with respect to ... */
    int32_t i[2];   /* ... these tape entries (distinct); -1 marks an unused slot, and i[1] is
                     * used only when i[0] is */
} ad_real;

/* The dual form, made only while ad_real_hvp records: one term whose partial is a dual
 * number, d[0] + eps d[1], d[1] being d[0]'s derivative along the direction of the product;
 * i[0] = AD_REAL_DUAL_(entry), which is below -1, and i[1] = -1.  The mark is in the index,
 * not a flag on the tape, so that first-order code needs no new test: to the merge a negative
 * i[0] is a constant, and only on that path is -1 told from the mark.  Scaling by a plain
 * number scales both parts, so the linear operations (ad_real_mul_scalar, ad_real_neg, ...)
 * and unary ones whose second derivative is 0 at the point are the first-order code
 * unchanged. */
#define AD_REAL_DUAL_(entry) (-2 - (int32_t)(entry))

/* The tape's storage is visible so that the operations below can be inlined; treat the
 * fields as private. */
typedef struct ad_tape {
    /* Counters are int64_t although they stay below 2^31: the int32_t stores into end[] and
     * arg[] then cannot alias them, so inlined recording keeps them in registers. */
    int64_t n;                /* entries recorded: variables and written-out values */
    int64_t cap;              /* room for entries */
    int64_t nedge;            /* edges recorded */
    int64_t edge_cap;         /* room for edges */
    int32_t *end;             /* end[i]: one past the last edge of entry i */
    int32_t *arg;             /* edge e: the entry it points back to ... */
    double *partial;          /* ... and the local partial derivative along it */
    double *adj;              /* adjoints, filled by the sweep */
    int64_t adj_n;            /* adjoints the last sweep computed */
    int64_t adj_cap;          /* room for adjoints */
    ad_status status;         /* AD_OK, or why recording failed */
    uint64_t mallocs;         /* allocations made, for tests of steady-state loops */
    /* Second order (ad_real_hvp).  A first-order tape never allocates these. */
    bool dual;                /* recording in the dual form: cap and edge_cap read 0, so any
                               * first-order write goes to ad_tape_grow_, which refuses it */
    int64_t cap2;             /* room for entries in end, tangent and adj_t while dual ... */
    int64_t edge_cap2;        /* ... and for edges in arg, partial and dpartial */
    int64_t dual_short;       /* entries that did not fit (at least), for the next run */
    double *dpartial;         /* edge e: partial[e]'s derivative along the direction */
    double *tangent;          /* entry i: its value's derivative along the direction */
    double *adj_t;            /* the adjoints' derivatives along the direction */
    ad_real *xs;              /* the variables handed to f, kept for the next call ... */
    int64_t xs_cap;           /* ... and their room */
} ad_tape;

/* A new empty tape, or NULL if memory runs out. */
ad_tape *ad_tape_new(void);
/* Frees the tape; NULL is ignored. */
void ad_tape_free(ad_tape *t);
/* Forgets every recorded value but keeps the memory. */
void ad_tape_reset(ad_tape *t);
/* Makes room for `values` entries and `edges` edges in total, so recording never grows.  An
 * entry is a variable or a value written out (see ad_real); the Rosenbrock loop, for one,
 * writes one entry with three edges per iteration. */
ad_status ad_tape_reserve(ad_tape *t, int64_t values, int64_t edges);
/* Sweeps backward from y, seeding the adjoint of each of y's terms with its partial (y need
 * not be on the tape); afterwards ad_real_grad gives dy/dx. */
ad_status ad_tape_backward(ad_tape *t, ad_real y);
/* dy/dx from the last sweep, for x a variable (or any value that is exactly one entry: partial
 * 1); 0 for constants, for entries the sweep did not reach, and for values that are still a
 * combination of entries, which have no adjoint of their own. */
double ad_real_grad(const ad_tape *t, ad_real x);
/* Grows the tape for one more entry with up to `edges` edges; false (and status set) on OOM. */
bool ad_tape_grow_(ad_tape *t, int edges);

/* A function of n active doubles, for ad_real_gradient. */
typedef ad_real (*ad_real_fn)(ad_tape *t, const ad_real *x, int n, void *user);
/* Value and gradient of f at x[0..n-1] in one call.  t may be NULL (a tape is made and freed
 * inside) or a tape to reuse (it is reset first). */
ad_status ad_real_gradient(ad_tape *t, ad_real_fn f, int n, const double *x, void *user,
                           double *value, double *grad);
/* A function of n active doubles with m results, for ad_real_jacobian: it writes y[0..m-1]. */
typedef void (*ad_real_vec_fn)(ad_tape *t, const ad_real *x, int n, ad_real *y, int m, void *user);
/* The Jacobian of f at x[0..n-1] into J (m x n, row-major), and its values into value (may be
 * NULL): recorded once, then one reverse sweep per result.  t as in ad_real_gradient.  For
 * n much smaller than m, write f with ad_dual instead (n evaluations, no tape). */
ad_status ad_real_jacobian(ad_tape *t, ad_real_vec_fn f, int n, const double *x, void *user,
                           int m, double *value, double *J);
/* Value, gradient and the Hessian-vector product H v of f at x[0..n-1] (any of value, grad
 * may be NULL; hv may not), exact to rounding: forward over reverse with each row's second
 * derivative formula, never differences.  f is the ad_real_fn that ad_real_gradient takes;
 * it runs on variables in the dual form (see ad_real), whose partials carry their derivatives
 * along v as the code runs, and one reverse sweep in dual numbers gives grad and H v.  t as
 * in ad_real_gradient; a tape reused at the same size allocates nothing.  f may run more than
 * once while the tape is still too small for its recording.  Second derivatives are 0 at the
 * kinks of relu, abs, max and min.  AD_ERR_NULL for a missing f, x, v or hv, AD_ERR_ARG for
 * n < 0 or an f that makes variables of its own (ad_real_var) or returns a value of another
 * recording, AD_ERR_NOMEM if memory runs out. */
ad_status ad_real_hvp(ad_tape *t, ad_real_fn f, int n, const double *x, const double *v, void *user,
                      double *value, double *grad, double *hv);
/* Value, gradient and the dense n x n Hessian (row-major) of f at x: ad_real_hvp along each
 * unit vector in turn (n runs of f and n sweeps): column j is H e_j, as ad_hessian's, so H is
 * symmetric to rounding (not averaged).  value and grad may be NULL; t, f and the statuses as in
 * ad_real_hvp. */
ad_status ad_real_hessian(ad_tape *t, ad_real_fn f, int n, const double *x, void *user,
                          double *value, double *grad, double *H);
/* Central differences against the tape's gradient (defaults as ad_gradcheck). */
ad_status ad_real_gradcheck(ad_real_fn f, int n, const double *x, void *user,
                            const ad_check_opts *o, ad_check_report *rep);

/* ---- recording (inline) ----
 * Forced inline where the compiler allows it: left to its heuristics, GCC 12 at -O2 keeps the
 * merge below out of line, every operation then passes 32-byte values through memory, and the
 * Rosenbrock loop records 7-15x slower.  Inlined, each call site has its own branches, and a
 * loop that repeats its operations repeats their outcomes, so the branches predict well. */
#if defined(__GNUC__)
#define AD_REAL_INLINE static inline __attribute__((always_inline))
#else
#define AD_REAL_INLINE static inline
#endif

/* A value of up to two terms (i1 = -1: one term; i0 = -1 too: a constant). */
AD_REAL_INLINE ad_real ad_real_terms_(double v, int32_t i0, double d0, int32_t i1, double d1)
{
    ad_real r = {v, {d0, d1}, {i0, i1}};
    return r;
}

/* A constant: no terms, never recorded. */
AD_REAL_INLINE ad_real ad_real_const(double v) { return ad_real_terms_(v, -1, 0, -1, 0); }

/* A new independent variable: one entry with no edges, and one term (itself, partial 1). */
AD_REAL_INLINE ad_real ad_real_var(ad_tape *t, double v)
{
    if (t->n >= t->cap && !ad_tape_grow_(t, 0)) return ad_real_const(v);
    t->end[t->n] = (int32_t)t->nedge;
    return ad_real_terms_(v, (int32_t)t->n++, 1, -1, 0);
}

/* The value v with derivative da * (a's): a's terms scaled, nothing recorded. */
AD_REAL_INLINE ad_real ad_real_lin1_(double v, ad_real a, double da)
{
    return ad_real_terms_(v, a.i[0], a.d[0] * da, a.i[1], a.d[1] * da);
}

/* Writes v = sum of n (3 or 4) terms to the tape as one entry; it is one term from then on
 * (a constant if memory ran out: the tape is marked failed, the value stays right). */
AD_REAL_INLINE ad_real ad_real_write_(ad_tape *t, double v, int n, int32_t i0, double d0,
                                      int32_t i1, double d1, int32_t i2, double d2, int32_t i3,
                                      double d3)
{
    if ((t->n >= t->cap || t->nedge + n > t->edge_cap) && !ad_tape_grow_(t, n)) return ad_real_const(v);
    int64_t e = t->nedge;
    t->arg[e] = i0;
    t->partial[e] = d0;
    t->arg[e + 1] = i1;
    t->partial[e + 1] = d1;
    t->arg[e + 2] = i2;
    t->partial[e + 2] = d2;
    if (n == 4) {
        t->arg[e + 3] = i3;
        t->partial[e + 3] = d3;
    }
    t->nedge = e + n;
    t->end[t->n] = (int32_t)(e + n);
    return ad_real_terms_(v, (int32_t)t->n++, 1, -1, 0);
}

/* Whether a's partials are finite.  A unary operation with derivative 0 makes a constant
 * only then: 0 * inf is NaN on the graph's paths and in PyTorch (relu(log(0)) at 0), so it is
 * here too. */
AD_REAL_INLINE bool ad_real_finite_(ad_real a) { return isfinite(a.d[0]) && isfinite(a.d[1]); }

/* ---- the dual form (second order), inline too ----
 * Out-of-line calls here, cold as they are, cost the first-order loop (GCC 12 then keeps
 * values in memory across them: the Rosenbrock recording ran 10-13% more instructions), so
 * the dual form is recorded without calls: the room for it is given beforehand, and a
 * recording that runs out marks the tape (AD_ERR_NOMEM) and counts what did not fit, for
 * ad_real_hvp to grow it and run f again. */

/* A value in the dual form. */
AD_REAL_INLINE ad_real ad_real_dual_(double v, int64_t entry, double d, double dt)
{
    return ad_real_terms_(v, AD_REAL_DUAL_(entry), d, -1, dt);
}

/* A unary operation with value y, derivative d and second derivative d2 at a.v, for a in the
 * dual form: its dual derivative is d + eps d2 a', a' being a's tangent. */
AD_REAL_INLINE ad_real ad_real_unary_dual_(ad_tape *t, ad_real a, double y, double d, double d2)
{
    int32_t e = -2 - a.i[0];
    if (!t->dual || e >= t->n) { /* kept from another recording */
        t->status = AD_ERR_ARG;
        return ad_real_const(y);
    }
    double dd = d2 * a.d[0] * t->tangent[e];
    /* a derivative that is 0 with its tangent stops the terms, as first order's does */
    if (d == 0 && dd == 0 && ad_real_finite_(a)) return ad_real_const(y);
    return ad_real_dual_(y, e, a.d[0] * d, a.d[1] * d + a.d[0] * dd);
}

/* The binary rows as numbers, for ad_real_lin2_ to name its operation's second derivatives
 * (AD_REAL_OP_ADD_, ...). */
#define AD_REAL_OP_ENUM_(ID, ...) AD_REAL_OP_##ID##_,
enum { AD_EW_BINARY(AD_REAL_OP_ENUM_) };
#undef AD_REAL_OP_ENUM_

/* One case of ad_real_binary_dual_'s switch: a binary row's second derivatives at (a.v, b.v). */
#define AD_REAL_OP_D2_(ID, name, ...)                                                         \
    case AD_REAL_OP_##ID##_:                                                                  \
        daa = ad_ew_##name##_daa(a.v, b.v, y);                                                \
        dab = ad_ew_##name##_dab(a.v, b.v, y);                                                \
        dbb = ad_ew_##name##_dbb(a.v, b.v, y);                                                \
        break;
/* A binary operation with value y and first derivatives da, db where an operand is in the
 * dual form (the other may be a constant): the second derivatives by op, the operands' dual
 * partials times the operation's dual derivatives, da + eps (daa a' + dab b') and
 * db + eps (dab a' + dbb b'), and, for two entries, one new entry with two edges. */
AD_REAL_INLINE ad_real ad_real_binary_dual_(ad_tape *t, int op, ad_real a, ad_real b, double y,
                                            double da, double db)
{
    double daa = 0, dab = 0, dbb = 0;
    switch (op) {
        AD_EW_BINARY(AD_REAL_OP_D2_)
    default: break;
    }
    /* each operand is in the dual form or a constant: a first-order value here was made by
     * ad_real_var inside f, which the dual form does not follow, or kept from elsewhere */
    bool ma = a.i[0] < -1, mb = b.i[0] < -1;
    int32_t ea = ma ? -2 - a.i[0] : -1, eb = mb ? -2 - b.i[0] : -1;
    if ((!ma && a.i[0] != -1) || (!mb && b.i[0] != -1) || !t->dual || ea >= t->n || eb >= t->n) {
        t->status = AD_ERR_ARG;
        return ad_real_const(y);
    }
    double ta = ma ? a.d[0] * t->tangent[ea] : 0, tb = mb ? b.d[0] * t->tangent[eb] : 0;
    double dda = daa * ta + dab * tb, ddb = dab * ta + dbb * tb;
    double pa = a.d[0] * da, pta = a.d[1] * da + a.d[0] * dda;
    double pb = b.d[0] * db, ptb = b.d[1] * db + b.d[0] * ddb;
    if (!mb) return ad_real_dual_(y, ea, pa, pta);
    if (!ma) return ad_real_dual_(y, eb, pb, ptb);
    if (ea == eb) return ad_real_dual_(y, ea, pa + pb, pta + ptb);
    int64_t n = t->n, e = t->nedge;
    if (n >= t->cap2 || e + 2 > t->edge_cap2) {
        /* f runs on, its values right, writing nothing but a count of what did not fit;
         * standing in for the entry, entry 0 keeps later operations writing (and counting) */
        t->status = AD_ERR_NOMEM;
        t->dual_short++;
        return ad_real_dual_(y, 0, 0, 0);
    }
    t->arg[e] = ea;
    t->partial[e] = pa;
    t->dpartial[e] = pta;
    t->arg[e + 1] = eb;
    t->partial[e + 1] = pb;
    t->dpartial[e + 1] = ptb;
    t->nedge = e + 2;
    t->end[n] = (int32_t)(e + 2);
    t->tangent[n] = da * ta + db * tb;
    t->n = n + 1;
    return ad_real_dual_(y, n, 1, 0);
}

/* The value v with derivative da * (a's) + db * (b's): the union of both term lists, partials
 * added where both name the same entry (so x*x is one term, 2x, and t*t of a two-term t is two
 * terms).  The cases go from the cheapest: a constant operand, then one-term operands, then
 * the overlaps of two and two.  Three or four distinct terms write the result out. */
AD_REAL_INLINE ad_real ad_real_lin2_(ad_tape *t, int op, double v, ad_real a, double da,
                                     ad_real b, double db)
{
    double A0 = a.d[0] * da, A1 = a.d[1] * da, B0 = b.d[0] * db, B1 = b.d[1] * db;
    int32_t a0 = a.i[0], a1 = a.i[1], b0 = b.i[0], b1 = b.i[1];
    /* the dual form only on the constant paths, so two recorded operands pay nothing for it */
    if (b0 < 0 || a0 < 0) {
        if (b0 < -1 || a0 < -1) return ad_real_binary_dual_(t, op, a, b, v, da, db);
        if (b0 < 0) return ad_real_terms_(v, a0, A0, a1, A1);
        return ad_real_terms_(v, b0, B0, b1, B1);
    }
    /* From here on the written-out entry is a0, a1, i2 and perhaps i3. */
    int32_t i2, i3 = -1;
    double d2, d3 = 0;
    if (b1 < 0) {
        if (b0 == a0) return ad_real_terms_(v, a0, A0 + B0, a1, A1);
        if (b0 == a1) return ad_real_terms_(v, a0, A0, a1, A1 + B0);
        if (a1 < 0) return ad_real_terms_(v, a0, A0, b0, B0);
        i2 = b0, d2 = B0;
    } else if (a1 < 0) {
        if (a0 == b0) return ad_real_terms_(v, a0, A0 + B0, b1, B1);
        if (a0 == b1) return ad_real_terms_(v, a0, A0 + B1, b0, B0);
        a1 = b0, A1 = B0, i2 = b1, d2 = B1;
    } else if (a0 == b0) {
        A0 += B0;
        if (a1 == b1) return ad_real_terms_(v, a0, A0, a1, A1 + B1);
        i2 = b1, d2 = B1;
    } else if (a0 == b1) {
        A0 += B1;
        if (a1 == b0) return ad_real_terms_(v, a0, A0, a1, A1 + B0);
        i2 = b0, d2 = B0;
    } else if (a1 == b0) {
        A1 += B0, i2 = b1, d2 = B1;
    } else if (a1 == b1) {
        A1 += B1, i2 = b0, d2 = B0;
    } else {
        i2 = b0, d2 = B0, i3 = b1, d3 = B1;
    }
    return ad_real_write_(t, v, i3 < 0 ? 3 : 4, a0, A0, a1, A1, i2, d2, i3, d3);
}

/* The operations, one per row of ad_ew.h: ad_real_add, ad_real_mul, ..., ad_real_sin,
 * ad_real_erf, ... (ad_real_leaky_relu takes its slope as a third argument), with the
 * formulas the graph engine uses.  Unary operations never write to the tape.  One whose
 * derivative is 0 at this point (relu of a negative number, say) gives a constant: its terms
 * go no further, so what is computed from it records less.  Unless a term is infinite or NaN
 * (ad_real_finite_). */
#define AD_REAL_BINARY_(ID, name, infix_, text_, ta_, tb_, fll_, ffl_, flr_, ffr_, F, DA, DB, ...)   \
    AD_REAL_INLINE ad_real ad_real_##name(ad_tape *t, ad_real a, ad_real b)                   \
    {                                                                                         \
        double y = ad_ew_##name(a.v, b.v);                                                    \
        return ad_real_lin2_(t, AD_REAL_OP_##ID##_, y, a, ad_ew_##name##_da(a.v, b.v, y), b,  \
                             ad_ew_##name##_db(a.v, b.v, y));                                 \
    }
/* ... a unary row's (the dual form takes its own path only where the second derivative is
 * not 0: for neg, relu, abs and leaky_relu the test folds away) ... */
#define AD_REAL_UNARY_(ID, name, ...)                                                         \
    AD_REAL_INLINE ad_real ad_real_##name(ad_tape *t, ad_real a)                              \
    {                                                                                         \
        double y = ad_ew_##name(a.v, 0), d = ad_ew_##name##_d(a.v, y, 0), d2;                 \
        if (a.i[0] < -1 && (d2 = ad_ew_##name##_d2(a.v, y, 0)) != 0)                          \
            return ad_real_unary_dual_(t, a, y, d, d2);                                       \
        return d == 0 && ad_real_finite_(a) ? ad_real_const(y) : ad_real_lin1_(y, a, d);      \
    }
/* ... and a unary row with a parameter. */
#define AD_REAL_UNARY_P_(ID, name, ...)                                                       \
    AD_REAL_INLINE ad_real ad_real_##name(ad_tape *t, ad_real a, double p)                    \
    {                                                                                         \
        double y = ad_ew_##name(a.v, p), d = ad_ew_##name##_d(a.v, y, p), d2;                 \
        if (a.i[0] < -1 && (d2 = ad_ew_##name##_d2(a.v, y, p)) != 0)                          \
            return ad_real_unary_dual_(t, a, y, d, d2);                                       \
        return d == 0 && ad_real_finite_(a) ? ad_real_const(y) : ad_real_lin1_(y, a, d);      \
    }
AD_EW_BINARY(AD_REAL_BINARY_)
AD_EW_UNARY(AD_REAL_UNARY_)
AD_EW_UNARY_P(AD_REAL_UNARY_P_)

/* Conveniences with a plain double c; they never write to the tape.  The linear ones scale
 * the dual form as they scale terms; c / a and a^c take its path as the unary rows do. */
/* a + c with a plain double c. */
AD_REAL_INLINE ad_real ad_real_add_scalar(ad_tape *t, ad_real a, double c) { (void)t; return ad_real_lin1_(a.v + c, a, 1); }
/* a * c with a plain double c. */
AD_REAL_INLINE ad_real ad_real_mul_scalar(ad_tape *t, ad_real a, double c) { (void)t; return ad_real_lin1_(a.v * c, a, c); }
/* c - a with a plain double c. */
AD_REAL_INLINE ad_real ad_real_scalar_sub(ad_tape *t, double c, ad_real a) { (void)t; return ad_real_lin1_(c - a.v, a, -1); }
/* c / a with a plain double c. */
AD_REAL_INLINE ad_real ad_real_scalar_div(ad_tape *t, double c, ad_real a)
{
    double q = c / a.v;
    if (a.i[0] < -1) return ad_real_unary_dual_(t, a, q, -q / a.v, 2 * q / (a.v * a.v));
    return ad_real_lin1_(q, a, -q / a.v);
}
/* a^c with a plain double c (derivatives as ad_real_pow's). */
AD_REAL_INLINE ad_real ad_real_pow_scalar(ad_tape *t, ad_real a, double c)
{
    double y = ad_ew_pow(a.v, c);
    if (a.i[0] < -1) return ad_real_unary_dual_(t, a, y, ad_ew_pow_da(a.v, c, y), ad_ew_pow_daa(a.v, c, y));
    return ad_real_lin1_(y, a, ad_ew_pow_da(a.v, c, y));
}

/* ---- dual numbers: forward mode for C code ----
 * An ad_dual carries a value and its tangent (the directional derivative along the seed the
 * caller chose), so a function written with these operations gives its Jacobian-vector
 * product in one evaluation, with no tape: seed input k with t = 1 for the k-th column of the
 * Jacobian.  The operations are the rows of ad_ew.h again (ad_dual_add, ad_dual_sin,
 * ad_dual_erf, ...; ad_dual_leaky_relu takes its slope as a second argument). */
typedef struct {
    double v; /* the value */
    double t; /* its tangent */
} ad_dual;

/* A dual number from a value and a tangent. */
AD_REAL_INLINE ad_dual ad_dual_make(double v, double t)
{
    ad_dual r = {v, t};
    return r;
}
/* The dual operation of a binary row ... */
#define AD_DUAL_BINARY_(ID, name, infix_, text_, ta_, tb_, fll_, ffl_, flr_, ffr_, F, DA, DB, ...)   \
    AD_REAL_INLINE ad_dual ad_dual_##name(ad_dual a, ad_dual b)                               \
    {                                                                                         \
        double y = ad_ew_##name(a.v, b.v);                                                    \
        double ta = a.t == 0 ? 0 : ad_ew_##name##_da(a.v, b.v, y) * a.t;                      \
        double tb = b.t == 0 ? 0 : ad_ew_##name##_db(a.v, b.v, y) * b.t;                      \
        return ad_dual_make(y, ta + tb);                                                      \
    }
/* ... a unary row's ... */
#define AD_DUAL_UNARY_(ID, name, ...)                                                         \
    AD_REAL_INLINE ad_dual ad_dual_##name(ad_dual a)                                          \
    {                                                                                         \
        double y = ad_ew_##name(a.v, 0);                                                      \
        return ad_dual_make(y, a.t == 0 ? 0 : ad_ew_##name##_d(a.v, y, 0) * a.t);             \
    }
/* ... and a unary row with a parameter. */
#define AD_DUAL_UNARY_P_(ID, name, ...)                                                       \
    AD_REAL_INLINE ad_dual ad_dual_##name(ad_dual a, double p)                                \
    {                                                                                         \
        double y = ad_ew_##name(a.v, p);                                                      \
        return ad_dual_make(y, a.t == 0 ? 0 : ad_ew_##name##_d(a.v, y, p) * a.t);             \
    }
AD_EW_BINARY(AD_DUAL_BINARY_)
AD_EW_UNARY(AD_DUAL_UNARY_)
AD_EW_UNARY_P(AD_DUAL_UNARY_P_)

AD_END_DECLS
#endif
