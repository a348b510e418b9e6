//! Logging to the kernel log (`/dev/kmsg`), so agent lines sit between kernel
//! messages on the console in the order they happened. Falls back to stderr
//! (the console) until devtmpfs is mounted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use cgstorm_agent::contract::KMSG_PREFIX;

static KMSG: Mutex<Option<File>> = Mutex::new(None);

/// Opens `/dev/kmsg` for [`log`]; until this succeeds, lines go to stderr.
pub fn open() -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open("/dev/kmsg")?;
    *KMSG.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

/// Writes one line, `cgstorm: ` prefixed, at notice level.
pub fn log(msg: &str) {
    let mut guard = KMSG.lock().unwrap_or_else(|e| e.into_inner());
    // One write() is one kernel log record; long lines are cut by the kernel.
    let line = format!("<5>{KMSG_PREFIX}{msg}\n");
    let written = match guard.as_mut() {
        Some(f) => f.write_all(line.as_bytes()).is_ok(),
        None => false,
    };
    if !written {
        eprintln!("{KMSG_PREFIX}{msg}");
    }
}

/// Writes one line as it is (no prefix) at error level: a report the agent
/// prints for the kernel (kmemleak's, which the kernel keeps in a file).
pub fn raw(line: &str) {
    let mut guard = KMSG.lock().unwrap_or_else(|e| e.into_inner());
    let record = format!("<3>{line}\n");
    let written = match guard.as_mut() {
        Some(f) => f.write_all(record.as_bytes()).is_ok(),
        None => false,
    };
    if !written {
        eprintln!("{line}");
    }
}

/// Formats and logs a line with [`log`].
macro_rules! klog {
    ($($arg:tt)*) => { $crate::init::kmsg::log(&format!($($arg)*)) };
}
pub(crate) use klog;
