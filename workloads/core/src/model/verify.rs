//! Checking a real kernel's results: is there an interleaving of the lanes,
//! consistent with when each op ran, under which the model gives exactly
//! the outcomes observed and the states snapshotted at the barriers?
//!
//! This is a linearizability check (Wing & Gong with the real-time order
//! pruning of Lowe): an op may be placed next only if no other lane's
//! pending op finished before it started.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::op::Op;
use crate::outcome::{Outcome, Outcomes};
use crate::program::{OpId, Program};

use super::apply::{apply, Ctx};
use super::code::{Code, Instr};
use super::snapshot::{mismatches, Snapshot};
use super::state::State;
use super::target::Target;
use super::ModelError;

/// One executed op as the agent reports it. On the wire it is a compact
/// array, `[lane, op, outcome, start_ns, end_ns]`: a migration loop reports
/// tens of thousands of these a second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OpEventWire", into = "OpEventWire")]
pub struct OpEvent {
    /// Which op (repeat bodies report each pass).
    pub id: OpId,
    /// What it returned.
    pub outcome: Outcome,
    /// CLOCK_MONOTONIC when it started, in ns.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC when it returned, in ns.
    pub end_ns: u64,
}

type OpEventWire = (usize, usize, Outcome, u64, u64);

impl From<OpEventWire> for OpEvent {
    fn from((lane, op, outcome, start_ns, end_ns): OpEventWire) -> OpEvent {
        OpEvent {
            id: OpId { lane, op },
            outcome,
            start_ns,
            end_ns,
        }
    }
}

impl From<OpEvent> for OpEventWire {
    fn from(e: OpEvent) -> OpEventWire {
        (e.id.lane, e.id.op, e.outcome, e.start_ns, e.end_ns)
    }
}

/// A step's events per lane and the snapshot taken at its barrier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTrace {
    /// `lanes[l]`: lane l's ops in the order it ran them (no repeats or barriers).
    pub lanes: Vec<Vec<OpEvent>>,
    /// The state at the barrier that ends the step.
    pub snapshot: Option<Snapshot>,
}

/// Everything a run reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// One entry per step that ran.
    pub steps: Vec<StepTrace>,
}

/// What no interleaving explains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Divergence {
    /// An op returned something the model never allows at that point.
    Op {
        /// The op.
        id: OpId,
        /// What came back.
        observed: Outcome,
        /// What the model allowed in the furthest interleaving that got there.
        allowed: Outcomes,
    },
    /// The ops were explained, but not the barrier's snapshot.
    State {
        /// The step the snapshot ends.
        step: usize,
        /// How the snapshot differs from the closest model state.
        differences: Vec<String>,
    },
}

/// Explores at most this many nodes per step.
const MAX_NODES: usize = 2_000_000;

type Node = (Vec<usize>, State);

/// What the search remembers of a node it has been to: its lanes'
/// positions and a 64-bit hash of its state, not the state itself. Keeping
/// whole states cost a clone and two hashes of each (the most of a check's
/// time); two different states of the same positions share a hash with a
/// chance of about 2^-64 a pair (at most [`MAX_NODES`]² of them, well
/// under 10^-6 a step), and even then the search stops only on that path.
fn fingerprint(node: &Node) -> (Vec<usize>, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.1.hash(&mut h);
    (node.0.clone(), h.finish())
}

/// Checks a trace against the model: `Ok(None)` when some interleaving explains it.
pub fn verify(
    p: &Program,
    target: &Target,
    trace: &Trace,
) -> Result<Option<Divergence>, ModelError> {
    let code = Code::new(p);
    let mut starts = vec![State::initial(target)];
    for (si, st) in trace.steps.iter().enumerate() {
        let Some(lanes) = code.steps.get(si) else {
            return Err(ModelError::BadTrace(format!(
                "step {si} is not in the program"
            )));
        };
        if st.lanes.len() != lanes.len() {
            return Err(ModelError::BadTrace(format!(
                "step {si} reports {} lanes, the program has {}",
                st.lanes.len(),
                lanes.len()
            )));
        }
        // The step's ops by id, looked up for every event at every search node.
        let by_id: HashMap<OpId, &Op> = lanes
            .iter()
            .flatten()
            .filter_map(|i| match i {
                Instr::Op(id, op) => Some((*id, *op)),
                _ => None,
            })
            .collect();
        let ops = |ev: &OpEvent| -> Result<&Op, ModelError> {
            by_id
                .get(&ev.id)
                .copied()
                .ok_or_else(|| ModelError::BadTrace(format!("{} is not an op of step {si}", ev.id)))
        };
        for (li, evs) in st.lanes.iter().enumerate() {
            for ev in evs {
                if ev.id.lane != li {
                    return Err(ModelError::BadTrace(format!(
                        "{} reported by lane {li}",
                        ev.id
                    )));
                }
                ops(ev)?;
            }
        }
        let n = st.lanes.len();
        let mut seen: HashSet<(Vec<usize>, u64)> = HashSet::new();
        let mut stack: Vec<Node> = Vec::new();
        for s in starts {
            let node = (vec![0; n], s);
            if seen.insert(fingerprint(&node)) {
                stack.push(node);
            }
        }
        let mut ends: Vec<State> = Vec::new();
        let mut furthest: Option<(usize, Divergence)> = None;
        while let Some((pos, state)) = stack.pop() {
            if seen.len() > MAX_NODES {
                return Err(ModelError::TooLarge {
                    step: si,
                    nodes: seen.len(),
                });
            }
            if (0..n).all(|l| pos[l] == st.lanes[l].len()) {
                if !ends.contains(&state) {
                    ends.push(state);
                }
                continue;
            }
            let depth: usize = pos.iter().sum();
            for li in 0..n {
                let Some(ev) = st.lanes[li].get(pos[li]) else {
                    continue;
                };
                // Real-time order: nothing pending finished before this started.
                let blocked = (0..n).any(|j| {
                    j != li
                        && st.lanes[j]
                            .get(pos[j])
                            .is_some_and(|o| o.end_ns < ev.start_ns)
                });
                if blocked {
                    continue;
                }
                let ctx = Ctx {
                    target,
                    racing: &code.racing[si][li],
                };
                let succ = apply(&state, ops(ev)?, ctx);
                let mut matched = false;
                let mut allowed = Outcomes::default();
                for (o, ns) in succ {
                    allowed.0.insert(o);
                    if o == ev.outcome {
                        matched = true;
                        let mut np = pos.clone();
                        np[li] += 1;
                        let node = (np, ns);
                        if seen.insert(fingerprint(&node)) {
                            stack.push(node);
                        }
                    }
                }
                if !matched && furthest.as_ref().is_none_or(|(d, _)| depth > *d) {
                    furthest = Some((
                        depth,
                        Divergence::Op {
                            id: ev.id,
                            observed: ev.outcome,
                            allowed,
                        },
                    ));
                }
            }
        }
        if ends.is_empty() {
            return Ok(furthest.map(|(_, d)| d));
        }
        if let Some(snap) = &st.snapshot {
            let diffs: Vec<Vec<String>> = ends.iter().map(|s| mismatches(s, snap)).collect();
            let keep: Vec<State> = ends
                .iter()
                .zip(&diffs)
                .filter(|(_, d)| d.is_empty())
                .map(|(s, _)| s.clone())
                .collect();
            if keep.is_empty() {
                let closest = diffs.into_iter().min_by_key(Vec::len).unwrap_or_default();
                return Ok(Some(Divergence::State {
                    step: si,
                    differences: closest,
                }));
            }
            ends = keep;
        }
        starts = ends;
    }
    Ok(None)
}
