/* Forward mode on the Fashion-MNIST MLP (784-256-128-10, float32, 1 thread): one forward pass
 * and its loss against the same pass followed by a Jacobian-vector product along a random
 * direction in parameter space (the directional derivative of the loss), given as doubles
 * (ad_jvp_graph) and as float32 used in place (ad_jvp_graph_data).  The three rotate within
 * the run; each ratio is forward + JVP over forward alone.
 *
 *   bench_jvp_mlp [reps]     (default 30; 1 for the smoke test) */
#include "ad.h"
#include "bench.h"
#include <stdio.h>
#include <stdlib.h>

enum { IN = 784, H1 = 256, H2 = 128, OUT = 10, NPARAM = 6 };

typedef struct {
    ad_tensor *p[NPARAM];
    double *dir[NPARAM];
    float *dir32[NPARAM]; /* the same direction in the parameters' dtype */
    ad_tensor *x;
    int32_t *labels;
    int batch;
} model;

static ad_node *loss_of(ad_graph *g, model *m, ad_node **leaves)
{
    for (int k = 0; k < NPARAM; k++) leaves[k] = ad_param(g, m->p[k]);
    ad_node *h = ad_linear_act(g, ad_const_tensor(g, m->x), leaves[0], leaves[1], AD_ACT_RELU, 0);
    h = ad_linear_act(g, h, leaves[2], leaves[3], AD_ACT_RELU, 0);
    return ad_cross_entropy(g, ad_linear(g, h, leaves[4], leaves[5]), m->labels);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) reps = 1;
    ad_set_threads(1);
    static const int batches[] = {8, 64, 1024};
    ad_rng r;
    ad_rng_seed(&r, 1);
    int failed = 0;
    for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
        model m = {.batch = batches[bi]};
        ad_shape shapes[NPARAM] = {AD_SHAPE(H1, IN), AD_SHAPE(H1), AD_SHAPE(H2, H1), AD_SHAPE(H2),
                                   AD_SHAPE(OUT, H2), AD_SHAPE(OUT)};
        for (int k = 0; k < NPARAM; k++) {
            m.p[k] = ad_param_new(NULL, AD_F32, shapes[k]);
            ad_tensor_rand_uniform(m.p[k], &r, -0.05, 0.05);
            int64_t n = ad_shape_size(&shapes[k]);
            m.dir[k] = malloc((size_t)n * sizeof *m.dir[k]);
            m.dir32[k] = malloc((size_t)n * sizeof *m.dir32[k]);
            for (int64_t i = 0; i < n; i++) m.dir32[k][i] = (float)(m.dir[k][i] = ad_rng_uniform(&r) - 0.5);
        }
        m.x = ad_tensor_new(AD_F32, AD_SHAPE(m.batch, IN));
        ad_tensor_rand_uniform(m.x, &r, 0, 1);
        m.labels = malloc((size_t)m.batch * sizeof *m.labels);
        for (int i = 0; i < m.batch; i++) m.labels[i] = (int32_t)(ad_rng_next(&r) % OUT);
        ad_graph *g = ad_graph_new();
        /* enough repetitions per timing that each lasts a few milliseconds */
        int inner = 1 + 8192 / m.batch;
        double *tf = malloc((size_t)reps * sizeof *tf), *tj = malloc((size_t)reps * sizeof *tj);
        double *td = malloc((size_t)reps * sizeof *td);
        ad_node *leaves[NPARAM];
        for (int rep = 0; rep < reps; rep++)
            for (int side = 0; side < 3; side++) {
                int kind = (rep + side) % 3; /* 0 forward, 1 + JVP (doubles), 2 + JVP (float32 seeds); rotated */
                double t0 = now_seconds();
                for (int k = 0; k < inner; k++) {
                    ad_graph_reset(g);
                    ad_node *loss = loss_of(g, &m, leaves);
                    ad_status st = kind == 1 ? ad_jvp_graph(g, loss, NPARAM, leaves, (const double *const *)m.dir)
                                   : kind == 2 ? ad_jvp_graph_data(g, loss, NPARAM, leaves, (const void *const *)m.dir32)
                                               : AD_OK;
                    if (st != AD_OK) {
                        fprintf(stderr, "bench_jvp_mlp: %s\n", ad_error(g));
                        failed = 1;
                    }
                }
                (kind == 0 ? tf : kind == 1 ? tj : td)[rep] = (now_seconds() - t0) / inner;
            }
        double f = median(tf, reps), j = median(tj, reps), d = median(td, reps);
        printf("bench: mlp_forward_b%d_ms %.4f\n", m.batch, 1e3 * f);
        printf("bench: mlp_forward_jvp_b%d_ms %.4f\n", m.batch, 1e3 * j);
        printf("bench: mlp_forward_jvp_data_b%d_ms %.4f\n", m.batch, 1e3 * d);
        printf("bench: jvp_over_forward_b%d %.2f\n", m.batch, j / f);
        printf("bench: jvp_data_over_forward_b%d %.2f\n", m.batch, d / f);
        free(tf);
        free(tj);
        free(td);
        ad_graph_free(g);
        for (int k = 0; k < NPARAM; k++) ad_tensor_free(m.p[k]), free(m.dir[k]), free(m.dir32[k]);
        ad_tensor_free(m.x);
        free(m.labels);
    }
    return failed;
}
