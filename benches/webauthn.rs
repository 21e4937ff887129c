//! What one passkey assertion check costs in process (`mfad::webauthn::verify_assertion`:
//! clientDataJSON, authenticatorData, the stored COSE key and the signature), for each
//! algorithm of the committed vectors (made by Python's cryptography). Medians of several
//! rounds, in µs per assertion.
//!
//!     cargo bench --bench webauthn

// Test and benchmark code: a failed unwrap is a failed run, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks
)]

use std::hint::black_box;

use mfad::webauthn::{verify_assertion, Expected, Stored};
use serde_json::Value;

#[path = "common/timing.rs"]
mod timing;

const ROUNDS: usize = 7;
const PER_ROUND: u32 = 5_000;

fn hex(v: &Value) -> Vec<u8> {
    data_encoding::HEXLOWER
        .decode(v.as_str().unwrap().as_bytes())
        .unwrap()
}

fn main() {
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("../tests/fixtures/webauthn/vectors.json")).unwrap();
    let origins = vec!["http://localhost:8080".to_string()];
    println!("passkey assertion check, in process, median of {ROUNDS} rounds of {PER_ROUND}:");
    for v in &vectors {
        let a = &v["assertion"];
        let (cdj, data, sig) = (
            hex(&a["client_data_json"]),
            hex(&a["authenticator_data"]),
            hex(&a["signature"]),
        );
        let (challenge, key) = (hex(&a["challenge"]), hex(&v["cose_key"]));
        let expected = Expected {
            challenge: &challenge,
            origins: &origins,
            rp_id: "localhost",
        };
        let stored = Stored {
            cose_key: &key,
            sign_count: 0,
        };
        let us = timing::median_us(ROUNDS, PER_ROUND, || {
            black_box(verify_assertion(
                black_box(&cdj),
                &data,
                &sig,
                &expected,
                stored,
                true,
            ))
            .unwrap();
        });
        println!("  {:<6} {us:8.1} µs", v["alg"].as_str().unwrap());
    }
}
