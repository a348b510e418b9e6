#!/usr/bin/env bash
# The agent's watchdog tells a slow op from a stuck one (Debian's kernel,
# TCG, `--stall 3s`): corpus/watchdog/slow-writers.yaml (two 16M 4K O_DSYNC
# writers, a lane's and an awaited task's, each running past the limit and
# its grace while their I/O grows) must pass with the "still growing"
# warning; corpus/watchdog/stuck-wait.yaml (a wait on a sleeper) must be an
# agent hang in that wait.
#
#   ci/vm-watchdog.sh [KERNEL]   (default debian)
# Exit 0 pass, 1 fail.
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-debian}
out=${CGSTORM_OUT:-target/vm-watchdog}
rm -rf "$out" && mkdir -p "$out"

. ci/lib.sh
build_cgstorm_and_agent

run() {
    ./target/release/cgstorm run "corpus/watchdog/$1.yaml" --kernel "$kernel" \
        --agent "$agent" --accel tcg --stall 3s --keep-console "$out/$1.console" \
        >"$out/$1.out" 2>&1
}

run slow-writers
code=$?
if [[ $code -ne 0 ]] || ! grep -q "its I/O still growing" "$out/slow-writers.out"; then
    echo "FAIL: slow-writers (exit $code) should pass with the working warning:"
    tail -n 20 "$out/slow-writers.out"
    exit 1
fi
grep "still growing" "$out/slow-writers.out"

run stuck-wait
code=$?
if [[ $code -ne 1 ]] || ! grep -q 'FINDING agent-hang: agent hang in lane 0 (main) op 1 `wait t0`' "$out/stuck-wait.out"; then
    echo "FAIL: stuck-wait (exit $code) should be an agent hang in its wait:"
    tail -n 20 "$out/stuck-wait.out"
    exit 1
fi
echo "vm-watchdog: slow writers worked past the limit, the stuck wait was a hang"
