//! Finding the static agent binary that goes into the initramfs: a path from
//! `CGSTORM_AGENT`, or the workspace's static release build, (re)built with
//! cargo so it never lags behind the sources.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::HostError;

/// The target the agent is built for (static glibc binary).
pub const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Environment variable naming a prebuilt agent; skips the build.
pub const AGENT_ENV: &str = "CGSTORM_AGENT";

/// Where `cargo build --release -p cgstorm-agent --target` [`AGENT_TARGET`]
/// puts the binary for the workspace at `workspace` (honours
/// `CARGO_TARGET_DIR`).
pub fn static_build_path(workspace: &Path) -> PathBuf {
    static_build_path_in(workspace, std::env::var_os("CARGO_TARGET_DIR"))
}

/// [`static_build_path`] when `$CARGO_TARGET_DIR` is `target_dir`.
fn static_build_path_in(workspace: &Path, target_dir: Option<OsString>) -> PathBuf {
    let target_dir = target_dir
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    target_dir
        .join(AGENT_TARGET)
        .join("release")
        .join("cgstorm-agent")
}

/// The agent binary: `$CGSTORM_AGENT` if set; otherwise the static release
/// build of the workspace at `workspace`, built first with cargo (`$CARGO`
/// or `cargo`; a no-op when it is up to date). Without cargo or sources an
/// existing build is used as it is.
pub fn locate_or_build(workspace: &Path) -> Result<PathBuf, HostError> {
    locate_or_build_given(
        workspace,
        std::env::var_os(AGENT_ENV),
        static_build_path(workspace),
    )
}

/// [`locate_or_build`] when `$CGSTORM_AGENT` is `agent` and the static
/// build goes to `built`.
fn locate_or_build_given(
    workspace: &Path,
    agent: Option<OsString>,
    built: PathBuf,
) -> Result<PathBuf, HostError> {
    if let Some(p) = agent.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(HostError::Config(format!(
                "{AGENT_ENV}={} is not a file: point it at a static cgstorm-agent or unset it",
                p.display()
            )))
        };
    }
    let sources = workspace.join("workloads/agent/Cargo.toml");
    if !sources.is_file() {
        return existing(built, "the agent sources are not there to build it");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "cgstorm-agent", "--target"])
        .arg(AGENT_TARGET)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status();
    match status {
        Ok(s) if s.success() => existing(built, "cargo built it somewhere else"),
        Ok(s) => Err(HostError::Config(format!(
            "building the static agent failed ({s}): fix the build, or set {AGENT_ENV} to a prebuilt agent"
        ))),
        Err(e) => existing(built, &format!("cannot run {}: {e}", cargo.to_string_lossy())),
    }
}

fn existing(path: PathBuf, why: &str) -> Result<PathBuf, HostError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HostError::Config(format!(
            "no agent at {} ({why}): build it with `RUSTFLAGS=\"-C target-feature=+crt-static\" \
             cargo build --release -p cgstorm-agent --target {AGENT_TARGET}` or set {AGENT_ENV}",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_path_is_under_the_target_triple() {
        let w = Path::new("/w");
        let built = Path::new("x86_64-unknown-linux-gnu/release/cgstorm-agent");
        assert_eq!(static_build_path_in(w, None), w.join("target").join(built));
        assert_eq!(
            static_build_path_in(w, Some("".into())),
            w.join("target").join(built)
        );
        assert_eq!(
            static_build_path_in(w, Some("/t".into())),
            Path::new("/t").join(built)
        );
    }

    #[test]
    fn a_workspace_without_sources_or_build_says_how_to_build() {
        let dir = tempfile::tempdir().unwrap();
        let built = static_build_path_in(dir.path(), None);
        let err = locate_or_build_given(dir.path(), None, built)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("crt-static") && err.contains(AGENT_ENV),
            "{err}"
        );
    }

    #[test]
    fn the_environment_names_a_prebuilt_agent() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"").unwrap();
        let built = dir.path().join("none");
        let found = locate_or_build_given(dir.path(), Some(agent.clone().into()), built.clone());
        assert_eq!(found.unwrap(), agent);
        let absent = dir.path().join("absent");
        let err = locate_or_build_given(dir.path(), Some(absent.into()), built)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a file"), "{err}");
    }
}
