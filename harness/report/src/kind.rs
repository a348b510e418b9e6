//! The classes of kernel report cgstorm tells apart, with their stable names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The class of a kernel report.
///
/// The names (`Display`, `FromStr` and serde) are the kebab-case strings in
/// [`Kind::name`]; they appear in golden files, CLI output and crash
/// directories, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// "VFS: Busy inodes after unmount" in any historic form, or
    /// "BUG: Dentry ... still in use" at unmount.
    BusyInodes,
    /// A lockdep splat: possible deadlock, inconsistent lock state, suspicious
    /// RCU usage, bad unlock balance, held lock freed, invalid wait context,
    /// lock held when returning to user space.
    Lockdep,
    /// "INFO: task X:N blocked for more than N seconds".
    HungTask,
    /// "watchdog: BUG: soft lockup - CPU#N stuck for Ns!".
    SoftLockup,
    /// "Watchdog detected hard LOCKUP on cpu N".
    HardLockup,
    /// "rcu: INFO: rcu_preempt detected stalls" and self-detected stalls.
    RcuStall,
    /// "BUG: workqueue lockup - pool ...".
    WorkqueueLockup,
    /// "BUG: KASAN: ..." (kernel address sanitizer).
    Kasan,
    /// "BUG: KFENCE: ..." (sampling memory-safety detector).
    Kfence,
    /// "UBSAN: ..." (undefined behaviour sanitizer).
    Ubsan,
    /// "BUG: KMSAN: ..." (uninitialised memory use or leak to user space).
    Kmsan,
    /// "BUG: KCSAN: data-race in A / B" and other KCSAN reports.
    Kcsan,
    /// kmemleak's "unreferenced object ..." (or "BUG: memory leak").
    MemoryLeak,
    /// "WARNING: CPU: N PID: N at file:line func" (WARN_ON and friends).
    Warning,
    /// "kernel BUG at", page faults, NULL dereferences, sleeping in atomic
    /// context and other "BUG: ..." reports.
    Bug,
    /// "general protection fault" (kernel mode only).
    Gpf,
    /// "Kernel panic - not syncing: ..." on its own.
    Panic,
    /// The guest agent stopped answering. Never produced by the parser; it
    /// exists so the harness can file hangs under the same enum.
    AgentHang,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 18] = [
        Kind::BusyInodes,
        Kind::Lockdep,
        Kind::HungTask,
        Kind::SoftLockup,
        Kind::HardLockup,
        Kind::RcuStall,
        Kind::WorkqueueLockup,
        Kind::Kasan,
        Kind::Kfence,
        Kind::Ubsan,
        Kind::Kmsan,
        Kind::Kcsan,
        Kind::MemoryLeak,
        Kind::Warning,
        Kind::Bug,
        Kind::Gpf,
        Kind::Panic,
        Kind::AgentHang,
    ];

    /// The stable kebab-case name, e.g. `"busy-inodes"`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::BusyInodes => "busy-inodes",
            Kind::Lockdep => "lockdep",
            Kind::HungTask => "hung-task",
            Kind::SoftLockup => "soft-lockup",
            Kind::HardLockup => "hard-lockup",
            Kind::RcuStall => "rcu-stall",
            Kind::WorkqueueLockup => "workqueue-lockup",
            Kind::Kasan => "kasan",
            Kind::Kfence => "kfence",
            Kind::Ubsan => "ubsan",
            Kind::Kmsan => "kmsan",
            Kind::Kcsan => "kcsan",
            Kind::MemoryLeak => "memory-leak",
            Kind::Warning => "warning",
            Kind::Bug => "bug",
            Kind::Gpf => "gpf",
            Kind::Panic => "panic",
            Kind::AgentHang => "agent-hang",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown report kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_display_fromstr_and_serde() {
        for kind in Kind::ALL {
            assert_eq!(kind.to_string().parse::<Kind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), kind);
        }
    }

    #[test]
    fn unknown_name_is_an_error() {
        let err = "oops".parse::<Kind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown report kind \"oops\"");
    }
}
