//! What stops `cgstorm run` before it can give a verdict, split by whose
//! fault it is: bad input (exit 2) or the infrastructure (exit 3).

use std::io;
use std::path::PathBuf;

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

impl RunError {
    /// The exit code: 2 for bad input (a program or options that cannot
    /// work, a file that is no bzImage), 3 for what the host or VM lacks
    /// (no kernel there, no QEMU, no agent, a boot that failed).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Program(_) | RunError::Options(_) => 2,
            RunError::Kernel(KernelError::NotBzImage { .. }) => 2,
            _ => 3,
        }
    }
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

    #[test]
    fn exit_codes_separate_input_from_infrastructure() {
        assert_eq!(RunError::Options("x".into()).exit_code(), 2);
        let missing = KernelError::Read {
            path: "/nope".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        assert_eq!(RunError::Kernel(missing).exit_code(), 3);
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
