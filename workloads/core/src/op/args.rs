//! The typed arguments of the ops.

use serde::de::{self};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::OpSpec;
use crate::names::{Cg, Dev, FilePath, Limit, Millis, Name, Size};
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
    /// The file: opened (created, truncated) once; each further pass
    /// truncates it again through the same descriptor.
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
    /// Repeat passes until killed (like `while true; do dd ...; done`, but
    /// on the file opened first, not the path).
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
pub(super) struct Empty {}

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

/// A `/proc/sysrq-trigger` key a program may press.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SysrqKey(pub char);

impl SysrqKey {
    /// The keys allowed: crash, blocked tasks, backtraces, memory, tasks.
    pub const KEYS: &'static str = "cwlmt";
}

impl TryFrom<String> for SysrqKey {
    type Error = String;
    fn try_from(v: String) -> Result<SysrqKey, String> {
        let mut chars = v.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if SysrqKey::KEYS.contains(c) => Ok(SysrqKey(c)),
            _ => Err(format!(
                "sysrq takes one of the keys {}, not `{v}`",
                SysrqKey::KEYS
            )),
        }
    }
}

impl From<SysrqKey> for String {
    fn from(k: SysrqKey) -> String {
        k.0.to_string()
    }
}
