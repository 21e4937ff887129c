//! OpenID Connect's rules that need no state (#26): the provider's metadata, the form
//! encoding of the token endpoint, PKCE's S256 check, which redirect URIs a client may
//! register, and the checks of an authorization request, in the order that decides
//! whether an error may be sent back to the client. Everything takes its inputs as
//! arguments; the store and the HTTP layer live elsewhere.

pub mod client;
pub mod form;
pub mod request;
pub mod tokens;

use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Value};

pub use client::{ClientPolicy, ClientSpec, IdTokenAlg};
pub use form::Params;
pub use request::{Authorize, AuthorizeError, ClientRules, Prompt};

/// The scopes mfad knows; others are ignored, as OpenID Connect Core §3.1.2.1 allows.
pub const SCOPES: [&str; 4] = ["openid", "email", "profile", "offline_access"];

/// `GET /.well-known/openid-configuration` once `--public-url` (`issuer`) is set.
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oidc/authorize"),
        "token_endpoint": format!("{issuer}/oidc/token"),
        "userinfo_endpoint": format!("{issuer}/oidc/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{issuer}/oidc/logout"),
        "revocation_endpoint": format!("{issuer}/oidc/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "EdDSA"],
        "scopes_supported": SCOPES,
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "amr",
            "email", "email_verified", "preferred_username",
        ],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}

/// Whether `origin` (`--public-url`) may be the OpenID issuer: `https`, or `http` to
/// loopback for a test (a browser on another machine could not reach it anyway).
pub fn issuer_ok(origin: &str) -> bool {
    let loopback = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
        .iter()
        .any(|p| {
            origin
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    origin.starts_with("https://") || loopback
}

/// Whether `verifier` is a PKCE code verifier (RFC 7636 §4.1: 43 to 128 unreserved
/// characters) whose S256 transform is `challenge`. The comparison takes the same time
/// wherever the two differ.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    if !is_pkce_value(verifier) {
        return false;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let made = BASE64URL_NOPAD.encode(digest.as_ref());
    crate::crypto::ct_eq(made.as_bytes(), challenge.as_bytes())
}

/// 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`: a verifier, and the shape of an S256
/// challenge too (43 characters).
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether a client may register `uri` as a redirect (or post-logout) URI: absolute,
/// `https`, or `http` to the loopback interface only (RFC 8252 §7.3); no fragment
/// (RFC 6749 §3.1.2), no user name or password, nothing a browser would read otherwise
/// than mfad compares it (spaces, controls, backslashes).
pub fn registrable_uri(uri: &str) -> Result<(), &'static str> {
    if uri.bytes().any(|b| b <= b' ' || b >= 0x7f || b == b'\\') {
        return Err("has a space, a control character, a backslash or non-ASCII");
    }
    if uri.contains('#') {
        return Err("has a fragment (#…), which a redirect URI must not have");
    }
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or("is not an absolute URI like https://app.example.com/callback")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') {
        return Err("has a user name or password in it");
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "127.0.0.1" | "::1" | "localhost") => Ok(()),
        "http" => Err("is plain http to a host other than loopback: use https"),
        _ => Err("is neither https nor http to loopback"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_rfc_7636s_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        // `plain` is not S256: the verifier as its own challenge fails.
        assert!(!pkce_s256_matches(verifier, verifier));
        // Too short, too long, a character outside the set.
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(is_pkce_value(&"a".repeat(128)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn only_https_or_loopback_http_uris_without_fragments_are_registrable() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?x=1",
            "http://127.0.0.1:9000/cb",
            "http://localhost/cb",
            "http://[::1]:8080/cb",
        ] {
            assert_eq!(registrable_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "/callback",
            "app.example.com/cb",
            "https://user@app.example.com/cb",
            "https:///cb",
            "https://app.example.com/c b",
            "https://app.example.com\\@evil.com/",
            "javascript://app.example.com/%0aalert(1)",
            "ftp://app.example.com/cb",
            "http://localhost.evil.com/cb",
            "http://127.0.0.1.evil.com/cb",
        ] {
            assert!(registrable_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_issuer_is_https_or_loopback_http() {
        for ok in [
            "https://auth.example.com",
            "http://localhost",
            "http://localhost:8080",
            "http://127.0.0.1:9000",
            "http://[::1]:80",
        ] {
            assert!(issuer_ok(ok), "{ok}");
        }
        for bad in [
            "http://auth.example.com",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "ftp://localhost",
        ] {
            assert!(!issuer_ok(bad), "{bad}");
        }
    }

    #[test]
    fn discovery_names_every_endpoint_under_the_issuer() {
        let d = discovery("https://auth.example.com");
        assert_eq!(d["issuer"], "https://auth.example.com");
        assert_eq!(d["token_endpoint"], "https://auth.example.com/oidc/token");
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(d["response_types_supported"], json!(["code"]));
    }
}
