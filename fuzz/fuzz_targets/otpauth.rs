//! Fuzz target `otpauth`: arbitrary issuer, account and secret strings through
//! `mfad::totp::percent_encode`, `mfad::totp::otpauth_uri` and `mfad::qr::otpauth_png`.
//! The mapping and the properties live in `fuzz/src/mapping.rs` (shared with
//! `tests/api/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/mapping.rs"]
mod mapping;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = mapping::run_otpauth(data) {
        panic!("{e}");
    }
});
