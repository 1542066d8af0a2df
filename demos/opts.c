/* opts.c — the demos' one option parser (see opts.h). */
#include "opts.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { HELP_COLUMN = 17 }; /* where help text starts at the least, as the demos always had it */

static void verror(const opts_spec *s, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", s->prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, s->hint_below ? "\n(%s --help for usage)\n" : " (%s --help for usage)\n", s->prog);
}

int opts_error(const opts_spec *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verror(s, fmt, ap);
    va_end(ap);
    return 2;
}

static int name_width(const opts_def *d)
{
    return (int)(strlen(d->name) + (d->arg ? 1 + strlen(d->arg) : 0));
}

void opts_help(const opts_spec *s, FILE *out)
{
    int col = HELP_COLUMN;
    for (int i = 0; i < s->ndefs; i++)
        if (s->defs[i].kind != OPTS_HEADING && 2 + name_width(&s->defs[i]) + 3 > col)
            col = 2 + name_width(&s->defs[i]) + 3;
    fputs(s->usage, out);
    for (int i = 0; i < s->ndefs; i++) {
        const opts_def *d = &s->defs[i];
        if (d->kind == OPTS_HEADING) {
            fprintf(out, "\n%s\n", d->help);
            continue;
        }
        fprintf(out, "  %s%s%s%*s", d->name, d->arg ? " " : "", d->arg ? d->arg : "", col - 2 - name_width(d), "");
        for (const char *h = d->help; *h; h++) {
            fputc(*h, out);
            if (*h == '\n') fprintf(out, "%*s", col, "");
        }
        fputc('\n', out);
    }
    fprintf(out, "  --help%*sthis text\n", col - 8, "");
    if (s->footer) fputs(s->footer, out);
}

/* The whole text must be the number. */
static bool whole_number(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno) return false;
    *out = v;
    return true;
}

static bool real_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* "a whole number from 1 to 100", "a number from 0 to 1", "relu, tanh or sigmoid". */
static const char *wanted(const opts_def *d, char *buf, size_t len)
{
    if (d->want) return d->want;
    if (d->kind == OPTS_CHOICE) {
        buf[0] = 0;
        for (int i = 0; d->choices[i]; i++)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i == 0 ? "" : d->choices[i + 1] ? ", " : " or ",
                     d->choices[i]);
    } else if (d->kind == OPTS_REAL) {
        snprintf(buf, len, "a number from %g to %g", d->lo, d->hi);
    } else if (d->hi >= 9.2e18) {
        snprintf(buf, len, "a whole number >= %.0f", d->lo);
    } else {
        snprintf(buf, len, "a whole number from %.0f to %.0f", d->lo, d->hi);
    }
    return buf;
}

/* Checks and stores one option's value; false if the value is not one the option takes. */
static bool store(const opts_def *d, const char *v)
{
    long long n;
    double x;
    switch (d->kind) {
    case OPTS_FLAG: *(bool *)d->dest = true; return true;
    case OPTS_CONST: *(int *)d->dest = (int)d->lo; return true;
    case OPTS_INT:
    case OPTS_LONG:
    case OPTS_INT64:
        if (!whole_number(v, &n) || (double)n < d->lo || (double)n > d->hi) return false;
        if (d->kind == OPTS_INT) *(int *)d->dest = (int)n;
        else if (d->kind == OPTS_LONG) *(long *)d->dest = (long)n;
        else *(int64_t *)d->dest = n;
        return true;
    case OPTS_REAL:
        if (!real_number(v, &x) || (d->check ? !d->check(x) : x < d->lo || x > d->hi)) return false;
        *(double *)d->dest = x;
        return true;
    case OPTS_TEXT: *(const char **)d->dest = v; return true;
    case OPTS_CHOICE:
        for (int k = 0; d->choices[k]; k++)
            if (strcmp(v, d->choices[k]) == 0) {
                *(int *)d->dest = d->values ? d->values[k] : k;
                return true;
            }
        return false;
    case OPTS_CUSTOM: return d->parse(v, d->dest);
    case OPTS_HEADING: break;
    }
    return false;
}

static const char *exit_prog;

/* At exit, after main returned: output still buffered is written now, and output that was
 * lost (a full disk, a closed stdout) turns the exit status into a failure, whatever main
 * returned.  _exit because exit may not be called again from an atexit handler.  A stdout
 * closed before the program started that was never written to is no error (EBADF on close
 * alone). */
static void check_stdout(void)
{
    int e = 0;
    bool lost = ferror(stdout);
    if (fflush(stdout) != 0) lost = true, e = errno;
    if (fclose(stdout) != 0 && errno != EBADF && !lost) lost = true, e = errno;
    if (lost) {
        fprintf(stderr, "%s: cannot write the output: %s\n", exit_prog, e ? strerror(e) : "write error");
        _exit(EXIT_FAILURE);
    }
}

void opts_check_stdout_at_exit(const char *prog)
{
    if (!exit_prog && atexit(check_stdout) != 0) return;
    exit_prog = prog;
}

int opts_parse(const opts_spec *s, int argc, char **argv, const char **pos, int *npos, int maxpos)
{
    opts_check_stdout_at_exit(s->prog); /* --help and every run after it print on stdout */
    if (npos) *npos = 0;
    int given = 0;
    bool options_ended = false; /* after "--", as in getopt: a formula may start with '-' */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_ended && strcmp(a, "--") == 0) {
            options_ended = true;
            continue;
        }
        if (!options_ended && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            opts_help(s, stdout);
            return 0;
        }
        if (options_ended || strncmp(a, "--", 2) != 0) {
            if (!pos) return opts_error(s, "unexpected argument '%s' (options start with --)", a);
            if (*npos == maxpos) return opts_error(s, "too many arguments (at most %d)", maxpos);
            pos[(*npos)++] = a;
            continue;
        }
        const char *eq = strchr(a, '='), *v = NULL;
        size_t len = eq ? (size_t)(eq - a) : strlen(a); /* --name=value or --name value */
        opts_def *d = NULL;
        for (int k = 0; k < s->ndefs && !d; k++)
            if (s->defs[k].kind != OPTS_HEADING && strlen(s->defs[k].name) == len &&
                strncmp(a, s->defs[k].name, len) == 0)
                d = &s->defs[k];
        if (!d) return opts_error(s, "unknown option '%.*s'", (int)len, a);
        bool takes_value = d->kind != OPTS_FLAG && d->kind != OPTS_CONST;
        if (!takes_value && eq) return opts_error(s, "%s takes no value", d->name);
        if (takes_value) {
            if (eq) v = eq + 1;
            else if (i + 1 < argc) v = argv[++i];
            else return opts_error(s, "%s needs a value", d->name);
        }
        char buf[256];
        if (d->kind == OPTS_TEXT && !*v && !d->empty_ok)
            return opts_error(s, "%s needs %s", d->name, d->want ? d->want : "a file name");
        if (!store(d, v)) return opts_error(s, "%s takes %s, not '%s'", d->name, wanted(d, buf, sizeof buf), v);
        given++;
        if (!d->seen) d->seen = given;
    }
    return -1;
}
