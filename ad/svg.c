/* The graph as an SVG picture, drawn without Graphviz: layers from left (inputs) to right
 * (output), each edge labelled with its value (green, above) and gradient (red, below), like
 * the lecture's figures. */
#include "view.h"
#include <stdlib.h>

enum { COL = 170, ROW = 96, MARGIN = 40, LEAF_W = 64, LEAF_H = 30, GATE_R = 22, COPY_R = 13 };

/* What is drawn: a node of the view, or the copy node of a node that fans out. */
typedef struct {
    uint32_t node;
    bool copy;
    int layer;
    double pos; /* order within the layer, refined by barycentres */
    double x, y;
} item;

typedef struct { int from, to; uint32_t node; int slot; } link; /* item indices */

static void xml_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", out);
        else if (*s == '>') fputs("&gt;", out);
        else if (*s == '&') fputs("&amp;", out);
        else if (*s == '"') fputs("&quot;", out);
        else fputc(*s, out);
    }
}

static void text_at(FILE *out, double x, double y, const char *cls, const char *s)
{
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"%s\">", x, y, cls);
    xml_text(out, s);
    fputs("</text>\n", out);
}

static const char *STYLE =
    "<style>text{font-family:Helvetica,Arial,sans-serif;font-size:13px;text-anchor:middle}"
    ".val{fill:#1a7f37;font-size:12px}.grad{fill:#cf222e;font-size:12px}"
    ".gate{fill:#fff;stroke:#333;stroke-width:1.5}.leaf{fill:#eef3fb;stroke:#335;stroke-width:1.2}"
    ".copy{fill:#f6f0d8;stroke:#886;stroke-width:1.2}.small{font-size:10px}"
    ".edge{fill:none;stroke:#555;stroke-width:1.3}</style>\n";

static ad_status summary(FILE *out, const gview *v, int shown)
{
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"120\" "
                 "viewBox=\"0 0 640 120\">\n%s", STYLE);
    char line[160];
    snprintf(line, sizeof line, "This graph has %d parts to draw (nodes and copy nodes);", shown);
    text_at(out, 320, 40, "t", line);
    snprintf(line, sizeof line, "pictures are drawn up to %d. Use the trace, DOT or JSON output.",
             AD_SVG_MAX_NODES);
    text_at(out, 320, 62, "t", line);
    snprintf(line, sizeof line, "root: node #%u, %u nodes recorded", v->root->id, v->n);
    text_at(out, 320, 84, "small", line);
    fputs("</svg>\n", out);
    return AD_ERR_ARG;
}

static double half_width(const item *it, const ad_node *n)
{
    return it->copy ? COPY_R : n->nin == 0 ? LEAF_W / 2.0 : GATE_R;
}

ad_status ad_write_svg(const ad_graph *g, ad_node *root, FILE *out, int digits)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    int nitems = 0, nlinks = 0;
    for (uint32_t i = 0; i < v.n; i++)
        if (v.live[i]) nitems += 1 + (v.uses[i] > 1), nlinks += v.uses[i] + (v.uses[i] > 1);
    if (nitems > AD_SVG_MAX_NODES) {
        st = summary(out, &v, nitems);
        view_free(&v);
        return ferror(out) ? AD_ERR_IO : st;
    }
    item *it = ad_xcalloc((size_t)nitems + 1, sizeof *it);
    int *at = ad_xmalloc((size_t)v.n * sizeof *at);   /* node -> its item */
    int *copy_at = ad_xmalloc((size_t)v.n * sizeof *copy_at);
    link *ln = ad_xcalloc((size_t)nlinks + 1, sizeof *ln);
    if (!it || !at || !copy_at || !ln) {
        st = AD_ERR_NOMEM;
        goto done;
    }
    /* layers: leaves at 0; a copy node one step right of its value; a gate one step right of
     * the furthest of its inputs (their copy nodes when they fan out) */
    int k = 0, l = 0, layers = 1;
    for (uint32_t i = 0; i < v.n; i++) {
        if (!v.live[i]) continue;
        ad_node *n = node_at(g, i);
        int layer = 0;
        int skip = view_folded(n);
        for (int s = 0; s < n->nin; s++) {
            if (s == skip) continue;
            uint32_t in = node_in(n, s)->id;
            int src = v.uses[in] > 1 ? copy_at[in] : at[in];
            if (it[src].layer + 1 > layer) layer = it[src].layer + 1;
            ln[l++] = (link){src, k, i, s};
        }
        it[k] = (item){i, false, layer, (double)i, 0, 0};
        at[i] = k++;
        if (layer + 1 > layers) layers = layer + 1;
        if (v.uses[i] > 1) {
            it[k] = (item){i, true, layer + 1, (double)i, 0, 0};
            ln[l++] = (link){k - 1, k, i, -1};
            copy_at[i] = k++;
            if (layer + 2 > layers) layers = layer + 2;
        }
    }
    /* leaves (and their copy nodes) move right, next to their first consumer, so that an
     * input used late does not cross the gates in between */
    for (int j = k - 1; j >= 0; j--) {
        ad_node *n = node_at(g, it[j].node);
        if (n->nin != 0) continue;
        int first = INT32_MAX;
        for (int e = 0; e < l; e++)
            if (ln[e].from == j && it[ln[e].to].layer < first) first = it[ln[e].to].layer;
        if (first != INT32_MAX && first - 1 > it[j].layer) it[j].layer = first - 1;
        if (it[j].copy) continue;
        if (j + 1 < k && it[j + 1].copy && it[j + 1].node == it[j].node) it[j].layer = it[j + 1].layer - 1;
    }

    /* order within layers: start in creation order, then a few barycentre sweeps pull each
     * item towards the average position of its inputs */
    int *count = ad_xcalloc((size_t)layers, sizeof *count);
    double *key = ad_xmalloc((size_t)k * sizeof *key);
    int *order = ad_xmalloc((size_t)k * sizeof *order);
    if (!count || !key || !order) {
        ad_xfree(count), ad_xfree(key), ad_xfree(order);
        st = AD_ERR_NOMEM;
        goto done;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        /* positions centred per layer, so layers of different sizes compare */
        for (int j = 0; j < k; j++) {
            double sum = 0;
            int cnt = 0;
            for (int e = 0; e < l; e++)
                if (ln[e].to == j) sum += it[ln[e].from].pos, cnt++;
            /* an input is pulled towards the side of the gate it enters (slot 0 above) */
            if (!cnt)
                for (int e = 0; e < l; e++)
                    if (ln[e].from == j) sum += it[ln[e].to].pos + (ln[e].slot == 0 ? -0.25 : 0.25), cnt++;
            key[j] = sweep == 0 || !cnt ? (double)j : sum / cnt + 1e-6 * j;
        }
        for (int layer = 0; layer < layers; layer++) {
            int m = 0;
            for (int j = 0; j < k; j++)
                if (it[j].layer == layer) {
                    int at_ = m++;
                    while (at_ > 0 && key[order[at_ - 1]] > key[j]) order[at_] = order[at_ - 1], at_--;
                    order[at_] = j;
                }
            for (int q = 0; q < m; q++) it[order[q]].pos = q - (m - 1) / 2.0;
        }
    }
    ad_xfree(key);
    ad_xfree(order);
    int maxcount = 1;
    for (int j = 0; j < k; j++)
        if (++count[it[j].layer] > maxcount) maxcount = count[it[j].layer];
    double width = 2 * MARGIN + (layers - 1) * COL + LEAF_W + 120, height = 2 * MARGIN + (maxcount - 1) * ROW + 40;
    for (int j = 0; j < k; j++) {
        it[j].x = MARGIN + LEAF_W / 2.0 + it[j].layer * COL;
        it[j].y = MARGIN + 20 + (it[j].pos + (maxcount - 1) / 2.0) * ROW;
    }
    ad_xfree(count);

    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "viewBox=\"0 0 %.0f %.0f\">\n%s",
            width, height, width, height, STYLE);
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", out);
    char val[96], gr[96], r[64];
    for (int e = 0; e < l; e++) {
        item *a = &it[ln[e].from], *b = &it[ln[e].to];
        ad_node *from = node_at(g, a->node), *to = node_at(g, b->node);
        /* the two inputs of a binary gate enter above and below its centre, far enough apart
         * for each edge's two labels */
        double dy = to->nin == 2 && view_folded(to) < 0 && ln[e].slot >= 0 ? (ln[e].slot ? 17 : -17) : 0;
        double y2 = b->y + dy;
        double x1 = a->x + half_width(a, from);
        double x2 = b->x - (dy != 0 ? sqrt(GATE_R * GATE_R - dy * dy) : half_width(b, to));
        double mx = (x1 + x2) / 2;
        fprintf(out, "<path class=\"edge\" d=\"M%.1f %.1fC%.1f %.1f %.1f %.1f %.1f %.1f\"/>\n", x1, a->y,
                mx, a->y, mx, y2, x2, y2);
        double grad = ln[e].slot < 0 ? ad_node_grad_get(from, 0) : view_edge_grad(to, ln[e].slot);
        if (node_size(from) == 1) {
            view_num(ad_node_get(from, 0), digits, val, sizeof val);
            view_num(grad, digits, gr, sizeof gr);
        } else {
            ad_shape s = node_shape(from);
            ad_shape_str(&s, val, sizeof val);
            snprintf(gr, sizeof gr, isnan(grad) ? "grad" : "%g", grad);
        }
        /* value above, gradient below the edge, as on the slides: on the straight part where
         * the edge runs into its gate */
        text_at(out, x2 - 36, y2 - 4, "val", val);
        text_at(out, x2 - 36, y2 + 13, "grad", gr);
    }
    for (int j = 0; j < k; j++) {
        ad_node *n = node_at(g, it[j].node);
        if (it[j].copy) {
            fprintf(out, "<circle class=\"copy\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\"/>\n", it[j].x, it[j].y, COPY_R);
            text_at(out, it[j].x, it[j].y + 3, "small", "copy");
        } else if (n->nin == 0) {
            fprintf(out, "<rect class=\"leaf\" x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" rx=\"6\"/>\n",
                    it[j].x - LEAF_W / 2.0, it[j].y - LEAF_H / 2.0, LEAF_W, LEAF_H);
            text_at(out, it[j].x, it[j].y + 5, "t", view_ref(n, r, sizeof r));
        } else {
            gate gt;
            view_gate(n, &gt);
            fprintf(out, "<circle class=\"gate\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\"/>\n", it[j].x, it[j].y, GATE_R);
            text_at(out, it[j].x, it[j].y + 5, strlen(gt.label) > 4 ? "small" : "t", gt.label);
        }
    }
    /* the output edge, as the slides end the graph */
    item *last = &it[at[root->id]];
    double x1 = last->x + half_width(last, root), x2 = x1 + 70;
    fprintf(out, "<path class=\"edge\" d=\"M%.1f %.1fL%.1f %.1f\"/>\n", x1, last->y, x2, last->y);
    text_at(out, (x1 + x2) / 2, last->y - 5, "val", view_values(root, false, digits, val, sizeof val));
    text_at(out, (x1 + x2) / 2, last->y + 15, "grad", view_values(root, true, digits, gr, sizeof gr));
    fputs("</svg>\n", out);
    st = ferror(out) ? AD_ERR_IO : AD_OK;
done:
    ad_xfree(it);
    ad_xfree(at);
    ad_xfree(copy_at);
    ad_xfree(ln);
    view_free(&v);
    return st;
}
