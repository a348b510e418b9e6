#!/usr/bin/env bash
# The model follows what the agent probes in the booted kernel, not a guess:
# the shared 6.12 lockdep kernel has no block throttling (no io.max), and a
# copy of its bzImage alone (no config beside it, the common case for a
# developer's own build) must still get io.max's ENOENT right. Then the same
# with a config beside it that wrongly claims CONFIG_BLK_DEV_THROTTLING=y:
# the run follows the kernel and says the config was wrong.
#
#   ci/vm-probe.sh [BZIMAGE]   (default ../shared/kernels/bzImage-6.12-lockdep)
# Exit 0 pass, 1 fail; prints SKIP and exits 0 when the kernel is absent.
set -uo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/kernels/bzImage-6.12-lockdep}
if [[ ! -f $src ]]; then
    echo "vm-probe: SKIP: no kernel at $src (the shared 6.12 kernels are not here)"
    exit 0
fi
. ci/lib.sh
build_cgstorm_and_agent
work=$(mktemp -d /tmp/cgstorm-probe.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$src" "$work/bzImage-alone"
program=corpus/regressions/io-max-probed.yaml
fail=0

run() { # name kernel
    ./target/release/cgstorm run "$program" --kernel "$2" --agent "$agent" --accel tcg \
        --json "$work/$1.json" >"$work/$1.out" 2>&1
    local code=$?
    local outcome
    outcome=$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(" ".join(o["outcome"] for o in v["ops"] if o["text"].startswith("io.max")))' "$work/$1.json" 2>/dev/null)
    echo "vm-probe: $1: exit $code, io.max returned: ${outcome:-?}"
    if [[ $code -ne 0 || $outcome != "ENOENT ENOENT" ]]; then
        echo "FAIL: $1: want exit 0 with io.max ENOENT twice (the model following the probe)"
        sed 's/^/      /' "$work/$1.out" | grep -v '^      \[' | tail -n 20
        fail=1
    fi
}

run alone "$work/bzImage-alone"
if grep -q "no config found" "$work/alone.out"; then
    echo "FAIL: alone: cgstorm still guessed the config"; fail=1
fi

mkdir -p "$work/wrong"
cp "$src" "$work/wrong/bzImage-x"
sed 's/^# CONFIG_BLK_DEV_THROTTLING is not set$/CONFIG_BLK_DEV_THROTTLING=y/' \
    "${src/bzImage/config}" >"$work/wrong/config-x"
grep -q '^CONFIG_BLK_DEV_THROTTLING=y' "$work/wrong/config-x" || {
    echo "FAIL: could not make the wrong config from ${src/bzImage/config}"; exit 1; }
run wrong-config "$work/wrong/bzImage-x"
if ! grep -q "says io.max (CONFIG_BLK_DEV_THROTTLING) exists, the booted kernel has not" "$work/wrong-config.out"; then
    echo "FAIL: wrong-config: the disagreement between config and kernel was not said"; fail=1
fi
[[ $fail -eq 0 ]] && echo "vm-probe: ok"
exit $fail
