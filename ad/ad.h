/*
 * ad.h — backprop's reverse-mode automatic differentiation engine.
 *
 * Tutorial.  Build a function on a graph, then sweep it backward:
 *
 *     ad_graph *g = ad_graph_new();
 *     ad_node *x = ad_var(g, "x", 2.0), *y = ad_var(g, "y", 3.0), *z = ad_var(g, "z", -2.0);
 *     ad_node *f = ad_mul(g, ad_add(g, x, y), z);               // f = z(x+y) = -10
 *     if (ad_backward(g, f) != AD_OK) fprintf(stderr, "%s\n", ad_error(g));
 *     printf("%g %g %g\n", ad_grad(x), ad_grad(y), ad_grad(z)); // -2 -2 5
 *     ad_graph_free(g);
 *
 * Modes.  ad_backward is reverse mode: one sweep gives the gradient of one output with respect
 * to every input.  ad_jvp_graph and ad_jvp are forward mode: one sweep gives the derivative of
 * every output along one direction of the inputs.  ad_jacobian_graph gives whole Jacobians by
 * either.  ad_grad_graph returns a gradient as nodes (differentiable again, any order), and
 * ad_hvp_graph and ad_hessian_graph run forward mode over it for second order.
 *
 * Model.  The graph is a define-by-run tape: every op call appends a node, so creation order
 * is a topological order and backward is one reverse walk (no recursion, no sort).  Scalars
 * are rank-0 tensors; a float64 scalar node keeps its value, gradient and local partials
 * inline, so one node per number costs a few nanoseconds.  Tensors are dense, row-major,
 * float64 (AD_F64) or float32 (AD_F32), rank 0 to AD_MAX_RANK.  Binary elementwise ops
 * broadcast like NumPy.
 *
 * Ownership.  Nodes and their tensors live in the graph's arena and die with ad_graph_reset
 * or ad_graph_free; never free a node.  Persistent tensors (ad_tensor, including parameters)
 * are the caller's: create with ad_tensor_new / ad_param_new, free with ad_tensor_free, and
 * they must outlive every graph that uses them.
 *
 * Errors.  No function aborts, exits or prints.  An op given a NULL input, bad shapes or
 * mixed dtypes returns NULL and records a message in the graph that names the op and the
 * shapes ("matmul: [64,784] x [256,784]: inner dimensions 784 and 256 differ").  Ops given
 * NULL pass NULL on, so one check at the end suffices; the first message is kept.
 *
 * Gradients accumulate: backward adds into the gradients of variables and parameters, so two
 * backward calls give twice the gradient until ad_zero_grad / ad_tensor_zero_grad.  Inner
 * nodes' gradients are recomputed by each sweep.
 *
 * Threads.  A graph belongs to one thread at a time; separate graphs may be used from
 * separate threads.  Register custom ops before graphs are used concurrently.
 */
#ifndef AD_H
#define AD_H

#include "ad_version.h"
#include "ad_alloc.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

AD_BEGIN_DECLS

/* The largest rank a tensor may have. */
#define AD_MAX_RANK 6

/* The version this library was built as ("0.1.0"), and as one number (major*10000 +
 * minor*100 + patch); compare with AD_VERSION_STRING / AD_VERSION_MAJOR of the headers a
 * program was compiled with. */
const char *ad_version(void);
/* The library's version as one number, major*10000 + minor*100 + patch. */
int ad_version_number(void);

/* Element types.  float64 is the default for exact teaching numbers and scientific gradients;
 * float32 is for training speed. */
typedef enum { AD_F64 = 0, AD_F32 = 1 } ad_dtype;

/* Status codes returned by functions that do not return a node. */
typedef enum {
    AD_OK = 0,
    AD_ERR_NULL,        /* a NULL argument or an input that already failed */
    AD_ERR_SHAPE,       /* shapes that do not fit the op */
    AD_ERR_DTYPE,       /* mixed or unsupported element types */
    AD_ERR_ARG,         /* an argument out of range (axis, probability, label, ...) */
    AD_ERR_NOMEM,       /* an allocation failed */
    AD_ERR_NO_BACKWARD, /* backward reached an op registered without a backward */
    AD_ERR_CHECK,       /* gradcheck found a mismatch */
    AD_ERR_IO,          /* reading or writing a file or stream failed */
    AD_ERR_NUMERIC,     /* anomaly mode or an optimizer found a NaN or an infinity */
    AD_ERR_NO_JVP,      /* forward mode reached an op registered without a forward rule */
    AD_NOT_CONVERGED,   /* optim_gd: max_iter updates without meeting the stopping rule */
    AD_STOPPED,         /* an optim driver's on_step callback asked to stop */
    AD_ERR_LOSS,        /* an optim loss callback failed, or backward through its graph did */
    AD_ERR_FORMAT,      /* a file does not fit what reads it (a checkpoint, another optimizer) */
    AD_ERR_RETAPE       /* a replay met a branch (ad_branch) that now goes the other way: record again */
} ad_status;
/* The name of a status: the enumerator without AD_, in lower case ("ok", "err_shape",
 * "not_converged", ...), for messages and logs; "unknown" for a value outside the enum. */
const char *ad_status_name(ad_status s);

/* A shape: rank and the size of each dimension.  AD_SHAPE(2, 3) is a 2x3 matrix,
 * AD_SHAPE0 a scalar. */
typedef struct {
    int rank;                 /* number of dimensions, 0 (a scalar) to AD_MAX_RANK */
    int64_t dim[AD_MAX_RANK]; /* size of each dimension; entries past rank are unused */
} ad_shape;
/* The shape of a scalar (rank 0). */
#define AD_SHAPE0 ((ad_shape){ .rank = 0 })
/* Counts the arguments of AD_SHAPE (internal helper). */
#define AD_NARGS_(a, b, c, d, e, f, n, ...) n
/* Counts the arguments of AD_SHAPE (internal helper). */
#define AD_NARGS(...) AD_NARGS_(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
/* A shape from its dimensions: AD_SHAPE(64, 784). */
#define AD_SHAPE(...) ((ad_shape){ .rank = AD_NARGS(__VA_ARGS__), .dim = { __VA_ARGS__ } })

/* A graph: the tape of recorded nodes and the arena that holds them (opaque). */
typedef struct ad_graph ad_graph;
/* A node of a graph: a value, its gradient, the op that made it (opaque; owned by the graph). */
typedef struct ad_node ad_node;
/* A persistent tensor or parameter, owned by the caller (opaque). */
typedef struct ad_tensor ad_tensor;

/* ------------------------------------------------------------------------------------------
 * Random numbers: xoshiro256** seeded through splitmix64, so a seed gives the same stream on
 * every machine (rand() does not).
 */
typedef struct {
    uint64_t s[4]; /* the generator's state: set it with ad_rng_seed */
} ad_rng;

/* Seeds a generator.  Every seed, 0 included, gives a distinct full-period stream. */
void ad_rng_seed(ad_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t ad_rng_next(ad_rng *r);
/* A double uniform in [0, 1) with 53 random bits. */
double ad_rng_uniform(ad_rng *r);
/* A standard normal draw (Box–Muller on two uniforms; uses log, sqrt and cos from libm). */
double ad_rng_normal(ad_rng *r);

/* ------------------------------------------------------------------------------------------
 * Shapes and dtypes.
 */

/* Number of elements of a shape (1 for a scalar), or -1 if a dimension is negative or the
 * product overflows int64. */
int64_t ad_shape_size(const ad_shape *s);
/* Writes "[2,3]" (or "[]" for a scalar) into buf, truncating to len; returns buf. */
char *ad_shape_str(const ad_shape *s, char *buf, size_t len);
/* Bytes per element of a dtype. */
size_t ad_dtype_size(ad_dtype t);
/* "float64" or "float32". */
const char *ad_dtype_name(ad_dtype t);

/* ------------------------------------------------------------------------------------------
 * Persistent tensors and parameters (owned by the caller, outside any graph).
 */

/* A new zero-filled tensor, or NULL if the shape is invalid or memory runs out. */
ad_tensor *ad_tensor_new(ad_dtype t, ad_shape shape);
/* A new tensor holding values (read as doubles, converted to the dtype); NULL on error. */
ad_tensor *ad_tensor_from(ad_dtype t, ad_shape shape, const double *values);
/* A parameter: a zero-filled tensor with a gradient buffer of the same shape, and a name used
 * by traces and dumps (copied; may be NULL).  Graph leaves made from it (ad_param) accumulate
 * their gradient into the buffer. */
ad_tensor *ad_param_new(const char *name, ad_dtype t, ad_shape shape);
/* Frees a tensor or parameter; NULL is ignored. */
void ad_tensor_free(ad_tensor *t);
/* The tensor's shape, dtype, element count and name (NULL if none). */
ad_shape ad_tensor_shape(const ad_tensor *t);
/* The tensor's element type. */
ad_dtype ad_tensor_dtype(const ad_tensor *t);
/* The tensor's number of elements. */
int64_t ad_tensor_size(const ad_tensor *t);
/* The tensor's name, NULL if none. */
const char *ad_tensor_name(const ad_tensor *t);
/* Raw row-major storage (double* or float* by dtype). */
void *ad_tensor_data(ad_tensor *t);
/* Element i of raw storage of dtype t (as from ad_tensor_data or ad_tensor_grad_data), as a double.
 * Inline, so a loop over a buffer costs a branch the compiler hoists, not a call per element. */
static inline double ad_data_get(const void *p, ad_dtype t, int64_t i)
{
    return t == AD_F64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}
/* Stores v as element i of raw storage of dtype t (rounded to float for AD_F32). */
static inline void ad_data_set(void *p, ad_dtype t, int64_t i, double v)
{
    if (t == AD_F64) ((double *)p)[i] = v; else ((float *)p)[i] = (float)v;
}
/* Raw gradient storage of a parameter, NULL for a plain tensor.  A gradient zeroed by
 * ad_tensor_zero_grad is zeroed for real here if no backward has written it since, so this
 * call may write the buffer: like any use of a parameter, keep it out of races with other
 * threads using the same parameter. */
void *ad_tensor_grad_data(ad_tensor *t);
/* Element i (row-major flat index) of the value or of the gradient, as a double. */
double ad_tensor_get(const ad_tensor *t, int64_t i);
/* Element i of a parameter's gradient as a double (NaN without a gradient buffer). */
double ad_tensor_grad_get(const ad_tensor *t, int64_t i);
/* Sets element i of the value. */
void ad_tensor_set(ad_tensor *t, int64_t i, double v);
/* Copies all values out as doubles (out holds ad_tensor_size elements). */
void ad_tensor_read(const ad_tensor *t, double *out);
/* Sets every element to v. */
void ad_tensor_fill(ad_tensor *t, double v);
/* Fills with uniform draws in [lo, hi) from rng. */
void ad_tensor_rand_uniform(ad_tensor *t, ad_rng *rng, double lo, double hi);
/* Fills with normal draws N(mean, std^2) from rng. */
void ad_tensor_rand_normal(ad_tensor *t, ad_rng *rng, double mean, double std);
/* Copies src's values into dst of the same shape, converting between dtypes if they differ;
 * AD_ERR_SHAPE (nothing copied) if the shapes differ.  Gradients are not copied. */
ad_status ad_tensor_copy(ad_tensor *dst, const ad_tensor *src);
/* Zeroes a parameter's gradient (no-op for a plain tensor).  It only marks the buffer: the
 * next backward overwrites it instead of adding to it, and ad_tensor_grad_data and
 * ad_tensor_grad_get read zeros until then, so zeroing costs no pass over memory. */
void ad_tensor_zero_grad(ad_tensor *t);

/* What ad_backward hands a parameter's gradient to (ad_param_set_grad_ready): the block of
 * rows x cols elements of p's gradient starting at flat element `offset`, rows `ld` elements
 * apart, whose values are final for this sweep. */
typedef void (*ad_grad_ready_fn)(void *ctx, ad_tensor *p, int64_t offset, int64_t ld,
                                 int64_t rows, int64_t cols);
/* Asks the backward sweep to call fn on p's gradient block by block as it finishes it, while
 * the block is still in cache, so an optimizer can update p in the same pass instead of
 * reading the whole gradient again afterwards (optim_fuse does this).  The sweep hands the
 * gradient only when it is safe to change p's values at once: p is in the graph as one
 * parameter node with one consumer, that consumer is a linear layer (ad_linear, ad_linear_act)
 * whose sweep has read p's values for the last time, and the gradient was zeroed before the
 * sweep (so the blocks are the whole gradient, not a sum with an older one).  Otherwise it
 * writes the gradient as usual and calls nothing.  fn may run on several pool threads at once,
 * on disjoint blocks.  fn NULL removes the request.  Clones (ad_graph_clone) never hand. */
void ad_param_set_grad_ready(ad_tensor *p, ad_grad_ready_fn fn, void *ctx);
/* Whether a sweep handed p's whole gradient to its ready function since the last call, and
 * clears the mark: 1 if it did, 0 if not, -1 if it did and a later sweep then added to the
 * gradient (the ready function saw only the first sweep's part). */
int ad_param_take_grad_handed(ad_tensor *p);

/* ------------------------------------------------------------------------------------------
 * Graphs.
 */

/* Memory statistics of a graph's arena, to check that a training loop allocates nothing after
 * its first step: `mallocs` only grows when the arena needs a new block. */
typedef struct {
    uint64_t mallocs;       /* blocks allocated from the system since ad_graph_new */
    uint64_t bytes_reserved;/* bytes held by the arena */
    uint64_t bytes_used;    /* bytes handed out since the last reset */
    uint64_t nodes;         /* nodes recorded since the last reset */
} ad_graph_stats;

/* A new empty graph, or NULL if memory runs out. */
ad_graph *ad_graph_new(void);
/* Frees the graph, its nodes and their tensors; NULL is ignored. */
void ad_graph_free(ad_graph *g);
/* Forgets every node and clears the error but keeps the arena's memory, so the next
 * iteration of a loop records into memory it already has.  The no-grad and anomaly settings
 * stay as they were.  Nodes from before the reset must not be used: ops refuse one whose slot
 * no new node has taken yet (AD_ERR_ARG), but one whose slot was reused is that new node.  An
 * arena that the last graph outgrew is made one block of that graph's size plus a quarter. */
void ad_graph_reset(ad_graph *g);
/* The arena's statistics. */
ad_graph_stats ad_graph_get_stats(const ad_graph *g);
/* The first error recorded since the last reset or ad_clear_error, or NULL if none. */
const char *ad_error(const ad_graph *g);
/* The status of that first error (AD_OK if none). */
ad_status ad_status_of(const ad_graph *g);
/* Forgets the recorded error. */
void ad_clear_error(ad_graph *g);
/* No-grad mode: while on, ops compute values but record no backward information and their
 * outputs need no gradient (for evaluation).  Returns the previous setting. */
bool ad_set_grad_enabled(ad_graph *g, bool enabled);

/* Anomaly mode: while on, every op checks its output and every backward step the gradients
 * it produced for NaN and infinity; the first op that produced one fails with AD_ERR_NUMERIC
 * and a message naming it, its inputs' shapes and ranges (and the upstream gradient's, in
 * backward).  Off by default; costs one test per op when off.  Returns the previous setting. */
bool ad_set_anomaly(ad_graph *g, bool on);

/* ------------------------------------------------------------------------------------------
 * Leaves.
 */

/* A named float64 scalar variable (the name is copied; may be NULL).  Its gradient
 * accumulates across backward calls until ad_zero_grad. */
ad_node *ad_var(ad_graph *g, const char *name, double value);
/* A named tensor variable holding a copy of data (doubles, converted to dtype). */
ad_node *ad_var_array(ad_graph *g, const char *name, ad_dtype t, ad_shape shape,
                      const double *data);
/* A float64 scalar constant: it needs no gradient. */
ad_node *ad_const_scalar(ad_graph *g, double value);
/* A tensor constant holding a copy of data (doubles, converted to dtype); data NULL gives
 * zeros. */
ad_node *ad_const(ad_graph *g, ad_dtype t, ad_shape shape, const double *data);
/* A constant that views a persistent tensor's storage without copying (the tensor must not
 * change until the graph is reset). */
ad_node *ad_const_tensor(ad_graph *g, ad_tensor *t);
/* A constant filled with v. */
ad_node *ad_full(ad_graph *g, ad_dtype t, ad_shape shape, double v);
/* A constant of uniform [lo, hi) draws from rng. */
ad_node *ad_rand_uniform(ad_graph *g, ad_dtype t, ad_shape shape, ad_rng *rng,
                         double lo, double hi);
/* A constant of normal N(mean, std^2) draws from rng. */
ad_node *ad_rand_normal(ad_graph *g, ad_dtype t, ad_shape shape, ad_rng *rng,
                        double mean, double std);
/* A leaf that views a parameter's storage; backward accumulates into the parameter's
 * gradient buffer.  A plain tensor (no gradient buffer) gives a constant. */
ad_node *ad_param(ad_graph *g, ad_tensor *p);
/* The first leaf of g made by ad_param for parameter p, or NULL: the node to take Hessians or
 * gradient graphs with respect to when a model's forward (nn_mlp_forward) made the leaves. */
ad_node *ad_param_node(const ad_graph *g, const ad_tensor *p);

/* ------------------------------------------------------------------------------------------
 * Reading nodes.
 */

/* The value of a scalar node (element 0 of a tensor node); NaN for NULL. */
double ad_value(const ad_node *n);
/* The gradient of a scalar node (element 0 of a tensor node's gradient); 0 if the node
 * received no gradient; NaN for NULL. */
double ad_grad(const ad_node *n);
/* Element i of any node's value, as a double (NaN out of range). */
double ad_node_get(const ad_node *n, int64_t i);
/* Element i of a node's gradient as a double (0 if it received none; NaN out of range). */
double ad_node_grad_get(const ad_node *n, int64_t i);
/* Shape, dtype, element count, name (NULL if none) and creation index of a node. */
ad_shape ad_node_shape(const ad_node *n);
/* A node's element type. */
ad_dtype ad_node_dtype(const ad_node *n);
/* A node's number of elements (1 for a scalar). */
int64_t ad_node_size(const ad_node *n);
/* A node's name, NULL if none. */
const char *ad_node_name(const ad_node *n);
/* A node's creation index in its graph (traces print it after a hash sign). */
uint32_t ad_node_id(const ad_node *n);
/* The op that made the node: its name ("add", "var", "const", "param", ...) and inputs. */
const char *ad_node_op_name(const ad_node *n);
/* The registry id of the op that made the node. */
int ad_node_op(const ad_node *n);
/* How many inputs the node's op took. */
int ad_node_num_inputs(const ad_node *n);
/* Input i of the node, NULL out of range. */
ad_node *ad_node_input(const ad_node *n, int i);
/* Whether backward will compute a gradient for the node. */
bool ad_node_needs_grad(const ad_node *n);
/* Raw value storage of a node (double* or float* by dtype). */
void *ad_node_data(ad_node *n);
/* Raw gradient storage, NULL if the node has received no gradient. */
void *ad_node_grad_data(ad_node *n);
/* Number of nodes recorded, and node number i in creation order (NULL if out of range). */
uint32_t ad_graph_num_nodes(const ad_graph *g);
/* Node number i in creation order, NULL out of range. */
ad_node *ad_graph_node(const ad_graph *g, uint32_t i);
/* How many times node n is used as an input by nodes up to and including root (the fan-out
 * that makes it a copy node when > 1).  Counts over the whole graph; O(nodes). */
int ad_node_uses(const ad_graph *g, const ad_node *n, const ad_node *root);
/* The local partial derivatives a float64 scalar node recorded (d out / d input i), or NaN
 * if it recorded none (tensor nodes, leaves). */
double ad_node_local_grad(const ad_node *n, int i);

/* ------------------------------------------------------------------------------------------
 * Elementwise ops.  Binary ones broadcast like NumPy; inputs must share a dtype.  Each is one
 * row of ad_ew.h, which holds its formulas: value, derivative, second derivative.
 */
/* a + b, broadcasting. */
ad_node *ad_add(ad_graph *g, ad_node *a, ad_node *b);
/* a - b, broadcasting. */
ad_node *ad_sub(ad_graph *g, ad_node *a, ad_node *b);
/* a * b elementwise, broadcasting. */
ad_node *ad_mul(ad_graph *g, ad_node *a, ad_node *b);
/* a / b elementwise, broadcasting. */
ad_node *ad_div(ad_graph *g, ad_node *a, ad_node *b);
/* a^b.  d/db uses log(a) and is taken as 0 where a <= 0 (the real power is not differentiable
 * in b there). */
ad_node *ad_pow(ad_graph *g, ad_node *a, ad_node *b);
/* Elementwise max/min.  On ties the gradient is split evenly between the two inputs. */
ad_node *ad_max(ad_graph *g, ad_node *a, ad_node *b);
/* Elementwise min(a, b); ties split the gradient evenly. */
ad_node *ad_min(ad_graph *g, ad_node *a, ad_node *b);
/* Comparisons, elementwise with broadcasting: 1 where a < b (<=, >, >=, ==, !=) holds and 0
 * where it does not, in the inputs' dtype; NaN compares false except under ad_ne.  Their
 * derivative is 0.  They are recorded like any op, so a replay (ad_replay) decides them again at
 * the new values: use them as the condition of ad_where, or read one with ad_branch to steer C
 * code. */
ad_node *ad_lt(ad_graph *g, ad_node *a, ad_node *b);
/* 1 where a <= b, else 0 (see ad_lt). */
ad_node *ad_le(ad_graph *g, ad_node *a, ad_node *b);
/* 1 where a > b, else 0 (see ad_lt). */
ad_node *ad_gt(ad_graph *g, ad_node *a, ad_node *b);
/* 1 where a >= b, else 0 (see ad_lt). */
ad_node *ad_ge(ad_graph *g, ad_node *a, ad_node *b);
/* 1 where a == b, else 0 (see ad_lt). */
ad_node *ad_eq(ad_graph *g, ad_node *a, ad_node *b);
/* 1 where a != b (and where either is NaN), else 0 (see ad_lt). */
ad_node *ad_ne(ad_graph *g, ad_node *a, ad_node *b);
/* Elementwise select, PyTorch's torch.where: a where cond is nonzero, b where it is 0, with
 * cond, a and b broadcast together (NumPy's rules), all three of one dtype (a comparison's
 * output has its inputs').  The value of the side not chosen never reaches the output (a NaN
 * there stays out, as it would not through cond*a + (1-cond)*b).  The gradient goes to a where
 * cond holds and to b elsewhere, none to cond; as with torch.where, an infinite derivative on
 * the side not chosen still gives 0 * inf = NaN upstream, so guard that side's input.  CppAD's
 * CondExp: the choice is an op, and a replay makes it again at the new values. */
ad_node *ad_where(ad_graph *g, ad_node *cond, ad_node *a, ad_node *b);
/* -x. */
ad_node *ad_neg(ad_graph *g, ad_node *a);
/* 1/x, the slides' reciprocal gate. */
ad_node *ad_recip(ad_graph *g, ad_node *a);
/* e^x. */
ad_node *ad_exp(ad_graph *g, ad_node *a);
/* The natural logarithm (-inf at 0, NaN below). */
ad_node *ad_log(ad_graph *g, ad_node *a);
/* The square root (its derivative is infinite at 0). */
ad_node *ad_sqrt(ad_graph *g, ad_node *a);
/* sin(x). */
ad_node *ad_sin(ad_graph *g, ad_node *a);
/* cos(x). */
ad_node *ad_cos(ad_graph *g, ad_node *a);
/* tan(x). */
ad_node *ad_tan(ad_graph *g, ad_node *a);
/* tanh(x). */
ad_node *ad_tanh(ad_graph *g, ad_node *a);
/* 1/(1+e^-x), computed without overflow for any x. */
ad_node *ad_sigmoid(ad_graph *g, ad_node *a);
/* max(0, x); the subgradient at 0 is 0. */
ad_node *ad_relu(ad_graph *g, ad_node *a);
/* x for x > 0, slope*x otherwise; the subgradient at 0 is slope. */
ad_node *ad_leaky_relu(ad_graph *g, ad_node *a, double slope);
/* |x|; the subgradient at 0 is 0. */
ad_node *ad_abs(ad_graph *g, ad_node *a);
/* x^2, one node (cheaper than ad_mul(x, x) in forward mode and in pictures). */
ad_node *ad_square(ad_graph *g, ad_node *a);
/* log(1 + e^x), as PyTorch's softplus (x itself above 20, where the two agree in float64). */
ad_node *ad_softplus(ad_graph *g, ad_node *a);
/* x * sigmoid(x), PyTorch's silu (swish). */
ad_node *ad_silu(ad_graph *g, ad_node *a);
/* x * Phi(x) with Phi the standard normal distribution function (PyTorch's gelu, the exact
 * erf form). */
ad_node *ad_gelu(ad_graph *g, ad_node *a);
/* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's gelu(approximate='tanh'). */
ad_node *ad_gelu_tanh(ad_graph *g, ad_node *a);
/* log(1 + x), accurate for small x. */
ad_node *ad_log1p(ad_graph *g, ad_node *a);
/* e^x - 1, accurate for small x. */
ad_node *ad_expm1(ad_graph *g, ad_node *a);
/* The error function. */
ad_node *ad_erf(ad_graph *g, ad_node *a);
/* Conveniences: a + c, a * c, c - a and a^c with a scalar constant c (one node each plus the
 * constant's leaf). */
ad_node *ad_add_scalar(ad_graph *g, ad_node *a, double c);
/* a * c with a scalar constant c of a's dtype. */
ad_node *ad_mul_scalar(ad_graph *g, ad_node *a, double c);
/* a^c with a scalar constant c of a's dtype. */
ad_node *ad_pow_scalar(ad_graph *g, ad_node *a, double c);

/* ------------------------------------------------------------------------------------------
 * Reductions, shapes, matrices.
 */

/* Sum or mean of all elements (a scalar), or along axis (negative counts from the end),
 * keeping that axis as size 1 when keepdim. */
ad_node *ad_sum(ad_graph *g, ad_node *a);
/* The mean of all elements, a scalar. */
ad_node *ad_mean(ad_graph *g, ad_node *a);
/* The sum along one axis (keepdim keeps it as size 1). */
ad_node *ad_sum_axis(ad_graph *g, ad_node *a, int axis, bool keepdim);
/* The mean along one axis (keepdim keeps it as size 1). */
ad_node *ad_mean_axis(ad_graph *g, ad_node *a, int axis, bool keepdim);
/* Matrix product with NumPy's rules, as torch.matmul: [m,k] x [k,n] -> [m,n]; a 1-D operand
 * is a row on the left or a column on the right whose axis the output drops ([k] x [k] is the
 * dot product, a scalar); the axes before the last two are batch axes, which broadcast
 * ([2,1,m,k] x [5,k,n] -> [2,5,m,n]).  A broadcast operand's gradient is summed over the batch. */
ad_node *ad_matmul(ad_graph *g, ad_node *a, ad_node *b);
/* The linear layer x W^T + b: x [N,in], W [out,in] (rows are units, as the lecture and
 * PyTorch store them), b [out] or NULL; gives [N,out].  Fused: no transpose is formed and the
 * bias is added in the same pass. */
ad_node *ad_linear(ad_graph *g, ad_node *x, ad_node *w, ad_node *b);

/* Activations that ad_linear_act applies in the same node. */
typedef enum {
    AD_ACT_NONE = 0,   /* x W^T + b, as ad_linear */
    AD_ACT_RELU,       /* max(0, .) */
    AD_ACT_LEAKY_RELU, /* slope * . below 0 */
    AD_ACT_SIGMOID,
    AD_ACT_TANH
} ad_act;

/* act(x W^T + b) in one node, with the values and gradients of ad_relu(ad_linear(...)) and
 * the others bit for bit, at the cost of ad_linear alone: the activation runs on each block of
 * the product while it is still in cache, and its derivative is taken from the output (so no
 * pre-activation buffer is kept).  slope is leaky ReLU's, > 0 (ignored otherwise).  The node
 * shows as "linear" in traces, with the activation's name after it. */
ad_node *ad_linear_act(ad_graph *g, ad_node *x, ad_node *w, ad_node *b, ad_act act, double slope);
/* Swaps the last two axes (rank >= 2). */
ad_node *ad_transpose(ad_graph *g, ad_node *a);
/* Same elements, new shape of the same size. */
ad_node *ad_reshape(ad_graph *g, ad_node *a, ad_shape shape);
/* Broadcasts to shape by NumPy rules; its backward sums over the broadcast axes. */
ad_node *ad_broadcast_to(ad_graph *g, ad_node *a, ad_shape shape);
/* Elements start..end-1 along axis (negative axis counts from the end). */
ad_node *ad_slice(ad_graph *g, ad_node *a, int axis, int64_t start, int64_t end);
/* Joins k nodes of equal shape but along axis. */
ad_node *ad_concat(ad_graph *g, ad_node *const *xs, int k, int axis);
/* Joins k nodes of one shape along a new axis (negative counts from the end of the output's
 * axes), as torch.stack: k scalars give a vector [k]. */
ad_node *ad_stack(ad_graph *g, ad_node *const *xs, int k, int axis);
/* The axes reordered: output axis i is input axis perm[i] (perm holds each of 0..rank-1 once;
 * negative entries count from the end), as torch.permute. */
ad_node *ad_permute(ad_graph *g, ad_node *a, const int *perm);
/* Elements start, start+step, ... below end along axis, as Python's a[start:end:step] with
 * step >= 1 (start and end already clamped to [0, n]); step 1 is ad_slice. */
ad_node *ad_slice_step(ad_graph *g, ad_node *a, int axis, int64_t start, int64_t end, int64_t step);
/* The same values with no gradient: nothing flows back through it (torch's detach,
 * JAX's stop_gradient). */
ad_node *ad_detach(ad_graph *g, ad_node *a);

/* ------------------------------------------------------------------------------------------
 * Indexing.  Indices are int64 (PyTorch's), copied into the node, and checked: one outside
 * [-n, n) along its axis is refused with the op's name, the index and the shape.  Negative
 * indices count from the end.  ad_node_set_arg gives a recorded node new indices (an
 * ad_index of the same count) for a replay.
 */

/* A list of n indices, the argument ad_node_set_arg takes for the indexing ops. */
typedef struct {
    const int64_t *index; /* the indices, copied by the op (NULL only when n is 0) */
    int64_t n;            /* how many: the count the node was recorded with */
} ad_index;

/* The slices index[0..n-1] of a along axis, as torch.index_select: the output has a's shape
 * with n along axis.  The reverse rule adds each slice's gradient back where it came from
 * (repeated indices accumulate). */
ad_node *ad_index_select(ad_graph *g, ad_node *a, int axis, const int64_t *index, int64_t n);
/* torch.gather(a, axis, index): the output has index's shape (index_shape, of a's rank, no
 * larger than a along the other axes) and out[i..k..] = a[i..index[i..k..]..] with the index
 * replacing the position along axis.  The reverse rule is scatter-add. */
ad_node *ad_gather(ad_graph *g, ad_node *a, int axis, ad_shape index_shape, const int64_t *index);
/* Rows of an embedding table weight [num, dim] for ids of any shape: the output has the ids'
 * shape with dim appended, as torch.nn.functional.embedding. */
ad_node *ad_embedding(ad_graph *g, ad_node *weight, ad_shape ids_shape, const int64_t *ids);

/* ------------------------------------------------------------------------------------------
 * Reductions along an axis (negative counts from the end; keepdim keeps it as size 1).
 */

/* The largest element along axis, as torch.max(a, dim).values: its gradient goes to the one
 * element argmax reports (torch.amax would split it among ties).  A NaN along the axis is the
 * result, as in PyTorch.  An empty axis is refused. */
ad_node *ad_max_axis(ad_graph *g, ad_node *a, int axis, bool keepdim);
/* The smallest element along axis; its gradient goes to the element argmin reports. */
ad_node *ad_min_axis(ad_graph *g, ad_node *a, int axis, bool keepdim);
/* The index of the largest element along axis (the first among equals, and the first NaN if
 * any, as PyTorch), as a value of a's dtype; a condition, not a quantity: it carries no
 * gradient. */
ad_node *ad_argmax(ad_graph *g, ad_node *a, int axis, bool keepdim);
/* The index of the smallest element along axis (the first among equals); no gradient. */
ad_node *ad_argmin(ad_graph *g, ad_node *a, int axis, bool keepdim);
/* log(sum(exp(a))) along axis, stable for any magnitude (the maximum taken out first): -inf
 * for a lane of -inf (or an empty axis), +inf with a +inf in it, as torch.logsumexp. */
ad_node *ad_logsumexp(ad_graph *g, ad_node *a, int axis, bool keepdim);

/* ------------------------------------------------------------------------------------------
 * Convolution and pooling, NCHW as PyTorch.
 */

/* A convolution's or pooling's geometry per spatial axis (rows, then columns).  Zero fields
 * take the defaults: stride 1 (a pool's kernel size), padding 0, dilation 1, groups 1. */
typedef struct {
    int stride[2];   /* step between windows (a pool's default: its kernel) */
    int padding[2];  /* zeros (max pooling: -inf) added on both sides; a pool's at most half its kernel */
    int dilation[2]; /* step between a window's taps */
    int groups;      /* convolution only: channels split into groups convolved apart */
} ad_conv_opts;

/* torch.nn.functional.conv2d: x [N, C, H, W], w [O, C/groups, KH, KW], b [O] or NULL, gives
 * [N, O, (H + 2 pad - dil (KH - 1) - 1) / stride + 1, ...].  o may be NULL (defaults). */
ad_node *ad_conv2d(ad_graph *g, ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);
/* torch.nn.functional.conv1d: x [N, C, L], w [O, C/groups, K], b [O] or NULL; o's first
 * entries give the one axis's geometry. */
ad_node *ad_conv1d(ad_graph *g, ad_node *x, ad_node *w, ad_node *b, const ad_conv_opts *o);
/* Max pooling over KH x KW windows of x [N, C, H, W] (padding counts as -inf), as
 * torch.nn.functional.max_pool2d; the gradient goes to the first largest element of each
 * window.  o's dilation applies; its groups are ignored. */
ad_node *ad_max_pool2d(ad_graph *g, ad_node *x, int kh, int kw, const ad_conv_opts *o);
/* Average pooling, as torch.nn.functional.avg_pool2d with count_include_pad (padding counts
 * as zeros in the mean). */
ad_node *ad_avg_pool2d(ad_graph *g, ad_node *x, int kh, int kw, const ad_conv_opts *o);

/* ------------------------------------------------------------------------------------------
 * Normalisation.
 */

/* torch.nn.functional.layer_norm over the last `axes` axes of x: (x - mean) / sqrt(var + eps)
 * with the biased variance, times weight plus bias (both of the normalised axes' shape, or
 * NULL). */
ad_node *ad_layer_norm(ad_graph *g, ad_node *x, int axes, ad_node *weight, ad_node *bias,
                       double eps);
/* torch.nn.functional.batch_norm over the channel axis 1 of x [N, C, ...].  Training: each
 * channel is normalised by its batch mean and biased variance, and running_mean and
 * running_var (tensors [C] of x's dtype, or NULL) move toward the batch's mean and unbiased
 * variance by momentum, when the node is recorded and at each replay (once per forward pass),
 * so ad_graph_clone refuses such a graph: every copy would write the same tensors.  Evaluation
 * (training false): the running statistics, read as views at each replay, normalise, and the
 * op is affine in x.  weight and bias [C] or NULL.  Training needs more than one value per
 * channel; momentum is in [0, 1], eps >= 0. */
ad_node *ad_batch_norm(ad_graph *g, ad_node *x, ad_node *weight, ad_node *bias,
                       ad_tensor *running_mean, ad_tensor *running_var, bool training,
                       double momentum, double eps);

/* ------------------------------------------------------------------------------------------
 * Softmax, losses, dropout.
 */

/* softmax and log_softmax along axis, stable for any magnitude (max subtracted first). */
ad_node *ad_softmax(ad_graph *g, ad_node *a, int axis);
/* log(softmax(x)) along axis, computed as x - logsumexp(x) (stable). */
ad_node *ad_log_softmax(ad_graph *g, ad_node *a, int axis);
/* Mean over rows of -log softmax(logits)[label]: logits [N,C], labels N ints in [0,C).  Fused
 * and stable (logits of +-1000 give finite results); labels are copied. */
ad_node *ad_cross_entropy(ad_graph *g, ad_node *logits, const int32_t *labels);
/* Mean squared error and mean absolute error over all elements of equal-shaped inputs;
 * |.|'s subgradient at 0 is 0. */
ad_node *ad_mse(ad_graph *g, ad_node *pred, ad_node *target);
/* Mean absolute error, mean |pred - target| (subgradient 0 at 0). */
ad_node *ad_mae(ad_graph *g, ad_node *pred, ad_node *target);
/* Mean over all elements of the binary cross-entropy of sigmoid(logits) against targets in
 * [0, 1] (same shape), computed from the logits stably, as
 * torch.nn.functional.binary_cross_entropy_with_logits: max(z, 0) - z t + log(1 + e^-|z|). */
ad_node *ad_bce_with_logits(ad_graph *g, ad_node *logits, ad_node *target);
/* A batch's class labels (each in [0, classes)) as a column [N, 1] of values in like's dtype,
 * like being the [N, ...] scores they label: the target node of the losses that take one, such
 * as ad_bce_with_logits for a classifier with one logit.  No gradient.  The labels are copied,
 * and ad_node_set_arg gives the node a new batch's labels for a replay (nn_step does). */
ad_node *ad_labels(ad_graph *g, ad_node *like, int classes, const int32_t *labels);
/* Zeroes each element with probability p (a Bernoulli mask from rng, kept for backward).
 * The lecture's form leaves survivors unscaled (scale activations by 1-p at test time);
 * inverted scales survivors by 1/(1-p) (PyTorch's form, identity at test time).  p in [0,1).
 * The node keeps rng and draws a new mask from it at each ad_replay, so rng must outlive the
 * node's replays (or be replaced with ad_node_set_arg). */
ad_node *ad_dropout(ad_graph *g, ad_node *a, double p, bool inverted, ad_rng *rng);

/* ------------------------------------------------------------------------------------------
 * Backward.
 */

/* Sweeps backward from a root holding one element, seeding its gradient with 1.  Only the
 * nodes the root depends on are swept, and each passes its gradient on as IEEE arithmetic
 * says, even a gradient of 0: at a point where an op's derivative is infinite, 0 * inf is NaN
 * (relu(log(x)) at x = 0 has gradient NaN, as in PyTorch, on every path).  A NaN input makes
 * relu, leaky_relu, abs, max and min NaN, with PyTorch's derivatives there (docs/design.md,
 * "Subgradients").
 * The root and every input must be nodes of g made since its last reset: a node of another
 * graph, or from before ad_graph_reset, is refused with AD_ERR_ARG. */
ad_status ad_backward(ad_graph *g, ad_node *root);
/* Sweeps backward from any root with a seed gradient of the root's size (doubles). */
ad_status ad_backward_seed(ad_graph *g, ad_node *root, const double *seed);
/* Zeroes the gradients of the graph's variables (parameters keep theirs: see
 * ad_tensor_zero_grad; a workspace's parameter gradients are its own, and zeroed too). */
void ad_zero_grad(ad_graph *g);

/* ------------------------------------------------------------------------------------------
 * Record once, evaluate many.  A recorded graph is a program: ad_replay runs it again at new
 * leaf values, with no new node and, after the first replay, no allocation, and gives the same
 * bits as recording again at those values.  Backward sweeps, forward mode (ad_jvp_graph),
 * gradient graphs (ad_grad_graph, built once and replayed with the rest) and the scalar HVP
 * all work on the replayed values.  What a replay cannot see is a plain C `if` on a value
 * (`if (ad_value(x) > 0)`): the recording holds the branch taken.  Write the choice as an op
 * (ad_where with a comparison), which a replay decides again, or read the condition with
 * ad_branch, which records the outcome and makes a replay that would go the other way fail
 * with AD_ERR_RETAPE.  docs/design.md, "Replay", says what a replay keeps and what it redoes.
 */

/* Re-evaluates every computed node of g, in recording order, from the leaves' current values:
 * variables and constants set with ad_set_value / ad_set_data (or written through
 * ad_node_data), parameters' and constant tensors' storage as it is now.  Op parameters and
 * state stay as recorded (cross_entropy's labels: ad_node_set_arg changes them, in the loss, its
 * backward and its gradient graph); dropout draws
 * a new mask from its ad_rng, as recording again would.  Gradients of the earlier sweep are
 * stale, and leaves' gradients accumulate as ever (ad_zero_grad).  Returns AD_OK;
 * AD_ERR_RETAPE naming the first ad_branch whose outcome changed (the nodes after it keep the
 * old values: record again at this point); AD_ERR_NUMERIC in anomaly mode; the standing error
 * if g holds one (a failed recording cannot be replayed). */
ad_status ad_replay(ad_graph *g);
/* Sets a one-element leaf (variable or constant) to v, for a replay.  AD_ERR_ARG for a node
 * that is not a leaf of g or has more than one element, or for a parameter (its storage is
 * the ad_tensor's: write that). */
ad_status ad_set_value(ad_graph *g, ad_node *leaf, double v);
/* Sets all elements of a leaf from v (ad_node_size(leaf) doubles, converted to its dtype);
 * errors as ad_set_value. */
ad_status ad_set_data(ad_graph *g, ad_node *leaf, const double *v);
/* Runs the state initialiser of a recorded node again with a new argument (new labels for
 * cross_entropy, a new ad_rng for dropout), reusing the state's memory, for a replay on new
 * data.  AD_ERR_ARG if n's op takes no argument; the initialiser's own error otherwise (then
 * the node keeps its old state). */
ad_status ad_node_set_arg(ad_graph *g, ad_node *n, const void *arg);
/* Reads a one-element node as a truth value (nonzero is true) for a C branch, and records the
 * outcome: a later ad_replay at which the node comes out the other way returns AD_ERR_RETAPE,
 * naming it, instead of a gradient of the wrong branch.  ADOL-C's comparison records.  Use it
 * on comparisons (ad_lt ...): `if (ad_branch(g, ad_lt(g, x, y))) ... else ...`.  False, with
 * the error recorded in g, if n is NULL, not of g, or not one element. */
bool ad_branch(ad_graph *g, ad_node *n);
/* A workspace for replaying g in another thread: a graph with g's nodes (the same ids, found
 * with ad_graph_node), its own values, gradients and tangents, and g's constants and op state
 * copied, so that each thread replays its own workspace while g stays untouched.  Parameters'
 * values are read from their tensors, shared by every workspace (do not step an optimizer while
 * workspaces replay); their gradients go to the workspace's nodes (ad_node_grad_data), not to
 * the tensors.  Constant tensors (ad_const_tensor) stay views of the caller's storage, so
 * ad_set_data on such a leaf of a workspace writes storage every workspace reads: give each
 * thread its inputs as ad_const or ad_var leaves instead.  NULL with g's error set if g holds
 * an error or memory runs out, or if g has a node no workspace can copy: dropout (its ad_rng
 * would be shared) or an op of ad_op_register with state (state_size, or memory from
 * ad_op_alloc; stateless user ops are copied).  Free it with ad_graph_free. */
ad_graph *ad_graph_clone(ad_graph *g);
/* Elementwise fusion for replays: while on, ad_replay evaluates each run of elementwise ops on
 * one shape (with the contiguous slices feeding it and a sum or mean closing it) tile by tile,
 * in cache, and the backward sweeps after it do the same in reverse, with the same bits as
 * unfused evaluation (docs/design.md, "Fusion").  The price is the chain's inner nodes: an
 * unnamed elementwise node of a run whose every use is in the run keeps no value in memory
 * after a fused replay (ad_value and ad_node_data read the last unfused one) and gets no
 * gradient buffer in a fused sweep (ad_node_grad_data is NULL).  Every other node is as ever.
 * Name a node (ad_set_name) to keep it, or turn fusion off, which writes every inner value
 * again; recording on g, traces, pictures, forward mode and workspaces see current values
 * without either.  Off by default, and not used in anomaly mode.  Returns the previous
 * setting (false for a NULL graph). */
bool ad_set_fusion(ad_graph *g, bool on);

/* A recorded float64 scalar graph compiled to a flat program (opaque): ADOL-C's taped function
 * or CppAD's ADFun.  Its instructions are 12 bytes where a node is 72, and a thread evaluates it
 * in its own workspace of two doubles per node, so it is ad_replay's fast form for scalar code,
 * and the recording that several threads share read-only. */
typedef struct ad_program ad_program;
/* What a thread evaluates a program in (opaque): a value and a gradient per node. */
typedef struct ad_program_ws ad_program_ws;
/* Compiles what the m roots of g depend on into a program whose inputs are the n float64
 * scalar leaves `inputs` (any other leaf keeps its recorded value).  Every node on the way must
 * be a float64 scalar elementwise node (the one-node fast path: every ad_ew.h row and ops
 * registered by their formulas) or an ad_where of float64 scalars; ad_branch guards are kept.
 * g may be reset or freed afterwards.  NULL with g's error set otherwise (naming the first
 * node that cannot be compiled, its op and shape) or if memory runs out. */
ad_program *ad_program_new(ad_graph *g, int m, ad_node *const *roots, int n, ad_node *const *inputs);
/* Frees a program; NULL is ignored. */
void ad_program_free(ad_program *p);
/* A workspace for evaluating p (in one thread at a time); NULL if memory runs out.  Any
 * number of workspaces may evaluate one program at the same time. */
ad_program_ws *ad_program_ws_new(const ad_program *p);
/* Frees a workspace; NULL is ignored. */
void ad_program_ws_free(ad_program_ws *w);
/* Evaluates p at the inputs x[0..n-1] in workspace w: value[0..m-1] (may be NULL) and, if J is
 * not NULL, the m x n Jacobian row by row (one reverse sweep per root), the same bits as
 * recording the graph at x and sweeping it.  Allocates nothing.  Returns AD_OK;
 * AD_ERR_RETAPE when a guarded branch goes the other way at x (the message, naming it, is
 * ad_program_ws_error's; J is then not written); AD_ERR_NULL for a NULL argument or a
 * workspace of another program. */
ad_status ad_program_jacobian(const ad_program *p, ad_program_ws *w, const double *x, double *value, double *J);
/* ad_program_jacobian for one root: the value and the gradient (may be NULL).  AD_ERR_ARG for
 * a program of several roots. */
ad_status ad_program_gradient(const ad_program *p, ad_program_ws *w, const double *x, double *value, double *grad);
/* The message of the workspace's last failed evaluation, or NULL. */
const char *ad_program_ws_error(const ad_program_ws *w);
/* The program's inputs, roots, and nodes (leaves and instructions). */
int ad_program_num_inputs(const ad_program *p);
/* The number of roots (rows of its Jacobian). */
int ad_program_num_roots(const ad_program *p);
/* The number of nodes it evaluates, leaves included: its workspace holds two doubles each. */
uint32_t ad_program_size(const ad_program *p);

/* ------------------------------------------------------------------------------------------
 * Forward mode.  A Jacobian-vector product pushes tangents (directional derivatives) through
 * the recorded graph in creation order, one forward rule per op: the cost of about one more
 * forward pass, for one direction.  Gradients are untouched.
 */

/* Forward mode on a recorded graph: the tangent of leaves[k] is seeds[k] (doubles, the leaf's
 * size; NULL for zero), every other leaf's is zero, and the tangents of all nodes up to root
 * are computed (read them with ad_tangent_get).  Fails with AD_ERR_NO_JVP at a user op without
 * a forward rule.  Tangents live until the next call or ad_graph_reset. */
ad_status ad_jvp_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                       const double *const *seeds);
/* ad_jvp_graph with each seed in its leaf's dtype (float* for a float32 leaf), used in place
 * rather than copied: for directions over a model's parameters, where converting from doubles
 * would cost more than the sweep.  The seeds must not change until the tangents are read. */
ad_status ad_jvp_graph_data(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                            const void *const *seeds);
/* Element i of node n's tangent from the last ad_jvp_graph (0 where it is zero; NaN for NULL
 * or out of range). */
double ad_tangent_get(const ad_graph *g, const ad_node *n, int64_t i);

/* ------------------------------------------------------------------------------------------
 * Traces and pictures of the part of the graph that root depends on.  digits is the number
 * of decimals printed (2 as the slides; negative for full precision, %.17g).  Tensor values
 * print as their shape and a summary (first and last three elements).  Scalar constants that
 * feed a binary op are drawn inside its gate ("+1", "*2", "1/x"), as the slides draw them.
 */

/* Forward trace: one line per node, inputs first, with its value. */
ad_status ad_trace_forward(const ad_graph *g, ad_node *root, FILE *out, int digits);
/* Backward trace, after ad_backward: one line per node in reverse order, in the lecture's
 * words: the gate, the upstream gradient, the local gradient of each input as a formula and
 * a number, and the downstream gradients.  A value used k > 1 times gets a copy line with the
 * k upstream gradients and their sum.  Ends with the gradient of every variable and
 * parameter, in creation order. */
ad_status ad_trace_backward(const ad_graph *g, ad_node *root, FILE *out, int digits);
/* Graphviz DOT: gates and leaves as nodes, copy nodes where a value fans out, each edge
 * labelled with its value (green, above) and gradient (red, below). */
ad_status ad_write_dot(const ad_graph *g, ad_node *root, FILE *out, int digits);
/* JSON: {"root": id, "nodes": [{"id", "op", "label", "name", "shape", "inputs", "value",
 * "grad"}, ...]} with numbers in full precision; constants folded into gates are listed too. */
ad_status ad_write_json(const ad_graph *g, ad_node *root, FILE *out);
/* SVG drawn by the library itself: a layered left-to-right picture, inputs on the left,
 * edges labelled with values (green) and gradients (red).  Graphs of more than
 * AD_SVG_MAX_NODES nodes give a picture with a summary instead, and AD_ERR_ARG. */
#define AD_SVG_MAX_NODES 60
/* Writes the SVG picture described above. */
ad_status ad_write_svg(const ad_graph *g, ad_node *root, FILE *out, int digits);
/* An interactive stepper: one self-contained HTML page (inline SVG, CSS and a little
 * JavaScript, nothing loaded from the network) that walks the graph one node per step, the
 * forward pass and then the backward pass in the lecture's words ("Upstream gradient ...
 * Local gradient ... Downstream gradient ..."), copy nodes with their sums, and last the
 * gradient in the variables' order.  The picture's labels fill in as the walk reaches them.
 * Previous/Next buttons, the arrow keys and a slider move; the page honours and updates
 * "#step=N" in its address, and shows the current step's sentence in the element with
 * id="panel".  With scripts off it shows the whole picture and every step as a list.  title
 * (escaped; NULL for "backprop") heads the page.  A graph of more than AD_SVG_MAX_NODES parts
 * gets the summary picture, still with every step, and AD_ERR_ARG. */
ad_status ad_write_html(const ad_graph *g, ad_node *root, FILE *out, int digits, const char *title);
/* A gate's backward rule in matrix form with the shapes, as the CLI's walk and the stepper write
 * it: "matmul [3,2]@[2,1]: downstream dW = upstream · xᵀ [3,2]; dx = Wᵀ · upstream [2,1]".  op
 * is the op's name (ad_node_op_name: "matmul", "add", "tanh", "sum", ...); the gate has nin
 * inputs (1 or 2 give a rule), input k named ref[k] (a gradient is written "d" ref[k]), of
 * shape in[k], needing a gradient if needs_grad[k]; out is the gate's shape.  Writes the text,
 * truncated to len bytes, into buf and returns buf (empty for a NULL argument). */
char *ad_rule_text(char *buf, size_t len, const char *op, int nin, const char *const ref[], const ad_shape in[],
                   const bool needs_grad[], const ad_shape *out);
/* The first node (in creation order, up to root) whose value, or gradient when gradients is
 * true, holds a NaN or an infinity; NULL if none. */
ad_node *ad_find_nonfinite(const ad_graph *g, ad_node *root, bool gradients);
/* Names (or renames) any node, for traces and pictures; the name is copied. */
ad_status ad_set_name(ad_graph *g, ad_node *n, const char *name);

/* Records an error (printf-style message) unless one is recorded already; returns st. */
ad_status ad_set_error(ad_graph *g, ad_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------------------------------------------
 * Writing ops of your own (the registry, op callbacks, tangents): see ad_op.h.
 */

/* ------------------------------------------------------------------------------------------
 * Differentiating C functions, and checking gradients.
 */

/* A function to differentiate: builds its result on g from the input nodes x[0..n-1] (scalar
 * variables for ad_gradient, tensor variables for ad_gradcheck_tensors) with any C control
 * flow, and returns the result node (NULL on error). */
typedef ad_node *(*ad_fn)(ad_graph *g, ad_node *const *x, int n, void *user);

/* Value and gradient of f at the point x[0..n-1] in one call, in float64.  g may be NULL (a
 * graph is made and freed inside) or a graph to reuse across calls (it is reset first, and
 * keeps the error message on failure).  grad receives n partial derivatives. */
ad_status ad_gradient(ad_graph *g, ad_fn f, int n, const double *x, void *user,
                      double *value, double *grad);

/* Value and directional derivative of f at x[0..n-1] along v[0..n-1] (forward mode: one
 * sweep whatever the output's size).  The result must have m elements: value and jv receive m
 * each (either may be NULL).  g as in ad_gradient. */
ad_status ad_jvp(ad_graph *g, ad_fn f, int n, const double *x, const double *v, void *user,
                 int64_t m, double *value, double *jv);

/* The vector-Jacobian product u^T J of f at x[0..n-1] (reverse mode: one sweep whatever the
 * number of inputs): f must return m elements, u holds m weights; uJ receives n numbers and
 * value (if not NULL) the m values.  On a recorded graph the same is ad_backward_seed. */
ad_status ad_vjp(ad_graph *g, ad_fn f, int n, const double *x, const double *u, void *user,
                 int64_t m, double *value, double *uJ);

/* How a Jacobian is swept: AD_JAC_FORWARD takes one forward-mode sweep per input element,
 * AD_JAC_REVERSE one reverse sweep per output element, AD_JAC_AUTO whichever is fewer. */
typedef enum { AD_JAC_AUTO = 0, AD_JAC_FORWARD, AD_JAC_REVERSE } ad_jac_mode;

/* The dense Jacobian of root with respect to the elements of leaves[0..n-1] (variables or
 * parameters), over the recording as it is: J is row-major, one row per element of root and
 * one column per leaf element, leaves in order.  It zeroes what it must: the leaves'
 * gradients before each reverse sweep (so a parameter's gradient holds the last row's
 * afterwards), nothing in forward mode. */
ad_status ad_jacobian_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                            ad_jac_mode mode, double *J);
/* The Jacobian of f at x[0..n-1]: f must return m elements; J receives m x n numbers,
 * row-major, and value (if not NULL) the m values.  g as in ad_gradient. */
ad_status ad_jacobian(ad_graph *g, ad_fn f, int n, const double *x, void *user, int64_t m,
                      ad_jac_mode mode, double *value, double *J);

/* ------------------------------------------------------------------------------------------
 * Second and higher order.  Gradients as graphs are PyTorch's create_graph: the reverse sweep
 * writes each op's reverse rule as new nodes, so a gradient is a function of the inputs that
 * can be used, combined and differentiated again, to any order.  HVPs and Hessians run forward
 * mode over that gradient graph (forward over reverse).  ad_backward keeps its fast kernels;
 * only these calls build gradient graphs.
 */

/* The gradient of root with respect to wrt[0..n-1] (any nodes of g up to root) as new nodes
 * of g: grads[k] has wrt[k]'s shape and dtype and depends on the inputs as the gradient does,
 * so it can enter further ops and ad_backward, ad_grad_graph again or forward mode.  root must
 * have one element, or seed (a node of root's shape, itself differentiable) weights its
 * elements: the gradient of sum(seed * root).  A constant zero is the gradient of what root
 * does not depend on, and of constants (PyTorch raises an error for those).  Only the part of
 * the graph between the wrt nodes and root is walked.  Fails with AD_ERR_NO_BACKWARD at an op
 * on that part without a reverse rule as a graph (a user op whose ad_op_def has no
 * grad_graph, or a third derivative of an op registered by its formulas);
 * on any failure grads are NULL.  grads and wrt may be one array. */
ad_status ad_grad_graph(ad_graph *g, ad_node *root, ad_node *seed, int n, ad_node *const *wrt,
                        ad_node **grads);
/* The Hessian-vector product of a one-element root with respect to the leaves (variables or
 * parameters): hv[k] receives leaf k's part of H v, where v[k] (leaf k's size, NULL for zero)
 * is the direction.  One gradient graph and one forward sweep over it, so it appends nodes;
 * on a graph of float64 scalars (the fast path's nodes) it appends none: one forward and one
 * backward pass carry tangents through the recorded partials instead. */
ad_status ad_hvp_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                       const double *const *v, double *const *hv);
/* The dense Hessian of a one-element root with respect to the elements of leaves[0..n-1], in
 * order: H is N x N row-major for N elements in all, H[i*N + j] = d2 root / dx_i dx_j.  One
 * gradient graph, then one forward sweep over it per element (column j is H e_j, symmetric to
 * rounding); on float64 scalar graphs, one ad_hvp_graph pass pair per element.  At kinks
 * (relu, abs, max, min) the second derivative is 0, as PyTorch's. */
ad_status ad_hessian_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves, double *H);
/* Value, gradient and Hessian-vector product H v of a scalar f at x[0..n-1] in one call (value
 * and grad may be NULL).  g as in ad_gradient. */
ad_status ad_hvp(ad_graph *g, ad_fn f, int n, const double *x, const double *v, void *user,
                 double *value, double *grad, double *hv);
/* Value, gradient and n x n Hessian (row-major) of a scalar f at x[0..n-1] in one call (value
 * and grad may be NULL).  g as in ad_gradient. */
ad_status ad_hessian(ad_graph *g, ad_fn f, int n, const double *x, void *user, double *value,
                     double *grad, double *H);

/* Options of the finite-difference checker; zeros pick the defaults (eps 1e-6, rtol 1e-5,
 * atol 1e-7).  An element passes when |analytic - numeric| <= atol + rtol*|numeric|. */
typedef struct {
    double eps;  /* the central difference's step, scaled by max(1, |x|) */
    double rtol; /* relative tolerance */
    double atol; /* absolute tolerance */
} ad_check_opts;
/* What the checker found: the worst element (input, flat index) and its two gradients. */
typedef struct {
    int worst_input;     /* the input holding the worst element (-1 if none checked) */
    int64_t worst_index; /* its flat index in that input */
    double analytic;     /* backward's gradient there */
    double numeric;      /* the central difference there */
    double max_abs_err;  /* the largest |analytic - numeric| over all elements */
    double max_rel_err;  /* the largest |analytic - numeric| / |numeric| */
    int64_t checked;     /* elements checked */
    char msg[256];       /* why the check failed, or "" */
} ad_check_report;

/* Central differences in float64 against backward, for a scalar function of n scalars. */
ad_status ad_gradcheck(ad_fn f, int n, const double *x, void *user, const ad_check_opts *o,
                       ad_check_report *rep);
/* The same for a function of tensors: inputs are float64 tensors passed to f as variables.
 * A non-scalar result is checked through a fixed random projection <r, f(x)>. */
ad_status ad_gradcheck_tensors(ad_fn f, int n, ad_tensor *const *inputs, void *user,
                               const ad_check_opts *o, ad_check_report *rep);

/* ------------------------------------------------------------------------------------------
 * Threads for large kernels (matrix products).  A process-wide pool, started on first use;
 * small problems run on the calling thread.  Results are bitwise identical for any thread
 * count: work is split over blocks of the output, never over a sum.
 */
/* Sets the thread count; n <= 0 restores the default: the environment variable
 * BACKPROP_THREADS if set to a positive integer, else the number of online cores. */
void ad_set_threads(int n);
/* The thread count in use (at least 1). */
int ad_get_threads(void);

AD_END_DECLS
#endif
