/* The safetensors format: an atomic writer and a loader that trusts nothing it reads.
 *
 * The loader parses the JSON header with a small parser that accepts exactly the grammar a
 * safetensors header needs (an object of tensor entries and an optional "__metadata__" object
 * of strings) and is strict about everything else JSON says: escapes, UTF-8, numbers, commas.
 * It checks all offsets before it allocates a tensor, so a corrupt shape cannot make it
 * allocate more than the file holds. */
#include "ad_io.h"
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_HEADER 100000000ull /* 100 MB, the limit of the reference implementation */
#define META_KEY "__metadata__"

static const char *errno_str(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0) snprintf(buf, len, "error %d", e);
    return buf;
}

static bool host_is_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static const char *dtype_code(ad_dtype t) { return t == AD_F32 ? "F32" : "F64"; }

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return false;
        if (n - i <= k) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t j = 2; j <= k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xBF) return false;
        i += k + 1;
    }
    return true;
}

/* ==== writing ==== */

typedef struct { char *p; size_t len, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = ad_realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal: quotes, backslashes and control characters escaped; UTF-8 as is. */
static void sb_json(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\', esc[1] = (char)c; sb_put(b, esc, 2); }
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); sb_put(b, esc, 6); }
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string that appears twice among k (stride apart), or NULL; sorting keeps this
 * O(k log k) for models with thousands of tensors. */
static const char *first_duplicate(const char *const *s, int k, int stride, bool *oom)
{
    *oom = false;
    if (k < 2) return NULL;
    const char **v = ad_malloc((size_t)k * sizeof *v);
    if (!v) { *oom = true; return NULL; }
    for (int i = 0; i < k; i++) v[i] = s[(size_t)i * (size_t)stride];
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    const char *dup = NULL;
    for (int i = 1; i < k && !dup; i++)
        if (!strcmp(v[i - 1], v[i])) dup = v[i];
    ad_free(v);
    return dup;
}

static ad_status check_save_args(const char *path, int n, const char *const *names,
                                 ad_tensor *const *ts, int nmeta, const char *const *meta,
                                 char *err, size_t len)
{
    const char *fn = "ad_safetensors_save";
    if (!path) return ad_errorf(err, len, NULL, "%s: path is NULL", fn), AD_ERR_NULL;
    if (n < 0 || nmeta < 0)
        return ad_errorf(err, len, NULL, "%s: %s: negative count (%d tensors, %d metadata pairs)", fn, path, n, nmeta), AD_ERR_ARG;
    if (n > 0 && (!names || !ts))
        return ad_errorf(err, len, NULL, "%s: %s: %s is NULL for %d tensors", fn, path, names ? "tensors" : "names", n), AD_ERR_NULL;
    if (nmeta > 0 && !meta)
        return ad_errorf(err, len, NULL, "%s: %s: meta is NULL for %d pairs", fn, path, nmeta), AD_ERR_NULL;
    for (int i = 0; i < n; i++) {
        if (!names[i] || !ts[i])
            return ad_errorf(err, len, NULL, "%s: %s: %s %d is NULL", fn, path, names[i] ? "tensor" : "name", i), AD_ERR_NULL;
        if (!names[i][0] || !strcmp(names[i], META_KEY) || !utf8_valid((const unsigned char *)names[i], strlen(names[i])))
            return ad_errorf(err, len, NULL, "%s: %s: tensor %d: name \"%s\" is empty, reserved or not UTF-8", fn, path, i, names[i]), AD_ERR_ARG;
    }
    for (int i = 0; i < 2 * nmeta; i++) {
        if (!meta[i])
            return ad_errorf(err, len, NULL, "%s: %s: metadata %s %d is NULL", fn, path, i % 2 ? "value" : "key", i / 2), AD_ERR_NULL;
        if (!utf8_valid((const unsigned char *)meta[i], strlen(meta[i])))
            return ad_errorf(err, len, NULL, "%s: %s: metadata %s %d is not UTF-8", fn, path, i % 2 ? "value" : "key", i / 2), AD_ERR_ARG;
    }
    bool oom1, oom2;
    const char *d1 = first_duplicate(names, n, 1, &oom1), *d2 = first_duplicate(meta, nmeta, 2, &oom2);
    if (oom1 || oom2) return ad_errorf(err, len, NULL, "%s: %s: out of memory", fn, path), AD_ERR_NOMEM;
    if (d1) return ad_errorf(err, len, NULL, "%s: %s: tensor name \"%s\" appears twice", fn, path, d1), AD_ERR_ARG;
    if (d2) return ad_errorf(err, len, NULL, "%s: %s: metadata key \"%s\" appears twice", fn, path, d2), AD_ERR_ARG;
    return AD_OK;
}

/* The header JSON, padded with spaces to a multiple of 8 so the data that follows the 8-byte
 * length stays 8-byte aligned in a memory-mapped file. */
static bool build_header(sbuf *b, int n, const char *const *names, ad_tensor *const *ts,
                         int nmeta, const char *const *meta)
{
    sb_str(b, "{");
    if (nmeta > 0) {
        sb_json(b, META_KEY);
        sb_str(b, ":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_str(b, ",");
            sb_json(b, meta[2 * i]);
            sb_str(b, ":");
            sb_json(b, meta[2 * i + 1]);
        }
        sb_str(b, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        ad_shape s = ad_tensor_shape(ts[i]);
        uint64_t bytes = (uint64_t)ad_tensor_size(ts[i]) * ad_dtype_size(ad_tensor_dtype(ts[i]));
        char num[64];
        if (i || nmeta > 0) sb_str(b, ",");
        sb_json(b, names[i]);
        sb_str(b, ":{\"dtype\":\"");
        sb_str(b, dtype_code(ad_tensor_dtype(ts[i])));
        sb_str(b, "\",\"shape\":[");
        for (int d = 0; d < s.rank; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)s.dim[d]);
            sb_str(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + bytes));
        sb_str(b, num);
        off += bytes;
    }
    sb_str(b, "}");
    while (!b->oom && b->len % 8) sb_str(b, " ");
    return !b->oom;
}

/* Writes count elements of size es in little-endian order, swapping through a small buffer
 * on a big-endian host. */
static bool write_le(FILE *f, const void *data, size_t es, size_t count)
{
    if (host_is_le()) return fwrite(data, es, count, f) == count;
    unsigned char buf[4096];
    const unsigned char *p = data;
    size_t per = sizeof buf / es;
    for (size_t done = 0; done < count;) {
        size_t k = count - done < per ? count - done : per;
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < es; j++) buf[i * es + j] = p[(done + i) * es + es - 1 - j];
        if (fwrite(buf, es, k, f) != k) return false;
        done += k;
    }
    return true;
}

/* What ad_write_atomic's fill callback needs: the header and the tensors. */
typedef struct { const sbuf *h; int n; ad_tensor *const *ts; } save_job;

static bool write_all(FILE *f, void *ctx)
{
    const save_job *j = ctx;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)j->h->len >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(j->h->p, 1, j->h->len, f) == j->h->len;
    for (int i = 0; ok && i < j->n; i++)
        ok = write_le(f, ad_tensor_data(j->ts[i]), ad_dtype_size(ad_tensor_dtype(j->ts[i])),
                      (size_t)ad_tensor_size(j->ts[i]));
    return ok;
}

ad_status ad_safetensors_save(const char *path, int n, const char *const *names,
                              ad_tensor *const *tensors, int nmeta, const char *const *meta,
                              char *err, size_t errlen)
{
    const char *fn = "ad_safetensors_save";
    ad_status st = check_save_args(path, n, names, tensors, nmeta, meta, err, errlen);
    if (st) return st;
    sbuf h = {0};
    if (!build_header(&h, n, names, tensors, nmeta, meta)) {
        ad_free(h.p);
        ad_errorf(err, errlen, NULL, "%s: %s: out of memory", fn, path);
        return AD_ERR_NOMEM;
    }
    char why[1024];
    st = ad_write_atomic(path, write_all, &(save_job){&h, n, tensors}, why, sizeof why);
    if (st) ad_errorf(err, errlen, NULL, "%s: %s", fn, why);
    ad_free(h.p);
    return st;
}

/* ==== reading ==== */

typedef struct {
    char *name;
    ad_dtype dtype;
    bool int64;  /* an I64 tensor (PyTorch's num_batches_tracked), read into float64 */
    ad_shape shape;
    uint64_t begin, end;
    size_t pos; /* where the entry starts in the header, for messages */
    ad_tensor *t;
} entry;

typedef struct { char *key, *value; size_t pos; } meta_pair;

struct ad_tensor_file {
    int n, cap;
    entry *e;
    entry **by_name; /* sorted, for duplicate checks and ad_tensor_file_find */
    int nmeta, metacap;
    meta_pair *meta;
};

typedef struct {
    const char *s;
    size_t n, i;
    const char *path;
    char *err;
    size_t errlen;
    bool failed;
} parser;

/* Records the message with the line and column of position i; the first fault wins. */
static bool perr(parser *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static bool perr(parser *p, const char *fmt, ...)
{
    if (p->failed) return false;
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n') line++, col = 1;
        else col++;
    }
    char where[1024];
    snprintf(where, sizeof where, "ad_safetensors_load: %s: header line %zu, column %zu: ", p->path, line, col);
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(p->err, p->errlen, &p->failed, where, fmt, ap);
    va_end(ap);
    return false;
}

static void skip_ws(parser *p)
{
    while (p->i < p->n && strchr(" \t\n\r", p->s[p->i]) && p->s[p->i]) p->i++;
}

static bool at_char(parser *p, char c)
{
    skip_ws(p);
    return p->i < p->n && p->s[p->i] == c;
}

static const char *describe(const parser *p, char *buf, size_t len)
{
    if (p->i >= p->n) return "the end of the header";
    unsigned char c = (unsigned char)p->s[p->i];
    if (c >= 0x20 && c < 0x7F) snprintf(buf, len, "'%c'", c);
    else snprintf(buf, len, "byte 0x%02x", c);
    return buf;
}

static bool expect(parser *p, char c)
{
    char b[32];
    if (at_char(p, c)) return p->i++, true;
    return perr(p, "expected '%c', found %s", c, describe(p, b, sizeof b));
}

/* Opens an object or array; *another says whether a member follows. */
static bool open_bracket(parser *p, char open, char close, bool *another)
{
    if (!expect(p, open)) return false;
    *another = !at_char(p, close);
    if (!*another) p->i++;
    return true;
}

/* After a member: a comma means another one follows; the closing bracket ends the list. */
static bool next_member(parser *p, char close, bool *another)
{
    char b[32];
    if (at_char(p, ',')) return p->i++, *another = true;
    if (at_char(p, close)) return p->i++, !(*another = false);
    return perr(p, "expected ',' or '%c', found %s", close, describe(p, b, sizeof b));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool hex4(parser *p, unsigned *u)
{
    *u = 0;
    for (int k = 0; k < 4; k++, p->i++) {
        int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
        if (h < 0) return perr(p, "\\u needs four hex digits");
        *u = *u * 16 + (unsigned)h;
    }
    return true;
}

/* One escape after the backslash, as UTF-8 bytes into enc; returns their count or 0. */
static size_t unescape(parser *p, char *enc)
{
    char b[32];
    const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
    const char *hit = p->i < p->n && p->s[p->i] ? strchr(from, p->s[p->i]) : NULL;
    if (hit) return p->i++, enc[0] = to[hit - from], 1;
    if (p->i >= p->n || p->s[p->i] != 'u') return perr(p, "unknown escape \\%s", describe(p, b, sizeof b)), 0;
    p->i++;
    unsigned u, lo;
    if (!hex4(p, &u)) return 0;
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (p->i + 1 >= p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
            return perr(p, "unpaired surrogate \\u%04x", u), 0;
        p->i += 2;
        if (!hex4(p, &lo)) return 0;
        if (lo < 0xDC00 || lo > 0xDFFF) return perr(p, "unpaired surrogate \\u%04x", u), 0;
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
    } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return perr(p, "unpaired surrogate \\u%04x", u), 0;
    }
    if (u == 0) return perr(p, "\\u0000 cannot appear in a name or value"), 0;
    if (u < 0x80) return enc[0] = (char)u, 1;
    if (u < 0x800) return enc[0] = (char)(0xC0 | u >> 6), enc[1] = (char)(0x80 | (u & 0x3F)), 2;
    if (u < 0x10000) {
        enc[0] = (char)(0xE0 | u >> 12), enc[1] = (char)(0x80 | ((u >> 6) & 0x3F));
        enc[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    enc[0] = (char)(0xF0 | u >> 18), enc[1] = (char)(0x80 | ((u >> 12) & 0x3F));
    enc[2] = (char)(0x80 | ((u >> 6) & 0x3F)), enc[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

/* A JSON string, unescaped into a new NUL-terminated UTF-8 string. */
static char *parse_string(parser *p)
{
    if (!expect(p, '"')) return NULL;
    size_t start = p->i, cap = 16, len = 0;
    char *out = ad_malloc(cap);
    if (!out) return perr(p, "out of memory"), NULL;
    while (!p->failed) {
        if (p->i >= p->n) { perr(p, "unterminated string"); break; }
        unsigned char c = (unsigned char)p->s[p->i];
        char enc[4];
        size_t k = 1;
        if (c == '"') { p->i++; break; }
        if (c < 0x20) { perr(p, "control character 0x%02x inside a string", c); break; }
        p->i++;
        if (c != '\\') enc[0] = (char)c;
        else if (!(k = unescape(p, enc))) break;
        if (len + k + 1 > cap) {
            char *q = ad_realloc(out, cap *= 2);
            if (!q) { perr(p, "out of memory"); break; }
            out = q;
        }
        memcpy(out + len, enc, k);
        len += k;
    }
    if (!p->failed) {
        out[len] = 0;
        if (utf8_valid((unsigned char *)out, len)) return out;
        p->i = start;
        perr(p, "string is not valid UTF-8");
    }
    ad_free(out);
    return NULL;
}

/* A non-negative integer as JSON writes it: no sign, no leading zero, no fraction. */
static bool parse_uint(parser *p, uint64_t *v, const char *what)
{
    char b[32];
    skip_ws(p);
    size_t start = p->i;
    for (*v = 0; p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; p->i++) {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (*v > (UINT64_MAX - d) / 10) return perr(p, "%s is too large", what);
        *v = *v * 10 + d;
    }
    if (p->i == start) return perr(p, "expected %s (a non-negative integer), found %s", what, describe(p, b, sizeof b));
    if (p->s[start] == '0' && p->i - start > 1) return p->i = start, perr(p, "%s has a leading zero", what);
    if (p->i < p->n && strchr(".eE", p->s[p->i]) && p->s[p->i]) return perr(p, "%s must be an integer", what);
    return true;
}

static bool parse_shape(parser *p, entry *e)
{
    bool another;
    if (!open_bracket(p, '[', ']', &another)) return false;
    for (e->shape.rank = 0; another;) {
        uint64_t d;
        if (e->shape.rank == AD_MAX_RANK) return perr(p, "tensor \"%s\": more than %d dimensions", e->name, AD_MAX_RANK);
        if (!parse_uint(p, &d, "a dimension")) return false;
        if (d > (uint64_t)INT64_MAX) return perr(p, "tensor \"%s\": dimension %llu is too large", e->name, (unsigned long long)d);
        e->shape.dim[e->shape.rank++] = (int64_t)d;
        if (!next_member(p, ']', &another)) return false;
    }
    return true;
}

/* {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, each key exactly once. */
static bool parse_tensor(parser *p, entry *e)
{
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    bool seen[3] = {false, false, false}, another;
    if (!open_bracket(p, '{', '}', &another)) return false;
    while (another) {
        size_t at = (skip_ws(p), p->i);
        char *key = parse_string(p);
        if (!key) return false;
        int k = 0;
        while (k < 3 && strcmp(key, keys[k])) k++;
        if (k == 3) p->i = at, perr(p, "tensor \"%s\": unknown key \"%s\"", e->name, key);
        else if (seen[k]) p->i = at, perr(p, "tensor \"%s\": key \"%s\" appears twice", e->name, key);
        ad_free(key);
        if (p->failed) return false;
        seen[k] = true;
        if (!expect(p, ':')) return false;
        if (k == 0) {
            at = (skip_ws(p), p->i);
            char *dt = parse_string(p);
            if (!dt) return false;
            if (!strcmp(dt, "F32") || !strcmp(dt, "F64")) e->dtype = dt[1] == '3' ? AD_F32 : AD_F64;
            else if (!strcmp(dt, "I64")) e->dtype = AD_F64, e->int64 = true;
            else p->i = at, perr(p, "tensor \"%s\": dtype \"%s\" is not supported (only F32, F64 and I64)", e->name, dt);
            ad_free(dt);
        } else if (k == 1) {
            parse_shape(p, e);
        } else if (expect(p, '[') && parse_uint(p, &e->begin, "an offset") && expect(p, ',')) {
            if (parse_uint(p, &e->end, "an offset")) expect(p, ']');
        }
        if (p->failed || !next_member(p, '}', &another)) return false;
    }
    for (int k = 0; k < 3; k++)
        if (!seen[k]) return perr(p, "tensor \"%s\": key \"%s\" is missing", e->name, keys[k]);
    return true;
}

/* "__metadata__": {"key": "value", ...}: strings only, as the format says. */
static bool parse_meta(parser *p, ad_tensor_file *f)
{
    bool another;
    if (!open_bracket(p, '{', '}', &another)) return false;
    while (another) {
        if (f->nmeta == f->metacap) {
            int cap = f->metacap ? 2 * f->metacap : 8;
            meta_pair *m = ad_realloc(f->meta, (size_t)cap * sizeof *m);
            if (!m) return perr(p, "out of memory");
            f->meta = m, f->metacap = cap;
        }
        meta_pair *m = &f->meta[f->nmeta];
        m->pos = (skip_ws(p), p->i);
        m->value = NULL;
        if (!(m->key = parse_string(p))) return false;
        f->nmeta++;
        if (!expect(p, ':')) return false;
        if (!at_char(p, '"')) return perr(p, "metadata \"%s\": the value must be a string", m->key);
        if (!(m->value = parse_string(p)) || !next_member(p, '}', &another)) return false;
    }
    return true;
}

static bool parse_header(parser *p, ad_tensor_file *f)
{
    bool another, seen_meta = false;
    char b[32];
    if (p->n == 0 || p->s[0] != '{') return perr(p, "the header must start with '{', found %s", describe(p, b, sizeof b));
    if (!open_bracket(p, '{', '}', &another)) return false;
    while (another) {
        size_t at = (skip_ws(p), p->i);
        char *name = parse_string(p);
        if (!name) return false;
        if (!strcmp(name, META_KEY)) {
            ad_free(name);
            if (seen_meta) return p->i = at, perr(p, "\"%s\" appears twice", META_KEY);
            seen_meta = true;
            if (!expect(p, ':') || !parse_meta(p, f)) return false;
        } else {
            if (f->n == f->cap) {
                int cap = f->cap ? 2 * f->cap : 8;
                entry *e = ad_realloc(f->e, (size_t)cap * sizeof *e);
                if (!e) return ad_free(name), perr(p, "out of memory");
                f->e = e, f->cap = cap;
            }
            entry *e = &f->e[f->n++];
            memset(e, 0, sizeof *e);
            e->name = name, e->pos = at;
            if (!expect(p, ':') || !parse_tensor(p, e)) return false;
        }
        if (!next_member(p, '}', &another)) return false;
    }
    skip_ws(p);
    if (p->i < p->n) return perr(p, "unexpected %s after the header's closing '}'", describe(p, b, sizeof b));
    return true;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(entry *const *)a)->name, (*(entry *const *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const meta_pair *)a)->key, ((const meta_pair *)b)->key);
}

/* Unique names and keys; sizes that fit; offsets that tile the data section exactly (the
 * reference implementation's rule), all before any tensor is allocated.  Sorting keeps this
 * O(n log n) however many entries a hostile header holds. */
static bool check_entries(parser *p, ad_tensor_file *f, uint64_t dsize, entry **order)
{
    for (int i = 0; i < f->n; i++) f->by_name[i] = order[i] = &f->e[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name)) {
            entry *later = f->by_name[i - 1]->pos > f->by_name[i]->pos ? f->by_name[i - 1] : f->by_name[i];
            return p->i = later->pos, perr(p, "tensor name \"%s\" appears twice", later->name);
        }
    if (f->nmeta > 1) qsort(f->meta, (size_t)f->nmeta, sizeof *f->meta, cmp_meta);
    for (int i = 1; i < f->nmeta; i++)
        if (!strcmp(f->meta[i - 1].key, f->meta[i].key)) {
            size_t at = f->meta[i - 1].pos > f->meta[i].pos ? f->meta[i - 1].pos : f->meta[i].pos;
            return p->i = at, perr(p, "metadata key \"%s\" appears twice", f->meta[i].key);
        }
    for (int i = 0; i < f->n; i++) {
        entry *e = &f->e[i];
        char sb[160];
        int64_t count = ad_shape_size(&e->shape);
        uint64_t es = ad_dtype_size(e->dtype);
        p->i = e->pos;
        ad_shape_str(&e->shape, sb, sizeof sb);
        if (count < 0 || (uint64_t)count > UINT64_MAX / es)
            return perr(p, "tensor \"%s\": shape %s has too many elements", e->name, sb);
        if (e->end < e->begin)
            return perr(p, "tensor \"%s\": data_offsets [%llu,%llu] end before they begin", e->name,
                        (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->end - e->begin != (uint64_t)count * es)
            return perr(p, "tensor \"%s\": %s %s needs %llu bytes but data_offsets [%llu,%llu] hold %llu",
                        e->name, e->int64 ? "I64" : dtype_code(e->dtype), sb, (unsigned long long)((uint64_t)count * es),
                        (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)(e->end - e->begin));
        if (e->end > dsize)
            return perr(p, "tensor \"%s\": data_offsets [%llu,%llu] reach past the %llu bytes of data (truncated file?)",
                        e->name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)dsize);
    }
    qsort(order, (size_t)f->n, sizeof *order, cmp_offset);
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (order[i]->begin != at)
            return p->i = order[i]->pos,
                   perr(p, "tensor \"%s\": data begins at %llu, expected %llu (a gap or an overlap)",
                        order[i]->name, (unsigned long long)order[i]->begin, (unsigned long long)at);
        at = order[i]->end;
    }
    if (at != dsize)
        return p->i = 0, perr(p, "the tensors cover %llu bytes of data but %llu follow the header",
                              (unsigned long long)at, (unsigned long long)dsize);
    return true;
}

static bool read_le(FILE *in, void *data, size_t es, size_t count)
{
    if (fread(data, es, count, in) != count) return false;
    if (!host_is_le())
        for (unsigned char *q = data, *end = q + es * count; q < end; q += es)
            for (size_t j = 0; j < es / 2; j++) {
                unsigned char t = q[j];
                q[j] = q[es - 1 - j], q[es - 1 - j] = t;
            }
    return true;
}

void ad_tensor_file_free(ad_tensor_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        ad_free(f->e[i].name);
        ad_tensor_free(f->e[i].t);
    }
    for (int i = 0; i < f->nmeta; i++) ad_free(f->meta[i].key), ad_free(f->meta[i].value);
    ad_free(f->e), ad_free(f->by_name), ad_free(f->meta);
    ad_free(f);
}

/* Reads, checks and allocates in that order; everything read so far is freed on failure. */
ad_tensor_file *ad_safetensors_load(const char *path, char *err, size_t errlen)
{
    const char *fn = "ad_safetensors_load";
    char eb[128];
    if (!path) return ad_errorf(err, errlen, NULL, "%s: path is NULL", fn), NULL;
    char why[160];
    FILE *in = ad_fopen_regular(path, why, sizeof why);
    if (!in) return ad_errorf(err, errlen, NULL, "%s: %s: %s", fn, path, why), NULL;
    struct stat st;
    unsigned char len8[8];
    uint64_t hlen = 0, fsize;
    parser p = {.path = path, .err = err, .errlen = errlen};
    ad_tensor_file *f = NULL;
    char *hdr = NULL;
    entry **order = NULL;
    if (fstat(fileno(in), &st) != 0) {
        ad_errorf(err, errlen, NULL, "%s: %s: cannot read its size: %s", fn, path, errno_str(errno, eb, sizeof eb));
        goto fail;
    }
    fsize = (uint64_t)st.st_size;
    if (fsize < 8 || fread(len8, 1, 8, in) != 8) {
        ad_errorf(err, errlen, NULL, "%s: %s: %llu bytes, too short for the 8-byte header length", fn, path, (unsigned long long)fsize);
        goto fail;
    }
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > fsize - 8 || hlen > MAX_HEADER) {
        ad_errorf(err, errlen, NULL, "%s: %s: header length %llu exceeds %s (%llu bytes)", fn, path, (unsigned long long)hlen,
                hlen > fsize - 8 ? "the rest of the file" : "the 100 MB limit",
                (unsigned long long)(hlen > fsize - 8 ? fsize - 8 : MAX_HEADER));
        goto fail;
    }
    hdr = ad_malloc(hlen ? (size_t)hlen : 1);
    f = ad_calloc(1, sizeof *f);
    if (!hdr || !f) {
        ad_errorf(err, errlen, NULL, "%s: %s: out of memory for a %llu-byte header", fn, path, (unsigned long long)hlen);
        goto fail;
    }
    if (fread(hdr, 1, (size_t)hlen, in) != hlen) {
        ad_errorf(err, errlen, NULL, "%s: %s: short read of the header", fn, path);
        goto fail;
    }
    p.s = hdr, p.n = (size_t)hlen;
    if (!parse_header(&p, f)) goto fail;
    f->by_name = ad_malloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    order = ad_malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!f->by_name || !order) {
        ad_errorf(err, errlen, NULL, "%s: %s: out of memory", fn, path);
        goto fail;
    }
    if (!check_entries(&p, f, fsize - 8 - hlen, order)) goto fail;
    for (int i = 0; i < f->n; i++) {
        entry *e = order[i];
        if (!(e->t = ad_tensor_new(e->dtype, e->shape))) {
            ad_errorf(err, errlen, NULL, "%s: %s: out of memory for tensor \"%s\"", fn, path, e->name);
            goto fail;
        }
        if (!read_le(in, ad_tensor_data(e->t), ad_dtype_size(e->dtype), (size_t)ad_tensor_size(e->t))) {
            ad_errorf(err, errlen, NULL, "%s: %s: short read of tensor \"%s\" (did the file change?)", fn, path, e->name);
            goto fail;
        }
        if (e->int64) { /* same width: converted in place, exactly below 2^53 */
            double *d = ad_tensor_data(e->t);
            for (int64_t j = 0; j < ad_tensor_size(e->t); j++) {
                int64_t v;
                memcpy(&v, &d[j], sizeof v);
                d[j] = (double)v;
            }
        }
    }
    ad_free(order), ad_free(hdr);
    fclose(in);
    return f;
fail:
    ad_free(order), ad_free(hdr);
    ad_tensor_file_free(f);
    fclose(in);
    return NULL;
}

int ad_tensor_file_count(const ad_tensor_file *f) { return f ? f->n : 0; }

const char *ad_tensor_file_name(const ad_tensor_file *f, int i)
{
    return f && i >= 0 && i < f->n ? f->e[i].name : NULL;
}

ad_tensor *ad_tensor_file_tensor(const ad_tensor_file *f, int i)
{
    return f && i >= 0 && i < f->n ? f->e[i].t : NULL;
}

ad_tensor *ad_tensor_file_find(const ad_tensor_file *f, const char *name)
{
    if (!f || !name || !f->n) return NULL;
    entry key = {.name = (char *)name}, *kp = &key;
    entry **hit = bsearch(&kp, f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_name);
    return hit ? (*hit)->t : NULL;
}

const char *ad_tensor_file_meta(const ad_tensor_file *f, const char *key)
{
    if (!f || !key || !f->nmeta) return NULL;
    meta_pair k = {.key = (char *)key};
    meta_pair *hit = bsearch(&k, f->meta, (size_t)f->nmeta, sizeof *f->meta, cmp_meta);
    return hit ? hit->value : NULL;
}

int ad_tensor_file_meta_count(const ad_tensor_file *f) { return f ? f->nmeta : 0; }

const char *ad_tensor_file_meta_key(const ad_tensor_file *f, int i)
{
    return f && i >= 0 && i < f->nmeta ? f->meta[i].key : NULL;
}
