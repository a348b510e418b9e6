//! `cgstorm check`: validate a program and print the model's prediction.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use cgstorm_workloads::model::{predict, snapshot, verify, Divergence, State, Target};
use cgstorm_workloads::op::Op;
use cgstorm_workloads::Program;
use serde::Serialize;

use crate::kernel_args::KernelArgs;
use crate::programs::{load, StoredRun};

/// Arguments of `cgstorm check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The program (YAML).
    pub program: PathBuf,
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Print the prediction as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check a stored run's results against the model instead
    /// (`trace.json` of a campaign's model-divergence finding: the results
    /// and the kernel they were judged for). Exit 0: the model explains
    /// them; 1: it does not.
    #[arg(long, value_name = "TRACE_JSON")]
    pub trace: Option<PathBuf>,
}

#[derive(Serialize)]
struct OpLine {
    lane: usize,
    op: usize,
    lane_name: String,
    text: String,
    predicted: Vec<String>,
    expect: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Report {
    program: String,
    kernel: Target,
    ops: Vec<OpLine>,
    barriers: Vec<usize>,
    eventual: Vec<snapshot::Eventual>,
    mismatches: usize,
}

/// Runs `check`; returns the exit code (0 fine, 1 an `expect:` disagrees with the model).
pub fn run(args: &CheckArgs) -> Result<u8> {
    let p = load(&args.program)?;
    if let Some(t) = &args.trace {
        return check_trace(&p, t);
    }
    let target = args.kernel.target()?;
    let pred = predict(&p, &target)
        .with_context(|| format!("the model cannot predict {}", args.program.display()))?;
    let mut ops = Vec::new();
    let mut mismatches = 0;
    for lane in 0..p.lanes.len() {
        for (id, spec) in p.lane_ops(lane) {
            if spec.op == Op::Barrier {
                continue;
            }
            let predicted = pred.ops.get(&id).cloned().unwrap_or_default();
            if let Some(e) = &spec.expect {
                mismatches += (e != &predicted) as usize;
            }
            ops.push(OpLine {
                lane,
                op: id.op,
                lane_name: p.lanes[lane].name.to_string(),
                text: spec.op.describe(),
                predicted: predicted.0.iter().map(|o| o.to_string()).collect(),
                expect: spec
                    .expect
                    .as_ref()
                    .map(|e| e.0.iter().map(|o| o.to_string()).collect()),
            });
        }
    }
    let report = Report {
        program: args.program.display().to_string(),
        eventual: snapshot::eventual(&target.kernel),
        kernel: target,
        barriers: pred.barriers.iter().map(Vec::len).collect(),
        ops,
        mismatches,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&p, &report, &pred.barriers));
    }
    Ok(if mismatches > 0 { 1 } else { 0 })
}

/// `--trace`: the stored run's results checked against the model for the
/// kernel they came from.
fn check_trace(p: &Program, path: &std::path::Path) -> Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let run: StoredRun = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a stored run (the trace.json of a model-divergence finding)",
            path.display()
        )
    })?;
    let names = crate::run::verdict::OpNames::new(p);
    match verify(p, &run.target, &run.trace).context("the model cannot check the trace")? {
        None => {
            let results: usize = run
                .trace
                .steps
                .iter()
                .flat_map(|s| s.lanes.iter())
                .map(Vec::len)
                .sum();
            println!("the model explains the {results} results of the trace");
            Ok(0)
        }
        Some(Divergence::Op {
            id,
            observed,
            allowed,
        }) => {
            println!(
                "{} returned {observed}; the model allows {allowed}",
                names.op_ref(id, "?").show()
            );
            Ok(1)
        }
        Some(Divergence::State { step, differences }) => {
            println!(
                "the state at the end of step {step} differs from the model's: {}",
                differences.join("; ")
            );
            Ok(1)
        }
    }
}

fn render(p: &Program, r: &Report, barriers: &[Vec<State>]) -> String {
    let mut s = String::new();
    let k = &r.kernel.kernel;
    let _ = writeln!(
        s,
        "{}: {} lanes, {} steps; model for Linux {}.{} (memcg v1 {})",
        r.program,
        p.lanes.len(),
        p.steps(),
        k.version.0,
        k.version.1,
        if k.memcg_v1 { "on" } else { "off" }
    );
    let width = r
        .ops
        .iter()
        .map(|o| o.text.len())
        .max()
        .unwrap_or(0)
        .min(60);
    for o in &r.ops {
        let predicted = o.predicted.join("|");
        let flag = match &o.expect {
            Some(e) if e != &o.predicted => format!("   MISMATCH: program expects {}", e.join("|")),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  {:<8} op {:<3} {:<width$}  -> {predicted}{flag}",
            o.lane_name, o.op, o.text
        );
    }
    for (i, states) in barriers.iter().enumerate() {
        let what = if i + 1 == barriers.len() {
            "end"
        } else {
            "barrier"
        };
        let _ = writeln!(s, "{what} {i}: {} possible state(s)", states.len());
        if let Some(st) = states.first() {
            let cgs: Vec<String> = st
                .v2
                .iter()
                .map(|(path, n)| {
                    let name = if path.is_empty() {
                        "/".into()
                    } else {
                        path.join("/")
                    };
                    if n.subtree.is_empty() {
                        name
                    } else {
                        let c: Vec<String> = n.subtree.iter().map(|c| format!("+{c}")).collect();
                        format!("{name}[{}]", c.join(" "))
                    }
                })
                .collect();
            let _ = writeln!(s, "    cgroups: {}", cgs.join(", "));
            if let Some(v1) = &st.v1 {
                let v: Vec<String> = v1
                    .nodes
                    .keys()
                    .map(|p| format!("v1:/{}", p.join("/")))
                    .collect();
                let _ = writeln!(
                    s,
                    "    v1 ({}): {}",
                    if v1.mounted { "mounted" } else { "unmounted" },
                    v.join(", ")
                );
            }
            for (name, t) in &st.tasks {
                let _ = writeln!(s, "    task {name}: {:?} in /{}", t.life, t.v2.join("/"));
            }
            for (place, stack) in &st.places {
                let m: Vec<String> = stack
                    .iter()
                    .map(|m| format!("{}{}", m.fs, if m.ro { " ro" } else { "" }))
                    .collect();
                let _ = writeln!(s, "    mounts at {place}: {}", m.join(" < "));
            }
        }
    }
    // What the agent's reset then checks (a violation is a `leak` finding).
    let inv: Vec<String> = r.eventual.iter().map(|e| format!("{e:?}")).collect();
    let _ = writeln!(s, "after the program: {}", inv.join(", "));
    if r.mismatches > 0 {
        let _ = writeln!(
            s,
            "{} op(s) expect something the model does not predict",
            r.mismatches
        );
    }
    s
}
