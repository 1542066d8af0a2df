/*
 * ad_ew.h — the elementwise ops, each defined once.
 *
 * One row of a list below is the whole definition of an elementwise op: its names, its words
 * for traces and pictures, its value, its first derivative and its second derivative.
 * Everything else follows from the row: the op's id and registry entry, the public function
 * (ad_NAME), the scalar fast path, the tensor loops for both dtypes with broadcasting, the
 * reverse rule (vector-Jacobian product), the forward rule (Jacobian-vector product), the tape
 * engine's ad_real_NAME and the dual number's ad_dual_NAME (ad_real.h), the CLI's
 * function names, and the labels of traces, DOT, SVG and HTML.  docs/custom-op.md shows the
 * diff that adds a row.
 *
 * The formulas are C expressions.  A unary op sees its input x, its output y (the value,
 * already computed) and its parameter p (0 for ops without one); a binary op sees its inputs a
 * and b and its output y.  Derivatives may use y to save work (exp' = y).  Subgradients at
 * kinks follow PyTorch: 0 for relu and abs at 0, half each for max and min on ties.  NaN
 * follows PyTorch too: where an input of relu, leaky_relu, abs, max or min is NaN the value is
 * NaN (torch.relu(nan), torch.maximum(1, nan)), and the local derivatives are torch's there:
 * 1 for relu, the slope for leaky_relu, 0 for abs, 1 to both sides of max and min.
 *
 * The last column (two for a binary op) is the derivative once more, written with the graph's
 * ops (ad.h) for gradients as graphs (ad_grad_graph), which multiply the output's gradient by
 * it; being ops, it can be differentiated again, to any order.  It sees the graph g, the nodes
 * x, y (or a, b, y) and p, and: K(c), a constant of the input's dtype; STEP(n), 1 where n > 0
 * and 0 elsewhere, SIGN(n), n's sign, both with derivative 0 (for guards: pow's derivative is 0
 * where its formula's is); ONE and NEG_ONE, the gradient passed on as it is or negated; ZERO,
 * no gradient at all (the comparisons); LOCAL,
 * for a derivative that is piecewise constant: the derivative column evaluated per element,
 * its own derivative 0.
 *
 * The functions this header defines (ad_ew_NAME, ad_ew_NAME_d, ad_ew_NAME_d2, ...) are static
 * inline, so the formulas compile into every caller; nothing here is a library symbol.
 */
#ifndef AD_EW_H
#define AD_EW_H

#include <math.h>

/* Helpers the formulas share.  The logistic function, never forming exp of a large positive
 * number. */
static inline double ad_ew_logistic_(double x)
{
    if (x >= 0) return 1 / (1 + exp(-x));
    double e = exp(x);
    return e / (1 + e);
}
/* The standard normal density, for the erf form of GELU. */
static inline double ad_ew_phi_(double x) { return 0.3989422804014327 * exp(-0.5 * x * x); }
/* The standard normal distribution function. */
static inline double ad_ew_Phi_(double x) { return 0.5 * (1 + erf(x * 0.7071067811865476)); }
/* The tanh form of GELU is y = x/2 (1 + tanh(u)) with u = k (x + c x^3): this is k, sqrt(2/pi). */
#define AD_EW_GELU_K_ 0.7978845608028654
/* ... and this is c. */
#define AD_EW_GELU_C_ 0.044715
/* u of the tanh form of GELU. */
static inline double ad_ew_gelu_u_(double x) { return AD_EW_GELU_K_ * (x + AD_EW_GELU_C_ * x * x * x); }
/* du/dx. */
static inline double ad_ew_gelu_du_(double x) { return AD_EW_GELU_K_ * (1 + 3 * AD_EW_GELU_C_ * x * x); }
/* The tanh form's derivative, (1 + t)/2 + x/2 (1 - t^2) u' with t = tanh(u). */
static inline double ad_ew_gelu_tanh_d_(double x)
{
    double t = tanh(ad_ew_gelu_u_(x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * ad_ew_gelu_du_(x);
}
/* The tanh form's second derivative. */
static inline double ad_ew_gelu_tanh_d2_(double x)
{
    double t = tanh(ad_ew_gelu_u_(x)), du = ad_ew_gelu_du_(x), s = 1 - t * t;
    return s * du + 0.5 * x * s * (6 * AD_EW_GELU_K_ * AD_EW_GELU_C_ * x - 2 * t * du * du);
}
/* PyTorch's softplus: x itself above the threshold 20, where log1p(exp(x)) rounds to x. */
static inline double ad_ew_softplus_(double x) { return x > 20 ? x : log1p(exp(x)); }

/*
 * Unary ops: X(ID, name, symbol, prefix, local gradient text, value, derivative, second
 * derivative, derivative as graph ops).  symbol is the gate's label in pictures (NULL: the name); prefix is how the
 * stepper writes it before its operand ("-x", "1/x"; NULL: as a call, "exp(x)").  Ops with a
 * parameter are in AD_EW_UNARY_P.
 */
#define AD_EW_UNARY(X)                                                                        \
    X(NEG, neg, NULL, "-", "d/dx[-x] = -1", -x, -1, 0,                                         \
      NEG_ONE)                                                                                 \
    X(RECIP, recip, "1/x", "1/", "d/dx[1/x] = -1/x^2", 1 / x, -y * y, 2 * y * y * y,           \
      ad_neg(g, ad_square(g, y)))                                                              \
    X(EXP, exp, NULL, NULL, "d/dx[exp(x)] = exp(x)", exp(x), y, y,                             \
      y)                                                                                       \
    X(LOG, log, NULL, NULL, "d/dx[log(x)] = 1/x", log(x), 1 / x, -1 / (x * x),                 \
      ad_recip(g, x))                                                                          \
    X(SQRT, sqrt, NULL, NULL, "d/dx[sqrt(x)] = 1/(2*sqrt(x))", sqrt(x), 0.5 / y,               \
      -0.25 / (y * y * y),                                                                     \
      ad_div(g, K(0.5), y))                                                                    \
    X(SIN, sin, NULL, NULL, "d/dx[sin(x)] = cos(x)", sin(x), cos(x), -y,                       \
      ad_cos(g, x))                                                                            \
    X(COS, cos, NULL, NULL, "d/dx[cos(x)] = -sin(x)", cos(x), -sin(x), -y,                     \
      ad_neg(g, ad_sin(g, x)))                                                                 \
    X(TAN, tan, NULL, NULL, "d/dx[tan(x)] = 1 + tan(x)^2", tan(x), 1 + y * y,                  \
      2 * y * (1 + y * y),                                                                     \
      ad_add(g, K(1), ad_square(g, y)))                                                        \
    X(TANH, tanh, NULL, NULL, "d/dx[tanh(x)] = 1 - tanh(x)^2", tanh(x), 1 - y * y,             \
      -2 * y * (1 - y * y),                                                                    \
      ad_sub(g, K(1), ad_square(g, y)))                                                        \
    X(SIGMOID, sigmoid, NULL, NULL, "d/dx[sigmoid(x)] = sigmoid(x)*(1 - sigmoid(x))",          \
      ad_ew_logistic_(x), y * (1 - y), y * (1 - y) * (1 - 2 * y),                              \
      ad_mul(g, y, ad_sub(g, K(1), y)))                                                        \
    X(RELU, relu, NULL, NULL, "d/dx[max(0,x)] = 1 if x > 0, else 0", !(x <= 0) ? x : 0,        \
      x <= 0 ? 0 : 1, 0,                                                                       \
      LOCAL)                                                                                   \
    X(ABS, abs, NULL, NULL, "d/dx[|x|] = sign(x) (0 at 0)", fabs(x),                           \
      x > 0 ? 1 : x < 0 ? -1 : 0, 0,                                                           \
      LOCAL)                                                                                   \
    X(SQUARE, square, NULL, NULL, "d/dx[x^2] = 2*x", x * x, 2 * x, 2,                          \
      ad_mul(g, K(2), x))                                                                      \
    X(SOFTPLUS, softplus, NULL, NULL, "d/dx[log(1 + exp(x))] = sigmoid(x)",                    \
      ad_ew_softplus_(x), x > 20 ? 1 : ad_ew_logistic_(x),                                     \
      x > 20 ? 0 : ad_ew_logistic_(x) * (1 - ad_ew_logistic_(x)),                              \
      ad_add(g, ad_sigmoid(g, x), ad_mul(g, STEP(ad_add(g, x, K(-20))), ad_sub(g, K(1),        \
      ad_sigmoid(g, x)))))                                                                     \
    X(SILU, silu, NULL, NULL, "d/dx[x*sigmoid(x)] = s*(1 + x*(1 - s)), s = sigmoid(x)",        \
      x * ad_ew_logistic_(x), ad_ew_logistic_(x) * (1 + x * (1 - ad_ew_logistic_(x))),         \
      ad_ew_logistic_(x) * (1 - ad_ew_logistic_(x)) * (2 + x * (1 - 2 * ad_ew_logistic_(x))),  \
      ad_mul(g, ad_sigmoid(g, x), ad_add(g, K(1), ad_mul(g, x, ad_sub(g, K(1),                 \
      ad_sigmoid(g, x))))))                                                                    \
    X(GELU, gelu, NULL, NULL, "d/dx[x*Phi(x)] = Phi(x) + x*phi(x)", x * ad_ew_Phi_(x),         \
      ad_ew_Phi_(x) + x * ad_ew_phi_(x), ad_ew_phi_(x) * (2 - x * x),                          \
      ad_add(g, ad_mul(g, K(0.5), ad_add(g, K(1), ad_erf(g, ad_mul(g,                          \
      K(0.7071067811865476), x)))), ad_mul(g, x, ad_mul(g, K(0.3989422804014327), ad_exp(g,    \
      ad_mul(g, K(-0.5), ad_square(g, x)))))))                                                 \
    X(GELU_TANH, gelu_tanh, NULL, NULL,                                                        \
      "d/dx[x/2*(1 + tanh(u))] = (1 + t)/2 + x/2*(1 - t^2)*u', u = k(x + 0.044715x^3)",        \
      0.5 * x * (1 + tanh(ad_ew_gelu_u_(x))), ad_ew_gelu_tanh_d_(x), ad_ew_gelu_tanh_d2_(x),   \
      ad_add(g, ad_mul(g, K(0.5), ad_add(g, K(1), ad_tanh(g, ad_mul(g, K(AD_EW_GELU_K_),       \
      ad_add(g, x, ad_mul(g, K(AD_EW_GELU_C_), ad_mul(g, x, ad_square(g, x)))))))),            \
      ad_mul(g, ad_mul(g, K(0.5), x), ad_mul(g, ad_sub(g, K(1), ad_square(g, ad_tanh(g,        \
      ad_mul(g, K(AD_EW_GELU_K_), ad_add(g, x, ad_mul(g, K(AD_EW_GELU_C_), ad_mul(g, x,        \
      ad_square(g, x)))))))), ad_mul(g, K(AD_EW_GELU_K_), ad_add(g, K(1), ad_mul(g,            \
      K(3 * AD_EW_GELU_C_), ad_square(g, x))))))))                                             \
    X(LOG1P, log1p, NULL, NULL, "d/dx[log(1 + x)] = 1/(1 + x)", log1p(x), 1 / (1 + x),         \
      -1 / ((1 + x) * (1 + x)),                                                                \
      ad_recip(g, ad_add(g, K(1), x)))                                                         \
    X(EXPM1, expm1, NULL, NULL, "d/dx[exp(x) - 1] = exp(x)", expm1(x), y + 1, y + 1,           \
      ad_add(g, y, K(1)))                                                                      \
    X(ERF, erf, NULL, NULL, "d/dx[erf(x)] = 2/sqrt(pi)*exp(-x^2)", erf(x),                     \
      1.1283791670955126 * exp(-x * x), -2 * x * 1.1283791670955126 * exp(-x * x),             \
      ad_mul(g, K(1.1283791670955126), ad_exp(g, ad_neg(g, ad_square(g, x)))))

/* Unary ops with one numeric parameter p (the same columns). */
#define AD_EW_UNARY_P(X)                                                                      \
    X(LEAKY_RELU, leaky_relu, NULL, NULL, "d/dx[leaky_relu(x)] = 1 if x > 0, else slope",      \
      x > 0 ? x : p * x, x > 0 ? 1 : p, 0,                                                     \
      LOCAL)

/*
 * Binary ops: X(ID, name, infix, local gradient text, d/da text, d/db text, then the gate of a
 * constant c folded in on the left and on the right (label, formula; {c} stands for the
 * constant), value, d/da, d/db, d2/da2, d2/da db, d2/db2, then d/da and d/db as graph ops).  infix is how the stepper writes
 * the op between its operands (NULL: as a call, "max(a, b)"); the texts name input 0 x and
 * input 1 y, as the slides do.  The comparisons (lt ... ne) are 1 where they hold and 0
 * where not (NaN compares false, except for ne), with derivative 0: they are conditions for
 * ad_where and ad_branch, recorded so that a replay re-decides them (docs/design.md, "Replay").
 */
#define AD_EW_BINARY(X)                                                                       \
    X(ADD, add, " + ", "d/dx[x + y] = 1, d/dy[x + y] = 1", "d/dx[x + y] = 1",                  \
      "d/dy[x + y] = 1", "+{c}", "d/dx[x + {c}] = 1", "+{c}", "d/dx[x + {c}] = 1", a + b, 1,   \
      1, 0, 0, 0,                                                                              \
      ONE,                                                                                     \
      ONE)                                                                                     \
    X(SUB, sub, " - ", "d/dx[x - y] = 1, d/dy[x - y] = -1", "d/dx[x - y] = 1",                 \
      "d/dy[x - y] = -1", "{c}-x", "d/dx[{c} - x] = -1", "-{c}", "d/dx[x - {c}] = 1", a - b,   \
      1, -1, 0, 0, 0,                                                                          \
      ONE,                                                                                     \
      NEG_ONE)                                                                                 \
    X(MUL, mul, " * ", "d/dx[x*y] = y, d/dy[x*y] = x", "d/dx[x*y] = y", "d/dy[x*y] = x",       \
      "*{c}", "d/dx[{c}*x] = {c}", "*{c}", "d/dx[{c}*x] = {c}", a * b, b, a, 0, 1, 0,          \
      b,                                                                                       \
      a)                                                                                       \
    X(DIV, div, " / ", "d/dx[x/y] = 1/y, d/dy[x/y] = -x/y^2", "d/dx[x/y] = 1/y",               \
      "d/dy[x/y] = -x/y^2", "{c}/x", "d/dx[{c}/x] = -{c}/x^2", "/{c}", "d/dx[x/{c}] = 1/{c}",  \
      a / b, 1 / b, -y / b, 0, -1 / (b * b), 2 * y / (b * b),                                  \
      ad_recip(g, b),                                                                          \
      ad_neg(g, ad_div(g, y, b)))                                                              \
    X(POW, pow, "^", "d/dx[x^y] = y*x^(y-1), d/dy[x^y] = x^y*log(x)",                          \
      "d/dx[x^y] = y*x^(y-1)", "d/dy[x^y] = x^y*log(x)", "{c}^x", "d/dx[{c}^x] = {c}^x*log({c})", \
      "^{c}", "d/dx[x^{c}] = {c}*x^({c}-1)", pow(a, b), b == 0 ? 0 : b * pow(a, b - 1),        \
      a > 0 ? y * log(a) : 0, b == 0 || b == 1 ? 0 : b * (b - 1) * pow(a, b - 2),              \
      a > 0 ? pow(a, b - 1) * (1 + b * log(a)) : 0, a > 0 ? y * log(a) * log(a) : 0,           \
      ad_mul(g, b, ad_pow(g, a, ad_sub(g, b, ad_square(g, SIGN(b))))),                         \
      ad_mul(g, y, ad_log(g, ad_add(g, ad_mul(g, a, STEP(a)), ad_sub(g, K(1), STEP(a))))))     \
    X(MAX, max, NULL, "d/dx[max(x,y)] = 1 if x > y (1/2 on ties), d/dy = 1 if y > x",          \
      "d/dx[max(x,y)] = [x > y]", "d/dy[max(x,y)] = [y > x]", "max(x,{c})",                    \
      "d/dx[max(x,{c})] = [x > {c}]", "max(x,{c})", "d/dx[max(x,{c})] = [x > {c}]",            \
      a >= b || a != a ? a : b, a > b ? 1 : a < b ? 0 : a == b ? 0.5 : 1,                      \
      b > a ? 1 : b < a ? 0 : a == b ? 0.5 : 1, 0, 0, 0,                                       \
      LOCAL,                                                                                   \
      LOCAL)                                                                                   \
    X(MIN, min, NULL, "d/dx[min(x,y)] = 1 if x < y (1/2 on ties), d/dy = 1 if y < x",          \
      "d/dx[min(x,y)] = [x < y]", "d/dy[min(x,y)] = [y < x]", "min(x,{c})",                    \
      "d/dx[min(x,{c})] = [x < {c}]", "min(x,{c})", "d/dx[min(x,{c})] = [x < {c}]",            \
      a <= b || a != a ? a : b, a < b ? 1 : a > b ? 0 : a == b ? 0.5 : 1,                      \
      b < a ? 1 : b > a ? 0 : a == b ? 0.5 : 1, 0, 0, 0,                                       \
      LOCAL,                                                                                   \
      LOCAL)                                                                                   \
    X(LT, lt, " < ", "d/dx[x < y] = 0, d/dy[x < y] = 0", "d/dx[x < y] = 0",                    \
      "d/dy[x < y] = 0", "{c} < x", "d/dx[{c} < x] = 0", "< {c}", "d/dx[x < {c}] = 0",         \
      a < b, 0, 0, 0, 0, 0,                                                                    \
      ZERO,                                                                                    \
      ZERO)                                                                                    \
    X(LE, le, " <= ", "d/dx[x <= y] = 0, d/dy[x <= y] = 0", "d/dx[x <= y] = 0",                \
      "d/dy[x <= y] = 0", "{c} <= x", "d/dx[{c} <= x] = 0", "<= {c}", "d/dx[x <= {c}] = 0",    \
      a <= b, 0, 0, 0, 0, 0,                                                                   \
      ZERO,                                                                                    \
      ZERO)                                                                                    \
    X(GT, gt, " > ", "d/dx[x > y] = 0, d/dy[x > y] = 0", "d/dx[x > y] = 0",                    \
      "d/dy[x > y] = 0", "{c} > x", "d/dx[{c} > x] = 0", "> {c}", "d/dx[x > {c}] = 0",         \
      a > b, 0, 0, 0, 0, 0,                                                                    \
      ZERO,                                                                                    \
      ZERO)                                                                                    \
    X(GE, ge, " >= ", "d/dx[x >= y] = 0, d/dy[x >= y] = 0", "d/dx[x >= y] = 0",                \
      "d/dy[x >= y] = 0", "{c} >= x", "d/dx[{c} >= x] = 0", ">= {c}", "d/dx[x >= {c}] = 0",    \
      a >= b, 0, 0, 0, 0, 0,                                                                   \
      ZERO,                                                                                    \
      ZERO)                                                                                    \
    X(EQ, eq, " == ", "d/dx[x == y] = 0, d/dy[x == y] = 0", "d/dx[x == y] = 0",                \
      "d/dy[x == y] = 0", "{c} == x", "d/dx[{c} == x] = 0", "== {c}", "d/dx[x == {c}] = 0",    \
      a == b, 0, 0, 0, 0, 0,                                                                   \
      ZERO,                                                                                    \
      ZERO)                                                                                    \
    X(NE, ne, " != ", "d/dx[x != y] = 0, d/dy[x != y] = 0", "d/dx[x != y] = 0",                \
      "d/dy[x != y] = 0", "{c} != x", "d/dx[{c} != x] = 0", "!= {c}", "d/dx[x != {c}] = 0",    \
      a != b, 0, 0, 0, 0, 0,                                                                   \
      ZERO,                                                                                    \
      ZERO)

/* The formulas as functions: ad_ew_exp(x, p), ad_ew_exp_d(x, y, p), ad_ew_exp_d2(x, y, p);
 * ad_ew_mul(a, b), ad_ew_mul_da(a, b, y), ..._db, ..._daa, ..._dab, ..._dbb. */
#define AD_EW_UNARY_FN_(ID, name, sym, pre, text, F, D, D2, ...)                                 \
    static inline double ad_ew_##name(double x, double p) { (void)x, (void)p; return F; }     \
    static inline double ad_ew_##name##_d(double x, double y, double p)                       \
    {                                                                                         \
        (void)x, (void)y, (void)p;                                                            \
        return D;                                                                             \
    }                                                                                         \
    static inline double ad_ew_##name##_d2(double x, double y, double p)                      \
    {                                                                                         \
        (void)x, (void)y, (void)p;                                                            \
        return D2;                                                                            \
    }
/* The same for a binary row. */
#define AD_EW_BINARY_FN_(ID, name, infix_, text_, ta_, tb_, fll_, ffl_, flr_, ffr_, F, DA, DB, \
                         DAA, DAB, DBB, ...)                                                       \
    static inline double ad_ew_##name(double a, double b) { return F; }                       \
    static inline double ad_ew_##name##_da(double a, double b, double y)                      \
    {                                                                                         \
        (void)a, (void)b, (void)y;                                                            \
        return DA;                                                                            \
    }                                                                                         \
    static inline double ad_ew_##name##_db(double a, double b, double y)                      \
    {                                                                                         \
        (void)a, (void)b, (void)y;                                                            \
        return DB;                                                                            \
    }                                                                                         \
    static inline double ad_ew_##name##_daa(double a, double b, double y)                     \
    {                                                                                         \
        (void)a, (void)b, (void)y;                                                            \
        return DAA;                                                                           \
    }                                                                                         \
    static inline double ad_ew_##name##_dab(double a, double b, double y)                     \
    {                                                                                         \
        (void)a, (void)b, (void)y;                                                            \
        return DAB;                                                                           \
    }                                                                                         \
    static inline double ad_ew_##name##_dbb(double a, double b, double y)                     \
    {                                                                                         \
        (void)a, (void)b, (void)y;                                                            \
        return DBB;                                                                           \
    }
AD_EW_UNARY(AD_EW_UNARY_FN_)
AD_EW_UNARY_P(AD_EW_UNARY_FN_)
AD_EW_BINARY(AD_EW_BINARY_FN_)

#endif
