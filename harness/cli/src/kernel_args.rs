//! Command-line options that describe the kernel the model predicts for.

use anyhow::{bail, Result};
use cgstorm_workloads::model::{Kernel, Target};

/// `--kernel-release` and feature switches.
#[derive(clap::Args, Debug, Clone)]
pub struct KernelArgs {
    /// Kernel release the prediction is for (e.g. 6.1.0-28-cloud-amd64, 6.12.117).
    #[arg(long, default_value = "6.1.0")]
    pub kernel_release: String,
    /// The kernel lacks the cgroup v1 memory controller (CONFIG_MEMCG_V1=n, 6.11+).
    #[arg(long)]
    pub no_memcg_v1: bool,
    /// The kernel lacks CONFIG_FS_DAX.
    #[arg(long)]
    pub no_dax: bool,
}

impl KernelArgs {
    /// The model's target for these options, with cgstorm's default VM.
    pub fn target(&self) -> Result<Target> {
        let Some(mut kernel) = Kernel::from_release(&self.kernel_release) else {
            bail!(
                "cannot read a version from kernel release `{}`: give it as MAJOR.MINOR[...], e.g. 6.1.0",
                self.kernel_release
            );
        };
        kernel.memcg_v1 = !self.no_memcg_v1;
        kernel.fs_dax = !self.no_dax;
        Ok(Target {
            kernel,
            ..Target::default()
        })
    }
}
