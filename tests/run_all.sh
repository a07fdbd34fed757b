#!/usr/bin/env bash
# run_all.sh - the whole test suite, called by `make test` after the build.
#
#   1. C unit tests (build/tests/test_*), from the repository root
#   2. the same C tests built with ASan+UBSan (build-san/), quick sizes
#   3. Python reference tests (pytest, Debian's python3 + build/pydeps)
#   4. CUDA bitwise tests (build/tests/cuda_*): SKIPPED without a GPU
#
# Each part prints its own results; the last line is the total, in the plain
# form "tests: N passed, N failed". Any failure makes the exit status 1.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=${BIN:-bin}
PYTHON=${PYTHON:-/usr/bin/python3}
export CP_BIN=$PWD/$BIN
export CP_TEST_OUT=$PWD/$BUILD/test-out
export CP_IMAGE_OUT=$CP_TEST_OUT/image CP_ST_OUT=$CP_TEST_OUT/safetensors
export CP_REF_DIR=$PWD/$BUILD/ref
rm -rf "$CP_TEST_OUT" && mkdir -p "$CP_IMAGE_OUT" "$CP_ST_OUT" "$CP_REF_DIR"

passed=0 failed=0 skipped=0 failed_names=()
t_start=$(date +%s)

# Add the counts from a "N passed, N failed[, N skipped]" line.
tally() { # name rc last-line
    local name=$1 rc=$2 line=$3 p f s
    if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)? ]]; then
        p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]} s=${BASH_REMATCH[4]:-0}
    else
        p=0 f=1 s=0 # crashed before its summary
    fi
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    if [[ $f -ne 0 ]]; then failed_names+=("$name"); fi
}

run_c() { # label binary [env...]
    local label=$1 bin=$2 out rc
    shift 2
    echo "== $label"
    out=$(env "$@" "$bin" 2>&1)
    rc=$?
    echo "$out"
    tally "$label" $rc "$(echo "$out" | tail -n 1)"
}

# PyTorch references for the op tests (tests/ref/<op>.py -> $CP_REF_DIR/<op>.safetensors)
for r in tests/ref/*.py; do
    case $(basename "$r") in common.py | safetensors_np.py | cellpose_model.py) continue ;; esac
    "$PYTHON" "$r" --out "$CP_REF_DIR" >/dev/null || { echo "reference script $r failed"; failed=$((failed + 1)); failed_names+=("$r"); }
done

for t in "$BUILD"/tests/test_*; do
    [[ -x $t ]] && run_c "$(basename "$t")" "$t"
done
for t in build-san/tests/test_*; do
    [[ -x $t ]] && run_c "sanitize/$(basename "$t")" "$t" CP_TEST_QUICK=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
done
for t in "$BUILD"/tests/cuda_*; do
    [[ -x $t ]] && run_c "$(basename "$t")" "$t"
done
# the CUDA kernels' logic (indexing, summation and combine order, barriers)
# under a CPU emulation of the CUDA runtime, byte-compared with the CPU ops:
# needs only g++, so it runs where no GPU and no nvcc are present
run_c "cuda_emu" tests/cuda_emu.sh BUILD="$BUILD"

echo "== pytest tests/py"
out=$("$PYTHON" -m pytest -q -p no:cacheprovider tests/py 2>&1)
rc=$?
echo "$out"
summary=$(echo "$out" | tail -n 1)
p=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || echo 0)
f=0
for n in $(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | grep -oE '[0-9]+'); do f=$((f + n)); done
[[ $rc -ne 0 && $f -eq 0 ]] && f=1
passed=$((passed + p)) failed=$((failed + f))
[[ $f -ne 0 ]] && failed_names+=("pytest")

echo
echo "== summary ($(( $(date +%s) - t_start )) s)"
[[ ${#failed_names[@]} -gt 0 ]] && echo "failing: ${failed_names[*]}"
[[ $skipped -gt 0 ]] && echo "skipped: $skipped (see SKIPPED lines above)"
echo "tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
