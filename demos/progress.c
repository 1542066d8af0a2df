/* Progress reports: a bar redrawn in place on a terminal, one line per phase elsewhere. */
#include "progress.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum { BAR_WIDTH = 12, MIN_COLUMNS = 40, MAX_LINE = 512 };
#define REDRAW_SECONDS 0.1

double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *progress_format_time(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, len, "?");
        return buf;
    }
    long t = lround(s), h = t / 3600, m = t / 60 % 60, sec = t % 60;
    if (h) snprintf(buf, len, "%ld:%02ld:%02ld", h, m, sec);
    else snprintf(buf, len, "%ld:%02ld", m, sec);
    return buf;
}

/* 24310 as "24,310". */
static char *grouped(double x, char *buf, size_t len)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", x < 0 || !isfinite(x) ? 0 : x);
    size_t n = strlen(digits), k = 0;
    for (size_t i = 0; i < n && k + 2 < len; i++) {
        if (i && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
    return buf;
}

/* The terminal's width, so the bar never wraps (a wrapped line cannot be redrawn in place). */
static int columns(FILE *out)
{
#ifdef TIOCGWINSZ
    struct winsize w;
    if (ioctl(fileno(out), TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
#endif
    const char *c = getenv("COLUMNS");
    int n = c ? atoi(c) : 0;
    return n > 0 ? n : 80;
}

void progress_init(progress *p, FILE *out, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    const char *force = getenv("BACKPROP_PROGRESS");
    if (force && (strcmp(force, "0") == 0 || strcmp(force, "1") == 0)) p->live = force[0] == '1';
    else p->live = out && isatty(fileno(out));
    p->total = total > 0 ? total : 0;
    snprintf(p->unit, sizeof p->unit, "samples");
    p->run_start = p->phase_start = progress_now();
}

void progress_set_unit(progress *p, const char *unit)
{
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
}

void progress_phase(progress *p, const char *label, int64_t units)
{
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->phase_units = units > 0 ? units : 0;
    p->phase_done = 0;
    p->phase_start = progress_now();
    p->last_draw = 0;
}

void progress_clear(progress *p)
{
    if (!p->drawn) return;
    fputs("\r\033[K", p->out);
    fflush(p->out);
    p->drawn = false;
}

static void draw(progress *p, const char *stats, double now)
{
    double frac = p->phase_units ? (double)p->phase_done / (double)p->phase_units : 0;
    if (frac > 1) frac = 1;
    int filled = (int)(frac * BAR_WIDTH);
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[BAR_WIDTH] = 0;

    double t = now - p->phase_start, rate = t > 0 ? (double)p->phase_done / t : 0;
    char speed[64] = "", eta[48] = "";
    if (rate > 0) {
        char num[32], when[24];
        snprintf(speed, sizeof speed, " %s %s/s", grouped(rate, num, sizeof num), p->unit);
        /* The rest of the run at the overall rate so far (phases may include evaluation). */
        int64_t done = p->before + p->phase_done, left = p->total - done;
        double run = now - p->run_start, overall = run > 0 ? (double)done / run : 0;
        if (p->total > 0 && left >= 0 && overall > 0)
            snprintf(eta, sizeof eta, " ETA %s", progress_format_time((double)left / overall, when, sizeof when));
    }
    char line[MAX_LINE];
    int n = snprintf(line, sizeof line, "%s [%s] %3d%%%s%s%s%s", p->label, bar, (int)(100 * frac),
                     stats && *stats ? " " : "", stats ? stats : "", speed, eta);
    int width = columns(p->out) - 1;
    if (width < MIN_COLUMNS) width = MIN_COLUMNS;
    if (n > width && width < (int)sizeof line) line[width] = 0; /* never wrap */
    fprintf(p->out, "\r%s\033[K", line);
    fflush(p->out);
    p->drawn = true;
    p->last_draw = now;
}

void progress_update(progress *p, int64_t done, const char *stats)
{
    p->phase_done = done < 0 ? 0 : done;
    if (!p->live) return;
    double now = progress_now();
    if (p->drawn && now - p->last_draw < REDRAW_SECONDS && p->phase_done < p->phase_units) return;
    draw(p, stats, now);
}

void progress_end_phase(progress *p, const char *line)
{
    progress_clear(p);
    p->before += p->phase_units;
    p->phase_done = 0;
    if (line) {
        fprintf(p->out, "%s\n", line);
        fflush(p->out);
    }
}

double progress_elapsed(const progress *p) { return progress_now() - p->run_start; }
double progress_phase_elapsed(const progress *p) { return progress_now() - p->phase_start; }
