//! What the agent observes at a barrier, and whether a model state explains it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::names::{Cg, Dev, FilePath, Hier, Name};
use crate::words::{Ctrl, FsType};

use super::state::{FsId, Life, State};
use super::target::Kernel;

/// The observable state at a barrier, read by the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every cgroup of v2, and of v1 while mounted.
    pub cgroups: BTreeMap<Cg, CgView>,
    /// The program's tasks that the agent has not reaped.
    pub tasks: BTreeMap<Name, TaskView>,
    /// Mount stacks per place, bottom first (from /proc/mounts).
    pub mounts: BTreeMap<Name, Vec<MountView>>,
    /// Regular files visible in each place, with their sizes.
    pub files: BTreeMap<FilePath, u64>,
}

/// One cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgView {
    /// `populated` from cgroup.events (v2), or non-empty cgroup.procs
    /// in the subtree (v1).
    pub populated: bool,
    /// `cgroup.subtree_control` (v2).
    #[serde(default)]
    pub subtree_control: BTreeSet<Ctrl>,
    /// Reclaim counters from `memory.stat` (v2 cgroups with the memory
    /// controller; not compared with the model, read by program `checks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim: Option<ReclaimStat>,
}

/// `pgscan` and `pgsteal` of a v2 cgroup's `memory.stat`: pages scanned and
/// reclaimed in it, by kswapd and by direct and limit reclaim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimStat {
    /// Pages scanned.
    pub pgscan: u64,
    /// Pages reclaimed.
    pub pgsteal: u64,
}

impl ReclaimStat {
    /// Reads the counters from the text of a `memory.stat`; `None` when it
    /// has neither.
    pub fn parse(memory_stat: &str) -> Option<ReclaimStat> {
        let mut r = ReclaimStat::default();
        let mut found = false;
        for line in memory_stat.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            let slot = match k {
                "pgscan" => &mut r.pgscan,
                "pgsteal" => &mut r.pgsteal,
                _ => continue,
            };
            if let Ok(v) = v.parse() {
                *slot = v;
                found = true;
            }
        }
        found.then_some(r)
    }
}

/// One task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Running (not a zombie).
    pub alive: bool,
    /// Its v2 cgroup (from /proc/PID/cgroup).
    pub v2: Cg,
    /// Its v1 memory cgroup, if v1 is mounted.
    pub v1: Option<Cg>,
}

/// One mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountView {
    /// Filesystem type.
    pub fs: FsType,
    /// Device, for ext4/xfs.
    pub dev: Option<Dev>,
    /// Read-only.
    pub ro: bool,
}

/// A place's mounts, bottom first, runs of equal ones counted:
/// `[ramfs x1275, ext4 on pmem0, tmpfs ro]`.
fn stack(mounts: &[MountView]) -> String {
    let one = |m: &MountView| {
        let mut t = m.fs.to_string();
        if let Some(d) = m.dev {
            t.push_str(&format!(" on {d}"));
        }
        if m.ro {
            t.push_str(" ro");
        }
        t
    };
    let mut parts: Vec<(String, usize)> = Vec::new();
    for m in mounts {
        let t = one(m);
        match parts.last_mut() {
            Some((last, n)) if *last == t => *n += 1,
            _ => parts.push((t, 1)),
        }
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(t, n)| if n == 1 { t } else { format!("{t} x{n}") })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// An invariant that holds once a program is over and the guest is put
/// back (tasks killed, filesystems unmounted, cgroups removed, caches
/// dropped). The agent's reset checks exactly the list [`eventual`] gives
/// for its kernel, with these bounds, and the host files a violation as a
/// `leak` finding; a hold named here as legitimate is said, not filed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Eventual {
    /// Once every filesystem of the program is unmounted and every device
    /// it wrote is synced, `Dirty` and `Writeback` in /proc/meminfo (every
    /// memcg's pages: the program's memcgs are gone by then) fall to 0
    /// within this many milliseconds.
    NoDirtyAfterSync {
        /// The bound.
        within_ms: u64,
    },
    /// Removed v2 cgroups are freed: `nr_dying_descendants` in the root's
    /// cgroup.stat falls to 0 within `within_ms` while the caches are
    /// dropped (kernels >= 5.14, which release dying cgwbs). Legitimate:
    /// after loop devices, the cgroups their idle I/O workers served stay
    /// for `loop_workers_hold_ms` (each worker holds its blkcg css).
    NoDyingDescendants {
        /// The bound.
        within_ms: u64,
        /// How long loop devices' idle workers legitimately hold them.
        loop_workers_hold_ms: u64,
    },
    /// An unmounted v1 memory hierarchy goes with its removed cgroups
    /// within this many milliseconds (mounted again and unmounted with no
    /// child left, if it lingers), and memory returns to v2.
    V1MemoryReleased {
        /// The bound.
        within_ms: u64,
    },
    /// No "VFS: Busy inodes after unmount" on the console (the console
    /// reader's, not the reset's).
    NoBusyInodes,
    /// Once the program's pins are released and its mappings and
    /// descriptors gone, no page of a DAX file is referenced: truncating
    /// each DAX file still there (which waits for its pages to be idle,
    /// `dax_layout_busy_page`) returns within this many milliseconds.
    /// Kernels with FS_DAX.
    NoDaxPageReferences {
        /// The bound.
        within_ms: u64,
    },
}

/// How long removed cgroups may take to be freed: generous, as under TCG
/// freeing a memcg's pages takes a while.
pub const DYING_WITHIN_MS: u64 = 20_000;
/// How long dirty or writeback pages may stay accounted after the sync
/// (the per-CPU counters are folded first).
pub const DIRTY_WITHIN_MS: u64 = 3_000;
/// A loop device's idle I/O worker lives this long (6.12's
/// `LOOP_IDLE_WORKER_TIMEOUT`).
pub const LOOP_WORKERS_HOLD_MS: u64 = 60_000;
/// After a program that used loop devices, how long the reset waits for
/// removed cgroups before it names the loop workers' hold (what is still
/// dying then is theirs, or a leak the next program's reset shows).
pub const LOOP_SETTLE_MS: u64 = 3_000;

/// How long a DAX file's pages may stay referenced once every pin is
/// released: an io_uring ring lets its requests go from a worker after
/// its close.
pub const DAX_IDLE_WITHIN_MS: u64 = 5_000;

/// The invariants that hold on a kernel once a program is over.
pub fn eventual(k: &Kernel) -> Vec<Eventual> {
    let mut v = vec![
        Eventual::NoDirtyAfterSync {
            within_ms: DIRTY_WITHIN_MS,
        },
        Eventual::V1MemoryReleased {
            within_ms: DYING_WITHIN_MS,
        },
        Eventual::NoBusyInodes,
    ];
    if k.fs_dax {
        v.push(Eventual::NoDaxPageReferences {
            within_ms: DAX_IDLE_WITHIN_MS,
        });
    }
    if k.releases_dying_cgwbs() {
        v.push(Eventual::NoDyingDescendants {
            within_ms: DYING_WITHIN_MS,
            loop_workers_hold_ms: LOOP_WORKERS_HOLD_MS,
        });
    }
    v
}

fn cg_of(hier: Hier, parts: &[String]) -> Cg {
    Cg {
        hier,
        parts: parts.to_vec(),
    }
}

/// Every way `snap` differs from what `s` allows; empty when `s` explains it.
pub fn mismatches(s: &State, snap: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let mut expect_cgs: Vec<Cg> = s.v2.keys().map(|p| cg_of(Hier::V2, p)).collect();
    if let Some(v1) = s.v1.as_ref().filter(|v| v.mounted) {
        expect_cgs.extend(v1.nodes.keys().map(|p| cg_of(Hier::V1, p)));
    }
    for cg in &expect_cgs {
        let Some(view) = snap.cgroups.get(cg) else {
            out.push(format!("cgroup {cg} should exist but is missing"));
            continue;
        };
        let pop = s.tasks_in(cg, true);
        if !cg.is_root()
            && ((pop == Life::Alive && !view.populated) || (pop == Life::Dead && view.populated))
        {
            out.push(format!(
                "cgroup {cg}: populated is {} but the model says {}",
                view.populated,
                pop == Life::Alive
            ));
        }
        if cg.hier == Hier::V2 {
            let want = &s.v2[&cg.parts].subtree;
            if want != &view.subtree_control {
                out.push(format!(
                    "cgroup {cg}: subtree_control is {:?}, model has {:?}",
                    view.subtree_control, want
                ));
            }
        }
    }
    for cg in snap.cgroups.keys() {
        if !expect_cgs.contains(cg) {
            out.push(format!(
                "cgroup {cg} exists but the model has removed it or never made it"
            ));
        }
    }
    for (name, t) in &s.tasks {
        let seen = snap.tasks.get(name).filter(|v| v.alive);
        match (t.life, seen) {
            (Life::Alive, None) => out.push(format!("task {name} should be running but is gone")),
            (Life::Dead, Some(_)) => out.push(format!("task {name} should be gone but runs")),
            (Life::Alive | Life::Maybe, Some(v)) => {
                let v2 = cg_of(Hier::V2, &t.v2);
                if v.v2 != v2 {
                    out.push(format!("task {name} is in {} but the model has {v2}", v.v2));
                }
                let v1 =
                    t.v1.as_ref()
                        .filter(|_| s.v1.as_ref().is_some_and(|x| x.mounted));
                let v1 = v1.map(|p| cg_of(Hier::V1, p));
                // A task that may be ending (its work done, or killed) may
                // be caught exiting, still running: on a v1 hierarchy the
                // kernel shows an exiting task in the root
                // (`proc_cgroup_show`; a lockdep fuzz, see
                // corpus/regressions/v1-root-of-an-exiting-task).
                let ending = t.life == Life::Maybe || t.maybe_killed;
                let exiting = ending && v.v1 == Some(Cg::root(Hier::V1));
                if v1.is_some() && v.v1 != v1 && !exiting {
                    let shown = |c: &Option<Cg>| c.as_ref().map_or("none".into(), Cg::to_string);
                    out.push(format!(
                        "task {name} is in {} but the model has {}",
                        shown(&v.v1),
                        shown(&v1)
                    ));
                }
            }
            _ => {}
        }
    }
    let places: BTreeSet<&Name> = s.places.keys().chain(snap.mounts.keys()).collect();
    for place in places {
        let want: Vec<MountView> = s
            .places
            .get(place)
            .into_iter()
            .flatten()
            .map(|m| MountView {
                fs: m.fs,
                dev: match m.id {
                    FsId::Dev(d) => Some(d),
                    _ => None,
                },
                ro: m.ro,
            })
            .collect();
        let got = snap.mounts.get(place).cloned().unwrap_or_default();
        if want != got {
            out.push(format!(
                "mounts at {place}: {}, model has {}",
                stack(&got),
                stack(&want)
            ));
        }
    }
    out.extend(file_mismatches(s, snap));
    out
}

fn file_mismatches(s: &State, snap: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    let mut places: BTreeSet<Name> = snap.files.keys().map(|f| f.place.clone()).collect();
    places.extend(s.files.keys().filter_map(|(fs, _)| match fs {
        FsId::Base(p) | FsId::Anon(p, _) => Some(p.clone()),
        FsId::Dev(_) => None,
    }));
    places.extend(s.places.keys().cloned());
    for place in places {
        let fs = match s.top(&place) {
            Some((_, m)) => m.id.clone(),
            None => FsId::Base(place.clone()),
        };
        for ((f, name), st) in &s.files {
            if f != &fs {
                continue;
            }
            let path = FilePath {
                place: place.clone(),
                name: name.clone(),
            };
            match (st.exists, snap.files.get(&path)) {
                (Life::Alive, None) => out.push(format!("file {path} should exist")),
                (Life::Dead, Some(_)) => out.push(format!("file {path} should not exist")),
                (_, Some(&size)) if size < st.size.lo || size > st.size.hi => out.push(format!(
                    "file {path} has size {size}, model allows {}..={}",
                    st.size.lo, st.size.hi
                )),
                _ => {}
            }
        }
        for path in snap.files.keys().filter(|p| p.place == place) {
            if s.file(&fs, &path.name).is_none() {
                out.push(format!("file {path} exists but the model has no such file"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{Dev, DevKind};

    #[test]
    fn mount_stacks_are_shown_with_runs_counted() {
        let m = |fs, dev, ro| MountView { fs, dev, ro };
        let pmem0 = Some(Dev {
            kind: DevKind::Pmem,
            index: 0,
        });
        let mut v = vec![m(FsType::Ramfs, None, false); 3];
        v.push(m(FsType::Ext4, pmem0, false));
        v.push(m(FsType::Tmpfs, None, true));
        assert_eq!(stack(&v), "[ramfs x3, ext4 on pmem0, tmpfs ro]");
        assert_eq!(stack(&[]), "[]");
    }
}
