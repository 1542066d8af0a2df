/* The recurrent layers (nn/rnn.c): cells against hand and PyTorch values, gradients by central
 * differences, shapes and errors, replay, a training loop's memory, and the char_lstm demo
 * (its path is argv[1]; the demo's test is skipped without it). */
#include "nn.h"
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *char_lstm_path;

static const char *const KINDS[] = {"RNN", "LSTM", "GRU"};

/* A model holding one layer of the kind, with the given in and hidden. */
static nn_model *layer_model(nn_rnn *l, nn_rnn_kind kind, ad_dtype t, int in, int hidden, uint64_t seed)
{
    nn_model *m = nn_model_new(t);
    ck_assert_ptr_nonnull(m);
    ad_rng r;
    ad_rng_seed(&r, seed);
    ck_assert_int_eq(nn_rnn_add(m, l, kind, "rnn", in, hidden, &r), AD_OK);
    return m;
}

/* The tiny case: in = hidden = 1, N = 1, x = (0.5, -1), and these gate weights (the first G
 * of each list).  Expected values are torch.nn.RNN/LSTM/GRU's in float64 and, for the first
 * step, the formulas worked by hand. */
static const double WIH[] = {0.1, 0.2, 0.3, 0.4}, WHH[] = {-0.1, 0.5, -0.3, 0.2}, BIH[] = {0.05, -0.05, 0.1, 0.0},
                    BHH[] = {0.0, 0.1, -0.1, 0.2};

static double sigm(double z) { return 1 / (1 + exp(-z)); }

START_TEST(cells_by_hand)
{
    static const double torch_y[3][2] = {{0.099667994624955819, -0.059895022161497509},
                                         {0.046699291727979035, -0.05014324719116562},
                                         {0.090188937678570183, -0.091893414346448876}};
    const double torch_c_last = -0.11127601279358147;
    for (int kind = 0; kind < 3; kind++) {
        nn_rnn l;
        nn_model *m = layer_model(&l, (nn_rnn_kind)kind, AD_F64, 1, 1, 1);
        int G = kind == NN_LSTM ? 4 : kind == NN_GRU ? 3 : 1;
        for (int k = 0; k < G; k++) {
            ad_tensor_set(l.weight_ih, k, WIH[k]), ad_tensor_set(l.weight_hh, k, WHH[k]);
            ad_tensor_set(l.bias_ih, k, BIH[k]), ad_tensor_set(l.bias_hh, k, BHH[k]);
        }
        /* the first step by hand: the state is zero, so only the biases of W_hh's side count */
        double pre[4], h1;
        for (int k = 0; k < G; k++) pre[k] = WIH[k] * 0.5 + BIH[k] + BHH[k];
        if (kind == NN_RNN_TANH) h1 = tanh(pre[0]);
        else if (kind == NN_LSTM) h1 = sigm(pre[3]) * tanh(sigm(pre[0]) * tanh(pre[2]));
        else {
            double r = sigm(pre[0]), z = sigm(pre[1]), n = tanh(WIH[2] * 0.5 + BIH[2] + r * BHH[2]);
            h1 = (1 - z) * n;
        }
        ad_graph *g = ad_graph_new();
        double xv[] = {0.5, -1.0};
        ad_node *x = ad_const(g, AD_F64, AD_SHAPE(2, 1, 1), xv), *h_last, *c_last;
        ad_node *y = nn_rnn_forward(g, &l, x, NULL, NULL, &h_last, &c_last);
        ck_assert_msg(y, "%s", ad_error(g));
        ck_assert_double_eq_tol(ad_node_get(y, 0), h1, 1e-15);
        for (int t = 0; t < 2; t++)
            ck_assert_msg(fabs(ad_node_get(y, t) - torch_y[kind][t]) <= 1e-15, "%s step %d: %.17g, torch %.17g",
                          KINDS[kind], t, ad_node_get(y, t), torch_y[kind][t]);
        ck_assert_double_eq(ad_node_get(h_last, 0), ad_node_get(y, 1));
        if (kind == NN_LSTM) ck_assert_double_eq_tol(ad_node_get(c_last, 0), torch_c_last, 1e-15);
        else ck_assert_ptr_null(c_last);

        /* the cell, step by step, gives the same bits as the sequence loop */
        ad_node *c = NULL, *h = NULL;
        for (int t = 0; t < 2; t++) {
            ad_node *xt = ad_const(g, AD_F64, AD_SHAPE(1, 1), &xv[t]);
            h = nn_rnn_cell(g, &l, xt, h, c, &c);
            ck_assert_msg(h, "%s", ad_error(g));
            ck_assert_double_eq(ad_node_get(h, 0), ad_node_get(y, t));
        }
        ad_graph_free(g);
        nn_model_free(m);
    }
}
END_TEST

/* The sum of the outputs and last states weighted by fixed numbers, whose gradient reaches
 * every parameter, the input and the initial states. */
typedef struct {
    nn_rnn *l;
    ad_tensor *x, *h0, *c0;
    ad_tensor *wy, *wh, *wc;
} seq_case;

/* A case of T steps of N sequences through l, every tensor uniform in [-1, 1) from seed; the
 * input and the initial states are parameters, so backward fills their gradients too. */
static seq_case seq_case_new(nn_rnn *l, int T, int N, uint64_t seed)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    seq_case s = {.l = l};
    ad_tensor **mine[] = {&s.x, &s.h0, &s.c0, &s.wy, &s.wh, &s.wc};
    ad_shape shapes[] = {AD_SHAPE(T, N, l->in), AD_SHAPE(N, l->hidden), AD_SHAPE(N, l->hidden),
                         AD_SHAPE(T, N, l->hidden), AD_SHAPE(N, l->hidden), AD_SHAPE(N, l->hidden)};
    for (int k = 0; k < 6; k++) {
        if (k == 2 && l->kind != NN_LSTM) continue;
        *mine[k] = k < 3 ? ad_param_new(NULL, AD_F64, shapes[k]) : ad_tensor_new(AD_F64, shapes[k]);
        ck_assert_ptr_nonnull(*mine[k]);
        ad_tensor_rand_uniform(*mine[k], &r, -1, 1);
    }
    return s;
}

static void seq_case_free(seq_case *s)
{
    ad_tensor *mine[] = {s->x, s->h0, s->c0, s->wy, s->wh, s->wc};
    for (int k = 0; k < 6; k++) ad_tensor_free(mine[k]);
}

static ad_node *seq_loss(ad_graph *g, const seq_case *s)
{
    ad_node *x = ad_param(g, s->x), *h0 = ad_param(g, s->h0), *c0 = s->c0 ? ad_param(g, s->c0) : NULL, *hl, *cl;
    ad_node *y = nn_rnn_forward(g, s->l, x, h0, c0, &hl, &cl);
    ad_node *loss = ad_add(g, ad_sum(g, ad_mul(g, y, ad_const_tensor(g, s->wy))),
                           ad_sum(g, ad_mul(g, hl, ad_const_tensor(g, s->wh))));
    if (cl) loss = ad_add(g, loss, ad_sum(g, ad_mul(g, cl, ad_const_tensor(g, s->wc))));
    return loss;
}

static double seq_value(const seq_case *s)
{
    ad_graph *g = ad_graph_new();
    ad_set_grad_enabled(g, false);
    double v = ad_value(seq_loss(g, s));
    ad_graph_free(g);
    return v;
}

START_TEST(gradients_by_central_differences)
{
    enum { T = 3, N = 2, IN = 3, H = 2 };
    for (int kind = 0; kind < 3; kind++) {
        nn_rnn l;
        nn_model *m = layer_model(&l, (nn_rnn_kind)kind, AD_F64, IN, H, 7 + (uint64_t)kind);
        seq_case s = seq_case_new(&l, T, N, 3);

        ad_graph *g = ad_graph_new();
        ad_node *loss = seq_loss(g, &s);
        ck_assert_msg(loss, "%s", ad_error(g));
        ck_assert_int_eq(ad_backward(g, loss), AD_OK);
        ad_tensor *all[] = {l.weight_ih, l.weight_hh, l.bias_ih, l.bias_hh, s.x, s.h0, s.c0};
        int checked = 0;
        for (int p = 0; p < 7 && all[p]; p++)
            for (int64_t i = 0; i < ad_tensor_size(all[p]); i++) {
                double v = ad_tensor_get(all[p], i), e = 1e-6;
                ad_tensor_set(all[p], i, v + e);
                double up = seq_value(&s);
                ad_tensor_set(all[p], i, v - e);
                double down = seq_value(&s);
                ad_tensor_set(all[p], i, v);
                double num = (up - down) / (2 * e), an = ad_tensor_grad_get(all[p], i);
                ck_assert_msg(fabs(an - num) <= 1e-7 + 1e-6 * fabs(num), "%s: tensor %d element %lld: backward %.10g, "
                              "central difference %.10g", KINDS[kind], p, (long long)i, an, num);
                checked++;
            }
        ck_assert_int_ge(checked, 36);
        ad_graph_free(g);
        seq_case_free(&s);
        nn_model_free(m);
    }
}
END_TEST

/* The gradient graph (ad_grad_graph) of an LSTM sequence agrees with backward, so gradients of
 * gradients work through the layers: they are built from ops that have theirs. */
START_TEST(gradient_graph_matches_backward)
{
    nn_rnn l;
    nn_model *m = layer_model(&l, NN_LSTM, AD_F64, 2, 3, 5);
    seq_case s = seq_case_new(&l, 2, 2, 9);
    ad_graph *g = ad_graph_new();
    ad_node *loss = seq_loss(g, &s);
    ad_node *w = ad_param_node(g, l.weight_hh), *gw;
    ck_assert_int_eq(ad_grad_graph(g, loss, NULL, 1, &w, &gw), AD_OK);
    ck_assert_int_eq(ad_backward(g, loss), AD_OK);
    for (int64_t i = 0; i < ad_tensor_size(l.weight_hh); i++)
        ck_assert_double_eq_tol(ad_node_get(gw, i), ad_tensor_grad_get(l.weight_hh, i), 1e-13);
    ad_graph_free(g);
    seq_case_free(&s);
    nn_model_free(m);
}
END_TEST

START_TEST(names_shapes_and_float32)
{
    static const char *const names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
    for (int kind = 0; kind < 3; kind++) {
        int G = kind == NN_LSTM ? 4 : kind == NN_GRU ? 3 : 1;
        nn_model *m = nn_model_new(AD_F64);
        ad_rng r;
        ad_rng_seed(&r, 1);
        nn_rnn a, b;
        ck_assert_int_eq(nn_rnn_add(m, &a, (nn_rnn_kind)kind, "lstm", 5, 4, &r), AD_OK);
        ck_assert_int_eq(nn_rnn_add(m, &b, (nn_rnn_kind)kind, "", 4, 3, &r), AD_OK);
        ck_assert_int_eq(nn_model_count(m), 8);
        for (int k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "lstm.%s", names[k]);
            ck_assert_ptr_nonnull(nn_model_find(m, name));
            ck_assert_ptr_nonnull(nn_model_find(m, names[k]));
        }
        ad_shape s = ad_tensor_shape(a.weight_ih);
        ck_assert_int_eq(s.dim[0], G * 4);
        ck_assert_int_eq(s.dim[1], 5);
        s = ad_tensor_shape(a.weight_hh);
        ck_assert_int_eq(s.dim[0], G * 4);
        ck_assert_int_eq(s.dim[1], 4);
        ck_assert_int_eq(ad_tensor_size(a.bias_hh), G * 4);
        /* uniform in +-1/sqrt(hidden) */
        for (int64_t i = 0; i < ad_tensor_size(a.weight_hh); i++) ck_assert(fabs(ad_tensor_get(a.weight_hh, i)) <= 0.5);

        /* two layers stacked: [T,N,5] -> [T,N,4] -> [T,N,3]; float32 follows float64 */
        nn_model *m32 = nn_model_new(AD_F32);
        nn_rnn a32, b32;
        ck_assert_int_eq(nn_rnn_add(m32, &a32, (nn_rnn_kind)kind, "lstm", 5, 4, &r), AD_OK);
        ck_assert_int_eq(nn_rnn_add(m32, &b32, (nn_rnn_kind)kind, "", 4, 3, &r), AD_OK);
        for (int i = 0; i < nn_model_count(m); i++) ad_tensor_copy(nn_model_tensor(m32, i), nn_model_tensor(m, i));
        ad_graph *g = ad_graph_new();
        ad_node *x = ad_rand_uniform(g, AD_F64, AD_SHAPE(6, 2, 5), &r, -1, 1);
        ad_node *x32 = ad_const(g, AD_F32, AD_SHAPE(6, 2, 5), NULL);
        for (int i = 0; i < 60; i++) ((float *)ad_node_data(x32))[i] = (float)ad_node_get(x, i);
        ad_node *y = nn_rnn_forward(g, &b, nn_rnn_forward(g, &a, x, NULL, NULL, NULL, NULL), NULL, NULL, NULL, NULL);
        ad_node *y32 = nn_rnn_forward(g, &b32, nn_rnn_forward(g, &a32, x32, NULL, NULL, NULL, NULL), NULL, NULL, NULL, NULL);
        ck_assert_msg(y && y32, "%s", ad_error(g));
        s = ad_node_shape(y);
        ck_assert_int_eq(s.rank, 3);
        ck_assert_int_eq(s.dim[0], 6);
        ck_assert_int_eq(s.dim[1], 2);
        ck_assert_int_eq(s.dim[2], 3);
        ck_assert_int_eq(ad_node_dtype(y32), AD_F32);
        for (int i = 0; i < 36; i++) ck_assert_double_eq_tol(ad_node_get(y32, i), ad_node_get(y, i), 1e-5);
        ad_graph_free(g);
        nn_model_free(m32);
        nn_model_free(m);
    }
}
END_TEST

START_TEST(errors_name_the_function_and_shapes)
{
    nn_rnn l, gru;
    nn_model *m = layer_model(&l, NN_LSTM, AD_F64, 3, 4, 1);
    ad_rng r;
    ad_rng_seed(&r, 1);
    ck_assert_int_eq(nn_rnn_add(m, &gru, NN_GRU, "gru", 3, 4, &r), AD_OK);
    struct {
        ad_shape x, h, c;
        bool gru, cell;
        const char *msg;
    } cases[] = {
        {AD_SHAPE(5, 3), {0}, {0}, false, false,
         "nn_rnn_forward: input [5,3] does not fit an LSTM of 3 inputs and 4 hidden units (expected [T,N,3])"},
        {AD_SHAPE(5, 2, 4), {0}, {0}, false, false,
         "nn_rnn_forward: input [5,2,4] does not fit an LSTM of 3 inputs and 4 hidden units (expected [T,N,3])"},
        {AD_SHAPE(5, 2, 3), AD_SHAPE(3, 4), {0}, false, false,
         "nn_rnn_forward: state h [3,4] does not fit an LSTM of 3 inputs and 4 hidden units (expected [2,4])"},
        {AD_SHAPE(5, 2, 3), AD_SHAPE(2, 4), AD_SHAPE(2, 5), false, false,
         "nn_rnn_forward: state c [2,5] does not fit an LSTM of 3 inputs and 4 hidden units (expected [2,4])"},
        {AD_SHAPE(5, 2, 3), {0}, AD_SHAPE(2, 4), true, false,
         "nn_rnn_forward: a cell state c is for an LSTM, not a GRU"},
        {AD_SHAPE(0, 2, 3), {0}, {0}, false, false,
         "nn_rnn_forward: input [0,2,3]: T must be in [1, 2^31) and N at least 1"},
        {AD_SHAPE(2, 2, 3), {0}, {0}, false, true,
         "nn_rnn_cell: input [2,2,3] does not fit an LSTM of 3 inputs and 4 hidden units (expected [N,3])"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ad_graph *g = ad_graph_new();
        ad_node *x = ad_const(g, AD_F64, cases[k].x, NULL);
        ad_node *h = cases[k].h.rank ? ad_const(g, AD_F64, cases[k].h, NULL) : NULL;
        ad_node *c = cases[k].c.rank ? ad_const(g, AD_F64, cases[k].c, NULL) : NULL;
        const nn_rnn *layer = cases[k].gru ? &gru : &l;
        ad_node *hl = x, *cl = x;
        ad_node *y = cases[k].cell ? nn_rnn_cell(g, layer, x, h, c, &cl)
                                   : nn_rnn_forward(g, layer, x, h, c, &hl, &cl);
        ck_assert_ptr_null(y);
        ck_assert_ptr_null(cl);
        ck_assert_str_eq(ad_error(g), cases[k].msg);
        ad_graph_free(g);
    }
    /* a dtype mismatch, and a NULL input passed on with its own message */
    ad_graph *g = ad_graph_new();
    ck_assert_ptr_null(nn_rnn_forward(g, &l, ad_const(g, AD_F32, AD_SHAPE(2, 1, 3), NULL), NULL, NULL, NULL, NULL));
    ck_assert_str_eq(ad_error(g), "nn_rnn_forward: input [2,1,3] is float32, the layer is float64");
    ad_graph_reset(g);
    ck_assert_ptr_null(nn_rnn_forward(g, &l, NULL, NULL, NULL, NULL, NULL));
    ck_assert_str_eq(ad_error(g), "nn_rnn_forward: input is NULL");
    ad_graph_free(g);
    /* bad sizes when adding */
    nn_rnn bad;
    ck_assert_int_eq(nn_rnn_add(m, &bad, NN_LSTM, "x", 0, 4, &r), AD_ERR_ARG);
    ck_assert_str_eq(nn_model_error(m), "nn_rnn_add: in = 0 must be positive");
    ck_assert_int_eq(nn_rnn_add(m, &bad, (nn_rnn_kind)7, "x", 3, 4, &r), AD_ERR_ARG);
    ck_assert_str_eq(nn_model_error(m), "nn_rnn_add: unknown kind 7");
    ck_assert_int_eq(nn_rnn_add(m, &bad, NN_LSTM, "rnn", 3, 4, &r), AD_ERR_ARG); /* its names are taken */
    ck_assert_ptr_null(bad.weight_ih);
    nn_model_free(m);
}
END_TEST

/* A replayed LSTM (new inputs written into the recorded leaf) gives the bits of a new
 * recording, values and gradients. */
START_TEST(replay_gives_the_recording_bits)
{
    nn_rnn l;
    nn_model *m = layer_model(&l, NN_LSTM, AD_F64, 3, 5, 2);
    ad_rng r;
    ad_rng_seed(&r, 4);
    enum { T = 4, N = 3, IN = 3 };
    double x1[T * N * IN], x2[T * N * IN];
    for (int i = 0; i < T * N * IN; i++) x1[i] = ad_rng_uniform(&r) * 2 - 1, x2[i] = ad_rng_uniform(&r) * 2 - 1;
    double got[2][T * N * 5], grad[2][4 * 5 * 5];
    for (int run = 0; run < 2; run++) {
        ad_graph *g = ad_graph_new();
        ad_node *x = ad_const(g, AD_F64, AD_SHAPE(T, N, IN), run == 0 ? x1 : x2);
        ad_node *y = nn_rnn_forward(g, &l, x, NULL, NULL, NULL, NULL);
        ad_node *loss = ad_sum(g, ad_square(g, y));
        if (run == 0) { /* recorded at x1, replayed at x2 */
            ck_assert_int_eq(ad_set_data(g, x, x2), AD_OK);
            ck_assert_int_eq(ad_replay(g), AD_OK);
        }
        nn_model_zero_grad(m);
        ck_assert_int_eq(ad_backward(g, loss), AD_OK);
        for (int i = 0; i < T * N * 5; i++) got[run][i] = ad_node_get(y, i);
        for (int i = 0; i < 4 * 5 * 5; i++) grad[run][i] = ad_tensor_grad_get(l.weight_hh, i);
        ad_graph_free(g);
    }
    ck_assert_mem_eq(got[0], got[1], sizeof got[0]);
    ck_assert_mem_eq(grad[0], grad[1], sizeof grad[0]);
    nn_model_free(m);
}
END_TEST

/* An LSTM language-model step (lstm, linear head, cross-entropy) recorded once and replayed with
 * new inputs and labels, SGD in between: after the first step the graph allocates nothing. */
START_TEST(training_replays_allocate_nothing)
{
    enum { T = 5, N = 4, IN = 6, H = 8, V = 6 };
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype t = dt ? AD_F32 : AD_F64;
        nn_model *m = nn_model_new(t);
        ad_rng r;
        ad_rng_seed(&r, 11);
        nn_rnn l;
        nn_linear head;
        ck_assert_int_eq(nn_rnn_add(m, &l, NN_LSTM, "lstm", IN, H, &r), AD_OK);
        ck_assert_int_eq(nn_linear_add(m, &head, "head", H, V, true, &r), AD_OK);
        ad_graph *g = ad_graph_new();
        double xv[T * N * IN];
        int32_t labels[T * N];
        ad_node *x = ad_const(g, t, AD_SHAPE(T, N, IN), NULL);
        ad_node *y = nn_rnn_forward(g, &l, x, NULL, NULL, NULL, NULL);
        ad_node *scores = nn_linear_forward(g, &head, ad_reshape(g, y, AD_SHAPE(T * N, H)));
        for (int i = 0; i < T * N; i++) labels[i] = (int32_t)(ad_rng_next(&r) % V);
        ad_node *loss = ad_cross_entropy(g, scores, labels);
        ck_assert_msg(loss, "%s", ad_error(g));
        uint64_t mallocs = 0;
        double first = 0, last = 0;
        for (int it = 0; it < 30; it++) {
            /* the same batch each time: the loss must fall */
            for (int i = 0; i < T * N * IN; i++) xv[i] = sin(i * 0.37);
            for (int i = 0; i < T * N; i++) labels[i] = (int32_t)((i * 7) % V);
            ck_assert_int_eq(ad_set_data(g, x, xv), AD_OK);
            ck_assert_int_eq(ad_node_set_arg(g, loss, labels), AD_OK);
            ck_assert_int_eq(ad_replay(g), AD_OK);
            nn_model_zero_grad(m);
            ck_assert_int_eq(ad_backward(g, loss), AD_OK);
            for (ad_tensor *const *p = nn_model_params(m); *p; p++) {
                void *v = ad_tensor_data(*p), *gr = ad_tensor_grad_data(*p);
                for (int64_t i = 0; i < ad_tensor_size(*p); i++)
                    ad_data_set(v, t, i, ad_data_get(v, t, i) - 2.0 * ad_data_get(gr, t, i));
            }
            if (it == 0) mallocs = ad_graph_get_stats(g).mallocs, first = ad_value(loss);
            last = ad_value(loss);
            ck_assert_uint_eq(ad_graph_get_stats(g).mallocs, mallocs);
        }
        ck_assert_msg(last < first - 0.2, "loss %g after %g", last, first);
        ad_graph_free(g);
        nn_model_free(m);
    }
}
END_TEST

/* char_lstm on a small corpus: it trains, reports bits per character and samples; bad input is
 * refused with exit status 2. */
START_TEST(char_lstm_smoke)
{
    if (!char_lstm_path) return;
    char dir[] = "/tmp/test_nn_rnn_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char corpus[256], model[256];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(model, sizeof model, "%s/m.safetensors", dir);
    FILE *f = fopen(corpus, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 40; i++) fputs("the cat sat on the mat. the dog sat on the log.\n", f);
    fclose(f);
    run_result r = run_program(char_lstm_path,
                               ARGS("--data", corpus, "--limit", "1500", "--steps", "30", "--batch", "4", "--seq-len", "16",
                                    "--hidden", "24", "--embed", "8", "--lr", "0.01", "--sample", "40", "--save", model,
                                    "--json"),
                               NULL, NULL, NULL);
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert_ptr_nonnull(strstr(r.out, "bits per character"));
    ck_assert_ptr_nonnull(strstr(r.out, "\"step_loss\": ["));
    ck_assert_int_eq(access(model, R_OK), 0);
    run_done(&r);
    /* the saved model starts a second run */
    r = run_program(char_lstm_path, ARGS("--data", corpus, "--limit", "1500", "--steps", "2", "--batch", "4",
                                         "--hidden", "24", "--embed", "8", "--init", model, "--sample", "0"),
                    NULL, NULL, NULL);
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    run_done(&r);
    r = run_program(char_lstm_path, ARGS("--data", "/nonexistent/corpus"), NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent/corpus"));
    run_done(&r);
    r = run_program(char_lstm_path, ARGS("--data", corpus, "--batch", "4", "--seq-len", "16", "--init", model, "--hidden", "25"), NULL, NULL, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_ptr_nonnull(strstr(r.err, model));
    run_done(&r);
    unlink(corpus), unlink(model), rmdir(dir);
}
END_TEST

int main(int argc, char **argv)
{
    char_lstm_path = argc > 1 ? argv[1] : NULL;
    Suite *s = suite_create("nn_rnn");
    TCase *tc = tcase_create("rnn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, cells_by_hand);
    tcase_add_test(tc, gradients_by_central_differences);
    tcase_add_test(tc, gradient_graph_matches_backward);
    tcase_add_test(tc, names_shapes_and_float32);
    tcase_add_test(tc, errors_name_the_function_and_shapes);
    tcase_add_test(tc, replay_gives_the_recording_bits);
    tcase_add_test(tc, training_replays_allocate_nothing);
    tcase_add_test(tc, char_lstm_smoke);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
