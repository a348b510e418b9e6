//! VM stalls in the recorded consoles: the soak's (both vCPUs reported a
//! first soft lockup of 134 s at once) is one; no other log is, the real
//! soft lockups of the 6.12 debug kernel included (a CPU stuck for 26 s,
//! then 52 s, … 246 s: its watchdog timer kept running).

use std::fs;
use std::path::Path;

use cgstorm_report::{parse, retitle, vm_stall, Kind, VmStall};

fn testdata() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

#[test]
fn the_soak_console_is_a_vm_stall_and_its_soft_lockup_says_so() {
    let text = String::from_utf8_lossy(
        &fs::read(testdata().join("cgstorm-soak-vm-stall-6.1.log")).unwrap(),
    )
    .into_owned();
    let stall = vm_stall(&text);
    assert_eq!(stall, Some(VmStall { cpus: 2, secs: 134 }));
    let mut reports = parse(&text);
    retitle(&mut reports, stall.as_ref());
    let soft: Vec<&str> = reports
        .iter()
        .filter(|r| r.kind == Kind::SoftLockup)
        .map(|r| r.title.as_str())
        .collect();
    // Each vCPU's report names where its task was (a cgroup write, an
    // openat), so both stand and both are marked.
    assert_eq!(
        soft,
        [
            "BUG: soft lockup on every vCPU at once in cgroup_subtree_control_write (a VM stall?)",
            "BUG: soft lockup on every vCPU at once in sys_openat2 (a VM stall?)",
        ]
    );
    // The RCU stall it caused keeps its title.
    assert!(reports
        .iter()
        .any(|r| r.title == "INFO: rcu detected stall in rcu_gp_fqs_loop"));
}

#[test]
fn no_other_recorded_console_is_a_vm_stall() {
    let mut seen = 0;
    for e in fs::read_dir(testdata()).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".log") || name == "cgstorm-soak-vm-stall-6.1.log" {
            continue;
        }
        let text = String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned();
        assert_eq!(vm_stall(&text), None, "{name}");
        seen += 1;
    }
    assert!(seen > 20, "only {seen} logs");
    let real = fs::read(testdata().join("splat-recursive-6.12.log")).unwrap();
    let real = String::from_utf8_lossy(&real);
    assert!(real.contains("soft lockup - CPU#0 stuck for 246s!"));
}
