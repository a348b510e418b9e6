//! The shared libraries (and dynamic loader) a host binary needs, from `ldd`,
//! so a dynamic binary such as Debian's mkfs.xfs can be copied into the
//! initramfs with everything it loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::InitramfsError;

/// Parses `ldd` output into the absolute paths it names (libraries and the
/// loader); the vDSO has no file and is skipped.
pub fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in output.lines().map(str::trim) {
        if line.is_empty() || line.contains("statically linked") || line.starts_with("linux-vdso") {
            continue;
        }
        if line.contains("=> not found") {
            return Err(format!("missing library: {line}"));
        }
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or(path).trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Runs `ldd` on `binary`. A static binary needs nothing.
pub fn needed(binary: &Path) -> Result<Vec<PathBuf>, InitramfsError> {
    let err = |reason: String| InitramfsError::Ldd {
        binary: binary.to_path_buf(),
        reason,
    };
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| err(format!("{e} (install libc-bin)")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if text.contains("not a dynamic executable") || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        return Err(err(stderr.trim().to_string()));
    }
    parse_ldd(&text).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd3e1f2000)\n\
                   \tlibblkid.so.1 => /lib/x86_64-linux-gnu/libblkid.so.1 (0x00007f2a)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f29)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f2b)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libblkid.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        assert!(parse_ldd("\tlibx.so.1 => not found\n").is_err());
    }
}
