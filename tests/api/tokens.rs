//! Tokens other services can trust: mfad's tokens checked by an independent JWT
//! implementation (jwt-compact, with its own Ed25519) that knows nothing but what
//! `/.well-known/openid-configuration` and the JWKS publish; `amr`, `mfa_method` and
//! `auth_time` exact for each way of signing in; the HS256 tokens of an mfad from
//! before the upgrade accepted for an hour, then refused; the forgeries refused.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use jwt_compact::alg::Ed25519;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, TimeOptions, UntrustedToken};
use serde::Deserialize;

use super::*;

const ME: &str = "/api/v1/me";

/// The claims a relying service reads.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    email: Option<String>,
    iss: String,
    auth_time: i64,
    amr: Vec<String>,
    mfa_method: Option<String>,
}

/// What a relying service keeps from mfad's published documents.
struct Relying {
    kid: String,
    key: <Ed25519 as jwt_compact::Algorithm>::VerifyingKey,
    issuer: String,
}

/// A verified token: its claims, and `iat` / `exp` as Unix seconds.
struct Checked {
    claims: Claims,
    iat: i64,
    exp: i64,
}

impl Relying {
    /// Reads the discovery document, then the JWKS it names, as a service would.
    fn discover(s: &Server) -> Relying {
        let r = s.get("/.well-known/openid-configuration", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("Cache-Control"), Some("public, max-age=300"));
        let config = r.json();
        assert_eq!(
            key_set(&config),
            ["issuer", "jwks_uri"].map(String::from).into()
        );
        let uri = config["jwks_uri"].as_str().unwrap();
        // Without --public-url, the address the request named (the test client sends
        // `Host: 127.0.0.1`).
        let (authority, path) = uri
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("jwks_uri {uri}"));
        assert_eq!(authority, "127.0.0.1", "{uri}");
        let r = s.get(&format!("/{path}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("Cache-Control"), Some("public, max-age=300"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let jwks = r.json();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        let jwk = &keys[0];
        assert!(jwk.get("d").is_none(), "a private part in the JWKS: {jwk}");
        assert_eq!(
            key_set(jwk),
            ["alg", "crv", "kid", "kty", "use", "x"]
                .map(String::from)
                .into()
        );
        assert_eq!(
            (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
            (
                &json!("OKP"),
                &json!("Ed25519"),
                &json!("EdDSA"),
                &json!("sig")
            )
        );
        let parsed: JsonWebKey<'_> = serde_json::from_value(jwk.clone()).unwrap();
        assert!(!parsed.is_signing_key());
        // The kid is the RFC 7638 thumbprint, as computed by the other implementation.
        let thumbprint =
            data_encoding::BASE64URL_NOPAD.encode(&parsed.thumbprint::<sha2::Sha256>());
        assert_eq!(jwk["kid"], thumbprint.as_str());
        Relying {
            kid: thumbprint,
            key: (&parsed).try_into().unwrap(),
            issuer: config["issuer"].as_str().unwrap().to_string(),
        }
    }

    /// Verifies `token` as a relying service should: `alg` EdDSA (the validator refuses
    /// any other), `kid` the published one, the signature, `exp`, `iss`.
    fn check(&self, token: &str) -> Result<Checked, String> {
        let untrusted = UntrustedToken::new(token).map_err(|e| e.to_string())?;
        if untrusted.header().key_id.as_deref() != Some(self.kid.as_str()) {
            return Err("another kid".into());
        }
        let verified = Ed25519
            .validator::<Claims>(&self.key)
            .validate(&untrusted)
            .map_err(|e| e.to_string())?;
        let claims = verified.claims();
        claims
            .validate_expiration(&TimeOptions::default())
            .map_err(|e| e.to_string())?;
        if claims.custom.iss != self.issuer {
            return Err("another issuer".into());
        }
        let (_, claims) = verified.into_parts();
        Ok(Checked {
            iat: claims.issued_at.unwrap().timestamp(),
            exp: claims.expiration.unwrap().timestamp(),
            claims: claims.custom,
        })
    }
}

fn token_of(r: &common::Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

fn refresh(s: &Server, refresh_token: &str) -> common::Resp {
    s.post(REFRESH, None, &json!({ "refresh_token": refresh_token }))
}

fn assert_sign_in(c: &Checked, amr: &[&str], method: Option<&str>, auth_time: i64) {
    assert_eq!(c.claims.amr, amr);
    assert_eq!(c.claims.mfa_method.as_deref(), method);
    assert_eq!(c.claims.auth_time, auth_time);
    assert_eq!(c.exp - c.iat, 3600);
}

#[test]
fn every_token_verifies_with_nothing_but_the_published_jwks() {
    let s = Server::start(&[]);
    let relying = Relying::discover(&s);
    assert_eq!(relying.issuer, "mfad");

    // A password alone.
    let email = "amr@example.com";
    s.add_user(email, PASSWORD);
    let t0 = now() as i64;
    let r = login(&s, email, PASSWORD);
    let t1 = now() as i64;
    let good = token_of(&r);
    let pwd = relying.check(&good).unwrap();
    assert!((t0..=t1).contains(&pwd.iat));
    assert_sign_in(&pwd, &["pwd"], None, pwd.iat);
    assert_eq!(pwd.claims.email.as_deref(), Some(email));
    let me = s.get(ME, Some(&token_of(&r))).json();
    assert_eq!(pwd.claims.sub, me["id"].as_str().unwrap());

    // Password and TOTP, then password and a backup code.
    let (secret, step, codes) = enable(&s, &token_of(&r));
    let mfa = challenge(&s, email);
    let r = verify(&s, &mfa, &code_at(&secret, (step + 1) * 30));
    let with_totp = relying.check(&token_of(&r)).unwrap();
    assert_sign_in(&with_totp, &["pwd", "otp"], Some("totp"), with_totp.iat);
    let totp_refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let mfa = challenge(&s, email);
    let r = verify(&s, &mfa, &codes[0]);
    let with_backup = relying.check(&token_of(&r)).unwrap();
    assert_sign_in(
        &with_backup,
        &["pwd", "otp"],
        Some("backup_code"),
        with_backup.iat,
    );

    // Refresh keeps how and when the login was made, twice over.
    std::thread::sleep(Duration::from_millis(1100));
    let r = refresh(&s, &totp_refresh);
    let refreshed = relying.check(&token_of(&r)).unwrap();
    assert!(refreshed.iat > with_totp.iat);
    assert_sign_in(&refreshed, &["pwd", "otp"], Some("totp"), with_totp.iat);
    let r = refresh(&s, r.json()["refresh_token"].as_str().unwrap());
    let again = relying.check(&token_of(&r)).unwrap();
    assert_sign_in(&again, &["pwd", "otp"], Some("totp"), with_totp.iat);

    // `mfad token`: nobody signed in.
    let issued = relying.check(&s.token("script@example.com")).unwrap();
    assert_sign_in(&issued, &[], None, issued.iat);

    // The other implementation is not a rubber stamp: a token of another instance, and
    // one with a changed claim, fail it.
    let other = Server::start(&[]);
    other.add_user(email, PASSWORD);
    let foreign = token_of(&login(&other, email, PASSWORD));
    assert!(relying.check(&foreign).is_err());
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut claims: Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(parts[1].as_bytes())
            .unwrap(),
    )
    .unwrap();
    claims["amr"] = json!(["pwd", "otp"]);
    parts[1] = data_encoding::BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    assert!(relying.check(&parts.join(".")).is_err());
}

#[test]
fn forged_and_foreign_tokens_are_refused() {
    let s = Server::start(&[]);
    let other = Server::start(&[]);
    let email = "forge@example.com";
    s.add_user(email, PASSWORD);
    other.add_user(email, PASSWORD);
    let good = token_of(&login(&s, email, PASSWORD));
    assert_eq!(s.get(ME, Some(&good)).status, 200);
    let id = s.get(ME, Some(&good)).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let claims = json!({"sub": id, "iss": "mfad", "exp": now() + 600, "iat": now()});
    let b64 = |v: &Value| data_encoding::BASE64URL_NOPAD.encode(v.to_string().as_bytes());
    let jwks = s.get("/.well-known/jwks.json", None).json();
    let x = data_encoding::BASE64URL_NOPAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap().as_bytes())
        .unwrap();
    let own = mfad::crypto::Keys::derive(&s.key())
        .unwrap()
        .token_signing_key()
        .unwrap();
    let other_kid = other.get("/.well-known/jwks.json", None).json()["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = [
        (
            "an EdDSA token of another instance",
            token_of(&login(&other, email, PASSWORD)),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            ),
        ),
        (
            "alg none with our kid",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": jwks["keys"][0]["kid"]})),
                b64(&claims)
            ),
        ),
        (
            "our key under another kid",
            jws(
                &own,
                &json!({"alg": "EdDSA", "typ": "JWT", "kid": other_kid}),
                &claims,
            ),
        ),
        (
            "our key without a kid",
            jws(&own, &json!({"alg": "EdDSA", "typ": "JWT"}), &claims),
        ),
        (
            "HS256 keyed with the public key bytes",
            sign(&claims, Algorithm::HS256, &EncodingKey::from_secret(&x)),
        ),
        (
            "HS256 keyed with the JWK",
            sign(
                &claims,
                Algorithm::HS256,
                &EncodingKey::from_secret(jwks["keys"][0].to_string().as_bytes()),
            ),
        ),
    ];
    for (name, token) in &cases {
        let r = s.get(ME, Some(token));
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(r.json()["error"], "Invalid JWT Token", "{name}");
    }
    // The same claims under our key and kid pass: each refusal is about what it changes.
    assert_eq!(s.get(ME, Some(&sign_own(&s, &claims))).status, 200);
}

#[test]
fn the_jwks_changes_with_the_instance_key_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Server::start_in(&dir, &["--issuer", "Storno"]);
    let first = s.get("/.well-known/jwks.json", None).json();
    let token = token_of(&{
        s.add_user("keep@example.com", PASSWORD);
        login(&s, "keep@example.com", PASSWORD)
    });
    drop(s);
    // Restarted with other settings: the same key, so the same JWKS, and the token
    // issued before still verifies.
    let s = Server::start_in(&dir, &["--jwt-issuer", "mfad", "--login-rate", "0"]);
    assert_eq!(s.get("/.well-known/jwks.json", None).json(), first);
    assert_eq!(s.get(ME, Some(&token)).status, 200);
    let other = Server::start(&[]);
    let second = other.get("/.well-known/jwks.json", None).json();
    assert_ne!(second["keys"][0]["x"], first["keys"][0]["x"]);
    assert_ne!(second["keys"][0]["kid"], first["keys"][0]["kid"]);
    // The discovery document names this server, or the public URL when one is set.
    let public = Server::start(&["--public-url", "https://auth.example.org"]);
    let config = public.get("/.well-known/openid-configuration", None).json();
    assert_eq!(
        config["jwks_uri"],
        "https://auth.example.org/.well-known/jwks.json"
    );
    let issuer = Server::start(&["--jwt-issuer", "https://auth.example.org"]);
    let config = issuer.get("/.well-known/openid-configuration", None).json();
    assert_eq!(config["issuer"], "https://auth.example.org");
    // Nothing else under /.well-known; the documents answer GET only.
    assert_eq!(s.get("/.well-known/", None).status, 404);
    let r = s.post("/.well-known/jwks.json", None, &json!({}));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
}

/// A data directory as the mfad before EdDSA left it: schema 2, its key file, one
/// account (id 1) and one refresh token of a login made `login_at`.
fn data_dir_of_before(dir: &std::path::Path, key: &[u8; 32], refresh: &[u8; 32], login_at: i64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key_path = dir.join("mfad.key");
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let db = rusqlite::Connection::open(dir.join("mfad.db")).unwrap();
    db.execute_batch(&String::from_utf8(fixture("schema-v2.sql")).unwrap())
        .unwrap();
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA user_version = 2;")
        .unwrap();
    let hash = mfad::crypto::Keys::derive(key).unwrap().token_hash(refresh);
    db.execute(
        "INSERT INTO accounts (email, created_at) VALUES ('old@example.com', ?1)",
        [login_at],
    )
    .unwrap();
    db.execute(
        "INSERT INTO refresh_tokens (token_hash, account_id, family, expires_at)
         VALUES (?1, 1, x'0102', ?2)",
        rusqlite::params![&hash[..], login_at + 30 * 86_400],
    )
    .unwrap();
}

#[test]
fn hs256_tokens_of_before_the_upgrade_pass_for_an_hour_then_never() {
    if sqlite_only("upgrading a database of an mfad from before EdDSA") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key = [0x5au8; 32];
    let refresh_token = [0x33u8; 32];
    let login_at = now() as i64 - 600;
    data_dir_of_before(&dir, &key, &refresh_token, login_at);
    let old_key = EncodingKey::from_secret(mfad::crypto::Keys::derive(&key).unwrap().jwt_secret());
    // As the old mfad signed them: HS256, no kid.
    let old_token = |iat: i64, exp: i64| {
        sign(
            &json!({"sub": "1", "email": "old@example.com", "iat": iat, "exp": exp, "iss": "mfad"}),
            Algorithm::HS256,
            &old_key,
        )
    };
    let before = old_token(now() as i64 - 60, now() as i64 + 3000);
    // Too old in any case.
    let expired = old_token(now() as i64 - 4000, now() as i64 - 400);

    let s = Server::start_in(&dir, &[]);
    assert!(
        s.log_has(&format!(
            "migrated from version 2 to {}",
            mfad::store::SCHEMA_VERSION
        )),
        "{:?}",
        s.log()
    );
    let r = s.get(ME, Some(&before));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["email"], "old@example.com");
    assert_eq!(s.get(ME, Some(&expired)).status, 401);
    // Made after the upgrade (mfad never signs HS256 again): not one of ours.
    let after = old_token(now() as i64 + 2, now() as i64 + 600);
    assert_eq!(s.get(ME, Some(&after)).status, 401);
    // The login of before refreshes into an EdDSA token that says what is known of it:
    // a password (nothing more was recorded), at the start of its 30 days.
    let relying = Relying::discover(&s);
    let r = refresh(&s, &data_encoding::HEXLOWER.encode(&refresh_token));
    let refreshed = relying.check(&token_of(&r)).unwrap();
    assert_sign_in(&refreshed, &["pwd"], None, login_at);
    drop(s);

    // An hour and a minute after the upgrade, the same HS256 token is refused.
    let db = rusqlite::Connection::open(dir.join("mfad.db")).unwrap();
    let upgraded: Vec<u8> = db
        .query_row(
            "SELECT value FROM meta WHERE name = 'hs256_upgraded_at'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let upgraded: i64 = String::from_utf8(upgraded).unwrap().parse().unwrap();
    assert!((now() as i64 - 60..=now() as i64).contains(&upgraded));
    db.execute(
        "UPDATE meta SET value = CAST(?1 AS BLOB) WHERE name = 'hs256_upgraded_at'",
        [(upgraded - 3661).to_string()],
    )
    .unwrap();
    drop(db);
    let s = Server::start_in(&dir, &[]);
    let before_then = old_token(upgraded - 3700, now() as i64 + 600);
    let r = s.get(ME, Some(&before_then));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "Invalid JWT Token");
    // While EdDSA tokens for the same account go on.
    assert_eq!(s.get(ME, Some(&s.token("old@example.com"))).status, 200);
}
