//! What the VM examples share: a kernel named on the command line, and a
//! booted agent for it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cgstorm_vm::accel::AccelChoice;
use cgstorm_vm::kernel::{self, KernelSpec};
use cgstorm_vm::launch::{launch, AgentVm, AgentVmSpec};
use cgstorm_vm::vm::Vm;
use cgstorm_vm::VmSpec;

/// `debian` (the fetched Debian kernel), `debian:RELEASE`, or a bzImage or
/// kernel tree, as `cgstorm --kernel` names them (no environment pin).
pub fn kernel_spec(which: &str) -> KernelSpec {
    KernelSpec::named(Some(which), None)
}

/// Boots `spec` with the workspace's agent (built if needed), the
/// accelerator chosen as campaigns do, and agent reads that wait up to
/// `timeout`; `binaries` go into the initramfs, `append` onto the kernel
/// command line.
#[allow(dead_code)] // each example builds this module; leak_check boots a machine
pub fn boot(
    spec: &KernelSpec,
    binaries: Vec<PathBuf>,
    append: Vec<String>,
    timeout: Duration,
) -> Result<AgentVm, Box<dyn std::error::Error>> {
    boot_on(spec, VmSpec::default(), binaries, append, timeout)
}

/// [`boot`] on the machine `vm` (its kernel path left to the launcher):
/// `MachineOpts::default().vm_spec()` for the campaigns' machine, with its
/// scratch disks and pmem.
#[allow(dead_code)] // each example builds this module; not all boot a machine
pub fn boot_on(
    spec: &KernelSpec,
    vm: VmSpec,
    binaries: Vec<PathBuf>,
    append: Vec<String>,
    timeout: Duration,
) -> Result<AgentVm, Box<dyn std::error::Error>> {
    let kernel = kernel::locate(spec)?;
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let agent = cgstorm_vm::agent::locate_or_build(&workspace)?;
    let mut s = AgentVmSpec::new(kernel, agent);
    s.vm = vm;
    s.accel = AccelChoice::Auto;
    s.binaries = binaries;
    s.vm.append.extend(append);
    let mut vm = launch(s)?;
    vm.vm.agent().set_read_timeout(Some(timeout))?;
    Ok(vm)
}

/// [`boot_on`] the campaigns' machine (its scratch disks and pmem), with
/// mkfs.ext4 in the initramfs, agent reads waiting up to 600 s.
#[allow(dead_code)] // each example builds this module; not all boot a machine
pub fn boot_machine(spec: &KernelSpec) -> Result<AgentVm, Box<dyn std::error::Error>> {
    let machine = cgstorm_vm::machine::MachineOpts::default().vm_spec()?;
    let tools = vec![PathBuf::from("/usr/sbin/mkfs.ext4")];
    boot_on(spec, machine, tools, Vec::new(), Duration::from_secs(600))
}

/// A check's exit: 0 and `NAME: ok` when it passed, 1 when it failed (it
/// printed why), 1 and the error when it could not run.
#[allow(dead_code)] // each example builds this module; the benchmarks do not use it
pub fn exit(name: &str, result: Result<bool, Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(true) => {
            println!("{name}: ok");
            ExitCode::SUCCESS
        }
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}
