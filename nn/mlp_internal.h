/* What the files of nn/ share about a model; not installed. */
#ifndef NN_MLP_INTERNAL_H
#define NN_MLP_INTERNAL_H

#include "nn.h"

struct nn_mlp {
    nn_mlp_cfg cfg;     /* defaults filled in */
    int depth;          /* D, the number of hidden layers */
    nn_linear *layers;  /* D + 1, the last one the output layer */
    ad_tensor **params; /* W_1, b_1, ..., W_{D+1}, b_{D+1}, NULL */
    ad_rng drop;        /* dropout masks */
};

/* D: the widths before the first 0. */
int nn_mlp_hidden_count(const nn_mlp_cfg *c);

/* The index of linear layer `layer` (0..D) in PyTorch's nn.Sequential of the same modules,
 * which names its parameters "<index>.weight" and "<index>.bias". */
int nn_mlp_module_index(const nn_mlp_cfg *c, int layer);

#endif
