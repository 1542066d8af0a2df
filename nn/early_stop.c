/* Early stopping: remember the parameters of the best validation loss, stop after `patience`
 * epochs without improvement, put the best parameters back. */
#include "nn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct nn_early_stop {
    int n;
    ad_tensor **live;   /* the model's parameters */
    void **best;        /* their values at the best epoch */
    int patience, epoch, best_epoch, since;
    double min_delta, best_loss;
};

void nn_early_stop_free(nn_early_stop *e)
{
    if (!e) return;
    for (int i = 0; e->best && i < e->n; i++) ad_free(e->best[i]);
    ad_free(e->best);
    ad_free(e->live);
    ad_free(e);
}

static size_t bytes_of(const ad_tensor *t)
{
    return (size_t)ad_tensor_size(t) * ad_dtype_size(ad_tensor_dtype(t));
}

/* The snapshots are allocated here, so updates inside a training loop allocate nothing. */
nn_early_stop *nn_early_stop_new(ad_tensor *const *params, int patience, double min_delta)
{
    if (!params || patience < 1 || !(min_delta >= 0)) return NULL;
    nn_early_stop *e = ad_calloc(1, sizeof *e);
    if (!e) return NULL;
    while (params[e->n]) e->n++;
    e->live = ad_calloc((size_t)e->n + 1, sizeof *e->live);
    e->best = ad_calloc((size_t)e->n + 1, sizeof *e->best);
    if (!e->live || !e->best) {
        nn_early_stop_free(e);
        return NULL;
    }
    for (int i = 0; i < e->n; i++) {
        e->live[i] = params[i];
        if (!(e->best[i] = ad_malloc(bytes_of(params[i]) ? bytes_of(params[i]) : 1))) {
            nn_early_stop_free(e);
            return NULL;
        }
    }
    e->patience = patience, e->min_delta = min_delta;
    e->best_loss = INFINITY, e->best_epoch = -1;
    return e;
}

bool nn_early_stop_update(nn_early_stop *e, double val_loss)
{
    if (!e) return true;
    int epoch = e->epoch++;
    /* best_loss starts at +inf, so the first finite loss is an improvement; NaN never is. */
    if (val_loss < e->best_loss - e->min_delta) {
        e->best_loss = val_loss, e->best_epoch = epoch, e->since = 0;
        for (int i = 0; i < e->n; i++) memcpy(e->best[i], ad_tensor_data(e->live[i]), bytes_of(e->live[i]));
        return false;
    }
    return ++e->since >= e->patience;
}

void nn_early_stop_restore(nn_early_stop *e)
{
    if (!e || e->best_epoch < 0) return;
    for (int i = 0; i < e->n; i++) memcpy(ad_tensor_data(e->live[i]), e->best[i], bytes_of(e->live[i]));
}

double nn_early_stop_best(const nn_early_stop *e) { return e ? e->best_loss : INFINITY; }
int nn_early_stop_best_epoch(const nn_early_stop *e) { return e ? e->best_epoch : -1; }
