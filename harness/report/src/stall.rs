//! Soft lockups on every vCPU at once: a VM that was not run, more likely
//! than a kernel bug.
//!
//! The soft-lockup watchdog runs from a per-CPU hrtimer; each CPU's timer
//! has its own phase, so when the kernel really locks several CPUs up,
//! their reports come at different moments with different durations. When
//! the host (or the emulator: TCG on a loaded machine) stops running the
//! VM, every vCPU's timer fires late at the same moment on resume and each
//! reports the same long "stuck for Ns". [`StallWatch`] sees those lines
//! (the scanner keeps only the first of the identical reports) and
//! [`retitle`] gives such soft lockups a title of their own, so they are
//! not filed with real ones and say what they probably are. They stay
//! findings: replaying under KVM, or on an idle host, tells them apart.
//! (The one recorded, `cgstorm-soak-vm-stall-6.1.log`, turned out to be a
//! stale breakpoint both vCPUs looped on under TCG, which every vCPU then
//! reports at once too; the harness marks that case by its RIPs, see
//! `mark_breakpoint_loops` in harness/cli.)

use std::collections::BTreeMap;

use crate::{Kind, Report};

/// First soft-lockup reports of two CPUs closer than this (console
/// timestamps, seconds) came at the same moment.
const SAME_MOMENT_S: f64 = 1.0;
/// Their durations differ by at most this many seconds.
const SAME_DURATION_S: u32 = 2;
/// And are at least this long: beyond any watchdog's first report on a
/// running CPU under cgstorm's TCG settings (watchdog_thresh=30: a first
/// report at 60 – 72 s) or the kernel's default (20 – 24 s).
const LONG_S: u32 = 90;

/// The words every VM-stall title has.
pub const STALL_MARK: &str = "on every vCPU at once";

/// What [`StallWatch`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStall {
    /// The vCPUs that reported.
    pub cpus: usize,
    /// The shortest of their durations, in seconds.
    pub secs: u32,
}

/// Watches console lines for the first soft-lockup report of each CPU.
#[derive(Debug, Default, Clone)]
pub struct StallWatch {
    /// CPU → (timestamp, stuck for).
    first: BTreeMap<u32, (f64, u32)>,
}

impl StallWatch {
    /// An empty watch.
    pub fn new() -> StallWatch {
        StallWatch::default()
    }

    /// Takes one console line.
    pub fn line(&mut self, line: &str) {
        if let Some((cpu, at, secs)) = soft_lockup_line(line) {
            self.first.entry(cpu).or_insert((at, secs));
        }
    }

    /// Every CPU that reported a soft lockup did so at the same moment with
    /// the same long duration (at least two of them).
    pub fn stall(&self) -> Option<VmStall> {
        if self.first.len() < 2 {
            return None;
        }
        let ats = self.first.values().map(|v| v.0);
        let secs = self.first.values().map(|v| v.1);
        let (lo_at, hi_at) = ats.fold((f64::MAX, f64::MIN), |(a, b), t| (a.min(t), b.max(t)));
        let (lo, hi) = secs.fold((u32::MAX, 0), |(a, b), s| (a.min(s), b.max(s)));
        (hi_at - lo_at <= SAME_MOMENT_S && hi - lo <= SAME_DURATION_S && lo >= LONG_S).then_some(
            VmStall {
                cpus: self.first.len(),
                secs: lo,
            },
        )
    }
}

/// The title a soft lockup gets when it was part of a [`VmStall`].
pub fn stall_title(title: &str) -> String {
    let rest = title.strip_prefix("BUG: soft lockup").unwrap_or(title);
    format!("BUG: soft lockup {STALL_MARK}{rest} (a VM stall?)")
}

/// Retitles the soft-lockup reports of a console that showed a VM stall.
pub fn retitle(reports: &mut [Report], stall: Option<&VmStall>) {
    if stall.is_none() {
        return;
    }
    for r in reports.iter_mut().filter(|r| r.kind == Kind::SoftLockup) {
        if !r.title.contains(STALL_MARK) {
            r.title = stall_title(&r.title);
        }
    }
}

/// The stall a whole console shows, if any.
pub fn vm_stall(console: &str) -> Option<VmStall> {
    let mut w = StallWatch::new();
    for l in console.lines() {
        w.line(l);
    }
    w.stall()
}

/// `[  144.532921] watchdog: BUG: soft lockup - CPU#0 stuck for 134s! [a:1]`
/// (a caller field may follow the timestamp): CPU, timestamp, seconds.
fn soft_lockup_line(line: &str) -> Option<(u32, f64, u32)> {
    let (cpu, secs) = soft_lockup(line)?;
    let stamp = line.strip_prefix('[')?.split_once(']')?.0.trim();
    Some((cpu, stamp.parse().ok()?, secs))
}

/// A soft-lockup line's CPU and seconds, with or without its timestamp.
fn soft_lockup(line: &str) -> Option<(u32, u32)> {
    let rest = &line[line.find("BUG: soft lockup - CPU#")? + "BUG: soft lockup - CPU#".len()..];
    let (cpu, rest) = rest.split_once(' ')?;
    let secs = rest.strip_prefix("stuck for ")?.split_once("s!")?.0;
    Some((cpu.parse().ok()?, secs.parse().ok()?))
}

/// Whether some CPU's first soft-lockup report in `text` (a console or a
/// report's text, timestamps or not) says it was stuck at least
/// [`LONG_S`]: longer than the watchdog lets pass on a running CPU, so the
/// CPU took no timer interrupt for that long.
pub fn late_first_lockup(text: &str) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    text.lines()
        .filter_map(soft_lockup)
        .any(|(cpu, secs)| seen.insert(cpu) && secs >= LONG_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(lines: &[&str]) -> Option<VmStall> {
        let mut w = StallWatch::new();
        for l in lines {
            w.line(l);
        }
        w.stall()
    }

    #[test]
    fn every_vcpu_at_once_with_the_same_long_duration_is_a_stall() {
        let s = watch(&[
            "[  144.532921] watchdog: BUG: soft lockup - CPU#0 stuck for 134s! [lane1:128]",
            "[  144.625679] watchdog: BUG: soft lockup - CPU#1 stuck for 134s! [lane2:129]",
            "[  170.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 160s! [lane1:128]",
        ]);
        assert_eq!(s, Some(VmStall { cpus: 2, secs: 134 }));
    }

    #[test]
    fn real_lockups_are_not_stalls() {
        // One CPU.
        assert_eq!(
            watch(&["[  144.5] watchdog: BUG: soft lockup - CPU#0 stuck for 134s! [a:1]"]),
            None
        );
        // Two CPUs, timers of different phases.
        assert_eq!(
            watch(&[
                "[  70.1] watchdog: BUG: soft lockup - CPU#0 stuck for 64s! [a:1]",
                "[  75.3] watchdog: BUG: soft lockup - CPU#1 stuck for 66s! [b:2]",
            ]),
            None
        );
        // At the same moment, but first reports of a running watchdog.
        assert_eq!(
            watch(&[
                "[  70.1] watchdog: BUG: soft lockup - CPU#0 stuck for 64s! [a:1]",
                "[  70.2] watchdog: BUG: soft lockup - CPU#1 stuck for 64s! [b:2]",
            ]),
            None
        );
        // Long, at once, but different durations.
        assert_eq!(
            watch(&[
                "[ 200.1] watchdog: BUG: soft lockup - CPU#0 stuck for 134s! [a:1]",
                "[ 200.2] watchdog: BUG: soft lockup - CPU#1 stuck for 100s! [b:2]",
            ]),
            None
        );
    }

    #[test]
    fn a_caller_field_and_other_lines_are_fine() {
        assert_eq!(
            soft_lockup_line(
                "[  144.53][    C1] watchdog: BUG: soft lockup - CPU#1 stuck for 99s! [x:1]"
            ),
            Some((1, 144.53, 99))
        );
        assert_eq!(soft_lockup_line("[  1.0] something else"), None);
        assert_eq!(
            soft_lockup_line("BUG: soft lockup - CPU#1 stuck for 99s!"),
            None
        );
    }

    #[test]
    fn titles_say_what_it_probably_was() {
        assert_eq!(
            stall_title("BUG: soft lockup in kmem_cache_alloc"),
            "BUG: soft lockup on every vCPU at once in kmem_cache_alloc (a VM stall?)"
        );
    }
}
