/* The CLI's numbers and its walk through tensor formulas.
 *
 * Numbers: DIGITS_AUTO prints 2 decimals, as the slides, and two significant digits where
 * that would round a nonzero number to 0.00 (0.0010, 1.2e-09).
 *
 * The walk in matrix form: for a formula over tensors, each node with its shape and value
 * (small tensors whole, larger ones summarised as NumPy does), and backward each gate's local
 * rule in matrix form with the shapes ("matmul [2,3]@[3]: downstream dW = upstream ⊗ x [2,3];
 * dx = Wᵀ · upstream [3]"), the upstream gradient and each downstream gradient.  It walks a
 * graph built with expr_build_traced and notes.untie, so that every edge's gradient is a
 * node's: a variable used k times is k leaves, whose gradients the copy lines sum. */
#ifndef WALK_H
#define WALK_H
#include "ad.h"
#include "expr.h"
#include <stdio.h>

/* --digits' default: 2 decimals, more significant digits where a number is small. */
enum { DIGITS_AUTO = -2 };

/* x as the report prints it: `digits` decimals, every digit a double holds (-1), or
 * DIGITS_AUTO; "nan", "inf", and 0 for a negative zero. */
const char *walk_num(char *buf, size_t len, double x, int digits);
/* The decimals the library's traces and pictures need for DIGITS_AUTO on the part of g that
 * root depends on: 2, or more so that no nonzero value, gradient or local gradient prints as
 * 0; -1 (every digit) past 17.  Any other digits is returned as it is. */
int walk_library_digits(const ad_graph *g, ad_node *root, int digits);
/* A tensor of the given shape in NumPy's nesting, whole if it has at most 48 elements, else
 * with the first and last three entries of each longer axis. */
void walk_tensor(FILE *out, const double *x, ad_shape s, int digits);
/* A node's value (grad false) or gradient as walk_tensor prints it (a number for a scalar). */
void walk_node(FILE *out, ad_node *n, bool grad, int digits);
/* The forward and backward walk in matrix form of root on g (after ad_backward), built by
 * expr_build_traced with notes->untie over vars.  Returns AD_OK, AD_ERR_NOMEM or AD_ERR_IO. */
ad_status walk_matrix_form(FILE *out, ad_graph *g, ad_node *root, const expr_notes *notes, const expr_var *vars,
                           int nvars, bool forward, int digits);
#endif
