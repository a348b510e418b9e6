//! The model: what a correct kernel returns for each op, and what state it is in.
//!
//! [`apply`] gives, for one op in one state, every (outcome, next state) a
//! correct kernel allows. [`predict`] runs it over every interleaving of a
//! program's lanes (for `cgstorm check` and the semantics corpus);
//! [`verify`] checks what a real kernel did, a trace of results per lane with
//! timestamps, for an interleaving that explains it (linearizability).

pub mod apply;
mod cgroup;
pub mod code;
mod dax;
mod explore;
mod files;
mod mounts;
pub mod snapshot;
pub mod state;
pub mod target;
mod tasks;
pub mod verify;

#[cfg(test)]
mod tests;

pub use apply::{apply, Ctx};
pub use explore::{predict, walk, Prediction, MAX_NODES};
pub use snapshot::{Eventual, Snapshot};
pub use state::State;
pub use target::{Kernel, Machine, Target};
pub use verify::{verify, Divergence, OpEvent, StepTrace, Trace};

/// Why the model could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Too many interleavings to explore.
    #[error(
        "step {step}: more than {nodes} interleaving states; use fewer lanes or ops between barriers"
    )]
    TooLarge {
        /// The step (0 before the first barrier).
        step: usize,
        /// Nodes explored when it gave up.
        nodes: usize,
    },
    /// A trace that does not fit the program.
    #[error("the trace does not fit the program: {0}")]
    BadTrace(String),
}
