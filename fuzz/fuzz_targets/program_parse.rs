//! Arbitrary text never panics the parser; what parses is valid and
//! survives a round trip.
#![no_main]

use cgstorm_workloads::Program;
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    match Program::from_yaml("fuzz", text) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("fuzz"),
                "error does not name the file: {msg}"
            );
            Corpus::Keep
        }
        Ok(p) => {
            p.validate().expect("parsed programs are valid");
            let again = Program::from_yaml("fuzz", &p.to_yaml()).expect("re-parses");
            assert_eq!(again, p);
            Corpus::Keep
        }
    }
});
