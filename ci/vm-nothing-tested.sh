#!/usr/bin/env bash
# A campaign in which no boot can succeed (`--append rdinit=/nonexistent`:
# the kernel finds no init) must fail loudly: exit 3, a message that says
# no program ran and why, and KTAP `not ok`. About 20 s under TCG.
#   ci/vm-nothing-tested.sh [KERNEL]   (default debian)
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-debian}
. ci/lib.sh
build_cgstorm_and_agent
work=$(mktemp -d /tmp/cgstorm-nothing.XXXXXX)
trap 'rm -rf "$work"' EXIT
./target/release/cgstorm fuzz --duration 60s --append rdinit=/nonexistent --kernel "$kernel" \
    --agent "$agent" --workdir "$work/w" >"$work/out" 2>&1
code=$?
fail=0
[[ $code -eq 3 ]] || { echo "FAIL: exit $code, not 3"; fail=1; }
grep -q "FAILED: no program ran: nothing was tested.*; the last error: kernel did not come up" "$work/out" ||
    { echo "FAIL: the message does not say that no program ran and why"; fail=1; }
grep -q "^not ok 1 fuzz" "$work/w/fuzz.ktap" 2>/dev/null || { echo "FAIL: fuzz.ktap does not say not ok"; fail=1; }
if [[ $fail -ne 0 ]]; then
    tail -n 12 "$work/out" | sed 's/^/    /'
    exit 1
fi
echo "vm-nothing-tested: ok: exit 3, '$(grep -o 'FAILED: .*' "$work/out" | cut -c1-120)', KTAP not ok"
