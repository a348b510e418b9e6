//! Where the program's names live in the guest: cgroups, places, devices.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use cgstorm_workloads::{Cg, Dev, DevKind, FilePath, Hier};

/// cgroup v2, mounted by init.
pub const CG2: &str = "/sys/fs/cgroup";
/// The v1 memory hierarchy's mount point (made before each program, so
/// `v1_mount` is the mount alone; the reset removes it). Under /tmp, a tmpfs both in cgstorm's initramfs and under
/// virtme-ng (whose root is the host's, read-only).
pub const CG1: &str = "/tmp/cgstorm/v1";
/// The tmpfs holding one directory per place.
pub const PLACES: &str = "/tmp/cgstorm/mnt";
/// A path that never exists: devices the program has not got resolve to it.
pub const NO_DEVICE: &str = "/dev/cgstorm-no-such-device";
/// Where v1 cgroups resolve while no v1 hierarchy is mounted: a path that
/// never exists, so every op on them is ENOENT, as the model says. (The
/// mount point itself cannot serve: between a racing `v1_umount` and
/// `v1_mount` it may be a plain directory on /tmp, in which `mkdir`
/// would succeed.)
pub const NO_V1: &str = "/tmp/cgstorm/no-v1-hierarchy";

/// How many times the v1 hierarchy is mounted on [`CG1`] now (`v1_mount`
/// and `v1_umount` count; mounts can stack when lanes race).
pub static V1_MOUNTS: AtomicUsize = AtomicUsize::new(0);

/// A cgroup's directory.
pub fn cg(c: &Cg) -> PathBuf {
    let base = match c.hier {
        Hier::V2 => CG2,
        Hier::V1 if V1_MOUNTS.load(Ordering::SeqCst) == 0 => NO_V1,
        Hier::V1 => CG1,
    };
    let mut p = PathBuf::from(base);
    for part in &c.parts {
        p.push(part);
    }
    p
}

/// A place's directory.
pub fn place(name: &str) -> PathBuf {
    PathBuf::from(PLACES).join(name)
}

/// A file's path.
pub fn file(f: &FilePath) -> PathBuf {
    place(f.place.as_str()).join(f.name.as_str())
}

/// The device node of a scratch disk or pmem device (loop devices come from
/// the world's loop slots).
pub fn fixed_dev(d: &Dev) -> Option<PathBuf> {
    match d.kind {
        DevKind::Scratch => Some(PathBuf::from(format!(
            "/dev/vd{}",
            (b'a' + d.index) as char
        ))),
        DevKind::Pmem => Some(PathBuf::from(format!("/dev/pmem{}", d.index))),
        DevKind::Loop => None,
    }
}
