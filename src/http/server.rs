//! The running server: the listening socket and the vendored HTTP layer's options, the
//! worker threads, the password lane, the shutdown that drains them, and the metrics
//! listener apart. Each request is answered by `mod.rs` ([`answer`], [`respond`]) and
//! counted in the metrics here.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Request, Response};

use super::{answer, clean_path, client_ip, log_safe, respond, CommonHeaders, Route, ROUTE_NAMES};
use crate::error::Error;
use crate::metrics::METRICS;
use crate::service::App;
use crate::web::WebPolicy;

/// A request handed from a worker to the slow lane.
struct SlowJob {
    rq: Request,
    path: String,
    route: Route,
    started: Instant,
}

/// A client address for the access log (`-` when the socket had none).
struct Client(Option<std::net::IpAddr>);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Counts one answered request in the metrics.
fn record(route: Route, status: u16, started: Instant) {
    METRICS.request(route.metrics(), status, started.elapsed().as_secs_f64());
}

/// Handles one request and writes the access line.
fn serve_one(shared: &Shared, mut rq: Request, path: &str, route: Route, started: Instant) {
    let method = log_safe(rq.method().as_str());
    let ip = client_ip(&shared.web, &rq);
    let result = answer(&shared.app, &shared.web, &mut rq, path, route, ip);
    let status = respond(rq, &shared.common, &shared.web, &result);
    record(route, status, started);
    log::info!(
        target: crate::log::ACCESS,
        "{} {method} {path} {status} {:.1}ms",
        Client(ip),
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// The context every request thread shares.
struct Shared {
    server: Arc<tiny_http::Server>,
    app: Arc<App>,
    common: CommonHeaders,
    web: WebPolicy,
    stopping: AtomicBool,
}

fn worker(shared: Arc<Shared>, slow: mpsc::SyncSender<SlowJob>) {
    let mut draining_since: Option<Instant> = None;
    loop {
        // Polling with a timeout rather than `unblock()`: at shutdown every request
        // already queued is still answered, and a worker leaves once the queue has been
        // empty for a moment — or after SHUTDOWN_DRAIN, so a busy client cannot hold a
        // shutdown open.
        if shared.stopping.load(Ordering::SeqCst) {
            let since = *draining_since.get_or_insert_with(Instant::now);
            if since.elapsed() > SHUTDOWN_DRAIN {
                break;
            }
        }
        let rq = match shared.server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(rq)) => rq,
            Ok(None) if shared.stopping.load(Ordering::SeqCst) => break,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("receiving a request failed: {e}");
                continue;
            }
        };
        let started = Instant::now();
        let path = clean_path(rq.url());
        let route = Route::of(&path);
        let rq = if route.is_slow(rq.method()) {
            let job = SlowJob {
                rq,
                path,
                route,
                started,
            };
            match slow.try_send(job) {
                Ok(()) => continue,
                Err(mpsc::TrySendError::Full(job) | mpsc::TrySendError::Disconnected(job)) => {
                    let status = respond(job.rq, &shared.common, &shared.web, &Err(Error::Busy));
                    record(job.route, status, job.started);
                    log::info!(
                        target: crate::log::ACCESS,
                        "POST {} {status} (password checks queue full)",
                        job.path
                    );
                    continue;
                }
            }
        } else {
            rq
        };
        serve_one(&shared, rq, &path, route, started);
    }
}

/// The slow lane: password checks run here, on as many threads as there are cores and
/// at a lower CPU priority, so that a burst of logins never leaves the workers busy —
/// every other request still finds a worker and a core at once. Ends when every worker
/// has gone and the queue is empty.
fn slow_lane_loop(shared: Arc<Shared>, jobs: Arc<std::sync::Mutex<mpsc::Receiver<SlowJob>>>) {
    // SAFETY: setpriority on this thread (Linux: the nice value is per thread).
    let rc = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            SLOW_LANE_NICE,
        )
    };
    if rc != 0 {
        // A seccomp filter (systemd's @resources group) or a container may forbid it;
        // password checks then compete with every other request at the same priority.
        log::warn!(
            "setpriority failed ({}): password checks run at the workers' priority",
            std::io::Error::last_os_error()
        );
    }
    let mut draining_since: Option<Instant> = None;
    loop {
        let job = match jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv()
        {
            Ok(job) => job,
            Err(mpsc::RecvError) => break,
        };
        if shared.stopping.load(Ordering::SeqCst) {
            // The workers drained for up to SHUTDOWN_DRAIN already: do not add seconds
            // of password hashing to the stop.
            let since = *draining_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(1) {
                let status = respond(job.rq, &shared.common, &shared.web, &Err(Error::Busy));
                record(job.route, status, job.started);
                continue;
            }
        }
        serve_one(&shared, job.rq, &job.path, job.route, job.started);
    }
}

/// The slow lane's nice value: lower priority than the workers.
const SLOW_LANE_NICE: libc::c_int = 5;
/// Password checks that may wait per slow-lane thread (about 6 s of work each); beyond
/// them a login gets 503 with `Retry-After` rather than a long wait.
const SLOW_QUEUE_PER_THREAD: usize = 32;

/// The longest a shutdown keeps answering queued requests.
pub(crate) const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// A running server.
pub struct Running {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    slow_lane: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    /// The connections open on the listener, as the HTTP layer counts them.
    open_connections: Arc<AtomicUsize>,
}

impl Running {
    /// The address actually bound (the port is known even for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the HTTP layer counts the open connections (for the metrics).
    pub fn open_connections(&self) -> Arc<AtomicUsize> {
        self.open_connections.clone()
    }

    /// Answers what is queued and in flight (for at most [`SHUTDOWN_DRAIN`]), stops the
    /// workers, closes the listening socket and returns.
    pub fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
        // The workers' senders are gone: the slow lane finishes its queue and ends.
        for t in self.slow_lane {
            let _ = t.join();
        }
        // The last reference: tiny_http stops accepting and closes the listener.
        drop(self.shared);
    }
}

/// How long a connection may sit without sending a byte (idle keep-alive included), and
/// how long an answer may wait for a client that does not read it.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request head (and a body up to [`super::MAX_BODY`]) must arrive within this time of its
/// first byte: a client trickling bytes is cut off with 408.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(20);
/// The request line at most this long (414 beyond); the target of every mfad endpoint is
/// under 50 bytes.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// The header section at most this long (431 beyond): a bearer token, a few ordinary
/// headers and a proxy's additions fit many times over.
const MAX_HEADER_SECTION: usize = 16 * 1024;

/// What the command line may change about the HTTP layer; `None` takes the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// [`SOCKET_TIMEOUT`] unless set (tests set it short).
    pub socket_timeout: Option<Duration>,
    /// [`REQUEST_DEADLINE`] unless set (tests set it short).
    pub request_deadline: Option<Duration>,
}

/// The vendored layer's options: mfad's limits, and its answers to malformed requests in
/// the shape of every other error (API.md: a JSON `error`, the common headers).
fn layer_options(
    limits: Limits,
    common: &CommonHeaders,
    open_connections: Arc<AtomicUsize>,
) -> tiny_http::Options {
    tiny_http::Options {
        request_line: MAX_REQUEST_LINE,
        header_section: MAX_HEADER_SECTION,
        request_deadline: limits.request_deadline.unwrap_or(REQUEST_DEADLINE),
        socket_timeout: Some(limits.socket_timeout.unwrap_or(SOCKET_TIMEOUT)),
        error_headers: common.headers.clone(),
        error_body: layer_error_body,
        open_connections,
    }
}

/// The body of an answer the HTTP layer writes itself, before mfad sees a request.
fn layer_error_body(status: tiny_http::StatusCode) -> Vec<u8> {
    let sentence = match status.0 {
        400 => "Malformed request.",
        408 => "The request took too long to arrive.",
        414 => "The request line is too long.",
        417 => "Unsupported expectation.",
        431 => "The request headers are too large.",
        505 => "Only HTTP/1.0 and HTTP/1.1 are supported.",
        _ => "Internal error.",
    };
    serde_json::json!({ "error": sentence })
        .to_string()
        .into_bytes()
}

/// `TCP_NODELAY` on the listening socket, which Linux copies to every accepted socket:
/// an answer and a `100 Continue` are separate writes, and without it the second waited
/// ~40 ms for a delayed ACK on a keep-alive connection.
fn set_socket_options(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd, a pointer to a live value and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Binds `listen` and starts `workers` workers sharing `app`, and the slow lane.
pub fn start(
    listen: SocketAddr,
    app: Arc<App>,
    workers: usize,
    limits: Limits,
    web: WebPolicy,
) -> Result<Running, String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    set_socket_options(&listener).map_err(|e| format!("cannot set socket options: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let common = CommonHeaders::new(&app.rp.name, &web)?;
    let open_connections = Arc::new(AtomicUsize::new(0));
    let options = layer_options(limits, &common, open_connections.clone());
    let server = Arc::new(
        tiny_http::Server::from_listener_with(listener, None, options)
            .map_err(|e| format!("cannot start the HTTP server: {e}"))?,
    );
    let shared = Arc::new(Shared {
        server,
        app,
        common,
        web,
        stopping: AtomicBool::new(false),
    });
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (slow, slow_jobs) = mpsc::sync_channel(SLOW_QUEUE_PER_THREAD * lanes);
    let slow_jobs = Arc::new(std::sync::Mutex::new(slow_jobs));
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map_err(|e| format!("cannot start a thread: {e}"))
    };
    let mut slow_lane = Vec::with_capacity(lanes);
    for i in 0..lanes {
        let (shared, jobs) = (shared.clone(), slow_jobs.clone());
        slow_lane.push(spawn(
            format!("mfad-slow-{i}"),
            Box::new(move || slow_lane_loop(shared, jobs)),
        )?);
    }
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (shared, slow) = (shared.clone(), slow.clone());
        handles.push(spawn(
            format!("mfad-worker-{i}"),
            Box::new(move || worker(shared, slow)),
        )?);
    }
    Ok(Running {
        shared,
        workers: handles,
        slow_lane,
        addr,
        open_connections,
    })
}

/// The metrics listener (`--metrics-listen`): `GET /metrics` and nothing else, on one
/// thread of its own, so that a scrape never takes a request worker and the API
/// listener never serves the metrics.
pub struct MetricsListener {
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    addr: SocketAddr,
}

impl MetricsListener {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering and closes the listening socket.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.server.unblock();
        let _ = self.thread.join();
    }
}

/// Binds `listen` and serves the metrics there; `open` is the API listener's count of
/// open connections.
pub fn start_metrics(
    listen: SocketAddr,
    open: Arc<AtomicUsize>,
) -> Result<MetricsListener, String> {
    let listener = TcpListener::bind(listen)
        .map_err(|e| format!("--metrics-listen: cannot listen on {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let common = CommonHeaders::new("", &WebPolicy::default())?;
    let options = layer_options(Limits::default(), &common, Arc::default());
    let server = Arc::new(
        tiny_http::Server::from_listener_with(listener, None, options)
            .map_err(|e| format!("cannot start the metrics listener: {e}"))?,
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let (srv, stop) = (server.clone(), stopping.clone());
    let thread = std::thread::Builder::new()
        .name("mfad-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match srv.recv() {
                    Ok(rq) => answer_scrape(rq, &open),
                    // `unblock()` at shutdown.
                    Err(_) if stop.load(Ordering::SeqCst) => break,
                    Err(e) => log::warn!("receiving a metrics request failed: {e}"),
                }
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(MetricsListener {
        server,
        stopping,
        thread,
        addr,
    })
}

/// One request to the metrics listener.
fn answer_scrape(rq: Request, open: &AtomicUsize) {
    let path = clean_path(rq.url());
    let (status, content_type, body) = match (rq.method(), path.as_str()) {
        (tiny_http::Method::Get, "/metrics") => (
            200,
            crate::metrics::CONTENT_TYPE,
            METRICS.render(&ROUTE_NAMES, open.load(Ordering::Relaxed)),
        ),
        (_, "/metrics") => (405, "text/plain; charset=utf-8", "Only GET.\n".into()),
        _ => (
            404,
            "text/plain; charset=utf-8",
            "Not found: the metrics are at /metrics.\n".into(),
        ),
    };
    let mut response = Response::from_data(body.into_bytes()).with_status_code(status);
    for (name, value) in [
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
    ] {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("writing a metrics response failed: {e}");
    }
}
