//! Mounting the pseudo filesystems the workloads need: proc, sysfs, devtmpfs,
//! cgroup2 and debugfs (plus a tmpfs on /tmp). Already mounted targets (under
//! virtme-ng) are left alone.

use std::fs;
use std::path::Path;

use nix::mount::{mount, MsFlags};

/// One mount to make.
struct Mount {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    required: bool,
}

const MOUNTS: &[Mount] = &[
    Mount {
        fstype: "proc",
        target: "/proc",
        flags: nosuid_nodev_noexec(),
        required: true,
    },
    Mount {
        fstype: "sysfs",
        target: "/sys",
        flags: nosuid_nodev_noexec(),
        required: true,
    },
    Mount {
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        required: true,
    },
    Mount {
        fstype: "cgroup2",
        target: "/sys/fs/cgroup",
        flags: nosuid_nodev_noexec(),
        required: true,
    },
    Mount {
        fstype: "debugfs",
        target: "/sys/kernel/debug",
        flags: nosuid_nodev_noexec(),
        required: false,
    },
    Mount {
        fstype: "tmpfs",
        target: "/tmp",
        flags: MsFlags::MS_NOSUID,
        required: false,
    },
];

const fn nosuid_nodev_noexec() -> MsFlags {
    MsFlags::MS_NOSUID
        .union(MsFlags::MS_NODEV)
        .union(MsFlags::MS_NOEXEC)
}

/// Mounts proc on /proc (needed before the guard can read the command line).
pub fn mount_proc() -> nix::Result<()> {
    let _ = fs::create_dir_all("/proc");
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        nosuid_nodev_noexec(),
        None::<&str>,
    )
}

/// Mounts everything in the table that is not mounted yet. Returns an error
/// text for a required mount that failed, and warnings for optional ones.
pub fn mount_all() -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for m in MOUNTS {
        if is_mounted(m.target) {
            continue;
        }
        let _ = fs::create_dir_all(m.target);
        if let Err(e) = mount(
            Some(m.fstype),
            m.target,
            Some(m.fstype),
            m.flags,
            None::<&str>,
        ) {
            let text = format!("mount {} on {}: {e}", m.fstype, m.target);
            if m.required {
                return Err(text);
            }
            warnings.push(text);
        }
    }
    Ok(warnings)
}

/// Whether `target` is a mount point, from /proc/self/mountinfo (false when
/// proc is not mounted yet).
pub fn is_mounted(target: &str) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(mp) == Path::new(target))
}
