/* Property-based tests (issue 20): random graphs, built from the registry's elementwise ops
 * and the tensor ops with random shapes, broadcasting and fan-out, must agree with themselves
 * in three ways:
 *   - reverse mode against central finite differences (float64);
 *   - forward mode against reverse mode: the tangent of a scalar L along a random direction v
 *     equals <dL/dx, v> (float64 and float32, each with its own tolerance);
 *   - float32 against float64 values;
 *   - second order (float64): H v by forward over reverse (ad_hvp_graph) against reverse over
 *     reverse (the gradient graph's <g, v> swept backward) and against central differences of
 *     the gradient along v;
 *   - replay (both dtypes): the graph replayed at new inputs against the graph recorded there,
 *     bit for bit.
 * A case is a seed: the graph's structure comes from the seed alone, so the same graph can be
 * rebuilt at perturbed inputs for the differences, and a failure names the seed that repeats
 * it.  CI runs a fixed seed and a small count; for a long local run:
 *   BACKPROP_PROPERTY_ITERS=100000 build/tests/test_ad_property
 * and BACKPROP_PROPERTY_SEED=N runs the one case N (BACKPROP_PROPERTY_VERBOSE=1 lists the ops
 * of each case). */
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_INPUTS = 3, MAX_POOL = 48, MAX_ELEMS = 96 };

/* ck_assert_msg reports every passing check to the parent process (a write per check), which
 * made the long mode spend its time in write(2): checks here call Check only on failure. */
#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                               \
    } while (0)

/* The elementwise ops of the registry by arity, found once: a new row of ad_ew.h (or a
 * registered op) is tested with no edit here. */
static int unary_ops[64], binary_ops[64], nunary, nbinary, unary_nparam[64];

static void find_elementwise_ops(void)
{
    if (nunary) return;
    for (int id = 0; id < ad_op_count(); id++) {
        int arity, nparam;
        if (!ad_op_is_elementwise(id, &arity, &nparam)) continue;
        if (arity == 1 && nunary < 64) unary_nparam[nunary] = nparam, unary_ops[nunary++] = id;
        if (arity == 2 && nbinary < 64) binary_ops[nbinary++] = id;
    }
}

/* What a case knows while its graph is built. */
typedef struct {
    ad_graph *g;
    ad_dtype dt;
    ad_rng rng;       /* the structure's random stream (from the seed alone) */
    ad_node *pool[MAX_POOL];
    bool used[MAX_POOL];
    int n;
    double min_gap;   /* smallest |a - b| at a max or min: near a kink, differences lie */
    char log[2048];   /* the ops applied, for the failure message */
} builder;

static int pick(builder *b, int n) { return (int)(ad_rng_next(&b->rng) % (uint64_t)n); }

static void note(builder *b, const char *what)
{
    size_t k = strlen(b->log);
    snprintf(b->log + k, sizeof b->log - k, "%s ", what);
}

static ad_shape shape_of(const ad_node *n) { return ad_node_shape(n); }

/* NumPy broadcasting of two shapes; false if they do not broadcast. */
static bool broadcast(ad_shape a, ad_shape b, ad_shape *out)
{
    int r = a.rank > b.rank ? a.rank : b.rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int64_t da = i < r - a.rank ? 1 : a.dim[i - (r - a.rank)];
        int64_t db = i < r - b.rank ? 1 : b.dim[i - (r - b.rank)];
        if (da != db && da != 1 && db != 1) return false;
        out->dim[i] = da > db ? da : db;
    }
    return true;
}

static void add(builder *b, ad_node *n, const char *what)
{
    CHECK(n != NULL, "%s failed: %s (ops: %s)", what, ad_error(b->g), b->log);
    note(b, what);
    if (b->n < MAX_POOL) b->pool[b->n++] = n;
}

static ad_node *any(builder *b)
{
    int i = pick(b, b->n);
    b->used[i] = true;
    return b->pool[i];
}

/* Into (0.5, 1.5), where every elementwise op is smooth and tame (log, sqrt, recip, pow of a
 * positive base, tan below pi/2; relu and abs away from their kinks): 0.5 + sigmoid(x). */
static ad_node *tame(builder *b, ad_node *x)
{
    return ad_add_scalar(b->g, ad_sigmoid(b->g, x), 0.5);
}

/* The smallest |a - b| over the broadcast elements, from a node that nothing depends on. */
static void watch_gap(builder *b, ad_node *x, ad_node *y)
{
    ad_node *d = ad_sub(b->g, x, y);
    for (int64_t i = 0; d && i < ad_node_size(d); i++)
        if (fabs(ad_node_get(d, i)) < b->min_gap) b->min_gap = fabs(ad_node_get(d, i));
}

/* One random op on random members of the pool. */
static void grow(builder *b)
{
    ad_graph *g = b->g;
    ad_node *a = any(b);
    ad_shape s = shape_of(a);
    int64_t size = ad_node_size(a);
    char what[96];
    switch (pick(b, 17)) {
    case 0:
    case 1:
    case 2: { /* a unary elementwise op of the registry */
        int k = pick(b, nunary);
        double p = 0.1 + 0.2 * ad_rng_uniform(&b->rng);
        ad_node *in = tame(b, a);
        snprintf(what, sizeof what, "%s", ad_op_get(unary_ops[k])->name);
        add(b, ad_apply(g, unary_ops[k], &in, 1, &p, unary_nparam[k]), what);
        return;
    }
    case 3:
    case 4:
    case 5: { /* a binary one with a partner that broadcasts (a itself at least: fan-out) */
        ad_node *c = a;
        ad_shape out;
        for (int tries = 0; tries < 8; tries++) {
            ad_node *t = b->pool[pick(b, b->n)];
            if (broadcast(s, shape_of(t), &out) && ad_shape_size(&out) <= MAX_ELEMS) { c = t; break; }
        }
        int k = pick(b, nbinary);
        ad_node *in[2] = {tame(b, a), tame(b, c)};
        if (strstr(" max min lt le gt ge eq ne ", ad_op_get(binary_ops[k])->name)) watch_gap(b, in[0], in[1]);
        snprintf(what, sizeof what, "%s", ad_op_get(binary_ops[k])->name);
        add(b, ad_apply(g, binary_ops[k], in, 2, NULL, 0), what);
        return;
    }
    case 6: { /* matmul: [.., m, k] x [k, n] with a partner of the right rows, else a^T */
        if (s.rank < 2) break;
        ad_node *c = NULL;
        int64_t m = s.dim[s.rank - 2], k = s.dim[s.rank - 1], batch = size / (m * k);
        for (int i = 0; i < b->n && !c; i++) {
            ad_shape t = shape_of(b->pool[i]);
            if (t.rank == 2 && t.dim[0] == k && batch * m * t.dim[1] <= MAX_ELEMS) c = b->pool[i];
        }
        if (!c && s.rank == 2 && s.dim[0] * s.dim[0] <= MAX_ELEMS) c = ad_transpose(g, a);
        if (!c) break;
        add(b, ad_matmul(g, a, c), "matmul");
        return;
    }
    case 7: /* reductions */
        if (s.rank == 0 || pick(b, 3) == 0) {
            add(b, pick(b, 2) ? ad_sum(g, a) : ad_mean(g, a), "sum/mean");
        } else {
            int axis = pick(b, s.rank) - (pick(b, 2) ? s.rank : 0);
            bool keep = pick(b, 2);
            add(b, pick(b, 2) ? ad_sum_axis(g, a, axis, keep) : ad_mean_axis(g, a, axis, keep),
                "sum/mean_axis");
        }
        return;
    case 8:
        if (s.rank < 2) break;
        add(b, ad_transpose(g, a), "transpose");
        return;
    case 9: { /* reshape: flat, a column, or split a dimension of even size */
        ad_shape r = {.rank = 1, .dim = {size}};
        int how = pick(b, 3);
        if (how == 1) r = AD_SHAPE(size, 1);
        if (how == 2 && size % 2 == 0) r = AD_SHAPE(2, size / 2);
        add(b, ad_reshape(g, a, r), "reshape");
        return;
    }
    case 10: { /* broadcast_to: a new leading axis, or 1-sized axes stretched */
        if (s.rank >= 3 || size * 3 > MAX_ELEMS) break;
        ad_shape r = s;
        bool stretched = false;
        for (int d = 0; d < r.rank; d++)
            if (r.dim[d] == 1) r.dim[d] = 3, stretched = true;
        if (!stretched) {
            r.rank = s.rank + 1;
            r.dim[0] = 2;
            for (int d = 0; d < s.rank; d++) r.dim[d + 1] = s.dim[d];
        }
        add(b, ad_broadcast_to(g, a, r), "broadcast_to");
        return;
    }
    case 11: { /* slice along an axis of length >= 2 */
        for (int d = 0; d < s.rank; d++)
            if (s.dim[d] >= 2) {
                int64_t start = pick(b, (int)s.dim[d] - 1);
                int64_t end = start + 1 + pick(b, (int)(s.dim[d] - start));
                add(b, ad_slice(g, a, d, start, end), "slice");
                return;
            }
        break;
    }
    case 12: { /* concat with itself or an equal-shaped node */
        if (s.rank == 0 || size * 2 > MAX_ELEMS) break;
        ad_node *c = a;
        for (int i = 0; i < b->n; i++) {
            ad_shape t = shape_of(b->pool[i]);
            bool same = t.rank == s.rank && !memcmp(t.dim, s.dim, sizeof t.dim[0] * (size_t)s.rank);
            if (b->pool[i] != a && same && pick(b, 2)) {
                c = b->pool[i];
                break;
            }
        }
        ad_node *xs[2] = {a, c};
        add(b, ad_concat(g, xs, 2, pick(b, s.rank)), "concat");
        return;
    }
    case 14: { /* linear: x [n, k], W [o, k] (a itself at least), b [o] when the pool has one */
        if (s.rank != 2) break;
        ad_node *w = a, *bias = NULL;
        for (int i = 0; i < b->n; i++) {
            ad_shape t = shape_of(b->pool[i]);
            if (t.rank == 2 && t.dim[1] == s.dim[1] && s.dim[0] * t.dim[0] <= MAX_ELEMS && pick(b, 2)) {
                w = b->pool[i];
                break;
            }
        }
        for (int i = 0; i < b->n && !bias; i++) {
            ad_shape t = shape_of(b->pool[i]);
            if (t.rank == 1 && t.dim[0] == ad_node_shape(w).dim[0]) bias = b->pool[i];
        }
        add(b, ad_linear(g, a, w, bias), bias ? "linear+bias" : "linear");
        return;
    }
    case 15: { /* mse against an equal-shaped node, or against a tamed copy of a */
        ad_node *c = tame(b, a);
        for (int i = 0; i < b->n; i++) {
            ad_shape t = shape_of(b->pool[i]);
            bool same = t.rank == s.rank && !memcmp(t.dim, s.dim, sizeof t.dim[0] * (size_t)s.rank);
            if (b->pool[i] != a && same) {
                c = b->pool[i];
                break;
            }
        }
        add(b, ad_mse(g, a, c), "mse");
        return;
    }
    case 16: { /* where(a > c, a, c) with a partner that broadcasts: re-decided by a replay */
        ad_node *c = a;
        ad_shape out;
        for (int tries = 0; tries < 8; tries++) {
            ad_node *t = b->pool[pick(b, b->n)];
            if (broadcast(s, shape_of(t), &out) && ad_shape_size(&out) <= MAX_ELEMS) { c = t; break; }
        }
        watch_gap(b, a, c);
        add(b, ad_where(g, ad_gt(g, a, c), a, c), "where");
        return;
    }
    case 13:
        if (s.rank == 0) break;
        add(b, pick(b, 2) ? ad_softmax(g, a, -1 - pick(b, s.rank)) : ad_log_softmax(g, a, pick(b, s.rank)),
            "softmax/log_softmax");
        return;
    }
    add(b, ad_mul_scalar(g, a, 0.5), "mul_scalar");
}

/* The inputs' shapes: one base [r, c] and shapes that broadcast with it. */
static ad_shape input_shape(ad_rng *r, ad_shape base)
{
    switch (ad_rng_next(r) % 6) {
    case 0: return AD_SHAPE(1, base.dim[1]);
    case 1: return AD_SHAPE(base.dim[0], 1);
    case 2: return AD_SHAPE(base.dim[1]);
    case 3: return AD_SHAPE0;
    default: return base;
    }
}

/* A case: its inputs' shapes and values, and a direction v for forward mode. */
typedef struct {
    uint64_t seed;
    int nin;
    ad_shape shape[MAX_INPUTS];
    double x[MAX_INPUTS][MAX_ELEMS], v[MAX_INPUTS][MAX_ELEMS], w[MAX_POOL][MAX_ELEMS];
} spec;

static void make_spec(spec *c, uint64_t seed)
{
    ad_rng r;
    ad_rng_seed(&r, seed ^ 0x5eed);
    c->seed = seed;
    c->nin = 1 + (int)(ad_rng_next(&r) % MAX_INPUTS);
    ad_shape base = AD_SHAPE(1 + (int64_t)(ad_rng_next(&r) % 4), 1 + (int64_t)(ad_rng_next(&r) % 4));
    for (int i = 0; i < c->nin; i++) {
        c->shape[i] = input_shape(&r, base);
        for (int k = 0; k < MAX_ELEMS; k++) {
            c->x[i][k] = 0.5 + 1.5 * ad_rng_uniform(&r); /* [0.5, 2] */
            c->v[i][k] = 2 * ad_rng_uniform(&r) - 1;
        }
    }
    for (int i = 0; i < MAX_POOL; i++)
        for (int k = 0; k < MAX_ELEMS; k++) c->w[i][k] = 2 * ad_rng_uniform(&r) - 1;
}

/* Builds the case's graph at inputs x (NULL: the case's own) in dtype dt and returns the scalar
 * L = sum over the nodes nothing consumed of sum(w * node), so every op reaches L. */
static ad_node *build(builder *b, const spec *c, ad_dtype dt, double (*x)[MAX_ELEMS], ad_node **leaves)
{
    memset(b->used, 0, sizeof b->used);
    b->n = 0;
    b->dt = dt;
    b->min_gap = INFINITY;
    b->log[0] = 0;
    ad_rng_seed(&b->rng, c->seed);
    for (int i = 0; i < c->nin; i++) {
        leaves[i] = ad_var_array(b->g, "x", dt, c->shape[i], x ? x[i] : c->x[i]);
        add(b, leaves[i], "input");
    }
    int steps = 2 + pick(b, 7);
    for (int i = 0; i < steps; i++) grow(b);
    ad_node *L = NULL;
    for (int i = c->nin; i < b->n; i++) {
        if (b->used[i]) continue;
        ad_node *n = b->pool[i];
        ad_node *w = ad_const(b->g, dt, ad_node_shape(n), c->w[i]);
        ad_node *t = ad_sum(b->g, ad_mul(b->g, n, w));
        L = L ? ad_add(b->g, L, t) : t;
    }
    CHECK(L != NULL && ad_status_of(b->g) == AD_OK, "seed %llu: %s (ops: %s)",
                  (unsigned long long)c->seed, ad_error(b->g), b->log);
    return L;
}

/* L at inputs x, on graph g reset first.  The checks reuse their graphs: a new graph per
 * evaluation (a 1 MiB arena block each) made the sanitizer builds spend minutes in mmap. */
static double value_at(ad_graph *g, const spec *c, double (*x)[MAX_ELEMS])
{
    ad_graph_reset(g);
    builder b = {.g = g};
    ad_node *leaves[MAX_INPUTS];
    return ad_value(build(&b, c, AD_F64, x, leaves));
}

/* Reverse mode against central differences, float64, on graphs g and eval. */
static void check_differences(const spec *c, ad_graph *g, ad_graph *eval)
{
    ad_graph_reset(g);
    builder b = {.g = g};
    ad_node *leaves[MAX_INPUTS];
    ad_node *L = build(&b, c, AD_F64, NULL, leaves);
    CHECK(ad_backward(b.g, L) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed, ad_error(b.g));
    if (b.min_gap < 1e-4) return; /* max or min near a tie: the difference straddles the kink */
    static double x[MAX_INPUTS][MAX_ELEMS];
    memcpy(x, c->x, sizeof x);
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(leaves[i]); k++) {
            double h = 1e-5, x0 = x[i][k];
            x[i][k] = x0 + h;
            double up = value_at(eval, c, x);
            x[i][k] = x0 - h;
            double down = value_at(eval, c, x);
            x[i][k] = x0;
            double numeric = (up - down) / (2 * h), analytic = ad_node_grad_get(leaves[i], k);
            CHECK(fabs(analytic - numeric) <= 1e-6 + 1e-4 * fabs(numeric),
                          "seed %llu: input %d element %lld: backward %.10g, differences %.10g (ops: %s)",
                          (unsigned long long)c->seed, i, (long long)k, analytic, numeric, b.log);
        }
}

/* Forward mode against reverse mode in dtype dt, on graph g; returns L's value, and in *gap
 * the smallest gap at a comparison, max or min. */
static double check_forward_reverse(const spec *c, ad_dtype dt, ad_graph *g, double *gap)
{
    ad_graph_reset(g);
    builder b = {.g = g};
    ad_node *leaves[MAX_INPUTS];
    ad_node *L = build(&b, c, dt, NULL, leaves);
    CHECK(ad_backward(b.g, L) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed, ad_error(b.g));
    const double *seeds[MAX_INPUTS];
    for (int i = 0; i < c->nin; i++) seeds[i] = c->v[i];
    CHECK(ad_jvp_graph(b.g, L, c->nin, leaves, seeds) == AD_OK, "seed %llu: %s",
                  (unsigned long long)c->seed, ad_error(b.g));
    double dot = 0, scale = 0;
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(leaves[i]); k++) {
            double gk = ad_node_grad_get(leaves[i], k);
            dot += gk * c->v[i][k];
            scale += fabs(gk * c->v[i][k]);
        }
    double tangent = ad_tangent_get(b.g, L, 0), tol = dt == AD_F64 ? 1e-10 : 1e-4;
    CHECK(fabs(tangent - dot) <= tol * (1 + scale + fabs(tangent)),
                  "seed %llu (%s): forward %.10g, <grad, v> %.10g (ops: %s)", (unsigned long long)c->seed,
                  ad_dtype_name(dt), tangent, dot, b.log);
    double v = ad_value(L);
    *gap = b.min_gap;
    if (getenv("BACKPROP_PROPERTY_VERBOSE") && dt == AD_F64)
        printf("seed %llu: %d inputs, ops %s\n", (unsigned long long)c->seed, c->nin, b.log);
    return v;
}

/* Replay (float64 and float32): the graph recorded at the case's inputs and replayed at
 * x + 0.3 v gives the same bits as the graph recorded at x + 0.3 v: L, the inputs' gradients
 * and L's tangent along v. */
static void check_replay(const spec *c, ad_dtype dt, ad_graph *g, ad_graph *eval)
{
    static double x[MAX_INPUTS][MAX_ELEMS];
    for (int i = 0; i < MAX_INPUTS; i++)
        for (int k = 0; k < MAX_ELEMS; k++) x[i][k] = c->x[i][k] + 0.3 * c->v[i][k];
    const double *seeds[MAX_INPUTS];
    for (int i = 0; i < c->nin; i++) seeds[i] = c->v[i];
    ad_node *leaves[MAX_INPUTS], *fresh[MAX_INPUTS];
    ad_graph_reset(g);
    builder b = {.g = g}, e = {.g = eval};
    ad_node *L = build(&b, c, dt, NULL, leaves), *ggl[MAX_INPUTS], *ggr[MAX_INPUTS];
    /* the gradient as a graph, built once at the recording and replayed with it */
    CHECK(ad_grad_graph(g, L, NULL, c->nin, leaves, ggl) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed,
          ad_error(g));
    CHECK(ad_backward(g, L) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed, ad_error(g));
    /* a workspace of the recording, replayed at the new point on its own */
    ad_graph *w = ad_graph_clone(g);
    CHECK(w, "seed %llu: clone: %s", (unsigned long long)c->seed, ad_error(g));
    for (int i = 0; i < c->nin; i++)
        CHECK(ad_set_data(w, ad_graph_node(w, ad_node_id(leaves[i])), x[i]) == AD_OK, "%s", ad_error(w));
    ad_node *WL = ad_graph_node(w, ad_node_id(L));
    CHECK(ad_replay(w) == AD_OK && ad_backward(w, WL) == AD_OK, "seed %llu: workspace: %s",
          (unsigned long long)c->seed, ad_error(w));
    for (int i = 0; i < c->nin; i++) CHECK(ad_set_data(g, leaves[i], x[i]) == AD_OK, "%s", ad_error(g));
    CHECK(ad_replay(g) == AD_OK, "seed %llu: replay: %s", (unsigned long long)c->seed, ad_error(g));
    ad_zero_grad(g);
    CHECK(ad_backward(g, L) == AD_OK && ad_jvp_graph(g, L, c->nin, leaves, seeds) == AD_OK, "seed %llu: %s",
          (unsigned long long)c->seed, ad_error(g));
    ad_graph_reset(eval);
    ad_node *R = build(&e, c, dt, x, fresh);
    CHECK(ad_grad_graph(eval, R, NULL, c->nin, fresh, ggr) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed,
          ad_error(eval));
    CHECK(ad_backward(eval, R) == AD_OK && ad_jvp_graph(eval, R, c->nin, fresh, seeds) == AD_OK, "seed %llu: %s",
          (unsigned long long)c->seed, ad_error(eval));
    double lv = ad_value(L), rv = ad_value(R), lt = ad_tangent_get(g, L, 0), rt = ad_tangent_get(eval, R, 0);
    CHECK(!memcmp(&lv, &rv, sizeof lv) && !memcmp(&lt, &rt, sizeof lt),
          "seed %llu (%s): replayed L %.17g tangent %.17g, recorded %.17g, %.17g (ops: %s)",
          (unsigned long long)c->seed, ad_dtype_name(dt), lv, lt, rv, rt, b.log);
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(leaves[i]); k++) {
            double gl = ad_node_grad_get(leaves[i], k), gr = ad_node_grad_get(fresh[i], k);
            CHECK(!memcmp(&gl, &gr, sizeof gl), "seed %llu (%s): input %d element %lld: replayed gradient %.17g, "
                  "recorded %.17g (ops: %s)", (unsigned long long)c->seed, ad_dtype_name(dt), i, (long long)k,
                  gl, gr, b.log);
            double gw = ad_node_grad_get(ad_graph_node(w, ad_node_id(leaves[i])), k);
            CHECK(!memcmp(&gw, &gr, sizeof gw), "seed %llu (%s): input %d element %lld: workspace's gradient %.17g, "
                  "recorded %.17g (ops: %s)", (unsigned long long)c->seed, ad_dtype_name(dt), i, (long long)k,
                  gw, gr, b.log);
        }
    double wv = ad_value(WL);
    CHECK(!memcmp(&wv, &rv, sizeof wv), "seed %llu (%s): workspace's L %.17g, recorded %.17g (ops: %s)",
          (unsigned long long)c->seed, ad_dtype_name(dt), wv, rv, b.log);
    ad_graph_free(w);
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(ggl[i]); k++) {
            double vl = ad_node_get(ggl[i], k), vr = ad_node_get(ggr[i], k);
            CHECK(!memcmp(&vl, &vr, sizeof vl), "seed %llu (%s): input %d element %lld: replayed gradient graph "
                  "%.17g, recorded %.17g (ops: %s)", (unsigned long long)c->seed, ad_dtype_name(dt), i,
                  (long long)k, vl, vr, b.log);
        }
}

/* The backward gradient of the case at x + s v (s a multiple of the step). */
static void gradient_at(ad_graph *g, const spec *c, double s, double (*out)[MAX_ELEMS])
{
    static double x[MAX_INPUTS][MAX_ELEMS];
    for (int i = 0; i < MAX_INPUTS; i++)
        for (int k = 0; k < MAX_ELEMS; k++) x[i][k] = c->x[i][k] + s * c->v[i][k];
    ad_graph_reset(g);
    builder b = {.g = g};
    ad_node *leaves[MAX_INPUTS];
    CHECK(ad_backward(g, build(&b, c, AD_F64, x, leaves)) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed,
          ad_error(g));
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(leaves[i]); k++) out[i][k] = ad_node_grad_get(leaves[i], k);
}

/* H v three ways, float64, on graphs g and eval. */
static void check_second_order(const spec *c, ad_graph *g, ad_graph *eval)
{
    ad_graph_reset(g);
    builder b = {.g = g};
    ad_node *leaves[MAX_INPUTS], *grads[MAX_INPUTS];
    ad_node *L = build(&b, c, AD_F64, NULL, leaves);
    static double hv[MAX_INPUTS][MAX_ELEMS], up[MAX_INPUTS][MAX_ELEMS], down[MAX_INPUTS][MAX_ELEMS];
    const double *dir[MAX_INPUTS];
    double *out[MAX_INPUTS];
    for (int i = 0; i < c->nin; i++) dir[i] = c->v[i], out[i] = hv[i];
    CHECK(ad_hvp_graph(g, L, c->nin, leaves, dir, out) == AD_OK, "seed %llu: %s (ops: %s)",
          (unsigned long long)c->seed, ad_error(g), b.log);
    CHECK(ad_grad_graph(g, L, NULL, c->nin, leaves, grads) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed,
          ad_error(g));
    ad_node *S = NULL;
    for (int i = 0; i < c->nin; i++) {
        ad_node *t = ad_sum(g, ad_mul(g, grads[i], ad_const(g, AD_F64, ad_node_shape(grads[i]), c->v[i])));
        S = S ? ad_add(g, S, t) : t;
    }
    ad_zero_grad(g);
    CHECK(ad_backward(g, S) == AD_OK, "seed %llu: %s", (unsigned long long)c->seed, ad_error(g));
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(leaves[i]); k++) {
            double rr = ad_node_grad_get(leaves[i], k);
            CHECK(fabs(hv[i][k] - rr) <= 1e-10 * (1 + fabs(rr)),
                  "seed %llu: input %d element %lld: hvp %.17g, reverse over reverse %.17g (ops: %s)",
                  (unsigned long long)c->seed, i, (long long)k, hv[i][k], rr, b.log);
        }
    if (b.min_gap < 1e-3) return; /* near a tie of max or min: the difference straddles the kink */
    double h = 1e-5;
    gradient_at(eval, c, h, up);
    gradient_at(eval, c, -h, down);
    for (int i = 0; i < c->nin; i++)
        for (int64_t k = 0; k < ad_node_size(leaves[i]); k++) {
            double num = (up[i][k] - down[i][k]) / (2 * h);
            CHECK(fabs(hv[i][k] - num) <= 1e-5 + 1e-4 * fabs(num),
                  "seed %llu: input %d element %lld: hvp %.10g, differences %.10g (ops: %s)",
                  (unsigned long long)c->seed, i, (long long)k, hv[i][k], num, b.log);
        }
}

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 10) : dflt;
}

START_TEST(random_graphs_agree)
{
    find_elementwise_ops();
    ck_assert_int_gt(nunary, 10);
    ck_assert_int_gt(nbinary, 5);
    long iters = env_long("BACKPROP_PROPERTY_ITERS", 1000), one = env_long("BACKPROP_PROPERTY_SEED", -1);
    static spec c;
    ad_graph *g = ad_graph_new(), *eval = ad_graph_new();
    for (long it = 0; it < iters; it++) {
        make_spec(&c, one >= 0 ? (uint64_t)one : 20260 + (uint64_t)it);
        check_differences(&c, g, eval);
        check_second_order(&c, g, eval);
        double gap, v64 = check_forward_reverse(&c, AD_F64, g, &gap), v32 = check_forward_reverse(&c, AD_F32, g, &gap);
        /* a comparison within float32's rounding of a tie may go either way */
        CHECK(gap < 1e-3 || fabs(v64 - v32) <= 1e-3 * (1 + fabs(v64)), "seed %llu: float64 %.10g, float32 %.10g",
                      (unsigned long long)c.seed, v64, v32);
        check_replay(&c, AD_F64, g, eval);
        check_replay(&c, AD_F32, g, eval);
        if (one >= 0) break;
    }
    ad_graph_free(eval);
    ad_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_property");
    TCase *tc = tcase_create("property");
    tcase_set_timeout(tc, 0); /* the long mode runs as long as it is asked to */
    tcase_add_test(tc, random_graphs_agree);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
