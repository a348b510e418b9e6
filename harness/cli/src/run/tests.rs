//! The run loop against scripted VMs ([`FakeVm`]): agent frames and console
//! text in, verdict, findings and exit code out.

use std::time::Duration;

use cgstorm_proto::proto::{AgentMsg, HostMsg};
use cgstorm_vm::fake::FakeVm;
use cgstorm_vm::Diagnosis;
use cgstorm_workloads::model::{OpEvent, Snapshot, Target};
use cgstorm_workloads::{Errno, OpId, Outcome, Program};

use super::console::ConsoleWatch;
use super::json;
use super::limits::Limits;
use super::session::End;
use super::verdict::{Detail, OpNames, RunInfo, Verdict, MODEL_DIVERGENCE};
use super::{conclude, Conclusion};

const TREE: &str = "name: tree\nlanes:\n  - name: main\n    ops:\n      - mkdir: a\n      - mkdir: a\n      - rmdir: a\n";

fn program(yaml: &str) -> Program {
    Program::from_yaml("t.yaml", yaml).unwrap()
}

fn limits() -> Limits {
    let ms = Duration::from_millis;
    Limits {
        tcg: false,
        deadline: ms(5_000),
        stall: ms(100),
        stall_grace: ms(200),
        silence: ms(300),
        settle_quiet: ms(20),
        settle_max: ms(100),
        hang_settle_max: ms(100),
        shutdown: ms(200),
        poll: ms(5),
        keep_alive: false,
        reset_early: false,
        cover: crate::run::limits::Cover::Off,
        trace: false,
    }
}

fn ev(op: usize, outcome: Outcome, t: u64) -> OpEvent {
    OpEvent {
        id: OpId { lane: 0, op },
        outcome,
        start_ns: t,
        end_ns: t + 10,
        injected: false,
    }
}

fn root_only() -> Snapshot {
    let mut s = Snapshot::default();
    s.cgroups.insert("/".parse().unwrap(), Default::default());
    s
}

/// A VM whose agent runs TREE with these results for its three ops.
fn tree_vm(results: [Outcome; 3]) -> FakeVm {
    tree_vm_after(&[], results)
}

/// [`tree_vm`], the agent saying `before` first (watchdog messages).
fn tree_vm_after(before: &[AgentMsg], results: [Outcome; 3]) -> FakeVm {
    let mut vm = FakeVm::new().agent_says(&AgentMsg::Started { lanes: 1, steps: 1 });
    for m in before {
        vm = vm.agent_says(m);
    }
    vm.agent_says(&AgentMsg::Ops {
        events: vec![ev(0, results[0], 100), ev(1, results[1], 200)],
    })
    .agent_says(&AgentMsg::Ops {
        events: vec![ev(2, results[2], 300)],
    })
    .agent_says(&AgentMsg::Barrier {
        step: 0,
        snapshot: root_only(),
    })
    .agent_says(&AgentMsg::Finished {
        error: None,
        timing: Default::default(),
    })
    .agent_chunks(7)
    .powers_off_on_shutdown()
}

const GOOD: [Outcome; 3] = [Outcome::Ok, Outcome::Err(Errno::EEXIST), Outcome::Ok];

fn judge(vm: &mut FakeVm, yaml: &str) -> Conclusion {
    judge_with(vm, yaml, &|| false)
}

fn judge_with(vm: &mut FakeVm, yaml: &str, stop: &dyn Fn() -> bool) -> Conclusion {
    conclude(
        vm,
        &program(yaml),
        &Target::default(),
        Duration::from_secs(1),
        &limits(),
        stop,
        ConsoleWatch::new(None),
    )
}

#[test]
fn a_clean_run_passes_and_powers_off() {
    let mut vm = tree_vm(GOOD);
    let c = judge(&mut vm, TREE);
    assert_eq!(c.verdict, Verdict::Pass, "{:?}", c.findings);
    assert_eq!(c.verdict.exit_code(), 0);
    assert!(c.findings.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.outcome.end, End::Finished { error: None });
    assert!(c.outcome.vm_gone && !vm.killed);
    assert_eq!(c.outcome.trace.events(), 3);
    let sent = vm.host_messages();
    assert_eq!(sent.len(), 2);
    let HostMsg::Run(order) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(program(&order.program), program(TREE));
    assert_eq!((order.duration_ms, order.stall_ms), (1000, 100));
    assert_eq!(sent[1], HostMsg::Shutdown);
}

#[test]
fn a_wrong_errno_is_a_divergence_naming_the_op() {
    let mut vm = tree_vm([Outcome::Ok, Outcome::Ok, Outcome::Ok]);
    let c = judge(&mut vm, TREE);
    assert_eq!(c.verdict, Verdict::Finding);
    assert_eq!(c.verdict.exit_code(), 1);
    assert_eq!(c.findings.len(), 1);
    let f = &c.findings[0];
    assert_eq!(f.kind, MODEL_DIVERGENCE);
    let op = f.op.as_ref().unwrap();
    assert_eq!((op.lane, op.op, op.text.as_str()), (0, 1, "mkdir a"));
    assert_eq!(
        f.detail,
        Detail::Op {
            observed: "ok".into(),
            allowed: vec!["EEXIST".into()],
        }
    );
    assert_eq!(
        f.title,
        "lane 0 (main) op 1 `mkdir a` returned ok; the model allows EEXIST"
    );
}

#[test]
fn a_wrong_snapshot_is_a_state_divergence() {
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .agent_says(&AgentMsg::Ops {
            events: vec![ev(0, Outcome::Ok, 1)],
        })
        .agent_says(&AgentMsg::Barrier {
            step: 0,
            snapshot: root_only(),
        })
        .agent_says(&AgentMsg::Finished {
            error: None,
            timing: Default::default(),
        })
        .powers_off_on_shutdown();
    let c = judge(&mut vm, "lanes:\n  - {name: m, ops: [{mkdir: x}]}\n");
    assert_eq!(c.verdict, Verdict::Finding);
    let f = &c.findings[0];
    assert!(f.title.starts_with("the end state differs"), "{}", f.title);
    assert!(matches!(&f.detail, Detail::State { step: 0, differences }
        if differences.iter().any(|d| d.contains("cgroup x should exist"))));
}

/// The lockdep report of a golden log, after an op marker of lane 0 op 1.
fn lockdep_console() -> Vec<String> {
    let log = include_str!("../../../report/testdata/splat-abba-6.12.log");
    let lines: Vec<&str> = log.lines().skip_while(|l| !l.is_empty()).skip(1).collect();
    let at = lines
        .iter()
        .position(|l| l.contains("possible circular locking"))
        .unwrap();
    let mut out: Vec<String> = lines[..at - 2].iter().map(|l| l.to_string()).collect();
    out.push("[   20.800000][    T1] cgstorm: lane 0 op 1 mkdir a".into());
    out.extend(lines[at - 2..].iter().map(|l| l.to_string()));
    out
}

#[test]
fn a_lockdep_report_is_a_finding_tied_to_the_marker() {
    let console = lockdep_console();
    let mut vm = tree_vm(GOOD).console_lines(console.iter().map(String::as_str));
    let c = judge(&mut vm, TREE);
    assert_eq!(c.verdict, Verdict::Finding);
    assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
    let f = &c.findings[0];
    assert_eq!(f.kind, "lockdep");
    assert_eq!(f.title, "possible deadlock in splat_abba");
    let op = f.op.as_ref().unwrap();
    assert_eq!((op.lane, op.op, op.text.as_str()), (0, 1, "mkdir a"));
    assert!(
        matches!(&f.detail, Detail::Report { corrupted: false, text, .. } if text.contains("lock_a"))
    );
}

#[test]
fn a_silent_agent_is_a_hang_and_gets_sysrq() {
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .agent_says(&AgentMsg::Ops {
            events: vec![ev(0, Outcome::Ok, 1)],
        });
    let c = judge(&mut vm, TREE);
    assert!(
        matches!(&c.outcome.end, End::Hang { stall: None, reason } if reason.contains("sent nothing"))
    );
    assert_eq!(c.verdict, Verdict::Finding);
    assert_eq!(c.findings.len(), 1);
    assert_eq!(c.findings[0].kind, "agent-hang");
    assert_eq!(vm.diagnoses, [Diagnosis::Sysrq('w'), Diagnosis::Sysrq('t')]);
    assert!(!c.outcome.vm_gone, "the caller kills the vm after saving");
    assert!(c.warnings.iter().any(|w| w.contains("not checked")));
}

#[test]
fn a_stalled_lane_is_a_hang_naming_the_op() {
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .agent_says(&AgentMsg::Ops {
            events: vec![ev(0, Outcome::Ok, 1)],
        })
        .agent_says(&AgentMsg::Stall {
            op: OpId { lane: 0, op: 1 },
            text: "mkdir a".into(),
            stalled_ms: 100,
        });
    let c = judge(&mut vm, TREE);
    assert!(matches!(c.outcome.end, End::Hang { stall: Some(_), .. }));
    let f = &c.findings[0];
    assert_eq!(f.kind, "agent-hang");
    assert_eq!(f.title, "agent hang in lane 0 (main) op 1 `mkdir a`");
    assert!(
        vm.diagnoses.is_empty(),
        "the agent's watchdog already dumped"
    );
}

#[test]
fn a_stall_that_resolves_is_only_a_warning() {
    let mut vm = tree_vm_after(
        &[AgentMsg::Stall {
            op: OpId { lane: 0, op: 0 },
            text: "mkdir a".into(),
            stalled_ms: 100,
        }],
        GOOD,
    );
    let c = judge(&mut vm, TREE);
    assert_eq!(c.verdict, Verdict::Pass);
    assert!(
        c.warnings.iter().any(|w| w.contains("watchdog")),
        "{:?}",
        c.warnings
    );
}

/// An op the agent says is working (its I/O growing past half the stall
/// limit) is heard, said once in the warnings, and is no finding.
#[test]
fn a_working_op_is_said_once_and_is_no_finding() {
    let working = AgentMsg::Working {
        op: OpId { lane: 0, op: 1 },
        text: "write f".into(),
        ms: 30_000,
    };
    let mut vm = tree_vm_after(&[working.clone(), working], GOOD);
    let c = judge(&mut vm, TREE);
    assert_eq!(c.verdict, Verdict::Pass, "{:?}", c.findings);
    let said: Vec<_> = c
        .warnings
        .iter()
        .filter(|w| w.contains("lane 0 op 1 `write f` ran past 30000 ms"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", c.warnings);
    assert!(!c.warnings.iter().any(|w| w.contains("does not belong")));
}

#[test]
fn a_vm_that_panics_mid_run_is_a_finding() {
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .agent_says(&AgentMsg::Ops {
            events: vec![ev(0, Outcome::Ok, 1)],
        })
        .console_lines([
            "[    5.0] cgstorm: lane 0 op 1 mkdir a",
            "[    5.1] Kernel panic - not syncing: Fatal exception",
        ])
        .exits("exit code 0");
    let c = judge(&mut vm, TREE);
    assert!(matches!(c.outcome.end, End::VmExited { .. }));
    assert_eq!(c.verdict, Verdict::Finding);
    assert_eq!(c.verdict.exit_code(), 1);
    assert_eq!(c.findings[0].kind, "panic");
    assert_eq!(c.findings[0].op.as_ref().unwrap().op, 1);
    assert_eq!(c.outcome.trace.events(), 1);
}

#[test]
fn a_vm_that_exits_without_a_report_is_an_error() {
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .exits("killed by signal 9");
    let c = judge(&mut vm, TREE);
    assert!(matches!(&c.verdict, Verdict::Error(e) if e.contains("killed by signal 9")));
    assert_eq!(c.verdict.exit_code(), 3);
}

#[test]
fn an_interrupted_run_is_an_error() {
    let mut vm = tree_vm(GOOD);
    let c = judge_with(&mut vm, TREE, &|| true);
    assert_eq!(c.outcome.end, End::Interrupted);
    assert_eq!(c.verdict, Verdict::Error("interrupted".into()));
    assert!(!c.outcome.vm_gone);
}

#[test]
fn a_trace_the_model_cannot_check_passes_with_a_warning() {
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .agent_says(&AgentMsg::Ops {
            events: vec![ev(9, Outcome::Ok, 1)],
        })
        .agent_says(&AgentMsg::Finished {
            error: None,
            timing: Default::default(),
        })
        .powers_off_on_shutdown();
    let c = judge(&mut vm, TREE);
    assert_eq!(c.verdict, Verdict::Pass);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("the model could not check this run")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn an_agent_that_dies_says_why_from_the_console() {
    let mut vm = FakeVm::new()
        .console_lines(["[    2.0] cgstorm: fatal: mkdir /cgstorm/mnt: Read-only file system"])
        .exits("exit code 255");
    let c = judge(&mut vm, TREE);
    assert_eq!(
        c.verdict,
        Verdict::Error("the agent failed: mkdir /cgstorm/mnt: Read-only file system".into())
    );
}

#[test]
fn agent_fatal_and_early_finish_are_errors() {
    let mut vm = FakeVm::new().agent_says(&AgentMsg::Fatal {
        message: "program does not parse".into(),
    });
    let c = judge(&mut vm, TREE);
    assert!(matches!(&c.verdict, Verdict::Error(e) if e.contains("does not parse")));
    let mut vm = FakeVm::new()
        .agent_says(&AgentMsg::Started { lanes: 1, steps: 1 })
        .agent_says(&AgentMsg::Finished {
            error: Some("fork: EAGAIN".into()),
            timing: Default::default(),
        })
        .powers_off_on_shutdown();
    let c = judge(&mut vm, TREE);
    assert!(matches!(&c.verdict, Verdict::Error(e) if e.contains("fork: EAGAIN")));
}

#[test]
fn json_has_verdict_ops_counts_and_findings() {
    let mut vm = tree_vm([Outcome::Ok, Outcome::Ok, Outcome::Ok]);
    let p = program(TREE);
    let c = judge(&mut vm, TREE);
    let info = RunInfo {
        program: "t.yaml".into(),
        kernel_release: "6.1.0-56-cloud-amd64".into(),
        accel: "tcg".into(),
        backend: "qemu".into(),
        boot: Duration::from_secs(20),
        duration: Duration::from_secs(1),
    };
    let names = OpNames::new(&p);
    let target = Target::default();
    let v = serde_json::to_value(json::build(&json::Parts {
        info: &info,
        verdict: &c.verdict,
        target: &target,
        outcome: &c.outcome,
        model: &c.model,
        findings: &c.findings,
        warnings: &c.warnings,
        names: &names,
        console_log: None,
        rates: &c.rates,
    }))
    .unwrap();
    assert_eq!(v["verdict"], "finding");
    assert_eq!(v["kernel_release"], "6.1.0-56-cloud-amd64");
    assert_eq!(v["accelerator"], "tcg");
    assert_eq!(v["ops_total"], 3);
    assert_eq!(v["ops_truncated"], false);
    assert_eq!(v["ops"][1]["text"], "mkdir a");
    assert_eq!(v["ops"][1]["outcome"], "ok");
    assert_eq!(v["ops"][1]["start_ns"], 200);
    assert_eq!(v["op_counts"][0]["runs"], 1);
    assert_eq!(v["op_counts"][0]["outcomes"]["ok"], 1);
    assert_eq!(v["findings"][0]["kind"], "model-divergence");
    assert_eq!(v["findings"][0]["op"]["op"], 1);
    assert_eq!(v["findings"][0]["allowed"][0], "EEXIST");
    assert_eq!(v["barriers"][0]["step"], 0);
    assert_eq!(v["end"], "finished");
    assert_eq!(v["findings"][0]["known"], false);
    assert_eq!(v["op_rates"][0]["kind"], "mkdir");
    assert_eq!(v["op_rates"][0]["runs"], 2);
}

/// [`TREE`] run with the guest kept up (as campaigns do), `console` on its
/// console; the conclusion and how many resets the host asked for.
fn kept(console: &[&str], reset_early: bool) -> (Conclusion, usize) {
    let mut vm = tree_vm(GOOD).console_lines(console.iter().copied());
    let l = Limits {
        keep_alive: true,
        reset_early,
        ..limits()
    };
    let c = conclude(
        &mut vm,
        &program(TREE),
        &Target::default(),
        Duration::from_secs(1),
        &l,
        &|| false,
        ConsoleWatch::new(None),
    );
    let resets = vm
        .host_messages()
        .iter()
        .filter(|m| **m == HostMsg::Reset)
        .count();
    (c, resets)
}

/// A campaign keeps the guest up after a program and reads the console up
/// to the agent's end line; a line read while the run was still going
/// counts (the console may bring it before the agent's Finished frame).
#[test]
fn a_kept_guest_is_read_up_to_the_agent_end_line_wherever_it_came() {
    let keep = |console: &[&str]| kept(console, false).0;
    let c = keep(&["[    1.000000] cgstorm: program done"]);
    assert_eq!(c.verdict, Verdict::Pass, "{:?}", c.findings);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!c.outcome.vm_gone);
    // Without it the wait is bounded and said.
    let c = keep(&["[    1.000000] some other line"]);
    assert!(
        c.warnings.iter().any(|w| w.contains("did not show")),
        "{:?}",
        c.warnings
    );
}

/// A campaign asks for the reset as soon as a clean program's end line is
/// on the console, so the guest resets while the host checks; not when the
/// console shows a report (the VM is dropped then, and a reset of a kernel
/// that printed one may hang).
#[test]
fn a_kept_guest_is_reset_early_only_after_a_clean_console() {
    let run = |console: &[&str]| kept(console, true);
    let (c, resets) = run(&["[    1.000000] cgstorm: program done"]);
    assert!(c.outcome.reset_sent);
    assert_eq!(resets, 1);
    let (c, resets) = run(&[
        "[    0.900000] ------------[ cut here ]------------",
        "[    0.900001] WARNING: CPU: 0 PID: 1 at fs/inode.c:1 evict+0x10/0x20",
        "[    0.900002] Call Trace:",
        "[    0.900003]  evict+0x10/0x20",
        "[    0.900004] ---[ end trace 0000000000000000 ]---",
        "[    1.000000] cgstorm: program done",
    ]);
    assert!(!c.outcome.reset_sent);
    assert_eq!(resets, 0);
    assert!(
        c.findings.iter().any(|f| f.title == "WARNING in evict"),
        "{:?}",
        c.findings
    );
}

/// A hello of a 6.12 guest with io, memory and pids, and `config` as its
/// /proc/config.gz.
pub(crate) fn hello_with(config: Option<&str>) -> cgstorm_proto::proto::Hello {
    cgstorm_proto::proto::Hello {
        proto: cgstorm_proto::proto::PROTO_VERSION,
        token: cgstorm_proto::cmdline::Token::parse("0123456789abcdef").unwrap(),
        kernel_release: "6.12.117".into(),
        kernel_version: "#1".into(),
        pid1: true,
        uptime_ms: 1,
        modules: Vec::new(),
        devices: Vec::new(),
        missing_devices: Vec::new(),
        warnings: Vec::new(),
        features: Some(cgstorm_proto::proto::Features {
            controllers: ["io", "memory", "pids"].map(String::from).to_vec(),
            config: config.map(String::from),
            ..Default::default()
        }),
    }
}

fn found(config: Option<&str>) -> cgstorm_vm::kconfig::FoundKernel {
    cgstorm_vm::kconfig::FoundKernel {
        kernel: cgstorm_vm::kernel::Kernel {
            image: "/k/bzImage".into(),
            release: "6.12.117".into(),
            modules: None,
            package: None,
        },
        config: config.map(|c| ("/k/config".into(), cgstorm_vm::kconfig::KConfig::parse(c))),
    }
}

/// A bzImage alone, booted with /proc/config.gz: the model takes the
/// options the probe does not try from the kernel's own config; a config
/// file beside the image that disagrees is said, and the booted kernel's
/// wins.
#[test]
fn the_booted_kernels_config_gz_stands_in_for_a_missing_file() {
    let gz = "CONFIG_MEMCG=y\nCONFIG_MEMCG_V1=y\nCONFIG_CGROUP_PIDS=y\nCONFIG_BLK_CGROUP=y\n\
              # CONFIG_FS_DAX is not set\nCONFIG_CGROUP_WRITEBACK=y\nCONFIG_SWAP=y\n";
    let mut warnings = Vec::new();
    let k = super::kernel_model(
        &hello_with(Some(gz)),
        &found(None),
        (false, false),
        &mut warnings,
    )
    .unwrap();
    assert!(
        !k.fs_dax && !k.blk_throttling && k.cgroup_writeback && k.memcg_v1,
        "{k:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");

    let file = gz.replace("# CONFIG_FS_DAX is not set", "CONFIG_FS_DAX=y");
    let mut warnings = Vec::new();
    let k = super::kernel_model(
        &hello_with(Some(gz)),
        &found(Some(&file)),
        (false, false),
        &mut warnings,
    )
    .unwrap();
    assert!(!k.fs_dax, "the booted kernel's config decides");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("/k/config says CONFIG_FS_DAX=y; the booted kernel's")),
        "{warnings:?}"
    );

    // Without config.gz the file is all there is.
    let mut warnings = Vec::new();
    let k = super::kernel_model(
        &hello_with(None),
        &found(Some(&file)),
        (false, false),
        &mut warnings,
    )
    .unwrap();
    assert!(k.fs_dax, "{warnings:?}");
}

fn report(kind: cgstorm_report::Kind, title: &str) -> cgstorm_report::Report {
    cgstorm_report::Report {
        kind,
        title: title.into(),
        corrupted: false,
        text: format!("{title}\n"),
        first_line: 0,
        marker: None,
    }
}

/// The findings of a one-op program whose run printed `reports` and ended
/// with the agent hung, its results explained by the model.
fn ending_in_a_hang(reports: &[cgstorm_report::Report]) -> Vec<super::verdict::Finding> {
    let p = Program::from_yaml("t", "lanes:\n  - {name: a, ops: [{mkdir: a}]}\n").unwrap();
    let end = End::Hang {
        reason: "no result for 60 s".into(),
        stall: None,
    };
    let model = super::verdict::ModelCheck::Explained { steps: 1 };
    super::verdict::findings(&OpNames::new(&p), 1, &model, reports, &end, false)
}

/// One bug, one finding: after a corrupting report (busy inodes after
/// unmount, a GPF, KASAN, BUG) the reports that follow and the hang they
/// end in are its consequence and fold into it; a WARNING before it stands
/// alone.
#[test]
fn reports_after_a_corrupting_one_fold_into_it() {
    use cgstorm_report::Kind;
    let reports = [
        report(Kind::Warning, "WARNING in evict"),
        report(Kind::BusyInodes, "VFS: Busy inodes after unmount of ext4"),
        report(Kind::Gpf, "general protection fault in cgwb_release_workfn"),
        report(
            Kind::Kasan,
            "KASAN: use-after-free Read in inode_switch_wbs_work_fn",
        ),
    ];
    let f = ending_in_a_hang(&reports);
    let titles: Vec<&str> = f.iter().map(|f| f.title.as_str()).collect();
    assert_eq!(
        titles,
        ["WARNING in evict", "VFS: Busy inodes after unmount of ext4"]
    );
    let Detail::Report { folded, text, .. } = &f[1].detail else {
        panic!("{:?}", f[1]);
    };
    assert_eq!(
        folded,
        &[
            "general protection fault in cgwb_release_workfn",
            "KASAN: use-after-free Read in inode_switch_wbs_work_fn",
            "agent hang: no result for 60 s",
        ]
    );
    assert!(text.contains("folded into this report as its consequence: general protection"));
    // Without a corrupting report nothing folds.
    let f = ending_in_a_hang(&reports[..1]);
    assert_eq!(f.len(), 2, "{f:?}");
}

/// One stall, one finding: a CPU stuck in a write makes the RCU stall, the
/// hung tasks behind it and the agent's hang; they fold into the first
/// stall. A WARNING among them is no stall and stands on its own (seen in a
/// Debian soak: one soft lockup had been five findings).
#[test]
fn stalls_after_a_stall_fold_into_it() {
    use cgstorm_report::Kind;
    let reports = [
        report(
            Kind::SoftLockup,
            "BUG: soft lockup in generic_file_write_iter",
        ),
        report(Kind::SoftLockup, "BUG: soft lockup in sys_openat2"),
        report(Kind::Warning, "WARNING in evict"),
        report(
            Kind::RcuStall,
            "INFO: rcu detected stall in generic_file_write_iter",
        ),
        report(Kind::HungTask, "INFO: task hung in __lru_add_drain_all"),
    ];
    let f = ending_in_a_hang(&reports);
    let titles: Vec<&str> = f.iter().map(|f| f.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "BUG: soft lockup in generic_file_write_iter",
            "WARNING in evict"
        ]
    );
    let Detail::Report { folded, .. } = &f[0].detail else {
        panic!("{:?}", f[0]);
    };
    assert_eq!(
        folded,
        &[
            "BUG: soft lockup in sys_openat2",
            "INFO: rcu detected stall in generic_file_write_iter",
            "INFO: task hung in __lru_add_drain_all",
            "agent hang: no result for 60 s",
        ]
    );
    // A hang with no stall before it is its own finding.
    let f = ending_in_a_hang(&reports[2..3]);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[1].kind, Kind::AgentHang.to_string());
}

/// A stall whose vCPUs sit on a patched NOP under TCG is a stale breakpoint
/// looping (see `mark_breakpoint_loops`): the whole stall (hung task, RCU
/// stall, soft lockups, folded into one) is kept as a known `tcg-artifact`.
/// Real lockups (the test module's spins, at `pause`) stay kernel findings.
#[test]
fn a_stall_on_a_patched_nop_under_tcg_is_the_emulators() {
    let p = Program::from_yaml("t", "lanes:\n  - {name: a, ops: [{mkdir: a}]}\n").unwrap();
    let names = OpNames::new(&p);
    let model = super::verdict::ModelCheck::Explained { steps: 1 };
    let end = End::Finished { error: None };
    let run = |log: &str, tcg| {
        super::verdict::findings(&names, 1, &model, &cgstorm_report::parse(log), &end, tcg)
    };
    // At the NOP's start, three samples: the rewind of 6.1's int3 handler.
    let log = include_str!("../../../report/testdata/cgstorm-soak-breakpoint-loop-6.1.log");
    let f = run(log, true);
    assert_eq!(f.len(), 1, "one stall, one finding: {f:?}");
    assert_eq!(f[0].kind, super::verdict::TCG_ARTIFACT);
    assert!(f[0].known);
    assert_eq!(
        f[0].title,
        "INFO: task hung in __lru_add_drain_all (a vCPU looping on a stale breakpoint under TCG)"
    );
    assert_eq!(Verdict::of(&f, &end), Verdict::Pass);
    // The same when the agent hung behind the stall and its hang folded in
    // (a Debian fuzz of session 11 stored such a stall as a kernel finding:
    // the fold of the hang returned before the marking).
    let hang = End::Hang {
        reason: "no result for 60 s".into(),
        stall: None,
    };
    let f = super::verdict::findings(&names, 1, &model, &cgstorm_report::parse(log), &hang, true);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, super::verdict::TCG_ARTIFACT, "{}", f[0].title);
    let f = run(log, false);
    assert_eq!(f[0].kind, "hung-task", "not under TCG: a kernel finding");
    // Only one sample at the NOP's start, in soft lockups that came when a
    // running CPU's watchdog reports: not enough to call it a loop.
    let rip = "RIP: 0010:__inode_attach_wb+0x21";
    let first = log.find(rip).unwrap() + rip.len();
    let once = format!(
        "{}{}",
        &log[..first],
        log[first..]
            .replacen(rip, "RIP: 0010:elsewhere+0x1", 1)
            .replace(rip, "RIP: 0010:elsewhere+0x2")
            .replace("stuck for 79s!", "stuck for 64s!")
            .replace("stuck for 134s!", "stuck for 66s!")
    );
    assert_eq!(run(&once, true)[0].kind, "hung-task");
    // One sample at a NOP's start in a first soft lockup of 134 s: the CPU
    // took no timer interrupt for that long (a Debian fuzz, session 15).
    let late = include_str!("../../../report/testdata/cgstorm-fuzz-soft-lockup-on-a-nop-6.1.log");
    let f = run(late, true);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].kind, super::verdict::TCG_ARTIFACT, "{}", f[0].title);
    assert_eq!(run(late, false)[0].kind, "soft-lockup", "not under TCG");
    let early = late.replace("stuck for 134s!", "stuck for 64s!");
    assert_eq!(
        run(&early, true)[0].kind,
        "soft-lockup",
        "an on-time report"
    );
    // Inside a NOP (`0f <1f> 44 00 00`: just trapped), one sample is enough.
    let log = include_str!("../../../report/testdata/cgstorm-soak-vm-stall-6.1.log");
    let f = run(log, true);
    assert!(
        f.iter().all(|f| f.kind == super::verdict::TCG_ARTIFACT),
        "{:?}",
        f.iter().map(|f| (&f.kind, &f.title)).collect::<Vec<_>>()
    );
    for log in [
        include_str!("../../../report/testdata/splat-soft-6.12.log"),
        include_str!("../../../report/testdata/splat-rcu-6.12.log"),
    ] {
        let f = run(log, true);
        assert!(!f.is_empty() && f.iter().all(|f| !f.known), "{f:?}");
    }
}

/// An int3 oops whose breakpoint byte is gone from memory (the byte before
/// RIP in `Code:` is not `cc`) is TCG's stale translation of code being
/// patched: kept as a known `tcg-artifact`, not a kernel finding. One whose
/// `cc` is still there stays a bug.
#[test]
fn a_stale_int3_under_tcg_is_marked_as_the_emulators() {
    let log = include_str!("../../../report/testdata/cgstorm-repro-int3-6.12-debug.log");
    let reports = cgstorm_report::parse(log);
    let p = Program::from_yaml("t", "lanes:\n  - {name: a, ops: [{mkdir: a}]}\n").unwrap();
    let names = OpNames::new(&p);
    let model = super::verdict::ModelCheck::Explained { steps: 1 };
    let end = End::Finished { error: None };
    let f = super::verdict::findings(&names, 1, &model, &reports, &end, false);
    assert_eq!(f[0].title, "int3 in __alloc_pages_noprof");
    assert_eq!(f[0].kind, "bug", "not under TCG: a kernel finding");
    let f = super::verdict::findings(&names, 1, &model, &reports, &end, true);
    assert_eq!(f[0].kind, super::verdict::TCG_ARTIFACT);
    assert_eq!(
        f[0].title,
        "int3 in __alloc_pages_noprof (a stale breakpoint under TCG)"
    );
    assert!(f[0].known);
    assert_eq!(Verdict::of(&f, &end), Verdict::Pass);
    // The breakpoint still in memory: a real unhandled int3.
    let live = log.replace("00 66 <90> 41", "00 cc <90> 41");
    let f = super::verdict::findings(&names, 1, &model, &cgstorm_report::parse(&live), &end, true);
    assert_eq!(f[0].kind, "bug");
    assert!(!f[0].known);
    // The one a debug-kernel fuzz met in the reset.
    let log = include_str!("../../../report/testdata/cgstorm-fuzz-stale-int3-6.12-debug.log");
    let f = super::verdict::findings(&names, 1, &model, &cgstorm_report::parse(log), &end, true);
    assert_eq!(f[0].kind, super::verdict::TCG_ARTIFACT, "{:?}", f[0].title);
}
