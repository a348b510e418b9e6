//! The incremental console scanner: bytes in, finished reports out. [`parse`]
//! is this scanner fed the whole console at once.
//!
//! [`parse`]: crate::parse

use crate::builder::{Builder, Verdict};
use crate::clean::{clean, line_text, Context, Line, MAX_LINE};
use crate::header::{self, Form, Header};
use crate::{Kind, OpMarker, Report};

/// A report still open while this many lines of other contexts go by is
/// closed: its printer has moved on.
const MAX_IDLE: usize = 200;

/// Watches a console as it is printed and yields each report once it is
/// complete.
///
/// Feed it chunks of any size with [`ConsoleScanner::feed`]; partial lines are
/// kept until their newline arrives, invalid UTF-8 is replaced. A report is
/// complete at its end marker (`---[ end trace`, `---[ end Kernel panic`, a
/// `=====` separator), at the first later line of its context that is no
/// part of it, at the next report header or cgstorm op marker of its context,
/// or at [`ConsoleScanner::finish`]. Reports come out in the order their
/// headers appear; with CONFIG_PRINTK_CALLER, reports of different tasks or
/// CPUs that interleave are collected side by side.
///
/// A report identical (kind and title) to the one yielded just before it is
/// dropped: a hung task or a WARN in a loop prints the same report again and
/// again. A `Kernel panic` line never starts a report once another report
/// has been seen; it belongs to that report.
#[derive(Debug, Default)]
pub struct ConsoleScanner {
    /// Bytes of the current, unfinished line (at most [`MAX_LINE`]).
    partial: Vec<u8>,
    /// Index of the next line.
    line_no: usize,
    marker: Option<OpMarker>,
    /// Reports being collected, oldest first.
    open: Vec<Builder>,
    /// Complete reports waiting for older open ones, by first line.
    done: Vec<Report>,
    /// Whether any report has started so far.
    seen_report: bool,
    /// Kind and title of the last report yielded, for deduplication.
    last: Option<(Kind, String)>,
}

impl ConsoleScanner {
    /// A scanner at the start of a console.
    pub fn new() -> ConsoleScanner {
        ConsoleScanner::default()
    }

    /// Feeds the next chunk of console bytes; returns the reports it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Report> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(nl);
            rest = &after[1..];
            if self.partial.is_empty() {
                self.line(line, &mut out);
            } else {
                self.push_partial(line);
                let whole = std::mem::take(&mut self.partial);
                self.line(&whole, &mut out);
            }
        }
        self.push_partial(rest);
        out
    }

    /// Ends the console: the last partial line is taken as a line and every
    /// open report is completed. Returns the remaining reports.
    pub fn finish(mut self) -> Vec<Report> {
        let mut out = Vec::new();
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            self.line(&whole, &mut out);
        }
        while !self.open.is_empty() {
            self.close(0);
        }
        self.release(&mut out);
        out
    }

    /// The kind of the oldest report still being collected, if any: the
    /// console has shown a report header whose report is not complete yet.
    pub fn pending(&self) -> Option<Kind> {
        self.open.first().map(Builder::kind)
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<Report>) {
        let no = self.line_no;
        self.line_no += 1;
        let Line { ctx, msg } = clean(&line_text(raw));
        let own = if let Some(marker) = OpMarker::parse(&msg) {
            self.close_where(|b| same_printer(b.ctx, ctx));
            self.marker = Some(marker);
            None
        } else if let Some(header) = header::detect(&msg) {
            self.header(header, ctx, no, &msg)
        } else {
            self.body(ctx, &msg)
        };
        if ctx != Context::Raw {
            self.others_moved_on(ctx, own);
        }
        self.release(out);
    }

    /// Handles a header line; returns the index of the report it went to.
    fn header(&mut self, header: Header, ctx: Context, no: usize, msg: &str) -> Option<usize> {
        let own = self.open.iter().position(|b| b.ctx == ctx);
        if let Some(i) = own {
            if self.open[i].absorb(&header, msg) {
                return Some(i);
            }
        }
        if matches!(header.form, Form::Panic { .. }) && self.seen_report {
            return None;
        }
        self.close_where(|b| same_printer(b.ctx, ctx));
        self.seen_report = true;
        let builder = Builder::new(header, ctx, no, msg, self.marker.clone());
        self.open.push(builder);
        Some(self.open.len() - 1)
    }

    /// Handles any other line; returns the index of the report that took it.
    fn body(&mut self, ctx: Context, msg: &str) -> Option<usize> {
        let own = self.open.iter().position(|b| b.ctx == ctx).or_else(|| {
            // After "Sending NMI", other CPUs print their backtraces.
            matches!(ctx, Context::Cpu(_))
                .then(|| self.open.iter().position(|b| b.all_cpus))
                .flatten()
        })?;
        match self.open[own].accept(msg) {
            Verdict::Take => Some(own),
            Verdict::TakeAndClose | Verdict::Close => {
                self.close(own);
                None
            }
        }
    }

    /// A kernel line of printer `ctx` that report `own` (if any) took:
    /// reports of other printers whose stack is out are over, the others
    /// wait a while for their printer.
    fn others_moved_on(&mut self, ctx: Context, own: Option<usize>) {
        let mut over = Vec::new();
        for (i, b) in self.open.iter_mut().enumerate() {
            if Some(i) == own || b.ctx == ctx {
                continue;
            }
            b.idle += 1;
            if b.is_winding_down() || b.idle > MAX_IDLE {
                over.push(i);
            }
        }
        for i in over.into_iter().rev() {
            self.close(i);
        }
    }

    fn close_where(&mut self, pred: impl Fn(&Builder) -> bool) {
        let mut i = 0;
        while i < self.open.len() {
            if pred(&self.open[i]) {
                self.close(i);
            } else {
                i += 1;
            }
        }
    }

    fn close(&mut self, i: usize) {
        let report = self.open.remove(i).build();
        let at = self
            .done
            .partition_point(|r| r.first_line < report.first_line);
        self.done.insert(at, report);
    }

    /// Moves complete reports that no open report precedes to `out`.
    fn release(&mut self, out: &mut Vec<Report>) {
        let oldest_open = self.open.iter().map(|b| b.first_line).min();
        let ready = self
            .done
            .partition_point(|r| oldest_open.is_none_or(|o| r.first_line < o));
        for report in self.done.drain(..ready) {
            let key = (report.kind, report.title.clone());
            if self.last.as_ref() != Some(&key) {
                self.last = Some(key);
                out.push(report);
            }
        }
    }
}

/// Whether lines of these contexts may come from the same printer: always
/// when either lacks the caller field.
fn same_printer(a: Context, b: Context) -> bool {
    a == b || !a.has_caller() || !b.has_caller()
}
