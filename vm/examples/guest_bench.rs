//! Guest op rates: the agent against seed 001's shell loop and a raw loop.
//!
//! `cargo run --release -p cgstorm-vm --example guest_bench -- [KERNEL] [SCALE]`
//! (KERNEL: `debian` (default) or a bzImage; SCALE multiplies the counts:
//! `3`, or `1/10` on a slow debug kernel.)
//!
//! cgroup.procs migrations of a sleeper between two cgroups, and memcg
//! mkdir+rmdir pairs, each three ways: the agent running a cgstorm program
//! (rate from its own op timestamps, markers and result reporting included),
//! a busybox shell loop (`echo $PID > a/cgroup.procs`, `mkdir x; rmdir x`),
//! and a raw loop in the agent (cgroup.procs fds kept open: the floor).
//! On a kernel with KCOV the agent also runs each program with coverage
//! collected (what campaigns do there): the cost of KCOV on the op rate.

use std::path::PathBuf;
use std::time::Duration;

use cgstorm_proto::proto::{self, AgentMsg, BenchKind, BenchOrder, HostMsg, RunOrder};
use cgstorm_vm::vm::Vm;

const MIGRATE: &str = r#"
lanes:
  - name: mover
    ops:
      - {mkdir: a}
      - {mkdir: b}
      - spawn: {task: s, sleeper: {}}
      - repeat:
          count: COUNT
          ops:
            - {cgroup.procs: {task: s, cg: a}}
            - {cgroup.procs: {task: s, cg: b}}
"#;

const MKDIR: &str = r#"
lanes:
  - name: maker
    ops:
      - {cgroup.subtree_control: {cg: /, change: "+memory"}}
      - repeat:
          count: COUNT
          ops:
            - {mkdir: m}
            - {rmdir: m}
"#;

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("debian");
    // SCALE: a factor (`3`) or a fraction (`1/10`, for slow debug kernels).
    let (num, den): (u64, u64) = match args.get(2).map(String::as_str) {
        None => (1, 1),
        Some(s) => match s.split_once('/') {
            Some((n, d)) => (n.parse()?, d.parse::<u64>()?.max(1)),
            None => (s.parse()?, 1),
        },
    };
    let append = std::env::var("GUEST_APPEND")
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut vm = common::boot(
        &common::kernel_spec(which),
        vec![PathBuf::from("/bin/busybox")],
        append,
        Duration::from_secs(1800),
    )?;
    let kcov = vm.hello.features.as_ref().is_some_and(|f| f.kcov);
    println!(
        "kernel {} accel {:?} kcov {kcov}",
        vm.hello.kernel_release, vm.accel
    );

    // Raw and agent alternate ROUNDS times in the same VM; TCG's speed
    // wanders between and within boots, so the figure is the median of the
    // per-round ratios.
    const ROUNDS: usize = 5;
    for (what, raw, shell, count, program, per_pass) in [
        (
            "migrations",
            BenchKind::MigrateRaw,
            BenchKind::MigrateShell,
            20_000,
            MIGRATE,
            2,
        ),
        (
            "mkdir+rmdir pairs",
            BenchKind::MkdirRaw,
            BenchKind::MkdirShell,
            2_000,
            MKDIR,
            1,
        ),
    ] {
        let count = (count * num / den).max(10);
        let mut ratios = Vec::new();
        let mut covered = Vec::new();
        for round in 1..=ROUNDS {
            let base = bench(&mut vm.vm, raw, count)?;
            let text = program.replace("COUNT", &(count / per_pass).to_string());
            let agent = run_program(&mut vm.vm, &text, false)?;
            print!(
                "round {round}: raw {base:.0} {what}/s, agent {agent:.0} {what}/s = {:.2}x",
                agent / base
            );
            if kcov {
                let with = run_program(&mut vm.vm, &text, true)?;
                print!(", agent with KCOV {with:.0} {what}/s = {:.2}x", with / base);
                covered.push(with / base);
            }
            println!();
            ratios.push(agent / base);
        }
        ratios.sort_by(f64::total_cmp);
        covered.sort_by(f64::total_cmp);
        if let (Some(lo), Some(hi)) = (covered.first(), covered.last()) {
            println!(
                "{what}: agent with KCOV / raw loop median {:.2}x (range {lo:.2}-{hi:.2})",
                covered[covered.len() / 2]
            );
        }
        let shell_rate = bench(&mut vm.vm, shell, (count / 10).max(100))?;
        println!(
            "{what}: agent / raw loop median {:.2}x (range {:.2}-{:.2}); busybox shell {shell_rate:.0}/s",
            ratios[ROUNDS / 2],
            ratios[0],
            ratios[ROUNDS - 1]
        );
    }
    let _ = vm.shutdown();
    Ok(())
}

/// Runs a baseline loop in the guest; its rate per second.
fn bench(vm: &mut dyn Vm, kind: BenchKind, count: u64) -> Result<f64, Box<dyn std::error::Error>> {
    proto::write_frame(vm.agent(), &HostMsg::Bench(BenchOrder { kind, count }))?;
    match proto::read_frame::<_, AgentMsg>(vm.agent())? {
        AgentMsg::BenchResult { result: Ok(ns), .. } => Ok(count as f64 / (ns as f64 / 1e9)),
        AgentMsg::BenchResult { result: Err(e), .. } => Err(format!("{kind:?}: {e}").into()),
        other => Err(format!("unexpected {other:?}").into()),
    }
}

/// Runs a program; the rate of its repeated ops from first start to last end.
/// With `cover`, the agent collects the lanes' kernel coverage.
fn run_program(
    vm: &mut dyn Vm,
    program: &str,
    cover: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    proto::write_frame(
        vm.agent(),
        &HostMsg::Run(RunOrder {
            program: program.to_string(),
            duration_ms: 0,
            stall_ms: 600_000,
            cover,
            ..Default::default()
        }),
    )?;
    let (mut first, mut last, mut n) = (u64::MAX, 0, 0u64);
    loop {
        match proto::read_frame::<_, AgentMsg>(vm.agent())? {
            AgentMsg::Ops { events } => {
                // Only the repeated body ops (after the setup ops).
                for e in events
                    .iter()
                    .filter(|e| e.id.op >= 4 || (program.contains("mkdir: m") && e.id.op >= 2))
                {
                    first = first.min(e.start_ns);
                    last = last.max(e.end_ns);
                    n += 1;
                }
            }
            AgentMsg::Finished { .. } => break,
            AgentMsg::Fatal { message } => return Err(message.into()),
            _ => {}
        }
    }
    // mkdir+rmdir count as one pair.
    let per = if program.contains("mkdir: m") {
        2.0
    } else {
        1.0
    };
    Ok(n as f64 / per / ((last - first) as f64 / 1e9))
}
