//! Merging campaign workdirs: one workdir from many (the shards of a
//! night, or campaigns on several machines), for `cgstorm merge` and the
//! fleet.
//!
//! Findings are merged by title (their directories are named by its hash):
//! a finding new to OUT is copied whole (console log, `before/`, triage); one
//! OUT has already gets the other's sightings (`seen` lines, the union), its
//! count becomes the number of distinct sightings, and a console log that
//! differs is kept beside the first as `console-<hash>.log`, programs before
//! it that differ as `before-<hash>/`. The corpus is
//! merged by content (its files are named by a hash of it). Merging a
//! workdir twice changes nothing.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::findings::{title_hash, write_new};

/// What a merge did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Findings new to OUT.
    pub new_findings: usize,
    /// Findings OUT had, with sightings added.
    pub updated_findings: usize,
    /// Corpus programs new to OUT.
    pub new_programs: usize,
}

/// Merges the workdir `from` into `out`.
pub fn merge_into(out: &Path, from: &Path) -> io::Result<Merged> {
    let mut m = Merged::default();
    for sub in ["findings", "corpus"] {
        fs::create_dir_all(out.join(sub))?;
    }
    for f in entries(&from.join("findings"))? {
        let Some(name) = f.file_name().map(|n| n.to_os_string()) else {
            continue;
        };
        // Only complete findings (the description is written last).
        if !f.join("description").is_file() {
            continue;
        }
        let to = out.join("findings").join(&name);
        if to.join("description").is_file() {
            if add_sightings(&to, &f)? {
                m.updated_findings += 1;
            }
        } else {
            copy_dir(&f, &to)?;
            m.new_findings += 1;
        }
    }
    for p in entries(&from.join("corpus"))? {
        if p.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let Some(name) = p.file_name() else {
            continue;
        };
        let to = out.join("corpus").join(name);
        if !to.exists() {
            // Its confirmed edges first, for `cgstorm distill`.
            let edges = p.with_extension("edges");
            if edges.is_file() {
                write_new(&to.with_extension("edges"), &fs::read(&edges)?)?;
            }
            write_new(&to, &fs::read(&p)?)?;
            m.new_programs += 1;
        }
    }
    merge_cover(&out.join("cover"), &from.join("cover"))?;
    merge_counters(out, from)?;
    Ok(m)
}

/// The campaign counters of `from` (fuzz.json or soak.json, with their
/// series over time), kept as `out/shards/<name>-<hash of its path>.json`
/// for `cgstorm report`'s plots: the merged workdir has no counters of
/// its own. Merging it again replaces the copy with its latest counters.
fn merge_counters(out: &Path, from: &Path) -> io::Result<()> {
    let Some(stats) = crate::campaign::stats::STATE_FILES
        .iter()
        .map(|f| from.join(f))
        .find(|p| p.is_file())
    else {
        return Ok(());
    };
    let whole = fs::canonicalize(from).unwrap_or_else(|_| from.to_path_buf());
    let name = from
        .file_name()
        .map_or_else(|| "workdir".into(), |n| n.to_string_lossy().into_owned());
    let hash = crate::findings::fnv_hex(whole.to_string_lossy().as_bytes());
    let to = out
        .join("shards")
        .join(format!("{name}-{}.json", &hash[..8]));
    fs::create_dir_all(out.join("shards"))?;
    write_new(&to, &fs::read(stats)?)
}

/// Kernel coverage, per kernel build: the union of the edges and of the
/// PCs; the symbols of a build as the first workdir that had them saved
/// them (one build, one text).
fn merge_cover(out: &Path, from: &Path) -> io::Result<()> {
    for p in entries(from)? {
        let (Some(name), Some(ext)) = (p.file_name(), p.extension()) else {
            continue;
        };
        let to = out.join(name);
        match ext.to_str() {
            Some("edges" | "pcs") => {
                let mut all = crate::campaign::engine::read_edges(&to);
                let before = all.len();
                all.extend(crate::campaign::engine::read_edges(&p));
                if all.len() != before || !to.exists() {
                    fs::create_dir_all(out)?;
                    let mut v: Vec<u32> = all.into_iter().collect();
                    v.sort_unstable();
                    let bytes: Vec<u8> = v.iter().flat_map(|e| e.to_le_bytes()).collect();
                    write_new(&to, &bytes)?;
                }
            }
            Some("symbols") if !to.exists() => {
                fs::create_dir_all(out)?;
                write_new(&to, &fs::read(&p)?)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The entries of `dir`, sorted (none if it is missing).
fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Adds `from`'s sightings of a finding to `to`'s; true if there were new ones.
fn add_sightings(to: &Path, from: &Path) -> io::Result<bool> {
    let lines = |p: &Path| -> BTreeSet<String> {
        fs::read_to_string(p.join("seen"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let (mine, theirs) = (lines(to), lines(from));
    let mut changed = false;
    if !theirs.is_subset(&mine) {
        // Kept in the order OUT had them, the new ones after.
        let mut text = fs::read_to_string(to.join("seen")).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for l in theirs.difference(&mine) {
            text.push_str(l);
            text.push('\n');
        }
        write_new(&to.join("seen"), text.as_bytes())?;
        let count = mine.union(&theirs).count();
        write_new(&to.join("count"), format!("{count}\n").as_bytes())?;
        changed = true;
    }
    if let Ok(log) = fs::read(from.join("console.log")) {
        let same = fs::read(to.join("console.log")).is_ok_and(|l| l == log);
        let other = to.join(format!(
            "console-{}.log",
            title_hash(&String::from_utf8_lossy(&log))
        ));
        if !same && !other.exists() {
            write_new(&other, &log)?;
            changed = true;
        }
    }
    for extra in ["before", "minimized", "triage"] {
        let (src, dst) = (from.join(extra), to.join(extra));
        if src.exists() && !dst.exists() {
            copy_any(&src, &dst)?;
            changed = true;
        }
    }
    // Another shard's programs before the same finding are another way to
    // it: kept beside the first as `before-<hash>/` (replay runs `before/`;
    // `cgstorm replay` of a copy with it renamed runs this one).
    let src = from.join("before");
    if src.is_dir() && to.join("before").is_dir() {
        let theirs = tree_hash(&src)?;
        let other = to.join(format!("before-{theirs}"));
        if theirs != tree_hash(&to.join("before"))? && !other.exists() {
            copy_dir(&src, &other)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// A hash of a directory's files, names and contents, in name order.
fn tree_hash(dir: &Path) -> io::Result<String> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    names.sort();
    let mut all = Vec::new();
    for p in names.iter().filter(|p| p.is_file()) {
        all.extend_from_slice(p.file_name().unwrap_or_default().as_encoded_bytes());
        all.push(0);
        all.extend(fs::read(p)?);
        all.push(0);
    }
    Ok(crate::findings::fnv_hex(&all))
}

/// Copies a file or a directory tree.
fn copy_any(from: &Path, to: &Path) -> io::Result<()> {
    if from.is_dir() {
        copy_dir(from, to)
    } else {
        write_new(to, &fs::read(from)?)
    }
}

/// Copies a directory tree (through a temporary name, so OUT never holds
/// half of a finding); lock files are left behind.
fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = to.with_extension("merging");
    let _ = fs::remove_dir_all(&tmp);
    fn walk(from: &Path, to: &Path) -> io::Result<()> {
        fs::create_dir_all(to)?;
        for e in fs::read_dir(from)?.flatten() {
            let (p, name) = (e.path(), e.file_name());
            if name == ".lock" {
                continue;
            }
            if p.is_dir() {
                walk(&p, &to.join(&name))?;
            } else {
                fs::copy(&p, to.join(&name))?;
            }
        }
        Ok(())
    }
    walk(from, &tmp)?;
    fs::rename(tmp, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(dir: &Path, title: &str, seen: &[&str], console: &str) {
        let f = dir.join("findings").join(title_hash(title));
        fs::create_dir_all(&f).unwrap();
        fs::write(f.join("description"), format!("{title}\n")).unwrap();
        fs::write(
            f.join("seen"),
            seen.iter().map(|s| format!("{s}\n")).collect::<String>(),
        )
        .unwrap();
        fs::write(f.join("count"), format!("{}\n", seen.len())).unwrap();
        fs::write(f.join("console.log"), console).unwrap();
    }

    fn read(p: PathBuf) -> String {
        fs::read_to_string(p).unwrap()
    }

    /// Two shards with one finding in common and one each: the merge has
    /// all three, the common one with the union of sightings and both
    /// console logs; merging again changes nothing.
    #[test]
    fn findings_merge_by_title_and_a_second_merge_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, out) = (t.path().join("a"), t.path().join("b"), t.path().join("out"));
        finding(
            &a,
            "WARNING in f",
            &["1 fuzz p1 on k", "2 fuzz p2 on k"],
            "log a",
        );
        finding(
            &b,
            "WARNING in f",
            &["2 fuzz p2 on k", "3 fuzz p3 on k"],
            "log b",
        );
        finding(&a, "BUG: x", &["1 fuzz q on k"], "x");
        finding(&b, "leak: y", &["4 fuzz r on k"], "y");
        fs::create_dir_all(a.join("corpus")).unwrap();
        fs::write(a.join("corpus/0123.yaml"), "lanes: []\n").unwrap();
        fs::create_dir_all(b.join("corpus")).unwrap();
        fs::write(b.join("corpus/0123.yaml"), "lanes: []\n").unwrap();
        fs::write(b.join("corpus/4567.yaml"), "lanes: []\n").unwrap();

        let first = merge_into(&out, &a).unwrap();
        assert_eq!((first.new_findings, first.new_programs), (2, 1));
        let second = merge_into(&out, &b).unwrap();
        assert_eq!(second.new_findings, 1);
        assert_eq!(second.updated_findings, 1);
        assert_eq!(second.new_programs, 1);

        let f = out.join("findings").join(title_hash("WARNING in f"));
        assert_eq!(read(f.join("count")), "3\n");
        assert_eq!(read(f.join("seen")).lines().count(), 3);
        assert_eq!(read(f.join("console.log")), "log a");
        let others: Vec<_> = entries(&f)
            .unwrap()
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("console-"))
            .collect();
        assert_eq!(others.len(), 1, "{others:?}");
        assert_eq!(read(others[0].clone()), "log b");
        assert_eq!(entries(&out.join("findings")).unwrap().len(), 3);

        let snapshot = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let mut v = Vec::new();
            for f in entries(&d.join("findings")).unwrap() {
                for x in entries(&f).unwrap() {
                    v.push((x.clone(), fs::read(&x).unwrap_or_default()));
                }
            }
            v
        };
        let before = snapshot(&out);
        assert_eq!(merge_into(&out, &a).unwrap(), Merged::default());
        assert_eq!(merge_into(&out, &b).unwrap(), Merged::default());
        assert_eq!(snapshot(&out), before, "merging again changed OUT");
    }

    /// A finding still being written (no description yet) is left out.
    #[test]
    fn coverage_merges_as_the_union_per_build() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, out) = (t.path().join("a"), t.path().join("b"), t.path().join("out"));
        let le = |v: &[u32]| v.iter().flat_map(|e| e.to_le_bytes()).collect::<Vec<u8>>();
        for (d, pcs) in [(&a, &[1u32, 3][..]), (&b, &[2, 3][..])] {
            fs::create_dir_all(d.join("cover")).unwrap();
            fs::create_dir_all(d.join("corpus")).unwrap();
            fs::write(d.join("cover/k.pcs"), le(pcs)).unwrap();
            fs::write(d.join("cover/k.symbols"), "81000000 _text\n").unwrap();
        }
        fs::write(b.join("corpus/89ab.yaml"), "lanes: []\n").unwrap();
        fs::write(b.join("corpus/89ab.edges"), le(&[7])).unwrap();
        merge_into(&out, &a).unwrap();
        merge_into(&out, &b).unwrap();
        let pcs = crate::campaign::engine::read_edges(&out.join("cover/k.pcs"));
        assert_eq!(pcs, [1, 2, 3].into());
        assert!(out.join("cover/k.symbols").is_file());
        assert_eq!(fs::read(out.join("corpus/89ab.edges")).unwrap(), le(&[7]));
        // Each workdir's counters go to shards/, once however often merged.
        fs::write(a.join("fuzz.json"), "{}").unwrap();
        merge_into(&out, &a).unwrap();
        merge_into(&out, &a).unwrap();
        let shards: Vec<PathBuf> = entries(&out.join("shards")).unwrap();
        assert_eq!(shards.len(), 1, "{shards:?}");
        assert!(shards[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("a-"));
    }

    /// The same finding after different programs in two shards: both
    /// sequences are kept; merging again changes nothing.
    #[test]
    fn every_shards_programs_before_a_finding_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, out) = (t.path().join("a"), t.path().join("b"), t.path().join("out"));
        for (w, prog) in [(&a, "x"), (&b, "y")] {
            finding(w, "WARNING in f", &[&format!("1 fuzz {prog} on k")], "log");
            let before = w
                .join("findings")
                .join(title_hash("WARNING in f"))
                .join("before");
            fs::create_dir_all(&before).unwrap();
            fs::write(before.join("000.yaml"), prog).unwrap();
        }
        merge_into(&out, &a).unwrap();
        merge_into(&out, &b).unwrap();
        let f = out.join("findings").join(title_hash("WARNING in f"));
        assert_eq!(read(f.join("before/000.yaml")), "x");
        let others: Vec<PathBuf> = fs::read_dir(&f)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("before-")
            })
            .collect();
        assert_eq!(others.len(), 1, "{others:?}");
        assert_eq!(read(others[0].join("000.yaml")), "y");
        let names = |d: &Path| {
            let mut v: Vec<_> = fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            v.sort();
            v
        };
        let once = names(&f);
        merge_into(&out, &b).unwrap();
        merge_into(&out, &a).unwrap();
        assert_eq!(names(&f), once, "merging again changed the finding");
    }

    #[test]
    fn half_written_findings_are_not_merged() {
        let t = tempfile::tempdir().unwrap();
        let (a, out) = (t.path().join("a"), t.path().join("out"));
        let f = a.join("findings").join("00ff");
        fs::create_dir_all(&f).unwrap();
        fs::write(f.join("report"), "x").unwrap();
        assert_eq!(merge_into(&out, &a).unwrap(), Merged::default());
        assert!(entries(&out.join("findings")).unwrap().is_empty());
    }
}
