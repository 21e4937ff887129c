//! Bearer tokens: issuing mfad's own tokens (EdDSA, Ed25519, with the `kid` of the key
//! that `GET /.well-known/jwks.json` publishes) and verifying them; the HS256 tokens of
//! an mfad from before that change, for the hour after the upgrade; and (optionally) the
//! tokens of one external issuer signed with RS256, ES256 or EdDSA. The algorithm is
//! pinned by the key that verifies it: a token is checked only by the key whose
//! algorithm (and, for ours, `kid`) its header names, and `alg: none` or an HS256 token
//! "signed" with a public key never reaches a key that would accept it.
//!
//! This file issues and verifies; `sign_in.rs` says how a login was made,
//! `external.rs` holds the external issuer's key and rules, `verdicts.rs` the memory of
//! tokens already verified. A leaf below `service`: it imports only `crypto`.

mod external;
mod sign_in;
mod verdicts;

pub use external::{ExternalAlgorithm, ExternalIssuer};
pub use sign_in::{Login, SignIn};

use std::fmt;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::crypto::{self, CryptoError, Keys, SigningKey};
use external::{high_s, External};
use verdicts::Verdicts;

/// Allowed clock skew for `exp` and `nbf`, in seconds.
const LEEWAY: i64 = 60;
/// Anything longer is not a token we issue or expect; refuse before parsing it.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The longest life of a token that an mfad before EdDSA issued at login: its HS256
/// tokens are accepted for this long after the upgrade, then never again.
const LEGACY_WINDOW: i64 = 3600;
/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An account of ours, by id (our own tokens).
    Account(i64),
    /// An external issuer's `sub` (or `username`); the account is found or created.
    External(String),
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: Subject,
    pub email: Option<String>,
    pub username: Option<String>,
    /// Our own tokens': the login they were issued for (`sid`), none for `mfad token`'s.
    pub sid: Option<String>,
    /// Our own tokens': how that login was made (`amr`); empty for external tokens.
    pub amr: Vec<String>,
}

/// Why a token was refused; the HTTP layer turns each into a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
}

#[derive(Serialize)]
struct OwnClaims<'a> {
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    iat: i64,
    exp: i64,
    iss: &'a str,
    auth_time: i64,
    amr: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa_method: Option<&'static str>,
    /// The login (OpenID's session id): what a browser session is made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// The claims we read. `exp`, `nbf`, `iss` and `aud` are checked by jsonwebtoken (≥ 10.3,
/// which refuses an `exp` or `nbf` of the wrong JSON type instead of ignoring it).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    email: Option<String>,
    username: Option<String>,
    /// jsonwebtoken accepts an array here when any element is the configured issuer;
    /// RFC 7519 §4.1.1 says a string, and so do we.
    iss: Option<Value>,
    /// Read for a legacy HS256 token (issued before the upgrade?) only.
    iat: Option<Value>,
    /// Already checked; read to know how long the verdict holds.
    exp: Option<Value>,
    /// Read from our own tokens only: which login, and how it was made.
    sid: Option<Value>,
    amr: Option<Value>,
    /// An own token with an audience is an app's (the OpenID provider's access tokens):
    /// never one for mfad's own API. Present even as `null`.
    #[serde(default, deserialize_with = "present")]
    aud: Option<Value>,
}

/// A claim that is there, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The RFC 7638 thumbprint of an Ed25519 public key (RFC 8037 §2): SHA-256 of its
/// required members in lexicographic order, base64url.
pub fn thumbprint(public_key: &[u8; 32]) -> String {
    let x = BASE64URL_NOPAD.encode(public_key);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    BASE64URL_NOPAD.encode(&crypto::sha256(canonical.as_bytes()))
}

/// A compact JWS (RFC 7515 §7.1) of `payload` under `header`, signed by `key`.
fn jws(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let mut out = BASE64URL_NOPAD.encode(header);
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(payload));
    let signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(&signature));
    out
}

/// The HS256 tokens of the mfad before the upgrade, accepted for [`LEGACY_WINDOW`].
struct Legacy {
    key: DecodingKey,
    validation: Validation,
    /// When this mfad first opened the database: HS256 tokens issued after it are
    /// not ours (we never issue them), and none is accepted an hour after.
    upgraded_at: i64,
}

/// Issues and verifies bearer tokens.
pub struct Tokens {
    signing: SigningKey,
    /// `{"alg":"EdDSA","typ":"JWT","kid":…}`, the header of every token we sign.
    header: Vec<u8>,
    kid: String,
    public_x: String,
    own_key: DecodingKey,
    own_validation: Validation,
    legacy: Option<Legacy>,
    issuer: String,
    external: Option<External>,
    verdicts: Verdicts,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("legacy", &self.legacy.as_ref().map(|l| l.upgraded_at))
            .field("external", &self.external.as_ref().map(|e| e.algorithm))
            .finish_non_exhaustive()
    }
}

fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = LEEWAY as u64;
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(iss) = issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    match audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

/// Why [`Tokens::new`] failed.
#[derive(Debug)]
pub enum SetupError {
    Key(CryptoError),
    ExternalKey(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Key(e) => write!(f, "cannot make the token-signing key: {e}"),
            SetupError::ExternalKey(e) => f.write_str(e),
        }
    }
}

impl Tokens {
    /// Our tokens are signed with the instance's Ed25519 key, with `issuer` as their
    /// `iss`. `upgraded_at`: when this database was brought from an mfad that signed
    /// HS256 (its tokens are accepted for an hour after); `None` for a database that
    /// never knew one.
    pub fn new(
        keys: &Keys,
        issuer: &str,
        upgraded_at: Option<i64>,
        external: Option<ExternalIssuer<'_>>,
    ) -> Result<Tokens, SetupError> {
        let external = external.map(External::new).transpose()?;
        let signing = keys.token_signing_key().map_err(SetupError::Key)?;
        let public = signing.public_key();
        let kid = thumbprint(&public);
        let public_x = BASE64URL_NOPAD.encode(&public);
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid })
            .to_string()
            .into_bytes();
        // The raw 32 bytes, as `from_ed_components` would decode them from `x`.
        let own_key = DecodingKey::from_ed_der(&public);
        Ok(Tokens {
            signing,
            header,
            kid,
            public_x,
            own_key,
            own_validation: validation(Algorithm::EdDSA, Some(issuer), None),
            legacy: upgraded_at.map(|at| Legacy {
                key: DecodingKey::from_secret(keys.jwt_secret()),
                validation: validation(Algorithm::HS256, Some(issuer), None),
                upgraded_at: at,
            }),
            issuer: issuer.to_string(),
            external,
            verdicts: Verdicts::default(),
        })
    }

    /// The `iss` of our tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` of our tokens: the RFC 7638 thumbprint of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK Set (RFC 7517 §5) of the keys that sign our tokens: public parts only;
    /// with the OpenID provider's RSA key, when it has one, after ours.
    pub fn jwks(&self, rsa: Option<&crypto::RsaKey>) -> Value {
        let mut keys = vec![json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.public_x,
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })];
        if let Some(rsa) = rsa {
            let (n, e) = rsa.public_members();
            keys.push(json!({
                "kty": "RSA",
                "n": n,
                "e": e,
                "kid": rsa.kid(),
                "alg": "RS256",
                "use": "sig",
            }));
        }
        json!({ "keys": keys })
    }

    /// Issues one of our own tokens for the login `login` (named `sid`, when it has
    /// refresh tokens), valid `ttl` seconds.
    pub fn issue(
        &self,
        account_id: i64,
        email: Option<&str>,
        login: Login,
        sid: Option<&str>,
        now: i64,
        ttl: i64,
    ) -> Result<String, serde_json::Error> {
        let claims = OwnClaims {
            sub: account_id.to_string(),
            email,
            iat: now,
            exp: now.saturating_add(ttl),
            iss: &self.issuer,
            auth_time: login.at,
            amr: login.how.amr(),
            mfa_method: login.how.mfa_method(),
            sid,
        };
        Ok(self.sign(&serde_json::to_vec(&claims)?))
    }

    fn sign(&self, payload: &[u8]) -> String {
        jws(&self.signing, &self.header, payload)
    }

    /// A JWT of `claims` under mfad's Ed25519 key (the OpenID provider's access tokens
    /// and EdDSA ID tokens; their `aud` keeps them off mfad's own API).
    pub fn sign_claims(&self, claims: &Value) -> String {
        self.sign(claims.to_string().as_bytes())
    }

    /// An ID token mfad issued (`id_token_hint` at logout): signed by mfad's Ed25519 key
    /// or by `rsa`, the `kid` naming which, with `iss` the OpenID `issuer`. Its expiry
    /// is not checked (a hint may be old: it only names who asks). Its claims.
    pub fn id_token_hint(
        &self,
        token: &str,
        issuer: &str,
        rsa: Option<&crypto::RsaKey>,
    ) -> Option<Value> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid.as_deref()?;
        let (signed, signature) = token.rsplit_once('.')?;
        let signature = BASE64URL_NOPAD.decode(signature.as_bytes()).ok()?;
        let valid = match header.alg {
            Algorithm::EdDSA if kid == self.kid => {
                let mut v = validation(Algorithm::EdDSA, Some(issuer), None);
                v.validate_exp = false;
                v.set_required_spec_claims(&["iss", "aud", "sub"]);
                return jsonwebtoken::decode::<Value>(token, &self.own_key, &v)
                    .ok()
                    .map(|d| d.claims);
            }
            Algorithm::RS256 => {
                rsa.is_some_and(|k| k.kid() == kid && k.verify_rs256(signed.as_bytes(), &signature))
            }
            _ => false,
        };
        if !valid {
            return None;
        }
        let payload = signed.split_once('.')?.1;
        let claims: Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(payload.as_bytes()).ok()?).ok()?;
        (claims.get("iss").and_then(Value::as_str) == Some(issuer)).then_some(claims)
    }

    /// An access token of an app (OpenID provider), as `/oidc/userinfo` takes it: signed
    /// by mfad's key, `iss` the OpenID `issuer`, not expired, with an `aud`. Its claims.
    pub fn verify_app(&self, token: &str, issuer: &str, now: i64) -> Result<Value, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::Invalid);
        }
        let mut v = validation(Algorithm::EdDSA, Some(issuer), None);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &self.own_key, &v).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        let claims = data.claims;
        let exp = claims.get("exp").and_then(Value::as_i64);
        if exp.is_none_or(|exp| exp.saturating_add(LEEWAY) < now) {
            return Err(TokenError::Expired);
        }
        if !claims.get("aud").is_some_and(Value::is_string) {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// Verifies a token (signature, algorithm, `kid`, `exp`, `nbf`, `iss`, `aud`); a
    /// token verified before is answered from memory until its `exp`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Verified, TokenError> {
        let key = crypto::sha256(token.as_bytes());
        if let Some(v) = self.verdicts.get(&key, now) {
            return Ok(v);
        }
        let (verified, until) = self.verify_uncached(token, now)?;
        self.verdicts.put(key, verified.clone(), until, now);
        Ok(verified)
    }

    /// [`Tokens::verify`] without the memory: what a token costs the first time. Also
    /// returns the moment until which the verdict holds.
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<(Verified, i64), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        // The header is read only to choose a key. `jku`, `x5u` and friends are
        // ignored: keys come from configuration, never from the token.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let ours = header.kid.as_deref() == Some(self.kid.as_str());
        let (key, validation, own, legacy) = match (header.alg, &self.legacy, &self.external) {
            (Algorithm::EdDSA, _, _) if ours => (&self.own_key, &self.own_validation, true, None),
            (Algorithm::HS256, Some(l), _) if now <= l.upgraded_at + LEGACY_WINDOW + LEEWAY => {
                (&l.key, &l.validation, true, Some(l))
            }
            (alg, _, Some(ext)) if alg == ext.algorithm => (&ext.key, &ext.validation, false, None),
            _ => return Err(TokenError::Invalid),
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let claims = data.claims;
        if claims.iss.as_ref().is_some_and(|v| !v.is_string()) {
            return Err(TokenError::Invalid);
        }
        if header.alg == Algorithm::ES256 {
            let signature = token
                .rsplit('.')
                .next()
                .and_then(|s| BASE64URL_NOPAD.decode(s.as_bytes()).ok());
            if signature.as_deref().is_none_or(high_s) {
                return Err(TokenError::Invalid);
            }
        }
        // jsonwebtoken has checked `exp` (an integer) against the clock; against `now`
        // too, so that a verdict ends at the same moment whoever decides it.
        let exp = claims
            .exp
            .as_ref()
            .and_then(Value::as_i64)
            .ok_or(TokenError::Invalid)?;
        let mut until = exp.saturating_add(LEEWAY);
        if until < now {
            return Err(TokenError::Expired);
        }
        if let Some(l) = legacy {
            // Issued by the mfad before the upgrade, or not at all.
            match claims.iat.as_ref().and_then(Value::as_i64) {
                Some(iat) if iat <= l.upgraded_at => {}
                _ => return Err(TokenError::Invalid),
            }
            until = until.min(l.upgraded_at + LEGACY_WINDOW + LEEWAY);
        }
        if own && claims.aud.is_some() {
            return Err(TokenError::Invalid);
        }
        let subject = if own {
            // Only the form we write: "+1" or "01" must not name account 1.
            let id = claims.sub.as_deref().and_then(|s| {
                s.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0 && id.to_string() == s)
            });
            Subject::Account(id.ok_or(TokenError::Invalid)?)
        } else {
            let name = claims.sub.clone().or_else(|| claims.username.clone());
            match name {
                // No NUL: PostgreSQL's text cannot hold one, and the account must be the
                // same on either engine.
                Some(n) if !n.is_empty() && n.len() <= 512 && !n.contains('\0') => {
                    Subject::External(n)
                }
                _ => return Err(TokenError::Invalid),
            }
        };
        let (sid, amr) = match own {
            true => (
                claims
                    .sid
                    .as_ref()
                    .and_then(Value::as_str)
                    .map(str::to_string),
                claims
                    .amr
                    .as_ref()
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            false => (None, Vec::new()),
        };
        let verified = Verified {
            subject,
            email: claims.email,
            username: claims.username,
            sid,
            amr,
        };
        Ok((verified, until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn keys() -> Keys {
        Keys::derive(&[1u8; 32]).unwrap()
    }

    fn tokens() -> Tokens {
        Tokens::new(&keys(), "mfad", None, None).unwrap()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    const PASSWORD_NOW: fn() -> Login = || Login {
        how: SignIn::Password,
        at: now(),
    };

    fn b64(v: &Value) -> String {
        BASE64URL_NOPAD.encode(v.to_string().as_bytes())
    }

    fn part(token: &str, i: usize) -> Value {
        let seg = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&BASE64URL_NOPAD.decode(seg.as_bytes()).unwrap()).unwrap()
    }

    fn sign_hs256(secret: &[u8], claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    /// RFC 8037 appendix A.1 (the key), A.3 (its thumbprint) and A.4 (a signature).
    #[test]
    fn rfc8037_vectors() {
        let d = BASE64URL_NOPAD
            .decode(b"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = SigningKey::from_seed(&d.try_into().unwrap()).unwrap();
        assert_eq!(
            BASE64URL_NOPAD.encode(&key.public_key()),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(
            thumbprint(&key.public_key()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(
            jws(&key, br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing"),
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
             hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn own_token_round_trips_with_how_and_when_the_user_signed_in() {
        let t = tokens();
        let login = Login {
            how: SignIn::PasswordBackupCode,
            at: now() - 100,
        };
        let token = t
            .issue(42, Some("a@b.c"), login, None, now(), 3600)
            .unwrap();
        let v = t.verify(&token, now()).unwrap();
        assert_eq!(v.subject, Subject::Account(42));
        assert_eq!(v.email.as_deref(), Some("a@b.c"));
        assert_eq!(
            part(&token, 0),
            json!({"alg": "EdDSA", "typ": "JWT", "kid": t.kid()})
        );
        let claims = part(&token, 1);
        assert_eq!(claims["amr"], json!(["pwd", "otp"]));
        assert_eq!(claims["mfa_method"], "backup_code");
        assert_eq!(claims["auth_time"], login.at);
        assert_eq!(claims["iss"], "mfad");
        assert_eq!(claims["sub"], "42");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
        for (how, amr, method) in [
            (SignIn::Password, json!(["pwd"]), Value::Null),
            (SignIn::PasswordTotp, json!(["pwd", "otp"]), json!("totp")),
            (
                SignIn::PasswordPasskey,
                json!(["pwd", "hwk"]),
                json!("passkey"),
            ),
            (SignIn::Passkey, json!(["hwk", "user"]), Value::Null),
            (SignIn::Issued, json!([]), Value::Null),
        ] {
            let token = t
                .issue(1, None, Login { how, at: 5 }, None, now(), 60)
                .unwrap();
            let claims = part(&token, 1);
            assert_eq!(claims["amr"], amr, "{how:?}");
            assert_eq!(claims["mfa_method"], method, "{how:?}");
            assert_eq!(SignIn::from_stored(how.as_str()), Some(how));
        }
        assert_eq!(SignIn::from_stored("otp"), None);
    }

    #[test]
    fn the_key_and_its_kid_follow_the_instance_key() {
        let a = tokens();
        let b = Tokens::new(&keys(), "other issuer", None, None).unwrap();
        let c = Tokens::new(&Keys::derive(&[2u8; 32]).unwrap(), "mfad", None, None).unwrap();
        assert_eq!(a.jwks(None), b.jwks(None));
        assert_ne!(a.jwks(None), c.jwks(None));
        assert_ne!(a.kid(), c.kid());
        let jwk = &a.jwks(None)["keys"][0];
        assert_eq!(jwk["kid"], a.kid());
        assert_eq!(jwk["kty"], "OKP");
        assert!(jwk.get("d").is_none(), "no private part: {jwk}");
        let x: [u8; 32] = BASE64URL_NOPAD
            .decode(jwk["x"].as_str().unwrap().as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(thumbprint(&x), a.kid());
    }

    #[test]
    fn expired_beyond_leeway_is_refused_within_is_accepted() {
        let t = tokens();
        let old = t
            .issue(1, None, PASSWORD_NOW(), None, now() - 7200, 3600)
            .unwrap();
        assert_eq!(t.verify(&old, now()), Err(TokenError::Expired));
        let just = t
            .issue(1, None, PASSWORD_NOW(), None, now() - 3630, 3600)
            .unwrap();
        assert!(t.verify(&just, now()).is_ok());
    }

    #[test]
    fn a_remembered_verdict_ends_with_the_token() {
        let t = tokens();
        // One `now` throughout: a second that ends between two readings of the clock
        // must not move the edge.
        let n = now();
        let token = t.issue(1, None, PASSWORD_NOW(), None, n, 600).unwrap();
        assert!(t.verify(&token, n).is_ok());
        assert!(t.verify(&token, n + 600 + LEEWAY).is_ok());
        assert_eq!(t.verify(&token, n + 601 + LEEWAY), Err(TokenError::Expired));
        // A refused token is not remembered as anything: the same bytes stay refused.
        let forged = format!("{}x", &token[..token.len() - 1]);
        assert!(t.verify(&forged, n).is_err());
        assert!(t.verify(&forged, n).is_err());
    }

    #[test]
    fn exp_of_the_wrong_type_or_missing_is_refused() {
        let t = tokens();
        let exp = now() + 600;
        for claims in [
            json!({"sub": "1", "iss": "mfad", "exp": exp.to_string()}),
            json!({"sub": "1", "iss": "mfad", "exp": exp as f64 + 0.5}),
            json!({"sub": "1", "iss": "mfad"}),
            json!({"sub": "1", "iss": "mfad", "exp": exp, "nbf": "0"}),
            json!({"sub": "1", "iss": "mfad", "exp": exp, "nbf": now() + 600}),
            json!({"sub": "1", "iss": "other", "exp": exp}),
            json!({"sub": "1", "exp": exp}),
            json!({"sub": "x", "iss": "mfad", "exp": exp}),
        ] {
            let token = t.sign(claims.to_string().as_bytes());
            assert!(t.verify(&token, now()).is_err(), "{claims}");
        }
        let ok = t.sign(
            json!({"sub": "1", "iss": "mfad", "exp": exp})
                .to_string()
                .as_bytes(),
        );
        assert!(t.verify(&ok, now()).is_ok());
    }

    /// An app's access token (OpenID provider) is signed with the same key: its `aud`
    /// keeps it off mfad's own API, whatever form the audience takes.
    #[test]
    fn an_own_token_with_an_audience_is_refused() {
        let t = tokens();
        let exp = now() + 600;
        for aud in [
            json!("grafana"),
            json!(["grafana"]),
            json!([]),
            json!("mfad"),
            json!(null),
        ] {
            let claims = json!({"sub": "1", "iss": "mfad", "exp": exp, "aud": aud});
            let token = t.sign(claims.to_string().as_bytes());
            assert_eq!(
                t.verify(&token, now()),
                Err(TokenError::Invalid),
                "{claims}"
            );
        }
    }

    #[test]
    fn only_the_canonical_subject_and_a_string_issuer_pass() {
        let t = tokens();
        let exp = now() + 600;
        for claims in [
            json!({"sub": "+1", "iss": "mfad", "exp": exp}),
            json!({"sub": "01", "iss": "mfad", "exp": exp}),
            json!({"sub": " 1", "iss": "mfad", "exp": exp}),
            json!({"sub": "0", "iss": "mfad", "exp": exp}),
            json!({"sub": "-1", "iss": "mfad", "exp": exp}),
            json!({"sub": "1", "iss": ["other", "mfad"], "exp": exp}),
            json!({"sub": "1", "iss": ["mfad"], "exp": exp}),
        ] {
            let token = t.sign(claims.to_string().as_bytes());
            assert_eq!(
                t.verify(&token, now()),
                Err(TokenError::Invalid),
                "{claims}"
            );
        }
        let ok = t.sign(
            json!({"sub": "10", "iss": "mfad", "exp": exp})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(t.verify(&ok, now()).unwrap().subject, Subject::Account(10));
    }

    #[test]
    fn another_instance_another_kid_and_alg_none_are_refused() {
        let t = tokens();
        let claims = json!({"sub": "1", "iss": "mfad", "exp": now() + 600});
        let other = Tokens::new(&Keys::derive(&[2u8; 32]).unwrap(), "mfad", None, None).unwrap();
        let token = other
            .issue(1, None, PASSWORD_NOW(), None, now(), 3600)
            .unwrap();
        assert_eq!(t.verify(&token, now()), Err(TokenError::Invalid));
        // Our key, but a header that names another key, or none.
        for header in [
            json!({"alg": "EdDSA", "typ": "JWT", "kid": other.kid()}),
            json!({"alg": "EdDSA", "typ": "JWT"}),
            json!({"alg": "EdDSA", "typ": "JWT", "kid": ""}),
        ] {
            let forged = jws(
                &t.signing,
                header.to_string().as_bytes(),
                claims.to_string().as_bytes(),
            );
            assert_eq!(
                t.verify(&forged, now()),
                Err(TokenError::Invalid),
                "{header}"
            );
        }
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        );
        assert_eq!(t.verify(&none, now()), Err(TokenError::Invalid));
        let none_kid = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": t.kid()})),
            b64(&claims)
        );
        assert_eq!(t.verify(&none_kid, now()), Err(TokenError::Invalid));
        assert_eq!(t.verify("garbage", now()), Err(TokenError::Invalid));
        assert_eq!(
            t.verify(&"a".repeat(100_000), now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn hs256_is_refused_without_an_upgrade_even_under_the_old_key() {
        let keys = keys();
        let t = Tokens::new(&keys, "mfad", None, None).unwrap();
        let claims = json!({"sub": "1", "iss": "mfad", "iat": now() - 10, "exp": now() + 600});
        let old = sign_hs256(keys.jwt_secret(), claims.clone());
        assert_eq!(t.verify(&old, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let keys = keys();
        let upgraded = Tokens::new(&keys, "mfad", Some(now() - 60), None).unwrap();
        let public = keys.token_signing_key().unwrap().public_key();
        let claims = json!({"sub": "1", "iss": "mfad", "iat": now() - 100, "exp": now() + 600});
        let jwk = upgraded.jwks(None)["keys"][0].to_string();
        let x = upgraded.jwks(None)["keys"][0]["x"]
            .as_str()
            .unwrap()
            .to_string();
        for secret in [&public[..], jwk.as_bytes(), x.as_bytes()] {
            let token = sign_hs256(secret, claims.clone());
            assert_eq!(upgraded.verify(&token, now()), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn hs256_of_before_the_upgrade_is_accepted_for_an_hour_then_refused() {
        let keys = keys();
        let at = now() - 120;
        let t = Tokens::new(&keys, "mfad", Some(at), None).unwrap();
        // Made by `mfad token --ttl 7200`, say: it would outlive the window.
        let token = |iat: i64| {
            sign_hs256(
                keys.jwt_secret(),
                json!({"sub": "7", "iss": "mfad", "iat": iat, "exp": iat + 7200}),
            )
        };
        let before = token(at - 60);
        assert_eq!(
            t.verify(&before, now()).unwrap().subject,
            Subject::Account(7)
        );
        // Remembered, but not past the end of the window.
        let end = at + LEGACY_WINDOW + LEEWAY;
        assert!(t.verify(&before, end).is_ok());
        assert_eq!(t.verify(&before, end + 1), Err(TokenError::Invalid));
        let fresh = Tokens::new(&keys, "mfad", Some(at), None).unwrap();
        assert_eq!(
            fresh.verify_uncached(&before, end + 1).map(|_| ()),
            Err(TokenError::Invalid)
        );
        // Never issued after the upgrade: one that says so is not ours.
        assert_eq!(t.verify(&token(at + 1), now()), Err(TokenError::Invalid));
        let no_iat = sign_hs256(
            keys.jwt_secret(),
            json!({"sub": "7", "iss": "mfad", "exp": now() + 600}),
        );
        assert_eq!(t.verify(&no_iat, now()), Err(TokenError::Invalid));
        // Another instance's HS256 key is as wrong as ever.
        let other = sign_hs256(
            Keys::derive(&[2u8; 32]).unwrap().jwt_secret(),
            json!({"sub": "7", "iss": "mfad", "iat": at - 60, "exp": now() + 600}),
        );
        assert_eq!(t.verify(&other, now()), Err(TokenError::Invalid));
    }
}
