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

pub use script::{generate, Provenance};

use crate::vm_args::BootArgs;

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
    // The kernel, the accelerator and the agent of `--run`.
    #[command(flatten, next_help_heading = "With --run")]
    pub boot: BootArgs,
    /// How long `repeat: {for: run}` blocks run (default: the program's
    /// `duration`, else 10s).
    #[arg(long, help_heading = "With --run")]
    pub duration: Option<Millis>,
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
    let script = generate(&program, &prov);
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
    Ok(vm::run(args, &program, &script))
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
        let p = crate::check::load(&source.to_path_buf())?;
        let prov = Provenance {
            source: source.display().to_string(),
            failure: Vec::new(),
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
    let p = crate::check::load(&file)?;
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
        },
    ))
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
