//! Findings that need what ran before them. A fuzz or soak VM runs many
//! programs, with the agent's reset between them; a kernel bug can need the
//! state an earlier program left in the kernel (a memory controller rebound
//! between v1 and v2, per-cpu charge caches, dying cgroups) that the reset
//! cannot undo. The campaign stores those programs next to the finding
//! (`before/000.yaml`, oldest first); this module runs them again in one VM,
//! in order, and cuts them down to the ones the finding needs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use cgstorm_workloads::program::DEFAULT_DURATION_MS;
use cgstorm_workloads::Program;

use crate::campaign::slot::Slot;
use crate::campaign::Env;
use crate::findings::{load, load_before};
use crate::run::error::chain;
use crate::run::verdict::same_finding;
use crate::vm_args::VmArgs;

/// Runs programs one after another in one VM, as a campaign does.
pub trait Sequence {
    /// Runs `before`, then `p`, in one VM (a fresh one to start with); the
    /// finding titles of all of them, and the index of the first program
    /// that showed `title` (`before.len()` for `p`).
    fn run(&mut self, before: &[Program], p: &Program, title: &str) -> Result<SeqResult>;
}

/// What a sequence showed.
#[derive(Debug, Default)]
pub struct SeqResult {
    /// Every finding title, in order.
    pub titles: Vec<String>,
    /// The first program that showed the wanted title.
    pub first: Option<usize>,
    /// How often the VM had to be restarted in the middle (a program left
    /// it unfit): the state the later programs saw was not the one the
    /// campaign saw.
    pub restarts: u32,
}

/// Runs sequences in VMs.
pub struct VmSequence<'a> {
    /// The kernel and VM.
    pub env: &'a Env,
    /// The console of the last sequence goes here.
    pub console: PathBuf,
    /// VM runs so far.
    pub runs: u64,
}

impl Sequence for VmSequence<'_> {
    fn run(&mut self, before: &[Program], p: &Program, title: &str) -> Result<SeqResult> {
        let mut slot = Slot::new(0);
        let mut out = SeqResult::default();
        let _ = std::fs::remove_file(&self.console);
        for (i, prog) in before.iter().chain(std::iter::once(p)).enumerate() {
            if (self.env.stop)() {
                break;
            }
            self.runs += 1;
            let boots = slot.boots;
            let duration = prog.duration.map_or(DEFAULT_DURATION_MS, |m| m.0);
            let duration = Duration::from_millis(duration);
            let ran = match slot.run(self.env, prog, duration, self.console.clone()) {
                Ok(r) => r,
                Err(e) => {
                    slot.drop_vm();
                    return Err(anyhow::anyhow!(chain(&e)));
                }
            };
            if i > 0 && slot.boots > boots {
                out.restarts += 1;
            }
            for f in ran.all_findings() {
                if out.first.is_none() && same_finding(&f.title, title) {
                    out.first = Some(i);
                }
                out.titles.push(f.title.clone());
            }
            slot.settle(&ran);
            if out.first.is_some() {
                break;
            }
        }
        slot.drop_vm();
        Ok(out)
    }
}

/// The attempt (from 1) in which `try_once` (one run: the finding titles
/// it showed) showed `title`, within `attempts`; races are flaky, so a
/// try gets several. Shared by cutting the programs before a finding and
/// by `cgstorm minimize`.
pub fn shows(
    attempts: u32,
    title: &str,
    mut try_once: impl FnMut() -> Result<Vec<String>>,
) -> Result<Option<u32>> {
    for i in 1..=attempts {
        if try_once()?.iter().any(|x| same_finding(x, title)) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Cuts the programs before `p` down to those the finding needs: first
/// none at all, then (like delta debugging) dropping chunks of halving size,
/// the earliest first, keeping every cut after which `title` still shows
/// within `attempts` runs. Order is kept. `progress` gets a line per try.
/// When `budget` is spent, the cut so far is kept.
pub fn reduce_before(
    t: &mut dyn Sequence,
    before: Vec<Program>,
    p: &Program,
    title: &str,
    attempts: u32,
    budget: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Program>> {
    let began = std::time::Instant::now();
    if before.is_empty() {
        return Ok(before);
    }
    let alone = shows(attempts, title, || Ok(t.run(&[], p, title)?.titles))?.is_some();
    progress(&format!(
        "the program alone, without the {} before it: {}",
        before.len(),
        if alone {
            "reproduces"
        } else {
            "does not reproduce"
        }
    ));
    if alone {
        return Ok(Vec::new());
    }
    let mut cur = before;
    let mut chunk = cur.len().div_ceil(2);
    while chunk >= 1 {
        let mut start = 0;
        while start < cur.len() {
            if began.elapsed() >= budget {
                progress("time is up; keeping the programs before it that are left");
                return Ok(cur);
            }
            let end = (start + chunk).min(cur.len());
            let mut cand = cur[..start].to_vec();
            cand.extend_from_slice(&cur[end..]);
            let hit = shows(attempts, title, || Ok(t.run(&cand, p, title)?.titles))?.is_some();
            progress(&format!(
                "without programs {}..{} of {} before it: {}",
                start + 1,
                end,
                cur.len(),
                if hit { "reproduces" } else { "gone" }
            ));
            if hit {
                cur = cand;
            } else {
                start = end;
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2).min(cur.len().max(1));
    }
    Ok(cur)
}

/// Arguments of `cgstorm replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// A finding directory of `cgstorm fuzz`, `soak` or `minimize` (its
    /// program.yaml, description, and before/ with the programs that ran in
    /// the VM before it).
    pub finding: PathBuf,
    /// How often to run the whole sequence, each time in a fresh VM.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// The finding title to look for (default: the finding's description).
    #[arg(long)]
    pub title: Option<String>,
    /// Run the program alone, without the programs before it.
    #[arg(long)]
    pub alone: bool,
    #[command(flatten)]
    pub vm: VmArgs,
}

/// Runs `cgstorm replay`: exit 1 when the finding came back, 0 when not.
pub fn replay(a: &ReplayArgs) -> Result<u8> {
    if !a.finding.is_dir() {
        anyhow::bail!(
            "{} is not a finding directory; to run a program, use `cgstorm run {}`",
            a.finding.display(),
            a.finding.display()
        );
    }
    if a.runs == 0 {
        anyhow::bail!("--runs must be at least 1");
    }
    let (program, stored_title, _) = load(&a.finding)?;
    let Some(title) = a.title.clone().or(stored_title) else {
        anyhow::bail!(
            "{} has no description: say which finding to look for with --title",
            a.finding.display()
        );
    };
    let before = if a.alone {
        Vec::new()
    } else {
        load_before(&a.finding)?
    };
    crate::run::signal::install();
    let env = Env::new(&a.vm)?;
    let console = a.finding.join("replay.console.log");
    let mut seq = VmSequence {
        env: &env,
        console: console.clone(),
        runs: 0,
    };
    eprintln!(
        "cgstorm replay: looking for `{title}`; {} program(s) before `{}`, in one VM, {} time(s)",
        before.len(),
        program.name,
        a.runs
    );
    let mut hits = 0;
    for r in 1..=a.runs {
        if (env.stop)() {
            break;
        }
        let got = seq.run(&before, &program, &title)?;
        let restarts = match got.restarts {
            0 => String::new(),
            n => format!(
                " (the VM was restarted {n} time(s) on the way: a program before it left it unfit)"
            ),
        };
        match got.first {
            Some(i) => {
                hits += 1;
                let at = if i == before.len() {
                    format!("by `{}` itself", program.name)
                } else {
                    format!(
                        "already by program {} of {} before it (`{}`)",
                        i + 1,
                        before.len(),
                        before[i].name
                    )
                };
                let keep = a.finding.join(format!("replay-{r}.console.log"));
                let _ = std::fs::rename(&console, &keep);
                eprintln!(
                    "cgstorm replay: run {r}/{}: reproduced {at}{restarts}; console: {}",
                    a.runs,
                    keep.display()
                );
            }
            None => eprintln!(
                "cgstorm replay: run {r}/{}: not reproduced{restarts}{}",
                a.runs,
                if got.titles.is_empty() {
                    String::new()
                } else {
                    format!("; it showed instead: {}", got.titles.join("; "))
                }
            ),
        }
    }
    println!("reproduces `{title}` in {hits}/{} replays", a.runs);
    Ok(if hits > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(n: &str) -> Program {
        Program::from_yaml(
            n,
            &format!("name: {n}\nlanes:\n  - {{name: l, ops: [{{mkdir: a}}]}}\n"),
        )
        .unwrap()
    }

    /// A "kernel" whose finding needs programs `p3` and then `p7` to have
    /// run before the last one, and shows it every second time it could.
    struct NeedsTwo {
        n: u32,
    }

    impl Sequence for NeedsTwo {
        fn run(&mut self, before: &[Program], _p: &Program, title: &str) -> Result<SeqResult> {
            self.n += 1;
            let names: Vec<&str> = before.iter().map(|b| b.name.as_str()).collect();
            let i3 = names.iter().position(|n| *n == "p3");
            let i7 = names.iter().position(|n| *n == "p7");
            let hit = matches!((i3, i7), (Some(a), Some(b)) if a < b) && self.n.is_multiple_of(2);
            Ok(SeqResult {
                titles: if hit { vec![title.to_string()] } else { vec![] },
                first: hit.then_some(before.len()),
                restarts: 0,
            })
        }
    }

    #[test]
    fn the_programs_before_a_finding_shrink_to_those_it_needs() {
        let before: Vec<Program> = (0..10).map(|i| named(&format!("p{i}"))).collect();
        let mut lines = Vec::new();
        let kept = reduce_before(
            &mut NeedsTwo { n: 0 },
            before,
            &named("last"),
            "WARNING in page_counter_uncharge",
            3,
            Duration::from_secs(60),
            &mut |l| lines.push(l.to_string()),
        )
        .unwrap();
        let names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p3", "p7"]);
        assert!(lines[0].contains("does not reproduce"), "{lines:?}");
    }

    #[test]
    fn a_finding_the_program_shows_alone_needs_nothing_before_it() {
        struct Always;
        impl Sequence for Always {
            fn run(&mut self, before: &[Program], _: &Program, t: &str) -> Result<SeqResult> {
                Ok(SeqResult {
                    titles: vec![t.into()],
                    first: Some(before.len()),
                    restarts: 0,
                })
            }
        }
        let before: Vec<Program> = (0..5).map(|i| named(&format!("p{i}"))).collect();
        let kept = reduce_before(
            &mut Always,
            before,
            &named("x"),
            "t",
            1,
            Duration::from_secs(60),
            &mut |_| {},
        )
        .unwrap();
        assert!(kept.is_empty());
    }
}
