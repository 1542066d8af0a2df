/*
 * plot.h — small SVG charts for the demos, written by the project itself (no plotting
 * dependency): line and scatter charts, and a shaded field with its contour (a classifier's
 * decision boundary).
 *
 * Tutorial.  A learning curve and a second series of markers:
 *
 *     double epoch[] = {1, 2, 3}, train[] = {0.9, 0.5, 0.4}, val[] = {1.0, 0.7, 0.6};
 *     plot_series s[] = {
 *         {.x = epoch, .y = train, .n = 3, .label = "training loss"},
 *         {.x = epoch, .y = val, .n = 3, .label = "validation loss", .points = true},
 *     };
 *     char err[256];
 *     if (plot_lines_svg("curve.svg", &(plot_cfg){.title = "loss", .xlabel = "epoch",
 *                                                 .ylabel = "loss"}, s, 2, err, sizeof err))
 *         fprintf(stderr, "%s\n", err);
 *
 * Pictures.  Axes with "nice" ticks (steps of 1, 2 or 5 times a power of ten) and light grid
 * lines, axis labels, a title and a legend placed in the corner of the plot that hides the
 * least data (or, if every corner hides some and the chart is wide enough, to the right of the
 * plot).  A series is a line through its points in order, or markers (points = true).
 * Non-finite values (NaN, ±inf, and magnitudes beyond 1e300) are skipped: a line breaks there,
 * and they do not count for the axes' ranges; a chart with no finite value at all still draws
 * empty axes.
 *
 * Files.  Each function writes a whole file atomically: a temporary file in the same folder is
 * renamed over path once complete, so a failed write leaves any old file as it was.  Functions
 * return 0 on success, or -1 with a message naming the path in err (errlen bytes; err may be
 * NULL).  Nothing aborts, exits or prints.
 */
#ifndef PLOT_H
#define PLOT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One series: n points (x[i], y[i]).  x NULL means x[i] = i.  label NULL or "" keeps the series
 * out of the legend; color NULL takes the next colour of a default palette (a colourblind-safe
 * one), otherwise any SVG colour ("#d62728", "black"); points draws markers instead of a line. */
typedef struct {
    const double *x, *y;
    int n;
    const char *label;
    const char *color;
    bool points;
} plot_series;

/* The chart: title and axis labels (NULL for none); width and height in pixels (0: 640x400;
 * at least 200x150). */
typedef struct {
    const char *title, *xlabel, *ylabel;
    int width, height;
} plot_cfg;

/* Lines and markers; the axes span the finite data, widened to the nearest ticks when they are
 * close (else by 3%).  cfg may be NULL (no labels, 640x400). */
int plot_lines_svg(const char *path, const plot_cfg *cfg, const plot_series *s, int ns,
                   char *err, size_t errlen);

/* A scalar field over a rectangle, sampled on an nx by ny grid of cells: z[j*nx + i] is the
 * value at the centre of cell (i, j), that is at x = x0 + (i + 0.5)(x1 - x0)/nx and
 * y = y0 + (j + 0.5)(y1 - y0)/ny (j = 0 is the bottom row). */
typedef struct {
    const double *z;
    int nx, ny;             /* at least 2 each */
    double x0, x1, y0, y1;  /* the rectangle, x0 < x1 and y0 < y1 */
    double level;           /* the contour drawn, and the centre of the colour scale (0) */
    double scale;           /* |z - level| at which the shading saturates (0: the largest) */
    const char *level_label;/* the contour's legend entry (NULL: "z = <level>") */
} plot_field;

/* The field shaded in bands (blue below level, red above, paler near level), its contour at
 * level as a line, and the series on top (markers or lines, clipped to the rectangle, which
 * the axes span exactly).  Non-finite cells stay grey.  cfg may be NULL. */
int plot_field_svg(const char *path, const plot_cfg *cfg, const plot_field *f,
                   const plot_series *s, int ns, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
