//! Soak test: mixed load (login, refresh, status, setup, enable, verify, disable) against
//! a release mfad for a long time, at a fixed fraction of the throughput it first
//! measures for the same mix, and then the figures that show a leak or a fault: 5xx
//! answers, socket errors, RSS growth and open file descriptors.
//!
//!     cargo bench --bench soak                      # 10 minutes at 70%
//!     cargo bench --bench soak -- --seconds 60 --fraction 0.7
//!
//! Loopback only; every loop is bounded by the run's deadline. Not part of `cargo test`.

// Test and benchmark code: a failed unwrap is a failed run, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks
)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/client.rs"]
mod client;

use client::Conn;

const PASSWORD: &str = "soak test password";
const THREADS: usize = 16;

/// One request on the session's keep-alive connection: the status and the body.
fn request(
    c: &mut Conn,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let req = client::request_bytes(method, path, &headers, Some(body.as_bytes()));
    let r = c.request(&req)?;
    Ok((r.status, r.text()))
}

fn field(body: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get(name)?.as_str().map(String::from)
}

fn code(secret: &str, step: u64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap_or_default();
    let c = mfad::totp::code_for_step(&key, step);
    String::from_utf8_lossy(&c).into_owned()
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    socket_errors: AtomicU64,
}

/// One account's endless session: mostly status, setup and refresh, a login per round,
/// and every 35 s a full enable → challenge → verify → disable.
fn session(
    addr: SocketAddr,
    email: String,
    deadline: Instant,
    per_second: f64,
    counts: Arc<Counts>,
) {
    let mut c = Conn::new(addr, Duration::from_secs(30));
    let gap = Duration::from_secs_f64(1.0 / per_second.max(0.01));
    let mut next = Instant::now();
    let mut last_mfa = Instant::now() - Duration::from_secs(60);
    let login_body = serde_json::json!({"email": email, "password": PASSWORD}).to_string();
    let mut send = |c: &mut Conn, method: &str, path: &str, bearer: Option<&str>, body: &str| {
        let wait = next.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
        next = next.max(Instant::now() - gap) + gap;
        let resent = c.resent;
        let result = request(c, method, path, bearer, body);
        // The client resends a request once when the server closed the kept-alive
        // connection without answering; for the soak that is still a socket error.
        if c.resent > resent && counts.socket_errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("server closed a kept-alive connection before {method} {path}; resent");
        }
        match result {
            Ok((s, b)) => {
                let slot = match s {
                    200..=299 => &counts.ok,
                    500..=599 => &counts.server_errors,
                    _ => &counts.client_errors,
                };
                slot.fetch_add(1, Ordering::Relaxed);
                Some((s, b))
            }
            Err(e) => {
                if counts.socket_errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("socket error on {method} {path}: {e}");
                }
                None
            }
        }
    };
    while Instant::now() < deadline {
        let Some((200, body)) = send(&mut c, "POST", "/api/auth", None, &login_body) else {
            continue;
        };
        let (Some(token), Some(mut refresh)) =
            (field(&body, "token"), field(&body, "refresh_token"))
        else {
            continue;
        };
        for i in 0..200 {
            if Instant::now() >= deadline {
                return;
            }
            match i % 8 {
                0 => {
                    let b = serde_json::json!({"refresh_token": refresh}).to_string();
                    if let Some((200, body)) = send(&mut c, "POST", "/api/auth/refresh", None, &b) {
                        refresh = field(&body, "refresh_token").unwrap_or_default();
                    }
                }
                1 | 2 => {
                    send(
                        &mut c,
                        "POST",
                        "/api/v1/me/mfa/totp/setup",
                        Some(&token),
                        "",
                    );
                }
                _ => {
                    send(&mut c, "GET", "/api/v1/me/mfa/status", Some(&token), "");
                }
            }
        }
        if last_mfa.elapsed() > Duration::from_secs(35) {
            last_mfa = Instant::now();
            let Some((200, body)) = send(
                &mut c,
                "POST",
                "/api/v1/me/mfa/totp/setup",
                Some(&token),
                "",
            ) else {
                continue;
            };
            let Some(secret) = field(&body, "secret") else {
                continue;
            };
            let step = mfad::unix_now() as u64 / 30;
            let b = serde_json::json!({"code": code(&secret, step)}).to_string();
            if let Some((200, _)) = send(
                &mut c,
                "POST",
                "/api/v1/me/mfa/totp/enable",
                Some(&token),
                &b,
            ) {
                if let Some((200, body)) = send(&mut c, "POST", "/api/auth", None, &login_body) {
                    let mfa = field(&body, "mfa_token").unwrap_or_default();
                    let b = serde_json::json!({"mfaToken": mfa, "code": code(&secret, step + 1)})
                        .to_string();
                    send(&mut c, "POST", "/api/auth/mfa/verify", None, &b);
                }
            }
            let b = serde_json::json!({"password": PASSWORD}).to_string();
            send(
                &mut c,
                "POST",
                "/api/v1/me/mfa/totp/disable",
                Some(&token),
                &b,
            );
        }
    }
}

fn proc_figures(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse().unwrap_or(0))
            })
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// Runs the mix for `seconds` at `per_thread` requests per second per thread (0: as fast
/// as it goes) and returns the counts and the request rate reached.
fn run(
    addr: SocketAddr,
    emails: &[String],
    seconds: f64,
    per_thread: f64,
    pid: u32,
    sample: bool,
) -> (Arc<Counts>, f64, Vec<(f64, u64, usize)>) {
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let rate = if per_thread > 0.0 { per_thread } else { 1e9 };
    let threads: Vec<_> = emails
        .iter()
        .map(|e| {
            let (e, counts) = (e.clone(), counts.clone());
            std::thread::spawn(move || session(addr, e, deadline, rate, counts))
        })
        .collect();
    let mut samples = Vec::new();
    while sample && Instant::now() < deadline {
        std::thread::sleep(
            Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now())),
        );
        let (rss, fds) = proc_figures(pid);
        samples.push((start.elapsed().as_secs_f64(), rss, fds));
    }
    for t in threads {
        let _ = t.join();
    }
    let total = counts.ok.load(Ordering::Relaxed)
        + counts.client_errors.load(Ordering::Relaxed)
        + counts.server_errors.load(Ordering::Relaxed);
    (
        counts,
        total as f64 / start.elapsed().as_secs_f64(),
        samples,
    )
}

fn main() {
    let mut seconds = 600.0;
    let mut fraction = 0.7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--fraction" => fraction = args.next().and_then(|v| v.parse().ok()).unwrap_or(fraction),
            _ => {} // cargo bench passes --bench
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_mfad");
    let mut server: Child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--login-rate",
            "0",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mfad");
    let mut first = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("address line");
    let addr: SocketAddr = first
        .trim()
        .trim_start_matches("mfad listening on http://")
        .parse()
        .expect("address");
    let pid = server.id();
    let emails: Vec<String> = (0..THREADS)
        .map(|i| format!("soak{i}@example.com"))
        .collect();
    for e in &emails {
        let mut child = Command::new(bin)
            .args([
                "user",
                "add",
                "--password-stdin",
                "--email",
                e,
                "--data-dir",
            ])
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("user add");
        let _ = writeln!(child.stdin.take().expect("stdin"), "{PASSWORD}");
        let _ = child.wait();
    }
    println!("mfad soak: {THREADS} sessions on {addr}; mix per login: 150 status, 50 setup, 25 refresh; every 35 s enable + verify + disable");
    let (_, max_rate, _) = run(addr, &emails, 20.0, 0.0, pid, false);
    let target = max_rate * fraction;
    println!("calibration (20 s, unthrottled): {max_rate:.0} req/s; soak at {:.0}% = {target:.0} req/s for {seconds:.0} s", fraction * 100.0);
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, fds0) = proc_figures(pid);
    let (counts, rate, samples) = run(addr, &emails, seconds, target / THREADS as f64, pid, true);
    std::thread::sleep(Duration::from_millis(500));
    let (rss1, fds1) = proc_figures(pid);
    for (t, rss, fds) in &samples {
        println!(
            "  t={t:>5.0}s  rss={:>6.1} MiB  fds={fds}",
            *rss as f64 / 1024.0
        );
    }
    let growth = if rss0 > 0 {
        (rss1 as f64 - rss0 as f64) / rss0 as f64 * 100.0
    } else {
        0.0
    };
    println!(
        "result: {rate:.0} req/s; 2xx {} / 4xx {} / 5xx {} / socket errors {}; RSS after warm-up {:.1} -> end {:.1} MiB ({growth:+.1}%); open fds idle before {fds0} -> idle after {fds1}",
        counts.ok.load(Ordering::Relaxed),
        counts.client_errors.load(Ordering::Relaxed),
        counts.server_errors.load(Ordering::Relaxed),
        counts.socket_errors.load(Ordering::Relaxed),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
    );
    let verdict = counts.server_errors.load(Ordering::Relaxed) == 0
        && counts.socket_errors.load(Ordering::Relaxed) == 0
        && growth < 10.0
        && fds1 <= fds0;
    println!(
        "verdict: {}",
        if verdict {
            "PASS (no 5xx, no socket errors, RSS growth < 10%, no fd growth)"
        } else {
            "FAIL"
        }
    );
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = server.wait();
    if !verdict {
        std::process::exit(1);
    }
}
