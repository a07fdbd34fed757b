/* test_config.c - YAML config binder: the shipped configs load with Cellpose's
 * values, JSON/text output round-trips, overrides are checked like file
 * values, and every malformed fixture in tests/data/config/ fails with one
 * line naming the file and the right line. Run from the repository root. */
#include <math.h>
#include <string.h>

#include "config.h"
#include "harness.h"

static int nbase_is(const CpConfig *c, const int *want, int n) {
    if (c->net.n_nbase != n) return 0;
    for (int i = 0; i < n; i++)
        if (c->net.nbase[i] != want[i]) return 0;
    return 1;
}

/* Everything the v3 API column of CELLPOSE.md 4.1 fixes, plus CPnet. */
static void check_v3_api(TestCase *tc, const CpConfig *c) {
    CHECK(c->net.type == NET_CPNET);
    CHECK(c->net.nout == 3 && c->net.kernel_size == 3);
    CHECK(c->train.optimizer == OPT_ADAMW);
    CHECKF(c->train.learning_rate == 0.005, "lr %g", c->train.learning_rate);
    CHECKF(c->train.weight_decay == 1e-5, "wd %g", c->train.weight_decay);
    CHECK(c->train.momentum == 0.9);
    CHECK(c->train.rescale == 1 && c->train.scale_range == 0.5);
    CHECK(c->train.min_train_masks == 5 && c->train.nimg_per_epoch == 0 && c->train.save_every == 100);
    CHECK(c->train.normalize == 1);
    CHECK(c->train.n_channels == 2 && c->train.channels[0] == 0 && c->train.channels[1] == 0);
}

TEST(test_shipped_configs) {
    static const int cyto_nbase[] = {2, 32, 64, 128, 256}, tiny_nbase[] = {2, 8, 16, 32, 64};
    CpConfig c;
    CpErr e = {{0}};
    CHECKF(config_load(&c, "configs/cyto.yaml", &e) == CP_OK, "%s", e.msg);
    check_v3_api(tc, &c);
    CHECK(nbase_is(&c, cyto_nbase, 5) && c.net.diam_mean == 30.0);
    CHECK(c.train.n_epochs == 2000 && c.train.batch_size == 8 && c.train.bsize == 224);
    CHECK(!strcmp(c.path, "configs/cyto.yaml"));

    CHECKF(config_load(&c, "configs/nuclei.yaml", &e) == CP_OK, "%s", e.msg);
    check_v3_api(tc, &c);
    CHECK(nbase_is(&c, cyto_nbase, 5) && c.net.diam_mean == 17.0);
    CHECK(c.train.n_epochs == 2000 && c.train.batch_size == 8 && c.train.bsize == 224);

    CHECKF(config_load(&c, "configs/tiny.yaml", &e) == CP_OK, "%s", e.msg);
    check_v3_api(tc, &c);
    CHECK(nbase_is(&c, tiny_nbase, 5) && c.net.diam_mean == 30.0);
    CHECK(c.train.n_epochs == 10 && c.train.batch_size == 2 && c.train.bsize == 64);

    CHECKF(config_load(&c, "configs/cyto_cli.yaml", &e) == CP_OK, "%s", e.msg);
    CHECK(nbase_is(&c, cyto_nbase, 5) && c.net.diam_mean == 30.0);
    CHECK(c.train.optimizer == OPT_SGD && c.train.learning_rate == 0.2 && c.train.momentum == 0.9);
    CHECK(c.train.weight_decay == 1e-5 && c.train.n_epochs == 500 && c.train.batch_size == 8);
    CHECK(c.train.bsize == 224 && c.train.rescale == 1);
}

/* The schema defaults are Cellpose's: a file with only the required keys
 * equals cyto.yaml. The required keys start unset. */
TEST(test_defaults) {
    CpConfig d, cyto, min;
    CpErr e = {{0}};
    CHECKF(config_defaults(&d, &e) == CP_OK, "%s", e.msg);
    CHECK(d.net.n_nbase == 0 && d.train.batch_size == 8 && d.train.learning_rate == 0.005);
    CHECK(config_validate(&d, &e) == CP_EFAIL);
    CHECKF(strstr(e.msg, "net.type") && strstr(e.msg, "not set"), "%s", e.msg);
    CHECK(config_set(&d, "net.type", "cpnet", &e) == CP_OK);
    CHECK(config_validate(&d, &e) == CP_EFAIL);
    CHECKF(strstr(e.msg, "net.nbase") && strstr(e.msg, "not set"), "%s", e.msg);

    CHECKF(config_load(&min, "tests/data/config/minimal.yaml", &e) == CP_OK, "%s", e.msg);
    CHECKF(config_load(&cyto, "configs/cyto.yaml", &e) == CP_OK, "%s", e.msg);
    memset(min.path, 0, sizeof min.path);
    memset(cyto.path, 0, sizeof cyto.path);
    CHECK(!memcmp(&min.net, &cyto.net, sizeof min.net));
    CHECK(!memcmp(&min.train, &cyto.train, sizeof min.train));
}

TEST(test_json_roundtrip) {
    CpConfig c;
    CpErr e = {{0}};
    CHECKF(config_load(&c, "configs/cyto_cli.yaml", &e) == CP_OK, "%s", e.msg);
    json_t *j = config_to_json(&c);
    char *text = json_dumps(j, JSON_SORT_KEYS);
    json_decref(j);
    CHECK(text != NULL);
    json_error_t err;
    json_t *r = text ? json_loads(text, 0, &err) : NULL;
    free(text);
    CHECK(r != NULL);
    if (!r) return;
    json_t *net = json_object_get(r, "net"), *train = json_object_get(r, "train");
    CHECK(json_object_size(r) == 2 && json_is_object(net) && json_is_object(train));
    CHECK(!strcmp(json_string_value(json_object_get(net, "type")), "cpnet"));
    json_t *nb = json_object_get(net, "nbase");
    CHECK(json_array_size(nb) == 5 && json_integer_value(json_array_get(nb, 4)) == 256);
    CHECK(json_real_value(json_object_get(net, "diam_mean")) == 30.0);
    CHECK(!strcmp(json_string_value(json_object_get(train, "optimizer")), "sgd"));
    CHECK(json_real_value(json_object_get(train, "learning_rate")) == 0.2);
    CHECK(json_real_value(json_object_get(train, "weight_decay")) == 1e-5); /* exact after dump/load */
    CHECK(json_integer_value(json_object_get(train, "n_epochs")) == 500);
    CHECK(json_is_true(json_object_get(train, "rescale")));
    CHECK(json_array_size(json_object_get(train, "channels")) == 2);
    CHECK(json_object_size(train) == 14 && json_object_size(net) == 5);
    json_decref(r);
}

TEST(test_print) {
    CpConfig c;
    CpErr e = {{0}};
    CHECKF(config_load(&c, "configs/cyto.yaml", &e) == CP_OK, "%s", e.msg);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print(&c, f);
    fclose(f);
    CHECKF(strstr(buf, "# config: configs/cyto.yaml\n") == buf, "%s", buf);
    CHECK(strstr(buf, "\nnet.type: cpnet\n") && strstr(buf, "\nnet.nbase: [2, 32, 64, 128, 256]\n"));
    CHECK(strstr(buf, "\nnet.diam_mean: 30.0\n") && strstr(buf, "\ntrain.learning_rate: 0.005\n"));
    CHECK(strstr(buf, "\ntrain.weight_decay: 1e-05\n") && strstr(buf, "\ntrain.rescale: true\n"));
    CHECK(strstr(buf, "\ntrain.optimizer: adamw\n") && strstr(buf, "\ntrain.channels: [0, 0]\n"));
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    CHECKF(lines == 1 + 5 + 14, "%d lines", lines);
    free(buf);
}

TEST(test_set) {
    CpConfig c, before;
    CpErr e = {{0}};
    CHECKF(config_load(&c, "configs/tiny.yaml", &e) == CP_OK, "%s", e.msg);
    CHECK(config_set(&c, "train.learning_rate", "0.01", &e) == CP_OK && c.train.learning_rate == 0.01);
    CHECK(config_set(&c, "train.optimizer", "sgd", &e) == CP_OK && c.train.optimizer == OPT_SGD);
    CHECK(config_set(&c, "train.rescale", "False", &e) == CP_OK && c.train.rescale == 0);
    CHECK(config_set(&c, "net.nbase", "[2, 16, 32]", &e) == CP_OK && c.net.n_nbase == 3 && c.net.nbase[2] == 32);
    CHECK(c.net.nbase[3] == 0 && c.net.nbase[4] == 0); /* no stale entries from tiny.yaml's 5 */
    CHECK(config_set(&c, "train.bsize", "66", &e) == CP_OK && config_validate(&c, &e) == CP_OK);
    CHECK(config_set(&c, "train.bsize", "65", &e) == CP_OK && config_validate(&c, &e) == CP_EFAIL);
    CHECKF(strstr(e.msg, "train.bsize") && strstr(e.msg, "64 or 66"), "%s", e.msg);
    CHECK(config_set(&c, "train.bsize", "64", &e) == CP_OK);

    static const struct { const char *key, *value, *want; } bad[] = {
        {"train.learnig_rate", "0.1", "did you mean 'learning_rate'"},
        {"trian.batch_size", "2", "did you mean 'train'"},
        {"batch_size", "2", "section.key"},
        {"train.batch_size", "eight", "expected an integer, got 'eight'"},
        {"train.batch_size", "-1", "in [1, 65536], got -1"},
        {"train.batch_size", "", "empty"},
        {"train.batch_size", "[2]", "got a list"},
        {"train.optimizer", "adam", "one of 'adamw', 'sgd'"},
        {"train.rescale", "yes", "true or false"},
        {"net.nbase", "[2, 8, 16, 32, 64, 128, 256, 512, 1024]", "at most 6 entries"},
        {"net.nbase", "[2, 0, 16]", "entry 1"},
        {"net.nbase", "32", "expected a list"},
        {"net.kernel_size", "1.5", "expected an integer"},
        {"train.learning_rate", "[0.1", "YAML syntax error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        before = c;
        e.msg[0] = 0;
        int rc = config_set(&c, bad[i].key, bad[i].value, &e);
        CHECKF(rc == CP_EFAIL, "%s=%s accepted", bad[i].key, bad[i].value);
        CHECKF(strstr(e.msg, bad[i].want) && strstr(e.msg, "override"), "%s=%s: %s", bad[i].key, bad[i].value,
               e.msg);
        CHECKF(!memcmp(&c, &before, sizeof c), "%s=%s changed the config", bad[i].key, bad[i].value);
    }
    /* cross-field: an even kernel is refused by validate, not by set */
    CHECK(config_set(&c, "net.kernel_size", "4", &e) == CP_OK && config_validate(&c, &e) == CP_EFAIL);
    CHECKF(strstr(e.msg, "odd"), "%s", e.msg);
}

/* The number and boolean grammar, through config_set (same converters as files). */
TEST(test_scalars) {
    CpConfig c;
    CpErr e = {{0}};
    CHECKF(config_load(&c, "configs/tiny.yaml", &e) == CP_OK, "%s", e.msg);
    static const struct { const char *v; double want; } good_f[] = {
        {"1e-5", 1e-5}, {"0.005", 0.005}, {"5.0e-3", 5.0e-3}, {"+3", 3}, {".5", 0.5}, {"2.", 2}, {"1E+0", 1}, {"0", 0}};
    for (size_t i = 0; i < sizeof good_f / sizeof good_f[0]; i++) {
        int rc = config_set(&c, "train.learning_rate", good_f[i].v, &e);
        CHECKF(rc == CP_OK && c.train.learning_rate == good_f[i].want, "'%s': %s", good_f[i].v, e.msg);
    }
    static const char *bad_f[] = {".nan", "NaN", ".inf", "-.Inf", "inf", "1e999", "0x1p3", "1,5", "e5", "1e", "'0.1'", "-0.1"};
    for (size_t i = 0; i < sizeof bad_f / sizeof bad_f[0]; i++)
        CHECKF(config_set(&c, "train.learning_rate", bad_f[i], &e) == CP_EFAIL, "'%s' accepted", bad_f[i]);
    CHECK(config_set(&c, "train.n_epochs", "+3", &e) == CP_OK && c.train.n_epochs == 3);
    CHECK(config_set(&c, "train.nimg_per_epoch", "2147483647", &e) == CP_OK && c.train.nimg_per_epoch == 2147483647);
    CHECK(config_set(&c, "train.min_train_masks", "0", &e) == CP_OK && c.train.min_train_masks == 0);
    static const char *bad_i[] = {"0x10", "010", "1_000", "1e3", "8.0", "2147483648", "-99999999999999999999",
                                  "\"8\"", "~", "null", "true"};
    for (size_t i = 0; i < sizeof bad_i / sizeof bad_i[0]; i++)
        CHECKF(config_set(&c, "train.n_epochs", bad_i[i], &e) == CP_EFAIL, "'%s' accepted", bad_i[i]);
    CHECK(config_set(&c, "train.n_epochs", "2147483648", &e) == CP_EFAIL && strstr(e.msg, "overflow"));
    CHECK(config_set(&c, "train.normalize", "True", &e) == CP_OK && c.train.normalize == 1);
    CHECK(config_set(&c, "train.normalize", "false", &e) == CP_OK && c.train.normalize == 0);
    static const char *bad_b[] = {"yes", "no", "on", "1", "0", "TRUE", "'true'"};
    for (size_t i = 0; i < sizeof bad_b / sizeof bad_b[0]; i++)
        CHECKF(config_set(&c, "train.normalize", bad_b[i], &e) == CP_EFAIL, "'%s' accepted", bad_b[i]);
    CHECK(config_set(&c, "train.optimizer", "'adamw'", &e) == CP_OK && c.train.optimizer == OPT_ADAMW);
}

TEST(test_malformed_fixtures) {
    static const struct { const char *file; int line; const char *want; } cases[] = {
        {"unknown_key", 7, "unknown key 'train.learnig_rate' (did you mean 'learning_rate'?)"},
        {"unknown_section", 5, "unknown section 'trian' (did you mean 'train'?)"},
        {"wrong_type_int", 7, "train.batch_size: expected an integer, got 'eight'"},
        {"wrong_type_bool", 7, "train.rescale: expected true or false, got 'yes'"},
        {"enum_not_allowed", 8, "expected one of 'adamw', 'sgd', got 'adam'"},
        {"out_of_range", 7, "train.batch_size: expected an integer in [1, 65536], got -8"},
        {"missing_required", 0, "missing required key 'net.nbase'"},
        {"duplicate_key", 8, "duplicate key 'train.batch_size' (first set on line 6)"},
        {"syntax_error", 5, "YAML syntax error"},
        {"empty", 0, "empty config file"},
        {"comments_only", 0, "empty config file"},
        {"top_level_list", 2, "top level must be a mapping"},
        {"nan_value", 7, "train.learning_rate: expected a finite number, got '.nan'"},
        {"list_for_scalar", 7, "train.batch_size: expected an integer, got a list"},
        {"scalar_for_list", 4, "net.nbase: expected a list of integers"},
        {"nbase_too_long", 4, "net.nbase: expected 2 to 6 entries, got 7"},
        {"list_too_long", 7, "train.channels: expected at most 2 entries, got 3"},
        {"bsize_not_divisible", 7, "train.bsize: 100 is not divisible by 8"},
        {"int_overflow", 7, "integer overflow"},
        {"section_not_mapping", 5, "section 'train' must be a mapping"},
        {"quoted_number", 7, "remove the quotes"},
        {"does_not_exist", 0, "cannot open"},
        {"vit_nbase", 5, "net.nbase: is a cpnet key; remove it (net.type is vit)"},
        {"cpnet_vit_key", 5, "net.depth: is a vit key; remove it (net.type is cpnet)"},
        {"vit_heads", 5, "net.heads: 5 heads do not divide embed_dim 64"},
        {"vit_bsize", 7, "train.bsize: 224: the ViT takes exactly net.img_size = 256 pixel tiles"},
        {"vit_global_block", 5, "net.global_blocks: entry 1: block 4 does not exist (depth 4)"},
        {"vit_grid", 4, "net.img_size: token grid side 128 = img_size / patch_size is above 64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256], at[64];
        snprintf(path, sizeof path, "tests/data/config/%s.yaml", cases[i].file);
        CpConfig c;
        memset(&c, 0x5a, sizeof c);
        CpConfig before = c;
        CpErr e = {{0}};
        int rc = config_load(&c, path, &e);
        CHECKF(rc == CP_EFAIL, "%s: accepted", path);
        CHECKF(strstr(e.msg, path) == e.msg, "%s: message does not start with the path: %s", path, e.msg);
        CHECKF(strstr(e.msg, cases[i].want), "%s: want '%s' in: %s", path, cases[i].want, e.msg);
        CHECKF(!strchr(e.msg, '\n') && e.msg[0], "%s: not one line: %s", path, e.msg);
        CHECKF(!memcmp(&c, &before, sizeof c), "%s: config written on failure", path);
        snprintf(at, sizeof at, "%s.yaml:%d:", cases[i].file, cases[i].line);
        const char *after = e.msg + strlen(path); /* message starts with the path (checked above) */
        if (cases[i].line) CHECKF(strstr(e.msg, at) != NULL, "%s: want line %d in: %s", path, cases[i].line, e.msg);
        else CHECKF(strncmp(after, ": ", 2) == 0, "%s: no line expected: %s", path, e.msg);
    }
}

/* ViT configs: the shipped ones, Cellpose-SAM / v4 defaults for what a vit
 * file leaves out, and only the keys of the net type in print and JSON. */
TEST(test_vit_configs) {
    CpConfig c;
    CpErr e = {{0}};
    CHECKF(config_load(&c, "configs/cpsam.yaml", &e) == CP_OK, "%s", e.msg);
    CHECK(c.net.type == NET_VIT && c.net.embed_dim == 1024 && c.net.depth == 24 && c.net.heads == 16);
    CHECK(c.net.patch_size == 8 && c.net.img_size == 256 && c.net.rel_pos_rows == 27 && c.net.rel_pos_rows_global == 127);
    CHECK(c.net.n_global_blocks == 4 && c.net.global_blocks[3] == 23 && c.net.rdrop == 0.4 && c.net.n_nbase == 0);
    CHECK(c.train.learning_rate == 1e-5 && c.train.weight_decay == 0.1 && c.train.batch_size == 1);
    CHECK(c.train.bsize == 256 && c.train.n_epochs == 100 && c.train.rescale == 0);
    CpConfig min;
    CHECKF(config_load(&min, "tests/data/config/vit_minimal.yaml", &e) == CP_OK, "%s", e.msg);
    memset(min.path, 0, sizeof min.path);
    memset(c.path, 0, sizeof c.path);
    CHECK(!memcmp(&min.net, &c.net, sizeof c.net));     /* the schema defaults are cpsam's */
    CHECK(!memcmp(&min.train, &c.train, sizeof c.train)); /* and v4's train_seg */
    CHECKF(config_load(&c, "configs/vit_b.yaml", &e) == CP_OK, "%s", e.msg);
    CHECK(c.net.embed_dim == 768 && c.net.depth == 12 && c.net.heads == 12 && c.net.global_blocks[0] == 2);
    CHECKF(config_load(&c, "configs/vit_tiny.yaml", &e) == CP_OK, "%s", e.msg);
    CHECK(c.net.embed_dim == 64 && c.net.depth == 4 && c.net.img_size == 64 && c.train.bsize == 64);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print(&c, f);
    fclose(f);
    CHECK(strstr(buf, "\nnet.depth: 4\n") && strstr(buf, "\nnet.global_blocks: [1, 3]\n") && !strstr(buf, "nbase"));
    CHECK(!strstr(buf, "kernel_size") && strstr(buf, "\nnet.rdrop: 0.4\n"));
    free(buf);
    json_t *j = config_to_json(&c);
    CHECK(json_object_size(json_object_get(j, "net")) == 15 && !json_object_get(json_object_get(j, "net"), "nbase"));
    json_decref(j);
    /* overrides keep the checks: heads must divide the dim */
    CHECK(config_set(&c, "net.heads", "3", &e) == CP_OK && config_validate(&c, &e) == CP_EFAIL);
    CHECKF(strstr(e.msg, "net.heads") && strstr(e.msg, "do not divide"), "%s", e.msg);
}

TEST_MAIN(T(test_shipped_configs), T(test_defaults), T(test_json_roundtrip), T(test_print), T(test_set),
          T(test_scalars), T(test_malformed_fixtures), T(test_vit_configs))
