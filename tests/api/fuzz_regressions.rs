//! Inputs the fuzzers found interesting (fuzz/corpus and fuzz/regressions), replayed
//! through the socket-free request path on every `cargo test`.
//!
//! Every file of `fuzz/corpus/<target>/` (the minimised corpus) and
//! `fuzz/regressions/<target>/` (inputs that once broke a property) goes through the same
//! byte-to-input mapping as the fuzz target and must pass the same checks; both live in
//! `fuzz/src/mapping.rs`, included here. See fuzz/README.md for running the fuzzers.

use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../../fuzz/src/mapping.rs"]
mod mapping;

/// The corpus and regression files of one target, in a stable order.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for p in files {
            let data = std::fs::read(&p).unwrap();
            out.push((p, data));
        }
    }
    out
}

/// Runs every input, collecting all failures (so one run shows them all).
fn replay(target: &str, mut run: impl FnMut(&[u8]) -> Result<(), String>) {
    let files = inputs(target);
    assert!(
        files.len() >= 10,
        "fuzz/corpus/{target} is missing or nearly empty ({} files)",
        files.len()
    );
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut slowest = (0.0, PathBuf::new());
    for (path, data) in &files {
        let t = Instant::now();
        if let Err(e) = run(data) {
            failures.push(format!("{}: {e}", path.display()));
        }
        let secs = t.elapsed().as_secs_f64();
        if secs > slowest.0 {
            slowest = (secs, path.clone());
        }
    }
    eprintln!(
        "{target}: replayed {} inputs in {:.1}s (slowest {:.2}s: {})",
        files.len(),
        started.elapsed().as_secs_f64(),
        slowest.0,
        slowest.1.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fuzz_request_corpus_replays_cleanly() {
    let mut harness = mapping::Harness::new();
    harness.answers = Some(Default::default());
    replay("request", |data| harness.run(data).map(drop));
    let answers = harness.answers.take().unwrap_or_default();
    for ((route, status), n) in answers {
        eprintln!("  {route:<48} {status} x{n}");
    }
}

/// The mapping reaches past the input checks: hand-written inputs for setup → enable
/// and for login's challenge → verify → refresh → status (byte layout: fuzz/README.md).
#[test]
fn fuzz_request_mapping_reaches_the_deep_paths() {
    let mut harness = mapping::Harness::new();
    // Scenario 0 (no TOTP). POST setup as P, empty body; POST enable as P with
    // {"code": <current code of the secret setup returned>}.
    let enable = [0x00, 0, 1, 1, 0, 4, 0, 2, 1, 0, 0, 1, 0, 9, 0];
    assert_eq!(harness.run(&enable), Ok(vec![200, 200]));
    // Scenario 0x22 (P enabled, live challenge). verify {"mfaToken": <challenge>,
    // "code": "123 456" (P's current code)}; refresh {"refresh_token": <learned>};
    // GET status with the learned access token.
    let verify = [
        0x22, 0, 7, 0, 0, 0, 2, 3, 14, 0, 0, 7, 1, 0, 8, 0, 0, 0, 1, 5, 18, 0, 0, 4, 6, 0, 4,
    ];
    assert_eq!(harness.run(&verify), Ok(vec![200, 200, 200]));
    // The same verify again: the state was reset, so it works again; then the code of
    // the step before the one accepted at enable is a replay.
    assert_eq!(harness.run(&verify[..13]), Ok(vec![200]));
    let replay = [0x22, 0, 7, 0, 0, 0, 2, 3, 14, 0, 0, 10, 1];
    assert_eq!(harness.run(&replay), Ok(vec![401]));
    // Scenario 2 (P enabled). Login {"email": "PAT@EXAMPLE.COM", "password": <right>}
    // gives a challenge; verify it with {"mfaToken": <learned>, "code": <P's code>}.
    let login = [
        2, 0, 6, 0, 0, 0, 2, 2, 21, 1, 1, 19, 0, 7, 0, 0, 0, 2, 3, 16, 0, 0, 7, 0,
    ];
    assert_eq!(harness.run(&login), Ok(vec![200, 200]));
}

/// The framing inputs of issue #16 in the corpus (`framing-*`) reach the chunked decoder
/// and mean what their names say: a malformed coding is the layer's 400, a well-formed
/// one (trailers, an extension) reaches refresh, which refuses the token with 401.
#[test]
fn fuzz_request_framing_inputs_mean_what_they_say() {
    let mut harness = mapping::Harness::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
    for (name, want) in [
        ("bad-size-zz", 400),
        ("bad-size-minus-one", 400),
        ("empty-size", 400),
        ("size-2-pow-72", 400),
        ("data-longer-than-size", 400),
        ("malformed-trailer", 400),
        ("valid-trailers", 401),
        ("chunk-extension", 401),
        // An empty body with a trailer: `{}` reaches refresh, which has no token (401).
        ("empty-body-trailer-case", 401),
    ] {
        let data = std::fs::read(dir.join(format!("framing-{name}"))).unwrap();
        assert_eq!(harness.run(&data), Ok(vec![want]), "framing-{name}");
    }
}

#[test]
fn fuzz_otpauth_corpus_replays_cleanly() {
    replay("otpauth", mapping::run_otpauth);
}

#[test]
fn fuzz_webauthn_corpus_replays_cleanly() {
    replay("webauthn", mapping::run_webauthn);
}
