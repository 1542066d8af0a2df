/* The graph as an SVG picture, drawn without Graphviz: layers from left (inputs) to right
 * (output), each edge labelled with its value (green, above) and gradient (red, below), like
 * the lecture's figures.  The same picture, tagged with ids and steps, is the HTML stepper's.
 *
 * Every edge ends in a straight lane of its own that runs into its gate: a gate's inputs get
 * lanes LANE apart, and an edge's two labels sit above and below the middle of its lane, so a
 * reader sees which numbers belong to which edge (labels at the gate's side, four numbers in a
 * stack, could not say).  Hovering over a node shows its arithmetic as the text trace writes it. */
#include "picture.h"
#include <stdlib.h>

enum { COL = 170, ROW = 96, MARGIN = 40, LEAF_W = 64, LEAF_H = 30, GATE_R = 22, COPY_R = 13, LANE = 44, SPAN = 64 };
/* A bound on a label's width per character (12px Helvetica: digits are 6.7px). */
#define CHAR_W 7.2

/* What is drawn: a node of the view, or the copy node of a node that fans out; or nothing, a
 * place that an edge passing a layer keeps free for itself (a dummy). */
typedef struct {
    uint32_t node;
    bool copy;
    bool dummy;
    int layer;
    double pos; /* order within the layer, refined by barycentres */
    double x, y;
} item;

typedef struct {
    int from, to; /* item indices */
    uint32_t node;
    int slot;
    int lane, lanes; /* which of the target's input lanes, of how many */
    int via, nvia;   /* the dummies it passes, it[via .. via + nvia) */
} link;

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
    ".edge{fill:none;stroke:#555;stroke-width:1.3}text{pointer-events:none}</style>\n";

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
    double span; /* the length of every lane, room for the longest label */
} layout;

static void layout_free(layout *lay)
{
    ad_xfree(lay->it);
    ad_xfree(lay->ln);
    ad_xfree(lay->at);
}

static ad_status layout_build(const gview *v, int nitems, int nlinks, double span, layout *lay)
{
    const ad_graph *g = v->g;
    memset(lay, 0, sizeof *lay);
    item *it = lay->it = ad_xcalloc((size_t)nitems + 1, sizeof *it);
    int *at = lay->at = ad_xmalloc((size_t)v->n * sizeof *at);
    int *copy_at = ad_xmalloc((size_t)v->n * sizeof *copy_at);
    link *ln = lay->ln = ad_xcalloc((size_t)nlinks + 1, sizeof *ln);
    int *count = NULL, *order = NULL, (*pair)[3] = NULL;
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
            ln[l++] = (link){src, k, i, s, 0, 0, 0, 0};
        }
        /* the lanes into the gate, in the order of its inputs */
        int m = 0;
        for (int e = l; e-- > 0 && ln[e].to == k;) m++;
        for (int q = 0; q < m; q++) ln[l - m + q].lane = q, ln[l - m + q].lanes = m;
        it[k] = (item){i, false, false, layer, (double)i, 0, 0};
        at[i] = k++;
        if (layer + 1 > layers) layers = layer + 1;
        if (v->uses[i] > 1) {
            it[k] = (item){i, true, false, layer + 1, (double)i, 0, 0};
            ln[l++] = (link){k - 1, k, i, -1, 0, 1, 0, 0};
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

    /* an edge that passes layers keeps a place free in each (a dummy), so that the ordering
     * below keeps nodes off its way; the ordering sees the edge as a chain through them */
    int extra = 0;
    for (int e = 0; e < l; e++) extra += it[ln[e].to].layer - it[ln[e].from].layer - 1;
    item *grown = ad_xrealloc(it, ((size_t)k + (size_t)extra + 1) * sizeof *it);
    if (!grown) goto oom;
    it = lay->it = grown;
    pair = ad_xmalloc(((size_t)l + (size_t)extra + 1) * sizeof *pair);
    if (!pair) goto oom;
    int np = 0;
    for (int e = 0; e < l; e++) {
        int prev = ln[e].from;
        ln[e].via = k;
        for (int layer = it[ln[e].from].layer + 1; layer < it[ln[e].to].layer; layer++) {
            it[k] = (item){it[ln[e].to].node, false, true, layer, (double)k, 0, 0};
            pair[np][0] = prev, pair[np][1] = k, pair[np][2] = ln[e].slot, np++;
            prev = k++;
            ln[e].nvia++;
        }
        pair[np][0] = prev, pair[np][1] = ln[e].to, pair[np][2] = ln[e].slot, np++;
    }
    lay->k = k;

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
            for (int e = 0; e < np; e++)
                if (pair[e][1] == j) sum += it[pair[e][0]].pos, cnt++;
            /* an input is pulled towards the side of the gate it enters (slot 0 above) */
            if (!cnt)
                for (int e = 0; e < np; e++)
                    if (pair[e][0] == j) sum += it[pair[e][1]].pos + (pair[e][2] == 0 ? -0.25 : 0.25), cnt++;
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
    int maxcount = 1, maxlanes = 1;
    for (int j = 0; j < k; j++)
        if (++count[it[j].layer] > maxcount) maxcount = count[it[j].layer];
    for (int e = 0; e < l; e++)
        if (ln[e].lanes > maxlanes) maxlanes = ln[e].lanes;
    /* rows far enough apart for the lanes of a gate and their labels; columns for the lanes
     * and a curve from the node before */
    double row = fmax(ROW, (maxlanes - 1) * LANE + 52), col = fmax(COL, span + GATE_R + 10 + LEAF_W / 2.0 + 44);
    lay->span = span;
    lay->width = 2 * MARGIN + (layers - 1) * col + LEAF_W + span + 30;
    lay->height = 2 * MARGIN + (maxcount - 1) * row + 40 + (maxlanes - 1) * LANE;
    for (int j = 0; j < k; j++) {
        it[j].x = MARGIN + LEAF_W / 2.0 + it[j].layer * col;
        it[j].y = MARGIN + 20 + (maxlanes - 1) * LANE / 2.0 + (it[j].pos + (maxcount - 1) / 2.0) * row;
    }
    ad_xfree(copy_at);
    ad_xfree(count);
    ad_xfree(key);
    ad_xfree(order);
    ad_xfree(pair);
    return AD_OK;
oom:
    ad_xfree(pair);
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

/* An edge's labels: value and gradient, numbers for scalars, the shape for tensors. */
static void labels(ad_node *from, double grad, int digits, char *val, char *gr, size_t len)
{
    if (node_size(from) == 1) {
        view_num(ad_node_get(from, 0), digits, val, len);
        view_num(grad, digits, gr, len);
    } else {
        ad_shape s = node_shape(from);
        ad_shape_str(&s, val, len);
        snprintf(gr, len, isnan(grad) ? "grad" : "%g", grad);
    }
}

static void edge_labels(const link *lk, const item *it, const ad_graph *g, int digits, char *val, char *gr, size_t len)
{
    ad_node *from = node_at(g, it[lk->from].node), *to = node_at(g, it[lk->to].node);
    labels(from, lk->slot < 0 ? ad_node_grad_get(from, 0) : view_edge_grad(to, lk->slot), digits, val, gr, len);
}

static bool all_scalar(ad_node *n)
{
    for (int k = 0; k < n->nin; k++)
        if (node_size(node_in(n, k)) != 1) return false;
    return node_size(n) == 1;
}

/* A node's tooltip: its arithmetic as the text trace writes it, forward and backward. */
static void tooltip(FILE *out, const gview *v, const item *it, int digits)
{
    ad_node *n = node_at(v->g, it->node);
    char r[64], buf[512], expr[256];
    view_ref(n, r, sizeof r);
    fputs("<title>", out);
    if (it->copy) {
        snprintf(buf, sizeof buf, "copy of %s: the gradients of its %d uses add up, ", r, v->uses[n->id]);
        view_xml(out, buf);
        view_xml(out, view_copy_sum(v, n, digits, buf, sizeof buf));
    } else if (n->nin == 0) {
        view_xml(out, r);
        view_xml(out, " = ");
        view_xml(out, view_values(n, false, digits, buf, sizeof buf));
        fputs("&#10;gradient ", out);
        view_xml(out, view_values(n, true, digits, buf, sizeof buf));
    } else {
        view_xml(out, r);
        view_xml(out, " = ");
        view_xml(out, view_expr(n, false, digits, expr, sizeof expr));
        if (all_scalar(n)) {
            view_xml(out, " = ");
            view_xml(out, view_expr(n, true, digits, expr, sizeof expr));
        }
        view_xml(out, " = ");
        view_xml(out, view_values(n, false, digits, buf, sizeof buf));
        if (n->flags & F_NEEDS_GRAD) {
            gate gt;
            view_gate(n, &gt);
            gate_walk w;
            view_walk(v, n, &gt, digits, &w);
            fputs("&#10;upstream gradient ", out);
            view_xml(out, view_values(n, true, digits, buf, sizeof buf));
            view_xml(out, ", at ");
            view_xml(out, w.at);
            for (int k = 0; k < gt.nshown; k++) {
                if (w.local[k][0]) fputs("&#10;local ", out), view_xml(out, w.local[k]);
                if (w.down[k][0]) {
                    fputs("&#10;downstream ", out);
                    view_xml(out, w.down[k]);
                    view_xml(out, " -> ");
                    view_xml(out, view_ref(node_in(n, gt.slot[k]), r, sizeof r));
                }
            }
        }
    }
    fputs("</title>", out);
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
    /* every lane as long as the longest label needs */
    char val[96], gr[96], r[64], id[32];
    double span = SPAN;
    labels(root, node_size(root) == 1 ? ad_node_grad_get(root, 0) : NAN, digits, val, gr, sizeof val);
    span = fmax(span, (fmax(view_width(val), view_width(gr))) * CHAR_W + 10);
    layout lay;
    st = layout_build(&v, nitems, nlinks, span, &lay);
    if (st != AD_OK) {
        view_free(&v);
        return st;
    }
    for (int e = 0; e < lay.l; e++) {
        edge_labels(&lay.ln[e], lay.it, g, digits, val, gr, sizeof val);
        if (fmax(view_width(val), view_width(gr)) * CHAR_W + 10 > span) {
            span = fmax(view_width(val), view_width(gr)) * CHAR_W + 10;
            layout_free(&lay);
            st = layout_build(&v, nitems, nlinks, span, &lay);
            if (st != AD_OK) {
                view_free(&v);
                return st;
            }
        }
    }
    item *it = lay.it;
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                 "viewBox=\"0 0 %.0f %.0f\">\n%s",
            lay.width, lay.height, lay.width, lay.height, STYLE);
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n", out);
    for (int e = 0; e < lay.l; e++) {
        const link *lk = &lay.ln[e];
        item *a = &it[lk->from], *b = &it[lk->to];
        ad_node *from = node_at(g, a->node), *to = node_at(g, b->node);
        /* the edge's lane, then a short bend into the gate's rim */
        double off = (lk->lane - (lk->lanes - 1) / 2.0) * LANE, rad = half_width(b, to);
        double yl = b->y + off, dy = fmax(-0.7 * rad, fmin(0.7 * rad, 0.6 * off));
        double xe = b->x - sqrt(rad * rad - dy * dy), xl = lk->lanes > 1 ? b->x - rad - 8 : xe, xs = xl - span;
        double x1 = a->x + half_width(a, from), mx = (x1 + xs) / 2;
        fputs("<path class=\"edge\"", out);
        if (steps) {
            item_id(b, id, sizeof id);
            fprintf(out, " data-to=\"%s\"", id);
        }
        /* through the places it keeps free in the layers it passes */
        double px = x1, py = a->y;
        fprintf(out, " d=\"M%.1f %.1f", x1, a->y);
        for (int d = lk->via; d < lk->via + lk->nvia; d++) {
            mx = (px + it[d].x - 24) / 2;
            fprintf(out, "C%.1f %.1f %.1f %.1f %.1f %.1fL%.1f %.1f", mx, py, mx, it[d].y, it[d].x - 24, it[d].y, it[d].x + 24,
                    it[d].y);
            px = it[d].x + 24, py = it[d].y;
        }
        mx = (px + xs) / 2;
        fprintf(out, "C%.1f %.1f %.1f %.1f %.1f %.1fL%.1f %.1f", mx, py, mx, yl, xs, yl, xl, yl);
        if (lk->lanes > 1) fprintf(out, "L%.1f %.1f", xe, b->y + dy);
        fputs("\"/>\n", out);
        edge_labels(lk, it, g, digits, val, gr, sizeof val);
        /* value above, gradient below the middle of the lane, as on the slides.  The value is
         * known once its node is computed; the gradient once the copy node sums it, or the
         * gate it enters sends it back. */
        int32_t vstep = steps ? steps->forward[from->id] : -1;
        int32_t gstep = !steps ? -1 : lk->slot < 0 ? steps->copy[from->id] : steps->backward[to->id];
        label_at(out, xs + span / 2, yl - 5, "val", val, vstep);
        label_at(out, xs + span / 2, yl + 14, "grad", gr, gstep);
    }
    for (int j = 0; j < lay.k; j++) {
        ad_node *n = node_at(g, it[j].node);
        if (it[j].dummy) continue;
        if (steps) {
            item_id(&it[j], id, sizeof id);
            fprintf(out, "<g id=\"%s\" class=\"part\">\n", id);
        }
        if (it[j].copy) {
            fprintf(out, "<circle class=\"copy\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\">", it[j].x, it[j].y, COPY_R);
            tooltip(out, &v, &it[j], digits);
            fputs("</circle>\n", out);
            text_at(out, it[j].x, it[j].y + 3, "small", "copy");
        } else if (n->nin == 0) {
            fprintf(out, "<rect class=\"leaf\" x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" rx=\"6\">",
                    it[j].x - LEAF_W / 2.0, it[j].y - LEAF_H / 2.0, LEAF_W, LEAF_H);
            tooltip(out, &v, &it[j], digits);
            fputs("</rect>\n", out);
            text_at(out, it[j].x, it[j].y + 5, "t", view_ref(n, r, sizeof r));
        } else {
            gate gt;
            view_gate(n, &gt);
            fprintf(out, "<circle class=\"gate\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\">", it[j].x, it[j].y, GATE_R);
            tooltip(out, &v, &it[j], digits);
            fputs("</circle>\n", out);
            text_at(out, it[j].x, it[j].y + 5, strlen(gt.label) > 4 ? "small" : "t", gt.label);
            /* the stepper's sentences name inner nodes "#id": the picture says which is which */
            if (steps) text_at(out, it[j].x, it[j].y - GATE_R - 4, "small id", view_ref(n, r, sizeof r));
        }
        if (steps) fputs("</g>\n", out);
    }
    /* the output edge, as the slides end the graph */
    item *last = &it[lay.at[root->id]];
    double x1 = last->x + half_width(last, root), x2 = x1 + span + 6;
    fprintf(out, "<path class=\"edge\" d=\"M%.1f %.1fL%.1f %.1f\"/>\n", x1, last->y, x2, last->y);
    labels(root, node_size(root) == 1 ? ad_node_grad_get(root, 0) : NAN, digits, val, gr, sizeof val);
    label_at(out, (x1 + x2) / 2, last->y - 5, "val", val, steps ? steps->forward[root->id] : -1);
    label_at(out, (x1 + x2) / 2, last->y + 14, "grad", gr, steps ? steps->base : -1);
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
