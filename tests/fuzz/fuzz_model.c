/* libFuzzer target: any bytes as a saved model (nn_mlp_load), and a prediction from what
 * loads.  A file's claims must not make the loader allocate more than the file could hold
 * (issue 20, defect 1): libFuzzer's -rss_limit_mb and -malloc_limit_mb catch that. */
#include "fuzz_file.h"
#include "nn.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".safetensors");
    if (!path) return 0;
    char err[256];
    nn_mlp *m = nn_mlp_load(path, err, sizeof err);
    if (m) {
        const nn_mlp_cfg *c = nn_mlp_config(m);
        ad_graph *g = ad_graph_new();
        if (g && c->in > 0 && c->in <= 4096) {
            ad_node *x = ad_full(g, c->dtype, AD_SHAPE(2, c->in), 0.5);
            (void)nn_mlp_forward(g, m, x, NN_EVAL);
        }
        ad_graph_free(g);
    }
    nn_mlp_free(m);
    return 0;
}
