//! The corpus the commands default to: the source tree's `corpus/` while it
//! is where cgstorm was built from, else the copy built into the binary
//! (`build.rs`: corpus/semantics, regressions and scenarios), unpacked once
//! into `~/.cache/cgstorm/corpus-<hash>/`. So `cargo install` gives a
//! cgstorm that works from any directory with the tree moved away.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded_corpus.rs"));

/// The corpus directory (holding `semantics/`, `regressions/`,
/// `scenarios/`, …).
pub fn corpus() -> PathBuf {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus");
    if tree.join("semantics").is_dir() {
        return tree;
    }
    let dir = cgstorm_vm::kernel::cache_root().join(format!("corpus-{}", hash()));
    match unpack(&dir) {
        Ok(()) => dir,
        Err(e) => {
            // The callers report the missing directory with its path.
            eprintln!(
                "cgstorm: cannot unpack the built-in corpus to {}: {e}",
                dir.display()
            );
            dir
        }
    }
}

/// FNV-1a over the embedded paths and contents: a new build with another
/// corpus unpacks beside the old one.
fn hash() -> String {
    crate::findings::fnv_hex(
        EMBEDDED
            .iter()
            .flat_map(|(name, data)| name.as_bytes().iter().chain(data.iter())),
    )
}

/// Writes the embedded files under `dir`, whole (a temporary directory
/// renamed into place), unless a complete copy is already there.
fn unpack(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    for (name, data) in EMBEDDED {
        let f = tmp.join(name);
        if let Some(p) = f.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&f, data)?;
    }
    match std::fs::rename(&tmp, dir) {
        // Another cgstorm unpacked the same corpus meanwhile.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_corpus_is_the_trees_and_unpacks_whole() {
        let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus");
        assert!(EMBEDDED.iter().any(|(n, _)| n.starts_with("semantics/")));
        assert!(EMBEDDED.iter().any(|(n, _)| n.starts_with("scenarios/")));
        for (name, data) in EMBEDDED {
            assert_eq!(std::fs::read(tree.join(name)).unwrap(), *data, "{name}");
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("corpus-x");
        unpack(&dir).unwrap();
        unpack(&dir).unwrap();
        for (name, data) in EMBEDDED {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), *data, "{name}");
        }
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
