//! Lanes compiled into per-step instruction lists the explorer can step through.

use std::collections::BTreeSet;

use crate::names::{Cg, Dev};
use crate::op::{Op, OpSpec, Times};
use crate::program::{OpId, Program};

/// Repeats with a count up to this are followed exactly.
pub const EXACT_REPEATS: u32 = 16;
/// Larger counts and durations are predicted as 1 to this many passes.
/// (Only prediction is bounded: `verify` follows a real run's passes exactly.)
pub const BOUNDED_PASSES: u32 = 3;

/// One instruction of a lane's step.
#[derive(Clone, Debug)]
pub enum Instr<'p> {
    /// Run an op.
    Op(OpId, &'p Op),
    /// Start a repeat (its own op id reports `ok`); the body follows.
    Enter(OpId, usize),
    /// End of a repeat body at nesting `depth`; `start` is the Enter's index.
    Loop {
        /// The Enter instruction's index.
        start: usize,
        /// Nesting depth (0 for the outermost repeat).
        depth: usize,
        /// How often the body runs.
        times: Times,
    },
}

/// The program as instruction lists: `steps[step][lane]`, plus for each
/// step and lane the cgroups other lanes remove during that step.
#[derive(Debug)]
pub struct Code<'p> {
    /// Instructions.
    pub steps: Vec<Vec<Vec<Instr<'p>>>>,
    /// `racing[step][lane]`: cgroups another lane may rmdir concurrently.
    pub racing: Vec<Vec<BTreeSet<Cg>>>,
    /// `racing_loops[step][lane]`: devices another lane may attach, detach,
    /// mkfs or mount concurrently.
    pub racing_loops: Vec<Vec<BTreeSet<Dev>>>,
}

impl<'p> Code<'p> {
    /// Compiles a program.
    pub fn new(p: &'p Program) -> Code<'p> {
        let nsteps = p.steps();
        let mut steps = vec![vec![Vec::new(); p.lanes.len()]; nsteps];
        for (li, lane) in p.lanes.iter().enumerate() {
            let mut step = 0;
            let mut next_id = 0;
            for s in &lane.ops {
                if s.op == Op::Barrier {
                    next_id += 1;
                    step += 1;
                    continue;
                }
                compile(li, s, &mut next_id, 0, &mut steps[step][li]);
            }
        }
        let mut racing = Vec::new();
        for lanes in &steps {
            let removed: Vec<BTreeSet<Cg>> = lanes.iter().map(|l| rmdirs(l)).collect();
            racing.push(
                (0..lanes.len())
                    .map(|i| {
                        removed
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .flat_map(|(_, s)| s.iter().cloned())
                            .collect()
                    })
                    .collect(),
            );
        }
        let racing_loops = steps.iter().map(|lanes| others(lanes, loops)).collect();
        Code {
            steps,
            racing,
            racing_loops,
        }
    }
}

fn compile<'p>(
    lane: usize,
    s: &'p OpSpec,
    next: &mut usize,
    depth: usize,
    out: &mut Vec<Instr<'p>>,
) {
    let id = OpId { lane, op: *next };
    *next += 1;
    match &s.op {
        Op::Repeat(r) => {
            let start = out.len();
            out.push(Instr::Enter(id, depth));
            for b in &r.ops {
                compile(lane, b, next, depth + 1, out);
            }
            out.push(Instr::Loop {
                start,
                depth,
                times: r.times,
            });
        }
        op => out.push(Instr::Op(id, op)),
    }
}

/// For each lane, the union of `f` over the other lanes' code.
fn others<T: Ord + Clone>(
    lanes: &[Vec<Instr<'_>>],
    f: fn(&[Instr<'_>]) -> BTreeSet<T>,
) -> Vec<BTreeSet<T>> {
    let each: Vec<BTreeSet<T>> = lanes.iter().map(|l| f(l)).collect();
    (0..lanes.len())
        .map(|i| {
            each.iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, s)| s.iter().cloned())
                .collect()
        })
        .collect()
}

/// Devices a lane attaches, detaches, formats or mounts.
fn loops(code: &[Instr<'_>]) -> BTreeSet<Dev> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, Op::Losetup(a)) => Some(a.dev),
            Instr::Op(_, Op::LosetupDetach(d)) => Some(*d),
            Instr::Op(_, Op::Mkfs(a)) => Some(a.dev),
            Instr::Op(_, Op::Mount(a)) => a.dev,
            _ => None,
        })
        .collect()
}

fn rmdirs(code: &[Instr<'_>]) -> BTreeSet<Cg> {
    code.iter()
        .filter_map(|i| match i {
            Instr::Op(_, Op::Rmdir(cg)) => Some(cg.clone()),
            _ => None,
        })
        .collect()
}
