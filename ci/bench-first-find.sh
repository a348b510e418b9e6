#!/usr/bin/env bash
# Time to first find of known reports, the search of today against the
# one before cgstorm saw the kernel (issue 12). Not part of the tests: a
# benchmark, whose figures go into BENCHMARKS.md.
#
#   ci/bench-first-find.sh KERNEL CAP SEEDS "TITLE" ["TITLE" ...]
#
# KERNEL: `debian` (the default kernel) or a bzImage. CAP: the longest a
# campaign runs (e.g. 10m). SEEDS: comma-separated (1,2,3). For each seed
# two campaigns run, one after the other:
#   old  the corpus of then (corpus/semantics and corpus/regressions) and
#        the signals of then (finding titles, op outcomes, state shapes);
#   new  the default corpus (the scenarios are seeds), every signal and
#        --cover-feedback (which a kernel without KCOV leaves out, saying so),
#        and $NEW_ARGS (e.g. NEW_ARGS="--focus /usr/src/linux-source-6.12").
# A campaign is stopped (SIGTERM, it saves and summarises; a background
# job ignores SIGINT) once it has seen
# every TITLE. Prints a line per campaign and title: the campaign's time
# (s, boots included) when it first saw the title, or `>CAP`.
set -uo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

if [ $# -lt 4 ]; then
    sed -n '5,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
kernel=$1 cap=$2 seeds=$3
shift 3
titles=("$@")

build_cgstorm_and_agent
kernel_args=()
[ "$kernel" != debian ] && kernel_args=(--kernel "$kernel")

out=${BENCH_DIR:-$(mktemp -d /tmp/cgstorm-first-find.XXXXXX)}
mkdir -p "$out"
echo "campaigns in $out"

# Seconds from the campaign's start at which each title was first seen
# (one line per title), read from its state file.
first_seen() {
    python3 - "$1" "${titles[@]}" <<'EOF'
import json, sys
try:
    found = json.load(open(sys.argv[1])).get("findings", {})
except (OSError, ValueError):
    found = {}
for t in sys.argv[2:]:
    s = found.get(t, {}).get("first_s")
    print(t, s if s is not None else "-", sep="\t")
EOF
}

run() {
    local name=$1
    shift
    local w="$out/$name"
    rm -rf "$w"
    ./target/release/cgstorm fuzz --duration "$cap" --workdir "$w" --accel tcg \
        --agent "$agent" "${kernel_args[@]}" "$@" >"$w.log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        if ! first_seen "$w/fuzz.json" | cut -f2 | grep -qx -- -; then
            kill -TERM "$pid"
            break
        fi
    done
    wait "$pid"
    first_seen "$w/fuzz.json" | while IFS=$'\t' read -r t s; do
        [ "$s" = - ] && s=">$cap"
        printf '%s\t%s\t%s\n' "$name" "$s" "$t"
    done | tee -a "$out/results.tsv"
}

for seed in ${seeds//,/ }; do
    run "old-seed-$seed" --seed "$seed" --corpus corpus/semantics \
        --corpus corpus/regressions --signals title,outcome,state
    # shellcheck disable=SC2086 # NEW_ARGS is words
    run "new-seed-$seed" --seed "$seed" --cover-feedback ${NEW_ARGS:-}
done
echo "results: $out/results.tsv"
