//! The page as forward-auth's portal (#25), in real Chromium against the real binary:
//! it sends a person back to `rd` only when that is an app under the session domain
//! (never an open redirect), at once when they are signed in already, after a new
//! sign-in when their login is too old for a session, and, for an app that asks for a
//! second factor they lack, only after they have set one up and signed in with it.
//!
//! Chromium maps every `*.mfad.test` name to loopback (`--host-resolver-rules`): the
//! portal `auth.mfad.test` to mfad's port, read from its banner after it bound port 0
//! (no free port guessed before the start), so `--public-url` carries no port; an app
//! `app.mfad.test:<port>` to a small listener of the test's own; any other name to
//! nowhere. `--unsafely-treat-insecure-origin-as-secure` lets the plain-http portal keep
//! mfad's refresh cookie, which is always `Secure`, as a browser keeps it over TLS.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::webdriver::Browser;

use super::accessibility::{axe_source, violations};
use super::page::{browser_with, sign_in_with_password, sign_out, signed_in};
use super::*;

const PORTAL: &str = "http://auth.mfad.test";
const EMAIL: &str = "ana@example.com";

/// mfad as the portal of `*.mfad.test`, its public URL `scheme://auth.mfad.test`;
/// `strong.mfad.test` asks for two factors, the other apps for one.
fn portal(scheme: &str) -> Server {
    let public = format!("{scheme}://auth.mfad.test");
    let s = Server::start(&[
        "--public-url",
        &public,
        "--session-domain",
        "mfad.test",
        "--access-rule",
        "strong.mfad.test two_factor",
        "--access-rule",
        "*.mfad.test one_factor",
    ]);
    s.add_user(EMAIL, PASSWORD);
    s
}

/// A browser that reaches `s` as `auth.mfad.test`, every other `*.mfad.test` on
/// loopback at the port its URL names, and nothing else.
fn browser_for(s: &Server) -> Option<Browser> {
    browser_with(
        1000,
        900,
        false,
        &[
            format!(
                "--host-resolver-rules=MAP auth.mfad.test 127.0.0.1:{}, MAP *.mfad.test 127.0.0.1, MAP * ~NOTFOUND",
                s.addr.port()
            ),
            format!("--unsafely-treat-insecure-origin-as-secure={PORTAL}"),
        ],
    )
}

/// An app's server: answers every request with a small page and keeps the bytes each
/// connection opened with (a request's head, or a TLS ClientHello).
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    // Lives as long as the test binary: accept blocks, and nothing needs it to end.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                if got[0] == 0x16 || contains(&got, b"\r\n\r\n") {
                    break;
                }
            }
            let body = "<!doctype html><title>app</title><p>the app</p>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            sink.lock().unwrap().push(got);
        }
    });
    Upstream { port, seen }
}

impl Upstream {
    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (10 s) for a connection that opened with `start`; its first bytes.
    fn wait_for(&self, b: &Browser, start: &[u8]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(got) = self.seen().into_iter().find(|g| g.starts_with(start)) {
                return String::from_utf8_lossy(&got).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the app never saw {:?}; the browser is on {}, saying: {}",
                String::from_utf8_lossy(start),
                b.url(),
                b.text("main")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `s` percent-encoded as a query value (everything but the unreserved characters).
fn enc(s: &str) -> String {
    s.bytes()
        .map(
            |b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                true => char::from(b).to_string(),
                false => format!("%{b:02X}"),
            },
        )
        .collect()
}

/// The portal's address for `rd`, as forward-auth makes it.
fn portal_for(rd: &str, need_2fa: bool) -> String {
    let need = if need_2fa { "&need=2fa" } else { "" };
    format!("{PORTAL}/?rd={}{need}", enc(rd))
}

/// The value of the session cookie in a request head.
fn session_cookie(head: &str) -> String {
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Cookie: "))
        .unwrap_or_else(|| panic!("no cookie sent: {head}"));
    cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("mfad_session="))
        .unwrap_or_else(|| panic!("no session cookie: {cookie}"))
        .to_string()
}

/// What forward-auth answers for `host` with the session `cookie`: status, user, place.
fn forward_auth(s: &Server, host: &str, cookie: &str) -> (u16, Option<String>, Option<String>) {
    let c = format!("mfad_session={cookie}");
    let r = s.request(
        "GET",
        "/api/authz/forward-auth",
        &[
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", host),
            ("X-Forwarded-Uri", "/x?y=1"),
            ("Cookie", &c),
        ],
        None,
    );
    let h = |n: &str| r.header(n).map(str::to_string);
    (r.status, h("Remote-User"), h("Location"))
}

/// The account screen is shown, on the portal, its address still `at`: the page has
/// decided not to send the person on.
fn stays_on_account(b: &Browser, at: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = "return (e => !!e && e.offsetParent !== null)(document.getElementById('signout'));";
    while b.js(shown, json!([])) != json!(true) {
        assert!(
            Instant::now() < deadline,
            "{what}: no account screen; the browser is on {}",
            b.url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.url(), at, "{what}: the browser left the portal");
    assert!(b.text("#account-who").contains(EMAIL), "{what}");
}

#[test]
fn an_rd_outside_the_session_domain_is_never_followed() {
    let s = portal("http");
    let Some(b) = browser_for(&s) else {
        return;
    };
    let app = upstream();
    let refused = [
        "//evil.test/",
        "https:evil.test",
        "http:\\\\evil.test",
        "http://auth.mfad.test\\@evil.test/",
        "http://evil.test\\.mfad.test/",
        "http://app.mfad.test@evil.test/",
        "http://user:pw@app.mfad.test/",
        "http://APP.MFAD.TEST/",
        "http://app.mfad.test./",
        "http://evil.test/",
        "http://mfad.test.evil.test/",
        "http://evilmfad.test/",
        // A Cyrillic е in "test", and its punycode form.
        "http://app.mfad.t\u{435}st/",
        "http://app.mfad.xn--tst-rdd/",
        "javascript:alert(1)",
        "http://app.mfad.test%2F@evil.test/",
        // A port spelt out that the parser drops (the default one).
        "http://app.mfad.test:80/",
        // Whitespace a parser would strip.
        " http://app.mfad.test/",
        "http://app.mfad.test/\t",
    ];
    for rd in refused {
        let at = portal_for(rd, false);
        b.goto(&at);
        b.wait_shown("#signin-email");
        assert_eq!(b.text("#msg-signin"), "", "{rd:?}: no app named");
        sign_in_with_password(&b, EMAIL);
        stays_on_account(&b, &at, rd);
        // Signed in already (the reload path): the same.
        b.reload();
        stays_on_account(&b, &at, rd);
        sign_out(&b);
    }
    assert!(app.seen().is_empty(), "{:?}", app.seen());

    // An app under the session domain, over http where the portal is http: followed.
    let rd = format!("http://app.mfad.test:{}/x?y=1", app.port);
    b.goto(&portal_for(&rd, false));
    b.wait_shown("#signin-email");
    assert_eq!(
        b.text("#msg-signin"),
        "Sign in to continue to app.mfad.test."
    );
    sign_in_with_password(&b, EMAIL);
    let head = app.wait_for(&b, b"GET /x?y=1 HTTP/1.1\r\n");
    b.wait(&format!("location.href === {rd:?}"));
    assert!(
        head.contains(&format!("\r\nHost: app.mfad.test:{}\r\n", app.port)),
        "{head}"
    );
    // With the session the sign-in opened, which forward-auth lets through.
    let cookie = session_cookie(&head);
    assert_eq!(
        forward_auth(&s, "app.mfad.test", &cookie),
        (200, Some(EMAIL.to_string()), None)
    );

    // https is always an app's scheme: the browser goes there (and opens TLS).
    b.goto(&format!("{PORTAL}/"));
    signed_in(&b);
    sign_out(&b);
    b.goto(&portal_for(
        &format!("https://app.mfad.test:{}/x?y=1", app.port),
        false,
    ));
    sign_in_with_password(&b, EMAIL);
    app.wait_for(&b, &[0x16, 0x03]);
}

#[test]
fn an_http_rd_is_not_followed_where_the_portal_is_https() {
    let s = portal("https");
    let Some(b) = browser_for(&s) else {
        return;
    };
    let app = upstream();
    let http = format!("http://app.mfad.test:{}/x?y=1", app.port);
    let at = portal_for(&http, false);
    b.goto(&at);
    b.wait_shown("#signin-email");
    assert_eq!(b.text("#msg-signin"), "", "no app named");
    sign_in_with_password(&b, EMAIL);
    stays_on_account(&b, &at, &http);
    sign_out(&b);
    assert!(app.seen().is_empty(), "{:?}", app.seen());
    // The same app over https is followed.
    b.goto(&portal_for(&format!("https{}", &http[4..]), false));
    b.wait_shown("#signin-email");
    assert_eq!(
        b.text("#msg-signin"),
        "Sign in to continue to app.mfad.test."
    );
    sign_in_with_password(&b, EMAIL);
    app.wait_for(&b, &[0x16, 0x03]);
}

#[test]
fn a_signed_in_person_is_sent_on_at_once() {
    let s = portal("http");
    let Some(b) = browser_for(&s) else {
        return;
    };
    let app = upstream();
    b.goto(&format!("{PORTAL}/"));
    sign_in_with_password(&b, EMAIL);
    signed_in(&b);
    // A sign-in opens a session even when no app waits.
    let sessions = "SELECT COUNT(*) FROM sessions";
    assert_eq!(select_i64s(&s.dir, sessions), [1]);
    let rd = format!("http://app.mfad.test:{}/x?y=1", app.port);
    b.goto(&portal_for(&rd, false));
    let head = app.wait_for(&b, b"GET /x?y=1 HTTP/1.1\r\n");
    b.wait(&format!("location.href === {rd:?}"));
    let cookie = session_cookie(&head);
    assert_eq!(
        forward_auth(&s, "app.mfad.test", &cookie),
        (200, Some(EMAIL.to_string()), None)
    );
}

#[test]
fn a_login_too_old_for_a_session_asks_for_a_new_sign_in_then_goes_on() {
    let s = portal("http");
    let Some(b) = browser_for(&s) else {
        return;
    };
    let app = upstream();
    b.goto(&format!("{PORTAL}/"));
    sign_in_with_password(&b, EMAIL);
    signed_in(&b);
    // Ten minutes ago: past the five a session may be opened in.
    let aged = select_i64s(
        &s.dir,
        "UPDATE refresh_tokens SET auth_time = auth_time - 600 RETURNING CAST(1 AS BIGINT)",
    );
    assert!(!aged.is_empty());
    let rd = format!("http://app.mfad.test:{}/x?y=1", app.port);
    let at = portal_for(&rd, false);
    b.goto(&at);
    b.wait_shown("#signin-email");
    assert_eq!(
        b.text("#msg-signin"),
        "To continue to app.mfad.test, sign in again."
    );
    assert_eq!(b.focused(), "heading");
    assert_eq!(b.url(), at);
    assert!(app.seen().is_empty(), "{:?}", app.seen());
    sign_in_with_password(&b, EMAIL);
    app.wait_for(&b, b"GET /x?y=1 HTTP/1.1\r\n");
    b.wait(&format!("location.href === {rd:?}"));
}

#[test]
fn an_app_that_asks_for_two_factors_waits_until_the_person_has_them() {
    let s = portal("http");
    let Some(b) = browser_for(&s) else {
        return;
    };
    let app = upstream();
    let rd = format!("http://strong.mfad.test:{}/x?y=1", app.port);
    let at = portal_for(&rd, true);
    b.goto(&at);
    sign_in_with_password(&b, EMAIL);
    let explained = "strong.mfad.test asks for a second step when you sign in. Set up an \
                     authenticator app or add a passkey, then sign in again to continue.";
    for how in ["a sign-in", "a reload"] {
        stays_on_account(&b, &at, how);
        assert_eq!(b.text("#msg-account"), explained, "{how}");
        b.wait_shown("#totp-setup");
        assert_eq!(b.focused(), "heading", "{how}");
        b.reload();
    }
    stays_on_account(&b, &at, "the second reload");
    assert!(app.seen().is_empty(), "{:?}", app.seen());
    let axe = axe_source();
    if let Some(axe) = &axe {
        assert_eq!(violations(&b, axe), Vec::<String>::new(), "the explanation");
    }

    // The authenticator app: set up, turned on (which ends the login), then a new
    // sign-in with it sends the person on.
    b.click("#totp-setup");
    b.wait_shown("#setup-secret");
    let secret = super::page::shown_secret(&b);
    b.type_into("#setup-code", &code_at(&secret, now()));
    b.click("#setup-submit");
    b.wait_shown("#codes-list li");
    let backup = b.text("#codes-list li");
    b.click("#codes-done");
    b.wait_shown("#signin-email");
    assert_eq!(
        b.text("#msg-signin"),
        "Your authenticator app is on. Sign in again with it to continue to strong.mfad.test."
    );
    assert_eq!(b.url(), at);
    assert!(app.seen().is_empty(), "{:?}", app.seen());
    if let Some(axe) = &axe {
        assert_eq!(violations(&b, axe), Vec::<String>::new(), "sign in again");
    }
    sign_in_with_password(&b, EMAIL);
    b.wait_shown("#second-methods button");
    b.click("#second-methods button[data-method=backup_code]");
    b.type_into("#backup-code", backup.trim());
    b.click("#second-go");
    let head = app.wait_for(&b, b"GET /x?y=1 HTTP/1.1\r\n");
    b.wait(&format!("location.href === {rd:?}"));
    assert!(head.contains("\r\nHost: strong.mfad.test:"), "{head}");
    assert_eq!(
        forward_auth(&s, "strong.mfad.test", &session_cookie(&head)),
        (200, Some(EMAIL.to_string()), None)
    );
}

#[test]
fn a_passkey_added_for_an_app_that_asks_for_two_factors_leads_to_a_sign_in_with_it() {
    let s = portal("http");
    let Some(b) = browser_for(&s) else {
        return;
    };
    let app = upstream();
    let rd = format!("http://strong.mfad.test:{}/x?y=1", app.port);
    let at = portal_for(&rd, true);
    b.goto(&at);
    sign_in_with_password(&b, EMAIL);
    stays_on_account(&b, &at, "a sign-in with one factor");
    let authenticator = b.add_virtual_authenticator();
    b.type_into("#passkey-name", "Laptop");
    b.click("#passkey-add-submit");
    b.wait_shown("#signin-email");
    assert_eq!(
        b.text("#msg-signin"),
        "Your passkey is added. Sign in again with it to continue to strong.mfad.test."
    );
    assert_eq!(b.credentials(&authenticator).len(), 1);
    assert_eq!(b.url(), at);
    assert!(app.seen().is_empty(), "{:?}", app.seen());
    // Signed out here: a reload asks for the sign-in too.
    b.reload();
    b.wait_shown("#signin-email");
    b.click("#passkey-signin");
    let head = app.wait_for(&b, b"GET /x?y=1 HTTP/1.1\r\n");
    assert_eq!(
        forward_auth(&s, "strong.mfad.test", &session_cookie(&head)),
        (200, Some(EMAIL.to_string()), None)
    );
}
