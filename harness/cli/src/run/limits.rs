//! How long a run may take before cgstorm calls it a hang: every bound is a
//! KVM figure scaled by the accelerator (TCG: 10x), and the overall
//! deadline grows with what the program asks for (ops, sleeps, timed
//! repeats, the run duration).

use std::time::Duration;

use cgstorm_vm::Accel;
use cgstorm_workloads::op::{Op, OpSpec, Times};
use cgstorm_workloads::Program;

/// The agent watchdog's default stall threshold under KVM.
pub const STALL: Duration = Duration::from_secs(6);
/// Allowance per op under KVM (mkfs, sync and writeback can be slow).
const PER_OP: Duration = Duration::from_secs(2);
/// Fixed allowance on top of the program's own time, under KVM.
const SLACK: Duration = Duration::from_secs(60);

/// The bounds of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The VM runs under TCG (see [`super::verdict::mark_stale_breakpoints`]).
    pub tcg: bool,
    /// The whole run, from sending the program to `Finished`.
    pub deadline: Duration,
    /// What the agent watchdog waits for before reporting a stall
    /// (sent to the agent).
    pub stall: Duration,
    /// After a stall report, how long the stalled lane may stay silent.
    pub stall_grace: Duration,
    /// How long the agent may send nothing at all.
    pub silence: Duration,
    /// Collecting the console after the run: stop once it has been quiet
    /// this long...
    pub settle_quiet: Duration,
    /// ...or after this long in any case.
    pub settle_max: Duration,
    /// Collecting the console after a hang (sysrq dumps are long).
    pub hang_settle_max: Duration,
    /// How long the guest may take to power off.
    pub shutdown: Duration,
    /// How long one read of the agent channel blocks.
    pub poll: Duration,
    /// Keep the guest running after a finished program (campaigns run the
    /// next program in it): the console is collected only until it has
    /// been quiet for [`KEEP_ALIVE_QUIET`], and the guest is not powered off.
    pub keep_alive: bool,
    /// With `keep_alive`: once a program finished cleanly and the console
    /// shows no report (none printing either), ask the agent for its reset
    /// at once, without the quiet wait: the guest resets while the host
    /// checks the run, and the reset's console watch reads what comes next
    /// ([`super::session::Outcome::reset_sent`]).
    pub reset_early: bool,
    /// What to ask of the agent's kernel coverage.
    pub cover: Cover,
    /// Ask the agent to count the program's tracepoint events.
    pub trace: bool,
}

/// Kernel coverage for a run (where the kernel has KCOV).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cover {
    /// None.
    #[default]
    Off,
    /// The edges the agent has not sent before.
    New,
    /// Every edge of this run (the agent forgets what it sent).
    Afresh,
}

/// How long the console must be quiet, once the agent's end line is on it,
/// after a program when the guest stays up (before the end line existed it
/// was 500 ms of quiet, on every program).
pub const KEEP_ALIVE_QUIET: Duration = Duration::from_millis(100);

impl Limits {
    /// The limits for `program` run for `duration` under `accel`, with the
    /// watchdog at `stall` (already scaled) if given.
    pub fn new(
        accel: Accel,
        program: &Program,
        duration: Duration,
        stall: Option<Duration>,
    ) -> Limits {
        let stall = stall.unwrap_or_else(|| accel.scale(STALL));
        let work = program
            .lanes
            .iter()
            .map(|l| budget(&l.ops, duration, accel))
            .max()
            .unwrap_or_default();
        // A `sleep` op is silent on purpose: it may outlast the watchdog.
        let nap = program
            .lanes
            .iter()
            .map(|l| longest_sleep(&l.ops))
            .max()
            .unwrap_or_default();
        Limits {
            tcg: accel == Accel::Tcg,
            deadline: work + accel.scale(SLACK),
            stall,
            stall_grace: stall * 2 + nap,
            silence: stall * 3 + nap,
            settle_quiet: accel.scale(Duration::from_millis(300)),
            settle_max: accel.scale(Duration::from_secs(2)),
            hang_settle_max: accel.scale(Duration::from_secs(6)),
            shutdown: accel.scale(cgstorm_vm::launch::SHUTDOWN_TIMEOUT),
            keep_alive: false,
            reset_early: false,
            cover: Cover::Off,
            trace: false,
            poll: Duration::from_millis(20),
        }
    }
}

/// An upper bound for running `ops` once through.
fn budget(ops: &[OpSpec], duration: Duration, accel: Accel) -> Duration {
    ops.iter()
        .map(|s| match &s.op {
            Op::Sleep(ms) => Duration::from_millis(ms.0) + accel.scale(PER_OP),
            Op::Repeat(r) => {
                let body = budget(&r.ops, duration, accel);
                match r.times {
                    Times::Count(n) => body.saturating_mul(n),
                    Times::For(ms) => Duration::from_millis(ms.0) + body,
                    Times::Run => duration + body,
                }
            }
            _ => accel.scale(PER_OP),
        })
        .fold(Duration::ZERO, Duration::saturating_add)
}

/// The longest `sleep` op.
fn longest_sleep(ops: &[OpSpec]) -> Duration {
    ops.iter()
        .map(|s| match &s.op {
            Op::Sleep(ms) => Duration::from_millis(ms.0),
            Op::Repeat(r) => longest_sleep(&r.ops),
            _ => Duration::ZERO,
        })
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(yaml: &str) -> Program {
        Program::from_yaml("t.yaml", yaml).unwrap()
    }

    #[test]
    fn deadline_follows_the_slowest_lane_and_the_accelerator() {
        let p = program(
            "lanes:\n  - {name: a, ops: [{mkdir: x}, {sleep: 10s}]}\n  \
             - {name: b, ops: [{repeat: {for: run, ops: [sync]}}]}\n",
        );
        let d = Duration::from_secs(30);
        let kvm = Limits::new(Accel::Kvm, &p, d, None);
        // lane b: 30 s run + 2 s per pass of its body; plus 60 s slack
        assert_eq!(kvm.deadline, Duration::from_secs(92));
        let tcg = Limits::new(Accel::Tcg, &p, d, None);
        assert_eq!(tcg.deadline, Duration::from_secs(30 + 20 + 600));
        assert_eq!(tcg.stall, Duration::from_secs(60));
        // lane a sleeps 10 s: the hang bounds allow for it
        assert_eq!(tcg.stall_grace, Duration::from_secs(130));
        assert_eq!(tcg.silence, Duration::from_secs(190));
    }

    #[test]
    fn counted_repeats_multiply() {
        let p = program("lanes:\n  - {name: a, ops: [{repeat: {count: 5, ops: [sync, sync]}}]}\n");
        let l = Limits::new(Accel::Kvm, &p, Duration::ZERO, Some(Duration::from_secs(1)));
        assert_eq!(l.deadline, Duration::from_secs(5 * 4 + 60));
        assert_eq!(l.stall_grace, Duration::from_secs(2));
    }
}
