//! Programs: named concurrent lanes of ops, lined up by barriers, in YAML.
//!
//! ```yaml
//! name: move-charge
//! lanes:
//!   - name: main
//!     ops:
//!       - mkdir: a
//!       - {rmdir: b, expect: ENOENT}
//! ```

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checks::{Check, KnownFinding};
use crate::names::{Millis, Name};
use crate::op::{Op, OpSpec};

/// Most lanes a program may have.
pub const MAX_LANES: usize = 8;
/// Most ops (counting repeat bodies once) a program may have.
pub const MAX_OPS: usize = 4096;
/// Deepest nesting of `repeat`.
pub const MAX_REPEAT_DEPTH: usize = 3;

/// How long `repeat: {for: run}` blocks run when neither the program
/// (`duration:`) nor the command line says.
pub const DEFAULT_DURATION_MS: u64 = 10_000;

/// A workload: lanes that run concurrently.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// A short name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What the program does and what a failure looks like.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// How long `repeat: {for: run}` blocks run, unless the command line says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Millis>,
    /// The lanes.
    pub lanes: Vec<Lane>,
    /// Properties checked over the barrier snapshots once the run is over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// Kernel reports this program is known to provoke on some kernels: the
    /// run marks them known and passes if they are all it found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_findings: Vec<KnownFinding>,
}

/// One lane: a sequence of ops run by one thread of the agent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lane {
    /// The lane's name.
    pub name: Name,
    /// Its ops.
    pub ops: Vec<OpSpec>,
}

/// Where an op sits: lane index and its pre-order index among the lane's ops
/// (a `repeat` counts, then its body). This is the `lane L op N` of the agent's
/// kernel log markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    /// Lane index.
    pub lane: usize,
    /// Op index within the lane.
    pub op: usize,
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lane {} op {}", self.lane, self.op)
    }
}

/// A program file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// The YAML does not parse or does not fit the program format.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file name as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was expected.
        message: String,
    },
    /// It parses but breaks a rule of the format.
    #[error("{file}: {message}")]
    Invalid {
        /// The file name as given.
        file: String,
        /// Which rule and where.
        message: String,
    },
}

impl Program {
    /// Parses and validates a program; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Program, ProgramError> {
        let prog: Program = yaml_serde::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            ProgramError::Syntax {
                file: file.to_string(),
                line,
                column,
                message: clean_message(&e.to_string()),
            }
        })?;
        prog.validate().map_err(|message| ProgramError::Invalid {
            file: file.to_string(),
            message,
        })?;
        Ok(prog)
    }

    /// Parses a program from a path's text (the caller reads the file).
    pub fn from_yaml_path(path: &Path, text: &str) -> Result<Program, ProgramError> {
        Program::from_yaml(&path.display().to_string(), text)
    }

    /// The program as YAML; `from_yaml` of it gives the same program.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("programs always serialise")
    }

    /// Checks the rules the YAML grammar cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.lanes.is_empty() {
            return Err("a program needs at least one lane".into());
        }
        if self.lanes.len() > MAX_LANES {
            return Err(format!(
                "{} lanes; at most {MAX_LANES} are allowed",
                self.lanes.len()
            ));
        }
        for (i, l) in self.lanes.iter().enumerate() {
            if self.lanes[..i].iter().any(|o| o.name == l.name) {
                return Err(format!("two lanes are named `{}`", l.name));
            }
        }
        let total: usize = self.lanes.iter().map(|l| count_ops(&l.ops)).sum();
        if total > MAX_OPS {
            return Err(format!("{total} ops; at most {MAX_OPS} are allowed"));
        }
        for l in &self.lanes {
            check_block(&l.name, &l.ops, 0)?;
        }
        let steps = self.steps();
        for c in &self.checks {
            c.validate(steps)?;
        }
        for k in &self.known_findings {
            k.validate()?;
        }
        Ok(())
    }

    /// The ops that carry `fail_nth`, lane by lane, in pre-order.
    pub fn faulted(&self) -> Vec<(OpId, &OpSpec)> {
        (0..self.lanes.len())
            .flat_map(|l| self.lane_ops(l))
            .filter(|(_, s)| s.fail_nth.is_some())
            .collect()
    }

    /// Whether any op carries `fail_nth`.
    pub fn has_faults(&self) -> bool {
        !self.faulted().is_empty()
    }

    /// Every place the program names ([`Op::place`]), `tmp` always.
    pub fn places(&self) -> std::collections::BTreeSet<&str> {
        let mut out = std::collections::BTreeSet::from(["tmp"]);
        for l in 0..self.lanes.len() {
            for (_, s) in self.lane_ops(l) {
                out.extend(s.op.place().map(Name::as_str));
            }
        }
        out
    }

    /// Every op of lane `lane` with its id, in pre-order.
    pub fn lane_ops(&self, lane: usize) -> Vec<(OpId, &OpSpec)> {
        let mut out = Vec::new();
        fn walk<'a>(lane: usize, ops: &'a [OpSpec], out: &mut Vec<(OpId, &'a OpSpec)>) {
            for s in ops {
                out.push((
                    OpId {
                        lane,
                        op: out.len(),
                    },
                    s,
                ));
                if let Op::Repeat(r) = &s.op {
                    walk(lane, &r.ops, out);
                }
            }
        }
        walk(lane, &self.lanes[lane].ops, &mut out);
        out
    }

    /// The op with this id.
    pub fn op(&self, id: OpId) -> Option<&OpSpec> {
        self.lane_ops(id.lane).get(id.op).map(|(_, s)| *s)
    }

    /// The number of barrier-separated steps (the most barriers in a lane, plus one).
    pub fn steps(&self) -> usize {
        self.lanes
            .iter()
            .map(|l| l.ops.iter().filter(|s| s.op == Op::Barrier).count())
            .max()
            .unwrap_or(0)
            + 1
    }
}

/// How many op ids a block of ops spans (a `repeat` counts, then its body):
/// the numbering of [`OpId`], which the agent's markers and results use too.
pub fn count_ops(ops: &[OpSpec]) -> usize {
    ops.iter()
        .map(|s| match &s.op {
            Op::Repeat(r) => 1 + count_ops(&r.ops),
            _ => 1,
        })
        .sum()
}

fn check_block(lane: &Name, ops: &[OpSpec], depth: usize) -> Result<(), String> {
    for s in ops {
        if let Op::Repeat(r) = &s.op {
            if depth + 1 > MAX_REPEAT_DEPTH {
                return Err(format!(
                    "lane `{lane}`: repeats nest deeper than {MAX_REPEAT_DEPTH}"
                ));
            }
            if r.ops.iter().any(|x| x.op == Op::Barrier) {
                return Err(format!(
                    "lane `{lane}`: a barrier inside a repeat; barriers line up whole lanes, \
                     so put them between repeats"
                ));
            }
            check_block(lane, &r.ops, depth + 1)?;
        }
    }
    Ok(())
}

/// yaml_serde appends " at line L column C"; the location is reported separately.
fn clean_message(m: &str) -> String {
    let m = match m.find(" at line ") {
        Some(i) => &m[..i],
        None => m,
    };
    // Drop the ".lanes[0].ops[2]: " path prefix serde adds; keep it as context.
    match m.split_once(": ") {
        Some((path, rest)) if path.starts_with('.') || path.starts_with("lanes") => {
            format!("{rest} (at {})", path.trim_start_matches('.'))
        }
        _ => m.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The places of mounts, unmounts and of every file a path is walked
    /// to, inside repeats too; `tmp` always; nothing from other ops.
    #[test]
    fn a_program_names_the_places_of_its_mounts_and_files() {
        let p = Program::from_yaml(
            "t",
            "lanes:\n  - {name: a, ops: [{mkdir: x}, {repeat: {count: 2, ops: [{umount_lazy: u}]}}, {spawn: {task: t, writer: {file: w/f, bytes: 4K, bs: 4K}}}]}\n  - {name: b, ops: [{mount: {at: m, fs: tmpfs}}, {fsync: s/f}, {pin: {pin: p, map: x, via: dio_read, file: q/f}}, sync]}\n",
        )
        .unwrap();
        let got: Vec<&str> = p.places().into_iter().collect();
        assert_eq!(got, ["m", "q", "s", "tmp", "u", "w"]);
    }

    const SEED_001: &str = r#"
name: seed-001
lanes:
  - name: setup
    ops:
      - v1_mount
      - mkdir: v1:a
      - mkdir: v1:b
      - memory.move_charge_at_immigrate: {cg: v1:a, value: 1}
      - memory.move_charge_at_immigrate: {cg: v1:b, value: 1}
      - mkfs: {dev: scratch0, fs: ext4}
      - mount: {at: mnt, fs: ext4, dev: scratch0}
      - spawn:
          task: dd
          cg: v1:a
          writer: {file: mnt/big, bytes: 256M, bs: 1M, loop: true}
      - spawn: {task: sleep, sleeper: {}}
      - barrier
      - repeat:
          for: run
          ops:
            - cgroup.procs: {task: sleep, cg: v1:a}
            - cgroup.procs: {task: sleep, cg: v1:b}
  - name: sync
    ops:
      - barrier
      - repeat: {for: run, ops: [sync]}
"#;

    #[test]
    fn seed_001_parses_and_round_trips() {
        let p = Program::from_yaml("seed.yaml", SEED_001).unwrap();
        assert_eq!(p.lanes.len(), 2);
        assert_eq!(p.steps(), 2);
        let y = p.to_yaml();
        assert_eq!(Program::from_yaml("again", &y).unwrap(), p);
        // The repeat is op 10 and its body ops 11 and 12.
        let ids = p.lane_ops(0);
        assert_eq!(ids.len(), 13);
        assert_eq!(ids[12].1.op.keyword(), "cgroup.procs");
    }

    #[test]
    fn errors_carry_line_and_column() {
        let text = "lanes:\n  - name: a\n    ops:\n      - mkdir: a\n      - rmdr: b\n";
        match Program::from_yaml("p.yaml", text).unwrap_err() {
            ProgramError::Syntax {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!(line, 5, "{message}");
                assert!(column >= 9, "{column}");
                assert!(message.contains("unknown op `rmdr`"), "{message}");
            }
            e => panic!("{e}"),
        }
        let e = Program::from_yaml(
            "p.yaml",
            "lanes:\n  - name: a\n    ops:\n      - mkdir: /A\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("p.yaml:4:"), "{e}");
        assert!(e.contains("invalid cgroup"), "{e}");
        let e = Program::from_yaml(
            "p.yaml",
            "lanes:\n  - name: a\n    ops:\n      - cgroup.procs: {task: s, cgg: a}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `cgg`"), "{e}");
    }

    #[test]
    fn structural_rules() {
        let e = Program::from_yaml(
            "p",
            "lanes:\n  - name: a\n    ops: [{repeat: {count: 2, ops: [barrier]}}]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("barrier inside a repeat"), "{e}");
        let e = Program::from_yaml("p", "lanes: []\n").unwrap_err();
        assert!(e.to_string().contains("at least one lane"));
        let e = Program::from_yaml(
            "p",
            "lanes:\n  - {name: a, ops: [sync]}\n  - {name: a, ops: [sync]}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("two lanes are named"));
        let e = Program::from_yaml("p", "lanes:\n  - {name: a, ops: [mkdir]}\n").unwrap_err();
        assert!(e.to_string().contains("needs arguments"), "{e}");
    }

    #[test]
    fn checks_and_known_findings_parse_validate_and_round_trip() {
        let text = format!(
            "{SEED_001}checks:\n  - reclaim_progress: {{cgroups: \"p/c*\", from: 0, to: 1}}\n\
             known_findings:\n  - {{title: \"WARNING in x\", kernel: \"6.1\"}}\n"
        );
        let p = Program::from_yaml("p", &text).unwrap();
        assert_eq!(p.checks.len(), 1);
        assert!(p.known_findings[0].matches("WARNING in x", "6.1.0-56-cloud-amd64"));
        assert_eq!(Program::from_yaml("again", &p.to_yaml()).unwrap(), p);
        // Barrier 2 does not exist in a two-step program.
        let bad = text.replace("to: 1", "to: 2");
        let e = Program::from_yaml("p", &bad).unwrap_err().to_string();
        assert!(e.contains("from < to < 2"), "{e}");
        let bad = text.replace("kernel: \"6.1\"", "kernel: \"\"");
        assert!(Program::from_yaml("p", &bad).is_err());
        let bad = text.replace("from: 0", "form: 0");
        let e = Program::from_yaml("p", &bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `form`"), "{e}");
    }

    #[test]
    fn expect_forms() {
        let p = Program::from_yaml(
            "p",
            "lanes:\n  - name: a\n    ops:\n      - {rmdir: x, expect: ENOENT}\n      - {mkdir: x, expect: [ok, EEXIST]}\n      - {sync: , expect: ok}\n",
        )
        .unwrap();
        let y = p.to_yaml();
        assert_eq!(Program::from_yaml("y", &y).unwrap(), p);
        assert!(y.contains("expect: ENOENT"), "{y}");
    }
}
