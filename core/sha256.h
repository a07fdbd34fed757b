/* sha256.h - SHA-256 of buffers and files (OpenSSL libcrypto), hex like sha256sum.
 *
 * Hashes are the project's equality test (DESIGN.md rule 8): weights,
 * optimizer state, masks and input files are compared by their SHA-256. */
#ifndef CP_SHA256_H
#define CP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define CP_SHA256_HEX 65 /* 64 hex digits + NUL */

typedef struct {
    void *evp; /* EVP_MD_CTX */
} CpSha256;

void sha256_init(CpSha256 *s);
void sha256_update(CpSha256 *s, const void *data, size_t n);
/* Writes 64 lowercase hex digits + NUL and frees the state. */
void sha256_final_hex(CpSha256 *s, char hex[CP_SHA256_HEX]);

void sha256_hex(const void *data, size_t n, char hex[CP_SHA256_HEX]);
int sha256_file_hex(const char *path, char hex[CP_SHA256_HEX], CpErr *e);

#endif
