//! The server from the outside: the real binary on 127.0.0.1:0, spoken to over HTTP,
//! with TOTP codes from an independent implementation and QR codes read back by an
//! independent decoder. One test binary, as each extra one costs a link.

// Test and benchmark code: a failed unwrap is a failed run, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks
)]

mod accessibility;
mod apache;
mod clients;
// The helpers stay in tests/common/, where the benchmarks include its client by path.
mod commits;
#[path = "../common/mod.rs"]
mod common;
mod forward_auth;
mod fuzz_regressions;
mod hostile;
mod http_layer;
mod metrics;
mod nodes;
mod oidc;
mod oidc_page;
mod openapi;
mod openid_client;
mod operations;
mod page;
mod passkeys;
mod portal;
mod proxies;
mod readme;
mod resilience;
mod rules;
mod settings;
mod storno;
mod throttles;
mod tokens;

use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SETUP: &str = "/api/v1/me/mfa/totp/setup";
const ENABLE: &str = "/api/v1/me/mfa/totp/enable";
const DISABLE: &str = "/api/v1/me/mfa/totp/disable";
const STATUS: &str = "/api/v1/me/mfa/status";
const REGENERATE: &str = "/api/v1/me/mfa/backup-codes/regenerate";
const LOGIN: &str = "/api/auth";
const VERIFY: &str = "/api/auth/mfa/verify";
const REFRESH: &str = "/api/auth/refresh";
const PASSWORD: &str = "correct horse battery";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn key_set(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Setup: returns the secret.
fn setup(s: &Server, token: &str) -> String {
    let r = s.post(SETUP, Some(token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["secret"].as_str().unwrap().to_string()
}

/// Setup and enable now: the secret, the step the code was for, and the backup codes.
fn enable(s: &Server, token: &str) -> (String, u64, Vec<String>) {
    let secret = setup(s, token);
    let t = now();
    let code = code_at(&secret, t);
    // A space inside, as authenticator apps display it.
    let typed = format!("{} {}", &code[..3], &code[3..]);
    let r = s.post(ENABLE, Some(token), &json!({ "code": typed }));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        key_set(&v),
        ["backupCodes", "enabled"].map(String::from).into()
    );
    assert_eq!(v["enabled"], true);
    let codes: Vec<String> = v["backupCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, t / 30, codes)
}

fn login(s: &Server, email: &str, password: &str) -> common::Resp {
    s.post(
        LOGIN,
        None,
        &json!({ "email": email, "password": password }),
    )
}

fn challenge(s: &Server, email: &str) -> String {
    let r = login(s, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["mfa_required"], true, "{v}");
    let t = v["mfa_token"].as_str().unwrap().to_string();
    assert_eq!(t.len(), 64);
    assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    t
}

fn verify(s: &Server, mfa_token: &str, code: &str) -> common::Resp {
    s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "code": code }),
    )
}

fn status(s: &Server, token: &str) -> Value {
    let r = s.get(STATUS, Some(token));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Logs in a local account without MFA and returns its bearer token.
fn user_token(s: &Server, email: &str) -> String {
    s.add_user(email, PASSWORD);
    let r = login(s, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

/// The HS256 key of the tokens an mfad before EdDSA signed, derived from the server's
/// key file as it did.
fn own_secret(s: &Server) -> Vec<u8> {
    mfad::crypto::Keys::derive(&s.key())
        .unwrap()
        .jwt_secret()
        .to_vec()
}

/// A compact JWS of `claims` under `header`, signed by `key`.
fn jws(key: &mfad::crypto::SigningKey, header: &Value, claims: &Value) -> String {
    let b64 = |v: &Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = data_encoding::BASE64URL_NOPAD.encode(&key.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// A token of `claims` signed with the Ed25519 key of the instance whose key file is
/// `key` (derived as the server derives it), under the header mfad writes.
fn sign_with_instance_key(key: &[u8; 32], claims: &Value) -> String {
    let signing = mfad::crypto::Keys::derive(key)
        .unwrap()
        .token_signing_key()
        .unwrap();
    let kid = mfad::auth::thumbprint(&signing.public_key());
    jws(
        &signing,
        &json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}),
        claims,
    )
}

/// A token of `claims` signed as the server `s` signs its own.
fn sign_own(s: &Server, claims: &Value) -> String {
    sign_with_instance_key(&s.key(), claims)
}

// ---------------------------------------------------------------------------------------
// The seed endpoint

#[test]
fn setup_answers_exactly_the_seed_shape() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    let r = s.post(SETUP, Some(&token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    let v = r.json();
    assert_eq!(
        key_set(&v),
        ["otpauthUri", "qrCode", "secret"].map(String::from).into()
    );
    let secret = v["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    assert_eq!(
        data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap()
            .len(),
        20
    );
    let uri = v["otpauthUri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!("otpauth://totp/Storno:user@example.com?secret={secret}&issuer=Storno")
    );
    let (w, h, content) = decode_qr(v["qrCode"].as_str().unwrap());
    assert_eq!((w, h), (300, 300));
    assert_eq!(content, uri);
}

#[test]
fn setup_with_no_body_at_all_works_like_curl_without_d() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    let auth = format!("Bearer {token}");
    let r = s.request("POST", SETUP, &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn setup_encodes_the_label_and_the_issuer() {
    let s = Server::start(&["--issuer", "My Co"]);
    let token = s.token("a+b@example.com");
    let v = s.post(SETUP, Some(&token), &json!({})).json();
    let uri = v["otpauthUri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/My%20Co:a%2Bb@example.com?secret="),
        "{uri}"
    );
    assert!(uri.ends_with("&issuer=My%20Co"), "{uri}");
    assert_eq!(decode_qr(v["qrCode"].as_str().unwrap()).2, uri);
}

#[test]
fn second_setup_replaces_the_pending_secret() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    let first = setup(&s, &token);
    let second = setup(&s, &token);
    assert_ne!(first, second);
    // Only the newest pending secret enables.
    let r = s.post(
        ENABLE,
        Some(&token),
        &json!({ "code": code_at(&first, now()) }),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let r = s.post(
        ENABLE,
        Some(&token),
        &json!({ "code": code_at(&second, now()) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn setup_is_409_once_enabled() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    enable(&s, &token);
    let r = s.post(SETUP, Some(&token), &json!({}));
    assert_eq!(r.status, 409);
    assert_eq!(key_set(&r.json()), ["error"].map(String::from).into());
    assert_eq!(status(&s, &token)["totpEnabled"], true);
}

#[test]
fn bearer_failures_are_401_in_storno_shape() {
    let s = Server::start(&[]);
    let good = s.token("user@example.com");
    let hs = EncodingKey::from_secret(&own_secret(&s));
    let exp = now() as i64 + 600;
    let mut tampered = good.clone().into_bytes();
    let n = tampered.len();
    tampered[n - 3] = if tampered[n - 3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let b64 = |v: Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "1", "iss": "mfad", "exp": exp, "email": "user@example.com"}))
    );
    let other_instance =
        sign_with_instance_key(&[9u8; 32], &json!({"sub": "1", "iss": "mfad", "exp": exp}));
    let expired = sign_own(
        &s,
        &json!({"sub": "1", "iss": "mfad", "exp": now() as i64 - 3600}),
    );
    let exp_string = sign_own(
        &s,
        &json!({"sub": "1", "iss": "mfad", "exp": exp.to_string()}),
    );
    let no_exp = sign_own(&s, &json!({"sub": "1", "iss": "mfad"}));
    let unknown_account = sign_own(&s, &json!({"sub": "999", "iss": "mfad", "exp": exp}));
    // A new instance never signed HS256: its old key opens nothing.
    let hs256 = sign(
        &json!({"sub": "1", "iss": "mfad", "iat": now() as i64 - 10, "exp": exp}),
        Algorithm::HS256,
        &hs,
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("another scheme", Some(format!("Basic {good}"))),
        ("garbage", Some("Bearer not-a-token".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("tampered signature", Some(format!("Bearer {tampered}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        ("another instance", Some(format!("Bearer {other_instance}"))),
        ("expired", Some(format!("Bearer {expired}"))),
        ("exp is a string", Some(format!("Bearer {exp_string}"))),
        ("no exp", Some(format!("Bearer {no_exp}"))),
        ("unknown account", Some(format!("Bearer {unknown_account}"))),
        (
            "HS256 under the instance's old key",
            Some(format!("Bearer {hs256}")),
        ),
    ];
    for (name, auth) in cases {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let r = s.request("POST", SETUP, &headers, None);
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        let v = r.json();
        assert_eq!(
            key_set(&v),
            ["code", "error", "message"].map(String::from).into(),
            "{name}"
        );
        assert_eq!(v["code"], 401, "{name}");
        assert_eq!(v["message"], v["error"], "{name}");
    }
    // The same forging path with the right key and a good exp is accepted, so the
    // refusals above are about what they vary.
    let ok = sign_own(&s, &json!({"sub": "1", "iss": "mfad", "exp": exp}));
    assert_eq!(s.post(SETUP, Some(&ok), &json!({})).status, 200);
    assert_eq!(s.post(SETUP, Some(&good), &json!({})).status, 200);
}

#[test]
fn external_rs256_tokens_need_their_key_configured() {
    let tmp = tempfile::tempdir().unwrap();
    let pubkey = tmp.path().join("issuer.pem");
    std::fs::write(&pubkey, fixture("rs256-public.pem")).unwrap();
    let private = EncodingKey::from_rsa_pem(&fixture("rs256-private.pem")).unwrap();
    let other = EncodingKey::from_rsa_pem(&fixture("other-private.pem")).unwrap();
    let exp = now() as i64 + 600;
    let claims = json!({"username": "alice@example.org", "exp": exp, "roles": ["ROLE_USER"]});
    let token = sign(&claims, Algorithm::RS256, &private);

    let plain = Server::start(&[]);
    assert_eq!(plain.post(SETUP, Some(&token), &json!({})).status, 401);
    drop(plain);

    let s = Server::start(&[
        "--jwt-public-key",
        pubkey.to_str().unwrap(),
        "--jwt-algorithm",
        "RS256",
    ]);
    let r = s.post(SETUP, Some(&token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let uri = r.json()["otpauthUri"].as_str().unwrap().to_string();
    assert!(
        uri.starts_with("otpauth://totp/Storno:alice@example.org?"),
        "{uri}"
    );
    // Same account on the next call (created once, by `username`).
    let (_, out, _) = s.cli(&["user", "list"], None);
    assert_eq!(
        out.matches("external:alice@example.org").count(),
        1,
        "{out}"
    );
    assert_eq!(s.post(SETUP, Some(&token), &json!({})).status, 200);

    // Signed by another key; algorithm confusion (HS256 keyed with the public PEM); a
    // token the external issuer signed without exp.
    let forged = sign(&claims, Algorithm::RS256, &other);
    let confused = sign(
        &claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(&fixture("rs256-public.pem")),
    );
    let no_exp = sign(
        &json!({"username": "alice@example.org"}),
        Algorithm::RS256,
        &private,
    );
    for t in [forged, confused, no_exp] {
        assert_eq!(s.post(SETUP, Some(&t), &json!({})).status, 401);
    }
}

#[test]
fn unknown_path_404_wrong_method_405_with_allow() {
    let s = Server::start(&[]);
    let r = s.get("/nope", None);
    assert_eq!(r.status, 404);
    assert_eq!(key_set(&r.json()), ["error"].map(String::from).into());
    let r = s.get(SETUP, None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
    let r = s.request("DELETE", "/healthz", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
}

#[test]
fn oversized_bodies_are_413_without_being_read() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    // Announce a terabyte and send nothing: the answer comes from Content-Length alone,
    // and the process survives it.
    let raw = format!(
        "POST {SETUP} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000000000000\r\n\r\n"
    );
    let r = raw_request(s.addr, raw.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(key_set(&r.json()), ["error"].map(String::from).into());
    let r = s.request(
        "POST",
        LOGIN,
        &[],
        Some(&format!("{{\"email\":\"{}\"}}", "a".repeat(20_000))),
    );
    assert_eq!(r.status, 413);
    // A chunked body is cut off at the cap.
    let mut raw = format!("POST {LOGIN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for _ in 0..20 {
        raw.extend_from_slice(b"400\r\n");
        raw.extend_from_slice(&[b' '; 0x400]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw_request(s.addr, &raw).status, 413);
    assert_eq!(s.get("/healthz", None).status, 200);
}

#[test]
fn malformed_json_is_400() {
    let s = Server::start(&[]);
    for body in ["{", "[]", "\"x\"", "12", "{\"email\": }"] {
        let r = s.request("POST", LOGIN, &[], Some(body));
        assert_eq!(r.status, 400, "{body}");
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn healthz_answers_ok() {
    let s = Server::start(&[]);
    let r = s.get("/healthz", None);
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(key_set(&body), key_set(&json!({"status": 0, "time": 0})));
    assert_eq!(body["status"], "ok");
    // The server's clock, for an operator chasing codes that do not work.
    let time = body["time"].as_i64().unwrap();
    assert!((time - now() as i64).abs() <= 5, "{time}");
}

/// A code of a clock three steps ahead is refused, at verify and at enable alike, and
/// audited with the offset, which `user show` prints; a code of a step 20 away is just
/// wrong.
#[test]
fn a_code_from_a_clock_90_s_ahead_is_refused_and_audited_as_drift() {
    let s = Server::start(&[]);
    let email = "drift@example.com";
    s.add_user(email, PASSWORD);
    let token = s.token(email);
    let secret = setup(&s, &token);
    let ahead = code_at(&secret, now() + 90);
    let window: Vec<String> = (-1..=1)
        .map(|k: i64| code_at(&secret, (now() as i64 + 30 * k) as u64))
        .collect();
    if window.contains(&ahead) {
        return; // one chance in about 300,000: the drift code is also a code of now
    }
    let r = s.post(ENABLE, Some(&token), &json!({ "code": ahead }));
    assert_eq!(r.status, 422, "{}", r.text());
    let (secret, _, _) = enable(&s, &token);
    let mfa = challenge(&s, email);
    let ahead = code_at(&secret, now() + 90);
    let r = verify(&s, &mfa, &ahead);
    assert_eq!(r.status, 401, "{}", r.text());
    let far = code_at(&secret, now() + 600);
    assert_eq!(verify(&s, &mfa, &far).status, 401);
    let (_, out, _) = s.cli(&["user", "show", "--email", email], None);
    assert_eq!(
        out.matches("clock_drift_suspected (+90 s)").count(),
        2,
        "at enable and at verify, not for the far one: {out}"
    );
}

#[test]
fn restart_keeps_the_key_so_old_tokens_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Server::start_in(&dir, &[]);
    let token = s.token("user@example.com");
    let key = s.key();
    assert_eq!(s.post(SETUP, Some(&token), &json!({})).status, 200);
    let status = s.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("mfad.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let s = Server::start_in(&dir, &[]);
    assert_eq!(s.key(), key);
    assert_eq!(s.post(SETUP, Some(&token), &json!({})).status, 200);
}

#[test]
fn a_bad_key_file_stops_the_start_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("short.key");
    std::fs::write(&key, [1u8; 16]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = refused_start(&tmp.path().join("d"), Some(&key));
    assert!(err.contains("holds 16 bytes, not 32"), "{err}");

    std::fs::write(&key, [1u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let err = refused_start(&tmp.path().join("d"), Some(&key));
    assert!(err.contains("chmod 600"), "{err}");

    let out = std::process::Command::new(BIN)
        .args(["--issuer", "a:b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--issuer"));
}

#[test]
fn another_key_for_an_existing_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(Server::start_in(&dir, &[]));
    let other = tmp.path().join("other.key");
    std::fs::write(&other, [5u8; 32]).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = refused_start(&dir, Some(&other));
    assert!(err.contains("is not the key of database"), "{err}");
}

#[test]
fn keep_alive_setups_share_one_connection() {
    // 21 setups (each answer ~3 KB) on one keep-alive connection, each read whole. How
    // long they take (the delayed-ACK stall that TCP_NODELAY avoids, ~40 ms each) is the
    // load generator's to measure: `cargo bench --bench loadgen` at 1 connection.
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let req = format!("POST {SETUP} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n");
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        stream.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.body.len() > 1024,
            "the answer must span several 1 KiB writes"
        );
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!("keep-alive setup, debug build: median {:?}", times[10]);
}

#[test]
fn no_secret_in_any_file_of_the_data_dir() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    let (secret, _, codes) = enable(&s, &token);
    let pending = setup_pending_other(&s);
    let mfa = challenge(&s, "user@example.com");
    let r = verify(&s, &mfa, &codes[0]);
    assert_eq!(r.status, 200);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let raw_pending = data_encoding::BASE32_NOPAD
        .decode(pending.as_bytes())
        .unwrap();
    let mut needles: Vec<Vec<u8>> = vec![
        secret.clone().into_bytes(),
        secret.to_lowercase().into_bytes(),
        raw,
        pending.clone().into_bytes(),
        raw_pending,
        refresh.clone().into_bytes(),
        data_encoding::HEXLOWER.decode(refresh.as_bytes()).unwrap(),
        mfa.clone().into_bytes(),
        data_encoding::HEXLOWER.decode(mfa.as_bytes()).unwrap(),
        PASSWORD.as_bytes().to_vec(),
    ];
    for c in &codes {
        needles.push(c.clone().into_bytes());
        needles.push(c.replace('-', "").into_bytes());
    }
    let files = all_file_bytes(&s.dir);
    if let Some(rows) = postgres_rows(&s.dir) {
        // PostgreSQL: the data directory holds the key alone; the rows hold no secret,
        // as text or as the hex of a bytea.
        assert!(
            rows.contains("user@example.com"),
            "the dump is not of this server"
        );
        for n in &needles {
            assert!(!contains(rows.as_bytes(), n), "a row holds a secret");
            let hex = data_encoding::HEXLOWER.encode(n);
            assert!(!rows.contains(&hex), "a bytea holds a secret");
        }
    } else {
        assert!(files.iter().any(|(p, _)| p.ends_with("mfad.db")));
    }
    for (path, bytes) in &files {
        if path.ends_with("mfad.key") {
            continue;
        }
        for n in &needles {
            assert!(!contains(bytes, n), "{} contains a secret", path.display());
        }
    }
}

/// Another account with a pending (not enabled) secret; returns that secret.
fn setup_pending_other(s: &Server) -> String {
    let token = s.token("pending@example.com");
    setup(s, &token)
}

// ---------------------------------------------------------------------------------------
// The lifecycle

#[test]
fn whole_flow_login_setup_enable_verify_backup() {
    let s = Server::start(&[]);
    let email = "User@Example.com";
    let token = user_token(&s, email);
    assert_eq!(
        status(&s, &token),
        json!({"totpEnabled": false, "backupCodesRemaining": 0, "passkeysCount": 0})
    );
    let (secret, step, codes) = enable(&s, &token);
    assert_eq!(codes.len(), 10);
    for c in &codes {
        assert_eq!(c.len(), 9, "{c}");
        assert_eq!(&c[4..5], "-");
        assert!(c
            .replace('-', "")
            .bytes()
            .all(|b| b"abcdefghjkmnpqrstuvwxyz23456789".contains(&b)));
    }
    assert_eq!(
        status(&s, &token),
        json!({"totpEnabled": true, "backupCodesRemaining": 10, "passkeysCount": 0})
    );

    // Login now asks for the second factor, case-insensitively by email.
    let r = login(&s, "user@example.COM", PASSWORD);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        key_set(&v),
        ["mfa_methods", "mfa_required", "mfa_token"]
            .map(String::from)
            .into()
    );
    assert_eq!(v["mfa_methods"], json!(["totp", "backup_code"]));
    let mfa = v["mfa_token"].as_str().unwrap().to_string();

    // The code spent at enable is refused; the next step's code is accepted once.
    let used = code_at(&secret, step * 30);
    let r = verify(&s, &mfa, &used);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid code."}));
    let next = code_at(&secret, (step + 1) * 30);
    let r = verify(&s, &mfa, &next);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        key_set(&v),
        ["refresh_token", "token"].map(String::from).into()
    );
    let new_token = v["token"].as_str().unwrap();
    assert_eq!(status(&s, new_token)["totpEnabled"], true);
    // The challenge is gone.
    let r = verify(&s, &mfa, &next);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "Invalid or expired MFA challenge."})
    );
    // The same code on a new challenge is a replay.
    let mfa2 = challenge(&s, email);
    assert_eq!(verify(&s, &mfa2, &next).status, 401);

    // A backup code, upper case, no dash, explicit type.
    let typed = codes[0].replace('-', "").to_uppercase();
    let r = s.post(
        VERIFY,
        None,
        &json!({"mfaToken": mfa2, "code": typed, "type": "backup"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(&s, &token)["backupCodesRemaining"], 9);
    // Spent.
    let mfa3 = challenge(&s, email);
    assert_eq!(verify(&s, &mfa3, &codes[0]).status, 401);
    // A second one, inferred from its shape.
    assert_eq!(verify(&s, &mfa3, &codes[1]).status, 200);
    assert_eq!(status(&s, &token)["backupCodesRemaining"], 8);
}

#[test]
fn enable_checks_in_the_documented_order() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    assert_eq!(s.post(ENABLE, Some(&token), &json!({})).status, 400);
    assert_eq!(
        s.post(ENABLE, Some(&token), &json!({"code": 123456}))
            .status,
        400
    );
    let r = s.post(ENABLE, Some(&token), &json!({"code": "123456"}));
    assert_eq!(r.status, 422, "no pending secret: {}", r.text());
    let secret = setup(&s, &token);
    let wrong = format!(
        "{:06}",
        (code_at(&secret, now()).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    assert_eq!(
        s.post(ENABLE, Some(&token), &json!({"code": wrong})).status,
        422
    );
    assert_eq!(
        s.post(ENABLE, Some(&token), &json!({"code": "12345"}))
            .status,
        422
    );
    // Two steps away is outside the window.
    let far = code_at(&secret, now() - 90);
    if far != code_at(&secret, now()) && far != code_at(&secret, now() - 30) {
        assert_eq!(
            s.post(ENABLE, Some(&token), &json!({"code": far})).status,
            422
        );
    }
    let prev = code_at(&secret, now() - 30);
    let r = s.post(ENABLE, Some(&token), &json!({"code": prev}));
    assert_eq!(
        r.status,
        200,
        "one step back is inside the window: {}",
        r.text()
    );
    assert_eq!(
        s.post(ENABLE, Some(&token), &json!({"code": "123456"}))
            .status,
        409
    );
    assert_eq!(s.post(ENABLE, Some(&token), &json!({})).status, 400);
}

#[test]
fn five_wrong_codes_kill_the_challenge() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    let (secret, step, _) = enable(&s, &token);
    let mfa = challenge(&s, "user@example.com");
    for i in 1..=4 {
        let r = verify(&s, &mfa, "000000");
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = verify(&s, &mfa, "000000");
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"error": "Too many failed attempts. Please log in again."})
    );
    assert!(r.header("Retry-After").is_some());
    // Dead, even for the right code.
    let r = verify(&s, &mfa, &code_at(&secret, (step + 1) * 30));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "Invalid or expired MFA challenge.");
}

#[test]
fn ten_wrong_codes_across_challenges_lock_the_account() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    let (secret, step, codes) = enable(&s, &token);
    let mut last = 0;
    for _ in 0..2 {
        let mfa = challenge(&s, "user@example.com");
        for _ in 0..5 {
            last = verify(&s, &mfa, "00000000").status;
        }
    }
    assert_eq!(last, 429);
    let mfa = challenge(&s, "user@example.com");
    let r = verify(&s, &mfa, &code_at(&secret, (step + 1) * 30));
    assert_eq!(r.status, 429, "locked: even the right code waits");
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "{retry}");
    assert_eq!(verify(&s, &mfa, &codes[0]).status, 429);
    let (_, out, _) = s.cli(&["user", "show", "--email", "user@example.com"], None);
    assert!(out.contains("account_locked"), "{out}");
    assert!(out.contains("challenge_locked"), "{out}");
}

#[test]
fn a_right_code_resets_the_count_of_wrong_ones() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    let (_, _, codes) = enable(&s, &token);
    for (round, code) in codes.iter().take(3).enumerate() {
        let mfa = challenge(&s, "user@example.com");
        for _ in 0..4 {
            assert_eq!(verify(&s, &mfa, "00000000").status, 401);
        }
        assert_eq!(verify(&s, &mfa, code).status, 200, "round {round}");
    }
}

#[test]
fn verify_validates_its_input() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    enable(&s, &token);
    let mfa = challenge(&s, "user@example.com");
    for body in [
        json!({"code": "123456"}),
        json!({"mfaToken": mfa}),
        json!({"mfaToken": 5, "code": "123456"}),
        json!({"mfaToken": mfa, "code": "123456", "type": "sms"}),
    ] {
        assert_eq!(s.post(VERIFY, None, &body).status, 400, "{body}");
    }
    for bad in ["", "zz", &"0".repeat(64), &mfa[..63]] {
        let r = verify(&s, bad, "123456");
        assert_eq!(r.status, 401);
        assert_eq!(
            r.json(),
            json!({"error": "Invalid or expired MFA challenge."})
        );
    }
}

#[test]
fn unknown_email_and_wrong_password_look_the_same() {
    let s = Server::start(&[]);
    s.add_user("user@example.com", PASSWORD);
    let a = login(&s, "nobody@example.com", PASSWORD);
    let b = login(&s, "user@example.com", "wrong password");
    assert_eq!(a.status, 401);
    assert_eq!(a.body, b.body);
    assert_eq!(b.status, 401);
    assert_eq!(
        a.json(),
        json!({"code": 401, "message": "Invalid credentials.", "error": "Invalid credentials."})
    );
    // A passwordless account (made by `mfad token`) cannot log in with any password.
    s.token("nopass@example.com");
    assert_eq!(login(&s, "nopass@example.com", "").body, a.body);
    assert_eq!(s.post(LOGIN, None, &json!({"email": "x"})).status, 400);
    assert_eq!(
        s.post(LOGIN, None, &json!({"email": "x", "password": 1}))
            .status,
        400
    );
}

#[test]
fn failed_logins_are_throttled_per_address() {
    let s = Server::start(&["--login-rate", "3"]);
    s.add_user("user@example.com", PASSWORD);
    for _ in 0..3 {
        assert_eq!(login(&s, "user@example.com", "nope nope").status, 401);
    }
    let r = login(&s, "user@example.com", PASSWORD);
    assert_eq!(r.status, 429, "even the right password waits");
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(key_set(&r.json()), ["error"].map(String::from).into());
}

#[test]
fn regenerate_and_disable_confirm_with_the_password() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    let r = s.post(REGENERATE, Some(&token), &json!({"password": PASSWORD}));
    assert_eq!(r.status, 400, "not enabled yet: {}", r.text());
    let (_, _, old) = enable(&s, &token);
    assert_eq!(
        s.post(REGENERATE, Some(&token), &json!({"password": "wrong one"}))
            .status,
        422
    );
    assert_eq!(s.post(REGENERATE, Some(&token), &json!({})).status, 422);
    let r = s.post(REGENERATE, Some(&token), &json!({"password": PASSWORD}));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(key_set(&v), ["backupCodes"].map(String::from).into());
    let new: Vec<String> = v["backupCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(new.len(), 10);
    assert_eq!(status(&s, &token)["backupCodesRemaining"], 10);
    let mfa = challenge(&s, "user@example.com");
    assert_eq!(
        verify(&s, &mfa, &old[0]).status,
        401,
        "old codes stop working"
    );
    assert_eq!(verify(&s, &mfa, &new[0]).status, 200);

    assert_eq!(
        s.post(DISABLE, Some(&token), &json!({"password": "wrong one"}))
            .status,
        422
    );
    // Storno: a password that is not a string is an incorrect one.
    let r = s.post(DISABLE, Some(&token), &json!({"password": 5}));
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json(),
        json!({"error": "Password is incorrect.", "messageKey": "error.auth.password_incorrect"})
    );
    let r = s.post(DISABLE, Some(&token), &json!({"password": PASSWORD}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"disabled": true}));
    assert_eq!(
        status(&s, &token),
        json!({"totpEnabled": false, "backupCodesRemaining": 0, "passkeysCount": 0})
    );
    // Login is single-factor again; disabling twice is fine.
    assert!(login(&s, "user@example.com", PASSWORD).json()["token"].is_string());
    assert_eq!(
        s.post(DISABLE, Some(&token), &json!({"password": PASSWORD}))
            .status,
        200
    );
    let (_, out, _) = s.cli(&["user", "show", "--email", "user@example.com"], None);
    for event in [
        "mfa_enabled",
        "backup_codes_regenerated",
        "backup_code_used",
        "mfa_disabled",
    ] {
        assert!(out.contains(event), "{event} missing from {out}");
    }
}

#[test]
fn accounts_without_a_password_confirm_with_a_code() {
    let s = Server::start(&[]);
    let token = s.token("dev@example.com");
    let (secret, step, codes) = enable(&s, &token);
    assert_eq!(
        s.post(DISABLE, Some(&token), &json!({"password": PASSWORD}))
            .status,
        422
    );
    assert_eq!(
        s.post(DISABLE, Some(&token), &json!({"code": "000000"}))
            .status,
        422
    );
    // The code spent at enable does not confirm (replay).
    let used = code_at(&secret, step * 30);
    assert_eq!(
        s.post(REGENERATE, Some(&token), &json!({"code": used}))
            .status,
        422
    );
    let r = s.post(REGENERATE, Some(&token), &json!({"code": codes[0]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let next = code_at(&secret, (step + 1) * 30);
    let r = s.post(DISABLE, Some(&token), &json!({"code": next}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(&s, &token)["totpEnabled"], false);
}

#[test]
fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = Server::start(&[]);
    s.add_user("user@example.com", PASSWORD);
    let v = login(&s, "user@example.com", PASSWORD).json();
    let first = v["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(first.len(), 64);
    let r = s.post(REFRESH, None, &json!({"refresh_token": first}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        key_set(&v),
        ["refresh_token", "token"].map(String::from).into()
    );
    let second = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(
        status(&s, v["token"].as_str().unwrap())["totpEnabled"],
        false
    );
    // Reusing the first one is theft or a bug: it fails and kills the second too.
    let r = s.post(REFRESH, None, &json!({"refresh_token": first}));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], 401);
    assert_eq!(
        s.post(REFRESH, None, &json!({"refresh_token": second}))
            .status,
        401
    );
    // Another login is another family, untouched.
    let other = login(&s, "user@example.com", PASSWORD).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.post(REFRESH, None, &json!({"refresh_token": other}))
            .status,
        200
    );
    let r = s.post(REFRESH, None, &json!({}));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"code": 401, "message": "Missing JWT Refresh Token", "error": "Missing JWT Refresh Token"})
    );
    assert_eq!(
        s.post(REFRESH, None, &json!({"refresh_token": "abc"}))
            .status,
        401
    );
    let (_, out, _) = s.cli(&["user", "show", "--email", "user@example.com"], None);
    assert!(out.contains("refresh_reuse_detected"), "{out}");
}

/// Submits `code` on every challenge at once (threads released together); the statuses.
fn race(s: &Server, challenges: &[String], code: &str) -> Vec<u16> {
    let barrier = std::sync::Barrier::new(challenges.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = challenges
            .iter()
            .map(|mfa| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    verify(s, mfa, code).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn count(statuses: &[u16], code: u16) -> usize {
    statuses.iter().filter(|&&c| c == code).count()
}

#[test]
fn same_totp_code_on_eight_challenges_succeeds_once() {
    let s = Server::start(&["--workers", "8"]);
    let token = user_token(&s, "user@example.com");
    let (secret, step, _) = enable(&s, &token);
    let challenges: Vec<String> = (0..8).map(|_| challenge(&s, "user@example.com")).collect();
    let statuses = race(&s, &challenges, &code_at(&secret, (step + 1) * 30));
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 401), 7, "{statuses:?}");
}

#[test]
fn same_backup_code_on_eight_challenges_succeeds_once() {
    let s = Server::start(&["--workers", "8"]);
    let token = user_token(&s, "user@example.com");
    let (_, _, codes) = enable(&s, &token);
    let challenges: Vec<String> = (0..8).map(|_| challenge(&s, "user@example.com")).collect();
    let statuses = race(&s, &challenges, &codes[3]);
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 401), 7, "{statuses:?}");
    assert_eq!(status(&s, &token)["backupCodesRemaining"], 9);
}

#[test]
fn admin_commands_list_show_reset_and_delete() {
    let s = Server::start(&[]);
    let token = user_token(&s, "user@example.com");
    enable(&s, &token);
    let (ok, out, _) = s.cli(&["user", "list"], None);
    assert!(ok);
    assert!(
        out.contains("user@example.com") && out.contains(" on "),
        "{out}"
    );
    let (ok, _, err) = s.cli(
        &[
            "user",
            "add",
            "--email",
            "user@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = s.cli(
        &[
            "user",
            "add",
            "--email",
            "short@example.com",
            "--password-stdin",
        ],
        Some("short"),
    );
    assert!(!ok && err.contains("at least 8"), "{err}");

    // Lost phone: the admin turns TOTP off; login is single-factor again.
    let (ok, out, _) = s.cli(&["user", "reset-mfa", "--email", "user@example.com"], None);
    assert!(ok, "{out}");
    assert_eq!(status(&s, &token)["totpEnabled"], false);
    assert!(login(&s, "user@example.com", PASSWORD).json()["token"].is_string());
    let (_, out, _) = s.cli(&["user", "show", "--email", "user@example.com"], None);
    assert!(
        out.contains("mfa_reset_by_admin") && out.contains("totp:         off"),
        "{out}"
    );

    let (ok, _, _) = s.cli(
        &[
            "user",
            "passwd",
            "--email",
            "user@example.com",
            "--password-stdin",
        ],
        Some("new password 1"),
    );
    assert!(ok);
    assert_eq!(login(&s, "user@example.com", PASSWORD).status, 401);
    assert_eq!(login(&s, "user@example.com", "new password 1").status, 200);

    let (ok, _, _) = s.cli(&["user", "delete", "--email", "user@example.com"], None);
    assert!(ok);
    assert_eq!(
        s.get(STATUS, Some(&token)).status,
        401,
        "a deleted account's token is dead"
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let s = Server::start(&[]);
    s.add_user("user@example.com", PASSWORD);
    let addr = s.addr;
    // Login costs a 600,000-iteration PBKDF2: it is still running when SIGTERM lands.
    let in_flight = std::thread::spawn(move || {
        let body = json!({"email": "user@example.com", "password": PASSWORD}).to_string();
        request(addr, "POST", LOGIN, &[], Some(&body))
    });
    std::thread::sleep(Duration::from_millis(80));
    let status = s.terminate();
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["token"].is_string());
    assert_eq!(status.code(), Some(0));
}
