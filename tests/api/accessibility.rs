//! The page against axe-core, Deque's accessibility engine (the npm package, pinned in
//! `tests/axe/package-lock.json` and installed there by `npm ci`, which `.ci/run` does):
//! every screen, in the light and the dark colour scheme, 1280 and 360 px wide, with no
//! violation of any rule axe runs by default (WCAG 2.x A and AA, and its best practices).
//! axe is injected over WebDriver into real headless Chromium against the real binary.
//! Without axe or the browser the test says SKIPPED; under `CI=true` it fails.

use common::webdriver::Browser;

use super::page::{browser, sign_in_with_password, sign_out, signed_in};
use super::*;

/// Where `npm ci` in `tests/axe` puts axe; `MFAD_AXE_JS` names another copy.
const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/axe/node_modules/axe-core/axe.min.js"
);

/// axe's source, or `None` (and one line saying so) where it is not installed.
pub(super) fn axe_source() -> Option<String> {
    let path = std::env::var("MFAD_AXE_JS").unwrap_or_else(|_| AXE.to_string());
    match std::fs::read_to_string(&path) {
        Ok(source) => Some(source),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true, and the accessibility test needs axe-core at {path} ({e}): \
                 `npm ci --prefix tests/axe` (Node's npm; .ci/run does it)"
            );
            eprintln!(
                "SKIPPED: the accessibility test needs axe-core at {path} ({e}): `npm ci --prefix tests/axe`"
            );
            None
        }
    }
}

/// axe's violations on the page as it is shown now, each said in a few lines: the
/// rule, its impact and help, and every failing element with axe's reason.
pub(super) fn violations(b: &Browser, axe: &str) -> Vec<String> {
    if b.js("return typeof window.axe;", json!([])) != json!("object") {
        // The source itself as the script's body: WebDriver runs it outside the page's
        // CSP (`script-src 'self'`), which would refuse an eval or an injected <script>.
        b.js(axe, json!([]));
    }
    let found = b.js_async(
        "const done = arguments[arguments.length - 1];
         axe.run(document, { resultTypes: ['violations'] }).then(
           r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.map(n => ({ target: n.target.join(' '), why: n.failureSummary })) }))),
           e => done({ error: String(e) }));",
        json!([]),
    );
    assert!(found.get("error").is_none(), "axe did not run: {found}");
    found
        .as_array()
        .expect("axe's violations")
        .iter()
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let mut said = format!("{} ({}): {}", text("id"), text("impact"), text("help"));
            for n in v["nodes"].as_array().into_iter().flatten() {
                let why = n["why"].as_str().unwrap_or_default().replace('\n', " ");
                let target = n["target"].as_str().unwrap_or_default();
                said.push_str(&format!("\n    {target}: {why}"));
            }
            said
        })
        .collect()
}

/// Walks every screen (sign-in, and with an error; the account, with the authenticator
/// app off and then with a passkey listed and the confirmation open; the set-up with its
/// QR code; the backup codes; signed out; the second step, each code method chosen)
/// in each colour scheme and width, and runs axe on each. One server, a browser and an
/// account per scheme and width; every violation is listed before the test fails.
#[test]
fn the_page_has_no_accessibility_violations() {
    let Some(axe) = axe_source() else {
        return;
    };
    let s = Server::start(&[]);
    let origin = format!("http://localhost:{}", s.addr.port());
    let mut found = Vec::new();
    let mut screens = 0;
    for (n, (width, height, dark)) in [
        (1280, 900, false),
        (1280, 900, true),
        (360, 800, false),
        (360, 800, true),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(b) = browser(width, height, dark) else {
            return;
        };
        let scheme = if dark { "dark" } else { "light" };
        let mut check = |screen: &str| {
            screens += 1;
            for v in violations(&b, &axe) {
                found.push(format!("{scheme}, {width} px, {screen}: {v}"));
            }
        };
        let email = format!("axe{n}@example.com");
        s.add_user(&email, PASSWORD);

        b.goto(&format!("{origin}/"));
        b.wait_shown("#signin-email");
        check("sign-in");
        b.click("#signin-submit");
        b.wait_shown("#msg-signin");
        check("sign-in with an error");

        sign_in_with_password(&b, &email);
        signed_in(&b);
        b.wait_shown("#totp-setup");
        check("account, authenticator app off");

        b.click("#totp-setup");
        b.wait("(i => i.complete && i.naturalWidth === 300)(document.getElementById('setup-qr'))");
        check("set-up with the QR code");
        let secret = b.js(
            "return document.getElementById('setup-secret').dataset.secret;",
            json!([]),
        );
        b.type_into("#setup-code", &code_at(secret.as_str().unwrap(), now()));
        b.click("#setup-submit");
        b.wait_shown("#codes-list li");
        check("backup codes");

        b.click("#codes-done");
        b.wait_shown("#totp-disable");
        b.add_virtual_authenticator();
        b.type_into("#passkey-name", "Laptop");
        b.click("#passkey-add-submit");
        b.wait("document.querySelectorAll('#passkey-list li').length === 1");
        check("account with a passkey");
        b.click("#codes-regenerate");
        b.wait_shown("#confirm-password");
        check("account, confirmation open");
        b.click("#confirm-cancel");

        sign_out(&b);
        b.wait_shown("#msg-signin");
        check("signed out");
        sign_in_with_password(&b, &email);
        b.wait_shown("#totp-code");
        check("second step, authenticator app code");
        b.click("#second-methods button[data-method=backup_code]");
        b.wait_shown("#backup-code");
        check("second step, backup code");
    }
    eprintln!("axe checked {screens} screens");
    assert!(
        found.is_empty(),
        "axe found {} violations:\n{}",
        found.len(),
        found.join("\n")
    );
}
