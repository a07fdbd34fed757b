/* version.c - the build stamp (build/version.h is written by the Makefile). */
#include "version.h"

#include <stdio.h>

#include "version_stamp.h"

const char *cp_version(void) { return CP_VERSION; }
const char *cp_git_commit(void) { return CP_GIT_COMMIT; }

const char *cp_backends(void) {
#ifdef CP_HAVE_CUDA
    return "cpu cuda";
#else
    return "cpu";
#endif
}

void cp_print_version(const char *prog) {
    printf("%s (cellpose.c) %s\ncommit: %s\nbackends: %s\n", prog, cp_version(), cp_git_commit(), cp_backends());
#ifndef CP_HAVE_CUDA
    printf("cuda: not compiled into this binary\n");
#endif
    printf("compiler: gcc %d.%d.%d, -ffp-contract=off, no fast-math\n", __GNUC__, __GNUC_MINOR__,
           __GNUC_PATCHLEVEL__);
}
