//! What a program asks of a run beyond the model: its `checks`, evaluated
//! over the barrier snapshots, become findings of kind `check`; its
//! `known_findings` mark the findings they match as known.

use cgstorm_workloads::checks::CheckResult;
use cgstorm_workloads::Program;

use super::trace::TraceBuilder;
use super::verdict::{Detail, Finding};

/// The kind of a finding from a program check.
pub const CHECK: &str = "check";

/// A finding for every check that does not hold; a warning for every check
/// the run ended too early to evaluate.
pub fn check_findings(
    program: &Program,
    trace: &TraceBuilder,
    warnings: &mut Vec<String>,
) -> Vec<Finding> {
    let snapshots: Vec<_> = trace
        .trace()
        .steps
        .iter()
        .map(|s| s.snapshot.as_ref())
        .collect();
    let mut out = Vec::new();
    for c in &program.checks {
        match c.evaluate(&snapshots) {
            CheckResult::Holds => {}
            CheckResult::Unevaluated(why) => warnings.push(format!("check {c}: {why}")),
            CheckResult::Fails { title, failures } => out.push(Finding {
                kind: CHECK.into(),
                title,
                op: None,
                detail: Detail::Check { failures },
                known: false,
            }),
        }
    }
    out
}

/// Marks the findings the program lists as known on kernel `release`, and
/// warns about each known finding of this kernel that did not show: a
/// kernel update that fixed it, or a run too short to reach it.
pub fn mark_known(
    program: &Program,
    release: &str,
    findings: &mut [Finding],
    warnings: &mut Vec<String>,
) {
    for f in findings.iter_mut() {
        f.known = program
            .known_findings
            .iter()
            .any(|k| k.matches(&f.title, release));
    }
    for k in &program.known_findings {
        if k.kernel_matches(release) && !findings.iter().any(|f| k.matches(&f.title, release)) {
            warnings.push(format!(
                "known finding `{}` (expected on kernel {}) did not show on {release}",
                k.title, k.kernel
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cgstorm_proto::proto::AgentMsg;
    use cgstorm_vm::fake::FakeVm;
    use cgstorm_workloads::model::snapshot::{CgView, ReclaimStat};
    use cgstorm_workloads::model::{OpEvent, Snapshot, Target};
    use cgstorm_workloads::{OpId, Outcome};

    use super::super::console::ConsoleWatch;
    use super::super::limits::Limits;
    use super::super::session::End;
    use super::super::verdict::{self, RunInfo, Verdict};
    use super::super::{conclude, Conclusion};
    use super::*;

    const PROGRAM: &str = "name: p
lanes:
  - name: main
    ops:
      - mkdir: a
      - barrier
      - sync
checks:
  - reclaim_progress: {cgroups: \"a\", from: 0, to: 1}
known_findings:
  - {title: \"possible deadlock in splat_*\", kernel: \"6.1\"}
";

    fn snap(scan: u64, steal: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.cgroups.insert("/".parse().unwrap(), CgView::default());
        s.cgroups.insert(
            "a".parse().unwrap(),
            CgView {
                reclaim: Some(ReclaimStat {
                    pgscan: scan,
                    pgsteal: steal,
                }),
                ..CgView::default()
            },
        );
        s
    }

    fn ev(op: usize, t: u64) -> OpEvent {
        OpEvent {
            id: OpId { lane: 0, op },
            outcome: Outcome::Ok,
            start_ns: t,
            end_ns: t + 10,
            injected: false,
        }
    }

    /// Runs PROGRAM on a fake VM whose second snapshot has these counters,
    /// with `console` on the console, on kernel `release`.
    fn run(end: (u64, u64), console: &[&str], release: &str) -> Conclusion {
        let mut vm = FakeVm::new()
            .agent_says(&AgentMsg::Started { lanes: 1, steps: 2 })
            .agent_says(&AgentMsg::Ops {
                events: vec![ev(0, 100)],
            })
            .agent_says(&AgentMsg::Barrier {
                step: 0,
                snapshot: snap(10, 5),
            })
            .agent_says(&AgentMsg::Ops {
                events: vec![ev(2, 200)],
            })
            .agent_says(&AgentMsg::Barrier {
                step: 1,
                snapshot: snap(end.0, end.1),
            })
            .agent_says(&AgentMsg::Finished {
                error: None,
                timing: Default::default(),
            })
            .console_lines(console.iter().copied())
            .powers_off_on_shutdown();
        let mut target = Target::default();
        target.kernel.release = release.into();
        let ms = Duration::from_millis;
        let limits = Limits {
            tcg: false,
            deadline: ms(5_000),
            stall: ms(100),
            stall_grace: ms(200),
            silence: ms(300),
            settle_quiet: ms(20),
            settle_max: ms(100),
            hang_settle_max: ms(100),
            shutdown: ms(200),
            poll: ms(5),
            keep_alive: false,
            reset_early: false,
            cover: crate::run::limits::Cover::Off,
            trace: false,
        };
        conclude(
            &mut vm,
            &Program::from_yaml("p.yaml", PROGRAM).unwrap(),
            &target,
            Duration::from_secs(1),
            &limits,
            &|| false,
            ConsoleWatch::new(None),
        )
    }

    #[test]
    fn a_check_that_holds_passes() {
        let c = run((20, 9), &[], "6.1.0-56-cloud-amd64");
        assert_eq!(c.verdict, Verdict::Pass, "{:?}", c.findings);
        assert_eq!(c.outcome.end, End::Finished { error: None });
    }

    #[test]
    fn no_reclaim_progress_is_a_check_finding() {
        let c = run((10, 5), &[], "6.1.0-56-cloud-amd64");
        assert_eq!(c.verdict, Verdict::Finding);
        let f = &c.findings[0];
        assert_eq!(f.kind, CHECK);
        assert!(!f.known);
        assert_eq!(
            f.detail,
            Detail::Check {
                failures: vec!["a: pgscan 10 -> 10, pgsteal 5 -> 5".into()]
            }
        );
    }

    fn lockdep() -> Vec<String> {
        let log = include_str!("../../../report/testdata/splat-abba-6.12.log");
        log.lines()
            .skip_while(|l| !l.is_empty())
            .skip(1)
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_known_report_passes_but_is_shown_and_an_unknown_one_fails() {
        let lines = lockdep();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let c = run((20, 9), &lines, "6.1.0-56-cloud-amd64");
        assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
        assert!(c.findings[0].known);
        assert_eq!(c.verdict, Verdict::Pass);
        let info = RunInfo {
            program: "p.yaml".into(),
            kernel_release: "6.1.0-56-cloud-amd64".into(),
            accel: "tcg".into(),
            backend: "qemu".into(),
            boot: Duration::from_secs(1),
            duration: Duration::from_secs(1),
        };
        let text = verdict::render(
            &info,
            &c.verdict,
            &c.findings,
            &c.warnings,
            &c.outcome,
            &c.rates,
        );
        assert!(
            text.contains("KNOWN lockdep: possible deadlock in splat_abba"),
            "{text}"
        );
        assert!(text.contains("PASS (1 known finding)"), "{text}");
        assert!(!text.contains("did not show"), "{text}");
        // On a clean run the known finding's absence is said, not failed.
        let c = run((20, 9), &[], "6.1.0-57-cloud-amd64");
        assert_eq!(c.verdict, Verdict::Pass);
        assert!(
            c.warnings.iter().any(|w| {
                w.contains(
                "known finding `possible deadlock in splat_*` (expected on kernel 6.1) did not show"
            )
            }),
            "{:?}",
            c.warnings
        );
        // The same report on another kernel is not known.
        let c = run((20, 9), &lines, "6.12.117");
        assert!(!c.findings[0].known);
        assert_eq!(c.verdict, Verdict::Finding);
        assert_eq!(c.verdict.exit_code(), 1);
    }
}
