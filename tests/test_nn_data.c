/* Datasets: the split, standardisation, minibatches (coverage, order, seeds, no allocation),
 * and the CSV and IDX loaders on small files written here, plain and gzipped, with the exact
 * messages their errors must give. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "testutil.h"
#include "nn_data.h"
#include "nn.h"
#include "optim.h"
#include <sys/resource.h>
#include <sys/stat.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/nn_data_XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *file(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *name, const char *text) { write_file(file(name), text, strlen(text)); }

static void gzip_copy(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s'", from, to);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- datasets ---- */

/* Row i holds features (i, 10 + i) and label i % 3 (or target 0.5 i), so any row can be
 * traced back after shuffling. */
static nn_dataset *numbered(int n, bool regression)
{
    nn_dataset *d = nn_dataset_new(n, 2, AD_F64, regression ? 1 : 0);
    for (int i = 0; i < n; i++) {
        ad_tensor_set(d->x, 2 * i, i);
        ad_tensor_set(d->x, 2 * i + 1, 10 + i);
        if (regression) ad_tensor_set(d->y, i, 0.5 * i);
        else d->labels[i] = i % 3;
    }
    d->classes = regression ? 0 : 3;
    return d;
}

START_TEST(split_partitions_the_rows)
{
    for (int reg = 0; reg < 2; reg++) {
        nn_dataset *d = numbered(10, reg), *tr, *va, *tr2, *va2;
        char err[256];
        ck_assert_int_eq(nn_dataset_split(d, 0.3, 1, &tr, &va, err, sizeof err), AD_OK);
        ck_assert_int_eq(va->n, 3);
        ck_assert_int_eq(tr->n, 7);
        int seen[10] = {0};
        nn_dataset *parts[2] = {tr, va};
        for (int p = 0; p < 2; p++)
            for (int64_t i = 0; i < parts[p]->n; i++) {
                int row = (int)ad_tensor_get(parts[p]->x, 2 * i);
                seen[row]++;
                ck_assert_double_eq(ad_tensor_get(parts[p]->x, 2 * i + 1), 10 + row);
                if (reg) ck_assert_double_eq(ad_tensor_get(parts[p]->y, i), 0.5 * row);
                else {
                    ck_assert_int_eq(parts[p]->labels[i], row % 3);
                    ck_assert_int_eq(parts[p]->classes, 3);
                }
            }
        for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);
        /* the same seed splits the same way; another seed (here) differently */
        ck_assert_int_eq(nn_dataset_split(d, 0.3, 1, &tr2, &va2, NULL, 0), AD_OK);
        for (int i = 0; i < 6; i++) ck_assert_double_eq(ad_tensor_get(va->x, i), ad_tensor_get(va2->x, i));
        nn_dataset_free(tr2), nn_dataset_free(va2);
        ck_assert_int_eq(nn_dataset_split(d, 0.3, 2, &tr2, &va2, NULL, 0), AD_OK);
        bool differ = false;
        for (int i = 0; i < 6; i += 2) differ |= ad_tensor_get(va->x, i) != ad_tensor_get(va2->x, i);
        ck_assert(differ);
        nn_dataset_free(tr2), nn_dataset_free(va2), nn_dataset_free(tr), nn_dataset_free(va);
        ck_assert_int_eq(nn_dataset_split(d, 0.01, 1, &tr, &va, err, sizeof err), AD_ERR_ARG);
        ck_assert_str_eq(err, "nn_dataset_split: a fraction of 0.01 of 10 rows leaves one part empty");
        ck_assert_ptr_null(tr);
        ck_assert_int_eq(nn_dataset_split(d, 1, 1, &tr, &va, err, sizeof err), AD_ERR_ARG);
        ck_assert_int_eq(nn_dataset_split(NULL, 0.5, 1, &tr, &va, err, sizeof err), AD_ERR_NULL);
        ck_assert_str_eq(err, "nn_dataset_split: dataset is NULL");
        nn_dataset_free(d);
    }
    ck_assert_ptr_null(nn_dataset_new(0, 2, AD_F64, 0));
    ck_assert_ptr_null(nn_dataset_new(3, 0, AD_F64, 0));
    nn_dataset_free(NULL);
}
END_TEST

START_TEST(standardisation_uses_training_statistics)
{
    /* column 0: 1 2 3 4 (mean 2.5, population variance 1.25); column 1: constant 7 */
    nn_dataset *d = nn_dataset_new(4, 2, AD_F32, 0), *other = nn_dataset_new(1, 2, AD_F32, 0);
    for (int i = 0; i < 4; i++) ad_tensor_set(d->x, 2 * i, i + 1), ad_tensor_set(d->x, 2 * i + 1, 7);
    ad_tensor_set(other->x, 0, 5), ad_tensor_set(other->x, 1, 8);
    nn_scaler s;
    char err[256];
    ck_assert_int_eq(nn_scaler_fit(&s, d, err, sizeof err), AD_OK);
    ck_assert_double_eq_tol(s.mean[0], 2.5, 1e-12);
    ck_assert_double_eq_tol(s.std[0], sqrt(1.25), 1e-12);
    ck_assert_double_eq(s.std[1], 1); /* constant: centred, not scaled */
    ck_assert_int_eq(nn_scaler_apply(&s, d, err, sizeof err), AD_OK);
    ck_assert_int_eq(nn_scaler_apply(&s, other, err, sizeof err), AD_OK);
    for (int i = 0; i < 4; i++) {
        ck_assert_double_eq_tol(ad_tensor_get(d->x, 2 * i), (i + 1 - 2.5) / sqrt(1.25), 1e-6);
        ck_assert_double_eq(ad_tensor_get(d->x, 2 * i + 1), 0);
    }
    ck_assert_double_eq_tol(ad_tensor_get(other->x, 0), (5 - 2.5) / sqrt(1.25), 1e-6);
    ck_assert_double_eq_tol(ad_tensor_get(other->x, 1), 1, 1e-6);
    nn_dataset *wide = nn_dataset_new(1, 3, AD_F32, 0);
    ck_assert_int_eq(nn_scaler_apply(&s, wide, err, sizeof err), AD_ERR_SHAPE);
    ck_assert_str_eq(err, "nn_scaler_apply: the scaler was fitted on 2 features, the dataset has 3");
    nn_scaler_free(&s);
    nn_dataset_free(d), nn_dataset_free(other), nn_dataset_free(wide);
}
END_TEST

/* Rows of one epoch, by their first feature. */
static int epoch_rows(nn_batches *it, int *rows, int64_t *sizes)
{
    nn_batch b;
    int k = 0, nb = 0;
    while (nn_batches_next(it, &b)) {
        sizes[nb++] = b.rows;
        for (int64_t r = 0; r < b.rows; r++) {
            rows[k] = (int)ad_tensor_get(b.x, 2 * r);
            ck_assert_double_eq(ad_tensor_get(b.x, 2 * r + 1), 10 + rows[k]);
            ck_assert_int_eq(b.labels[r], rows[k] % 3);
            ck_assert_ptr_null(b.y);
            k++;
        }
    }
    return nb;
}

START_TEST(batches_cover_each_row_once_per_epoch)
{
    nn_dataset *d = numbered(10, false);
    nn_batches *it = nn_batches_new(d, 4, false, 0, NULL, 0);
    int rows[10], again[10];
    int64_t sizes[4];
    ck_assert_int_eq(epoch_rows(it, rows, sizes), 3);
    ck_assert_int_eq(sizes[0], 4); ck_assert_int_eq(sizes[1], 4); ck_assert_int_eq(sizes[2], 2);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(rows[i], i); /* unshuffled: in order */
    nn_batches_free(it);

    it = nn_batches_new(d, 4, true, 7, NULL, 0);
    nn_batches *twin = nn_batches_new(d, 4, true, 7, NULL, 0);
    long before = ad_alloc_count();
    bool differ = false;
    for (int epoch = 0; epoch < 5; epoch++) {
        int seen[10] = {0};
        ck_assert_int_eq(epoch_rows(it, again, sizes), 3);
        for (int i = 0; i < 10; i++) seen[again[i]]++;
        for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);
        for (int i = 0; i < 10; i++) differ |= again[i] != rows[i];
        memcpy(rows, again, sizeof rows);
        ck_assert_int_eq(epoch_rows(twin, again, sizes), 3);
        for (int i = 0; i < 10; i++) ck_assert_int_eq(again[i], rows[i]); /* same seed, same batches */
    }
    ck_assert(differ);
    ck_assert_int_eq(ad_alloc_count(), before);
    nn_batches_free(it), nn_batches_free(twin);

    /* a batch larger than the data: one batch of everything */
    it = nn_batches_new(d, 64, false, 0, NULL, 0);
    ck_assert_int_eq(epoch_rows(it, rows, sizes), 1);
    ck_assert_int_eq(sizes[0], 10);
    nn_batches_free(it);
    nn_dataset_free(d);

    /* regression targets travel with their rows */
    d = numbered(5, true);
    it = nn_batches_new(d, 2, true, 3, NULL, 0);
    nn_batch b;
    while (nn_batches_next(it, &b)) {
        ck_assert_ptr_null(b.labels);
        for (int64_t r = 0; r < b.rows; r++) ck_assert_double_eq(ad_tensor_get(b.y, r), 0.5 * ad_tensor_get(b.x, 2 * r));
    }
    nn_batches_free(it);
    char err[128];
    ck_assert_ptr_null(nn_batches_new(d, 0, true, 1, err, sizeof err));
    ck_assert_str_eq(err, "nn_batches_new: batch size 0 must be >= 1");
    ck_assert_ptr_null(nn_batches_new(NULL, 4, true, 1, err, sizeof err));
    ck_assert_str_eq(err, "nn_batches_new: dataset is NULL");
    nn_dataset_free(d);
}
END_TEST

/* ---- CSV ---- */

START_TEST(csv_reads_what_spreadsheets_write)
{
    /* a byte-order mark, CRLF, a quoted header, spaces, blank lines, the label in the middle */
    write_text("iris.csv", "\xEF\xBB\xBF" "\"sepal, length\",species, width\r\n"
                           "5.1, 0 ,3.5\r\n"
                           "\r\n"
                           "-4.9e0,2,\"3.0\"\r\n"
                           "  6.25 ,1,1e-1\r\n");
    char err[256];
    nn_csv_opts o = {.header = true, .label = "species"};
    nn_dataset *d = nn_csv_load(file("iris.csv"), &o, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_int_eq(d->n, 3);
    ck_assert_int_eq(d->dim, 2);
    ck_assert_int_eq(d->classes, 3);
    const double x[6] = {5.1, 3.5, -4.9, 3.0, 6.25, 0.1};
    const int32_t y[3] = {0, 2, 1};
    for (int i = 0; i < 6; i++) ck_assert_double_eq(ad_tensor_get(d->x, i), x[i]);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(d->labels[i], y[i]);
    ck_assert_int_eq(ad_tensor_dtype(d->x), AD_F64);
    nn_dataset_free(d);

    /* no header, label last by negative index, semicolons, float32, regression */
    write_text("r.csv", "1;2;0.5\n3;4;-1.5\n");
    o = (nn_csv_opts){.label_col = -1, .sep = ';', .regression = true, .dtype = AD_F32};
    d = nn_csv_load(file("r.csv"), &o, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_int_eq(d->n, 2);
    ck_assert_ptr_null(d->labels);
    ck_assert_double_eq(ad_tensor_get(d->y, 1), -1.5);
    ck_assert_double_eq(ad_tensor_get(d->x, 2), 3);
    ck_assert_int_eq(ad_tensor_dtype(d->x), AD_F32);
    nn_dataset_free(d);

    /* defaults: label in column 0, "quoted ""escapes""" in a header */
    write_text("q.csv", "1,2\n0,4\n");
    d = nn_csv_load(file("q.csv"), NULL, err, sizeof err);
    ck_assert_int_eq(d->labels[0], 1);
    ck_assert_double_eq(ad_tensor_get(d->x, 1), 4);
    nn_dataset_free(d);
    write_text("e.csv", "\"a \"\"b\"\"\",y\n1,0\n");
    o = (nn_csv_opts){.header = true, .label = "y"};
    d = nn_csv_load(file("e.csv"), &o, err, sizeof err);
    ck_assert_ptr_nonnull(d);
    nn_dataset_free(d);
    o.label = "a \"b\"", o.regression = true;
    d = nn_csv_load(file("e.csv"), &o, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_double_eq(ad_tensor_get(d->y, 0), 1);
    nn_dataset_free(d);
}
END_TEST

typedef struct { const char *text; nn_csv_opts o; const char *want; } csv_case;

static const csv_case csv_bad[] = {
    {"a,b\n1,2\n3,x7\n", {.header = true}, "nn_csv_load: %s: line 3, column 3: \"x7\" is not a number"},
    {"1,2,3\n4,5\n", {0}, "nn_csv_load: %s: line 2: 2 fields, but line 1 has 3"},
    {"1,2\n\n4,5,6\n", {0}, "nn_csv_load: %s: line 3: 3 fields, but line 1 has 2"},
    {"1,\"2\n", {0}, "nn_csv_load: %s: line 1, column 3: unterminated quote"},
    {"1,\"2\"x\n", {0}, "nn_csv_load: %s: line 1, column 6: 'x' after a closing quote (expected ',' or the end of the line)"},
    {"1,,3\n", {0}, "nn_csv_load: %s: line 1, column 3: empty field"},
    {"a,b\n1,2\n", {.header = true, .label = "c"}, "nn_csv_load: %s: line 1: no column is named \"c\""},
    {"a,a\n1,2\n", {.header = true, .label = "a"}, "nn_csv_load: %s: line 1, column 3: two columns are named \"a\""},
    {"1,2\n", {.label = "a"}, "nn_csv_load: %s: line 1: a label column name (\"a\") needs a header row (.header = true)"},
    {"1.5,2\n", {0}, "nn_csv_load: %s: line 1, column 1: label \"1.5\" is not a class id (a non-negative integer; set .regression for real targets)"},
    {"2,2\n-1,2\n", {0}, "nn_csv_load: %s: line 2, column 1: label \"-1\" is not a class id"},
    {"1,2\nnan,2\n", {.regression = true}, "nn_csv_load: %s: line 2, column 1: label \"nan\" is not a number"},
    {"1,2\n3,inf\n", {0}, "nn_csv_load: %s: line 2, column 3: \"inf\" is not a number"},
    {"1,1e999\n", {0}, "\"1e999\" is not a number"},
    {"a,b\n", {.header = true}, "nn_csv_load: %s: no data rows"},
    {"", {0}, "nn_csv_load: %s: no data rows"},
    {"\n  \n", {0}, "no data rows"},
    {"1\n2\n", {0}, "nn_csv_load: %s: line 1: 1 column: need a label and at least one feature"},
    {"1,2\n", {.label_col = 2}, "nn_csv_load: %s: line 1: label column 2 is outside the 2 columns"},
    {"1,2\n", {.label_col = -3}, "label column -3 is outside the 2 columns"},
};

START_TEST(csv_errors_point_at_line_and_column)
{
    const csv_case *c = &csv_bad[_i];
    write_text("bad.csv", c->text);
    char err[512], want[512];
    snprintf(want, sizeof want, c->want, file("bad.csv"));
    ck_assert_ptr_null(nn_csv_load(file("bad.csv"), &c->o, err, sizeof err));
    ck_assert_msg(strstr(err, want) != NULL, "got \"%s\", want \"%s\"", err, want);
}
END_TEST

/* Issue 20, defect 12: subnormal numbers were refused; 1e300 became inf in a float32
 * dataset; text after a NUL byte was dropped without a word. */
START_TEST(csv_values_subnormal_float32_range_and_nul)
{
    char err[512];
    write_text("sub.csv", "1,4.9e-324\n0,-2.2250738585072014e-309\n1,1e-400\n");
    nn_dataset *d = nn_csv_load(file("sub.csv"), NULL, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    ck_assert_double_eq(ad_tensor_get(d->x, 0), 4.9e-324);
    ck_assert_double_eq(ad_tensor_get(d->x, 1), -2.2250738585072014e-309);
    ck_assert_double_eq(ad_tensor_get(d->x, 2), 0);
    nn_dataset_free(d);
    nn_csv_opts f32 = {.dtype = AD_F32, .regression = true};
    write_text("sub.csv", "1e-40,1e-45\n");
    ck_assert_msg((d = nn_csv_load(file("sub.csv"), &f32, err, sizeof err)) != NULL, "%s", err);
    ck_assert_double_eq(ad_tensor_get(d->x, 0), (float)1e-45);
    nn_dataset_free(d);

    char want[700];
    write_text("big.csv", "1,2\n3,-1e300\n");
    ck_assert_ptr_null(nn_csv_load(file("big.csv"), &f32, err, sizeof err));
    snprintf(want, sizeof want, "nn_csv_load: %s: line 2, column 3: \"-1e300\" is outside float32's range", file("big.csv"));
    ck_assert_str_eq(err, want);
    write_text("big.csv", "1,2\n3.5e38,1\n");
    ck_assert_ptr_null(nn_csv_load(file("big.csv"), &f32, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "line 2, column 1: label \"3.5e38\" is outside float32's range"));
    f32.dtype = AD_F64; /* the same file is fine in float64 */
    ck_assert_msg((d = nn_csv_load(file("big.csv"), &f32, err, sizeof err)) != NULL, "%s", err);
    nn_dataset_free(d);

    write_file(file("nul.csv"), "1,2\n3,4\0junk,5\n", 16);
    ck_assert_ptr_null(nn_csv_load(file("nul.csv"), NULL, err, sizeof err));
    snprintf(want, sizeof want, "nn_csv_load: %s: line 2, column 4: NUL byte", file("nul.csv"));
    ck_assert_msg(strstr(err, want) != NULL, "got \"%s\", want \"%s\"", err, want);
}
END_TEST

/* Issue 20, defect 12: running out of memory was reported as "no data rows".  Each allocation
 * of a load fails in turn: the load either succeeds or says it ran out of memory. */
START_TEST(csv_out_of_memory_is_reported)
{
    char text[4096] = "a,b,c\n";
    for (int i = 0; i < 200; i++) snprintf(text + strlen(text), sizeof text - strlen(text), "%d,%d.5,%d\n", i % 3, i, i);
    write_text("oom.csv", text);
    nn_csv_opts o = {.header = true};
    char err[512];
    long before = ad_alloc_count();
    nn_dataset *d = nn_csv_load(file("oom.csv"), &o, err, sizeof err);
    long total = ad_alloc_count() - before;
    ck_assert_msg(d != NULL, "%s", err);
    nn_dataset_free(d);
    for (long k = 1; k <= total; k++) {
        ad_fail_alloc_at(k);
        d = nn_csv_load(file("oom.csv"), &o, err, sizeof err);
        ad_fail_alloc_at(0);
        ck_assert_msg(d || strstr(err, "out of memory"), "allocation %ld of %ld: %s", k, total, err);
        nn_dataset_free(d);
    }
#ifndef UNDER_ASAN
    /* A line longer than the memory left: the line reader's own allocation fails (capped by
     * RLIMIT_DATA, which counts malloc's mmaps; ASan's allocator would not survive the cap). */
    enum { LONG = 32 << 20 };
    char *big = malloc(LONG);
    ck_assert_ptr_nonnull(big);
    memset(big, '1', LONG);
    big[1] = ',', big[LONG - 1] = '\n';
    write_file(file("long.csv"), big, LONG);
    free(big);
    long data_kb = 0;
    FILE *st = fopen("/proc/self/status", "r");
    char line[256];
    while (st && fgets(line, sizeof line, st)) sscanf(line, "VmData: %ld kB", &data_kb);
    if (st) fclose(st);
    ck_assert_int_gt(data_kb, 0);
    struct rlimit lim = {(rlim_t)(data_kb + 8192) * 1024, (rlim_t)(data_kb + 8192) * 1024};
    ck_assert_int_eq(setrlimit(RLIMIT_DATA, &lim), 0);
    ck_assert_ptr_null(nn_csv_load(file("long.csv"), NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "line 1: out of memory"), "%s", err);
#endif
}
END_TEST

START_TEST(csv_file_errors)
{
    char err[512];
    const char *p = file("missing.csv");
    ck_assert_ptr_null(nn_csv_load(p, NULL, err, sizeof err));
    char want[600];
    snprintf(want, sizeof want, "nn_csv_load: %s: cannot open: No such file or directory", p);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(nn_csv_load(NULL, NULL, err, sizeof err));
    ck_assert_str_eq(err, "nn_csv_load: (null): path is NULL");
    ck_assert_ptr_null(nn_csv_load(p, NULL, NULL, 0));
}
END_TEST

/* Issue 20, defect 8: a loader that opens before checking for a regular file blocks forever on
 * a FIFO without a writer.  Every loader is tried; the alarm turns a hang into a failure. */
START_TEST(loaders_refuse_a_fifo)
{
    const char *fifo = file("fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10);
    char err[512];
    ck_assert_ptr_null(nn_csv_load(fifo, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "nn_csv_load: ") && strstr(err, ": not a regular file (a FIFO)"), "%s", err);
    ck_assert_ptr_null(nn_idx_load(fifo, AD_F32, err, sizeof err));
    ck_assert_msg(strstr(err, "nn_idx_load: ") && strstr(err, ": not a regular file (a FIFO)"), "%s", err);
    ck_assert_ptr_null(nn_mlp_load(fifo, err, sizeof err));
    ck_assert_msg(strstr(err, "nn_mlp_load: ") && strstr(err, ": not a regular file (a FIFO)"), "%s", err);
    ad_tensor *w = ad_param_new("w", AD_F64, AD_SHAPE(2));
    optim_cfg c = optim_defaults(OPTIM_GD, 0.1);
    optim *o = optim_new(&w, 1, &c, NULL, 0);
    ck_assert_int_eq(optim_load(o, fifo), AD_ERR_IO);
    ck_assert_msg(strstr(optim_error(o), "optim_load: ") && strstr(optim_error(o), ": not a regular file (a FIFO)"), "%s",
                  optim_error(o));
    optim_free(o);
    ad_tensor_free(w);
    alarm(0);
}
END_TEST

/* ---- IDX ---- */

/* An IDX header: magic 0 0 type rank, then big-endian dimensions. */
static size_t idx_header(unsigned char *b, int type, int rank, const uint32_t *dims)
{
    b[0] = 0, b[1] = 0, b[2] = (unsigned char)type, b[3] = (unsigned char)rank;
    for (int i = 0; i < rank; i++)
        for (int k = 0; k < 4; k++) b[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    return 4 + 4 * (size_t)rank;
}

/* Three 2x2 images with pixels 0..11 scaled by 20, and labels 2, 0, 1. */
static void write_mnist_like(const char *images, const char *labels)
{
    unsigned char b[64];
    size_t h = idx_header(b, 0x08, 3, (uint32_t[]){3, 2, 2});
    for (int i = 0; i < 12; i++) b[h + (size_t)i] = (unsigned char)(20 * i);
    write_file(images, b, h + 12);
    h = idx_header(b, 0x08, 1, (uint32_t[]){3});
    b[h] = 2, b[h + 1] = 0, b[h + 2] = 1;
    write_file(labels, b, h + 3);
}

START_TEST(idx_plain_and_gzipped)
{
    write_mnist_like(file("img"), file("lab"));
    gzip_copy(file("img"), file("img.gz"));
    gzip_copy(file("lab"), file("lab.gz"));
    char err[512];
    for (int gz = 0; gz < 2; gz++) {
        ad_tensor *t = nn_idx_load(file(gz ? "img.gz" : "img"), AD_F64, err, sizeof err);
        ck_assert_msg(t != NULL, "%s", err);
        ad_shape s = ad_tensor_shape(t);
        ck_assert_int_eq(s.rank, 3);
        ck_assert_int_eq(s.dim[0], 3); ck_assert_int_eq(s.dim[1], 2); ck_assert_int_eq(s.dim[2], 2);
        for (int i = 0; i < 12; i++) ck_assert_double_eq(ad_tensor_get(t, i), 20 * i);
        ad_tensor_free(t);
        nn_dataset *d = nn_idx_dataset(file(gz ? "img.gz" : "img"), file(gz ? "lab.gz" : "lab"), AD_F32, 1 / 255.0, err, sizeof err);
        ck_assert_msg(d != NULL, "%s", err);
        ck_assert_int_eq(d->n, 3);
        ck_assert_int_eq(d->dim, 4);
        ck_assert_int_eq(d->classes, 3);
        ck_assert_int_eq(d->labels[0], 2); ck_assert_int_eq(d->labels[1], 0); ck_assert_int_eq(d->labels[2], 1);
        for (int i = 0; i < 12; i++) ck_assert_float_eq((float)ad_tensor_get(d->x, i), (float)(20 * i / 255.0));
        nn_dataset_free(d);
    }
}
END_TEST

START_TEST(idx_every_element_type)
{
    /* one value per type, big-endian by hand: i8 -5 = 0xFB; i16 -300 = 0xFED4; i32 -70000 =
     * 0xFFFEEE90; f32 1.5 = 0x3FC00000; f64 -2.25 = 0xC002000000000000 */
    struct { int type; unsigned char bytes[8]; size_t n; double want; } v[] = {
        {0x08, {0xFF}, 1, 255},
        {0x09, {0xFB}, 1, -5},
        {0x0B, {0xFE, 0xD4}, 2, -300},
        {0x0C, {0xFF, 0xFE, 0xEE, 0x90}, 4, -70000},
        {0x0D, {0x3F, 0xC0, 0x00, 0x00}, 4, 1.5},
        {0x0E, {0xC0, 0x02, 0, 0, 0, 0, 0, 0}, 8, -2.25},
    };
    char err[512];
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        unsigned char b[32];
        size_t h = idx_header(b, v[k].type, 2, (uint32_t[]){1, 1});
        memcpy(b + h, v[k].bytes, v[k].n);
        write_file(file("t.idx"), b, h + v[k].n);
        ad_tensor *t = nn_idx_load(file("t.idx"), AD_F64, err, sizeof err);
        ck_assert_msg(t != NULL, "type 0x%02x: %s", v[k].type, err);
        ck_assert_double_eq(ad_tensor_get(t, 0), v[k].want);
        ad_tensor_free(t);
    }
}
END_TEST

/* The loader's message must end with want (after "nn_idx_load: <path>: "). */
static void expect_idx_error(const char *path, const char *want)
{
    char err[512], full[800];
    ck_assert_ptr_null(nn_idx_load(path, AD_F32, err, sizeof err));
    snprintf(full, sizeof full, "nn_idx_load: %s: %s", path, want);
    ck_assert_msg(!strcmp(err, full) || (want[0] == '~' && strstr(err, want + 1)), "got \"%s\", want \"%s\"", err, full);
}

START_TEST(idx_errors_give_the_byte)
{
    unsigned char b[64];
    size_t h = idx_header(b, 0x08, 2, (uint32_t[]){2, 3});
    for (int i = 0; i < 6; i++) b[h + (size_t)i] = (unsigned char)i;
    size_t n = h + 6;
    const char *p = file("x.idx");
    /* every truncation is an error; so is a byte too many */
    for (size_t len = 0; len < n; len++) {
        write_file(p, b, len);
        char err[512];
        ck_assert_msg(nn_idx_load(p, AD_F32, err, sizeof err) == NULL, "cut at %zu loaded", len);
        ck_assert_ptr_nonnull(strstr(err, "nn_idx_load: "));
    }
    write_file(p, b, 2);
    expect_idx_error(p, "byte 2: the file ends inside the 4-byte magic number");
    write_file(p, b, 9);
    expect_idx_error(p, "byte 8: the file ends inside the dimensions");
    write_file(p, b, n - 2);
    expect_idx_error(p, "byte 16: the file ends after 4 of the 6 data bytes its header promises");
    b[n] = 9;
    write_file(p, b, n + 1);
    expect_idx_error(p, "byte 18: data continues past the 6 bytes the header promises");
    unsigned char bad[8] = {0x1f, 0x00, 0x08, 0x01, 0, 0, 0, 0};
    write_file(p, bad, 8);
    expect_idx_error(p, "byte 0: magic number starts 0x1f00, not 0x0000: not an IDX file");
    bad[0] = 0, bad[2] = 0x07;
    write_file(p, bad, 8);
    expect_idx_error(p, "byte 2: unknown data type 0x07 (IDX types are 0x08, 0x09 and 0x0B-0x0E)");
    bad[2] = 0x08, bad[3] = 0;
    write_file(p, bad, 8);
    expect_idx_error(p, "byte 3: 0 dimensions (1 to 6 supported)");
    bad[3] = 7;
    write_file(p, bad, 8);
    expect_idx_error(p, "byte 3: 7 dimensions (1 to 6 supported)");
    /* (2^32-1)^2 elements of 8 bytes overflow 64 bits: caught at the second dimension */
    unsigned char huge[16];
    idx_header(huge, 0x0E, 3, (uint32_t[]){0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu});
    write_file(p, huge, 16);
    expect_idx_error(p, "byte 8: dimensions too large");
    /* 2^20 x 2^20 doubles, 2^43 bytes, promised by a 12-byte file: memory grows only with the
     * data that arrives, so this fails at once instead of allocating 8 TB */
    idx_header(huge, 0x0E, 2, (uint32_t[]){1u << 20, 1u << 20});
    write_file(p, huge, 12);
    expect_idx_error(p, "byte 12: the file ends after 0 of the 8796093022208 data bytes its header promises");
    expect_idx_error(file("none"), "cannot open: No such file or directory");
    expect_idx_error(dir, "not a regular file (a directory)");
    char err[256];
    ck_assert_ptr_null(nn_idx_load(NULL, AD_F32, err, sizeof err));
    ck_assert_str_eq(err, "nn_idx_load: (null): path is NULL");
}
END_TEST

START_TEST(idx_gzip_errors)
{
    write_mnist_like(file("img"), file("lab"));
    gzip_copy(file("img"), file("img.gz"));
    FILE *f = fopen(file("img.gz"), "rb");
    unsigned char gz[256];
    size_t n = fread(gz, 1, sizeof gz, f);
    fclose(f);
    /* every truncation of the compressed file fails: gzip's exit status or the short data */
    for (size_t len = 0; len < n; len++) {
        write_file(file("cut.gz"), gz, len);
        char err[512];
        ck_assert_msg(nn_idx_load(file("cut.gz"), AD_F32, err, sizeof err) == NULL, "cut at %zu of %zu loaded", len, n);
        ck_assert_ptr_nonnull(strstr(err, "nn_idx_load: "));
    }
    /* a damaged CRC at the end: the data decompresses in full but gzip reports the damage */
    gz[n - 8] ^= 0xFF;
    write_file(file("crc.gz"), gz, n);
    expect_idx_error(file("crc.gz"), "gzip -dc failed (exit status 1): the compressed data is corrupt or truncated");
}
END_TEST

START_TEST(idx_dataset_errors)
{
    write_mnist_like(file("img"), file("lab"));
    unsigned char b[32];
    size_t h = idx_header(b, 0x08, 1, (uint32_t[]){2});
    b[h] = 1, b[h + 1] = 0;
    write_file(file("lab2"), b, h + 2);
    h = idx_header(b, 0x0D, 1, (uint32_t[]){3});
    const unsigned char labf[12] = {0x3F, 0x80, 0, 0, 0x3F, 0xC0, 0, 0, 0, 0, 0, 0}; /* 1.0, 1.5, 0.0 */
    memcpy(b + h, labf, 12);
    write_file(file("labf"), b, h + 12);
    char err[512], want[800];
    ck_assert_ptr_null(nn_idx_dataset(file("img"), file("lab2"), AD_F32, 1, err, sizeof err));
    snprintf(want, sizeof want, "nn_idx_dataset: %s: 2 labels for 3 images in %s", file("lab2"), file("img"));
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(nn_idx_dataset(file("img"), file("labf"), AD_F32, 1, err, sizeof err));
    snprintf(want, sizeof want, "nn_idx_dataset: %s: byte 12: label 1.5 is not a class id (a non-negative integer)", file("labf"));
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(nn_idx_dataset(file("lab"), file("lab"), AD_F32, 1, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "expected images [n, rows, cols], found 1 dimension(s) or an empty one"));
    ck_assert_ptr_null(nn_idx_dataset(file("img"), file("img"), AD_F32, 1, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "expected a 1-dimensional label file, found 3 dimensions"));
}
END_TEST

START_TEST(fashion_mnist_missing_says_how_to_install)
{
    char err[1024];
    ck_assert_ptr_null(nn_fashion_mnist(dir, true, AD_F32, err, sizeof err));
    char want[800];
    snprintf(want, sizeof want, "nn_fashion_mnist: %s/train-images-idx3-ubyte.gz not found: install the Fashion-MNIST files with "
             "`sudo apt-get install dataset-fashion-mnist` (Debian; they go to /usr/share/datasets/fashion-mnist), or pass the folder that holds them", dir);
    ck_assert_str_eq(err, want);
    /* unpacked files are found too, and a missing label file is the one named */
    write_mnist_like(file("t10k-images-idx3-ubyte"), file("other"));
    ck_assert_ptr_null(nn_fashion_mnist(dir, false, AD_F32, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "t10k-labels-idx1-ubyte.gz not found"));
    gzip_copy(file("other"), file("t10k-labels-idx1-ubyte.gz"));
    ck_assert_ptr_null(nn_fashion_mnist(dir, false, AD_F32, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "4 features and 3 classes, not 28x28 images of 10 classes"));
    ck_assert_str_eq(nn_fashion_mnist_class(0), "T-shirt/top");
    ck_assert_str_eq(nn_fashion_mnist_class(9), "Ankle boot");
    ck_assert_ptr_null(nn_fashion_mnist_class(10));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_data");
    TCase *tc = tcase_create("data");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, split_partitions_the_rows);
    tcase_add_test(tc, standardisation_uses_training_statistics);
    tcase_add_test(tc, batches_cover_each_row_once_per_epoch);
    tcase_add_test(tc, csv_reads_what_spreadsheets_write);
    tcase_add_loop_test(tc, csv_errors_point_at_line_and_column, 0, (int)(sizeof csv_bad / sizeof csv_bad[0]));
    tcase_add_test(tc, csv_file_errors);
    tcase_add_test(tc, csv_values_subnormal_float32_range_and_nul);
    tcase_add_test(tc, csv_out_of_memory_is_reported);
    tcase_add_test(tc, loaders_refuse_a_fifo);
    tcase_add_test(tc, idx_plain_and_gzipped);
    tcase_add_test(tc, idx_every_element_type);
    tcase_add_test(tc, idx_errors_give_the_byte);
    tcase_add_test(tc, idx_gzip_errors);
    tcase_add_test(tc, idx_dataset_errors);
    tcase_add_test(tc, fashion_mnist_missing_says_how_to_install);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
