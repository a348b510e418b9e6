//! Embeds the corpus the commands default to (corpus/semantics,
//! regressions and scenarios) in the binary, so that an installed cgstorm
//! works with its source tree gone (`src/data.rs` unpacks it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const DIRS: [&str; 3] = ["semantics", "regressions", "scenarios"];

fn main() {
    let corpus = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../corpus");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for d in DIRS {
        let dir = corpus.join(d);
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                files.push((format!("{d}/{name}"), p.canonicalize().unwrap()));
            }
        }
    }
    files.sort();
    let mut out = String::from("/// The embedded corpus: (path under corpus/, contents).\n");
    out.push_str("pub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_corpus.rs");
    std::fs::write(dest, out).unwrap();
}
