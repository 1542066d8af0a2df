/*
 * nn.h — multilayer perceptrons as the lecture defines them, their losses and regularizers,
 * dropout, metrics, early stopping, and saving models as safetensors.
 *
 * Tutorial.  A classifier for 28x28 images with two hidden layers, one SGD step:
 *
 *     nn_mlp *m = nn_mlp_new(&(nn_mlp_cfg){.in = 784, .hidden = {256, 128}, .out = 10,
 *                                          .act = NN_RELU, .dtype = AD_F32, .seed = 1});
 *     ad_graph *g = ad_graph_new();
 *     ad_node *scores = nn_mlp_forward(g, m, ad_const_tensor(g, xb), NN_TRAIN);
 *     ad_node *loss = nn_cross_entropy(g, scores, labels);
 *     if (ad_backward(g, loss) != AD_OK) fprintf(stderr, "%s\n", ad_error(g));
 *     ... update nn_mlp_params(m) from their gradients (optim/), then nn_mlp_zero_grad(m) ...
 *     nn_mlp_save(m, "model.safetensors", err, sizeof err);
 *
 * The model.  z_0 = x, z_i = σ(W_i z_{i-1} + b_i) for the D hidden layers, and the output
 * f(x) = softmax(W_{D+1} z_D + b_{D+1}) for classification or W_{D+1} z_D + b_{D+1} for
 * regression.  W_i has one row per unit (k_i x k_{i-1}), as in the lecture and in PyTorch.
 * Inputs are minibatches: one instance per row, [N, in] -> [N, out].  nn_mlp_forward returns
 * the scores before the softmax, because the cross-entropy is computed from them (stably);
 * nn_mlp_probs and nn_mlp_predict apply the softmax.
 *
 * Train and eval.  NN_TRAIN draws dropout masks; NN_EVAL is deterministic and applies the
 * lecture's test-time rule (activations times 1 - p).  With inverted dropout (PyTorch's form)
 * the survivors are scaled by 1/(1 - p) while training and eval is the identity.
 *
 * Ownership.  A model owns its parameters (persistent tensors: they outlive any graph, and a
 * training loop that resets its graph every step allocates nothing after the first step).
 * Free it with nn_mlp_free.  Nodes live in the graph as usual.  Like a graph, a model is used
 * by one thread at a time (training-mode passes draw from its dropout generator).
 *
 * Errors.  Graph-building functions return NULL and record a message in the graph that names
 * the function and the shapes, like ad's ops.  Others return a status or NULL and write the
 * message into err (errlen bytes, may be NULL).  Nothing aborts, exits or prints.
 */
#ifndef NN_H
#define NN_H

#include "ad.h"

AD_BEGIN_DECLS

/* ------------------------------------------------------------------------------------------
 * Building blocks.
 */

/* Activation functions of the slides: max(0,z), max(slope z, z), 1/(1+e^-z), tanh(z). */
typedef enum { NN_RELU = 0, NN_LEAKY_RELU, NN_SIGMOID, NN_TANH } nn_act;

/* Whether a forward pass trains (dropout draws masks) or evaluates (deterministic). */
typedef enum { NN_EVAL = 0, NN_TRAIN = 1 } nn_mode;

/* Weight initialisation: NN_INIT_AUTO picks He for relu-like activations and Xavier for
 * sigmoid and tanh. */
typedef enum { NN_INIT_AUTO = 0, NN_INIT_XAVIER, NN_INIT_HE } nn_init;

/* Xavier/Glorot: fills a weight matrix [out, in] with uniform draws in ±sqrt(6/(in+out)), which
 * keeps the variance of activations and gradients about constant through tanh/sigmoid layers. */
void nn_init_xavier(ad_tensor *w, ad_rng *rng);

/* He/Kaiming: fills a weight matrix [out, in] with normal draws of variance
 * 2/((1 + slope^2) in), the variance that (leaky) relu units preserve; slope 0 for relu. */
void nn_init_he(ad_tensor *w, ad_rng *rng, double slope);

/* A fully connected layer z = x W^T + b: W [out, in] (one row per unit), b [out]. */
typedef struct {
    ad_tensor *weight; /* W [out, in], a parameter */
    ad_tensor *bias;   /* b [out], a parameter */
    int in;            /* inputs per instance */
    int out;           /* units */
} nn_linear;

/* Allocates the layer's parameters, named "<prefix>.weight" and "<prefix>.bias" (PyTorch's
 * names), W drawn by init (NN_INIT_AUTO means He with slope 0) from rng and b zero.  Returns
 * AD_OK, AD_ERR_ARG for sizes below 1 or AD_ERR_NOMEM; on failure l holds nothing. */
ad_status nn_linear_init(nn_linear *l, const char *prefix, int in, int out, ad_dtype t,
                         nn_init init, double slope, ad_rng *rng);

/* Frees the layer's parameters (l itself is the caller's); NULL is ignored. */
void nn_linear_release(nn_linear *l);

/* x [N, in] -> x W^T + b [N, out] on parameter leaves, so backward fills the layer's
 * gradients.  NULL with "nn_linear_forward: ..." recorded in g on a shape or dtype mismatch. */
ad_node *nn_linear_forward(ad_graph *g, const nn_linear *l, ad_node *x);

/* σ(x) elementwise; slope is leaky relu's (ignored by the others). */
ad_node *nn_activate(ad_graph *g, ad_node *x, nn_act act, double slope);

/* σ(x W^T + b): nn_activate(nn_linear_forward(...)) in one node (ad_linear_act), with the same
 * values and gradients bit for bit and one pass over memory fewer each way; nn_mlp_forward
 * builds its hidden layers with it.  slope is leaky relu's (> 0). */
ad_node *nn_linear_act_forward(ad_graph *g, const nn_linear *l, ad_node *x, nn_act act, double slope);

/* The dropout layer with probability p in [0, 1).  NN_TRAIN zeroes each element with
 * probability p, masks drawn from rng; NN_EVAL multiplies by 1 - p (the lecture's rule, so the
 * test-time output is the training output's expectation).  inverted: survivors are scaled by
 * 1/(1 - p) while training and eval returns x (PyTorch's form).  p = 0 returns x. */
ad_node *nn_dropout(ad_graph *g, ad_node *x, double p, bool inverted, nn_mode mode,
                    ad_rng *rng);

/* ------------------------------------------------------------------------------------------
 * Any model: a named list of parameters and buffers.
 *
 * A model owns tensors under PyTorch's state-dict names ("0.weight", "lstm.weight_ih_l0",
 * "1.running_mean"), in the order they were added: parameters, which optimizers train, and
 * buffers, which a forward pass may update (batch norm's running statistics) but no gradient
 * reaches.  Layers add their tensors with a prefix, as torch.nn modules name theirs, so a model
 * saved here is a state dict that load_state_dict takes in the equivalent torch.nn module, and
 * a state dict PyTorch saved (safetensors.torch.save_file) loads back.
 */

/* A model's tensors (opaque). */
typedef struct nn_model nn_model;

/* An empty model whose tensors will have dtype t; NULL for another dtype or without memory. */
nn_model *nn_model_new(ad_dtype t);
/* Frees the model and every tensor it holds; NULL is ignored. */
void nn_model_free(nn_model *m);
/* The dtype of the model's tensors. */
ad_dtype nn_model_dtype(const nn_model *m);
/* A new zero parameter of the model called name (copied; unique, non-empty, not
 * "__metadata__") with the given shape, or NULL (AD_ERR_ARG for a bad or repeated name, or
 * without memory) with the reason in the model's error (nn_model_error). */
ad_tensor *nn_model_param(nn_model *m, const char *name, ad_shape shape);
/* A new zero buffer: saved and loaded with the parameters, never trained. */
ad_tensor *nn_model_buffer(nn_model *m, const char *name, ad_shape shape);
/* The parameters in the order they were added, NULL-terminated: the list optimizers take
 * (valid until the next parameter is added). */
ad_tensor *const *nn_model_params(const nn_model *m);
/* Number of parameter tensors: the length of nn_model_params's list. */
int nn_model_num_params(const nn_model *m);
/* Number of tensors, parameters and buffers. */
int nn_model_count(const nn_model *m);
/* Tensor i (0 .. nn_model_count - 1) in the order added, or NULL. */
ad_tensor *nn_model_tensor(const nn_model *m, int i);
/* Whether tensor i is a parameter (false for a buffer or out of range). */
bool nn_model_is_param(const nn_model *m, int i);
/* The tensor called name, or NULL. */
ad_tensor *nn_model_find(const nn_model *m, const char *name);
/* Number of scalar parameters, as PyTorch's sum(p.numel() for p in model.parameters()). */
int64_t nn_model_num_param_elements(const nn_model *m);
/* Zeroes every parameter's gradient. */
void nn_model_zero_grad(nn_model *m);
/* Sets the metadata string key to value (both copied; a key set again is replaced), saved in
 * the file's __metadata__: where a model keeps its architecture. */
ad_status nn_model_set_meta(nn_model *m, const char *key, const char *value);
/* The metadata string under key (set or loaded), or NULL. */
const char *nn_model_meta(const nn_model *m, const char *key);
/* The message of the model's last failed call ("" if none). */
const char *nn_model_error(const nn_model *m);
/* Saves the standardisation of the inputs with the model: its per-feature mean and standard
 * deviation go into the metadata (as "backprop.scaler.mean" and "backprop.scaler.std", lists
 * of %.17g numbers, so they come back bit for bit) and not into the state dict, which stays
 * what PyTorch's module expects.  dim numbers each. */
ad_status nn_model_set_scaler(nn_model *m, int dim, const double *mean, const double *std);
/* The scaler saved with the model: fills mean and std (dim numbers each, either may be NULL)
 * and returns AD_OK, or AD_ERR_ARG if the model has none of that dim. */
ad_status nn_model_scaler(const nn_model *m, int dim, double *mean, double *std);
/* Writes the tensors under their names and the metadata (with "format": "pt") as a
 * safetensors file, atomically. */
ad_status nn_model_save(const nn_model *m, const char *path, char *err, size_t errlen);
/* Loads a state dict into the model as load_state_dict(strict=True) does: every tensor of the
 * model must be in the file with its shape, and the file may hold no other; values are
 * converted to the model's dtype (F32, F64 and I64 files load).  The file's metadata joins the
 * model's (the file's value wins for a key in both).  On any problem nothing is changed and err
 * names the file and the tensor. */
ad_status nn_model_load(nn_model *m, const char *path, char *err, size_t errlen);

/* ------------------------------------------------------------------------------------------
 * Layers of any model.  Each nn_X_add makes its tensors in the model under prefix (PyTorch's
 * attribute names after it: "<prefix>.weight"; an empty prefix gives the bare names) and
 * initialises them as torch.nn.X does (uniform in +-1/sqrt(fan_in) for weights and biases,
 * N(0, 1) for embeddings, ones and zeros for norms), drawing from rng.  They return AD_OK,
 * AD_ERR_ARG for bad sizes or AD_ERR_NOMEM, with the reason in nn_model_error.  Each forward
 * checks its input's shape and records "nn_X_forward: ..." in g on a mismatch.
 */

/* Linear(in, out) in model m: the same layer as nn_linear_init, owned by m. */
ad_status nn_linear_add(nn_model *m, nn_linear *l, const char *prefix, int in, int out, bool bias,
                        ad_rng *rng);

/* Conv2d(in, out, (kh, kw), stride, padding, dilation, groups, bias). */
typedef struct {
    ad_tensor *weight;  /* [out, in/groups, kh, kw] */
    ad_tensor *bias;    /* [out], or NULL */
    int in;             /* input channels */
    int out;            /* output channels */
    int kh;             /* kernel rows */
    int kw;             /* kernel columns */
    ad_conv_opts opts;  /* stride, padding, dilation, groups */
} nn_conv2d;
/* Conv2d's tensors in m; o may be NULL (stride 1, no padding). */
ad_status nn_conv2d_add(nn_model *m, nn_conv2d *l, const char *prefix, int in, int out, int kh,
                        int kw, const ad_conv_opts *o, bool bias, ad_rng *rng);
/* x [N, in, H, W] -> [N, out, H', W']. */
ad_node *nn_conv2d_forward(ad_graph *g, const nn_conv2d *l, ad_node *x);

/* x [N, ...] -> [N, product of the rest], as torch.nn.Flatten. */
ad_node *nn_flatten(ad_graph *g, ad_node *x);

/* LayerNorm(dim): normalises the last axis, with weight and bias [dim]. */
typedef struct {
    ad_tensor *weight; /* [dim], the scale (ones at first) */
    ad_tensor *bias;   /* [dim], the shift (zeros at first) */
    int dim;           /* the size of the normalised last axis */
    double eps;        /* added to the variance */
} nn_layer_norm;
/* LayerNorm's tensors in m (eps 1e-5 as PyTorch's default when eps is 0). */
ad_status nn_layer_norm_add(nn_model *m, nn_layer_norm *l, const char *prefix, int dim, double eps);
/* x [..., dim] -> normalised, same shape. */
ad_node *nn_layer_norm_forward(ad_graph *g, const nn_layer_norm *l, ad_node *x);

/* BatchNorm1d/2d(channels): weight, bias, and the buffers running_mean, running_var and
 * num_batches_tracked. */
typedef struct {
    ad_tensor *weight;              /* [C], the scale (ones at first) */
    ad_tensor *bias;                /* [C], the shift (zeros at first) */
    ad_tensor *running_mean;        /* [C] buffer: the mean evaluation normalises with */
    ad_tensor *running_var;         /* [C] buffer: the (unbiased) variance it uses */
    ad_tensor *num_batches_tracked; /* scalar buffer: training forwards recorded (not replays) */
    int channels;                   /* C, the size of axis 1 */
    double eps;                     /* added to the variance */
    double momentum;                /* how far a training batch moves the running statistics */
} nn_batch_norm;
/* BatchNorm's tensors in m (eps 1e-5 and momentum 0.1, PyTorch's, where given as 0). */
ad_status nn_batch_norm_add(nn_model *m, nn_batch_norm *l, const char *prefix, int channels,
                            double eps, double momentum);
/* x [N, C] or [N, C, ...]: NN_TRAIN normalises by the batch's statistics and updates the
 * running ones, when recorded and at each replay; NN_EVAL uses the running ones.  A recorded
 * training forward adds 1 to num_batches_tracked, a replay does not (with a momentum, as
 * here, PyTorch's count changes no result; it is kept for its state dict). */
ad_node *nn_batch_norm_forward(ad_graph *g, nn_batch_norm *l, ad_node *x, nn_mode mode);

/* Embedding(num, dim): a table weight [num, dim]. */
typedef struct {
    ad_tensor *weight; /* [num, dim]: row i is the vector of id i */
    int num;           /* ids 0..num-1 */
    int dim;           /* the vectors' size */
} nn_embedding;
/* Embedding's table in m, drawn from N(0, 1) as PyTorch's. */
ad_status nn_embedding_add(nn_model *m, nn_embedding *l, const char *prefix, int num, int dim,
                           ad_rng *rng);
/* ids (shape ids_shape, each in [0, num)) -> [ids_shape..., dim]. */
ad_node *nn_embedding_forward(ad_graph *g, const nn_embedding *l, ad_shape ids_shape,
                              const int64_t *ids);

/* One layer of torch.nn.RNN (tanh), LSTM or GRU, with PyTorch's parameter names
 * ("<prefix>.weight_ih_l0", weight_hh_l0, bias_ih_l0, bias_hh_l0) and gate order (LSTM:
 * input, forget, cell, output; GRU: reset, update, new). */
typedef enum { NN_RNN_TANH = 0, NN_LSTM, NN_GRU } nn_rnn_kind;
/* A recurrent layer's tensors (in an nn_model) and sizes. */
typedef struct {
    nn_rnn_kind kind;    /* RNN, LSTM or GRU: G = 1, 4 or 3 gates */
    ad_tensor *weight_ih; /* [G*hidden, in], the gates' input weights stacked in torch's order */
    ad_tensor *weight_hh; /* [G*hidden, hidden], their recurrent weights */
    ad_tensor *bias_ih;   /* [G*hidden] */
    ad_tensor *bias_hh;   /* [G*hidden] */
    int in;               /* features per step */
    int hidden;           /* the state's size */
} nn_rnn;
/* The layer's tensors in m, uniform in +-1/sqrt(hidden) as PyTorch's. */
ad_status nn_rnn_add(nn_model *m, nn_rnn *l, nn_rnn_kind kind, const char *prefix, int in,
                     int hidden, ad_rng *rng);
/* One step: x [N, in], state h [N, hidden] (and c for an LSTM; NULL states are zeros) ->
 * new h (returned) and *c_out for an LSTM. */
ad_node *nn_rnn_cell(ad_graph *g, const nn_rnn *l, ad_node *x, ad_node *h, ad_node *c,
                     ad_node **c_out);
/* The sequence loop: x [T, N, in] (time first, as PyTorch's default) -> outputs [T, N, hidden];
 * h0 and c0 [N, hidden] or NULL (zeros); the last states go to *h_last and *c_last when not
 * NULL. */
ad_node *nn_rnn_forward(ad_graph *g, const nn_rnn *l, ad_node *x, ad_node *h0, ad_node *c0,
                        ad_node **h_last, ad_node **c_last);

/* ------------------------------------------------------------------------------------------
 * The multilayer perceptron.
 */

#define NN_MAX_HIDDEN 16

/* What the output layer is for: classification (softmax over T classes) or regression
 * (T = 1 linear output, no softmax), as the lecture defines them. */
typedef enum {
    NN_CLASSIFY = 0, /* scores for T classes; probabilities by softmax */
    NN_REGRESS = 1   /* one real output */
} nn_task;

/* An MLP's architecture.  Zero-initialised fields take the defaults shown. */
typedef struct {
    int in;                     /* M, features per instance */
    int hidden[NN_MAX_HIDDEN];  /* k_1..k_D, ended by the first 0 (none: a linear model) */
    int out;                    /* T: classes (1: one logit for two classes), or outputs */
    nn_act act;                 /* σ of the hidden layers (relu) */
    double slope;               /* leaky relu's slope, in (0, 1) (0.1, the slide's) */
    nn_task task;               /* softmax output, or linear output for regression */
    ad_dtype dtype;             /* float64 or float32 (float64) */
    uint64_t seed;              /* initial weights and dropout masks derive from it */
    nn_init init;               /* (He for relu and leaky relu, Xavier otherwise) */
    double dropout;             /* p after every hidden layer, in [0, 1) (0: none) */
    double input_dropout;       /* p on the inputs (0: none) */
    bool inverted_dropout;      /* PyTorch's dropout instead of the lecture's */
} nn_mlp_cfg;

/* A multilayer perceptron: its layers' parameters and architecture (opaque). */
typedef struct nn_mlp nn_mlp;

/* Checks an architecture: AD_OK, or AD_ERR_ARG with the reason in err (the message that makes
 * nn_mlp_new return NULL, e.g. "nn_mlp_new: hidden[1] = -5: widths must be positive"). */
ad_status nn_mlp_check(const nn_mlp_cfg *cfg, char *err, size_t errlen);

/* A new model with freshly initialised weights (the same seed gives the same bits on every
 * machine), or NULL if nn_mlp_check rejects cfg or memory runs out. */
nn_mlp *nn_mlp_new(const nn_mlp_cfg *cfg);

/* Frees the model and its parameters; NULL is ignored. */
void nn_mlp_free(nn_mlp *m);

/* The architecture with defaults filled in (slope 0.1, init resolved). */
const nn_mlp_cfg *nn_mlp_config(const nn_mlp *m);

/* Number of hidden layers D, and layer i (0..D; D is the output layer), or NULL. */
int nn_mlp_depth(const nn_mlp *m);
/* Layer i of the model (0..D, D being the output layer), or NULL out of range. */
const nn_linear *nn_mlp_layer(const nn_mlp *m, int i);

/* The scores W_{D+1} z_D + b_{D+1} of a minibatch x [N, in] of the model's dtype: [N, out].
 * For classification these are the logits whose softmax is f(x); for regression they are
 * f(x).  NN_TRAIN applies dropout with masks from the model's generator.  NULL with a message
 * in g ("nn_mlp_forward: input [64,783] does not match the model's 784 inputs"). */
ad_node *nn_mlp_forward(ad_graph *g, nn_mlp *m, ad_node *x, nn_mode mode);

/* softmax of the forward scores: the lecture's f(x), class probabilities [N, out]; for a
 * classifier with one logit, sigmoid of it: the probability of class 1, [N, 1]. */
ad_node *nn_mlp_probs(ad_graph *g, nn_mlp *m, ad_node *x, nn_mode mode);

/* Evaluates the model on every row of x [N, in] (eval mode, no gradients, in chunks of rows
 * so memory stays small): out receives N x out values (class probabilities, or the outputs of
 * a regression model) and classes the N most probable classes (classification only; with one
 * logit, class 1 where its probability exceeds 1/2); either
 * may be NULL.  g may be NULL (a graph is made and freed inside) or a graph to reuse: it is
 * reset, and holds the message if something fails. */
ad_status nn_mlp_predict(ad_graph *g, nn_mlp *m, ad_tensor *x, double *out, int32_t *classes);

/* The parameters W_1, b_1, ..., W_{D+1}, b_{D+1} (owned by the model), NULL-terminated: the
 * list optimizers take.  Their names are PyTorch's for an nn.Sequential of the same layers
 * ("0.weight", "0.bias", "2.weight", ...). */
ad_tensor *const *nn_mlp_params(const nn_mlp *m);

/* Number of parameter tensors, 2(D+1). */
int nn_mlp_num_params(const nn_mlp *m);

/* Number of scalar parameters (weights and biases), as PyTorch's sum(p.numel()). */
int64_t nn_mlp_num_param_elements(const nn_mlp *m);

/* Zeroes every parameter's gradient (gradients accumulate across backward calls). */
void nn_mlp_zero_grad(nn_mlp *m);

/* Restarts the dropout masks' random stream from seed, to replay a training run. */
void nn_mlp_reseed(nn_mlp *m, uint64_t seed);

/* ------------------------------------------------------------------------------------------
 * Losses and regularizers.  Each returns a scalar node (NULL with a message in g).
 */

/* Mean over the batch of -log p(y_n | x_n) from the scores [N, T] (softmax folded in, stable
 * for any magnitude), labels N class ids in [0, T).  Scores [N, 1] are one logit z for two
 * classes (labels 0 and 1), p(1 | x) = sigmoid(z): the loss is then BCE-with-logits
 * (ad_bce_with_logits against ad_labels), as PyTorch's BCEWithLogitsLoss. */
ad_node *nn_cross_entropy(ad_graph *g, ad_node *scores, const int32_t *labels);

/* Mean of (f(x_n) - y_n)^2 and of |f(x_n) - y_n| over all elements; target may be [N] for a
 * prediction [N, 1]. */
ad_node *nn_squared_loss(ad_graph *g, ad_node *pred, ad_node *target);
/* Mean of |f(x_n) - y_n| (the lecture's absolute loss); subgradient 0 at 0. */
ad_node *nn_absolute_loss(ad_graph *g, ad_node *pred, ad_node *target);

/* The regularizers R(θ) of the slides. */
typedef enum { NN_L2 = 0, NN_L1 = 1 } nn_norm;

/* R(θ) = Σθ² (NN_L2) or Σ|θ| (NN_L1) over every weight and bias of the model ("θ_j: any model
 * parameter, that is, all weights and biases"); exclude_bias leaves the biases out. */
ad_node *nn_regularizer(ad_graph *g, const nn_mlp *m, nn_norm norm, bool exclude_bias);

/* The regularized objective L(θ) = loss + λ R(θ); λ = 0 returns loss unchanged.  Chain two
 * calls for both terms. */
ad_node *nn_regularized(ad_graph *g, ad_node *loss, const nn_mlp *m, nn_norm norm,
                        double lambda, bool exclude_bias);

/* ------------------------------------------------------------------------------------------
 * Metrics (plain numbers, no graph).
 */

/* Fraction of n predictions equal to the labels; NaN if n < 1 or an array is NULL. */
double nn_accuracy(const int32_t *pred, const int32_t *labels, int64_t n);

/* Counts into matrix[true * classes + predicted] (classes x classes, zeroed first).  AD_ERR_ARG
 * with the row in err if a label or prediction lies outside [0, classes). */
ad_status nn_confusion_matrix(const int32_t *pred, const int32_t *labels, int64_t n,
                              int classes, int64_t *matrix, char *err, size_t errlen);

/* Mean of (pred_i - target_i)^2 over n values; NaN if n < 1 or an array is NULL. */
double nn_mean_squared_error(const double *pred, const double *target, int64_t n);

/* ------------------------------------------------------------------------------------------
 * Early stopping: "split off a validation set and stop training when validation error
 * increases".
 */

typedef struct nn_early_stop nn_early_stop;

/* Watches the NULL-terminated parameter list (e.g. nn_mlp_params), keeping a copy of the best
 * values seen.  Training should stop after `patience` epochs (>= 1) without an improvement of
 * more than min_delta (>= 0).  NULL on bad arguments or if memory runs out. */
nn_early_stop *nn_early_stop_new(ad_tensor *const *params, int patience, double min_delta);

/* Records one epoch's validation loss: on an improvement, copies the parameters as the best;
 * returns true when patience has run out (a NaN loss never improves). */
bool nn_early_stop_update(nn_early_stop *e, double val_loss);

/* Copies the best parameters back into the model's (no-op before the first update). */
void nn_early_stop_restore(nn_early_stop *e);

/* The best validation loss so far (+inf before any), and the 0-based epoch that gave it
 * (-1 before any). */
double nn_early_stop_best(const nn_early_stop *e);
/* The 0-based epoch of the best validation loss (-1 before any). */
int nn_early_stop_best_epoch(const nn_early_stop *e);

/* Frees the snapshots (not the parameters, which stay the model's); NULL is ignored. */
void nn_early_stop_free(nn_early_stop *e);

/* ------------------------------------------------------------------------------------------
 * Saving and loading (safetensors; see ad_io.h).
 */

/* Writes the parameters under PyTorch's nn.Sequential names, with the architecture in the
 * metadata ("backprop.in", "backprop.hidden", ...), atomically: a failed or interrupted save
 * leaves the old file in place. */
ad_status nn_mlp_save(const nn_mlp *m, const char *path, char *err, size_t errlen);

/* Rebuilds a saved model from the file alone.  Checks that every tensor the architecture
 * needs is there with its dtype and shape, and that there are no others; NULL and a message
 * naming the file on any problem. */
nn_mlp *nn_mlp_load(const char *path, char *err, size_t errlen);

AD_END_DECLS
#endif
