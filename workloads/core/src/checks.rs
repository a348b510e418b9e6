//! What a program asks of a run beyond every op's result: `checks` evaluated
//! over the barrier snapshots, and `known_findings`, kernel reports already
//! known on some kernels.
//!
//! ```yaml
//! checks:
//!   - reclaim_progress: {cgroups: "p/c*", from: 0, to: 1}
//! known_findings:
//!   - {title: "WARNING in dax_disassociate_entry", kernel: "6.1"}
//! ```
//!
//! Patterns are globs: `*` is any run of characters, `?` one character. In a
//! cgroup pattern `*` stops at `/`. A kernel pattern without a wildcard
//! matches the release it names and every release that continues it after a
//! `.`, `-` or `+` (`6.1` matches `6.1.0-56-cloud-amd64`, not `6.12.1`).
//! A pattern that starts with a comparison is a version range: `>=6.1.100
//! <6.2` holds for every release whose leading number (`uname -r` up to the
//! first character that is neither a digit nor a dot) is in it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Snapshot;
use crate::names::Hier;

/// A property of a run checked from its barrier snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CheckRaw", into = "CheckRaw")]
pub enum Check {
    /// Memory reclaim made progress in every cgroup the pattern matches:
    /// `pgscan` and `pgsteal` of its v2 `memory.stat` grew between the
    /// snapshot of barrier `from` and that of barrier `to`.
    ReclaimProgress(ReclaimProgress),
}

/// A check as YAML writes it: a map with one key naming the check.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRaw {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reclaim_progress: Option<ReclaimProgress>,
}

impl TryFrom<CheckRaw> for Check {
    type Error = String;
    fn try_from(r: CheckRaw) -> Result<Check, String> {
        r.reclaim_progress
            .map(Check::ReclaimProgress)
            .ok_or_else(|| "a check needs one of: reclaim_progress".into())
    }
}

impl From<Check> for CheckRaw {
    fn from(c: Check) -> CheckRaw {
        match c {
            Check::ReclaimProgress(r) => CheckRaw {
                reclaim_progress: Some(r),
            },
        }
    }
}

/// The arguments of [`Check::ReclaimProgress`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimProgress {
    /// A v2 cgroup glob such as `p/c*` (`*` does not cross `/`).
    pub cgroups: String,
    /// The barrier whose snapshot is the start (0: the first barrier).
    pub from: usize,
    /// The barrier whose snapshot is the end (the last is the program's end).
    pub to: usize,
}

/// What a check found wrong, or why it could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// It holds.
    Holds,
    /// It does not: a stable title and one line per offender.
    Fails {
        /// One line, the same on every run of the program.
        title: String,
        /// The cgroups (or other things) that break it, with their numbers.
        failures: Vec<String>,
    },
    /// A snapshot it needs is missing (the run stopped early).
    Unevaluated(String),
}

impl Check {
    /// Checks the rules the YAML grammar cannot express, for a program of
    /// `steps` steps (so `steps` barrier snapshots, the last at the end).
    pub fn validate(&self, steps: usize) -> Result<(), String> {
        match self {
            Check::ReclaimProgress(r) => {
                if r.cgroups.is_empty() || r.cgroups.starts_with("v1:") {
                    return Err(format!(
                        "reclaim_progress: `{}` is not a cgroup v2 pattern such as `p/c*`",
                        r.cgroups
                    ));
                }
                if r.from >= r.to || r.to >= steps {
                    return Err(format!(
                        "reclaim_progress: barriers {} to {}: need from < to < {steps} \
                         (the program has {steps} barrier snapshots, the last at its end)",
                        r.from, r.to
                    ));
                }
                Ok(())
            }
        }
    }

    /// Evaluates the check over the snapshots of a run (`snapshots[k]` is
    /// barrier k's, `None` where the run has none).
    pub fn evaluate(&self, snapshots: &[Option<&Snapshot>]) -> CheckResult {
        match self {
            Check::ReclaimProgress(r) => reclaim_progress(r, snapshots),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::ReclaimProgress(r) => write!(
                f,
                "reclaim_progress {} between barriers {} and {}",
                r.cgroups, r.from, r.to
            ),
        }
    }
}

fn reclaim_progress(r: &ReclaimProgress, snapshots: &[Option<&Snapshot>]) -> CheckResult {
    let get = |k: usize| snapshots.get(k).copied().flatten();
    let (Some(a), Some(b)) = (get(r.from), get(r.to)) else {
        return CheckResult::Unevaluated(format!(
            "no snapshot at barrier {} or {}: the run stopped early",
            r.from, r.to
        ));
    };
    let title = format!(
        "reclaim made no progress in some cgroup matching {} between barriers {} and {}",
        r.cgroups, r.from, r.to
    );
    let mut failures = Vec::new();
    let mut matched = 0;
    for (cg, end) in &b.cgroups {
        if cg.hier != Hier::V2 || !glob(&r.cgroups, &cg.rel_path(), Some('/')) {
            continue;
        }
        // A cgroup made or removed in between is not comparable.
        let Some(start) = a.cgroups.get(cg) else {
            continue;
        };
        matched += 1;
        match (start.reclaim, end.reclaim) {
            (Some(s), Some(e)) if e.pgscan > s.pgscan && e.pgsteal > s.pgsteal => {}
            (Some(s), Some(e)) => failures.push(format!(
                "{cg}: pgscan {} -> {}, pgsteal {} -> {}",
                s.pgscan, e.pgscan, s.pgsteal, e.pgsteal
            )),
            _ => failures.push(format!("{cg}: no pgscan/pgsteal in memory.stat")),
        }
    }
    if matched == 0 {
        failures.push(format!(
            "no cgroup matching {} exists at both barriers",
            r.cgroups
        ));
    }
    if failures.is_empty() {
        CheckResult::Holds
    } else {
        CheckResult::Fails { title, failures }
    }
}

/// A kernel report already known on some kernels: the run marks a finding
/// that matches it as known, and exits 0 if every finding is known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFinding {
    /// The finding's title, or a glob of it.
    pub title: String,
    /// The kernel release (`uname -r`), a prefix of it, or a glob of it.
    pub kernel: String,
}

impl KnownFinding {
    /// Whether a finding titled `title` on kernel `release` is this one.
    pub fn matches(&self, title: &str, release: &str) -> bool {
        glob(&self.title, title, None) && self.kernel_matches(release)
    }

    /// Whether this finding is known on kernel `release`.
    pub fn kernel_matches(&self, release: &str) -> bool {
        kernel_matches(&self.kernel, release)
    }

    /// Checks the rules the YAML grammar cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.title.trim().is_empty() || self.kernel.trim().is_empty() {
            return Err("known_findings: each needs a non-empty `title` and `kernel`".into());
        }
        if is_range(&self.kernel) {
            range_bounds(&self.kernel).map(|_| ())?;
        }
        Ok(())
    }
}

/// A kernel pattern that is a version range (`>=6.1.100 <6.2`).
fn is_range(pattern: &str) -> bool {
    pattern.trim_start().starts_with(['<', '>', '='])
}

type Version = Vec<u64>;

/// The leading dotted number of a release: `6.1.0-57-cloud-amd64` → 6.1.0.
fn version_of(release: &str) -> Option<Version> {
    let head: String = release
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v: Option<Version> = head
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect();
    v.filter(|v| !v.is_empty())
}

/// The comparisons of a range: (operator, version), all of which must hold.
fn range_bounds(pattern: &str) -> Result<Vec<(&str, Version)>, String> {
    let mut out = Vec::new();
    for part in pattern.split([' ', ',']).filter(|p| !p.is_empty()) {
        let op_len = part
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(part.len());
        let (op, ver) = part.split_at(op_len);
        let numeric = ver.chars().all(|c| c.is_ascii_digit() || c == '.');
        match (op, version_of(ver).filter(|_| numeric)) {
            (">=" | ">" | "<=" | "<" | "=", Some(v)) => out.push((op, v)),
            _ => {
                return Err(format!(
                    "known_findings: kernel range `{pattern}`: `{part}` is not a comparison \
                     such as `>=6.1.100` or `<6.2` (versions are compared with the leading \
                     number of `uname -r`)"
                ))
            }
        }
    }
    Ok(out)
}

fn kernel_matches(pattern: &str, release: &str) -> bool {
    if is_range(pattern) {
        let (Ok(bounds), Some(v)) = (range_bounds(pattern), version_of(release)) else {
            return false;
        };
        // Missing components compare as 0: 6.1 == 6.1.0.
        let cmp = |a: &Version, b: &Version| {
            let n = a.len().max(b.len());
            let at = |x: &Version, i: usize| x.get(i).copied().unwrap_or(0);
            (0..n)
                .map(|i| at(a, i).cmp(&at(b, i)))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        return bounds.iter().all(|(op, b)| {
            let o = cmp(&v, b);
            match *op {
                ">=" => o.is_ge(),
                ">" => o.is_gt(),
                "<=" => o.is_le(),
                "<" => o.is_lt(),
                _ => o.is_eq(),
            }
        });
    }
    if pattern.contains(['*', '?']) {
        return glob(pattern, release, None);
    }
    match release.strip_prefix(pattern) {
        Some("") => true,
        Some(rest) => rest.starts_with(['.', '-', '+']),
        None => false,
    }
}

/// Whether `text` matches the glob `pattern` (`*`, `?`); `*` and `?` never
/// match `stop` when it is given.
pub fn glob(pattern: &str, text: &str, stop: Option<char>) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic iterative matcher with one backtrack point per `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let free = Some(t[ti]) != stop;
        if pi < p.len() && (p[pi] == t[ti] || (p[pi] == '?' && free)) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star.filter(|&(_, st)| Some(t[st]) != stop) {
            star = Some((sp, st + 1));
            pi = sp + 1;
            ti = st + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::snapshot::{CgView, ReclaimStat};
    use crate::names::Cg;

    #[test]
    fn globs() {
        assert!(glob("p/c*", "p/c017", Some('/')));
        assert!(!glob("p/c*", "p/c017/x", Some('/')));
        assert!(glob("p/*/x", "p/c0/x", Some('/')));
        assert!(glob(
            "WARNING in dax_*",
            "WARNING in dax_disassociate_entry",
            None
        ));
        assert!(glob("a?c", "abc", None));
        assert!(!glob("a?c", "abcd", None));
        assert!(glob("*", "", None));
        assert!(!glob("", "x", None));
    }

    #[test]
    fn kernels_match_by_prefix_at_a_boundary_or_by_glob() {
        let k = |kernel: &str| KnownFinding {
            title: "WARNING in dax_disassociate_entry".into(),
            kernel: kernel.into(),
        };
        let t = "WARNING in dax_disassociate_entry";
        assert!(k("6.1.0-56-cloud-amd64").matches(t, "6.1.0-56-cloud-amd64"));
        assert!(k("6.1").matches(t, "6.1.0-56-cloud-amd64"));
        assert!(!k("6.1").matches(t, "6.12.117"));
        assert!(k("6.12").matches(t, "6.12.117"));
        assert!(k("6.12.*").matches(t, "6.12.117"));
        assert!(k("*").matches(t, "5.15.0"));
        assert!(!k("6.1").matches("WARNING in other", "6.1.0"));
        // A Debian ABI bump keeps the series.
        assert!(k("6.1").matches(t, "6.1.0-57-cloud-amd64"));
    }

    #[test]
    fn kernels_match_a_version_range() {
        let k = |kernel: &str| KnownFinding {
            title: "*".into(),
            kernel: kernel.into(),
        };
        assert!(k(">=6.1 <6.2").kernel_matches("6.1.0-57-cloud-amd64"));
        assert!(k(">=6.1, <6.2").kernel_matches("6.1.192"));
        assert!(!k(">=6.1 <6.2").kernel_matches("6.2.0"));
        assert!(!k(">=6.1 <6.2").kernel_matches("6.0.9"));
        assert!(k(">=6.6").kernel_matches("6.12.117"));
        assert!(!k(">6.12.117").kernel_matches("6.12.117"));
        assert!(k("<=6.12.117").kernel_matches("6.12.117"));
        assert!(k("=6.12").kernel_matches("6.12.0"));
        assert!(!k(">=6.1").kernel_matches("not-a-version"));
        assert!(k(">=6.1 <6.2").validate().is_ok());
        let err = k(">=6.1 <six").validate().unwrap_err();
        assert!(err.contains("`<six` is not a comparison"), "{err}");
        assert!(k("=>6.1").validate().is_err());
    }

    fn snap(stats: &[(&str, u64, u64)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (cg, scan, steal) in stats {
            s.cgroups.insert(
                cg.parse::<Cg>().unwrap(),
                CgView {
                    reclaim: Some(ReclaimStat {
                        pgscan: *scan,
                        pgsteal: *steal,
                    }),
                    ..CgView::default()
                },
            );
        }
        s
    }

    #[test]
    fn reclaim_progress_needs_both_counters_to_grow_in_every_match() {
        let c = Check::ReclaimProgress(ReclaimProgress {
            cgroups: "p/c*".into(),
            from: 0,
            to: 1,
        });
        let a = snap(&[("p/c0", 10, 5), ("p/c1", 10, 5), ("q", 0, 0)]);
        let b = snap(&[
            ("p/c0", 20, 9),
            ("p/c1", 30, 8),
            ("q", 0, 0),
            ("p/c9", 0, 0),
        ]);
        assert_eq!(c.evaluate(&[Some(&a), Some(&b)]), CheckResult::Holds);
        let stuck = snap(&[("p/c0", 20, 9), ("p/c1", 10, 5)]);
        match c.evaluate(&[Some(&a), Some(&stuck)]) {
            CheckResult::Fails { title, failures } => {
                assert!(title.contains("p/c*"), "{title}");
                assert_eq!(failures, vec!["p/c1: pgscan 10 -> 10, pgsteal 5 -> 5"]);
            }
            r => panic!("{r:?}"),
        }
        let none = snap(&[("q", 1, 1)]);
        assert!(matches!(
            c.evaluate(&[Some(&none), Some(&none)]),
            CheckResult::Fails { .. }
        ));
        assert!(matches!(
            c.evaluate(&[Some(&a), None]),
            CheckResult::Unevaluated(_)
        ));
    }

    #[test]
    fn memory_stat_counters_parse() {
        let text = "anon 4096\npgscan 120\npgsteal 80\npgscan_kswapd 3\n";
        assert_eq!(
            ReclaimStat::parse(text),
            Some(ReclaimStat {
                pgscan: 120,
                pgsteal: 80
            })
        );
        assert_eq!(ReclaimStat::parse("anon 1\n"), None);
    }

    #[test]
    fn validation_names_the_barriers() {
        let c = |from, to| {
            Check::ReclaimProgress(ReclaimProgress {
                cgroups: "p/*".into(),
                from,
                to,
            })
        };
        assert!(c(0, 1).validate(2).is_ok());
        assert!(c(1, 1).validate(3).unwrap_err().contains("from < to"));
        assert!(c(0, 2).validate(2).is_err());
    }
}
