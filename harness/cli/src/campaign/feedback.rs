//! The fuzzer's "new behaviour" signal: a program is kept in the corpus when
//! it showed a feature no program showed before. Signals are pluggable:
//! finding titles, (op kind, outcome) pairs, coarse barrier states and
//! tracepoint event counts. Kernel coverage (KCOV edges, tens of thousands
//! per program at first) is not a [`Signal`] of strings: the campaign keeps
//! the edge hashes itself and keeps a program only for new edges that show
//! again in a re-run (`engine::Campaign::confirm_edges`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use cgstorm_workloads::model::snapshot::Snapshot;
use cgstorm_workloads::{Hier, Program};

use super::slot::Ran;

/// A source of features.
pub trait Signal: Send + Sync {
    /// A short name, the prefix of its features.
    fn name(&self) -> &'static str;
    /// The features `ran` showed.
    fn features(&self, program: &Program, ran: &Ran, out: &mut Vec<String>);
}

/// Every finding title (known or not).
pub struct Titles;

impl Signal for Titles {
    fn name(&self) -> &'static str {
        "title"
    }

    fn features(&self, _: &Program, ran: &Ran, out: &mut Vec<String>) {
        out.extend(ran.all_findings().map(|f| f.title.clone()));
    }
}

/// Which outcomes each op kind has returned (`rmdir EBUSY`, `mount ok`).
pub struct Outcomes;

impl Signal for Outcomes {
    fn name(&self) -> &'static str {
        "outcome"
    }

    fn features(&self, program: &Program, ran: &Ran, out: &mut Vec<String>) {
        let ops: Vec<Vec<&'static str>> = (0..program.lanes.len())
            .map(|l| {
                program
                    .lane_ops(l)
                    .into_iter()
                    .map(|(_, s)| s.op.keyword())
                    .collect()
            })
            .collect();
        let mut seen = HashSet::new();
        for (_, ev) in ran.conclusion.outcome.trace.iter() {
            let kind = ops
                .get(ev.id.lane)
                .and_then(|l| l.get(ev.id.op))
                .copied()
                .unwrap_or("?");
            if seen.insert((kind, ev.outcome.to_string())) {
                out.push(format!("{kind} {}", ev.outcome));
            }
        }
    }
}

/// The shape of each barrier state: how many cgroups of each hierarchy,
/// how many populated, which controllers are on, what is mounted, how many
/// tasks live. Names are left out, so renaming finds nothing new.
pub struct States;

fn shape(s: &Snapshot) -> u64 {
    let mut h = DefaultHasher::new();
    let v1 = s.cgroups.keys().filter(|c| c.hier == Hier::V1).count();
    (s.cgroups.len() - v1, v1).hash(&mut h);
    s.cgroups
        .values()
        .filter(|c| c.populated)
        .count()
        .hash(&mut h);
    let mut ctrls: BTreeMap<String, usize> = BTreeMap::new();
    for c in s.cgroups.values() {
        for k in &c.subtree_control {
            *ctrls.entry(format!("{k:?}")).or_default() += 1;
        }
    }
    ctrls.hash(&mut h);
    let mut mounts: Vec<String> = s
        .mounts
        .values()
        .map(|stack| {
            stack
                .iter()
                .map(|m| format!("{:?}{}", m.fs, if m.ro { "ro" } else { "" }))
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    mounts.sort();
    mounts.hash(&mut h);
    s.tasks.len().hash(&mut h);
    h.finish()
}

impl Signal for States {
    fn name(&self) -> &'static str {
        "state"
    }

    fn features(&self, _: &Program, ran: &Ran, out: &mut Vec<String>) {
        for step in &ran.conclusion.outcome.trace.trace().steps {
            if let Some(s) = &step.snapshot {
                out.push(format!("{:016x}", shape(s)));
            }
        }
    }
}

/// Tracepoint events of the kernel's background work (writeback, cgroup
/// release, reclaim, workqueue items), which KCOV does not see: each event
/// with its count in powers of two (`work:wb_workfn 4+`), so running a
/// work item many more times than before is new too.
pub struct Events;

/// The power-of-two bucket of `n`: 1, 2+, 4+, 8+, …
fn bucket(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << n.ilog2()
    }
}

impl Signal for Events {
    fn name(&self) -> &'static str {
        "event"
    }

    fn features(&self, _: &Program, ran: &Ran, out: &mut Vec<String>) {
        if let Some(Ok(counts)) = &ran.conclusion.outcome.events {
            for (e, n) in counts {
                out.push(format!("{e} {}+", bucket(*n)));
            }
        }
    }
}

/// The signals in use.
pub fn default_signals() -> Vec<Box<dyn Signal>> {
    SIGNALS.iter().filter_map(|n| signal(n)).collect()
}

/// Every signal's name (`cgstorm fuzz --signals`).
pub const SIGNALS: [&str; 4] = ["title", "outcome", "state", "event"];

/// The signal called `name`.
pub fn signal(name: &str) -> Option<Box<dyn Signal>> {
    Some(match name {
        "title" => Box::new(Titles),
        "outcome" => Box::new(Outcomes),
        "state" => Box::new(States),
        "event" => Box::new(Events),
        _ => return None,
    })
}

/// Every feature seen so far.
#[derive(Default)]
pub struct Seen {
    features: HashSet<String>,
}

impl Seen {
    /// Takes features (as `name:value`); returns those not seen before.
    pub fn add(&mut self, features: impl IntoIterator<Item = String>) -> Vec<String> {
        features
            .into_iter()
            .filter(|f| self.features.insert(f.clone()))
            .collect()
    }
}

/// Every signal's features of one run, as `name:value`.
pub fn features(signals: &[Box<dyn Signal>], program: &Program, ran: &Ran) -> Vec<String> {
    let mut out = Vec::new();
    for s in signals {
        let mut v = Vec::new();
        s.features(program, ran, &mut v);
        out.extend(v.into_iter().map(|f| format!("{}:{f}", s.name())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_is_named_by_its_own_name() {
        for n in SIGNALS {
            assert_eq!(signal(n).map(|s| s.name()), Some(n));
        }
        assert!(signal("edges").is_none());
    }

    #[test]
    fn event_counts_fall_in_powers_of_two() {
        assert_eq!(
            [0, 1, 2, 3, 4, 7, 8, 1000].map(bucket),
            [0, 1, 2, 2, 4, 4, 8, 512]
        );
    }

    #[test]
    fn features_count_once() {
        let mut seen = Seen::default();
        let new = seen.add(["a:1".to_string(), "a:2".into(), "a:1".into()]);
        assert_eq!(new, ["a:1", "a:2"]);
        assert!(seen.add(["a:2".to_string()]).is_empty());
    }

    #[test]
    fn state_shapes_ignore_names_but_not_structure() {
        let snap = |yaml: &str| -> Snapshot { serde_json::from_str(yaml).unwrap() };
        let a = snap(
            r#"{"cgroups":{"/":{"populated":true},"a":{"populated":false}},"tasks":{},"mounts":{},"files":{}}"#,
        );
        let b = snap(
            r#"{"cgroups":{"/":{"populated":true},"b":{"populated":false}},"tasks":{},"mounts":{},"files":{}}"#,
        );
        let c = snap(
            r#"{"cgroups":{"/":{"populated":true},"a":{"populated":true}},"tasks":{},"mounts":{},"files":{}}"#,
        );
        assert_eq!(shape(&a), shape(&b));
        assert_ne!(shape(&a), shape(&c));
    }
}
