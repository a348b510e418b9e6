//! Choosing the accelerator: KVM when it works, TCG otherwise.
//!
//! `/dev/kvm` being present and answering is not enough: in a nested guest
//! whose hypervisor does not really support nesting, a KVM guest hangs in the
//! firmware and never reaches the kernel. So `auto` also boots the kernel
//! briefly under KVM and waits for its first console line; the verdict is
//! kept for the rest of the host's boot (`~/.cache/cgstorm/kvm-probe`).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use crate::error::HostError;
use crate::qemu::child::GuardedChild;

/// How long the KVM probe boot may take to print the kernel banner; a
/// working KVM does it in well under a second.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the user asked for (`--accel auto|kvm|tcg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// KVM if a probe boot works, else TCG.
    #[default]
    Auto,
    /// KVM, or fail.
    Kvm,
    /// TCG (emulation), always works, about 10x slower.
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(format!("unknown accelerator {s:?}: want auto, kvm or tcg")),
        }
    }
}

impl fmt::Display for AccelChoice {
    /// The name `--accel` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccelChoice::Auto => "auto",
            AccelChoice::Kvm => "kvm",
            AccelChoice::Tcg => "tcg",
        })
    }
}

/// The accelerator a VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

impl Accel {
    /// How much longer things take than under KVM; multiply timeouts by it.
    pub fn timeout_scale(self) -> u32 {
        match self {
            Accel::Kvm => 1,
            Accel::Tcg => 10,
        }
    }

    /// `base` scaled for this accelerator.
    pub fn scale(self, base: Duration) -> Duration {
        base * self.timeout_scale()
    }

    /// The QEMU arguments selecting it.
    pub fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
            // `max` gives the guest every feature TCG emulates (SSE4.2 for
            // crc32c-intel, say) instead of the bare qemu64 model, but not
            // 5-level paging: with it the 6.12 KASAN kernel reports a
            // wild-memory-access in handle_edge_irq 6 ms into every boot.
            Accel::Tcg => &["-accel", "tcg", "-cpu", "max,la57=off"],
        }
    }

    /// The QEMU machine type.
    ///
    /// Under TCG, `pc` (i440FX with PIIX) routes PCI interrupts through the
    /// ACPI interrupt links LNKA-LNKD, and enabling each link the devices use
    /// cost the 6.12 KASAN kernel 12 to 28 s of emulated AML and PCI config
    /// cycles (three links: 111-120 s to agent-ready). `q35` routes them
    /// through its GSI links, set up in milliseconds: 14.6 s on that kernel,
    /// no change on Debian's 6.1 or the lockdep kernel (BENCHMARKS.md).
    /// KVM keeps `pc`, its measured setting.
    pub fn machine(self) -> &'static str {
        match self {
            Accel::Kvm => "pc",
            Accel::Tcg => "q35",
        }
    }

    /// Kernel parameters the accelerator wants, before the user's own.
    ///
    /// Under TCG the kernel picks the HPET as clocksource, and every
    /// `clock_gettime` becomes a system call plus an emulated MMIO read:
    /// the agent timestamps each op twice, which cost it about a tenth of
    /// its migration rate (BENCHMARKS.md). TCG's TSC is monotonic and
    /// shared by all vCPUs, so the vDSO may read it.
    ///
    /// The soft-lockup and RCU-stall detectors are scaled like every other
    /// timeout: the guest cannot see that TCG (or a loaded host) starves its
    /// vCPUs, so at their defaults (20 s, 21 s) a slow boot on a busy host
    /// reports a "soft lockup" in whatever ran (seen while fuzzing with
    /// kernel builds alongside). Real lockups still show, at 60 s.
    pub fn kernel_params(self) -> &'static [&'static str] {
        match self {
            Accel::Kvm => &[],
            Accel::Tcg => &[
                "clocksource=tsc",
                "tsc=reliable",
                "watchdog_thresh=30",
                "rcupdate.rcu_cpu_stall_timeout=60",
            ],
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Resolves a choice into an accelerator. `Auto` probes once per process
/// (with `kernel`, booted without initramfs until its first console line).
pub fn resolve(choice: AccelChoice, qemu: &Path, kernel: &Path) -> Result<Accel, HostError> {
    static AUTO: OnceLock<Accel> = OnceLock::new();
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm => kvm_device_usable()
            .map(|()| Accel::Kvm)
            .map_err(HostError::KvmUnusable),
        AccelChoice::Auto => Ok(*AUTO.get_or_init(|| {
            if kvm_device_usable().is_err() {
                return Accel::Tcg;
            }
            let cache = verdict_file();
            let boot = host_boot_id();
            if let Some(a) = boot.as_deref().and_then(|b| cached_verdict(&cache, b)) {
                return a;
            }
            let a = if probe_boot(qemu, kernel, PROBE_TIMEOUT) {
                Accel::Kvm
            } else {
                Accel::Tcg
            };
            if let Some(b) = boot {
                let _ = std::fs::create_dir_all(crate::kernel::cache_root());
                let _ = std::fs::write(&cache, format!("{b}\n{a}\n"));
            }
            a
        })),
    }
}

/// Where `auto`'s verdict is kept across processes: whether KVM can boot
/// a guest does not change while the host runs, and the probe costs up to
/// [`PROBE_TIMEOUT`] where it cannot (nested KVM). Kept with the host's
/// boot id, so a reboot probes again; delete the file to probe now.
fn verdict_file() -> std::path::PathBuf {
    crate::kernel::cache_root().join("kvm-probe")
}

fn host_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// The verdict in `file` if it was made in host boot `boot`.
fn cached_verdict(file: &Path, boot: &str) -> Option<Accel> {
    let text = std::fs::read_to_string(file).ok()?;
    parse_verdict(&text, boot)
}

fn parse_verdict(text: &str, boot: &str) -> Option<Accel> {
    let mut lines = text.lines();
    if lines.next()? != boot {
        return None;
    }
    match lines.next()? {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

/// Whether `/dev/kvm` opens read-write and answers `KVM_GET_API_VERSION`.
pub fn kvm_device_usable() -> Result<(), String> {
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
    const KVM_API_VERSION: libc::c_int = 12;
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an int;
    // the fd is valid for the duration of the call since `kvm` is alive.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        return Err(format!(
            "KVM_GET_API_VERSION returned {version}, want {KVM_API_VERSION}"
        ));
    }
    Ok(())
}

/// Boots `kernel` under KVM without initramfs and reports whether the kernel
/// banner (`Linux version`) reaches the serial console within `timeout`.
pub fn probe_boot(qemu: &Path, kernel: &Path, timeout: Duration) -> bool {
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 earlyprintk=serial panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok(mut child) = GuardedChild::spawn(cmd) else {
        return false;
    };
    let Some(mut out) = child.take_stdout() else {
        return false;
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(13).any(|w| w == b"Linux version") {
                let _ = tx.send(());
                break;
            }
        }
    });
    let ok = rx.recv_timeout(timeout).is_ok();
    drop(child); // kills the probe VM
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_verdict_holds_for_its_host_boot_only() {
        assert_eq!(parse_verdict("b1\ntcg\n", "b1"), Some(Accel::Tcg));
        assert_eq!(parse_verdict("b1\nkvm\n", "b1"), Some(Accel::Kvm));
        assert_eq!(parse_verdict("b1\nkvm\n", "b2"), None);
        assert_eq!(parse_verdict("b1\n", "b1"), None);
        assert_eq!(parse_verdict("b1\nhvf\n", "b1"), None);
    }

    #[test]
    fn parses_choices() {
        assert_eq!("auto".parse::<AccelChoice>().unwrap(), AccelChoice::Auto);
        assert_eq!("kvm".parse::<AccelChoice>().unwrap(), AccelChoice::Kvm);
        assert_eq!("tcg".parse::<AccelChoice>().unwrap(), AccelChoice::Tcg);
        assert!("hvf"
            .parse::<AccelChoice>()
            .unwrap_err()
            .contains("auto, kvm or tcg"));
        for c in [AccelChoice::Auto, AccelChoice::Kvm, AccelChoice::Tcg] {
            assert_eq!(c.to_string().parse::<AccelChoice>().unwrap(), c);
        }
    }

    #[test]
    fn tcg_scales_timeouts() {
        assert_eq!(
            Accel::Tcg.scale(Duration::from_secs(3)),
            Duration::from_secs(30)
        );
        assert_eq!(
            Accel::Kvm.scale(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn tcg_needs_no_probe() {
        assert_eq!(
            resolve(AccelChoice::Tcg, Path::new("/nonexistent"), Path::new("/x")).unwrap(),
            Accel::Tcg
        );
    }
}
