//! The findings store, laid out the way syzkaller users expect:
//! `WORKDIR/findings/<hash of title>/` holding `description` (the title),
//! `report` (the cleaned report, or what the model saw), `console.log`,
//! `program.yaml`, and `count` (how often it was seen).
//!
//! The first sighting's files are kept; later sightings bump the count and
//! add a line to `seen`. A lock file makes concurrent runs (several VMs
//! sharing a workdir) safe.
//!
//! It is also where a finding directory is read back ([`load`],
//! [`load_before`]) and where the programs that ran before a finding are
//! written ([`write_before`]): one owner for the layout.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cgstorm_workloads::Program;

/// One thing to store.
pub struct Record<'a> {
    /// The finding's kind (`lockdep`, `model-divergence`, …).
    pub kind: &'a str,
    /// Its title; identical bugs have identical titles.
    pub title: &'a str,
    /// The report (kernel report text, or the divergence explained).
    pub report: &'a str,
    /// The whole console log, if kept.
    pub console: Option<&'a Path>,
    /// The program that found it.
    pub program: &'a str,
    /// A line for `seen`: when, which kernel.
    pub context: &'a str,
}

/// The directory name for a title: [`fnv_hex`] of it.
pub fn title_hash(title: &str) -> String {
    fnv_hex(title.as_bytes())
}

/// FNV-1a 64 of the bytes, as 16 hex digits: stable across runs and builds.
pub fn fnv_hex<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Stores a finding under `workdir`; returns its directory and how often it
/// has now been seen.
pub fn record(workdir: &Path, r: &Record<'_>) -> io::Result<(PathBuf, u64)> {
    let dir = workdir.join("findings").join(title_hash(r.title));
    fs::create_dir_all(&dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    lock.lock()?;
    let first = !dir.join("description").exists();
    if first {
        write_new(&dir.join("report"), r.report.as_bytes())?;
        write_new(&dir.join("program.yaml"), r.program.as_bytes())?;
        write_new(&dir.join("kind"), format!("{}\n", r.kind).as_bytes())?;
        if let Some(c) = r.console {
            copy_new(c, &dir.join("console.log"))?;
        }
        // Last, so a crash midway leaves no description without its files.
        write_new(
            &dir.join("description"),
            format!("{}\n", r.title).as_bytes(),
        )?;
    }
    let count = fs::read_to_string(dir.join("count"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    write_new(&dir.join("count"), format!("{count}\n").as_bytes())?;
    let mut seen = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("seen"))?;
    writeln!(seen, "{}", r.context)?;
    lock.unlock()?;
    Ok((dir, count))
}

/// Copies `from` to `to` through a temporary name and a rename. A console
/// log that is not there (the VM never wrote one) leaves none: the finding
/// is stored all the same.
fn copy_new(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = beside(to);
    match fs::copy(from, &tmp) {
        Ok(_) => fs::rename(tmp, to),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !from.exists() => {
            let _ = fs::remove_file(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes a file through a temporary name and a rename, so readers never see half of it.
pub fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = beside(path);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    });
    if written.is_err() {
        // A full disk leaves no half-written temporary behind.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Where `path` is written before it is renamed into place: `NAME.tmp`.
fn beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A program to run again: a file, or a finding directory (its
/// `program.yaml` and the title in `description`); also where its
/// minimised form goes (`minimized.yaml` beside the program).
pub fn load(input: &Path) -> Result<(Program, Option<String>, PathBuf)> {
    let (file, title) = if input.is_dir() {
        let title = fs::read_to_string(input.join("description"))
            .map(|s| s.trim().to_string())
            .ok();
        (input.join("program.yaml"), title)
    } else {
        (input.to_path_buf(), None)
    };
    let program = crate::programs::load(&file)?;
    let out = file.with_file_name("minimized.yaml");
    Ok((program, title, out))
}

/// The programs stored before a finding (`DIR/before/*.yaml`, in name
/// order); none when the directory has no `before`.
pub fn load_before(dir: &Path) -> Result<Vec<Program>> {
    let d = dir.join("before");
    if !d.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = fs::read_dir(&d)
        .with_context(|| format!("cannot list {}", d.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.iter().map(|f| crate::programs::load(f)).collect()
}

/// Writes programs (as YAML) as `DIR/000.yaml`, `DIR/001.yaml`, …
/// (replacing what was there).
pub fn write_before(dir: &Path, before: &[String]) -> Result<()> {
    // Written whole beside it, then renamed into place: a reader (or a
    // campaign resumed after a kill) sees the old programs or the new ones.
    let tmp = beside(dir);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot empty {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    for (i, yaml) in before.iter().enumerate() {
        let f = tmp.join(format!("{i:03}.yaml"));
        write_new(&f, yaml.as_bytes()).with_context(|| format!("cannot write {}", f.display()))?;
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    fs::rename(&tmp, dir)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))
}

/// A finding directory `cgstorm replay` and `cgstorm minimize` take, made
/// of a shrunk finding: its program, its title (`description`) and the
/// programs before it, each file written whole.
pub fn write_shrunk(dir: &Path, program_yaml: &str, title: &str, before: &[String]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in [
        ("program.yaml", program_yaml.to_string()),
        ("description", format!("{title}\n")),
    ] {
        let f = dir.join(name);
        write_new(&f, text.as_bytes()).with_context(|| format!("cannot write {}", f.display()))?;
    }
    write_before(&dir.join("before"), before)
}

/// Appends a line to a log file (best effort: logs must not stop a campaign).
pub fn log_line(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        // One write of the whole line (O_APPEND): lines of concurrent
        // writers do not interleave, and a line is not split in two calls.
        let failed = f.write_all(format!("{line}\n").as_bytes()).is_err();
        // A log the disk had no room for at all is not left empty.
        if failed && f.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails (on a full disk, say) leaves no half-written
    /// `.tmp` beside the file it was for.
    #[test]
    fn a_failed_write_leaves_no_temporary() {
        let d = tmp("full");
        let target = d.path().join("sub").join("x.yaml");
        // The directory is missing: the create fails, nothing is left.
        assert!(write_new(&target, b"a").is_err());
        assert!(!beside(&target).exists());
        // The rename fails (the target is a non-empty directory): the
        // temporary, fully written, is removed.
        let blocked = d.path().join("dir");
        fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_new(&blocked, b"a").is_err());
        assert!(!beside(&blocked).exists());
    }

    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("cgstorm-findings-{name}-"))
            .tempdir()
            .unwrap()
    }

    /// A run whose VM kept no console log still stores its finding, with
    /// everything else; no console.log, and no temporary file left.
    #[test]
    fn a_finding_without_a_console_log_is_stored_all_the_same() {
        let guard = tmp("noconsole");
        let w = guard.path().to_path_buf();
        let gone = w.join("never-written.log");
        let (dir, n) = record(
            &w,
            &Record {
                kind: "warning",
                title: "WARNING in evict",
                report: "WARNING: CPU: 0 PID: 1 at fs/inode.c:1 evict",
                console: Some(&gone),
                program: "lanes: []\n",
                context: "now",
            },
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(dir.join("description").exists() && dir.join("program.yaml").exists());
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".lock")
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with(".tmp") && n != "console.log"),
            "{names:?}"
        );
    }

    #[test]
    fn a_finding_is_stored_once_and_counted() {
        let guard = tmp("count");
        let w = guard.path().to_path_buf();
        let console = w.join("console");
        fs::write(&console, "boot\nWARNING: ...\n").unwrap();
        let rec = |ctx| Record {
            kind: "warning",
            title: "WARNING in dax_disassociate_entry",
            report: "WARNING: CPU: 1 PID: 68 at fs/dax.c:380 dax_disassociate_entry",
            console: Some(&console),
            program: "lanes: []\n",
            context: ctx,
        };
        let (dir, n) = record(&w, &rec("first")).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            dir,
            w.join("findings")
                .join(title_hash("WARNING in dax_disassociate_entry"))
        );
        for f in [
            "description",
            "report",
            "console.log",
            "program.yaml",
            "count",
            "seen",
        ] {
            assert!(dir.join(f).exists(), "{f} missing");
        }
        assert_eq!(
            fs::read_to_string(dir.join("description")).unwrap(),
            "WARNING in dax_disassociate_entry\n"
        );
        // A second sighting with another report keeps the first one's files.
        let mut second = rec("second");
        second.report = "other text";
        let (_, n) = record(&w, &second).unwrap();
        assert_eq!(n, 2);
        assert!(fs::read_to_string(dir.join("report"))
            .unwrap()
            .contains("fs/dax.c"));
        assert_eq!(
            fs::read_to_string(dir.join("seen")).unwrap(),
            "first\nsecond\n"
        );
        // Another title is another directory.
        let mut other = rec("x");
        other.title = "possible deadlock in inode_switch_wbs_work_fn";
        let (d2, n) = record(&w, &other).unwrap();
        assert_ne!(d2, dir);
        assert_eq!(n, 1);
    }

    #[test]
    fn concurrent_sightings_are_all_counted() {
        let guard = tmp("concurrent");
        let w = guard.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let ctx = format!("run {i}");
                    record(
                        &w,
                        &Record {
                            kind: "lockdep",
                            title: "possible deadlock in f",
                            report: "r",
                            console: None,
                            program: "p",
                            context: &ctx,
                        },
                    )
                    .unwrap()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let dir = w
            .join("findings")
            .join(title_hash("possible deadlock in f"));
        assert_eq!(fs::read_to_string(dir.join("count")).unwrap(), "8\n");
        assert_eq!(
            fs::read_to_string(dir.join("seen"))
                .unwrap()
                .lines()
                .count(),
            8
        );
    }

    fn named(name: &str) -> Program {
        Program::from_yaml(
            name,
            &format!("name: {name}\nlanes:\n  - {{name: l, ops: [{{mkdir: a}}]}}\n"),
        )
        .unwrap()
    }

    #[test]
    fn stored_programs_load_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let before: Vec<Program> = (0..12).map(|i| named(&format!("p{i}"))).collect();
        let yaml: Vec<String> = before.iter().map(Program::to_yaml).collect();
        write_before(&dir.path().join("before"), &yaml).unwrap();
        let back = load_before(dir.path()).unwrap();
        let names: Vec<String> = back.iter().map(|p| p.name.clone()).collect();
        let want: Vec<String> = (0..12).map(|i| format!("p{i}")).collect();
        assert_eq!(names, want);
        assert!(load_before(&dir.path().join("nothing")).unwrap().is_empty());
        // Written again with fewer: only those, and no temporary left.
        write_before(&dir.path().join("before"), &yaml[..3]).unwrap();
        assert_eq!(load_before(dir.path()).unwrap().len(), 3);
        assert!(!dir.path().join("before.tmp").exists());
    }

    #[test]
    fn a_shrunk_finding_is_a_directory_replay_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = Program::from_yaml(
            "p.yaml",
            "lanes:\n  - name: a\n    ops:\n      - mkdir: a\n",
        )
        .unwrap();
        let d = dir.path().join("shrunk");
        write_shrunk(&d, &p.to_yaml(), "WARNING in f", &[p.to_yaml()]).unwrap();
        let (got, title, _) = load(&d).unwrap();
        assert_eq!(got.to_yaml(), p.to_yaml());
        assert_eq!(title.as_deref(), Some("WARNING in f"));
        assert_eq!(load_before(&d).unwrap().len(), 1);
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporaries left: {left:?}");
    }
}
