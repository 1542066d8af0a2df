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

/* The lecture's first example, f = z(x + y) at x = 2, y = 3, z = -2, swept. */
static ad_node *first_example(ad_graph *g)
{
    ad_node *x = ad_var(g, "x", 2), *y = ad_var(g, "y", 3), *z = ad_var(g, "z", -2);
    ad_node *f = ad_mul(g, z, ad_add(g, x, y));
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    return f;
}

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

/* Both lecture examples, each backward step as the slides write it: the local gradient with
 * the values put in and its number, the downstream gradient as a product with its factors. */
START_TEST(walk_has_the_slides_arithmetic)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *bw = capture(ad_trace_backward, g, f, 2, &st);
    static const char *const want[] = {
        "  #13    1/x    upstream 1.00   at u = #12 = 1.37\n",
        "local \u2202/\u2202u [1/u] = -1/u^2 = -1/1.37^2 = -0.53   downstream (-0.53) \u00b7 1.00 = -0.53 -> #12\n",
        "local \u2202/\u2202u [u + 1] = 1   downstream 1 \u00b7 (-0.53) = -0.53 -> #10\n",
        "local \u2202/\u2202u [exp(u)] = exp(u) = exp(-1.00) = 0.37   downstream 0.37 \u00b7 (-0.53) = -0.20 -> #9\n",
        "local \u2202/\u2202u [-u] = -1   downstream (-1) \u00b7 (-0.20) = 0.20 -> #8\n",
        "local \u2202/\u2202w2 [u + w2] = 1   downstream 1 \u00b7 0.20 = 0.20 -> w2\n",
        "local \u2202/\u2202x1 [w1\u00b7x1] = w1 = -3.00   downstream (-3.00) \u00b7 0.20 = -0.59 -> x1\n",
        "local \u2202/\u2202w0 [w0\u00b7x0] = x0 = -1.00   downstream (-1.00) \u00b7 0.20 = -0.20 -> w0\n",
        "local \u2202/\u2202x0 [w0\u00b7x0] = w0 = 2.00    downstream 2.00 \u00b7 0.20 = 0.39 -> x0\n",
    };
    const char *p = bw;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const char *q = strstr(p, want[i]);
        ck_assert_msg(q != NULL, "missing (or out of order): %s", want[i]);
        p = q + strlen(want[i]);
    }
    free(bw);
    ad_graph_reset(g);
    f = first_example(g);
    bw = capture(ad_trace_backward, g, f, 2, &st);
    ck_assert_ptr_nonnull(strstr(bw, "  #4     *      upstream 1.00   at z = -2.00, u = #3 = 5.00\n"
                                     "         local \u2202/\u2202z [z\u00b7u] = u = 5.00    downstream 5.00 \u00b7 1.00 = 5.00 -> z\n"
                                     "         local \u2202/\u2202u [z\u00b7u] = z = -2.00   downstream (-2.00) \u00b7 1.00 = -2.00 -> #3\n"));
    ck_assert_ptr_nonnull(strstr(bw, "local \u2202/\u2202y [x + y] = 1   downstream 1 \u00b7 (-2.00) = -2.00 -> y\n"));
    free(bw);
    ad_graph_free(g);
}
END_TEST

/* The symbols for inner nodes never read as the student's names, nor as the formula's own
 * letters: with variables u and v, and in gelu_tanh's formula (which uses u), others are used. */
START_TEST(symbols_never_collide)
{
    ad_graph *g = ad_graph_new();
    ad_node *u = ad_var(g, "u", 1), *v = ad_var(g, "v", 2);
    ad_node *f = ad_exp(g, ad_mul(g, u, v));
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *bw = capture(ad_trace_backward, g, f, 2, &st);
    ck_assert_ptr_nonnull(strstr(bw, "at p = #2 = 2.00\n         local \u2202/\u2202p [exp(p)] = exp(p) = exp(2.00) = 7.39"));
    ck_assert_ptr_nonnull(strstr(bw, "local \u2202/\u2202u [u\u00b7v] = v = 2.00"));
    free(bw);
    ad_graph_reset(g);
    ad_node *x = ad_var(g, "x", 1);
    f = ad_gelu_tanh(g, ad_mul(g, x, x));
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    bw = capture(ad_trace_backward, g, f, 2, &st);
    ck_assert_ptr_nonnull(strstr(bw, "local \u2202/\u2202p [p/2\u00b7(1 + tanh(u))]"));
    free(bw);
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
    ck_assert_ptr_nonnull(strstr(fw, "X      var    = [10,100] [0.00, 1.00, 2.00, ..., 997.00, 998.00, 999.00]\n"));
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
    ck_assert_ptr_nonnull(strstr(bw, "  #1     copy   sum of 2 uses: 1.00 + 1.00 = 2.00\n"));
    ck_assert_ptr_nonnull(strstr(bw, "  a      copy   sum of 2 uses: 2.00 + 2.00 = 4.00\n"));
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

static bool overlap(box a, box b) { return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1; }

/* What the picture draws, read back from its SVG: node shapes, edges (their paths sampled as
 * points, and their horizontal lane), and the value and gradient labels with boxes bounded from
 * the font size (12px, at most 0.6em a character: digits are 0.56em in Helvetica). */
enum { MAXP = 256, SAMPLES = 16, SEGMENTS = 48 };
typedef struct {
    int nodes, edges, labels;
    box node[MAXP];
    bool round[MAXP];            /* a circle: node[] is its bounding box */
    double pt[MAXP][SAMPLES * SEGMENTS][2];
    int npt[MAXP];
    double lane_y[MAXP], lane_x0[MAXP], lane_x1[MAXP];
    box label[2 * MAXP];
    int label_edge[2 * MAXP];    /* the edge the label belongs to */
    bool is_val[2 * MAXP];
    double label_y[2 * MAXP];
} picture;

static int chars(const char *p, const char *end)
{
    int n = 0;
    for (; p < end; p++) {
        if (*p == '&') p = strchr(p, ';');
        n += ((unsigned char)*p & 0xC0) != 0x80;
    }
    return n;
}

static void read_picture(const char *s, picture *pic)
{
    memset(pic, 0, sizeof *pic);
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        if (!strncmp(p, "<circle ", 8)) {
            double cx, cy, r;
            ck_assert(sscanf(strstr(p, "cx="), "cx=\"%lf\" cy=\"%lf\" r=\"%lf\"", &cx, &cy, &r) == 3);
            pic->round[pic->nodes] = true;
            pic->node[pic->nodes++] = (box){cx - r, cy - r, cx + r, cy + r};
        } else if (!strncmp(p, "<rect class=\"leaf\"", 18)) {
            double x, y, w, h;
            ck_assert(sscanf(strstr(p, " x="), " x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"", &x, &y, &w, &h) == 4);
            pic->node[pic->nodes++] = (box){x, y, x + w, y + h};
        } else if (!strncmp(p, "<path class=\"edge\"", 18)) {
            int e = pic->edges++;
            const char *d = strstr(p, " d=\"") + 4;
            double x = 0, y = 0, c[6];
            int used;
            pic->lane_x0[e] = pic->lane_x1[e] = NAN;
            while (*d != '"') {
                char op = *d++;
                if (op == 'M') {
                    ck_assert(sscanf(d, "%lf %lf%n", &x, &y, &used) == 2);
                } else if (op == 'L') {
                    ck_assert(sscanf(d, "%lf %lf%n", &c[0], &c[1], &used) == 2);
                    if (c[1] == y && c[0] > x) pic->lane_y[e] = y, pic->lane_x0[e] = x, pic->lane_x1[e] = c[0];
                    for (int k = 1; k <= SAMPLES; k++) {
                        double t = (double)k / SAMPLES;
                        pic->pt[e][pic->npt[e]][0] = x + t * (c[0] - x);
                        pic->pt[e][pic->npt[e]++][1] = y + t * (c[1] - y);
                    }
                    x = c[0], y = c[1];
                } else {
                    ck_assert_int_eq(op, 'C');
                    ck_assert(sscanf(d, "%lf %lf %lf %lf %lf %lf%n", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &used) == 6);
                    for (int k = 1; k <= SAMPLES; k++) {
                        double t = (double)k / SAMPLES, u = 1 - t;
                        pic->pt[e][pic->npt[e]][0] = u * u * u * x + 3 * u * u * t * c[0] + 3 * u * t * t * c[2] + t * t * t * c[4];
                        pic->pt[e][pic->npt[e]++][1] = u * u * u * y + 3 * u * u * t * c[1] + 3 * u * t * t * c[3] + t * t * t * c[5];
                    }
                    x = c[4], y = c[5];
                }
                d += used;
                ck_assert_int_le(pic->npt[e], SAMPLES * (SEGMENTS - 1));
            }
        } else if (!strncmp(p, "<text ", 6) && (strstr(p, "class=\"val\"") == strchr(p, 'c') ||
                                                 strstr(p, "class=\"grad\"") == strchr(p, 'c'))) {
            double x, y;
            ck_assert(sscanf(p, "<text x=\"%lf\" y=\"%lf\"", &x, &y) == 2);
            const char *from = strchr(p, '>') + 1, *to = strchr(from, '<');
            double w = chars(from, to) * 12 * 0.6;
            int l = pic->labels++;
            pic->is_val[l] = strstr(p, "class=\"val\"") == strchr(p, 'c');
            pic->label[l] = (box){x - w / 2, y - 12 * 0.75, x + w / 2, y + 12 * 0.25};
            pic->label_y[l] = y;
            pic->label_edge[l] = pic->edges - 1;
        }
        ck_assert_int_lt(pic->nodes, MAXP);
        ck_assert_int_lt(pic->edges, MAXP);
    }
}

static bool inside_node(const picture *pic, int j, double x, double y)
{
    box b = pic->node[j];
    if (!pic->round[j]) return x > b.x0 + 1 && x < b.x1 - 1 && y > b.y0 + 1 && y < b.y1 - 1;
    double r = (b.x1 - b.x0) / 2, dx = x - (b.x0 + r), dy = y - (b.y0 + r);
    return dx * dx + dy * dy < (r - 1) * (r - 1);
}

/* The picture is as clear as the slides: each edge has a value above and a gradient below the
 * straight lane it ends in, between the lane's ends; no label overlaps another label or a
 * node; no edge runs through a node, or through another edge's label. */
static void check_clear(const char *svg)
{
    static picture pic;
    read_picture(svg, &pic);
    ck_assert_int_eq(pic.labels, 2 * pic.edges);
    for (int l = 0; l < pic.labels; l++) {
        int e = pic.label_edge[l];
        ck_assert_msg(e >= 0 && pic.is_val[l] == (l % 2 == 0), "label %d is not its edge's value or gradient", l);
        ck_assert_msg(!isnan(pic.lane_x0[e]), "edge %d has no straight lane", e);
        box b = pic.label[l];
        ck_assert_msg(b.x0 >= pic.lane_x0[e] - 1 && b.x1 <= pic.lane_x1[e] + 1, "label %d is off its lane", l);
        if (pic.is_val[l]) ck_assert_msg(b.y1 <= pic.lane_y[e] - 1, "value %d is not above its edge", l);
        else ck_assert_msg(b.y0 >= pic.lane_y[e] + 1, "gradient %d is not below its edge", l);
        for (int j = 0; j < pic.nodes; j++) ck_assert_msg(!overlap(b, pic.node[j]), "label %d overlaps node %d", l, j);
        for (int m = l + 1; m < pic.labels; m++) ck_assert_msg(!overlap(b, pic.label[m]), "labels %d and %d overlap", l, m);
        for (int f = 0; f < pic.edges; f++) {
            if (f == e) continue;
            for (int k = 0; k < pic.npt[f]; k++)
                ck_assert_msg(!(pic.pt[f][k][0] > b.x0 && pic.pt[f][k][0] < b.x1 && pic.pt[f][k][1] > b.y0 && pic.pt[f][k][1] < b.y1),
                              "edge %d runs through label %d", f, l);
        }
    }
    for (int i = 0; i < pic.nodes; i++)
        for (int j = i + 1; j < pic.nodes; j++) ck_assert_msg(!overlap(pic.node[i], pic.node[j]), "nodes %d and %d overlap", i, j);
    for (int f = 0; f < pic.edges; f++)
        for (int k = 0; k < pic.npt[f]; k++)
            for (int j = 0; j < pic.nodes; j++)
                ck_assert_msg(!inside_node(&pic, j, pic.pt[f][k][0], pic.pt[f][k][1]), "edge %d runs through node %d", f, j);
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
    ck_assert_int_eq(count(svg, "<circle ") + count(svg, "<rect class=\"leaf\""), nodes);
    ck_assert_int_eq(count(svg, "<path class=\"edge\""), edges + 1); /* + the output edge */
    check_clear(svg);
    free(svg);
    /* the stepper's picture too, with its "#id" tags over the gates */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_int_eq(ad_write_html(g, root, f, 2, "t"), AD_OK);
    fclose(f);
    char *from = strstr(buf, "<svg"), *to = strstr(buf, "</svg>");
    to[0] = 0;
    check_clear(from);
    free(buf);
}

/* The slides' numbers, each in the picture. */
static void has_numbers(const char *svg, const char *const *want, int n)
{
    for (int i = 0; i < n; i++) {
        char label[64];
        snprintf(label, sizeof label, ">%s</text>", want[i]);
        ck_assert_msg(strstr(svg, label) != NULL, "no label %s", want[i]);
    }
}

START_TEST(svg_of_the_lecture_graphs)
{
    ad_graph *g = ad_graph_new();
    ad_node *f = neuron(g);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    /* 5 leaves + 8 gates (the constant 1 is drawn inside "+1"); 5 + 4 + 3 edges */
    check_svg(g, f, 13, 12);
    ad_status st;
    char *svg = capture(ad_write_svg, g, f, 2, &st);
    static const char *const slides[] = {"1.37", "-0.53", "0.37", "-0.20", "0.20", "0.39", "-0.59"};
    has_numbers(svg, slides, 7);
    /* each gate's tooltip has its arithmetic, as the trace writes it */
    ck_assert_ptr_nonnull(strstr(svg, "<title>#13 = 1/#12 = 1/1.37 = 0.73&#10;upstream gradient 1.00, at u = #12 = 1.37&#10;"
                                      "local \u2202/\u2202u [1/u] = -1/u^2 = -1/1.37^2 = -0.53&#10;"
                                      "downstream (-0.53) \u00b7 1.00 = -0.53 -&gt; #12</title>"));
    ck_assert_ptr_nonnull(strstr(svg, "local \u2202/\u2202u [exp(u)] = exp(u) = exp(-1.00) = 0.37&#10;"
                                      "downstream 0.37 \u00b7 (-0.53) = -0.20 -&gt; #9"));
    ck_assert_ptr_nonnull(strstr(svg, "downstream 2.00 \u00b7 0.20 = 0.39 -&gt; x0"));
    ck_assert_ptr_nonnull(strstr(svg, "downstream (-3.00) \u00b7 0.20 = -0.59 -&gt; x1"));
    free(svg);
    ad_graph_reset(g);
    f = first_example(g);
    check_svg(g, f, 5, 4);
    svg = capture(ad_write_svg, g, f, 2, &st);
    static const char *const first[] = {"-10.00", "5.00", "-2.00", "1.00"};
    has_numbers(svg, first, 4);
    free(svg);
    ad_graph_reset(g);
    ad_node *x = ad_var(g, "x", 3);
    f = ad_add(g, ad_mul(g, x, x), x);
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    /* x, its copy node, *, +; edges x->copy, copy->* twice, copy->+, *->+ */
    check_svg(g, f, 4, 5);
    svg = capture(ad_write_svg, g, f, 2, &st);
    ck_assert_ptr_nonnull(strstr(svg, "<title>copy of x: the gradients of its 3 uses add up, 1.00 + 3.00 + 3.00 = 7.00</title>"));
    free(svg);
    ad_graph_free(g);
}
END_TEST

/* A formula of 30 parts, with fan-out, long edges and every kind of gate the CLI makes. */
START_TEST(svg_of_a_30_node_formula)
{
    ad_graph *g = ad_graph_new();
    ad_node *a = ad_var(g, "a", 0.5), *b = ad_var(g, "b", -1.25), *c = ad_var(g, "c", 2), *d = ad_var(g, "d", 0.75);
    ad_node *ab = ad_mul(g, a, b), *s = ad_sin(g, c), *t = ad_add(g, ab, s);
    ad_node *e = ad_exp(g, ad_neg(g, ad_mul(g, d, a)));
    ad_node *q = ad_div(g, ad_sub(g, b, c), ad_add_scalar(g, d, 2));
    ad_node *h = ad_tanh(g, ad_mul(g, ad_mul(g, a, c), d));
    ad_node *f = ad_add(g, ad_add(g, ad_mul(g, t, e), q), ad_mul(g, h, ad_pow(g, t, ad_const_scalar(g, 2))));
    ck_assert_int_eq(ad_backward(g, f), AD_OK);
    ad_status st;
    char *svg = capture(ad_write_svg, g, f, 2, &st);
    ck_assert_int_eq(st, AD_OK);
    int parts = count(svg, "<circle ") + count(svg, "<rect class=\"leaf\"");
    ck_assert_int_ge(parts, 25);
    ck_assert_int_le(parts, 35);
    free(svg);
    check_svg(g, f, parts, count(svg = capture(ad_write_svg, g, f, 2, &st), "<path class=\"edge\"") - 1);
    free(svg);
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
        check_clear(svg);
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
    tcase_add_test(tc, walk_has_the_slides_arithmetic);
    tcase_add_test(tc, symbols_never_collide);
    tcase_add_test(tc, full_precision_and_digits);
    tcase_add_test(tc, tensor_values_are_summarised);
    tcase_add_test(tc, copy_lines_sum_their_uses);
    tcase_add_test(tc, json_dump_parses_and_has_every_node);
    tcase_add_test(tc, svg_of_the_lecture_graphs);
    tcase_add_test(tc, svg_of_a_30_node_formula);
    tcase_add_test(tc, svg_of_random_graphs_never_overlaps);
    tcase_add_test(tc, svg_of_a_large_graph_is_a_summary);
    tcase_add_test(tc, dot_has_every_node_and_edge);
    tcase_add_test(tc, nonfinite_and_names);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
