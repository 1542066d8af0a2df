/* Traces and pictures from the library: the lecture's walk byte for byte, tensor summaries,
 * and the SVG checked as a structure (well-formed, every node and edge drawn, no overlap). */
#include "testutil.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *golden;

/* Runs a printer into a string. */
typedef ad_status (*printer)(const ad_graph *, ad_node *, FILE *, int);
static char *capture(printer p, const ad_graph *g, ad_node *root, int digits, ad_status *st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    *st = p(g, root, f, digits);
    fclose(f);
    return buf;
}

static char *read_file(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", golden, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing %s", path);
    char *buf = slurp_fd(fileno(f));
    fclose(f);
    return buf;
}

static ad_node *neuron(ad_graph *g) { return lecture_neuron(g); }

/* The part of a golden CLI report from the line starting with `from`. */
static const char *section(const char *text, const char *from)
{
    const char *p = strstr(text, from);
    ck_assert_ptr_nonnull(p);
    return p;
}

START_TEST(neuron_walk_matches_the_cli_golden)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *fw = capture(ad_trace_forward, g, f, 2, &st), *bw = capture(ad_trace_backward, g, f, 2, &st);
    ck_assert_int_eq(st, AD_OK);
    char *gold = read_file("neuron.txt");
    /* the library's walk is the CLI report's last two sections */
    char *both = malloc(strlen(fw) + strlen(bw) + 2);
    sprintf(both, "%s\n%s", fw, bw);
    ck_assert_str_eq(both, section(gold, "forward pass"));
    free(both);
    free(fw);
    free(bw);
    free(gold);
    ad_graph_free(g);
}
END_TEST

START_TEST(full_precision_and_digits)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *full = capture(ad_trace_backward, g, f, -1, &st);
    char want[64];
    snprintf(want, sizeof want, "x0 = %.17g", ad_grad(ad_graph_node(g, 0)));
    ck_assert_ptr_nonnull(strstr(full, want));
    char *one = capture(ad_trace_backward, g, f, 1, &st);
    ck_assert_ptr_nonnull(strstr(one, "gradient: x0 = 0.4, x1 = -0.6, w0 = -0.2, w1 = -0.4, w2 = 0.2\n"));
    free(full);
    free(one);
    ad_graph_free(g);
}
END_TEST

START_TEST(tensor_values_are_summarised)
{
    ad_graph *g = ad_graph_new();
    double v[1000];
    for (int i = 0; i < 1000; i++) v[i] = i;
    ad_node *x = ad_var_array(g, "X", AD_F32, AD_SHAPE(10, 100), v);
    ad_node *f = ad_sum(g, ad_tanh(g, ad_mul_scalar(g, x, 0.001)));
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *fw = capture(ad_trace_forward, g, f, 2, &st), *bw = capture(ad_trace_backward, g, f, 2, &st);
    ck_assert_ptr_nonnull(strstr(fw, "X      var                     = [10,100] [0.00, 1.00, 2.00, ..., 997.00, 998.00, 999.00]\n"));
    ck_assert_ptr_nonnull(strstr(bw, "tanh"));
    /* no line near the size of the data */
    for (char *line = bw; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        ck_assert_int_lt((long)(strchr(line, '\n') ? strchr(line, '\n') - line : (long)strlen(line)), 400);
    ck_assert_int_lt((long)strlen(fw), 2000);
    free(fw);
    free(bw);
    ad_graph_free(g);
}
END_TEST

START_TEST(copy_lines_sum_their_uses)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = ad_var(g, "a", 1), *b = ad_add(g, a, a), *c = ad_add(g, b, b);
    ck_assert_int_eq(ad_backward(g, c), AD_OK);
    ad_status st;
    char *bw = capture(ad_trace_backward, g, c, 2, &st);
    ck_assert_ptr_nonnull(strstr(bw, "  #1     copy   upstream 1.00 + 1.00   sum of 2 uses 2.00\n"));
    ck_assert_ptr_nonnull(strstr(bw, "  a      copy   upstream 2.00 + 2.00   sum of 2 uses 4.00\n"));
    ck_assert_ptr_nonnull(strstr(bw, "gradient: a = 4.00\n"));
    free(bw);
    ad_graph_free(g);
}
END_TEST

/* ---- a minimal JSON validator: enough to prove the dump parses ---- */
static const char *json_value(const char *p);
static const char *ws(const char *p) { while (isspace((unsigned char)*p)) p++; return p; }
static const char *json_string(const char *p)
{
    if (*p++ != '"') return NULL;
    while (*p && *p != '"') p += *p == '\\' ? 2 : 1;
    return *p == '"' ? p + 1 : NULL;
}
static const char *json_value(const char *p)
{
    p = ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (!(p = json_string(ws(p)))) return NULL;
                p = ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = json_value(p))) return NULL;
            p = ws(p);
            if (*p == close) return p + 1;
            if (*p++ != ',') return NULL;
        }
    }
    if (*p == '"') return json_string(p);
    if (strncmp(p, "null", 4) == 0) return p + 4;
    char *end;
    strtod(p, &end);
    return end > p ? end : NULL;
}

START_TEST(json_dump_parses_and_has_every_node)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_int_eq(ad_write_json(g, f, out), AD_OK);
    fclose(out);
    const char *end = json_value(buf);
    ck_assert_ptr_nonnull(end);
    ck_assert_str_eq(ws(end), "");
    for (uint32_t i = 0; i <= ad_node_id(f); i++) {
        char id[32];
        snprintf(id, sizeof id, "{\"id\": %u,", i);
        ck_assert_msg(strstr(buf, id) != NULL, "node %u missing", i);
    }
    ck_assert_ptr_nonnull(strstr(buf, "\"op\": \"recip\", \"label\": \"1/x\""));
    free(buf);
    ad_graph_free(g);
}
END_TEST

/* ---- SVG as a structure ---- */

/* Tags balance (every <x> has its </x>, or is self-closed). */
static bool well_formed(const char *s)
{
    const char *stack[256];
    size_t len[256];
    int depth = 0;
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        if (p[1] == '?' || p[1] == '!') continue;
        const char *gt = strchr(p, '>');
        if (!gt) return false;
        if (p[1] == '/') {
            if (!depth) return false;
            depth--;
            if (strncmp(p + 2, stack[depth], len[depth]) != 0) return false;
        } else if (gt[-1] != '/') {
            if (depth == 256) return false;
            stack[depth] = p + 1;
            len[depth] = strcspn(p + 1, " >");
            depth++;
        }
    }
    return depth == 0;
}

typedef struct { double x0, y0, x1, y1; } box;

static int boxes(const char *s, box *b, int max)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, "<circle ")) && n < max; p++) {
        double cx, cy, r;
        const char *q = strstr(p, "cx=");
        ck_assert(sscanf(q, "cx=\"%lf\" cy=\"%lf\" r=\"%lf\"", &cx, &cy, &r) == 3);
        b[n++] = (box){cx - r, cy - r, cx + r, cy + r};
    }
    for (const char *p = s; (p = strstr(p, "<rect class=\"leaf\"")) && n < max; p++) {
        double x, y, w, h;
        const char *q = strstr(p, "x=");
        ck_assert(sscanf(q, "x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &x, &y, &w, &h) == 4);
        b[n++] = (box){x, y, x + w, y + h};
    }
    return n;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++) n++;
    return n;
}

static void check_svg(ad_graph *g, ad_node *root, int nodes, int edges)
{
    ad_status st;
    char *svg = capture(ad_write_svg, g, root, 2, &st);
    ck_assert_int_eq(st, AD_OK);
    ck_assert(well_formed(svg));
    box b[128];
    int n = boxes(svg, b, 128);
    ck_assert_int_eq(n, nodes);
    ck_assert_int_eq(count(svg, "<path class=\"edge\""), edges + 1); /* + the output edge */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            ck_assert_msg(b[i].x1 <= b[j].x0 || b[j].x1 <= b[i].x0 || b[i].y1 <= b[j].y0 || b[j].y1 <= b[i].y0,
                          "boxes %d and %d overlap", i, j);
    free(svg);
}

START_TEST(svg_of_the_lecture_graphs)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    /* 5 leaves + 8 gates (the constant 1 is drawn inside "+1"); 5 + 4 + 3 edges */
    check_svg(g, f, 13, 12);
    ad_graph_reset(g);
    ad_node *x = ad_var(g, "x", 3);
    f = ad_add(g, ad_mul(g, x, x), x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    /* x, its copy node, *, +; edges x->copy, copy->* twice, copy->+, *->+ */
    check_svg(g, f, 4, 5);
    ad_graph_free(g);
}
END_TEST

START_TEST(svg_of_random_graphs_never_overlaps)
{
    ad_rng r;
    ad_rng_seed(&r, 7);
    for (int trial = 0; trial < 20; trial++) {
        ad_graph *g = ad_graph_new();
        ad_node *pool[40];
        int n = 0, leaves = 2 + (int)(ad_rng_next(&r) % 4);
        for (int i = 0; i < leaves; i++) {
            char name[8];
            snprintf(name, sizeof name, "v%d", i);
            pool[n++] = ad_var(g, name, ad_rng_uniform(&r));
        }
        int gates = 3 + (int)(ad_rng_next(&r) % 20);
        for (int i = 0; i < gates; i++) {
            ad_node *a = pool[ad_rng_next(&r) % (uint64_t)n], *b = pool[ad_rng_next(&r) % (uint64_t)n];
            pool[n++] = ad_rng_next(&r) % 3 ? ad_mul(g, a, b) : ad_sin(g, a);
        }
        ad_node *f = pool[n - 1];
        ck_assert_int_eq(ad_backward(g, f), AD_OK);
        ad_status st;
        char *svg = capture(ad_write_svg, g, f, 2, &st);
        ck_assert(well_formed(svg));
        box b[128];
        int k = boxes(svg, b, 128);
        for (int i = 0; i < k; i++)
            for (int j = i + 1; j < k; j++)
                ck_assert(b[i].x1 <= b[j].x0 || b[j].x1 <= b[i].x0 || b[i].y1 <= b[j].y0 || b[j].y1 <= b[i].y0);
        free(svg);
        ad_graph_free(g);
    }
}
END_TEST

START_TEST(svg_of_a_large_graph_is_a_summary)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 0.5), *y = x;
    for (int i = 0; i < 100; i++) y = ad_sin(g, y);
    ck_assert_int_eq(ad_backward(g, y), AD_OK);
    ad_status st;
    char *svg = capture(ad_write_svg, g, y, 2, &st);
    ck_assert_int_eq(st, AD_ERR_ARG);
    ck_assert(well_formed(svg));
    ck_assert_ptr_nonnull(strstr(svg, "This graph has 101 parts to draw"));
    free(svg);
    ad_graph_free(g);
}
END_TEST

START_TEST(dot_has_every_node_and_edge)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", 3), *f = ad_add(g, ad_mul(g, x, x), x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *dot = capture(ad_write_dot, g, f, 2, &st);
    ck_assert_int_eq(st, AD_OK);
    ck_assert_ptr_nonnull(strstr(dot, "digraph backprop {"));
    ck_assert_ptr_nonnull(strstr(dot, "c0 [shape=circle, fontsize=9, label=\"copy\"]"));
    ck_assert_int_eq(count(dot, " -> "), 6); /* x->copy, copy->* x2, copy->+, *->+, +->out */
    ck_assert_ptr_nonnull(strstr(dot, "n0 -> c0 [label=<<font color=\"#1a7f37\">3.00</font><br/><font color=\"#cf222e\">7.00</font>>];"));
    free(dot);
    ad_graph_free(g);
}
END_TEST

START_TEST(nonfinite_and_names)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_var(g, "x", -1), *l = ad_log(g, x), *f = ad_mul(g, l, ad_const_scalar(g, 2));
    ck_assert_ptr_eq(ad_find_nonfinite(g, f, false), l);
    ck_assert_int_eq(ad_set_name(g, l, "logx"), AD_OK);
    ck_assert_str_eq(ad_node_name(l), "logx");
    ck_assert_ptr_null(ad_find_nonfinite(g, x, false));
    ck_assert_int_eq(ad_trace_forward(NULL, f, stdout, 2), AD_ERR_NULL);
    ck_assert_int_eq(ad_trace_forward(g, f, NULL, 2), AD_ERR_NULL);
    ad_graph_free(g);
}
END_TEST

int main(int argc, char **argv)
{
    golden = argc > 1 ? argv[1] : "tests/golden";
    Suite *s = suite_create("ad_trace");
    TCase *tc = tcase_create("trace");
    tcase_add_test(tc, neuron_walk_matches_the_cli_golden);
    tcase_add_test(tc, full_precision_and_digits);
    tcase_add_test(tc, tensor_values_are_summarised);
    tcase_add_test(tc, copy_lines_sum_their_uses);
    tcase_add_test(tc, json_dump_parses_and_has_every_node);
    tcase_add_test(tc, svg_of_the_lecture_graphs);
    tcase_add_test(tc, svg_of_random_graphs_never_overlaps);
    tcase_add_test(tc, svg_of_a_large_graph_is_a_summary);
    tcase_add_test(tc, dot_has_every_node_and_edge);
    tcase_add_test(tc, nonfinite_and_names);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
