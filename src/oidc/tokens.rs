//! What the provider issues, as claims (OpenID Connect Core §2, §5.1), and the RS256
//! signature of an ID token. Pure: the signing keys, the clock and the person come in as
//! arguments.

use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Map, Value};

use crate::crypto::{CryptoError, RsaKey};

/// Lifetime of an ID token and of an app's access token.
pub const TOKEN_TTL: i64 = 3600;

/// Who signed in, and how, for one app.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The stable, never reused, non-email `sub`.
    pub sub: &'a str,
    pub email: Option<&'a str>,
    /// RFC 8176 names (`pwd`, `otp`, `hwk`, `user`).
    pub amr: &'a [&'a str],
    pub auth_time: i64,
}

/// What the grant allows: the client, its scopes (space-separated), the `nonce` of the
/// authorization (none on a refresh, Core §12.2).
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
}

fn has(scope: &str, name: &str) -> bool {
    scope.split(' ').any(|s| s == name)
}

/// The claims of the scopes granted: `email` and `email_verified` with `email`,
/// `preferred_username` with `profile` (the operator made the account, so its email is
/// verified).
fn scoped(who: &Subject<'_>, scope: &str, out: &mut Map<String, Value>) {
    if let Some(email) = who.email {
        if has(scope, "email") {
            out.insert("email".into(), json!(email));
            out.insert("email_verified".into(), json!(true));
        }
        if has(scope, "profile") {
            out.insert("preferred_username".into(), json!(email));
        }
    }
}

/// An ID token's claims.
pub fn id_token_claims(issuer: &str, who: &Subject<'_>, to: &Audience<'_>, now: i64) -> Value {
    let mut c = Map::new();
    c.insert("iss".into(), json!(issuer));
    c.insert("sub".into(), json!(who.sub));
    c.insert("aud".into(), json!(to.client_id));
    c.insert("azp".into(), json!(to.client_id));
    c.insert("iat".into(), json!(now));
    c.insert("exp".into(), json!(now + TOKEN_TTL));
    c.insert("auth_time".into(), json!(who.auth_time));
    c.insert("amr".into(), json!(who.amr));
    if let Some(nonce) = to.nonce {
        c.insert("nonce".into(), json!(nonce));
    }
    scoped(who, to.scope, &mut c);
    Value::Object(c)
}

/// An app's access token's claims: `sid` names the grant, which `/oidc/userinfo`
/// checks is still there.
pub fn access_token_claims(
    issuer: &str,
    sub: &str,
    to: &Audience<'_>,
    sid: &str,
    now: i64,
) -> Value {
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": to.client_id,
        "client_id": to.client_id,
        "scope": to.scope,
        "sid": sid,
        "iat": now,
        "exp": now + TOKEN_TTL,
    })
}

/// `/oidc/userinfo`'s answer for the scopes of the access token.
pub fn userinfo(who: &Subject<'_>, scope: &str) -> Value {
    let mut c = Map::new();
    c.insert("sub".into(), json!(who.sub));
    scoped(who, scope, &mut c);
    Value::Object(c)
}

/// A compact JWS of `claims` signed RS256 with `key`, its `kid` in the header.
pub fn rs256_jwt(key: &RsaKey, claims: &Value) -> Result<String, CryptoError> {
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid() });
    let mut out = BASE64URL_NOPAD.encode(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(claims.to_string().as_bytes()));
    let signature = key.sign_rs256(out.as_bytes())?;
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(&signature));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: Subject<'static> = Subject {
        sub: "Zm9vYmFy",
        email: Some("ana@example.com"),
        amr: &["pwd", "otp"],
        auth_time: 900,
    };

    #[test]
    fn an_id_token_carries_what_core_asks_and_the_scopes_claims_only() {
        let to = Audience {
            client_id: "grafana",
            scope: "openid email",
            nonce: Some("n-1"),
        };
        let c = id_token_claims("https://auth.example.com", &WHO, &to, 1000);
        assert_eq!(c["iss"], "https://auth.example.com");
        assert_eq!(c["sub"], "Zm9vYmFy");
        assert_eq!(
            (c["aud"].as_str(), c["azp"].as_str()),
            (Some("grafana"), Some("grafana"))
        );
        assert_eq!(
            (c["iat"].as_i64(), c["exp"].as_i64()),
            (Some(1000), Some(4600))
        );
        assert_eq!(c["auth_time"], 900);
        assert_eq!(c["amr"], json!(["pwd", "otp"]));
        assert_eq!(c["nonce"], "n-1");
        assert_eq!(c["email"], "ana@example.com");
        assert_eq!(c["email_verified"], true);
        assert!(c.get("preferred_username").is_none());
        // A refresh's: no nonce; openid alone: no email.
        let bare = Audience {
            scope: "openid",
            nonce: None,
            ..to
        };
        let c = id_token_claims("https://auth.example.com", &WHO, &bare, 1000);
        assert!(c.get("nonce").is_none() && c.get("email").is_none());
        let u = userinfo(&WHO, "openid profile");
        assert_eq!(
            u,
            json!({"sub": "Zm9vYmFy", "preferred_username": "ana@example.com"})
        );
        // `emailx` is not `email`.
        assert_eq!(userinfo(&WHO, "openid emailx"), json!({"sub": "Zm9vYmFy"}));
    }

    #[test]
    fn an_access_token_names_its_app_and_its_grant() {
        let to = Audience {
            client_id: "grafana",
            scope: "openid",
            nonce: Some("n"),
        };
        let c = access_token_claims("https://a.example", "s", &to, "fam", 10);
        assert_eq!(c["aud"], "grafana");
        assert_eq!(c["client_id"], "grafana");
        assert_eq!(c["sid"], "fam");
        assert_eq!(c["exp"], 3610);
        assert!(c.get("nonce").is_none());
    }

    #[test]
    fn an_rs256_id_token_verifies_with_the_public_key_of_its_kid() {
        let der = RsaKey::generate().unwrap();
        let key = RsaKey::from_pkcs8(der.expose()).unwrap();
        let claims = json!({"sub": "x", "aud": "a"});
        let jwt = rs256_jwt(&key, &claims).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[0].as_bytes()).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], key.kid());
        let (n, e) = key.public_members();
        let public = ring::signature::RsaPublicKeyComponents {
            n: BASE64URL_NOPAD.decode(n.as_bytes()).unwrap(),
            e: BASE64URL_NOPAD.decode(e.as_bytes()).unwrap(),
        };
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap();
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &signature,
            )
            .unwrap();
        let mut tampered = signature.clone();
        tampered[0] ^= 1;
        assert!(public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &tampered
            )
            .is_err());
    }
}
