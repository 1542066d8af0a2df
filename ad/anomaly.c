/* Anomaly mode: every forward value and every gradient checked for NaN and infinity, and the
 * first op that produced one named with its inputs' shapes and ranges (PyTorch's
 * detect_anomaly, for forward and backward).  Off by default: one flag test per op. */
#include "internal.h"

bool ad_set_anomaly(ad_graph *g, bool on)
{
    if (!g) return false;
    bool was = g->anomaly;
    g->anomaly = on;
    return was;
}

static bool finite_all(const void *p, ad_dtype t, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(load(p, t, i))) return false;
    return true;
}

/* "[2,3] in [-1.5, 4]" for a node's value or gradient. */
static char *describe(ad_node *n, bool grad, char *buf, size_t len)
{
    ad_shape s = node_shape(n);
    char sb[96];
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < node_size(n); i++) {
        double x = grad ? ad_node_grad_get(n, i) : ad_node_get(n, i);
        lo = fmin(lo, x), hi = fmax(hi, x);
    }
    snprintf(buf, len, "%s in [%g, %g]", ad_shape_str(&s, sb, sizeof sb), lo, hi);
    return buf;
}

static void describe_inputs(ad_node *n, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    for (int k = 0; k < n->nin && at < len; k++) {
        char d[160];
        at += (size_t)snprintf(buf + at, len - at, "%sinput %d %s", k ? ", " : "", k + 1,
                               describe(node_in(n, k), false, d, sizeof d));
    }
}

ad_node *anomaly_forward(ad_graph *g, ad_node *n)
{
    if (!n || finite_all(node_data(n), (ad_dtype)n->dtype, node_size(n))) return n;
    char ins[400];
    describe_inputs(n, ins, sizeof ins);
    ad_set_error(g, AD_ERR_NUMERIC, "anomaly: %s (node %u) produced a NaN or infinity in forward%s%s",
                 op_entry_get(n->op)->def.name, n->id, n->nin ? "; " : "", ins);
    return NULL;
}

ad_status anomaly_backward(ad_graph *g, ad_node *n)
{
    for (int k = 0; k < n->nin; k++) {
        ad_node *in = node_in(n, k);
        void *G = ad_node_grad_data(in);
        if (!(in->flags & F_NEEDS_GRAD) || !G || finite_all(G, (ad_dtype)in->dtype, node_size(in))) continue;
        char ins[400], up[160];
        describe_inputs(n, ins, sizeof ins);
        return ad_set_error(g, AD_ERR_NUMERIC,
                            "anomaly: backward of %s (node %u) produced a NaN or infinity in the "
                            "gradient of input %d; upstream gradient %s; %s",
                            op_entry_get(n->op)->def.name, n->id, k + 1, describe(n, true, up, sizeof up), ins);
    }
    return AD_OK;
}
