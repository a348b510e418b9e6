#!/bin/bash
# A finding that needs the programs run before it in its VM: `cgstorm
# replay` runs them again in order and finds it, and `cgstorm minimize` cuts
# them down to the one it needs. The finding directory is made here, as a
# campaign stores one (program.yaml, description, before/NNN.yaml): the
# second of three earlier programs crashes the kernel (sysrq c), the others
# and the finding's own program are harmless.
#
#   ci/vm-replay.sh [KERNEL]
set -euo pipefail
cd "$(dirname "$0")/.."
KERNEL=${1:-debian}
. ci/lib.sh
build_cgstorm_and_agent
bin=target/release/cgstorm
work=$(mktemp -d /tmp/cgstorm-replay.XXXXXX)
trap 'rm -rf "$work"' EXIT
f=$work/finding
mkdir -p "$f/before"
title="kernel panic: sysrq triggered crash"
echo "$title" >"$f/description"
prog() { printf 'name: %s\nduration: 2s\nlanes:\n  - name: l0\n    ops: [%s]\n' "$1" "$2"; }
prog first '{mkdir: a}, {write: {file: tmp/f0, bytes: 64K, bs: 4K}}, {rmdir: a}' >"$f/before/000.yaml"
prog crash '{mkdir: b}, {sysrq: c}' >"$f/before/001.yaml"
prog third '{mkdir: c}, {rmdir: c}' >"$f/before/002.yaml"
prog found '{mkdir: d}, {mkdir: d/x}, {rmdir: d/x}, {rmdir: d}' >"$f/program.yaml"

fail=0
code=0
"$bin" replay "$f" --runs 1 --kernel "$KERNEL" --agent "$agent" >"$work/replay.out" 2>&1 || code=$?
cat "$work/replay.out"
[ "$code" -eq 1 ] || { echo "FAIL: replay exited $code, not 1 (found)"; fail=1; }
grep -q "already by program 2 of 3 before it (\`crash\`)" "$work/replay.out" ||
    { echo "FAIL: replay did not name the program that showed it"; fail=1; }

code=0
"$bin" minimize "$f" --attempts 1 --final-runs 1 --duration 2s --kernel "$KERNEL" --agent "$agent" \
    >"$work/min.out" 2>&1 || code=$?
tail -n 6 "$work/min.out"
[ "$code" -eq 1 ] || { echo "FAIL: minimize exited $code, not 1 (still found)"; fail=1; }
kept=$(ls "$f/minimized/before" 2>/dev/null | wc -l)
[ "$kept" -eq 1 ] && grep -q "sysrq: c" "$f/minimized/before/000.yaml" ||
    { echo "FAIL: minimize kept $kept programs before it, not the one that crashes"; fail=1; }
[ $fail -eq 0 ] && echo "vm-replay: ok"
exit $fail
