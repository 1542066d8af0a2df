/* The demos (moons, curve_fit, simulate, lecture), run as a user runs them: --help, small
 * runs that finish and draw their pictures, the same output for the same seed, one clear line
 * and exit code 2 for every kind of bad option; the lecture demo against the CLI's golden
 * files and the CLI itself; and the SVG writer (plot.h) on its own. */
#include "plot.h"
#include "testutil.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *moons, *curve_fit, *simulate, *lecture, *cli; /* the binaries */
static const char *golden;                                         /* tests/golden */
static char tmpdir[] = "/tmp/test_demos-XXXXXX";

/* Runs prog with args (NULL-terminated) in tmpdir. */
static run_result run(const char *prog, const char *const *args)
{
    return run_program(prog, args, tmpdir, NULL, NULL);
}

static void done(run_result *r) { run_done(r); }

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = slurp_fd(fileno(f));
    fclose(f);
    return buf;
}

static char *tmp_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* A complete SVG document as plot.c writes it. */
static void assert_svg(const char *path)
{
    char *s = read_file(path);
    ck_assert_msg(s != NULL, "%s was not written", path);
    ck_assert_msg(strncmp(s, "<svg ", 5) == 0, "%s does not start with <svg", path);
    size_t n = strlen(s);
    ck_assert_msg(n > 7 && strcmp(s + n - 7, "</svg>\n") == 0, "%s does not end with </svg>", path);
    ck_assert_msg(!strstr(s, "nan") && !strstr(s, "inf"), "%s holds a non-finite number", path);
    free(s);
}

/* Output without the lines that hold timings (which vary from run to run). */
static char *without_timings(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    ck_assert_ptr_nonnull(out);
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s + 1) : strlen(s);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, s);
        if (!strstr(line, " ms ") && !strstr(line, "faster")) {
            memcpy(o, s, len);
            o += len;
        }
        s += len;
    }
    *o = 0;
    return out;
}


/* ---- every demo: --help and bad options ---------------------------------------------------- */

START_TEST(help_exits_zero)
{
    const char *progs[] = {moons, curve_fit, simulate, lecture};
    const char *names[] = {"moons", "curve_fit", "simulate", "lecture"};
    for (int i = 0; i < 4; i++) {
        run_result r = run(progs[i], ARGS("--help"));
        ck_assert_int_eq(r.status, 0);
        char want[64];
        snprintf(want, sizeof want, "usage: %s", names[i]);
        ck_assert_msg(strncmp(r.out, want, strlen(want)) == 0, "%s --help: %s", names[i], r.out);
        ck_assert_str_eq(r.err, "");
        done(&r);
    }
}
END_TEST

START_TEST(bad_options_exit_2_with_one_line)
{
    struct { const char **prog; const char *name; const char *const *args; const char *msg; } cases[] = {
        {&moons, "moons", ARGS("--bogus"), "moons: unknown option '--bogus' (moons --help for usage)\n"},
        {&moons, "moons", ARGS("--steps", "abc"), "moons: --steps takes a whole number from 1 to 100000, not 'abc' (moons --help for usage)\n"},
        {&moons, "moons", ARGS("--steps=0"), NULL},
        {&moons, "moons", ARGS("--points", "3"), NULL},
        {&moons, "moons", ARGS("--noise", "-1"), NULL},
        {&moons, "moons", ARGS("--rate", "nan"), NULL},
        {&moons, "moons", ARGS("--seed", "1.5"), NULL},
        {&moons, "moons", ARGS("--svg", ""), NULL},
        {&moons, "moons", ARGS("--steps"), "moons: --steps needs a value (moons --help for usage)\n"},
        {&moons, "moons", ARGS("extra"), NULL},
        {&curve_fit, "curve_fit", ARGS("--hidden", "0"), "curve_fit: --hidden takes a whole number from 1 to 1024, not '0' (curve_fit --help for usage)\n"},
        {&curve_fit, "curve_fit", ARGS("--outliers", "0.9"), NULL},
        {&curve_fit, "curve_fit", ARGS("--points", "many"), NULL},
        {&curve_fit, "curve_fit", ARGS("--lambda"), NULL},
        {&curve_fit, "curve_fit", ARGS("-x"), NULL},
        {&simulate, "simulate", ARGS("--start", "1"), "simulate: --start takes two numbers C,K from 0 to 1000, not '1' (simulate --help for usage)\n"},
        {&simulate, "simulate", ARGS("--start", "a,b"), NULL},
        {&simulate, "simulate", ARGS("--damping", "-1"), NULL},
        {&simulate, "simulate", ARGS("--max-iter", "0"), NULL},
        {&simulate, "simulate", ARGS("--steps", "5"), NULL},
        {&simulate, "simulate", ARGS("--steps", "100.5"), NULL},
        {&simulate, "simulate", ARGS("--what"), NULL},
        {&lecture, "lecture", ARGS("--example", "4"), "lecture: --example takes 1, 2 or 3, not '4' (lecture --help for usage)\n"},
        {&lecture, "lecture", ARGS("--digits", "18"), NULL},
        {&lecture, "lecture", ARGS("--digits", "x"), NULL},
        {&lecture, "lecture", ARGS("--svg"), NULL},
        {&lecture, "lecture", ARGS("z*(x+y)"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result r = run(*cases[i].prog, cases[i].args);
        ck_assert_msg(r.status == 2, "case %zu: exit %d (%s)", i, r.status, r.err);
        ck_assert_msg(strcmp(r.out, "") == 0, "case %zu printed on stdout: %s", i, r.out);
        size_t n = strlen(r.err), len = strlen(cases[i].name);
        ck_assert_msg(n > len + 2 && strncmp(r.err, cases[i].name, len) == 0 && r.err[len] == ':',
                      "case %zu: %s", i, r.err);
        ck_assert_msg(strchr(r.err, '\n') == r.err + n - 1, "case %zu: not one line: %s", i, r.err);
        if (cases[i].msg) ck_assert_str_eq(r.err, cases[i].msg);
        done(&r);
    }
}
END_TEST

/* ---- small runs ------------------------------------------------------------------------------ */

START_TEST(moons_small_run_agrees_and_draws)
{
    const char *svg = tmp_path("moons.svg");
    run_result r = run(moons, ARGS("--points", "24", "--steps", "5", "--svg", svg));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(r.err, "");
    ck_assert_ptr_nonnull(strstr(r.out, "final losses agree"));
    ck_assert_ptr_nonnull(strstr(r.out, "scalar graph (one ad_node per number)"));
    assert_svg(svg);
    /* the same seed gives the same output, timings aside */
    run_result r2 = run(moons, ARGS("--points", "24", "--steps", "5", "--svg", svg));
    char *a = without_timings(r.out), *b = without_timings(r2.out);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    done(&r);
    done(&r2);
    /* the default picture goes to the current folder */
    r = run(moons, ARGS("--points", "8", "--steps", "1"));
    ck_assert_int_eq(r.status, 0);
    assert_svg(tmp_path("moons.svg"));
    done(&r);
}
END_TEST

START_TEST(curve_fit_small_run_is_stable)
{
    const char *svg = tmp_path("cf.svg");
    run_result r = run(curve_fit, ARGS("--points", "12", "--hidden", "4", "--steps", "30", "--svg", svg));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "RMS distance to sin(x)"));
    assert_svg(svg);
    run_result r2 = run(curve_fit, ARGS("--points", "12", "--hidden", "4", "--steps", "30", "--svg", svg));
    ck_assert_str_eq(r.out, r2.out);
    done(&r);
    done(&r2);
    /* another seed, other data */
    r2 = run(curve_fit, ARGS("--points", "12", "--hidden", "4", "--steps", "30", "--svg", svg, "--seed", "2"));
    ck_assert_int_eq(r2.status, 0);
    r = run(curve_fit, ARGS("--points", "12", "--hidden", "4", "--steps", "30", "--svg", svg));
    ck_assert_str_ne(r.out, r2.out);
    done(&r);
    done(&r2);
}
END_TEST

START_TEST(simulate_checks_the_gradient_and_recovers_the_parameters)
{
    const char *svg = tmp_path("sim.svg");
    run_result r = run(simulate, ARGS("--noise", "0", "--eps", "1e-16", "--svg", svg));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "gradcheck against central differences (eps 1e-6): passed"));
    ck_assert_ptr_nonnull(strstr(r.out, "converged after"));
    /* noise-free observations: the fit finds the true parameters */
    ck_assert_ptr_nonnull(strstr(r.out, "  fitted     0.500000   4.000000\n"));
    assert_svg(svg);
    done(&r);
    /* an eta far too large: not converged, one line, exit 1 */
    r = run(simulate, ARGS("--rate", "50", "--max-iter", "200", "--svg", svg));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strncmp(r.err, "simulate: optim_gd: ", 20) == 0, "%s", r.err);
    done(&r);
}
END_TEST

START_TEST(unwritable_picture_is_an_error)
{
    run_result r = run(moons, ARGS("--points", "8", "--steps", "1", "--svg", "/nonexistent-dir/m.svg"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "moons: plot: cannot write '/nonexistent-dir/m.svg': No such file or directory\n");
    done(&r);
    r = run(curve_fit, ARGS("--points", "8", "--steps", "1", "--svg", "/nonexistent-dir/c.svg"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "curve_fit: plot: cannot write '/nonexistent-dir/c.svg': No such file or directory\n");
    done(&r);
}
END_TEST

/* ---- the lecture demo prints what the CLI prints ---------------------------------------------- */

/* Issue 20, defect 10: the demos and every --help exited 0 when their output could not be
 * written (a full disk, a closed stdout).  Each is run with stdout on /dev/full and closed. */
START_TEST(unwritable_stdout_is_an_error)
{
    char svg[] = "/tmp/bp-demo-svg-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(svg));
    char pic[64];
    snprintf(pic, sizeof pic, "%s/p.svg", svg);
    const struct { const char *prog; const char *const *args; } runs[] = {
        {moons, ARGS("--points", "20", "--steps", "5", "--svg", pic)},
        {curve_fit, ARGS("--points", "12", "--hidden", "4", "--steps", "20", "--svg", pic)},
        {simulate, ARGS("--steps", "50", "--svg", pic)},
        {lecture, ARGS("--example", "1")},
        {cli, ARGS("x*y", "x=1", "y=2")},
        {cli, ARGS("--functions")},
        {moons, ARGS("--help")}, {curve_fit, ARGS("--help")}, {simulate, ARGS("--help")}, {lecture, ARGS("--help")},
        {cli, ARGS("--help")},
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
        for (int closed = 0; closed < 2; closed++) {
            run_result r = run_program_stdout(runs[i].prog, runs[i].args, closed ? NULL : "/dev/full");
            ck_assert_msg(r.status == 1 && strstr(r.err, "cannot write the output"), "%s %s with stdout %s: exit %d, stderr: %s",
                          runs[i].prog, runs[i].args[0], closed ? "closed" : "on /dev/full", r.status, r.err);
            run_done(&r);
        }
    unlink(pic);
    rmdir(svg);
}
END_TEST

/* Issue 20, defect 10: lecture --svg rewrote its pictures in place, so a full disk left a torn
 * file.  It now writes a new file and renames it: a hard link to the old picture keeps the old
 * bytes, which an in-place rewrite would have changed too. */
START_TEST(lecture_replaces_pictures_atomically)
{
    char dir[] = "/tmp/bp-lecture-svg-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char pic[64], keep[64];
    snprintf(pic, sizeof pic, "%s/lecture-1.svg", dir);
    snprintf(keep, sizeof keep, "%s/keep.svg", dir);
    FILE *f = fopen(pic, "w");
    ck_assert_ptr_nonnull(f);
    fputs("old", f);
    fclose(f);
    ck_assert_int_eq(link(pic, keep), 0);
    run_result r = run(lecture, ARGS("--example", "1", "--svg", dir));
    ck_assert_msg(r.status == 0, "%s", r.err);
    run_done(&r);
    char buf[8] = "";
    f = fopen(keep, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_str_eq(buf, "old");
    f = fopen(pic, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_str_ne(buf, "old");
    unlink(pic), unlink(keep), rmdir(dir);
}
END_TEST

START_TEST(lecture_holds_the_golden_walks)
{
    run_result r = run(lecture, ARGS("--digits", "2"));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    const char *files[] = {"sum.txt", "neuron.txt", "copy.txt"};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", golden, files[i]);
        char *want = read_file(path);
        ck_assert_msg(want != NULL, "missing %s", path);
        ck_assert_msg(strstr(r.out, want) != NULL, "the lecture demo does not print %s:\n%s", files[i], want);
        free(want);
    }
    ck_assert_int_eq(strstr(r.out, ": the same\n") != NULL, 1);
    ck_assert_ptr_null(strstr(r.out, "DIFFERENT"));
    done(&r);
}
END_TEST

START_TEST(lecture_agrees_with_the_cli_at_any_precision)
{
    const char *const ex[3][7] = {
        {"z*(x+y)", "x=2", "y=3", "z=-2", NULL},
        {"1/(1+exp(-(w0*x0+w1*x1+w2)))", "x0=-1", "x1=-2", "w0=2", "w1=-3", "w2=-3", NULL},
        {"x*x + x", "x=3", NULL},
    };
    const char *digits[] = {"2", "1", "-1", "5"};
    for (int d = 0; d < 4; d++)
        for (int k = 0; k < 3; k++) {
            const char *args[12] = {"--digits", digits[d], "--trace"};
            int n = 3;
            for (int j = 0; ex[k][j]; j++) args[n++] = ex[k][j];
            args[n] = NULL;
            run_result c = run(cli, args);
            ck_assert_int_eq(c.status, 0);
            char num[4];
            snprintf(num, sizeof num, "%d", k + 1);
            run_result l = run(lecture, ARGS("--example", num, "--digits", digits[d]));
            ck_assert_msg(l.status == 0, "lecture --example %s --digits %s: exit %d %s", num, digits[d], l.status, l.err);
            ck_assert_msg(strstr(l.out, c.out) != NULL, "example %d, digits %s: the CLI prints\n%s\nthe demo\n%s", k + 1,
                          digits[d], c.out, l.out);
            done(&c);
            done(&l);
        }
}
END_TEST

START_TEST(lecture_draws_the_graphs)
{
    run_result r = run(lecture, ARGS("--example", "2", "--svg", tmpdir));
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    char *want = tmp_path("lecture-2.svg");
    ck_assert_ptr_nonnull(strstr(r.out, want));
    char *svg = read_file(want);
    ck_assert_ptr_nonnull(svg);
    ck_assert_ptr_nonnull(strstr(svg, "<svg"));
    free(svg);
    done(&r);
}
END_TEST

/* Issue 18: lecture --part, the training and regularisation slides as pages and pictures, each
 * with the behaviour the slide states. */
START_TEST(lecture_parts_draw_the_slides)
{
    static const char *const parts[] = {"momentum", "minibatch", "dropout", "early-stopping"};
    static const char *const says[] = {
        "it at the saddle.\n", "The SGD loss rose on ", "the test-time rule, (1 - p) z = ", "and the model keeps epoch "};
    for (int i = 0; i < 4; i++) {
        run_result r = run(lecture, ARGS("--part", parts[i], "--svg", tmpdir));
        ck_assert_msg(r.status == 0, "%s: exit %d: %s", parts[i], r.status, r.err);
        ck_assert_str_eq(r.err, "");
        ck_assert_msg(strstr(r.out, says[i]) != NULL, "%s: no '%s' in\n%s", parts[i], says[i], r.out);
        char name[64];
        snprintf(name, sizeof name, "lecture-%s.svg", parts[i]);
        char *path = tmp_path(name);
        ck_assert_ptr_nonnull(strstr(r.out, path));
        assert_svg(path);
        done(&r);
    }
    /* momentum gets through the saddle to a minimum, where plain descent stops at the saddle */
    run_result r = run(lecture, ARGS("--part", "momentum"));
    ck_assert_ptr_nonnull(strstr(r.out, "gradient descent: stops after 28 steps at (0.004, 0.001), L = 0.0000"));
    ck_assert_ptr_nonnull(strstr(r.out, "at (0.001, 0.997),\n  L = -0.2500"));
    ck_assert_ptr_null(strstr(r.out, "picture:"));
    done(&r);
    r = run(lecture, ARGS("--part", "bogus"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.out, "");
    ck_assert_str_eq(r.err, "lecture: --part takes momentum, minibatch, dropout or early-stopping, not 'bogus' "
                            "(lecture --help for usage)\n");
    done(&r);
    r = run(lecture, ARGS("--part", "dropout", "--example", "1"));
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.out, "");
    done(&r);
    r = run(lecture, ARGS("--part", "minibatch", "--svg", "/nonexistent/folder"));
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent/folder/lecture-minibatch.svg"));
    done(&r);
}
END_TEST

/* ---- plot.h on its own ------------------------------------------------------------------------- */

START_TEST(plot_skips_nonfinite_values)
{
    double x[6] = {0, 1, 2, 3, 4, 5}, y[6] = {0, 1, NAN, 3, INFINITY, -INFINITY}, all[3] = {NAN, NAN, INFINITY};
    plot_series s[] = {{.x = x, .y = y, .n = 6, .label = "broken"},
                       {.x = x, .y = y, .n = 6, .label = "dots", .points = true},
                       {.y = all, .n = 3, .label = "nothing finite"}};
    char err[256] = "";
    const char *p = tmp_path("nonfinite.svg");
    ck_assert_int_eq(plot_lines_svg(p, &(plot_cfg){.title = "t"}, s, 3, err, sizeof err), 0);
    assert_svg(p);
    char *svg = read_file(p);
    /* the line breaks at the NaN and the infinities: pieces "M0.0 0.0L.." and "M.." */
    const char *d = strstr(svg, " d=\"M");
    ck_assert_ptr_nonnull(d);
    const char *end = strchr(d + 4, '"'), *second = strchr(d + 5, 'M');
    ck_assert_msg(second && second < end, "the line does not break at the NaN");
    free(svg);
    ck_assert_int_eq(plot_lines_svg(p, NULL, &s[2], 1, err, sizeof err), 0);
    assert_svg(p);
    ck_assert_int_eq(plot_lines_svg(p, NULL, NULL, 0, err, sizeof err), 0);
    assert_svg(p);
}
END_TEST

START_TEST(plot_ticks_labels_and_escaping)
{
    double x[4] = {1, 4, 7, 10}, y[4] = {0, 0.31, 0.93, 0.5};
    plot_series s = {.x = x, .y = y, .n = 4, .label = "a<b & \"c\""};
    char err[256];
    const char *p = tmp_path("ticks.svg");
    ck_assert_int_eq(plot_lines_svg(p, &(plot_cfg){.title = "T&T", .xlabel = "epoch", .ylabel = "loss"}, &s, 1,
                                    err, sizeof err), 0);
    char *svg = read_file(p);
    ck_assert_ptr_nonnull(svg);
    const char *want[] = {">0.0</text>", ">0.2</text>", ">0.8</text>", ">1.0</text>", ">2</text>", ">10</text>",
                          ">epoch</text>", ">loss</text>", "a&lt;b &amp; &quot;c&quot;", "T&amp;T", "width=\"640\"",
                          "height=\"400\""};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(svg, want[i]) != NULL, "missing %s", want[i]);
    ck_assert_ptr_null(strstr(svg, ">-0.0<"));
    free(svg);
    /* a control character (not allowed in XML) and a chart too small to draw in */
    s.label = "bell\a";
    ck_assert_int_eq(plot_lines_svg(p, &(plot_cfg){.width = 10, .height = 10}, &s, 1, err, sizeof err), 0);
    svg = read_file(p);
    ck_assert_ptr_nonnull(strstr(svg, ">bell?</text>"));
    ck_assert_ptr_nonnull(strstr(svg, "width=\"200\" height=\"150\""));
    free(svg);
}
END_TEST

START_TEST(plot_errors_and_atomic_writes)
{
    double y[2] = {1, 2};
    plot_series s = {.y = y, .n = 2};
    char err[256];
    const char *p = tmp_path("keep.svg");
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs("old", f);
    fclose(f);
    plot_series bad = {.y = NULL, .n = 2};
    ck_assert_int_eq(plot_lines_svg(p, NULL, &bad, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "series 0 has no y values"));
    char *old = read_file(p);
    ck_assert_str_eq(old, "old"); /* untouched */
    free(old);
    bad = (plot_series){.y = y, .n = -1};
    ck_assert_int_eq(plot_lines_svg(p, NULL, &bad, 1, err, sizeof err), -1);
    ck_assert_int_eq(plot_lines_svg(NULL, NULL, &s, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "plot: no file name given");
    ck_assert_int_eq(plot_lines_svg("/nonexistent-dir/x.svg", NULL, &s, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "plot: cannot write '/nonexistent-dir/x.svg': No such file or directory");
    ck_assert_int_eq(plot_lines_svg("/nonexistent-dir/x.svg", NULL, &s, 1, NULL, 0), -1); /* err may be NULL */
    /* success replaces the file and leaves no temporary file behind */
    ck_assert_int_eq(plot_lines_svg(p, NULL, &s, 1, err, sizeof err), 0);
    assert_svg(p);
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));)
        ck_assert_msg(strncmp(e->d_name, "keep.svg.", 9) != 0, "left behind: %s", e->d_name);
    closedir(d);
}
END_TEST

START_TEST(plot_field_with_contour)
{
    enum { NX = 20, NY = 10 };
    double z[NX * NY];
    for (int j = 0; j < NY; j++)
        for (int i = 0; i < NX; i++) z[j * NX + i] = (i - 9.5) * 0.2 + (j == 3 && i == 3 ? NAN : 0);
    double px[2] = {-0.5, 0.5}, py[2] = {0, 0.5};
    plot_series s = {.x = px, .y = py, .n = 2, .label = "points", .points = true};
    plot_field fd = {.z = z, .nx = NX, .ny = NY, .x0 = -1, .x1 = 1, .y0 = 0, .y1 = 1, .level_label = "f = 0"};
    char err[256];
    const char *p = tmp_path("field.svg");
    ck_assert_int_eq(plot_field_svg(p, &(plot_cfg){.title = "field"}, &fd, &s, 1, err, sizeof err), 0);
    assert_svg(p);
    char *svg = read_file(p);
    ck_assert_ptr_nonnull(strstr(svg, "#c8c8c8")); /* the NaN cell */
    ck_assert_ptr_nonnull(strstr(svg, ">f = 0</text>"));
    ck_assert_ptr_nonnull(strstr(svg, "stroke=\"#111\"")); /* the contour */
    free(svg);
    plot_field bad = fd;
    bad.nx = 1;
    ck_assert_int_eq(plot_field_svg(p, NULL, &bad, NULL, 0, err, sizeof err), -1);
    bad = fd;
    bad.x1 = bad.x0;
    ck_assert_int_eq(plot_field_svg(p, NULL, &bad, NULL, 0, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "rectangle"));
    /* a field of NaN only: grey, no contour, still a picture */
    for (int i = 0; i < NX * NY; i++) z[i] = NAN;
    ck_assert_int_eq(plot_field_svg(p, NULL, &fd, NULL, 0, err, sizeof err), 0);
    assert_svg(p);
}
END_TEST

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: test_demos MOONS CURVE_FIT SIMULATE LECTURE BACKPROP GOLDEN_DIR\n");
        return 2;
    }
    moons = argv[1], curve_fit = argv[2], simulate = argv[3], lecture = argv[4], cli = argv[5];
    golden = argv[6];
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("demos");
    TCase *tc = tcase_create("demos");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, help_exits_zero);
    tcase_add_test(tc, bad_options_exit_2_with_one_line);
    tcase_add_test(tc, moons_small_run_agrees_and_draws);
    tcase_add_test(tc, curve_fit_small_run_is_stable);
    tcase_add_test(tc, simulate_checks_the_gradient_and_recovers_the_parameters);
    tcase_add_test(tc, unwritable_picture_is_an_error);
    tcase_add_test(tc, unwritable_stdout_is_an_error);
    tcase_add_test(tc, lecture_replaces_pictures_atomically);
    tcase_add_test(tc, lecture_holds_the_golden_walks);
    tcase_add_test(tc, lecture_agrees_with_the_cli_at_any_precision);
    tcase_add_test(tc, lecture_draws_the_graphs);
    tcase_add_test(tc, lecture_parts_draw_the_slides);
    tcase_add_test(tc, plot_skips_nonfinite_values);
    tcase_add_test(tc, plot_ticks_labels_and_escaping);
    tcase_add_test(tc, plot_errors_and_atomic_writes);
    tcase_add_test(tc, plot_field_with_contour);
    suite_add_tcase(s, tc);
    int status = run_suite(s);
    remove_tmpdir();
    return status;
}
