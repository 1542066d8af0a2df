/* Internals shared by the files of optim/; nothing outside optim/ includes this. */
#ifndef OPTIM_IMPL_H
#define OPTIM_IMPL_H

#include "optim.h"
#include <stdarg.h>

/* At most two state buffers per parameter (Adam's moments; RMSprop's average and momentum). */
#define OPTIM_MAX_SLOTS 2

struct optim {
    optim_cfg cfg;
    int n;
    ad_tensor **params;        /* n, not owned */
    int64_t total;             /* elements of all parameters together */
    ad_tensor **state;         /* n * nslots, parameter-major: state[i * nslots + s] */
    int nslots;
    const char *slot[OPTIM_MAX_SLOTS]; /* the buffers' names, as optim_state and files see them */
    int64_t step;              /* updates made */
    struct optim_fuse_slot *fuse; /* n, while optim_fuse is on; NULL off */
    char msg[256];
};

/* What a parameter's ready function gets (optim_fuse): its optimizer and index, and whether
 * the current step's sweep handed its gradient. */
struct optim_fuse_slot {
    optim *o;
    int i;
    int handed;
};

/* The state buffers a configuration needs: their count, and their names into names. */
int optim_slots_for(const optim_cfg *c, const char **names);

/* Checks a configuration; AD_OK or AD_ERR_ARG with a message in err. */
ad_status optim_cfg_check(const optim_cfg *c, char *err, size_t errlen);

/* printf into a caller's buffer (NULL or 0 length ignored); returns st, so a failure is one
 * line: `return optim_fail(st, err, len, "optim_x: ...", ...)`. */
ad_status optim_fail(ad_status st, char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* The same into the optimizer's own message. */
ad_status optim_failo(optim *o, ad_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* For the drivers: checks the node fn's callback built on g at iteration i, backpropagates
 * from it into the (zeroed) parameter gradients and writes its value; a failure names fn and
 * i in o's message. */
ad_status optim_backprop_loss(optim *o, ad_graph *g, ad_node *loss, const char *fn, int64_t i,
                              double *value);

#endif
