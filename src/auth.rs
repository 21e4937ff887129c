//! Bearer tokens: issuing mfad's own HS256 tokens and verifying them, plus (optionally)
//! tokens of one external issuer signed with RS256, ES256 or EdDSA. The algorithm is
//! pinned by the key that verifies it: a token is checked only by the key whose
//! algorithm its header names, and `alg: none` or an HS256 token "signed" with the
//! external public key never reaches a key that would accept it.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::ExternalAlgorithm;

/// Allowed clock skew for `exp` and `nbf`, in seconds.
const LEEWAY: u64 = 60;
/// Anything longer is not a token we issue or expect; refuse before parsing it.
const MAX_TOKEN_LEN: usize = 8 * 1024;

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
    iss: Option<serde_json::Value>,
}

/// Half the order of the P-256 group, big-endian: an ECDSA signature `(r, s)` is as
/// valid as `(r, n - s)`, so only the low-`s` one of the pair is accepted (as in
/// Bitcoin's BIP 62 and libsecp256k1): a token has exactly one valid signature.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether a JWS ES256 signature (`r ‖ s`, 32 bytes each) has its `s` above n/2.
fn high_s(signature: &[u8]) -> bool {
    match signature.get(32..64) {
        Some(s) if signature.len() == 64 => s > &P256_HALF_ORDER[..],
        _ => true,
    }
}

struct External {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

/// How to check the tokens of an external issuer.
#[derive(Debug, Clone, Copy)]
pub struct ExternalIssuer<'a> {
    /// Its public key, PEM.
    pub pem: &'a [u8],
    pub algorithm: ExternalAlgorithm,
    /// The `iss` its tokens must carry, if any.
    pub issuer: Option<&'a str>,
    /// The `aud` its tokens must carry, if any.
    pub audience: Option<&'a str>,
}

/// Issues and verifies bearer tokens.
pub struct Tokens {
    encoding: EncodingKey,
    own_key: DecodingKey,
    own_validation: Validation,
    issuer: String,
    external: Option<External>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("external", &self.external.as_ref().map(|e| e.algorithm))
            .finish_non_exhaustive()
    }
}

fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = LEEWAY;
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

impl Tokens {
    /// `secret` signs our own tokens, with `issuer` as their `iss`.
    pub fn new(
        secret: &[u8],
        issuer: &str,
        external: Option<ExternalIssuer<'_>>,
    ) -> Result<Tokens, String> {
        let external = match external {
            None => None,
            Some(ExternalIssuer {
                pem,
                algorithm: alg,
                issuer: ext_issuer,
                audience,
            }) => {
                let (key, algorithm) = match alg {
                    ExternalAlgorithm::Rs256 => (DecodingKey::from_rsa_pem(pem), Algorithm::RS256),
                    ExternalAlgorithm::Es256 => (DecodingKey::from_ec_pem(pem), Algorithm::ES256),
                    ExternalAlgorithm::EdDsa => (DecodingKey::from_ed_pem(pem), Algorithm::EdDSA),
                };
                let key = key.map_err(|e| format!("not a {algorithm:?} public key in PEM: {e}"))?;
                Some(External {
                    key,
                    validation: validation(algorithm, ext_issuer, audience),
                    algorithm,
                })
            }
        };
        Ok(Tokens {
            encoding: EncodingKey::from_secret(secret),
            own_key: DecodingKey::from_secret(secret),
            own_validation: validation(Algorithm::HS256, Some(issuer), None),
            issuer: issuer.to_string(),
            external,
        })
    }

    /// Issues one of our own tokens.
    pub fn issue(
        &self,
        account_id: i64,
        email: Option<&str>,
        now: i64,
        ttl: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = OwnClaims {
            sub: account_id.to_string(),
            email,
            iat: now,
            exp: now.saturating_add(ttl),
            iss: &self.issuer,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies a token (signature, algorithm, `exp`, `nbf`, `iss`, `aud`).
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        // The header is read only to choose a key. `kid`, `jku`, `x5u` and friends are
        // ignored: keys come from configuration, never from the token.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let (key, validation, own) = match (&self.external, header.alg) {
            (_, Algorithm::HS256) => (&self.own_key, &self.own_validation, true),
            (Some(ext), alg) if alg == ext.algorithm => (&ext.key, &ext.validation, false),
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
                .and_then(|s| data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).ok());
            if signature.as_deref().is_none_or(high_s) {
                return Err(TokenError::Invalid);
            }
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
                Some(n) if !n.is_empty() && n.len() <= 512 => Subject::External(n),
                _ => return Err(TokenError::Invalid),
            }
        };
        Ok(Verified {
            subject,
            email: claims.email,
            username: claims.username,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[1u8; 32], "mfad", None).unwrap()
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn sign_hs256(secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn own_token_round_trips() {
        let t = tokens();
        let token = t.issue(42, Some("a@b.c"), now(), 3600).unwrap();
        let v = t.verify(&token).unwrap();
        assert_eq!(v.subject, Subject::Account(42));
        assert_eq!(v.email.as_deref(), Some("a@b.c"));
    }

    #[test]
    fn expired_beyond_leeway_is_refused_within_is_accepted() {
        let t = tokens();
        let old = t.issue(1, None, now() - 7200, 3600).unwrap();
        assert_eq!(t.verify(&old), Err(TokenError::Expired));
        let just = t.issue(1, None, now() - 3630, 3600).unwrap();
        assert!(t.verify(&just).is_ok());
    }

    #[test]
    fn exp_of_the_wrong_type_or_missing_is_refused() {
        let t = tokens();
        let exp = now() + 600;
        for claims in [
            serde_json::json!({"sub": "1", "iss": "mfad", "exp": exp.to_string()}),
            serde_json::json!({"sub": "1", "iss": "mfad"}),
            serde_json::json!({"sub": "1", "iss": "mfad", "exp": exp, "nbf": "0"}),
            serde_json::json!({"sub": "1", "iss": "mfad", "exp": exp, "nbf": now() + 600}),
            serde_json::json!({"sub": "1", "iss": "other", "exp": exp}),
            serde_json::json!({"sub": "1", "exp": exp}),
            serde_json::json!({"sub": "x", "iss": "mfad", "exp": exp}),
        ] {
            let token = sign_hs256(&[1u8; 32], claims.clone());
            assert!(t.verify(&token).is_err(), "{claims}");
        }
        let ok = sign_hs256(
            &[1u8; 32],
            serde_json::json!({"sub": "1", "iss": "mfad", "exp": exp}),
        );
        assert!(t.verify(&ok).is_ok());
    }

    #[test]
    fn only_the_canonical_subject_and_a_string_issuer_pass() {
        let t = tokens();
        let exp = now() + 600;
        for claims in [
            serde_json::json!({"sub": "+1", "iss": "mfad", "exp": exp}),
            serde_json::json!({"sub": "01", "iss": "mfad", "exp": exp}),
            serde_json::json!({"sub": " 1", "iss": "mfad", "exp": exp}),
            serde_json::json!({"sub": "0", "iss": "mfad", "exp": exp}),
            serde_json::json!({"sub": "-1", "iss": "mfad", "exp": exp}),
            serde_json::json!({"sub": "1", "iss": ["other", "mfad"], "exp": exp}),
            serde_json::json!({"sub": "1", "iss": ["mfad"], "exp": exp}),
        ] {
            let token = sign_hs256(&[1u8; 32], claims.clone());
            assert_eq!(t.verify(&token), Err(TokenError::Invalid), "{claims}");
        }
        let ok = sign_hs256(
            &[1u8; 32],
            serde_json::json!({"sub": "10", "iss": "mfad", "exp": exp}),
        );
        assert_eq!(t.verify(&ok).unwrap().subject, Subject::Account(10));
    }

    #[test]
    fn only_low_s_ecdsa_signatures_pass() {
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&P256_HALF_ORDER);
        assert!(!high_s(&sig), "s = n/2 is the highest low s");
        sig[63] += 1;
        assert!(high_s(&sig), "s = n/2 + 1");
        sig[32..].fill(0);
        sig[63] = 1;
        assert!(!high_s(&sig));
        sig[32] = 0xff;
        assert!(high_s(&sig));
        assert!(high_s(&sig[..63]), "a short signature is refused");
        assert!(high_s(&[0u8; 65]), "a long one too");
    }

    #[test]
    fn another_instance_and_alg_none_are_refused() {
        let t = tokens();
        let other = Tokens::new(&[2u8; 32], "mfad", None).unwrap();
        let token = other.issue(1, None, now(), 3600).unwrap();
        assert_eq!(t.verify(&token), Err(TokenError::Invalid));
        let b64 =
            |v: serde_json::Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
        let none = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(serde_json::json!({"sub": "1", "iss": "mfad", "exp": now() + 600}))
        );
        assert_eq!(t.verify(&none), Err(TokenError::Invalid));
        assert_eq!(t.verify("garbage"), Err(TokenError::Invalid));
        assert_eq!(t.verify(&"a".repeat(100_000)), Err(TokenError::Invalid));
    }
}
