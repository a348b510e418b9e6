//! The guard: decides whether the agent may touch the system it runs on.
//!
//! The agent mounts filesystems, loads modules, writes sysctls and powers the
//! machine off. It must only ever do that inside a VM that cgstorm booted, so
//! it runs only when it is PID 1 (or inside a virtme-ng guest, which marks its
//! kernel command line with `virtme_*` parameters such as `virtme_hostname=`)
//! AND the command line carries a well-formed `cgstorm.token=<hex>`. The check
//! here is pure; the binary feeds it its PID and `/proc/cmdline`.

use crate::cmdline::{has_param_prefix, Token, TokenError};

/// Prefix of the kernel parameters virtme-ng puts on the command line of every
/// guest it boots (`virtme_hostname=`, `virtme_link_mods=`, `virtme_rw_overlayN=`, …).
pub const VIRTME_PARAM_PREFIX: &str = "virtme_";

/// How the agent was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The agent is init: it sets the system up and powers off at the end.
    Pid1,
    /// The agent runs under virtme-ng's init: the system is already set up,
    /// and the agent exits instead of powering off.
    Virtme,
}

/// Permission to run, with what the guard learned on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// How the agent was started.
    pub mode: Mode,
    /// The token from the command line, echoed in the hello.
    pub token: Token,
}

/// Why the guard refused to run.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Neither PID 1 nor in a virtme-ng guest.
    #[error(
        "refusing to run: pid is {pid}, not 1, and this is no virtme-ng guest; \
         cgstorm-agent only runs as init of a VM that cgstorm boots"
    )]
    NotInit {
        /// Our PID.
        pid: u32,
    },
    /// The command line has no usable token.
    #[error(
        "refusing to run: the kernel command line carries no usable boot token; \
         cgstorm-agent only runs in a VM that cgstorm boots"
    )]
    Token(#[source] TokenError),
    /// `/proc/cmdline` could not be read.
    #[error("refusing to run: cannot read /proc/cmdline")]
    Cmdline(#[source] std::io::Error),
}

/// Decides from our PID and the kernel command line whether we may run.
pub fn check(pid: u32, cmdline: &str) -> Result<Admission, Refusal> {
    let mode = if pid == 1 {
        Mode::Pid1
    } else if has_param_prefix(cmdline, VIRTME_PARAM_PREFIX) {
        Mode::Virtme
    } else {
        return Err(Refusal::NotInit { pid });
    };
    let token = Token::from_cmdline(cmdline).map_err(Refusal::Token)?;
    Ok(Admission { mode, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "cgstorm.token=0123456789abcdef";

    #[test]
    fn pid1_with_token_runs() {
        let a = check(1, &format!("console=ttyS0 {TOKEN}")).unwrap();
        assert_eq!(a.mode, Mode::Pid1);
        assert_eq!(a.token.as_str(), "0123456789abcdef");
    }

    #[test]
    fn virtme_with_token_runs() {
        let a = check(
            231,
            &format!("virtme_hostname=virtme-ng console=hvc0 {TOKEN}"),
        )
        .unwrap();
        assert_eq!(a.mode, Mode::Virtme);
    }

    #[test]
    fn host_is_refused() {
        let e = check(4242, "BOOT_IMAGE=/vmlinuz root=/dev/vda ro").unwrap_err();
        assert!(matches!(e, Refusal::NotInit { pid: 4242 }));
        // even with a token, a non-init process outside virtme-ng is refused
        assert!(matches!(check(4242, TOKEN), Err(Refusal::NotInit { .. })));
        assert!(e.to_string().contains("refusing to run"));
    }

    #[test]
    fn pid1_without_token_is_refused() {
        assert!(matches!(
            check(1, "root=/dev/sda"),
            Err(Refusal::Token(TokenError::Missing))
        ));
        assert!(matches!(
            check(1, "cgstorm.token=xyz"),
            Err(Refusal::Token(TokenError::NotHex('x')))
        ));
    }
}
