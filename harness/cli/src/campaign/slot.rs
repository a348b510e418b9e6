//! One VM that stays up across programs: boot on demand, run a program and
//! judge it exactly as `cgstorm run` does, then either reset the guest for
//! the next program or, when the kernel may be damaged (a report, a hang, a
//! dead VM, a reset that could not clean up), kill it so the next program
//! gets a fresh one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgstorm_proto::contract::{
    LEAK_DAX, LEAK_DIRTY, LEAK_DYING_V1, LEAK_DYING_V2, LEAK_PREFIX, LEAK_SCAN_LINE,
};
use cgstorm_proto::proto::{AgentMsg, HostMsg};
use cgstorm_vm::machine::{BootPlan, MachineOpts};
use cgstorm_vm::snapshot::Snapshot;
use cgstorm_vm::Vm;
use cgstorm_workloads::model::Target;
use cgstorm_workloads::Program;

use super::Env;
use crate::run::ask::ask;
use crate::run::console::ConsoleWatch;
use crate::run::error::RunError;
use crate::run::launch::{self, Booted};
use crate::run::limits::{Cover, Limits};
use crate::run::session::End;
use crate::run::verdict::{findings, Detail, Finding, ModelCheck, OpNames, Verdict};
use crate::run::{conclude, kernel_model, Conclusion};

/// How long the agent's reset may take under KVM (scaled for TCG); the
/// agent itself gives dying cgroups and loop devices 20 s.
const RESET_TIMEOUT: Duration = Duration::from_secs(4);

/// How many of the programs that ran in a VM before the current one it
/// remembers (the oldest are forgotten first).
pub const HISTORY: usize = 100;

/// What running one program gave.
pub struct Ran {
    /// The judged run.
    pub conclusion: Conclusion,
    /// What the model knew of the kernel it was judged against (from the
    /// boot's probe).
    pub target: Target,
    /// Kernel reports printed while the guest was reset after the program
    /// (a busy-inodes report at umount, say): they belong to the program.
    pub after: Vec<Finding>,
    /// The VM's whole console since its boot (this program's and those
    /// before it in the same VM).
    pub console: PathBuf,
    /// The kernel release.
    pub release: String,
    /// The VM was booted for this program.
    pub booted: bool,
    /// How long that boot took (QEMU start to the agent's hello).
    pub boot_time: Duration,
    /// How long the host waited for the agent's reset after it (zero
    /// without one; the reset may have begun while the host checked).
    pub reset_time: Duration,
    /// Where the agent's reset spent its time, `(part, ms)` (empty
    /// without one).
    pub reset_laps: Laps,
    /// That VM was restored from a snapshot, not booted.
    pub restored: bool,
    /// Why the VM must go after the program (the caller stores the
    /// findings, then calls [`Slot::settle`]).
    pub dropped: Option<String>,
    /// When the program has findings: the programs that ran in the same VM
    /// before it, oldest first, as YAML with the duration they ran for (a
    /// kernel finding may need what they left behind; `cgstorm replay`
    /// runs them again in order).
    pub before: Vec<String>,
    /// The program as it ran, YAML with its duration: what a finding of it
    /// stores.
    pub yaml: String,
}

impl Ran {
    /// Every finding: the run's, then the reset's.
    pub fn all_findings(&self) -> impl Iterator<Item = &Finding> {
        self.conclusion.findings.iter().chain(self.after.iter())
    }
}

/// A VM slot of one job.
pub struct Slot {
    job: usize,
    vm: Option<(Booted, Target)>,
    /// The kernel image the VM runs.
    image: PathBuf,
    /// How long the last boot took.
    last_boot: Duration,
    /// Boots so far.
    pub boots: u64,
    /// The programs run in this VM since it booted (at most [`HISTORY`]).
    history: std::collections::VecDeque<String>,
    /// The state of this slot's first VM of each kernel image right after
    /// its hello: a restart starts from it instead of booting.
    snapshots: Vec<(PathBuf, Snapshot)>,
    /// A snapshot cannot be had (said once): a restart boots.
    no_snapshot: bool,
    /// The VM running now was restored from a snapshot.
    restored: bool,
    /// Ask the agent for kernel coverage where the kernel has KCOV.
    pub cover: bool,
    /// The next run asks for all of its edges, not only those new to the
    /// agent (a re-run that checks new signal shows again).
    pub afresh: bool,
    /// The kernel without KCOV was said.
    no_kcov_said: bool,
}

impl Slot {
    /// An empty slot for job `job`.
    pub fn new(job: usize) -> Slot {
        Slot {
            job,
            vm: None,
            image: PathBuf::new(),
            last_boot: Duration::ZERO,
            boots: 0,
            history: Default::default(),
            snapshots: Vec::new(),
            no_snapshot: false,
            restored: false,
            cover: true,
            afresh: false,
            no_kcov_said: false,
        }
    }

    /// What to ask of the kernel coverage of the next run, on `release`,
    /// which has KCOV or not.
    fn cover_for(&mut self, kcov: bool, release: &str) -> Cover {
        let afresh = std::mem::take(&mut self.afresh);
        if !self.cover {
            return Cover::Off;
        }
        if !kcov {
            if !std::mem::replace(&mut self.no_kcov_said, true) {
                eprintln!(
                    "cgstorm: job {}: {release} has no KCOV ({}): no coverage signal, the other signals go on",
                    self.job,
                    cgstorm_proto::contract::KCOV_DEVICE
                );
            }
            return Cover::Off;
        }
        if afresh {
            Cover::Afresh
        } else {
            Cover::New
        }
    }

    /// A VM for `env`'s kernel: restored from this slot's snapshot when it
    /// has one for that kernel, else booted (and saved, the first time).
    fn start_vm(
        &mut self,
        env: &Env,
        machine: &MachineOpts,
        console: &Path,
    ) -> Result<Booted, RunError> {
        if let Some(start) = &env.starter {
            return start(console);
        }
        let image = &env.kernel.kernel.image;
        if let Some((_, snap)) = self.snapshots.iter().find(|(i, _)| i == image) {
            match snap.restore(Some(console.to_path_buf()), None) {
                Ok(avm) => {
                    self.restored = true;
                    return Ok(avm.boxed());
                }
                Err(e) => {
                    eprintln!(
                        "cgstorm: job {}: restoring the snapshot failed ({}); restarts boot from now on",
                        self.job,
                        crate::run::error::chain(&RunError::from(e))
                    );
                    self.snapshots.clear();
                    self.no_snapshot = true;
                }
            }
        }
        let plan = BootPlan {
            kernel: &env.kernel,
            agent: env.agent.clone(),
            backend: env.backend,
            accel: env.accel,
            machine,
            echo: false,
            binaries: Vec::new(),
        };
        if self.no_snapshot {
            return launch::boot_logged(plan, Some(console.to_path_buf()));
        }
        let (booted, snap) = launch::boot_saved(plan, Some(console.to_path_buf()))?;
        match snap {
            Ok(snap) => {
                eprintln!(
                    "cgstorm: job {}: saved the vm after its boot ({} MiB of RAM in {:.1} s): restarts start from it",
                    self.job,
                    snap.ram_bytes >> 20,
                    snap.save_time.as_secs_f64()
                );
                self.snapshots.push((image.clone(), snap));
            }
            Err(why) => {
                eprintln!(
                    "cgstorm: job {}: no vm snapshot ({why}): restarts boot",
                    self.job
                );
                self.no_snapshot = true;
            }
        }
        Ok(booted)
    }

    fn boot(&mut self, env: &Env, console: &Path) -> Result<(), RunError> {
        let mut machine = env.machine.clone();
        machine.append.push(format!("cgstorm.job={}", self.job));
        self.restored = false;
        let booted = self.start_vm(env, &machine, console)?;
        self.boots += 1;
        self.last_boot = booted.boot_time;
        let hello = &booted.hello;
        if !hello.missing_devices.is_empty() {
            return Err(RunError::Guest(format!(
                "the guest has no /dev/{} although the vm was given them",
                hello.missing_devices.join(", /dev/")
            )));
        }
        let mut warnings = Vec::new();
        let kernel = kernel_model(hello, &env.kernel, env.switches, &mut warnings)?;
        let target = env.machine.target(kernel);
        self.vm = Some((booted, target));
        self.image = env.kernel.kernel.image.clone();
        self.history.clear();
        Ok(())
    }

    /// After a program's findings are stored: kills the VM if the program
    /// left it unfit for the next one.
    pub fn settle(&mut self, ran: &Ran) {
        if ran.dropped.is_some() {
            self.drop_vm();
        }
    }

    /// The kernel's text symbols at link-time addresses, from the agent of
    /// this slot's VM (`None` without a VM): what `cgstorm cover` names
    /// KCOV's PCs by. A VM that does not answer is dropped.
    pub fn symbols(&mut self) -> Option<Result<String, String>> {
        let (b, _) = self.vm.as_mut()?;
        let accel = b.accel;
        let mut watch = ConsoleWatch::new(None);
        let answer = ask(
            &mut b.vm,
            Some(&HostMsg::Symbols),
            &mut watch,
            accel.scale(RESET_TIMEOUT),
            |m| match m {
                AgentMsg::Symbols { text, error: None } => Ok(Ok(text)),
                AgentMsg::Symbols { error: Some(e), .. } => Ok(Err(e)),
                other => Err(Box::new(other)),
            },
        );
        Some(answer.unwrap_or_else(|e| {
            self.drop_vm();
            Err(e)
        }))
    }

    /// Drops the VM (killing it).
    pub fn drop_vm(&mut self) {
        if let Some((mut b, _)) = self.vm.take() {
            b.vm.kill();
        }
    }

    /// Runs `program` for `duration`, booting first if needed (the VM's
    /// console then goes to `console`). Errors are infrastructure failures
    /// (no boot); everything the kernel did is in the returned findings.
    pub fn run(
        &mut self,
        env: &Env,
        program: &Program,
        duration: Duration,
        console: PathBuf,
    ) -> Result<Ran, RunError> {
        if self.vm.is_some() && self.image != env.kernel.kernel.image {
            // The next program is for another kernel.
            self.drop_vm();
        }
        let booted = self.vm.is_none();
        if booted {
            if let Err(e) = self.boot(env, &console) {
                self.drop_vm();
                return Err(e);
            }
        }
        let (kcov, kmemleak, release) = {
            let hello = &self.vm.as_ref().expect("booted above").0.hello;
            crate::run::can_inject_faults(program, hello)?;
            let kcov = hello.features.as_ref().is_some_and(|f| f.kcov);
            let kmemleak = hello.features.as_ref().is_some_and(|f| f.kmemleak);
            (kcov, kmemleak, hello.kernel_release.clone())
        };
        let cover = self.cover_for(kcov, &release);
        let (b, target) = self.vm.as_mut().expect("booted above");
        let accel = b.accel;
        let watch = ConsoleWatch::new(None);
        let mut limits = Limits::new(accel, program, duration, None);
        limits.keep_alive = true;
        limits.reset_early = true;
        limits.cover = cover;
        limits.trace = self.cover;
        let vm: &mut dyn Vm = &mut b.vm;
        let conclusion = conclude(vm, program, target, duration, &limits, &env.stop, watch);
        let target = target.clone();
        let mut dropped = None;
        let mut after = Vec::new();
        let mut reset_time = Duration::ZERO;
        let mut reset_laps = Vec::new();
        let mut reset_failed = false;
        let alive = !conclusion.outcome.vm_gone;
        let clean_end = matches!(conclusion.outcome.end, End::Finished { error: None });
        if !alive {
            dropped = Some("the vm is gone".to_string());
        } else if !clean_end {
            dropped = Some(format!("the run ended early: {:?}", conclusion.outcome.end));
        } else if conclusion
            .findings
            .iter()
            .any(|f| matches!(f.detail, crate::run::verdict::Detail::Report { .. }))
        {
            dropped = Some("the kernel printed a report".to_string());
        } else {
            let mut watch = ConsoleWatch::new(None);
            let resetting = Instant::now();
            let asked = conclusion.outcome.reset_sent;
            let answer = reset(vm, asked, &mut watch, accel.scale(RESET_TIMEOUT));
            reset_time = resetting.elapsed();
            match answer.map(|(left, laps)| {
                reset_laps = laps;
                left
            }) {
                Ok(left) if left.is_empty() => {}
                Ok(left) => {
                    after.extend(leaks(program, &left));
                    dropped = Some(format!("the reset left: {}", left.join("; ")));
                }
                Err(e) => {
                    reset_failed = true;
                    dropped = Some(format!("the reset failed: {e}"));
                }
            }
            let (reports, _) = watch.finish();
            if !reports.is_empty() {
                // After the leaks, if any: both are the program's.
                after.extend(after_findings(program, &reports, accel));
                dropped.get_or_insert_with(|| "the kernel printed a report".into());
            }
        }
        // The VM goes: what its programs leaked would go with it.
        if kmemleak && dropped.is_some() && alive && clean_end && !reset_failed {
            after.extend(scan_for_leaks(vm, program, accel));
        }
        let before = if conclusion.findings.is_empty() && after.is_empty() {
            Vec::new()
        } else {
            self.history.iter().cloned().collect()
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        let yaml = with_duration(program, duration);
        self.history.push_back(yaml.clone());
        Ok(Ran {
            before,
            yaml,
            conclusion,
            target,
            after,
            console,
            release,
            booted,
            boot_time: if booted {
                self.last_boot
            } else {
                Duration::ZERO
            },
            restored: booted && self.restored,
            reset_time,
            reset_laps,
            dropped,
        })
    }
}

/// A program's YAML, with the duration it ran for (so `cgstorm run` of it
/// runs its timed repeats as long).
fn with_duration(program: &Program, duration: Duration) -> String {
    let mut p = program.clone();
    p.duration = Some(cgstorm_workloads::names::Millis(duration.as_millis() as u64));
    p.to_yaml()
}

/// The kind of a finding of removed cgroups the kernel never freed.
pub const LEAK: &str = "leak";

/// The leaks among a reset's leftovers, as findings: removed cgroups the
/// kernel did not free although the reset had killed every task, dropped
/// every pin, unmounted every filesystem and dropped the caches for 20 s.
/// Nothing the program made can hold them any more. The title names what
/// leaked and after which op family (the most specific one the program
/// has), so one leak keeps one title while minimisation shrinks it.
fn leaks(program: &Program, left: &[String]) -> Vec<Finding> {
    let family = op_family(program);
    left.iter()
        .filter_map(|l| {
            let what = if l.starts_with(LEAK_DYING_V1) {
                "removed v1 memory cgroups never freed"
            } else if l.starts_with(LEAK_DYING_V2) {
                "removed cgroups never freed"
            } else if l.starts_with(LEAK_DIRTY) {
                "dirty or writeback pages still accounted"
            } else if l.starts_with(LEAK_DAX) {
                "DAX pages still referenced"
            } else {
                return None;
            };
            Some(Finding {
                kind: LEAK.into(),
                title: format!("leak: {what} after {family}"),
                op: None,
                detail: Detail::Check {
                    failures: vec![l.trim_start_matches(LEAK_PREFIX).to_string()],
                },
                known: false,
            })
        })
        .collect()
}

/// The most specific op family a program has: DAX pins (maps or pins in a
/// program that mounts with DAX), v1 memcg, page pins (maps or pins
/// without DAX), loop devices, mounts, writeback (writes and writer
/// tasks), else cgroup ops.
fn op_family(program: &Program) -> &'static str {
    use cgstorm_workloads::op::Op;
    use cgstorm_workloads::words::MountOpt;
    let mut kinds = std::collections::BTreeSet::new();
    let mut dax = false;
    for l in 0..program.lanes.len() {
        for (_, s) in program.lane_ops(l) {
            kinds.insert(s.op.keyword());
            if let Op::Mount(m) = &s.op {
                dax |= m
                    .opts
                    .iter()
                    .any(|o| matches!(o, MountOpt::Dax | MountOpt::DaxAlways | MountOpt::DaxInode));
            }
        }
    }
    let any = |ks: &[&str]| ks.iter().any(|k| kinds.contains(k));
    let v1 =
        program.to_yaml().contains("v1:") || any(&["v1_mount", "memory.move_charge_at_immigrate"]);
    let maps = any(&["pin", "mmap"]);
    if maps && dax {
        "dax pins"
    } else if v1 {
        "v1 memcg"
    } else if maps {
        "page pins"
    } else if any(&["losetup", "losetup_detach"]) {
        "loop devices"
    } else if any(&["mount", "umount", "umount_lazy", "remount"]) {
        "mounts"
    } else if any(&["write", "spawn", "fsync", "sync"]) {
        "writeback"
    } else {
        "cgroup ops"
    }
}

/// Where a reset's time went: `(part, ms)`, in the order the agent ran them.
type Laps = Vec<(String, u64)>;

/// Asks the agent to reset the guest (unless the run `asked` already, see
/// [`Limits::reset_early`]), feeding the console to `watch` while it works;
/// the leftovers it reports and where its time went.
fn reset(
    vm: &mut dyn Vm,
    asked: bool,
    watch: &mut ConsoleWatch,
    timeout: Duration,
) -> Result<(Vec<String>, Laps), String> {
    let order = (!asked).then_some(&HostMsg::Reset);
    ask(vm, order, watch, timeout, |m| match m {
        AgentMsg::ResetDone { leftovers, laps } => Ok((leftovers, laps)),
        other => Err(Box::new(other)),
    })
}

/// On a kernel with kmemleak, before a VM that is about to be dropped
/// goes (it printed a report, or its reset left something): asks the
/// agent for a scan now and reads the console up to the scan's end line;
/// the `memory leak in F` reports it printed (and any other report) as the
/// program's findings. A scan that fails is said, and finds nothing.
fn scan_for_leaks(vm: &mut dyn Vm, program: &Program, accel: cgstorm_vm::Accel) -> Vec<Finding> {
    let mut watch = ConsoleWatch::new(None).waiting_for(LEAK_SCAN_LINE);
    let answer = ask(
        vm,
        Some(&HostMsg::LeakScan),
        &mut watch,
        accel.scale(RESET_TIMEOUT),
        |m| match m {
            AgentMsg::LeakScanned { printed, error } => Ok((printed, error)),
            other => Err(Box::new(other)),
        },
    );
    match answer {
        Ok((printed, None)) => {
            // The console may lag the agent's answer: read it to the end
            // line the agent printed after the reports.
            let deadline = Instant::now() + accel.scale(Duration::from_secs(5));
            while !watch.marker_seen() && Instant::now() < deadline {
                match vm.console_line(Duration::from_millis(100)) {
                    cgstorm_vm::ConsoleEvent::Line(l) => watch.line(&l),
                    cgstorm_vm::ConsoleEvent::Timeout => {}
                    cgstorm_vm::ConsoleEvent::Closed => break,
                }
            }
            if printed > 0 && !watch.marker_seen() {
                eprintln!(
                    "cgstorm: the leak scan printed {printed} objects, but its end line never came: some may be missing"
                );
            }
        }
        Ok((_, Some(e))) => eprintln!("cgstorm: no leak scan before the vm goes: {e}"),
        Err(e) => eprintln!("cgstorm: no leak scan before the vm goes: {e}"),
    }
    let (reports, _) = watch.finish();
    after_findings(program, &reports, accel)
}

/// Kernel reports printed after the program's run (in its reset, or in a
/// leak scan before its VM goes) as the program's findings.
fn after_findings(
    program: &Program,
    reports: &[cgstorm_report::Report],
    accel: cgstorm_vm::Accel,
) -> Vec<Finding> {
    findings(
        &OpNames::new(program),
        program.steps(),
        &ModelCheck::Explained { steps: 0 },
        reports,
        &End::Finished { error: None },
        accel == cgstorm_vm::Accel::Tcg,
    )
}

/// The verdict over a program and its reset.
pub fn verdict(ran: &Ran) -> Verdict {
    if ran.after.iter().any(|f| !f.known) {
        Verdict::Finding
    } else {
        ran.conclusion.verdict.clone()
    }
}

#[cfg(test)]
mod tests {
    use cgstorm_vm::fake::FakeVm;

    use super::*;

    const WARN: [&str; 6] = [
        "[   10.000000] ------------[ cut here ]------------",
        "[   10.000001] WARNING: CPU: 1 PID: 77 at fs/inode.c:1234 evict+0x10/0x20",
        "[   10.000002] Modules linked in:",
        "[   10.000003] Call Trace:",
        "[   10.000004]  evict+0x10/0x20",
        "[   10.000005] ---[ end trace 0000000000000000 ]---",
    ];

    #[test]
    fn reset_asks_the_agent_and_watches_the_console_meanwhile() {
        let mut vm = FakeVm::new()
            .console_lines(WARN)
            .agent_chunks(3)
            .agent_says(&AgentMsg::ResetDone {
                leftovers: vec!["/tmp/cgstorm/mnt/m0 is still mounted".into()],
                laps: vec![("unmount".into(), 12), ("dying".into(), 3)],
            });
        let mut watch = ConsoleWatch::new(None);
        let (left, laps) = reset(&mut vm, false, &mut watch, Duration::from_secs(5)).unwrap();
        assert_eq!(left, ["/tmp/cgstorm/mnt/m0 is still mounted"]);
        assert_eq!(
            laps,
            [("unmount".to_string(), 12), ("dying".to_string(), 3)]
        );
        assert_eq!(vm.host_messages(), [HostMsg::Reset]);
        let (reports, _) = watch.finish();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].title, "WARNING in evict");
    }

    /// A reset's leak leftovers become `leak` findings named by what leaked
    /// and the program's op family; other leftovers are not findings.
    #[test]
    fn leak_leftovers_are_findings() {
        let p = |yaml: &str| Program::from_yaml("p", yaml).unwrap();
        let v1 = p("lanes:\n  - {name: a, ops: [v1_mount, {mkdir: 'v1:a'}, {rmdir: 'v1:a'}]}\n");
        let left = vec![
            format!("{LEAK_DYING_V1}: hierarchy 3 with 2 cgroups outlived its unmount"),
            "/cgstorm/places/m0 is still mounted".to_string(),
        ];
        let f = leaks(&v1, &left);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, LEAK);
        assert_eq!(
            f[0].title,
            "leak: removed v1 memory cgroups never freed after v1 memcg"
        );
        let w = p("lanes:\n  - {name: a, ops: [{mkdir: a}, {write: {file: tmp/f, bytes: 4K, bs: 4K}}, {rmdir: a}]}\n");
        let f = leaks(&w, &[format!("{LEAK_DYING_V2}: 1 after 20 s")]);
        assert_eq!(
            f[0].title,
            "leak: removed cgroups never freed after writeback"
        );
        assert!(leaks(&w, &["cgroup a cannot be removed".into()]).is_empty());
        let f = leaks(
            &w,
            &[format!(
                "{LEAK_DIRTY}: Dirty 4 kB, Writeback 0 kB 3 s after sync"
            )],
        );
        assert_eq!(
            f[0].title,
            "leak: dirty or writeback pages still accounted after writeback"
        );
        let pinned = p("lanes:\n  - {name: a, ops: [{mkfs: {dev: pmem0, fs: ext4}}, {mount: {at: p, fs: ext4, dev: pmem0, opts: [dax]}}, {open: {fd: f, file: p/f}}, {mmap: {map: m, fd: f, len: 4K}}, {pin: {pin: x, map: m, via: vmsplice}}]}\n");
        // The same maps and pins on tmpfs are no DAX pins.
        let paged = p("lanes:\n  - {name: a, ops: [{mkdir: a}, {open: {fd: f, file: tmp/f}}, {mmap: {map: m, fd: f, len: 4K}}, {pin: {pin: x, map: m, via: vmsplice}}, {rmdir: a}]}\n");
        let f = leaks(&paged, &[format!("{LEAK_DYING_V2}: 1 after 20 s")]);
        assert_eq!(
            f[0].title,
            "leak: removed cgroups never freed after page pins"
        );
        let f = leaks(
            &pinned,
            &[format!(
                "{LEAK_DAX}: /cgstorm/places/p/f: truncating it waited 5000 ms for its pages and was killed"
            )],
        );
        assert_eq!(
            f[0].title,
            "leak: DAX pages still referenced after dax pins"
        );
    }

    #[test]
    fn a_reset_the_run_asked_for_is_only_awaited() {
        let mut vm = FakeVm::new().agent_says(&AgentMsg::ResetDone {
            leftovers: vec![],
            laps: vec![],
        });
        let mut watch = ConsoleWatch::new(None);
        assert!(reset(&mut vm, true, &mut watch, Duration::from_secs(5))
            .unwrap()
            .0
            .is_empty());
        assert_eq!(vm.host_messages(), []);
    }

    #[test]
    fn a_reset_without_an_answer_times_out() {
        let mut vm = FakeVm::new();
        let mut watch = ConsoleWatch::new(None);
        let e = reset(&mut vm, false, &mut watch, Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("no answer") || e.contains("went away"), "{e}");
    }

    #[test]
    fn a_wrong_answer_is_an_error() {
        let mut vm = FakeVm::new().agent_says(&AgentMsg::Finished {
            error: None,
            timing: Default::default(),
        });
        let mut watch = ConsoleWatch::new(None);
        let e = reset(&mut vm, false, &mut watch, Duration::from_secs(5)).unwrap_err();
        assert!(e.contains("unexpected answer"), "{e}");
    }
}
