/* The shared helpers of ad_io.h: error messages, XML text and atomic file writes, written once
 * for ad, nn, optim and the demos. */
#define _DEFAULT_SOURCE /* flock, which locks per open file (so also between threads) */
#include "ad_io.h"
#include <dirent.h>
#include "internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

/* What a file that is not a regular file is, for messages. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symbolic link" : "a special file";
}

FILE *ad_fopen_regular(const char *path, char *why, size_t whylen)
{
    char eb[128];
    if (!path) {
        ad_errorf(why, whylen, NULL, "path is NULL");
        errno = EINVAL;
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        ad_errorf(why, whylen, NULL, "cannot open: %s", errno_str(e, eb, sizeof eb));
        errno = e;
        return NULL;
    }
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0) e = errno, ad_errorf(why, whylen, NULL, "cannot open: %s", errno_str(e, eb, sizeof eb));
    else if (!S_ISREG(st.st_mode)) e = EINVAL, ad_errorf(why, whylen, NULL, "not a regular file (%s)", file_kind(st.st_mode));
    /* reads of a regular file never block anyway; clearing the flag keeps stdio's reads plain */
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        e = errno, ad_errorf(why, whylen, NULL, "cannot open: %s", errno_str(e, eb, sizeof eb));
    FILE *f = e ? NULL : fdopen(fd, "rb");
    if (!f) {
        if (!e) e = errno, ad_errorf(why, whylen, NULL, "cannot open: %s", errno_str(e, eb, sizeof eb));
        close(fd);
        errno = e;
    }
    return f;
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

/* The file a save to path replaces: path itself, or for a symbolic link the file at the end of
 * its chain, as editors do, so the link survives and its target gets the new contents (which
 * need not exist yet).  NULL with errno set (ELOOP, ENOMEM, ...) on failure. */
static char *resolve_links(const char *path)
{
    size_t len = strlen(path);
    char *p = ad_malloc(len + 1);
    if (!p) return errno = ENOMEM, NULL;
    memcpy(p, path, len + 1);
    for (int hops = 0;; hops++) {
        struct stat st;
        if (lstat(p, &st) != 0 || !S_ISLNK(st.st_mode)) return p;
        if (hops == 40) { /* the kernel's own limit for a path's links */
            errno = ELOOP;
            break;
        }
        size_t cap = (size_t)st.st_size + 1 > 256 ? (size_t)st.st_size + 1 : 256;
        char *link = ad_malloc(cap);
        ssize_t k = link ? readlink(p, link, cap) : -1;
        if (k < 0 || (size_t)k >= cap) { /* changed meanwhile: the next round sees it again */
            ad_free(link);
            if (k < 0 && errno != EINVAL) break;
            continue;
        }
        /* a relative target is relative to the link's folder */
        const char *slash = link[0] == '/' ? NULL : strrchr(p, '/');
        size_t keep = slash ? (size_t)(slash - p) + 1 : 0;
        char *next = ad_malloc(keep + (size_t)k + 1);
        if (!next) {
            ad_free(link);
            break;
        }
        memcpy(next, p, keep);
        memcpy(next + keep, link, (size_t)k);
        next[keep + (size_t)k] = 0;
        ad_free(link);
        ad_free(p);
        p = next;
    }
    int e = errno;
    ad_free(p);
    errno = e ? e : ELOOP;
    return NULL;
}

/* The temporary files of target are named .NAME.tmp-XXXXXX next to it.  A save killed before
 * its rename leaves one behind; the next save to the same target removes those that no live
 * save holds (each writer keeps an exclusive lock on its own temporary file until it is
 * renamed).  Best effort: a file that cannot be examined is left alone. */
static void remove_stale_temps(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t blen = strlen(base), dlen = strlen(dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, blen) || strncmp(n + 1 + blen, ".tmp-", 5) || strlen(n + 6 + blen) != 6)
            continue;
        char *p = ad_malloc(dlen + strlen(n) + 2);
        if (!p) break;
        sprintf(p, "%s/%s", dir, n);
        int fd = open(p, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0) unlink(p);
        if (fd >= 0) close(fd);
        ad_free(p);
    }
    closedir(d);
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
    char *real = resolve_links(path);
    if (!real) {
        int e = errno;
        ad_errorf(err, errlen, NULL, "%s: %s", path,
                  e == ENOMEM ? "out of memory" : e == ELOOP ? "too many levels of symbolic links" : errno_str(e, eb, sizeof eb));
        errno = e;
        return e == ENOMEM ? AD_ERR_NOMEM : AD_ERR_IO;
    }
    /* rename would replace a FIFO, a socket or (as root) a device node and report success */
    struct stat st;
    if (lstat(real, &st) == 0 && !S_ISREG(st.st_mode)) {
        ad_errorf(err, errlen, NULL, "%s: not a regular file (%s): refusing to replace it", path, file_kind(st.st_mode));
        ad_free(real);
        errno = EINVAL;
        return AD_ERR_IO;
    }
    const char *slash = strrchr(real, '/');
    const char *base = slash ? slash + 1 : real;
    size_t dlen = slash ? (size_t)(slash - real) + 1 : 0;
    size_t tlen = strlen(real) + sizeof "/..tmp-XXXXXX";
    char *tmp = ad_malloc(tlen);
    if (!tmp) {
        ad_free(real);
        ad_errorf(err, errlen, NULL, "%s: out of memory", path);
        errno = ENOMEM;
        return AD_ERR_NOMEM;
    }
    /* the folder's name, for the clean-up ("/" for a file at the root) */
    snprintf(tmp, tlen, "%.*s", dlen > 1 ? (int)dlen - 1 : (int)dlen, real);
    remove_stale_temps(dlen ? tmp : ".", base);
    snprintf(tmp, tlen, "%.*s.%s.tmp-XXXXXX", (int)dlen, real, base);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        ad_errorf(err, errlen, NULL, "%s: cannot create a temporary file next to it: %s", path,
                  errno_str(e, eb, sizeof eb));
        ad_free(tmp), ad_free(real);
        errno = e;
        return AD_ERR_IO;
    }
    /* tells remove_stale_temps of other saves that this one lives; held on a second descriptor
     * until after the rename, since closing the stream would release it */
    int lock = dup(fd);
    if (lock >= 0) flock(lock, LOCK_EX | LOCK_NB);
    FILE *f = fdopen(fd, "wb");
    const char *step = "open";
    bool ok = f != NULL;
    if (ok) {
        step = "write";
        errno = 0;
        ok = fill(f, ctx);
        if (ok) step = "flush", ok = fflush(f) == 0;
        if (ok) step = "chmod", ok = fchmod(fileno(f), target_mode(real)) == 0;
        if (ok) step = "sync", ok = fsync(fileno(f)) == 0;
    }
    int e = errno;
    if (f) {
        if (fclose(f) != 0 && ok) ok = false, step = "close", e = errno;
    } else {
        close(fd);
    }
    if (ok) step = "rename", ok = rename(tmp, real) == 0, e = errno;
    if (lock >= 0) close(lock);
    if (!ok) {
        unlink(tmp);
        if (!e) e = EIO; /* a fill that failed without a system error */
        ad_errorf(err, errlen, NULL, "%s: %s failed: %s (the old file, if any, is untouched)", path, step,
                  errno_str(e, eb, sizeof eb));
    } else {
        sync_dir(real, tmp);
    }
    ad_free(tmp), ad_free(real);
    if (!ok) errno = e;
    return ok ? AD_OK : AD_ERR_IO;
}
