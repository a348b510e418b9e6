//! Loading the kernel modules the host put into the initramfs, in the order of
//! the list file (dependencies first), with `finit_module`.

use std::ffi::CStr;
use std::fs::{self, File};
use std::sync::Mutex;
use std::thread::JoinHandle;

use cgstorm_agent::proto::{ModuleLoad, ModuleOutcome};
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use super::kmsg::klog;

/// Modules that nothing needs until a program mounts their filesystem, so
/// they load in the background while the agent says hello: xfs.ko alone
/// takes 1.2 s of a 3.9 s boot of Debian's kernel under TCG. They are the
/// list's last entries (the list is in dependency order, and nothing
/// depends on a filesystem), so the rest never waits for them.
const DEFERRED: &[&str] = &["xfs"];

/// The background load of the [`DEFERRED`] modules, until it is waited for.
static PENDING: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);

/// Loads every module named in the list file at `list`, the [`DEFERRED`]
/// ones (and any after them) in a background thread; a missing list means
/// the kernel needs no modules. The host decompressed the modules, so no
/// `MODULE_INIT_COMPRESSED_FILE` is needed. Returns the loads done now.
pub fn load_list(list: &str) -> Vec<ModuleLoad> {
    let Ok(text) = fs::read_to_string(list) else {
        return Vec::new();
    };
    let paths: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let split = paths
        .iter()
        .position(|p| DEFERRED.contains(&module_name(p)))
        .unwrap_or(paths.len());
    let (now, later) = paths.split_at(split);
    // The deferred ones may need any of the others (xfs needs libcrc32c):
    // they start once those are in.
    let loaded = now.iter().map(|p| load_logged(p)).collect();
    if !later.is_empty() {
        let later = later.to_vec();
        let handle = std::thread::spawn(move || {
            for p in &later {
                load_logged(p);
            }
        });
        *PENDING.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }
    loaded
}

/// Waits until the background loads of [`load_list`] are done (at once when
/// there are none or they were waited for): before a filesystem they bring
/// is mounted. Their outcomes are on the console.
pub fn wait_deferred() {
    let handle = PENDING.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(h) = handle {
        if h.join().is_err() {
            klog!("warning: the background module load panicked");
        }
    }
}

/// `xfs` for `/cgstorm/modules/xfs.ko`.
fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file)
}

fn load_logged(path: &str) -> ModuleLoad {
    let outcome = load(path);
    match &outcome {
        ModuleOutcome::Loaded => klog!("loaded {path}"),
        ModuleOutcome::AlreadyLoaded => klog!("{path} was already loaded"),
        ModuleOutcome::Failed { message, .. } => {
            klog!("warning: loading {path} failed: {message}")
        }
    }
    ModuleLoad {
        path: path.to_string(),
        outcome,
    }
}

fn load(path: &str) -> ModuleOutcome {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return ModuleOutcome::Failed {
                errno: e.raw_os_error().unwrap_or(0),
                message: format!("open: {e}"),
            }
        }
    };
    match finit_module(&file, c"" as &CStr, ModuleInitFlags::empty()) {
        Ok(()) => ModuleOutcome::Loaded,
        Err(Errno::EEXIST) => ModuleOutcome::AlreadyLoaded,
        Err(e) => ModuleOutcome::Failed {
            errno: e as i32,
            message: e.desc().to_string(),
        },
    }
}

/// Modules the workloads need that a distribution kernel may build as
/// modules: loop devices, xfs, pmem from `memmap=`.
pub const WORKLOAD_MODULES: &[&str] = &["loop", "xfs", "nd_e820", "nd_pmem", "dax_pmem"];

/// Under virtme-ng there is no cgstorm initramfs and no module list: the
/// guest sees the kernel's modules where vng put them, so `modprobe` them.
/// Built-in or absent modules are fine; what fails is returned as warnings.
pub fn modprobe_workload_modules() -> Vec<String> {
    let mut warnings = Vec::new();
    for m in WORKLOAD_MODULES {
        match std::process::Command::new("modprobe")
            .args(["-q", m])
            .status()
        {
            Ok(st) if st.success() => klog!("modprobe {m}: ok"),
            Ok(st) => warnings.push(format!("modprobe {m}: {st}")),
            Err(e) => {
                warnings.push(format!("cannot run modprobe: {e}"));
                break;
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_from_paths() {
        assert_eq!(module_name("/cgstorm/modules/xfs.ko"), "xfs");
        assert_eq!(module_name("/cgstorm/modules/nd_pmem.ko"), "nd_pmem");
        assert_eq!(module_name("xfs.ko"), "xfs");
    }
}
