//! The agent's reset tells a leak from a legitimate hold: a removed memcg
//! that still holds tmpfs pages when its program ends is freed once the
//! reset unmounts the tmpfs (no leftover), but one whose pages stay pinned
//! (the planted leak: the program's vmsplice pin is left held) can never
//! be freed, and the reset reports it as a leak. And a v1 hierarchy
//! unmounted with a child left in it (it lingers, bound to memory) is no
//! leak either: the reset mounts it again, removes the child, unmounts it.
//! Nor is a memcg removed after its writeback went through a loop device,
//! whose idle I/O worker holds it for a minute: the reset deletes the
//! detached loop devices, which frees their workers. And the pages of a DAX
//! file pinned by a vmsplice are idle once the pin is released at the
//! program's end, but a pin left held (planted) keeps them referenced,
//! which the reset's truncate of the file finds and reports.
//!
//! `cargo run --release -p cgstorm-vm --example leak_check -- [KERNEL]`
//! (KERNEL: `debian` (default) or a bzImage). Exit 0 pass, 1 fail.

use std::process::ExitCode;

use cgstorm_proto::contract::{LEAK_DAX, LEAK_DYING_V2};
use cgstorm_proto::proto::{self, AgentMsg, HostMsg, RunOrder};
use cgstorm_vm::vm::Vm;

/// Page cache charged to memcg `a` (its writer wrote it), pinned by a
/// vmsplice of a mapping of it, then `a` removed: `a` dies holding pages.
const HOLD: &str = r#"
lanes:
  - name: l0
    ops:
      - {cgroup.subtree_control: {cg: /, change: "+memory"}}
      - {mkdir: a}
      - spawn: {task: w, cg: a, writer: {file: tmp/f, bytes: 1M, bs: 64K}}
      - {wait: w}
      - {open: {fd: f, file: tmp/f}}
      - {mmap: {map: m, fd: f, len: 1M}}
      - {pin: {pin: x, map: m, via: vmsplice}}
      - {munmap: m}
      - {close: f}
      - {rmdir: a}
"#;

/// The v1 memory hierarchy unmounted while it still has a child.
const V1_CHILD: &str = r#"
lanes:
  - name: l0
    ops:
      - v1_mount
      - {mkdir: v1:b}
      - v1_umount
"#;

/// Writeback of memcg `a`'s pages through a loop device (the io
/// controller on, so the loop's I/O worker serves `a`'s blkcg), then the
/// loop detached and `a` removed.
const LOOP_IO: &str = r#"
lanes:
  - name: l0
    ops:
      - {cgroup.subtree_control: {cg: /, change: "+memory +io"}}
      - {mkdir: a}
      - {losetup: {dev: loop0, file: tmp/img, size: 64M}}
      - {mkfs: {dev: loop0, fs: ext4}}
      - {mount: {at: m0, fs: ext4, dev: loop0}}
      - spawn: {task: w, cg: a, writer: {file: m0/f, bytes: 1M, bs: 64K}}
      - {wait: w}
      - {fsync: m0/f}
      - {umount: m0}
      - {losetup_detach: loop0}
      - {rmdir: a}
"#;

/// A DAX file on pmem, mapped, touched and its pages referenced by a
/// vmsplice into a pipe; the mapping and file then let go. Released at the
/// program's end, the pages are idle by the reset; left held (planted),
/// a truncate of the file waits for them, and the reset reports it.
const DAX_PIN: &str = r#"
lanes:
  - name: l0
    ops:
      - {mkfs: {dev: pmem0, fs: ext4}}
      - {mount: {at: p, fs: ext4, dev: pmem0, opts: [dax]}}
      - {write: {file: p/f, bytes: 64K, bs: 64K}}
      - {open: {fd: f, file: p/f}}
      - {mmap: {map: m, fd: f, len: 64K}}
      - {touch: {map: m, write: true}}
      - {pin: {pin: x, map: m, via: vmsplice}}
      - {munmap: m}
      - {close: f}
"#;

mod common;

fn main() -> ExitCode {
    common::exit("leak_check", check())
}

fn check() -> Result<bool, Box<dyn std::error::Error>> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "debian".into());
    let spec = common::kernel_spec(&which);
    // The campaigns' machine (the DAX program needs its pmem), with
    // mkfs.ext4 for the loop device's filesystem.
    let mut vm = common::boot_machine(&spec)?;
    // First: the planted leak keeps memory busy on v2, where v1_mount needs it free.
    let v1 = run_and_reset(&mut vm.vm, V1_CHILD, false)?;
    let held = run_and_reset(&mut vm.vm, HOLD, false)?;
    let looped = run_and_reset(&mut vm.vm, LOOP_IO, false)?;
    let dax_released = run_and_reset(&mut vm.vm, DAX_PIN, false)?;
    // Last: the planted leaks. The memcg stays dying for good; the DAX
    // file's unmount with its pages held warns (and taints) on kernels
    // before 6.15.
    let leaked = run_and_reset(&mut vm.vm, HOLD, true)?;
    let dax_leaked = run_and_reset(&mut vm.vm, DAX_PIN, true)?;
    let release = vm.hello.kernel_release.clone();
    let _ = vm.shutdown();
    println!("leak_check: {release}: tmpfs pages of a removed memcg, reset leftovers: {held:?}");
    println!("leak_check: {release}: the same with its pin left held, reset leftovers: {leaked:?}");
    println!(
        "leak_check: {release}: a v1 hierarchy unmounted with a child, reset leftovers: {v1:?}"
    );
    println!(
        "leak_check: {release}: a memcg removed after writeback through a detached loop device, \
         reset leftovers: {looped:?}"
    );
    println!(
        "leak_check: {release}: a DAX page pin released at the program's end, reset leftovers: {dax_released:?}"
    );
    println!("leak_check: {release}: the same pin left held, reset leftovers: {dax_leaked:?}");
    let mut ok = true;
    if !dax_released.is_empty() {
        println!("leak_check: FAIL: a DAX pin released at the program's end was reported");
        ok = false;
    }
    if !dax_leaked.iter().any(|l| l.starts_with(LEAK_DAX)) {
        println!("leak_check: FAIL: a DAX pin never released was not reported");
        ok = false;
    }
    if !looped.is_empty() {
        println!("leak_check: FAIL: the reset did not free a memcg held by a loop device's worker");
        ok = false;
    }
    if !held.is_empty() {
        println!(
            "leak_check: FAIL: a legitimate hold (tmpfs pages, freed at the reset) was reported"
        );
        ok = false;
    }
    if !v1.is_empty() {
        println!("leak_check: FAIL: the reset did not undo a v1 hierarchy unmounted with a child");
        ok = false;
    }
    if !leaked.iter().any(|l| l.starts_with(LEAK_DYING_V2)) {
        println!("leak_check: FAIL: the planted leak (a pin never released) was not reported");
        ok = false;
    }
    Ok(ok)
}

/// Runs `program` (with `plant`, [`HOLD`]'s pin is left held), checks
/// every op went through, then resets; the reset's leftovers.
fn run_and_reset(
    vm: &mut dyn Vm,
    program: &str,
    plant: bool,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    proto::write_frame(
        vm.agent(),
        &HostMsg::Run(RunOrder {
            program: program.to_string(),
            duration_ms: 2000,
            stall_ms: 600_000,
            plant_leak: plant,
            ..Default::default()
        }),
    )?;
    loop {
        match proto::read_frame::<_, AgentMsg>(vm.agent())? {
            AgentMsg::Ops { events } => {
                if let Some(e) = events
                    .iter()
                    .find(|e| e.outcome != cgstorm_workloads::Outcome::Ok)
                {
                    return Err(format!(
                        "op {} returned {}: the hold was not built (program:{program})",
                        e.id, e.outcome
                    )
                    .into());
                }
            }
            AgentMsg::Finished { .. } => break,
            AgentMsg::Fatal { message } => return Err(message.into()),
            _ => {}
        }
    }
    proto::write_frame(vm.agent(), &HostMsg::Reset)?;
    loop {
        if let AgentMsg::ResetDone { leftovers, .. } = proto::read_frame::<_, AgentMsg>(vm.agent())?
        {
            return Ok(leftovers);
        }
    }
}
