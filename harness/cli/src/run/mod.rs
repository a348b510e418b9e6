//! `cgstorm run`: boot a kernel, run a program in it through the agent,
//! check every result and barrier state against the model, watch the
//! console for kernel reports, and give a verdict.
//!
//! Exit 0 pass, 1 finding, 2 bad input, 3 infrastructure failure. When the
//! model cannot decide (too many interleavings, a trace that does not fit),
//! that is a limit of the model, not of the kernel: the run passes with a
//! warning line and the JSON's `model` says `unchecked: …`.

pub mod ask;
mod checks;
pub mod console;
pub mod error;
mod features;
mod json;
pub mod launch;
pub mod limits;
mod rates;
pub mod session;
pub mod signal;
pub mod trace;
pub mod verdict;

#[cfg(test)]
pub(crate) mod tests;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgstorm_proto::proto::{Hello, ModuleOutcome, RunOrder};
use cgstorm_vm::kconfig::FoundKernel;
use cgstorm_vm::launch::AgentVm;
use cgstorm_vm::machine::{BootPlan, MachineOpts};
use cgstorm_vm::Vm;
use cgstorm_workloads::model::{Kernel, Target};
use cgstorm_workloads::{Millis, Program, Size};

use console::{ConsoleLog, ConsoleWatch};
use error::{chain, RunError};
use launch::Booted;
use limits::Limits;
use session::{End, Outcome};
use verdict::{check_model, findings, Finding, ModelCheck, OpNames, RunInfo, Verdict};

use crate::vm_args::VmArgs;

/// The run duration when neither the program nor `--duration` gives one.
const DEFAULT_DURATION: Duration =
    Duration::from_millis(cgstorm_workloads::program::DEFAULT_DURATION_MS);

/// Arguments of `cgstorm run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The program (YAML).
    pub program: PathBuf,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Size of the pmem device (`pmem0`, carved out of guest RAM); 0 for none.
    #[arg(long, default_value = "512M")]
    pub pmem: Size,
    /// Number of virtio-blk scratch disks (`scratch0`…).
    #[arg(long, default_value_t = 2)]
    pub scratch_disks: u8,
    /// Size of each scratch disk.
    #[arg(long, default_value = "1G")]
    pub scratch_size: Size,
    /// How long `repeat: {for: run}` blocks run (default: the program's
    /// `duration`, else 10s).
    #[arg(long)]
    pub duration: Option<Millis>,
    /// How long an op may run before the agent's watchdog dumps the blocked
    /// tasks (default: 6s under KVM, 60s under TCG).
    #[arg(long)]
    pub stall: Option<Millis>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the console log in this file (by default it is kept, in the
    /// temporary directory, only when the verdict is not a pass).
    #[arg(long)]
    pub keep_console: Option<PathBuf>,
    /// Store findings under DIR/findings/<hash of title>/ (description,
    /// report, console.log, program.yaml, count), as syzkaller does.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Print the console to stderr as it arrives.
    #[arg(long)]
    pub echo: bool,
    /// Boot, save the VM's state, then run the program in a new VM started
    /// from that state, as campaigns restart VMs: checks that a restored VM
    /// gives the same results as a booted one (QEMU backend only).
    #[arg(long)]
    pub from_snapshot: bool,
}

/// Runs `run`; returns the exit code. Errors are printed here, as their exit
/// code depends on their kind.
pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    match execute(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("cgstorm: {}", chain(&e));
            Ok(e.exit_code())
        }
    }
}

impl RunArgs {
    fn machine(&self) -> MachineOpts {
        MachineOpts {
            pmem: self.pmem,
            scratch_disks: self.scratch_disks,
            scratch_size: self.scratch_size,
            ..self.vm.machine()
        }
    }
}

fn execute(args: &RunArgs) -> Result<u8, RunError> {
    let program = crate::programs::load(&args.program).map_err(RunError::Program)?;
    let machine = args.machine();
    machine.vm_spec()?;
    let kernel = launch::find_kernel(args.vm.boot.kernel.as_deref())?;
    let agent = launch::find_agent(args.vm.boot.agent.as_deref())?;
    eprintln!(
        "cgstorm: booting {} with {} …",
        kernel.describe(),
        args.vm.backend.name()
    );
    // Before the boot, so Ctrl-C during a long boot is handled too.
    signal::install();
    let plan = BootPlan {
        kernel: &kernel,
        agent,
        backend: args.vm.backend,
        accel: args.vm.boot.accel,
        machine: &machine,
        echo: args.echo,
        binaries: Vec::new(),
    };
    let boot_log = console::BootLog::new(&args.program)?;
    let booted = if args.from_snapshot {
        restored(plan, args.echo, boot_log.path())
    } else {
        launch::boot_logged(plan, Some(boot_log.path()))
    };
    let booted = match booted {
        Ok(b) => b,
        Err(e) => {
            match boot_log.keep(args.keep_console.as_deref()) {
                Ok(p) => eprintln!(
                    "cgstorm: the failed boot's console log is in {}",
                    p.display()
                ),
                Err(k) => eprintln!("cgstorm: cannot keep the failed boot's console log: {k}"),
            }
            return Err(e);
        }
    };
    drop(boot_log);
    let ctx = Ctx {
        args,
        program: &program,
        kernel: &kernel,
        machine: &machine,
    };
    drive(booted, &ctx)
}

/// `--from-snapshot`: a VM restored from the saved state of a fresh one.
fn restored(plan: BootPlan<'_>, echo: bool, boot_log: PathBuf) -> Result<Booted, RunError> {
    let (first, snap) = launch::boot_saved(plan, Some(boot_log))?;
    let snap = snap.map_err(|why| RunError::Guest(format!("cannot save the vm's state: {why}")))?;
    drop(first);
    eprintln!(
        "cgstorm: saved the vm ({} MiB of RAM in {:.1} s); running in a vm restored from it",
        snap.ram_bytes >> 20,
        snap.save_time.as_secs_f64()
    );
    let sink: Option<cgstorm_vm::qemu::console::ConsoleSink> = if echo {
        Some(Box::new(|l: &str| eprintln!("{l}")))
    } else {
        None
    };
    let avm = snap.restore(None, sink)?;
    Ok(avm.boxed())
}

struct Ctx<'a> {
    args: &'a RunArgs,
    program: &'a Program,
    kernel: &'a FoundKernel,
    machine: &'a MachineOpts,
}

/// The model's view of the booted kernel: its release, its config when
/// found, then the user's switches.
fn model_kernel(
    hello: &Hello,
    kernel: &FoundKernel,
    args: &RunArgs,
    warnings: &mut Vec<String>,
) -> Result<Kernel, RunError> {
    kernel_model(hello, kernel, args.vm.switches(), warnings)
}

/// [`model_kernel`] with the switches `(no_memcg_v1, no_dax)` given directly.
pub fn kernel_model(
    hello: &Hello,
    kernel: &FoundKernel,
    (no_memcg_v1, no_dax): (bool, bool),
    warnings: &mut Vec<String>,
) -> Result<Kernel, RunError> {
    let mut k = Kernel::from_release(&hello.kernel_release).ok_or_else(|| {
        RunError::Guest(format!(
            "cannot read a version from the guest's kernel release `{}`",
            hello.kernel_release
        ))
    })?;
    if let Some((_, c)) = &kernel.config {
        c.apply(&mut k);
    }
    // The booted kernel's own config (/proc/config.gz) stands in for a
    // missing file, and is checked against one that is there.
    let proc_config = hello.features.as_ref().and_then(|f| f.config.as_deref());
    match (proc_config, &kernel.config) {
        (Some(text), None) => k.apply_config(text),
        (Some(text), Some((path, _))) => {
            let mut booted = k.clone();
            booted.apply_config(text);
            warnings.extend(k.config_differences(&booted).into_iter().map(|d| {
                format!(
                    "{} says {d}; the booted kernel's /proc/config.gz does not: the model \
                     follows the booted kernel",
                    path.display()
                )
            }));
            k = booted;
        }
        (None, _) => {}
    }
    match (&hello.features, &kernel.config) {
        (Some(f), config) => {
            let source = match (config, proc_config) {
                (Some((path, _)), _) => format!("its config ({})", path.display()),
                (None, Some(_)) => "its /proc/config.gz".to_string(),
                (None, None) => "cgstorm's default".to_string(),
            };
            let said = features::apply(&mut k, f, &source);
            // Without a config a default the probe corrected is no news.
            if config.is_some() {
                warnings.extend(said);
            }
            warnings.extend(f.notes.iter().map(|n| format!("guest probe: {n}")));
        }
        (None, None) if k.at_least(6, 11) => warnings.push(format!(
            "no config found for {} and the agent did not probe the kernel: assuming \
             CONFIG_MEMCG_V1=y (use --no-memcg-v1 if not)",
            kernel.kernel.image.display()
        )),
        (None, _) => {}
    }
    k.memcg_v1 &= !no_memcg_v1;
    k.fs_dax &= !no_dax;
    Ok(k)
}

/// A program with `fail_nth` needs a kernel that injects faults (its probe
/// found the debugfs fault attributes); else an error that says so (exit 2).
pub fn can_inject_faults(program: &Program, hello: &Hello) -> Result<(), RunError> {
    if program.has_faults() && !hello.features.as_ref().is_some_and(|f| f.fault_injection) {
        return Err(RunError::Options(format!(
            "the program injects faults (fail_nth) but the kernel {} has no fault injection: \
             boot one built with CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC \
             and CONFIG_FAULT_INJECTION_DEBUG_FS (fuzz: or leave --fault-injection out)",
            hello.kernel_release
        )));
    }
    Ok(())
}

/// What the guest's hello warns of: its own warnings and the modules
/// that failed to load.
fn hello_warnings(hello: &Hello) -> Vec<String> {
    let mut warnings: Vec<String> = hello
        .warnings
        .iter()
        .map(|w| format!("guest: {w}"))
        .collect();
    warnings.extend(hello.modules.iter().filter_map(|m| match &m.outcome {
        ModuleOutcome::Failed { message, .. } => {
            Some(format!("guest: module {}: {message}", m.path))
        }
        _ => None,
    }));
    warnings
}

/// Checks the hello, runs the program, reports, and tears the VM down.
fn drive<V: Vm>(mut avm: AgentVm<V>, ctx: &Ctx<'_>) -> Result<u8, RunError> {
    let args = ctx.args;
    let hello = avm.hello.clone();
    guest_can_run(ctx.program, &hello)?;
    let mut warnings = hello_warnings(&hello);
    let target = ctx
        .machine
        .target(model_kernel(&hello, ctx.kernel, args, &mut warnings)?);
    let (info, limits) = run_info(ctx, &avm);
    let duration = info.duration;
    eprintln!(
        "cgstorm: agent ready after {:.1} s under {}; running {} for up to {:.0?}",
        avm.boot_time.as_secs_f64(),
        avm.accel,
        info.program,
        limits.deadline
    );
    let log = ConsoleLog::open(args.keep_console.as_deref(), &args.program)?;
    let watch = ConsoleWatch::new(Some(Box::new(BufWriter::new(log.file()?))));
    let c = conclude(
        &mut avm.vm,
        ctx.program,
        &target,
        duration,
        &limits,
        &signal::interrupted,
        watch,
    );
    warnings.extend(c.warnings.iter().cloned());
    let kept = log.finish(c.verdict != Verdict::Pass)?;
    let mut result = Ok(c.verdict.exit_code());
    if let Some(path) = &args.json {
        let names = OpNames::new(ctx.program);
        let report = json::build(&json::Parts {
            info: &info,
            verdict: &c.verdict,
            target: &target,
            outcome: &c.outcome,
            model: &c.model,
            findings: &c.findings,
            warnings: &warnings,
            names: &names,
            console_log: kept.as_ref().map(|p| p.display().to_string()),
            rates: &c.rates,
        });
        if let Err(source) = write_json(path, &report) {
            result = Err(RunError::Output {
                path: path.clone(),
                source,
            });
        }
    }
    print!(
        "{}",
        verdict::render(
            &info,
            &c.verdict,
            &c.findings,
            &warnings,
            &c.outcome,
            &c.rates
        )
    );
    if let Some(p) = &kept {
        eprintln!("cgstorm: console log in {}", p.display());
    }
    // Findings are stored before the VM is torn down.
    if let Some(workdir) = &args.workdir {
        if let Err(e) = store_findings(workdir, ctx.program, &info, &c.findings, kept.as_deref()) {
            result = Err(e);
        }
    }
    if !c.outcome.vm_gone {
        avm.vm.kill();
    }
    drop(avm);
    result
}

/// Whether the booted guest can run the program: every device the VM
/// was given is there, and fault injection where the program asks for it.
fn guest_can_run(program: &Program, hello: &Hello) -> Result<(), RunError> {
    if !hello.missing_devices.is_empty() {
        return Err(RunError::Guest(format!(
            "the guest has no /dev/{} although the vm was given them; see the kernel's \
             messages with --echo",
            hello.missing_devices.join(", /dev/")
        )));
    }
    can_inject_faults(program, hello)
}

/// What the run is (program, kernel, how long its loops run) and its time
/// limits, from the command line, the program and the booted VM.
fn run_info<V: Vm>(ctx: &Ctx<'_>, avm: &AgentVm<V>) -> (RunInfo, Limits) {
    let args = ctx.args;
    let duration = args
        .duration
        .or(ctx.program.duration)
        .map_or(DEFAULT_DURATION, |d| Duration::from_millis(d.0));
    let limits = Limits::new(
        avm.accel,
        ctx.program,
        duration,
        args.stall.map(|s| Duration::from_millis(s.0)),
    );
    let info = RunInfo {
        program: args.program.display().to_string(),
        kernel_release: avm.hello.kernel_release.clone(),
        accel: avm.accel.to_string(),
        backend: args.vm.backend.name().into(),
        boot: avm.boot_time,
        duration,
    };
    (info, limits)
}

/// Stores the run's findings in `workdir` (`--workdir`), each said with
/// its directory; the error of the last that could not be stored.
fn store_findings(
    workdir: &Path,
    program: &Program,
    info: &RunInfo,
    findings: &[Finding],
    console: Option<&Path>,
) -> Result<(), RunError> {
    let yaml = program.to_yaml();
    let context = format!(
        "{} on {} ({}, {})",
        info.program, info.kernel_release, info.accel, info.backend
    );
    let mut result = Ok(());
    for f in findings {
        match f.store(workdir, &yaml, console, &context) {
            Ok((dir, n)) => eprintln!("cgstorm: finding stored in {} (seen {n}x)", dir.display()),
            Err(source) => {
                result = Err(RunError::Output {
                    path: workdir.to_path_buf(),
                    source,
                })
            }
        }
    }
    result
}

fn write_json(path: &Path, report: &json::RunJson<'_>) -> std::io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    serde_json::to_writer_pretty(&mut w, report)?;
    writeln!(w)?;
    w.flush()
}

/// What a run concluded.
pub struct Conclusion {
    /// What came back.
    pub outcome: Outcome,
    /// The model's answer.
    pub model: ModelCheck,
    /// The findings.
    pub findings: Vec<Finding>,
    /// The verdict.
    pub verdict: Verdict,
    /// Warnings from the run and the check.
    pub warnings: Vec<String>,
    /// Ops per second per op kind.
    pub rates: Vec<rates::OpRate>,
    /// How long the host took to judge the run (model, findings, checks).
    pub check: Duration,
}

/// Runs `program` for `duration` on the agent of a booted `vm` and judges
/// it: the core of `cgstorm run` without files, printing or the boot.
pub fn conclude(
    vm: &mut dyn Vm,
    program: &Program,
    target: &Target,
    duration: Duration,
    limits: &Limits,
    stop: &dyn Fn() -> bool,
    mut watch: ConsoleWatch,
) -> Conclusion {
    let order = RunOrder {
        program: program.to_yaml(),
        duration_ms: duration.as_millis() as u64,
        stall_ms: limits.stall.as_millis() as u64,
        cover: limits.cover != limits::Cover::Off,
        cover_afresh: limits.cover == limits::Cover::Afresh,
        trace: limits.trace,
        ..Default::default()
    };
    let shape = (program.lanes.len(), program.steps());
    let mut outcome = session::run(vm, &order, shape, limits, stop, &mut watch);
    if let (End::VmExited { .. }, Some(message)) = (&outcome.end, watch.agent_fatal()) {
        // The agent died and said why only on the console.
        outcome.end = End::AgentFatal {
            message: message.to_string(),
        };
    }
    let checking = std::time::Instant::now();
    let (reports, flushed) = watch.finish();
    let mut warnings = outcome.warnings.clone();
    if let Err(e) = flushed {
        warnings.push(format!("cannot write the console log: {e}"));
    }
    let model = check_model(program, target, &outcome);
    if let ModelCheck::Unchecked(why) = &model {
        warnings.push(format!("the model could not check this run: {why}"));
    }
    let names = OpNames::new(program);
    let unchecked = outcome.trace.trace().steps.len() - outcome.trace.completed();
    if unchecked > 0 && !matches!(outcome.end, End::Finished { error: None }) {
        warnings.push(
            "the step in progress when the run stopped was not checked against the model".into(),
        );
    }
    let hung = match &outcome.end {
        End::Hang { stall: Some(s), .. } => Some(s.op),
        _ => None,
    };
    for s in outcome.stalls.iter().filter(|s| Some(s.op) != hung) {
        warnings.push(format!(
            "{} `{}` ran for {} ms before the watchdog reported it",
            s.op,
            names.text(s.op),
            s.stalled_ms
        ));
    }
    let steps = program.steps();
    let mut findings = findings(&names, steps, &model, &reports, &outcome.end, limits.tcg);
    findings.extend(checks::check_findings(
        program,
        &outcome.trace,
        &mut warnings,
    ));
    checks::mark_known(
        program,
        &target.kernel.release,
        &mut findings,
        &mut warnings,
    );
    let verdict = Verdict::of(&findings, &outcome.end);
    let rates = rates::op_rates(program, &outcome.trace);
    Conclusion {
        outcome,
        model,
        findings,
        verdict,
        warnings,
        rates,
        check: checking.elapsed(),
    }
}
