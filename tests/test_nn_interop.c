/* Our saved models in PyTorch: writes models, inputs and our outputs, then runs
 * tests/nn_torch_interop.py with Debian's /usr/bin/python3, which rebuilds each model as a
 * torch.nn.Sequential from the file alone and compares its forward output with ours (1e-5 in
 * float32).  Skipped (exit status 77) when /usr/bin/python3 or its torch is missing:
 * `apt-get install python3-torch`. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "testutil.h"
#include "nn.h"
#include "ad_io.h"
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PYTHON
#define PYTHON "/usr/bin/python3" /* Debian's, with python3-torch; not a pyenv python on PATH */
#endif

extern char **environ;

static char script[1024];

/* Runs argv and returns its exit status, or -1 if it could not run or died of a signal. */
static int run(char *const argv[])
{
    pid_t pid;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The script sits next to this file.  meson compiles tests with paths relative to the build
 * folder and runs them from there, so __FILE__'s folder is right; $BACKPROP_SOURCE_ROOT
 * overrides for other setups. */
static bool find_script(void)
{
    const char *root = getenv("BACKPROP_SOURCE_ROOT");
    if (root && *root) snprintf(script, sizeof script, "%s/tests/nn_torch_interop.py", root);
    else {
        const char *slash = strrchr(__FILE__, '/');
        int len = slash ? (int)(slash - __FILE__) : 1;
        snprintf(script, sizeof script, "%.*s/nn_torch_interop.py", len, slash ? __FILE__ : ".");
    }
    return access(script, R_OK) == 0;
}

typedef struct { nn_mlp_cfg cfg; double lo, hi; } model_case;

/* Each activation, both tasks, both dropout forms, no hidden layer, both dtypes, the issue's
 * 784-256-128-10 classifier on pixel-like inputs, and a classifier with one logit. */
static const model_case cases[] = {
    {{.in = 10, .hidden = {16, 8}, .out = 4, .act = NN_RELU, .dtype = AD_F32, .seed = 1}, -2, 2},
    {{.in = 6, .hidden = {12}, .out = 3, .act = NN_LEAKY_RELU, .dtype = AD_F32, .seed = 2, .dropout = 0.5, .input_dropout = 0.2}, -2, 2},
    {{.in = 5, .hidden = {8, 8, 8}, .out = 1, .act = NN_SIGMOID, .task = NN_REGRESS, .dtype = AD_F32, .seed = 3}, -3, 3},
    {{.in = 7, .out = 5, .act = NN_TANH, .dtype = AD_F32, .seed = 4}, -1, 1},
    {{.in = 9, .hidden = {7, 5}, .out = 3, .act = NN_TANH, .dtype = AD_F64, .seed = 5, .dropout = 0.3, .input_dropout = 0.1,
      .inverted_dropout = true}, -2, 2},
    {{.in = 784, .hidden = {256, 128}, .out = 10, .act = NN_RELU, .dtype = AD_F32, .seed = 6, .dropout = 0.2}, 0, 1},
    /* a binary classifier with one logit: its probability is the sigmoid */
    {{.in = 4, .hidden = {6}, .out = 1, .act = NN_TANH, .dtype = AD_F64, .seed = 7}, -2, 2},
};
enum { NCASES = sizeof cases / sizeof cases[0], ROWS = 16 };

/* A copy of a node's values as a persistent tensor. */
static ad_tensor *copy_out(ad_node *n)
{
    ad_tensor *t = ad_tensor_new(ad_node_dtype(n), ad_node_shape(n));
    memcpy(ad_tensor_data(t), ad_node_data(n), (size_t)ad_node_size(n) * ad_dtype_size(ad_node_dtype(n)));
    return t;
}

static void write_case(const char *dir, int k)
{
    const model_case *c = &cases[k];
    nn_mlp *m = nn_mlp_new(&c->cfg);
    ck_assert_ptr_nonnull(m);
    ad_rng r;
    ad_rng_seed(&r, 100 + (uint64_t)k);
    for (int i = 1; nn_mlp_params(m)[i - 1]; i += 2) ad_tensor_rand_uniform(nn_mlp_params(m)[i], &r, -0.5, 0.5);
    ad_tensor *x = ad_tensor_new(c->cfg.dtype, AD_SHAPE(ROWS, c->cfg.in));
    ad_tensor_rand_uniform(x, &r, c->lo, c->hi);
    ad_graph *g = ad_graph_new();
    ad_node *s = nn_mlp_forward(g, m, ad_const_tensor(g, x), NN_EVAL);
    ck_assert_msg(s != NULL, "%s", ad_error(g));
    ad_tensor *ts[3] = {x, copy_out(s), c->cfg.task == NN_CLASSIFY ? copy_out(nn_mlp_probs(g, m, ad_const_tensor(g, x), NN_EVAL)) : NULL};
    const char *names[3] = {"x", "scores", "probs"};
    char p[1200], err[512];
    snprintf(p, sizeof p, "%s/model_%d.safetensors", dir, k);
    ck_assert_msg(nn_mlp_save(m, p, err, sizeof err) == AD_OK, "%s", err);
    snprintf(p, sizeof p, "%s/io_%d.safetensors", dir, k);
    ck_assert_msg(ad_safetensors_save(p, ts[2] ? 3 : 2, names, ts, 0, NULL, err, sizeof err) == AD_OK, "%s", err);
    for (int i = 0; i < 3; i++) ad_tensor_free(ts[i]);
    ad_graph_free(g);
    nn_mlp_free(m);
}

START_TEST(pytorch_computes_what_we_compute)
{
    const char *t = getenv("TMPDIR");
    char dir[512], count[16];
    snprintf(dir, sizeof dir, "%s/nn_interop_XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (int k = 0; k < NCASES; k++) write_case(dir, k);
    snprintf(count, sizeof count, "%d", NCASES);
    char *argv[] = {PYTHON, script, dir, count, NULL};
    fflush(stdout);
    int st = run(argv);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(st == 0, "%s exited with %d (see its output above)", script, st);
}
END_TEST

int main(void)
{
    /* Debian's python must find its own modules, whatever a pyenv shell exported. */
    unsetenv("PYTHONHOME");
    unsetenv("PYTHONPATH");
    if (access(PYTHON, X_OK) != 0) {
        printf("SKIP: %s not found: install python3 and python3-torch\n", PYTHON);
        return 77;
    }
    char *probe[] = {PYTHON, "-c", "import torch, numpy", NULL};
    if (run(probe) != 0) {
        printf("SKIP: %s cannot import torch and numpy: apt-get install python3-torch\n", PYTHON);
        return 77;
    }
    if (!find_script()) {
        printf("FAIL: %s not found; set BACKPROP_SOURCE_ROOT to the source folder\n", script);
        return 1;
    }
    Suite *s = suite_create("nn_interop");
    TCase *tc = tcase_create("torch");
    tcase_set_timeout(tc, 120); /* importing torch takes seconds on a loaded machine */
    tcase_add_test(tc, pytorch_computes_what_we_compute);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
