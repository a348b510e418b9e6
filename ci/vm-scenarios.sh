#!/usr/bin/env bash
# Runs every scenario of corpus/scenarios (the mailing-list scenario library)
# in a fresh VM with `cgstorm scenario run` for a short duration each. A
# kernel report the scenario lists in `known_findings` for this kernel
# passes; anything else fails. Usage: ci/vm-scenarios.sh [KERNEL [DURATION]]
# (KERNEL: debian (default), a bzImage or a kernel tree; DURATION: 10s).
# Reports and console logs go to ${CGSTORM_OUT:-target/vm-scenarios}.
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-debian}
# qemu runs elsewhere: a kernel file is passed by absolute path.
if [[ -e $kernel ]]; then kernel=$(realpath "$kernel"); fi
duration=${2:-10s}
out=${CGSTORM_OUT:-target/vm-scenarios}
mkdir -p "$out"

. ci/lib.sh
build_cgstorm_and_agent

passed=0
failed=0
for p in ${CGSTORM_SCENARIOS_RUN:-corpus/scenarios/*.yaml}; do
    name=$(basename "$p" .yaml)
    start=$(date +%s.%N)
    ./target/release/cgstorm scenario run "$name" --kernel "$kernel" --duration "$duration" \
        --agent "$agent" --json "$out/$name.json" --keep-console "$out/$name.console" \
        >"$out/$name.out" 2>&1
    code=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    known=$(grep -c '^KNOWN ' "$out/$name.out")
    if [[ $code -eq 0 ]]; then
        passed=$((passed + 1))
        printf 'ok    %-28s %6.1fs%s\n' "$name" "$secs" \
            "$([[ $known -gt 0 ]] && echo " ($known known finding(s))")"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-28s %6.1fs (exit %d)\n' "$name" "$secs" "$code"
        sed 's/^/      /' "$out/$name.out" | tail -n 15
        continue
    fi
    grep '^ops/s:' "$out/$name.out" | sed 's/^/      /' || true
done
echo "vm-scenarios ($kernel, $duration): $passed passed, $failed failed"
[[ $failed -eq 0 ]]
