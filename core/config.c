/* config.c - schema-driven YAML config binder (API in config.h).
 *
 * One table, SCHEMA, lists every key once: section, name, type, field offset,
 * range, default (as YAML text), enum choices, help. Every value takes one
 * path into the struct: a libyaml node -> bind_node -> converter -> field,
 * then check_key (range, enum, list length). The node comes from the config
 * file (libyaml document API), from a config_set value parsed as YAML, or
 * from a default's text parsed the same way, so defaults and overrides go
 * through exactly the converters that file values do.
 *
 * Errors are one line: "file:line:col: section.key: expected ..., got '...'"
 * (libyaml marks are 0-based; we print them 1-based). Cross-field checks
 * that run after the whole file is bound blame one key and print the line
 * where that key was set. Scalars: integers are decimal only (no hex, no
 * YAML 1.1 octal with a leading 0); numbers follow YAML 1.2's float syntax
 * and must be finite; booleans are true/false/True/False; quoted scalars
 * are strings, so `batch_size: "8"` is refused with a hint. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_CONFIG_BYTES (1u << 20)

typedef enum { K_INT, K_FLOAT, K_BOOL, K_STRING, K_ENUM, K_INT_LIST } KeyType;

typedef struct {
    const char *section, *key;
    KeyType type;
    size_t off;                 /* offset of the field in CpConfig */
    size_t count_off;           /* K_INT_LIST: offset of the int entry count */
    int cap;                    /* K_INT_LIST: array length; K_STRING: buffer bytes */
    int min_count, max_count;   /* K_INT_LIST: valid number of entries */
    int required;               /* no default: must be in the file */
    const char *def;            /* default as YAML text (NULL when required) */
    double min, max;            /* K_INT, K_FLOAT, list entries: inclusive range */
    const char *const *choices; /* K_ENUM: names, NULL-terminated, index = value */
    const char *help;
} KeySpec;

static const char *const NET_TYPES[] = {"cpnet", "vit", NULL};
static const char *const OPTIMIZERS[] = {"adamw", "sgd", NULL};
static const char *const SECTIONS[] = {"net", "train"};
#define NSECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

#define F(field) offsetof(CpConfig, field)
#define S_INT(s, k, fld, d, lo, hi, h) \
    {.section = s, .key = k, .type = K_INT, .off = F(fld), .def = d, .min = lo, .max = hi, .help = h}
#define S_FLOAT(s, k, fld, d, lo, hi, h) \
    {.section = s, .key = k, .type = K_FLOAT, .off = F(fld), .def = d, .min = lo, .max = hi, .help = h}
#define S_BOOL(s, k, fld, d, h) {.section = s, .key = k, .type = K_BOOL, .off = F(fld), .def = d, .help = h}
#define S_ENUM(s, k, fld, d, req, ch, h) \
    {.section = s, .key = k, .type = K_ENUM, .off = F(fld), .def = d, .required = req, .choices = ch, .help = h}
#define S_LIST(s, k, fld, cnt, n, lo_n, hi_n, d, req, lo, hi, h)                                      \
    {.section = s, .key = k, .type = K_INT_LIST, .off = F(fld), .count_off = F(cnt), .cap = n,        \
     .min_count = lo_n, .max_count = hi_n, .def = d, .required = req, .min = lo, .max = hi, .help = h}

/* Defaults: Cellpose v3 `train_seg` (API), CELLPOSE.md 4.1; CPnet, section 1;
 * ViT rows: Cellpose-SAM (section 2), training defaults of v4 when vit. */
static const KeySpec SCHEMA[] = {
    S_ENUM("net", "type", net.type, NULL, 1, NET_TYPES, "network: cpnet (Cellpose v3 U-Net) or vit"),
    S_LIST("net", "nbase", net.nbase, net.n_nbase, 8, 2, 6, NULL, 1, 1, 65536,
           "channels: input, then one per level, e.g. [2, 32, 64, 128, 256]"),
    S_INT("net", "nout", net.nout, "3", 1, 64, "output channels (dY, dX, cellprob)"),
    S_INT("net", "kernel_size", net.kernel_size, "3", 1, 15, "odd conv kernel size"),
    S_FLOAT("net", "diam_mean", net.diam_mean, "30.0", 1, 10000, "mean diameter in pixels"),
    /* ViT: Cellpose-SAM's Transformer(backbone="vit_l", ps=8, bsize=256), CELLPOSE.md 2.1-2.2 */
    S_INT("net", "in_chans", net.in_chans, "3", 1, 64, "ViT image channels"),
    S_INT("net", "patch_size", net.patch_size, "8", 1, 64, "ViT patch side (kernel = stride)"),
    S_INT("net", "img_size", net.img_size, "256", 1, 4096, "ViT tile side in pixels"),
    S_INT("net", "embed_dim", net.embed_dim, "1024", 1, 65536, "ViT embedding dim"),
    S_INT("net", "depth", net.depth, "24", 1, 64, "ViT blocks"),
    S_INT("net", "heads", net.heads, "16", 1, 1024, "ViT attention heads"),
    S_INT("net", "mlp_ratio", net.mlp_ratio, "4", 1, 64, "ViT MLP hidden = mlp_ratio * embed_dim"),
    S_INT("net", "neck_chans", net.neck_chans, "256", 1, 65536, "ViT neck channels"),
    S_INT("net", "rel_pos_rows", net.rel_pos_rows, "27", 1, 4095,
           "rel-pos table rows of windowed-built blocks, as loaded (interpolated)"),
    S_INT("net", "rel_pos_rows_global", net.rel_pos_rows_global, "127", 1, 4095,
           "rel-pos table rows of global-built blocks, as loaded (interpolated)"),
    S_LIST("net", "global_blocks", net.global_blocks, net.n_global_blocks, 8, 0, 8, "[5, 11, 17, 23]", 0, 0, 63,
           "blocks built with global attention in SAM (their tables have rel_pos_rows_global rows)"),
    S_FLOAT("net", "rdrop", net.rdrop, "0.4", 0, 1, "ViT layer-drop maximum probability (training)"),
    S_ENUM("train", "optimizer", train.optimizer, "adamw", 0, OPTIMIZERS, "adamw or sgd"),
    S_FLOAT("train", "learning_rate", train.learning_rate, "0.005", 0, 10, "peak learning rate"),
    S_FLOAT("train", "weight_decay", train.weight_decay, "1e-5", 0, 10, "weight decay"),
    S_FLOAT("train", "momentum", train.momentum, "0.9", 0, 1, "SGD momentum"),
    S_INT("train", "n_epochs", train.n_epochs, "2000", 1, 10000000, "epochs"),
    S_INT("train", "batch_size", train.batch_size, "8", 1, 65536, "images per step"),
    S_INT("train", "bsize", train.bsize, "224", 1, 65536, "square crop side in pixels"),
    S_BOOL("train", "rescale", train.rescale, "true", "rescale crops by diameter"),
    /* Cellpose: scale_range None -> 0.5 if rescale else 1.0; set it explicitly with rescale: false */
    S_FLOAT("train", "scale_range", train.scale_range, "0.5", 0, 2, "random zoom range"),
    S_INT("train", "min_train_masks", train.min_train_masks, "5", 0, INT_MAX, "drop images with fewer masks"),
    S_INT("train", "nimg_per_epoch", train.nimg_per_epoch, "0", 0, INT_MAX, "images per epoch, 0 = all"),
    S_INT("train", "save_every", train.save_every, "100", 1, INT_MAX, "epochs between checkpoints"),
    S_BOOL("train", "normalize", train.normalize, "true", "percentile normalization"),
    S_LIST("train", "channels", train.channels, train.n_channels, 2, 2, 2, "[0, 0]", 0, 0, 3,
           "Cellpose channels [cytoplasm, nucleus]: 0 gray, 1 red, 2 green, 3 blue"),
};
#define NKEYS ((int)(sizeof SCHEMA / sizeof SCHEMA[0]))

/* Keys that belong to one net type, and the training defaults that differ
 * when net.type is vit (Cellpose v4 `train_seg`, CELLPOSE.md 4.1). */
typedef struct {
    const char *key;     /* "section.key" */
    int type;            /* NET_CPNET or NET_VIT: the key belongs to that net only; -1: any */
    const char *def_vit; /* default for the ViT, or NULL */
} TypeRule;

static const TypeRule TYPE_RULES[] = {
    {"net.nbase", NET_CPNET, NULL},          {"net.kernel_size", NET_CPNET, NULL},
    {"net.in_chans", NET_VIT, NULL},         {"net.patch_size", NET_VIT, NULL},
    {"net.img_size", NET_VIT, NULL},         {"net.embed_dim", NET_VIT, NULL},
    {"net.depth", NET_VIT, NULL},            {"net.heads", NET_VIT, NULL},
    {"net.mlp_ratio", NET_VIT, NULL},        {"net.neck_chans", NET_VIT, NULL},
    {"net.rel_pos_rows", NET_VIT, NULL},     {"net.rel_pos_rows_global", NET_VIT, NULL},
    {"net.global_blocks", NET_VIT, NULL},    {"net.rdrop", NET_VIT, NULL},
    {"train.learning_rate", -1, "1e-5"},     {"train.weight_decay", -1, "0.1"},
    {"train.n_epochs", -1, "100"},           {"train.batch_size", -1, "1"},
    {"train.bsize", -1, "256"},              {"train.rescale", -1, "false"},
};

static const TypeRule *type_rule(int i) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", SCHEMA[i].section, SCHEMA[i].key);
    for (size_t r = 0; r < sizeof TYPE_RULES / sizeof TYPE_RULES[0]; r++)
        if (!strcmp(TYPE_RULES[r].key, name)) return &TYPE_RULES[r];
    return NULL;
}

/* Does key i apply to a net of this type? */
static int key_applies(int i, int type) {
    const TypeRule *r = type_rule(i);
    return !r || r->type < 0 || r->type == type;
}

/* Where values come from: a file (line/column known) or a label. */
typedef struct {
    const char *origin;          /* file path, or "override ..." / "default" / config path */
    int is_file;                 /* 1: print line:col */
    int line[NKEYS], col[NKEYS]; /* where each key was set (1-based), 0 = not in the file */
} Src;

#define LINE(n) ((int)(n)->start_mark.line + 1)
#define COL(n) ((int)(n)->start_mark.column + 1)

/* ---- errors -------------------------------------------------------------- */

/* "origin:line:col: <message>" (line 0 or not a file: "origin: <message>"). */
__attribute__((format(printf, 5, 6))) static int fail_at(CpErr *e, const Src *s, int line, int col,
                                                         const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s->is_file && line > 0) return cp_fail(e, "%s:%d:%d: %s", s->origin, line, col, msg);
    return cp_fail(e, "%s: %s", s->origin, msg);
}

/* Error blamed on key i, at the line where it was set: "where: sec.key: msg". */
__attribute__((format(printf, 4, 5))) static int fail_key(CpErr *e, const Src *s, int i, const char *fmt,
                                                          ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail_at(e, s, s->line[i], s->col[i], "%s.%s: %s", SCHEMA[i].section, SCHEMA[i].key, msg);
}

/* Shortest text that reads back as exactly v (%.1g .. %.17g; no exponent
 * for 1e-4 <= |v| < 1e15, so 30 is "30.0", not "3e+01"), ".0" added to
 * integral values so the text still reads as a float. */
static void fmt_double(char *buf, size_t n, double v) {
    int plain = fabs(v) >= 1e-4 && fabs(v) < 1e15;
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v && !(plain && strchr(buf, 'e'))) break;
    }
    if (isfinite(v) && !strpbrk(buf, ".e")) strncat(buf, ".0", n - strlen(buf) - 1);
}

/* What a key of type t wants, for "expected ...". */
static const char *describe(const KeySpec *k, KeyType t, char *buf, size_t n) {
    switch (t) {
    case K_INT: return "an integer";
    case K_FLOAT: return "a number";
    case K_BOOL: return "true or false";
    case K_STRING: return "a string";
    case K_INT_LIST: return "a list of integers";
    case K_ENUM: break;
    }
    size_t used = (size_t)snprintf(buf, n, "one of");
    for (int c = 0; k->choices[c] && used < n; c++)
        used += (size_t)snprintf(buf + used, n - used, "%s '%s'", c ? "," : "", k->choices[c]);
    return buf;
}

static const char *node_kind(const yaml_node_t *n) {
    return n->type == YAML_SEQUENCE_NODE ? "a list" : n->type == YAML_MAPPING_NODE ? "a mapping" : "a scalar";
}

/* ---- scalar converters: 0 = ok, else `why` says what is wrong ------------- */

static int conv_int(const char *t, int *out, char *why, size_t n) {
    const char *p = t + (*t == '+' || *t == '-');
    size_t nd = strspn(p, "0123456789");
    if (nd == 0 || p[nd] != '\0') {
        snprintf(why, n, "expected an integer, got '%.80s' (decimal digits only)", t);
        return -1;
    }
    if (nd > 1 && p[0] == '0') {
        snprintf(why, n, "expected a decimal integer, got '%.80s' (YAML 1.1 reads a leading 0 as octal)", t);
        return -1;
    }
    errno = 0;
    long long v = strtoll(t, NULL, 10);
    if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
        snprintf(why, n, "integer overflow: '%.80s' does not fit in 32 bits", t);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* YAML 1.2 float syntax: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int conv_double(const char *t, double *out, char *why, size_t n) {
    const char *p = t + (*t == '+' || *t == '-');
    if (!strcasecmp(p, ".nan") || !strcasecmp(p, "nan") || !strcasecmp(p, ".inf") || !strcasecmp(p, "inf") ||
        !strcasecmp(p, "infinity")) {
        snprintf(why, n, "expected a finite number, got '%.80s' (NaN and Inf are not allowed)", t);
        return -1;
    }
    size_t i = strspn(p, "0123456789"), digits = i;
    if (p[i] == '.') {
        size_t f = strspn(p + i + 1, "0123456789");
        digits += f;
        i += 1 + f;
    }
    int ok = digits > 0;
    if (ok && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        i += (p[i] == '+' || p[i] == '-');
        size_t x = strspn(p + i, "0123456789");
        ok = x > 0;
        i += x;
    }
    if (!ok || p[i] != '\0') {
        snprintf(why, n, "expected a number, got '%.80s'", t);
        return -1;
    }
    double v = strtod(t, NULL); /* underflow gives the correctly rounded tiny value or 0: fine */
    if (!isfinite(v)) {
        snprintf(why, n, "number '%.80s' is too large for a double", t);
        return -1;
    }
    *out = v;
    return 0;
}

static int conv_bool(const char *t, int *out, char *why, size_t n) {
    if (!strcmp(t, "true") || !strcmp(t, "True")) return *out = 1, 0;
    if (!strcmp(t, "false") || !strcmp(t, "False")) return *out = 0, 0;
    snprintf(why, n, "expected true or false, got '%.80s'", t);
    return -1;
}

static int conv_enum(const KeySpec *k, const char *t, int *out, char *why, size_t n) {
    for (int c = 0; k->choices[c]; c++)
        if (!strcmp(t, k->choices[c])) return *out = c, 0;
    char want[200];
    snprintf(why, n, "expected %s, got '%.80s'", describe(k, K_ENUM, want, sizeof want), t);
    return -1;
}

/* ---- binding: node -> field ------------------------------------------------ */

/* One scalar node converted as type t into dst (range checks come later, in
 * check_key). `name` is "sec.key" or "sec.key[i]". */
static int bind_scalar(const KeySpec *k, KeyType t, const yaml_node_t *n, const char *name, void *dst,
                       const Src *s, CpErr *e) {
    char want[200], why[300];
    const char *w = describe(k, t, want, sizeof want);
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(e, s, LINE(n), COL(n), "%s: expected %s, got %s", name, w, node_kind(n));
    const char *text = (const char *)n->data.scalar.value;
    int plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (strlen(text) != n->data.scalar.length)
        return fail_at(e, s, LINE(n), COL(n), "%s: expected %s, got a value with a NUL byte", name, w);
    if (plain && text[0] == '\0')
        return fail_at(e, s, LINE(n), COL(n), "%s: expected %s, got an empty value", name, w);
    if (!plain && t != K_STRING && t != K_ENUM)
        return fail_at(e, s, LINE(n), COL(n), "%s: expected %s, got the quoted string '%.80s' (remove the quotes)",
                       name, w, text);
    int iv = 0, rc = 0;
    double dv = 0;
    switch (t) {
    case K_INT: rc = conv_int(text, &iv, why, sizeof why); break;
    case K_FLOAT: rc = conv_double(text, &dv, why, sizeof why); break;
    case K_BOOL: rc = conv_bool(text, &iv, why, sizeof why); break;
    case K_ENUM: rc = conv_enum(k, text, &iv, why, sizeof why); break;
    case K_STRING:
        if (strlen(text) >= (size_t)k->cap)
            return fail_at(e, s, LINE(n), COL(n), "%s: string longer than %d bytes", name, k->cap - 1);
        memcpy(dst, text, strlen(text) + 1);
        return CP_OK;
    case K_INT_LIST: CP_ASSERT(0 && "lists go through bind_list");
    }
    if (rc) return fail_at(e, s, LINE(n), COL(n), "%s: %s", name, why);
    if (t == K_FLOAT) memcpy(dst, &dv, sizeof dv);
    else memcpy(dst, &iv, sizeof iv); /* enums have the size of int (asserted below) */
    return CP_OK;
}
_Static_assert(sizeof(NetType) == sizeof(int) && sizeof(OptimizerType) == sizeof(int), "enum fields are ints");

static int bind_list(const KeySpec *k, yaml_document_t *d, const yaml_node_t *n, const Src *s, CpConfig *cfg,
                     CpErr *e) {
    if (n->type == YAML_MAPPING_NODE)
        return fail_at(e, s, LINE(n), COL(n), "%s.%s: expected a list of integers (%s), got a mapping", k->section,
                       k->key, k->help);
    if (n->type == YAML_SCALAR_NODE)
        return fail_at(e, s, LINE(n), COL(n), "%s.%s: expected a list of integers (%s), got '%.80s'", k->section,
                       k->key, k->help, (const char *)n->data.scalar.value);
    yaml_node_item_t *items = n->data.sequence.items.start;
    int count = (int)(n->data.sequence.items.top - items);
    if (count > k->cap) /* storage; the valid count is checked in check_key */
        return fail_at(e, s, LINE(n), COL(n), "%s.%s: expected at most %d entries, got %d (%s)", k->section,
                       k->key, k->max_count, count, k->help);
    int vals[8];
    CP_ASSERT(k->cap <= 8);
    for (int i = 0; i < count; i++) {
        char elem[120];
        snprintf(elem, sizeof elem, "%s.%s[%d]", k->section, k->key, i);
        const yaml_node_t *c = yaml_document_get_node(d, items[i]);
        if (bind_scalar(k, K_INT, c, elem, &vals[i], s, e)) return CP_EFAIL;
    }
    memset((char *)cfg + k->off, 0, (size_t)k->cap * sizeof(int)); /* no stale tail after a shorter list */
    memcpy((char *)cfg + k->off, vals, (size_t)count * sizeof(int));
    memcpy((char *)cfg + k->count_off, &count, sizeof count);
    return CP_OK;
}

static int bind_node(int i, yaml_document_t *d, const yaml_node_t *n, const Src *s, CpConfig *cfg, CpErr *e) {
    const KeySpec *k = &SCHEMA[i];
    if (k->type == K_INT_LIST) return bind_list(k, d, n, s, cfg, e);
    char name[96];
    snprintf(name, sizeof name, "%s.%s", k->section, k->key);
    return bind_scalar(k, k->type, n, name, (char *)cfg + k->off, s, e);
}

/* ---- checks ---------------------------------------------------------------- */

/* Key i's value against its schema row: range, enum, list length. */
static int check_key(int i, const CpConfig *cfg, const Src *s, CpErr *e) {
    const KeySpec *k = &SCHEMA[i];
    const char *p = (const char *)cfg + k->off;
    char lo[40], hi[40], want[200];
    fmt_double(lo, sizeof lo, k->min);
    fmt_double(hi, sizeof hi, k->max);
    int iv;
    double dv;
    switch (k->type) {
    case K_INT:
        memcpy(&iv, p, sizeof iv);
        if (iv < k->min || iv > k->max)
            return fail_key(e, s, i, "expected an integer in [%.0f, %.0f], got %d", k->min, k->max, iv);
        return CP_OK;
    case K_FLOAT:
        memcpy(&dv, p, sizeof dv);
        if (!(dv >= k->min && dv <= k->max)) /* also refuses NaN */
            return fail_key(e, s, i, "expected a number in [%s, %s], got %g", lo, hi, dv);
        return CP_OK;
    case K_BOOL:
        memcpy(&iv, p, sizeof iv);
        return iv == 0 || iv == 1 ? CP_OK : fail_key(e, s, i, "expected true or false, got %d", iv);
    case K_ENUM: {
        memcpy(&iv, p, sizeof iv);
        int nc = 0;
        while (k->choices[nc]) nc++;
        if (iv >= 0 && iv < nc) return CP_OK;
        if (k->required && iv == -1)
            return fail_key(e, s, i, "required key not set; expected %s", describe(k, K_ENUM, want, sizeof want));
        return fail_key(e, s, i, "expected %s, got value %d", describe(k, K_ENUM, want, sizeof want), iv);
    }
    case K_STRING: return memchr(p, 0, (size_t)k->cap) ? CP_OK : fail_key(e, s, i, "string not terminated");
    case K_INT_LIST: {
        memcpy(&iv, (const char *)cfg + k->count_off, sizeof iv);
        if (iv == 0 && !key_applies(i, cfg->net.type)) return CP_OK; /* the other net's key, unset */
        if (iv == 0 && k->required) return fail_key(e, s, i, "required key not set (%s)", k->help);
        if (iv < k->min_count || iv > k->max_count) {
            if (k->min_count == k->max_count)
                return fail_key(e, s, i, "expected %d entries, got %d (%s)", k->min_count, iv, k->help);
            return fail_key(e, s, i, "expected %d to %d entries, got %d (%s)", k->min_count, k->max_count, iv,
                            k->help);
        }
        for (int j = 0; j < iv; j++) {
            int v;
            memcpy(&v, p + (size_t)j * sizeof(int), sizeof v);
            if (v < k->min || v > k->max)
                return fail_key(e, s, i, "entry %d: expected an integer in [%.0f, %.0f], got %d", j, k->min,
                                k->max, v);
        }
        return CP_OK;
    }
    }
    return CP_OK;
}

static int key_index(const char *section, const char *key) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(SCHEMA[i].section, section) && !strcmp(SCHEMA[i].key, key)) return i;
    return -1;
}

/* ViT cross-field rules: the token grid and head dim the attention ops
 * support (kernels/attention.h: CP_ATT_MAX_SIDE, CP_ATT_MAX_HD), blocks that
 * exist, and training crops of exactly the tile the pos_embed was built for
 * (Cellpose-SAM accepts only img_size x img_size inputs, CELLPOSE.md 2.1). */
static int validate_vit(const CpConfig *cfg, const Src *s, CpErr *e) {
    const NetConfig *net = &cfg->net;
    if (net->embed_dim % net->heads)
        return fail_key(e, s, key_index("net", "heads"), "%d heads do not divide embed_dim %d", net->heads,
                        net->embed_dim);
    if (net->embed_dim / net->heads > 128)
        return fail_key(e, s, key_index("net", "heads"), "head dim %d = embed_dim / heads is above 128",
                        net->embed_dim / net->heads);
    if (net->img_size % net->patch_size)
        return fail_key(e, s, key_index("net", "img_size"), "%d is not divisible by net.patch_size %d", net->img_size,
                        net->patch_size);
    if (net->img_size / net->patch_size > 64)
        return fail_key(e, s, key_index("net", "img_size"), "token grid side %d = img_size / patch_size is above 64",
                        net->img_size / net->patch_size);
    for (int j = 0; j < net->n_global_blocks; j++)
        if (net->global_blocks[j] >= net->depth)
            return fail_key(e, s, key_index("net", "global_blocks"), "entry %d: block %d does not exist (depth %d)", j,
                            net->global_blocks[j], net->depth);
    if (cfg->train.bsize != net->img_size)
        return fail_key(e, s, key_index("train", "bsize"),
                        "%d: the ViT takes exactly net.img_size = %d pixel tiles; set train.bsize to %d",
                        cfg->train.bsize, net->img_size, net->img_size);
    return CP_OK;
}

/* Every key's own check, then the checks that involve several keys. */
static int validate_src(const CpConfig *cfg, const Src *s, CpErr *e) {
    for (int i = 0; i < NKEYS; i++)
        if (check_key(i, cfg, s, e)) return CP_EFAIL;
    const NetConfig *net = &cfg->net;
    for (int i = 0; i < NKEYS; i++) /* a key of the other net type, written in the file */
        if (s->line[i] && !key_applies(i, net->type))
            return fail_key(e, s, i, "is a %s key; remove it (net.type is %s)", net->type == NET_VIT ? "cpnet" : "vit",
                            NET_TYPES[net->type]);
    if (net->type == NET_VIT) return validate_vit(cfg, s, e);
    if (net->kernel_size % 2 == 0)
        return fail_key(e, s, key_index("net", "kernel_size"),
                        "expected an odd kernel size (padding kernel_size/2 keeps H x W), got %d", net->kernel_size);
    /* CPnet: one 2x2 maxpool between consecutive levels, n_nbase - 2 of them;
     * the upsampling path must land back on the crop size exactly. */
    int pools = net->n_nbase - 2, div = 1 << pools, b = cfg->train.bsize;
    if (b % div) {
        int below = b / div * div, above = below + div;
        char alt[64];
        if (below > 0) snprintf(alt, sizeof alt, "%d or %d", below, above);
        else snprintf(alt, sizeof alt, "%d", above);
        return fail_key(e, s, key_index("train", "bsize"),
                        "%d is not divisible by %d (2^%d: net.nbase has %d entries, so %d maxpool halvings); use %s",
                        b, div, pools, net->n_nbase, pools, alt);
    }
    return CP_OK;
}

int config_validate(const CpConfig *cfg, CpErr *e) {
    Src s = {.origin = cfg->path[0] ? cfg->path : "config"};
    return validate_src(cfg, &s, e);
}

/* ---- parsing ----------------------------------------------------------------- */

static int syntax_error(const yaml_parser_t *p, const Src *s, CpErr *e) {
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_MEMORY_ERROR) return cp_fail(e, "%s: out of memory while parsing YAML", s->origin);
    if (p->error == YAML_READER_ERROR)
        return cp_fail(e, "%s: byte %zu: %s (is it a UTF-8 text file?)", s->origin, p->problem_offset, problem);
    char ctx[160] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s that starts on line %d)", p->context, (int)p->context_mark.line + 1);
    return fail_at(e, s, (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1, "YAML syntax error: %s%s",
                   problem, ctx);
}

/* text -> one YAML document in *d (caller deletes it). A second document in
 * the same text is an error: it would be silently ignored otherwise. */
static int parse_text(const char *text, size_t len, const Src *s, yaml_document_t *d, CpErr *e) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return cp_fail(e, "%s: cannot initialize the YAML parser", s->origin);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = CP_OK;
    if (!yaml_parser_load(&p, d)) {
        rc = syntax_error(&p, s, e);
    } else {
        yaml_document_t d2;
        if (!yaml_parser_load(&p, &d2)) {
            rc = syntax_error(&p, s, e);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&d2);
            if (r2)
                rc = fail_at(e, s, LINE(r2), COL(r2), "a second YAML document ('---'); put everything in one");
            yaml_document_delete(&d2);
        }
        if (rc) yaml_document_delete(d);
    }
    yaml_parser_delete(&p);
    return rc;
}

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* Is `name` close enough to `cand` to suggest it? */
static int near(const char *name, const char *cand, int *best) {
    int d = edit_distance(name, cand), lim = (int)strlen(cand) / 3 > 2 ? (int)strlen(cand) / 3 : 2;
    if (d > lim || d >= *best) return 0;
    *best = d;
    return 1;
}

static int unknown_key(const char *sec, const char *name, const yaml_node_t *at, const Src *s, CpErr *e) {
    int best = 99, pick = -1;
    char known[600] = "";
    size_t used = 0;
    for (int i = 0; i < NKEYS; i++) {
        if (strcmp(SCHEMA[i].section, sec)) continue;
        if (near(name, SCHEMA[i].key, &best)) pick = i;
        if (used < sizeof known)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "", SCHEMA[i].key);
    }
    if (pick >= 0)
        return fail_at(e, s, LINE(at), COL(at), "unknown key '%s.%.80s' (did you mean '%s'?)", sec, name,
                       SCHEMA[pick].key);
    return fail_at(e, s, LINE(at), COL(at), "unknown key '%s.%.80s' (known keys in '%s': %s)", sec, name, sec,
                   known);
}

static int unknown_section(const char *name, const yaml_node_t *at, const Src *s, CpErr *e) {
    int best = 99, pick = -1;
    for (int i = 0; i < NSECTIONS; i++)
        if (near(name, SECTIONS[i], &best)) pick = i;
    if (pick >= 0)
        return fail_at(e, s, LINE(at), COL(at), "unknown section '%.80s' (did you mean '%s'?)", name, SECTIONS[pick]);
    for (int i = 0; i < NKEYS; i++) /* a key written at the top level */
        if (!strcmp(name, SCHEMA[i].key))
            return fail_at(e, s, LINE(at), COL(at), "unknown section '%.80s' (keys go under a section: put it under '%s:')",
                           name, SCHEMA[i].section);
    return fail_at(e, s, LINE(at), COL(at), "unknown section '%.80s' (expected 'net' or 'train')", name);
}

/* Key node -> its text, or an error if the key is not a scalar. */
static const char *key_text(const yaml_node_t *kn, const char *where, const Src *s, CpErr *e) {
    if (kn->type == YAML_SCALAR_NODE) return (const char *)kn->data.scalar.value;
    fail_at(e, s, LINE(kn), COL(kn), "%s: expected a key name, got %s", where, node_kind(kn));
    return NULL;
}

static int load_section(const char *sec, yaml_document_t *d, const yaml_node_t *m, Src *s, CpConfig *cfg, CpErr *e) {
    if (m->type == YAML_SCALAR_NODE && m->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *t = (const char *)m->data.scalar.value; /* "train:" with nothing under it */
        if (!*t || !strcmp(t, "~") || !strcmp(t, "null")) return CP_OK;
    }
    if (m->type != YAML_MAPPING_NODE)
        return fail_at(e, s, LINE(m), COL(m), "section '%s' must be a mapping of keys (indented under '%s:'), got %s",
                       sec, sec, node_kind(m));
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = yaml_document_get_node(d, pr->key);
        const yaml_node_t *vn = yaml_document_get_node(d, pr->value);
        const char *name = key_text(kn, sec, s, e);
        if (!name) return CP_EFAIL;
        int i = key_index(sec, name);
        if (i < 0) return unknown_key(sec, name, kn, s, e);
        if (s->line[i])
            return fail_at(e, s, LINE(kn), COL(kn), "duplicate key '%s.%s' (first set on line %d)", sec, name,
                           s->line[i]);
        s->line[i] = LINE(kn);
        s->col[i] = COL(kn);
        if (bind_node(i, d, vn, s, cfg, e) || check_key(i, cfg, s, e)) return CP_EFAIL;
    }
    return CP_OK;
}

static int load_doc(yaml_document_t *d, Src *s, CpConfig *cfg, CpErr *e) {
    const yaml_node_t *root = yaml_document_get_root_node(d);
    if (!root) return cp_fail(e, "%s: empty config file; expected sections 'net:' and 'train:'", s->origin);
    if (root->type != YAML_MAPPING_NODE)
        return fail_at(e, s, LINE(root), COL(root), "top level must be a mapping with sections 'net:' and 'train:', got %s",
                       node_kind(root));
    int seen[NSECTIONS] = {0};
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = yaml_document_get_node(d, pr->key);
        const char *name = key_text(kn, "top level", s, e);
        if (!name) return CP_EFAIL;
        int si = 0;
        while (si < NSECTIONS && strcmp(SECTIONS[si], name)) si++;
        if (si == NSECTIONS) return unknown_section(name, kn, s, e);
        if (seen[si])
            return fail_at(e, s, LINE(kn), COL(kn), "duplicate section '%s' (first on line %d)", name, seen[si]);
        seen[si] = LINE(kn);
        if (load_section(SECTIONS[si], d, yaml_document_get_node(d, pr->value), s, cfg, e)) return CP_EFAIL;
    }
    for (int i = 0; i < NKEYS; i++)
        if (SCHEMA[i].required && !s->line[i] && key_applies(i, cfg->net.type))
            return cp_fail(e, "%s: missing required key '%s.%s' (%s)", s->origin, SCHEMA[i].section, SCHEMA[i].key,
                           SCHEMA[i].help);
    return CP_OK;
}

/* A value given as YAML text (a default or an override) -> key i. */
static int bind_text(int i, const char *text, const Src *s, CpConfig *cfg, CpErr *e) {
    yaml_document_t d;
    if (parse_text(text, strlen(text), s, &d, e)) return CP_EFAIL;
    const yaml_node_t *root = yaml_document_get_root_node(&d);
    int rc = root ? bind_node(i, &d, root, s, cfg, e)
                  : fail_at(e, s, 0, 0, "%s.%s: expected a value, got an empty one", SCHEMA[i].section, SCHEMA[i].key);
    yaml_document_delete(&d);
    return rc;
}

/* ---- public API ---------------------------------------------------------------- */

int config_defaults(CpConfig *cfg, CpErr *e) {
    CpConfig c;
    memset(&c, 0, sizeof c);
    Src s = {.origin = "default"};
    for (int i = 0; i < NKEYS; i++) {
        const KeySpec *k = &SCHEMA[i];
        if (k->def) {
            if (bind_text(i, k->def, &s, &c, e)) return CP_EFAIL;
        } else if (k->type == K_ENUM) {
            int unset = -1; /* required: check_key reports "not set" */
            memcpy((char *)&c + k->off, &unset, sizeof unset);
        } /* required lists stay at count 0 */
    }
    *cfg = c;
    return CP_OK;
}

int config_load(CpConfig *cfg, const char *path, CpErr *e) {
    CpConfig c;
    if (config_defaults(&c, e)) return CP_EFAIL;
    if (strlen(path) >= sizeof c.path) return cp_fail(e, "%.200s...: config path too long", path);
    snprintf(c.path, sizeof c.path, "%s", path);
    uint8_t *buf;
    size_t len;
    if (cp_read_file(path, MAX_CONFIG_BYTES, &buf, &len, e)) return CP_EFAIL;
    Src s = {.origin = path, .is_file = 1};
    yaml_document_t d;
    int rc = parse_text((const char *)buf, len, &s, &d, e);
    cp_free(buf);
    if (rc) return rc;
    rc = load_doc(&d, &s, &c, e);
    yaml_document_delete(&d);
    if (rc == CP_OK && c.net.type == NET_VIT) { /* Cellpose v4 training defaults for what the file leaves out */
        Src sd = {.origin = "default"};
        for (int i = 0; i < NKEYS && rc == CP_OK; i++) {
            const TypeRule *r = type_rule(i);
            if (r && r->def_vit && !s.line[i]) rc = bind_text(i, r->def_vit, &sd, &c, e);
        }
    }
    if (rc == CP_OK) rc = validate_src(&c, &s, e);
    if (rc == CP_OK) *cfg = c;
    return rc;
}

int config_set(CpConfig *cfg, const char *dotted_key, const char *value, CpErr *e) {
    char sec[64], label[256];
    const char *dot = strchr(dotted_key, '.');
    snprintf(label, sizeof label, "override %.200s", dotted_key);
    Src s = {.origin = label};
    if (!dot || (size_t)(dot - dotted_key) >= sizeof sec)
        return cp_fail(e, "%s: expected section.key like 'train.learning_rate'", label);
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - dotted_key), dotted_key);
    int si = 0;
    while (si < NSECTIONS && strcmp(SECTIONS[si], sec)) si++;
    yaml_node_t at = {0}; /* no position: not a file, so no line is printed */
    if (si == NSECTIONS) return unknown_section(sec, &at, &s, e);
    int i = key_index(sec, dot + 1);
    if (i < 0) return unknown_key(sec, dot + 1, &at, &s, e);
    CpConfig c = *cfg;
    if (bind_text(i, value, &s, &c, e) || check_key(i, &c, &s, e)) return CP_EFAIL;
    *cfg = c;
    return CP_OK;
}

/* ---- output ------------------------------------------------------------------------ */

static json_t *key_json(const KeySpec *k, const CpConfig *cfg) {
    const char *p = (const char *)cfg + k->off;
    int iv;
    double dv;
    memcpy(&iv, p, sizeof iv);
    switch (k->type) {
    case K_INT: return json_integer(iv);
    case K_BOOL: return json_boolean(iv);
    case K_STRING: return json_string(p);
    case K_FLOAT: memcpy(&dv, p, sizeof dv); return isfinite(dv) ? json_real(dv) : json_null();
    case K_ENUM: {
        int nc = 0;
        while (k->choices[nc]) nc++;
        return iv >= 0 && iv < nc ? json_string(k->choices[iv]) : json_null();
    }
    case K_INT_LIST: {
        json_t *a = json_array();
        memcpy(&iv, (const char *)cfg + k->count_off, sizeof iv);
        for (int j = 0; j < iv && j < k->cap; j++) json_array_append_new(a, json_integer(((const int *)p)[j]));
        return a;
    }
    }
    return json_null();
}

json_t *config_to_json(const CpConfig *cfg) {
    json_t *root = json_object();
    for (int s = 0; s < NSECTIONS; s++) json_object_set_new(root, SECTIONS[s], json_object());
    for (int i = 0; i < NKEYS; i++) /* only the keys of this net type */
        if (key_applies(i, cfg->net.type))
            json_object_set_new(json_object_get(root, SCHEMA[i].section), SCHEMA[i].key, key_json(&SCHEMA[i], cfg));
    return root;
}

/* Key i's value as YAML-like text ("0.005", "[2, 32]", "adamw"). */
static void key_text_value(const KeySpec *k, const CpConfig *cfg, char *buf, size_t n) {
    const char *p = (const char *)cfg + k->off;
    int iv;
    double dv;
    memcpy(&iv, p, sizeof iv);
    switch (k->type) {
    case K_INT: snprintf(buf, n, "%d", iv); return;
    case K_BOOL: snprintf(buf, n, "%s", iv ? "true" : "false"); return;
    case K_STRING: snprintf(buf, n, "'%s'", p); return;
    case K_FLOAT: memcpy(&dv, p, sizeof dv); fmt_double(buf, n, dv); return;
    case K_ENUM: {
        int nc = 0;
        while (k->choices[nc]) nc++;
        snprintf(buf, n, "%s", iv >= 0 && iv < nc ? k->choices[iv] : "~");
        return;
    }
    case K_INT_LIST: {
        memcpy(&iv, (const char *)cfg + k->count_off, sizeof iv);
        size_t used = (size_t)snprintf(buf, n, "[");
        for (int j = 0; j < iv && j < k->cap && used < n; j++)
            used += (size_t)snprintf(buf + used, n - used, "%s%d", j ? ", " : "", ((const int *)p)[j]);
        if (used < n) snprintf(buf + used, n - used, "]");
        return;
    }
    }
}

void config_print(const CpConfig *cfg, FILE *f) {
    fprintf(f, "# config: %s\n", cfg->path[0] ? cfg->path : "(defaults)");
    for (int i = 0; i < NKEYS; i++) {
        if (!key_applies(i, cfg->net.type)) continue; /* the other net type's keys */
        char v[256];
        key_text_value(&SCHEMA[i], cfg, v, sizeof v);
        fprintf(f, "%s.%s: %s\n", SCHEMA[i].section, SCHEMA[i].key, v);
    }
}
