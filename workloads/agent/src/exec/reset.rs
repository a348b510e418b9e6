//! Putting the guest back into its state right after boot, between programs.
//!
//! A campaign runs many programs in one VM. The model predicts each from the
//! initial state (only the v2 root, nothing enabled, no v1 hierarchy, no
//! mounts or loop devices, devices unformatted), so whatever a program left
//! must go before the next one starts: otherwise its leftovers come back as
//! the next program's false findings. What cannot be undone is reported, and
//! the host then boots a fresh VM instead.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};

use super::paths::{CG1, CG2, PLACES};

const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
/// `BLKFLSBUF`: write back and drop a block device's buffer cache.
const BLKFLSBUF: libc::c_ulong = 0x1261;
/// How much of each device's start (and end) is zeroed: enough to erase
/// the ext4 and xfs superblocks (and their signatures) that `mount` reads.
const WIPE: u64 = 1 << 20;
/// How long dying cgroups, detaching loop devices and exiting tasks get.
/// Generous: under TCG freeing a memcg's pages takes a while.
const SETTLE: Duration = Duration::from_secs(20);

/// `/proc/sys/kernel/tainted` before the first program (module taints from
/// the boot are not the programs' doing); `u64::MAX` until read.
static BASE_TAINT: AtomicU64 = AtomicU64::new(u64::MAX);

fn taint() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/tainted")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Records the kernel's taint before the first program.
pub fn note_base_taint() {
    let _ = BASE_TAINT.compare_exchange(u64::MAX, taint(), Ordering::SeqCst, Ordering::SeqCst);
}

/// Undoes what programs did; returns what could not be undone (empty: the
/// guest is as the model's initial state says). A kernel tainted since the
/// first program (a WARN, a BUG, a lockdep splat turned lockdep off) cannot
/// be undone either: the next program would run on a damaged kernel.
pub fn reset() -> Vec<String> {
    let mut left = Vec::new();
    let base = BASE_TAINT.load(Ordering::SeqCst);
    let now = taint();
    if base != u64::MAX && now & !base != 0 {
        left.push(format!("the kernel is tainted ({now:#x}, was {base:#x})"));
    }
    let deadline = Instant::now() + SETTLE;
    unmount_places(&mut left, deadline);
    remove_v1(&mut left, deadline);
    remove_v2(&mut left, deadline);
    settle_dying(&mut left, deadline);
    blank_devices(&mut left);
    left
}

/// The mount points at or below `root`, innermost (last mounted) first.
fn mounts_under(root: &str) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == root || m.starts_with(&format!("{root}/")))
        .map(unescape)
        .collect();
    out.reverse();
    out
}

/// Mountinfo escapes spaces and the like as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bound loop devices (`/dev/loopN`).
fn bound_loops() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("loop"))
        .filter(|n| {
            Path::new("/sys/block")
                .join(n)
                .join("loop/backing_file")
                .exists()
        })
        .map(|n| Path::new("/dev").join(n))
        .collect()
}

/// Unmounts everything on the places, detaches loop devices (whose backing
/// files may live on those filesystems, or hold them busy), then the places'
/// own tmpfs, so every file the program wrote is gone. Rounds, because a
/// loop device's filesystem must go before the loop, and the loop before the
/// filesystem holding its backing file.
fn unmount_places(left: &mut Vec<String>, deadline: Instant) {
    loop {
        let mut progress = false;
        for m in mounts_under(PLACES) {
            if umount2(m.as_str(), MntFlags::empty()).is_ok() {
                progress = true;
            }
        }
        for l in bound_loops() {
            if let Ok(f) = OpenOptions::new().read(true).open(&l) {
                // SAFETY: LOOP_CLR_FD takes no argument.
                unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD, 0) };
            }
        }
        let (mounts, loops) = (mounts_under(PLACES), bound_loops());
        if mounts.is_empty() && loops.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            left.extend(mounts.iter().map(|m| format!("{m} is still mounted")));
            left.extend(
                loops
                    .iter()
                    .map(|l| format!("{} is still bound", l.display())),
            );
            return;
        }
        if !progress {
            // Detaching loops and lazily unmounted filesystems finish
            // asynchronously; give them a moment.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Cgroup directories below `root`, deepest first.
fn cgroups_below(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                walk(&p, out);
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// Kills every process in `cg` (v1 or v2, by its pid list) with SIGKILL.
fn kill_members(cg: &Path) {
    for file in ["cgroup.procs", "tasks"] {
        let text = std::fs::read_to_string(cg.join(file)).unwrap_or_default();
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if pid > 1 && pid != std::process::id() as i32 {
                // SAFETY: sending a signal has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    // Reap what were our children (task processes no program waited for).
    // SAFETY: non-blocking reap of any child into a local status word.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// Removes every cgroup below `root`, killing their members; true if all went.
fn remove_cgroups(root: &Path, left: &mut Vec<String>, deadline: Instant) -> bool {
    loop {
        let mut all = true;
        for cg in cgroups_below(root) {
            let _ = std::fs::write(cg.join("cgroup.kill"), "1");
            kill_members(&cg);
            if std::fs::remove_dir(&cg).is_err() {
                all = false;
            }
        }
        if all {
            return true;
        }
        if Instant::now() >= deadline {
            left.extend(
                cgroups_below(root)
                    .iter()
                    .map(|c| format!("cgroup {} cannot be removed", c.display())),
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_mounted(path: &str) -> bool {
    !mounts_under(path).is_empty()
}

/// The hierarchy id `/proc/cgroups` gives the memory controller (0: v2).
fn memory_hierarchy() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/cgroups").ok()?;
    text.lines()
        .find(|l| l.split_whitespace().next() == Some("memory"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|h| h.parse().ok())
}

/// Empties and unmounts the v1 memory hierarchy, then waits until memory is
/// bound to v2 again (the hierarchy is destroyed only once its dying
/// cgroups are freed).
fn remove_v1(left: &mut Vec<String>, deadline: Instant) {
    if is_mounted(CG1) {
        kill_members(Path::new(CG1));
        if !remove_cgroups(Path::new(CG1), left, deadline) {
            return;
        }
        for m in mounts_under(CG1) {
            if let Err(e) = umount2(m.as_str(), MntFlags::empty()) {
                left.push(format!("cannot unmount the v1 hierarchy at {m}: {e}"));
                return;
            }
        }
        let _ = std::fs::remove_dir(CG1);
    }
    // A plain directory left by racing v1_mount/v1_umount ops.
    if !is_mounted(CG1) {
        let _ = std::fs::remove_dir_all(CG1);
        super::paths::V1_MOUNTS.store(0, Ordering::SeqCst);
    }
    while memory_hierarchy().is_some_and(|h| h != 0) {
        if Instant::now() >= deadline {
            left.push("the memory controller is still bound to a v1 hierarchy".into());
            return;
        }
        drop_caches();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes every v2 cgroup and disables the root's controllers.
fn remove_v2(left: &mut Vec<String>, deadline: Instant) {
    if !remove_cgroups(Path::new(CG2), left, deadline) {
        return;
    }
    let root = Path::new(CG2).join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&root).unwrap_or_default();
    let off: Vec<String> = enabled
        .split_whitespace()
        .map(|c| format!("-{c}"))
        .collect();
    if !off.is_empty() {
        if let Err(e) = std::fs::write(&root, off.join(" ")) {
            left.push(format!(
                "cannot disable {} at the v2 root: {e}",
                enabled.trim()
            ));
        }
    }
}

fn drop_caches() {
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// `nr_dying_descendants` of the v2 root.
fn dying() -> u64 {
    std::fs::read_to_string(Path::new(CG2).join("cgroup.stat"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nr_dying_descendants "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for removed cgroups to be freed: a dying memcg still pins memory
/// to v2, which a following `v1_mount` would see as EBUSY.
fn settle_dying(left: &mut Vec<String>, deadline: Instant) {
    while dying() > 0 {
        if Instant::now() >= deadline {
            left.push(format!("{} removed cgroups are still dying", dying()));
            return;
        }
        drop_caches();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every scratch disk and pmem device the guest has.
fn devices() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_scratch(n) || is_pmem(n))
        .map(|n| Path::new("/dev").join(n))
        .collect();
    out.sort();
    out
}

/// `vdX`, a virtio disk (not a partition such as `vda1`).
fn is_scratch(n: &str) -> bool {
    n.strip_prefix("vd")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_lowercase()))
}

/// `pmemN` (not a partition such as `pmem0p1`).
fn is_pmem(n: &str) -> bool {
    n.strip_prefix("pmem")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Zeroes the start and the end of every device, so no filesystem is found
/// on it any more, and drops its buffer cache.
fn blank_devices(left: &mut Vec<String>) {
    let zeros = vec![0u8; WIPE as usize];
    for dev in devices() {
        let r = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).open(&dev)?;
            let size = f.seek(SeekFrom::End(0))?;
            for at in [0, size.saturating_sub(WIPE)] {
                f.seek(SeekFrom::Start(at))?;
                f.write_all(&zeros[..WIPE.min(size) as usize])?;
            }
            f.sync_all()?;
            // SAFETY: BLKFLSBUF takes no argument.
            unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF, 0) };
            Ok(())
        })();
        if let Err(e) = r {
            left.push(format!("cannot blank {}: {e}", dev.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }

    #[test]
    fn pmem_partitions_are_not_devices_of_ours() {
        assert!(is_pmem("pmem0"));
        assert!(is_pmem("pmem12"));
        assert!(!is_pmem("pmem0p1"));
        assert!(!is_pmem("pmem"));
        assert!(is_scratch("vda") && is_scratch("vdab"));
        assert!(!is_scratch("vda1") && !is_scratch("vd"));
    }
}
