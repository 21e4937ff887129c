//! One load run: one thread and connection per job, a barrier, a deadline, and the
//! latency percentiles and CPU use that came of it.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::client::Conn;
use crate::jobs::{Job, Outcome};
use crate::procfs::{cpu_seconds, machine_cpu};
use crate::stats::percentile;

/// At most this many requests per run over all connections (a bound, never reached at
/// the rates seen here).
pub(crate) const MAX_REQUESTS_PER_RUN: usize = 3_000_000;

#[derive(Clone, Debug, Default)]
pub(crate) struct RunResult {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed: f64,
    /// Latency percentiles in ms: p50, p99, p99.9.
    pub(crate) lat: [f64; 3],
    /// The slowest unit, ms.
    pub(crate) max_ms: f64,
    /// Percentiles of the second latency, where the job records one.
    pub(crate) extra: Option<[f64; 3]>,
    /// CPU seconds used by the server, by this generator and by the whole machine
    /// during the run.
    pub(crate) srv_cpu: f64,
    pub(crate) gen_cpu: f64,
    pub(crate) all_cpu: f64,
    /// CPU seconds in interrupts (mostly loopback TCP) during the run.
    pub(crate) irq_cpu: f64,
    /// Work ran out before the time did.
    pub(crate) exhausted: bool,
    /// Requests resent on a new connection (see `Conn::request`).
    pub(crate) resent: u64,
}

impl RunResult {
    pub(crate) fn rate(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.ok as f64 / self.elapsed
        } else {
            f64::NAN
        }
    }
}

pub(crate) fn pcts(mut v: Vec<u64>) -> [f64; 3] {
    v.sort_unstable();
    [50.0, 99.0, 99.9].map(|p| percentile(&v, p) as f64 / 1e6)
}

pub(crate) struct ThreadOut {
    pub(crate) lat: Vec<u64>,
    pub(crate) extra: Vec<u64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) end: Instant,
    pub(crate) exhausted: bool,
    pub(crate) resent: u64,
}

/// A load connection. The read timeout is generous: a login queued behind 63 others
/// takes seconds.
pub(crate) fn connection(addr: SocketAddr) -> Conn {
    Conn::new(addr, Duration::from_secs(60))
}

/// Runs `jobs` (one connection each) against `addr` for `secs` seconds; a unit started
/// before the deadline is finished. Connecting is not timed.
pub(crate) fn run_load(
    addr: SocketAddr,
    jobs: Vec<Box<dyn Job>>,
    secs: f64,
    server_pid: u32,
) -> RunResult {
    let n = jobs.len().max(1);
    let per_thread = MAX_REQUESTS_PER_RUN / n;
    let barrier = Arc::new(Barrier::new(n + 1));
    let (srv, me) = (server_pid.to_string(), "self".to_string());
    let mut handles = Vec::with_capacity(n);
    for mut job in jobs {
        let barrier = barrier.clone();
        handles.push(std::thread::spawn(move || {
            let mut conn = connection(addr);
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
