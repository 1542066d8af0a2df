/* libFuzzer target: any bytes as an IDX (MNIST) file, in both dtypes. */
#include "fuzz_file.h"
#include "nn_data.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".idx");
    if (!path) return 0;
    char err[256];
    ad_tensor_free(nn_idx_load(path, AD_F32, err, sizeof err));
    ad_tensor_free(nn_idx_load(path, AD_F64, err, sizeof err));
    return 0;
}
