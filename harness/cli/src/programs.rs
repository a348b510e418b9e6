//! Programs from files: the loader every command uses (errors say
//! file:line:column), and a run's results as a campaign stores them beside
//! a model divergence (`trace.json`, which `cgstorm check --trace` reads).

use std::path::Path;

use anyhow::{Context, Result};
use cgstorm_workloads::model::{Target, Trace};
use cgstorm_workloads::Program;
use serde::Serialize;

/// Loads and validates a program file; errors say file:line:column. The
/// one loader: commands, the corpus, finding directories, the exchange.
pub fn load(path: &Path) -> Result<Program> {
    Ok(load_with_text(path)?.0)
}

/// [`load`], and the file's text (for what its comments say).
pub fn load_with_text(path: &Path) -> Result<(Program, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read program {}", path.display()))?;
    let program = Program::from_yaml_path(path, &text)?;
    Ok((program, text))
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
