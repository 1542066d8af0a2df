/* Crash-safe saving: a child process saves two different models to one path in a loop and
 * is killed (SIGKILL) at random moments; after every kill the file on disk loads, and it is
 * exactly one of the two models — never a mix, never a half-written file. */
#include "testutil.h"
#include "nn.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { KILLS = 40 };

static nn_mlp *model(uint64_t seed)
{
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 64, .hidden = {128, 64}, .out = 10, .act = NN_RELU,
                                          .dtype = AD_F32, .seed = seed});
    ck_assert_ptr_nonnull(m);
    return m;
}

/* Whether loaded equals m parameter by parameter, bit for bit. */
static bool same(const nn_mlp *loaded, const nn_mlp *m)
{
    ad_tensor *const *a = nn_mlp_params(loaded), *const *b = nn_mlp_params(m);
    for (int i = 0; a[i] || b[i]; i++) {
        if (!a[i] || !b[i] || ad_tensor_size(a[i]) != ad_tensor_size(b[i])) return false;
        if (memcmp(ad_tensor_data(a[i]), ad_tensor_data(b[i]), (size_t)ad_tensor_size(a[i]) * sizeof(float)))
            return false;
    }
    return true;
}

START_TEST(killed_saves_leave_old_or_new)
{
    char dir[] = "/tmp/bp-crash-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    nn_mlp *a = model(1), *b = model(2);
    char err[256];
    ck_assert_int_eq(nn_mlp_save(a, path, err, sizeof err), AD_OK);
    ad_rng r;
    ad_rng_seed(&r, (uint64_t)time(NULL));
    int saw_a = 0, saw_b = 0;
    for (int k = 0; k < KILLS; k++) {
        pid_t pid = fork();
        ck_assert(pid >= 0);
        if (pid == 0) {
            for (int i = 0;; i++) nn_mlp_save(i % 2 ? a : b, path, err, sizeof err);
        }
        /* 1-21 ms: saves run back to back, so the kill often lands inside one */
        struct timespec nap = {0, 1000000 + (long)(ad_rng_uniform(&r) * 20e6)};
        nanosleep(&nap, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        nn_mlp *m = nn_mlp_load(path, err, sizeof err);
        ck_assert_msg(m != NULL, "after kill %d the file does not load: %s", k, err);
        bool is_a = same(m, a), is_b = same(m, b);
        ck_assert_msg(is_a || is_b, "after kill %d the file is neither model", k);
        saw_a += is_a, saw_b += is_b;
        nn_mlp_free(m);
    }
    /* temporary files of killed saves may remain (a crash cannot clean up): they must not
     * be the model's name, and the model file is whole */
    ck_assert_int_eq(saw_a + saw_b, KILLS);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    nn_mlp_free(a);
    nn_mlp_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_crashsave");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, killed_saves_leave_old_or_new);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
