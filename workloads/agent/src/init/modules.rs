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
