//! The observed state at a barrier: cgroups, tasks, mounts and files, read
//! from cgroupfs, /proc and the places, in the model's terms.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cgstorm_workloads::model::snapshot::{CgView, MountView, ReclaimStat, TaskView};
use cgstorm_workloads::model::Snapshot;
use cgstorm_workloads::words::FsType;
use cgstorm_workloads::{Cg, Dev, DevKind, FilePath, Hier, Name};

use super::paths;
use super::tasks::{cgroups_of, running};
use super::world::World;

/// Reads the snapshot. Names a program cannot write (e.g. `init.scope`,
/// `lost+found`) are left out: they are not the program's.
pub fn take(w: &World) -> Snapshot {
    let mut s = Snapshot::default();
    walk_v2(Path::new(paths::CG2), &Cg::root(Hier::V2), &mut s.cgroups);
    let v1_mounted = mounts().iter().any(|m| m.target == paths::CG1);
    if v1_mounted {
        walk_v1(Path::new(paths::CG1), &Cg::root(Hier::V1), &mut s.cgroups);
    }
    for (name, t) in w.tasks().iter() {
        let pid = t.child.id();
        let Some((v2, v1)) = cgroups_of(pid) else {
            continue;
        };
        let parse = |prefix: &str, p: &str| {
            format!("{prefix}{}", p.trim_start_matches('/'))
                .parse::<Cg>()
                .ok()
        };
        let Some(v2) = parse("", &v2) else { continue };
        s.tasks.insert(
            name.clone(),
            TaskView {
                alive: running(pid),
                v2,
                v1: if v1_mounted {
                    v1.and_then(|p| parse("v1:", &p))
                } else {
                    None
                },
            },
        );
    }
    let loops: BTreeMap<String, Dev> = w
        .loops()
        .iter()
        .map(|(i, p)| {
            (
                p.display().to_string(),
                Dev {
                    kind: DevKind::Loop,
                    index: *i,
                },
            )
        })
        .collect();
    for m in mounts() {
        let Some(place) = m.target.strip_prefix(&format!("{}/", paths::PLACES)) else {
            continue;
        };
        let (Ok(place), Ok(fs)) = (place.parse::<Name>(), m.fstype.parse::<FsType>()) else {
            continue;
        };
        let dev = device_name(&m.source, &loops);
        s.mounts.entry(place).or_default().push(MountView {
            fs,
            dev: if fs.needs_device() { dev } else { None },
            ro: m.ro,
        });
    }
    if let Ok(dir) = std::fs::read_dir(paths::PLACES) {
        for place in dir.flatten() {
            let Ok(pname) = place.file_name().to_string_lossy().parse::<Name>() else {
                continue;
            };
            let Ok(files) = std::fs::read_dir(place.path()) else {
                continue;
            };
            for f in files.flatten() {
                let Ok(meta) = f.metadata() else { continue };
                let Ok(fname) = f.file_name().to_string_lossy().parse::<Name>() else {
                    continue;
                };
                if meta.is_file() {
                    s.files.insert(
                        FilePath {
                            place: pname.clone(),
                            name: fname,
                        },
                        meta.size(),
                    );
                }
            }
        }
    }
    s
}

fn children(dir: &Path, cg: &Cg) -> Vec<(std::path::PathBuf, Cg)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Only names a program can write.
            name.parse::<Name>().ok()?;
            Some((e.path(), cg.child(&name)))
        })
        .collect()
}

fn walk_v2(dir: &Path, cg: &Cg, out: &mut BTreeMap<Cg, CgView>) {
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
    let populated = events.lines().any(|l| l.trim() == "populated 1");
    let subtree_control = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    // For program checks (reclaim progress); absent without the memory controller.
    let reclaim = std::fs::read_to_string(dir.join("memory.stat"))
        .ok()
        .and_then(|t| ReclaimStat::parse(&t));
    out.insert(
        cg.clone(),
        CgView {
            populated,
            subtree_control,
            reclaim,
        },
    );
    for (path, child) in children(dir, cg) {
        walk_v2(&path, &child, out);
    }
}

/// v1 has no cgroup.events: populated means a task in the subtree.
fn walk_v1(dir: &Path, cg: &Cg, out: &mut BTreeMap<Cg, CgView>) -> bool {
    let mut populated =
        std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty());
    for (path, child) in children(dir, cg) {
        populated |= walk_v1(&path, &child, out);
    }
    out.insert(
        cg.clone(),
        CgView {
            populated,
            subtree_control: Default::default(),
            reclaim: None,
        },
    );
    populated
}

struct MountLine {
    source: String,
    target: String,
    fstype: String,
    ro: bool,
}

/// /proc/self/mountinfo in mount order (a stack's bottom first).
fn mounts() -> Vec<MountLine> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(MountLine {
                target: unescape(f.get(4)?),
                // Per-mount ro (bind remounts) or a read-only superblock (remount).
                ro: f.get(5)?.split(',').any(|o| o == "ro")
                    || r.get(2).is_some_and(|o| o.split(',').any(|o| o == "ro")),
                fstype: r.first()?.to_string(),
                source: unescape(r.get(1)?),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn device_name(source: &str, loops: &BTreeMap<String, Dev>) -> Option<Dev> {
    if let Some(d) = loops.get(source) {
        return Some(*d);
    }
    let name = source.strip_prefix("/dev/")?;
    if let Some(rest) = name.strip_prefix("vd") {
        let c = rest.bytes().next()?;
        return Some(Dev {
            kind: DevKind::Scratch,
            index: c.checked_sub(b'a')?,
        });
    }
    if let Some(rest) = name.strip_prefix("pmem") {
        return Some(Dev {
            kind: DevKind::Pmem,
            index: rest.parse().ok()?,
        });
    }
    None
}
