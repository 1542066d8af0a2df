/* The graph as an SVG picture, drawn without Graphviz: layers from left (inputs) to right
 * (output), each edge labelled with its value (green, above) and gradient (red, below), like
 * the lecture's figures.  The same picture, tagged with ids and steps, is the HTML stepper's. */
#include "picture.h"
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

/* A label; step >= 0 tags it with the stepper's step at which it appears. */
static void label_at(FILE *out, double x, double y, const char *cls, const char *s, int32_t step)
{
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"%s\"", x, y, cls);
    if (step >= 0) fprintf(out, " data-step=\"%d\"", (int)step);
    fputc('>', out);
    view_xml(out, s);
    fputs("</text>\n", out);
}

static void text_at(FILE *out, double x, double y, const char *cls, const char *s)
{
    label_at(out, x, y, cls, s, -1);
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

/* Where everything goes: the items and edges, their coordinates and the picture's size. */
typedef struct {
    item *it;
    int k;
    link *ln;
    int l;
    int *at; /* node id -> its item */
    double width, height;
} layout;

static void layout_free(layout *lay)
{
    ad_xfree(lay->it);
    ad_xfree(lay->ln);
    ad_xfree(lay->at);
}

static ad_status layout_build(const gview *v, int nitems, int nlinks, layout *lay)
{
    const ad_graph *g = v->g;
    memset(lay, 0, sizeof *lay);
    item *it = lay->it = ad_xcalloc((size_t)nitems + 1, sizeof *it);
    int *at = lay->at = ad_xmalloc((size_t)v->n * sizeof *at);
    int *copy_at = ad_xmalloc((size_t)v->n * sizeof *copy_at);
    link *ln = lay->ln = ad_xcalloc((size_t)nlinks + 1, sizeof *ln);
    int *count = NULL, *order = NULL;
    double *key = NULL;
    if (!it || !at || !copy_at || !ln) goto oom;
    /* layers: leaves at 0; a copy node one step right of its value; a gate one step right of
     * the furthest of its inputs (their copy nodes when they fan out) */
    int k = 0, l = 0, layers = 1;
    for (uint32_t i = 0; i < v->n; i++) {
        if (!v->live[i]) continue;
        ad_node *n = node_at(g, i);
        int layer = 0;
        int skip = view_folded(n);
        for (int s = 0; s < n->nin; s++) {
            if (s == skip) continue;
            uint32_t in = node_in(n, s)->id;
            int src = v->uses[in] > 1 ? copy_at[in] : at[in];
            if (it[src].layer + 1 > layer) layer = it[src].layer + 1;
            ln[l++] = (link){src, k, i, s};
        }
        it[k] = (item){i, false, layer, (double)i, 0, 0};
        at[i] = k++;
        if (layer + 1 > layers) layers = layer + 1;
        if (v->uses[i] > 1) {
            it[k] = (item){i, true, layer + 1, (double)i, 0, 0};
            ln[l++] = (link){k - 1, k, i, -1};
            copy_at[i] = k++;
            if (layer + 2 > layers) layers = layer + 2;
        }
    }
    lay->k = k;
    lay->l = l;
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
    count = ad_xcalloc((size_t)layers, sizeof *count);
    key = ad_xmalloc((size_t)k * sizeof *key);
    order = ad_xmalloc((size_t)k * sizeof *order);
    if (!count || !key || !order) goto oom;
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
    int maxcount = 1;
    for (int j = 0; j < k; j++)
        if (++count[it[j].layer] > maxcount) maxcount = count[it[j].layer];
    lay->width = 2 * MARGIN + (layers - 1) * COL + LEAF_W + 120;
    lay->height = 2 * MARGIN + (maxcount - 1) * ROW + 40;
    for (int j = 0; j < k; j++) {
        it[j].x = MARGIN + LEAF_W / 2.0 + it[j].layer * COL;
        it[j].y = MARGIN + 20 + (it[j].pos + (maxcount - 1) / 2.0) * ROW;
    }
    ad_xfree(copy_at);
    ad_xfree(count);
    ad_xfree(key);
    ad_xfree(order);
    return AD_OK;
oom:
    ad_xfree(copy_at);
    ad_xfree(count);
    ad_xfree(key);
    ad_xfree(order);
    layout_free(lay);
    return AD_ERR_NOMEM;
}

/* The id the stepper knows an item by: "n5" for node 5, "c5" for its copy node. */
static void item_id(const item *it, char *buf, size_t len)
{
    snprintf(buf, len, "%c%u", it->copy ? 'c' : 'n', it->node);
}

ad_status picture_write(const ad_graph *g, ad_node *root, FILE *out, int digits, const picture_steps *steps)
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
    layout lay;
    st = layout_build(&v, nitems, nlinks, &lay);
    if (st != AD_OK) {
        view_free(&v);
        return st;
    }
    item *it = lay.it;
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "viewBox=\"0 0 %.0f %.0f\">\n%s",
            lay.width, lay.height, lay.width, lay.height, STYLE);
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", out);
    char val[96], gr[96], r[64], id[32];
    for (int e = 0; e < lay.l; e++) {
        const link *lk = &lay.ln[e];
        item *a = &it[lk->from], *b = &it[lk->to];
        ad_node *from = node_at(g, a->node), *to = node_at(g, b->node);
        /* the two inputs of a binary gate enter above and below its centre, far enough apart
         * for each edge's two labels */
        double dy = to->nin == 2 && view_folded(to) < 0 && lk->slot >= 0 ? (lk->slot ? 17 : -17) : 0;
        double y2 = b->y + dy;
        double x1 = a->x + half_width(a, from);
        double x2 = b->x - (dy != 0 ? sqrt(GATE_R * GATE_R - dy * dy) : half_width(b, to));
        double mx = (x1 + x2) / 2;
        fputs("<path class=\"edge\"", out);
        if (steps) {
            item_id(b, id, sizeof id);
            fprintf(out, " data-to=\"%s\"", id);
        }
        fprintf(out, " d=\"M%.1f %.1fC%.1f %.1f %.1f %.1f %.1f %.1f\"/>\n", x1, a->y, mx, a->y, mx, y2, x2, y2);
        double grad = lk->slot < 0 ? ad_node_grad_get(from, 0) : view_edge_grad(to, lk->slot);
        if (node_size(from) == 1) {
            view_num(ad_node_get(from, 0), digits, val, sizeof val);
            view_num(grad, digits, gr, sizeof gr);
        } else {
            ad_shape s = node_shape(from);
            ad_shape_str(&s, val, sizeof val);
            snprintf(gr, sizeof gr, isnan(grad) ? "grad" : "%g", grad);
        }
        /* value above, gradient below the edge, as on the slides: on the straight part where
         * the edge runs into its gate.  The value is known once its node is computed; the
         * gradient once the copy node sums it, or the gate it enters sends it back. */
        int32_t vstep = steps ? steps->forward[from->id] : -1;
        int32_t gstep = !steps ? -1 : lk->slot < 0 ? steps->copy[from->id] : steps->backward[to->id];
        label_at(out, x2 - 36, y2 - 4, "val", val, vstep);
        label_at(out, x2 - 36, y2 + 13, "grad", gr, gstep);
    }
    for (int j = 0; j < lay.k; j++) {
        ad_node *n = node_at(g, it[j].node);
        if (steps) {
            item_id(&it[j], id, sizeof id);
            fprintf(out, "<g id=\"%s\" class=\"part\">\n", id);
        }
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
            /* the stepper's sentences name inner nodes "#id": the picture says which is which */
            if (steps) text_at(out, it[j].x, it[j].y - GATE_R - 4, "small id", view_ref(n, r, sizeof r));
        }
        if (steps) fputs("</g>\n", out);
    }
    /* the output edge, as the slides end the graph */
    item *last = &it[lay.at[root->id]];
    double x1 = last->x + half_width(last, root), x2 = x1 + 70;
    fprintf(out, "<path class=\"edge\" d=\"M%.1f %.1fL%.1f %.1f\"/>\n", x1, last->y, x2, last->y);
    label_at(out, (x1 + x2) / 2, last->y - 5, "val", view_values(root, false, digits, val, sizeof val),
             steps ? steps->forward[root->id] : -1);
    label_at(out, (x1 + x2) / 2, last->y + 15, "grad", view_values(root, true, digits, gr, sizeof gr),
             steps ? steps->base : -1);
    fputs("</svg>\n", out);
    st = ferror(out) ? AD_ERR_IO : AD_OK;
    layout_free(&lay);
    view_free(&v);
    return st;
}

ad_status ad_write_svg(const ad_graph *g, ad_node *root, FILE *out, int digits)
{
    return picture_write(g, root, out, digits, NULL);
}
