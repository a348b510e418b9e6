#!/usr/bin/env bash
# Runs every program of corpus/semantics in a fresh VM with `cgstorm run` and
# checks it against the model. Usage: ci/vm-corpus.sh [KERNEL [BACKEND]]
# (KERNEL: debian (default), a bzImage or a kernel tree; BACKEND: qemu or vng).
# Reports and console logs of failing runs go to ${CGSTORM_OUT:-target/vm-corpus}.
# CGSTORM_RUN_ARGS adds `cgstorm run` options (`--from-snapshot`: each
# program in a VM restored from the saved state of a fresh one).
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-debian}
backend=${2:-qemu}
out=${CGSTORM_OUT:-target/vm-corpus}
mkdir -p "$out"

. ci/lib.sh
build_cgstorm_and_agent

passed=0
failed=0
for p in ${CGSTORM_PROGRAMS:-corpus/semantics/*.yaml}; do
    name=$(basename "$p" .yaml)
    start=$(date +%s.%N)
    ./target/release/cgstorm run "$p" --kernel "$kernel" --backend "$backend" \
        --agent "$agent" --json "$out/$name.json" --keep-console "$out/$name.console" \
        ${CGSTORM_RUN_ARGS:-} \
        >"$out/$name.out" 2>&1
    code=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    if [[ $code -eq 0 ]]; then
        passed=$((passed + 1))
        printf 'ok    %-28s %5.1fs\n' "$name" "$secs"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-28s %5.1fs (exit %d)\n' "$name" "$secs" "$code"
        sed 's/^/      /' "$out/$name.out" | tail -n 15
    fi
done
echo "vm-corpus ($kernel, $backend): $passed passed, $failed failed"
[[ $failed -eq 0 ]]
