//! Corpus exchange between the shards of a fleet, through a shared
//! directory (a network filesystem), in the spirit of syzkaller's hub: each
//! campaign publishes the programs its corpus keeps into its own
//! subdirectory, and now and then takes the programs the others published.
//! A taken program is only run: it joins this campaign's corpus if it
//! shows something new here, like any other. Files are written under a
//! dot name and renamed, so a half-written program is never read; names
//! are content hashes, so a program is taken once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cgstorm_workloads::Program;

/// How often a campaign looks for the other shards' programs.
pub const PULL_EVERY: Duration = Duration::from_secs(30);

/// A campaign's end of the exchange.
pub struct Exchange {
    /// The shared directory.
    dir: PathBuf,
    /// This campaign's subdirectory's name.
    me: String,
    /// Where the names taken are kept, one a line (in the workdir).
    seen_file: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Files (`shard/name`) already taken or found bad; also in
    /// [`Exchange::seen_file`], so a resumed campaign does not take them
    /// again.
    seen: HashSet<String>,
    /// When the shared directory was last read (`None`: never).
    pulled: Option<Instant>,
}

impl Exchange {
    /// Joins the exchange in `dir` as `me` (a shard's name:
    /// `seed-7-shard-1-of-4`), remembering what it took in `seen_file`.
    pub fn join(dir: &Path, me: &str, seen_file: &Path) -> Result<Exchange> {
        let own = dir.join(me);
        std::fs::create_dir_all(&own)
            .with_context(|| format!("cannot create the exchange directory {}", own.display()))?;
        let seen = std::fs::read_to_string(seen_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        Ok(Exchange {
            dir: dir.to_path_buf(),
            me: me.to_string(),
            seen_file: seen_file.to_path_buf(),
            inner: Mutex::new(Inner { seen, pulled: None }),
        })
    }

    /// Publishes a kept program as `name` (a content hash with `.yaml`).
    pub fn publish(&self, name: &str, yaml: &str) -> std::io::Result<()> {
        let own = self.dir.join(&self.me);
        let tmp = own.join(format!(".{name}.{}", std::process::id()));
        let written =
            std::fs::write(&tmp, yaml).and_then(|()| std::fs::rename(&tmp, own.join(name)));
        if written.is_err() {
            // A full disk leaves no half-written temporary behind.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The other shards' programs not taken yet, if [`PULL_EVERY`] has
    /// passed since the last look (or `now`); programs that do not parse
    /// are skipped (once, with a warning).
    pub fn pull(&self, now: bool) -> Vec<Program> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !now && inner.pulled.is_some_and(|t| t.elapsed() < PULL_EVERY) {
            return Vec::new();
        }
        inner.pulled = Some(Instant::now());
        let mut out = Vec::new();
        let Ok(shards) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        let mut shards: Vec<PathBuf> = shards.flatten().map(|e| e.path()).collect();
        shards.sort();
        for shard in shards {
            let Some(sname) = shard.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if sname == self.me || sname.starts_with('.') || !shard.is_dir() {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&shard) else {
                continue;
            };
            let mut files: Vec<PathBuf> = files.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let Some(fname) = f.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                if fname.starts_with('.') || !fname.ends_with(".yaml") {
                    continue;
                }
                let key = format!("{sname}/{fname}");
                if !inner.seen.insert(key.clone()) {
                    continue;
                }
                // Best effort: at worst a resumed campaign runs it once more.
                crate::findings::log_line(&self.seen_file, &key);
                match crate::programs::load(&f) {
                    Ok(mut p) => {
                        p.name = format!("hub-{sname}-{}", fname.trim_end_matches(".yaml"));
                        out.push(p);
                    }
                    Err(e) => eprintln!(
                        "cgstorm: exchange: {} is not a program, skipped: {e:#}",
                        f.display()
                    ),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "lanes:\n  - {name: a, ops: [{mkdir: a}, {rmdir: a}]}\n";

    /// What one shard publishes, another takes once; nobody takes its own;
    /// a file being written (a dot name) or not a program is not taken.
    #[test]
    fn shards_take_each_others_programs_once() {
        let dir = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let seen_b = work.path().join("b.seen");
        let a = Exchange::join(dir.path(), "shard-0-of-2", &work.path().join("a.seen")).unwrap();
        let b = Exchange::join(dir.path(), "shard-1-of-2", &seen_b).unwrap();
        a.publish("0123.yaml", P).unwrap();
        std::fs::write(dir.path().join("shard-0-of-2/.4567.yaml.99"), "lanes: [").unwrap();
        std::fs::write(dir.path().join("shard-0-of-2/bad.yaml"), "lanes: 7").unwrap();
        assert!(a.pull(true).is_empty(), "not its own");
        let got = b.pull(true);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].name, "hub-shard-0-of-2-0123");
        assert_eq!(got[0].lanes.len(), 1);
        assert!(b.pull(true).is_empty(), "taken once");
        a.publish("89ab.yaml", P).unwrap();
        assert!(b.pull(false).is_empty(), "not before PULL_EVERY");
        assert_eq!(b.pull(true).len(), 1);
        // Resumed, b does not take them again; a fresh shard does.
        let b = Exchange::join(dir.path(), "shard-1-of-2", &seen_b).unwrap();
        assert!(
            b.pull(true).is_empty(),
            "a resumed shard takes nothing twice"
        );
        let c = Exchange::join(dir.path(), "shard-2-of-3", &work.path().join("c.seen")).unwrap();
        assert_eq!(c.pull(true).len(), 2, "a's two programs, and nothing else");
        // No leftovers of the atomic write.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("shard-0-of-2"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".0123") || n.starts_with(".89ab"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
