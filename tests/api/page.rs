//! The self-service page, in real headless Chromium (Debian's `chromium` and
//! `chromedriver`, driven over WebDriver by `tests/common/webdriver.rs`) against the real
//! binary: a person's whole story, from the password to a passkey, with the QR code read
//! off the rendered page by an independent decoder and the codes computed by an
//! independent TOTP implementation. Without the browser these tests say SKIPPED; under
//! `CI=true` its absence is a failure.

use std::path::Path;
use std::time::Duration;

use common::webdriver::{self, Browser};

use super::*;

/// A browser, or `None` (and one line saying so) where none is installed.
fn browser(width: u32, height: u32, dark: bool) -> Option<Browser> {
    if let Some(what) = webdriver::missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, and the browser tests need {what} (Debian's chromium and chromium-driver)"
        );
        eprintln!("SKIPPED: the browser tests need {what} (Debian's chromium and chromium-driver)");
        return None;
    }
    Some(Browser::start(width, height, dark))
}

/// Saves a screenshot under `dir`, and under `$MFAD_SCREENSHOT_DIR` when that is set
/// (how the one in `docs/` was made).
fn keep(dir: &Path, name: &str, png: &[u8]) {
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    if let Ok(out) = std::env::var("MFAD_SCREENSHOT_DIR") {
        std::fs::write(Path::new(&out).join(format!("page-{name}.png")), png).unwrap();
    }
}

/// Every resource the page has loaded since its last navigation came from `origin`.
fn only_own_requests(b: &Browser, origin: &str) {
    let urls = b.js(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map(e => e.name);",
        json!([]),
    );
    let urls: Vec<&str> = urls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!urls.is_empty());
    for u in urls {
        assert!(u.starts_with(origin), "a request left {origin}: {u}");
    }
}

/// The console holds no error of the page: no script error, no CSP violation, no
/// failed load. What the browser itself logs for an API answer of 4xx (the page's own
/// refusals: the silent refresh without a login, a wrong code) is expected: it is the
/// network's entry for an `/api/` URL. The first of those (the silent refresh the page
/// makes on load) must be there, or the console was not read at all.
fn no_console_errors(b: &Browser, origin: &str) {
    let entries = b.console();
    let mut saw_refresh = false;
    for entry in &entries {
        let message = entry["message"].as_str().unwrap_or_default();
        let level = entry["level"].as_str().unwrap_or_default();
        assert!(
            !message.contains("Content Security Policy") && !message.contains("Refused to"),
            "CSP violation: {message}"
        );
        let api_refusal = entry["source"] == "network"
            && message.starts_with(&format!("{origin}/api/"))
            && message.contains("the server responded with a status of 4");
        saw_refresh |= api_refusal && message.starts_with(&format!("{origin}/api/auth/refresh"));
        assert!(level != "SEVERE" || api_refusal, "console error: {message}");
    }
    assert!(saw_refresh, "the console was not captured: {entries:?}");
}

fn shown_codes(b: &Browser) -> Vec<String> {
    let v = b.js(
        "return [...document.querySelectorAll('#codes-list li')].map(li => li.innerText.trim());",
        json!([]),
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn sign_in_with_password(b: &Browser, email: &str) {
    b.wait_shown("#signin-email");
    b.type_into("#signin-email", email);
    b.type_into("#signin-password", PASSWORD);
    b.click("#signin-submit");
}

fn answer_second_step(b: &Browser, method: &str, code: &str) {
    b.wait_shown("#second-methods button");
    b.click(&format!("#second-methods button[data-method={method}]"));
    let (input, form) = match method {
        "totp" => ("#totp-code", "#second-totp"),
        _ => ("#backup-code", "#second-backup"),
    };
    b.type_into(input, code);
    b.click(&format!("{form} button[type=submit]"));
}

fn signed_in(b: &Browser) {
    b.wait_shown("#signout");
}

fn sign_out(b: &Browser) {
    b.click("#signout");
    b.wait_shown("#signin-email");
}

/// Sleeps into the next 30-second step when `used` is the code of the current one: a
/// step is accepted once per account.
fn fresh_code(secret: &str, used: &[String]) -> String {
    loop {
        let code = code_at(secret, now());
        if !used.contains(&code) {
            return code;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_person_signs_in_sets_up_totp_and_passkeys_and_signs_out_in_chromium() {
    let Some(b) = browser(420, 1100, false) else {
        return;
    };
    let s = Server::start(&[]);
    let shots = tempfile::tempdir().unwrap();
    let origin = format!("http://localhost:{}", s.addr.port());
    let email = "pat@example.com";
    s.add_user(email, PASSWORD);

    // 1. Password; an authenticator app from the QR code as rendered; the backup codes.
    b.goto(&format!("{origin}/"));
    keep(shots.path(), "signin", &b.screenshot());
    sign_in_with_password(&b, email);
    signed_in(&b);
    assert!(b.text("#account-who").contains(email));
    assert!(b.text("#totp-state").starts_with("Off."));
    b.click("#totp-setup");
    b.wait_shown("#setup-qr");
    b.wait("(i => i.complete && i.naturalWidth === 300)(document.getElementById('setup-qr'))");
    keep(shots.path(), "setup", &b.screenshot());
    let png = b.element_png("#setup-qr");
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .unwrap()
        .to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the screen");
    let (_, uri) = grids[0].decode().unwrap();
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap()
        .to_string();
    let shown = b.text("#setup-secret");
    assert_eq!(
        shown.replace(' ', ""),
        secret,
        "the key for typing is the QR code's"
    );
    assert!(
        shown.split(' ').all(|g| g.len() <= 4),
        "grouped in fours: {shown}"
    );
    let first = code_at(&secret, now());
    b.type_into("#setup-code", &first);
    b.click("#setup-form button[type=submit]");
    b.wait_shown("#codes-list li");
    let codes = shown_codes(&b);
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(b
        .text("#screen-codes")
        .contains("Save these backup codes now."));
    keep(shots.path(), "codes", &b.screenshot());
    b.click("#codes-done");
    b.wait_shown("#totp-disable");
    assert!(b.text("#totp-state").contains("Backup codes left: 10."));
    only_own_requests(&b, &origin);

    // 2. A backup code once, not twice; then password and TOTP.
    sign_out(&b);
    sign_in_with_password(&b, email);
    answer_second_step(&b, "backup_code", &codes[0]);
    signed_in(&b);
    assert!(b.text("#totp-state").contains("Backup codes left: 9."));
    sign_out(&b);
    sign_in_with_password(&b, email);
    answer_second_step(&b, "backup_code", &codes[0]);
    b.wait_shown("#second-error");
    assert_eq!(b.text("#second-error"), "Invalid code.");
    let code = fresh_code(&secret, &[first]);
    answer_second_step(&b, "totp", &code);
    signed_in(&b);

    // New backup codes, confirmed with the password; a wrong one is said in words.
    b.click("#codes-regenerate");
    b.wait_shown("#confirm-password");
    b.type_into("#confirm-password", "not my password");
    b.click("#confirm-submit");
    b.wait_shown("#confirm-error");
    assert_eq!(b.text("#confirm-error"), "Password is incorrect.");
    b.type_into("#confirm-password", PASSWORD);
    b.click("#confirm-submit");
    b.wait_shown("#codes-list li");
    let renewed = shown_codes(&b);
    assert_eq!(renewed.len(), 10);
    assert!(renewed.iter().all(|c| !codes.contains(c)), "all new");
    b.click("#codes-done");
    b.wait_shown("#totp-disable");
    assert!(b.text("#totp-state").contains("Backup codes left: 10."));

    // 4. A reload keeps the session (the refresh cookie, HttpOnly).
    b.reload();
    signed_in(&b);
    assert!(b.text("#account-who").contains(email));
    assert_eq!(
        b.js("return document.cookie;", json!([])),
        json!(""),
        "the refresh token is out of the script's reach"
    );

    // 3. A passkey through Chromium's virtual authenticator; then the passkey alone.
    let authenticator = b.add_virtual_authenticator();
    b.type_into("#passkey-name", "Laptop");
    b.click("#passkey-add-submit");
    b.wait("document.querySelectorAll('#passkey-list li').length === 1");
    assert!(b.text("#passkey-list").contains("Laptop"));
    assert_eq!(b.credentials(&authenticator).len(), 1);
    keep(shots.path(), "account", &b.screenshot());
    sign_out(&b);
    b.click("#passkey-signin");
    signed_in(&b);
    assert!(b.text("#account-who").contains(email));
    assert!(b.text("#passkey-list").contains("last used"));
    b.click("#passkey-list button");
    b.accept_alert();
    b.wait_shown("#passkey-none");
    assert_eq!(
        s.get("/api/v1/me/passkeys", Some(&s.token(email))).json(),
        json!([])
    );
    only_own_requests(&b, &origin);

    // Turning the authenticator app off asks for the password, and takes effect.
    b.click("#totp-disable");
    b.wait_shown("#confirm-password");
    assert!(b
        .text("#confirm-what")
        .contains("deletes your backup codes"));
    b.type_into("#confirm-password", PASSWORD);
    b.click("#confirm-submit");
    b.wait("document.getElementById('totp-state').innerText.startsWith('Off.')");
    assert_eq!(b.text("#notice"), "The authenticator app is off.");

    // 4. After sign-out a reload does not sign in.
    sign_out(&b);
    b.reload();
    b.wait_shown("#signin-email");
    assert!(!b.text("main").contains("Signed in as"));

    // 5. Nothing went wrong on the way.
    no_console_errors(&b, &origin);
    let status = s.get(STATUS, Some(&s.token(email))).json();
    assert_eq!(
        (&status["totpEnabled"], &status["backupCodesRemaining"]),
        (&json!(false), &json!(0))
    );
}

/// A missing field and a wrong password are said next to the form, and the throttle's
/// answer says how long to wait.
#[test]
fn refusals_are_said_in_words_with_the_time_to_wait() {
    let Some(b) = browser(420, 1100, false) else {
        return;
    };
    let s = Server::start(&[]);
    let origin = format!("http://localhost:{}", s.addr.port());
    let email = "sam@example.com";
    s.add_user(email, PASSWORD);
    let (secret, _, _) = enable(&s, &s.token(email));
    b.goto(&format!("{origin}/"));
    // Wrong codes: said in words; the 5th ends the challenge and sends the person back
    // to the password, saying why.
    sign_in_with_password(&b, email);
    // A code of no step in the accepted window (one step either side), nor near it.
    let window: Vec<String> = (-2..=2)
        .map(|k: i64| code_at(&secret, (now() as i64 + 30 * k) as u64))
        .collect();
    let wrong = (0..)
        .map(|n: u32| format!("{:06}", n * 111_111 % 1_000_000))
        .find(|c| !window.contains(c))
        .unwrap();
    for _ in 0..4 {
        answer_second_step(&b, "totp", &wrong);
        b.wait("document.getElementById('second-error').innerText === 'Invalid code.'");
        b.js(
            "document.getElementById('second-error').innerText = '';",
            json!([]),
        );
    }
    answer_second_step(&b, "totp", &wrong);
    b.wait_shown("#signin-error");
    assert_eq!(
        b.text("#signin-error"),
        "Too many failed attempts. Please log in again."
    );
    b.js(
        "document.getElementById('signin-email').value = '';",
        json!([]),
    );
    b.click("#signin-submit");
    b.wait_shown("#signin-error");
    assert_eq!(
        b.text("#signin-error"),
        "Enter your email and your password."
    );
    b.type_into("#signin-email", email);
    for _ in 0..5 {
        b.type_into("#signin-password", "wrong password");
        b.click("#signin-submit");
        b.wait("document.getElementById('signin-error').innerText === 'Invalid credentials.'");
        b.js(
            "document.getElementById('signin-error').innerText = '';",
            json!([]),
        );
    }
    b.type_into("#signin-password", PASSWORD);
    b.click("#signin-submit");
    b.wait("/Please wait \\d+ seconds before trying again/.test(document.getElementById('signin-error').innerText)");
    assert!(
        b.text("#signin-error")
            .starts_with("Too many failed login attempts."),
        "{}",
        b.text("#signin-error")
    );
    no_console_errors(&b, &origin);
}

#[test]
fn the_page_is_readable_at_320_pixels_and_in_dark_mode() {
    let Some(b) = browser(320, 640, true) else {
        return;
    };
    let s = Server::start(&[]);
    let shots = tempfile::tempdir().unwrap();
    let origin = format!("http://localhost:{}", s.addr.port());
    b.goto(&format!("{origin}/"));
    b.wait_shown("#signin-email");
    let fits = b.js(
        "return document.documentElement.scrollWidth <= window.innerWidth;",
        json!([]),
    );
    assert_eq!(fits, json!(true), "no sideways scrolling at 320 px");
    let labelled = b.js(
        "return [...document.querySelectorAll('input')].every(i => i.labels && i.labels.length === 1);",
        json!([]),
    );
    assert_eq!(labelled, json!(true), "every input has its label");
    // The keyboard alone: the page puts the focus in the email field, and Tab walks the
    // form in reading order.
    b.wait("document.activeElement.id === 'signin-email'");
    let mut walked = vec![b.focused()];
    for _ in 0..3 {
        b.press("\u{E004}");
        walked.push(b.focused());
    }
    assert_eq!(
        walked,
        [
            "signin-email",
            "signin-password",
            "signin-submit",
            "passkey-signin"
        ]
    );
    let dark = b.js(
        "return [matchMedia('(prefers-color-scheme: dark)').matches,
                 getComputedStyle(document.body).backgroundColor,
                 getComputedStyle(document.body).color];",
        json!([]),
    );
    assert_eq!(
        dark,
        json!([true, "rgb(18, 20, 23)", "rgb(232, 234, 237)"]),
        "the dark palette: light text on a dark ground"
    );
    keep(shots.path(), "dark-320", &b.screenshot());
    no_console_errors(&b, &origin);
}

#[test]
fn the_page_is_served_with_its_security_headers() {
    let s = Server::start(&[]);
    let r = s.get("/", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("Content-Security-Policy"),
        Some(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
    );
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert!(r
        .text()
        .contains("<script src=\"/assets/app.js\" defer></script>"));
    let js = s.get("/assets/app.js", None);
    assert_eq!(
        js.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let css = s.get("/assets/app.css", None);
    assert_eq!(css.header("Content-Type"), Some("text/css; charset=utf-8"));
    let total = r.body.len() + js.body.len() + css.body.len();
    assert!(total < 60 * 1024, "{total} bytes");
    assert_eq!(s.get("/assets/other.js", None).status, 404);
    let post = s.post("/", None, &json!({}));
    assert_eq!((post.status, post.header("Allow")), (405, Some("GET")));
    // API answers keep their JSON headers and carry no page policy.
    assert_eq!(
        s.get("/healthz", None).header("Content-Security-Policy"),
        None
    );
}
