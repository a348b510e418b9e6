//! kmemleak between programs, on kernels built with it
//! (`build-kernel.sh --flavor kmemleak`): the agent asks for the scans
//! itself, every [`EVERY`] resets, so that a scan (seconds under TCG) never
//! runs during a program. What a scan reports twice in a row (an object can
//! look unreferenced while its pointer is in flight) is printed to the
//! console as the kernel's own report, headed `BUG: memory leak`: the host
//! reads it like any other report ("memory leak in F", from the allocation
//! backtrace) and stores it with the programs the VM ran before it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// kmemleak's control and report file.
const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
/// A scan every this many resets.
pub const EVERY: u64 = 20;
/// Between the two scans of a confirmation.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

static ON: AtomicBool = AtomicBool::new(false);
static RESETS: AtomicU64 = AtomicU64::new(0);

/// At boot, on a kernel with kmemleak (the probe's `Features::kmemleak`):
/// no scanning thread, and what the boot left (firmware tables, early
/// allocations kmemleak cannot follow) forgotten, so that only what
/// programs leak is reported.
pub fn setup() -> Result<(), String> {
    for cmd in ["scan=off", "scan", "clear"] {
        std::fs::write(KMEMLEAK, cmd).map_err(|e| format!("kmemleak {cmd}: {e}"))?;
    }
    ON.store(true, Ordering::SeqCst);
    Ok(())
}

/// After a reset: every [`EVERY`]-th time, scans twice (thrice when the
/// second finds something) and prints what the last two report; how many objects
/// it printed, `None` when it did not scan.
pub fn check() -> Option<usize> {
    if !ON.load(Ordering::SeqCst) || !RESETS.fetch_add(1, Ordering::SeqCst).is_multiple_of(EVERY) {
        return None;
    }
    Some(scan_and_print())
}

/// The host's [`HostMsg::LeakScan`](cgstorm_agent::proto::HostMsg): a
/// scan now, whatever the count of resets (the VM is about to go, after a
/// kernel report, and what its programs leaked would go with it); how many
/// objects it printed, or why it could not scan.
pub fn scan_now() -> Result<usize, String> {
    if !ON.load(Ordering::SeqCst) {
        return Err("this kernel has no kmemleak (or its setup failed at boot)".into());
    }
    Ok(scan_and_print())
}

/// Scans twice (thrice when the second finds something), prints what the
/// last two report, and forgets it; how many objects it printed.
fn scan_and_print() -> usize {
    // An object is reported only once its checksum held still from one
    // scan to the next, so a new one shows in the second scan at the
    // earliest.
    scan();
    let first = scan();
    if first.is_empty() {
        return 0;
    }
    std::thread::sleep(CONFIRM_AFTER);
    let again = scan();
    let leaks: Vec<&String> = again
        .iter()
        .filter(|r| first.iter().any(|f| same_object(f, r)))
        .collect();
    for r in &leaks {
        print(r);
    }
    // Reported once: the next scans look for new ones.
    let _ = std::fs::write(KMEMLEAK, "clear");
    leaks.len()
}

/// Scans, and returns the report's records (one per object).
fn scan() -> Vec<String> {
    if std::fs::write(KMEMLEAK, "scan").is_err() {
        return Vec::new();
    }
    records(&std::fs::read_to_string(KMEMLEAK).unwrap_or_default())
}

/// kmemleak's report split into its records, each starting with its
/// `unreferenced object 0xADDR (size N):` line.
fn records(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("unreferenced object ") {
            out.push(String::new());
        }
        if let Some(r) = out.last_mut() {
            r.push_str(line);
            r.push('\n');
        }
    }
    out
}

/// Whether two records are of one object (their first lines agree).
fn same_object(a: &str, b: &str) -> bool {
    a.lines().next() == b.lines().next()
}

/// Prints a record to the console as a report of its own, a kernel log
/// record a line.
fn print(record: &str) {
    crate::init::kmsg::raw("BUG: memory leak");
    for line in record.lines() {
        crate::init::kmsg::raw(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
unreferenced object 0xffff888104a1c400 (size 512):
  comm \"cgstorm-agent\", pid 231, jiffies 4294893810
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace (crc 5f2c1a3b):
    kmalloc_trace_noprof+0x25/0x40
    mem_cgroup_css_alloc+0x6a/0x7a0
    cgroup_apply_control_enable+0x1f4/0x3b0
unreferenced object 0xffff888104a1d000 (size 64):
  comm \"kworker/0:1\", pid 12, jiffies 4294893811
  backtrace (crc 00000000):
    __kmalloc_noprof+0x1e/0x30
";

    /// Without kmemleak set up at boot, the host's scan is refused with
    /// the reason, and the resets' scans never run (no debugfs is touched).
    #[test]
    fn no_scan_without_kmemleak() {
        let e = scan_now().unwrap_err();
        assert!(e.contains("no kmemleak"), "{e}");
        assert_eq!(check(), None);
    }

    #[test]
    fn reports_split_into_one_record_an_object() {
        let r = records(REPORT);
        assert_eq!(r.len(), 2);
        assert!(r[0].starts_with("unreferenced object 0xffff888104a1c400"));
        assert!(r[0].contains("mem_cgroup_css_alloc"));
        assert!(r[1].ends_with("__kmalloc_noprof+0x1e/0x30\n"));
        assert!(records("").is_empty());
        assert!(same_object(&r[0], &r[0].replace("crc 5f2c1a3b", "crc 1")));
        assert!(!same_object(&r[0], &r[1]));
    }
}
