/* A custom model in C (docs/nn.md, "Any model"): a small CNN defined as a struct of layers in an
 * nn_model, trained with Adam, saved as a PyTorch state dict, loaded into a fresh model, and
 * checked to predict the same.  The data: 8x8 images of a vertical (class 0) or horizontal
 * (class 1) bar in noise.  Exit status 0 when it learns the task and the copy agrees. */
#include "nn.h"
#include "optim.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { N = 64 };

/* Conv2d(1,8,3,padding=1), ReLU, MaxPool2d(2), Flatten, Linear(128,2): as PyTorch's
 * nn.Sequential of those modules, whose parameters are 0.weight, 0.bias, 4.weight, 4.bias. */
typedef struct {
    nn_model *m;
    nn_conv2d conv;
    nn_linear fc;
} tiny_cnn;

static bool tiny_cnn_init(tiny_cnn *net, uint64_t seed)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    ad_conv_opts same = {.padding = {1, 1}};
    net->m = nn_model_new(AD_F32);
    return net->m && !nn_conv2d_add(net->m, &net->conv, "0", 1, 8, 3, 3, &same, true, &r) &&
           !nn_linear_add(net->m, &net->fc, "4", 8 * 4 * 4, 2, true, &r);
}

/* Scores [N, 2] of images x [N, 1, 8, 8]. */
static ad_node *tiny_cnn_forward(ad_graph *g, tiny_cnn *net, ad_node *x)
{
    ad_node *h = ad_max_pool2d(g, ad_relu(g, nn_conv2d_forward(g, &net->conv, x)), 2, 2, NULL);
    return nn_linear_forward(g, &net->fc, nn_flatten(g, h));
}

/* Trains for `steps` full-batch Adam steps; returns the last loss (NAN on failure). */
static double train(tiny_cnn *net, ad_tensor *images, const int32_t *labels, int steps)
{
    char err[256];
    optim_cfg c = optim_defaults(OPTIM_ADAM, 0.01);
    optim *opt = optim_new(nn_model_params(net->m), nn_model_num_params(net->m), &c, err, sizeof err);
    ad_graph *g = ad_graph_new();
    double loss = NAN;
    for (int s = 0; opt && g && s < steps; s++) {
        ad_graph_reset(g);
        optim_zero_grad(opt);
        ad_node *l = nn_cross_entropy(g, tiny_cnn_forward(g, net, ad_const_tensor(g, images)), labels);
        if (!l || ad_backward(g, l) != AD_OK || optim_step(opt) != AD_OK) {
            fprintf(stderr, "step %d: %s\n", s, ad_error(g));
            loss = NAN;
            break;
        }
        loss = ad_value(l);
    }
    ad_graph_free(g);
    optim_free(opt);
    return loss;
}

/* The predicted class of each image. */
static void predict(tiny_cnn *net, ad_tensor *images, int32_t *out)
{
    ad_graph *g = ad_graph_new();
    ad_node *s = tiny_cnn_forward(g, net, ad_const_tensor(g, images));
    for (int i = 0; s && i < N; i++) out[i] = ad_node_get(s, 2 * i + 1) > ad_node_get(s, 2 * i);
    ad_graph_free(g);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tiny_cnn.safetensors";
    ad_tensor *images = ad_tensor_new(AD_F32, AD_SHAPE(N, 1, 8, 8));
    int32_t labels[N], before[N], after[N];
    ad_rng r;
    ad_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        labels[i] = i % 2;
        int at = (int)(ad_rng_next(&r) % 8);
        for (int p = 0; p < 64; p++) {
            bool bar = labels[i] ? p / 8 == at : p % 8 == at;
            ad_tensor_set(images, i * 64 + p, (bar ? 1.0 : 0.0) + 0.3 * ad_rng_normal(&r));
        }
    }

    tiny_cnn net, copy;
    char err[256];
    if (!tiny_cnn_init(&net, 1) || !tiny_cnn_init(&copy, 2)) return 1;
    double loss = train(&net, images, labels, 60);
    if (nn_model_save(net.m, path, err, sizeof err) || nn_model_load(copy.m, path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    predict(&net, images, before);
    predict(&copy, images, after);
    int right = 0;
    for (int i = 0; i < N; i++) right += before[i] == labels[i];
    bool same = !memcmp(before, after, sizeof before);
    printf("loss %.4f, training accuracy %.2f, the loaded copy predicts %s\n", loss, (double)right / N,
           same ? "the same" : "differently");
    nn_model_free(net.m), nn_model_free(copy.m), ad_tensor_free(images);
    return right == N && same ? 0 : 1;
}
