//! Load generator for mfad. Run `cargo bench --bench loadgen` (about 10 minutes on
//! 2 cores), or `cargo bench --bench loadgen -- --quick` (about 3 minutes); `-- --help`
//! lists the options. It starts the release `mfad` that cargo built for this bench on
//! 127.0.0.1:0 with a temporary data directory and drives it with a std-only HTTP/1.1
//! keep-alive client (one blocking thread per connection, closed loop, Content-Length
//! framing) at 1, 8 and 64 connections, several runs each, and prints for every endpoint
//! the median and min–max of req/s and of p50/p99/p99.9 latency: setup, status, verify
//! (the real endpoint with the TOTP replay write; each request gets a fresh challenge
//! and a fresh step, the challenges seeded straight into the database because minting
//! them through login costs a 600,000-round PBKDF2 each), login (PBKDF2-bound), refresh
//! (rotation, chained per connection) and end-to-end login→verify pairs. The ceiling is a
//! bare tiny_http server (this binary re-run with `--bare-server`) with the same worker
//! count under the same generator; every mfad figure is also shown as a ratio to it. In
//! process it times the TOTP check plus the replay write (`totp::verify` +
//! `store::accept_step`, the clock moved on a few steps per call so that every write
//! succeeds) and the setup pipeline (secret → base32 → URI → QR PNG → base64 → JSON),
//! the latter against Python (pyotp + qrcode) and Node (qrcode) peers in
//! `benches/peers/` when those are installed. Also printed: start-to-first-answer, peak
//! RSS (VmHWM), binary size and a typical QR's PNG size. The generator shares the
//! machine's cores with the server (the table shows who used them), so the figures are
//! for this machine; nothing here asserts on time. Loopback only; every loop is bounded
//! in count and in time.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use data_encoding::{BASE32_NOPAD, BASE64, HEXLOWER};
use mfad::config::Config;
use mfad::store::{self, Db};
use mfad::{crypto, qr, totp};
use serde_json::Value;

type Res<T> = Result<T, String>;

const HELP: &str = "\
loadgen: mfad's benchmark (see the top of benches/loadgen.rs)

    cargo bench --bench loadgen [-- OPTIONS]

OPTIONS:
    --quick           3 runs of 1 s per figure instead of 5 runs of 3 s
    --runs N          runs per figure
    --secs S          seconds per run
    --conns A,B,..    connection counts [1,8,64]
    --workers N       mfad and bare tiny_http worker threads [mfad's default, 2 x cores, 4..64]
    --only A,B,..     sections: start, ceiling, healthz, status, setup, verify, login,
                      refresh, pair, inproc, pipeline [all]
    --mfad PATH       measure this mfad binary instead of the one cargo built
    --serve-arg ARG   one more flag for `mfad serve` (repeat it for more), e.g.
                      --serve-arg --log-level=warn
    --help            this text
";

const PASSWORD: &str = "bench-password-0123";
const ISSUER: &str = "Storno";
/// At most this many requests per run over all connections (a bound, never reached at
/// the rates seen here).
const MAX_REQUESTS_PER_RUN: usize = 3_000_000;

// ---------------------------------------------------------------------------------------
// Options

struct Opts {
    runs: usize,
    secs: f64,
    warmup: f64,
    conns: Vec<usize>,
    workers: usize,
    only: Option<Vec<String>>,
    quick: bool,
    help: bool,
    bare_server: bool,
}

/// mfad's own default (two per core, 4 to 64).
fn default_workers() -> usize {
    mfad::config::default_workers()
}

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut o = Opts {
            runs: 5,
            secs: 3.0,
            warmup: 0.5,
            conns: vec![1, 8, 64],
            workers: default_workers(),
            only: None,
            quick: false,
            help: false,
            bare_server: false,
        };
        let (mut runs, mut secs) = (None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                // cargo bench passes --bench to every harness = false target.
                "--bench" => {}
                "--quick" => o.quick = true,
                "--help" | "-h" => o.help = true,
                "--bare-server" => o.bare_server = true,
                "--runs" => runs = Some(parse_num::<usize>(&value("--runs")?, "--runs", 1, 50)?),
                "--secs" => secs = Some(parse_num::<f64>(&value("--secs")?, "--secs", 0.1, 60.0)?),
                "--serve-arg" => {
                    let mut args = SERVE_ARGS.lock().unwrap_or_else(|e| e.into_inner());
                    args.push(value("--serve-arg")?);
                }
                "--mfad" => {
                    let _ = MFAD_OVERRIDE.set(PathBuf::from(value("--mfad")?));
                }
                "--workers" => {
                    o.workers = parse_num::<usize>(&value("--workers")?, "--workers", 1, 1024)?
                }
                "--conns" => {
                    o.conns = value("--conns")?
                        .split(',')
                        .map(|s| parse_num::<usize>(s.trim(), "--conns", 1, 512))
                        .collect::<Res<Vec<_>>>()?
                }
                "--only" => {
                    o.only = Some(
                        value("--only")?
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .collect(),
                    )
                }
                other => return Err(format!("unknown argument {other:?} (see --help)")),
            }
        }
        if o.quick {
            o.runs = 3;
            o.secs = 1.0;
            o.warmup = 0.3;
        }
        o.runs = runs.unwrap_or(o.runs);
        o.secs = secs.unwrap_or(o.secs);
        Ok(o)
    }

    fn want(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == section))
    }

    fn max_conns(&self) -> usize {
        self.conns.iter().copied().max().unwrap_or(1)
    }
}

fn parse_num<T: std::str::FromStr + PartialOrd + Copy>(
    s: &str,
    name: &str,
    lo: T,
    hi: T,
) -> Res<T> {
    match s.parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(format!("{name}: {s:?} is not a number in range")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if opts.bare_server {
        return bare_server(opts.workers);
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median and range of repeated measurements.
#[derive(Clone, Copy, Debug)]
struct Spread {
    med: f64,
    min: f64,
    max: f64,
}

fn spread(values: &[f64]) -> Spread {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Spread {
            med: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        med,
        min: v[0],
        max: v[n - 1],
    }
}

/// A number with about three significant digits.
fn num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn show(s: Spread) -> String {
    if !s.med.is_finite() {
        return "-".into();
    }
    format!("{} ({}–{})", num(s.med), num(s.min), num(s.max))
}

// ---------------------------------------------------------------------------------------
// /proc: CPU time and peak RSS

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of a process (all its threads), from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name may hold spaces; the fields that follow it do not.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return f64::NAN;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let (Some(u), Some(s)) = (f.get(11), f.get(12)) else {
        return f64::NAN;
    };
    match (u.parse::<f64>(), s.parse::<f64>()) {
        (Ok(u), Ok(s)) => (u + s) / clock_ticks(),
        _ => f64::NAN,
    }
}

/// CPU seconds the whole machine (all cores) spent running tasks (user, system, and
/// steal: time the hypervisor gave to someone else), and in interrupts (irq, softirq:
/// there, loopback TCP is processed without being charged to any process), from
/// /proc/stat.
fn machine_cpu() -> [f64; 2] {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return [f64::NAN; 2];
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return [f64::NAN; 2];
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    if f.len() < 8 {
        return [f64::NAN; 2];
    }
    let t = clock_ticks();
    [(f[0] + f[1] + f[2] + f[7]) / t, (f[5] + f[6]) / t]
}

fn machine_busy_seconds() -> f64 {
    let [tasks, irq] = machine_cpu();
    tasks + irq
}

/// Cores kept busy by other processes over `secs`, measured now.
fn other_load(secs: f64) -> f64 {
    let (m0, g0, t0) = (machine_busy_seconds(), cpu_seconds("self"), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (m1, g1) = (machine_busy_seconds(), cpu_seconds("self"));
    ((m1 - m0) - (g1 - g0)) / t0.elapsed().as_secs_f64()
}

/// A field of /proc/PID/status in kB (VmHWM is the peak resident set size).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 keep-alive client

/// One client connection; reconnects after an error or a `Connection: close`.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    len: usize,
    /// The body of the last response (chunked bodies decoded).
    body: Vec<u8>,
    /// Requests sent again because the server had closed the kept-alive connection.
    resent: u64,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, len: &mut usize) -> std::io::Result<()> {
    if *len == buf.len() {
        if buf.len() >= 4 << 20 {
            return Err(std::io::Error::other("response over 4 MiB"));
        }
        buf.resize(buf.len() * 2, 0);
    }
    let n = stream.read(&mut buf[*len..])?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    *len += n;
    Ok(())
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: vec![0; 16 * 1024],
            len: 0,
            body: Vec::with_capacity(16 * 1024),
            resent: 0,
        }
    }

    fn connect(&mut self) -> std::io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        // Generous: a login queued behind 63 others takes seconds.
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        self.stream = Some(s);
        self.len = 0;
        Ok(())
    }

    /// Sends one request and reads its response; returns the status, the body is in
    /// `self.body`.
    ///
    /// A kept-alive connection that the server closed before answering a single byte is
    /// replaced and the request sent again, once, as browsers do (counted in `resent`).
    fn request(&mut self, req: &[u8]) -> std::io::Result<u16> {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let reused = self.stream.is_some();
        if !reused {
            self.connect()?;
        }
        let first = self.exchange(req);
        let stale = match &first {
            Err(e) => {
                reused
                    && self.len == 0
                    && matches!(
                        e.kind(),
                        UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
                    )
            }
            Ok(_) => return first,
        };
        self.stream = None;
        self.len = 0;
        if !stale {
            return first;
        }
        self.resent += 1;
        self.connect()?;
        let again = self.exchange(req);
        if again.is_err() {
            self.stream = None;
            self.len = 0;
        }
        again
    }

    fn exchange(&mut self, req: &[u8]) -> std::io::Result<u16> {
        let Conn {
            stream,
            buf,
            len,
            body,
            ..
        } = self;
        let Some(stream) = stream.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        stream.write_all(req)?;
        let head_end = loop {
            if let Some(p) = find(&buf[..*len], b"\r\n\r\n") {
                break p + 4;
            }
            fill(stream, buf, len)?;
        };
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| bad("bad length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        body.clear();
        let mut pos = head_end;
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = find(&buf[pos..*len], b"\r\n") {
                        break pos + p;
                    }
                    fill(stream, buf, len)?;
                };
                let size_text =
                    std::str::from_utf8(&buf[pos..line_end]).map_err(|_| bad("bad chunk size"))?;
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| bad("bad chunk size"))?;
                pos = line_end + 2;
                if size == 0 {
                    // No trailers from tiny_http: just the final CRLF.
                    while *len < pos + 2 {
                        fill(stream, buf, len)?;
                    }
                    pos += 2;
                    break;
                }
                while *len < pos + size + 2 {
                    fill(stream, buf, len)?;
                }
                body.extend_from_slice(&buf[pos..pos + size]);
                pos += size + 2;
            }
        } else {
            let n = length.ok_or_else(|| bad("response without a length"))?;
            while *len < pos + n {
                fill(stream, buf, len)?;
            }
            body.extend_from_slice(&buf[pos..pos + n]);
            pos += n;
        }
        buf.copy_within(pos..*len, 0);
        *len -= pos;
        if close {
            self.stream = None;
            self.len = 0;
        }
        Ok(status)
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

fn http_request(method: &str, path: &str, bearer: Option<&str>, body: Option<&str>) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if let Some(t) = bearer {
        let _ = write!(r, "Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        let _ = write!(
            r,
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
    } else {
        r.push_str("\r\n");
    }
    r.into_bytes()
}

fn post_json(path: &str, bearer: Option<&str>, body: &Value) -> Vec<u8> {
    http_request("POST", path, bearer, Some(&body.to_string()))
}

// ---------------------------------------------------------------------------------------
// Jobs: what one connection does, one unit (request, or login + verify pair) at a time

enum Outcome {
    Ok,
    /// An unexpected status: the request was answered but not as the workload expects.
    Bad(String),
    /// A connection error (the client reconnects for the next unit).
    Io(String),
    /// No more prepared work (seeded challenges or refresh tokens used up).
    Done,
}

trait Job: Send {
    /// Runs one unit; `extra` collects a second latency (ns) where the unit has one.
    fn once(&mut self, conn: &mut Conn, extra: &mut Vec<u64>) -> Outcome;
}

fn send(conn: &mut Conn, req: &[u8], want: u16) -> Result<(), Outcome> {
    match conn.request(req) {
        Ok(s) if s == want => Ok(()),
        Ok(s) => Err(Outcome::Bad(format!(
            "HTTP {s}: {}",
            String::from_utf8_lossy(&conn.body[..conn.body.len().min(120)])
        ))),
        Err(e) => Err(Outcome::Io(e.to_string())),
    }
}

/// The same request every time (status, setup, healthz, the bare server).
struct Fixed(Vec<u8>);

impl Job for Fixed {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        match send(conn, &self.0, 200) {
            Ok(()) => Outcome::Ok,
            Err(o) => o,
        }
    }
}

type TokenPool = Arc<Mutex<Vec<String>>>;
/// Refresh tokens kept for the refresh runs; more are not needed.
const POOL_CAP: usize = 1024;

fn pool_push(pool: &TokenPool, token: String) {
    let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
    if p.len() < POOL_CAP {
        p.push(token);
    }
}

fn pool_take(pool: &TokenPool) -> Option<String> {
    pool.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

fn field(v: &Option<Value>, name: &str) -> Option<String> {
    v.as_ref()?.get(name)?.as_str().map(str::to_string)
}

/// `POST /api/auth` for a local account without TOTP; keeps the refresh tokens.
struct Login {
    req: Vec<u8>,
    pool: TokenPool,
}

impl Job for Login {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        if let Err(o) = send(conn, &self.req, 200) {
            return o;
        }
        match field(&conn.json(), "refresh_token") {
            Some(t) => {
                pool_push(&self.pool, t);
                Outcome::Ok
            }
            None => Outcome::Bad("login answered without a refresh_token".into()),
        }
    }
}

/// `POST /api/auth/refresh`, each answer's token presented next (rotation).
struct Refresh {
    token: Option<String>,
    pool: TokenPool,
}

impl Job for Refresh {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        let Some(token) = self.token.take().or_else(|| pool_take(&self.pool)) else {
            return Outcome::Done;
        };
        let req = post_json(
            "/api/auth/refresh",
            None,
            &serde_json::json!({ "refresh_token": token }),
        );
        // On any failure the token's state is unknown (it may have been rotated), so it
        // is dropped: presenting it again would revoke its family.
        if let Err(o) = send(conn, &req, 200) {
            return o;
        }
        match field(&conn.json(), "refresh_token") {
            Some(t) => {
                self.token = Some(t);
                Outcome::Ok
            }
            None => Outcome::Bad("refresh answered without a refresh_token".into()),
        }
    }
}

impl Drop for Refresh {
    fn drop(&mut self) {
        if let Some(t) = self.token.take() {
            pool_push(&self.pool, t);
        }
    }
}

/// One prepared unit of verify work: an account with TOTP on, a code for a step that
/// account has not used yet, and (for the HTTP verify runs) a challenge for it.
struct Item {
    email: String,
    challenge: Option<String>,
    code: String,
    /// The time step the code is for.
    step: u64,
}

struct Items {
    list: Vec<Item>,
    next: AtomicUsize,
}

impl Items {
    fn take(&self) -> Option<&Item> {
        self.list.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// `POST /api/auth/mfa/verify` with a seeded challenge: the full verify path, replay
/// write included.
struct Verify(Arc<Items>);

impl Job for Verify {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        let Some(item) = self.0.take() else {
            return Outcome::Done;
        };
        let req = post_json(
            "/api/auth/mfa/verify",
            None,
            &serde_json::json!({ "mfaToken": item.challenge, "code": item.code }),
        );
        match send(conn, &req, 200) {
            Ok(()) => Outcome::Ok,
            // Which account and code, to look up in the database afterwards.
            Err(Outcome::Bad(e)) => {
                let mut r = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
                if r.len() < 3 {
                    r.push((item.email.clone(), item.step));
                }
                Outcome::Bad(format!(
                    "{e} (account {}, code {} of step {}, sent in step {})",
                    item.email,
                    item.code,
                    item.step,
                    totp::step_at(unix_now())
                ))
            }
            Err(o) => o,
        }
    }
}

/// Accounts (and the step of the code) whose verify was refused, to explain afterwards.
static REFUSED: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Login (gets a challenge) then verify: the whole second-factor login. `extra` gets the
/// verify request's own latency.
struct Pair {
    items: Arc<Items>,
    pool: TokenPool,
}

impl Job for Pair {
    fn once(&mut self, conn: &mut Conn, extra: &mut Vec<u64>) -> Outcome {
        let Some(item) = self.items.take() else {
            return Outcome::Done;
        };
        let login = post_json(
            "/api/auth",
            None,
            &serde_json::json!({ "email": item.email, "password": PASSWORD }),
        );
        if let Err(o) = send(conn, &login, 200) {
            return o;
        }
        let Some(challenge) = field(&conn.json(), "mfa_token") else {
            return Outcome::Bad("login of a TOTP account gave no mfa_token".into());
        };
        let verify = post_json(
            "/api/auth/mfa/verify",
            None,
            &serde_json::json!({ "mfaToken": challenge, "code": item.code }),
        );
        let t = Instant::now();
        if let Err(o) = send(conn, &verify, 200) {
            return o;
        }
        extra.push(t.elapsed().as_nanos() as u64);
        if let Some(t) = field(&conn.json(), "refresh_token") {
            pool_push(&self.pool, t);
        }
        Outcome::Ok
    }
}

// ---------------------------------------------------------------------------------------
// One load run

#[derive(Clone, Debug, Default)]
struct RunResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: f64,
    /// Latency percentiles in ms: p50, p99, p99.9.
    lat: [f64; 3],
    /// The slowest unit, ms.
    max_ms: f64,
    /// Percentiles of the second latency, where the job records one.
    extra: Option<[f64; 3]>,
    /// CPU seconds used by the server, by this generator and by the whole machine
    /// during the run.
    srv_cpu: f64,
    gen_cpu: f64,
    all_cpu: f64,
    /// CPU seconds in interrupts (mostly loopback TCP) during the run.
    irq_cpu: f64,
    /// Work ran out before the time did.
    exhausted: bool,
    /// Requests resent on a new connection (see `Conn::request`).
    resent: u64,
}

impl RunResult {
    fn rate(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.ok as f64 / self.elapsed
        } else {
            f64::NAN
        }
    }
}

fn pcts(mut v: Vec<u64>) -> [f64; 3] {
    v.sort_unstable();
    [50.0, 99.0, 99.9].map(|p| percentile(&v, p) as f64 / 1e6)
}

struct ThreadOut {
    lat: Vec<u64>,
    extra: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    end: Instant,
    exhausted: bool,
    resent: u64,
}

/// Runs `jobs` (one connection each) against `addr` for `secs` seconds; a unit started
/// before the deadline is finished. Connecting is not timed.
fn run_load(addr: SocketAddr, jobs: Vec<Box<dyn Job>>, secs: f64, server_pid: u32) -> RunResult {
    let n = jobs.len().max(1);
    let per_thread = MAX_REQUESTS_PER_RUN / n;
    let barrier = Arc::new(Barrier::new(n + 1));
    let (srv, me) = (server_pid.to_string(), "self".to_string());
    let mut handles = Vec::with_capacity(n);
    for mut job in jobs {
        let barrier = barrier.clone();
        handles.push(std::thread::spawn(move || {
            let mut conn = Conn::new(addr);
            let mut out = ThreadOut {
                lat: Vec::with_capacity(1 << 14),
                extra: Vec::new(),
                errors: 0,
                first_error: None,
                end: Instant::now(),
                exhausted: false,
                resent: 0,
            };
            let connected = conn.connect();
            barrier.wait();
            let start = Instant::now();
            if let Err(e) = connected {
                out.errors += 1;
                out.first_error = Some(format!("connect: {e}"));
            }
            let deadline = start + Duration::from_secs_f64(secs);
            while out.lat.len() < per_thread && Instant::now() < deadline {
                let t = Instant::now();
                let outcome = job.once(&mut conn, &mut out.extra);
                let took = t.elapsed();
                match outcome {
                    Outcome::Ok => out.lat.push(took.as_nanos() as u64),
                    Outcome::Done => {
                        out.exhausted = true;
                        break;
                    }
                    Outcome::Bad(e) | Outcome::Io(e) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(e);
                        // Do not spin on a server that went away.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            out.end = Instant::now();
            out.resent = conn.resent;
            drop(job);
            out
        }));
    }
    let (srv0, gen0, [all0, irq0]) = (cpu_seconds(&srv), cpu_seconds(&me), machine_cpu());
    barrier.wait();
    let start = Instant::now();
    let mut outs = Vec::with_capacity(n);
    for h in handles {
        match h.join() {
            Ok(o) => outs.push(o),
            Err(_) => outs.push(ThreadOut {
                lat: Vec::new(),
                extra: Vec::new(),
                errors: 1,
                first_error: Some("a client thread panicked".into()),
                end: Instant::now(),
                exhausted: false,
                resent: 0,
            }),
        }
    }
    let (srv1, gen1, [all1, irq1]) = (cpu_seconds(&srv), cpu_seconds(&me), machine_cpu());
    let end = outs.iter().map(|o| o.end).max().unwrap_or(start);
    let mut lat = Vec::with_capacity(outs.iter().map(|o| o.lat.len()).sum());
    let mut extra = Vec::new();
    let mut r = RunResult {
        elapsed: end.duration_since(start).as_secs_f64(),
        srv_cpu: srv1 - srv0,
        gen_cpu: gen1 - gen0,
        all_cpu: all1 - all0,
        irq_cpu: irq1 - irq0,
        ..RunResult::default()
    };
    for o in outs {
        lat.extend_from_slice(&o.lat);
        extra.extend_from_slice(&o.extra);
        r.errors += o.errors;
        r.exhausted |= o.exhausted;
        r.resent += o.resent;
        if r.first_error.is_none() {
            r.first_error = o.first_error;
        }
    }
    r.ok = lat.len() as u64;
    r.max_ms = lat.iter().copied().max().unwrap_or(0) as f64 / 1e6;
    r.lat = pcts(lat);
    if !extra.is_empty() {
        r.extra = Some(pcts(extra));
    }
    r
}

// ---------------------------------------------------------------------------------------
// Processes: mfad and the bare tiny_http server

struct Proc {
    child: Child,
    addr: SocketAddr,
    /// The last lines of its stderr, to show if something goes wrong.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    /// Spawns `cmd` and waits (at most 30 s) for `prefix ADDR` on its stdout.
    fn spawn(mut cmd: Command, prefix: &'static str) -> Res<(Proc, Duration)> {
        let t0 = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() == 40 {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
                let _ = tx.send(lines.next());
                for _ in lines {}
            });
        }
        let first = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let took = t0.elapsed();
        let mut proc = Proc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let Some(addr) = first
            .as_deref()
            .and_then(|l| l.trim().strip_prefix(prefix))
            .and_then(|a| a.parse().ok())
        else {
            return Err(format!(
                "{cmd:?} did not print its address (first line {first:?}); stderr:\n{}",
                proc.log_tail()
            ));
        };
        proc.addr = addr;
        Ok((proc, took))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then up to 10 s for it to exit (then SIGKILL).
    fn stop(mut self) -> String {
        // SAFETY: signals our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return format!("{status} after SIGTERM, {:.0} ms", ms(t.elapsed()))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return format!("wait failed: {e}"),
            }
        }
        let _ = self.child.kill();
        "did not stop within 10 s of SIGTERM: killed".into()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `--serve-arg ARG`s: more flags for `mfad serve` (they win over the bench's own).
static SERVE_ARGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `--mfad PATH`, if given: another build to measure (a branch, an experiment).
static MFAD_OVERRIDE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn mfad_bin() -> PathBuf {
    // Cargo builds the package's binaries for its benches and names them here.
    MFAD_OVERRIDE
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mfad")))
}

fn mfad_command(dir: &Path) -> Command {
    let mut cmd = Command::new(mfad_bin());
    cmd.arg("--data-dir").arg(dir);
    // Settings come from our flags only.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MFAD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY");
    cmd
}

fn spawn_mfad(dir: &Path, workers: usize) -> Res<(Proc, Duration)> {
    let mut cmd = mfad_command(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        // The default log level (info: one access line per request, as deployed).
        .args(["--login-rate", "0"])
        .args(SERVE_ARGS.lock().unwrap_or_else(|e| e.into_inner()).iter());
    Proc::spawn(cmd, "mfad listening on http://")
}

/// `mfad token` for an account (created without a password).
fn cli_token(dir: &Path, email: &str) -> Res<String> {
    let out = mfad_command(dir)
        .args(["token", "--email", email, "--ttl", "7200"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("mfad token: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mfad token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The ceiling: tiny_http with `workers` threads answering a fixed small JSON body with
/// the headers mfad sends, on a listener with TCP_NODELAY as mfad's.
fn bare_server(workers: usize) -> ExitCode {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare: cannot bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd, a pointer to a c_int and its exact size.
        unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let addr = listener.local_addr().ok();
    let server = match tiny_http::Server::from_listener(listener, None) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("bare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let headers: Vec<tiny_http::Header> = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    .iter()
    .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
    .collect();
    if let Some(a) = addr {
        println!("bare listening on http://{a}");
    }
    let _ = std::io::stdout().flush();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (server, headers) = (server.clone(), headers.clone());
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    let mut resp = tiny_http::Response::from_data(&b"{\"status\":\"ok\"}"[..]);
                    for h in &headers {
                        resp.add_header(h.clone());
                    }
                    let _ = rq.respond(resp);
                }
            })
        })
        .collect();
    // Runs until the parent's SIGTERM ends the process.
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------
// Seeding the database directly (what would otherwise cost a PBKDF2 per item)

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn instance_for(dir: &Path) -> Res<mfad::Instance> {
    let args: Vec<OsString> = vec!["serve".into(), "--data-dir".into(), dir.into()];
    let config = Config::parse(&|_| None, args).map_err(|e| e.to_string())?;
    mfad::open_instance(&config)
}

fn db_err(e: mfad::error::Error) -> String {
    format!("database: {}", e.message())
}

struct Seeder {
    keys: crypto::Keys,
    db: Db,
    password_hash: String,
    counter: usize,
}

impl Seeder {
    fn open(dir: &Path) -> Res<Seeder> {
        let mfad::Instance { keys, dbs } = instance_for(dir)?;
        let db = dbs.open()?;
        // One real hash, shared by every seeded account: seeding costs one PBKDF2.
        let password_hash = crypto::hash_password(PASSWORD, crypto::PASSWORD_ITERATIONS)
            .map_err(|e| e.to_string())?;
        Ok(Seeder {
            keys,
            db,
            password_hash,
            counter: 0,
        })
    }

    /// How many of each audit event the database holds.
    /// An account's replay state and audit trail, to explain a refused verify.
    fn account_state(&self, email: &str) -> String {
        self.db.read(|c| Self::account_state_on(c, email))
    }

    fn account_state_on(c: &rusqlite::Connection, email: &str) -> String {
        let row = c.query_row(
            "SELECT a.id, t.last_step, t.failed_verifies FROM accounts a
             JOIN totp t ON t.account_id = a.id WHERE a.email = ?1",
            [email],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        );
        let Ok((id, last_step, failed)) = row else {
            return "not found".into();
        };
        let events = c
            .prepare("SELECT event, at FROM audit WHERE account_id = ?1 ORDER BY id")
            .and_then(|mut st| {
                st.query_map([id], |r| {
                    Ok(format!(
                        "{}@{}",
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map(|v| v.join(" "))
            .unwrap_or_else(|e| e.to_string());
        format!("id {id}, last_step {last_step}, failed_verifies {failed}, audit: {events}")
    }

    fn audit_summary(&self) -> String {
        let rows = self.db.read(|c| {
            c.prepare("SELECT event, count(*) FROM audit GROUP BY event ORDER BY event")
                .and_then(|mut st| {
                    st.query_map([], |r| {
                        Ok(format!(
                            "{} {}",
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
        });
        match rows {
            Ok(r) if r.is_empty() => "none".into(),
            Ok(r) => r.join(", "),
            Err(e) => format!("cannot read: {e}"),
        }
    }

    /// Local accounts with the bench password and no TOTP.
    fn password_accounts(&mut self, n: usize) -> Res<Vec<String>> {
        let now = unix_now() as i64;
        let emails: Vec<String> = (0..n)
            .map(|i| format!("login-{}-{i}@bench.test", self.counter))
            .collect();
        self.counter += 1;
        let hash = self.password_hash.clone();
        self.db
            .write(|c| {
                for e in &emails {
                    store::create_account(c, e, Some(&hash), now)?;
                }
                Ok(())
            })
            .map_err(db_err)?;
        Ok(emails)
    }

    /// `n` accounts with TOTP enabled (and the bench password), one item each: a code
    /// for the current step (accepted while the clock is in that step or the next). With
    /// `challenges`, each item also gets an MFA challenge, stored as login would store
    /// it. One item per account: two items of one account would depend on their order
    /// (the later step first makes the earlier one a replay), and a request can be held
    /// up (see the notes printed with the results).
    fn totp_items(&mut self, n: usize, challenges: bool) -> Res<Vec<Item>> {
        let now = unix_now();
        let step = totp::step_at(now);
        let batch = self.counter;
        self.counter += 1;
        let keys = &self.keys;
        let hash = self.password_hash.clone();
        let items = self
            .db
            .write(|c| {
                let mut items = Vec::with_capacity(n);
                let salt: [u8; 16] = crypto::random()?;
                for i in 0..n {
                    let email = format!("totp-{batch}-{i}@bench.test");
                    let Some(id) = store::create_account(c, &email, Some(&hash), now as i64)?
                    else {
                        return Err(mfad::error::Error::Internal);
                    };
                    let secret: [u8; 20] = crypto::random()?;
                    let sealed = keys.seal(&secret, id)?;
                    store::set_pending_secret(c, id, &sealed)?;
                    store::activate_secret(c, id, &sealed, 0, &salt, now as i64)?;
                    let challenge = if challenges {
                        let raw: [u8; 32] = crypto::random()?;
                        let expires = now as i64 + 3600;
                        store::insert_challenge(c, &keys.token_hash(&raw), id, expires)?;
                        Some(HEXLOWER.encode(&raw))
                    } else {
                        None
                    };
                    let code = totp::code_for_step(&secret, step);
                    items.push(Item {
                        email,
                        challenge,
                        code: String::from_utf8_lossy(&code).into_owned(),
                        step,
                    });
                }
                Ok(items)
            })
            .map_err(db_err)?;
        self.checkpoint();
        Ok(items)
    }

    /// Copies the WAL into the database and empties it, so that a run does not start
    /// with the seeding's pages still to be checkpointed by one of mfad's requests.
    fn checkpoint(&self) {
        let _ = self
            .db
            .read(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"));
    }
}

// ---------------------------------------------------------------------------------------
// Groups of runs and the tables

struct Group {
    name: &'static str,
    conns: usize,
    runs: Vec<RunResult>,
}

impl Group {
    fn rate(&self) -> Spread {
        spread(&self.runs.iter().map(RunResult::rate).collect::<Vec<_>>())
    }

    fn lat(&self, i: usize) -> Spread {
        spread(&self.runs.iter().map(|r| r.lat[i]).collect::<Vec<_>>())
    }

    fn extra(&self, i: usize) -> Spread {
        spread(
            &self
                .runs
                .iter()
                .filter_map(|r| r.extra.map(|e| e[i]))
                .collect::<Vec<_>>(),
        )
    }

    fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.errors).sum()
    }

    /// Server CPU µs per successful unit, and (medians) the cores busy in the server,
    /// in this generator, in interrupts and in other processes, as "s/g/k/o".
    fn cpu(&self) -> (Spread, String) {
        let per =
            |f: &dyn Fn(&RunResult) -> f64| spread(&self.runs.iter().map(f).collect::<Vec<_>>());
        let cores = [
            per(&|r| r.srv_cpu / r.elapsed),
            per(&|r| r.gen_cpu / r.elapsed),
            per(&|r| r.irq_cpu / r.elapsed),
            per(&|r| (r.all_cpu - r.srv_cpu - r.gen_cpu).max(0.0) / r.elapsed),
        ]
        .map(|s| format!("{:.1}", s.med));
        (
            per(&|r| r.srv_cpu / r.ok.max(1) as f64 * 1e6),
            cores.join("/"),
        )
    }
}

struct Bench<'a> {
    opts: &'a Opts,
    groups: Vec<Group>,
    notes: Vec<String>,
}

impl Bench<'_> {
    /// One round of the ceiling: the bare tiny_http server answering a fixed GET.
    fn ceiling(&mut self, bare: &Proc) -> Res<()> {
        let req = http_request("GET", "/", None, None);
        self.figure(
            "ceiling",
            bare.addr,
            bare.pid(),
            true,
            &mut |n| Ok(fixed_jobs(&req, n)),
            &mut |_| {},
        )
    }

    /// Runs one figure: a warm-up (discarded) then `opts.runs` runs, for each connection
    /// count. `make` builds one job per connection for a run.
    fn figure(
        &mut self,
        name: &'static str,
        addr: SocketAddr,
        pid: u32,
        warmup: bool,
        make: &mut dyn FnMut(usize) -> Res<Vec<Box<dyn Job>>>,
        after: &mut dyn FnMut(&RunResult),
    ) -> Res<()> {
        let opts = self.opts;
        for &conns in &opts.conns {
            if warmup {
                let jobs = make(conns)?;
                let r = run_load(addr, jobs, self.opts.warmup, pid);
                after(&r);
            }
            // Runs go on an existing group of the same name and connections (the ceiling
            // is measured twice, before and after mfad).
            let found = self
                .groups
                .iter()
                .position(|g| g.name == name && g.conns == conns);
            let at = match found {
                Some(i) => i,
                None => {
                    self.groups.push(Group {
                        name,
                        conns,
                        runs: Vec::new(),
                    });
                    self.groups.len() - 1
                }
            };
            let (mut stalled, mut resent, mut slowest) = (0, 0, 0.0f64);
            for i in 0..self.opts.runs {
                let jobs = make(conns)?;
                let r = run_load(addr, jobs, self.opts.secs, pid);
                after(&r);
                eprintln!(
                    "  {name:<10} {conns:>3} conns, run {}/{}: {:>8.0} /s, p99 {:>8.2} ms, {} errors{}",
                    i + 1,
                    self.opts.runs,
                    r.rate(),
                    r.lat[1],
                    r.errors,
                    if r.exhausted { " (prepared work ran out)" } else { "" }
                );
                if let Some(e) = &r.first_error {
                    self.notes.push(format!(
                        "{name} at {conns} conns: {} errors, e.g. {e}",
                        r.errors
                    ));
                }
                resent += r.resent;
                // A unit as long as the run itself waited for the run to end: typically a
                // connection that tiny_http left unserved until other connections closed.
                if !pbkdf2_bound(name) && r.max_ms >= 800.0 * self.opts.secs {
                    stalled += 1;
                    slowest = slowest.max(r.max_ms);
                }
                if r.exhausted {
                    self.notes.push(format!(
                        "{name} at {conns} conns: prepared work ran out after {:.2} s",
                        r.elapsed
                    ));
                }
                self.groups[at].runs.push(r);
            }
            if resent > 0 {
                self.notes.push(format!(
                    "{name} at {conns} conns: {resent} requests resent because mfad had closed \
                     the kept-alive connection right after the previous answer"
                ));
            }
            if stalled > 0 {
                self.notes.push(format!(
                    "{name} at {conns} conns: in {stalled} of {} runs a request took about the \
                     whole run (up to {slowest:.0} ms): its connection was answered only once \
                     other connections closed",
                    self.opts.runs
                ));
            }
        }
        Ok(())
    }

    fn find(&self, name: &str, conns: usize) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.name == name && g.conns == conns)
    }
}

const LABELS: &[(&str, &str)] = &[
    ("ceiling", "bare tiny_http GET (ceiling)"),
    ("healthz", "GET /healthz (no auth, 1 read)"),
    ("status", "GET status"),
    ("setup", "POST setup"),
    ("verify", "POST verify (seeded challenge)"),
    ("refresh", "POST refresh (chained)"),
    ("login", "POST login (PBKDF2)"),
    ("pair", "login→verify pair"),
];

fn label(name: &str) -> &str {
    LABELS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, l)| l)
}

/// Login and login→verify pairs: PBKDF2-bound, reported apart from the rest.
fn pbkdf2_bound(name: &str) -> bool {
    matches!(name, "login" | "pair")
}

fn print_load_table(b: &Bench<'_>, slow: bool) {
    println!(
        "{:<31} {:>5}  {:<24} {:<21} {:<21} {:<21} {:>6}  {:>9}  {:>15}",
        "endpoint",
        "conns",
        "req/s med (min–max)",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "srv µs/rq",
        "cores s/g/k/o"
    );
    for g in b.groups.iter().filter(|g| pbkdf2_bound(g.name) == slow) {
        let (per, cores) = g.cpu();
        println!(
            "{:<31} {:>5}  {:<24} {:<21} {:<21} {:<21} {:>6}  {:>9}  {:>15}",
            label(g.name),
            g.conns,
            show(g.rate()),
            show(g.lat(0)),
            show(g.lat(1)),
            show(g.lat(2)),
            g.errors(),
            num(per.med),
            cores,
        );
        if g.runs.iter().any(|r| r.extra.is_some()) {
            println!(
                "{:<31} {:>5}  {:<24} {:<21} {:<21} {:<21}",
                "  └ its verify request alone",
                "",
                "",
                show(g.extra(0)),
                show(g.extra(1)),
                show(g.extra(2)),
            );
        }
    }
}

fn print_ratio_table(b: &Bench<'_>) {
    println!(
        "{:<31} {:>5}  {:>12}  {:>12}  {:>12}  {:>12}",
        "endpoint", "conns", "req/s ÷ ceil", "p50 × ceil", "p99 × ceil", "p99.9 × ceil"
    );
    for g in b.groups.iter().filter(|g| g.name != "ceiling") {
        let Some(c) = b.find("ceiling", g.conns) else {
            continue;
        };
        let r = |a: f64, b: f64| {
            if a.is_finite() && b.is_finite() && b > 0.0 {
                let x = a / b;
                if x > 0.0 && x < 0.001 {
                    format!("{x:.1e}")
                } else {
                    num(x)
                }
            } else {
                "-".into()
            }
        };
        println!(
            "{:<31} {:>5}  {:>12}  {:>12}  {:>12}  {:>12}",
            label(g.name),
            g.conns,
            r(g.rate().med, c.rate().med),
            r(g.lat(0).med, c.lat(0).med),
            r(g.lat(1).med, c.lat(1).med),
            r(g.lat(2).med, c.lat(2).med),
        );
    }
}

// ---------------------------------------------------------------------------------------
// The load section

struct LoadOut {
    mfad_hwm_kb: Option<u64>,
    bare_hwm_kb: Option<u64>,
    setup_body_bytes: Option<usize>,
    stop: Option<String>,
    hwm_after: Vec<(String, u64)>,
    /// Spawn → first 200 on the data directory the load left behind, and its size.
    start_loaded: Option<(Spread, u64)>,
}

fn load(opts: &Opts, b: &mut Bench<'_>) -> Res<LoadOut> {
    let mut out = LoadOut {
        mfad_hwm_kb: None,
        bare_hwm_kb: None,
        setup_body_bytes: None,
        stop: None,
        hwm_after: Vec::new(),
        start_loaded: None,
    };
    let mut none = |_: &RunResult| {};
    // The ceiling is measured before and after mfad, its runs pooled, so that a passing
    // disturbance weighs less on the ratios.
    let bare = if opts.want("ceiling") {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(["--bare-server", "--workers", &opts.workers.to_string()]);
        let (bare, _) = Proc::spawn(cmd, "bare listening on http://")?;
        eprintln!(
            "ceiling: bare tiny_http on {} (pid {})",
            bare.addr,
            bare.pid()
        );
        b.ceiling(&bare)?;
        Some(bare)
    } else {
        None
    };
    let mfad_sections = [
        "healthz", "status", "setup", "verify", "login", "refresh", "pair",
    ];
    if !mfad_sections.iter().any(|s| opts.want(s)) {
        if let Some(bare) = bare {
            out.bare_hwm_kb = proc_status_kb(bare.pid(), "VmHWM");
            bare.stop();
        }
        return Ok(out);
    }

    let tmp = tempfile::Builder::new()
        .prefix("mfad-loadgen-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let dir = tmp.path().join("data");
    eprintln!("seeding {} ...", dir.display());
    let mut seeder = Seeder::open(&dir)?;
    let (server, _) = spawn_mfad(&dir, opts.workers)?;
    let (addr, pid) = (server.addr, server.pid());
    eprintln!("mfad on {addr} (pid {pid}), {} workers", opts.workers);
    let result = (|| -> Res<()> {
        let hwm = |name: &str, out: &mut LoadOut| {
            if let Some(kb) = proc_status_kb(pid, "VmHWM") {
                out.hwm_after.push((name.to_string(), kb));
            }
        };
        // Bearer tokens from `mfad token`, one passwordless account per connection.
        let tokens: Vec<String> = (0..opts.max_conns())
            .map(|i| cli_token(&dir, &format!("user{i}@example.com")))
            .collect::<Res<_>>()?;
        // Sanity: the responses are what the workloads expect.
        let mut conn = Conn::new(addr);
        let setup_req = http_request("POST", "/api/v1/me/mfa/totp/setup", Some(&tokens[0]), None);
        match conn.request(&setup_req) {
            Ok(200) => {
                let v = conn.json().unwrap_or(Value::Null);
                let ok = ["secret", "otpauthUri", "qrCode"]
                    .iter()
                    .all(|k| v.get(k).is_some_and(Value::is_string));
                if !ok {
                    return Err(format!("setup answered an unexpected body: {v}"));
                }
                out.setup_body_bytes = Some(conn.body.len());
            }
            other => return Err(format!("setup answered {other:?}: {}", server.log_tail())),
        }
        hwm("start", &mut out);

        for (name, path) in [
            ("healthz", "/healthz"),
            ("status", "/api/v1/me/mfa/status"),
            ("setup", "/api/v1/me/mfa/totp/setup"),
        ] {
            if !opts.want(name) {
                continue;
            }
            let method = if name == "setup" { "POST" } else { "GET" };
            let reqs: Vec<Vec<u8>> = tokens
                .iter()
                .map(|t| {
                    let bearer = (name != "healthz").then_some(t.as_str());
                    http_request(method, path, bearer, None)
                })
                .collect();
            b.figure(
                name,
                addr,
                pid,
                true,
                &mut |n| {
                    Ok((0..n)
                        .map(|i| Box::new(Fixed(reqs[i % reqs.len()].clone())) as Box<dyn Job>)
                        .collect())
                },
                &mut none,
            )?;
            hwm(name, &mut out);
        }

        if opts.want("verify") {
            // Seeded per run: enough items for the last rate seen, with a margin.
            let rate = Cell::new(5000.0f64);
            let secs = opts.secs.max(opts.warmup);
            b.figure(
                "verify",
                addr,
                pid,
                true,
                &mut |n| {
                    let want = ((rate.get() * secs * 1.5) as usize + 8 * n + 200).min(300_000);
                    let items = Arc::new(Items {
                        list: seeder.totp_items(want, true)?,
                        next: AtomicUsize::new(0),
                    });
                    Ok((0..n)
                        .map(|_| Box::new(Verify(items.clone())) as Box<dyn Job>)
                        .collect())
                },
                &mut |r| {
                    if r.rate().is_finite() {
                        rate.set(rate.get().max(r.rate()));
                    }
                },
            )?;
            hwm("verify", &mut out);
        }

        let pool: TokenPool = Arc::new(Mutex::new(Vec::new()));
        if opts.want("login") || opts.want("refresh") {
            let emails = seeder.password_accounts(opts.max_conns())?;
            let login_jobs = |n: usize| -> Vec<Box<dyn Job>> {
                (0..n)
                    .map(|i| {
                        let body = serde_json::json!({ "email": emails[i % emails.len()], "password": PASSWORD });
                        Box::new(Login {
                            req: post_json("/api/auth", None, &body),
                            pool: pool.clone(),
                        }) as Box<dyn Job>
                    })
                    .collect()
            };
            if opts.want("login") {
                b.figure(
                    "login",
                    addr,
                    pid,
                    false,
                    &mut |n| Ok(login_jobs(n)),
                    &mut none,
                )?;
                hwm("login", &mut out);
            }
            if opts.want("refresh") {
                // Every connection needs a refresh token to start its chain.
                let have = pool.lock().map_or(0, |p| p.len());
                if have < opts.max_conns() {
                    let need = opts.max_conns() - have;
                    eprintln!("  logging in {need} times for refresh tokens ...");
                    let mut jobs = login_jobs(need.min(8));
                    let mut conn = Conn::new(addr);
                    let mut scratch = Vec::new();
                    for i in 0..need * 2 {
                        if pool.lock().map_or(0, |p| p.len()) >= opts.max_conns() {
                            break;
                        }
                        let j = i % jobs.len();
                        if let Outcome::Bad(e) | Outcome::Io(e) =
                            jobs[j].once(&mut conn, &mut scratch)
                        {
                            return Err(format!("login for refresh tokens: {e}"));
                        }
                    }
                }
                b.figure(
                    "refresh",
                    addr,
                    pid,
                    true,
                    &mut |n| {
                        Ok((0..n)
                            .map(|_| {
                                Box::new(Refresh {
                                    token: None,
                                    pool: pool.clone(),
                                }) as Box<dyn Job>
                            })
                            .collect())
                    },
                    &mut none,
                )?;
                hwm("refresh", &mut out);
            }
        }

        if opts.want("pair") {
            let rate = Cell::new(15.0f64);
            let secs = opts.secs;
            b.figure(
                "pair",
                addr,
                pid,
                false,
                &mut |n| {
                    let want = (rate.get() * secs * 2.0) as usize + 2 * n + 20;
                    let items = Arc::new(Items {
                        list: seeder.totp_items(want, false)?,
                        next: AtomicUsize::new(0),
                    });
                    Ok((0..n)
                        .map(|_| {
                            Box::new(Pair {
                                items: items.clone(),
                                pool: pool.clone(),
                            }) as Box<dyn Job>
                        })
                        .collect())
                },
                &mut |r| {
                    if r.rate().is_finite() {
                        rate.set(rate.get().max(r.rate()));
                    }
                },
            )?;
            hwm("pair", &mut out);
        }
        Ok(())
    })();
    out.mfad_hwm_kb = proc_status_kb(pid, "VmHWM");
    let code_errors = b
        .groups
        .iter()
        .filter(|g| matches!(g.name, "verify" | "pair"))
        .any(|g| g.errors() > 0);
    if code_errors {
        b.notes.push(format!(
            "audit events in mfad's database (why verify refused): {}",
            seeder.audit_summary()
        ));
        for (email, step) in REFUSED.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            b.notes.push(format!(
                "refused: {email}, code of step {step}: {}",
                seeder.account_state(email)
            ));
        }
    }
    if let Err(e) = result {
        return Err(format!("{e}\nmfad stderr:\n{}", server.log_tail()));
    }
    let tail = server.log_tail();
    out.stop = Some(server.stop());
    if opts.want("start") {
        // mfad checks the database at start (PRAGMA quick_check): a bigger file, a
        // slower start.
        let bytes: u64 = ["mfad.db", "mfad.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum();
        let mut v = Vec::new();
        for _ in 0..opts.runs.min(3) {
            v.push(start_once(&dir)?.1);
        }
        out.start_loaded = Some((spread(&v), bytes));
    }
    if let Some(bare) = bare {
        eprintln!("ceiling again ...");
        b.ceiling(&bare)?;
        out.bare_hwm_kb = proc_status_kb(bare.pid(), "VmHWM");
        bare.stop();
    }
    // Warnings and errors only (journald priorities 0 to 4), not an access log that
    // --serve-arg may have turned on.
    let serious: Vec<&str> = tail
        .lines()
        .filter(|l| matches!(l.get(..3), Some("<0>" | "<1>" | "<2>" | "<3>" | "<4>")))
        .collect();
    if !serious.is_empty() {
        b.notes.push(format!(
            "mfad's last warnings and errors on stderr:\n    {}",
            serious.join("\n    ")
        ));
    }
    Ok(out)
}

fn fixed_jobs(req: &[u8], n: usize) -> Vec<Box<dyn Job>> {
    (0..n)
        .map(|_| Box::new(Fixed(req.to_vec())) as Box<dyn Job>)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Start-up

/// Spawn → the "listening" line, and spawn → the first 200 from /healthz.
fn start_once(dir: &Path) -> Res<(f64, f64)> {
    let t0 = Instant::now();
    let (server, listening) = spawn_mfad(dir, default_workers())?;
    let req = http_request("GET", "/healthz", None, None);
    let mut conn = Conn::new(server.addr);
    let first = loop {
        if let Ok(200) = conn.request(&req) {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("no 200 from /healthz within 10 s of spawning".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    drop(conn);
    server.stop();
    Ok((ms(listening), ms(first)))
}

struct StartOut {
    fresh: (Spread, Spread),
    again: (Spread, Spread),
}

fn start_times(opts: &Opts) -> Res<StartOut> {
    let (mut fl, mut ff, mut al, mut af) = (vec![], vec![], vec![], vec![]);
    for _ in 0..opts.runs {
        let tmp = tempfile::Builder::new()
            .prefix("mfad-loadgen-start-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let dir = tmp.path().join("data");
        let (l, f) = start_once(&dir)?;
        fl.push(l);
        ff.push(f);
        let (l, f) = start_once(&dir)?;
        al.push(l);
        af.push(f);
    }
    Ok(StartOut {
        fresh: (spread(&fl), spread(&ff)),
        again: (spread(&al), spread(&af)),
    })
}

// ---------------------------------------------------------------------------------------
// In process: TOTP check + replay write

/// Steps the in-process clock moves per call. One is not enough: `totp::verify` returns
/// the earliest step in its window whose code matches, and one code in a million of the
/// current step equals the previous step's, which was accepted just before, so a run of
/// a million calls would see a refusal. With three, the whole window is past every step
/// accepted so far.
const CLOCK_STRIDE: u64 = 3;

struct InprocOut {
    /// µs per call: unseal, totp::verify, accept_step write, all three; then the write
    /// again with SQLite's automatic checkpoints off.
    stages: [Spread; 5],
    /// (threads, writes/s) for verify + accept_step on several threads.
    threads: Vec<(usize, Spread)>,
}

fn inproc(opts: &Opts) -> Res<InprocOut> {
    let tmp = tempfile::Builder::new()
        .prefix("mfad-loadgen-inproc-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let inst = instance_for(&tmp.path().join("data"))?;
    let now = unix_now();
    let new_account = |db: &Db, n: usize| -> Res<(i64, Vec<u8>, [u8; 20])> {
        let secret: [u8; 20] = crypto::random().map_err(|e| e.to_string())?;
        let salt: [u8; 16] = crypto::random().map_err(|e| e.to_string())?;
        let keys = &inst.keys;
        db.write(|c| {
            let id = store::create_account(c, &format!("inproc{n}@bench.test"), None, now as i64)?
                .ok_or(mfad::error::Error::Internal)?;
            let sealed = keys.seal(&secret, id)?;
            store::set_pending_secret(c, id, &sealed)?;
            store::activate_secret(c, id, &sealed, 0, &salt, now as i64)?;
            Ok((id, sealed, secret))
        })
        .map_err(db_err)
    };
    let secs = opts.secs.min(2.0);
    let max_calls = 2_000_000usize;
    let db = inst.dbs.open()?;
    let (id, sealed, secret) = new_account(&db, 0)?;
    // The clock starts now and moves CLOCK_STRIDE steps per call, so that every call's
    // step is fresh and accepted.
    let mut t = now;
    let mut samples: [Vec<f64>; 5] = Default::default();
    for _ in 0..opts.runs {
        let mut sums = [Duration::ZERO; 3];
        let mut calls = 0usize;
        let start = Instant::now();
        while calls < max_calls && start.elapsed().as_secs_f64() < secs {
            t += CLOCK_STRIDE * totp::PERIOD;
            let code = totp::code_for_step(&secret, totp::step_at(t));
            let t0 = Instant::now();
            let key = inst.keys.open(&sealed, id).map_err(|e| e.to_string())?;
            let t1 = Instant::now();
            let step = totp::verify(key.expose(), &code, t).ok_or("verify refused a right code")?;
            let t2 = Instant::now();
            let fresh = db
                .write(|c| Ok(store::accept_step(c, id, step as i64)?))
                .map_err(db_err)?;
            let t3 = Instant::now();
            if !fresh {
                return Err("accept_step refused a fresh step".into());
            }
            sums[0] += t1 - t0;
            sums[1] += t2 - t1;
            sums[2] += t3 - t2;
            calls += 1;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
        for (s, d) in samples.iter_mut().zip(sums) {
            s.push(per(d));
        }
        samples[3].push(per(sums[0] + sums[1] + sums[2]));
    }
    // The same write without the checkpoint that SQLite runs inside every ~1000th
    // page's commit: what moving checkpoints off the request path would save.
    let set_autocheckpoint =
        |db: &Db, pages: u32| db.set_autocheckpoint(pages).map_err(|e| e.to_string());
    set_autocheckpoint(&db, 0)?;
    for _ in 0..opts.runs {
        let mut sum = Duration::ZERO;
        let mut calls = 0usize;
        let start = Instant::now();
        while calls < max_calls && start.elapsed().as_secs_f64() < secs {
            t += CLOCK_STRIDE * totp::PERIOD;
            let step = totp::step_at(t) as i64;
            let t0 = Instant::now();
            let fresh = db
                .write(|c| Ok(store::accept_step(c, id, step)?))
                .map_err(db_err)?;
            sum += t0.elapsed();
            if !fresh {
                return Err("accept_step refused a fresh step".into());
            }
            calls += 1;
        }
        samples[4].push(sum.as_secs_f64() * 1e6 / calls.max(1) as f64);
    }
    set_autocheckpoint(&db, 1000)?;
    let stages = [0, 1, 2, 3, 4].map(|i| spread(&samples[i]));

    // Several threads, each with its own account, sharing one Db as mfad's workers do
    // (one connection, group commit): how far the replay write scales.
    let mut threads = Vec::new();
    for n in [1usize, 2, 8] {
        let mut rates = Vec::new();
        for run in 0..opts.runs {
            let mut accounts = Vec::new();
            for i in 0..n {
                accounts.push(new_account(&db, 1000 * (run + 1) + 100 * n + i)?);
            }
            let barrier = Barrier::new(n);
            let total = AtomicUsize::new(0);
            let begin = Instant::now();
            std::thread::scope(|s| {
                for (id, sealed, secret) in accounts {
                    let (inst, db, barrier, total) = (&inst, &db, &barrier, &total);
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let mut t = now;
                        let mut calls = 0usize;
                        while calls < max_calls && start.elapsed().as_secs_f64() < secs {
                            t += CLOCK_STRIDE * totp::PERIOD;
                            let code = totp::code_for_step(&secret, totp::step_at(t));
                            let Ok(key) = inst.keys.open(&sealed, id) else {
                                break;
                            };
                            let Some(step) = totp::verify(key.expose(), &code, t) else {
                                break;
                            };
                            match db.write(|c| Ok(store::accept_step(c, id, step as i64)?)) {
                                Ok(true) => calls += 1,
                                _ => break,
                            }
                        }
                        total.fetch_add(calls, Ordering::Relaxed);
                    });
                }
            });
            rates.push(total.load(Ordering::Relaxed) as f64 / begin.elapsed().as_secs_f64());
        }
        threads.push((n, spread(&rates)));
    }
    Ok(InprocOut { stages, threads })
}

// ---------------------------------------------------------------------------------------
// In process: the setup pipeline, and its peers

/// One setup response's worth of work, as the endpoint does it (without the database).
fn pipeline_once(stages: &mut [Duration; 4]) -> Res<(usize, usize)> {
    let t0 = Instant::now();
    let secret: [u8; 20] = crypto::random().map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let encoded = BASE32_NOPAD.encode(&secret);
    let uri = totp::otpauth_uri(ISSUER, "user@example.com", &encoded);
    let t2 = Instant::now();
    let png = qr::otpauth_png(&uri).map_err(|e| format!("QR: {e}"))?;
    let t3 = Instant::now();
    let mut data = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    data.push_str("data:image/png;base64,");
    data.push_str(&BASE64.encode(&png));
    let body =
        serde_json::json!({ "secret": encoded, "otpauthUri": uri, "qrCode": data }).to_string();
    let t4 = Instant::now();
    stages[0] += t1 - t0;
    stages[1] += t2 - t1;
    stages[2] += t3 - t2;
    stages[3] += t4 - t3;
    Ok((png.len(), std::hint::black_box(body).len()))
}

struct Peer {
    name: &'static str,
    /// µs per call, or why it was not run.
    result: Result<Spread, String>,
}

struct PipelineOut {
    /// µs per call: random, base32 + URI, QR PNG, base64 + JSON, total.
    stages: [Spread; 5],
    png_bytes: usize,
    body_bytes: usize,
    peers: Vec<Peer>,
}

fn pipeline(opts: &Opts) -> Res<PipelineOut> {
    let secs = opts.secs.min(2.0);
    let mut samples: [Vec<f64>; 5] = Default::default();
    let (mut png_bytes, mut body_bytes) = (0, 0);
    let mut warm = [Duration::ZERO; 4];
    for _ in 0..50 {
        pipeline_once(&mut warm)?;
    }
    for _ in 0..opts.runs {
        let mut st = [Duration::ZERO; 4];
        let mut calls = 0usize;
        let start = Instant::now();
        while calls < 1_000_000 && start.elapsed().as_secs_f64() < secs {
            (png_bytes, body_bytes) = pipeline_once(&mut st)?;
            calls += 1;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
        for (s, d) in samples.iter_mut().zip(st) {
            s.push(per(d));
        }
        samples[4].push(per(st.iter().sum()));
    }
    let stages = [0, 1, 2, 3, 4].map(|i| spread(&samples[i]));
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let peer_secs = format!("{:.1}", secs.min(1.5));
    let mut peers = Vec::new();

    let py = Command::new("python3")
        .args(["-c", "import pyotp, qrcode, PIL"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let result = match py {
        Err(_) => Err("not found (no python3 on PATH)".to_string()),
        Ok(s) if !s.success() => Err("not found (python3 lacks pyotp, qrcode or PIL)".into()),
        Ok(_) => run_peer(opts.runs, || {
            let mut c = Command::new("python3");
            c.arg(peers_dir.join("setup_pipeline.py"))
                .args([peer_secs.as_str(), "5000"]);
            c
        }),
    };
    peers.push(Peer {
        name: "python3 pyotp+qrcode (PIL)",
        result,
    });

    // Node finds `qrcode` beside the script, up the tree, or on NODE_PATH; add the
    // global modules folder too, where `npm install -g qrcode` puts it.
    let mut node_path: Vec<OsString> = std::env::var_os("NODE_PATH").into_iter().collect();
    if let Ok(o) = Command::new("npm").args(["root", "-g"]).output() {
        if o.status.success() {
            node_path.push(String::from_utf8_lossy(&o.stdout).trim().into());
        }
    }
    let node_path = std::env::join_paths(node_path).unwrap_or_default();
    let node = Command::new("node")
        .args(["-e", "require('qrcode')"])
        .current_dir(&peers_dir)
        .env("NODE_PATH", &node_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let result = match node {
        Err(_) => Err("not found (no node on PATH)".to_string()),
        Ok(s) if !s.success() => Err("not found (node lacks the qrcode package)".into()),
        Ok(_) => run_peer(opts.runs, || {
            let mut c = Command::new("node");
            c.arg(peers_dir.join("setup_pipeline.js"))
                .args([peer_secs.as_str(), "5000"])
                .current_dir(&peers_dir)
                .env("NODE_PATH", &node_path);
            c
        }),
    };
    peers.push(Peer {
        name: "node qrcode",
        result,
    });
    Ok(PipelineOut {
        stages,
        png_bytes,
        body_bytes,
        peers,
    })
}

/// Runs a peer script `runs` times; each prints `us_per_call=X ...`.
fn run_peer(runs: usize, cmd: impl Fn() -> Command) -> Result<Spread, String> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let out = cmd()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("failed to run: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let us = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("us_per_call="))
            .and_then(|x| x.parse::<f64>().ok());
        match us {
            Some(us) if out.status.success() => v.push(us),
            _ => {
                return Err(format!(
                    "failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
    Ok(spread(&v))
}

// ---------------------------------------------------------------------------------------
// The whole run

fn run(opts: &Opts) -> Res<()> {
    let t_all = Instant::now();
    let bin = mfad_bin();
    let bin_size = std::fs::metadata(&bin)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "mfad loadgen — {} mode",
        if opts.quick { "quick" } else { "full" }
    );
    println!(
        "machine: {cores} cores (generator and server share them); mfad --workers {} \
         (bare tiny_http the same); {} runs × {} s per figure, warm-up {} s; connections {:?}",
        opts.workers, opts.runs, opts.secs, opts.warmup, opts.conns
    );
    println!(
        "binary: {} (serve flags: --login-rate 0; logging at the default level, info, \
         one access line per request read by this generator as journald would)",
        bin.display()
    );
    let extra = SERVE_ARGS.lock().map(|a| a.join(" ")).unwrap_or_default();
    if !extra.is_empty() {
        println!("extra mfad serve flags: {extra}");
    }
    let other = other_load(0.5);
    println!(
        "other processes keep {other:.2} cores busy at the start{}",
        if other > 0.2 {
            " — the machine is not idle: expect lower, noisier figures"
        } else {
            ""
        }
    );
    println!();

    let start = if opts.want("start") {
        eprintln!("start-up ...");
        Some(start_times(opts)?)
    } else {
        None
    };

    let mut b = Bench {
        opts,
        groups: Vec::new(),
        notes: Vec::new(),
    };
    let load_out = load(opts, &mut b)?;
    let inproc_out = if opts.want("inproc") {
        eprintln!("in-process verify + accept_step ...");
        Some(inproc(opts)?)
    } else {
        None
    };
    let pipe = if opts.want("pipeline") {
        eprintln!("setup pipeline and peers ...");
        Some(pipeline(opts)?)
    } else {
        None
    };

    // ---- report
    if !b.groups.is_empty() {
        println!("== HTTP load (closed loop, keep-alive; latency per request) ==");
        print_load_table(&b, false);
        if b.groups.iter().any(|g| pbkdf2_bound(g.name)) {
            println!();
            println!(
                "== HTTP load, PBKDF2-bound: login (600,000 rounds) and login→verify pairs =="
            );
            print_load_table(&b, true);
        }
        println!(
            "srv µs/rq: server CPU time per answered request (or pair). cores s/g/k/o: CPU \
             cores busy in the server / this generator / interrupts (mostly loopback TCP; \
             partly counted in s and g too) / other processes and steal (medians)."
        );
        println!();
        if b.groups.iter().any(|g| g.name == "ceiling") {
            println!("== Ratio to the ceiling at the same connection count (medians; the ceiling's runs \
             were made before and after mfad's and pooled) ==");
            print_ratio_table(&b);
            println!();
        }
    }
    let verify_ran = b.groups.iter().any(|g| matches!(g.name, "verify" | "pair"));
    if verify_ran || inproc_out.is_some() {
        println!("== Verify path: what was measured ==");
    }
    if verify_ran {
        println!(
            "POST verify: the real endpoint and its whole write transaction (replay check \
         UPDATE, challenge DELETE, token issue, refresh-token INSERT); each request has \
         its own challenge and an unused step of its account. The challenges and TOTP \
         accounts are written into the database by this bench, as login and enable \
         would, because minting them through login costs a PBKDF2 (600,000 rounds) each."
        );
        println!(
            "login→verify pair: the same thing end to end through login; bound by the PBKDF2. \
             \"its verify request alone\" is the verify's own latency within the pair: it \
             waits for a worker behind the logins queued before it."
        );
    }
    if let Some(ip) = &inproc_out {
        println!("in process (mfad::totp::verify + mfad::store::accept_step on one Db, the clock advanced 3 steps per call):");
        for (name, s) in [
            "unseal secret (AES-GCM)",
            "totp::verify (3 HMAC-SHA1)",
            "accept_step write (1 tx)",
            "total",
            "accept_step, autocheckpoint off",
        ]
        .iter()
        .zip(ip.stages)
        {
            println!("  {name:<40} {:>26} µs/call", show(s));
        }
        for (n, s) in &ip.threads {
            let name = format!(
                "{n} thread{}, one shared Db",
                if *n == 1 { "" } else { "s" }
            );
            println!("  {name:<40} {:>26} checks+writes/s", show(*s));
        }
    }
    println!();

    if let Some(p) = &pipe {
        println!("== Setup pipeline in process (secret → base32 → otpauth URI → QR PNG → base64 → JSON) ==");
        for (name, s) in [
            "random 160-bit secret",
            "base32 + otpauth URI",
            "QR PNG (qr::otpauth_png)",
            "base64 + JSON",
            "total",
        ]
        .iter()
        .zip(p.stages)
        {
            println!("  {name:<40} {:>26} µs/call", show(s));
        }
        println!("peers (same pipeline, timed inside the script; ratio = peer ÷ mfad):");
        for peer in &p.peers {
            match &peer.result {
                Ok(s) => println!(
                    "  {:<40} {:>26} µs/call   {}× mfad",
                    peer.name,
                    show(*s),
                    num(s.med / p.stages[4].med)
                ),
                Err(why) => println!("  {:<40} {why}", peer.name),
            }
        }
        println!();
    }

    println!("== Sizes, start-up, memory ==");
    println!(
        "release binary: {} bytes ({:.2} MB)",
        bin_size,
        bin_size as f64 / 1e6
    );
    if let Some(p) = &pipe {
        println!(
            "QR PNG for a typical URI: {} bytes; setup JSON body in process: {} bytes",
            p.png_bytes, p.body_bytes
        );
    }
    if let Some(n) = load_out.setup_body_bytes {
        println!("setup response body over HTTP: {n} bytes");
    }
    if let Some(s) = &start {
        println!(
            "start, fresh data dir (creates key + schema): spawn → listening line {} ms, spawn → first 200 /healthz {} ms",
            show(s.fresh.0),
            show(s.fresh.1)
        );
        println!(
            "start, existing data dir:                      spawn → listening line {} ms, spawn → first 200 /healthz {} ms",
            show(s.again.0),
            show(s.again.1)
        );
    }
    if let Some((s, bytes)) = &load_out.start_loaded {
        println!(
            "start, the data dir left by the load ({:.1} MB):   spawn → first 200 /healthz {} ms",
            *bytes as f64 / 1e6,
            show(*s)
        );
    }
    if let Some(kb) = load_out.mfad_hwm_kb {
        println!(
            "mfad peak RSS (VmHWM) after all load: {:.1} MB",
            kb as f64 / 1024.0
        );
        let steps: Vec<String> = load_out
            .hwm_after
            .iter()
            .map(|(n, kb)| format!("{n} {:.1}", *kb as f64 / 1024.0))
            .collect();
        println!("  VmHWM (MB) after each section: {}", steps.join(", "));
    }
    if let Some(kb) = load_out.bare_hwm_kb {
        println!("bare tiny_http peak RSS: {:.1} MB", kb as f64 / 1024.0);
    }
    if let Some(s) = &load_out.stop {
        println!("mfad stop: {s}");
    }
    println!();

    println!("== Against the team's targets (information only) ==");
    let at = |name: &str| b.find(name, opts.max_conns());
    let c = opts.max_conns();
    let rate_line = |name: &str, what: &str, target: f64| {
        if let Some(g) = at(name) {
            let m = g.rate().med;
            println!(
                "  {what:<44} {:>10} req/s at {c} conns   target ≥ {target:.0}   {}",
                num(m),
                if m >= target { "met" } else { "not met" }
            );
        }
    };
    rate_line("setup", "setup", 8000.0);
    rate_line("verify", "verify with replay write (HTTP)", 20000.0);
    rate_line("status", "status", 35000.0);
    let p99s: Vec<(&str, f64)> = b
        .groups
        .iter()
        .filter(|g| g.conns == c && !matches!(g.name, "ceiling" | "login" | "pair"))
        .map(|g| (g.name, g.lat(1).med))
        .collect();
    if let Some((name, worst)) = p99s.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)) {
        println!(
            "  {:<44} {:>10} ms ({name})          target ≤ 10     {}",
            format!("worst p99 at {c} conns (login, pairs aside)"),
            num(worst),
            if worst <= 10.0 { "met" } else { "not met" }
        );
    }
    if let Some(kb) = load_out.mfad_hwm_kb {
        let mb = kb as f64 / 1024.0;
        println!(
            "  {:<44} {:>10} MB                    target ≤ 30     {}",
            "peak RSS",
            num(mb),
            if mb <= 30.0 { "met" } else { "not met" }
        );
    }
    if let Some(s) = &start {
        let m = s.again.1.med;
        println!(
            "  {:<44} {:>10} ms                    target ≤ 50     {}",
            "start to first answer (existing data dir)",
            num(m),
            if m <= 50.0 { "met" } else { "not met" }
        );
    }
    let mb = bin_size as f64 / 1e6;
    println!(
        "  {:<44} {:>10} MB                    target ≤ 8      {}",
        "binary size",
        num(mb),
        if mb <= 8.0 { "met" } else { "not met" }
    );
    println!();
    if !b.notes.is_empty() {
        println!("== Notes ==");
        for n in &b.notes {
            println!("  {n}");
        }
        println!();
    }
    println!("total time: {:.0} s", t_all.elapsed().as_secs_f64());
    Ok(())
}
