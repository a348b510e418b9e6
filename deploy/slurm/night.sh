#!/bin/bash
# Submits a night of fuzzing to Slurm: an array of N shards, then the merge.
#
#   deploy/slurm/night.sh NIGHT_DIR SHARDS DURATION [fuzz options...]
#
# NIGHT_DIR must be on a filesystem every node sees. The seed is
# $CGSTORM_SEED, else the date (so a night can be run again). cgstorm is
# $CGSTORM, else the one on PATH. Prints the two job ids: "ARRAY MERGE".
set -euo pipefail
[[ $# -ge 3 ]] || { sed -n '2,9p' "$0" >&2; exit 2; }
night=$(realpath -m "$1") shards=$2 duration=$3
shift 3
here=$(dirname "$(realpath "$0")")
cgstorm=${CGSTORM:-$(command -v cgstorm || true)}
[[ -x $cgstorm ]] || { echo "night.sh: no cgstorm: put it on PATH or set CGSTORM" >&2; exit 2; }
mkdir -p "$night/logs"
export CGSTORM=$(realpath "$cgstorm") CGSTORM_NIGHT=$night
export CGSTORM_SEED=${CGSTORM_SEED:-$(date +%Y%m%d)} CGSTORM_DURATION=$duration
export CGSTORM_ARGS="$*"
array=$(sbatch --parsable --export=ALL --array="0-$((shards - 1))" \
    --output="$night/logs/shard-%a.log" "$here/shard.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --export=ALL --dependency="afterany:$array" \
    --output="$night/logs/merge.log" "$here/merge.sbatch")
echo "$array ${merge%%;*}"
