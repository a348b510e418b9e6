//! The op vocabulary: every operation a lane can perform, with typed arguments.
//!
//! In a program file an op is either a bare word (`sync`, `barrier`) or a map with
//! one op key and an optional `expect:` key, e.g. `{rmdir: a, expect: EBUSY}`.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::{Cg, Dev, FilePath, Millis, Name};
use crate::outcome::Outcomes;

mod args;
pub use args::*;

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
        /// `echo KEY > /proc/sysrq-trigger`. Never generated: `c` crashes
        /// the kernel on purpose (a planted finding for minimisation tests),
        /// the others only print (`w` blocked tasks, `l` backtraces, `m`
        /// memory, `t` all tasks).
        Sysrq(SysrqKey) = "sysrq",
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
    /// Fail the N-th fault point (slab or page allocation) the op's thread
    /// reaches in the kernel (`/proc/thread-self/fail-nth`, as syzkaller
    /// does); only on ops whose failure the model can describe
    /// ([`Op::fault_injectable`]).
    pub fail_nth: Option<u32>,
}

impl From<Op> for OpSpec {
    fn from(op: Op) -> OpSpec {
        OpSpec {
            op,
            expect: None,
            fail_nth: None,
        }
    }
}

impl Serialize for OpSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.op.is_unit() && self.expect.is_none() && self.fail_nth.is_none() {
            return s.serialize_str(self.op.keyword());
        }
        let mut m = s.serialize_map(None)?;
        self.op.serialize_args(&mut m)?;
        if let Some(e) = &self.expect {
            m.serialize_entry("expect", e)?;
        }
        if let Some(n) = &self.fail_nth {
            m.serialize_entry("fail_nth", n)?;
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
                let mut fail_nth = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "fail_nth" {
                        if fail_nth.is_some() {
                            return Err(de::Error::custom("`fail_nth` given twice"));
                        }
                        let n = map.next_value::<u32>()?;
                        if n == 0 {
                            return Err(de::Error::custom(
                                "`fail_nth: 0` fails nothing: the first fault point is 1",
                            ));
                        }
                        fail_nth = Some(n);
                        continue;
                    }
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
                if fail_nth.is_some() && !op.fault_injectable() {
                    return Err(de::Error::custom(format!(
                        "`fail_nth` on `{}`: faults are injected only into ops whose failure \
                         the model can describe ({})",
                        op.keyword(),
                        Op::FAULT_INJECTABLE.join(", ")
                    )));
                }
                Ok(OpSpec {
                    op,
                    expect,
                    fail_nth,
                })
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
    /// The place an op names: where it mounts, unmounts or remounts, or
    /// the place of the file it walks a path to. The agent makes a
    /// directory for each; the model knows another lane's walk there may
    /// hold the mount.
    pub fn place(&self) -> Option<&Name> {
        use args::TaskKind;
        fn file(f: &FilePath) -> Option<&Name> {
            Some(&f.place)
        }
        match self {
            Op::Write(a) => file(&a.file),
            Op::Truncate(a) => file(&a.file),
            Op::Unlink(f) | Op::Fsync(f) => file(f),
            Op::Open(a) => file(&a.file),
            Op::Losetup(a) => file(&a.file),
            Op::Spawn(a) => match &a.kind {
                TaskKind::Writer(w) => file(&w.file),
                TaskKind::Reader(r) => file(&r.file),
                TaskKind::Hog(h) => h.file.as_ref().and_then(file),
                TaskKind::Sleeper => None,
            },
            Op::Pin(a) => a.file.as_ref().and_then(file),
            Op::Mount(a) => Some(&a.at),
            Op::Remount(a) => Some(&a.at),
            Op::Umount(p) | Op::UmountLazy(p) | Op::Syncfs(p) => Some(p),
            _ => None,
        }
    }

    /// The ops a fault may be injected into (`fail_nth`): each is one
    /// syscall or a few, whose failure the kernel undoes, so a failed one
    /// leaves the state as it was (checked at the next barrier). Not the
    /// ops whose failure may be partial (a write, a truncate, mkfs, an
    /// `open` that created its file, a spawn's fork), nor loop setup.
    pub const FAULT_INJECTABLE: &'static [&'static str] = &[
        "mkdir",
        "rmdir",
        "cgroup.subtree_control",
        "cgroup.procs",
        "cgroup.threads",
        "memory.max",
        "memory.high",
        "memory.low",
        "memory.swap.max",
        "io.max",
        "cgroup.kill",
        "v1_mount",
        "v1_umount",
        "memory.move_charge_at_immigrate",
        "mount",
        "umount",
        "umount_lazy",
        "remount",
        "mmap",
        "pin",
        "munmap",
        "release",
        "close",
        "kill",
    ];

    /// Whether `fail_nth` may be given on this op ([`Op::FAULT_INJECTABLE`]).
    pub fn fault_injectable(&self) -> bool {
        Op::FAULT_INJECTABLE.contains(&self.keyword())
    }

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

    #[test]
    fn sysrq_takes_one_allowed_key() {
        let op = |y: &str| yaml_serde::from_str::<OpSpec>(y).map(|s| s.op);
        assert_eq!(op("sysrq: c").unwrap(), Op::Sysrq(SysrqKey('c')));
        assert_eq!(op("sysrq: c").unwrap().describe(), "sysrq c");
        for bad in ["sysrq: b", "sysrq: cw", "sysrq: ''"] {
            let e = op(bad).unwrap_err().to_string();
            assert!(
                e.contains("sysrq takes one of the keys cwlmt"),
                "{bad}: {e}"
            );
        }
    }
}
