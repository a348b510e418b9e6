//! The kernel configuration the model needs (MEMCG_V1, FS_DAX, cgroup
//! writeback, io and pids controllers), read from the `.config` next to the
//! kernel when there is one; without it cgstorm assumes its kernels' usual
//! configuration, which the user can correct with flags.

use std::path::PathBuf;

use cgstorm_workloads::model::target::config_enabled;
use cgstorm_workloads::model::Kernel;

use crate::error::KernelError;
use crate::kernel::{self, Kernel as VmKernel, KernelSpec};

/// A kernel ready to boot, with its configuration if one was found.
pub struct FoundKernel {
    /// The kernel.
    pub kernel: VmKernel,
    /// Its `.config` and where it was.
    pub config: Option<(PathBuf, KConfig)>,
}

impl FoundKernel {
    /// The kernel `spec` names ([`kernel::locate`]), and its configuration
    /// if one is beside it ([`find`]).
    pub fn locate(spec: &KernelSpec) -> Result<FoundKernel, KernelError> {
        let kernel = kernel::locate(spec)?;
        let config = find(spec, &kernel);
        Ok(FoundKernel { kernel, config })
    }

    /// The image and what it is, for the line that says what boots:
    /// `…/vmlinuz-6.1.0-57-cloud-amd64 (6.1.0-57-cloud-amd64, Debian package
    /// linux-image-6.1.0-57-cloud-amd64 6.1.192-3)`.
    pub fn describe(&self) -> String {
        let k = &self.kernel;
        match &k.package {
            Some(p) => format!("{} ({}, Debian package {p})", k.image.display(), k.release),
            None => format!("{} ({})", k.image.display(), k.release),
        }
    }
}

/// A kernel's `.config` text, read the one way the model reads it
/// ([`config_enabled`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KConfig(String);

impl KConfig {
    /// The configuration `.config` text gives; comments (`# CONFIG_X is not
    /// set`) mean unset.
    pub fn parse(text: &str) -> KConfig {
        KConfig(text.to_string())
    }

    /// Whether the option (without `CONFIG_`) is built in or a module.
    pub fn enabled(&self, name: &str) -> bool {
        config_enabled(&self.0, name)
    }

    /// Applies the options the model depends on to `k` (the model's own
    /// [`Kernel::apply_config`]).
    pub fn apply(&self, k: &mut Kernel) {
        k.apply_config(&self.0);
    }
}

/// Where a kernel's configuration may be: `<tree>/.config` for a tree;
/// `config-<release>` beside the image or in `../boot` (Debian's layout);
/// the image's name with `bzImage`/`vmlinuz` turned into `config`
/// (`bzImage-6.12-lockdep` → `config-6.12-lockdep`).
pub fn candidates(spec: &KernelSpec, kernel: &VmKernel) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let KernelSpec::Tree(tree) = spec {
        v.push(tree.join(".config"));
    }
    let image = &kernel.image;
    if let Some(dir) = image.parent() {
        v.push(dir.join(format!("config-{}", kernel.release)));
        v.push(
            dir.join("../boot")
                .join(format!("config-{}", kernel.release)),
        );
        if let Some(name) = image.file_name().and_then(|n| n.to_str()) {
            for prefix in ["bzImage", "vmlinuz"] {
                if let Some(rest) = name.strip_prefix(prefix).filter(|r| !r.is_empty()) {
                    v.push(dir.join(format!("config{rest}")));
                }
            }
        }
    }
    v
}

/// The first readable configuration among the candidates, with its path.
pub fn find(spec: &KernelSpec, kernel: &VmKernel) -> Option<(PathBuf, KConfig)> {
    candidates(spec, kernel).into_iter().find_map(|p| {
        let text = std::fs::read_to_string(&p).ok()?;
        Some((p, KConfig::parse(&text)))
    })
}

/// Whether a config file says the kernel has 9p (for virtme-ng's `--force-9p`).
pub fn has_9p(config: Option<&KConfig>) -> bool {
    config.is_some_and(|c| c.enabled("9P_FS") && c.enabled("NET_9P_VIRTIO"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "#\n# CONFIG_MEMCG_V1 is not set\nCONFIG_FS_DAX=y\n\
        CONFIG_CGROUP_WRITEBACK=y\nCONFIG_BLK_CGROUP=y\nCONFIG_CGROUP_PIDS=m\nCONFIG_SWAP=y\n\
        CONFIG_DEFAULT_HOSTNAME=\"(none)\"\n";

    #[test]
    fn memcg_v1_is_read_only_from_6_11() {
        let c = KConfig::parse(CONFIG);
        let mut new = Kernel::from_release("6.12.3").unwrap();
        c.apply(&mut new);
        assert!(!new.memcg_v1 && new.fs_dax && new.pids_controller);
        let mut old = Kernel::from_release("6.1.0-56-cloud-amd64").unwrap();
        c.apply(&mut old);
        assert!(old.memcg_v1);
        let mut nodax = Kernel::from_release("6.1.0").unwrap();
        KConfig::parse("CONFIG_SWAP=y\n").apply(&mut nodax);
        assert!(!nodax.fs_dax && !nodax.io_controller && nodax.swap_accounting);
        assert!(!nodax.blk_throttling);
    }

    #[test]
    fn finds_configs_beside_images_and_in_trees() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("bzImage-6.12-x");
        let k = VmKernel {
            image: image.clone(),
            release: "6.12.0".into(),
            modules: None,
            package: None,
        };
        assert!(find(&KernelSpec::Image(image.clone()), &k).is_none());
        std::fs::write(dir.path().join("config-6.12-x"), CONFIG).unwrap();
        let (p, c) = find(&KernelSpec::Image(image), &k).unwrap();
        assert!(p.ends_with("config-6.12-x"));
        assert!(c.enabled("FS_DAX") && c.enabled("CGROUP_PIDS"));
        assert!(!c.enabled("MEMCG_V1") && !c.enabled("DEFAULT_HOSTNAME") && !c.enabled("FS"));
        let tree = KernelSpec::Tree(dir.path().to_path_buf());
        assert!(candidates(&tree, &k)[0].ends_with(".config"));
        assert!(!has_9p(Some(&c)) && !has_9p(None));
    }
}
