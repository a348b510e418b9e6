//! `cgstorm soak`: the nightly mode. Rotates through the scenario library
//! and slices of fuzzing, on one or more kernels, restarting VMs after
//! panics and hangs, until the duration is spent. Counters are saved in the
//! workdir after every program: started again with the same workdir (after
//! Ctrl-C, a reboot, or SIGKILL) it resumes where it was, and no finding
//! already stored is lost. Ends with a summary as text, JSON and KTAP.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cgstorm_workloads::{Millis, Program};
use serde::Serialize;

use crate::campaign::engine::{Campaign, Pick, Source};
use crate::campaign::source::{load_programs, FuzzSource, Shard};
use crate::campaign::stats::Stats;
use crate::campaign::Env;
use crate::findings::write_new;
use crate::vm_args::VmArgs;

/// Arguments of `cgstorm soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// How long to soak (e.g. 8h), summed over resumed sessions.
    #[arg(long, default_value = "8h")]
    pub duration: Millis,
    /// Where findings, the corpus, the state and the summaries go; the same
    /// workdir resumes a soak.
    #[arg(long, default_value = "cgstorm-soak")]
    pub workdir: PathBuf,
    /// More kernels to rotate through (each full rotation of scenarios and
    /// fuzzing runs on the next kernel); `--kernel` is the first.
    #[arg(long = "also-kernel")]
    pub also_kernels: Vec<String>,
    /// How long each scenario runs.
    #[arg(long, default_value = "60s")]
    pub scenario_duration: Millis,
    /// How long each slice of fuzzing between scenarios lasts.
    #[arg(long, default_value = "5m")]
    pub fuzz_slice: Millis,
    /// The scenarios (default: this checkout's corpus/scenarios).
    #[arg(long)]
    pub scenarios: Option<PathBuf>,
    /// The fuzzer's seed (default: 1, so a soak is repeatable).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// VMs side by side.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Soak as shard I of N of a fleet (0-based: `--shard 0/4`): the fuzz
    /// slices take shard I of the seed's programs, and the rotation starts
    /// at scenario I, so the shards' nights differ. Each shard needs its own
    /// workdir.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Print a progress line this often.
    #[arg(long, default_value = "60s")]
    pub progress: Millis,
    #[command(flatten)]
    pub vm: VmArgs,
}

/// One step of the rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run this scenario once.
    Scenario(usize),
    /// Fuzz for the slice.
    Fuzz,
}

/// The rotation: each scenario, with a fuzz slice after each, then the
/// same on the next kernel.
pub fn rotation(scenarios: usize, kernels: usize) -> Vec<(Step, usize)> {
    let mut out = Vec::new();
    for k in 0..kernels.max(1) {
        for s in 0..scenarios {
            out.push((Step::Scenario(s), k));
            out.push((Step::Fuzz, k));
        }
        if scenarios == 0 {
            out.push((Step::Fuzz, k));
        }
    }
    out
}

/// `steps` started at shard `index`'s scenario (each scenario's step is
/// followed by a fuzz slice, so a shard starts `2 index` steps in): every
/// shard walks the whole rotation, from its own place in it.
pub fn started_at(
    mut steps: Vec<(Step, usize)>,
    shard: Shard,
    scenarios: usize,
) -> Vec<(Step, usize)> {
    if scenarios > 0 && !steps.is_empty() {
        let at = (2 * (shard.index as usize % scenarios)) % steps.len();
        steps.rotate_left(at);
    }
    steps
}

/// The soak's program source: walks the rotation; the cursor lives in the
/// saved state, so a resumed soak continues with the step it was in.
struct SoakSource {
    scenarios: Vec<Program>,
    steps: Vec<(Step, usize)>,
    fuzz: FuzzSource,
    scenario_duration: Duration,
    slice: Duration,
    /// When the current fuzz slice ends (set when it starts).
    slice_end: Mutex<Option<Instant>>,
}

impl Source for SoakSource {
    fn next(&self, c: &Campaign, job: usize) -> Option<Pick> {
        loop {
            let mut st = c.state();
            let (step, env) = self.steps[(st.stats.cursor as usize) % self.steps.len()].clone();
            match step {
                Step::Scenario(i) => {
                    st.stats.cursor += 1;
                    let p = &self.scenarios[i];
                    return Some(Pick {
                        program: p.clone(),
                        duration: self.scenario_duration,
                        part: format!("scenario {}", p.name),
                        keep: false,
                        env,
                    });
                }
                Step::Fuzz => {
                    let mut end = self.slice_end.lock().unwrap_or_else(|e| e.into_inner());
                    let until = *end.get_or_insert_with(|| Instant::now() + self.slice);
                    if Instant::now() >= until {
                        *end = None;
                        st.stats.cursor += 1;
                        continue;
                    }
                    drop(end);
                    drop(st);
                    let mut pick = self.fuzz.next(c, job)?;
                    pick.env = env;
                    return Some(pick);
                }
            }
        }
    }
}

/// The JSON summary: the counters plus the rates.
#[derive(Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    stats: &'a Stats,
    programs_per_s: f64,
    ops_per_s: f64,
    restarts_per_hour: f64,
    complete: bool,
}

/// Writes the three summaries into the workdir; returns the text one.
pub fn write_summaries(
    workdir: &Path,
    stats: &Stats,
    complete: bool,
    shard: Shard,
) -> std::io::Result<String> {
    let text = stats.text("soak");
    write_new(&workdir.join("soak-summary.txt"), text.as_bytes())?;
    write_new(&workdir.join("soak.ktap"), stats.ktap().as_bytes())?;
    write_new(
        &workdir.join("soak.junit.xml"),
        stats.junit(&shard.suite("cgstorm soak")).as_bytes(),
    )?;
    let json = serde_json::to_vec_pretty(&Summary {
        stats,
        programs_per_s: stats.programs_per_s(),
        ops_per_s: stats.ops_per_s(),
        restarts_per_hour: stats.restarts_per_hour(),
        complete,
    })
    .expect("the summary serialises");
    write_new(&workdir.join("soak-summary.json"), &json)?;
    Ok(text)
}

/// Runs `soak`.
pub fn run(a: &SoakArgs) -> Result<u8> {
    if a.jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    let dir = a
        .scenarios
        .clone()
        .unwrap_or_else(|| crate::data::corpus().join("scenarios"));
    let scenarios = load_programs(std::slice::from_ref(&dir));
    crate::run::signal::install();
    let mut envs = vec![Env::new(&a.vm)?];
    for k in &a.also_kernels {
        let mut vm = a.vm.clone();
        vm.boot.kernel = Some(k.clone());
        envs.push(Env::new(&vm)?);
    }
    std::fs::create_dir_all(&a.workdir)
        .with_context(|| format!("cannot create the workdir {}", a.workdir.display()))?;
    let kernels = envs.len();
    let campaign = Campaign::open(
        envs,
        &a.workdir,
        "soak.json",
        Duration::from_millis(a.duration.0),
    )?;
    {
        let mut st = campaign.state();
        let resumed = st.stats.programs > 0;
        eprintln!(
            "cgstorm soak: {} {} scenarios from {}, {kernels} kernel(s), seed {}, workdir {}{}",
            if resumed { "resuming;" } else { "starting;" },
            scenarios.len(),
            dir.display(),
            a.seed,
            a.workdir.display(),
            if resumed {
                format!(
                    " (already {} programs, {} findings)",
                    st.stats.programs,
                    st.stats.findings.len()
                )
            } else {
                String::new()
            }
        );
        let seeds = load_programs(&[
            crate::data::corpus().join("semantics"),
            crate::data::corpus().join("regressions"),
        ]);
        st.add_seeds(seeds);
    }
    let source = SoakSource {
        steps: started_at(rotation(scenarios.len(), kernels), a.shard, scenarios.len()),
        scenarios,
        fuzz: FuzzSource {
            seed: a.seed,
            shard: a.shard,
            faults_one_in: 0,
        },
        scenario_duration: Duration::from_millis(a.scenario_duration.0),
        slice: Duration::from_millis(a.fuzz_slice.0),
        slice_end: Mutex::new(None),
    };
    campaign.run(a.jobs, &source, Duration::from_millis(a.progress.0));
    let complete = !crate::run::signal::interrupted();
    let st = campaign.state();
    let text = write_summaries(&a.workdir, &st.stats, complete, a.shard)
        .with_context(|| format!("cannot write the summaries into {}", a.workdir.display()))?;
    print!("{text}");
    eprintln!(
        "cgstorm soak: summaries in {0}/soak-summary.txt, soak-summary.json, soak.ktap",
        a.workdir.display()
    );
    let failed = st.stats.findings.values().any(|f| f.new && !f.known);
    drop(st);
    if let Some(why) = campaign.infrastructure_failure() {
        eprintln!("cgstorm soak: FAILED: {why}");
        return Ok(3);
    }
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_shards_start_at_their_own_scenario_and_walk_the_whole_rotation() {
        let all = rotation(3, 1);
        let shard = |index| Shard { index, count: 4 };
        let first: Vec<Step> = (0..4)
            .map(|i| started_at(all.clone(), shard(i), 3)[0].0.clone())
            .collect();
        assert_eq!(
            first,
            [
                Step::Scenario(0),
                Step::Scenario(1),
                Step::Scenario(2),
                Step::Scenario(0)
            ]
        );
        for i in 0..4 {
            let mut got = started_at(all.clone(), shard(i), 3);
            got.sort_by_key(|(s, k)| (format!("{s:?}"), *k));
            let mut want = all.clone();
            want.sort_by_key(|(s, k)| (format!("{s:?}"), *k));
            assert_eq!(got, want, "shard {i} walks every step once");
        }
        assert_eq!(started_at(rotation(0, 1), shard(2), 0), rotation(0, 1));
        assert_eq!(Shard::default().suite("cgstorm soak"), "cgstorm soak");
        assert_eq!(shard(1).suite("cgstorm soak"), "cgstorm soak shard 1/4");
    }

    #[test]
    fn the_rotation_alternates_scenarios_and_fuzzing_per_kernel() {
        let r = rotation(2, 2);
        assert_eq!(
            r,
            [
                (Step::Scenario(0), 0),
                (Step::Fuzz, 0),
                (Step::Scenario(1), 0),
                (Step::Fuzz, 0),
                (Step::Scenario(0), 1),
                (Step::Fuzz, 1),
                (Step::Scenario(1), 1),
                (Step::Fuzz, 1),
            ]
        );
        assert_eq!(rotation(0, 1), [(Step::Fuzz, 0)]);
    }

    #[test]
    fn summaries_are_written_in_three_forms() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Stats {
            programs: 4,
            elapsed_ms: 8_000,
            ..Stats::default()
        };
        s.parts.insert(
            "fuzz".into(),
            crate::campaign::stats::Part {
                programs: 4,
                failed: 0,
                errors: 0,
            },
        );
        let text = write_summaries(dir.path(), &s, false, Shard::default()).unwrap();
        assert!(text.contains("programs     4 (0.50/s)"), "{text}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("soak-summary.json")).unwrap())
                .unwrap();
        assert_eq!(json["programs"], 4);
        assert_eq!(json["complete"], false);
        let ktap = std::fs::read_to_string(dir.path().join("soak.ktap")).unwrap();
        assert!(
            ktap.starts_with("KTAP version 1\n1..1\nok 1 fuzz"),
            "{ktap}"
        );
    }
}
