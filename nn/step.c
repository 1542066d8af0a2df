/* A training step recorded once and replayed per minibatch (nn_data.h). */
#include "nn_data.h"
#include "ad_op.h"
#include <math.h>
#include <stdlib.h>

struct nn_step {
    nn_loss_fn loss_fn;
    void *user;
    ad_graph *g;
    ad_node *loss;             /* the recording's root, NULL before the first */
    const ad_tensor *x, *y;    /* the batch tensors it was recorded on */
    const void *xdata, *ydata; /* and their storage: a tensor freed and another made at its
                                * address must not be taken for it */
    int64_t rows;
    uint32_t *ce;              /* ids of its cross_entropy and labels nodes, which take the labels */
    uint32_t nce, ce_cap;
    int64_t recorded, replayed;
};

nn_step *nn_step_new(nn_loss_fn loss, void *user)
{
    if (!loss) return NULL;
    nn_step *s = calloc(1, sizeof *s);
    if (!s || !(s->g = ad_graph_new())) {
        free(s);
        return NULL;
    }
    s->loss_fn = loss;
    s->user = user;
    return s;
}

void nn_step_free(nn_step *s)
{
    if (!s) return;
    ad_graph_free(s->g);
    free(s->ce);
    free(s);
}

ad_graph *nn_step_graph(const nn_step *s) { return s ? s->g : NULL; }

void nn_step_counts(const nn_step *s, int64_t *recorded, int64_t *replayed)
{
    if (recorded) *recorded = s ? s->recorded : 0;
    if (replayed) *replayed = s ? s->replayed : 0;
}

/* Records the loss on b (the graph's memory from earlier recordings is reused), and notes
 * the nodes that hold the batch's labels: cross_entropy's and ad_labels's. */
static ad_status record(nn_step *s, const nn_batch *b)
{
    ad_graph *g = s->g;
    ad_graph_reset(g);
    s->loss = NULL;
    ad_node *x = ad_const_tensor(g, b->x), *y = b->y ? ad_const_tensor(g, b->y) : NULL;
    ad_node *loss = s->loss_fn(g, x, b->labels, y, s->user);
    if (!loss)
        return ad_status_of(g) ? ad_status_of(g)
                               : ad_set_error(g, AD_ERR_NULL, "nn_step: the loss function returned NULL");
    int ce_op = ad_op_find("cross_entropy"), labels_op = ad_op_find("labels");
    s->nce = 0;
    for (uint32_t i = 0; i < ad_graph_num_nodes(g); i++) {
        int op = ad_node_op(ad_graph_node(g, i));
        if (op != ce_op && op != labels_op) continue;
        if (s->nce == s->ce_cap) {
            uint32_t cap = s->ce_cap ? 2 * s->ce_cap : 4;
            uint32_t *c = realloc(s->ce, cap * sizeof *c);
            if (!c) return ad_set_error(g, AD_ERR_NOMEM, "nn_step: out of memory");
            s->ce = c;
            s->ce_cap = cap;
        }
        s->ce[s->nce++] = i;
    }
    s->loss = loss;
    s->x = b->x, s->y = b->y, s->rows = b->rows;
    s->xdata = ad_tensor_data(b->x), s->ydata = b->y ? ad_tensor_data(b->y) : NULL;
    s->recorded++;
    return AD_OK;
}

/* Sets the batch's labels and replays the recording. */
static ad_status replay(nn_step *s, const nn_batch *b)
{
    ad_status st = AD_OK;
    for (uint32_t k = 0; k < s->nce && st == AD_OK; k++)
        st = ad_node_set_arg(s->g, ad_graph_node(s->g, s->ce[k]), b->labels);
    if (st == AD_OK) st = ad_replay(s->g);
    if (st == AD_OK) s->replayed++;
    return st;
}

ad_status nn_step_run(nn_step *s, const nn_batch *b, double *loss)
{
    if (!s) return AD_ERR_NULL;
    ad_graph *g = s->g;
    if (!b || !b->x) return ad_set_error(g, AD_ERR_NULL, "nn_step: the batch or its inputs are NULL");
    bool same = s->loss && s->x == b->x && s->y == b->y && s->rows == b->rows && s->xdata == ad_tensor_data(b->x) &&
                s->ydata == (b->y ? ad_tensor_data(b->y) : NULL);
    ad_status st = same ? replay(s, b) : record(s, b);
    /* a branch of the loss (ad_branch) goes the other way on this batch: record it again */
    if (same && st == AD_ERR_RETAPE) st = record(s, b);
    if (st == AD_OK) st = ad_backward(g, s->loss);
    if (st != AD_OK) s->loss = NULL; /* the next batch records again */
    if (loss) *loss = st == AD_OK ? ad_value(s->loss) : NAN;
    return st;
}
