/* compare.c - see compare.h: tensor and model figures, input kinds. The mask
 * part is compare_masks.c. All sums are double, serial, in element order. */
#include "compare.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "sha256.h"

int cmp_is_float(StDtype dt) { return dt == ST_F32 || dt == ST_F64 || dt == ST_F16 || dt == ST_BF16; }

/* IEEE half -> double (exact). */
static double half_to_double(uint16_t h) {
    int ex = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v;
    if (ex == 0) v = ldexp((double)man, -24);
    else if (ex == 31) v = man ? NAN : INFINITY;
    else v = ldexp((double)(man | 0x400), ex - 25);
    return (h & 0x8000) ? -v : v;
}

/* Element i's raw bits (up to 64), little-endian storage read bytewise. */
static uint64_t raw_bits(StDtype dt, const void *data, int64_t i) {
    size_t sz = st_dtype_size(dt);
    const uint8_t *p = (const uint8_t *)data + (size_t)i * sz;
    uint64_t v = 0;
    for (size_t k = 0; k < sz; k++) v |= (uint64_t)p[k] << (8 * k);
    return v;
}

double cmp_value(StDtype dt, const void *data, int64_t i) {
    uint64_t u = raw_bits(dt, data, i);
    switch (dt) {
    case ST_BOOL: case ST_U8: case ST_U16: case ST_U32: return (double)u;
    case ST_U64: return (double)u;
    case ST_I8: return (double)(int8_t)u;
    case ST_I16: return (double)(int16_t)u;
    case ST_I32: return (double)(int32_t)u;
    case ST_I64: return (double)(int64_t)u;
    case ST_F16: return half_to_double((uint16_t)u);
    case ST_BF16: {
        uint32_t b = (uint32_t)u << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    case ST_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    case ST_F64: {
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    default: return NAN;
    }
}

/* Ordered integer of a float's bits of width `bits`: sign-magnitude to a
 * signed line where neighbouring floats differ by 1 and +0 == -0 == 0. */
static int64_t ordered(uint64_t u, int bits) {
    uint64_t sign = (uint64_t)1 << (bits - 1), mag = u & (sign - 1);
    return (u & sign) ? -(int64_t)mag : (int64_t)mag;
}

static int float_bits(StDtype dt) { return dt == ST_F64 ? 64 : dt == ST_F32 ? 32 : 16; }

/* ulp distance of one element pair (see compare.h). */
static uint64_t ulp_distance(StDtype dt, uint64_t ua, uint64_t ub, double a, double b) {
    if (!cmp_is_float(dt)) {
        if (dt == ST_BOOL) return ua != ub;
        double d = fabs(a - b);
        return d >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d;
    }
    int bits = float_bits(dt);
    if (isnan(a) || isnan(b)) {
        if (isnan(a) && isnan(b)) return 0;
        return bits == 64 ? UINT64_MAX : (uint64_t)1 << bits;
    }
    int64_t oa = ordered(ua, bits), ob = ordered(ub, bits);
    /* 64-bit: the difference of two ordered values can exceed INT64_MAX */
    return oa >= ob ? (uint64_t)oa - (uint64_t)ob : (uint64_t)ob - (uint64_t)oa;
}

void cmp_begin(CmpStats *s) {
    memset(s, 0, sizeof *s);
    s->identical = 1;
}

void cmp_finish(CmpStats *s) {
    s->l2_diff = sqrt(s->ss_diff), s->l2_a = sqrt(s->ss_a), s->l2_b = sqrt(s->ss_b);
    s->rel_l2 = s->l2_a > 0 ? s->l2_diff / s->l2_a : s->l2_diff > 0 ? INFINITY : 0.0;
    if (s->l2_a > 0 && s->l2_b > 0) s->cosine = s->dot / (s->l2_a * s->l2_b);
    else s->cosine = s->l2_a == 0 && s->l2_b == 0 ? 1.0 : 0.0;
}

void cmp_tensor(CmpStats *s, StDtype dt, const void *a, const void *b, int64_t n) {
    cmp_begin(s);
    s->numel = n;
    s->identical = memcmp(a, b, (size_t)n * st_dtype_size(dt)) == 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t ua = raw_bits(dt, a, i), ub = raw_bits(dt, b, i);
        if (ua == ub) { /* equal bits: adds to the norms only */
            double x = cmp_value(dt, a, i);
            if (!isfinite(x)) {
                s->nonfinite++;
                continue;
            }
            s->ss_a += x * x, s->ss_b += x * x, s->dot += x * x;
            continue;
        }
        s->ndiff++;
        double x = cmp_value(dt, a, i), y = cmp_value(dt, b, i);
        uint64_t u = ulp_distance(dt, ua, ub, x, y);
        if (u > s->max_ulp) s->max_ulp = u;
        if (!isfinite(x) || !isfinite(y)) {
            s->nonfinite++;
            continue;
        }
        double d = x - y;
        s->ss_diff += d * d, s->ss_a += x * x, s->ss_b += y * y, s->dot += x * y;
        if (fabs(d) > s->max_abs) s->max_abs = fabs(d);
    }
    cmp_finish(s);
}

void cmp_accumulate(CmpStats *all, const CmpStats *t, StDtype dt) {
    all->numel += t->numel, all->ndiff += t->ndiff;
    all->identical = all->identical && t->identical;
    if (!cmp_is_float(dt)) return; /* counters and steps: only counted */
    all->nonfinite += t->nonfinite;
    all->ss_diff += t->ss_diff, all->ss_a += t->ss_a, all->ss_b += t->ss_b, all->dot += t->dot;
    if (t->max_abs > all->max_abs) all->max_abs = t->max_abs;
    if (t->max_ulp > all->max_ulp) all->max_ulp = t->max_ulp;
}

void cmp_model_stats(ModelStats *ms, const StFile *f) {
    memset(ms, 0, sizeof *ms);
    ms->min = INFINITY, ms->max = -INFINITY;
    double sum = 0, ss = 0;
    CpSha256 h;
    sha256_init(&h);
    for (int t = 0; t < f->n; t++) {
        const StTensor *x = &f->tensors[t];
        if (strncmp(x->name, "optimizer.", 10) == 0) continue;
        sha256_update(&h, x->data, (size_t)(x->end - x->begin));
        if (!cmp_is_float(x->dtype)) continue;
        for (int64_t i = 0; i < x->numel; i++) {
            double v = cmp_value(x->dtype, x->data, i);
            if (!isfinite(v)) {
                ms->nonfinite++;
                continue;
            }
            ms->nparams++, sum += v, ss += v * v;
            ms->min = fmin(ms->min, v), ms->max = fmax(ms->max, v);
        }
    }
    sha256_final_hex(&h, ms->sha256);
    ms->l2 = sqrt(ss);
    if (ms->nparams) {
        ms->mean = sum / (double)ms->nparams;
        double var = 0; /* second pass: sum (v - mean)^2, stable */
        for (int t = 0; t < f->n; t++) {
            const StTensor *x = &f->tensors[t];
            if (strncmp(x->name, "optimizer.", 10) == 0 || !cmp_is_float(x->dtype)) continue;
            for (int64_t i = 0; i < x->numel; i++) {
                double v = cmp_value(x->dtype, x->data, i);
                if (isfinite(v)) var += (v - ms->mean) * (v - ms->mean);
            }
        }
        ms->std = sqrt(var / (double)ms->nparams);
    } else {
        ms->min = ms->max = 0;
    }
}

/* ---- input kinds ---- */

const char *cmp_kind_name(CmpKind k) {
    static const char *const names[] = {"model", "mask image", "run folder", "mask folder", "unknown"};
    return names[k];
}

int cmp_kind(CmpKind *k, const char *path, CpErr *e) {
    struct stat sb;
    *k = CMP_UNKNOWN;
    if (stat(path, &sb) != 0) return cp_fail(e, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char man[4200];
        snprintf(man, sizeof man, "%s/manifest.json", path);
        *k = stat(man, &sb) == 0 ? CMP_RUN : CMP_MASK_DIR;
        return CP_OK;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return cp_fail(e, "%s: %s", path, strerror(errno));
    uint8_t m[8] = {0};
    size_t got = fread(m, 1, 8, f);
    fclose(f);
    int tiff = got >= 4 && ((m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43) && m[3] == 0) ||
                            (m[0] == 'M' && m[1] == 'M' && m[2] == 0 && (m[3] == 42 || m[3] == 43)));
    int png = got == 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0;
    *k = tiff || png ? CMP_MASK : CMP_MODEL;
    return CP_OK;
}
