/* adbench's files: ADBench's GMM and BA inputs (read as a stream of whitespace-separated
 * tokens, as utils.cpp's readers do), and its output files, written through a temporary file
 * that is renamed into place, so that a failure never leaves half a file. */
#include "adbench.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A file's text and a cursor over its tokens. */
typedef struct {
    const char *path;
    char *text;
    char *pos;
    long long count; /* tokens read so far */
    char *err;
    size_t errlen;
} reader;

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return 1;
}

static int reader_open(reader *r, const char *path, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->path = path, r->err = err, r->errlen = errlen;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1) break;
        char *more = realloc(buf, cap * 2);
        if (!more) free(buf);
        buf = more, cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return fail(err, errlen, "%s: out of memory reading the file", path);
    if (bad) {
        free(buf);
        return fail(err, errlen, "%s: read error", path);
    }
    buf[len] = 0;
    r->text = r->pos = buf;
    return 0;
}

/* The next token as a finite double; what names the value being read, for the message. */
static int read_double(reader *r, double *v, const char *what)
{
    char *p = r->pos;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v') p++;
    if (!*p)
        return fail(r->err, r->errlen, "%s: truncated: the file ends after %lld numbers, while reading %s", r->path,
                    r->count, what);
    char *end;
    errno = 0;
    double x = strtod(p, &end);
    if (end == p || (*end && !strchr(" \t\n\r\f\v", *end)) || !isfinite(x)) {
        int len = 0;
        while (p[len] && !strchr(" \t\n\r\f\v", p[len]) && len < 24) len++;
        return fail(r->err, r->errlen, "%s: bad number '%.*s' (token %lld, reading %s)", r->path, len, p,
                    r->count + 1, what);
    }
    r->pos = end;
    r->count++;
    *v = x;
    return 0;
}

/* The next token as an integer in [lo, hi]. */
static int read_int(reader *r, int *v, long long lo, long long hi, const char *what)
{
    double x;
    if (read_double(r, &x, what)) return 1;
    if (x != floor(x) || x < (double)lo || x > (double)hi)
        return fail(r->err, r->errlen, "%s: %s is %.17g; it must be an integer in [%lld, %lld]", r->path, what, x, lo,
                    hi);
    *v = (int)x;
    return 0;
}

static int read_doubles(reader *r, double *v, long long count, const char *what)
{
    for (long long i = 0; i < count; i++)
        if (read_double(r, &v[i], what)) return 1;
    return 0;
}

/* ---- GMM ---- */

int gmm_read(const char *path, gmm_input *in, char *err, size_t errlen)
{
    memset(in, 0, sizeof *in);
    reader r;
    if (reader_open(&r, path, err, errlen)) return 1;
    int st = 1;
    /* bounds that keep every count below 2^31 (the gradient's size is an int) */
    if (read_int(&r, &in->d, 1, 2000, "d") || read_int(&r, &in->k, 1, 100000, "k") ||
        read_int(&r, &in->n, 1, 100000000, "n"))
        goto out;
    long long d = in->d, k = in->k, n = in->n, icf_sz = d * (d + 1) / 2;
    if (k * (1 + d + icf_sz) > 200000000LL || n * d > 1000000000LL) {
        fail(err, errlen, "%s: d=%lld k=%lld n=%lld is too large", path, d, k, n);
        goto out;
    }
    in->alphas = malloc((size_t)k * sizeof(double));
    in->means = malloc((size_t)(k * d) * sizeof(double));
    in->icf = malloc((size_t)(k * icf_sz) * sizeof(double));
    in->x = malloc((size_t)(n * d) * sizeof(double));
    if (!in->alphas || !in->means || !in->icf || !in->x) {
        fail(err, errlen, "%s: out of memory for d=%lld k=%lld n=%lld", path, d, k, n);
        goto out;
    }
    double gamma;
    if (read_doubles(&r, in->alphas, k, "the alphas") || read_doubles(&r, in->means, k * d, "the means") ||
        read_doubles(&r, in->icf, k * icf_sz, "the icf vectors") || read_doubles(&r, in->x, n * d, "the points") ||
        read_double(&r, &gamma, "the Wishart gamma") || read_int(&r, &in->m, 0, 1000000, "the Wishart m"))
        goto out;
    if (!(gamma > 0)) {
        fail(err, errlen, "%s: the Wishart gamma is %.17g; it must be positive", path, gamma);
        goto out;
    }
    in->gamma = gamma;
    st = 0;
out:
    free(r.text);
    if (st) gmm_free(in);
    return st;
}

void gmm_free(gmm_input *in)
{
    free(in->alphas), free(in->means), free(in->icf), free(in->x);
    memset(in, 0, sizeof *in);
}

int gmm_grad_size(const gmm_input *in)
{
    return in->k * (1 + in->d + in->d * (in->d + 1) / 2);
}

/* ---- BA ---- */

int ba_read(const char *path, ba_input *in, char *err, size_t errlen)
{
    memset(in, 0, sizeof *in);
    reader r;
    if (reader_open(&r, path, err, errlen)) return 1;
    int st = 1;
    /* 31 p nonzeros and 11 n + 3 m + p columns stay below 2^31 */
    if (read_int(&r, &in->n, 1, 10000000, "n (cameras)") || read_int(&r, &in->m, 1, 100000000, "m (points)") ||
        read_int(&r, &in->p, 1, 60000000, "p (observations)"))
        goto out;
    long long n = in->n, m = in->m, p = in->p;
    if (11 * n + 3 * m + p > 2000000000LL) {
        fail(err, errlen, "%s: n=%lld m=%lld p=%lld is too large", path, n, m, p);
        goto out;
    }
    in->cams = malloc((size_t)(11 * n) * sizeof(double));
    in->X = malloc((size_t)(3 * m) * sizeof(double));
    in->w = malloc((size_t)p * sizeof(double));
    in->feats = malloc((size_t)(2 * p) * sizeof(double));
    in->obs = malloc((size_t)(2 * p) * sizeof(int));
    if (!in->cams || !in->X || !in->w || !in->feats || !in->obs) {
        fail(err, errlen, "%s: out of memory for n=%lld m=%lld p=%lld", path, n, m, p);
        goto out;
    }
    if (read_doubles(&r, in->cams, 11, "the camera") || read_doubles(&r, in->X, 3, "the point") ||
        read_doubles(&r, in->w, 1, "the weight") || read_doubles(&r, in->feats, 2, "the feature"))
        goto out;
    for (long long i = 1; i < n; i++) memcpy(in->cams + 11 * i, in->cams, 11 * sizeof(double));
    for (long long i = 1; i < m; i++) memcpy(in->X + 3 * i, in->X, 3 * sizeof(double));
    for (long long i = 0; i < p; i++) {
        in->w[i] = in->w[0];
        in->feats[2 * i] = in->feats[0], in->feats[2 * i + 1] = in->feats[1];
        in->obs[2 * i] = (int)(i % n), in->obs[2 * i + 1] = (int)(i % m);
    }
    st = 0;
out:
    free(r.text);
    if (st) ba_free(in);
    return st;
}

void ba_free(ba_input *in)
{
    free(in->cams), free(in->X), free(in->w), free(in->feats), free(in->obs);
    memset(in, 0, sizeof *in);
}

long long ba_nnz(const ba_input *in)
{
    return 31LL * in->p;
}

/* ---- output ---- */

/* Opens a temporary file beside path; *tmp receives its name (free it). */
static FILE *open_temp(const char *path, char **tmp, char *err, size_t errlen)
{
    size_t len = strlen(path) + 16;
    *tmp = malloc(len);
    if (!*tmp) {
        fail(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    snprintf(*tmp, len, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(*tmp);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
    if (!f) {
        fail(err, errlen, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        if (fd >= 0) close(fd), unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

/* Closes the temporary file and renames it to path, or removes it if anything failed. */
static int close_temp(FILE *f, char *tmp, const char *path, char *err, size_t errlen)
{
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) != 0) bad = 1;
    if (bad) {
        fail(err, errlen, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return bad;
}

int gmm_write(const char *path, double f, const double *grad, int n, char *err, size_t errlen)
{
    char *tmp;
    FILE *out = open_temp(path, &tmp, err, errlen);
    if (!out) return 1;
    fprintf(out, "%.17g\n", f);
    for (int i = 0; i < n; i++) fprintf(out, "%.17g\n", grad[i]);
    return close_temp(out, tmp, path, err, errlen);
}

/* write_J_sparse (utils.cpp): sizes, then rows, cols and vals, each value followed by a space. */
int ba_write_jacobian(const char *path, const ba_input *in, const double *vals, char *err, size_t errlen)
{
    char *tmp;
    FILE *out = open_temp(path, &tmp, err, errlen);
    if (!out) return 1;
    long long p = in->p, nrows = 3 * p, ncols = 11LL * in->n + 3LL * in->m + p, nnz = ba_nnz(in);
    fprintf(out, "%lld %lld\n%lld\n", nrows, ncols, nrows + 1);
    for (long long r = 0; r <= nrows; r++) fprintf(out, "%lld ", r <= 2 * p ? 15 * r : 30 * p + (r - 2 * p));
    fprintf(out, "\n%lld\n", nnz);
    for (long long i = 0; i < p; i++) {
        long long cam = 11LL * in->obs[2 * i], pt = 11LL * in->n + 3LL * in->obs[2 * i + 1];
        long long wc = 11LL * in->n + 3LL * in->m + i;
        for (int row = 0; row < 2; row++) {
            for (int j = 0; j < 11; j++) fprintf(out, "%lld ", cam + j);
            for (int j = 0; j < 3; j++) fprintf(out, "%lld ", pt + j);
            fprintf(out, "%lld ", wc);
        }
    }
    for (long long i = 0; i < p; i++) fprintf(out, "%lld ", 11LL * in->n + 3LL * in->m + i);
    fprintf(out, "\n");
    for (long long i = 0; i < nnz; i++) fprintf(out, "%.17e ", vals[i]);
    return close_temp(out, tmp, path, err, errlen);
}
