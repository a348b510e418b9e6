//! The op vocabulary: every operation a lane can perform, with typed arguments.
//!
//! In a program file an op is either a bare word (`sync`, `barrier`) or a map with
//! one op key and an optional `expect:` key, e.g. `{rmdir: a, expect: EBUSY}`.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{Cg, Dev, FilePath, Limit, Millis, Name, Size};
use crate::outcome::Outcomes;
use crate::words::{BlockFs, Ctrl, FsType, IoMode, MountOpt, PinVia, ReadFile};

/// A task and a cgroup: the `cgroup.procs` and `cgroup.threads` writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgTask {
    /// The task to move.
    pub task: Name,
    /// Where to.
    pub cg: Cg,
}

/// One `+ctrl` or `-ctrl` token of a `cgroup.subtree_control` write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtrlChange {
    /// `true` for `+`.
    pub enable: bool,
    /// The controller.
    pub ctrl: Ctrl,
}

/// A write to `cgroup.subtree_control`, e.g. `{cg: /, change: "+memory +io"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubtreeChange {
    /// The cgroup whose subtree_control is written.
    pub cg: Cg,
    /// The tokens, written in one `write(2)`.
    #[serde(with = "ctrl_changes")]
    pub change: Vec<CtrlChange>,
}

mod ctrl_changes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[CtrlChange], s: S) -> Result<S::Ok, S::Error> {
        let t: Vec<String> = v
            .iter()
            .map(|c| format!("{}{}", if c.enable { '+' } else { '-' }, c.ctrl))
            .collect();
        s.serialize_str(&t.join(" "))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CtrlChange>, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = Vec::new();
        for tok in s.split_whitespace() {
            let (enable, name) = match (tok.strip_prefix('+'), tok.strip_prefix('-')) {
                (Some(n), _) => (true, n),
                (_, Some(n)) => (false, n),
                _ => {
                    return Err(de::Error::custom(format!(
                        "`{tok}`: each token is +controller or -controller"
                    )))
                }
            };
            let ctrl = name.parse().map_err(de::Error::custom)?;
            out.push(CtrlChange { enable, ctrl });
        }
        if out.is_empty() || out.len() > 6 {
            return Err(de::Error::custom(
                "expected 1 to 6 tokens such as \"+memory -io\"",
            ));
        }
        Ok(out)
    }
}

/// A memory limit write (`memory.max`, `memory.high`, `memory.low`,
/// `memory.swap.max`, v1 `memory.limit_in_bytes`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgLimit {
    /// The cgroup.
    pub cg: Cg,
    /// The value written.
    pub value: Limit,
}

/// A small integer written to a cgroup file (`memory.move_charge_at_immigrate`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgValue {
    /// The cgroup.
    pub cg: Cg,
    /// The value written.
    pub value: u8,
}

/// A `memory.reclaim` write.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reclaim {
    /// The cgroup.
    pub cg: Cg,
    /// How much to reclaim.
    pub bytes: Size,
}

/// An `io.max` write: `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoMax {
    /// The cgroup.
    pub cg: Cg,
    /// The device the limit applies to.
    pub dev: Dev,
    /// Read bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbps: Option<Limit>,
    /// Write bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wbps: Option<Limit>,
    /// Read IOs per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub riops: Option<Limit>,
    /// Write IOs per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiops: Option<Limit>,
}

/// A read of a cgroup file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CgRead {
    /// The cgroup.
    pub cg: Cg,
    /// The file.
    pub file: ReadFile,
}

/// What a spawned task does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// Sleeps until killed (`sleep 1h &`).
    Sleeper,
    /// Writes a file like `dd`.
    Writer(WriterArgs),
    /// Reads a file.
    Reader(ReaderArgs),
    /// Allocates and touches memory.
    Hog(HogArgs),
}

/// A `dd`-like writer: `dd if=/dev/zero of=FILE bs=BS count=BYTES/BS`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterArgs {
    /// The file, created and truncated on each pass.
    pub file: FilePath,
    /// Bytes per pass.
    pub bytes: Size,
    /// Block size of each write.
    pub bs: Size,
    /// Buffered, O_DIRECT or O_DSYNC.
    #[serde(default = "buffered", skip_serializing_if = "is_buffered")]
    pub mode: IoMode,
    /// fsync after each pass.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fsync: bool,
    /// Repeat passes until killed (`while true; do dd ...; done`).
    #[serde(default, rename = "loop", skip_serializing_if = "is_false")]
    pub looped: bool,
}

/// A reader: reads the whole file with the block size, once or in a loop.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderArgs {
    /// The file.
    pub file: FilePath,
    /// Block size of each read.
    pub bs: Size,
    /// O_DIRECT.
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
    /// Repeat until killed.
    #[serde(default, rename = "loop", skip_serializing_if = "is_false")]
    pub looped: bool,
}

/// Memory pressure: anonymous memory, or page cache of a file when `file` is set.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HogArgs {
    /// How much memory to hold.
    pub bytes: Size,
    /// File pressure: write this file and keep reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePath>,
}

fn buffered() -> IoMode {
    IoMode::Buffered
}
fn is_buffered(m: &IoMode) -> bool {
    *m == IoMode::Buffered
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// Start a named task, optionally joining a cgroup first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SpawnRaw", into = "SpawnRaw")]
pub struct Spawn {
    /// The task's name.
    pub task: Name,
    /// The cgroup it writes itself into before it starts work (v2 or v1).
    pub cg: Option<Cg>,
    /// What it does.
    pub kind: TaskKind,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpawnRaw {
    task: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cg: Option<Cg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sleeper: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writer: Option<WriterArgs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reader: Option<ReaderArgs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hog: Option<HogArgs>,
}

/// An empty map, `{}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

impl TryFrom<SpawnRaw> for Spawn {
    type Error = String;
    fn try_from(r: SpawnRaw) -> Result<Spawn, String> {
        let kinds = [
            r.sleeper.map(|_| TaskKind::Sleeper),
            r.writer.map(TaskKind::Writer),
            r.reader.map(TaskKind::Reader),
            r.hog.map(TaskKind::Hog),
        ];
        let mut given = kinds.into_iter().flatten();
        let kind = given.next().ok_or(
            "spawn needs one of `sleeper: {}`, `writer: {..}`, `reader: {..}`, `hog: {..}`",
        )?;
        if given.next().is_some() {
            return Err("spawn takes exactly one of sleeper, writer, reader, hog".into());
        }
        Ok(Spawn {
            task: r.task,
            cg: r.cg,
            kind,
        })
    }
}

impl From<Spawn> for SpawnRaw {
    fn from(s: Spawn) -> SpawnRaw {
        let mut r = SpawnRaw {
            task: s.task,
            cg: s.cg,
            sleeper: None,
            writer: None,
            reader: None,
            hog: None,
        };
        match s.kind {
            TaskKind::Sleeper => r.sleeper = Some(Empty {}),
            TaskKind::Writer(w) => r.writer = Some(w),
            TaskKind::Reader(x) => r.reader = Some(x),
            TaskKind::Hog(h) => r.hog = Some(h),
        }
        r
    }
}

/// A `dd`-like write from the lane itself (O_CREAT|O_TRUNC, then BYTES in BS blocks).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The file.
    pub file: FilePath,
    /// How much to write.
    pub bytes: Size,
    /// Block size.
    pub bs: Size,
    /// Buffered, O_DIRECT or O_DSYNC.
    #[serde(default = "buffered", skip_serializing_if = "is_buffered")]
    pub mode: IoMode,
    /// fsync at the end.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fsync: bool,
}

/// `truncate -s SIZE FILE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruncateArgs {
    /// The file (must exist).
    pub file: FilePath,
    /// The new size.
    pub size: Size,
}

/// Create a backing file of SIZE and attach it to a loop device.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LosetupArgs {
    /// The program's name for the loop device (`loop0`…).
    pub dev: Dev,
    /// The backing file (created if missing).
    pub file: FilePath,
    /// Its size.
    pub size: Size,
}

/// `mkfs.ext4 -b 4096 -F DEV` or `mkfs.xfs -f DEV`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MkfsArgs {
    /// The device.
    pub dev: Dev,
    /// The filesystem.
    pub fs: BlockFs,
}

/// `mount -t FS [-o OPTS] DEV PLACE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountArgs {
    /// The mount point (a place name).
    pub at: Name,
    /// The filesystem type.
    pub fs: FsType,
    /// The device, for ext4 and xfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<Dev>,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opts: Vec<MountOpt>,
}

/// `mount -o remount,OPTS PLACE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemountArgs {
    /// The mount point.
    pub at: Name,
    /// The new options.
    #[serde(default)]
    pub opts: Vec<MountOpt>,
}

/// Open a file and keep the descriptor under a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenArgs {
    /// The descriptor's name.
    pub fd: Name,
    /// The file.
    pub file: FilePath,
    /// O_CREAT.
    #[serde(default, skip_serializing_if = "is_false")]
    pub create: bool,
    /// O_DIRECT.
    #[serde(default, skip_serializing_if = "is_false")]
    pub direct: bool,
}

/// `mmap(LEN, PROT_READ|PROT_WRITE, MAP_SHARED[_VALIDATE|MAP_SYNC], fd)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmapArgs {
    /// The mapping's name.
    pub map: Name,
    /// The open descriptor to map.
    pub fd: Name,
    /// The length.
    pub len: Size,
    /// MAP_SYNC (only DAX files allow it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sync: bool,
}

/// Touch every page of a mapping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TouchArgs {
    /// The mapping.
    pub map: Name,
    /// Write (dirty) rather than read.
    #[serde(default, skip_serializing_if = "is_false")]
    pub write: bool,
}

/// Take references to a mapping's pages from userspace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinArgs {
    /// The pin's name (for `release`).
    pub pin: Name,
    /// The mapping whose pages get referenced.
    pub map: Name,
    /// How.
    pub via: PinVia,
    /// The O_DIRECT peer file (not for vmsplice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePath>,
}

/// How often a `repeat` runs its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Times {
    /// A fixed count (at least 1).
    Count(u32),
    /// Until this much time has passed (at least one pass).
    For(Millis),
    /// Until the program's run duration is over (`for: run`).
    Run,
}

/// `repeat: {count: N | for: 10s | for: run, ops: [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RepeatRaw", into = "RepeatRaw")]
pub struct RepeatArgs {
    /// How often.
    pub times: Times,
    /// The body (no barriers inside).
    pub ops: Vec<OpSpec>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepeatRaw {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    ops: Vec<OpSpec>,
}

impl TryFrom<RepeatRaw> for RepeatArgs {
    type Error = String;
    fn try_from(r: RepeatRaw) -> Result<RepeatArgs, String> {
        let times = match (r.count, r.duration) {
            (Some(0), None) => return Err("repeat count must be at least 1".into()),
            (Some(n), None) => Times::Count(n),
            (None, Some(d)) if d == "run" => Times::Run,
            (None, Some(d)) => Times::For(d.parse().map_err(|e| format!("{e}"))?),
            _ => return Err("repeat takes exactly one of `count: N` or `for: 10s|run`".into()),
        };
        if r.ops.is_empty() {
            return Err("repeat needs at least one op in `ops`".into());
        }
        Ok(RepeatArgs { times, ops: r.ops })
    }
}

impl From<RepeatArgs> for RepeatRaw {
    fn from(r: RepeatArgs) -> RepeatRaw {
        let (count, duration) = match r.times {
            Times::Count(n) => (Some(n), None),
            Times::For(d) => (None, Some(d.to_string())),
            Times::Run => (None, Some("run".into())),
        };
        RepeatRaw {
            count,
            duration,
            ops: r.ops,
        }
    }
}

/// `echo N > /proc/sys/vm/drop_caches`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct DropWhat(pub u8);

impl TryFrom<u8> for DropWhat {
    type Error = String;
    fn try_from(v: u8) -> Result<DropWhat, String> {
        if (1..=3).contains(&v) {
            Ok(DropWhat(v))
        } else {
            Err(format!("drop_caches takes 1, 2 or 3, not {v}"))
        }
    }
}

impl From<DropWhat> for u8 {
    fn from(d: DropWhat) -> u8 {
        d.0
    }
}

macro_rules! ops {
    (
        units { $($(#[$um:meta])* $uv:ident = $un:literal,)* }
        args { $($(#[$am:meta])* $av:ident($at:ty) = $an:literal,)* }
    ) => {
        /// One operation.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Op {
            $($(#[$um])* $uv,)*
            $($(#[$am])* $av($at),)*
        }

        impl Op {
            /// The op's keyword in a program file.
            pub fn keyword(&self) -> &'static str {
                match self {
                    $(Op::$uv => $un,)*
                    $(Op::$av(_) => $an,)*
                }
            }

            /// Every op keyword.
            pub const KEYWORDS: &'static [&'static str] = &[$($un,)* $($an,)*];

            fn unit_from_keyword(k: &str) -> Option<Op> {
                match k { $($un => Some(Op::$uv),)* _ => None }
            }

            fn is_unit(&self) -> bool {
                matches!(self, $(Op::$uv)|*)
            }

            fn args_from_map<'de, A: MapAccess<'de>>(
                key: &str,
                map: &mut A,
            ) -> Result<Option<Op>, A::Error> {
                Ok(Some(match key {
                    $($un => { map.next_value::<Option<Empty>>()?; Op::$uv })*
                    $($an => Op::$av(map.next_value()?),)*
                    _ => return Ok(None),
                }))
            }

            fn serialize_args<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
                match self {
                    $(Op::$uv => m.serialize_entry($un, &Empty {}),)*
                    $(Op::$av(a) => m.serialize_entry($an, a),)*
                }
            }
        }
    };
}

ops! {
    units {
        /// `mount -t cgroup -o memory` at the agent's v1 place.
        V1Mount = "v1_mount",
        /// Unmount the v1 memory hierarchy.
        V1Umount = "v1_umount",
        /// `sync`.
        Sync = "sync",
        /// Wait until every lane reaches its next barrier.
        Barrier = "barrier",
    }
    args {
        /// `mkdir` a cgroup.
        Mkdir(Cg) = "mkdir",
        /// `rmdir` a cgroup.
        Rmdir(Cg) = "rmdir",
        /// Write `cgroup.subtree_control`.
        SubtreeControl(SubtreeChange) = "cgroup.subtree_control",
        /// Write a task's pid to `cgroup.procs`.
        Procs(CgTask) = "cgroup.procs",
        /// Write a task's tid to `cgroup.threads` (v2) or `tasks` (v1).
        Threads(CgTask) = "cgroup.threads",
        /// Write `memory.max`.
        MemoryMax(CgLimit) = "memory.max",
        /// Write `memory.high`.
        MemoryHigh(CgLimit) = "memory.high",
        /// Write `memory.low`.
        MemoryLow(CgLimit) = "memory.low",
        /// Write `memory.swap.max`.
        MemorySwapMax(CgLimit) = "memory.swap.max",
        /// Write `memory.reclaim`.
        MemoryReclaim(Reclaim) = "memory.reclaim",
        /// Write `io.max`.
        IoMax(IoMax) = "io.max",
        /// Write 1 to `cgroup.kill`.
        CgroupKill(Cg) = "cgroup.kill",
        /// Read a cgroup file.
        Read(CgRead) = "read",
        /// Write v1 `memory.move_charge_at_immigrate`.
        MoveCharge(CgValue) = "memory.move_charge_at_immigrate",
        /// Write v1 `memory.limit_in_bytes`.
        LimitInBytes(CgLimit) = "memory.limit_in_bytes",
        /// Write 0 to v1 `memory.force_empty`.
        ForceEmpty(Cg) = "memory.force_empty",
        /// Start a task.
        Spawn(Spawn) = "spawn",
        /// SIGKILL a task and reap it.
        Kill(Name) = "kill",
        /// Wait for a task to finish.
        Wait(Name) = "wait",
        /// Write a file from the lane.
        Write(WriteArgs) = "write",
        /// Truncate a file.
        Truncate(TruncateArgs) = "truncate",
        /// Unlink a file.
        Unlink(FilePath) = "unlink",
        /// Open, fsync and close a file.
        Fsync(FilePath) = "fsync",
        /// `syncfs` on the filesystem at a place.
        Syncfs(Name) = "syncfs",
        /// Write `/proc/sys/vm/drop_caches`.
        DropCaches(DropWhat) = "drop_caches",
        /// Attach a loop device.
        Losetup(LosetupArgs) = "losetup",
        /// Detach a loop device (LOOP_CLR_FD).
        LosetupDetach(Dev) = "losetup_detach",
        /// Make a filesystem.
        Mkfs(MkfsArgs) = "mkfs",
        /// Mount a filesystem.
        Mount(MountArgs) = "mount",
        /// `umount PLACE`.
        Umount(Name) = "umount",
        /// `umount -l PLACE` (MNT_DETACH).
        UmountLazy(Name) = "umount_lazy",
        /// Remount with new options.
        Remount(RemountArgs) = "remount",
        /// Open a file, keeping the descriptor.
        Open(OpenArgs) = "open",
        /// Close a descriptor.
        Close(Name) = "close",
        /// Map an open file.
        Mmap(MmapArgs) = "mmap",
        /// Touch a mapping's pages.
        Touch(TouchArgs) = "touch",
        /// Unmap a mapping.
        Munmap(Name) = "munmap",
        /// Take page references on a mapping.
        Pin(PinArgs) = "pin",
        /// Drop a held pin (read the pipe, reap the I/O).
        Release(Name) = "release",
        /// Sleep.
        Sleep(Millis) = "sleep",
        /// Repeat a block of ops.
        Repeat(RepeatArgs) = "repeat",
    }
}

/// An op with its optional expected result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpSpec {
    /// The op.
    pub op: Op,
    /// What the program's author expects it to return.
    pub expect: Option<Outcomes>,
}

impl From<Op> for OpSpec {
    fn from(op: Op) -> OpSpec {
        OpSpec { op, expect: None }
    }
}

impl Serialize for OpSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.op.is_unit() && self.expect.is_none() {
            return s.serialize_str(self.op.keyword());
        }
        let mut m = s.serialize_map(None)?;
        self.op.serialize_args(&mut m)?;
        if let Some(e) = &self.expect {
            m.serialize_entry("expect", e)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for OpSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OpSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an op: a word such as `sync`, or a map such as `{mkdir: a}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OpSpec, E> {
                Op::unit_from_keyword(v).map(OpSpec::from).ok_or_else(|| {
                    if Op::KEYWORDS.contains(&v) {
                        E::custom(format!("op `{v}` needs arguments: write `{v}: ...`"))
                    } else {
                        E::custom(unknown_op(v))
                    }
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OpSpec, A::Error> {
                let mut op = None;
                let mut expect = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "expect" {
                        if expect.is_some() {
                            return Err(de::Error::custom("`expect` given twice"));
                        }
                        expect = Some(map.next_value::<Outcomes>()?);
                        continue;
                    }
                    if op.is_some() {
                        return Err(de::Error::custom(format!(
                            "`{key}`: one op per list item (start a new `- ` item)"
                        )));
                    }
                    match Op::args_from_map(&key, &mut map)? {
                        Some(o) => op = Some(o),
                        None => return Err(de::Error::custom(unknown_op(&key))),
                    }
                }
                let op = op.ok_or_else(|| de::Error::custom("an op item with no op in it"))?;
                Ok(OpSpec { op, expect })
            }
        }
        d.deserialize_any(V)
    }
}

fn unknown_op(k: &str) -> String {
    format!(
        "unknown op `{k}`, expected one of: {}",
        Op::KEYWORDS.join(", ")
    )
}

impl Op {
    /// The op on one line, as a program writes it in flow style:
    /// `mkdir a`, `cgroup.procs {task: s, cg: a}`.
    pub fn describe(&self) -> String {
        let spec = OpSpec::from(self.clone());
        let v = yaml_serde::to_value(&spec).expect("ops always serialise");
        match v {
            yaml_serde::Value::String(s) => s,
            yaml_serde::Value::Mapping(m) => match m.into_iter().next() {
                Some((_, args)) => format!("{} {}", self.keyword(), flow(&args)),
                None => self.keyword().to_string(),
            },
            other => flow(&other),
        }
    }
}

/// A YAML value in flow style on one line.
fn flow(v: &yaml_serde::Value) -> String {
    use yaml_serde::Value;
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => {
            let parts: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Mapping(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", flow(k), flow(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Tagged(t) => flow(&t.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_tokens_with_multibyte_characters_are_errors_not_panics() {
        // Found by the program_parse fuzz target: "\u{492}emory" once split a char.
        let e = yaml_serde::from_str::<OpSpec>(
            "cgroup.subtree_control: {cg: a, change: \"\u{492}emory\"}",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("+controller or -controller"), "{e}");
        assert!(yaml_serde::from_str::<OpSpec>(
            "cgroup.subtree_control: {cg: a, change: \"+\u{e9}\"}"
        )
        .is_err());
    }

    #[test]
    fn ops_describe_themselves_on_one_line() {
        let op = |y: &str| yaml_serde::from_str::<OpSpec>(y).unwrap().op;
        assert_eq!(op("mkdir: a/b").describe(), "mkdir a/b");
        assert_eq!(op("sync").describe(), "sync");
        assert_eq!(
            op("cgroup.procs: {task: s, cg: v1:a}").describe(),
            "cgroup.procs {task: s, cg: v1:a}"
        );
        assert_eq!(
            op("repeat: {count: 2, ops: [sync, {rmdir: a}]}").describe(),
            "repeat {count: 2, ops: [sync, {rmdir: a}]}"
        );
    }
}
