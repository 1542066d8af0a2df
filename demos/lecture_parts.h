/* The rest of the lecture as pictures: `lecture --part NAME` prints a page on one of the
 * training and regularisation slides, computed with the library's own optimizers and layers,
 * and with a folder draws its picture there (DIR/lecture-NAME.svg, plot.h). */
#ifndef LECTURE_PARTS_H
#define LECTURE_PARTS_H
#include <stdio.h>

/* The parts, in the lecture's order: "momentum", "minibatch", "dropout", "early-stopping". */
extern const char *const LECTURE_PARTS[];
enum { LECTURE_NPARTS = 4 };

/* Prints part `name` to out and, if svg_dir is not NULL, draws its picture there.  Returns 0,
 * or 1 after one line on stderr (an unknown part, a picture that could not be written). */
int lecture_part(const char *name, const char *svg_dir, FILE *out);
#endif
