//! The model's picture of the kernel: cgroups, tasks, devices, mounts, files.
//!
//! What the model cannot know for certain (whether a task the OOM killer may
//! have hit is still alive, how large a file a running writer truncates is)
//! is kept as a [`Life::Maybe`] or a size range, so predictions stay sound.

use std::collections::{BTreeMap, BTreeSet};

use crate::names::{Cg, Dev, DevKind, FilePath, Hier, Name};
use crate::words::{BlockFs, Ctrl, FsType};

use super::target::Target;

/// Whether something is alive / exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Life {
    /// Certainly.
    Alive,
    /// It may have ended on its own or been killed; the model cannot tell.
    Maybe,
    /// Certainly not.
    Dead,
}

/// A cgroup in either hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct CgNode {
    /// Controllers enabled in `cgroup.subtree_control` (v2 only).
    pub subtree: BTreeSet<Ctrl>,
    /// The memory limit (`memory.max` or v1 `memory.limit_in_bytes`), `None` for max.
    pub limit: Option<u64>,
    /// Some task has been in it, so it may hold charges.
    pub charged: bool,
}

/// The cgroup v1 memory hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct V1 {
    /// Mounted at the agent's v1 place (it lingers unmounted while it has children).
    pub mounted: bool,
    /// Its cgroups, keyed by path components (root: empty).
    pub nodes: BTreeMap<Vec<String>, CgNode>,
}

/// What a task does, as far as the model cares.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TaskClass {
    /// Sleeps until killed.
    Sleeper,
    /// Writes a file, once or in a loop.
    Writer {
        /// The file.
        file: FilePath,
        /// Bytes per pass.
        bytes: u64,
        /// Loops until killed.
        looped: bool,
    },
    /// Reads a file.
    Reader {
        /// Loops until killed.
        looped: bool,
    },
    /// Holds memory until killed.
    Hog {
        /// How much.
        bytes: u64,
    },
}

impl TaskClass {
    /// Whether the task ends on its own.
    pub fn ends_alone(&self) -> bool {
        match self {
            TaskClass::Writer { looped, .. } | TaskClass::Reader { looped } => !looped,
            _ => false,
        }
    }
}

/// A task the program spawned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    /// What it does.
    pub class: TaskClass,
    /// Running, maybe running, or certainly not running (exited or reaped).
    pub life: Life,
    /// Exited but not yet reaped: `life` is `Dead`, yet the name stays
    /// taken (the agent reaps only in `kill` and `wait`), so `kill` and
    /// `wait` still find it and `spawn` of the name is EEXIST. Known only
    /// when a `rmdir` of its cgroup succeeded while it was `Maybe`.
    pub zombie: bool,
    /// Its v2 cgroup.
    pub v2: Vec<String>,
    /// Its v1 memory cgroup while a v1 hierarchy exists.
    pub v1: Option<Vec<String>>,
    /// A signal may have killed it (OOM killer, cgroup.kill).
    pub maybe_killed: bool,
    /// The mount its open file went through, if it holds one.
    pub holds: Option<MountRef>,
    /// The file it writes (writers and file hogs), by filesystem and name.
    pub writes: Option<(FsId, Name)>,
}

impl Task {
    /// Whether the agent still has it under its name (running, or a zombie
    /// not reaped yet): what `spawn`, `kill` and `wait` look at.
    pub fn named(&self) -> bool {
        self.life != Life::Dead || self.zombie
    }
}

/// A mount on a place's stack, named by place and stack depth.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MountRef {
    /// The place.
    pub place: Name,
    /// 0 for the first mount on the place.
    pub depth: usize,
}

/// A filesystem instance files live in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FsId {
    /// The agent's tmpfs directory for the place, under every mount.
    Base(Name),
    /// The filesystem on a block device (it outlives its mounts).
    Dev(Dev),
    /// A tmpfs or ramfs instance: mounted at a place, the n-th mount there.
    Anon(Name, u16),
}

/// One mount on a place.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mount {
    /// Its type.
    pub fs: FsType,
    /// The filesystem it shows.
    pub id: FsId,
    /// Read-only.
    pub ro: bool,
    /// Files on it are DAX (ext4/xfs with dax on a pmem device).
    pub dax: bool,
    /// Mounted with `dax=inode` (files are not DAX unless flagged).
    pub dax_inode: bool,
}

/// A block device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// Size in bytes.
    pub size: u64,
    /// The filesystem mkfs made on it, if any.
    pub fs: Option<BlockFs>,
    /// How many mounts use it.
    pub mounts: usize,
    /// A loop device detached while mounted: it goes away with its last mount.
    pub detach_pending: bool,
    /// For loop devices: the mount the backing file went through.
    pub backing: Option<MountRef>,
    /// A lazily unmounted filesystem on it may still be held open.
    pub lazy_refs: bool,
    /// Detached while mounted and now unmounted: the kernel clears it when
    /// its last opener closes, which may be later than the umount (udev
    /// opens new block devices briefly), so it may or may not still exist.
    pub clearing: bool,
    /// Unmounted by a plain `umount` that has not returned yet: the mount
    /// leaves the namespace first and the superblock is shut down after
    /// (`cleanup_mnt` as the syscall returns), so until then an exclusive
    /// open (mkfs) may find the device busy. Cleared at the step's end,
    /// when every op of the step has returned ([`State::settle`]).
    pub releasing: bool,
}

/// A file's size, exact or a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SizeRange {
    /// Smallest possible size.
    pub lo: u64,
    /// Largest possible size.
    pub hi: u64,
}

impl SizeRange {
    /// An exact size.
    pub fn exact(n: u64) -> SizeRange {
        SizeRange { lo: n, hi: n }
    }

    /// Every size either range allows (and those between).
    pub fn union(self, o: SizeRange) -> SizeRange {
        SizeRange {
            lo: self.lo.min(o.lo),
            hi: self.hi.max(o.hi),
        }
    }
}

/// A file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileSt {
    /// Whether it exists in its directory.
    pub exists: Life,
    /// Its size.
    pub size: SizeRange,
    /// For a loop device's backing file: the filesystem mkfs made in it.
    pub image: Option<BlockFs>,
}

/// An open descriptor (`open` op).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fd {
    /// The filesystem.
    pub fs: FsId,
    /// The file's name there.
    pub file: Name,
    /// The mount it was opened through (`None` once that mount is detached).
    pub via: Option<MountRef>,
    /// The file is DAX.
    pub dax: bool,
    /// Opened O_DIRECT.
    pub direct: bool,
    /// The size of its inode once the name was unlinked (`None` while the
    /// name still refers to it): a file created later under the same name
    /// is another inode.
    pub unlinked: Option<SizeRange>,
}

/// A mapping (`mmap` op).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Map {
    /// The filesystem of the mapped file.
    pub fs: FsId,
    /// The file.
    pub file: Name,
    /// The mount the file was opened through.
    pub via: Option<MountRef>,
    /// DAX pages.
    pub dax: bool,
    /// Length in bytes.
    pub len: u64,
    /// As [`Fd::unlinked`].
    pub unlinked: Option<SizeRange>,
}

/// Page references held by a `pin` op until `release`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pin {
    /// The mount of the O_DIRECT peer file (AIO and io_uring keep it open).
    pub peer: Option<MountRef>,
    /// Whether the release can report an I/O error (the outcome of the async I/O).
    pub may_fault: bool,
    /// An async write's peer file and the least size it had before: a
    /// write reaped with an error extends nothing (ext4's and xfs's
    /// direct-I/O end_io return before they move i_size), so that is the
    /// least it keeps then.
    pub writes: Option<((FsId, Name), u64)>,
}

/// Everything the model tracks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// cgroup v2, keyed by path components (root: empty).
    pub v2: BTreeMap<Vec<String>, CgNode>,
    /// The v1 memory hierarchy, if it exists.
    pub v1: Option<V1>,
    /// A v2 memory cgroup may still be dying (its css pins memory on v2).
    pub memcg_dying: bool,
    /// The v1 hierarchy was unmounted empty and is being destroyed: until
    /// its dying descendants are freed, memory may still be bound to v1.
    pub v1_dying: bool,
    /// Spawned tasks.
    pub tasks: BTreeMap<Name, Task>,
    /// Block devices.
    pub devices: BTreeMap<Dev, Device>,
    /// Mount stacks per place (last is on top).
    pub places: BTreeMap<Name, Vec<Mount>>,
    /// How many mounts each place has seen (names tmpfs instances).
    pub gens: BTreeMap<Name, u16>,
    /// Files by filesystem and name.
    pub files: BTreeMap<(FsId, Name), FileSt>,
    /// Open descriptors.
    pub fds: BTreeMap<Name, Fd>,
    /// Mappings.
    pub maps: BTreeMap<Name, Map>,
    /// Held pins.
    pub pins: BTreeMap<Name, Pin>,
}

impl State {
    /// The state right after the agent starts: only the v2 root, nothing
    /// enabled, the VM's scratch and pmem devices unformatted.
    pub fn initial(target: &Target) -> State {
        let m = &target.machine;
        let mut devices = BTreeMap::new();
        for i in 0..m.scratch_disks.min(8) {
            devices.insert(dev(DevKind::Scratch, i), Device::blank(m.scratch_size.0));
        }
        for i in 0..m.pmem_devices.min(8) {
            devices.insert(dev(DevKind::Pmem, i), Device::blank(m.pmem_size.0));
        }
        State {
            v2: BTreeMap::from([(Vec::new(), CgNode::default())]),
            v1: None,
            memcg_dying: false,
            v1_dying: false,
            tasks: BTreeMap::new(),
            devices,
            places: BTreeMap::new(),
            gens: BTreeMap::new(),
            files: BTreeMap::new(),
            fds: BTreeMap::new(),
            maps: BTreeMap::new(),
            pins: BTreeMap::new(),
        }
    }

    /// The nodes of a hierarchy, if it is reachable (v1 only while mounted).
    pub fn nodes(&self, hier: Hier) -> Option<&BTreeMap<Vec<String>, CgNode>> {
        match hier {
            Hier::V2 => Some(&self.v2),
            Hier::V1 => self.v1.as_ref().filter(|v| v.mounted).map(|v| &v.nodes),
        }
    }

    /// Mutable nodes of a hierarchy, if reachable.
    pub fn nodes_mut(&mut self, hier: Hier) -> Option<&mut BTreeMap<Vec<String>, CgNode>> {
        match hier {
            Hier::V2 => Some(&mut self.v2),
            Hier::V1 => self.v1.as_mut().filter(|v| v.mounted).map(|v| &mut v.nodes),
        }
    }

    /// Whether a cgroup exists and is reachable.
    pub fn cg_exists(&self, cg: &Cg) -> bool {
        self.nodes(cg.hier)
            .is_some_and(|n| n.contains_key(&cg.parts))
    }

    /// The node of a reachable cgroup.
    pub fn node(&self, cg: &Cg) -> Option<&CgNode> {
        self.nodes(cg.hier)?.get(&cg.parts)
    }

    /// Where a task sits in a hierarchy.
    pub fn task_cg(&self, t: &Task, hier: Hier) -> Option<Vec<String>> {
        match hier {
            Hier::V2 => Some(t.v2.clone()),
            Hier::V1 => t.v1.clone(),
        }
    }

    /// Liveness of tasks in `cg` (directly, or in its subtree when `subtree`).
    pub fn tasks_in(&self, cg: &Cg, subtree: bool) -> Life {
        let mut best = Life::Dead;
        for t in self.tasks.values() {
            let Some(at) = self.task_cg(t, cg.hier) else {
                continue;
            };
            let inside = if subtree {
                at.starts_with(&cg.parts)
            } else {
                at == cg.parts
            };
            if inside {
                best = best.min(t.life);
            }
        }
        best
    }

    /// Whether some live child of `cg` is populated (v2).
    pub fn populated_children(&self, cg: &Cg) -> Life {
        let mut best = Life::Dead;
        for path in self.v2.keys() {
            if path.len() == cg.parts.len() + 1 && path.starts_with(&cg.parts) {
                let child = Cg {
                    hier: Hier::V2,
                    parts: path.clone(),
                };
                best = best.min(self.tasks_in(&child, true));
            }
        }
        best
    }

    /// Whether `cg` has child cgroups.
    pub fn has_children(&self, cg: &Cg) -> bool {
        self.nodes(cg.hier).is_some_and(|n| {
            n.keys()
                .any(|p| p.len() == cg.parts.len() + 1 && p.starts_with(&cg.parts))
        })
    }

    /// The controllers in `cg`'s `cgroup.controllers` (v2).
    pub fn controllers(&self, cg: &Cg, target: &Target) -> BTreeSet<Ctrl> {
        match cg.parent() {
            Some(p) => self.node(&p).map(|n| n.subtree.clone()).unwrap_or_default(),
            None => {
                let k = &target.kernel;
                let mut s = BTreeSet::new();
                if self.v1.is_none() {
                    s.insert(Ctrl::Memory);
                }
                if k.io_controller {
                    s.insert(Ctrl::Io);
                }
                if k.pids_controller {
                    s.insert(Ctrl::Pids);
                }
                s
            }
        }
    }

    /// The top mount of a place.
    pub fn top(&self, place: &Name) -> Option<(MountRef, &Mount)> {
        let stack = self.places.get(place)?;
        let m = stack.last()?;
        Some((
            MountRef {
                place: place.clone(),
                depth: stack.len() - 1,
            },
            m,
        ))
    }

    /// The filesystem a file path resolves to, the mount it goes through, and that mount.
    pub fn resolve(&self, f: &FilePath) -> (FsId, Option<MountRef>, Option<&Mount>) {
        match self.top(&f.place) {
            Some((r, m)) => (m.id.clone(), Some(r), Some(m)),
            None => (FsId::Base(f.place.clone()), None, None),
        }
    }

    /// A file's state.
    pub fn file(&self, fs: &FsId, name: &Name) -> Option<&FileSt> {
        self.files.get(&(fs.clone(), name.clone()))
    }

    /// The state at a barrier: every op of the step has returned, so what
    /// lasts only while an op runs is over.
    pub fn settle(mut self) -> State {
        for d in self.devices.values_mut() {
            d.releasing = false;
        }
        self
    }
}

impl Device {
    fn blank(size: u64) -> Device {
        Device {
            size,
            fs: None,
            mounts: 0,
            detach_pending: false,
            backing: None,
            lazy_refs: false,
            clearing: false,
            releasing: false,
        }
    }

    /// A fresh loop device over a backing file.
    pub fn looped(size: u64, fs: Option<BlockFs>, backing: Option<MountRef>) -> Device {
        Device {
            backing,
            fs,
            ..Device::blank(size)
        }
    }
}

fn dev(kind: DevKind, index: u8) -> Dev {
    Dev { kind, index }
}

impl State {
    /// Internal consistency: what must hold in every state the model reaches.
    /// Empty when consistent; the `model` fuzz target asserts it.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.v2.contains_key(&Vec::new()) {
            out.push("the v2 root is gone".into());
        }
        for path in self
            .v2
            .keys()
            .chain(self.v1.iter().flat_map(|v| v.nodes.keys()))
        {
            if let Some((_, parent)) = path.split_last() {
                let in_v2 = self.v2.contains_key(path);
                let nodes = if in_v2 {
                    &self.v2
                } else {
                    &self.v1.as_ref().expect("v1 path").nodes
                };
                if !nodes.contains_key(parent) {
                    out.push(format!("cgroup {path:?} has no parent"));
                }
            }
        }
        for (name, t) in &self.tasks {
            if t.life == Life::Dead {
                continue;
            }
            if !self.v2.contains_key(&t.v2) {
                out.push(format!("live task {name} is in removed cgroup {:?}", t.v2));
            }
            match (&self.v1, &t.v1) {
                (Some(v1), Some(p)) if !v1.nodes.contains_key(p) => {
                    out.push(format!("live task {name} is in removed v1 cgroup {p:?}"))
                }
                (Some(_), None) => out.push(format!("task {name} has no v1 cgroup")),
                (None, Some(_)) => {
                    out.push(format!("task {name} is in a v1 hierarchy that is gone"))
                }
                _ => {}
            }
        }
        for (d, dev) in &self.devices {
            let n = self
                .places
                .values()
                .flatten()
                .filter(|m| m.id == FsId::Dev(*d))
                .count();
            if n != dev.mounts {
                out.push(format!(
                    "{d}: {} mounts counted, {n} on the stacks",
                    dev.mounts
                ));
            }
        }
        for (place, stack) in &self.places {
            if stack.is_empty() {
                out.push(format!("{place}: empty mount stack kept"));
            }
            for m in stack {
                if let FsId::Dev(d) = &m.id {
                    if !self.devices.contains_key(d) {
                        out.push(format!("{place}: mounted device {d} is gone"));
                    }
                }
            }
        }
        for (name, f) in &self.fds {
            if let Some(r) = &f.via {
                if self.top_at(r).is_none() {
                    out.push(format!("fd {name} goes through a mount that is gone"));
                }
            }
        }
        out
    }

    fn top_at(&self, r: &MountRef) -> Option<&Mount> {
        self.places.get(&r.place)?.get(r.depth)
    }
}
