//! The use cases: TOTP setup, enable, disable, status, backup codes, login with an MFA
//! challenge, verify, refresh. Each takes the parsed request, a database connection and
//! `now`, and returns a JSON body or an [`Error`]; none of them knows HTTP.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use data_encoding::{BASE32_NOPAD, BASE64, HEXLOWER_PERMISSIVE};
use serde_json::{json, Map, Value};

use crate::auth::{Subject, TokenError, Tokens};
use crate::crypto::{self, Keys, PasswordCheck};
use crate::error::Error;
use crate::store::{self, Account, Db};
use crate::totp;

/// Lifetime of the tokens mfad issues at login and refresh.
pub const ACCESS_TTL: i64 = 3600;
/// Lifetime of a refresh token.
pub const REFRESH_TTL: i64 = 30 * 86_400;
/// Lifetime of an MFA challenge.
pub const CHALLENGE_TTL: i64 = 300;
/// Wrong codes that kill one challenge.
pub const CHALLENGE_MAX_FAILURES: i64 = 5;
/// Wrong codes in a row, across challenges, that lock an account's verify.
pub const ACCOUNT_MAX_FAILURES: i64 = 10;
/// How long that lock lasts.
pub const ACCOUNT_LOCK_SECS: i64 = 900;
/// Backup codes per enable or regenerate.
pub const BACKUP_CODE_COUNT: usize = 10;
/// No 0/1/i/l/o: nothing that reads as another character.
const BACKUP_ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";

const INVALID_CREDENTIALS: &str = "Invalid credentials.";
const INVALID_CHALLENGE: &str = "Invalid or expired MFA challenge.";
const INVALID_CODE: &str = "Invalid code.";

/// What every request shares: keys, token issuer, settings, the login throttle.
pub struct App {
    pub keys: Keys,
    pub tokens: Tokens,
    pub issuer: String,
    pub login_limiter: LoginLimiter,
    /// A hash string of today's cost with a random salt and a random "hash": login for an
    /// unknown email checks against it, so it costs exactly what a wrong password costs
    /// (and no password matches it).
    pub dummy_password_hash: String,
}

impl App {
    pub fn new(keys: Keys, tokens: Tokens, issuer: String, login_rate: u32) -> Result<App, Error> {
        let dummy = crypto::unmatchable_password_hash()?;
        Ok(App {
            keys,
            tokens,
            issuer,
            login_limiter: LoginLimiter::new(login_rate),
            dummy_password_hash: dummy,
        })
    }
}

/// The caller of a `/api/v1/me/...` route.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account: Account,
    /// The account label for the otpauth URI.
    pub label: String,
}

fn audit(
    c: &rusqlite::Connection,
    account_id: Option<i64>,
    now: i64,
    event: &str,
) -> Result<(), Error> {
    store::audit(c, account_id, now, event, None)?;
    match account_id {
        Some(id) => log::info!("audit: {event} account={id}"),
        None => log::info!("audit: {event}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Request fields

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

// ---------------------------------------------------------------------------------------
// Bearer authentication

const TOKEN_NOT_FOUND: &str = "JWT Token not found";
const TOKEN_INVALID: &str = "Invalid JWT Token";
const TOKEN_EXPIRED: &str = "Expired JWT Token";

/// Resolves `Authorization: Bearer …` to an account. Messages are Lexik's, which
/// Storno's clients already know.
pub fn authenticate(
    app: &App,
    db: &Db,
    authorization: Option<&str>,
    now: i64,
) -> Result<Principal, Error> {
    let header = authorization.ok_or(Error::Unauthenticated(TOKEN_NOT_FOUND))?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(Error::Unauthenticated(TOKEN_NOT_FOUND))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Unauthenticated(TOKEN_NOT_FOUND));
    }
    let verified = app.tokens.verify(token.trim()).map_err(|e| match e {
        TokenError::Expired => Error::Unauthenticated(TOKEN_EXPIRED),
        TokenError::Invalid => Error::Unauthenticated(TOKEN_INVALID),
    })?;
    let account = match &verified.subject {
        Subject::Account(id) => db.read(|c| store::account_by_id(c, *id))?,
        Subject::External(sub) => match db.read(|c| store::account_by_subject(c, sub))? {
            Some(a) => Some(a),
            None => Some(db.write(|c| {
                let a = store::ensure_external_account(c, sub, now)?;
                audit(c, Some(a.id), now, "external_account_created")?;
                Ok(a)
            })?),
        },
    };
    // A deleted account's token is as good as a forged one.
    let account = account.ok_or(Error::Unauthenticated(TOKEN_INVALID))?;
    let label = verified
        .email
        .or(verified.username)
        .or_else(|| account.email.clone())
        .or_else(|| account.external_subject.clone())
        .unwrap_or_else(|| account.id.to_string());
    Ok(Principal { account, label })
}

// ---------------------------------------------------------------------------------------
// Setup, enable, status, disable, regenerate

/// `POST /api/v1/me/mfa/totp/setup`.
pub fn setup(app: &App, db: &Db, who: &Principal) -> Result<Value, Error> {
    // 160 bits: RFC 4226 §4 recommends it, and it is the HMAC-SHA1 block-friendly size
    // every app expects; it gives exactly 32 base32 characters with no padding.
    let mut secret: [u8; 20] = crypto::random()?;
    let sealed = app.keys.seal(&secret, who.account.id)?;
    let encoded = BASE32_NOPAD.encode(&secret);
    crypto::wipe(&mut secret);
    if !db.write(|c| Ok(store::set_pending_secret(c, who.account.id, &sealed)?))? {
        return Err(Error::Conflict("TOTP is already enabled for this account."));
    }
    let uri = totp::otpauth_uri(&app.issuer, &who.label, &encoded);
    let png = crate::qr::otpauth_png(&uri).map_err(|e| {
        log::error!("QR rendering failed for a {}-byte URI: {e}", uri.len());
        Error::BadRequest("The account name is too long to fit in a QR code.")
    })?;
    let mut qr = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    qr.push_str("data:image/png;base64,");
    qr.push_str(&BASE64.encode(&png));
    Ok(json!({ "secret": encoded, "otpauthUri": uri, "qrCode": qr }))
}

/// A fresh set of backup codes: what the user is shown, and what is stored.
struct BackupCodes {
    codes: Vec<String>,
    salt: [u8; 16],
    hashes: Vec<[u8; 32]>,
}

/// Draws `BACKUP_CODE_COUNT` codes and hashes them under a fresh salt. Slow by design
/// (one PBKDF2 per code): call it before taking the write lock.
fn new_backup_codes(keys: &Keys) -> Result<BackupCodes, Error> {
    let salt: [u8; 16] = crypto::random()?;
    let mut codes = Vec::with_capacity(BACKUP_CODE_COUNT);
    let mut hashes = Vec::with_capacity(BACKUP_CODE_COUNT);
    while codes.len() < BACKUP_CODE_COUNT {
        let mut raw = [0u8; 8];
        let mut filled = 0;
        while filled < raw.len() {
            let bytes: [u8; 16] = crypto::random()?;
            // Rejection sampling: 248 = 8 × 31, so what is kept is uniform over the alphabet.
            for b in bytes.into_iter().filter(|b| *b < 248) {
                if filled < raw.len() {
                    raw[filled] = BACKUP_ALPHABET[usize::from(b % 31)];
                    filled += 1;
                }
            }
        }
        let plain: String = raw.iter().map(|&b| char::from(b)).collect();
        let hash = keys.backup_code_hash(&salt, &plain);
        if hashes.contains(&hash) {
            continue;
        }
        hashes.push(hash);
        codes.push(format!("{}-{}", &plain[..4], &plain[4..]));
    }
    Ok(BackupCodes {
        codes,
        salt,
        hashes,
    })
}

/// A backup code as typed: case-insensitive, dashes and spaces anywhere are ignored.
fn normalize_backup_code(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == 8 && s.bytes().all(|b| BACKUP_ALPHABET.contains(&b))).then_some(s)
}

/// `POST /api/v1/me/mfa/totp/enable`.
pub fn enable(
    app: &App,
    db: &Db,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let code = req_str(
        body,
        "code",
        "Field \"code\" is required and must be a string.",
    )?;
    let id = who.account.id;
    let state = db.read(|c| store::totp(c, id))?.unwrap_or_default();
    if state.active_secret.is_some() {
        return Err(Error::Conflict("TOTP is already enabled for this account."));
    }
    let pending = state.pending_secret.ok_or(Error::Unprocessable(
        "No TOTP setup in progress; call setup first.",
    ))?;
    let code = totp::normalize_code(code).ok_or(Error::Unprocessable(INVALID_CODE))?;
    let secret = app.keys.open(&pending, id)?;
    let step = totp::verify(secret.expose(), &code, now as u64)
        .ok_or(Error::Unprocessable(INVALID_CODE))?;
    let BackupCodes {
        codes,
        salt,
        hashes,
    } = new_backup_codes(&app.keys)?;
    db.write(|c| {
        // The secret that becomes active is exactly the one the code was checked against.
        if !store::activate_secret(c, id, &pending, step as i64, &salt, now)? {
            return Err(match store::totp_enabled(c, id)? {
                true => Error::Conflict("TOTP is already enabled for this account."),
                false => {
                    Error::Unprocessable("The TOTP setup changed meanwhile; scan the new code.")
                }
            });
        }
        store::replace_backup_codes(c, id, &salt, &hashes)?;
        audit(c, Some(id), now, "mfa_enabled")
    })?;
    Ok(json!({ "enabled": true, "backupCodes": codes }))
}

/// `GET /api/v1/me/mfa/status`.
pub fn status(db: &Db, who: &Principal) -> Result<Value, Error> {
    let (enabled, remaining) = db.read(|c| store::mfa_status(c, who.account.id))?;
    Ok(json!({
        "totpEnabled": enabled,
        "backupCodesRemaining": remaining,
        "passkeysCount": 0,
    }))
}

/// How a sensitive change is confirmed: the password of a local account, or, for an
/// account without one, a current TOTP code or a backup code (which is spent).
fn confirm(
    app: &App,
    db: &Db,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<(), Error> {
    const WRONG: Error = Error::Unprocessable("Wrong or missing confirmation.");
    let id = who.account.id;
    if let Some(stored) = &who.account.password_hash {
        let password =
            opt_str(body, "password", "Field \"password\" must be a string.")?.ok_or(WRONG)?;
        return match crypto::verify_password(stored, password) {
            PasswordCheck::Wrong => Err(WRONG),
            PasswordCheck::Right | PasswordCheck::RightButWeak => Ok(()),
        };
    }
    let code = opt_str(body, "code", "Field \"code\" must be a string.")?.ok_or(WRONG)?;
    let state = db.read(|c| store::totp(c, id))?.unwrap_or_default();
    let (Some(active), Some(salt)) = (state.active_secret, state.backup_salt) else {
        return Err(WRONG);
    };
    // The same lock as verify: confirmation codes must not be a side door for guessing.
    if state.locked_until > now {
        return Err(locked(state.locked_until - now));
    }
    let accepted = if let Some(code) = totp::normalize_code(code) {
        let secret = app.keys.open(&active, id)?;
        match totp::verify(secret.expose(), &code, now as u64) {
            Some(step) => db.write(|c| Ok(store::accept_step(c, id, step as i64)?))?,
            None => false,
        }
    } else if let Some(code) = normalize_backup_code(code) {
        let hash = app.keys.backup_code_hash(&salt, &code);
        db.write(|c| {
            let spent = store::spend_backup_code(c, id, &hash)?;
            if spent {
                audit(c, Some(id), now, "backup_code_used")?;
            }
            Ok(spent)
        })?
    } else {
        false
    };
    if accepted {
        db.write(|c| Ok(store::reset_verify_failures(c, id)?))?;
        return Ok(());
    }
    let (_, locked_until) = db.write(|c| {
        let r = store::count_verify_failure(c, id, ACCOUNT_MAX_FAILURES, now + ACCOUNT_LOCK_SECS)?;
        if r.1 > now {
            audit(c, Some(id), now, "account_locked")?;
        }
        Ok(r)
    })?;
    if locked_until > now {
        return Err(locked(locked_until - now));
    }
    Err(WRONG)
}

/// `POST /api/v1/me/mfa/totp/disable`.
pub fn disable(
    app: &App,
    db: &Db,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let id = who.account.id;
    // Without a password and without TOTP there is nothing to confirm with — and nothing
    // to protect: disabling is a no-op.
    let nothing_to_do =
        who.account.password_hash.is_none() && !db.read(|c| store::totp_enabled(c, id))?;
    if !nothing_to_do {
        confirm(app, db, who, body, now)?;
    }
    db.write(|c| {
        if store::clear_totp(c, id)? {
            audit(c, Some(id), now, "mfa_disabled")?;
        }
        Ok(())
    })?;
    Ok(json!({ "disabled": true }))
}

/// `POST /api/v1/me/mfa/backup-codes/regenerate`.
pub fn regenerate(
    app: &App,
    db: &Db,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    confirm(app, db, who, body, now)?;
    const NOT_ENABLED: Error = Error::BadRequest("TOTP is not enabled for this account.");
    let id = who.account.id;
    if !db.read(|c| store::totp_enabled(c, id))? {
        return Err(NOT_ENABLED);
    }
    let BackupCodes {
        codes,
        salt,
        hashes,
    } = new_backup_codes(&app.keys)?;
    db.write(|c| {
        if !store::totp_enabled(c, id)? {
            return Err(NOT_ENABLED);
        }
        store::replace_backup_codes(c, id, &salt, &hashes)?;
        audit(c, Some(id), now, "backup_codes_regenerated")
    })?;
    Ok(json!({ "backupCodes": codes }))
}

// ---------------------------------------------------------------------------------------
// Login, verify, refresh

/// Failed logins per client address in a sliding minute.
pub struct LoginLimiter {
    limit: u32,
    failures: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
}

/// Bound on the addresses remembered; past it, stale entries are dropped first.
const LIMITER_MAX_ADDRESSES: usize = 100_000;

impl LoginLimiter {
    pub fn new(limit: u32) -> Self {
        LoginLimiter {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `429` when `ip` already has `limit` failures in the last 60 s.
    pub fn check(&self, ip: Option<IpAddr>, now: i64) -> Result<(), Error> {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return Ok(());
        };
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(times) = map.get(&ip) else {
            return Ok(());
        };
        let recent: Vec<i64> = times.iter().copied().filter(|t| *t > now - 60).collect();
        if recent.len() >= self.limit as usize {
            let oldest = recent.first().copied().unwrap_or(now);
            return Err(Error::TooManyRequests {
                message: "Too many failed login attempts. Try again later.",
                retry_after: (oldest + 60 - now).max(1) as u64,
            });
        }
        Ok(())
    }

    pub fn fail(&self, ip: Option<IpAddr>, now: i64) {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return;
        };
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= LIMITER_MAX_ADDRESSES {
            map.retain(|_, t| t.back().is_some_and(|last| *last > now - 60));
        }
        if map.len() >= LIMITER_MAX_ADDRESSES {
            log::warn!(
                "login throttle: more than {LIMITER_MAX_ADDRESSES} addresses failing at once"
            );
            return;
        }
        let times = map.entry(ip).or_default();
        while times.front().is_some_and(|t| *t <= now - 60) {
            times.pop_front();
        }
        times.push_back(now);
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }
}

/// A login's tokens: a JWT and a refresh token starting a new family.
fn issue_tokens(
    app: &App,
    c: &rusqlite::Connection,
    account: &Account,
    family: Option<&[u8]>,
    now: i64,
) -> Result<Value, Error> {
    let token = app
        .tokens
        .issue(account.id, account.email.as_deref(), now, ACCESS_TTL)
        .map_err(|e| {
            log::error!("signing a token failed: {e}");
            Error::Internal
        })?;
    let refresh: [u8; 32] = crypto::random()?;
    let new_family: [u8; 16];
    let family = match family {
        Some(f) => f,
        None => {
            new_family = crypto::random()?;
            &new_family
        }
    };
    store::insert_refresh_token(
        c,
        &app.keys.token_hash(&refresh),
        account.id,
        family,
        now + REFRESH_TTL,
    )?;
    Ok(json!({ "token": token, "refresh_token": HEXLOWER_PERMISSIVE.encode(&refresh) }))
}

/// `POST /api/auth`.
pub fn login(
    app: &App,
    db: &Db,
    body: &Map<String, Value>,
    ip: Option<IpAddr>,
    now: i64,
) -> Result<Value, Error> {
    const MISSING: &str = "Fields \"email\" and \"password\" are required strings.";
    let email = req_str(body, "email", MISSING)?;
    let password = req_str(body, "password", MISSING)?;
    app.login_limiter.check(ip, now)?;
    let account = if email.len() <= 320 {
        db.read(|c| store::account_by_email(c, email))?
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
            app.login_limiter.fail(ip, now);
            db.write(|c| audit(c, account.map(|a| a.id), now, "login_failed"))?;
            return Err(Error::Unauthenticated(INVALID_CREDENTIALS));
        }
    };
    if check == PasswordCheck::RightButWeak {
        let upgraded = crypto::hash_password(password, crypto::PASSWORD_ITERATIONS)?;
        db.write(|c| Ok(store::set_password(c, account.id, &upgraded)?))?;
    }
    let id = account.id;
    if !db.read(|c| store::totp_enabled(c, id))? {
        return db.write(|c| issue_tokens(app, c, &account, None, now));
    }
    let challenge: [u8; 32] = crypto::random()?;
    let hash = app.keys.token_hash(&challenge);
    let remaining = db.write(|c| {
        store::insert_challenge(c, &hash, id, now + CHALLENGE_TTL)?;
        Ok(store::backup_codes_remaining(c, id)?)
    })?;
    let methods: &[&str] = if remaining > 0 {
        &["totp", "backup_code"]
    } else {
        &["totp"]
    };
    Ok(json!({
        "mfa_required": true,
        "mfa_token": HEXLOWER_PERMISSIVE.encode(&challenge),
        "mfa_methods": methods,
    }))
}

fn locked(retry_after: i64) -> Error {
    Error::TooManyRequests {
        message: "Too many failed attempts. Try again later.",
        retry_after: retry_after.max(1) as u64,
    }
}

/// Decodes a 64-hex-character token into its 32 bytes.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = HEXLOWER_PERMISSIVE.decode(s.trim().as_bytes()).ok()?;
    bytes.try_into().ok()
}

enum Kind {
    Totp,
    Backup,
}

/// The account a live challenge belongs to, and its TOTP state.
fn challenge_and_state(
    c: &rusqlite::Connection,
    challenge_hash: &[u8; 32],
    now: i64,
) -> Result<(i64, store::Totp), Error> {
    let challenge = match store::challenge(c, challenge_hash)? {
        Some(ch) if ch.expires_at > now => ch,
        _ => return Err(Error::Rejected(INVALID_CHALLENGE)),
    };
    let state = store::totp(c, challenge.account_id)?.unwrap_or_default();
    Ok((challenge.account_id, state))
}

/// `POST /api/auth/mfa/verify`.
pub fn verify(app: &App, db: &Db, body: &Map<String, Value>, now: i64) -> Result<Value, Error> {
    const MISSING: &str = "Fields \"mfaToken\" and \"code\" are required strings.";
    let token = req_str(body, "mfaToken", MISSING)?;
    let code = req_str(body, "code", MISSING)?;
    let kind = match opt_str(
        body,
        "type",
        "Field \"type\" must be \"totp\" or \"backup\".",
    )? {
        Some("totp") => Some(Kind::Totp),
        Some("backup") => Some(Kind::Backup),
        None => None,
        Some(_) => {
            return Err(Error::BadRequest(
                "Field \"type\" must be \"totp\" or \"backup\".",
            ))
        }
    };
    let challenge_hash = app
        .keys
        .token_hash(&hex32(token).ok_or(Error::Rejected(INVALID_CHALLENGE))?);
    let kind = kind.or_else(|| {
        if totp::normalize_code(code).is_some() {
            Some(Kind::Totp)
        } else if normalize_backup_code(code).is_some() {
            Some(Kind::Backup)
        } else {
            None
        }
    });
    // A backup code costs a PBKDF2, which must not run under the database lock: for one,
    // the challenge and the account's salt are read first and the hash computed outside.
    // A TOTP code is checked inside the transaction (a few microseconds), so that path
    // is one transaction with no separate reads.
    let backup_hash = match kind {
        Some(Kind::Backup) => {
            let (_, state) = db.read(|c| challenge_and_state(c, &challenge_hash, now))?;
            if state.locked_until > now {
                return Err(locked(state.locked_until - now));
            }
            match (state.backup_salt, normalize_backup_code(code)) {
                (Some(salt), Some(code)) => Some(app.keys.backup_code_hash(&salt, &code)),
                _ => None,
            }
        }
        _ => None,
    };

    enum Outcome {
        Tokens(Value),
        /// TOTP was turned off after the challenge was issued: the challenge is void.
        Void,
        Locked(i64),
        Wrong {
            challenge_failures: i64,
            locked_until: i64,
        },
    }
    let outcome = db.write(|c| {
        let (id, state) = challenge_and_state(c, &challenge_hash, now)?;
        if state.locked_until > now {
            return Ok(Outcome::Locked(state.locked_until - now));
        }
        let Some(active) = state.active_secret.filter(|_| state.backup_salt.is_some()) else {
            store::take_challenge(c, &challenge_hash)?;
            return Ok(Outcome::Void);
        };
        let accepted = match (&kind, totp::normalize_code(code), &backup_hash) {
            (Some(Kind::Totp), Some(code), _) => {
                let secret = app.keys.open(&active, id)?;
                match totp::verify(secret.expose(), &code, now as u64) {
                    Some(step) => {
                        let fresh = store::accept_step(c, id, step as i64)?;
                        if !fresh {
                            audit(c, Some(id), now, "totp_replay_refused")?;
                        }
                        fresh
                    }
                    None => false,
                }
            }
            (Some(Kind::Backup), _, Some(hash)) => {
                let spent = store::spend_backup_code(c, id, hash)?;
                if spent {
                    audit(c, Some(id), now, "backup_code_used")?;
                }
                spent
            }
            _ => false,
        };
        if accepted {
            // Exactly one request wins a challenge; a loser's step or backup code is
            // rolled back with this error.
            if !store::take_challenge(c, &challenge_hash)? {
                return Err(Error::Rejected(INVALID_CHALLENGE));
            }
            store::reset_verify_failures(c, id)?;
            let account = store::account_by_id(c, id)?.ok_or(Error::Rejected(INVALID_CHALLENGE))?;
            return Ok(Outcome::Tokens(issue_tokens(app, c, &account, None, now)?));
        }
        let challenge_failures = store::count_challenge_failure(c, &challenge_hash)?;
        let (_, locked_until) =
            store::count_verify_failure(c, id, ACCOUNT_MAX_FAILURES, now + ACCOUNT_LOCK_SECS)?;
        if locked_until > now {
            audit(c, Some(id), now, "account_locked")?;
        }
        if challenge_failures >= CHALLENGE_MAX_FAILURES {
            store::take_challenge(c, &challenge_hash)?;
            audit(c, Some(id), now, "challenge_locked")?;
        }
        Ok(Outcome::Wrong {
            challenge_failures,
            locked_until,
        })
    })?;
    match outcome {
        Outcome::Tokens(body) => Ok(body),
        Outcome::Void => Err(Error::Rejected(INVALID_CHALLENGE)),
        Outcome::Locked(secs) => Err(locked(secs)),
        Outcome::Wrong {
            challenge_failures, ..
        } if challenge_failures >= CHALLENGE_MAX_FAILURES => Err(Error::TooManyRequests {
            message: "Too many failed attempts. Please log in again.",
            retry_after: 1,
        }),
        Outcome::Wrong { locked_until, .. } if locked_until > now => {
            Err(locked(locked_until - now))
        }
        Outcome::Wrong {
            challenge_failures: 0,
            ..
        } => Err(Error::Rejected(INVALID_CHALLENGE)),
        Outcome::Wrong { .. } => Err(Error::Rejected(INVALID_CODE)),
    }
}

/// `POST /api/auth/refresh`: rotation with reuse detection (OAuth 2.0 Security BCP
/// §4.14.2). A token that was already exchanged revokes its whole family.
pub fn refresh(app: &App, db: &Db, body: &Map<String, Value>, now: i64) -> Result<Value, Error> {
    const INVALID: Error = Error::Unauthenticated("Invalid or expired refresh token.");
    let token = req_str(
        body,
        "refresh_token",
        "Field \"refresh_token\" is required and must be a string.",
    )?;
    let hash = app.keys.token_hash(&hex32(token).ok_or(INVALID)?);
    enum Outcome {
        Tokens(Value),
        Reused,
        Invalid,
    }
    let outcome = db.write(|c| {
        let Some(row) = store::refresh_token(c, &hash)? else {
            return Ok(Outcome::Invalid);
        };
        if row.rotated {
            let n = store::revoke_family(c, &row.family)?;
            audit(c, Some(row.account_id), now, "refresh_reuse_detected")?;
            log::warn!(
                "refresh token reuse: revoked {n} tokens of account {}",
                row.account_id
            );
            return Ok(Outcome::Reused);
        }
        if row.expires_at <= now || !store::rotate_refresh_token(c, &hash)? {
            return Ok(Outcome::Invalid);
        }
        let Some(account) = store::account_by_id(c, row.account_id)? else {
            return Ok(Outcome::Invalid);
        };
        Ok(Outcome::Tokens(issue_tokens(
            app,
            c,
            &account,
            Some(&row.family),
            now,
        )?))
    })?;
    match outcome {
        Outcome::Tokens(body) => Ok(body),
        Outcome::Reused | Outcome::Invalid => Err(INVALID),
    }
}

/// `GET /healthz`.
pub fn health(db: &Db) -> Result<Value, Error> {
    db.ping()?;
    Ok(json!({ "status": "ok" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_codes_have_the_documented_shape_and_are_distinct() {
        let keys = Keys::derive(&[3u8; 32]).unwrap();
        let BackupCodes {
            codes,
            salt,
            hashes,
        } = new_backup_codes(&keys).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            let plain = normalize_backup_code(code).unwrap();
            assert!(plain.bytes().all(|b| BACKUP_ALPHABET.contains(&b)));
            assert!(hashes.contains(&keys.backup_code_hash(&salt, &plain)));
        }
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
    }

    #[test]
    fn backup_code_input_is_forgiving_but_exact() {
        assert_eq!(
            normalize_backup_code("ABCD-EFGH").as_deref(),
            Some("abcdefgh")
        );
        assert_eq!(
            normalize_backup_code(" abcd efgh ").as_deref(),
            Some("abcdefgh")
        );
        assert_eq!(
            normalize_backup_code("abcdefgh").as_deref(),
            Some("abcdefgh")
        );
        for bad in [
            "abcd-efg",
            "abcd-efghj",
            "abcd-efg0",
            "abcd-efgl",
            "abcd_efgh",
            "",
        ] {
            assert_eq!(normalize_backup_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn login_limiter_slides_and_forgets() {
        let l = LoginLimiter::new(3);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for t in 0..3 {
            assert!(l.check(ip, 100 + t).is_ok());
            l.fail(ip, 100 + t);
        }
        match l.check(ip, 103) {
            Err(Error::TooManyRequests { retry_after, .. }) => assert_eq!(retry_after, 57),
            other => panic!("{other:?}"),
        }
        assert!(l.check(Some(IpAddr::from([10, 0, 0, 2])), 103).is_ok());
        assert!(l.check(ip, 161).is_ok(), "the first failure has slid out");
        assert!(LoginLimiter::new(0).check(ip, 103).is_ok());
    }
}
