//! `cgstorm`: fuzz and reproduce cgroup-writeback, memcg, mount and DAX races
//! in a real kernel.
//!
//! Exit codes: 0 pass, 1 finding (or a disagreement with the model), 2 bad
//! input, 3 infrastructure failure, the same for every command
//! ([`run::error::exit_code`]).

mod check;
mod classify;
mod cover;
mod distill;
mod fuzz;
mod gen;
mod merge;
mod minimize;
mod report;
mod repro;
mod scenario;
mod soak;

use std::process::ExitCode;

// The engine (the library crate), under the names the commands use.
use cgstorm::{
    campaign, data, findings, history, kernel_args, kernel_code, markup, programs, run, vm_args,
    workdirs,
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cgstorm", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a program and print what the model predicts for every op.
    Check(check::CheckArgs),
    /// Write generated programs (the fuzzer's generator) to a directory.
    Gen(gen::GenArgs),
    /// Find kernel reports (lockdep, hung task, KASAN, WARN, …) in a console log.
    Classify(classify::ClassifyArgs),
    /// Boot a kernel, run a program in it and check every result against the model.
    Run(run::RunArgs),
    /// Write a standalone shell reproducer of a program or finding (and run it with --run).
    Repro(repro::ReproArgs),
    /// Fuzz: generate and mutate programs, run them in VMs kept up across
    /// programs, store findings with the command that replays them.
    Fuzz(fuzz::FuzzArgs),
    /// Shrink a failing program while the same finding still appears.
    Minimize(minimize::MinimizeArgs),
    /// Run a stored finding again with the programs that ran before it in
    /// its VM, in order, in one VM: for findings the program alone does not
    /// reproduce.
    Replay(history::ReplayArgs),
    /// The nightly mode: rotate through the scenarios and fuzzing for hours,
    /// resumable, with a text, JSON and KTAP summary.
    Soak(soak::SoakArgs),
    /// The mailing-list scenarios: list them, or run one by name.
    Scenario(scenario::ScenarioArgs),
    /// The fewest, shortest corpus programs that keep every kernel edge.
    Distill(distill::DistillArgs),
    /// Which kernel functions a campaign ran (KCOV), by subsystem: a table
    /// and an HTML page.
    Cover(cover::CoverArgs),
    /// Merge campaign workdirs (shards, machines) into one.
    Merge(merge::MergeArgs),
    /// Write one static HTML page of campaign workdirs: findings, kernels,
    /// plots of edges, programs and findings over time.
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Check(a) => check::run(a),
        Cmd::Gen(a) => gen::run(a),
        Cmd::Classify(a) => classify::run(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Repro(a) => repro::run(a),
        Cmd::Scenario(a) => scenario::run(a),
        Cmd::Fuzz(a) => fuzz::run(a),
        Cmd::Soak(a) => soak::run(a),
        Cmd::Minimize(a) => minimize::run(a),
        Cmd::Replay(a) => history::replay(a),
        Cmd::Distill(a) => distill::run(a),
        Cmd::Cover(a) => cover::run(a),
        Cmd::Merge(a) => merge::run(a),
        Cmd::Report(a) => report::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cgstorm: {e:#}");
            ExitCode::from(run::error::exit_code(&e))
        }
    }
}
