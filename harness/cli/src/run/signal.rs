//! Ctrl-C during a run: the first SIGINT or SIGTERM only raises a flag, so
//! the run loop stops, writes the console log and the JSON, and kills the VM
//! itself; the handler is one-shot (`SA_RESETHAND`), so a second signal
//! kills cgstorm at once (QEMU then dies by its parent-death signal).

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the one-shot handler for SIGINT and SIGTERM, except where the
/// signal is ignored (`nohup`, a shell's background job): that stays so.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; sigaction only reads `sa` and writes `old`, both live
        // locals; the handler only stores to an atomic, which is
        // async-signal-safe; `sa_sigaction` holds a plain handler as
        // SA_SIGINFO is not set.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a SIGINT or SIGTERM came since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
