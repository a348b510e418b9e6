//! `cgstorm fuzz`: generate programs from seeded bytes and mutate kept ones,
//! run them in VMs that stay up across programs, keep what shows new
//! behaviour, store every finding with the command that replays it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use cgstorm_workloads::{Millis, Program};

use crate::campaign::engine::Campaign;
use crate::campaign::feedback;
use crate::campaign::source::{
    as_seed, executed_ops, load_programs, FuzzSource, Shard, FAULTS_ONE_IN, MAX_SEED_OPS,
};
use crate::campaign::Env;
use crate::findings::write_new;
use crate::vm_args::VmArgs;

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
    /// default: this checkout's corpus/semantics, corpus/regressions and corpus/scenarios).
    #[arg(long)]
    pub corpus: Vec<PathBuf>,
    /// Print a progress line this often.
    #[arg(long, default_value = "30s")]
    pub progress: Millis,
    /// Keep programs for new kernel edges (KCOV) that show again in a
    /// re-run, and generate more of the families of ops that brought new
    /// edges lately. Use it with --focus: on the 6.12 debug kernel, three
    /// seeds, twenty minutes, it ran 4 to 6 % more of the subsystems' code
    /// than the search without it, as many edges, and met the DAX warning
    /// sooner (median 377 s against 992 s; BENCHMARKS.md, kernel
    /// coverage). Off by default (--focus needs the kernel's source).
    /// Without it edges are still collected and counted.
    #[arg(long, conflicts_with = "no_kcov")]
    pub cover_feedback: bool,
    /// Do not collect kernel coverage, even where the kernel has KCOV: to
    /// measure what collecting it costs (the summary's rates and host cpu).
    #[arg(long, conflicts_with = "focus")]
    pub no_kcov: bool,
    /// What else keeps a program in the corpus, of: title (a finding
    /// title), outcome (an op kind's result), state (a barrier state's
    /// shape), event (a tracepoint count bucket of background work). All
    /// by default; `title,outcome,state` is the signal cgstorm had before
    /// it saw the kernel, for comparing.
    #[arg(long, value_delimiter = ',', default_values_t = feedback::SIGNALS.map(String::from))]
    pub signals: Vec<String>,
    /// A kernel source tree of the campaign's kernel (as `cgstorm cover
    /// --source` takes): count the PCs run in the functions of the
    /// subsystems that matter, and with --cover-feedback guide by those:
    /// keep (after a re-run) the programs that reach new ones, and lean the
    /// generator to the families of ops that do, not to those that reach
    /// the most new code anywhere.
    #[arg(long, value_name = "SRC")]
    pub focus: Option<PathBuf>,
    /// Inject faults: about one in eight of the ops that can carry it get a
    /// `fail_nth: N` (the N-th allocation the op makes in the kernel fails),
    /// and the model allows each such op to fail cleanly. Needs a kernel
    /// with CONFIG_FAULT_INJECTION, FAILSLAB, FAIL_PAGE_ALLOC and
    /// FAULT_INJECTION_DEBUG_FS (the shared 6.12 debug kernel).
    #[arg(long)]
    pub fault_injection: bool,
    /// Take shard I of N of the seed's programs (0-based: `--shard 0/4`);
    /// each shard needs its own workdir.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Exchange corpus programs with the other campaigns using DIR (a
    /// directory all shards of a fleet see): publish the programs this one
    /// keeps, and every 30 s run those the others published, keeping the
    /// ones that show something new here.
    #[arg(long, value_name = "DIR")]
    pub exchange: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmArgs,
}

/// The corpus directory cgstorm ships with ([`crate::data::corpus`]).
pub fn default_corpus() -> PathBuf {
    crate::data::corpus()
}

/// `cgstorm fuzz` with the options (other than the VM's) that make this
/// campaign again: its seed, workdir, duration, and those of the rest that
/// are not at their defaults.
fn campaign_words(a: &FuzzArgs, seed: u64) -> Vec<String> {
    let mut w: Vec<String> = ["cgstorm", "fuzz", "--seed"].map(String::from).into();
    w.push(seed.to_string());
    w.push("--workdir".into());
    w.push(a.workdir.display().to_string());
    w.push("--duration".into());
    w.push(a.duration.to_string());
    if a.jobs != 1 {
        w.extend(["--jobs".into(), a.jobs.to_string()]);
    }
    if a.shard != Shard::default() {
        w.extend([
            "--shard".into(),
            format!("{}/{}", a.shard.index, a.shard.count),
        ]);
    }
    if a.cover_feedback {
        w.push("--cover-feedback".into());
    }
    if let Some(src) = &a.focus {
        w.extend(["--focus".into(), src.display().to_string()]);
    }
    if a.signals != feedback::SIGNALS.map(String::from) {
        w.extend(["--signals".into(), a.signals.join(",")]);
    }
    if a.fault_injection {
        w.push("--fault-injection".into());
    }
    if a.no_kcov {
        w.push("--no-kcov".into());
    }
    for c in &a.corpus {
        w.extend(["--corpus".into(), c.display().to_string()]);
    }
    if let Some(x) = &a.exchange {
        w.extend(["--exchange".into(), x.display().to_string()]);
    }
    w
}

/// Runs `fuzz`.
pub fn run(a: &FuzzArgs) -> Result<u8> {
    if a.jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    let signals = a
        .signals
        .iter()
        .map(|n| {
            feedback::signal(n).ok_or_else(|| {
                anyhow::anyhow!(
                    "--signals: no signal `{n}`; the signals are {}",
                    feedback::SIGNALS.join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let focus = match &a.focus {
        Some(src) => {
            let functions: HashSet<String> = crate::kernel_code::subsystem_functions(src)
                .with_context(|| format!("--focus {}", src.display()))?
                .into_iter()
                .filter(|s| s.instrumented)
                .flat_map(|s| s.functions)
                .collect();
            eprintln!(
                "cgstorm fuzz: focus: {} functions of {} (those KCOV instruments)",
                functions.len(),
                crate::kernel_code::SUBSYSTEMS.join(" ")
            );
            Some(functions)
        }
        None => None,
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    crate::run::signal::install();
    let env = Env::new(&a.vm)?;
    let replay = env.command(campaign_words(a, seed));
    std::fs::create_dir_all(&a.workdir)
        .with_context(|| format!("cannot create the workdir {}", a.workdir.display()))?;
    let mut campaign = Campaign::open(
        vec![env],
        &a.workdir,
        "fuzz.json",
        Duration::from_millis(a.duration.0),
    )?;
    campaign.cover_feedback = a.cover_feedback;
    campaign.kcov = !a.no_kcov;
    campaign.signals = signals;
    campaign.focus = focus;
    if let Some(dir) = &a.exchange {
        let me = format!("seed-{seed}-shard-{}-of-{}", a.shard.index, a.shard.count);
        campaign.exchange = Some(super::campaign::exchange::Exchange::join(
            dir,
            &me,
            &a.workdir.join("exchange.seen"),
        )?);
    }
    {
        let mut st = campaign.state();
        // The mailing-list scenarios are seeds too: the shapes of the
        // threads are where the search starts (their mutations run for the
        // fuzz program duration, not the scenario's minute).
        let dirs = if a.corpus.is_empty() {
            vec![
                default_corpus().join("semantics"),
                default_corpus().join("regressions"),
                default_corpus().join("scenarios"),
            ]
        } else {
            a.corpus.clone()
        };
        let (seeds, heavy): (Vec<Program>, Vec<Program>) = load_programs(&dirs)
            .into_iter()
            .map(as_seed)
            .partition(|p| executed_ops(p) <= MAX_SEED_OPS);
        for p in &heavy {
            eprintln!(
                "cgstorm fuzz: not a seed: {} ({} ops a run, more than {MAX_SEED_OPS}; `cgstorm scenario run` runs it)",
                p.name,
                executed_ops(p)
            );
        }
        eprintln!(
            "cgstorm fuzz: seed {seed}, {} jobs, workdir {}, {} corpus programs ({} from the workdir)",
            a.jobs,
            a.workdir.display(),
            seeds.len() + st.corpus.len(),
            st.corpus.len()
        );
        st.add_seeds(seeds);
    }
    eprintln!("cgstorm fuzz: replay this campaign with: {replay}");
    campaign.run(
        a.jobs,
        &FuzzSource {
            seed,
            shard: a.shard,
            faults_one_in: if a.fault_injection { FAULTS_ONE_IN } else { 0 },
        },
        Duration::from_millis(a.progress.0),
    );
    let st = campaign.state();
    let text = st.stats.text("fuzz");
    print!("{text}");
    let _ = write_new(&a.workdir.join("fuzz-summary.txt"), text.as_bytes());
    let _ = write_new(
        &a.workdir.join("fuzz.junit.xml"),
        st.stats.junit(&a.shard.suite("cgstorm fuzz")).as_bytes(),
    );
    // KTAP as soak writes it: `not ok` for a part with a new finding or one
    // that tested nothing.
    let _ = write_new(&a.workdir.join("fuzz.ktap"), st.stats.ktap().as_bytes());
    let new = st.stats.findings.values().any(|f| f.new && !f.known);
    drop(st);
    if let Some(why) = campaign.infrastructure_failure() {
        eprintln!("cgstorm fuzz: FAILED: {why}");
        return Ok(3);
    }
    Ok(if new { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Line {
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Fuzz(FuzzArgs),
    }

    fn parse(words: &[String]) -> FuzzArgs {
        let Sub::Fuzz(a) = Line::parse_from(words).cmd;
        a
    }

    /// The line printed to replay a campaign parses back to the campaign's
    /// own options, its kernel and the others not at their defaults included.
    #[test]
    fn the_replay_line_gives_the_same_campaign() {
        let given: Vec<String> = [
            "cgstorm",
            "fuzz",
            "--duration",
            "30m",
            "--jobs",
            "2",
            "--cover-feedback",
            "--corpus",
            "my corpus",
            "--shard",
            "1/4",
            "--exchange",
            "/net/hub",
            "--kernel",
            "/tmp/alone/bzImage",
            "--memory",
            "3G",
        ]
        .map(String::from)
        .into();
        let a = parse(&given);
        let mut words = campaign_words(&a, 7);
        words.extend(a.vm.to_args());
        let again = parse(&words);
        let mut expected = a;
        expected.seed = Some(7);
        assert_eq!(format!("{again:?}"), format!("{expected:?}"));
        assert!(
            words.contains(&"/tmp/alone/bzImage".to_string()),
            "{words:?}"
        );
    }
}
