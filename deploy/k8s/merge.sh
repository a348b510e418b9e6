#!/bin/bash
# The night's merge on Kubernetes: waits until every shard of CGSTORM_SHARDS
# has its `done` marker (or CGSTORM_MERGE_WAIT seconds, default the night's
# duration plus an hour, have passed: then it merges what is there and says
# which shards are missing), then writes merged/ and report.html.
set -uo pipefail
n=${CGSTORM_SHARDS:?CGSTORM_SHARDS unset}
night=${CGSTORM_NIGHT:?CGSTORM_NIGHT unset}
wait_s=${CGSTORM_MERGE_WAIT:-90000}
start=$(date +%s)
missing=()
while :; do
    missing=()
    for ((i = 0; i < n; i++)); do [[ -f $night/shard-$i/done ]] || missing+=("$i"); done
    ((${#missing[@]} == 0)) && break
    (( $(date +%s) - start >= wait_s )) && break
    sleep "${CGSTORM_MERGE_POLL:-30}"
done
((${#missing[@]})) && echo "cgstorm merge: shards not done after ${wait_s} s: ${missing[*]} (merging what they have)" >&2
shopt -s nullglob
shards=("$night"/shard-*)
((${#shards[@]})) || { echo "cgstorm merge: no shard workdir under $night" >&2; exit 3; }
"${CGSTORM:-cgstorm}" merge "$night/merged" "${shards[@]}" || exit $?
"${CGSTORM:-cgstorm}" report "$night/merged" -o "$night/report.html" || exit $?
echo "cgstorm merge: $night/merged, report $night/report.html"
((${#missing[@]} == 0))
