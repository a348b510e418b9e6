//! Golden console logs: every `testdata/*.log` is parsed and the reports
//! compared with the headers at its top.
//!
//! File format:
//!
//! ```text
//! # recorded: <kernel>, <how>      (optional comment lines, each starting "#")
//! KIND: lockdep                    (one KIND/TITLE[/CORRUPTED] group per report,
//! TITLE: possible deadlock in f     in order; or a single "KIND: none")
//! CORRUPTED: true                  (optional, default false)
//!
//! <the raw console, byte for byte>
//! ```
//!
//! With `CGSTORM_UPDATE_GOLDEN=1` the headers are rewritten from the current
//! output instead (comments and the log are kept); check the diff by eye.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use cgstorm_report::{contains_report, parse, ConsoleScanner, Kind, Report};

const UPDATE_ENV: &str = "CGSTORM_UPDATE_GOLDEN";

/// One expected report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    kind: Kind,
    title: String,
    corrupted: bool,
}

impl Expected {
    fn of(r: &Report) -> Expected {
        Expected {
            kind: r.kind,
            title: r.title.clone(),
            corrupted: r.corrupted,
        }
    }
}

struct Golden {
    comments: Vec<String>,
    expected: Vec<Expected>,
    log: Vec<u8>,
}

fn read_golden(path: &Path) -> Golden {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut comments = Vec::new();
    let mut expected: Vec<Expected> = Vec::new();
    let mut none = false;
    let mut pos = 0;
    let mut line_no = 0;
    loop {
        line_no += 1;
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("{}: no blank line after the headers", path.display()));
        let line = std::str::from_utf8(&bytes[pos..pos + end])
            .unwrap_or_else(|_| panic!("{}:{line_no}: header is not UTF-8", path.display()));
        pos += end + 1;
        let at = || format!("{}:{line_no}", path.display());
        if line.is_empty() {
            break;
        } else if line.starts_with('#') {
            comments.push(line.to_owned());
        } else if let Some(k) = line.strip_prefix("KIND: ") {
            if k == "none" {
                none = true;
                continue;
            }
            let kind = k.parse().unwrap_or_else(|e| panic!("{}: {e}", at()));
            expected.push(Expected {
                kind,
                title: String::new(),
                corrupted: false,
            });
        } else if let Some(t) = line.strip_prefix("TITLE: ") {
            let last = expected
                .last_mut()
                .unwrap_or_else(|| panic!("{}: TITLE before KIND", at()));
            last.title = t.to_owned();
        } else if line == "CORRUPTED: true" {
            let last = expected
                .last_mut()
                .unwrap_or_else(|| panic!("{}: CORRUPTED before KIND", at()));
            last.corrupted = true;
        } else {
            panic!("{}: expected a header, got {line:?}", at());
        }
    }
    assert!(
        !none || expected.is_empty(),
        "{}: KIND: none with other reports",
        path.display()
    );
    Golden {
        comments,
        expected,
        log: bytes[pos..].to_vec(),
    }
}

fn write_golden(path: &Path, golden: &Golden, got: &[Expected]) {
    let mut head = String::new();
    for c in &golden.comments {
        writeln!(head, "{c}").unwrap();
    }
    if got.is_empty() {
        head.push_str("KIND: none\n");
    }
    for e in got {
        writeln!(head, "KIND: {}\nTITLE: {}", e.kind, e.title).unwrap();
        if e.corrupted {
            head.push_str("CORRUPTED: true\n");
        }
    }
    head.push('\n');
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&golden.log);
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden logs in {}", dir.display());
    files
}

/// Feeds `log` through a scanner in chunks of `size` bytes.
fn scan_in_chunks(log: &[u8], size: usize) -> Vec<Report> {
    let mut scanner = ConsoleScanner::new();
    let mut reports = Vec::new();
    for chunk in log.chunks(size) {
        reports.extend(scanner.feed(chunk));
    }
    reports.extend(scanner.finish());
    reports
}

#[test]
fn golden_logs() {
    let update = std::env::var_os(UPDATE_ENV).is_some();
    let mut failures = Vec::new();
    for path in golden_files() {
        let golden = read_golden(&path);
        let console = String::from_utf8_lossy(&golden.log);
        let reports = parse(&console);
        let got: Vec<Expected> = reports.iter().map(Expected::of).collect();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();

        assert_eq!(
            contains_report(&console),
            !reports.is_empty(),
            "{name}: contains_report disagrees with parse"
        );
        for size in [1, 7, 4096] {
            assert_eq!(
                scan_in_chunks(&golden.log, size),
                reports,
                "{name}: scanner fed {size}-byte chunks disagrees with parse"
            );
        }
        for r in &reports {
            assert!(!r.text.is_empty() && r.title.len() <= 120, "{name}: {r:?}");
            assert!(
                !r.text.contains("][    T") && !r.text.contains("] ["),
                "{name}: report text keeps printk prefixes"
            );
        }

        if update {
            if got != golden.expected {
                write_golden(&path, &golden, &got);
                eprintln!("updated {name}");
            }
        } else if got != golden.expected {
            failures.push(format!(
                "{name}:\n  expected: {:#?}\n  got: {:#?}",
                golden.expected, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (rerun with {UPDATE_ENV}=1 cargo test -p cgstorm-report --test golden to accept):\n{}",
        failures.join("\n")
    );
}

/// The boot part of a log (everything before the first cgstorm op marker)
/// holds no report that its header does not list first: boot messages that
/// look like reports are not taken for them. (A kernel may have a real bug at
/// boot: the 6.12 debug kernel's KASAN report in `handle_edge_irq`.) Logs
/// without markers (copied from elsewhere) are skipped.
#[test]
fn boot_parts_are_quiet() {
    let mut checked = 0;
    for path in golden_files() {
        let golden = read_golden(&path);
        let console = String::from_utf8_lossy(&golden.log);
        let Some(at) = console.find("cgstorm: lane ") else {
            continue;
        };
        let boot = &console[..console[..at].rfind('\n').unwrap_or(0)];
        let got: Vec<Expected> = parse(boot).iter().map(Expected::of).collect();
        let listed = &golden.expected[..got.len().min(golden.expected.len())];
        assert_eq!(
            got,
            listed,
            "{}: the boot part has reports the header does not list first",
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no golden log has a cgstorm op marker");
}
