/* The safetensors format: an atomic writer and a loader that trusts nothing it reads.
 *
 * The loader parses the JSON header with a small parser that accepts exactly the grammar a
 * safetensors header needs (an object of tensor entries and an optional "__metadata__" object
 * of strings) and is strict about everything else JSON says: escapes, UTF-8, numbers, commas.
 * It checks all offsets before it allocates a tensor, so a corrupt shape cannot make it
 * allocate more than the file holds. */
#include "ad_io.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER 100000000ull /* 100 MB, the limit of the reference implementation */
#define META_KEY "__metadata__"

static void set_err(char *err, size_t len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

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
        char *p = realloc(b->p, cap);
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
    const char **v = malloc((size_t)k * sizeof *v);
    if (!v) { *oom = true; return NULL; }
    for (int i = 0; i < k; i++) v[i] = s[(size_t)i * (size_t)stride];
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    const char *dup = NULL;
    for (int i = 1; i < k && !dup; i++)
        if (!strcmp(v[i - 1], v[i])) dup = v[i];
    free(v);
    return dup;
}

static ad_status check_save_args(const char *path, int n, const char *const *names,
                                 ad_tensor *const *ts, int nmeta, const char *const *meta,
                                 char *err, size_t len)
{
    const char *fn = "ad_safetensors_save";
    if (!path) return set_err(err, len, "%s: path is NULL", fn), AD_ERR_NULL;
    if (n < 0 || nmeta < 0)
        return set_err(err, len, "%s: %s: negative count (%d tensors, %d metadata pairs)", fn, path, n, nmeta), AD_ERR_ARG;
    if (n > 0 && (!names || !ts))
        return set_err(err, len, "%s: %s: %s is NULL for %d tensors", fn, path, names ? "tensors" : "names", n), AD_ERR_NULL;
    if (nmeta > 0 && !meta)
        return set_err(err, len, "%s: %s: meta is NULL for %d pairs", fn, path, nmeta), AD_ERR_NULL;
    for (int i = 0; i < n; i++) {
        if (!names[i] || !ts[i])
            return set_err(err, len, "%s: %s: %s %d is NULL", fn, path, names[i] ? "tensor" : "name", i), AD_ERR_NULL;
        if (!names[i][0] || !strcmp(names[i], META_KEY) || !utf8_valid((const unsigned char *)names[i], strlen(names[i])))
            return set_err(err, len, "%s: %s: tensor %d: name \"%s\" is empty, reserved or not UTF-8", fn, path, i, names[i]), AD_ERR_ARG;
    }
    for (int i = 0; i < 2 * nmeta; i++) {
        if (!meta[i])
            return set_err(err, len, "%s: %s: metadata %s %d is NULL", fn, path, i % 2 ? "value" : "key", i / 2), AD_ERR_NULL;
        if (!utf8_valid((const unsigned char *)meta[i], strlen(meta[i])))
            return set_err(err, len, "%s: %s: metadata %s %d is not UTF-8", fn, path, i % 2 ? "value" : "key", i / 2), AD_ERR_ARG;
    }
    bool oom1, oom2;
    const char *d1 = first_duplicate(names, n, 1, &oom1), *d2 = first_duplicate(meta, nmeta, 2, &oom2);
    if (oom1 || oom2) return set_err(err, len, "%s: %s: out of memory", fn, path), AD_ERR_NOMEM;
    if (d1) return set_err(err, len, "%s: %s: tensor name \"%s\" appears twice", fn, path, d1), AD_ERR_ARG;
    if (d2) return set_err(err, len, "%s: %s: metadata key \"%s\" appears twice", fn, path, d2), AD_ERR_ARG;
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

/* mkstemp creates files with mode 0600; a replaced file keeps its bits, a new one gets what
 * open(0666) would have given.  The umask is read from /proc because umask() can only be read
 * by setting it, which races with other threads creating files. */
static mode_t target_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return st.st_mode & 07777;
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned m;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Umask: %o", &m) == 1) { mask = (mode_t)m; break; }
        fclose(f);
    }
    return 0666 & ~mask;
}

/* Best effort: makes the rename itself durable.  Failure is not an error, the file is whole. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? malloc((size_t)(slash - path) + 2) : NULL;
    if (slash && !dir) return;
    if (dir) {
        size_t l = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, l);
        dir[l] = 0;
    }
    int fd = open(dir ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

ad_status ad_safetensors_save(const char *path, int n, const char *const *names,
                              ad_tensor *const *tensors, int nmeta, const char *const *meta,
                              char *err, size_t errlen)
{
    const char *fn = "ad_safetensors_save";
    ad_status st = check_save_args(path, n, names, tensors, nmeta, meta, err, errlen);
    if (st) return st;
    sbuf h = {0};
    size_t tlen = strlen(path) + sizeof ".tmp-XXXXXX";
    char *tmp = malloc(tlen), eb[128];
    if (!build_header(&h, n, names, tensors, nmeta, meta) || !tmp) {
        free(h.p), free(tmp);
        set_err(err, errlen, "%s: %s: out of memory", fn, path);
        return AD_ERR_NOMEM;
    }
    snprintf(tmp, tlen, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s: cannot create a temporary file next to it: %s", fn, path, errno_str(errno, eb, sizeof eb));
        free(h.p), free(tmp);
        return AD_ERR_ARG;
    }
    FILE *f = fdopen(fd, "wb");
    const char *step = "open";
    bool ok = f != NULL;
    if (ok) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        step = "write";
        ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
        for (int i = 0; ok && i < n; i++)
            ok = write_le(f, ad_tensor_data(tensors[i]), ad_dtype_size(ad_tensor_dtype(tensors[i])),
                          (size_t)ad_tensor_size(tensors[i]));
        if (ok) step = "flush", ok = fflush(f) == 0;
        if (ok) step = "sync", ok = fsync(fileno(f)) == 0;
        if (ok) step = "chmod", ok = fchmod(fileno(f), target_mode(path)) == 0;
    }
    int e = errno;
    if (f) {
        if (fclose(f) != 0 && ok) ok = false, step = "close", e = errno;
    } else {
        close(fd);
    }
    if (ok) step = "rename", ok = rename(tmp, path) == 0, e = errno;
    if (!ok) {
        unlink(tmp);
        set_err(err, errlen, "%s: %s: %s failed: %s (the old file, if any, is untouched)", fn, path, step,
                errno_str(e, eb, sizeof eb));
    } else {
        sync_dir(path);
    }
    free(h.p), free(tmp);
    return ok ? AD_OK : AD_ERR_ARG;
}

