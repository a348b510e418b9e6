//! Mechanism segments: the sequences the seed threads' races need, made of
//! ordinary ops with drawn arguments.
//!
//! Each needs four or more things at once (memory and io on for the
//! children of `/`, a memcg, a block filesystem, a task in the memcg
//! writing to it, then the op that reaches the mechanism), which the
//! generator's independent draws line up almost never: twenty-minute
//! campaigns on a debug kernel never reached `inode_switch_wbs` in a task
//! KCOV sees, nor `balance_dirty_pages` past its free-run ceiling. A
//! segment is one lane's, so the race itself comes from the other lanes
//! and from mutation; what a recipe gives is that the mechanism runs: in
//! the lane, whose coverage KCOV sees, where the op that reaches it can be
//! the lane's (an fsync, a limit, a truncate), and seen by a tracepoint
//! where it runs in the task that dirties (throttling).

use std::ops::RangeInclusive;

use arbitrary::{Result, Unstructured};

use super::{n, Gen, Made, ENDING, ENDLESS, FILES};
use crate::names::{Cg, Dev, DevKind, FilePath, Hier, Limit, Millis, Name, Size};
use crate::op::*;
use crate::program::{Lane, Program};
use crate::words::{BlockFs, Ctrl, FsType, IoMode};

/// One step of a generated program in this many has a recipe in one lane.
pub const RECIPE_ODDS: u32 = 6;

/// The mechanisms a recipe reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// Seed 001, the v2 half: an inode dirtied from the root memcg is
    /// written and truncated in a loop by a task in another memcg while the
    /// lane fsyncs it, until the fsync's writeback (`wbc_detach_inode`, in
    /// the lane) finds it foreign often enough to switch its wb
    /// (`inode_switch_wbs`); then dirtied again from the memcg and
    /// truncated by the lane, so the truncate finds dirty pages
    /// (`__folio_cancel_dirty` under `unlocked_inode_to_wb_begin`).
    ForeignDirty,
    /// Seed 000: a file written from inside a memcg (its inode attaches
    /// to the memcg's cgwb), the memcg removed, then sync, syncfs or the
    /// lane's fsync, and sometimes umount: the dying cgwb's inodes are
    /// switched to the parent's wb, the superblock torn down after.
    DyingCgwb,
    /// Seed 002: two child memcgs fill with page cache, one is removed
    /// while it still holds it, and the parent is given a limit under what
    /// they hold, then reclaimed: reclaim walks that stop early, over a
    /// dying memcg.
    DyingReclaim,
    /// A writer in a memcg with a memory.max writes past its dirty limit:
    /// `balance_dirty_pages` throttles it in the memcg's domain.
    DirtyThrottle,
}

/// How many fsyncs ForeignDirty's lane runs while its writer loops (drawn
/// in this range). Each shifts ceil(pages * 8 / bandwidth) of the 16
/// history slots (at most 5), one at least; more than 8 set ones switch:
/// 10 leave little margin, which a campaign can afford.
pub const FOREIGN_FSYNCS: RangeInclusive<u32> = 10..=16;

impl Recipe {
    /// Every recipe.
    pub const ALL: [Recipe; 4] = [
        Recipe::ForeignDirty,
        Recipe::DyingCgwb,
        Recipe::DyingReclaim,
        Recipe::DirtyThrottle,
    ];

    /// The recipe alone in a one-lane program, every choice its first (the
    /// memcg `a`, ext4 made on scratch0 and mounted at m0, its file f0, the
    /// smaller sizes) but ForeignDirty's fsyncs, `fsyncs` of them: what a
    /// check that wants the mechanism every time runs, with what the
    /// generator lines up.
    pub fn program(self, fsyncs: u32) -> Program {
        // No bytes: every draw takes its first choice.
        let ops = cook_alone(self, &mut Unstructured::new(&[]), Some(fsyncs))
            .expect("no draw fails on no bytes");
        Program {
            name: format!("{self:?}"),
            description: String::new(),
            duration: None,
            lanes: vec![Lane { name: n("l0"), ops }],
            checks: Vec::new(),
            known_findings: Vec::new(),
        }
    }
}

/// `which`'s segment drawn from `u` by a generator that made nothing
/// before it, ForeignDirty's fsyncs `fsyncs` when given.
fn cook_alone(which: Recipe, u: &mut Unstructured, fsyncs: Option<u32>) -> Result<Vec<OpSpec>> {
    let mut g = Gen {
        u,
        made: Made::default(),
        favourite: 0,
        bias: None,
    };
    g.cook(which, fsyncs)
}

const MB: u64 = 1 << 20;
/// Top-level memcgs a recipe makes (the generator's own names, so other
/// lanes' ops meet them).
const TOP: &[&str] = &["a", "b", "c"];

impl Gen<'_, '_> {
    /// A mechanism segment, of a recipe drawn evenly.
    pub(super) fn recipe(&mut self) -> Result<Vec<OpSpec>> {
        let which = self.pick(&Recipe::ALL)?;
        self.cook(which, None)
    }

    /// The segment of `which`, its arguments drawn (ForeignDirty's
    /// fsyncs, `fsyncs` when given).
    fn cook(&mut self, which: Recipe, fsyncs: Option<u32>) -> Result<Vec<OpSpec>> {
        let mut ops = Vec::new();
        match which {
            Recipe::ForeignDirty => {
                let cg = self.memcg(&mut ops, &[Ctrl::Memory, Ctrl::Io])?;
                let file = self.block_file(&mut ops)?;
                // The lane (in `/`) dirties first: the inode attaches to the
                // root wb.
                ops.push(Op::Write(WriteArgs {
                    file: file.clone(),
                    bytes: Size(MB),
                    bs: Size(64 << 10),
                    mode: IoMode::Buffered,
                    fsync: false,
                }));
                // A looping writer in the memcg dirties (its pages are
                // charged there) and truncates, again and again, and the
                // lane fsyncs: the writeback, and the switch, run in the
                // lane, whose kernel coverage KCOV sees (a spawned task's
                // it does not). A writer that ends would not do: closing a
                // file it truncated flushes it (ext4's auto_da_alloc, xfs
                // alike), in the writer, before the lane's fsync.
                // How many fsyncs switch: FOREIGN_FSYNCS.
                let (spawn, task) = self.endless_writer(&cg, &file)?;
                ops.push(spawn);
                let fsyncs = match fsyncs {
                    Some(n) => n,
                    None => self.u.int_in_range(FOREIGN_FSYNCS)?,
                };
                ops.push(Op::Repeat(RepeatArgs {
                    times: Times::Count(fsyncs),
                    ops: vec![Op::Fsync(file.clone()).into(), Op::Sleep(Millis(20)).into()],
                }));
                ops.push(Op::Kill(task));
                // Dirty once more from the memcg, and truncate in the lane.
                let (spawn, task) = self.endless_writer(&cg, &file)?;
                ops.push(spawn);
                ops.push(Op::Sleep(Millis(50)));
                ops.push(Op::Truncate(TruncateArgs {
                    file,
                    size: Size(0),
                }));
                ops.push(Op::Kill(task));
            }
            Recipe::DyingCgwb => {
                let cg = self.memcg(&mut ops, &[Ctrl::Memory, Ctrl::Io])?;
                let file = self.block_file(&mut ops)?;
                let bytes = self.pick(&[MB, 4 * MB, 8 * MB])?;
                let (spawn, task) = self.writer(&cg, &file, bytes, false)?;
                ops.push(spawn);
                ops.push(Op::Wait(task));
                ops.push(Op::Rmdir(cg));
                // The flushers write back for sync and syncfs (KCOV does
                // not see them); an fsync writes back in the lane.
                ops.push(match self.u.int_in_range(0..=2)? {
                    0 => Op::Sync,
                    1 => Op::Syncfs(file.place.clone()),
                    _ => Op::Fsync(file.clone()),
                });
                if self.u.ratio(1, 3)? {
                    ops.push(Op::Umount(file.place));
                }
            }
            Recipe::DyingReclaim => {
                let parent = self.memcg(&mut ops, &[Ctrl::Memory])?;
                ops.push(Op::SubtreeControl(SubtreeChange {
                    cg: parent.clone(),
                    change: vec![CtrlChange {
                        enable: true,
                        ctrl: Ctrl::Memory,
                    }],
                }));
                // The writers fsync, so their cache is clean and reclaim
                // drops it at once (a limit under them while they write
                // throttles their dirtying instead: 9.5 s for 8M on a
                // debug kernel under TCG).
                let bytes = self.pick(&[4 * MB, 8 * MB])?;
                let place = self.block_file(&mut ops)?.place;
                let mut children = Vec::new();
                for (child, file) in [("x", "f0"), ("y", "f1")] {
                    let cg: Cg = format!("{parent}/{child}").parse().expect("valid");
                    self.made_cgroup(&cg);
                    ops.push(Op::Mkdir(cg.clone()));
                    let file = FilePath {
                        place: place.clone(),
                        name: n(file),
                    };
                    self.made.files.push(file.clone());
                    let (spawn, task) = self.writer(&cg, &file, bytes, true)?;
                    ops.push(spawn);
                    ops.push(Op::Wait(task));
                    children.push(cg);
                }
                ops.push(Op::Rmdir(self.pick(&children)?));
                // A limit under what the children hold: the write reclaims
                // until the parent fits, then a proactive reclaim walks
                // again.
                ops.push(Op::MemoryMax(CgLimit {
                    cg: parent.clone(),
                    value: Limit::Bytes(Size(bytes)),
                }));
                ops.push(Op::MemoryReclaim(Reclaim {
                    cg: parent,
                    bytes: Size(bytes / 2),
                }));
            }
            Recipe::DirtyThrottle => {
                let cg = self.memcg(&mut ops, &[Ctrl::Memory, Ctrl::Io])?;
                // The memcg's dirty limit is a fifth of what it may use
                // (vm.dirty_ratio), its free run three quarters of that:
                // about 5M under 32M, 10M under 64M. These writes pass it
                // where writeback is slower than the writer; on a debug
                // kernel under TCG 16M under 32M took 3 s, 64M under 128M
                // 13 s.
                let (limit, bytes) = self.pick(&[(32 * MB, 16 * MB), (64 * MB, 24 * MB)])?;
                ops.push(Op::MemoryMax(CgLimit {
                    cg: cg.clone(),
                    value: Limit::Bytes(Size(limit)),
                }));
                let file = self.block_file(&mut ops)?;
                let (spawn, task) = self.writer(&cg, &file, bytes, false)?;
                ops.push(spawn);
                ops.push(Op::Wait(task));
            }
        }
        Ok(ops.into_iter().map(OpSpec::from).collect())
    }

    /// A top-level memcg, with `ctrls` turned on for the children of `/`
    /// first.
    fn memcg(&mut self, ops: &mut Vec<Op>, ctrls: &[Ctrl]) -> Result<Cg> {
        ops.push(Op::SubtreeControl(SubtreeChange {
            cg: Cg::root(Hier::V2),
            change: ctrls
                .iter()
                .map(|&ctrl| CtrlChange { enable: true, ctrl })
                .collect(),
        }));
        let cg: Cg = self.pick(TOP)?.parse().expect("valid");
        self.made_cgroup(&cg);
        ops.push(Op::Mkdir(cg.clone()));
        Ok(cg)
    }

    /// A file on a block filesystem: on one an earlier recipe mounted,
    /// mostly, or on a scratch disk made and mounted now.
    fn block_file(&mut self, ops: &mut Vec<Op>) -> Result<FilePath> {
        let earlier = self.made.block.clone();
        let place = if !earlier.is_empty() && self.u.ratio(3, 4)? {
            self.pick(&earlier)?
        } else {
            let place: Name = n(self.pick(&["m0", "m1"])?);
            let dev = Dev {
                kind: DevKind::Scratch,
                index: self.u.int_in_range(0..=1)?,
            };
            let fs = self.pick(BlockFs::ALL)?;
            ops.push(Op::Mkfs(MkfsArgs { dev, fs }));
            ops.push(Op::Mount(MountArgs {
                at: place.clone(),
                fs: match fs {
                    BlockFs::Ext4 => FsType::Ext4,
                    BlockFs::Xfs => FsType::Xfs,
                },
                dev: Some(dev),
                opts: Vec::new(),
            }));
            self.made.formatted.push(dev);
            self.made.mounted.push(place.clone());
            self.made.block.push(place.clone());
            place
        };
        let file = FilePath {
            place,
            name: n(self.pick(FILES)?),
        };
        self.made.files.push(file.clone());
        Ok(file)
    }

    /// A spawn of a buffered writer in `cg` that writes `file` (1M in
    /// 64K blocks), truncates it and writes it again until killed, and its
    /// task's name.
    fn endless_writer(&mut self, cg: &Cg, file: &FilePath) -> Result<(Op, Name)> {
        self.spawn_writer(cg, file, MB, 64 << 10, false, true)
    }

    /// A spawn of a buffered writer of `bytes` to `file` in `cg` that ends
    /// by itself (fsyncing at the end with `fsync`), and its task's name.
    fn writer(&mut self, cg: &Cg, file: &FilePath, bytes: u64, fsync: bool) -> Result<(Op, Name)> {
        self.spawn_writer(cg, file, bytes, MB, fsync, false)
    }

    /// A writer's spawn, its task named among those that end by themselves
    /// or those that never do, as `looped` says (a `wait` is only ever
    /// made for the former).
    fn spawn_writer(
        &mut self,
        cg: &Cg,
        file: &FilePath,
        bytes: u64,
        bs: u64,
        fsync: bool,
        looped: bool,
    ) -> Result<(Op, Name)> {
        let task = n(self.pick(if looped { &ENDLESS } else { &ENDING })?);
        self.made_task(&task, !looped);
        let spawn = Op::Spawn(Spawn {
            task: task.clone(),
            cg: Some(cg.clone()),
            kind: TaskKind::Writer(WriterArgs {
                file: file.clone(),
                bytes: Size(bytes),
                bs: Size(bs),
                mode: IoMode::Buffered,
                fsync,
                looped,
            }),
        });
        Ok((spawn, task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{predict, Target};
    use crate::outcome::Outcome;

    fn alone(which: Recipe, seed: u8) -> Program {
        let bytes: Vec<u8> = (0..512u32)
            .map(|i| (i as u8).wrapping_mul(seed | 1) ^ seed)
            .collect();
        let mut p = which.program(0);
        p.lanes[0].ops =
            cook_alone(which, &mut Unstructured::new(&bytes), None).expect("enough bytes");
        p
    }

    /// On a fresh machine every op of a recipe may succeed: it makes what
    /// its mechanism needs, in order, and names nothing it did not make.
    #[test]
    fn a_recipe_alone_can_succeed_at_every_op() {
        let t = Target::default();
        for which in Recipe::ALL {
            let firsts = std::iter::once(which.program(*FOREIGN_FSYNCS.start()));
            // Draw 0 is the first choices' program.
            for (draw, p) in firsts
                .chain((0..8).map(|seed| alone(which, seed)))
                .enumerate()
            {
                p.validate().expect("a valid program");
                let pred = predict(&p, &t).expect("one lane is predictable");
                for (id, spec) in p.lane_ops(0) {
                    let allowed = &pred.ops[&id];
                    assert!(
                        allowed.allows(Outcome::Ok),
                        "{which:?} draw {draw}: {id} {:?} cannot succeed ({allowed:?})\n{}",
                        spec.op,
                        p.to_yaml()
                    );
                }
            }
        }
    }

    /// The first choices' ForeignDirty runs as many fsyncs as it is told,
    /// in its lane, between its writer's spawn and kill.
    #[test]
    fn the_first_choices_run_the_fsyncs_asked_for() {
        for fsyncs in [3, 12] {
            let p = Recipe::ForeignDirty.program(fsyncs);
            let ops: Vec<&Op> = p.lanes[0].ops.iter().map(|s| &s.op).collect();
            let at = ops
                .iter()
                .position(|op| matches!(op, Op::Repeat(_)))
                .expect("a repeat");
            let Op::Repeat(r) = ops[at] else {
                unreachable!()
            };
            assert_eq!(r.times, Times::Count(fsyncs));
            assert!(matches!(r.ops[0].op, Op::Fsync(_)), "{:?}", r.ops);
            assert!(matches!(ops[at - 1], Op::Spawn(_)) && matches!(ops[at + 1], Op::Kill(_)));
        }
    }
}
