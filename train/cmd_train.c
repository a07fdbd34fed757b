/* cmd_train.c - the `train` program. Not implemented yet: this build parses the
 * command line of the user contract (DESIGN.md "Commands"), answers --help and
 * --version, rejects unknown options, and says plainly that the work itself
 * arrives with issue 5. */
#include <stdio.h>

#include "cli.h"

int main(int argc, char **argv) {
    CliOpt opts[] = {
        {"config", "FILE", "YAML config (configs/cyto.yaml, configs/tiny.yaml, ...)", NULL},
        {"data", "DIR", "training folder: images with name_masks.tif labels", NULL},
        {"test-data", "DIR", "optional test folder, same layout", NULL},
        {"out", "DIR", "run folder: model.bin, checkpoints, manifest.json, loss.png", NULL},
        {"seed", "N", "seed for initialisation, sampling and augmentation (0..4294967295)", NULL},
        {"deterministic", NULL, "use a deterministic backend (cpu or cuda), refuse cudnn", NULL},
        {"backend", "NAME", "cpu | cuda | cudnn", NULL},
        {"threads", "N", "CPU threads (results do not depend on it)", NULL},
        {"init", "MODEL", "start from these weights (model.bin)", NULL},
        {"resume", "RUN_DIR", "continue an interrupted run from its last checkpoint", NULL},
        {"n-epochs", "N", "override train.n_epochs", NULL},
        {"learning-rate", "LR", "override train.learning_rate", NULL},
        {"batch-size", "N", "override train.batch_size", NULL},
        {"weight-decay", "WD", "override train.weight_decay", NULL},
        {"optimizer", "NAME", "override train.optimizer (adamw | sgd)", NULL},
        {"trace", NULL, "record per-step hashes of every layer output and gradient", NULL},
    };
    const char *pos[8];
    int npos = 0;
    int rc = cli_main_head("train", "train --deterministic --seed 42 --config configs/cyto.yaml --data DIR --out RUN_DIR", "Train a Cellpose model (CPnet U-Net or Cellpose-SAM-style ViT) bit-exactly.", opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, pos, &npos, 0, 0);
    if (rc >= 0) return rc;
    fprintf(stderr, "train: not implemented yet in this build (arrives with issue 5); see --help\n");
    return 3;
}
