#!/usr/bin/env bash
# Installs what cgstorm's build, tests and VM runs need on a Debian machine.
# Idempotent; run as root (or with sudo). `--vng` also sets up the virtme-ng
# backend (virtme-ng, udev, and the Rust virtiofsd for Debian's kernel).
set -euo pipefail
vng=false
[[ "${1:-}" == "--vng" ]] && vng=true

need_apt=()
# munge and slurm*: the single-node Slurm cluster of ci/vm-slurm.sh;
# python3-yaml: ci/k8s-check.sh parses the Kubernetes manifests; chromium:
# ci/report-browser-check.sh renders the nightly report page headless.
for pkg in qemu-system-x86 kmod cpio e2fsprogs xfsprogs busybox-static bc gcc libc6-dev \
    munge slurmctld slurmd slurm-client python3-yaml chromium; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing: install Rust (https://rustup.rs) and run again" >&2
    exit 1
fi
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if $vng; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends udev libcap-ng-dev libseccomp-dev python3-pip
    command -v vng >/dev/null || pip install virtme-ng
    command -v virtiofsd >/dev/null || cargo install virtiofsd --locked
fi

# The default kernel: Debian's stock cloud kernel, into ~/.cache/cgstorm.
"$(dirname "$0")/../vm/scripts/fetch-debian-kernel.sh" >/dev/null
echo "setup: done"
