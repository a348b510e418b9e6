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

use super::apply::{apply, apply_faulted, state_free, Ctx};
use super::code::{Code, Instr};
use super::snapshot::{mismatches, Snapshot};
use super::state::State;
use super::target::Target;
use super::ModelError;

/// One executed op as the agent reports it. On the wire it is a compact
/// array, `[lane, op, outcome, start_ns, end_ns]`, with a sixth element `1`
/// when a fault was injected into it: a migration loop reports tens of
/// thousands of these a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpEvent {
    /// Which op (repeat bodies report each pass).
    pub id: OpId,
    /// What it returned.
    pub outcome: Outcome,
    /// CLOCK_MONOTONIC when it started, in ns.
    pub start_ns: u64,
    /// CLOCK_MONOTONIC when it returned, in ns.
    pub end_ns: u64,
    /// The op carried `fail_nth: N` and its N-th fault point was reached,
    /// so an allocation in it failed ([`super::apply::apply_faulted`]).
    pub injected: bool,
}

impl Serialize for OpEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(if self.injected { 6 } else { 5 })?;
        t.serialize_element(&self.id.lane)?;
        t.serialize_element(&self.id.op)?;
        t.serialize_element(&self.outcome)?;
        t.serialize_element(&self.start_ns)?;
        t.serialize_element(&self.end_ns)?;
        if self.injected {
            t.serialize_element(&1u8)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for OpEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OpEvent, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OpEvent;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[lane, op, outcome, start_ns, end_ns] and maybe a 1 (fault injected)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<OpEvent, A::Error> {
                use serde::de::Error;
                let missing = |i| A::Error::invalid_length(i, &self);
                let lane = a.next_element()?.ok_or_else(|| missing(0))?;
                let op = a.next_element()?.ok_or_else(|| missing(1))?;
                let outcome = a.next_element()?.ok_or_else(|| missing(2))?;
                let start_ns = a.next_element()?.ok_or_else(|| missing(3))?;
                let end_ns = a.next_element()?.ok_or_else(|| missing(4))?;
                let injected = a.next_element::<u8>()?.is_some_and(|f| f == 1);
                Ok(OpEvent {
                    id: OpId { lane, op },
                    outcome,
                    start_ns,
                    end_ns,
                    injected,
                })
            }
        }
        d.deserialize_seq(V)
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

/// Explores at most this many nodes per step; past it the run is left
/// unchecked (a warning, not a finding). 2,000,000 took a fuzz program of
/// three lanes remounting one place (a 133-pass mount loop beside two long
/// ops) 72 s to give up on, and before nodes were kept as hashes, 24 GB:
/// the host was OOM-killed. A quarter million is about 9 s of such a search.
const MAX_NODES: usize = 250_000;

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
        let by_id = step_ops(&code, si, st)?;
        let ends = match explain_step(&code, target, si, st, &by_id, starts)? {
            Explained::Ends(ends) => ends,
            Explained::Not(d) => return Ok(d),
        };
        starts = match &st.snapshot {
            Some(snap) => match matching(ends, snap) {
                Ok(keep) => keep,
                Err(differences) => {
                    return Ok(Some(Divergence::State {
                        step: si,
                        differences,
                    }))
                }
            },
            None => ends,
        };
    }
    Ok(None)
}

/// The ops of step `si` by id (looked up for every event at every search
/// node), after checking that every event of the step's trace is one of
/// them, reported by its own lane.
fn step_ops<'p>(
    code: &Code<'p>,
    si: usize,
    st: &StepTrace,
) -> Result<HashMap<OpId, &'p Op>, ModelError> {
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
    let by_id: HashMap<OpId, &Op> = lanes
        .iter()
        .flatten()
        .filter_map(|i| match i {
            Instr::Op(id, op) => Some((*id, *op)),
            _ => None,
        })
        .collect();
    for (li, evs) in st.lanes.iter().enumerate() {
        for ev in evs {
            if ev.id.lane != li {
                return Err(ModelError::BadTrace(format!(
                    "{} reported by lane {li}",
                    ev.id
                )));
            }
            if !by_id.contains_key(&ev.id) {
                return Err(ModelError::BadTrace(format!(
                    "{} is not an op of step {si}",
                    ev.id
                )));
            }
        }
    }
    Ok(by_id)
}

/// What the search of one step found.
enum Explained {
    /// The states some interleaving of the step's results ends in.
    Ends(Vec<State>),
    /// None explains them: the op the furthest interleaving stopped at.
    Not(Option<Divergence>),
}

/// Searches the interleavings of step `si`'s results from each of
/// `starts`, placing an op only where real-time order allows it.
fn explain_step(
    code: &Code<'_>,
    target: &Target,
    si: usize,
    st: &StepTrace,
    by_id: &HashMap<OpId, &Op>,
    starts: Vec<State>,
) -> Result<Explained, ModelError> {
    let op = |ev: &OpEvent| -> &Op { by_id[&ev.id] };
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
            let state = state.settle();
            if !ends.contains(&state) {
                ends.push(state);
            }
            continue;
        }
        let depth: usize = pos.iter().sum();
        let blocked = |li: usize, ev: &OpEvent| {
            (0..n).any(|j| {
                j != li
                    && st.lanes[j]
                        .get(pos[j])
                        .is_some_and(|o| o.end_ns < ev.start_ns)
            })
        };
        // An op that neither reads nor changes the state (sync, sleep,
        // drop_caches) and returned ok is placed now, as the only move:
        // wherever an explanation places it, placing it first explains
        // the trace as well (it changes no outcome, and real-time order
        // only loosens once it is off the pending list).
        let free = (0..n).find(|&li| {
            st.lanes[li].get(pos[li]).is_some_and(|ev| {
                ev.outcome == Outcome::Ok && !ev.injected && state_free(op(ev)) && !blocked(li, ev)
            })
        });
        if let Some(li) = free {
            let mut np = pos.clone();
            np[li] += 1;
            let node = (np, state);
            if seen.insert(fingerprint(&node)) {
                stack.push(node);
            }
            continue;
        }
        for li in 0..n {
            let Some(ev) = st.lanes[li].get(pos[li]) else {
                continue;
            };
            // Real-time order: nothing pending finished before this started.
            if blocked(li, ev) {
                continue;
            }
            let ctx = Ctx {
                target,
                racing: &code.racing[si][li],
            };
            // A fault counts only where the program asked for one.
            let succ = if ev.injected && code.faulted.contains(&ev.id) {
                apply_faulted(&state, op(ev), ctx)
            } else {
                apply(&state, op(ev), ctx)
            };
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
        return Ok(Explained::Not(furthest.map(|(_, d)| d)));
    }
    Ok(Explained::Ends(ends))
}

/// The end states the barrier's snapshot agrees with; when none does,
/// how it differs from the closest one.
fn matching(ends: Vec<State>, snap: &Snapshot) -> Result<Vec<State>, Vec<String>> {
    let diffs: Vec<Vec<String>> = ends.iter().map(|s| mismatches(s, snap)).collect();
    let keep: Vec<State> = ends
        .iter()
        .zip(&diffs)
        .filter(|(_, d)| d.is_empty())
        .map(|(s, _)| s.clone())
        .collect();
    if keep.is_empty() {
        return Err(diffs.into_iter().min_by_key(Vec::len).unwrap_or_default());
    }
    Ok(keep)
}
