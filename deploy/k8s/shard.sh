#!/bin/bash
# One shard of a night on Kubernetes: the Indexed Job's completion index I
# (JOB_COMPLETION_INDEX, 0-based) of CGSTORM_SHARDS runs `cgstorm fuzz
# --shard I/N` in its own workdir on the night's volume, exchanging corpus
# programs with the other shards there. A pod that is replaced (a node
# drained, a failure within the Job's backoff limit) starts again on the
# same workdir, and fuzz resumes where it was. Ends with a `done` marker
# that merge.sh waits for.
#
# Environment (set by night.yaml): CGSTORM (default: cgstorm), CGSTORM_NIGHT,
# CGSTORM_SHARDS, CGSTORM_SEED, CGSTORM_DURATION, CGSTORM_ARGS.
set -uo pipefail
i=${JOB_COMPLETION_INDEX:?not a pod of an Indexed Job}
n=${CGSTORM_SHARDS:?CGSTORM_SHARDS unset}
[[ $i =~ ^[0-9]+$ && $n =~ ^[0-9]+$ && $i -lt $n ]] || { echo "shard.sh: index $i is not a shard of $n" >&2; exit 2; }
dir="$CGSTORM_NIGHT/shard-$i"
mkdir -p "$dir"
rm -f "$dir/done"
echo "cgstorm shard $i/$n on $(hostname), workdir $dir"
# shellcheck disable=SC2086
"${CGSTORM:-cgstorm}" fuzz --seed "$CGSTORM_SEED" --shard "$i/$n" --workdir "$dir" \
    --duration "$CGSTORM_DURATION" --exchange "$CGSTORM_NIGHT/exchange" ${CGSTORM_ARGS:-}
code=$?
echo "cgstorm shard $i/$n: fuzz exited $code"
# 1 is a new finding: the shard did its job; 2 and 3 fail the pod (and the
# Job retries it, resuming the workdir).
[[ $code -le 1 ]] || exit "$code"
echo "$code" > "$dir/done"
