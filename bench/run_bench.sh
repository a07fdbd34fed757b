#!/usr/bin/env bash
# run_bench.sh - every op benchmark next to its PyTorch peer, in one command,
# on the same machine and thread count, printed as a ratio table.
#
# Protocol: build/bench/bench_<stem> and bench/peer_<stem>.py both print lines
#   BENCH <key> <milliseconds>
# for the same keys (op, pass, shape). ratio = torch_ms / ours_ms: > 1 means
# cellpose.c is faster. Usage: bench/run_bench.sh [stem ...] (THREADS=n).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-$(nproc)}
stems=("$@")
if [[ ${#stems[@]} -eq 0 ]]; then
    for p in bench/peer_*.py; do s=$(basename "$p" .py); stems+=("${s#peer_}"); done
fi
printf "threads: %s, cpu: %s\n" "$THREADS" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf "%-48s %12s %12s %8s\n" "key" "ours ms" "torch ms" "ratio"
for s in "${stems[@]}"; do
    ours=$("$BUILD/bench/bench_$s" --threads "$THREADS" 2>/dev/null | grep '^BENCH ')
    peer=$(OMP_NUM_THREADS=$THREADS "$PYTHON" "bench/peer_$s.py" --threads "$THREADS" 2>/dev/null | grep '^BENCH ')
    while read -r _ key ms; do
        [[ -z ${key:-} ]] && continue
        t=$(awk -v k="$key" '$2 == k {print $3}' <<<"$peer")
        if [[ -n $t ]]; then
            printf "%-48s %12.3f %12.3f %8.2f\n" "$key" "$ms" "$t" "$(awk -v a="$t" -v b="$ms" 'BEGIN{print a/b}')"
        else
            printf "%-48s %12.3f %12s %8s\n" "$key" "$ms" "-" "-"
        fi
    done <<<"$ours"
done

# the whole inference pipeline next to the real Cellpose (time per stage)
echo
"$PYTHON" bench/infer_vs_cellpose.py --threads "$THREADS" --bin "${BIN:-bin}"
