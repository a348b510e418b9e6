//! Open files, mappings, and page references taken from userspace.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cgstorm_workloads::op::{MmapArgs, OpenArgs, PinArgs, TouchArgs};
use cgstorm_workloads::words::PinVia;
use cgstorm_workloads::{Errno, Name, Outcome};

use super::paths;
use super::sys::{self, in_child_within, ChildEnd};
use super::world::{MapRec, PinRec, World};

const MAP_SHARED_VALIDATE: i32 = 0x03;
const MAP_SYNC: i32 = 0x80000;
const MADV_POPULATE_READ: i32 = 22;
const MADV_POPULATE_WRITE: i32 = 23;
const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;

pub fn open(w: &World, a: &OpenArgs) -> Outcome {
    if w.fds().contains_key(&a.fd) {
        return Outcome::Err(Errno::EEXIST);
    }
    let mut flags = libc::O_RDWR;
    if a.create {
        flags |= libc::O_CREAT;
    }
    if a.direct {
        flags |= libc::O_DIRECT;
    }
    match sys::open(&paths::file(&a.file), flags) {
        Ok(f) => {
            w.fds().insert(a.fd.clone(), Arc::new(f));
            Outcome::Ok
        }
        Err(e) => sys::io::<()>(Err(e)),
    }
}

pub fn close(w: &World, fd: &Name) -> Outcome {
    match w.fds().remove(fd) {
        Some(_) => Outcome::Ok,
        None => Outcome::Err(Errno::EBADF),
    }
}

pub fn mmap(w: &World, a: &MmapArgs) -> Outcome {
    if w.maps().contains_key(&a.map) {
        return Outcome::Err(Errno::EEXIST);
    }
    let Some(f) = w.fds().get(&a.fd).cloned() else {
        return Outcome::Err(Errno::EBADF);
    };
    let flags = if a.sync {
        MAP_SHARED_VALIDATE | MAP_SYNC
    } else {
        libc::MAP_SHARED
    };
    // SAFETY: a fresh shared mapping of an open file; the kernel picks the address.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            a.len.0 as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            f.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return sys::ret(-1);
    }
    w.maps().insert(
        a.map.clone(),
        MapRec {
            addr: addr as usize,
            len: a.len.0 as usize,
        },
    );
    Outcome::Ok
}

pub fn touch(w: &World, a: &TouchArgs) -> Outcome {
    let Some(m) = w.maps().get(&a.map).copied() else {
        return Outcome::Err(Errno::EINVAL);
    };
    let advice = if a.write {
        MADV_POPULATE_WRITE
    } else {
        MADV_POPULATE_READ
    };
    // SAFETY: the range is a live mapping of ours; populate only faults pages in.
    sys::ret(unsafe { libc::madvise(m.addr as *mut libc::c_void, m.len, advice) } as libc::c_long)
}

pub fn munmap(w: &World, map: &Name) -> Outcome {
    let Some(m) = w.maps().remove(map) else {
        return Outcome::Err(Errno::EINVAL);
    };
    // SAFETY: the range was mapped by `mmap` above and is forgotten now.
    sys::ret(unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) } as libc::c_long)
}

pub fn pin(w: &World, a: &PinArgs) -> Outcome {
    if w.pins().contains_key(&a.pin) {
        return Outcome::Err(Errno::EEXIST);
    }
    let Some(m) = w.maps().get(&a.map).copied() else {
        return Outcome::Err(Errno::EINVAL);
    };
    if a.via == PinVia::Vmsplice {
        return vmsplice(w, &a.pin, m);
    }
    let Some(peer) = &a.file else {
        return Outcome::Err(Errno::EINVAL);
    };
    let flags = if a.via.reads() {
        libc::O_RDONLY | libc::O_DIRECT
    } else {
        libc::O_WRONLY | libc::O_CREAT | libc::O_DIRECT
    };
    let f = match sys::open(&paths::file(peer), flags) {
        Ok(f) => f,
        Err(e) => return sys::io::<()>(Err(e)),
    };
    let buf = m.addr as *mut libc::c_void;
    match a.via {
        PinVia::DioRead => {
            // SAFETY: buf..buf+len is our live mapping; the kernel fills it.
            let r = unsafe { libc::pread(f.as_raw_fd(), buf, m.len, 0) };
            sys::ret(r as libc::c_long)
        }
        PinVia::DioWrite => {
            // SAFETY: buf..buf+len is our live mapping; the kernel reads it.
            let r = unsafe { libc::pwrite(f.as_raw_fd(), buf, m.len, 0) };
            sys::ret(r as libc::c_long)
        }
        PinVia::AioRead | PinVia::AioWrite => aio(w, &a.pin, f, m, a.via.reads()),
        PinVia::UringRead | PinVia::UringWrite => uring(w, &a.pin, f, m, a.via.reads()),
        PinVia::Vmsplice => unreachable!("handled above"),
    }
}

fn vmsplice(w: &World, pin: &Name, m: MapRec) -> Outcome {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return sys::ret(-1);
    }
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors were just created and are owned here.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // As much of the mapping as the pipe can hold (up to pipe-max-size).
    // SAFETY: F_SETPIPE_SZ on our pipe; failure leaves the default size.
    unsafe {
        libc::fcntl(
            write.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            m.len.min(1 << 20) as libc::c_int,
        )
    };
    let iov = libc::iovec {
        iov_base: m.addr as *mut libc::c_void,
        iov_len: m.len,
    };
    // SAFETY: the iovec describes our live mapping; the pipe is non-blocking.
    let r = unsafe { libc::vmsplice(write.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
    if r < 0 {
        return sys::ret(-1);
    }
    w.pins().insert(
        pin.clone(),
        PinRec::Pipe {
            read,
            _write: write,
        },
    );
    Outcome::Ok
}

#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: i32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

#[repr(C)]
#[derive(Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

fn aio(w: &World, pin: &Name, f: File, m: MapRec, read: bool) -> Outcome {
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes a context id into ctx.
    if unsafe { libc::syscall(libc::SYS_io_setup, 1, &mut ctx) } < 0 {
        return sys::ret(-1);
    }
    let mut cb = Iocb {
        aio_lio_opcode: if read {
            IOCB_CMD_PREAD
        } else {
            IOCB_CMD_PWRITE
        },
        aio_fildes: f.as_raw_fd() as u32,
        aio_buf: m.addr as u64,
        aio_nbytes: m.len as u64,
        ..Iocb::default()
    };
    let mut cbs = [&mut cb as *mut Iocb];
    // SAFETY: one valid iocb whose buffer is our live mapping.
    let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1, cbs.as_mut_ptr()) };
    if r < 0 {
        let out = sys::ret(-1);
        // SAFETY: destroying the context we created.
        unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
        return out;
    }
    w.pins().insert(pin.clone(), PinRec::Aio { ctx, _peer: f });
    Outcome::Ok
}

fn uring(w: &World, pin: &Name, f: File, m: MapRec, read: bool) -> Outcome {
    use io_uring::{opcode, types, IoUring};
    let mut ring = match IoUring::new(4) {
        Ok(r) => r,
        Err(e) => return sys::io::<()>(Err(e)),
    };
    let fd = types::Fd(f.as_raw_fd());
    let entry = if read {
        opcode::Read::new(fd, m.addr as *mut u8, m.len as u32).build()
    } else {
        opcode::Write::new(fd, m.addr as *const u8, m.len as u32).build()
    };
    // SAFETY: the buffer (our mapping) and the file live until the pin is released.
    if unsafe { ring.submission().push(&entry) }.is_err() {
        return Outcome::Err(Errno::EAGAIN);
    }
    if let Err(e) = ring.submit() {
        return sys::io::<()>(Err(e));
    }
    w.pins().insert(
        pin.clone(),
        PinRec::Uring {
            ring: Box::new(ring),
            _peer: f,
        },
    );
    Outcome::Ok
}

pub fn release(w: &World, pin: &Name) -> Outcome {
    let Some(p) = w.pins().remove(pin) else {
        return Outcome::Err(Errno::EINVAL);
    };
    match p {
        PinRec::Pipe { read, _write } => {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                // SAFETY: reading into our own buffer.
                let n = unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
            }
            Outcome::Ok
        }
        PinRec::Aio { ctx, _peer } => {
            let mut ev = IoEvent::default();
            // SAFETY: waiting for the one request on our context into ev.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    ctx,
                    1,
                    1,
                    &mut ev,
                    std::ptr::null::<libc::timespec>(),
                )
            };
            // SAFETY: destroying the context we created.
            unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
            if r < 0 {
                sys::ret(-1)
            } else if ev.res < 0 {
                sys::errno(-ev.res as i32)
            } else {
                Outcome::Ok
            }
        }
        PinRec::Uring { mut ring, _peer } => {
            if let Err(e) = ring.submit_and_wait(1) {
                return sys::io::<()>(Err(e));
            }
            match ring.completion().next() {
                Some(c) if c.result() < 0 => sys::errno(-c.result()),
                _ => Outcome::Ok,
            }
        }
    }
}

/// Drops every pin (completing or reading out what holds the pages), then
/// every mapping and open descriptor: the end of a program, so nothing of it
/// keeps a filesystem busy or a page referenced.
/// Leaves every pin held for good (their pipes and I/O contexts are never
/// closed): the planted leak of [`cgstorm_agent::proto::RunOrder::plant_leak`].
pub fn leak_pins(w: &World) {
    for (_, p) in w.pins().drain() {
        std::mem::forget(p);
    }
}

pub fn release_all(w: &World) {
    let pins: Vec<Name> = w.pins().keys().cloned().collect();
    for p in pins {
        let _ = release(w, &p);
    }
    let maps: Vec<Name> = w.maps().keys().cloned().collect();
    for m in maps {
        let _ = munmap(w, &m);
    }
    w.fds().clear();
}

/// `STATX_ATTR_DAX`: the file's pages are the device's own, not page cache.
const STATX_ATTR_DAX: u64 = 0x0020_0000;

/// The DAX files under `roots` whose pages someone still references, once
/// a program's pins, mappings and descriptors are gone. A truncate of a
/// DAX file that someone maps waits until every page of it is idle
/// (`dax_layout_busy_page`), so the check maps each file, truncates it, and
/// a truncate that has not returned within `within` met a page still held.
/// The mapping matters: a file no one maps is truncated without a look at
/// its pages (`dax_layout_busy_page_range` returns at once), and a page
/// still referenced then only draws the kernel's one-time warning as its
/// entry goes (`dax_disassociate_entry`). Each check runs in a child,
/// killed after `within` (the wait is interruptible). A file that cannot
/// be opened for writing (a read-only mount) or is empty is not checked.
/// What each file held says.
pub fn still_referenced(roots: &[String], within: Duration) -> Vec<String> {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for r in roots {
        dax_files(Path::new(r), &mut seen, &mut files);
    }
    let mut held = Vec::new();
    for (f, size) in files {
        let c = sys::cstr(&f);
        let end = in_child_within(within, || {
            // SAFETY: open(2), mmap(2) and ftruncate(2) on a string and a
            // size made before the fork; the mapping is the child's, gone
            // with it.
            unsafe {
                let fd = libc::open(
                    c.as_ptr(),
                    libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return 1;
                }
                let m = libc::mmap(
                    std::ptr::null_mut(),
                    size as usize,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if m == libc::MAP_FAILED || libc::ftruncate(fd, 0) != 0 {
                    1
                } else {
                    0
                }
            }
        });
        if end.as_ref().is_ok_and(|e| *e == ChildEnd::Killed) {
            held.push(format!(
                "{}: truncating it waited {} ms for its pages and was killed",
                f.display(),
                within.as_millis()
            ));
        }
    }
    held
}

/// The DAX regular files below `dir` that are not empty, each once (by
/// device and inode), with their sizes.
fn dax_files(dir: &Path, seen: &mut BTreeSet<(u64, u64)>, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        if m.is_dir() {
            dax_files(&path, seen, out);
        } else if m.is_file() && m.len() > 0 && is_dax(&path) {
            out.push((path, m.len()));
        }
    }
}

/// Whether statx(2) says the file is DAX.
fn is_dax(path: &Path) -> bool {
    let c = sys::cstr(path);
    // SAFETY: statx into a zeroed local buffer, on a string of ours.
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut stx,
        ) == 0
            && stx.stx_attributes_mask & stx.stx_attributes & STATX_ATTR_DAX != 0
    }
}
