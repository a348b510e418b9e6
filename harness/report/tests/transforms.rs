//! Properties checked on the recorded golden logs after transforming them:
//! the same console printed by a kernel without the caller field or without
//! timestamps, cut short, or interleaved with another printer's report.
//! The inputs are the real recordings in `testdata/`, changed as each test
//! says; nothing here is a recording itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use cgstorm_report::{contains_report, parse, Kind, Report};
use regex::Regex;

/// (file name, console) of every golden log, headers removed.
fn golden_logs() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let (_, console) = text
                .split_once("\n\n")
                .expect("headers end with a blank line");
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                console.to_owned(),
            )
        })
        .collect()
}

fn summary(reports: &[Report]) -> Vec<(Kind, String, bool)> {
    reports
        .iter()
        .map(|r| (r.kind, r.title.clone(), r.corrupted))
        .collect()
}

static CALLER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^(\S*\[ *[0-9]+\.[0-9]+\])\[ *[TC][0-9]+\]").unwrap());
static TIMESTAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\[ *[0-9]+\.[0-9]+\](?:\[ *[TC][0-9]+\])? ?").unwrap());

/// Kernels without CONFIG_PRINTK_CALLER (Debian's 6.1) print the same lines
/// without `[T123]`: titles must not change.
#[test]
fn titles_do_not_depend_on_the_caller_field() {
    for (name, console) in golden_logs() {
        let without = CALLER.replace_all(&console, "$1");
        if without == console {
            continue;
        }
        assert_eq!(
            summary(&parse(&without)),
            summary(&parse(&console)),
            "{name} without caller fields"
        );
    }
}

/// `printk.time=0`: no prefix at all, user-space output mixed in.
#[test]
fn titles_do_not_depend_on_timestamps() {
    for (name, console) in golden_logs() {
        let without = TIMESTAMP.replace_all(&console, "");
        assert_eq!(
            summary(&parse(&without)),
            summary(&parse(&console)),
            "{name} without timestamps"
        );
    }
}

/// A console that ends right after a report's header gives the same kind,
/// and either the same title or, marked corrupted, the kind's generic title.
#[test]
fn truncated_reports_are_corrupted_not_wrong() {
    let mut checked = 0;
    for (name, console) in golden_logs() {
        for full in parse(&console) {
            let cut: String = console
                .split_inclusive('\n')
                .take(full.first_line + 1)
                .collect();
            let reports = parse(&cut);
            let r = reports
                .iter()
                .find(|r| r.first_line == full.first_line)
                .unwrap_or_else(|| panic!("{name}: cut report at line {} lost", full.first_line));
            assert_eq!(r.kind, full.kind, "{name}");
            if r.title != full.title {
                assert!(r.corrupted, "{name}: {:?} not corrupted", r.title);
                // The generic title, or for KASAN the title without the
                // "Read"/"Write" printed on the line after the header.
                // (A kind's own words may hold " in ": "BUG: using
                // smp_processor_id() in preemptible code".)
                let generic = full.title.strip_prefix(&r.title).is_some_and(|rest| {
                    let rest = [" Read", " Write"]
                        .iter()
                        .find_map(|a| rest.strip_prefix(a))
                        .unwrap_or(rest);
                    rest.starts_with(" in ") && !rest[4..].contains(" in ")
                });
                let no_access = [" Read in ", " Write in "]
                    .iter()
                    .any(|a| full.title.replacen(a, " in ", 1) == r.title);
                assert!(
                    generic || no_access,
                    "{name}: cut title {:?} is no generic form of {:?}",
                    r.title,
                    full.title
                );
            }
            assert!(contains_report(&cut));
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} reports checked");
}

/// Two tasks' reports printed at the same time, line by line interleaved
/// (possible with CONFIG_PRINTK_CALLER): both are found, in order, intact.
#[test]
fn interleaved_reports_of_two_tasks() {
    let logs = golden_logs();
    let report_lines = |file: &str| -> Vec<String> {
        let (_, console) = logs.iter().find(|(n, _)| n == file).unwrap();
        let r = &parse(console)[0];
        console
            .lines()
            .skip(r.first_line)
            .take(r.text.lines().count())
            .map(str::to_owned)
            .collect()
    };
    let abba = report_lines("splat-abba-6.12.log");
    let hung = report_lines("splat-hung-6.12.log");
    let mut mixed = String::new();
    for i in 0..abba.len().max(hung.len()) {
        for lines in [&abba, &hung] {
            if let Some(l) = lines.get(i) {
                mixed.push_str(l);
                mixed.push('\n');
            }
        }
    }
    assert_eq!(
        summary(&parse(&mixed)),
        [
            (
                Kind::Lockdep,
                "possible deadlock in splat_abba".into(),
                false
            ),
            (Kind::HungTask, "INFO: task hung in hung_fn".into(), false),
        ]
    );
}

/// The op marker written before the insmod is the one each report carries.
#[test]
fn reports_carry_the_last_op_marker() {
    for (name, console) in golden_logs() {
        if !console.contains("cgstorm: lane 0 op 1 insmod splat") {
            continue;
        }
        for r in parse(&console) {
            let m = r
                .marker
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: no marker"));
            assert_eq!((m.lane, m.op), (0, 1), "{name}");
            assert!(m.text.starts_with("insmod splat kind="), "{name}: {m:?}");
        }
    }
}
