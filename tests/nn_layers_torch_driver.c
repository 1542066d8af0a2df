/* The layers of any model (nn_model) against torch.nn, through the state dict: run by
 * tests/nn_layers_torch.py.
 *
 *   nn_layers_torch_driver DIR
 *
 * Builds Conv2d(2,3,3,padding=1) "conv", BatchNorm2d(3) "bn", MaxPool2d(2), Flatten,
 * Linear(12,5) "fc1", LayerNorm(5) "ln", Linear(5,2) "fc2" and Embedding(7,5) "emb" (added to
 * fc1's output by ids), in float64 with seed 1, and writes DIR/init.safetensors (the state
 * dict as made), then runs one training forward and backward of sum(out * W) and writes
 * DIR/trained.safetensors (the state dict after it: batch norm's running statistics moved)
 * and DIR/io.safetensors: the input "x", the weights "w", the training output "train_out", the
 * gradient of every parameter ("grad.NAME") and the evaluation output "eval_out" after the
 * forward.  Exit status 0, or 1 with the message on stderr. */
#include "ad_io.h"
#include "nn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    nn_model *m;
    nn_conv2d conv;
    nn_batch_norm bn;
    nn_linear fc1, fc2;
    nn_layer_norm ln;
    nn_embedding emb;
} net;

static const int64_t IDS[4] = {3, 0, 6, 3};

static ad_node *forward(ad_graph *g, net *n, ad_node *x, nn_mode mode)
{
    ad_node *h = nn_batch_norm_forward(g, &n->bn, nn_conv2d_forward(g, &n->conv, x), mode);
    h = nn_flatten(g, ad_max_pool2d(g, ad_relu(g, h), 2, 2, NULL));
    h = ad_add(g, nn_linear_forward(g, &n->fc1, h), nn_embedding_forward(g, &n->emb, AD_SHAPE(4), IDS));
    return nn_linear_forward(g, &n->fc2, ad_tanh(g, nn_layer_norm_forward(g, &n->ln, h)));
}

static int fail(const char *what, const char *msg)
{
    fprintf(stderr, "nn_layers_torch_driver: %s: %s\n", what, msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) return fail("usage", "nn_layers_torch_driver DIR");
    char path[3][4096], err[512];
    const char *names[3] = {"init", "trained", "io"};
    for (int i = 0; i < 3; i++) snprintf(path[i], sizeof path[i], "%s/%s.safetensors", argv[1], names[i]);
    net n;
    ad_rng r;
    ad_rng_seed(&r, 1);
    ad_conv_opts same = {.padding = {1, 1}};
    n.m = nn_model_new(AD_F64);
    if (!n.m || nn_conv2d_add(n.m, &n.conv, "conv", 2, 3, 3, 3, &same, true, &r) ||
        nn_batch_norm_add(n.m, &n.bn, "bn", 3, 0, 0) || nn_linear_add(n.m, &n.fc1, "fc1", 12, 5, true, &r) ||
        nn_layer_norm_add(n.m, &n.ln, "ln", 5, 0) || nn_linear_add(n.m, &n.fc2, "fc2", 5, 2, true, &r) ||
        nn_embedding_add(n.m, &n.emb, "emb", 7, 5, &r))
        return fail("building", n.m ? nn_model_error(n.m) : "out of memory");
    /* LayerNorm's and BatchNorm's affine parameters start at 1 and 0: move them, so that a
     * mix-up of weight and bias would show */
    ad_tensor_rand_uniform(n.ln.weight, &r, 0.5, 1.5), ad_tensor_rand_uniform(n.ln.bias, &r, -0.5, 0.5);
    ad_tensor_rand_uniform(n.bn.weight, &r, 0.5, 1.5), ad_tensor_rand_uniform(n.bn.bias, &r, -0.5, 0.5);
    if (nn_model_save(n.m, path[0], err, sizeof err)) return fail("saving", err);

    ad_tensor *x = ad_tensor_new(AD_F64, AD_SHAPE(4, 2, 4, 4)), *w = ad_tensor_new(AD_F64, AD_SHAPE(4, 2));
    ad_tensor_rand_normal(x, &r, 0, 1), ad_tensor_rand_uniform(w, &r, -1, 1);
    ad_graph *g = ad_graph_new();
    ad_node *y = forward(g, &n, ad_const_tensor(g, x), NN_TRAIN);
    if (!y || ad_backward(g, ad_sum(g, ad_mul(g, y, ad_const_tensor(g, w)))) != AD_OK) return fail("training", ad_error(g));
    int k = nn_model_num_params(n.m), nio = 0;
    const char *io_names[32];
    ad_tensor *io[32];
    char grad_names[16][96];
    ad_tensor *train_out = ad_tensor_new(AD_F64, ad_node_shape(y));
    for (int64_t i = 0; i < ad_node_size(y); i++) ad_tensor_set(train_out, i, ad_node_get(y, i));
    io_names[nio] = "x", io[nio++] = x;
    io_names[nio] = "w", io[nio++] = w;
    io_names[nio] = "train_out", io[nio++] = train_out;
    ad_tensor *grads[16];
    for (int i = 0; i < k; i++) {
        ad_tensor *p = nn_model_params(n.m)[i];
        grads[i] = ad_tensor_new(AD_F64, ad_tensor_shape(p));
        for (int64_t j = 0; j < ad_tensor_size(p); j++) ad_tensor_set(grads[i], j, ad_tensor_grad_get(p, j));
        snprintf(grad_names[i], sizeof grad_names[i], "grad.%s", ad_tensor_name(p));
        io_names[nio] = grad_names[i], io[nio++] = grads[i];
    }
    if (nn_model_save(n.m, path[1], err, sizeof err)) return fail("saving", err);
    ad_graph_reset(g);
    y = forward(g, &n, ad_const_tensor(g, x), NN_EVAL);
    if (!y) return fail("evaluating", ad_error(g));
    ad_tensor *eval_out = ad_tensor_new(AD_F64, ad_node_shape(y));
    for (int64_t i = 0; i < ad_node_size(y); i++) ad_tensor_set(eval_out, i, ad_node_get(y, i));
    io_names[nio] = "eval_out", io[nio++] = eval_out;
    if (ad_safetensors_save(path[2], nio, io_names, io, 0, NULL, err, sizeof err)) return fail("saving", err);
    for (int i = 0; i < k; i++) ad_tensor_free(grads[i]);
    ad_tensor_free(x), ad_tensor_free(w), ad_tensor_free(train_out), ad_tensor_free(eval_out);
    ad_graph_free(g);
    nn_model_free(n.m);
    return 0;
}
