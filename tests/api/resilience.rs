//! Faults and leaks: a damaged database, a full disk, a disk turning read-only, SIGKILL in the middle of
//! concurrent writes, and a whole flow at debug log level that must leave no secret in
//! the log.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::common::*;

const PASSWORD: &str = "correct horse battery";

fn start_fails_with(dir: &std::path::Path, needle: &str) {
    let err = refused_start(dir, None);
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn a_damaged_database_stops_the_start_and_is_left_alone() {
    if sqlite_only("a damaged database file") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let s = Server::start_in(&dir, &[]);
        for i in 0..30 {
            let token = s.token(&format!("user{i}@example.com"));
            assert_eq!(
                s.post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}))
                    .status,
                200
            );
        }
        let status = s.terminate();
        assert!(status.success(), "mfad exited with {status:?}");
    }
    let db = dir.join("mfad.db");
    let good = std::fs::read(&db).unwrap();
    assert!(good.len() > 8192, "{}", good.len());

    // Truncated to half.
    std::fs::write(&db, &good[..good.len() / 2]).unwrap();
    start_fails_with(&dir, "restore it from a backup");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        &good[..good.len() / 2],
        "the file was modified"
    );

    // Garbage in place of a database.
    std::fs::write(&db, vec![0x5a; good.len()]).unwrap();
    start_fails_with(&dir, "mfad.db");
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x5a; good.len()]);

    // A truncated key next to the good database.
    std::fs::write(&db, &good).unwrap();
    let key = std::fs::read(dir.join("mfad.key")).unwrap();
    std::fs::write(dir.join("mfad.key"), &key[..31]).unwrap();
    start_fails_with(&dir, "holds 31 bytes, not 32");
    // A missing key next to a database is not silently replaced.
    std::fs::remove_file(dir.join("mfad.key")).unwrap();
    start_fails_with(&dir, "will not make a new one");
    assert!(!dir.join("mfad.key").exists());
}

/// Mounts a small tmpfs (needs root, as CI has); `None` where mounting is not allowed.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_gives_503_then_recovers_by_itself() {
    if sqlite_only("the data directory's disk filling up") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    let Some(_fs) = Tmpfs::mount(&mnt, "2m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); CI runs this as root");
        return;
    };
    let dir = mnt.join("data");
    let s = Server::start_in(&dir, &[]);
    let token = s.token("user@example.com");
    assert_eq!(
        s.post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}))
            .status,
        200
    );
    // Fill the file system.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut statuses = Vec::new();
    for _ in 0..400 {
        let r = s.post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}));
        statuses.push(r.status);
        if r.status == 503 {
            assert_eq!(
                r.json(),
                json!({"error": "Storage is unavailable; try again shortly."})
            );
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        statuses.last(),
        Some(&503),
        "no 503 after {} writes on a full disk",
        statuses.len()
    );
    assert!(s.log_has("storage unavailable"), "no clear log line");
    // Space comes back: the very next write works, no restart.
    std::fs::remove_file(&filler).unwrap();
    let r = s.post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/healthz", None).status, 200);
    drop(s);
}

/// Opens the data directory's database directly (the server is dead).
/// An ext4 image on a loop device mounted with `errors=remount-ro` (needs root and loop
/// devices, as CI has); `None` where that is not possible. Writing to the kernel's
/// `trigger_fs_error` makes the file system read-only under the running server, as a
/// real disk error would — a plain `mount -o remount,ro` is refused while SQLite holds
/// files open for writing.
struct Ext4Loop {
    mnt: std::path::PathBuf,
    trigger: std::path::PathBuf,
}

impl Ext4Loop {
    fn mount(dir: &std::path::Path) -> Option<Ext4Loop> {
        let img = dir.join("fs.img");
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let run = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
        if !run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img)) {
            return None;
        }
        if !run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&img)
            .arg(&mnt))
        {
            return None;
        }
        // From here on, dropping `this` unmounts.
        let mut this = Ext4Loop {
            trigger: std::path::PathBuf::new(),
            mnt,
        };
        let source = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&this.mnt)
            .output()
            .ok()?;
        let dev = String::from_utf8_lossy(&source.stdout).trim().to_string();
        let name = dev.rsplit('/').next()?.to_string();
        this.trigger = std::path::Path::new("/sys/fs/ext4")
            .join(name)
            .join("trigger_fs_error");
        this.trigger.exists().then_some(this)
    }

    fn make_read_only(&self) {
        std::fs::write(&self.trigger, "mfad test: simulated disk error").unwrap();
        let probe = self.mnt.join("probe");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "the file system is still writable"
        );
    }
}

impl Drop for Ext4Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

#[test]
fn a_read_only_disk_gives_503_and_reads_go_on() {
    if sqlite_only("the data directory's disk turning read-only") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Ext4Loop::mount(tmp.path()) else {
        eprintln!(
            "SKIPPED: cannot mount an ext4 loop device here (not root?); CI runs this as root"
        );
        return;
    };
    let s = Server::start_in(&fs.mnt.join("data"), &[]);
    let token = s.token("user@example.com");
    let setup = |s: &Server| s.post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}));
    assert_eq!(setup(&s).status, 200);

    fs.make_read_only();
    // Every write is refused cleanly, with the storage error and a clear log line.
    for _ in 0..5 {
        let r = setup(&s);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(
            r.json(),
            json!({"error": "Storage is unavailable; try again shortly."})
        );
    }
    assert!(s.log_has("storage unavailable"), "no clear log line");
    // Reads go on: tokens are checked and the status is answered.
    let r = s.get("/api/v1/me/mfa/status", Some(&token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["totpEnabled"], json!(false));
    assert!(!s.log_has("panic"), "a panic was logged");
    // And the server still stops cleanly.
    let status = s.terminate();
    assert!(status.success(), "mfad exited with {status:?}");
}

fn open_db(dir: &std::path::Path) -> Connection {
    Connection::open(dir.join("mfad.db")).unwrap()
}

#[test]
fn sigkill_during_concurrent_writes_loses_nothing_acknowledged() {
    if sqlite_only("the WAL surviving a SIGKILL") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    for round in 0..3 {
        let s = Server::start_in(&dir, &["--workers", "8", "--login-rate", "0"]);
        let keys = mfad::crypto::Keys::derive(&s.key()).unwrap();
        // Accounts with TOTP on, each with a challenge waiting, to spend backup codes.
        let mut spenders = Vec::new();
        for i in 0..3 {
            let email = format!("r{round}-spender{i}@example.com");
            s.add_user(&email, PASSWORD);
            let token = s
                .post(
                    "/api/auth",
                    None,
                    &json!({"email": email, "password": PASSWORD}),
                )
                .json()["token"]
                .as_str()
                .unwrap()
                .to_string();
            let secret = s
                .post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}))
                .json()["secret"]
                .as_str()
                .unwrap()
                .to_string();
            let r = s.post(
                "/api/v1/me/mfa/totp/enable",
                Some(&token),
                &json!({"code": code_at(&secret, now())}),
            );
            assert_eq!(r.status, 200);
            let codes: Vec<String> = r.json()["backupCodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            spenders.push((email, codes));
        }
        let addr = s.addr;
        let stop = Arc::new(AtomicBool::new(false));
        // What the server acknowledged with a 200 before it died.
        let enabled: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let spent: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mut threads = Vec::new();
        for t in 0..4 {
            let (stop, enabled) = (stop.clone(), enabled.clone());
            let tokens: Vec<(String, String)> = (0..10)
                .map(|i| {
                    let email = format!("r{round}-t{t}-{i}@example.com");
                    let token = s.token(&email);
                    (email, token)
                })
                .collect();
            threads.push(std::thread::spawn(move || {
                for (email, token) in tokens {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let auth = format!("Bearer {token}");
                    let post = |path: &str, body: &Value| {
                        let b = body.to_string();
                        std::panic::catch_unwind(|| {
                            request(addr, "POST", path, &[("Authorization", &auth)], Some(&b))
                        })
                        .ok()
                    };
                    let Some(r) = post("/api/v1/me/mfa/totp/setup", &json!({})) else {
                        break;
                    };
                    let Some(secret) = r.json()["secret"].as_str().map(String::from) else {
                        break;
                    };
                    let t = now();
                    match post(
                        "/api/v1/me/mfa/totp/enable",
                        &json!({"code": code_at(&secret, t)}),
                    ) {
                        Some(r) if r.status == 200 => enabled.lock().unwrap().push((email, t / 30)),
                        _ => break,
                    }
                }
            }));
        }
        for (email, codes) in spenders.clone() {
            let (stop, spent) = (stop.clone(), spent.clone());
            threads.push(std::thread::spawn(move || {
                for code in codes {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let attempt = std::panic::catch_unwind(|| {
                        let body = json!({"email": email, "password": PASSWORD}).to_string();
                        let mfa = request(addr, "POST", "/api/auth", &[], Some(&body)).json()
                            ["mfa_token"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        let body = json!({"mfaToken": mfa, "code": code}).to_string();
                        request(addr, "POST", "/api/auth/mfa/verify", &[], Some(&body)).status
                    });
                    match attempt {
                        Ok(200) => spent.lock().unwrap().push((email.clone(), code)),
                        _ => break,
                    }
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(2000 + 500 * round));
        unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) };
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        drop(s);

        let c = open_db(&dir);
        let integrity: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "round {round}");
        let orphans: i64 = c
            .query_row(
                "SELECT count(*) FROM backup_codes b LEFT JOIN totp t USING (account_id)
                 WHERE t.active_secret IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "backup codes without an active secret");
        let half: i64 = c
            .query_row(
                "SELECT count(*) FROM totp t WHERE t.active_secret IS NOT NULL AND (t.backup_salt IS NULL
                 OR (SELECT count(*) FROM backup_codes b WHERE b.account_id = t.account_id) +
                    (SELECT count(*) FROM audit a WHERE a.account_id = t.account_id AND a.event = 'backup_code_used') != 10)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            half, 0,
            "an active secret without its ten backup codes (spent ones counted)"
        );
        let enabled = enabled.lock().unwrap().clone();
        for (email, step) in &enabled {
            let last_step: i64 = c
                .query_row(
                    "SELECT last_step FROM totp JOIN accounts a ON a.id = account_id
                     WHERE a.email = ?1 AND active_secret IS NOT NULL",
                    [email],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| {
                    panic!("{email} was acknowledged as enabled before the kill: {e}")
                });
            // The step its enable code matched is spent: that code can never work again.
            assert!(
                last_step >= *step as i64 - 1,
                "{email}: last_step {last_step} < {step}"
            );
        }
        let spent = spent.lock().unwrap().clone();
        for (email, code) in &spent {
            let (id, salt): (i64, Vec<u8>) = c
                .query_row(
                    "SELECT a.id, t.backup_salt FROM accounts a JOIN totp t ON t.account_id = a.id WHERE a.email = ?1",
                    [email],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let hash = keys.backup_code_hash(&salt, &code.replace('-', ""));
            let left: i64 = c
                .query_row(
                    "SELECT count(*) FROM backup_codes WHERE account_id = ?1 AND code_hash = ?2",
                    rusqlite::params![id, &hash[..]],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(
                left, 0,
                "a backup code accepted before the kill is still there"
            );
        }
        drop(c);
        // And through the restarted server: a spent code is refused.
        let s = Server::start_in(&dir, &["--login-rate", "0"]);
        if let Some((email, code)) = spent.first() {
            let mfa = s
                .post(
                    "/api/auth",
                    None,
                    &json!({"email": email, "password": PASSWORD}),
                )
                .json()["mfa_token"]
                .as_str()
                .unwrap()
                .to_string();
            assert_eq!(
                s.post(
                    "/api/auth/mfa/verify",
                    None,
                    &json!({"mfaToken": mfa, "code": code})
                )
                .status,
                401
            );
        }
        eprintln!(
            "crash round {round}: killed with {} enables and {} backup-code spends acknowledged",
            enabled.len(),
            spent.len()
        );
        let status = s.terminate();
        assert!(status.success(), "mfad exited with {status:?}");
    }
}

#[test]
fn debug_logs_of_a_whole_flow_hold_no_secret() {
    let s = Server::start(&["--log-level", "debug"]);
    s.add_user("user@example.com", PASSWORD);
    let login = |p: &str| {
        s.post(
            "/api/auth",
            None,
            &json!({"email": "user@example.com", "password": p}),
        )
    };
    let v = login(PASSWORD).json();
    let token = v["token"].as_str().unwrap().to_string();
    let first_refresh = v["refresh_token"].as_str().unwrap().to_string();
    let setup = s
        .post("/api/v1/me/mfa/totp/setup", Some(&token), &json!({}))
        .json();
    let secret = setup["secret"].as_str().unwrap().to_string();
    let enable_code = code_at(&secret, now());
    let r = s.post(
        "/api/v1/me/mfa/totp/enable",
        Some(&token),
        &json!({"code": enable_code}),
    );
    let backup: Vec<String> = r.json()["backupCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(login("wrong password!").status, 401);
    let mfa = login(PASSWORD).json()["mfa_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.post(
            "/api/auth/mfa/verify",
            None,
            &json!({"mfaToken": mfa, "code": "000000"})
        )
        .status,
        401
    );
    let r = s.post(
        "/api/auth/mfa/verify",
        None,
        &json!({"mfaToken": mfa, "code": backup[0]}),
    );
    assert_eq!(r.status, 200);
    let tokens = r.json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let r = s.post(
        "/api/auth/refresh",
        None,
        &json!({"refresh_token": refresh}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        s.post(
            "/api/auth/refresh",
            None,
            &json!({"refresh_token": refresh})
        )
        .status,
        401
    );
    s.post(
        "/api/v1/me/mfa/backup-codes/regenerate",
        Some(&token),
        &json!({"password": PASSWORD}),
    );
    s.post(
        "/api/v1/me/mfa/totp/disable",
        Some(&token),
        &json!({"password": PASSWORD}),
    );
    assert!(s.log_has("/totp/disable"), "the last request was logged");
    let log = s.log().join("\n");
    assert!(
        log.contains("audit: mfa_enabled"),
        "the flow was logged at all"
    );
    assert!(log.contains("<7>") || log.contains("<6>"));
    let mut needles = vec![
        secret.clone(),
        secret.to_lowercase(),
        enable_code,
        PASSWORD.to_string(),
        "wrong password!".to_string(),
        token.clone(),
        token.split('.').nth(2).unwrap().to_string(),
        first_refresh,
        refresh,
        tokens["token"].as_str().unwrap().to_string(),
        mfa,
    ];
    for c in &backup {
        needles.push(c.clone());
        needles.push(c.replace('-', ""));
    }
    for n in &needles {
        assert!(
            !log.contains(n.as_str()),
            "the log contains a secret ({} chars)",
            n.len()
        );
    }
}
