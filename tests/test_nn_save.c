/* Saving and loading models: bit-exact round trips for every kind of architecture, the names
 * and metadata a file holds, every truncation and inverted header byte rejected, files whose
 * tensors do not fit their architecture, and every allocation failure handled without a leak. */
#include "testutil.h"
#include "nn.h"
#include "ad_io.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static char dir[256], path[512];

static void setup(void)
{
    scratch_dir_make(dir, sizeof dir, "nn_save");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
}

static void teardown(void) { scratch_dir_remove(dir); }

static bool same_cfg(const nn_mlp_cfg *a, const nn_mlp_cfg *b)
{
    bool same = a->in == b->in && a->out == b->out && a->act == b->act && a->task == b->task &&
                a->dtype == b->dtype && a->seed == b->seed && a->init == b->init && a->inverted_dropout == b->inverted_dropout;
    /* doubles compared by bits: the text in the metadata must round-trip exactly */
    same = same && !memcmp(&a->slope, &b->slope, sizeof a->slope) && !memcmp(&a->dropout, &b->dropout, sizeof a->dropout) &&
           !memcmp(&a->input_dropout, &b->input_dropout, sizeof a->input_dropout);
    for (int i = 0; i < NN_MAX_HIDDEN; i++) same = same && a->hidden[i] == b->hidden[i];
    return same;
}

static const nn_mlp_cfg archs[] = {
    {.in = 784, .hidden = {256, 128}, .out = 10, .act = NN_RELU, .dtype = AD_F32, .seed = 1},
    {.in = 5, .hidden = {7}, .out = 3, .act = NN_LEAKY_RELU, .slope = 0.2, .dtype = AD_F64, .seed = UINT64_MAX},
    {.in = 3, .out = 4, .act = NN_TANH, .dtype = AD_F32, .seed = 0},
    {.in = 2, .hidden = {3, 4, 5}, .out = 1, .act = NN_SIGMOID, .task = NN_REGRESS, .dtype = AD_F64, .seed = 9,
     .dropout = 0.1 + 0.2, .input_dropout = 1.0 / 3, .inverted_dropout = true, .init = NN_INIT_HE},
    {.in = 4, .hidden = {4}, .out = 2, .dropout = 0.5, .seed = 4, .init = NN_INIT_XAVIER},
};

START_TEST(round_trip_is_bit_exact)
{
    const nn_mlp_cfg *c = &archs[_i];
    nn_mlp *m = nn_mlp_new(c);
    ad_rng r;
    ad_rng_seed(&r, 3);
    for (ad_tensor *const *p = nn_mlp_params(m); *p; p++) ad_tensor_rand_normal(*p, &r, 0, 1);
    char err[512];
    ck_assert_int_eq(nn_mlp_save(m, path, err, sizeof err), AD_OK);
    nn_mlp *l = nn_mlp_load(path, err, sizeof err);
    ck_assert_msg(l != NULL, "%s", err);
    ck_assert(same_cfg(nn_mlp_config(m), nn_mlp_config(l)));
    ck_assert_int_eq(nn_mlp_num_params(l), nn_mlp_num_params(m));
    for (int i = 0; nn_mlp_params(m)[i]; i++) {
        ad_tensor *a = nn_mlp_params(m)[i], *b = nn_mlp_params(l)[i];
        ck_assert_str_eq(ad_tensor_name(a), ad_tensor_name(b));
        ck_assert_int_eq(memcmp(ad_tensor_data(a), ad_tensor_data(b), (size_t)ad_tensor_size(a) * ad_dtype_size(c->dtype)), 0);
    }
    /* same outputs, to the bit */
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_rand_normal(g, c->dtype, AD_SHAPE(3, c->in), &r, 0, 1);
    ad_node *ya = nn_mlp_forward(g, m, x, NN_EVAL), *yb = nn_mlp_forward(g, l, x, NN_EVAL);
    for (int64_t i = 0; i < ad_node_size(ya); i++) ck_assert(ad_node_get(ya, i) == ad_node_get(yb, i));
    ad_graph_free(g);
    nn_mlp_free(m), nn_mlp_free(l);
}
END_TEST

START_TEST(file_holds_pytorch_names_and_the_architecture)
{
    nn_mlp *m = nn_mlp_new(&archs[0]);
    char err[512];
    ck_assert_int_eq(nn_mlp_save(m, path, err, sizeof err), AD_OK);
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    const char *names[] = {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"};
    ck_assert_int_eq(ad_tensor_file_count(f), 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(ad_tensor_file_name(f, i), names[i]);
        ck_assert_int_eq(ad_tensor_dtype(ad_tensor_file_tensor(f, i)), AD_F32);
    }
    const char *meta[][2] = {{"format", "pt"}, {"backprop.model", "mlp"}, {"backprop.version", "1"},
                             {"backprop.in", "784"}, {"backprop.hidden", "256,128"}, {"backprop.out", "10"},
                             {"backprop.act", "relu"}, {"backprop.slope", "0.10000000000000001"},
                             {"backprop.task", "classification"}, {"backprop.dtype", "F32"},
                             {"backprop.dropout", "0"}, {"backprop.input_dropout", "0"},
                             {"backprop.dropout_kind", "lecture"}, {"backprop.init", "he"}, {"backprop.seed", "1"}};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        const char *v = ad_tensor_file_meta(f, meta[i][0]);
        ck_assert_msg(v && !strcmp(v, meta[i][1]), "%s = %s, want %s", meta[i][0], v ? v : "(none)", meta[i][1]);
    }
    ad_tensor_file_free(f);
    nn_mlp_free(m);
}
END_TEST

/* A small model's file, read whole; *hend is where the data starts. */
static unsigned char *small_file(size_t *n, size_t *hend)
{
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 3, .hidden = {4}, .out = 2, .dtype = AD_F32, .seed = 2, .dropout = 0.25});
    char err[256];
    ck_assert_int_eq(nn_mlp_save(m, path, err, sizeof err), AD_OK);
    nn_mlp_free(m);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    *hend = 8;
    for (int i = 0; i < 8; i++) *hend += (size_t)b[i] << (8 * i);
    return b;
}

static void put(const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

START_TEST(every_truncation_and_inverted_header_byte_fails)
{
    size_t n, hend;
    unsigned char *b = small_file(&n, &hend);
    ck_assert_uint_gt(n, hend);
    char err[512];
    for (size_t len = 0; len < n; len++) {
        put(b, len);
        ck_assert_msg(nn_mlp_load(path, err, sizeof err) == NULL, "cut at %zu of %zu loaded", len, n);
        ck_assert_msg(strstr(err, "nn_mlp_load: ad_safetensors_load: ") == err, "cut at %zu: %s", len, err);
    }
    for (size_t i = 0; i < hend; i++) {
        b[i] ^= 0xFF;
        put(b, n);
        b[i] ^= 0xFF;
        ck_assert_msg(nn_mlp_load(path, err, sizeof err) == NULL, "byte %zu inverted still loaded", i);
    }
    put(b, n);
    nn_mlp *m = nn_mlp_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(m); /* the intact bytes load */
    nn_mlp_free(m);
    free(b);
}
END_TEST

/* Writes a file with these tensors (n = 0: the model's own, n < 0: none) and the metadata of
 * `base` with one key changed (value NULL: removed). */
static void write_edited(const nn_mlp_cfg *base, const char *key, const char *value, int n, const char *const *names,
                         ad_tensor *const *ts)
{
    nn_mlp *m = nn_mlp_new(base);
    char err[512];
    ck_assert_int_eq(nn_mlp_save(m, path, err, sizeof err), AD_OK);
    nn_mlp_free(m);
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    const char *meta[64];
    int k = 0;
    const char *keys[] = {"format", "backprop.model", "backprop.version", "backprop.in", "backprop.hidden", "backprop.out",
                          "backprop.act", "backprop.slope", "backprop.task", "backprop.dtype", "backprop.dropout",
                          "backprop.input_dropout", "backprop.dropout_kind", "backprop.init", "backprop.seed"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = !strcmp(keys[i], key) ? value : ad_tensor_file_meta(f, keys[i]);
        if (v) meta[2 * k] = keys[i], meta[2 * k + 1] = v, k++;
    }
    const char *fnames[8];
    ad_tensor *fts[8];
    int nf = ad_tensor_file_count(f);
    for (int i = 0; i < nf; i++) fnames[i] = ad_tensor_file_name(f, i), fts[i] = ad_tensor_file_tensor(f, i);
    if (n < 0) n = 0, nf = 0;
    ck_assert_int_eq(ad_safetensors_save(path, n ? n : nf, n ? names : fnames, n ? ts : fts, k, meta, err, sizeof err), AD_OK);
    ad_tensor_file_free(f);
}

/* write_edited, then expects nn_mlp_load to fail with want. */
static void expect_load_error(const nn_mlp_cfg *base, const char *key, const char *value, int n, const char *const *names,
                              ad_tensor *const *ts, const char *want)
{
    write_edited(base, key, value, n, names, ts);
    char err[512];
    ck_assert_ptr_null(nn_mlp_load(path, err, sizeof err));
    char full[800];
    snprintf(full, sizeof full, "nn_mlp_load: %s: %s", path, want);
    ck_assert_str_eq(err, full);
}

START_TEST(mismatched_files_are_refused)
{
    /* in 3, hidden {4}, out 2: 0.weight [4,3], 0.bias [4], 2.weight [2,4], 2.bias [2] */
    const nn_mlp_cfg c = {.in = 3, .hidden = {4}, .out = 2, .dtype = AD_F32, .seed = 2};
    ad_tensor *w0 = ad_tensor_new(AD_F32, AD_SHAPE(4, 3)), *b0 = ad_tensor_new(AD_F32, AD_SHAPE(4));
    ad_tensor *w2 = ad_tensor_new(AD_F32, AD_SHAPE(2, 4)), *b2 = ad_tensor_new(AD_F32, AD_SHAPE(2));
    ad_tensor *w0wide = ad_tensor_new(AD_F32, AD_SHAPE(4, 4)), *w0d = ad_tensor_new(AD_F64, AD_SHAPE(4, 3));
    ad_tensor *extra = ad_tensor_new(AD_F32, AD_SHAPE(1));
    const char *n4[] = {"0.weight", "0.bias", "2.weight", "2.bias", "extra"};
    expect_load_error(&c, "", NULL, 3, n4, (ad_tensor *[]){w0, b0, w2}, "tensor \"2.bias\" is missing");
    expect_load_error(&c, "", NULL, 4, n4, (ad_tensor *[]){w0wide, b0, w2, b2},
                      "tensor \"0.weight\" is float32 [4,4], the architecture needs float32 [4,3]");
    expect_load_error(&c, "", NULL, 4, n4, (ad_tensor *[]){w0d, b0, w2, b2},
                      "tensor \"0.weight\" is float64 [4,3], the architecture needs float32 [4,3]");
    expect_load_error(&c, "", NULL, 5, n4, (ad_tensor *[]){w0, b0, w2, b2, extra}, "tensor \"extra\" is not part of the architecture");
    expect_load_error(&c, "backprop.in", "abc", 0, NULL, NULL, "metadata \"backprop.in\" = \"abc\": expected an integer in [1,2147483647]");
    expect_load_error(&c, "backprop.in", " 3", 0, NULL, NULL, "metadata \"backprop.in\" = \" 3\": expected an integer in [1,2147483647]");
    expect_load_error(&c, "backprop.in", "4", 0, NULL, NULL, "tensor \"0.weight\" is float32 [4,3], the architecture needs float32 [4,4]");
    expect_load_error(&c, "backprop.out", NULL, 0, NULL, NULL, "the metadata has no \"backprop.out\" (not a model saved by nn_mlp_save?)");
    expect_load_error(&c, "backprop.model", "cnn", 0, NULL, NULL, "metadata \"backprop.model\" = \"cnn\" is not one of the known values");
    expect_load_error(&c, "backprop.version", "2", 0, NULL, NULL, "metadata \"backprop.version\" = \"2\": expected an integer in [1,1]");
    expect_load_error(&c, "backprop.act", "gelu", 0, NULL, NULL, "metadata \"backprop.act\" = \"gelu\" is not one of the known values");
    expect_load_error(&c, "backprop.hidden", "4,", 0, NULL, NULL, "metadata \"backprop.hidden\" = \"4,\": expected positive widths separated by commas");
    expect_load_error(&c, "backprop.hidden", "4,,5", 0, NULL, NULL, "metadata \"backprop.hidden\" = \"4,,5\": expected positive widths separated by commas");
    expect_load_error(&c, "backprop.hidden", "0", 0, NULL, NULL, "metadata \"backprop.hidden\" = \"0\": expected positive widths separated by commas");
    expect_load_error(&c, "backprop.hidden", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1", 0, NULL, NULL, "metadata \"backprop.hidden\": more than 16 hidden layers");
    expect_load_error(&c, "backprop.hidden", "", 0, NULL, NULL, "tensor \"0.weight\" is float32 [4,3], the architecture needs float32 [2,3]");
    expect_load_error(&c, "backprop.seed", "-1", 0, NULL, NULL, "metadata \"backprop.seed\" = \"-1\": expected an unsigned integer");
    expect_load_error(&c, "backprop.slope", "nan", 0, NULL, NULL, "metadata \"backprop.slope\" = \"nan\": expected a finite number");
    expect_load_error(&c, "backprop.dropout", "1.5", 0, NULL, NULL, "the metadata describes an invalid model: nn_mlp_new: dropout = 1.5 outside [0,1)");
    expect_load_error(&c, "backprop.out", "0", 0, NULL, NULL, "metadata \"backprop.out\" = \"0\": expected an integer in [1,2147483647]");
    ad_tensor *ts[] = {w0, b0, w2, b2, w0wide, w0d, extra};
    for (int i = 0; i < 7; i++) ad_tensor_free(ts[i]);
    /* a safetensors file without our metadata */
    const char *nm[] = {"w"};
    char err[512];
    ad_tensor *lone = ad_tensor_new(AD_F32, AD_SHAPE(1));
    ck_assert_int_eq(ad_safetensors_save(path, 1, nm, &lone, 0, NULL, err, sizeof err), AD_OK);
    ad_tensor_free(lone);
    ck_assert_ptr_null(nn_mlp_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "the metadata has no \"backprop.model\""));
    ck_assert_ptr_null(nn_mlp_load(NULL, err, sizeof err));
    ck_assert_str_eq(err, "nn_mlp_load: path is NULL");
}
END_TEST

/* Issue 20, defect 1: a small file whose metadata claims hidden layers 50000,50000 made
 * nn_mlp_load build and initialise that network (116 s, 9.7 GB) before finding its tensors
 * missing.  The shapes are checked against the file first, so the load fails at once.
 * (Outside ASan, whose shadow memory needs the address space, the test caps the address
 * space so that the old behaviour fails quickly rather than swap.) */
START_TEST(huge_claimed_architecture_fails_fast)
{
#ifndef UNDER_ASAN
    struct rlimit lim = {(rlim_t)4 << 30, (rlim_t)4 << 30};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
#endif
    const nn_mlp_cfg c = {.in = 3, .hidden = {4}, .out = 2, .dtype = AD_F32, .seed = 2};
    static const struct { int n; const char *want; } cases[] = {
        {0, "tensor \"0.weight\" is float32 [4,3], the architecture needs float32 [50000,3]"},
        {-1, "tensor \"0.weight\" is missing"},
    };
    for (int i = 0; i < 2; i++) {
        write_edited(&c, "backprop.hidden", "50000,50000", cases[i].n, NULL, NULL);
        char err[512], full[800];
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long before = ad_alloc_count();
        ck_assert_ptr_null(nn_mlp_load(path, err, sizeof err));
        long allocs = ad_alloc_count() - before;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        snprintf(full, sizeof full, "nn_mlp_load: %s: %s", path, cases[i].want);
        ck_assert_str_eq(err, full);
        ck_assert_msg(secs < 1, "the load took %g s", secs);
        ck_assert_msg(allocs < 200, "the load made %ld allocations", allocs);
    }
}
END_TEST

START_TEST(save_errors_and_replacing)
{
    nn_mlp *a = nn_mlp_new(&archs[2]), *b = nn_mlp_new(&archs[4]);
    char err[512], bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.safetensors", dir);
    ck_assert_int_eq(nn_mlp_save(a, bad, err, sizeof err), AD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "nn_mlp_save: ad_safetensors_save: "));
    ck_assert_ptr_nonnull(strstr(err, "cannot create a temporary file next to it"));
    ck_assert_int_eq(nn_mlp_save(NULL, path, err, sizeof err), AD_ERR_NULL);
    ck_assert_str_eq(err, "nn_mlp_save: model is NULL");
    /* a second save replaces the first */
    ck_assert_int_eq(nn_mlp_save(a, path, err, sizeof err), AD_OK);
    ck_assert_int_eq(nn_mlp_save(b, path, err, sizeof err), AD_OK);
    nn_mlp *l = nn_mlp_load(path, err, sizeof err);
    ck_assert(same_cfg(nn_mlp_config(l), nn_mlp_config(b)));
    nn_mlp_free(a), nn_mlp_free(b), nn_mlp_free(l);
}
END_TEST

/* Make each allocation of a save and a load fail in turn: each run either succeeds or
 * reports running out of memory, and (under LeakSanitizer) leaks nothing. */
START_TEST(every_allocation_failure_is_clean)
{
    nn_mlp *m = nn_mlp_new(&archs[3]);
    char err[512];
    long before = ad_alloc_count();
    ck_assert_int_eq(nn_mlp_save(m, path, err, sizeof err), AD_OK);
    nn_mlp *l = nn_mlp_load(path, err, sizeof err);
    long total = ad_alloc_count() - before;
    ck_assert_ptr_nonnull(l);
    nn_mlp_free(l);
    int failed = 0;
    for (long k = 1; k <= total; k++) {
        ad_fail_alloc_at(k);
        ad_status st = nn_mlp_save(m, path, err, sizeof err);
        l = st == AD_OK ? nn_mlp_load(path, err, sizeof err) : NULL;
        ad_fail_alloc_at(0);
        if (st != AD_OK || !l) {
            failed++;
            ck_assert_msg(strstr(err, "out of memory") != NULL, "allocation %ld: %s", k, err);
        }
        nn_mlp_free(l);
    }
    ck_assert_int_eq(failed, total); /* every allocation matters */
    nn_mlp_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_save");
    TCase *tc = tcase_create("save");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, round_trip_is_bit_exact, 0, (int)(sizeof archs / sizeof archs[0]));
    tcase_add_test(tc, file_holds_pytorch_names_and_the_architecture);
    tcase_add_test(tc, every_truncation_and_inverted_header_byte_fails);
    tcase_add_test(tc, mismatched_files_are_refused);
    tcase_add_test(tc, huge_claimed_architecture_fails_fast);
    tcase_add_test(tc, save_errors_and_replacing);
    tcase_add_test(tc, every_allocation_failure_is_clean);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
