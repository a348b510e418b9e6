//! VM backends for cgstorm: boot a real kernel in QEMU with the cgstorm agent
//! as init, and talk to the agent over virtio-serial.
//!
//! - [`agent`]: the static agent binary, built when needed.
//! - [`kernel`]: find a kernel (bzImage, build tree, fetched Debian kernel),
//!   its release and the modules it needs, in load order.
//! - [`kconfig`]: the kernel's `.config`, found beside it, for the model
//!   and the backend.
//! - [`initramfs`]: a cpio writer and the agent initramfs.
//! - [`accel`]: KVM if it really works, TCG otherwise.
//! - [`machine`]: the machine options (memory, CPUs, disks, pmem), the VM
//!   spec and the model's machine made from them, the backend choice, and
//!   the boot plan that puts them together with a kernel and an agent.
//! - [`qemu`]: the QEMU backend; [`virtme`]: the virtme-ng backend;
//!   [`process`]: what the two share; [`fake`]: a scripted backend for tests.
//! - [`vm`]: the [`Vm`] trait they share; [`inbox`]: the one reader of the
//!   agent channel; [`boot`]: the agent handshake on them.
//! - [`mod@launch`]: all of the above in one call.

#![warn(missing_docs)]

pub mod accel;
pub mod agent;
pub mod boot;
pub mod error;
pub mod fake;
pub mod inbox;
pub mod initramfs;
pub mod kconfig;
pub mod kernel;
pub mod launch;
pub mod machine;
pub mod process;
pub mod qemu;
pub mod snapshot;
pub mod spec;
pub mod virtme;
pub mod vm;

pub use accel::{Accel, AccelChoice};
pub use error::{AgentError, BootError, HostError, InitramfsError, KernelError, LaunchError};
pub use launch::{launch, launch_virtme, AgentVm, AgentVmSpec};
pub use spec::{Pmem, VmSpec};
pub use vm::{ConsoleEvent, Diagnosis, Vm};
