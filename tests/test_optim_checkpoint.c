/* Checkpoints: training resumed from a saved optimizer (and the model's parameters, saved
 * with ad_safetensors_save beside it) ends on the same bits as the uninterrupted run, for
 * every kind, both dtypes, with schedules and clipping; the file's layout; and loads that do
 * not fit are refused without touching the optimizer. */
#include "testutil.h"
#include "optim.h"
#include "ad_io.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 32, IN = 3, OUT = 2, J = 4 };

static char dir[64];

static void make_dir(void)
{
    strcpy(dir, "/tmp/test_optim_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    char p[128];
    static const char *files[] = {"model.safetensors", "optim.safetensors", "other.safetensors", "bad.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        remove(p);
    }
    rmdir(dir);
}

static const char *path_of(const char *name)
{
    static char p[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* A linear model y = x W^T + b fitted by minibatch SGD to a fixed random linear target. */
typedef struct {
    ad_dtype dt;
    ad_tensor *w, *b;
    double x[N][IN], y[N][OUT];
} model;

static void model_init(model *m, ad_dtype dt)
{
    m->dt = dt;
    m->w = ad_param_new("w", dt, AD_SHAPE(OUT, IN));
    m->b = ad_param_new("b", dt, AD_SHAPE(OUT));
    ck_assert_ptr_nonnull(m->w);
    ck_assert_ptr_nonnull(m->b);
    ad_rng r;
    ad_rng_seed(&r, 2024);
    ad_tensor_rand_normal(m->w, &r, 0, 0.5);
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < IN; i++) m->x[n][i] = ad_rng_normal(&r);
        for (int o = 0; o < OUT; o++) m->y[n][o] = (o + 1) * m->x[n][0] - m->x[n][2] + 0.5 * o;
    }
}

static void model_free(model *m)
{
    ad_tensor_free(m->w);
    ad_tensor_free(m->b);
}

static ad_node *model_loss(ad_graph *g, const int64_t *batch, int64_t j, void *user)
{
    model *m = user;
    double xb[J * IN], yb[J * OUT];
    for (int64_t k = 0; k < j; k++) {
        memcpy(xb + k * IN, m->x[batch[k]], sizeof m->x[0]);
        memcpy(yb + k * OUT, m->y[batch[k]], sizeof m->y[0]);
    }
    ad_node *x = ad_const(g, m->dt, AD_SHAPE(j, IN), xb), *y = ad_const(g, m->dt, AD_SHAPE(j, OUT), yb);
    return ad_mse(g, ad_linear(g, x, ad_param(g, m->w), ad_param(g, m->b)), y);
}

static void train(optim *o, model *m, int64_t steps)
{
    optim_sgd_cfg c = {.n = N, .batch = J, .steps = steps, .seed = 99};
    ad_status st = optim_sgd(o, model_loss, m, &c, NULL);
    ck_assert_msg(st == AD_OK, "%s", optim_error(o));
}

static optim *new_optim(model *m, const optim_cfg *c)
{
    ad_tensor *ps[] = {m->w, m->b};
    char err[256];
    optim *o = optim_new(ps, 2, c, err, sizeof err);
    ck_assert_msg(o != NULL, "%s", err);
    return o;
}

/* The configurations resumed below: every kind and form, schedules, clipping, decay. */
static optim_cfg config(int i)
{
    optim_cfg c;
    switch (i) {
    case 0:
        c = optim_defaults(OPTIM_GD, 0.05);
        c.schedule = (optim_schedule){.kind = OPTIM_SCHED_STEP, .step_size = 3, .gamma = 0.7};
        return c;
    case 1:
        c = optim_defaults(OPTIM_MOMENTUM, 0.02);
        c.schedule = (optim_schedule){.kind = OPTIM_SCHED_COSINE, .t_max = 8, .eta_min = 0.001, .warmup = 3};
        c.clip_norm = 1.0;
        return c;
    case 2:
        c = optim_defaults(OPTIM_MOMENTUM, 0.02);
        c.form = OPTIM_FORM_PYTORCH;
        c.nesterov = true;
        c.weight_decay = 0.01;
        return c;
    case 3:
        c = optim_defaults(OPTIM_ADAM, 0.01);
        c.clip_value = 0.5;
        c.schedule = (optim_schedule){.kind = OPTIM_SCHED_EXPONENTIAL, .gamma = 0.95};
        return c;
    case 4: return optim_defaults(OPTIM_ADAMW, 0.01);
    default:
        c = optim_defaults(OPTIM_RMSPROP, 0.005);
        c.momentum = 0.5;
        return c;
    }
}
enum { NCONFIGS = 6 };

START_TEST(resume_reproduces_the_uninterrupted_run)
{
    /* _i: configuration _i / 2, dtype by parity.  10 steps straight, against 4 steps, save
     * (parameters and optimizer), free everything, rebuild from the files with a different
     * base rate (the checkpoint's must win), 6 more steps. */
    optim_cfg c = config(_i / 2);
    ad_dtype dt = _i % 2 ? AD_F32 : AD_F64;
    size_t wbytes = OUT * IN * ad_dtype_size(dt), bbytes = OUT * ad_dtype_size(dt);
    make_dir();

    model m;
    model_init(&m, dt);
    optim *o = new_optim(&m, &c);
    train(o, &m, 10);
    unsigned char w_straight[OUT * IN * 8], b_straight[OUT * 8];
    memcpy(w_straight, ad_tensor_data(m.w), wbytes);
    memcpy(b_straight, ad_tensor_data(m.b), bbytes);
    optim_free(o);
    model_free(&m);

    model_init(&m, dt);
    o = new_optim(&m, &c);
    train(o, &m, 4);
    char err[256];
    const char *names[] = {"w", "b"};
    ad_tensor *ps[] = {m.w, m.b};
    ck_assert_msg(ad_safetensors_save(path_of("model.safetensors"), 2, names, ps, 0, NULL, err, sizeof err) == AD_OK,
                  "%s", err);
    ck_assert_msg(optim_save(o, path_of("optim.safetensors")) == AD_OK, "%s", optim_error(o));
    optim_free(o);
    model_free(&m);

    model_init(&m, dt);
    ad_tensor_fill(m.w, 0); /* the file must supply the weights */
    ad_tensor_file *f = ad_safetensors_load(path_of("model.safetensors"), err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    memcpy(ad_tensor_data(m.w), ad_tensor_data(ad_tensor_file_find(f, "w")), wbytes);
    memcpy(ad_tensor_data(m.b), ad_tensor_data(ad_tensor_file_find(f, "b")), bbytes);
    ad_tensor_file_free(f);
    optim_cfg other = c;
    other.lr *= 3;
    o = new_optim(&m, &other);
    ck_assert_msg(optim_load(o, path_of("optim.safetensors")) == AD_OK, "%s", optim_error(o));
    ck_assert_int_eq(optim_steps(o), 4);
    ck_assert_double_eq(optim_get_cfg(o).lr, c.lr);
    train(o, &m, 6);
    ck_assert_msg(!memcmp(ad_tensor_data(m.w), w_straight, wbytes) && !memcmp(ad_tensor_data(m.b), b_straight, bbytes),
                  "%s %s: resumed run differs", optim_kind_name(c.kind), ad_dtype_name(dt));
    /* and the run really moved: the weights are not the initial ones */
    model fresh;
    model_init(&fresh, dt);
    ck_assert(memcmp(ad_tensor_data(fresh.w), w_straight, wbytes) != 0);
    model_free(&fresh);
    optim_free(o);
    model_free(&m);
    remove_dir();
}
END_TEST

START_TEST(file_layout)
{
    /* Adam after 3 steps with the rate changed by hand: buffers state.<i>.<name> with the
     * parameters' shapes, and the step count and configuration as metadata. */
    make_dir();
    model m;
    model_init(&m, AD_F64);
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.01);
    optim *o = new_optim(&m, &c);
    train(o, &m, 3);
    ck_assert_int_eq(optim_set_lr(o, 0.1), AD_OK); /* 0.1 prints as 0.10000000000000001 */
    ck_assert_int_eq(optim_save(o, path_of("optim.safetensors")), AD_OK);
    char err[256];
    ad_tensor_file *f = ad_safetensors_load(path_of("optim.safetensors"), err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(ad_tensor_file_count(f), 4);
    ad_tensor *m0 = ad_tensor_file_find(f, "state.0.exp_avg"), *v1 = ad_tensor_file_find(f, "state.1.exp_avg_sq");
    ck_assert_ptr_nonnull(m0);
    ck_assert_ptr_nonnull(v1);
    ck_assert_int_eq(ad_tensor_shape(m0).rank, 2);
    ck_assert_int_eq(ad_tensor_shape(m0).dim[1], IN);
    ck_assert_int_eq(ad_tensor_shape(v1).dim[0], OUT);
    ck_assert_ptr_nonnull(ad_tensor_file_find(f, "state.1.exp_avg"));
    ck_assert_ptr_nonnull(ad_tensor_file_find(f, "state.0.exp_avg_sq"));
    ck_assert_mem_eq(ad_tensor_data(m0), ad_tensor_data(optim_state(o, 0, "exp_avg")), OUT * IN * sizeof(double));
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.version"), "1");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.kind_name"), "adam");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.step"), "3");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.params"), "2");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.lr"), "0.10000000000000001");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.beta2"), "0.999");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.eps"), "1e-08");
    ck_assert_str_eq(ad_tensor_file_meta(f, "optim.schedule.kind"), "0");
    ad_tensor_file_free(f);
    optim_free(o);
    model_free(&m);
    remove_dir();
}
END_TEST

/* Loading path into an optimizer of cfg over m must fail with st and a message holding want,
 * leaving the optimizer at step 0 with zero state. */
static void load_refused(model *m, optim_cfg c, const char *path, ad_status st, const char *want)
{
    optim *o = new_optim(m, &c);
    ck_assert_int_eq(optim_load(o, path), st);
    ck_assert_msg(strstr(optim_error(o), want) != NULL, "message \"%s\" lacks \"%s\"", optim_error(o), want);
    ck_assert_int_eq(optim_steps(o), 0);
    ck_assert_double_eq(optim_get_cfg(o).lr, c.lr);
    ad_tensor *s = optim_state(o, 0, "velocity");
    for (int64_t k = 0; s && k < ad_tensor_size(s); k++) ck_assert_double_eq(ad_tensor_get(s, k), 0);
    optim_free(o);
}

START_TEST(loads_that_do_not_fit_are_refused)
{
    make_dir();
    model m, m32;
    model_init(&m, AD_F64);
    model_init(&m32, AD_F32);
    optim_cfg mom = optim_defaults(OPTIM_MOMENTUM, 0.01);
    optim *o = new_optim(&m, &mom);
    train(o, &m, 2);
    const char *ck = path_of("optim.safetensors");
    ck_assert_int_eq(optim_save(o, ck), AD_OK);
    optim_free(o);

    load_refused(&m, optim_defaults(OPTIM_ADAM, 0.01), ck, AD_ERR_FORMAT,
                 "the file is from a momentum optimizer, this one is adam");
    optim_cfg pt = mom;
    pt.form = OPTIM_FORM_PYTORCH;
    load_refused(&m, pt, ck, AD_ERR_FORMAT, "keeps 1 buffer(s) per parameter (velocity), this optimizer 1 "
                                               "(momentum_buffer)");
    load_refused(&m32, mom, ck, AD_ERR_FORMAT, "state.0.velocity is float64 [2,3], the parameter is float32 [2,3]");
    /* one parameter instead of two */
    ad_tensor *only_w[] = {m.w};
    o = optim_new(only_w, 1, &mom, NULL, 0);
    ck_assert_int_eq(optim_load(o, ck), AD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "the file has state for 2 parameters, this optimizer has 1"));
    optim_free(o);
    /* a transposed weight: same count, other shape */
    ad_tensor *wt = ad_param_new("w", AD_F64, AD_SHAPE(IN, OUT)), *ps[] = {wt, m.b};
    o = optim_new(ps, 2, &mom, NULL, 0);
    ck_assert_int_eq(optim_load(o, ck), AD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "state.0.velocity is float64 [2,3], the parameter is float64 [3,2]"));
    optim_free(o);
    ad_tensor_free(wt);

    load_refused(&m, mom, path_of("missing.safetensors"), AD_ERR_IO, "optim_load: ");
    /* a model file is not an optimizer checkpoint */
    const char *names[] = {"w"};
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(path_of("other.safetensors"), 1, names, &m.w, 0, NULL, err, sizeof err), AD_OK);
    load_refused(&m, mom, path_of("other.safetensors"), AD_ERR_FORMAT, "optim.version is missing, want \"1\"");
    /* a checkpoint with its configuration cut short, or made invalid */
    const char *meta[] = {"optim.version", "1", "optim.kind", "1", "optim.form", "0", "optim.nesterov", "0",
                          "optim.schedule.kind", "0", "optim.lr", "0.1", "optim.momentum", "zero"};
    ck_assert_int_eq(ad_safetensors_save(path_of("bad.safetensors"), 0, NULL, NULL, 7, meta, err, sizeof err), AD_OK);
    load_refused(&m, mom, path_of("bad.safetensors"), AD_ERR_FORMAT, "metadata optim.momentum = \"zero\": want a number in [0, 1)");
    meta[13] = "0.9";
    ck_assert_int_eq(ad_safetensors_save(path_of("bad.safetensors"), 0, NULL, NULL, 7, meta, err, sizeof err), AD_OK);
    load_refused(&m, mom, path_of("bad.safetensors"), AD_ERR_FORMAT, "metadata optim.weight_decay is missing");
    ck_assert_int_eq(optim_load(NULL, ck), AD_ERR_NULL);
    ck_assert_int_eq(optim_save(NULL, ck), AD_ERR_NULL);
    model_free(&m);
    model_free(&m32);
    remove_dir();
}
END_TEST

/* The metadata keys of a checkpoint, in the order optim_save writes them. */
static const char *const ckpt_keys[] = {
    "optim.version", "optim.kind", "optim.form", "optim.nesterov", "optim.schedule.kind", "optim.step", "optim.params",
    "optim.lr", "optim.momentum", "optim.weight_decay", "optim.beta1", "optim.beta2", "optim.alpha", "optim.eps",
    "optim.clip_norm", "optim.clip_value", "optim.schedule.step_size", "optim.schedule.gamma", "optim.schedule.t_max",
    "optim.schedule.eta_min", "optim.schedule.warmup", "optim.schedule.warmup_start"};
enum { NK = sizeof ckpt_keys / sizeof *ckpt_keys };

/* Copies the checkpoint src to dst (tensors and metadata) with metadata key set to value. */
static void edit_checkpoint(const char *src, const char *dst, const char *key, const char *value)
{
    char err[256];
    ad_tensor_file *f = ad_safetensors_load(src, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    const char *meta[2 * NK];
    for (int k = 0; k < NK; k++) {
        meta[2 * k] = ckpt_keys[k];
        meta[2 * k + 1] = strcmp(ckpt_keys[k], key) ? ad_tensor_file_meta(f, ckpt_keys[k]) : value;
        ck_assert_ptr_nonnull(meta[2 * k + 1]);
    }
    int n = ad_tensor_file_count(f);
    const char *names[8];
    ad_tensor *ts[8];
    ck_assert_int_le(n, 8);
    for (int i = 0; i < n; i++) names[i] = ad_tensor_file_name(f, i), ts[i] = ad_tensor_file_find(f, names[i]);
    ck_assert_int_eq(ad_safetensors_save(dst, n, names, ts, NK, meta, err, sizeof err), AD_OK);
    ad_tensor_file_free(f);
}

START_TEST(invalid_saved_configuration_is_refused)
{
    /* A checkpoint edited to a momentum, which gradient descent has none of, is in range but fails
     * the checks optim_new applies. */
    make_dir();
    model m;
    model_init(&m, AD_F64);
    optim_cfg gd = optim_defaults(OPTIM_GD, 0.1);
    optim *o = new_optim(&m, &gd);
    ck_assert_int_eq(optim_save(o, path_of("optim.safetensors")), AD_OK);
    edit_checkpoint(path_of("optim.safetensors"), path_of("bad.safetensors"), "optim.momentum", "0.5");
    ck_assert_int_eq(optim_load(o, path_of("bad.safetensors")), AD_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "the saved configuration is invalid: optim_new: gd: momentum = 0.5 given"));
    /* the unedited file loads */
    ck_assert_int_eq(optim_load(o, path_of("optim.safetensors")), AD_OK);
    optim_free(o);
    model_free(&m);
    remove_dir();
}
END_TEST

/* Issue 20, defect 6: a step count or warm-up near INT64_MAX loaded, and the next step
 * overflowed into a NaN rate and NaN parameters while returning AD_OK.  Every number read
 * has a range, and the message names the key and the value. */
START_TEST(out_of_range_numbers_are_refused)
{
    make_dir();
    model m;
    model_init(&m, AD_F64);
    optim_cfg adam = optim_defaults(OPTIM_ADAM, 0.01);
    adam.schedule = (optim_schedule){.kind = OPTIM_SCHED_COSINE, .t_max = 8, .warmup = 3};
    optim *o = new_optim(&m, &adam);
    train(o, &m, 2);
    ck_assert_int_eq(optim_save(o, path_of("optim.safetensors")), AD_OK);
    optim_free(o);
    static const struct { const char *key, *value; } bad[] = {
        {"optim.step", "9223372036854775806"}, {"optim.step", "9223372036854775807"}, {"optim.step", "-1"},
        {"optim.schedule.warmup", "9223372036854775000"}, {"optim.schedule.t_max", "9223372036854775807"},
        {"optim.lr", "1e309"}, {"optim.lr", "nan"}, {"optim.lr", "-0.5"}, {"optim.beta1", "1"}, {"optim.beta2", "inf"},
        {"optim.eps", "-1e-8"}, {"optim.eps", "1e400"}, {"optim.momentum", "nan"}, {"optim.weight_decay", "1e999"},
        {"optim.clip_norm", "-1"}, {"optim.schedule.warmup_start", "2"}, {"optim.schedule.eta_min", "-inf"},
        {"optim.alpha", "1e300"}, {"optim.step", " 5"}, {"optim.lr", "0x1p-3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        edit_checkpoint(path_of("optim.safetensors"), path_of("bad.safetensors"), bad[i].key, bad[i].value);
        o = new_optim(&m, &adam);
        ad_status st = optim_load(o, path_of("bad.safetensors"));
        if (st == AD_OK) { /* show what the loaded file does to the model before failing */
            optim_step(o);
            ck_abort_msg("%s = %s loaded; after one more step lr = %g, w[0] = %g", bad[i].key, bad[i].value, optim_lr(o),
                         ad_tensor_get(m.w, 0));
        }
        ck_assert_int_eq(st, AD_ERR_FORMAT);
        char want[128];
        snprintf(want, sizeof want, "%s = \"%s\"", bad[i].key, bad[i].value);
        ck_assert_msg(strstr(optim_error(o), want) != NULL, "message \"%s\" lacks \"%s\"", optim_error(o), want);
        ck_assert_int_eq(optim_steps(o), 0);
        optim_free(o);
    }
    /* the optimizer itself stops at the largest count it can represent, rather than overflow */
    edit_checkpoint(path_of("optim.safetensors"), path_of("bad.safetensors"), "optim.step", "9007199254740992");
    o = new_optim(&m, &adam);
    ck_assert_msg(optim_load(o, path_of("bad.safetensors")) == AD_OK, "%s", optim_error(o));
    double w0 = ad_tensor_get(m.w, 0);
    ck_assert_int_ne(optim_step(o), AD_OK);
    ck_assert_ptr_nonnull(strstr(optim_error(o), "9007199254740992"));
    ck_assert_double_eq(ad_tensor_get(m.w, 0), w0);
    optim_free(o);
    model_free(&m);
    remove_dir();
}
END_TEST

/* Writes v over element 1 of tensor name in the safetensors file at path (found through the
 * header's data_offsets). */
static void poke(const char *path, const char *name, double v)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    unsigned char len8[8];
    ck_assert_int_eq(fread(len8, 1, 8, f), 8);
    long header = 0;
    for (int k = 7; k >= 0; k--) header = header * 256 + len8[k];
    char *json = calloc(1, (size_t)header + 1);
    ck_assert_int_eq(fread(json, 1, (size_t)header, f), (size_t)header);
    char key[96];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *at = strstr(json, key);
    ck_assert_msg(at != NULL, "no %s in %s", name, json);
    long start;
    ck_assert_int_eq(sscanf(strstr(at, "data_offsets") + 14, "[%ld", &start), 1);
    free(json);
    ck_assert_int_eq(fseek(f, 8 + header + start + 8, SEEK_SET), 0);
    ck_assert_int_eq(fwrite(&v, sizeof v, 1, f), 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* Found by fuzz_checkpoint (issue 20): a state buffer holding NaN, an infinity, or a negative
 * second moment loaded, and the next optim_step returned OK with NaN parameters.  Every loaded
 * number needs a range: state must be finite, second moments >= 0. */
START_TEST(out_of_range_state_is_refused)
{
    static const struct { optim_kind kind; double momentum; const char *name; double v; const char *why; } cases[] = {
        {OPTIM_MOMENTUM, 0.9, "state.0.velocity", NAN, "state.0.velocity[1] is not finite"},
        {OPTIM_MOMENTUM, 0.9, "state.1.velocity", INFINITY, "state.1.velocity[1] is not finite"},
        {OPTIM_ADAM, 0, "state.0.exp_avg", -INFINITY, "state.0.exp_avg[1] is not finite"},
        {OPTIM_ADAM, 0, "state.0.exp_avg_sq", -1, "state.0.exp_avg_sq[1] is negative"},
        {OPTIM_ADAMW, 0, "state.1.exp_avg_sq", -1e-300, "state.1.exp_avg_sq[1] is negative"},
        {OPTIM_RMSPROP, 0.5, "state.0.square_avg", -2, "state.0.square_avg[1] is negative"},
        {OPTIM_RMSPROP, 0.5, "state.1.momentum_buffer", NAN, "state.1.momentum_buffer[1] is not finite"},
    };
    make_dir();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        model m;
        model_init(&m, AD_F64);
        optim_cfg c = optim_defaults(cases[i].kind, 0.1);
        if (cases[i].momentum) c.momentum = cases[i].momentum;
        optim *o = new_optim(&m, &c);
        train(o, &m, 2);
        ck_assert_int_eq(optim_save(o, path_of("optim.safetensors")), AD_OK);
        poke(path_of("optim.safetensors"), cases[i].name, cases[i].v);
        ck_assert_int_eq(optim_load(o, path_of("optim.safetensors")), AD_ERR_FORMAT);
        ck_assert_msg(strstr(optim_error(o), cases[i].why) != NULL, "case %zu: %s", i, optim_error(o));
        ck_assert_int_eq(optim_steps(o), 2);
        optim_free(o);
        model_free(&m);
    }
    remove_dir();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim_checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_loop_test(tc, resume_reproduces_the_uninterrupted_run, 0, 2 * NCONFIGS);
    tcase_add_test(tc, file_layout);
    tcase_add_test(tc, loads_that_do_not_fit_are_refused);
    tcase_add_test(tc, invalid_saved_configuration_is_refused);
    tcase_add_test(tc, out_of_range_numbers_are_refused);
    tcase_add_test(tc, out_of_range_state_is_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
