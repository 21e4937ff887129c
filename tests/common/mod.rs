//! Test support: start the real `mfad` binary on `127.0.0.1:0` with a temporary data
//! directory, speak plain HTTP/1.1 to it over a socket (thin wrappers over `client.rs`,
//! the client the benchmarks share), and compute TOTP codes with an independent
//! implementation (`totp-lite`).

pub mod client;
pub mod openapi;
pub mod terminal;
pub mod webdriver;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub use client::{read_response, Resp};

pub const BIN: &str = env!("CARGO_BIN_EXE_mfad");

/// A running mfad; killed on drop.
pub struct Server {
    pub addr: SocketAddr,
    /// The metrics listener, when started with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    /// Where the banner's last line says people open the page.
    pub page: String,
    pub dir: PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh data directory.
    pub fn start(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// A server on `dir` (which the caller keeps).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        Server::start_in_with(dir, extra, |_| {})
    }

    /// A server on a fresh data directory, its command first changed by `customize`
    /// (a `pre_exec` hook, say).
    pub fn start_with(extra: &[&str], customize: impl FnOnce(&mut Command)) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Server::start_in_with(&dir, extra, customize);
        s._tmp = Some(tmp);
        s
    }

    fn start_in_with(dir: &Path, extra: &[&str], customize: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(BIN);
        customize(&mut cmd);
        let mut child = cmd
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "4",
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .envs(database_env(dir))
            .env_remove("STATE_DIRECTORY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[mfad] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("mfad listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .parse()
            .unwrap();
        let metrics = extra.contains(&"--metrics-listen").then(|| {
            let mut second = String::new();
            out.read_line(&mut second).unwrap();
            second
                .trim()
                .strip_prefix("mfad metrics on http://")
                .and_then(|a| a.strip_suffix("/metrics"))
                .unwrap_or_else(|| panic!("unexpected second line: {second:?}"))
                .parse()
                .unwrap()
        });
        // The banner is one write, so it is in the buffer whole: a missing line fails
        // here instead of waiting for ever.
        let mut last = String::new();
        if !out.buffer().is_empty() {
            out.read_line(&mut last).unwrap();
        }
        let page = last
            .trim()
            .strip_prefix("mfad page on ")
            .unwrap_or_else(|| panic!("unexpected last banner line: {last:?}"))
            .to_string();
        if let Some(m) = metrics {
            METRICS_LISTENERS.lock().unwrap().push(m);
        }
        Server {
            addr,
            metrics,
            page,
            dir: dir.to_path_buf(),
            child,
            log,
            _tmp: None,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 5 s) for a log line containing `needle`: stderr is read by another
    /// thread, so a line can trail the response it belongs to.
    pub fn log_has(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.log().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Another node on this server's database (PostgreSQL): a data directory of its own
    /// holding a copy of this one's key, as an operator sets up a second node.
    pub fn second_node(&self, extra: &[&str]) -> Server {
        let url = database_env(&self.dir)
            .pop()
            .expect("a second node needs the PostgreSQL run")
            .1;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        data_dir_with_key_of(&self.dir, &dir);
        DATABASES.lock().unwrap().push((dir.clone(), url));
        let mut s = Server::start_in_with(&dir, extra, |_| {});
        s._tmp = Some(tmp);
        s
    }

    /// One scrape of `/metrics` (the server must have been started with
    /// `--metrics-listen`).
    pub fn scrape(&self) -> String {
        let r = request(self.metrics.unwrap(), "GET", "/metrics", &[], None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }

    /// Runs an admin command on this server's data directory.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        cli(&self.dir, args, stdin)
    }

    /// A bearer token from `mfad token` (the account is created if absent).
    pub fn token(&self, email: &str) -> String {
        let (ok, out, err) = self.cli(&["token", "--email", email], None);
        assert!(ok, "mfad token failed: {err}");
        out.trim().to_string()
    }

    /// Adds a local account with a password.
    pub fn add_user(&self, email: &str, password: &str) {
        let (ok, _, err) = self.cli(
            &["user", "add", "--email", email, "--password-stdin"],
            Some(password),
        );
        assert!(ok, "mfad user add failed: {err}");
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        request(self.addr, method, path, headers, body)
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> Resp {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        self.request("POST", path, &headers, Some(&body.to_string()))
    }

    pub fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", path, &headers, None)
    }

    /// The instance key the server created, for tests that forge tokens.
    pub fn key(&self) -> [u8; 32] {
        std::fs::read(self.dir.join("mfad.key"))
            .unwrap()
            .try_into()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(m) = self.metrics {
            METRICS_LISTENERS.lock().unwrap().retain(|a| *a != m);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PostgreSQL server the suite runs against (`MFAD_TEST_DATABASE_URL`, a URL of
/// a database the tests may create databases from), if any; otherwise SQLite.
pub fn postgres_base() -> Option<String> {
    std::env::var("MFAD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Whether this run is the PostgreSQL one.
pub fn on_postgres() -> bool {
    postgres_base().is_some()
}

/// For a test of what only SQLite has (its file, its faults, its backups): says so and
/// tells the caller to return, on the PostgreSQL run.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: {what} is SQLite's");
        return true;
    }
    false
}

/// The environment that points mfad at the database of data directory `dir`: on the
/// PostgreSQL run, a new database the first time `dir` is seen (and the same one after,
/// for restarts and admin commands); nothing on the SQLite run.
static DATABASES: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

pub fn database_env(dir: &Path) -> Vec<(&'static str, String)> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Some(base) = postgres_base() else {
        return Vec::new();
    };
    let mut known = DATABASES.lock().unwrap();
    if let Some((_, url)) = known.iter().find(|(d, _)| d == dir) {
        // An empty URL: this directory keeps its SQLite file (see `use_sqlite`).
        return match url.is_empty() {
            true => Vec::new(),
            false => vec![("MFAD_DATABASE_URL", url.clone())],
        };
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("mfad_test_{}_{n}", std::process::id());
    let mut admin = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("MFAD_TEST_DATABASE_URL: cannot connect: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (server, _) = base.rsplit_once('/').expect("a URL that names a database");
    let url = format!("{server}/{name}");
    known.push((dir.to_path_buf(), url.clone()));
    vec![("MFAD_DATABASE_URL", url)]
}

/// The numbers one `SELECT` of the first column gives, on the database of data
/// directory `dir` whichever engine it is (SQL both understand).
pub fn select_i64s(dir: &Path, sql: &str) -> Vec<i64> {
    match database_env(dir).pop() {
        Some((_, url)) => postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect(),
        None => {
            let db = rusqlite::Connection::open(dir.join("mfad.db")).unwrap();
            let mut q = db.prepare(sql).unwrap();
            let all = q
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            all
        }
    }
}

/// A new data directory `to` (mode 0700) holding a copy of `from`'s key (mode 0600), as
/// an operator sets up another node.
pub fn data_dir_with_key_of(from: &Path, to: &Path) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().mode(0o700).create(to).unwrap();
    let key = to.join("mfad.key");
    std::fs::copy(from.join("mfad.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// On the PostgreSQL run: data directory `dir` keeps its SQLite file (a test of
/// moving from SQLite to PostgreSQL).
pub fn use_sqlite(dir: &Path) {
    DATABASES
        .lock()
        .unwrap()
        .push((dir.to_path_buf(), String::new()));
}

/// On the PostgreSQL run: a new, empty database, its URL.
pub fn new_postgres_database() -> String {
    let probe = tempfile::tempdir().unwrap();
    let url = database_env(probe.path())
        .pop()
        .expect("a PostgreSQL database needs the PostgreSQL run")
        .1;
    url
}

/// Data directory `dir` uses the database at `url`.
pub fn use_database(dir: &Path, url: &str) {
    DATABASES
        .lock()
        .unwrap()
        .push((dir.to_path_buf(), url.to_string()));
}

/// On the PostgreSQL run, every row of the database of data directory `dir` as text
/// (`bytea` as `\x` and hex), to look for what must not be stored; `None` on SQLite.
pub fn postgres_rows(dir: &Path) -> Option<String> {
    let url = database_env(dir).pop()?.1;
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let tables: Vec<String> = c
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut all = String::new();
    for t in tables {
        for r in c.query(&format!("SELECT t::text FROM {t} t"), &[]).unwrap() {
            all.push_str(r.get::<_, &str>(0));
            all.push('\n');
        }
    }
    Some(all)
}

/// Starts `mfad serve` on `dir` (and `key`, if given), expecting it to refuse: returns
/// its stderr.
pub fn refused_start(dir: &Path, key: Option<&Path>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir);
    if let Some(k) = key {
        cmd.arg("--key-file").arg(k);
    }
    let out = cmd
        .envs(database_env(dir))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "mfad started where it should have refused"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts `mfad serve FLAG VALUE` on a fresh data directory, expecting it to refuse the
/// value: returns its stderr.
pub fn refused_setting(flag: &str, value: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(
        dir.path(),
        &["serve", flag, value, "--listen", "127.0.0.1:0"],
        None,
    );
    assert!(!ok, "{flag} {value} was taken");
    err
}

pub fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .envs(database_env(dir))
        .env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
        input.write_all(b"\n").unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One request on a fresh connection to something that is not mfad's API (the
/// WebDriver server): not checked against the OpenAPI document.
pub fn request_unchecked(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut headers = headers.to_vec();
    headers.push(("Connection", "close"));
    let raw = client::request_bytes(method, path, &headers, body.map(str::as_bytes));
    raw_request(addr, &raw)
}

/// One request on a fresh connection; the answer is checked against
/// `docs/openapi.json` (a mismatch fails the test).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let resp = request_unchecked(addr, method, path, headers, body);
    // The metrics listener speaks no API; every other answer must be the document's.
    if !is_metrics_listener(addr) {
        if let Err(e) = openapi::contract().check(method, path, &resp) {
            panic!("the answer is not what docs/openapi.json says: {e}");
        }
    }
    resp
}

/// Whether `addr` is a metrics listener a test started (see [`Server::scrape`]).
fn is_metrics_listener(addr: SocketAddr) -> bool {
    METRICS_LISTENERS.lock().unwrap().contains(&addr)
}

static METRICS_LISTENERS: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Sends raw bytes on a fresh connection and reads one response.
pub fn raw_request(addr: SocketAddr, raw: &[u8]) -> Resp {
    client::Conn::new(addr, Duration::from_secs(30))
        .request(raw)
        .unwrap()
}

/// The TCP ports process `pid` listens on (IPv4), from `/proc`: its sockets' inodes,
/// found in the kernel's table of listening sockets.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            if *state != "0A" || !inodes.iter().any(|i| i == inode) {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// Unix time now, as the tests' TOTP codes want it.
pub fn now() -> u64 {
    mfad::unix_now() as u64
}

/// The code for `secret` (base32) at unix time `t`, by totp-lite, not by mfad.
pub fn code_at(secret_b32: &str, t: u64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .unwrap();
    totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, &key, t)
}

/// Decodes a `data:image/png;base64,` QR code with rqrr: (width, height, content).
pub fn decode_qr(data_uri: &str) -> (u32, u32, String) {
    let b64 = data_uri
        .strip_prefix("data:image/png;base64,")
        .expect("data URI prefix");
    let png = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .unwrap()
        .to_luma8();
    let (w, h) = img.dimensions();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "expected exactly one QR code");
    let (_, content) = grids[0].decode().unwrap();
    (w, h, content)
}

/// All bytes of every file under `dir`.
pub fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(all_file_bytes(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
