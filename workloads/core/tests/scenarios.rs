//! The generator reaches the shapes of the mailing-list scenarios
//! (`corpus/scenarios/*.yaml`): for each scenario, some program among
//! `gen::from_seed(0..SEEDS)` is close to it.
//!
//! Shape: a scenario races in its first step that holds a `repeat: {for:
//! run}`. Its shape is the set of distinct op-kind sets of the lanes in that
//! step (`barrier`, `repeat` and `sleep` left out; lanes doing the same kinds
//! count once, so four lanes mounting and unmounting are one kind of lane).
//! Close: some step of the generated program has, for each of those lane
//! kinds, a different lane doing at least half of its op kinds (rounded
//! up). So a program is close to seed 001's script when one lane migrates
//! tasks while another syncs in the same step.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cgstorm_workloads::gen::{from_seed, GEN_LANES};
use cgstorm_workloads::op::{Op, OpSpec, Times};
use cgstorm_workloads::Program;

/// How many seeds the search may look at. The rarest shape, four lanes
/// of four kinds in one step (shrinker_mount_churn), came at seed 11,272
/// before the recipes and at 30,296 after them (a step with a recipe gives
/// the other lanes two ops at most).
const SEEDS: u64 = 60_000;

type Kinds = BTreeSet<&'static str>;

fn kinds(ops: &[OpSpec], out: &mut Kinds) {
    for s in ops {
        match &s.op {
            Op::Repeat(r) => kinds(&r.ops, out),
            Op::Barrier | Op::Sleep(_) => {}
            op => {
                out.insert(op.keyword());
            }
        }
    }
}

/// Each step's lanes' op-kind sets (empty lanes left out).
fn steps(p: &Program) -> Vec<Vec<Kinds>> {
    let mut out = vec![Vec::new(); p.steps()];
    for l in &p.lanes {
        for (i, seg) in l.ops.split(|s| s.op == Op::Barrier).enumerate() {
            let mut k = Kinds::new();
            kinds(seg, &mut k);
            if !k.is_empty() {
                out[i].push(k);
            }
        }
    }
    out
}

fn runs_for_the_duration(ops: &[OpSpec]) -> bool {
    ops.iter()
        .any(|s| matches!(&s.op, Op::Repeat(r) if r.times == Times::Run))
}

/// The scenario's shape: the distinct lane kinds of its racing step.
fn shape(p: &Program) -> Vec<Kinds> {
    let racing = p
        .lanes
        .iter()
        .flat_map(|l| {
            l.ops
                .split(|s| s.op == Op::Barrier)
                .position(runs_for_the_duration)
        })
        .min()
        .expect("a scenario runs a `repeat: {for: run}`");
    let mut lanes = steps(p).swap_remove(racing);
    lanes.sort();
    lanes.dedup();
    lanes
}

/// Whether lanes can be matched one to one to `want`, each doing at least
/// half of its kinds.
fn covers(have: &[Kinds], want: &[Kinds], used: &mut Vec<bool>) -> bool {
    let Some((first, rest)) = want.split_first() else {
        return true;
    };
    let need = first.len().div_ceil(2);
    for i in 0..have.len() {
        if used[i] || have[i].intersection(first).count() < need {
            continue;
        }
        used[i] = true;
        if covers(have, rest, used) {
            return true;
        }
        used[i] = false;
    }
    false
}

fn close(g: &Program, want: &[Kinds]) -> bool {
    steps(g)
        .iter()
        .any(|lanes| covers(lanes, want, &mut vec![false; lanes.len()]))
}

fn scenarios() -> Vec<(PathBuf, Program)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let prog = Program::from_yaml_path(&p, &text).unwrap_or_else(|e| panic!("{e}"));
            (p, prog)
        })
        .collect()
}

#[test]
fn every_scenario_shape_comes_out_of_the_generator() {
    let all = scenarios();
    assert!(all.len() >= 6, "the scenario library shrank");
    let generated: Vec<Program> = (0..SEEDS).map(from_seed).collect();
    let mut missing = Vec::new();
    for (path, p) in &all {
        let want = shape(p);
        assert!(
            want.len() <= GEN_LANES,
            "{}: {} lane kinds race; the generator makes at most {GEN_LANES} lanes",
            path.display(),
            want.len()
        );
        match generated.iter().position(|g| close(g, &want)) {
            Some(seed) => eprintln!("{}: close to gen seed {seed}", path.display()),
            None => missing.push(format!("{}: {want:?}", path.display())),
        }
    }
    assert!(
        missing.is_empty(),
        "no generated program in seeds 0..{SEEDS} is close to:\n{}",
        missing.join("\n")
    );
}

#[test]
fn shapes_and_closeness() {
    let p = |y: &str| Program::from_yaml("t", y).unwrap();
    let scenario = p("lanes:
  - {name: a, ops: [mkdir: a, barrier, {repeat: {for: run, ops: [{cgroup.procs: {task: s, cg: a}}, {cgroup.procs: {task: s, cg: b}}]}}]}
  - {name: b, ops: [barrier, {repeat: {for: run, ops: [sync, {sleep: 1ms}]}}]}
  - {name: c, ops: [barrier, {repeat: {for: run, ops: [sync]}}]}
");
    let want = shape(&scenario);
    assert_eq!(want.len(), 2, "{want:?}");
    let near = p("lanes:
  - {name: a, ops: [{cgroup.procs: {task: s, cg: a}}, mkdir: x]}
  - {name: b, ops: [sync]}
");
    assert!(close(&near, &want));
    // Both kinds in one lane is not a race between lanes.
    let far = p("lanes:
  - {name: a, ops: [{cgroup.procs: {task: s, cg: a}}, sync]}
");
    assert!(!close(&far, &want));
    // Nor are kinds in different steps.
    let apart = p("lanes:
  - {name: a, ops: [{cgroup.procs: {task: s, cg: a}}, barrier]}
  - {name: b, ops: [barrier, sync]}
");
    assert!(!close(&apart, &want));
}
