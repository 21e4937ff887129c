//! The OpenID provider over raw HTTP (#26): the code flow with a browser session, each
//! protocol rule of API.md that can be broken, and what a reused code or refresh token
//! ends. ID tokens are checked with the JWKS by `jsonwebtoken`, not by mfad's own code.
//! (On PostgreSQL too.)

use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Value};

use crate::common::{code_at, now, Resp, Server};
use crate::forward_auth::{session_of, signed_in};
use crate::{challenge, enable, verify, PASSWORD};

const ISSUER: &str = "https://auth.example.test";
const CB: &str = "https://grafana.example.test/login/generic_oauth";
const SPA_CB: &str = "http://127.0.0.1:5173/cb";

fn provider() -> Server {
    Server::start(&["--public-url", ISSUER, "--session-domain", "example.test"])
}

/// Registers a client; its secret for a confidential one.
fn client(s: &Server, id: &str, extra: &[&str]) -> Option<String> {
    let redirect = if extra.contains(&"--public") {
        SPA_CB
    } else {
        CB
    };
    let args = [
        &[
            "client",
            "add",
            "--id",
            id,
            "--name",
            id,
            "--redirect-uri",
            redirect,
        ][..],
        extra,
    ]
    .concat();
    let (ok, out, err) = s.cli(&args, None);
    assert!(ok, "{err}");
    out.lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .map(str::to_string)
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /oidc/authorize` with `pairs` and, if given, the session cookie.
fn authorize(s: &Server, pairs: &[(&str, &str)], session: Option<&str>) -> Resp {
    let cookie = session.map(|c| format!("mfad_session={c}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
    s.request(
        "GET",
        &format!("/oidc/authorize?{}", query(pairs)),
        &headers,
        None,
    )
}

/// The parameters of a redirect's `Location`, decoded.
fn location_params(r: &Resp) -> (String, Vec<(String, String)>) {
    let loc = r
        .header("Location")
        .unwrap_or_else(|| panic!("no Location: {}", r.status));
    let (base, q) = loc.split_once('?').unwrap_or((loc, ""));
    let params = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), decode(v))
        })
        .collect();
    (base.to_string(), params)
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A code for `client_id` from a session that its policy accepts.
fn code_for(s: &Server, client_id: &str, session: &str, extra: &[(&str, &str)]) -> String {
    let redirect = if client_id.starts_with("spa") {
        SPA_CB
    } else {
        CB
    };
    let pairs = [
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", "openid email profile"),
            ("state", "st-1"),
            ("nonce", "n-1"),
        ][..],
        extra,
    ]
    .concat();
    let r = authorize(s, &pairs, Some(session));
    assert_eq!(r.status, 302, "{}", r.text());
    let (base, params) = location_params(&r);
    assert_eq!(base, redirect);
    assert_eq!(param(&params, "state"), Some("st-1"));
    assert_eq!(param(&params, "iss"), Some(ISSUER));
    param(&params, "code")
        .unwrap_or_else(|| panic!("no code: {params:?}"))
        .to_string()
}

/// `POST /oidc/token` with the form `pairs`, as `basic` (id, secret) if given.
fn token(s: &Server, pairs: &[(&str, &str)], basic: Option<(&str, &str)>) -> Resp {
    let auth = basic.map(|(id, secret)| {
        format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("{id}:{secret}").as_bytes())
        )
    });
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    s.request("POST", "/oidc/token", &headers, Some(&query(pairs)))
}

fn exchange(s: &Server, code: &str, basic: (&str, &str)) -> Resp {
    token(
        s,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CB),
        ],
        Some(basic),
    )
}

fn refresh(s: &Server, refresh: &str, basic: (&str, &str)) -> Resp {
    token(
        s,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        Some(basic),
    )
}

fn userinfo(s: &Server, access: &str) -> Resp {
    s.get("/oidc/userinfo", Some(access))
}

/// The claims of an ID token, checked with the key its `kid` names in the JWKS.
fn id_claims(s: &Server, id_token: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(s.get("/.well-known/jwks.json", None).json()).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is in the JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap_or_else(|e| panic!("the ID token does not verify: {e}"))
        .claims
}

/// A session cookie of a login with password and TOTP.
fn two_factor_session(s: &Server, email: &str) -> String {
    s.add_user(email, PASSWORD);
    let r = s.post(
        "/api/auth",
        None,
        &json!({"email": email, "password": PASSWORD}),
    );
    let token = r.json()["token"].as_str().unwrap().to_string();
    let (secret, step, _) = enable(s, &token);
    let mfa = challenge(s, email);
    // The step after the one enable used: a code is never accepted twice.
    let code = code_at(&secret, (step + 1) * 30);
    while now() / 30 < step + 1 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = verify(s, &mfa, &code);
    assert_eq!(r.status, 200, "{}", r.text());
    session_of(s, r.json()["token"].as_str().unwrap())
}

#[test]
fn the_code_flow_gives_verified_tokens_and_a_reused_code_ends_what_it_gave() {
    let s = provider();
    let secret = client(&s, "grafana", &["--policy", "one_factor"]).unwrap();
    let basic = ("grafana", secret.as_str());
    let (_, session) = signed_in(&s, "ana@example.com");
    let code = code_for(&s, "grafana", &session, &[]);
    let r = exchange(&s, &code, basic);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert!(
        r.header("Set-Cookie").is_none(),
        "an app's tokens set no cookie of mfad's"
    );
    let t = r.json();
    assert_eq!(
        (t["token_type"].as_str(), t["expires_in"].as_i64()),
        (Some("Bearer"), Some(3600))
    );
    assert_eq!(t["scope"], "openid email profile");
    // The ID token, checked by jsonwebtoken with the JWKS's RSA key (RS256, the default).
    let id = id_claims(&s, t["id_token"].as_str().unwrap(), "grafana");
    assert_eq!(
        jsonwebtoken::decode_header(t["id_token"].as_str().unwrap())
            .unwrap()
            .alg,
        jsonwebtoken::Algorithm::RS256
    );
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["azp"], "grafana");
    assert_eq!(id["email"], "ana@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["amr"], json!(["pwd"]));
    let sub = id["sub"].as_str().unwrap().to_string();
    assert!(
        !sub.contains('@') && BASE64URL_NOPAD.decode(sub.as_bytes()).unwrap().len() == 16,
        "{sub}"
    );
    // The app's access token: userinfo answers; mfad's own API does not take it.
    let access = t["access_token"].as_str().unwrap();
    let u = userinfo(&s, access);
    assert_eq!(u.status, 200, "{}", u.text());
    assert_eq!(
        u.json(),
        json!({"sub": sub, "email": "ana@example.com", "email_verified": true, "preferred_username": "ana@example.com"})
    );
    let bearer = format!("Bearer {access}");
    let by_post = s.request(
        "POST",
        "/oidc/userinfo",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(by_post.status, 200, "{}", by_post.text());
    assert_eq!(by_post.json(), u.json());
    assert_eq!(s.get("/api/v1/me", Some(access)).status, 401);
    assert_eq!(s.get("/api/v1/me/mfa/status", Some(access)).status, 401);
    // The same sub at the next authorization.
    let code2 = code_for(&s, "grafana", &session, &[]);
    let t2 = exchange(&s, &code2, basic).json();
    let id2 = id_claims(&s, t2["id_token"].as_str().unwrap(), "grafana");
    assert_eq!(id2["sub"], sub.as_str());
    // A refresh: rotated, the new ID token without a nonce; the old one reused ends all.
    let r = refresh(&s, t2["refresh_token"].as_str().unwrap(), basic);
    assert_eq!(r.status, 200, "{}", r.text());
    let t3 = r.json();
    assert_ne!(t3["refresh_token"], t2["refresh_token"]);
    let id3 = id_claims(&s, t3["id_token"].as_str().unwrap(), "grafana");
    assert!(id3.get("nonce").is_none(), "{id3}");
    assert_eq!(
        userinfo(&s, t3["access_token"].as_str().unwrap()).status,
        200
    );
    let reused = refresh(&s, t2["refresh_token"].as_str().unwrap(), basic);
    assert_eq!(
        (reused.status, reused.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let after = refresh(&s, t3["refresh_token"].as_str().unwrap(), basic);
    assert_eq!(after.json()["error"], "invalid_grant", "the family ended");
    assert_eq!(
        userinfo(&s, t3["access_token"].as_str().unwrap()).status,
        401
    );
    // The first code again: invalid_grant, and what it gave ends (refresh, userinfo).
    let again = exchange(&s, &code, basic);
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
    let dead = refresh(&s, t["refresh_token"].as_str().unwrap(), basic);
    assert_eq!(dead.json()["error"], "invalid_grant");
    let u = userinfo(&s, access);
    assert_eq!(u.status, 401);
    assert_eq!(
        u.header("WWW-Authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let (_, trail, _) = s.cli(&["audit"], None);
    assert!(
        trail.contains("oidc_authorized (client grafana)"),
        "{trail}"
    );
    assert!(
        trail.contains("oidc_code_reused (client grafana)"),
        "{trail}"
    );
}

#[test]
fn redirect_uris_must_match_exactly_and_other_errors_go_back_with_the_state() {
    let s = provider();
    client(&s, "grafana", &["--policy", "one_factor"]);
    let (_, session) = signed_in(&s, "bo@example.com");
    for redirect in [
        "https://evil.example/cb",
        &format!("{CB}/x"),
        &format!("{CB}?x=1"),
        &CB.to_uppercase(),
    ] {
        let r = authorize(
            &s,
            &[
                ("response_type", "code"),
                ("client_id", "grafana"),
                ("redirect_uri", redirect),
                ("scope", "openid"),
                ("state", "s"),
            ],
            Some(&session),
        );
        assert_eq!(r.status, 400, "{redirect}");
        assert!(r.header("Location").is_none(), "{redirect}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("redirect_uri"),
            "{}",
            r.text()
        );
    }
    let r = authorize(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", CB),
            ("scope", "openid"),
        ],
        Some(&session),
    );
    assert_eq!(r.status, 400);
    assert!(r.header("Location").is_none());
    // Checked after the client and URI: back to the app, with state and iss.
    for (pairs, error) in [
        (
            vec![("response_type", "token"), ("scope", "openid")],
            "unsupported_response_type",
        ),
        (
            vec![("response_type", "code"), ("scope", "email")],
            "invalid_scope",
        ),
        (
            vec![
                ("response_type", "code"),
                ("scope", "openid"),
                ("code_challenge", "abc"),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
    ] {
        let all = [
            &[
                ("client_id", "grafana"),
                ("redirect_uri", CB),
                ("state", "keep-me"),
            ][..],
            &pairs,
        ]
        .concat();
        let r = authorize(&s, &all, Some(&session));
        assert_eq!(r.status, 302, "{pairs:?}");
        let (base, params) = location_params(&r);
        assert_eq!(base, CB);
        assert_eq!(param(&params, "error"), Some(error), "{pairs:?}");
        assert_eq!(param(&params, "state"), Some("keep-me"));
        assert_eq!(param(&params, "iss"), Some(ISSUER));
    }
}

#[test]
fn prompt_none_and_sessions_the_policy_does_not_accept() {
    let s = provider();
    client(&s, "grafana", &["--policy", "one_factor"]);
    client(&s, "vault", &[]);
    let (_, session) = signed_in(&s, "cy@example.com");
    let base = |id: &'static str| {
        vec![
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", CB),
            ("scope", "openid"),
            ("state", "s1"),
        ]
    };
    // No session: prompt=none is login_required; without it, mfad's page, coming back.
    let mut none = base("grafana");
    none.push(("prompt", "none"));
    let r = authorize(&s, &none, None);
    let (to, params) = location_params(&r);
    assert_eq!(
        (to.as_str(), param(&params, "error")),
        (CB, Some("login_required"))
    );
    assert_eq!(param(&params, "state"), Some("s1"));
    let r = authorize(&s, &base("grafana"), None);
    let (to, params) = location_params(&r);
    assert_eq!(to, format!("{ISSUER}/"));
    let rd = param(&params, "rd").unwrap();
    assert!(rd.starts_with(&format!("{ISSUER}/oidc/authorize?")), "{rd}");
    assert!(rd.contains("client_id=grafana"), "{rd}");
    // login_hint goes to the page, which fills the email in with it.
    let mut hinted = base("grafana");
    hinted.push(("login_hint", "cy@example.com"));
    let (_, params) = location_params(&authorize(&s, &hinted, None));
    assert_eq!(param(&params, "login_hint"), Some("cy@example.com"));
    // With a session: prompt=none gives a code at once.
    let r = authorize(&s, &none, Some(&session));
    let (_, params) = location_params(&r);
    assert!(param(&params, "code").is_some(), "{params:?}");
    // A two_factor app and a password-only session: the page, for a second factor;
    // prompt=none is login_required.
    let r = authorize(&s, &base("vault"), Some(&session));
    let (to, params) = location_params(&r);
    assert_eq!(to, format!("{ISSUER}/"));
    assert!(
        params.iter().any(|(k, v)| k == "need" && v == "2fa"),
        "{params:?}"
    );
    let mut vault_none = base("vault");
    vault_none.push(("prompt", "none"));
    let (_, params) = location_params(&authorize(&s, &vault_none, Some(&session)));
    assert_eq!(param(&params, "error"), Some("login_required"));
    // With password and TOTP it passes, and says so in amr.
    let strong = two_factor_session(&s, "dee@example.com");
    let (ok, out, _) = s.cli(&["client", "secret", "--id", "vault"], None);
    assert!(ok);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_string();
    let code = code_for(&s, "vault", &strong, &[]);
    let t = exchange(&s, &code, ("vault", &secret)).json();
    let id = id_claims(&s, t["id_token"].as_str().unwrap(), "vault");
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
    // prompt=login with a session: the page again, asking for a new sign-in.
    let mut login = base("grafana");
    login.push(("prompt", "login"));
    let (to, params) = location_params(&authorize(&s, &login, Some(&session)));
    assert_eq!(to, format!("{ISSUER}/"));
    assert_eq!(param(&params, "prompt"), Some("login"));
    assert!(param(&params, "rd").unwrap().contains("mfad_since="));
}

#[test]
fn the_token_endpoint_checks_the_client_the_code_and_pkce() {
    let s = provider();
    let secret = client(&s, "grafana", &["--policy", "one_factor"]).unwrap();
    let other = client(&s, "wiki", &["--policy", "one_factor"]).unwrap();
    client(&s, "spa", &["--public", "--policy", "one_factor"]);
    let (_, session) = signed_in(&s, "eve@example.com");
    // JSON is not a token request.
    let r = s.request(
        "POST",
        "/oidc/token",
        &[("Content-Type", "application/json")],
        Some(r#"{"grant_type": "authorization_code"}"#),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // A wrong secret, an unknown client: 401 invalid_client with a Basic challenge.
    let code = code_for(&s, "grafana", &session, &[]);
    for basic in [("grafana", "not-it"), ("nobody", secret.as_str())] {
        let r = exchange(&s, &code, basic);
        assert_eq!(r.status, 401, "{basic:?}");
        assert_eq!(r.json()["error"], "invalid_client");
        assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"mfad\""));
    }
    // Client B cannot redeem client A's code; A still can.
    let r = exchange(&s, &code, ("wiki", &other));
    assert_eq!(r.json()["error"], "invalid_grant");
    // The secret in the form (client_secret_post) does as well as Basic.
    let r = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", "grafana"),
            ("client_secret", &secret),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Another redirect_uri than the authorization's.
    let code = code_for(&s, "grafana", &session, &[]);
    let r = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://grafana.example.test/other"),
        ],
        Some(("grafana", &secret)),
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    // A public client: PKCE S256 required at authorize, the verifier checked here.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let no_pkce = authorize(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", SPA_CB),
            ("scope", "openid"),
            ("state", "x"),
        ],
        Some(&session),
    );
    let (_, params) = location_params(&no_pkce);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    let pkce = [
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    let public = |code: &str, verifier: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", SPA_CB),
            ("client_id", "spa"),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        token(&s, &form, None)
    };
    let code = code_for(&s, "spa", &session, &pkce);
    assert_eq!(public(&code, None).json()["error"], "invalid_grant");
    let code = code_for(&s, "spa", &session, &pkce);
    assert_eq!(
        public(&code, Some(&verifier.replace('d', "e"))).json()["error"],
        "invalid_grant"
    );
    let code = code_for(&s, "spa", &session, &pkce);
    let r = public(&code, Some(verifier));
    assert_eq!(r.status, 200, "{}", r.text());
    // A public client without offline_access gets no refresh token.
    assert!(r.json().get("refresh_token").is_none());
    // A public client that sends a secret is not authenticated by it.
    let code = code_for(&s, "spa", &session, &pkce);
    let r = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SPA_CB),
            ("client_id", "spa"),
            ("client_secret", "x"),
            ("code_verifier", verifier),
        ],
        None,
    );
    assert_eq!(r.json()["error"], "invalid_client");
    // Removing a client ends what it was given.
    let code = code_for(&s, "grafana", &session, &[]);
    let t = exchange(&s, &code, ("grafana", &secret)).json();
    let (ok, _, _) = s.cli(&["client", "remove", "--id", "grafana"], None);
    assert!(ok);
    assert_eq!(
        userinfo(&s, t["access_token"].as_str().unwrap()).status,
        401
    );
}

#[test]
fn an_ended_account_ends_its_grants() {
    let s = provider();
    let secret = client(&s, "grafana", &["--policy", "one_factor"]).unwrap();
    let (_, session) = signed_in(&s, "fay@example.com");
    let t = exchange(
        &s,
        &code_for(&s, "grafana", &session, &[]),
        ("grafana", &secret),
    )
    .json();
    assert_eq!(
        userinfo(&s, t["access_token"].as_str().unwrap()).status,
        200
    );
    let (ok, _, err) = s.cli(&["user", "reset-mfa", "--email", "fay@example.com"], None);
    assert!(ok, "{err}");
    assert_eq!(
        userinfo(&s, t["access_token"].as_str().unwrap()).status,
        401
    );
    let r = refresh(
        &s,
        t["refresh_token"].as_str().unwrap(),
        ("grafana", &secret),
    );
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[test]
fn logout_goes_back_only_to_a_registered_uri_and_only_with_a_hint_ends_the_session() {
    let s = provider();
    let secret = client(
        &s,
        "grafana",
        &[
            "--policy",
            "one_factor",
            "--post-logout-uri",
            "https://grafana.example.test/bye",
        ],
    )
    .unwrap();
    let basic = ("grafana", secret.as_str());
    let (_, session) = signed_in(&s, "gus@example.com");
    let hint = |session: &str| {
        let t = exchange(&s, &code_for(&s, "grafana", session, &[]), basic).json();
        t["id_token"].as_str().unwrap().to_string()
    };
    let logout = |pairs: &[(&str, &str)], session: &str| {
        let cookie = format!("mfad_session={session}");
        s.request(
            "GET",
            &format!("/oidc/logout?{}", query(pairs)),
            &[("Cookie", cookie.as_str())],
            None,
        )
    };
    let alive = |session: &str| {
        let r = authorize(
            &s,
            &[
                ("response_type", "code"),
                ("client_id", "grafana"),
                ("redirect_uri", CB),
                ("scope", "openid"),
                ("prompt", "none"),
            ],
            Some(session),
        );
        param(&location_params(&r).1, "code").is_some()
    };
    // No hint (or a forged one): nothing ends; the page asks.
    let id_token = hint(&session);
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    for pairs in [
        vec![(
            "post_logout_redirect_uri",
            "https://grafana.example.test/bye",
        )],
        vec![
            ("id_token_hint", forged.as_str()),
            (
                "post_logout_redirect_uri",
                "https://grafana.example.test/bye",
            ),
        ],
    ] {
        let r = logout(&pairs, &session);
        assert_eq!(r.status, 302);
        assert_eq!(
            r.header("Location"),
            Some(format!("{ISSUER}/?logout=confirm").as_str())
        );
        assert!(alive(&session));
    }
    // A hint and an unregistered URI: the session ends, the browser goes to the page.
    let r = logout(
        &[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        &session,
    );
    assert_eq!(
        r.header("Location"),
        Some(format!("{ISSUER}/?logout=done").as_str())
    );
    assert!(
        r.header("Set-Cookie")
            .unwrap()
            .starts_with("mfad_session=;"),
        "{:?}",
        r.header("Set-Cookie")
    );
    assert!(!alive(&session));
    // A hint and the registered URI: back there, with the state.
    let (_, again) = signed_in(&s, "hal@example.com");
    let id_token = hint(&again);
    let r = logout(
        &[
            ("id_token_hint", &id_token),
            (
                "post_logout_redirect_uri",
                "https://grafana.example.test/bye",
            ),
            ("state", "s-9"),
        ],
        &again,
    );
    assert_eq!(
        r.header("Location"),
        Some("https://grafana.example.test/bye?state=s-9")
    );
    assert!(!alive(&again));
}

#[test]
fn revocation_ends_the_grant_of_a_refresh_or_access_token_of_its_own_client_only() {
    let s = provider();
    let secret = client(&s, "grafana", &["--policy", "one_factor"]).unwrap();
    let other = client(&s, "wiki", &["--policy", "one_factor"]).unwrap();
    let basic = ("grafana", secret.as_str());
    let (_, session) = signed_in(&s, "ida@example.com");
    let revoke = |token: &str, who: (&str, &str)| {
        let auth = format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("{}:{}", who.0, who.1).as_bytes())
        );
        s.request(
            "POST",
            "/oidc/revoke",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &auth),
            ],
            Some(&query(&[("token", token)])),
        )
    };
    let t = exchange(&s, &code_for(&s, "grafana", &session, &[]), basic).json();
    let refresh_token = t["refresh_token"].as_str().unwrap();
    // A wrong secret: invalid_client, nothing ends.
    let r = revoke(refresh_token, ("grafana", "nope"));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Another client's token: 200, and nothing ends.
    let r = revoke(refresh_token, ("wiki", &other));
    assert_eq!(r.status, 200);
    assert_eq!(
        userinfo(&s, t["access_token"].as_str().unwrap()).status,
        200
    );
    // Whatever the token: 200.
    assert_eq!(revoke("not-a-token", basic).status, 200);
    // Its own: the refresh token and the grant's access tokens end.
    assert_eq!(revoke(refresh_token, basic).status, 200);
    assert_eq!(
        refresh(&s, refresh_token, basic).json()["error"],
        "invalid_grant"
    );
    assert_eq!(
        userinfo(&s, t["access_token"].as_str().unwrap()).status,
        401
    );
    // An access token revoked ends its grant too.
    let t = exchange(&s, &code_for(&s, "grafana", &session, &[]), basic).json();
    assert_eq!(
        revoke(t["access_token"].as_str().unwrap(), basic).status,
        200
    );
    let dead = refresh(&s, t["refresh_token"].as_str().unwrap(), basic);
    assert_eq!(dead.json()["error"], "invalid_grant");
}

/// Two nodes on one PostgreSQL database: a client registered once, one RSA key, a code
/// made on one node redeemed on the other, and a refresh token reused on one ending the
/// grant on both.
#[test]
fn two_nodes_share_clients_the_rsa_key_codes_and_refresh_reuse() {
    if !crate::common::on_postgres() {
        eprintln!("SKIPPED: two nodes need the PostgreSQL run (MFAD_TEST_DATABASE_URL)");
        return;
    }
    let a = provider();
    let b = a.second_node(&["--public-url", ISSUER, "--session-domain", "example.test"]);
    let secret = client(&a, "grafana", &["--policy", "one_factor"]).unwrap();
    let basic = ("grafana", secret.as_str());
    let jwks = |s: &Server| s.get("/.well-known/jwks.json", None).json();
    assert_eq!(jwks(&a), jwks(&b));
    assert_eq!(
        jwks(&a)["keys"].as_array().unwrap().len(),
        2,
        "{}",
        jwks(&a)
    );
    let (_, session) = signed_in(&a, "jo@example.com");
    let code = code_for(&b, "grafana", &session, &[]);
    let r = exchange(&a, &code, basic);
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json();
    id_claims(&b, t["id_token"].as_str().unwrap(), "grafana");
    let t2 = refresh(&b, t["refresh_token"].as_str().unwrap(), basic).json();
    assert!(t2["refresh_token"].is_string(), "{t2}");
    let reused = refresh(&a, t["refresh_token"].as_str().unwrap(), basic);
    assert_eq!(reused.json()["error"], "invalid_grant");
    assert_eq!(
        refresh(&b, t2["refresh_token"].as_str().unwrap(), basic).json()["error"],
        "invalid_grant"
    );
    assert_eq!(
        userinfo(&b, t2["access_token"].as_str().unwrap()).status,
        401
    );
    // Removed through one node's data: the other refuses the app at once.
    let (ok, _, _) = a.cli(&["client", "remove", "--id", "grafana"], None);
    assert!(ok);
    let r = authorize(
        &b,
        &[
            ("response_type", "code"),
            ("client_id", "grafana"),
            ("redirect_uri", CB),
            ("scope", "openid"),
        ],
        Some(&session),
    );
    assert_eq!(r.status, 400);
}

/// A browser app that is a public client calls the token and userinfo endpoints across
/// origins: `--cors-origin` lets its origin, and only its, read the answers.
#[test]
fn the_token_and_userinfo_endpoints_follow_cors_origin() {
    let s = Server::start(&[
        "--public-url",
        ISSUER,
        "--session-domain",
        "example.test",
        "--cors-origin",
        "http://127.0.0.1:5173",
    ]);
    client(&s, "spa", &["--public", "--policy", "one_factor"]);
    for (path, method) in [("/oidc/token", "POST"), ("/oidc/userinfo", "GET")] {
        let ok = s.request(
            "OPTIONS",
            path,
            &[
                ("Origin", "http://127.0.0.1:5173"),
                ("Access-Control-Request-Method", method),
            ],
            None,
        );
        assert_eq!(ok.status, 204, "{path}");
        assert_eq!(
            ok.header("Access-Control-Allow-Origin"),
            Some("http://127.0.0.1:5173")
        );
        assert!(ok
            .header("Access-Control-Allow-Methods")
            .unwrap()
            .contains(method));
        let other = s.request(
            "OPTIONS",
            path,
            &[
                ("Origin", "https://evil.example"),
                ("Access-Control-Request-Method", method),
            ],
            None,
        );
        assert_eq!(other.status, 403, "{path}");
    }
    let r = s.request(
        "POST",
        "/oidc/token",
        &[
            ("Origin", "http://127.0.0.1:5173"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=authorization_code&code=x&client_id=spa&redirect_uri=x"),
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("http://127.0.0.1:5173")
    );
}
