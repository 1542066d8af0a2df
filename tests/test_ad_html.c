/* The HTML stepper from the library: the page is well formed and self-contained, small for the
 * lecture's examples, holds every step's sentence with the slides' numbers in order, tags the
 * picture's labels with the steps at which they appear, and copes with tensors, large graphs,
 * bad arguments and failed allocations.  (tests/html_browser_test.py drives it in Chromium.) */
#include "testutil.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *page(const ad_graph *g, ad_node *root, int digits, const char *title, ad_status *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    *st = ad_write_html(g, root, f, digits, title);
    fclose(f);
    return buf;
}

static ad_node *neuron(ad_graph *g) { return lecture_neuron(g); }

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++) n++;
    return n;
}

static bool is_void(const char *tag, size_t len)
{
    static const char *const v[] = {"meta", "input", "br", "link", "img", "hr"};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (strlen(v[i]) == len && strncmp(tag, v[i], len) == 0) return true;
    return false;
}

/* Tags balance, HTML's void elements aside; script and style bodies are skipped. */
static bool well_formed(const char *s)
{
    const char *stack[256];
    size_t len[256];
    int depth = 0;
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        if (p[1] == '!') continue;
        const char *gt = strchr(p, '>');
        if (!gt) return false;
        if (p[1] == '/') {
            if (!depth) return false;
            depth--;
            if (strncmp(p + 2, stack[depth], len[depth]) != 0 || p[2 + len[depth]] != '>') return false;
            continue;
        }
        size_t n = strcspn(p + 1, " >/");
        if (gt[-1] == '/' || is_void(p + 1, n)) continue;
        if (depth == 256) return false;
        stack[depth] = p + 1;
        len[depth] = n;
        depth++;
        if ((n == 6 && strncmp(p + 1, "script", 6) == 0) || (n == 5 && strncmp(p + 1, "style", 5) == 0)) {
            char close[16];
            snprintf(close, sizeof close, "</%.*s>", (int)n, p + 1);
            const char *end = strstr(gt, close);
            if (!end) return false;
            p = end - 1;
        }
    }
    return depth == 0;
}

/* Nothing is fetched: no address but the SVG namespace, no src, href, url() or @import. */
static void self_contained(const char *html)
{
    ck_assert_int_eq(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    ck_assert_ptr_null(strstr(html, "src="));
    ck_assert_ptr_null(strstr(html, "href="));
    ck_assert_ptr_null(strstr(html, "url("));
    ck_assert_ptr_null(strstr(html, "@import"));
}

/* Each of want[] occurs, in this order. */
static void in_order(const char *html, const char *const *want, int n)
{
    const char *p = html;
    for (int i = 0; i < n; i++) {
        const char *q = strstr(p, want[i]);
        ck_assert_msg(q != NULL, "missing (or out of order): %s", want[i]);
        p = q + strlen(want[i]);
    }
}

START_TEST(neuron_page_walks_the_slides)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *html = page(g, f, 2, "f = 1/(1+exp(-(w0*x0+w1*x1+w2)))", &st);
    ck_assert_int_eq(st, AD_OK);
    ck_assert(strncmp(html, "<!DOCTYPE html>\n<html lang=\"en\">", 32) == 0);
    ck_assert(well_formed(html));
    self_contained(html);
    ck_assert_int_lt((long)strlen(html), 200 * 1024);
    ck_assert_int_eq(count(html, "id=\"panel\""), 1);
    /* step 0, 13 forward (the constant 1 is inside "+1"), df/df, 8 gates, the gradient */
    ck_assert_int_eq(count(html, "<li class="), 24);
    static const char *const walk[] = {
        "<li class=\"start\"",
        "x0 = <span class=\"v\">-1.00</span>",
        "w2 = <span class=\"v\">-3.00</span>",
        "#5 = w0 \u00b7 x0 = 2.00 \u00b7 (-1.00) = <span class=\"v\">-2.00</span>",
        "#9 = -#8 = -(1.00) = <span class=\"v\">-1.00</span>",
        "#10 = exp(#9) = exp(-1.00) = <span class=\"v\">0.37</span>",
        "#12 = 1 + #10 = 1 + 0.37 = <span class=\"v\">1.37</span>",
        "#13 = 1/#12 = 1/1.37 = <span class=\"v\">0.73</span>",
        "<b>Base case:</b> df/df = <span class=\"g\">1</span>",
        /* the slides' backward steps, one gate each: where it is evaluated, the local gradient
         * with the values put in, the downstream gradient as a product */
        "<b>Upstream gradient:</b> <span class=\"g\">1.00</span>",
        "<b>Evaluated at:</b> u = #12 = 1.37</p>",
        "<b>Local gradient:</b> \u2202/\u2202u [1/u] = -1/u^2 = -1/1.37^2 = -0.53</p>",
        "<b>Downstream gradient:</b> (-0.53) \u00b7 1.00 = <span class=\"g\">-0.53</span> &#8594; #12",
        "<b>Local gradient:</b> \u2202/\u2202u [u + 1] = 1</p>",
        "1 \u00b7 (-0.53) = <span class=\"g\">-0.53</span>",
        "<b>Local gradient:</b> \u2202/\u2202u [exp(u)] = exp(u) = exp(-1.00) = 0.37</p>",
        "0.37 \u00b7 (-0.53) = <span class=\"g\">-0.20</span> &#8594; #9",
        "<b>Local gradient:</b> \u2202/\u2202u [-u] = -1</p>",
        "(-1) \u00b7 (-0.20) = <span class=\"g\">0.20</span> &#8594; #8",
        "<b>Evaluated at:</b> u = #7 = 4.00, w2 = -3.00</p>",
        "\u2202/\u2202u [u + w2] = 1, \u2202/\u2202w2 [u + w2] = 1</p>",
        "1 \u00b7 0.20 = <span class=\"g\">0.20</span> &#8594; #7, 1 \u00b7 0.20 = <span class=\"g\">0.20</span> &#8594; w2",
        "1 \u00b7 0.20 = <span class=\"g\">0.20</span> &#8594; #5, 1 \u00b7 0.20 = <span class=\"g\">0.20</span> &#8594; #6",
        "\u2202/\u2202w1 [w1\u00b7x1] = x1 = -2.00, \u2202/\u2202x1 [w1\u00b7x1] = w1 = -3.00",
        ("(-2.00) \u00b7 0.20 = <span class=\"g\">-0.39</span> &#8594; w1, (-3.00) \u00b7 0.20 = <span class=\"g\">-0.59</span> "
         "&#8594; x1"),
        "<b>Evaluated at:</b> w0 = 2.00, x0 = -1.00</p>",
        "\u2202/\u2202w0 [w0\u00b7x0] = x0 = -1.00, \u2202/\u2202x0 [w0\u00b7x0] = w0 = 2.00",
        ("(-1.00) \u00b7 0.20 = <span class=\"g\">-0.20</span> &#8594; w0, 2.00 \u00b7 0.20 = <span class=\"g\">0.39</span> "
         "&#8594; x0"),
        ("&#8711;f(x0, x1, w0, w1, w2) = (<span class=\"g\">0.39</span>, <span class=\"g\">-0.59</span>, "
         "<span class=\"g\">-0.20</span>, <span class=\"g\">-0.39</span>, <span class=\"g\">0.20</span>)"),
        "</ol>\n<script>",
    };
    in_order(html, walk, (int)(sizeof walk / sizeof *walk));
    free(html);
    /* the slides round to one decimal */
    html = page(g, f, 1, NULL, &st);
    ck_assert_ptr_nonnull(strstr(html, "2.0 \u00b7 0.2 = <span class=\"g\">0.4</span> &#8594; x0"));
    ck_assert_ptr_nonnull(strstr(html, "<title>backprop &#8212;"));
    free(html);
    ad_graph_free(g);
}
END_TEST

/* Every label of the picture carries the step at which it appears: a value at its node's
 * forward step, a gradient at the step of the gate that sends it back. */
START_TEST(labels_are_tagged_with_their_steps)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *html = page(g, f, 2, "neuron", &st);
    /* 12 edges and the output edge, a value and a gradient each */
    ck_assert_int_eq(count(html, " data-step=\""), 26);
    for (const char *p = html; (p = strstr(p, " data-step=\"")); p++) {
        int s = atoi(p + strlen(" data-step=\""));
        ck_assert_int_ge(s, 1);
        ck_assert_int_le(s, 23);
    }
    /* the output: its value at step 13 (the last forward step), df/df = 1 at step 14 */
    ck_assert_ptr_nonnull(strstr(html, "class=\"val\" data-step=\"13\">0.73</text>"));
    ck_assert_ptr_nonnull(strstr(html, "class=\"grad\" data-step=\"14\">1.00</text>"));
    /* the slides' -0.53 leaves 1/x at step 15, the gate's backward step */
    ck_assert_ptr_nonnull(strstr(html, "class=\"grad\" data-step=\"15\">-0.53</text>"));
    /* 13 parts drawn as groups the script can highlight, one per step */
    ck_assert_int_eq(count(html, "<g id=\"n"), 13);
    ck_assert_int_eq(count(html, "class=\"part\""), 13);
    ck_assert_int_eq(count(html, "data-to=\"n"), 12);
    free(html);
    /* the plain picture has none of it */
    char *svg = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&svg, &len);
    ck_assert_int_eq(ad_write_svg(g, f, out, 2), AD_OK);
    fclose(out);
    ck_assert_ptr_null(strstr(svg, "data-"));
    ck_assert_ptr_null(strstr(svg, "<g "));
    free(svg);
    ad_graph_free(g);
}
END_TEST

START_TEST(copy_node_shows_its_sum)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 3), *f = ad_add(g, ad_mul(g, x, x), x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *html = page(g, f, 2, "f = x*x + x", &st);
    ck_assert_int_eq(st, AD_OK);
    ck_assert(well_formed(html));
    self_contained(html);
    ck_assert_int_lt((long)strlen(html), 200 * 1024);
    static const char *const walk[] = {
        "x = <span class=\"v\">3.00</span> (used 3 times",
        "#1 = x \u00b7 x = 3.00 \u00b7 3.00 = <span class=\"v\">9.00</span>",
        "#2 = #1 + x = 9.00 + 3.00 = <span class=\"v\">12.00</span>",
        "<li class=\"bwd\" data-part=\"c0\">",
        "copy of x: 1.00 + 3.00 + 3.00 = <span class=\"g\">7.00</span>",
        "df/dx = <span class=\"g\">7.00</span>",
    };
    in_order(html, walk, (int)(sizeof walk / sizeof *walk));
    ck_assert_ptr_nonnull(strstr(html, "<g id=\"c0\" class=\"part\">"));
    /* the sum appears on the edge into the copy node at the copy step (step 7 of 8) */
    ck_assert_ptr_nonnull(strstr(html, "class=\"grad\" data-step=\"7\">7.00</text>"));
    free(html);
    ad_graph_free(g);
}
END_TEST

START_TEST(lecture_pages_are_small)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 2), *y = ad_var(g, "y", 3), *z = ad_var(g, "z", -2);
    ad_node *s = ad_add(g, x, y), *f = ad_mul(g, z, s);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *html = page(g, f, 2, "f = z*(x+y)", &st);
    ck_assert_int_eq(st, AD_OK);
    ck_assert(well_formed(html));
    self_contained(html);
    ck_assert_int_lt((long)strlen(html), 200 * 1024);
    /* the first example's backward steps as the slides write them */
    ck_assert_ptr_nonnull(strstr(html, "<b>Local gradient:</b> \u2202/\u2202z [z\u00b7u] = u = 5.00, \u2202/\u2202u [z\u00b7u] = z = -2.00</p>"));
    ck_assert_ptr_nonnull(strstr(html, "5.00 \u00b7 1.00 = <span class=\"g\">5.00</span> &#8594; z, "
                                       "(-2.00) \u00b7 1.00 = <span class=\"g\">-2.00</span> &#8594; #3"));
    ck_assert_ptr_nonnull(strstr(html, "1 \u00b7 (-2.00) = <span class=\"g\">-2.00</span> &#8594; x"));
    ck_assert_ptr_nonnull(strstr(html, "&#8711;f(x, y, z) = (<span class=\"g\">-2.00</span>, "
                                       "<span class=\"g\">-2.00</span>, <span class=\"g\">5.00</span>)"));
    free(html);
    ad_graph_free(g);
}
END_TEST

/* The page of f after its backward sweep, checked to be well formed and self-contained. */
static char *swept_page(ad_graph *g, ad_node *f, const char *title)
{
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *html = page(g, f, 2, title, &st);
    ck_assert_int_eq(st, AD_OK);
    ck_assert(well_formed(html));
    self_contained(html);
    return html;
}

/* The cells of the first grid after `from` in html, and how many of them are "…". */
static int grid_cells(const char *from, int *more)
{
    const char *t = strstr(from, "<table class=\"grid ");
    ck_assert_ptr_nonnull(t);
    const char *end = strstr(t, "</table>");
    int n = 0;
    *more = 0;
    for (const char *p = strstr(t, "<td"); p && p < end; p = strstr(p + 1, "<td"))
        n++, *more += strncmp(p, "<td class=\"more\">", 17) == 0;
    return n;
}

/* The step (list item) whose head is `head`, as its own string. */
static char *step_of(const char *html, const char *head)
{
    const char *h = strstr(html, head);
    ck_assert_msg(h != NULL, "no step %s", head);
    const char *end = strstr(h, "</li>");
    ck_assert_ptr_nonnull(end);
    return strndup(h, (size_t)(end - h));
}

START_TEST(tensor_graph_shows_shapes_and_summaries)
{
    ad_graph *g = ad_graph_new();
    double v[1000];
    for (int i = 0; i < 1000; i++) v[i] = i;
    ad_node *x = ad_var_array(g, "X", AD_F32, AD_SHAPE(10, 100), v);
    ad_node *w = ad_var_array(g, "W", AD_F32, AD_SHAPE(100, 3), v);
    ad_node *h = ad_tanh(g, ad_mul_scalar(g, ad_matmul(g, x, w), 1e-6));
    ad_node *f = ad_mean(g, ad_mul(g, h, h));
    char *html = swept_page(g, f, "mean(tanh(X W / 1e6)^2)");
    /* a thousand numbers are summarised, not listed */
    ck_assert_int_lt((long)strlen(html), 40 * 1024);
    ck_assert_ptr_nonnull(strstr(html, "X = <span class=\"v\">[10,100] [0.00, 1.00, 2.00, ..., 997.00, 998.00, 999.00]</span>"));
    ck_assert_ptr_nonnull(strstr(html, "#2 = matmul(X, W) = <span class=\"v\">[10,3] ["));
    ck_assert_ptr_nonnull(strstr(html, ">[10,100]</text>")); /* shapes on the edges */
    ck_assert_ptr_nonnull(strstr(html, "the gradients of its 2 uses add up to <span class=\"g\">[10,3] ["));
    ck_assert_ptr_nonnull(strstr(html, "(the copy node of #5 adds the parts)"));
    ck_assert_ptr_nonnull(strstr(html, "df/dW = <span class=\"g\">[100,3] ["));
    /* a grid is at most 6x6: five rows and columns of numbers, then "…" */
    int more;
    ck_assert_int_eq(grid_cells(strstr(html, "<span class=\"name\">X</span>"), &more), 36);
    ck_assert_int_eq(more, 11);
    ck_assert_ptr_nonnull(strstr(html, "<figcaption>value [10,100]</figcaption>"));
    free(html);
    ad_graph_free(g);
}
END_TEST

/* Issue 18: the stepper walks a one-hidden-layer network on one example with its matrices as
 * small grids, gradients beside values on the backward pass, and the rules in matrix form. */
START_TEST(one_hidden_layer_network_as_grids)
{
    ad_graph *g = ad_graph_new();
    const double w1[] = {1, 2, -1, 0.5, 0.3, -2}, x0[] = {1, -1}, b[] = {0.1, 0.2, 0.3}, w2v[] = {1, -1, 2};
    ad_node *W1 = ad_var_array(g, "W1", AD_F64, AD_SHAPE(3, 2), w1);
    ad_node *x = ad_var_array(g, "x", AD_F64, AD_SHAPE(2, 1), x0);
    ad_node *b1 = ad_var_array(g, "b1", AD_F64, AD_SHAPE(3, 1), b);
    ad_node *w2 = ad_var_array(g, "w2", AD_F64, AD_SHAPE(3, 1), w2v);
    ad_node *h = ad_tanh(g, ad_add(g, ad_matmul(g, W1, x), b1));
    ad_node *f = ad_sum(g, ad_mul(g, h, w2));
    char *html = swept_page(g, f, "sum(tanh(W1 x + b1) * w2)");
    int more;
    /* forward: W1 as 3 rows of 2 cells, its shape under it, and no gradient yet */
    char *fw = step_of(html, "Forward pass: input variable W1");
    ck_assert_int_eq(grid_cells(strstr(fw, "<span class=\"name\">W1</span>"), &more), 6);
    ck_assert_int_eq(more, 0);
    ck_assert_int_eq(count(fw, "<tr>"), 3);
    ck_assert_ptr_nonnull(strstr(fw, "<td>1.00</td><td>2.00</td></tr><tr><td>-1.00</td><td>0.50</td>"));
    ck_assert_ptr_nonnull(strstr(fw, "<figcaption>value [3,2]</figcaption>"));
    ck_assert_int_eq(count(fw, "grid g"), 0);
    free(fw);
    /* the matmul's forward step: both inputs and the result */
    fw = step_of(html, "Forward pass: gate matmul (#4)");
    ck_assert_int_eq(count(fw, "<table class=\"grid v\">"), 3);
    ck_assert_ptr_nonnull(strstr(fw, "<figcaption>value [2,1]</figcaption>"));
    ck_assert_ptr_nonnull(strstr(fw, "<td>-1.00</td></tr><tr><td>-1.50</td></tr><tr><td>2.30</td>"));
    ck_assert_int_eq(count(fw, "grid g"), 0);
    free(fw);
    /* backward: the rule in matrix form, the gradient grid beside each value grid */
    char *bw = step_of(html, "Backward pass: gate matmul (#4)");
    ck_assert_ptr_nonnull(strstr(bw, "<b>In matrix form:</b> matmul [3,2]@[2,1]: downstream dW1 = upstream · xᵀ [3,2]; "
                                     "dx = W1ᵀ · upstream [2,1]"));
    ck_assert_int_eq(count(bw, "<table class=\"grid v\">"), 3);
    ck_assert_int_eq(count(bw, "<table class=\"grid g\">"), 3);
    ck_assert_ptr_nonnull(strstr(bw, "<figcaption>gradient [3,2]</figcaption>"));
    const char *gw = strstr(strstr(bw, "<span class=\"name\">W1</span>"), "<table class=\"grid g\">");
    ck_assert_int_eq(grid_cells(gw, &more), 6);
    ck_assert_ptr_nonnull(strstr(gw, "<td>0.49</td><td>-0.49</td></tr><tr><td>-0.26</td><td>0.26</td>"));
    free(bw);
    bw = step_of(html, "Backward pass: gate + (#5)");
    ck_assert_ptr_nonnull(strstr(bw, "<b>In matrix form:</b> [3,1] + [3,1]: downstream d#4 = upstream [3,1]; db1 = upstream [3,1]"));
    free(bw);
    bw = step_of(html, "Backward pass: gate tanh (#6)");
    ck_assert_ptr_nonnull(strstr(bw, "<b>In matrix form:</b> tanh: downstream = upstream ⊙ (1 - tanh(u)^2), u = #5 [3,1]"));
    free(bw);
    bw = step_of(html, "Backward pass: gate sum (#8)");
    ck_assert_ptr_nonnull(strstr(bw, "<b>In matrix form:</b> sum: downstream = upstream broadcast to [3,1]"));
    free(bw);
    /* the result: each parameter's gradient as a grid */
    char *end = step_of(html, "Result: the gradient");
    ck_assert_int_eq(count(end, "<table class=\"grid g\">"), 4);
    free(end);
    free(html);
    ad_graph_free(g);
}
END_TEST

START_TEST(large_graph_gets_every_step_and_a_summary_picture)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0.5), *y = x;
    for (int i = 0; i < 100; i++) y = ad_sin(g, y);
    ck_assert_int_eq(ad_backward(g, y), AD_OK);
    ad_status st;
    char *html = page(g, y, 2, "sin(sin(...(x)))", &st);
    ck_assert_int_eq(st, AD_ERR_ARG);
    ck_assert(well_formed(html));
    ck_assert_ptr_nonnull(strstr(html, "This graph has 101 parts to draw"));
    ck_assert_int_eq(count(html, "<li class="), 1 + 101 + 1 + 100 + 1);
    ck_assert_ptr_nonnull(strstr(html, "\u2202/\u2202x [sin(x)] = cos(x) = cos(0.50) = 0.88"));
    free(html);
    ad_graph_free(g);
}
END_TEST

START_TEST(bad_arguments)
{
    ad_graph *g = ad_graph_new(), *other = ad_graph_new();
    ad_node *x = ad_var(g, "x", 1), *f = ad_exp(g, x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ck_assert_int_eq(ad_write_html(g, f, NULL, 2, "t"), AD_ERR_NULL);
    ck_assert_int_eq(ad_write_html(NULL, f, stdout, 2, "t"), AD_ERR_NULL);
    ck_assert_int_eq(ad_write_html(g, NULL, stdout, 2, "t"), AD_ERR_NULL);
    ad_node *far = ad_var(other, "a", 1);
    for (int i = 0; i < 3; i++) far = ad_exp(other, far);
    ck_assert_int_eq(ad_write_html(g, far, stdout, 2, "t"), AD_ERR_ARG); /* not g's node */
    /* the title is text, never markup */
    ad_status st;
    char *html = page(g, f, 2, "<script>alert(1)</script> & \"q\"", &st);
    ck_assert_int_eq(count(html, "<script>"), 2); /* the page's two own scripts */
    ck_assert_ptr_nonnull(strstr(html, "<h1>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;</h1>"));
    free(html);
    /* a stream that cannot be written */
    FILE *ro = fopen("/dev/null", "r");
    ck_assert_ptr_nonnull(ro);
    ck_assert_int_eq(ad_write_html(g, f, ro, 2, "t"), AD_ERR_IO);
    fclose(ro);
    ad_graph_free(other);
    ad_graph_free(g);
}
END_TEST

/* A failed allocation anywhere gives AD_ERR_NOMEM and leaks nothing (ASan checks that). */
START_TEST(failed_allocations_are_reported)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 3), *f = ad_add(g, ad_mul(g, x, x), ad_sin(g, x));
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    int failures = 0;
    for (long n = 1; n < 100; n++) {
        ad_fail_alloc_at(n);
        ad_status st;
        char *html = page(g, f, 2, "t", &st);
        ad_fail_alloc_at(0);
        free(html);
        if (st == AD_OK) break;
        ck_assert_int_eq(st, AD_ERR_NOMEM);
        failures++;
    }
    ck_assert_int_gt(failures, 3);
    ad_graph_free(g);
}
END_TEST

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF) without the control
 * bytes that JSON strings and XML forbid (tab, newline and carriage return are whitespace),
 * and for XML without U+FFFE and U+FFFF. */
static bool clean_utf8(const char *s, size_t n, bool xml)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
            p++;
            continue;
        }
        int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || end - p < len) return false;
        unsigned cp = c & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((p[k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || (xml && (cp == 0xFFFE || cp == 0xFFFF)))
            return false;
        p += len;
    }
    return true;
}

/* /usr/bin/python3 parses the file with `code` (sys.argv[1] is its path); true when python3 is
 * missing (the C check above still ran). */
static bool python_accepts(const char *text, size_t n, const char *code)
{
    if (access("/usr/bin/python3", X_OK) != 0) return true;
    char path[] = "/tmp/backprop_names_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    run_result r = run_program("/usr/bin/python3", ARGS("-c", code, path), NULL, NULL, NULL);
    bool ok = r.status == 0;
    if (!ok) fprintf(stderr, "python3 refused %s: %s\n", path, r.err);
    else unlink(path);
    run_done(&r);
    return ok;
}

typedef ad_status (*writer)(const ad_graph *, ad_node *, FILE *);
static ad_status json_w(const ad_graph *g, ad_node *r, FILE *f) { return ad_write_json(g, r, f); }
static ad_status svg_w(const ad_graph *g, ad_node *r, FILE *f) { return ad_write_svg(g, r, f, 2); }
/* 62 bytes before the first euro sign, which view_xml's 63-byte pieces would cut */
static const char long_title[] = "t\x01\xff" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xe2\x82\xac\xe2\x82\xac";
static ad_status html_w(const ad_graph *g, ad_node *r, FILE *f) { return ad_write_html(g, r, f, 2, long_title); }

static char *written(writer w, const ad_graph *g, ad_node *root, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(w(g, root, f), AD_OK);
    fclose(f);
    return buf;
}

/* Issue 20, defect 13: names are the user's bytes, and the writers copied them as they were:
 * control bytes and invalid UTF-8 made invalid JSON and XML that is not well formed.  Valid
 * UTF-8 must survive, also where view_xml cuts a long name into pieces. */
START_TEST(hostile_names_give_valid_json_and_xml)
{
    static const char *const names[] = {
        "a\001b", "esc\x1b[31m", "bad\xff", "trunc\xe2\x82", "lone\x80", "over\xc0\xaf",
        "nonchar\xef\xbf\xbf", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xe2\x82\xac\xe2\x82\xac"};
    enum { N = sizeof names / sizeof *names };
    ad_graph *g = ad_graph_new();
    ad_node *f = ad_var(g, names[0], 1.5);
    for (int i = 1; i < N; i++) f = ad_add(g, ad_mul(g, f, ad_var(g, names[i], 1.25)), ad_sin(g, f));
    ck_assert_int_eq(ad_set_name(g, f, "out\x7f\xf5\x80\x80\x80"), AD_OK);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    size_t len;
    char *json = written(json_w, g, f, &len);
    ck_assert_msg(clean_utf8(json, len, false), "JSON is not clean UTF-8");
    ck_assert_ptr_nonnull(strstr(json, "\"a\\u0001b\""));
    ck_assert_ptr_nonnull(strstr(json, "\"bad\xef\xbf\xbd\""));
    ck_assert_ptr_nonnull(strstr(json, "\xe2\x82\xac\xe2\x82\xac\""));
    ck_assert(python_accepts(json, len, "import json, sys; json.loads(open(sys.argv[1], 'rb').read().decode('utf-8'))"));
    free(json);
    char *svg = written(svg_w, g, f, &len);
    ck_assert_msg(clean_utf8(svg, len, true), "SVG is not clean UTF-8");
    ck_assert_ptr_nonnull(strstr(svg, "aaaa</text>")); /* cut to 63 bytes before the euro sign */
    ck_assert(python_accepts(svg, len, "import sys, xml.dom.minidom as m; m.parse(sys.argv[1])"));
    free(svg);
    char *html = written(html_w, g, f, &len);
    ck_assert_msg(clean_utf8(html, len, true), "HTML is not clean UTF-8");
    ck_assert(well_formed(html));
    ck_assert_ptr_nonnull(strstr(html, "t?\xef\xbf\xbd" "aaaa")); /* the title, cut into pieces */
    ck_assert_ptr_nonnull(strstr(html, "aaaa\xe2\x82\xac\xe2\x82\xac<"));
    free(html);
    ad_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_html");
    TCase *tc = tcase_create("html");
    tcase_add_test(tc, neuron_page_walks_the_slides);
    tcase_add_test(tc, labels_are_tagged_with_their_steps);
    tcase_add_test(tc, copy_node_shows_its_sum);
    tcase_add_test(tc, lecture_pages_are_small);
    tcase_add_test(tc, tensor_graph_shows_shapes_and_summaries);
    tcase_add_test(tc, one_hidden_layer_network_as_grids);
    tcase_add_test(tc, large_graph_gets_every_step_and_a_summary_picture);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, failed_allocations_are_reported);
    tcase_add_test(tc, hostile_names_give_valid_json_and_xml);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
