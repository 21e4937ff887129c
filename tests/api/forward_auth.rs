//! Browser sessions and forward-auth (#25), spoken to the real binary: a session is
//! made from a fresh login and ends with it; the proxies' questions get API.md's
//! answers. (Runs on PostgreSQL too under `MFAD_TEST_DATABASE_URL`.)

use serde_json::json;

use crate::common::{refused_setting, Server};

const RULES: [&str; 8] = [
    "--public-url",
    "https://auth.example.test",
    "--session-domain",
    "example.test",
    "--access-rule",
    "open.example.test one_factor",
    "--access-rule",
    "strong.example.test two_factor",
];

/// A password login's access token, and the session cookie's value made from it.
pub(crate) fn signed_in(s: &Server, email: &str) -> (String, String) {
    s.add_user(email, "correct horse battery");
    let r = s.post(
        "/api/auth",
        None,
        &json!({"email": email, "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    let value = session_of(s, &token);
    (token, value)
}

/// The session cookie's value made from the fresh login of `token`.
pub(crate) fn session_of(s: &Server, token: &str) -> String {
    let made = s.post("/api/auth/session", Some(token), &json!({}));
    assert_eq!(made.status, 204, "{}", made.text());
    let cookie = made.header("Set-Cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly; Secure; SameSite=Lax; Path=/; Domain=example.test"),
        "{cookie}"
    );
    let value = cookie["mfad_session=".len()..cookie.find(';').unwrap()].to_string();
    assert_eq!(value.len(), 64);
    value
}

fn ask(
    s: &Server,
    host: &str,
    cookie: &str,
    extra: &[(&str, &str)],
) -> crate::common::client::Resp {
    let c = format!("mfad_session={cookie}");
    let mut h = vec![
        ("X-Forwarded-Host", host),
        ("X-Forwarded-Uri", "/page?x=1"),
        ("Cookie", c.as_str()),
    ];
    h.extend_from_slice(extra);
    s.request("GET", "/api/authz/forward-auth", &h, None)
}

#[test]
fn a_session_passes_its_rules_and_ends_with_its_login() {
    let s = Server::start(&RULES);
    let (token, cookie) = signed_in(&s, "ana@example.com");
    let r = ask(&s, "open.example.test", &cookie, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Remote-User"), Some("ana@example.com"));
    assert_eq!(r.header("Remote-Amr"), Some("pwd"));
    // One factor where two are needed: to the portal, saying so.
    let r = ask(&s, "strong.example.test", &cookie, &[]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some("https://auth.example.test/?rd=https%3A%2F%2Fstrong.example.test%2Fpage%3Fx%3D1&need=2fa")
    );
    // No rule: the default deny.
    assert_eq!(ask(&s, "other.example.test", &cookie, &[]).status, 403);
    // Not signed in: nginx's form is a 401 with the portal.
    let r = s.request(
        "GET",
        "/api/authz/auth-request",
        &[("X-Original-URL", "https://open.example.test/a")],
        None,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("Location"),
        Some("https://auth.example.test/?rd=https%3A%2F%2Fopen.example.test%2Fa")
    );
    // Another method is 401, no redirect; a missing host 400.
    assert_eq!(
        ask(
            &s,
            "open.example.test",
            "0",
            &[("X-Forwarded-Method", "POST")]
        )
        .status,
        401
    );
    assert_eq!(
        s.request("GET", "/api/authz/forward-auth", &[], None)
            .status,
        400
    );
    // Logout by the session cookie alone ends the login: the next check refuses it
    // (though the last ones were answered from SQLite's cache), and the token's login
    // is gone too.
    assert_eq!(ask(&s, "open.example.test", &cookie, &[]).status, 200);
    assert_eq!(ask(&s, "open.example.test", &cookie, &[]).status, 200);
    let c = format!("mfad_session={cookie}");
    let out = s.request("POST", "/api/auth/logout", &[("Cookie", c.as_str())], None);
    assert_eq!(out.status, 204);
    assert_eq!(ask(&s, "open.example.test", &cookie, &[]).status, 302);
    assert_eq!(
        s.post("/api/auth/session", Some(&token), &json!({})).status,
        401
    );
}

/// Admin commands are other processes: the server learns of their commits only from
/// the database. A session checked (and so cached, on SQLite) again and again is
/// refused at the first check after each.
#[test]
fn reset_mfa_and_delete_by_another_process_end_sessions_at_the_next_check() {
    let s = Server::start(&RULES);
    let (_, bo) = signed_in(&s, "bo@example.com");
    let (_, cy) = signed_in(&s, "cy@example.com");
    for _ in 0..3 {
        assert_eq!(ask(&s, "open.example.test", &bo, &[]).status, 200);
        assert_eq!(ask(&s, "open.example.test", &cy, &[]).status, 200);
    }
    let (ok, _, err) = s.cli(&["user", "reset-mfa", "--email", "bo@example.com"], None);
    assert!(ok, "{err}");
    assert_eq!(ask(&s, "open.example.test", &bo, &[]).status, 302);
    // Another account's session is untouched, and checked again and again.
    for _ in 0..3 {
        assert_eq!(ask(&s, "open.example.test", &cy, &[]).status, 200);
    }
    let (ok, _, err) = s.cli(&["user", "delete", "--email", "cy@example.com"], None);
    assert!(ok, "{err}");
    assert_eq!(ask(&s, "open.example.test", &cy, &[]).status, 302);
}

#[test]
fn a_token_of_mfad_token_makes_no_session() {
    let s = Server::start(&RULES);
    let t = s.token("cli@example.com");
    let r = s.post("/api/auth/session", Some(&t), &json!({}));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "A fresh sign-in is needed.");
}

#[test]
fn bad_rules_stop_the_start_one_line_each() {
    let said = refused_setting("--access-rule", "wiki.example.com open");
    assert!(said.contains("unknown policy \"open\""), "{said}");
}

/// Every answer is counted by its result, and a person refused on one host is audited
/// once, not once per request (the proxy asks for every image of a page).
#[test]
fn decisions_are_counted_and_a_denial_audited_once() {
    let mut args = RULES.to_vec();
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let s = Server::start(&args);
    let (_, cookie) = signed_in(&s, "cy@example.com");
    assert_eq!(ask(&s, "open.example.test", &cookie, &[]).status, 200);
    assert_eq!(ask(&s, "strong.example.test", &cookie, &[]).status, 302);
    assert_eq!(ask(&s, "open.example.test", "0", &[]).status, 302);
    for _ in 0..3 {
        assert_eq!(ask(&s, "other.example.test", &cookie, &[]).status, 403);
    }
    let asked = s.request("GET", "/api/authz/forward-auth", &[], None);
    assert_eq!(asked.status, 400);
    let got = crate::metrics::samples(&s.scrape());
    for (result, n) in [
        ("allowed", 1.0),
        ("need_2fa", 1.0),
        ("sign_in", 1.0),
        ("denied", 3.0),
        ("bad_request", 1.0),
    ] {
        let name = format!("mfad_authz_decisions_total{{result=\"{result}\"}}");
        assert_eq!(got.get(&name), Some(&n), "{name}");
    }
    let denials = crate::common::select_i64s(
        &s.dir,
        "SELECT count(*) FROM audit WHERE event = 'access_denied'",
    );
    assert_eq!(denials, vec![1]);
}
