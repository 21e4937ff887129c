//! The passkey assertion check, apart from the ceremonies that ask for one: reading an
//! assertion from WebAuthn's JSON, judging it against the stored credential (the bytes
//! are checked by `crate::webauthn`), and booking the verdict (the sign counter, the
//! audit). `second_factor.rs` (an MFA or step-up answer) and `passkey.rs` (the
//! passwordless login, and registration, which reads a credential the same way) call
//! it; it calls `store`, `webauthn`, `crypto`, `metrics` and `mod.rs`'s `App` and audit
//! helper, and no other use case.

use data_encoding::BASE64URL_NOPAD;
use serde_json::{Map, Value};

use crate::crypto;
use crate::error::Error;
use crate::store::{Passkey, Tx};
use crate::webauthn::{self, Expected, Refusal, Stored};

use super::{audit, App};

pub(super) const INVALID_RESPONSE_TYPE: Error = Error::BadRequest("Invalid response type.");

/// Decodes a WebAuthn JSON binary field: base64url, padding tolerated.
fn b64url(s: &str) -> Option<Vec<u8>> {
    BASE64URL_NOPAD
        .decode(s.trim_end_matches('=').as_bytes())
        .ok()
}

/// A credential's `response` fields, decoded; `None` if one is absent, not a string, or
/// not base64url.
pub(super) fn response_field(response: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    response.get(name)?.as_str().and_then(b64url)
}

/// The id of a credential as the browser sent it: `rawId`, else `id` (the same bytes in
/// WebAuthn's JSON encoding); when both are there they must agree.
pub(super) fn credential_id(credential: &Map<String, Value>) -> Result<Vec<u8>, &'static str> {
    let field = |name| match credential.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => b64url(s).map(Some).ok_or("credential id is not base64url"),
        Some(_) => Err("credential id is not base64url"),
    };
    match (field("rawId")?, field("id")?) {
        (Some(raw), Some(id)) if raw != id => Err("id and rawId differ"),
        (Some(raw), _) => Ok(raw),
        (None, Some(id)) => Ok(id),
        (None, None) => Err("credential id missing"),
    }
}

/// A JSON object.
pub(super) type Object = Map<String, Value>;

/// The public-key credential of a request, and its `response` object.
pub(super) fn credential_parts(credential: &Object) -> Result<(&Object, &Object), Error> {
    match credential.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "public-key" => {}
        Some(_) => return Err(INVALID_RESPONSE_TYPE),
    }
    let response = credential
        .get("response")
        .and_then(Value::as_object)
        .ok_or(INVALID_RESPONSE_TYPE)?;
    Ok((credential, response))
}

/// An assertion as the browser sent it (WebAuthn's JSON encoding), decoded. Nothing
/// in it is trusted until [`judge`] and the ceremony's take have run.
#[derive(Clone, PartialEq, Eq)]
pub struct Assertion {
    pub credential_id: Vec<u8>,
    pub client_data_json: Vec<u8>,
    pub authenticator_data: Vec<u8>,
    pub signature: Vec<u8>,
    pub user_handle: Option<Vec<u8>>,
    /// The challenge clientDataJSON names: what finds the ceremony.
    pub challenge: Vec<u8>,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("credential_id_len", &self.credential_id.len())
            .finish_non_exhaustive()
    }
}

impl Assertion {
    /// Reads `{"id", "rawId", "type", "response": {"clientDataJSON",
    /// "authenticatorData", "signature", "userHandle"}}`. `Err` says what is wrong with
    /// it (for the audit trail), never a value.
    pub fn from_json(credential: &Value) -> Result<Assertion, &'static str> {
        let (credential, response) = credential
            .as_object()
            .ok_or(INVALID_RESPONSE_TYPE)
            .and_then(credential_parts)
            .map_err(|_| "not a public-key assertion")?;
        let client_data_json =
            response_field(response, "clientDataJSON").ok_or("clientDataJSON missing")?;
        let authenticator_data =
            response_field(response, "authenticatorData").ok_or("authenticatorData missing")?;
        let signature = response_field(response, "signature").ok_or("signature missing")?;
        let user_handle = match response.get("userHandle") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(b64url(s).ok_or("userHandle is not base64url")?),
            Some(_) => return Err("userHandle is not base64url"),
        };
        let challenge =
            webauthn::client_challenge(&client_data_json).ok_or("clientDataJSON is not valid")?;
        Ok(Assertion {
            credential_id: credential_id(credential)?,
            client_data_json,
            authenticator_data,
            signature,
            user_handle,
            challenge,
        })
    }

    /// The keyed hash of the challenge it names: the key of its ceremony.
    pub(super) fn ceremony_key(&self, app: &App) -> [u8; 32] {
        app.keys.token_hash(&self.challenge)
    }
}

/// A passkey answer to a challenge: the assertion, and the pages it may come from.
#[derive(Clone, PartialEq, Eq)]
pub struct PasskeyAnswer {
    pub assertion: Assertion,
    pub origins: Vec<String>,
}

/// What [`judge`] found: the passkey that signed and the counter it reached, or why the
/// assertion is refused (and whose credential it named, when it named a known one).
pub(super) type Judged = Result<(Passkey, i64), (Option<i64>, &'static str)>;

/// Checks an assertion against the stored credential (WebAuthn §7.2), without the
/// database: `found` is the passkey of the assertion's credential id, if any,
/// `account` the account it must belong to (none for a passwordless login) and
/// `handle` that account's user handle. Pure but for the clock-free signature check, so
/// it runs outside any write transaction.
pub(super) fn judge(
    app: &App,
    a: &Assertion,
    origins: &[String],
    found: Option<Passkey>,
    account: Option<i64>,
    handle: Option<&[u8]>,
    require_uv: bool,
) -> Judged {
    let pk = found.ok_or((None, "unknown credential"))?;
    let owner = Some(pk.account_id);
    if account.is_some_and(|id| id != pk.account_id) {
        return Err((None, "credential of another account"));
    }
    if let Some(sent) = &a.user_handle {
        if handle.is_none_or(|h| !crypto::ct_eq(h, sent)) {
            return Err((owner, "user handle mismatch"));
        }
    }
    let expected = Expected {
        challenge: &a.challenge,
        origins,
        rp_id: &app.rp.id,
    };
    let stored = Stored {
        cose_key: &pk.public_key,
        sign_count: u32::try_from(pk.sign_count).unwrap_or(u32::MAX),
    };
    let asserted = webauthn::verify_assertion(
        &a.client_data_json,
        &a.authenticator_data,
        &a.signature,
        &expected,
        stored,
        require_uv,
    )
    .map_err(|r| (owner, r.reason()))?;
    Ok((pk, i64::from(asserted.sign_count)))
}

/// Books a judged assertion whose ceremony was taken: the counter moves (in one
/// statement, so two uses of one signature cannot both pass), `lastUsedAt` is set, and
/// the audit says what happened. Returns the passkey when it is accepted.
pub(super) fn book(
    tx: &Tx<'_>,
    judged: &Judged,
    account: Option<i64>,
    now: i64,
) -> Result<Option<Passkey>, Error> {
    match judged {
        Ok((pk, count)) => {
            if tx.use_passkey(&pk.id, *count, now)? {
                audit(tx, Some(pk.account_id), now, "passkey_used")?;
                return Ok(Some(pk.clone()));
            }
            refused(tx, Some(pk.account_id), now, Refusal::Counter.reason())?;
            Ok(None)
        }
        // A refusal is the asker's; at a passwordless login, the named credential's.
        Err((owner, reason)) => {
            refused(tx, account.or(*owner), now, reason)?;
            Ok(None)
        }
    }
}

/// Audits a refused passkey with its reason; a counter that did not grow also as a
/// possibly cloned authenticator.
pub(super) fn refused(
    tx: &Tx<'_>,
    account: Option<i64>,
    now: i64,
    reason: &str,
) -> Result<(), Error> {
    tx.audit(account, now, "passkey_refused", Some(reason))?;
    log::info!(
        "audit: passkey_refused account={} reason={reason}",
        account.map_or("-".to_string(), |id| id.to_string())
    );
    if reason == Refusal::Counter.reason() {
        audit(tx, account, now, "passkey_counter_regression")?;
        crate::metrics::METRICS.event(crate::metrics::Event::PasskeyCounterRegression);
        log::warn!("a passkey's sign counter did not grow: possibly a cloned authenticator");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Tokens;
    use crate::crypto::Keys;
    use crate::service::ThrottleSettings;
    use crate::store::Db;
    use serde_json::json;

    /// An App on a database of its own (kept while the directory lives).
    fn app() -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("t.db"),
            crate::durability::Durability::Normal,
        );
        let db = std::sync::Arc::new(db.unwrap());
        let keys = Keys::derive(&[5u8; 32]).unwrap();
        let tokens = Tokens::new(&keys, "mfad", None, None).unwrap();
        let rp = webauthn::RelyingParty {
            id: "localhost".into(),
            name: "Storno".into(),
        };
        (
            dir,
            App::new(
                db,
                keys,
                tokens,
                "Storno".into(),
                ThrottleSettings::default(),
                rp,
            )
            .unwrap(),
        )
    }

    /// The ES256 vector of `tests/fixtures/webauthn/vectors.json` (made by Python's
    /// cryptography) as a browser's assertion, and the passkey it belongs to.
    fn vector() -> (Assertion, Passkey) {
        let all: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/webauthn/vectors.json"))
                .unwrap();
        let v = &all[0];
        let hex = |v: &Value| {
            data_encoding::HEXLOWER
                .decode(v.as_str().unwrap().as_bytes())
                .unwrap()
        };
        let a = &v["assertion"];
        let assertion = Assertion {
            credential_id: hex(&v["credential_id"]),
            client_data_json: hex(&a["client_data_json"]),
            authenticator_data: hex(&a["authenticator_data"]),
            signature: hex(&a["signature"]),
            user_handle: None,
            challenge: hex(&a["challenge"]),
        };
        let passkey = Passkey {
            id: [1; 16],
            account_id: 7,
            credential_id: assertion.credential_id.clone(),
            public_key: hex(&v["cose_key"]),
            alg: -7,
            sign_count: 0,
            name: "vector".into(),
            created_at: 1,
            last_used_at: None,
        };
        (assertion, passkey)
    }

    /// The refusals that need the stored credential and its account, each on its own;
    /// the byte-level ones are `webauthn`'s tests.
    #[test]
    fn judge_refuses_unknown_foreign_and_mismatched_credentials() {
        let (_dir, app) = app();
        let origins = vec!["http://localhost:8080".to_string()];
        let (a, pk) = vector();
        let handle = [9u8; 16];
        let judge_as = |a: &Assertion, found: Option<Passkey>, account, uv| {
            judge(&app, a, &origins, found, account, Some(&handle[..]), uv)
        };
        let (ok, count) = judge_as(&a, Some(pk.clone()), Some(7), false).unwrap();
        assert_eq!((ok.id, count), (pk.id, 7));
        assert!(
            judge_as(&a, Some(pk.clone()), None, false).is_ok(),
            "passwordless"
        );
        assert_eq!(
            judge_as(&a, None, Some(7), false),
            Err((None, "unknown credential"))
        );
        assert_eq!(
            judge_as(&a, Some(pk.clone()), Some(8), false),
            Err((None, "credential of another account"))
        );
        let mut other_handle = a.clone();
        other_handle.user_handle = Some(vec![1; 16]);
        assert_eq!(
            judge_as(&other_handle, Some(pk.clone()), None, false),
            Err((Some(7), "user handle mismatch"))
        );
        let mut same_handle = a.clone();
        same_handle.user_handle = Some(handle.to_vec());
        assert!(judge_as(&same_handle, Some(pk.clone()), None, false).is_ok());
        assert!(
            judge_as(&a, Some(pk.clone()), None, true).is_ok(),
            "made with UV"
        );
        let seen = Passkey {
            sign_count: 7,
            ..pk.clone()
        };
        assert_eq!(
            judge_as(&a, Some(seen), Some(7), false),
            Err((Some(7), "sign counter did not increase"))
        );
        let elsewhere = vec!["https://evil.example".to_string()];
        assert_eq!(
            judge(&app, &a, &elsewhere, Some(pk), Some(7), None, false),
            Err((Some(7), "origin not allowed"))
        );
    }

    #[test]
    fn an_assertion_is_read_from_webauthn_json_or_refused_with_a_reason() {
        let cdj = BASE64URL_NOPAD
            .encode(br#"{"type":"webauthn.get","challenge":"AAEC","origin":"http://localhost"}"#);
        let good = json!({
            "id": "AQID", "rawId": "AQID", "type": "public-key",
            "response": {
                "clientDataJSON": cdj, "authenticatorData": "BAU", "signature": "Bgc=",
                "userHandle": null,
            },
        });
        let a = Assertion::from_json(&good).unwrap();
        assert_eq!(a.credential_id, vec![1, 2, 3]);
        assert_eq!(a.challenge, vec![0, 1, 2]);
        assert_eq!(a.signature, vec![6, 7], "padding tolerated");
        assert_eq!(a.user_handle, None);
        let with = |path: &[&str], v: Value| {
            let mut c = good.clone();
            let mut at = &mut c;
            for p in &path[..path.len() - 1] {
                at = at.get_mut(*p).unwrap();
            }
            at[path[path.len() - 1]] = v;
            Assertion::from_json(&c)
        };
        assert_eq!(
            with(&["type"], json!("password")),
            Err("not a public-key assertion")
        );
        assert_eq!(with(&["rawId"], json!("AQIE")), Err("id and rawId differ"));
        assert_eq!(
            with(&["rawId"], json!("!!")),
            Err("credential id is not base64url")
        );
        assert_eq!(
            with(&["response", "signature"], json!(7)),
            Err("signature missing")
        );
        assert_eq!(
            with(&["response", "clientDataJSON"], json!("e30")),
            Err("clientDataJSON is not valid")
        );
        assert_eq!(
            with(&["response", "userHandle"], json!("AQ")).map(|a| a.user_handle),
            Ok(Some(vec![1]))
        );
        assert_eq!(format!("{a:?}"), "Assertion { credential_id_len: 3, .. }");
    }
}
