//! The campaign loop ([`Campaign::run`]) against scripted guests: VMs that
//! boot at once ([`Env::starter`]) and whose agent answers every order the
//! loop sends ([`FakeVm::answering`]). What is checked is the loop's own
//! work: programs run one after another in one VM, findings stored with
//! their program, the VM replaced after a report, counters kept, and a
//! campaign in which nothing could run failing.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cgstorm_proto::proto::{AgentMsg, HostMsg};
use cgstorm_vm::fake::{FakeVm, Said};
use cgstorm_vm::kconfig::FoundKernel;
use cgstorm_vm::machine::{Backend, MachineOpts};
use cgstorm_vm::{AccelChoice, AgentVm, Vm};
use cgstorm_workloads::model::{OpEvent, Snapshot};
use cgstorm_workloads::{OpId, Outcome, Program};

use super::engine::{Campaign, Pick, Source};
use super::Env;
use crate::run::error::RunError;
use crate::run::tests::hello_with;
use crate::vm_args::VmArgs;

/// The one program the source hands out: two ops, both ok on any kernel.
const PROGRAM: &str =
    "name: pair\nlanes:\n  - name: main\n    ops:\n      - mkdir: a\n      - rmdir: a\n";

/// A kernel WARNING as the console prints it.
const WARNING: [&str; 5] = [
    "[    1.000000] ------------[ cut here ]------------",
    "[    1.000001] WARNING: CPU: 0 PID: 1 at fs/inode.c:1 evict+0x10/0x20",
    "[    1.000002] Call Trace:",
    "[    1.000003]  evict+0x10/0x20",
    "[    1.000004] ---[ end trace 0000000000000000 ]---",
];

/// Hands out [`PROGRAM`] `n` times, then is exhausted.
struct Pairs(Mutex<usize>);

impl Source for Pairs {
    fn next(&self, _: &Campaign, _: usize) -> Option<Pick> {
        let mut left = self.0.lock().unwrap();
        *left = left.checked_sub(1)?;
        Some(Pick {
            program: Program::from_yaml("pair.yaml", PROGRAM).unwrap(),
            duration: Duration::from_millis(10),
            part: "fuzz".into(),
            keep: true,
            env: 0,
        })
    }
}

/// What the scripted guest does at the campaign's n-th program (counted
/// over all its VMs, from 0).
#[derive(Clone, Default)]
struct Script {
    /// Programs whose run the console interrupts with [`WARNING`].
    warn_at: Vec<usize>,
    /// Programs whose reset leaves these leftovers.
    leave_at: Vec<(usize, String)>,
    /// The kernel edges every run from the n-th on shows, when the host
    /// asks for coverage.
    edges: Option<(usize, Vec<u32>)>,
    /// The kernel PCs the runs show: from the n-th on, those of the last
    /// entry whose n has come.
    pcs: Vec<(usize, Vec<u32>)>,
    /// The kernel has kmemleak, and a scan after these programs prints a
    /// leaked object.
    kmemleak: Option<Vec<usize>>,
    /// Leak scans the host asked for.
    scans: Arc<AtomicUsize>,
}

/// A leaked object as the agent prints kmemleak's record to the console.
const LEAKED: [&str; 7] = [
    "[    2.000000] BUG: memory leak",
    "[    2.000001] unreferenced object 0xffff888104a1c400 (size 512):",
    "[    2.000002]   comm \"cgstorm-agent\", pid 231, jiffies 4294893810",
    "[    2.000003]   backtrace (crc 5f2c1a3b):",
    "[    2.000004]     kmalloc_trace_noprof+0x25/0x40",
    "[    2.000005]     mem_cgroup_css_alloc+0x6a/0x7a0",
    "[    2.000006]     cgroup_apply_control_enable+0x1f4/0x3b0",
];

/// A booted guest that runs [`PROGRAM`] as a correct kernel would, and
/// does what `script` says; `programs` counts the runs over all its VMs.
fn guest(script: Script, programs: Arc<AtomicUsize>) -> FakeVm {
    let mut clock = 1_000u64;
    let mut current = 0;
    FakeVm::new().powers_off_on_shutdown().answering(move |m| {
        let mut said = Vec::new();
        match m {
            HostMsg::Run(order) => {
                current = programs.fetch_add(1, Ordering::SeqCst);
                let mut ev = |op| {
                    clock += 100;
                    OpEvent {
                        id: OpId { lane: 0, op },
                        outcome: Outcome::Ok,
                        start_ns: clock,
                        end_ns: clock + 10,
                        injected: false,
                    }
                };
                let events = vec![ev(0), ev(1)];
                let mut snapshot = Snapshot::default();
                snapshot
                    .cgroups
                    .insert("/".parse().unwrap(), Default::default());
                said.push(Said::Agent(AgentMsg::Started { lanes: 1, steps: 1 }));
                if script.warn_at.contains(&current) {
                    said.extend(WARNING.iter().map(|l| Said::Console(l.to_string())));
                }
                said.extend([
                    Said::Agent(AgentMsg::Ops { events }),
                    Said::Agent(AgentMsg::Barrier { step: 0, snapshot }),
                ]);
                if order.cover {
                    let edges = match &script.edges {
                        Some((from, edges)) if current >= *from => edges.clone(),
                        _ => Vec::new(),
                    };
                    let pcs = script
                        .pcs
                        .iter()
                        .rev()
                        .find(|(from, _)| current >= *from)
                        .map(|(_, pcs)| pcs.clone())
                        .unwrap_or_default();
                    said.push(Said::Agent(AgentMsg::Cover {
                        edges,
                        pcs,
                        error: None,
                    }));
                }
                said.extend([
                    Said::Console("[    1.100000] cgstorm: program done".into()),
                    Said::Agent(AgentMsg::Finished {
                        error: None,
                        timing: Default::default(),
                    }),
                ]);
            }
            HostMsg::LeakScan => {
                script.scans.fetch_add(1, Ordering::SeqCst);
                let leaks = script
                    .kmemleak
                    .as_ref()
                    .is_some_and(|at| at.contains(&current));
                if leaks {
                    said.extend(LEAKED.iter().map(|l| Said::Console(l.to_string())));
                }
                said.push(Said::Console(format!(
                    "[    2.100000] {}",
                    cgstorm_proto::contract::LEAK_SCAN_LINE
                )));
                said.push(Said::Agent(AgentMsg::LeakScanned {
                    printed: usize::from(leaks),
                    error: None,
                }));
            }
            HostMsg::Symbols => said.push(Said::Agent(AgentMsg::Symbols {
                text: SYMBOLS.into(),
                error: None,
            })),
            HostMsg::Reset => {
                let leftovers = script
                    .leave_at
                    .iter()
                    .filter(|(n, _)| *n == current)
                    .map(|(_, l)| l.clone())
                    .collect();
                said.push(Said::Agent(AgentMsg::ResetDone {
                    leftovers,
                    laps: Vec::new(),
                }));
            }
            _ => {}
        }
        said
    })
}

/// The scripted kernel's text: `cgroup_mkdir` at 0x1000, `ext4_write_begin` at 0x2000.
const SYMBOLS: &str = "00001000 cgroup_mkdir\n00002000 ext4_write_begin\n00003000 _etext\n";

fn never() -> bool {
    false
}

/// A campaign environment whose VMs `start` gives.
fn env(start: super::Starter) -> Env {
    Env {
        kernel: FoundKernel {
            kernel: cgstorm_vm::kernel::Kernel {
                image: "/k/bzImage".into(),
                release: "6.12.117".into(),
                modules: None,
                package: None,
            },
            config: None,
        },
        vm: VmArgs::default(),
        agent: "/a/agent".into(),
        machine: MachineOpts::default(),
        backend: Backend::Qemu,
        accel: AccelChoice::Tcg,
        switches: (false, false),
        stop: never,
        starter: Some(start),
    }
}

/// Runs `n` programs with one job on guests that follow `script`; the
/// campaign afterwards and how many VMs were started.
fn campaign(dir: &Path, n: usize, script: Script) -> (Campaign, usize) {
    guided(dir, n, script, false)
}

/// Boots guests that follow `script` on a kernel with KCOV, after
/// `failing` boots that do not come up; the boots tried are counted.
fn scripted(script: Script, failing: usize) -> (super::Starter, Arc<AtomicUsize>) {
    let boots = Arc::new(AtomicUsize::new(0));
    let programs = Arc::new(AtomicUsize::new(0));
    let b = boots.clone();
    let start: super::Starter = Arc::new(move |console: &Path| {
        if b.fetch_add(1, Ordering::SeqCst) < failing {
            return Err(RunError::Guest("the kernel did not come up".into()));
        }
        let vm = guest(script.clone(), programs.clone())
            .console_log(console)
            .map_err(|e| RunError::Guest(e.to_string()))?;
        let vm: Box<dyn Vm + Send> = Box::new(vm);
        let mut hello = hello_with(None);
        if let Some(f) = hello.features.as_mut() {
            f.kcov = true;
            f.kmemleak = script.kmemleak.is_some();
        }
        Ok(AgentVm::scripted(vm, hello))
    });
    (start, boots)
}

/// A 10-minute campaign in `dir` on guests `start` boots.
fn open(dir: &Path, start: super::Starter) -> Campaign {
    Campaign::open(vec![env(start)], dir, "fuzz.json", Duration::from_secs(600)).unwrap()
}

/// [`campaign`], with coverage feedback on or off, on a kernel with KCOV.
fn guided(dir: &Path, n: usize, script: Script, feedback: bool) -> (Campaign, usize) {
    let (start, boots) = scripted(script, 0);
    let mut c = open(dir, start);
    c.cover_feedback = feedback;
    c.run(1, &Pairs(Mutex::new(n)), Duration::from_secs(3600));
    let boots = boots.load(Ordering::SeqCst);
    (c, boots)
}

/// `--no-kcov`: no run asks for coverage, even on a kernel with KCOV (the
/// default asks every run); cgstorm's CPU time is counted either way.
#[test]
fn without_kcov_no_run_asks_for_coverage() {
    for kcov in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let script = Script {
            edges: Some((0, vec![1, 2, 3])),
            ..Script::default()
        };
        let (start, _) = scripted(script, 0);
        let mut c = open(dir.path(), start);
        c.kcov = kcov;
        c.run(1, &Pairs(Mutex::new(3)), Duration::from_secs(3600));
        let st = c.state();
        assert_eq!(st.stats.programs, 3);
        assert_eq!(st.stats.cover.runs, if kcov { 3 } else { 0 }, "kcov {kcov}");
    }
    let before = super::engine::process_cpu_ms();
    let mut x = 0u64;
    for i in 0..u64::MAX {
        x = x.wrapping_mul(31).wrapping_add(i);
        if i % 1_000_000 == 0 && super::engine::process_cpu_ms() > before {
            break;
        }
    }
    assert!(super::engine::process_cpu_ms() > before, "{x}");
}

/// Clean programs run one after another in one VM, each reset after it;
/// the counters say so and the campaign did test something.
#[test]
fn clean_programs_share_one_vm_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (c, boots) = campaign(dir.path(), 4, Script::default());
    assert_eq!(boots, 1);
    let st = c.state();
    assert_eq!(st.stats.programs, 4);
    assert_eq!(st.stats.ops, 8);
    assert!(st.stats.findings.is_empty(), "{:?}", st.stats.findings);
    assert_eq!(st.stats.parts["fuzz"].failed, 0);
    drop(st);
    assert_eq!(c.infrastructure_failure(), None);
    assert!(dir.path().join("fuzz.json").is_file());
    // The slowest check is kept, and the model explains it again.
    let slow = dir.path().join("slowest-check");
    let program = Program::from_yaml(
        "p",
        &std::fs::read_to_string(slow.join("program.yaml")).unwrap(),
    )
    .unwrap();
    let run: crate::programs::StoredRun =
        serde_json::from_slice(&std::fs::read(slow.join("trace.json")).unwrap()).unwrap();
    assert_eq!(run.trace.steps[0].lanes[0].len(), 2);
    assert_eq!(
        cgstorm_workloads::model::verify(&program, &run.target, &run.trace).unwrap(),
        None
    );
    assert!(c.state().stats.text("fuzz").contains("slowest check"));
}

/// A WARNING on the console during a program is stored as a finding with
/// that program, once; the VM that printed it is replaced before the next
/// program, and a second sighting counts as the same finding.
#[test]
fn a_report_is_stored_with_its_program_and_the_vm_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        warn_at: vec![1, 3],
        ..Default::default()
    };
    let (c, boots) = campaign(dir.path(), 5, script);
    assert_eq!(boots, 3, "one boot, and one after each report");
    let st = c.state();
    assert_eq!(st.stats.programs, 5);
    let t = &st.stats.findings["WARNING in evict"];
    assert_eq!((t.count, t.new), (2, true));
    let found = Path::new(&t.dir);
    let program = std::fs::read_to_string(found.join("program.yaml")).unwrap();
    assert_eq!(
        Program::from_yaml("p", &program).unwrap().lanes,
        Program::from_yaml("p", PROGRAM).unwrap().lanes
    );
    assert!(std::fs::read_to_string(found.join("console.log"))
        .unwrap()
        .contains("WARNING: CPU: 0 PID: 1 at fs/inode.c:1"));
    // The program before the first report ran in the same VM: it is kept
    // beside the finding, for `cgstorm replay`.
    assert!(found.join("before").is_dir());
}

/// A reset that leaves a removed cgroup dying is a `leak` finding named
/// after the program's op family, and the VM is replaced.
#[test]
fn a_reset_that_cannot_free_a_cgroup_is_a_leak_finding() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        leave_at: vec![(
            0,
            "leak: removed cgroups are still dying: 1 after 20 s".into(),
        )],
        ..Default::default()
    };
    let (c, boots) = campaign(dir.path(), 2, script);
    assert_eq!(boots, 2);
    let st = c.state();
    let titles: Vec<&String> = st.stats.findings.keys().collect();
    assert_eq!(
        titles,
        ["leak: removed cgroups never freed after cgroup ops"]
    );
}

/// A campaign whose every boot fails ran nothing: the job gives up after
/// three failures in a row, and the campaign says it failed.
#[test]
fn a_campaign_whose_boots_all_fail_fails() {
    let dir = tempfile::tempdir().unwrap();
    let start: super::Starter =
        Arc::new(|_: &Path| Err(RunError::Guest("the kernel did not come up".into())));
    let c = open(dir.path(), start);
    c.run(1, &Pairs(Mutex::new(10)), Duration::from_secs(3600));
    let why = c.infrastructure_failure().expect("a failed campaign");
    assert_eq!(c.state().stats.programs, 0);
    assert!(why.contains("no program"), "{why}");
    assert!(
        why.contains("the last error: the kernel did not come up"),
        "{why}"
    );
}

/// With coverage feedback, a program whose new edges show again in its
/// re-run joins the corpus for them (its edges beside it), weighted by how
/// many; the programs after it bring no new edge and are not re-run.
/// (The first program joins for its new op outcomes, and brings no edge;
/// the second is the same program, and brings three.) Without feedback
/// the same edges are counted and nothing is re-run. With feedback the
/// generator leans to the family of ops that brought the edges.
#[test]
fn new_edges_that_show_again_keep_their_program() {
    let script = Script {
        edges: Some((1, vec![11, 12, 13])),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = guided(dir.path(), 3, script.clone(), true);
    let st = c.state();
    assert_eq!(st.stats.cover.edges, 3);
    assert_eq!((st.stats.cover.reruns, st.stats.cover.kept), (1, 1));
    assert_eq!(st.stats.cover.flaky, 0);
    assert_eq!(st.weights.last(), Some(&3), "1 + log2(3 + 1)");
    assert!(st.pending.is_empty());
    // Those edges came from cgroup ops: the generator draws them more now.
    let cgroup = st.yields.bias().weights[0];
    assert!(cgroup > 1000 / 8, "{}", st.stats.cover.families);
    assert!(
        st.stats.cover.families.starts_with("cgroup "),
        "{}",
        st.stats.cover.families
    );
    drop(st);
    let edges_files = std::fs::read_dir(dir.path().join("corpus"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("edges".as_ref()))
        .count();
    assert_eq!(edges_files, 1);

    let off = tempfile::tempdir().unwrap();
    let (c, _) = guided(off.path(), 3, script, false);
    let st = c.state();
    assert_eq!(st.stats.cover.edges, 3);
    assert_eq!((st.stats.cover.reruns, st.stats.cover.kept), (0, 0));
    assert_eq!(st.yields.runs(), 0, "no feedback, no bias");
}

/// A program kept for other behaviour (its new op outcomes) that also
/// brought new edges is not re-run (it is kept already), and in a guided
/// campaign it is as likely a parent as those edges make it; without
/// feedback every such program weighs 1.
#[test]
fn a_program_kept_for_other_behaviour_is_weighted_by_its_new_edges() {
    let script = Script {
        edges: Some((0, vec![11, 12, 13])),
        ..Default::default()
    };
    for (feedback, weight) in [(true, 3), (false, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = guided(dir.path(), 3, script.clone(), feedback);
        let st = c.state();
        assert_eq!(st.stats.cover.edges, 3);
        assert_eq!((st.stats.cover.reruns, st.stats.cover.kept), (0, 0));
        assert_eq!(st.weights.last(), Some(&weight), "feedback {feedback}");
    }
}

/// With a focus, a program is re-run and kept for its new PCs in the
/// focus's functions, not for new edges elsewhere: a run whose new code is
/// all in `ext4_write_begin` is not re-run; one with a new PC in
/// `cgroup_mkdir` is, and joins the corpus once that PC shows again.
/// (The symbols are asked for after the first run with PCs, so the first
/// one's are not judged.)
#[test]
fn with_a_focus_only_new_code_in_it_keeps_a_program() {
    let run = |script: Script| {
        let dir = tempfile::tempdir().unwrap();
        let (start, _) = scripted(script, 0);
        let mut c = open(dir.path(), start);
        c.cover_feedback = true;
        c.focus = Some(["cgroup_mkdir".to_string()].into());
        c.run(1, &Pairs(Mutex::new(4)), Duration::from_secs(3600));
        let st = c.state();
        let cover = &st.stats.cover;
        (cover.reruns, cover.kept, cover.focus_pcs, cover.edges)
    };
    let elsewhere = Script {
        edges: Some((1, vec![11, 12, 13])),
        pcs: vec![(0, vec![0x2001]), (2, vec![0x2001, 0x2011])],
        ..Default::default()
    };
    assert_eq!(run(elsewhere), (0, 0, 0, 3));
    let in_it = Script {
        edges: Some((1, vec![11, 12, 13])),
        pcs: vec![(0, vec![0x2001]), (2, vec![0x2001, 0x1011])],
        ..Default::default()
    };
    assert_eq!(run(in_it), (1, 1, 1, 3));
}

/// On a kernel with kmemleak, a VM about to go after a report is scanned
/// first, and what the scan prints is a finding of the program's, stored
/// beside the report; a VM that stays is not scanned (the agent's own
/// scans every 20 resets cover it), nor one without kmemleak.
#[test]
fn a_vm_that_goes_is_scanned_for_leaks_first() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        warn_at: vec![1],
        kmemleak: Some(vec![1]),
        ..Default::default()
    };
    let scans = script.scans.clone();
    let (c, _) = campaign(dir.path(), 3, script);
    assert_eq!(scans.load(Ordering::SeqCst), 1, "one VM went");
    let st = c.state();
    let titles: Vec<&String> = st.stats.findings.keys().collect();
    assert_eq!(
        titles,
        ["WARNING in evict", "memory leak in mem_cgroup_css_alloc"]
    );
    let leak = &st.stats.findings["memory leak in mem_cgroup_css_alloc"];
    assert!(std::fs::read_to_string(Path::new(&leak.dir).join("program.yaml")).is_ok());
    drop(st);

    let without = tempfile::tempdir().unwrap();
    let script = Script {
        warn_at: vec![1],
        ..Default::default()
    };
    let scans = script.scans.clone();
    let (c, _) = campaign(without.path(), 3, script);
    assert_eq!(scans.load(Ordering::SeqCst), 0, "no kmemleak, no scan");
    assert_eq!(c.state().stats.findings.len(), 1);
}

/// Boots that fail now and then do not make a part that ran programs one
/// that tested nothing: two failed boots, then two programs that ran, and
/// KTAP says `ok` (it said `not ok` when a failed try was counted as an
/// error but not as a try).
#[test]
fn a_part_with_failed_boots_and_programs_that_ran_tested_something() {
    let dir = tempfile::tempdir().unwrap();
    let (start, _) = scripted(Script::default(), 2);
    let c = open(dir.path(), start);
    c.run(1, &Pairs(Mutex::new(4)), Duration::from_secs(3600));
    assert_eq!(c.infrastructure_failure(), None);
    let st = c.state();
    assert_eq!(st.stats.programs, 2);
    let part = &st.stats.parts["fuzz"];
    assert_eq!((part.programs, part.errors), (4, 2));
    assert!(!part.tested_nothing());
    assert!(
        st.stats.ktap().contains("\nok 1 fuzz"),
        "{}",
        st.stats.ktap()
    );
}

/// A finding that cannot be stored (here: the workdir's findings/ is a
/// file, as a full disk would refuse it) stops the campaign at once and
/// fails it, naming the finding; nothing half-written is left behind.
#[test]
fn a_finding_that_cannot_be_stored_stops_the_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let script = Script {
        warn_at: vec![1],
        ..Default::default()
    };
    let (start, _) = scripted(script, 0);
    let c = open(dir.path(), start);
    let findings = dir.path().join("findings");
    std::fs::remove_dir_all(&findings).unwrap();
    std::fs::write(&findings, "not a directory").unwrap();
    c.run(1, &Pairs(Mutex::new(5)), Duration::from_secs(3600));
    let why = c.infrastructure_failure().expect("a failed campaign");
    assert!(
        why.contains("the finding `WARNING in evict` could not be stored"),
        "{why}"
    );
    assert_eq!(c.state().stats.programs, 2, "it stopped after the finding");
    let mut tmp = Vec::new();
    let mut walk = vec![dir.path().to_path_buf()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk.push(p);
            } else if p.to_string_lossy().ends_with(".tmp") {
                tmp.push(p);
            }
        }
    }
    assert!(tmp.is_empty(), "temporaries left: {tmp:?}");
}
