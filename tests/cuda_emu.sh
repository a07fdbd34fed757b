#!/usr/bin/env bash
# cuda_emu.sh - the CUDA kernels on the CPU, in every CI: builds
# kernels/*.cu and tests/cuda_ops.cu with g++ against the host emulation of
# the CUDA runtime in tests/cuda_emu/cuda_runtime.h (no nvcc, no GPU) and runs
#   1. tests/cuda_emu/*.cu: the emulator's own tests (barriers, indices,
#      launch errors, race exposure, memory-role checks, ctx plumbing), and
#      tests/cuda_emu/*.c: C programs without the CUDA library (cc);
#   2. tests/cuda_ops.cu: every CUDA op byte-equal to its CPU twin, once per
#      schedule order (forward, reverse, shuffle: see cuda_runtime.h).
# What this can and cannot show is stated at the top of cuda_runtime.h.
#
#   BUILD=build bash tests/cuda_emu.sh      (needs $BUILD/libcellpose.a: make all)
#
# Each `k<<<cfg>>>(args)` is rewritten to `emu_launch("k", k, emu_cfg(cfg), args)`
# and NULL to nullptr (a NULL through a variadic template would be a long).
# The kernels compile as C++17 with the C library's float rules
# (-ffp-contract=off, no fast-math). Output: each run's lines, then the total
# "N passed, N failed" as the last line; exit 1 on any failure.
# CP_EMU_SAN=1 builds the emulated kernels with ASan+UBSan: an out-of-bounds
# read or write of a kernel then stops the run (slower; not in CI by default).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
CXX=${CXX:-g++}
CC=${CC:-cc}
CPU_ARCH=${CPU_ARCH:-native}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
ORDERS=${CP_EMU_ORDERS:-forward reverse shuffle}
OUT=$BUILD/cuda-emu
LIB=$BUILD/libcellpose.a
LIBS="-fopenmp -ltiff -lyaml -ljansson -lcrypto -lstb -lcairo -lm -lpthread"
CXXFLAGS="-std=c++17 -O2 -march=$CPU_ARCH -ffp-contract=off -fno-fast-math -fno-math-errno -D__CUDACC__ -D_GNU_SOURCE
          -Itests/cuda_emu -I. -Icore -Itests -include cuda_runtime.h"
if [[ ${CP_EMU_SAN:-0} == 1 ]]; then
    CXXFLAGS="$CXXFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
    LIBS="-fsanitize=address,undefined $LIBS"
fi
t0=$(date +%s)

if [[ ! -f $LIB ]]; then
    echo "cuda emu: $LIB not found; run 'make BUILD=$BUILD all' first"
    echo "0 passed, 1 failed"
    exit 1
fi
rm -rf "$OUT" && mkdir -p "$OUT/src" "$OUT/obj"

# rewrite SRC DST: launches -> emu_launch, NULL -> nullptr (lines kept: #line
# makes messages name the original file)
rewrite() {
    printf '#line 1 "%s"\n' "$1" >"$2"
    perl -0pe 's/\b([A-Za-z_]\w*(?:<[^<>;()]*>)?)<<<(.*?)>>>\(\s*\)/emu_launch("$1", $1, emu_cfg($2))/gs;
               s/\b([A-Za-z_]\w*(?:<[^<>;()]*>)?)<<<(.*?)>>>\(/emu_launch("$1", $1, emu_cfg($2), /gs;
               s/\bNULL\b/nullptr/g' "$1" >>"$2"
}

# compile SRC OBJ WARNFLAGS: in the background, at most $JOBS at once
running=0 fail=0
compile() {
    # shellcheck disable=SC2086
    ($CXX $CXXFLAGS $3 -c "$1" -o "$2" 2>"$2.log"; echo $? >"$2.rc") &
    running=$((running + 1))
    if [[ $running -ge $JOBS ]]; then wait -n; running=$((running - 1)); fi
}
for f in kernels/*.cu tests/cuda_ops.cu tests/cuda_emu/*.cu; do
    stem=$(basename "$f" .cu)
    rewrite "$f" "$OUT/src/$stem.cpp"
    case $f in
    tests/cuda_emu/*) compile "$OUT/src/$stem.cpp" "$OUT/obj/$stem.o" "-Wall -Wextra -Werror" ;; # ours: warning-free
    *) compile "$OUT/src/$stem.cpp" "$OUT/obj/$stem.o" "-w" ;; # nvcc's code, g++'s warnings are noise
    esac
done
wait
for rc in "$OUT"/obj/*.rc; do
    if [[ $(cat "$rc") != 0 ]]; then
        echo "cuda emu: ${rc%.rc} does not compile:"
        head -30 "${rc%.rc}.log" | sed 's/^/    /'
        fail=1
    fi
done
if [[ $fail -ne 0 ]]; then echo "0 passed, 1 failed"; exit 1; fi
kobj=()
for f in kernels/*.cu; do kobj+=("$OUT/obj/$(basename "$f" .cu).o"); done
t1=$(date +%s)
echo "cuda emu: built ${#kobj[@]} kernel files + tests in $((t1 - t0)) s"

passed=0 failed=0
# run LABEL BINARY [env...]: print its output, add its "N passed, N failed" line
run() {
    local label=$1 bin=$2 out rc line
    shift 2
    echo "== cuda emu: $label"
    out=$(env "$@" "$bin" 2>&1)
    rc=$?
    echo "$out"
    line=$(echo "$out" | tail -n 1)
    if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
        passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
        [[ $rc -ne 0 && ${BASH_REMATCH[2]} -eq 0 ]] && failed=$((failed + 1))
    else
        failed=$((failed + 1)) # crashed (an emulator abort) before its summary
    fi
    return 0
}
link() { # BIN OBJ...
    local bin=$1
    shift
    # shellcheck disable=SC2086
    $CXX -o "$bin" "$@" "$LIB" $LIBS 2>"$bin.log" || { echo "cuda emu: linking $bin failed:"; head -20 "$bin.log"; return 1; }
}
for f in tests/cuda_emu/*.cu; do
    stem=$(basename "$f" .cu)
    link "$OUT/$stem" "$OUT/obj/$stem.o" "${kobj[@]}" && run "$stem" "$OUT/$stem" || failed=$((failed + 1))
done
for f in tests/cuda_emu/*.c; do
    stem=$(basename "$f" .c)
    # shellcheck disable=SC2086
    if $CC -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I. -Icore -Itests "$f" "$LIB" $LIBS -o "$OUT/$stem" 2>"$OUT/$stem.log"; then
        run "$stem (cc, no CUDA library)" "$OUT/$stem"
    else
        echo "cuda emu: $f does not build:"; head -20 "$OUT/$stem.log"; failed=$((failed + 1))
    fi
done
if link "$OUT/cuda_ops" "$OUT/obj/cuda_ops.o" "${kobj[@]}"; then
    for order in $ORDERS; do run "cuda_ops, order $order" "$OUT/cuda_ops" CP_EMU_ORDER="$order" CP_EMU_STATS=1; done
else
    failed=$((failed + 1))
fi
echo "cuda emu: $(($(date +%s) - t1)) s of runs, $(($(date +%s) - t0)) s in all"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
