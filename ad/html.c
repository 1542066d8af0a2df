/* The interactive stepper: one self-contained HTML page that walks a graph the way the lecture
 * does, one node per step.  Forward, each node's value from its inputs; backward, "upstream
 * gradient x local gradient = downstream gradient" gate by gate, copy nodes summing their
 * uses; last, the gradient in the variables' order.  Every sentence is written here, in C,
 * as a list item; the page's small script only shows one of them and the picture's labels up
 * to that step, so the page reads the same with scripts off (the whole list, every label). */
#include "picture.h"
#include <stdlib.h>

/* ---- text ---- */

/* A value or gradient in the slides' colours: values green, gradients red. */
static void colored(FILE *out, ad_node *n, bool grad, int digits)
{
    char buf[512];
    fprintf(out, "<span class=\"%s\">", grad ? "g" : "v");
    view_xml(out, view_values(n, grad, digits, buf, sizeof buf));
    fputs("</span>", out);
}

static void colored_num(FILE *out, double x, bool grad, int digits)
{
    char nb[64];
    fprintf(out, "<span class=\"%s\">%s</span>", grad ? "g" : "v", view_num(x, digits, nb, sizeof nb));
}

static bool all_scalar(ad_node *n, const gate *gt)
{
    if (node_size(n) != 1) return false;
    for (int k = 0; k < gt->nshown; k++)
        if (node_size(node_in(n, gt->slot[k])) != 1) return false;
    return true;
}

/* ---- tensors as grids ---- */

enum { GRID_MAX = 6 }; /* cells per side; a longer side shows its first ones and "…" */

/* The cells shown of a side of n cells, and whether it ends in "…". */
static int64_t shown(int64_t n, bool *cut)
{
    *cut = n > GRID_MAX;
    return *cut ? GRID_MAX - 1 : n;
}

/* A tensor's value or gradient as a small grid, its shape under it: a scalar is one cell, a
 * vector one row, a matrix its rows; higher ranks stack their leading axes into rows. */
static void grid(FILE *out, ad_node *n, bool grad, int digits)
{
    ad_shape s = node_shape(n);
    int64_t cols = s.rank ? s.dim[s.rank - 1] : 1, rows = cols ? node_size(n) / cols : 0;
    bool rcut, ccut;
    int64_t nr = shown(rows, &rcut), nc = shown(cols, &ccut);
    char nb[64];
    fprintf(out, "<figure class=\"tensor\"><table class=\"grid %s\">", grad ? "g" : "v");
    for (int64_t i = 0; i < nr + rcut; i++) {
        fputs("<tr>", out);
        for (int64_t j = 0; j < nc + ccut; j++) {
            if (i == nr || j == nc) fputs("<td class=\"more\">&#8230;</td>", out);
            else {
                double x = grad ? ad_node_grad_get(n, i * cols + j) : ad_node_get(n, i * cols + j);
                fprintf(out, "<td>%s</td>", view_num(x, digits, nb, sizeof nb));
            }
        }
        fputs("</tr>", out);
    }
    fprintf(out, "</table><figcaption>%s %s</figcaption></figure>", grad ? "gradient" : "value",
            ad_shape_str(&s, nb, sizeof nb));
}

/* A node's name, its value grid and, on the backward pass, its gradient grid beside it. */
static void grids(FILE *out, ad_node *n, bool grad, int digits)
{
    char r[64];
    fputs("<div class=\"grids\"><span class=\"name\">", out);
    view_xml(out, view_ref(n, r, sizeof r));
    fputs("</span>", out);
    grid(out, n, false, digits);
    if (grad) grid(out, n, true, digits);
    fputs("</div>\n", out);
}

/* ---- the steps ---- */

typedef struct {
    FILE *out;
    const gview *v;
    int digits;
    int32_t *forward, *backward, *copy; /* per node id: its steps (see picture.h) */
    int32_t base, last;
    bool tensors; /* the graph has a tensor: grids and matrix-form rules */
} walk;

static void step_open(walk *w, const char *pass, const char *part, uint32_t id, const char *head)
{
    fprintf(w->out, "<li class=\"%s\" data-part=\"", pass);
    if (part) fprintf(w->out, "%s%u", part, id);
    fputs("\"><p class=\"head\">", w->out);
    view_xml(w->out, head);
    fputs("</p>", w->out);
}

static void forward_step(walk *w, ad_node *n)
{
    char r[64], head[192];
    FILE *out = w->out;
    view_ref(n, r, sizeof r);
    if (n->nin == 0) {
        const char *kind = n->op == OP_VAR ? "input variable" : n->op == OP_PARAM ? "parameter" : "constant";
        snprintf(head, sizeof head, "Forward pass: %s %s", kind, r);
        step_open(w, "fwd", "n", n->id, head);
        fputs("<p>", out);
        view_xml(out, r);
        fputs(" = ", out);
        colored(out, n, false, w->digits);
        if (w->v->uses[n->id] > 1)
            fprintf(out, " (used %d times: a copy node passes the value to each use)", w->v->uses[n->id]);
        fputs("</p>", out);
        if (node_size(n) > 1) grids(out, n, false, w->digits);
        fputs("</li>\n", out);
        return;
    }
    gate gt;
    view_gate(n, &gt);
    snprintf(head, sizeof head, "Forward pass: gate %s (%s)", gt.label, r);
    step_open(w, "fwd", "n", n->id, head);
    fputs("<p>", out);
    view_xml(out, r);
    char expr[256];
    fputs(" = ", out);
    view_xml(out, view_expr(n, false, w->digits, expr, sizeof expr));
    if (all_scalar(n, &gt)) {
        fputs(" = ", out);
        view_xml(out, view_expr(n, true, w->digits, expr, sizeof expr));
    }
    fputs(" = ", out);
    colored(out, n, false, w->digits);
    fputs("</p>", out);
    if (!all_scalar(n, &gt)) {
        for (int k = 0; k < gt.nshown; k++) grids(out, node_in(n, gt.slot[k]), false, w->digits);
        grids(out, n, false, w->digits);
    }
    fputs("</li>\n", out);
}

/* Scalar gradient of a node as the sweep left it (NaN for tensors). */
static double grad_of(ad_node *n) { return node_size(n) == 1 ? ad_node_grad_get(n, 0) : NAN; }

static void copy_step(walk *w, ad_node *n)
{
    const gview *v = w->v;
    FILE *out = w->out;
    char r[64], head[192];
    view_ref(n, r, sizeof r);
    snprintf(head, sizeof head, "Backward pass: the copy node of %s", r);
    step_open(w, "bwd", "c", n->id, head);
    fputs("<p>", out);
    view_xml(out, r);
    fprintf(out, " is used %d times; its copy node adds the gradients that come back from the uses.</p><p>copy of ",
            v->uses[n->id]);
    view_xml(out, r);
    fputs(": ", out);
    char sum[512];
    if (node_size(n) == 1) {
        /* the terms, then the sum in colour */
        view_copy_sum(v, n, w->digits, sum, sizeof sum);
        *strrchr(sum, '=') = 0;
        view_xml(out, sum);
        fputs("= ", out);
    } else {
        fprintf(out, "the gradients of its %d uses add up to ", v->uses[n->id]);
    }
    colored(out, n, true, w->digits);
    fputs("</p>", out);
    if (node_size(n) > 1) grids(out, n, true, w->digits);
    fputs("</li>\n", out);
}

/* The gate's rule in matrix form (ad_rule_text), for a gate with a tensor around it. */
static void matrix_rule(FILE *out, ad_node *n, const gate *gt)
{
    char refs[2][64], text[1024];
    const char *ref[2] = {refs[0], refs[1]};
    ad_shape in[2] = {AD_SHAPE0, AD_SHAPE0}, so = node_shape(n);
    bool needs[2] = {false, false};
    int k = gt->nshown < 2 ? gt->nshown : 2;
    for (int j = 0; j < k; j++) {
        ad_node *x = node_in(n, gt->slot[j]);
        view_ref(x, refs[j], sizeof refs[j]);
        in[j] = node_shape(x);
        needs[j] = (x->flags & F_NEEDS_GRAD) != 0;
    }
    /* beyond two inputs the library has no matrix text: the local gradients say it */
    if (gt->nshown > 2) return;
    fputs("<p class=\"rule\"><b>In matrix form:</b> ", out);
    view_xml(out, ad_rule_text(text, sizeof text, ad_node_op_name(n), k, ref, in, needs, &so));
    fputs("</p>\n", out);
}

static void backward_step(walk *w, ad_node *n)
{
    FILE *out = w->out;
    char r[64], head[192], nb[64];
    gate gt;
    view_gate(n, &gt);
    gate_walk gw;
    view_walk(w->v, n, &gt, w->digits, &gw);
    view_ref(n, r, sizeof r);
    snprintf(head, sizeof head, "Backward pass: gate %s (%s)", gt.label, r);
    step_open(w, "bwd", "n", n->id, head);
    fputs("<p><b>Upstream gradient:</b> ", out);
    colored(out, n, true, w->digits);
    fputs("</p>\n<p><b>Evaluated at:</b> ", out);
    view_xml(out, gw.at);
    fputs("</p>\n<p><b>Local gradient:</b> ", out);
    for (int k = 0, first = 1; k < gt.nshown; k++) {
        if (!gw.local[k][0]) continue; /* a registry op's one text covers all its inputs */
        fputs(first ? "" : ", ", out);
        first = 0;
        view_xml(out, gw.local[k]);
    }
    fprintf(out, "</p>\n<p><b>Downstream gradient%s:</b> ", gt.nshown > 1 ? "s" : "");
    ad_node *parts = NULL; /* a tensor input that fans out: its gradient is summed later */
    for (int k = 0; k < gt.nshown; k++) {
        ad_node *in = node_in(n, gt.slot[k]);
        fputs(k ? ", " : "", out);
        if (gw.down[k][0]) {
            /* the product, then its result in colour */
            char *eq = strrchr(gw.down[k], '=');
            *eq = 0;
            view_xml(out, gw.down[k]);
            fputs("= ", out);
            colored_num(out, gt.local[k] * grad_of(n), true, w->digits);
        } else if (w->v->uses[in->id] == 1 && (in->flags & F_NEEDS_GRAD)) {
            colored(out, in, true, w->digits);
        } else if (in->flags & F_NEEDS_GRAD) {
            ad_shape sh = node_shape(in);
            fprintf(out, "a %s part", ad_shape_str(&sh, nb, sizeof nb));
        }
        fputs(" &#8594; ", out);
        view_xml(out, view_ref(in, r, sizeof r));
        if (!(in->flags & F_NEEDS_GRAD)) fputs(" (a constant: no gradient needed)", out);
        else if (!gw.down[k][0] && w->v->uses[in->id] > 1) parts = in;
    }
    if (parts) {
        fputs(" (the copy node of ", out);
        view_xml(out, view_ref(parts, r, sizeof r));
        fputs(" adds the parts)", out);
    }
    fputs("</p>", out);
    if (!all_scalar(n, &gt)) {
        fputc('\n', out);
        matrix_rule(out, n, &gt);
        grids(out, n, true, w->digits);
        for (int k = 0; k < gt.nshown; k++) {
            ad_node *in = node_in(n, gt.slot[k]);
            /* an input used once has its whole gradient now; a fanned-out one gets it summed
             * at its copy node's step */
            if ((in->flags & F_NEEDS_GRAD) && w->v->uses[in->id] == 1) grids(out, in, true, w->digits);
        }
    }
    fputs("</li>\n", out);
}

/* The last step: the gradient, in the order the variables were created. */
static void gradient_step(walk *w)
{
    const gview *v = w->v;
    FILE *out = w->out;
    char r[64], nb[64];
    step_open(w, "end", NULL, 0, "Result: the gradient, all partial derivatives");
    int nleaves = 0;
    bool scalars = true;
    for (uint32_t i = 0; i < v->n; i++) {
        ad_node *n = node_at(v->g, i);
        if (v->live[i] && (n->flags & F_LEAF)) nleaves++, scalars &= node_size(n) == 1;
    }
    if (nleaves && scalars) {
        fputs("<p>&#8711;f(", out);
        for (int pass = 0; pass < 2; pass++) {
            int k = 0;
            for (uint32_t i = 0; i < v->n; i++) {
                ad_node *n = node_at(v->g, i);
                if (!v->live[i] || !(n->flags & F_LEAF)) continue;
                fputs(k++ ? ", " : "", out);
                if (pass == 0) view_xml(out, view_ref(n, r, sizeof r));
                else fprintf(out, "<span class=\"g\">%s</span>", view_num(ad_node_grad_get(n, 0), w->digits, nb, sizeof nb));
            }
            fputs(pass == 0 ? ") = (" : ")</p>\n", out);
        }
        if (nleaves > 1)
            fputs("<p>Note the ordering of the arguments: the variables in the order they were given.</p>\n", out);
    }
    /* scalars on one line, as the slides' column vector; tensors one per line */
    int k = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        ad_node *n = node_at(v->g, i);
        if (!v->live[i] || !(n->flags & F_LEAF)) continue;
        fputs(!scalars || !k++ ? "<p>df/d" : ", df/d", out);
        view_xml(out, view_ref(n, r, sizeof r));
        fputs(" = ", out);
        colored(out, n, true, w->digits);
        if (!scalars) fputs("</p>\n", out);
        if (!scalars && node_size(n) > 1) grids(out, n, true, w->digits);
    }
    if (scalars && k) fputs("</p>\n", out);
    if (!nleaves) fputs("<p>f depends on no variable or parameter: there is no gradient to show.</p>\n", out);
    fputs("</li>\n", out);
}

/* Numbers every step: forward one per node, then df/df = 1, then per node in reverse order
 * its copy node's sum (if it fans out) and its gate (if it needs a gradient), then the
 * result.  Parts that never get a gradient show theirs at the last step. */
static void number_steps(walk *w)
{
    const gview *v = w->v;
    int32_t s = 1;
    for (uint32_t i = 0; i < v->n; i++)
        if (v->live[i]) w->forward[i] = s++;
    w->base = s++;
    for (uint32_t i = v->n; i-- > 0;) {
        if (!v->live[i]) continue;
        ad_node *n = node_at(v->g, i);
        w->copy[i] = v->uses[i] > 1 ? s++ : -1;
        w->backward[i] = n->nin > 0 && (n->flags & F_NEEDS_GRAD) ? s++ : -1;
    }
    w->last = s;
    for (uint32_t i = 0; i < v->n; i++) {
        if (w->copy[i] < 0) w->copy[i] = s;
        if (w->backward[i] < 0) w->backward[i] = s;
    }
}

static void write_steps(walk *w)
{
    const gview *v = w->v;
    FILE *out = w->out;
    int nlive = 0;
    for (uint32_t i = 0; i < v->n; i++) nlive += v->live[i];
    fputs("<ol id=\"steps\" start=\"0\">\n", out);
    step_open(w, "start", NULL, 0, "The graph");
    fprintf(out, "<p>%d nodes, inputs on the left. <b>Forward pass</b> (steps 1&#8211;%d): each node's "
                 "value from its inputs. <b>Backward pass</b> (steps %d&#8211;%d): at every node, the "
                 "upstream gradient times the local gradient gives the downstream gradient.</p>\n"
                 "<p>Values appear above the edges (green), gradients below (red).</p></li>\n",
            nlive, (int)w->base - 1, (int)w->base, (int)w->last);
    for (uint32_t i = 0; i < v->n; i++)
        if (v->live[i]) forward_step(w, node_at(v->g, i));
    step_open(w, "bwd", "n", v->root->id, "Backward pass: start at the output");
    if (node_size(v->root) == 1) {
        fputs("<p><b>Base case:</b> df/df = <span class=\"g\">1</span></p>\n"
              "<p>The gradient flowing into the output is 1; from here each gate multiplies the "
              "gradient it receives by its local gradient.</p></li>\n", out);
    } else { /* a tensor output swept with a seed (ad_backward_seed) */
        fputs("<p><b>Base case:</b> the seed gradient ", out);
        colored(out, v->root, true, w->digits);
        fputs(" flows into the output.</p></li>\n", out);
    }
    for (uint32_t i = v->n; i-- > 0;) {
        if (!v->live[i]) continue;
        ad_node *n = node_at(v->g, i);
        if (v->uses[i] > 1) copy_step(w, n);
        if (n->nin > 0 && (n->flags & F_NEEDS_GRAD)) backward_step(w, n);
    }
    gradient_step(w);
    fputs("</ol>\n", out);
}

/* ---- the page ---- */

static const char *CSS =
    "body{font-family:Helvetica,Arial,sans-serif;margin:16px 24px;color:#222;background:#fafafa}"
    "h1{font-size:20px;margin:0 0 10px;font-weight:600}"
    "#controls{display:none;align-items:center;gap:10px;margin-bottom:8px}"
    ".js #controls{display:flex}"
    "button{font-size:15px;padding:4px 14px;border:1px solid #999;border-radius:5px;background:#fff;cursor:pointer}"
    "button:disabled{opacity:.4;cursor:default}"
    "#slider{flex:1;max-width:520px}#counter{font-variant-numeric:tabular-nums;min-width:14em}"
    ".hint{color:#777;font-size:13px}"
    "#picture{overflow-x:auto;background:#fff;border:1px solid #ddd;border-radius:6px}"
    "#picture svg{display:block;max-width:100%;height:auto}"
    "#panel{display:none;margin-top:10px;padding:10px 16px;min-height:7.5em;background:#fff;"
    "border:1px solid #ddd;border-left:5px solid #e36209;border-radius:6px;font-size:17px;line-height:1.45}"
    ".js #panel{display:block}.js #steps{display:none}"
    "#panel p,#steps p{margin:3px 0}.head{font-weight:600;color:#555;font-size:14px}"
    "li.fwd{border-left:3px solid #1a7f37;padding-left:8px;margin:6px 0}"
    "li.bwd{border-left:3px solid #cf222e;padding-left:8px;margin:6px 0}"
    ".v{color:#1a7f37;font-weight:600}.g{color:#cf222e;font-weight:600}"
    /* the picture: labels not reached yet are hidden, the ones this step fills in stand out,
     * the current node and the edges into it are highlighted */
    "svg .later{visibility:hidden}"
    "svg text.now{font-weight:bold;font-size:14px;text-decoration:underline}"
    "svg .id{fill:#888}"
    "svg .cur circle,svg .cur rect{stroke:#e36209;stroke-width:3.5}"
    "svg .cur .gate,svg .cur .leaf,svg .cur .copy{fill:#fff1e0}"
    "svg .flow{stroke:#e36209;stroke-width:2.5}";

static const char *GRID_CSS =
    ".grids{display:flex;align-items:flex-start;gap:14px;margin:6px 0}.grids .name{min-width:3em;font-weight:600;padding-top:4px}"
    "figure.tensor{margin:0;text-align:center}figcaption{font-size:12px;color:#666}"
    "table.grid{border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums}"
    "table.grid td{border:1px solid #bbb;padding:2px 7px;text-align:right;min-width:2.6em}"
    "table.grid.v td{color:#1a7f37;background:#f3faf4}table.grid.g td{color:#cf222e;background:#fdf2f2}"
    "table.grid td.more{color:#888;text-align:center}";

/* Shows step N of the list in the panel and the picture as it stands after step N; follows
 * and updates the address's #step=N, so a step can be linked (and tested). */
static const char *SCRIPT =
    "(function () {\n"
    "  var steps = document.getElementById('steps').children, last = steps.length - 1;\n"
    "  var panel = document.getElementById('panel'), slider = document.getElementById('slider');\n"
    "  var counter = document.getElementById('counter');\n"
    "  var prev = document.getElementById('prev'), next = document.getElementById('next');\n"
    "  var tagged = document.querySelectorAll('svg [data-step]');\n"
    "  var parts = document.querySelectorAll('svg .part'), edges = document.querySelectorAll('svg [data-to]');\n"
    "  var names = {start: 'start', fwd: 'forward pass', bwd: 'backward pass', end: 'result'};\n"
    "  var at = 0;\n"
    "  slider.max = last;\n"
    "  function fromHash() {\n"
    "    var m = /step=(\\d+)/.exec(location.hash);\n"
    "    return m ? +m[1] : 0;\n"
    "  }\n"
    "  function show(s) {\n"
    "    at = s = Math.max(0, Math.min(last, s | 0));\n"
    "    var li = steps[s], part = li.getAttribute('data-part'), i;\n"
    "    for (i = 0; i < tagged.length; i++) {\n"
    "      var t = +tagged[i].getAttribute('data-step');\n"
    "      tagged[i].classList.toggle('later', t > s);\n"
    "      tagged[i].classList.toggle('now', t === s);\n"
    "    }\n"
    "    for (i = 0; i < parts.length; i++) parts[i].classList.toggle('cur', parts[i].id === part);\n"
    "    for (i = 0; i < edges.length; i++) edges[i].classList.toggle('flow', edges[i].getAttribute('data-to') === part);\n"
    "    panel.innerHTML = li.innerHTML;\n"
    "    panel.setAttribute('data-step', s);\n"
    "    slider.value = s;\n"
    "    counter.textContent = 'Step ' + s + ' of ' + last + ': ' + names[li.className];\n"
    "    prev.disabled = s === 0;\n"
    "    next.disabled = s === last;\n"
    "    if (fromHash() !== s || !/step=/.test(location.hash)) {\n"
    "      try { history.replaceState(null, '', '#step=' + s); } catch (e) { location.hash = 'step=' + s; }\n"
    "    }\n"
    "  }\n"
    "  prev.onclick = function () { show(at - 1); };\n"
    "  next.onclick = function () { show(at + 1); };\n"
    "  slider.oninput = function () { show(+slider.value); };\n"
    "  window.addEventListener('hashchange', function () { show(fromHash()); });\n"
    "  document.addEventListener('keydown', function (e) {\n"
    "    if (e.target === slider || e.altKey || e.ctrlKey || e.metaKey) return;\n"
    "    var to = {ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: last}[e.key];\n"
    "    if (to === undefined) return;\n"
    "    e.preventDefault();\n"
    "    show(to);\n"
    "  });\n"
    "  show(fromHash());\n"
    "})();\n";

ad_status ad_write_html(const ad_graph *g, ad_node *root, FILE *out, int digits, const char *title)
{
    if (!out) return AD_ERR_NULL;
    gview v;
    ad_status st = view_build(&v, g, root);
    if (st != AD_OK) return st;
    walk w = {out, &v, digits, NULL, NULL, NULL, 0, 0, false};
    for (uint32_t i = 0; i < v.n; i++) w.tensors |= v.live[i] && node_size(node_at(g, i)) > 1;
    w.forward = ad_xcalloc(v.n, sizeof *w.forward);
    w.backward = ad_xcalloc(v.n, sizeof *w.backward);
    w.copy = ad_xcalloc(v.n, sizeof *w.copy);
    if (!w.forward || !w.backward || !w.copy) {
        st = AD_ERR_NOMEM;
        goto done;
    }
    number_steps(&w);
    if (!title) title = "backprop";
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          /* set before the body is drawn, so the list of all steps never flashes up */
          "<script>document.documentElement.className = 'js';</script>\n<title>", out);
    view_xml(out, title);
    fprintf(out, " &#8212; backpropagation step by step</title>\n<style>%s%s</style>\n</head>\n<body>\n<h1>", CSS,
            w.tensors ? GRID_CSS : "");
    view_xml(out, title);
    fputs("</h1>\n<div id=\"controls\"><button id=\"prev\" type=\"button\">&#9664; Previous</button>"
          "<button id=\"next\" type=\"button\">Next &#9654;</button>"
          "<input id=\"slider\" type=\"range\" min=\"0\" max=\"0\" value=\"0\" aria-label=\"step\">"
          "<span id=\"counter\"></span><span class=\"hint\">&#8592; &#8594; keys step</span></div>\n"
          "<div id=\"picture\">\n", out);
    picture_steps ps = {w.forward, w.backward, w.copy, w.base};
    /* a graph too large to draw gets the summary picture; the steps still walk it */
    ad_status pic = picture_write(g, root, out, digits, &ps);
    if (pic != AD_OK && pic != AD_ERR_ARG) {
        st = pic;
        goto done;
    }
    fputs("</div>\n<div id=\"panel\" aria-live=\"polite\"></div>\n", out);
    write_steps(&w);
    fprintf(out, "<script>\n%s</script>\n</body>\n</html>\n", SCRIPT);
    st = ferror(out) ? AD_ERR_IO : pic;
done:
    ad_xfree(w.forward);
    ad_xfree(w.backward);
    ad_xfree(w.copy);
    view_free(&v);
    return st;
}
