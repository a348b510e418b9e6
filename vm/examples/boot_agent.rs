//! Boots the agent VM (or a bare busybox initramfs) a few times and prints
//! how long each boot took.
//!
//! ```text
//! cargo run -p cgstorm-vm --example boot_agent -- [--kernel debian|PATH] \
//!     [--agent PATH] [--accel auto|kvm|tcg] [--runs N] [--busybox] [--nvdimm] [--vng] [--echo] \
//!     [--append PARAMS] [--qemu-arg ARG]...
//! ```
//! `--vng` boots through virtme-ng (`vng --force-9p`) instead of plain QEMU.
//! `--agent` defaults to the static release build
//! (`target/x86_64-unknown-linux-gnu/release/cgstorm-agent`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgstorm_vm::initramfs::Initramfs;
use cgstorm_vm::kernel::{self, KernelSpec};
use cgstorm_vm::launch::{launch, launch_virtme, random_token, AgentVm, AgentVmSpec};
use cgstorm_vm::qemu::{BootRequest, QemuVm};
use cgstorm_vm::{accel, AccelChoice, Pmem, Vm, VmSpec};

struct Args {
    kernel: KernelSpec,
    agent: PathBuf,
    accel: AccelChoice,
    runs: usize,
    busybox: bool,
    echo: bool,
    nvdimm: bool,
    vng: bool,
    append: Vec<String>,
    qemu_args: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a = Args {
        kernel: KernelSpec::Debian(None),
        agent: root.join("target/x86_64-unknown-linux-gnu/release/cgstorm-agent"),
        accel: AccelChoice::Auto,
        runs: 1,
        busybox: false,
        echo: false,
        nvdimm: false,
        vng: false,
        append: vec![],
        qemu_args: vec![],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--kernel" => {
                let v = value()?;
                a.kernel = if v == "debian" {
                    KernelSpec::Debian(None)
                } else {
                    KernelSpec::from_path(Path::new(&v))
                };
            }
            "--agent" => a.agent = value()?.into(),
            "--accel" => a.accel = value()?.parse()?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--busybox" => a.busybox = true,
            "--echo" => a.echo = true,
            "--nvdimm" => a.nvdimm = true,
            "--vng" => a.vng = true,
            "--append" => a
                .append
                .extend(value()?.split_whitespace().map(String::from)),
            "--qemu-arg" => a.qemu_args.push(value()?),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(a)
}

/// 2 GiB, 2 vCPUs, one 256 MiB scratch disk and 256 MiB of pmem (memmap=
/// carve-out, or an emulated NVDIMM).
fn vm_spec(args: &Args) -> VmSpec {
    let pmem = if args.nvdimm {
        Pmem::Nvdimm { size_mib: 256 }
    } else {
        Pmem::Memmap {
            size_mib: 256,
            offset_mib: 1024,
        }
    };
    VmSpec {
        memory_mib: 2048,
        cpus: 2,
        disks_mib: vec![256],
        pmem: Some(pmem),
        append: args.append.clone(),
        extra_args: args.qemu_args.clone(),
        ..VmSpec::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let kernel = kernel::locate(&args.kernel)?;
    println!(
        "kernel {} ({}), modules {:?}",
        kernel.image.display(),
        kernel.release,
        kernel.modules
    );
    let mut times = Vec::new();
    for run in 1..=args.runs {
        let t = if args.busybox {
            busybox_boot(&kernel, &args)?
        } else {
            agent_boot(&kernel, &args)?
        };
        println!("run {run}: {:.2} s", t.as_secs_f64());
        times.push(t.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{} runs: min {:.2} s, median {:.2} s, mean {mean:.2} s, max {:.2} s",
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}

fn agent_boot(
    kernel: &kernel::Kernel,
    args: &Args,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut spec = AgentVmSpec::new(kernel.clone(), args.agent.clone());
    spec.accel = args.accel;
    spec.vm = vm_spec(args);
    if args.echo {
        spec.console_sink = Some(Box::new(|l: &str| eprintln!("{l}")));
    }
    if args.vng {
        report(launch_virtme(spec, Path::new("vng"), true)?)
    } else {
        report(launch(spec)?)
    }
}

/// Prints what the agent said, shuts the VM down, returns the boot time.
fn report<V: Vm>(vm: AgentVm<V>) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = vm.boot_time;
    let h = &vm.hello;
    println!(
        "  {} accel {}: hello after {:.2} s (guest uptime {} ms); modules {}; missing {:?}; warnings {:?}",
        h.kernel_release,
        vm.accel,
        t.as_secs_f64(),
        h.uptime_ms,
        vm.modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(","),
        h.missing_devices,
        h.warnings
    );
    let failed: Vec<_> = h
        .modules
        .iter()
        .filter(|m| !matches!(m.outcome, cgstorm_proto::proto::ModuleOutcome::Loaded))
        .collect();
    if !failed.is_empty() {
        println!("  module loads not plain success: {failed:?}");
    }
    let t0 = Instant::now();
    let status = vm.shutdown()?;
    println!(
        "  shut down in {:.2} s ({status})",
        t0.elapsed().as_secs_f64()
    );
    Ok(t)
}

/// Boots `/bin/busybox` as init with a script that only powers off; the time
/// from starting QEMU to its exit is the floor any init can reach.
fn busybox_boot(
    kernel: &kernel::Kernel,
    args: &Args,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut img = Initramfs::create(&dir.path().join("bb.cpio"))?;
    img.add_host_file("/bin/busybox", Path::new("/bin/busybox"))?;
    img.add_file(
        "/init",
        0o755,
        b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n",
    )?;
    let initrd = img.finish()?;
    let mut spec = vm_spec(args);
    spec.kernel = kernel.image.clone();
    let accel = accel::resolve(args.accel, &spec.qemu, &spec.kernel)?;
    let started = Instant::now();
    let mut vm = QemuVm::boot(BootRequest {
        spec,
        initrd,
        token: random_token()?,
        accel,
        console_log: None,
        console_sink: if args.echo {
            Some(Box::new(|l: &str| eprintln!("{l}")))
        } else {
            None
        },
        qmp: false,
        incoming: None,
    })?;
    let status = vm
        .wait_exit(accel.scale(Duration::from_secs(12)))
        .ok_or("busybox vm did not power off")?;
    let t = started.elapsed();
    println!(
        "  busybox accel {accel}: powered off after {:.2} s ({status})",
        t.as_secs_f64()
    );
    Ok(t)
}
