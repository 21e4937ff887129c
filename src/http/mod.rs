//! The only module that touches tiny_http: the listening socket, the worker threads, the
//! router, the body cap, JSON in and out, the security headers, panic → 500, and one
//! access-log line per request (method, path, status, time; never a token or a body).
//! This file answers one request; `routes.rs` holds the route table, `body.rs` reads
//! the body under its cap, `page.rs` serves the page's files, `server.rs` runs the
//! socket, the workers and the password lane; the browser-facing rules it applies
//! (CORS, the refresh cookie, the `Origin` rule) are the leaf `crate::web`'s. It calls
//! `service` (through the [`App`], which owns the database), never the store.

mod authz;
mod body;
mod page;
mod routes;
mod server;

pub use body::MAX_BODY;

pub use server::{
    start, start_metrics, Limits, MetricsListener, Running, REQUEST_DEADLINE, SOCKET_TIMEOUT,
};

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{Map, Value};
use tiny_http::{Header, Method, Request, Response};

use body::{read_body, read_bytes};
use routes::{Endpoint, Route, OPENAPI, PASSKEY_PREFIX, ROUTE_NAMES};

use crate::error::Error;
use crate::service::{self, passkey, App};
use crate::web::WebPolicy;

fn header<'r>(rq: &'r Request, name: &'static str) -> Option<&'r str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
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
    /// Public keys, which caches may keep this many seconds; every other answer is
    /// `no-store`.
    max_age: Option<u32>,
    /// An embedded file (the page's, the OpenAPI document) instead of a JSON body.
    asset: Option<page::Asset>,
    /// More headers: the session cookie, forward-auth's `Location` and `Remote-*`.
    extra: Vec<(&'static str, String)>,
}

/// How long the JWKS and the discovery document may be cached (API.md: 5 minutes).
const KEYS_MAX_AGE: u32 = 300;

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
            max_age: None,
            asset: None,
            extra: Vec::new(),
        }
    }

    fn created(body: Value) -> Reply {
        Reply {
            status: 201,
            ..Reply::json(body)
        }
    }

    fn public(body: Value) -> Reply {
        Reply {
            max_age: Some(KEYS_MAX_AGE),
            ..Reply::json(body)
        }
    }

    fn no_content(cookie: Cookie) -> Reply {
        Reply {
            status: 204,
            body: None,
            cookie,
            preflight: None,
            max_age: None,
            asset: None,
            extra: Vec::new(),
        }
    }

    fn file(asset: page::Asset) -> Reply {
        Reply {
            status: 200,
            asset: Some(asset),
            ..Reply::no_content(Cookie::Keep)
        }
    }
}

/// The methods of mfad's API, for the preflight of a path it does not have.
const ANY_API_METHOD: &str = "GET, POST, DELETE";

/// Paths outside `/api/` that browser apps call across origins: the OpenID provider's
/// token and userinfo endpoints (a public client in a browser).
pub(super) const CORS_OIDC: [&str; 2] = ["/oidc/token", "/oidc/userinfo"];

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) on an API path (or
/// one of [`CORS_OIDC`]): `204` with the path's method for a listed origin (every method
/// of the API for a path mfad does not have), `403` for any other.
fn preflight(
    web: &WebPolicy,
    rq: &Request,
    path: &str,
    route: Route,
) -> Option<Result<Reply, Error>> {
    if *rq.method() != Method::Options
        || !(path.starts_with("/api/") || CORS_OIDC.contains(&path))
        || header(rq, "Access-Control-Request-Method").is_none()
    {
        return None;
    }
    let listed = header(rq, "Origin").is_some_and(|o| web.cors_allows(o));
    Some(match (listed, route.endpoint()) {
        (false, _) => Err(Error::Forbidden("Origin not allowed.")),
        // A path mfad does not have: the preflight passes, so that the browser makes
        // the request and its page sees the `404`, not a CORS failure.
        (true, None) => Ok(Reply {
            preflight: Some(ANY_API_METHOD),
            ..Reply::no_content(Cookie::Keep)
        }),
        (true, Some((endpoint, allow))) => Ok(Reply {
            preflight: Some(match endpoint {
                Endpoint::OidcUserinfo => "GET, POST",
                _ => allow,
            }),
            ..Reply::no_content(Cookie::Keep)
        }),
    })
}

const NO_BASE_URL: &str =
    "The request has no usable Host header, and no --public-url is set to name mfad's address.";

/// The client of `rq`: the peer, or behind a trusted proxy the address its
/// `X-Forwarded-For` names (for the throttles, the audit and the access log).
fn client_ip(web: &WebPolicy, rq: &Request) -> Option<std::net::IpAddr> {
    let forwarded: Vec<&str> = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("X-Forwarded-For"))
        .map(|h| h.value.as_str())
        .collect();
    web.client_ip(rq.remote_addr().map(|a| a.ip()), &forwarded)
}

fn handle(
    app: &App,
    web: &WebPolicy,
    rq: &mut Request,
    path: &str,
    route: Route,
    ip: Option<std::net::IpAddr>,
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
    if let Some(answer) = preflight(web, rq, path, route) {
        return answer;
    }
    if let Route::Page(asset) = route {
        return match rq.method() {
            Method::Get => Ok(Reply::file(asset)),
            _ => Err(Error::MethodNotAllowed("GET")),
        };
    }
    let endpoint = route.check(rq.method())?;
    let now = crate::time::unix_now();
    if let Endpoint::ForwardAuth | Endpoint::AuthRequest = endpoint {
        // Whatever the method, a question: its body (if any) is not read.
        return authz::answer(app, web, rq, endpoint == Endpoint::AuthRequest, now);
    }
    if let Endpoint::OidcAuthorize
    | Endpoint::OidcToken
    | Endpoint::OidcUserinfo
    | Endpoint::OidcLogout
    | Endpoint::OidcRevoke = endpoint
    {
        return oidc_answer(app, web, rq, endpoint, now);
    }
    let body = match rq.method() {
        Method::Post => read_body(rq)?,
        _ => Map::new(),
    };
    let me = || service::authenticate(app, header(rq, "Authorization"), now);
    // Refresh and logout may be authenticated by the cookie alone: then a browser page
    // of another site must not be able to use it (API.md, the Origin rule).
    let cookies = || -> Result<Vec<&str>, Error> {
        let found = header(rq, "Cookie").map_or_else(Vec::new, |c| web.refresh_cookies(c));
        if !found.is_empty() && !web.cookie_origin_allowed(header(rq, "Origin"), header(rq, "Host"))
        {
            return Err(Error::Forbidden("Origin not allowed."));
        }
        Ok(found)
    };
    let json = |v: Result<Value, Error>| v.map(Reply::json);
    // The pages a passkey ceremony may run on (API.md, Passkeys); made only for one.
    let origins = || web.ceremony_origins(header(rq, "Host"), &app.rp.id);
    match endpoint {
        Endpoint::Health => json(service::health(app, now).map_err(|_| Error::Unavailable)),
        Endpoint::Setup => json(service::setup(app, &me()?)),
        Endpoint::Enable => json(service::enable(app, &me()?, &body, now)),
        Endpoint::Disable => json(service::disable(app, &me()?, &body, now)),
        Endpoint::Status => json(service::status(app, &me()?)),
        Endpoint::Regenerate => json(service::regenerate(app, &me()?, &body, now)),
        Endpoint::Login => json(service::login(app, &body, ip, now)),
        Endpoint::Verify => json(service::verify(app, &body, origins, now)),
        Endpoint::Refresh => json(service::refresh(app, &body, &cookies()?, now)),
        Endpoint::Logout => {
            let sessions = header(rq, "Cookie").map_or_else(Vec::new, |c| web.session_cookies(c));
            if !sessions.is_empty()
                && !web.cookie_origin_allowed(header(rq, "Origin"), header(rq, "Host"))
            {
                return Err(Error::Forbidden("Origin not allowed."));
            }
            service::logout(app, &body, &cookies()?, &sessions, now)?;
            Ok(Reply {
                extra: vec![("Set-Cookie", web.session_cookie("", 0))],
                ..Reply::no_content(Cookie::Clear)
            })
        }
        Endpoint::Session => {
            let made = service::create_session(app, &me()?, now)?;
            Ok(Reply {
                extra: vec![("Set-Cookie", web.session_cookie(&made.cookie, made.max_age))],
                ..Reply::no_content(Cookie::Keep)
            })
        }
        // Answered before the body is read (above).
        Endpoint::ForwardAuth
        | Endpoint::AuthRequest
        | Endpoint::OidcAuthorize
        | Endpoint::OidcToken
        | Endpoint::OidcUserinfo
        | Endpoint::OidcLogout
        | Endpoint::OidcRevoke => Err(Error::Internal),
        Endpoint::OidcClientName => {
            let query = rq.url().split_once('?').map_or("", |(_, q)| q);
            json(service::oidc::client_name(app, query))
        }
        Endpoint::Me => json(service::me(app, &me()?)),
        Endpoint::StepUpChallenge => json(service::stepup_challenge(app, &me()?, now)),
        Endpoint::StepUpVerify => json(service::stepup_verify(app, &me()?, &body, origins, now)),
        Endpoint::Redeem => json(service::redeem(app, &me()?, &body, now)),
        Endpoint::Jwks => Ok(Reply::public(service::oidc::jwks(app)?)),
        Endpoint::OpenIdConfiguration => {
            let base = web
                .base_url(header(rq, "Host"))
                .ok_or(Error::BadRequest(NO_BASE_URL))?;
            Ok(Reply::public(service::oidc::configuration(app, &base)))
        }
        Endpoint::PasskeyRegisterOptions => json(passkey::register_options(app, &me()?, now)),
        Endpoint::PasskeyRegister => {
            passkey::register(app, &me()?, &body, &origins(), now).map(Reply::created)
        }
        Endpoint::Passkeys => json(passkey::list(app, &me()?)),
        Endpoint::PasskeyDelete => {
            let id = path.strip_prefix(PASSKEY_PREFIX).unwrap_or_default();
            passkey::delete(app, &me()?, id, now)?;
            Ok(Reply::no_content(Cookie::Keep))
        }
        Endpoint::PasskeyLoginOptions => json(passkey::login_options(app, ip, now)),
        Endpoint::PasskeyLogin => json(passkey::login(app, &body, &origins(), now)),
        Endpoint::MfaPasskeyOptions => json(passkey::mfa_options(app, &body, now)),
        Endpoint::StepUpPasskeyOptions => json(passkey::stepup_options(app, &me()?, &body, now)),
        Endpoint::OpenApi => Ok(Reply::file(OPENAPI)),
    }
}

/// The OpenID provider's endpoints: OAuth's answers (a redirect, or `error` and
/// `error_description`), never a refresh cookie of mfad's own.
fn oidc_answer(
    app: &App,
    web: &WebPolicy,
    rq: &mut Request,
    endpoint: Endpoint,
    now: i64,
) -> Result<Reply, Error> {
    let oauth = |r: Result<Value, service::oidc::OAuthError>| match r {
        Ok(body) => Reply {
            cookie: Cookie::Keep,
            ..Reply::json(body)
        },
        Err(e) => Reply {
            status: e.status,
            extra: e
                .challenge
                .map(|c| vec![("WWW-Authenticate", c.to_string())])
                .unwrap_or_default(),
            ..Reply::json(e.body())
        },
    };
    let redirect = |answer| match answer {
        service::oidc::Authorized::Redirect(to) => Ok(Reply {
            status: 302,
            extra: vec![("Location", to)],
            ..Reply::no_content(Cookie::Keep)
        }),
        service::oidc::Authorized::Refused(why) => Err(Error::BadRequest(why)),
    };
    let query = rq.url().split_once('?').map_or("", |(_, q)| q).to_string();
    let sessions = header(rq, "Cookie").map_or_else(Vec::new, |c| web.session_cookies(c));
    match endpoint {
        Endpoint::OidcLogout => {
            let (answer, ended) = service::oidc::logout(app, &query, &sessions, now)?;
            let mut reply = redirect(answer)?;
            if ended {
                reply.extra.push(("Set-Cookie", web.session_cookie("", 0)));
            }
            Ok(reply)
        }
        Endpoint::OidcAuthorize => redirect(service::oidc::authorize(app, &query, &sessions, now)?),
        Endpoint::OidcToken | Endpoint::OidcRevoke => {
            let form = header(rq, "Content-Type").is_some_and(|t| {
                t.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
            let authorization = header(rq, "Authorization").map(str::to_string);
            let body = read_bytes(rq)?;
            let answer = match endpoint {
                Endpoint::OidcToken => service::oidc::token,
                _ => service::oidc::revoke,
            };
            Ok(oauth(answer(
                app,
                &body,
                form,
                authorization.as_deref(),
                now,
            )))
        }
        Endpoint::OidcUserinfo => Ok(oauth(service::oidc::userinfo(
            app,
            header(rq, "Authorization"),
            now,
        ))),
        _ => Err(Error::Internal),
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

/// Headers every response carries, and the page named for the service and told where
/// it may send people back to: built once.
struct CommonHeaders {
    headers: Vec<Header>,
    pages: page::Pages,
}

impl CommonHeaders {
    fn new(service: &str, web: &WebPolicy) -> Result<Self, String> {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b"Content-Type", b"application/json"),
            // Bodies hold secrets and tokens: no cache may keep them (public keys aside).
            (b"Cache-Control", b"no-store"),
            (b"X-Content-Type-Options", b"nosniff"),
        ];
        pairs
            .iter()
            .map(|(k, v)| Header::from_bytes(*k, *v).map_err(|_| "bad built-in header".to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(|headers| CommonHeaders {
                headers,
                pages: page::Pages::new(service, web.session_domain.as_deref(), web.plain_http()),
            })
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
    let asset = result.as_ref().ok().and_then(|r| r.asset);
    let (status, body) = match result {
        Ok(r) => (r.status, r.body.as_ref().map(Value::to_string)),
        Err(e) => (e.status(), Some(error_body(e).to_string())),
    };
    let mut gzipped = false;
    let bytes = match asset {
        Some(a) => {
            let (bytes, packed) = common
                .pages
                .body(&a, page::accepts_gzip(header(&rq, "Accept-Encoding")));
            gzipped = packed;
            bytes.to_vec()
        }
        None => body.unwrap_or_default().into_bytes(),
    };
    let mut response = Response::from_data(bytes).with_status_code(status);
    let max_age = result.as_ref().ok().and_then(|r| r.max_age);
    for h in &common.headers {
        let replaced = (max_age.is_some() && h.field.equiv("Cache-Control"))
            || (asset.is_some() && h.field.equiv("Content-Type"));
        if !replaced {
            response.add_header(h.clone());
        }
    }
    if let Some(a) = asset {
        add(&mut response, "Content-Type", a.content_type);
        for (name, value) in a.headers {
            add(&mut response, name, value);
        }
        if !a.gzip.is_empty() || a.named {
            add(&mut response, "Vary", "Accept-Encoding");
        }
        if gzipped {
            add(&mut response, "Content-Encoding", "gzip");
        }
    }
    if let Some(secs) = max_age {
        add(
            &mut response,
            "Cache-Control",
            &format!("public, max-age={secs}"),
        );
    }
    match result {
        Err(Error::MethodNotAllowed(allow)) => add(&mut response, "Allow", allow),
        Err(Error::TooManyRequests { retry_after, .. }) => {
            add(&mut response, "Retry-After", &retry_after.to_string())
        }
        Err(Error::Busy) => add(&mut response, "Retry-After", "1"),
        Ok(r) => {
            match &r.cookie {
                Cookie::Set(token) => add(&mut response, "Set-Cookie", &web.set_cookie(token)),
                Cookie::Clear => add(&mut response, "Set-Cookie", &web.clear_cookie()),
                Cookie::Keep => {}
            }
            for (name, value) in &r.extra {
                add(&mut response, name, value);
            }
        }
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
        Err(Error::PayloadTooLarge(_)) | Err(Error::BadRequest(_))
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
    web: &WebPolicy,
    rq: &mut Request,
    path: &str,
    route: Route,
    ip: Option<std::net::IpAddr>,
) -> Result<Reply, Error> {
    guarded(|| handle(app, web, rq, path, route, ip))
}

/// Runs one request through the whole request-to-response path without a socket (the
/// request can come from `tiny_http::TestRequest`): for fuzzing and tests. Returns the
/// status and the JSON body that was sent.
pub fn dispatch(app: &App, mut rq: Request) -> (u16, Value) {
    let web = WebPolicy::default();
    let path = clean_path(rq.url());
    let ip = client_ip(&web, &rq);
    let result = answer(app, &web, &mut rq, &path, Route::of(&path), ip);
    let body = match &result {
        Ok(r) => r.body.clone().unwrap_or(Value::Null),
        Err(e) => error_body(e),
    };
    let status = match CommonHeaders::new(&app.rp.name, &web) {
        Ok(common) => respond(rq, &common, &web, &result),
        Err(_) => 500,
    };
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

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
