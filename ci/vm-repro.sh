#!/usr/bin/env bash
# Runs the shell reproducer of every program of corpus/semantics and
# corpus/scenarios, and of every finding of corpus/findings (those with
# programs before them: a sequence script), (`cgstorm repro P --sh --run`)
# in a fresh VM and judges its results with the model. Usage: ci/vm-repro.sh [KERNEL [DURATION]]
# (KERNEL: debian (default), a bzImage or a kernel tree; DURATION: how long
# `repeat: {for: run}` blocks run, default 10s). Scripts and outputs go to
# ${CGSTORM_OUT:-target/vm-repro}.
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-debian}
duration=${2:-10s}
out=${CGSTORM_OUT:-target/vm-repro}
mkdir -p "$out"

. ci/lib.sh
build_cgstorm_and_agent

passed=0
failed=0
shopt -s nullglob
for p in ${CGSTORM_PROGRAMS:-corpus/semantics/*.yaml corpus/scenarios/*.yaml corpus/findings/*/}; do
    name=$(basename "$p" .yaml)
    start=$(date +%s.%N)
    # An infrastructure failure (exit 3: no boot, or a guest so wedged that
    # the agent cannot answer, as the TCG livelock at a static-branch int3
    # is) gets one more fresh VM; a result the model does not allow does not.
    for attempt in 1 2; do
        ./target/release/cgstorm repro "$p" --sh -o "$out/$name.sh" --run --echo \
            --kernel "$kernel" --duration "$duration" --agent "$agent" >"$out/$name.out" 2>&1
        code=$?
        [[ $code -eq 3 && $attempt -eq 1 ]] || break
        mv "$out/$name.out" "$out/$name.attempt1.out"
        echo "      $name: infrastructure failure (exit 3), one more VM: $(grep -m1 -E 'did not answer|channel closed|cannot' "$out/$name.attempt1.out")"
    done
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    if [[ $code -eq 0 ]]; then
        passed=$((passed + 1))
        printf 'ok    %-28s %5.1fs  %s\n' "$name" "$secs" "$(grep '^repro:' "$out/$name.out" | tr '\n' ' ')"
    else
        failed=$((failed + 1))
        printf 'FAIL  %-28s %5.1fs (exit %d)\n' "$name" "$secs" "$code"
        grep -v '^\[' "$out/$name.out" | sed 's/^/      /' | tail -n 15
    fi
done
echo "vm-repro ($kernel): $passed passed, $failed failed"
[[ $failed -eq 0 ]]
