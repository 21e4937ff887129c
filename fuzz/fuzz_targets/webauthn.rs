//! Fuzz target `webauthn`: arbitrary bytes through the passkey parsers and checks of
//! `mfad::webauthn` (authenticatorData, COSE keys, the attestation object, assertions).
//! The mapping and the properties live in `fuzz/src/mapping.rs` (shared with
//! `tests/api/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/mapping.rs"]
mod mapping;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mapping::run_webauthn(data) {
        panic!("{e}");
    }
});
