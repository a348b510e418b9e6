#!/usr/bin/env bash
# Kernel coverage sees kernel code: on the shared 6.12 debug kernel (KCOV),
# a spawned writer's write path counts (its own KCOV buffer), and
# a memcg write and task migrations bring edges that mkdir/rmdir alone do
# not, mkdir/rmdir again brings almost none, a second fresh boot (KASLR
# elsewhere) gives mkdir/rmdir >= 90 % the same edges, and the PCs fall in
# the kernel's named functions, and the generator's ForeignDirty recipe
# runs inode_switch_wbs in one of three runs (vm/examples/cover_check.rs).
#
#   ci/vm-cover.sh [BZIMAGE]   (default ../shared/kernels/bzImage-6.12-debug)
# Exit 0 pass, 1 fail; prints SKIP and exits 0 when the kernel is absent or
# has no KCOV.
set -uo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/kernels/bzImage-6.12-debug}
if [[ ! -f $src ]]; then
    echo "vm-cover: SKIP: no kernel at $src (the shared 6.12 kernels are not here)"
    exit 0
fi
. ci/lib.sh
build_cgstorm_and_agent
cargo build --release -q -p cgstorm-vm --example cover_check || exit 1
./target/release/examples/cover_check "$src"
code=$?
case $code in
    0) exit 0 ;;
    2) echo "vm-cover: SKIP: $src has no KCOV"; exit 0 ;;
    *) exit 1 ;;
esac
