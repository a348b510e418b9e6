//! cgroup v2 and v1 ops: mkdir/rmdir, controllers, migrations, memcg knobs.
//!
//! The rules follow kernel/cgroup/cgroup.c (`cgroup_subtree_control_write`,
//! `cgroup_vet_subtree_control_enable`, `cgroup_migrate_vet_dst`,
//! `cgroup_attach_permissions`), cgroup-v1.c and mm/memcontrol.c; the
//! kselftests in tools/testing/selftests/cgroup assert the same errnos.

use std::collections::BTreeSet;

use crate::errno::Errno::{self, *};
use crate::names::{Cg, Hier, Limit, Name};
use crate::op::{CgLimit, CgRead, CgValue, IoMax, Op, Reclaim, SubtreeChange};
use crate::outcome::Outcome;
use crate::words::{Ctrl, ReadFile};

use super::apply::{fail, ok, Ctx, Next};
use super::state::{CgNode, Life, State, V1};
use super::tasks::update_oom;

/// Names a v1 cgroup directory already holds as files.
const V1_FILES: &[&str] = &["tasks", "notify_on_release"];
const V1_ROOT_FILES: &[&str] = &["release_agent", "sane_behavior"];

/// Below this limit, tasks in the cgroup may be OOM-killed at any time.
pub const LOW_LIMIT: u64 = 64 << 20;

/// A file the op opens is not there: ENOENT, or, when another lane may
/// remove it between the agent's `open` and its read or write
/// (`may_go`), ENODEV too (kernfs, `kernfs_get_active` on a removed node).
fn gone(s: &State, may_go: bool) -> Next {
    let mut v = fail(s, ENOENT);
    if may_go {
        v.push((Outcome::Err(ENODEV), s.clone()));
    }
    v
}

/// The cgroup's directory is missing: [`gone`], if another lane may remove
/// it; ENOTDIR when its path goes through a file of a v1 cgroup that is
/// there (`v1:tasks/...`: the walk meets a regular file), and also
/// [`gone`]'s when another lane may remove that cgroup.
fn missing(s: &State, cg: &Cg, ctx: Ctx<'_>) -> Next {
    if let Some(dir) = through_a_file(s, cg) {
        let mut v = fail(s, ENOTDIR);
        if ctx.racing.rmdirs.contains(&dir) {
            v.extend(gone(s, true));
        }
        return v;
    }
    gone(s, ctx.racing.rmdirs.contains(cg))
}

/// A path in `cg` that is not there, with no other lane in the way: ENOTDIR
/// when it goes through a file of a v1 cgroup ([`through_a_file`]),
/// ENOENT otherwise.
fn not_there(s: &State, cg: &Cg) -> Next {
    match through_a_file(s, cg) {
        Some(_) => fail(s, ENOTDIR),
        None => fail(s, ENOENT),
    }
}

/// The existing v1 cgroup in which `cg`'s path names one of the files
/// (`tasks`, `notify_on_release`; at the root also `release_agent` and
/// `sane_behavior`), if it does.
fn through_a_file(s: &State, cg: &Cg) -> Option<Cg> {
    if cg.hier != Hier::V1 {
        return None;
    }
    (0..cg.parts.len()).find_map(|k| {
        let dir = Cg {
            hier: cg.hier,
            parts: cg.parts[..k].to_vec(),
        };
        let name = cg.parts[k].as_str();
        let file = V1_FILES.contains(&name) || (k == 0 && V1_ROOT_FILES.contains(&name));
        (file && s.cg_exists(&dir)).then_some(dir)
    })
}

/// A memory controller file that is not there: [`gone`], if another lane
/// may take memory's files away ([`super::code::Racing::memory_files`]).
fn no_memory_file(s: &State, ctx: Ctx<'_>) -> Next {
    gone(s, ctx.racing.memory_files)
}

/// Both outcomes when a rule depends on something the model holds as maybe.
fn either(s: &State, e: Errno, then: Next) -> Next {
    let mut v = fail(s, e);
    v.extend(then);
    v
}

pub fn mkdir(s: &State, cg: &Cg) -> Next {
    if s.nodes(cg.hier).is_none() {
        return fail(s, ENOENT);
    }
    let Some(parent) = cg.parent() else {
        return fail(s, EEXIST);
    };
    if !s.cg_exists(&parent) {
        return not_there(s, &parent);
    }
    if s.cg_exists(cg) {
        return fail(s, EEXIST);
    }
    if cg.hier == Hier::V1 {
        let last = cg.parts.last().map(String::as_str).unwrap_or("");
        if V1_FILES.contains(&last) || (parent.is_root() && V1_ROOT_FILES.contains(&last)) {
            return fail(s, EEXIST);
        }
    }
    let mut n = s.clone();
    n.nodes_mut(cg.hier)
        .expect("checked above")
        .insert(cg.parts.clone(), CgNode::default());
    ok(n)
}

pub fn rmdir(s: &State, cg: &Cg, ctx: Ctx<'_>) -> Next {
    if !s.cg_exists(cg) {
        // rmdir of a file, or of a path through one: ENOTDIR.
        return not_there(s, cg);
    }
    if cg.is_root() || s.has_children(cg) {
        return fail(s, EBUSY);
    }
    let removed = || {
        let mut n = s.clone();
        n.nodes_mut(cg.hier).expect("exists").remove(&cg.parts);
        if cg.hier == Hier::V2
            && s.node(&cg.parent().expect("not root"))
                .is_some_and(|p| memory_css_below(s, &p.subtree))
        {
            n.memcg_dying = true;
        }
        // Whatever was maybe alive in it must have exited; it stays a
        // zombie under its name until `kill` or `wait` reaps it.
        for t in n.tasks.values_mut() {
            let inside = match cg.hier {
                Hier::V2 => t.v2 == cg.parts,
                Hier::V1 => t.v1.as_ref() == Some(&cg.parts),
            };
            if inside && t.life == Life::Maybe {
                t.life = Life::Dead;
                t.zombie = true;
                t.holds = None;
                t.writes = None;
            }
        }
        n
    };
    // A task another lane is killing may still be exiting in it, its name
    // already gone (see `Racing::ends`; seen on Debian's 6.1: rmdir EBUSY
    // while the other lane's kill of its one task ran).
    let exiting = ctx.racing.ends.iter().any(|name| {
        s.tasks.get(name).is_some_and(|t| match cg.hier {
            Hier::V2 => t.v2 == cg.parts,
            Hier::V1 => t.v1.as_ref() == Some(&cg.parts),
        })
    });
    match s.tasks_in(cg, true) {
        Life::Alive => fail(s, EBUSY),
        Life::Dead if !exiting => ok(removed()),
        _ => either(s, EBUSY, ok(removed())),
    }
}

/// Whether the children of a cgroup whose `cgroup.subtree_control` is
/// `subtree` have memory csses: memory is enabled there, or io is while
/// memory is on v2, for io depends on memory (`io_cgrp_subsys.depends_on`,
/// block/blk-cgroup.c: writeback pages need their owner memcg), which
/// enables it implicitly, without memory.* files. A Debian fuzz saw
/// `v1_mount` return EBUSY after only `+io` at the v2 root.
fn memory_css_below(s: &State, subtree: &BTreeSet<Ctrl>) -> bool {
    subtree.contains(&Ctrl::Memory) || (s.v1.is_none() && subtree.contains(&Ctrl::Io))
}

/// The order cgroup.c walks subsystems in (`for_each_subsys`).
const SSID_ORDER: [Ctrl; 3] = [Ctrl::Io, Ctrl::Memory, Ctrl::Pids];

fn is_domain(c: Ctrl) -> bool {
    c != Ctrl::Pids
}

pub fn subtree_control(s: &State, a: &SubtreeChange, ctx: Ctx<'_>) -> Next {
    let cg = &a.cg;
    if cg.hier == Hier::V1 {
        return not_there(s, cg);
    }
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    let k = &ctx.target.kernel;
    let mut enable = BTreeSet::new();
    let mut disable = BTreeSet::new();
    for ch in &a.change {
        let present = match ch.ctrl {
            Ctrl::Memory => true,
            Ctrl::Io => k.io_controller,
            Ctrl::Pids => k.pids_controller,
        };
        if !present {
            return fail(s, EINVAL);
        }
        if ch.enable {
            enable.insert(ch.ctrl);
            disable.remove(&ch.ctrl);
        } else {
            disable.insert(ch.ctrl);
            enable.remove(&ch.ctrl);
        }
    }
    let node = s.node(cg).expect("exists");
    let available = s.controllers(cg, ctx.target);
    for c in SSID_ORDER {
        if enable.contains(&c) {
            if node.subtree.contains(&c) {
                enable.remove(&c);
            } else if !available.contains(&c) {
                return fail(s, ENOENT);
            }
        } else if disable.contains(&c) {
            if !node.subtree.contains(&c) {
                disable.remove(&c);
            } else if s.v2.iter().any(|(p, n)| {
                p.len() == cg.parts.len() + 1 && p.starts_with(&cg.parts) && n.subtree.contains(&c)
            }) {
                return fail(s, EBUSY);
            }
        }
    }
    if enable.is_empty() && disable.is_empty() {
        return ok(s.clone());
    }
    if cg.is_root() && enable.contains(&Ctrl::Memory) && s.v1_dying {
        let mut n = s.clone();
        n.v1_dying = false;
        let mut v = fail(s, ENOENT);
        v.extend(subtree_control(&n, a, ctx));
        return v;
    }
    let mut n = s.clone();
    {
        let node = n.v2.get_mut(&cg.parts).expect("exists");
        node.subtree.extend(enable.iter().copied());
        for c in &disable {
            node.subtree.remove(c);
        }
    }
    let before = memory_css_below(s, &node.subtree);
    let after = memory_css_below(&n, &n.v2[&cg.parts].subtree);
    if before && !after && s.has_children(cg) {
        n.memcg_dying = true;
    }
    let applied = ok(n);
    if enable.is_empty() || cg.is_root() {
        return applied;
    }
    // cgroup_vet_subtree_control_enable: a threaded-only enable is fine where
    // the cgroup could become a thread root.
    if !enable.iter().any(|c| is_domain(*c)) && !node.subtree.iter().any(|c| is_domain(*c)) {
        match s.populated_children(cg) {
            Life::Dead => return applied,
            Life::Maybe => {
                return match s.tasks_in(cg, false) {
                    Life::Dead => applied,
                    _ => either(s, EBUSY, applied),
                }
            }
            Life::Alive => {}
        }
    }
    match s.tasks_in(cg, false) {
        Life::Alive => fail(s, EBUSY),
        Life::Maybe => either(s, EBUSY, applied),
        Life::Dead => applied,
    }
}

/// A write of a task's id to `cgroup.procs` (`whole`) or `cgroup.threads`/`tasks`.
pub fn attach(s: &State, task: &Name, cg: &Cg, whole: bool, ctx: Ctx<'_>) -> Next {
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    // A zombie's pid still resolves: the kernel skips the exiting task and
    // the write succeeds, as for a live one.
    let Some(t) = s.tasks.get(task).filter(|t| t.named()) else {
        return fail(s, ESRCH);
    };
    let moved = || {
        let mut n = s.clone();
        let t = n.tasks.get_mut(task).expect("exists");
        match cg.hier {
            Hier::V2 => t.v2 = cg.parts.clone(),
            Hier::V1 => t.v1 = Some(cg.parts.clone()),
        }
        if let Some(node) = n.nodes_mut(cg.hier).and_then(|m| m.get_mut(&cg.parts)) {
            node.charged = true;
        }
        update_oom(&mut n);
        ok(n)
    };
    if cg.hier == Hier::V1 {
        return moved();
    }
    // cgroup_migrate_vet_dst: the no-internal-process rule.
    if !cg.is_root() {
        let node = s.node(cg).expect("exists");
        if !node.subtree.is_empty() {
            if node.subtree.iter().any(|c| is_domain(*c)) {
                return fail(s, EBUSY);
            }
            match s.populated_children(cg) {
                Life::Alive => return fail(s, EBUSY),
                Life::Maybe => {
                    let rest = attach_same_domain(s, t.v2 == cg.parts, whole, moved);
                    return either(s, EBUSY, rest);
                }
                Life::Dead => {}
            }
        }
    }
    attach_same_domain(s, t.v2 == cg.parts, whole, moved)
}

/// `cgroup.threads` may only move a thread within its domain.
fn attach_same_domain(s: &State, same: bool, whole: bool, moved: impl FnOnce() -> Next) -> Next {
    if !whole && !same {
        return fail(s, EOPNOTSUPP);
    }
    moved()
}

/// Where a v2 memory interface file exists: non-root (unless `on_root`) cgroups
/// whose parent enabled memory, and the root while memory is on v2.
fn memory_file_exists(s: &State, cg: &Cg, on_root: bool, ctx: Ctx<'_>) -> bool {
    if cg.is_root() {
        on_root && s.v1.is_none() && !s.v1_dying
    } else {
        s.controllers(cg, ctx.target).contains(&Ctrl::Memory)
    }
}

pub fn memory_limit(s: &State, op: &Op, a: &CgLimit, ctx: Ctx<'_>) -> Next {
    let cg = &a.cg;
    if cg.hier == Hier::V1 {
        return not_there(s, cg);
    }
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    if !memory_file_exists(s, cg, false, ctx) {
        return no_memory_file(s, ctx);
    }
    if matches!(op, Op::MemorySwapMax(_)) && !ctx.target.kernel.swap_accounting {
        return fail(s, ENOENT);
    }
    let mut n = s.clone();
    if matches!(op, Op::MemoryMax(_)) {
        n.v2.get_mut(&cg.parts).expect("exists").limit = limit_bytes(a.value);
        update_oom(&mut n);
    }
    ok(n)
}

fn limit_bytes(l: Limit) -> Option<u64> {
    match l {
        Limit::Max => None,
        Limit::Bytes(b) => Some(b.0),
    }
}

pub fn reclaim(s: &State, a: &Reclaim, ctx: Ctx<'_>) -> Next {
    let cg = &a.cg;
    if cg.hier == Hier::V1 || !ctx.target.kernel.has_memory_reclaim() {
        return not_there(s, cg);
    }
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    if cg.is_root() && s.v1_dying {
        return either(s, ENOENT, either(s, EAGAIN, ok(s.clone())));
    }
    if !memory_file_exists(s, cg, true, ctx) {
        return no_memory_file(s, ctx);
    }
    if a.bytes.0 == 0 {
        return ok(s.clone());
    }
    // Reclaim may fall short of the request: EAGAIN.
    either(s, EAGAIN, ok(s.clone()))
}

pub fn io_max(s: &State, a: &IoMax, ctx: Ctx<'_>) -> Next {
    let cg = &a.cg;
    if cg.hier == Hier::V1 {
        return not_there(s, cg);
    }
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    let io = s.controllers(cg, ctx.target).contains(&Ctrl::Io);
    if cg.is_root() || !io || !ctx.target.kernel.blk_throttling {
        return fail(s, ENOENT);
    }
    if !s.devices.contains_key(&a.dev) {
        return fail(s, ENODEV);
    }
    ok(s.clone())
}

pub fn kill(s: &State, cg: &Cg, ctx: Ctx<'_>) -> Next {
    if cg.hier == Hier::V1 || !ctx.target.kernel.has_cgroup_kill() {
        return not_there(s, cg);
    }
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    if cg.is_root() {
        return fail(s, ENOENT);
    }
    let mut n = s.clone();
    for t in n.tasks.values_mut() {
        if t.life != Life::Dead && t.v2.starts_with(&cg.parts) {
            t.life = Life::Maybe;
            t.maybe_killed = true;
        }
    }
    ok(n)
}

pub fn read(s: &State, a: &CgRead, ctx: Ctx<'_>) -> Next {
    let cg = &a.cg;
    if !s.cg_exists(cg) {
        return missing(s, cg, ctx);
    }
    let exists = match (cg.hier, a.file) {
        (Hier::V2, ReadFile::Events) => !cg.is_root(),
        (Hier::V2, ReadFile::Stat) => true,
        (Hier::V2, ReadFile::MemoryStat) => memory_file_exists(s, cg, true, ctx),
        (Hier::V2, ReadFile::MemoryCurrent) => memory_file_exists(s, cg, false, ctx),
        (Hier::V1, ReadFile::Events | ReadFile::Stat) => false,
        (Hier::V1, ReadFile::MemoryStat | ReadFile::MemoryCurrent) => ctx.target.kernel.memcg_v1,
    };
    if cg.is_root() && cg.hier == Hier::V2 && a.file == ReadFile::MemoryStat && s.v1_dying {
        return either(s, ENOENT, ok(s.clone()));
    }
    let memory_file = matches!(a.file, ReadFile::MemoryStat | ReadFile::MemoryCurrent);
    if exists {
        ok(s.clone())
    } else if cg.hier == Hier::V2 && memory_file {
        no_memory_file(s, ctx)
    } else {
        fail(s, ENOENT)
    }
}

pub fn v1_mount(s: &State, ctx: Ctx<'_>) -> Next {
    if s.v1.as_ref().is_some_and(|v| v.mounted) {
        return fail(s, EBUSY);
    }
    // rebind_subsystems: busy while memory csses exist below the v2 root,
    // that is, memory is on at the root (or implied by io) and the root has
    // children.
    let root = Cg::root(Hier::V2);
    if memory_css_below(s, &s.v2[&Vec::new()].subtree) && s.has_children(&root) {
        return fail(s, EBUSY);
    }
    let mut n = s.clone();
    // The controller leaves the v2 root's subtree_control as it moves.
    n.v2.get_mut(&Vec::new())
        .expect("root")
        .subtree
        .remove(&Ctrl::Memory);
    n.v1_dying = false;
    match &mut n.v1 {
        Some(v) => v.mounted = true,
        None => {
            n.v1 = Some(V1 {
                mounted: true,
                nodes: [(Vec::new(), CgNode::default())].into(),
            });
            for t in n.tasks.values_mut() {
                t.v1 = Some(Vec::new());
            }
        }
    }
    n.memcg_dying = false;
    let mut out = if s.memcg_dying {
        // Dying v2 memcgs keep the controller busy until they are freed.
        either(s, EBUSY, ok(n))
    } else {
        ok(n)
    };
    if !ctx.target.kernel.memcg_v1 {
        // Without CONFIG_MEMCG_V1 (6.11+) the model does not know whether the
        // mount is refused or succeeds with no memory.* files in it.
        out.push((Outcome::Err(EINVAL), s.clone()));
    }
    out
}

pub fn v1_umount(s: &State, ctx: Ctx<'_>) -> Next {
    let Some(v) = s.v1.as_ref().filter(|v| v.mounted) else {
        return fail(s, ENOENT);
    };
    // See `Racing::v1_walks`.
    let busy = ctx.racing.v1_walks;
    let mut n = s.clone();
    if v.nodes.len() == 1 {
        n.v1 = None;
        // cgroup_kill_sb destroys the root once its dying descendants are
        // freed; until then memory stays bound to v1.
        n.v1_dying = true;
        for t in n.tasks.values_mut() {
            t.v1 = None;
        }
    } else {
        n.v1.as_mut().expect("mounted").mounted = false;
    }
    let mut out = ok(n);
    if busy {
        out.push((Outcome::Err(EBUSY), s.clone()));
    }
    out
}

/// Shared checks of the v1 memory files: the cgroup and the file exist.
fn v1_file(s: &State, cg: &Cg, ctx: Ctx<'_>) -> Result<(), Next> {
    if cg.hier == Hier::V2 {
        return Err(fail(s, ENOENT));
    }
    if !s.cg_exists(cg) {
        return Err(missing(s, cg, ctx));
    }
    if !ctx.target.kernel.memcg_v1 {
        return Err(fail(s, ENOENT));
    }
    Ok(())
}

pub fn move_charge(s: &State, a: &CgValue, ctx: Ctx<'_>) -> Next {
    if let Err(e) = v1_file(s, &a.cg, ctx) {
        return e;
    }
    if a.value > 3 {
        return fail(s, EINVAL);
    }
    ok(s.clone())
}

pub fn limit_in_bytes(s: &State, a: &CgLimit, ctx: Ctx<'_>) -> Next {
    let cg = &a.cg;
    if let Err(e) = v1_file(s, cg, ctx) {
        return e;
    }
    if cg.is_root() {
        return fail(s, EINVAL);
    }
    let mut n = s.clone();
    let node =
        n.v1.as_mut()
            .and_then(|v| v.nodes.get_mut(&cg.parts))
            .expect("exists");
    node.limit = limit_bytes(a.value);
    let charged = node.charged;
    update_oom(&mut n);
    let low = matches!(a.value, Limit::Bytes(b) if b.0 < LOW_LIMIT);
    if low && (charged || s.tasks_in(cg, true) != Life::Dead) {
        // mem_cgroup_resize_max gives up with EBUSY when reclaim cannot get
        // usage under the new limit.
        either(s, EBUSY, ok(n))
    } else {
        ok(n)
    }
}

pub fn force_empty(s: &State, cg: &Cg, ctx: Ctx<'_>) -> Next {
    if let Err(e) = v1_file(s, cg, ctx) {
        return e;
    }
    if cg.is_root() {
        return fail(s, EINVAL);
    }
    ok(s.clone())
}
