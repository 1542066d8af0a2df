/* Optimizer checkpoints in safetensors: state buffers as tensors, the step count and the
 * configuration as metadata strings.  Floats are printed with 17 significant digits, which
 * strtod reads back to the same double, so a resumed run continues bit for bit. */
#include "optim_impl.h"
#include "ad_io.h"
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSION "1"
#define MAX_FIELDS 16 /* numeric_fields fills 15 */

/* The numeric fields of a configuration, by metadata key, with the range a loaded value must
 * lie in: [lo, hi], or [lo, hi) when open.  The ranges are what any configuration may hold;
 * optim_cfg_check then applies the rules of the kind. */
typedef struct { const char *key; double *d; int64_t *i; double lo, hi; bool open; } field;

static int numeric_fields(optim_cfg *c, field *f)
{
    const double big = DBL_MAX, steps = (double)OPTIM_MAX_STEPS;
    int n = 0;
    f[n++] = (field){"optim.lr", &c->lr, NULL, 0, big, false};
    f[n++] = (field){"optim.momentum", &c->momentum, NULL, 0, 1, true};
    f[n++] = (field){"optim.weight_decay", &c->weight_decay, NULL, 0, big, false};
    f[n++] = (field){"optim.beta1", &c->beta1, NULL, 0, 1, true};
    f[n++] = (field){"optim.beta2", &c->beta2, NULL, 0, 1, true};
    f[n++] = (field){"optim.alpha", &c->alpha, NULL, 0, 1, true};
    f[n++] = (field){"optim.eps", &c->eps, NULL, 0, big, false};
    f[n++] = (field){"optim.clip_norm", &c->clip_norm, NULL, 0, big, false};
    f[n++] = (field){"optim.clip_value", &c->clip_value, NULL, 0, big, false};
    f[n++] = (field){"optim.schedule.step_size", NULL, &c->schedule.step_size, 0, steps, false};
    f[n++] = (field){"optim.schedule.gamma", &c->schedule.gamma, NULL, 0, big, false};
    f[n++] = (field){"optim.schedule.t_max", NULL, &c->schedule.t_max, 0, steps, false};
    f[n++] = (field){"optim.schedule.eta_min", &c->schedule.eta_min, NULL, 0, big, false};
    f[n++] = (field){"optim.schedule.warmup", NULL, &c->schedule.warmup, 0, steps, false};
    f[n++] = (field){"optim.schedule.warmup_start", &c->schedule.warmup_start, NULL, 0, 1, false};
    return n;
}
/* Enums and flags are stored as their integer values (optim.h fixes them); the kind is also
 * written by name, "optim.kind_name", for a person reading the header. */
typedef struct { const char *key; int *v; } enum_field;

static int enum_fields(optim_cfg *c, int *vals, enum_field *f)
{
    vals[0] = (int)c->kind, vals[1] = (int)c->form, vals[2] = c->nesterov, vals[3] = (int)c->schedule.kind;
    f[0] = (enum_field){"optim.kind", &vals[0]};
    f[1] = (enum_field){"optim.form", &vals[1]};
    f[2] = (enum_field){"optim.nesterov", &vals[2]};
    f[3] = (enum_field){"optim.schedule.kind", &vals[3]};
    return 4;
}

static void unpack_enums(optim_cfg *c, const int *vals)
{
    c->kind = (optim_kind)vals[0];
    c->form = (optim_momentum_form)vals[1];
    c->nesterov = vals[2] != 0;
    c->schedule.kind = (optim_sched_kind)vals[3];
}

ad_status optim_save(optim *o, const char *path)
{
    if (!o) return AD_ERR_NULL;
    if (!path) return optim_failo(o, AD_ERR_NULL, "optim_save: path is NULL");
    field f[MAX_FIELDS];
    enum_field e[4];
    int ev[4];
    optim_cfg c = o->cfg;
    int nf = numeric_fields(&c, f), ne = enum_fields(&c, ev, e);
    enum { NFIXED = 4 };
    const char *meta[2 * (NFIXED + MAX_FIELDS + 4)];
    char vals[NFIXED + MAX_FIELDS + 4][32];
    int m = 0;
    meta[2 * m] = "optim.version", meta[2 * m + 1] = VERSION, m++;
    meta[2 * m] = "optim.kind_name", meta[2 * m + 1] = optim_kind_name(o->cfg.kind), m++;
    snprintf(vals[m], sizeof vals[m], "%lld", (long long)o->step);
    meta[2 * m] = "optim.step", meta[2 * m + 1] = vals[m], m++;
    snprintf(vals[m], sizeof vals[m], "%d", o->n);
    meta[2 * m] = "optim.params", meta[2 * m + 1] = vals[m], m++;
    for (int k = 0; k < ne; k++, m++) {
        snprintf(vals[m], sizeof vals[m], "%d", *e[k].v);
        meta[2 * m] = e[k].key, meta[2 * m + 1] = vals[m];
    }
    for (int k = 0; k < nf; k++, m++) {
        if (f[k].d) snprintf(vals[m], sizeof vals[m], "%.17g", *f[k].d);
        else snprintf(vals[m], sizeof vals[m], "%lld", (long long)*f[k].i);
        meta[2 * m] = f[k].key, meta[2 * m + 1] = vals[m];
    }
    int nt = o->n * o->nslots;
    char **names = ad_calloc((size_t)nt + 1, sizeof *names);
    bool ok = names != NULL;
    for (int k = 0; ok && k < nt; k++) {
        size_t len = strlen(o->slot[k % o->nslots]) + 32;
        if ((ok = (names[k] = ad_malloc(len)) != NULL))
            snprintf(names[k], len, "state.%d.%s", k / o->nslots, o->slot[k % o->nslots]);
    }
    ad_status st = AD_OK;
    char why[200];
    if (!ok) st = optim_failo(o, AD_ERR_NOMEM, "optim_save: %s: out of memory", path);
    else {
        ad_status as = ad_safetensors_save(path, nt, (const char *const *)names, o->state, m, meta, why, sizeof why);
        if (as != AD_OK) st = optim_failo(o, as == AD_ERR_NOMEM ? AD_ERR_NOMEM : AD_ERR_IO, "optim_save: %s", why);
    }
    for (int k = 0; names && k < nt; k++) ad_free(names[k]);
    ad_free(names);
    return st;
}

/* Reads an integer or a double from metadata; false if missing or not entirely a number in the
 * digits, sign, point and exponent optim_save writes (no spaces, hex, "inf" or "nan"). */
static bool plain_number(const char *s, bool integer)
{
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '-' || (!integer && strchr("+.eE", *p))))
            return false;
    return true;
}

static bool meta_int(const ad_tensor_file *f, const char *key, long long *out)
{
    const char *s = ad_tensor_file_meta(f, key);
    char *end;
    if (!plain_number(s, true)) return false;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return !*end && !errno;
}

static bool meta_double(const ad_tensor_file *f, const char *key, double *out)
{
    const char *s = ad_tensor_file_meta(f, key);
    char *end;
    if (!plain_number(s, false)) return false;
    *out = strtod(s, &end);
    return !*end;
}

/* Reads field fl from f, refusing a value outside its range with a message naming both. */
static ad_status read_field(optim *o, const ad_tensor_file *f, const char *path, const field *fl)
{
    const char *s = ad_tensor_file_meta(f, fl->key);
    if (!s) return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: metadata %s is missing", path, fl->key);
    long long v = 0;
    double x = 0;
    bool ok = fl->d ? meta_double(f, fl->key, &x) : meta_int(f, fl->key, &v);
    if (fl->i) x = (double)v;
    if (!ok || !(x >= fl->lo && (fl->open ? x < fl->hi : x <= fl->hi)))
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: metadata %s = \"%s\": want %s in [%.17g, %.17g%c", path,
                           fl->key, s, fl->d ? "a number" : "an integer", fl->lo, fl->hi, fl->open ? ')' : ']');
    if (fl->d) *fl->d = x;
    else *fl->i = (int64_t)v;
    return AD_OK;
}

static bool same_shape(ad_shape a, ad_shape b)
{
    if (a.rank != b.rank) return false;
    for (int i = 0; i < a.rank; i++)
        if (a.dim[i] != b.dim[i]) return false;
    return true;
}

/* Reads the configuration and step into *c and *step, checking they fit o. */
static ad_status read_cfg(optim *o, const ad_tensor_file *f, const char *path, optim_cfg *c, int64_t *step)
{
    long long v;
    const char *ver = ad_tensor_file_meta(f, "optim.version");
    if (!ver || strcmp(ver, VERSION))
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: optim.version is %s, want \"" VERSION "\" (not an "
                           "optimizer checkpoint?)", path, ver ? ver : "missing");
    *c = o->cfg;
    field fl[MAX_FIELDS];
    enum_field e[4];
    int ev[4], nf = numeric_fields(c, fl), ne = enum_fields(c, ev, e);
    for (int k = 0; k < ne; k++) {
        if (!meta_int(f, e[k].key, &v) || v < 0 || v > 64)
            return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: metadata %s is %s", path, e[k].key,
                               ad_tensor_file_meta(f, e[k].key) ? "not a small integer" : "missing");
        *e[k].v = (int)v;
    }
    unpack_enums(c, ev);
    for (int k = 0; k < nf; k++)
        if (read_field(o, f, path, &fl[k]) != AD_OK) return AD_ERR_FORMAT;
    if (c->kind != o->cfg.kind)
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: the file is from a %s optimizer, this one is %s", path,
                           optim_kind_name(c->kind), optim_kind_name(o->cfg.kind));
    if (!meta_int(f, "optim.params", &v) || v != o->n)
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: the file has state for %s parameters, this optimizer "
                           "has %d", path, ad_tensor_file_meta(f, "optim.params") ? ad_tensor_file_meta(f, "optim.params")
                           : "an unknown number of", o->n);
    field sf = {"optim.step", NULL, step, 0, (double)OPTIM_MAX_STEPS, false};
    if (read_field(o, f, path, &sf) != AD_OK) return AD_ERR_FORMAT;
    char why[200];
    if (optim_cfg_check(c, why, sizeof why) != AD_OK)
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: the saved configuration is invalid: %s", path, why);
    return AD_OK;
}

/* Finds every buffer o keeps in the file, with o's dtype and shape, into found. */
static ad_status match_buffers(optim *o, const ad_tensor_file *f, const char *path, const optim_cfg *c,
                               ad_tensor **found)
{
    const char *slot[OPTIM_MAX_SLOTS];
    int ns = optim_slots_for(c, slot);
    bool same = ns == o->nslots;
    for (int s = 0; same && s < ns; s++) same = !strcmp(slot[s], o->slot[s]);
    if (!same)
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: the saved configuration keeps %d buffer(s) per "
                           "parameter (%s%s%s), this optimizer %d (%s%s%s)", path, ns, ns ? slot[0] : "none",
                           ns > 1 ? ", " : "", ns > 1 ? slot[1] : "", o->nslots, o->nslots ? o->slot[0] : "none",
                           o->nslots > 1 ? ", " : "", o->nslots > 1 ? o->slot[1] : "");
    int nt = o->n * o->nslots;
    if (ad_tensor_file_count(f) != nt)
        return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: %d tensors, want %d (%d parameters x %d buffers)", path,
                           ad_tensor_file_count(f), nt, o->n, o->nslots);
    for (int k = 0; k < nt; k++) {
        char name[64], a[64], b[64];
        snprintf(name, sizeof name, "state.%d.%s", k / o->nslots, o->slot[k % o->nslots]);
        ad_tensor *t = ad_tensor_file_find(f, name), *want = o->state[k];
        if (!t) return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: no tensor %s", path, name);
        ad_shape ts = ad_tensor_shape(t), ws = ad_tensor_shape(want);
        if (ad_tensor_dtype(t) != ad_tensor_dtype(want) || !same_shape(ts, ws))
            return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: %s is %s %s, the parameter is %s %s", path, name,
                               ad_dtype_name(ad_tensor_dtype(t)), ad_shape_str(&ts, a, sizeof a),
                               ad_dtype_name(ad_tensor_dtype(want)), ad_shape_str(&ws, b, sizeof b));
        /* a NaN or infinite buffer, or a negative second moment (whose root is taken), would
         * make every later step's parameters NaN, and optim_step would still return OK: a state
         * no run could have saved is a corrupt file */
        const char *slot_name = o->slot[k % o->nslots];
        bool second_moment = !strcmp(slot_name, "exp_avg_sq") || !strcmp(slot_name, "square_avg");
        for (int64_t i = 0; i < ad_tensor_size(t); i++) {
            double v = ad_tensor_get(t, i);
            if (!isfinite(v) || (second_moment && v < 0))
                return optim_failo(o, AD_ERR_FORMAT, "optim_load: %s: %s[%lld] is %s", path, name, (long long)i,
                                   isfinite(v) ? "negative" : "not finite");
        }
        found[k] = t;
    }
    return AD_OK;
}

ad_status optim_load(optim *o, const char *path)
{
    if (!o) return AD_ERR_NULL;
    if (!path) return optim_failo(o, AD_ERR_NULL, "optim_load: path is NULL");
    char why[200];
    ad_tensor_file *f = ad_safetensors_load(path, why, sizeof why);
    if (!f) return optim_failo(o, AD_ERR_IO, "optim_load: %s", why);
    optim_cfg c;
    int64_t step = 0;
    int nt = o->n * o->nslots;
    ad_tensor **found = ad_calloc((size_t)nt + 1, sizeof *found);
    ad_status st = found ? read_cfg(o, f, path, &c, &step)
                            : optim_failo(o, AD_ERR_NOMEM, "optim_load: %s: out of memory", path);
    if (st == AD_OK) st = match_buffers(o, f, path, &c, found);
    if (st == AD_OK) { /* everything fits: only now touch o */
        for (int k = 0; k < nt; k++)
            memcpy(ad_tensor_data(o->state[k]), ad_tensor_data(found[k]),
                   (size_t)ad_tensor_size(found[k]) * ad_dtype_size(ad_tensor_dtype(found[k])));
        o->cfg = c;
        o->step = step;
    }
    ad_free(found);
    ad_tensor_file_free(f);
    return st;
}
