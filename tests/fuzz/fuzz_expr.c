/* libFuzzer target: any bytes as a formula for the CLI's parser, then — when it parses — the
 * backward sweep and every printer. Nothing may crash, leak or hang. */
#include "ad.h"
#include "expr.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size > 4096) return 0; /* deeper nesting is refused by the parser anyway */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    ad_graph *g = ad_graph_new();
    const char *names[3] = {"x", "y", "w0"};
    expr_var vars[3];
    for (int i = 0; i < 3; i++) vars[i] = (expr_var){names[i], ad_var(g, names[i], 0.5 + i), false};
    expr_error err;
    ad_node *f = expr_build(g, text, vars, 3, &err);
    if (f && ad_backward(g, f) == AD_OK) {
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            ad_trace_forward(g, f, null, 2);
            ad_trace_backward(g, f, null, -1);
            ad_write_dot(g, f, null, 2);
            ad_write_json(g, f, null);
            ad_write_svg(g, f, null, 2);
            fclose(null);
        }
    }
    ad_graph_free(g);
    free(text);
    return 0;
}
