/* The SVG picture of a graph, shared by ad_write_svg (plain) and ad_write_html (tagged for
 * the stepper).  Internal to ad/. */
#ifndef AD_PICTURE_H
#define AD_PICTURE_H
#include "view.h"

/* When each part of the picture appears in the stepper's walk, per node id (0..root).  A
 * node's value appears on its outgoing edges at forward[id]; the gradients a gate sends back
 * appear on its incoming edges at backward[id]; a fanned-out node's copy node shows its sum
 * at copy[id]; the output edge's gradient df/df = 1 at base. */
typedef struct {
    const int32_t *forward;
    const int32_t *backward;
    const int32_t *copy;
    int32_t base;
} picture_steps;

/* Writes the picture.  With steps NULL it is ad_write_svg's output.  With steps, node groups
 * get ids ("n5", "c5" for the copy node of node 5) and a small "#5" under gates, edges get
 * data-to (the id of the part they enter), and value and gradient labels get data-step (the
 * step at which they appear), for the page's script to show and highlight.  Returns AD_ERR_ARG
 * (after writing a summary picture) when the graph has more than AD_SVG_MAX_NODES parts. */
ad_status picture_write(const ad_graph *g, ad_node *root, FILE *out, int digits, const picture_steps *steps);
#endif
