//! What VM to run: memory, CPUs, scratch disks, persistent memory and extra
//! parameters, independent of the backend that runs it.

use std::path::PathBuf;

/// RAM the guest keeps beyond a [`Pmem::Memmap`] region, in MiB.
pub const MEMMAP_HEADROOM_MIB: u64 = 256;

/// Persistent memory for the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pmem {
    /// Legacy e820 pmem carved out of RAM with `memmap=SIZE!OFFSET`
    /// (needs nd_e820 + nd_pmem); RAM must extend past `offset + size`.
    Memmap {
        /// Size in MiB.
        size_mib: u64,
        /// Start in MiB.
        offset_mib: u64,
    },
    /// An emulated NVDIMM backed by a sparse host file (needs nfit + nd_pmem).
    Nvdimm {
        /// Size in MiB.
        size_mib: u64,
    },
}

/// What VM to run, independent of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The bzImage.
    pub kernel: PathBuf,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Sizes of the virtio-blk scratch disks in MiB (`/dev/vda`, `/dev/vdb`, …).
    pub disks_mib: Vec<u64>,
    /// Persistent memory (`/dev/pmem0`).
    pub pmem: Option<Pmem>,
    /// Extra kernel parameters.
    pub append: Vec<String>,
    /// Extra QEMU arguments, appended last.
    pub extra_args: Vec<String>,
}

impl Default for VmSpec {
    fn default() -> Self {
        Self {
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel: PathBuf::new(),
            memory_mib: 2048,
            cpus: 2,
            disks_mib: vec![],
            pmem: None,
            append: vec![],
            extra_args: vec![],
        }
    }
}

/// The `/dev` names the host expects the agent to see.
pub fn expected_devices(spec: &VmSpec) -> Vec<String> {
    let mut devs: Vec<String> = (0..spec.disks_mib.len()).map(disk_name).collect();
    if spec.pmem.is_some() {
        devs.push("pmem0".into());
    }
    devs
}

/// `vda`, `vdb`, … `vdz`, `vdaa` like the virtio-blk driver names them.
fn disk_name(i: usize) -> String {
    let mut name = String::new();
    let mut n = i + 1;
    while n > 0 {
        n -= 1;
        name.insert(0, (b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    format!("vd{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names() {
        assert_eq!(disk_name(0), "vda");
        assert_eq!(disk_name(25), "vdz");
        assert_eq!(disk_name(26), "vdaa");
    }

    #[test]
    fn expected_devices_follow_disks_and_pmem() {
        let spec = VmSpec {
            disks_mib: vec![1, 1],
            pmem: Some(Pmem::Nvdimm { size_mib: 64 }),
            ..VmSpec::default()
        };
        assert_eq!(expected_devices(&spec), ["vda", "vdb", "pmem0"]);
    }
}
