/* test_safetensors.c - the model-file layer: round trip of every common
 * dtype (incl. scalars and empty tensors) with metadata, atomic writes, and
 * malformed files that must each fail with one line naming the file.
 *
 * When CP_ST_OUT is set, also writes c_written.safetensors there for the
 * Python side (tests/py/test_safetensors_interop.py) with the formulas:
 *   a   F32 [3,4,5]  a[i] = 0.5*i - 7        (i = flat index)
 *   n   I64 []       123456789012
 *   d   F64 [7]      i / 3.0
 *   u   U8  [10]     25*i
 *   i32 I32 [2,2]    -i
 *   e   F32 [0,3]    (empty)
 * metadata {"format": "pt", "note": "written by cellpose.c"} */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "safetensors.h"

static float a_[60];
static int64_t n_ = 123456789012LL;
static double d_[7];
static uint8_t u_[10];
static int32_t i32_[4];

static int sample_tensors(StWriteTensor *t) {
    for (int i = 0; i < 60; i++) a_[i] = 0.5f * (float)i - 7.0f;
    for (int i = 0; i < 7; i++) d_[i] = i / 3.0;
    for (int i = 0; i < 10; i++) u_[i] = (uint8_t)(25 * i);
    for (int i = 0; i < 4; i++) i32_[i] = -i;
    StWriteTensor w[6] = {
        {"a", ST_F32, 3, {3, 4, 5}, a_}, {"n", ST_I64, 0, {0}, &n_},  {"d", ST_F64, 1, {7}, d_},
        {"u", ST_U8, 1, {10}, u_},       {"i32", ST_I32, 2, {2, 2}, i32_}, {"e", ST_F32, 2, {0, 3}, a_},
    };
    memcpy(t, w, sizeof w);
    return 6;
}

static const char *meta[] = {"format", "pt", "note", "written by cellpose.c"};

static char tmpdir[64];
static const char *tmp_path(const char *name) {
    static char buf[256];
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/cp_st_XXXXXX");
        CP_ASSERT(mkdtemp(tmpdir));
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

TEST(test_round_trip) {
    StWriteTensor t[6];
    int n = sample_tensors(t);
    CpErr e;
    const char *path = tmp_path("rt.safetensors");
    CHECKF(st_write(path, t, n, meta, 2, &e) == CP_OK, "%s", e.msg);
    StFile f;
    CHECKF(st_read(&f, path, &e) == CP_OK, "%s", e.msg);
    if (f.n != n) {
        CHECKF(0, "read %d tensors, wrote %d", f.n, n);
        st_free(&f);
        return;
    }
    for (int i = 0; i < n; i++) {
        const StTensor *r = &f.tensors[i];
        CHECKF(strcmp(r->name, t[i].name) == 0, "order: %s vs %s", r->name, t[i].name);
        CHECK(r->dtype == t[i].dtype && r->ndim == t[i].ndim);
        for (int d = 0; d < r->ndim; d++) CHECK(r->shape[d] == t[i].shape[d]);
        CHECK(memcmp(r->data, t[i].data, r->end - r->begin) == 0);
    }
    CHECK(st_find(&f, "i32") == &f.tensors[4] && st_find(&f, "zz") == NULL);
    CHECK(st_meta(&f, "note") && strcmp(st_meta(&f, "note"), "written by cellpose.c") == 0);
    /* header padded to 8 bytes, so tensor data starts aligned */
    uint64_t hlen;
    memcpy(&hlen, f.buf, 8);
    CHECK(hlen % 8 == 0);
    double d[7];
    CHECK(st_copy(&f, st_find(&f, "d"), ST_F64, d, 7, &e) == CP_OK && d[6] == 2.0);
    CHECK(st_copy(&f, st_find(&f, "d"), ST_F32, d, 7, &e) == CP_EFAIL && strstr(e.msg, "dtype F64"));
    CHECK(st_copy(&f, st_find(&f, "d"), ST_F64, d, 6, &e) == CP_EFAIL && strstr(e.msg, "7 elements"));
    st_free(&f);
    const char *out = getenv("CP_ST_OUT");
    if (out && out[0]) {
        char p[512];
        mkdir(out, 0777);
        snprintf(p, sizeof p, "%s/c_written.safetensors", out);
        CHECKF(st_write(p, t, n, meta, 2, &e) == CP_OK, "%s", e.msg);
    }
}

TEST(test_atomic_write) {
    StWriteTensor t[6];
    int n = sample_tensors(t);
    CpErr e;
    CHECK(st_write("/nonexistent_dir_cp/x.safetensors", t, n, NULL, 0, &e) == CP_EFAIL);
    CHECK(strstr(e.msg, "/nonexistent_dir_cp/x.safetensors") != NULL);
    /* duplicate names refused, and the destination is not created */
    StWriteTensor dup[2] = {t[0], t[0]};
    const char *path = tmp_path("dup.safetensors");
    CHECK(st_write(path, dup, 2, NULL, 0, &e) == CP_EFAIL);
    CHECK(access(path, F_OK) != 0);
    /* no temporary files left behind after a successful write */
    CHECK(st_write(tmp_path("ok.safetensors"), t, n, NULL, 0, &e) == CP_OK);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '\\.tmp\\.' > /dev/null", tmpdir);
    CHECK(system(cmd) != 0);
}

/* Write `hlen` (u64) + header text + data bytes. */
static void write_raw(const char *path, uint64_t hlen, const char *header, const void *data, size_t nd) {
    FILE *f = fopen(path, "wb");
    CP_ASSERT(f);
    fwrite(&hlen, 8, 1, f);
    fwrite(header, 1, strlen(header), f);
    if (nd) fwrite(data, 1, nd, f);
    fclose(f);
}

typedef struct {
    const char *name, *header;
    size_t ndata;
    int64_t hlen; /* -1: strlen(header) */
    const char *expect;
} Bad;

static const Bad bad[] = {
    {"bad_json", "{\"a\": {\"dtype\": \"F32\", ", 0, -1, "not valid JSON"},
    {"not_object", "[1, 2, 3]", 0, -1, "not an object"},
    {"unknown_dtype", "{\"a\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, "unknown dtype"},
    {"shape_mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, -1, "needs 24 bytes"},
    {"past_end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, -1, "past the end"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1, "overlap"},
    {"hole", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1, "belong to no tensor"},
    {"trailing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, -1, "after the last tensor"},
    {"meta_not_string", "{\"__metadata__\":{\"step\":3}}", 0, -1, "not a string"},
    {"duplicate", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, -1, "duplicate"},
    {"missing_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, -1, "exactly dtype, shape"},
    {"negative_shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, -1, "non-negative"},
    {"header_zero", "", 0, 0, "header length 0"},
    {"header_huge", "{}", 0, (int64_t)1 << 40, "over 100 MiB"},
    {"header_past_eof", "{}", 0, 1000, "runs past the end"},
};

TEST(test_malformed) {
    static const uint8_t zeros[64] = {0};
    CpErr e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s", tmp_path(bad[i].name));
        write_raw(path, bad[i].hlen < 0 ? strlen(bad[i].header) : (uint64_t)bad[i].hlen, bad[i].header, zeros,
                  bad[i].ndata);
        StFile f;
        e.msg[0] = 0;
        int rc = st_read(&f, path, &e);
        CHECKF(rc == CP_EFAIL, "%s: accepted", bad[i].name);
        CHECKF(strstr(e.msg, path) != NULL, "%s: message does not name the file: %s", bad[i].name, e.msg);
        CHECKF(strstr(e.msg, bad[i].expect) != NULL, "%s: message '%s' lacks '%s'", bad[i].name, e.msg,
               bad[i].expect);
        CHECK(strchr(e.msg, '\n') == NULL);
        if (rc == CP_OK) st_free(&f);
    }
    /* truncations of a valid file at every length shorter than the header */
    StWriteTensor t[6];
    int n = sample_tensors(t);
    const char *good = tmp_path("good.safetensors");
    CHECK(st_write(good, t, n, meta, 2, &e) == CP_OK);
    FILE *g = fopen(good, "rb");
    uint8_t buf[4096];
    size_t len = fread(buf, 1, sizeof buf, g);
    fclose(g);
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut += 7) {
        const char *p = tmp_path("cut.safetensors");
        FILE *c = fopen(p, "wb");
        fwrite(buf, 1, cut, c);
        fclose(c);
        StFile f;
        if (st_read(&f, p, &e) == CP_OK) {
            accepted++;
            st_free(&f);
        } else {
            CHECK(strstr(e.msg, p) != NULL);
        }
    }
    CHECKF(accepted == 0, "%d truncated files accepted", accepted);
    StFile f;
    CHECK(st_read(&f, tmp_path("does_not_exist"), &e) == CP_EFAIL && strstr(e.msg, "cannot open"));
}

TEST_MAIN(T(test_round_trip), T(test_atomic_write), T(test_malformed))
