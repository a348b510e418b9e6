//! The agent handshake over any [`Vm`]: wait for the hello that proves the
//! kernel came up and the agent set it up, and ask for a clean power-off.

use std::thread::sleep;
use std::time::{Duration, Instant};

use cgstorm_proto::cmdline::Token;
use cgstorm_proto::proto::{self, AgentMsg, FrameError, Hello, HostMsg, PROTO_VERSION};

use crate::error::{AgentError, BootError};
use crate::inbox::{Heard, Inbox};
use crate::vm::Vm;

/// How long one read of the agent channel blocks before the loop checks
/// whether the VM is still alive.
const POLL: Duration = Duration::from_millis(100);

/// Waits up to `timeout` (already scaled for the accelerator) for the agent's
/// hello and checks that it carries `token`.
pub fn wait_for_hello(
    vm: &mut dyn Vm,
    token: &Token,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Hello, BootError> {
    let deadline = Instant::now() + timeout;
    let mut inbox = Inbox::new();
    let channel_err = |vm: &mut dyn Vm, source| BootError::Channel {
        source,
        console_tail: vm.console_tail(),
    };
    loop {
        if stop() {
            return Err(BootError::Interrupted);
        }
        match inbox.take() {
            Ok(Some(AgentMsg::Hello(hello))) => return check_hello(hello, token),
            Ok(Some(AgentMsg::Fatal { message })) => {
                return Err(BootError::AgentFatal {
                    message,
                    console_tail: vm.console_tail(),
                })
            }
            // Nothing but a hello can come before one; ignore strays.
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => return Err(channel_err(vm, e)),
        }
        if let Some(status) = vm.exit_status() {
            return Err(exited(vm, status));
        }
        if Instant::now() >= deadline {
            return Err(BootError::Timeout {
                after: timeout,
                console_tail: vm.console_tail(),
            });
        }
        match inbox.listen(vm, POLL) {
            Ok(Heard::Bytes | Heard::Quiet) => {}
            Ok(Heard::Closed { exit: Some(status) }) => return Err(exited(vm, status)),
            // QEMU is going away, slowly: the next turn looks again, until
            // the deadline.
            Ok(Heard::Closed { exit: None }) => {}
            Err(e) => return Err(channel_err(vm, FrameError::Io(e))),
        }
    }
}

/// The VM ended before its hello.
fn exited(vm: &mut dyn Vm, status: String) -> BootError {
    // Give the console readers a moment to catch the last lines.
    sleep(Duration::from_millis(100));
    BootError::Exited {
        status,
        console_tail: vm.console_tail(),
    }
}

fn check_hello(hello: Hello, token: &Token) -> Result<Hello, BootError> {
    if &hello.token != token {
        return Err(BootError::BadHello {
            reason: format!(
                "token {} is not this boot's {token} (a stale vm?)",
                hello.token
            ),
        });
    }
    if hello.proto != PROTO_VERSION {
        return Err(BootError::BadHello {
            reason: format!(
                "agent speaks protocol {}, host {PROTO_VERSION}: rebuild the agent",
                hello.proto
            ),
        });
    }
    Ok(hello)
}

/// Asks the agent to power off and waits up to `timeout` for the VM to end;
/// kills it if it does not. Returns how the VM ended.
pub fn shutdown(vm: &mut dyn Vm, timeout: Duration) -> Result<String, AgentError> {
    if let Err(e) = proto::write_frame(vm.agent(), &HostMsg::Shutdown) {
        vm.kill();
        return Err(e.into());
    }
    match vm.wait_exit(timeout) {
        Some(status) => Ok(status),
        None => {
            vm.kill();
            Err(AgentError::NoPowerOff { after: timeout })
        }
    }
}

#[cfg(test)]
mod tests {
    use cgstorm_proto::proto::{ModuleLoad, ModuleOutcome};

    use super::*;
    use crate::fake::FakeVm;

    fn token() -> Token {
        Token::parse("feedfacecafebeef").unwrap()
    }

    fn hello(token: Token) -> Hello {
        Hello {
            proto: PROTO_VERSION,
            token,
            kernel_release: "6.12.0".into(),
            kernel_version: "#1".into(),
            pid1: true,
            uptime_ms: 900,
            modules: vec![ModuleLoad {
                path: "/cgstorm/modules/loop.ko".into(),
                outcome: ModuleOutcome::Loaded,
            }],
            devices: vec!["console".into(), "pmem0".into(), "vda".into()],
            missing_devices: vec![],
            warnings: vec![],
            features: None,
        }
    }

    #[test]
    fn a_stop_request_ends_the_wait() {
        let mut vm = crate::fake::FakeVm::new();
        let err = wait_for_hello(&mut vm, &token(), Duration::from_secs(5), &|| true).unwrap_err();
        assert!(matches!(err, BootError::Interrupted), "{err}");
    }

    #[test]
    fn hello_in_small_chunks_is_assembled() {
        let mut vm = FakeVm::new()
            .console_lines(["Linux version 6.12.0", "cgstorm: agent ready"])
            .agent_says(&AgentMsg::Hello(hello(token())))
            .agent_chunks(3);
        let h = wait_for_hello(&mut vm, &token(), Duration::from_secs(5), &|| false).unwrap();
        assert_eq!(h.devices, ["console", "pmem0", "vda"]);
    }

    #[test]
    fn wrong_token_is_rejected() {
        let other = Token::parse("0000000000000000").unwrap();
        let mut vm = FakeVm::new().agent_says(&AgentMsg::Hello(hello(other)));
        let err = wait_for_hello(&mut vm, &token(), Duration::from_secs(5), &|| false).unwrap_err();
        assert!(err.to_string().contains("not this boot's"), "{err}");
    }

    #[test]
    fn vm_exit_before_hello_carries_the_console() {
        let mut vm = FakeVm::new()
            .console_lines(["Kernel panic - not syncing: VFS: Unable to mount root fs"])
            .exits("exit code 0");
        let err = wait_for_hello(&mut vm, &token(), Duration::from_secs(5), &|| false).unwrap_err();
        assert!(matches!(err, BootError::Exited { .. }));
        let text = err.to_string();
        assert!(
            text.starts_with("kernel did not come up: qemu exited (exit code 0)"),
            "{text}"
        );
        assert!(text.contains("| Kernel panic"), "{text}");
    }

    #[test]
    fn silence_times_out() {
        let mut vm = FakeVm::new().console_lines(["SeaBIOS"]);
        let err =
            wait_for_hello(&mut vm, &token(), Duration::from_millis(50), &|| false).unwrap_err();
        assert!(matches!(err, BootError::Timeout { .. }), "{err}");
        assert!(err.console_tail().unwrap().contains("SeaBIOS"));
    }

    #[test]
    fn agent_fatal_is_reported() {
        let mut vm = FakeVm::new().agent_says(&AgentMsg::Fatal {
            message: "mount cgroup2: ENODEV".into(),
        });
        let err = wait_for_hello(&mut vm, &token(), Duration::from_secs(5), &|| false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("agent failed during boot: mount cgroup2: ENODEV"),
            "{err}"
        );
    }

    #[test]
    fn garbage_on_the_channel_is_a_channel_error() {
        let mut vm = FakeVm::new().agent_bytes(&[2, 0, 0, 0, b'{', b'x']);
        let err = wait_for_hello(&mut vm, &token(), Duration::from_secs(5), &|| false).unwrap_err();
        assert!(matches!(err, BootError::Channel { .. }), "{err}");
    }

    #[test]
    fn shutdown_sends_the_message_and_waits() {
        let mut vm = FakeVm::new().powers_off_on_shutdown();
        assert_eq!(
            shutdown(&mut vm, Duration::from_secs(1)).unwrap(),
            "exit code 0"
        );
        let mut written = vm.written();
        let msg: HostMsg = proto::read_frame(&mut written).unwrap();
        assert_eq!(msg, HostMsg::Shutdown);
        assert!(!vm.killed);
    }

    #[test]
    fn shutdown_kills_a_guest_that_stays_up() {
        let mut vm = FakeVm::new();
        let err = shutdown(&mut vm, Duration::from_millis(10)).unwrap_err();
        assert!(matches!(err, AgentError::NoPowerOff { .. }));
        assert!(vm.killed);
    }
}
