//! Putting the guest back into its state right after boot, between programs.
//!
//! A campaign runs many programs in one VM. The model predicts each from the
//! initial state (only the v2 root, nothing enabled, no v1 hierarchy, no
//! mounts or loop devices, devices unformatted), so whatever a program left
//! must go before the next one starts: otherwise its leftovers come back as
//! the next program's false findings. What cannot be undone is reported, and
//! the host then boots a fresh VM instead. Removed cgroups the kernel does
//! not free once all of that is undone are leaks (leftovers that start with
//! `LEAK_PREFIX`): the host files them as findings. Which invariants are
//! checked, with which bounds and which holds are legitimate, is the
//! model's word for this kernel (`model::snapshot::eventual`; see
//! [`Bounds`]).

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cgstorm_workloads::model::snapshot::{eventual, Eventual, DYING_WITHIN_MS, LOOP_SETTLE_MS};
use cgstorm_workloads::model::Kernel;

use cgstorm_agent::contract::{LEAK_DAX, LEAK_DIRTY, LEAK_DYING_V1, LEAK_DYING_V2};
use nix::mount::{umount2, MntFlags};

use super::paths::{CG1, CG2, PLACES};
use super::sys::{in_child_within, ChildEnd};
use crate::init::kmsg::klog;

const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
/// `BLKFLSBUF`: write back and drop a block device's buffer cache.
const BLKFLSBUF: libc::c_ulong = 0x1261;
/// How much of each device's start (and end) is zeroed: enough to erase
/// the superblocks `mount` reads (ext4's at 1 KiB with its group
/// descriptors, xfs's at 0 with the first AG headers) and the signatures
/// of both. 1 MiB took up to 1 s a device on the 6.12 debug kernel.
const WIPE: u64 = 64 << 10;
/// How long the whole reset may wait for what programs left to go (dying
/// cgroups, detaching loop devices, exiting tasks): the model's bound for
/// removed cgroups.
const SETTLE: Duration = Duration::from_millis(DYING_WITHIN_MS);

/// The model's eventual invariants, as the reset checks them: `None` for
/// one the model does not hold this kernel to (what it would catch is then
/// a leftover the VM is replaced for, not a leak).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bounds {
    /// [`Eventual::NoDirtyAfterSync`].
    dirty: Option<Duration>,
    /// [`Eventual::NoDyingDescendants`]: the bound, and how long loop
    /// devices' idle workers legitimately hold removed cgroups.
    dying: Option<(Duration, Duration)>,
    /// [`Eventual::V1MemoryReleased`].
    v1: Option<Duration>,
    /// [`Eventual::NoDaxPageReferences`].
    dax: Option<Duration>,
}

impl Bounds {
    fn of(invariants: &[Eventual]) -> Bounds {
        let ms = Duration::from_millis;
        let mut b = Bounds::default();
        for inv in invariants {
            // Every invariant has its check here: a new one does not compile
            // until the reset checks it (or says who does).
            match *inv {
                Eventual::NoDirtyAfterSync { within_ms } => b.dirty = Some(ms(within_ms)),
                Eventual::NoDyingDescendants {
                    within_ms,
                    loop_workers_hold_ms,
                } => b.dying = Some((ms(within_ms), ms(loop_workers_hold_ms))),
                Eventual::V1MemoryReleased { within_ms } => b.v1 = Some(ms(within_ms)),
                Eventual::NoDaxPageReferences { within_ms } => b.dax = Some(ms(within_ms)),
                // The host's console reader reports busy inodes.
                Eventual::NoBusyInodes => {}
            }
        }
        b
    }

    /// This kernel's, from its release (as the host's model takes it).
    fn here() -> Bounds {
        static B: OnceLock<Bounds> = OnceLock::new();
        *B.get_or_init(|| {
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default();
            // A release the model cannot read was refused by the host before
            // any program ran; hold such a kernel to every invariant.
            let kernel = Kernel::from_release(&release)
                .or_else(|| Kernel::from_release("6.12.0"))
                .unwrap_or_else(Kernel::debian_6_1);
            Bounds::of(&eventual(&kernel))
        })
    }
}
/// How long an unmounted v1 hierarchy gets to go by itself before the reset
/// mounts it again to release it.
const ON_ITS_OWN: Duration = Duration::from_secs(1);
/// How long that mount may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

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
/// Also where its time went, `(part, ms)`.
pub fn reset() -> (Vec<String>, Vec<(String, u64)>) {
    let mut left = Vec::new();
    let base = BASE_TAINT.load(Ordering::SeqCst);
    let now = taint();
    if base != u64::MAX && now & !base != 0 {
        left.push(format!("the kernel is tainted ({now:#x}, was {base:#x})"));
    }
    let bounds = Bounds::here();
    let start = Instant::now();
    let deadline = start + SETTLE;
    let _fast = ExpeditedRcu::on();
    let mut laps: Vec<(String, u64)> = Vec::new();
    let mut lap = |name: &str, since: &mut Instant| {
        laps.push((name.to_string(), since.elapsed().as_millis() as u64));
        *since = Instant::now();
    };
    let mut since = start;
    if let Some(within) = bounds.dax {
        // Before the unmounts: evicting a DAX file with a page still held
        // is what the kernel warns about (once), and what then is gone
        // cannot be checked.
        let held = super::dax::still_referenced(&mounts_under(PLACES), within);
        if !held.is_empty() {
            left.push(format!("{LEAK_DAX}: {}", held.join("; ")));
        }
        lap("dax", &mut since);
    }
    unmount_places(&mut left, deadline);
    lap("unmount", &mut since);
    remove_v1(&mut left, deadline, bounds.v1.is_some());
    lap("v1", &mut since);
    remove_v2(&mut left, deadline);
    lap("v2", &mut since);
    let loops = LOOPS_USED.swap(false, Ordering::SeqCst);
    if loops {
        remove_loop_devices();
        lap("loops", &mut since);
    }
    settle_dying(&mut left, deadline, loops, bounds.dying);
    lap("dying", &mut since);
    let slow = blank_devices(&mut left);
    lap("blank", &mut since);
    // Only when everything else came undone: a filesystem still mounted
    // may hold dirty pages of its own.
    if left.is_empty() {
        if let Some(within) = bounds.dirty {
            nothing_dirty(&mut left, within);
            lap("dirty", &mut since);
        }
        // Once everything is freed that can be: a report of what was not
        // goes to the console (see `kmemleak`), where the host reads it.
        if super::kmemleak::check().is_some() {
            lap("kmemleak", &mut since);
        }
    }
    if start.elapsed() >= SLOW_RESET {
        let mut took: Vec<String> = laps.iter().map(|(n, ms)| format!("{n} {ms} ms")).collect();
        if !slow.is_empty() {
            took.push(format!("({})", slow.join(", ")));
        }
        klog!(
            "reset took {} ms: {}",
            start.elapsed().as_millis(),
            took.join(", ")
        );
    }
    (left, laps)
}

/// `/sys/kernel/rcu_expedited` set for as long as it lives, then put back:
/// removed cgroups, unmounted superblocks and detached loop devices are
/// freed after RCU grace periods, which expedited take a fraction of the
/// time under TCG. Only the reset runs with it; programs get the kernel's
/// own setting.
struct ExpeditedRcu(Option<String>);

const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

impl ExpeditedRcu {
    fn on() -> ExpeditedRcu {
        let was = std::fs::read_to_string(RCU_EXPEDITED).ok();
        if was.as_deref().map(str::trim) == Some("0") && std::fs::write(RCU_EXPEDITED, "1").is_ok()
        {
            return ExpeditedRcu(was);
        }
        ExpeditedRcu(None)
    }
}

impl Drop for ExpeditedRcu {
    fn drop(&mut self) {
        if let Some(was) = &self.0 {
            let _ = std::fs::write(RCU_EXPEDITED, was.trim());
        }
    }
}

/// A reset at least this long says on the console where its time went.
const SLOW_RESET: Duration = Duration::from_millis(200);

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

/// The guest's loop devices: `(N of /dev/loopN, bound to a file)`.
fn loop_devices() -> Vec<(libc::c_ulong, bool)> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("loop")?.parse().ok()?;
            Some((n, e.path().join("loop/backing_file").exists()))
        })
        .collect()
}

/// Bound loop devices (`/dev/loopN`).
fn bound_loops() -> Vec<PathBuf> {
    loop_devices()
        .into_iter()
        .filter(|(_, bound)| *bound)
        .map(|(n, _)| PathBuf::from(format!("/dev/loop{n}")))
        .collect()
}

/// Unmounts everything on the places, detaches loop devices (whose backing
/// files may live on those filesystems, or hold them busy), then the places'
/// own tmpfs, so every file the program wrote is gone. Rounds, because a
/// loop device's filesystem must go before the loop, and the loop before the
/// filesystem holding its backing file.
fn unmount_places(left: &mut Vec<String>, deadline: Instant) {
    loop {
        let mut progress = unmount_leaves(&mounts_under(PLACES));
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

/// Unmounts the top mount of every place no other mount is below, all at
/// once (a thread each): an unmount writes back what its filesystem still
/// has dirty, and two filesystems do that in parallel. True if any went.
fn unmount_leaves(mounts: &[String]) -> bool {
    let mut leaves: Vec<&String> = mounts
        .iter()
        .filter(|m| !mounts.iter().any(|o| o.starts_with(&format!("{m}/"))))
        .collect();
    leaves.sort();
    leaves.dedup();
    if leaves.len() < 2 {
        return false;
    }
    std::thread::scope(|s| {
        let threads: Vec<_> = leaves
            .iter()
            .map(|m| s.spawn(move || umount2(m.as_str(), MntFlags::empty()).is_ok()))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or(false))
            .fold(false, |a, b| a | b)
    })
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

/// The memory controller's line of `/proc/cgroups`: its hierarchy id (0:
/// v2) and how many cgroups that hierarchy has, the dying ones (removed but
/// not yet freed) and its root included.
fn memory_line() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/cgroups").ok()?;
    memory_line_of(&text)
}

/// Whether the memory controller is bound to a v1 hierarchy (not to v2).
pub(crate) fn memory_bound_to_v1() -> bool {
    memory_line().is_some_and(|(h, _)| h != 0)
}

fn memory_line_of(text: &str) -> Option<(u32, u32)> {
    let l = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("memory"))?;
    let mut f = l.split_whitespace().skip(1).map(|x| x.parse::<u32>().ok());
    Some((f.next()??, f.next()??))
}

/// Waits (dropping caches, which frees the page cache charged to removed
/// memcgs) until the v1 hierarchy has no cgroup but its root; false if the
/// deadline came first.
fn v1_children_freed(deadline: Instant) -> bool {
    freed_while_dropping(
        deadline,
        || !matches!(memory_line(), Some((h, n)) if h != 0 && n > 1),
    )
}

/// Empties and unmounts the v1 memory hierarchy, then waits until memory is
/// bound to v2 again.
///
/// The kernel destroys a v1 hierarchy at its last unmount only if its root
/// has no children then (cgroup_kill_sb), and a removed cgroup stays a child
/// until it is freed. So the reset waits for removed memcgs to be freed
/// before it unmounts; and when memory is still bound afterwards (a
/// program's own `v1_umount` came while a removed cgroup was dying: the
/// hierarchy then lives on, unmounted), the reset mounts it again (the same
/// hierarchy comes back, or a new one once the old is gone), waits, and
/// unmounts it once more.
fn remove_v1(left: &mut Vec<String>, deadline: Instant, checked: bool) {
    if is_mounted(CG1) {
        kill_members(Path::new(CG1));
        if !remove_cgroups(Path::new(CG1), left, deadline) {
            return;
        }
        v1_children_freed(deadline);
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
    let mut remounted = false;
    let waited = Instant::now();
    loop {
        if !memory_bound_to_v1() {
            return;
        }
        if Instant::now() >= deadline {
            let (h, n) = memory_line().unwrap_or_default();
            left.push(format!(
                "the memory controller is still bound to a v1 hierarchy \
                 (hierarchy {h}, {n} cgroups{})",
                if remounted {
                    ", mounted and unmounted again"
                } else {
                    ""
                }
            ));
            return;
        }
        // A hierarchy its unmount killed goes by itself, soon; one that had
        // children then lives on. Mounting it again and unmounting it with
        // no children left kills it.
        if !remounted && waited.elapsed() >= ON_ITS_OWN {
            remounted = true;
            let (h, n) = memory_line().unwrap_or_default();
            crate::init::kmsg::log(&format!(
                "reset: memory is still bound to v1 hierarchy {h} ({n} cgroups) \
                 after its unmount; mounting it again to release it"
            ));
            if let Err(e) = remount_and_release(deadline) {
                crate::init::kmsg::log(&format!("reset: {e}"));
                if e == V1_NOT_FREED && checked {
                    let (h, n) = memory_line().unwrap_or_default();
                    left.push(format!(
                        "{LEAK_DYING_V1}: hierarchy {h} with {n} cgroups outlived its unmount"
                    ));
                } else {
                    left.push(format!("the v1 hierarchy outlived its unmount: {e}"));
                }
                return;
            }
            continue;
        }
        freed_while_dropping(deadline.min(Instant::now() + DROP_EVERY), || {
            !memory_bound_to_v1()
        });
    }
}

/// Why [`remount_and_release`] failed when the dying cgroups stayed.
const V1_NOT_FREED: &str = "its removed cgroups were not freed in time";

/// Mounts the (unmounted, still living) v1 memory hierarchy again, waits
/// until its dying cgroups are freed, and unmounts it, which now kills it.
fn remount_and_release(deadline: Instant) -> Result<(), String> {
    std::fs::create_dir_all(CG1).map_err(|e| format!("mkdir {CG1}: {e}"))?;
    mount_v1_bounded(MOUNT_TIMEOUT)?;
    crate::init::kmsg::log("reset: mounted the v1 hierarchy again");
    // A `v1_umount` with children left them there, alive: they must be
    // removed before they can be freed (waiting for them without removing
    // them made every such program a false leak finding).
    kill_members(Path::new(CG1));
    let mut left = Vec::new();
    let removed = remove_cgroups(Path::new(CG1), &mut left, deadline);
    let freed = removed && v1_children_freed(deadline);
    let r = umount2(CG1, MntFlags::empty()).map_err(|e| format!("unmount it again: {e}"));
    let _ = std::fs::remove_dir(CG1);
    r?;
    if !left.is_empty() {
        return Err(left.join("; "));
    }
    if freed {
        Ok(())
    } else {
        Err(V1_NOT_FREED.into())
    }
}

/// Mounts the v1 memory hierarchy on [`CG1`] from a child process, killed
/// if the mount has not returned within `timeout`: while a killed hierarchy
/// is not yet freed, a mount of it restarts (cgroup1_get_tree) until it is,
/// and only a fatal signal ends that.
fn mount_v1_bounded(timeout: Duration) -> Result<(), String> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, data) = (c("cgroup"), c(CG1), c("memory"));
    let end = in_child_within(timeout, || {
        // SAFETY: mount(2) on strings made before the fork, and errno.
        unsafe {
            let r = libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                data.as_ptr().cast(),
            );
            if r == 0 {
                0
            } else {
                *libc::__errno_location() & 0xff
            }
        }
    })
    .map_err(|e| format!("fork: {e}"))?;
    match end {
        ChildEnd::Exited(0) => Ok(()),
        ChildEnd::Exited(e) => Err(format!(
            "mount it again: {}",
            std::io::Error::from_raw_os_error(e)
        )),
        ChildEnd::Signalled(status) => {
            Err(format!("the mounting child ended with status {status:#x}"))
        }
        ChildEnd::Killed => Err(format!(
            "mounting it again did not return within {timeout:?} \
             (a killed hierarchy that is not freed)"
        )),
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
fn settle_dying(
    left: &mut Vec<String>,
    deadline: Instant,
    loops: bool,
    bound: Option<(Duration, Duration)>,
) {
    // After loop devices, removed cgroups their idle workers hold stay for
    // a minute: waiting the whole SETTLE for them cost a lockdep-kernel
    // campaign a fifth of its time (20 of 1,431 programs, 20 s each). The
    // VM is replaced after a short wait instead.
    let start = Instant::now();
    let deadline = match bound {
        Some((within, _)) => deadline.min(start + within),
        None => deadline,
    };
    let until = if loops {
        deadline.min(start + LOOP_SETTLE)
    } else {
        deadline
    };
    if freed_while_dropping(until, || dying() == 0) {
        return;
    }
    let Some((within, loop_hold)) = bound else {
        // Not an invariant of this kernel (it keeps dying cgwbs): the VM is
        // replaced, nothing is filed.
        left.push(format!(
            "{} removed cgroups are still dying after {:.1} s (this kernel does not \
             release dying cgwbs: not a leak the model holds it to)",
            dying(),
            start.elapsed().as_secs_f64()
        ));
        return;
    };
    if loops {
        // Legitimate, the model says: the VM is replaced instead of waiting.
        left.push(format!(
            "{} removed cgroups are still dying after {:.1} s, held by the idle workers of \
             the loop devices the program used (they go after {} s)",
            dying(),
            start.elapsed().as_secs_f64(),
            loop_hold.as_secs()
        ));
        return;
    }
    left.push(format!(
        "{LEAK_DYING_V2}: {} after {} s",
        dying(),
        within.as_secs()
    ));
}

/// How long the reset waits for removed cgroups after a program that used
/// loop devices before it gives the VM up (see [`settle_dying`]).
const LOOP_SETTLE: Duration = Duration::from_millis(LOOP_SETTLE_MS);

/// How often [`freed_while_dropping`] looks.
const POLL: Duration = Duration::from_millis(5);
/// How often it drops the caches again.
const DROP_EVERY: Duration = Duration::from_millis(100);

/// Waits until `done`, dropping the caches (which uncharges the page
/// cache that keeps removed memcgs alive) now and every [`DROP_EVERY`];
/// false if the deadline came first. Freeing a memcg takes RCU grace
/// periods and work items, not a fixed time: it looks every [`POLL`]
/// (sleeping 50 ms between drops cost about 150 ms a reset on the 6.12
/// debug kernel).
fn freed_while_dropping(deadline: Instant, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut dropped = start - DROP_EVERY;
    let mut next = 0;
    // The last second wind tried, and when.
    let mut tried: Option<(&str, Instant)> = None;
    loop {
        if done() {
            if let Some((what, at)) = tried {
                // Evidence for the next reader of a leak finding: what this
                // freed would have been one.
                klog!("reset: freed {} ms after {what}", at.elapsed().as_millis());
            }
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        if let Some((after, what, run)) = SECOND_WINDS.get(next) {
            if start.elapsed() >= *after {
                klog!(
                    "reset: still held after {} ms: {what}",
                    start.elapsed().as_millis()
                );
                run();
                tried = Some((what, Instant::now()));
                next += 1;
            }
        }
        if dropped.elapsed() >= DROP_EVERY {
            drop_caches();
            dropped = Instant::now();
        } else {
            std::thread::sleep(POLL);
        }
    }
}

/// What [`freed_while_dropping`] tries, each once, in order, when what it
/// waits for is still held this long after it began: drain every CPU's LRU
/// caches (it costs a compaction), then have the kernel clean up dying
/// cgwbs again, three times: the sync before each cleanup only queues the
/// writeback that empties a dying cgwb's dirty lists of inodes no mounted
/// filesystem has (a block device's own inode: its superblock has no bdi,
/// so `sync` writes its pages but leaves it on the cgwb's dirty list), and
/// a cleanup that runs before that writeback skips the cgwb; the next
/// one, seconds later, finds it clean (read from fs/sync.c and
/// fs/fs-writeback.c of 6.12; not yet seen freeing a leak in a VM).
const SECOND_WINDS: [(Duration, &str, fn()); 4] = [
    (
        Duration::from_secs(1),
        "draining every CPU's LRU caches",
        drain_lru_caches,
    ),
    (
        Duration::from_secs(2),
        "syncing and offlining a memcg (the kernel's cleanup of dying cgwbs runs again)",
        rerun_cgwb_cleanup,
    ),
    (
        Duration::from_secs(5),
        "syncing and offlining a memcg again (the writeback the first sync queued has had time to run)",
        rerun_cgwb_cleanup,
    ),
    (
        Duration::from_secs(10),
        "syncing and offlining a memcg a third time",
        rerun_cgwb_cleanup,
    ),
];

/// Has the kernel run its cleanup of dying cgwbs again. A memcg going
/// offline queues it (`wb_memcg_offline`); it switches the inodes still
/// attached to a dying memcg's cgwbs to a living ancestor's, so the cgwb,
/// and the memcg it pins, can go. It skips a cgwb that still has dirty I/O
/// "until the next time" (mm/backing-dev.c), and the next time is the next
/// memcg offline: with none after it, a memcg removed while its cgwb was
/// dirty stays dying for as long as an inode still attached to that cgwb
/// lives (one the reset's unmounts do not evict, such as the scratch
/// disk's block device inode, whose metadata pages a writer in the memcg
/// may own). So: sync, then a memcg of our own made and removed at the v2
/// root. Nothing is said of a failure: the leak check that follows says
/// what stayed. (Whether this is what kept the memcgs of the leaks after
/// ForeignDirty and an umount dying, sessions 19 and 21, is not shown:
/// neither came back in replays, 0/5 and 0/3; corpus/triage.)
fn rerun_cgwb_cleanup() {
    // SAFETY: sync has no arguments and cannot fail.
    unsafe { libc::sync() };
    let ctl = Path::new(CG2).join("cgroup.subtree_control");
    let had = std::fs::read_to_string(&ctl)
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == "memory");
    // Memory bound to v1 (a dying v1 hierarchy) cannot be enabled here.
    if !had && std::fs::write(&ctl, "+memory").is_err() {
        return;
    }
    let kick = Path::new(CG2).join("cgstorm-reset");
    if std::fs::create_dir(&kick).is_ok() {
        let _ = std::fs::remove_dir(&kick);
    }
    if !had {
        let _ = std::fs::write(&ctl, "-memory");
    }
}

/// Drains the per-CPU LRU caches of every CPU: a page the program's tasks
/// left in one (its file truncated or unmounted meanwhile) is freed, and
/// uncharged, only when that CPU drains it, which an idle CPU may not do
/// for a long time; until then its memcg stays dying. Dropping the caches
/// does not drain them; a compaction does first (`compact_nodes` calls
/// `lru_add_drain_all`).
fn drain_lru_caches() {
    let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
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

/// Devices an op may have written since the last reset (a `mkfs` or a
/// `mount` of them: every other write reaches a device through a mount).
static TOUCHED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Notes that `dev` may be written: the next reset blanks it.
pub fn touched(dev: &Path) {
    TOUCHED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(dev.to_path_buf());
}

/// Notes that every device may be written (a shell script's tools).
pub fn touched_all() {
    for d in devices() {
        touched(&d);
    }
    loop_bound();
}

/// A loop device was bound since the last reset.
static LOOPS_USED: AtomicBool = AtomicBool::new(false);

/// Notes that a loop device was bound: its I/O workers may hold cgroups.
pub fn loop_bound() {
    LOOPS_USED.store(true, Ordering::SeqCst);
}

/// `LOOP_CTL_REMOVE`: deletes an unbound loop device.
const LOOP_CTL_REMOVE: libc::c_ulong = 0x4C81;

/// Deletes every loop device that is not bound (`losetup` makes new ones
/// as it needs them: LOOP_CTL_GET_FREE). Deleting one frees its idle I/O
/// workers at once (`lo_free_disk`, drivers/block/loop.c), and with them the
/// blkcg css each holds of the cgroup whose I/O it served; merely detached,
/// they keep removed cgroups dying for as long as they idle (6.12's
/// `LOOP_IDLE_WORKER_TIMEOUT`, 60 s: the model's legitimate hold), which cost a
/// 10-minute Debian campaign 11 VM restarts after 3 s waits each (5.5 % of
/// its time). Best effort: a device still open stays (EBUSY), and the wait
/// in [`settle_dying`] then decides.
fn remove_loop_devices() {
    let Ok(ctl) = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
    else {
        return;
    };
    for (n, _) in loop_devices().into_iter().filter(|(_, bound)| !bound) {
        // SAFETY: LOOP_CTL_REMOVE takes the device's index by value.
        unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_REMOVE, n) };
    }
}

/// Zeroes the start and the end of every device a program may have written
/// (the others are as blank as they were), so no filesystem is found on it
/// any more, and drops its buffer cache. Blanking all of them took 1.4 to
/// 2.4 s on the 6.12 debug kernel, most of each reset.
fn blank_devices(left: &mut Vec<String>) -> Vec<String> {
    let zeros = vec![0u8; WIPE as usize];
    let touched = std::mem::take(&mut *TOUCHED.lock().unwrap_or_else(|e| e.into_inner()));
    let mut slow = Vec::new();
    for dev in devices().into_iter().filter(|d| touched.contains(d)) {
        let mut laps = [Duration::ZERO; 3];
        let r = (|| -> std::io::Result<()> {
            let t = Instant::now();
            let mut f = OpenOptions::new().write(true).open(&dev)?;
            let size = f.seek(SeekFrom::End(0))?;
            for at in [0, size.saturating_sub(WIPE)] {
                f.seek(SeekFrom::Start(at))?;
                f.write_all(&zeros[..WIPE.min(size) as usize])?;
            }
            laps[0] = t.elapsed();
            f.sync_all()?;
            laps[1] = t.elapsed() - laps[0];
            // SAFETY: BLKFLSBUF takes no argument.
            unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF, 0) };
            laps[2] = t.elapsed() - laps[0] - laps[1];
            Ok(())
        })();
        if let Err(e) = r {
            left.push(format!("cannot blank {}: {e}", dev.display()));
        }
        if laps.iter().sum::<Duration>() >= SLOW_DEVICE {
            slow.push(format!(
                "{}: write {} sync {} flush {} ms",
                dev.display(),
                laps[0].as_millis(),
                laps[1].as_millis(),
                laps[2].as_millis()
            ));
        }
    }
    slow
}

/// `(Dirty, Writeback)` in kB from /proc/meminfo, after folding the per-CPU
/// counter deltas into the global ones (`/proc/sys/vm/stat_refresh`; without
/// it, the kernel folds them every second).
fn dirty_kb() -> Option<(u64, u64)> {
    let _ = std::fs::write("/proc/sys/vm/stat_refresh", "1");
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    dirty_kb_of(&text)
}

fn dirty_kb_of(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    };
    Some((field("Dirty:")?, field("Writeback:")?))
}

/// Once every filesystem of the program is unmounted (each unmount writes
/// its dirty pages back) and every device it wrote is synced, no page is
/// dirty or under writeback: the initramfs's ramfs and tmpfs do not account
/// theirs. Pages still counted then are a leak in the accounting (a page
/// whose dirty or writeback state was never cleared, a counter that was not
/// decremented).
fn nothing_dirty(left: &mut Vec<String>, within: Duration) {
    let Some(first) = dirty_kb() else { return };
    if first == (0, 0) {
        return;
    }
    nix::unistd::sync();
    let end = Instant::now() + within;
    let mut now = first;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        match dirty_kb() {
            Some((0, 0)) => return,
            Some(d) => now = d,
            None => return,
        }
    }
    left.push(format!(
        "{LEAK_DIRTY}: Dirty {} kB, Writeback {} kB {} s after sync (at the end of the reset: Dirty {} kB, Writeback {} kB)",
        now.0,
        now.1,
        within.as_secs(),
        first.0,
        first.1
    ));
}

/// A device whose blanking took this long is named in a slow reset's line.
const SLOW_DEVICE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_checks_the_models_invariants_with_its_bounds() {
        let new = Bounds::of(&eventual(&Kernel::from_release("6.12.117").unwrap()));
        assert_eq!(new.dirty, Some(Duration::from_secs(3)));
        assert_eq!(
            new.dying,
            Some((Duration::from_secs(20), Duration::from_secs(60)))
        );
        assert_eq!(new.v1, Some(SETTLE));
        assert_eq!(new.dax, Some(Duration::from_secs(5)));
        let mut no_dax = Kernel::from_release("6.12.117").unwrap();
        no_dax.fs_dax = false;
        assert_eq!(Bounds::of(&eventual(&no_dax)).dax, None);
        // A kernel that keeps dying cgwbs is not held to their release.
        let old = Bounds::of(&eventual(&Kernel::from_release("5.10.0").unwrap()));
        assert_eq!(old.dying, None);
        assert!(old.dirty.is_some() && old.v1.is_some());
        assert_eq!(Bounds::of(&[]), Bounds::default());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }

    #[test]
    fn the_memory_line_of_proc_cgroups() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                    cpu\t0\t1\t1\nmemory\t3\t2\t1\npids\t0\t1\t1\n";
        assert_eq!(memory_line_of(text), Some((3, 2)));
        assert_eq!(memory_line_of("cpu\t0\t1\t1\n"), None);
        assert_eq!(memory_line_of("memory\tx\t1\t1\n"), None);
    }

    #[test]
    fn dirty_and_writeback_from_meminfo() {
        let text = "MemTotal:        2000000 kB\nDirty:               132 kB\n\
                    Writeback:             0 kB\nAnonPages:  1 kB\n";
        assert_eq!(dirty_kb_of(text), Some((132, 0)));
        assert_eq!(dirty_kb_of("Dirty: 1 kB\n"), None);
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
