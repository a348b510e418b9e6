#!/usr/bin/env bash
# Per-op fault injection (fail_nth) on a kernel that has it: every program
# of corpus/faults runs with `cgstorm run` (each op's `expect:` and the model
# checked), and the runs together must have injected a fault that failed an
# op, or the feature tested nothing.
#
#   ci/vm-faults.sh [BZIMAGE]   (default ../shared/kernels/bzImage-6.12-debug)
# Exit 0 pass, 1 fail; prints SKIP and exits 0 when the kernel is absent.
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-../shared/kernels/bzImage-6.12-debug}
if [[ ! -f $kernel ]]; then
    echo "vm-faults: SKIP: no kernel with fault injection at $kernel (the shared 6.12 debug kernel is not here)"
    exit 0
fi
out=${CGSTORM_OUT:-target/vm-faults}
rm -rf "$out"
CGSTORM_OUT=$out CGSTORM_PROGRAMS="corpus/faults/*.yaml" CGSTORM_RUN_ARGS="--accel tcg" \
    bash ci/vm-corpus.sh "$kernel" qemu || exit 1
python3 - "$out" <<'PY' || exit 1
import glob, json, sys
injected = failed = 0
for path in glob.glob(sys.argv[1] + "/*.json"):
    for o in json.load(open(path))["ops"]:
        if o.get("fault_injected"):
            injected += 1
            failed += o["outcome"] != "ok"
print(f"vm-faults: {injected} ops had a fault injected, {failed} of them failed")
if failed == 0:
    print("FAIL: no injected fault failed an op: fault injection tested nothing")
    sys.exit(1)
PY
