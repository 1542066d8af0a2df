/* Helpers shared by the Check suites. */
#ifndef TESTUTIL_H
#define TESTUTIL_H
#include "ad_op.h"
#include <check.h>

/* UNDER_ASAN is defined in AddressSanitizer builds (gcc and clang), whose shadow memory does
 * not survive the address-space and data limits some tests set to make a blow-up fail fast. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* x rounded to d decimals, the way the slides print numbers. */
double round_to(double x, int d);
/* A float64 tensor of the given shape with uniform values in [lo, hi). */
ad_tensor *rand_tensor(ad_rng *r, ad_shape s, double lo, double hi);
/* What a program run printed and how it ended. */
typedef struct {
    char *out, *err; /* stdout and stderr, NUL-terminated (free with run_done) */
    int status;      /* exit code, or 128 + signal */
} run_result;
/* Runs prog with args (NULL-terminated, at most 128), in folder dir (NULL: here), with the
 * environment variable env_name set to env_value (env_name NULL: none).  stdout and stderr go
 * through temporary files, so a large output cannot block and stderr is never a terminal. */
run_result run_program(const char *prog, const char *const *args, const char *dir,
                       const char *env_name, const char *env_value);
/* run_program with stdout on the file out_path (say /dev/full), or closed when out_path is
 * NULL; r.out is then empty. */
run_result run_program_stdout(const char *prog, const char *const *args, const char *out_path);
void run_done(run_result *r);
/* A new empty folder PREFIX_XXXXXX in $TMPDIR, /dev/shm or /tmp, its path in dir (len bytes);
 * scratch_dir_remove deletes it and everything in it. */
void scratch_dir_make(char *dir, size_t len, const char *prefix);
/* Deletes a folder of scratch_dir_make and its contents. */
void scratch_dir_remove(const char *dir);
/* Everything readable from fd, NUL-terminated (malloc'd). */
char *slurp_fd(int fd);
/* A NULL-terminated argument list: ARGS("--json", "x", "x=1"). */
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* The lecture's sigmoid neuron, built in the order the CLI builds it (so traces match the
 * CLI's golden files): variables x0, x1, w0, w1, w2; returns f. */
ad_node *lecture_neuron(ad_graph *g);
/* Runs the suite and returns the process exit status. */
int run_suite(Suite *s);
#endif
