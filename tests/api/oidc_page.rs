//! The page's part of an OpenID authorization, in real Chromium (#26): an app's
//! `prompt=login` is not answered with the login the browser kept (the page asks for a
//! new sign-in, then goes on), and its `login_hint` fills in the email. The app's
//! callback is a small listener of the test's own on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::apache::enc;
use crate::common::Server;
use crate::page::{browser_with, sign_in_with_password, signed_in};
use crate::PASSWORD;

/// A listener that answers every request with a small page; its port.
fn callback() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "<!doctype html><title>app</title><p id=\"app\">app</p>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn prompt_login_asks_for_a_new_sign_in_and_login_hint_fills_the_email() {
    let port = crate::apache::free_port();
    let issuer = format!("http://localhost:{port}");
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start(&["--listen", &listen, "--public-url", &issuer]);
    let cb = format!("http://127.0.0.1:{}/cb", callback());
    let (ok, _, err) = s.cli(
        &[
            "client",
            "add",
            "--id",
            "app",
            "--name",
            "The App",
            "--policy",
            "one_factor",
            "--redirect-uri",
            &cb,
        ],
        None,
    );
    assert!(ok, "{err}");
    let email = "ana@example.com";
    s.add_user(email, PASSWORD);
    let Some(b) = browser_with(1000, 900, false, &[]) else {
        return;
    };
    // Signed in on the page first: the browser keeps a login.
    b.goto(&format!("{issuer}/"));
    sign_in_with_password(&b, email);
    signed_in(&b);
    let authorize = |extra: &str| {
        format!(
            "{issuer}/oidc/authorize?response_type=code&client_id=app&redirect_uri={}\
             &scope=openid&state=s1{extra}",
            enc(&cb)
        )
    };
    // Without prompt=login the kept login does: straight back with a code.
    b.goto(&authorize(""));
    b.wait("document.getElementById('app') !== null");
    assert!(b.url().starts_with(&format!("{cb}?code=")), "{}", b.url());
    // prompt=login: the page asks again, the email filled in from login_hint.
    b.goto(&authorize("&prompt=login&login_hint=ana%40example.com"));
    b.wait_shown("#signin-email");
    assert!(
        b.url().starts_with(&format!("{issuer}/?rd=")),
        "{}",
        b.url()
    );
    assert!(
        b.text("#msg-signin").contains("The App"),
        "{}",
        b.text("#msg-signin")
    );
    let filled = b.js(
        "return document.getElementById('signin-email').value;",
        serde_json::json!([]),
    );
    assert_eq!(filled, email);
    b.type_into("#signin-password", PASSWORD);
    b.click("#signin-submit");
    b.wait("document.getElementById('app') !== null");
    assert!(b.url().starts_with(&format!("{cb}?code=")), "{}", b.url());
}
