/* The lecture's losses (cross-entropy, squared, absolute), the regularized objective
 * L(θ) = mean loss + λ R(θ), and metrics. */
#include "nn.h"
#include "mlp_internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

ad_node *nn_cross_entropy(ad_graph *g, ad_node *scores, const int32_t *labels)
{
    ad_shape s = scores ? ad_node_shape(scores) : AD_SHAPE0;
    /* One logit z for two classes: -log sigmoid(z) for label 1 and -log(1 - sigmoid(z)) for
     * label 0, which is BCE-with-logits against the labels as a column. */
    if (s.rank == 2 && s.dim[1] == 1) return ad_bce_with_logits(g, scores, ad_labels(g, scores, 2, labels));
    /* Fused in ad: log-sum-exp with the maximum subtracted, so scores of ±1000 stay finite,
     * and the gradient softmax - onehot computed directly. */
    return ad_cross_entropy(g, scores, labels);
}

/* A target [N] for a prediction [N, 1] is the lecture's y_n: view it as a column. */
static ad_node *as_column(ad_graph *g, ad_node *pred, ad_node *target)
{
    if (!pred || !target) return target;
    ad_shape p = ad_node_shape(pred), t = ad_node_shape(target);
    if (p.rank == 2 && p.dim[1] == 1 && t.rank == 1 && t.dim[0] == p.dim[0]) return ad_reshape(g, target, p);
    return target;
}

ad_node *nn_squared_loss(ad_graph *g, ad_node *pred, ad_node *target)
{
    return ad_mse(g, pred, as_column(g, pred, target));
}

ad_node *nn_absolute_loss(ad_graph *g, ad_node *pred, ad_node *target)
{
    return ad_mae(g, pred, as_column(g, pred, target));
}

ad_node *nn_regularizer(ad_graph *g, const nn_mlp *m, nn_norm norm, bool exclude_bias)
{
    if (!g) return NULL;
    if (!m) {
        ad_set_error(g, AD_ERR_NULL, "nn_regularizer: model is NULL");
        return NULL;
    }
    if (norm != NN_L2 && norm != NN_L1) {
        ad_set_error(g, AD_ERR_ARG, "nn_regularizer: unknown norm %d", (int)norm);
        return NULL;
    }
    ad_node *r = NULL;
    for (int i = 0; m->params[i]; i++) {
        if (exclude_bias && i % 2) continue;
        ad_node *p = ad_param(g, m->params[i]);
        ad_node *t = ad_sum(g, norm == NN_L2 ? ad_mul(g, p, p) : ad_abs(g, p));
        r = r ? ad_add(g, r, t) : t;
    }
    return r;
}

ad_node *nn_regularized(ad_graph *g, ad_node *loss, const nn_mlp *m, nn_norm norm,
                        double lambda, bool exclude_bias)
{
    if (!g) return NULL;
    if (!isfinite(lambda) || lambda < 0) {
        ad_set_error(g, AD_ERR_ARG, "nn_regularized: lambda = %g must be finite and >= 0", lambda);
        return NULL;
    }
    if (!loss) {
        ad_set_error(g, AD_ERR_NULL, "nn_regularized: loss is NULL");
        return NULL;
    }
    if (lambda == 0) return loss;
    return ad_add(g, loss, ad_mul_scalar(g, nn_regularizer(g, m, norm, exclude_bias), lambda));
}

double nn_accuracy(const int32_t *pred, const int32_t *labels, int64_t n)
{
    if (!pred || !labels || n < 1) return NAN;
    int64_t hit = 0;
    for (int64_t i = 0; i < n; i++) hit += pred[i] == labels[i];
    return (double)hit / (double)n;
}

ad_status nn_confusion_matrix(const int32_t *pred, const int32_t *labels, int64_t n,
                              int classes, int64_t *matrix, char *err, size_t errlen)
{
    if (!pred || !labels || !matrix || n < 0 || classes < 1) {
        if (err && errlen)
            snprintf(err, errlen, "nn_confusion_matrix: %s", n < 0 || classes < 1 ? "n or classes out of range" : "an array is NULL");
        return !pred || !labels || !matrix ? AD_ERR_NULL : AD_ERR_ARG;
    }
    memset(matrix, 0, (size_t)classes * (size_t)classes * sizeof *matrix);
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= classes || pred[i] < 0 || pred[i] >= classes) {
            if (err && errlen)
                snprintf(err, errlen, "nn_confusion_matrix: row %lld: label %d, prediction %d: outside [0,%d)",
                         (long long)i, (int)labels[i], (int)pred[i], classes);
            return AD_ERR_ARG;
        }
        matrix[(int64_t)labels[i] * classes + pred[i]]++;
    }
    return AD_OK;
}

double nn_mean_squared_error(const double *pred, const double *target, int64_t n)
{
    if (!pred || !target || n < 1) return NAN;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (pred[i] - target[i]) * (pred[i] - target[i]);
    return s / (double)n;
}
