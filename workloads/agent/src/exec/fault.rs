//! Per-op fault injection (`fail_nth: N`), as syzkaller does it: the lane
//! thread writes N to its own `/proc/thread-self/fail-nth` right before the
//! op and reads it back right after. The kernel counts the fault points
//! (slab and page allocations) the thread reaches and fails the N-th; the
//! count left reads 0 when that happened, so the op's event says whether a
//! fault was injected into it, and the model allows the failure only then.
//!
//! The descriptor stays open for the lane's whole run: neither reading nor
//! writing it allocates, so arming and reading back spend no fault points.
//! By default the kernel's fault attributes skip allocations that may
//! sleep, which are nearly all of an op's; [`configure`] makes them count,
//! and keeps each injected fault to one console line (no stack dump, which
//! would read as a report). User page allocations stay exempt
//! (`ignore-gfp-highmem`), so a fault meant for the op does not hit the
//! agent's own page faults.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use cgstorm_workloads::Outcome;

use crate::exec::sys;

/// The fault attributes [`configure`] sets: file under
/// `/sys/kernel/debug`, value.
const SETTINGS: [(&str, &str); 6] = [
    ("failslab/ignore-gfp-wait", "N"),
    ("failslab/verbose", "1"),
    ("fail_page_alloc/ignore-gfp-wait", "N"),
    ("fail_page_alloc/min-order", "0"),
    ("fail_page_alloc/verbose", "1"),
    ("fail_page_alloc/ignore-gfp-highmem", "Y"),
];

/// Makes the kernel's fault points count for `fail-nth` (see the module
/// text). An error names the file: the kernel lacks fault injection
/// (CONFIG_FAULT_INJECTION_DEBUG_FS, CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC).
pub fn configure() -> Result<(), String> {
    let debug = Path::new("/sys/kernel/debug");
    for (file, value) in SETTINGS {
        let path = debug.join(file);
        if let Outcome::Err(e) = sys::write_file(&path, value) {
            return Err(format!(
                "fault injection: write {value} to {}: {e} (the kernel needs \
                 CONFIG_FAULT_INJECTION_DEBUG_FS, CONFIG_FAILSLAB and CONFIG_FAIL_PAGE_ALLOC)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// One lane thread's `fail-nth` file.
pub struct FailNth(File);

impl FailNth {
    /// Opens the calling thread's file (each lane opens its own).
    pub fn open() -> Result<FailNth, String> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .map(FailNth)
            .map_err(|e| {
                format!(
                    "fault injection: open /proc/thread-self/fail-nth: {e} \
                     (the kernel needs CONFIG_FAULT_INJECTION)"
                )
            })
    }

    /// Fails the `n`-th fault point this thread reaches from now on.
    pub fn arm(&self, n: u32) {
        let _ = self.0.write_at(n.to_string().as_bytes(), 0);
    }

    /// Whether the armed fault was injected (the count reached 0); disarms
    /// one that was not.
    pub fn injected(&self) -> bool {
        let mut buf = [0u8; 16];
        let left = self.0.read_at(&mut buf, 0).ok().and_then(|n| {
            std::str::from_utf8(&buf[..n])
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        });
        match left {
            Some(0) => true,
            _ => {
                let _ = self.0.write_at(b"0", 0);
                false
            }
        }
    }
}
