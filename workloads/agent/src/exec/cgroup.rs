//! cgroup ops, written straight to cgroupfs so the kernel's errno comes back.

use std::path::Path;
use std::sync::atomic::Ordering;

use cgstorm_workloads::op::{CgLimit, CgRead, CgTask, CgValue, IoMax, Reclaim, SubtreeChange};
use cgstorm_workloads::words::ReadFile;
use cgstorm_workloads::{Cg, Hier, Limit, Outcome};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::paths;
use super::sys::{self, write_file};
use super::world::World;

pub fn mkdir(cg: &Cg) -> Outcome {
    sys::io(std::fs::create_dir(paths::cg(cg)))
}

pub fn rmdir(cg: &Cg) -> Outcome {
    sys::io(std::fs::remove_dir(paths::cg(cg)))
}

pub fn subtree_control(a: &SubtreeChange) -> Outcome {
    let text: Vec<String> = a
        .change
        .iter()
        .map(|c| format!("{}{}", if c.enable { '+' } else { '-' }, c.ctrl))
        .collect();
    write_file(
        &paths::cg(&a.cg).join("cgroup.subtree_control"),
        &text.join(" "),
    )
}

/// The file a `cgroup.procs` (whole process) or `cgroup.threads` / v1 `tasks` write goes to.
pub fn attach_path(a: &CgTask, whole: bool) -> std::path::PathBuf {
    let file = match (whole, a.cg.hier) {
        (true, _) => "cgroup.procs",
        (false, Hier::V2) => "cgroup.threads",
        (false, Hier::V1) => "tasks",
    };
    paths::cg(&a.cg).join(file)
}

/// A migration (op `id` of the lane): the task's pid written to its cgroup file.
///
/// Only v2 files are kept open between writes: an open file in the v1
/// hierarchy would make `v1_umount` fail with EBUSY, while v2 is never
/// unmounted and open files do not hold a cgroup against rmdir.
pub fn attach(w: &World, id: usize, a: &CgTask, whole: bool, cache: &mut sys::FdCache) -> Outcome {
    let pid = w.pid_text(&a.task);
    match a.cg.hier {
        Hier::V2 => cache.write(id, || attach_path(a, whole), pid.as_bytes()),
        Hier::V1 => write_file(&attach_path(a, whole), &pid),
    }
}

fn limit_text(l: Limit, v1: bool) -> String {
    match l {
        Limit::Max if v1 => "-1".into(),
        Limit::Max => "max".into(),
        Limit::Bytes(b) => b.0.to_string(),
    }
}

/// A v2 memory knob (`memory.max`, …).
pub fn knob(a: &CgLimit, file: &str) -> Outcome {
    write_file(&paths::cg(&a.cg).join(file), &limit_text(a.value, false))
}

pub fn limit_in_bytes(a: &CgLimit) -> Outcome {
    write_file(
        &paths::cg(&a.cg).join("memory.limit_in_bytes"),
        &limit_text(a.value, true),
    )
}

pub fn reclaim(a: &Reclaim) -> Outcome {
    write_file(
        &paths::cg(&a.cg).join("memory.reclaim"),
        &a.bytes.0.to_string(),
    )
}

pub fn io_max(w: &World, a: &IoMax) -> Outcome {
    let dev = w.dev_path(&a.dev);
    // A device the guest lacks is named 0:0, which the kernel answers with ENODEV.
    let majmin = std::fs::metadata(&dev)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            let r = m.rdev();
            format!("{}:{}", libc::major(r), libc::minor(r))
        })
        .unwrap_or_else(|_| "0:0".into());
    let mut text = majmin;
    for (k, v) in [
        ("rbps", a.rbps),
        ("wbps", a.wbps),
        ("riops", a.riops),
        ("wiops", a.wiops),
    ] {
        if let Some(v) = v {
            text.push_str(&format!(" {k}={}", limit_text(v, false)));
        }
    }
    write_file(&paths::cg(&a.cg).join("io.max"), &text)
}

pub fn kill(cg: &Cg) -> Outcome {
    write_file(&paths::cg(cg).join("cgroup.kill"), "1")
}

pub fn read(a: &CgRead) -> Outcome {
    let name = match (a.file, a.cg.hier) {
        (ReadFile::MemoryCurrent, Hier::V1) => "memory.usage_in_bytes",
        (f, _) => f.as_str(),
    };
    sys::read_file(&paths::cg(&a.cg).join(name))
}

/// Mounts the v1 memory hierarchy on [`paths::CG1`], which the agent made
/// before the program: the op is the mount(2) alone, so a fault injected
/// into it (`fail_nth`) lands in the kernel's mount code, not in a mkdir
/// of the mount point (tmpfs returns ENOSPC when it cannot allocate an
/// inode, which the model rightly does not expect of a mount).
pub fn v1_mount() -> Outcome {
    let r = mount(
        Some("cgroup"),
        Path::new(paths::CG1),
        Some("cgroup"),
        MsFlags::empty(),
        Some("memory"),
    );
    match r {
        Ok(()) => {
            paths::V1_MOUNTS.fetch_add(1, Ordering::SeqCst);
            Outcome::Ok
        }
        Err(e) => sys::errno(e as i32),
    }
}

pub fn v1_umount() -> Outcome {
    // Not mounted: the mount point may be gone or a plain directory; the
    // model's answer is the one for a missing mount point.
    let at = if paths::V1_MOUNTS.load(Ordering::SeqCst) == 0 {
        paths::NO_V1
    } else {
        paths::CG1
    };
    match umount2(at, MntFlags::empty()) {
        Ok(()) => {
            let _ = paths::V1_MOUNTS
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            Outcome::Ok
        }
        // Two lanes' v1_umounts both found it mounted, and the other's
        // umount came first: the kernel says the mount point is no mount
        // (EINVAL), and for the model, one of two umounts in a race finds
        // the hierarchy unmounted (ENOENT). Still mounted, the EINVAL is
        // the kernel's, and stays.
        Err(nix::errno::Errno::EINVAL) if !crate::init::mounts::is_mounted(paths::CG1) => {
            sys::errno(libc::ENOENT)
        }
        Err(e) => sys::errno(e as i32),
    }
}

pub fn move_charge(a: &CgValue) -> Outcome {
    write_file(
        &paths::cg(&a.cg).join("memory.move_charge_at_immigrate"),
        &a.value.to_string(),
    )
}

pub fn force_empty(cg: &Cg) -> Outcome {
    write_file(&paths::cg(cg).join("memory.force_empty"), "0")
}
