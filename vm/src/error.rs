//! Error types, one per thing that can fail: the kernel (not found, unreadable,
//! modules missing), the initramfs, the host (QEMU missing, spawn failed, disk
//! full), the boot (the kernel did not come up; carries the console tail) and
//! the agent channel after boot.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use cgstorm_proto::proto::FrameError;

/// How many console lines a [`BootError`] shows when displayed.
const SHOWN_TAIL_LINES: usize = 30;

/// Finding or reading a kernel failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A file of the kernel could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The image is not an x86 bzImage.
    #[error("{path} is not an x86 bzImage: {reason}")]
    NotBzImage {
        /// The file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: String,
    },
    /// A kernel tree was given but holds no built image.
    #[error("kernel tree {tree} has no arch/x86/boot/bzImage: build it first (vm/scripts/build-kernel.sh {tree})")]
    TreeNotBuilt {
        /// The tree.
        tree: PathBuf,
    },
    /// The default Debian kernel has not been fetched.
    #[error(
        "no debian kernel in {cache}: set up cgstorm with `{pin}bash ci/setup.sh` in its source \
         tree (or fetch only the kernel with `{pin}vm/scripts/fetch-debian-kernel.sh`)"
    )]
    NotFetched {
        /// Where it was looked for.
        cache: PathBuf,
        /// `CGSTORM_DEBIAN_KERNEL=R ` for a pinned release, else empty.
        pin: String,
    },
    /// A line of modules.dep does not parse.
    #[error("{path}:{line}: expected `module.ko: dep.ko ...`")]
    BadModulesDep {
        /// The modules.dep file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A wanted module is neither a module nor built in.
    #[error("kernel module {name} not found in {dir} (not in modules.dep, modules.builtin or modules.alias)")]
    ModuleMissing {
        /// The module name.
        name: String,
        /// The modules directory.
        dir: PathBuf,
    },
    /// Modules depend on each other in a loop.
    #[error("kernel module dependency cycle through {0}")]
    ModuleCycle(String),
    /// A compressed module could not be decompressed on the host.
    #[error("cannot decompress {path} with {tool}: {reason}")]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The tool used (xz, zstd, gzip).
        tool: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Building an initramfs failed.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// Reading an input or writing the archive failed.
    #[error("initramfs i/o on {path}")]
    Io {
        /// The file read or written.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A path inside the archive is not absolute, or not valid.
    #[error("bad path in initramfs: {0:?} (want an absolute path without `..`)")]
    BadPath(String),
    /// The shared libraries of a host binary could not be found.
    #[error("cannot list the shared libraries of {binary} with ldd: {reason}")]
    Ldd {
        /// The binary.
        binary: PathBuf,
        /// What ldd said.
        reason: String,
    },
    /// A module could not be prepared.
    #[error("cannot add kernel module")]
    Module(#[from] KernelError),
}

/// Something on the host is missing or failed; no kernel was involved yet.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The QEMU binary is not installed.
    #[error("{qemu} not found: install it (apt-get install qemu-system-x86)")]
    QemuMissing {
        /// The binary looked for.
        qemu: PathBuf,
    },
    /// KVM was asked for but cannot be used.
    #[error("kvm was asked for but is not usable ({0}); use --accel tcg or auto")]
    KvmUnusable(String),
    /// QEMU exited while starting, before it connected the agent socket
    /// (bad arguments, missing files); the tail holds its messages.
    #[error("qemu exited at startup ({status}){}", ShowTail(output))]
    QemuStartup {
        /// How QEMU ended.
        status: String,
        /// Its last output lines.
        output: String,
    },
    /// QEMU did not connect the agent socket in time.
    #[error("qemu did not connect the agent socket within {0:?}")]
    QemuNoConnect(Duration),
    /// The VM configuration is inconsistent.
    #[error("bad vm configuration: {0}")]
    Config(String),
    /// Saving or restoring a VM snapshot failed (QMP, migration).
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A host operation failed.
    #[error("{what}")]
    Io {
        /// What was being done, lowercase.
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

impl HostError {
    /// Wraps an i/o error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> HostError {
        let what = what.into();
        move |source| HostError::Io { what, source }
    }
}

/// The kernel did not come up to a working agent.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The caller asked to stop (Ctrl-C) before the agent said hello.
    Interrupted,
    /// QEMU exited before the agent said hello (panic, triple fault, bad init).
    Exited {
        /// How QEMU ended.
        status: String,
        /// The last console lines.
        console_tail: String,
    },
    /// No hello within the boot timeout.
    Timeout {
        /// The timeout, already scaled for the accelerator.
        after: Duration,
        /// The last console lines.
        console_tail: String,
    },
    /// The agent reported a fatal error instead of a hello.
    AgentFatal {
        /// The agent's message.
        message: String,
        /// The last console lines.
        console_tail: String,
    },
    /// A hello arrived but does not belong to this boot.
    BadHello {
        /// What is wrong.
        reason: String,
    },
    /// The agent channel broke during boot.
    Channel {
        /// Why.
        #[source]
        source: FrameError,
        /// The last console lines.
        console_tail: String,
    },
}

impl BootError {
    /// The error's own line: its message without the console tail (its
    /// Display adds the tail).
    pub fn headline(&self) -> String {
        match self {
            BootError::Interrupted => "interrupted while the kernel was booting".to_string(),
            BootError::Exited { status, .. } => format!(
                "kernel did not come up: qemu exited ({status}) before the agent said hello"
            ),
            BootError::Timeout { after, .. } => {
                format!("kernel did not come up: no hello from the agent within {after:?}")
            }
            BootError::AgentFatal { message, .. } => {
                format!("agent failed during boot: {message}")
            }
            BootError::BadHello { reason } => format!("bad hello from the agent: {reason}"),
            BootError::Channel { .. } => "agent channel broke during boot".to_string(),
        }
    }

    /// The console tail, when this error carries one.
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            BootError::Exited { console_tail, .. }
            | BootError::Timeout { console_tail, .. }
            | BootError::AgentFatal { console_tail, .. }
            | BootError::Channel { console_tail, .. } => Some(console_tail),
            BootError::BadHello { .. } | BootError::Interrupted => None,
        }
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        match self.console_tail() {
            Some(tail) => ShowTail(tail).fmt(f),
            None => Ok(()),
        }
    }
}

/// Talking to a booted agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Sending or receiving a frame failed.
    #[error("agent channel failed")]
    Channel(#[from] FrameError),
    /// The guest did not power off after a shutdown request.
    #[error("guest did not power off within {after:?} of the shutdown request; killed it")]
    NoPowerOff {
        /// How long we waited.
        after: Duration,
    },
}

/// Everything that can go wrong while launching an agent VM.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The kernel.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The initramfs.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// The host.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The boot.
    #[error(transparent)]
    Boot(#[from] BootError),
}

/// Displays the last console lines after a newline, or nothing.
struct ShowTail<'a>(&'a str);

impl fmt::Display for ShowTail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.0.lines().collect();
        if lines.is_empty() {
            return f.write_str("; the console stayed empty");
        }
        let start = lines.len().saturating_sub(SHOWN_TAIL_LINES);
        f.write_str("; last console lines:")?;
        for l in &lines[start..] {
            write!(f, "\n  | {l}")?;
        }
        Ok(())
    }
}
