//! What the agent does once the guard let it run: set the system up, say hello
//! on the virtio-serial port, then wait for the host's orders.

mod devices;
pub mod kmsg;
pub mod modules;
pub mod mounts;
mod port;
mod probe;
mod sysctl;

use std::fs::{self, File};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cgstorm_agent::cmdline::param;
use cgstorm_agent::contract::{
    DEVICES_PARAM, KMSG_PREFIX, MODULE_LIST, PORT_NAME, READY_LINE, SAVED_PARAM,
};
use cgstorm_agent::guard::{Admission, Mode};
use cgstorm_agent::proto::{self, AgentMsg, FrameError, Hello, HostMsg, PROTO_VERSION};
use nix::sys::reboot::{reboot, RebootMode};

use kmsg::klog;

/// How long to wait for devices and the port to show up after module loading.
/// Generous: under TCG with a debug kernel probing is slow.
const DEVICE_WAIT: Duration = Duration::from_secs(30);

/// How long the host end of the port may stay closed before the agent stops.
const HOST_GONE: Duration = Duration::from_secs(60);

/// Runs the agent. In PID 1 mode this only returns if power-off failed.
pub fn run(admission: Admission) -> ExitCode {
    let mode = admission.mode;
    let result = serve(admission);
    if let Err(e) = &result {
        klog!("fatal: {e}");
    }
    match mode {
        Mode::Pid1 => power_off(),
        Mode::Virtme if result.is_ok() => ExitCode::SUCCESS,
        Mode::Virtme => ExitCode::FAILURE,
    }
}

fn serve(admission: Admission) -> Result<(), String> {
    let mut warnings = mounts::mount_all()?;
    if let Err(e) = kmsg::open() {
        warnings.push(format!("open /dev/kmsg: {e}"));
    }
    let cmdline =
        fs::read_to_string("/proc/cmdline").map_err(|e| format!("read /proc/cmdline: {e}"))?;
    warnings.extend(sysctl::apply(&cmdline));
    let modules = modules::load_list(MODULE_LIST);
    if admission.mode == Mode::Virtme && modules.is_empty() {
        warnings.extend(modules::modprobe_workload_modules());
    }

    let wanted: Vec<String> = param(&cmdline, DEVICES_PARAM)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let features = Some(probe::probe());
    if let Some(f) = &features {
        klog!(
            "kernel features: controllers [{}], io.max {:?}, memory.swap.max {:?}, \
             memory.reclaim {:?}, cgroup.kill {:?}, v1 memory {:?}, tmpfs O_DIRECT {:?}, \
             kcov {}, fault injection {}, kmemleak {}, fs dax {:?}, cgroup writeback {:?}, \
             config.gz {}",
            f.controllers.join(" "),
            f.io_max,
            f.memory_swap_max,
            f.memory_reclaim,
            f.cgroup_kill,
            f.memcg_v1,
            f.tmpfs_direct_io,
            f.kcov,
            f.fault_injection,
            f.kmemleak,
            f.fs_dax,
            f.cgroup_writeback,
            if f.config.is_some() { "read" } else { "none" }
        );
        for n in &f.notes {
            klog!("kernel features: {n}");
        }
    }
    if features.as_ref().is_some_and(|f| f.kmemleak) {
        match crate::exec::kmemleak::setup() {
            Ok(()) => klog!(
                "kmemleak: scans every {} resets (what the boot left is forgotten)",
                crate::exec::kmemleak::EVERY
            ),
            Err(e) => warnings.push(e),
        }
    }
    let missing_devices = devices::wait_for(&wanted, DEVICE_WAIT);
    // A boot whose state the host saves after the hello: no module load may
    // be in flight in the saved state.
    if param(&cmdline, SAVED_PARAM).is_some() {
        modules::wait_deferred();
    }
    for w in &warnings {
        klog!("warning: {w}");
    }
    kmsg::log(READY_LINE.trim_start_matches(KMSG_PREFIX));

    let (port_path, mut port) =
        port::open(PORT_NAME, DEVICE_WAIT).map_err(|e| format!("open agent port: {e}"))?;
    klog!("talking on {}", port_path.display());
    let uts = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    let hello = Hello {
        proto: PROTO_VERSION,
        token: admission.token,
        kernel_release: uts.release().to_string_lossy().into_owned(),
        kernel_version: uts.version().to_string_lossy().into_owned(),
        pid1: admission.mode == Mode::Pid1,
        uptime_ms: uptime_ms(),
        modules,
        devices: devices::list(),
        missing_devices,
        warnings,
        features,
    };
    proto::write_frame(&mut port, &AgentMsg::Hello(hello.clone()))
        .map_err(|e| format!("send hello: {e}"))?;
    wait_for_orders(&mut port, hello)
}

/// Serves host messages until told to shut down. A virtio-serial port reads
/// as EOF while the host end is not connected, so EOF is retried, and only a
/// host gone for [`HOST_GONE`] counts as the end.
fn wait_for_orders(port: &mut File, mut hello: Hello) -> Result<(), String> {
    // The boot's token, on the kernel command line, is what the program's
    // tasks check before they run; a restored VM's hello token is the
    // host's name for this VM only.
    let token = hello.token.as_str().to_string();
    let mut gone_since: Option<Instant> = None;
    loop {
        match proto::read_frame::<_, HostMsg>(port) {
            Ok(HostMsg::Shutdown) => {
                klog!("shutting down");
                return Ok(());
            }
            Ok(HostMsg::Bench(order)) => {
                let result = crate::exec::bench::run(order, &token);
                proto::write_frame(port, &AgentMsg::BenchResult { order, result })
                    .map_err(|e| format!("send: {e}"))?;
            }
            Ok(HostMsg::Run(order)) => {
                gone_since = None;
                crate::exec::run(order, port, &token)?;
            }
            Ok(HostMsg::Reset) => {
                let (leftovers, laps) = crate::exec::reset::reset();
                proto::write_frame(port, &AgentMsg::ResetDone { leftovers, laps })
                    .map_err(|e| format!("send: {e}"))?;
            }
            Ok(HostMsg::Hello { token: fresh }) => {
                gone_since = None;
                hello.token = fresh;
                hello.uptime_ms = uptime_ms();
                klog!(
                    "hello again under a new token (uptime {} ms)",
                    hello.uptime_ms
                );
                proto::write_frame(port, &AgentMsg::Hello(hello.clone()))
                    .map_err(|e| format!("send: {e}"))?;
            }
            Ok(HostMsg::Symbols) => {
                let (text, error) = match crate::exec::kcov::symbols() {
                    Ok(t) => (t, None),
                    Err(e) => (String::new(), Some(e)),
                };
                proto::write_frame(port, &AgentMsg::Symbols { text, error })
                    .map_err(|e| format!("send: {e}"))?;
            }
            Ok(HostMsg::LeakScan) => {
                let (printed, error) = match crate::exec::kmemleak::scan_now() {
                    Ok(n) => (n, None),
                    Err(e) => (0, Some(e)),
                };
                crate::init::kmsg::log(
                    cgstorm_agent::contract::LEAK_SCAN_LINE
                        .trim_start_matches(cgstorm_agent::contract::KMSG_PREFIX),
                );
                proto::write_frame(port, &AgentMsg::LeakScanned { printed, error })
                    .map_err(|e| format!("send: {e}"))?;
            }
            Ok(HostMsg::Shell(order)) => {
                gone_since = None;
                let done = crate::exec::shell::run(&order);
                proto::write_frame(port, &done).map_err(|e| format!("send: {e}"))?;
            }
            Err(FrameError::Closed) => {
                let since = *gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= HOST_GONE {
                    klog!("host gone for {HOST_GONE:?}, shutting down");
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("read from host: {e}")),
        }
    }
}

/// Syncs and powers off (with QEMU's `-no-reboot`, QEMU then exits).
fn power_off() -> ExitCode {
    nix::unistd::sync();
    let err = reboot(RebootMode::RB_POWER_OFF).unwrap_err();
    klog!("power off failed: {err}");
    ExitCode::FAILURE
}

/// Guest uptime in milliseconds, from /proc/uptime.
fn uptime_ms() -> u64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1000.0) as u64)
}
