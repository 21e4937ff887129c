//! The numbers `--metrics-listen` shows, and their exposition in the Prometheus text
//! format. Recording is one relaxed atomic add per number into fixed tables made at
//! compile time: no lock, no allocation, no label built on the request path. (The
//! client crate's own `Family` takes a read-write lock per lookup and its `Histogram` a
//! mutex per observation; its encoder is used, at scrape time, through a `Collector`
//! that reads these tables.)
//!
//! Every label value is a fixed word of this file or a route name `http` gives: never a
//! path, an address, an email or a token. The one exception is the OpenID provider's
//! `client`: the id of a registered app (the operator chose it; a request naming an
//! unknown one is not counted by client), kept in a small map behind a mutex, which
//! only authorizations and token requests take. Events are counted where they are decided,
//! which is inside a transaction for some (a replay, a lock); one whose COMMIT then
//! fails stays counted, and the failure is in `mfad_storage_errors_total`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The one set of numbers of this process.
pub static METRICS: Metrics = Metrics::new();

/// Routes `http` may count requests under (its endpoints, the page, everything else).
pub const ROUTES: usize = 40;

/// The statuses mfad answers with; anything else is counted as `other`.
const STATUSES: [u16; 18] = [
    200, 201, 204, 302, 400, 401, 403, 404, 405, 408, 409, 413, 414, 422, 429, 431, 500, 503,
];
const STATUS_NAMES: [&str; 19] = [
    "200", "201", "204", "302", "400", "401", "403", "404", "405", "408", "409", "413", "414",
    "422", "429", "431", "500", "503", "other",
];

/// Upper bounds of the latency buckets, in seconds: from a cached read (~50 µs) to a
/// queued password check (seconds).
const LATENCY_BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Upper bounds of the commit batch sizes (a batch holds at most 32 writers).
const BATCH_BOUNDS: [f64; 6] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// Something the server decided, counted in the family its row of [`EVENTS`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    PasswordLoginSuccess,
    PasswordLoginMfaRequired,
    PasswordLoginFailure,
    PasskeyLoginSuccess,
    PasskeyLoginFailure,
    PasskeyLoginLocked,
    LoginThrottled,
    PasskeyLoginThrottled,
    TotpReplayRefused,
    PasskeyCounterRegression,
    ChallengeLocked,
    AccountLocked,
    ClockDriftSuspected,
    RefreshReuseDetected,
    /// Forward-auth: let through.
    AuthzAllowed,
    /// Forward-auth: sent to sign in.
    AuthzSignIn,
    /// Forward-auth: sent to sign in with a second factor.
    AuthzNeedTwoFactor,
    /// Forward-auth: refused (a deny rule, the default, an email not listed).
    AuthzDenied,
    /// Forward-auth: no usable resource in the request.
    AuthzBadRequest,
}

/// Each event's family and labels, in the order of [`Event`].
const EVENTS: [(Family, &[(&str, &str)]); 19] = [
    (LOGINS, &[("method", "password"), ("result", "success")]),
    (
        LOGINS,
        &[("method", "password"), ("result", "mfa_required")],
    ),
    (LOGINS, &[("method", "password"), ("result", "failure")]),
    (LOGINS, &[("method", "passkey"), ("result", "success")]),
    (LOGINS, &[("method", "passkey"), ("result", "failure")]),
    (LOGINS, &[("method", "passkey"), ("result", "locked")]),
    (THROTTLED, &[("throttle", "login")]),
    (THROTTLED, &[("throttle", "passkey_login")]),
    (REPLAYS, &[("method", "totp")]),
    (REPLAYS, &[("method", "passkey")]),
    (LOCKS, &[("what", "challenge")]),
    (LOCKS, &[("what", "account")]),
    (DRIFT, &[]),
    (REFRESH_REUSE, &[]),
    (AUTHZ, &[("result", "allowed")]),
    (AUTHZ, &[("result", "sign_in")]),
    (AUTHZ, &[("result", "need_2fa")]),
    (AUTHZ, &[("result", "denied")]),
    (AUTHZ, &[("result", "bad_request")]),
];

/// A counter family: its name (without `_total`, which the encoder adds) and help.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Family(&'static str, &'static str);

const LOGINS: Family = Family(
    "mfad_logins",
    "First steps of a login (password or passkey) by result; mfa_required: the password was right and a second factor is asked.",
);
const THROTTLED: Family = Family(
    "mfad_throttled",
    "Requests refused with 429 by a per-address throttle.",
);
const REPLAYS: Family = Family(
    "mfad_replays_refused",
    "Right answers refused as used before: a TOTP step already accepted, a passkey counter that did not move forward.",
);
const LOCKS: Family = Family(
    "mfad_locks",
    "Challenges ended by their last wrong answer, and accounts locked by wrong answers in a row.",
);
const DRIFT: Family = Family(
    "mfad_clock_drift_suspected",
    "Wrong TOTP codes that are the code of a step 2 to 10 steps away (the device's clock is off).",
);
const REFRESH_REUSE: Family = Family(
    "mfad_refresh_reuse_detected",
    "Rotated refresh tokens presented again (their whole family is revoked).",
);
const AUTHZ: Family = Family(
    "mfad_authz_decisions",
    "Forward-auth answers by result: allowed, sign_in (not signed in), need_2fa (a second factor is needed), denied, bad_request.",
);
const FAMILIES: [Family; 7] = [
    LOGINS,
    THROTTLED,
    REPLAYS,
    LOCKS,
    DRIFT,
    REFRESH_REUSE,
    AUTHZ,
];

/// What the OpenID provider counts, by registered client: its authorizations (`code`
/// given, `sign_in` asked of the person, `error` sent back) and its token requests by
/// grant (`issued`, or the OAuth error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Oidc {
    Authorization(&'static str),
    Token {
        grant: &'static str,
        result: &'static str,
    },
}

/// Counts of [`Oidc`] by client.
type OidcCounts = BTreeMap<(String, Oidc), u64>;

/// The second factors the one rule checks, and what became of a check.
const METHODS: [&str; 4] = ["totp", "backup_code", "passkey", "unreadable"];
const CHECK_RESULTS: [&str; 4] = ["accepted", "wrong", "locked", "no_challenge"];

/// What became of one second-factor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    Accepted,
    Wrong,
    /// The account was locked already; the answer was not looked at.
    Locked,
    /// No live challenge (expired, spent, unknown) or no second factor to check.
    NoChallenge,
}

/// A histogram of `B` buckets whose counts are atomics; the sum is kept in integer
/// `unit`s (microseconds for latencies) so that it is an atomic too.
pub struct Histogram<const B: usize> {
    bounds: [f64; B],
    unit: f64,
    /// Observations per bucket, not cumulative (the exposition adds them up).
    buckets: [AtomicU64; B],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const B: usize> Histogram<B> {
    const fn new(bounds: [f64; B], unit: f64) -> Self {
        Histogram {
            bounds,
            unit,
            buckets: [const { AtomicU64::new(0) }; B],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum
            .fetch_add((value / self.unit).round() as u64, Relaxed);
    }

    fn encode(&self, mut metric: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        // Per bucket, as the encoder wants them (it writes the running totals); what is
        // above the last bound goes to +Inf. (Read while requests run, the numbers may
        // be a few observations apart; none is ever lost.)
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| (*b, n.load(Relaxed)))
            .collect();
        let bounded: u64 = buckets.iter().map(|(_, n)| n).sum();
        let count = self.count.load(Relaxed);
        buckets.push((f64::INFINITY, count.saturating_sub(bounded)));
        let sum = self.sum.load(Relaxed) as f64 * self.unit;
        metric.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

/// Every number of the process (see [`METRICS`]).
pub struct Metrics {
    requests: [[AtomicU64; STATUS_NAMES.len()]; ROUTES],
    latency: [Histogram<{ LATENCY_BOUNDS.len() }>; ROUTES],
    events: [AtomicU64; EVENTS.len()],
    checks: [[AtomicU64; CHECK_RESULTS.len()]; METHODS.len()],
    storage_errors: AtomicU64,
    batches: Histogram<{ BATCH_BOUNDS.len() }>,
    oidc: Mutex<OidcCounts>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub const fn new() -> Self {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; STATUS_NAMES.len()] }; ROUTES],
            latency: [const { Histogram::new(LATENCY_BOUNDS, 1e-6) }; ROUTES],
            events: [const { AtomicU64::new(0) }; EVENTS.len()],
            checks: [const { [const { AtomicU64::new(0) }; CHECK_RESULTS.len()] }; METHODS.len()],
            storage_errors: AtomicU64::new(0),
            batches: Histogram::new(BATCH_BOUNDS, 1.0),
            oidc: Mutex::new(BTreeMap::new()),
        }
    }

    /// One answered request of route `route` (< [`ROUTES`]; larger ones are not counted).
    pub fn request(&self, route: usize, status: u16, seconds: f64) {
        let slot = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        if let (Some(row), Some(latency)) = (self.requests.get(route), self.latency.get(route)) {
            row[slot].fetch_add(1, Relaxed);
            latency.observe(seconds);
        }
    }

    pub fn event(&self, event: Event) {
        self.events[event as usize].fetch_add(1, Relaxed);
    }

    /// One second-factor check of `method` (a name of [`METHODS`]).
    pub fn check(&self, method: &str, result: CheckResult) {
        if let Some(m) = METHODS.iter().position(|n| *n == method) {
            self.checks[m][result as usize].fetch_add(1, Relaxed);
        }
    }

    /// A storage error that reached a request (logged where it happened).
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Relaxed);
    }

    /// One authorization or token request of the OpenID provider for the registered
    /// client `client`.
    pub fn oidc(&self, client: &str, what: Oidc) {
        let mut counts = self.oidc.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((client.to_string(), what)).or_insert(0) += 1;
    }

    /// One COMMIT of `writers` writers' changes.
    pub fn batch(&self, writers: usize) {
        self.batches.observe(writers as f64);
    }

    /// The exposition, Prometheus text format 0.0.4. `routes` names the routes by index;
    /// a route without a name, or with no request yet, is left out.
    pub fn render(&'static self, routes: &'static [&'static str], open: usize) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Scrape {
            metrics: self,
            routes,
            open,
        }));
        let mut out = String::new();
        match prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            Ok(()) => out,
            // Writing to a String cannot fail; an encoder refusal would be a bug here.
            Err(std::fmt::Error) => String::new(),
        }
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One scrape: the tables, the route names and the gauges read at this moment.
#[derive(Debug)]
struct Scrape {
    metrics: &'static Metrics,
    routes: &'static [&'static str],
    open: usize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl prometheus_client::collector::Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = self.metrics;
        let named = || {
            self.routes
                .iter()
                .enumerate()
                .take(ROUTES)
                .filter(|(i, _)| m.latency[*i].count.load(Relaxed) > 0)
        };
        {
            let mut family = encoder.encode_descriptor(
                "mfad_http_requests",
                "Answered requests by route and status.",
                None,
                MetricType::Counter,
            )?;
            for (i, route) in named() {
                for (slot, status) in STATUS_NAMES.iter().enumerate() {
                    let n = m.requests[i][slot].load(Relaxed);
                    if n > 0 {
                        let labels = [("endpoint", *route), ("status", *status)];
                        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "mfad_http_request_duration_seconds",
                "Time from a request's arrival at a worker to its answer being handed to the socket.",
                None,
                MetricType::Histogram,
            )?;
            for (i, route) in named() {
                m.latency[i].encode(family.encode_family(&[("endpoint", *route)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "mfad_second_factor_checks",
                "Second-factor answers (TOTP, backup code, passkey; unreadable: neither shape) by result.",
                None,
                MetricType::Counter,
            )?;
            for (mi, method) in METHODS.iter().enumerate() {
                for (ri, result) in CHECK_RESULTS.iter().enumerate() {
                    let labels = [("method", *method), ("result", *result)];
                    let n = m.checks[mi][ri].load(Relaxed);
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for f in FAMILIES {
            let mut family = encoder.encode_descriptor(f.0, f.1, None, MetricType::Counter)?;
            for (e, (_, labels)) in EVENTS.iter().enumerate().filter(|(_, (g, _))| *g == f) {
                ConstCounter::new(m.events[e].load(Relaxed))
                    .encode(family.encode_family(labels)?)?;
            }
        }
        {
            let counts = m
                .oidc
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            {
                let mut family = encoder.encode_descriptor(
                "mfad_oidc_authorizations",
                "OpenID authorizations by client and result: code (given), sign_in (the person was sent to sign in), error (sent back to the app).",
                None,
                MetricType::Counter,
            )?;
                for ((client, what), n) in &counts {
                    if let Oidc::Authorization(result) = what {
                        let labels = [("client", client.as_str()), ("result", *result)];
                        ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
            let mut family = encoder.encode_descriptor(
                "mfad_oidc_tokens",
                "OpenID token requests by client, grant and result: issued, or the OAuth error.",
                None,
                MetricType::Counter,
            )?;
            for ((client, what), n) in &counts {
                if let Oidc::Token { grant, result } = what {
                    let labels = [
                        ("client", client.as_str()),
                        ("grant", *grant),
                        ("result", *result),
                    ];
                    ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        ConstCounter::new(m.storage_errors.load(Relaxed)).encode(encoder.encode_descriptor(
            "mfad_storage_errors",
            "Storage errors that failed a request (each is logged).",
            None,
            MetricType::Counter,
        )?)?;
        m.batches.encode(encoder.encode_descriptor(
            "mfad_commit_batch_size",
            "Writers whose changes one COMMIT holds (group commit).",
            None,
            MetricType::Histogram,
        )?)?;
        ConstGauge::new(self.open as i64).encode(encoder.encode_descriptor(
            "mfad_open_connections",
            "Client connections open on the API listener.",
            None,
            MetricType::Gauge,
        )?)?;
        encoder
            .encode_descriptor(
                "mfad_build",
                "The version of this mfad.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> &'static Metrics {
        Box::leak(Box::new(Metrics::new()))
    }

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn the_providers_requests_are_counted_by_client() {
        let m = fresh();
        m.oidc("grafana", Oidc::Authorization("code"));
        m.oidc("grafana", Oidc::Authorization("code"));
        m.oidc("wiki", Oidc::Authorization("sign_in"));
        let issued = Oidc::Token {
            grant: "authorization_code",
            result: "issued",
        };
        m.oidc("grafana", issued);
        let text = m.render(&[], 0);
        assert!(
            text.contains("mfad_oidc_authorizations_total{client=\"grafana\",result=\"code\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("mfad_oidc_authorizations_total{client=\"wiki\",result=\"sign_in\"} 1\n")
        );
        assert!(text.contains(
            "mfad_oidc_tokens_total{client=\"grafana\",grant=\"authorization_code\",result=\"issued\"} 1\n"
        ));
    }

    #[test]
    fn requests_are_counted_by_route_and_status_with_cumulative_buckets() {
        let m = fresh();
        m.request(1, 200, 0.0003);
        m.request(1, 200, 0.002);
        m.request(1, 401, 3.0);
        m.request(0, 418, 0.00001);
        m.request(ROUTES, 200, 0.1); // out of range: not counted, no panic
        let text = m.render(&["/healthz", "/api/auth"], 7);
        assert_eq!(
            line(
                &text,
                "mfad_http_requests_total{endpoint=\"/api/auth\",status=\"200\"}"
            ),
            Some("mfad_http_requests_total{endpoint=\"/api/auth\",status=\"200\"} 2")
        );
        assert!(
            text.contains("mfad_http_requests_total{endpoint=\"/api/auth\",status=\"401\"} 1\n")
        );
        assert!(
            text.contains("mfad_http_requests_total{endpoint=\"/healthz\",status=\"other\"} 1\n")
        );
        let b = |le: &str| {
            format!(
                "mfad_http_request_duration_seconds_bucket{{endpoint=\"/api/auth\",le=\"{le}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 0\n", b("0.0001"))));
        assert!(text.contains(&format!("{} 1\n", b("0.0005"))));
        assert!(text.contains(&format!("{} 2\n", b("0.0025"))));
        assert!(text.contains(&format!("{} 2\n", b("2.5"))));
        assert!(text.contains(&format!("{} 3\n", b("+Inf"))));
        assert!(
            text.contains("mfad_http_request_duration_seconds_count{endpoint=\"/api/auth\"} 3\n")
        );
        let sum = line(
            &text,
            "mfad_http_request_duration_seconds_sum{endpoint=\"/api/auth\"}",
        )
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
        assert!(sum.is_some_and(|s| (s - 3.0023).abs() < 1e-9), "{sum:?}");
        assert!(text.contains("mfad_open_connections 7\n"));
        assert!(text.contains("mfad_build_info{version=\""));
    }

    #[test]
    fn a_route_without_requests_is_left_out_and_events_start_at_zero() {
        let m = fresh();
        let text = m.render(&["/healthz"], 0);
        assert!(!text.contains("endpoint=\"/healthz\""));
        assert!(text.contains("mfad_logins_total{method=\"password\",result=\"success\"} 0\n"));
        assert!(text.contains("mfad_clock_drift_suspected_total 0\n"));
        assert!(text.contains(
            "mfad_second_factor_checks_total{method=\"passkey\",result=\"no_challenge\"} 0\n"
        ));
    }

    #[test]
    fn events_checks_and_batches_land_in_their_own_series() {
        let m = fresh();
        m.event(Event::PasswordLoginMfaRequired);
        m.event(Event::PasswordLoginMfaRequired);
        m.event(Event::ClockDriftSuspected);
        m.event(Event::PasskeyCounterRegression);
        m.check("totp", CheckResult::Wrong);
        m.check("backup_code", CheckResult::Accepted);
        m.check("sms", CheckResult::Accepted); // not a method: not counted
        m.batch(1);
        m.batch(3);
        m.storage_error();
        let text = m.render(&[], 0);
        for expected in [
            "mfad_logins_total{method=\"password\",result=\"mfa_required\"} 2",
            "mfad_logins_total{method=\"password\",result=\"success\"} 0",
            "mfad_clock_drift_suspected_total 1",
            "mfad_replays_refused_total{method=\"passkey\"} 1",
            "mfad_replays_refused_total{method=\"totp\"} 0",
            "mfad_second_factor_checks_total{method=\"totp\",result=\"wrong\"} 1",
            "mfad_second_factor_checks_total{method=\"backup_code\",result=\"accepted\"} 1",
            "mfad_storage_errors_total 1",
            "mfad_commit_batch_size_bucket{le=\"1\"} 1",
            "mfad_commit_batch_size_bucket{le=\"2\"} 1",
            "mfad_commit_batch_size_bucket{le=\"4\"} 2",
            "mfad_commit_batch_size_bucket{le=\"32\"} 2",
            "mfad_commit_batch_size_bucket{le=\"+Inf\"} 2",
            "mfad_commit_batch_size_sum 4.0",
            "mfad_commit_batch_size_count 2",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "{expected} missing from\n{text}"
            );
        }
        let total: usize = text
            .lines()
            .filter(|l| l.starts_with("mfad_second_factor_checks_total"))
            .count();
        assert_eq!(total, METHODS.len() * CHECK_RESULTS.len());
    }

    #[test]
    fn every_event_has_a_family_that_is_rendered() {
        assert_eq!(EVENTS.len(), Event::AuthzBadRequest as usize + 1);
        for (family, _) in EVENTS {
            assert!(FAMILIES.contains(&family), "{}", family.0);
        }
        assert_eq!(STATUS_NAMES.len(), STATUSES.len() + 1);
        for (s, n) in STATUSES.iter().zip(STATUS_NAMES) {
            assert_eq!(s.to_string(), n);
        }
    }
}
