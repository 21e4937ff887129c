//! Fuzz target `request`: byte strings → a few HTTP requests through
//! `mfad::http::dispatch` (no sockets), against one App and database built on first use.
//! The mapping and the properties live in `fuzz/src/mapping.rs`, which
//! `tests/api/fuzz_regressions.rs` shares to replay the corpus on every `cargo test`.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;

#[path = "../src/mapping.rs"]
mod mapping;

static HARNESS: OnceLock<Mutex<mapping::Harness>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(|| Mutex::new(mapping::Harness::new()));
    let mut harness = harness.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = harness.run(data) {
        panic!("{e}");
    }
});
