//! What the QEMU and virtme-ng backends share: a VM that is a host process
//! (QEMU, or vng running QEMU) started in its own temporary directory, its
//! console read from the process's stdout and stderr, the agent on a unix
//! socket the process connects to. [`ProcessVm`] is that VM; a backend adds
//! its command line and how sysrq reaches the kernel ([`Diagnose`]).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::accel::Accel;
use crate::error::HostError;
use crate::qemu::child::{describe, GuardedChild};
use crate::qemu::console::{Console, ConsoleSink};
use crate::vm::{AgentStream, ConsoleEvent, Diagnosis, Vm};

/// How a backend asks the guest kernel for diagnostics: the part of [`Vm`]
/// the backends do differently.
pub trait Diagnose {
    /// Asks the guest kernel for `what`.
    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError>;
}

/// A running VM that is a host process, with the backend's own part `D`
/// ([`crate::qemu::QemuVm`], [`crate::virtme::VirtmeVm`]). Dropping it kills
/// the process (with its process group) and removes its files.
pub struct ProcessVm<D> {
    // Field order is drop order: the process dies before its directory goes.
    child: GuardedChild,
    backend: D,
    agent: UnixStream,
    console: Console,
    console_log: PathBuf,
    accel: Accel,
    dir: TempDir,
}

/// How to start the process of a [`ProcessVm`].
pub(crate) struct Start<'a> {
    /// The VM's temporary directory: the process runs in it.
    pub dir: TempDir,
    /// The program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its stdin (its stdout and stderr go to the console).
    pub stdin: Stdio,
    /// The error when the program is not found.
    pub missing: HostError,
    /// Where to listen for the agent connection (before the process starts).
    pub agent_socket: &'a Path,
    /// Where to keep the console log (`None`: `console.log` in `dir`).
    pub console_log: Option<PathBuf>,
    /// Gets every console line as it arrives.
    pub console_sink: Option<ConsoleSink>,
    /// The prefix of the process's stderr lines on the console.
    pub stderr_prefix: &'static str,
    /// The accelerator (already resolved).
    pub accel: Accel,
    /// How long, under KVM, the process may take to connect the agent socket
    /// (scaled by the accelerator).
    pub connect_timeout: Duration,
}

/// Creates a VM's temporary directory.
pub(crate) fn temp_dir(prefix: &str) -> Result<TempDir, HostError> {
    owned_temp_dir(prefix, None).map_err(HostError::io("create the vm's temporary directory"))
}

/// The name of the file in each of cgstorm's temporary directories that
/// says which process made it: `PID START` (START: the process's start
/// time in clock ticks since boot, field 22 of /proc/PID/stat, so a reused
/// PID is not taken for the owner).
const OWNER: &str = "owner";

/// The prefixes of cgstorm's temporary directories (disk images, saved VM
/// states, initramfs images: up to a few hundred MiB each).
const TEMP_PREFIXES: [&str; 4] = [
    "cgstorm-vm-",
    "cgstorm-vng-",
    "cgstorm-snapshot-",
    "cgstorm-initrd-",
];

/// Creates a temporary directory named `prefix…` in `parent` (default: the
/// system's), with its [`OWNER`] file. The first call of a process first
/// removes the system temporary directory's cgstorm directories whose
/// owner is gone: a killed host (a requeued Slurm job, an OOM kill) leaves
/// its disks and saved states behind, 170 MiB each, night after night.
pub(crate) fn owned_temp_dir(prefix: &str, parent: Option<&Path>) -> std::io::Result<TempDir> {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| sweep_stale(&std::env::temp_dir()));
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    let dir = match parent {
        Some(p) => b.tempdir_in(p)?,
        None => b.tempdir()?,
    };
    if let Some(me) = process_id(std::process::id()) {
        std::fs::write(dir.path().join(OWNER), me)?;
    }
    Ok(dir)
}

/// `PID START` of a live process, `None` if there is none.
fn process_id(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Removes the directories of `tmp` that [`owned_temp_dir`] made for a
/// process that is gone; those without an owner file are left alone.
fn sweep_stale(tmp: &Path) {
    let Ok(rd) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !TEMP_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(e.path().join(OWNER)) else {
            continue;
        };
        if owner_gone(owner.trim()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether the process an owner file names (`PID START`) is gone.
fn owner_gone(owner: &str) -> bool {
    let Some(pid) = owner.split(' ').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    process_id(pid).is_none_or(|now| now != owner)
}

impl<D> ProcessVm<D> {
    /// Listens on the agent socket, starts the process and its console, takes
    /// the backend's part from the child, and waits until the process has
    /// connected the agent socket. Does not wait for the kernel: see
    /// [`crate::boot::wait_for_hello`].
    pub(crate) fn start(
        s: Start<'_>,
        backend: impl FnOnce(&mut GuardedChild) -> D,
    ) -> Result<Self, HostError> {
        let Start {
            dir,
            program,
            args,
            stdin,
            missing,
            agent_socket,
            console_log,
            console_sink,
            stderr_prefix,
            accel,
            connect_timeout,
        } = s;
        let listener = UnixListener::bind(agent_socket).map_err(HostError::io(format!(
            "listen on {}",
            agent_socket.display()
        )))?;
        listener
            .set_nonblocking(true)
            .map_err(HostError::io("make the agent socket non-blocking"))?;

        let mut cmd = Command::new(program);
        cmd.args(&args)
            .current_dir(dir.path())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = GuardedChild::spawn(cmd).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => missing,
            _ => HostError::Io {
                what: format!("start {}", program.display()),
                source: e,
            },
        })?;
        let console_log = console_log.unwrap_or_else(|| dir.path().join("console.log"));
        let log = File::create(&console_log)
            .map_err(HostError::io(format!("create {}", console_log.display())))?;
        let (Some(stdout), Some(stderr)) = (child.take_stdout(), child.take_stderr()) else {
            unreachable!("stdout and stderr are piped");
        };
        let console = Console::start(stdout, stderr, stderr_prefix, Some(log), console_sink);
        let backend = backend(&mut child);

        let agent = accept(
            &listener,
            &mut child,
            &console,
            accel.scale(connect_timeout),
        )?;
        Ok(Self {
            child,
            backend,
            agent,
            console,
            console_log,
            accel,
            dir,
        })
    }

    /// The process's PID (QEMU's, or vng's with QEMU in its process group).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The accelerator it runs with.
    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// The console log file.
    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// The VM's temporary directory (disks, sockets, default console log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Accepts the process's connection to the agent socket, failing early if
/// the process exits.
fn accept(
    listener: &UnixListener,
    child: &mut GuardedChild,
    console: &Console,
    timeout: Duration,
) -> Result<UnixStream, HostError> {
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(HostError::io("make the agent socket blocking"))?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                return Err(HostError::Io {
                    what: "accept the agent connection".into(),
                    source: e,
                })
            }
        }
        if let Some(status) = child.try_wait() {
            // Let the reader threads catch QEMU's last words.
            sleep(Duration::from_millis(100));
            return Err(HostError::QemuStartup {
                status: describe(status),
                output: console.tail(),
            });
        }
        if Instant::now() >= deadline {
            return Err(HostError::QemuNoConnect(timeout));
        }
        sleep(Duration::from_millis(10));
    }
}

impl<D: Diagnose> Vm for ProcessVm<D> {
    fn console_line(&mut self, timeout: Duration) -> ConsoleEvent {
        self.console.line(timeout)
    }

    fn console_tail(&self) -> String {
        self.console.tail()
    }

    fn agent(&mut self) -> &mut dyn AgentStream {
        &mut self.agent
    }

    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError> {
        self.backend.diagnose(what)
    }

    fn exit_status(&mut self) -> Option<String> {
        self.child.try_wait().map(describe)
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<String> {
        self.child.wait_timeout(timeout).map(describe)
    }

    fn kill(&mut self) -> String {
        describe(self.child.kill())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose owner is gone is swept; one whose owner lives, one
    /// whose PID was reused by another process, and one without an owner
    /// file are told apart.
    #[test]
    fn stale_temp_dirs_are_swept_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |name: &str, owner: Option<String>| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).unwrap();
            if let Some(o) = owner {
                std::fs::write(d.join(OWNER), o).unwrap();
            }
            d
        };
        let me = process_id(std::process::id()).unwrap();
        let live = mk("cgstorm-vm-live", Some(me.clone()));
        let pid = std::process::id();
        let reused = mk("cgstorm-snapshot-reused", Some(format!("{pid} 1")));
        // PIDs above pid_max (4194304 at most) never run.
        let gone = mk("cgstorm-initrd-gone", Some("4999999 123".into()));
        let unowned = mk("cgstorm-vm-unowned", None);
        let other = mk("not-ours", Some("4999999 123".into()));
        sweep_stale(tmp.path());
        assert!(live.exists());
        assert!(!reused.exists(), "a reused PID is not the owner");
        assert!(!gone.exists());
        assert!(unowned.exists());
        assert!(other.exists());
        let d = owned_temp_dir("cgstorm-vm-", Some(tmp.path())).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join(OWNER)).unwrap(), me);
    }
}
