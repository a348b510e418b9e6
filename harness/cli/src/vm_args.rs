//! The VM options the commands that boot VMs share, defined once so that
//! `run`, `scenario run`, `fuzz`, `soak`, `minimize` (all of [`VmArgs`]) and
//! `repro --run` ([`BootArgs`]) take them with the same names, help and
//! defaults. Options only some commands have (`--pmem`, `--scratch-disks`,
//! `--duration`, …) stay in those commands' arguments.

use std::path::PathBuf;

use cgstorm_vm::machine::{Backend, MachineOpts};
use cgstorm_vm::AccelChoice;
use cgstorm_workloads::Size;
use clap::Parser;

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

    /// These options as command-line arguments, those at their defaults
    /// left out: what a command that replays a finding needs to boot the
    /// same VM.
    pub fn to_args(&self) -> Vec<String> {
        let default = VmArgs::default();
        let mut args = Vec::new();
        let mut opt = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        if let Some(k) = self.boot.kernel.as_ref().filter(|k| *k != "debian") {
            opt("kernel", k.clone());
        }
        if self.boot.accel != default.boot.accel {
            opt("accel", self.boot.accel.to_string());
        }
        if let Some(a) = &self.boot.agent {
            opt("agent", a.display().to_string());
        }
        if self.backend != default.backend {
            opt("backend", self.backend.name().into());
        }
        if self.memory != default.memory {
            opt("memory", self.memory.to_string());
        }
        if self.cpus != default.cpus {
            opt("cpus", self.cpus.to_string());
        }
        for a in &self.append {
            opt("append", a.clone());
        }
        for (on, flag) in [
            (self.no_memcg_v1, "--no-memcg-v1"),
            (self.no_dax, "--no-dax"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
        args
    }
}

impl Default for VmArgs {
    /// The options of a command line that gives none.
    fn default() -> Self {
        Only::parse_from(["cgstorm"]).vm
    }
}

/// [`VmArgs`] alone on a command line.
#[derive(clap::Parser)]
struct Only {
    #[command(flatten)]
    vm: VmArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[String]) -> VmArgs {
        let argv = std::iter::once("cgstorm").chain(args.iter().map(String::as_str));
        Only::try_parse_from(argv).unwrap().vm
    }

    #[test]
    fn every_option_survives_a_round_trip_through_its_arguments() {
        let given: Vec<String> = [
            "--kernel",
            "/k/bzImage",
            "--accel",
            "tcg",
            "--agent",
            "/a/cgstorm-agent",
            "--backend",
            "vng",
            "--memory",
            "4G",
            "--cpus",
            "4",
            "--append",
            "rdinit=/x quiet",
            "--append",
            "-v",
            "--no-memcg-v1",
            "--no-dax",
        ]
        .map(String::from)
        .to_vec();
        let a = parse(&given);
        assert_eq!(a.to_args(), given);
        assert_eq!(format!("{:?}", parse(&a.to_args())), format!("{a:?}"));
    }

    #[test]
    fn defaults_give_no_arguments() {
        assert!(VmArgs::default().to_args().is_empty());
        let debian = parse(&["--kernel".into(), "debian".into()]);
        assert!(debian.to_args().is_empty(), "{:?}", debian.to_args());
        let mem = parse(&["--memory".into(), "3072M".into()]);
        assert_eq!(mem.to_args(), ["--memory", "3G"]);
    }
}
