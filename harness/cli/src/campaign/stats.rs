//! Campaign counters, the progress line and the end summary (text, JSON,
//! KTAP, the kselftest format CI systems read, and JUnit XML). The counters are saved in
//! the workdir after every program, so a campaign killed with SIGKILL
//! resumes from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::markup::esc;

/// One finding title's tally in this campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingTally {
    /// The finding's kind.
    pub kind: String,
    /// First seen by this campaign (not in the workdir before it started).
    pub new: bool,
    /// Known for the kernel (a scenario's `known_findings`).
    pub known: bool,
    /// Times seen by this campaign.
    pub count: u64,
    /// Its directory under the workdir.
    pub dir: String,
    /// The command that replays it.
    pub replay: String,
    /// For a model divergence: in how many fresh VMs its program alone
    /// showed it again (`2/3`), see `Campaign::triage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<String>,
    /// The campaign's time (s, from its start, sessions added) when this
    /// campaign first saw it: its time to first find.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_s: Option<u64>,
}

/// One test point of the summary (a scenario, or the fuzzer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Programs tried: those that ran, and those whose run failed (a boot
    /// that did not come up).
    pub programs: u64,
    /// Runs with a finding not known for the kernel.
    pub failed: u64,
    /// Tries that could not complete (infrastructure): a failed run, or a
    /// run whose verdict was an error.
    pub errors: u64,
}

impl Part {
    /// Every run of it failed to run: it tested nothing.
    pub fn tested_nothing(&self) -> bool {
        self.programs <= self.errors
    }
}

/// The counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Wall time, summed over resumed sessions, in ms.
    pub elapsed_ms: u64,
    /// `elapsed_ms` when the last program started: no program starts after
    /// the campaign's duration, but the one running then ends its run (a
    /// hang takes the watchdog's time to be told from a slow op).
    #[serde(default)]
    pub last_start_ms: u64,
    /// Programs run.
    pub programs: u64,
    /// Ops executed (as reported by the agent).
    pub ops: u64,
    /// VM boots.
    pub boots: u64,
    /// Of the boots, those that started from a saved VM state instead.
    #[serde(default)]
    pub restores: u64,
    /// Time spent booting VMs, in ms (the cost of restarts).
    #[serde(default)]
    pub boot_ms: u64,
    /// Boots that replaced a VM dropped after a program (a report, a hang,
    /// a dead VM, a reset that left something behind).
    pub restarts: u64,
    /// Programs the corpus kept for new behaviour.
    pub kept: u64,
    /// Kernel coverage (KCOV), where the kernel has it.
    #[serde(default)]
    pub cover: CoverStats,
    /// Fault injection (`fail_nth`): runs of ops that carried one, those
    /// a fault was injected into, and those of them that failed.
    #[serde(default)]
    pub faults: FaultStats,
    /// The corpus exchange (`--exchange`).
    #[serde(default)]
    pub exchange: ExchangeStats,
    /// cgstorm's own CPU time on the host (user and system, all its
    /// threads; not QEMU's), in ms, summed over resumed sessions.
    #[serde(default)]
    pub host_cpu_ms: u64,
    /// `(elapsed s, programs, distinct findings)` at every progress line,
    /// for the report's plots.
    #[serde(default)]
    pub series: Vec<(u64, u64, u64)>,
    /// Wall time per kernel release, in ms.
    pub per_kernel_ms: BTreeMap<String, u64>,
    /// Findings by title.
    pub findings: BTreeMap<String, FindingTally>,
    /// Per scenario (`scenario NAME`) and for the fuzzer (`fuzz`).
    pub parts: BTreeMap<String, Part>,
    /// Where a rotating campaign (soak) is: its next step.
    pub cursor: u64,
    /// Fuzz programs drawn so far (the index of the next one).
    #[serde(default)]
    pub draws: u64,
    /// Why each dropped VM was dropped, counted.
    pub drops: BTreeMap<String, u64>,
    /// Wall time by phase, in ms: `program` (from sending a program to its
    /// end, less the agent's own parts: `snapshot`, its barrier snapshots,
    /// and `agent`, its setup before the lanes and teardown after them:
    /// killing tasks, dropping pins), `settle` (the console after it),
    /// `check` (the host judging it), `reset` (the agent's reset); booting
    /// is [`Stats::boot_ms`].
    #[serde(default)]
    pub phase_ms: BTreeMap<String, u64>,
    /// The agent's resets: how many, and their time by part in ms (from
    /// the agent's own clock; the host's `reset` phase is only the part it
    /// waited for, the rest overlapping its check).
    #[serde(default)]
    pub resets: u64,
    /// See [`Stats::resets`].
    #[serde(default)]
    pub reset_ms: BTreeMap<String, u64>,
    /// The tracepoint events of background work the runs showed (kernels
    /// with tracefs; counted with the coverage, so not under `--no-kcov`):
    /// by event name (`work:FUNCTION` for workqueue items), how many runs
    /// showed it and how many times in all.
    #[serde(default)]
    pub events: BTreeMap<String, (u64, u64)>,
    /// The program whose results took the model longest to check, and how
    /// long (ms); it is kept with its results in `slowest-check/` of the
    /// workdir, for `cgstorm check program.yaml --trace trace.json`.
    #[serde(default)]
    pub slowest_check: Option<(u64, String)>,
}

/// The fleet's corpus exchange, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeStats {
    /// Programs this campaign kept and gave the fleet.
    pub published: u64,
    /// Programs taken from the other shards (each run once here).
    pub imported: u64,
    /// Of those, the programs that showed something new here and joined
    /// this campaign's corpus.
    pub kept: u64,
}

/// Ops run with `fail_nth`, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Runs of ops that carried `fail_nth`.
    pub carried: u64,
    /// Of those, the runs a fault was injected into.
    pub injected: u64,
    /// Of those, the runs that returned an error.
    pub failed: u64,
}

/// What the campaign learnt from kernel coverage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverStats {
    /// Distinct edges seen (in this session: a resumed campaign finds its
    /// corpus's edges again).
    pub edges: u64,
    /// Runs that came back with edges.
    pub runs: u64,
    /// Re-runs of a program with new edges, to see them again.
    pub reruns: u64,
    /// Programs kept because their new edges showed again.
    pub kept: u64,
    /// New edges that did not show again in the re-run.
    pub flaky: u64,
    /// Kept programs cut down while their new edges still showed.
    #[serde(default)]
    pub shrunk: u64,
    /// Ops those cuts took out.
    #[serde(default)]
    pub ops_cut: u64,
    /// Runs minimisation took.
    #[serde(default)]
    pub shrink_runs: u64,
    /// Milliseconds minimisation took (with the re-runs' `confirm_ms`, at
    /// most [`super::pending::SHARE`] of the campaign).
    #[serde(default)]
    pub shrink_ms: u64,
    /// Milliseconds the re-runs of programs with new edges took.
    #[serde(default)]
    pub confirm_ms: u64,
    /// Programs with new edges never re-run: the queue was full and they
    /// had the fewest new edges.
    #[serde(default)]
    pub unconfirmed: u64,
    /// `(elapsed s, edges)` every 30 s or so, for the plot.
    pub series: Vec<(u64, u64)>,
    /// Distinct kernel PCs run (basic blocks), per kernel added up.
    #[serde(default)]
    pub pcs: u64,
    /// `(elapsed s, PCs)` at the same points as `series`.
    #[serde(default)]
    pub pcs_series: Vec<(u64, u64)>,
    /// PCs run in the focus's functions (`--focus`).
    #[serde(default)]
    pub focus_pcs: u64,
    /// `(elapsed s, focus PCs)` at the same points as `series`.
    #[serde(default)]
    pub focus_series: Vec<(u64, u64)>,
    /// With feedback: the share of generated ops' draws each family of
    /// ops had at the end (`campaign::yields`).
    #[serde(default)]
    pub families: String,
}

/// The phases of [`Stats::phase_ms`], in the order the summary gives them.
pub const PHASES: [&str; 7] = [
    "program", "snapshot", "agent", "boot", "reset", "settle", "check",
];

/// The state files a campaign workdir may have: `cgstorm fuzz`'s, `soak`'s.
pub const STATE_FILES: [&str; 2] = ["fuzz.json", "soak.json"];

impl Stats {
    /// Loads the counters saved in `path`, or starts at zero.
    pub fn load(path: &Path) -> Result<Stats, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{} is not a campaign state file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stats::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The counters of the campaign in workdir `dir` (`fuzz.json`, or
    /// `soak.json`), if it ran a program.
    pub fn of_workdir(dir: &Path) -> Option<Stats> {
        STATE_FILES
            .iter()
            .find_map(|f| Stats::load(&dir.join(f)).ok().filter(|s| s.programs > 0))
    }

    /// Saves the counters to `path` atomically (write, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::findings::write_new(
            path,
            &serde_json::to_vec_pretty(self).expect("stats serialise"),
        )
    }

    /// `(elapsed s, programs, distinct findings)` now: a point of [`Stats::series`].
    pub fn point(&self) -> (u64, u64, u64) {
        (
            self.elapsed_ms / 1000,
            self.programs,
            self.findings.len() as u64,
        )
    }

    /// Ops per second of wall time.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / (self.elapsed_ms.max(1) as f64 / 1000.0)
    }

    /// Programs per second of wall time.
    pub fn programs_per_s(&self) -> f64 {
        self.programs as f64 / (self.elapsed_ms.max(1) as f64 / 1000.0)
    }

    /// Where the wall time went, in percent of it: `program 71.2%, boot
    /// 9.8%, …, other 3.1%` (other: generating, mutating, storing, the
    /// corpus); `None` before any phase was timed.
    pub fn time_split(&self) -> Option<String> {
        if self.phase_ms.is_empty() {
            return None;
        }
        let total = self.elapsed_ms.max(1) as f64;
        let ms = |p: &str| match p {
            "boot" => self.boot_ms,
            _ => self.phase_ms.get(p).copied().unwrap_or(0),
        };
        let mut parts: Vec<String> = PHASES
            .iter()
            .map(|p| format!("{p} {:.1}%", ms(p) as f64 * 100.0 / total))
            .collect();
        let timed: u64 = PHASES.iter().map(|p| ms(p)).sum();
        let other = self.elapsed_ms.saturating_sub(timed);
        parts.push(format!("other {:.1}%", other as f64 * 100.0 / total));
        Some(parts.join(", "))
    }

    /// The agent's resets on average, by part: `812 resets, 152 ms each in
    /// the guest: unmount 80, v1 2, …`; `None` before one.
    pub fn reset_split(&self) -> Option<String> {
        if self.resets == 0 {
            return None;
        }
        let n = self.resets as f64;
        let total: u64 = self.reset_ms.values().sum();
        let mut parts: Vec<(&String, &u64)> = self.reset_ms.iter().collect();
        parts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = parts
            .iter()
            .map(|(p, ms)| format!("{p} {:.0}", **ms as f64 / n))
            .collect();
        Some(format!(
            "{} resets, {:.0} ms each in the guest: {} (ms)",
            self.resets,
            total as f64 / n,
            parts.join(", ")
        ))
    }

    /// The background work the runs showed, by tracepoint: in how many
    /// runs each enabled event came, the workqueue functions that ran most
    /// often, and the enabled events no run showed (a mechanism the
    /// campaign never reached). `None` when no run counted events.
    pub fn events_line(&self) -> Option<String> {
        if self.events.is_empty() {
            return None;
        }
        use cgstorm_proto::contract::{TRACE_EVENTS, TRACE_WORK_EVENT, TRACE_WORK_PREFIX};
        let listed: Vec<&str> = TRACE_EVENTS
            .iter()
            .filter_map(|e| e.split_once('/').map(|(_, name)| name))
            .filter(|name| *name != TRACE_WORK_EVENT)
            .collect();
        let runs = |name: &str| self.events.get(name).map_or(0, |(runs, _)| *runs);
        let seen: Vec<String> = listed
            .iter()
            .filter(|n| runs(n) > 0)
            .map(|n| format!("{n} {}", runs(n)))
            .collect();
        let never: Vec<&str> = listed.iter().copied().filter(|n| runs(n) == 0).collect();
        let mut work: Vec<(&str, u64)> = self
            .events
            .iter()
            .filter_map(|(e, (runs, _))| Some((e.strip_prefix(TRACE_WORK_PREFIX)?, *runs)))
            .collect();
        work.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut line = format!("runs with each event: {}", seen.join(", "));
        if !work.is_empty() {
            let top: Vec<String> = work
                .iter()
                .take(5)
                .map(|(f, n)| format!("{f} {n}"))
                .collect();
            line += &format!(
                "; work items of {} functions (most runs: {})",
                work.len(),
                top.join(", ")
            );
        }
        if !never.is_empty() {
            line += &format!("; never: {}", never.join(", "));
        }
        Some(line)
    }

    /// VM restarts per hour of wall time.
    pub fn restarts_per_hour(&self) -> f64 {
        self.restarts as f64 / (self.elapsed_ms.max(1) as f64 / 3_600_000.0)
    }

    /// New and already-known finding titles, not counting known-for-kernel ones.
    fn split(&self) -> (usize, usize) {
        let new = self.findings.values().filter(|f| f.new && !f.known).count();
        let old = self
            .findings
            .values()
            .filter(|f| !f.new && !f.known)
            .count();
        (new, old)
    }

    /// The progress line.
    pub fn progress(&self) -> String {
        let (new, old) = self.split();
        format!(
            "{} elapsed, {} programs ({:.2}/s), {} ops ({:.0}/s), findings {new} new {old} old, {} vm restarts, corpus +{}{}",
            human(Duration::from_millis(self.elapsed_ms)),
            self.programs,
            self.programs_per_s(),
            self.ops,
            self.ops_per_s(),
            self.restarts,
            self.kept,
            if self.cover.runs > 0 {
                format!(", {} edges", self.cover.edges)
            } else {
                String::new()
            }
        )
    }

    /// The summary for people.
    pub fn text(&self, what: &str) -> String {
        let mut s = String::new();
        let (new, old) = self.split();
        let _ = writeln!(s, "cgstorm {what} summary");
        let _ = writeln!(
            s,
            "  elapsed      {} (the last program started at {})",
            human(Duration::from_millis(self.elapsed_ms)),
            human(Duration::from_millis(self.last_start_ms))
        );
        let _ = writeln!(
            s,
            "  programs     {} ({:.2}/s)",
            self.programs,
            self.programs_per_s()
        );
        let _ = writeln!(s, "  ops          {} ({:.0}/s)", self.ops, self.ops_per_s());
        let c = &self.cover;
        if c.runs > 0 {
            let _ = writeln!(
                s,
                "  coverage     {} edges, {} PCs from {} runs; {} re-runs of programs with new edges ({:.0} s) kept {}, {} edges did not show again",
                c.edges, c.pcs, c.runs, c.reruns, c.confirm_ms as f64 / 1000.0, c.kept, c.flaky
            );
            if c.unconfirmed > 0 {
                let _ = writeln!(
                    s,
                    "               {} programs with new edges were never re-run (fewest new edges, while re-runs and minimisation had their share)",
                    c.unconfirmed
                );
            }
            if c.focus_pcs > 0 {
                let _ = writeln!(
                    s,
                    "  focus        {} PCs in the functions of the subsystems that matter",
                    c.focus_pcs
                );
            }
            if !c.families.is_empty() {
                let _ = writeln!(
                    s,
                    "  generator    families of ops drawn, by their recent new edges per second: {}",
                    c.families
                );
            }
            if c.shrink_runs > 0 {
                let _ = writeln!(
                    s,
                    "  minimised    {} kept programs cut by {} ops while their new edges showed ({} runs, {:.0} s)",
                    c.shrunk,
                    c.ops_cut,
                    c.shrink_runs,
                    c.shrink_ms as f64 / 1000.0
                );
            }
        }
        let x = &self.exchange;
        if x.published + x.imported > 0 {
            let _ = writeln!(
                s,
                "  exchange     {} programs given to the other shards, {} taken from them, {} of those kept here",
                x.published, x.imported, x.kept
            );
        }
        let f = &self.faults;
        if f.carried > 0 {
            let _ = writeln!(
                s,
                "  faults       {} op runs carried fail_nth, {} had a fault injected, {} of them failed",
                f.carried, f.injected, f.failed
            );
        }
        let _ = writeln!(
            s,
            "  vms          {} boots ({} of them restored from a snapshot), {} restarts ({:.1}/h), {:.1}% of the time booting",
            self.boots,
            self.restores,
            self.restarts,
            self.restarts_per_hour(),
            self.boot_ms as f64 * 100.0 / self.elapsed_ms.max(1) as f64
        );
        for (reason, n) in &self.drops {
            let _ = writeln!(s, "    {n} x {reason}");
        }
        if let Some(split) = self.time_split() {
            let _ = writeln!(s, "  wall time    {split}");
        }
        if self.host_cpu_ms > 0 {
            let _ = writeln!(
                s,
                "  host cpu     cgstorm {:.1} s, {:.0} ms a program (its own threads: the checks, coverage, the corpus; QEMU not counted)",
                self.host_cpu_ms as f64 / 1000.0,
                self.host_cpu_ms as f64 / self.programs.max(1) as f64
            );
        }
        if let Some(r) = self.reset_split() {
            let _ = writeln!(s, "  resets       {r}");
        }
        if let Some(e) = self.events_line() {
            let _ = writeln!(s, "  background   {e}");
        }
        if let Some((ms, name)) = &self.slowest_check {
            let _ = writeln!(
                s,
                "  slowest check {:.1} s, of {name} (kept in slowest-check/)",
                *ms as f64 / 1000.0
            );
        }
        for (k, ms) in &self.per_kernel_ms {
            let _ = writeln!(
                s,
                "  kernel       {k}: {}",
                human(Duration::from_millis(*ms))
            );
        }
        let _ = writeln!(s, "  findings     {new} new, {old} seen before");
        for (title, f) in &self.findings {
            let tag = match (f.known, f.new) {
                (true, _) => "known",
                (false, true) => "NEW",
                (false, false) => "old",
            };
            let triage = f
                .triage
                .as_ref()
                .map(|r| format!(", came back in {r} fresh runs"))
                .unwrap_or_default();
            let first = f
                .first_s
                .map(|t| format!(", first after {}", crate::campaign::stats::clock(t)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "    [{tag}] {title} ({}x, {}{first}{triage})",
                f.count, f.kind
            );
            let _ = writeln!(s, "           {}  replay: {}", f.dir, f.replay);
        }
        s
    }

    /// The summary in KTAP: one test point per part; a part fails when one
    /// of its runs found something not known for the kernel, or when none
    /// of its runs got through (all errors: it tested nothing).
    pub fn ktap(&self) -> String {
        let mut s = String::from("KTAP version 1\n");
        let _ = writeln!(s, "1..{}", self.parts.len());
        for (i, (name, p)) in self.parts.iter().enumerate() {
            let ok = if p.failed == 0 && !p.tested_nothing() {
                "ok"
            } else {
                "not ok"
            };
            let _ = writeln!(
                s,
                "{ok} {} {} # {} programs, {} with findings, {} errors",
                i + 1,
                name.replace('#', "_"),
                p.programs,
                p.failed,
                p.errors
            );
        }
        for (title, f) in &self.findings {
            let _ = writeln!(
                s,
                "# finding{}: {title} ({}x)",
                if f.new { " (new)" } else { "" },
                f.count
            );
        }
        s
    }
}

impl Stats {
    /// The summary as JUnit XML, for CI systems that read JUnit rather than
    /// KTAP: one test suite `suite` (`cgstorm soak`, `cgstorm fuzz shard
    /// 1/4`), one test case per part as in [`Stats::ktap`], failed (with the
    /// campaign's findings not known for the kernel) or in error (every run
    /// failed to run) as there.
    pub fn junit(&self, suite: &str) -> String {
        let unknown: Vec<(&String, &FindingTally)> =
            self.findings.iter().filter(|(_, f)| !f.known).collect();
        let listing: String = unknown
            .iter()
            .map(|(t, f)| {
                format!(
                    "[{}] {t} ({}x) in {}\nreplay: {}\n",
                    f.kind, f.count, f.dir, f.replay
                )
            })
            .collect();
        let failures = self.parts.values().filter(|p| p.failed > 0).count();
        let errors = self
            .parts
            .values()
            .filter(|p| p.failed == 0 && p.tested_nothing())
            .count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.1}\">",
            esc(suite),
            self.parts.len(),
            self.elapsed_ms as f64 / 1000.0
        );
        for (name, p) in &self.parts {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\"",
                esc(suite),
                esc(name)
            );
            let summary = format!(
                "{} programs, {} with findings, {} errors",
                p.programs, p.failed, p.errors
            );
            if p.failed > 0 {
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    esc(&summary),
                    esc(&listing)
                );
            } else if p.tested_nothing() {
                let _ = writeln!(
                    x,
                    ">\n      <error message=\"{}\">it tested nothing</error>\n    </testcase>",
                    esc(&summary)
                );
            } else {
                let _ = writeln!(
                    x,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    esc(&summary)
                );
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// `1h02m03s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `s` seconds as `1h02m03s`, `4m05s` or `6s`.
pub fn clock(s: u64) -> String {
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(Stats::load(&path).unwrap(), Stats::default());
        let mut s = Stats {
            programs: 3,
            ops: 1000,
            elapsed_ms: 2000,
            ..Stats::default()
        };
        s.findings.insert(
            "WARNING in x".into(),
            FindingTally {
                count: 2,
                new: true,
                ..Default::default()
            },
        );
        s.save(&path).unwrap();
        assert_eq!(Stats::load(&path).unwrap(), s);
        std::fs::write(&path, "{").unwrap();
        assert!(Stats::load(&path)
            .unwrap_err()
            .contains("not a campaign state file"));
    }

    /// cgstorm's own CPU time is in the summary, per program, when counted.
    #[test]
    fn the_host_cpu_is_said_per_program() {
        let mut s = Stats {
            programs: 4,
            elapsed_ms: 10_000,
            ..Stats::default()
        };
        assert!(!s.text("fuzz").contains("host cpu"));
        s.host_cpu_ms = 2_000;
        assert!(
            s.text("fuzz")
                .contains("  host cpu     cgstorm 2.0 s, 500 ms a program"),
            "{}",
            s.text("fuzz")
        );
    }

    #[test]
    fn the_wall_time_split_names_every_phase_and_the_rest() {
        let mut s = Stats {
            elapsed_ms: 10_000,
            ..Stats::default()
        };
        assert_eq!(s.time_split(), None);
        for (p, ms) in [("program", 7_000), ("snapshot", 300), ("reset", 500)] {
            s.phase_ms.insert(p.into(), ms);
        }
        s.boot_ms = 1_500;
        assert_eq!(
            s.time_split().unwrap(),
            "program 70.0%, snapshot 3.0%, agent 0.0%, boot 15.0%, reset 5.0%, settle 0.0%, \
             check 0.0%, other 7.0%"
        );
        assert!(s.text("fuzz").contains("  wall time    program 70.0%"));
    }

    /// The background work a campaign saw: runs per enabled event, the
    /// workqueue functions that ran most, and the events it never saw.
    #[test]
    fn the_events_line_names_what_never_ran() {
        let mut s = Stats::default();
        assert_eq!(s.events_line(), None);
        for (e, runs, n) in [
            ("cgroup_mkdir", 40, 300),
            ("track_foreign_dirty", 3, 9),
            ("work:wb_workfn", 30, 90),
            ("work:css_killed_work_fn", 35, 70),
        ] {
            s.events.insert(e.into(), (runs, n));
        }
        let line = s.events_line().unwrap();
        assert!(
            line.starts_with("runs with each event: track_foreign_dirty 3, cgroup_mkdir 40;"),
            "{line}"
        );
        assert!(
            line.contains(
                "work items of 2 functions (most runs: css_killed_work_fn 35, wb_workfn 30)"
            ),
            "{line}"
        );
        let never = line.split("; never: ").nth(1).unwrap();
        assert!(never.starts_with("inode_switch_wbs, "), "{line}");
        assert!(
            !never.contains("cgroup_mkdir") && !never.contains("workqueue"),
            "{line}"
        );
        assert!(s
            .text("fuzz")
            .contains("  background   runs with each event:"));
    }

    /// The agent's resets are averaged by part, the costliest first.
    #[test]
    fn the_reset_split_averages_its_parts() {
        let mut s = Stats::default();
        assert_eq!(s.reset_split(), None);
        s.resets = 4;
        for (p, ms) in [("unmount", 400), ("dying", 120), ("blank", 80)] {
            s.reset_ms.insert(p.into(), ms);
        }
        assert_eq!(
            s.reset_split().unwrap(),
            "4 resets, 150 ms each in the guest: unmount 100, dying 30, blank 20 (ms)"
        );
        assert!(s.text("fuzz").contains("  resets       4 resets"));
    }

    #[test]
    fn ktap_fails_the_parts_with_findings() {
        let mut s = Stats::default();
        s.parts.insert(
            "fuzz".into(),
            Part {
                programs: 10,
                failed: 0,
                errors: 0,
            },
        );
        s.parts.insert(
            "scenario dax".into(),
            Part {
                programs: 2,
                failed: 1,
                errors: 0,
            },
        );
        s.parts.insert(
            "scenario zz".into(),
            Part {
                programs: 0,
                failed: 0,
                errors: 3,
            },
        );
        let k = s.ktap();
        assert!(k.starts_with("KTAP version 1\n1..3\n"), "{k}");
        assert!(k.contains("ok 1 fuzz # 10 programs"), "{k}");
        assert!(
            k.contains("not ok 2 scenario dax # 2 programs, 1 with findings"),
            "{k}"
        );
        // Every run of it failed to run: it tested nothing.
        assert!(
            k.contains("not ok 3 scenario zz # 0 programs, 0 with findings, 3 errors"),
            "{k}"
        );
    }

    /// The JUnit summary has a test case per part, failed or in error as
    /// in KTAP, and is XML (escaped titles).
    #[test]
    fn junit_has_a_case_per_part() {
        let mut s = Stats {
            elapsed_ms: 60_000,
            ..Stats::default()
        };
        for (name, programs, failed, errors) in [
            ("fuzz", 10, 1, 0),
            ("scenario a", 3, 0, 0),
            ("scenario z", 0, 0, 2),
        ] {
            s.parts.insert(
                name.into(),
                Part {
                    programs,
                    failed,
                    errors,
                },
            );
        }
        s.findings.insert(
            "WARNING in f <&>".into(),
            FindingTally {
                kind: "warning".into(),
                count: 2,
                dir: "W/findings/ab".into(),
                ..Default::default()
            },
        );
        let x = s.junit("cgstorm fuzz shard 1/2");
        assert!(x.contains(r#"<testsuite name="cgstorm fuzz shard 1/2" tests="3" failures="1" errors="1" time="60.0">"#), "{x}");
        assert!(
            x.contains(r#"<testcase classname="cgstorm fuzz shard 1/2" name="fuzz">"#),
            "{x}"
        );
        assert!(x.contains(r#"<failure message="10 programs, 1 with findings, 0 errors">[warning] WARNING in f &lt;&amp;&gt; (2x) in W/findings/ab"#), "{x}");
        assert!(
            x.contains(r#"name="scenario z">"#) && x.contains("<error "),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(x.matches("</testcase>").count(), 3);
    }

    #[test]
    fn the_summary_says_when_each_finding_was_first_found() {
        let mut s = Stats {
            programs: 3,
            elapsed_ms: 600_000,
            ..Stats::default()
        };
        s.findings.insert(
            "WARNING in dax_disassociate_entry".into(),
            FindingTally {
                kind: "warning".into(),
                count: 2,
                first_s: Some(245),
                ..Default::default()
            },
        );
        let t = s.text("fuzz");
        assert!(t.contains("(2x, warning, first after 4m05s)"), "{t}");
        assert_eq!(clock(7), "7s");
        assert_eq!(clock(3723), "1h02m03s");
    }

    #[test]
    fn rates_use_wall_time() {
        let s = Stats {
            programs: 30,
            ops: 6000,
            restarts: 2,
            elapsed_ms: 60_000,
            ..Stats::default()
        };
        assert!((s.programs_per_s() - 0.5).abs() < 1e-9);
        assert!((s.ops_per_s() - 100.0).abs() < 1e-9);
        assert!((s.restarts_per_hour() - 120.0).abs() < 1e-9);
        assert_eq!(human(Duration::from_secs(3723)), "1h02m03s");
    }
}
