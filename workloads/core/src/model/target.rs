//! What the model needs to know about the kernel and the VM it predicts for.
//!
//! Predictions depend on the kernel's version and configuration; every rule
//! that does says so where it reads a field of [`Kernel`].

use serde::{Deserialize, Serialize};

use crate::names::Size;

/// Whether a kernel's `.config` text builds the option `name` (without
/// `CONFIG_`) in or as a module: a `CONFIG_NAME=y` or `=m` line. A comment
/// (`# CONFIG_NAME is not set`) or no line at all is off.
pub fn config_enabled(config: &str, name: &str) -> bool {
    let key = format!("CONFIG_{name}=");
    config
        .lines()
        .any(|l| l.strip_prefix(&key).is_some_and(|v| v == "y" || v == "m"))
}

/// The kernel under test, as far as predictions depend on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// `uname -r`, informational.
    pub release: String,
    /// Major and minor version, e.g. (6, 1).
    pub version: (u32, u32),
    /// The cgroup v1 memory controller is available (always before 6.11;
    /// `CONFIG_MEMCG_V1` from 6.11 on).
    pub memcg_v1: bool,
    /// `CONFIG_CGROUP_WRITEBACK`.
    pub cgroup_writeback: bool,
    /// `CONFIG_FS_DAX`.
    pub fs_dax: bool,
    /// The io controller exists (`CONFIG_BLK_CGROUP`).
    pub io_controller: bool,
    /// The pids controller exists (`CONFIG_CGROUP_PIDS`).
    pub pids_controller: bool,
    /// Swap accounting: `memory.swap.max` exists.
    pub swap_accounting: bool,
    /// `CONFIG_BLK_DEV_THROTTLING`: `io.max` exists.
    pub blk_throttling: bool,
}

impl Kernel {
    /// Whether the version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version >= (major, minor)
    }

    /// `cgroup.kill` exists (5.14).
    pub fn has_cgroup_kill(&self) -> bool {
        self.at_least(5, 14)
    }

    /// `memory.reclaim` exists (5.19).
    pub fn has_memory_reclaim(&self) -> bool {
        self.at_least(5, 19)
    }

    /// tmpfs accepts `O_DIRECT` (6.6).
    pub fn tmpfs_direct_io(&self) -> bool {
        self.at_least(6, 6)
    }

    /// Dying cgwbs release their inodes by switching them (5.14), so
    /// `nr_dying_descendants` returns to 0 once pages are dropped.
    pub fn releases_dying_cgwbs(&self) -> bool {
        self.at_least(5, 14)
    }

    /// Debian 12's stock cloud kernel (6.1): everything the workloads use,
    /// xfs, loop and pmem as modules.
    pub fn debian_6_1() -> Kernel {
        Kernel {
            release: "6.1.0-cloud-amd64".into(),
            version: (6, 1),
            memcg_v1: true,
            cgroup_writeback: true,
            fs_dax: true,
            io_controller: true,
            pids_controller: true,
            swap_accounting: true,
            blk_throttling: true,
        }
    }

    /// Takes the features from a kernel's full `.config`: an option it does
    /// not set to `y` or `m` is off (Kconfig leaves out options whose
    /// dependencies are off). Before 6.11 the v1 memory controller cannot be
    /// configured out, so `memcg_v1` is only read from 6.11 on.
    pub fn apply_config(&mut self, config: &str) {
        let on = |name: &str| config_enabled(config, name);
        if self.at_least(6, 11) {
            self.memcg_v1 = on("MEMCG_V1");
        }
        self.cgroup_writeback = on("CGROUP_WRITEBACK");
        self.fs_dax = on("FS_DAX");
        self.io_controller = on("BLK_CGROUP");
        self.pids_controller = on("CGROUP_PIDS");
        self.swap_accounting &= on("SWAP");
        self.blk_throttling = on("BLK_DEV_THROTTLING");
    }

    /// Where `other` differs from this kernel in a config-given feature, one
    /// line each as this kernel has it ("CONFIG_FS_DAX=y").
    pub fn config_differences(&self, other: &Kernel) -> Vec<String> {
        [
            ("MEMCG_V1", self.memcg_v1, other.memcg_v1),
            (
                "CGROUP_WRITEBACK",
                self.cgroup_writeback,
                other.cgroup_writeback,
            ),
            ("FS_DAX", self.fs_dax, other.fs_dax),
            ("BLK_CGROUP", self.io_controller, other.io_controller),
            ("CGROUP_PIDS", self.pids_controller, other.pids_controller),
            ("SWAP", self.swap_accounting, other.swap_accounting),
            (
                "BLK_DEV_THROTTLING",
                self.blk_throttling,
                other.blk_throttling,
            ),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, _)| {
            if a {
                format!("CONFIG_{name}=y")
            } else {
                format!("CONFIG_{name} is not set")
            }
        })
        .collect()
    }

    /// The 6.12 kernels in `shared/kernels` (MEMCG_V1 on).
    pub fn v6_12() -> Kernel {
        Kernel {
            release: "6.12".into(),
            version: (6, 12),
            ..Kernel::debian_6_1()
        }
    }

    /// A kernel from a version string such as `6.12.117` or `6.1.0-28-cloud-amd64`,
    /// with the configuration cgstorm's kernels have. `memcg_v1` follows the
    /// version (before 6.11 it cannot be configured out).
    pub fn from_release(release: &str) -> Option<Kernel> {
        let mut it = release.split(|c: char| !c.is_ascii_digit());
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some(Kernel {
            release: release.to_string(),
            version: (major, minor),
            ..Kernel::debian_6_1()
        })
    }
}

/// The VM's devices and memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Number of virtio-blk scratch disks (`scratch0`…).
    pub scratch_disks: u8,
    /// Size of each scratch disk.
    pub scratch_size: Size,
    /// Number of pmem devices (`pmem0`…).
    pub pmem_devices: u8,
    /// Size of each pmem device.
    pub pmem_size: Size,
    /// Guest RAM (tmpfs defaults to half of it).
    pub memory: Size,
}

impl Default for Machine {
    fn default() -> Machine {
        Machine {
            scratch_disks: 2,
            scratch_size: Size(1 << 30),
            pmem_devices: 1,
            pmem_size: Size(512 << 20),
            memory: Size(2 << 30),
        }
    }
}

/// Kernel and machine together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The kernel.
    pub kernel: Kernel,
    /// The VM.
    pub machine: Machine,
}

impl Default for Target {
    fn default() -> Target {
        Target {
            kernel: Kernel::debian_6_1(),
            machine: Machine::default(),
        }
    }
}
