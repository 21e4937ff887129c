//! The second attack round's findings above the HTTP layer, each reproduced against
//! the real binary: a database silently replaced, a setup that lost the scanned
//! secret, an unthrottled password oracle, sessions that outlived what should end
//! them, a login throttle that let the checks in flight through, a field given twice,
//! stored text forging CLI rows, a second server on one data directory, and backup-code
//! hashing on an ordinary worker.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::common::*;
use crate::{
    challenge, enable, fixture, login, setup, sign, sign_own, user_token, verify, DISABLE, ENABLE,
    LOGIN, PASSWORD, REFRESH, SETUP,
};

/// A server that was used once and stopped: its data directory holds a key and a
/// database with one account.
fn used_data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Server::start_in(&dir, &[]);
    s.add_user("kept@example.com", PASSWORD);
    assert!(s.terminate().success());
    (tmp, dir)
}

fn remove_db(dir: &std::path::Path) {
    for f in ["mfad.db", "mfad.db-wal", "mfad.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

#[test]
fn a_key_beside_no_usable_database_stops_every_command() {
    if sqlite_only("a missing, empty or foreign database file") {
        return;
    }
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage, &str); 4] = [
        (
            "empty",
            |d| {
                remove_db(d);
                std::fs::write(d.join("mfad.db"), b"").unwrap();
            },
            "is empty but key file",
        ),
        ("missing", remove_db, "is missing but key file"),
        (
            "foreign SQLite",
            |d| {
                remove_db(d);
                let c = rusqlite::Connection::open(d.join("mfad.db")).unwrap();
                c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x')")
                    .unwrap();
            },
            "not an mfad database",
        ),
        (
            "not a database",
            |d| {
                remove_db(d);
                std::fs::write(d.join("mfad.db"), vec![0x5a; 8192]).unwrap();
            },
            "not a database",
        ),
    ];
    for (what, damage, says) in cases {
        let (_tmp, dir) = used_data_dir();
        damage(&dir);
        let before = std::fs::read(dir.join("mfad.db")).ok();
        let err = refused_start(&dir, None);
        assert!(err.contains(says), "serve, {what}: {err}");
        let (ok, out, err) = cli(&dir, &["user", "list"], None);
        assert!(!ok && err.contains(says), "user list, {what}: {out} {err}");
        assert_eq!(
            std::fs::read(dir.join("mfad.db")).ok(),
            before,
            "{what}: the file was touched"
        );
    }
    // Starting over on purpose.
    let (_tmp, dir) = used_data_dir();
    remove_db(&dir);
    let (ok, out, err) = cli(&dir, &["user", "list", "--init"], None);
    assert!(ok, "{err}");
    assert!(!out.contains("kept@example.com"), "{out}");
    let (ok, _, err) = cli(&dir, &["user", "list"], None);
    assert!(ok, "after --init the new database is used: {err}");
}

#[test]
fn a_setup_refused_for_its_label_keeps_the_scanned_secret() {
    let s = Server::start(&[]);
    let token = user_token(&s, "label@example.com");
    let scanned = setup(&s, &token);
    // The same account, through a token whose email claim cannot fit in a QR code.
    let id = s
        .cli(&["user", "list"], None)
        .1
        .lines()
        .find(|l| l.contains("label@example.com"))
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap();
    let long = sign_own(
        &s,
        &json!({"sub": id, "iss": "mfad", "exp": now() + 600, "email": "x".repeat(3000)}),
    );
    let r = s.post(SETUP, Some(&long), &json!({}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s.post(
        ENABLE,
        Some(&token),
        &json!({"code": code_at(&scanned, now())}),
    );
    assert_eq!(
        r.status,
        200,
        "the scanned secret still enables: {}",
        r.text()
    );
}

#[test]
fn wrong_password_confirmations_count_and_lock() {
    let s = Server::start(&[]);
    let token = user_token(&s, "oracle@example.com");
    enable(&s, &token);
    for i in 1..10 {
        let r = s.post(
            DISABLE,
            Some(&token),
            &json!({"password": format!("guess {i}")}),
        );
        assert_eq!(r.status, 422, "guess {i}: {}", r.text());
    }
    let r = s.post(DISABLE, Some(&token), &json!({"password": "guess 10"}));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("Retry-After").is_some());
    // Locked: even the right password is not looked at.
    let r = s.post(DISABLE, Some(&token), &json!({"password": PASSWORD}));
    assert_eq!(r.status, 429, "{}", r.text());
    let (_, out, _) = s.cli(&["user", "show", "--email", "oracle@example.com"], None);
    assert_eq!(
        out.matches("second_factor_wrong (password)").count(),
        10,
        "{out}"
    );
    assert!(out.contains("account_locked"), "{out}");
    assert!(out.contains("totp:         enabled"), "{out}");
}

fn refresh(s: &Server, token: &str) -> u16 {
    s.post(REFRESH, None, &json!({"refresh_token": token}))
        .status
}

fn refresh_token(s: &Server, email: &str) -> String {
    let r = login(s, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["refresh_token"].as_str().unwrap().to_string()
}

#[test]
fn sessions_end_with_a_new_password_a_reset_an_enable_or_a_disable() {
    let s = Server::start(&["--login-rate", "0"]);
    let email = "sessions@example.com";
    let token = user_token(&s, email);
    let before_enable = refresh_token(&s, email);
    let (_, _, codes) = enable(&s, &token);
    assert_eq!(refresh(&s, &before_enable), 401, "enable ends older logins");

    let logged_in = |s: &Server| {
        let mfa = challenge(s, email);
        // A backup code: the TOTP step of this 30 s was spent by enable.
        let r = verify(s, &mfa, &codes[0]);
        assert_eq!(r.status, 200, "{}", r.text());
        (
            r.json()["token"].as_str().unwrap().to_string(),
            r.json()["refresh_token"].as_str().unwrap().to_string(),
        )
    };
    let (access, rt) = logged_in(&s);
    let r = s.post(DISABLE, Some(&access), &json!({"password": PASSWORD}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(refresh(&s, &rt), 401, "disable ends logins");

    let rt = refresh_token(&s, email);
    let (ok, _, err) = s.cli(
        &["user", "passwd", "--email", email, "--password-stdin"],
        Some("another good password"),
    );
    assert!(ok, "{err}");
    assert_eq!(refresh(&s, &rt), 401, "a new password ends logins");

    let (ok, _, err) = s.cli(
        &["user", "passwd", "--email", email, "--password-stdin"],
        Some(PASSWORD),
    );
    assert!(ok, "{err}");
    let rt = refresh_token(&s, email);
    let (ok, _, err) = s.cli(&["user", "reset-mfa", "--email", email], None);
    assert!(ok, "{err}");
    assert_eq!(refresh(&s, &rt), 401, "reset-mfa ends logins");
}

#[test]
fn a_refresh_never_moves_the_end_of_its_login() {
    let s = Server::start(&[]);
    let email = "absolute@example.com";
    s.add_user(email, PASSWORD);
    let mut rt = refresh_token(&s, email);
    for _ in 0..2 {
        // A new second each time: a refresh that moved the end would show it.
        std::thread::sleep(std::time::Duration::from_millis(1050));
        let r = s.post(REFRESH, None, &json!({"refresh_token": rt}));
        assert_eq!(r.status, 200, "{}", r.text());
        rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    }
    let ends = select_i64s(&s.dir, "SELECT DISTINCT expires_at FROM refresh_tokens");
    assert_eq!(
        ends.len(),
        1,
        "every token of one login ends together: {ends:?}"
    );
}

#[test]
fn parallel_wrong_logins_get_no_more_than_the_limit() {
    let s = Server::start(&["--login-rate", "5"]);
    s.add_user("target@example.com", PASSWORD);
    let addr = s.addr;
    let threads: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"email": "target@example.com", "password": format!("no {i}")});
                request(
                    addr,
                    "POST",
                    LOGIN,
                    &[("Content-Type", "application/json")],
                    Some(&body.to_string()),
                )
                .status
            })
        })
        .collect();
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for t in threads {
        *counts.entry(t.join().unwrap()).or_default() += 1;
    }
    assert_eq!(counts.get(&401), Some(&5), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&15), "{counts:?}");
}

#[test]
fn a_field_given_twice_is_refused() {
    let s = Server::start(&[]);
    s.add_user("twice@example.com", PASSWORD);
    let body =
        format!(r#"{{"email":"twice@example.com","password":"wrong","password":"{PASSWORD}"}}"#);
    let r = s.request(
        "POST",
        LOGIN,
        &[("Content-Type", "application/json")],
        Some(&body),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "The request body names a field twice.");
}

#[test]
fn the_cli_escapes_text_that_clients_chose() {
    let tmp = tempfile::tempdir().unwrap();
    let pubkey = tmp.path().join("issuer.pem");
    std::fs::write(&pubkey, fixture("rs256-public.pem")).unwrap();
    let private = EncodingKey::from_rsa_pem(&fixture("rs256-private.pem")).unwrap();
    let s = Server::start(&[
        "--jwt-public-key",
        pubkey.to_str().unwrap(),
        "--jwt-algorithm",
        "RS256",
    ]);
    let forged = "evil\n     9  root@example.com  yes       on    0\n\u{1b}[2J";
    let token = sign(
        &json!({"sub": forged, "exp": now() + 600}),
        Algorithm::RS256,
        &private,
    );
    assert_eq!(s.get("/api/v1/me/mfa/status", Some(&token)).status, 200);
    let (ok, out, err) = s.cli(&["user", "list"], None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "a header and one account: {out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains(r"external:evil\u{a}     9  root@"), "{out}");
}

#[test]
fn a_second_server_on_one_data_directory_is_refused() {
    let s = Server::start(&[]);
    let err = refused_start(&s.dir, None);
    assert!(err.contains("already serving from"), "{err}");
    assert!(err.contains(&format!("process {}", s.pid())), "{err}");
    assert_eq!(
        s.get("/healthz", None).status,
        200,
        "the first one is unharmed"
    );
}

/// User and system CPU ticks of `pid`'s threads whose names start with `prefix`.
fn cpu_ticks(pid: u32, prefix: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let (name, rest) = stat.rsplit_once(") ").unwrap();
        if !name.split_once(" (").unwrap().1.starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15; `rest` starts at field 3.
        total += fields[14 - 3].parse::<u64>().unwrap() + fields[15 - 3].parse::<u64>().unwrap();
    }
    total
}

#[test]
fn enable_hashes_its_backup_codes_on_the_password_lane() {
    let s = Server::start(&[]);
    let tokens: Vec<String> = (0..3)
        .map(|i| s.token(&format!("lane{i}@example.com")))
        .collect();
    let (slow, workers) = (
        cpu_ticks(s.pid(), "mfad-slow"),
        cpu_ticks(s.pid(), "mfad-worker"),
    );
    for t in &tokens {
        enable(&s, t);
    }
    let slow = cpu_ticks(s.pid(), "mfad-slow") - slow;
    let workers = cpu_ticks(s.pid(), "mfad-worker") - workers;
    // Three enables hash 30 backup codes, ~1 s of CPU: that is the lane's, not a worker's.
    assert!(
        slow > 4 * workers.max(1),
        "CPU ticks: password lane {slow}, workers {workers}"
    );
}

/// Behind a proxy every client is the proxy's address: `--trusted-proxy` makes the
/// throttle count per forwarded client. From a peer that is not trusted, the header is
/// the client's own word and ignored.
#[test]
fn the_login_throttle_counts_forwarded_clients_only_behind_a_trusted_proxy() {
    let wrong = |s: &Server, forwarded: &str| {
        let body = json!({ "email": "nobody@example.com", "password": "wrong" }).to_string();
        s.request(
            "POST",
            "/api/auth",
            &[
                ("Content-Type", "application/json"),
                ("X-Forwarded-For", forwarded),
            ],
            Some(&body),
        )
        .status
    };
    let direct = Server::start(&[]);
    for i in 0..5 {
        assert_eq!(wrong(&direct, &format!("198.51.100.{i}")), 401);
    }
    assert_eq!(
        wrong(&direct, "198.51.100.99"),
        429,
        "a spoofed header changes nothing"
    );

    let proxied = Server::start(&["--trusted-proxy", "127.0.0.1/32"]);
    for _ in 0..5 {
        assert_eq!(wrong(&proxied, "6.6.6.6, 198.51.100.1"), 401);
    }
    assert_eq!(
        wrong(&proxied, "198.51.100.1"),
        429,
        "client A is throttled"
    );
    assert_eq!(
        wrong(&proxied, "198.51.100.2"),
        401,
        "client B behind the same proxy is not"
    );
    assert_eq!(
        wrong(&proxied, "198.51.100.2, 198.51.100.1"),
        429,
        "what a client writes to the left of the proxy's entry is its own word"
    );

    // The access log and the audit name the same client as the throttle.
    assert!(proxied.log_has("198.51.100.2 POST /api/auth 401"));
    assert!(direct.log_has("127.0.0.1 POST /api/auth 401"));
    assert!(!direct.log().iter().any(|l| l.contains("198.51.100.")));
    let (ok, trail, _) = proxied.cli(&["audit", "--json"], None);
    assert!(ok);
    let from: Vec<String> = trail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "login_failed")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        from,
        ["from 198.51.100.1"; 5]
            .into_iter()
            .chain(["from 198.51.100.2"])
            .collect::<Vec<_>>()
    );
    let (_, direct_trail, _) = direct.cli(&["audit"], None);
    assert!(direct_trail.contains("from 127.0.0.1"), "{direct_trail}");
    assert!(!direct_trail.contains("198.51.100."), "{direct_trail}");
}
