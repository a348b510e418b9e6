//! File ops: dd-like writes, truncate, unlink, fsync, sync, syncfs, drop_caches.

use std::io::Write;
use std::os::fd::AsRawFd;

use cgstorm_workloads::op::{DropWhat, TruncateArgs, WriteArgs};
use cgstorm_workloads::words::IoMode;
use cgstorm_workloads::{Errno, FilePath, Name, Outcome};

use super::paths;
use super::sys::{self, AlignedBuf};

/// The open(2) flags of a dd-like writer.
pub fn write_flags(mode: IoMode) -> i32 {
    libc::O_WRONLY
        | libc::O_CREAT
        | libc::O_TRUNC
        | match mode {
            IoMode::Buffered => 0,
            IoMode::Direct => libc::O_DIRECT,
            IoMode::Dsync => libc::O_DSYNC,
        }
}

/// Writes `bytes` in `bs` blocks (the last one short) to an open file.
pub fn fill(
    f: &mut std::fs::File,
    bytes: u64,
    bs: u64,
    buf: &mut AlignedBuf,
) -> std::io::Result<()> {
    let mut left = bytes;
    let block = buf.slice_mut(bs as usize);
    block.fill(0xa5);
    while left > 0 {
        let n = left.min(bs) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

pub fn write(a: &WriteArgs) -> Outcome {
    if a.bs.0 == 0 || a.bs.0 > (64 << 20) {
        return Outcome::Err(Errno::EINVAL);
    }
    let mut f = match sys::open(&paths::file(&a.file), write_flags(a.mode)) {
        Ok(f) => f,
        Err(e) => return sys::io::<()>(Err(e)),
    };
    let mut buf = AlignedBuf::new(a.bs.0 as usize);
    if let Err(e) = fill(&mut f, a.bytes.0, a.bs.0, &mut buf) {
        return sys::io::<()>(Err(e));
    }
    if a.fsync {
        return sys::io(f.sync_all());
    }
    Outcome::Ok
}

pub fn truncate(a: &TruncateArgs) -> Outcome {
    let p = sys::cstr(&paths::file(&a.file));
    // SAFETY: p is a valid NUL-terminated path.
    sys::ret(unsafe { libc::truncate(p.as_ptr(), a.size.0 as libc::off_t) } as libc::c_long)
}

pub fn unlink(f: &FilePath) -> Outcome {
    sys::io(std::fs::remove_file(paths::file(f)))
}

pub fn fsync(f: &FilePath) -> Outcome {
    match sys::open(&paths::file(f), libc::O_RDONLY) {
        Ok(f) => sys::io(f.sync_all()),
        Err(e) => sys::io::<()>(Err(e)),
    }
}

pub fn sync() -> Outcome {
    nix::unistd::sync();
    Outcome::Ok
}

pub fn syncfs(place: &Name) -> Outcome {
    match sys::open(
        &paths::place(place.as_str()),
        libc::O_RDONLY | libc::O_DIRECTORY,
    ) {
        // SAFETY: the fd is open for the duration of the call.
        Ok(d) => sys::ret(unsafe { libc::syncfs(d.as_raw_fd()) } as libc::c_long),
        Err(e) => sys::io::<()>(Err(e)),
    }
}

pub fn drop_caches(d: DropWhat) -> Outcome {
    sys::write_file(
        std::path::Path::new("/proc/sys/vm/drop_caches"),
        &d.0.to_string(),
    )
}
