/* A formula parser that builds the lecture's graphs: every operator becomes the primitive the
 * slides draw (1/x for a reciprocal, x + 1 as an add with a constant), and a variable used
 * more than once becomes a copy node.  Shared by the backprop CLI and the lecture demo.
 *
 * Grammar: numbers (2, -0.5, 1e-3), identifiers, + - * / ^ with the usual precedence and
 * right-associative ^ (2^3^2 is 2^9; -x^2 is -(x^2)), unary minus, parentheses, and as
 * functions every elementwise op of the registry that takes no parameter (exp(x), max(a,b),
 * ...; expr_list_functions prints them). */
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
 * err holds the graph's message). */
ad_node *expr_build(ad_graph *g, const char *text, expr_var *vars, int nvars, expr_error *err);
/* True if name is one of the functions the grammar knows (so it cannot be a variable). */
bool expr_is_function(const char *name);
/* Prints the functions the grammar knows, one per line as "exp(x)" or "max(a,b)". */
void expr_list_functions(FILE *out);
/* True if s is a valid identifier: a letter or _, then letters, digits, _. */
bool expr_is_identifier(const char *s);
/* Parses a whole number such as 2, -0.5 or 1e-3; false if s is not exactly one, or is too
 * large for a double (1e999). */
bool expr_parse_number(const char *s, double *out);
#endif
