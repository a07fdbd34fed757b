/* sha256.c - thin wrapper over OpenSSL's EVP digest interface. */
#include "sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

void sha256_init(CpSha256 *s) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    CP_ASSERT(c != NULL);
    CP_ASSERT(EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1);
    s->evp = c;
}

void sha256_update(CpSha256 *s, const void *data, size_t n) {
    CP_ASSERT(EVP_DigestUpdate((EVP_MD_CTX *)s->evp, data, n) == 1);
}

void sha256_final_hex(CpSha256 *s, char hex[CP_SHA256_HEX]) {
    unsigned char md[32];
    unsigned int len = 0;
    CP_ASSERT(EVP_DigestFinal_ex((EVP_MD_CTX *)s->evp, md, &len) == 1 && len == 32);
    EVP_MD_CTX_free((EVP_MD_CTX *)s->evp);
    s->evp = NULL;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

void sha256_hex(const void *data, size_t n, char hex[CP_SHA256_HEX]) {
    CpSha256 s;
    sha256_init(&s);
    sha256_update(&s, data, n);
    sha256_final_hex(&s, hex);
}

int sha256_file_hex(const char *path, char hex[CP_SHA256_HEX], CpErr *e) {
    FILE *f = cp_fopen(path, "rb", e);
    if (!f) return CP_EFAIL;
    CpSha256 s;
    sha256_init(&s);
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(&s, buf, got);
    int bad = ferror(f);
    fclose(f);
    sha256_final_hex(&s, hex);
    if (bad) return cp_fail(e, "%s: read error while hashing: %s", path, strerror(errno));
    return CP_OK;
}
