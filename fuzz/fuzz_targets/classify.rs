//! The console classifier on arbitrary bytes. Invariants:
//! - `parse` never panics;
//! - `contains_report` finds a report iff `parse` finds one;
//! - a `ConsoleScanner` fed the same bytes in arbitrary chunks (sizes drawn
//!   from the first 8 input bytes) yields exactly what `parse` returns.
#![no_main]

use cgstorm_report::{contains_report, parse, ConsoleScanner, Report};
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Some((seed, console)) = data.split_first_chunk::<8>() else {
        return Corpus::Reject;
    };
    let text = String::from_utf8_lossy(console);
    let reports = parse(&text);
    assert_eq!(
        contains_report(&text),
        !reports.is_empty(),
        "contains_report disagrees with parse"
    );
    assert_eq!(
        scan_in_chunks(console, u64::from_le_bytes(*seed)),
        reports,
        "chunked scanner disagrees with parse"
    );
    Corpus::Keep
});

/// Feeds `console` to a scanner in chunks of 0..=64 bytes chosen by an
/// xorshift generator seeded with `seed`.
fn scan_in_chunks(console: &[u8], seed: u64) -> Vec<Report> {
    let mut state = seed | 1;
    let mut scanner = ConsoleScanner::new();
    let mut reports = Vec::new();
    let mut rest = console;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = usize::try_from(state % 65).unwrap_or(1).min(rest.len());
        let (chunk, after) = rest.split_at(size);
        reports.extend(scanner.feed(chunk));
        rest = after;
    }
    reports.extend(scanner.finish());
    reports
}
