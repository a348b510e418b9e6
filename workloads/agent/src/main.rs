//! `cgstorm-agent`: init of a VM that cgstorm boots.
//!
//! The guard runs first and refuses (exit code 3, touching nothing) unless this
//! process is PID 1 or runs in a virtme-ng guest AND the kernel command line
//! carries `cgstorm.token=<hex>`. Then [`init::run`] sets the system up, says
//! hello to the host over virtio-serial and waits for orders.

mod exec;
mod init;

use std::error::Error as _;
use std::process::ExitCode;

use cgstorm_agent::contract::REFUSAL_EXIT_CODE;
use cgstorm_agent::guard::{self, Admission, Refusal};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("task") {
        return task(args.get(2).map(String::as_str).unwrap_or(""));
    }
    let admission = match admit() {
        Ok(a) => a,
        Err(refusal) => {
            let mut msg = format!("cgstorm-agent: {refusal}");
            let mut source = refusal.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            return ExitCode::from(REFUSAL_EXIT_CODE as u8);
        }
    };
    init::run(admission)
}

/// Runs the guard on this process. Reading `/proc/cmdline` touches nothing;
/// only when we are PID 1 and `/proc` is not mounted yet (a fresh initramfs)
/// is proc mounted first, since init owns that system anyway.
fn admit() -> Result<Admission, Refusal> {
    let pid = std::process::id();
    let cmdline = match std::fs::read_to_string("/proc/cmdline") {
        Ok(c) => c,
        Err(e) if pid != 1 => return Err(Refusal::Cmdline(e)),
        Err(_) => {
            init::mounts::mount_proc().map_err(|e| Refusal::Cmdline(e.into()))?;
            std::fs::read_to_string("/proc/cmdline").map_err(Refusal::Cmdline)?
        }
    };
    guard::check(pid, &cmdline)
}

/// Task mode: a workload process the agent spawned. It runs only with the
/// VM's boot token in its environment, so on a host it refuses like the agent.
fn task(spec: &str) -> ExitCode {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let token = cgstorm_agent::cmdline::Token::from_cmdline(&cmdline).ok();
    let given = std::env::var(exec::tasks::TASK_ENV).ok();
    match (token, given) {
        (Some(t), Some(g)) if t.as_str() == g => exec::tasks::task_main(spec),
        _ => {
            eprintln!(
                "cgstorm-agent: refusing to run a task: this is not a VM that cgstorm booted \
                 (no matching boot token)"
            );
            ExitCode::from(REFUSAL_EXIT_CODE as u8)
        }
    }
}
