//! Loop devices, mkfs, mount, umount and remount.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cgstorm_workloads::op::{LosetupArgs, MkfsArgs, MountArgs, RemountArgs};
use cgstorm_workloads::words::{BlockFs, FsType, MountOpt};
use cgstorm_workloads::{Dev, DevKind, Errno, Name, Outcome};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::paths;
use super::sys;
use super::world::World;

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// Binds a loop slot: creates and sizes the backing file, takes a free loop
/// device and attaches the file. The slot is reserved for the whole op (a
/// racing `losetup` of the slot waits, then fails with EBUSY before touching
/// its file), so the op is atomic for the model.
pub fn losetup(w: &World, a: &LosetupArgs) -> Outcome {
    if a.dev.kind != DevKind::Loop {
        return Outcome::Err(Errno::EINVAL);
    }
    if !w.reserve_loop(&a.dev) {
        return Outcome::Err(Errno::EBUSY);
    }
    let r = bind(a);
    let out = match r {
        Ok(node) => {
            w.loops().insert(a.dev.index, node);
            super::reset::loop_bound();
            Outcome::Ok
        }
        Err(e) => sys::io::<()>(Err(e)),
    };
    w.unreserve_loop(&a.dev);
    out
}

/// How often `losetup` takes another free device when a racing bind of a
/// different slot took the one it was given (LOOP_SET_FD: EBUSY), as
/// losetup(8) does.
const BIND_TRIES: usize = 16;

fn bind(a: &LosetupArgs) -> std::io::Result<PathBuf> {
    let backing = sys::open(&paths::file(&a.file), libc::O_RDWR | libc::O_CREAT)?;
    backing.set_len(a.size.0)?;
    let ctl = sys::open(Path::new("/dev/loop-control"), libc::O_RDWR)?;
    let mut tries = 0;
    loop {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let node = PathBuf::from(format!("/dev/loop{n}"));
        let dev = sys::open(&node, libc::O_RDWR)?;
        // SAFETY: LOOP_SET_FD takes the backing file's descriptor, open for the call.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) };
        if r == 0 {
            return Ok(node);
        }
        let e = std::io::Error::last_os_error();
        tries += 1;
        if e.raw_os_error() != Some(libc::EBUSY) || tries == BIND_TRIES {
            return Err(e);
        }
    }
}

pub fn losetup_detach(w: &World, d: &Dev) -> Outcome {
    let node = w.dev_path(d);
    if d.kind != DevKind::Loop || node == Path::new(paths::NO_DEVICE) {
        return Outcome::Err(Errno::ENXIO);
    }
    let dev = match sys::open(&node, libc::O_RDONLY) {
        Ok(f) => f,
        Err(e) => return sys::io::<()>(Err(e)),
    };
    // SAFETY: LOOP_CLR_FD takes no argument.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD, 0) };
    // Taken now: the close and dev_path's stat of the gone backing_file
    // below set errno too (a detach that lost a race to another lane's
    // detach returned ENOENT, the stat's, instead of LOOP_CLR_FD's ENXIO).
    let outcome = sys::ret(r as libc::c_long);
    drop(dev);
    // A busy device is only set to autoclear; dev_path drops the slot once it is gone.
    let _ = w.dev_path(d);
    outcome
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

pub fn mkfs(w: &World, a: &MkfsArgs) -> Outcome {
    let dev = w.dev_path(&a.dev);
    super::reset::touched(&dev);
    // O_EXCL on a block device fails with EBUSY while it is mounted: the
    // kernel's answer, where mkfs would only print a message.
    match sys::open(&dev, libc::O_RDONLY | libc::O_EXCL) {
        Ok(f) => drop(f),
        Err(e) => return sys::io::<()>(Err(e)),
    }
    let mut cmd = match a.fs {
        BlockFs::Ext4 => {
            let mut c = Command::new(tool("mkfs.ext4"));
            c.args(["-q", "-F", "-b", "4096"]);
            c
        }
        BlockFs::Xfs => {
            let mut c = Command::new(tool("mkfs.xfs"));
            c.args(["-q", "-f", "-m", "reflink=0"]);
            c
        }
    };
    let out = cmd
        .arg(&dev)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) if o.status.success() => Outcome::Ok,
        Ok(o) => {
            let msg = String::from_utf8_lossy(&o.stderr);
            crate::init::kmsg::log(&format!("mkfs {:?} failed: {}", a.fs, msg.trim()));
            Outcome::Err(Errno::EIO)
        }
        Err(e) => {
            crate::init::kmsg::log(&format!("cannot run mkfs: {e}"));
            Outcome::Err(Errno::EIO)
        }
    }
}

/// mount(2) flags and the data string for a list of options.
fn options(opts: &[MountOpt]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts {
        match o {
            MountOpt::Ro => flags.insert(MsFlags::MS_RDONLY),
            MountOpt::Rw => flags.remove(MsFlags::MS_RDONLY),
            MountOpt::Lazytime => flags.insert(MsFlags::MS_LAZYTIME),
            other => data.push(other.as_str()),
        }
    }
    (flags, data.join(","))
}

pub fn mount_fs(w: &World, a: &MountArgs) -> Outcome {
    if a.fs == FsType::Xfs {
        crate::init::modules::wait_deferred();
    }
    let (flags, data) = options(&a.opts);
    let source: PathBuf = match (a.fs, &a.dev) {
        (FsType::Tmpfs | FsType::Ramfs, _) => PathBuf::from(a.fs.as_str()),
        (_, Some(d)) => w.dev_path(d),
        (_, None) => PathBuf::from("none"),
    };
    if a.dev.is_some() {
        // A mount writes its superblock, files written through it the rest.
        super::reset::touched(&source);
    }
    let data = (!data.is_empty()).then_some(data.as_str());
    match mount(
        Some(source.as_path()),
        &paths::place(a.at.as_str()),
        Some(a.fs.as_str()),
        flags,
        data,
    ) {
        Ok(()) => Outcome::Ok,
        Err(e) => sys::errno(e as i32),
    }
}

pub fn umount(place: &Name, lazy: bool) -> Outcome {
    let flags = if lazy {
        MntFlags::MNT_DETACH
    } else {
        MntFlags::empty()
    };
    match umount2(&paths::place(place.as_str()), flags) {
        Ok(()) => Outcome::Ok,
        Err(e) => sys::errno(e as i32),
    }
}

pub fn remount(a: &RemountArgs) -> Outcome {
    let (flags, data) = options(&a.opts);
    let data = (!data.is_empty()).then_some(data.as_str());
    match mount(
        None::<&str>,
        &paths::place(a.at.as_str()),
        None::<&str>,
        flags | MsFlags::MS_REMOUNT,
        data,
    ) {
        Ok(()) => Outcome::Ok,
        Err(e) => sys::errno(e as i32),
    }
}
