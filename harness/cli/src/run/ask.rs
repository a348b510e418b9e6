//! One request to the guest agent and its one answer (a reset, the
//! kernel's symbols, a shell script), with the console read meanwhile: the
//! request loop every exchange but a program's run shares (a run streams
//! its ops, barriers and stalls: `session`).

use std::time::{Duration, Instant};

use cgstorm_proto::proto::{self, AgentMsg, HostMsg};
use cgstorm_vm::inbox::{Heard, Inbox, EXIT_GRACE};
use cgstorm_vm::{ConsoleEvent, Vm};

use super::console::ConsoleWatch;

/// How long one read of the agent channel waits before the loop reads the
/// console and looks at the clock again.
const POLL: Duration = Duration::from_millis(50);

/// Sends `order` (if any) and waits up to `timeout` for the answer `want`
/// takes, feeding the console to `watch` meanwhile. The agent's fatal
/// error, any other message, a VM that goes away, no answer in time and
/// Ctrl-C (or SIGTERM) are errors.
pub fn ask<T>(
    vm: &mut dyn Vm,
    order: Option<&HostMsg>,
    watch: &mut ConsoleWatch,
    timeout: Duration,
    want: impl Fn(AgentMsg) -> Result<T, Box<AgentMsg>>,
) -> Result<T, String> {
    if let Some(order) = order {
        proto::write_frame(vm.agent(), order).map_err(|e| format!("send: {e}"))?;
    }
    let deadline = Instant::now() + timeout;
    let mut inbox = Inbox::new();
    loop {
        loop {
            match vm.console_line(Duration::ZERO) {
                ConsoleEvent::Line(l) => watch.line(&l),
                ConsoleEvent::Timeout => break,
                ConsoleEvent::Closed => {
                    let exit = vm.wait_exit(EXIT_GRACE);
                    return Err(gone(exit));
                }
            }
        }
        match inbox.take() {
            Ok(Some(AgentMsg::Fatal { message })) => {
                return Err(format!("the agent failed: {message}"))
            }
            Ok(Some(m)) => return want(m).map_err(|other| format!("unexpected answer {other:?}")),
            Ok(None) => {}
            Err(e) => return Err(format!("bad frame: {e}")),
        }
        if super::signal::interrupted() {
            return Err("interrupted".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer within {timeout:?}"));
        }
        match inbox.listen(vm, POLL) {
            Ok(Heard::Bytes | Heard::Quiet) => {}
            Ok(Heard::Closed { exit }) => {
                // Take the console's last lines: a panic says why.
                while let ConsoleEvent::Line(l) = vm.console_line(Duration::ZERO) {
                    watch.line(&l);
                }
                return Err(gone(exit));
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// The error for a VM whose console or agent channel ended before the
/// answer; `exit` is its status, if it has exited.
fn gone(exit: Option<String>) -> String {
    match exit {
        Some(status) => format!("the vm went away ({status}) before it answered"),
        None => "the vm went away before it answered (no exit status yet)".into(),
    }
}

#[cfg(test)]
mod tests {
    use cgstorm_vm::fake::FakeVm;

    use super::*;

    fn symbols(m: AgentMsg) -> Result<String, Box<AgentMsg>> {
        match m {
            AgentMsg::Symbols { text, .. } => Ok(text),
            other => Err(Box::new(other)),
        }
    }

    #[test]
    fn the_answer_comes_back_with_the_console_read_meanwhile() {
        let mut vm = FakeVm::new()
            .console_lines(["[    1.0] cgstorm: symbols"])
            .agent_chunks(5)
            .agent_says(&AgentMsg::Symbols {
                text: "81000000 _text\n".into(),
                error: None,
            });
        let mut watch = ConsoleWatch::new(None);
        let got = ask(
            &mut vm,
            Some(&HostMsg::Symbols),
            &mut watch,
            Duration::from_secs(5),
            symbols,
        );
        assert_eq!(got.unwrap(), "81000000 _text\n");
        assert_eq!(vm.host_messages(), [HostMsg::Symbols]);
    }

    #[test]
    fn a_fatal_error_another_answer_or_silence_is_an_error() {
        let mut watch = ConsoleWatch::new(None);
        let mut vm = FakeVm::new().agent_says(&AgentMsg::Fatal {
            message: "no /proc".into(),
        });
        let e = ask(&mut vm, None, &mut watch, Duration::from_secs(5), symbols).unwrap_err();
        assert_eq!(e, "the agent failed: no /proc");
        let mut vm = FakeVm::new().agent_says(&AgentMsg::ResetDone {
            leftovers: Vec::new(),
            laps: Vec::new(),
        });
        let e = ask(&mut vm, None, &mut watch, Duration::from_secs(5), symbols).unwrap_err();
        assert!(e.starts_with("unexpected answer ResetDone"), "{e}");
        let mut vm = FakeVm::new();
        let e = ask(
            &mut vm,
            None,
            &mut watch,
            Duration::from_millis(100),
            symbols,
        )
        .unwrap_err();
        assert!(e.starts_with("no answer within"), "{e}");
        assert!(vm.host_messages().is_empty(), "no order, nothing sent");
    }

    /// The channel's end is an error at once, with the VM's exit status
    /// if it has one, not a wait for the timeout.
    #[test]
    fn the_end_of_the_channel_is_an_error_at_once() {
        let mut watch = ConsoleWatch::new(None);
        let mut vm = FakeVm::new().channel_closes();
        let e = ask(
            &mut vm,
            Some(&HostMsg::Symbols),
            &mut watch,
            Duration::from_secs(2),
            symbols,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "the vm went away before it answered (no exit status yet)"
        );
        let mut vm = FakeVm::new()
            .console_lines(["Kernel panic - not syncing: Attempted to kill init!"])
            .exits("exit code 1");
        let e = ask(&mut vm, None, &mut watch, Duration::from_secs(2), symbols).unwrap_err();
        assert_eq!(e, "the vm went away (exit code 1) before it answered");
    }
}
