//! The OpenID provider through a second, certified client library in another language
//! (#26): panva's `openid-client` for Node (npm, pinned in tests/oidc-client), driven by
//! `tests/oidc-client/flow.mjs`: discovery, the code flow of a public client with PKCE,
//! the ID token validated by the library (signature from the JWKS, `iss`, `aud`,
//! `nonce`, `exp`), userinfo, refresh and revocation. Without Node or the package the
//! test says SKIPPED; under `CI=true` it fails.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::Server;

#[test]
fn openid_client_for_node_signs_in_refreshes_and_revokes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-client");
    let installed = dir.join("node_modules/openid-client/package.json").exists();
    if !crate::operations::have("node") || !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, and the openid-client test needs Node and `npm ci --prefix tests/oidc-client`"
        );
        eprintln!("SKIPPED: the openid-client test needs `npm ci --prefix tests/oidc-client`");
        return;
    }
    let port = crate::apache::free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start(&["--listen", &listen, "--public-url", &issuer]);
    let redirect = "http://127.0.0.1:5173/callback";
    let (ok, _, err) = s.cli(
        &[
            "client",
            "add",
            "--id",
            "spa",
            "--name",
            "The SPA",
            "--public",
            "--policy",
            "one_factor",
            "--redirect-uri",
            redirect,
        ],
        None,
    );
    assert!(ok, "{err}");
    let session = session(&s, "ana@example.com");
    let out = Command::new("node")
        .arg(dir.join("flow.mjs"))
        .env("ISSUER", &issuer)
        .env("CLIENT_ID", "spa")
        .env("REDIRECT_URI", redirect)
        .env("SESSION", &session)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openid-client refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["issuer"], issuer.as_str());
    let claims = &seen["claims"];
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], "spa");
    assert_eq!(claims["email"], "ana@example.com");
    let sub = claims["sub"].as_str().unwrap();
    assert_eq!(seen["userinfo"]["sub"], sub);
    assert_eq!(seen["userinfo"]["email"], "ana@example.com");
    assert_eq!(seen["refreshed"]["id_token"], true);
    assert_eq!(seen["refreshed"]["sub"], sub);
    // Revoked: the refresh token and the access tokens of the grant are refused.
    assert_eq!(seen["afterRevocation"], "invalid_grant", "{seen}");
    assert_eq!(seen["userinfoAfter"], 401, "{seen}");
    let (_, trail, _) = s.cli(&["audit"], None);
    assert!(trail.contains("oidc_revoked (client spa)"), "{trail}");
}

/// The `mfad_session` cookie of a fresh password login of `email` (a host-only cookie
/// here: no `--session-domain`).
fn session(s: &Server, email: &str) -> String {
    s.add_user(email, crate::PASSWORD);
    let r = s.post(
        "/api/auth",
        None,
        &serde_json::json!({"email": email, "password": crate::PASSWORD}),
    );
    let token = r.json()["token"].as_str().unwrap().to_string();
    let made = s.post("/api/auth/session", Some(&token), &serde_json::json!({}));
    assert_eq!(made.status, 204, "{}", made.text());
    let cookie = made.header("Set-Cookie").unwrap();
    cookie["mfad_session=".len()..cookie.find(';').unwrap()].to_string()
}
