#!/usr/bin/env bash
# What can be checked of deploy/k8s without a cluster: the rendered
# manifests parse and say what they must (an Indexed Job of N shards, the
# merge Job, the shared volume, /dev/kvm), render.sh refuses bad input, and
# the scripts the pods run map the completion index to the shard, mark a
# shard done only when fuzz did its job, and merge once all are done (or
# after the wait, saying which are missing). No pod is run here: there is no
# Kubernetes on this machine.
#
#   ci/k8s-check.sh      Exit 0 pass, 1 fail.
set -uo pipefail
cd "$(dirname "$0")/.."
k=deploy/k8s
fail=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
bad() { echo "FAIL: $*"; fail=1; }

CGSTORM_SEED=42 $k/render.sh cgstorm-night 3 2h registry.example/cgstorm:1 night-pvc --kernel /night/bzImage >"$t/night.yaml" ||
    bad "render.sh failed"
python3 - "$t/night.yaml" <<'PY' || fail=1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def check(ok, what):
    if not ok:
        print("FAIL: manifest:", what); sys.exit(1)
check(len(docs) == 2 and all(d["kind"] == "Job" for d in docs), "two Jobs")
shards, merge = docs
s = shards["spec"]
check(s["completionMode"] == "Indexed", "the shards are an Indexed Job")
check(s["completions"] == 3 and s["parallelism"] == 3, "3 completions, 3 in parallel")
c = s["template"]["spec"]["containers"][0]
env = {e["name"]: e["value"] for e in c["env"]}
check(env == {"CGSTORM_NIGHT": "/night", "CGSTORM_SHARDS": "3", "CGSTORM_SEED": "42",
              "CGSTORM_DURATION": "2h", "CGSTORM_ARGS": "--kernel /night/bzImage"}, f"shard env {env}")
check(c["image"] == "registry.example/cgstorm:1", "image")
check(c["command"] == ["/opt/cgstorm/deploy/k8s/shard.sh"], "the shard's command")
vols = {v["name"]: v for v in s["template"]["spec"]["volumes"]}
check(vols["night"]["persistentVolumeClaim"]["claimName"] == "night-pvc", "the night's volume")
check(vols["kvm"]["hostPath"] == {"path": "/dev/kvm", "type": "CharDevice"}, "/dev/kvm")
m = merge["spec"]["template"]["spec"]
check(m["containers"][0]["command"] == ["/opt/cgstorm/deploy/k8s/merge.sh"], "the merge's command")
check(m["volumes"][0]["persistentVolumeClaim"]["claimName"] == "night-pvc", "the merge sees the volume")
check({e["name"]: e["value"] for e in m["containers"][0]["env"]}["CGSTORM_SHARDS"] == "3", "the merge waits for 3")
print("k8s-check: the manifests parse: an Indexed Job of 3 shards and the merge")
PY
for args in "Bad_Name 3 2h img pvc" "night 0 2h img pvc" "night 3 2h img" "night 3 2h img pvc --append a\"b"; do
    # shellcheck disable=SC2086
    if $k/render.sh $args >/dev/null 2>&1; then bad "render.sh accepted: $args"; fi
done

# A fake cgstorm: records its arguments, exits with $FAKE_EXIT.
cat >"$t/cgstorm" <<'SH'
#!/bin/bash
echo "$*" >>"$FAKE_LOG"
exit "${FAKE_EXIT:-0}"
SH
chmod +x "$t/cgstorm"
export CGSTORM=$t/cgstorm FAKE_LOG=$t/calls CGSTORM_NIGHT=$t/night CGSTORM_SHARDS=3 \
    CGSTORM_SEED=42 CGSTORM_DURATION=2h CGSTORM_ARGS="--kernel /night/bzImage"
JOB_COMPLETION_INDEX=1 $k/shard.sh >/dev/null || bad "shard.sh 1 failed"
grep -q -- "fuzz --seed 42 --shard 1/3 --workdir $t/night/shard-1 --duration 2h --exchange $t/night/exchange --kernel /night/bzImage" "$t/calls" ||
    bad "shard.sh 1 ran: $(cat "$t/calls")"
[[ -f $t/night/shard-1/done ]] || bad "shard 1 is not marked done"
FAKE_EXIT=1 JOB_COMPLETION_INDEX=0 $k/shard.sh >/dev/null || bad "a shard with a new finding (exit 1) failed its pod"
[[ -f $t/night/shard-0/done ]] || bad "shard 0 (exit 1) is not marked done"
if FAKE_EXIT=3 JOB_COMPLETION_INDEX=2 $k/shard.sh >/dev/null; then bad "a shard that tested nothing (exit 3) passed"; fi
[[ ! -f $t/night/shard-2/done ]] || bad "shard 2 (exit 3) is marked done"
if JOB_COMPLETION_INDEX=3 $k/shard.sh >/dev/null 2>&1; then bad "index 3 of 3 was taken for a shard"; fi

: >"$t/calls"
if CGSTORM_MERGE_WAIT=1 CGSTORM_MERGE_POLL=0.2 $k/merge.sh >/dev/null 2>"$t/merge.err"; then
    bad "merge.sh passed with shard 2 not done"
fi
grep -q "shards not done after 1 s: 2" "$t/merge.err" || bad "merge.sh did not name the missing shard: $(cat "$t/merge.err")"
grep -q "^merge $t/night/merged $t/night/shard-0 $t/night/shard-1 $t/night/shard-2$" "$t/calls" ||
    bad "merge.sh did not merge what there was: $(cat "$t/calls")"
echo 0 >"$t/night/shard-2/done"
: >"$t/calls"
CGSTORM_MERGE_WAIT=1 CGSTORM_MERGE_POLL=0.2 $k/merge.sh >/dev/null || bad "merge.sh failed with every shard done"
grep -q "^report $t/night/merged -o $t/night/report.html$" "$t/calls" || bad "merge.sh wrote no report: $(cat "$t/calls")"

[[ $fail -eq 0 ]] && echo "k8s-check: ok (the manifests and the pods' scripts; no cluster ran them)"
exit $fail
