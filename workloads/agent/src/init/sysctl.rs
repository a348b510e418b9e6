//! Kernel knobs the agent sets at boot: hung task timeout, printk levels,
//! unlimited `/dev/kmsg` writes and sysrq (so the host can ask for task dumps).

use std::fs;
use std::path::Path;

use cgstorm_agent::cmdline::param;
use cgstorm_agent::contract::{HUNG_TASK_PARAM, PRINTK_PARAM};

/// Applies the knobs; returns a warning per knob that exists but could not be set.
pub fn apply(cmdline: &str) -> Vec<String> {
    let hung = param(cmdline, HUNG_TASK_PARAM).unwrap_or_else(|| "30".into());
    let printk = param(cmdline, PRINTK_PARAM)
        .map(|p| p.replace(',', " "))
        .unwrap_or_else(|| "7 4 1 7".into());
    let knobs = [
        ("kernel/hung_task_timeout_secs", hung.as_str()),
        ("kernel/printk", printk.as_str()),
        ("kernel/printk_devkmsg", "on"),
        ("kernel/sysrq", "1"),
    ];
    let mut warnings = Vec::new();
    for (knob, value) in knobs {
        let path = Path::new("/proc/sys").join(knob);
        // Absent knobs (no CONFIG_DETECT_HUNG_TASK, say) are not an error.
        if !path.exists() {
            continue;
        }
        // printk_devkmsg refuses writes (EINVAL) once `printk.devkmsg=` was
        // given on the command line, so leave knobs that already hold the value.
        let current = fs::read_to_string(&path).unwrap_or_default();
        if current.split_whitespace().eq(value.split_whitespace()) {
            continue;
        }
        if let Err(e) = fs::write(&path, value) {
            warnings.push(format!("sysctl {knob}={value}: {e}"));
        }
    }
    warnings
}
