/* Matrix product, 2-D and batched.  Backward reuses the same kernel with transposed operands:
 * dA = dC B^T, dB = A^T dC; no transpose is ever materialised. */
#include "../internal.h"

/* C (+)= op(A) op(B).  The loop orders keep the innermost loop contiguous: i-p-j when B is
 * read row-wise, a dot product over p when B is transposed. */
#define GEMM(T)                                                                            \
    static void gemm_##T(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *A,     \
                         int64_t lda, const T *B, int64_t ldb, T *C, int64_t ldc, bool acc)  \
    {                                                                                      \
        if (!acc)                                                                          \
            for (int64_t i = 0; i < m; i++) memset(C + i * ldc, 0, (size_t)n * sizeof(T)); \
        if (!tb) {                                                                         \
            for (int64_t i = 0; i < m; i++) {                                              \
                T *c = C + i * ldc;                                                        \
                for (int64_t p = 0; p < k; p++) {                                          \
                    T a = ta ? A[p * lda + i] : A[i * lda + p];                            \
                    const T *b = B + p * ldb;                                              \
                    for (int64_t j = 0; j < n; j++) c[j] += a * b[j];                      \
                }                                                                          \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < m; i++)                                                \
                for (int64_t j = 0; j < n; j++) {                                          \
                    const T *b = B + j * ldb;                                              \
                    T s = 0;                                                               \
                    if (!ta) {                                                             \
                        const T *a = A + i * lda;                                          \
                        for (int64_t p = 0; p < k; p++) s += a[p] * b[p];                  \
                    } else                                                                 \
                        for (int64_t p = 0; p < k; p++) s += A[p * lda + i] * b[p];        \
                    C[i * ldc + j] += s;                                                   \
                }                                                                          \
        }                                                                                  \
    }
GEMM(double)
GEMM(float)

void gemm(ad_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *A,
          int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, bool accumulate)
{
    if (t == AD_F64) gemm_double(ta, tb, m, n, k, A, lda, B, ldb, C, ldc, accumulate);
    else gemm_float(ta, tb, m, n, k, A, lda, B, ldb, C, ldc, accumulate);
}

/* Batch geometry: a 2-D operand is shared by every batch element (stride 0). */
typedef struct { int64_t batch, m, k, n, sa, sb, sc; } mm_dims;

static mm_dims dims_of(const ad_shape *a, const ad_shape *b)
{
    mm_dims d;
    d.m = a->dim[a->rank - 2];
    d.k = a->dim[a->rank - 1];
    d.n = b->dim[b->rank - 1];
    d.batch = a->rank == 3 ? a->dim[0] : b->rank == 3 ? b->dim[0] : 1;
    d.sa = a->rank == 3 ? d.m * d.k : 0;
    d.sb = b->rank == 3 ? d.k * d.n : 0;
    d.sc = d.m * d.n;
    return d;
}

static int matmul_shape(const ad_op_ctx *c, ad_shape *out, char *msg, size_t len)
{
    ad_shape a = node_shape(c->in[0]), b = node_shape(c->in[1]);
    char sa[96], sb[96];
    ad_shape_str(&a, sa, sizeof sa);
    ad_shape_str(&b, sb, sizeof sb);
    if (a.rank < 2 || a.rank > 3 || b.rank < 2 || b.rank > 3) {
        snprintf(msg, len, "%s x %s: operands must be 2-D, or 3-D with a batch dimension", sa, sb);
        return 1;
    }
    if (a.dim[a.rank - 1] != b.dim[b.rank - 2]) {
        snprintf(msg, len, "%s x %s: inner dimensions %lld and %lld differ", sa, sb,
                 (long long)a.dim[a.rank - 1], (long long)b.dim[b.rank - 2]);
        return 1;
    }
    if (a.rank == 3 && b.rank == 3 && a.dim[0] != b.dim[0]) {
        snprintf(msg, len, "%s x %s: batch sizes %lld and %lld differ", sa, sb,
                 (long long)a.dim[0], (long long)b.dim[0]);
        return 1;
    }
    mm_dims d = dims_of(&a, &b);
    *out = a.rank == 3 || b.rank == 3 ? AD_SHAPE(d.batch, d.m, d.n) : AD_SHAPE(d.m, d.n);
    return 0;
}

static void matmul_forward(const ad_op_ctx *c)
{
    ad_shape sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    mm_dims d = dims_of(&sa, &sb);
    size_t es = ad_dtype_size(c->out->dtype);
    const char *A = node_data(c->in[0]), *B = node_data(c->in[1]);
    char *C = node_data(c->out);
    for (int64_t t = 0; t < d.batch; t++)
        gemm(c->out->dtype, false, false, d.m, d.n, d.k, A + (size_t)(t * d.sa) * es, d.k,
             B + (size_t)(t * d.sb) * es, d.n, C + (size_t)(t * d.sc) * es, d.n, false);
}

static ad_status matmul_backward(const ad_op_ctx *c)
{
    ad_graph *g = c->graph;
    ad_shape sa = node_shape(c->in[0]), sb = node_shape(c->in[1]);
    mm_dims d = dims_of(&sa, &sb);
    size_t es = ad_dtype_size(c->out->dtype);
    const char *A = node_data(c->in[0]), *B = node_data(c->in[1]), *G = ad_node_grad_data(c->out);
    char *GA = ad_grad_buffer(g, c->in[0]), *GB = ad_grad_buffer(g, c->in[1]);
    if (g->status) return g->status;
    for (int64_t t = 0; t < d.batch; t++) {
        const char *Gt = G + (size_t)(t * d.sc) * es;
        if (GA) /* dA[m,k] += dC[m,n] B[k,n]^T */
            gemm(c->out->dtype, false, true, d.m, d.k, d.n, Gt, d.n, B + (size_t)(t * d.sb) * es,
                 d.n, GA + (size_t)(t * d.sa) * es, d.k, true);
        if (GB) /* dB[k,n] += A[m,k]^T dC[m,n] */
            gemm(c->out->dtype, true, false, d.k, d.n, d.m, A + (size_t)(t * d.sa) * es, d.k, Gt,
                 d.n, GB + (size_t)(t * d.sb) * es, d.n, true);
    }
    return AD_OK;
}

const op_entry op_matmul = {.def = {"matmul", 2, matmul_shape, matmul_forward, matmul_backward,
                             "d/dA [A B] = G B^T, d/dB [A B] = A^T G"}};

ad_node *ad_matmul(ad_graph *g, ad_node *a, ad_node *b)
{
    ad_node *in[2] = {a, b};
    return ad_apply(g, OP_MATMUL, in, 2, NULL, 0);
}
