/* Any model as a state dict: named parameters and buffers in the order they were added, with
 * metadata strings, saved and loaded as PyTorch's load_state_dict expects them. */
#include "nn.h"
#include "ad_io.h"
#include "model_internal.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key, *value;
} meta_pair;

struct nn_model {
    ad_dtype dtype;
    int n, cap;
    ad_tensor **t;      /* every tensor, in the order added */
    bool *param;        /* whether t[i] is a parameter */
    ad_tensor **params; /* the parameters, NULL-terminated */
    int nparams;
    int nmeta, metacap;
    meta_pair *meta;
    ad_status status; /* of the last failure, with err */
    char err[512];
};

ad_status model_fail(nn_model *m, ad_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ad_verrorf(m->err, sizeof m->err, NULL, NULL, fmt, ap);
    va_end(ap);
    return m->status = st;
}

ad_status model_status(const nn_model *m) { return m ? m->status : AD_ERR_NULL; }

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ad_malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

nn_model *nn_model_new(ad_dtype t)
{
    if (t != AD_F32 && t != AD_F64) return NULL;
    nn_model *m = ad_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->dtype = t;
    if (!(m->params = ad_calloc(1, sizeof *m->params))) {
        ad_free(m);
        return NULL;
    }
    return m;
}

void nn_model_free(nn_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n; i++) ad_tensor_free(m->t[i]);
    for (int i = 0; i < m->nmeta; i++) ad_free(m->meta[i].key), ad_free(m->meta[i].value);
    ad_free(m->t), ad_free(m->param), ad_free(m->params), ad_free(m->meta);
    ad_free(m);
}

ad_dtype nn_model_dtype(const nn_model *m) { return m ? m->dtype : AD_F64; }

/* A new zero tensor called name, a parameter or a buffer. */
static ad_tensor *add_tensor(nn_model *m, const char *name, ad_shape shape, bool param)
{
    if (!m) return NULL;
    const char *fn = param ? "nn_model_param" : "nn_model_buffer";
    if (!name || !*name || !strcmp(name, "__metadata__")) {
        model_fail(m, AD_ERR_ARG, "%s: a tensor needs a name (not empty, not \"__metadata__\")", fn);
        return NULL;
    }
    if (nn_model_find(m, name)) {
        model_fail(m, AD_ERR_ARG, "%s: the model already has a tensor \"%s\"", fn, name);
        return NULL;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 16;
        ad_tensor **t = ad_realloc(m->t, (size_t)cap * sizeof *t);
        if (t) m->t = t;
        bool *p = t ? ad_realloc(m->param, (size_t)cap * sizeof *p) : NULL;
        if (p) m->param = p;
        ad_tensor **ps = p ? ad_realloc(m->params, (size_t)(cap + 1) * sizeof *ps) : NULL;
        if (!ps) {
            model_fail(m, AD_ERR_NOMEM, "%s: out of memory for \"%s\"", fn, name);
            return NULL;
        }
        m->params = ps;
        m->cap = cap;
    }
    ad_tensor *t = ad_param_new(name, m->dtype, shape);
    if (!t) {
        char b[96];
        model_fail(m, AD_ERR_NOMEM, "%s: cannot make \"%s\" %s (bad shape or out of memory)", fn, name,
                   ad_shape_str(&shape, b, sizeof b));
        return NULL;
    }
    m->t[m->n] = t;
    m->param[m->n++] = param;
    if (param) {
        m->params[m->nparams++] = t;
        m->params[m->nparams] = NULL;
    }
    return t;
}

ad_tensor *nn_model_param(nn_model *m, const char *name, ad_shape shape) { return add_tensor(m, name, shape, true); }
ad_tensor *nn_model_buffer(nn_model *m, const char *name, ad_shape shape) { return add_tensor(m, name, shape, false); }

ad_tensor *const *nn_model_params(const nn_model *m) { return m ? m->params : NULL; }
int nn_model_num_params(const nn_model *m) { return m ? m->nparams : 0; }
int nn_model_count(const nn_model *m) { return m ? m->n : 0; }
ad_tensor *nn_model_tensor(const nn_model *m, int i) { return m && i >= 0 && i < m->n ? m->t[i] : NULL; }
bool nn_model_is_param(const nn_model *m, int i) { return m && i >= 0 && i < m->n && m->param[i]; }

ad_tensor *nn_model_find(const nn_model *m, const char *name)
{
    if (!m || !name) return NULL;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(ad_tensor_name(m->t[i]), name)) return m->t[i];
    return NULL;
}

int64_t nn_model_num_param_elements(const nn_model *m)
{
    int64_t n = 0;
    for (int i = 0; m && i < m->nparams; i++) n += ad_tensor_size(m->params[i]);
    return n;
}

void nn_model_zero_grad(nn_model *m)
{
    for (int i = 0; m && i < m->nparams; i++) ad_tensor_zero_grad(m->params[i]);
}

const char *nn_model_error(const nn_model *m) { return m ? m->err : "nn_model: model is NULL"; }

ad_status nn_model_set_meta(nn_model *m, const char *key, const char *value)
{
    if (!m) return AD_ERR_NULL;
    if (!key || !value) return model_fail(m, AD_ERR_NULL, "nn_model_set_meta: %s is NULL", key ? "value" : "key");
    char *v = dup_str(value);
    if (!v) return model_fail(m, AD_ERR_NOMEM, "nn_model_set_meta: out of memory");
    for (int i = 0; i < m->nmeta; i++)
        if (!strcmp(m->meta[i].key, key)) {
            ad_free(m->meta[i].value);
            m->meta[i].value = v;
            return AD_OK;
        }
    char *k = dup_str(key);
    if (k && m->nmeta == m->metacap) {
        int cap = m->metacap ? 2 * m->metacap : 8;
        meta_pair *mp = ad_realloc(m->meta, (size_t)cap * sizeof *mp);
        if (mp) m->meta = mp, m->metacap = cap;
    }
    if (!k || m->nmeta == m->metacap) {
        ad_free(k), ad_free(v);
        return model_fail(m, AD_ERR_NOMEM, "nn_model_set_meta: out of memory");
    }
    m->meta[m->nmeta++] = (meta_pair){k, v};
    return AD_OK;
}

const char *nn_model_meta(const nn_model *m, const char *key)
{
    for (int i = 0; m && key && i < m->nmeta; i++)
        if (!strcmp(m->meta[i].key, key)) return m->meta[i].value;
    return NULL;
}

/* ---- the scaler, as lists of numbers in the metadata ---- */

static const char *const SCALER_KEY[2] = {"backprop.scaler.mean", "backprop.scaler.std"};

ad_status nn_model_set_scaler(nn_model *m, int dim, const double *mean, const double *std)
{
    if (!m) return AD_ERR_NULL;
    if (!mean || !std) return model_fail(m, AD_ERR_NULL, "nn_model_set_scaler: %s is NULL", mean ? "std" : "mean");
    if (dim < 1) return model_fail(m, AD_ERR_ARG, "nn_model_set_scaler: dim %d must be positive", dim);
    const double *v[2] = {mean, std};
    /* %.17g: at most 24 bytes a number with its comma */
    size_t len = (size_t)dim * 26 + 1;
    char *text = ad_malloc(len);
    if (!text) return model_fail(m, AD_ERR_NOMEM, "nn_model_set_scaler: out of memory");
    ad_status st = AD_OK;
    for (int k = 0; k < 2 && !st; k++) {
        size_t at = 0;
        for (int i = 0; i < dim; i++) {
            if (!isfinite(v[k][i]) || (k == 1 && !(v[k][i] > 0))) {
                st = model_fail(m, AD_ERR_ARG, "nn_model_set_scaler: %s[%d] = %g is not %s", k ? "std" : "mean", i,
                                v[k][i], k ? "a positive number" : "finite");
                break;
            }
            at += (size_t)snprintf(text + at, len - at, i ? ",%.17g" : "%.17g", v[k][i]);
        }
        if (!st) st = nn_model_set_meta(m, SCALER_KEY[k], text);
    }
    ad_free(text);
    return st;
}

ad_status nn_model_scaler(const nn_model *m, int dim, double *mean, double *std)
{
    if (!m) return AD_ERR_NULL;
    double *out[2] = {mean, std};
    for (int k = 0; k < 2; k++) {
        const char *s = nn_model_meta(m, SCALER_KEY[k]);
        if (!s) return AD_ERR_ARG;
        for (int i = 0; i < dim; i++) {
            char *end;
            errno = 0;
            double x = strtod(s, &end);
            if (end == s || errno || (*end != (i + 1 < dim ? ',' : '\0'))) return AD_ERR_ARG;
            if (out[k]) out[k][i] = x;
            s = *end ? end + 1 : end;
        }
    }
    return AD_OK;
}

/* ---- files ---- */

ad_status nn_model_save(const nn_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !path) {
        ad_errorf(err, errlen, NULL, "nn_model_save: %s is NULL", m ? "path" : "model");
        return AD_ERR_NULL;
    }
    const char **names = ad_malloc((size_t)(m->n ? m->n : 1) * sizeof *names);
    const char **meta = ad_malloc((size_t)(2 * m->nmeta + 2) * sizeof *meta);
    if (!names || !meta) {
        ad_free(names), ad_free(meta);
        ad_errorf(err, errlen, NULL, "nn_model_save: out of memory");
        return AD_ERR_NOMEM;
    }
    for (int i = 0; i < m->n; i++) names[i] = ad_tensor_name(m->t[i]);
    int nmeta = 0;
    bool has_format = nn_model_meta(m, "format") != NULL;
    if (!has_format) meta[0] = "format", meta[1] = "pt", nmeta = 1; /* what Hugging Face's tools expect */
    for (int i = 0; i < m->nmeta; i++, nmeta++) meta[2 * nmeta] = m->meta[i].key, meta[2 * nmeta + 1] = m->meta[i].value;
    char inner[512];
    ad_status st = ad_safetensors_save(path, m->n, names, m->t, nmeta, meta, inner, sizeof inner);
    if (st) ad_errorf(err, errlen, NULL, "nn_model_save: %s", inner);
    ad_free(names), ad_free(meta);
    return st;
}

ad_status nn_model_load(nn_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !path) {
        ad_errorf(err, errlen, NULL, "nn_model_load: %s is NULL", m ? "path" : "model");
        return AD_ERR_NULL;
    }
    char inner[512];
    ad_tensor_file *f = ad_safetensors_load(path, inner, sizeof inner);
    if (!f) {
        ad_errorf(err, errlen, NULL, "nn_model_load: %s", inner);
        return AD_ERR_IO;
    }
    /* everything is checked before anything is copied, so a bad file changes nothing */
    ad_status st = AD_OK;
    for (int i = 0; i < m->n && !st; i++) {
        const char *name = ad_tensor_name(m->t[i]);
        ad_tensor *src = ad_tensor_file_find(f, name);
        ad_shape want = ad_tensor_shape(m->t[i]), got;
        char b1[96], b2[96];
        if (!src) {
            ad_errorf(err, errlen, NULL, "nn_model_load: %s: the model's tensor \"%s\" %s is not in the file", path, name,
                      ad_shape_str(&want, b1, sizeof b1));
            st = AD_ERR_ARG;
        } else if (got = ad_tensor_shape(src), got.rank != want.rank ||
                   memcmp(got.dim, want.dim, (size_t)want.rank * sizeof *want.dim)) {
            ad_errorf(err, errlen, NULL, "nn_model_load: %s: tensor \"%s\" is %s in the file, %s in the model", path,
                      name, ad_shape_str(&got, b1, sizeof b1), ad_shape_str(&want, b2, sizeof b2));
            st = AD_ERR_SHAPE;
        }
    }
    for (int i = 0; i < ad_tensor_file_count(f) && !st; i++)
        if (!nn_model_find(m, ad_tensor_file_name(f, i))) {
            ad_errorf(err, errlen, NULL, "nn_model_load: %s: the file's tensor \"%s\" is not in the model", path,
                      ad_tensor_file_name(f, i));
            st = AD_ERR_ARG;
        }
    /* the file's metadata joins the model's (the file's value wins for a key in both), in a
     * new array made whole before the old one goes */
    int nfile = ad_tensor_file_meta_count(f), nmeta = 0, cap = nfile + m->nmeta + 1;
    meta_pair *meta = st ? NULL : ad_calloc((size_t)cap, sizeof *meta);
    if (!st && !meta) st = AD_ERR_NOMEM;
    for (int i = 0; i < m->nmeta + nfile && !st; i++) {
        bool own = i < m->nmeta;
        const char *key = own ? m->meta[i].key : ad_tensor_file_meta_key(f, i - m->nmeta);
        if (own && ad_tensor_file_meta(f, key)) continue;
        meta_pair *p = &meta[nmeta++];
        p->key = dup_str(key);
        p->value = dup_str(own ? m->meta[i].value : ad_tensor_file_meta(f, key));
        if (!p->key || !p->value) st = AD_ERR_NOMEM;
    }
    if (st == AD_ERR_NOMEM) ad_errorf(err, errlen, NULL, "nn_model_load: %s: out of memory", path);
    if (!st) {
        for (int i = 0; i < m->nmeta; i++) ad_free(m->meta[i].key), ad_free(m->meta[i].value);
        ad_free(m->meta);
        m->meta = meta, m->nmeta = nmeta, m->metacap = cap;
        meta = NULL;
    }
    for (int i = 0; meta && i < nmeta; i++) ad_free(meta[i].key), ad_free(meta[i].value);
    ad_free(meta);
    if (!st)
        for (int i = 0; i < m->n; i++) {
            ad_tensor *src = ad_tensor_file_find(f, ad_tensor_name(m->t[i]));
            for (int64_t j = 0; j < ad_tensor_size(src); j++) ad_tensor_set(m->t[i], j, ad_tensor_get(src, j));
        }
    ad_tensor_file_free(f);
    return st;
}

/* ---- shared by the layers ---- */

/* "<prefix>.<attr>", or attr alone for an empty prefix (a module used as the model itself). */
const char *model_tensor_name(char *buf, size_t len, const char *prefix, const char *attr)
{
    if (prefix && *prefix) snprintf(buf, len, "%s.%s", prefix, attr);
    else snprintf(buf, len, "%s", attr);
    return buf;
}

/* Each size must be at least 1: AD_ERR_ARG naming the first that is not. */
ad_status model_check_sizes(nn_model *m, const char *fn, int n, const char *const *what, const int *v)
{
    if (!m) return AD_ERR_NULL;
    for (int i = 0; i < n; i++)
        if (v[i] < 1) return model_fail(m, AD_ERR_ARG, "%s: %s = %d must be positive", fn, what[i], v[i]);
    return AD_OK;
}
