/* test_cli.c - the shared command-line parser: options with values in both
 * spellings, flags, positionals, and each kind of usage error. */
#include <string.h>

#include "cli.h"
#include "harness.h"

#define NOPTS 3
static void reset(CliOpt *o) {
    CliOpt init[NOPTS] = {{"seed", "N", "seed", NULL}, {"json", NULL, "flag", NULL}, {"out", "DIR", "out", NULL}};
    memcpy(o, init, sizeof init);
}

TEST(test_parse_ok) {
    CliOpt o[NOPTS];
    reset(o);
    char *argv[] = {"prog", "a.bin", "--seed", "42", "--json", "--out=run/", "b.bin"};
    const char *pos[4];
    int npos;
    CpErr e;
    CHECK(cli_parse(o, NOPTS, 7, argv, pos, &npos, 4, &e) == CLI_OK);
    CHECK(npos == 2 && strcmp(pos[0], "a.bin") == 0 && strcmp(pos[1], "b.bin") == 0);
    CHECK(strcmp(cli_get(o, NOPTS, "seed"), "42") == 0);
    CHECK(strcmp(cli_get(o, NOPTS, "json"), "1") == 0);
    CHECK(strcmp(cli_get(o, NOPTS, "out"), "run/") == 0);
    long seed = 0;
    CHECK(cli_get_int(o, NOPTS, "seed", 0, 100, &seed, &e) == CP_OK && seed == 42);
    CHECK(cli_get_int(o, NOPTS, "seed", 0, 10, &seed, &e) == CP_EFAIL && strstr(e.msg, "--seed"));
    double d = -1;
    CHECK(cli_get_double(o, NOPTS, "seed", 0, 100, &d, &e) == CP_OK && d == 42.0);
    CHECK(cli_get_double(o, NOPTS, "seed", 0, 41.5, &d, &e) == CP_EFAIL && strstr(e.msg, "--seed") && d == 42.0);
    CHECK(cli_get_double(o, NOPTS, "json", 0, 100, &d, &e) == CP_OK && d == 1.0);
    char *nan_argv[] = {"prog", "--seed", "nan"};
    reset(o);
    CHECK(cli_parse(o, NOPTS, 3, nan_argv, pos, &npos, 4, &e) == CLI_OK);
    CHECK(cli_get_double(o, NOPTS, "seed", -1e9, 1e9, &d, &e) == CP_EFAIL && strstr(e.msg, "'nan'"));
    char *argv2[] = {"prog", "--", "--json"};
    reset(o);
    CHECK(cli_parse(o, NOPTS, 3, argv2, pos, &npos, 4, &e) == CLI_OK && npos == 1 && !cli_get(o, NOPTS, "json"));
}

TEST(test_parse_errors) {
    struct {
        int argc;
        char *argv[4];
        const char *expect;
    } cases[] = {
        {2, {"prog", "--bogus"}, "unknown option '--bogus'"},
        {2, {"prog", "-x"}, "unknown option '-x'"},
        {2, {"prog", "--seed"}, "needs a value"},
        {2, {"prog", "--json=1"}, "takes no value"},
        {4, {"prog", "a", "b", "c"}, "too many arguments"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CliOpt o[NOPTS];
        reset(o);
        const char *pos[2];
        int npos;
        CpErr e;
        CHECKF(cli_parse(o, NOPTS, cases[i].argc, cases[i].argv, pos, &npos, 2, &e) == CLI_ERROR, "case %zu", i);
        CHECKF(strstr(e.msg, cases[i].expect) != NULL, "case %zu: %s", i, e.msg);
    }
    CliOpt o[NOPTS];
    reset(o);
    const char *pos[2];
    int npos;
    CpErr e;
    char *h[] = {"prog", "--seed", "1", "--help"}, *v[] = {"prog", "--version"};
    CHECK(cli_parse(o, NOPTS, 4, h, pos, &npos, 2, &e) == CLI_HELP);
    CHECK(cli_parse(o, NOPTS, 2, v, pos, &npos, 2, &e) == CLI_VERSION);
}

TEST_MAIN(T(test_parse_ok), T(test_parse_errors))
