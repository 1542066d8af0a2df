/*
 * ad_op.h — writing ops: the registry that built-in and user ops share, the callbacks an op
 * gives, and what those callbacks may call.
 *
 * An op is one registry entry: its name, arity, shape rule, forward pass, reverse rule
 * (vector-Jacobian product) and forward rule (Jacobian-vector product).  Elementwise ops need
 * less: register their scalar formulas with ad_op_register_unary or ad_op_register_binary and
 * the engine supplies the rest (broadcasting, both dtypes, threads, the scalar fast path, both
 * rules, traces, and second derivatives when the second-derivative formulas are given),
 * exactly as for the built-in ones (ad_ew.h).  docs/custom-op.md walks through
 * both kinds.
 */
#ifndef AD_OP_H
#define AD_OP_H

#include "ad.h"

AD_BEGIN_DECLS

/* What an op's callbacks see: the graph, the output node, the inputs, the op's numeric
 * parameters (as given to ad_apply) and the node's state. */
typedef struct {
    ad_graph *graph;     /* the graph being recorded or swept */
    ad_node *out;        /* the op's output node (NULL while the shape rule runs) */
    int nin;             /* number of inputs */
    ad_node *const *in;  /* the inputs */
    const double *param; /* the numeric parameters given to ad_apply */
    int nparam;          /* how many */
    void *state;         /* the node's state_size bytes (NULL if the op keeps none) */
} ad_op_ctx;

/* Shape rule: writes the output shape, or returns non-zero after writing a message naming
 * the shapes into msg (the registry prefixes the op's name).  NULL means elementwise: all
 * inputs broadcast together. */
typedef int (*ad_shape_fn)(const ad_op_ctx *c, ad_shape *out, char *msg, size_t msglen);
/* Forward: fill ad_node_data(c->out) from the inputs' data. */
typedef void (*ad_forward_fn)(const ad_op_ctx *c);
/* Reverse rule, a vector-Jacobian product: read ad_node_grad_data(c->out) and ADD into the
 * buffers from ad_input_grad_buffer(c->graph, c->in[i]) (NULL for inputs that need no gradient).
 * Return AD_OK or a status after ad_set_error. */
typedef ad_status (*ad_backward_fn)(const ad_op_ctx *c);
/* Forward rule, a Jacobian-vector product: from the inputs' tangents (ad_tangent_data, NULL
 * for a zero tangent) write the output's into ad_tangent_buffer(c->graph, c->out), which
 * arrives zeroed.  Return AD_OK or a status after ad_set_error. */
typedef ad_status (*ad_jvp_fn)(const ad_op_ctx *c);
/* State initialiser: runs once per node, after the shape rule and before forward, with the
 * argument given to ad_apply_with; fills c->state (state_size zeroed bytes, more from
 * ad_op_alloc).  Returns AD_OK, or a status after writing into msg why arg is unusable
 * (AD_ERR_NOMEM, msg may stay empty, when ad_op_alloc failed). */
typedef ad_status (*ad_init_fn)(const ad_op_ctx *c, const void *arg, char *msg, size_t msglen);
/* Reverse rule as a graph, for gradients as graphs (ad_grad_graph): given gy, the gradient of
 * the output as a node (of the output's shape), returns input i's part of the gradient as a
 * node of input i's shape, built with ops of the graph (ad_mul, ad_matmul, ...: anything that
 * can be differentiated again).  NULL with no error set means the part is zero; NULL after
 * ad_set_error is a failure.  Called only for inputs that need a gradient. */
typedef ad_node *(*ad_grad_graph_fn)(const ad_op_ctx *c, ad_node *gy, int i);

/* An op arity meaning "any number of inputs". */
#define AD_VARIADIC (-1)

/* A registry entry.  local_grad is the derivative as text, printed by traces, e.g.
 * "d/dx [x^3] = 3 x^2".  The fields after local_grad are optional (zero). */
typedef struct {
    const char *name;          /* unique: "cube" */
    int arity;                 /* inputs, or AD_VARIADIC */
    ad_shape_fn shape;         /* NULL: elementwise with broadcasting */
    ad_forward_fn forward;     /* required */
    ad_backward_fn backward;   /* NULL: backward through it reports AD_ERR_NO_BACKWARD */
    const char *local_grad;    /* the derivative as text for traces; may be NULL */
    ad_jvp_fn jvp;             /* NULL: forward mode through it reports AD_ERR_NO_JVP */
    size_t state_size;         /* bytes of state each node keeps from forward to backward */
    ad_init_fn init;           /* fills the state from ad_apply_with's argument; may be NULL */
    ad_grad_graph_fn grad_graph; /* NULL: gradients as graphs through it report AD_ERR_NO_BACKWARD */
} ad_op_def;

/* Registers an op (the strings must outlive its use; the struct is copied).  Returns its id
 * (>= 0), or -1 if def is NULL, has no name or forward, an arity outside 0..64, or a name
 * already taken. */
int ad_op_register(const ad_op_def *def);

/* A unary elementwise op given by its scalar formulas: value f(x, p), derivative
 * df(x, y, p) and second derivative d2f(x, y, p), where y = f(x, p) and p is the op's
 * parameter (0 when ad_apply gives none).  The engine applies them per element in float64,
 * to both dtypes, with threads on large tensors and the one-node scalar fast path, and derives
 * the reverse and forward rules from df.  d2f gives second order: Hessians and HVPs, and a
 * gradient graph (ad_grad_graph) differentiated once more by any means; without it those
 * report AD_ERR_NO_BACKWARD.  A third derivative through the op is refused with
 * AD_ERR_NO_BACKWARD: the engine knows the op's derivatives only as numbers, not as ops. */
typedef struct {
    const char *name;                        /* unique: "softsign" */
    double (*f)(double x, double p);         /* value */
    double (*df)(double x, double y, double p);  /* first derivative */
    double (*d2f)(double x, double y, double p); /* second derivative, or NULL */
    const char *local_grad;                  /* the derivative as text for traces; may be NULL */
} ad_unary_def;
/* Registers a unary elementwise op; returns its id, or -1 as ad_op_register (and if f or df
 * is NULL).  Apply it with ad_apply (one input, at most one parameter). */
int ad_op_register_unary(const ad_unary_def *def);

/* A binary elementwise op given by its scalar formulas: value f(a, b), partial derivatives
 * da(a, b, y) and db(a, b, y), and optionally the second derivatives daa, dab, dbb (all three,
 * for second order as ad_unary_def's d2f gives it; with any missing the op is first order). */
typedef struct {
    const char *name;                         /* unique */
    double (*f)(double a, double b);          /* value */
    double (*da)(double a, double b, double y);  /* d/da */
    double (*db)(double a, double b, double y);  /* d/db */
    double (*daa)(double a, double b, double y); /* second derivatives, or NULL */
    double (*dab)(double a, double b, double y); /* d2/da db, or NULL */
    double (*dbb)(double a, double b, double y); /* d2/db2, or NULL */
    const char *local_grad;                   /* the derivative as text for traces; may be NULL */
} ad_binary_def;
/* Registers a binary elementwise op (NumPy broadcasting); returns its id or -1. */
int ad_op_register_binary(const ad_binary_def *def);

/* The id of the op called name, or -1. */
int ad_op_find(const char *name);
/* The registry entry of an op id, or NULL. */
const ad_op_def *ad_op_get(int id);
/* Number of registered ops (built-ins included). */
int ad_op_count(void);
/* Whether op id is elementwise (built-in or registered by its formulas), and how many inputs
 * and numeric parameters it takes: what a parser needs to offer it as a function. */
bool ad_op_is_elementwise(int id, int *arity, int *nparam);
/* Applies op id to nin inputs with nparam numeric parameters (copied).  The output has the
 * inputs' dtype and the shape the op's rule gives.  Elementwise ops on float64 scalars take
 * the one-node fast path, as ad_add does.  A built-in op checks its parameters before using
 * them: their number ("sum_axis: takes 2 parameters (axis, keepdim), given 0") and their range
 * (an axis, index or dimension must be an integer, so NaN and 1e300 are refused), with
 * AD_ERR_ARG; an op of ad_op_register gets what it is given.  Every input must be a node of g
 * made since its last reset (AD_ERR_ARG otherwise).  On failure the graph is as before the
 * call: no node is left behind. */
ad_node *ad_apply(ad_graph *g, int op, ad_node *const *in, int nin, const double *param,
                  int nparam);
/* ad_apply with an argument for the op's state initialiser (labels for cross_entropy, an
 * ad_rng for dropout; see their entries in ad.h). */
ad_node *ad_apply_with(ad_graph *g, int op, ad_node *const *in, int nin, const double *param,
                       int nparam, const void *arg);
/* For state initialisers: bytes from the graph's arena (64-byte aligned, uninitialised), freed
 * with the graph; NULL if memory runs out (then the graph holds the message, and the
 * initialiser returns AD_ERR_NOMEM). */
void *ad_op_alloc(const ad_op_ctx *c, size_t bytes);
/* For backward callbacks: the gradient buffer of input n (zeroed on first use), or NULL if n
 * needs no gradient (or memory ran out: then the graph holds an error). */
void *ad_input_grad_buffer(ad_graph *g, ad_node *n);
/* For forward rules: the tangent of node n from the current forward-mode sweep (double* or
 * float* by dtype), or NULL where it is zero. */
const void *ad_tangent_data(const ad_graph *g, const ad_node *n);
/* For forward rules: the output's tangent buffer, zeroed on first use; NULL if memory runs
 * out (then the graph holds an error). */
void *ad_tangent_buffer(ad_graph *g, ad_node *n);

AD_END_DECLS
#endif
