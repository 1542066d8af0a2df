/* Any model as a state dict (nn_model): tensors kept in the order added, names checked, a
 * save/load round trip bit for bit with metadata and the input scaler, and load_state_dict's
 * strictness (a missing, extra or reshaped tensor changes nothing and names itself); plus the
 * layers' tensors, names and PyTorch's initial ranges. */
#include "testutil.h"
#include "nn.h"
#include "ad_io.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256], path[512];

static void setup(void)
{
    scratch_dir_make(dir, sizeof dir, "nn_model");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
}

static void teardown(void) { scratch_dir_remove(dir); }

START_TEST(params_and_buffers_in_order)
{
    nn_model *m = nn_model_new(AD_F32);
    ck_assert_ptr_nonnull(nn_model_param(m, "0.weight", AD_SHAPE(3, 2)));
    ck_assert_ptr_nonnull(nn_model_buffer(m, "1.running_mean", AD_SHAPE(3)));
    ck_assert_ptr_nonnull(nn_model_param(m, "2.bias", AD_SHAPE(3)));
    ck_assert_int_eq(nn_model_count(m), 3);
    ck_assert(nn_model_is_param(m, 0) && !nn_model_is_param(m, 1) && nn_model_is_param(m, 2));
    ad_tensor *const *p = nn_model_params(m);
    ck_assert_str_eq(ad_tensor_name(p[0]), "0.weight");
    ck_assert_str_eq(ad_tensor_name(p[1]), "2.bias");
    ck_assert_ptr_null(p[2]);
    ck_assert_int_eq(nn_model_num_param_elements(m), 9);
    ck_assert_int_eq(ad_tensor_dtype(nn_model_find(m, "1.running_mean")), AD_F32);
    ck_assert_ptr_null(nn_model_param(m, "0.weight", AD_SHAPE(1)));
    ck_assert_str_eq(nn_model_error(m), "nn_model_param: the model already has a tensor \"0.weight\"");
    ck_assert_ptr_null(nn_model_buffer(m, "", AD_SHAPE(1)));
    ck_assert_ptr_null(nn_model_param(m, "__metadata__", AD_SHAPE(1)));
    ck_assert_ptr_null(nn_model_param(m, NULL, AD_SHAPE(1)));
    ck_assert_int_eq(nn_model_count(m), 3);
    nn_model_free(m);
    ck_assert_ptr_null(nn_model_new((ad_dtype)7));
    nn_model_free(NULL);
}
END_TEST

/* A model with a linear layer, a buffer and metadata, its values drawn from seed. */
static nn_model *sample_model(uint64_t seed, ad_dtype t)
{
    nn_model *m = nn_model_new(t);
    nn_linear l;
    ad_rng r;
    ad_rng_seed(&r, seed);
    ck_assert_int_eq(nn_linear_add(m, &l, "fc", 4, 3, true, &r), AD_OK);
    ad_tensor *b = nn_model_buffer(m, "count", AD_SHAPE0);
    ad_tensor_set(b, 0, (double)seed);
    ck_assert_int_eq(nn_model_set_meta(m, "arch", "fc4x3"), AD_OK);
    return m;
}

START_TEST(save_load_round_trip)
{
    for (int t = 0; t < 2; t++) {
        nn_model *a = sample_model(1, (ad_dtype)t), *b = sample_model(2, (ad_dtype)t);
        double mean[3] = {0.5, -1.25, 1e-300}, std[3] = {1, 0.1, 3e10}, m2[3], s2[3];
        ck_assert_int_eq(nn_model_set_scaler(a, 3, mean, std), AD_OK);
        char err[512];
        ck_assert_int_eq(nn_model_save(a, path, err, sizeof err), AD_OK);
        ck_assert_int_eq(nn_model_set_meta(b, "arch", "other"), AD_OK);
        ck_assert_int_eq(nn_model_load(b, path, err, sizeof err), AD_OK);
        for (int i = 0; i < nn_model_count(a); i++)
            for (int64_t j = 0; j < ad_tensor_size(nn_model_tensor(a, i)); j++)
                ck_assert(ad_tensor_get(nn_model_tensor(a, i), j) == ad_tensor_get(nn_model_tensor(b, i), j));
        ck_assert_str_eq(nn_model_meta(b, "arch"), "fc4x3");
        ck_assert_str_eq(nn_model_meta(b, "format"), "pt");
        ck_assert_int_eq(nn_model_scaler(b, 3, m2, s2), AD_OK);
        ck_assert(!memcmp(mean, m2, sizeof mean) && !memcmp(std, s2, sizeof std));
        ck_assert_int_eq(nn_model_scaler(b, 4, NULL, NULL), AD_ERR_ARG);
        nn_model_free(a), nn_model_free(b);
    }
}
END_TEST

/* Writes tensors named names[i] of shapes[i] into path (float64, zeros). */
static void write_file(int n, const char *const *names, const ad_shape *shapes)
{
    ad_tensor *ts[8];
    for (int i = 0; i < n; i++) ts[i] = ad_tensor_new(AD_F64, shapes[i]);
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(path, n, names, ts, 0, NULL, err, sizeof err), AD_OK);
    for (int i = 0; i < n; i++) ad_tensor_free(ts[i]);
}

START_TEST(load_is_strict_and_atomic)
{
    nn_model *m = sample_model(3, AD_F32);
    double before = ad_tensor_get(nn_model_find(m, "fc.weight"), 0);
    char err[512];
    struct {
        int n;
        const char *names[4];
        ad_shape shapes[4];
        const char *want;
    } cases[] = {
        {2, {"fc.weight", "fc.bias"}, {AD_SHAPE(3, 4), AD_SHAPE(3)},
         "the model's tensor \"count\" [] is not in the file"},
        {3, {"fc.weight", "fc.bias", "count"}, {AD_SHAPE(4, 3), AD_SHAPE(3), AD_SHAPE0},
         "tensor \"fc.weight\" is [4,3] in the file, [3,4] in the model"},
        {4, {"fc.weight", "fc.bias", "count", "extra"}, {AD_SHAPE(3, 4), AD_SHAPE(3), AD_SHAPE0, AD_SHAPE(1)},
         "the file's tensor \"extra\" is not in the model"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        write_file(cases[c].n, cases[c].names, cases[c].shapes);
        ck_assert_int_ne(nn_model_load(m, path, err, sizeof err), AD_OK);
        ck_assert_msg(strstr(err, cases[c].want) && strstr(err, "nn_model_load: "), "%s", err);
        ck_assert(ad_tensor_get(nn_model_find(m, "fc.weight"), 0) == before);
        ck_assert_str_eq(nn_model_meta(m, "arch"), "fc4x3");
    }
    ck_assert_int_eq(nn_model_load(m, "/nonexistent/x.safetensors", err, sizeof err), AD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "nn_model_load: "));
    nn_model_free(m);
}
END_TEST

/* PyTorch saves num_batches_tracked as int64: a hand-written I64 tensor loads as its value. */
START_TEST(int64_tensors_load)
{
    const char hdr[] = "{\"n\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}";
    unsigned char buf[8 + sizeof hdr - 1 + 16] = {0};
    uint64_t hl = sizeof hdr - 1;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    int64_t v[2] = {12345, -7};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 8; i++) buf[8 + hl + 8 * k + i] = (unsigned char)((uint64_t)v[k] >> (8 * i));
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(buf, 1, sizeof buf, f), sizeof buf);
    fclose(f);
    nn_model *m = nn_model_new(AD_F32);
    ad_tensor *n = nn_model_buffer(m, "n", AD_SHAPE(2));
    char err[256];
    ck_assert_msg(nn_model_load(m, path, err, sizeof err) == AD_OK, "%s", err);
    ck_assert(ad_tensor_get(n, 0) == 12345 && ad_tensor_get(n, 1) == -7);
    nn_model_free(m);
}
END_TEST

START_TEST(linear_layer_names_and_ranges)
{
    nn_model *m = nn_model_new(AD_F64);
    nn_linear l, nobias;
    ad_rng r;
    ad_rng_seed(&r, 5);
    ck_assert_int_eq(nn_linear_add(m, &l, "7", 16, 8, true, &r), AD_OK);
    ck_assert_int_eq(nn_linear_add(m, &nobias, "", 8, 2, false, &r), AD_OK);
    ck_assert_str_eq(ad_tensor_name(l.weight), "7.weight");
    ck_assert_str_eq(ad_tensor_name(l.bias), "7.bias");
    ck_assert_str_eq(ad_tensor_name(nobias.weight), "weight");
    ck_assert_ptr_null(nobias.bias);
    /* torch.nn.Linear: weight and bias uniform in +-1/sqrt(in) */
    for (int64_t j = 0; j < ad_tensor_size(l.weight); j++) ck_assert(fabs(ad_tensor_get(l.weight, j)) <= 0.25);
    for (int64_t j = 0; j < ad_tensor_size(l.bias); j++) ck_assert(fabs(ad_tensor_get(l.bias, j)) <= 0.25);
    ck_assert_int_eq(nn_linear_add(m, &l, "bad", 0, 3, true, &r), AD_ERR_ARG);
    ck_assert_str_eq(nn_model_error(m), "nn_linear_add: in = 0 must be positive");
    ck_assert_int_eq(nn_linear_add(m, &l, "7", 2, 3, true, &r), AD_ERR_ARG);
    /* the model's layers run as nn_linear_forward */
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_full(g, AD_F64, AD_SHAPE(2, 8), 1.0);
    ad_node *y = nn_linear_forward(g, &nobias, x);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(ad_backward(g, ad_sum(g, y)), AD_OK);
    ck_assert(ad_tensor_grad_get(nobias.weight, 0) == 2.0);
    ad_graph_free(g);
    nn_model_free(m);
}
END_TEST

START_TEST(flatten_keeps_the_batch_axis)
{
    ad_graph *g = ad_graph_new();
    ad_node *x = ad_full(g, AD_F32, AD_SHAPE(2, 3, 4, 5), 1.0);
    ad_shape s = ad_node_shape(nn_flatten(g, x));
    ck_assert(s.rank == 2 && s.dim[0] == 2 && s.dim[1] == 60);
    ck_assert_ptr_null(nn_flatten(g, ad_const_scalar(g, 1)));
    ck_assert_str_eq(ad_error(g), "nn_flatten: input is a scalar (expected [N,...])");
    ad_graph_free(g);
}
END_TEST

/* Each layer's tensors under PyTorch's names, with torch.nn's initial values, and a clear
 * message for an input that does not fit. */
START_TEST(layers_names_values_and_errors)
{
    nn_model *m = nn_model_new(AD_F32);
    ad_rng r;
    ad_rng_seed(&r, 9);
    nn_conv2d c;
    nn_batch_norm bn;
    nn_layer_norm ln;
    nn_embedding e;
    ad_conv_opts o = {.padding = {1, 1}, .groups = 2};
    ck_assert_int_eq(nn_conv2d_add(m, &c, "0", 4, 6, 3, 3, &o, true, &r), AD_OK);
    ck_assert_int_eq(nn_batch_norm_add(m, &bn, "1", 6, 0, 0), AD_OK);
    ck_assert_int_eq(nn_layer_norm_add(m, &ln, "ln", 6, 0), AD_OK);
    ck_assert_int_eq(nn_embedding_add(m, &e, "embed", 10, 3, &r), AD_OK);
    static const char *const names[] = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                        "1.num_batches_tracked", "ln.weight", "ln.bias", "embed.weight"};
    ck_assert_int_eq(nn_model_count(m), 10);
    for (int i = 0; i < 10; i++) ck_assert_str_eq(ad_tensor_name(nn_model_tensor(m, i)), names[i]);
    ck_assert(!nn_model_is_param(m, 4) && !nn_model_is_param(m, 6) && nn_model_is_param(m, 9));
    ad_shape ws = ad_tensor_shape(c.weight);
    ck_assert(ws.rank == 4 && ws.dim[0] == 6 && ws.dim[1] == 2 && ws.dim[2] == 3 && ws.dim[3] == 3);
    double bound = 1 / sqrt(2 * 9.0); /* fan_in = in/groups * kh * kw */
    for (int64_t j = 0; j < ad_tensor_size(c.weight); j++) ck_assert(fabs(ad_tensor_get(c.weight, j)) <= bound);
    ck_assert(ad_tensor_get(bn.weight, 0) == 1 && ad_tensor_get(bn.running_var, 5) == 1 && ad_tensor_get(bn.bias, 0) == 0);
    ck_assert(bn.eps == 1e-5 && bn.momentum == 0.1 && ln.eps == 1e-5);
    nn_conv2d bad_conv;
    nn_batch_norm bad_bn;
    ck_assert_int_eq(nn_conv2d_add(m, &bad_conv, "bad", 3, 6, 3, 3, &o, true, &r), AD_ERR_ARG);
    ck_assert_str_eq(nn_model_error(m), "nn_conv2d_add: groups = 2 must divide in = 3 and out = 6");
    ck_assert_int_eq(nn_batch_norm_add(m, &bad_bn, "bad", 3, 0, 2), AD_ERR_ARG);
    ck_assert_ptr_null(bad_conv.weight);

    ad_graph *g = ad_graph_new();
    ck_assert_ptr_null(nn_conv2d_forward(g, &c, ad_full(g, AD_F32, AD_SHAPE(2, 3, 5, 5), 1)));
    ck_assert_str_eq(ad_error(g), "nn_conv2d_forward: input [2,3,5,5] does not fit the layer (expected [N,4,H,W])");
    ad_clear_error(g);
    ck_assert_ptr_null(nn_layer_norm_forward(g, &ln, ad_full(g, AD_F64, AD_SHAPE(2, 6), 1)));
    ck_assert_str_eq(ad_error(g), "nn_layer_norm_forward: input [2,6] is float64, the layer is float32");
    ad_clear_error(g);
    /* batch norm counts the training batches it normalises, as PyTorch's buffer does */
    ad_node *x = ad_rand_normal(g, AD_F32, AD_SHAPE(4, 6, 2, 2), &r, 0, 1);
    ck_assert_ptr_nonnull(nn_batch_norm_forward(g, &bn, x, NN_TRAIN));
    ck_assert_ptr_nonnull(nn_batch_norm_forward(g, &bn, x, NN_EVAL));
    ck_assert(ad_tensor_get(bn.num_batches_tracked, 0) == 1);
    ad_node *emb = nn_embedding_forward(g, &e, AD_SHAPE(2, 2), (const int64_t[]){1, 9, 0, 1});
    ad_shape es = ad_node_shape(emb);
    ck_assert(es.rank == 3 && es.dim[0] == 2 && es.dim[1] == 2 && es.dim[2] == 3);
    ck_assert(ad_node_get(emb, 0) == ad_tensor_get(e.weight, 3) && ad_node_get(emb, 9) == ad_tensor_get(e.weight, 3));
    ad_graph_free(g);
    nn_model_free(m);
}
END_TEST

Suite *model_suite(void)
{
    Suite *s = suite_create("nn_model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, params_and_buffers_in_order);
    tcase_add_test(tc, save_load_round_trip);
    tcase_add_test(tc, load_is_strict_and_atomic);
    tcase_add_test(tc, int64_tensors_load);
    tcase_add_test(tc, linear_layer_names_and_ranges);
    tcase_add_test(tc, flatten_keeps_the_batch_axis);
    tcase_add_test(tc, layers_names_values_and_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(model_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
