//! One report being collected: which following lines belong to it and when it
//! is over.

use crate::clean::Context;
use crate::frames::{is_register_line, parse_frame};
use crate::header::{Form, Header};
use crate::{title, Kind, OpMarker, Report};

/// Most lines a report keeps; it is closed when it reaches this.
pub(crate) const MAX_REPORT_LINES: usize = 1000;
/// Most lines after the end marker (register dump, panic lines).
const MAX_TAIL_LINES: usize = 40;

/// Most lines of other printers in a row that a trace may hold.
const MAX_NOISE: usize = 2;

/// Where in its report the builder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between the header and the first "Call Trace:": everything in the
    /// reporting context belongs to the report.
    Body,
    /// In a "Call Trace:": frames, markers like `<IRQ>`, register dumps.
    Trace,
    /// After the trace: only lines that reports print after their traces
    /// (lock lists, irq event stamps, end markers) continue the report.
    AfterTrace,
    /// Until a `=====` separator (or `---[ end trace`): KASAN, KFENCE, UBSAN
    /// and lock lists.
    UntilSeparator,
    /// After `---[ end trace`: a repeated register dump and a panic may follow.
    Tail(usize),
}

/// What a line did to the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The line belongs to the report, which goes on.
    Take,
    /// The line belongs to the report, which is complete.
    TakeAndClose,
    /// The line does not belong to the report, which is complete.
    Close,
}

/// A report under construction.
#[derive(Debug, Clone)]
pub(crate) struct Builder {
    header: Header,
    pub(crate) ctx: Context,
    pub(crate) first_line: usize,
    marker: Option<OpMarker>,
    lines: Vec<String>,
    phase: Phase,
    /// After "Sending NMI from CPU": other CPUs' backtraces belong here too.
    pub(crate) all_cpus: bool,
    /// Lines of other contexts seen since this report's last line.
    pub(crate) idle: usize,
    /// Non-frame lines in a row inside the trace: without a caller field,
    /// another printer's line may land in the middle of a trace.
    noise: usize,
}

impl Builder {
    pub(crate) fn new(
        header: Header,
        ctx: Context,
        first_line: usize,
        msg: &str,
        marker: Option<OpMarker>,
    ) -> Builder {
        let phase = match header.kind {
            Kind::Kasan | Kind::Kfence | Kind::Ubsan | Kind::Kmsan | Kind::Kcsan => {
                Phase::UntilSeparator
            }
            // No stack of their own; a WARNING splat may follow (absorbed).
            Kind::BusyInodes | Kind::WorkqueueLockup => Phase::AfterTrace,
            _ => Phase::Body,
        };
        Builder {
            header,
            ctx,
            first_line,
            marker,
            lines: vec![msg.to_owned()],
            phase,
            all_cpus: false,
            idle: 0,
            noise: 0,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        self.header.kind
    }

    /// Whether the report's own stack has been printed: a line from another
    /// context then means the report is over.
    pub(crate) fn is_winding_down(&self) -> bool {
        matches!(self.phase, Phase::AfterTrace | Phase::Tail(_))
    }

    /// Takes a second header line into this report instead of starting a new
    /// one, if it is part of it: a panic or "invalid opcode" after a report,
    /// the WARNING that wraps a busy-inodes message (either order).
    pub(crate) fn absorb(&mut self, header: &Header, msg: &str) -> bool {
        let busy = |h: &Header| h.kind == Kind::BusyInodes;
        let splat = |h: &Header| matches!(h.kind, Kind::Warning | Kind::Bug);
        let absorbed = match &header.form {
            Form::Panic { .. } | Form::InvalidOpcode | Form::InternalError => true,
            // Printed every few seconds by another task while the netdev
            // waits: without caller fields it lands in other reports' traces.
            Form::NetdevRefLeak if self.phase == Phase::Trace => true,
            // syzbot's kernels print "BUG: memory leak" before kmemleak's
            // "unreferenced object".
            Form::MemoryLeak if self.header.form == Form::MemoryLeak && self.lines.len() == 1 => {
                true
            }
            _ if busy(&self.header) && splat(header) && self.lines.len() <= 4 => {
                self.phase = Phase::Body;
                true
            }
            _ if splat(&self.header) && busy(header) && self.phase == Phase::Body => {
                self.header = header.clone();
                true
            }
            _ => false,
        };
        if absorbed {
            self.lines.push(msg.to_owned());
            self.idle = 0;
        }
        absorbed
    }

    /// Decides whether a non-header line of this report's context belongs to it.
    pub(crate) fn accept(&mut self, msg: &str) -> Verdict {
        let verdict = self.verdict(msg.trim());
        if verdict != Verdict::Close {
            self.lines.push(msg.to_owned());
            self.idle = 0;
            if self.lines.len() >= MAX_REPORT_LINES {
                return Verdict::TakeAndClose;
            }
        }
        verdict
    }

    fn verdict(&mut self, t: &str) -> Verdict {
        if let Phase::Tail(n) = self.phase {
            if n >= MAX_TAIL_LINES || !is_tail_line(t) {
                return Verdict::Close;
            }
            self.phase = Phase::Tail(n + 1);
            return if t.starts_with("---[ end Kernel panic") {
                Verdict::TakeAndClose
            } else {
                Verdict::Take
            };
        }
        if t.starts_with("---[ end Kernel panic") {
            return Verdict::TakeAndClose;
        }
        if is_separator(t) && self.lines.len() >= 2 {
            return Verdict::TakeAndClose;
        }
        // UBSAN ends its reports this way since 6.5 (no `=====` any more).
        if t.starts_with("---[ end trace") {
            self.phase = Phase::Tail(0);
            return Verdict::Take;
        }
        if self.phase == Phase::UntilSeparator {
            return Verdict::Take;
        }
        if t.starts_with("Sending NMI from CPU") {
            self.all_cpus = true;
        }
        if t.starts_with("Sending NMI from CPU") || t.starts_with("NMI backtrace for cpu") {
            self.phase = Phase::Body;
            return Verdict::Take;
        }
        if self.phase == Phase::Trace {
            if t == "</TASK>" {
                self.phase = Phase::AfterTrace;
                return Verdict::Take;
            }
            if is_trace_line(t) {
                self.noise = 0;
                return Verdict::Take;
            }
            if !self.ctx.has_caller()
                && self.noise < MAX_NOISE
                && !t.is_empty()
                && !is_continuation(t)
            {
                self.noise += 1;
                return Verdict::Take;
            }
            // Kernels without <TASK> markers: the trace ends at its first
            // non-frame line.
            self.phase = Phase::AfterTrace;
        }
        if title::is_trace_start(t)
            || (self.header.kind == Kind::MemoryLeak && t.starts_with("backtrace"))
        {
            self.phase = Phase::Trace;
            return Verdict::Take;
        }
        match self.phase {
            Phase::AfterTrace if t.starts_with("Showing all locks held") => {
                self.phase = Phase::UntilSeparator;
                Verdict::Take
            }
            Phase::AfterTrace if !is_continuation(t) => Verdict::Close,
            _ => Verdict::Take,
        }
    }

    /// Finishes the report: cleaned text, title, corruption.
    pub(crate) fn build(self) -> Report {
        let (title, corrupted) = title::title(&self.header, &self.lines);
        let mut text = self.lines.join("\n");
        text.push('\n');
        Report {
            kind: self.header.kind,
            title,
            corrupted,
            text,
            first_line: self.first_line,
            marker: self.marker,
        }
    }
}

/// `=====...` lines that close KASAN, KFENCE and UBSAN reports and lock lists.
fn is_separator(t: &str) -> bool {
    t.len() >= 10 && t.bytes().all(|b| b == b'=')
}

/// Lines inside a "Call Trace:".
fn is_trace_line(t: &str) -> bool {
    // A frame the unwinder could not symbolise: `0x202`.
    let raw_address = t
        .strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    parse_frame(t).is_some()
        || raw_address
        || (t.starts_with('<') && t.ends_with('>'))
        || t.starts_with("? ")
        || is_register_line(t)
}

/// Lines printed after a report's trace that still belong to it.
fn is_continuation(t: &str) -> bool {
    const PREFIXES: [&str; 49] = [
        "Task dump for CPU",
        "Exception stack(",
        "Modules linked in",
        "irq event stamp",
        "hardirqs last",
        "softirqs last",
        "---[ end",
        "------------[ cut here",
        "Kernel Offset",
        "Rebooting in",
        "Dumping ftrace buffer",
        "(ftrace buffer empty)",
        "CPU: ",
        "Hardware name",
        "Tainted:",
        "NMI backtrace for cpu",
        "Showing busy workqueues",
        "Showing backtraces of running workers",
        "workqueue ",
        "pool ",
        "pwq ",
        "in-flight:",
        "pending:",
        "inactive:",
        "delayed:",
        "task:",
        "Workqueue:",
        "rcu: ",
        "rcu:\t",
        "Future hung task reports are suppressed",
        "INFO: lockdep is turned off",
        "Disabling lock debugging",
        "Allocated by task",
        "Freed by task",
        "Last potentially related",
        "Second to last potentially related",
        "The buggy address",
        "Memory state around",
        "#PF: ",
        "PGD ",
        "Oops: ",
        "no locks held by",
        "stack backtrace:",
        "Showing stack for process",
        "other info that might help",
        "Preemption disabled at:",
        "Kernel panic - not syncing",
        "kernel BUG at",
        "Call Trace",
    ];
    t.is_empty()
        || PREFIXES.iter().any(|p| t.starts_with(p))
        || is_register_line(t)
        || parse_frame(t).is_some()
        || t.contains("lock held by")
        || t.contains("locks held by")
        || (t.starts_with('#') && t[1..].starts_with(|c: char| c.is_ascii_digit()))
        || is_stack_dump(t)
}

/// arm's `bfa0: 00000000 00000000 ...` stack words after "Exception stack".
fn is_stack_dump(t: &str) -> bool {
    t.split_once(": ").is_some_and(|(at, words)| {
        at.len() == 4
            && at.bytes().all(|b| b.is_ascii_hexdigit())
            && words
                .split_whitespace()
                .all(|w| w.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// Lines after `---[ end trace`: a repeated register dump and a panic.
fn is_tail_line(t: &str) -> bool {
    t.is_empty()
        || is_register_line(t)
        || [
            "Kernel panic - not syncing",
            "Kernel Offset",
            "---[ end Kernel panic",
            "Rebooting in",
            "Modules linked in",
            "Dumping ftrace buffer",
            "(ftrace buffer empty)",
            "note: ",
            "Fixing recursive fault",
        ]
        .iter()
        .any(|p| t.starts_with(p))
}
