//! The VM cgstorm boots and the machine the model predicts for, both made
//! from the same options so they cannot disagree, and the backend that boots
//! it.

use std::path::PathBuf;

use cgstorm_workloads::model::{Kernel, Machine, Target};
use cgstorm_workloads::Size;

use crate::accel::AccelChoice;
use crate::error::LaunchError;
use crate::kconfig::{self, FoundKernel};
use crate::launch::{launch, launch_virtme, AgentVmSpec, AnyAgentVm};
use crate::spec::{Pmem, VmSpec, MEMMAP_HEADROOM_MIB};

/// Machine options that cannot work (the commands exit 2 on them).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadMachine(pub String);

/// Which VM runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Backend {
    /// QEMU with cgstorm's own initramfs.
    Qemu,
    /// virtme-ng (`vng`), sharing the host's root filesystem.
    Vng,
}

impl Backend {
    /// `qemu` or `vng`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Vng => "vng",
        }
    }
}

/// Highest start of the pmem carve-out: low RAM stays for the kernel and the
/// initramfs.
const MEMMAP_OFFSET_MIB: u64 = 1024;
/// Lowest start of the pmem carve-out.
const MEMMAP_MIN_OFFSET_MIB: u64 = 256;

/// The machine options of `cgstorm run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineOpts {
    /// Guest RAM.
    pub memory: Size,
    /// vCPUs.
    pub cpus: u32,
    /// Size of the pmem device (0: none).
    pub pmem: Size,
    /// Number of scratch disks.
    pub scratch_disks: u8,
    /// Size of each scratch disk.
    pub scratch_size: Size,
    /// Extra kernel parameters.
    pub append: Vec<String>,
}

impl Default for MachineOpts {
    /// The machine `cgstorm run` boots without options (and the model's
    /// default machine): 2G of RAM, 2 vCPUs, a 512M pmem device, two 1G
    /// scratch disks.
    fn default() -> Self {
        MachineOpts {
            memory: Size(2 << 30),
            cpus: 2,
            pmem: Size(512 << 20),
            scratch_disks: 2,
            scratch_size: Size(1 << 30),
            append: Vec::new(),
        }
    }
}

fn mib(s: Size, what: &str) -> Result<u64, BadMachine> {
    if !s.0.is_multiple_of(1 << 20) {
        return Err(BadMachine(format!(
            "{what} {s} is not a whole number of MiB: give it as e.g. 512M or 2G"
        )));
    }
    Ok(s.0 >> 20)
}

impl MachineOpts {
    /// The VM to boot (kernel path left empty for the launcher).
    pub fn vm_spec(&self) -> Result<VmSpec, BadMachine> {
        let memory_mib = mib(self.memory, "--memory")?;
        let pmem_mib = mib(self.pmem, "--pmem")?;
        let disk_mib = mib(self.scratch_size, "--scratch-size")?;
        if self.cpus == 0 || memory_mib < 256 {
            return Err(BadMachine(
                "the guest needs at least 1 cpu and 256M of memory".into(),
            ));
        }
        if self.scratch_disks > 0 && disk_mib == 0 {
            return Err(BadMachine(
                "--scratch-size must be above 0 (or use --scratch-disks 0)".into(),
            ));
        }
        let pmem = if pmem_mib == 0 {
            None
        } else {
            let room = memory_mib
                .checked_sub(pmem_mib + MEMMAP_HEADROOM_MIB)
                .filter(|&o| o >= MEMMAP_MIN_OFFSET_MIB)
                .ok_or_else(|| {
                    BadMachine(format!(
                        "--pmem {} is carved out of guest RAM and needs --memory of at least {}M",
                        self.pmem,
                        pmem_mib + MEMMAP_HEADROOM_MIB + MEMMAP_MIN_OFFSET_MIB
                    ))
                })?;
            Some(Pmem::Memmap {
                size_mib: pmem_mib,
                offset_mib: room.min(MEMMAP_OFFSET_MIB),
            })
        };
        Ok(VmSpec {
            memory_mib,
            cpus: self.cpus,
            disks_mib: vec![disk_mib; self.scratch_disks.into()],
            pmem,
            append: self.append.clone(),
            ..VmSpec::default()
        })
    }

    /// The machine as the model sees it: the pmem carve-out is not RAM.
    pub fn machine(&self) -> Machine {
        Machine {
            scratch_disks: self.scratch_disks,
            scratch_size: self.scratch_size,
            pmem_devices: u8::from(self.pmem.0 > 0),
            pmem_size: self.pmem,
            memory: Size(self.memory.0.saturating_sub(self.pmem.0)),
        }
    }

    /// Kernel and machine together.
    pub fn target(&self, kernel: Kernel) -> Target {
        Target {
            kernel,
            machine: self.machine(),
        }
    }
}

/// Host tools copied into the initramfs (with their libraries) when present:
/// the agent runs them for `mkfs`.
pub const GUEST_TOOLS: [&str; 2] = ["/usr/sbin/mkfs.ext4", "/usr/sbin/mkfs.xfs"];

/// What to boot.
pub struct BootPlan<'a> {
    /// The kernel.
    pub kernel: &'a FoundKernel,
    /// The agent binary.
    pub agent: PathBuf,
    /// The backend.
    pub backend: Backend,
    /// The accelerator choice.
    pub accel: AccelChoice,
    /// The machine.
    pub machine: &'a MachineOpts,
    /// Print console lines to stderr as they come.
    pub echo: bool,
    /// Host binaries the initramfs gets besides [`GUEST_TOOLS`] (QEMU;
    /// `repro --run` adds busybox for its shell).
    pub binaries: Vec<PathBuf>,
}

impl BootPlan<'_> {
    /// What to boot, for either backend, with the whole console also
    /// written to `console_log` (the boot is not stopped from outside:
    /// [`AgentVmSpec::stop`] is left to the caller).
    pub fn agent_spec(&self, console_log: Option<PathBuf>) -> Result<AgentVmSpec, BadMachine> {
        let mut spec = AgentVmSpec::new(self.kernel.kernel.clone(), self.agent.clone());
        spec.console_log = console_log;
        spec.accel = self.accel;
        spec.vm = self.machine.vm_spec()?;
        if self.echo {
            spec.console_sink = Some(Box::new(|l: &str| eprintln!("{l}")));
        }
        if self.backend == Backend::Qemu {
            spec.binaries = GUEST_TOOLS
                .iter()
                .map(PathBuf::from)
                .chain(self.binaries.iter().cloned())
                .filter(|p| p.exists())
                .collect();
        }
        Ok(spec)
    }

    /// Boots `spec` (made by [`BootPlan::agent_spec`]) with the plan's
    /// backend and waits for the agent's hello: QEMU, or virtme-ng's `vng`
    /// (`$CGSTORM_VNG` if set) sharing the root over 9p when the kernel's
    /// config says it has 9p.
    pub fn launch(&self, spec: AgentVmSpec) -> Result<AnyAgentVm, LaunchError> {
        match self.backend {
            Backend::Qemu => Ok(launch(spec)?.boxed()),
            Backend::Vng => {
                let vng =
                    std::env::var_os("CGSTORM_VNG").map_or_else(|| "vng".into(), PathBuf::from);
                let force_9p = kconfig::has_9p(self.kernel.config.as_ref().map(|(_, c)| c));
                Ok(launch_virtme(spec, &vng, force_9p)?.boxed())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> MachineOpts {
        MachineOpts {
            append: vec!["quiet".into()],
            ..MachineOpts::default()
        }
    }

    #[test]
    fn defaults_match_the_model_default_machine() {
        let o = opts();
        let spec = o.vm_spec().unwrap();
        assert_eq!(spec.disks_mib, [1024, 1024]);
        assert_eq!(
            spec.pmem,
            Some(Pmem::Memmap {
                size_mib: 512,
                offset_mib: 1024
            })
        );
        assert_eq!(spec.append, ["quiet"]);
        let m = o.machine();
        let d = Machine::default();
        assert_eq!(
            (m.scratch_disks, m.scratch_size, m.pmem_devices, m.pmem_size),
            (d.scratch_disks, d.scratch_size, d.pmem_devices, d.pmem_size)
        );
        assert_eq!(m.memory, Size(1536 << 20));
    }

    #[test]
    fn pmem_must_fit_in_memory() {
        let small = MachineOpts {
            memory: Size(1 << 30),
            pmem: Size(1 << 30),
            ..opts()
        };
        let err = small.vm_spec().unwrap_err().to_string();
        assert!(err.contains("--memory of at least 1536M"), "{err}");
        let lower = MachineOpts {
            memory: Size(1 << 30),
            pmem: Size(256 << 20),
            ..opts()
        };
        assert_eq!(
            lower.vm_spec().unwrap().pmem,
            Some(Pmem::Memmap {
                size_mib: 256,
                offset_mib: 512
            })
        );
    }

    #[test]
    fn no_pmem_and_no_disks() {
        let o = MachineOpts {
            pmem: Size(0),
            scratch_disks: 0,
            ..opts()
        };
        let spec = o.vm_spec().unwrap();
        assert!(spec.pmem.is_none() && spec.disks_mib.is_empty());
        assert_eq!(o.machine().pmem_devices, 0);
        assert_eq!(o.machine().memory, Size(2 << 30));
    }

    /// QEMU's initramfs gets the plan's binaries that exist (and the
    /// [`GUEST_TOOLS`] the host has); virtme-ng's guest, the host's root,
    /// none; a machine that cannot work is no spec.
    #[test]
    fn agent_specs_follow_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let busybox = dir.path().join("busybox");
        std::fs::write(&busybox, "").unwrap();
        let kernel = FoundKernel {
            kernel: crate::kernel::Kernel {
                image: "/k/bzImage".into(),
                release: "6.12.0".into(),
                modules: None,
                package: None,
            },
            config: None,
        };
        let machine = opts();
        let plan = BootPlan {
            kernel: &kernel,
            agent: "/a/agent".into(),
            backend: Backend::Qemu,
            accel: AccelChoice::Tcg,
            machine: &machine,
            echo: true,
            binaries: vec![busybox.clone(), dir.path().join("missing")],
        };
        let spec = plan.agent_spec(Some("/c/console.log".into())).unwrap();
        assert_eq!(spec.binaries.last(), Some(&busybox));
        assert!(spec.binaries.iter().all(|b| b.exists()));
        assert_eq!(spec.vm, machine.vm_spec().unwrap());
        assert_eq!(spec.accel, AccelChoice::Tcg);
        assert_eq!(spec.console_log, Some("/c/console.log".into()));
        assert!(spec.console_sink.is_some() && !(spec.stop)());
        let vng = BootPlan {
            backend: Backend::Vng,
            echo: false,
            ..plan
        };
        let spec = vng.agent_spec(None).unwrap();
        assert!(spec.binaries.is_empty() && spec.console_sink.is_none());
        let bad = MachineOpts { cpus: 0, ..opts() };
        let plan = BootPlan {
            machine: &bad,
            ..vng
        };
        assert!(plan.agent_spec(None).is_err());
    }

    #[test]
    fn sizes_are_whole_mib() {
        let o = MachineOpts {
            memory: Size((2 << 30) + 5),
            ..opts()
        };
        assert!(o.vm_spec().unwrap_err().to_string().contains("--memory"));
    }
}
