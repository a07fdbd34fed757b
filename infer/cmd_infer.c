/* cmd_infer.c - the `infer` program. Not implemented yet: this build parses the
 * command line of the user contract (DESIGN.md "Commands"), answers --help and
 * --version, rejects unknown options, and says plainly that the work itself
 * arrives with issue 6. */
#include <stdio.h>

#include "cli.h"

int main(int argc, char **argv) {
    CliOpt opts[] = {
        {"out", "DIR", "where results go (never over the inputs)", NULL},
        {"dir", "DIR", "run every image of a folder", NULL},
        {"backend", "NAME", "cpu | cuda | cudnn", NULL},
        {"threads", "N", "CPU threads (results do not depend on it)", NULL},
        {"diameter", "D", "cell diameter in pixels (rescales the image)", NULL},
        {"channels", "C1,C2", "Cellpose channel selection", NULL},
        {"page", "N", "page of a multi-page TIFF", NULL},
        {"cellprob-threshold", "T", "threshold on the cell probability logit (0.0)", NULL},
        {"flow-threshold", "T", "maximum flow error per mask (0.4; 0 disables)", NULL},
        {"niter", "N", "Euler integration steps (default from the diameter)", NULL},
        {"min-size", "N", "drop masks smaller than N pixels (15)", NULL},
        {"max-size-fraction", "F", "drop masks larger than F of the image (0.4)", NULL},
        {"tile-overlap", "F", "tile overlap fraction (0.1)", NULL},
        {"batch-size", "N", "tiles per forward pass (results do not depend on it)", NULL},
        {"augment", NULL, "test-time flips", NULL},
        {"save-flows", NULL, "write NAME_flows.tif (dY, dX, cellprob)", NULL},
        {"save-outlines", NULL, "write NAME_outlines.png", NULL},
        {"dump-features", "LAYER", "write a PNG of one layer's feature maps", NULL},
    };
    const char *pos[8];
    int npos = 0;
    int rc = cli_main_head("infer", "infer MODEL IMAGE [options]", "Segment an image with a trained model; writes NAME_cp_masks.tif.", opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, pos, &npos, 2, 2);
    if (rc >= 0) return rc;
    fprintf(stderr, "infer: not implemented yet in this build (arrives with issue 6); see --help\n");
    return 3;
}
