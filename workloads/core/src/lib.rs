//! cgstorm's workload language and kernel model.
//!
//! Everything here is pure: no file, process or VM access. The op vocabulary
//! ([`op`]), programs and their YAML form ([`program`]), the generator
//! ([`gen`]) and the model that predicts what a correct kernel returns
//! ([`model`]) run on the host, in unit tests and under `cargo fuzz`.
#![warn(missing_docs)]

pub mod checks;
pub mod errno;
pub mod gen;
pub mod model;
pub mod mutate;
pub mod names;
pub mod op;
pub mod outcome;
pub mod program;
pub mod reduce;
pub mod words;

pub use errno::Errno;
pub use names::{Cg, Dev, DevKind, FilePath, Hier, Limit, Millis, Name, Size};
pub use op::{Op, OpSpec};
pub use outcome::{Outcome, Outcomes};
pub use program::{Lane, OpId, Program, ProgramError};
