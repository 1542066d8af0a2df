/* libFuzzer target: any bytes as a CSV file, read with and without a header and by label name. */
#include "fuzz_file.h"
#include "nn_data.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_file(data, size, ".csv");
    if (!path) return 0;
    char err[256];
    nn_csv_opts plain = {0}, named = {.header = true, .label = "y"}, last = {.label_col = -1, .regression = true};
    nn_dataset_free(nn_csv_load(path, &plain, err, sizeof err));
    nn_dataset_free(nn_csv_load(path, &named, err, sizeof err));
    nn_dataset_free(nn_csv_load(path, &last, err, sizeof err));
    return 0;
}
