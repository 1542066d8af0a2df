/* libFuzzer target: any bytes as a safetensors file, then as a saved model. */
#include "ad_io.h"
#include "fuzz_file.h"
#include "nn.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".safetensors");
    if (!path) return 0;
    char err[256];
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    if (f) {
        for (int i = 0; i < ad_tensor_file_count(f); i++) ad_tensor_size(ad_tensor_file_tensor(f, i));
        ad_tensor_file_free(f);
    }
    nn_mlp *m = nn_mlp_load(path, err, sizeof err);
    nn_mlp_free(m);
    return 0;
}
