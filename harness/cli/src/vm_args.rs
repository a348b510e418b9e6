//! The VM options the commands that boot VMs share, defined once so that
//! `run`, `scenario run`, `fuzz`, `soak`, `minimize` (all of [`VmArgs`]) and
//! `repro --run` ([`BootArgs`]) take them with the same names, help and
//! defaults. Options only some commands have (`--pmem`, `--scratch-disks`,
//! `--duration`, …) stay in those commands' arguments.

use std::path::PathBuf;

use cgstorm_vm::AccelChoice;
use cgstorm_workloads::Size;

use crate::run::launch::Backend;
use crate::run::machine::MachineOpts;

/// What to boot and with what: the kernel, the accelerator, the agent.
#[derive(clap::Args, Debug, Clone)]
pub struct BootArgs {
    /// The kernel: a bzImage, a kernel build tree, or `debian` (the default:
    /// Debian's stock kernel, fetched by vm/scripts/fetch-debian-kernel.sh).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Accelerator: auto (KVM if a probe boot works, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub accel: AccelChoice,
    /// The static agent binary (default: `$CGSTORM_AGENT`, or this
    /// workspace's build, made with cargo when needed).
    #[arg(long)]
    pub agent: Option<PathBuf>,
}

/// The VM options of every command that boots VMs to run programs.
#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    // Kernel, accelerator and agent first, as in `--help`.
    #[command(flatten)]
    pub boot: BootArgs,
    /// How to run the VM.
    #[arg(long, value_enum, default_value_t = Backend::Qemu)]
    pub backend: Backend,
    /// Guest RAM.
    #[arg(long, default_value = "2G")]
    pub memory: Size,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Extra kernel parameters, space separated (may be repeated).
    #[arg(long, allow_hyphen_values = true)]
    pub append: Vec<String>,
    /// The kernel lacks the cgroup v1 memory controller (CONFIG_MEMCG_V1=n);
    /// read from the kernel's config when cgstorm finds it.
    #[arg(long)]
    pub no_memcg_v1: bool,
    /// The kernel lacks CONFIG_FS_DAX.
    #[arg(long)]
    pub no_dax: bool,
}

impl VmArgs {
    /// The guest these options give, with the default pmem device and
    /// scratch disks; each `--append` is split at white space.
    pub fn machine(&self) -> MachineOpts {
        MachineOpts {
            memory: self.memory,
            cpus: self.cpus,
            append: self
                .append
                .iter()
                .flat_map(|a| a.split_whitespace())
                .map(String::from)
                .collect(),
            ..MachineOpts::default()
        }
    }

    /// The model's switches `(no_memcg_v1, no_dax)`.
    pub fn switches(&self) -> (bool, bool) {
        (self.no_memcg_v1, self.no_dax)
    }
}
