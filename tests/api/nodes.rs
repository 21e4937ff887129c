//! Two nodes on one PostgreSQL database (the PostgreSQL run only): every rule holds
//! across them as on one — a TOTP code and a backup code are accepted once, wrong
//! answers count and lock together, a refresh token reused on the other node revokes
//! its login everywhere, and a passkey ceremony started on one node is finished on the
//! other.

use std::process::Command;

use serde_json::json;

use crate::common::*;
use crate::passkeys::{self, Authenticator};
use crate::{enable, login, verify, PASSWORD, REFRESH};

const CHALLENGE: &str = "/api/v1/mfa/challenge";
const STEPUP_VERIFY: &str = "/api/v1/mfa/verify";

/// Two nodes, or `None` (and one SKIPPED line) on the SQLite run.
fn two_nodes(extra: &[&str]) -> Option<(Server, Server)> {
    if !on_postgres() {
        eprintln!("SKIPPED: two nodes need the PostgreSQL run (MFAD_TEST_DATABASE_URL)");
        return None;
    }
    let a = Server::start(extra);
    let b = a.second_node(extra);
    Some((a, b))
}

/// A step-up challenge of the account of `bearer`, on `s`.
fn stepup(s: &Server, bearer: &str) -> String {
    let r = s.post(CHALLENGE, Some(bearer), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["challenge_token"].as_str().unwrap().to_string()
}

/// `answer` to challenge `on_a` at A and to `on_b` at B at the same instant: the two
/// statuses.
fn at_once(a: &Server, b: &Server, bearer: &str, on_a: &str, on_b: &str, answer: &str) -> [u16; 2] {
    let barrier = std::sync::Barrier::new(2);
    let send = |s: &Server, challenge: &str| {
        barrier.wait();
        s.post(
            STEPUP_VERIFY,
            Some(bearer),
            &json!({ "challengeToken": challenge, "code": answer }),
        )
        .status
    };
    std::thread::scope(|scope| {
        let x = scope.spawn(|| send(a, on_a));
        let y = scope.spawn(|| send(b, on_b));
        [x.join().unwrap(), y.join().unwrap()]
    })
}

#[test]
fn one_code_sent_to_both_nodes_at_once_is_accepted_once() {
    let Some((a, b)) = two_nodes(&[]) else { return };
    // One account per round: each round's code is a step no node has accepted yet.
    for round in 0..8 {
        let email = format!("race{round}@example.com");
        let bearer = a.token(&email);
        let (secret, step, backup) = enable(&a, &bearer);
        // The next step's code (accepted: one step either side), not the enable's.
        let code = code_at(&secret, (step + 1) * 30);
        let (ca, cb) = (stepup(&a, &bearer), stepup(&b, &bearer));
        let got = at_once(&a, &b, &bearer, &ca, &cb, &code);
        assert_eq!(
            got.iter().filter(|s| **s == 200).count(),
            1,
            "TOTP round {round}: {got:?}"
        );
        assert_eq!(
            got.iter().filter(|s| **s == 401).count(),
            1,
            "TOTP round {round}: {got:?}"
        );

        let (ca, cb) = (stepup(&a, &bearer), stepup(&b, &bearer));
        let got = at_once(&a, &b, &bearer, &ca, &cb, &backup[0]);
        assert_eq!(
            got.iter().filter(|s| **s == 200).count(),
            1,
            "backup round {round}: {got:?}"
        );
        let status = b.get("/api/v1/me/mfa/status", Some(&bearer)).json();
        assert_eq!(status["backupCodesRemaining"], 9);
    }
}

#[test]
fn wrong_codes_split_across_nodes_lock_the_account_on_both() {
    let Some((a, b)) = two_nodes(&[]) else { return };
    let bearer = a.token("split@example.com");
    let (secret, step, _) = enable(&a, &bearer);
    let wrong = code_at(&secret, (step + 500) * 30);
    // 4 + 4 + 1 on three challenges (5 would end one), alternating nodes.
    for (s, n) in [(&a, 4), (&b, 4), (&a, 1)] {
        let c = stepup(s, &bearer);
        for _ in 0..n {
            let r = s.post(
                STEPUP_VERIFY,
                Some(&bearer),
                &json!({ "challengeToken": c, "code": wrong }),
            );
            assert_eq!(r.status, 401, "{}", r.text());
        }
    }
    // The 10th, on B, locks the account: then even the right code is refused on A.
    let c = stepup(&b, &bearer);
    let r = b.post(
        STEPUP_VERIFY,
        Some(&bearer),
        &json!({ "challengeToken": c, "code": wrong }),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let right = code_at(&secret, (step + 1) * 30);
    let c = stepup(&a, &bearer);
    let r = a.post(
        STEPUP_VERIFY,
        Some(&bearer),
        &json!({ "challengeToken": c, "code": right }),
    );
    assert_eq!(r.status, 429, "locked on A too: {}", r.text());
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn a_refresh_token_reused_on_the_other_node_revokes_the_login_everywhere() {
    let Some((a, b)) = two_nodes(&[]) else { return };
    let email = "family@example.com";
    let bearer = a.token(email);
    a.cli(
        &["user", "passwd", "--email", email, "--password-stdin"],
        Some(PASSWORD),
    );
    let (secret, step, _) = enable(&a, &bearer);
    // Login on A, its second factor on B.
    let r = login(&a, email, PASSWORD);
    let mfa = r.json()["mfa_token"].as_str().unwrap().to_string();
    let r = verify(&b, &mfa, &code_at(&secret, (step + 1) * 30));
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json()["refresh_token"].as_str().unwrap().to_string();
    // Refresh on A; the old token again on B: the whole login is revoked.
    let r = a.post(REFRESH, None, &json!({ "refresh_token": first }));
    assert_eq!(r.status, 200, "{}", r.text());
    let second = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = b.post(REFRESH, None, &json!({ "refresh_token": first }));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Invalid JWT Refresh Token");
    for s in [&a, &b] {
        let r = s.post(REFRESH, None, &json!({ "refresh_token": second }));
        assert_eq!(r.status, 401, "the newer token is revoked too");
    }
}

#[test]
fn a_passkey_ceremony_started_on_one_node_is_finished_on_the_other() {
    let extra = ["--public-url", passkeys::PUBLIC_URL];
    let Some((a, b)) = two_nodes(&extra) else {
        return;
    };
    let token = passkeys::account(&a, "nodes@example.com");
    let mut key = Authenticator::new(-7);
    let o = passkeys::options(&a, &token);
    let r = b.post(
        passkeys::REGISTER,
        Some(&token),
        &json!({ "name": "Laptop", "credential": key.register(&o) }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Passwordless: options from B, the answer to A; the same answer again to B.
    let o = passkeys::login_options(&b);
    let body = json!({ "sessionId": o["sessionId"], "credential": key.assert(&o) });
    let r = a.post(passkeys::PASSKEY_LOGIN, None, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = b.post(passkeys::PASSKEY_LOGIN, None, &body);
    assert_eq!(
        r.status,
        400,
        "a ceremony is taken once, by any node: {}",
        r.text()
    );
}

#[test]
fn the_throttles_count_one_client_across_the_nodes() {
    let Some((a, b)) = two_nodes(&["--login-rate", "3"]) else {
        return;
    };
    for _ in 0..3 {
        assert_eq!(login(&a, "nobody@example.com", "wrong").status, 401);
    }
    let r = login(&b, "nobody@example.com", "wrong");
    assert_eq!(
        r.status,
        429,
        "the other node knows the three failures: {}",
        r.text()
    );
    assert!(r.header("Retry-After").is_some());
    // The passwordless options: 10 a minute per address, wherever they are asked.
    for i in 0..10 {
        let s = if i % 2 == 0 { &a } else { &b };
        assert_eq!(passkeys::login_options(s)["rpId"], "localhost");
    }
    let r = a.post("/api/auth/passkey/login/options", None, &json!({}));
    assert_eq!(r.status, 429, "{}", r.text());
}

/// Every row of every table of the SQLite database in `dir`, as text: its content,
/// whatever SQLite does with its own WAL file on open and close.
fn sqlite_content(dir: &std::path::Path) -> String {
    let db = rusqlite::Connection::open(dir.join("mfad.db")).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut all = String::new();
    for t in tables {
        let mut q = db.prepare(&format!("SELECT * FROM {t}")).unwrap();
        let n = q.column_count();
        let mut rows = q.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let values: Vec<rusqlite::types::Value> = (0..n).map(|i| r.get(i).unwrap()).collect();
            all.push_str(&format!("{t}: {values:?}\n"));
        }
    }
    all
}

#[test]
fn an_sqlite_install_migrated_to_postgres_signs_everyone_in_as_before() {
    if !on_postgres() {
        eprintln!("SKIPPED: mfad migrate needs the PostgreSQL run (MFAD_TEST_DATABASE_URL)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old");
    use_sqlite(&old);
    let extra = ["--public-url", passkeys::PUBLIC_URL];
    let s = Server::start_in(&old, &extra);
    // Every kind of row: accounts with a password, TOTP and backup codes, a passkey, an
    // external-style account without password; refresh tokens, challenges, ceremonies,
    // a step-up verification, audit events, the key check.
    let email = "moved@example.com";
    let bearer = s.token(email);
    s.cli(
        &["user", "passwd", "--email", email, "--password-stdin"],
        Some(PASSWORD),
    );
    let (secret, step, backup) = enable(&s, &bearer);
    let r = login(&s, email, PASSWORD);
    let pending_challenge = r.json()["mfa_token"].as_str().unwrap().to_string();
    let r = verify(&s, &pending_challenge, &backup[0]);
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let c = stepup(&s, &bearer);
    let r = s.post(
        STEPUP_VERIFY,
        Some(&bearer),
        &json!({ "challengeToken": c, "code": backup[1] }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let _open_challenge = login(&s, email, PASSWORD);
    let token = passkeys::account(&s, "key@example.com");
    let mut key = Authenticator::new(-8);
    let o = passkeys::options(&s, &token);
    let r = s.post(
        passkeys::REGISTER,
        Some(&token),
        &json!({ "credential": key.register(&o) }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let _open_ceremony = passkeys::login_options(&s);
    s.cli(&["user", "delete", "--email", "key@example.com"], None);
    let token = passkeys::account(&s, "key2@example.com");
    let o = passkeys::options(&s, &token);
    let r = s.post(
        passkeys::REGISTER,
        Some(&token),
        &json!({ "credential": key.register(&o) }),
    );
    assert_eq!(
        r.status,
        201,
        "the deleted account's credential is free again: {}",
        r.text()
    );
    // The newest account deleted: its id (4) must not be given again after the move.
    s.token("gone@example.com");
    s.cli(&["user", "delete", "--email", "gone@example.com"], None);
    let (_, before, _) = s.cli(&["user", "list"], None);
    drop(s);

    let content = sqlite_content(&old);
    let url = new_postgres_database();
    let (ok, out, err) = cli(&old, &["migrate", "--to", &url], None);
    assert!(ok, "{err}");
    for table in [
        "accounts",
        "totp",
        "backup_codes",
        "refresh_tokens",
        "passkeys",
        "audit",
        "meta",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(table))
            .unwrap();
        let n: i64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(n > 0, "{table}: {out}");
    }
    assert!(content == sqlite_content(&old), "the source's rows changed");
    let (ok, _, err) = cli(&old, &["migrate", "--to", &url], None);
    assert!(!ok && err.contains("not empty"), "{err}");

    // A node on the migrated database, with the same key.
    let new = tmp.path().join("new");
    data_dir_with_key_of(&old, &new);
    use_database(&new, &url);
    let n = Server::start_in(&new, &extra);
    let (_, after, _) = n.cli(&["user", "list"], None);
    assert_eq!(after, before);
    // The same password and TOTP (a step not used yet), a backup code not spent, the
    // passkey (its counter goes on), the refresh token of before.
    let r = login(&n, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    let mfa = r.json()["mfa_token"].as_str().unwrap().to_string();
    let r = verify(&n, &mfa, &code_at(&secret, (step + 1) * 30));
    assert_eq!(r.status, 200, "TOTP: {}", r.text());
    let mfa = login(&n, email, PASSWORD).json()["mfa_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        verify(&n, &mfa, &backup[0]).status,
        401,
        "spent before the move"
    );
    assert_eq!(
        verify(&n, &mfa, &backup[2]).status,
        200,
        "unspent backup code"
    );
    let o = passkeys::login_options(&n);
    let body = json!({ "sessionId": o["sessionId"], "credential": key.assert(&o) });
    assert_eq!(n.post(passkeys::PASSKEY_LOGIN, None, &body).status, 200);
    let r = n.post(REFRESH, None, &json!({ "refresh_token": refresh }));
    assert_eq!(r.status, 200, "{}", r.text());
    // Ids go on past every one SQLite gave, the deleted accounts' too.
    n.add_user("later@example.com", PASSWORD);
    let (_, list, _) = n.cli(&["user", "list"], None);
    let id: i64 = list
        .lines()
        .find(|l| l.contains("later@example.com"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(id, 5, "{list}");
}

/// A PostgreSQL cluster of a test's own (to stop and start under load), run by the
/// `postgres` user when the tests run as root, as initdb requires.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl Cluster {
    pub(crate) fn start() -> Cluster {
        Cluster::start_with(None)
    }

    /// With `tls` (a certificate chain and its key, PEM), the cluster listens on
    /// 127.0.0.1 at a port of its own with `ssl=on`; its URL is then over TCP.
    fn start_with(tls: Option<(&str, &str)>) -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("the PostgreSQL run has Debian's server")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = Cluster { dir, bin };
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chown")
                .args(["postgres"])
                .arg(c.dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = c.dir.path().join("data");
        c.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        let mut conf = "listen_addresses = ''\n".to_string();
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if unsafe { libc::geteuid() } == 0 {
                    Command::new("chown")
                        .arg("postgres")
                        .arg(&path)
                        .status()
                        .unwrap();
                }
            }
            // A port of its own (PostgreSQL cannot be given port 0): one that was free a
            // moment ago.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            conf = format!("ssl = on\nlisten_addresses = '127.0.0.1'\nport = {port}\n");
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
        c.pg_ctl("start");
        c
    }

    /// The TCP port of a TLS cluster.
    fn port(&self) -> u16 {
        let conf = std::fs::read_to_string(self.dir.path().join("data/postgresql.conf")).unwrap();
        conf.lines()
            .rev()
            .find_map(|l| l.strip_prefix("port = "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        // Where it listens is in postgresql.conf (see `start_with`).
        let opts = format!("-k {} -c fsync=off", self.dir.path().display());
        let mut args = vec![action, "-D", data.to_str().unwrap(), "-w"];
        // A server started (or restarted) without a log file would keep pg_ctl's output
        // open, and waiting for pg_ctl's output would never end.
        if action == "start" || action == "restart" {
            args.extend(["-l", log.to_str().unwrap(), "-o", &opts]);
        }
        if action != "start" {
            args.extend(["-m", "fast"]);
        }
        self.run("pg_ctl", &args);
    }

    /// The Unix socket of a cluster without TCP (the default port's).
    pub(crate) fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join(".s.PGSQL.5432")
    }

    pub(crate) fn url(&self) -> String {
        let socket = self.dir.path().to_str().unwrap().replace('/', "%2F");
        format!("postgres://postgres@{socket}/postgres")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .output();
    }
}

#[test]
fn postgres_stopped_under_load_gives_503s_then_recovers_without_a_restart() {
    if !on_postgres() {
        eprintln!("SKIPPED: stopping PostgreSQL needs the PostgreSQL run (MFAD_TEST_DATABASE_URL)");
        return;
    }
    let cluster = Cluster::start();
    let (_tmp, s, firsts) = logged_in_on(&cluster.url(), "outage@example.com", 4);
    // Four clients refreshing in a loop: every 200 is an acknowledged write (the old
    // token rotated, a new one stored), whose token must work once PostgreSQL is back.
    let outcomes = refresh_loops(&s, &firsts, || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        cluster.pg_ctl("stop");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let health = s.get("/healthz", None);
        assert_eq!(health.status, 503, "{}", health.text());
        std::thread::sleep(std::time::Duration::from_millis(1500));
        cluster.pg_ctl("start");
        std::thread::sleep(std::time::Duration::from_millis(1500));
    });
    let all: Vec<u16> = outcomes.iter().flat_map(|(seen, _)| seen.clone()).collect();
    assert!(all.iter().all(|s| [200, 503].contains(s)), "{all:?}");
    let outage = all.iter().filter(|s| **s == 503).count();
    assert!(outage > 10, "{outage} 503s: {all:?}");
    eprintln!(
        "PostgreSQL outage: {} refreshes by 4 clients, {outage} answered 503, the rest 200",
        all.len()
    );
    for (seen, last) in &outcomes {
        assert_eq!(seen.last(), Some(&200), "recovered: {seen:?}");
        let r = s.post(REFRESH, None, &json!({ "refresh_token": last }));
        assert_eq!(r.status, 200, "the last acknowledged token: {}", r.text());
    }
    assert_eq!(s.get("/healthz", None).status, 200);
    assert!(s.log_has("storage unavailable: PostgreSQL"));
    assert!(
        !s.log().iter().any(|l| l.contains(" 500 ")),
        "a 500 was answered"
    );
}

/// A server on the PostgreSQL database at `url`, with account `email` signed in `n`
/// times: what keeps its data directory, the server, the `n` refresh tokens.
pub(crate) fn logged_in_on(
    url: &str,
    email: &str,
    n: usize,
) -> (tempfile::TempDir, Server, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    use_database(&dir, url);
    let s = Server::start_in(&dir, &[]);
    s.add_user(email, PASSWORD);
    let firsts = (0..n)
        .map(|_| {
            let r = login(&s, email, PASSWORD);
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["refresh_token"].as_str().unwrap().to_string()
        })
        .collect();
    (tmp, s, firsts)
}

/// One client per token of `firsts` refreshing in a loop (the new token after a `200`,
/// the same one again after a `503`, as a client is told) while `disturb` runs; each
/// client's statuses and last token. A client stops at any other status; a `disturb`
/// that panics stops them all.
pub(crate) fn refresh_loops(
    s: &Server,
    firsts: &[String],
    disturb: impl FnOnce(),
) -> Vec<(Vec<u16>, String)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stopping = Stop(&stop);
        let clients: Vec<_> = firsts
            .iter()
            .map(|first| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut token = first.clone();
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = s.post(REFRESH, None, &json!({ "refresh_token": token }));
                        seen.push(r.status);
                        match r.status {
                            200 => token = r.json()["refresh_token"].as_str().unwrap().to_string(),
                            503 => {}
                            _ => break,
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    (seen, token)
                })
            })
            .collect();
        disturb();
        drop(stopping);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

/// A CA certificate of its own, for the TLS test.
fn new_ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
}

/// How many of mfad's connections PostgreSQL sees encrypted, and not.
fn mfad_connections(cluster: &Cluster) -> (i64, i64) {
    let mut admin = postgres::Client::connect(
        &format!(
            "host={} port={} user=postgres dbname=postgres",
            cluster.dir.path().display(),
            cluster.port()
        ),
        postgres::NoTls,
    )
    .unwrap();
    let r = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'mfad'",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

#[test]
fn tls_to_postgres_require_encrypts_and_verify_full_checks_the_server() {
    if !on_postgres() {
        eprintln!("SKIPPED: TLS to PostgreSQL needs the PostgreSQL run (MFAD_TEST_DATABASE_URL)");
        return;
    }
    // A CA, and the server's certificate for localhost signed by it.
    let ca = new_ca();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let cluster = Cluster::start_with(Some((&server.pem(), &server_key.serialize_pem())));
    let port = cluster.port();
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_file = tmp.path().join("other-ca.pem");
    std::fs::write(&other_file, new_ca().pem()).unwrap();
    let base = format!("postgres://postgres@localhost:{port}/postgres");

    let queries = [
        "?sslmode=require".to_string(),
        format!("?sslmode=verify-full&sslrootcert={}", ca_file.display()),
    ];
    for (i, query) in queries.iter().enumerate() {
        let dir = tmp.path().join(format!("node{i}"));
        use_database(&dir, &format!("{base}{query}"));
        if i > 0 {
            // A second node on the same database: the first one's key.
            data_dir_with_key_of(&tmp.path().join("node0"), &dir);
        }
        let s = Server::start_in(&dir, &[]);
        assert_eq!(s.get("/healthz", None).status, 200, "{query}");
        let email = format!("tls{i}@example.com");
        s.add_user(&email, PASSWORD);
        assert_eq!(login(&s, &email, PASSWORD).status, 200, "{query}");
        // PostgreSQL's own view: every connection of mfad's is encrypted.
        let (encrypted, plain) = mfad_connections(&cluster);
        assert!(encrypted >= 1, "{query}: no encrypted connection of mfad's");
        assert_eq!(plain, 0, "{query}");
    }
    // The wrong CA, and a name the certificate does not carry: refused at the start,
    // without a key left behind.
    let refused = [
        format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            other_file.display()
        ),
        format!(
            "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            ca_file.display()
        ),
    ];
    for (i, url) in refused.iter().enumerate() {
        let dir = tmp.path().join(format!("refused{i}"));
        use_database(&dir, url);
        let err = refused_start(&dir, None);
        assert!(err.contains("cannot use database"), "{url}: {err}");
        assert!(!dir.join("mfad.key").exists(), "a key was left behind");
    }
    let dir = tmp.path().join("no-root");
    use_database(&dir, &format!("{base}?sslmode=verify-full"));
    let err = refused_start(&dir, None);
    assert!(err.contains("needs sslrootcert"), "{err}");
}
