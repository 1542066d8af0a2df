/* Graph dumps for other tools: Graphviz DOT (the lecture's picture) and JSON. */
#include "view.h"

#define GREEN "#1a7f37"
#define RED "#cf222e"

/* The gradient that flows back along one edge: the consumer's local gradient for that input
 * times the consumer's upstream gradient (scalars); NaN when not a scalar. */
double view_edge_grad(ad_node *consumer, int slot)
{
    gate gt;
    view_gate(consumer, &gt);
    for (int k = 0; k < gt.nshown; k++)
        if (gt.slot[k] == slot)
            return node_size(consumer) == 1 ? gt.local[k] * ad_node_grad_get(consumer, 0) : NAN;
    return NAN;
}

/* "value / gradient" of an edge: numbers for scalars, the shape for tensors. */
static void edge_texts(ad_node *from, double grad, int digits, char *val, char *gr, size_t len)
{
    ad_shape s = node_shape(from);
    if (node_size(from) == 1) view_num(ad_node_get(from, 0), digits, val, len);
    else ad_shape_str(&s, val, len);
    if (isnan(grad) && node_size(from) != 1) snprintf(gr, len, "grad %s", val);
    else view_num(grad, digits, gr, len);
}

/* Graphviz reads UTF-8 and ends a line at a newline: control bytes become '?' and invalid
 * UTF-8 U+FFFD, as in the XML writers. */
static void dot_escape(FILE *out, const char *s)
{
    while (*s) {
        int len = utf8_len(s);
        if (!len) fputs(UTF8_REPLACEMENT, out), len = 1;
        else if ((unsigned char)*s < 0x20) fputc('?', out);
        else {
            if (*s == '"' || *s == '\\') fputc('\\', out);
            fwrite(s, 1, (size_t)len, out);
        }
        s += len;
    }
}

static void dot_edge(FILE *out, const char *from, const char *to, const char *val, const char *gr)
{
    fprintf(out, "  %s -> %s [label=<<font color=\"" GREEN "\">%s</font><br/><font color=\"" RED
                 "\">%s</font>>];\n", from, to, val, gr);
}

ad_status ad_write_dot(const ad_graph *g, ad_node *root, FILE *out, int digits)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    char r[64], val[96], gr[96], from[32], to[32];
    fprintf(out, "digraph backprop {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n"
                 "  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (uint32_t i = 0; i < v.n; i++) {
        if (!v.live[i]) continue;
        ad_node *n = node_at(g, i);
        fprintf(out, "  n%u [", i);
        if (n->nin == 0) {
            fprintf(out, "shape=box, style=rounded, label=\"");
            dot_escape(out, view_ref(n, r, sizeof r));
        } else {
            gate gt;
            view_gate(n, &gt);
            fprintf(out, "shape=circle, label=\"");
            dot_escape(out, gt.label);
        }
        fprintf(out, "\"];\n");
        if (v.uses[i] > 1) {
            fprintf(out, "  c%u [shape=circle, fontsize=9, label=\"copy\"];\n", i);
            edge_texts(n, ad_node_grad_get(n, 0), digits, val, gr, sizeof val);
            snprintf(from, sizeof from, "n%u", i);
            snprintf(to, sizeof to, "c%u", i);
            dot_edge(out, from, to, val, gr);
        }
    }
    for (uint32_t i = 0; i < v.n; i++) {
        if (!v.live[i]) continue;
        for (int32_t e = v.cstart[i]; e < v.cstart[i + 1]; e++) {
            ad_node *n = node_at(g, i), *c = node_at(g, v.cons[e].node);
            edge_texts(n, view_edge_grad(c, v.cons[e].slot), digits, val, gr, sizeof val);
            snprintf(from, sizeof from, v.uses[i] > 1 ? "c%u" : "n%u", i);
            snprintf(to, sizeof to, "n%u", v.cons[e].node);
            dot_edge(out, from, to, val, gr);
        }
    }
    fprintf(out, "  out [shape=plaintext, label=\"\"];\n");
    edge_texts(root, ad_node_grad_get(root, 0), digits, val, gr, sizeof val);
    snprintf(from, sizeof from, "n%u", root->id);
    dot_edge(out, from, "out", val, gr);
    fprintf(out, "}\n");
    view_free(&v);
    return ferror(out) ? AD_ERR_IO : AD_OK;
}

/* JSON has no NaN or infinity: they are written as null. */
static void json_num(FILE *out, double x)
{
    if (isfinite(x)) fprintf(out, "%.17g", x);
    else fputs("null", out);
}

/* Names are the user's bytes: control bytes are escaped and invalid UTF-8 becomes U+FFFD, so
 * the output is JSON whatever the names hold. */
static void json_str(FILE *out, const char *s)
{
    fputc('"', out);
    while (*s) {
        unsigned char ch = (unsigned char)*s;
        int len = utf8_len(s);
        if (!len) fputs(UTF8_REPLACEMENT, out), len = 1;
        else if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fwrite(s, 1, (size_t)len, out);
        s += len;
    }
    fputc('"', out);
}

static void json_values(FILE *out, ad_node *n, bool grad)
{
    ad_shape s = node_shape(n);
    if (s.rank == 0) {
        json_num(out, grad ? ad_node_grad_get(n, 0) : ad_node_get(n, 0));
        return;
    }
    fputc('[', out);
    for (int64_t i = 0; i < node_size(n); i++) {
        if (i) fputc(',', out);
        json_num(out, grad ? ad_node_grad_get(n, i) : ad_node_get(n, i));
    }
    fputc(']', out);
}

ad_status ad_write_json(const ad_graph *g, ad_node *root, FILE *out)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    /* constants drawn inside a gate are nodes too for other tools: mark them live here */
    for (uint32_t i = 0; i < v.n; i++) {
        ad_node *n = node_at(g, i);
        int f = v.live[i] ? view_folded(n) : -1;
        if (f >= 0) v.live[node_in(n, f)->id] = 1;
    }
    fprintf(out, "{\"root\": %u, \"nodes\": [", root->id);
    bool first = true;
    for (uint32_t i = 0; i < v.n; i++) {
        if (!v.live[i]) continue;
        ad_node *n = node_at(g, i);
        gate gt;
        view_gate(n, &gt);
        fprintf(out, "%s\n  {\"id\": %u, \"op\": ", first ? "" : ",", i);
        first = false;
        json_str(out, op_entry_get(n->op)->def.name);
        fprintf(out, ", \"label\": ");
        json_str(out, gt.label);
        fprintf(out, ", \"name\": ");
        if (n->x && n->x->name) json_str(out, n->x->name);
        else fputs("null", out);
        ad_shape s = node_shape(n);
        fprintf(out, ", \"dtype\": \"%s\", \"shape\": [", ad_dtype_name((ad_dtype)n->dtype));
        for (int d = 0; d < s.rank; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)s.dim[d]);
        fprintf(out, "], \"inputs\": [");
        for (int k = 0; k < n->nin; k++) fprintf(out, "%s%u", k ? ", " : "", node_in(n, k)->id);
        fprintf(out, "], \"uses\": %d, \"value\": ", v.uses[i]);
        json_values(out, n, false);
        fprintf(out, ", \"grad\": ");
        json_values(out, n, true);
        fputc('}', out);
    }
    fprintf(out, "\n]}\n");
    view_free(&v);
    return ferror(out) ? AD_ERR_IO : AD_OK;
}
