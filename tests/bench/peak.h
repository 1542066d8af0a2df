/* The machine's limits, measured in the run that reports against them (tests/bench/peak.c
 * says how), and the FLOP counts the benchmarks divide by them.  libc and libm only: the
 * benchmarks link it as a static helper library (tests/bench/meson.build). */
#ifndef BENCH_PEAK_H
#define BENCH_PEAK_H
#include <stdbool.h>
#include <stddef.h>

/* The instruction sets a peak is measured with, best last. */
typedef enum { PEAK_PORTABLE, PEAK_AVX2, PEAK_AVX512, PEAK_NISA } peak_isa;

/* Whether this CPU runs isa (PEAK_PORTABLE always; the x86 ones by their CPUID bits, and
 * never on other architectures). */
bool peak_isa_runs(peak_isa isa);

/* The name of isa as the bench lines spell it: "portable", "avx2", "avx512". */
const char *peak_isa_name(peak_isa isa);

/* The best instruction set this CPU runs. */
peak_isa peak_best_isa(void);

/* One timed run of isa's FMA loop, float64 when f64, sized to take about `seconds`:
 * GFLOP/s, counting an FMA as two FLOPs, or 0 when the CPU does not run isa. */
double peak_fma_once(peak_isa isa, bool f64, double seconds);

/* One timed run of the streaming triad a[i] = b[i] + s c[i] over three float64 arrays of
 * n elements each (allocated by peak_triad_new), repeated to take about `seconds`: GB/s,
 * counting 24 bytes an element (read b, read c, write a; the write-allocate read of a is not
 * counted, as STREAM does not). */
double peak_triad_once(double *arrays, size_t n, double seconds);

/* Three 64-byte aligned float64 arrays of n elements each, one after the other, written once
 * (so that their pages exist before anything is timed); free() releases them.  NULL when out
 * of memory.  n is rounded up to a multiple of 16 in *n. */
double *peak_triad_new(size_t *n);

/* One core's FMA peak at the best instruction set, float32 and float64, in GFLOP/s: the
 * best of `repeats` interleaved runs of about `seconds` each. */
typedef struct {
    peak_isa isa;      /* the instruction set measured */
    double f32_gflops; /* float32 FMA peak */
    double f64_gflops; /* float64 FMA peak */
} peak_fma;

/* Measures peak_fma in about 2 * repeats * seconds.  Short runs find the peak more surely
 * than long ones on a busy machine: one run of 2 ms often falls between two other jobs'
 * time slices, one of 20 ms seldom does. */
peak_fma peak_fma_measure(int repeats, double seconds);

/* peak_fma_measure as the benchmarks that report against the peak call it: 50 runs of 2 ms a
 * precision, 0.2 s. */
peak_fma peak_fma_quick(void);

/* Prints `bench: peak_f32_gflops X` and `bench: peak_f64_gflops X` for p (every benchmark
 * that reports fractions of the peak prints the peak it used, under the same names). */
void peak_fma_print(const peak_fma *p);

/* The triad's working sets (the three arrays together) in L2 and L3: L2 is 1 MiB a core on
 * Zen 4/5 and Skylake-SP, 2 MiB on Sapphire Rapids; L3 32 MiB a CCD on Zen 5. */
enum { PEAK_L2_BYTES = 512 << 10, PEAK_L3_BYTES = 12 << 20 };

/* The triad's bandwidth at a working set of `total_bytes` (the three arrays together), best
 * of `repeats` runs of about `seconds`, in GB/s; 0 when out of memory. */
double peak_triad_measure(size_t total_bytes, int repeats, double seconds);

/* Prints `bench: NAME_UNIT X` and `bench: NAME_peak_fraction Y` for `amount` (FLOPs, bytes)
 * done in `seconds`, X being amount / seconds / 1e9, against a peak of `peak` in the same unit
 * (already multiplied by the threads used): unit "gflops" against an FMA peak, "gbs" against
 * a triad's bandwidth. */
void peak_print_fraction(const char *name, const char *unit, double amount, double seconds, double peak);

/* The FLOPs of one training epoch of an MLP over `images` examples, layer l mapping
 * sizes[l] inputs to sizes[l + 1] outputs (n_layers layers): the matrix products only,
 * 2 N in out each for the forward pass, the weight gradients and the input gradients of every
 * layer but the first (whose input is the data, which needs none).  Not counted: bias adds,
 * activations and the loss (O(N width): 0.2% of it), and the optimizer, whose 4 FLOPs a
 * parameter a step are a fixed cost per step (SGD momentum on 784-256-128-10: 11.7% of the
 * products at batch 8, 1.5% at 64, 0.1% at 1024). */
double mlp_epoch_flops(const int *sizes, int n_layers, long images);
#endif
