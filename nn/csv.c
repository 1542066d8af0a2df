/* The CSV loader: numbers in columns, one of them the label, errors that point at the line and
 * column of the first bad field. */
#include "nn_data.h"
#include "ad_io.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct { double *v; size_t n, cap; } dvec;

static bool push(dvec *a, double x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 1024;
        double *v = ad_realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

typedef struct { char *text; int col; } field;

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    long line;
    field *f;
    int nf, cap;
} csv;

/* Writes the message (with the line, and the column when col > 0) and returns false. */
static bool fail(csv *c, int col, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static bool fail(csv *c, int col, const char *fmt, ...)
{
    char where[1024];
    if (col > 0) snprintf(where, sizeof where, "nn_csv_load: %s: line %ld, column %d: ", c->path, c->line, col);
    else if (c->line > 0) snprintf(where, sizeof where, "nn_csv_load: %s: line %ld: ", c->path, c->line);
    else snprintf(where, sizeof where, "nn_csv_load: %s: ", c->path);
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(c->err, c->errlen, NULL, where, fmt, ap);
    va_end(ap);
    return false;
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t'; }

/* Splits a line in place into fields: separators become NULs, quotes are removed ("" is a
 * quote inside a quoted field), spaces around a field are trimmed.  Records each field's
 * 1-based column in the original line for messages. */
static bool split(csv *c, char *s, char sep)
{
    c->nf = 0;
    for (char *p = s;;) {
        if (c->nf == c->cap) {
            int cap = c->cap ? 2 * c->cap : 32;
            field *f = ad_realloc(c->f, (size_t)cap * sizeof *f);
            if (!f) return fail(c, 0, "out of memory");
            c->f = f, c->cap = cap;
        }
        while (is_space(*p) && *p != sep) p++;
        field *f = &c->f[c->nf++];
        f->col = (int)(p - s) + 1;
        char *out = p, *end;
        if (*p == '"') {
            f->text = out = ++p;
            for (;; p++) {
                if (!*p) return fail(c, f->col, "unterminated quote");
                if (*p == '"' && p[1] == '"') *out++ = '"', p++;
                else if (*p == '"') break;
                else *out++ = *p;
            }
            for (p++; is_space(*p) && *p != sep; p++) continue;
            if (*p && *p != sep)
                return fail(c, (int)(p - s) + 1, "'%c' after a closing quote (expected '%c' or the end of the line)", *p, sep);
            end = out;
        } else {
            f->text = p;
            while (*p && *p != sep) p++;
            for (end = p; end > f->text && is_space(end[-1]); end--) continue;
        }
        bool last = !*p;
        *end = 0;
        if (last) return true;
        p++;
    }
}

/* A number filling the whole field: "1.5" yes; "", "1.5x", "nan", "inf" and "1e999" no.
 * Subnormals and underflow to zero are the nearest double, as in every other reader; strtod's
 * ERANGE for them is not an error. */
static bool number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return *s && !*end && isfinite(*v);
}

/* One line without its end-of-line characters into *buf (grown with ad_realloc, so fault
 * injection reaches it), NULs included: *len counts them.  Returns 1 for a line, 0 at the end
 * of the file, -1 when out of memory. */
static int read_line(FILE *f, char **buf, size_t *cap, size_t *len)
{
    int ch = EOF;
    *len = 0;
    while ((ch = getc(f)) != EOF) {
        if (*len + 2 > *cap) {
            size_t n = *cap ? 2 * *cap : 256;
            char *b = ad_realloc(*buf, n);
            if (!b) return -1;
            *buf = b, *cap = n;
        }
        if (ch == '\n') break;
        (*buf)[(*len)++] = (char)ch;
    }
    if (ch == EOF && *len == 0) return 0;
    while (*len > 0 && (*buf)[*len - 1] == '\r') (*len)--;
    (*buf)[*len] = 0;
    return 1;
}

static bool blank(const char *s)
{
    while (is_space(*s)) s++;
    return !*s;
}

/* Resolves the label column from the first row (names when it is a header). */
static bool find_label(csv *c, const nn_csv_opts *o, int *label)
{
    if (c->nf < 2) return fail(c, 0, "%d column: need a label and at least one feature", c->nf);
    if (o->label) {
        if (!o->header) return fail(c, 0, "a label column name (\"%s\") needs a header row (.header = true)", o->label);
        *label = -1;
        for (int j = 0; j < c->nf; j++)
            if (!strcmp(c->f[j].text, o->label)) {
                if (*label >= 0) return fail(c, c->f[j].col, "two columns are named \"%s\"", o->label);
                *label = j;
            }
        if (*label < 0) return fail(c, 0, "no column is named \"%s\"", o->label);
        return true;
    }
    *label = o->label_col < 0 ? c->nf + o->label_col : o->label_col;
    if (*label < 0 || *label >= c->nf)
        return fail(c, 0, "label column %d is outside the %d columns", o->label_col, c->nf);
    return true;
}

static nn_dataset *build(csv *c, const nn_csv_opts *o, dvec *x, dvec *y, int ncols)
{
    int64_t n = (int64_t)y->n;
    nn_dataset *d = nn_dataset_new(n, ncols - 1, o->dtype, o->regression ? 1 : 0);
    if (!d) return fail(c, 0, "out of memory for %lld rows", (long long)n), NULL;
    for (int64_t i = 0; i < n * (ncols - 1); i++) ad_tensor_set(d->x, i, x->v[i]);
    for (int64_t i = 0; i < n; i++) {
        if (o->regression) {
            ad_tensor_set(d->y, i, y->v[i]);
        } else {
            d->labels[i] = (int32_t)y->v[i];
            if (d->labels[i] >= d->classes) d->classes = d->labels[i] + 1;
        }
    }
    return d;
}

nn_dataset *nn_csv_load(const char *path, const nn_csv_opts *opts, char *err, size_t errlen)
{
    nn_csv_opts o = opts ? *opts : (nn_csv_opts){0};
    char sep = o.sep ? o.sep : ',';
    csv c = {.path = path ? path : "(null)", .err = err, .errlen = errlen};
    if (!path) return fail(&c, 0, "path is NULL"), NULL;
    if (o.dtype != AD_F32 && o.dtype != AD_F64) return fail(&c, 0, "unknown dtype %d", (int)o.dtype), NULL;
    char why[160];
    FILE *f = ad_fopen_regular(path, why, sizeof why);
    if (!f) return fail(&c, 0, "%s", why), NULL;
    char *line = NULL;
    size_t cap = 0, len;
    int got;
    int ncols = -1, label = -1;
    long first = 0;
    dvec x = {0}, y = {0};
    nn_dataset *d = NULL;
    bool ok = true;
    while (ok && (got = read_line(f, &line, &cap, &len)) != 0) {
        c.line++;
        if (got < 0) {
            ok = fail(&c, 0, "out of memory");
            break;
        }
        const char *nul = memchr(line, 0, len);
        if (nul) { /* the text after it would be dropped without a word */
            ok = fail(&c, (int)(nul - line) + 1, "NUL byte (a binary file?)");
            break;
        }
        char *s = line;
        if (c.line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) s += 3; /* a byte-order mark (Excel) */
        if (blank(s)) continue;
        if (!(ok = split(&c, s, sep))) break;
        if (ncols < 0) {
            ncols = c.nf, first = c.line;
            if (!(ok = find_label(&c, &o, &label))) break;
            if (o.header) continue;
        }
        if (c.nf != ncols) {
            ok = fail(&c, 0, "%d fields, but line %ld has %d", c.nf, first, ncols);
            break;
        }
        for (int j = 0; ok && j < ncols; j++) {
            double v;
            if (!c.f[j].text[0]) {
                ok = fail(&c, c.f[j].col, "empty field");
            } else if (!number(c.f[j].text, &v)) {
                ok = fail(&c, c.f[j].col, "%s\"%s\" is not a number", j == label ? "label " : "", c.f[j].text);
            } else if (j == label && !o.regression && !(v >= 0 && v <= INT32_MAX - 1 && v == floor(v))) {
                ok = fail(&c, c.f[j].col, "label \"%s\" is not a class id (a non-negative integer; set .regression for real targets)",
                          c.f[j].text);
            } else if (o.dtype == AD_F32 && (j != label || o.regression) && isinf((float)v)) {
                ok = fail(&c, c.f[j].col, "%s\"%s\" is outside float32's range", j == label ? "label " : "", c.f[j].text);
            } else if (!(j == label ? push(&y, v) : push(&x, v))) {
                ok = fail(&c, 0, "out of memory");
            }
        }
    }
    if (ok && ferror(f)) ok = fail(&c, 0, "read error");
    if (ok && y.n == 0) c.line = 0, ok = fail(&c, 0, "no data rows");
    if (ok) d = build(&c, &o, &x, &y, ncols);
    ad_free(line);
    ad_free(c.f), ad_free(x.v), ad_free(y.v);
    fclose(f);
    return d;
}
