//! Test support: start the real `mfad` binary on `127.0.0.1:0` with a temporary data
//! directory, speak plain HTTP/1.1 to it over a socket (thin wrappers over `client.rs`,
//! the client the benchmarks share), and compute TOTP codes with an independent
//! implementation (`totp-lite`).

#![allow(dead_code)]

pub mod client;
pub mod openapi;
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
        if let Some(m) = metrics {
            METRICS_LISTENERS.lock().unwrap().push(m);
        }
        Server {
            addr,
            metrics,
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

/// Starts `mfad serve` on `dir` (and `key`, if given), expecting it to refuse: returns
/// its stderr.
pub fn refused_start(dir: &Path, key: Option<&Path>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir);
    if let Some(k) = key {
        cmd.arg("--key-file").arg(k);
    }
    let out = cmd.env_remove("CREDENTIALS_DIRECTORY").output().unwrap();
    assert!(
        !out.status.success(),
        "mfad started where it should have refused"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
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
