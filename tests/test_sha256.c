/* test_sha256.c - SHA-256 against the FIPS 180-2 examples and against the
 * system's sha256sum (an independent implementation) on a file. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sha256.h"

TEST(test_fips_vectors) {
    char hex[CP_SHA256_HEX];
    sha256_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), hex);
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* incremental == one shot */
    CpSha256 s;
    char hex2[CP_SHA256_HEX];
    sha256_init(&s);
    for (size_t i = 0; i < strlen(m); i += 5) sha256_update(&s, m + i, strlen(m) - i < 5 ? strlen(m) - i : 5);
    sha256_final_hex(&s, hex2);
    CHECK(strcmp(hex, hex2) == 0);
}

TEST(test_file_vs_sha256sum) {
    char path[] = "/tmp/cp_sha_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    unsigned char buf[200000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    CHECK(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf);
    close(fd);
    char hex[CP_SHA256_HEX], mem[CP_SHA256_HEX], cmd[256], sys[128] = {0};
    CpErr e;
    CHECK(sha256_file_hex(path, hex, &e) == CP_OK);
    sha256_hex(buf, sizeof buf, mem);
    CHECK(strcmp(hex, mem) == 0);
    snprintf(cmd, sizeof cmd, "sha256sum %s", path);
    FILE *p = popen(cmd, "r");
    CHECK(p && fgets(sys, sizeof sys, p));
    if (p) pclose(p);
    CHECKF(strncmp(sys, hex, 64) == 0, "sha256sum says %.64s, we say %s", sys, hex);
    unlink(path);
    CHECK(sha256_file_hex("/nonexistent/file.bin", hex, &e) == CP_EFAIL);
    CHECK(strstr(e.msg, "/nonexistent/file.bin") != NULL);
}

TEST_MAIN(T(test_fips_vectors), T(test_file_vs_sha256sum))
