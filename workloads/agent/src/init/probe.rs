//! Finding out at boot what the booted kernel has, by trying it: the
//! controllers of the cgroup v2 root, the interface files of a scratch
//! cgroup, a v1 memory hierarchy, `O_DIRECT` on tmpfs, the debugfs files of
//! KCOV, fault injection and kmemleak, the symbols in /proc/kallsyms that
//! only some configs build, and /proc/config.gz. The host builds the model
//! from this rather than from a config file that may be missing or stale.
//! Everything the probe changes it undoes before the hello.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use cgstorm_agent::proto::Features;
use nix::errno::Errno;
use nix::mount::{mount, umount, MsFlags};

use crate::exec::paths::CG2;
use crate::exec::reset::memory_bound_to_v1;

/// The scratch cgroup; removed before the hello.
const SCRATCH: &str = "/sys/fs/cgroup/cgstorm-probe";
/// Where the v1 memory hierarchy is tried.
const V1_DIR: &str = "/tmp/cgstorm-probe-v1";
/// How long memory may take to come back to v2 after the v1 probe.
const V1_RELEASE: Duration = Duration::from_secs(10);

/// Probes the booted kernel.
pub fn probe() -> Features {
    // The kernel's own lists are read beside the cgroup probes (reading
    // kallsyms takes a while under TCG; the v1 probe waits for RCU).
    let lists = std::thread::spawn(|| {
        let mut notes = Vec::new();
        let symbols = config_symbols(&mut notes);
        let config = proc_config(&mut notes);
        (symbols, config, notes)
    });
    let mut f = Features {
        controllers: controllers(),
        ..Features::default()
    };
    // First, while memory is unused on v2: a v1 mount binds it until the
    // hierarchy is gone.
    f.memcg_v1 = probe_v1(&mut f);
    probe_scratch(&mut f);
    f.tmpfs_direct_io = probe_tmpfs_direct(&mut f.notes);
    let debug = Path::new("/sys/kernel/debug");
    f.kcov = debug.join("kcov").exists();
    f.fault_injection = debug.join("fail_page_alloc").exists() || debug.join("failslab").exists();
    f.kmemleak = debug.join("kmemleak").exists();
    match lists.join() {
        Ok((symbols, config, notes)) => {
            if let Some([dax, wb]) = symbols {
                f.fs_dax = Some(dax);
                f.cgroup_writeback = Some(wb);
            }
            f.config = config;
            f.notes.extend(notes);
        }
        Err(_) => f
            .notes
            .push("kallsyms and config.gz: the probe thread panicked".into()),
    }
    f
}

/// Symbols that exist only when their config option is built: an exported
/// function of the option's own source file.
const CONFIG_SYMBOLS: [&str; 2] = [
    // fs/dax.c, CONFIG_FS_DAX.
    "dax_iomap_rw",
    // fs/fs-writeback.c, under CONFIG_CGROUP_WRITEBACK.
    "wbc_account_cgroup_owner",
];

/// Whether each of [`CONFIG_SYMBOLS`] is in /proc/kallsyms; `None` (with a
/// note) when it cannot be read or lists nothing (CONFIG_KALLSYMS=n).
fn config_symbols(notes: &mut Vec<String>) -> Option<[bool; 2]> {
    use std::io::BufRead;
    let file = match fs::File::open("/proc/kallsyms") {
        Ok(f) => f,
        Err(e) => {
            notes.push(format!("config symbols: open /proc/kallsyms: {e}"));
            return None;
        }
    };
    let mut found = [false; 2];
    let mut lines = 0usize;
    for line in std::io::BufReader::with_capacity(1 << 16, file).lines() {
        let Ok(line) = line else { break };
        lines += 1;
        // "ffffffff81234560 T name [module]"
        let Some(name) = line.split_whitespace().nth(2) else {
            continue;
        };
        for (i, s) in CONFIG_SYMBOLS.iter().enumerate() {
            found[i] |= name == *s;
        }
    }
    if lines == 0 {
        notes.push("config symbols: /proc/kallsyms is empty (CONFIG_KALLSYMS=n)".into());
        return None;
    }
    Some(found)
}

/// The `CONFIG_` lines of /proc/config.gz, unpacked by busybox's zcat;
/// `None` when the kernel has no config.gz (the usual case: no note).
fn proc_config(notes: &mut Vec<String>) -> Option<String> {
    let path = Path::new("/proc/config.gz");
    if !path.exists() {
        return None;
    }
    let mut cmd = match crate::exec::shell::busybox() {
        Ok(b) => {
            let mut c = std::process::Command::new(b);
            c.arg("zcat");
            c
        }
        Err(_) => std::process::Command::new("zcat"),
    };
    match cmd.arg(path).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("CONFIG_") || l.starts_with("# CONFIG_"))
                .collect();
            Some(lines.join("\n") + "\n")
        }
        Ok(out) => {
            notes.push(format!(
                "config.gz: zcat {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            None
        }
        Err(e) => {
            notes.push(format!("config.gz: zcat: {e}"));
            None
        }
    }
}

fn controllers() -> Vec<String> {
    fs::read_to_string(Path::new(CG2).join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

fn probe_v1(f: &mut Features) -> Option<bool> {
    if !f.controllers.iter().any(|c| c == "memory") {
        f.notes
            .push("v1 memory: not probed, the v2 root has no memory controller".into());
        return None;
    }
    if let Err(e) = fs::create_dir_all(V1_DIR) {
        f.notes.push(format!("v1 memory: mkdir {V1_DIR}: {e}"));
        return None;
    }
    let r = mount(
        Some("cgroup"),
        V1_DIR,
        Some("cgroup"),
        MsFlags::empty(),
        Some("memory"),
    );
    let found = match r {
        Ok(()) => {
            if let Err(e) = umount(V1_DIR) {
                f.notes.push(format!("v1 memory: umount: {e}"));
            }
            Some(true)
        }
        // No such controller on v1 (CONFIG_MEMCG_V1=n, or cgroup_no_v1=).
        Err(Errno::ENOENT | Errno::EINVAL) => Some(false),
        Err(e) => {
            f.notes.push(format!("v1 memory: mount: {e}"));
            None
        }
    };
    let _ = fs::remove_dir(V1_DIR);
    if found == Some(true) {
        // The killed hierarchy frees itself after an RCU grace period;
        // until then memory stays bound to it, not to v2.
        let deadline = Instant::now() + V1_RELEASE;
        while memory_bound_to_v1() {
            if Instant::now() >= deadline {
                f.notes.push(format!(
                    "v1 memory: the probe's hierarchy still holds memory after {V1_RELEASE:?}"
                ));
                break;
            }
            sleep(Duration::from_millis(10));
        }
    }
    found
}

/// Enables memory and io at the root, looks at a fresh child's files, and
/// undoes both.
fn probe_scratch(f: &mut Features) {
    let wanted: Vec<&str> = ["memory", "io"]
        .into_iter()
        .filter(|c| f.controllers.iter().any(|have| have == c))
        .collect();
    let control = Path::new(CG2).join("cgroup.subtree_control");
    let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
    if !wanted.is_empty() {
        if let Err(e) = fs::write(&control, enable.trim()) {
            f.notes.push(format!(
                "cgroup files: enable {} at the root: {e}",
                enable.trim()
            ));
            return;
        }
    }
    match fs::create_dir(SCRATCH) {
        Ok(()) => {
            let has = |file: &str| Some(Path::new(SCRATCH).join(file).exists());
            let memory = wanted.contains(&"memory");
            f.io_max = if wanted.contains(&"io") {
                has("io.max")
            } else {
                Some(false)
            };
            f.memory_swap_max = if memory {
                has("memory.swap.max")
            } else {
                Some(false)
            };
            f.memory_reclaim = if memory {
                has("memory.reclaim")
            } else {
                Some(false)
            };
            f.cgroup_kill = has("cgroup.kill");
            if let Err(e) = fs::remove_dir(SCRATCH) {
                f.notes.push(format!("cgroup files: rmdir {SCRATCH}: {e}"));
            }
        }
        Err(e) => f.notes.push(format!("cgroup files: mkdir {SCRATCH}: {e}")),
    }
    if !wanted.is_empty() {
        let disable: String = wanted.iter().map(|c| format!("-{c} ")).collect();
        if let Err(e) = fs::write(&control, disable.trim()) {
            f.notes.push(format!(
                "cgroup files: disable {} at the root: {e}",
                disable.trim()
            ));
        }
    }
}

fn probe_tmpfs_direct(notes: &mut Vec<String>) -> Option<bool> {
    let path = "/tmp/cgstorm-probe-odirect";
    let r = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path);
    let _ = fs::remove_file(path);
    match r {
        Ok(_) => Some(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Some(false),
        Err(e) => {
            notes.push(format!("tmpfs O_DIRECT: open {path}: {e}"));
            None
        }
    }
}
