//! The QEMU backend: direct kernel boot (`-kernel`/`-initrd`), serial console
//! on stdio, the agent on a virtio-serial port wired to a unix socket, sparse
//! scratch disks and pmem, all under a temporary directory removed on drop.

pub mod args;
pub mod child;
pub mod console;
pub mod qmp;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::thread::sleep;
use std::time::Duration;

use cgstorm_proto::cmdline::Token;

use crate::accel::Accel;
use crate::error::HostError;
use crate::process::{temp_dir, Diagnose, ProcessVm, Start};
use crate::spec::{Pmem, VmSpec};
use crate::vm::Diagnosis;
use args::RunFiles;
use console::ConsoleSink;

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
    /// Open a QMP socket (`QMP_SOCKET` in the VM's directory), so that the
    /// VM's state can be saved ([`crate::snapshot`]).
    pub qmp: bool,
    /// Start from a saved state instead of booting (`-incoming`): the same
    /// spec, initramfs and token as the VM that saved it.
    pub incoming: Option<PathBuf>,
}

/// The QMP socket's name in the VM's directory, with [`BootRequest::qmp`].
pub const QMP_SOCKET: &str = "qmp.sock";

/// A running QEMU VM. Dropping it kills QEMU and removes its files.
pub type QemuVm = ProcessVm<SerialInput>;

/// QEMU's own part of a [`QemuVm`]: its stdin, the serial console's input.
pub struct SerialInput(Option<ChildStdin>);

impl QemuVm {
    /// Starts QEMU and waits until it has connected the agent socket. Does
    /// not wait for the kernel: see [`crate::boot::wait_for_hello`].
    pub fn boot(req: BootRequest) -> Result<Self, HostError> {
        let dir = temp_dir("cgstorm-vm-")?;
        let files = make_files(dir.path(), &req.spec, &req.initrd)?;
        let mut args = args::qemu_args(&req.spec, req.accel, &req.token, &files)?;
        if req.qmp {
            let mut q = std::ffi::OsString::from("unix:");
            q.push(dir.path().join(QMP_SOCKET));
            q.push(",server=on,wait=off");
            args.extend(["-qmp".into(), q]);
        }
        if let Some(state) = &req.incoming {
            let quoted = qmp::sh_quoted(state)?;
            args.extend(["-incoming".into(), format!("exec:cat {quoted}").into()]);
        }
        let start = Start {
            dir,
            program: &req.spec.qemu,
            args,
            stdin: Stdio::piped(),
            missing: HostError::QemuMissing {
                qemu: req.spec.qemu.clone(),
            },
            agent_socket: &files.agent_socket,
            console_log: req.console_log,
            console_sink: req.console_sink,
            stderr_prefix: "qemu: ",
            accel: req.accel,
            connect_timeout: CONNECT_TIMEOUT,
        };
        ProcessVm::start(start, |child| SerialInput(child.take_stdin()))
    }
}

/// Scratch disk `i`'s backing file in a VM's directory.
pub(crate) fn disk_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("disk{i}.img"))
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
        .map(|(i, &mib)| sparse(disk_file(dir, i), mib))
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

impl Diagnose for SerialInput {
    /// Sysrq goes over the serial console: with `-nographic` the console is
    /// multiplexed with the monitor, and `ctrl-a b` makes QEMU send a BREAK;
    /// the next character is then the sysrq key (CONFIG_MAGIC_SYSRQ_SERIAL).
    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError> {
        let Diagnosis::Sysrq(key) = what;
        let stdin = self
            .0
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
}
