//! `cgstorm distill WORKDIR`: the fewest, shortest corpus programs that
//! keep every kernel edge the corpus has.
//!
//! A program kept for kernel edges has its edges beside it
//! (`corpus/<hash>.edges`, written when its re-run confirmed them). The
//! distilled corpus takes, greedily, the program that adds the most edges
//! not yet covered (the shorter one on a tie) until every edge is covered;
//! programs kept for other behaviour (no edges file) are all kept. It goes
//! to `WORKDIR/corpus.distilled/`, for `--corpus` or to replace the corpus.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::campaign::engine::read_edges;

/// Arguments of `cgstorm distill`.
#[derive(clap::Args, Debug)]
pub struct DistillArgs {
    /// The campaign workdir.
    pub workdir: PathBuf,
}

/// One program with its edges.
pub struct Candidate {
    /// Its size (the length of its YAML).
    pub len: usize,
    /// Its edges.
    pub edges: HashSet<u32>,
}

/// The candidates (indices) that together cover every edge of all of them,
/// chosen greedily: most new edges first, then the shorter.
pub fn cover(cands: &[Candidate]) -> Vec<usize> {
    let mut left: HashSet<u32> = cands.iter().flat_map(|c| c.edges.iter().copied()).collect();
    let mut chosen = Vec::new();
    while !left.is_empty() {
        let best = cands
            .iter()
            .enumerate()
            .filter(|(i, _)| !chosen.contains(i))
            .map(|(i, c)| {
                (
                    i,
                    c.edges.iter().filter(|e| left.contains(e)).count(),
                    c.len,
                )
            })
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
        match best {
            Some((i, gain, _)) if gain > 0 => {
                for e in &cands[i].edges {
                    left.remove(e);
                }
                chosen.push(i);
            }
            _ => break,
        }
    }
    chosen.sort_unstable();
    chosen
}

/// Runs `distill`; exit 0, or 2 when WORKDIR has no corpus.
pub fn run(a: &DistillArgs) -> Result<u8> {
    let corpus = a.workdir.join("corpus");
    let Ok(rd) = std::fs::read_dir(&corpus) else {
        eprintln!("cgstorm distill: {} has no corpus/", a.workdir.display());
        return Ok(2);
    };
    let mut programs: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    programs.sort();
    let (with, without): (Vec<PathBuf>, Vec<PathBuf>) = programs
        .into_iter()
        .partition(|p| p.with_extension("edges").is_file());
    let cands: Vec<Candidate> = with
        .iter()
        .map(|p| Candidate {
            len: std::fs::metadata(p).map_or(usize::MAX, |m| m.len() as usize),
            edges: read_edges(&p.with_extension("edges")),
        })
        .collect();
    let chosen = cover(&cands);
    let out = a.workdir.join("corpus.distilled");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let keep = chosen.iter().map(|i| &with[*i]).chain(&without);
    let mut n = 0;
    for p in keep {
        copy(p, &out)?;
        n += 1;
    }
    let edges: usize = cands
        .iter()
        .flat_map(|c| c.edges.iter())
        .collect::<HashSet<_>>()
        .len();
    println!(
        "cgstorm distill: {} of {} programs with edges keep all {edges} of their edges; with the {} kept for other behaviour, {n} programs in {}",
        chosen.len(),
        with.len(),
        without.len(),
        out.display()
    );
    Ok(0)
}

fn copy(p: &Path, out: &Path) -> Result<()> {
    let name = p.file_name().context("a corpus file has a name")?;
    std::fs::copy(p, out.join(name)).with_context(|| format!("cannot copy {}", p.display()))?;
    let edges = p.with_extension("edges");
    if edges.is_file() {
        std::fs::copy(&edges, out.join(name).with_extension("edges"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(len: usize, edges: &[u32]) -> Candidate {
        Candidate {
            len,
            edges: edges.iter().copied().collect(),
        }
    }

    /// Recorded-looking signal: one program covers what two others do
    /// between them, a fourth adds nothing; the distilled set is the big
    /// one plus the one with an edge nobody else has.
    #[test]
    fn the_fewest_programs_that_keep_every_edge() {
        let c = [
            cand(100, &[1, 2, 3]),
            cand(300, &[1, 2, 3, 4, 5, 6]),
            cand(100, &[4, 5, 6]),
            cand(50, &[2, 3]),
            cand(80, &[7]),
        ];
        assert_eq!(cover(&c), [1, 4]);
        let all: HashSet<u32> = cover(&c)
            .iter()
            .flat_map(|i| c[*i].edges.iter().copied())
            .collect();
        assert_eq!(all.len(), 7, "every edge kept");
    }

    /// Between two programs with the same edges, the shorter stays.
    #[test]
    fn the_shorter_of_equals_stays() {
        let c = [cand(500, &[1, 2]), cand(90, &[1, 2])];
        assert_eq!(cover(&c), [1]);
        assert!(cover(&[]).is_empty());
    }
}
