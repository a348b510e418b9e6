//! Which families of ops bring new kernel edges lately, per second of VM
//! time: a guided campaign generates more of those (a choice table, as
//! syzkaller's is learnt from its corpus, here learnt from the runs).
//!
//! Why: on the 6.12 debug kernel under TCG a 20-minute campaign is 400 to
//! 700 programs, too few for mutations of kept programs to pay back their
//! re-runs (BENCHMARKS.md, kernel coverage); generated programs find most
//! of the new code. So the guided search steers the generator: each run's
//! new edges and wall time are shared among the families of its ops (by
//! how many ops each has), both decay with every run, and the generator
//! draws a family with a weight that is part even (exploration) and part
//! its recent edges per second. A family whose code is covered already
//! (mkdir and rmdir, after the first minutes) falls back to the even part;
//! one that is slow for what it brings (a mkfs per program) costs its own
//! seconds.

use std::time::Duration;

use cgstorm_workloads::gen::{Bias, Family};
use cgstorm_workloads::Program;

/// What the last runs weigh against the older ones: each run multiplies
/// the sums by this (a half-life of about 35 runs).
pub const DECAY: f64 = 0.98;

/// The share of every draw that stays even, whatever the rates.
pub const EXPLORE: f64 = 0.3;

/// A family with no runs yet counts as this many edges in this many
/// seconds (so one lucky run does not take every draw).
const PRIOR_EDGES: f64 = 20.0;
const PRIOR_SECS: f64 = 4.0;

/// The decayed sums, per family in [`Family::ALL`]'s order.
#[derive(Debug, Clone, Default)]
pub struct Yields {
    edges: [f64; 8],
    secs: [f64; 8],
    runs: u64,
}

impl Yields {
    /// A run of `program` that brought `new_edges` edges no run had shown
    /// and took `took`: both shared among its ops' families.
    pub fn credit(&mut self, program: &Program, new_edges: usize, took: Duration) {
        let mut ops = [0u32; 8];
        for lane in 0..program.lanes.len() {
            for (_, s) in program.lane_ops(lane) {
                if let Some(f) = Family::of(&s.op) {
                    ops[f as usize] += 1;
                }
            }
        }
        let total: u32 = ops.iter().sum();
        for i in 0..8 {
            self.edges[i] *= DECAY;
            self.secs[i] *= DECAY;
        }
        if total == 0 {
            return;
        }
        self.runs += 1;
        for (i, n) in ops.iter().enumerate() {
            let share = f64::from(*n) / f64::from(total);
            self.edges[i] += new_edges as f64 * share;
            self.secs[i] += took.as_secs_f64() * share;
        }
    }

    /// Recent new edges per second of each family.
    pub fn rates(&self) -> [f64; 8] {
        let mut r = [0.0; 8];
        for (i, rate) in r.iter_mut().enumerate() {
            *rate = (self.edges[i] + PRIOR_EDGES) / (self.secs[i] + PRIOR_SECS);
        }
        r
    }

    /// The generator's weights: [`EXPLORE`] of each draw even, the rest
    /// in proportion to the rates (in thousandths).
    pub fn bias(&self) -> Bias {
        let rates = self.rates();
        let sum: f64 = rates.iter().sum();
        let mut weights = [0u32; 8];
        for (w, r) in weights.iter_mut().zip(rates) {
            let share = EXPLORE / 8.0 + (1.0 - EXPLORE) * r / sum;
            *w = (share * 1000.0).round() as u32;
        }
        Bias { weights }
    }

    /// Runs credited.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// `cgroup 12% knob 9% …`: the share of draws each family gets now.
    pub fn summary(&self) -> String {
        let b = self.bias();
        let total: u32 = b.weights.iter().sum();
        Family::ALL
            .iter()
            .zip(b.weights)
            .map(|(f, w)| format!("{} {}%", f.name(), (w * 100 + total / 2) / total.max(1)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(yaml: &str) -> Program {
        Program::from_yaml("t", yaml).expect("valid")
    }

    const MKDIRS: &str = "lanes:\n  - name: l\n    ops: [{mkdir: a}, {rmdir: a}]\n";
    const WRITES: &str =
        "lanes:\n  - name: l\n    ops: [{write: {file: tmp/f0, bytes: 4K, bs: 4K}}, {fsync: tmp/f0}]\n";

    fn weight(y: &Yields, f: Family) -> u32 {
        y.bias().weights[f as usize]
    }

    /// No runs: every family the same.
    #[test]
    fn without_runs_the_draws_are_even() {
        let b = Yields::default().bias();
        assert!(b.weights.iter().all(|w| *w == b.weights[0]), "{b:?}");
    }

    /// The family whose runs bring new edges gets more of the draws than
    /// one whose runs bring none, and the one that brings none falls
    /// under the even share; never to zero.
    #[test]
    fn families_that_bring_edges_are_drawn_more() {
        let mut y = Yields::default();
        for _ in 0..20 {
            y.credit(&program(MKDIRS), 0, Duration::from_secs(2));
            y.credit(&program(WRITES), 300, Duration::from_secs(2));
        }
        let even = 1000 / 8;
        assert!(weight(&y, Family::File) > 3 * even, "{}", y.summary());
        assert!(weight(&y, Family::Cgroup) < even, "{}", y.summary());
        assert!(weight(&y, Family::Cgroup) > 0, "{}", y.summary());
        assert_eq!(y.runs(), 40);
    }

    /// What a family brought long ago fades: after many runs that bring
    /// nothing, the writes' lead is gone.
    #[test]
    fn old_edges_fade() {
        let mut y = Yields::default();
        for _ in 0..20 {
            y.credit(&program(WRITES), 300, Duration::from_secs(2));
        }
        let before = weight(&y, Family::File);
        for _ in 0..300 {
            y.credit(&program(WRITES), 0, Duration::from_secs(2));
        }
        let after = weight(&y, Family::File);
        assert!(after < before / 2, "{before} -> {after}");
    }

    /// The same edges in more seconds count less: a slow family pays for
    /// its time.
    #[test]
    fn slow_families_pay_for_their_time() {
        let mut y = Yields::default();
        for _ in 0..20 {
            y.credit(&program(MKDIRS), 100, Duration::from_secs(20));
            y.credit(&program(WRITES), 100, Duration::from_secs(2));
        }
        assert!(
            weight(&y, Family::File) > 2 * weight(&y, Family::Cgroup),
            "{}",
            y.summary()
        );
    }
}
