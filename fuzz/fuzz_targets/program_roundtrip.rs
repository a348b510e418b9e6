//! bytes -> program -> YAML -> program is the identity, and the YAML is valid.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cgstorm_workloads::Program;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Program::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    p.validate().expect("generated programs are valid");
    let yaml = p.to_yaml();
    let back = Program::from_yaml("fuzz", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(back, p, "round trip changed the program:\n{yaml}");
});
