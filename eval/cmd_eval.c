/* cmd_eval.c - the `eval` program. Not implemented yet: this build parses the
 * command line of the user contract (DESIGN.md "Commands"), answers --help and
 * --version, rejects unknown options, and says plainly that the work itself
 * arrives with issue 7. */
#include <stdio.h>

#include "cli.h"

int main(int argc, char **argv) {
    CliOpt opts[] = {
        {"pred", "DIR", "predicted masks (NAME_cp_masks.tif)", NULL},
        {"gt", "DIR", "ground-truth masks (NAME_masks.tif)", NULL},
        {"images", "DIR", "images, for --baseline", NULL},
        {"baseline", "NAME", "binary | otsu | gaussian-otsu | adaptive", NULL},
        {"sweep", NULL, "run infer over a parameter grid", NULL},
        {"json", NULL, "machine-readable output", NULL},
        {"out", "DIR", "where the Markdown/CSV/PNG reports go", NULL},
    };
    const char *pos[8];
    int npos = 0;
    int rc = cli_main_head("eval", "eval --pred DIR --gt DIR", "Score predicted masks against ground truth (AP at IoU 0.5/0.75/0.9, IoU, F1).", opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, pos, &npos, 0, 0);
    if (rc >= 0) return rc;
    fprintf(stderr, "eval: not implemented yet in this build (arrives with issue 7); see --help\n");
    return 3;
}
