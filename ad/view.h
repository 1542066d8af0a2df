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
/* s escaped for XML text or attributes (ad_xml_escape), written to out; for SVG and HTML. */
void view_xml(FILE *out, const char *s);
#endif
