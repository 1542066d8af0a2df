/* docs/nn.md cannot rot: its C blocks must appear word for word in docs/examples/nn_train.c
 * (or custom_model.c, run as the test doc_custom_model),
 * which this file compiles (its main renamed) and whose train() it runs on a small problem. */
#include "testutil.h"
#define main nn_train_main
#include "../docs/examples/nn_train.c"
#undef main
#include <math.h>
#include <string.h>

/* A file of the source tree: $BACKPROP_SOURCE_ROOT, or found from this file's compiled path
 * (meson compiles with paths relative to the build folder, and runs tests from there). */
static char *read_source(const char *rel)
{
    char p[1024];
    const char *root = getenv("BACKPROP_SOURCE_ROOT"), *slash = strrchr(__FILE__, '/');
    if (root && *root) snprintf(p, sizeof p, "%s/%s", root, rel);
    else snprintf(p, sizeof p, "%.*s/../%s", slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".", rel);
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (set BACKPROP_SOURCE_ROOT)", p);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

START_TEST(every_c_block_is_in_the_example)
{
    char *md = read_source("docs/nn.md"), *c = read_source("docs/examples/nn_train.c");
    char *custom = read_source("docs/examples/custom_model.c");
    int blocks = 0;
    for (char *at = md; (at = strstr(at, "```c\n"));) {
        char *start = at + 5, *end = strstr(start, "```");
        ck_assert_ptr_nonnull(end);
        *end = 0;
        ck_assert_msg(strstr(c, start) != NULL || strstr(custom, start) != NULL,
                      "docs/nn.md block %d is in neither docs/examples/nn_train.c nor custom_model.c:\n%s", blocks + 1,
                      start);
        blocks++;
        at = end + 3;
    }
    ck_assert_int_ge(blocks, 3);
    free(md), free(c), free(custom);
}
END_TEST

/* Three well-separated Gaussian blobs in 8 dimensions. */
static nn_dataset *blobs(int n, uint64_t seed)
{
    nn_dataset *d = nn_dataset_new(n, 8, AD_F32, 0);
    ad_rng r;
    ad_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        d->labels[i] = i % 3;
        for (int j = 0; j < 8; j++) ad_tensor_set(d->x, i * 8 + j, (j % 3 == i % 3 ? 2.0 : 0.0) + 0.5 * ad_rng_normal(&r));
    }
    d->classes = 3;
    return d;
}

START_TEST(the_example_trains)
{
    nn_dataset *tr = blobs(600, 1), *val = blobs(150, 2);
    nn_mlp *m = train(tr, val, 15);
    ck_assert_ptr_nonnull(m);
    int32_t pred[150];
    ck_assert_int_eq(nn_mlp_predict(NULL, m, val->x, NULL, pred), AD_OK);
    double acc = nn_accuracy(pred, val->labels, 150);
    ck_assert_msg(acc > 0.95, "accuracy %g", acc);
    nn_mlp_free(m);
    nn_dataset_free(tr), nn_dataset_free(val);
    /* its main reports a missing dataset instead of crashing */
    char *argv[] = {"nn_train", "/nonexistent", NULL};
    ck_assert_int_eq(nn_train_main(2, argv), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_docs");
    TCase *tc = tcase_create("docs");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, every_c_block_is_in_the_example);
    tcase_add_test(tc, the_example_trains);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
