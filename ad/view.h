/* Shared by the printers (traces, DOT, JSON, SVG): the part of a graph a root depends on,
 * seen as the lecture draws it.  Internal to ad/. */
#ifndef AD_VIEW_H
#define AD_VIEW_H
#include "internal.h"

typedef struct { uint32_t node; int slot; } view_edge; /* consumer and its input slot */

typedef struct {
    const ad_graph *g;
    ad_node *root;
    uint32_t n;          /* nodes 0..root */
    uint8_t *live;       /* 1 if root depends on the node */
    int32_t *uses;       /* edges into live consumers: > 1 makes a copy node */
    int32_t *cstart;     /* consumers of node i: cons[cstart[i] .. cstart[i+1]) */
    view_edge *cons;
    uint32_t clash;      /* bit c: a node is named like pair c of view_walk's symbols */
} gview;

enum { VIEW_MAX_SHOWN = 8 };

/* A node as a gate: its label, and for each input drawn as an edge (slot[k]), the local
 * gradient as a formula and as a number (NaN when not a float64 scalar). */
typedef struct {
    char label[48];
    int nshown;
    int slot[VIEW_MAX_SHOWN];
    char formula[VIEW_MAX_SHOWN][160];
    double local[VIEW_MAX_SHOWN];
} gate;

ad_status view_build(gview *v, const ad_graph *g, ad_node *root);
void view_free(gview *v);
/* Which input of n is a scalar constant folded into its label (-1 if none). */
int view_folded(const ad_node *n);
void view_gate(ad_node *n, gate *gt);
/* x with `digits` decimals (negative: full precision), "nan", "inf". */
char *view_num(double x, int digits, char *buf, size_t len);
/* A node's value or gradient: a number for a scalar, else the shape and a NumPy-like
 * summary (first and last three elements). */
char *view_values(ad_node *n, bool grad, int digits, char *buf, size_t len);
/* How traces name a node: its name, its value for a scalar constant, else "#id". */
char *view_ref(const ad_node *n, char *buf, size_t len);
/* The gradient flowing back along the edge into `slot` of consumer (NaN for tensors). */
double view_edge_grad(ad_node *consumer, int slot);
/* A gate's backward step as the slides write it.  Formulas name each input by the student's
 * name, or, for an unnamed inner node, by a symbol that no name in the graph and no letter of
 * the formula uses (u, v; else p, q, ...): "∂/∂w0 [w0·x0] = x0", "∂/∂u [1/u] = -1/u^2". */
typedef struct {
    char sym[VIEW_MAX_SHOWN][64];   /* input k's name in the formulas */
    char at[320];                   /* where the gate is evaluated: "u = #12 = 1.37" */
    char local[VIEW_MAX_SHOWN][320];/* "∂/∂u [exp(u)] = exp(u) = exp(-1.00) = 0.37" */
    char down[VIEW_MAX_SHOWN][160]; /* "0.37 · (-0.53) = -0.20"; empty unless all scalars */
} gate_walk;
void view_walk(const gview *v, ad_node *n, const gate *gt, int digits, gate_walk *w);
/* x as a factor or operand: negative numbers in parentheses, "(-0.53)", as the slides. */
char *view_operand(double x, int digits, char *buf, size_t len);
/* A copy node's sum, its terms as the sweep meets the uses (last use first):
 * "1.00 + 3.00 + 3.00 = 7.00"; for a tensor, its gradient's summary. */
char *view_copy_sum(const gview *v, ad_node *n, int digits, char *buf, size_t len);
/* The gate as an expression of its inputs, "w0 · x0", "exp(#9)", "1 + #10"; with numbers, the
 * inputs' values in their place, "2.00 · (-1.00)".  A folded constant stays as written. */
char *view_expr(ad_node *n, bool numbers, int digits, char *buf, size_t len);
/* The number of characters (code points) of UTF-8 s, for aligning columns. */
int view_width(const char *s);
/* s escaped for XML text or attributes (ad_xml_escape), written to out; for SVG and HTML. */
void view_xml(FILE *out, const char *s);
#endif
