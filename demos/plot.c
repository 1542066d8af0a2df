/* plot.c — SVG line charts and shaded fields, written by hand (see plot.h).  The whole picture
 * is built in memory, then written with ad_write_atomic (a temporary file next to the target,
 * renamed over it). */
#include "plot.h"
#include "ad_io.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable string ---------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
    bool failed; /* out of memory: further appends are ignored */
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int k = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)k < room) {
            b->len += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len <= (size_t)k) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* Text for an SVG text node or attribute, escaped by the library's one XML escaper. */
static void sb_escaped(sbuf *b, const char *s)
{
    char small[256];
    size_t n = ad_xml_escape(small, sizeof small, s);
    if (n < sizeof small) {
        sb_printf(b, "%s", small);
        return;
    }
    char *big = malloc(n + 1);
    if (!big) {
        b->failed = true;
        return;
    }
    ad_xml_escape(big, n + 1, s);
    sb_printf(b, "%s", big);
    free(big);
}

/* ---- writing a file atomically ---------------------------------------------------------- */

static bool put_sbuf(FILE *f, void *ctx)
{
    const sbuf *b = ctx;
    return fwrite(b->s, 1, b->len, f) == b->len;
}

/* ad_write_atomic, with plot's own messages ("plot: cannot write 'PATH': REASON"). */
static int write_atomic(const char *path, sbuf *b, char *err, size_t errlen)
{
    if (b->failed) {
        ad_errorf(err, errlen, NULL, "plot: out of memory while drawing '%s'", path);
        return -1;
    }
    ad_status st = ad_write_atomic(path, put_sbuf, b, NULL, 0);
    if (st == AD_ERR_NOMEM) ad_errorf(err, errlen, NULL, "plot: out of memory while writing '%s'", path);
    else if (st) ad_errorf(err, errlen, NULL, "plot: cannot write '%s': %s", path, strerror(errno));
    return st ? -1 : 0;
}

/* ---- axes -------------------------------------------------------------------------------- */

typedef struct {
    double lo, hi;   /* the range the axis spans */
    double step;     /* between ticks: 1, 2 or 5 times a power of ten */
    int decimals;    /* for tick labels; -1: %g (very large or very small numbers) */
} axis;

static bool usable(double v) { return isfinite(v) && fabs(v) < 1e300; }

/* 1, 2 or 5 times a power of ten, near range / target. */
static double nice_step(double range, double target)
{
    double raw = range / (target < 1 ? 1 : target);
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void axis_labels(axis *a)
{
    double big = fmax(fabs(a->lo), fabs(a->hi));
    if (big >= 1e6 || a->step < 1e-5) a->decimals = -1;
    else a->decimals = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
}

/* An axis over data from lo to hi (finite), widened to the nearest ticks when they are close. */
static axis axis_fit(double lo, double hi, double target)
{
    if (!(hi > lo)) {
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
        lo -= d;
        hi += d;
    }
    axis a = {.step = nice_step(hi - lo, target)};
    a.lo = floor(lo / a.step + 1e-9) * a.step;
    a.hi = ceil(hi / a.step - 1e-9) * a.step;
    /* a tick far beyond the data would waste the space: pad by 3% instead */
    double r = hi - lo;
    if (lo - a.lo > 0.1 * r) a.lo = lo - 0.03 * r;
    if (a.hi - hi > 0.1 * r) a.hi = hi + 0.03 * r;
    axis_labels(&a);
    return a;
}

/* An axis spanning exactly lo..hi, ticks inside. */
static axis axis_exact(double lo, double hi, double target)
{
    axis a = {.lo = lo, .hi = hi, .step = nice_step(hi - lo, target)};
    axis_labels(&a);
    return a;
}

static void tick_label(const axis *a, double v, char *buf, size_t len)
{
    if (fabs(v) < a->step * 1e-6) v = 0; /* no "-0.0" */
    if (a->decimals < 0) snprintf(buf, len, "%g", v);
    else snprintf(buf, len, "%.*f", a->decimals, v);
}

/* The ticks of an axis: k from first to last gives the value k * step. */
static void tick_range(const axis *a, long *first, long *last)
{
    *first = (long)ceil(a->lo / a->step - 1e-9);
    *last = (long)floor(a->hi / a->step + 1e-9);
}

/* Approximate width in pixels of text in the 11-12 px sans-serif the charts use. */
static double text_width(const char *s, double size) { return (double)strlen(s ? s : "") * size * 0.56; }

/* ---- the frame: layout, grid, ticks, labels --------------------------------------------- */

typedef struct {
    int width, height;
    double px0, px1, py0, py1; /* the plot area in pixels: left, right, top, bottom */
    axis ax, ay;
} frame;

static double map_x(const frame *f, double v)
{
    double p = f->px0 + (v - f->ax.lo) / (f->ax.hi - f->ax.lo) * (f->px1 - f->px0);
    return fmax(-1e4, fmin(1e4, p));
}

static double map_y(const frame *f, double v)
{
    double p = f->py1 - (v - f->ay.lo) / (f->ay.hi - f->ay.lo) * (f->py1 - f->py0);
    return fmax(-1e4, fmin(1e4, p));
}

/* Margins from the labels: the left one fits the widest y tick label. */
static void frame_layout(frame *f, const plot_cfg *cfg)
{
    double ytick_w = 0;
    long k0, k1;
    tick_range(&f->ay, &k0, &k1);
    for (long k = k0; k <= k1; k++) {
        char buf[64];
        tick_label(&f->ay, (double)k * f->ay.step, buf, sizeof buf);
        ytick_w = fmax(ytick_w, text_width(buf, 11));
    }
    f->px0 = 12 + (cfg->ylabel && *cfg->ylabel ? 20 : 0) + ytick_w + 8;
    f->px1 = f->width - 16;
    f->py0 = cfg->title && *cfg->title ? 34 : 14;
    f->py1 = f->height - (cfg->xlabel && *cfg->xlabel ? 46 : 28);
}

static void svg_open(sbuf *b, const frame *f, const plot_cfg *cfg)
{
    sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                 "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
              f->width, f->height, f->width, f->height);
    if (cfg->title && *cfg->title) {
        sb_printf(b, "<title>");
        sb_escaped(b, cfg->title);
        sb_printf(b, "</title>\n");
    }
    sb_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    sb_printf(b, "<clipPath id=\"plot-area\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
              f->px0, f->py0, f->px1 - f->px0, f->py1 - f->py0);
}

static void draw_grid(sbuf *b, const frame *f)
{
    long k0, k1;
    sb_printf(b, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    tick_range(&f->ax, &k0, &k1);
    for (long k = k0; k <= k1; k++) {
        double x = map_x(f, (double)k * f->ax.step);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, f->py0, x, f->py1);
    }
    tick_range(&f->ay, &k0, &k1);
    for (long k = k0; k <= k1; k++) {
        double y = map_y(f, (double)k * f->ay.step);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f->px0, y, f->px1, y);
    }
    sb_printf(b, "</g>\n");
}

/* The frame around the plot area, ticks with their labels, axis labels and title. */
static void draw_axes(sbuf *b, const frame *f, const plot_cfg *cfg)
{
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
              f->px0, f->py0, f->px1 - f->px0, f->py1 - f->py0);
    long k0, k1;
    char buf[64];
    sb_printf(b, "<g font-size=\"11\" fill=\"#333\">\n");
    tick_range(&f->ax, &k0, &k1);
    for (long k = k0; k <= k1; k++) {
        double x = map_x(f, (double)k * f->ax.step);
        tick_label(&f->ax, (double)k * f->ax.step, buf, sizeof buf);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", x, f->py1, x,
                  f->py1 + 5);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, f->py1 + 17, buf);
    }
    tick_range(&f->ay, &k0, &k1);
    for (long k = k0; k <= k1; k++) {
        double y = map_y(f, (double)k * f->ay.step);
        tick_label(&f->ay, (double)k * f->ay.step, buf, sizeof buf);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>", f->px0 - 5, y,
                  f->px0, y);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", f->px0 - 8, y + 4, buf);
    }
    sb_printf(b, "</g>\n");
    if (cfg->xlabel && *cfg->xlabel) {
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">",
                  (f->px0 + f->px1) / 2, (double)f->height - 10);
        sb_escaped(b, cfg->xlabel);
        sb_printf(b, "</text>\n");
    }
    if (cfg->ylabel && *cfg->ylabel) {
        double cx = 16, cy = (f->py0 + f->py1) / 2;
        sb_printf(b, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">",
                  cx, cy);
        sb_escaped(b, cfg->ylabel);
        sb_printf(b, "</text>\n");
    }
    if (cfg->title && *cfg->title) {
        sb_printf(b, "<text x=\"%.1f\" y=\"22\" font-size=\"14\" font-weight=\"bold\" text-anchor=\"middle\">",
                  (double)f->width / 2);
        sb_escaped(b, cfg->title);
        sb_printf(b, "</text>\n");
    }
}

/* ---- series and legend ----------------------------------------------------------------- */

/* Okabe and Ito's palette, which colourblind readers can tell apart (yellow left out: it
 * vanishes on white). */
static const char *const PALETTE[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#999999"};
enum { NPALETTE = sizeof PALETTE / sizeof *PALETTE };

static double sx(const plot_series *s, int i) { return s->x ? s->x[i] : (double)i; }

static const char *series_color(const plot_series *s, int *next)
{
    if (s->color && *s->color) return s->color;
    return PALETTE[(*next)++ % NPALETTE];
}

/* Ramer-Douglas-Peucker: marks in keep the points of the polyline p (n points, x y pairs)
 * that it needs to stay within tol pixels of every point; stack holds 2n ints. */
static void simplify(const double *p, int n, double tol, bool *keep, int *stack)
{
    for (int i = 0; i < n; i++) keep[i] = i == 0 || i == n - 1;
    int top = 0;
    if (n > 2) stack[top++] = 0, stack[top++] = n - 1;
    while (top > 0) {
        int b = stack[--top], a = stack[--top];
        double dx = p[2 * b] - p[2 * a], dy = p[2 * b + 1] - p[2 * a + 1], len = hypot(dx, dy);
        double worst = -1;
        int at = -1;
        for (int i = a + 1; i < b; i++) {
            double ex = p[2 * i] - p[2 * a], ey = p[2 * i + 1] - p[2 * a + 1];
            double d = len > 0 ? fabs(ex * dy - ey * dx) / len : hypot(ex, ey);
            if (d > worst) worst = d, at = i;
        }
        if (at < 0 || worst <= tol) continue;
        keep[at] = true;
        stack[top++] = a, stack[top++] = at;
        stack[top++] = at, stack[top++] = b;
    }
}

static void draw_series(sbuf *b, const frame *f, const plot_series *s, const char *color)
{
    if (s->points) {
        sb_printf(b, "<g fill=\"");
        sb_escaped(b, color);
        sb_printf(b, "\" stroke=\"white\" stroke-width=\"0.8\">\n");
        for (int i = 0; i < s->n; i++) {
            double x = sx(s, i), y = s->y[i];
            if (!usable(x) || !usable(y)) continue;
            sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>\n", map_x(f, x), map_y(f, y));
        }
        sb_printf(b, "</g>\n");
        return;
    }
    sb_printf(b, "<path fill=\"none\" stroke=\"");
    sb_escaped(b, color);
    sb_printf(b, "\" stroke-width=\"2\" stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"");
    /* each unbroken piece of the line, in pixels, simplified to within a quarter pixel */
    double *u = malloc(sizeof(double) * 2 * (size_t)(s->n + 1));
    bool *keep = malloc((size_t)s->n + 1);
    int *stack = malloc(sizeof(int) * 2 * (size_t)(s->n + 1));
    if (!u || !keep || !stack) b->failed = true;
    for (int i = 0; u && keep && stack && i < s->n;) {
        if (!usable(sx(s, i)) || !usable(s->y[i])) {
            i++;
            continue;
        }
        int j = i;
        while (j < s->n && usable(sx(s, j)) && usable(s->y[j])) {
            u[2 * (j - i)] = map_x(f, sx(s, j));
            u[2 * (j - i) + 1] = map_y(f, s->y[j]);
            j++;
        }
        simplify(u, j - i, 0.25, keep, stack);
        for (int k = 0; k < j - i; k++)
            if (keep[k]) sb_printf(b, "%s%.1f %.1f", k ? "L" : "M", u[2 * k], u[2 * k + 1]);
        i = j;
    }
    free(u);
    free(keep);
    free(stack);
    sb_printf(b, "\"/>\n");
}

typedef struct {
    const char *label, *color;
    int kind; /* 0 line, 1 marker, 2 thick black contour line */
} legend_entry;

typedef struct {
    double x, y, w, h;
} box;

static bool in_box(const box *b, double u, double v)
{
    return u >= b->x && u <= b->x + b->w && v >= b->y && v <= b->y + b->h;
}

/* How much of the data a legend at b would hide: each marker counts 8, a line counts its
 * points and the midpoints of its segments. */
static int legend_cover(const frame *f, const plot_series *s, int ns, const box *b)
{
    int c = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double px = sx(&s[k], i), py = s[k].y[i];
            if (!usable(px) || !usable(py)) continue;
            double u = map_x(f, px), v = map_y(f, py);
            if (s[k].points) {
                /* a marker is hidden if any of it is */
                box grown = {b->x - 4, b->y - 4, b->w + 8, b->h + 8};
                c += 8 * in_box(&grown, u, v);
                continue;
            }
            c += in_box(b, u, v);
            if (i + 1 < s[k].n && usable(sx(&s[k], i + 1)) && usable(s[k].y[i + 1]))
                c += in_box(b, (u + map_x(f, sx(&s[k], i + 1))) / 2, (v + map_y(f, s[k].y[i + 1])) / 2);
        }
    return c;
}

static void legend_size(const legend_entry *e, int ne, box *b)
{
    double tw = 0;
    for (int i = 0; i < ne; i++) tw = fmax(tw, text_width(e[i].label, 12));
    b->w = 8 + 24 + 6 + tw + 8;
    b->h = 6 + 18.0 * ne;
}

/* The legend's place: the inside corner that hides the least data (top right first).  When
 * every corner hides some and the plot keeps 70% of its width without it, the plot area
 * shrinks and the legend goes to its right; returns true then (the caller recomputes the x
 * axis). */
static bool legend_place(frame *f, const legend_entry *e, int ne, const plot_series *s, int ns, box *b)
{
    legend_size(e, ne, b);
    if (ne == 0) return false;
    double pad = 8;
    double xs[4] = {f->px1 - pad - b->w, f->px0 + pad, f->px1 - pad - b->w, f->px0 + pad};
    double ys[4] = {f->py0 + pad, f->py0 + pad, f->py1 - pad - b->h, f->py1 - pad - b->h};
    int best = 0, best_c = -1;
    for (int k = 0; k < 4; k++) {
        box t = {xs[k], ys[k], b->w, b->h};
        int c = legend_cover(f, s, ns, &t);
        if (best_c < 0 || c < best_c) best = k, best_c = c;
    }
    b->x = xs[best], b->y = ys[best];
    double pw = f->px1 - f->px0;
    if (best_c > 0 && pw - b->w - 12 >= 0.7 * pw) {
        f->px1 -= b->w + 12;
        b->x = f->px1 + 12, b->y = f->py0;
        return true;
    }
    return false;
}

static void draw_legend(sbuf *b, const box *lb, const legend_entry *e, int ne)
{
    if (ne == 0) return;
    double x = lb->x, y = lb->y;
    sb_printf(b, "<g font-size=\"12\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                 "fill=\"white\" fill-opacity=\"0.88\" stroke=\"#bbb\" rx=\"3\"/>\n", x, y, lb->w, lb->h);
    for (int i = 0; i < ne; i++) {
        double cy = y + 3 + 18.0 * i + 9;
        if (e[i].kind == 1) {
            sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" stroke=\"white\" stroke-width=\"0.8\" fill=\"",
                      x + 20, cy);
            sb_escaped(b, e[i].color);
            sb_printf(b, "\"/>");
        } else {
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"%s\" stroke=\"",
                      x + 8, cy, x + 32, cy, e[i].kind == 2 ? "2.5" : "2");
            sb_escaped(b, e[i].color);
            sb_printf(b, "\"/>");
        }
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", x + 38, cy + 4);
        sb_escaped(b, e[i].label);
        sb_printf(b, "</text>\n");
    }
    sb_printf(b, "</g>\n");
}

/* The series' colours (the palette in order for those without one) and legend entries. */
static int legend_entries(const plot_series *s, int ns, const char **colors, legend_entry *e)
{
    int next = 0, ne = 0;
    for (int k = 0; k < ns; k++) {
        colors[k] = series_color(&s[k], &next);
        if (s[k].label && *s[k].label) e[ne++] = (legend_entry){s[k].label, colors[k], s[k].points};
    }
    return ne;
}

static int check_series(const plot_series *s, int ns, const char *path, char *err, size_t errlen)
{
    if (ns < 0 || (ns > 0 && !s)) {
        ad_errorf(err, errlen, NULL, "plot: '%s': no series given", path);
        return -1;
    }
    for (int k = 0; k < ns; k++) {
        if (s[k].n < 0) {
            ad_errorf(err, errlen, NULL, "plot: '%s': series %d has a negative number of points", path, k);
            return -1;
        }
        if (s[k].n > 0 && !s[k].y) {
            ad_errorf(err, errlen, NULL, "plot: '%s': series %d has no y values", path, k);
            return -1;
        }
    }
    return 0;
}

static frame frame_new(const plot_cfg *cfg)
{
    frame f = {.width = cfg->width > 0 ? cfg->width : 640, .height = cfg->height > 0 ? cfg->height : 400};
    if (f.width < 200) f.width = 200;
    if (f.height < 150) f.height = 150;
    return f;
}

/* ---- line charts ------------------------------------------------------------------------ */

int plot_lines_svg(const char *path, const plot_cfg *cfg, const plot_series *s, int ns,
                   char *err, size_t errlen)
{
    static const plot_cfg none = {0};
    if (!path || !*path) {
        ad_errorf(err, errlen, NULL, "plot: no file name given");
        return -1;
    }
    if (!cfg) cfg = &none;
    if (check_series(s, ns, path, err, errlen)) return -1;
    frame f = frame_new(cfg);
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = sx(&s[k], i), y = s[k].y[i];
            if (!usable(x) || !usable(y)) continue;
            xlo = fmin(xlo, x);
            xhi = fmax(xhi, x);
            ylo = fmin(ylo, y);
            yhi = fmax(yhi, y);
        }
    if (!(xlo <= xhi)) xlo = 0, xhi = 1, ylo = 0, yhi = 1; /* nothing finite: empty axes */
    f.ax = axis_fit(xlo, xhi, (f.width - 100) / 90.0);
    f.ay = axis_fit(ylo, yhi, (f.height - 80) / 60.0);
    frame_layout(&f, cfg);
    /* the x ticks depend on the plot's width, which the y labels have just fixed */
    f.ax = axis_fit(xlo, xhi, (f.px1 - f.px0) / 90);

    sbuf b = {0};
    const char **colors = calloc((size_t)ns + 1, sizeof *colors);
    legend_entry *e = calloc((size_t)ns + 1, sizeof *e);
    if (!colors || !e) {
        free(colors);
        free(e);
        ad_errorf(err, errlen, NULL, "plot: out of memory while drawing '%s'", path);
        return -1;
    }
    int ne = legend_entries(s, ns, colors, e);
    box lb;
    if (legend_place(&f, e, ne, s, ns, &lb)) f.ax = axis_fit(xlo, xhi, (f.px1 - f.px0) / 90);
    svg_open(&b, &f, cfg);
    draw_grid(&b, &f);
    sb_printf(&b, "<g clip-path=\"url(#plot-area)\">\n");
    for (int k = 0; k < ns; k++) draw_series(&b, &f, &s[k], colors[k]);
    sb_printf(&b, "</g>\n");
    draw_axes(&b, &f, cfg);
    draw_legend(&b, &lb, e, ne);
    sb_printf(&b, "</svg>\n");
    free(e);
    free(colors);
    int rc = write_atomic(path, &b, err, errlen);
    free(b.s);
    return rc;
}

/* ---- shaded fields ---------------------------------------------------------------------- */

enum { NBANDS = 8 }; /* shades on each side of the level */

/* Band 0..2*NBANDS-1 of a value (below the level first), or 2*NBANDS for a non-finite one. */
static int band_of(double z, double level, double scale)
{
    if (!isfinite(z)) return 2 * NBANDS;
    double t = (z - level) / scale;
    int k = (int)floor(fmax(-1, fmin(1, t)) * NBANDS);
    if (k >= NBANDS) k = NBANDS - 1;
    return k + NBANDS;
}

/* Pale near the level, towards blue below and red above. */
static void band_color(int band, char *buf, size_t len)
{
    if (band == 2 * NBANDS) {
        snprintf(buf, len, "#c8c8c8");
        return;
    }
    double m = (fabs((double)(band - NBANDS) + 0.5)) / NBANDS;
    static const double pale[3] = {250, 250, 250}, blue[3] = {140, 182, 222}, red[3] = {236, 158, 136};
    const double *end = band < NBANDS ? blue : red;
    int c[3];
    for (int i = 0; i < 3; i++) c[i] = (int)lround(pale[i] + (end[i] - pale[i]) * m);
    snprintf(buf, len, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* One segment of the contour through a cell of four sample centres (marching squares). */
static void contour_cell(sbuf *b, double p[4][2], const double z[4], double level)
{
    /* corners in cycle order: bottom-left, bottom-right, top-right, top-left; edge e joins
     * corner e and corner e+1 */
    double pt[4][2];
    bool cut[4];
    int ncut = 0;
    for (int e = 0; e < 4; e++) {
        int a = e, c = (e + 1) % 4;
        cut[e] = (z[a] >= level) != (z[c] >= level);
        if (!cut[e]) continue;
        double t = (level - z[a]) / (z[c] - z[a]);
        pt[e][0] = p[a][0] + t * (p[c][0] - p[a][0]);
        pt[e][1] = p[a][1] + t * (p[c][1] - p[a][1]);
        ncut++;
    }
    int seg[2][2], nseg = 0;
    if (ncut == 2) {
        int k = 0;
        for (int e = 0; e < 4; e++)
            if (cut[e]) seg[0][k++] = e;
        nseg = 1;
    } else if (ncut == 4) {
        /* a saddle: the mean of the corners decides whether the corners above the level
         * are joined (then the cuts go around the corners below) */
        bool centre_above = (z[0] + z[1] + z[2] + z[3]) / 4 >= level;
        bool c0_above = z[0] >= level;
        /* cut around corner 0 and corner 2 (edges 3,0 and 1,2) when corner 0 is isolated */
        bool around02 = c0_above != centre_above;
        if (around02) {
            seg[0][0] = 3, seg[0][1] = 0, seg[1][0] = 1, seg[1][1] = 2;
        } else {
            seg[0][0] = 0, seg[0][1] = 1, seg[1][0] = 2, seg[1][1] = 3;
        }
        nseg = 2;
    }
    for (int k = 0; k < nseg; k++)
        sb_printf(b, "M%.1f %.1fL%.1f %.1f", pt[seg[k][0]][0], pt[seg[k][0]][1], pt[seg[k][1]][0],
                  pt[seg[k][1]][1]);
}

int plot_field_svg(const char *path, const plot_cfg *cfg, const plot_field *fd,
                   const plot_series *s, int ns, char *err, size_t errlen)
{
    static const plot_cfg none = {0};
    if (!path || !*path) {
        ad_errorf(err, errlen, NULL, "plot: no file name given");
        return -1;
    }
    if (!cfg) cfg = &none;
    if (!fd || !fd->z || fd->nx < 2 || fd->ny < 2 || fd->nx > 4096 || fd->ny > 4096) {
        ad_errorf(err, errlen, NULL, "plot: '%s': the field needs values on a grid of 2x2 to 4096x4096 cells", path);
        return -1;
    }
    if (!(usable(fd->x0) && usable(fd->x1) && usable(fd->y0) && usable(fd->y1) && fd->x0 < fd->x1 &&
          fd->y0 < fd->y1) || !isfinite(fd->level) || !(fd->scale >= 0)) {
        ad_errorf(err, errlen, NULL, "plot: '%s': the field's rectangle, level or scale is not valid", path);
        return -1;
    }
    if (check_series(s, ns, path, err, errlen)) return -1;
    int nx = fd->nx, ny = fd->ny;
    double scale = fd->scale;
    if (scale <= 0 || !isfinite(scale)) {
        scale = 0;
        for (int i = 0; i < nx * ny; i++)
            if (isfinite(fd->z[i])) scale = fmax(scale, fabs(fd->z[i] - fd->level));
        if (!(scale > 0) || !isfinite(scale)) scale = 1;
    }

    frame f = frame_new(cfg);
    f.ax = axis_exact(fd->x0, fd->x1, (f.width - 100) / 90.0);
    f.ay = axis_exact(fd->y0, fd->y1, (f.height - 80) / 60.0);
    frame_layout(&f, cfg);
    f.ax = axis_exact(fd->x0, fd->x1, (f.px1 - f.px0) / 90);
    const char **colors = calloc((size_t)ns + 1, sizeof *colors);
    legend_entry *e = calloc((size_t)ns + 1, sizeof *e);
    if (!colors || !e) {
        free(colors);
        free(e);
        ad_errorf(err, errlen, NULL, "plot: out of memory while drawing '%s'", path);
        return -1;
    }
    int ne = legend_entries(s, ns, colors, e);
    char level_label[64];
    if (!fd->level_label) snprintf(level_label, sizeof level_label, "z = %g", fd->level);
    e[ne++] = (legend_entry){fd->level_label ? fd->level_label : level_label, "#111", 2};
    box lb;
    if (legend_place(&f, e, ne, s, ns, &lb)) f.ax = axis_exact(fd->x0, fd->x1, (f.px1 - f.px0) / 90);
    /* whole pixels, so that neighbouring cells meet without hairline gaps */
    f.px0 = round(f.px0), f.px1 = round(f.px1), f.py0 = round(f.py0), f.py1 = round(f.py1);
    double pw = f.px1 - f.px0, ph = f.py1 - f.py0;

    sbuf b = {0};
    svg_open(&b, &f, cfg);
    /* the shading: per band, one path of horizontal runs of cells */
    long *xe = malloc(sizeof(long) * (size_t)(nx + 1)), *ye = malloc(sizeof(long) * (size_t)(ny + 1));
    if (!xe || !ye) b.failed = true;
    for (int i = 0; xe && i <= nx; i++) xe[i] = lround(f.px0 + pw * i / nx);
    for (int j = 0; ye && j <= ny; j++) ye[j] = lround(f.py1 - ph * j / ny);
    sb_printf(&b, "<g shape-rendering=\"crispEdges\">\n");
    for (int band = 0; xe && ye && band <= 2 * NBANDS; band++) {
        bool any = false;
        for (int j = 0; j < ny; j++) {
            for (int i = 0; i < nx;) {
                if (band_of(fd->z[(size_t)j * nx + i], fd->level, scale) != band) {
                    i++;
                    continue;
                }
                int i1 = i + 1;
                while (i1 < nx && band_of(fd->z[(size_t)j * nx + i1], fd->level, scale) == band) i1++;
                if (!any) {
                    char col[16];
                    band_color(band, col, sizeof col);
                    sb_printf(&b, "<path fill=\"%s\" d=\"", col);
                    any = true;
                }
                sb_printf(&b, "M%ld %ldh%ldv%ldh%ldz", xe[i], ye[j + 1], xe[i1] - xe[i], ye[j] - ye[j + 1],
                          xe[i] - xe[i1]);
                i = i1;
            }
        }
        if (any) sb_printf(&b, "\"/>\n");
    }
    sb_printf(&b, "</g>\n");
    free(xe);
    free(ye);
    draw_grid(&b, &f);

    /* the contour at the level, through the cells' centres */
    sb_printf(&b, "<path fill=\"none\" stroke=\"#111\" stroke-width=\"2.5\" stroke-linecap=\"round\" "
                  "clip-path=\"url(#plot-area)\" d=\"");
    for (int j = 0; j + 1 < ny; j++)
        for (int i = 0; i + 1 < nx; i++) {
            const double *z = fd->z;
            double zc[4] = {z[(size_t)j * nx + i], z[(size_t)j * nx + i + 1], z[(size_t)(j + 1) * nx + i + 1],
                            z[(size_t)(j + 1) * nx + i]};
            if (!isfinite(zc[0]) || !isfinite(zc[1]) || !isfinite(zc[2]) || !isfinite(zc[3])) continue;
            double xa = f.px0 + pw * (i + 0.5) / nx, xb = f.px0 + pw * (i + 1.5) / nx;
            double ya = f.py1 - ph * (j + 0.5) / ny, yb = f.py1 - ph * (j + 1.5) / ny;
            double p[4][2] = {{xa, ya}, {xb, ya}, {xb, yb}, {xa, yb}};
            contour_cell(&b, p, zc, fd->level);
        }
    sb_printf(&b, "\"/>\n");

    sb_printf(&b, "<g clip-path=\"url(#plot-area)\">\n");
    for (int k = 0; k < ns; k++) draw_series(&b, &f, &s[k], colors[k]);
    sb_printf(&b, "</g>\n");
    draw_axes(&b, &f, cfg);
    draw_legend(&b, &lb, e, ne);
    sb_printf(&b, "</svg>\n");
    free(e);
    free(colors);
    int rc = write_atomic(path, &b, err, errlen);
    free(b.s);
    return rc;
}
