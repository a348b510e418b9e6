//! The loop shared by `cgstorm fuzz` and `cgstorm soak`: N jobs, each with
//! its own VM, take programs from a source, run them, store findings at
//! once (before the VM is dropped), feed the signal and keep programs that
//! showed something new, and save the counters after every program so a
//! killed campaign resumes where it was. A program's second runs (new
//! code confirmed and cut, a divergence triaged) are in [`reruns`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cgstorm_workloads::Program;

use super::feedback::{self, Seen, Signal};
use super::pending::{Candidate, Pending};
use super::slot::{self, Ran, Slot};
use super::stats::{FaultStats, FindingTally, Stats};
use super::yields::Yields;
use super::{now_unix, Env};
use crate::findings::title_hash;
use crate::kernel_code::Symbols;
use crate::run::verdict::{Finding, Verdict, MODEL_DIVERGENCE};

mod reruns;

/// One program to run, and which part of the campaign it belongs to.
pub struct Pick {
    /// The program.
    pub program: Program,
    /// How long its `for: run` loops run.
    pub duration: Duration,
    /// `fuzz` or `scenario NAME`, for the summary.
    pub part: String,
    /// Whether a program that shows something new joins the corpus.
    pub keep: bool,
    /// Which of the campaign's kernels (index into [`Campaign::envs`]).
    pub env: usize,
}

/// Where programs come from.
pub trait Source: Sync {
    /// The next program for `job`; `None` when the source is exhausted.
    fn next(&self, c: &Campaign, job: usize) -> Option<Pick>;
}

/// Mutable campaign state.
#[derive(Default)]
pub struct State {
    /// The counters (saved after every program).
    pub stats: Stats,
    /// Features seen.
    pub seen: Seen,
    /// Programs to mutate.
    pub corpus: Vec<Program>,
    /// How likely each corpus program is to be chosen as a parent
    /// (parallel to `corpus`): more for more new kernel edges. A seed's is
    /// not its own ([`State::parent_weights`]).
    pub weights: Vec<u64>,
    /// Which corpus programs are seeds (parallel to `corpus`).
    pub is_seed: Vec<bool>,
    /// Every kernel edge seen (KCOV), per kernel (index into
    /// [`Campaign::envs`]: edges are offsets into one build's text).
    pub edges: BTreeMap<usize, HashSet<u32>>,
    /// Every kernel PC run (KCOV), per kernel, for `cgstorm cover`.
    pub pcs: BTreeMap<usize, HashSet<u32>>,
    /// Programs handed out in this session.
    pub issued: u64,
    /// Corpus programs the next draws mutate, one a draw, before any other
    /// choice: a program kept for new kernel edges is mutated [`SMASH`]
    /// times at once, where its new code is likeliest to lead further.
    pub smash: VecDeque<usize>,
    /// Programs taken from the other shards, to run next.
    pub imports: VecDeque<Program>,
    /// Programs with new kernel edges waiting for their re-run.
    pub pending: Pending,
    /// Which families of ops brought new edges lately: a guided
    /// campaign's generator draws them more.
    pub yields: Yields,
    /// Each kernel's text symbols, once read, when the campaign has a
    /// focus (to tell which new PCs are in it).
    pub symbols: BTreeMap<usize, Symbols>,
}

/// A running campaign.
pub struct Campaign {
    /// Kernel, agent, machine: one per kernel the campaign runs on.
    pub envs: Vec<Env>,
    /// The workdir.
    pub workdir: PathBuf,
    /// The state file (`fuzz.json`, `soak.json`).
    state_file: PathBuf,
    /// Shared state.
    pub state: Mutex<State>,
    /// What a program is kept for, besides kernel edges.
    pub signals: Vec<Box<dyn Signal>>,
    began: Instant,
    /// `elapsed_ms` of the state when this session started.
    base_ms: u64,
    /// `host_cpu_ms` of the state, and this process's CPU time, when this
    /// session started.
    base_cpu_ms: (u64, u64),
    /// Collect kernel coverage where the kernel has KCOV (`--no-kcov`
    /// turns it off, to measure what it costs).
    pub kcov: bool,
    /// When to stop.
    pub deadline: Instant,
    /// Jobs that have ended.
    finished: AtomicUsize,
    /// Keep programs whose new kernel edges show again (off, the default:
    /// edges are collected and counted, but keep nothing).
    pub cover_feedback: bool,
    /// The functions of the subsystems that matter (`--focus`): with
    /// feedback, the generator leans to the families of ops that reach new
    /// PCs in them, not to those that reach the most new edges anywhere.
    pub focus: Option<HashSet<String>>,
    /// Where each kernel's edges are kept between sessions (its PCs and
    /// text symbols beside them, as `.pcs` and `.symbols`).
    cover_files: Vec<PathBuf>,
    /// Whether each kernel's text symbols were asked for in this session.
    symbols_asked: Vec<AtomicBool>,
    /// Jobs that stopped after failing three times in a row.
    gave_up: AtomicUsize,
    /// The first line of the last error a job hit (why nothing ran).
    last_error: Mutex<Option<String>>,
    /// Findings that could not be stored (the campaign stops at the first).
    unstored: Mutex<Vec<String>>,
    /// The fleet's corpus exchange, if the campaign takes part.
    pub exchange: Option<super::exchange::Exchange>,
}

/// What booking a program found for the search.
struct Booked {
    /// New model divergences (title, finding directory), to triage.
    divergences: Vec<(String, PathBuf)>,
    /// What it showed that no program had before and may be kept for: new
    /// kernel edges, or, with a focus, new PCs in the focus.
    new_code: Vec<u32>,
    /// The program joined the corpus.
    kept: bool,
}

impl State {
    /// Adds seed programs to the corpus, each as likely a parent as the
    /// average kept program ([`State::parent_weights`]).
    pub fn add_seeds(&mut self, seeds: Vec<Program>) {
        self.weights.extend(std::iter::repeat_n(1, seeds.len()));
        self.is_seed.extend(std::iter::repeat_n(true, seeds.len()));
        self.corpus.extend(seeds);
    }

    /// The corpus programs' weights as parents: a kept program's own, and
    /// for a seed the mean of the kept programs' (1 with none): the seeds,
    /// the threads' shapes, are as likely parents, one for one, as what the
    /// campaign kept, however heavily new code weighs those. Without
    /// feedback every weight is 1. (With the seeds at 1 against kept
    /// programs weighing up to 15, guided campaigns mutated them about half
    /// as often as unguided ones: 10, 13 and 14 of their kept mutants had a
    /// seed for a parent, against 18, 17 and 30, and they reached 2 of
    /// fs/dax.c's functions against 15: sessions 19 and 20.)
    pub fn parent_weights(&self) -> Vec<u64> {
        let (sum, n) = self
            .weights
            .iter()
            .zip(&self.is_seed)
            .filter(|(_, seed)| !**seed)
            .fold((0u64, 0u64), |(s, n), (w, _)| (s + w, n + 1));
        let mean = sum.checked_div(n).unwrap_or(1).max(1);
        self.weights
            .iter()
            .zip(&self.is_seed)
            .map(|(w, seed)| if *seed { mean } else { *w })
            .collect()
    }
}

impl Campaign {
    /// Opens (or resumes) the campaign whose state is `state_name` in
    /// `workdir`; it runs until `total` wall time has been spent over all
    /// sessions.
    pub fn open(
        envs: Vec<Env>,
        workdir: &Path,
        state_name: &str,
        total: Duration,
    ) -> Result<Campaign> {
        anyhow::ensure!(!envs.is_empty(), "a campaign needs a kernel");
        for d in ["findings", "corpus", "jobs"] {
            std::fs::create_dir_all(workdir.join(d))
                .with_context(|| format!("cannot create {}", workdir.join(d).display()))?;
        }
        let state_file = workdir.join(state_name);
        let stats = Stats::load(&state_file).map_err(anyhow::Error::msg)?;
        let base_ms = stats.elapsed_ms;
        let base_cpu_ms = (stats.host_cpu_ms, process_cpu_ms());
        let left = total.saturating_sub(Duration::from_millis(base_ms));
        let mut corpus = Vec::new();
        let mut seen = Seen::default();
        // The workdir's own corpus; its features are found again as it runs.
        if let Ok(rd) = std::fs::read_dir(workdir.join("corpus")) {
            let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            {
                // A file that is no program is said, not silently dropped.
                match crate::programs::load(p) {
                    Ok(prog) => corpus.push(prog),
                    Err(e) => eprintln!("cgstorm: skipping {}: {e:#}", p.display()),
                }
            }
        }
        seen.add(stats.findings.keys().map(|t| format!("title:{t}")));
        // The edges of earlier sessions on the same kernel builds.
        let cover_files: Vec<PathBuf> = envs
            .iter()
            .map(|e| workdir.join("cover").join(format!("{}.edges", build_id(e))))
            .collect();
        let edges: BTreeMap<usize, HashSet<u32>> = cover_files
            .iter()
            .enumerate()
            .map(|(i, f)| (i, read_edges(f)))
            .collect();
        let pcs: BTreeMap<usize, HashSet<u32>> = cover_files
            .iter()
            .enumerate()
            .map(|(i, f)| (i, read_edges(&f.with_extension("pcs"))))
            .collect();
        let symbols_asked = (0..envs.len()).map(|_| AtomicBool::new(false)).collect();
        Ok(Campaign {
            envs,
            workdir: workdir.to_path_buf(),
            state_file,
            state: Mutex::new(State {
                stats,
                seen,
                weights: vec![1; corpus.len()],
                is_seed: vec![false; corpus.len()],
                corpus,
                edges,
                pcs,
                issued: 0,
                smash: VecDeque::new(),
                pending: Pending::default(),
                yields: Yields::default(),
                symbols: BTreeMap::new(),
                imports: VecDeque::new(),
            }),
            signals: feedback::default_signals(),
            began: Instant::now(),
            base_ms,
            base_cpu_ms,
            kcov: true,
            deadline: Instant::now() + left,
            finished: AtomicUsize::new(0),
            cover_feedback: false,
            focus: None,
            cover_files,
            symbols_asked,
            gave_up: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            unstored: Mutex::new(Vec::new()),
            exchange: None,
        })
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the campaign should stop.
    pub fn over(&self) -> bool {
        (self.envs[0].stop)()
            || Instant::now() >= self.deadline
            || !self
                .unstored
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// Why the campaign failed as a test run, whatever it found: nothing
    /// ran, a job gave up, a finding could not be stored. `fuzz` and `soak`
    /// exit 3 then (a nightly job that tested nothing must fail loudly).
    pub fn infrastructure_failure(&self) -> Option<String> {
        let st = self.state();
        let unstored = self.unstored.lock().unwrap_or_else(|e| e.into_inner());
        let why = infrastructure(&st.stats, self.gave_up.load(Ordering::SeqCst), &unstored)?;
        let last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        Some(match last.as_deref() {
            Some(e) if unstored.is_empty() => format!("{why}; the last error: {e}"),
            _ => why,
        })
    }

    fn tick(&self, st: &mut State) {
        st.stats.elapsed_ms = self.base_ms + self.began.elapsed().as_millis() as u64;
        let (base, began) = self.base_cpu_ms;
        st.stats.host_cpu_ms = base + process_cpu_ms().saturating_sub(began);
    }

    /// Saves the counters now.
    pub fn save(&self) -> std::io::Result<()> {
        let mut st = self.state();
        self.tick(&mut st);
        self.save_edges(&st)?;
        st.stats.save(&self.state_file)
    }

    /// Writes each kernel's edges and PCs ([`edges_bytes`]).
    fn save_edges(&self, st: &State) -> std::io::Result<()> {
        let sets = st.edges.iter().map(|(i, e)| (*i, e, "edges"));
        for (i, set, ext) in sets.chain(st.pcs.iter().map(|(i, p)| (*i, p, "pcs"))) {
            let Some(path) = self.cover_files.get(i) else {
                continue;
            };
            if set.is_empty() {
                continue;
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::findings::write_new(&path.with_extension(ext), &edges_bytes(set))?;
        }
        Ok(())
    }

    /// Saves the text symbols of `env`'s kernel beside its PCs, once, from
    /// the slot's VM, when the kernel has PCs and no symbols are saved.
    fn save_symbols(&self, slot: &mut Slot, env: usize) {
        let Some(path) = self
            .cover_files
            .get(env)
            .map(|p| p.with_extension("symbols"))
        else {
            return;
        };
        if path.exists() {
            // A resumed campaign: the symbols are there already.
            if self.focus.is_some() && !self.symbols_asked[env].swap(true, Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    self.take_symbols(env, &text);
                }
            }
            return;
        }
        if self.state().pcs.get(&env).is_none_or(HashSet::is_empty) {
            return;
        }
        if self.symbols_asked[env].swap(true, Ordering::SeqCst) {
            return;
        }
        match slot.symbols() {
            Some(Ok(text)) => {
                if let Err(e) = crate::findings::write_new(&path, text.as_bytes()) {
                    eprintln!("cgstorm: cannot save {}: {e}", path.display());
                }
                self.take_symbols(env, &text);
            }
            Some(Err(e)) => eprintln!(
                "cgstorm: the kernel's symbols could not be read ({e}): `cgstorm cover` will not name its PCs"
            ),
            // No VM now: ask after another program.
            None => self.symbols_asked[env].store(false, Ordering::SeqCst),
        }
    }

    /// Runs `jobs` jobs on `source` until it is exhausted or the campaign is
    /// over; prints a progress line every `every`.
    pub fn run(&self, jobs: usize, source: &dyn Source, every: Duration) {
        std::thread::scope(|s| {
            for job in 0..jobs {
                s.spawn(move || self.job(job, source));
            }
            let mut last = Instant::now();
            let mut done = false;
            while !done {
                std::thread::sleep(Duration::from_millis(200));
                done = self.finished.load(Ordering::SeqCst) >= jobs;
                if last.elapsed() >= every {
                    last = Instant::now();
                    let mut st = self.state();
                    self.tick(&mut st);
                    let point = st.stats.point();
                    st.stats.series.push(point);
                    eprintln!("cgstorm: {}", st.stats.progress());
                }
            }
        });
        {
            // The plots end where the campaign did, not at its last
            // progress line (findings stored in its last seconds count).
            let mut st = self.state();
            self.tick(&mut st);
            let s = &mut st.stats;
            let point = s.point();
            if s.series.last() != Some(&point) {
                s.series.push(point);
            }
            let c = &mut s.cover;
            if c.runs > 0 && c.series.last().map(|p| p.1) != Some(c.edges) {
                c.series.push((point.0, c.edges));
            }
            if c.pcs > 0 && c.pcs_series.last().map(|p| p.1) != Some(c.pcs) {
                c.pcs_series.push((point.0, c.pcs));
            }
            if c.focus_pcs > 0 && c.focus_series.last().map(|p| p.1) != Some(c.focus_pcs) {
                c.focus_series.push((point.0, c.focus_pcs));
            }
        }
        let _ = self.save();
    }

    fn job(&self, job: usize, source: &dyn Source) {
        let dir = self.workdir.join("jobs").join(job.to_string());
        let _ = std::fs::create_dir_all(&dir);
        let mut slot = Slot::new(job);
        slot.cover = self.kcov;
        let mut failures = 0;
        while !self.over() {
            let Some(pick) = source.next(self, job) else {
                break;
            };
            {
                let mut st = self.state();
                self.tick(&mut st);
                st.stats.last_start_ms = st.stats.elapsed_ms;
            }
            let yaml = pick.program.to_yaml();
            // What is running, should the host die with it.
            let _ = crate::findings::write_new(&dir.join("current.yaml"), yaml.as_bytes());
            let boots = slot.boots;
            let had_vm = boots > 0;
            let began = Instant::now();
            let env = &self.envs[pick.env.min(self.envs.len() - 1)];
            match slot.run(env, &pick.program, pick.duration, dir.join("console.log")) {
                Ok(ran) => {
                    failures = 0;
                    let restarted = had_vm && slot.boots > boots;
                    if let Some(why) = &ran.dropped {
                        crate::findings::log_line(
                            &dir.join("drops.log"),
                            &format!("{} {}: {why}", now_unix(), pick.program.name),
                        );
                    }
                    let booked = self.account(env, &pick, &yaml, &ran, began.elapsed(), restarted);
                    slot.settle(&ran);
                    self.save_symbols(&mut slot, pick.env);
                    // Scenarios run for a minute each: only fuzz programs.
                    if pick.part == "fuzz" {
                        for (title, fdir) in &booked.divergences {
                            self.triage(&mut slot, env, &pick, title, fdir, &dir);
                        }
                    }
                    if self.cover_feedback
                        && pick.keep
                        && !booked.kept
                        && !booked.new_code.is_empty()
                    {
                        let mut st = self.state();
                        let dropped = st.pending.push(Candidate {
                            program: pick.program.clone(),
                            duration: pick.duration,
                            part: pick.part.clone(),
                            env: pick.env,
                            new_code: booked.new_code,
                        });
                        st.stats.cover.unconfirmed += u64::from(dropped);
                    }
                    if let Some(c) = self.next_to_confirm() {
                        let env = &self.envs[c.env.min(self.envs.len() - 1)];
                        self.confirm_edges(&mut slot, env, &c, &dir);
                    }
                }
                Err(e) => {
                    failures += 1;
                    let chain = crate::run::error::chain(&e);
                    eprintln!("cgstorm: job {job}: {chain}");
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(crate::run::error::headline(&e));
                    let mut st = self.state();
                    // A try that failed: counted as one, so a part whose
                    // every try failed tested nothing, and one with
                    // programs that ran did not.
                    let part = st.stats.parts.entry(pick.part.clone()).or_default();
                    part.programs += 1;
                    part.errors += 1;
                    if failures >= 3 {
                        eprintln!("cgstorm: job {job}: three failures in a row, the job stops");
                        self.gave_up.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
        slot.drop_vm();
        self.finished.fetch_add(1, Ordering::SeqCst);
    }

    /// Books one program: findings stored first, then counters, signal and
    /// corpus; the state is saved.
    fn account(
        &self,
        env: &Env,
        pick: &Pick,
        yaml: &str,
        ran: &Ran,
        took: Duration,
        restarted: bool,
    ) -> Booked {
        let stored = self.store_findings(env, pick, ran);
        let feats = feedback::features(&self.signals, &pick.program, ran);
        let mut st = self.state();
        self.tick(&mut st);
        count(&mut st.stats, pick, ran, took, restarted);
        let now_s = (self.base_ms + self.began.elapsed().as_millis() as u64) / 1000;
        for (f, dir, n) in &stored {
            let t = st
                .stats
                .findings
                .entry(f.title.clone())
                .or_insert_with(|| FindingTally {
                    kind: f.kind.clone(),
                    new: *n == 1,
                    known: f.known,
                    count: 0,
                    dir: dir.display().to_string(),
                    replay: env.replay(dir),
                    triage: None,
                    first_s: None,
                });
            t.count += 1;
            t.first_s.get_or_insert(now_s);
            if *n == 1 {
                eprintln!(
                    "cgstorm: NEW finding [{}] {}\n         in {}\n         replay: {}",
                    f.kind,
                    f.title,
                    dir.display(),
                    t.replay
                );
            }
        }
        let check_ms = ran.conclusion.check.as_millis() as u64;
        if st
            .stats
            .slowest_check
            .as_ref()
            .is_none_or(|(ms, _)| check_ms > *ms)
        {
            st.stats.slowest_check = Some((check_ms, pick.program.name.clone()));
            self.keep_slowest_check(ran);
        }
        let new = st.seen.add(feats);
        let (new_edges, new_focus) = self.book_cover(&mut st, pick, ran);
        // With a focus, what counts is new code in it: for the corpus, and
        // for the yields.
        let new_code = match self.focus {
            Some(_) => new_focus,
            None => new_edges,
        };
        if self.cover_feedback && pick.keep && matches!(ran.conclusion.outcome.cover, Some(Ok(_))) {
            st.yields
                .credit(&pick.program, self.worth(new_code.len()), took);
            st.stats.cover.families = st.yields.summary();
        }
        // Kept for other behaviour, a program that also ran new code is
        // as likely a parent as that code makes it, in a guided campaign:
        // most programs join for a new outcome or state shape, and at
        // weight 1 they drowned the few kept for code alone (session 18:
        // 88 of 93 kept programs).
        let weight = match self.cover_feedback && !new_code.is_empty() {
            true => edge_weight(self.worth(new_code.len())),
            false => 1,
        };
        let kept = pick.keep && !new.is_empty() && self.keep(&mut st, pick, yaml, weight);
        let _ = st.stats.save(&self.state_file);
        Booked {
            divergences: stored
                .iter()
                .filter(|(f, _, n)| *n == 1 && f.kind == MODEL_DIVERGENCE)
                .map(|(f, dir, _)| (f.title.clone(), dir.clone()))
                .collect(),
            new_code,
            kept,
        }
    }

    /// Keeps the program whose check took longest so far, with its results
    /// and the kernel they were judged for, in `slowest-check/`: where to
    /// start when the check's share of the wall time grows.
    fn keep_slowest_check(&self, ran: &Ran) {
        let dir = self.workdir.join("slowest-check");
        let kept = std::fs::create_dir_all(&dir)
            .and_then(|()| write_stored_run(&dir.join("trace.json"), ran))
            .and_then(|()| {
                crate::findings::write_new(&dir.join("program.yaml"), ran.yaml.as_bytes())
            });
        if let Err(e) = kept {
            eprintln!(
                "cgstorm: cannot keep the slowest check in {}: {e}",
                dir.display()
            );
        }
    }

    /// Stores the run's findings (with the programs before a new one);
    /// each stored with its directory and how often it has been seen. A
    /// finding that cannot be stored goes whole to stderr and stops the
    /// campaign (exit 3): never lost.
    fn store_findings<'r>(
        &self,
        env: &Env,
        pick: &Pick,
        ran: &'r Ran,
    ) -> Vec<(&'r Finding, PathBuf, u64)> {
        let context = format!(
            "{} {} {} on {} ({})",
            now_unix(),
            pick.part,
            pick.program.name,
            ran.release,
            env.backend.name()
        );
        let mut stored = Vec::new();
        for f in ran.all_findings() {
            match f.store(&self.workdir, &ran.yaml, Some(&ran.console), &context) {
                Ok((dir, n)) => {
                    // Next to a new divergence: the run's results and the
                    // kernel the model judged them for (`cgstorm check
                    // --trace` checks them again on the host).
                    if n == 1 && f.kind == MODEL_DIVERGENCE {
                        if let Err(e) = write_stored_run(&dir.join("trace.json"), ran) {
                            eprintln!("cgstorm: cannot store the trace of `{}`: {e}", f.title);
                        }
                    }
                    // Next to a new finding: what ran before it in its VM.
                    if n == 1 && !ran.before.is_empty() {
                        let before = dir.join("before");
                        if let Err(e) = crate::findings::write_before(&before, &ran.before) {
                            eprintln!(
                                "cgstorm: cannot store the programs before `{}`: {e:#}",
                                f.title
                            );
                        }
                    }
                    stored.push((f, dir, n))
                }
                Err(e) => {
                    eprintln!(
                        "cgstorm: cannot store the finding `{}` in {}: {e}; the campaign stops. \
                         The finding follows, then its program:\n{}\n{}",
                        f.title,
                        self.workdir.join("findings").display(),
                        serde_json::to_string_pretty(f).unwrap_or_default(),
                        ran.yaml
                    );
                    self.unstored
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!(
                            "the finding `{}` could not be stored: {e}",
                            f.title
                        ));
                }
            }
        }
        stored
    }

    /// The run's kernel PCs and edges (KCOV) into the campaign's, and the
    /// coverage counters and series; the edges no program showed before,
    /// and its new PCs that are in the focus.
    fn book_cover(&self, st: &mut State, pick: &Pick, ran: &Ran) -> (Vec<u32>, Vec<u32>) {
        let pcs = &ran.conclusion.outcome.pcs;
        let mut new_pcs = Vec::new();
        if !pcs.is_empty() {
            let known = st.pcs.entry(pick.env).or_default();
            new_pcs.extend(pcs.iter().copied().filter(|pc| known.insert(*pc)));
        }
        let new_focus = match (&self.focus, st.symbols.get(&pick.env)) {
            (Some(focus), Some(symbols)) => in_focus(focus, symbols, &new_pcs),
            _ => Vec::new(),
        };
        st.stats.cover.focus_pcs += new_focus.len() as u64;
        let Some(Ok(edges)) = &ran.conclusion.outcome.cover else {
            return (Vec::new(), new_focus);
        };
        let known = st.edges.entry(pick.env).or_default();
        let new_edges = edges.iter().copied().filter(|e| known.insert(*e)).collect();
        let total = st.edges.values().map(HashSet::len).sum::<usize>() as u64;
        let pcs = st.pcs.values().map(HashSet::len).sum::<usize>() as u64;
        let now = st.stats.elapsed_ms / 1000;
        let c = &mut st.stats.cover;
        c.runs += 1;
        c.edges = total;
        c.pcs = pcs;
        if c.series.last().is_none_or(|(t, _)| now >= t + 30) {
            c.series.push((now, c.edges));
            c.pcs_series.push((now, c.pcs));
            if c.focus_pcs > 0 {
                c.focus_series.push((now, c.focus_pcs));
            }
            if let Err(e) = self.save_edges(st) {
                eprintln!("cgstorm: cannot save the kernel edges: {e}");
            }
        }
        (new_edges, new_focus)
    }

    /// Takes `env`'s kernel symbols (`ADDR NAME` lines) for the focus, and
    /// counts the PCs already run that are in it (all of them: the count
    /// is set, not added to, so a resumed campaign does not count twice).
    fn take_symbols(&self, env: usize, text: &str) {
        let Some(focus) = &self.focus else {
            return;
        };
        let symbols = Symbols::parse(text);
        let mut st = self.state();
        let known: Vec<u32> = st
            .pcs
            .get(&env)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        st.stats.cover.focus_pcs = in_focus(focus, &symbols, &known).len() as u64;
        st.symbols.insert(env, symbols);
    }

    /// Adds the program to the corpus (its file first), chosen as a
    /// parent with `weight`; false if the file could not be written.
    fn keep(&self, st: &mut State, pick: &Pick, yaml: &str, weight: u64) -> bool {
        let name = format!("{}.yaml", title_hash(yaml));
        if crate::findings::write_new(&self.workdir.join("corpus").join(&name), yaml.as_bytes())
            .is_err()
        {
            return false;
        }
        st.stats.kept += 1;
        st.corpus.push(pick.program.clone());
        st.weights.push(weight);
        st.is_seed.push(false);
        if is_imported(&pick.program) {
            st.stats.exchange.kept += 1;
        } else if let Some(x) = &self.exchange {
            // What another shard gave is not given back to the fleet.
            match x.publish(&name, yaml) {
                Ok(()) => st.stats.exchange.published += 1,
                Err(e) => eprintln!("cgstorm: exchange: cannot publish {name}: {e}"),
            }
        }
        true
    }

    /// What `n` new pieces of [`Self::code`] are worth in edges (the unit
    /// of the yields' prior and of the parents' weights): a PC in the focus
    /// is worth [`FOCUS_GAIN`].
    fn worth(&self, n: usize) -> usize {
        match self.focus {
            Some(_) => FOCUS_GAIN * n,
            None => n,
        }
    }

    /// What of `shown` a program is kept for: its PCs in a campaign with a
    /// focus (only those in the focus are ever asked for), its edges
    /// otherwise.
    fn code<'s>(&self, shown: &'s Shown) -> &'s HashSet<u32> {
        match self.focus {
            Some(_) => &shown.pcs,
            None => &shown.edges,
        }
    }
}

/// Writes a run's results and the kernel the model judged them for
/// (`cgstorm check PROGRAM --trace PATH` checks them again on the host).
fn write_stored_run(path: &Path, ran: &Ran) -> std::io::Result<()> {
    let run = crate::programs::StoredRun {
        target: ran.target.clone(),
        trace: crate::run::verdict::checked_trace(&ran.conclusion.outcome),
    };
    let json = serde_json::to_vec(&run).map_err(std::io::Error::other)?;
    crate::findings::write_new(path, &json)
}

/// Whether a program came from another shard ([`super::exchange`]).
pub fn is_imported(p: &Program) -> bool {
    p.name.starts_with("hub-")
}

/// A kernel build's name for its coverage file: its release and a hash of
/// its image (two builds of one release are different texts).
fn build_id(env: &Env) -> String {
    let k = &env.kernel.kernel;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(&k.image).unwrap_or_default().hash(&mut h);
    format!("{}-{:016x}", k.release, h.finish())
}

/// Edges as a file holds them: sorted, 4 bytes each, little-endian.
fn edges_bytes(edges: &HashSet<u32>) -> Vec<u8> {
    let mut v: Vec<u32> = edges.iter().copied().collect();
    v.sort_unstable();
    v.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// The edges saved in `path` (none if it is missing or unreadable).
pub fn read_edges(path: &Path) -> HashSet<u32> {
    std::fs::read(path)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// [`Campaign::infrastructure_failure`] over the counters.
fn infrastructure(stats: &Stats, gave_up: usize, unstored: &[String]) -> Option<String> {
    if let Some(u) = unstored.first() {
        return Some(u.clone());
    }
    if stats.programs == 0 {
        return Some("no program ran: nothing was tested (see the errors above)".into());
    }
    if gave_up > 0 {
        return Some(format!(
            "{gave_up} job(s) stopped after three failures in a row (see the errors above)"
        ));
    }
    None
}

/// The kernel coverage a run showed, whole (re-runs and minimisation runs
/// ask the agent for all of it: `Slot::afresh`).
struct Shown {
    edges: HashSet<u32>,
    pcs: HashSet<u32>,
}

impl Shown {
    fn of(ran: &Ran) -> Shown {
        let o = &ran.conclusion.outcome;
        Shown {
            edges: match &o.cover {
                Some(Ok(e)) => e.iter().copied().collect(),
                _ => HashSet::new(),
            },
            pcs: o.pcs.iter().copied().collect(),
        }
    }
}

/// The ops of `p`, over all its lanes.
fn op_count(p: &Program) -> usize {
    (0..p.lanes.len()).map(|l| p.lane_ops(l).len()).sum()
}

/// How many of `new` edges are among `again`.
fn confirmed(new: &[u32], again: &HashSet<u32>) -> usize {
    new.iter().filter(|e| again.contains(e)).count()
}

/// A parent's weight for `edges` confirmed new edges: grows with them, but
/// slowly, so the first programs (with thousands of edges, all new) do not
/// crowd out the rest.
fn edge_weight(edges: usize) -> u64 {
    1 + u64::from((edges as u64 + 1).ilog2())
}

/// What a new PC in the focus is worth to the generator's yields, in
/// edges (their prior is 20 edges).
const FOCUS_GAIN: usize = 10;

/// Those of `pcs` that are in functions of `focus` (a KCOV PC is a return
/// address: the byte before it is in the function).
fn in_focus(focus: &HashSet<String>, symbols: &Symbols, pcs: &[u32]) -> Vec<u32> {
    pcs.iter()
        .copied()
        .filter(|pc| {
            symbols
                .function(pc.wrapping_sub(1))
                .is_some_and(|f| focus.contains(f))
        })
        .collect()
}

/// How many mutations of a program kept for new kernel edges the next
/// draws are (syzkaller "smashes" a new input the same way). One: at four
/// (session 8, BENCHMARKS.md) the long programs that bring most new edges
/// took two fifths of the mutation draws, and the guided search covered
/// less than the unguided one.
pub const SMASH: usize = 1;

/// How many fresh VMs a new model divergence's program runs again in.
pub const TRIAGE_RUNS: u32 = 3;

/// Adds a run's ops with `fail_nth` to `f`.
fn count_faults(f: &mut FaultStats, p: &Program, trace: &crate::run::trace::TraceBuilder) {
    let carried: HashSet<cgstorm_workloads::OpId> =
        p.faulted().into_iter().map(|(id, _)| id).collect();
    for (_, e) in trace.iter() {
        if carried.contains(&e.id) {
            f.carried += 1;
            if e.injected {
                f.injected += 1;
                f.failed += u64::from(e.outcome != cgstorm_workloads::Outcome::Ok);
            }
        }
    }
}

/// A drop reason without its details, for counting.
fn short_reason(why: &str) -> String {
    why.split(':').next().unwrap_or(why).trim().to_string()
}

/// One program's run in the campaign's counters: programs, ops, faults,
/// boots, the wall time split by phase, the reset's parts, restarts, VMs
/// dropped, time per kernel, and its part's verdict.
fn count(s: &mut Stats, pick: &Pick, ran: &Ran, took: Duration, restarted: bool) {
    s.programs += 1;
    s.ops += ran.conclusion.outcome.trace.events() as u64;
    if pick.program.has_faults() {
        count_faults(&mut s.faults, &pick.program, &ran.conclusion.outcome.trace);
    }
    if ran.booted {
        s.boots += 1;
        s.boot_ms += ran.boot_time.as_millis() as u64;
    }
    if ran.restored {
        s.restores += 1;
    }
    let c = &ran.conclusion;
    let agent = &c.outcome.agent;
    let us = Duration::from_micros;
    let snapshots = us(agent.snapshot_us);
    let around = us(agent.setup_us + agent.teardown_us);
    let lanes = c.outcome.elapsed.saturating_sub(snapshots + around);
    for (phase, t) in [
        ("program", lanes),
        ("snapshot", snapshots),
        ("agent", around),
        ("settle", c.outcome.settle),
        ("check", c.check),
        ("reset", ran.reset_time),
    ] {
        *s.phase_ms.entry(phase.into()).or_default() += t.as_millis() as u64;
    }
    if !ran.reset_laps.is_empty() {
        s.resets += 1;
        for (part, ms) in &ran.reset_laps {
            *s.reset_ms.entry(part.clone()).or_default() += ms;
        }
    }
    if restarted {
        s.restarts += 1;
    }
    if let Some(Ok(counts)) = &c.outcome.events {
        for (e, n) in counts {
            let t = s.events.entry(e.clone()).or_default();
            t.0 += 1;
            t.1 += n;
        }
    }
    if let Some(why) = &ran.dropped {
        *s.drops.entry(short_reason(why)).or_default() += 1;
    }
    *s.per_kernel_ms.entry(ran.release.clone()).or_default() += took.as_millis() as u64;
    let part = s.parts.entry(pick.part.clone()).or_default();
    part.programs += 1;
    match slot::verdict(ran) {
        Verdict::Finding => part.failed += 1,
        Verdict::Error(_) => part.errors += 1,
        Verdict::Pass => {}
    }
}

/// This process's CPU time (user and system, every thread), in ms.
pub fn process_cpu_ms() -> u64 {
    // SAFETY: getrusage fills a zeroed local struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0;
        }
        ru
    };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PC is in the focus when the function before its call byte is one
    /// of the focus's: a PC right at a function's start is the return
    /// address of a call that ended the function before it.
    #[test]
    fn pcs_in_the_focus_are_those_in_its_functions() {
        let symbols = Symbols::parse("1000 cgroup_mkdir\n1100 ext4_fill_super\n1200 _etext\n");
        let focus: HashSet<String> = ["cgroup_mkdir".to_string()].into();
        assert_eq!(
            in_focus(&focus, &symbols, &[0x1001, 0x10ff, 0x1100]),
            [0x1001, 0x10ff, 0x1100]
        );
        assert!(in_focus(&focus, &symbols, &[0x1101, 0x11ff, 0x0fff]).is_empty());
    }

    /// Only the new edges that show again in the re-run count: races make
    /// some edges one-offs.
    #[test]
    fn new_edges_count_when_they_show_again() {
        let again: HashSet<u32> = [2, 3, 9].into_iter().collect();
        assert_eq!(confirmed(&[1, 2, 3, 4], &again), 2);
        assert_eq!(confirmed(&[1, 4], &again), 0);
        assert_eq!(confirmed(&[], &again), 0);
    }

    /// A campaign that ran nothing, lost a job or could not store a finding
    /// failed as a test run, whatever else it found.
    #[test]
    fn a_campaign_that_tested_nothing_fails() {
        let mut s = Stats::default();
        assert!(infrastructure(&s, 0, &[])
            .unwrap()
            .contains("no program ran"));
        s.programs = 5;
        assert_eq!(infrastructure(&s, 0, &[]), None);
        assert!(infrastructure(&s, 1, &[])
            .unwrap()
            .contains("1 job(s) stopped"));
        let e = infrastructure(
            &s,
            0,
            &["the finding `W` could not be stored: ENOSPC".into()],
        );
        assert!(e.unwrap().contains("could not be stored"));
    }

    /// A seed weighs as a parent what the kept programs weigh on average;
    /// kept programs their own; with all weights 1 (no feedback), all 1.
    #[test]
    fn seeds_weigh_the_kept_programs_mean() {
        let p = |n: &str| Program::from_yaml(n, "lanes:\n  - name: l\n    ops: [sync]\n").unwrap();
        let mut st = State::default();
        st.add_seeds(vec![p("s0"), p("s1")]);
        assert_eq!(st.parent_weights(), [1, 1], "nothing kept yet");
        for w in [1, 1] {
            st.corpus.push(p("k"));
            st.weights.push(w);
            st.is_seed.push(false);
        }
        assert_eq!(st.parent_weights(), [1, 1, 1, 1], "unguided: uniform");
        for w in [15, 7] {
            st.corpus.push(p("k"));
            st.weights.push(w);
            st.is_seed.push(false);
        }
        // (1 + 1 + 15 + 7) / 4
        assert_eq!(st.parent_weights(), [6, 6, 1, 1, 15, 7]);
    }

    /// A parent's weight grows with its confirmed edges, slowly.
    #[test]
    fn edge_weights_grow_slowly() {
        assert_eq!(edge_weight(1), 2);
        assert_eq!(edge_weight(3), 3);
        assert!(edge_weight(40_000) < 20);
        assert!(edge_weight(100) > edge_weight(10));
    }
}
