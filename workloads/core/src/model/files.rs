//! File ops: write, truncate, unlink, fsync, and the open rules they share.

use crate::errno::Errno::{self, *};
use crate::names::{FilePath, Name};
use crate::op::{TruncateArgs, WriteArgs};
use crate::outcome::Outcome;
use crate::words::{FsType, IoMode};

use super::apply::{fail, ok, Ctx, Next};
use super::state::{FileSt, FsId, Life, Mount, MountRef, SizeRange, State};
use super::target::Target;

/// How a file is opened.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    /// For writing (O_WRONLY or O_RDWR).
    pub write: bool,
    /// O_CREAT.
    pub create: bool,
    /// O_DIRECT.
    pub direct: bool,
}

impl Access {
    /// O_WRONLY|O_CREAT, optionally O_DIRECT.
    pub fn write(direct: bool) -> Access {
        Access {
            write: true,
            create: true,
            direct,
        }
    }

    /// O_RDONLY, optionally O_DIRECT.
    pub fn read(direct: bool) -> Access {
        Access {
            write: false,
            create: false,
            direct,
        }
    }
}

/// A successful open.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The filesystem.
    pub fs: FsId,
    /// The mount it went through.
    pub via: Option<MountRef>,
    /// The file is DAX.
    pub dax: bool,
}

/// Whether O_DIRECT opens succeed on this mount (`None`: the agent's tmpfs).
pub fn direct_io_ok(m: Option<&Mount>, t: &Target) -> bool {
    match m.map(|m| m.fs) {
        None | Some(FsType::Tmpfs) => t.kernel.tmpfs_direct_io(),
        Some(FsType::Ramfs) => false,
        Some(FsType::Ext4 | FsType::Xfs) => true,
    }
}

/// Every way an `open` of `f` can go (more than one when the file may or may not exist).
pub fn open_file(s: &State, f: &FilePath, a: Access, ctx: Ctx<'_>) -> Vec<Result<Opened, Errno>> {
    let (fs, via, m) = s.resolve(f);
    let exists = s.file(&fs, &f.name).map_or(Life::Dead, |x| x.exists);
    let opened = || -> Result<Opened, Errno> {
        if m.is_some_and(|m| m.ro) && a.write {
            return Err(EROFS);
        }
        if a.direct && !direct_io_ok(m, ctx.target) {
            return Err(EINVAL);
        }
        Ok(Opened {
            fs: fs.clone(),
            via: via.clone(),
            dax: m.is_some_and(|m| m.dax),
        })
    };
    match (exists, a.create) {
        (Life::Dead, false) => vec![Err(ENOENT)],
        (Life::Maybe, false) => vec![Err(ENOENT), opened()],
        _ => vec![opened()],
    }
}

/// The states after an `open` of `f` failed with `e`: unchanged, except
/// that the open may have made the file before it failed:
/// - `O_CREAT|O_DIRECT` on a filesystem without direct I/O (tmpfs before
///   6.6, ramfs) fails with EINVAL only after the file was created
///   (`do_dentry_open` checks direct I/O after the lookup made the inode);
/// - a creating open that another lane's `remount -o ro` of the place
///   beats to the open file's write access fails with EROFS after the
///   create ([`Racing::remounts_ro`](super::code::Racing)): the file may be
///   there, empty, or not (the remount came first).
pub fn after_failed_open(s: &State, f: &FilePath, a: Access, e: Errno, ctx: Ctx<'_>) -> Vec<State> {
    let (fs, _, _) = s.resolve(f);
    let created = || {
        let mut n = s.clone();
        n.files
            .entry((fs.clone(), f.name.clone()))
            .or_insert(FileSt {
                exists: Life::Alive,
                size: SizeRange::exact(0),
                image: None,
            })
            .exists = Life::Alive;
        n
    };
    if e == EINVAL && a.create && a.direct {
        return vec![created()];
    }
    let missing = s.file(&fs, &f.name).is_none_or(|x| x.exists != Life::Alive);
    if e == EROFS && a.create && missing && ctx.racing.remounts_ro.contains(&f.place) {
        return vec![s.clone(), created()];
    }
    vec![s.clone()]
}

/// The filesystem's capacity in bytes.
fn capacity(s: &State, fs: &FsId, t: &Target) -> u64 {
    match fs {
        FsId::Base(_) => t.machine.memory.0 / 2,
        FsId::Dev(d) => s.devices.get(d).map_or(0, |d| d.size),
        FsId::Anon(..) => {
            let ramfs = s
                .places
                .values()
                .flatten()
                .any(|m| &m.id == fs && m.fs == FsType::Ramfs);
            if ramfs {
                u64::MAX
            } else {
                t.machine.memory.0 / 2
            }
        }
    }
}

/// Whether writing `extra` more bytes may run out of space.
pub fn may_fill(s: &State, fs: &FsId, extra: u64, ctx: Ctx<'_>) -> bool {
    let used: u64 = s
        .files
        .iter()
        .filter(|((f, _), _)| f == fs)
        .map(|(_, st)| st.size.hi)
        .fold(0u64, u64::saturating_add);
    let cap = capacity(s, fs, ctx.target);
    used.saturating_add(extra) > cap / 100 * 85
}

/// The largest pass of a live writer task on this file, if one may be running.
pub fn writer_on(s: &State, fs: &FsId, name: &Name) -> Option<u64> {
    s.tasks
        .values()
        .filter(|t| t.life != Life::Dead)
        .filter(|t| t.writes.as_ref() == Some(&(fs.clone(), name.clone())))
        .map(|t| match t.class {
            super::state::TaskClass::Writer { bytes, .. }
            | super::state::TaskClass::Hog { bytes } => bytes,
            _ => 0,
        })
        .max()
}

/// Sets a file's size after a change, widening it while a writer task runs,
/// and to any size it had when another lane of the step writes or truncates
/// it too (`racing`): a write that started earlier but ends later extends
/// the file past what a later op set (see [`super::code::Racing::files`]).
fn set_size(n: &mut State, fs: &FsId, name: &Name, size: u64, racing: bool) {
    let mut range = match writer_on(n, fs, name) {
        Some(b) => SizeRange {
            lo: 0,
            hi: b.max(size),
        },
        None => SizeRange::exact(size),
    };
    if racing {
        if let Some(old) = n
            .file(fs, name)
            .filter(|f| f.exists != Life::Dead)
            .map(|f| f.size)
        {
            range = range.union(old);
        }
    }
    n.files.insert(
        (fs.clone(), name.clone()),
        FileSt {
            exists: Life::Alive,
            size: range,
            image: None,
        },
    );
}

pub fn write(s: &State, a: &WriteArgs, ctx: Ctx<'_>) -> Next {
    if a.bs.0 == 0 {
        return fail(s, EINVAL);
    }
    let direct = a.mode == IoMode::Direct;
    let mut out = Vec::new();
    for r in open_file(s, &a.file, Access::write(direct), ctx) {
        let o = match r {
            Ok(o) => o,
            Err(e) => {
                for n in after_failed_open(s, &a.file, Access::write(direct), e, ctx) {
                    out.push((Outcome::Err(e), n));
                }
                continue;
            }
        };
        if direct && !o.dax && (!a.bs.0.is_multiple_of(512) || !a.bytes.0.is_multiple_of(512)) {
            out.push((Outcome::Err(EINVAL), s.clone()));
            continue;
        }
        let mut n = s.clone();
        let racing = ctx.racing.files.contains(&a.file);
        set_size(&mut n, &o.fs, &a.file.name, a.bytes.0, racing);
        if may_fill(s, &o.fs, a.bytes.0, ctx) {
            let mut full = n.clone();
            if let Some(f) = full.files.get_mut(&(o.fs.clone(), a.file.name.clone())) {
                f.size.lo = 0;
            }
            out.push((Outcome::Err(ENOSPC), full));
        }
        out.push((Outcome::Ok, n));
    }
    out
}

/// The file must exist: ENOENT, or both when it may not.
fn existing(s: &State, f: &FilePath, then: impl FnOnce(&FsId, Option<&Mount>) -> Next) -> Next {
    let (fs, _, m) = s.resolve(f);
    match s.file(&fs, &f.name).map_or(Life::Dead, |x| x.exists) {
        Life::Dead => fail(s, ENOENT),
        Life::Maybe => {
            let mut v = fail(s, ENOENT);
            v.extend(then(&fs, m));
            v
        }
        Life::Alive => then(&fs, m),
    }
}

pub fn truncate(s: &State, a: &TruncateArgs, ctx: Ctx<'_>) -> Next {
    existing(s, &a.file, |fs, m| {
        if m.is_some_and(|m| m.ro) {
            return fail(s, EROFS);
        }
        let mut n = s.clone();
        let keep_image = n
            .file(fs, &a.file.name)
            .is_some_and(|f| f.size == SizeRange::exact(a.size.0));
        let image = n.file(fs, &a.file.name).and_then(|f| f.image);
        set_size(
            &mut n,
            fs,
            &a.file.name,
            a.size.0,
            ctx.racing.files.contains(&a.file),
        );
        if keep_image {
            n.files
                .get_mut(&(fs.clone(), a.file.name.clone()))
                .expect("set")
                .image = image;
        }
        ok(n)
    })
}

pub fn unlink(s: &State, f: &FilePath) -> Next {
    // do_unlinkat takes write access to the mount (mnt_want_write) before it
    // looks the name up: a read-only mount is EROFS whether or not the file
    // exists (truncate(2) looks the file up first: ENOENT wins there).
    if s.resolve(f).2.is_some_and(|m| m.ro) {
        return fail(s, EROFS);
    }
    existing(s, f, |fs, _| {
        let mut n = s.clone();
        let key = (fs.clone(), f.name.clone());
        let gone = n.files.remove(&key);
        // A writer task goes on writing the unlinked inode through the
        // descriptor it holds (it never reopens the path): what it writes
        // no longer shows under the name.
        let mut written = false;
        for t in n.tasks.values_mut() {
            if t.writes.as_ref() == Some(&key) {
                t.writes = None;
                written = true;
            }
        }
        // Descriptors and mappings keep the inode, at the size it had (a
        // file created under the name later is another inode: a 6.12
        // lockdep fuzz touched a mapping of the unlinked one after an
        // `open(O_CREAT)` had made an empty file of the name).
        let mut size = gone.map_or(
            SizeRange {
                lo: 0,
                hi: u64::MAX,
            },
            |g| g.size,
        );
        if written {
            size.hi = u64::MAX;
        }
        for fd in n.fds.values_mut() {
            if fd.unlinked.is_none() && fd.fs == key.0 && fd.file == key.1 {
                fd.unlinked = Some(size);
            }
        }
        for m in n.maps.values_mut() {
            if m.unlinked.is_none() && m.fs == key.0 && m.file == key.1 {
                m.unlinked = Some(size);
            }
        }
        ok(n)
    })
}

pub fn fsync(s: &State, f: &FilePath) -> Next {
    existing(s, f, |_, _| ok(s.clone()))
}
