//! The `--json` report of a run: verdict, kernel, accelerator, findings,
//! every op's result (the first [`MAX_OPS`]) and per-op counts (all of
//! them), ops/s per op kind, the barrier snapshots and stall reports.
//! Findings the program lists as known carry `known: true`.

use std::collections::BTreeMap;

use cgstorm_workloads::model::{Snapshot, Target};
use serde::Serialize;

use super::rates::OpRate;
use super::session::{End, Outcome};
use super::verdict::{Finding, ModelCheck, OpNames, RunInfo, Verdict};

/// Most op results listed one by one; `op_counts` covers the rest.
pub const MAX_OPS: usize = 100_000;

/// One op's result.
#[derive(Debug, Serialize)]
pub struct OpResult {
    /// The step it ran in.
    pub step: usize,
    /// Lane index.
    pub lane: usize,
    /// Op index in the lane.
    pub op: usize,
    /// The op.
    pub text: String,
    /// What it returned.
    pub outcome: String,
    /// CLOCK_MONOTONIC in the guest when it started, in ns.
    pub start_ns: u64,
    /// ... and when it returned.
    pub end_ns: u64,
    /// A fault was injected into it (`fail_nth`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fault_injected: bool,
}

/// How often one op ran and what it returned.
#[derive(Debug, Serialize)]
pub struct OpCount {
    /// Lane index.
    pub lane: usize,
    /// Op index in the lane.
    pub op: usize,
    /// The op.
    pub text: String,
    /// Times it ran.
    pub runs: usize,
    /// Times each outcome came back.
    pub outcomes: BTreeMap<String, usize>,
}

/// A barrier's snapshot.
#[derive(Debug, Serialize)]
pub struct Barrier<'a> {
    /// The step it ends.
    pub step: usize,
    /// What the agent observed.
    pub snapshot: &'a Snapshot,
}

/// A watchdog stall report.
#[derive(Debug, Serialize)]
pub struct StallJson {
    /// Lane index.
    pub lane: usize,
    /// Op index.
    pub op: usize,
    /// The op.
    pub text: String,
    /// How long it had been running.
    pub stalled_ms: u64,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct RunJson<'a> {
    /// `pass`, `finding` or `error`.
    pub verdict: &'static str,
    /// Why the verdict is `error`.
    pub error: Option<String>,
    /// The program file.
    pub program: String,
    /// `uname -r` of the guest.
    pub kernel_release: String,
    /// `kvm` or `tcg`.
    pub accelerator: String,
    /// `qemu` or `vng`.
    pub backend: String,
    /// What the model was told about the kernel and the VM.
    pub target: &'a Target,
    /// The run duration given to the agent, in ms.
    pub duration_ms: u128,
    /// Boot to agent hello, in ms.
    pub boot_ms: u128,
    /// From sending the program to its end, in ms.
    pub elapsed_ms: u128,
    /// How the run ended.
    pub end: String,
    /// What the model said.
    pub model: String,
    /// What is wrong.
    pub findings: &'a [Finding],
    /// What went wrong without being a finding.
    pub warnings: &'a [String],
    /// Ops that ran.
    pub ops_total: usize,
    /// Whether `ops` stops before `ops_total`.
    pub ops_truncated: bool,
    /// The first [`MAX_OPS`] results, step by step, lane by lane.
    pub ops: Vec<OpResult>,
    /// Every op that ran, with counts.
    pub op_counts: Vec<OpCount>,
    /// Ops per second per op kind, most runs first.
    pub op_rates: &'a [OpRate],
    /// The snapshots at each barrier.
    pub barriers: Vec<Barrier<'a>>,
    /// The watchdog's stall reports.
    pub stalls: Vec<StallJson>,
    /// Where the console log was kept.
    pub console_log: Option<String>,
}

/// How the run ended, in words.
pub fn describe_end(end: &End) -> String {
    match end {
        End::Finished { error: None } => "finished".into(),
        End::Finished { error: Some(e) } => format!("finished early: {e}"),
        End::Hang { reason, .. } => format!("hang: {reason}"),
        End::VmExited { status } => format!("vm exited: {status}"),
        End::AgentFatal { message } => format!("agent failed: {message}"),
        End::Channel { message } => format!("channel: {message}"),
        End::Interrupted => "interrupted".into(),
    }
}

/// Everything a report is made of.
pub struct Parts<'a> {
    /// About the run.
    pub info: &'a RunInfo,
    /// The verdict.
    pub verdict: &'a Verdict,
    /// The model's target.
    pub target: &'a Target,
    /// What came back.
    pub outcome: &'a Outcome,
    /// The model's answer.
    pub model: &'a ModelCheck,
    /// The findings.
    pub findings: &'a [Finding],
    /// The warnings.
    pub warnings: &'a [String],
    /// Op names.
    pub names: &'a OpNames<'a>,
    /// The console log kept, if any.
    pub console_log: Option<String>,
    /// Ops per second per op kind.
    pub rates: &'a [OpRate],
}

/// Builds the report.
pub fn build<'a>(p: &Parts<'a>) -> RunJson<'a> {
    let trace = &p.outcome.trace;
    let ops: Vec<OpResult> = trace
        .iter()
        .take(MAX_OPS)
        .map(|(step, e)| OpResult {
            step,
            lane: e.id.lane,
            op: e.id.op,
            text: p.names.text(e.id).to_string(),
            outcome: e.outcome.to_string(),
            start_ns: e.start_ns,
            end_ns: e.end_ns,
            fault_injected: e.injected,
        })
        .collect();
    let mut counts: BTreeMap<(usize, usize), OpCount> = BTreeMap::new();
    for (_, e) in trace.iter() {
        let c = counts
            .entry((e.id.lane, e.id.op))
            .or_insert_with(|| OpCount {
                lane: e.id.lane,
                op: e.id.op,
                text: p.names.text(e.id).to_string(),
                runs: 0,
                outcomes: BTreeMap::new(),
            });
        c.runs += 1;
        *c.outcomes.entry(e.outcome.to_string()).or_default() += 1;
    }
    RunJson {
        verdict: p.verdict.name(),
        error: match p.verdict {
            Verdict::Error(e) => Some(e.clone()),
            _ => None,
        },
        program: p.info.program.clone(),
        kernel_release: p.info.kernel_release.clone(),
        accelerator: p.info.accel.clone(),
        backend: p.info.backend.clone(),
        target: p.target,
        duration_ms: p.info.duration.as_millis(),
        boot_ms: p.info.boot.as_millis(),
        elapsed_ms: p.outcome.elapsed.as_millis(),
        end: describe_end(&p.outcome.end),
        model: p.model.describe(),
        findings: p.findings,
        warnings: p.warnings,
        ops_total: trace.events(),
        ops_truncated: trace.events() > ops.len(),
        ops,
        op_counts: counts.into_values().collect(),
        op_rates: p.rates,
        barriers: trace
            .trace()
            .steps
            .iter()
            .enumerate()
            .filter_map(|(step, s)| {
                Some(Barrier {
                    step,
                    snapshot: s.snapshot.as_ref()?,
                })
            })
            .collect(),
        stalls: p
            .outcome
            .stalls
            .iter()
            .map(|s| StallJson {
                lane: s.op.lane,
                op: s.op.op,
                text: s.text.clone(),
                stalled_ms: s.stalled_ms,
            })
            .collect(),
        console_log: p.console_log.clone(),
    }
}
