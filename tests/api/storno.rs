//! Storno's own web frontend against mfad, replayed request by request as its auth store
//! and MFA composables send them (headers included); CORS, the refresh cookie, logout,
//! step-up MFA, and every sentence API.md quotes from Storno, word for word.

use serde_json::{json, Value};

use crate::common::*;
use crate::{enable, user_token, ENABLE, LOGIN, PASSWORD, REFRESH, SETUP, VERIFY};

const FRONTEND: &str = "http://localhost:3000";
const ME: &str = "/api/v1/me";
const LOGOUT: &str = "/api/auth/logout";
const CHALLENGE: &str = "/api/v1/mfa/challenge";
const STEP_VERIFY: &str = "/api/v1/mfa/verify";
const REDEEM: &str = "/api/v1/mfa/verification/redeem";

/// A request as the frontend's fetch sends it: from its origin, JSON, with credentials.
fn browser(
    s: &Server,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    cookie: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let jar = cookie.map(|c| format!("__refresh__token={c}"));
    let mut headers = vec![("Origin", FRONTEND), ("Accept", "application/json")];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    if let Some(c) = &jar {
        headers.push(("Cookie", c));
    }
    let text = body.map(Value::to_string);
    s.request(method, path, &headers, text.as_deref())
}

fn preflight(s: &Server, origin: &str, path: &str, method: &str) -> Resp {
    s.request(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        None,
    )
}

/// The refresh token a `Set-Cookie` carries, checking every attribute.
fn cookie_of(r: &Resp) -> String {
    let set = r.header("Set-Cookie").expect("a Set-Cookie");
    let (pair, attrs) = set.split_once("; ").unwrap();
    assert_eq!(
        attrs, "HttpOnly; Secure; SameSite=Strict; Path=/api/auth; Max-Age=2592000",
        "{set}"
    );
    let token = pair.strip_prefix("__refresh__token=").unwrap().to_string();
    assert_eq!(
        token,
        r.json()["refresh_token"],
        "the cookie is the body's token"
    );
    token
}

fn assert_cors(r: &Resp) {
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(FRONTEND));
    assert_eq!(r.header("Access-Control-Allow-Credentials"), Some("true"));
    assert_eq!(r.header("Vary"), Some("Origin"));
}

#[test]
fn storno_frontend_flow_step_by_step() {
    let s = Server::start(&["--cors-origin", FRONTEND]);
    let email = "storno@example.com";
    let first = user_token(&s, email);
    let (secret, _, _) = enable(&s, &first);

    // 1. Login, cross-origin: the preflight, then the POST with turnstileToken.
    let p = preflight(&s, FRONTEND, LOGIN, "POST");
    assert_eq!(p.status, 204, "{}", p.text());
    assert_cors(&p);
    assert_eq!(p.header("Access-Control-Allow-Methods"), Some("POST"));
    assert_eq!(
        p.header("Access-Control-Allow-Headers"),
        Some("Authorization, Content-Type")
    );
    assert_eq!(p.header("Access-Control-Max-Age"), Some("3600"));
    let body = json!({"email": email, "password": PASSWORD, "turnstileToken": "XXXX.DUMMY"});
    let r = browser(&s, "POST", LOGIN, None, None, Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_cors(&r);
    let v = r.json();
    assert_eq!(v["mfa_required"], true);
    assert_eq!(v["mfa_methods"], json!(["totp", "backup_code"]));
    let mfa = v["mfa_token"].as_str().unwrap().to_string();

    // 2. The TOTP tab: the next step's code (enable spent this one).
    assert_eq!(preflight(&s, FRONTEND, VERIFY, "POST").status, 204);
    let code = code_at(&secret, now() + 30);
    let r = browser(
        &s,
        "POST",
        VERIFY,
        None,
        None,
        Some(&json!({"mfaToken": mfa, "code": code, "type": "totp"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_cors(&r);
    let token = r.json()["token"].as_str().unwrap().to_string();
    let cookie = cookie_of(&r);

    // 3. The user, then a 401, a refresh by the cookie alone (no body), the retry.
    assert_eq!(
        preflight(&s, FRONTEND, ME, "GET").header("Access-Control-Allow-Methods"),
        Some("GET")
    );
    let r = browser(&s, "GET", ME, Some(&token), None, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let user = r.json();
    let keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "id",
        "email",
        "firstName",
        "lastName",
        "phone",
        "locale",
        "timezone",
        "roles",
        "active",
        "emailVerified",
        "mfaEnabled",
        "hasPassword",
        "createdAt",
        "updatedAt",
        "lastConnectedAt",
    ] {
        assert!(keys.contains(&k), "{k} missing from {user}");
    }
    assert_eq!(user["email"], email);
    assert_eq!(user["mfaEnabled"], true);
    assert_eq!(user["hasPassword"], true);
    assert_eq!(user["roles"], json!(["ROLE_USER"]));
    assert!(user["id"].is_string());
    let rfc3339 = |v: &Value| {
        let t = v.as_str().unwrap();
        assert!(
            t.len() == 20 && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    };
    rfc3339(&user["createdAt"]);
    rfc3339(&user["lastConnectedAt"]);
    let r = browser(&s, "GET", ME, Some("expired.or.garbage"), None, None);
    assert_eq!(r.status, 401);
    assert_cors(&r);
    let r = s.request(
        "POST",
        REFRESH,
        &[
            ("Origin", FRONTEND),
            ("Cookie", &format!("__refresh__token={cookie}")),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let cookie = cookie_of(&r);
    assert_eq!(browser(&s, "GET", ME, Some(&token), None, None).status, 200);

    // 4. The settings page.
    let r = browser(&s, "GET", "/api/v1/me/mfa/status", Some(&token), None, None);
    assert_eq!(
        r.json(),
        json!({"totpEnabled": true, "backupCodesRemaining": 10, "passkeysCount": 0})
    );
    let r = browser(
        &s,
        "POST",
        "/api/v1/me/mfa/backup-codes/regenerate",
        Some(&token),
        None,
        Some(&json!({"password": PASSWORD})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let codes = r.json()["backupCodes"].clone();
    assert_eq!(codes.as_array().unwrap().len(), 10);

    // 5. Step-up before a sensitive action.
    let r = browser(&s, "POST", CHALLENGE, Some(&token), None, Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["mfa_required"], true);
    assert_eq!(r.json()["methods"], json!(["totp", "backup_code"]));
    let challenge = r.json()["challenge_token"].as_str().unwrap().to_string();
    // A backup code: the TOTP steps within reach were spent by enable and verify.
    let r = browser(
        &s,
        "POST",
        STEP_VERIFY,
        Some(&token),
        None,
        Some(&json!({"challengeToken": challenge, "type": "backup_code", "code": codes[0]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let verification = r.json()["verification_token"].as_str().unwrap().to_string();
    assert_eq!(verification.len(), 64);
    let r = browser(
        &s,
        "POST",
        REDEEM,
        Some(&token),
        None,
        Some(&json!({"verificationToken": verification})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["verified"], true);
    assert_eq!(r.json()["method"], "backup_code");
    rfc3339(&r.json()["verifiedAt"]);

    // Sign out: the cookie is cleared and its login is over.
    let r = s.request(
        "POST",
        LOGOUT,
        &[
            ("Origin", FRONTEND),
            ("Cookie", &format!("__refresh__token={cookie}")),
        ],
        None,
    );
    assert_eq!(r.status, 204);
    assert!(r.header("Set-Cookie").unwrap().ends_with("Max-Age=0"));
    assert_eq!(
        s.post(REFRESH, None, &json!({"refresh_token": cookie}))
            .status,
        401
    );
}

#[test]
fn cors_answers_listed_origins_only() {
    let s = Server::start(&[
        "--cors-origin",
        FRONTEND,
        "--cors-origin",
        "https://app.example.com",
    ]);
    let token = user_token(&s, "cors@example.com");
    let r = browser(&s, "GET", ME, Some(&token), None, None);
    assert_cors(&r);
    // An unlisted origin: no CORS headers; its preflight is 403.
    let r = s.request(
        "GET",
        ME,
        &[
            ("Origin", "https://evil.example"),
            ("Authorization", &format!("Bearer {token}")),
        ],
        None,
    );
    assert_eq!(
        r.status, 200,
        "a server answers; the browser keeps it from the page"
    );
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    assert_eq!(r.header("Access-Control-Allow-Credentials"), None);
    assert_eq!(r.header("Vary"), Some("Origin"));
    let p = preflight(&s, "https://evil.example", LOGIN, "POST");
    assert_eq!(p.status, 403);
    assert_eq!(p.json(), json!({"error": "Origin not allowed."}));
    assert_eq!(p.header("Access-Control-Allow-Origin"), None);
    // Every API path answers a listed origin's preflight with its own method.
    for (path, method) in [
        (SETUP, "POST"),
        ("/api/v1/me/mfa/status", "GET"),
        (LOGOUT, "POST"),
        (REDEEM, "POST"),
    ] {
        let p = preflight(&s, "https://app.example.com", path, method);
        assert_eq!(p.status, 204, "{path}");
        assert_eq!(
            p.header("Access-Control-Allow-Origin"),
            Some("https://app.example.com")
        );
        assert_eq!(
            p.header("Access-Control-Allow-Methods"),
            Some(method),
            "{path}"
        );
    }
    // A path mfad does not have (#23): the listed origin's preflight passes, so its page
    // sees the 404 itself rather than a CORS failure; an unlisted one's is still 403.
    let missing = "/api/v1/no-such-thing";
    let p = preflight(&s, "https://app.example.com", missing, "POST");
    assert_eq!(p.status, 204);
    assert_eq!(
        p.header("Access-Control-Allow-Origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        p.header("Access-Control-Allow-Methods"),
        Some("GET, POST, DELETE")
    );
    let r = browser(&s, "POST", missing, Some(&token), None, None);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some(FRONTEND));
    assert_eq!(
        preflight(&s, "https://evil.example", missing, "POST").status,
        403
    );
    // Without --cors-origin, nobody is listed.
    let plain = Server::start(&[]);
    assert_eq!(preflight(&plain, FRONTEND, LOGIN, "POST").status, 403);
    let r = plain.get("/healthz", None);
    assert_eq!(r.header("Vary"), None);
    // A wildcard or a path is refused at start.
    for bad in ["*", "http://localhost:3000/app"] {
        let out = std::process::Command::new(BIN)
            .args(["serve", "--cors-origin", bad])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--cors-origin"),
            "{bad}"
        );
    }
}

#[test]
fn the_cookie_refuses_other_sites_and_logout_ends_its_login() {
    let s = Server::start(&["--cors-origin", FRONTEND, "--cookie-samesite", "lax"]);
    s.add_user("cookie@example.com", PASSWORD);
    let r = s.post(
        LOGIN,
        None,
        &json!({"email": "cookie@example.com", "password": PASSWORD}),
    );
    let set = r.header("Set-Cookie").unwrap().to_string();
    assert!(set.contains("; SameSite=Lax;"), "{set}");
    let token = r.json()["refresh_token"].as_str().unwrap().to_string();
    let jar = format!("__refresh__token={token}");
    // A page of another site posting with the cookie: refused, and the token still works.
    for path in [REFRESH, LOGOUT] {
        let r = s.request(
            "POST",
            path,
            &[("Origin", "https://evil.example"), ("Cookie", &jar)],
            None,
        );
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json(), json!({"error": "Origin not allowed."}));
    }
    // mfad's own origin (the Host it is reached at: the test client sends 127.0.0.1).
    let own = "http://127.0.0.1".to_string();
    let r = s.request("POST", REFRESH, &[("Origin", &own), ("Cookie", &jar)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["refresh_token"].as_str().unwrap().to_string();
    // The body wins over the cookie (#23): Storno's server refreshes with the token in
    // the body while the browser's cookie still holds the one that refresh just
    // rotated. With the cookie winning, this pair revoked the login.
    let stale = token.clone();
    let r = s.post(REFRESH, None, &json!({ "refresh_token": token }));
    assert_eq!(r.status, 200, "{}", r.text());
    let current = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = s.request(
        "POST",
        REFRESH,
        &[
            ("Cookie", &format!("__refresh__token={stale}")),
            ("Content-Type", "application/json"),
        ],
        Some(&format!(r#"{{"refresh_token":"{current}"}}"#)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !s.log_has("refresh_reuse_detected"),
        "the stale cookie was used"
    );
    let token = r.json()["refresh_token"].as_str().unwrap().to_string();
    // Logout by the body, from no browser at all: 204, the cookie cleared, the login over.
    let r = s.post(LOGOUT, None, &json!({"refresh_token": token}));
    assert_eq!(r.status, 204);
    assert_eq!(r.body.len(), 0);
    assert_eq!(
        r.header("Set-Cookie"),
        Some("__refresh__token=; HttpOnly; Secure; SameSite=Lax; Path=/api/auth; Max-Age=0")
    );
    let r = s.post(REFRESH, None, &json!({"refresh_token": token}));
    assert_eq!(r.status, 401);
    // Logout of an unknown token is 204 too.
    assert_eq!(
        s.post(LOGOUT, None, &json!({"refresh_token": "ab".repeat(32)}))
            .status,
        204
    );
    assert_eq!(s.post(LOGOUT, None, &json!({})).status, 204);
}

/// A refresh from mfad's own page carrying `jar` as its `Cookie` header.
fn refresh_with(s: &Server, jar: &str) -> Resp {
    s.request(
        "POST",
        REFRESH,
        &[("Origin", "http://127.0.0.1"), ("Cookie", jar)],
        None,
    )
}

/// The account an access token is for.
fn email_of(s: &Server, r: &Resp) -> String {
    let token = r.json()["token"].as_str().unwrap().to_string();
    s.get(ME, Some(&token)).json()["email"]
        .as_str()
        .unwrap()
        .to_string()
}

fn refresh_token_of(r: &Resp) -> String {
    r.json()["refresh_token"].as_str().unwrap().to_string()
}

/// A host under the same parent domain can set `__refresh__token` for the whole domain
/// with a longer path, which the browser sends first. The first cookie used to win: a
/// planted value that is no token made every refresh fail, and the planter's own live
/// token signed the victim in as the planter.
#[test]
fn a_cookie_planted_by_another_host_neither_signs_in_as_its_planter_nor_hides_the_own() {
    let s = Server::start(&[]);
    let login = |email: &str| {
        s.add_user(email, PASSWORD);
        let r = s.post(LOGIN, None, &json!({"email": email, "password": PASSWORD}));
        assert_eq!(r.status, 200, "{}", r.text());
        refresh_token_of(&r)
    };
    let victim = login("victim@example.com");
    let planter = login("planter@example.com");

    // Not a token: ignored.
    let r = refresh_with(
        &s,
        &format!("__refresh__token=planted; __refresh__token={victim}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(email_of(&s, &r), "victim@example.com");
    let victim = refresh_token_of(&r);

    // Two live logins: which is the browser's own cannot be told, so neither is used,
    // and neither is revoked.
    let r = refresh_with(
        &s,
        &format!("__refresh__token={planter}; __refresh__token={victim}"),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["message"], "Invalid JWT Refresh Token");
    assert!(s.log_has("refresh cookies of live logins"));
    assert!(!s.log_has("refresh_reuse_detected"));
    let r = refresh_with(&s, &format!("__refresh__token={victim}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(email_of(&s, &r), "victim@example.com");
    let victim = refresh_token_of(&r);
    let r = refresh_with(&s, &format!("__refresh__token={planter}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let (planter_old, planter) = (planter, refresh_token_of(&r));

    // A token already exchanged revokes its own login, as it would alone; the
    // victim's is untouched.
    let r = refresh_with(
        &s,
        &format!("__refresh__token={planter_old}; __refresh__token={victim}"),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        refresh_with(&s, &format!("__refresh__token={planter}")).status,
        401
    );
    let r = refresh_with(&s, &format!("__refresh__token={victim}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let victim = refresh_token_of(&r);

    // Logout ends every login the request carries a token of.
    let other = login("other@example.com");
    let r = s.request(
        "POST",
        "/api/auth/logout",
        &[(
            "Cookie",
            &format!("__refresh__token={other}; __refresh__token={victim}"),
        )],
        None,
    );
    assert_eq!(r.status, 204);
    for gone in [other, victim] {
        assert_eq!(
            refresh_with(&s, &format!("__refresh__token={gone}")).status,
            401
        );
    }
}

/// `--cookie-name-prefix __Host-`: a cookie the browser takes only from this host
/// (`Secure`, `Path=/`, no `Domain`), so no other host can plant one; the plain name is
/// then anyone's and ignored.
#[test]
fn the_host_prefixed_cookie_is_the_only_one_read_when_chosen() {
    let s = Server::start(&["--cookie-name-prefix", "__Host-"]);
    s.add_user("host@example.com", PASSWORD);
    let r = s.post(
        LOGIN,
        None,
        &json!({"email": "host@example.com", "password": PASSWORD}),
    );
    let token = refresh_token_of(&r);
    assert_eq!(
        r.header("Set-Cookie").unwrap(),
        format!(
            "__Host-__refresh__token={token}; HttpOnly; Secure; SameSite=Strict; Path=/; \
             Max-Age=2592000"
        )
    );
    let r = refresh_with(&s, &format!("__refresh__token={token}"));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Missing JWT Refresh Token");
    let r = refresh_with(&s, &format!("__Host-__refresh__token={token}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.request(
        "POST",
        "/api/auth/logout",
        &[(
            "Cookie",
            &format!("__Host-__refresh__token={}", refresh_token_of(&r)),
        )],
        None,
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("Set-Cookie"),
        Some("__Host-__refresh__token=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
    );

    for bad in ["__Secure-", "Host-", "x"] {
        let err = refused_setting("--cookie-name-prefix", bad);
        assert!(
            err.contains("--cookie-name-prefix") && err.contains("__Host-"),
            "{err}"
        );
    }
}

fn step_challenge(s: &Server, token: &str) -> Value {
    let r = s.post(CHALLENGE, Some(token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn step_verify(s: &Server, token: &str, challenge: &str, code: &str) -> Resp {
    s.post(
        STEP_VERIFY,
        Some(token),
        &json!({"challengeToken": challenge, "type": "totp", "code": code}),
    )
}

#[test]
fn step_up_goes_through_the_same_rule_as_login() {
    let s = Server::start(&["--login-rate", "0"]);
    let plain = user_token(&s, "no-mfa@example.com");
    assert_eq!(step_challenge(&s, &plain), json!({"mfa_required": false}));

    let alice = user_token(&s, "alice@example.com");
    let bob = user_token(&s, "bob@example.com");
    let (secret, _, codes) = enable(&s, &alice);
    enable(&s, &bob);
    let a_challenge = step_challenge(&s, &alice)["challenge_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Bob with Alice's challenge: as if there were none.
    let r = step_verify(&s, &bob, &a_challenge, &code_at(&secret, now() + 30));
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid or expired challenge."}));
    // A login challenge is not a step-up challenge either.
    let login = s
        .post(
            LOGIN,
            None,
            &json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .json();
    let r = step_verify(
        &s,
        &alice,
        login["mfa_token"].as_str().unwrap(),
        &code_at(&secret, now() + 30),
    );
    assert_eq!(r.json(), json!({"error": "Invalid or expired challenge."}));

    // A step accepted at step-up is a replay at login verify.
    let code = code_at(&secret, now() + 30);
    assert_eq!(step_verify(&s, &alice, &a_challenge, &code).status, 200);
    let r = s.post(
        VERIFY,
        None,
        &json!({"mfaToken": login["mfa_token"], "code": code}),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid code."}));
    // A backup code spent at step-up is spent for login too.
    let c = step_challenge(&s, &alice)["challenge_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.post(
        STEP_VERIFY,
        Some(&alice),
        &json!({"challengeToken": c, "type": "backup_code", "code": codes[0]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.post(
        VERIFY,
        None,
        &json!({"mfaToken": login["mfa_token"], "code": codes[0]}),
    );
    assert_eq!(r.json(), json!({"error": "Invalid code."}));

    // The 5th wrong answer kills a step-up challenge; 10 in a row lock login verify too.
    let c = step_challenge(&s, &alice)["challenge_token"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..=4 {
        let r = step_verify(&s, &alice, &c, "000000");
        assert_eq!(r.status, 401, "wrong {i}");
        assert_eq!(r.json(), json!({"error": "Invalid verification."}));
    }
    assert_eq!(step_verify(&s, &alice, &c, "000000").status, 429);
    assert_eq!(
        step_verify(&s, &alice, &c, &code_at(&secret, now() + 30)).status,
        401,
        "dead"
    );
    // Six wrong in a row so far: login verify's spent backup code, and these five.
    let c = step_challenge(&s, &alice)["challenge_token"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        assert_eq!(step_verify(&s, &alice, &c, "000000").status, 401);
    }
    let r = step_verify(&s, &alice, &c, "000000");
    assert_eq!(
        r.status,
        429,
        "the 10th wrong answer in a row: {}",
        r.text()
    );
    let fresh = s
        .post(
            LOGIN,
            None,
            &json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .json();
    let r = s.post(
        VERIFY,
        None,
        &json!({"mfaToken": fresh["mfa_token"], "code": code_at(&secret, now() + 60)}),
    );
    assert_eq!(r.status, 429, "login verify is locked too: {}", r.text());
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn storno_sentences_word_for_word() {
    let s = Server::start(&[]);
    let token = user_token(&s, "words@example.com");
    let said = |r: Resp, status: u16, body: Value| {
        assert_eq!((r.status, r.json()), (status, body));
    };
    let error = |m: &str| json!({"error": m});
    let lexik = |m: &str| json!({"code": 401, "message": m, "error": m});
    said(
        s.post(ENABLE, Some(&token), &json!({})),
        400,
        error("Missing code."),
    );
    said(
        s.post(ENABLE, Some(&token), &json!({"code": "123456"})),
        422,
        error("Invalid code. Please try again."),
    );
    s.post(SETUP, Some(&token), &json!({}));
    said(
        s.post(ENABLE, Some(&token), &json!({"code": "000000"})),
        422,
        error("Invalid code. Please try again."),
    );
    said(
        s.post(
            "/api/v1/me/mfa/backup-codes/regenerate",
            Some(&token),
            &json!({"password": PASSWORD}),
        ),
        400,
        error("MFA is not enabled."),
    );
    enable(&s, &token);
    said(
        s.post(SETUP, Some(&token), &json!({})),
        409,
        error("TOTP is already enabled."),
    );
    said(
        s.post(ENABLE, Some(&token), &json!({"code": "123456"})),
        409,
        error("TOTP is already enabled."),
    );
    said(
        s.post(
            "/api/v1/me/mfa/totp/disable",
            Some(&token),
            &json!({"password": "not it at all"}),
        ),
        422,
        json!({"error": "Password is incorrect.", "messageKey": "error.auth.password_incorrect"}),
    );
    said(
        s.post(VERIFY, None, &json!({"code": "123456"})),
        400,
        error("Missing mfaToken."),
    );
    said(
        s.post(VERIFY, None, &json!({"mfaToken": "ab"})),
        400,
        error("Missing code."),
    );
    said(
        s.post(
            VERIFY,
            None,
            &json!({"mfaToken": "ab".repeat(32), "code": "123456"}),
        ),
        401,
        error("Invalid or expired MFA challenge."),
    );
    said(
        s.post(REFRESH, None, &json!({})),
        401,
        lexik("Missing JWT Refresh Token"),
    );
    said(
        s.post(REFRESH, None, &json!({"refresh_token": 7})),
        401,
        lexik("Missing JWT Refresh Token"),
    );
    said(
        s.post(REFRESH, None, &json!({"refresh_token": "ab".repeat(32)})),
        401,
        lexik("JWT Refresh Token Not Found"),
    );
    let rt = s.post(
        LOGIN,
        None,
        &json!({"email": "nobody@example.com", "password": "x"}),
    );
    said(rt, 401, lexik("Invalid credentials."));
    said(
        s.post(CHALLENGE, None, &json!({})),
        401,
        lexik("JWT Token not found"),
    );
    said(
        s.post(STEP_VERIFY, Some(&token), &json!({"code": "123456"})),
        400,
        error("Missing challengeToken."),
    );
    said(
        s.post(
            STEP_VERIFY,
            Some(&token),
            &json!({"challengeToken": "ab".repeat(32), "code": "123456"}),
        ),
        401,
        error("Invalid or expired challenge."),
    );
    said(
        s.post(
            REDEEM,
            Some(&token),
            &json!({"verificationToken": "ab".repeat(32)}),
        ),
        401,
        error("Invalid or expired verification."),
    );
}

#[test]
fn a_reused_refresh_token_is_lexiks_invalid() {
    let s = Server::start(&[]);
    s.add_user("reuse@example.com", PASSWORD);
    let rt = s
        .post(
            LOGIN,
            None,
            &json!({"email": "reuse@example.com", "password": PASSWORD}),
        )
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.post(REFRESH, None, &json!({"refresh_token": rt})).status,
        200
    );
    let r = s.post(REFRESH, None, &json!({"refresh_token": rt}));
    assert_eq!(
        r.json(),
        json!({"code": 401, "message": "Invalid JWT Refresh Token", "error": "Invalid JWT Refresh Token"})
    );
}
