//! The generator: any byte string becomes a valid, bounded program.
//!
//! `Program` implements [`arbitrary::Arbitrary`]. Choices lean towards
//! resources the program has already made (cgroups created, tasks spawned,
//! files written, filesystems mounted), so generated programs reach deep
//! states instead of collecting ENOENTs. Programs that would wedge a correct
//! kernel by construction are not generated: no `wait` on a task that never
//! ends, and page references taken in a lane are released before that lane
//! truncates, unmounts or reaches its next barrier.

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::names::{Cg, Dev, DevKind, FilePath, Limit, Millis, Name, Size};
use crate::op::*;
use crate::program::{Lane, Program};
use crate::words::{BlockFs, Ctrl, FsType, IoMode, MountOpt, PinVia, ReadFile};

mod recipe;
pub use recipe::{Recipe, FOREIGN_FSYNCS, RECIPE_ODDS};

/// Most lanes a generated program has.
pub const GEN_LANES: usize = 4;
/// Most ops of the other lanes' segments in a step with a recipe.
pub const RACING_OPS: usize = 2;
/// Most barrier-separated steps.
pub const GEN_STEPS: usize = 3;
/// Most ops per lane per step (a repeat counts with its body), but for a
/// mechanism recipe's segment ([`Recipe`]), which is as long as it needs.
pub const GEN_OPS: usize = 5;

const V2: &[&str] = &["a", "b", "c", "a/x", "a/y", "b/x"];
const V1: &[&str] = &["v1:a", "v1:b", "v1:a/x"];
const PLACES: &[&str] = &["m0", "m1", "tmp"];
const FILES: &[&str] = &["f0", "f1", "big"];
const TASKS: &[&str] = &["t0", "t1", "t2", "t3"];
/// Names of tasks that never end by themselves (sleepers, hogs, loops).
const ENDLESS: [&str; 2] = ["t0", "t1"];
/// Names of tasks that end by themselves (the only ones `wait` is made for).
const ENDING: [&str; 2] = ["t2", "t3"];
const SIZES: &[u64] = &[4 << 10, 64 << 10, 1 << 20, 8 << 20, 32 << 20, 64 << 20];
/// The most blocks an `O_DSYNC` write is given: each is a journal commit,
/// and 16,384 of them (64M in 4K blocks, on ext4, 6.12 debug kernel, TCG)
/// ran for minutes, past the watchdog's limit and the host's patience.
const SYNC_WRITES: u64 = 512;
const LIMITS: &[u64] = &[8 << 20, 32 << 20, 128 << 20, 512 << 20];

fn n(s: &str) -> Name {
    s.parse().expect("generator names are valid")
}

/// What earlier ops of the program made, to pick from.
#[derive(Default)]
struct Made {
    cgroups: Vec<Cg>,
    tasks: Vec<(Name, bool)>,
    files: Vec<FilePath>,
    mounted: Vec<Name>,
    fds: Vec<Name>,
    maps: Vec<Name>,
    formatted: Vec<Dev>,
    /// Places a recipe mounted a block filesystem at.
    block: Vec<Name>,
    next: u32,
}

/// The families of ops the generator draws from. An unthemed op's family
/// is one of ten draws: two each for cgroups and tasks, one for the rest
/// (the v1 draw makes a `v1_mount`/`v1_umount` one time in six, a cgroup
/// op otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// mkdir, rmdir, subtree_control, cgroup.procs, cgroup.threads.
    Cgroup,
    /// The cgroup files written with a value: limits, reclaim, io.max,
    /// kill, reads, the v1 knobs.
    Knob,
    /// spawn, kill, wait.
    Task,
    /// write, truncate, unlink, fsync.
    File,
    /// mkfs, mount, umount, remount, loop devices.
    Mount,
    /// open, mmap, touch, pin, release, munmap, close.
    Dax,
    /// sync, syncfs, drop_caches, sleep.
    Misc,
    /// Mounting and unmounting the v1 memory hierarchy.
    V1,
}

impl Family {
    /// Every family, in the order of a [`Bias`]'s weights (`family as
    /// usize` is its index).
    pub const ALL: [Family; 8] = [
        Family::Cgroup,
        Family::Knob,
        Family::Task,
        Family::File,
        Family::Mount,
        Family::Dax,
        Family::Misc,
        Family::V1,
    ];

    /// A short name, for summaries.
    pub fn name(self) -> &'static str {
        match self {
            Family::Cgroup => "cgroup",
            Family::Knob => "knob",
            Family::Task => "task",
            Family::File => "file",
            Family::Mount => "mount",
            Family::Dax => "dax",
            Family::Misc => "misc",
            Family::V1 => "v1",
        }
    }

    /// The generator's draw (of `Gen::op`'s ten) that makes this family.
    fn draw(self) -> u8 {
        match self {
            Family::Cgroup => 0,
            Family::Knob => 2,
            Family::Task => 3,
            Family::File => 5,
            Family::Mount => 6,
            Family::Dax => 7,
            Family::Misc => 8,
            Family::V1 => 9,
        }
    }

    /// The family an op belongs to; `None` for barriers and repeats (a
    /// repeat's body ops have theirs).
    pub fn of(op: &Op) -> Option<Family> {
        Some(match op {
            Op::Barrier | Op::Repeat(_) => return None,
            Op::Mkdir(_) | Op::Rmdir(_) | Op::SubtreeControl(_) | Op::Procs(_) | Op::Threads(_) => {
                Family::Cgroup
            }
            Op::MemoryMax(_)
            | Op::MemoryHigh(_)
            | Op::MemoryLow(_)
            | Op::MemorySwapMax(_)
            | Op::MemoryReclaim(_)
            | Op::IoMax(_)
            | Op::CgroupKill(_)
            | Op::Read(_)
            | Op::MoveCharge(_)
            | Op::LimitInBytes(_)
            | Op::ForceEmpty(_) => Family::Knob,
            Op::Spawn(_) | Op::Kill(_) | Op::Wait(_) => Family::Task,
            Op::Write(_) | Op::Truncate(_) | Op::Unlink(_) | Op::Fsync(_) => Family::File,
            Op::Losetup(_)
            | Op::LosetupDetach(_)
            | Op::Mkfs(_)
            | Op::Mount(_)
            | Op::Umount(_)
            | Op::UmountLazy(_)
            | Op::Remount(_) => Family::Mount,
            Op::Open(_)
            | Op::Close(_)
            | Op::Mmap(_)
            | Op::Touch(_)
            | Op::Munmap(_)
            | Op::Pin(_)
            | Op::Release(_) => Family::Dax,
            Op::Sync | Op::Syncfs(_) | Op::DropCaches(_) | Op::Sleep(_) | Op::Sysrq(_) => {
                Family::Misc
            }
            Op::V1Mount | Op::V1Umount => Family::V1,
        })
    }
}

/// How likely each [`Family`] is, where the generator picks one (a
/// program's favourite, a themed segment's, an unthemed op's): a guided
/// campaign draws the families whose ops brought new kernel edges lately
/// more often. Weights are in [`Family::ALL`]'s order; all zero is even.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bias {
    /// Relative weights.
    pub weights: [u32; 8],
}

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    made: Made,
    /// The family most themed segments of this program take.
    favourite: u8,
    /// Weighted family draws, when set; even ones otherwise.
    bias: Option<&'b Bias>,
}

impl<'a> Gen<'a, '_> {
    fn pick<T: Clone>(&mut self, from: &[T]) -> Result<T> {
        Ok(self.u.choose(from)?.clone())
    }

    /// Mostly something made earlier; sometimes anything (to reach the errors).
    fn pick_made<T: Clone>(
        &mut self,
        made: Vec<T>,
        any: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        if !made.is_empty() && self.u.ratio(4, 5)? {
            self.pick(&made)
        } else {
            any(self)
        }
    }

    fn cg(&mut self) -> Result<Cg> {
        let made = self.made.cgroups.clone();
        self.pick_made(made, |g| {
            let all: Vec<&str> = V2.iter().chain(V1).copied().chain(["/"]).collect();
            Ok(g.pick(&all)?.parse().expect("valid"))
        })
    }

    fn v2_cg(&mut self) -> Result<Cg> {
        let made: Vec<Cg> = self
            .made
            .cgroups
            .iter()
            .filter(|c| c.hier == crate::Hier::V2)
            .cloned()
            .collect();
        self.pick_made(made, |g| Ok(g.pick(V2)?.parse().expect("valid")))
    }

    fn task(&mut self) -> Result<Name> {
        let made: Vec<Name> = self.made.tasks.iter().map(|(t, _)| t.clone()).collect();
        self.pick_made(made, |g| Ok(n(g.pick(TASKS)?)))
    }

    fn file(&mut self) -> Result<FilePath> {
        let made = self.made.files.clone();
        self.pick_made(made, |g| {
            let place = {
                let mounted = g.made.mounted.clone();
                g.pick_made(mounted, |g| Ok(n(g.pick(PLACES)?)))?
            };
            Ok(FilePath {
                place,
                name: n(g.pick(FILES)?),
            })
        })
    }

    fn size(&mut self) -> Result<Size> {
        Ok(Size(self.pick(SIZES)?))
    }

    /// A write's size, block size and mode. An `O_DSYNC` write commits
    /// every block: its size is at most [`SYNC_WRITES`] blocks.
    fn io(&mut self) -> Result<(Size, Size, IoMode)> {
        let bytes = self.size()?.0;
        let bs = self.pick(&[4096u64, 65536, 1 << 20])?;
        let mode = self.pick(IoMode::ALL)?;
        let bytes = match mode {
            IoMode::Dsync => bytes.min(bs * SYNC_WRITES),
            _ => bytes,
        };
        Ok((Size(bytes), Size(bs), mode))
    }

    fn limit(&mut self) -> Result<Limit> {
        Ok(if self.u.ratio(1, 4)? {
            Limit::Max
        } else {
            Limit::Bytes(Size(self.pick(LIMITS)?))
        })
    }

    fn dev(&mut self) -> Result<Dev> {
        let made = self.made.formatted.clone();
        self.pick_made(made, |g| {
            let kind = g.pick(&[DevKind::Scratch, DevKind::Pmem, DevKind::Loop])?;
            Ok(Dev {
                kind,
                index: g.u.int_in_range(0..=1)?,
            })
        })
    }

    /// Remembers a cgroup the program makes (once).
    fn made_cgroup(&mut self, cg: &Cg) {
        if !self.made.cgroups.contains(cg) {
            self.made.cgroups.push(cg.clone());
        }
    }

    /// Remembers a task the program spawns, and whether it ends by itself
    /// (a later spawn of the same name replaces it).
    fn made_task(&mut self, task: &Name, ends: bool) {
        self.made.tasks.retain(|(t, _)| t != task);
        self.made.tasks.push((task.clone(), ends));
    }

    fn fresh(&mut self, prefix: &str) -> Name {
        self.made.next += 1;
        n(&format!("{prefix}{}", self.made.next))
    }

    /// A family's draw, weighted by the bias; `None` without one.
    fn biased(&mut self) -> Result<Option<u8>> {
        let Some(bias) = self.bias else {
            return Ok(None);
        };
        let total: u64 = bias.weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return Ok(Some(self.u.choose(&Family::ALL)?.draw()));
        }
        let mut r = self.u.int_in_range(0..=total - 1)?;
        for (f, w) in Family::ALL.iter().zip(bias.weights) {
            if r < u64::from(w) {
                return Ok(Some(f.draw()));
            }
            r -= u64::from(w);
        }
        unreachable!("r < total")
    }

    fn op(&mut self, held: &mut Vec<Name>, theme: Option<u8>) -> Result<Op> {
        let family = match theme {
            Some(f) => f,
            None => match self.biased()? {
                Some(f) => f,
                None => self.u.int_in_range(0..=9)?,
            },
        };
        Ok(match family {
            0 | 1 => self.cgroup_op()?,
            2 => self.knob_op()?,
            3 | 4 => self.task_op()?,
            5 => self.file_op(held)?,
            6 => self.mount_op(held)?,
            7 => self.dax_op(held)?,
            8 => match self.u.int_in_range(0..=3)? {
                0 => Op::Sync,
                1 => Op::DropCaches(DropWhat(self.u.int_in_range(1..=3)?)),
                2 => Op::Sleep(Millis(self.u.int_in_range(1..=50)?)),
                _ => Op::Syncfs(n(self.pick(PLACES)?)),
            },
            _ => {
                if self.u.ratio(1, 6)? {
                    if self.u.ratio(1, 2)? {
                        Op::V1Mount
                    } else {
                        Op::V1Umount
                    }
                } else {
                    self.cgroup_op()?
                }
            }
        })
    }

    fn cgroup_op(&mut self) -> Result<Op> {
        // Make a cgroup first, mostly, so later ops have one to work on.
        let first = self.made.cgroups.is_empty() && self.u.ratio(3, 4)?;
        let kind = if first {
            0
        } else {
            self.u.int_in_range(0..=5)?
        };
        Ok(match kind {
            0 | 1 => {
                let all: Vec<&str> = V2.iter().chain(V1).copied().collect();
                let cg: Cg = self.pick(&all)?.parse().expect("valid");
                self.made_cgroup(&cg);
                Op::Mkdir(cg)
            }
            2 => Op::Rmdir(self.cg()?),
            3 => {
                let cg = if self.u.ratio(1, 2)? {
                    Cg::root(crate::Hier::V2)
                } else {
                    self.v2_cg()?
                };
                let k = self.u.int_in_range(1..=2)?;
                let mut change = Vec::new();
                for _ in 0..k {
                    change.push(CtrlChange {
                        enable: self.u.ratio(3, 4)?,
                        ctrl: self.pick(Ctrl::ALL)?,
                    });
                }
                Op::SubtreeControl(SubtreeChange { cg, change })
            }
            4 => Op::Procs(CgTask {
                task: self.task()?,
                cg: self.cg()?,
            }),
            _ => Op::Threads(CgTask {
                task: self.task()?,
                cg: self.cg()?,
            }),
        })
    }

    fn knob_op(&mut self) -> Result<Op> {
        let cg = self.cg()?;
        Ok(match self.u.int_in_range(0..=10)? {
            0 => Op::MemoryMax(CgLimit {
                cg,
                value: self.limit()?,
            }),
            1 => Op::MemoryHigh(CgLimit {
                cg,
                value: self.limit()?,
            }),
            2 => Op::MemoryLow(CgLimit {
                cg,
                value: self.limit()?,
            }),
            3 => Op::MemorySwapMax(CgLimit {
                cg,
                value: self.limit()?,
            }),
            4 => Op::MemoryReclaim(Reclaim {
                cg,
                bytes: self.size()?,
            }),
            5 => Op::IoMax(IoMax {
                cg,
                dev: self.dev()?,
                rbps: None,
                wbps: Some(if self.u.ratio(1, 3)? {
                    Limit::Max
                } else {
                    Limit::Bytes(Size(self.pick(&[1u64 << 20, 16 << 20])?))
                }),
                riops: None,
                wiops: None,
            }),
            6 => Op::CgroupKill(cg),
            7 => Op::Read(CgRead {
                cg,
                file: self.pick(ReadFile::ALL)?,
            }),
            8 => Op::MoveCharge(CgValue {
                cg,
                value: self.u.int_in_range(0..=4)?,
            }),
            9 => Op::LimitInBytes(CgLimit {
                cg,
                value: self.limit()?,
            }),
            _ => Op::ForceEmpty(cg),
        })
    }

    fn task_op(&mut self) -> Result<Op> {
        let ending: Vec<Name> = self
            .made
            .tasks
            .iter()
            .filter(|(_, ends)| *ends)
            .map(|(t, _)| t.clone())
            .collect();
        let first = self.made.tasks.is_empty() && self.u.ratio(3, 4)?;
        let kind = if first {
            0
        } else {
            self.u.int_in_range(0..=5)?
        };
        Ok(match kind {
            0..=2 => {
                let task = n(self.pick(TASKS)?);
                let cg = if self.u.ratio(3, 4)? {
                    Some(self.cg()?)
                } else {
                    None
                };
                let kind = match self.u.int_in_range(0..=3)? {
                    0 => TaskKind::Sleeper,
                    1 => {
                        let file = self.file()?;
                        let (bytes, bs, mode) = self.io()?;
                        TaskKind::Writer(WriterArgs {
                            file,
                            bytes,
                            bs,
                            mode,
                            fsync: self.u.arbitrary()?,
                            looped: self.u.arbitrary()?,
                        })
                    }
                    2 => TaskKind::Reader(ReaderArgs {
                        file: self.file()?,
                        bs: Size(self.pick(&[4096u64, 65536])?),
                        direct: self.u.ratio(1, 4)?,
                        looped: self.u.arbitrary()?,
                    }),
                    _ => TaskKind::Hog(HogArgs {
                        bytes: Size(self.pick(&[8u64 << 20, 32 << 20, 96 << 20])?),
                        file: if self.u.ratio(1, 3)? {
                            Some(self.file()?)
                        } else {
                            None
                        },
                    }),
                };
                let ends = match &kind {
                    TaskKind::Writer(w) => !w.looped,
                    TaskKind::Reader(r) => !r.looped,
                    _ => false,
                };
                // Tasks that end by themselves and those that never do get
                // disjoint names: a `wait` is only generated for the former,
                // and must never meet a sleeper of the same name that another
                // lane (or an earlier spawn whose name a later, failing spawn
                // reuses) left running: that program would hang by
                // construction (seen while fuzzing).
                let slot = TASKS.iter().position(|t| *t == task.as_str()).unwrap_or(0) % 2;
                let task = n(if ends { ENDING[slot] } else { ENDLESS[slot] });
                if let TaskKind::Writer(w) = &kind {
                    self.made.files.push(w.file.clone());
                }
                self.made_task(&task, ends);
                Op::Spawn(Spawn { task, cg, kind })
            }
            3 | 4 => Op::Kill(self.task()?),
            _ if !ending.is_empty() => Op::Wait(self.pick(&ending)?),
            _ => Op::Kill(self.task()?),
        })
    }

    fn file_op(&mut self, held: &[Name]) -> Result<Op> {
        let file = self.file()?;
        Ok(match self.u.int_in_range(0..=4)? {
            0 | 1 => {
                self.made.files.push(file.clone());
                let (bytes, bs, mode) = self.io()?;
                Op::Write(WriteArgs {
                    file,
                    bytes,
                    bs,
                    mode,
                    fsync: self.u.arbitrary()?,
                })
            }
            2 if held.is_empty() => Op::Truncate(TruncateArgs {
                file,
                size: Size(self.pick(&[0u64, 4096, 1 << 20])?),
            }),
            3 if held.is_empty() => Op::Unlink(file),
            _ => Op::Fsync(file),
        })
    }

    fn mount_op(&mut self, held: &[Name]) -> Result<Op> {
        let place = n(self.pick(&PLACES[..2])?);
        Ok(match self.u.int_in_range(0..=6)? {
            0 => {
                let dev = self.dev()?;
                self.made.formatted.push(dev);
                Op::Mkfs(MkfsArgs {
                    dev,
                    fs: self.pick(BlockFs::ALL)?,
                })
            }
            1 | 2 => {
                let fs = self.pick(FsType::ALL)?;
                let dev = if fs.needs_device() {
                    Some(self.dev()?)
                } else {
                    None
                };
                let mut opts = Vec::new();
                if self.u.ratio(1, 2)? {
                    opts.push(self.pick(MountOpt::ALL)?);
                }
                self.made.mounted.push(place.clone());
                Op::Mount(MountArgs {
                    at: place,
                    fs,
                    dev,
                    opts,
                })
            }
            3 if held.is_empty() => Op::Umount(place),
            4 if held.is_empty() => Op::UmountLazy(place),
            5 => Op::Remount(RemountArgs {
                at: place,
                opts: vec![self.pick(&[MountOpt::Ro, MountOpt::Rw, MountOpt::Lazytime])?],
            }),
            _ => {
                let dev = Dev {
                    kind: DevKind::Loop,
                    index: self.u.int_in_range(0..=1)?,
                };
                if self.u.ratio(2, 3)? {
                    let name = self.fresh("img");
                    Op::Losetup(LosetupArgs {
                        dev,
                        file: FilePath {
                            place: n("tmp"),
                            name,
                        },
                        size: Size(64 << 20),
                    })
                } else {
                    Op::LosetupDetach(dev)
                }
            }
        })
    }

    fn dax_op(&mut self, held: &mut Vec<Name>) -> Result<Op> {
        let fds = self.made.fds.clone();
        let maps = self.made.maps.clone();
        // An op that needs a mapping or a descriptor the program lacks makes
        // one instead: open, map, touch, pin, unmap, close come in order.
        let mut kind = self.u.int_in_range(0..=6)?;
        if maps.is_empty() && (2..=4).contains(&kind) {
            kind = 1;
        }
        if fds.is_empty() && (kind == 1 || kind == 5) {
            kind = 0;
        }
        Ok(match kind {
            0 => {
                let fd = self.fresh("fd");
                self.made.fds.push(fd.clone());
                Op::Open(OpenArgs {
                    fd,
                    file: self.file()?,
                    create: self.u.arbitrary()?,
                    direct: self.u.ratio(1, 4)?,
                })
            }
            1 if !fds.is_empty() => {
                let map = self.fresh("map");
                self.made.maps.push(map.clone());
                Op::Mmap(MmapArgs {
                    map,
                    fd: self.pick(&fds)?,
                    len: Size(self.pick(&[4096u64, 1 << 20, 2 << 20])?),
                    sync: self.u.ratio(1, 3)?,
                })
            }
            2 if !maps.is_empty() => Op::Touch(TouchArgs {
                map: self.pick(&maps)?,
                write: self.u.arbitrary()?,
            }),
            3 if !maps.is_empty() => {
                let pin = self.fresh("pin");
                let via = self.pick(PinVia::ALL)?;
                if via.is_held() {
                    held.push(pin.clone());
                }
                Op::Pin(PinArgs {
                    pin,
                    map: self.pick(&maps)?,
                    via,
                    file: if via.uses_peer() {
                        Some(self.file()?)
                    } else {
                        None
                    },
                })
            }
            4 if !maps.is_empty() => Op::Munmap(self.pick(&maps)?),
            5 if !fds.is_empty() => Op::Close(self.pick(&fds)?),
            _ if !held.is_empty() => Op::Release(held.remove(0)),
            _ => Op::Sync,
        })
    }

    /// One lane's ops between two barriers, at most `most`. Half the
    /// segments are themed:
    /// every op comes from one family (cgroups, knobs, tasks, files, mounts,
    /// DAX, sync and caches), mostly the program's favourite, as the lanes
    /// of a race scenario hammer one subsystem each or all the same one (the
    /// shapes of the scenarios in corpus/scenarios).
    fn segment(&mut self, held: &mut Vec<Name>, most: usize) -> Result<Vec<OpSpec>> {
        let theme = if !self.u.ratio(1, 2)? {
            None
        } else if self.u.ratio(2, 3)? {
            Some(self.favourite)
        } else {
            match self.biased()? {
                Some(f) => Some(f),
                None => Some(self.u.int_in_range(0..=8)?),
            }
        };
        let min_len = if theme.is_some() { 3.min(most) } else { 0 };
        let len = self.u.int_in_range(min_len..=most)?;
        let mut ops = Vec::new();
        while ops.len() < len {
            if self.u.ratio(1, 8)? && len - ops.len() >= 2 {
                let body_len = self.u.int_in_range(1..=(len - ops.len() - 1).min(3))?;
                let mut body = Vec::new();
                for _ in 0..body_len {
                    let op = self.op(&mut Vec::new(), theme)?;
                    // Pins taken in a loop body are released in the same pass.
                    let release = match &op {
                        Op::Pin(p) if p.via.is_held() => Some(Op::Release(p.pin.clone())),
                        _ => None,
                    };
                    body.push(op.into());
                    body.extend(release.map(OpSpec::from));
                }
                let times = if self.u.ratio(3, 4)? {
                    Times::Count(self.u.int_in_range(2..=3)?)
                } else {
                    Times::For(Millis(self.u.int_in_range(10..=300)?))
                };
                ops.push(Op::Repeat(RepeatArgs { times, ops: body }).into());
            } else {
                ops.push(self.op(held, theme)?.into());
            }
        }
        // Release what this lane still holds before its barrier.
        for pin in held.drain(..) {
            ops.push(Op::Release(pin).into());
        }
        Ok(ops)
    }
}

impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Program> {
        generate(u, None)
    }
}

/// A program from `u`'s bytes, its families drawn by `bias` when given
/// (evenly otherwise: `Program::arbitrary`).
pub fn generate(u: &mut Unstructured<'_>, bias: Option<&Bias>) -> Result<Program> {
    let nlanes = u.int_in_range(1..=GEN_LANES)?;
    let nsteps = u.int_in_range(1..=GEN_STEPS)?;
    let favourite = u.int_in_range(0..=8)?;
    let mut g = Gen {
        u,
        made: Made::default(),
        favourite,
        bias,
    };
    if let Some(f) = g.biased()? {
        g.favourite = f;
    }
    let mut lanes: Vec<Lane> = (0..nlanes)
        .map(|i| Lane {
            name: n(&format!("l{i}")),
            ops: Vec::new(),
        })
        .collect();
    for step in 0..nsteps {
        // One step in RECIPE_ODDS gives one lane a mechanism recipe; the
        // other lanes race it with short segments (the model follows every
        // interleaving, and a recipe is long).
        let recipe = if g.u.ratio(1, RECIPE_ODDS)? {
            Some(g.u.choose_index(nlanes)?)
        } else {
            None
        };
        for (i, lane) in lanes.iter_mut().enumerate() {
            let mut held = Vec::new();
            let seg = match recipe {
                Some(r) if r == i => g.recipe()?,
                Some(_) => g.segment(&mut held, RACING_OPS)?,
                None => g.segment(&mut held, GEN_OPS)?,
            };
            lane.ops.extend(seg);
            if step + 1 < nsteps {
                lane.ops.push(Op::Barrier.into());
            }
        }
    }
    Ok(Program {
        name: "generated".into(),
        description: String::new(),
        duration: None,
        lanes,
        checks: Vec::new(),
        known_findings: Vec::new(),
    })
}

/// What `p` makes, as the generator remembers it while it generates: its
/// cgroups, tasks, files, mounts (and which are block filesystems),
/// descriptors, mappings and formatted devices. Fresh names are numbered
/// from 1000 past `p`'s op count: a generated program numbers one fresh
/// name an op at most, so they do not meet its names.
fn made_by(p: &Program) -> Made {
    fn walk(ops: &[OpSpec], m: &mut Made) {
        for s in ops {
            match &s.op {
                Op::Mkdir(cg) if !m.cgroups.contains(cg) => m.cgroups.push(cg.clone()),
                Op::Spawn(sp) => {
                    let ends = match &sp.kind {
                        TaskKind::Writer(w) => {
                            m.files.push(w.file.clone());
                            !w.looped
                        }
                        TaskKind::Reader(r) => !r.looped,
                        _ => false,
                    };
                    m.tasks.retain(|(t, _)| *t != sp.task);
                    m.tasks.push((sp.task.clone(), ends));
                }
                Op::Write(w) => m.files.push(w.file.clone()),
                Op::Mkfs(a) => m.formatted.push(a.dev),
                Op::Mount(a) => {
                    m.mounted.push(a.at.clone());
                    if a.fs.block().is_some() {
                        m.block.push(a.at.clone());
                    }
                }
                Op::Open(a) => m.fds.push(a.fd.clone()),
                Op::Mmap(a) => m.maps.push(a.map.clone()),
                Op::Repeat(r) => walk(&r.ops, m),
                _ => {}
            }
            m.next += 1;
        }
    }
    let mut m = Made::default();
    for l in &p.lanes {
        walk(&l.ops, &mut m);
    }
    m.next += 1000;
    m
}

/// One op drawn as the generator draws one for a program that has made
/// what `p` makes, of `family` (the family of an op it replaces) or of any
/// family: a mutation's new op works on the parent's cgroups, files,
/// mounts and mappings, not on a stranger's.
pub fn op_in_context(p: &Program, u: &mut Unstructured<'_>, family: Option<Family>) -> Result<Op> {
    let mut g = Gen {
        u,
        made: made_by(p),
        favourite: 0,
        bias: None,
    };
    let theme = family.map(Family::draw);
    g.op(&mut Vec::new(), theme)
}

/// A program from a seed: the same seed gives the same program.
pub fn from_seed(seed: u64) -> Program {
    let mut bytes = vec![0u8; 4096];
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in bytes.iter_mut() {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *b = (z ^ (z >> 31)) as u8;
    }
    let mut p = Program::arbitrary(&mut Unstructured::new(&bytes))
        .expect("arbitrary never fails on enough bytes");
    p.name = format!("gen-{seed}");
    p
}
