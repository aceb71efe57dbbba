//! The loader must return Ok or a located error for any input, never panic.
//! Run: `cargo +nightly fuzz run load_config -- -max_total_time=600`
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |name: &str| (name == "HOME").then(|| "/home/fuzz".to_string());
        if let Err(err) = flambe_config::load_str(Path::new("fuzz.yaml"), text, &env) {
            // Rendering must not panic either (caret arithmetic, slicing).
            let _ = err.to_string();
        }
    }
});
