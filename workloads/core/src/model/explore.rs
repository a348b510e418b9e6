//! Prediction: run every interleaving of a program's lanes through the model
//! and collect, per op, the outcomes some interleaving gives, and per barrier
//! the states it can leave.
//!
//! Interleavings are explored as a graph of (program counters, state) nodes,
//! deduplicated, so ops that commute collapse. Repeats of up to
//! [`EXACT_REPEATS`] passes are followed exactly; longer and timed ones are
//! predicted for 1 to [`BOUNDED_PASSES`] passes, which keeps prediction finite
//! when a loop body grows the state (a repeated mount stacks mounts). Checking
//! a real run ([`super::verify`]) has no such bound: it replays the passes
//! the trace reports.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::op::Times;
use crate::outcome::{Outcome, Outcomes};
use crate::program::{OpId, Program};

use super::apply::{apply, apply_faulted, state_free, Ctx};
use super::code::{Code, Instr, BOUNDED_PASSES, EXACT_REPEATS};
use super::state::State;
use super::target::Target;
use super::ModelError;

/// A lane's position: instruction index and repeat pass counters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pc {
    ip: usize,
    iters: [u32; 3],
}

impl Pc {
    fn start() -> Pc {
        Pc {
            ip: 0,
            iters: [0; 3],
        }
    }
}

/// The model's prediction for a program.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Every op's allowed outcomes.
    pub ops: BTreeMap<OpId, Outcomes>,
    /// The states each step can end in (the last is the program's end).
    pub barriers: Vec<Vec<State>>,
    /// Graph nodes explored, for benchmarks.
    pub nodes: usize,
}

/// Explores at most this many nodes per step before giving up.
pub const MAX_NODES: usize = 400_000;

type Node = (Vec<Pc>, State);

/// A lane's move: its new position, the new state, and the op outcome to record.
type Move = (Pc, State, Option<(OpId, Outcome)>);

/// Predicts a program's outcomes on a target.
pub fn predict(p: &Program, target: &Target) -> Result<Prediction, ModelError> {
    let code = Code::new(p);
    let mut ops: BTreeMap<OpId, BTreeSet<Outcome>> = BTreeMap::new();
    let mut starts: Vec<State> = vec![State::initial(target)];
    let mut barriers = Vec::new();
    let mut total = 0;
    for (si, lanes) in code.steps.iter().enumerate() {
        let pcs0 = vec![Pc::start(); lanes.len()];
        let mut seen: HashSet<Node> = HashSet::new();
        let mut stack: Vec<Node> = Vec::new();
        let mut ends: HashSet<State> = HashSet::new();
        for s in starts {
            let node = (pcs0.clone(), s);
            if seen.insert(node.clone()) {
                stack.push(node);
            }
        }
        while let Some((pcs, state)) = stack.pop() {
            if seen.len() > MAX_NODES {
                return Err(ModelError::TooLarge {
                    step: si,
                    nodes: seen.len(),
                });
            }
            let mut done = true;
            // Partial-order reduction: a lane whose next instruction is
            // invisible to the others (loop control, or an op that neither
            // reads nor writes model state) takes it alone; interleaving it
            // with the other lanes cannot change any outcome.
            let eager = lanes
                .iter()
                .enumerate()
                .find(|(li, lane)| lane.get(pcs[*li].ip).is_some_and(invisible));
            let movable: Vec<usize> = match eager {
                Some((li, _)) => vec![li],
                None => (0..lanes.len()).collect(),
            };
            for li in movable {
                let lane = &lanes[li];
                let Some(instr) = lane.get(pcs[li].ip) else {
                    continue;
                };
                done = false;
                let ctx = Ctx {
                    target,
                    racing: &code.racing[si][li],
                };
                for (npc, ns, rec) in step_lane(instr, &pcs[li], &state, ctx, &code.faulted) {
                    if let Some((id, o)) = rec {
                        ops.entry(id).or_default().insert(o);
                    }
                    let mut next = pcs.clone();
                    next[li] = npc;
                    let node = (next, ns);
                    if !seen.contains(&node) {
                        seen.insert(node.clone());
                        stack.push(node);
                    }
                }
            }
            if done {
                ends.insert(state.settle());
            }
        }
        total += seen.len();
        let mut end: Vec<State> = ends.into_iter().collect();
        end.sort_by_cached_key(|s| format!("{s:?}"));
        starts = end.clone();
        barriers.push(end);
    }
    Ok(Prediction {
        ops: ops.into_iter().map(|(k, v)| (k, Outcomes(v))).collect(),
        barriers,
        nodes: total,
    })
}

/// One interleaving of `p` with one outcome per op: at each move
/// `choose(n)` picks among `n` candidates (first the lane to move, then its
/// successor), so a fuzzer's input drives the path; `visit` sees every
/// recorded outcome and the state it leads to. Repeats are bounded as in
/// [`predict`]; at most `max_moves` moves are made. Far cheaper than
/// `predict` (one path, not all), for fuzzing the model at speed. Returns
/// the moves made, or the op the model gave no successor for (a bug).
pub fn walk(
    p: &Program,
    target: &Target,
    max_moves: usize,
    mut choose: impl FnMut(usize) -> usize,
    mut visit: impl FnMut(OpId, Outcome, &State),
) -> Result<usize, String> {
    let code = Code::new(p);
    let mut state = State::initial(target);
    let mut moves = 0;
    for (si, lanes) in code.steps.iter().enumerate() {
        let mut pcs = vec![Pc::start(); lanes.len()];
        loop {
            let live: Vec<usize> = (0..lanes.len())
                .filter(|&li| pcs[li].ip < lanes[li].len())
                .collect();
            if live.is_empty() || moves >= max_moves {
                break;
            }
            moves += 1;
            let li = live[choose(live.len()).min(live.len() - 1)];
            let ctx = Ctx {
                target,
                racing: &code.racing[si][li],
            };
            let instr = &lanes[li][pcs[li].ip];
            let mut next = step_lane(instr, &pcs[li], &state, ctx, &code.faulted);
            if next.is_empty() {
                return Err(format!("no successor for {instr:?}"));
            }
            let k = choose(next.len()).min(next.len() - 1);
            let (npc, ns, rec) = next.swap_remove(k);
            if let Some((id, o)) = rec {
                visit(id, o, &ns);
            }
            pcs[li] = npc;
            state = ns;
        }
        if moves >= max_moves {
            break;
        }
        state = state.settle();
    }
    Ok(moves)
}

/// Whether an instruction is independent of every other lane's: loop control
/// is lane-local, and [`state_free`] ops neither read nor change model state.
fn invisible(i: &Instr<'_>) -> bool {
    match i {
        Instr::Enter(..) | Instr::Loop { .. } => true,
        Instr::Op(_, op) => state_free(op),
    }
}

/// One lane's next moves from `pc`: new pc, new state, and the op outcome
/// to record; an op in `faulted` may also fail as a fault makes it.
fn step_lane(
    instr: &Instr<'_>,
    pc: &Pc,
    state: &State,
    ctx: Ctx<'_>,
    faulted: &BTreeSet<OpId>,
) -> Vec<Move> {
    let advance = |iters: [u32; 3]| Pc {
        ip: pc.ip + 1,
        iters,
    };
    match instr {
        Instr::Op(id, op) => {
            if faulted.contains(id) {
                apply_faulted(state, op, ctx)
            } else {
                apply(state, op, ctx)
            }
        }
        .into_iter()
        .map(|(o, s)| (advance(pc.iters), s, Some((*id, o))))
        .collect(),
        Instr::Enter(id, depth) => {
            let mut iters = pc.iters;
            iters[*depth] = 1;
            vec![(advance(iters), state.clone(), Some((*id, Outcome::Ok)))]
        }
        Instr::Loop {
            start,
            depth,
            times,
        } => {
            let n = pc.iters[*depth];
            let again = |n: u32| {
                let mut iters = pc.iters;
                iters[*depth] = n;
                (
                    Pc {
                        ip: start + 1,
                        iters,
                    },
                    state.clone(),
                    None,
                )
            };
            let mut exit_iters = pc.iters;
            exit_iters[*depth] = 0;
            let exit = (advance(exit_iters), state.clone(), None);
            match times {
                Times::Count(c) if *c <= EXACT_REPEATS => {
                    if n < *c {
                        vec![again(n + 1)]
                    } else {
                        vec![exit]
                    }
                }
                _ if n < BOUNDED_PASSES => vec![again(n + 1), exit],
                _ => vec![exit],
            }
        }
    }
}
