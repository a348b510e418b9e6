#!/usr/bin/env bash
# cgstorm's test command: formatting, lints, unit and integration tests, a
# short run of every fuzz target with a pinned seed, and the semantics corpus
# run in a real VM on the default kernel (run ci/setup.sh first).
# FUZZ_SECONDS sets each fuzz target's run time (default 45).
set -euo pipefail
cd "$(dirname "$0")/.."

fuzz_seconds=${FUZZ_SECONDS:-45}

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings

echo "== cargo test"
cargo test --all-targets

echo "== cargo fuzz (stable, -s none, ${fuzz_seconds}s per target, seed 20261121)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
declare -A seeds=(
    [program_parse]=corpus/semantics
    [program_roundtrip]=
    [model]=
    [model_interleavings]=
    [classify]=harness/report/testdata
)
(cd fuzz && cargo fuzz build -s none)
for target in $(cd fuzz && cargo fuzz list); do
    mkdir -p "$scratch/$target"
    extra=()
    if [[ -n "${seeds[$target]:-}" ]]; then extra=("$PWD/${seeds[$target]}"); fi
    echo "-- $target"
    log="$scratch/$target.log"
    if ! (cd fuzz && cargo fuzz run -s none "$target" "$scratch/$target" "${extra[@]}" -- \
        -max_total_time="$fuzz_seconds" -seed=20261121 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$log" 2>&1); then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed; the failing input is under fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "$log" || true
done
echo "== the Kubernetes manifests and the pods' scripts (no cluster)" && bash ci/k8s-check.sh
echo "== an installed cgstorm works with its source tree gone" && bash ci/install-check.sh
echo "== a campaign whose boots all fail exits 3 and says why (Debian's kernel, rdinit=/nonexistent)" && bash ci/vm-nothing-tested.sh debian
echo "== the semantics corpus in a VM (Debian's stock kernel, TCG)"
bash ci/vm-corpus.sh debian qemu
echo "== the semantics corpus in VMs restored from a snapshot (what campaigns restart from)"
CGSTORM_RUN_ARGS=--from-snapshot CGSTORM_OUT=target/vm-corpus-snapshot bash ci/vm-corpus.sh debian qemu
echo "== the model follows the booted kernel's probe (a 6.12 bzImage alone, then with a wrong config)" && bash ci/vm-probe.sh
echo "== kernel coverage sees kernel code (KCOV on the 6.12 debug kernel)" && bash ci/vm-cover.sh
echo "== per-op fault injection: faulted ops fail cleanly as the model allows (6.12 debug kernel)" && bash ci/vm-faults.sh
echo "== the watchdog tells slow writers from a stuck wait (Debian's kernel, --stall 3s)" && bash ci/vm-watchdog.sh debian
echo "== the reset reports a planted leak and not a legitimate hold (Debian's kernel)" && bash ci/vm-leak.sh debian
echo "== the shell reproducers of the corpus in a VM (cgstorm repro --sh --run, 10s each)" && bash ci/vm-repro.sh debian 10s
echo "== the mailing-list scenarios in a VM (Debian's stock kernel, TCG, 10s each)" && bash ci/vm-scenarios.sh debian 10s
echo "== a soak killed with SIGKILL resumes and loses no finding (150 s)" && bash ci/vm-soak-resume.sh debian
echo "== a finding that needs the programs before it: replay and minimize" && bash ci/vm-replay.sh debian
echo "== a night on Slurm: 2 shards (one requeued mid-run) and the merge" && bash ci/vm-slurm.sh debian

echo "== all checks passed"
