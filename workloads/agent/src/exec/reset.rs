//! Putting the guest back into its state right after boot, between programs.

/// Undoes what programs did; returns what could not be undone.
pub fn reset() -> Vec<String> {
    vec!["reset is not implemented yet".into()]
}
