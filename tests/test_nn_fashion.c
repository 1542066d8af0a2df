/* The real Fashion-MNIST files from Debian's dataset-fashion-mnist package: shapes, the
 * published class balance, pixel range, and a short training run.  Skipped (exit status 77)
 * when the package is not installed. */
#include "testutil.h"
#include "nn.h"
#include "nn_data.h"
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* The published facts: 60000 training and 10000 test images of 28x28, 6000 and 1000 of each of
 * the 10 classes, and both sets start with an ankle boot (class 9). */
static void check_set(const nn_dataset *d, int64_t n)
{
    ck_assert_int_eq(d->n, n);
    ck_assert_int_eq(d->dim, 784);
    ck_assert_int_eq(d->classes, 10);
    ck_assert_int_eq(d->labels[0], 9);
    int64_t count[10] = {0};
    for (int64_t i = 0; i < d->n; i++) count[d->labels[i]]++;
    for (int k = 0; k < 10; k++) ck_assert_int_eq(count[k], n / 10);
    float *x = ad_tensor_data(d->x), lo = 1, hi = 0;
    for (int64_t i = 0; i < d->n * 784; i++) lo = x[i] < lo ? x[i] : lo, hi = x[i] > hi ? x[i] : hi;
    ck_assert_float_eq(lo, 0);
    ck_assert_float_eq(hi, 1); /* 255 / 255 */
}

START_TEST(test_set)
{
    char err[512];
    nn_dataset *d = nn_fashion_mnist(NULL, false, AD_F32, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    check_set(d, 10000);
    nn_dataset_free(d);
}
END_TEST

START_TEST(training_set)
{
    char err[512];
    nn_dataset *d = nn_fashion_mnist(NULL, true, AD_F32, err, sizeof err);
    ck_assert_msg(d != NULL, "%s", err);
    check_set(d, 60000);
    nn_dataset_free(d);
}
END_TEST

/* Softmax regression (D = 0) for two epochs on 8000 test images reaches well above chance
 * (10%) on the 2000 held out; a linear model's ceiling on this data is about 84%. */
START_TEST(a_linear_model_learns)
{
    char err[512];
    nn_dataset *all = nn_fashion_mnist(NULL, false, AD_F32, err, sizeof err), *train, *val;
    ck_assert_int_eq(nn_dataset_split(all, 0.2, 1, &train, &val, err, sizeof err), AD_OK);
    nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 784, .out = 10, .dtype = AD_F32, .seed = 1});
    nn_batches *it = nn_batches_new(train, 64, true, 2, err, sizeof err);
    ad_graph *g = ad_graph_new();
    nn_batch b;
    for (int epoch = 0; epoch < 2; epoch++)
        while (nn_batches_next(it, &b)) {
            ad_graph_reset(g);
            ad_node *loss = nn_cross_entropy(g, nn_mlp_forward(g, m, ad_const_tensor(g, b.x), NN_TRAIN), b.labels);
            ck_assert_int_eq(ad_backward(g, loss), AD_OK);
            for (ad_tensor *const *p = nn_mlp_params(m); *p; p++) {
                float *v = ad_tensor_data(*p), *gr = ad_tensor_grad_data(*p);
                for (int64_t i = 0; i < ad_tensor_size(*p); i++) v[i] -= 0.1f * gr[i];
            }
            nn_mlp_zero_grad(m);
        }
    int32_t *pred = malloc((size_t)val->n * sizeof *pred);
    ck_assert_int_eq(nn_mlp_predict(g, m, val->x, NULL, pred), AD_OK);
    double acc = nn_accuracy(pred, val->labels, val->n);
    ck_assert_msg(acc > 0.7, "validation accuracy %g", acc);
    free(pred);
    ad_graph_free(g);
    nn_batches_free(it);
    nn_mlp_free(m);
    nn_dataset_free(train), nn_dataset_free(val), nn_dataset_free(all);
}
END_TEST

int main(void)
{
    if (access(NN_FASHION_MNIST_DIR "/t10k-labels-idx1-ubyte.gz", R_OK) != 0) {
        printf("SKIP: Fashion-MNIST is not in %s: apt-get install dataset-fashion-mnist\n", NN_FASHION_MNIST_DIR);
        return 77;
    }
    Suite *s = suite_create("nn_fashion");
    TCase *tc = tcase_create("fashion");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_set);
    tcase_add_test(tc, training_set);
    tcase_add_test(tc, a_linear_model_learns);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
