/* common.c - error lines, checked allocation, checked file I/O, atomic files. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cp_fail(CpErr *e, const char *fmt, ...) {
    if (!e) return CP_EFAIL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    for (char *p = e->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return CP_EFAIL;
}

void cp_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "internal error: assertion `%s` failed at %s:%d\n", cond, file, line);
    abort();
}

void *cp_malloc_at(size_t n, const char *file, int line) {
    if (n == 0) n = 1;
    size_t rounded = (n + 63) & ~(size_t)63;
    if (rounded < n) goto fail;
    void *p = aligned_alloc(64, rounded);
    if (p) return p;
fail:
    fprintf(stderr, "out of memory: could not allocate %zu bytes (%.1f MiB) at %s:%d\n", n,
            (double)n / (1024.0 * 1024.0), file, line);
    abort();
}

void *cp_calloc_at(size_t count, size_t size, const char *file, int line) {
    if (size && count > SIZE_MAX / size) {
        fprintf(stderr, "out of memory: %zu x %zu bytes overflows at %s:%d\n", count, size, file, line);
        abort();
    }
    void *p = cp_malloc_at(count * size, file, line);
    memset(p, 0, count * size);
    return p;
}

char *cp_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = cp_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

void cp_free(void *p) { free(p); }

FILE *cp_fopen(const char *path, const char *mode, CpErr *e) {
    FILE *f = fopen(path, mode);
    if (!f) {
        cp_fail(e, "%s: cannot open for %s: %s", path, mode[0] == 'r' ? "reading" : "writing",
                strerror(errno));
        return NULL;
    }
    if (mode[0] == 'r') {
        struct stat st;
        if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
            fclose(f);
            cp_fail(e, "%s: is a directory, expected a file", path);
            return NULL;
        }
    }
    return f;
}

int cp_fread_exact(void *dst, size_t n, FILE *f, const char *path, CpErr *e) {
    long at = ftell(f);
    size_t got = fread(dst, 1, n, f);
    if (got != n) {
        if (ferror(f)) return cp_fail(e, "%s: read error at byte %ld: %s", path, at, strerror(errno));
        return cp_fail(e, "%s: truncated: expected %zu bytes at offset %ld, file has only %zu more", path,
                       n, at, got);
    }
    return CP_OK;
}

int cp_fwrite_all(const void *src, size_t n, FILE *f, const char *path, CpErr *e) {
    if (n && fwrite(src, 1, n, f) != n)
        return cp_fail(e, "%s: write failed: %s (disk full?)", path, strerror(errno));
    return CP_OK;
}

int cp_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len, CpErr *e) {
    *out = NULL;
    *len = 0;
    FILE *f = cp_fopen(path, "rb", e);
    if (!f) return CP_EFAIL;
    if (fseeko(f, 0, SEEK_END) != 0) {
        fclose(f);
        return cp_fail(e, "%s: cannot seek: %s", path, strerror(errno));
    }
    off_t size = ftello(f);
    rewind(f);
    if (size < 0 || (uint64_t)size > max_bytes) {
        fclose(f);
        return cp_fail(e, "%s: file is %lld bytes, larger than the limit of %zu bytes", path,
                       (long long)size, max_bytes);
    }
    uint8_t *buf = cp_malloc((size_t)size + 1);
    if (cp_fread_exact(buf, (size_t)size, f, path, e) != CP_OK) {
        fclose(f);
        cp_free(buf);
        return CP_EFAIL;
    }
    fclose(f);
    buf[size] = 0;
    *out = buf;
    *len = (size_t)size;
    return CP_OK;
}

/* ---- atomic files ---- */

static int make_tmp_path(CpAtomicFile *af, const char *path, CpErr *e) {
    if (strlen(path) + 32 >= sizeof af->tmp_path) return cp_fail(e, "%s: path too long", path);
    snprintf(af->final_path, sizeof af->final_path, "%s", path);
    char dircopy[4096], basecopy[4096];
    snprintf(dircopy, sizeof dircopy, "%s", path);
    snprintf(basecopy, sizeof basecopy, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s/.%s.tmp.XXXXXX", dirname(dircopy), basename(basecopy));
    int fd = mkstemp(af->tmp_path);
    if (fd < 0)
        return cp_fail(e, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
    /* mkstemp creates 0600; give the final file the usual umask-derived mode. */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    close(fd);
    return CP_OK;
}

int cp_atomic_reserve(CpAtomicFile *af, const char *path, CpErr *e) {
    af->f = NULL;
    return make_tmp_path(af, path, e);
}

int cp_atomic_open(CpAtomicFile *af, const char *path, CpErr *e) {
    af->f = NULL;
    if (make_tmp_path(af, path, e) != CP_OK) return CP_EFAIL;
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        int err = errno;
        unlink(af->tmp_path);
        return cp_fail(e, "%s: cannot open temporary file: %s", path, strerror(err));
    }
    return CP_OK;
}

int cp_atomic_commit(CpAtomicFile *af, CpErr *e) {
    if (af->f) {
        if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
            int err = errno;
            fclose(af->f);
            af->f = NULL;
            unlink(af->tmp_path);
            return cp_fail(e, "%s: write failed: %s (disk full?)", af->final_path, strerror(err));
        }
        if (fclose(af->f) != 0) {
            af->f = NULL;
            unlink(af->tmp_path);
            return cp_fail(e, "%s: close failed: %s", af->final_path, strerror(errno));
        }
        af->f = NULL;
    } else {
        int fd = open(af->tmp_path, O_RDONLY);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    if (rename(af->tmp_path, af->final_path) != 0) {
        int err = errno;
        unlink(af->tmp_path);
        return cp_fail(e, "%s: cannot move finished file into place: %s", af->final_path, strerror(err));
    }
    char dircopy[4096];
    snprintf(dircopy, sizeof dircopy, "%s", af->final_path);
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return CP_OK;
}

void cp_atomic_abort(CpAtomicFile *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp_path[0]) unlink(af->tmp_path);
    af->tmp_path[0] = 0;
}

double cp_time_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cp_ends_with_ci(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}
