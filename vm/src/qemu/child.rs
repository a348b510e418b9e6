//! A child process that cannot outlive us: it runs in its own process group,
//! gets SIGKILL when the thread that spawned it dies (`PR_SET_PDEATHSIG`: our
//! panic=abort, a fatal signal, ctrl-C's default SIGINT), and the whole group
//! is killed when the handle is dropped (normal return, unwinding panic).
//!
//! Caveat: the kernel delivers the death signal when the *thread* that forked
//! exits, not the process. Spawn from a thread that lives as long as the VM
//! (the test's or harness's own thread, not a short-lived helper).

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child killed with its process group on drop.
#[derive(Debug)]
pub struct GuardedChild {
    child: Child,
    status: Option<ExitStatus>,
}

impl GuardedChild {
    /// Spawns `cmd` in a new process group with a parent-death signal.
    pub fn spawn(mut cmd: Command) -> io::Result<Self> {
        // SAFETY: getpid is async-signal-safe and has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe syscalls (setpgid, prctl, getppid, _exit); it
        // allocates nothing and touches no locks or shared state.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl; then no
                // signal would ever come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        Ok(Self {
            child: cmd.spawn()?,
            status: None,
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the child's stdin pipe.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Takes the child's stdout pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the child's stderr pipe.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// The exit status, if the child has exited (does not block).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the child's process group and reaps the child.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_wait() {
            return s;
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the group id is our
        // own child's (not yet reaped, so the id cannot have been reused).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let s = self
            .child
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL));
        self.status = Some(s);
        s
    }
}

impl Drop for GuardedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Describes an exit status briefly ("exit code 0", "killed by signal 9").
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn drop_kills_the_child() {
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let child = GuardedChild::spawn(cmd).unwrap();
        let pid = child.pid();
        assert!(alive(pid));
        drop(child);
        assert!(!alive(pid), "sleep {pid} survived the drop");
    }

    #[test]
    fn dying_spawner_thread_kills_the_child() {
        // The child is spawned from a thread that then exits without dropping
        // the handle: the parent-death signal must kill it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("60");
            let child = GuardedChild::spawn(cmd).unwrap();
            tx.send(child.pid()).unwrap();
            std::mem::forget(child);
        })
        .join()
        .unwrap();
        let pid = rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // it becomes a zombie of ours (never reaped), so check its state
        let state = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        while !state().contains(") Z") && !state().is_empty() {
            assert!(
                Instant::now() < deadline,
                "sleep {pid} outlived its spawning thread"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // reap it
        // SAFETY: waitpid on our own child pid with a valid status pointer.
        unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
    }

    #[test]
    fn describes_status() {
        assert_eq!(describe(ExitStatus::from_raw(0)), "exit code 0");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
