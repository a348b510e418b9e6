//! Long runs over many programs: `cgstorm fuzz`, `cgstorm soak` and
//! `cgstorm minimize`. They share the VM handling ([`slot`]: one VM kept up
//! across programs, reset between them, replaced when the kernel may be
//! damaged), the "new behaviour" signal ([`feedback`]), the counters and
//! summaries ([`stats`]) and the findings store (`crate::findings`).

pub mod engine;
pub mod exchange;
pub mod feedback;
#[cfg(test)]
mod loop_tests;
pub mod pending;
pub mod shrink;
pub mod slot;
pub mod source;
pub mod stats;
pub mod yields;

use std::path::{Path, PathBuf};

use cgstorm_vm::kconfig::FoundKernel;
use cgstorm_vm::kernel::{self, KernelSpec};
use cgstorm_vm::machine::{Backend, MachineOpts};
use cgstorm_vm::AccelChoice;

use crate::run::error::{Failed, RunError};
use crate::run::launch;
use crate::vm_args::VmArgs;

/// What every job of a campaign shares.
pub struct Env {
    /// The kernel.
    pub kernel: FoundKernel,
    /// The VM options it was started with, a pinned Debian release in
    /// `--kernel` (for replay commands).
    pub vm: VmArgs,
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
    /// Starts a job's VM instead of the backend: only the campaign loop's
    /// unit tests set it, to scripted VMs (`cgstorm_vm::fake`).
    pub starter: Option<Starter>,
}

/// Starts a VM whose agent has said hello, its console logged to the path
/// given (see [`Env::starter`]).
pub type Starter =
    std::sync::Arc<dyn Fn(&Path) -> Result<crate::run::launch::Booted, RunError> + Send + Sync>;

impl Env {
    /// Finds the kernel and the agent; the error is the whole chain, as
    /// `cgstorm run` prints it, with `cgstorm run`'s exit code
    /// ([`crate::run::error::exit_code`]).
    pub fn new(a: &VmArgs) -> anyhow::Result<Env> {
        Env::find(a).map_err(|e| anyhow::Error::new(Failed::from(e)))
    }

    fn find(a: &VmArgs) -> Result<Env, RunError> {
        let machine = a.machine();
        machine.vm_spec()?;
        let kernel = launch::find_kernel(a.boot.kernel.as_deref())?;
        eprintln!("cgstorm: kernel {}", kernel.describe());
        Ok(Env {
            kernel,
            vm: with_pin(a, std::env::var(kernel::DEBIAN_PIN_ENV).ok().as_deref()),
            agent: launch::find_agent(a.boot.agent.as_deref())?,
            machine,
            backend: a.backend,
            accel: a.boot.accel,
            switches: a.switches(),
            stop: crate::run::signal::interrupted,
            starter: None,
        })
    }

    /// The command that replays a stored finding on this kernel: `cgstorm
    /// run` of its program, or `cgstorm replay` of its directory when it
    /// keeps the programs that ran before it in its VM; with every VM
    /// option the campaign was given.
    pub fn replay(&self, dir: &Path) -> String {
        replay_command(dir, &self.vm)
    }

    /// `words` (a command and its own options) followed by every VM option
    /// this environment was given, as one line for sh.
    pub fn command(&self, words: Vec<String>) -> String {
        command_line(words, &self.vm)
    }
}

/// `a`, with the Debian release that `$CGSTORM_DEBIAN_KERNEL` (`env_pin`)
/// pins written into `--kernel debian:RELEASE`: a replay command then boots
/// that release without the environment.
fn with_pin(a: &VmArgs, env_pin: Option<&str>) -> VmArgs {
    let mut vm = a.clone();
    if let KernelSpec::DebianPinned(pin) = KernelSpec::named(a.boot.kernel.as_deref(), env_pin) {
        vm.boot.kernel = Some(format!("debian:{pin}"));
    }
    vm
}

/// `cgstorm run DIR/program.yaml` or (with `DIR/before/`) `cgstorm replay
/// DIR`, with the options `vm` gives (those left at their defaults left
/// out), as one line for sh.
fn replay_command(dir: &Path, vm: &VmArgs) -> String {
    let words = if dir.join("before").is_dir() {
        vec!["cgstorm".into(), "replay".into(), dir.display().to_string()]
    } else {
        let program = dir.join("program.yaml");
        vec![
            "cgstorm".into(),
            "run".into(),
            program.display().to_string(),
        ]
    };
    command_line(words, vm)
}

/// `words` and the options `vm` gives (those at their defaults left out),
/// each quoted for sh when it needs it, as one line.
fn command_line(mut words: Vec<String>, vm: &VmArgs) -> String {
    words.extend(vm.to_args());
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `w` as one sh word: as it is when nothing in it is special to the
/// shell, else single-quoted.
fn shell_word(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Seconds since the epoch, for `seen` lines and file names.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use cgstorm_vm::AccelChoice;
    use cgstorm_workloads::Size;

    use super::*;
    use crate::run::error::exit_code;
    use crate::vm_args::BootArgs;

    /// A campaign started with every VM option away from its default.
    fn every_option() -> VmArgs {
        VmArgs {
            boot: BootArgs {
                kernel: Some("/k/bzImage".into()),
                accel: AccelChoice::Tcg,
                agent: Some("/a/agent".into()),
            },
            backend: Backend::Vng,
            memory: Size(4 << 30),
            cpus: 4,
            append: vec!["rdinit=/x quiet".into(), "it's".into()],
            no_memcg_v1: true,
            no_dax: true,
        }
    }

    #[test]
    fn the_replay_command_carries_every_vm_option() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        assert_eq!(
            replay_command(dir.path(), &every_option()),
            format!(
                "cgstorm run {d}/program.yaml --kernel /k/bzImage --accel tcg --agent /a/agent \
                 --backend vng --memory 4G --cpus 4 --append 'rdinit=/x quiet' \
                 --append 'it'\\''s' --no-memcg-v1 --no-dax"
            )
        );
        std::fs::create_dir(dir.path().join("before")).unwrap();
        assert_eq!(
            replay_command(dir.path(), &VmArgs::default()),
            format!("cgstorm replay {d}")
        );
    }

    #[test]
    fn a_pinned_debian_kernel_is_named_in_the_replay_command() {
        let debian = VmArgs::default();
        assert_eq!(with_pin(&debian, None).to_args(), Vec::<String>::new());
        assert_eq!(
            with_pin(&debian, Some("6.1.0-57")).to_args(),
            ["--kernel", "debian:6.1.0-57"]
        );
        let image = every_option();
        assert_eq!(
            with_pin(&image, Some("6.1.0-57")).to_args(),
            image.to_args(),
            "the pin is for the Debian kernel only"
        );
    }

    #[test]
    fn a_kernel_that_is_not_there_is_bad_input_for_campaigns_as_for_run() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("bzImage");
        std::fs::write(&junk, "not a kernel").unwrap();
        let absent = dir.path().join("absent");
        for kernel in [absent, junk] {
            let k = kernel.display().to_string();
            let run = launch::find_kernel(Some(&k)).err().expect("no kernel");
            assert_eq!(run.exit_code(), 2, "cgstorm run --kernel {k}: {run}");
            let vm = VmArgs {
                boot: BootArgs {
                    kernel: Some(k.clone()),
                    ..VmArgs::default().boot
                },
                ..VmArgs::default()
            };
            let campaign = Env::new(&vm).err().expect("no kernel");
            assert_eq!(
                exit_code(&campaign),
                2,
                "cgstorm fuzz --kernel {k}: {campaign}"
            );
            assert_eq!(campaign.to_string(), crate::run::error::chain(&run));
        }
    }
}
