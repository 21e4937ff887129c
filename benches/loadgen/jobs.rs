//! Jobs: what one connection does, one unit (a request, or a login + verify pair) at a
//! time, on the shared keep-alive client (`tests/common/client.rs`). Also the request
//! bytes the workloads send.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mfad::totp;
use serde_json::Value;

use crate::client::{self, Conn, Resp};
use crate::PASSWORD;

/// A request as the workloads send it: a bearer token and a JSON body where given.
pub(crate) fn http_request(
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Vec<u8> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    client::request_bytes(method, path, &headers, body.map(str::as_bytes))
}

pub(crate) fn post_json(path: &str, bearer: Option<&str>, body: &Value) -> Vec<u8> {
    http_request("POST", path, bearer, Some(&body.to_string()))
}

/// The protected app that the forward-auth row asks about (the load server's only rule
/// names it).
pub(crate) const FORWARDED_HOST: &str = "app.example.com";

/// `GET /api/authz/forward-auth` as a reverse proxy asks it about one page of
/// [`FORWARDED_HOST`], with the browser's `mfad_session` cookie.
pub(crate) fn forward_auth_request(session: &str) -> Vec<u8> {
    let cookie = format!("mfad_session={session}");
    let headers = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", FORWARDED_HOST),
        ("X-Forwarded-Uri", "/some/path"),
        ("X-Forwarded-Method", "GET"),
        ("Cookie", cookie.as_str()),
    ];
    client::request_bytes("GET", "/api/authz/forward-auth", &headers, None)
}

pub(crate) enum Outcome {
    Ok,
    /// An unexpected status: the request was answered but not as the workload expects.
    Bad(String),
    /// A connection error (the client reconnects for the next unit).
    Io(String),
    /// No more prepared work (seeded challenges or refresh tokens used up).
    Done,
}

pub(crate) trait Job: Send {
    /// Runs one unit; `extra` collects a second latency (ns) where the unit has one.
    fn once(&mut self, conn: &mut Conn, extra: &mut Vec<u64>) -> Outcome;
}

/// Sends `req` and expects status `want`: the response, or the unit's outcome.
pub(crate) fn send(conn: &mut Conn, req: &[u8], want: u16) -> Result<Resp, Outcome> {
    match conn.request(req) {
        Ok(r) if r.status == want => Ok(r),
        Ok(r) => Err(Outcome::Bad(format!(
            "HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
        ))),
        Err(e) => Err(Outcome::Io(e.to_string())),
    }
}

/// The same request every time (status, setup, healthz, forward-auth, the bare server).
pub(crate) struct Fixed(pub(crate) Vec<u8>);

impl Job for Fixed {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        match send(conn, &self.0, 200) {
            Ok(_) => Outcome::Ok,
            Err(o) => o,
        }
    }
}

pub(crate) type TokenPool = Arc<Mutex<Vec<String>>>;
/// Refresh tokens kept for the refresh runs; more are not needed.
pub(crate) const POOL_CAP: usize = 1024;

pub(crate) fn pool_push(pool: &TokenPool, token: String) {
    let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
    if p.len() < POOL_CAP {
        p.push(token);
    }
}

pub(crate) fn pool_take(pool: &TokenPool) -> Option<String> {
    pool.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

pub(crate) fn field(v: &Option<Value>, name: &str) -> Option<String> {
    v.as_ref()?.get(name)?.as_str().map(str::to_string)
}

/// `POST /api/auth` for a local account without TOTP; keeps the refresh tokens.
pub(crate) struct Login {
    pub(crate) req: Vec<u8>,
    pub(crate) pool: TokenPool,
}

impl Job for Login {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        let r = match send(conn, &self.req, 200) {
            Ok(r) => r,
            Err(o) => return o,
        };
        match field(&r.try_json(), "refresh_token") {
            Some(t) => {
                pool_push(&self.pool, t);
                Outcome::Ok
            }
            None => Outcome::Bad("login answered without a refresh_token".into()),
        }
    }
}

/// `POST /api/auth/refresh`, each answer's token presented next (rotation).
pub(crate) struct Refresh {
    pub(crate) token: Option<String>,
    pub(crate) pool: TokenPool,
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
        let r = match send(conn, &req, 200) {
            Ok(r) => r,
            Err(o) => return o,
        };
        match field(&r.try_json(), "refresh_token") {
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
pub(crate) struct Item {
    pub(crate) email: String,
    pub(crate) challenge: Option<String>,
    pub(crate) code: String,
    /// The time step the code is for.
    pub(crate) step: u64,
}

pub(crate) struct Items {
    pub(crate) list: Vec<Item>,
    pub(crate) next: AtomicUsize,
}

impl Items {
    pub(crate) fn take(&self) -> Option<&Item> {
        self.list.get(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// `POST /api/auth/mfa/verify` with a seeded challenge: the full verify path, replay
/// write included.
pub(crate) struct Verify {
    pub(crate) items: Arc<Items>,
    pub(crate) refused: Refused,
}

impl Job for Verify {
    fn once(&mut self, conn: &mut Conn, _: &mut Vec<u64>) -> Outcome {
        let Some(item) = self.items.take() else {
            return Outcome::Done;
        };
        let req = post_json(
            "/api/auth/mfa/verify",
            None,
            &serde_json::json!({ "mfaToken": item.challenge, "code": item.code }),
        );
        match send(conn, &req, 200) {
            Ok(_) => Outcome::Ok,
            // Which account and code, to look up in the database afterwards.
            Err(Outcome::Bad(e)) => {
                let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if r.len() < 3 {
                    r.push((item.email.clone(), item.step));
                }
                Outcome::Bad(format!(
                    "{e} (account {}, code {} of step {}, sent in step {})",
                    item.email,
                    item.code,
                    item.step,
                    totp::step_at(mfad::unix_now() as u64)
                ))
            }
            Err(o) => o,
        }
    }
}

/// Accounts (and the step of the code) whose verify was refused, to explain afterwards:
/// owned by the load section, shared by its verify jobs.
pub(crate) type Refused = Arc<Mutex<Vec<(String, u64)>>>;

/// Login (gets a challenge) then verify: the whole second-factor login. `extra` gets the
/// verify request's own latency.
pub(crate) struct Pair {
    pub(crate) items: Arc<Items>,
    pub(crate) pool: TokenPool,
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
        let r = match send(conn, &login, 200) {
            Ok(r) => r,
            Err(o) => return o,
        };
        let Some(challenge) = field(&r.try_json(), "mfa_token") else {
            return Outcome::Bad("login of a TOTP account gave no mfa_token".into());
        };
        let verify = post_json(
            "/api/auth/mfa/verify",
            None,
            &serde_json::json!({ "mfaToken": challenge, "code": item.code }),
        );
        let t = Instant::now();
        let r = match send(conn, &verify, 200) {
            Ok(r) => r,
            Err(o) => return o,
        };
        extra.push(t.elapsed().as_nanos() as u64);
        if let Some(t) = field(&r.try_json(), "refresh_token") {
            pool_push(&self.pool, t);
        }
        Outcome::Ok
    }
}

pub(crate) fn fixed_jobs(req: &[u8], n: usize) -> Vec<Box<dyn Job>> {
    (0..n)
        .map(|_| Box::new(Fixed(req.to_vec())) as Box<dyn Job>)
        .collect()
}
