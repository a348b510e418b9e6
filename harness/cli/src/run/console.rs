//! Watching the guest console during a run: every line goes to the log file
//! as it arrives and through the report scanner, so kernel reports are found
//! while the VM still runs and nothing is lost if it dies; the log file is
//! the user's or a temporary one kept only when the run did not pass.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cgstorm_report::{ConsoleScanner, Report, StallWatch};

use super::error::RunError;

/// The console of one run.
pub struct ConsoleWatch {
    scanner: ConsoleScanner,
    stall: StallWatch,
    reports: Vec<Report>,
    log: Option<Box<dyn Write>>,
    log_error: Option<io::Error>,
    agent_fatal: Option<String>,
    /// A line to look out for ([`ConsoleWatch::waiting_for`]), and whether
    /// it came.
    marker: Option<(&'static str, bool)>,
}

/// What the agent logs to the kernel log before it gives up (it may not
/// get to tell the host over its port).
const AGENT_FATAL: &str = "cgstorm: fatal: ";

impl ConsoleWatch {
    /// A watch that writes the log to `log`, if given.
    pub fn new(log: Option<Box<dyn Write>>) -> ConsoleWatch {
        ConsoleWatch {
            scanner: ConsoleScanner::new(),
            stall: StallWatch::new(),
            reports: Vec::new(),
            log,
            log_error: None,
            agent_fatal: None,
            marker: None,
        }
    }

    /// This watch, looking out for a line holding `marker` (an end line
    /// the agent prints: [`ConsoleWatch::marker_seen`]).
    pub fn waiting_for(mut self, marker: &'static str) -> ConsoleWatch {
        self.marker = Some((marker, false));
        self
    }

    /// Whether a line holding the marker came.
    pub fn marker_seen(&self) -> bool {
        self.marker.is_some_and(|(_, seen)| seen)
    }

    /// Takes one console line.
    pub fn line(&mut self, line: &str) {
        if let Some(log) = self.log.as_mut() {
            if let Err(e) = writeln!(log, "{line}") {
                self.log_error.get_or_insert(e);
                self.log = None;
            }
        }
        if let Some((m, seen)) = self.marker.as_mut() {
            *seen |= line.contains(*m);
        }
        if let Some((_, why)) = line.split_once(AGENT_FATAL) {
            self.agent_fatal = Some(why.trim_end().to_string());
        }
        self.stall.line(line);
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.reports.extend(self.scanner.feed(&bytes));
    }

    /// No report so far, finished or still printing.
    pub fn clean_so_far(&self) -> bool {
        self.reports.is_empty() && self.scanner.pending().is_none()
    }

    /// The last fatal error the agent logged on the console.
    pub fn agent_fatal(&self) -> Option<&str> {
        self.agent_fatal.as_deref()
    }

    /// Flushes the log; the first write error, if any, comes back.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.log_error.take() {
            return Err(e);
        }
        match self.log.as_mut() {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    /// Ends the console: completes open reports and returns all of them
    /// (soft lockups that every vCPU reported at once retitled as a VM
    /// stall).
    pub fn finish(mut self) -> (Vec<Report>, io::Result<()>) {
        let flushed = self.flush();
        self.reports.extend(self.scanner.finish());
        cgstorm_report::retitle(&mut self.reports, self.stall.stall().as_ref());
        (self.reports, flushed)
    }
}

/// The console log file: the user's, or a temporary one kept only when
/// the run did not pass.
pub enum ConsoleLog {
    /// The user's file.
    Kept(PathBuf),
    /// A temporary file.
    Temp(tempfile::NamedTempFile),
}

impl ConsoleLog {
    /// Opens the user's file `keep`, or a temporary one named after `program`.
    pub fn open(keep: Option<&Path>, program: &Path) -> Result<ConsoleLog, RunError> {
        match keep {
            Some(p) => Ok(ConsoleLog::Kept(p.to_path_buf())),
            None => temp_log(program, "").map(ConsoleLog::Temp),
        }
    }

    /// A handle to write the log through.
    pub fn file(&self) -> Result<File, RunError> {
        match self {
            ConsoleLog::Kept(p) => File::create(p).map_err(|source| RunError::Output {
                path: p.clone(),
                source,
            }),
            ConsoleLog::Temp(t) => t.reopen().map_err(|source| RunError::Output {
                path: t.path().to_path_buf(),
                source,
            }),
        }
    }

    /// Where the log stays, if it does.
    pub fn finish(self, keep: bool) -> Result<Option<PathBuf>, RunError> {
        match self {
            ConsoleLog::Kept(p) => Ok(Some(p)),
            ConsoleLog::Temp(t) if keep => {
                t.keep()
                    .map(|(_, p)| Some(p))
                    .map_err(|e| RunError::Output {
                        path: e.file.path().to_path_buf(),
                        source: e.error,
                    })
            }
            ConsoleLog::Temp(_) => Ok(None),
        }
    }
}

/// A temporary `cgstorm-<program's stem>-<what>*.console.log`.
fn temp_log(program: &Path, what: &str) -> Result<tempfile::NamedTempFile, RunError> {
    let stem = program
        .file_stem()
        .map_or_else(|| "run".into(), |s| s.to_string_lossy().into_owned());
    tempfile::Builder::new()
        .prefix(&format!("cgstorm-{stem}-{what}"))
        .suffix(".console.log")
        .tempfile()
        .map_err(|source| RunError::Output {
            path: std::env::temp_dir(),
            source,
        })
}

/// The console of the boot, written by the VM as it comes: kept when the
/// boot fails (at `--keep-console`'s path, else as a temporary file that
/// stays), dropped once the agent said hello (the run's log has the boot's
/// lines too).
pub struct BootLog(tempfile::NamedTempFile);

impl BootLog {
    /// A temporary file named after `program`.
    pub fn new(program: &Path) -> Result<BootLog, RunError> {
        temp_log(program, "boot-").map(BootLog)
    }

    /// Where the VM writes it.
    pub fn path(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }

    /// After a failed boot: the log moved to `keep` (or the temporary file
    /// kept), and where it is.
    pub fn keep(self, keep: Option<&Path>) -> io::Result<PathBuf> {
        match keep {
            Some(p) => {
                std::fs::copy(self.0.path(), p)?;
                Ok(p.to_path_buf())
            }
            None => self.0.keep().map(|(_, p)| p).map_err(|e| e.error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use cgstorm_report::Kind;

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logs_every_line_and_ties_reports_to_markers() {
        let log = Shared::default();
        let mut w = ConsoleWatch::new(Some(Box::new(log.clone())));
        for l in [
            "[    1.0] cgstorm: lane 1 op 4 rmdir a",
            "[    1.1] WARNING: CPU: 0 PID: 1 at fs/super.c:1 evict+0x1/0x2",
            "[    1.2] Call Trace:",
            "[    1.3] cgstorm: fatal: mkdir /x: Read-only file system",
        ] {
            w.line(l);
        }
        assert_eq!(w.agent_fatal(), Some("mkdir /x: Read-only file system"));
        let (reports, flushed) = w.finish();
        flushed.unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].kind, Kind::Warning);
        let m = reports[0].marker.as_ref().unwrap();
        assert_eq!((m.lane, m.op, m.text.as_str()), (1, 4, "rmdir a"));
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn soft_lockups_of_every_vcpu_at_once_are_filed_as_a_vm_stall() {
        let log = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../report/testdata/cgstorm-soak-vm-stall-6.1.log"),
        )
        .unwrap();
        let mut w = ConsoleWatch::new(None);
        for l in String::from_utf8_lossy(&log).lines() {
            w.line(l);
        }
        let (reports, _) = w.finish();
        let titles: Vec<&str> = reports.iter().map(|r| r.title.as_str()).collect();
        // Each vCPU's lockup is named by where its loop was entered.
        assert!(
            titles.contains(
                &"BUG: soft lockup on every vCPU at once in cgroup_subtree_control_write (a VM stall?)"
            ),
            "{titles:?}"
        );
        assert!(
            !titles.iter().any(|t| t.starts_with("BUG: soft lockup in")),
            "every soft lockup of the stall is filed as the VM stall: {titles:?}"
        );
    }
}

#[cfg(test)]
mod boot_log_tests {
    use super::*;

    #[test]
    fn a_failed_boots_console_stays_where_the_user_asked_or_in_a_kept_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = BootLog::new(Path::new("corpus/semantics/tasks.yaml")).unwrap();
        std::fs::write(log.path(), "Marking stable\n").unwrap();
        let asked = dir.path().join("tasks.console");
        let kept = log.keep(Some(&asked)).unwrap();
        assert_eq!(kept, asked);
        assert_eq!(std::fs::read_to_string(&asked).unwrap(), "Marking stable\n");

        let log = BootLog::new(Path::new("tasks.yaml")).unwrap();
        std::fs::write(log.path(), "no hello\n").unwrap();
        let kept = log.keep(None).unwrap();
        let name = kept.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("cgstorm-tasks-boot-"), "{name}");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "no hello\n");
        std::fs::remove_file(kept).unwrap();

        let log = BootLog::new(Path::new("tasks.yaml")).unwrap();
        let path = log.path();
        drop(log);
        assert!(!path.exists(), "a boot that came up leaves no file");
    }
}
