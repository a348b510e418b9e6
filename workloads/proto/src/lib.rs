//! What cgstorm's host and its guest agent share, with no guest-only
//! dependencies: the wire protocol ([`proto`]), the names and paths both
//! sides agree on ([`contract`]), the kernel command line parser and
//! per-boot token ([`cmdline`]) and the guard that decides whether the
//! agent may touch the system it runs on ([`guard`]).

#![warn(missing_docs)]

pub mod cmdline;
pub mod contract;
pub mod guard;
pub mod proto;
