//! Thin syscall helpers that return the kernel's errno as an [`Outcome`].

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use cgstorm_workloads::{Errno, Outcome};

/// The outcome for an errno number. Numbers the workload crate does not name
/// are reported as EIO and logged, so they are never silently dropped.
pub fn errno(n: i32) -> Outcome {
    match Errno::from_number(n) {
        Some(e) => Outcome::Err(e),
        None => {
            crate::init::kmsg::log(&format!(
                "errno {n} has no name in cgstorm; reported as EIO"
            ));
            Outcome::Err(Errno::EIO)
        }
    }
}

/// The outcome of an `io::Result`.
pub fn io<T>(r: io::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(e) => errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The outcome of a libc return value (`-1` means failure with errno).
pub fn ret(r: libc::c_long) -> Outcome {
    if r < 0 {
        errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    } else {
        Outcome::Ok
    }
}

/// Opens a file for writing without creating it, and writes `data` in one
/// `write(2)`: the way `echo X > cgroupfile` does, so the errno is exact.
pub fn write_file(path: &Path, data: &str) -> Outcome {
    let mut f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) => return io::<()>(Err(e)),
    };
    io(f.write(data.as_bytes()))
}

/// Open cgroup control files, per lane and op: a migration loop writes the
/// same two cgroup.procs files thousands of times, and an open+close per
/// write would cost more than the migration itself under TCG.
///
/// Results are exactly those of a fresh `open` + `write`: a cached file whose
/// cgroup was removed answers ENODEV, and then the write is redone with a
/// fresh open (ENOENT if the cgroup is gone, success if it was made again).
#[derive(Default)]
pub struct FdCache {
    slots: Vec<Option<(std::path::PathBuf, Option<File>)>>,
}

impl FdCache {
    /// Writes `data` in one `write(2)` to op `id`'s file, `path()` the first time.
    pub fn write(
        &mut self,
        id: usize,
        path: impl FnOnce() -> std::path::PathBuf,
        data: &[u8],
    ) -> Outcome {
        if self.slots.len() <= id {
            self.slots.resize_with(id + 1, || None);
        }
        let (path, file) = self.slots[id].get_or_insert_with(|| (path(), None));
        if let Some(f) = file {
            match f.write(data) {
                Ok(_) => return Outcome::Ok,
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => *file = None,
                Err(e) => return io::<()>(Err(e)),
            }
        }
        let mut f = match OpenOptions::new().write(true).open(&*path) {
            Ok(f) => f,
            Err(e) => return io::<()>(Err(e)),
        };
        let r = f.write(data);
        if !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENODEV)) {
            *file = Some(f);
        }
        io(r)
    }
}

/// Reads a file whole.
pub fn read_file(path: &Path) -> Outcome {
    io(std::fs::read(path))
}

/// Opens `path` with raw `open(2)` flags and mode 0644.
pub fn open(path: &Path, flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
        .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
        .custom_flags(flags & !libc::O_ACCMODE)
        .mode(0o644)
        .open(path)
}

/// A path as a C string.
pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec into the valid pointer we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A page-aligned, zero-filled buffer for O_DIRECT I/O.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain memory owned by this value; nothing aliases it.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of `len` bytes (at least one page).
    pub fn new(len: usize) -> AlignedBuf {
        let len = len.max(4096);
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory for an I/O buffer");
        AlignedBuf { ptr, len }
    }

    /// The first `n` bytes, writable.
    pub fn slice_mut(&mut self, n: usize) -> &mut [u8] {
        // SAFETY: ptr is valid for len bytes, n is clamped, and &mut self is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, n.min(self.len)) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, 4096).expect("valid layout");
        // SAFETY: allocated in `new` with this same layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}
/// How a child of [`in_child_within`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this code.
    Exited(i32),
    /// A signal ended it (this wait status).
    Signalled(i32),
    /// It had not ended within the time given and was killed.
    Killed,
}

/// Runs `body` in a forked child and waits up to `timeout` for it to end;
/// kills it then (SIGKILL, which also ends an interruptible wait in the
/// kernel). `body`'s return is the child's exit code. For a system call
/// that may block for good, made from the reset's thread.
///
/// `body` runs after a fork of a threaded process: it must make only
/// async-signal-safe calls (plain system calls) on data made before the
/// fork, and never return into Rust code that allocates or locks.
pub fn in_child_within(timeout: Duration, body: impl FnOnce() -> i32) -> io::Result<ChildEnd> {
    // SAFETY: the child runs `body` (held to async-signal-safe calls, as
    // documented) and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = body();
        // SAFETY: ending the child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    let end = std::time::Instant::now() + timeout;
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child into a local status word.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 || std::time::Instant::now() >= end {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Ok(ChildEnd::Killed);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(if libc::WIFEXITED(status) {
        ChildEnd::Exited(libc::WEXITSTATUS(status))
    } else {
        ChildEnd::Signalled(status)
    })
}
