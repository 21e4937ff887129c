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
pub(super) fn browser(width: u32, height: u32, dark: bool) -> Option<Browser> {
    browser_with(width, height, dark, &[])
}

/// The same, with `extra` Chromium switches.
pub(super) fn browser_with(
    width: u32,
    height: u32,
    dark: bool,
    extra: &[String],
) -> Option<Browser> {
    if let Some(what) = webdriver::missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, and the browser tests need {what} (Debian's chromium and chromium-driver)"
        );
        eprintln!("SKIPPED: the browser tests need {what} (Debian's chromium and chromium-driver)");
        return None;
    }
    Some(Browser::start(width, height, dark, extra))
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
/// refusals: a wrong code, a wrong password) is expected: it is the network's entry for
/// an `/api/` URL. A line the test logs first proves the console is read at all.
fn no_console_errors(b: &Browser, origin: &str) {
    b.js("console.info('mfad-test: the console is read');", json!([]));
    let entries = b.console();
    assert!(
        entries.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("mfad-test: the console is read"))),
        "the console was not captured: {entries:?}"
    );
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
        assert!(level != "SEVERE" || api_refusal, "console error: {message}");
    }
}

/// The sign-in fields' borders stand out 3:1 against what surrounds them (WCAG 1.4.11):
/// the card and the field's own ground.
fn field_borders_contrast(b: &Browser) {
    let colours = b.js(
        "const i = document.getElementById('signin-email'), c = getComputedStyle(i); return [c.borderTopColor, c.backgroundColor, getComputedStyle(i.closest('section')).backgroundColor];",
        json!([]),
    );
    let rgb = |v: &Value| -> [f64; 3] {
        let t = v.as_str().unwrap();
        let n: Vec<f64> = t
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        [n[0], n[1], n[2]]
    };
    let luminance = |c: [f64; 3]| {
        let f = |v: f64| {
            let v = v / 255.0;
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2])
    };
    let ratio = |a: [f64; 3], b: [f64; 3]| {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    };
    let border = rgb(&colours[0]);
    for ground in [rgb(&colours[1]), rgb(&colours[2])] {
        let r = ratio(border, ground);
        assert!(r >= 3.0, "field border {colours}: {r:.2}:1");
    }
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

pub(super) fn sign_in_with_password(b: &Browser, email: &str) {
    b.wait_shown("#signin-email");
    b.type_into("#signin-email", email);
    b.type_into("#signin-password", PASSWORD);
    b.click("#signin-submit");
}

pub(super) fn answer_second_step(b: &Browser, method: &str, code: &str) {
    b.wait_shown("#second-methods button");
    b.click(&format!("#second-methods button[data-method={method}]"));
    let input = match method {
        "totp" => "#totp-code",
        _ => "#backup-code",
    };
    b.type_into(input, code);
    b.click("#second-go");
}

/// The key the set-up screen shows, as its copy button copies it.
pub(super) fn shown_secret(b: &Browser) -> String {
    b.js(
        "return document.getElementById('setup-secret').dataset.secret;",
        json!([]),
    )
    .as_str()
    .unwrap()
    .to_string()
}

pub(super) fn signed_in(b: &Browser) {
    b.wait_shown("#signout");
}

pub(super) fn sign_out(b: &Browser) {
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
    b.wait_shown("#msg-second");
    assert_eq!(
        b.text("#msg-second"),
        "That backup code is not right, or it was used already. 4 tries left."
    );
    let code = fresh_code(&secret, &[first]);
    answer_second_step(&b, "totp", &code);
    signed_in(&b);

    // New backup codes, confirmed with the password; a wrong one is said in words.
    b.click("#codes-regenerate");
    b.wait_shown("#confirm-password");
    b.type_into("#confirm-password", "not my password");
    b.click("#confirm-submit");
    b.wait_shown("#msg-confirm");
    assert_eq!(b.text("#msg-confirm"), "That password is not right.");
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
    assert_eq!(b.text("#msg-account"), "The authenticator app is off.");

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

/// Refusals in words a person can act on: a wrong code says how many tries are left
/// and, from the second, to check the phone's clock; the fifth sends the person back
/// to the password, saying why; a wrong password is "not right"; the throttle says only
/// how long to wait. A field in error is marked and takes the focus.
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
    sign_in_with_password(&b, email);
    // A code of no step in the accepted window (one step either side), nor near it.
    let window: Vec<String> = (-2..=2)
        .map(|k: i64| code_at(&secret, (now() as i64 + 30 * k) as u64))
        .collect();
    let wrong = (0..)
        .map(|n: u32| format!("{:06}", n * 111_111 % 1_000_000))
        .find(|c| !window.contains(c))
        .unwrap();
    let clock = "If the app's codes keep being refused, check that your phone sets its date and time automatically.";
    for (n, left) in [
        (1, "4 tries left."),
        (2, "3 tries left."),
        (3, "2 tries left."),
        (4, "1 try left."),
    ] {
        answer_second_step(&b, "totp", &wrong);
        let mut said = format!("That code is not right. {left}");
        if n >= 2 {
            said = format!("{said} {clock}");
        }
        b.wait(&format!(
            "document.getElementById('msg-second').innerText === {said:?}"
        ));
        assert_eq!(b.focused(), "totp-code", "the field in error has the focus");
        let marks = b.js(
            "const i = document.getElementById('totp-code'); return [i.getAttribute('aria-invalid'), i.getAttribute('aria-describedby')];",
            json!([]),
        );
        assert_eq!(marks, json!(["true", "msg-second"]));
    }
    answer_second_step(&b, "totp", &wrong);
    b.wait_shown("#signin-email");
    b.wait_shown("#msg-signin");
    assert_eq!(
        b.text("#msg-signin"),
        "That was the last try for this sign-in. Sign in again with your password."
    );
    b.js(
        "document.getElementById('signin-email').value = '';",
        json!([]),
    );
    b.click("#signin-submit");
    b.wait_shown("#msg-signin");
    assert_eq!(b.text("#msg-signin"), "Enter your email and your password.");
    assert_eq!(b.focused(), "signin-email");
    b.type_into("#signin-email", email);
    for _ in 0..5 {
        b.type_into("#signin-password", "wrong password");
        b.click("#signin-submit");
        b.wait("document.getElementById('msg-signin').innerText === 'The email or password is not right.'");
        assert_eq!(b.focused(), "signin-password");
        b.js(
            "document.getElementById('msg-signin').innerText = '';",
            json!([]),
        );
    }
    b.type_into("#signin-password", PASSWORD);
    b.click("#signin-submit");
    b.wait("/^Too many tries. Please wait \\d+ seconds, then try again.$/.test(document.getElementById('msg-signin').innerText)");
    no_console_errors(&b, &origin);
}

/// Each screen owns its messages: none outlives a screen change (the issue's cases: the
/// sign-out notice above "Signed in as", the copied key beside a red error, a refused
/// passkey after signing out and in). One message place shows at a time.
#[test]
fn no_message_outlives_its_screen() {
    let Some(b) = browser(420, 1100, false) else {
        return;
    };
    let s = Server::start(&[]);
    let origin = format!("http://localhost:{}", s.addr.port());
    let email = "kim@example.com";
    s.add_user(email, PASSWORD);
    let shown = |b: &Browser| -> Vec<String> {
        let v = b.js(
            "return [...document.querySelectorAll('.msg')].filter(e => e.offsetParent !== null).map(e => e.innerText);",
            json!([]),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    b.goto(&format!("{origin}/"));
    sign_in_with_password(&b, email);
    signed_in(&b);

    // The copied key, then a wrong code: the error replaces it.
    b.click("#totp-setup");
    b.wait_shown("#setup-qr");
    b.click("#setup-copy");
    b.wait_shown("#msg-setup");
    b.type_into("#setup-code", "12345");
    b.click("#setup-submit");
    b.wait("document.getElementById('msg-setup').innerText === 'Type the 6 digits the app shows.'");
    assert_eq!(shown(&b), ["Type the 6 digits the app shows."]);
    b.click("#setup-cancel");
    signed_in(&b);
    assert_eq!(
        shown(&b),
        Vec::<String>::new(),
        "the set-up's error stayed there"
    );

    // A passkey registered twice: refused in words; gone after signing out and in.
    let _authenticator = b.add_virtual_authenticator();
    b.click("#passkey-add-submit");
    b.wait("document.querySelectorAll('#passkey-list li').length === 1");
    b.click("#passkey-add-submit");
    b.wait("document.getElementById('msg-account').innerText === 'This passkey is registered already.'");
    sign_out(&b);
    assert_eq!(shown(&b), ["You are signed out."]);
    sign_in_with_password(&b, email);
    b.wait_shown("#second-methods button");
    assert!(!b.text("main").contains("signed out"), "{}", b.text("main"));
    assert_eq!(shown(&b), Vec::<String>::new());
    b.click("#second-methods button[data-method=passkey]");
    b.click("#second-go");
    signed_in(&b);
    assert!(!b.text("main").contains("signed out"));
    assert!(!b.text("main").contains("registered already"));

    // The passkey removed elsewhere: signing in with it says so in words, and the
    // sentence is gone once signed in another way.
    let token = s.token(email);
    let id = s.get("/api/v1/me/passkeys", Some(&token)).json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.request(
            "DELETE",
            &format!("/api/v1/me/passkeys/{id}"),
            &[("Authorization", &format!("Bearer {token}"))],
            None
        )
        .status,
        204
    );
    sign_out(&b);
    b.click("#passkey-signin");
    b.wait("document.getElementById('msg-signin').innerText.startsWith('That passkey cannot sign you in here.')");
    assert!(!b.text("main").contains("Assertion verification failed"));
    sign_in_with_password(&b, email);
    signed_in(&b);
    assert_eq!(shown(&b), Vec::<String>::new());
    no_console_errors(&b, &origin);
}

/// The page says where the person is: the service (`--rp-name`) in the heading and the
/// title, a title per screen, the focus on the new screen's heading after each change
/// (on the set-up screen too, not the code field at its bottom), the chosen method
/// pressed; the set-up offers the otpauth link for a phone, and the backup-codes file
/// names the service, the account and the day.
#[test]
fn each_screen_says_where_you_are() {
    let Some(b) = browser(360, 900, false) else {
        return;
    };
    let s = Server::start(&["--rp-name", "Acme & Co"]);
    let origin = format!("http://localhost:{}", s.addr.port());
    let email = "lee@example.com";
    s.add_user(email, PASSWORD);
    let title = |b: &Browser| {
        b.js("return document.title;", json!([]))
            .as_str()
            .unwrap()
            .to_string()
    };
    b.goto(&format!("{origin}/"));
    b.wait_shown("#signin-email");
    assert_eq!(title(&b), "Sign in — Acme & Co");
    assert_eq!(b.text("#heading"), "Acme & Co\nSign in");
    field_borders_contrast(&b);
    sign_in_with_password(&b, email);
    signed_in(&b);
    assert_eq!(title(&b), "Your account — Acme & Co");
    assert_eq!(b.focused(), "heading");

    b.click("#totp-setup");
    b.wait_shown("#setup-qr");
    assert_eq!(title(&b), "Set up an authenticator app — Acme & Co");
    assert_eq!(
        b.focused(),
        "heading",
        "the focus stays at the top of the set-up"
    );
    let link = b.js(
        "return document.getElementById('setup-link').href;",
        json!([]),
    );
    let link = link.as_str().unwrap();
    assert!(link.starts_with("otpauth://totp/"), "{link}");
    let secret = shown_secret(&b);
    assert!(link.contains(&format!("secret={secret}")), "{link}");
    // At 360 px no group of the key breaks across lines.
    let groups_whole = b.js(
        "return [...document.querySelectorAll('#setup-secret span')].every(s => s.getClientRects().length === 1);",
        json!([]),
    );
    assert_eq!(groups_whole, json!(true));
    b.type_into("#setup-code", &code_at(&secret, now()));
    b.click("#setup-submit");
    b.wait_shown("#codes-list li");
    assert_eq!(title(&b), "Your backup codes — Acme & Co");
    assert_eq!(b.focused(), "heading");
    // The file: caught at its click, read back from its blob.
    b.js(
        "const made = URL.createObjectURL; URL.createObjectURL = (blob) => { blob.text().then(t => { window.saved.text = t; }); return made(blob); }; HTMLAnchorElement.prototype.click = function () { window.saved.name = this.download; }; window.saved = {};",
        json!([]),
    );
    b.click("#codes-download");
    b.wait("window.saved.text !== undefined && window.saved.name !== undefined");
    let saved = b.js("return window.saved;", json!([]));
    let today = b.js("return new Date().toISOString().slice(0, 10);", json!([]));
    let today = today.as_str().unwrap();
    assert_eq!(saved["name"], format!("acme-co-backup-codes-{today}.txt"));
    let text = saved["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "Acme & Co backup codes\nAccount: {email}\nMade on {today}\n"
        )),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.len() == 9 && l.contains('-'))
            .count(),
        10,
        "{text}"
    );
    b.click("#codes-done");
    signed_in(&b);

    // The second step: the chosen method is pressed, not only outlined.
    sign_out(&b);
    assert_eq!(title(&b), "Sign in — Acme & Co");
    sign_in_with_password(&b, email);
    b.wait_shown("#second-methods button");
    assert_eq!(title(&b), "Confirm it is you — Acme & Co");
    assert_eq!(b.focused(), "heading");
    let pressed = || {
        b.js(
            "return [...document.querySelectorAll('#second-methods button')].map(b => b.dataset.method + '=' + b.getAttribute('aria-pressed'));",
            json!([]),
        )
    };
    assert_eq!(pressed(), json!(["totp=true", "backup_code=false"]));
    b.click("#second-methods button[data-method=backup_code]");
    assert_eq!(pressed(), json!(["totp=false", "backup_code=true"]));
    assert_eq!(b.focused(), "backup-code");
    // The confirmation form is framed and the rest of the account waits while it is open.
    b.click("#second-methods button[data-method=totp]");
    answer_second_step(&b, "totp", &fresh_code(&secret, &[code_at(&secret, now())]));
    signed_in(&b);
    b.click("#totp-disable");
    b.wait_shown("#confirm-password");
    let disabled = b.js(
        "return [...document.querySelectorAll('#screen-account button')].filter(b => !b.closest('#confirm-form')).every(b => b.disabled);",
        json!([]),
    );
    assert_eq!(disabled, json!(true));
    b.click("#confirm-cancel");
    assert_eq!(b.focused(), "totp-disable");
    no_console_errors(&b, &origin);
}

/// A first visit of a browser that never signed in makes no refresh and logs nothing
/// (it used to end in a 401 from the silent refresh); after a sign-in the reload is
/// silent again, and after a sign-out no refresh is tried.
#[test]
fn a_signed_out_first_visit_logs_no_error() {
    let Some(b) = browser(420, 900, false) else {
        return;
    };
    let s = Server::start(&[]);
    let origin = format!("http://localhost:{}", s.addr.port());
    let email = "ida@example.com";
    s.add_user(email, PASSWORD);
    let refreshes = |b: &Browser| {
        b.js(
            "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/auth/refresh')).length;",
            json!([]),
        )
    };
    b.goto(&format!("{origin}/"));
    b.wait_shown("#signin-email");
    b.js("console.info('mfad-test: the console is read');", json!([]));
    let entries = b.console();
    assert!(entries.iter().any(|e| e["message"]
        .as_str()
        .is_some_and(|m| m.contains("mfad-test"))));
    let severe: Vec<&Value> = entries.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "{severe:?}");
    assert_eq!(refreshes(&b), json!(0));

    sign_in_with_password(&b, email);
    signed_in(&b);
    b.reload();
    signed_in(&b);
    assert_eq!(
        refreshes(&b),
        json!(1),
        "signed in before: one silent refresh"
    );
    sign_out(&b);
    b.reload();
    b.wait_shown("#signin-email");
    assert_eq!(refreshes(&b), json!(0));
    let severe: Vec<Value> = b
        .console()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "{severe:?}");
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
    // The keyboard alone: the page puts the focus on the screen's heading, and Tab
    // walks the form from there in reading order.
    b.wait("document.activeElement.id === 'heading'");
    let mut walked = vec![];
    for _ in 0..4 {
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
    field_borders_contrast(&b);
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

/// The page's files go gzip-compressed to a client that accepts it, and plain to one
/// that does not; both forms are the same file, the HTML named for the service.
#[test]
fn the_page_is_sent_compressed_to_who_accepts_it() {
    use std::io::Read;
    let s = Server::start(&["--rp-name", "Acme <Co>"]);
    let mut sizes = Vec::new();
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let plain = s.request("GET", path, &[("Accept-Encoding", "identity")], None);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("Content-Encoding"), None, "{path}");
        assert_eq!(plain.header("Vary"), Some("Accept-Encoding"), "{path}");
        let packed = s.request(
            "GET",
            path,
            &[("Accept-Encoding", "gzip, deflate, br")],
            None,
        );
        assert_eq!(packed.header("Content-Encoding"), Some("gzip"), "{path}");
        assert_eq!(packed.header("Vary"), Some("Accept-Encoding"), "{path}");
        assert_eq!(packed.header("Content-Type"), plain.header("Content-Type"));
        assert!(packed.header("Content-Security-Policy").is_some());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed.body[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, plain.body, "{path}");
        assert!(packed.body.len() * 2 < plain.body.len(), "{path}");
        sizes.push((path, plain.body.len(), packed.body.len()));
    }
    let html = s.get("/", None).text();
    assert!(html.contains("<title>Acme &lt;Co&gt;</title>"), "{html}");
    assert!(html.contains(r#"<meta name="description""#));
    let (plain, packed): (usize, usize) = sizes.iter().fold((0, 0), |t, s| (t.0 + s.1, t.1 + s.2));
    eprintln!("the page: {plain} bytes, {packed} compressed ({sizes:?})");
    assert!(plain < 60 * 1024);
}
