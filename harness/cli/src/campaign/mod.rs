//! Long runs over many programs: `cgstorm fuzz`, `cgstorm soak` and
//! `cgstorm minimize`. They share the VM handling ([`slot`]: one VM kept up
//! across programs, reset between them, replaced when the kernel may be
//! damaged), the "new behaviour" signal ([`feedback`]), the counters and
//! summaries ([`stats`]) and the findings store (`crate::findings`).

pub mod engine;
pub mod feedback;
pub mod slot;
pub mod stats;

use std::path::{Path, PathBuf};

use cgstorm_vm::AccelChoice;
use cgstorm_workloads::Size;

use crate::findings;
use crate::run::error::RunError;
use crate::run::launch::{self, Backend, FoundKernel};
use crate::run::machine::MachineOpts;
use crate::run::verdict::{Detail, Finding};

/// The VM options every campaign command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    /// The kernel: a bzImage, a kernel build tree, or `debian` (the default:
    /// Debian's stock kernel, fetched by vm/scripts/fetch-debian-kernel.sh).
    #[arg(long)]
    pub kernel: Option<String>,
    /// How to run the VMs.
    #[arg(long, value_enum, default_value_t = Backend::Qemu)]
    pub backend: Backend,
    /// Accelerator: auto (KVM if a probe boot works, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub accel: AccelChoice,
    /// Guest RAM.
    #[arg(long, default_value = "2G")]
    pub memory: Size,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Extra kernel parameters, space separated (may be repeated).
    #[arg(long, allow_hyphen_values = true)]
    pub append: Vec<String>,
    /// The kernel lacks the cgroup v1 memory controller (read from its
    /// config when cgstorm finds it).
    #[arg(long)]
    pub no_memcg_v1: bool,
    /// The kernel lacks CONFIG_FS_DAX.
    #[arg(long)]
    pub no_dax: bool,
    /// The static agent binary (default: this workspace's build).
    #[arg(long)]
    pub agent: Option<PathBuf>,
}

/// What every job of a campaign shares.
pub struct Env {
    /// The kernel.
    pub kernel: FoundKernel,
    /// What `--kernel` said (for replay commands).
    pub kernel_arg: String,
    /// The agent binary.
    pub agent: PathBuf,
    /// The guest.
    pub machine: MachineOpts,
    /// The backend.
    pub backend: Backend,
    /// The accelerator choice.
    pub accel: AccelChoice,
    /// `(no_memcg_v1, no_dax)`.
    pub switches: (bool, bool),
    /// Says when to stop (Ctrl-C, SIGTERM).
    pub stop: fn() -> bool,
}

impl Env {
    /// Finds the kernel and the agent; the error is the whole chain, as
    /// `cgstorm run` prints it.
    pub fn new(a: &VmArgs) -> anyhow::Result<Env> {
        Env::find(a).map_err(|e| anyhow::anyhow!(crate::run::error::chain(&e)))
    }

    fn find(a: &VmArgs) -> Result<Env, RunError> {
        let machine = MachineOpts {
            memory: a.memory,
            cpus: a.cpus,
            pmem: Size(512 << 20),
            scratch_disks: 2,
            scratch_size: Size(1 << 30),
            append: a
                .append
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(String::from)
                .collect(),
        };
        machine.vm_spec()?;
        Ok(Env {
            kernel: launch::find_kernel(a.kernel.as_deref())?,
            kernel_arg: a.kernel.clone().unwrap_or_else(|| "debian".into()),
            agent: launch::find_agent(a.agent.as_deref())?,
            machine,
            backend: a.backend,
            accel: a.accel,
            switches: (a.no_memcg_v1, a.no_dax),
            stop: crate::run::signal::interrupted,
        })
    }

    /// The command that replays a stored program on this kernel.
    pub fn replay(&self, program: &Path) -> String {
        let mut cmd = format!("cgstorm run {}", program.display());
        if self.kernel_arg != "debian" {
            cmd.push_str(&format!(" --kernel {}", self.kernel_arg));
        }
        if self.backend != Backend::Qemu {
            cmd.push_str(&format!(" --backend {}", self.backend.name()));
        }
        cmd
    }
}

/// Stores one finding of a program under `workdir`; its directory and how
/// often it has been seen now (1: new).
pub fn store(
    workdir: &Path,
    f: &Finding,
    program_yaml: &str,
    console: Option<&Path>,
    context: &str,
) -> std::io::Result<(PathBuf, u64)> {
    let report = match &f.detail {
        Detail::Report { text, .. } => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    findings::record(
        workdir,
        &findings::Record {
            kind: &f.kind,
            title: &f.title,
            report: &report,
            console,
            program: program_yaml,
            context,
        },
    )
}

/// Seconds since the epoch, for `seen` lines and file names.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
