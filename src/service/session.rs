//! Browser sessions: the `mfad_session` cookie that forward-auth reads. A session is made
//! from a fresh login (its refresh family, named by the token's `sid`), carries that
//! login's `amr` and `auth_time`, and ends with it (the store deletes a login's sessions
//! with its refresh tokens). A check is [`Db::session`]: on PostgreSQL one read by
//! primary key (no node keeps a copy that could outlive an ending on another), on
//! SQLite a cached row while nothing at all was committed since it was read; use is
//! written at most once a minute.

use data_encoding::{BASE64URL_NOPAD, HEXLOWER_PERMISSIVE};

use crate::auth::Login;
use crate::crypto;
use crate::error::Error;
use crate::store::{Account, Db, SESSION_TOUCH_SECS};

use super::{audit, App, Principal};

/// A session is made only from a login at most this old (seconds): a stolen token of
/// yesterday's login cannot mint one.
pub const FRESH_SIGN_IN: i64 = 300;

const NOT_FRESH: Error = Error::Rejected("A fresh sign-in is needed.");

/// Cookie values of one request looked up at most (a browser holds one; others were
/// planted under the name by another host of the domain).
pub(crate) const MAX_SESSION_COOKIES: usize = 4;

/// The `sid` claim of a login's tokens: its refresh family.
pub(super) fn sid_of(family: &[u8]) -> String {
    BASE64URL_NOPAD.encode(family)
}

/// The inverse of [`sid_of`]: the login a token's `sid` names.
pub(super) fn family_of(sid: &str) -> Option<Vec<u8>> {
    BASE64URL_NOPAD.decode(sid.as_bytes()).ok()
}

/// A session just made: the cookie's value and how long it may live (the login's rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub cookie: String,
    pub max_age: i64,
}

/// `POST /api/auth/session`: a session of the bearer's login, if that login still lives
/// and was made at most [`FRESH_SIGN_IN`] ago.
pub fn create(app: &App, me: &Principal, now: i64) -> Result<NewSession, Error> {
    let db: &Db = &app.db;
    let family = me.sid.as_deref().and_then(family_of).ok_or(NOT_FRESH)?;
    let raw: [u8; 32] = crypto::random()?;
    let hash = app.keys.token_hash(&raw);
    let ends = db.write(|tx| {
        let Some((account, login, ends)) = tx.live_login(&family, now)? else {
            return Ok(None);
        };
        if account != me.account.id || login.at < now - FRESH_SIGN_IN || login.at > now + 60 {
            return Ok(None);
        }
        tx.insert_session(&hash, account, &family, login, ends, now)?;
        audit(tx, Some(account), now, "session_created")?;
        Ok(Some(ends))
    })?;
    let ends = ends.ok_or(NOT_FRESH)?;
    Ok(NewSession {
        cookie: HEXLOWER_PERMISSIVE.encode(&raw),
        max_age: ends - now,
    })
}

/// Who a live session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Person {
    pub account_id: i64,
    /// `Remote-User`: the email, else an external account's subject, else the id.
    pub name: String,
    pub email: Option<String>,
    pub amr: Vec<String>,
    /// The session's keyed hash (none for a bearer token): what denials are audited by.
    pub session: Option<[u8; 32]>,
    /// How and when the session's login was made (none for a bearer token).
    pub login: Option<Login>,
}

/// The person of the presented session cookies (64 hex digits each, at most
/// [`MAX_SESSION_COOKIES`]): the one live session among them, if exactly one is. A
/// session is live until its login ends or it has been idle `idle` seconds.
pub(super) fn person(
    app: &App,
    cookies: &[&str],
    idle: i64,
    now: i64,
) -> Result<Option<Person>, Error> {
    let db: &Db = &app.db;
    let mut found: Option<(Person, i64)> = None;
    for raw in cookies.iter().take(MAX_SESSION_COOKIES) {
        let Some(raw) = super::hex32(raw) else {
            continue;
        };
        let hash = app.keys.token_hash(&raw);
        let Some(row) = db.session(&hash)? else {
            continue;
        };
        let Some(login) = row.login else {
            continue;
        };
        if row.expires_at <= now || row.last_used_at + idle <= now {
            continue;
        }
        if found.is_some() {
            log::warn!(
                "forward-auth: the request carries the cookies of two live sessions, so \
                 which is the browser's own cannot be told; treated as signed out"
            );
            return Ok(None);
        }
        let name = row
            .email
            .clone()
            .or(row.subject.clone())
            .unwrap_or_else(|| row.account_id.to_string());
        let person = Person {
            account_id: row.account_id,
            name,
            email: row.email,
            amr: login.how.amr().iter().map(|a| a.to_string()).collect(),
            session: Some(hash),
            login: Some(login),
        };
        found = Some((person, row.last_used_at));
    }
    let Some((person, last_used)) = found else {
        return Ok(None);
    };
    if last_used <= now - SESSION_TOUCH_SECS {
        if let Some(hash) = &person.session {
            db.write(|tx| tx.touch_session(hash, now))?;
        }
    }
    Ok(Some(person))
}

/// The person of a bearer token of mfad's own (an API client of a protected app).
pub(super) fn bearer_person(account: Account, amr: Vec<String>) -> Person {
    let name = account
        .email
        .clone()
        .or(account.external_subject.clone())
        .unwrap_or_else(|| account.id.to_string());
    Person {
        account_id: account.id,
        name,
        email: account.email,
        amr,
        session: None,
        login: None,
    }
}

/// Ends the login of each presented session (`POST /api/auth/logout` with the session
/// cookie): its refresh tokens and every session of it.
pub(super) fn end(app: &App, cookies: &[&str], now: i64) -> Result<(), Error> {
    let db: &Db = &app.db;
    let hashes: Vec<[u8; 32]> = cookies
        .iter()
        .take(MAX_SESSION_COOKIES)
        .filter_map(|c| super::hex32(c))
        .map(|raw| app.keys.token_hash(&raw))
        .collect();
    if hashes.is_empty() {
        return Ok(());
    }
    db.write(|tx| {
        for hash in &hashes {
            if let Some(row) = tx.session(hash)? {
                tx.revoke_family(&row.family)?;
                audit(tx, Some(row.account_id), now, "logout")?;
            }
        }
        Ok(())
    })
}
