/* cli.h - the one command-line parser every program uses.
 *
 * Options are "--name VALUE", "--name=VALUE" or bare flags ("--json").
 * Unknown options, a missing value and too many positional arguments are
 * errors (one line, exit 2 in the program). "--help"/"-h" and "--version"
 * are recognised by every program. */
#ifndef CP_CLI_H
#define CP_CLI_H

#include <stdio.h>

#include "common.h"

typedef struct {
    const char *name;    /* without the leading "--" */
    const char *metavar; /* NULL for a flag without a value */
    const char *help;
    const char *value;   /* set by cli_parse: the value, or "1" for a flag */
} CliOpt;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_VERSION = 2, CLI_ERROR = -1 };

/* Positional arguments go into pos[0..*npos). */
int cli_parse(CliOpt *opts, int nopts, int argc, char **argv, const char **pos, int *npos, int maxpos,
              CpErr *e);
void cli_usage(FILE *f, const char *synopsis, const char *about, const CliOpt *opts, int nopts);
/* Value of option `name` or NULL when not given. */
const char *cli_get(const CliOpt *opts, int nopts, const char *name);
/* Integer option with range check; *out unchanged when the option is absent. */
int cli_get_int(const CliOpt *opts, int nopts, const char *name, long lo, long hi, long *out, CpErr *e);
/* Number option in [lo, hi] (NaN refused); *out unchanged when absent. */
int cli_get_double(const CliOpt *opts, int nopts, const char *name, double lo, double hi, double *out, CpErr *e);

#endif

/* The common head of every program's main: parse, handle --help/--version and
 * errors. Returns -1 when main should go on, else the exit code to return
 * (0 after --help/--version, 2 after a usage error, printed as one line). */
int cli_main_head(const char *prog, const char *synopsis, const char *about, CliOpt *opts, int nopts,
                  int argc, char **argv, const char **pos, int *npos, int maxpos, int minpos);
