#!/usr/bin/env bash
# cuda_gate.sh - the PTX/SASS gate of the deterministic CUDA backend
# (DESIGN.md rules 3, 4, 5, 7). Runs without a GPU: it only compiles.
#
#   NVCC=nvcc NVFLAGS="..." OUT=build/cuda-gate bash tests/cuda_gate.sh kernels/*.cu
#
# Each file is compiled with the deterministic flags (NVFLAGS from the
# Makefile: --fmad=false -prec-div=true -prec-sqrt=true -ftz=false), its PTX
# (nvcc -cubin -keep: the PTX ptxas compiled) and SASS (cuobjdump -sass) are dumped to $OUT, and
# the gate fails on any forbidden instruction:
#   PTX:  any `.approx` (approximate div/sqrt/rcp/ex2/lg2/sin/cos/tanh), any
#         `.ftz`, any float atomic or reduction (atom/red on f16/bf16/f32/f64),
#         any tensor-core or TF32 instruction (mma, wmma, wgmma, .tf32).
#   SASS: MUFU other than the seeds that IEEE-exact division and square root
#         need (the allowlist is not hand-written: it is read off a
#         calibration kernel that does only precise float/double division,
#         sqrt and 64-bit integer division, compiled with the same flags);
#         float ATOM/RED; HMMA/HGMMA/IMMA/DMMA/QGMMA; an FTZ float operation
#         (FADD/FMUL/FFMA/FSETP/... .FTZ) farther than $FTZ_WINDOW
#         instructions from an allowed MUFU seed in the same function.
# Why FTZ can appear in SASS at all: ptxas expands div.rn / sqrt.rn /
# rcp.rn (and integer division) into a MUFU.RCP / MUFU.RSQ seed plus Newton
# steps, some of them with .FTZ on intermediate values whose range it has
# scaled first, and F2I.FTZ.*.TRUNC of a reciprocal estimate in integer
# division (exempt: a denormal truncates to 0 with or without FTZ); the
# results are the correctly rounded IEEE ones. The PTX is what we wrote and it
# must contain no .ftz at all: that is the authoritative FTZ check; the SASS
# window rule is a second net.
#
# A self-test runs first: kernels that use __expf, atomicAdd on a float,
# __fdividef and -ftz=true must each make the gate fail; if one does not, the
# gate itself is broken and fails.
# Output: one line per file, then "cuda gate: N files, 0 forbidden instructions".
set -u
NVCC=${NVCC:-nvcc}
NVFLAGS=${NVFLAGS:--O2 -std=c++17 -arch=sm_90 --fmad=false -prec-div=true -prec-sqrt=true -ftz=false -I. -Icore}
OUT=${OUT:-build/cuda-gate}
FTZ_WINDOW=${FTZ_WINDOW:-200}
mkdir -p "$OUT"

# ---- cuobjdump: $CUOBJDUMP, PATH, next to nvcc, or the pip wheel (make cuda-tools) ----
find_cuobjdump() {
    local c
    for c in "${CUOBJDUMP:-}" "$(command -v cuobjdump 2>/dev/null)" "$(dirname "$(command -v "$NVCC")")/cuobjdump" \
        "${CUDA_TOOLS:-build/cudatools}"/nvidia/cu*/bin/cuobjdump; do
        [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
    done
    return 1
}
CUOBJDUMP=$(find_cuobjdump) || {
    echo "cuda gate: cuobjdump not found (not in the CUDA toolkit at $(dirname "$(command -v "$NVCC")")); run 'make cuda-tools' or set CUOBJDUMP"
    exit 1
}

# compile FILE STEM [extra flags]: $OUT/STEM.ptx and $OUT/STEM.sass. One nvcc
# run: -keep leaves the PTX that ptxas turned into this very cubin.
compile() {
    local f=$1 stem=$2
    shift 2
    rm -rf "$OUT/keep_$stem" && mkdir -p "$OUT/keep_$stem"
    # shellcheck disable=SC2086
    "$NVCC" $NVFLAGS "$@" -cubin -keep -keep-dir "$OUT/keep_$stem" "$f" -o "$OUT/$stem.cubin" || return 2
    cat "$OUT/keep_$stem"/*.ptx >"$OUT/$stem.ptx" 2>/dev/null || return 2
    rm -rf "$OUT/keep_$stem"
    "$CUOBJDUMP" -sass "$OUT/$stem.cubin" >"$OUT/$stem.sass" || return 2
}

# ---- calibration: which MUFU forms precise arithmetic needs ----
cat >"$OUT/calib.cu" <<'EOF'
#include <stdint.h>
__global__ void k_calib(float *f, double *d, int64_t *q, const float *a, const double *b, const int64_t *c) {
    int i = threadIdx.x;
    f[i] = a[i] / a[i + 1];            /* div.rn.f32 */
    f[i + 1] = sqrtf(a[i + 2]);        /* sqrt.rn.f32 */
    f[i + 2] = 1.0f / sqrtf(a[i + 3]); /* sqrt.rn then rcp.rn / div.rn */
    d[i] = b[i] / b[i + 1];            /* div.rn.f64 */
    d[i + 1] = sqrt(b[i + 2]);         /* sqrt.rn.f64 */
    q[i] = c[i] / c[i + 1];            /* 64-bit integer division */
    q[i + 1] = (int)c[i + 2] / (int)c[i + 3];
}
EOF
compile "$OUT/calib.cu" calib || { echo "cuda gate: the calibration kernel does not compile"; exit 1; }
if grep -qE '\.approx|\.ftz' "$OUT/calib.ptx" || ! grep -q 'div\.rn\.f32' "$OUT/calib.ptx" || ! grep -q 'sqrt\.rn\.f32' "$OUT/calib.ptx"; then
    echo "cuda gate: NVFLAGS do not give IEEE division/sqrt (expected div.rn.f32 and sqrt.rn.f32 in PTX, no .approx/.ftz): $NVFLAGS"
    exit 1
fi
MUFU_OK=$(grep -oE 'MUFU\.[A-Z0-9]+' "$OUT/calib.sass" | sort -u | tr '\n' ' ')
MUFU_RE=$(grep -oE 'MUFU\.[A-Z0-9]+' "$OUT/calib.sass" | sort -u | sed 's/\./\\./' | paste -sd'|')
[[ -n $MUFU_RE ]] || MUFU_RE='MUFU\.NONE_ALLOWED'

# check STEM: prints the forbidden lines, returns their count (capped at 255)
check() {
    local stem=$1 ptx sass
    ptx=$(grep -nE '\.approx|\.ftz|\b(atom|red)(\.[a-z0-9_:]+)*\.(f16|f16x2|bf16|bf16x2|f32|f64)\b|\b(mma|wmma|wgmma)\.|\.tf32' \
        "$OUT/$stem.ptx" | sed 's/^/    ptx: /')
    sass=$(awk -v okre="^($MUFU_RE)\$" -v win="$FTZ_WINDOW" '
        function flush(   k) {
            for (k = 1; k <= nftz; k++) {
                ok = 0
                for (m = 1; m <= nseed; m++) if (fidx[k] - seed[m] <= win && seed[m] - fidx[k] <= win) { ok = 1; break }
                if (!ok) print "    sass(" fn "): FTZ far from any precise-math seed: " ftxt[k]
            }
            nftz = 0; nseed = 0
        }
        /Function :/ { flush(); fn = $3; n = 0; next }
        /\/\*[0-9a-f]+\*\/ / {
            n++
            line = $0; sub(/^[ \t]*\/\*[0-9a-f]+\*\/[ \t]*/, "", line); sub(/[ \t]*;.*$/, "", line)
            if (match(line, /MUFU\.[A-Z0-9]+/)) {
                op = substr(line, RSTART, RLENGTH)
                if (op ~ okre) seed[++nseed] = n
                else print "    sass(" fn "): " line
            }
            if (line ~ /(^|[ \t])(ATOM|ATOMS|ATOMG|RED|REDG)\./ && line ~ /\.(F32|F64|F16|BF16|F16x2|FTZ)/) print "    sass(" fn "): float atomic: " line
            if (line ~ /(^|[ \t])(HMMA|HGMMA|IMMA|DMMA|QGMMA|BMMA)\./) print "    sass(" fn "): tensor core: " line
            # F2I.FTZ...TRUNC (the reciprocal estimate of integer division): a
            # denormal truncates to 0 either way, so it is exempt
            if (line ~ /\.FTZ/ && !(line ~ /F2I\.FTZ/ && line ~ /\.TRUNC/)) { nftz++; fidx[nftz] = n; ftxt[nftz] = line }
        }
        END { flush() }' "$OUT/$stem.sass")
    local all
    all=$(printf '%s\n%s\n' "$ptx" "$sass" | sed '/^$/d')
    [[ -n $all ]] && echo "$all"
    local c
    c=$(printf '%s' "$all" | grep -c . || true)
    return $((c > 255 ? 255 : c))
}

# ---- self-test: each of these must be caught ----
selftest_fail=0
declare -A MUT=(
    [expf]='__global__ void k(float *o, const float *a) { o[threadIdx.x] = __expf(a[threadIdx.x]); }'
    [atomic]='__global__ void k(float *o, const float *a) { atomicAdd(o, a[threadIdx.x]); }'
    [fdividef]='__global__ void k(float *o, const float *a) { o[threadIdx.x] = __fdividef(a[0], a[threadIdx.x]); }'
    [ftz]='__global__ void k(float *o, const float *a) { o[threadIdx.x] = a[threadIdx.x] * a[1] + a[2]; }'
)
for name in "${!MUT[@]}"; do
    echo "${MUT[$name]}" >"$OUT/mut_$name.cu"
    extra=()
    [[ $name == ftz ]] && extra=(-ftz=true)
    compile "$OUT/mut_$name.cu" "mut_$name" "${extra[@]}" 2>/dev/null || { echo "cuda gate: self-test kernel $name does not compile"; exit 1; }
    if check "mut_$name" >/dev/null; then
        echo "cuda gate: self-test FAILED: a kernel using $name passed the gate"
        selftest_fail=1
    fi
done
[[ $selftest_fail -eq 0 ]] || exit 1
echo "cuda gate: self-test ok (__expf, float atomicAdd, __fdividef, -ftz=true are each caught); precise math uses ${MUFU_OK% }"

# ---- the kernels: compiled in parallel, then checked in order ----
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
nfiles=0 total=0 failed_compile=0 running=0
for f in "$@"; do
    stem=$(basename "$f" .cu)
    (compile "$f" "$stem" >"$OUT/$stem.log" 2>&1; echo $? >"$OUT/$stem.rc") &
    running=$((running + 1))
    if [[ $running -ge $JOBS ]]; then wait -n; running=$((running - 1)); fi
done
wait
for f in "$@"; do
    stem=$(basename "$f" .cu)
    nfiles=$((nfiles + 1))
    if [[ $(cat "$OUT/$stem.rc" 2>/dev/null) != 0 ]]; then
        echo "  $f: does not compile:"
        sed 's/^/    /' "$OUT/$stem.log" | head -20
        failed_compile=1
        continue
    fi
    out=$(check "$stem")
    bad=$?
    nfun=$(grep -c 'Function :' "$OUT/$stem.sass")
    nins=$(grep -cE '/\*[0-9a-f]+\*/ ' "$OUT/$stem.sass")
    nmufu=$(grep -cE 'MUFU\.' "$OUT/$stem.sass")
    printf '  %-24s %3d kernels, %6d SASS instructions, %4d MUFU, %d forbidden\n' \
        "$f" "$nfun" "$nins" "$nmufu" "$bad"
    [[ -n $out ]] && echo "$out" | head -20
    total=$((total + bad))
done
echo "cuda gate: $nfiles files, $total forbidden instructions"
[[ $total -eq 0 && $failed_compile -eq 0 ]]
