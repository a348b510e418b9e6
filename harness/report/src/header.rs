//! Recognising the first line of a kernel report (its header) and what it
//! says about the report's kind and title.

use std::sync::LazyLock;

use regex::Regex;

use crate::frames::func_token;
use crate::Kind;

/// The first line of a report, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) form: Form,
}

/// What the header line says, as far as the title needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Form {
    /// "VFS: Busy inodes after unmount ..." with the fs type if printed.
    BusyInodes {
        fs: Option<String>,
    },
    /// "BUG: Dentry ... still in use (N) [unmount of FS DEV]".
    Dentry {
        fs: Option<String>,
    },
    Lockdep(Lockdep),
    HungTask,
    SoftLockup,
    HardLockup,
    RcuStall,
    WorkqueueLockup,
    /// "BUG: KASAN: TYPE in FUNC" / "BUG: KFENCE: TYPE in FUNC".
    Sanitizer {
        what: String,
        func: Option<String>,
    },
    /// "UBSAN: TYPE in FILE:LINE".
    Ubsan {
        what: String,
    },
    /// "BUG: KMSAN: TYPE in FUNC".
    Kmsan {
        what: String,
        func: Option<String>,
    },
    /// "BUG: KCSAN: data-race in A / B" (or "in A" on older kernels): the
    /// functions are the title.
    Kcsan {
        what: String,
    },
    /// kmemleak's "unreferenced object ADDR (size N):", or the "BUG: memory
    /// leak" line syzbot's kernels print before it.
    MemoryLeak,
    /// "BUG: using smp_processor_id() in preemptible [N] code: comm/pid"
    /// (or `__this_cpu_read()` and friends); "caller is FUNC" follows.
    Preemptible {
        what: String,
    },
    /// "INFO: task comm:pid can't die for more than N seconds".
    TaskCantDie,
    /// "unregister_netdevice: waiting for DEV to become free. Usage count = N".
    NetdevRefLeak,
    /// "PANIC: double fault, error_code: N".
    DoubleFault,
    /// "VFS: Close: file count is 0": an fput of a file already freed.
    FileCountZero,
    /// "stack segment: 0000 [#1]" (a #SS fault in the kernel).
    StackSegment,
    /// arm's "Internal error: Oops: N" without an "Unable to handle" line.
    InternalError,
    /// "BUG: unable to handle kernel access to user memory" and arm64's
    /// "Unable to handle kernel access to user memory outside uaccess".
    UserAccess,
    Warning {
        func: Option<String>,
    },
    KernelBug,
    PageFault,
    NullDeref,
    SleepInAtomic,
    SchedulingWhileAtomic,
    /// "invalid opcode:" without a preceding "kernel BUG at".
    InvalidOpcode,
    DivideError,
    /// "Oops: int3": a breakpoint trap no handler claimed (in a VM under
    /// TCG, seen at static-branch sites while a static key is switched).
    Int3,
    /// Any other "BUG: WHAT ...".
    OtherBug {
        what: String,
    },
    Gpf,
    Panic {
        reason: String,
    },
}

/// The lockdep report forms; each names the line after which the culprit's
/// `at: FUNC` frame is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lockdep {
    Circular,
    Recursive,
    IrqInversion,
    SafeToUnsafe,
    Inconsistent,
    SuspiciousRcu,
    BadUnlock,
    HeldLockFreed,
    InvalidWait,
    LockHeldReturning,
    NonStaticKey,
    /// "WARNING: comm/pid still has locks held!": a task exited holding
    /// locks (`debug_check_no_locks_held` in `do_exit`).
    StillHeld,
}

impl Lockdep {
    /// (phrase after the WARNING:/BUG:/INFO: prefix, form), tried in order.
    const PHRASES: [(&'static str, Lockdep); 10] = [
        (
            "possible circular locking dependency detected",
            Lockdep::Circular,
        ),
        ("possible recursive locking detected", Lockdep::Recursive),
        (
            "possible irq lock inversion dependency detected",
            Lockdep::IrqInversion,
        ),
        ("inconsistent lock state", Lockdep::Inconsistent),
        ("suspicious RCU usage", Lockdep::SuspiciousRcu),
        ("bad unlock balance detected", Lockdep::BadUnlock),
        ("held lock freed", Lockdep::HeldLockFreed),
        ("Invalid wait context", Lockdep::InvalidWait),
        (
            "lock held when returning to user space",
            Lockdep::LockHeldReturning,
        ),
        ("trying to register non-static key", Lockdep::NonStaticKey),
    ];

    /// The title before " in FUNC".
    pub(crate) fn title(self) -> &'static str {
        match self {
            Lockdep::Circular | Lockdep::Recursive | Lockdep::IrqInversion => "possible deadlock",
            Lockdep::SafeToUnsafe => "possible deadlock",
            Lockdep::Inconsistent => "inconsistent lock state",
            Lockdep::SuspiciousRcu => "WARNING: suspicious RCU usage",
            Lockdep::BadUnlock => "WARNING: bad unlock balance",
            Lockdep::HeldLockFreed => "WARNING: held lock freed",
            Lockdep::InvalidWait => "BUG: Invalid wait context",
            Lockdep::LockHeldReturning => "WARNING: lock held when returning to user space",
            Lockdep::NonStaticKey => "INFO: trying to register non-static key",
            Lockdep::StillHeld => "WARNING: still has locks held",
        }
    }

    /// The line after which the culprit frame follows; `None` when the
    /// culprit comes from the call trace instead.
    pub(crate) fn trigger(self) -> Option<&'static str> {
        match self {
            Lockdep::Circular | Lockdep::Recursive => Some("is trying to acquire lock"),
            Lockdep::SafeToUnsafe => Some("is trying to acquire"),
            Lockdep::IrqInversion => Some("just changed the state of lock"),
            Lockdep::Inconsistent => Some("takes:"),
            Lockdep::SuspiciousRcu => None,
            Lockdep::BadUnlock => Some("is trying to release lock"),
            Lockdep::HeldLockFreed => Some("is freeing memory"),
            Lockdep::InvalidWait => Some("is trying to lock"),
            Lockdep::LockHeldReturning => Some("locks still held"),
            Lockdep::NonStaticKey => None,
            // "1 lock held by comm/pid:", then the lock and where it was taken.
            Lockdep::StillHeld => Some("held by "),
        }
    }
}

static STILL_HELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\S+ still has locks held!").expect("static regex"));
static HUNG_TASK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^INFO: task .*:\d+ blocked for more than \d+ seconds").expect("static regex")
});
static TASK_CANT_DIE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^INFO: task .*:\d+ can't die for more than \d+ seconds").expect("static regex")
});
static RCU_STALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^INFO: rcu_\w+ (?:self-)?detected(?: expedited)? stalls?").expect("static regex")
});
static SAFE_UNSAFE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z_-]+-safe -> [A-Z_-]+-unsafe lock order detected").expect("static regex")
});
static WARNING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^WARNING: (?:",
        r"CPU: \d+ PID: \d+ at \S+(?: (?P<f1>\S+))?",
        r"|(?:\[.*\] )?\S+:\d+ at (?P<f2>[^,\s]+)[, ].*CPU#\d+",
        r"|at \S+ (?P<f3>\S+)",
        r")"
    ))
    .expect("static regex")
});
static UNREFERENCED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^unreferenced object 0x[0-9a-f]+ \(size \d+\):").expect("static regex")
});
static PREEMPTIBLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^BUG: using (\S+\(\)) in preemptible \[[0-9a-f]+\] code").expect("static regex")
});
/// SLUB's object checks: "BUG kmalloc-8 (Tainted: G B): Object already free".
static SLUB: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^BUG [\w.-]+ \((?:Not tainted|Tainted: [^)]*)\): (",
        r"Object already free|Poison overwritten|(?:Left |Right )?Redzone overwritten",
        r"|Freepointer corrupt|Padding overwritten|Wrong object count|Invalid object pointer",
        r")"
    ))
    .expect("static regex")
});
static FS_TYPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"after unmount of \S+ \(([^()\s]+)\)").expect("static regex"));
static DENTRY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^BUG: Dentry .*still in use \(\d+\) \[unmount of (\S+)").expect("static regex")
});

/// Every header contains one of these; most lines contain none.
const KEYWORDS: [&str; 19] = [
    "stack segment: ",
    "BUG",
    "WARNING",
    "INFO",
    "unreferenced object",
    "Unable to handle kernel",
    "Internal error",
    "PANIC: double fault",
    "unregister_netdevice: waiting",
    "VFS: Close: file count is 0",
    "can't die",
    "Busy inodes",
    "hard LOCKUP",
    "UBSAN",
    "invalid opcode",
    "divide error",
    "general protection fault",
    "Kernel panic",
    "Oops: int3",
];

/// Recognises a report header in a cleaned console message.
pub(crate) fn detect(msg: &str) -> Option<Header> {
    let m = msg.trim();
    if !KEYWORDS.iter().any(|k| m.contains(k)) {
        return None;
    }
    let (kind, form) = detect_form(m)?;
    Some(Header { kind, form })
}

fn detect_form(m: &str) -> Option<(Kind, Form)> {
    if m.starts_with("VFS: Busy inodes after unmount") {
        let fs = FS_TYPE.captures(m).map(|c| c[1].to_owned());
        return Some((Kind::BusyInodes, Form::BusyInodes { fs }));
    }
    if let Some(c) = DENTRY.captures(m) {
        let fs = Some(c[1].to_owned());
        return Some((Kind::BusyInodes, Form::Dentry { fs }));
    }
    if let Some(form) = lockdep(m) {
        return Some((Kind::Lockdep, Form::Lockdep(form)));
    }
    if HUNG_TASK.is_match(m) {
        return Some((Kind::HungTask, Form::HungTask));
    }
    if TASK_CANT_DIE.is_match(m) {
        return Some((Kind::HungTask, Form::TaskCantDie));
    }
    let watchdog = m
        .strip_prefix("watchdog: ")
        .or_else(|| m.strip_prefix("NMI watchdog: "))
        .unwrap_or(m);
    if watchdog.starts_with("BUG: soft lockup") {
        return Some((Kind::SoftLockup, Form::SoftLockup));
    }
    if watchdog.contains("Watchdog detected hard LOCKUP on cpu") {
        return Some((Kind::HardLockup, Form::HardLockup));
    }
    if RCU_STALL.is_match(m.strip_prefix("rcu: ").unwrap_or(m)) {
        return Some((Kind::RcuStall, Form::RcuStall));
    }
    if m.starts_with("BUG: workqueue lockup") {
        return Some((Kind::WorkqueueLockup, Form::WorkqueueLockup));
    }
    if let Some(rest) = m.strip_prefix("BUG: KASAN: ") {
        return Some((Kind::Kasan, sanitizer(rest)));
    }
    if let Some(rest) = m.strip_prefix("BUG: KFENCE: ") {
        return Some((Kind::Kfence, sanitizer(rest)));
    }
    if let Some(rest) = m.strip_prefix("BUG: KMSAN: ") {
        let (what, func) = what_in_func(rest);
        return Some((Kind::Kmsan, Form::Kmsan { what, func }));
    }
    if let Some(rest) = m.strip_prefix("BUG: KCSAN: ") {
        let what = rest.trim().to_owned();
        return Some((Kind::Kcsan, Form::Kcsan { what }));
    }
    if m == "BUG: memory leak" || UNREFERENCED.is_match(m) {
        return Some((Kind::MemoryLeak, Form::MemoryLeak));
    }
    if let Some(rest) = m.strip_prefix("UBSAN: ") {
        let what = rest.split(" in ").next().unwrap_or(rest).trim().to_owned();
        return Some((Kind::Ubsan, Form::Ubsan { what }));
    }
    if let Some(c) = WARNING.captures(m) {
        let func = ["f1", "f2", "f3"]
            .iter()
            .find_map(|n| c.name(n))
            .and_then(|f| func_token(f.as_str()))
            .map(str::to_owned);
        return Some((Kind::Warning, Form::Warning { func }));
    }
    if let Some(form) = bug(m) {
        return Some((Kind::Bug, form));
    }
    let oops = m.strip_prefix("Oops: ").unwrap_or(m);
    let oops = oops.strip_prefix("segment-related ").unwrap_or(oops);
    if oops.starts_with("general protection fault") {
        return Some((Kind::Gpf, Form::Gpf));
    }
    if let Some(reason) = m.strip_prefix("Kernel panic - not syncing: ") {
        let reason = reason.trim().to_owned();
        return Some((Kind::Panic, Form::Panic { reason }));
    }
    None
}

fn lockdep(m: &str) -> Option<Lockdep> {
    let rest = ["WARNING: ", "BUG: ", "INFO: ", "[ INFO: ", "[ BUG: "]
        .iter()
        .find_map(|p| m.strip_prefix(p))?;
    if SAFE_UNSAFE.is_match(rest) {
        return Some(Lockdep::SafeToUnsafe);
    }
    if STILL_HELD.is_match(rest) {
        return Some(Lockdep::StillHeld);
    }
    Lockdep::PHRASES
        .iter()
        .find(|(phrase, _)| rest.starts_with(phrase))
        .map(|&(_, form)| form)
}

fn sanitizer(rest: &str) -> Form {
    let (what, func) = what_in_func(rest);
    Form::Sanitizer { what, func }
}

/// "TYPE in FUNC+0x1/0x2" of a sanitizer header: the type and the function.
fn what_in_func(rest: &str) -> (String, Option<String>) {
    let (what, func) = match rest.split_once(" in ") {
        Some((what, after)) => (what, func_token(after).map(str::to_owned)),
        None => (rest.split_whitespace().next().unwrap_or(""), None),
    };
    (what.trim().to_owned(), func)
}

fn bug(m: &str) -> Option<Form> {
    if m.starts_with("kernel BUG at ") {
        return Some(Form::KernelBug);
    }
    if let Some(c) = PREEMPTIBLE.captures(m) {
        let what = c[1].to_owned();
        return Some(Form::Preemptible { what });
    }
    if m.starts_with("unregister_netdevice: waiting for ") && m.contains(" to become free") {
        return Some(Form::NetdevRefLeak);
    }
    if m.starts_with("PANIC: double fault") {
        return Some(Form::DoubleFault);
    }
    if m.starts_with("VFS: Close: file count is 0") {
        return Some(Form::FileCountZero);
    }
    if m.strip_prefix("Oops: ")
        .unwrap_or(m)
        .starts_with("stack segment: ")
    {
        return Some(Form::StackSegment);
    }
    if m.starts_with("Internal error: ") {
        return Some(Form::InternalError);
    }
    // arm64 and others print these without "BUG: ".
    if let Some(rest) = m.strip_prefix("Unable to handle kernel ") {
        return Some(if rest.starts_with("NULL pointer dereference") {
            Form::NullDeref
        } else if rest.starts_with("access to user memory") {
            Form::UserAccess
        } else {
            Form::PageFault
        });
    }
    let oops = m.strip_prefix("Oops: ").unwrap_or(m);
    if oops.starts_with("invalid opcode: ") {
        return Some(Form::InvalidOpcode);
    }
    if oops.starts_with("divide error: ") {
        return Some(Form::DivideError);
    }
    if m.starts_with("Oops: int3") {
        return Some(Form::Int3);
    }
    if let Some(c) = SLUB.captures(m) {
        let what = c[1].trim().to_owned();
        return Some(Form::OtherBug { what });
    }
    let rest = m.strip_prefix("BUG: ")?;
    let form = if rest.starts_with("unable to handle kernel access to user memory") {
        Form::UserAccess
    } else if rest.starts_with("unable to handle page fault")
        || rest.starts_with("unable to handle kernel paging request")
        || rest.starts_with("Unable to handle kernel data access")
        || rest.starts_with("Unable to handle kernel instruction fetch")
    {
        Form::PageFault
    } else if rest.starts_with("kernel NULL pointer dereference")
        || rest.starts_with("unable to handle kernel NULL pointer dereference")
    {
        Form::NullDeref
    } else if rest.starts_with("sleeping function called from invalid context") {
        Form::SleepInAtomic
    } else if rest.starts_with("scheduling while atomic") {
        Form::SchedulingWhileAtomic
    } else {
        let what = rest
            .split([':', ',', '!', '['])
            .next()
            .unwrap_or(rest)
            .split(" in ")
            .next()
            .unwrap_or(rest)
            .trim();
        if what.is_empty() {
            return None;
        }
        Form::OtherBug {
            what: what.to_owned(),
        }
    };
    Some(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(m: &str) -> Option<Kind> {
        detect(m).map(|h| h.kind)
    }

    #[test]
    fn recognises_every_class() {
        let cases = [
            ("VFS: Busy inodes after unmount of loop0 (ext4)", Kind::BusyInodes),
            (
                "VFS: Busy inodes after unmount of sda1. Self-destruct in 5 seconds.  Have a nice day...",
                Kind::BusyInodes,
            ),
            ("VFS: Busy inodes after unmount. Self-destruct in 5 seconds.  Have a nice day...", Kind::BusyInodes),
            (
                "BUG: Dentry ffff888012345678{i=c,n=a}  still in use (1) [unmount of ext4 loop0]",
                Kind::BusyInodes,
            ),
            ("WARNING: possible circular locking dependency detected", Kind::Lockdep),
            ("[ INFO: possible recursive locking detected ]", Kind::Lockdep),
            ("WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected", Kind::Lockdep),
            ("WARNING: inconsistent lock state", Kind::Lockdep),
            ("BUG: bad unlock balance detected!", Kind::Lockdep),
            ("[ BUG: Invalid wait context ]", Kind::Lockdep),
            ("INFO: task kworker/u4:2:123 blocked for more than 30 seconds.", Kind::HungTask),
            ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]", Kind::SoftLockup),
            ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", Kind::HardLockup),
            ("rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", Kind::RcuStall),
            ("INFO: rcu_sched self-detected stall on CPU", Kind::RcuStall),
            ("BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!", Kind::WorkqueueLockup),
            ("BUG: KASAN: slab-use-after-free in shrink_slab+0x1/0x2", Kind::Kasan),
            ("BUG: KFENCE: use-after-free read in f+0x1/0x2", Kind::Kfence),
            ("UBSAN: shift-out-of-bounds in fs/ext4/super.c:123:4", Kind::Ubsan),
            ("WARNING: CPU: 1 PID: 68 at fs/super.c:1 f+0x1/0x2", Kind::Warning),
            ("WARNING: fs/super.c:650 at generic_shutdown_super+0x1/0x2, CPU#1: umount/123", Kind::Warning),
            ("kernel BUG at mm/filemap.c:1234!", Kind::Bug),
            ("BUG: unable to handle page fault for address: ffffc90000000000", Kind::Bug),
            ("BUG: kernel NULL pointer dereference, address: 0000000000000000", Kind::Bug),
            ("BUG: sleeping function called from invalid context at mm/slab.h:1", Kind::Bug),
            ("BUG: scheduling while atomic: insmod/66/0x00000002", Kind::Bug),
            ("Oops: general protection fault, maybe for address 0x0: 0000 [#1]", Kind::Gpf),
            ("general protection fault: 0000 [#1] SMP KASAN", Kind::Gpf),
            ("Oops: int3: 0000 [#1] PREEMPT SMP KASAN NOPTI", Kind::Bug),
            ("Kernel panic - not syncing: sysrq triggered crash", Kind::Panic),
            ("BUG: KMSAN: uninit-value in prepend_path+0x4ff/0x12b0", Kind::Kmsan),
            ("BUG: KCSAN: data-race in netlink_recvmsg / netlink_recvmsg", Kind::Kcsan),
            ("BUG: memory leak", Kind::MemoryLeak),
            ("unreferenced object 0xffff88006b006340 (size 32):", Kind::MemoryLeak),
            ("INFO: trying to register non-static key.", Kind::Lockdep),
            ("BUG: using smp_processor_id() in preemptible [00000000] code: a/1", Kind::Bug),
            ("BUG: using __this_cpu_read() in preemptible [00000000] code: a/1", Kind::Bug),
            ("INFO: task syz-executor.4:21128 can't die for more than 143 seconds.", Kind::HungTask),
            ("unregister_netdevice: waiting for lo to become free. Usage count = 6", Kind::Bug),
            ("PANIC: double fault, error_code: 0x0", Kind::Bug),
            ("divide error: 0000 [#1] PREEMPT SMP KASAN", Kind::Bug),
            ("VFS: Close: file count is 0", Kind::Bug),
            ("stack segment: 0000 [#1] PREEMPT SMP KASAN PTI", Kind::Bug),
            ("Internal error: Oops: 5 [#1] PREEMPT SMP ARM", Kind::Bug),
            ("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008", Kind::Bug),
            ("Unable to handle kernel paging request at virtual address dead000000000108", Kind::Bug),
            ("BUG kmalloc-8 (Tainted: G    B         ): Object already free", Kind::Bug),
            ("segment-related general protection fault: beec [#2] PREEMPT SMP KASAN PTI", Kind::Gpf),
            (
                "WARNING: [time_after(jiffies, timeout)] io_uring/io_uring.c:3026 at io_ring_exit_work+0x44c/0xbc0, CPU#0: kworker/u8:0/10040",
                Kind::Warning,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(kind(line), Some(want), "{line}");
        }
    }

    #[test]
    fn ignores_look_alikes() {
        for line in [
            "mtrr: your CPUs had inconsistent variable MTRR settings",
            "traps: busybox[61] general protection fault ip:4a2b3c sp:7ffd error:0 in busybox[401000+9d000]",
            "traps: gdb[70] trap int3 ip:401000 sp:7ffd error:0 in gdb[401000+9d000]",
            "Memory cgroup out of memory: Killed process 80 (tail) total-vm:1kB",
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/",
            "tail: page allocation failure: order:0, mode:0x140cca(GFP_HIGHUSER_MOVABLE)",
            "ACPI Warning: SystemIO range conflicts with OpRegion",
            "WARNING: The mand mount option has been deprecated",
            "INFO: lockdep is turned off.",
            "hrtimer: interrupt took 3007532 ns",
            "rcu: RCU lockdep checking is enabled.",
            "BUG: ",
            // syzkaller's collection holds this as a clean log.
            "BUG UNIX (Not tainted): kasan: bad access detected",
            "unreferenced object count: 3",
        ] {
            assert_eq!(kind(line), None, "{line}");
        }
    }

    #[test]
    fn decodes_header_details() {
        let h = detect("BUG: KASAN: slab-use-after-free in splat_kasan_uaf+0x84/0xa0 [splat]");
        assert_eq!(
            h.unwrap().form,
            Form::Sanitizer {
                what: "slab-use-after-free".into(),
                func: Some("splat_kasan_uaf".into())
            }
        );
        let h = detect(
            "WARNING: CPU: 1 PID: 68 at samples/splat/splat.c:138 splat_init+0x12a/0xff0 [splat]",
        );
        assert_eq!(
            h.unwrap().form,
            Form::Warning {
                func: Some("splat_init".into())
            }
        );
        let h =
            detect("WARNING: fs/super.c:650 at generic_shutdown_super+0x1/0x2, CPU#1: umount/123");
        assert_eq!(
            h.unwrap().form,
            Form::Warning {
                func: Some("generic_shutdown_super".into())
            }
        );
        let h = detect("VFS: Busy inodes after unmount of loop0 (ext4)");
        assert_eq!(
            h.unwrap().form,
            Form::BusyInodes {
                fs: Some("ext4".into())
            }
        );
        let h = detect("BUG: Bad page state in process tail  pfn:1234");
        assert_eq!(
            h.unwrap().form,
            Form::OtherBug {
                what: "Bad page state".into()
            }
        );
    }
}
