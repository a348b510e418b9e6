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

# expect NAME EXIT LINE WHAT: corpus/watchdog/NAME.yaml exits EXIT and says LINE.
expect() {
    ./target/release/cgstorm run "corpus/watchdog/$1.yaml" --kernel "$kernel" \
        --agent "$agent" --accel tcg --stall 3s --keep-console "$out/$1.console" \
        >"$out/$1.out" 2>&1
    local code=$?
    if [[ $code -ne $2 ]] || ! grep -qF "$3" "$out/$1.out"; then
        echo "FAIL: $1 (exit $code) should $4:"
        tail -n 20 "$out/$1.out"
        exit 1
    fi
    grep -F "$3" "$out/$1.out"
}

expect slow-writers 0 "its I/O still growing" "pass with the working warning"
expect stuck-wait 1 'FINDING agent-hang: agent hang in lane 0 (main) op 1 `wait t0`' \
    "be an agent hang in its wait"
echo "vm-watchdog: slow writers worked past the limit, the stuck wait was a hang"
