//! What stops `cgstorm run` before it can give a verdict, split by whose
//! fault it is: bad input (exit 2) or the infrastructure (exit 3). Every
//! command maps these errors to the same codes: the campaign commands, which
//! return `anyhow` errors, through [`Failed`] and [`exit_code`].

use std::io;
use std::path::PathBuf;

use cgstorm_vm::machine::BadMachine;
use cgstorm_vm::{HostError, KernelError, LaunchError};

/// `cgstorm run` could not produce a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program file cannot be read or is not a valid program.
    #[error("{0:#}")]
    Program(anyhow::Error),
    /// Command-line options that cannot work together.
    #[error("{0}")]
    Options(String),
    /// The kernel to boot cannot be found or read.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The agent binary cannot be found or built.
    #[error("no agent to boot")]
    Agent(#[source] HostError),
    /// The VM did not boot to a working agent.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The guest came up unfit for the program (missing devices, unknown
    /// kernel version).
    #[error("{0}")]
    Guest(String),
    /// Writing the console log or the JSON report failed.
    #[error("cannot write {path}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl From<BadMachine> for RunError {
    fn from(e: BadMachine) -> RunError {
        RunError::Options(e.0)
    }
}

impl RunError {
    /// The exit code: 2 for bad input (a program or options that cannot
    /// work, a `--kernel` that is not there, cannot be read, is no bzImage
    /// or is a tree not built yet), 3 for what the host or VM lacks (the
    /// Debian kernel not fetched, kernel modules missing, no QEMU, no agent,
    /// a boot that failed).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Program(_) | RunError::Options(_) => 2,
            RunError::Kernel(
                KernelError::Read { .. }
                | KernelError::NotBzImage { .. }
                | KernelError::TreeNotBuilt { .. },
            ) => 2,
            _ => 3,
        }
    }
}

/// A [`RunError`] on its way out of a command that returns `anyhow`
/// errors: its message on one line, as [`chain`] gives it, and its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    /// The error and its sources.
    pub message: String,
    /// [`RunError::exit_code`].
    pub code: u8,
}

impl From<RunError> for Failed {
    fn from(e: RunError) -> Failed {
        Failed {
            message: chain(&e),
            code: e.exit_code(),
        }
    }
}

/// The exit code of a command that failed with `e`: the code of the
/// [`RunError`] (or [`Failed`]) in its chain, else 2 (bad input).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<Failed>()
                .map(|f| f.code)
                .or_else(|| c.downcast_ref::<RunError>().map(RunError::exit_code))
        })
        .unwrap_or(2)
}

/// The first line of `e`'s [`chain`], without the console tail a boot
/// error carries: what a summary says of the last error.
pub fn headline(e: &RunError) -> String {
    if let RunError::Launch(LaunchError::Boot(b)) = e {
        return b.headline();
    }
    let chain = chain(e);
    chain.lines().next().unwrap_or_default().to_string()
}

/// The error and its sources on one line, `: `-separated, skipping a source
/// whose text the error already shows.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> KernelError {
        KernelError::Read {
            path: "/nope".into(),
            source: io::ErrorKind::NotFound.into(),
        }
    }

    #[test]
    fn exit_codes_separate_input_from_infrastructure() {
        assert_eq!(RunError::Options("x".into()).exit_code(), 2);
        assert_eq!(RunError::Kernel(missing()).exit_code(), 2);
        let unbuilt = KernelError::TreeNotBuilt { tree: "/t".into() };
        assert_eq!(RunError::Kernel(unbuilt).exit_code(), 2);
        let not_image = KernelError::NotBzImage {
            path: "/x".into(),
            reason: "no HdrS".into(),
        };
        assert_eq!(RunError::Kernel(not_image).exit_code(), 2);
        let unfetched = KernelError::NotFetched {
            cache: "/c".into(),
            pin: String::new(),
        };
        assert_eq!(RunError::Kernel(unfetched).exit_code(), 3);
        assert_eq!(RunError::Guest("x".into()).exit_code(), 3);
        let no_module = KernelError::ModuleMissing {
            name: "loop".into(),
            dir: "/m".into(),
        };
        assert_eq!(RunError::Kernel(no_module).exit_code(), 3);
    }

    #[test]
    fn a_command_returning_anyhow_keeps_the_exit_code_and_the_message() {
        let failed = anyhow::Error::new(Failed::from(RunError::Kernel(missing())));
        assert_eq!(exit_code(&failed), 2);
        assert_eq!(
            failed.to_string(),
            "cannot read /nope: entity not found",
            "the message is the chain on one line"
        );
        let boot = RunError::Agent(HostError::Config("build it".into()));
        let failed = anyhow::Error::new(Failed::from(boot)).context("cannot start the campaign");
        assert_eq!(exit_code(&failed), 3, "a context does not hide the code");
        assert_eq!(
            exit_code(&anyhow::Error::new(RunError::Guest("x".into()))),
            3
        );
        assert_eq!(exit_code(&anyhow::anyhow!("--jobs must be at least 1")), 2);
    }

    /// A failed boot's headline is its message without the console lines
    /// it carries; another error's is its chain's first line.
    #[test]
    fn a_headline_leaves_the_console_out() {
        let boot = RunError::Launch(LaunchError::Boot(cgstorm_vm::BootError::Exited {
            status: "exit status: 1".into(),
            console_tail: "Kernel panic - not syncing: no init\nend Kernel panic".into(),
        }));
        assert!(chain(&boot).contains("Kernel panic"), "{}", chain(&boot));
        assert_eq!(
            headline(&boot),
            "kernel did not come up: qemu exited (exit status: 1) before the agent said hello"
        );
        let e = RunError::Agent(HostError::Config("build it".into()));
        assert_eq!(headline(&e), chain(&e));
    }

    #[test]
    fn chain_names_each_cause_once() {
        let e = RunError::Agent(HostError::Config("build it".into()));
        assert_eq!(
            chain(&e),
            "no agent to boot: bad vm configuration: build it"
        );
    }
}
