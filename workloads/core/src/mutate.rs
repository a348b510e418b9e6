//! Mutating kept programs: the fuzzer's second source of programs, next to
//! the generator.
//!
//! Mutations work on programs, not bytes, so any kept program (the corpus,
//! a scenario, a finding) can be mutated. They keep the generator's promise
//! that a correct kernel is never wedged by construction: nothing that can
//! block on a page reference (truncate, umount) or wait for a task is
//! inserted or duplicated, and releases, spawns, kills and waits are never
//! dropped. Every mutant is checked like a program file (limits, repeat
//! depth, no barrier in a loop).

use arbitrary::{Result, Unstructured};

use crate::gen;
use crate::names::Millis;
use crate::op::{Op, OpSpec, RepeatArgs, Times};
use crate::program::{Lane, Program};

/// What a mutation did, for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// A repeat's count or time changed.
    RepeatTimes,
    /// An op was dropped.
    Drop,
    /// An op was duplicated in place.
    Duplicate,
    /// A new op, drawn for what the program makes (its cgroups, files,
    /// mounts, mappings), was inserted.
    Splice,
    /// An op was replaced by a new one of its family, drawn the same way
    /// (its arguments, or its kind within the family, changed; the v1
    /// family's draw makes a cgroup op five times in six, as generating).
    Replace,
    /// An op was wrapped in a repeat.
    Wrap,
    /// A lane was dropped.
    DropLane,
}

/// Ops that may be inserted, duplicated or wrapped anywhere: they never
/// block on page references or tasks.
fn insertable(op: &Op) -> bool {
    !matches!(
        op,
        Op::Barrier
            | Op::Repeat(_)
            | Op::Truncate(_)
            | Op::Umount(_)
            | Op::UmountLazy(_)
            | Op::Remount(_)
            | Op::Pin(_)
            | Op::Release(_)
            | Op::Spawn(_)
            | Op::Wait(_)
            | Op::Kill(_)
            | Op::Sysrq(_)
    )
}

/// Ops that may be dropped: everything but structure and what keeps a
/// program from waiting forever (releases, and the task ops a `wait` needs),
/// and a repeat only with none of those in its body (dropping a body that
/// spawns and waits would drop its wait).
fn droppable(op: &Op) -> bool {
    match op {
        Op::Barrier | Op::Release(_) | Op::Spawn(_) | Op::Kill(_) | Op::Wait(_) => false,
        Op::Repeat(r) => r.ops.iter().all(|s| droppable(&s.op)),
        _ => true,
    }
}

/// A place in a program: lane, then indices down through repeat bodies.
type Path = (usize, Vec<usize>);

/// Every op position, depth first.
fn positions(p: &Program) -> Vec<Path> {
    fn walk(ops: &[OpSpec], prefix: &mut Vec<usize>, lane: usize, out: &mut Vec<Path>) {
        for (i, s) in ops.iter().enumerate() {
            prefix.push(i);
            out.push((lane, prefix.clone()));
            if let Op::Repeat(r) = &s.op {
                walk(&r.ops, prefix, lane, out);
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    for (li, lane) in p.lanes.iter().enumerate() {
        walk(&lane.ops, &mut Vec::new(), li, &mut out);
    }
    out
}

/// The op list holding the op at `path`, and its index there.
fn slot<'a>(p: &'a mut Program, path: &Path) -> (&'a mut Vec<OpSpec>, usize) {
    let (lane, idx) = path;
    let mut ops = &mut p.lanes[*lane].ops;
    for &i in &idx[..idx.len() - 1] {
        ops = match &mut ops[i].op {
            Op::Repeat(r) => &mut r.ops,
            _ => unreachable!("paths only go down through repeats"),
        };
    }
    (ops, idx[idx.len() - 1])
}

fn op_at<'a>(p: &'a Program, path: &Path) -> &'a OpSpec {
    let (lane, idx) = path;
    let mut ops = &p.lanes[*lane].ops;
    let mut spec = &ops[idx[0]];
    for &i in &idx[1..] {
        ops = match &spec.op {
            Op::Repeat(r) => &r.ops,
            _ => unreachable!("paths only go down through repeats"),
        };
        spec = &ops[i];
    }
    spec
}

/// One mutation of `p`; `None` when the choice made does not apply (the
/// caller draws again). Expectations are dropped: they belonged to the
/// original program.
fn mutate_once(p: &Program, u: &mut Unstructured<'_>) -> Result<Option<(Program, Mutation)>> {
    let mut m = p.clone();
    let all = positions(&m);
    let what = u.int_in_range(0..=6)?;
    let done = match what {
        0 => {
            let reps: Vec<&Path> = all
                .iter()
                .filter(|q| matches!(op_at(&m, q).op, Op::Repeat(_)))
                .collect();
            if reps.is_empty() {
                return Ok(None);
            }
            let q = (*u.choose(&reps)?).clone();
            let (ops, i) = slot(&mut m, &q);
            let Op::Repeat(r) = &mut ops[i].op else {
                unreachable!()
            };
            r.times = match r.times {
                Times::Count(_) => Times::Count(u.int_in_range(1..=8)?),
                Times::For(_) => Times::For(Millis(u.int_in_range(10..=500)?)),
                Times::Run => return Ok(None),
            };
            Mutation::RepeatTimes
        }
        1 => {
            let cands: Vec<&Path> = all.iter().filter(|q| droppable(&op_at(&m, q).op)).collect();
            if cands.is_empty() {
                return Ok(None);
            }
            let q = (*u.choose(&cands)?).clone();
            let (ops, i) = slot(&mut m, &q);
            ops.remove(i);
            Mutation::Drop
        }
        2 | 4 => {
            let cands: Vec<&Path> = all
                .iter()
                .filter(|q| insertable(&op_at(&m, q).op))
                .collect();
            if cands.is_empty() {
                return Ok(None);
            }
            let q = (*u.choose(&cands)?).clone();
            let (ops, i) = slot(&mut m, &q);
            let op = ops[i].op.clone();
            if what == 2 {
                ops.insert(i, op.into());
                Mutation::Duplicate
            } else {
                ops[i] = Op::Repeat(RepeatArgs {
                    times: Times::Count(u.int_in_range(2..=4)?),
                    ops: vec![op.into()],
                })
                .into();
                Mutation::Wrap
            }
        }
        3 => {
            if m.lanes.is_empty() {
                return Ok(None);
            }
            let op = gen::op_in_context(&m, u, None)?;
            if !insertable(&op) {
                return Ok(None);
            }
            let lane = u.choose_index(m.lanes.len())?;
            let at = u.int_in_range(0..=m.lanes[lane].ops.len())?;
            m.lanes[lane].ops.insert(at, op.into());
            Mutation::Splice
        }
        6 => {
            // What may be dropped and inserted may be swapped for another.
            let cands: Vec<&Path> = all
                .iter()
                .filter(|q| {
                    let op = &op_at(&m, q).op;
                    droppable(op) && insertable(op)
                })
                .collect();
            if cands.is_empty() {
                return Ok(None);
            }
            let q = (*u.choose(&cands)?).clone();
            let family = gen::Family::of(&op_at(&m, &q).op);
            let op = gen::op_in_context(&m, u, family)?;
            if !insertable(&op) {
                return Ok(None);
            }
            let (ops, i) = slot(&mut m, &q);
            ops[i] = op.into();
            Mutation::Replace
        }
        _ => {
            // A lane whose tasks another lane may wait for stays, and one
            // that releases a pin: another lane's truncate or umount may
            // wait for that release (a guided fuzz of the 6.12 debug kernel
            // dropped dax-truncate-pinned's releaser lane: its truncate
            // waited for the pin until the watchdog called it a hang).
            let free: Vec<usize> = (0..m.lanes.len())
                .filter(|&l| {
                    !positions(&m).iter().any(|q| {
                        q.0 == l
                            && matches!(
                                op_at(&m, q).op,
                                Op::Spawn(_) | Op::Kill(_) | Op::Release(_)
                            )
                    })
                })
                .collect();
            if m.lanes.len() < 2 || free.is_empty() {
                return Ok(None);
            }
            let lane = *u.choose(&free)?;
            m.lanes.remove(lane);
            Mutation::DropLane
        }
    };
    strip_expectations(&mut m.lanes);
    Ok(Some((m, done)))
}

fn strip_expectations(lanes: &mut [Lane]) {
    fn strip(ops: &mut [OpSpec]) {
        for s in ops {
            s.expect = None;
            if let Op::Repeat(r) = &mut s.op {
                strip(&mut r.ops);
            }
        }
    }
    for l in lanes {
        strip(&mut l.ops);
    }
}

/// A valid mutant of `p` with 1 to 3 mutations, named after it; `None` if
/// none of a few attempts gave a valid program (e.g. `p` is one lane of
/// ops that may not be touched).
pub fn mutate(p: &Program, u: &mut Unstructured<'_>) -> Option<(Program, Vec<Mutation>)> {
    for _ in 0..16 {
        let rounds = u.int_in_range(1..=3u8).ok()?;
        let mut cur = p.clone();
        let mut did = Vec::new();
        for _ in 0..rounds {
            if let Ok(Some((m, what))) = mutate_once(&cur, u) {
                cur = m;
                did.push(what);
            }
        }
        if did.is_empty() || cur.lanes.iter().all(|l| l.ops.is_empty()) {
            continue;
        }
        // The same checks as a program file.
        if let Ok(valid) = Program::from_yaml("mutant", &cur.to_yaml()) {
            let mut valid = valid;
            valid.name = format!("{}+mut", p.name.trim_end_matches("+mut"));
            return Some((valid, did));
        }
    }
    None
}

/// The largest `fail_nth` drawn: the ops faults go into make from a few to
/// a few dozen allocations, and syzkaller's own search stays this low.
pub const MAX_FAIL_NTH: u32 = 32;

/// Gives about one in `one_in` fault-injectable ops a `fail_nth` (1 to
/// [`MAX_FAIL_NTH`], small ones likelier) and drops the others' when
/// `one_in` is 0: a campaign with fault injection turns its programs into
/// ones that fail an allocation here and there; one without strips them.
pub fn set_faults(p: &mut Program, u: &mut Unstructured<'_>, one_in: u32) {
    fn walk(ops: &mut [OpSpec], u: &mut Unstructured<'_>, one_in: u32) {
        for s in ops {
            if let Op::Repeat(r) = &mut s.op {
                walk(&mut r.ops, u, one_in);
                continue;
            }
            if one_in == 0 || !s.op.fault_injectable() {
                s.fail_nth = None;
                continue;
            }
            if s.fail_nth.is_none() && u.ratio(1, one_in).unwrap_or(false) {
                // The square of a uniform draw: small counts first.
                let r = u.int_in_range(1..=MAX_FAIL_NTH).unwrap_or(1);
                s.fail_nth = Some((r * r).div_ceil(MAX_FAIL_NTH).max(1));
            }
        }
    }
    for l in &mut p.lanes {
        walk(&mut l.ops, u, one_in);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::count_ops;

    /// Faults go only on ops that may carry them, and come off again.
    #[test]
    fn faults_are_set_on_injectable_ops_only_and_stripped() {
        let mut carried = 0;
        for seed in 0..200u64 {
            let mut p = gen::from_seed(seed);
            let bytes: Vec<u8> = (0..4096u32).map(|i| (i as u64 * 31 + seed) as u8).collect();
            set_faults(&mut p, &mut Unstructured::new(&bytes), 2);
            let again = Program::from_yaml("t", &p.to_yaml()).expect("still a valid program");
            for l in 0..again.lanes.len() {
                for (_, s) in again.lane_ops(l) {
                    if let Some(n) = s.fail_nth {
                        assert!(s.op.fault_injectable() && (1..=MAX_FAIL_NTH).contains(&n));
                        carried += 1;
                    }
                }
            }
            set_faults(&mut p, &mut Unstructured::new(&bytes), 0);
            assert!(!p.to_yaml().contains("fail_nth"));
        }
        assert!(carried > 50, "only {carried} ops got a fault");
    }

    fn bytes(seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn count(p: &Program, f: impl Fn(&Op) -> bool + Copy) -> usize {
        positions(p).iter().filter(|q| f(&op_at(p, q).op)).count()
    }

    #[test]
    fn mutants_are_valid_programs_that_differ_and_keep_their_safety_ops() {
        let mut changed = 0;
        let mut kinds = std::collections::HashSet::new();
        for seed in 0..300 {
            let p = gen::from_seed(seed);
            let data = bytes(seed);
            let mut u = Unstructured::new(&data);
            let Some((m, did)) = mutate(&p, &mut u) else {
                continue;
            };
            kinds.extend(did.iter().copied());
            let again = Program::from_yaml("m", &m.to_yaml()).expect("a mutant is a valid program");
            assert_eq!(again.lanes, m.lanes);
            if m.lanes != p.lanes {
                changed += 1;
            }
            // No mutation drops a release (a lane with one stays).
            let releases = |op: &Op| matches!(op, Op::Release(_));
            assert_eq!(
                count(&p, releases),
                count(&m, releases),
                "seed {seed}: {did:?}"
            );
            let guarded = |op: &Op| matches!(op, Op::Release(_) | Op::Wait(_));
            if !did.contains(&Mutation::DropLane) {
                assert_eq!(
                    count(&p, guarded),
                    count(&m, guarded),
                    "seed {seed}: {did:?}"
                );
                assert!(
                    count_ops(
                        &m.lanes
                            .iter()
                            .flat_map(|l| l.ops.clone())
                            .collect::<Vec<_>>()
                    ) > 0
                );
            }
            // Nothing that can block on a page reference was added.
            let blocking = |op: &Op| matches!(op, Op::Truncate(_) | Op::Umount(_) | Op::Pin(_));
            assert!(
                count(&m, blocking) <= count(&p, blocking),
                "seed {seed}: {did:?}"
            );
        }
        assert!(changed > 250, "only {changed} of 300 mutants differ");
        assert_eq!(kinds.len(), 7, "not every mutation was seen: {kinds:?}");
    }

    /// A mutation's new op is drawn for the parent: it works on the
    /// parent's cgroups and files (names the generator alone never draws),
    /// and a replaced op keeps its family.
    #[test]
    fn new_ops_work_on_what_the_parent_makes() {
        let p = Program::from_yaml(
            "p",
            "lanes:\n  - name: l\n    ops: [{mkdir: ctx}, \
             {write: {file: tmp/ctx, bytes: 4K, bs: 4K}}, {fsync: tmp/ctx}]\n",
        )
        .expect("valid");
        let (mut on_file, mut on_cg, mut tries) = (0, 0, 0);
        for seed in 0..200u64 {
            let data = bytes(seed);
            let mut u = Unstructured::new(&data);
            let f = gen::op_in_context(&p, &mut u, Some(gen::Family::File)).unwrap();
            assert_eq!(gen::Family::of(&f), Some(gen::Family::File), "{f:?}");
            on_file += f.describe().contains("tmp/ctx") as usize;
            let k = gen::op_in_context(&p, &mut u, Some(gen::Family::Knob)).unwrap();
            assert_eq!(gen::Family::of(&k), Some(gen::Family::Knob), "{k:?}");
            on_cg += k.describe().contains("ctx") as usize;
            tries += 1;
        }
        assert!(
            on_file * 2 > tries,
            "{on_file} of {tries} file ops on tmp/ctx"
        );
        assert!(on_cg * 2 > tries, "{on_cg} of {tries} knob ops on ctx");
    }

    #[test]
    fn the_same_bytes_give_the_same_mutant() {
        let p = gen::from_seed(7);
        let data = bytes(7);
        let a = mutate(&p, &mut Unstructured::new(&data)).map(|m| m.0.to_yaml());
        let b = mutate(&p, &mut Unstructured::new(&data)).map(|m| m.0.to_yaml());
        assert_eq!(a, b);
    }
}
