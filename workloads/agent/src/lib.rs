//! The cgstorm guest agent, library side: what it shares with the host
//! lives in `cgstorm-proto` (re-exported here under the same names, for the
//! agent's own modules).

#![warn(missing_docs)]

pub use cgstorm_proto::{cmdline, contract, guard, proto};
