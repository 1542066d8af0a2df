/* The interactive stepper: one self-contained HTML page that walks a graph the way the lecture
 * does, one node per step.  Forward, each node's value from its inputs; backward, "upstream
 * gradient x local gradient = downstream gradient" gate by gate, copy nodes summing their
 * uses; last, the gradient in the variables' order.  Every sentence is written here, in C,
 * as a list item; the page's small script only shows one of them and the picture's labels up
 * to that step, so the page reads the same with scripts off (the whole list, every label). */
#include "picture.h"
#include <ctype.h>
#include <stdlib.h>

/* ---- text ---- */

/* A number inside a formula: negative ones in parentheses, as the slides write (-1)*(0.2). */
static char *operand(double x, int digits, char *buf, size_t len)
{
    char nb[64];
    view_num(x, digits, nb, sizeof nb);
    snprintf(buf, len, nb[0] == '-' ? "(%s)" : "%s", nb);
    return buf;
}

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

/* The gate as an expression of its inputs: "w0 * x0", "exp(#9)", "1 + #10"; with numbers,
 * the inputs' values instead of their names: "2.00 × (-1.00)".  A folded constant stays as
 * written either way. */
static void gate_expr(FILE *out, ad_node *n, bool numbers, int digits)
{
    int fold = view_folded(n), shown = n->nin < VIEW_MAX_SHOWN ? n->nin : VIEW_MAX_SHOWN;
    const op_entry *e = op_entry_get(n->op);
    /* negative numbers need parentheses after an operator, not inside a call: exp(-1.00) */
    bool call = !e->infix && !e->prefix;
    char s[2][64];
    for (int k = 0; k < 2 && k < n->nin; k++) {
        ad_node *in = node_in(n, k);
        if (!numbers || k == fold) view_ref(in, s[k], sizeof s[k]);
        else if (call) view_num(ad_node_get(in, 0), digits, s[k], sizeof s[k]);
        else operand(ad_node_get(in, 0), digits, s[k], sizeof s[k]);
    }
    const char *infix = e->infix && numbers && strcmp(e->infix, " * ") == 0 ? " &#215; " : e->infix;
    if (e->prefix && strcmp(e->prefix, "-") == 0) {
        /* -(1.00), not --1.00 or a bare -1.00 that reads as the result */
        fputs(numbers && s[0][0] != '(' ? "-(" : "-", out);
        view_xml(out, s[0]);
        fputs(numbers && s[0][0] != '(' ? ")" : "", out);
        return;
    }
    if (e->prefix) {
        fputs(e->prefix, out);
        view_xml(out, s[0]);
        return;
    }
    if (infix) {
        view_xml(out, s[0]);
        fputs(infix, out);
        view_xml(out, s[1]);
        return;
    }
    fprintf(out, "%s(", e->def.name);
    for (int k = 0; k < shown; k++) {
        char r[64];
        fputs(k ? ", " : "", out);
        view_xml(out, k < 2 ? s[k] : view_ref(node_in(n, k), r, sizeof r));
    }
    if (n->nin > shown) fputs(", ...", out);
    fputc(')', out);
}

/* The right-hand side of a local-gradient formula with the inputs' values put in for x and y:
 * "-1/x^2" at x = 1.37 gives "-1/1.37^2".  Empty when there is nothing to put in, or when the
 * formula is a case split ("1 if x > 0, else 0") that reads worse with numbers. */
static void substitute(const char *rhs, const char *x, const char *y, char *buf, size_t len)
{
    buf[0] = 0;
    if (strstr(rhs, " if ") || strchr(rhs, '[') || strstr(rhs, "sign")) return;
    size_t at = 0;
    bool changed = false;
    for (const char *p = rhs; *p && at + 1 < len; p++) {
        bool alone = (p == rhs || !(isalnum((unsigned char)p[-1]) || p[-1] == '_')) &&
                     !(isalnum((unsigned char)p[1]) || p[1] == '_');
        const char *put = alone && *p == 'x' ? x : alone && *p == 'y' ? y : NULL;
        /* exp(x) at -1 is exp(-1.00), not exp((-1.00)) */
        if (put && put[0] == '(' && p > rhs && p[-1] == '(' && p[1] == ')') {
            at += (size_t)snprintf(buf + at, len - at, "%.*s", (int)strlen(put) - 2, put + 1);
            changed = true;
        } else if (put) {
            at += (size_t)snprintf(buf + at, len - at, "%s", put);
            changed = true;
        } else {
            buf[at++] = *p;
            buf[at] = 0;
        }
    }
    if (at >= len) at = len - 1;
    buf[at] = 0;
    if (!changed) buf[0] = 0;
}

/* ---- the steps ---- */

typedef struct {
    FILE *out;
    const gview *v;
    int digits;
    int32_t *forward, *backward, *copy; /* per node id: its steps (see picture.h) */
    int32_t base, last;
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
        fputs("</p></li>\n", out);
        return;
    }
    gate gt;
    view_gate(n, &gt);
    snprintf(head, sizeof head, "Forward pass: gate %s (%s)", gt.label, r);
    step_open(w, "fwd", "n", n->id, head);
    fputs("<p>", out);
    view_xml(out, r);
    fputs(" = ", out);
    gate_expr(out, n, false, w->digits);
    if (all_scalar(n, &gt)) {
        fputs(" = ", out);
        gate_expr(out, n, true, w->digits);
    }
    fputs(" = ", out);
    colored(out, n, false, w->digits);
    fputs("</p></li>\n", out);
}

/* Scalar gradient of a node as the sweep left it (NaN for tensors). */
static double grad_of(ad_node *n) { return node_size(n) == 1 ? ad_node_grad_get(n, 0) : NAN; }

static void copy_step(walk *w, ad_node *n)
{
    const gview *v = w->v;
    FILE *out = w->out;
    char r[64], head[192], nb[64];
    view_ref(n, r, sizeof r);
    snprintf(head, sizeof head, "Backward pass: the copy node of %s", r);
    step_open(w, "bwd", "c", n->id, head);
    fputs("<p>", out);
    view_xml(out, r);
    fprintf(out, " is used %d times; its copy node adds the gradients that come back from the uses.</p><p>copy of ",
            v->uses[n->id]);
    view_xml(out, r);
    fputs(": ", out);
    if (node_size(n) == 1) {
        /* as the sweep meets the uses: last use first, the order of the backward trace */
        for (int32_t e = v->cstart[n->id + 1]; e-- > v->cstart[n->id];) {
            ad_node *c = node_at(v->g, v->cons[e].node);
            fprintf(out, "%s%s", e + 1 < v->cstart[n->id + 1] ? " + " : "",
                    operand(view_edge_grad(c, v->cons[e].slot), w->digits, nb, sizeof nb));
        }
        fputs(" = ", out);
    } else {
        fprintf(out, "the gradients of its %d uses add up to ", v->uses[n->id]);
    }
    colored(out, n, true, w->digits);
    fputs("</p></li>\n", out);
}

static void backward_step(walk *w, ad_node *n)
{
    FILE *out = w->out;
    char r[64], head[192], nb[64], xs[64], ys[64], xs2[64], rhs[256];
    gate gt;
    view_gate(n, &gt);
    view_ref(n, r, sizeof r);
    snprintf(head, sizeof head, "Backward pass: gate %s (%s)", gt.label, r);
    step_open(w, "bwd", "n", n->id, head);
    fputs("<p><b>Upstream gradient:</b> ", out);
    colored(out, n, true, w->digits);
    fputs("</p>\n<p><b>Local gradient:</b> ", out);
    bool scalar = all_scalar(n, &gt);
    /* x is the first input drawn as an edge, y the second (the formulas' names) */
    if (scalar) {
        operand(ad_node_get(node_in(n, gt.slot[0]), 0), w->digits, xs, sizeof xs);
        operand(gt.nshown > 1 ? ad_node_get(node_in(n, gt.slot[1]), 0) : NAN, w->digits, ys, sizeof ys);
    }
    for (int k = 0; k < gt.nshown; k++) {
        if (!gt.formula[k][0]) continue; /* a registry op's one text covers all its inputs */
        fputs(k ? ", " : "", out);
        view_xml(out, gt.formula[k]);
        if (isnan(gt.local[k])) continue;
        const char *eq = strstr(gt.formula[k], "] = ");
        const char *right = eq ? eq + 4 : "";
        char *end;
        strtod(right, &end);
        bool plain_number = *right && *end == 0;
        view_num(gt.local[k], w->digits, nb, sizeof nb);
        rhs[0] = 0;
        if (scalar && eq) substitute(right, xs, ys, rhs, sizeof rhs);
        /* "= y = -2.00", not "= y = (-2.00) = -2.00" */
        bool just_the_number = strcmp(rhs, nb) == 0 || strcmp(rhs, operand(gt.local[k], w->digits, xs2, sizeof xs2)) == 0;
        if (rhs[0] && !just_the_number) fputs(" = ", out), view_xml(out, rhs);
        if (!plain_number) fprintf(out, " = %s", nb);
    }
    fprintf(out, "</p>\n<p><b>Downstream gradient%s:</b> ", gt.nshown > 1 ? "s" : "");
    ad_node *parts = NULL; /* a tensor input that fans out: its gradient is summed later */
    for (int k = 0; k < gt.nshown; k++) {
        ad_node *in = node_in(n, gt.slot[k]);
        double d = gt.local[k] * grad_of(n);
        fputs(k ? ", " : "", out);
        if (!isnan(d)) {
            fprintf(out, "%s &#215; ", view_num(gt.local[k], w->digits, nb, sizeof nb));
            fprintf(out, "%s = ", operand(grad_of(n), w->digits, nb, sizeof nb));
            colored_num(out, d, true, w->digits);
        } else if (w->v->uses[in->id] == 1 && (in->flags & F_NEEDS_GRAD)) {
            colored(out, in, true, w->digits);
        } else if (in->flags & F_NEEDS_GRAD) {
            ad_shape sh = node_shape(in);
            fprintf(out, "a %s part", ad_shape_str(&sh, nb, sizeof nb));
        }
        fputs(" &#8594; ", out);
        view_xml(out, view_ref(in, r, sizeof r));
        if (!(in->flags & F_NEEDS_GRAD)) fputs(" (a constant: no gradient needed)", out);
        else if (isnan(d) && w->v->uses[in->id] > 1) parts = in;
    }
    if (parts) {
        fputs(" (the copy node of ", out);
        view_xml(out, view_ref(parts, r, sizeof r));
        fputs(" adds the parts)", out);
    }
    fputs("</p></li>\n", out);
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
    walk w = {out, &v, digits, NULL, NULL, NULL, 0, 0};
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
    fprintf(out, " &#8212; backpropagation step by step</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", CSS);
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
