//! Benchmark of the model on the host.
//!
//! `cargo run --release -p cgstorm-workloads --example model_bench [PROGRAMS]`
//!
//! 1. predict: generated programs (seeds 0..PROGRAMS), ops predicted per second
//!    (an op counts once per program, however many interleavings reach it).
//! 2. verify: a seed-001-shaped trace, one lane migrating a task between two
//!    cgroups while another runs `sync`, ops checked per second.

use std::time::Instant;

use cgstorm_workloads::gen::from_seed;
use cgstorm_workloads::model::{predict, verify, OpEvent, StepTrace, Target, Trace};
use cgstorm_workloads::{OpId, Outcome, Program};

fn main() {
    let programs: u64 = std::env::args()
        .nth(1)
        .map_or(2000, |a| a.parse().expect("a number"));
    let target = Target::default();

    let t0 = Instant::now();
    let (mut ops, mut nodes) = (0usize, 0usize);
    for seed in 0..programs {
        let p = from_seed(seed);
        let pred = predict(&p, &target).expect("generated programs predict");
        ops += pred.ops.len();
        nodes += pred.nodes;
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "predict: {programs} generated programs, {ops} ops, {nodes} interleaving states in {dt:.2}s: {:.0} ops/s, {:.0} programs/s, {:.0} states/s",
        ops as f64 / dt,
        programs as f64 / dt,
        nodes as f64 / dt
    );

    let p = Program::from_yaml(
        "seed001",
        r#"
lanes:
  - name: mover
    ops:
      - {mkdir: a}
      - {mkdir: b}
      - spawn: {task: s, sleeper: {}}
      - repeat:
          for: run
          ops:
            - {cgroup.procs: {task: s, cg: a}}
            - {cgroup.procs: {task: s, cg: b}}
  - name: syncer
    ops:
      - repeat: {for: run, ops: [sync]}
"#,
    )
    .expect("valid");
    let n = 50_000u64;
    let mut mover = vec![ev(0, 0, 0, 10), ev(0, 1, 20, 30), ev(0, 2, 40, 50)];
    let mut syncer = Vec::new();
    for i in 0..n {
        let t = 100 + i * 100;
        mover.push(ev(0, 4 + (i % 2) as usize, t, t + 60));
        syncer.push(ev(1, 1, t + 30, t + 90));
    }
    let events = mover.len() + syncer.len();
    let trace = Trace {
        steps: vec![StepTrace {
            lanes: vec![mover, syncer],
            snapshot: None,
        }],
    };
    let t0 = Instant::now();
    let verdict = verify(&p, &target, &trace).expect("verifies");
    let dt = t0.elapsed().as_secs_f64();
    assert!(verdict.is_none(), "{verdict:?}");
    println!(
        "verify: {events} events from 2 overlapping lanes in {dt:.2}s: {:.0} ops/s",
        events as f64 / dt
    );
}

fn ev(lane: usize, op: usize, start: u64, end: u64) -> OpEvent {
    OpEvent {
        id: OpId { lane, op },
        outcome: Outcome::Ok,
        start_ns: start,
        end_ns: end,
    }
}
