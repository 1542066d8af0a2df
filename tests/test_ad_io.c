/* safetensors: the exact bytes written (checked against the format by hand), bit-exact round
 * trips, files written by other tools, one test per rule the loader enforces (with the
 * message it must give), every truncation and every header byte flipped, and atomic saves
 * (a failed save leaves the old file and no temporary file behind). */
#define _DEFAULT_SOURCE /* mkdtemp, DT_* */
#include "testutil.h"
#include "ad_io.h"
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static char path[512];

/* Thousands of small files are written: tmpfs keeps that fast where there is one. */
static const char *scratch(void)
{
    const char *t = getenv("TMPDIR");
    if (t && *t) return t;
    return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s/ad_io_XXXXXX", scratch());
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
}

/* Removes everything in the folder; returns how many entries other than m.safetensors there
 * were, so tests can assert that no temporary file was left behind. */
static int clean_dir(bool remove)
{
    DIR *d = opendir(dir);
    int others = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (strcmp(e->d_name, "m.safetensors")) others++;
        if (remove) {
            char p[800];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d) closedir(d);
    return others;
}

static void teardown(void)
{
    clean_dir(true);
    rmdir(dir);
}

static void write_bytes(const char *p, const void *buf, size_t n)
{
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_bytes(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n ? *n : 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* A file with this exact header text (no padding: other writers need not pad) and data. */
static void write_raw(const char *json, const void *data, size_t dlen)
{
    size_t h = strlen(json);
    unsigned char *b = malloc(8 + h + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    if (dlen) memcpy(b + 8 + h, data, dlen);
    write_bytes(path, b, 8 + h + dlen);
    free(b);
}

/* Loading fails, and the message names the function, the file and contains want. */
static void expect_load_error(const char *want)
{
    char err[512] = "";
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    ck_assert_msg(f == NULL, "loaded a file that should fail with \"%s\"", want);
    ck_assert_msg(strstr(err, "ad_safetensors_load: ") == err, "message \"%s\" lacks the function", err);
    ck_assert_msg(strstr(err, path) != NULL, "message \"%s\" lacks the path", err);
    ck_assert_msg(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
}

START_TEST(bytes_match_the_format)
{
    /* One F32 tensor [2] = {1, -2} and one metadata pair, built by hand from the spec:
     * 1.0f = 0x3F800000 and -2.0f = 0xC0000000, stored little-endian. */
    ad_tensor *a = ad_tensor_from(AD_F32, AD_SHAPE(2), (double[]){1, -2});
    const char *names[] = {"a"}, *meta[] = {"k", "v"};
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(path, 1, names, &a, 1, meta, err, sizeof err), AD_OK);
    const char *json = "{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t h = strlen(json), padded = (h + 7) / 8 * 8;
    unsigned char want[256] = {0};
    for (int i = 0; i < 8; i++) want[i] = (unsigned char)(padded >> (8 * i));
    memcpy(want + 8, json, h);
    memset(want + 8 + h, ' ', padded - h);
    const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0};
    memcpy(want + 8 + padded, data, 8);
    size_t n;
    unsigned char *got = read_bytes(path, &n);
    ck_assert_uint_eq(n, 8 + padded + 8);
    ck_assert_int_eq(memcmp(got, want, n), 0);
    free(got);
    ad_tensor_free(a);

    /* float64: 0.5 = 0x3FE0000000000000, a rank-0 tensor has shape [] */
    ad_tensor *s = ad_tensor_from(AD_F64, AD_SHAPE0, (double[]){0.5});
    const char *sn[] = {"s"};
    ck_assert_int_eq(ad_safetensors_save(path, 1, sn, &s, 0, NULL, err, sizeof err), AD_OK);
    json = "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}";
    h = strlen(json), padded = (h + 7) / 8 * 8;
    got = read_bytes(path, &n);
    ck_assert_uint_eq(n, 8 + padded + 8);
    ck_assert_uint_eq(got[0], padded);
    ck_assert_int_eq(memcmp(got + 8, json, h), 0);
    const unsigned char half[8] = {0, 0, 0, 0, 0, 0, 0xE0, 0x3F};
    ck_assert_int_eq(memcmp(got + 8 + padded, half, 8), 0);
    free(got);
    ad_tensor_free(s);
}
END_TEST

/* Bit patterns that a conversion through text or double would change. */
static void fill_awkward(ad_tensor *t, ad_rng *r)
{
    unsigned char *p = ad_tensor_data(t);
    size_t bytes = (size_t)ad_tensor_size(t) * ad_dtype_size(ad_tensor_dtype(t));
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)ad_rng_next(r);
}

START_TEST(round_trip_is_bit_exact)
{
    ad_rng r;
    ad_rng_seed(&r, 7);
    ad_shape shapes[] = {AD_SHAPE0, AD_SHAPE(5), AD_SHAPE(3, 4), AD_SHAPE(2, 3, 4), AD_SHAPE(3, 0, 2),
                         AD_SHAPE(1, 1, 1, 1, 1, 2)};
    enum { K = 12 };
    ad_tensor *ts[K];
    const char *names[K] = {"0.weight", "0.bias", "quote\"d", "back\\slash", "new\nline", "caf\xc3\xa9",
                            "emoji \xf0\x9f\x98\x80", "tab\t", "x", "y", "z", "/slash"};
    for (int i = 0; i < K; i++) {
        ts[i] = ad_tensor_new(i % 2 ? AD_F32 : AD_F64, shapes[i % 6]);
        fill_awkward(ts[i], &r);
    }
    /* special values where the random bytes cannot be relied on to hit them */
    ad_tensor_set(ts[1], 0, -0.0);
    ad_tensor_set(ts[1], 1, 1e-40); /* float32 denormal */
    ad_tensor_set(ts[1], 2, INFINITY);
    const char *meta[] = {"format", "pt", "arch", "{\"json\": [1, 2]}", "empty", "", "\xce\xbb", "0.01"};
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(path, K, names, ts, 4, meta, err, sizeof err), AD_OK);
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(ad_tensor_file_count(f), K);
    for (int i = 0; i < K; i++) {
        ck_assert_str_eq(ad_tensor_file_name(f, i), names[i]);
        ad_tensor *t = ad_tensor_file_tensor(f, i);
        ck_assert_ptr_eq(ad_tensor_file_find(f, names[i]), t);
        ck_assert_int_eq(ad_tensor_dtype(t), ad_tensor_dtype(ts[i]));
        ad_shape a = ad_tensor_shape(t), b = ad_tensor_shape(ts[i]);
        ck_assert_int_eq(a.rank, b.rank);
        for (int d = 0; d < a.rank; d++) ck_assert_int_eq(a.dim[d], b.dim[d]);
        size_t bytes = (size_t)ad_tensor_size(t) * ad_dtype_size(ad_tensor_dtype(t));
        ck_assert_int_eq(memcmp(ad_tensor_data(t), ad_tensor_data(ts[i]), bytes), 0);
    }
    for (int i = 0; i < 4; i++) ck_assert_str_eq(ad_tensor_file_meta(f, meta[2 * i]), meta[2 * i + 1]);
    ck_assert_ptr_null(ad_tensor_file_meta(f, "missing"));
    ck_assert_ptr_null(ad_tensor_file_find(f, "missing"));
    ck_assert_ptr_null(ad_tensor_file_find(f, "__metadata__"));
    ad_tensor_file_free(f);
    for (int i = 0; i < K; i++) ad_tensor_free(ts[i]);
}
END_TEST

START_TEST(empty_file_and_accessors)
{
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(path, 0, NULL, NULL, 0, NULL, err, sizeof err), AD_OK);
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    ck_assert_uint_eq(n, 16); /* "{}" padded to 8 */
    ck_assert_int_eq(memcmp(b + 8, "{}      ", 8), 0);
    free(b);
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(ad_tensor_file_count(f), 0);
    ck_assert_ptr_null(ad_tensor_file_name(f, 0));
    ck_assert_ptr_null(ad_tensor_file_tensor(f, -1));
    ck_assert_ptr_null(ad_tensor_file_find(f, "a"));
    ck_assert_ptr_null(ad_tensor_file_meta(f, "a"));
    ad_tensor_file_free(f);
    ck_assert_int_eq(ad_tensor_file_count(NULL), 0);
    ck_assert_ptr_null(ad_tensor_file_name(NULL, 0));
    ck_assert_ptr_null(ad_tensor_file_find(NULL, "a"));
    ck_assert_ptr_null(ad_tensor_file_meta(NULL, "a"));
    ad_tensor_file_free(NULL);
}
END_TEST

START_TEST(loads_other_writers_files)
{
    /* Spaces and newlines, metadata last, the second tensor's data first, escapes (é as \u00e9,
     * 😀 as a surrogate pair), no padding: all legal, all as Python's json might write. */
    const char *json = "{\n  \"caf\\u00e9\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [8, 16]},\n"
                       "  \"\\ud83d\\ude00\": {\"data_offsets\": [0, 8], \"shape\": [2], \"dtype\": \"F32\"},\n"
                       "  \"__metadata__\": {\"format\": \"pt\", \"esc\": \"a\\\"b\\\\c\\/d\\n\"}\n}";
    unsigned char data[16] = {0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0xBF, /* 3.0f, -1.0f */
                              0, 0, 0, 0, 0, 0, 0x24, 0x40};                  /* 10.0 */
    write_raw(json, data, sizeof data);
    char err[256];
    ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(ad_tensor_file_count(f), 2);
    ck_assert_str_eq(ad_tensor_file_name(f, 0), "caf\xc3\xa9");
    ck_assert_str_eq(ad_tensor_file_name(f, 1), "\xf0\x9f\x98\x80");
    ad_tensor *a = ad_tensor_file_find(f, "caf\xc3\xa9"), *b = ad_tensor_file_find(f, "\xf0\x9f\x98\x80");
    ck_assert_int_eq(ad_tensor_dtype(a), AD_F64);
    ck_assert_double_eq(ad_tensor_get(a, 0), 10.0);
    ck_assert_int_eq(ad_tensor_dtype(b), AD_F32);
    ck_assert_double_eq(ad_tensor_get(b, 0), 3.0);
    ck_assert_double_eq(ad_tensor_get(b, 1), -1.0);
    ck_assert_str_eq(ad_tensor_file_meta(f, "format"), "pt");
    ck_assert_str_eq(ad_tensor_file_meta(f, "esc"), "a\"b\\c/d\n");
    ad_tensor_file_free(f);
}
END_TEST

/* One header per rule, each with the data size it claims, and the words the error must use. */
typedef struct { const char *json; size_t data; const char *want; } bad_case;

#define T1(dt, shape, off) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"
static const bad_case bad[] = {
    {"[]", 0, "the header must start with '{', found '['"},
    {" {}", 0, "the header must start with '{'"},
    {T1("F16", "[1]", "[0,2]"), 2, "dtype \"F16\" is not supported (only F32, F64 and I64)"},
    {T1("BF16", "[1]", "[0,2]"), 2, "dtype \"BF16\" is not supported"},
    {T1("I32", "[1]", "[0,4]"), 4, "dtype \"I32\""},
    {T1("F32", "[2]", "[0,4]"), 4, "tensor \"a\": F32 [2] needs 8 bytes but data_offsets [0,4] hold 4"},
    {T1("F32", "[2]", "[0,8]"), 4, "data_offsets [0,8] reach past the 4 bytes of data"},
    {T1("F32", "[2]", "[8,0]"), 8, "end before they begin"},
    {T1("F32", "[2]", "[0,8]"), 12, "the tensors cover 8 bytes of data but 12 follow the header"},
    {T1("F32", "[2]", "[4,12]"), 12, "tensor \"a\": data begins at 4, expected 0"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "tensor \"b\": data begins at 8, expected 4"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "data begins at 4, expected 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "column 55: tensor name \"a\" appears twice"},
    {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "key \"dtype\" appears twice"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "tensor \"a\": unknown key \"x\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor \"a\": key \"data_offsets\" is missing"},
    {"{\"a\":{}}", 0, "key \"dtype\" is missing"},
    {"{\"a\":[]}", 0, "expected '{', found '['"},
    {T1("F32", "[01]", "[0,4]"), 4, "a dimension has a leading zero"},
    {T1("F32", "[-1]", "[0,4]"), 4, "expected a dimension (a non-negative integer), found '-'"},
    {T1("F32", "[1.0]", "[0,4]"), 4, "a dimension must be an integer"},
    {T1("F32", "[1e0]", "[0,4]"), 4, "must be an integer"},
    {T1("F32", "[1,1,1,1,1,1,1]", "[0,4]"), 4, "tensor \"a\": more than 6 dimensions"},
    {T1("F32", "[4294967296,4294967296]", "[0,4]"), 4, "shape [4294967296,4294967296] has too many elements"},
    {T1("F32", "[9223372036854775808]", "[0,4]"), 4, "dimension 9223372036854775808 is too large"},
    {T1("F32", "[18446744073709551616]", "[0,4]"), 4, "a dimension is too large"},
    {T1("F32", "[1]", "[0,18446744073709551615]"), 4, "hold 18446744073709551615"},
    {T1("F32", "[1]", "[0,4,8]"), 4, "expected ']', found ','"},
    {T1("F32", "[1]", "[0]"), 4, "expected ',', found ']'"},
    {T1("F32", "[1,]", "[0,4]"), 4, "expected a dimension (a non-negative integer), found ']'"},
    {T1("F32", "[1]", "[0,4]") " ,", 4, "unexpected ',' after the header's closing '}'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected '\"', found '}'"},
    {"{\"a\":{\"dtype\":\"F32\" \"shape\":[1],\"data_offsets\":[0,4]}}", 4, "expected ',' or '}', found '\"'"},
    {"{\"a\" {}}", 0, "expected ':', found '{'"},
    {"{\"a", 0, "unterminated string"},
    {"{", 0, "expected '\"', found the end of the header"},
    {"{\"a\x01\":{}}", 0, "control character 0x01 inside a string"},
    {"{\"a\\x\":{}}", 0, "unknown escape \\'x'"},
    {"{\"a\\u12\":{}}", 0, "\\u needs four hex digits"},
    {"{\"\\ud800\":{}}", 0, "unpaired surrogate \\ud800"},
    {"{\"\\udc00\":{}}", 0, "unpaired surrogate \\udc00"},
    {"{\"\\ud800\\u0041\":{}}", 0, "unpaired surrogate \\ud800"},
    {"{\"a\\u0000\":{}}", 0, "\\u0000 cannot appear in a name or value"},
    {"{\"\xff\":{}}", 0, "string is not valid UTF-8"},
    {"{\"\xc0\xaf\":{}}", 0, "not valid UTF-8"},          /* overlong '/' */
    {"{\"\xed\xa0\x80\":{}}", 0, "not valid UTF-8"},      /* encoded surrogate */
    {"{\"\xe2\x82\":{}}", 0, "not valid UTF-8"},          /* cut sequence */
    {"{\"__metadata__\":{\"k\":1}}", 0, "metadata \"k\": the value must be a string"},
    {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "metadata key \"k\" appears twice"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "column 20: \"__metadata__\" appears twice"},
    {"{\"__metadata__\":[]}", 0, "expected '{', found '['"},
    {"{\n\"a\":{\"dtype\":\"F32\",\n\"shape\":[1],\"data_offsets\":[0,4]}\n\n\"b\"", 4, "header line 5, column 1: expected ',' or '}'"},
    {"{}\x80", 0, "unexpected byte 0x80 after"},
};

START_TEST(rejects_bad_headers)
{
    unsigned char zeros[16] = {0};
    write_raw(bad[_i].json, zeros, bad[_i].data);
    expect_load_error(bad[_i].want);
}
END_TEST

START_TEST(rejects_bad_files)
{
    char err[256];
    ck_assert_ptr_null(ad_safetensors_load(NULL, err, sizeof err));
    ck_assert_str_eq(err, "ad_safetensors_load: path is NULL");
    expect_load_error("cannot open: No such file or directory");
    write_bytes(path, "\x02\0\0\0\0\0\0", 7);
    expect_load_error("7 bytes, too short for the 8-byte header length");
    write_bytes(path, "\x09\0\0\0\0\0\0\0{}      ", 16);
    expect_load_error("header length 9 exceeds the rest of the file (8 bytes)");
    write_bytes(path, "\0\0\0\0\0\0\0\0", 8);
    expect_load_error("header line 1, column 1: the header must start with '{', found the end of the header");
    /* a header length past the 100 MB limit in a (sparse) file big enough to hold it */
    FILE *f = fopen(path, "wb");
    const unsigned char len[8] = {0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0}; /* 100000001 */
    fwrite(len, 1, 8, f);
    fwrite("{", 1, 1, f);
    ck_assert_int_eq(ftruncate(fileno(f), 8 + 100000001 + 8), 0);
    fclose(f);
    expect_load_error("header length 100000001 exceeds the 100 MB limit (100000000 bytes)");
    /* a folder is not a file; err may be NULL */
    char d[600];
    snprintf(d, sizeof d, "%s/sub", dir);
    ck_assert_int_eq(mkdir(d, 0700), 0);
    ck_assert_ptr_null(ad_safetensors_load(d, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    ck_assert_ptr_null(ad_safetensors_load(d, NULL, 0));
    rmdir(d);
}
END_TEST

/* A small file with metadata, both dtypes and data bytes that are not JSON whitespace. */
static size_t save_sample(size_t *hend)
{
    ad_tensor *a = ad_tensor_from(AD_F32, AD_SHAPE(2, 3), (double[]){1.5, -2.5, 3.5, 4.25, 5.75, -6.5});
    ad_tensor *b = ad_tensor_from(AD_F64, AD_SHAPE(3), (double[]){0.1, 0.2, 0.3});
    ad_tensor *ts[] = {a, b};
    const char *names[] = {"0.weight", "0.bias"}, *meta[] = {"nn.in", "3", "nn.out", "2"};
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(path, 2, names, ts, 2, meta, err, sizeof err), AD_OK);
    ad_tensor_free(a), ad_tensor_free(b);
    size_t n;
    unsigned char *bytes = read_bytes(path, &n);
    *hend = 8;
    for (int i = 0; i < 8; i++) *hend += (size_t)bytes[i] << (8 * i);
    free(bytes);
    return n;
}

START_TEST(every_truncation_fails)
{
    size_t hend, n = save_sample(&hend), m;
    unsigned char *whole = read_bytes(path, &m);
    ck_assert_uint_eq(m, n);
    for (size_t len = 0; len < n; len++) {
        write_bytes(path, whole, len);
        char err[512] = "";
        ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
        ck_assert_msg(f == NULL, "a file cut to %zu of %zu bytes loaded", len, n);
        ck_assert_msg(strstr(err, "ad_safetensors_load: ") == err, "cut at %zu: message \"%s\"", len, err);
    }
    free(whole);
}
END_TEST

/* Every byte of the length and the header inverted: outside a string it breaks the JSON, inside
 * one it makes invalid UTF-8 (an ASCII byte inverted is >= 0x80 and cannot stand alone). */
START_TEST(every_header_byte_inverted_fails)
{
    size_t hend, n = save_sample(&hend), m;
    unsigned char *whole = read_bytes(path, &m);
    for (size_t i = 0; i < hend; i++) {
        whole[i] ^= 0xFF;
        write_bytes(path, whole, n);
        whole[i] ^= 0xFF;
        char err[512] = "";
        ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
        ck_assert_msg(f == NULL, "byte %zu inverted still loaded", i);
        ck_assert_msg(strstr(err, "ad_safetensors_load: ") == err, "byte %zu: message \"%s\"", i, err);
    }
    free(whole);
}
END_TEST

/* Single-bit flips and random bytes anywhere may still make a valid file (a name "a" becomes
 * "c"; safetensors has no checksum), but never a crash or a leak: ASan and LSan watch this. */
START_TEST(random_corruption_never_crashes)
{
    size_t hend, n = save_sample(&hend), m;
    unsigned char *whole = read_bytes(path, &m), *copy = malloc(n);
    ad_rng r;
    ad_rng_seed(&r, 99);
    int loaded = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, whole, n);
        int flips = 1 + (int)(ad_rng_next(&r) % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(ad_rng_next(&r) % (trial % 2 ? hend : n));
            if (trial % 3) copy[at] ^= (unsigned char)(1u << (ad_rng_next(&r) % 8));
            else copy[at] = (unsigned char)ad_rng_next(&r);
        }
        write_bytes(path, copy, n);
        char err[512] = "";
        ad_tensor_file *f = ad_safetensors_load(path, err, sizeof err);
        if (f) loaded++;
        else ck_assert_msg(strstr(err, "ad_safetensors_load: ") == err, "message \"%s\"", err);
        ad_tensor_file_free(f);
    }
    ck_assert_int_lt(loaded, 3000); /* most corruptions are caught */
    free(whole), free(copy);
}
END_TEST

/* A bad save returns the status and message, and leaves the old file as it was and no
 * temporary file in the folder. */
static void expect_save_error(int n, const char *const *names, ad_tensor *const *ts, int nmeta,
                              const char *const *meta, ad_status st, const char *want)
{
    size_t h0, n0 = save_sample(&h0), n1;
    unsigned char *before = read_bytes(path, &n1);
    char err[512] = "";
    ck_assert_int_eq(ad_safetensors_save(path, n, names, ts, nmeta, meta, err, sizeof err), st);
    ck_assert_msg(strstr(err, "ad_safetensors_save: ") == err, "message \"%s\"", err);
    ck_assert_msg(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
    size_t n2;
    unsigned char *after = read_bytes(path, &n2);
    ck_assert_uint_eq(n2, n0);
    ck_assert_int_eq(memcmp(before, after, n0), 0);
    ck_assert_int_eq(clean_dir(false), 0);
    free(before), free(after);
}

START_TEST(save_rejects_bad_arguments)
{
    ad_tensor *a = ad_tensor_new(AD_F32, AD_SHAPE(2)), *ts[2] = {a, a};
    const char *two[] = {"w", "w"}, *reserved[] = {"__metadata__"}, *empty[] = {""}, *nul[] = {NULL};
    const char *bad_utf8[] = {"\xff"}, *meta_dup[] = {"k", "1", "k", "2"}, *meta_null[] = {"k", NULL};
    ad_tensor *none[] = {NULL};
    char err[256];
    ck_assert_int_eq(ad_safetensors_save(NULL, 0, NULL, NULL, 0, NULL, err, sizeof err), AD_ERR_NULL);
    ck_assert_str_eq(err, "ad_safetensors_save: path is NULL");
    ck_assert_int_eq(ad_safetensors_save(NULL, 0, NULL, NULL, 0, NULL, NULL, 0), AD_ERR_NULL);
    expect_save_error(2, two, ts, 0, NULL, AD_ERR_ARG, "tensor name \"w\" appears twice");
    expect_save_error(1, reserved, ts, 0, NULL, AD_ERR_ARG, "tensor 0: name \"__metadata__\" is empty, reserved or not UTF-8");
    expect_save_error(1, empty, ts, 0, NULL, AD_ERR_ARG, "name \"\" is empty");
    expect_save_error(1, bad_utf8, ts, 0, NULL, AD_ERR_ARG, "not UTF-8");
    expect_save_error(1, nul, ts, 0, NULL, AD_ERR_NULL, "name 0 is NULL");
    expect_save_error(1, two, none, 0, NULL, AD_ERR_NULL, "tensor 0 is NULL");
    expect_save_error(1, NULL, ts, 0, NULL, AD_ERR_NULL, "names is NULL for 1 tensors");
    expect_save_error(-1, NULL, NULL, 0, NULL, AD_ERR_ARG, "negative count (-1 tensors, 0 metadata pairs)");
    expect_save_error(0, NULL, NULL, 2, meta_dup, AD_ERR_ARG, "metadata key \"k\" appears twice");
    expect_save_error(0, NULL, NULL, 1, meta_null, AD_ERR_NULL, "metadata value 0 is NULL");
    expect_save_error(0, NULL, NULL, 1, NULL, AD_ERR_NULL, "meta is NULL for 1 pairs");
    ad_tensor_free(a);
}
END_TEST

START_TEST(save_into_missing_folder_fails_cleanly)
{
    char p[600], err[512];
    snprintf(p, sizeof p, "%s/no/such/m.safetensors", dir);
    ad_tensor *a = ad_tensor_new(AD_F32, AD_SHAPE(2));
    const char *names[] = {"a"};
    ck_assert_int_eq(ad_safetensors_save(p, 1, names, &a, 0, NULL, err, sizeof err), AD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "cannot create a temporary file next to it: No such file or directory"));
    ck_assert_int_eq(clean_dir(false), 0);
    ad_tensor_free(a);
}
END_TEST

/* A save that fails half-way through writing (here: the file-size limit, as a full disk would)
 * leaves the old file byte for byte and removes its temporary file. */
START_TEST(failed_write_keeps_old_file)
{
    size_t h0, n0 = save_sample(&h0), n1;
    unsigned char *before = read_bytes(path, &n1);
    ad_tensor *big = ad_tensor_new(AD_F64, AD_SHAPE(4096));
    const char *names[] = {"big"};
    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char err[512] = "";
    ad_status st = ad_safetensors_save(path, 1, names, &big, 0, NULL, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &old);
    ck_assert_int_eq(st, AD_ERR_IO);
    ck_assert_msg(strstr(err, "failed: File too large (the old file, if any, is untouched)"), "%s", err);
    size_t n2;
    unsigned char *after = read_bytes(path, &n2);
    ck_assert_uint_eq(n2, n0);
    ck_assert_int_eq(memcmp(before, after, n0), 0);
    ck_assert_int_eq(clean_dir(false), 0);
    free(before), free(after);
    ad_tensor_free(big);
}
END_TEST

START_TEST(replacing_keeps_permissions)
{
    size_t h;
    mode_t old = umask(022);
    save_sample(&h);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644); /* 0666 minus the umask, as open() would give */
    ck_assert_int_eq(chmod(path, 0640), 0);
    save_sample(&h);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    umask(old);
}
END_TEST

/* Issue 20, defect 8: ad_safetensors_load opened before checking for a regular file, so a
 * FIFO without a writer blocked it forever.  The alarm turns such a hang into a failure. */
START_TEST(loading_a_fifo_is_refused)
{
    char fifo[600], err[512], want[700];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10);
    ck_assert_ptr_null(ad_safetensors_load(fifo, err, sizeof err));
    snprintf(want, sizeof want, "ad_safetensors_load: %s: not a regular file (a FIFO)", fifo);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(ad_safetensors_load(dir, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not a regular file (a directory)"));
    alarm(0);
}
END_TEST

/* ---- the atomic writer's targets (issue 20, defect 9) ---- */

static bool fill_hello(FILE *f, void *ctx)
{
    (void)ctx;
    return fputs("hello\n", f) >= 0;
}

static char *slurp_path(const char *p)
{
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    char *s = realloc(b, n + 1);
    s[n] = 0;
    return s;
}

/* The writer renamed its temporary file over a FIFO (and, as root, over device nodes) and
 * reported success.  A target that exists and is not a regular file is refused, untouched. */
START_TEST(saving_over_a_fifo_is_refused)
{
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    char err[512], want[700];
    ck_assert_int_eq(ad_write_atomic(path, fill_hello, NULL, err, sizeof err), AD_ERR_IO);
    snprintf(want, sizeof want, "%s: not a regular file (a FIFO): refusing to replace it", path);
    ck_assert_str_eq(err, want);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));
    ck_assert_int_eq(clean_dir(false), 0);
    /* a folder is refused the same way (rename would fail on it with a less clear message) */
    ck_assert_int_eq(ad_write_atomic(dir, fill_hello, NULL, err, sizeof err), AD_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file (a directory)"));
}
END_TEST

/* The writer replaced a symbolic link by a file; editors write through it instead, which keeps
 * the link and replaces its target, also when the target does not exist yet. */
START_TEST(saving_through_a_symlink_replaces_its_target)
{
    char target[600], err[512];
    snprintf(target, sizeof target, "%s/target.txt", dir);
    write_bytes(target, "old\n", 4);
    ck_assert_int_eq(symlink("target.txt", path), 0);
    ck_assert_msg(ad_write_atomic(path, fill_hello, NULL, err, sizeof err) == AD_OK, "%s", err);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_msg(S_ISLNK(st.st_mode), "the link was replaced");
    char *text = slurp_path(target);
    ck_assert_str_eq(text, "hello\n");
    free(text);
    ck_assert_int_eq(clean_dir(false), 1); /* target.txt, and no temporary file */
    /* a dangling link: its target is created, through a chain of two links */
    char link2[600];
    snprintf(link2, sizeof link2, "%s/link2", dir);
    unlink(target);
    unlink(path);
    ck_assert_int_eq(symlink("link2", path), 0);
    ck_assert_int_eq(symlink("target.txt", link2), 0);
    ck_assert_msg(ad_write_atomic(path, fill_hello, NULL, err, sizeof err) == AD_OK, "%s", err);
    text = slurp_path(target);
    ck_assert_str_eq(text, "hello\n");
    free(text);
    ck_assert_int_eq(lstat(link2, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    /* a loop of links is an error, not a hang */
    unlink(link2);
    ck_assert_int_eq(symlink("m.safetensors", link2), 0);
    ck_assert_int_eq(ad_write_atomic(path, fill_hello, NULL, err, sizeof err), AD_ERR_IO);
    ck_assert_msg(strstr(err, "symbolic link"), "%s", err);
}
END_TEST

/* A save killed between creating its temporary file and renaming it left the temporary file
 * behind for ever.  Temporaries are named .NAME.tmp-XXXXXX; the next save to NAME removes
 * those of NAME that no live save holds, and leaves every other file alone. */
START_TEST(a_killed_saves_temporary_is_removed)
{
    char stale[600], other[600], mine[600], err[512];
    snprintf(stale, sizeof stale, "%s/.m.safetensors.tmp-Ab12Cd", dir);
    snprintf(other, sizeof other, "%s/.other.safetensors.tmp-Ab12Cd", dir);
    snprintf(mine, sizeof mine, "%s/.m.safetensors.tmp-notours", dir);
    write_bytes(stale, "half", 4);
    write_bytes(other, "half", 4);
    write_bytes(mine, "user", 4);
    ck_assert_msg(ad_write_atomic(path, fill_hello, NULL, err, sizeof err) == AD_OK, "%s", err);
    ck_assert_int_ne(access(stale, F_OK), 0);
    ck_assert_int_eq(access(other, F_OK), 0);
    ck_assert_int_eq(access(mine, F_OK), 0);
    ck_assert_int_eq(clean_dir(false), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ad_io");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60); /* a safety net on a loaded machine; the suite takes ~1 s */
    tcase_add_test(tc, bytes_match_the_format);
    tcase_add_test(tc, loading_a_fifo_is_refused);
    tcase_add_test(tc, saving_over_a_fifo_is_refused);
    tcase_add_test(tc, saving_through_a_symlink_replaces_its_target);
    tcase_add_test(tc, a_killed_saves_temporary_is_removed);
    tcase_add_test(tc, round_trip_is_bit_exact);
    tcase_add_test(tc, empty_file_and_accessors);
    tcase_add_test(tc, loads_other_writers_files);
    tcase_add_loop_test(tc, rejects_bad_headers, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, rejects_bad_files);
    tcase_add_test(tc, every_truncation_fails);
    tcase_add_test(tc, every_header_byte_inverted_fails);
    tcase_add_test(tc, random_corruption_never_crashes);
    tcase_add_test(tc, save_rejects_bad_arguments);
    tcase_add_test(tc, save_into_missing_folder_fails_cleanly);
    tcase_add_test(tc, failed_write_keeps_old_file);
    tcase_add_test(tc, replacing_keeps_permissions);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
