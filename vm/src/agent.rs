//! Finding the static agent binary that goes into the initramfs: a path from
//! `CGSTORM_AGENT`, or the workspace's static release build, (re)built with
//! cargo so it never lags behind the sources; for an installed cgstorm whose
//! source tree is gone, a static `cgstorm-agent` installed beside it
//! ([`INSTALL_HINT`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::HostError;

/// The target the agent is built for (static glibc binary).
pub const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Environment variable naming a prebuilt agent; skips the build.
pub const AGENT_ENV: &str = "CGSTORM_AGENT";

/// How to put the agent beside an installed cgstorm.
pub const INSTALL_HINT: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo install \
     --path workloads/agent --target x86_64-unknown-linux-gnu --root <cgstorm's --root>";

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
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("cgstorm-agent")));
    locate_or_build_given(
        workspace,
        std::env::var_os(AGENT_ENV),
        static_build_path(workspace),
        beside,
    )
}

/// [`locate_or_build`] when `$CGSTORM_AGENT` is `agent`, the static build
/// goes to `built`, and an installed agent would be at `beside`.
fn locate_or_build_given(
    workspace: &Path,
    agent: Option<OsString>,
    built: PathBuf,
    beside: Option<PathBuf>,
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
        if built.is_file() {
            return Ok(built);
        }
        return installed(beside);
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

/// The agent installed beside cgstorm, which must be static: it runs as
/// PID 1 of an initramfs that has no dynamic loader.
fn installed(beside: Option<PathBuf>) -> Result<PathBuf, HostError> {
    let Some(p) = beside.filter(|p| p.is_file()) else {
        return Err(HostError::Config(format!(
            "no agent: cgstorm's source tree is not where it was built, and no cgstorm-agent \
             is installed beside it; install one with `{INSTALL_HINT}`, or set {AGENT_ENV}"
        )));
    };
    match is_static_elf(&p) {
        Ok(true) => Ok(p),
        Ok(false) => Err(HostError::Config(format!(
            "{} is not a static binary (it names a dynamic loader) and cannot be the \
             initramfs's PID 1: install it with `{INSTALL_HINT}`, or set {AGENT_ENV}",
            p.display()
        ))),
        Err(e) => Err(HostError::Config(format!(
            "cannot read {} as an ELF binary ({e}): install the agent with `{INSTALL_HINT}`, \
             or set {AGENT_ENV}",
            p.display()
        ))),
    }
}

/// Whether an x86-64 ELF file has no `PT_INTERP` program header (a static
/// or static-pie binary).
pub fn is_static_elf(path: &Path) -> std::io::Result<bool> {
    use std::io::{Error, ErrorKind, Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "not a 64-bit little-endian ELF file",
        ));
    }
    let phoff = u64::from_le_bytes(h[0x20..0x28].try_into().expect("8 bytes"));
    let phentsize = u64::from(u16::from_le_bytes([h[0x36], h[0x37]]));
    let phnum = u16::from_le_bytes([h[0x38], h[0x39]]);
    if phentsize < 4 {
        return Err(Error::new(ErrorKind::InvalidData, "no program headers"));
    }
    const PT_INTERP: u32 = 3;
    for i in 0..u64::from(phnum) {
        f.seek(SeekFrom::Start(phoff + i * phentsize))?;
        let mut t = [0u8; 4];
        f.read_exact(&mut t)?;
        if u32::from_le_bytes(t) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
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
        let err = locate_or_build_given(dir.path(), None, built, None)
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
        let found =
            locate_or_build_given(dir.path(), Some(agent.clone().into()), built.clone(), None);
        assert_eq!(found.unwrap(), agent);
        let absent = dir.path().join("absent");
        let err = locate_or_build_given(dir.path(), Some(absent.into()), built, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a file"), "{err}");
    }

    #[test]
    fn an_installed_cgstorm_takes_a_static_agent_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let built = dir.path().join("none");
        // The test binary itself: dynamically linked, as cargo builds tests.
        let dynamic = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&dynamic).unwrap());
        let err = locate_or_build_given(dir.path(), None, built.clone(), Some(dynamic))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a static binary") && err.contains("cargo install"),
            "{err}"
        );
        let text = dir.path().join("text");
        std::fs::write(&text, [b'x'; 100]).unwrap();
        let err = locate_or_build_given(dir.path(), None, built.clone(), Some(text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("as an ELF binary"), "{err}");
        let err =
            locate_or_build_given(dir.path(), None, built.clone(), Some(dir.path().join("no")))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("no cgstorm-agent is installed beside it"),
            "{err}"
        );
        // A static ELF header: no program header names a loader.
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let stat = dir.path().join("static");
        std::fs::write(&stat, &elf).unwrap();
        assert_eq!(
            locate_or_build_given(dir.path(), None, built.clone(), Some(stat.clone())).unwrap(),
            stat
        );
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        std::fs::write(&stat, &elf).unwrap();
        assert!(locate_or_build_given(dir.path(), None, built, Some(stat)).is_err());
    }
}
