//! `cgstorm minimize`: shrink a failing program while the same finding
//! title still appears. Candidates come from `reduce` (drop lanes, steps,
//! chunks of ops, single ops; fewer repeat passes; unrolled repeats), the
//! biggest cut first; the first that still shows the finding is kept and
//! the search starts again from it. Every attempt runs in a fresh VM. Races
//! are flaky, so a candidate gets several attempts before it is given up,
//! and the end result says how often it reproduces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cgstorm_workloads::program::count_ops;
use cgstorm_workloads::reduce::{candidates, size};
use cgstorm_workloads::{Millis, Op, Program};

use crate::campaign::slot::Slot;
use crate::campaign::Env;
use crate::findings::{load, load_before};
use crate::history::{reduce_before, shows, Sequence, VmSequence};
use crate::run::error::chain;
use crate::run::verdict::same_finding;
use crate::vm_args::VmArgs;

/// Arguments of `cgstorm minimize`.
#[derive(clap::Args, Debug)]
pub struct MinimizeArgs {
    /// A finding directory (its program.yaml and description) or a program.
    pub input: PathBuf,
    /// The finding title to keep (default: the finding's description, or
    /// the first finding the program shows).
    #[arg(long)]
    pub title: Option<String>,
    /// Attempts per candidate before it counts as not reproducing.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// Runs of the final program, to say how often it reproduces.
    #[arg(long, default_value_t = 10)]
    pub final_runs: u32,
    /// Stop looking for smaller programs after this long (at most half of
    /// it goes to cutting the programs run before the finding, if any).
    #[arg(long, default_value = "30m")]
    pub time: Millis,
    /// How long `for: run` loops run in each attempt (a program that says
    /// how long it ran in its campaign, as findings with programs before
    /// them do, keeps that).
    #[arg(long, default_value = "5s")]
    pub duration: Millis,
    /// Where the result goes (default: minimized.yaml next to the input).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmArgs,
}

/// How a program is tried: one attempt in a fresh VM, the titles it shows.
pub trait Tester {
    /// The finding titles of one run of `p` (empty: nothing found).
    fn titles(&mut self, p: &Program) -> Result<Vec<String>>;
}

/// Runs attempts in fresh VMs, each after the programs `before` it (in
/// the same VM, in order) when the finding needs them.
struct VmTester<'a> {
    env: &'a Env,
    duration: Duration,
    console: PathBuf,
    runs: u64,
    before: Vec<Program>,
}

impl Tester for VmTester<'_> {
    fn titles(&mut self, p: &Program) -> Result<Vec<String>> {
        if !self.before.is_empty() {
            // As long as the campaign ran it (it is stored with its
            // duration), like the programs before it.
            let mut p = p.clone();
            p.duration
                .get_or_insert(Millis(self.duration.as_millis() as u64));
            let mut seq = VmSequence {
                env: self.env,
                console: self.console.clone(),
                runs: 0,
            };
            // No title: every program of the sequence runs.
            let got = seq.run(&self.before, &p, "")?;
            self.runs += seq.runs;
            return Ok(got.titles);
        }
        self.runs += 1;
        let mut slot = Slot::new(0);
        let ran = slot
            .run(self.env, p, self.duration, self.console.clone())
            .map_err(|e| anyhow::anyhow!(chain(&e)))?;
        slot.drop_vm();
        Ok(ran.all_findings().map(|f| f.title.clone()).collect())
    }
}

/// Tries candidates for the program at `at` among those `before` a
/// finding's program `last`: the whole sequence runs in one VM.
struct InSequence<'a> {
    env: &'a Env,
    console: PathBuf,
    before: &'a [Program],
    at: usize,
    last: &'a Program,
    runs: &'a mut u64,
}

impl Tester for InSequence<'_> {
    fn titles(&mut self, p: &Program) -> Result<Vec<String>> {
        let mut before = self.before.to_vec();
        before[self.at] = p.clone();
        let mut seq = VmSequence {
            env: self.env,
            console: self.console.clone(),
            runs: 0,
        };
        let got = seq.run(&before, self.last, "")?;
        *self.runs += seq.runs;
        Ok(got.titles)
    }
}

/// The greedy search; `progress` gets one line per candidate.
pub fn minimize(
    t: &mut dyn Tester,
    start: Program,
    title: &str,
    attempts: u32,
    budget: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Program> {
    let began = Instant::now();
    let mut cur = start;
    'outer: loop {
        let cands = candidates(&cur);
        for (i, c) in cands.iter().enumerate() {
            if began.elapsed() >= budget {
                progress("time is up; keeping the smallest program so far");
                break 'outer;
            }
            let hit = shows(attempts, title, || t.titles(&c.program))?;
            progress(&format!(
                "[size {} -> {}] candidate {}/{}: {} ... {}",
                size(&cur),
                size(&c.program),
                i + 1,
                cands.len(),
                c.what,
                match hit {
                    Some(n) => format!("reproduces (attempt {n})"),
                    None => format!("gone in {attempts} attempts"),
                }
            ));
            if hit.is_some() {
                cur = c.program.clone();
                continue 'outer;
            }
        }
        break;
    }
    Ok(cur)
}

/// Ops of a program, barriers left out, a repeat counted with its body.
fn ops(p: &Program) -> usize {
    p.lanes
        .iter()
        .map(|l| count_ops(&l.ops) - l.ops.iter().filter(|s| s.op == Op::Barrier).count())
        .sum()
}

/// Runs `minimize`.
pub fn run(a: &MinimizeArgs) -> Result<u8> {
    if a.attempts == 0 {
        bail!("--attempts must be at least 1");
    }
    let (program, stored_title, default_out) = load(&a.input)?;
    crate::run::signal::install();
    let env = Env::new(&a.vm)?;
    let console = std::env::temp_dir().join(format!("cgstorm-minimize-{}.log", std::process::id()));
    let mut t = VmTester {
        env: &env,
        duration: Duration::from_millis(a.duration.0),
        console: console.clone(),
        runs: 0,
        before: Vec::new(),
    };
    let Some(title) = title_to_keep(a, &mut t, &program, stored_title)? else {
        return Ok(0);
    };
    if title.contains(cgstorm_report::STALL_MARK) {
        eprintln!(
            "cgstorm minimize: warning: `{title}` looks like a VM the host did not run, not a \
             kernel bug; shrinking it under TCG on a loaded host chases the host (try --accel kvm \
             or an idle machine)"
        );
    }
    let began = Instant::now();
    let time = Duration::from_millis(a.time.0);
    // A campaign's finding may need what ran before it in its VM: first cut
    // that down (often to nothing), then shrink the program after it.
    if a.input.is_dir() {
        cut_before(a, &mut t, &program, &title, load_before(&a.input)?)?;
    }
    eprintln!(
        "cgstorm minimize: keeping `{title}`; {} ops in {} lanes to start, {} attempts per candidate, fresh VM each",
        ops(&program),
        program.lanes.len(),
        a.attempts
    );
    let small = minimize(
        &mut t,
        program,
        &title,
        a.attempts,
        time.saturating_sub(began.elapsed()),
        &mut |l| eprintln!("cgstorm minimize: {l}"),
    )?;
    shrink_before(a, &mut t, &small, &title, time, began)?;
    let mut hits = 0;
    for i in 1..=a.final_runs {
        if (env.stop)() {
            break;
        }
        if t.titles(&small)?.iter().any(|x| same_finding(x, &title)) {
            hits += 1;
        }
        eprintln!(
            "cgstorm minimize: final run {i}/{}: {hits} reproduced",
            a.final_runs
        );
    }
    let out = a.output.clone().unwrap_or(default_out);
    let mut small = small;
    small.name = format!("{}-min", small.name.trim_end_matches("-min"));
    small.description = format!(
        "Minimised by cgstorm minimize: shows `{title}` in {hits}/{} runs.\n{}",
        a.final_runs, small.description
    );
    crate::findings::write_new(&out, small.to_yaml().as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    let _ = std::fs::remove_file(&console);
    if !t.before.is_empty() {
        write_with_before(&out, &small, &title, &t.before)?;
    }
    println!(
        "minimized to {} ops in {} lanes in {:.0?} ({} VM runs): {}\nreproduces `{title}` in {hits}/{} runs",
        ops(&small),
        small.lanes.len(),
        began.elapsed(),
        t.runs,
        out.display(),
        a.final_runs
    );
    Ok(if hits > 0 { 1 } else { 0 })
}

/// The finding to keep: `--title`, the stored one, or the first the program
/// shows in `--attempts` runs (None: it shows none, nothing to keep).
fn title_to_keep(
    a: &MinimizeArgs,
    t: &mut VmTester<'_>,
    program: &Program,
    stored: Option<String>,
) -> Result<Option<String>> {
    if let Some(title) = a.title.clone().or(stored) {
        return Ok(Some(title));
    }
    eprintln!("cgstorm minimize: running the program to see what it finds …");
    for _ in 0..a.attempts {
        if let Some(first) = t.titles(program)?.into_iter().next() {
            return Ok(Some(first));
        }
    }
    eprintln!(
        "cgstorm minimize: the program shows no finding in {} runs: nothing to keep",
        a.attempts
    );
    Ok(None)
}

/// Cuts the programs that ran before the finding's in its VM down to those
/// it needs (in half the time), kept in `t.before`.
fn cut_before(
    a: &MinimizeArgs,
    t: &mut VmTester<'_>,
    program: &Program,
    title: &str,
    before: Vec<Program>,
) -> Result<()> {
    if before.is_empty() {
        return Ok(());
    }
    eprintln!(
        "cgstorm minimize: {} programs ran before it in its VM; finding those it needs …",
        before.len()
    );
    let mut seq = VmSequence {
        env: t.env,
        console: t.console.clone(),
        runs: 0,
    };
    let kept = reduce_before(
        &mut seq,
        before,
        program,
        title,
        a.attempts,
        Duration::from_millis(a.time.0) / 2,
        &mut |l| eprintln!("cgstorm minimize: {l}"),
    )?;
    t.runs += seq.runs;
    let names: Vec<String> = kept.iter().map(|p| format!("`{}`", p.name)).collect();
    eprintln!(
        "cgstorm minimize: it needs {} of the programs before it{}",
        kept.len(),
        if names.is_empty() {
            String::new()
        } else {
            format!(": {}", names.join(", "))
        }
    );
    t.before = kept;
    Ok(())
}

/// Shrinks each program the finding needs before it, with the others and
/// the shrunk program `last` fixed around it, while time is left.
fn shrink_before(
    a: &MinimizeArgs,
    t: &mut VmTester<'_>,
    last: &Program,
    title: &str,
    time: Duration,
    began: Instant,
) -> Result<()> {
    for i in 0..t.before.len() {
        let left = time.saturating_sub(began.elapsed());
        if left.is_zero() {
            eprintln!("cgstorm minimize: time is up; the programs before it stay as they are");
            break;
        }
        eprintln!(
            "cgstorm minimize: shrinking `{}`, program {} of {} before it",
            t.before[i].name,
            i + 1,
            t.before.len()
        );
        let mut runs = 0;
        let shrunk = {
            let mut at = InSequence {
                env: t.env,
                console: t.console.clone(),
                before: &t.before,
                at: i,
                last,
                runs: &mut runs,
            };
            minimize(
                &mut at,
                t.before[i].clone(),
                title,
                a.attempts,
                left,
                &mut |l| eprintln!("cgstorm minimize: {l}"),
            )?
        };
        t.runs += runs;
        t.before[i] = shrunk;
    }
    Ok(())
}

/// Beside `out`, a finding directory `cgstorm replay` and `cgstorm
/// minimize` take: the program, its title and the programs before it.
fn write_with_before(out: &Path, small: &Program, title: &str, before: &[Program]) -> Result<()> {
    let dir = out.with_extension("");
    let before: Vec<String> = before.iter().map(Program::to_yaml).collect();
    crate::findings::write_shrunk(&dir, &small.to_yaml(), title, &before)?;
    println!(
        "it needs {} program(s) run before it in the same VM: {} (replay: cgstorm replay {})",
        before.len(),
        dir.join("before").display(),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flaky "kernel": the finding shows when the program has `sysrq c`,
    /// on every second run.
    struct Flaky {
        n: u32,
    }

    impl Tester for Flaky {
        fn titles(&mut self, p: &Program) -> Result<Vec<String>> {
            self.n += 1;
            let hit = p.to_yaml().contains("sysrq: c") && self.n.is_multiple_of(2);
            Ok(if hit {
                vec!["kernel panic: sysrq triggered crash".into()]
            } else {
                vec![]
            })
        }
    }

    /// A "kernel" that hangs in `sysrq c` wherever it sits in the program,
    /// and says so as `cgstorm run` does: naming the op by lane and number.
    struct Hangs;

    impl Tester for Hangs {
        fn titles(&mut self, p: &Program) -> Result<Vec<String>> {
            let stuck = (0..p.lanes.len())
                .flat_map(|l| p.lane_ops(l))
                .find(|(_, spec)| matches!(spec.op, Op::Sysrq(_)));
            Ok(stuck
                .map(|(id, _)| crate::run::verdict::hang_title_in(p, id))
                .into_iter()
                .collect())
        }
    }

    #[test]
    fn a_hang_shrinks_to_its_op_although_its_op_number_moves() {
        let text = "lanes:\n  - {name: a, ops: [{mkdir: a1}, {mkdir: a2}]}\n  \
                    - {name: b, ops: [{mkdir: b1}, {mkdir: b2}, {mkdir: b3}, {sysrq: c}]}\n";
        let p = Program::from_yaml("p", text).unwrap();
        let title = Hangs.titles(&p).unwrap().remove(0);
        assert!(title.contains("lane 1 (b) op 3"), "{title}");
        let small = minimize(
            &mut Hangs,
            p,
            &title,
            1,
            Duration::from_secs(60),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(small.lanes.len(), 1, "{}", small.to_yaml());
        assert_eq!(small.lanes[0].ops.len(), 1, "{}", small.to_yaml());
        assert!(small.to_yaml().contains("sysrq: c"), "{}", small.to_yaml());
    }

    #[test]
    fn a_flaky_finding_shrinks_to_its_op() {
        let mut text = String::from("lanes:\n");
        for l in 0..4 {
            text.push_str(&format!("  - name: l{l}\n    ops:\n"));
            for i in 0..10 {
                let op = if l == 1 && i == 3 {
                    "{sysrq: c}".to_string()
                } else {
                    format!("{{mkdir: m{l}x{i}}}")
                };
                text.push_str(&format!("      - {op}\n"));
            }
        }
        let p = Program::from_yaml("p", &text).unwrap();
        let mut lines = 0;
        let small = minimize(
            &mut Flaky { n: 0 },
            p,
            "kernel panic: sysrq triggered crash",
            3,
            Duration::from_secs(60),
            &mut |_| lines += 1,
        )
        .unwrap();
        assert_eq!(small.lanes.len(), 1);
        assert_eq!(small.lanes[0].ops.len(), 1, "{}", small.to_yaml());
        assert!(small.to_yaml().contains("sysrq: c"));
        assert!(lines > 0);
    }
}
