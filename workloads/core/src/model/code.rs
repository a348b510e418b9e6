//! Lanes compiled into per-step instruction lists the explorer can step through.

use std::collections::BTreeSet;

use crate::names::{Cg, Dev, FilePath, Hier, Name};
use crate::op::{Op, OpSpec, Times};
use crate::program::{OpId, Program};
use crate::words::Ctrl;

/// Repeats with a count up to this are followed exactly.
pub const EXACT_REPEATS: u32 = 16;
/// Larger counts and durations are predicted as 1 to this many passes.
/// (Only prediction is bounded: `verify` follows a real run's passes exactly.)
pub const BOUNDED_PASSES: u32 = 3;

/// One instruction of a lane's step.
#[derive(Clone, Debug)]
pub enum Instr<'p> {
    /// Run an op.
    Op(OpId, &'p Op),
    /// Start a repeat (its own op id reports `ok`); the body follows.
    Enter(OpId, usize),
    /// End of a repeat body at nesting `depth`; `start` is the Enter's index.
    Loop {
        /// The Enter instruction's index.
        start: usize,
        /// Nesting depth (0 for the outermost repeat).
        depth: usize,
        /// How often the body runs.
        times: Times,
    },
}

/// What the other lanes of a step do that an op of one lane may run into
/// halfway: the op is atomic for the model, but the kernel (or the agent)
/// runs it in several steps, between which these can happen.
#[derive(Clone, Debug, Default)]
pub struct Racing {
    /// cgroups another lane may remove: a write to one of their files can
    /// find it gone between `open` and `write` (ENODEV).
    pub rmdirs: BTreeSet<Cg>,
    /// Devices another lane may attach, detach, format or mount: a mount or
    /// mkfs is many steps, and one of those racing it can make it fail
    /// midway (EIO, EINVAL, or EBUSY from an exclusive open).
    pub loops: BTreeSet<Dev>,
    /// Files another lane may write or truncate: a write creates and
    /// truncates its file when it starts and extends it until it ends, so
    /// with another writer or truncate in between, the size the file is
    /// left with is that of any of them.
    pub files: BTreeSet<FilePath>,
    /// Places another lane walks a path through (file ops, mounts, umounts
    /// and remounts there): while the walk holds the place's top mount, a
    /// plain `umount` of it is EBUSY.
    pub places: BTreeSet<Name>,
    /// Places another lane unmounts, lazily or not: an `umount` that looked
    /// up the top mount before the other took it off finds it gone from
    /// the namespace (EINVAL), though mounts may remain below it.
    pub unmounts: BTreeSet<Name>,
    /// Places another lane lazily unmounts: a `mount` or `remount` there
    /// that looked the place up before it was detached finds its mount out
    /// of the namespace (`check_mnt`: EINVAL).
    pub detaches: BTreeSet<Name>,
    /// Places of files another lane holds write access to for the length of
    /// an op (`write` keeps its file open for writing while it writes;
    /// `truncate`, `unlink`, a creating `open`, a writer's `spawn` take
    /// `mnt_want_write`): a `remount -o ro` of their mount in the meantime
    /// finds a writer (`sb_prepare_remount_readonly`: EBUSY).
    pub write_access: BTreeSet<Name>,
    /// Places another lane mounts on: a mount stacked on the top mount an
    /// `umount_lazy` looked up, before it detaches that mount, goes with
    /// it (`umount_tree` takes the mount and everything mounted on it).
    pub mounts: BTreeSet<Name>,
    /// Another lane walks a path into the v1 hierarchy (an op on a `v1:`
    /// cgroup, a task spawned into one): while the walk holds the
    /// hierarchy's mount, `v1_umount` finds it busy (`do_umount`: EBUSY),
    /// and the hierarchy stays mounted.
    pub v1_walks: bool,
    /// Another lane may take the memory controller's files off v2 cgroups:
    /// `v1_mount` binds memory to v1 (off every v2 cgroup, the root's
    /// `memory.stat` and `memory.reclaim` too), a `cgroup.subtree_control`
    /// with `-memory` (or `-io`, which implies memory) takes them off the
    /// children. A read or write of one that opened it before finds the
    /// file gone when it reads or writes (kernfs, `kernfs_get_active`:
    /// ENODEV).
    pub memory_files: bool,
    /// cgroups another lane kills (`cgroup.kill`): a task spawned into one
    /// of them, or below, may be killed after it joined and before its
    /// setup is over, so the spawn comes back `killed`.
    pub kills: BTreeSet<Cg>,
    /// Tasks another lane kills (`kill`): the agent takes the name off,
    /// then sends SIGKILL and reaps the task, so meanwhile the name is gone
    /// (ESRCH) while the exiting task still populates its cgroup, whose
    /// `rmdir` is EBUSY until it has exited.
    pub ends: BTreeSet<Name>,
    /// Places another lane remounts read-only: a creating `open` makes the
    /// file with write access to the mount (`open_last_lookups`), drops it,
    /// and takes it again for the open file (`do_dentry_open`); a remount
    /// in between makes the open fail with EROFS and leaves the new, empty
    /// file.
    pub remounts_ro: BTreeSet<Name>,
    /// Mappings another lane makes: the agent's `mmap` takes its
    /// descriptor when it starts and names the mapping only when the
    /// system call returns, so a `touch`, `pin` or `munmap` of that name
    /// while it runs finds no such mapping (EINVAL) though the `mmap`
    /// began before a `close` of its descriptor that came before them.
    pub mmaps: BTreeSet<Name>,
}

/// The program as instruction lists: `steps[step][lane]`, plus for each
/// step and lane what the other lanes may do concurrently.
#[derive(Debug)]
pub struct Code<'p> {
    /// Instructions.
    pub steps: Vec<Vec<Vec<Instr<'p>>>>,
    /// `racing[step][lane]`: what other lanes of the step may do meanwhile.
    pub racing: Vec<Vec<Racing>>,
    /// The ops that carry `fail_nth`: a fault may be injected into them.
    pub faulted: BTreeSet<OpId>,
}

impl<'p> Code<'p> {
    /// Compiles a program.
    pub fn new(p: &'p Program) -> Code<'p> {
        let nsteps = p.steps();
        let mut steps = vec![vec![Vec::new(); p.lanes.len()]; nsteps];
        for (li, lane) in p.lanes.iter().enumerate() {
            let mut step = 0;
            let mut next_id = 0;
            for s in &lane.ops {
                if s.op == Op::Barrier {
                    next_id += 1;
                    step += 1;
                    continue;
                }
                compile(li, s, &mut next_id, 0, &mut steps[step][li]);
            }
        }
        let racing = steps
            .iter()
            .map(|lanes| {
                let rmdirs = others(lanes, rmdirs);
                let kills = others(lanes, kills);
                let ends = others(lanes, killed_tasks);
                let loops = others(lanes, loops);
                let files = others(lanes, sized_files);
                let places = others(lanes, walked_places);
                let unmounts = others(lanes, |c| unmounted(c, false));
                let detaches = others(lanes, |c| unmounted(c, true));
                let write_access = others(lanes, write_access);
                let mounts = others(lanes, mounted_places);
                let remounts_ro = others(lanes, remounted_ro);
                let mmaps = others(lanes, mapped);
                let v1: Vec<bool> = lanes.iter().map(|l| walks_v1(l)).collect();
                let mem: Vec<bool> = lanes.iter().map(|l| removes_memory_files(l)).collect();
                (0..lanes.len())
                    .map(|i| Racing {
                        rmdirs: rmdirs[i].clone(),
                        loops: loops[i].clone(),
                        files: files[i].clone(),
                        places: places[i].clone(),
                        unmounts: unmounts[i].clone(),
                        detaches: detaches[i].clone(),
                        write_access: write_access[i].clone(),
                        mounts: mounts[i].clone(),
                        v1_walks: v1.iter().enumerate().any(|(j, w)| j != i && *w),
                        memory_files: mem.iter().enumerate().any(|(j, m)| j != i && *m),
                        kills: kills[i].clone(),
                        ends: ends[i].clone(),
                        remounts_ro: remounts_ro[i].clone(),
                        mmaps: mmaps[i].clone(),
                    })
                    .collect()
            })
            .collect();
        Code {
            steps,
            racing,
            faulted: p.faulted().into_iter().map(|(id, _)| id).collect(),
        }
    }
}

fn compile<'p>(
    lane: usize,
    s: &'p OpSpec,
    next: &mut usize,
    depth: usize,
    out: &mut Vec<Instr<'p>>,
) {
    let id = OpId { lane, op: *next };
    *next += 1;
    match &s.op {
        Op::Repeat(r) => {
            let start = out.len();
            out.push(Instr::Enter(id, depth));
            for b in &r.ops {
                compile(lane, b, next, depth + 1, out);
            }
            out.push(Instr::Loop {
                start,
                depth,
                times: r.times,
            });
        }
        op => out.push(Instr::Op(id, op)),
    }
}

/// For each lane, the union of `f` over the other lanes' code.
fn others<T: Ord + Clone>(
    lanes: &[Vec<Instr<'_>>],
    f: fn(&[Instr<'_>]) -> BTreeSet<T>,
) -> Vec<BTreeSet<T>> {
    let each: Vec<BTreeSet<T>> = lanes.iter().map(|l| f(l)).collect();
    (0..lanes.len())
        .map(|i| {
            each.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, s)| s.iter().cloned())
                .collect()
        })
        .collect()
}

/// Devices a lane attaches, detaches, formats or mounts.
fn loops(code: &[Instr<'_>]) -> BTreeSet<Dev> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, Op::Losetup(a)) => Some(a.dev),
            Instr::Op(_, Op::LosetupDetach(d)) => Some(*d),
            Instr::Op(_, Op::Mkfs(a)) => Some(a.dev),
            Instr::Op(_, Op::Mount(a)) => a.dev,
            _ => None,
        })
        .collect()
}

/// Whether a lane's ops walk a path into the v1 hierarchy.
fn walks_v1(code: &[Instr<'_>]) -> bool {
    code.iter().any(|i| match i {
        Instr::Op(_, op) => cg_of(op).is_some_and(|c| c.hier == Hier::V1),
        _ => false,
    })
}

/// Whether a lane may take memory controller files off v2 cgroups
/// ([`Racing::memory_files`]).
fn removes_memory_files(code: &[Instr<'_>]) -> bool {
    code.iter().any(|i| match i {
        Instr::Op(_, Op::V1Mount) => true,
        Instr::Op(_, Op::SubtreeControl(a)) => a
            .change
            .iter()
            .any(|c| !c.enable && matches!(c.ctrl, Ctrl::Memory | Ctrl::Io)),
        _ => false,
    })
}

/// The cgroup whose directory an op walks into.
fn cg_of(op: &Op) -> Option<&Cg> {
    match op {
        Op::Mkdir(cg) | Op::Rmdir(cg) | Op::CgroupKill(cg) | Op::ForceEmpty(cg) => Some(cg),
        Op::SubtreeControl(a) => Some(&a.cg),
        Op::Procs(a) | Op::Threads(a) => Some(&a.cg),
        Op::MemoryMax(a)
        | Op::MemoryHigh(a)
        | Op::MemoryLow(a)
        | Op::MemorySwapMax(a)
        | Op::LimitInBytes(a) => Some(&a.cg),
        Op::MemoryReclaim(a) => Some(&a.cg),
        Op::IoMax(a) => Some(&a.cg),
        Op::Read(a) => Some(&a.cg),
        Op::MoveCharge(a) => Some(&a.cg),
        Op::Spawn(a) => a.cg.as_ref(),
        _ => None,
    }
}

/// Places a lane's ops walk a path through ([`Op::place`]).
fn walked_places(code: &[Instr<'_>]) -> BTreeSet<Name> {
    of_ops(code, Op::place)
}

/// Places a lane mounts on.
fn mounted_places(code: &[Instr<'_>]) -> BTreeSet<Name> {
    of_ops(code, |op| match op {
        Op::Mount(a) => Some(&a.at),
        _ => None,
    })
}

/// Mappings a lane makes.
fn mapped(code: &[Instr<'_>]) -> BTreeSet<Name> {
    of_ops(code, |op| match op {
        Op::Mmap(a) => Some(&a.map),
        _ => None,
    })
}

/// Places a lane remounts read-only.
fn remounted_ro(code: &[Instr<'_>]) -> BTreeSet<Name> {
    of_ops(code, |op| match op {
        Op::Remount(a) if a.opts.contains(&crate::words::MountOpt::Ro) => Some(&a.at),
        _ => None,
    })
}

/// Places of the files a lane's ops take write access to while they run.
fn write_access(code: &[Instr<'_>]) -> BTreeSet<Name> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, op) => match op {
                Op::Write(a) => Some(&a.file),
                Op::Truncate(a) => Some(&a.file),
                Op::Unlink(f) => Some(f),
                Op::Open(a) if a.create => Some(&a.file),
                Op::Losetup(a) => Some(&a.file),
                Op::Spawn(a) => match &a.kind {
                    crate::op::TaskKind::Writer(w) => Some(&w.file),
                    crate::op::TaskKind::Hog(h) => h.file.as_ref(),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .map(|f| f.place.clone())
        .collect()
}

/// Places a lane unmounts (only lazily, with `lazy_only`).
fn unmounted(code: &[Instr<'_>], lazy_only: bool) -> BTreeSet<Name> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, Op::UmountLazy(p)) => Some(p.clone()),
            Instr::Op(_, Op::Umount(p)) if !lazy_only => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// Files a lane writes or truncates (with `write`, or a writer or hog task).
fn sized_files(code: &[Instr<'_>]) -> BTreeSet<FilePath> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, Op::Write(a)) => Some(a.file.clone()),
            Instr::Op(_, Op::Truncate(a)) => Some(a.file.clone()),
            Instr::Op(_, Op::Spawn(a)) => match &a.kind {
                crate::op::TaskKind::Writer(w) => Some(w.file.clone()),
                crate::op::TaskKind::Hog(h) => h.file.clone(),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn kills(code: &[Instr<'_>]) -> BTreeSet<Cg> {
    of_ops(code, |op| match op {
        Op::CgroupKill(cg) => Some(cg),
        _ => None,
    })
}

fn killed_tasks(code: &[Instr<'_>]) -> BTreeSet<Name> {
    of_ops(code, |op| match op {
        Op::Kill(t) => Some(t),
        _ => None,
    })
}

fn rmdirs(code: &[Instr<'_>]) -> BTreeSet<Cg> {
    of_ops(code, |op| match op {
        Op::Rmdir(cg) => Some(cg),
        _ => None,
    })
}

/// What `pick` takes from a lane's ops (cgroups, places, mappings).
fn of_ops<T: Ord + Clone>(code: &[Instr<'_>], pick: impl Fn(&Op) -> Option<&T>) -> BTreeSet<T> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, op) => pick(op).cloned(),
            _ => None,
        })
        .collect()
}
