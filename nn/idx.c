/* IDX files (MNIST's format), plain or gzipped, and Fashion-MNIST.  Gzip goes through the
 * system's `gzip -dc` in a child process, so the library needs no zlib. */
#include "nn_data.h"
#include "ad_io.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* An IDX file read into memory: its element type, shape, and the raw big-endian data. */
typedef struct {
    int type, esize, rank;
    int64_t dim[AD_MAX_RANK], count;
    unsigned char *data;
} idx_raw;

typedef struct {
    const char *fn, *path;
    char *err;
    size_t errlen;
    bool failed;
} ctx;

static bool fail(ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static bool fail(ctx *c, const char *fmt, ...)
{
    char where[1024];
    snprintf(where, sizeof where, "%s: %s: ", c->fn, c->path);
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(c->err, c->errlen, &c->failed, where, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- a byte stream: the file, or gzip -dc's output ---- */

typedef struct { FILE *f; pid_t pid; } source;

/* Starts `gzip -dc` reading the opened file and writing to a pipe, its messages discarded (the
 * library prints nothing; the exit status says whether the data was good).  gzip gets the
 * descriptor, not the path, so it decompresses the very file that was checked. */
static bool open_gzip(ctx *c, source *s, FILE *file)
{
    int fds[2];
    if (pipe(fds) != 0) return fail(c, "cannot make a pipe for gzip: %s", strerror(errno));
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fileno(file), STDIN_FILENO);
    char *argv[] = {"gzip", "-dc", NULL};
    int rc = posix_spawnp(&s->pid, "gzip", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return fail(c, "cannot run gzip -dc to decompress it: %s", strerror(rc));
    }
    if (!(s->f = fdopen(fds[0], "rb"))) {
        close(fds[0]);
        waitpid(s->pid, NULL, 0);
        return fail(c, "out of memory");
    }
    return true;
}

static bool open_source(ctx *c, source *s)
{
    s->f = NULL, s->pid = 0;
    char why[160];
    FILE *f = ad_fopen_regular(c->path, why, sizeof why);
    if (!f) return fail(c, "%s", why);
    unsigned char m[2] = {0, 0};
    bool gz = fread(m, 1, 2, f) == 2 && m[0] == 0x1f && m[1] == 0x8b;
    /* rewound on the descriptor too: gzip reads it from its start */
    if (fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return fail(c, "cannot read: %s", strerror(errno));
    }
    if (!gz) {
        s->f = f;
        return true;
    }
    bool ok = open_gzip(c, s, f);
    fclose(f);
    return ok;
}

/* Closes the stream; for gzip, a non-zero exit means corrupt or truncated compressed data
 * (unless an error was found first and the pipe closed early, which kills gzip). */
static bool close_source(ctx *c, source *s)
{
    if (s->f) fclose(s->f);
    if (!s->pid) return !c->failed;
    int status = 0;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) continue;
    if (!c->failed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        return fail(c, "gzip -dc failed (%s %d): the compressed data is corrupt or truncated",
                    WIFEXITED(status) ? "exit status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return !c->failed;
}

/* ---- the format ---- */

static int type_size(int type)
{
    switch (type) {
    case 0x08: case 0x09: return 1; /* u8, i8 */
    case 0x0B: return 2;            /* i16 */
    case 0x0C: case 0x0D: return 4; /* i32, f32 */
    case 0x0E: return 8;            /* f64 */
    }
    return 0;
}

static double element(const idx_raw *r, int64_t i)
{
    const unsigned char *p = r->data + i * r->esize;
    uint64_t u = 0;
    for (int k = 0; k < r->esize; k++) u = u << 8 | p[k];
    switch (r->type) {
    case 0x08: return (double)u;
    case 0x09: return (double)(int8_t)u;
    case 0x0B: return (double)(int16_t)u;
    case 0x0C: return (double)(int32_t)(uint32_t)u;
    case 0x0D: { uint32_t b = (uint32_t)u; float f; memcpy(&f, &b, 4); return (double)f; }
    default: { double d; memcpy(&d, &u, 8); return d; }
    }
}

/* Reads the header, then exactly the data it promises: no more, no less.  The buffer grows as
 * data arrives, so a corrupt header cannot make it allocate more than the stream delivers. */
static bool read_idx(ctx *c, idx_raw *r)
{
    memset(r, 0, sizeof *r);
    source s;
    if (!open_source(c, &s)) return false;
    unsigned char h[4 + 4 * AD_MAX_RANK];
    size_t got = fread(h, 1, 4, s.f);
    if (got < 4) fail(c, "byte %zu: the file ends inside the 4-byte magic number", got);
    else if (h[0] || h[1]) fail(c, "byte 0: magic number starts 0x%02x%02x, not 0x0000: not an IDX file", h[0], h[1]);
    else if (!(r->esize = type_size(r->type = h[2]))) fail(c, "byte 2: unknown data type 0x%02x (IDX types are 0x08, 0x09 and 0x0B-0x0E)", h[2]);
    else if (h[3] < 1 || h[3] > AD_MAX_RANK) fail(c, "byte 3: %d dimensions (1 to %d supported)", h[3], AD_MAX_RANK);
    else if ((r->rank = h[3]), (got = fread(h + 4, 4, (size_t)r->rank, s.f)) < (size_t)r->rank)
        fail(c, "byte %zu: the file ends inside the dimensions", 4 + 4 * got);
    uint64_t bytes = 0;
    if (!c->failed) {
        uint64_t count = 1;
        for (int i = 0; i < r->rank; i++) {
            const unsigned char *q = h + 4 + 4 * i;
            r->dim[i] = (int64_t)((uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3]);
            if (r->dim[i] && count > (UINT64_MAX / 8) / (uint64_t)r->dim[i]) {
                fail(c, "byte %d: dimensions too large", 4 + 4 * i);
                break;
            }
            count *= (uint64_t)r->dim[i];
        }
        r->count = (int64_t)count;
        bytes = count * (uint64_t)r->esize;
        if (!c->failed && bytes > SIZE_MAX / 2) fail(c, "byte 4: %llu data bytes do not fit in memory", (unsigned long long)bytes);
    }
    size_t have = 0, cap = 0, start = 4 + 4 * (size_t)r->rank;
    while (!c->failed && have < bytes) {
        size_t want = bytes - have < (1u << 20) ? (size_t)(bytes - have) : (1u << 20);
        if (have + want > cap) {
            size_t nc = cap ? 2 * cap : (1u << 20);
            if (nc > bytes) nc = (size_t)bytes;
            unsigned char *p = ad_realloc(r->data, nc);
            if (!p) { fail(c, "out of memory for %llu bytes of data", (unsigned long long)bytes); break; }
            r->data = p, cap = nc;
        }
        size_t k = fread(r->data + have, 1, want, s.f);
        have += k;
        if (k < want) fail(c, "byte %zu: the file ends after %zu of the %llu data bytes its header promises",
                           start + have, have, (unsigned long long)bytes);
    }
    if (!c->failed && fgetc(s.f) != EOF) fail(c, "byte %zu: data continues past the %llu bytes the header promises", start + have,
                                              (unsigned long long)bytes);
    if (!close_source(c, &s)) {
        ad_free(r->data);
        r->data = NULL;
        return false;
    }
    return true;
}

static void store_all(const idx_raw *r, ad_tensor *t, double scale)
{
    void *out = ad_tensor_data(t);
    if (ad_tensor_dtype(t) == AD_F32)
        for (int64_t i = 0; i < r->count; i++) ((float *)out)[i] = (float)(element(r, i) * scale);
    else
        for (int64_t i = 0; i < r->count; i++) ((double *)out)[i] = element(r, i) * scale;
}

ad_tensor *nn_idx_load(const char *path, ad_dtype t, char *err, size_t errlen)
{
    ctx c = {"nn_idx_load", path ? path : "(null)", err, errlen, false};
    if (!path) return fail(&c, "path is NULL"), NULL;
    if (t != AD_F32 && t != AD_F64) return fail(&c, "unknown dtype %d", (int)t), NULL;
    idx_raw r;
    if (!read_idx(&c, &r)) return NULL;
    ad_shape s = {.rank = r.rank};
    for (int i = 0; i < r.rank; i++) s.dim[i] = r.dim[i];
    ad_tensor *x = ad_tensor_new(t, s);
    if (x) store_all(&r, x, 1.0);
    else fail(&c, "out of memory");
    ad_free(r.data);
    return x;
}

nn_dataset *nn_idx_dataset(const char *images, const char *labels, ad_dtype t, double scale,
                           char *err, size_t errlen)
{
    ctx ci = {"nn_idx_dataset", images ? images : "(null)", err, errlen, false};
    ctx cl = {"nn_idx_dataset", labels ? labels : "(null)", err, errlen, false};
    if (!images || !labels) return fail(images ? &cl : &ci, "path is NULL"), NULL;
    if (t != AD_F32 && t != AD_F64) return fail(&ci, "unknown dtype %d", (int)t), NULL;
    idx_raw ri, rl;
    if (!read_idx(&ci, &ri)) return NULL;
    if (!read_idx(&cl, &rl)) return ad_free(ri.data), NULL;
    nn_dataset *d = NULL;
    int64_t dim = ri.dim[0] ? ri.count / ri.dim[0] : 0;
    if (ri.rank < 2 || ri.dim[0] < 1 || dim < 1 || dim > INT32_MAX) fail(&ci, "expected images [n, rows, cols], found %d dimension(s) or an empty one", ri.rank);
    else if (rl.rank != 1) fail(&cl, "expected a 1-dimensional label file, found %d dimensions", rl.rank);
    else if (rl.dim[0] != ri.dim[0]) fail(&cl, "%lld labels for %lld images in %s", (long long)rl.dim[0], (long long)ri.dim[0], images);
    else if (!(d = nn_dataset_new(ri.dim[0], (int)dim, t, 0))) fail(&ci, "out of memory");
    for (int64_t i = 0; d && i < rl.count; i++) {
        double v = element(&rl, i);
        if (!(v >= 0 && v < INT32_MAX && v == floor(v))) {
            fail(&cl, "byte %lld: label %g is not a class id (a non-negative integer)", (long long)(8 + i * rl.esize), v);
            nn_dataset_free(d), d = NULL;
            break;
        }
        d->labels[i] = (int32_t)v;
        if (d->labels[i] >= d->classes) d->classes = d->labels[i] + 1;
    }
    if (d) store_all(&ri, d->x, scale);
    ad_free(ri.data), ad_free(rl.data);
    return d;
}

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

const char *nn_fashion_mnist_class(int k) { return k >= 0 && k < 10 ? fashion_classes[k] : NULL; }

/* "<dir>/<name>.gz", or "<dir>/<name>" as unpacked by hand. */
static bool find_file(const char *dir, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s.gz", dir, name);
    if (access(out, R_OK) == 0) return true;
    snprintf(out, len, "%s/%s", dir, name);
    if (access(out, R_OK) == 0) return true;
    snprintf(out, len, "%s/%s.gz", dir, name);
    return false;
}

nn_dataset *nn_fashion_mnist(const char *dir, bool train, ad_dtype t, char *err, size_t errlen)
{
    const char *d = dir ? dir : NN_FASHION_MNIST_DIR, *set = train ? "train" : "t10k";
    char name[64], images[4096], labels[4096];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", set);
    bool ok = find_file(d, name, images, sizeof images);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", set);
    ok = find_file(d, name, labels, sizeof labels) && ok;
    if (!ok) {
        if (err && errlen)
            snprintf(err, errlen, "nn_fashion_mnist: %s not found: install the Fashion-MNIST files with "
                     "`sudo apt-get install dataset-fashion-mnist` (Debian; they go to %s), or pass the folder that holds them",
                     access(images, R_OK) == 0 ? labels : images, NN_FASHION_MNIST_DIR);
        return NULL;
    }
    nn_dataset *ds = nn_idx_dataset(images, labels, t, 1.0 / 255.0, err, errlen);
    if (ds && (ds->dim != 28 * 28 || ds->classes > 10)) {
        if (err && errlen)
            snprintf(err, errlen, "nn_fashion_mnist: %s: %d features and %d classes, not 28x28 images of 10 classes", images,
                     ds->dim, ds->classes);
        nn_dataset_free(ds);
        return NULL;
    }
    return ds;
}
