//! Smaller variants of a program, for minimisation: drop lanes, steps,
//! chunks of ops and single ops, unwrap and shorten repeats. The harness
//! tries them in order (the biggest cuts first) and keeps the first one that
//! still shows the finding, then asks again.

use crate::op::{Op, OpSpec, Times};
use crate::program::{Lane, Program};

/// A smaller program and what was cut, for progress lines.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The program.
    pub program: Program,
    /// What was cut, e.g. "drop lane l2", "drop ops 4..8 of lane l0".
    pub what: String,
}

/// Lane `l`'s ops split at its barriers.
fn segments(lane: &Lane) -> Vec<Vec<OpSpec>> {
    let mut out = vec![Vec::new()];
    for s in &lane.ops {
        if s.op == Op::Barrier {
            out.push(Vec::new());
        } else {
            out.last_mut().expect("never empty").push(s.clone());
        }
    }
    out
}

fn join(segs: Vec<Vec<OpSpec>>) -> Vec<OpSpec> {
    let n = segs.len();
    let mut out = Vec::new();
    for (i, seg) in segs.into_iter().enumerate() {
        out.extend(seg);
        if i + 1 < n {
            out.push(Op::Barrier.into());
        }
    }
    out
}

fn ops_in(ops: &[OpSpec]) -> usize {
    ops.iter()
        .map(|s| match &s.op {
            Op::Repeat(r) => 1 + ops_in(&r.ops),
            Op::Barrier => 0,
            _ => 1,
        })
        .sum()
}

/// How big a program is, for "smaller" (ops, repeats counted with their
/// bodies and their pass counts).
pub fn size(p: &Program) -> usize {
    fn weigh(ops: &[OpSpec]) -> usize {
        ops.iter()
            .map(|s| match &s.op {
                Op::Repeat(r) => {
                    let passes = match r.times {
                        Times::Count(n) => n as usize,
                        _ => 4,
                    };
                    1 + passes * weigh(&r.ops)
                }
                Op::Barrier => 0,
                _ => 1,
            })
            .sum()
    }
    p.lanes.iter().map(|l| weigh(&l.ops)).sum::<usize>() + p.lanes.len()
}

/// The candidates, biggest cut first. Each is a valid program, strictly
/// smaller than `p` by [`size`].
pub fn candidates(p: &Program) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |program: Program, what: String| out.push(Candidate { program, what });
    lane_cuts(p, &mut push);
    step_cuts(p, &mut push);
    chunk_cuts(p, &mut push);
    repeat_cuts(p, &mut push);
    let base = size(p);
    out.retain_mut(|c| {
        c.program.lanes.retain(|l| ops_in(&l.ops) > 0);
        !c.program.lanes.is_empty()
            && size(&c.program) < base
            && Program::from_yaml("candidate", &c.program.to_yaml()).is_ok()
    });
    out
}

/// Whole lanes, when there are two or more.
fn lane_cuts(p: &Program, push: &mut impl FnMut(Program, String)) {
    if p.lanes.len() > 1 {
        for li in 0..p.lanes.len() {
            let mut q = p.clone();
            let name = q.lanes.remove(li).name;
            push(q, format!("drop lane {name}"));
        }
    }
}

/// Whole steps (the ops between two barriers, in every lane).
fn step_cuts(p: &Program, push: &mut impl FnMut(Program, String)) {
    let steps = p.lanes.iter().map(|l| segments(l).len()).max().unwrap_or(1);
    if steps > 1 {
        for k in 0..steps {
            let mut q = p.clone();
            for lane in &mut q.lanes {
                let mut segs = segments(lane);
                if k < segs.len() {
                    segs.remove(k);
                }
                lane.ops = join(segs);
            }
            push(q, format!("drop step {k}"));
        }
    }
}

/// Chunks of a lane's top-level ops: halves, quarters, ..., single ops.
/// Barriers stay: they belong to every lane's steps.
fn chunk_cuts(p: &Program, push: &mut impl FnMut(Program, String)) {
    for (li, lane) in p.lanes.iter().enumerate() {
        let n = lane.ops.len();
        let mut chunk = n.div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < n {
                let end = (start + chunk).min(n);
                let cut = &lane.ops[start..end];
                // Barriers stay: they belong to every lane's steps.
                if cut.iter().any(|s| s.op != Op::Barrier) {
                    let mut q = p.clone();
                    let kept: Vec<OpSpec> = q.lanes[li]
                        .ops
                        .drain(..)
                        .enumerate()
                        .filter(|(i, s)| !(start..end).contains(i) || s.op == Op::Barrier)
                        .map(|(_, s)| s)
                        .collect();
                    q.lanes[li].ops = kept;
                    let what = if end - start == 1 {
                        format!(
                            "drop `{}` of lane {}",
                            lane.ops[start].op.describe(),
                            lane.name
                        )
                    } else {
                        format!("drop ops {start}..{end} of lane {}", lane.name)
                    };
                    push(q, what);
                }
                start = end;
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
}

/// Repeats: fewer passes, then the body once instead of the loop, then
/// single body ops.
fn repeat_cuts(p: &Program, push: &mut impl FnMut(Program, String)) {
    for (li, lane) in p.lanes.iter().enumerate() {
        for (i, s) in lane.ops.iter().enumerate() {
            let Op::Repeat(r) = &s.op else { continue };
            let fewer = match r.times {
                Times::Count(n) if n > 1 => Some(Times::Count(n / 2)),
                Times::For(ms) if ms.0 > 10 => Some(Times::For(crate::Millis(ms.0 / 2))),
                _ => None,
            };
            if let Some(t) = fewer {
                let mut q = p.clone();
                if let Op::Repeat(r) = &mut q.lanes[li].ops[i].op {
                    r.times = t;
                }
                push(
                    q,
                    format!("fewer passes of the repeat at op {i} of lane {}", lane.name),
                );
            }
            let mut q = p.clone();
            q.lanes[li].ops.splice(i..=i, r.ops.iter().cloned());
            push(
                q,
                format!("unroll the repeat at op {i} of lane {} once", lane.name),
            );
            if r.ops.len() > 1 {
                for j in 0..r.ops.len() {
                    let mut q = p.clone();
                    if let Op::Repeat(r) = &mut q.lanes[li].ops[i].op {
                        r.ops.remove(j);
                    }
                    push(
                        q,
                        format!(
                            "drop `{}` from the repeat at op {i} of lane {}",
                            r.ops[j].op.describe(),
                            lane.name
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen;

    #[test]
    fn every_candidate_is_smaller_and_valid() {
        for seed in 0..60 {
            let p = gen::from_seed(seed);
            for c in candidates(&p) {
                assert!(size(&c.program) < size(&p), "seed {seed}: {}", c.what);
                Program::from_yaml("c", &c.program.to_yaml()).expect("valid");
            }
        }
    }

    #[test]
    fn greedy_reduction_finds_the_one_op_that_matters() {
        // 40 ops in 4 lanes over 2 steps; the "bug" needs `sysrq c`.
        let mut text = String::from("lanes:\n");
        for l in 0..4 {
            text.push_str(&format!("  - name: l{l}\n    ops:\n"));
            for i in 0..10 {
                if l == 2 && i == 7 {
                    text.push_str("      - {sysrq: c}\n");
                } else if i == 5 {
                    text.push_str("      - barrier\n");
                } else {
                    text.push_str(&format!("      - {{mkdir: c{l}x{i}}}\n"));
                }
            }
        }
        let mut p = Program::from_yaml("t", &text).unwrap();
        let bug = |p: &Program| p.to_yaml().contains("sysrq");
        let mut tries = 0;
        while let Some(c) = candidates(&p).into_iter().find(|c| {
            tries += 1;
            bug(&c.program)
        }) {
            p = c.program;
        }
        assert_eq!(p.lanes.len(), 1);
        let ops: Vec<&Op> = p.lanes[0].ops.iter().map(|s| &s.op).collect();
        assert_eq!(
            ops,
            [&Op::Sysrq(crate::op::SysrqKey('c'))],
            "{}",
            p.to_yaml()
        );
        assert!(tries < 80, "{tries} candidates tried");
    }
}
