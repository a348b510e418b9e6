//! Kernel console analysis for cgstorm: finds the bug reports a kernel prints
//! on its console (lockdep, hung tasks, lockups, RCU stalls, KASAN, KMSAN,
//! KCSAN, memory leaks, WARNINGs, BUGs, busy inodes at unmount, panics),
//! classifies them, gives each a
//! stable syzkaller-like title and ties it to the cgstorm op that ran just
//! before it.
//!
//! Pure: text in, reports out, no I/O. [`parse`] reads a whole console;
//! [`ConsoleScanner`] watches a live one chunk by chunk and is what `parse`
//! runs on; [`contains_report`] is a cheap yes/no that agrees with `parse`.
//!
//! Soft lockups that every vCPU reports at the same moment with the same
//! long duration are a VM the host did not run: [`StallWatch`] sees them
//! and [`retitle`] files them under a title of their own.
//!
//! Memory-pressure noise that cgstorm provokes on purpose is not a report:
//! memcg OOM kills and their stack dumps, page allocation failure warnings.

#![warn(missing_docs)]

mod anchor;
mod builder;
mod clean;
mod frames;
mod header;
mod kind;
mod marker;
mod scanner;
mod skip;
mod stall;
mod title;

use serde::{Deserialize, Serialize};

pub use kind::{Kind, UnknownKind};
pub use marker::OpMarker;
pub use scanner::ConsoleScanner;
pub use stall::{
    late_first_lockup, retitle, stall_title, vm_stall, StallWatch, VmStall, STALL_MARK,
};

/// One kernel report found on a console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The class of report.
    pub kind: Kind,
    /// A one-line title naming the kind and the culprit function, normalised
    /// (no addresses, offsets, pids or device names) so the same bug gets the
    /// same title on every run and kernel; at most 120 characters.
    pub title: String,
    /// The console ended (or the report was cut) before the frame the title
    /// needs: the title is the kind's generic one, without " in FUNC".
    pub corrupted: bool,
    /// The report's lines without timestamps, caller fields and log levels,
    /// each ending in `\n`.
    pub text: String,
    /// Index (from 0) of the report's first line in the console.
    pub first_line: usize,
    /// The last cgstorm op marker printed before the report.
    pub marker: Option<OpMarker>,
}

/// Every report on a console, in the order their first lines appear.
///
/// Same as feeding the whole console to a [`ConsoleScanner`] and finishing
/// it; see there for when reports end and how repeats are dropped.
pub fn parse(console: &str) -> Vec<Report> {
    let mut scanner = ConsoleScanner::new();
    let mut reports = scanner.feed(console.as_bytes());
    reports.extend(scanner.finish());
    reports
}

/// Whether the console contains a report: a scan for report headers, much
/// cheaper than [`parse`], and `true` exactly when `parse` finds a report.
pub fn contains_report(console: &str) -> bool {
    console.as_bytes().split(|&b| b == b'\n').any(|raw| {
        let line = clean::clean(&clean::line_text(raw));
        marker::OpMarker::parse(&line.msg).is_none() && header::detect(&line.msg).is_some()
    })
}
