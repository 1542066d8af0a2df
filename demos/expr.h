/* A formula parser that builds the lecture's graphs: every operator becomes the primitive the
 * slides draw (1/x for a reciprocal, x + 1 as an add with a constant), and a variable used
 * more than once becomes a copy node.  Shared by the backprop CLI and the lecture demo.
 *
 * Grammar: numbers (2, -0.5, 1e-3), the constants pi and e (unless a variable takes the
 * name), identifiers, + - * / @ ^ with the usual precedence (@ is NumPy's matmul, as tight as
 * * and /) and right-associative ^ (2^3^2 is 2^9; -x^2 is -(x^2)), unary minus, parentheses,
 * as functions every elementwise op of the registry that takes no parameter (exp(x),
 * max(a,b), ...; expr_list_functions prints them), and the tensor functions sum(x), mean(x)
 * (over all elements, or sum(x, axis)), softmax(x), log_softmax(x) (over the last axis, or
 * softmax(x, axis)) and ce(logits, label), PyTorch's cross_entropy (logits [C] with one
 * label, or [N,C] with N labels, as a number or a variable holding integers). */
#ifndef EXPR_H
#define EXPR_H
#include "ad_op.h"
#include <stdio.h>

/* A variable the formula may use: its node must exist before parsing (its creation order is
 * the gradient's order); `used` is set when the formula mentions it. */
typedef struct {
    const char *name;
    ad_node *node;
    bool used;
} expr_var;

/* Where and why parsing failed: column is 1-based (0 when not tied to a place). */
typedef struct {
    int column;
    char msg[200];
} expr_error;

/* Builds text on g; returns the root, or NULL with err filled in (or, if the graph failed,
 * err holds the graph's message, and column the place of the operator that failed). */
ad_node *expr_build(ad_graph *g, const char *text, expr_var *vars, int nvars, expr_error *err);

/* The tensor gates as the formula writes them, for a trace in matrix form: a matmul of 1-D
 * operands, or ce of 1-D logits, is several library nodes (reshapes around the op); the trace
 * shows the one gate and hides the nodes from `first` up to `node`. */
typedef enum { EXPR_MATMUL, EXPR_SUM, EXPR_MEAN, EXPR_SOFTMAX, EXPR_LOG_SOFTMAX, EXPR_CE } expr_gate_kind;
typedef struct {
    expr_gate_kind kind;
    ad_node *node;   /* the gate's output */
    ad_node *in[2];  /* its operands as the formula wrote them (in[1] NULL but for matmul) */
    uint32_t first;  /* id of its first node: ids first..node-1 are its inner reshapes */
    int axis;        /* the axis given, or EXPR_ALL_AXES */
    int label;       /* ce's label when written as a number (in[1] NULL) */
} expr_gate;
enum { EXPR_ALL_AXES = 1000 };

/* What expr_build_traced records besides the graph.  With untie, every mention of a variable
 * is a leaf of its own (a copy of the variable's value under its name), so that each edge's
 * gradient is a leaf's gradient: leaf_var[k] is the variable of the k-th such leaf. */
typedef struct {
    bool untie;
    expr_gate *gate;
    int ngates, cap;
    ad_node **leaf;
    int *leaf_var;
    int nleaves, leafcap;
} expr_notes;

/* expr_build that fills notes (set notes->untie first; free with expr_notes_free). */
ad_node *expr_build_traced(ad_graph *g, const char *text, expr_var *vars, int nvars, expr_notes *notes,
                           expr_error *err);
/* Frees what expr_build_traced allocated in notes. */
void expr_notes_free(expr_notes *notes);
/* The gate note of node n, or NULL. */
const expr_gate *expr_gate_of(const expr_notes *notes, const ad_node *n);
/* True if name is one of the functions the grammar knows (so it cannot be a variable). */
bool expr_is_function(const char *name);
/* Prints the functions the grammar knows, one per line as "exp(x)" or "max(a,b)". */
void expr_list_functions(FILE *out);
/* True if s is a valid identifier: a letter or _, then letters, digits, _. */
bool expr_is_identifier(const char *s);
/* Parses a whole number such as 2, -0.5 or 1e-3; false if s is not exactly one, or is too
 * large for a double (1e999). */
bool expr_parse_number(const char *s, double *out);
/* Parses a value: a number, or a tensor in NumPy's nesting ([1,-1], [[1,2],[3,4]]).  Returns
 * the elements (malloc'd, row-major; free them) and the shape, or NULL with why in msg. */
double *expr_parse_value(const char *s, ad_shape *shape, char *msg, size_t msglen);
#endif
