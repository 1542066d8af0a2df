/*
 * opts.h — the demos' command lines: one table-driven parser for every demo and the CLI.
 *
 * A program describes its options in a table and hands it to opts_parse, which reads
 * --name value and --name=value, checks each value, stores it, and prints --help from the same
 * table, so an option's name, range and help text are written once:
 *
 *     long steps = 100;
 *     double rate = 1;
 *     const char *svg = "out.svg";
 *     opts_def defs[] = {
 *         {"--steps", OPTS_LONG, &steps, "N", "gradient-descent steps (default 100)", .lo = 1, .hi = 1e5},
 *         {"--rate", OPTS_REAL, &rate, "R", "learning rate (default 1)", .lo = 1e-9, .hi = 100},
 *         {"--svg", OPTS_TEXT, &svg, "PATH", "the picture (default out.svg)"},
 *     };
 *     opts_spec spec = {"demo", "usage: demo [options]\n", defs, sizeof defs / sizeof *defs};
 *     int rc = opts_parse(&spec, argc, argv, NULL, NULL, 0);
 *     if (rc >= 0) return rc;
 *
 * Errors.  A bad command line prints one message on stderr, "PROG: WHAT (PROG --help for
 * usage)", and opts_parse returns 2: unknown options, missing values, and values outside what
 * the option takes ("--steps takes a whole number from 1 to 100000, not 'abc'").
 */
#ifndef OPTS_H
#define OPTS_H

#include <stdbool.h>
#include <stdio.h>

/* What an option's value is, and what dest points to. */
typedef enum {
    OPTS_FLAG,    /* no value; stores true into a bool */
    OPTS_CONST,   /* no value; stores (int)lo into an int (a mode chosen by a flag) */
    OPTS_INT,     /* a whole number in [lo, hi] into an int */
    OPTS_LONG,    /* the same into a long */
    OPTS_INT64,   /* the same into an int64_t */
    OPTS_REAL,    /* a finite number in [lo, hi] (or for which check holds) into a double */
    OPTS_TEXT,    /* any text into a const char * (empty only with empty_ok) */
    OPTS_CHOICE,  /* one of choices[] into an int: values[k], or k without values */
    OPTS_CUSTOM,  /* parse(value, dest) decides; want says what it takes */
    OPTS_HEADING, /* no option: help is a heading that starts a group in --help */
} opts_kind;

/* One option.  Fields after help are optional (designated initialisers). */
typedef struct {
    const char *name;                   /* "--steps" */
    opts_kind kind;
    void *dest;                         /* where the value goes (see opts_kind) */
    const char *arg;                    /* the value in --help ("N", "PATH"); NULL for flags */
    const char *help;                   /* --help's text; '\n' continues on an indented line */
    double lo, hi;                      /* accepted range, both ends included */
    const char *want;                   /* "takes ..." in errors; NULL: said from lo and hi */
    bool (*check)(double x);            /* OPTS_REAL: accepts x instead of lo..hi */
    bool (*parse)(const char *value, void *dest); /* OPTS_CUSTOM */
    const char *const *choices;         /* OPTS_CHOICE: names, NULL-terminated */
    const int *values;                  /* OPTS_CHOICE: what each name stores (NULL: its index) */
    bool empty_ok;                      /* OPTS_TEXT: "" is a value (else "needs a file name") */
    int tag;                            /* free for the program (fashion_mnist: training only) */
    int seen;                           /* set by opts_parse: 0 if not given, else the position
                                         * of its first use among the options given (1, 2, ...) */
} opts_def;

/* A program's command line. */
typedef struct {
    const char *prog;        /* the program's name, which starts every message */
    const char *usage;       /* --help's text above the options ("usage: prog [options]\n...") */
    opts_def *defs;
    int ndefs;
    const char *footer;      /* --help's text below the options, or NULL */
    bool hint_below;         /* "(prog --help for usage)" on a line of its own */
} opts_spec;

/* Makes the program exit with status 1 and "PROG: cannot write the output: REASON" on
 * stderr when what it printed on stdout could not all be written (a full disk, a closed
 * stdout), checked at exit by flushing and closing stdout; a program that printed is
 * otherwise told of a lost output by nothing.  opts_parse calls it, so every demo and the CLI
 * have it; calling it again only changes the name. */
void opts_check_stdout_at_exit(const char *prog);

/* Parses argv[1..argc-1] by spec.  Arguments that do not start with "--", and every argument
 * after a "--" of its own, go, in order, into pos[] (room for maxpos; *npos counts them) when
 * pos is not NULL, and are errors otherwise.
 * Returns -1 to go on, 0 after printing --help (or -h) on stdout, or 2 after printing a
 * usage error on stderr.  Calls opts_check_stdout_at_exit(spec->prog) first. */
int opts_parse(const opts_spec *spec, int argc, char **argv, const char **pos, int *npos, int maxpos);

/* Prints a usage error, "PROG: MESSAGE (PROG --help for usage)", on stderr and returns 2, for
 * the checks a program makes itself (options that do not go together, positional arguments). */
int opts_error(const opts_spec *spec, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prints --help from spec on out: the usage text, one line per option with its help aligned in
 * a column, "--help", and the footer. */
void opts_help(const opts_spec *spec, FILE *out);

#endif
