//! Report titles: syzkaller-like one-liners naming the kind and the first
//! meaningful frame, stable across runs and kernel versions.

use std::sync::LazyLock;

use regex::Regex;

use crate::anchor::{hung_anchor, stall_anchor, syscall_name, Anchor};
use crate::frames::{func_token, is_register_line, lock_site, parse_frame, rip_frame};
use crate::header::{Form, Header};
use crate::skip::Skip;

/// Longest title, in characters.
pub(crate) const MAX_TITLE: usize = 120;

/// The title of a report and whether it is corrupted (a frame was needed but
/// the report ends before one is printed).
pub(crate) fn title(header: &Header, lines: &[String]) -> (String, bool) {
    let frames = Frames::collect(lines);
    let (base, frame, corrupted) = match &header.form {
        // One title on every kernel: 6.1 does not print the fs type (the
        // report text keeps it where the kernel gave it).
        Form::BusyInodes { .. } => ("VFS: Busy inodes after unmount".into(), None, false),
        Form::Dentry { fs } => (with_fs("BUG: Dentry still in use", fs), None, false),
        Form::Lockdep(form) => {
            let frame = match form.trigger() {
                Some(trigger) => lockdep_site(lines, trigger)
                    .filter(|f| !Skip::Generic.skips(f))
                    .or_else(|| frames.trace_first(Skip::Generic)),
                None => frames.first(None, Skip::Checker),
            };
            needs(form.title().to_owned(), frame)
        }
        Form::HungTask => needs("INFO: task hung".into(), frames.hung()),
        Form::TaskCantDie => needs("INFO: task can't die".into(), frames.hung()),
        // The soft-lockup watchdog prints the stack of what it interrupted,
        // a softirq that does not end included.
        Form::SoftLockup => needs("BUG: soft lockup".into(), frames.stall(true)),
        Form::HardLockup => needs("BUG: hard lockup".into(), frames.stall(false)),
        Form::RcuStall => needs("INFO: rcu detected stall".into(), frames.stall(false)),
        Form::WorkqueueLockup => ("BUG: workqueue lockup".into(), None, false),
        Form::Sanitizer { what, func } => {
            let tool = if header.kind == crate::Kind::Kasan {
                "KASAN"
            } else {
                "KFENCE"
            };
            let access = lines.iter().find_map(|l| {
                let t = l.trim_start();
                ["Read", "Write"].into_iter().find(|a| {
                    t.starts_with(&format!("{a} of size")) || t.starts_with(&format!("{a} at addr"))
                })
            });
            // KASAN prints "Read of size N" after all but (double|invalid)-free.
            let frees = what.ends_with("free") && !what.contains("use-after-free");
            let wants_access = header.kind == crate::Kind::Kasan && !frees;
            let what = normalize(what);
            let base = match access {
                Some(a) => format!("{tool}: {what} {a}"),
                None => format!("{tool}: {what}"),
            };
            let skip = if frees { Skip::Free } else { Skip::Generic };
            // Before 4.13 the header ended "at addr ADDR" and named the
            // accessing function itself, lock primitives included; lockdep's
            // hooks still name no culprit.
            let old_form = lines[0].contains(" at addr ");
            let lockdep = |f: &str| f.contains("lock_acquire") || f.contains("lockdep");
            let frame = func
                .as_deref()
                .filter(|f| (old_form && !lockdep(f)) || !skip.skips(f))
                .map(str::to_owned)
                .or_else(|| frames.first(None, skip));
            let (base, frame, corrupted) = needs(base, frame);
            (base, frame, corrupted || (wants_access && access.is_none()))
        }
        Form::Ubsan { what } => needs(
            format!("UBSAN: {}", normalize(what)),
            frames.first(None, Skip::Checker),
        ),
        Form::Kmsan { what, func } => {
            let frame = func
                .as_deref()
                .filter(|f| !Skip::Generic.skips(f))
                .map(str::to_owned)
                .or_else(|| first_after(lines, 0, Skip::Generic))
                .or_else(|| frames.first(None, Skip::Generic));
            needs(format!("KMSAN: {}", normalize(what)), frame)
        }
        Form::Kcsan { what } => (kcsan_title(what), None, false),
        Form::MemoryLeak => {
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with("backtrace"));
            let frame = at.and_then(|at| first_after(lines, at, Skip::Leak));
            needs("memory leak".into(), frame)
        }
        Form::Preemptible { what } => {
            let caller = lines.iter().find_map(|l| {
                let f = func_token(l.trim_start().strip_prefix("caller is ")?)?;
                (!Skip::Generic.skips(f)).then(|| f.to_owned())
            });
            needs(
                format!("BUG: using {what} in preemptible code"),
                caller.or_else(|| frames.trace_first(Skip::Generic)),
            )
        }
        Form::NetdevRefLeak => (
            "unregister_netdevice: waiting for DEV to become free".into(),
            None,
            false,
        ),
        Form::DoubleFault => needs(
            "PANIC: double fault".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::FileCountZero => ("VFS: Close: file count is zero".into(), None, false),
        Form::InternalError => needs("Internal error".into(), frames.first(None, Skip::Generic)),
        Form::UserAccess => needs(
            "BUG: unable to handle kernel access to user memory".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::Warning { func } => needs(
            "WARNING".into(),
            frames.first(func.as_deref(), Skip::Generic),
        ),
        Form::KernelBug => needs("kernel BUG".into(), frames.first(None, Skip::Generic)),
        Form::PageFault => needs(
            "BUG: unable to handle kernel paging request".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::NullDeref => needs(
            "BUG: kernel NULL pointer dereference".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::SleepInAtomic => needs(
            "BUG: sleeping function called from invalid context".into(),
            frames.trace_first(Skip::Sleep),
        ),
        Form::SchedulingWhileAtomic => needs(
            "BUG: scheduling while atomic".into(),
            frames.trace_first(Skip::Sleep),
        ),
        Form::InvalidOpcode => needs("invalid opcode".into(), frames.first(None, Skip::Generic)),
        Form::DivideError => needs("divide error".into(), frames.first(None, Skip::Generic)),
        Form::Int3 => needs("int3".into(), frames.first(None, Skip::Trap)),
        Form::OtherBug { what } => {
            // Where it happened is the title's frame, not part of the kind:
            // "stack guard page was hit at ADDR", "spinlock recursion on CPU#0".
            let what = what
                .split(" at ")
                .next()
                .unwrap_or(what)
                .split(" on CPU#")
                .next()
                .unwrap_or(what);
            let what = what.strip_prefix("TASK ").unwrap_or(what);
            let base = format!("BUG: {}", normalize(what));
            // A work item that returned with a lock held names itself.
            let last_function = lines.iter().find_map(|l| {
                func_token(l.trim_start().strip_prefix("last function: ")?).map(str::to_owned)
            });
            let frame = last_function.or_else(|| frames.trace_first(Skip::Generic));
            (base, frame, false)
        }
        Form::StackSegment => needs(
            "stack segment fault".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::Gpf => needs(
            "general protection fault".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::Panic { reason } if reason.starts_with("corrupted stack end detected") => {
            needs("kernel panic: corrupted stack end".into(), frames.hung())
        }
        Form::Panic { reason } => panic_title(reason),
    };
    let full = match frame {
        Some(f) => format!("{base} in {}", syscall_name(&f).unwrap_or(f)),
        None => base,
    };
    (cap(&full), corrupted)
}

/// A title that names a frame: corrupted when there is none.
fn needs(base: String, frame: Option<String>) -> (String, Option<String>, bool) {
    let corrupted = frame.is_none();
    (base, frame, corrupted)
}

fn with_fs(base: &str, fs: &Option<String>) -> String {
    match fs {
        Some(fs) => format!("{base} ({})", normalize(fs)),
        None => base.to_owned(),
    }
}

/// Panic reasons that mean the report that caused the panic was lost.
const LOST_REPORT: [&str; 6] = [
    "Fatal exception",
    "panic_on_warn set",
    "panic_on_oops",
    "hung_task: blocked tasks",
    "softlockup: hung tasks",
    "hardlockup: ",
];

fn panic_title(reason: &str) -> (String, Option<String>, bool) {
    let reason = reason.trim();
    if reason.starts_with("Attempted to kill init!") {
        return ("kernel panic: Attempted to kill init!".into(), None, false);
    }
    if let Some(rest) = reason.strip_prefix("stack-protector: Kernel stack is corrupted in: ") {
        let frame = func_token(rest).map(str::to_owned);
        return ("kernel panic: stack is corrupted".into(), frame, false);
    }
    let corrupted = LOST_REPORT.iter().any(|p| reason.starts_with(p));
    (
        format!("kernel panic: {}", normalize(reason)),
        None,
        corrupted,
    )
}

/// "KCSAN: data-race in A / B": the header's functions without offsets or
/// compiler suffixes.
fn kcsan_title(what: &str) -> String {
    let Some((race, funcs)) = what.split_once(" in ") else {
        return format!("KCSAN: {}", normalize(what));
    };
    let funcs: Vec<&str> = funcs.split(" / ").filter_map(func_token).collect();
    if funcs.is_empty() {
        return format!("KCSAN: {}", normalize(race));
    }
    format!("KCSAN: {} in {}", normalize(race), funcs.join(" / "))
}

/// The first frame not skipped in the block of frames right after line `at`
/// (KMSAN's trace after its header, kmemleak's after "backtrace:").
fn first_after(lines: &[String], at: usize, skip: Skip) -> Option<String> {
    lines
        .iter()
        .skip(at + 1)
        .skip_while(|l| l.trim().is_empty())
        .map_while(|l| parse_frame(l))
        .filter(|f| !f.questionable)
        .map(|f| f.func)
        .find(|f| !skip.skips(f))
        .map(str::to_owned)
}

/// The culprit of a lockdep report: the `at: FUNC` printed within a few lines
/// after the trigger line.
fn lockdep_site(lines: &[String], trigger: &str) -> Option<String> {
    let at = lines.iter().position(|l| l.contains(trigger))?;
    let line = &lines[at];
    let after = &line[line.find(trigger)? + trigger.len()..];
    if after.contains("at: ") {
        if let Some(f) = lock_site(after) {
            return Some(f.to_owned());
        }
    }
    lines[at + 1..]
        .iter()
        .take(6)
        .find_map(|l| lock_site(l))
        .map(str::to_owned)
}

/// Which part of a stack a frame was printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Task,
    Interrupt,
}

/// The frames a title is picked from: the faulting RIP printed before the
/// first "Call Trace:", and the reliable frames of that trace; stalls look
/// at every trace the report prints.
struct Frames<'a> {
    rip: Option<&'a str>,
    /// Every "Call Trace:" of the report, the first included.
    blocks: Vec<Block<'a>>,
}

/// One "Call Trace:" and the RIP printed since the previous one.
struct Block<'a> {
    rip: Option<&'a str>,
    trace: Vec<(&'a str, Section)>,
    /// The stack of RCU's grace-period kthread, which an RCU stall prints
    /// to show why it is starved: not the stalled CPU.
    gp_kthread: bool,
}

/// The frames of a trace whose "Call Trace:" line came just before `lines`,
/// and how many lines the trace took.
fn read_trace(lines: &[String]) -> (Vec<(&str, Section)>, usize) {
    let mut trace = Vec::new();
    let mut section = Section::Task;
    for (n, line) in lines.iter().enumerate() {
        let mut t = line.trim();
        // Old kernels print `<IRQ>  [<ffff>] func+0x1/0x2` on one line.
        if t.starts_with('<') {
            if let Some((mark, rest)) = t.split_once('>') {
                let mark = &t[..mark.len() + 1];
                if !rest.is_empty() && !mark.contains(' ') {
                    section = marker_section(mark, section);
                    t = rest.trim_start();
                }
            }
        }
        if t == "</TASK>" {
            return (trace, n + 1);
        }
        if t.starts_with('<') && t.ends_with('>') {
            section = marker_section(t, section);
            continue;
        }
        if let Some(f) = rip_frame(t) {
            // The interrupted context, printed inside the trace.
            trace.push((f, section));
        } else if let Some(f) = parse_frame(t) {
            if !f.questionable {
                trace.push((f.func, section));
                // Old kernels print no <EOI>: the interrupted task's frames
                // follow the interrupt entry.
                if f.func.ends_with("apic_timer_interrupt") {
                    section = Section::Task;
                }
            }
        } else if !t.starts_with("? ")
            && !is_register_line(t)
            && !t.starts_with('[')
            && !frames_follow(&lines[n + 1..])
        {
            return (trace, n);
        }
    }
    (trace, lines.len())
}

/// The section a `<IRQ>`-style marker starts.
fn marker_section(mark: &str, section: Section) -> Section {
    match mark {
        "<TASK>" | "<EOI>" | "</IRQ>" | "</NMI>" | "</SOFTIRQ>" => Section::Task,
        _ if mark.starts_with("</") => section,
        _ => Section::Interrupt,
    }
}

/// Whether a frame comes within the next two lines: a line of another
/// printer inside a trace does not end it.
fn frames_follow(lines: &[String]) -> bool {
    lines.iter().take(2).any(|l| parse_frame(l).is_some())
}

/// The line a trace starts after: "Call Trace:" on x86, "Call trace:" on
/// arm64, "Backtrace:" on 32-bit arm (which may follow a "Call trace:").
pub(crate) fn is_trace_start(t: &str) -> bool {
    // A line of hex without its newline may come first.
    t.starts_with("Call Trace:")
        || t.starts_with("Call trace:")
        || t.starts_with("Backtrace:")
        || t.trim_end().ends_with("Call Trace:")
}

impl<'a> Frames<'a> {
    fn collect(lines: &'a [String]) -> Frames<'a> {
        let mut blocks = Vec::new();
        let mut rip = None;
        let mut gp_kthread = false;
        let mut i = 0;
        while i < lines.len() {
            let t = lines[i].trim_start();
            i += 1;
            if !is_trace_start(t) {
                rip = rip.or_else(|| rip_frame(t));
                if t.contains("grace-period kthread stack dump")
                    || t.contains("Stack dump where RCU GP kthread last ran")
                {
                    gp_kthread = true;
                }
                continue;
            }
            let (trace, used) = read_trace(&lines[i..]);
            i += used;
            blocks.push(Block {
                rip: rip.take(),
                trace,
                gp_kthread: std::mem::take(&mut gp_kthread),
            });
        }
        let rip = match blocks.first() {
            Some(b) => b.rip,
            None => rip,
        };
        Frames { rip, blocks }
    }

    /// The reliable frames of the first trace.
    fn trace(&self) -> &[(&'a str, Section)] {
        self.blocks.first().map_or(&[], |b| &b.trace)
    }

    /// The first frame that is not skipped: `head` (a function named in the
    /// header), the RIP, then the trace.
    fn first(&self, head: Option<&'a str>, skip: Skip) -> Option<String> {
        head.into_iter()
            .chain(self.rip)
            .chain(self.trace().iter().map(|&(f, _)| f))
            .find(|f| !skip.skips(f))
            .map(str::to_owned)
    }

    /// Like [`Frames::first`] but from the trace only, for reports whose RIP
    /// is the reporting code.
    fn trace_first(&self, skip: Skip) -> Option<String> {
        self.trace()
            .iter()
            .map(|&(f, _)| f)
            .find(|f| !skip.skips(f))
            .map(str::to_owned)
    }

    /// A blocked task: where it waits, past the scheduler and lock slowpaths.
    fn hung(&self) -> Option<String> {
        let funcs = || self.trace().iter().map(|&(f, _)| f);
        if let Some(anchor) = funcs().find_map(hung_anchor) {
            return Some(anchor.to_owned());
        }
        funcs().find(|f| !Skip::Hung.skips(f)).map(str::to_owned)
    }

    /// A stall or lockup: the looping code, named by where it was entered
    /// (the caller of the first dispatcher or syscall entry up the stack),
    /// or else the first frame outside the interrupt that noticed the stall
    /// past the spinning primitives. The stack is the first trace that shows
    /// an interrupted task (an interrupt section, or a RIP, then task frames):
    /// an RCU stall may print the grace-period kthread's stack first.
    fn stall(&self, softirq: bool) -> Option<String> {
        let interrupted = |b: &&Block<'a>| {
            let task = b.trace.iter().rposition(|&(_, s)| s == Section::Task);
            let irq = b.trace.iter().position(|&(_, s)| s == Section::Interrupt);
            matches!((irq, task), (Some(i), Some(t)) if i < t)
        };
        let candidates = self
            .blocks
            .iter()
            .filter(|b| !b.gp_kthread)
            .filter(interrupted)
            .chain(self.blocks.iter().filter(|b| !b.gp_kthread))
            .chain(self.blocks.first());
        candidates.into_iter().find_map(|b| stall_frame(b, softirq))
    }
}

/// Frames of the code that noticed a stall and printed it, in an interrupt.
const STALL_DETECTORS: [&str; 9] = [
    "rcu_dump_cpu_stacks",
    "print_cpu_stall",
    "check_cpu_stall",
    "rcu_sched_clock_irq",
    "rcu_check_callbacks",
    "watchdog_timer_fn",
    "nmi_cpu_backtrace",
    "dump_cpu_task",
    "sched_show_task",
];

/// Where the loop of a stalled CPU whose stack this is was entered. The
/// interrupt part of the stack is the detector's, or, with `softirq` and
/// no detector frame in it, the stuck code itself.
fn stall_frame(block: &Block<'_>, softirq: bool) -> Option<String> {
    let detector = !softirq
        || block.trace.iter().any(|&(f, s)| {
            s == Section::Interrupt && STALL_DETECTORS.iter().any(|d| f.contains(d))
        });
    let task = block
        .trace
        .iter()
        .filter(|&&(_, s)| s == Section::Task || !detector)
        .map(|&(f, _)| f);
    let frames: Vec<&str> = block
        .rip
        .into_iter()
        .chain(task)
        .filter(|f| !Skip::Stall.skips(f))
        .collect();
    let mut prev: Option<String> = None;
    for (i, &f) in frames.iter().enumerate() {
        match stall_anchor(f) {
            Some(Anchor::Named(name)) => return Some(name),
            Some(anchor @ (Anchor::Dispatch | Anchor::Socket)) => {
                // A syscall that names itself (not ioctl, read, sendmsg...)
                // is a better name than what the socket layer under it
                // dispatched to: recvmmsg calls sock_recvmsg.
                let named = (anchor == Anchor::Socket).then(|| {
                    frames[i + 1..].iter().find_map(|f| match stall_anchor(f) {
                        Some(Anchor::Named(name)) => Some(name),
                        _ => None,
                    })
                });
                if let Some(Some(name)) = named {
                    return Some(name);
                }
                if let Some(p) = prev {
                    // A compat entry that forwards to the native one: one
                    // title for 32- and 64-bit callers.
                    let native = p.replacen("compat_", "", 1);
                    if native != p && i >= 2 && frames[i - 2] == native {
                        return Some(native);
                    }
                    return Some(p);
                }
            }
            None => prev = Some(f.to_owned()),
        }
    }
    frames.first().map(|f| (*f).to_owned())
}

static HEX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:0x[0-9a-fA-F]+|[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*|[0-9a-f]{8,})\b")
        .expect("static regex")
});
static NUM: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[0-9]+\b").expect("static regex"));
static OFFSET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[\w.-]+\])?").expect("static regex")
});

/// Makes free text from a report stable: frame offsets and module names go,
/// hex numbers become ADDR, other numbers NUM, whitespace is collapsed.
pub(crate) fn normalize(text: &str) -> String {
    let text = OFFSET.replace_all(text, "");
    let text = HEX.replace_all(&text, "ADDR");
    let text = NUM.replace_all(&text, "NUM");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts a title to [`MAX_TITLE`] characters.
fn cap(title: &str) -> String {
    title
        .chars()
        .take(MAX_TITLE)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Lockdep;

    #[test]
    fn normalizes_numbers_and_addresses() {
        assert_eq!(
            normalize("VFS: Unable to mount root fs on unknown-block(0,0)"),
            "VFS: Unable to mount root fs on unknown-block(NUM,NUM)"
        );
        assert_eq!(
            normalize("at 0xffff8880  ffff888003b49b10 deadbeef"),
            "at ADDR ADDR ADDR"
        );
        assert_eq!(normalize("ext4 sda1 CPU#1  i915"), "ext4 sda1 CPU#NUM i915");
        assert_eq!(normalize("f+0x1a/0x20 [splat] x"), "f x");
        assert_eq!(normalize("fed add"), "fed add");
    }

    #[test]
    fn kcsan_titles_name_both_functions() {
        assert_eq!(
            kcsan_title("data-race in a_b+0x1/0x2 / c.isra.0+0x3/0x4"),
            "KCSAN: data-race in a_b / c"
        );
        assert_eq!(
            kcsan_title("data-race in e1000_clean_rx_irq+0x551/0xb10"),
            "KCSAN: data-race in e1000_clean_rx_irq"
        );
    }

    #[test]
    fn stalls_name_where_the_loop_was_entered() {
        let lines: Vec<String> = [
            "watchdog: BUG: soft lockup - CPU#0 stuck for 134s! [a:1]",
            "Call Trace:",
            " <TASK>",
            " mulaw_decode+0x1/0x2",
            " snd_pcm_oss_write+0x1/0x2",
            " vfs_write+0x1/0x2",
            " ksys_write+0x1/0x2",
            " __x64_sys_write+0x1/0x2",
            " </TASK>",
        ]
        .map(String::from)
        .to_vec();
        let h = Header {
            kind: crate::Kind::SoftLockup,
            form: Form::SoftLockup,
        };
        assert_eq!(title(&h, &lines).0, "BUG: soft lockup in snd_pcm_oss_write");
        let lines: Vec<String> = [
            "watchdog: BUG: soft lockup - CPU#0 stuck for 134s! [a:1]",
            "Call Trace:",
            " d_walk+0x1/0x2",
            " do_rmdir+0x1/0x2",
            " __x64_sys_rmdir+0x1/0x2",
            " do_syscall_64+0x1/0x2",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(title(&h, &lines).0, "BUG: soft lockup in sys_rmdir");
    }

    #[test]
    fn caps_titles() {
        assert_eq!(cap(&"x".repeat(300)).len(), MAX_TITLE);
    }

    #[test]
    fn panic_reasons() {
        let (t, _, c) = panic_title("Attempted to kill init! exitcode=0x0000000b");
        assert_eq!(
            (t.as_str(), c),
            ("kernel panic: Attempted to kill init!", false)
        );
        let (t, _, c) = panic_title("Fatal exception");
        assert_eq!((t.as_str(), c), ("kernel panic: Fatal exception", true));
    }

    /// A task that exits holding a lock (the lines are lockdep.c's
    /// `print_held_locks_bug` format, 6.12; no kernel of ours has printed
    /// one yet): the title names where the lock was taken.
    #[test]
    fn still_has_locks_held_names_where_the_lock_was_taken() {
        let log = "\
[   50.100000] ====================================
[   50.100001] WARNING: kworker/1:2/91 still has locks held!
[   50.100002] 6.12.0 #1 Not tainted
[   50.100003] ------------------------------------
[   50.100004] 1 lock held by kworker/1:2/91:
[   50.100005]  #0: ffff88801e3a8d30 (&wb->list_lock){+.+.}-{3:3}, at: inode_switch_wbs_work_fn+0x1a2/0x600 fs/fs-writeback.c:501
[   50.100006] 
[   50.100007] stack backtrace:
[   50.100008] CPU: 1 PID: 91 Comm: kworker/1:2 Not tainted 6.12.0 #1
[   50.100009] Call Trace:
[   50.100010]  <TASK>
[   50.100011]  dump_stack_lvl+0x116/0x1f0
[   50.100012]  do_exit+0x1a2/0x2d00
[   50.100013]  kthread_exit+0x20/0x30
[   50.100014]  </TASK>
";
        let r = crate::parse(log);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].kind, crate::Kind::Lockdep);
        assert_eq!(
            r[0].title,
            "WARNING: still has locks held in inode_switch_wbs_work_fn"
        );
    }

    #[test]
    fn lockdep_in_the_trigger_line_or_after() {
        let lines: Vec<String> = [
            "WARNING: bad unlock balance detected!",
            "insmod/1 is trying to release lock (lock_a) at:",
            "[<ffffffffc0480228>] splat_unlock+0x5a/0x80 [splat]",
        ]
        .map(String::from)
        .to_vec();
        let h = Header {
            kind: crate::Kind::Lockdep,
            form: Form::Lockdep(Lockdep::BadUnlock),
        };
        assert_eq!(
            title(&h, &lines),
            (
                "WARNING: bad unlock balance in splat_unlock".to_owned(),
                false
            )
        );
    }
}
