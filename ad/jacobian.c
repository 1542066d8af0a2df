/* Dense Jacobians: one forward-mode sweep per input element, or one reverse sweep per output
 * element, whichever there are fewer of (or the caller's choice), over one recording. */
#include "internal.h"
#include <stdlib.h>

ad_status ad_jacobian_graph(ad_graph *g, ad_node *root, int n, ad_node *const *leaves,
                            ad_jac_mode mode, double *J)
{
    if (!g) return AD_ERR_NULL;
    if (!root || !J || n < 0 || (n > 0 && !leaves))
        return ad_set_error(g, AD_ERR_NULL, "jacobian: NULL root, leaves or output");
    if (!node_is_live(g, root))
        return ad_set_error(g, AD_ERR_ARG, "jacobian: root is not a node of this graph");
    int64_t m = node_size(root), cols = 0;
    for (int k = 0; k < n; k++) {
        ad_node *l = leaves[k];
        if (!l || !node_is_live(g, l) || l->id > root->id || !(l->flags & F_LEAF))
            return ad_set_error(g, AD_ERR_ARG, "jacobian: leaf %d is not a variable or parameter of this graph up to the root", k);
        cols += node_size(l);
    }
    if (mode == AD_JAC_AUTO) mode = cols < m ? AD_JAC_FORWARD : AD_JAC_REVERSE;
    /* one scratch vector for the unit seeds: as long as the longest leaf, or the output */
    int64_t longest = m;
    for (int k = 0; k < n; k++) longest = node_size(leaves[k]) > longest ? node_size(leaves[k]) : longest;
    double *unit = ad_xcalloc((size_t)(longest ? longest : 1), sizeof *unit);
    const double **seeds = ad_xcalloc((size_t)(n ? n : 1), sizeof *seeds);
    ad_status st = unit && seeds ? AD_OK : ad_set_error(g, AD_ERR_NOMEM, "jacobian: out of memory");
    if (mode == AD_JAC_FORWARD) {
        /* column c: the tangent of the root when input element c has tangent 1 */
        int64_t c = 0;
        for (int k = 0; !st && k < n; k++) {
            seeds[k] = unit;
            for (int64_t j = 0; !st && j < node_size(leaves[k]); j++, c++) {
                unit[j] = 1;
                st = ad_jvp_graph(g, root, n, leaves, seeds);
                unit[j] = 0;
                for (int64_t i = 0; !st && i < m; i++) J[i * cols + c] = ad_tangent_get(g, root, i);
            }
            seeds[k] = NULL;
        }
    } else {
        /* row i: the gradient of output element i; the leaves' gradients are zeroed first, so
         * nothing accumulated before (or by the previous row) is counted */
        for (int64_t i = 0; !st && i < m; i++) {
            for (int k = 0; k < n; k++) {
                ad_node *l = leaves[k];
                if (l->x && l->x->param) ad_tensor_zero_grad(l->x->param);
                else if (l->flags & F_SCALAR) l->g = 0;
                else l->flags &= (uint8_t)~F_GRAD_LIVE;
            }
            unit[i] = 1;
            st = ad_backward_seed(g, root, unit);
            unit[i] = 0;
            int64_t c = 0;
            for (int k = 0; !st && k < n; k++)
                for (int64_t j = 0; j < node_size(leaves[k]); j++, c++)
                    J[i * cols + c] = ad_node_grad_get(leaves[k], j);
        }
    }
    ad_xfree(unit);
    ad_xfree(seeds);
    return st;
}

ad_status ad_jacobian(ad_graph *g, ad_fn f, int n, const double *x, void *user, int64_t m,
                      ad_jac_mode mode, double *value, double *J)
{
    if (!f || n < 0 || (n > 0 && !x) || !J) {
        if (g) ad_set_error(g, AD_ERR_NULL, "jacobian: NULL function, point or output");
        return AD_ERR_NULL;
    }
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **xs, *y = record_fn(g, "jacobian", f, n, x, user, m, &xs);
    ad_status st = y ? AD_OK : g->status;
    if (!st) st = ad_jacobian_graph(g, y, n, xs, mode, J);
    if (!st && value)
        for (int64_t i = 0; i < m; i++) value[i] = ad_node_get(y, i);
    if (own) ad_graph_free(g);
    return st;
}

ad_status ad_vjp(ad_graph *g, ad_fn f, int n, const double *x, const double *u, void *user,
                 int64_t m, double *value, double *uJ)
{
    if (!f || n < 0 || (n > 0 && !x) || !u) {
        if (g) ad_set_error(g, AD_ERR_NULL, "vjp: NULL function, point or cotangent");
        return AD_ERR_NULL;
    }
    bool own = !g;
    if (own && !(g = ad_graph_new())) return AD_ERR_NOMEM;
    ad_node **xs, *y = record_fn(g, "vjp", f, n, x, user, m, &xs);
    ad_status st = y ? AD_OK : g->status;
    if (!st) st = ad_backward_seed(g, y, u);
    for (int64_t i = 0; !st && value && i < m; i++) value[i] = ad_node_get(y, i);
    for (int i = 0; !st && uJ && i < n; i++) uJ[i] = ad_grad(xs[i]);
    if (own) ad_graph_free(g);
    return st;
}
