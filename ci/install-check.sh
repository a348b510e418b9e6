#!/usr/bin/env bash
# An installed cgstorm works with its source tree gone: copies the checkout,
# `cargo install`s cgstorm and the static agent from the copy into a root,
# moves the copy away, then from / runs `cgstorm scenario list` (the
# scenarios built into the binary) and `cgstorm run` of a semantics program
# (Debian's kernel, TCG; the agent found beside the binary), and checks that
# without the agent the error says how to install it.
#
#   ci/install-check.sh
# Exit 0 pass, 1 fail.
set -uo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "install-check: FAIL: $*" >&2; exit 1; }

git ls-files -z | tar --null -T - -cf - | (mkdir -p "$scratch/src" && tar -C "$scratch/src" -xf -)
# The copy builds into the checkout's target directory: the registry
# crates are built once.
export CARGO_TARGET_DIR="$PWD/target/install-check"
(cd "$scratch/src" && cargo install -q --locked --path harness/cli --root "$scratch/root") ||
    fail "cargo install of cgstorm"
(cd "$scratch/src" && RUSTFLAGS="-C target-feature=+crt-static" cargo install -q --locked \
    --path workloads/agent --target x86_64-unknown-linux-gnu --root "$scratch/root") ||
    fail "cargo install of the static agent"
mv "$scratch/src" "$scratch/moved"
# The installed cgstorm must not find the build either.
unset CARGO_TARGET_DIR
bin="$scratch/root/bin/cgstorm"

# A cache of its own, sharing only the fetched kernels: the built-in
# corpus must be unpacked there, by this binary.
real_cache=${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm
export XDG_CACHE_HOME="$scratch/cache"
mkdir -p "$XDG_CACHE_HOME/cgstorm"
ln -s "$real_cache/kernels" "$XDG_CACHE_HOME/cgstorm/kernels"

list=$(cd / && env -u CGSTORM_AGENT -u CGSTORM_SCENARIOS "$bin" scenario list) || fail "scenario list"
grep -q dax_pinned_teardown <<<"$list" || fail "scenario list lacks dax_pinned_teardown: $list"
echo "install-check: scenario list from /: $(wc -l <<<"$list") scenarios"

cache=$(ls -d "$XDG_CACHE_HOME"/cgstorm/corpus-* | head -n1)
program="$cache/semantics/mounts.yaml"
[[ -f "$program" ]] || fail "the built-in corpus was not unpacked ($program)"
(cd / && env -u CGSTORM_AGENT "$bin" run "$program" --accel tcg >"$scratch/run.log" 2>&1) ||
    { tail -n 20 "$scratch/run.log" >&2; fail "cgstorm run $program"; }
grep -q '^PASS' "$scratch/run.log" || fail "no PASS line: $(tail -n 5 "$scratch/run.log")"
echo "install-check: $(grep '^PASS' "$scratch/run.log")"

mv "$scratch/root/bin/cgstorm-agent" "$scratch/agent"
(cd / && env -u CGSTORM_AGENT "$bin" run "$program" --accel tcg >"$scratch/none.log" 2>&1)
rc=$?
[[ $rc == 3 ]] || fail "without the agent: exit $rc, want 3"
grep -q "cargo install --path workloads/agent" "$scratch/none.log" ||
    fail "without the agent the error does not say how to install it: $(cat "$scratch/none.log")"
echo "install-check: without the agent: exit 3, and the error says how to install it"
echo "install-check: PASS"
