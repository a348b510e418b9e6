//! Report titles: syzkaller-like one-liners naming the kind and the first
//! meaningful frame, stable across runs and kernel versions.

use std::sync::LazyLock;

use regex::Regex;

use crate::frames::{hung_anchor, is_register_line, lock_site, parse_frame, rip_frame, Skip};
use crate::header::{Form, Header};

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
                Some(trigger) => lockdep_site(lines, trigger),
                None => frames.first(None, Skip::Checker),
            };
            needs(form.title().to_owned(), frame)
        }
        Form::HungTask => needs("INFO: task hung".into(), frames.hung()),
        Form::SoftLockup => needs("BUG: soft lockup".into(), frames.stall()),
        Form::HardLockup => needs("BUG: hard lockup".into(), frames.stall()),
        Form::RcuStall => needs("INFO: rcu detected stall".into(), frames.stall()),
        Form::WorkqueueLockup => ("BUG: workqueue lockup".into(), None, false),
        Form::Sanitizer { what, func } => {
            let tool = if header.kind == crate::Kind::Kasan {
                "KASAN"
            } else {
                "KFENCE"
            };
            let access = lines.iter().find_map(|l| {
                let t = l.trim_start();
                ["Read", "Write"]
                    .into_iter()
                    .find(|a| t.starts_with(&format!("{a} of size")))
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
            let frame = func
                .as_deref()
                .filter(|f| !skip.skips(f))
                .map(str::to_owned)
                .or_else(|| frames.first(None, skip));
            let (base, frame, corrupted) = needs(base, frame);
            (base, frame, corrupted || (wants_access && access.is_none()))
        }
        Form::Ubsan { what } => needs(
            format!("UBSAN: {}", normalize(what)),
            frames.first(None, Skip::Checker),
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
        Form::Int3 => needs("int3".into(), frames.first(None, Skip::Generic)),
        Form::OtherBug { what } => {
            let base = format!("BUG: {}", normalize(what));
            (base, frames.trace_first(Skip::Generic), false)
        }
        Form::Gpf => needs(
            "general protection fault".into(),
            frames.first(None, Skip::Generic),
        ),
        Form::Panic { reason } => panic_title(reason),
    };
    let full = match frame {
        Some(f) => format!("{base} in {f}"),
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
    let corrupted = LOST_REPORT.iter().any(|p| reason.starts_with(p));
    (
        format!("kernel panic: {}", normalize(reason)),
        None,
        corrupted,
    )
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
/// first "Call Trace:", and the reliable frames of that trace.
struct Frames<'a> {
    rip: Option<&'a str>,
    trace: Vec<(&'a str, Section)>,
}

impl<'a> Frames<'a> {
    fn collect(lines: &'a [String]) -> Frames<'a> {
        let start = lines
            .iter()
            .position(|l| l.trim_start().starts_with("Call Trace:"));
        let rip = lines[..start.unwrap_or(lines.len())]
            .iter()
            .find_map(|l| rip_frame(l));
        let mut trace = Vec::new();
        if let Some(start) = start {
            let mut section = Section::Task;
            for line in &lines[start + 1..] {
                let t = line.trim();
                match t {
                    "</TASK>" => break,
                    "<TASK>" | "<EOI>" | "</IRQ>" | "</NMI>" | "</SOFTIRQ>" => {
                        section = Section::Task;
                        continue;
                    }
                    _ if t.starts_with('<') && t.ends_with('>') => {
                        section = Section::Interrupt;
                        continue;
                    }
                    _ => {}
                }
                if let Some(f) = rip_frame(t) {
                    // The interrupted context, printed inside the trace.
                    trace.push((f, section));
                } else if let Some(f) = parse_frame(t) {
                    if !f.questionable {
                        trace.push((f.func, section));
                    }
                } else if !t.starts_with("? ") && !is_register_line(t) {
                    break;
                }
            }
        }
        Frames { rip, trace }
    }

    /// The first frame that is not skipped: `head` (a function named in the
    /// header), the RIP, then the trace.
    fn first(&self, head: Option<&'a str>, skip: Skip) -> Option<String> {
        head.into_iter()
            .chain(self.rip)
            .chain(self.trace.iter().map(|&(f, _)| f))
            .find(|f| !skip.skips(f))
            .map(str::to_owned)
    }

    /// Like [`Frames::first`] but from the trace only, for reports whose RIP
    /// is the reporting code.
    fn trace_first(&self, skip: Skip) -> Option<String> {
        self.trace
            .iter()
            .map(|&(f, _)| f)
            .find(|f| !skip.skips(f))
            .map(str::to_owned)
    }

    /// A blocked task: where it waits, past the scheduler and lock slowpaths.
    fn hung(&self) -> Option<String> {
        let funcs = || self.trace.iter().map(|&(f, _)| f);
        if let Some(anchor) = funcs().find_map(hung_anchor) {
            return Some(anchor.to_owned());
        }
        funcs().find(|f| !Skip::Hung.skips(f)).map(str::to_owned)
    }

    /// A stall or lockup: the first frame outside the interrupt that noticed
    /// it, past the spinning primitives (the caller that waits for a lock).
    fn stall(&self) -> Option<String> {
        let task = self
            .trace
            .iter()
            .filter(|&&(_, s)| s == Section::Task)
            .map(|&(f, _)| f);
        self.rip
            .into_iter()
            .chain(task)
            .find(|f| !Skip::Stall.skips(f))
            .map(str::to_owned)
    }
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
