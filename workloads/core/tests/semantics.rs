//! The semantics corpus: every op in `corpus/semantics/*.yaml` carries the
//! result a correct kernel gives, and the model must predict exactly that set.

use std::path::{Path, PathBuf};

use cgstorm_workloads::model::{predict, Target};
use cgstorm_workloads::op::Op;
use cgstorm_workloads::Program;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/semantics");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn model_predicts_every_expected_result() {
    let files = corpus();
    assert!(files.len() >= 10, "the corpus shrank: {files:?}");
    let target = Target::default();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let p = Program::from_yaml_path(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let pred = predict(&p, &target).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for lane in 0..p.lanes.len() {
            for (id, spec) in p.lane_ops(lane) {
                if matches!(spec.op, Op::Barrier | Op::Repeat(_) | Op::Sleep(_)) {
                    continue;
                }
                let Some(want) = &spec.expect else {
                    failures.push(format!(
                        "{}: {id} ({}) has no expect",
                        path.display(),
                        spec.op.keyword()
                    ));
                    continue;
                };
                let got = pred.ops.get(&id).cloned().unwrap_or_default();
                checked += 1;
                if &got != want {
                    failures.push(format!(
                        "{}: {id} {}: expected {want}, model predicts {got}",
                        path.display(),
                        spec.op.keyword()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 150, "only {checked} ops checked");
}
