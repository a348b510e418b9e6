//! A scripted VM for unit tests of code that drives a [`Vm`]: console lines
//! and agent bytes are given up front, what the host writes is recorded.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Duration;

use cgstorm_proto::proto::{self, AgentMsg, HostMsg};

use crate::error::HostError;
use crate::vm::{AgentStream, ConsoleEvent, Diagnosis, Vm};

/// What a responsive fake guest says to one host message: agent frames,
/// and console lines (the kernel's and the agent's log).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a test's few frames, made and sent at once
pub enum Said {
    /// An agent frame.
    Agent(AgentMsg),
    /// A console line.
    Console(String),
}

type Responder = Box<dyn FnMut(&HostMsg) -> Vec<Said> + Send>;

/// The fake agent channel: reads the script, records writes. When the
/// script runs out a read times out (`WouldBlock`), or reads EOF once the
/// VM has exited.
#[derive(Default)]
pub struct FakeStream {
    input: VecDeque<u8>,
    /// Everything the host wrote.
    pub written: Vec<u8>,
    eof: bool,
    /// Bytes handed out per read, to exercise partial frames (0: all).
    chunk: usize,
    /// Answers each host message as it is written, after the script.
    responder: Option<Responder>,
    /// What the host wrote that is not a whole message yet.
    unread: Vec<u8>,
    /// Console lines the responder said, after the scripted ones.
    console: VecDeque<String>,
}

impl std::fmt::Debug for FakeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeStream")
            .field("input", &self.input.len())
            .field("written", &self.written.len())
            .field("eof", &self.eof)
            .field("responder", &self.responder.is_some())
            .finish()
    }
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
        if let Some(answer) = self.responder.as_mut() {
            self.unread.extend_from_slice(buf);
            while let Ok(Some(m)) = proto::try_decode::<HostMsg>(&mut self.unread) {
                for said in answer(&m) {
                    match said {
                        Said::Agent(a) => self
                            .input
                            .extend(proto::encode(&a).expect("encode agent message")),
                        Said::Console(l) => self.console.push_back(l),
                    }
                }
            }
        }
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
    /// Where the console lines go as they are read, as QEMU logs them.
    log: Option<std::fs::File>,
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

    /// Makes the guest answer every host message with what `answer` says
    /// to it (after what was scripted up front): a guest that keeps up
    /// with a loop of many requests, such as a campaign's.
    pub fn answering(mut self, answer: impl FnMut(&HostMsg) -> Vec<Said> + Send + 'static) -> Self {
        self.agent.responder = Some(Box::new(answer));
        self
    }

    /// Hands agent bytes out `n` at a time.
    pub fn agent_chunks(mut self, n: usize) -> Self {
        self.agent.chunk = n;
        self
    }

    /// Appends every console line to `path` as it is read (QEMU's console
    /// log); the file is created new.
    pub fn console_log(mut self, path: &std::path::Path) -> io::Result<Self> {
        self.log = Some(std::fs::File::create(path)?);
        Ok(self)
    }

    /// Makes the VM end with `status` once its console is drained.
    pub fn exits(mut self, status: &str) -> Self {
        self.exit = Some(status.into());
        self.agent.eof = true;
        self
    }

    /// Ends the agent channel while the VM runs on (QEMU slow to exit, or a
    /// backend whose channel broke).
    pub fn channel_closes(mut self) -> Self {
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
        let next = self
            .console
            .pop_front()
            .or_else(|| self.agent.console.pop_front());
        match next {
            Some(l) => {
                if let Some(f) = self.log.as_mut() {
                    let _ = writeln!(f, "{l}");
                }
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
            .chain(&self.agent.console)
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

    #[test]
    fn a_responsive_agent_answers_each_message_as_it_is_written() {
        let mut vm = FakeVm::new().answering(|m| match m {
            HostMsg::Reset => vec![
                Said::Console("reset".into()),
                Said::Agent(AgentMsg::ResetDone {
                    leftovers: vec![],
                    laps: vec![],
                }),
            ],
            _ => vec![],
        });
        let frame = proto::encode(&HostMsg::Reset).unwrap();
        let (a, b) = frame.split_at(frame.len() / 2);
        vm.agent().write_all(a).unwrap();
        let mut buf = [0u8; 256];
        assert_eq!(
            vm.agent().read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "half a message is not answered"
        );
        vm.agent().write_all(b).unwrap();
        proto::write_frame(vm.agent(), &HostMsg::Symbols).unwrap();
        let mut got = Vec::new();
        while let Ok(n) = vm.agent().read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        let answers: Vec<AgentMsg> =
            std::iter::from_fn(|| proto::try_decode(&mut got).ok().flatten()).collect();
        assert_eq!(
            answers,
            [AgentMsg::ResetDone {
                leftovers: vec![],
                laps: vec![]
            }]
        );
        assert_eq!(
            vm.console_line(Duration::ZERO),
            ConsoleEvent::Line("reset".into())
        );
        assert_eq!(vm.console_line(Duration::ZERO), ConsoleEvent::Timeout);
    }
}
