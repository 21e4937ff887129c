//! What checking one bearer token costs in process, by path: mfad's HS256 tokens of
//! before (the check every `/api/v1/` request paid until EdDSA), its EdDSA tokens the
//! first time they are seen, and again (answered from the memory of verdicts); and
//! what signing one costs. Medians of several rounds, in µs per token.
//!
//!     cargo bench --bench tokens

// Test and benchmark code: a failed unwrap is a failed run, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks
)]

use std::hint::black_box;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mfad::auth::{Login, SignIn, Tokens};
use mfad::crypto::Keys;

#[path = "common/timing.rs"]
mod timing;

const ROUNDS: usize = 7;
const PER_ROUND: u32 = 20_000;

/// The median of [`ROUNDS`] rounds of [`PER_ROUND`] calls, in µs per call.
fn median_us(f: impl FnMut()) -> f64 {
    timing::median_us(ROUNDS, PER_ROUND, f)
}

fn main() {
    let now = mfad::unix_now();
    let keys = Keys::derive(&[0x42; 32]).unwrap();
    // A database upgraded a minute ago: HS256 tokens of before are still accepted.
    let tokens = Tokens::new(&keys, "mfad", Some(now - 60), None).unwrap();
    let login = Login {
        how: SignIn::PasswordTotp,
        at: now,
    };
    let email = Some("bench@example.com");
    let eddsa = tokens.issue(1, email, login, None, now, 3600).unwrap();
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({
            "sub": "1", "email": "bench@example.com", "iat": now - 120,
            "exp": now + 3000, "iss": "mfad",
        }),
        &EncodingKey::from_secret(keys.jwt_secret()),
    )
    .unwrap();
    assert!(tokens.verify_uncached(&hs256, now).is_ok());
    assert!(tokens.verify_uncached(&eddsa, now).is_ok());

    let hs = median_us(|| {
        black_box(tokens.verify_uncached(black_box(&hs256), now)).unwrap();
    });
    let ed = median_us(|| {
        black_box(tokens.verify_uncached(black_box(&eddsa), now)).unwrap();
    });
    let remembered = median_us(|| {
        black_box(tokens.verify(black_box(&eddsa), now)).unwrap();
    });
    let sign = median_us(|| {
        black_box(tokens.issue(1, email, login, None, now, 3600)).unwrap();
    });
    let signing = keys.token_signing_key().unwrap();
    let message = [7u8; 300];
    let raw_sign = median_us(|| {
        black_box(signing.sign(black_box(&message)));
    });
    println!("bearer token, in process, median of {ROUNDS} rounds of {PER_ROUND}:");
    println!("  verify HS256 (the tokens of before)   {hs:8.2} µs");
    println!("  verify EdDSA, first time              {ed:8.2} µs");
    println!("  verify EdDSA, remembered              {remembered:8.2} µs");
    println!("  issue EdDSA                           {sign:8.2} µs");
    println!("    of which the Ed25519 signature      {raw_sign:8.2} µs");
    println!(
        "  token length: EdDSA {} bytes, HS256 {} bytes",
        eddsa.len(),
        hs256.len()
    );
}
