//! Runs the agent binary on the host, which is not PID 1, has no virtme-ng
//! marker and no `cgstorm.token=` on its command line: the guard must refuse
//! with exit code 3 before touching anything.

use std::process::Command;

#[test]
fn agent_refuses_to_run_on_the_host() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    assert!(
        !cmdline.contains("cgstorm.token=") && !cmdline.contains("virtme_"),
        "this test must run on a host, not inside a cgstorm or virtme-ng guest"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cgstorm-agent"))
        .output()
        .expect("run cgstorm-agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("refusing to run"), "stderr: {stderr}");
    assert!(stderr.contains("not 1"), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
}
