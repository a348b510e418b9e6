//! cgstorm's workload language: ops, programs, the generator and the model.
