//! Booting the VM for `cgstorm run`: find the kernel `--kernel` names and
//! the agent, and boot (or boot and save) what a
//! [`BootPlan`](cgstorm_vm::machine::BootPlan) gives, once more after a
//! boot that failed for the emulator's reasons, not the kernel's.

use std::path::{Path, PathBuf};

use cgstorm_vm::kconfig::FoundKernel;
use cgstorm_vm::kernel::{self, KernelSpec};
use cgstorm_vm::launch::{launch, AgentVm, AgentVmSpec, AnyAgentVm};
use cgstorm_vm::machine::{Backend, BootPlan};
use cgstorm_vm::qemu::QemuVm;
use cgstorm_vm::snapshot::{launch_saved, Snapshot};
use cgstorm_vm::{BootError, LaunchError};

use super::error::RunError;

/// Finds the kernel `--kernel` names ([`KernelSpec::named`], with the pin
/// of `$CGSTORM_DEBIAN_KERNEL`) and its config.
pub fn find_kernel(arg: Option<&str>) -> Result<FoundKernel, RunError> {
    let pin = std::env::var(kernel::DEBIAN_PIN_ENV).ok();
    let spec = KernelSpec::named(arg, pin.as_deref());
    Ok(FoundKernel::locate(&spec)?)
}

/// The agent: `--agent`, `$CGSTORM_AGENT`, or this workspace's static build
/// (built now if needed).
pub fn find_agent(arg: Option<&Path>) -> Result<PathBuf, RunError> {
    if let Some(p) = arg {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(RunError::Options(format!(
                "--agent {} is not a file",
                p.display()
            )))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    cgstorm_vm::agent::locate_or_build(&workspace).map_err(RunError::Agent)
}

/// A booted VM of either backend, behind one type.
pub type Booted = AnyAgentVm;

/// [`boot_logged`], and the VM's state saved once its agent said hello so
/// that later VMs start from it ([`Snapshot::restore`]); the snapshot is
/// `Err(why)` where it cannot be taken (virtme-ng, an nvdimm, QEMU refusing).
pub fn boot_saved(
    plan: BootPlan<'_>,
    console_log: Option<PathBuf>,
) -> Result<(Booted, Result<Snapshot, String>), RunError> {
    if plan.backend != Backend::Qemu {
        let booted = boot_logged(plan, console_log)?;
        return Ok((
            booted,
            Err("the virtme-ng backend does not save vm states".into()),
        ));
    }
    let (avm, snap) = again_if_spurious(|| {
        let spec = agent_spec(&plan, console_log.clone())?;
        Ok(launch_saved(spec, None)?)
    })?;
    Ok((avm.boxed(), snap.map_err(|e| e.to_string())))
}

/// [`boot_logged`] of a QEMU VM (whatever `plan.backend` says), no console file.
pub fn boot_qemu(plan: BootPlan<'_>) -> Result<AgentVm<QemuVm>, RunError> {
    let plan = BootPlan {
        backend: Backend::Qemu,
        ..plan
    };
    again_if_spurious(|| Ok(launch(agent_spec(&plan, None)?)?))
}

/// Boots the VM and waits for the agent's hello (a boot that hung is tried
/// once more), with the VM's whole console also written to `console_log`.
pub fn boot_logged(plan: BootPlan<'_>, console_log: Option<PathBuf>) -> Result<Booted, RunError> {
    again_if_spurious(|| {
        let spec = agent_spec(&plan, console_log.clone())?;
        Ok(plan.launch(spec)?)
    })
}

/// Boots with `boot`, and once more when the first boot failed in a way
/// that says nothing of the kernel ([`spurious`]): no program ran yet, so
/// there is no finding, and one such boot must not fail a run. A second
/// failure is the error; a boot that ended otherwise (a panic of the
/// kernel's own, the agent failing) is not retried, it would end the same
/// way.
fn again_if_spurious<T>(mut boot: impl FnMut() -> Result<T, RunError>) -> Result<T, RunError> {
    match boot() {
        Err(e) => match spurious(&e) {
            Some(why) => {
                eprintln!("cgstorm: {e}");
                eprintln!("cgstorm: {why} (no program ran); booting once more");
                boot()
            }
            None => Err(e),
        },
        ok => ok,
    }
}

/// Why a failed boot is the emulator's, not the kernel's:
/// - it hung before the agent said hello: under TCG Debian's 6.1 kernel
///   sometimes stops early in its boot for good (once in a whole CI run of
///   2026-12-02, right after `sched_clock: Marking stable`);
/// - the kernel oopsed on an int3 whose breakpoint is no longer in memory
///   (the `Code:` byte before RIP is not `cc`): TCG ran a stale
///   translation of code the boot was patching (a static key), which
///   hardware cannot do (see `verdict::stale_breakpoint`). Seen on the
///   6.12 lockdep kernel at 1.5 s, once in 22 boots, in `hrtimer_start_range_ns`
///   (harness/report/testdata/boot-stale-int3-6.12-lockdep.log).
fn spurious(e: &RunError) -> Option<&'static str> {
    match e {
        RunError::Launch(LaunchError::Boot(BootError::Timeout { .. })) => {
            Some("the boot hung before the agent started")
        }
        RunError::Launch(LaunchError::Boot(BootError::Exited { console_tail, .. }))
            if cgstorm_report::parse(console_tail)
                .first()
                .is_some_and(|r| {
                    r.title.starts_with("int3 in ") && super::verdict::stale_breakpoint(&r.text)
                }) =>
        {
            Some(
                "the kernel trapped on a breakpoint no longer in memory while booting: \
                 TCG ran a stale translation of code being patched",
            )
        }
        _ => None,
    }
}

/// What to boot, for either backend ([`BootPlan::agent_spec`]), stopped by
/// Ctrl-C.
fn agent_spec(plan: &BootPlan<'_>, console_log: Option<PathBuf>) -> Result<AgentVmSpec, RunError> {
    let mut spec = plan.agent_spec(console_log)?;
    // Ctrl-C during the boot stops it; the VM and its files are removed.
    spec.stop = super::signal::interrupted;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hung() -> RunError {
        RunError::Launch(LaunchError::Boot(BootError::Timeout {
            after: Duration::from_secs(120),
            console_tail: "sched_clock: Marking stable".into(),
        }))
    }

    #[test]
    fn a_hung_boot_is_tried_once_more_and_only_once() {
        let mut boots = 0;
        let r = again_if_spurious(|| {
            boots += 1;
            if boots == 1 {
                Err(hung())
            } else {
                Ok(boots)
            }
        });
        assert_eq!(r.unwrap(), 2);

        let mut boots = 0;
        let r: Result<(), _> = again_if_spurious(|| {
            boots += 1;
            Err(hung())
        });
        assert_eq!(boots, 2);
        assert!(matches!(
            r,
            Err(RunError::Launch(LaunchError::Boot(
                BootError::Timeout { .. }
            )))
        ));
    }

    /// The boot console of a 6.12 lockdep kernel that hit TCG's stale
    /// breakpoint before the agent started; with the breakpoint still in
    /// memory (`cc` before RIP) it is a real unhandled int3, not retried.
    #[test]
    fn a_boot_killed_by_a_stale_breakpoint_is_tried_once_more() {
        let log = include_str!("../../../report/testdata/boot-stale-int3-6.12-lockdep.log");
        let exited = |tail: &str| {
            RunError::Launch(LaunchError::Boot(BootError::Exited {
                status: "exit code 0".into(),
                console_tail: tail.into(),
            }))
        };
        let tail: Vec<&str> = log.lines().rev().take(200).collect();
        let tail: String = tail.into_iter().rev().flat_map(|l| [l, "\n"]).collect();
        let mut boots = 0;
        let r = again_if_spurious(|| {
            boots += 1;
            if boots == 1 {
                Err(exited(&tail))
            } else {
                Ok(boots)
            }
        });
        assert_eq!(r.unwrap(), 2);
        let live = tail.replace("00 0f <1f> 44", "00 cc <1f> 44");
        assert_ne!(live, tail);
        let mut boots = 0;
        let r: Result<(), _> = again_if_spurious(|| {
            boots += 1;
            Err(exited(&live))
        });
        assert_eq!(boots, 1);
        assert!(r.is_err());
    }

    #[test]
    fn a_boot_that_ended_otherwise_is_not_retried() {
        let mut boots = 0;
        let r: Result<(), _> = again_if_spurious(|| {
            boots += 1;
            Err(RunError::Launch(LaunchError::Boot(BootError::Exited {
                status: "exit code 1".into(),
                console_tail: "Kernel panic".into(),
            })))
        });
        assert_eq!(boots, 1);
        assert!(r.is_err());
        let mut boots = 0;
        let r = again_if_spurious(|| {
            boots += 1;
            Ok(())
        });
        assert_eq!((boots, r.is_ok()), (1, true));
    }
}
