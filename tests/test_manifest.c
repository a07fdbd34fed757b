/* test_manifest.c - the run manifest round-trips: what is written (config,
 * seed, environment, inputs, per-epoch hashes) reads back equal, the file is
 * replaced atomically, and non-manifests are refused with one line. */
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "manifest.h"

TEST(test_round_trip) {
    CpConfig cfg;
    CpErr e;
    CHECKF(config_load(&cfg, "configs/tiny.yaml", &e) == CP_OK, "%s", e.msg);
    CpCtx ctx;
    cp_ctx_init(&ctx, CP_BACKEND_CPU, 2, 42);
    char *argv[] = {"train", "--seed", "42"};
    Manifest m;
    manifest_init(&m, &cfg, &ctx, 3, argv);
    manifest_add_input(&m, "data/a.tif", "00ff");
    manifest_add_epoch(&m, 0, 0.0, 1.5, -1, "abcd", 0.25);
    manifest_add_epoch(&m, 1, 0.001, 1.25, 1.375, "ef01", 0.5);
    char dir[] = "/tmp/cp_man_XXXXXX", path[128];
    CP_ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    CHECKF(manifest_write(&m, path, &e) == CP_OK, "%s", e.msg);
    manifest_free(&m);
    Manifest r;
    CHECKF(manifest_read(&r, path, &e) == CP_OK, "%s", e.msg);
    CHECK(json_integer_value(json_object_get(r.root, "seed")) == 42);
    CHECK(json_array_size(r.epochs) == 2 && json_array_size(r.inputs) == 1);
    json_t *e1 = json_array_get(r.epochs, 1);
    CHECK(json_real_value(json_object_get(e1, "test_loss")) == 1.375);
    CHECK(json_is_null(json_object_get(json_array_get(r.epochs, 0), "test_loss")));
    CHECK(strcmp(json_string_value(json_object_get(e1, "params_sha256")), "ef01") == 0);
    json_t *env = json_object_get(r.root, "environment");
    CHECK(json_integer_value(json_object_get(env, "threads")) == 2);
    CHECK(json_is_string(json_object_get(env, "git_commit")));
    json_t *net = json_object_get(json_object_get(r.root, "config"), "net");
    CHECK(json_is_array(json_object_get(net, "nbase")));
    manifest_free(&r);
    /* not a manifest */
    FILE *f = fopen(path, "w");
    fputs("{\"hello\": 1}", f);
    fclose(f);
    CHECK(manifest_read(&r, path, &e) == CP_EFAIL && strstr(e.msg, path) && strstr(e.msg, "not a cellpose.c"));
    f = fopen(path, "w");
    fputs("{broken", f);
    fclose(f);
    CHECK(manifest_read(&r, path, &e) == CP_EFAIL && strstr(e.msg, "not a readable manifest"));
    unlink(path);
    rmdir(dir);
}

TEST_MAIN(T(test_round_trip))
