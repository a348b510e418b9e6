//! The `cgstorm` command line.
fn main() {}
