/*
 * nn_data.h — datasets, minibatches, standardisation, and the CSV and IDX (MNIST) loaders.
 *
 * Tutorial.  Load Fashion-MNIST, hold out a validation set, iterate over shuffled minibatches:
 *
 *     char err[512];
 *     nn_dataset *all = nn_fashion_mnist(NULL, true, AD_F32, err, sizeof err);
 *     if (!all) { fprintf(stderr, "%s\n", err); return 1; }
 *     nn_dataset *train, *val;
 *     nn_dataset_split(all, 0.1, 42, &train, &val, err, sizeof err);
 *     nn_batches *it = nn_batches_new(train, 64, true, 1, err, sizeof err);
 *     nn_batch b;
 *     for (int epoch = 0; epoch < 10; epoch++)
 *         while (nn_batches_next(it, &b)) { ... ad_const_tensor(g, b.x), b.labels ... }
 *     nn_batches_free(it);
 *
 * Ownership.  Datasets, iterators and scalers are freed by their _free function; a batch's
 * tensors belong to the iterator and stay valid until its next call.
 *
 * Errors.  Functions return NULL or a status and write a message into err (errlen bytes; may
 * be NULL) that names the function, the file, and where the file is wrong: line and column
 * for CSV, byte offset for IDX.  Nothing aborts, exits or prints.
 */
#ifndef NN_DATA_H
#define NN_DATA_H

#include "ad.h"

AD_BEGIN_DECLS

/* Where Debian's dataset-fashion-mnist package puts the files. */
#define NN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* A supervised dataset: n instances of dim features, with class labels or real targets. */
typedef struct {
    int64_t n;           /* instances (rows) */
    int dim;             /* features per instance */
    ad_tensor *x;        /* [n, dim] features */
    int32_t *labels;     /* n class ids in [0, classes), or NULL for regression */
    int classes;         /* 1 + the largest label (0 for regression) */
    ad_tensor *y;        /* [n, targets] regression targets, or NULL for classification */
} nn_dataset;

/* A zero-filled dataset: class labels when targets is 0 (classes to be set by the caller),
 * else a [n, targets] target matrix.  NULL on bad sizes or if memory runs out. */
nn_dataset *nn_dataset_new(int64_t n, int dim, ad_dtype t, int targets);

/* Frees a dataset; NULL is ignored. */
void nn_dataset_free(nn_dataset *d);

/* Splits d into two new datasets after a seeded shuffle: *val gets round(n * val_fraction)
 * rows, *train the rest; both must be non-empty.  d is unchanged. */
ad_status nn_dataset_split(const nn_dataset *d, double val_fraction, uint64_t seed,
                           nn_dataset **train, nn_dataset **val, char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------
 * Standardisation: features shifted to mean 0 and scaled to standard deviation 1 with
 * statistics from the training set only (so validation and test data are scaled alike).
 */

/* Per-feature mean and standard deviation, fitted on training data. */
typedef struct {
    int dim;      /* features */
    double *mean; /* per feature */
    double *std;  /* per feature; a constant feature gets std 1 (centred, not scaled) */
} nn_scaler;

/* Computes each feature's mean and (population) standard deviation over d. */
ad_status nn_scaler_fit(nn_scaler *s, const nn_dataset *d, char *err, size_t errlen);

/* Replaces every feature x by (x - mean) / std in place; d must have the scaler's dim. */
ad_status nn_scaler_apply(const nn_scaler *s, nn_dataset *d, char *err, size_t errlen);

/* Frees the scaler's arrays (s itself is the caller's). */
void nn_scaler_free(nn_scaler *s);

/* ------------------------------------------------------------------------------------------
 * Minibatches.
 */

/* One minibatch: rows instances, tensors owned by the iterator (valid until the next call). */
typedef struct {
    ad_tensor *x;           /* [rows, dim] */
    const int32_t *labels;  /* rows labels, or NULL for regression */
    ad_tensor *y;           /* [rows, targets], or NULL for classification */
    int64_t rows;           /* instances in this minibatch (the last may be smaller) */
} nn_batch;

/* A seeded, shuffling minibatch iterator over a dataset (opaque). */
typedef struct nn_batches nn_batches;

/* An iterator over d in minibatches of batch_size rows (the last one smaller if batch_size
 * does not divide n), in a new order every epoch when shuffle (seeded: the same seed gives the
 * same batches).  Allocates everything here, so iterating allocates nothing.  d must outlive
 * the iterator. */
nn_batches *nn_batches_new(const nn_dataset *d, int batch_size, bool shuffle, uint64_t seed,
                           char *err, size_t errlen);

/* Fills b with the next minibatch and returns true; returns false at the end of an epoch,
 * after which the next call starts a new epoch. */
bool nn_batches_next(nn_batches *it, nn_batch *b);

/* Frees the iterator and its batch tensors; NULL is ignored. */
void nn_batches_free(nn_batches *it);

/* ------------------------------------------------------------------------------------------
 * Training steps recorded once.  A model's loss on a minibatch is the same graph at every
 * step; only the batch's numbers change.  nn_step records it at the first batch and replays it
 * (ad_replay) at the next ones, so a step makes no node and allocates nothing:
 *
 *     nn_step *s = nn_step_new(my_loss, &model);
 *     while (nn_batches_next(it, &b)) {
 *         optim_zero_grad(o);
 *         nn_step_run(s, &b, &loss);        // forward and backward
 *         optim_step(o);
 *     }
 */

/* The loss of one minibatch, as nn_step records it: x is the batch's inputs as a constant node
 * viewing the batch tensor, labels its labels (NULL for regression), y its targets as such a
 * node (NULL for classification); user is nn_step_new's.  Returns the scalar loss (NULL after
 * an error in g).  Nodes it keeps (the scores, for accuracy) stay valid, with the values of
 * the latest step, until it runs again. */
typedef ad_node *(*nn_loss_fn)(ad_graph *g, ad_node *x, const int32_t *labels, ad_node *y, void *user);

/* A training step recorded once (opaque). */
typedef struct nn_step nn_step;

/* A step for loss with its user pointer; NULL if loss is NULL or memory runs out. */
nn_step *nn_step_new(nn_loss_fn loss, void *user);
/* Frees the step and its graph; NULL is ignored. */
void nn_step_free(nn_step *s);
/* Forward and backward of the loss on batch b; *loss (may be NULL) receives its value.  The
 * first batch records the graph; a batch with other tensors or another row count (the smaller
 * last batch of an epoch) records it again, into the same graph's memory; every other batch
 * replays the recording, with the batch's labels set on its cross_entropy nodes (so a loss that
 * gives cross_entropy anything but the batch's labels must not use nn_step); a batch on which
 * the loss's ad_branch goes the other way is recorded again.  Dropout draws new
 * masks at each step, as recording again would.  Gradients accumulate into the parameters as
 * ad_backward's do.  The same bits as recording every step.  Returns AD_OK, or a status with
 * the message in nn_step_graph's ad_error. */
ad_status nn_step_run(nn_step *s, const nn_batch *b, double *loss);
/* The step's graph (for ad_error and the nodes the loss function kept); NULL for NULL. */
ad_graph *nn_step_graph(const nn_step *s);
/* How many times the step recorded its graph and how many it replayed it. */
void nn_step_counts(const nn_step *s, int64_t *recorded, int64_t *replayed);

/* ------------------------------------------------------------------------------------------
 * Loaders.
 */

/* How nn_csv_load reads a file.  Zero-initialised: comma-separated, no header, labels in the
 * first column, class ids, float64. */
typedef struct {
    bool header;        /* the first row names the columns */
    const char *label;  /* the label column by name (needs header), or NULL to use label_col */
    int label_col;      /* the label column by index from 0; negative counts from the end */
    bool regression;    /* the label column holds real targets (nn_dataset.y), not class ids */
    char sep;           /* field separator (','); fields may be "quoted" */
    ad_dtype dtype;     /* of the features (and targets) */
} nn_csv_opts;

/* Reads a CSV file: one instance per line (blank lines skipped), every column but the label
 * a number.  Class labels must be non-negative integers.  Errors give line and column:
 * "nn_csv_load: data.csv: line 7, column 12: \"abc\" is not a number". */
nn_dataset *nn_csv_load(const char *path, const nn_csv_opts *o, char *err, size_t errlen);

/* Reads an IDX file (the MNIST format: magic 0 0 type rank, big-endian dimensions, big-endian
 * data of type u8, i8, i16, i32, f32 or f64) into a new tensor of its shape converted to t.
 * A gzipped file (detected by its magic bytes) is read through the system's `gzip -dc`. */
ad_tensor *nn_idx_load(const char *path, ad_dtype t, char *err, size_t errlen);

/* An image file [n, rows, cols] and a label file [n] as a dataset of n instances with
 * rows * cols features multiplied by scale (1/255.0 maps pixels to [0, 1]). */
nn_dataset *nn_idx_dataset(const char *images, const char *labels, ad_dtype t, double scale,
                           char *err, size_t errlen);

/* Fashion-MNIST's training (60000) or test (10000) set from dir (NULL: NN_FASHION_MNIST_DIR),
 * pixels scaled to [0, 1].  When the files are missing the message says how to install them
 * ("apt-get install dataset-fashion-mnist"). */
nn_dataset *nn_fashion_mnist(const char *dir, bool train, ad_dtype t, char *err, size_t errlen);

/* The name of Fashion-MNIST class k ("T-shirt/top", "Trouser", ...), or NULL. */
const char *nn_fashion_mnist_class(int k);

AD_END_DECLS
#endif
