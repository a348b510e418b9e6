//! The harness's layering, as the README's architecture table states it:
//! each engine module (src/lib.rs) uses only modules of the layers below
//! its own, and each command module (src/main.rs) uses only the engine,
//! never another command. Read from the sources (`crate::NAME` and
//! `cgstorm::NAME` paths), so a new import that breaks the table fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The engine's layers, top first (the README's table, without the
/// commands). A module may use the modules of any layer after its own.
const LAYERS: &[&[&str]] = &[
    &["history", "workdirs"],
    &["campaign"],
    &["run"],
    &["vm_args", "kernel_args", "data"],
    &["findings", "markup"],
    &["programs", "kernel_code"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `mod NAME;` lines of a crate root (`pub mod` for the library).
fn modules(root: &str) -> Vec<String> {
    let text = std::fs::read_to_string(src().join(root)).unwrap();
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// The files of module `name`: src/NAME.rs, or src/NAME/ recursively.
fn files(name: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    let file = src().join(format!("{name}.rs"));
    if file.exists() {
        out.push(file);
    }
    let dir = src().join(name);
    if dir.is_dir() {
        walk(&dir, &mut out);
    }
    out
}

/// The first path segments after `crate::` or `cgstorm::` in `text`
/// (both single paths and `{a, b::c}` groups).
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["crate::", "cgstorm::"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            // `cgstorm::` inside a longer name (`cgstorm_workloads::`) is not
            // this crate: the character before must not be part of a name.
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let seg: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !seg.is_empty() {
                        out.insert(seg);
                    }
                }
            } else {
                let seg: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(seg);
            }
        }
    }
    out
}

/// Module -> the other known modules its files name.
fn graph(names: &[String], known: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    names
        .iter()
        .map(|m| {
            let mut deps = BTreeSet::new();
            for f in files(m) {
                let text = std::fs::read_to_string(&f).unwrap();
                deps.extend(
                    used(&text)
                        .into_iter()
                        .filter(|d| d != m && known.contains(d)),
                );
            }
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn engine_modules_use_only_the_layers_below_them() {
    let lib = modules("lib.rs");
    let declared: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|l| l.iter())
        .map(|s| s.to_string())
        .collect();
    let found: BTreeSet<String> = lib.iter().cloned().collect();
    assert_eq!(
        found, declared,
        "src/lib.rs's modules and the layers of this test (and of the README's table) differ"
    );
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m)).unwrap();
    let mut wrong = Vec::new();
    for (m, deps) in graph(&lib, &found) {
        for d in deps {
            if layer(&d) <= layer(&m) {
                wrong.push(format!("{m} uses {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "engine modules that use their own layer or one above: {wrong:?}"
    );
}

#[test]
fn commands_use_the_engine_only() {
    let lib: BTreeSet<String> = modules("lib.rs").into_iter().collect();
    let bin = modules("main.rs");
    assert!(
        bin.len() >= 10,
        "main.rs declares too few command modules: {bin:?}"
    );
    let mut known = lib.clone();
    known.extend(bin.iter().cloned());
    let mut wrong = Vec::new();
    for (m, deps) in graph(&bin, &known) {
        assert!(
            !lib.contains(&m),
            "{m} is both a command and an engine module"
        );
        for d in deps.iter().filter(|d| !lib.contains(*d)) {
            wrong.push(format!("{m} uses the command {d}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "commands that use another command: {wrong:?}"
    );
}

#[test]
fn the_path_reader_sees_groups_and_skips_longer_names() {
    let got = used(
        "use crate::run::x; use cgstorm::{campaign, findings::y};\nuse cgstorm_workloads::model;",
    );
    let want: BTreeSet<String> = ["run", "campaign", "findings"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}
