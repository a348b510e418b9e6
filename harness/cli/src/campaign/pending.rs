//! Programs that showed new kernel edges, waiting for the re-run that
//! confirms them, and the share of the campaign those re-runs may take.
//!
//! A guided campaign that re-runs (and then minimises) every program with
//! a new edge spends most of its first minutes doing that: at first nearly
//! every program brings new edges, and a program on a debug kernel under
//! TCG takes seconds. Measured in session 10 (BENCHMARKS.md), 43 % of the
//! guided runs were re-runs and minimisation, and the unguided campaign
//! covered more. So confirmation gets a budget, like minimisation's: the
//! programs wait here, the one with the most new edges first, and one is
//! confirmed after a program only while re-runs and minimisation together
//! have taken less than [`SHARE`] of the campaign. The queue is bounded:
//! when it is full, the candidate with the fewest new edges is dropped
//! (its edges stay counted as seen; only the program is not kept). In a
//! campaign with a focus, "new edges" here are new PCs in the focus.

use std::time::Duration;

use cgstorm_workloads::Program;

/// The share of a campaign's wall time that re-runs and minimisation of
/// programs with new edges may take together.
pub const SHARE: f64 = 0.2;

/// How many programs may wait for their re-run.
pub const CAPACITY: usize = 32;

/// A program that showed new edges, and what it was run with.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The program.
    pub program: Program,
    /// How long its `for: run` loops ran.
    pub duration: Duration,
    /// The campaign part it came from.
    pub part: String,
    /// Which kernel it ran on (index into the campaign's envs).
    pub env: usize,
    /// What it is to be kept for: the edges it showed that no program had
    /// shown before, or, in a campaign with a focus, its new PCs in the
    /// focus (`Campaign::focus`).
    pub new_code: Vec<u32>,
}

/// The waiting candidates, most new edges first.
#[derive(Debug, Default)]
pub struct Pending {
    waiting: Vec<Candidate>,
}

impl Pending {
    /// Queues `c`; when more than [`CAPACITY`] wait, the one with the
    /// fewest new edges (the newest of equals) is dropped, and `true` said.
    pub fn push(&mut self, c: Candidate) -> bool {
        self.waiting.push(c);
        if self.waiting.len() > CAPACITY {
            let worst = self
                .waiting
                .iter()
                .enumerate()
                .min_by_key(|(i, c)| (c.new_code.len(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
                .expect("the queue is not empty");
            self.waiting.remove(worst);
            return true;
        }
        false
    }

    /// Takes the candidate with the most new edges (the oldest of equals).
    pub fn pop_best(&mut self) -> Option<Candidate> {
        let best = self
            .waiting
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (c.new_code.len(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i)?;
        Some(self.waiting.remove(best))
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Whether a confirmation may start now: re-runs and minimisation have
/// taken `spent_ms` of `elapsed_ms` (the campaign's wall time so far).
/// The first one may always start.
pub fn may_confirm(spent_ms: u64, elapsed_ms: u64) -> bool {
    spent_ms as f64 <= SHARE * elapsed_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, edges: usize) -> Candidate {
        let program = Program {
            name: name.into(),
            description: String::new(),
            duration: None,
            lanes: Vec::new(),
            checks: Vec::new(),
            known_findings: Vec::new(),
        };
        Candidate {
            program,
            duration: Duration::from_secs(1),
            part: "fuzz".into(),
            env: 0,
            new_code: (0..edges as u32).collect(),
        }
    }

    /// The candidate with the most new edges is confirmed first; among
    /// equals, the one that came first.
    #[test]
    fn the_most_new_edges_go_first() {
        let mut p = Pending::default();
        p.push(cand("a", 3));
        p.push(cand("b", 10));
        p.push(cand("c", 10));
        p.push(cand("d", 1));
        let order: Vec<String> = std::iter::from_fn(|| p.pop_best())
            .map(|c| c.program.name)
            .collect();
        assert_eq!(order, ["b", "c", "a", "d"]);
    }

    /// A full queue drops the candidate with the fewest new edges, and
    /// says so; what is dropped is never the better one.
    #[test]
    fn a_full_queue_drops_the_fewest_edges() {
        let mut p = Pending::default();
        for i in 0..CAPACITY {
            assert!(!p.push(cand(&format!("p{i}"), 5)));
        }
        assert!(p.push(cand("small", 1)));
        assert_eq!(p.len(), CAPACITY);
        assert!(p.push(cand("big", 50)));
        assert_eq!(p.len(), CAPACITY);
        assert_eq!(p.pop_best().map(|c| c.program.name).as_deref(), Some("big"));
        let mut names: Vec<String> = std::iter::from_fn(|| p.pop_best())
            .map(|c| c.program.name)
            .collect();
        assert!(!names.iter().any(|n| n == "small"));
        // Of the equals, the newest went: p0 stays.
        names.sort();
        assert!(names.contains(&"p0".to_string()));
        assert!(!names.contains(&format!("p{}", CAPACITY - 1)));
    }

    /// The budget: the first confirmation may start at once; after one
    /// that took 2 s, the next waits until the campaign has run 10 s.
    #[test]
    fn confirmation_takes_at_most_its_share() {
        assert!(may_confirm(0, 0));
        assert!(!may_confirm(2_000, 9_999));
        assert!(may_confirm(2_000, 10_000));
    }
}
