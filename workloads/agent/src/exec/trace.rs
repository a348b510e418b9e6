//! Signal from the kernel's tracepoints: the background work KCOV does not
//! see (it records only the syscall's own task), on every kernel with
//! tracefs, stock ones included.
//!
//! At the first program the agent enables a few events of the subsystems
//! these races live in: writeback's wb switching and foreign dirtying,
//! cgroup mkdir, rmdir and release, memcg reclaim and slab shrinking, and
//! workqueue item starts. Before each program it empties the trace buffer;
//! after it, it counts the events by name, workqueue items by function
//! (only the functions of those subsystems), and sends the counts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

const TRACEFS: &str = "/sys/kernel/tracing";

/// `subsystem/event`: what is enabled, where the kernel has it (the
/// host's summary names those a campaign never saw).
use cgstorm_agent::contract::TRACE_EVENTS as EVENTS;
use cgstorm_agent::contract::{TRACE_WORK_EVENT, TRACE_WORK_PREFIX};

/// Workqueue functions counted (by prefix): writeback, cgroup and memcg
/// teardown, per-cpu stock draining, super blocks and mounts going.
const WORK: &[&str] = &[
    "wb_",
    "cgwb_",
    "inode_switch_wbs",
    "bdi_",
    "css_",
    "cgroup_",
    "memcg_",
    "mem_cgroup_",
    "drain_local_stock",
    "flush_memcg",
    "shrink",
    "dax_",
    "loop_",
    "destroy_super",
    "delayed_mntput",
    "delayed_fput",
    "lru_add_drain",
];

/// Enables the events once; why it could not, if it could not.
fn ready() -> &'static Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY.get_or_init(|| {
        let root = Path::new(TRACEFS);
        if !root.join("trace").exists() {
            nix::mount::mount(
                Some("tracefs"),
                TRACEFS,
                Some("tracefs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| format!("mount tracefs on {TRACEFS}: {e}"))?;
        }
        let _ = std::fs::write(root.join("buffer_size_kb"), "2048");
        let mut on = 0;
        for ev in EVENTS {
            if std::fs::write(root.join("events").join(ev).join("enable"), "1").is_ok() {
                on += 1;
            }
        }
        if on == 0 {
            return Err("none of the events could be enabled".into());
        }
        let _ = std::fs::write(root.join("tracing_on"), "1");
        Ok(())
    })
}

/// Empties the trace buffer before a program; false if tracing is off.
pub fn start() -> Result<(), String> {
    ready().clone()?;
    std::fs::write(Path::new(TRACEFS).join("trace"), "")
        .map_err(|e| format!("clear {TRACEFS}/trace: {e}"))
}

/// The events since [`start`], counted by name (`cgroup_mkdir`) and, for
/// workqueue items, by function (`work:wb_workfn`).
pub fn counts() -> Result<BTreeMap<String, u64>, String> {
    let text = std::fs::read_to_string(Path::new(TRACEFS).join("trace"))
        .map_err(|e| format!("read {TRACEFS}/trace: {e}"))?;
    Ok(count_lines(&text))
}

fn count_lines(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(key) = event_of(line) else {
            continue;
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// The event a trace line is of: `TASK-PID [CPU] FLAGS TIME: EVENT: FIELDS`.
fn event_of(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(": ")?;
    let (event, fields) = rest.split_once(": ").unwrap_or((rest, ""));
    let event = event.trim();
    if event == TRACE_WORK_EVENT {
        let f = fields
            .split_whitespace()
            .skip_while(|w| *w != "function")
            .nth(1)?;
        return WORK
            .iter()
            .any(|p| f.starts_with(p))
            .then(|| format!("{TRACE_WORK_PREFIX}{f}"));
    }
    Some(event.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_count_by_event_and_work_function() {
        let text = "\
# tracer: nop
#
     kworker/0:1-10      [000] .....    12.000001: workqueue_execute_start: work struct 00000000a1b2c3d4: function wb_workfn
     kworker/0:1-10      [000] .....    12.000002: workqueue_execute_start: work struct 00000000a1b2c3d5: function vmstat_update
     kworker/1:2-11      [001] .....    12.000003: workqueue_execute_start: work struct 00000000a1b2c3d6: function css_killed_work_fn
          cgstorm-1      [001] .....    12.000004: cgroup_mkdir: root=0 id=5 level=1 path=/a
          cgstorm-1      [001] .....    12.000005: cgroup_mkdir: root=0 id=6 level=1 path=/b
     kworker/0:1-10      [000] .....    12.000006: workqueue_execute_start: work struct 00000000a1b2c3d4: function wb_workfn
";
        let c = count_lines(text);
        assert_eq!(c.get("cgroup_mkdir"), Some(&2));
        assert_eq!(c.get("work:wb_workfn"), Some(&2));
        assert_eq!(c.get("work:css_killed_work_fn"), Some(&1));
        assert_eq!(c.get("work:vmstat_update"), None, "not one of ours");
        assert_eq!(c.len(), 3);
    }
}
