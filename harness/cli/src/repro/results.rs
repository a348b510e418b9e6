//! Reading a reproducer's result lines and judging them with the model.
//!
//! A line is `lane L op N <op>: <result>[ @START-END]` (times in
//! centiseconds since boot, from /proc/uptime, when CGSTORM_TIMES=1).
//! Judging uses [`verify`], the same check as `cgstorm run`: some
//! interleaving of the lanes must explain every result. Times are floors
//! of the true times, so "A ended (floor) before B started (floor)" still
//! means A ended before B started; lines without times impose no order.
//! The script takes no snapshots, so barrier states are not compared.
//! When `verify` gives up (too many interleavings), the per-op outcome
//! sets of [`predict`] are the fallback.

use std::collections::HashMap;
use std::fmt;

use cgstorm_workloads::model::{predict, verify, Divergence, OpEvent, StepTrace, Target, Trace};
use cgstorm_workloads::{Op, OpId, Outcome, Outcomes, Program};

/// One result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLine {
    /// The op.
    pub id: OpId,
    /// The op's text as the script printed it.
    pub text: String,
    /// The result word (`ok`, an errno name, `killed`, or what the script
    /// could not name).
    pub result: String,
    /// Start and end in centiseconds, when printed.
    pub times: Option<(u64, u64)>,
}

/// Parses every `lane L op N …: R` line; other lines are ignored. A line
/// that starts like a result line but does not parse is an error.
pub fn parse(out: &str) -> Result<Vec<ResultLine>, String> {
    let mut v = Vec::new();
    for (i, line) in out.lines().enumerate() {
        let Some(rest) = line.strip_prefix("lane ") else {
            continue;
        };
        let bad = || format!("line {}: not a result line: {line}", i + 1);
        let (lane, rest) = rest.split_once(" op ").ok_or_else(bad)?;
        let (op, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let (text, result) = rest.rsplit_once(": ").ok_or_else(bad)?;
        let (result, times) = match result.split_once(" @") {
            Some((r, t)) => {
                let (a, b) = t.split_once('-').ok_or_else(bad)?;
                (
                    r,
                    Some((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)),
                )
            }
            None => (result, None),
        };
        v.push(ResultLine {
            id: OpId {
                lane: lane.parse().map_err(|_| bad())?,
                op: op.parse().map_err(|_| bad())?,
            },
            text: text.to_string(),
            result: result.trim().to_string(),
            times,
        });
    }
    Ok(v)
}

/// What the results say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every result is one the model allows.
    Agree {
        /// Results judged.
        ops: usize,
        /// How: `verify` (an interleaving explains them all) or `predict`.
        method: &'static str,
    },
    /// A result the model does not allow.
    Diverge {
        /// The op.
        id: OpId,
        /// Its text.
        text: String,
        /// What came back.
        observed: String,
        /// What the model allows there.
        allowed: Outcomes,
    },
    /// The output does not fit the program (a script or parser bug).
    BadOutput(String),
    /// The model could not judge.
    Unchecked(String),
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Judgement::Agree { ops, method } => {
                write!(f, "{ops} results, all allowed by the model ({method})")
            }
            Judgement::Diverge {
                id,
                text,
                observed,
                allowed,
            } => write!(
                f,
                "{id} `{text}` returned {observed}; the model allows {allowed}"
            ),
            Judgement::BadOutput(m) => {
                write!(f, "the script's output does not fit the program: {m}")
            }
            Judgement::Unchecked(m) => write!(f, "the model could not judge the results: {m}"),
        }
    }
}

/// The step of every op id of the program (barriers split a lane's top level).
fn steps_of(p: &Program) -> HashMap<OpId, (usize, &Op)> {
    let mut m = HashMap::new();
    for li in 0..p.lanes.len() {
        let ids = p.lane_ops(li);
        let mut step = 0;
        let mut i = 0;
        for spec in &p.lanes[li].ops {
            let n = cgstorm_workloads::program::count_ops(std::slice::from_ref(spec));
            for (id, s) in &ids[i..i + n] {
                m.insert(*id, (step, &s.op));
            }
            if spec.op == Op::Barrier {
                step += 1;
            }
            i += n;
        }
    }
    m
}

/// Judges result lines against the model on `target`. With `complete`
/// (the script ran to its end), every op must have printed a result at
/// least once (every repeat makes at least one pass).
/// The results of the steps before the one `stuck` is in. When an op hangs,
/// ops of its step may have taken effect without returning, which the model
/// cannot tell from a wrong result: `cgstorm run` checks such a run up to its
/// last barrier, and so does this.
pub fn before_step_of(p: &Program, lines: &[ResultLine], stuck: OpId) -> Vec<ResultLine> {
    let steps = steps_of(p);
    let Some(&(limit, _)) = steps.get(&stuck) else {
        return lines.to_vec();
    };
    lines
        .iter()
        .filter(|l| steps.get(&l.id).is_some_and(|(s, _)| *s < limit))
        .cloned()
        .collect()
}

/// The op a script's "lane L stuck in op N" line names.
pub fn stuck_op(line: &str) -> Option<OpId> {
    let rest = &line[line.find("lane ")? + 5..];
    let (lane, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("stuck in op ")?;
    let op = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    Some(OpId {
        lane: lane.parse().ok()?,
        op: op.parse().ok()?,
    })
}

pub fn judge(p: &Program, target: &Target, lines: &[ResultLine], complete: bool) -> Judgement {
    let steps = steps_of(p);
    if complete {
        let seen: std::collections::HashSet<OpId> = lines.iter().map(|l| l.id).collect();
        let mut missing: Vec<(OpId, String)> = steps
            .iter()
            .filter(|(id, (_, op))| {
                !matches!(op, Op::Barrier | Op::Repeat(_)) && !seen.contains(id)
            })
            .map(|(id, (_, op))| (*id, op.describe()))
            .collect();
        missing.sort();
        if let Some((id, text)) = missing.first() {
            return Judgement::BadOutput(format!(
                "{id} `{text}` printed no result ({} ops without one)",
                missing.len()
            ));
        }
    }
    let mut trace = Trace {
        steps: (0..p.steps())
            .map(|_| StepTrace {
                lanes: vec![Vec::new(); p.lanes.len()],
                snapshot: None,
            })
            .collect(),
    };
    for l in lines {
        let Some((step, op)) = steps.get(&l.id) else {
            return Judgement::BadOutput(format!("{} is not an op of the program", l.id));
        };
        if matches!(op, Op::Barrier | Op::Repeat(_)) {
            return Judgement::BadOutput(format!(
                "{} is a {}, which has no result",
                l.id,
                op.keyword()
            ));
        }
        if l.text != op.describe() {
            return Judgement::BadOutput(format!(
                "{} is `{}` in the program, the script printed `{}`",
                l.id,
                op.describe(),
                l.text
            ));
        }
        let outcome: Outcome = match l.result.parse() {
            Ok(o) => o,
            Err(_) => {
                return Judgement::Diverge {
                    id: l.id,
                    text: l.text.clone(),
                    observed: format!("`{}` (no errno the script could name)", l.result),
                    allowed: Outcomes::default(),
                }
            }
        };
        let (start_ns, end_ns) = match l.times {
            Some((a, b)) => (a * 10_000_000, b * 10_000_000),
            None => (0, u64::MAX),
        };
        trace.steps[*step].lanes[l.id.lane].push(OpEvent {
            id: l.id,
            outcome,
            start_ns,
            end_ns,
            injected: false,
        });
    }
    while trace
        .steps
        .last()
        .is_some_and(|s| s.lanes.iter().all(Vec::is_empty))
    {
        trace.steps.pop();
    }
    match verify(p, target, &trace) {
        Ok(None) => Judgement::Agree {
            ops: lines.len(),
            method: "verify",
        },
        Ok(Some(Divergence::Op {
            id,
            observed,
            allowed,
        })) => Judgement::Diverge {
            id,
            text: steps
                .get(&id)
                .map(|(_, o)| o.describe())
                .unwrap_or_default(),
            observed: observed.to_string(),
            allowed,
        },
        Ok(Some(Divergence::State { step, differences })) => Judgement::Unchecked(format!(
            "step {step}: state differences without a snapshot: {}",
            differences.join("; ")
        )),
        Err(e) => by_prediction(p, target, lines, &e.to_string()),
    }
}

/// The fallback: each result must be in its op's predicted outcome set.
fn by_prediction(p: &Program, target: &Target, lines: &[ResultLine], why: &str) -> Judgement {
    let pred = match predict(p, target) {
        Ok(x) => x,
        Err(e) => return Judgement::Unchecked(format!("{why}; and predict: {e}")),
    };
    for l in lines {
        let observed: Outcome = l.result.parse().unwrap_or(Outcome::Ok);
        let allowed = pred.ops.get(&l.id).cloned().unwrap_or_default();
        if !allowed.allows(observed) {
            return Judgement::Diverge {
                id: l.id,
                text: l.text.clone(),
                observed: l.result.clone(),
                allowed,
            };
        }
    }
    Judgement::Agree {
        ops: lines.len(),
        method: "predict (verify gave up)",
    }
}
