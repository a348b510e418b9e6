//! Open files, mappings and page references: the DAX half of the vocabulary.
//!
//! A mapping keeps its file (and so its mount) busy until `munmap`. Page
//! references taken by `pin` do not hold the file: after munmap, close and
//! unlink the mount can go while the pages are still referenced, which is
//! exactly the window seed 004 is about. AIO and io_uring pins keep their
//! O_DIRECT peer file open until `release` reaps them.

use crate::errno::Errno::{self, *};
use crate::names::Name;
use crate::op::{MmapArgs, OpenArgs, PinArgs, TouchArgs};
use crate::outcome::Outcome;
use crate::words::FsType;

use super::apply::{fail, ok, Ctx, Next};
use super::files::{after_failed_open, open_file, Access};
use super::state::{Fd, FileSt, FsId, Life, Map, Pin, SizeRange, State};

const PAGE: u64 = 4096;

pub fn open(s: &State, a: &OpenArgs, ctx: Ctx<'_>) -> Next {
    if s.fds.contains_key(&a.fd) {
        return fail(s, EEXIST);
    }
    let access = Access {
        write: true,
        create: a.create,
        direct: a.direct,
    };
    open_file(s, &a.file, access, ctx)
        .into_iter()
        .flat_map(|r| match r {
            Err(e) => after_failed_open(s, &a.file, access, e, ctx)
                .into_iter()
                .map(|n| (Outcome::Err(e), n))
                .collect::<Vec<_>>(),
            Ok(o) => {
                let mut n = s.clone();
                n.files
                    .entry((o.fs.clone(), a.file.name.clone()))
                    .or_insert(FileSt {
                        exists: Life::Alive,
                        size: SizeRange::exact(0),
                        image: None,
                    })
                    .exists = Life::Alive;
                n.fds.insert(
                    a.fd.clone(),
                    Fd {
                        fs: o.fs,
                        file: a.file.name.clone(),
                        via: o.via,
                        dax: o.dax,
                        direct: a.direct,
                        unlinked: None,
                    },
                );
                vec![(Outcome::Ok, n)]
            }
        })
        .collect()
}

pub fn close(s: &State, fd: &Name) -> Next {
    if !s.fds.contains_key(fd) {
        return fail(s, EBADF);
    }
    let mut n = s.clone();
    n.fds.remove(fd);
    ok(n)
}

pub fn mmap(s: &State, a: &MmapArgs) -> Next {
    if s.maps.contains_key(&a.map) {
        return fail(s, EEXIST);
    }
    let Some(fd) = s.fds.get(&a.fd) else {
        return fail(s, EBADF);
    };
    if a.len.0 == 0 {
        return fail(s, EINVAL);
    }
    if a.sync && !fd.dax {
        return fail(s, EOPNOTSUPP);
    }
    let mut n = s.clone();
    n.maps.insert(
        a.map.clone(),
        Map {
            fs: fd.fs.clone(),
            file: fd.file.clone(),
            via: fd.via.clone(),
            dax: fd.dax,
            len: a.len.0,
            unlinked: fd.unlinked,
        },
    );
    ok(n)
}

/// The size of the mapped inode: the size it had when its name was
/// unlinked, or the size of the file under its name (`None`: not known).
/// While another lane writes or truncates that file (`raced`) it may be
/// anything from empty up: a write truncates its file when it starts and
/// extends it as it goes.
fn mapped_size(s: &State, m: &Map, raced: bool) -> Option<SizeRange> {
    let size = m
        .unlinked
        .or_else(|| s.file(&m.fs, &m.file).map(|f| f.size))?;
    Some(if raced && m.unlinked.is_none() {
        SizeRange { lo: 0, ..size }
    } else {
        size
    })
}

/// Whether another lane of the step may write or truncate the mapped file
/// (`Racing::files`, resolved to the mapping's filesystem).
fn file_raced(s: &State, m: &Map, ctx: Ctx<'_>) -> bool {
    ctx.racing
        .files
        .iter()
        .any(|f| f.name == m.file && s.resolve(f).0 == m.fs)
}

/// Whether the mapping reaches past the end of its file: certainly, maybe, or not.
fn past_eof(s: &State, m: &Map, raced: bool) -> Life {
    past_eof_within(s, m, m.len, raced)
}

/// Whether the first `len` bytes of the mapping reach past the end of its file.
fn past_eof_within(s: &State, m: &Map, len: u64, raced: bool) -> Life {
    let pages = len.div_ceil(PAGE) * PAGE;
    match mapped_size(s, m, raced) {
        // Unknown (the filesystem went): the inode lives on, but its size is not tracked.
        None => Life::Maybe,
        Some(size) => {
            let covered = |size: u64| size.div_ceil(PAGE) * PAGE >= pages;
            match (covered(size.lo), covered(size.hi)) {
                (true, _) => Life::Dead,
                (false, true) => Life::Maybe,
                (false, false) => Life::Alive,
            }
        }
    }
}

/// Whether a read from a peer of `peer` size into the mapping faults.
/// A read moves at most the peer's size from its start: from an empty peer
/// it moves nothing and touches no page of the mapping (a read at the end
/// of a file returns 0 before looking at the buffer; fuzz on the 6.12
/// debug kernel: a dio_read pin from an empty file into a mapping of that
/// same file returned ok). A read that moves bytes may touch the whole
/// buffer (direct I/O pins it), so only the bytes it certainly moves make
/// a fault certain.
fn read_faults(s: &State, m: &Map, peer: Option<SizeRange>, within: u64, raced: bool) -> Life {
    let Some(peer) = peer else {
        return past_eof_within(s, m, within, raced);
    };
    if peer.hi == 0 || past_eof_within(s, m, within, raced) == Life::Dead {
        return Life::Dead;
    }
    let certain = peer.lo.min(within).min(m.len);
    if peer.lo > 0 && past_eof_within(s, m, certain, raced) == Life::Alive {
        Life::Alive
    } else {
        Life::Maybe
    }
}

/// EFAULT when the pages past the end of the file are touched, or both.
fn faults(s: &State, m: &Map, raced: bool, n: State) -> Next {
    faults_leaving(past_eof(s, m, raced), s.clone(), n)
}

/// [`faults`] for an access that faults as `life` says, where a fault
/// leaves `failed` (what the op did before the fault: a peer opened with
/// O_CREAT exists).
fn faults_leaving(life: Life, failed: State, n: State) -> Next {
    match life {
        Life::Alive => vec![(Outcome::Err(EFAULT), failed)],
        Life::Maybe => vec![(Outcome::Err(EFAULT), failed), (Outcome::Ok, n)],
        Life::Dead => ok(n),
    }
}

/// What a pin a fault failed may return beyond ENOMEM, and the states it
/// may leave beyond `s`. vmsplice pins through a pipe: `create_pipe_files`
/// returns ENFILE when `get_pipe_inode` cannot allocate the inode or the
/// pipe (fs/pipe.c). A writing pin opens its peer with `O_CREAT` before
/// anything else can fail, so a fault after the create leaves the peer
/// there; a fault in the create itself fails it as the filesystem's create
/// does ([`create_fault_enospc`]).
pub fn faulted_pin(s: &State, a: &PinArgs) -> (Vec<Errno>, Vec<State>) {
    if a.via == crate::words::PinVia::Vmsplice {
        return (vec![ENFILE], Vec::new());
    }
    let Some(peer) = a.file.as_ref().filter(|_| !a.via.reads()) else {
        return (Vec::new(), Vec::new());
    };
    let (fs, _, m) = s.resolve(peer);
    let creates = s.file(&fs, &peer.name).map_or(Life::Dead, |f| f.exists) != Life::Alive;
    let errnos = if creates && create_fault_enospc(m.map(|m| m.fs)) {
        vec![ENOSPC]
    } else {
        Vec::new()
    };
    (errnos, vec![with_peer_created(s, (fs, peer.name.clone()))])
}

/// Whether a create on `fs` (`None`: the agent's tmpfs of places) whose
/// allocation fails returns ENOSPC: tmpfs when `new_inode` fails
/// (`__shmem_get_inode`, mm/shmem.c), ramfs when `ramfs_get_inode` does
/// (`ramfs_mknod`, fs/ramfs/inode.c), xfs when no allocation group's AGI
/// or AGF can be read (`xfs_dialloc_good_ag`, `xfs_dialloc`:
/// fs/xfs/libxfs/xfs_ialloc.c). ext4 returns ENOMEM (`__ext4_new_inode`).
fn create_fault_enospc(fs: Option<FsType>) -> bool {
    matches!(fs, None | Some(FsType::Tmpfs | FsType::Ramfs | FsType::Xfs))
}

/// `s` with the peer of a writing pin created, as its `open(O_CREAT)` does
/// before any byte moves: a write that then fails (a fault past the end of
/// the mapped file, a misaligned length) leaves it there, at its old size
/// or empty.
fn with_peer_created(s: &State, key: (FsId, Name)) -> State {
    let mut c = s.clone();
    let f = c.files.entry(key).or_insert(FileSt {
        exists: Life::Dead,
        size: SizeRange::exact(0),
        image: None,
    });
    if f.exists != Life::Alive {
        let hi = if f.exists == Life::Maybe {
            f.size.hi
        } else {
            0
        };
        f.exists = Life::Alive;
        f.size = SizeRange { lo: 0, hi };
    }
    c
}

/// `next`, and, when another lane maps `map` in this step and the model
/// has it mapped, the op finding no such mapping yet: EINVAL, nothing
/// changed ([`Racing::mmaps`](super::code::Racing)).
pub fn named_late(s: &State, map: &Name, ctx: Ctx<'_>, mut next: Next) -> Next {
    if ctx.racing.mmaps.contains(map) && s.maps.contains_key(map) {
        next.push((Outcome::Err(EINVAL), s.clone()));
    }
    next
}

pub fn touch(s: &State, a: &TouchArgs, ctx: Ctx<'_>) -> Next {
    let Some(m) = s.maps.get(&a.map) else {
        return fail(s, EINVAL);
    };
    // The agent uses MADV_POPULATE_READ/WRITE (5.14), which turns SIGBUS into EFAULT.
    if !ctx.target.kernel.at_least(5, 14) {
        return fail(s, EINVAL);
    }
    // Another lane's write of the mapped file may not have extended it
    // over the mapping yet (a Debian fuzz: a touch of a 1M mapping, 6 ms
    // into a 64M write of its file, EFAULT).
    faults(s, m, file_raced(s, m, ctx), s.clone())
}

pub fn munmap(s: &State, map: &Name) -> Next {
    if !s.maps.contains_key(map) {
        return fail(s, EINVAL);
    }
    let mut n = s.clone();
    n.maps.remove(map);
    ok(n)
}

pub fn pin(s: &State, a: &PinArgs, ctx: Ctx<'_>) -> Next {
    if s.pins.contains_key(&a.pin) {
        return fail(s, EEXIST);
    }
    let Some(m) = s.maps.get(&a.map) else {
        return fail(s, EINVAL);
    };
    let raced = file_raced(s, m, ctx);
    let held = a.via.is_held();
    let mut out = Vec::new();
    let peer_opened = if a.via.uses_peer() {
        let Some(peer) = &a.file else {
            return fail(s, EINVAL);
        };
        // A read from the peer fills the mapping; a write sends it to the peer.
        let reads = a.via.reads();
        let access = if reads {
            Access::read(true)
        } else {
            Access::write(true)
        };
        let mut opened = None;
        for r in open_file(s, peer, access, ctx) {
            match r {
                Err(e) => out.extend(
                    after_failed_open(s, peer, access, e, ctx)
                        .into_iter()
                        .map(|n| (Outcome::Err(e), n)),
                ),
                Ok(o) => {
                    if !o.dax && m.len % 512 != 0 {
                        let left = if reads {
                            s.clone()
                        } else {
                            with_peer_created(s, (o.fs.clone(), peer.name.clone()))
                        };
                        out.push((Outcome::Err(EINVAL), left));
                    } else {
                        opened = Some((o, reads, peer.name.clone()));
                    }
                }
            }
        }
        match opened {
            Some(o) => Some(o),
            None => return out,
        }
    } else {
        None
    };
    let mut n = s.clone();
    let mut writes = None;
    if let Some((o, reads, name)) = &peer_opened {
        if !reads {
            let key = (o.fs.clone(), name.clone());
            let (old_lo, old) = n.files.get(&key).map_or((0, 0), |f| (f.size.lo, f.size.hi));
            writes = Some((key.clone(), old_lo));
            // A write from a mapping that reaches past its file's end stops
            // at the first page it cannot fault in: a short write of the
            // pages before it (fuzz on the 6.12 lockdep kernel: a uring
            // write of a 2M mapping of a 1M file left its peer at 1M).
            let least = match past_eof(s, m, raced) {
                Life::Dead => m.len,
                _ => mapped_size(s, m, raced)
                    .map_or(0, |size| size.lo.div_ceil(PAGE) * PAGE)
                    .min(m.len),
            };
            n.files.insert(
                key,
                FileSt {
                    exists: Life::Alive,
                    size: SizeRange {
                        lo: old_lo.max(least),
                        hi: old.max(m.len),
                    },
                    image: None,
                },
            );
        }
    }
    // Whether the pages it touches go past the mapped file's end. A peer
    // on tmpfs takes O_DIRECT but copies through its page cache: a
    // synchronous read or write from the mapping stops at the first page
    // it cannot fault in and returns what it moved, failing only when that
    // is the first page (shmem_file_read_iter, generic_perform_write:
    // `written ? written : status`; fuzz on the 6.12 debug kernel: a
    // dio_write of a 2M mapping of a 64K file to tmp/f0 returned ok and
    // left 64K). Direct I/O proper (ext4, xfs: iomap) fails the whole
    // write at a fault (`iomap_dio_set_error`).
    let copies = peer_opened.is_some()
        && !held
        && a.file
            .as_ref()
            .is_some_and(|f| matches!(s.resolve(f).2.map(|m| m.fs), None | Some(FsType::Tmpfs)));
    let within = if copies { PAGE } else { m.len };
    let touches = match &peer_opened {
        Some((o, true, name)) => {
            read_faults(s, m, s.file(&o.fs, name).map(|f| f.size), within, raced)
        }
        _ => past_eof_within(s, m, within, raced),
    };
    if held {
        n.pins.insert(
            a.pin.clone(),
            Pin {
                peer: peer_opened.as_ref().and_then(|(o, _, _)| o.via.clone()),
                may_fault: touches != Life::Dead,
                writes,
            },
        );
        // Async I/O reports a fault when it is reaped. vmsplice fails at
        // once, and only when it cannot have its first page: it splices
        // the pages it could pin before the first one past the file's end
        // (`iter_to_pipe`, fs/splice.c: `total ? total : ret`; fuzz on
        // Debian's kernel: a vmsplice of a 2M mapping of a 4K file returned
        // ok).
        if a.via == crate::words::PinVia::Vmsplice {
            out.extend(faults_leaving(
                past_eof_within(s, m, 1, raced),
                s.clone(),
                n,
            ));
        } else {
            out.push((Outcome::Ok, n));
        }
        return out;
    }
    let failed = match &peer_opened {
        Some((o, false, name)) => with_peer_created(s, (o.fs.clone(), name.clone())),
        _ => s.clone(),
    };
    out.extend(faults_leaving(touches, failed, n));
    out
}

pub fn release(s: &State, pin: &Name) -> Next {
    let Some(p) = s.pins.get(pin) else {
        return fail(s, EINVAL);
    };
    let mut n = s.clone();
    n.pins.remove(pin);
    if p.may_fault {
        // An async write that faulted (a page of its mapping was truncated
        // away while it ran) returns the error and leaves its peer at the
        // size before it: seen on the 6.12 debug kernel, an aio_write from
        // a DAX mapping truncated meanwhile left its new peer empty.
        let mut failed = n.clone();
        if let Some((key, before)) = &p.writes {
            if let Some(f) = failed.files.get_mut(key) {
                f.size.lo = f.size.lo.min(*before);
            }
        }
        vec![(Outcome::Err(EFAULT), failed), (Outcome::Ok, n)]
    } else {
        ok(n)
    }
}
