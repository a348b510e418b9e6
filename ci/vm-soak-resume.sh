#!/bin/bash
# A soak killed with SIGKILL in the middle and started again on the same
# workdir resumes: its counters go on from the saved state, it spends only
# the rest of its duration, and every finding stored before the kill is
# still there afterwards.
#
#   ci/vm-soak-resume.sh [KERNEL]
#
# The rotation is the semantics corpus (each program expects the state right
# after boot, so the agent's reset between programs is checked too) with
# 20 s fuzz slices between programs. Exit 0 when the resume holds.
set -euo pipefail
cd "$(dirname "$0")/.."
KERNEL=${1:-debian}
cargo build --release -q -p cgstorm
bin=target/release/cgstorm
work=$(mktemp -d /tmp/cgstorm-soak-resume.XXXXXX)
# Kept when the soak found something, so the findings can be looked at.
trap '[ -n "$(ls -A "$work/findings" 2>/dev/null)" ] && echo "findings kept in $work/findings" || rm -rf "$work"' EXIT
# A kernel parameter only this test's VMs have, to tell its QEMUs from
# any other cgstorm run on the machine.
tag="cgstorm.test=soak-resume-$$"
args=(soak --kernel "$KERNEL" --workdir "$work" --duration 150s --scenarios corpus/semantics
      --append "$tag"
      --scenario-duration 2s --fuzz-slice 20s --progress 15s --seed 7)

"$bin" "${args[@]}" >"$work/first.out" 2>&1 &
pid=$!
# Kill it once it has run some programs.
for _ in $(seq 1 120); do
    sleep 2
    n=$(python3 -c "import json;print(json.load(open('$work/soak.json'))['programs'])" 2>/dev/null || echo 0)
    [ "$n" -ge 6 ] && break
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
sleep 1
if pgrep -f "qemu-system.*$tag" >/dev/null; then
    # The VMs die with the job threads that started them (PR_SET_PDEATHSIG).
    sleep 3
fi
before=$(python3 -c "import json;s=json.load(open('$work/soak.json'));print(s['programs'], s['elapsed_ms'])")
read -r p1 e1 <<<"$before"
ls "$work/findings" | sort >"$work/findings.before"
echo "killed after $p1 programs, $((e1 / 1000)) s; $(wc -l <"$work/findings.before") findings stored"

"$bin" "${args[@]}" >"$work/second.out" 2>&1 || true
grep -q "resuming" "$work/second.out" || { echo "FAIL: the second run did not resume"; cat "$work/second.out"; exit 1; }
after=$(python3 -c "import json;s=json.load(open('$work/soak-summary.json'));print(s['programs'], s['elapsed_ms'], s['last_start_ms'], s['complete'])")
read -r p2 e2 last complete <<<"$after"
ls "$work/findings" | sort >"$work/findings.after"
missing=$(comm -23 "$work/findings.before" "$work/findings.after" | wc -l)
echo "resumed: $p2 programs in all, $((e2 / 1000)) s in all (the last started at $((last / 1000)) s), complete=$complete, $missing findings lost"
fail=0
[ "$p2" -gt "$p1" ] || { echo "FAIL: no programs after the resume"; fail=1; }
# The budget is spent, and no program started after it (the one running
# then may take a hang's detection time to end: that is not bounded here).
[ "$e2" -ge 150000 ] && [ "$last" -lt 150000 ] ||
    { echo "FAIL: elapsed $e2 ms, last program started at $last ms: not the 150 s budget"; fail=1; }
[ "$missing" -eq 0 ] || { echo "FAIL: findings lost"; fail=1; }
[ -s "$work/soak.ktap" ] && head -2 "$work/soak.ktap"
if pgrep -f "qemu-system.*$tag" >/dev/null; then
    echo "FAIL: QEMU left running"; fail=1
fi
if [ $fail -ne 0 ]; then
    echo "--- the resumed soak's output"; tail -n 30 "$work/second.out"
    echo "--- why VMs were dropped"; cat "$work"/jobs/*/drops.log 2>/dev/null || true
fi
for d in "$work"/findings/*/; do
    [ -f "$d/description" ] && echo "finding: $(cat "$d/description") ($d)"
done
[ $fail -eq 0 ] && echo "vm-soak-resume: ok"
exit $fail
