//! The generator: every byte string gives a valid program that round-trips
//! through YAML and that the model can predict; choices favour resources
//! the program made earlier.

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use cgstorm_workloads::gen::from_seed;
use cgstorm_workloads::model::{predict, ModelError, Target};
use cgstorm_workloads::op::{Op, OpSpec};
use cgstorm_workloads::Program;

fn walk<'a>(ops: &'a [OpSpec], out: &mut Vec<&'a Op>) {
    for s in ops {
        out.push(&s.op);
        if let Op::Repeat(r) = &s.op {
            walk(&r.ops, out);
        }
    }
}

/// The model may give up on this many generated programs in a thousand:
/// those whose steps have more interleavings than `predict` follows. A
/// campaign never predicts, it verifies a trace (whose timestamps bound the
/// interleavings), and `repro` falls back to the trace too.
const TOO_LARGE_PER_MILLE: usize = 5;

#[test]
fn generated_programs_are_valid_round_trip_and_predictable() {
    let t = Target::default();
    let mut too_large = Vec::new();
    for seed in 0..400 {
        let p = from_seed(seed);
        p.validate().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let y = p.to_yaml();
        let back =
            Program::from_yaml("gen", &y).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{y}"));
        assert_eq!(back, p, "seed {seed} does not round-trip:\n{y}");
        let pred = match predict(&p, &t) {
            Ok(pred) => pred,
            Err(ModelError::TooLarge { .. }) => {
                too_large.push(seed);
                continue;
            }
            Err(e) => panic!("seed {seed}: {e}\n{y}"),
        };
        for states in &pred.barriers {
            assert!(!states.is_empty(), "seed {seed}: a step with no end state");
            for s in states {
                let bad = s.inconsistencies();
                assert!(bad.is_empty(), "seed {seed}: {bad:?}\n{y}");
            }
        }
    }
    assert!(
        too_large.len() * 1000 <= 400 * TOO_LARGE_PER_MILLE,
        "too many programs the model cannot follow: seeds {too_large:?}"
    );
}

#[test]
fn same_seed_same_program() {
    assert_eq!(from_seed(7), from_seed(7));
    assert_ne!(from_seed(7), from_seed(8));
}

#[test]
fn any_bytes_give_a_program() {
    let mut x: u64 = 1;
    for len in [0usize, 1, 3, 17, 100, 1000, 10_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let p = Program::arbitrary(&mut Unstructured::new(&bytes)).unwrap();
        p.validate().unwrap();
    }
}

#[test]
fn the_whole_vocabulary_comes_out() {
    let mut seen = BTreeSet::new();
    for seed in 0..3000 {
        let p = from_seed(seed);
        let mut ops = Vec::new();
        for l in &p.lanes {
            walk(&l.ops, &mut ops);
        }
        seen.extend(ops.iter().map(|o| o.keyword()));
    }
    // `sysrq` is for planted findings (it can crash the kernel): never generated.
    assert!(!seen.contains("sysrq"));
    let missing: Vec<&str> = Op::KEYWORDS
        .iter()
        .filter(|k| !seen.contains(*k) && **k != "sysrq")
        .copied()
        .collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}

#[test]
fn choices_lean_on_what_the_program_made() {
    // Of the rmdirs and migrations, most name a cgroup an earlier op created.
    // The generator writes step by step, lane by lane within a step.
    let (mut hits, mut total) = (0, 0);
    for seed in 0..1000 {
        let p = from_seed(seed);
        let mut made = BTreeSet::new();
        let segments: Vec<Vec<&[OpSpec]>> = p
            .lanes
            .iter()
            .map(|l| l.ops.split(|s| s.op == Op::Barrier).collect())
            .collect();
        for step in 0..p.steps() {
            let mut ops = Vec::new();
            for lane in &segments {
                if let Some(seg) = lane.get(step) {
                    walk(seg, &mut ops);
                }
            }
            for op in ops {
                match op {
                    Op::Mkdir(cg) => {
                        made.insert(cg.clone());
                    }
                    Op::Rmdir(cg) | Op::Procs(cgstorm_workloads::op::CgTask { cg, .. }) => {
                        total += 1;
                        hits += made.contains(cg) as usize;
                    }
                    _ => {}
                }
            }
        }
    }
    assert!(total > 200, "too few samples: {total}");
    assert!(
        hits * 2 > total,
        "only {hits} of {total} name a cgroup made earlier"
    );
}

#[test]
fn a_wait_only_ever_names_tasks_that_end_by_themselves() {
    use cgstorm_workloads::op::TaskKind;
    let mut waits = 0;
    for seed in 0..3000 {
        let p = from_seed(seed);
        let mut ops = Vec::new();
        for l in &p.lanes {
            walk(&l.ops, &mut ops);
        }
        let endless: BTreeSet<String> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Spawn(s) => {
                    let ends = match &s.kind {
                        TaskKind::Writer(w) => !w.looped,
                        TaskKind::Reader(r) => !r.looped,
                        _ => false,
                    };
                    (!ends).then(|| s.task.to_string())
                }
                _ => None,
            })
            .collect();
        for o in &ops {
            if let Op::Wait(t) = o {
                waits += 1;
                assert!(
                    !endless.contains(t.as_str()),
                    "seed {seed}: `wait {t}` may meet a task that never ends:\n{}",
                    p.to_yaml()
                );
            }
        }
    }
    assert!(waits > 100, "only {waits} waits generated");
}

/// Bytes for a seed (splitmix64), as a campaign draws them.
fn bytes(seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..4096)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// A bias that weighs one family only gives programs of that family's ops
/// (mount ops always make a mount op), valid ones; an even bias gives
/// every family.
#[test]
fn a_bias_draws_the_families_it_weighs() {
    use cgstorm_workloads::gen::{generate, Bias, Family};
    let only_mounts = Bias {
        weights: [0, 0, 0, 0, 1, 0, 0, 0],
    };
    let mut ops = 0;
    let mut recipes = 0;
    for seed in 0..100 {
        let b = bytes(seed);
        let p = generate(&mut Unstructured::new(&b), Some(&only_mounts)).expect("enough bytes");
        p.validate().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for lane in &p.lanes {
            // A recipe's segment (it starts by turning controllers on for
            // the children of `/`, which no mount op does) is drawn whatever
            // the bias.
            for segment in lane.ops.split(|s| s.op == Op::Barrier) {
                if matches!(segment.first().map(|s| &s.op), Some(Op::SubtreeControl(c)) if c.cg.parts.is_empty())
                {
                    recipes += 1;
                    continue;
                }
                let mut all = Vec::new();
                walk(segment, &mut all);
                for op in all {
                    if let Some(f) = Family::of(op) {
                        assert_eq!(f, Family::Mount, "seed {seed}: {op:?}");
                        ops += 1;
                    }
                }
            }
        }
    }
    assert!(ops > 100, "only {ops} ops in 100 programs");
    assert!(recipes > 5, "only {recipes} recipes in 100 programs");
    for (i, f) in Family::ALL.iter().enumerate() {
        assert_eq!(*f as usize, i, "a family's index is its place in ALL");
    }
    let even = Bias { weights: [1; 8] };
    let mut seen = BTreeSet::new();
    for seed in 0..200 {
        let b = bytes(seed);
        let p = generate(&mut Unstructured::new(&b), Some(&even)).expect("enough bytes");
        for lane in &p.lanes {
            let mut all = Vec::new();
            walk(&lane.ops, &mut all);
            seen.extend(all.into_iter().filter_map(Family::of));
        }
    }
    assert_eq!(seen.len(), Family::ALL.len(), "families drawn: {seen:?}");
}

/// A generated `O_DSYNC` write (a lane's or a task's) is at most 512 blocks:
/// each block is a journal commit, and 64M of 4K blocks ran for minutes on a
/// debug kernel under TCG. Other modes keep the sizes up to 64M.
#[test]
fn synchronous_writes_are_bounded_in_blocks() {
    use cgstorm_workloads::op::TaskKind;
    use cgstorm_workloads::words::IoMode;
    let (mut dsync, mut big) = (0, 0);
    for seed in 0..2000 {
        let p = from_seed(seed);
        let mut ops = Vec::new();
        for l in &p.lanes {
            walk(&l.ops, &mut ops);
        }
        for op in ops {
            let (bytes, bs, mode) = match op {
                Op::Write(w) => (w.bytes.0, w.bs.0, w.mode),
                Op::Spawn(s) => match &s.kind {
                    TaskKind::Writer(w) => (w.bytes.0, w.bs.0, w.mode),
                    _ => continue,
                },
                _ => continue,
            };
            if mode == IoMode::Dsync {
                dsync += 1;
                assert!(bytes / bs <= 512, "seed {seed}: {} blocks", bytes / bs);
            } else if bytes / bs > 512 {
                big += 1;
            }
        }
    }
    assert!(
        dsync > 50 && big > 50,
        "{dsync} dsync writes, {big} large others"
    );
}
