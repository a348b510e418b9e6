//! VM tests: boot real kernels in QEMU with the agent as init. Slow (seconds
//! per boot under TCG), so ignored by plain `cargo test`; run them with
//!
//! ```text
//! cargo test -p cgstorm-vm --test boot_vm -- --ignored --test-threads=1
//! ```
//!
//! Environment:
//! - `CGSTORM_AGENT`: a static agent binary (default: build it with cargo).
//! - `CGSTORM_ACCEL`: auto (default), kvm or tcg.
//! - `CGSTORM_TEST_KERNELS`: colon-separated bzImages / trees, or `debian`
//!   (default: the Debian kernel, fetched if missing, and
//!   `../shared/kernels/bzImage-6.12-lockdep` when present).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cgstorm_proto::proto::ModuleOutcome;
use cgstorm_vm::kernel::{self, Kernel, KernelSpec};
use cgstorm_vm::launch::{launch, AgentVmSpec};
use cgstorm_vm::machine::GUEST_TOOLS;
use cgstorm_vm::{AccelChoice, ConsoleEvent, Diagnosis, Pmem, Vm, VmSpec};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Says that a test, or a part of it, does not run, and why: on stderr past
/// the test harness's capture, so that it shows.
fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "boot_vm: SKIP: {why}");
}

/// The static agent: `$CGSTORM_AGENT`, or built now.
fn agent() -> PathBuf {
    cgstorm_vm::agent::locate_or_build(&workspace()).unwrap_or_else(|e| panic!("{e}"))
}

fn kernels() -> Vec<Kernel> {
    let specs: Vec<KernelSpec> = match std::env::var("CGSTORM_TEST_KERNELS") {
        Ok(list) => list
            .split(':')
            .map(|k| {
                if k == "debian" {
                    KernelSpec::Debian(None)
                } else {
                    KernelSpec::from_path(Path::new(k))
                }
            })
            .collect(),
        Err(_) => {
            let mut v = vec![KernelSpec::Debian(None)];
            let shared = workspace().join("../shared/kernels/bzImage-6.12-lockdep");
            if shared.exists() {
                v.push(KernelSpec::Image(shared));
            } else {
                skip(&format!(
                    "the 6.12 lockdep kernel: no kernel at {} (the shared 6.12 kernels are not here)",
                    shared.display()
                ));
            }
            v
        }
    };
    specs.iter().map(locate_or_fetch).collect()
}

fn locate_or_fetch(spec: &KernelSpec) -> Kernel {
    match kernel::locate(spec) {
        Ok(k) => k,
        Err(cgstorm_vm::KernelError::NotFetched { .. }) => {
            let script = workspace().join("vm/scripts/fetch-debian-kernel.sh");
            let ok = Command::new(script)
                .status()
                .expect("run the fetch script")
                .success();
            assert!(ok, "fetch-debian-kernel.sh failed");
            kernel::locate(spec).expect("kernel after fetching")
        }
        Err(e) => panic!("{e}"),
    }
}

fn accel() -> AccelChoice {
    std::env::var("CGSTORM_ACCEL").map_or(AccelChoice::Auto, |a| a.parse().expect("CGSTORM_ACCEL"))
}

fn spec(kernel: &Kernel, agent: &Path) -> AgentVmSpec {
    let mut s = AgentVmSpec::new(kernel.clone(), agent.to_path_buf());
    s.accel = accel();
    s.vm = VmSpec {
        memory_mib: 2048,
        cpus: 2,
        disks_mib: vec![128],
        pmem: Some(Pmem::Memmap {
            size_mib: 256,
            offset_mib: 1024,
        }),
        ..VmSpec::default()
    };
    // dynamic host binaries ride along with their libraries
    s.binaries = GUEST_TOOLS
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    s
}

/// Whether any live process mentions `needle` on its command line.
fn process_mentions(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            hits.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    hits
}

/// Waits for a console line containing `needle`.
fn await_console(vm: &mut dyn Vm, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match vm.console_line(Duration::from_millis(200)) {
            ConsoleEvent::Line(l) if l.contains(needle) => return true,
            ConsoleEvent::Closed => return false,
            _ => {}
        }
    }
    false
}

#[test]
#[ignore = "boots VMs; run with --ignored"]
fn agent_says_hello_sees_devices_and_powers_off() {
    let agent = agent();
    for kernel in kernels() {
        let vm = launch(spec(&kernel, &agent))
            .unwrap_or_else(|e| panic!("{}: {e}", kernel.image.display()));
        let h = &vm.hello;
        println!(
            "{} ({}): hello after {:.2} s under {}, guest uptime {} ms, {} modules",
            kernel.release,
            kernel.image.display(),
            vm.boot_time.as_secs_f64(),
            vm.accel,
            h.uptime_ms,
            vm.modules.len()
        );
        assert_eq!(h.kernel_release, kernel.release);
        assert!(h.pid1);
        assert!(
            h.missing_devices.is_empty(),
            "missing {:?}",
            h.missing_devices
        );
        for dev in ["vda", "pmem0", "kmsg", "console"] {
            assert!(
                h.devices.iter().any(|d| d == dev),
                "no /dev/{dev} in {:?}",
                h.devices
            );
        }
        assert!(h.warnings.is_empty(), "warnings: {:?}", h.warnings);
        if kernel.modules.is_some() {
            let names: Vec<&str> = vm.modules.iter().map(|m| m.name.as_str()).collect();
            for m in ["virtio_console", "virtio_blk", "nd_pmem", "nd_e820", "xfs"] {
                assert!(names.contains(&m), "{m} not in the load list {names:?}");
            }
            for m in &h.modules {
                assert!(matches!(m.outcome, ModuleOutcome::Loaded), "{m:?}");
            }
        }
        let dir = vm.vm.dir().to_string_lossy().into_owned();
        let pid = vm.vm.pid();
        let status = vm.shutdown().expect("clean power off");
        assert_eq!(status, "exit code 0");
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "qemu {pid} still there"
        );
        assert!(
            process_mentions(&dir).is_empty(),
            "qemu left behind: {:?}",
            process_mentions(&dir)
        );
        assert!(!Path::new(&dir).exists(), "{dir} not removed");
    }
}

#[test]
#[ignore = "boots a VM; run with --ignored"]
fn sysrq_reaches_the_kernel_and_drop_kills_qemu() {
    let agent = agent();
    let kernel = kernels().remove(0);
    let mut vm = launch(spec(&kernel, &agent)).unwrap_or_else(|e| panic!("{e}"));
    let timeout = vm.accel.scale(Duration::from_secs(5));
    vm.vm.diagnose(Diagnosis::Sysrq('w')).unwrap();
    assert!(
        await_console(&mut vm.vm, "sysrq: Show Blocked State", timeout),
        "no sysrq output; console tail:\n{}",
        vm.vm.console_tail()
    );
    let dir = vm.vm.dir().to_string_lossy().into_owned();
    let pid = vm.vm.pid();
    drop(vm);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "qemu {pid} survived the drop"
    );
    assert!(process_mentions(&dir).is_empty());
}

#[test]
#[ignore = "boots a VM with virtme-ng; run with --ignored"]
fn virtme_ng_runs_the_agent() {
    let vng = std::env::var("CGSTORM_VNG").unwrap_or_else(|_| "vng".into());
    if Command::new(&vng).arg("--version").output().is_err() {
        skip(&format!("{vng} not installed (pip install virtme-ng)"));
        return;
    }
    // vng shares the host root over 9p: the kernel needs CONFIG_9P_FS, which
    // the Debian cloud kernel lacks.
    let image = std::env::var_os("CGSTORM_VNG_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/kernels/bzImage-6.12-lockdep"));
    if !image.exists() {
        skip(&format!("no kernel with 9p at {}", image.display()));
        return;
    }
    let kernel = kernel::locate(&KernelSpec::Image(image)).unwrap();
    let mut s = spec(&kernel, &agent());
    s.binaries.clear();
    let mut vm =
        cgstorm_vm::launch_virtme(s, Path::new(&vng), true).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "vng: hello after {:.2} s under {}",
        vm.boot_time.as_secs_f64(),
        vm.accel
    );
    assert!(!vm.hello.pid1, "under virtme-ng the agent is not init");
    assert!(
        vm.hello.missing_devices.is_empty(),
        "{:?}",
        vm.hello.missing_devices
    );
    let timeout = vm.accel.scale(Duration::from_secs(5));
    vm.vm.diagnose(Diagnosis::Sysrq('w')).unwrap();
    assert!(
        await_console(&mut vm.vm, "sysrq: Show Blocked State", timeout),
        "no sysrq output; console tail:\n{}",
        vm.vm.console_tail()
    );
    let dir = vm.vm.dir().to_string_lossy().into_owned();
    vm.shutdown().expect("vng exits after the agent does");
    assert!(
        process_mentions(&dir).is_empty(),
        "left behind: {:?}",
        process_mentions(&dir)
    );
}
