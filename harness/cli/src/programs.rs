//! Programs from files: the loader every command uses (errors say
//! file:line:column), and a run's results as a campaign stores them beside
//! a model divergence (`trace.json`, which `cgstorm check --trace` reads).

use std::path::PathBuf;

use anyhow::{Context, Result};
use cgstorm_workloads::model::{Target, Trace};
use cgstorm_workloads::Program;
use serde::Serialize;

/// Loads and validates a program file; errors say file:line:column.
pub fn load(path: &PathBuf) -> Result<Program> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read program {}", path.display()))?;
    Ok(Program::from_yaml_path(path, &text)?)
}

/// A run's results and the kernel the model judged them for, as a campaign
/// stores them beside a model divergence (`trace.json`).
#[derive(Serialize, serde::Deserialize)]
pub struct StoredRun {
    /// The kernel, as the boot's probe made it known to the model.
    pub target: Target,
    /// The results.
    pub trace: Trace,
}
