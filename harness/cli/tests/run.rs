//! `cgstorm run`: exit codes for bad input and missing infrastructure, and
//! (ignored by default, it boots a VM) a real run of the semantics corpus:
//!
//! ```text
//! cargo test -p cgstorm --test run -- --ignored --nocapture
//! ```
//! `CGSTORM_ACCEL` (auto, kvm, tcg) and `CGSTORM_RUN_KERNELS` (colon-separated
//! `--kernel` values, default `debian`) pick the VMs; `CGSTORM_RUN_PROGRAMS`
//! (colon-separated, default `corpus/semantics/cgroup_v2_tree.yaml`) the
//! programs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cgstorm(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cgstorm"));
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("cgstorm runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_bad_program_exits_2_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, "lanes:\n  - name: a\n    ops:\n      - rmdr: a\n").unwrap();
    let p = p.to_str().unwrap();
    let out = cgstorm(&["run", p, "--kernel", "/nonexistent/bzImage"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{p}:4:")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn options_that_cannot_work_exit_2() {
    let program = workspace().join("corpus/semantics/cgroup_v2_tree.yaml");
    let program = program.to_str().unwrap();
    let out = cgstorm(&["run", program, "--memory", "1G", "--pmem", "1G"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--memory of at least"),
        "{}",
        stderr(&out)
    );
    let out = cgstorm(&["run", program, "--accel", "hvf"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_kernel_not_fetched_exits_3_and_says_what_to_do() {
    let program = workspace().join("corpus/semantics/cgroup_v2_tree.yaml");
    let program = program.to_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = cgstorm(&["run", program], &[("XDG_CACHE_HOME", empty.path())]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bash ci/setup.sh"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_kernel_that_is_not_there_is_bad_input_and_exits_2() {
    let program = workspace().join("corpus/semantics/cgroup_v2_tree.yaml");
    let program = program.to_str().unwrap();
    let out = cgstorm(&["run", program, "--kernel", "/nonexistent/bzImage"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/bzImage"),
        "{}",
        stderr(&out)
    );
}

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(':')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[test]
#[ignore = "boots a VM; run with --ignored"]
fn semantics_programs_pass_in_a_vm() {
    let accel = std::env::var("CGSTORM_ACCEL").unwrap_or_else(|_| "auto".into());
    let dir = tempfile::tempdir().unwrap();
    for kernel in list("CGSTORM_RUN_KERNELS", "debian") {
        for program in list(
            "CGSTORM_RUN_PROGRAMS",
            "corpus/semantics/cgroup_v2_tree.yaml",
        ) {
            let path = workspace().join(&program);
            let json = dir.path().join("run.json");
            let out = cgstorm(
                &[
                    "run",
                    path.to_str().unwrap(),
                    "--kernel",
                    &kernel,
                    "--accel",
                    &accel,
                    "--json",
                    json.to_str().unwrap(),
                ],
                &[],
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            println!("{kernel} {program}:\n{stdout}");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{kernel} {program}: {stdout}{}",
                stderr(&out)
            );
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            assert_eq!(v["verdict"], "pass");
            assert!(v["ops_total"].as_u64().unwrap() > 0, "{v}");
            assert!(v["findings"].as_array().unwrap().is_empty());
        }
    }
}
