//! Minimisation by signal: a program kept for new kernel edges is cut down
//! while every one of its confirmed new edges (in a campaign with a focus:
//! its new PCs in the focus) still shows, so the corpus
//! keeps the shortest program that reaches that code (syzkaller does the
//! same to its new inputs). Long programs (many ops, timed loops) bring the
//! most new edges at first; kept whole, they fill the corpus and slow every
//! mutation of them.
//!
//! The cuts are `reduce::candidates`' (lanes, steps, chunks of ops, single
//! ops, repeats), biggest first; the first that keeps the edges is taken
//! and the search starts again from it, within a budget of runs.

use std::collections::HashSet;

use cgstorm_workloads::reduce;
use cgstorm_workloads::Program;

/// How many runs one kept program's minimisation may take.
pub const RUNS: usize = 6;

/// The outcome of [`shrink`].
#[derive(Debug)]
pub struct Shrunk<T> {
    /// The smallest program found that still showed all its signal.
    pub program: Program,
    /// What its last run gave (or `None`: the program came back uncut).
    pub last: Option<T>,
    /// Runs taken.
    pub runs: usize,
    /// What was cut, in order.
    pub cuts: Vec<String>,
}

/// Cuts `program` while all of `wanted` show in a run of the cut program
/// (`run` gives what a run gave, `None` when it could not run or the
/// campaign is over; `signal` the edges or PCs in it that count), taking
/// at most `budget` runs.
pub fn shrink<T>(
    program: &Program,
    wanted: &[u32],
    budget: usize,
    mut run: impl FnMut(&Program) -> Option<T>,
    signal: impl Fn(&T) -> &HashSet<u32>,
) -> Shrunk<T> {
    let mut out = Shrunk {
        program: program.clone(),
        last: None,
        runs: 0,
        cuts: Vec::new(),
    };
    'search: loop {
        for c in reduce::candidates(&out.program) {
            if out.runs >= budget {
                break 'search;
            }
            out.runs += 1;
            let Some(got) = run(&c.program) else {
                break 'search;
            };
            if wanted.iter().all(|e| signal(&got).contains(e)) {
                out.program = c.program;
                out.last = Some(got);
                out.cuts.push(c.what);
                continue 'search;
            }
        }
        break;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cgstorm_workloads::OpId;

    /// A recorded trace as a kernel: each op's text brings the edges it
    /// brought when it ran; a run's edges are those of all its ops.
    fn kernel<'a>(
        trace: &'a [(&'a str, &'a [u32])],
    ) -> impl FnMut(&Program) -> Option<HashSet<u32>> + 'a {
        move |p: &Program| {
            let mut got = HashSet::new();
            for l in 0..p.lanes.len() {
                for (_, spec) in p.lane_ops(l) {
                    let text = spec.op.describe();
                    for (op, edges) in trace {
                        if text == *op {
                            got.extend(edges.iter().copied());
                        }
                    }
                }
            }
            Some(got)
        }
    }

    const PROGRAM: &str = "lanes:
  - name: a
    ops:
      - {mkdir: a}
      - {mkdir: b}
      - {memory.max: {cg: a, value: 8M}}
      - {rmdir: b}
  - name: b
    ops:
      - sync
      - {mkdir: c}
";

    #[test]
    fn cuts_what_the_new_edges_do_not_need() {
        let p = Program::from_yaml("t", PROGRAM).unwrap();
        let trace: &[(&str, &[u32])] = &[
            ("mkdir a", &[1, 2]),
            ("mkdir b", &[1, 3]),
            ("memory.max {cg: a, value: 8M}", &[7, 8]),
            ("rmdir b", &[4]),
            ("sync", &[5]),
            ("mkdir c", &[1, 6]),
        ];
        // The write of memory.max brought 7 and 8: what it needs stays.
        let s = shrink(&p, &[7, 8], 100, kernel(trace), |s| s);
        assert_eq!(s.program.lanes.len(), 1, "lane b goes: {:?}", s.cuts);
        let ops: Vec<String> = s
            .program
            .lane_ops(0)
            .into_iter()
            .map(|(_, spec)| spec.op.describe())
            .collect();
        assert_eq!(ops, ["memory.max {cg: a, value: 8M}"], "{:?}", s.cuts);
        assert!(s.last.as_ref().is_some_and(|e| e.contains(&7)));
        assert_eq!(s.cuts.len(), s.cuts.iter().collect::<HashSet<_>>().len());
    }

    #[test]
    fn an_edge_of_two_ops_keeps_both() {
        let p = Program::from_yaml("t", PROGRAM).unwrap();
        let trace: &[(&str, &[u32])] = &[("mkdir a", &[2]), ("mkdir c", &[6])];
        let s = shrink(&p, &[2, 6], 100, kernel(trace), |s| s);
        let left: Vec<(OpId, String)> = (0..s.program.lanes.len())
            .flat_map(|l| {
                s.program
                    .lane_ops(l)
                    .into_iter()
                    .map(|(id, sp)| (id, sp.op.describe()))
            })
            .collect();
        let texts: Vec<&str> = left.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["mkdir a", "mkdir c"], "{:?}", s.cuts);
    }

    #[test]
    fn flaky_edges_or_no_budget_keep_the_program_whole() {
        let p = Program::from_yaml("t", PROGRAM).unwrap();
        // Edge 9 never shows again (a race that ran once): nothing is cut.
        let s = shrink(&p, &[9], 100, kernel(&[("sync", &[5])]), |s| s);
        assert!(s.cuts.is_empty() && s.last.is_none());
        assert_eq!(s.program, p);
        assert!(s.runs > 0);
        // The budget bounds the runs.
        let s = shrink(
            &p,
            &[7],
            2,
            kernel(&[("memory.max {cg: a, value: 8M}", &[7])]),
            |s| s,
        );
        assert!(s.runs <= 2, "{}", s.runs);
        // A run that cannot be done (the campaign is over) stops the search.
        let mut calls = 0;
        let s = shrink(
            &p,
            &[7],
            100,
            |_| -> Option<HashSet<u32>> {
                calls += 1;
                None
            },
            |s| s,
        );
        assert_eq!((calls, s.runs, s.cuts.len()), (1, 1, 0));
    }
}
