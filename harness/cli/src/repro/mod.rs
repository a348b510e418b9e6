//! `cgstorm repro`: turn a program (or a stored finding) into a standalone
//! POSIX shell reproducer a kernel developer can run as root in any VM,
//! and with `--run`, run that script in a VM and judge its results with
//! the model.
//!
//! Exit codes: 0 written (or, with `--run`, the script's results agree
//! with the model), 1 a result the model does not allow, 2 bad input,
//! 3 infrastructure failure.

mod ops;
mod results;
mod script;
mod vm;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cgstorm_workloads::{Millis, Program};

pub use script::{generate, generate_sequence, Provenance};

use crate::vm_args::VmArgs;

/// Arguments of `cgstorm repro`.
#[derive(clap::Args, Debug)]
pub struct ReproArgs {
    /// A program (YAML) or a finding directory (WORKDIR/findings/<hash>/).
    pub source: PathBuf,
    /// Write a POSIX sh script (the only kind of reproducer so far).
    #[arg(long)]
    pub sh: bool,
    /// Where to write the script (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Run the script in a VM (QEMU, cgstorm's initramfs with busybox) and
    /// judge its results with the model.
    #[arg(long)]
    pub run: bool,
    // The kernel, accelerator, agent and machine of `--run` (QEMU only:
    // the script needs busybox in cgstorm's initramfs).
    #[command(flatten, next_help_heading = "With --run")]
    pub vm: VmArgs,
    /// How long `repeat: {for: run}` blocks run (default: the program's
    /// `duration`, else 10s).
    #[arg(long, help_heading = "With --run")]
    pub duration: Option<Millis>,
    /// For a finding with programs before it (before/): the finding's
    /// program alone, without them.
    #[arg(long)]
    pub alone: bool,
    /// Print the script's output and the console as they come.
    #[arg(long, help_heading = "With --run")]
    pub echo: bool,
}

/// Runs `repro`; returns the exit code.
pub fn run(args: &ReproArgs) -> Result<u8> {
    if !args.sh {
        bail!("say which reproducer to write: --sh (a POSIX shell script)");
    }
    let (program, prov) = load(&args.source)?;
    // A finding that needs the programs before it (its before/) gets a
    // script that runs them first.
    let before = if args.source.is_dir() && !args.alone {
        crate::findings::load_before(&args.source)?
    } else {
        Vec::new()
    };
    let faulted = script::faulted_ops(&program);
    if !faulted.is_empty() {
        eprintln!(
            "cgstorm: warning: {} op(s) inject faults (fail_nth), which a shell script cannot: \
             they run without them (the script's header lists them; `cgstorm run` injects them)",
            faulted.len()
        );
    }
    let script = if before.is_empty() {
        generate(&program, &prov)
    } else {
        eprintln!(
            "cgstorm: {} needs {} program(s) before it (before/): the script runs them first{}",
            args.source.display(),
            before.len(),
            if before.len() > 5 {
                "; `cgstorm minimize` would cut them down"
            } else {
                ""
            }
        );
        generate_sequence(&before, &program, &prov)
    };
    if let Some(out) = &args.output {
        std::fs::write(out, &script.text)
            .with_context(|| format!("cannot write {}", out.display()))?;
        make_executable(out)?;
        eprintln!("cgstorm: wrote {}", out.display());
    } else if !args.run {
        print!("{}", script.text);
    }
    if !args.run {
        return Ok(0);
    }
    let mut programs = before;
    programs.push(program);
    Ok(vm::run(args, &programs, &script, prov.title.as_deref()))
}

fn make_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(p)?.permissions();
    perm.set_mode(perm.mode() | 0o111);
    std::fs::set_permissions(p, perm).with_context(|| format!("chmod {}", p.display()))
}

/// The program and where it came from: a program file, or a finding
/// directory (its program.yaml, description, report and console.log).
pub fn load(source: &Path) -> Result<(Program, Provenance)> {
    if !source.is_dir() {
        let p = crate::programs::load(source)?;
        let prov = Provenance {
            source: source.display().to_string(),
            failure: Vec::new(),
            title: None,
        };
        return Ok((p, prov));
    }
    let file = source.join("program.yaml");
    if !file.is_file() {
        bail!(
            "{} is a directory without program.yaml: give a program file or a finding directory",
            source.display()
        );
    }
    let p = crate::programs::load(&file)?;
    let read = |n: &str| std::fs::read_to_string(source.join(n)).unwrap_or_default();
    Ok((
        p,
        Provenance {
            source: source.display().to_string(),
            failure: failure_lines(
                &read("description"),
                &read("report"),
                &read("console.log"),
                &read("seen"),
            ),
            title: finding_title(&read("report")),
        },
    ))
}

/// A kernel finding's title: its stored report's, as the console analysis
/// gives it. Model divergences and agent hangs have no report: `--run`
/// judges those by the script's results alone.
pub fn finding_title(report: &str) -> Option<String> {
    cgstorm_report::parse(report)
        .into_iter()
        .next()
        .map(|r| r.title)
}

/// Lines of reports shown in the header.
const REPORT_LINES: usize = 20;

/// The header's account of a finding: title, kernel, how it looked.
fn failure_lines(description: &str, report: &str, console: &str, seen: &str) -> Vec<String> {
    let mut v = Vec::new();
    let title = description.trim();
    v.push(format!(
        "Failure: {}",
        if title.is_empty() {
            "(no description)"
        } else {
            title
        }
    ));
    let release = console.lines().find_map(|l| {
        let rest = &l[l.find("Linux version ")? + "Linux version ".len()..];
        rest.split_whitespace().next().map(str::to_string)
    });
    match release {
        Some(r) => v.push(format!(
            "Found on kernel {r} (its configuration: the config-{r} or .config cgstorm booted with)"
        )),
        None if seen.trim().is_empty() => {
            v.push("Found on: not recorded with the finding (no console.log, no seen)".into())
        }
        None => v.push("Found on: the kernel named in `seen` below (no console.log kept)".into()),
    }
    for l in seen.lines().take(3) {
        v.push(format!("Seen: {l}"));
    }
    if !report.trim().is_empty() {
        v.push("What the kernel printed (the report's first lines):".into());
        for l in report.lines().take(REPORT_LINES) {
            v.push(format!("  {l}"));
        }
        if report.lines().count() > REPORT_LINES {
            v.push("  ...".into());
        }
    }
    v
}
