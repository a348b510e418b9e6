//! Ops per second per op kind (`mount`, `cgroup.procs`, …), from the ops'
//! own guest timestamps: a throughput figure such as seed 003's
//! mount+umount ops/s comes straight out of a run.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use cgstorm_workloads::{OpId, Program};
use serde::Serialize;

use super::trace::TraceBuilder;

/// How often one op kind ran and how fast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpRate {
    /// The op keyword.
    pub kind: &'static str,
    /// Times it ran, in every lane.
    pub runs: usize,
    /// From the first run's start to the last one's end, in ms.
    pub span_ms: f64,
    /// `runs` per second of `span_ms`.
    pub per_s: f64,
}

/// The rate of every op kind that ran, most runs first.
pub fn op_rates(program: &Program, trace: &TraceBuilder) -> Vec<OpRate> {
    let kinds: HashMap<OpId, &'static str> = (0..program.lanes.len())
        .flat_map(|l| program.lane_ops(l))
        .map(|(id, spec)| (id, spec.op.keyword()))
        .collect();
    // kind -> (runs, first start, last end)
    let mut acc: BTreeMap<&'static str, (usize, u64, u64)> = BTreeMap::new();
    for (_, e) in trace.iter() {
        let Some(kind) = kinds.get(&e.id) else {
            continue;
        };
        let a = acc.entry(kind).or_insert((0, u64::MAX, 0));
        a.0 += 1;
        a.1 = a.1.min(e.start_ns);
        a.2 = a.2.max(e.end_ns);
    }
    let mut out: Vec<OpRate> = acc
        .into_iter()
        .map(|(kind, (runs, start, end))| {
            let span_ns = end.saturating_sub(start).max(1);
            OpRate {
                kind,
                runs,
                span_ms: span_ns as f64 / 1e6,
                per_s: runs as f64 * 1e9 / span_ns as f64,
            }
        })
        .collect();
    out.sort_by(|a, b| b.runs.cmp(&a.runs).then(a.kind.cmp(b.kind)));
    out
}

/// One summary line of the kinds that ran more than once, e.g.
/// `ops/s: mount 41.2 (412 in 10.0 s), umount 41.0 (410 in 10.0 s)`.
pub fn render(rates: &[OpRate]) -> Option<String> {
    let mut s = String::new();
    for r in rates.iter().filter(|r| r.runs > 1) {
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = write!(
            s,
            "{} {:.1} ({} in {:.1} s)",
            r.kind,
            r.per_s,
            r.runs,
            r.span_ms / 1e3
        );
    }
    (!s.is_empty()).then(|| format!("ops/s: {s}\n"))
}

#[cfg(test)]
mod tests {
    use cgstorm_workloads::model::OpEvent;
    use cgstorm_workloads::Outcome;

    use super::*;

    #[test]
    fn rates_per_kind_over_each_kinds_span() {
        let p = Program::from_yaml(
            "p",
            "lanes:\n  - {name: a, ops: [mkdir: x, {repeat: {count: 3, ops: [sync, {mount: {at: m, fs: tmpfs}}]}}]}\n  - {name: b, ops: [sync]}\n",
        )
        .unwrap();
        let mut t = TraceBuilder::new(2);
        let ev = |lane, op, start_ms: u64| OpEvent {
            id: OpId { lane, op },
            outcome: Outcome::Ok,
            start_ns: start_ms * 1_000_000,
            end_ns: start_ms * 1_000_000 + 500_000,
            injected: false,
        };
        // mkdir at 0; sync at 10, 20, 30 (lane a) and 40 (lane b); mount at 15, 25, 35.
        t.ops(vec![ev(0, 0, 0), ev(0, 2, 10), ev(0, 3, 15), ev(0, 2, 20)]);
        t.ops(vec![ev(0, 3, 25), ev(0, 2, 30), ev(0, 3, 35), ev(1, 0, 40)]);
        let r = op_rates(&p, &t);
        assert_eq!(
            r.iter().map(|r| (r.kind, r.runs)).collect::<Vec<_>>(),
            [("sync", 4), ("mount", 3), ("mkdir", 1)]
        );
        // 4 syncs from 10 ms to 40.5 ms.
        assert!((r[0].span_ms - 30.5).abs() < 1e-9, "{:?}", r[0]);
        assert!((r[0].per_s - 4.0 / 0.0305).abs() < 1e-6);
        let line = render(&r).unwrap();
        assert!(
            line.starts_with("ops/s: sync 131.1 (4 in 0.0 s), mount "),
            "{line}"
        );
        assert!(!line.contains("mkdir"), "{line}");
    }
}
