//! Restarting a VM without booting it: once the agent of a QEMU VM said
//! hello, its whole state (RAM, devices, vCPUs) is saved to a file through
//! QMP (a migration to `cat > FILE`), and a VM that must be replaced (after
//! a finding, a hang, a reset that left something) is a new QEMU started
//! from that file (`-incoming`) with fresh scratch disks, which were still
//! blank when the state was saved. The restored agent says its hello again
//! when asked, under a fresh token the order brings (the boot's lives in
//! the saved memory, the same for every VM restored from it).
//!
//! What is not saved, and so refused: NVDIMM pmem (its backing file is
//! outside the saved state), scratch disks already written to.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{HostError, LaunchError};
use crate::launch::{AgentVm, AgentVmSpec, Prepared};
use crate::qemu::console::ConsoleSink;
use crate::qemu::qmp::Qmp;
use crate::qemu::QMP_SOCKET;
use crate::spec::Pmem;

/// How long saving may take under KVM (scaled by the accelerator).
const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A saved VM that new VMs start from.
pub struct Snapshot {
    prepared: Prepared,
    state: PathBuf,
    _dir: TempDir,
    /// The saved state's RAM, in bytes.
    pub ram_bytes: u64,
    /// How long saving took.
    pub save_time: Duration,
}

/// Boots like [`crate::launch::launch`] and saves the VM's state once the
/// agent said hello; the VM runs on. The snapshot is an error (with the
/// reason) when it cannot be taken: the VM is still good.
pub fn launch_saved(
    mut spec: AgentVmSpec,
    state_dir: Option<PathBuf>,
) -> Result<(AgentVm, Result<Snapshot, HostError>), LaunchError> {
    // The state is saved right after the hello: nothing may be loading then.
    spec.vm
        .append
        .push(format!("{}=1", cgstorm_proto::contract::SAVED_PARAM));
    let mut prepared = Prepared::new(spec)?;
    let why_not = match prepared.vm.pmem {
        Some(Pmem::Nvdimm { .. }) => {
            Some("an nvdimm's backing file is not part of the saved state")
        }
        _ => None,
    };
    let (log, sink) = (prepared.console_log.take(), prepared.console_sink.take());
    let mut avm = prepared.start(why_not.is_none(), None, log, sink)?;
    if let Some(why) = why_not {
        avm._initrd_dir = Some(prepared.initrd_dir);
        return Ok((avm, Err(HostError::Snapshot(why.into()))));
    }
    let saved = save(&avm, &prepared, state_dir);
    match saved {
        Ok((dir, state, ram_bytes, save_time)) => Ok((
            avm,
            Ok(Snapshot {
                prepared,
                state,
                _dir: dir,
                ram_bytes,
                save_time,
            }),
        )),
        Err(e) => {
            avm._initrd_dir = Some(prepared.initrd_dir);
            Ok((avm, Err(e)))
        }
    }
}

fn save(
    avm: &AgentVm,
    prepared: &Prepared,
    state_dir: Option<PathBuf>,
) -> Result<(TempDir, PathBuf, u64, Duration), HostError> {
    let started = Instant::now();
    let dir = crate::process::owned_temp_dir("cgstorm-snapshot-", state_dir.as_deref())
        .map_err(HostError::io("create the snapshot's directory"))?;
    let state = dir.path().join("state");
    let timeout = prepared.accel.scale(SAVE_TIMEOUT);
    let mut qmp = Qmp::connect(&avm.vm.dir().join(QMP_SOCKET), timeout)?;
    // The disks a restored VM gets are new and blank: the saved one's must
    // be blank too (the agent writes nothing to them before its hello).
    for i in 0..prepared.vm.disks_mib.len() {
        let disk = crate::qemu::disk_file(avm.vm.dir(), i);
        let blocks = std::fs::metadata(&disk)
            .map_err(HostError::io(format!("stat {}", disk.display())))?
            .blocks();
        if blocks != 0 {
            return Err(HostError::Snapshot(format!(
                "scratch disk {i} was written before the snapshot ({blocks} blocks)"
            )));
        }
    }
    let ram = qmp.save_state(&state, timeout)?;
    Ok((dir, state, ram, started.elapsed()))
}

impl Snapshot {
    /// A new VM from the saved state, with blank scratch disks, its console
    /// to `console_log`; ready when its agent said hello again.
    pub fn restore(
        &self,
        console_log: Option<PathBuf>,
        console_sink: Option<ConsoleSink>,
    ) -> Result<AgentVm, LaunchError> {
        self.prepared
            .start(false, Some(&self.state), console_log, console_sink)
    }

    /// The saved state file.
    pub fn state_file(&self) -> &std::path::Path {
        &self.state
    }
}
