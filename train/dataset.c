/* dataset.c - the training data folder reader; see dataset.h for the rules
 * (which files are images, how masks are paired, the strcmp order, layouts).
 *
 * Mirrors Cellpose 3.1.1.3 io.get_image_files / io.get_label_files /
 * io.load_images_labels and utils.diameters (CELLPOSE.md 4.2). Every check
 * ends in one line naming the file (DESIGN.md "bad input of any kind"). */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "flows.h"
#include "image.h"

/* Cellpose's mask_filters list (io.get_image_files) minus the user's filter,
 * which is checked separately. */
static const char *const k_not_image[] = {"_cp_output", "_flows", "_flows_0", "_flows_1",
                                          "_flows_2",   "_cellprob", "_masks"};
static const char *const k_image_ext[] = {".png", ".jpg", ".jpeg", ".tif", ".tiff"};
static const char *const k_refused_ext[] = {".flex", ".dax", ".nd2", ".nrrd"};
static const char *const k_mask_ext[] = {".tif", ".tiff", ".png"};

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Does `name` end with `ext` exactly, or with ext in upper case (Cellpose
 * globs "*{ext}" and "*{ext.upper()}")? */
static int ends_with_ext(const char *name, const char *ext) {
    size_t n = strlen(name), k = strlen(ext);
    if (n <= k) return 0;
    const char *t = name + n - k;
    if (strcmp(t, ext) == 0) return 1;
    for (size_t i = 0; i < k; i++)
        if (t[i] != (ext[i] >= 'a' && ext[i] <= 'z' ? ext[i] - 'a' + 'A' : ext[i])) return 0;
    return 1;
}

static int has_ext(const char *name, const char *const *exts, int n) {
    for (int i = 0; i < n; i++)
        if (ends_with_ext(name, exts[i])) return 1;
    return 0;
}

/* Length of the stem (os.path.splitext: up to the last dot). */
static size_t stem_len(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static int stem_ends_with(const char *name, size_t stem, const char *suffix) {
    size_t k = strlen(suffix);
    return k > 0 && stem >= k && memcmp(name + stem - k, suffix, k) == 0;
}

/* Is this image name a mask or a Cellpose output (skipped)? */
static int is_mask_name(const char *name, const char *mask_filter) {
    size_t s = stem_len(name);
    for (int i = 0; i < NELEM(k_not_image); i++)
        if (stem_ends_with(name, s, k_not_image[i])) return 1;
    return stem_ends_with(name, s, mask_filter);
}

static int is_regular(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *join(const char *dir, const char *name, size_t name_len, const char *tail) {
    size_t n = strlen(dir) + 1 + name_len + strlen(tail) + 1;
    char *p = (char *)cp_malloc(n);
    snprintf(p, n, "%s/%.*s%s", dir, (int)name_len, name, tail);
    return p;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) cp_free(names[i]);
    cp_free(names);
}

/* Image names of `dir` in strcmp order; counts of all visible entries and of
 * files with an image extension for Cellpose's three "no images" errors. */
static int list_images(const char *dir, const char *mask_filter, char ***out, int *nout, CpErr *e) {
    DIR *dp = opendir(dir);
    if (!dp) return cp_fail(e, "%s: cannot open folder (%s)", dir, strerror(errno));
    int cap = 64, n = 0, nvisible = 0, nwith_ext = 0;
    char **names = (char **)cp_malloc(sizeof(char *) * (size_t)cap);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.') continue; /* glob("*") skips hidden files */
        nvisible++;
        char *path = join(dir, de->d_name, strlen(de->d_name), "");
        int reg = is_regular(path);
        cp_free(path);
        if (!reg) continue;
        int img = has_ext(de->d_name, k_image_ext, NELEM(k_image_ext));
        int refused = has_ext(de->d_name, k_refused_ext, NELEM(k_refused_ext));
        if (img || refused) nwith_ext++;
        if ((!img && !refused) || is_mask_name(de->d_name, mask_filter)) continue;
        if (refused) {
            cp_fail(e, "%s/%s: format not supported by this reader (convert it to TIFF)", dir, de->d_name);
            closedir(dp); /* frees de */
            free_names(names, n);
            return CP_EFAIL;
        }
        if (n == cap) {
            char **grown = (char **)cp_malloc(sizeof(char *) * (size_t)cap * 2);
            memcpy(grown, names, sizeof(char *) * (size_t)n);
            cp_free(names);
            names = grown;
            cap *= 2;
        }
        names[n++] = cp_strdup(de->d_name);
    }
    closedir(dp);
    if (n == 0) {
        cp_free(names);
        if (nvisible == 0) return cp_fail(e, "%s: folder is empty (no files)", dir);
        if (nwith_ext == 0) return cp_fail(e, "%s: no images with extensions .tif .tiff .png .jpg .jpeg", dir);
        return cp_fail(e, "%s: no images left after skipping masks and outputs (names ending in '%s', _masks, _flows, "
                       "_cellprob)", dir, mask_filter);
    }
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    *out = names;
    *nout = n;
    return CP_OK;
}

int dataset_list_images(const char *dir, const char *mask_filter, char ***names, int *n, CpErr *e) {
    return list_images(dir, mask_filter ? mask_filter : "_masks", names, n, e);
}

void dataset_free_names(char **names, int n) { free_names(names, n); }

/* NAME<mask_filter>.tif / .tiff / .png, the first that exists. */
static int find_mask(const char *dir, const char *name, const char *mask_filter, char **mask_path, CpErr *e) {
    size_t s = stem_len(name);
    char tail[512];
    for (int i = 0; i < NELEM(k_mask_ext); i++) {
        snprintf(tail, sizeof tail, "%s%s", mask_filter, k_mask_ext[i]);
        char *p = join(dir, name, s, tail);
        if (is_regular(p)) {
            *mask_path = p;
            return CP_OK;
        }
        cp_free(p);
    }
    return cp_fail(e, "%s/%s: no mask %.*s%s.tif (mask filter '%s'; also tried .tiff, .png)", dir, name, (int)s,
                   name, mask_filter, mask_filter);
}

/* Image file -> float32 [c, h, w]. */
static int read_image(DatasetItem *it, int64_t max_pixels, CpErr *e) {
    Image img;
    if (image_read(&img, it->image_path, 0, max_pixels, e)) return CP_EFAIL;
    if (img.npages > 1) {
        int np = img.npages;
        image_free(&img);
        return cp_fail(e, "%s: %d pages; training images must be single-page 2-D images (store channels as samples)",
                       it->image_path, np);
    }
    it->h = img.h;
    it->w = img.w;
    it->c = img.c;
    int64_t hw = img.h * img.w;
    float *hwc = (float *)cp_malloc(sizeof(float) * (size_t)(hw * img.c));
    image_to_f32(&img, hwc);
    image_free(&img);
    it->image = (float *)cp_malloc(sizeof(float) * (size_t)(hw * it->c));
    for (int64_t p = 0; p < hw; p++) /* HWC -> CHW (numpy transpose(2, 0, 1)) */
        for (int ch = 0; ch < it->c; ch++) it->image[(int64_t)ch * hw + p] = hwc[p * it->c + ch];
    cp_free(hwc);
    return CP_OK;
}

/* Mask file -> uint32 [h, w], same size as the image, at least one label. */
static int read_mask(DatasetItem *it, int64_t max_pixels, CpErr *e) {
    Image m;
    if (image_read(&m, it->mask_path, 0, max_pixels, e)) return CP_EFAIL;
    int rc = CP_OK;
    if (m.npages > 1)
        rc = cp_fail(e, "%s: mask has %d pages; expected one 2-D label image", it->mask_path, m.npages);
    else if (m.h != it->h || m.w != it->w)
        rc = cp_fail(e, "%s: mask is %lldx%lld (HxW) but its image %s is %lldx%lld", it->mask_path, (long long)m.h,
                     (long long)m.w, it->name, (long long)it->h, (long long)it->w);
    if (rc == CP_OK) {
        it->labels = (uint32_t *)cp_malloc(sizeof(uint32_t) * (size_t)(m.h * m.w));
        rc = image_to_labels(&m, it->mask_path, it->labels, e);
    }
    image_free(&m);
    if (rc) return rc;
    int64_t nz = 0;
    for (int64_t p = 0; p < it->h * it->w; p++) nz += it->labels[p] != 0;
    if (nz == 0) return cp_fail(e, "%s: mask has no labels (every pixel is 0)", it->mask_path);
    return CP_OK;
}

static int read_item(DatasetItem *it, const char *dir, const char *name, const char *mask_filter,
                     int64_t max_pixels, CpErr *e) {
    it->name = cp_strdup(name);
    it->image_path = join(dir, name, strlen(name), "");
    if (find_mask(dir, name, mask_filter, &it->mask_path, e)) return CP_EFAIL;
    if (read_image(it, max_pixels, e)) return CP_EFAIL;
    if (read_mask(it, max_pixels, e)) return CP_EFAIL;
    if (sha256_file_hex(it->image_path, it->image_sha256, e)) return CP_EFAIL;
    if (sha256_file_hex(it->mask_path, it->mask_sha256, e)) return CP_EFAIL;
    return CP_OK;
}

int dataset_open(Dataset *d, const char *dir, const char *mask_filter, int64_t max_pixels, CpErr *e) {
    memset(d, 0, sizeof *d);
    if (!mask_filter) mask_filter = "_masks";
    if (!mask_filter[0]) return cp_fail(e, "%s: empty mask filter (use e.g. '_masks')", dir);
    struct stat st;
    if (stat(dir, &st) != 0) return cp_fail(e, "%s: no such folder", dir);
    if (!S_ISDIR(st.st_mode)) return cp_fail(e, "%s: not a folder", dir);
    char **names = NULL;
    int n = 0;
    if (list_images(dir, mask_filter, &names, &n, e)) return CP_EFAIL;
    d->dir = cp_strdup(dir);
    d->items = (DatasetItem *)cp_calloc((size_t)n, sizeof(DatasetItem));
    d->n = n;
    for (int i = 0; i < n; i++) {
        if (read_item(&d->items[i], dir, names[i], mask_filter, max_pixels, e)) {
            free_names(names, n);
            dataset_free(d);
            return CP_EFAIL;
        }
    }
    free_names(names, n);
    return CP_OK;
}

void dataset_free(Dataset *d) {
    for (int i = 0; i < d->n && d->items; i++) {
        DatasetItem *it = &d->items[i];
        cp_free(it->name);
        cp_free(it->image_path);
        cp_free(it->mask_path);
        cp_free(it->image);
        cp_free(it->labels);
    }
    cp_free(d->items);
    cp_free(d->dir);
    memset(d, 0, sizeof *d);
}

int64_t dataset_count_masks(const uint32_t *labels, int64_t h, int64_t w, double *diam) {
    int64_t nm;
    double d = flows_diameter_count(labels, h, w, &nm); /* utils.diameters */
    if (diam) *diam = d;
    return nm;
}
