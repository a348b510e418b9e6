//! The QEMU backend: direct kernel boot (`-kernel`/`-initrd`), serial console
//! on stdio, the agent on a virtio-serial port wired to a unix socket, sparse
//! scratch disks and pmem, all under a temporary directory removed on drop.

pub mod args;
pub mod child;
pub mod console;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use cgstorm_agent::cmdline::Token;
use tempfile::TempDir;

use crate::accel::Accel;
use crate::error::HostError;
use crate::spec::{Pmem, VmSpec};
use crate::vm::{AgentStream, ConsoleEvent, Diagnosis, Vm};
use args::RunFiles;
use child::{describe, GuardedChild};
use console::{Console, ConsoleSink};

/// How long QEMU may take, under KVM, to start and connect the agent socket
/// (scaled by the accelerator).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything a QEMU boot needs besides the spec.
pub struct BootRequest {
    /// What to run.
    pub spec: VmSpec,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The per-boot token for the kernel command line.
    pub token: Token,
    /// The accelerator (already resolved).
    pub accel: Accel,
    /// Where to keep the console log; `None`: inside the VM's temporary
    /// directory (gone with the VM).
    pub console_log: Option<PathBuf>,
    /// Gets every console line as it arrives.
    pub console_sink: Option<ConsoleSink>,
}

/// A running QEMU VM. Dropping it kills QEMU and removes its files.
pub struct QemuVm {
    // Field order is drop order: QEMU dies before its directory goes.
    child: GuardedChild,
    stdin: Option<ChildStdin>,
    agent: UnixStream,
    console: Console,
    console_log: PathBuf,
    accel: Accel,
    dir: TempDir,
}

impl QemuVm {
    /// Starts QEMU and waits until it has connected the agent socket. Does
    /// not wait for the kernel: see [`crate::boot::wait_for_hello`].
    pub fn boot(req: BootRequest) -> Result<Self, HostError> {
        let dir = tempfile::Builder::new()
            .prefix("cgstorm-vm-")
            .tempdir()
            .map_err(HostError::io("create the vm's temporary directory"))?;
        let files = make_files(dir.path(), &req.spec, &req.initrd)?;
        let args = args::qemu_args(&req.spec, req.accel, &req.token, &files)?;
        let listener = UnixListener::bind(&files.agent_socket).map_err(HostError::io(format!(
            "listen on {}",
            files.agent_socket.display()
        )))?;
        listener
            .set_nonblocking(true)
            .map_err(HostError::io("make the agent socket non-blocking"))?;

        let mut cmd = Command::new(&req.spec.qemu);
        cmd.args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = GuardedChild::spawn(cmd).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => HostError::QemuMissing {
                qemu: req.spec.qemu.clone(),
            },
            _ => HostError::Io {
                what: format!("start {}", req.spec.qemu.display()),
                source: e,
            },
        })?;
        let console_log = req
            .console_log
            .clone()
            .unwrap_or_else(|| dir.path().join("console.log"));
        let log = File::create(&console_log)
            .map_err(HostError::io(format!("create {}", console_log.display())))?;
        let (Some(stdout), Some(stderr)) = (child.take_stdout(), child.take_stderr()) else {
            unreachable!("stdout and stderr are piped");
        };
        let console = Console::start(stdout, stderr, "qemu: ", Some(log), req.console_sink);
        let stdin = child.take_stdin();

        let agent = accept(
            &listener,
            &mut child,
            &console,
            req.accel.scale(CONNECT_TIMEOUT),
        )?;
        Ok(Self {
            child,
            stdin,
            agent,
            console,
            console_log,
            accel: req.accel,
            dir,
        })
    }

    /// QEMU's PID.
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

    /// The VM's temporary directory (disks, socket, default console log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Creates the sparse disk and nvdimm files and picks the socket path.
pub(crate) fn make_files(dir: &Path, spec: &VmSpec, initrd: &Path) -> Result<RunFiles, HostError> {
    let sparse = |path: PathBuf, mib: u64| -> Result<PathBuf, HostError> {
        let f = File::create(&path).map_err(HostError::io(format!("create {}", path.display())))?;
        f.set_len(mib << 20)
            .map_err(HostError::io(format!("size {}", path.display())))?;
        Ok(path)
    };
    let disks = spec
        .disks_mib
        .iter()
        .enumerate()
        .map(|(i, &mib)| sparse(dir.join(format!("disk{i}.img")), mib))
        .collect::<Result<_, _>>()?;
    let nvdimm = match spec.pmem {
        Some(Pmem::Nvdimm { size_mib }) => Some(sparse(dir.join("nvdimm.img"), size_mib)?),
        _ => None,
    };
    Ok(RunFiles {
        initrd: initrd.to_path_buf(),
        agent_socket: dir.join("agent.sock"),
        disks,
        nvdimm,
    })
}

/// Accepts QEMU's connection to the agent socket, failing early if QEMU exits.
pub(crate) fn accept(
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

impl Vm for QemuVm {
    fn console_line(&mut self, timeout: Duration) -> ConsoleEvent {
        self.console.line(timeout)
    }

    fn console_tail(&self) -> String {
        self.console.tail()
    }

    fn agent(&mut self) -> &mut dyn AgentStream {
        &mut self.agent
    }

    /// Sysrq goes over the serial console: with `-nographic` the console is
    /// multiplexed with the monitor, and `ctrl-a b` makes QEMU send a BREAK;
    /// the next character is then the sysrq key (CONFIG_MAGIC_SYSRQ_SERIAL).
    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError> {
        let Diagnosis::Sysrq(key) = what;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| HostError::Config("the vm's console input is closed".into()))?;
        let mut send = |bytes: &[u8]| -> Result<(), HostError> {
            stdin
                .write_all(bytes)
                .and_then(|()| stdin.flush())
                .map_err(HostError::io("write to the serial console"))
        };
        send(b"\x01b")?;
        // The kernel takes the key that follows the BREAK (within 5 s).
        sleep(Duration::from_millis(100));
        send(key.to_string().as_bytes())
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
