//! `cgstorm merge OUT DIR...`: one workdir from many (the shards of a
//! night, or campaigns on several machines); the merge itself is
//! [`crate::workdirs`].

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::workdirs::{merge_into, Merged};

/// Arguments of `cgstorm merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// The workdir to merge into (made if missing).
    pub out: PathBuf,
    /// The workdirs to merge.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

/// Runs `merge`; exit 0, or 2 when an input is no workdir.
pub fn run(a: &MergeArgs) -> Result<u8> {
    for d in &a.dirs {
        if !d.join("findings").is_dir() && !d.join("corpus").is_dir() {
            eprintln!(
                "cgstorm merge: {} is no campaign workdir (it has neither findings/ nor corpus/)",
                d.display()
            );
            return Ok(2);
        }
    }
    let mut total = Merged::default();
    for d in &a.dirs {
        let m = merge_into(&a.out, d)
            .with_context(|| format!("cannot merge {} into {}", d.display(), a.out.display()))?;
        total.new_findings += m.new_findings;
        total.updated_findings += m.updated_findings;
        total.new_programs += m.new_programs;
    }
    println!(
        "cgstorm merge: {} workdirs into {}: {} new findings, {} with sightings added, {} new corpus programs",
        a.dirs.len(),
        a.out.display(),
        total.new_findings,
        total.updated_findings,
        total.new_programs
    );
    Ok(0)
}
