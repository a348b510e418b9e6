#!/usr/bin/env bash
# The reset tells a leak from a legitimate hold (vm/examples/leak_check.rs):
# tmpfs pages charged to a removed memcg are freed when the reset unmounts
# the tmpfs (nothing reported), while the same pages kept pinned (a planted
# leak: the program's vmsplice pin left held) keep the memcg dying, which
# the reset reports as a leak. A DAX pin released at the program's end
# leaves the pages idle; left held, the reset's truncate of the file waits
# for them and it is reported (LEAK_DAX).
#
#   ci/vm-leak.sh [KERNEL]   (default: debian)
# Exit 0 pass, 1 fail.
set -uo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh
build_cgstorm_and_agent
cargo build --release -q -p cgstorm-vm --example leak_check || exit 1
./target/release/examples/leak_check "${1:-debian}"
