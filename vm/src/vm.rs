//! The VM abstraction the harness drives: a console stream, a byte channel to
//! the agent, a way to ask the kernel for diagnostics, and kill. QEMU
//! ([`crate::qemu::QemuVm`]) and a scripted fake ([`crate::fake::FakeVm`])
//! implement it; [`crate::boot`] builds the agent handshake on top.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::error::HostError;

/// One step of the console stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// A line of console output (kernel log, firmware, `qemu: ` messages).
    Line(String),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The console has ended (the VM is gone) and every line was taken.
    Closed,
}

/// What to ask the guest kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnosis {
    /// A magic sysrq key sent over the serial console (a BREAK then the key):
    /// `t` task states, `w` blocked tasks, `l` backtraces of all CPUs,
    /// `d` held locks (lockdep), `c` crash.
    Sysrq(char),
}

/// The host end of the agent channel: a byte stream with read timeouts.
pub trait AgentStream: Read + Write + Send {
    /// Sets how long a read may block (`None`: forever). A read that times out
    /// fails with `WouldBlock` or `TimedOut`.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
}

impl AgentStream for UnixStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

/// A running VM.
pub trait Vm {
    /// The next console line, waiting at most `timeout`.
    fn console_line(&mut self, timeout: Duration) -> ConsoleEvent;
    /// The last console lines, for error reports.
    fn console_tail(&self) -> String;
    /// The agent channel.
    fn agent(&mut self) -> &mut dyn AgentStream;
    /// Asks the guest kernel for diagnostics.
    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError>;
    /// How the VM ended, if it has (`None` while it runs).
    fn exit_status(&mut self) -> Option<String>;
    /// Waits up to `timeout` for the VM to end by itself.
    fn wait_exit(&mut self, timeout: Duration) -> Option<String>;
    /// Stops the VM at once; returns how it ended.
    fn kill(&mut self) -> String;
}

/// A boxed VM is one: a VM of any backend behind one type.
impl<V: Vm + ?Sized> Vm for Box<V> {
    fn console_line(&mut self, timeout: Duration) -> ConsoleEvent {
        (**self).console_line(timeout)
    }
    fn console_tail(&self) -> String {
        (**self).console_tail()
    }
    fn agent(&mut self) -> &mut dyn AgentStream {
        (**self).agent()
    }
    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError> {
        (**self).diagnose(what)
    }
    fn exit_status(&mut self) -> Option<String> {
        (**self).exit_status()
    }
    fn wait_exit(&mut self, timeout: Duration) -> Option<String> {
        (**self).wait_exit(timeout)
    }
    fn kill(&mut self) -> String {
        (**self).kill()
    }
}
