//! Benchmark of the model on the host.
//!
//! `cargo run --release -p cgstorm-workloads --example model_bench [PROGRAMS [RUN.json...]]`
//!
//! 1. predict: generated programs (seeds 0..PROGRAMS), ops predicted per second
//!    (an op counts once per program, however many interleavings reach it).
//! 2. verify: a seed-001-shaped trace, one lane migrating a task between two
//!    cgroups while another runs `sync`, ops checked per second.
//! 3. verify again, on real runs: each RUN.json is what `cgstorm run PROGRAM
//!    --json RUN.json` wrote (its target, ops and barriers; PROGRAM read again), checked
//!    as the harness checks it after a fuzz program: ops per second and ms a
//!    run.

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
    real_runs(&std::env::args().skip(2).collect::<Vec<_>>());
}

/// Checks each run's trace as the harness does: the figure behind the
/// `check` share of a fuzz campaign's wall time.
fn real_runs(paths: &[String]) {
    let (mut events, mut total) = (0usize, 0.0f64);
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let run: serde_json::Value = serde_json::from_str(&text).expect("a run's JSON");
        if run["ops_truncated"].as_bool() == Some(true) {
            println!("{path}: its ops are truncated in the JSON, left out");
            continue;
        }
        // The run names its program's file.
        let file = run["program"].as_str().expect("program");
        let yaml = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let program = Program::from_yaml(file, &yaml).expect("valid");
        let target: Target = serde_json::from_value(run["target"].clone()).expect("target");
        let mut trace = Trace::default();
        for op in run["ops"].as_array().expect("ops") {
            let n = |k: &str| op[k].as_u64().expect("a number");
            let step = n("step") as usize;
            let lane = n("lane") as usize;
            while trace.steps.len() <= step {
                trace.steps.push(StepTrace {
                    lanes: vec![Vec::new(); program.lanes.len()],
                    snapshot: None,
                });
            }
            let outcome: Outcome = op["outcome"]
                .as_str()
                .expect("outcome")
                .parse()
                .expect("outcome");
            trace.steps[step].lanes[lane].push(OpEvent {
                id: OpId {
                    lane,
                    op: n("op") as usize,
                },
                outcome,
                start_ns: n("start_ns"),
                end_ns: n("end_ns"),
                injected: false,
            });
        }
        for b in run["barriers"].as_array().expect("barriers") {
            let step = b["step"].as_u64().expect("step") as usize;
            if let Some(s) = trace.steps.get_mut(step) {
                s.snapshot = Some(serde_json::from_value(b["snapshot"].clone()).expect("snapshot"));
            }
        }
        let n: usize = trace
            .steps
            .iter()
            .flat_map(|s| &s.lanes)
            .map(Vec::len)
            .sum();
        let t0 = Instant::now();
        let verdict = verify(&program, &target, &trace);
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "verify {path}: {n} events in {:.1} ms ({})",
            dt * 1e3,
            match verdict {
                Ok(None) => "explained".to_string(),
                Ok(Some(d)) => format!("diverged: {d:?}"),
                Err(e) => format!("unchecked: {e}"),
            }
        );
        events += n;
        total += dt;
    }
    if !paths.is_empty() {
        println!(
            "verify, real runs: {} runs, {events} events in {:.2}s: {:.0} ops/s, {:.1} ms a run",
            paths.len(),
            total,
            events as f64 / total,
            total * 1e3 / paths.len() as f64
        );
    }
}

fn ev(lane: usize, op: usize, start: u64, end: u64) -> OpEvent {
    OpEvent {
        id: OpId { lane, op },
        outcome: Outcome::Ok,
        start_ns: start,
        end_ns: end,
        injected: false,
    }
}
