//! The forward-auth row's set-up: the flags its rule needs and the browser sessions
//! it presents, made through login as the page makes them (the row itself is a fixed
//! request per connection, run by `load`).

use std::net::SocketAddr;

use crate::client::Conn;
use crate::jobs::{
    field, forward_auth_request, http_request, post_json, send, Outcome, FORWARDED_HOST,
};
use crate::run::connection;
use crate::seed::Seeder;
use crate::{Res, PASSWORD};

/// What forward-auth needs (access rules require a public URL), given to the one mfad
/// that every row runs against. Besides forward-auth's answers they change only the
/// `Origin` rule of cookie requests, the passkey origins and the discovery document,
/// none of which the other rows touch.
pub(crate) const FORWARD_AUTH_FLAGS: [&str; 6] = [
    "--public-url",
    "https://auth.example.com",
    "--session-domain",
    "example.com",
    "--access-rule",
    "app.example.com one_factor",
];

/// Password logins made for the forward-auth row's sessions, at most (each is a PBKDF2).
const SESSION_LOGINS: usize = 8;

/// `n` session cookies made as the page makes them: a password login, then `POST
/// /api/auth/session` with its fresh token; several sessions per login, so that each
/// connection presents its own. One is checked to pass the rule with its person's
/// headers.
pub(crate) fn session_cookies(addr: SocketAddr, seeder: &mut Seeder, n: usize) -> Res<Vec<String>> {
    let ask = |conn: &mut Conn, req: &[u8], want: u16, what: &str| match send(conn, req, want) {
        Ok(r) => Ok(r),
        Err(Outcome::Bad(e) | Outcome::Io(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer")),
    };
    let emails = seeder.password_accounts(n.clamp(1, SESSION_LOGINS))?;
    let mut conn = connection(addr);
    let mut tokens = Vec::with_capacity(emails.len());
    for email in &emails {
        let body = serde_json::json!({ "email": email, "password": PASSWORD });
        let r = ask(
            &mut conn,
            &post_json("/api/auth", None, &body),
            200,
            "login",
        )?;
        let token = field(&r.try_json(), "token").ok_or("login answered without a token")?;
        tokens.push(token);
    }
    let mut cookies = Vec::with_capacity(n);
    for i in 0..n {
        let req = http_request(
            "POST",
            "/api/auth/session",
            Some(&tokens[i % tokens.len()]),
            None,
        );
        let r = ask(&mut conn, &req, 204, "POST /api/auth/session")?;
        let value = r
            .header("Set-Cookie")
            .and_then(|c| c.strip_prefix("mfad_session="))
            .and_then(|c| c.split(';').next())
            .ok_or("POST /api/auth/session set no mfad_session cookie")?;
        cookies.push(value.to_string());
    }
    let r = ask(
        &mut conn,
        &forward_auth_request(&cookies[0]),
        200,
        "forward-auth",
    )?;
    let (user, amr) = (r.header("Remote-User"), r.header("Remote-Amr"));
    if user != Some(emails[0].as_str()) || amr != Some("pwd") {
        return Err(format!(
            "forward-auth for {FORWARDED_HOST} let {}'s session through as {user:?}, amr {amr:?}",
            emails[0]
        ));
    }
    Ok(cookies)
}
