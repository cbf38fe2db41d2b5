//! A policy file: any text. Never a panic; an error points inside the file; a file
//! that compiles compiles again from the rules it produced.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vivified_domain::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_json_str(text) {
        Ok(policy) => {
            let again = Policy::with_untagged(policy.rules().to_vec(), policy.untagged());
            assert!(again.is_ok(), "its own rules compile again: {again:?}");
        }
        Err(e) => {
            if let Some(at) = e.position {
                assert!(at.line >= 1 && at.column >= 1, "{e:?}");
            }
        }
    }
});
