/* cmd_inspect.c - `inspect FILE`: what is in a model file, an image or a
 * config, checked with the same validating readers the other programs use.
 *
 *   inspect model.bin            tensors (name, dtype, shape, SHA-256), metadata
 *   inspect image.tif [--page N] size, channels, dtype, pages, pixel SHA-256, range
 *   inspect configs/cyto.yaml    the resolved config (defaults filled in)
 *   inspect model.bin --config configs/cyto.yaml
 *                                also load the file into the net the config
 *                                describes: every name, shape and dtype is
 *                                checked; prints parameter count and hash
 *   --json                       one JSON object on stdout instead of text
 *
 * The kind is decided from the content (TIFF/PNG/JPEG/BMP magic bytes), then
 * the extension (.yaml/.yml); anything else is read as safetensors. A bad file
 * gives one line on stderr naming it, exit 1, and nothing on stdout. The
 * pixel SHA-256 is of the raw buffer image_read returns (HWC, native
 * little-endian), so tests can compare it with numpy's bytes. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "cpnet.h"
#include "image.h"
#include "safetensors.h"
#include "sha256.h"

typedef enum { KIND_SAFETENSORS, KIND_IMAGE, KIND_CONFIG } Kind;

static Kind detect(const char *path) {
    if (cp_ends_with_ci(path, ".yaml") || cp_ends_with_ci(path, ".yml")) return KIND_CONFIG;
    unsigned char m[8] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t got = fread(m, 1, sizeof m, f);
        fclose(f);
        if (got >= 4 && ((m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43)) ||
                         (m[0] == 'M' && m[1] == 'M' && (m[3] == 42 || m[3] == 43))))
            return KIND_IMAGE;
        if (got >= 4 && m[0] == 0x89 && m[1] == 'P' && m[2] == 'N' && m[3] == 'G') return KIND_IMAGE;
        if (got >= 2 && ((m[0] == 0xff && m[1] == 0xd8) || (m[0] == 'B' && m[1] == 'M'))) return KIND_IMAGE;
    }
    return KIND_SAFETENSORS;
}

static json_t *safetensors_json(const StFile *f) {
    json_t *o = json_object(), *ts = json_array(), *meta = json_object();
    json_object_set_new(o, "kind", json_string("safetensors"));
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->tensors[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        char hex[CP_SHA256_HEX];
        sha256_hex(t->data, t->end - t->begin, hex);
        json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:s}", "name", t->name, "dtype",
                                            st_dtype_name(t->dtype), "shape", shape, "sha256", hex));
    }
    for (int i = 0; i < f->n_meta; i++) json_object_set_new(meta, f->meta_key[i], json_string(f->meta_val[i]));
    json_object_set_new(o, "tensors", ts);
    json_object_set_new(o, "metadata", meta);
    return o;
}

static void safetensors_text(const StFile *f) {
    int64_t total = 0;
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->tensors[i];
        char sh[128], hex[CP_SHA256_HEX];
        sha256_hex(t->data, t->end - t->begin, hex);
        printf("%-60s %-5s %-20s %.16s\n", t->name, st_dtype_name(t->dtype), st_shape_str(t, sh, sizeof sh), hex);
        total += t->numel;
    }
    printf("%d tensors, %lld elements\n", f->n, (long long)total);
    for (int i = 0; i < f->n_meta; i++) printf("metadata %s: %s\n", f->meta_key[i], f->meta_val[i]);
}

static json_t *image_json(const Image *img) {
    char hex[CP_SHA256_HEX];
    sha256_hex(img->data, image_nbytes(img), hex);
    int64_t n = img->h * img->w * img->c;
    float *f = cp_malloc(sizeof(float) * (size_t)n);
    image_to_f32(img, f);
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        lo = f[i] < lo ? f[i] : lo;
        hi = f[i] > hi ? f[i] : hi;
    }
    cp_free(f);
    return json_pack("{s:s, s:I, s:I, s:i, s:s, s:i, s:i, s:s, s:f, s:f}", "kind", "image", "height",
                     (json_int_t)img->h, "width", (json_int_t)img->w, "channels", img->c, "dtype",
                     img_dtype_name(img->dtype), "pages", img->npages, "page", img->page, "sha256", hex, "min",
                     (double)lo, "max", (double)hi);
}

/* Load a model file into the CPnet of `cfg_path`: the loader names any
 * missing, extra, mis-shaped or mis-typed tensor. */
static int check_model(const char *path, const char *cfg_path, json_t *out, CpErr *e) {
    CpConfig cfg;
    CPnetConfig nc;
    CPnet net;
    if (config_load(&cfg, cfg_path, e) != CP_OK || cpnet_config_from(&nc, &cfg.net, e) != CP_OK ||
        cpnet_create(&net, &nc, cp_ops_cpu(), e) != CP_OK)
        return CP_EFAIL;
    int rc = cpnet_load(&net, path, e);
    if (rc == CP_OK) {
        char hex[65];
        cpnet_hash(&net, hex);
        json_object_set_new(out, "net", json_pack("{s:s, s:i, s:I, s:s}", "config", cfg_path, "tensors",
                                                  net.ntensors, "trainable", (json_int_t)net.nparams,
                                                  "params_sha256", hex));
    }
    cpnet_free(&net);
    return rc;
}

static int run(const char *path, int as_json, long page, long max_pixels, const char *cfg_path, CpErr *e) {
    json_t *out = NULL;
    switch (detect(path)) {
    case KIND_SAFETENSORS: {
        StFile f;
        if (st_read(&f, path, e) != CP_OK) return CP_EFAIL;
        out = safetensors_json(&f);
        if (cfg_path && check_model(path, cfg_path, out, e) != CP_OK) { /* before printing anything */
            json_decref(out);
            st_free(&f);
            return CP_EFAIL;
        }
        if (!as_json) safetensors_text(&f);
        st_free(&f);
        if (!as_json) {
            json_t *n = json_object_get(out, "net");
            if (n)
                printf("loads into the net of %s: %lld trainable values, parameter sha256 %s\n", cfg_path,
                       (long long)json_integer_value(json_object_get(n, "trainable")),
                       json_string_value(json_object_get(n, "params_sha256")));
            json_decref(out);
            out = NULL;
        }
        break;
    }
    case KIND_IMAGE: {
        Image img;
        if (image_read(&img, path, (int)page, max_pixels, e) != CP_OK) return CP_EFAIL;
        out = image_json(&img);
        image_free(&img);
        if (!as_json) { /* one line per image */
            printf("%s: %lld x %lld x %d %s, page %d of %d, range [%g, %g], sha256 %.16s\n", path,
                   (long long)json_integer_value(json_object_get(out, "height")),
                   (long long)json_integer_value(json_object_get(out, "width")),
                   (int)json_integer_value(json_object_get(out, "channels")),
                   json_string_value(json_object_get(out, "dtype")), (int)page,
                   (int)json_integer_value(json_object_get(out, "pages")),
                   json_real_value(json_object_get(out, "min")), json_real_value(json_object_get(out, "max")),
                   json_string_value(json_object_get(out, "sha256")));
            json_decref(out);
            out = NULL;
        }
        break;
    }
    case KIND_CONFIG: {
        CpConfig cfg;
        if (config_load(&cfg, path, e) != CP_OK) return CP_EFAIL;
        if (as_json) out = json_pack("{s:s, s:o}", "kind", "config", "config", config_to_json(&cfg));
        else config_print(&cfg, stdout);
        break;
    }
    }
    if (out) {
        char *s = json_dumps(out, as_json ? JSON_COMPACT : JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(out);
    }
    return CP_OK;
}

int main(int argc, char **argv) {
    CliOpt opts[] = {
        {"json", NULL, "one JSON object on stdout", NULL},
        {"page", "N", "page of a multi-page TIFF (0-based, default 0)", NULL},
        {"max-pixels", "N", "refuse images with more pixels (default 2^28)", NULL},
        {"config", "YAML", "model files: also load into the net this config describes", NULL},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    const char *pos[1];
    int npos = 0;
    int rc = cli_main_head("inspect", "inspect FILE [--json] [--page N]",
                           "Show what is in a model file (safetensors), an image (TIFF/PNG/JPEG/BMP) or a YAML "
                           "config, validating it on the way.",
                           opts, nopts, argc, argv, pos, &npos, 1, 1);
    if (rc >= 0) return rc;
    CpErr e;
    long page = 0, max_pixels = (long)(1L << 28);
    if (cli_get_int(opts, nopts, "page", 0, 1000000, &page, &e) != CP_OK ||
        cli_get_int(opts, nopts, "max-pixels", 1, (long)1 << 40, &max_pixels, &e) != CP_OK) {
        fprintf(stderr, "inspect: %s\n", e.msg);
        return 2;
    }
    if (run(pos[0], cli_get(opts, nopts, "json") != NULL, page, max_pixels, cli_get(opts, nopts, "config"), &e) !=
        CP_OK) {
        fprintf(stderr, "inspect: %s\n", e.msg);
        return 1;
    }
    return 0;
}
