//! Stack frames: reading them off trace lines and register dumps, and the
//! lists of frames that never name the culprit.

/// The function name at the start of `s` (`func+0x1/0x2 [mod]`,
/// `func.isra.0+0x1`, `func()`), without compiler suffixes such as `.isra.0`
/// or `.cold`, so titles do not change with the compiler.
pub(crate) fn func_token(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'))
        .unwrap_or(s.len());
    let name = &s[..end];
    let name = name.split('.').next().unwrap_or(name);
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    Some(name)
}

/// A frame in a stack-trace line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) func: &'a str,
    /// Printed with `? `: the unwinder is not sure it is on the stack.
    pub(crate) questionable: bool,
}

/// Parses a stack-trace line: `  func+0x1f/0x40 [mod]`, `  ? func+0x1/0x2`,
/// ` [<ffffffff81234567>] func+0x1/0x2`. The `+0xOFF/0xSIZE` part is required.
pub(crate) fn parse_frame(line: &str) -> Option<Frame<'_>> {
    let mut rest = line.trim_start();
    // Old x86 and other arches print raw addresses first.
    while let Some(r) = rest.strip_prefix("[<") {
        let end = r.find(">]")?;
        rest = r[end + 2..].trim_start();
    }
    let questionable = match rest.strip_prefix("? ") {
        Some(r) => {
            rest = r.trim_start();
            true
        }
        None => false,
    };
    let func = frame_at(rest)?;
    Some(Frame { func, questionable })
}

/// `func+0xOFF/0xSIZE` at the start of `s`: the function name.
pub(crate) fn frame_at(s: &str) -> Option<&str> {
    let end = s.find('+')?;
    let offsets = s[end + 1..].strip_prefix("0x")?;
    let hex = offsets.bytes().take_while(u8::is_ascii_hexdigit).count();
    if hex == 0 || !offsets[hex..].starts_with("/0x") {
        return None;
    }
    let func = func_token(&s[..end])?;
    // The name must span everything before the '+' (up to a compiler suffix).
    if s[..end].split('.').next() != Some(func) {
        return None;
    }
    Some(func)
}

/// The function in a kernel-mode `RIP: 0010:func+0x1/0x2` (or older
/// `RIP: 0010:[<ffffffff81234567>]  [<ffffffff81234567>] func+0x1/0x2`,
/// `IP: func+0x1/0x2`) line; user-mode `RIP: 0033:0x47fbe9` gives `None`.
pub(crate) fn rip_frame(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let rest = ["RIP: ", "IP: ", "NIP: ", "RIP:", "IP:"]
        .iter()
        .find_map(|p| t.strip_prefix(p))?;
    let rest = rest.trim_start();
    let rest = match rest.find(':') {
        Some(i) if rest[..i].bytes().all(|b| b.is_ascii_digit()) => &rest[i + 1..],
        _ => rest,
    };
    parse_frame(rest).map(|f| f.func)
}

/// The function after `at: ` in a lockdep line such as
/// `ffffffffc0480228 (lock_a){+.+.}-{3:3}, at: splat_abba+0x5a/0x80 [splat]`,
/// or the frame of a `[<ffffffffc0480228>] func+0x5a/0x80` line.
pub(crate) fn lock_site(line: &str) -> Option<&str> {
    if let Some(i) = line.find("at: ") {
        let after = line[i + 4..].trim_start();
        if let Some(f) = parse_frame(after) {
            return Some(f.func);
        }
    }
    parse_frame(line)
        .filter(|f| !f.questionable)
        .map(|f| f.func)
}

/// Register-dump lines printed inside and around traces.
pub(crate) fn is_register_line(t: &str) -> bool {
    let Some((name, _)) = t.split_once(':') else {
        return false;
    };
    const NAMES: [&str; 29] = [
        "RIP", "IP", "NIP", "Code", "RSP", "EFLAGS", "FS", "GS", "CS", "CR2", "DR0", "DR3", "DR6",
        "PKRU", "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R08", "R09", "R10", "R11", "R12",
        "R13", "R14", "R15",
    ];
    NAMES.contains(&name)
}

/// Frames that are the reporting machinery or generic helpers, never the
/// culprit: substrings, then names (leading underscores ignored) they start
/// with, then exact names.
struct SkipList {
    contains: &'static [&'static str],
    prefixes: &'static [&'static str],
    exact: &'static [&'static str],
}

impl SkipList {
    fn matches(&self, func: &str) -> bool {
        let bare = func.trim_start_matches('_');
        self.contains.iter().any(|p| func.contains(p))
            || self.prefixes.iter().any(|p| bare.starts_with(p))
            || self.exact.contains(&bare)
    }
}

static GENERIC: SkipList = SkipList {
    contains: &[
        "check_memory_region",
        "print_address_description",
        "print_report",
        "panic",
        "report_bug",
        "fixup_bug",
        "handle_bug",
        "do_error_trap",
        "do_trap",
        "invalid_op",
        "dump_stack",
        "show_stack",
        "warn_slowpath",
        "warn_alloc",
        "__warn",
        "debug_object",
        "lockdep",
        "lock_acquire",
        "lock_release",
        "lock_class",
        "reacquire_held_locks",
        "spin_lock",
        "spin_trylock",
        "spin_unlock",
        "raw_read_lock",
        "raw_write_lock",
        "mutex_lock",
        "mutex_trylock",
        "mutex_unlock",
        "osq_lock",
        "__wake_up",
        "refcount_",
        "memcpy",
        "memcmp",
        "memset",
        "memmove",
        "memchr",
        "strcmp",
        "strncmp",
        "strcpy",
        "strlcpy",
        "strncpy",
        "strscpy",
        "strlen",
        "strnlen",
        "strchr",
        "copy_to_user",
        "copy_from_user",
        "might_fault",
        "might_sleep",
        "might_resched",
        "list_add",
        "list_del",
        "list_replace",
        "list_move",
        "list_splice",
        "_indirect_thunk_",
        "return_thunk",
        "printk",
        "sysvec_",
        "apic_timer_interrupt",
    ],
    prefixes: &[
        "sanitizer",
        "asan",
        "kasan",
        "msan",
        "kmsan",
        "kcsan",
        "ubsan",
        "kfence",
        "exc_",
        "asm_exc_",
        "down_read",
        "down_write",
        "up_read",
        "up_write",
    ],
    exact: &["down", "up", "bug"],
};

/// For hung tasks: the blocked task's stack is all sleeping and locking
/// primitives before the function that waits.
static HUNG: SkipList = SkipList {
    contains: &[
        "schedule",
        "wait",
        "__switch_to",
        "context_switch",
        "completion",
        "slowpath",
        "rwsem",
        "rt_mutex",
        "kthread",
        "ret_from_fork",
        "synchronize_",
        "flush_work",
        "cancel_work",
        "cancel_delayed_work",
        "folio_lock",
        "lock_page",
        "msleep",
        "nanosleep",
        "refrigerator",
        "freezer",
        "do_task_dead",
        "cond_resched",
        "percpu_down",
    ],
    prefixes: &["down_", "mutex_lock_"],
    exact: &[],
};

/// For sleeping/scheduling in atomic context: the sleeping primitives.
static SLEEP: SkipList = SkipList {
    contains: &[
        "schedule",
        "msleep",
        "usleep",
        "ssleep",
        "nanosleep",
        "might_resched",
        "cond_resched",
        "wait_for",
        "wait_event",
        "wait_on",
        "__wait",
    ],
    prefixes: &[],
    exact: &[],
};

/// For stalls and lockups: the interrupt that noticed the stall.
static STALL: SkipList = SkipList {
    contains: &[
        "apic_timer_interrupt",
        "sysvec",
        "asm_",
        "irq_exit",
        "hrtimer",
        "watchdog",
        "rcu_read",
        "rcu_sched_clock_irq",
        "rcu_core",
        "rcu_do_batch",
        "rcu_pending",
        "rcu_dump",
        "cpu_stall",
        "nmi_",
        "schedule",
        "kthread",
        "ret_from_fork",
        "tick_",
        "update_process_times",
        "cpu_relax",
    ],
    prefixes: &[],
    exact: &[],
};

/// For UBSAN and suspicious RCU usage: the checker's own frames. RCU's own
/// functions start with `rcu_` (or a known RCU verb): a caller whose name only
/// contains "rcu" (`splat_rcu`, `free_css_rcu_fn`) is the culprit.
static CHECKER: SkipList = SkipList {
    contains: &["kmem", "slab", "kmalloc", "kzalloc", "vmalloc"],
    prefixes: &[
        "rcu_",
        "srcu_",
        "call_rcu",
        "kvfree_call_rcu",
        "synchronize_rcu",
    ],
    exact: &[],
};

/// For KASAN double-free/invalid-free: the freeing functions.
static FREE: SkipList = SkipList {
    contains: &[
        "kfree",
        "kmem_cache_free",
        "slab_free",
        "vfree",
        "free_large_kmalloc",
    ],
    prefixes: &["free_", "kvfree"],
    exact: &[],
};

/// Which extra frames to skip besides the generic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    Generic,
    Hung,
    Sleep,
    Stall,
    Checker,
    Free,
}

impl Skip {
    pub(crate) fn skips(self, func: &str) -> bool {
        GENERIC.matches(func)
            || match self {
                Skip::Generic => false,
                Skip::Hung => HUNG.matches(func),
                Skip::Sleep => SLEEP.matches(func),
                Skip::Stall => STALL.matches(func),
                Skip::Checker => CHECKER.matches(func),
                Skip::Free => FREE.matches(func),
            }
    }
}

/// Hung tasks blocked in these are grouped under one name, whatever called
/// them: the wait is the bug's identity, not the caller.
pub(crate) fn hung_anchor(func: &str) -> Option<&'static str> {
    const RCU: [&str; 5] = [
        "synchronize_rcu",
        "synchronize_srcu",
        "synchronize_net",
        "synchronize_sched",
        "synchronize_rcu_expedited",
    ];
    if RCU.contains(&func) {
        return Some("synchronize_rcu");
    }
    (func == "rtnl_lock").then_some("rtnl_lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames() {
        let f = parse_frame("  splat_abba+0x5a/0x80 [splat]").unwrap();
        assert_eq!((f.func, f.questionable), ("splat_abba", false));
        let f = parse_frame(" ? __pfx_lock_acquire+0x10/0x10").unwrap();
        assert_eq!((f.func, f.questionable), ("__pfx_lock_acquire", true));
        let f = parse_frame(" [<ffffffff8123>] ? evict.isra.0+0x1/0x2").unwrap();
        assert_eq!((f.func, f.questionable), ("evict", true));
        assert_eq!(parse_frame(" <TASK>"), None);
        assert_eq!(parse_frame("load_module: 0x1/0x2"), None);
        assert_eq!(parse_frame("a b+0x1/0x2"), None);
    }

    #[test]
    fn rip_lines() {
        assert_eq!(
            rip_frame("RIP: 0010:splat_init+0x2f5/0xff0 [splat]"),
            Some("splat_init")
        );
        assert_eq!(rip_frame("RIP: 0033:0x47fbe9"), None);
        assert_eq!(
            rip_frame("RIP: 0010:[<ffffffff81234567>]  [<ffffffff81234567>] f+0x1/0x2"),
            Some("f")
        );
        assert_eq!(rip_frame("IP: evict+0x1/0x2"), Some("evict"));
    }

    #[test]
    fn lockdep_sites() {
        let l = "ffffffffc0480228 (lock_a){+.+.}-{3:3}, at: splat_abba+0x5a/0x80 [splat]";
        assert_eq!(lock_site(l), Some("splat_abba"));
        assert_eq!(
            lock_site("[<ffffffffc0480228>] splat_x+0x5a/0x80 [splat]"),
            Some("splat_x")
        );
        assert_eq!(lock_site("but task is already holding lock:"), None);
    }

    #[test]
    fn skip_lists_keep_real_functions() {
        assert!(Skip::Hung.skips("__schedule"));
        assert!(Skip::Hung.skips("rwsem_down_write_slowpath"));
        assert!(Skip::Hung.skips("down_write"));
        assert!(!Skip::Hung.skips("generic_shutdown_super"));
        assert!(!Skip::Hung.skips("inode_switch_wbs_work_fn"));
        assert!(Skip::Generic.skips("__list_del_entry_valid_or_report"));
        assert!(Skip::Generic.skips("exc_page_fault"));
        assert!(!Skip::Generic.skips("shrink_slab"));
        assert!(!Skip::Generic.skips("splat_kasan_uaf"));
        assert!(Skip::Generic.skips("__kasan_check_read"));
        assert!(Skip::Generic.skips("kasan_report"));
        assert!(Skip::Sleep.skips("msleep"));
        assert!(!Skip::Sleep.skips("splat_sleep_atomic"));
        assert!(Skip::Stall.skips("asm_sysvec_apic_timer_interrupt"));
        assert!(Skip::Stall.skips("__rcu_read_unlock"));
        assert!(!Skip::Stall.skips("rcu_fn"));
        assert!(Skip::Checker.skips("lockdep_rcu_suspicious"));
        assert!(Skip::Checker.skips("rcu_read_lock_held"));
        assert!(Skip::Checker.skips("__rcu_read_lock"));
        assert!(Skip::Checker.skips("__kmalloc_noprof"));
        assert!(!Skip::Checker.skips("splat_rcu"));
        assert!(!Skip::Checker.skips("free_css_rcu_fn"));
    }

    #[test]
    fn registers() {
        assert!(is_register_line("RAX: ffffffffffffffda RBX: 0"));
        assert!(is_register_line("R10: 000000000000f0f8 R11: 0"));
        assert!(is_register_line("Code: 08 89 e8"));
        assert!(!is_register_line("rcu: INFO"));
        assert!(!is_register_line("RCU: x"));
    }
}
