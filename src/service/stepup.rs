//! Step-up MFA and the current user: a relying service asks a signed-in user for a
//! fresh second factor before a sensitive action (Storno: creating API tokens, deleting
//! the account), then redeems the verification once. The answer goes through the same
//! rule as login verify, so replay, single use, failure counts and the lock are shared:
//! a TOTP step accepted here is refused at login verify and the other way round.

use data_encoding::HEXLOWER_PERMISSIVE;
use serde_json::{json, Map, Value};

use crate::crypto;
use crate::error::Error;
use crate::store::{Db, Purpose};
use crate::time::rfc3339;

use super::login::{new_challenge, parse_kind, read_answer};
use super::second_factor::{self, Asker, Verdict};
use super::{hex32, locked, req_str, App, Principal};

/// How long a passed step-up may wait to be redeemed.
pub const VERIFICATION_TTL: i64 = 120;

const INVALID_CHALLENGE: Error = Error::Rejected("Invalid or expired challenge.");

/// `POST /api/v1/mfa/challenge`.
pub fn challenge(app: &App, who: &Principal, now: i64) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let id = who.account.id;
    if !db.read(|tx| tx.second_factors(id))?.any() {
        return Ok(json!({ "mfa_required": false }));
    }
    let (token, methods) = new_challenge(app, db, id, Purpose::StepUp, now)?;
    Ok(json!({
        "mfa_required": true,
        "challenge_token": token,
        "methods": methods,
    }))
}

/// `POST /api/v1/mfa/verify`.
pub fn verify(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    origins: impl FnOnce() -> Vec<String>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    const BAD_TYPE: &str =
        "Field \"type\" must be \"totp\", \"backup\", \"backup_code\" or \"passkey\".";
    let token = req_str(body, "challengeToken", "Missing challengeToken.")?;
    let kind = parse_kind(body, BAD_TYPE)?;
    let answer = read_answer(body, kind, origins)?;
    let challenge = app.keys.token_hash(&hex32(token).ok_or(INVALID_CHALLENGE)?);
    let asker = Asker::StepUp {
        challenge: &challenge,
        account: who.account.id,
    };
    let verification: [u8; 32] = crypto::random()?;
    let hash = app.keys.token_hash(&verification);
    let verdict = second_factor::check(app, db, asker, &answer, now, |tx, id| {
        tx.insert_verification(&hash, id, answer.method(), now, now + VERIFICATION_TTL)
    })?;
    match verdict {
        Verdict::Accepted(()) => Ok(json!({
            "verification_token": HEXLOWER_PERMISSIVE.encode(&verification),
        })),
        Verdict::NoChallenge | Verdict::NoSecondFactor => Err(INVALID_CHALLENGE),
        Verdict::Wrong {
            challenge_dead: true,
            ..
        } => Err(Error::TooManyRequests {
            message: "Too many failed attempts. Please start again.",
            retry_after: 1,
        }),
        Verdict::Locked(secs)
        | Verdict::Wrong {
            locked_for: Some(secs),
            ..
        } => Err(locked(secs)),
        Verdict::Wrong { .. } => Err(Error::Rejected("Invalid verification.")),
    }
}

/// `POST /api/v1/mfa/verification/redeem`: once, by the account that passed it.
pub fn redeem(
    app: &App,
    who: &Principal,
    body: &Map<String, Value>,
    now: i64,
) -> Result<Value, Error> {
    let db: &Db = &app.db;
    const INVALID: Error = Error::Rejected("Invalid or expired verification.");
    let token = req_str(body, "verificationToken", "Missing verificationToken.")?;
    let hash = app.keys.token_hash(&hex32(token).ok_or(INVALID)?);
    let (method, at) = db
        .write(|tx| tx.take_verification(&hash, who.account.id, now))?
        .ok_or(INVALID)?;
    Ok(json!({ "verified": true, "method": method, "verifiedAt": rfc3339(at) }))
}

/// `GET /api/v1/me`: Storno's user shape (`mfaEnabled`: TOTP on or a passkey). mfad keeps no names, phone, locale or roles
/// of its own; those keys carry Storno's defaults so its frontend finds them.
pub fn me(app: &App, who: &Principal) -> Result<Value, Error> {
    let db: &Db = &app.db;
    let a = &who.account;
    let mfa_enabled = db.read(|tx| tx.second_factors(a.id))?.any();
    Ok(json!({
        "id": a.id.to_string(),
        "email": a.email,
        "firstName": null,
        "lastName": null,
        "phone": null,
        "locale": "en",
        "timezone": "UTC",
        "roles": ["ROLE_USER"],
        "active": true,
        "emailVerified": true,
        "mfaEnabled": mfa_enabled,
        "hasPassword": a.password_hash.is_some(),
        "createdAt": rfc3339(a.created_at),
        "updatedAt": a.updated_at.map(rfc3339),
        "lastConnectedAt": a.last_connected_at.map(rfc3339),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A redeem with a clock we hold: once, not twice, not after two minutes, not by
    /// another account.
    #[test]
    fn a_verification_redeems_once_within_two_minutes_for_its_account() {
        let dir = tempfile::tempdir().unwrap();
        let (db, app) = crate::service::test_app(dir.path());
        let (a, b) = db
            .write(|tx| {
                let a = tx.create_account("a@example.com", None, 1)?.unwrap();
                let b = tx.create_account("b@example.com", None, 1)?.unwrap();
                Ok((tx.account_by_id(a)?.unwrap(), tx.account_by_id(b)?.unwrap()))
            })
            .unwrap();
        let who = |account| Principal {
            account,
            label: String::new(),
            sid: None,
            amr: Vec::new(),
        };
        let (alice, bob) = (who(a), who(b));
        let t0 = 1_800_000_000;
        let issue = |token: &[u8; 32]| {
            db.write(|tx| {
                tx.insert_verification(
                    &app.keys.token_hash(token),
                    alice.account.id,
                    "totp",
                    t0,
                    t0 + VERIFICATION_TTL,
                )
            })
            .unwrap();
            let mut body = Map::new();
            body.insert(
                "verificationToken".into(),
                HEXLOWER_PERMISSIVE.encode(token).into(),
            );
            body
        };
        let body = issue(&[1u8; 32]);
        let invalid = Err(Error::Rejected("Invalid or expired verification."));
        assert_eq!(
            redeem(&app, &bob, &body, t0 + 1),
            invalid,
            "another account"
        );
        let v = redeem(&app, &alice, &body, t0 + 1).unwrap();
        assert_eq!(
            v,
            json!({"verified": true, "method": "totp", "verifiedAt": rfc3339(t0)})
        );
        assert_eq!(redeem(&app, &alice, &body, t0 + 2), invalid, "twice");
        let late = issue(&[2u8; 32]);
        assert_eq!(
            redeem(&app, &alice, &late, t0 + VERIFICATION_TTL),
            invalid,
            "at two minutes"
        );
        let just = issue(&[3u8; 32]);
        assert!(redeem(&app, &alice, &just, t0 + VERIFICATION_TTL - 1).is_ok());
    }
}
