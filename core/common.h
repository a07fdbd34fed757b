/* common.h - errors, checked wrappers and small utilities used everywhere.
 *
 * Error convention (STYLE.md "Errors"): library code never prints and never
 * exits on bad input. A function that can fail takes a `CpErr *` as its last
 * argument, fills in one line ("path: what is wrong; what to do") and returns
 * a non-zero status (CP_EFAIL). Programs print that line and exit non-zero.
 * Broken invariants inside the program (not the user's fault) use CP_ASSERT,
 * which stays on in release builds and aborts with file:line. Out-of-memory
 * also aborts: no caller can do anything useful with it. */
#ifndef CP_COMMON_H
#define CP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CP_OK 0
#define CP_EFAIL (-1)

/* One error line. 1 KiB: long paths plus a sentence fit. */
typedef struct {
    char msg[1024];
} CpErr;

/* Fill `e` (may be NULL) with a printf-style message; returns CP_EFAIL so
 * call sites can `return cp_fail(e, "%s: truncated", path);`. Newlines in
 * the message are replaced by spaces: an error is always exactly one line. */
int cp_fail(CpErr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Assert that is never compiled out. */
#define CP_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) cp_assert_fail(#cond, __FILE__, __LINE__);                \
    } while (0)
void cp_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

/* Allocation: aborts with the size and the call site on failure. Sizes are
 * checked for overflow (count * size). Memory from cp_malloc is 64-byte
 * aligned (SIMD, cache lines) and released with cp_free. */
#define cp_malloc(n) cp_malloc_at((n), __FILE__, __LINE__)
#define cp_calloc(count, size) cp_calloc_at((count), (size), __FILE__, __LINE__)
#define cp_strdup(s) cp_strdup_at((s), __FILE__, __LINE__)
void *cp_malloc_at(size_t n, const char *file, int line);
void *cp_calloc_at(size_t count, size_t size, const char *file, int line);
char *cp_strdup_at(const char *s, const char *file, int line);
void cp_free(void *p);

/* Files. Every message names the path. */
FILE *cp_fopen(const char *path, const char *mode, CpErr *e);
/* Read exactly n bytes or fail with "path: truncated ...". */
int cp_fread_exact(void *dst, size_t n, FILE *f, const char *path, CpErr *e);
int cp_fwrite_all(const void *src, size_t n, FILE *f, const char *path, CpErr *e);
/* Whole file into memory (NUL-terminated for convenience). Files larger than
 * max_bytes are refused. *out is cp_malloc'ed. */
int cp_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len, CpErr *e);

/* Atomic output (DESIGN.md: "no partial output left behind"): write to a
 * temporary file in the destination folder, then commit = fflush + fsync +
 * rename + fsync(folder). abort = remove the temporary file. A program that
 * dies in between leaves only a `.name.tmp.XXXXXX` file, never a truncated
 * `name`. */
typedef struct {
    FILE *f;
    char tmp_path[4096];
    char final_path[4096];
} CpAtomicFile;
int cp_atomic_open(CpAtomicFile *af, const char *path, CpErr *e);
/* For writers that open the file themselves (libtiff): reserve a temporary
 * path next to `path` without keeping a FILE open. */
int cp_atomic_reserve(CpAtomicFile *af, const char *path, CpErr *e);
int cp_atomic_commit(CpAtomicFile *af, CpErr *e);
void cp_atomic_abort(CpAtomicFile *af);

/* Wall-clock seconds (monotonic); only for progress and timings, never for
 * anything that feeds a value. */
double cp_time_sec(void);

/* Does `s` end with `suffix` (case-insensitive)? */
int cp_ends_with_ci(const char *s, const char *suffix);

#ifdef __cplusplus
}
#endif

#endif
