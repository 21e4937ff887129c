//! The use cases. Each takes the [`App`] (which owns the [`Db`]), the parsed request
//! and `now`, and returns a JSON body or an [`Error`]; none of them knows HTTP or the
//! storage engine. This file holds what they share (the [`App`], the bearer check,
//! request fields, the audit helper); `mfa.rs` the TOTP settings, `login.rs` login,
//! verify and refresh, `stepup.rs` the step-up challenge and its redemption,
//! `second_factor.rs` the one rule every second-factor answer goes through,
//! `assertion.rs` the passkey assertion check, `passkey.rs` the passkey ceremonies,
//! `throttle.rs` the per-address throttles, `session.rs` the browser sessions,
//! `authz.rs` the forward-auth decision, `admin.rs` the admin commands, `clients.rs` the
//! OpenID provider's registry and RSA key, `oidc.rs` its endpoints. They may call
//! `store` and the leaves; this file calls none of them but `throttle.rs` (it re-exports
//! the rest for `http`).

pub mod admin;
mod assertion;
mod authz;
pub mod clients;
mod login;
mod mfa;
pub mod oidc;
pub mod passkey;
pub mod second_factor;
mod session;
mod stepup;
mod throttle;

use std::sync::Arc;

use data_encoding::HEXLOWER_PERMISSIVE;
use serde_json::{json, Map, Value};

use crate::auth::{Subject, TokenError, Tokens};
use crate::crypto::{self, Keys};
use crate::error::Error;
use crate::store::{Account, Db, Tx};
use crate::webauthn::RelyingParty;

pub use authz::{forward_auth, Denials, Forward, Identity, Verdict as AuthzVerdict};
pub use login::{login, logout, refresh, verify, ACCESS_TTL, REFRESH_TTL};
pub use mfa::{disable, enable, regenerate, setup, status};
pub use second_factor::{ACCOUNT_LOCK_SECS, ACCOUNT_MAX_FAILURES, CHALLENGE_MAX_FAILURES};
pub use session::{create as create_session, NewSession, FRESH_SIGN_IN};
pub use stepup::{challenge as stepup_challenge, me, redeem, verify as stepup_verify};
pub use throttle::{
    Ceremonies, LoginLimiter, ThrottleSettings, LIVE_LOGIN_CEREMONIES, LOGIN_OPTIONS_RATE,
};

/// Lifetime of an MFA challenge.
pub(crate) const CHALLENGE_TTL: i64 = 300;

/// What every request shares: the database, keys, token issuer, settings, the
/// throttles. `http` hands requests to it and never names the store.
pub struct App {
    /// Shared with the janitor, which runs beside the requests.
    pub db: Arc<Db>,
    pub keys: Keys,
    pub tokens: Tokens,
    pub issuer: String,
    pub login_limiter: LoginLimiter,
    /// Passwordless-login ceremonies per client ([`LOGIN_OPTIONS_RATE`]).
    pub passkey_limiter: LoginLimiter,
    /// Passwordless-login ceremonies open at once ([`LIVE_LOGIN_CEREMONIES`]).
    pub ceremonies: Ceremonies,
    /// The WebAuthn relying party (`--rp-id`, `--rp-name`).
    pub rp: RelyingParty,
    /// A hash string of today's cost with a random salt and a random "hash": login for an
    /// unknown email checks against it, so it costs exactly what a wrong password costs
    /// (and no password matches it).
    pub dummy_password_hash: String,
    /// Forward-auth's rules and the browser sessions' idle limit.
    pub forward: Forward,
    /// Which forward-auth denials were audited within the hour.
    pub denials: Denials,
    /// The OpenID provider: its issuer (none: not a provider) and its RSA key.
    pub oidc: oidc::Provider,
}

impl App {
    pub fn new(
        db: Arc<Db>,
        keys: Keys,
        tokens: Tokens,
        issuer: String,
        throttles: ThrottleSettings,
        rp: RelyingParty,
    ) -> Result<App, Error> {
        let dummy = crypto::unmatchable_password_hash()?;
        Ok(App {
            db,
            keys,
            tokens,
            issuer,
            login_limiter: LoginLimiter::logins(throttles),
            passkey_limiter: LoginLimiter::passkey_logins(throttles),
            ceremonies: Ceremonies::new(LIVE_LOGIN_CEREMONIES),
            rp,
            dummy_password_hash: dummy,
            forward: Forward::default(),
            denials: Denials::default(),
            oidc: oidc::Provider::default(),
        })
    }
}

/// An [`App`] on a new SQLite database in `dir`, with a fixed instance key, for the use
/// cases' tests that hold the clock themselves.
#[cfg(test)]
pub(crate) fn test_app(dir: &std::path::Path) -> (Arc<Db>, App) {
    let db = Arc::new(Db::open(&dir.join("t.db"), crate::durability::Durability::Normal).unwrap());
    let keys = Keys::derive(&[7u8; 32]).unwrap();
    let tokens = Tokens::new(&keys, "mfad", None, None).unwrap();
    let rp = RelyingParty {
        id: "localhost".into(),
        name: "Storno".into(),
    };
    let app = App::new(
        db.clone(),
        keys,
        tokens,
        "Storno".into(),
        ThrottleSettings::default(),
        rp,
    )
    .unwrap();
    (db, app)
}

/// The caller of a `/api/v1/me/...` route.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account: Account,
    /// The account label for the otpauth URI.
    pub label: String,
    /// The login the token was issued for (our own tokens but `mfad token`'s).
    pub sid: Option<String>,
    /// How that login was made (our own tokens); empty for an external token.
    pub amr: Vec<String>,
}

/// Writes an audit event and its log line (the id only: no email, no secret).
fn audit(tx: &Tx<'_>, account_id: Option<i64>, now: i64, event: &str) -> Result<(), Error> {
    tx.audit(account_id, now, event, None)?;
    match account_id {
        Some(id) => log::info!("audit: {event} account={id}"),
        None => log::info!("audit: {event}"),
    }
    Ok(())
}

/// A string field: `Ok(None)` when absent or null, `400` when of another type.
fn opt_str<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
    err: &'static str,
) -> Result<Option<&'a str>, Error> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::BadRequest(err)),
    }
}

fn req_str<'a>(
    body: &'a Map<String, Value>,
    name: &'static str,
    err: &'static str,
) -> Result<&'a str, Error> {
    opt_str(body, name, err)?.ok_or(Error::BadRequest(err))
}

/// Decodes a 64-hex-character token into its 32 bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = HEXLOWER_PERMISSIVE.decode(s.trim().as_bytes()).ok()?;
    bytes.try_into().ok()
}

/// `429` for a locked account.
fn locked(retry_after: i64) -> Error {
    Error::TooManyRequests {
        message: "Too many failed attempts. Try again later.",
        retry_after: retry_after.max(1) as u64,
    }
}

const TOKEN_NOT_FOUND: &str = "JWT Token not found";
const TOKEN_INVALID: &str = "Invalid JWT Token";
const TOKEN_EXPIRED: &str = "Expired JWT Token";

/// Resolves `Authorization: Bearer …` to an account. Messages are Lexik's, which
/// Storno's clients already know.
pub(crate) fn authenticate(
    app: &App,
    authorization: Option<&str>,
    now: i64,
) -> Result<Principal, Error> {
    let db: &Db = &app.db;
    let header = authorization.ok_or(Error::Unauthenticated(TOKEN_NOT_FOUND))?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(Error::Unauthenticated(TOKEN_NOT_FOUND))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Unauthenticated(TOKEN_NOT_FOUND));
    }
    let verified = app.tokens.verify(token.trim(), now).map_err(|e| match e {
        TokenError::Expired => Error::Unauthenticated(TOKEN_EXPIRED),
        TokenError::Invalid => Error::Unauthenticated(TOKEN_INVALID),
    })?;
    let account = match &verified.subject {
        Subject::Account(id) => db.read(|tx| tx.account_by_id(*id))?,
        Subject::External(sub) => match db.read(|tx| tx.account_by_subject(sub))? {
            Some(a) => Some(a),
            None => Some(db.write(|tx| {
                let a = tx.ensure_external_account(sub, now)?;
                audit(tx, Some(a.id), now, "external_account_created")?;
                Ok(a)
            })?),
        },
    };
    // A deleted account's token is as good as a forged one.
    let account = account.ok_or(Error::Unauthenticated(TOKEN_INVALID))?;
    let label = verified
        .email
        .clone()
        .or(verified.username.clone())
        .or_else(|| account.email.clone())
        .or_else(|| account.external_subject.clone())
        .unwrap_or_else(|| account.id.to_string());
    Ok(Principal {
        account,
        label,
        sid: verified.sid,
        amr: verified.amr,
    })
}

/// `GET /healthz`, with the server's clock (`time`): a wrong clock on either side is
/// the commonest reason codes fail.
pub(crate) fn health(app: &App, now: i64) -> Result<Value, Error> {
    let db: &Db = &app.db;
    db.ping()?;
    Ok(json!({ "status": "ok", "time": now }))
}
