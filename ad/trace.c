/* Step-by-step traces in the lecture's words: forward, each node's value from its inputs;
 * backward, upstream gradient x local gradient = downstream gradient, node by node. */
#include "view.h"

static const char *leaf_kind(const ad_node *n)
{
    return n->op == OP_VAR ? "var" : n->op == OP_PARAM ? "param" : "const";
}

static bool all_scalar(ad_node *n)
{
    if (node_size(n) != 1) return false;
    for (int k = 0; k < n->nin; k++)
        if (node_size(node_in(n, k)) != 1) return false;
    return true;
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
            fprintf(out, "%-6s = %s\n", leaf_kind(n), view_values(n, false, digits, val, sizeof val));
            continue;
        }
        /* the gate's arithmetic: "#13 = 1/#12 = 1/1.37 = 0.73" */
        gate gt;
        view_gate(n, &gt);
        char expr[256];
        fprintf(out, "%-6s %s = ", gt.label, view_expr(n, false, digits, expr, sizeof expr));
        if (all_scalar(n)) fprintf(out, "%s = ", view_expr(n, true, digits, expr, sizeof expr));
        fprintf(out, "%s\n", view_values(n, false, digits, val, sizeof val));
    }
    view_free(&v);
    return finish(out);
}

/* A value used k > 1 times: its copy node adds the gradients of the uses, "1.00 + 3.00 + 3.00 =
 * 7.00", as the sweep meets them (last use first). */
static void put_copy(FILE *out, const gview *v, ad_node *n, int digits)
{
    char r[64], sum[512];
    fprintf(out, "  %-6s %-6s sum of %d uses: %s\n", view_ref(n, r, sizeof r), "copy", v->uses[n->id],
            view_copy_sum(v, n, digits, sum, sizeof sum));
}

/* One gate as the slides write a backward step: the upstream gradient and where the gate is
 * evaluated, then per input the local gradient (formula, values put in, number) and the
 * downstream gradient (the product with its factors), aligned in two columns. */
static void put_gate(FILE *out, const gview *v, ad_node *n, int digits)
{
    char r[64], up[512];
    gate gt;
    view_gate(n, &gt);
    gate_walk w;
    view_walk(v, n, &gt, digits, &w);
    fprintf(out, "  %-6s %-6s upstream %s", view_ref(n, r, sizeof r), gt.label, view_values(n, true, digits, up, sizeof up));
    if (w.at[0]) fprintf(out, "   at %s", w.at);
    fputc('\n', out);
    int width = 0;
    for (int k = 0; k < gt.nshown; k++)
        if (view_width(w.local[k]) > width) width = view_width(w.local[k]);
    for (int k = 0; k < gt.nshown; k++) {
        ad_node *in = node_in(n, gt.slot[k]);
        /* a registry op's one text covers all its inputs */
        fprintf(out, "         %s %s%*s   downstream ", w.local[k][0] ? "local" : "     ", w.local[k],
                width - view_width(w.local[k]), "");
        if (w.down[k][0]) fprintf(out, "%s -> %s\n", w.down[k], view_ref(in, r, sizeof r));
        else if (v->uses[in->id] == 1 && (in->flags & F_NEEDS_GRAD))
            fprintf(out, "%s -> %s\n", view_values(in, true, digits, up, sizeof up), view_ref(in, r, sizeof r));
        else fprintf(out, "-> %s\n", view_ref(in, r, sizeof r));
    }
}

ad_status ad_trace_backward(const ad_graph *g, ad_node *root, FILE *out, int digits)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    char r[64], up[512];
    fprintf(out, "backward pass: upstream gradient x local gradient = downstream gradient\n");
    for (uint32_t i = v.n; i-- > 0;) {
        if (!v.live[i]) continue;
        ad_node *n = node_at(g, i);
        if (v.uses[i] > 1) put_copy(out, &v, n, digits);
        if (n->nin > 0 && (n->flags & F_NEEDS_GRAD)) put_gate(out, &v, n, digits);
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
    fuse_current((ad_graph *)g); /* every value, inner nodes' of a fused replay too */
    for (uint32_t i = 0; i <= root->id; i++) {
        ad_node *n = node_at(g, i);
        for (int64_t j = 0; j < node_size(n); j++) {
            double x = gradients ? ad_node_grad_get(n, j) : ad_node_get(n, j);
            if (!isfinite(x)) return n;
        }
    }
    return NULL;
}
