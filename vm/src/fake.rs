//! A scripted VM for unit tests of code that drives a [`Vm`]: console lines
//! and agent bytes are given up front, what the host writes is recorded.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Duration;

use cgstorm_proto::proto::{self, AgentMsg, HostMsg};

use crate::error::HostError;
use crate::vm::{AgentStream, ConsoleEvent, Diagnosis, Vm};

/// The fake agent channel: reads the script, records writes. When the
/// script runs out a read times out (`WouldBlock`), or reads EOF once the
/// VM has exited.
#[derive(Debug, Default)]
pub struct FakeStream {
    input: VecDeque<u8>,
    /// Everything the host wrote.
    pub written: Vec<u8>,
    eof: bool,
    /// Bytes handed out per read, to exercise partial frames (0: all).
    chunk: usize,
}

impl Read for FakeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let limit = if self.chunk == 0 {
            buf.len()
        } else {
            self.chunk.min(buf.len())
        };
        let n = limit.min(self.input.len());
        for (slot, b) in buf.iter_mut().zip(self.input.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

impl Write for FakeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AgentStream for FakeStream {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// A VM whose console and agent say what the test scripted.
#[derive(Debug, Default)]
pub struct FakeVm {
    console: VecDeque<String>,
    tail: Vec<String>,
    agent: FakeStream,
    exit: Option<String>,
    exit_on_shutdown: bool,
    /// Diagnoses asked for, in order.
    pub diagnoses: Vec<Diagnosis>,
    /// Whether [`Vm::kill`] was called.
    pub killed: bool,
}

impl FakeVm {
    /// A VM with an empty console and a silent agent that runs forever.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds console lines.
    pub fn console_lines<'a>(mut self, lines: impl IntoIterator<Item = &'a str>) -> Self {
        self.console.extend(lines.into_iter().map(String::from));
        self
    }

    /// Adds a framed agent message to the channel.
    pub fn agent_says(mut self, msg: &AgentMsg) -> Self {
        let frame = proto::encode(msg).expect("encode agent message");
        self.agent.input.extend(frame);
        self
    }

    /// Adds raw bytes to the channel.
    pub fn agent_bytes(mut self, bytes: &[u8]) -> Self {
        self.agent.input.extend(bytes);
        self
    }

    /// Hands agent bytes out `n` at a time.
    pub fn agent_chunks(mut self, n: usize) -> Self {
        self.agent.chunk = n;
        self
    }

    /// Makes the VM end with `status` once its console is drained.
    pub fn exits(mut self, status: &str) -> Self {
        self.exit = Some(status.into());
        self.agent.eof = true;
        self
    }

    /// Makes the VM power off once the host has sent a shutdown message.
    pub fn powers_off_on_shutdown(mut self) -> Self {
        self.exit_on_shutdown = true;
        self
    }

    /// Everything the host wrote to the agent.
    pub fn written(&self) -> &[u8] {
        &self.agent.written
    }

    /// The messages the host wrote to the agent, decoded.
    pub fn host_messages(&self) -> Vec<HostMsg> {
        let mut buf = self.agent.written.clone();
        let mut out = Vec::new();
        while let Ok(Some(m)) = proto::try_decode::<HostMsg>(&mut buf) {
            out.push(m);
        }
        out
    }

    fn shutdown_sent(&self) -> bool {
        self.host_messages().contains(&HostMsg::Shutdown)
    }
}

impl Vm for FakeVm {
    fn console_line(&mut self, _: Duration) -> ConsoleEvent {
        match self.console.pop_front() {
            Some(l) => {
                self.tail.push(l.clone());
                ConsoleEvent::Line(l)
            }
            None if self.exit.is_some() => ConsoleEvent::Closed,
            None => ConsoleEvent::Timeout,
        }
    }

    fn console_tail(&self) -> String {
        self.tail
            .iter()
            .chain(&self.console)
            .flat_map(|l| [l.as_str(), "\n"])
            .collect()
    }

    fn agent(&mut self) -> &mut dyn AgentStream {
        &mut self.agent
    }

    fn diagnose(&mut self, what: Diagnosis) -> Result<(), HostError> {
        self.diagnoses.push(what);
        Ok(())
    }

    fn exit_status(&mut self) -> Option<String> {
        if self.exit.is_none() && self.exit_on_shutdown && self.shutdown_sent() {
            self.exit = Some("exit code 0".into());
            self.agent.eof = true;
        }
        self.exit.clone()
    }

    fn wait_exit(&mut self, _: Duration) -> Option<String> {
        self.exit_status()
    }

    fn kill(&mut self) -> String {
        self.killed = true;
        self.agent.eof = true;
        self.exit
            .get_or_insert_with(|| "killed by signal 9".into())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use cgstorm_proto::proto::RunOrder;

    use super::*;

    #[test]
    fn powers_off_on_a_shutdown_message_only() {
        let mut vm = FakeVm::new().powers_off_on_shutdown();
        let run = HostMsg::Run(RunOrder {
            program: "lanes: []".into(),
            duration_ms: 1,
            stall_ms: 1,
            ..Default::default()
        });
        proto::write_frame(vm.agent(), &run).unwrap();
        assert_eq!(vm.exit_status(), None);
        proto::write_frame(vm.agent(), &HostMsg::Shutdown).unwrap();
        assert_eq!(vm.exit_status().as_deref(), Some("exit code 0"));
        assert_eq!(vm.host_messages(), [run, HostMsg::Shutdown]);
    }
}
