//! The agent's kmemleak scans report a real leak: on a kernel built with
//! `build-kernel.sh --flavor kmemleak`, the test module leaks 512 bytes
//! (`cgstorm_splat.ko kind=leak`), and within [`RESETS`] resets the agent's
//! scan prints it; the console parser must title it `memory leak in
//! splat_leak`. Before the module, the same resets must print no leak (what
//! the boot left is forgotten).
//!
//! `cargo run --release -p cgstorm-vm --example kmemleak_check -- KERNEL MODULE`
//! (KERNEL: the kmemleak bzImage; MODULE: vm/testmod's cgstorm_splat.ko built
//! for it). Exit 0 pass, 1 fail.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cgstorm_proto::proto::{self, AgentMsg, HostMsg, ShellOrder};
use cgstorm_vm::vm::Vm;
use cgstorm_vm::ConsoleEvent;

mod common;

/// Resets to run: the agent scans every 20th.
const RESETS: usize = 21;

fn main() -> ExitCode {
    common::exit("kmemleak_check", check())
}

fn check() -> Result<bool, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(kernel), Some(module)) = (args.next(), args.next()) else {
        return Err("usage: kmemleak_check KERNEL MODULE".into());
    };
    let spec = common::kernel_spec(&kernel);
    let module = std::fs::read(&module).map_err(|e| format!("read {module}: {e}"))?;
    let mut vm = common::boot(
        &spec,
        vec![PathBuf::from("/bin/busybox")],
        Vec::new(),
        Duration::from_secs(900),
    )?;
    if !vm.hello.features.as_ref().is_some_and(|f| f.kmemleak) {
        return Err("this kernel has no kmemleak (build it with --flavor kmemleak)".into());
    }
    let mut console = String::new();
    let clean = resets(&mut vm.vm, &mut console)?;
    let before = cgstorm_report::parse(&console);
    proto::write_frame(
        vm.vm.agent(),
        &HostMsg::Shell(ShellOrder {
            script: "insmod ./splat.ko kind=leak".into(),
            files: vec![("splat.ko".into(), module)],
            timeout_ms: 60_000,
        }),
    )?;
    loop {
        if let AgentMsg::ShellDone { status, stderr, .. } =
            proto::read_frame::<_, AgentMsg>(vm.vm.agent())?
        {
            if status != 0 {
                return Err(format!("insmod failed ({status}): {stderr}").into());
            }
            break;
        }
    }
    // kmemleak reports objects at least 5 s old.
    std::thread::sleep(Duration::from_secs(6));
    console.clear();
    let leaked = resets(&mut vm.vm, &mut console)?;
    let after = cgstorm_report::parse(&console);
    let _ = vm.shutdown();
    let titles =
        |r: &[cgstorm_report::Report]| r.iter().map(|r| r.title.clone()).collect::<Vec<_>>();
    println!(
        "kmemleak_check: {RESETS} resets before the leak ({clean:?} ms): reports {:?}",
        titles(&before)
    );
    println!(
        "kmemleak_check: {RESETS} resets after it ({leaked:?} ms): reports {:?}",
        titles(&after)
    );
    let mut ok = true;
    if !before.is_empty() {
        println!("kmemleak_check: FAIL: reports before the module leaked");
        ok = false;
    }
    if !after.iter().any(|r| r.title == "memory leak in splat_leak") {
        println!("kmemleak_check: FAIL: no `memory leak in splat_leak` after the module leaked");
        ok = false;
    }
    Ok(ok)
}

/// Runs [`RESETS`] resets, keeping the console meanwhile; the longest
/// reset's time, in ms.
fn resets(vm: &mut dyn Vm, console: &mut String) -> Result<u128, Box<dyn std::error::Error>> {
    let mut longest = 0;
    for _ in 0..RESETS {
        let t = Instant::now();
        proto::write_frame(vm.agent(), &HostMsg::Reset)?;
        loop {
            if let AgentMsg::ResetDone { .. } = proto::read_frame::<_, AgentMsg>(vm.agent())? {
                break;
            }
        }
        longest = longest.max(t.elapsed().as_millis());
        // What the reset printed.
        let quiet = Instant::now() + Duration::from_secs(2);
        while Instant::now() < quiet {
            match vm.console_line(Duration::from_millis(200)) {
                ConsoleEvent::Line(l) => {
                    console.push_str(&l);
                    console.push('\n');
                }
                ConsoleEvent::Timeout => {}
                ConsoleEvent::Closed => return Err("the vm went away".into()),
            }
        }
    }
    Ok(longest)
}
