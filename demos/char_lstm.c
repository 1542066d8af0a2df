/* char_lstm: a character-level language model, an LSTM trained to predict the next character
 * of a text.
 *
 *   char_lstm                              # Debian's fortunes (apt-get install fortunes-min)
 *   char_lstm --data /usr/share/dict/words --hidden 128 --sample 500
 *
 * The model is torch's nn.Embedding(V, E) -> nn.LSTM(E, H) -> nn.Linear(H, V) over the V
 * distinct bytes of the text, under torch's names (embed.weight, lstm.weight_ih_l0, ...,
 * head.weight, head.bias), so a model saved here loads into that module with load_state_dict.
 * Training is truncated backpropagation through time: the first 90% of the text is cut into
 * --batch streams read side by side, --seq-len characters at a step, and the state at the end of
 * a step starts the next one (as a constant: no gradient crosses a step).  The last 10% is held
 * out and scored in bits per character; then the model writes --sample characters of its own.
 * With --init, --dtype float64 and --json, PyTorch reproduces the step losses
 * (tests/char_lstm_torch.py). */
#include "ad.h"
#include "nn.h"
#include "optim.h"
#include "opts.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG "char_lstm"
#define DEFAULT_DATA "/usr/share/games/fortunes/fortunes"
#define HELD_OUT 0.1

static const char *USAGE =
    "usage: char_lstm [options]\n"
    "Trains a character-level LSTM language model on a text (Debian's fortunes by default),\n"
    "reports bits per character on the last 10% of the text, and samples text from the model.\n";

static const char *FOOTER =
    "\n"
    "The training text is read as --batch streams side by side, --seq-len characters per step,\n"
    "each step starting from the state the previous one ended in.  Exit status: 0 done, 1\n"
    "training or a file failed, 2 bad options or no text.\n";

typedef struct {
    int epochs, steps, batch, seq_len, hidden, embed, optimizer, threads, sample, dtype;
    double lr, temperature;
    int64_t seed, limit;
    bool json;
    const char *data, *save, *init;
} options;

static bool positive(double x) { return x > 0; }

static const char *const DTYPE_NAMES[] = {"float32", "float64", NULL};
static const int DTYPE_VALUES[] = {AD_F32, AD_F64};
static const char *const OPTIM_NAMES[] = {"sgd", "adam", NULL};
static const int OPTIM_VALUES[] = {OPTIM_GD, OPTIM_ADAM};

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.epochs = 20, .batch = 32, .seq_len = 64, .hidden = 128, .embed = 32, .optimizer = OPTIM_ADAM,
                   .sample = 300, .dtype = AD_F32, .lr = 0.002, .temperature = 0.8, .seed = 1, .data = DEFAULT_DATA};
    opts_def defs[] = {
        {"", OPTS_HEADING, NULL, NULL, .help = "model and training:"},
        {"--hidden", OPTS_INT, &o->hidden, "N", .help = "LSTM units (default 128)", .lo = 1, .hi = 1 << 16},
        {"--embed", OPTS_INT, &o->embed, "N", .help = "embedding size (default 32)", .lo = 1, .hi = 1 << 16},
        {"--epochs", OPTS_INT, &o->epochs, "N", .help = "passes over the training text (default 20)", .lo = 1, .hi = 1e6},
        {"--steps", OPTS_INT, &o->steps, "N", .help = "stop after N steps instead (default: the epochs' steps)", .lo = 1,
         .hi = 1e9},
        {"--batch", OPTS_INT, &o->batch, "N", .help = "streams read side by side (default 32)", .lo = 1, .hi = 1 << 16},
        {"--seq-len", OPTS_INT, &o->seq_len, "N", .help = "characters per step, the truncation of BPTT (default 64)",
         .lo = 1, .hi = 1 << 16},
        {"--optimizer", OPTS_CHOICE, &o->optimizer, "O", .help = "sgd or adam (default adam)", .choices = OPTIM_NAMES,
         .values = OPTIM_VALUES},
        {"--lr", OPTS_REAL, &o->lr, "X", .help = "learning rate (default 0.002)", .check = positive,
         .want = "a positive number"},
        {"--seed", OPTS_INT64, &o->seed, "N", .help = "initial weights and sampling (default 1)", .lo = 0,
         .hi = (double)INT64_MAX},
        {"--threads", OPTS_INT, &o->threads, "N", .help = "threads for the matrix products (default: all cores)", .lo = 1,
         .hi = 256},
        {"--dtype", OPTS_CHOICE, &o->dtype, "T", .help = "float32 or float64 (default float32)", .choices = DTYPE_NAMES,
         .values = DTYPE_VALUES},
        {"", OPTS_HEADING, NULL, NULL, .help = "text and files:"},
        {"--data", OPTS_TEXT, &o->data, "PATH", .help = "the text (default " DEFAULT_DATA ")"},
        {"--limit", OPTS_INT64, &o->limit, "N", .help = "only the first N characters of it", .lo = 2,
         .hi = (double)INT64_MAX},
        {"--init", OPTS_TEXT, &o->init, "PATH", .help = "start from the weights in a safetensors file (torch's names)"},
        {"--save", OPTS_TEXT, &o->save, "PATH", .help = "write the trained model (safetensors, loads into PyTorch)"},
        {"", OPTS_HEADING, NULL, NULL, .help = "output:"},
        {"--sample", OPTS_INT, &o->sample, "N", .help = "characters to generate after training (default 300)", .lo = 0,
         .hi = 1e7},
        {"--temperature", OPTS_REAL, &o->temperature, "X",
         .help = "sampling temperature: below 1 safer, above 1 wilder (default 0.8)", .check = positive,
         .want = "a positive number"},
        {"--json", OPTS_FLAG, &o->json, NULL,
         .help = "end the output with {\"steps\": S, \"step_loss\": [...], \"bpc\": B,\n\"seconds\": T, \"sample\": \"...\"}"},
    };
    opts_spec spec = {.prog = PROG, .usage = USAGE, .defs = defs, .ndefs = sizeof defs / sizeof *defs, .footer = FOOTER};
    return opts_parse(&spec, argc, argv, NULL, NULL, 0);
}

/* ---- the text ---- */

typedef struct {
    unsigned char *bytes;
    int64_t len;
    int vocab;             /* distinct bytes */
    unsigned char chars[256]; /* id -> byte, in byte order */
    int id[256];           /* byte -> id, -1 if absent */
} text;

/* Reads up to limit bytes (0: all) of path; exit status 2 with a message if it cannot. */
static int read_text(const char *path, int64_t limit, text *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, PROG ": cannot read %s: %s%s\n", path, strerror(errno),
                strcmp(path, DEFAULT_DATA) == 0 ? " (apt-get install fortunes-min, or --data PATH)" : "");
        return 2;
    }
    size_t cap = 1 << 16;
    t->bytes = malloc(cap);
    size_t k;
    while (t->bytes && (k = fread(t->bytes + t->len, 1, cap - (size_t)t->len, f)) > 0) {
        t->len += (int64_t)k;
        if (limit && t->len >= limit) {
            t->len = limit;
            break;
        }
        if ((size_t)t->len == cap) {
            unsigned char *b = realloc(t->bytes, cap *= 2);
            if (!b) free(t->bytes);
            t->bytes = b;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!t->bytes || bad) {
        fprintf(stderr, PROG ": cannot read %s: %s\n", path, t->bytes ? "read error" : "out of memory");
        return free(t->bytes), 2;
    }
    bool seen[256] = {false};
    for (int64_t i = 0; i < t->len; i++) seen[t->bytes[i]] = true;
    for (int c = 0; c < 256; c++) {
        t->id[c] = seen[c] ? t->vocab : -1;
        if (seen[c]) t->chars[t->vocab++] = (unsigned char)c;
    }
    return 0;
}

/* A stretch of the text read as n streams of seg + 1 characters side by side (inputs and the
 * characters that follow them), in steps of up to T characters. */
typedef struct {
    const unsigned char *bytes;
    int n;
    int64_t seg;
} streams;

static streams make_streams(const unsigned char *bytes, int64_t len, int n)
{
    return (streams){bytes, n, (len - 1) / n};
}

/* The ids of step [from, from + T) of every stream, time-major ([T, n] as the LSTM reads them),
 * and the next characters' ids as labels. */
static void step_ids(const text *tx, const streams *s, int64_t from, int T, int64_t *ids, int32_t *labels)
{
    for (int t = 0; t < T; t++)
        for (int b = 0; b < s->n; b++) {
            int64_t at = (int64_t)b * s->seg + from + t;
            ids[t * s->n + b] = tx->id[s->bytes[at]];
            labels[t * s->n + b] = tx->id[s->bytes[at + 1]];
        }
}

/* ---- the model ---- */

typedef struct {
    nn_model *m;
    nn_embedding embed;
    nn_rnn lstm;
    nn_linear head;
} model;

/* The scores [T*n, V] of the next character after each input, and the last states. */
static ad_node *scores(ad_graph *g, model *md, int T, int n, const int64_t *ids, ad_node *h, ad_node *c, ad_node **h_last,
                       ad_node **c_last)
{
    ad_node *x = nn_embedding_forward(g, &md->embed, AD_SHAPE(T, n), ids);
    ad_node *y = nn_rnn_forward(g, &md->lstm, x, h, c, h_last, c_last);
    return nn_linear_forward(g, &md->head, ad_reshape(g, y, AD_SHAPE((int64_t)T * n, md->lstm.hidden)));
}

/* The carried state: h and c of every stream. */
typedef struct {
    ad_tensor *h, *c;
} state;

static void carry(state *st, ad_node *h, ad_node *c)
{
    int64_t n = ad_tensor_size(st->h);
    memcpy(ad_tensor_data(st->h), ad_node_data(h), (size_t)n * ad_dtype_size(ad_tensor_dtype(st->h)));
    memcpy(ad_tensor_data(st->c), ad_node_data(c), (size_t)n * ad_dtype_size(ad_tensor_dtype(st->c)));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Mean cross-entropy in nats over the streams of s, run to the end of their segments in steps
 * of up to T characters without gradients. */
static ad_status evaluate(ad_graph *g, model *md, const text *tx, const streams *s, int T, double *nats)
{
    ad_dtype dt = nn_model_dtype(md->m);
    state st = {ad_tensor_new(dt, AD_SHAPE(s->n, md->lstm.hidden)), ad_tensor_new(dt, AD_SHAPE(s->n, md->lstm.hidden))};
    int64_t *ids = malloc((size_t)T * (size_t)s->n * sizeof *ids);
    int32_t *labels = malloc((size_t)T * (size_t)s->n * sizeof *labels);
    ad_status rc = st.h && st.c && ids && labels ? AD_OK : AD_ERR_NOMEM;
    double sum = 0;
    for (int64_t from = 0; rc == AD_OK && from < s->seg; from += T) {
        int len = (int)(s->seg - from < T ? s->seg - from : T);
        step_ids(tx, s, from, len, ids, labels);
        ad_graph_reset(g);
        ad_set_grad_enabled(g, false);
        ad_node *hl, *cl;
        ad_node *sc = scores(g, md, len, s->n, ids, ad_const_tensor(g, st.h), ad_const_tensor(g, st.c), &hl, &cl);
        ad_node *loss = ad_cross_entropy(g, sc, labels);
        if (!loss) rc = ad_status_of(g);
        else sum += ad_value(loss) * len * s->n, carry(&st, hl, cl);
    }
    ad_set_grad_enabled(g, true);
    *nats = sum / (double)(s->seg * s->n);
    free(ids), free(labels), ad_tensor_free(st.h), ad_tensor_free(st.c);
    return rc;
}

/* Writes n characters drawn from the model, each fed back as the next input, into out (n + 1
 * bytes), starting after a newline (or the text's first character). */
static ad_status sample(ad_graph *g, model *md, const text *tx, int n, double temperature, ad_rng *rng, char *out)
{
    ad_dtype dt = nn_model_dtype(md->m);
    int V = tx->vocab;
    state st = {ad_tensor_new(dt, AD_SHAPE(1, md->lstm.hidden)), ad_tensor_new(dt, AD_SHAPE(1, md->lstm.hidden))};
    ad_status rc = st.h && st.c ? AD_OK : AD_ERR_NOMEM;
    int64_t id = tx->id['\n'] >= 0 ? tx->id['\n'] : tx->id[tx->bytes[0]];
    for (int k = 0; k < n && rc == AD_OK; k++) {
        ad_graph_reset(g);
        ad_set_grad_enabled(g, false);
        ad_node *hl, *cl;
        ad_node *sc = scores(g, md, 1, 1, &id, ad_const_tensor(g, st.h), ad_const_tensor(g, st.c), &hl, &cl);
        ad_node *prob = ad_softmax(g, ad_mul_scalar(g, sc, 1 / temperature), 1);
        if (!prob) {
            rc = ad_status_of(g);
            break;
        }
        carry(&st, hl, cl);
        double u = ad_rng_uniform(rng), acc = 0;
        id = V - 1;
        for (int v = 0; v < V; v++)
            if ((acc += ad_node_get(prob, v)) > u) {
                id = v;
                break;
            }
        out[k] = (char)tx->chars[id];
    }
    out[rc == AD_OK ? n : 0] = 0;
    ad_set_grad_enabled(g, true);
    ad_tensor_free(st.h), ad_tensor_free(st.c);
    return rc;
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') printf("\\%c", *c);
        else if (*c < 0x20 || *c >= 0x7f) printf("\\u%04x", *c);
        else putchar(*c);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    text tx;
    if ((rc = read_text(o.data, o.limit, &tx)) != 0) return rc;
    int64_t train_len = tx.len - (int64_t)((double)tx.len * HELD_OUT);
    streams tr = make_streams(tx.bytes, train_len, o.batch);
    /* the held-out tenth as up to --batch streams of at least --seq-len characters */
    int64_t held = tx.len - train_len, fit = (held - 1) / o.seq_len;
    streams ho = make_streams(tx.bytes + train_len, held, fit < 1 ? 1 : fit < o.batch ? (int)fit : o.batch);
    int64_t per_epoch = tr.seg / o.seq_len;
    if (per_epoch < 1 || ho.seg < 1) {
        fprintf(stderr, PROG ": %s: %lld characters are too few for %d streams of %d characters and a held-out tenth\n",
                o.data, (long long)tx.len, o.batch, o.seq_len + 1);
        return free(tx.bytes), 2;
    }
    if (o.threads) ad_set_threads(o.threads);

    ad_dtype dt = (ad_dtype)o.dtype;
    model md = {.m = nn_model_new(dt)};
    ad_rng rng;
    ad_rng_seed(&rng, (uint64_t)o.seed);
    char err[512] = "";
    rc = !md.m ? 1 : 0;
    if (!rc && (nn_embedding_add(md.m, &md.embed, "embed", tx.vocab, o.embed, &rng) != AD_OK ||
                nn_rnn_add(md.m, &md.lstm, NN_LSTM, "lstm", o.embed, o.hidden, &rng) != AD_OK ||
                nn_linear_add(md.m, &md.head, "head", o.hidden, tx.vocab, true, &rng) != AD_OK))
        snprintf(err, sizeof err, "%s", nn_model_error(md.m)), rc = 1;
    if (!rc && o.init && nn_model_load(md.m, o.init, err, sizeof err) != AD_OK) rc = 1;
    optim_cfg oc = optim_defaults((optim_kind)o.optimizer, o.lr);
    int nparams = 0;
    while (!rc && nn_model_params(md.m)[nparams]) nparams++;
    optim *opt = rc ? NULL : optim_new(nn_model_params(md.m), nparams, &oc, err, sizeof err);
    ad_graph *g = ad_graph_new();
    state st = {ad_tensor_new(dt, AD_SHAPE(o.batch, o.hidden)), ad_tensor_new(dt, AD_SHAPE(o.batch, o.hidden))};
    int64_t total = o.steps ? o.steps : per_epoch * o.epochs;
    int64_t *ids = malloc((size_t)o.seq_len * (size_t)o.batch * sizeof *ids);
    int32_t *labels = malloc((size_t)o.seq_len * (size_t)o.batch * sizeof *labels);
    double *losses = malloc((size_t)total * sizeof *losses);
    char *text_out = malloc((size_t)o.sample + 1);
    if (!rc && (!opt || !g || !st.h || !st.c || !ids || !labels || !losses || !text_out)) {
        if (!*err) snprintf(err, sizeof err, "out of memory");
        rc = 1;
    }
    if (rc) fprintf(stderr, PROG ": %s\n", *err ? err : "out of memory");
    else {
        printf("%s: %lld characters, %d distinct; %lld to train, %lld held out\n", o.data, (long long)tx.len, tx.vocab,
               (long long)train_len, (long long)(tx.len - train_len));
        printf("embedding %d, LSTM %d, %lld parameters, %s; %s lr %g, %d streams of %d characters, %lld steps per "
               "epoch\n", o.embed, o.hidden, (long long)nn_model_num_param_elements(md.m), ad_dtype_name(dt),
               OPTIM_NAMES[o.optimizer == OPTIM_ADAM], o.lr, o.batch, o.seq_len, (long long)per_epoch);
    }
    double start = now(), window = 0;
    int64_t every = total / 20 > 0 ? total / 20 : 1;
    for (int64_t k = 0; !rc && k < total; k++) {
        int64_t pos = k % per_epoch;
        if (pos == 0) ad_tensor_fill(st.h, 0), ad_tensor_fill(st.c, 0); /* each epoch starts afresh */
        step_ids(&tx, &tr, pos * o.seq_len, o.seq_len, ids, labels);
        ad_graph_reset(g);
        ad_node *hl, *cl;
        ad_node *sc = scores(g, &md, o.seq_len, o.batch, ids, ad_const_tensor(g, st.h), ad_const_tensor(g, st.c), &hl, &cl);
        ad_node *loss = ad_cross_entropy(g, sc, labels);
        optim_zero_grad(opt);
        if (!loss || ad_backward(g, loss) != AD_OK) {
            fprintf(stderr, PROG ": step %lld: %s\n", (long long)k + 1, ad_error(g));
            rc = 1;
            break;
        }
        losses[k] = ad_value(loss);
        if (!isfinite(losses[k])) {
            fprintf(stderr, PROG ": the loss is %g at step %lld: training diverged; try a smaller --lr\n", losses[k],
                    (long long)k + 1);
            rc = 1;
            break;
        }
        carry(&st, hl, cl);
        if (optim_step(opt) != AD_OK) {
            fprintf(stderr, PROG ": %s\n", optim_error(opt));
            rc = 1;
            break;
        }
        window += losses[k];
        if ((k + 1) % every == 0 || k + 1 == total) {
            int64_t m = (k + 1) % every ? (k + 1) % every : every;
            printf("step %lld/%lld (epoch %lld)  loss %.4f  %.0f chars/s\n", (long long)k + 1, (long long)total,
                   (long long)(k / per_epoch + 1), window / (double)m,
                   (double)(k + 1) * o.batch * o.seq_len / (now() - start));
            window = 0;
        }
    }
    double seconds = now() - start, nats = NAN;
    if (!rc && evaluate(g, &md, &tx, &ho, o.seq_len, &nats) != AD_OK) {
        fprintf(stderr, PROG ": %s\n", ad_error(g));
        rc = 1;
    }
    if (!rc) printf("held-out: %.4f bits per character (%lld characters)\n", nats / log(2.0), (long long)(ho.seg * ho.n));
    if (!rc && o.sample > 0) {
        if (sample(g, &md, &tx, o.sample, o.temperature, &rng, text_out) != AD_OK) {
            fprintf(stderr, PROG ": %s\n", ad_error(g));
            rc = 1;
        } else printf("sample (temperature %g):\n%s\n", o.temperature, text_out);
    }
    if (!rc && o.save) {
        if (nn_model_save(md.m, o.save, err, sizeof err) != AD_OK) {
            fprintf(stderr, PROG ": %s\n", err);
            rc = 1;
        } else printf("model saved to %s\n", o.save);
    }
    if (!rc && o.json) {
        printf("{\"steps\": %lld, \"seconds\": %.3f, \"bpc\": %.17g, \"vocab\": %d, \"step_loss\": [", (long long)total,
               seconds, nats / log(2.0), tx.vocab);
        for (int64_t k = 0; k < total; k++) printf(k ? ", %.17g" : "%.17g", losses[k]);
        fputs("], \"sample\": ", stdout);
        json_string(o.sample > 0 ? text_out : "");
        puts("}");
    }
    free(ids), free(labels), free(losses), free(text_out), free(tx.bytes);
    ad_tensor_free(st.h), ad_tensor_free(st.c);
    ad_graph_free(g);
    optim_free(opt);
    nn_model_free(md.m);
    return rc;
}
