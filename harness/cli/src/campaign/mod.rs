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

use crate::findings;
use crate::run::error::RunError;
use crate::run::launch::{self, Backend, FoundKernel};
use crate::run::machine::MachineOpts;
use crate::run::verdict::{Detail, Finding};
use crate::vm_args::VmArgs;

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
        let machine = a.machine();
        machine.vm_spec()?;
        let kernel = launch::find_kernel(a.boot.kernel.as_deref())?;
        eprintln!("cgstorm: kernel {}", kernel.describe());
        Ok(Env {
            kernel,
            kernel_arg: a.boot.kernel.clone().unwrap_or_else(|| "debian".into()),
            agent: launch::find_agent(a.boot.agent.as_deref())?,
            machine,
            backend: a.backend,
            accel: a.boot.accel,
            switches: a.switches(),
            stop: crate::run::signal::interrupted,
        })
    }

    /// The command that replays a stored finding on this kernel: `cgstorm
    /// run` of its program, or `cgstorm replay` of its directory when it
    /// keeps the programs that ran before it in its VM.
    pub fn replay(&self, dir: &Path) -> String {
        let mut cmd = if dir.join("before").is_dir() {
            format!("cgstorm replay {}", dir.display())
        } else {
            format!("cgstorm run {}", dir.join("program.yaml").display())
        };
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
