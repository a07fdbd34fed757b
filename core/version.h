/* version.h - version, git commit and compiled-in backends, for --version
 * and for every manifest. */
#ifndef CP_VERSION_H
#define CP_VERSION_H

const char *cp_version(void);    /* "0.1.0" */
const char *cp_git_commit(void); /* short hash, "-dirty" when built from a modified tree */
const char *cp_backends(void);   /* "cpu" or "cpu cuda cudnn" */
/* Print the --version block for program `prog`. */
void cp_print_version(const char *prog);

#endif
