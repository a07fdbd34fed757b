/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static CliOpt *find(CliOpt *opts, int nopts, const char *name, size_t len) {
    for (int i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) return &opts[i];
    return NULL;
}

int cli_parse(CliOpt *opts, int nopts, int argc, char **argv, const char **pos, int *npos, int maxpos,
              CpErr *e) {
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return CLI_HELP;
        if (strcmp(a, "--version") == 0) return CLI_VERSION;
        if (strcmp(a, "--") == 0) { /* everything after is positional */
            for (i++; i < argc; i++) {
                if (*npos >= maxpos) return cp_fail(e, "too many arguments: '%s' (see --help)", argv[i]);
                pos[(*npos)++] = argv[i];
            }
            break;
        }
        if (a[0] == '-' && a[1] != 0) {
            if (a[1] != '-') return cp_fail(e, "unknown option '%s' (options are --long; see --help)", a);
            const char *name = a + 2, *eq = strchr(name, '=');
            CliOpt *o = find(opts, nopts, name, eq ? (size_t)(eq - name) : strlen(name));
            if (!o) return cp_fail(e, "unknown option '%s' (see --help)", a);
            if (!o->metavar) {
                if (eq) return cp_fail(e, "option --%s takes no value", o->name);
                o->value = "1";
            } else if (eq) {
                o->value = eq + 1;
            } else {
                if (i + 1 >= argc) return cp_fail(e, "option --%s needs a value (%s)", o->name, o->metavar);
                o->value = argv[++i];
            }
            continue;
        }
        if (*npos >= maxpos) return cp_fail(e, "too many arguments: '%s' (see --help)", a);
        pos[(*npos)++] = a;
    }
    return CLI_OK;
}

void cli_usage(FILE *f, const char *synopsis, const char *about, const CliOpt *opts, int nopts) {
    fprintf(f, "usage: %s\n\n%s\n", synopsis, about);
    if (nopts) fprintf(f, "\noptions:\n");
    for (int i = 0; i < nopts; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].metavar ? " " : "",
                 opts[i].metavar ? opts[i].metavar : "");
        fprintf(f, "  %-28s %s\n", left, opts[i].help);
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "--help", "show this help and exit", "--version",
            "print version, git commit and compiled-in backends");
}

const char *cli_get(const CliOpt *opts, int nopts, const char *name) {
    for (int i = 0; i < nopts; i++)
        if (strcmp(opts[i].name, name) == 0) return opts[i].value;
    return NULL;
}

int cli_get_int(const CliOpt *opts, int nopts, const char *name, long lo, long hi, long *out, CpErr *e) {
    const char *v = cli_get(opts, nopts, name);
    if (!v) return CP_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cp_fail(e, "--%s: expected an integer in [%ld, %ld], got '%s'", name, lo, hi, v);
    *out = x;
    return CP_OK;
}

int cli_get_double(const CliOpt *opts, int nopts, const char *name, double lo, double hi, double *out, CpErr *e) {
    const char *v = cli_get(opts, nopts, name);
    if (!v) return CP_OK;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi)) /* NaN fails the range test */
        return cp_fail(e, "--%s: expected a number in [%g, %g], got '%s'", name, lo, hi, v);
    *out = x;
    return CP_OK;
}

#include "version.h"

int cli_main_head(const char *prog, const char *synopsis, const char *about, CliOpt *opts, int nopts,
                  int argc, char **argv, const char **pos, int *npos, int maxpos, int minpos) {
    CpErr e;
    int rc = cli_parse(opts, nopts, argc, argv, pos, npos, maxpos, &e);
    if (rc == CLI_HELP) {
        cli_usage(stdout, synopsis, about, opts, nopts);
        return 0;
    }
    if (rc == CLI_VERSION) {
        cp_print_version(prog);
        return 0;
    }
    if (rc == CLI_ERROR) {
        fprintf(stderr, "%s: %s\n", prog, e.msg);
        return 2;
    }
    if (*npos < minpos) {
        fprintf(stderr, "%s: missing arguments; usage: %s (see --help)\n", prog, synopsis);
        return 2;
    }
    return -1;
}
