//! The agent's messages as they arrive: the one reader of the agent channel
//! that every loop waiting on the agent shares (the boot's hello, one
//! request's answer, a program's run). Each loop decides what a message, a
//! quiet spell or the channel's end means to it; how the channel is read,
//! and what its end says about the VM, is written once, here.

use std::io;
use std::thread::sleep;
use std::time::Duration;

use cgstorm_proto::proto::{self, AgentMsg, FrameError};

use crate::vm::Vm;

/// How long the end of the agent channel waits for the VM's exit: QEMU
/// closes the channel as it exits, so its status follows at once.
pub const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What one read of the agent channel brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Bytes came (a whole message or part of one).
    Bytes,
    /// Nothing within the wait.
    Quiet,
    /// The channel reached its end: the VM is going away, and nothing more
    /// will come. `exit` is how the VM ended, if it did within
    /// [`EXIT_GRACE`].
    Closed {
        /// The VM's exit status.
        exit: Option<String>,
    },
}

/// The bytes read from the agent channel and not yet taken as messages.
#[derive(Debug)]
pub struct Inbox {
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            chunk: vec![0; 64 * 1024],
        }
    }

    /// The next whole message read, if there is one.
    pub fn take(&mut self) -> Result<Option<AgentMsg>, FrameError> {
        proto::try_decode(&mut self.buf)
    }

    /// Reads what the agent sends within `wait`. The error is the channel's
    /// own (not a timeout).
    pub fn listen(&mut self, vm: &mut dyn Vm, wait: Duration) -> io::Result<Heard> {
        let stream = vm.agent();
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut self.chunk) {
            Ok(0) => Ok(Heard::Closed {
                exit: vm.wait_exit(EXIT_GRACE),
            }),
            Ok(n) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                Ok(Heard::Bytes)
            }
            Err(e) if is_quiet(&e) => {
                // A fake's channel says WouldBlock without waiting: do not spin.
                sleep(Duration::from_millis(1));
                Ok(Heard::Quiet)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes what the channel still holds, each read waiting at most
    /// `wait`: for a VM that has exited, whose last messages may still be
    /// in the channel.
    pub fn drain(&mut self, vm: &mut dyn Vm, wait: Duration) {
        while let Ok(Heard::Bytes) = self.listen(vm, wait) {}
    }
}

/// Whether a read error only says that nothing came in time.
fn is_quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use cgstorm_proto::proto::AgentMsg;

    use super::*;
    use crate::fake::FakeVm;

    fn fatal(m: &str) -> AgentMsg {
        AgentMsg::Fatal { message: m.into() }
    }

    #[test]
    fn messages_come_whole_however_the_bytes_are_cut() {
        let mut vm = FakeVm::new()
            .agent_says(&fatal("one"))
            .agent_says(&fatal("two"))
            .agent_chunks(3);
        let mut inbox = Inbox::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            assert_eq!(inbox.listen(&mut vm, Duration::ZERO).unwrap(), Heard::Bytes);
            while let Some(m) = inbox.take().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, [fatal("one"), fatal("two")]);
        assert_eq!(inbox.listen(&mut vm, Duration::ZERO).unwrap(), Heard::Quiet);
    }

    #[test]
    fn the_end_of_the_channel_brings_the_exit_status() {
        let mut vm = FakeVm::new()
            .agent_says(&fatal("last"))
            .exits("exit code 1");
        let mut inbox = Inbox::new();
        inbox.drain(&mut vm, Duration::ZERO);
        assert_eq!(inbox.take().unwrap(), Some(fatal("last")));
        assert_eq!(
            inbox.listen(&mut vm, Duration::ZERO).unwrap(),
            Heard::Closed {
                exit: Some("exit code 1".into())
            }
        );
    }
}
