/* cmd_compare.c - the `compare` program. Not implemented yet: this build parses the
 * command line of the user contract (DESIGN.md "Commands"), answers --help and
 * --version, rejects unknown options, and says plainly that the work itself
 * arrives with issue 7. */
#include <stdio.h>

#include "cli.h"

int main(int argc, char **argv) {
    CliOpt opts[] = {
        {"json", NULL, "machine-readable output", NULL},
        {"out", "DIR", "where CSV/PNG reports go", NULL},
    };
    const char *pos[8];
    int npos = 0;
    int rc = cli_main_head("compare", "compare A B [C ...]", "Compare models (model.bin), masks (_cp_masks.tif) or whole runs (run folders).", opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, pos, &npos, 8, 2);
    if (rc >= 0) return rc;
    fprintf(stderr, "compare: not implemented yet in this build (arrives with issue 7); see --help\n");
    return 3;
}
