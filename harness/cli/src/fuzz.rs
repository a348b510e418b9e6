//! `cgstorm fuzz`: generate programs from seeded bytes and mutate kept ones,
//! run them in VMs that stay up across programs, keep what shows new
//! behaviour, store every finding with the command that replays it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use arbitrary::{Arbitrary, Unstructured};
use cgstorm_workloads::{mutate, Millis, Program};

use crate::campaign::engine::{Campaign, Pick, Source};
use crate::campaign::Env;
use crate::vm_args::VmArgs;

/// How long a fuzz program's `for: run` loops run.
const PROGRAM_DURATION: Duration = Duration::from_secs(2);

/// Arguments of `cgstorm fuzz`.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// How long to fuzz (e.g. 10m, 2h), summed over resumed sessions.
    #[arg(long, default_value = "10m")]
    pub duration: Millis,
    /// The seed (default: from the clock; printed at the start).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where findings, the corpus and the state go.
    #[arg(long, default_value = "cgstorm-work")]
    pub workdir: PathBuf,
    /// VMs side by side.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Programs to start the corpus from (directories of YAML programs;
    /// default: this checkout's corpus/semantics and corpus/regressions).
    #[arg(long)]
    pub corpus: Vec<PathBuf>,
    /// Print a progress line this often.
    #[arg(long, default_value = "30s")]
    pub progress: Millis,
    #[command(flatten)]
    pub vm: VmArgs,
}

/// Reads every program under `dirs` (recursively), expectations removed.
pub fn load_programs(dirs: &[PathBuf]) -> Vec<Program> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    for d in dirs {
        walk(d, &mut paths);
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            Program::from_yaml_path(p, &text).ok()
        })
        .collect()
}

/// The checkout's corpus directory.
pub fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus")
}

/// 4 KiB of bytes from `seed` (splitmix64), for the generator.
pub fn seed_bytes(seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(4096);
    while out.len() < 4096 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Generated and mutated programs, one per draw, from the seed.
pub struct FuzzSource {
    /// The campaign seed.
    pub seed: u64,
}

impl FuzzSource {
    /// Program `n` of the campaign: even draws (and every draw while the
    /// corpus is empty) are generated, odd ones mutate a corpus program.
    pub fn program(&self, n: u64, corpus: &[Program]) -> Program {
        let s = self.seed.wrapping_add(n.wrapping_mul(0x9E37_79B9));
        let bytes = seed_bytes(s);
        let mut u = Unstructured::new(&bytes);
        if n % 2 == 1 && !corpus.is_empty() {
            let parent = u.choose_index(corpus.len()).unwrap_or(0);
            if let Some((mut m, _)) = mutate::mutate(&corpus[parent], &mut u) {
                m.name = format!("mut-{s:x}-of-{}", corpus[parent].name);
                return m;
            }
        }
        let mut p = Program::arbitrary(&mut Unstructured::new(&bytes))
            .expect("the generator never fails on enough bytes");
        p.name = format!("gen-{s:x}");
        p
    }
}

impl Source for FuzzSource {
    fn next(&self, c: &Campaign, _job: usize) -> Option<Pick> {
        let (n, corpus) = {
            let mut st = c.state();
            let n = st.stats.draws;
            st.stats.draws += 1;
            st.issued += 1;
            (n, st.corpus.clone())
        };
        Some(Pick {
            program: self.program(n, &corpus),
            duration: PROGRAM_DURATION,
            part: "fuzz".into(),
            keep: true,
            env: 0,
        })
    }
}

/// Runs `fuzz`.
pub fn run(a: &FuzzArgs) -> Result<u8> {
    if a.jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    crate::run::signal::install();
    let env = Env::new(&a.vm)?;
    std::fs::create_dir_all(&a.workdir)
        .with_context(|| format!("cannot create the workdir {}", a.workdir.display()))?;
    let campaign = Campaign::open(
        vec![env],
        &a.workdir,
        "fuzz.json",
        Duration::from_millis(a.duration.0),
    )?;
    {
        let mut st = campaign.state();
        // Scenarios are long and heavy by design; `cgstorm soak` runs them.
        let dirs = if a.corpus.is_empty() {
            vec![
                default_corpus().join("semantics"),
                default_corpus().join("regressions"),
            ]
        } else {
            a.corpus.clone()
        };
        let seeds = load_programs(&dirs);
        eprintln!(
            "cgstorm fuzz: seed {seed}, {} jobs, workdir {}, {} corpus programs ({} from the workdir)",
            a.jobs,
            a.workdir.display(),
            seeds.len() + st.corpus.len(),
            st.corpus.len()
        );
        st.corpus.extend(seeds);
    }
    eprintln!(
        "cgstorm fuzz: replay this campaign with: cgstorm fuzz --seed {seed} --workdir {} --duration {}",
        a.workdir.display(),
        a.duration
    );
    campaign.run(
        a.jobs,
        &FuzzSource { seed },
        Duration::from_millis(a.progress.0),
    );
    let st = campaign.state();
    let text = st.stats.text("fuzz");
    print!("{text}");
    let _ = std::fs::write(a.workdir.join("fuzz-summary.txt"), &text);
    let new = st.stats.findings.values().any(|f| f.new && !f.known);
    Ok(if new { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_programs() {
        let corpus = load_programs(&[default_corpus().join("semantics")]);
        assert!(corpus.len() >= 10, "the semantics corpus is there");
        let src = FuzzSource { seed: 42 };
        for n in 0..20 {
            let a = src.program(n, &corpus).to_yaml();
            assert_eq!(a, src.program(n, &corpus).to_yaml(), "draw {n}");
            Program::from_yaml("p", &a).expect("valid");
        }
        let other = FuzzSource { seed: 43 };
        assert_ne!(
            src.program(0, &corpus).to_yaml(),
            other.program(0, &corpus).to_yaml()
        );
        assert!(src.program(1, &corpus).name.starts_with("mut-"));
        assert!(src.program(1, &[]).name.starts_with("gen-"));
    }
}
