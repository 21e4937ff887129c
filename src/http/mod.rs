//! The only module that touches tiny_http: the listening socket, the worker threads, the
//! router, the body cap, JSON in and out, the security headers, panic → 500, and one
//! access-log line per request (method, path, status, time; never a token or a body).
//! `web.rs` holds the browser-facing rules (CORS, the refresh cookie, the `Origin` rule).

mod web;

pub use web::{parse_origin, SameSite, WebPolicy};

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tiny_http::{Header, Method, Request, Response};

use crate::error::Error;
use crate::json::BodyError;
use crate::service::{self, App};
use crate::store::Db;

/// Request bodies larger than this are refused with 413 (API.md).
pub const MAX_BODY: usize = 16 * 1024;

/// The endpoints, by path and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Health,
    Setup,
    Enable,
    Disable,
    Status,
    Regenerate,
    Login,
    Verify,
    Refresh,
    Logout,
    Me,
    StepUpChallenge,
    StepUpVerify,
    Redeem,
}

/// The endpoint at `path` and the one method it takes.
fn endpoint_at(path: &str) -> Option<(Endpoint, &'static str)> {
    Some(match path {
        "/healthz" => (Endpoint::Health, "GET"),
        "/api/v1/me/mfa/totp/setup" => (Endpoint::Setup, "POST"),
        "/api/v1/me/mfa/totp/enable" => (Endpoint::Enable, "POST"),
        "/api/v1/me/mfa/totp/disable" => (Endpoint::Disable, "POST"),
        "/api/v1/me/mfa/status" => (Endpoint::Status, "GET"),
        "/api/v1/me/mfa/backup-codes/regenerate" => (Endpoint::Regenerate, "POST"),
        "/api/auth" => (Endpoint::Login, "POST"),
        "/api/auth/mfa/verify" => (Endpoint::Verify, "POST"),
        "/api/auth/refresh" => (Endpoint::Refresh, "POST"),
        "/api/auth/logout" => (Endpoint::Logout, "POST"),
        "/api/v1/me" => (Endpoint::Me, "GET"),
        "/api/v1/mfa/challenge" => (Endpoint::StepUpChallenge, "POST"),
        "/api/v1/mfa/verify" => (Endpoint::StepUpVerify, "POST"),
        "/api/v1/mfa/verification/redeem" => (Endpoint::Redeem, "POST"),
        _ => return None,
    })
}

fn route(method: &Method, path: &str) -> Result<Endpoint, Error> {
    let (endpoint, allow) = endpoint_at(path).ok_or(Error::NotFound)?;
    if method.as_str() != allow {
        return Err(Error::MethodNotAllowed(allow));
    }
    Ok(endpoint)
}

fn header<'r>(rq: &'r Request, name: &'static str) -> Option<&'r str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Reads the JSON object in the body. The 413 is decided from `Content-Length` before
/// anything is read; a chunked body is cut off one byte past the cap.
fn read_body(rq: &mut Request) -> Result<Map<String, Value>, Error> {
    // tiny_http ignores a Content-Length it cannot parse and takes the first of several;
    // a proxy in front may read them otherwise (request smuggling), so refuse both.
    let lengths: Vec<&str> = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
        .map(|h| h.value.as_str().trim())
        .collect();
    if lengths.len() > 1
        || lengths
            .iter()
            .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::BadRequest("Invalid Content-Length header."));
    }
    if rq.body_length().is_some_and(|n| n > MAX_BODY) || lengths.iter().any(|v| v.len() > 9) {
        return Err(Error::PayloadTooLarge);
    }
    let mut buf = Vec::with_capacity(rq.body_length().unwrap_or(0).min(MAX_BODY));
    rq.as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|_| Error::BadRequest("Could not read the request body."))?;
    if buf.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge);
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    crate::json::parse_object(&buf).map_err(|e| {
        Error::BadRequest(match e {
            BodyError::NotAnObject => "The request body must be a JSON object.",
            BodyError::NotJson => "The request body is not valid JSON.",
            BodyError::DuplicateKey => "The request body names a field twice.",
        })
    })
}

/// A handler's answer: its status, its JSON body (none for 204), and what to do with the
/// refresh cookie.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    status: u16,
    body: Option<Value>,
    cookie: Cookie,
    /// A CORS preflight's `Access-Control-Allow-Methods`.
    preflight: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
enum Cookie {
    Keep,
    Set(String),
    Clear,
}

impl Reply {
    fn json(body: Value) -> Reply {
        // Every answer that carries a refresh token also sets it as the cookie (Storno).
        let cookie = match body.get("refresh_token") {
            Some(Value::String(t)) => Cookie::Set(t.clone()),
            _ => Cookie::Keep,
        };
        Reply {
            status: 200,
            body: Some(body),
            cookie,
            preflight: None,
        }
    }

    fn no_content(cookie: Cookie) -> Reply {
        Reply {
            status: 204,
            body: None,
            cookie,
            preflight: None,
        }
    }
}

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) on an API path:
/// `204` with the path's method for a listed origin, `403` for any other.
fn preflight(web: &WebPolicy, rq: &Request, path: &str) -> Option<Result<Reply, Error>> {
    if *rq.method() != Method::Options
        || !path.starts_with("/api/")
        || header(rq, "Access-Control-Request-Method").is_none()
    {
        return None;
    }
    let listed = header(rq, "Origin").is_some_and(|o| web.cors_allows(o));
    Some(match (listed, endpoint_at(path)) {
        (false, _) => Err(Error::Forbidden("Origin not allowed.")),
        (true, None) => Err(Error::NotFound),
        (true, Some((_, allow))) => Ok(Reply {
            preflight: Some(allow),
            ..Reply::no_content(Cookie::Keep)
        }),
    })
}

fn handle(
    app: &App,
    db: &Db,
    web: &WebPolicy,
    rq: &mut Request,
    path: &str,
) -> Result<Reply, Error> {
    // Which of two Authorization headers counts is up to each reader (the first won
    // here); a proxy that checked the other one would be fooled. (Two Host headers are
    // refused by the HTTP layer, RFC 9112 §3.2.)
    if rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .count()
        > 1
    {
        return Err(Error::BadRequest("More than one Authorization header."));
    }
    if let Some(answer) = preflight(web, rq, path) {
        return answer;
    }
    let endpoint = route(rq.method(), path)?;
    let body = match rq.method() {
        Method::Post => read_body(rq)?,
        _ => Map::new(),
    };
    let now = crate::unix_now();
    let ip = rq.remote_addr().map(|a| a.ip());
    let me = |db: &Db| service::authenticate(app, db, header(rq, "Authorization"), now);
    // Refresh and logout may be authenticated by the cookie alone: then a browser page
    // of another site must not be able to use it (API.md, the Origin rule).
    let cookie = || -> Result<Option<&str>, Error> {
        let found = header(rq, "Cookie").and_then(web::refresh_cookie);
        if found.is_some() && !web.cookie_origin_allowed(header(rq, "Origin"), header(rq, "Host")) {
            return Err(Error::Forbidden("Origin not allowed."));
        }
        Ok(found)
    };
    let json = |v: Result<Value, Error>| v.map(Reply::json);
    match endpoint {
        Endpoint::Health => json(service::health(db).map_err(|_| Error::Unavailable)),
        Endpoint::Setup => json(service::setup(app, db, &me(db)?)),
        Endpoint::Enable => json(service::enable(app, db, &me(db)?, &body, now)),
        Endpoint::Disable => json(service::disable(app, db, &me(db)?, &body, now)),
        Endpoint::Status => json(service::status(db, &me(db)?)),
        Endpoint::Regenerate => json(service::regenerate(app, db, &me(db)?, &body, now)),
        Endpoint::Login => json(service::login(app, db, &body, ip, now)),
        Endpoint::Verify => json(service::verify(app, db, &body, now)),
        Endpoint::Refresh => json(service::refresh(app, db, &body, cookie()?, now)),
        Endpoint::Logout => {
            service::logout(app, db, &body, cookie()?, now)?;
            Ok(Reply::no_content(Cookie::Clear))
        }
        Endpoint::Me => json(service::me(db, &me(db)?)),
        Endpoint::StepUpChallenge => json(service::stepup_challenge(app, db, &me(db)?, now)),
        Endpoint::StepUpVerify => json(service::stepup_verify(app, db, &me(db)?, &body, now)),
        Endpoint::Redeem => json(service::redeem(app, db, &me(db)?, &body, now)),
    }
}

/// The JSON body of an error, in the shapes API.md fixes.
pub(crate) fn error_body(e: &Error) -> Value {
    let message = e.message();
    match e {
        Error::Unauthenticated(_) => {
            serde_json::json!({ "code": 401, "message": message, "error": message })
        }
        Error::WrongPassword => {
            serde_json::json!({ "error": message, "messageKey": "error.auth.password_incorrect" })
        }
        _ => serde_json::json!({ "error": message }),
    }
}

/// Runs a handler, turning a panic into an opaque 500 (the worker lives on).
fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(Error::Internal))
}

/// Headers every response carries, built once.
struct CommonHeaders(Vec<Header>);

impl CommonHeaders {
    fn new() -> Result<Self, String> {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b"Content-Type", b"application/json"),
            // Bodies hold secrets and tokens: no cache may keep them.
            (b"Cache-Control", b"no-store"),
            (b"X-Content-Type-Options", b"nosniff"),
        ];
        pairs
            .iter()
            .map(|(k, v)| Header::from_bytes(*k, *v).map_err(|_| "bad built-in header".to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(CommonHeaders)
    }
}

fn add(response: &mut Response<std::io::Cursor<Vec<u8>>>, name: &str, value: &str) {
    if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        response.add_header(h);
    }
}

fn respond(
    rq: Request,
    common: &CommonHeaders,
    web: &WebPolicy,
    result: &Result<Reply, Error>,
) -> u16 {
    let (status, body) = match result {
        Ok(r) => (r.status, r.body.as_ref().map(Value::to_string)),
        Err(e) => (e.status(), Some(error_body(e).to_string())),
    };
    let mut response =
        Response::from_data(body.unwrap_or_default().into_bytes()).with_status_code(status);
    for h in &common.0 {
        response.add_header(h.clone());
    }
    match result {
        Err(Error::MethodNotAllowed(allow)) => add(&mut response, "Allow", allow),
        Err(Error::TooManyRequests { retry_after, .. }) => {
            add(&mut response, "Retry-After", &retry_after.to_string())
        }
        Err(Error::Busy) => add(&mut response, "Retry-After", "1"),
        Ok(r) => match &r.cookie {
            Cookie::Set(token) => add(&mut response, "Set-Cookie", &web.set_cookie(token)),
            Cookie::Clear => add(&mut response, "Set-Cookie", &web.clear_cookie()),
            Cookie::Keep => {}
        },
        _ => {}
    }
    // CORS: a listed origin may read the answer (errors included: its page shows them).
    if !web.cors_origins.is_empty() {
        add(&mut response, "Vary", "Origin");
    }
    let listed = header(&rq, "Origin").filter(|o| web.cors_allows(o));
    if let (Some(origin), false) = (listed, matches!(result, Err(Error::Forbidden(_)))) {
        add(&mut response, "Access-Control-Allow-Origin", origin);
        add(&mut response, "Access-Control-Allow-Credentials", "true");
        if let Ok(Reply {
            preflight: Some(allow),
            ..
        }) = result
        {
            add(&mut response, "Access-Control-Allow-Methods", allow);
            add(
                &mut response,
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type",
            );
            add(&mut response, "Access-Control-Max-Age", "3600");
        }
    }
    if matches!(
        result,
        Err(Error::PayloadTooLarge) | Err(Error::BadRequest(_))
    ) {
        // The body may be unread or unparseable: do not try to reuse the connection.
        add(&mut response, "Connection", "close");
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("writing a response failed: {e}");
    }
    status
}

/// The path for routing and logging: no query string (it could carry a secret), no
/// control characters, bounded length.
fn clean_path(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    path.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A client's word for the log: control characters escaped (`\x1b`), so that no byte of
/// it can end a line, forge one with a priority prefix of its choosing, or drive a
/// terminal. (The HTTP layer admits only token characters in a method already.)
fn log_safe(s: &str) -> String {
    s.chars()
        .take(32)
        .flat_map(|c| {
            if c.is_control() {
                format!("\\x{:02x}", u32::from(c))
                    .chars()
                    .collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Routes and handles one request, a panic included; the response is not sent yet.
fn answer(
    app: &App,
    db: &Db,
    web: &WebPolicy,
    rq: &mut Request,
    path: &str,
) -> Result<Reply, Error> {
    guarded(|| handle(app, db, web, rq, path))
}

/// Runs one request through the whole request-to-response path without a socket (the
/// request can come from `tiny_http::TestRequest`): for fuzzing and tests. Returns the
/// status and the JSON body that was sent.
pub fn dispatch(app: &App, db: &Db, mut rq: Request) -> (u16, Value) {
    let web = WebPolicy::default();
    let path = clean_path(rq.url());
    let result = answer(app, db, &web, &mut rq, &path);
    let body = match &result {
        Ok(r) => r.body.clone().unwrap_or(Value::Null),
        Err(e) => error_body(e),
    };
    let status = match CommonHeaders::new() {
        Ok(common) => respond(rq, &common, &web, &result),
        Err(_) => 500,
    };
    (status, body)
}

/// Endpoints whose work is PBKDF2 (about 0.2 s of a core): login and the password
/// confirmations of disable and regenerate (600,000 rounds), and enable, which hashes
/// ten new backup codes (10 × 100,000 rounds).
fn is_slow(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::Login | Endpoint::Enable | Endpoint::Disable | Endpoint::Regenerate
    )
}

/// A request handed from a worker to the slow lane.
struct SlowJob {
    rq: Request,
    path: String,
    started: Instant,
}

/// Handles one request and writes the access line.
fn serve_one(shared: &Shared, mut rq: Request, path: &str, started: Instant) {
    let method = log_safe(rq.method().as_str());
    let result = answer(&shared.app, &shared.db, &shared.web, &mut rq, path);
    let status = respond(rq, &shared.common, &shared.web, &result);
    log::info!(
        target: crate::log::ACCESS,
        "{method} {path} {status} {:.1}ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// The context every request thread shares.
struct Shared {
    server: Arc<tiny_http::Server>,
    app: Arc<App>,
    db: Arc<Db>,
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
        let rq = if route(rq.method(), &path).is_ok_and(is_slow) {
            match slow.try_send(SlowJob { rq, path, started }) {
                Ok(()) => continue,
                Err(mpsc::TrySendError::Full(job) | mpsc::TrySendError::Disconnected(job)) => {
                    let status = respond(job.rq, &shared.common, &shared.web, &Err(Error::Busy));
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
        serve_one(&shared, rq, &path, started);
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
                respond(job.rq, &shared.common, &shared.web, &Err(Error::Busy));
                continue;
            }
        }
        serve_one(&shared, job.rq, &job.path, job.started);
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
}

impl Running {
    /// The address actually bound (the port is known even for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
/// A whole request head (and a body up to 16 KiB) must arrive within this time of its
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
fn layer_options(limits: Limits, common: &CommonHeaders) -> tiny_http::Options {
    tiny_http::Options {
        request_line: MAX_REQUEST_LINE,
        header_section: MAX_HEADER_SECTION,
        request_deadline: limits.request_deadline.unwrap_or(REQUEST_DEADLINE),
        socket_timeout: Some(limits.socket_timeout.unwrap_or(SOCKET_TIMEOUT)),
        error_headers: common.0.clone(),
        error_body: layer_error_body,
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

/// Binds `listen` and starts `workers` workers sharing `db`, and the slow lane.
pub fn start(
    listen: SocketAddr,
    app: Arc<App>,
    workers: usize,
    db: Arc<Db>,
    limits: Limits,
    web: WebPolicy,
) -> Result<Running, String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    set_socket_options(&listener).map_err(|e| format!("cannot set socket options: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let common = CommonHeaders::new()?;
    let server = Arc::new(
        tiny_http::Server::from_listener_with(listener, None, layer_options(limits, &common))
            .map_err(|e| format!("cannot start the HTTP server: {e}"))?,
    );
    let shared = Arc::new(Shared {
        server,
        app,
        db,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_knows_paths_and_methods() {
        assert_eq!(route(&Method::Post, "/api/auth"), Ok(Endpoint::Login));
        assert_eq!(
            route(&Method::Get, "/api/v1/me/mfa/status"),
            Ok(Endpoint::Status)
        );
        assert_eq!(
            route(&Method::Get, "/api/auth"),
            Err(Error::MethodNotAllowed("POST"))
        );
        assert_eq!(
            route(&Method::Post, "/healthz"),
            Err(Error::MethodNotAllowed("GET"))
        );
        assert_eq!(route(&Method::Get, "/api/auth/"), Err(Error::NotFound));
        assert_eq!(route(&Method::Get, "/"), Err(Error::NotFound));
    }

    #[test]
    fn a_panicking_handler_becomes_an_opaque_500() {
        let r: Result<Value, Error> = guarded(|| panic!("secret detail"));
        assert_eq!(r, Err(Error::Internal));
        assert_eq!(
            error_body(&Error::Internal),
            serde_json::json!({"error": "Internal error."})
        );
        // The thread that ran it is still usable.
        assert_eq!(guarded(|| Ok(Value::Null)), Ok(Value::Null));
    }

    #[test]
    fn unauthenticated_errors_carry_storno_shape() {
        let v = error_body(&Error::Unauthenticated("Invalid credentials."));
        assert_eq!(
            v,
            serde_json::json!({"code": 401, "message": "Invalid credentials.", "error": "Invalid credentials."})
        );
        assert_eq!(
            error_body(&Error::Rejected("Invalid code.")),
            serde_json::json!({"error": "Invalid code."})
        );
    }

    #[test]
    fn methods_are_escaped_for_logs() {
        assert_eq!(log_safe("GET"), "GET");
        assert_eq!(log_safe("G\nE\x1b[T"), "G\\x0aE\\x1b[T");
    }

    #[test]
    fn paths_are_cleaned_for_logs() {
        assert_eq!(clean_path("/api/auth?token=abc"), "/api/auth");
        assert_eq!(clean_path("/a\nb"), "/a?b");
        assert_eq!(clean_path(&"/x".repeat(500)).len(), 200);
    }
}
