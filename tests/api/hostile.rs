//! Hostile clients: idle and trickling connections, oversized heads, and a table of bad
//! input sent to every endpoint. Every answer must be a clean 4xx with a JSON error (or
//! a closed connection where the head itself is unusable) — never a 500, a hang or a
//! lost worker.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const ENDPOINTS: [(&str, &str); 9] = [
    ("POST", "/api/v1/me/mfa/totp/setup"),
    ("POST", "/api/v1/me/mfa/totp/enable"),
    ("POST", "/api/v1/me/mfa/totp/disable"),
    ("GET", "/api/v1/me/mfa/status"),
    ("POST", "/api/v1/me/mfa/backup-codes/regenerate"),
    ("POST", "/api/auth"),
    ("POST", "/api/auth/mfa/verify"),
    ("POST", "/api/auth/refresh"),
    ("GET", "/healthz"),
];

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Waits until the peer closes (or resets) the connection; returns how long it took, or
/// `None` if it was still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {} // a 408 or 4xx before the close is fine
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn five_hundred_half_requests_do_not_starve_others() {
    let s = Server::start(&[]);
    let mut idle = Vec::new();
    for _ in 0..500 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.write_all(b"POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Le")
            .unwrap();
        idle.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = s.get("/healthz", None);
    let took = t.elapsed();
    // Answered at all (the client gives up after 30 s); how fast is the benchmark's.
    assert_eq!(r.status, 200);
    let rss = rss_kib(s.pid());
    eprintln!(
        "500 half-open connections: healthz in {took:?}, server RSS {} MiB",
        rss / 1024
    );
    assert!(rss < 100 * 1024, "RSS {rss} KiB");
    drop(idle);
}

#[test]
fn silent_and_trickling_clients_are_cut_off() {
    // The production timeouts are 10 s and 20 s; the same mechanisms, shorter.
    let s = Server::start(&[
        "--test-socket-timeout-ms",
        "2000",
        "--test-request-deadline-ms",
        "4000",
    ]);
    // Says nothing at all: the socket receive timeout (2 s here) closes it.
    let mut silent = TcpStream::connect(s.addr).unwrap();
    // Sends one header byte a second: the request deadline (4 s here) closes it.
    let trickler = {
        let addr = s.addr;
        std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if c.write_all(b"X").is_err() {
                    return Some(start.elapsed());
                }
                std::thread::sleep(Duration::from_secs(1));
                let mut probe = c.try_clone().unwrap();
                probe.set_nonblocking(true).unwrap();
                let mut b = [0u8; 256];
                match probe.read(&mut b) {
                    Ok(0) => return Some(start.elapsed()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Some(start.elapsed()),
                }
            }
            None
        })
    };
    let silent_closed = closed_within(&mut silent, Duration::from_secs(10));
    let trickle_closed = trickler.join().unwrap();
    eprintln!("silent client closed after {silent_closed:?}, trickler after {trickle_closed:?}");
    assert!(
        silent_closed.is_some_and(|d| d >= Duration::from_secs(1)),
        "{silent_closed:?}"
    );
    assert!(
        trickle_closed.is_some_and(|d| d <= Duration::from_secs(10)),
        "{trickle_closed:?}"
    );
    assert_eq!(s.get("/healthz", None).status, 200);
}

#[test]
fn oversized_heads_are_refused_not_buffered() {
    let s = Server::start(&[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9 * 1024));
    let r = raw_request(s.addr, long_target.as_bytes());
    assert_eq!(r.status, 414);
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..40 {
        head.push_str(&format!("X-Pad-{i}: {}\r\n", "b".repeat(500)));
    }
    head.push_str("\r\n");
    let r = raw_request(s.addr, head.as_bytes());
    assert_eq!(r.status, 431);
    // A head of a megabyte never arrives whole: the server answers and closes first.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nX-Big: ");
    let chunk = vec![b'c'; 64 * 1024];
    let mut sent = 0;
    while sent < 1024 * 1024 && c.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    let mut reader = BufReader::new(c);
    if let Ok(r) = read_response(&mut reader) {
        assert_eq!(r.status, 431);
    }
    assert_eq!(s.get("/healthz", None).status, 200);
}

/// Every endpoint × every kind of bad body: a 4xx with a JSON `error`, never a 5xx.
#[test]
fn bad_input_table_gets_its_exact_answers() {
    let s = Server::start(&[]);
    let token = s.token("user@example.com");
    let auth = format!("Bearer {token}");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let ten_k = "x".repeat(10_000);
    let control = "a\u{0}b\u{1b}[31mc\r\nd";
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", b"{\"code\": \"12".to_vec()),
        ("array", b"[1,2,3]".to_vec()),
        ("string", b"\"hello\"".to_vec()),
        ("number", b"42".to_vec()),
        ("null", b"null".to_vec()),
        ("deep array", deep.into_bytes()),
        ("deep object", deep_obj.into_bytes()),
        ("invalid utf-8", b"{\"code\": \"\xff\xfe\"}".to_vec()),
        ("lone surrogate", b"{\"code\": \"\\ud800\"}".to_vec()),
        ("wrong types", json!({"code": 123456, "password": [1], "email": {}, "mfaToken": true, "refresh_token": 5, "type": 1}).to_string().into_bytes()),
        ("10 kB strings", json!({"code": ten_k, "password": ten_k, "email": ten_k, "mfaToken": ten_k, "refresh_token": ten_k, "type": "totp"}).to_string().into_bytes()),
        ("control characters", json!({"code": control, "password": control, "email": control, "mfaToken": control, "refresh_token": control}).to_string().into_bytes()),
        ("oversized", format!("{{\"code\": \"{}\"}}", "9".repeat(17 * 1024)).into_bytes()),
        ("empty object", b"{}".to_vec()),
        ("nulls", b"{\"code\": null, \"password\": null, \"email\": null}".to_vec()),
        ("duplicate keys", b"{\"code\": \"1\", \"code\": \"2\"}".to_vec()),
        ("huge number", b"{\"code\": 1e999999}".to_vec()),
    ];
    let mut cases = 0;
    for (method, path) in ENDPOINTS {
        for (name, body) in &bodies {
            for with_auth in [false, true] {
                let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len()).into_bytes();
                if with_auth {
                    raw.extend_from_slice(format!("Authorization: {auth}\r\n").as_bytes());
                }
                raw.extend_from_slice(b"\r\n");
                raw.extend_from_slice(body);
                let r = raw_request(s.addr, &raw);
                cases += 1;
                let want = expected(method, path, name, with_auth);
                assert_eq!(
                    r.status,
                    want,
                    "{method} {path} {name} auth={with_auth}: {}",
                    r.text()
                );
                assert!(r.json().is_object(), "{method} {path} {name}: not JSON");
                if r.status != 200 {
                    assert!(r.json()["error"].is_string(), "{method} {path} {name}");
                }
            }
        }
    }
    cases += header_cases(&s, &auth);
    eprintln!("bad-input cases: {cases}, each answered exactly as expected");
    assert_eq!(s.get("/healthz", None).status, 200);
    assert!(
        s.log_has("GET /healthz 200"),
        "the log is complete up to the last request"
    );
    let log = s.log();
    assert!(
        !log.iter()
            .any(|l| l.contains(" 500 ") || l.contains("panic")),
        "a 500 or a panic in the log"
    );
}

/// The exact answer to one row of the bad-input table. Bodies are parsed before the
/// bearer check, so a body that is not one JSON object is `400` (`413` over the cap) on
/// every POST; GETs do not read bodies. The objects that do parse meet each endpoint's
/// own rules; the account (from `mfad token`: no password) has a pending TOTP setup from
/// the setup rows, which come first, and the two wrong logins stay under the throttle.
fn expected(method: &str, path: &str, body: &str, auth: bool) -> u16 {
    let parses = matches!(
        body,
        "wrong types" | "control characters" | "empty object" | "nulls"
    );
    let missing = matches!(body, "empty object" | "nulls");
    let needs_auth = path.starts_with("/api/v1/");
    if method == "GET" {
        return match (path, auth) {
            ("/healthz", _) => 200,
            (_, true) => 200,
            (_, false) => 401,
        };
    }
    // The deep ones are 20 kB and 50 kB, the five 10 kB strings 50 kB: over the cap
    // before their content matters.
    if matches!(
        body,
        "oversized" | "deep array" | "deep object" | "10 kB strings"
    ) {
        return 413;
    }
    if !parses {
        return 400;
    }
    if needs_auth && !auth {
        return 401;
    }
    match path {
        "/api/v1/me/mfa/totp/setup" => 200,
        // Nothing to confirm with (no password, TOTP off), nothing to protect.
        "/api/v1/me/mfa/totp/disable" => 200,
        "/api/v1/me/mfa/totp/enable" if missing || body == "wrong types" => 400,
        "/api/v1/me/mfa/totp/enable" => 422,
        // The confirmation code of another type is a wrong one (Storno's 422).
        "/api/v1/me/mfa/backup-codes/regenerate" => 422,
        // A refresh_token that is not a string counts as missing: Lexik's 401.
        "/api/auth/refresh" => 401,
        _ if missing || body == "wrong types" => 400,
        // Login: no such account. Verify, refresh: no such token.
        _ => 401,
    }
}

/// Bad headers: missing, duplicated, huge, lying and malformed lengths, bad chunking.
fn header_cases(s: &Server, auth: &str) -> usize {
    let heads: Vec<(&str, String, Option<u16>)> = vec![
        ("negative length", "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".into(), Some(400)),
        ("non-numeric length", "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".into(), Some(400)),
        ("two lengths", "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".into(), Some(400)),
        ("length over usize", "POST /api/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".into(), None),
        // Refused since issue #16 (the first one used to win, a 401 here).
        ("two authorizations", format!("GET /api/v1/me/mfa/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic x\r\nAuthorization: {auth}\r\n\r\n"), Some(400)),
        ("huge authorization", format!("GET /api/v1/me/mfa/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", "a".repeat(12_000)), Some(401)),
        ("control char in authorization", "GET /api/v1/me/mfa/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\x01b\r\n\r\n".into(), Some(400)),
        ("no host, HTTP/1.0", "GET /healthz HTTP/1.0\r\n\r\n".into(), Some(200)),
        ("bad chunk size", "POST /api/auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".into(), Some(400)),
        ("garbage request line", "HELLO\r\n\r\n".into(), Some(400)),
        ("unknown method", "BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(), Some(405)),
        ("absolute target", "GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(), Some(404)),
        ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), Some(505)),
    ];
    for (name, head, want) in &heads {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        let _ = c.shutdown(std::net::Shutdown::Write);
        let r = read_response(&mut BufReader::new(c));
        match (r, want) {
            (Ok(r), Some(code)) => assert_eq!(r.status, *code, "{name}: {}", r.text()),
            (Ok(r), None) => assert!((400..500).contains(&r.status), "{name}: {}", r.status),
            // 505 is the one 5xx allowed: it is tiny_http's correct answer to HTTP/2.
            (Err(e), Some(code)) => panic!("{name}: expected {code}, connection ended: {e}"),
            (Err(_), None) => {} // closed without an answer: acceptable for an unusable head
        }
    }
    heads.len()
}

#[test]
fn token_attacks_are_all_refused() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let fixture = |name: &str| {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let pubkey = tmp.path().join("issuer.pem");
    std::fs::write(&pubkey, fixture("rs256-public.pem")).unwrap();
    let s = Server::start(&[
        "--jwt-public-key",
        pubkey.to_str().unwrap(),
        "--jwt-algorithm",
        "RS256",
        "--jwt-external-issuer",
        "https://issuer.example",
        "--jwt-audience",
        "mfad-api",
    ]);
    let private = EncodingKey::from_rsa_pem(&fixture("rs256-private.pem")).unwrap();
    let other = EncodingKey::from_rsa_pem(&fixture("other-private.pem")).unwrap();
    let own = EncodingKey::from_secret(mfad::crypto::Keys::derive(&s.key()).unwrap().jwt_secret());
    let exp = now() as i64 + 600;
    let good =
        json!({"sub": "ext-1", "iss": "https://issuer.example", "aud": "mfad-api", "exp": exp});
    let with = |patch: serde_json::Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let rs = |claims: &serde_json::Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &private).unwrap()
    };
    let mut jku = Header::new(Algorithm::RS256);
    jku.kid = Some("../../etc/passwd".into());
    jku.jku = Some("https://attacker.example/jwks.json".into());
    jku.x5u = Some("https://attacker.example/cert.pem".into());

    // The same key and claims pass, so each refusal below is about what it changes.
    assert_eq!(s.get("/api/v1/me/mfa/status", Some(&rs(&good))).status, 200);
    assert_eq!(
        s.get(
            "/api/v1/me/mfa/status",
            Some(&jsonwebtoken::encode(&jku, &good, &private).unwrap())
        )
        .status,
        200,
        "kid/jku/x5u are ignored, not followed"
    );
    let b64 =
        |v: serde_json::Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64(json!({"alg": "none"})), b64(good.clone())),
        ),
        (
            "alg none, own claims",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none"})),
                b64(json!({"sub": "1", "iss": "mfad", "exp": exp}))
            ),
        ),
        (
            "HS256 keyed with the public key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(&fixture("rs256-public.pem")),
            )
            .unwrap(),
        ),
        (
            "another RSA key behind jku",
            jsonwebtoken::encode(&jku, &good, &other).unwrap(),
        ),
        (
            "RS512 with the right key",
            jsonwebtoken::encode(&Header::new(Algorithm::RS512), &good, &private).unwrap(),
        ),
        (
            "exp as a string",
            rs(&with(json!({"exp": exp.to_string()}))),
        ),
        ("exp as a bool", rs(&with(json!({"exp": true})))),
        ("no exp", rs(&with(json!({"exp": null})))),
        ("expired", rs(&with(json!({"exp": now() as i64 - 120})))),
        (
            "nbf in the future",
            rs(&with(json!({"nbf": now() as i64 + 600}))),
        ),
        ("nbf as a string", rs(&with(json!({"nbf": "0"})))),
        (
            "wrong iss",
            rs(&with(json!({"iss": "https://evil.example"}))),
        ),
        ("no iss", rs(&with(json!({"iss": null})))),
        ("wrong aud", rs(&with(json!({"aud": "another-api"})))),
        ("no aud", rs(&with(json!({"aud": null})))),
        ("no sub or username", rs(&with(json!({"sub": null})))),
        (
            "own HS256 with external claims",
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &good, &own).unwrap(),
        ),
        ("10 kB token", rs(&with(json!({"pad": "p".repeat(10_000)})))),
    ];
    for (name, token) in &cases {
        let r = s.get("/api/v1/me/mfa/status", Some(token));
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(r.json()["code"], 401, "{name}");
    }
    // A 100 kB token does not fit in the 16 KiB header section: refused before parsing.
    let huge = rs(&with(json!({"pad": "p".repeat(100_000)})));
    let r = request(
        s.addr,
        "GET",
        "/api/v1/me/mfa/status",
        &[("Authorization", &format!("Bearer {huge}"))],
        None,
    );
    assert_eq!(r.status, 431);
    eprintln!(
        "token attacks: {} cases answered 401, the 100 kB token 431",
        cases.len()
    );
}

/// Password checks (a 600,000-round PBKDF2 each) run in a lane of their own: a flood of
/// logins neither holds the workers — a status request is answered while the logins
/// are still being worked through — nor queues without bound (beyond the lane's queue a
/// login gets `503` with `Retry-After`).
#[test]
fn a_login_flood_neither_holds_the_workers_nor_queues_without_bound() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let s = Server::start(&["--login-rate", "0"]);
    let token = s.token("user@example.com");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The lane queues 32 checks per core; past that (plus what the lane and the
    // workers hold) logins are refused. Flood past it where that stays a modest number
    // of threads.
    let over_capacity = cores <= 8;
    let logins = if over_capacity { 32 * cores + 40 } else { 100 };
    let answered_401 = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..logins)
        .map(|_| {
            let (addr, answered_401) = (s.addr, answered_401.clone());
            std::thread::spawn(move || {
                let body = json!({"email": "nobody@example.com", "password": "wrong"});
                let r = request(
                    addr,
                    "POST",
                    "/api/auth",
                    &[("Content-Type", "application/json")],
                    Some(&body.to_string()),
                );
                if r.status == 401 {
                    answered_401.fetch_add(1, Ordering::SeqCst);
                }
                r
            })
        })
        .collect();
    // Let the flood arrive (not a timing assertion: it only has to be under way).
    std::thread::sleep(Duration::from_millis(300));
    let r = s.get("/api/v1/me/mfa/status", Some(&token));
    let logins_done = answered_401.load(Ordering::SeqCst);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        logins_done < logins / 4,
        "status waited for {logins_done} of {logins} logins"
    );
    let mut busy = 0;
    for t in threads {
        let r = t.join().unwrap();
        match r.status {
            401 => {}
            503 => {
                busy += 1;
                assert_eq!(r.header("Retry-After"), Some("1"));
                assert_eq!(
                    r.json(),
                    json!({"error": "The server is busy; try again shortly."})
                );
            }
            other => panic!("login answered {other}: {}", r.text()),
        }
    }
    if over_capacity {
        assert!(busy > 0, "{logins} concurrent logins, none refused");
    }
    println!(
        "{logins} concurrent logins: {busy} refused as busy, status answered after {logins_done}"
    );
    // Every worker is still there.
    assert_eq!(s.get("/healthz", None).status, 200);
}

/// A kept-alive connection whose request waits in the queue for longer than the socket
/// timeout (2 s here, 10 s in production) is not closed under the client: the idle
/// timeout counts from the answer. Here the one worker is held by a write that waits 5 s
/// for a database lock this test holds, and the connection's status request queues
/// behind it.
#[test]
fn a_request_queued_past_the_socket_timeout_keeps_its_connection() {
    if sqlite_only("holding the database's write lock from another process") {
        return;
    }
    let s = Server::start(&["--workers", "1", "--test-socket-timeout-ms", "2000"]);
    let token = s.token("user@example.com");
    let auth = format!("Bearer {token}");
    let status_request = format!(
        "GET /api/v1/me/mfa/status HTTP/1.1\r\nHost: mfad\r\nAuthorization: {auth}\r\n\r\n"
    );
    let conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    writer.write_all(status_request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);

    // Hold SQLite's write lock from outside: each setup then waits out mfad's 5 s busy
    // timeout on the only worker, and answers 503.
    let db = rusqlite::Connection::open(s.dir.join("mfad.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let blockers: Vec<_> = (0..1)
        .map(|_| {
            let (addr, auth) = (s.addr, auth.clone());
            std::thread::spawn(move || {
                request(
                    addr,
                    "POST",
                    "/api/v1/me/mfa/totp/setup",
                    &[("Authorization", &auth)],
                    Some("{}"),
                )
                .status
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    writer.write_all(status_request.as_bytes()).unwrap();
    let r = read_response(&mut reader).unwrap();
    let waited = asked.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        waited > Duration::from_secs(2),
        "the set-up did not hold the request past the socket timeout ({waited:?})"
    );
    assert_ne!(r.header("Connection"), Some("close"));
    db.execute_batch("ROLLBACK").unwrap();
    for b in blockers {
        assert_eq!(b.join().unwrap(), 503);
    }
    // The same connection still serves.
    writer.write_all(status_request.as_bytes()).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}
