//! The model never panics on a generated program, and every state it
//! reaches is consistent (a task is in exactly one existing cgroup, a removed
//! cgroup holds no live task, device mount counts match the mount table, …),
//! along one interleaving per input: the input picks the lane that moves and
//! the outcome it gets (`model::walk`), so each execution costs one path,
//! not every interleaving (`model_interleavings` checks those, on small
//! programs).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cgstorm_workloads::model::{walk, Target};
use cgstorm_workloads::Program;
use libfuzzer_sys::{fuzz_target, Corpus};

/// Enough for every op of a generated program and a few repeat passes.
const MAX_MOVES: usize = 4_000;

fuzz_target!(|data: &[u8]| -> Corpus {
    let mut u = Unstructured::new(data);
    let Ok(p) = Program::arbitrary(&mut u) else {
        return Corpus::Reject;
    };
    let target = Target::default();
    let choices = u.take_rest().to_vec();
    let mut next = 0usize;
    let choose = |n: usize| {
        let c = choices.get(next).copied().unwrap_or(0) as usize;
        next += 1;
        c % n.max(1)
    };
    let result = walk(&p, &target, MAX_MOVES, choose, |id, o, s| {
        let bad = s.inconsistencies();
        assert!(bad.is_empty(), "{id} -> {o}: {bad:?}\n{}", p.to_yaml());
    });
    if let Err(e) = result {
        panic!("{e}\n{}", p.to_yaml());
    }
    Corpus::Keep
});
