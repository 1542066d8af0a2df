/* The shared helpers of ad_io.h: error messages, XML text and atomic file writes, written once
 * for ad, nn, optim and the demos. */
#include "ad_io.h"
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ad_verrorf(char *err, size_t errlen, bool *failed, const char *prefix, const char *fmt,
                va_list ap)
{
    if (failed) {
        if (*failed) return;
        *failed = true;
    }
    if (!err || !errlen) return;
    int k = snprintf(err, errlen, "%s", prefix ? prefix : "");
    if (k >= 0 && (size_t)k < errlen) vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
}

void ad_errorf(char *err, size_t errlen, bool *failed, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(err, errlen, failed, NULL, fmt, ap);
    va_end(ap);
}

size_t ad_xml_escape(char *dst, size_t dstlen, const char *s)
{
    size_t n = 0;
    while (s && *s) {
        char one[5] = {*s, 0};
        int len = utf8_len(s);
        /* XML 1.0 admits neither U+FFFE nor U+FFFF, though they are well-formed UTF-8 */
        if (len == 3 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBF &&
            (unsigned char)s[2] >= 0xBE)
            len = 0;
        if (len > 1) memcpy(one, s, (size_t)len), one[len] = 0;
        const char *rep = !len ? UTF8_REPLACEMENT
                        : *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '"' ? "&quot;"
                        : (unsigned char)*s < 0x20 && *s != '\t' ? "?" : one;
        s += len ? len : 1;
        for (; *rep; rep++, n++)
            if (n + 1 < dstlen) dst[n] = *rep;
    }
    if (dstlen) dst[n < dstlen ? n : dstlen - 1] = 0;
    return n;
}

static const char *errno_str(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0) snprintf(buf, len, "error %d", e);
    return buf;
}

/* mkstemp creates files with mode 0600; a replaced file keeps its permission bits (not
 * set-id bits), a new one gets what open(0666) would have given.  The umask is read from /proc
 * because umask() can only be read by setting it, which races with other threads. */
static mode_t target_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return st.st_mode & 0777;
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

/* Best effort: makes the rename itself durable.  Failure is not an error, the file is whole.
 * buf (at least strlen(path) + 1 bytes) receives the folder's name. */
static void sync_dir(const char *path, char *buf)
{
    const char *slash = strrchr(path, '/');
    if (!slash) strcpy(buf, ".");
    else if (slash == path) strcpy(buf, "/");
    else memcpy(buf, path, (size_t)(slash - path)), buf[slash - path] = 0;
    int fd = open(buf, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

ad_status ad_write_atomic(const char *path, bool (*fill)(FILE *f, void *ctx), void *ctx, char *err,
                          size_t errlen)
{
    char eb[128];
    if (!path || !fill) {
        ad_errorf(err, errlen, NULL, "ad_write_atomic: %s is NULL", path ? "fill" : "path");
        errno = EINVAL;
        return AD_ERR_NULL;
    }
    size_t tlen = strlen(path) + sizeof ".tmp-XXXXXX";
    char *tmp = ad_malloc(tlen);
    if (!tmp) {
        ad_errorf(err, errlen, NULL, "%s: out of memory", path);
        errno = ENOMEM;
        return AD_ERR_NOMEM;
    }
    snprintf(tmp, tlen, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        ad_errorf(err, errlen, NULL, "%s: cannot create a temporary file next to it: %s", path,
                  errno_str(e, eb, sizeof eb));
        ad_free(tmp);
        errno = e;
        return AD_ERR_IO;
    }
    FILE *f = fdopen(fd, "wb");
    const char *step = "open";
    bool ok = f != NULL;
    if (ok) {
        step = "write";
        errno = 0;
        ok = fill(f, ctx);
        if (ok) step = "flush", ok = fflush(f) == 0;
        if (ok) step = "chmod", ok = fchmod(fileno(f), target_mode(path)) == 0;
        if (ok) step = "sync", ok = fsync(fileno(f)) == 0;
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
        if (!e) e = EIO; /* a fill that failed without a system error */
        ad_errorf(err, errlen, NULL, "%s: %s failed: %s (the old file, if any, is untouched)", path, step,
                  errno_str(e, eb, sizeof eb));
    } else {
        sync_dir(path, tmp);
    }
    ad_free(tmp);
    if (!ok) errno = e;
    return ok ? AD_OK : AD_ERR_IO;
}
