//! The virtme-ng backend: `vng --run KERNEL --exec AGENT` boots the kernel
//! with the host's root filesystem shared read-only (9p or virtiofs) and runs
//! the agent under virtme-ng's init, which marks the kernel command line with
//! `virtme_*` parameters (the agent's guard accepts that instead of PID 1).
//! The agent port, scratch disks and a monitor socket are added with
//! `--qemu-opts`; vng passes them through a shell, so their paths must not
//! need quoting. No initramfs and no module loading: use kernels with what the
//! agent needs built in (the 6.12 debug kernels), or one vng can find modules
//! for. NVDIMM is not supported here (vng owns `-m` and `-machine`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread::sleep;
use std::time::Duration;

use cgstorm_proto::cmdline::Token;

use crate::accel::Accel;
use crate::error::HostError;
use crate::process::{temp_dir, Diagnose, ProcessVm, Start};
use crate::qemu::args::{cgstorm_params, device_args, validate, RunFiles};
use crate::qemu::console::ConsoleSink;
use crate::qemu::make_files;
use crate::spec::{Pmem, VmSpec};
use crate::vm::Diagnosis;

/// How long vng may take, under KVM, to start QEMU and connect the agent
/// socket (it is a Python program; scaled by the accelerator).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(6);

/// A virtme-ng boot.
pub struct VirtmeRequest {
    /// The `vng` program.
    pub vng: PathBuf,
    /// What to run; `kernel` is passed to `vng --run`, `qemu` is ignored.
    pub spec: VmSpec,
    /// The agent binary, at a host path the guest sees (the root is shared).
    pub agent: PathBuf,
    /// The per-boot token.
    pub token: Token,
    /// The accelerator (`Tcg` adds `--disable-kvm`).
    pub accel: Accel,
    /// Share the root over 9p instead of virtiofs (needs CONFIG_9P_FS; the
    /// virtiofs default needs the Rust virtiofsd on the host).
    pub force_9p: bool,
    /// Where to keep the console log (default: in the temporary directory).
    pub console_log: Option<PathBuf>,
    /// Gets every console line as it arrives.
    pub console_sink: Option<ConsoleSink>,
}

/// A VM run by virtme-ng. Dropping it kills vng and QEMU (one process group).
pub type VirtmeVm = ProcessVm<Monitor>;

/// virtme-ng's own part of a [`VirtmeVm`]: the QEMU monitor socket.
pub struct Monitor(PathBuf);

/// Whether `s` passes through a POSIX shell unchanged.
fn shell_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-,=:+@%".contains(c))
}

/// The vng argument list (pure).
pub fn vng_args(
    req: &VirtmeRequest,
    files: &RunFiles,
    monitor: &Path,
) -> Result<Vec<OsString>, HostError> {
    validate(&req.spec, files)?;
    if matches!(req.spec.pmem, Some(Pmem::Nvdimm { .. })) {
        return Err(HostError::Config(
            "the virtme-ng backend cannot add an nvdimm (vng owns -m and -machine); use memmap pmem".into(),
        ));
    }
    let mut qemu_opts = device_args(&req.spec, files);
    let mut mon = OsString::from("unix:");
    mon.push(monitor);
    mon.push(",server=on,wait=off");
    qemu_opts.extend(["-monitor".into(), mon]);
    qemu_opts.extend(req.spec.extra_args.iter().map(OsString::from));
    let mut joined = String::from("--qemu-opts=");
    for (i, o) in qemu_opts.iter().enumerate() {
        let o = o.to_str().filter(|o| shell_safe(o)).ok_or_else(|| {
            HostError::Config(format!(
                "qemu option {o:?} would need shell quoting, which vng does not do"
            ))
        })?;
        if i > 0 {
            joined.push(' ');
        }
        joined.push_str(o);
    }
    let mut a: Vec<OsString> = vec![
        "--run".into(),
        req.spec.kernel.clone().into(),
        "--verbose".into(),
    ];
    if req.accel == Accel::Tcg {
        a.push("--disable-kvm".into());
    }
    if req.force_9p {
        a.push("--force-9p".into());
    }
    a.extend([
        "--memory".into(),
        format!("{}M", req.spec.memory_mib).into(),
    ]);
    a.extend(["--cpus".into(), req.spec.cpus.to_string().into()]);
    a.extend(["--user".into(), "root".into()]);
    for p in cgstorm_params(&req.spec, &req.token) {
        a.extend(["--append".into(), p.into()]);
    }
    a.push(joined.into());
    let agent = req
        .agent
        .to_str()
        .filter(|p| shell_safe(p) && p.starts_with('/'))
        .ok_or_else(|| {
            HostError::Config(format!(
                "agent path {} must be absolute and need no shell quoting",
                req.agent.display()
            ))
        })?;
    a.extend(["--exec".into(), agent.into()]);
    Ok(a)
}

impl VirtmeVm {
    /// Starts vng and waits until QEMU has connected the agent socket.
    pub fn boot(req: VirtmeRequest) -> Result<Self, HostError> {
        let dir = temp_dir("cgstorm-vng-")?;
        let files = make_files(dir.path(), &req.spec, Path::new(""))?;
        let monitor = dir.path().join("monitor.sock");
        let args = vng_args(&req, &files, &monitor)?;
        let start = Start {
            dir,
            program: &req.vng,
            args,
            stdin: Stdio::null(),
            missing: HostError::Config(format!(
                "{} not found: install virtme-ng (pip install virtme-ng)",
                req.vng.display()
            )),
            agent_socket: &files.agent_socket,
            console_log: req.console_log,
            console_sink: req.console_sink,
            stderr_prefix: "",
            accel: req.accel,
            connect_timeout: CONNECT_TIMEOUT,
        };
        ProcessVm::start(start, |_| Monitor(monitor))
    }
}

impl Diagnose for Monitor {
    /// vng's serial console is a file, so sysrq goes through the QEMU
    /// monitor as a PS/2 key press (`sendkey alt-sysrq-KEY`).
    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError> {
        let Diagnosis::Sysrq(key) = what;
        if !key.is_ascii_alphanumeric() {
            return Err(HostError::Config(format!(
                "sysrq key {key:?} cannot be sent as a key press"
            )));
        }
        let mut mon =
            UnixStream::connect(&self.0).map_err(HostError::io("connect to the qemu monitor"))?;
        mon.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(HostError::io("set monitor timeout"))?;
        let mut banner = [0u8; 512];
        let _ = mon.read(&mut banner);
        writeln!(mon, "sendkey alt-sysrq-{}", key.to_ascii_lowercase())
            .map_err(HostError::io("write to the qemu monitor"))?;
        sleep(Duration::from_millis(100));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(spec: VmSpec) -> VirtmeRequest {
        VirtmeRequest {
            vng: "vng".into(),
            spec,
            agent: "/opt/cgstorm-agent".into(),
            token: Token::parse("0123456789abcdef").unwrap(),
            accel: Accel::Tcg,
            force_9p: true,
            console_log: None,
            console_sink: None,
        }
    }

    fn files() -> RunFiles {
        RunFiles {
            initrd: PathBuf::new(),
            agent_socket: "/t/agent.sock".into(),
            disks: vec!["/t/disk0.img".into()],
            nvdimm: None,
        }
    }

    #[test]
    fn builds_vng_command_line() {
        let spec = VmSpec {
            kernel: "/k/bzImage".into(),
            disks_mib: vec![64],
            pmem: Some(Pmem::Memmap {
                size_mib: 256,
                offset_mib: 1024,
            }),
            ..VmSpec::default()
        };
        let args = vng_args(&req(spec), &files(), Path::new("/t/monitor.sock")).unwrap();
        let s: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let s = s.join(" ");
        assert!(s.starts_with("--run /k/bzImage --verbose --disable-kvm --force-9p --memory 2048M --cpus 2 --user root"), "{s}");
        assert!(
            s.contains("--append cgstorm.token=0123456789abcdef --append memmap=256M!1024M"),
            "{s}"
        );
        assert!(s.contains("--append cgstorm.devices=vda,pmem0"), "{s}");
        assert!(s.contains("--qemu-opts=-chardev socket,id=cgagent,path=/t/agent.sock -device virtio-serial-pci"), "{s}");
        assert!(
            s.contains("-monitor unix:/t/monitor.sock,server=on,wait=off"),
            "{s}"
        );
        assert!(s.ends_with("--exec /opt/cgstorm-agent"), "{s}");
    }

    #[test]
    fn refuses_what_vng_cannot_pass() {
        let spec = VmSpec {
            kernel: "/k".into(),
            pmem: Some(Pmem::Nvdimm { size_mib: 64 }),
            ..VmSpec::default()
        };
        let mut f = files();
        f.disks.clear();
        f.nvdimm = Some("/t/nv".into());
        assert!(vng_args(&req(spec), &f, Path::new("/t/m"))
            .unwrap_err()
            .to_string()
            .contains("nvdimm"));
        let mut r = req(VmSpec {
            kernel: "/k".into(),
            ..VmSpec::default()
        });
        r.agent = "/my dir/agent".into();
        f.nvdimm = None;
        assert!(vng_args(&r, &f, Path::new("/t/m"))
            .unwrap_err()
            .to_string()
            .contains("quoting"));
    }
}
