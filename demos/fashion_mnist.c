/* fashion_mnist: trains the lecture's multilayer perceptron on Fashion-MNIST; built with
 * FASHION_CNN defined, it is fashion_cnn, which trains a convolutional network instead.
 *
 *   fashion_mnist                      # 784-256-128-10 relu, SGD with momentum, early stopping
 *   fashion_mnist --eval model.safetensors
 *   fashion_cnn                        # conv 32, pool, conv 64, pool, 128, 10
 *
 * Loads Debian's dataset-fashion-mnist, holds out a validation set, trains with minibatch SGD
 * (momentum, dropout, L2 as options) and stops early when the validation loss stops falling,
 * then prints the test accuracy and the confusion matrix and draws the training and validation
 * curves as SVG.  The options for comparing with other frameworks (--init, --no-shuffle,
 * --no-validation, --log-steps, --json) make runs that PyTorch reproduces step for step
 * (tests/fashion_torch_match.py). */
#include "ad.h"
#include "ad_io.h"
#include "nn.h"
#include "nn_data.h"
#include "optim.h"
#include "opts.h"
#include "plot.h"
#include "progress.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef HAVE_MPI
#include <mpi.h>
#endif

#ifdef FASHION_CNN
#define PROG "fashion_cnn"
static const char *USAGE =
    "usage: fashion_cnn [options]\n"
    "Trains a convolutional network on Fashion-MNIST (60,000 training and 10,000 test images of\n"
    "clothes, 10 classes): Conv2d(1,32,3,padding=1), ReLU, MaxPool2d(2), Conv2d(32,64,3,padding=1),\n"
    "ReLU, MaxPool2d(2), Flatten, Linear(3136,128), ReLU, Linear(128,10), PyTorch's nn.Sequential\n"
    "numbering its parameters 0.*, 3.*, 7.* and 9.*.  Holds out 10% of the training images for\n"
    "validation and early stopping; prints the test accuracy and the confusion matrix and draws\n"
    "the loss and accuracy curves as SVG.\n";
#else
#define PROG "fashion_mnist"
static const char *USAGE =
    "usage: fashion_mnist [options]\n"
    "Trains a multilayer perceptron on Fashion-MNIST (60,000 training and 10,000 test images of\n"
    "clothes, 10 classes), holding out 10% of the training images for validation and early\n"
    "stopping; prints the test accuracy and the confusion matrix and draws the loss and accuracy\n"
    "curves as SVG.\n";
#endif
/* The training defaults: the CNN reaches its accuracy in fewer, slower epochs. */
#ifdef FASHION_CNN
#define DEFAULT_EPOCHS 15
#define DEFAULT_PATIENCE 3
#define DEFAULT_LR_WAIT 1
#define DEFAULT_LR 0.01
#else
#define DEFAULT_EPOCHS 60
#define DEFAULT_PATIENCE 9
#define DEFAULT_LR_WAIT 3
#define DEFAULT_LR 0.05
#endif
#ifdef FASHION_CNN
#define INIT_HELP "start from the weights in a safetensors state dict (PyTorch's\nnn.Sequential names: 0.weight, 0.bias, 3.weight, ... 9.bias)\ninstead of random ones"
#else
#define INIT_HELP "start from the weights in a safetensors file (names 0.weight,\n0.bias, 2.weight, ... as PyTorch's nn.Sequential) instead of random\nones; without --hidden the widths are the file's"
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
/* Whether this build trains the CNN (fashion_cnn) rather than the MLP. */
#ifdef FASHION_CNN
enum { CNN = 1 };
#else
enum { CNN = 0 };
#endif

static const char *FOOTER =
    "\n"
    "Progress: a bar with loss, accuracy, samples/s and ETA when stderr is a terminal, one line\n"
    "per epoch otherwise.  Exit status: 0 done, 1 training or a file failed, 2 bad options or\n"
    "no dataset.\n";

enum {
    CLASSES = 10,
    EVAL_CHUNK = 500,          /* rows per evaluation graph */
    MAX_LOG_STEPS = 10000000,
    MAX_EPOCHS = 100000,
};
#define VAL_FRACTION 0.1

/* Every option's value.  act, dtype and optimizer hold nn_act, ad_dtype and optim_kind. */
typedef struct {
    int hidden[NN_MAX_HIDDEN];
    int act, dtype, optimizer;
    int epochs, batch, patience, lr_wait, threads, log_steps;
    double lr, momentum, dropout, l2, lr_drop;
    int64_t seed, limit, test_limit;
    bool standardize, no_shuffle, no_validation, json;
    const char *data, *save, *eval, *init, *svg;
    bool hidden_given;
    bool mpi;   /* --mpi: one rank of a data-parallel run */
    int shards; /* --shards R: one process computing the R ranks' shards (0: not given) */
} options;

/* This process's place in a data-parallel run over MPI (rank 0 of 1 otherwise).  Rank 0
 * alone prints, evaluates the test set and writes files. */
static int world_rank = 0, world_size = 1;

/* ---- the command line ---- */

static bool positive(double x) { return x > 0; }
static bool non_negative(double x) { return x >= 0; }
static bool below_one(double x) { return x >= 0 && x < 1; }
static bool factor(double x) { return x > 0 && x <= 1; }

static const char *const ACT_NAMES[] = {"relu", "leaky_relu", "sigmoid", "tanh", NULL};
static const int ACT_VALUES[] = {NN_RELU, NN_LEAKY_RELU, NN_SIGMOID, NN_TANH};
static const char *const DTYPE_NAMES[] = {"float32", "float64", NULL};
static const int DTYPE_VALUES[] = {AD_F32, AD_F64};
static const char *const OPTIM_NAMES[] = {"sgd", "adam", NULL};
static const int OPTIM_VALUES[] = {OPTIM_MOMENTUM, OPTIM_ADAM};

/* "256,128" into dest (int[NN_MAX_HIDDEN]); "0" is no hidden layer. */
static bool parse_hidden(const char *s, void *dest)
{
    int *hidden = dest;
    memset(hidden, 0, NN_MAX_HIDDEN * sizeof *hidden);
    if (strcmp(s, "0") == 0) return true;
    int n = 0;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char part[32], *end;
        if (len == 0 || len >= sizeof part || n == NN_MAX_HIDDEN) return false;
        memcpy(part, s, len);
        part[len] = 0;
        long w = strtol(part, &end, 10);
        if (end == part || *end || w < 1 || w > 1 << 20) return false;
        hidden[n++] = (int)w;
        s += len;
        if (*s == ',' && !*++s) return false; /* a trailing comma */
    }
    return n > 0;
}

static int hidden_count(const int *hidden)
{
    int d = 0;
    while (d < NN_MAX_HIDDEN && hidden[d]) d++;
    return d;
}

/* opts_def.tag bits: the options --eval refuses, and those of the MLP alone (fashion_cnn
 * refuses them) */
enum { TRAINING = 1, MLP_ONLY = 2 };

/* Parses argv into o; returns -1 to go on, or an exit status (0 after --help). */
static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.hidden = {256, 128}, .act = NN_RELU, .dtype = AD_F32, .optimizer = OPTIM_MOMENTUM,
                   .epochs = DEFAULT_EPOCHS, .batch = 64, .patience = DEFAULT_PATIENCE, .lr_wait = DEFAULT_LR_WAIT,
                   .lr = DEFAULT_LR, .momentum = 0.9, .dropout = CNN ? 0 : 0.2, .lr_drop = 0.5, .seed = 1,
                   .svg = PROG ".svg"};
    char widths[128];
    snprintf(widths, sizeof widths, "up to %d comma-separated widths from 1 to 1048576, like 256,128 (or 0 for none)",
             NN_MAX_HIDDEN);
    opts_def defs[] = {
        {"", OPTS_HEADING, NULL, NULL, .help = "model and training:"},
        {"--hidden", OPTS_CUSTOM, o->hidden, "W1,W2,...", .help = "hidden layer widths (default 256,128; 0: no hidden layer)",
         .parse = parse_hidden, .want = widths, .tag = TRAINING | MLP_ONLY},
        {"--activation", OPTS_CHOICE, &o->act, "A", .help = "relu, leaky_relu, sigmoid or tanh (default relu)",
         .choices = ACT_NAMES, .values = ACT_VALUES, .tag = TRAINING | MLP_ONLY},
        {"--epochs", OPTS_INT, &o->epochs, "N", .help = "at most N epochs (default " STR(DEFAULT_EPOCHS) "; early stopping ends sooner)", .lo = 1,
         .hi = MAX_EPOCHS, .tag = TRAINING},
        {"--batch", OPTS_INT, &o->batch, "N", .help = "minibatch size (default 64)", .lo = 1, .hi = 60000, .tag = TRAINING},
        {"--optimizer", OPTS_CHOICE, &o->optimizer, "O", .help = "sgd or adam (default sgd)", .choices = OPTIM_NAMES,
         .values = OPTIM_VALUES, .tag = TRAINING},
        {"--lr", OPTS_REAL, &o->lr, "X", .help = "learning rate (default " STR(DEFAULT_LR) " for sgd, 0.001 for adam)", .check = positive,
         .want = "a positive number", .tag = TRAINING},
        {"--momentum", OPTS_REAL, &o->momentum, "X",
         .help = "sgd's momentum gamma in [0,1): v <- -lr g + gamma v (default 0.9;\n0: plain minibatch SGD)",
         .check = below_one, .want = "a number in [0,1)", .tag = TRAINING},
        {"--dropout", OPTS_REAL, &o->dropout, "P",
         .help = "dropout probability after each hidden layer, the lecture's form:\nactivations times 1-P at test time "
         "(default 0.2)", .check = below_one, .want = "a probability in [0,1)", .tag = TRAINING | MLP_ONLY},
        {"--l2", OPTS_REAL, &o->l2, "X", .help = "adds X * (sum of squared weights and biases) to the loss (default 0)",
         .check = non_negative, .want = "a number >= 0", .tag = TRAINING | MLP_ONLY},
        {"--lr-wait", OPTS_INT, &o->lr_wait, "N",
         .help = "after every N epochs without a lower validation loss, multiply\nthe rate by --lr-drop (default " STR(DEFAULT_LR_WAIT) ")", .lo = 1,
         .hi = MAX_EPOCHS, .tag = TRAINING},
        {"--lr-drop", OPTS_REAL, &o->lr_drop, "F", .help = "that factor, in (0,1] (default 0.5; 1: a constant rate)",
         .check = factor, .want = "a factor in (0,1]", .tag = TRAINING},
        {"--patience", OPTS_INT, &o->patience, "N",
         .help = "stop after N epochs without a lower validation loss and keep the\nbest epoch's weights (default " STR(DEFAULT_PATIENCE) ")", .lo = 1,
         .hi = MAX_EPOCHS, .tag = TRAINING},
        {"--standardize", OPTS_FLAG, &o->standardize, NULL,
         .help = "inputs standardised per pixel (mean and standard deviation of the\n60,000 training images) instead of "
         "pixel/255 (a model trained so\nneeds --standardize with --eval too)", .tag = MLP_ONLY},
        {"--seed", OPTS_INT64, &o->seed, "N", .help = "initial weights, validation split, shuffling, dropout (default 1)",
         .lo = 0, .hi = (double)INT64_MAX, .tag = TRAINING},
        {"--threads", OPTS_INT, &o->threads, "N",
         .help = "threads for the matrix products (default: all cores; 1 per rank\nwith --mpi)", .lo = 1, .hi = 256},
        {"", OPTS_HEADING, NULL, NULL, .help = "data parallel (docs/demos.md):"},
        {"--mpi", OPTS_FLAG, &o->mpi, NULL,
         .help = "be one rank of `mpirun -np R " PROG " --mpi`: each rank computes the\ngradient of its shard of every "
         "minibatch, and the shards' gradients\nare summed in rank order, so the run is the bits of --shards R\n(needs a "
         "build with MPI)", .tag = TRAINING},
        {"--shards", OPTS_INT, &o->shards, "R",
         .help = "compute every minibatch as R shards one after another and sum\ntheir gradients in order: what --mpi "
         "on R ranks computes, in\none process (1: the same bits as without --shards)", .lo = 1, .hi = 4096,
         .tag = TRAINING},
        {"", OPTS_HEADING, NULL, NULL, .help = "files:"},
        {"--data", OPTS_TEXT, &o->data, "DIR", .help = "the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)",
         .want = "a folder"},
        {"--save", OPTS_TEXT, &o->save, "FILE", .help = "write the trained model (safetensors, loads into PyTorch)",
         .tag = TRAINING},
        {"--eval", OPTS_TEXT, &o->eval, "FILE",
         .help = "only test a saved model: accuracy and confusion matrix (takes\n--data, --standardize, --threads, --test-limit, --json)"},
        {"--svg", OPTS_TEXT, &o->svg, "FILE",
         .help = "the curves (default fashion_mnist.svg: loss; accuracy in\nfashion_mnist_accuracy.svg); --svg '' draws "
         "nothing", .empty_ok = true, .tag = TRAINING},
        {"", OPTS_HEADING, NULL, NULL, .help = "comparing with other frameworks:"},
        {"--dtype", OPTS_CHOICE, &o->dtype, "T", .help = "float32 or float64 (default float32)", .choices = DTYPE_NAMES,
         .values = DTYPE_VALUES, .tag = TRAINING},
        {"--test-limit", OPTS_INT64, &o->test_limit, "N", .help = "test on the first N test images only (a quicker check)",
         .lo = 1, .hi = (double)INT64_MAX},
        {"--limit", OPTS_INT64, &o->limit, "N", .help = "only the first N training images", .lo = 1, .hi = (double)INT64_MAX,
         .tag = TRAINING},
        {"--init", OPTS_TEXT, &o->init, "FILE",
         .help = INIT_HELP, .tag = TRAINING},
        {"--no-shuffle", OPTS_FLAG, &o->no_shuffle, NULL, .help = "minibatches in file order", .tag = TRAINING},
        {"--no-validation", OPTS_FLAG, &o->no_validation, NULL,
         .help = "train on all training images: no early stopping, a constant rate", .tag = TRAINING},
        {"--log-steps", OPTS_INT, &o->log_steps, "N", .help = "record the loss of each of the first N minibatches", .lo = 0,
         .hi = MAX_LOG_STEPS, .tag = TRAINING},
        {"--json", OPTS_FLAG, &o->json, NULL,
         .help = "end the output with {\"test_accuracy\": A, \"epochs\": E, \"seconds\": S,\n\"epoch_loss\": [...], "
         "\"step_loss\": [...], ...}"},
    };
    int NDEFS = (int)(sizeof defs / sizeof *defs);
    if (CNN) { /* the MLP's options are not the network's: left out of --help and refused */
        int k = 0;
        for (int i = 0; i < NDEFS; i++)
            if (!(defs[i].tag & MLP_ONLY)) defs[k++] = defs[i];
        NDEFS = k;
    }
    opts_spec spec = {.prog = PROG, .usage = USAGE, .defs = defs, .ndefs = NDEFS, .footer = FOOTER};
    int rc = opts_parse(&spec, argc, argv, NULL, NULL, 0);
    if (rc >= 0) return rc;
    const opts_def *first_training = NULL;
    for (int k = 0; k < NDEFS; k++) {
        const opts_def *d = &defs[k];
        if ((d->tag & TRAINING) && d->seen && (!first_training || d->seen < first_training->seen)) first_training = d;
        if (d->dest == o->hidden) o->hidden_given = d->seen > 0;
        if (d->dest == &o->lr && d->seen == 0 && o->optimizer == OPTIM_ADAM) o->lr = 0.001;
        if (d->dest == &o->momentum && d->seen && o->optimizer == OPTIM_ADAM)
            return opts_error(&spec, "--momentum is for --optimizer sgd (Adam's beta1 is 0.9)");
    }
    if (o->optimizer == OPTIM_MOMENTUM && o->momentum == 0) o->optimizer = OPTIM_GD;
    if (o->eval && first_training)
        return opts_error(&spec, "--eval tests a saved model; %s is for training (with --eval: --data, --standardize, "
                                 "--threads, --test-limit, --json)", first_training->name);
    if (o->mpi && o->shards)
        return opts_error(&spec, "--shards %d computes the shards in one process; --mpi takes their number from mpirun "
                                 "-np (give one of them)", o->shards);
    if (o->shards > o->batch)
        return opts_error(&spec, "--shards %d is more than --batch %d: a full minibatch needs a row for every shard",
                          o->shards, o->batch);
#ifndef HAVE_MPI
    if (o->mpi)
        return opts_error(&spec, "--mpi: built without MPI (meson found none, or -Dmpi=disabled; install libopenmpi-dev or mpich "
                                 "and reconfigure), but --shards R computes the same run in one process");
#endif
    return -1;
}

/* ---- data ---- */

/* Whether dir holds the four files (plain or gzipped), as nn_fashion_mnist looks for them. */
static bool dataset_present(const char *dir)
{
    static const char *const files[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                        "t10k-labels-idx1-ubyte"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[4096], gz[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        snprintf(gz, sizeof gz, "%s/%s.gz", dir, files[i]);
        if (access(path, R_OK) != 0 && access(gz, R_OK) != 0) return false;
    }
    return true;
}

static int missing_dataset(const char *dir)
{
    fprintf(stderr,
            PROG ": the Fashion-MNIST files are not in %s.\n"
            "Install them with Debian's package (they go to " NN_FASHION_MNIST_DIR "):\n"
            "    sudo apt-get install dataset-fashion-mnist\n"
            "or pass the folder that holds train-images-idx3-ubyte.gz and the three other files with --data DIR.\n",
            dir);
    return 2;
}

/* The first n rows of d, as a new dataset. */
static nn_dataset *first_rows(const nn_dataset *d, int64_t n)
{
    nn_dataset *r = nn_dataset_new(n, d->dim, ad_tensor_dtype(d->x), 0);
    if (!r) return NULL;
    memcpy(ad_tensor_data(r->x), ad_tensor_data(d->x), (size_t)n * (size_t)d->dim * ad_dtype_size(ad_tensor_dtype(d->x)));
    memcpy(r->labels, d->labels, (size_t)n * sizeof *r->labels);
    r->classes = d->classes;
    return r;
}

typedef struct {
    nn_dataset *train, *val, *test; /* val is NULL with --no-validation */
} datasets;

static void datasets_free(datasets *ds)
{
    nn_dataset_free(ds->train);
    nn_dataset_free(ds->val);
    nn_dataset_free(ds->test);
    memset(ds, 0, sizeof *ds);
}

/* Loads the test set, and the training set unless eval_only; applies --standardize, --limit
 * and the validation split.  Returns 0 or an exit status after printing the reason. */
static int load_data(const options *o, ad_dtype dtype, bool eval_only, datasets *ds)
{
    const char *dir = o->data ? o->data : NN_FASHION_MNIST_DIR;
    memset(ds, 0, sizeof *ds);
    if (!dataset_present(dir)) return missing_dataset(dir);
    char err[1024];
    nn_dataset *all = NULL;
    ds->test = nn_fashion_mnist(dir, false, dtype, err, sizeof err);
    if (ds->test && (!eval_only || o->standardize)) all = nn_fashion_mnist(dir, true, dtype, err, sizeof err);
    if (!ds->test || (!all && (!eval_only || o->standardize))) {
        fprintf(stderr, PROG ": %s\n", err);
        datasets_free(ds);
        return 1;
    }
    if (o->standardize) {
        nn_scaler s;
        if (nn_scaler_fit(&s, all, err, sizeof err) != AD_OK || nn_scaler_apply(&s, all, err, sizeof err) != AD_OK ||
            nn_scaler_apply(&s, ds->test, err, sizeof err) != AD_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            nn_scaler_free(&s);
            nn_dataset_free(all);
            datasets_free(ds);
            return 1;
        }
        nn_scaler_free(&s);
    }
    if (o->test_limit && o->test_limit < ds->test->n) {
        nn_dataset *some = first_rows(ds->test, o->test_limit);
        nn_dataset_free(ds->test);
        if (!(ds->test = some)) {
            fprintf(stderr, PROG ": out of memory\n");
            nn_dataset_free(all);
            datasets_free(ds);
            return 1;
        }
    }
    if (eval_only) {
        nn_dataset_free(all);
        return 0;
    }
    if (o->limit && o->limit < all->n) {
        nn_dataset *some = first_rows(all, o->limit);
        nn_dataset_free(all);
        if (!(all = some)) {
            fprintf(stderr, PROG ": out of memory\n");
            datasets_free(ds);
            return 1;
        }
    }
    if (o->no_validation) {
        ds->train = all;
        return 0;
    }
    if (all->n < 20) {
        nn_dataset_free(all);
        datasets_free(ds);
        return opts_error(&(opts_spec){.prog = PROG},
                          "--limit %lld leaves too few images for a validation split (at least 20, or --no-validation)",
                          (long long)o->limit);
    }
    ad_status st = nn_dataset_split(all, VAL_FRACTION, (uint64_t)o->seed, &ds->train, &ds->val, err, sizeof err);
    nn_dataset_free(all);
    if (st != AD_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        datasets_free(ds);
        return 1;
    }
    return 0;
}

/* ---- the model ---- */

/* The layer index k of a parameter called "k.weight" or "k.bias" (PyTorch's nn.Sequential
 * numbering), or -1. */
static long sequential_index(const char *name, const char **kind)
{
    char *end;
    errno = 0;
    long k = strtol(name, &end, 10);
    if (end == name || errno || k < 0 || *end != '.') return -1;
    if (strcmp(end, ".weight") != 0 && strcmp(end, ".bias") != 0) return -1;
    *kind = end + 1;
    return k;
}

static int compare_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The weights of --init: the file's "k.weight"/"k.bias" pairs in order of k are the model's
 * layers (so a file from an nn.Sequential with or without dropout modules fits).  Fills
 * widths[] from the file's shapes when o->hidden was not given; else checks them. */
static nn_mlp *model_from_file(const options *o, char *err, size_t errlen)
{
    ad_tensor_file *f = ad_safetensors_load(o->init, err, errlen);
    if (!f) return NULL;
    nn_mlp *m = NULL;
    long idx[2 * NN_MAX_HIDDEN + 2];
    int layers = 0, count = ad_tensor_file_count(f);
    for (int i = 0; i < count; i++) {
        const char *kind;
        long k = sequential_index(ad_tensor_file_name(f, i), &kind);
        if (k < 0) {
            snprintf(err, errlen, "%s: tensor '%s' is not a layer's weight or bias (expected names like 0.weight, 0.bias)",
                     o->init, ad_tensor_file_name(f, i));
            goto out;
        }
        if (strcmp(kind, "weight") != 0) continue;
        if (layers == NN_MAX_HIDDEN + 1) {
            snprintf(err, errlen, "%s: more than %d layers", o->init, NN_MAX_HIDDEN + 1);
            goto out;
        }
        idx[layers++] = k;
    }
    if (layers == 0 || 2 * layers != count) {
        snprintf(err, errlen, "%s: %d tensors, %d of them weights: expected a weight and a bias per layer", o->init, count,
                 layers);
        goto out;
    }
    qsort(idx, (size_t)layers, sizeof *idx, compare_long);
    ad_tensor *w[NN_MAX_HIDDEN + 1], *b[NN_MAX_HIDDEN + 1];
    int widths[NN_MAX_HIDDEN] = {0};
    for (int l = 0; l < layers; l++) {
        char name[48];
        snprintf(name, sizeof name, "%ld.weight", idx[l]);
        w[l] = ad_tensor_file_find(f, name);
        snprintf(name, sizeof name, "%ld.bias", idx[l]);
        b[l] = ad_tensor_file_find(f, name);
        ad_shape ws = ad_tensor_shape(w[l]), bs = b[l] ? ad_tensor_shape(b[l]) : AD_SHAPE0;
        if (!b[l] || ws.rank != 2 || bs.rank != 1 || bs.dim[0] != ws.dim[0] ||
            ws.dim[1] != (l ? ad_tensor_shape(w[l - 1]).dim[0] : 784) || ws.dim[0] > (1 << 20)) {
            char s1[64], s2[64];
            snprintf(err, errlen, "%s: layer %ld: weight %s and bias %s do not chain a 784-input MLP", o->init, idx[l],
                     ad_shape_str(&ws, s1, sizeof s1), b[l] ? ad_shape_str(&bs, s2, sizeof s2) : "(missing)");
            goto out;
        }
        if (l + 1 < layers) widths[l] = (int)ws.dim[0];
    }
    if (ad_tensor_shape(w[layers - 1]).dim[0] != CLASSES) {
        snprintf(err, errlen, "%s: the last layer has %lld outputs, Fashion-MNIST has %d classes", o->init,
                 (long long)ad_tensor_shape(w[layers - 1]).dim[0], CLASSES);
        goto out;
    }
    if (o->hidden_given) {
        bool same = hidden_count(o->hidden) == layers - 1;
        for (int l = 0; same && l < layers - 1; l++) same = o->hidden[l] == widths[l];
        if (!same) {
            snprintf(err, errlen, "%s: its layers do not have the widths of --hidden (leave --hidden out to take the file's)",
                     o->init);
            goto out;
        }
    }
    nn_mlp_cfg c = {.in = 784, .out = CLASSES, .act = (nn_act)o->act, .dtype = (ad_dtype)o->dtype, .seed = (uint64_t)o->seed, .dropout = o->dropout};
    memcpy(c.hidden, widths, sizeof widths);
    if (!(m = nn_mlp_new(&c))) {
        snprintf(err, errlen, "out of memory for the model");
        goto out;
    }
    for (int l = 0; l < layers; l++)
        if (ad_tensor_copy(nn_mlp_layer(m, l)->weight, w[l]) != AD_OK || ad_tensor_copy(nn_mlp_layer(m, l)->bias, b[l]) != AD_OK) {
            snprintf(err, errlen, "%s: layer %d does not fit the model", o->init, l);
            nn_mlp_free(m);
            m = NULL;
            goto out;
        }
out:
    ad_tensor_file_free(f);
    return m;
}

static nn_mlp *make_mlp(const options *o, char *err, size_t errlen);

/* The network being trained: the MLP (fashion_mnist) or the CNN (fashion_cnn), whose layers
 * live in one nn_model under nn.Sequential's numbering. */
typedef struct {
    nn_mlp *mlp;
    nn_model *cnn;
    nn_conv2d conv1, conv2;
    nn_linear fc1, fc2;
} net;

static void net_free(net *n)
{
    nn_mlp_free(n->mlp);
    nn_model_free(n->cnn);
    memset(n, 0, sizeof *n);
}

static ad_tensor *const *net_params(const net *n) { return n->mlp ? nn_mlp_params(n->mlp) : nn_model_params(n->cnn); }

static int net_num_params(const net *n)
{
    int k = 0;
    for (ad_tensor *const *p = net_params(n); *p; p++) k++;
    return k;
}

static int64_t net_num_param_elements(const net *n)
{
    return n->mlp ? nn_mlp_num_param_elements(n->mlp) : nn_model_num_param_elements(n->cnn);
}

/* The scores [N, 10] of a minibatch x [N, 784]. */
static ad_node *net_forward(ad_graph *g, net *n, ad_node *x, nn_mode mode)
{
    if (n->mlp) return nn_mlp_forward(g, n->mlp, x, mode);
    if (!x) return NULL;
    ad_node *h = ad_reshape(g, x, AD_SHAPE(ad_node_shape(x).dim[0], 1, 28, 28));
    h = ad_max_pool2d(g, ad_relu(g, nn_conv2d_forward(g, &n->conv1, h)), 2, 2, NULL);
    h = ad_max_pool2d(g, ad_relu(g, nn_conv2d_forward(g, &n->conv2, h)), 2, 2, NULL);
    h = nn_linear_act_forward(g, &n->fc1, nn_flatten(g, h), NN_RELU, 0);
    return nn_linear_forward(g, &n->fc2, h);
}

/* The CNN with PyTorch's initialisation drawn from seed, or its weights from the state dict
 * at `from` (a file of --init or --eval). */
static bool make_cnn(net *n, ad_dtype t, uint64_t seed, const char *from, char *err, size_t errlen)
{
    ad_rng r;
    ad_rng_seed(&r, seed);
    ad_conv_opts same = {.padding = {1, 1}};
    if (!(n->cnn = nn_model_new(t)) || nn_conv2d_add(n->cnn, &n->conv1, "0", 1, 32, 3, 3, &same, true, &r) ||
        nn_conv2d_add(n->cnn, &n->conv2, "3", 32, 64, 3, 3, &same, true, &r) ||
        nn_linear_add(n->cnn, &n->fc1, "7", 64 * 7 * 7, 128, true, &r) ||
        nn_linear_add(n->cnn, &n->fc2, "9", 128, CLASSES, true, &r) ||
        nn_model_set_meta(n->cnn, "backprop.model", "fashion_cnn")) {
        snprintf(err, errlen, "%s", n->cnn ? nn_model_error(n->cnn) : "out of memory for the model");
        return false;
    }
    return !from || nn_model_load(n->cnn, from, err, errlen) == AD_OK;
}

static bool make_net(const options *o, net *n, char *err, size_t errlen)
{
    memset(n, 0, sizeof *n);
    if (CNN) return make_cnn(n, (ad_dtype)o->dtype, (uint64_t)o->seed, o->init, err, errlen);
    return (n->mlp = make_mlp(o, err, errlen)) != NULL;
}

static nn_mlp *make_mlp(const options *o, char *err, size_t errlen)
{
    if (o->init) return model_from_file(o, err, errlen);
    nn_mlp_cfg c = {.in = 784, .out = CLASSES, .act = (nn_act)o->act, .dtype = (ad_dtype)o->dtype, .seed = (uint64_t)o->seed, .dropout = o->dropout};
    memcpy(c.hidden, o->hidden, sizeof c.hidden);
    if (nn_mlp_check(&c, err, errlen) != AD_OK) return NULL;
    nn_mlp *m = nn_mlp_new(&c);
    if (!m) snprintf(err, errlen, "out of memory for the model");
    return m;
}

/* "784-256-128-10" */
static char *architecture(const net *n, char *buf, size_t len)
{
    if (n->cnn) {
        snprintf(buf, len, "conv 3x3 32, max pool 2, conv 3x3 64, max pool 2, 3136-128-10");
        return buf;
    }
    const nn_mlp *m = n->mlp;
    size_t k = (size_t)snprintf(buf, len, "%d", nn_mlp_config(m)->in);
    for (int i = 0; i <= nn_mlp_depth(m) && k < len; i++) k += (size_t)snprintf(buf + k, len - k, "-%d", nn_mlp_layer(m, i)->out);
    return buf;
}

/* The index of the largest of k scores of row r (the first of equal maxima). */
static int32_t argmax_row(const void *data, ad_dtype t, int64_t r, int k)
{
    int32_t best = 0;
    double bv = -INFINITY;
    for (int j = 0; j < k; j++) {
        double v = ad_data_get(data, t, r * k + j);
        if (v > bv) bv = v, best = j;
    }
    return best;
}

/* Mean cross-entropy and accuracy of the model on d (eval mode, no gradients, in chunks so
 * the graph stays small); pred (may be NULL) receives the predicted classes. */
static ad_status evaluate(net *m, ad_graph *g, const nn_dataset *d, double *loss, double *acc, int32_t *pred)
{
    bool was = ad_set_grad_enabled(g, false);
    double sum = 0;
    int64_t right = 0;
    ad_status st = AD_OK;
    for (int64_t r0 = 0; r0 < d->n && st == AD_OK; r0 += EVAL_CHUNK) {
        int64_t r1 = r0 + EVAL_CHUNK < d->n ? r0 + EVAL_CHUNK : d->n;
        ad_graph_reset(g);
        ad_node *x = ad_slice(g, ad_const_tensor(g, d->x), 0, r0, r1);
        ad_node *scores = net_forward(g, m, x, NN_EVAL);
        ad_node *ce = nn_cross_entropy(g, scores, d->labels + r0);
        if (!ce) {
            st = ad_status_of(g) ? ad_status_of(g) : AD_ERR_NULL;
            break;
        }
        sum += ad_value(ce) * (double)(r1 - r0);
        const void *s = ad_node_data(scores);
        for (int64_t r = r0; r < r1; r++) {
            int32_t c = argmax_row(s, ad_node_dtype(scores), r - r0, CLASSES);
            right += c == d->labels[r];
            if (pred) pred[r] = c;
        }
    }
    ad_set_grad_enabled(g, was);
    *loss = sum / (double)d->n;
    *acc = (double)right / (double)d->n;
    return st;
}

/* ---- training ---- */

/* What training produced: per-epoch curves (index 0: before training, for validation) and
 * the logged step losses. */
typedef struct {
    int epochs;              /* epochs run */
    int best_epoch;          /* 1-based epoch whose weights are kept (0: the last) */
    bool stopped_early;
    double *train_loss, *train_acc, *val_loss, *val_acc; /* [epochs + 1] */
    double *step_loss;
    int steps_logged;
    double seconds;
    long allocs_after_first_step;
    double gather_seconds, sum_seconds; /* --shards, --mpi: the reduction hook's time */
} history;

static void history_free(history *h)
{
    free(h->train_loss), free(h->train_acc), free(h->val_loss), free(h->val_acc), free(h->step_loss);
}

static optim *make_optimizer(const options *o, net *m, char *err, size_t errlen)
{
    optim_cfg c = optim_defaults((optim_kind)o->optimizer, o->lr);
    if (o->optimizer == OPTIM_MOMENTUM) c.momentum = o->momentum;
    return optim_new(net_params(m), net_num_params(m), &c, err, errlen);
}

static const char *optimizer_text(const options *o, char *buf, size_t len)
{
    if (o->optimizer == OPTIM_ADAM) snprintf(buf, len, "Adam lr %g", o->lr);
    else if (o->optimizer == OPTIM_GD) snprintf(buf, len, "SGD lr %g", o->lr);
    else snprintf(buf, len, "SGD lr %g momentum %g", o->lr, o->momentum);
    return buf;
}

/* The training loss, recorded once by nn_step and replayed at every step; it keeps the
 * scores (for accuracy) and the cross-entropy (the loss the curves show, without the L2
 * term). */
typedef struct {
    net *m;
    double l2;
    ad_node *scores, *ce;
} train_loss;

static ad_node *train_loss_fn(ad_graph *g, ad_node *x, const int32_t *labels, ad_node *y, void *user)
{
    train_loss *t = user;
    (void)y;
    t->scores = net_forward(g, t->m, x, NN_TRAIN);
    t->ce = nn_cross_entropy(g, t->scores, labels);
    return t->m->mlp ? nn_regularized(g, t->ce, t->m->mlp, NN_L2, t->l2, false) : t->ce;
}

/* ---- data parallel: --shards R in one process, or --mpi on R ranks ----
 *
 * Global minibatch b (from the same seeded iterator on every rank) is cut into R shards,
 * shard r being its rows r*b/R .. (r+1)*b/R.  Each shard runs the plain training step on its
 * rows alone (its own recorded nn_step) and leaves its mean gradient g_r in slot r of a
 * gathered buffer, followed by its loss and hit count.  optim_step's reduction hook gathers
 * the slots (MPI_Allgather on R ranks; nothing to do in one process) and sets the gradient to
 * w_0 g_0 + w_1 g_1 + ... with w_r = rows_r / b, summed left to right by optim_grad_sum.  The
 * same function on the same numbers in the same order: --mpi on R ranks and --shards R give
 * the same bits.  With R = 1 every w is 1 and the sum is a copy, so --shards 1 is the plain run. */

enum { SLOT_LOSS, SLOT_TOTAL, SLOT_HITS, SLOT_TAIL }; /* the doubles after a slot's gradient */

typedef struct {
    int nshards, first, last;  /* R, and the shards this process computes: [first, last) */
    int64_t full_rows, tail_rows; /* rows of a full minibatch and of an epoch's smaller last one */
    size_t grad_bytes, stride; /* a slot: the flat gradient, then SLOT_TAIL doubles */
    double *slots;             /* R slots */
    double *weights;           /* R: rows_r / b of the current minibatch */
    nn_dataset **full, **tail; /* per shard: its rows of a full and of the last minibatch */
    nn_step **steps;           /* per shard: its recorded step */
    train_loss *tl;            /* per shard: the nodes its step keeps */
    double loss, total, hits;  /* the minibatch's, after the hook: sum_r w_r loss_r, ... */
    double gather_seconds, sum_seconds; /* the hook's time in MPI_Allgather and in the sum */
} shards;

static void shards_free(shards *d)
{
    if (!d) return;
    for (int r = 0; r < d->nshards; r++) {
        if (d->full) nn_dataset_free(d->full[r]);
        if (d->tail) nn_dataset_free(d->tail[r]);
        if (d->steps) nn_step_free(d->steps[r]);
    }
    free(d->full), free(d->tail), free(d->steps), free(d->tl), free(d->weights), free(d->slots);
    free(d);
}

static int64_t shard_lo(int64_t rows, int r, int nshards) { return rows * r / nshards; }

static double *slot(const shards *d, int r) { return (double *)(void *)((char *)d->slots + (size_t)r * d->stride); }

/* One shard's rows of a minibatch of `rows` rows, or NULL when it has none. */
static bool shard_buffer(nn_dataset **out, int64_t rows, int r, int nshards, const nn_dataset *like)
{
    int64_t n = shard_lo(rows, r + 1, nshards) - shard_lo(rows, r, nshards);
    *out = NULL;
    if (n == 0) return true;
    if (!(*out = nn_dataset_new(n, like->dim, ad_tensor_dtype(like->x), 0))) return false;
    (*out)->classes = like->classes;
    return true;
}

/* The shards of this process for training m on train in minibatches of `batch`; NULL (with
 * the reason in err) when memory runs out. */
static shards *shards_new(const options *o, net *m, const nn_dataset *train, char *err, size_t errlen)
{
    shards *d = calloc(1, sizeof *d);
    if (!d) goto nomem;
    int R = d->nshards = o->mpi ? world_size : o->shards;
    d->first = o->mpi ? world_rank : 0;
    d->last = o->mpi ? world_rank + 1 : R;
    d->full_rows = o->batch < train->n ? o->batch : train->n;
    d->tail_rows = o->batch < train->n ? train->n % o->batch : 0;
    d->grad_bytes = optim_grad_bytes(net_params(m), net_num_params(m));
    d->stride = d->grad_bytes + SLOT_TAIL * sizeof(double);
    d->slots = calloc((size_t)R, d->stride);
    d->weights = calloc((size_t)R, sizeof *d->weights);
    d->full = calloc((size_t)R, sizeof *d->full);
    d->tail = calloc((size_t)R, sizeof *d->tail);
    d->steps = calloc((size_t)R, sizeof *d->steps);
    d->tl = calloc((size_t)R, sizeof *d->tl);
    if (!d->slots || !d->weights || !d->full || !d->tail || !d->steps || !d->tl) goto nomem;
    for (int r = d->first; r < d->last; r++) {
        d->tl[r] = (train_loss){m, o->l2, NULL, NULL};
        if (!shard_buffer(&d->full[r], d->full_rows, r, R, train) || !shard_buffer(&d->tail[r], d->tail_rows, r, R, train) ||
            !(d->steps[r] = nn_step_new(train_loss_fn, &d->tl[r])))
            goto nomem;
    }
    return d;
nomem:
    shards_free(d);
    snprintf(err, errlen, "out of memory for the shards");
    return NULL;
}

/* optim_step's reduction hook: gathers the R slots, sets the gradient to their weighted sum,
 * and the minibatch's loss, total loss and hits to theirs, in rank order. */
static ad_status shards_reduce(void *ctx, ad_tensor *const *params, int n, char *err, size_t errlen)
{
    shards *d = ctx;
    double t0 = progress_now();
#ifdef HAVE_MPI
    if (d->last - d->first < d->nshards) {
        /* Each rank's slot is already in place in the gathered buffer.  Bytes, not floats:
         * the ranks are copies of one program on one kind of machine. */
        int rc = MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, d->slots, (int)d->stride, MPI_BYTE, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) {
            char why[MPI_MAX_ERROR_STRING];
            int len = 0;
            MPI_Error_string(rc, why, &len);
            snprintf(err, errlen, "MPI_Allgather of %zu bytes per rank: %s", d->stride, why);
            return AD_ERR_IO;
        }
    }
#endif
    double t1 = progress_now();
    d->gather_seconds += t1 - t0;
    const double *w = d->weights;
    for (int r = 0; r < d->nshards; r++) {
        const double *t = slot(d, r) + d->grad_bytes / sizeof(double);
        d->loss = r ? d->loss + w[r] * t[SLOT_LOSS] : w[r] * t[SLOT_LOSS];
        d->total = r ? d->total + w[r] * t[SLOT_TOTAL] : w[r] * t[SLOT_TOTAL];
        d->hits = r ? d->hits + t[SLOT_HITS] : t[SLOT_HITS];
    }
    if (!isfinite(d->loss) || !isfinite(d->total)) { /* no update; the caller says why */
        snprintf(err, errlen, "the loss is not finite");
        return AD_ERR_NUMERIC;
    }
    ad_status st = optim_grad_sum(params, n, d->slots, d->nshards, d->stride, d->weights, err, errlen);
    d->sum_seconds += progress_now() - t1;
    return st;
}

/* Forward and backward of this process's shards of minibatch b (the step-th), each shard's
 * gradient and numbers left in its slot.  Returns false with the reason in err. */
static bool shards_run(shards *d, net *m, optim *opt, const nn_batch *b, int64_t step, uint64_t seed, char *err,
                       size_t errlen)
{
    int R = d->nshards;
    for (int r = 0; r < R; r++)
        d->weights[r] = (double)(shard_lo(b->rows, r + 1, R) - shard_lo(b->rows, r, R)) / (double)b->rows;
    size_t row = (size_t)ad_tensor_shape(b->x).dim[1] * ad_dtype_size(ad_tensor_dtype(b->x));
    for (int r = d->first; r < d->last; r++) {
        int64_t lo = shard_lo(b->rows, r, R), rows = shard_lo(b->rows, r + 1, R) - lo;
        double *t = slot(d, r) + d->grad_bytes / sizeof(double);
        if (rows == 0) { /* fewer rows than shards: this one weighs 0 */
            memset(slot(d, r), 0, d->stride);
            continue;
        }
        nn_dataset *buf = b->rows == d->full_rows ? d->full[r] : d->tail[r];
        memcpy(ad_tensor_data(buf->x), (const char *)ad_tensor_data(b->x) + (size_t)lo * row, (size_t)rows * row);
        nn_batch sb = {.x = buf->x, .labels = b->labels + lo, .rows = rows};
        /* Dropout masks from a stream of (seed, step, shard), whichever process computes the
         * shard; one shard keeps the plain run's stream. */
        if (m->mlp && R > 1)
            nn_mlp_reseed(m->mlp, seed ^ (uint64_t)(step + 1) * 0xD1B54A32D192ED03u ^ (uint64_t)(r + 1) * 0x9E3779B97F4A7C15u);
        optim_zero_grad(opt);
        double total;
        if (nn_step_run(d->steps[r], &sb, &total) != AD_OK) {
            snprintf(err, errlen, "shard %d: %s", r, ad_error(nn_step_graph(d->steps[r])));
            return false;
        }
        ad_node *scores = d->tl[r].scores;
        const void *s = ad_node_data(scores);
        int64_t hits = 0;
        for (int64_t k = 0; k < rows; k++) hits += argmax_row(s, ad_node_dtype(scores), k, CLASSES) == sb.labels[k];
        t[SLOT_LOSS] = ad_value(d->tl[r].ce), t[SLOT_TOTAL] = total, t[SLOT_HITS] = (double)hits;
        if (optim_grad_flatten(net_params(m), net_num_params(m), slot(d, r), d->grad_bytes, err, errlen) != AD_OK)
            return false;
    }
    return true;
}

/* Trains m on ds; returns 0 or an exit status after printing the reason. */
static int train(const options *o, net *m, const datasets *ds, history *h)
{
    char err[512];
    int status = 1;
    memset(h, 0, sizeof *h);
    size_t n = (size_t)o->epochs + 1;
    h->train_loss = calloc(n, sizeof(double)), h->train_acc = calloc(n, sizeof(double));
    h->val_loss = calloc(n, sizeof(double)), h->val_acc = calloc(n, sizeof(double));
    h->step_loss = calloc(o->log_steps ? (size_t)o->log_steps : 1, sizeof(double));
    ad_graph *g = ad_graph_new(); /* evaluation's; training has its step's */
    train_loss tl = {m, o->l2, NULL, NULL};
    nn_step *step_fn = nn_step_new(train_loss_fn, &tl);
    nn_batches *it = nn_batches_new(ds->train, o->batch, !o->no_shuffle, (uint64_t)o->seed + 1, err, sizeof err);
    optim *opt = it ? make_optimizer(o, m, err, sizeof err) : NULL;
    nn_early_stop *stop = ds->val ? nn_early_stop_new(net_params(m), o->patience, 0) : NULL;
    shards *dp = opt && (o->mpi || o->shards) ? shards_new(o, m, ds->train, err, sizeof err) : NULL;
    if (!h->train_loss || !h->train_acc || !h->val_loss || !h->val_acc || !h->step_loss || !g || !step_fn || (ds->val && !stop)) {
        fprintf(stderr, PROG ": out of memory\n");
        goto out;
    }
    if (!it || !opt || ((o->mpi || o->shards) && !dp)) {
        fprintf(stderr, PROG ": %s\n", err);
        goto out;
    }
    if (dp) optim_set_grad_reduce(opt, shards_reduce, dp);
    int64_t per_epoch = ds->train->n;
    progress p;
    progress_init(&p, world_rank ? stdout : stderr, per_epoch * o->epochs); /* a rank > 0's stdout is /dev/null */
    double t0 = progress_now();
    /* The validation loss of the initial weights: the curves' first point (and the evaluation
     * graph grows its memory now, so the loop below allocates nothing after its first step). */
    if (ds->val && evaluate(m, g, ds->val, &h->val_loss[0], &h->val_acc[0], NULL) != AD_OK) {
        fprintf(stderr, PROG ": %s\n", ad_error(g));
        goto out;
    }
    h->train_loss[0] = h->train_acc[0] = NAN;
    int64_t step = 0;
    for (int e = 1; e <= o->epochs; e++) {
        char label[48], stats[96], line[256];
        snprintf(label, sizeof label, "epoch %*d/%d", o->epochs >= 10 ? (o->epochs >= 100 ? 3 : 2) : 1, e, o->epochs);
        progress_phase(&p, label, per_epoch);
        double sum = 0;
        int64_t seen = 0, right = 0;
        nn_batch b;
        while (nn_batches_next(it, &b)) {
            double l, total;
            int64_t hits = 0;
            ad_status st = AD_OK;
            if (dp) { /* the shards' step; the hook in optim_step sums them, and their losses */
                if (!shards_run(dp, m, opt, &b, step, (uint64_t)o->seed, err, sizeof err)) {
                    progress_clear(&p);
                    fprintf(stderr, PROG ": step %lld: %s\n", (long long)step + 1, err);
                    goto out;
                }
                st = optim_step(opt);
                l = dp->loss, total = dp->total, hits = (int64_t)dp->hits;
            } else {
                optim_zero_grad(opt);
                if (nn_step_run(step_fn, &b, &total) != AD_OK) {
                    progress_clear(&p);
                    fprintf(stderr, PROG ": step %lld: %s\n", (long long)step + 1, ad_error(nn_step_graph(step_fn)));
                    goto out;
                }
                l = ad_value(tl.ce);
                const void *s = ad_node_data(tl.scores);
                for (int64_t r = 0; r < b.rows; r++) hits += argmax_row(s, ad_node_dtype(tl.scores), r, CLASSES) == b.labels[r];
            }
            if (!isfinite(l) || !isfinite(total)) {
                progress_clear(&p);
                double bad = isfinite(l) ? total : l;
                fprintf(stderr, PROG ": the loss is %s at step %lld (epoch %d): training diverged; try a smaller --lr\n",
                        isnan(bad) ? "NaN" : "infinite", (long long)step + 1, e);
                goto out;
            }
            if (dp ? st != AD_OK : optim_step(opt) != AD_OK) {
                progress_clear(&p);
                fprintf(stderr, PROG ": %s\n", optim_error(opt));
                goto out;
            }
            if (step < o->log_steps) h->step_loss[step] = l;
            if (++step == 1) h->allocs_after_first_step = ad_alloc_count();
            right += hits;
            sum += l * (double)b.rows;
            seen += b.rows;
            if (p.live) {
                snprintf(stats, sizeof stats, "loss %.4f acc %.3f", sum / (double)seen, (double)right / (double)seen);
                progress_update(&p, seen, stats);
            }
        }
        h->steps_logged = (int)(step < o->log_steps ? step : o->log_steps);
        h->epochs = e;
        h->train_loss[e] = sum / (double)seen;
        h->train_acc[e] = (double)right / (double)seen;
        double secs = progress_phase_elapsed(&p);
        int k = snprintf(line, sizeof line, "%s  loss %.4f  acc %.4f", label, h->train_loss[e], h->train_acc[e]);
        bool done = false, lr_note = false;
        if (ds->val) {
            if (evaluate(m, g, ds->val, &h->val_loss[e], &h->val_acc[e], NULL) != AD_OK) {
                progress_clear(&p);
                fprintf(stderr, PROG ": %s\n", ad_error(g));
                goto out;
            }
            done = nn_early_stop_update(stop, h->val_loss[e]);
            /* Reduce on plateau: every lr_wait epochs without a better validation loss, the
             * rate drops by lr_drop (from the next epoch on). */
            int since = e - 1 - nn_early_stop_best_epoch(stop);
            if (!done && o->lr_drop < 1 && since > 0 && since % o->lr_wait == 0) {
                optim_set_lr(opt, optim_get_cfg(opt).lr * o->lr_drop);
                lr_note = true;
            }
            k += snprintf(line + k, sizeof line - (size_t)k, "  | val loss %.4f  acc %.4f%s", h->val_loss[e], h->val_acc[e],
                          nn_early_stop_best_epoch(stop) == e - 1 ? " *" : "  ");
        }
        k += snprintf(line + k, sizeof line - (size_t)k, "  | %.1f s, %.0f samples/s", secs,
                      secs > 0 ? (double)seen / secs : 0.0);
        if (lr_note) snprintf(line + k, sizeof line - (size_t)k, "  | lr -> %g", optim_get_cfg(opt).lr);
        progress_end_phase(&p, line);
        if (done) {
            h->stopped_early = e < o->epochs;
            break;
        }
    }
    h->allocs_after_first_step = ad_alloc_count() - h->allocs_after_first_step;
    h->seconds = progress_now() - t0;
    if (dp) h->gather_seconds = dp->gather_seconds, h->sum_seconds = dp->sum_seconds;
    if (stop) {
        h->best_epoch = nn_early_stop_best_epoch(stop) + 1;
        nn_early_stop_restore(stop);
    }
    status = 0;
out:
    shards_free(dp);
    nn_early_stop_free(stop);
    optim_free(opt);
    nn_batches_free(it);
    nn_step_free(step_fn);
    ad_graph_free(g);
    return status;
}

/* ---- results ---- */

static void print_confusion(const int32_t *pred, const nn_dataset *test)
{
    int64_t cm[CLASSES * CLASSES];
    char err[256];
    if (nn_confusion_matrix(pred, test->labels, test->n, CLASSES, cm, err, sizeof err) != AD_OK) {
        fprintf(stderr, PROG ": %s\n", err);
        return;
    }
    printf("confusion matrix (rows: true class, columns: predicted class)\n");
    printf("%-15s", "");
    for (int j = 0; j < CLASSES; j++) printf("%6d", j);
    printf("  recall\n");
    for (int i = 0; i < CLASSES; i++) {
        int64_t row = 0;
        printf("%d %-13s", i, nn_fashion_mnist_class(i));
        for (int j = 0; j < CLASSES; j++) printf("%6lld", (long long)cm[i * CLASSES + j]), row += cm[i * CLASSES + j];
        printf("  %6.3f\n", row ? (double)cm[i * CLASSES + i] / (double)row : 0.0);
    }
}

static void json_array(const double *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", stdout);
        if (isfinite(v[i])) printf("%.17g", v[i]);
        else fputs("null", stdout);
    }
    putchar(']');
}

/* The accuracy picture's name: "curves.svg" -> "curves_accuracy.svg". */
static void accuracy_path(const char *path, char *out, size_t len)
{
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".svg") == 0) snprintf(out, len, "%.*s_accuracy.svg", (int)(n - 4), path);
    else snprintf(out, len, "%s_accuracy.svg", path);
}

/* The series of one picture: training and validation lines (from epoch 1), markers on them
 * when there are few epochs (unlabelled marker series of the same colours), and last a marker
 * on the epoch whose weights were kept.  Returns the number of series. */
static int curve_series(plot_series *s, const double *x, int n, const double *train, const char *train_label,
                        const double *val, int best, const char *kept)
{
    static const char *TRAIN = "#0072B2", *VAL = "#D55E00";
    int ns = 0;
    s[ns++] = (plot_series){.x = x + 1, .y = train + 1, .n = n, .label = train_label, .color = TRAIN};
    if (val) s[ns++] = (plot_series){.x = x + 1, .y = val + 1, .n = n, .label = "validation", .color = VAL};
    if (n <= 30) {
        s[ns++] = (plot_series){.x = x + 1, .y = train + 1, .n = n, .color = TRAIN, .points = true};
        if (val) s[ns++] = (plot_series){.x = x + 1, .y = val + 1, .n = n, .color = VAL, .points = true};
    }
    if (val && best > 0) s[ns++] = (plot_series){.x = x + best, .y = val + best, .n = 1, .label = kept, .color = "black", .points = true};
    return ns;
}

/* The loss and accuracy curves per epoch: training (mean over the epoch's minibatches, with
 * dropout) and validation (after the epoch).  Epoch 0, the initial weights at a loss of ~2.3,
 * is left out: it would squash the interesting range. */
static int write_curves(const options *o, const history *h, bool validation)
{
    int n = h->epochs, status = 0;
    double *x = malloc(((size_t)n + 1) * sizeof *x);
    if (!x) return fprintf(stderr, PROG ": out of memory\n"), 1;
    for (int i = 0; i <= n; i++) x[i] = i;
    char err[512], acc_file[4096], kept[64];
    snprintf(kept, sizeof kept, "kept: epoch %d", h->best_epoch);
    plot_series loss[5], acc[5];
    int nl = curve_series(loss, x, n, h->train_loss, "training (mean over the epoch, dropout on)",
                          validation ? h->val_loss : NULL, h->best_epoch, kept);
    int na = curve_series(acc, x, n, h->train_acc, "training (during the epoch, dropout on)", validation ? h->val_acc : NULL,
                          h->best_epoch, kept);
    plot_cfg lc = {.title = "Fashion-MNIST: cross-entropy loss per epoch", .xlabel = "epoch", .ylabel = "loss"};
    plot_cfg ac = {.title = "Fashion-MNIST: accuracy per epoch", .xlabel = "epoch", .ylabel = "accuracy"};
    accuracy_path(o->svg, acc_file, sizeof acc_file);
    if (plot_lines_svg(o->svg, &lc, loss, nl, err, sizeof err) != 0 || plot_lines_svg(acc_file, &ac, acc, na, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        status = 1;
    } else {
        printf("curves: %s (loss), %s (accuracy)\n", o->svg, acc_file);
    }
    free(x);
    return status;
}

/* Test accuracy and confusion matrix of m; returns 0 or an exit status. */
static int test_model(net *m, const nn_dataset *test, double *acc)
{
    int32_t *pred = malloc((size_t)test->n * sizeof *pred);
    ad_graph *g = ad_graph_new();
    double loss;
    int status = 1;
    if (!pred || !g) fprintf(stderr, PROG ": out of memory\n");
    else if (evaluate(m, g, test, &loss, acc, pred) != AD_OK) fprintf(stderr, PROG ": %s\n", ad_error(g));
    else {
        printf("test accuracy %.4f (%lld images), test loss %.4f\n", *acc, (long long)test->n, loss);
        print_confusion(pred, test);
        status = 0;
    }
    ad_graph_free(g);
    free(pred);
    return status;
}

/* The model of --eval: an MLP rebuilt from its file alone, or the CNN loaded as a state dict. */
static bool load_net(const options *o, net *n, char *err, size_t errlen)
{
    memset(n, 0, sizeof *n);
    if (CNN) { /* in the dtype the file holds */
        ad_tensor_file *f = ad_safetensors_load(o->eval, err, errlen);
        ad_tensor *w = f ? ad_tensor_file_find(f, "0.weight") : NULL;
        ad_dtype t = w ? ad_tensor_dtype(w) : AD_F32;
        ad_tensor_file_free(f);
        return f && make_cnn(n, t, 1, o->eval, err, errlen);
    }
    if (!(n->mlp = nn_mlp_load(o->eval, err, errlen))) return false;
    const nn_mlp_cfg *c = nn_mlp_config(n->mlp);
    if (c->in != 784 || c->out != CLASSES || c->task != NN_CLASSIFY) {
        snprintf(err, errlen, "%s: a model with %d inputs and %d outputs, not a Fashion-MNIST classifier (784 -> 10)",
                 o->eval, c->in, c->out);
        return false;
    }
    return true;
}

static int eval_only(const options *o)
{
    char err[1024];
    net m;
    if (!load_net(o, &m, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        net_free(&m);
        return 1;
    }
    ad_dtype dtype = m.mlp ? nn_mlp_config(m.mlp)->dtype : nn_model_dtype(m.cnn);
    datasets ds;
    int status = load_data(o, dtype, true, &ds);
    if (status) {
        net_free(&m);
        return status;
    }
    char arch[128];
    printf("model %s: %s %s%s, %s\n", o->eval, architecture(&m, arch, sizeof arch), m.mlp ? ACT_NAMES[nn_mlp_config(m.mlp)->act] : "",
           m.mlp ? " MLP" : "CNN", ad_dtype_name(dtype));
    double t0 = progress_now(), acc = NAN;
    status = test_model(&m, ds.test, &acc);
    if (!status && o->json) {
        printf("{\"test_accuracy\": %.17g, \"epochs\": 0, \"seconds\": %.3f, \"epoch_loss\": [], \"step_loss\": []}\n", acc,
               progress_now() - t0);
    }
    datasets_free(&ds);
    net_free(&m);
    return status;
}

/* Trains, tests and saves as the options say; returns the exit status. */
static int train_and_test(const options *o)
{
    char err[1024];
    int status;
    net m;
    if (!make_net(o, &m, err, sizeof err)) {
        fprintf(stderr, PROG ": %s\n", err);
        net_free(&m);
        return o->init ? 1 : 2;
    }
    datasets ds;
    if ((status = load_data(o, (ad_dtype)o->dtype, false, &ds))) {
        net_free(&m);
        return status;
    }
    char arch[128], opt[96];
    if (m.mlp)
        printf("%s %s MLP (%lld parameters), %s; %s, batch %d, dropout %g, L2 %g%s\n", architecture(&m, arch, sizeof arch),
               ACT_NAMES[o->act], (long long)net_num_param_elements(&m), ad_dtype_name((ad_dtype)o->dtype),
               optimizer_text(o, opt, sizeof opt), o->batch, o->dropout, o->l2, o->init ? ", initial weights from --init" : "");
    else
        printf("CNN: %s (%lld parameters), %s; %s, batch %d%s\n", architecture(&m, arch, sizeof arch),
               (long long)net_num_param_elements(&m), ad_dtype_name((ad_dtype)o->dtype), optimizer_text(o, opt, sizeof opt),
               o->batch, o->init ? ", initial weights from --init" : "");
    char parallel[96] = "";
    if (o->mpi) snprintf(parallel, sizeof parallel, " per rank, %d MPI rank%s", world_size, world_size == 1 ? "" : "s");
    else if (o->shards) snprintf(parallel, sizeof parallel, ", %d shard%s per minibatch", o->shards, o->shards == 1 ? "" : "s");
    printf("%lld training, %lld validation, %lld test images%s; %d thread%s%s\n", (long long)ds.train->n,
           (long long)(ds.val ? ds.val->n : 0), (long long)ds.test->n,
           o->standardize ? " (standardised)" : " (pixel/255)", ad_get_threads(), ad_get_threads() == 1 ? "" : "s", parallel);
    fflush(stdout);

    history h;
    status = train(o, &m, &ds, &h);
    double acc = NAN;
    if (!status) {
        if (ds.val)
            printf("%s %d epochs; kept the weights of epoch %d (validation loss %.4f, accuracy %.4f)\n",
                   h.stopped_early ? "stopped early after" : "ran all", h.epochs, h.best_epoch, h.val_loss[h.best_epoch],
                   h.val_acc[h.best_epoch]);
        else printf("ran all %d epochs\n", h.epochs);
        printf("training took %.1f s (%.1f s per epoch)", h.seconds, h.seconds / h.epochs);
        if (o->mpi) printf("; gradients: %.2f s in MPI_Allgather, %.2f s summed in rank order", h.gather_seconds, h.sum_seconds);
        else if (o->shards) printf("; gradients: %.2f s summed in shard order", h.sum_seconds);
        putchar('\n');
        /* the other ranks hold the same weights: rank 0 alone tests and writes */
        if (world_rank == 0) status = test_model(&m, ds.test, &acc);
    }
    if (world_rank > 0) goto out;
    if (!status && o->svg && *o->svg) status = write_curves(o, &h, ds.val != NULL);
    if (!status && o->save) {
        if ((m.mlp ? nn_mlp_save(m.mlp, o->save, err, sizeof err) : nn_model_save(m.cnn, o->save, err, sizeof err)) != AD_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            status = 1;
        } else {
            printf("model saved to %s\n", o->save);
        }
    }
    if (!status && o->json) {
        printf("{\"test_accuracy\": %.17g, \"epochs\": %d, \"seconds\": %.3f, \"epoch_loss\": ", acc, h.epochs, h.seconds);
        json_array(h.train_loss + 1, h.epochs);
        fputs(", \"step_loss\": ", stdout);
        json_array(h.step_loss, h.steps_logged);
        fputs(", \"val_loss\": ", stdout);
        json_array(h.val_loss, ds.val ? h.epochs + 1 : 0);
        fputs(", \"val_accuracy\": ", stdout);
        json_array(h.val_acc, ds.val ? h.epochs + 1 : 0);
        if (o->mpi || o->shards)
            printf(", \"gather_seconds\": %.3f, \"sum_seconds\": %.3f", h.gather_seconds, h.sum_seconds);
        printf(", \"best_epoch\": %d, \"allocations_after_first_step\": %ld}\n", h.best_epoch, h.allocs_after_first_step);
    }
out:
    history_free(&h);
    datasets_free(&ds);
    net_free(&m);
    return status;
}

#ifdef HAVE_MPI
/* Joins the MPI run: rank 0 prints, the other ranks' standard output goes to /dev/null
 * (their errors still reach stderr).  Returns 0 or an exit status. */
static int mpi_start(int *argc, char ***argv)
{
    int provided;
    /* FUNNELED: the GEMM pool's threads exist, but only this thread calls MPI (in the hook) */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, PROG ": --mpi: MPI_Init_thread failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN); /* failures come back to the hook */
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_rank > 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, PROG ": rank %d: /dev/null: %s\n", world_rank, strerror(errno));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return 0;
}

/* Leaves the MPI run: after a failure on any rank the others may wait forever in the next
 * collective, so a failed rank aborts them all. */
static int mpi_finish(int status)
{
    if (status) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
    return status;
}
#endif

int main(int argc, char **argv)
{
    options o;
    int status = parse_options(argc, argv, &o);
    if (status >= 0) return status;
    if (o.threads) ad_set_threads(o.threads);
    else if (o.mpi) ad_set_threads(1); /* R ranks on R cores: one thread each unless told */
    if (o.eval) return eval_only(&o);
#ifdef HAVE_MPI
    if (o.mpi) {
        if ((status = mpi_start(&argc, &argv))) return status;
        if (world_size > o.batch) { /* the same on every rank: rank 0 says it, none aborts */
            if (world_rank == 0)
                opts_error(&(opts_spec){.prog = PROG}, "--mpi on %d ranks with --batch %d: a full minibatch needs a row "
                                                       "for every rank", world_size, o.batch);
            MPI_Finalize();
            return 2;
        }
        return mpi_finish(train_and_test(&o));
    }
#endif
    return train_and_test(&o);
}
