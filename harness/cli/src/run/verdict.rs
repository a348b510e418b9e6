//! From what a run brought back to a verdict: the model's check of the trace,
//! the findings (model divergences, kernel reports, agent hangs) and the
//! human summary.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use cgstorm_report::{Kind, Report};
use cgstorm_workloads::model::{verify, Divergence, Target, Trace};
use cgstorm_workloads::{OpId, Program};
use serde::Serialize;

use super::session::{End, Outcome};

/// What the model said about the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelCheck {
    /// Some interleaving explains every result and snapshot of these steps.
    Explained {
        /// Steps checked.
        steps: usize,
    },
    /// Nothing explains it.
    Diverged(Divergence),
    /// The model could not decide (search too large, a trace that does not
    /// fit the program): a limit of the model, not a finding.
    Unchecked(String),
}

impl ModelCheck {
    /// One word or phrase for the JSON.
    pub fn describe(&self) -> String {
        match self {
            ModelCheck::Explained { steps: 1 } => "explained (1 step checked)".into(),
            ModelCheck::Explained { steps } => format!("explained ({steps} steps checked)"),
            ModelCheck::Diverged(_) => "diverged".into(),
            ModelCheck::Unchecked(why) => format!("unchecked: {why}"),
        }
    }
}

/// The part of a run's trace the model checks (see [`check_model`]).
pub fn checked_trace(outcome: &Outcome) -> Trace {
    if matches!(outcome.end, End::Finished { error: None }) {
        outcome.trace.trace().clone()
    } else {
        outcome.trace.completed_trace()
    }
}

/// Checks the trace. A run that did not finish is checked up to its last
/// barrier: in the step in progress an op may have taken effect without
/// returning, which the model cannot tell from a wrong result.
pub fn check_model(program: &Program, target: &Target, outcome: &Outcome) -> ModelCheck {
    let trace = checked_trace(outcome);
    match verify(program, target, &trace) {
        Ok(None) => ModelCheck::Explained {
            steps: trace.steps.len(),
        },
        Ok(Some(d)) => ModelCheck::Diverged(d),
        Err(e) => ModelCheck::Unchecked(e.to_string()),
    }
}

/// An op named in a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpRef {
    /// Lane index.
    pub lane: usize,
    /// Lane name.
    pub lane_name: String,
    /// Op index in the lane (the kernel log marker's `op N`).
    pub op: usize,
    /// The op as the program writes it.
    pub text: String,
}

impl OpRef {
    /// `lane L (NAME) op N `TEXT``, as finding titles name an op.
    pub fn show(&self) -> String {
        format!(
            "lane {} ({}) op {} `{}`",
            self.lane, self.lane_name, self.op, self.text
        )
    }
}

/// Whether two finding titles name the same finding: equal, or equal once
/// the position of the op they name is left out. A model divergence
/// (``lane L (name) op N `text` returned …``) and an agent hang (``agent
/// hang in lane L (name) op N `text` ``) name their op as [`OpRef`] shows
/// it, and L and N move as `cgstorm minimize` drops lanes and ops before it.
/// Leaks (`leak: WHAT after FAMILY`) are the same when what leaked is: the
/// family names the program's ops, which a cut of it may change, and which
/// an older cgstorm named otherwise (maps and pins without DAX were "dax
/// pins" until session 21).
pub fn same_finding(a: &str, b: &str) -> bool {
    a == b
        || without_op_position(a) == without_op_position(b)
        || leak_what(a).is_some_and(|w| leak_what(b) == Some(w))
}

/// What a leak title says leaked, without the family of ops it came after.
fn leak_what(title: &str) -> Option<&str> {
    let (what, _family) = title.strip_prefix("leak: ")?.rsplit_once(" after ")?;
    Some(what)
}

/// `title` without the first `lane L (name) op N ` in it.
fn without_op_position(title: &str) -> String {
    title
        .match_indices("lane ")
        .find_map(|(at, _)| {
            let len = op_position_len(&title[at..])?;
            Some(format!("{}{}", &title[..at], &title[at + len..]))
        })
        .unwrap_or_else(|| title.to_string())
}

/// The length of the `lane L (name) op N ` that `s` starts with.
fn op_position_len(s: &str) -> Option<usize> {
    fn number(t: &str) -> Option<&str> {
        let n = t.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| &t[n..])
    }
    let rest = number(s.strip_prefix("lane ")?)?.strip_prefix(" (")?;
    let rest = &rest[rest.find(") op ")? + ") op ".len()..];
    let rest = number(rest)?.strip_prefix(' ')?;
    Some(s.len() - rest.len())
}

/// What a finding says beyond its kind and title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// An op's result no interleaving allows.
    Op {
        /// What came back.
        observed: String,
        /// What the model allowed there.
        allowed: Vec<String>,
    },
    /// A barrier snapshot no model state matches.
    State {
        /// The step the barrier ends.
        step: usize,
        /// How it differs from the closest model state.
        differences: Vec<String>,
    },
    /// A kernel report on the console.
    Report {
        /// The report was cut before its culprit frame.
        corrupted: bool,
        /// The report's lines, then those of the later reports folded into it.
        text: String,
        /// The titles of the later reports of the run folded into this one
        /// (a report after a corrupting one is its consequence).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        folded: Vec<String>,
    },
    /// A program check that does not hold over the barrier snapshots.
    Check {
        /// One line per offender.
        failures: Vec<String>,
    },
    /// The agent stopped making progress.
    Hang {
        /// What was seen.
        reason: String,
        /// How long the op had been stuck when the watchdog reported it.
        stalled_ms: Option<u64>,
    },
}

/// One thing that is wrong with the kernel under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `model-divergence`, `agent-hang` or a kernel report kind (`lockdep`, …).
    pub kind: String,
    /// One line.
    pub title: String,
    /// The op it names (a divergence, a hang) or follows (a kernel report).
    pub op: Option<OpRef>,
    /// The rest.
    #[serde(flatten)]
    pub detail: Detail,
    /// The program lists it in `known_findings` for this kernel: it is
    /// shown and stored, but does not fail the run.
    pub known: bool,
}

impl Finding {
    /// What a finding directory keeps as its `report`: the kernel's
    /// cleaned report, or what the model or a check saw, as JSON.
    pub fn report_text(&self) -> String {
        match &self.detail {
            Detail::Report { text, .. } => text.clone(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        }
    }

    /// Stores the finding under `workdir` (its directory, by title, with
    /// the program that found it, the console and a `seen` line of
    /// `context`); the directory and how often it has been seen now (1:
    /// new). `cgstorm run --workdir` and campaigns store findings so.
    pub fn store(
        &self,
        workdir: &std::path::Path,
        program_yaml: &str,
        console: Option<&std::path::Path>,
        context: &str,
    ) -> std::io::Result<(std::path::PathBuf, u64)> {
        let report = self.report_text();
        crate::findings::record(
            workdir,
            &crate::findings::Record {
                kind: &self.kind,
                title: &self.title,
                report: &report,
                console,
                program: program_yaml,
                context,
            },
        )
    }
}

/// Lines of a failed check's offenders shown in the summary (the JSON has all).
const MAX_CHECK_LINES: usize = 8;

/// The kind of a model divergence finding.
pub const MODEL_DIVERGENCE: &str = "model-divergence";

/// Names ops by id.
pub struct OpNames<'a> {
    program: &'a Program,
    texts: HashMap<OpId, String>,
}

impl<'a> OpNames<'a> {
    /// Every op of `program`.
    pub fn new(program: &'a Program) -> OpNames<'a> {
        let texts = (0..program.lanes.len())
            .flat_map(|l| program.lane_ops(l))
            .map(|(id, spec)| (id, spec.op.describe()))
            .collect();
        OpNames { program, texts }
    }

    /// The op's text, or a placeholder for an id the program lacks.
    pub fn text(&self, id: OpId) -> &str {
        self.texts.get(&id).map_or("?", String::as_str)
    }

    /// A reference to the op, with `fallback` as text if the program lacks it.
    pub fn op_ref(&self, id: OpId, fallback: &str) -> OpRef {
        OpRef {
            lane: id.lane,
            lane_name: self
                .program
                .lanes
                .get(id.lane)
                .map_or_else(|| "?".into(), |l| l.name.to_string()),
            op: id.op,
            text: self
                .texts
                .get(&id)
                .cloned()
                .unwrap_or_else(|| fallback.to_string()),
        }
    }
}

/// Every finding of a run, most specific first: the model's, the kernel's,
/// then a hang; `tcg`: the VM ran under TCG, whose artifacts are told
/// apart ([`mark_stale_breakpoints`]).
pub fn findings(
    names: &OpNames<'_>,
    steps: usize,
    model: &ModelCheck,
    reports: &[Report],
    end: &End,
    tcg: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    match model {
        ModelCheck::Diverged(Divergence::Op {
            id,
            observed,
            allowed,
        }) => {
            let op = names.op_ref(*id, "?");
            out.push(Finding {
                kind: MODEL_DIVERGENCE.into(),
                title: format!(
                    "{} returned {observed}; the model allows {allowed}",
                    op.show()
                ),
                op: Some(op),
                detail: Detail::Op {
                    observed: observed.to_string(),
                    allowed: allowed.0.iter().map(ToString::to_string).collect(),
                },
                known: false,
            });
        }
        ModelCheck::Diverged(Divergence::State { step, differences }) => {
            let at = if step + 1 == steps {
                "the end state".to_string()
            } else {
                format!("the state at barrier {step}")
            };
            out.push(Finding {
                kind: MODEL_DIVERGENCE.into(),
                title: format!(
                    "{at} differs from every state the model reaches: {}",
                    differences.first().map_or("", |d| subject(d))
                ),
                op: None,
                detail: Detail::State {
                    step: *step,
                    differences: differences.clone(),
                },
                known: false,
            });
        }
        ModelCheck::Explained { .. } | ModelCheck::Unchecked(_) => {}
    }
    // Once the kernel is corrupted (a BUG, an oops, KASAN, busy inodes
    // after unmount), what it prints next is consequence: one bug, one
    // finding. Reports before the first such one stand on their own (a
    // WARNING, a lockdep splat leave the kernel sound). A stall (a CPU
    // stuck, an RCU grace period or a task that does not end) likewise
    // makes every later stall and the agent's hang its consequence: the
    // task spinning holds what the others wait for. A later report of
    // another kind (a WARNING, KASAN) still stands on its own.
    let mut absorbing: Option<usize> = None;
    let mut stalled: Option<usize> = None;
    for r in reports {
        if let Some(i) = absorbing {
            fold(&mut out[i], &r.title, &r.text);
            continue;
        }
        if stalls(r.kind) {
            if let Some(i) = stalled {
                fold(&mut out[i], &r.title, &r.text);
                continue;
            }
            stalled = Some(out.len());
        }
        if corrupts(r.kind) {
            absorbing = Some(out.len());
        }
        let op = r.marker.as_ref().map(|m| {
            let id = OpId {
                lane: m.lane as usize,
                op: m.op as usize,
            };
            names.op_ref(id, &m.text)
        });
        out.push(Finding {
            kind: r.kind.to_string(),
            title: r.title.clone(),
            op,
            detail: Detail::Report {
                corrupted: r.corrupted,
                text: r.text.clone(),
                folded: Vec::new(),
            },
            known: false,
        });
    }
    if let End::Hang { reason, stall } = end {
        let op = stall.as_ref().map(|s| names.op_ref(s.op, &s.text));
        let title = match &op {
            Some(op) => format!("agent hang in {}", op.show()),
            None => format!("agent hang: {reason}"),
        };
        if let Some(i) = absorbing.or(stalled) {
            fold(&mut out[i], &title, &format!("{reason}\n"));
        } else {
            out.push(Finding {
                kind: Kind::AgentHang.to_string(),
                title,
                op,
                detail: Detail::Hang {
                    reason: reason.clone(),
                    stalled_ms: stall.as_ref().map(|s| s.stalled_ms),
                },
                known: false,
            });
        }
    }
    // After the folding: a stall's samples may be in the reports folded
    // into it.
    if tcg {
        mark_stale_breakpoints(&mut out);
        mark_breakpoint_loops(&mut out);
    }
    out
}

/// The kind of a report that TCG, not the kernel, caused.
pub const TCG_ARTIFACT: &str = "tcg-artifact";

/// Under TCG, an `int3` oops whose breakpoint byte is no longer in memory
/// (the console's `Code:` line shows the byte before RIP is not `cc`) is
/// the emulator's: a vCPU ran a stale translation of code another vCPU was
/// patching with `text_poke_bp` (a static key flipped by a kworker, such as
/// the memory controller's on-dfl key when the v1 hierarchy goes), after
/// the patch was done. On hardware the kernel's protocol makes that
/// impossible; a breakpoint still in memory is a real unhandled int3. Such
/// a report is kept (stored, shown as known) under its own kind and title,
/// never a kernel finding. Seen once in a 30-minute debug-kernel fuzz:
/// `int3 in balance_dirty_pages_ratelimited_flags`, `Code: ... 0f <1f> 44 00
/// 00` (a 5-byte NOP), while the reset unmounted v1.
fn mark_stale_breakpoints(findings: &mut [Finding]) {
    for f in findings {
        let Detail::Report { text, .. } = &f.detail else {
            continue;
        };
        if !f.title.starts_with("int3 in ") || !stale_breakpoint(text) {
            continue;
        }
        f.kind = TCG_ARTIFACT.into();
        f.title = format!("{} (a stale breakpoint under TCG)", f.title);
        f.known = true;
    }
}

/// Whether the report's first `Code:` line has a byte other than `cc`
/// right before the one RIP points at (`<..>`).
pub fn stale_breakpoint(text: &str) -> bool {
    let Some(code) = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Code: "))
    else {
        return false;
    };
    let Some((before, _)) = code.split_once('<') else {
        return false;
    };
    before
        .split_whitespace()
        .last()
        .is_some_and(|b| b.len() == 2 && b != "cc")
}

/// Under TCG, a stall whose CPU is caught on a patched NOP is the same
/// stale translation looping: the vCPU runs its old block, which still has
/// the breakpoint `text_poke_bp` placed, traps, and the kernel's int3
/// handling sends it back to the address, whose bytes are a NOP again
/// (Debian's 6.1 rewinds there, through kprobes' "breakpoint removed after
/// we hit it" path; 6.12 no longer does and oopses, see
/// [`mark_stale_breakpoints`]). On hardware an interrupt never lands inside
/// an instruction, and a loop does not sit on one NOP sample after sample.
/// So: a sample of the stall falls inside a jump-label NOP (`0f <1f> 44 00
/// 00`: the trap just taken), or at its start with the same RIP in another
/// sample, or at its start in a soft lockup whose CPU's first report came
/// late: on a running CPU the watchdog's first report is at 60 to 72 s
/// under cgstorm's TCG settings (20 to 24 s by default), so a first report
/// of 90 s or more means the CPU took no timer interrupt for that long, as
/// a vCPU trapping on one address does (seen in a Debian fuzz of session
/// 15: `balance_dirty_pages_ratelimited_flags+0x39`, `<66> 90`, 134 s, the
/// console ending with it). Seen twice in Debian soaks, each time both vCPUs 134 s on one
/// NOP after a v1 hierarchy let go of the memory controller (whose static
/// keys flip then): at `__inode_attach_wb+0x21` (`<66> 90`) and at
/// `kmem_cache_alloc+0x5d` (`<0f> 1f 44 00 00`; the VM stall of
/// ci/vm-soak-resume.sh's failed run, one sample just inside it).
fn mark_breakpoint_loops(findings: &mut [Finding]) {
    for f in findings {
        let Detail::Report { text, .. } = &f.detail else {
            continue;
        };
        if !f.kind.parse().is_ok_and(stalls) || !loops_on_a_breakpoint(text) {
            continue;
        }
        f.kind = TCG_ARTIFACT.into();
        f.title = format!(
            "{} (a vCPU looping on a stale breakpoint under TCG)",
            f.title
        );
        f.known = true;
    }
}

/// The NOPs x86 jump labels and static calls are patched between.
const PATCH_NOPS: [&[&str]; 2] = [&["66", "90"], &["0f", "1f", "44", "00", "00"]];

/// Whether a sample of the stall (a `RIP:` line and the `Code:` line after
/// it) is inside a patch NOP, or at its start with the same RIP in another
/// sample (see [`mark_breakpoint_loops`]).
fn loops_on_a_breakpoint(text: &str) -> bool {
    let mut samples: Vec<(&str, bool, bool)> = Vec::new();
    let mut rip = None;
    for line in text.lines() {
        if let Some((_, r)) = line.split_once("RIP: 0010:") {
            rip = Some(r.trim());
        } else if let (Some(r), Some((_, code))) = (rip, line.split_once("Code: ")) {
            rip = None;
            let Some((before, after)) = code.split_once('<') else {
                continue;
            };
            let before: Vec<&str> = before.split_whitespace().collect();
            let at: Vec<&str> = after
                .split_whitespace()
                .map(|b| b.trim_matches(|c| c == '<' || c == '>'))
                .collect();
            let inside = PATCH_NOPS.iter().any(|nop| {
                (1..nop.len()).any(|k| before.ends_with(&nop[..k]) && at.starts_with(&nop[k..]))
            });
            let start = PATCH_NOPS.iter().any(|nop| at.starts_with(nop));
            samples.push((r, inside, start));
        }
    }
    let late = cgstorm_report::late_first_lockup(text);
    samples.iter().any(|&(r, inside, start)| {
        inside || (start && (late || samples.iter().filter(|s| s.0 == r).count() >= 2))
    })
}

/// Kinds after which the kernel is corrupted: what it reports next follows
/// from them.
fn corrupts(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::BusyInodes
            | Kind::Kasan
            | Kind::Kfence
            | Kind::Kmsan
            | Kind::Bug
            | Kind::Gpf
            | Kind::Panic
    )
}

/// Kinds that say the kernel stopped making progress somewhere: what stalls
/// after them waits on the same thing.
fn stalls(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::SoftLockup
            | Kind::HardLockup
            | Kind::RcuStall
            | Kind::HungTask
            | Kind::WorkqueueLockup
    )
}

/// Attaches a later report (its title and lines) to the report finding `f`.
fn fold(f: &mut Finding, title: &str, text: &str) {
    if let Detail::Report {
        text: all, folded, ..
    } = &mut f.detail
    {
        all.push_str(&format!(
            "\n(later in the same run, folded into this report as its consequence: {title})\n"
        ));
        all.push_str(text);
        folded.push(title.to_string());
    }
}

/// The verdict of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every op and state explained, no kernel report, no hang.
    Pass,
    /// At least one finding.
    Finding,
    /// The run could not be completed and showed nothing wrong.
    Error(String),
}

impl Verdict {
    /// Findings win over errors: a VM that died with a panic on its console
    /// is a finding. Known findings do not count, and excuse the end they
    /// explain (a known hang, a known panic that stopped the VM).
    pub fn of(findings: &[Finding], end: &End) -> Verdict {
        if findings.iter().any(|f| !f.known) {
            return Verdict::Finding;
        }
        let known = !findings.is_empty();
        match end {
            End::Finished { error: None } => Verdict::Pass,
            End::Hang { .. } | End::VmExited { .. } if known => Verdict::Pass,
            End::Finished { error: Some(e) } => {
                Verdict::Error(format!("the agent stopped the program early: {e}"))
            }
            End::VmExited { status } => Verdict::Error(format!(
                "the vm exited ({status}) in the middle of the run and its console shows no \
                 kernel report; see the console log"
            )),
            End::AgentFatal { message } => Verdict::Error(format!("the agent failed: {message}")),
            End::Channel { message } => Verdict::Error(message.clone()),
            End::Interrupted => Verdict::Error("interrupted".into()),
            End::Hang { reason, .. } => Verdict::Error(reason.clone()),
        }
    }

    /// `pass`, `finding` or `error`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Finding => "finding",
            Verdict::Error(_) => "error",
        }
    }

    /// 0 pass, 1 finding, 3 error (infrastructure).
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Finding => 1,
            Verdict::Error(_) => 3,
        }
    }
}

/// What the summary line says about the run.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The program's name or path.
    pub program: String,
    /// `uname -r` of the guest.
    pub kernel_release: String,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// `qemu` or `vng`.
    pub backend: String,
    /// Boot to agent hello.
    pub boot: Duration,
    /// The run duration given to the agent.
    pub duration: Duration,
}

/// The human verdict: one line per finding and warning, then a summary.
pub fn render(
    info: &RunInfo,
    verdict: &Verdict,
    findings: &[Finding],
    warnings: &[String],
    outcome: &Outcome,
    rates: &[super::rates::OpRate],
) -> String {
    let mut s = String::new();
    for f in findings {
        let after = match (&f.op, &f.detail) {
            (Some(op), Detail::Report { .. }) => format!(" (after {})", op.show()),
            _ => String::new(),
        };
        let tag = if f.known { "KNOWN" } else { "FINDING" };
        let _ = writeln!(s, "{tag} {}: {}{after}", f.kind, f.title);
        if let Detail::Report { folded, .. } = &f.detail {
            if !folded.is_empty() {
                let _ = writeln!(
                    s,
                    "    {} later report(s) folded into it, as its consequence: {}",
                    folded.len(),
                    folded.join("; ")
                );
            }
        }
        if let Detail::Check { failures } = &f.detail {
            for line in failures.iter().take(MAX_CHECK_LINES) {
                let _ = writeln!(s, "    {line}");
            }
            if failures.len() > MAX_CHECK_LINES {
                let _ = writeln!(s, "    … and {} more", failures.len() - MAX_CHECK_LINES);
            }
        }
    }
    for w in warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s.push_str(&super::rates::render(rates).unwrap_or_default());
    let known = findings.iter().filter(|f| f.known).count();
    let head = match verdict {
        Verdict::Pass if known > 0 => format!(
            "PASS ({known} known finding{})",
            if known == 1 { "" } else { "s" }
        ),
        Verdict::Pass => "PASS".to_string(),
        Verdict::Finding if known > 0 => {
            format!("FINDING ({}, and {known} known)", findings.len() - known)
        }
        Verdict::Finding => format!("FINDING ({})", findings.len()),
        Verdict::Error(e) => format!("ERROR ({e})"),
    };
    let steps = outcome.trace.completed();
    let _ = writeln!(
        s,
        "{head}: {} on Linux {} under {} ({}): {} ops in {steps} step{}, {:.1} s run, {:.1} s boot",
        info.program,
        info.kernel_release,
        info.accel,
        info.backend,
        outcome.trace.events(),
        if steps == 1 { "" } else { "s" },
        outcome.elapsed.as_secs_f64(),
        info.boot.as_secs_f64(),
    );
    s
}

/// What a state difference is about, for a title that stays the same
/// from run to run: `mounts at m1` of `mounts at m1: [ramfs x1275, tmpfs],
/// model has …`, `file m0/f size` of `file m0/f has size 4096, model
/// allows …`; a difference without such details is its own subject.
fn subject(difference: &str) -> &str {
    if let Some(i) = difference.find(" has size ") {
        return &difference[..i + " has size".len()];
    }
    match difference.find(": ") {
        Some(i) => &difference[..i],
        None => difference,
    }
}

/// The title `cgstorm run` gives an agent hang in the op `stuck` of `p`
/// (what `minimize` compares a hang in another op's place with).
pub fn hang_title_in(p: &Program, stuck: OpId) -> String {
    let names = OpNames::new(p);
    let end = End::Hang {
        reason: "stuck".into(),
        stall: Some(super::session::Stall {
            op: stuck,
            text: names.text(stuck).to_string(),
            stalled_ms: 6000,
        }),
    };
    let all = findings(
        &names,
        1,
        &ModelCheck::Explained { steps: 1 },
        &[],
        &end,
        false,
    );
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].kind, Kind::AgentHang.to_string());
    all[0].title.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state divergence's title names what differs, not the details,
    /// which change from run to run.
    #[test]
    fn state_titles_name_the_subject_only() {
        assert_eq!(
            subject(
                "mounts at m1: [ramfs x1275, tmpfs], model has [ramfs x1275, ext4 on pmem0, tmpfs]"
            ),
            "mounts at m1"
        );
        assert_eq!(
            subject("file m0/f has size 4096, model allows 0..=0"),
            "file m0/f has size"
        );
        assert_eq!(
            subject("cgroup a should exist but is missing"),
            "cgroup a should exist but is missing"
        );
    }

    /// The title of an agent hang in the op `stuck` of `yaml`'s program.
    fn hang_title(yaml: &str, stuck: OpId) -> String {
        hang_title_in(&Program::from_yaml("p", yaml).unwrap(), stuck)
    }

    #[test]
    fn a_hang_in_the_same_op_matches_whatever_its_op_number() {
        let before = hang_title(
            "lanes:\n  - {name: a, ops: [{mkdir: x}]}\n  - {name: b, ops: [{mkdir: y}, {mkdir: z}, {sysrq: c}]}\n",
            OpId { lane: 1, op: 2 },
        );
        let after = hang_title(
            "lanes:\n  - {name: b, ops: [{sysrq: c}]}\n",
            OpId { lane: 0, op: 0 },
        );
        assert_ne!(before, after, "the op moved");
        assert!(same_finding(&before, &after), "{before} / {after}");
        let other = hang_title(
            "lanes:\n  - {name: b, ops: [{mkdir: z}]}\n",
            OpId { lane: 0, op: 0 },
        );
        assert!(!same_finding(&before, &other), "{before} / {other}");
        let silent = "agent hang: the agent sent nothing for 30s";
        assert!(same_finding(silent, silent));
        assert!(!same_finding(silent, &after));
    }

    #[test]
    fn divergences_match_whatever_their_op_number() {
        let a = "lane 1 (l1) op 8 `mount {at: m1}` returned EINVAL; the model allows ok";
        let b = "lane 0 (l1) op 2 `mount {at: m1}` returned EINVAL; the model allows ok";
        let c = "lane 0 (l1) op 2 `mount {at: m0}` returned EINVAL; the model allows ok";
        assert!(same_finding(a, b));
        assert!(!same_finding(a, c));
        assert!(same_finding("WARNING in x", "WARNING in x"));
        assert!(!same_finding("WARNING in x", "WARNING in y"));
        assert!(!same_finding("lane 1 (l1) op x", "lane 2 (l1) op x"));
    }

    #[test]
    fn leaks_match_whatever_their_family() {
        let dying = "leak: removed cgroups never freed";
        assert!(same_finding(
            &format!("{dying} after dax pins"),
            &format!("{dying} after page pins")
        ));
        assert!(!same_finding(
            &format!("{dying} after mounts"),
            "leak: removed v1 memory cgroups never freed after mounts"
        ));
        assert!(!same_finding(
            &format!("{dying} after mounts"),
            "WARNING in mounts"
        ));
    }
}
