/* Models as safetensors files: parameters under PyTorch's nn.Sequential names, the
 * architecture as metadata strings, so a file alone rebuilds its model here and loads into
 * the equivalent torch.nn.Sequential there. */
#include "nn.h"
#include "ad_io.h"
#include "mlp_internal.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const act_names[] = {"relu", "leaky_relu", "sigmoid", "tanh"};

enum { NMETA = 15 };

ad_status nn_mlp_save(const nn_mlp *m, const char *path, char *err, size_t errlen)
{
    if (!m || !path) {
        if (err && errlen) snprintf(err, errlen, "nn_mlp_save: %s is NULL", m ? "path" : "model");
        return AD_ERR_NULL;
    }
    const nn_mlp_cfg *c = &m->cfg;
    char num[6][40], hidden[NN_MAX_HIDDEN * 12 + 1] = "";
    for (int i = 0; i < m->depth; i++)
        snprintf(hidden + strlen(hidden), sizeof hidden - strlen(hidden), i ? ",%d" : "%d", c->hidden[i]);
    /* %.17g: every double survives the trip through text bit for bit. */
    snprintf(num[0], sizeof num[0], "%d", c->in);
    snprintf(num[1], sizeof num[1], "%d", c->out);
    snprintf(num[2], sizeof num[2], "%.17g", c->slope);
    snprintf(num[3], sizeof num[3], "%.17g", c->dropout);
    snprintf(num[4], sizeof num[4], "%.17g", c->input_dropout);
    snprintf(num[5], sizeof num[5], "%llu", (unsigned long long)c->seed);
    const char *meta[2 * NMETA] = {
        "format", "pt", /* what Hugging Face's tools expect of a PyTorch state dict */
        "backprop.model", "mlp",
        "backprop.version", "1",
        "backprop.in", num[0],
        "backprop.hidden", hidden,
        "backprop.out", num[1],
        "backprop.act", act_names[c->act],
        "backprop.slope", num[2],
        "backprop.task", c->task == NN_CLASSIFY ? "classification" : "regression",
        "backprop.dtype", c->dtype == AD_F32 ? "F32" : "F64",
        "backprop.dropout", num[3],
        "backprop.input_dropout", num[4],
        "backprop.dropout_kind", c->inverted_dropout ? "inverted" : "lecture",
        "backprop.init", c->init == NN_INIT_XAVIER ? "xavier" : "he",
        "backprop.seed", num[5],
    };
    int n = nn_mlp_num_params(m);
    const char *names[2 * (NN_MAX_HIDDEN + 1)];
    for (int i = 0; i < n; i++) names[i] = ad_tensor_name(m->params[i]);
    char inner[512];
    ad_status st = ad_safetensors_save(path, n, names, m->params, NMETA, meta, inner, sizeof inner);
    if (st && err && errlen) snprintf(err, errlen, "nn_mlp_save: %s", inner);
    return st;
}

/* ---- loading ---- */

typedef struct {
    const ad_tensor_file *f;
    const char *path;
    char *err;
    size_t errlen;
    bool failed;
} reader;

static bool fail(reader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static bool fail(reader *r, const char *fmt, ...)
{
    char where[1024];
    snprintf(where, sizeof where, "nn_mlp_load: %s: ", r->path);
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(r->err, r->errlen, &r->failed, where, fmt, ap);
    va_end(ap);
    return false;
}

static const char *get(reader *r, const char *key)
{
    const char *v = ad_tensor_file_meta(r->f, key);
    if (!v) fail(r, "the metadata has no \"%s\" (not a model saved by nn_mlp_save?)", key);
    return v;
}

/* strto* skip leading spaces and accept "+"; the metadata we write has neither. */
static bool starts_number(const char *v) { return (*v >= '0' && *v <= '9') || (*v == '-' && v[1] >= '0' && v[1] <= '9'); }

/* A whole decimal integer in [lo, hi]: "12abc", "", " 1" and "1e3" are refused. */
static bool get_int(reader *r, const char *key, long long lo, long long hi, long long *out)
{
    const char *v = get(r, key);
    if (!v) return false;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!starts_number(v) || *end || errno || x < lo || x > hi)
        return fail(r, "metadata \"%s\" = \"%s\": expected an integer in [%lld,%lld]", key, v, lo, hi);
    *out = x;
    return true;
}

static bool get_real(reader *r, const char *key, double *out)
{
    const char *v = get(r, key);
    if (!v) return false;
    char *end;
    double x = strtod(v, &end);
    if (!starts_number(v) || *end || !isfinite(x)) return fail(r, "metadata \"%s\" = \"%s\": expected a finite number", key, v);
    *out = x;
    return true;
}

static bool get_u64(reader *r, const char *key, uint64_t *out)
{
    const char *v = get(r, key);
    if (!v) return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || errno) return fail(r, "metadata \"%s\" = \"%s\": expected an unsigned integer", key, v);
    *out = x;
    return true;
}

static int get_choice(reader *r, const char *key, const char *const *choices, int k)
{
    const char *v = get(r, key);
    for (int i = 0; v && i < k; i++)
        if (!strcmp(v, choices[i])) return i;
    if (v) fail(r, "metadata \"%s\" = \"%s\" is not one of the known values", key, v);
    return -1;
}

static bool parse_hidden(reader *r, nn_mlp_cfg *c)
{
    const char *v = get(r, "backprop.hidden");
    if (!v) return false;
    for (int d = 0; *v; d++) {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (d == NN_MAX_HIDDEN) return fail(r, "metadata \"backprop.hidden\": more than %d hidden layers", NN_MAX_HIDDEN);
        if (end == v || errno || x < 1 || x > INT32_MAX || (*end && *end != ',') || (*end == ',' && !end[1]))
            return fail(r, "metadata \"backprop.hidden\" = \"%s\": expected positive widths separated by commas",
                        ad_tensor_file_meta(r->f, "backprop.hidden"));
        c->hidden[d] = (int)x;
        v = *end ? end + 1 : end;
    }
    return true;
}

static bool read_cfg(reader *r, nn_mlp_cfg *c)
{
    static const char *const model[] = {"mlp"}, *const task[] = {"classification", "regression"},
                      *const dtype[] = {"F64", "F32"}, *const kind[] = {"lecture", "inverted"},
                      *const init[] = {"xavier", "he"};
    long long in, out, version;
    memset(c, 0, sizeof *c);
    if (get_choice(r, "backprop.model", model, 1) < 0 || !get_int(r, "backprop.version", 1, 1, &version) ||
        !get_int(r, "backprop.in", 1, INT32_MAX, &in) || !get_int(r, "backprop.out", 1, INT32_MAX, &out) ||
        !parse_hidden(r, c) || !get_real(r, "backprop.slope", &c->slope) ||
        !get_real(r, "backprop.dropout", &c->dropout) || !get_real(r, "backprop.input_dropout", &c->input_dropout) ||
        !get_u64(r, "backprop.seed", &c->seed))
        return false;
    int a = get_choice(r, "backprop.act", act_names, 4), t = get_choice(r, "backprop.task", task, 2);
    int d = get_choice(r, "backprop.dtype", dtype, 2), k = get_choice(r, "backprop.dropout_kind", kind, 2);
    int i = get_choice(r, "backprop.init", init, 2);
    if (r->failed) return false;
    c->in = (int)in, c->out = (int)out;
    c->act = (nn_act)a, c->task = (nn_task)t, c->dtype = (ad_dtype)d;
    c->inverted_dropout = k == 1, c->init = i ? NN_INIT_HE : NN_INIT_XAVIER;
    char why[256];
    if (nn_mlp_check(c, why, sizeof why) != AD_OK) return fail(r, "the metadata describes an invalid model: %s", why);
    return true;
}

/* Every parameter the architecture c needs, with its dtype and shape, and nothing else.  Checked
 * on the file alone, before the model is built: a few hundred bytes of metadata can claim
 * gigabytes of layers, and what the loader allocates must be bounded by what the file holds. */
static bool check_params(reader *r, const nn_mlp_cfg *c)
{
    int D = nn_mlp_hidden_count(c), n = 2 * (D + 1);
    char names[2 * (NN_MAX_HIDDEN + 1)][32];
    for (int i = 0; i <= D; i++) {
        int in = i ? c->hidden[i - 1] : c->in, out = i < D ? c->hidden[i] : c->out;
        ad_shape shapes[2] = {AD_SHAPE(out, in), AD_SHAPE(out)};
        for (int k = 0; k < 2; k++) {
            char *name = names[2 * i + k], ws[96], gs[96];
            snprintf(name, sizeof names[0], "%d.%s", nn_mlp_module_index(c, i), k ? "bias" : "weight");
            ad_tensor *got = ad_tensor_file_find(r->f, name);
            if (!got) return fail(r, "tensor \"%s\" is missing", name);
            ad_shape a = shapes[k], b = ad_tensor_shape(got);
            bool same = a.rank == b.rank;
            for (int j = 0; same && j < a.rank; j++) same = a.dim[j] == b.dim[j];
            if (!same || ad_tensor_dtype(got) != c->dtype)
                return fail(r, "tensor \"%s\" is %s %s, the architecture needs %s %s", name, ad_dtype_name(ad_tensor_dtype(got)),
                            ad_shape_str(&b, gs, sizeof gs), ad_dtype_name(c->dtype), ad_shape_str(&a, ws, sizeof ws));
        }
    }
    for (int i = 0; ad_tensor_file_count(r->f) != n && i < ad_tensor_file_count(r->f); i++) {
        const char *name = ad_tensor_file_name(r->f, i);
        bool known = false;
        for (int k = 0; k < n && !known; k++) known = !strcmp(name, names[k]);
        if (!known) return fail(r, "tensor \"%s\" is not part of the architecture", name);
    }
    return true;
}

/* The checked tensors into the model's parameters, which have the same names and shapes. */
static void copy_params(reader *r, nn_mlp *m)
{
    for (int i = 0; i < nn_mlp_num_params(m); i++) {
        ad_tensor *want = m->params[i], *got = ad_tensor_file_find(r->f, ad_tensor_name(want));
        memcpy(ad_tensor_data(want), ad_tensor_data(got), (size_t)ad_tensor_size(want) * ad_dtype_size(ad_tensor_dtype(want)));
    }
}

nn_mlp *nn_mlp_load(const char *path, char *err, size_t errlen)
{
    if (!path) {
        if (err && errlen) snprintf(err, errlen, "nn_mlp_load: path is NULL");
        return NULL;
    }
    char inner[512];
    ad_tensor_file *f = ad_safetensors_load(path, inner, sizeof inner);
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "nn_mlp_load: %s", inner);
        return NULL;
    }
    reader r = {f, path, err, errlen, false};
    nn_mlp_cfg c;
    nn_mlp *m = NULL;
    if (read_cfg(&r, &c) && check_params(&r, &c)) {
        m = nn_mlp_new(&c);
        if (!m) fail(&r, "out of memory");
        else copy_params(&r, m);
    }
    ad_tensor_file_free(f);
    return m;
}
