//! `--metrics-listen`: after a scripted mix of requests every number is exactly what the
//! script did; the text passes `promtool check metrics`; no label carries an address,
//! an email, a path or a token; without the flag there is no second listener.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::{challenge, enable, login, verify, LOGIN, PASSWORD, STATUS};

/// The samples of an exposition: `name{labels}` → value.
pub(crate) fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn requests(endpoint: &str, status: u16) -> String {
    format!("mfad_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}")
}

fn checks(method: &str, result: &str) -> String {
    format!("mfad_second_factor_checks_total{{method=\"{method}\",result=\"{result}\"}}")
}

/// Scrapes until `name` has `value` (the gauge follows connections the server sees
/// closing a moment after the client does), then returns that scrape.
fn scrape_until(s: &Server, name: &str, value: f64) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = samples(&s.scrape());
        if got.get(name) == Some(&value) || Instant::now() > deadline {
            assert_eq!(got.get(name), Some(&value), "{name}");
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_count_a_scripted_mix_exactly() {
    let s = Server::start(&["--metrics-listen", "127.0.0.1:0", "--login-rate", "3"]);
    let email = "metrics@example.com";
    s.add_user(email, PASSWORD);

    // Logins: one without a second factor, two wrong passwords.
    let r = login(&s, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    for _ in 0..2 {
        assert_eq!(login(&s, email, "wrong password").status, 401);
    }
    let (secret, step, backup) = enable(&s, &token);
    let bearer = s.token(email);

    // A code from 3 steps ahead (drift), then a backup code: accepted.
    let c1 = challenge(&s, email);
    let ahead = code_at(&secret, now() + 90);
    assert_eq!(verify(&s, &c1, &ahead).status, 401);
    assert_eq!(verify(&s, &c1, &backup[0]).status, 200);

    // The enable code's step again (a replay), an unreadable answer, three wrong codes:
    // the fifth wrong answer ends the challenge.
    let c2 = challenge(&s, email);
    let replayed = code_at(&secret, step * 30);
    assert_eq!(verify(&s, &c2, &replayed).status, 401);
    assert_eq!(verify(&s, &c2, "not a code").status, 401);
    let wrong = code_at(&secret, now() + 30 * 100);
    for expected in [401, 401, 429] {
        assert_eq!(verify(&s, &c2, &wrong).status, expected);
    }
    // A challenge that never was.
    assert_eq!(verify(&s, &"0".repeat(64), &wrong).status, 401);

    for _ in 0..3 {
        assert_eq!(s.get(STATUS, Some(&bearer)).status, 200);
    }
    for _ in 0..2 {
        assert_eq!(s.get("/healthz", None).status, 200);
    }
    assert_eq!(s.get("/a-path-that-is-secret", None).status, 404);
    assert_eq!(s.request("DELETE", LOGIN, &[], None).status, 405);
    // The throttle: the third failure in the minute is still checked, the fourth is not.
    assert_eq!(login(&s, email, "wrong password").status, 401);
    assert_eq!(login(&s, email, "wrong password").status, 429);

    let text = s.scrape();
    let got = samples(&text);
    let expected: Vec<(String, f64)> = vec![
        (requests(LOGIN, 200), 3.0),
        (requests(LOGIN, 401), 3.0),
        (requests(LOGIN, 429), 1.0),
        (requests(LOGIN, 405), 1.0),
        (requests("/api/v1/me/mfa/totp/setup", 200), 1.0),
        (requests("/api/v1/me/mfa/totp/enable", 200), 1.0),
        (requests("/api/auth/mfa/verify", 200), 1.0),
        (requests("/api/auth/mfa/verify", 401), 6.0),
        (requests("/api/auth/mfa/verify", 429), 1.0),
        (requests(STATUS, 200), 3.0),
        (requests("/healthz", 200), 2.0),
        (requests("other", 404), 1.0),
        (
            "mfad_logins_total{method=\"password\",result=\"success\"}".into(),
            1.0,
        ),
        (
            "mfad_logins_total{method=\"password\",result=\"mfa_required\"}".into(),
            2.0,
        ),
        (
            "mfad_logins_total{method=\"password\",result=\"failure\"}".into(),
            3.0,
        ),
        (
            "mfad_logins_total{method=\"passkey\",result=\"success\"}".into(),
            0.0,
        ),
        ("mfad_throttled_total{throttle=\"login\"}".into(), 1.0),
        (
            "mfad_throttled_total{throttle=\"passkey_login\"}".into(),
            0.0,
        ),
        (checks("backup_code", "accepted"), 1.0),
        (checks("totp", "accepted"), 0.0),
        (checks("totp", "wrong"), 5.0),
        (checks("totp", "no_challenge"), 1.0),
        (checks("unreadable", "wrong"), 1.0),
        (checks("passkey", "wrong"), 0.0),
        ("mfad_replays_refused_total{method=\"totp\"}".into(), 1.0),
        ("mfad_clock_drift_suspected_total".into(), 1.0),
        ("mfad_locks_total{what=\"challenge\"}".into(), 1.0),
        ("mfad_locks_total{what=\"account\"}".into(), 0.0),
        ("mfad_refresh_reuse_detected_total".into(), 0.0),
        ("mfad_storage_errors_total".into(), 0.0),
    ];
    for (name, value) in &expected {
        assert_eq!(got.get(name), Some(value), "{name} in\n{text}");
    }
    // Nothing was counted that the script did not do.
    let counted: f64 = got
        .iter()
        .filter(|(k, _)| k.starts_with("mfad_http_requests_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(counted, 24.0, "{text}");
    assert_eq!(
        got.iter()
            .filter(|(k, _)| k.starts_with("mfad_second_factor_checks_total"))
            .map(|(_, v)| v)
            .sum::<f64>(),
        8.0
    );
    // Each route's latency histogram saw each of its requests once.
    let count = |endpoint: &str| {
        got[&format!("mfad_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}}")]
    };
    assert_eq!(count(LOGIN), 8.0);
    assert_eq!(count("/api/auth/mfa/verify"), 8.0);
    assert_eq!(
        got["mfad_http_request_duration_seconds_bucket{endpoint=\"/api/auth/mfa/verify\",le=\"+Inf\"}"],
        8.0
    );
    // One request at a time: every COMMIT held one writer.
    let batches = got["mfad_commit_batch_size_count"];
    assert!(batches >= 10.0, "{text}");
    assert_eq!(got["mfad_commit_batch_size_bucket{le=\"1\"}"], batches);
    assert_eq!(got["mfad_commit_batch_size_sum"], batches);
    assert!(text.contains("mfad_build_info{version=\""));
    for secret_text in [email, "a-path-that-is-secret", "127.0.0.1", &token, &bearer] {
        assert!(!text.contains(secret_text), "{secret_text} in the metrics");
    }

    // Open connections: three held open, then closed.
    scrape_until(&s, "mfad_open_connections", 0.0);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    scrape_until(&s, "mfad_open_connections", 3.0);
    drop(held);
    scrape_until(&s, "mfad_open_connections", 0.0);

    // Only GET /metrics there; the API's paths are not.
    let m = s.metrics.unwrap();
    assert_eq!(request(m, "GET", STATUS, &[], None).status, 404);
    assert_eq!(request(m, "POST", "/metrics", &[], Some("")).status, 405);
    assert_eq!(s.get("/metrics", None).status, 404);
}

#[test]
fn the_exposition_passes_promtool() {
    if !crate::operations::have("promtool") {
        return;
    }
    let s = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    // Series of every kind: requests, a histogram per route, the events.
    s.get("/healthz", None);
    s.get("/nowhere", None);
    login(&s, "nobody@example.com", "x");
    s.post(
        "/api/auth/mfa/verify",
        None,
        &json!({"mfaToken": "00", "code": "1"}),
    );
    let text = s.scrape();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert_eq!(said.trim(), "", "promtool's lint found: {said}");
}

#[test]
fn without_the_flag_there_is_no_metrics_listener() {
    let s = Server::start(&[]);
    assert_eq!(s.metrics, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    let ports = loop {
        let ports = listening_ports(s.pid());
        if !ports.is_empty() || Instant::now() > deadline {
            break ports;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(ports, vec![s.addr.port()]);
    assert_eq!(s.get("/metrics", None).status, 404);
    // With the flag, exactly one more.
    let m = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    let mut ports = listening_ports(m.pid());
    ports.sort_unstable();
    let mut expected = vec![m.addr.port(), m.metrics.unwrap().port()];
    expected.sort_unstable();
    assert_eq!(ports, expected);
}

#[test]
fn the_metrics_cannot_share_the_api_listener() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:18080"])
        .args(["--metrics-listen", "127.0.0.1:18080", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("need a listener of their own"), "{err}");
}
