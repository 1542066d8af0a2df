/* Trains the lecture's MLP on Fashion-MNIST with plain SGD, L2 regularization, dropout and
 * early stopping, then tests and saves it.  docs/nn.md walks through this file; the test suite
 * compiles it and runs train() (tests/test_nn_docs.c).
 *
 *     nn_train [fashion-mnist folder]      (default /usr/share/datasets/fashion-mnist) */
#include "nn.h"
#include "nn_data.h"
#include <stdio.h>
#include <stdlib.h>

/* θ ← θ - η ∇L(θ), the lecture's update (optim/ has momentum, Adam and schedules). */
static void sgd_step(nn_mlp *m, float lr)
{
    for (ad_tensor *const *p = nn_mlp_params(m); *p; p++) {
        float *theta = ad_tensor_data(*p), *grad = ad_tensor_grad_data(*p);
        for (int64_t i = 0; i < ad_tensor_size(*p); i++) theta[i] -= lr * grad[i];
    }
    nn_mlp_zero_grad(m);
}

/* Mean cross-entropy over a dataset, in eval mode (dropout scaled, no gradients). */
static double validation_loss(nn_mlp *m, ad_graph *g, nn_batches *val)
{
    double total = 0;
    int64_t n = 0;
    nn_batch b;
    while (nn_batches_next(val, &b)) {
        ad_graph_reset(g);
        ad_set_grad_enabled(g, false);
        ad_node *scores = nn_mlp_forward(g, m, ad_const_tensor(g, b.x), NN_EVAL);
        total += ad_value(nn_cross_entropy(g, scores, b.labels)) * (double)b.rows;
        n += b.rows;
    }
    ad_set_grad_enabled(g, true);
    return total / (double)n;
}

/* Trains for at most `epochs` epochs, stops when the validation loss has not improved for 3,
 * and returns the model with the parameters of its best epoch (NULL on error). */
static nn_mlp *train(const nn_dataset *train_set, const nn_dataset *val_set, int epochs)
{
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = train_set->dim, .hidden = {128}, .out = train_set->classes,
                                         .act = NN_RELU, .dtype = AD_F32, .seed = 1, .dropout = 0.2});
    nn_batches *batches = nn_batches_new(train_set, 64, true, 1, NULL, 0);
    nn_batches *val = nn_batches_new(val_set, 1000, false, 0, NULL, 0);
    nn_early_stop *stop = m ? nn_early_stop_new(nn_mlp_params(m), 3, 1e-4) : NULL;
    ad_graph *g = ad_graph_new();
    bool ok = m && batches && val && stop && g;
    nn_batch b;
    for (int epoch = 0; ok && epoch < epochs; epoch++) {
        while (ok && nn_batches_next(batches, &b)) {
            ad_graph_reset(g);                               /* reuses memory: no allocation */
            ad_node *scores = nn_mlp_forward(g, m, ad_const_tensor(g, b.x), NN_TRAIN);
            ad_node *loss = nn_regularized(g, nn_cross_entropy(g, scores, b.labels), m, NN_L2, 1e-5, false);
            if (!(ok = ad_backward(g, loss) == AD_OK)) fprintf(stderr, "%s\n", ad_error(g));
            else sgd_step(m, 0.05f);
        }
        double loss = ok ? validation_loss(m, g, val) : 0;
        if (ok) printf("epoch %d: validation loss %.4f\n", epoch + 1, loss);
        if (ok && nn_early_stop_update(stop, loss)) break;
    }
    nn_early_stop_restore(stop);
    ad_graph_free(g);
    nn_early_stop_free(stop);
    nn_batches_free(batches);
    nn_batches_free(val);
    if (!ok) nn_mlp_free(m);
    return ok ? m : NULL;
}

int main(int argc, char **argv)
{
    char err[512];
    const char *dir = argc > 1 ? argv[1] : NULL;
    nn_dataset *all = nn_fashion_mnist(dir, true, AD_F32, err, sizeof err), *tr = NULL, *val = NULL;
    nn_dataset *test = all ? nn_fashion_mnist(dir, false, AD_F32, err, sizeof err) : NULL;
    if (!test || nn_dataset_split(all, 1.0 / 6, 42, &tr, &val, err, sizeof err) != AD_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    nn_mlp *m = train(tr, val, 30);
    int32_t *pred = malloc((size_t)test->n * sizeof *pred);
    int status = m && pred && nn_mlp_predict(NULL, m, test->x, NULL, pred) == AD_OK ? 0 : 1;
    if (!status) printf("test accuracy %.4f\n", nn_accuracy(pred, test->labels, test->n));
    if (!status && nn_mlp_save(m, "fashion.safetensors", err, sizeof err) != AD_OK) {
        fprintf(stderr, "%s\n", err);
        status = 1;
    }
    free(pred);
    nn_mlp_free(m);
    nn_dataset_free(all), nn_dataset_free(tr), nn_dataset_free(val), nn_dataset_free(test);
    return status;
}
