#!/usr/bin/env bash
# A night on a real Slurm (issue 14): a single-node cluster on this machine
# (deploy/slurm/local-cluster.sh), the night's job array of 2 fuzz shards
# of 60 s on Debian's kernel and the merge job after it (deploy/slurm/
# night.sh). Shard 0 is requeued once it has run programs: it must resume
# its workdir (restart 1 in its log, its programs counted over both
# sessions, its findings kept), and the merged workdir must hold exactly the
# union of the shards' findings, with a corpus and a report.
#
#   ci/vm-slurm.sh [KERNEL]   (default debian)
# Exit 0 pass, 1 fail; SKIP (exit 0) when Slurm is not installed or its
# daemons cannot start here.
set -uo pipefail
cd "$(dirname "$0")/.."
kernel=${1:-debian}
for t in munged slurmctld slurmd sbatch scontrol squeue; do
    command -v "$t" >/dev/null || {
        echo "vm-slurm: SKIP: no $t (apt-get install munge slurmctld slurmd slurm-client)"
        exit 0
    }
done
. ci/lib.sh
build_cgstorm_and_agent
work=$(mktemp -d /tmp/cgstorm-slurm.XXXXXX)
# The night's findings, logs and report outlive the run (CI artifacts):
# a finding seen here is not lost with the scratch directory.
out=${CGSTORM_OUT:-target/vm-slurm}
rm -rf "$out" && mkdir -p "$out"
keep() {
    deploy/slurm/local-cluster.sh stop "$work/cluster"
    if [[ -d $work/night ]]; then
        for d in "$work"/night/shard-* "$work/night/merged"; do
            [[ -d $d/findings ]] && mkdir -p "$out/$(basename "$d")" && cp -r "$d/findings" "$out/$(basename "$d")/"
        done
        cp -r "$work/night/logs" "$out/" 2>/dev/null
        cp "$work/night/report.html" "$out/" 2>/dev/null
    fi
    rm -rf "$work"
}
trap keep EXIT
if ! deploy/slurm/local-cluster.sh start "$work/cluster"; then
    echo "vm-slurm: SKIP: the single-node Slurm cluster would not start here (logs above)"
    exit 0
fi
export SLURM_CONF=$work/cluster/slurm.conf
export CGSTORM=$PWD/target/release/cgstorm CGSTORM_AGENT=$PWD/$agent CGSTORM_SEED=20261201
start=$(date +%s)
read -r array merge < <(deploy/slurm/night.sh "$work/night" 2 60s --kernel "$kernel" --accel tcg)
echo "vm-slurm: array $array, merge $merge"
fail=0
titles() { for d in "$@"; do [[ -d $d/findings ]] && cat "$d"/findings/*/description 2>/dev/null; done | sort -u; }
programs() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["programs"])' "$1" 2>/dev/null || echo 0; }

# Requeue shard 0 in the middle of its campaign.
state0=$work/night/shard-0/fuzz.json
for _ in $(seq 300); do
    [[ $(programs "$state0") -ge 5 ]] && break
    sleep 1
done
before=$(programs "$state0")
if [[ $before -lt 5 ]]; then
    echo "FAIL: shard 0 ran no programs in 300 s"; sed 's/^/    /' "$work/night/logs/shard-0.log" | tail -20; exit 1
fi
found_at_requeue=$(titles "$work/night/shard-0")
scontrol requeue "${array}_0" || { echo "FAIL: scontrol requeue ${array}_0"; exit 1; }
echo "vm-slurm: requeued shard 0 after $before programs"

for _ in $(seq 900); do
    [[ -z $(squeue -h -j "$array,$merge" 2>/dev/null) ]] && break
    sleep 1
done
if [[ -n $(squeue -h -j "$array,$merge" 2>/dev/null) ]]; then
    echo "FAIL: the night did not end in 900 s"; squeue; exit 1
fi
echo "vm-slurm: the night took $(( $(date +%s) - start )) s"
for l in "$work/night"/logs/*.log; do echo "--- $(basename "$l")"; grep -v '^cgstorm: [0-9]*m\?[0-9.]*s elapsed' "$l" | tail -n 6 | sed 's/^/    /'; done

grep -q "restart 1" "$work/night/logs/shard-0.log" || { echo "FAIL: shard 0 did not run again after its requeue"; fail=1; }
after=$(programs "$state0")
if [[ $after -le $before ]]; then
    echo "FAIL: shard 0 did not resume: $after programs at the end, $before at the requeue"; fail=1
fi
# No finding shard 0 had stored when it was requeued is lost.
if [[ -n $found_at_requeue ]]; then
    lost=$(comm -23 <(echo "$found_at_requeue") <(titles "$work/night/shard-0"))
    if [[ -n $lost ]]; then
        echo "FAIL: shard 0 lost findings across its requeue:"; echo "$lost" | sed 's/^/    /'; fail=1
    else
        echo "vm-slurm: shard 0 kept its $(echo "$found_at_requeue" | grep -c .) finding(s) across its requeue"
    fi
else
    echo "vm-slurm: shard 0 had stored no finding when it was requeued (nothing to lose: not checked)"
fi
shard_titles=$(titles "$work"/night/shard-*)
merged_titles=$(titles "$work/night/merged")
if [[ $shard_titles != "$merged_titles" ]]; then
    echo "FAIL: the merged findings are not the union of the shards':"
    diff <(echo "$shard_titles") <(echo "$merged_titles") | sed 's/^/    /'; fail=1
fi
# The corpus exchange: each shard published what it kept, and at least one
# took programs the other published (every 30 s).
taken=0
for i in 0 1; do
    f=$work/night/shard-$i/fuzz.json
    pub=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("exchange",{}).get("published",0))' "$f" 2>/dev/null || echo 0)
    imp=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("exchange",{}).get("imported",0))' "$f" 2>/dev/null || echo 0)
    echo "vm-slurm: shard $i gave $pub programs to the exchange and took $imp"
    if [[ $pub -eq 0 ]]; then
        # A shard whose VM stalled on TCG's stale breakpoint (a finding of
        # kind tcg-artifact) may have spent its night on the programs it
        # took from the other before the stall: its publishing could not be
        # checked, which is said, not passed.
        stalled=$(python3 -c 'import json,sys; f=json.load(open(sys.argv[1])).get("findings",{}); print(sum(1 for t in f.values() if t.get("kind")=="tcg-artifact"))' "$f" 2>/dev/null || echo 0)
        if [[ $stalled -gt 0 ]]; then
            echo "SKIP: shard $i published nothing: its VM stalled on a TCG artifact ($stalled finding(s) of kind tcg-artifact); the exchange is checked on the other shard only"
        else
            echo "FAIL: shard $i published nothing to $work/night/exchange"; fail=1
        fi
    fi
    taken=$((taken + imp))
done
[[ $taken -gt 0 ]] || { echo "FAIL: no shard took a program from the exchange"; fail=1; }
for i in 0 1; do
    python3 -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); sys.exit(0 if r.find("testsuite/testcase") is not None else 1)' \
        "$work/night/shard-$i/fuzz.junit.xml" || { echo "FAIL: shard $i's fuzz.junit.xml is not JUnit XML with a test case"; fail=1; }
done
n_corpus=$(find "$work/night/merged/corpus" -name '*.yaml' 2>/dev/null | wc -l)
[[ $n_corpus -gt 0 ]] || { echo "FAIL: the merged corpus is empty"; fail=1; }
[[ -s $work/night/report.html ]] || { echo "FAIL: no report.html"; fail=1; }
# The page in a real browser: its findings table holds the merged findings;
# the screenshot is kept with the night's artifacts.
bash ci/report-browser-check.sh "$work/night/report.html" "$out/report.png" "$work/night/merged" || fail=1
echo "vm-slurm: shard 0 $before -> $after programs across its requeue; findings: $(echo "$shard_titles" | grep -c . ) in the shards, $(echo "$merged_titles" | grep -c .) merged; merged corpus $n_corpus programs"
[[ $fail -eq 0 ]] && echo "vm-slurm: ok"
exit $fail
