//! Kernel coverage sees kernel code: on a kernel with KCOV, a program that
//! writes through a memcg and migrates a task brings edges that `mkdir`
//! and `rmdir` alone do not, and running `mkdir` again brings (almost)
//! none; and a second VM, booted afresh (KASLR puts its kernel elsewhere),
//! gives `mkdir`/`rmdir` (almost) the same edges as the first: edges name
//! kernel code, not where this boot put it. A spawned task's coverage
//! counts too: a program whose only writer is a task, killed while it
//! writes, brings PCs of the write path (`generic_perform_write`), which
//! its lane (spawn, sleep, kill) never runs. And the generator's
//! `ForeignDirty` recipe (seed thread 001; its first choices, as
//! `Recipe::program` lines them up) reaches its mechanism where KCOV sees
//! it: the lane's fsync of an inode a task in another memcg keeps
//! dirtying runs `inode_switch_wbs` (in one of up to three runs: writeback
//! timing decides how often the inode is found foreign).
//!
//! `cargo run --release -p cgstorm-vm --example cover_check -- BZIMAGE`
//! Exit 0 pass, 1 fail, 2 when the kernel has no KCOV (said, not passed).

use std::process::ExitCode;

use cgstorm_proto::proto::{self, AgentMsg, HostMsg, RunOrder};
use cgstorm_vm::vm::Vm;
use cgstorm_workloads::gen::Recipe;

const MKDIR: &str = r#"
lanes:
  - name: l0
    ops:
      - repeat:
          count: 20
          ops:
            - {mkdir: a}
            - {rmdir: a}
"#;

const WRITE_AND_MIGRATE: &str = r#"
lanes:
  - name: l0
    ops:
      - {cgroup.subtree_control: {cg: /, change: "+memory"}}
      - {mkdir: a}
      - {mkdir: b}
      - {memory.max: {cg: a, value: 8M}}
      - spawn: {task: s, sleeper: {}}
      - {cgroup.procs: {task: s, cg: a}}
      - {cgroup.procs: {task: s, cg: b}}
      - spawn: {task: w, cg: a, writer: {file: tmp/f, bytes: 16M, bs: 64K}}
      - {sleep: 300ms}
      - {write: {file: tmp/g, bytes: 1M, bs: 4K}}
      - {kill: w}
      - {kill: s}
"#;

/// The lane spawns, sleeps and kills; the writing is the task's alone.
const TASK_WRITES: &str = r#"
lanes:
  - name: l0
    ops:
      - {cgroup.subtree_control: {cg: /, change: "+memory"}}
      - {mkdir: a}
      - spawn: {task: w, cg: a, writer: {file: tmp/f, bytes: 1M, bs: 64K, loop: true}}
      - {sleep: 300ms}
      - {kill: w}
"#;

/// How many fsyncs the check's `ForeignDirty` runs: the generator draws
/// 10 to 16 (`FOREIGN_FSYNCS`), and 10 leave too little margin for a check
/// that wants the mechanism every time (session 20: a draw with 10
/// switched in one VM run and in none of three in the next).
const FOREIGN_FSYNCS: u32 = 12;

/// The function `ForeignDirty` is for.
const SWITCH: &str = "inode_switch_wbs";

/// A function only [`TASK_WRITES`]'s task runs.
const TASK_ONLY: &str = "generic_perform_write";

mod common;

fn main() -> ExitCode {
    match check() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cover_check: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let Some(image) = std::env::args().nth(1) else {
        return Err("usage: cover_check BZIMAGE".into());
    };
    let spec = common::kernel_spec(&image);
    // The campaigns' machine: ForeignDirty needs its scratch disks.
    let mut vm = common::boot_machine(&spec)?;
    if !vm.hello.features.as_ref().is_some_and(|f| f.kcov) {
        println!("cover_check: SKIP: {} has no KCOV", vm.hello.kernel_release);
        let _ = vm.shutdown();
        return Ok(ExitCode::from(2));
    }
    let (first, pcs) = run(&mut vm.vm, MKDIR, true)?;
    let mkdir = first.len();
    let mkdir_again = run(&mut vm.vm, MKDIR, false)?.0.len();
    let (_, task_pcs) = run(&mut vm.vm, TASK_WRITES, true)?;
    let more = run(&mut vm.vm, WRITE_AND_MIGRATE, false)?.0.len();
    let symbols = symbols(&mut vm.vm)?;
    let mut switched = Vec::new();
    let foreign_dirty = Recipe::ForeignDirty.program(FOREIGN_FSYNCS).to_yaml();
    for _ in 0..3 {
        let (_, pcs) = run(&mut vm.vm, &foreign_dirty, true)?;
        switched.push(in_function(&symbols, &pcs, SWITCH));
        if switched.last() > Some(&0) {
            break;
        }
    }
    println!("cover_check: ForeignDirty's PCs in {SWITCH}, by run: {switched:?}");
    let in_task = in_function(&symbols, &task_pcs, TASK_ONLY);
    println!(
        "cover_check: a program whose only writer is a spawned task (killed): {} PCs, {in_task} in {TASK_ONLY}",
        task_pcs.len()
    );
    let release = vm.hello.kernel_release.clone();
    let _ = vm.shutdown();
    let mut vm = common::boot_machine(&spec)?;
    let second = run(&mut vm.vm, MKDIR, true)?.0;
    let _ = vm.shutdown();
    let shared = first
        .iter()
        .filter(|e| second.binary_search(e).is_ok())
        .count();
    println!(
        "cover_check: {image} on {release}: mkdir/rmdir {mkdir} edges, the same again \
         {mkdir_again} new, a memcg write and migrations then {more} new; in a second boot \
         mkdir/rmdir {} edges, {shared} of them as in the first",
        second.len()
    );
    // The PCs name kernel functions: mkdir's include cgroup_mkdir's.
    let named: Vec<&str> = pcs
        .iter()
        .filter_map(|&pc| function(&symbols, pc))
        .collect();
    let in_mkdir = named.iter().filter(|f| **f == "cgroup_mkdir").count();
    println!(
        "cover_check: mkdir/rmdir ran {} PCs, {} of them in a function of the {} text symbols, {in_mkdir} in cgroup_mkdir",
        pcs.len(),
        named.len(),
        symbols.len()
    );
    let ok = in_mkdir > 0
        && in_task > 0
        && switched.iter().any(|&n| n > 0)
        && named.len() * 100 >= pcs.len() * 99
        && mkdir > 100
        && more > 100
        && more > 10 * mkdir_again.max(1)
        && shared * 10 >= mkdir.max(second.len()) * 9;
    if ok {
        println!("cover_check: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "cover_check: FAIL: want mkdir to cover > 100 edges, the write and migrations > 100 \
             new ones, > 10x what mkdir again brings, a second boot's mkdir to share \
             >= 90 % of its edges with the first's, >= 99 % of mkdir's PCs to fall in \
             the kernel's functions, some in cgroup_mkdir, and a spawned writer's PCs \
             to include {TASK_ONLY}'s, and ForeignDirty to run {SWITCH} in one of three runs"
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Runs `program`; the edges the agent sent (all of them with `afresh`,
/// else those new since the last program), sorted, and the PCs it had not
/// sent before.
fn run(
    vm: &mut dyn Vm,
    program: &str,
    afresh: bool,
) -> Result<(Vec<u32>, Vec<u32>), Box<dyn std::error::Error>> {
    proto::write_frame(
        vm.agent(),
        &HostMsg::Run(RunOrder {
            program: program.to_string(),
            duration_ms: 2000,
            stall_ms: 600_000,
            cover: true,
            cover_afresh: afresh,
            ..Default::default()
        }),
    )?;
    let mut got = None;
    loop {
        match proto::read_frame::<_, AgentMsg>(vm.agent())? {
            AgentMsg::Cover {
                edges,
                pcs,
                error: None,
            } => got = Some((edges, pcs)),
            AgentMsg::Cover { error: Some(e), .. } => return Err(e.into()),
            AgentMsg::Finished { .. } => break,
            AgentMsg::Fatal { message } => return Err(message.into()),
            _ => {}
        }
    }
    proto::write_frame(vm.agent(), &HostMsg::Reset)?;
    loop {
        if let AgentMsg::ResetDone { .. } = proto::read_frame::<_, AgentMsg>(vm.agent())? {
            break;
        }
    }
    got.ok_or_else(|| "the agent sent no coverage".into())
}

/// The kernel's text symbols from the agent: `(link-time address, name)`,
/// sorted.
fn symbols(vm: &mut dyn Vm) -> Result<Vec<(u32, String)>, Box<dyn std::error::Error>> {
    proto::write_frame(vm.agent(), &HostMsg::Symbols)?;
    loop {
        match proto::read_frame::<_, AgentMsg>(vm.agent())? {
            AgentMsg::Symbols { text, error: None } => {
                return Ok(text
                    .lines()
                    .filter_map(|l| {
                        let (a, n) = l.split_once(' ')?;
                        Some((u32::from_str_radix(a, 16).ok()?, n.to_string()))
                    })
                    .collect())
            }
            AgentMsg::Symbols { error: Some(e), .. } => return Err(e.into()),
            _ => {}
        }
    }
}

/// How many of `pcs` are in the function `name` (a KCOV PC is a return
/// address: the byte before it is in the function).
fn in_function(symbols: &[(u32, String)], pcs: &[u32], name: &str) -> usize {
    pcs.iter()
        .filter(|&&pc| function(symbols, pc.wrapping_sub(1)) == Some(name))
        .count()
}

/// The function `pc` is in: the last symbol at or before it, if it is not
/// the last symbol of all (past the text's end).
fn function(symbols: &[(u32, String)], pc: u32) -> Option<&str> {
    let i = symbols.partition_point(|(a, _)| *a <= pc);
    (i > 0 && i < symbols.len()).then(|| symbols[i - 1].1.as_str())
}
