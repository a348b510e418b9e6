//! Block devices and mounts: losetup, mkfs, mount, umount, remount.
//!
//! Errnos follow fs/namespace.c, fs/super.c, drivers/block/loop.c, and the
//! filesystems' option parsing: ext4 refuses `dax` on a device without DAX
//! (EINVAL), xfs mounts and turns DAX off; tmpfs rejects options it does not
//! know, ramfs ignores them.

use crate::errno::Errno::{self, *};
use crate::names::{Dev, DevKind, Name};
use crate::op::{LosetupArgs, MkfsArgs, MountArgs, RemountArgs};
use crate::outcome::Outcome;
use crate::words::{BlockFs, FsType, MountOpt};

use super::apply::{fail, ok, Ctx, Next};
use super::files::{open_file, Access};
use super::state::{Device, FileSt, FsId, Life, Mount, MountRef, SizeRange, State};

/// mkfs.xfs refuses filesystems smaller than this (xfsprogs 5.19 and later).
const XFS_MIN: u64 = 300 << 20;

pub fn losetup(s: &State, a: &LosetupArgs, ctx: Ctx<'_>) -> Next {
    if a.dev.kind != DevKind::Loop {
        return fail(s, EINVAL);
    }
    if s.devices.contains_key(&a.dev) {
        return fail(s, EBUSY);
    }
    let mut out = Vec::new();
    if ctx.racing.loops.contains(&a.dev) {
        // Another lane's op on this slot holds it while it runs (the agent
        // keeps a slot for the whole of a losetup or a detach): this one
        // is EBUSY before it touches its backing file (seen in a soak on
        // 6.1, two lanes detaching loop1 and one binding it again).
        out.push((Outcome::Err(EBUSY), s.clone()));
    }
    // The backing file is opened O_RDWR|O_CREAT and sized with ftruncate.
    for r in open_file(s, &a.file, Access::write(false), ctx) {
        match r {
            Err(e) => out.push((Outcome::Err(e), s.clone())),
            Ok(o) => {
                let mut n = s.clone();
                let key = (o.fs.clone(), a.file.name.clone());
                let old = n.files.get(&key).cloned();
                let image = old
                    .as_ref()
                    .filter(|f| f.size.lo == f.size.hi && f.size.hi <= a.size.0)
                    .and_then(|f| f.image);
                n.files.insert(
                    key,
                    FileSt {
                        exists: Life::Alive,
                        size: SizeRange::exact(a.size.0),
                        image,
                    },
                );
                n.devices
                    .insert(a.dev, Device::looped(a.size.0, image, o.via.clone()));
                out.push((Outcome::Ok, n));
            }
        }
    }
    out
}

pub fn losetup_detach(s: &State, d: &Dev) -> Next {
    if !s.devices.contains_key(d) || d.kind != DevKind::Loop {
        return fail(s, ENXIO);
    }
    let mut n = s.clone();
    let dev = n.devices.get_mut(d).expect("exists");
    // LOOP_CLR_FD on a device someone has open (a mount, or udev probing it)
    // only sets autoclear and succeeds; the device goes with its last opener.
    dev.detach_pending = true;
    if dev.mounts == 0 {
        dev.clearing = true;
    }
    ok(n)
}

pub fn mkfs(s: &State, a: &MkfsArgs, ctx: Ctx<'_>) -> Next {
    let mut out = mkfs_at_once(s, a);
    // mkfs checks the device (O_EXCL), then the tool opens and writes it:
    // another lane mounting, formatting or detaching it meanwhile makes it
    // fail (the agent reports a failed tool as EIO, a busy device as EBUSY).
    if ctx.racing.loops.contains(&a.dev) {
        for e in [EIO, EBUSY] {
            also_fail(&mut out, s, e);
        }
    }
    out
}

fn mkfs_at_once(s: &State, a: &MkfsArgs) -> Next {
    let Some(dev) = s.devices.get(&a.dev) else {
        return fail(s, ENOENT);
    };
    if dev.mounts > 0 || dev.detach_pending {
        return fail(s, EBUSY);
    }
    let mut n = s.clone();
    n.devices.get_mut(&a.dev).expect("exists").fs = Some(a.fs);
    n.files.retain(|(fs, _), _| fs != &FsId::Dev(a.dev));
    if a.dev.kind == DevKind::Loop {
        set_backing_image(&mut n, a.dev, Some(a.fs));
    }
    let mut out = Vec::new();
    if dev.lazy_refs || dev.releasing {
        out.push((Outcome::Err(EBUSY), s.clone()));
    }
    if a.fs == BlockFs::Xfs && dev.size < XFS_MIN {
        // The agent reports a failed mkfs tool as EIO.
        out.push((Outcome::Err(EIO), s.clone()));
        if dev.size < XFS_MIN / 2 {
            return out;
        }
    }
    out.push((Outcome::Ok, n));
    out
}

/// Records in a loop device's backing file what mkfs made in it.
fn set_backing_image(n: &mut State, d: Dev, fs: Option<BlockFs>) {
    let Some(via) = n.devices.get(&d).and_then(|x| x.backing.clone()) else {
        return;
    };
    let Some((_, m)) = n.top(&via.place) else {
        return;
    };
    let id = m.id.clone();
    // The backing file's name is not kept on the device; every file of that
    // size on that filesystem could be it, so only an exact match is updated.
    let size = n.devices[&d].size;
    let matches: Vec<_> = n
        .files
        .iter()
        .filter(|((f, _), st)| f == &id && st.size == SizeRange::exact(size))
        .map(|(k, _)| k.clone())
        .collect();
    if matches.len() == 1 {
        n.files.get_mut(&matches[0]).expect("found").image = fs;
    }
}

/// The parsed effect of a list of mount options.
#[derive(Default)]
struct Opts {
    dax: Option<MountOpt>,
    ro: bool,
    noquota: bool,
}

fn parse(opts: &[MountOpt]) -> Opts {
    let mut o = Opts::default();
    for &x in opts {
        match x {
            MountOpt::Dax | MountOpt::DaxAlways | MountOpt::DaxNever | MountOpt::DaxInode => {
                o.dax = Some(x)
            }
            MountOpt::Ro => o.ro = true,
            MountOpt::Rw => o.ro = false,
            MountOpt::Noquota => o.noquota = true,
            MountOpt::Lazytime => {}
        }
    }
    o
}

fn wants_dax(o: &Opts) -> bool {
    matches!(o.dax, Some(MountOpt::Dax | MountOpt::DaxAlways))
}

pub fn mount(s: &State, a: &MountArgs, ctx: Ctx<'_>) -> Next {
    let mut out = mount_at_once(s, a, ctx);
    // A mount reads the superblock in many steps: a loop device detached
    // or rebound by another lane of the step meanwhile gives I/O errors, EIO (seen
    // while fuzzing: "XFS (loop1): SB validate failed with error -5"),
    // which no single point in time explains.
    let racing = matches!(a.fs, FsType::Ext4 | FsType::Xfs)
        && a.dev.is_some_and(|d| ctx.racing.loops.contains(&d));
    if racing {
        // A superblock half written by a racing mkfs reads as no
        // filesystem (EINVAL) or fails to read (EIO); a racing mkfs tool,
        // or a mount of another filesystem type, holds the device open
        // exclusively for as long as it runs (EBUSY: seen while fuzzing, a
        // mount between another lane's mkfs.ext4 start and end).
        for e in [EIO, EINVAL, EBUSY] {
            also_fail(&mut out, s, e);
        }
    }
    // See `Racing::detaches`. Which errno depends on the kernel: 6.12's
    // do_lock_mount (fs/namespace.c) refuses a mount that is no longer
    // mounted (`!is_mounted(mnt)`) with ENOENT before anything else; on
    // 6.1 (seen on Debian's kernel) lock_mount takes it and do_add_mount's
    // check_mnt answers EINVAL. Between the two the model allows both.
    if ctx.racing.detaches.contains(&a.at) && s.top(&a.at).is_some() {
        let k = &ctx.target.kernel;
        if !k.at_least(6, 12) {
            also_fail(&mut out, s, EINVAL);
        }
        if k.at_least(6, 2) {
            also_fail(&mut out, s, ENOENT);
        }
    }
    out
}

fn mount_at_once(s: &State, a: &MountArgs, ctx: Ctx<'_>) -> Next {
    let o = parse(&a.opts);
    let mut n = s.clone();
    let gen = n.gens.entry(a.at.clone()).or_insert(0);
    *gen = gen.wrapping_add(1);
    let gen = *gen;
    let mount = match a.fs {
        FsType::Tmpfs | FsType::Ramfs => {
            if a.fs == FsType::Tmpfs && (o.dax.is_some() || o.noquota) {
                return fail(s, EINVAL);
            }
            Mount {
                fs: a.fs,
                id: FsId::Anon(a.at.clone(), gen),
                ro: o.ro,
                dax: false,
                dax_inode: false,
            }
        }
        FsType::Ext4 | FsType::Xfs => {
            let Some(d) = a.dev else {
                return fail(s, ENOENT);
            };
            let Some(dev) = s.devices.get(&d) else {
                return fail(s, ENOENT);
            };
            if dev.fs != a.fs.block() {
                // While the filesystem on it is mounted (or lazily unmounted
                // but held), it holds the device open exclusively: another
                // filesystem type cannot open it (EBUSY) before it could
                // read the superblock (EINVAL).
                if dev.mounts > 0 || dev.lazy_refs {
                    return fail(s, EBUSY);
                }
                return fail(s, EINVAL);
            }
            let id = FsId::Dev(d);
            if s.top(&a.at).is_some_and(|(_, m)| m.id == id) {
                return fail(s, EBUSY);
            }
            let existing = s.places.values().flatten().find(|m| m.id == id);
            if let Some(e) = existing {
                if e.ro != o.ro {
                    return fail(s, EBUSY);
                }
                // The superblock is reused; the new options are not parsed again.
                Mount { ..e.clone() }
            } else {
                let dax_dev = d.kind == DevKind::Pmem && ctx.target.kernel.fs_dax;
                if wants_dax(&o) && !dax_dev && a.fs == FsType::Ext4 {
                    return fail(s, EINVAL);
                }
                Mount {
                    fs: a.fs,
                    id,
                    ro: o.ro,
                    dax: wants_dax(&o) && dax_dev,
                    dax_inode: o.dax == Some(MountOpt::DaxInode),
                }
            }
        }
    };
    if let FsId::Dev(d) = &mount.id {
        n.devices.get_mut(d).expect("exists").mounts += 1;
    }
    n.places.entry(a.at.clone()).or_default().push(mount);
    ok(n)
}

/// Whether the mount is held by an open file, a mapping, a pin, a loop
/// device's backing file or a task's file.
fn busy(s: &State, r: &MountRef) -> Life {
    let held = s.fds.values().any(|f| f.via.as_ref() == Some(r))
        || s.maps.values().any(|m| m.via.as_ref() == Some(r))
        || s.pins.values().any(|p| p.peer.as_ref() == Some(r))
        || s.devices.values().any(|d| d.backing.as_ref() == Some(r));
    if held {
        return Life::Alive;
    }
    s.tasks
        .values()
        .filter(|t| t.holds.as_ref() == Some(r))
        .map(|t| t.life)
        .min()
        .unwrap_or(Life::Dead)
}

/// Adds failing with `e` (and changing nothing) to what an op may do.
fn also_fail(out: &mut Next, s: &State, e: Errno) {
    if !out.iter().any(|(o, _)| *o == Outcome::Err(e)) {
        out.push((Outcome::Err(e), s.clone()));
    }
}

pub fn umount(s: &State, place: &Name, lazy: bool, ctx: Ctx<'_>) -> Next {
    let mut out = umount_at_once(s, place, lazy);
    if let Some((_, m)) = s.top(place).filter(|_| !lazy) {
        if let FsId::Dev(d) = m.id {
            if ctx.racing.loops.contains(&d) {
                // The mount leaves the namespace before its superblock is
                // shut down: another lane's path lookup meanwhile finds the
                // bare place, and its mkfs finds the device still held
                // (seen on Debian's 6.1: an O_DSYNC write created m1/f0 on
                // the bare place and mkfs.xfs of the device was EBUSY, both
                // inside one 7 ms umount of ext4;
                // corpus/regressions/umount-releases-its-device-late.yaml).
                for (o, n) in &mut out {
                    if *o == Outcome::Ok {
                        n.devices.get_mut(&d).expect("mounted device").releasing = true;
                    }
                }
            }
        }
    }
    if s.top(place).is_some() {
        // See `Racing::places` and `Racing::unmounts`.
        if !lazy && ctx.racing.places.contains(place) {
            also_fail(&mut out, s, EBUSY);
        }
        if ctx.racing.unmounts.contains(place) {
            also_fail(&mut out, s, EINVAL);
        }
        if lazy && ctx.racing.places.contains(place) {
            // The other lane's op holds a path on the top mount while it
            // runs (a write's open file): detached meanwhile, the mount and
            // its superblock live until that op lets go, and its device
            // stays busy for mkfs (seen on Debian's 6.1: mkfs.xfs EBUSY
            // right after the umount_lazy, "EXT4-fs: unmounting" 6 ms
            // later when the write closed;
            // corpus/regressions/umount-lazy-held-by-racing-write.yaml).
            if let Some((r, _)) = s.top(place) {
                let held = detach(s, &r, true);
                if !out.iter().any(|(o, n)| *o == Outcome::Ok && *n == held) {
                    out.push((Outcome::Ok, held));
                }
            }
        }
        if lazy && ctx.racing.mounts.contains(place) {
            // See `Racing::mounts`: the top mount is the other lane's, put
            // on the one this lookup found; both go. (Seen on Debian's 6.1:
            // an ext4 mount and the tmpfs under it gone after one lazy
            // umount, corpus/regressions/umount-lazy-takes-stacked-mount.)
            let once: Vec<State> = out
                .iter()
                .filter(|(o, n)| *o == Outcome::Ok && n.top(place).is_some())
                .map(|(_, n)| n.clone())
                .collect();
            for n in once {
                for (o, m) in umount_at_once(&n, place, true) {
                    if !out.iter().any(|(x, y)| *x == o && *y == m) {
                        out.push((o, m));
                    }
                }
            }
        }
    }
    if lazy && ctx.racing.unmounts.contains(place) {
        // The other lane unmounted the top mount after this lookup found
        // it and `can_umount` passed: `do_umount` with MNT_DETACH detaches
        // only a mount still attached, and returns 0 (fs/namespace.c).
        // Seen on Debian's 6.1: two racing lazy umounts of one mount both
        // ok (corpus/regressions/umount-lazy-racing-umount-lazy).
        if !out.iter().any(|(o, n)| *o == Outcome::Ok && n == s) {
            out.push((Outcome::Ok, s.clone()));
        }
    }
    out
}

fn umount_at_once(s: &State, place: &Name, lazy: bool) -> Next {
    let Some((r, _)) = s.top(place) else {
        return fail(s, EINVAL);
    };
    let busy = busy(s, &r);
    if lazy {
        return ok(detach(s, &r, busy != Life::Dead));
    }
    match busy {
        Life::Alive => fail(s, EBUSY),
        Life::Maybe => {
            let mut v = fail(s, EBUSY);
            v.extend(ok(detach(s, &r, false)));
            v
        }
        Life::Dead => ok(detach(s, &r, false)),
    }
}

/// Pops the top mount of a place; what held it keeps the filesystem alive.
fn detach(s: &State, r: &MountRef, held: bool) -> State {
    let mut n = s.clone();
    let m = n
        .places
        .get_mut(&r.place)
        .and_then(Vec::pop)
        .expect("mounted");
    if n.places.get(&r.place).is_some_and(Vec::is_empty) {
        n.places.remove(&r.place);
    }
    for f in n.fds.values_mut() {
        if f.via.as_ref() == Some(r) {
            f.via = None;
        }
    }
    for x in n.maps.values_mut() {
        if x.via.as_ref() == Some(r) {
            x.via = None;
        }
    }
    for p in n.pins.values_mut() {
        if p.peer.as_ref() == Some(r) {
            p.peer = None;
        }
    }
    for t in n.tasks.values_mut() {
        if t.holds.as_ref() == Some(r) {
            t.holds = None;
        }
    }
    for d in n.devices.values_mut() {
        if d.backing.as_ref() == Some(r) {
            d.backing = None;
        }
    }
    match &m.id {
        FsId::Dev(d) => {
            let dev = n.devices.get_mut(d).expect("mounted device");
            dev.mounts -= 1;
            dev.lazy_refs |= held;
            if dev.mounts == 0 && dev.detach_pending && !held {
                dev.clearing = true;
            }
        }
        FsId::Anon(..) => {
            let id = m.id.clone();
            let referenced = n.fds.values().any(|f| f.fs == id)
                || n.maps.values().any(|x| x.fs == id)
                || n.tasks.values().any(|t| {
                    t.life != Life::Dead && t.writes.as_ref().is_some_and(|(f, _)| f == &id)
                });
            if !referenced {
                n.files.retain(|(fs, _), _| fs != &id);
            }
        }
        FsId::Base(_) => {}
    }
    n
}

/// Files open for writing on a filesystem (they block a remount read-only).
fn writers(s: &State, id: &FsId) -> Life {
    if s.fds.values().any(|f| &f.fs == id) || s.maps.values().any(|m| &m.fs == id) {
        return Life::Alive;
    }
    if let FsId::Dev(_) = id {
        let backing = s.devices.values().any(|d| {
            d.backing
                .as_ref()
                .and_then(|b| s.top(&b.place))
                .is_some_and(|(_, m)| &m.id == id)
        });
        if backing {
            return Life::Alive;
        }
    }
    s.tasks
        .values()
        .filter(|t| t.writes.as_ref().is_some_and(|(f, _)| f == id))
        .map(|t| t.life)
        .min()
        .unwrap_or(Life::Dead)
}

pub fn remount(s: &State, a: &RemountArgs, ctx: Ctx<'_>) -> Next {
    let Some((_, m)) = s.top(&a.at) else {
        return fail(s, EINVAL);
    };
    let mut out = remount_at_once(s, a, m);
    // See `Racing::detaches`.
    if ctx.racing.detaches.contains(&a.at) {
        also_fail(&mut out, s, EINVAL);
    }
    // See `Racing::write_access`.
    let held = |p: &Name| s.top(p).is_some_and(|(_, x)| x.id == m.id);
    if parse(&a.opts).ro && !m.ro && ctx.racing.write_access.iter().any(held) {
        also_fail(&mut out, s, EBUSY);
    }
    out
}

fn remount_at_once(s: &State, a: &RemountArgs, m: &Mount) -> Next {
    let o = parse(&a.opts);
    let mut out = Vec::new();
    match m.fs {
        FsType::Tmpfs if o.dax.is_some() || o.noquota => return fail(s, EINVAL),
        FsType::Ext4 | FsType::Xfs if o.dax.is_some() => {
            // Whether a dax option that matches the current mode is accepted
            // on remount differs between filesystems and versions.
            out.push((Outcome::Err(EINVAL), s.clone()));
        }
        _ => {}
    }
    let id = m.id.clone();
    let mut n = s.clone();
    for x in n.places.values_mut().flatten() {
        if x.id == id {
            x.ro = o.ro;
        }
    }
    if o.ro && !m.ro {
        match writers(s, &id) {
            Life::Alive => return fail(s, EBUSY),
            Life::Maybe => out.push((Outcome::Err(EBUSY), s.clone())),
            Life::Dead => {}
        }
    }
    out.push((Outcome::Ok, n));
    out
}
