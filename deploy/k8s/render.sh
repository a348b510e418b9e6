#!/bin/bash
# Prints the manifests of a night on Kubernetes (night.yaml.in filled in):
#
#   deploy/k8s/render.sh NAME SHARDS DURATION IMAGE PVC [fuzz options...] | kubectl apply -f -
#
# NAME names the Jobs (a DNS label: cgstorm-2026-12-01); PVC is a
# ReadWriteMany claim for the night's directory; the seed is $CGSTORM_SEED,
# else the date. The image is built from deploy/k8s/Dockerfile.
set -euo pipefail
[[ $# -ge 5 ]] || { sed -n '2,9p' "$0" >&2; exit 2; }
name=$1 shards=$2 duration=$3 image=$4 pvc=$5
shift 5
[[ $name =~ ^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$ ]] || { echo "render.sh: NAME must be a DNS label: $name" >&2; exit 2; }
[[ $shards =~ ^[1-9][0-9]*$ ]] || { echo "render.sh: SHARDS must be a positive number: $shards" >&2; exit 2; }
args="$*"
[[ $args != *[\"\\@]* ]] || { echo "render.sh: fuzz options may not hold quotes, backslashes or @" >&2; exit 2; }
seed=${CGSTORM_SEED:-$(date +%Y%m%d)}
sed -e "s|@NAME@|$name|g" -e "s|@SHARDS@|$shards|g" -e "s|@DURATION@|$duration|g" \
    -e "s|@IMAGE@|$image|g" -e "s|@PVC@|$pvc|g" -e "s|@SEED@|$seed|g" -e "s|@ARGS@|$args|g" \
    "$(dirname "$0")/night.yaml.in"
