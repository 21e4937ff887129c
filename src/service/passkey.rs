//! Passkeys (WebAuthn): registering one, listing and removing them, the passwordless
//! login, and the options of the ceremonies in which a passkey answers an MFA or
//! step-up challenge (the answer itself goes through the one second-factor rule). The
//! checks of the bytes are `crate::webauthn`'s, the assertion check `assertion.rs`'s;
//! this file runs the ceremonies: it finds the ceremony and the credential, and keeps
//! the books of single-use ceremonies. It may call `assertion`, `login` (tokens) and
//! `second_factor` (whose challenge a passkey answers); none of them calls it.
//!
//! A ceremony is found by the keyed hash of the challenge its clientDataJSON names, and
//! taken (deleted) once: that lookup is the challenge check, so a challenge nobody was
//! given, or one already answered, finds nothing.

use data_encoding::{BASE64URL_NOPAD, HEXLOWER_PERMISSIVE};
use serde_json::{json, Map, Value};

use crate::auth::{Login, SignIn};
use crate::crypto;
use crate::error::Error;
use crate::store::{Ceremony, Db, Passkey, Purpose, Tx};
use crate::time::rfc3339;
use crate::webauthn::{self, Expected, Refusal};

use super::assertion::{
    book, credential_id, credential_parts, judge, refused, response_field, Assertion,
    INVALID_RESPONSE_TYPE,
};
use super::login::issue_tokens;
use super::second_factor::challenge_account;
use super::{audit, hex32, locked, opt_str, req_str, App, Principal, CHALLENGE_TTL};

/// Passkeys one account may register.
pub const MAX_PASSKEYS: usize = 20;
/// What the options tell the browser to wait for the user, in milliseconds.
const TIMEOUT_MS: u32 = 60_000;
/// The longest passkey name kept.
const MAX_NAME_CHARS: usize = 64;

const CHALLENGE_NOT_FOUND: Error = Error::BadRequest("Challenge expired or not found.");
const MISSING_CREDENTIAL: Error = Error::BadRequest("Missing credential.");
const NO_PASSKEYS: Error = Error::BadRequest("No passkeys available.");
const ASSERTION_FAILED: Error = Error::Rejected("Assertion verification failed.");

/// A new ceremony's challenge: 32 random bytes, stored as their keyed hash.
fn new_ceremony(app: &App, tx: &Tx<'_>, ceremony: Ceremony<'_>, now: i64) -> Result<String, Error> {
    let challenge: [u8; 32] = crypto::random()?;
    tx.insert_ceremony(
        &app.keys.token_hash(&challenge),
        ceremony,
        now + CHALLENGE_TTL,
    )?;
    Ok(BASE64URL_NOPAD.encode(&challenge))
}

fn descriptors(passkeys: &[Passkey]) -> Vec<Value> {
    passkeys
        .iter()
        .map(|p| json!({ "type": "public-key", "id": BASE64URL_NOPAD.encode(&p.credential_id) }))
        .collect()
}

/// The UUID form of a passkey's id.
fn uuid(id: &[u8; 16]) -> String {
    let h = HEXLOWER_PERMISSIVE.encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if s.len() != 36 || hex.len() != 32 {
        return None;
    }
    HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()?
        .try_into()
        .ok()
}

/// A random id, shaped as a version 4 UUID (RFC 9562 §5.4).
fn new_id() -> Result<[u8; 16], Error> {
    let mut id: [u8; 16] = crypto::random()?;
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(id)
}

fn summary(p: &Passkey) -> Value {
    json!({
        "id": uuid(&p.id),
        "name": p.name,
        "createdAt": rfc3339(p.created_at),
        "lastUsedAt": p.last_used_at.map(rfc3339),
    })
}

/// `POST /api/v1/passkey/register/options`.
pub fn register_options(app: &App, who: &Principal, now: i64) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let id = who.account.id;
    let fresh: [u8; 16] = crypto::random()?;
    let (handle, passkeys, challenge) = db.write(|tx| {
        let passkeys = tx.passkeys(id)?;
        if passkeys.len() >= MAX_PASSKEYS {
            return Err(TOO_MANY);
        }
        let handle = tx.ensure_user_handle(id, &fresh)?;
        let challenge = new_ceremony(app, tx, Ceremony::Register { account: id }, now)?;
        Ok((handle, passkeys, challenge))
    })?;
    Ok(json!({
        "challenge": challenge,
        "rp": { "name": app.rp.name, "id": app.rp.id },
        "user": {
            "id": BASE64URL_NOPAD.encode(&handle),
            "name": who.label,
            "displayName": who.label,
        },
        "pubKeyCredParams": [
            { "type": "public-key", "alg": webauthn::Alg::Es256.id() },
            { "type": "public-key", "alg": webauthn::Alg::EdDsa.id() },
            { "type": "public-key", "alg": webauthn::Alg::Rs256.id() },
        ],
        "timeout": TIMEOUT_MS,
        "excludeCredentials": descriptors(&passkeys),
        "authenticatorSelection": {
            "residentKey": "preferred",
            "userVerification": "preferred",
        },
        "attestation": "none",
    }))
}

const TOO_MANY: Error = Error::BadRequest("At most 20 passkeys can be registered per account.");

/// The name a passkey is registered under: trimmed, no control characters, at most
/// [`MAX_NAME_CHARS`]; "Passkey" when none is given.
fn passkey_name(body: &Map<String, Value>) -> Result<String, Error> {
    const BAD: Error = Error::BadRequest(
        "Field \"name\" must be text of at most 64 characters, without control characters.",
    );
    let name = opt_str(body, "name", "Field \"name\" must be a string.")?
        .map(str::trim)
        .unwrap_or("");
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(BAD);
    }
    Ok(if name.is_empty() { "Passkey" } else { name }.to_string())
}

/// `POST /api/v1/passkey/register`.
pub fn register(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    origins: &[String],
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let id = who.account.id;
    // Storno's frontend sends `{name, credential}`; the credential alone is fine too.
    let credential = match body.get("credential") {
        Some(Value::Null) | None if body.contains_key("response") => body,
        Some(Value::Null) | None => return Err(MISSING_CREDENTIAL),
        Some(c) => c.as_object().ok_or(INVALID_RESPONSE_TYPE)?,
    };
    let name = passkey_name(body)?;
    let (credential, response) = credential_parts(credential)?;
    let (Some(client_data_json), Some(attestation)) = (
        response_field(response, "clientDataJSON"),
        response_field(response, "attestationObject"),
    ) else {
        return Err(INVALID_RESPONSE_TYPE);
    };
    let challenge = webauthn::client_challenge(&client_data_json)
        .ok_or(Error::BadRequest(Refusal::ClientData.attestation_message()))?;
    let expected = Expected {
        challenge: &challenge,
        origins,
        rp_id: &app.rp.id,
    };
    let sent_id = credential_id(credential);
    let verified = webauthn::verify_registration(
        &client_data_json,
        &attestation,
        &expected,
        &crypto::generator(),
    );
    let passkey_id = new_id()?;
    let key = app.keys.token_hash(&challenge);
    let outcome = db.write(|tx| {
        if !tx.take_ceremony(&key, Ceremony::Register { account: id }, now)? {
            return Err(CHALLENGE_NOT_FOUND);
        }
        let fail = |reason: &'static str, error: Error| -> Result<Result<Passkey, Error>, Error> {
            refused(tx, Some(id), now, reason)?;
            Ok(Err(error))
        };
        let registered = match verified {
            Ok(r) => r,
            Err(r) => return fail(r.reason(), Error::BadRequest(r.attestation_message())),
        };
        let credential = registered.credential;
        if sent_id.is_ok_and(|sent| sent != credential.id) {
            return fail(
                "credential id mismatch",
                Error::BadRequest(
                    "Attestation verification failed: the credential id is not the attested one.",
                ),
            );
        }
        let before = tx.second_factors(id)?;
        if before.passkeys >= MAX_PASSKEYS as i64 {
            return fail("too many passkeys", TOO_MANY);
        }
        let passkey = Passkey {
            id: passkey_id,
            account_id: id,
            credential_id: credential.id,
            public_key: credential.cose_key,
            alg: credential.public_key.alg().id(),
            sign_count: i64::from(registered.sign_count),
            name: name.clone(),
            created_at: now,
            last_used_at: None,
        };
        if !tx.insert_passkey(&passkey)? {
            return fail(
                "credential already registered",
                Error::BadRequest(
                    "Attestation verification failed: this passkey is registered already.",
                ),
            );
        }
        if !before.any() {
            // The account's first second factor: a login made without one must not
            // outlive it (as when TOTP is enabled).
            tx.revoke_sessions(id)?;
        }
        audit(tx, Some(id), now, "passkey_registered")?;
        Ok(Ok(passkey))
    })??;
    Ok(json!({
        "id": uuid(&outcome.id),
        "name": outcome.name,
        "createdAt": rfc3339(outcome.created_at),
    }))
}

/// `GET /api/v1/me/passkeys`.
pub fn list(app: &App, who: &Principal) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let passkeys = db.read(|tx| tx.passkeys(who.account.id))?;
    Ok(Value::Array(passkeys.iter().map(summary).collect()))
}

/// `DELETE /api/v1/me/passkeys/{id}`; another account's passkey is as unknown as none.
pub fn delete(app: &App, who: &Principal, id: &str, now: i64) -> Result<(), Error> {
    let db: &Db = &app.db;
    const NOT_FOUND: Error = Error::NoSuch("Passkey not found.");
    let id = parse_uuid(id).ok_or(NOT_FOUND)?;
    let account = who.account.id;
    db.write(|tx| {
        if !tx.delete_passkey(account, &id)? {
            return Err(NOT_FOUND);
        }
        audit(tx, Some(account), now, "passkey_removed")
    })
}

/// Assertion options for the passkeys of `account`, bound to the MFA or step-up
/// challenge `challenge` (its keyed hash).
fn second_factor_options(
    app: &App,
    tx: &Tx<'_>,
    account: i64,
    challenge: &[u8; 32],
    now: i64,
) -> Result<Value, Error> {
    let passkeys = tx.passkeys(account)?;
    if passkeys.is_empty() {
        return Err(NO_PASSKEYS);
    }
    let ceremony = Ceremony::SecondFactor { account, challenge };
    let challenge = new_ceremony(app, tx, ceremony, now)?;
    Ok(json!({
        "challenge": challenge,
        "rpId": app.rp.id,
        "timeout": TIMEOUT_MS,
        "userVerification": "preferred",
        "allowCredentials": descriptors(&passkeys),
    }))
}

/// `POST /api/auth/mfa/passkey/options`.
pub fn mfa_options(app: &App, body: &Map<String, Value>, now: i64) -> Result<Value, Error> {
    let db: &Db = &app.db;
    const INVALID: Error = Error::Rejected("Invalid or expired MFA challenge.");
    let token = req_str(body, "mfaToken", "Missing mfaToken.")?;
    let hash = app.keys.token_hash(&hex32(token).ok_or(INVALID)?);
    db.write(|tx| {
        let account = challenge_account(tx, &hash, Purpose::Login, now)?.ok_or(INVALID)?;
        second_factor_options(app, tx, account, &hash, now)
    })
}

/// `POST /api/v1/mfa/passkey/options`: for a step-up challenge of the caller's own.
pub fn stepup_options(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    const INVALID: Error = Error::Rejected("Invalid or expired challenge.");
    let token = req_str(body, "challengeToken", "Missing challengeToken.")?;
    let hash = app.keys.token_hash(&hex32(token).ok_or(INVALID)?);
    db.write(|tx| {
        let account = challenge_account(tx, &hash, Purpose::StepUp, now)?
            .filter(|id| *id == who.account.id)
            .ok_or(INVALID)?;
        second_factor_options(app, tx, account, &hash, now)
    })
}

/// `POST /api/auth/passkey/login/options`: a discoverable-credential ceremony, open to
/// anyone, so throttled per client (an IPv4 address or IPv6 network) and capped in
/// number.
pub fn login_options(app: &App, ip: Option<std::net::IpAddr>, now: i64) -> Result<Value, Error> {
    let db: &Db = &app.db;
    // Every request counts: the place is never given back.
    let _counted = app.passkey_limiter.reserve(db, ip, now)?;
    app.ceremonies.open(now, now + CHALLENGE_TTL)?;
    let session: [u8; 16] = crypto::random()?;
    let session_hash = app.keys.token_hash(&session);
    let challenge = db.write(|tx| {
        new_ceremony(
            app,
            tx,
            Ceremony::Login {
                session: &session_hash,
            },
            now,
        )
    })?;
    Ok(json!({
        "challenge": challenge,
        "rpId": app.rp.id,
        "timeout": TIMEOUT_MS,
        "userVerification": "required",
        "allowCredentials": [],
        "sessionId": HEXLOWER_PERMISSIVE.encode(&session),
    }))
}

/// `POST /api/auth/passkey/login`: a passkey with user verification is both factors.
pub fn login(
    app: &App,
    body: &Map<String, Value>,
    origins: &[String],
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    use crate::metrics::{Event, METRICS};
    let result = passwordless(app, db, body, origins, now);
    match &result {
        Ok(_) => METRICS.event(Event::PasskeyLoginSuccess),
        Err(Error::TooManyRequests { .. }) => METRICS.event(Event::PasskeyLoginLocked),
        Err(e) if *e == ASSERTION_FAILED || *e == CHALLENGE_NOT_FOUND => {
            METRICS.event(Event::PasskeyLoginFailure)
        }
        Err(_) => {}
    }
    result
}

fn passwordless(
    app: &App,
    db: &Db,
    body: &Map<String, Value>,
    origins: &[String],
    now: i64,
) -> Result<Value, Error> {
    let session = req_str(body, "sessionId", "Missing session ID.")?;
    let credential = match body.get("credential") {
        None | Some(Value::Null) => return Err(MISSING_CREDENTIAL),
        Some(c) => c,
    };
    let session: [u8; 16] = HEXLOWER_PERMISSIVE
        .decode(session.trim().as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(CHALLENGE_NOT_FOUND)?;
    let session_hash = app.keys.token_hash(&session);
    let assertion = match Assertion::from_json(credential) {
        Ok(a) => a,
        Err(reason) => {
            db.write(|tx| refused(tx, None, now, reason))?;
            return Err(ASSERTION_FAILED);
        }
    };
    // The signature is checked before the write transaction, as backup-code hashes are.
    let (found, handle) = db.read(|tx| {
        let found = tx.passkey_by_credential(&assertion.credential_id)?;
        let handle = match &found {
            Some(p) => tx.user_handle(p.account_id)?,
            None => None,
        };
        Ok((found, handle))
    })?;
    let judged = judge(
        app,
        &assertion,
        origins,
        found,
        None,
        handle.as_deref(),
        true,
    );
    let key = assertion.ceremony_key(app);
    db.write(|tx| {
        let ceremony = Ceremony::Login {
            session: &session_hash,
        };
        if !tx.take_ceremony(&key, ceremony, now)? {
            return Err(CHALLENGE_NOT_FOUND);
        }
        if let Ok((pk, _)) = &judged {
            let locked_until = tx.totp(pk.account_id)?.map_or(0, |t| t.locked_until);
            if locked_until > now {
                return Ok(Err(locked(locked_until - now)));
            }
        }
        let Some(pk) = book(tx, &judged, None, now)? else {
            return Ok(Err(ASSERTION_FAILED));
        };
        let Some(account) = tx.account_by_id(pk.account_id)? else {
            return Ok(Err(ASSERTION_FAILED));
        };
        let login = Login {
            how: SignIn::Passkey,
            at: now,
        };
        Ok(Ok(issue_tokens(app, tx, &account, login, None, now)?))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkey_ids_are_uuids_both_ways() {
        let id = new_id().unwrap();
        let shown = uuid(&id);
        assert_eq!(shown.len(), 36);
        assert_eq!(&shown[14..15], "4", "version 4: {shown}");
        assert!("89ab".contains(&shown[19..20]), "RFC 9562 variant: {shown}");
        assert_eq!(parse_uuid(&shown), Some(id));
        assert_eq!(parse_uuid(&shown.to_uppercase()), Some(id));
        for bad in ["", "not-a-uuid", &shown[1..], &shown.replace('-', "")] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_bounded_and_default_to_passkey() {
        let body = |v: Value| json!({ "name": v }).as_object().unwrap().clone();
        assert_eq!(passkey_name(&Map::new()).unwrap(), "Passkey");
        assert_eq!(passkey_name(&body(json!("  Laptop  "))).unwrap(), "Laptop");
        assert_eq!(passkey_name(&body(json!(""))).unwrap(), "Passkey");
        assert_eq!(
            passkey_name(&body(json!("é".repeat(64))))
                .unwrap()
                .chars()
                .count(),
            64
        );
        assert!(passkey_name(&body(json!("é".repeat(65)))).is_err());
        assert!(passkey_name(&body(json!("a\nb"))).is_err());
        assert!(passkey_name(&body(json!(5))).is_err());
    }
}
