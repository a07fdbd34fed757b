/* dataset.h - the training data folder reader (Cellpose's io.get_image_files,
 * io.get_label_files and io.load_images_labels, CELLPOSE.md 4.2).
 *
 * A folder holds images NAME.ext (ext: .tif .tiff .png .jpg .jpeg, all lower
 * or all upper case, as Cellpose's glob) and their labels
 * NAME<mask_filter>.tif / .tiff / .png (tried in that order). Files whose stem
 * ends with _cp_output, _flows, _flows_0, _flows_1, _flows_2, _cellprob,
 * _masks or mask_filter are not images (they are masks and Cellpose outputs,
 * e.g. NAME_cp_masks.tif) and are skipped, as are hidden files and
 * sub-folders. Formats Cellpose lists but this reader cannot decode (.flex
 * .dax .nd2 .nrrd) are refused, never silently dropped.
 *
 * Order: file names sorted with strcmp (byte order), so the order is a
 * function of the names only, never of the filesystem. (Cellpose uses
 * natsort; the two agree for zero-padded names such as img_000..img_099.)
 *
 * Layouts: image float32 [C,H,W] (channels first, as Cellpose transposes
 * before normalising), labels uint32 [H,W] (0 = background). Values are the
 * file's values converted exactly (integers up to 2^24), not normalised.
 *
 * Every pair is read and checked when the folder is opened; any problem ends
 * with one line naming the file: missing folder, no images, an image without
 * its mask, a mask whose size differs, an unreadable or corrupt file, NaN/Inf
 * pixels, a multi-page image, a mask with no labels. Images with fewer than
 * min_train_masks labels are NOT removed here: train counts them with
 * dataset_count_masks and drops them with a warning, as Cellpose does.
 *
 * Determinism: reading is sequential; nothing depends on threads or time. */
#ifndef CP_DATASET_H
#define CP_DATASET_H

#include <stdint.h>

#include "common.h"
#include "sha256.h"

typedef struct {
    char *name;                           /* image file name, no folder ("a_001.tif") */
    char *image_path;                     /* folder + "/" + name */
    char *mask_path;                      /* folder + "/" + NAME<mask_filter>.ext */
    int64_t h, w;                         /* pixels */
    int c;                                /* image channels, 1..4 */
    float *image;                         /* [c, h, w] float32 */
    uint32_t *labels;                     /* [h, w] */
    char image_sha256[CP_SHA256_HEX];     /* of the image file's bytes */
    char mask_sha256[CP_SHA256_HEX];      /* of the mask file's bytes */
} DatasetItem;

typedef struct {
    char *dir;          /* the folder as given */
    int n;              /* pairs */
    DatasetItem *items; /* [n], in strcmp order of the image names */
} Dataset;

/* Open `dir` and read every image/mask pair. mask_filter: "_masks" is
 * Cellpose's default; NULL means "_masks". max_pixels: per file (h * w)
 * limit handed to image_read (INT64_MAX for none). On failure *d is empty
 * (nothing to free) and e names the file. */
/* The image files of a folder as Cellpose's io.get_image_files sees them
 * (extensions, masks and outputs skipped, hidden files skipped), names only,
 * in strcmp order; one-line errors for an empty folder or no images. Free
 * with dataset_free_names. Used by `infer --dir`. */
int dataset_list_images(const char *dir, const char *mask_filter, char ***names, int *n, CpErr *e);
void dataset_free_names(char **names, int n);

int dataset_open(Dataset *d, const char *dir, const char *mask_filter, int64_t max_pixels, CpErr *e);
void dataset_free(Dataset *d);

/* Mask count and median diameter exactly as Cellpose's utils.diameters:
 * counts of the sorted unique values with the FIRST one dropped (Cellpose's
 * counts[1:] assumes label 0 is present; with no background pixel the
 * smallest label is dropped, and we do the same), nmasks = number of counts
 * left, diam = median(sqrt(counts)) / (sqrt(pi) / 2) in float64, 0 when no
 * masks. train uses nmasks for min_train_masks and clamps diam to >= 5.
 * labels [h, w]; diam may be NULL. Returns nmasks. */
int64_t dataset_count_masks(const uint32_t *labels, int64_t h, int64_t w, double *diam);

#endif
