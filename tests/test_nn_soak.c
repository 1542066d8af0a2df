/* Soak test (issue 20): 10,000 steps of a training loop whose batch size rises from 1 to 64
 * and falls back, again and again, on one graph reset between steps.  The arena must settle:
 * its peak reserved memory stays within a small bound of what the largest step uses, and
 * after the first cycles nothing more is allocated.  The hidden layer is wide enough (5000
 * float32 units) that the largest batches make requests over the arena's 1 MiB block size,
 * which get blocks of their own (issue 20, defect 2). */
#include "testutil.h"
#include "nn.h"
#include "optim.h"
#include <stdlib.h>
#include <string.h>

/* "peak": check only the peak-memory bound, which fails until the arena fix of issue 20,
 * defect 2 (another branch) lands; tests/meson.build registers that run as should_fail. */
static bool peak_only;

/* Sanitizers make each step about 15 times slower (45 s for the whole run under ASan): there,
 * 2,000 steps still go through 16 cycles of every batch size. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
enum { STEPS = 2000 };
#else
enum { STEPS = 10000 };
#endif
enum { MAX_BATCH = 64, CYCLE = 2 * (MAX_BATCH - 1), WARMUP = 2 * CYCLE };
enum { IN = 2, HIDDEN = 5000 };

/* 1, 2, ..., 64, 63, ..., 2, 1, 2, ... */
static int batch_of(int step)
{
    int t = step % CYCLE;
    return t < MAX_BATCH ? 1 + t : 1 + CYCLE - t;
}

START_TEST(arena_settles_while_batches_grow_and_shrink)
{
    nn_mlp_cfg mc = {.in = IN, .hidden = {HIDDEN}, .out = 2, .dtype = AD_F32, .seed = 20};
    nn_mlp *m = nn_mlp_new(&mc);
    ck_assert_ptr_nonnull(m);
    optim_cfg c = optim_defaults(OPTIM_MOMENTUM, 0.01);
    optim *o = optim_new(nn_mlp_params(m), nn_mlp_num_params(m), &c, NULL, 0);
    ck_assert_ptr_nonnull(o);
    ad_graph *g = ad_graph_new();
    ad_rng rng;
    ad_rng_seed(&rng, 20);
    int32_t labels[MAX_BATCH];
    uint64_t most_used = 0, peak_reserved = 0;
    long allocs_after_warmup = 0;
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < STEPS; step++) {
        int n = batch_of(step);
        ad_graph_reset(g);
        ad_node *x = ad_rand_uniform(g, AD_F32, AD_SHAPE(n, IN), &rng, -1, 1);
        for (int i = 0; i < n; i++) labels[i] = ad_node_get(x, 2 * i) > ad_node_get(x, 2 * i + 1);
        ad_node *loss = ad_cross_entropy(g, nn_mlp_forward(g, m, x, NN_TRAIN), labels);
        if (!loss || ad_backward(g, loss) != AD_OK || optim_step(o) != AD_OK)
            ck_abort_msg("step %d (batch %d): %s", step, n, ad_error(g));
        optim_zero_grad(o);
        if (step == 0) first_loss = ad_value(loss);
        last_loss = ad_value(loss);
        ad_graph_stats s = ad_graph_get_stats(g);
        if (s.bytes_used > most_used) most_used = s.bytes_used;
        if (s.bytes_reserved > peak_reserved) peak_reserved = s.bytes_reserved;
        if (step == WARMUP) allocs_after_warmup = ad_alloc_count();
    }
    printf("soak: largest step used %.1f MB, peak reserved %.1f MB, %ld allocations after warm-up, "
           "loss %.3f -> %.3f\n", most_used / 1e6, peak_reserved / 1e6,
           ad_alloc_count() - allocs_after_warmup, first_loss, last_loss);
    if (!peak_only) {
        /* Training works: the loss falls. */
        ck_assert_double_lt(last_loss, first_loss);
        /* Nothing is allocated once every batch size has been seen (twice). */
        ck_assert_int_eq(ad_alloc_count(), allocs_after_warmup);
    }
    /* Peak memory within a small factor of the largest step's need (plus one minimum block).
     * FAILS before the fix of issue 20, defect 2: every request over 1 MiB gets a block of its
     * exact size that is never reused for a larger request nor released, so each batch size
     * from 53 up leaves blocks behind: 58 MB reserved for steps that use at most 3.8 MB. */
    if (peak_only)
        ck_assert_msg(peak_reserved <= 2 * most_used + (1u << 20),
                      "the arena reserved %llu bytes for steps that use at most %llu (issue 20, defect 2)",
                      (unsigned long long)peak_reserved, (unsigned long long)most_used);
    ad_graph_free(g);
    optim_free(o);
    nn_mlp_free(m);
}
END_TEST

int main(int argc, char **argv)
{
    peak_only = argc > 1 && !strcmp(argv[1], "peak");
    Suite *s = suite_create("nn_soak");
    TCase *tc = tcase_create("soak");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, arena_settles_while_batches_grow_and_shrink);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
