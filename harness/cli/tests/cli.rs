//! The `cgstorm` binary's contract: exit codes, error locations, determinism.

use std::path::Path;
use std::process::{Command, Output};

fn cgstorm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cgstorm"))
        .args(args)
        .output()
        .expect("cgstorm runs")
}

/// A temporary directory, removed when the guard drops.
fn tmpdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("cgstorm-cli-{name}-"))
        .tempdir()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn malformed_program_exits_2_with_file_line_column() {
    let d = tmpdir("bad");
    let p = write(
        d.path(),
        "bad.yaml",
        "lanes:\n  - name: a\n    ops:\n      - mkdir: a\n      - rmdr: a\n",
    );
    let out = cgstorm(&["check", &p]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{p}:5:")), "{err}");
    assert!(err.contains("unknown op `rmdr`"), "{err}");
    let missing = cgstorm(&["check", "/nonexistent/x.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read program"));
}

#[test]
fn check_prints_predictions_and_flags_wrong_expectations() {
    let d = tmpdir("check");
    let good = write(
        d.path(),
        "good.yaml",
        "lanes:\n  - {name: a, ops: [{mkdir: x, expect: ok}, {mkdir: x, expect: EEXIST}]}\n",
    );
    let out = cgstorm(&["check", &good]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mkdir x") && text.contains("-> EEXIST"),
        "{text}"
    );
    let wrong = write(
        d.path(),
        "wrong.yaml",
        "lanes:\n  - {name: a, ops: [{rmdir: x, expect: ok}]}\n",
    );
    let out = cgstorm(&["check", &wrong, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mismatches"], 1);
    assert_eq!(v["ops"][0]["predicted"][0], "ENOENT");
}

#[test]
fn kernel_options_change_predictions() {
    let d = tmpdir("kernel");
    let p = write(
        d.path(),
        "kill.yaml",
        "lanes:\n  - {name: a, ops: [{mkdir: x}, {cgroup.kill: x, expect: ok}]}\n",
    );
    assert_eq!(cgstorm(&["check", &p]).status.code(), Some(0));
    assert_eq!(
        cgstorm(&["check", &p, "--kernel-release", "5.10.0"])
            .status
            .code(),
        Some(1)
    );
    let bad = cgstorm(&["check", &p, "--kernel-release", "latest"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn gen_is_deterministic_and_its_programs_check() {
    let a = tmpdir("gen-a");
    let b = tmpdir("gen-b");
    for d in [&a, &b] {
        let out = cgstorm(&[
            "gen",
            "--seed",
            "42",
            "--count",
            "5",
            "--out",
            d.path().to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for seed in 42..47 {
        let name = format!("gen-{seed}.yaml");
        let x = std::fs::read_to_string(a.path().join(&name)).unwrap();
        assert_eq!(x, std::fs::read_to_string(b.path().join(&name)).unwrap());
        let out = cgstorm(&["check", a.path().join(&name).to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The regressions that keep the real kernel's results beside them
/// (`NAME.trace.json`, a campaign's stored run) are explained by the model:
/// each false divergence stays fixed against what the kernel really did.
#[test]
fn every_kernel_trace_kept_with_a_regression_is_explained() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/regressions");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let trace = e.unwrap().path();
        let Some(name) = trace
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".trace.json"))
        else {
            continue;
        };
        let program = dir.join(format!("{name}.yaml"));
        let out = cgstorm(&[
            "check",
            program.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked > 0, "no NAME.trace.json in {}", dir.display());
}

/// `check --trace`: a campaign's stored run (trace.json) is checked again on
/// the host, against the kernel it was judged for: exit 0 when the model
/// explains it, 1 with the op and what the model allows when it does not.
#[test]
fn a_stored_trace_is_checked_again_on_the_host() {
    use cgstorm::programs::StoredRun;
    use cgstorm_workloads::model::{OpEvent, StepTrace, Target, Trace};
    use cgstorm_workloads::{Errno, OpId, Outcome};

    let d = tmpdir("trace");
    let p = write(
        d.path(),
        "p.yaml",
        "lanes:\n  - {name: a, ops: [{mkdir: a}, {rmdir: a}]}\n",
    );
    let run = |rmdir: Outcome| {
        let ev = |op, outcome| OpEvent {
            id: OpId { lane: 0, op },
            outcome,
            start_ns: op as u64 * 10,
            end_ns: op as u64 * 10 + 5,
            injected: false,
        };
        let stored = StoredRun {
            target: Target::default(),
            trace: Trace {
                steps: vec![StepTrace {
                    lanes: vec![vec![ev(0, Outcome::Ok), ev(1, rmdir)]],
                    snapshot: None,
                }],
            },
        };
        write(
            d.path(),
            "trace.json",
            &serde_json::to_string(&stored).unwrap(),
        )
    };
    let t = run(Outcome::Ok);
    let out = cgstorm(&["check", &p, "--trace", &t]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("explains the 2 results"), "{said}");
    let t = run(Outcome::Err(Errno::EBUSY));
    let out = cgstorm(&["check", &p, "--trace", &t]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("op 1 `rmdir a` returned EBUSY; the model allows ok"),
        "{said}"
    );
    let bad = write(d.path(), "bad.json", "{}");
    let out = cgstorm(&["check", &p, "--trace", &bad]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a stored run"));
}

/// `repro --run` takes the VM options of `cgstorm run` (it once ignored
/// --memory, --cpus, --append, --no-memcg-v1 and --no-dax) and refuses,
/// before it boots anything, a backend it cannot use.
#[test]
fn repro_takes_the_vm_options_and_refuses_vng() {
    let program = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../corpus/semantics/tasks.yaml"
    );
    let out = cgstorm(&[
        "repro",
        program,
        "--sh",
        "--run",
        "--backend",
        "vng",
        "--memory",
        "1G",
        "--cpus",
        "1",
        "--no-memcg-v1",
        "--no-dax",
        "--append",
        "quiet",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("repro --run boots QEMU only"), "{err}");
}
