//! Login with a password, the MFA challenge and its verification, and refresh-token
//! rotation. The throttle it asks first is `throttle.rs`'s.

use std::net::IpAddr;

use data_encoding::HEXLOWER_PERMISSIVE;
use serde_json::{json, Map, Value};

use crate::auth::{Login, SignIn};
use crate::crypto::{self, PasswordCheck};
use crate::error::Error;
use crate::metrics::{Event, METRICS};
use crate::store::{Account, Db, Purpose, RefreshToken, Tx};

use super::second_factor::{self, Answer, Asker, Kind, Verdict};
use super::{audit, hex32, locked, opt_str, req_str, App, CHALLENGE_TTL};

/// Lifetime of the tokens mfad issues at login and refresh.
pub const ACCESS_TTL: i64 = 3600;
/// Lifetime of a refresh token.
pub const REFRESH_TTL: i64 = 30 * 86_400;

const INVALID_CREDENTIALS: &str = "Invalid credentials.";
const INVALID_CHALLENGE: &str = "Invalid or expired MFA challenge.";
const INVALID_CODE: &str = "Invalid code.";
/// A login's tokens: a JWT and a refresh token, starting a new family (a new login,
/// which ends [`REFRESH_TTL`] from now) unless `family` says which login this is and
/// when it ends: a refresh never moves that end, nor how and when the login was made.
pub(super) fn issue_tokens(
    app: &App,
    tx: &Tx<'_>,
    account: &Account,
    login: Login,
    family: Option<(&[u8], i64)>,
    now: i64,
) -> Result<Value, Error> {
    let new_family: [u8; 16];
    let (family, expires_at) = match family {
        Some(f) => f,
        None => {
            new_family = crypto::random()?;
            (&new_family[..], now + REFRESH_TTL)
        }
    };
    let sid = super::session::sid_of(family);
    let token = app
        .tokens
        .issue(
            account.id,
            account.email.as_deref(),
            login,
            Some(&sid),
            now,
            ACCESS_TTL,
        )
        .map_err(|e| {
            log::error!("signing a token failed: {e}");
            Error::Internal
        })?;
    let refresh: [u8; 32] = crypto::random()?;
    tx.insert_refresh_token(
        &app.keys.token_hash(&refresh),
        account.id,
        family,
        expires_at,
        login,
        None,
    )?;
    // `lastConnectedAt`: every login and refresh.
    tx.touch_connected(account.id, now)?;
    Ok(json!({ "token": token, "refresh_token": HEXLOWER_PERMISSIVE.encode(&refresh) }))
}

/// `POST /api/auth`.
pub fn login(
    app: &App,
    body: &Map<String, Value>,
    ip: Option<IpAddr>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    const MISSING: &str = "Fields \"email\" and \"password\" are required strings.";
    let email = req_str(body, "email", MISSING)?;
    let password = req_str(body, "password", MISSING)?;
    let attempt = app.login_limiter.reserve(db, ip, now)?;
    let account = if email.len() <= 320 {
        db.read(|tx| tx.account_by_email(email))?
    } else {
        None
    };
    let stored = account.as_ref().and_then(|a| a.password_hash.as_deref());
    let has_password = stored.is_some();
    // Unknown email, account without password, wrong password: one answer, one cost.
    let check = crypto::verify_password(stored.unwrap_or(&app.dummy_password_hash), password);
    let account = match (account, has_password, check) {
        (Some(a), true, PasswordCheck::Right | PasswordCheck::RightButWeak) => a,
        (account, ..) => {
            // The client's address (behind a trusted proxy, the one it forwarded): who
            // is guessing, for the operator reading `mfad audit`.
            let from = ip.map(|ip| format!("from {ip}"));
            let id = account.map(|a| a.id);
            db.write(|tx| tx.audit(id, now, "login_failed", from.as_deref()))?;
            log::info!(
                "audit: login_failed account={} {}",
                id.map_or("-".to_string(), |id| id.to_string()),
                from.as_deref().unwrap_or("from -")
            );
            METRICS.event(Event::PasswordLoginFailure);
            return Err(Error::Unauthenticated(INVALID_CREDENTIALS));
        }
    };
    app.login_limiter.release(db, attempt);
    if check == PasswordCheck::RightButWeak {
        let upgraded = crypto::hash_password(password, crypto::PASSWORD_ITERATIONS)?;
        db.write(|tx| tx.set_password(account.id, &upgraded))?;
    }
    let id = account.id;
    // Storno: a passkey asks for a second factor as TOTP does, even without TOTP.
    if !db.read(|tx| tx.second_factors(id))?.any() {
        let login = Login {
            how: SignIn::Password,
            at: now,
        };
        let tokens = db.write(|tx| issue_tokens(app, tx, &account, login, None, now))?;
        METRICS.event(Event::PasswordLoginSuccess);
        return Ok(tokens);
    }
    let (challenge, methods) = new_challenge(app, db, id, Purpose::Login, now)?;
    METRICS.event(Event::PasswordLoginMfaRequired);
    Ok(json!({
        "mfa_required": true,
        "mfa_token": challenge,
        "mfa_methods": methods,
    }))
}

/// A new challenge for `account` (5 minutes, single use): its token, and the methods
/// that can answer it, in Storno's order.
pub(super) fn new_challenge(
    app: &App,
    db: &Db,
    account: i64,
    purpose: Purpose,
    now: i64,
) -> Result<(String, Vec<&'static str>), Error> {
    let challenge: [u8; 32] = crypto::random()?;
    let hash = app.keys.token_hash(&challenge);
    let factors = db.write(|tx| {
        tx.insert_challenge(&hash, account, now + CHALLENGE_TTL, purpose)?;
        tx.second_factors(account)
    })?;
    Ok((HEXLOWER_PERMISSIVE.encode(&challenge), factors.methods()))
}

/// The `type` of an answer: `totp`, `backup` (or Storno's `backup_code`), `passkey`,
/// or none.
pub(super) fn parse_kind(
    body: &Map<String, Value>,
    bad: &'static str,
) -> Result<Option<Kind>, Error> {
    match opt_str(body, "type", bad)? {
        Some("totp") => Ok(Some(Kind::Totp)),
        Some("backup" | "backup_code") => Ok(Some(Kind::Backup)),
        Some("passkey") => Ok(Some(Kind::Passkey)),
        None => Ok(None),
        Some(_) => Err(Error::BadRequest(bad)),
    }
}

/// The answer of a verify body: `credential` for `type: "passkey"`, else `code`.
pub(super) fn read_answer(
    body: &Map<String, Value>,
    kind: Option<Kind>,
    origins: impl FnOnce() -> Vec<String>,
) -> Result<Answer, Error> {
    if kind == Some(Kind::Passkey) {
        return match body.get("credential") {
            None | Some(Value::Null) => Err(Error::BadRequest("Missing credential.")),
            Some(credential) => Ok(Answer::passkey(credential, origins())),
        };
    }
    let code = req_str(body, "code", "Missing code.")?;
    Ok(Answer::parse(code, kind))
}

/// `POST /api/auth/mfa/verify`.
pub fn verify(
    app: &App,
    body: &Map<String, Value>,
    origins: impl FnOnce() -> Vec<String>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    const BAD_TYPE: &str = "Field \"type\" must be \"totp\", \"backup\" or \"passkey\".";
    // Storno's sentences; a field of another type is as missing as an absent one.
    let token = req_str(body, "mfaToken", "Missing mfaToken.")?;
    let kind = parse_kind(body, BAD_TYPE)?;
    let answer = read_answer(body, kind, origins)?;
    let challenge = app
        .keys
        .token_hash(&hex32(token).ok_or(Error::Rejected(INVALID_CHALLENGE))?);
    // What the login will say it was made with, if this answer is right.
    let how = match answer {
        Answer::Backup(_) => SignIn::PasswordBackupCode,
        Answer::Passkey(_) => SignIn::PasswordPasskey,
        Answer::Totp(_) | Answer::Unreadable => SignIn::PasswordTotp,
    };
    let verdict = second_factor::check(
        app,
        db,
        Asker::Challenge(&challenge),
        &answer,
        now,
        |tx, id| {
            let account = tx
                .account_by_id(id)?
                .ok_or(Error::Rejected(INVALID_CHALLENGE))?;
            issue_tokens(app, tx, &account, Login { how, at: now }, None, now)
        },
    )?;
    match verdict {
        Verdict::Accepted(tokens) => Ok(tokens),
        Verdict::NoChallenge | Verdict::NoSecondFactor => Err(Error::Rejected(INVALID_CHALLENGE)),
        Verdict::Wrong {
            challenge_dead: true,
            ..
        } => Err(Error::TooManyRequests {
            message: "Too many failed attempts. Please log in again.",
            retry_after: 1,
        }),
        Verdict::Locked(secs)
        | Verdict::Wrong {
            locked_for: Some(secs),
            ..
        } => Err(locked(secs)),
        Verdict::Wrong { .. } => Err(Error::Rejected(INVALID_CODE)),
    }
}

/// Lexik's refresh-token sentences, which Storno's clients know.
const REFRESH_MISSING: Error = Error::Unauthenticated("Missing JWT Refresh Token");
const REFRESH_NOT_FOUND: Error = Error::Unauthenticated("JWT Refresh Token Not Found");
const REFRESH_INVALID: Error = Error::Unauthenticated("Invalid JWT Refresh Token");

/// The refresh tokens a request presents, as keyed hashes: the body's `refresh_token`
/// if it has one (one that is not a string counts as missing; one that is no token is
/// not found), else each token-shaped cookie under the refresh cookie's name. The body
/// wins (API.md): Storno's frontend refreshes on its own server with the token in the
/// body, so the browser's cookie may hold the token that refresh has just rotated, and
/// presenting that one would revoke the login.
fn presented(
    app: &App,
    body: &Map<String, Value>,
    cookies: &[&str],
) -> Result<Vec<[u8; 32]>, Error> {
    match body.get("refresh_token") {
        Some(Value::String(s)) => Ok(vec![app
            .keys
            .token_hash(&hex32(s).ok_or(REFRESH_NOT_FOUND)?)]),
        _ => Ok(cookies
            .iter()
            .filter_map(|c| hex32(c))
            .map(|raw| app.keys.token_hash(&raw))
            .collect()),
    }
}

/// Of the presented tokens, the one a refresh exchanges. A browser holds one of mfad's
/// cookies; more are planted ones, under the same name by another host of the domain.
/// So: every presented token that was already exchanged revokes its login, as it
/// would alone (and the refresh fails); unknown ones are ignored; of those left, one
/// is the token, and more than one is refused, as nobody can tell which is this
/// browser's own (taking the first signed the victim in as the planter).
fn the_one(
    tx: &Tx<'_>,
    hashes: &[[u8; 32]],
    now: i64,
) -> Result<Result<([u8; 32], RefreshToken), Error>, Error> {
    let mut live = Vec::new();
    let mut reused = false;
    for hash in hashes {
        let Some(row) = tx.refresh_token(hash)? else {
            continue;
        };
        if !row.rotated {
            live.push((*hash, row));
            continue;
        }
        reused = true;
        let n = tx.revoke_family(&row.family)?;
        audit(tx, Some(row.account_id), now, "refresh_reuse_detected")?;
        METRICS.event(Event::RefreshReuseDetected);
        log::warn!(
            "refresh token reuse: revoked {n} tokens of account {}",
            row.account_id
        );
    }
    if reused {
        // Committed, not rolled back: the revocation is the point.
        return Ok(Err(REFRESH_INVALID));
    }
    if live.len() > 1 {
        log::warn!(
            "refresh: the request carries {} refresh cookies of live logins, so which is \
             the browser's own cannot be told; refused (another host of the domain may have \
             set one; --cookie-name-prefix __Host- prevents it)",
            live.len()
        );
        return Err(REFRESH_INVALID);
    }
    live.pop().map(Ok).ok_or(REFRESH_NOT_FOUND)
}

/// `POST /api/auth/refresh`: rotation with reuse detection (OAuth 2.0 Security BCP
/// §4.14.2). A token that was already exchanged revokes its whole family.
pub fn refresh(
    app: &App,
    body: &Map<String, Value>,
    cookies: &[&str],
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let hashes = presented(app, body, cookies)?;
    if hashes.is_empty() {
        return Err(REFRESH_MISSING);
    }
    db.write(|tx| {
        let (hash, row) = match the_one(tx, &hashes, now)? {
            Ok(found) => found,
            Err(refused) => return Ok(Err(refused)),
        };
        let Some(login) = row.login else {
            return Err(REFRESH_INVALID);
        };
        if row.expires_at <= now || !tx.rotate_refresh_token(&hash)? {
            return Err(REFRESH_INVALID);
        }
        let Some(account) = tx.account_by_id(row.account_id)? else {
            return Err(REFRESH_NOT_FOUND);
        };
        Ok(Ok(issue_tokens(
            app,
            tx,
            &account,
            login,
            Some((&row.family, row.expires_at)),
            now,
        )?))
    })?
}

/// `POST /api/auth/logout`: ends the login of each presented refresh token and browser
/// session (every token and session of its family; a planted cookie's login ends with
/// it, which only its planter can mind). Whether there was one is nobody's business:
/// always `Ok`.
pub fn logout(
    app: &App,
    body: &Map<String, Value>,
    cookies: &[&str],
    sessions: &[&str],
    now: i64,
) -> Result<(), Error> {
    let db: &Db = &app.db;
    super::session::end(app, sessions, now)?;
    let Ok(hashes) = presented(app, body, cookies) else {
        return Ok(());
    };
    if hashes.is_empty() {
        return Ok(());
    }
    db.write(|tx| {
        for hash in &hashes {
            if let Some(row) = tx.refresh_token(hash)? {
                tx.revoke_family(&row.family)?;
                audit(tx, Some(row.account_id), now, "logout")?;
            }
        }
        Ok(())
    })
}
