//! Loading the kernel modules the host put into the initramfs, in the order of
//! the list file (dependencies first), with `finit_module`.

use std::ffi::CStr;
use std::fs::{self, File};

use cgstorm_agent::proto::{ModuleLoad, ModuleOutcome};
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

use super::kmsg::klog;

/// Loads every module named in the list file at `list`; a missing list means
/// the kernel needs no modules. The host decompressed the modules, so no
/// `MODULE_INIT_COMPRESSED_FILE` is needed.
pub fn load_list(list: &str) -> Vec<ModuleLoad> {
    let Ok(text) = fs::read_to_string(list) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|path| {
            let outcome = load(path);
            match &outcome {
                ModuleOutcome::Loaded => klog!("loaded {path}"),
                ModuleOutcome::AlreadyLoaded => klog!("{path} was already loaded"),
                ModuleOutcome::Failed { message, .. } => klog!("loading {path} failed: {message}"),
            }
            ModuleLoad {
                path: path.to_string(),
                outcome,
            }
        })
        .collect()
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
