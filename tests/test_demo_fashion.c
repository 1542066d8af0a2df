/* The fashion_mnist demo, run as a user runs it.
 *
 *   test_demo_fashion DEMO args    every kind of bad input: one clear message, exit status 2
 *                                  (1 for unreadable files), never a crash; needs no dataset
 *   test_demo_fashion DEMO train   short training runs on the real data (skipped with exit
 *                                  status 77 when dataset-fashion-mnist is not installed):
 *                                  the JSON, the pictures, save and --eval, --init, progress
 *                                  output, and no allocation after the first training step
 *   test_demo_fashion CNN cnn      fashion_cnn: its options, and a short run saved, evaluated
 *                                  and resumed */
#include "testutil.h"
#include "ad_io.h"
#include "nn_data.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *demo; /* path of the fashion_mnist binary (argv[1]) */

/* Runs the demo with args (NULL-terminated) and, if name is not NULL, that environment
 * variable set to value; its stderr is never a terminal. */
static run_result run_env(const char *name, const char *value, const char *const *args)
{
    return run_program(demo, args, NULL, name, value);
}

static run_result run(const char *const *args) { return run_env(NULL, NULL, args); }

static void done(run_result *r) { run_done(r); }


/* A bad command line: exit status 2, nothing on stdout, one line naming the problem. */
static void check_usage_error(const char *const *args, const char *expect)
{
    run_result r = run(args);
    ck_assert_msg(r.status == 2, "%s: exit status %d, stderr: %s", args[0], r.status, r.err);
    ck_assert_str_eq(r.out, "");
    ck_assert_msg(strncmp(r.err, "fashion_mnist: ", 15) == 0, "stderr: %s", r.err);
    ck_assert_msg(strstr(r.err, expect) != NULL, "expected '%s' in: %s", expect, r.err);
    ck_assert_msg(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "one line expected: %s", r.err);
    done(&r);
}

/* ---- no dataset needed ---- */

START_TEST(help_lists_every_option)
{
    run_result r = run(ARGS("--help"));
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.err, "");
    static const char *const opts[] = {"--hidden", "--activation", "--epochs", "--batch", "--lr", "--optimizer",
                                       "--momentum", "--dropout", "--l2", "--seed", "--threads", "--save", "--eval",
                                       "--standardize", "--dtype", "--data", "--limit", "--init", "--no-shuffle",
                                       "--no-validation", "--log-steps", "--json", "--svg", "--patience"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        ck_assert_msg(strstr(r.out, opts[i]) != NULL, "--help does not mention %s", opts[i]);
    done(&r);
}
END_TEST

/* Issue 20, defect 10: --help (like every run) exited 0 with its output lost. */
START_TEST(unwritable_stdout_is_an_error)
{
    for (int closed = 0; closed < 2; closed++) {
        run_result r = run_program_stdout(demo, ARGS("--help"), closed ? NULL : "/dev/full");
        ck_assert_msg(r.status == 1 && strstr(r.err, "fashion_mnist: cannot write the output"), "exit %d: %s", r.status,
                      r.err);
        run_done(&r);
    }
}
END_TEST

START_TEST(bad_options_exit_2)
{
    check_usage_error(ARGS("--bogus"), "unknown option '--bogus'");
    check_usage_error(ARGS("extra"), "unexpected argument 'extra'");
    check_usage_error(ARGS("--epochs"), "--epochs needs a value");
    check_usage_error(ARGS("--epochs", "0"), "--epochs takes a whole number");
    check_usage_error(ARGS("--epochs", "3x"), "not '3x'");
    check_usage_error(ARGS("--batch", "-1"), "--batch takes");
    check_usage_error(ARGS("--hidden", "256,,128"), "--hidden takes");
    check_usage_error(ARGS("--hidden", "256,"), "--hidden takes");
    check_usage_error(ARGS("--hidden", "abc"), "--hidden takes");
    check_usage_error(ARGS("--hidden", "-5"), "--hidden takes");
    check_usage_error(ARGS("--activation", "softplus"), "--activation takes relu, leaky_relu, sigmoid or tanh");
    check_usage_error(ARGS("--optimizer", "rmsprop"), "--optimizer takes sgd or adam");
    check_usage_error(ARGS("--lr", "0"), "--lr takes a positive number");
    check_usage_error(ARGS("--lr=abc"), "not 'abc'");
    check_usage_error(ARGS("--lr", "nan"), "--lr takes");
    check_usage_error(ARGS("--momentum", "1"), "--momentum takes a number in [0,1)");
    check_usage_error(ARGS("--dropout", "1"), "--dropout takes a probability in [0,1)");
    check_usage_error(ARGS("--l2", "-1e-4"), "--l2 takes a number >= 0");
    check_usage_error(ARGS("--dtype", "float16"), "--dtype takes float32 or float64");
    check_usage_error(ARGS("--threads", "0"), "--threads takes a whole number from 1");
    check_usage_error(ARGS("--limit", "0"), "--limit takes");
    check_usage_error(ARGS("--log-steps", "-1"), "--log-steps takes");
    check_usage_error(ARGS("--seed", "-3"), "--seed takes");
    check_usage_error(ARGS("--patience", "0"), "--patience takes");
    check_usage_error(ARGS("--lr-drop", "1.5"), "--lr-drop takes");
    check_usage_error(ARGS("--json=1"), "--json takes no value");
    check_usage_error(ARGS("--save", ""), "--save needs a file name");
    check_usage_error(ARGS("--optimizer", "adam", "--momentum", "0.5"), "--momentum is for --optimizer sgd");
    check_usage_error(ARGS("--eval", "m.safetensors", "--epochs", "3"), "--epochs is for training");
}
END_TEST

START_TEST(missing_dataset_says_how_to_install)
{
    run_result r = run(ARGS("--data", "/nonexistent/fashion", "--epochs", "1"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "/nonexistent/fashion") != NULL, "%s", r.err);
    ck_assert_msg(strstr(r.err, "apt-get install dataset-fashion-mnist") != NULL, "%s", r.err);
    done(&r);
}
END_TEST

static void write_file(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* --eval and --init of missing, garbage, truncated and wrong-shaped files: exit status 1 and a
 * message naming the file, never a crash. */
START_TEST(unreadable_model_files_fail_cleanly)
{
    char dir[] = "/tmp/fm-files-XXXXXX", garbage[256], truncated[256], wrong[256], missing[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(garbage, sizeof garbage, "%s/garbage.safetensors", dir);
    snprintf(truncated, sizeof truncated, "%s/truncated.safetensors", dir);
    snprintf(wrong, sizeof wrong, "%s/wrong.safetensors", dir);
    snprintf(missing, sizeof missing, "%s/missing.safetensors", dir);
    write_file(garbage, "this is not a model at all", 26);
    static const char head[] = "\x40\0\0\0\0\0\0\0{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[10,784],\"data_offsets\":[0,31360]}}";
    write_file(truncated, head, sizeof head - 1);
    /* a well-formed file whose one tensor is no layer of a 784-input MLP */
    ad_tensor *t = ad_tensor_new(AD_F32, AD_SHAPE(3, 5));
    const char *names[] = {"0.weight"};
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(wrong, 1, names, &t, 0, NULL, err, sizeof err), AD_OK);
    ad_tensor_free(t);
    const char *files[] = {missing, garbage, truncated, wrong};
    for (int i = 0; i < 4; i++) {
        for (int init = 0; init < 2; init++) {
            run_result r = init ? run(ARGS("--init", files[i], "--data", "/nonexistent")) : run(ARGS("--eval", files[i]));
            ck_assert_msg(r.status == 1, "%s %s: exit status %d, stderr %s", init ? "--init" : "--eval", files[i], r.status,
                          r.err);
            ck_assert_msg(strncmp(r.err, "fashion_mnist: ", 15) == 0 && strstr(r.err, files[i]), "%s", r.err);
            ck_assert_msg(strchr(r.err, '\n') == r.err + strlen(r.err) - 1, "one line expected: %s", r.err);
            done(&r);
        }
        unlink(files[i]);
    }
    rmdir(dir);
}
END_TEST

/* ---- short runs on the real data ---- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fm-run-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    static const char *const names[] = {"c.svg", "c_accuracy.svg", "m.safetensors", "m64.safetensors", "fashion_mnist.svg",
                                        "fashion_mnist_accuracy.svg"};
    char p[256];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    ck_assert_int_eq(rmdir(tmpdir), 0); /* nothing else was left behind (no temporary files) */
}

static char *path_in(const char *name)
{
    static char p[4][256];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 256, "%s/%s", tmpdir, name);
    return s;
}

/* The last line of stdout, the JSON object. */
static const char *json_line(const char *out)
{
    size_t n = strlen(out);
    ck_assert_msg(n > 2 && out[n - 1] == '\n', "output does not end with a line: %s", out);
    const char *p = out + n - 1;
    while (p > out && p[-1] != '\n') p--;
    ck_assert_msg(p[0] == '{' && out[n - 2] == '}', "the last line is not a JSON object: %s", p);
    return p;
}

static double json_number(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    ck_assert_msg(p != NULL, "no %s in %s", key, json);
    return strtod(p + strlen(k), NULL);
}

/* Number of elements of the JSON array under key. */
static int json_count(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": [", key);
    const char *p = strstr(json, k);
    ck_assert_msg(p != NULL, "no %s in %s", key, json);
    p += strlen(k);
    if (*p == ']') return 0;
    int n = 1;
    for (; *p && *p != ']'; p++) n += *p == ',';
    return n;
}

static int count_lines_starting(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

static bool is_svg(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char *s = slurp_fd(fileno(f));
    fclose(f);
    bool ok = strstr(s, "<svg") && strstr(s, "</svg>") && strstr(s, "epoch") && strstr(s, "validation");
    free(s);
    return ok;
}

/* Two epochs on 1000 images: a JSON object at the end, one log line per epoch (stderr is a
 * file here), the pictures, a saved model that --eval scores identically, and no allocation in
 * the training loop after its first step. */
START_TEST(smoke_run_saves_and_evaluates)
{
    make_tmpdir();
    run_result r = run(ARGS("--limit", "1000", "--epochs", "2", "--hidden", "32,16", "--batch", "50", "--threads", "1", "--json", "--svg",
                            path_in("c.svg"), "--save", path_in("m.safetensors")));
    ck_assert_msg(r.status == 0, "exit status %d: %s", r.status, r.err);
    const char *j = json_line(r.out);
    double acc = json_number(j, "test_accuracy");
    ck_assert_msg(acc > 0.5 && acc <= 1, "test accuracy %g", acc);
    ck_assert_int_eq((int)json_number(j, "epochs"), 2);
    ck_assert_int_eq(json_count(j, "epoch_loss"), 2);
    ck_assert_int_eq(json_count(j, "step_loss"), 0);
    ck_assert_int_eq(json_count(j, "val_loss"), 3);
    ck_assert_msg(json_number(j, "allocations_after_first_step") == 0, "the training loop allocates: %s", j);
    ck_assert_int_eq(count_lines_starting(r.err, "epoch "), 2);
    ck_assert_ptr_null(strchr(r.err, '\r')); /* no progress bar in a log */
    ck_assert_ptr_nonnull(strstr(r.out, "900 training, 100 validation, 10000 test images"));
    ck_assert_ptr_nonnull(strstr(r.out, "confusion matrix"));
    ck_assert_ptr_nonnull(strstr(r.out, "9 Ankle boot"));
    ck_assert(is_svg(path_in("c.svg")));
    ck_assert(is_svg(path_in("c_accuracy.svg")));

    run_result e = run(ARGS("--eval", path_in("m.safetensors"), "--json"));
    ck_assert_msg(e.status == 0, "exit status %d: %s", e.status, e.err);
    ck_assert_msg(json_number(json_line(e.out), "test_accuracy") == acc, "--eval: %s, training: %s", e.out, j);
    ck_assert_ptr_nonnull(strstr(e.out, "784-32-16-10 relu MLP"));
    ck_assert_ptr_nonnull(strstr(e.out, "confusion matrix"));
    done(&e);
    done(&r);
    remove_tmpdir();
}
END_TEST

/* The options for comparing with other frameworks: float64, no shuffling, no validation, the
 * first steps' losses, and --init from a saved model (whose layers are numbered 0, 3, 6 by
 * its dropout modules) into a model without dropout. */
START_TEST(comparison_options)
{
    make_tmpdir();
    run_result r = run(ARGS("--limit", "640", "--epochs", "1", "--hidden", "16", "--dtype", "float64", "--save",
                            path_in("m64.safetensors"), "--svg", ""));
    ck_assert_msg(r.status == 0, "exit status %d: %s", r.status, r.err);
    done(&r);
    for (int opt = 0; opt < 2; opt++) {
        r = run(ARGS("--init", path_in("m64.safetensors"), "--no-shuffle", "--no-validation", "--dropout", "0", "--limit", "640",
                     "--epochs", "2", "--log-steps", "15", "--dtype", "float64", "--optimizer", opt ? "adam" : "sgd", "--threads", "1", "--json",
                     "--svg", path_in("c.svg")));
        ck_assert_msg(r.status == 0, "exit status %d: %s", r.status, r.err);
        const char *j = json_line(r.out);
        ck_assert_int_eq(json_count(j, "step_loss"), 15);
        ck_assert_int_eq(json_count(j, "epoch_loss"), 2);
        ck_assert_int_eq(json_count(j, "val_loss"), 0);
        ck_assert_ptr_nonnull(strstr(r.out, "640 training, 0 validation"));
        ck_assert_ptr_nonnull(strstr(r.out, "784-16-10 relu MLP"));
        ck_assert(json_number(j, "allocations_after_first_step") == 0);
        done(&r);
    }
    /* --hidden that contradicts the file */
    r = run(ARGS("--init", path_in("m64.safetensors"), "--hidden", "32", "--limit", "640", "--epochs", "1"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "--hidden"));
    done(&r);
    remove_tmpdir();
}
END_TEST

/* Every activation and Adam, standardised inputs, L2, and the bar when forced on. */
START_TEST(other_settings_and_the_progress_bar)
{
    make_tmpdir();
    static const char *const acts[] = {"leaky_relu", "sigmoid", "tanh"};
    for (int i = 0; i < 3; i++) {
        run_result r = run(ARGS("--limit", "500", "--epochs", "1", "--hidden", "8", "--activation", acts[i], "--optimizer", "adam",
                                "--standardize", "--l2", "1e-4", "--threads", "1", "--svg", path_in("c.svg")));
        ck_assert_msg(r.status == 0, "%s: exit status %d: %s", acts[i], r.status, r.err);
        ck_assert_ptr_nonnull(strstr(r.out, acts[i]));
        ck_assert_ptr_nonnull(strstr(r.out, "(standardised)"));
        done(&r);
    }
    run_result r = run_env("BACKPROP_PROGRESS", "1", ARGS("--limit", "500", "--epochs", "1", "--hidden", "8", "--batch", "10",
                                                       "--svg", ""));
    ck_assert_msg(r.status == 0, "exit status %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.err, "\repoch 1/1 ["));
    ck_assert_ptr_nonnull(strstr(r.err, "samples/s ETA "));
    ck_assert_ptr_nonnull(strstr(r.err, "loss "));
    ck_assert_int_eq(count_lines_starting(strrchr(r.err, '\r') + 1, "\033[Kepoch 1/1  loss"), 1);
    done(&r);
    remove_tmpdir();
}
END_TEST

/* A rate far too large: the run stops with a message, not with NaN results. */
START_TEST(divergence_is_reported)
{
    run_result r = run(ARGS("--limit", "500", "--epochs", "3", "--hidden", "8", "--lr", "1e30", "--svg", ""));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "the loss is NaN at step 2 (epoch 1): training diverged") != NULL, "%s", r.err);
    ck_assert_ptr_null(strstr(r.out, "test accuracy"));
    done(&r);
}
END_TEST

/* ---- fashion_cnn ---- */

/* The CNN's options are fashion_mnist's without the MLP's; those are refused by name. */
START_TEST(cnn_options)
{
    run_result r = run(ARGS("--help"));
    ck_assert_int_eq(r.status, 0);
    static const char *const opts[] = {"--epochs", "--batch", "--lr", "--optimizer", "--momentum", "--seed", "--threads",
                                       "--save", "--eval", "--init", "--data", "--limit", "--no-shuffle",
                                       "--no-validation", "--json", "Conv2d(1,32,3,padding=1)"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        ck_assert_msg(strstr(r.out, opts[i]) != NULL, "--help does not mention %s", opts[i]);
    ck_assert_ptr_null(strstr(r.out, "--hidden"));
    done(&r);
    static const char *const mlp[] = {"--hidden", "--activation", "--dropout", "--l2", "--standardize"};
    for (size_t i = 0; i < sizeof mlp / sizeof *mlp; i++) {
        r = run(ARGS(mlp[i], "1"));
        ck_assert_msg(r.status == 2 && strstr(r.err, "fashion_cnn: unknown option"), "%s: %d %s", mlp[i], r.status, r.err);
        done(&r);
    }
}
END_TEST

/* One epoch on 1280 images: the JSON, no allocation after the first step (the graph is
 * replayed), a state dict that --eval scores identically and --init starts from. */
START_TEST(cnn_trains_saves_and_evaluates)
{
    make_tmpdir();
    run_result r = run(ARGS("--limit", "1280", "--test-limit", "1000", "--epochs", "1", "--batch", "32", "--lr", "0.05", "--log-steps", "5", "--json", "--svg",
                            path_in("c.svg"), "--save", path_in("m.safetensors")));
    ck_assert_msg(r.status == 0, "exit status %d: %s", r.status, r.err);
    const char *j = json_line(r.out);
    double acc = json_number(j, "test_accuracy");
    ck_assert_msg(acc > 0.4 && acc <= 1, "test accuracy %g", acc);
    ck_assert_int_eq(json_count(j, "step_loss"), 5);
    ck_assert_msg(json_number(j, "allocations_after_first_step") == 0, "the training loop allocates: %s", j);
    ck_assert_ptr_nonnull(strstr(r.out, "CNN: conv 3x3 32"));
    ck_assert_ptr_nonnull(strstr(r.out, "(421642 parameters)"));

    ck_assert_ptr_nonnull(strstr(r.out, "(1000 images)"));
    run_result e = run(ARGS("--eval", path_in("m.safetensors"), "--test-limit", "1000", "--json"));
    ck_assert_msg(e.status == 0, "exit status %d: %s", e.status, e.err);
    ck_assert_msg(json_number(json_line(e.out), "test_accuracy") == acc, "--eval: %s, training: %s", e.out, j);
    done(&e);
    /* training resumes from the saved state dict: its first loss is below the fresh model's */
    e = run(ARGS("--init", path_in("m.safetensors"), "--limit", "64", "--test-limit", "10", "--epochs", "1", "--no-validation",
                 "--log-steps", "1", "--no-shuffle", "--json", "--svg", ""));
    ck_assert_msg(e.status == 0, "exit status %d: %s", e.status, e.err);
    const char *first = strstr(json_line(e.out), "\"step_loss\": [");
    ck_assert_msg(first && strtod(first + 14, NULL) < 2.0, "%s", e.out);
    done(&e);
    e = run(ARGS("--eval", path_in("c.svg")));
    ck_assert_msg(e.status == 1 && strstr(e.err, "fashion_cnn: "), "%d %s", e.status, e.err);
    done(&e);
    done(&r);
    remove_tmpdir();
}
END_TEST

static bool dataset_installed(void)
{
    char err[512];
    nn_dataset *d = nn_fashion_mnist(NULL, false, AD_F32, err, sizeof err);
    nn_dataset_free(d);
    return d != NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[2], "args") != 0 && strcmp(argv[2], "train") != 0 && strcmp(argv[2], "cnn") != 0)) {
        fprintf(stderr, "usage: test_demo_fashion FASHION_MNIST_BINARY args|train\n"
                        "       test_demo_fashion FASHION_CNN_BINARY cnn\n");
        return 2;
    }
    demo = argv[1];
    Suite *s = suite_create("demo_fashion");
    TCase *tc = tcase_create(argv[2]);
    tcase_set_timeout(tc, 300);
    if (strcmp(argv[2], "args") == 0) {
        tcase_add_test(tc, help_lists_every_option);
        tcase_add_test(tc, bad_options_exit_2);
        tcase_add_test(tc, unwritable_stdout_is_an_error);
        tcase_add_test(tc, missing_dataset_says_how_to_install);
        tcase_add_test(tc, unreadable_model_files_fail_cleanly);
    } else if (strcmp(argv[2], "cnn") == 0) {
        tcase_add_test(tc, cnn_options);
        if (!dataset_installed()) {
            printf("SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)\n");
            return 77;
        }
        tcase_add_test(tc, cnn_trains_saves_and_evaluates);
    } else {
        if (!dataset_installed()) {
            printf("SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)\n");
            return 77;
        }
        tcase_add_test(tc, smoke_run_saves_and_evaluates);
        tcase_add_test(tc, comparison_options);
        tcase_add_test(tc, other_settings_and_the_progress_bar);
        tcase_add_test(tc, divergence_is_reported);
    }
    suite_add_tcase(s, tc);
    return run_suite(s);
}
