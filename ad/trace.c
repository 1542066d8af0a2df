/* Step-by-step traces in the lecture's words: forward, each node's value from its inputs;
 * backward, upstream gradient x local gradient = downstream gradient, node by node. */
#include "view.h"

static const char *leaf_kind(const ad_node *n)
{
    return n->op == OP_VAR ? "var" : n->op == OP_PARAM ? "param" : "const";
}

static char *inputs_str(ad_node *n, const gate *gt, char *buf, size_t len)
{
    char r[64];
    size_t at = (size_t)snprintf(buf, len, "(");
    for (int k = 0; k < gt->nshown && at < len; k++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", k ? ", " : "",
                               view_ref(node_in(n, gt->slot[k]), r, sizeof r));
    if (at < len && n->nin > gt->nshown && view_folded(n) < 0)
        at += (size_t)snprintf(buf + at, len - at, ", ... %d inputs", n->nin);
    if (at < len) snprintf(buf + at, len - at, ")");
    return buf;
}

static ad_status finish(FILE *out) { return ferror(out) ? AD_ERR_IO : AD_OK; }

ad_status ad_trace_forward(const ad_graph *g, ad_node *root, FILE *out, int digits)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    char r[64], val[512];
    fprintf(out, "forward pass: each node's value from its inputs\n");
    for (uint32_t i = 0; i < v.n; i++) {
        if (!v.live[i]) continue;
        ad_node *n = node_at(g, i);
        fprintf(out, "  %-6s ", view_ref(n, r, sizeof r));
        if (n->nin == 0) {
            fprintf(out, "%-6s %-16s", leaf_kind(n), "");
        } else {
            gate gt;
            view_gate(n, &gt);
            char ins[256];
            fprintf(out, "%-6s %-16s", gt.label, inputs_str(n, &gt, ins, sizeof ins));
        }
        fprintf(out, " = %s\n", view_values(n, false, digits, val, sizeof val));
    }
    view_free(&v);
    return finish(out);
}

/* Scalar gradient of a node as the sweep left it (NaN for tensors). */
static double grad_of(ad_node *n) { return node_size(n) == 1 ? ad_node_grad_get(n, 0) : NAN; }

/* A value used k > 1 times: the copy node's upstream gradients, one per use, and their sum. */
static void put_copy(FILE *out, const gview *v, ad_node *n, int digits)
{
    char r[64], a[64], b[512];
    fprintf(out, "  %-6s %-6s upstream ", view_ref(n, r, sizeof r), "copy");
    /* listed as the sweep meets the uses: last use first */
    bool scalar = node_size(n) == 1;
    for (int32_t e = v->cstart[n->id + 1]; e-- > v->cstart[n->id];) {
        ad_node *c = node_at(v->g, v->cons[e].node);
        gate gt;
        view_gate(c, &gt);
        double part = NAN;
        for (int k = 0; k < gt.nshown; k++)
            if (gt.slot[k] == v->cons[e].slot) part = gt.local[k] * grad_of(c);
        fprintf(out, "%s%s", e + 1 < v->cstart[n->id + 1] ? " + " : "",
                scalar ? view_num(part, digits, a, sizeof a) : "g");
    }
    fprintf(out, "   sum of %d uses %s\n", v->uses[n->id], view_values(n, true, digits, b, sizeof b));
}

ad_status ad_trace_backward(const ad_graph *g, ad_node *root, FILE *out, int digits)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    char r[64], num[64], up[512];
    fprintf(out, "backward pass: upstream gradient x local gradient = downstream gradient\n");
    for (uint32_t i = v.n; i-- > 0;) {
        if (!v.live[i]) continue;
        ad_node *n = node_at(g, i);
        if (v.uses[i] > 1) put_copy(out, &v, n, digits);
        if (n->nin == 0 || !(n->flags & F_NEEDS_GRAD)) continue;
        gate gt;
        view_gate(n, &gt);
        fprintf(out, "  %-6s %-6s upstream %6s   local ", view_ref(n, r, sizeof r), gt.label,
                view_values(n, true, digits, up, sizeof up));
        for (int k = 0; k < gt.nshown; k++) {
            fprintf(out, "%s%s", k ? ", " : "", gt.formula[k]);
            if (!isnan(gt.local[k])) fprintf(out, " = %s", view_num(gt.local[k], digits, num, sizeof num));
        }
        fprintf(out, "   downstream ");
        for (int k = 0; k < gt.nshown; k++) {
            ad_node *in = node_in(n, gt.slot[k]);
            double d = gt.local[k] * grad_of(n);
            if (!isnan(d)) fprintf(out, "%s%s -> %s", k ? ", " : "", view_num(d, digits, num, sizeof num),
                                   view_ref(in, r, sizeof r));
            else if (v.uses[in->id] == 1 && (in->flags & F_NEEDS_GRAD))
                fprintf(out, "%s%s -> %s", k ? ", " : "", view_values(in, true, digits, up, sizeof up),
                        view_ref(in, r, sizeof r));
            else fprintf(out, "%s-> %s", k ? ", " : "", view_ref(in, r, sizeof r));
        }
        fputc('\n', out);
    }
    /* the gradient, in the order the variables were created (the slides' argument order) */
    fprintf(out, "gradient:");
    int k = 0;
    for (uint32_t i = 0; i < v.n; i++) {
        ad_node *n = node_at(g, i);
        if (!v.live[i] || !(n->flags & F_LEAF)) continue;
        fprintf(out, "%s %s = %s", k++ ? "," : "", view_ref(n, r, sizeof r),
                view_values(n, true, digits, up, sizeof up));
    }
    fputc('\n', out);
    view_free(&v);
    return finish(out);
}

ad_node *ad_find_nonfinite(const ad_graph *g, ad_node *root, bool gradients)
{
    if (!g || !root || root->id >= g->nnodes) return NULL;
    for (uint32_t i = 0; i <= root->id; i++) {
        ad_node *n = node_at(g, i);
        for (int64_t j = 0; j < node_size(n); j++) {
            double x = gradients ? ad_node_grad_get(n, j) : ad_node_get(n, j);
            if (!isfinite(x)) return n;
        }
    }
    return NULL;
}
