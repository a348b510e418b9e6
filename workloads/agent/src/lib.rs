//! The cgstorm guest agent, library side.
//!
//! The agent binary runs as PID 1 inside the VM. This library holds what the
//! host needs to talk to it without linking the binary: the wire protocol
//! ([`proto`]), the names and paths both sides agree on ([`contract`]), the
//! kernel command line parser and per-boot token ([`cmdline`]) and the guard
//! that decides whether the agent may touch the system it runs on ([`guard`]).

#![warn(missing_docs)]

pub mod cmdline;
pub mod contract;
pub mod guard;
pub mod proto;
