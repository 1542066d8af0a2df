#define _DEFAULT_SOURCE /* mkdtemp */
#include "testutil.h"
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

double round_to(double x, int d)
{
    double k = pow(10, d);
    return round(x * k) / k;
}

ad_tensor *rand_tensor(ad_rng *r, ad_shape s, double lo, double hi)
{
    ad_tensor *t = ad_tensor_new(AD_F64, s);
    ck_assert_ptr_nonnull(t);
    ad_tensor_rand_uniform(t, r, lo, hi);
    return t;
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    ssize_t k;
    while ((k = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)k;
        if (cap - len < 2) {
            buf = realloc(buf, cap *= 2);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[len] = 0;
    return buf;
}

/* run_program, with stdout on out_fd instead when out_fd >= -1 (-1: closed). */
static run_result run(const char *prog, const char *const *args, const char *dir, const char *env_name,
                      const char *env_value, int out_fd)
{
    char outp[] = "/tmp/bp-run-out-XXXXXX", errp[] = "/tmp/bp-run-err-XXXXXX";
    int fo = mkstemp(outp), fe = mkstemp(errp);
    ck_assert(fo >= 0 && fe >= 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        const char *argv[130] = {prog};
        int n = 1;
        for (; args[n - 1] && n < 129; n++) argv[n] = args[n - 1];
        argv[n] = NULL;
        if (env_name) setenv(env_name, env_value, 1);
        if (out_fd == -1) close(1);
        else dup2(out_fd >= 0 ? out_fd : fo, 1);
        dup2(fe, 2);
        if (dir && chdir(dir) != 0) _exit(126);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    int ws;
    waitpid(pid, &ws, 0);
    run_result r;
    lseek(fo, 0, SEEK_SET);
    lseek(fe, 0, SEEK_SET);
    r.out = slurp_fd(fo);
    r.err = slurp_fd(fe);
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    close(fo);
    close(fe);
    unlink(outp);
    unlink(errp);
    return r;
}

run_result run_program(const char *prog, const char *const *args, const char *dir,
                       const char *env_name, const char *env_value)
{
    return run(prog, args, dir, env_name, env_value, -2);
}

run_result run_program_stdout(const char *prog, const char *const *args, const char *out_path)
{
    int fd = out_path ? open(out_path, O_WRONLY) : -1;
    ck_assert_msg(!out_path || fd >= 0, "cannot open %s", out_path);
    run_result r = run(prog, args, NULL, NULL, NULL, fd);
    if (fd >= 0) close(fd);
    return r;
}

void run_done(run_result *r)
{
    free(r->out);
    free(r->err);
}

ad_node *lecture_neuron(ad_graph *g)
{
    ad_node *x0 = ad_var(g, "x0", -1), *x1 = ad_var(g, "x1", -2), *w0 = ad_var(g, "w0", 2);
    ad_node *w1 = ad_var(g, "w1", -3), *w2 = ad_var(g, "w2", -3);
    /* one statement per node: C leaves the order of evaluating arguments open */
    ad_node *m0 = ad_mul(g, w0, x0);
    ad_node *m1 = ad_mul(g, w1, x1);
    ad_node *s = ad_add(g, ad_add(g, m0, m1), w2);
    ad_node *e = ad_exp(g, ad_neg(g, s));
    return ad_recip(g, ad_add(g, ad_const_scalar(g, 1), e));
}

void scratch_dir_make(char *dir, size_t len, const char *prefix)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, len, "%s/%s_XXXXXX", t && *t ? t : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"), prefix);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

void scratch_dir_remove(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
