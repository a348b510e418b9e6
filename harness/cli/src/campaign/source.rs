//! Where a fuzz campaign's programs come from: the seed corpus (every
//! program under the corpus directories, as seeds), and one program per
//! draw of the seed's stream, generated or mutated from a corpus program
//! (parents weighted by the kernel edges they brought, programs kept for
//! new edges smashed first), split between the shards of a fleet.
//! `cgstorm fuzz` and `cgstorm soak` both draw from it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arbitrary::Unstructured;
use cgstorm_workloads::gen::{self, Bias};
use cgstorm_workloads::{mutate, Program};

use super::engine::{Campaign, Pick, Source};

/// How long a fuzz program's `for: run` loops run.
pub const PROGRAM_DURATION: Duration = Duration::from_secs(2);

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
            // A file that is no program is said, not silently dropped.
            match crate::programs::load(p) {
                Ok(prog) => Some(prog),
                Err(e) => {
                    eprintln!("cgstorm: skipping {}: {e:#}", p.display());
                    None
                }
            }
        })
        .collect()
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
    /// Which share of the draws this campaign takes.
    pub shard: Shard,
    /// Give about one in this many fault-injectable ops a `fail_nth`; 0:
    /// none, and those a parent had are dropped.
    pub faults_one_in: u32,
}

/// One in this many fault-injectable ops gets a `fail_nth` under
/// `--fault-injection`.
pub const FAULTS_ONE_IN: u32 = 8;

/// Shard `index` of `count` (`--shard 1/4`): the campaign takes draws
/// `index`, `index + count`, `index + 2 count`, … of the seed's stream, so
/// shards with one seed run disjoint programs and together the stream an
/// unsharded campaign would (up to what their corpora make of mutations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u64,
    /// At least 1.
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard: write I/N with 0 <= I < N (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u64>().map_err(|_| bad())?,
            n.trim().parse::<u64>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The stream's draw for this shard's `n`-th.
    pub fn draw(self, n: u64) -> u64 {
        n.saturating_mul(self.count).saturating_add(self.index)
    }

    /// A summary's suite name for `command` (`cgstorm fuzz`): the shard is
    /// named when there are several (`cgstorm fuzz shard 1/4`).
    pub fn suite(self, command: &str) -> String {
        if self.count > 1 {
            format!("{command} shard {}/{}", self.index, self.count)
        } else {
            command.to_string()
        }
    }

    /// The shard's `n`-th program: its number in the seed's stream, and
    /// whether it is a mutation. Every other program of a shard mutates,
    /// by the shard's own count, not the stream's: by the stream's, of two
    /// shards one would only generate and the other only mutate.
    pub fn take(self, n: u64) -> (u64, bool) {
        (self.draw(n), n % 2 == 1)
    }
}

impl FuzzSource {
    /// Program `n` of the campaign (a single shard's): even draws (and
    /// every draw while the corpus is empty) are generated, odd ones mutate
    /// a corpus program. `weights` (parallel to `corpus`) make a parent
    /// more likely.
    #[cfg(test)]
    pub fn program(&self, n: u64, corpus: &[Program], weights: &[u64]) -> Program {
        self.program_of(n, n % 2 == 1, corpus, weights, None, None)
    }

    /// Program `n` of the seed's stream: a mutation of a corpus program
    /// when `mutation` is (or of `corpus[smash]`, when `smash` is given),
    /// and the mutation works; generated otherwise, its families of ops
    /// drawn by `bias` when given (a guided campaign's).
    pub fn program_of(
        &self,
        n: u64,
        mutation: bool,
        corpus: &[Program],
        weights: &[u64],
        smash: Option<usize>,
        bias: Option<&Bias>,
    ) -> Program {
        let s = self.seed.wrapping_add(n.wrapping_mul(0x9E37_79B9));
        let bytes = seed_bytes(s);
        let mut u = Unstructured::new(&bytes);
        let smash = smash.filter(|i| *i < corpus.len());
        if (mutation || smash.is_some()) && !corpus.is_empty() {
            let parent = match smash {
                Some(i) => i,
                None => weighted_index(&mut u, weights).min(corpus.len() - 1),
            };
            if let Some((mut m, _)) = mutate::mutate(&corpus[parent], &mut u) {
                m.name = format!("mut-{s:x}-of-{}", corpus[parent].name);
                return self.with_faults(m, s);
            }
        }
        let mut p = gen::generate(&mut Unstructured::new(&bytes), bias)
            .expect("the generator never fails on enough bytes");
        p.name = format!("gen-{s:x}");
        self.with_faults(p, s)
    }

    /// `p` with its faults drawn (from bytes of their own, so the programs
    /// themselves are the seed's with or without faults).
    fn with_faults(&self, mut p: Program, s: u64) -> Program {
        let bytes = seed_bytes(s ^ 0xFA17_FA17_FA17_FA17);
        mutate::set_faults(&mut p, &mut Unstructured::new(&bytes), self.faults_one_in);
        p
    }
}

/// The corpus program a draw smashes: the next one queued, on a
/// mutation's draw only. Generated programs keep their half of the draws,
/// however many programs wait to be smashed: in a campaign's first minutes
/// nearly every program brings new edges, and the search would otherwise
/// only mutate.
fn smash_for(mutation: bool, queue: &mut VecDeque<usize>) -> Option<usize> {
    if mutation {
        queue.pop_front()
    } else {
        None
    }
}

impl Source for FuzzSource {
    fn next(&self, c: &Campaign, _job: usize) -> Option<Pick> {
        if let Some(x) = &c.exchange {
            let taken = x.pull(false);
            let mut st = c.state();
            st.stats.exchange.imported += taken.len() as u64;
            st.imports.extend(taken);
            // Another shard's program, run as it is: it joins the corpus if
            // it shows something new here. It takes no draw, so the shard's
            // own stream stays the seed's.
            if let Some(program) = st.imports.pop_front() {
                st.issued += 1;
                return Some(Pick {
                    program,
                    duration: PROGRAM_DURATION,
                    part: "fuzz".into(),
                    keep: true,
                    env: 0,
                });
            }
        }
        let (n, mutation, corpus, weights, smash, bias) = {
            let mut st = c.state();
            let (n, mutation) = self.shard.take(st.stats.draws);
            st.stats.draws += 1;
            st.issued += 1;
            let smash = smash_for(mutation, &mut st.smash);
            // A guided campaign's generator leans to the families of ops
            // that brought new kernel edges lately.
            let bias = (c.cover_feedback && st.yields.runs() > 0).then(|| st.yields.bias());
            (
                n,
                mutation,
                st.corpus.clone(),
                st.parent_weights(),
                smash,
                bias,
            )
        };
        Some(Pick {
            program: self.program_of(n, mutation, &corpus, &weights, smash, bias.as_ref()),
            duration: PROGRAM_DURATION,
            part: "fuzz".into(),
            keep: true,
            env: 0,
        })
    }
}

/// A program as a fuzz seed: its checks and known findings are about the
/// program as written, not about what mutations make of it (a check's
/// premise may be gone; a known report is for the fuzzer to judge), and
/// its own duration gives way to the fuzz program duration.
pub fn as_seed(mut p: Program) -> Program {
    p.checks.clear();
    p.known_findings.clear();
    p.duration = None;
    p
}

/// Seeds that run more ops than this are left out: a mutation of
/// memcg_iter_reclaim (208 memcgs built op by op, then reclaim) ran 260 s on
/// the 6.12 debug kernel, the time of 400 other programs.
pub const MAX_SEED_OPS: u64 = 300;

/// How many ops a run of `p` executes, counted repeats multiplied out
/// (timed ones once).
pub fn executed_ops(p: &Program) -> u64 {
    fn ops(list: &[cgstorm_workloads::op::OpSpec]) -> u64 {
        list.iter()
            .map(|s| match &s.op {
                cgstorm_workloads::op::Op::Repeat(r) => {
                    let n = match r.times {
                        cgstorm_workloads::op::Times::Count(n) => u64::from(n),
                        _ => 1,
                    };
                    n.saturating_mul(ops(&r.ops))
                }
                _ => 1,
            })
            .fold(0, u64::saturating_add)
    }
    p.lanes.iter().map(|l| ops(&l.ops)).sum()
}

/// An index drawn with probability proportional to its weight (all weights
/// 1: the same draw as a uniform choice of the same bytes).
fn weighted_index(u: &mut Unstructured<'_>, weights: &[u64]) -> usize {
    let total: u64 = weights.iter().sum();
    if total == 0 {
        return 0;
    }
    let mut r = u.int_in_range(0..=total - 1).unwrap_or(0);
    for (i, w) in weights.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_programs() {
        let corpus = load_programs(&[crate::data::corpus().join("semantics")]);
        assert!(corpus.len() >= 10, "the semantics corpus is there");
        let w = vec![1; corpus.len()];
        let src = FuzzSource {
            seed: 42,
            shard: Shard::default(),
            faults_one_in: 0,
        };
        for n in 0..20 {
            let a = src.program(n, &corpus, &w).to_yaml();
            assert_eq!(a, src.program(n, &corpus, &w).to_yaml(), "draw {n}");
            Program::from_yaml("p", &a).expect("valid");
        }
        let other = FuzzSource {
            seed: 43,
            shard: Shard::default(),
            faults_one_in: 0,
        };
        assert_ne!(
            src.program(0, &corpus, &w).to_yaml(),
            other.program(0, &corpus, &w).to_yaml()
        );
        assert!(src.program(1, &corpus, &w).name.starts_with("mut-"));
        assert!(src.program(1, &[], &[]).name.starts_with("gen-"));
    }

    /// Smashing takes the mutation draws only: a generated draw leaves
    /// the queue as it was.
    #[test]
    fn smashing_leaves_the_generated_draws_alone() {
        let mut q: VecDeque<usize> = [7, 8].into_iter().collect();
        assert_eq!(smash_for(false, &mut q), None);
        assert_eq!(q.len(), 2);
        assert_eq!(smash_for(true, &mut q), Some(7));
        assert_eq!(smash_for(false, &mut q), None);
        assert_eq!(smash_for(true, &mut q), Some(8));
        assert_eq!(smash_for(true, &mut q), None);
    }

    /// A smashed draw mutates the program it names, even or odd; a name
    /// past the corpus is ignored.
    #[test]
    fn a_smashed_draw_mutates_its_program() {
        let corpus = load_programs(&[crate::data::corpus().join("semantics")]);
        let w = vec![1; corpus.len()];
        let src = FuzzSource {
            seed: 42,
            shard: Shard::default(),
            faults_one_in: 0,
        };
        let target = &corpus[3].name;
        for n in 0..8 {
            let p = src.program_of(n, n % 2 == 1, &corpus, &w, Some(3), None);
            assert!(
                p.name.ends_with(&format!("-of-{target}")),
                "draw {n}: {}",
                p.name
            );
        }
        assert!(src
            .program_of(0, false, &corpus, &w, Some(999), None)
            .name
            .starts_with("gen-"));
        assert_eq!(
            src.program_of(5, true, &corpus, &w, None, None).to_yaml(),
            src.program(5, &corpus, &w).to_yaml()
        );
    }

    /// Two shards of a seed take disjoint draws of the seed's stream, and
    /// each both generates and mutates (by its own count: by the stream's,
    /// shard 0 of 2 would only generate). One shard is the whole stream.
    #[test]
    fn shards_split_the_stream() {
        let corpus = load_programs(&[crate::data::corpus().join("semantics")]);
        let w = vec![1; corpus.len()];
        let src = FuzzSource {
            seed: 7,
            shard: Shard::default(),
            faults_one_in: 0,
        };
        let (a, b): (Shard, Shard) = ("0/2".parse().unwrap(), "1/2".parse().unwrap());
        let shard = |sh: Shard| -> Vec<Program> {
            (0..6)
                .map(|n| {
                    let (d, mutation) = sh.take(n);
                    src.program_of(d, mutation, &corpus, &w, None, None)
                })
                .collect()
        };
        for (name, programs) in [("0/2", shard(a)), ("1/2", shard(b))] {
            let generated = programs
                .iter()
                .filter(|p| p.name.starts_with("gen-"))
                .count();
            assert_eq!(generated, 3, "shard {name}: every other draw generates");
        }
        let mut both: Vec<String> = shard(a)
            .into_iter()
            .chain(shard(b))
            .map(|p| p.to_yaml())
            .collect();
        both.sort();
        both.dedup();
        assert_eq!(both.len(), 12, "no program twice");
        let whole: Vec<String> = (0..6)
            .map(|n| src.program(n, &corpus, &w).to_yaml())
            .collect();
        let one = shard(Shard::default());
        assert_eq!(one.iter().map(|p| p.to_yaml()).collect::<Vec<_>>(), whole);
        for bad in ["2/2", "1", "a/b", "0/0"] {
            assert!(bad.parse::<Shard>().unwrap_err().contains("I/N"), "{bad}");
        }
    }

    #[test]
    fn parents_are_drawn_by_weight() {
        let bytes: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut u = Unstructured::new(&bytes);
        let mut hits = [0u32; 3];
        for _ in 0..600 {
            hits[weighted_index(&mut u, &[1, 0, 9])] += 1;
        }
        assert_eq!(hits[1], 0, "a weight of 0 is never drawn");
        assert!(hits[2] > hits[0] * 3, "{hits:?}");
        // All weights 1: the draw a uniform choice makes from the same bytes.
        for n in 1..50usize {
            let (mut a, mut b) = (
                Unstructured::new(&bytes[n..]),
                Unstructured::new(&bytes[n..]),
            );
            assert_eq!(
                weighted_index(&mut a, &vec![1; n]),
                b.choose_index(n).unwrap()
            );
        }
    }
}
