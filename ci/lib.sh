# Shared by the ci/vm-*.sh scripts (sourced, from the workspace root).

# Builds the cgstorm CLI and, once up front so each run does not ask cargo,
# the static agent; sets $agent to its path. Exits 2 when a build fails.
build_cgstorm_and_agent() {
    cargo build --release -q -p cgstorm || exit 2
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release -q -p cgstorm-agent --target x86_64-unknown-linux-gnu || exit 2
    agent=target/x86_64-unknown-linux-gnu/release/cgstorm-agent
}
