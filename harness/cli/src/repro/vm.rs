//! `cgstorm repro --sh --run`: boot a VM with busybox in its initramfs, send
//! the script (and the helper, compiled here statically) to the agent as a
//! [`HostMsg::Shell`] order, and judge the result lines with the model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cgstorm_proto::proto::{AgentMsg, HostMsg, ShellOrder};
use cgstorm_vm::machine::{Backend, BootPlan, MachineOpts};
use cgstorm_vm::qemu::QemuVm;
use cgstorm_vm::{Accel, AgentVm, ConsoleEvent, Vm};
use cgstorm_workloads::Program;

use super::results::{self, Judgement};
use super::script::{Script, DEFAULT_DURATION_MS, HELPER_C, SEQUENCE_MARK};
use super::ReproArgs;
use crate::run::ask::ask;
use crate::run::console::ConsoleWatch;
use crate::run::error::{chain, RunError};
use crate::run::launch::{boot_qemu, find_agent, find_kernel};

/// Where the guest's busybox comes from (Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";
/// Time for the script's own work besides the run duration (mkfs, setup),
/// under KVM; scaled for TCG.
const SETUP_TIME: Duration = Duration::from_secs(60);

/// Compiles the helper statically from the embedded source; its bytes.
pub fn build_helper(dir: &Path) -> Result<Vec<u8>, String> {
    let src = dir.join("helper.c");
    let out = dir.join("cgstorm-helper");
    std::fs::write(&src, HELPER_C).map_err(|e| format!("write {}: {e}", src.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-static", "-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| format!("cannot run {cc}: {e}"))?;
    if !st.success() {
        return Err(format!(
            "{cc} -static failed ({st}): static glibc (libc6-dev) is needed"
        ));
    }
    std::fs::read(&out).map_err(|e| format!("read {}: {e}", out.display()))
}

/// Runs the script in a VM; returns the exit code (errors are printed).
/// `programs`: the program, or for a sequence script the programs before
/// it, then it.
/// `title`: the finding's, if the script reproduces one (the run says
/// whether the kernel printed it again).
pub fn run(args: &ReproArgs, programs: &[Program], script: &Script, title: Option<&str>) -> u8 {
    match execute(args, programs, script, title) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cgstorm: {}", chain(&e));
            e.exit_code()
        }
    }
}

fn execute(
    args: &ReproArgs,
    programs: &[Program],
    script: &Script,
    title: Option<&str>,
) -> Result<u8, RunError> {
    if args.vm.backend != Backend::Qemu {
        return Err(RunError::Options(
            "repro --run boots QEMU only (the script needs busybox in cgstorm's initramfs): \
             leave out --backend, or run the written script in a virtme-ng guest yourself"
                .into(),
        ));
    }
    let tmp = tempfile::tempdir().map_err(|e| RunError::Guest(format!("temp dir: {e}")))?;
    let files = guest_files(script, tmp.path())?;
    // The machine `cgstorm run` boots with the same options (and the
    // model's), the way `run` boots it, with busybox for the script's shell.
    let machine = args.vm.machine();
    let (avm, target) = boot_for_script(args, &machine)?;
    let duration_ms = finding_duration_ms(args, programs);
    let order = shell_order(programs, script, files, duration_ms, avm.accel);
    eprintln!(
        "cgstorm: agent ready after {:.1} s under {} on {}; running the script ({} ms)",
        avm.boot_time.as_secs_f64(),
        avm.accel,
        avm.hello.kernel_release,
        duration_ms
    );
    let (status, stdout, stderr, reports) = run_script(avm, order)?;
    let code = verdict(
        programs, &target, status, &stdout, &stderr, &reports, args.echo,
    );
    if let Some(t) = title {
        println!(
            "repro: the finding ({t}) {}",
            showed_again(t, &reports, &stderr)
        );
    }
    Ok(code)
}

/// Whether a run showed the finding `title` again: a kernel report the
/// console printed, or for a `leak` finding, the script's own eventual
/// check (`cgstorm: leak: …` on its stderr).
fn showed_again(title: &str, reports: &[cgstorm_report::Report], stderr: &str) -> &'static str {
    if title.starts_with(cgstorm_proto::contract::LEAK_PREFIX) {
        if stderr.lines().any(|l| l.starts_with("cgstorm: leak: ")) {
            "showed again: the script's check after the program found the leak"
        } else {
            "did not show in this run: the script's check after the program found no leak"
        }
    } else if reports.iter().any(|r| r.title == title) {
        "showed again: the kernel printed it"
    } else {
        "did not show in this run (a race may need more runs)"
    }
}

/// The files the guest gets: the script, and the C helper (built in
/// `tmp`) when the script needs it.
fn guest_files(script: &Script, tmp: &Path) -> Result<Vec<(String, Vec<u8>)>, RunError> {
    let mut files = vec![("repro.sh".to_string(), script.text.clone().into_bytes())];
    if script.needs_helper {
        let bytes = build_helper(tmp).map_err(RunError::Guest)?;
        files.push(("cgstorm-helper".to_string(), bytes));
    }
    if !Path::new(BUSYBOX).is_file() {
        return Err(RunError::Guest(format!(
            "no {BUSYBOX} to put into the guest: apt-get install busybox-static"
        )));
    }
    Ok(files)
}

/// Boots `machine` on the kernel `args` name, with busybox beside the
/// agent; the VM and the model's target for that kernel.
fn boot_for_script(
    args: &ReproArgs,
    machine: &MachineOpts,
) -> Result<(AgentVm<QemuVm>, cgstorm_workloads::model::Target), RunError> {
    let kernel = find_kernel(args.vm.boot.kernel.as_deref())?;
    let plan = BootPlan {
        kernel: &kernel,
        agent: find_agent(args.vm.boot.agent.as_deref())?,
        backend: Backend::Qemu,
        accel: args.vm.boot.accel,
        machine,
        echo: args.echo,
        binaries: vec![PathBuf::from(BUSYBOX)],
    };
    eprintln!("cgstorm: booting {} …", kernel.describe());
    crate::run::signal::install();
    let avm = boot_qemu(plan)?;
    let hello = &avm.hello;
    if !hello.missing_devices.is_empty() {
        return Err(RunError::Guest(format!(
            "the guest has no /dev/{}",
            hello.missing_devices.join(", /dev/")
        )));
    }
    let mut warnings = Vec::new();
    let target = machine.target(crate::run::kernel_model(
        hello,
        &kernel,
        args.vm.switches(),
        &mut warnings,
    )?);
    for w in &warnings {
        eprintln!("cgstorm: warning: {w}");
    }
    Ok((avm, target))
}

/// How long the finding's program (the last) runs: `--duration`, or the
/// program's own, or the default.
fn finding_duration_ms(args: &ReproArgs, programs: &[Program]) -> u64 {
    let program = programs.last().expect("at least the program");
    args.duration
        .or(program.duration)
        .map_or(DEFAULT_DURATION_MS, |d| d.0)
}

/// The agent's order to run the script, with a time limit that covers
/// every program of a sequence (each as long as it ran in its campaign)
/// and their setup, scaled for the accelerator.
fn shell_order(
    programs: &[Program],
    script: &Script,
    files: Vec<(String, Vec<u8>)>,
    duration_ms: u64,
    accel: Accel,
) -> ShellOrder {
    let setup = SETUP_TIME * accel.timeout_scale();
    // An op running this long is a hang: `cgstorm run`'s stall limit.
    let stall_s = crate::run::limits::STALL.as_secs() * u64::from(accel.timeout_scale());
    let earlier_ms: u64 = programs[..programs.len() - 1]
        .iter()
        .map(|p| 2 * p.duration.map_or(DEFAULT_DURATION_MS, |d| d.0) + setup.as_millis() as u64)
        .sum();
    let timeout_ms = 2 * duration_ms + setup.as_millis() as u64 + earlier_ms;
    let helper_env = if script.needs_helper {
        "CGSTORM_HELPER=\"$PWD/cgstorm-helper\" "
    } else {
        ""
    };
    ShellOrder {
        script: format!(
            "{helper_env}CGSTORM_TIMES=1 CGSTORM_STALL={stall_s} \
             exec sh ./repro.sh --duration {duration_ms}ms"
        ),
        files,
        timeout_ms,
    }
}

/// Runs the script in the guest, reading the console while it runs and
/// to its end after; the script's status, stdout and stderr and the
/// kernel's reports. The VM is shut down (killed if the agent failed).
fn run_script(
    mut avm: AgentVm<QemuVm>,
    order: ShellOrder,
) -> Result<(i32, String, String, Vec<cgstorm_report::Report>), RunError> {
    let mut watch = ConsoleWatch::new(None);
    let timeout = Duration::from_millis(order.timeout_ms) + Duration::from_secs(120);
    let done = ask(
        &mut avm.vm,
        Some(&HostMsg::Shell(order)),
        &mut watch,
        timeout,
        |m| match m {
            AgentMsg::ShellDone {
                status,
                stdout,
                stderr,
            } => Ok((status, stdout, stderr)),
            other => Err(Box::new(other)),
        },
    );
    while let ConsoleEvent::Line(l) = avm.vm.console_line(Duration::from_millis(200)) {
        watch.line(&l);
    }
    let (status, stdout, stderr) = match done {
        Ok(d) => d,
        Err(e) => {
            avm.vm.kill();
            return Err(RunError::Guest(format!(
                "{e}\nconsole tail:\n{}",
                avm.vm.console_tail()
            )));
        }
    };
    let _ = avm.shutdown();
    let (reports, _) = watch.finish();
    Ok((status, stdout, stderr, reports))
}

fn verdict(
    programs: &[Program],
    target: &cgstorm_workloads::model::Target,
    status: i32,
    stdout: &str,
    stderr: &str,
    reports: &[cgstorm_report::Report],
    echo: bool,
) -> u8 {
    if echo {
        print!("{stdout}");
    }
    for l in stderr.lines() {
        eprintln!("script: {l}");
    }
    for r in reports {
        eprintln!("cgstorm: the kernel printed a report: {}", r.title);
    }
    if programs.len() == 1 {
        return verdict_one(&programs[0], target, status, stdout, stderr, "");
    }
    // A sequence: each program's results follow its mark; the programs
    // after the last mark printed did not run.
    let parts = split_sequence(stdout);
    if parts.is_empty() {
        eprintln!("cgstorm: the sequence script ran no program (exit status {status})");
        return 3;
    }
    let mut code = 0;
    for (k, (i, out)) in parts.iter().enumerate() {
        let Some(p) = programs.get(*i) else {
            println!(
                "repro: FAIL (the script names program {i}, it has {})",
                programs.len()
            );
            return 1;
        };
        let last = k == parts.len() - 1;
        // Only the program running when the script ended can have hung or
        // failed; the others ended normally.
        let (st, err) = if last { (status, stderr) } else { (0, "") };
        let what = format!("program {} of {} `{}`: ", i + 1, programs.len(), p.name);
        code = code.max(verdict_one(p, target, st, out, err, &what));
    }
    if parts.len() < programs.len() {
        println!(
            "repro: FAIL (the sequence stopped after program {} of {})",
            parts.len(),
            programs.len()
        );
        code = code.max(1);
    }
    code
}

/// Splits a sequence script's stdout at its `cgstorm-program K NAME` marks:
/// (K, the output that followed).
pub(super) fn split_sequence(stdout: &str) -> Vec<(usize, String)> {
    let mut parts: Vec<(usize, String)> = Vec::new();
    for l in stdout.lines() {
        if let Some(rest) = l.strip_prefix(SEQUENCE_MARK) {
            if let Some(k) = rest.split_whitespace().next().and_then(|k| k.parse().ok()) {
                parts.push((k, String::new()));
                continue;
            }
        }
        if let Some((_, out)) = parts.last_mut() {
            out.push_str(l);
            out.push('\n');
        }
    }
    parts
}

/// Judges one program's results; `what` prefixes the verdict line.
fn verdict_one(
    program: &Program,
    target: &cgstorm_workloads::model::Target,
    status: i32,
    stdout: &str,
    stderr: &str,
    what: &str,
) -> u8 {
    let lines = match results::parse(stdout) {
        Ok(l) => l,
        Err(e) => {
            println!("repro: {what}FAIL (the output does not parse: {e})");
            return 1;
        }
    };
    if lines.is_empty() && status != 0 {
        eprintln!("cgstorm: {what}the script printed no results (exit status {status})");
        return 3;
    }
    if status != 0 {
        eprintln!("cgstorm: warning: {what}the script's exit status is {status}; judging the {} results it printed", lines.len());
    }
    let mut lines = lines;
    let mut complete = status == 0;
    if let Some(l) = stderr.lines().find(|l| l.contains(" stuck in op ")) {
        println!("repro: {what}HANG ({})", l.trim_start_matches("cgstorm: "));
        if let Some(stuck) = results::stuck_op(l) {
            lines = results::before_step_of(program, &lines, stuck);
            complete = false;
            eprintln!(
                "cgstorm: judging the {} results of the steps before the hang (ops of its step may have taken effect without returning)",
                lines.len()
            );
        }
    }
    let j = results::judge(program, target, &lines, complete);
    match &j {
        Judgement::Agree { .. } => {
            println!("repro: {what}PASS ({j})");
            0
        }
        Judgement::Unchecked(_) => {
            println!("repro: {what}PASS, unchecked ({j})");
            0
        }
        Judgement::Diverge { .. } | Judgement::BadOutput(_) => {
            println!("repro: {what}FAIL ({j})");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::showed_again;

    #[test]
    fn a_leak_shows_again_by_the_scripts_own_check() {
        let leak = "leak: removed cgroups never freed after dax pins";
        let said =
            "cgstorm: 2 lanes\ncgstorm: leak: removed cgroups are still dying: 1 after 20 s\n";
        assert!(showed_again(leak, &[], said).starts_with("showed again"));
        assert!(showed_again(leak, &[], "cgstorm: done\n").starts_with("did not show"));
        // Not a leak: the kernel must print it; the script's line is not it.
        assert!(showed_again("WARNING in f", &[], said).starts_with("did not show"));
    }
}
