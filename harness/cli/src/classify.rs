//! `cgstorm classify`: finds the kernel reports in a saved console log.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cgstorm_report::Report;

/// Arguments of `cgstorm classify`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    /// console log file; "-" or absent reads stdin
    pub log: Option<PathBuf>,
    /// print the reports as a JSON array instead of `<kind>\t<title>` lines
    #[arg(long)]
    pub json: bool,
}

/// Prints every report in the log, one `<kind>\t<title>` line each (or a JSON
/// array with `--json`). Returns the exit code: 0 when the log has no report,
/// 1 when it has some. An unreadable log is an error. Bytes that are not
/// UTF-8 are replaced, not refused.
pub fn run(args: &ClassifyArgs) -> anyhow::Result<u8> {
    run_to(args, &mut io::stdout().lock())
}

fn run_to(args: &ClassifyArgs, out: &mut impl Write) -> anyhow::Result<u8> {
    let bytes = read_log(args.log.as_deref())?;
    let reports = cgstorm_report::parse(&String::from_utf8_lossy(&bytes));
    write_reports(out, &reports, args.json).context("cannot write the reports")?;
    Ok(if reports.is_empty() { 0 } else { 1 })
}

fn read_log(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        None => read_stdin(),
        Some(p) if p == Path::new("-") => read_stdin(),
        Some(p) => fs::read(p).with_context(|| format!("cannot read console log {}", p.display())),
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .context("cannot read console log from stdin")?;
    Ok(bytes)
}

fn write_reports(out: &mut impl Write, reports: &[Report], json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, reports)?;
        writeln!(out)?;
    } else {
        for r in reports {
            writeln!(out, "{}\t{}", r.kind, r.title)?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A synthesised two-line console, not a recording.
    const WARN: &str = "[    1.000000] WARNING: CPU: 0 PID: 1 at fs/super.c:1 evict+0x1/0x2\n\
                        [    1.000001] Call Trace:\n";

    #[test]
    fn lines_and_json() {
        let reports = cgstorm_report::parse(WARN);
        let mut text = Vec::new();
        write_reports(&mut text, &reports, false).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "warning\tWARNING in evict\n"
        );
        let mut json = Vec::new();
        write_reports(&mut json, &reports, true).unwrap();
        let back: Vec<Report> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, reports);
    }

    #[test]
    fn exit_codes_and_errors() {
        let dir = std::env::temp_dir().join(format!("cgstorm-classify-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let with = dir.join("with.log");
        fs::write(&with, WARN).unwrap();
        let without = dir.join("without.log");
        fs::write(&without, b"[    0.000000] Linux version 6.1.0\n\xff\xfe\n").unwrap();
        let args = |log: &Path| ClassifyArgs {
            log: Some(log.to_owned()),
            json: false,
        };
        let mut out = Vec::new();
        assert_eq!(run_to(&args(&with), &mut out).unwrap(), 1);
        assert_eq!(run_to(&args(&without), &mut out).unwrap(), 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "warning\tWARNING in evict\n"
        );
        let err = run_to(&args(&dir.join("missing.log")), &mut Vec::new()).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("cannot read console log "),
            "{err:#}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
