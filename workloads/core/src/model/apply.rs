//! One op's effect: from a state, every (outcome, next state) a correct kernel allows.

use crate::errno::Errno;
use crate::op::Op;
use crate::outcome::Outcome;

use super::code::Racing;
use super::state::State;
use super::target::Target;
use super::{cgroup, dax, files, mounts, tasks};

/// What an op may see besides the state: the kernel, and what other lanes do
/// concurrently in the same step.
#[derive(Clone, Copy, Debug)]
pub struct Ctx<'a> {
    /// The kernel and machine.
    pub target: &'a Target,
    /// What other lanes of this step may do while the op runs.
    pub racing: &'a Racing,
}

/// The successors of a state under one op.
pub type Next = Vec<(Outcome, State)>;

/// The op succeeds and leaves `s`.
pub fn ok(s: State) -> Next {
    vec![(Outcome::Ok, s)]
}

/// The op fails with `e` and changes nothing.
pub fn fail(s: &State, e: Errno) -> Next {
    vec![(Outcome::Err(e), s.clone())]
}

/// The device an op names, if any.
fn device_of(op: &Op) -> Option<crate::names::Dev> {
    match op {
        Op::Losetup(a) => Some(a.dev),
        Op::LosetupDetach(d) => Some(*d),
        Op::Mkfs(a) => Some(a.dev),
        Op::Mount(a) => a.dev,
        Op::IoMax(a) => Some(a.dev),
        _ => None,
    }
}

/// Ops that always succeed and neither read nor change the model's state,
/// whatever it is ([`apply`] gives them `ok(s)`): the explorer and the
/// checker need not try them at every place among other lanes' ops.
pub fn state_free(op: &Op) -> bool {
    matches!(
        op,
        Op::Sync | Op::Sleep(_) | Op::DropCaches(_) | Op::Syncfs(_) | Op::Sysrq(_)
    )
}

/// Applies `op` to `s` when a fault was injected into it (`fail_nth`): an
/// allocation the op made failed, which the op either survived (its
/// ordinary outcomes) or failed on, returning ENOMEM or what its code makes
/// of the failure, and leaving the state as it was, or as what it did
/// before the failure left it (each from the kernel source, found by a
/// fault-injection fuzz of the debug kernel; only [`Op::fault_injectable`]
/// ops, whose failures the kernel undoes, carry faults). What a failure
/// left behind that the state does not show (a css never freed) is the
/// reset's leak check's.
pub fn apply_faulted(s: &State, op: &Op, ctx: Ctx<'_>) -> Next {
    let mut out = apply(s, op, ctx);
    let (mut errnos, mut left) = match op {
        Op::Pin(a) => dax::faulted_pin(s, a),
        _ => (Vec::new(), Vec::new()),
    };
    errnos.insert(0, Errno::ENOMEM);
    left.insert(0, s.clone());
    for e in errnos {
        for l in &left {
            if !out.iter().any(|(o, n)| *o == Outcome::Err(e) && n == l) {
                out.push((Outcome::Err(e), l.clone()));
            }
        }
    }
    out
}

/// Applies `op` to `s`. `Repeat`, `Barrier` and `Sleep` change nothing here;
/// the explorer runs repeat bodies itself.
pub fn apply(s: &State, op: &Op, ctx: Ctx<'_>) -> Next {
    // A loop device being cleared may be there or gone: both are allowed.
    if let Some(d) = device_of(op).filter(|d| s.devices.get(d).is_some_and(|x| x.clearing)) {
        let mut gone = s.clone();
        gone.devices.remove(&d);
        let mut out = apply_one(&gone, op, ctx);
        out.extend(apply_one(s, op, ctx));
        return out;
    }
    apply_one(s, op, ctx)
}

fn apply_one(s: &State, op: &Op, ctx: Ctx<'_>) -> Next {
    match op {
        Op::Sync
        | Op::Barrier
        | Op::Sleep(_)
        | Op::Repeat(_)
        | Op::DropCaches(_)
        | Op::Sysrq(_) => ok(s.clone()),
        Op::Syncfs(_) => ok(s.clone()),
        Op::Mkdir(cg) => cgroup::mkdir(s, cg),
        Op::Rmdir(cg) => cgroup::rmdir(s, cg, ctx),
        Op::SubtreeControl(a) => cgroup::subtree_control(s, a, ctx),
        Op::Procs(a) => cgroup::attach(s, &a.task, &a.cg, true, ctx),
        Op::Threads(a) => cgroup::attach(s, &a.task, &a.cg, false, ctx),
        Op::MemoryMax(a) | Op::MemoryHigh(a) | Op::MemoryLow(a) | Op::MemorySwapMax(a) => {
            cgroup::memory_limit(s, op, a, ctx)
        }
        Op::MemoryReclaim(a) => cgroup::reclaim(s, a, ctx),
        Op::IoMax(a) => cgroup::io_max(s, a, ctx),
        Op::CgroupKill(cg) => cgroup::kill(s, cg, ctx),
        Op::Read(a) => cgroup::read(s, a, ctx),
        Op::V1Mount => cgroup::v1_mount(s, ctx),
        Op::V1Umount => cgroup::v1_umount(s, ctx),
        Op::MoveCharge(a) => cgroup::move_charge(s, a, ctx),
        Op::LimitInBytes(a) => cgroup::limit_in_bytes(s, a, ctx),
        Op::ForceEmpty(cg) => cgroup::force_empty(s, cg, ctx),
        Op::Spawn(a) => tasks::spawn(s, a, ctx),
        Op::Kill(t) => tasks::kill(s, t),
        Op::Wait(t) => tasks::wait(s, t, ctx),
        Op::Write(a) => files::write(s, a, ctx),
        Op::Truncate(a) => files::truncate(s, a, ctx),
        Op::Unlink(f) => files::unlink(s, f),
        Op::Fsync(f) => files::fsync(s, f),
        Op::Losetup(a) => mounts::losetup(s, a, ctx),
        Op::LosetupDetach(d) => mounts::losetup_detach(s, d),
        Op::Mkfs(a) => mounts::mkfs(s, a, ctx),
        Op::Mount(a) => mounts::mount(s, a, ctx),
        Op::Umount(p) => mounts::umount(s, p, false, ctx),
        Op::UmountLazy(p) => mounts::umount(s, p, true, ctx),
        Op::Remount(a) => mounts::remount(s, a, ctx),
        Op::Open(a) => dax::open(s, a, ctx),
        Op::Close(n) => dax::close(s, n),
        Op::Mmap(a) => dax::mmap(s, a),
        Op::Touch(a) => dax::named_late(s, &a.map, ctx, dax::touch(s, a, ctx)),
        Op::Munmap(n) => dax::named_late(s, n, ctx, dax::munmap(s, n)),
        Op::Pin(a) if !s.pins.contains_key(&a.pin) => {
            dax::named_late(s, &a.map, ctx, dax::pin(s, a, ctx))
        }
        Op::Pin(a) => dax::pin(s, a, ctx),
        Op::Release(n) => dax::release(s, n),
    }
}
