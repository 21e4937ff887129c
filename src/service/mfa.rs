//! The account's own TOTP settings: setup (the seed endpoint), enable, status, disable,
//! and regenerating backup codes, with the confirmation the last two ask for.

use data_encoding::{BASE32_NOPAD, BASE64};
use serde_json::{json, Map, Value};

use crate::crypto::{self, PasswordCheck};
use crate::error::Error;
use crate::store::Db;
use crate::totp;

use super::second_factor::{self, new_backup_codes, Answer, Asker, BackupCodes, Verdict};
use super::{audit, locked, req_str, App, Principal};

/// Storno's sentences, word for word.
const INVALID_CODE: Error = Error::Unprocessable("Invalid code. Please try again.");
const ALREADY_ENABLED: Error = Error::Conflict("TOTP is already enabled.");

/// `POST /api/v1/me/mfa/totp/setup`.
pub fn setup(app: &App, who: &Principal) -> Result<Value, Error> {
    let db: &Db = &app.db;
    // 160 bits: RFC 4226 §4 recommends it, and it is the HMAC-SHA1 block-friendly size
    // every app expects; it gives exactly 32 base32 characters with no padding.
    let mut secret: [u8; 20] = crypto::random()?;
    let sealed = app.keys.seal(&secret, who.account.id)?;
    let encoded = BASE32_NOPAD.encode(&secret);
    crypto::wipe(&mut secret);
    // Render first, store second: a setup refused here (an account name too long for a
    // QR code) must leave the pending secret the user may already have scanned alone.
    let uri = totp::otpauth_uri(&app.issuer, &who.label, &encoded);
    let png = crate::qr::otpauth_png(&uri).map_err(|e| {
        log::warn!("QR rendering failed for a {}-byte URI: {e}", uri.len());
        Error::BadRequest("The account name is too long to fit in a QR code.")
    })?;
    if !db.write(|tx| tx.set_pending_secret(who.account.id, &sealed))? {
        return Err(ALREADY_ENABLED);
    }
    let mut qr = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    qr.push_str("data:image/png;base64,");
    qr.push_str(&BASE64.encode(&png));
    Ok(json!({ "secret": encoded, "otpauthUri": uri, "qrCode": qr }))
}

/// `POST /api/v1/me/mfa/totp/enable`.
pub fn enable(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let code = req_str(body, "code", "Missing code.")?;
    let id = who.account.id;
    let state = db.read(|tx| tx.totp(id))?.unwrap_or_default();
    if state.active_secret.is_some() {
        return Err(ALREADY_ENABLED);
    }
    // No setup in progress and a wrong code get the same answer (Storno's).
    let pending = state.pending_secret.ok_or(INVALID_CODE)?;
    let code = totp::normalize_code(code).ok_or(INVALID_CODE)?;
    let secret = app.keys.open(&pending, id)?;
    let Some(step) = totp::verify(secret.expose(), &code, now as u64) else {
        db.write(|tx| second_factor::suspect_drift(tx, id, secret.expose(), &code, now))?;
        return Err(INVALID_CODE);
    };
    let BackupCodes {
        codes,
        salt,
        hashes,
    } = new_backup_codes(&app.keys)?;
    db.write(|tx| {
        // The secret that becomes active is exactly the one the code was checked against.
        if !tx.activate_secret(id, &pending, step as i64, &salt, now)? {
            // A setup made meanwhile replaced the secret this code was checked against.
            return Err(match tx.totp_enabled(id)? {
                true => ALREADY_ENABLED,
                false => INVALID_CODE,
            });
        }
        tx.replace_backup_codes(id, &salt, &hashes)?;
        // A login made before the second factor existed must not outlive it.
        tx.revoke_sessions(id)?;
        audit(tx, Some(id), now, "mfa_enabled")
    })?;
    Ok(json!({ "enabled": true, "backupCodes": codes }))
}

/// `GET /api/v1/me/mfa/status`.
pub fn status(app: &App, who: &Principal) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let f = db.read(|tx| tx.second_factors(who.account.id))?;
    Ok(json!({
        "totpEnabled": f.totp,
        "backupCodesRemaining": f.backup_codes,
        "passkeysCount": f.passkeys,
    }))
}

/// How a sensitive change is confirmed: the password of a local account, or, for an
/// account without one, a current TOTP code or a backup code (which is spent), checked
/// by the one second-factor rule.
fn confirm(
    app: &App,
    db: &Db,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<(), Error> {
    let id = who.account.id;
    if let Some(stored) = &who.account.password_hash {
        // Storno: a missing password, or one of another type, is an incorrect one.
        let Some(Value::String(password)) = body.get("password") else {
            return Err(Error::WrongPassword);
        };
        // With a stolen access token this is a password oracle: wrong passwords count
        // against the account like wrong codes, and a locked account is not even checked.
        if let Some(secs) = second_factor::locked_for(db, id, now)? {
            return Err(locked(secs));
        }
        return match crypto::verify_password(stored, password) {
            PasswordCheck::Wrong => {
                match db.write(|tx| second_factor::count_wrong(tx, id, now, "password"))? {
                    Some(secs) => Err(locked(secs)),
                    None => Err(Error::WrongPassword),
                }
            }
            PasswordCheck::Right | PasswordCheck::RightButWeak => {
                db.write(|tx| tx.reset_verify_failures(id))?;
                Ok(())
            }
        };
    }
    let Some(Value::String(code)) = body.get("code") else {
        return Err(INVALID_CODE);
    };
    let answer = Answer::parse(code, None);
    let asker = Asker::Account(id);
    match second_factor::check(app, db, asker, &answer, now, |_, _| Ok(()))? {
        Verdict::Accepted(()) => Ok(()),
        Verdict::Locked(secs)
        | Verdict::Wrong {
            locked_for: Some(secs),
            ..
        } => Err(locked(secs)),
        Verdict::Wrong { .. } | Verdict::NoSecondFactor | Verdict::NoChallenge => Err(INVALID_CODE),
    }
}

/// `POST /api/v1/me/mfa/totp/disable`.
pub fn disable(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let id = who.account.id;
    // Without a password and without TOTP there is nothing to confirm with — and nothing
    // to protect: disabling is a no-op.
    let nothing_to_do =
        who.account.password_hash.is_none() && !db.read(|tx| tx.totp_enabled(id))?;
    if !nothing_to_do {
        confirm(app, db, who, body, now)?;
    }
    db.write(|tx| {
        if tx.clear_totp(id)? {
            // Whoever turned the second factor off, every other login ends with it.
            tx.revoke_sessions(id)?;
            audit(tx, Some(id), now, "mfa_disabled")?;
        }
        Ok(())
    })?;
    Ok(json!({ "disabled": true }))
}

/// `POST /api/v1/me/mfa/backup-codes/regenerate`.
pub fn regenerate(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    confirm(app, db, who, body, now)?;
    const NOT_ENABLED: Error = Error::BadRequest("MFA is not enabled.");
    let id = who.account.id;
    if !db.read(|tx| tx.totp_enabled(id))? {
        return Err(NOT_ENABLED);
    }
    let BackupCodes {
        codes,
        salt,
        hashes,
    } = new_backup_codes(&app.keys)?;
    db.write(|tx| {
        if !tx.totp_enabled(id)? {
            return Err(NOT_ENABLED);
        }
        tx.replace_backup_codes(id, &salt, &hashes)?;
        audit(tx, Some(id), now, "backup_codes_regenerated")
    })?;
    Ok(json!({ "backupCodes": codes }))
}
