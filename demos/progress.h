/*
 * progress.h — progress reports for the demos' long runs.
 *
 * Tutorial.  A run of 10 epochs of 50000 samples each:
 *
 *     progress p;
 *     progress_init(&p, stderr, 10 * 50000);                  // units of the whole run
 *     for (int e = 0; e < 10; e++) {
 *         char label[32];
 *         snprintf(label, sizeof label, "epoch %d/10", e + 1);
 *         progress_phase(&p, label, 50000);                    // one phase: one epoch
 *         for (...) {                                          // after each minibatch:
 *             snprintf(stats, sizeof stats, "loss %.4f acc %.3f", loss, acc);
 *             progress_update(&p, samples_so_far, stats);       // cheap: redraws at most 10x/s
 *         }
 *         progress_end_phase(&p, "epoch 3/10: loss 0.41 ...");  // always printed
 *     }
 *
 * When the stream is a terminal, progress_update redraws one line in place:
 *
 *     epoch 3/10 [######......]  50% loss 0.4101 acc 0.853 24,310 samples/s ETA 3:12
 *
 * (samples/s over the current phase; ETA for the rest of the whole run at the rate so far),
 * and progress_end_phase replaces it by the phase's summary line.  Otherwise (a pipe, a file,
 * a CI log) updates print nothing and each phase leaves just its summary line, so logs stay
 * one line per epoch.  BACKPROP_PROGRESS=0 or 1 in the environment forces either mode.
 *
 * Nothing here allocates; the struct is the caller's.  Write errors are ignored (progress is
 * a courtesy, never a reason to stop a run).
 */
#ifndef PROGRESS_H
#define PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    bool live;             /* a terminal: draw the bar */
    bool drawn;            /* a bar is on the screen and must be cleared */
    char unit[16];         /* "samples" */
    char label[48];        /* the phase's name, e.g. "epoch 3/30" */
    int64_t total;         /* units of the whole run */
    int64_t before;        /* units of the phases already ended */
    int64_t phase_units;   /* units of the current phase */
    int64_t phase_done;    /* units of the current phase done so far */
    double run_start, phase_start, last_draw; /* seconds on a monotonic clock */
} progress;

/* Starts a run of `total` units (samples, steps, ...) reported to out (stderr, say). */
void progress_init(progress *p, FILE *out, int64_t total);

/* Names the unit counted ("samples" unless set; at most 15 characters). */
void progress_set_unit(progress *p, const char *unit);

/* Starts a phase of `units` units called label (an epoch, say). */
void progress_phase(progress *p, const char *label, int64_t units);

/* done units of the current phase are finished; stats (may be NULL) is shown after the bar. */
void progress_update(progress *p, int64_t done, const char *stats);

/* Ends the phase: clears the bar and prints line (if not NULL) and a newline. */
void progress_end_phase(progress *p, const char *line);

/* Clears a bar left on the screen (before printing something else, or on an error). */
void progress_clear(progress *p);

/* Seconds since progress_init, and since the current phase began. */
double progress_elapsed(const progress *p);
double progress_phase_elapsed(const progress *p);

/* Seconds on a monotonic clock (for timing anything else the same way). */
double progress_now(void);

/* Writes a duration as "0:07", "12:34" or "1:02:03". */
char *progress_format_time(double seconds, char *buf, size_t len);

#endif
