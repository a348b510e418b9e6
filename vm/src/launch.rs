//! Booting an agent VM in one call: resolve modules, build the initramfs,
//! pick the accelerator, start QEMU and wait for the agent's hello.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgstorm_proto::cmdline::Token;
use cgstorm_proto::proto::{self, Hello, HostMsg};
use tempfile::TempDir;

use crate::accel::{self, Accel, AccelChoice};
use crate::boot;
use crate::error::{AgentError, BootError, HostError, LaunchError};
use crate::initramfs::AgentImage;
use crate::kernel::modules::{default_wants, ModuleDb, ModuleFile, Want};
use crate::kernel::Kernel;
use crate::qemu::console::ConsoleSink;
use crate::qemu::{BootRequest, QemuVm};
use crate::spec::VmSpec;
use crate::virtme::{VirtmeRequest, VirtmeVm};
use crate::vm::Vm;

/// Boot timeout under KVM; scaled by [`Accel::timeout_scale`] (TCG: 10x).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(12);

/// Power-off timeout under KVM, scaled likewise.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// What agent VM to boot.
pub struct AgentVmSpec {
    /// The kernel.
    pub kernel: Kernel,
    /// The static agent binary.
    pub agent: PathBuf,
    /// Accelerator choice.
    pub accel: AccelChoice,
    /// The VM; its `kernel` field is filled in from [`AgentVmSpec::kernel`].
    pub vm: VmSpec,
    /// Modules to load if the kernel has modules ([`default_wants`]).
    pub wants: Vec<Want>,
    /// Host binaries to copy into the initramfs with their libraries.
    pub binaries: Vec<PathBuf>,
    /// Boot timeout under KVM, scaled for the accelerator.
    pub boot_timeout: Duration,
    /// Where to keep the console log.
    pub console_log: Option<PathBuf>,
    /// Gets every console line as it arrives.
    pub console_sink: Option<ConsoleSink>,
    /// Polled while waiting for the hello: `true` stops the boot (Ctrl-C),
    /// and the VM and its temporary files go away.
    pub stop: fn() -> bool,
}

impl AgentVmSpec {
    /// Defaults: auto accelerator, 2 GiB, 2 vCPUs, no disks, default modules.
    pub fn new(kernel: Kernel, agent: PathBuf) -> Self {
        Self {
            kernel,
            agent,
            accel: AccelChoice::Auto,
            vm: VmSpec::default(),
            wants: default_wants(),
            binaries: Vec::new(),
            boot_timeout: BOOT_TIMEOUT,
            console_log: None,
            console_sink: None,
            stop: || false,
        }
    }
}

/// A booted VM whose agent said hello.
pub struct AgentVm<V: Vm = QemuVm> {
    /// The VM.
    pub vm: V,
    /// The agent's hello.
    pub hello: Hello,
    /// The accelerator used.
    pub accel: Accel,
    /// The modules put into the initramfs, in load order.
    pub modules: Vec<ModuleFile>,
    /// From starting QEMU to receiving the hello.
    pub boot_time: Duration,
    pub(crate) _initrd_dir: Option<TempDir>,
}

/// A booted VM of any backend.
pub type AnyAgentVm = AgentVm<Box<dyn Vm + Send>>;

impl<V: Vm> AgentVm<V> {
    /// A VM whose agent has said `hello` already, booted by no backend: a
    /// [`crate::fake::FakeVm`] for unit tests of loops over many programs.
    pub fn scripted(vm: V, hello: Hello) -> Self {
        AgentVm {
            vm,
            hello,
            accel: Accel::Tcg,
            modules: Vec::new(),
            boot_time: Duration::ZERO,
            _initrd_dir: None,
        }
    }
}

impl<V: Vm + Send + 'static> AgentVm<V> {
    /// The same VM behind one type for every backend.
    pub fn boxed(self) -> AnyAgentVm {
        AgentVm {
            vm: Box::new(self.vm),
            hello: self.hello,
            accel: self.accel,
            modules: self.modules,
            boot_time: self.boot_time,
            _initrd_dir: self._initrd_dir,
        }
    }
}

impl<V: Vm> AgentVm<V> {
    /// Asks the agent to power off and waits for QEMU to exit.
    pub fn shutdown(mut self) -> Result<String, AgentError> {
        let timeout = self.accel.scale(SHUTDOWN_TIMEOUT);
        boot::shutdown(&mut self.vm, timeout)
    }
}

/// A fresh random token from the OS.
pub fn random_token() -> Result<Token, HostError> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(HostError::io("read /dev/urandom"))?;
    Ok(Token::from_bytes(&bytes).expect("16 bytes make a valid token"))
}

/// The modules `kernel` needs loaded for `wants` (none for a kernel without
/// a modules directory).
pub fn modules_for(kernel: &Kernel, wants: &[Want]) -> Result<Vec<ModuleFile>, LaunchError> {
    match &kernel.modules {
        Some(dir) => Ok(ModuleDb::load(dir)?.resolve(wants)?),
        None => Ok(Vec::new()),
    }
}

/// Boots the VM and waits for the agent's hello.
pub fn launch(spec: AgentVmSpec) -> Result<AgentVm, LaunchError> {
    let mut prepared = Prepared::new(spec)?;
    let (log, sink) = (prepared.console_log.take(), prepared.console_sink.take());
    let mut avm = prepared.start(false, None, log, sink)?;
    avm._initrd_dir = Some(prepared.initrd_dir);
    Ok(avm)
}

/// Everything a QEMU boot of an agent VM needs, made once: the initramfs,
/// the VM spec with the accelerator's parameters, the token. A snapshot
/// keeps it to start the same VM again ([`crate::snapshot`]).
pub(crate) struct Prepared {
    pub(crate) initrd_dir: TempDir,
    pub(crate) initrd: PathBuf,
    pub(crate) vm: VmSpec,
    pub(crate) accel: Accel,
    pub(crate) token: Token,
    pub(crate) modules: Vec<ModuleFile>,
    pub(crate) boot_timeout: Duration,
    pub(crate) console_log: Option<PathBuf>,
    pub(crate) console_sink: Option<ConsoleSink>,
    pub(crate) stop: fn() -> bool,
}

impl Prepared {
    pub(crate) fn new(spec: AgentVmSpec) -> Result<Prepared, LaunchError> {
        let modules = modules_for(&spec.kernel, &spec.wants)?;
        let initrd_dir = crate::process::owned_temp_dir("cgstorm-initrd-", None).map_err(
            HostError::io("create a temporary directory for the initramfs"),
        )?;
        let image = AgentImage {
            agent: spec.agent.clone(),
            modules: modules.clone(),
            binaries: spec.binaries.clone(),
        };
        let initrd = image.build(&initrd_dir.path().join("initramfs.cpio"))?;
        let mut vm = spec.vm;
        vm.kernel = spec.kernel.image.clone();
        let accel = accel::resolve(spec.accel, &vm.qemu, &vm.kernel)?;
        with_accel_params(&mut vm, accel);
        Ok(Prepared {
            initrd_dir,
            initrd,
            vm,
            accel,
            token: random_token()?,
            modules,
            boot_timeout: spec.boot_timeout,
            console_log: spec.console_log,
            console_sink: spec.console_sink,
            stop: spec.stop,
        })
    }

    /// Starts QEMU (with a QMP socket when `qmp`; from the saved state
    /// `incoming` instead of a boot when given) and waits for the hello: the
    /// boot's, or for a restored VM the one it says again when asked.
    pub(crate) fn start(
        &self,
        qmp: bool,
        incoming: Option<&Path>,
        console_log: Option<PathBuf>,
        console_sink: Option<ConsoleSink>,
    ) -> Result<AgentVm, LaunchError> {
        let started = Instant::now();
        // A restored VM gets a token of its own, sent with the order to say
        // hello again: the boot's lives in the saved memory, shared by every
        // VM restored from it.
        let token = match incoming {
            Some(_) => random_token()?,
            None => self.token.clone(),
        };
        let mut vm = QemuVm::boot(BootRequest {
            spec: self.vm.clone(),
            initrd: self.initrd.clone(),
            token: self.token.clone(),
            accel: self.accel,
            console_log,
            console_sink,
            qmp,
            incoming: incoming.map(Path::to_path_buf),
        })?;
        if incoming.is_some() {
            let order = HostMsg::Hello {
                token: token.clone(),
            };
            proto::write_frame(vm.agent(), &order).map_err(|e| BootError::Channel {
                source: e,
                console_tail: vm.console_tail(),
            })?;
        }
        let timeout = self.accel.scale(self.boot_timeout);
        let hello = boot::wait_for_hello(&mut vm, &token, timeout, &self.stop)?;
        Ok(AgentVm {
            vm,
            hello,
            accel: self.accel,
            modules: self.modules.clone(),
            boot_time: started.elapsed(),
            _initrd_dir: None,
        })
    }
}

/// Boots the VM with virtme-ng (`vng` at `vng`) running the agent, and waits
/// for its hello. No initramfs: `spec.wants` and `spec.binaries` are not used,
/// and the agent must be at a host path the guest sees.
pub fn launch_virtme(
    spec: AgentVmSpec,
    vng: &Path,
    force_9p: bool,
) -> Result<AgentVm<VirtmeVm>, LaunchError> {
    let mut vm_spec = spec.vm;
    vm_spec.kernel = spec.kernel.image.clone();
    let accel = accel::resolve(spec.accel, &vm_spec.qemu, &vm_spec.kernel)?;
    with_accel_params(&mut vm_spec, accel);
    let token = random_token()?;
    let agent = spec.agent.canonicalize().map_err(HostError::io(format!(
        "find the agent {}",
        spec.agent.display()
    )))?;
    let started = Instant::now();
    let mut vm = VirtmeVm::boot(VirtmeRequest {
        vng: vng.to_path_buf(),
        spec: vm_spec,
        agent,
        token: token.clone(),
        accel,
        force_9p,
        console_log: spec.console_log,
        console_sink: spec.console_sink,
    })?;
    let hello = boot::wait_for_hello(&mut vm, &token, accel.scale(spec.boot_timeout), &spec.stop)?;
    Ok(AgentVm {
        vm,
        hello,
        accel,
        modules: Vec::new(),
        boot_time: started.elapsed(),
        _initrd_dir: None,
    })
}

/// Puts the accelerator's kernel parameters before the user's (a later
/// parameter wins, so the user can still override them).
fn with_accel_params(spec: &mut VmSpec, accel: Accel) {
    let mut append: Vec<String> = accel
        .kernel_params()
        .iter()
        .map(|s| s.to_string())
        .collect();
    append.append(&mut spec.append);
    spec.append = append;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_gets_the_tsc_clocksource_before_the_users_parameters() {
        let mut spec = VmSpec {
            append: vec!["clocksource=hpet".into()],
            ..VmSpec::default()
        };
        with_accel_params(&mut spec, Accel::Tcg);
        assert_eq!(spec.append[..2], ["clocksource=tsc", "tsc=reliable"]);
        assert_eq!(spec.append.len(), Accel::Tcg.kernel_params().len() + 1);
        assert_eq!(spec.append.last().unwrap(), "clocksource=hpet");
        let mut spec = VmSpec::default();
        with_accel_params(&mut spec, Accel::Kvm);
        assert!(spec.append.is_empty());
    }
}
