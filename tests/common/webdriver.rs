//! A small W3C WebDriver client for the browser tests: Debian's `chromedriver` started on
//! `127.0.0.1` (port 0; the port it chose read back from `/proc`), headless Chromium, and
//! the few commands the tests use, each a JSON request over the tests' own HTTP client.
//! Chromium's virtual authenticator is WebDriver's WebAuthn extension (§11 of WebAuthn).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether the browser tests can run here; `None` says what is missing.
pub fn missing() -> Option<String> {
    let absent: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    (!absent.is_empty()).then(|| absent.join(" and "))
}

/// A chromedriver and one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// The browser's profile, deleted with it.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium `width` pixels wide, in the dark
    /// colour scheme when `dark`, with `extra` switches (host mapping rules, say).
    pub fn start(width: u32, height: u32, dark: bool, extra: &[String]) -> Browser {
        let driver = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(&p) = super::listening_ports(driver.id()).first() {
                break p;
            }
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            addr,
            session: String::new(),
            profile,
        };
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b.profile.path().display()),
        ];
        if dark {
            // What the system setting does: `prefers-color-scheme: dark`.
            args.push("--force-dark-mode".to_string());
        }
        args.extend_from_slice(extra);
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
            // Above WebDriver's 30 s: axe's run on a busy two-core machine.
            "timeouts": { "script": 60_000 },
        }}});
        let r = b.call("POST", "/session", Some(caps));
        b.session = r["sessionId"].as_str().expect("a session").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let text = body.map(|b| b.to_string());
        let headers: &[(&str, &str)] = match text {
            Some(_) => &[("Content-Type", "application/json")],
            None => &[],
        };
        let r = super::request_unchecked(self.addr, method, path, headers, text.as_deref());
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        assert!(
            r.status == 200,
            "WebDriver {method} {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The address of the page the browser is on.
    pub fn url(&self) -> String {
        let v = self.session_call("GET", "/url", None);
        v.as_str().unwrap_or_default().to_string()
    }

    pub fn reload(&self) {
        self.session_call("POST", "/refresh", Some(json!({})));
    }

    /// Runs `script` (a function body) with `args`; its return value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` (a function body) with `args` and waits for it to call its last
    /// argument, WebDriver's callback; what it was called with. The script may take the
    /// session's script timeout (60 s, set at the start).
    pub fn js_async(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits up to 10 s for `condition` (a JavaScript expression) to be true.
    pub fn wait(&self, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let script = format!("return !!({condition});");
        while self.js(&script, json!([])) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {condition}; page says: {}",
                self.text("main")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the element `selector` is shown.
    pub fn wait_shown(&self, selector: &str) {
        self.wait(&format!(
            "(e => e && e.offsetParent !== null)(document.querySelector({selector:?}))"
        ));
    }

    pub fn find(&self, selector: &str) -> String {
        let v = self.session_call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": selector })),
        );
        v[ELEMENT].as_str().expect("an element").to_string()
    }

    /// Types `text` into the element, as a person would (WebDriver sends key events).
    pub fn type_into(&self, selector: &str, text: &str) {
        let e = self.find(selector);
        self.session_call("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.session_call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, selector: &str) {
        let e = self.find(selector);
        self.session_call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// The rendered text of the first element `selector` names.
    pub fn text(&self, selector: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([selector]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// A PNG of the element as rendered.
    pub fn element_png(&self, selector: &str) -> Vec<u8> {
        let e = self.find(selector);
        let b64 = self.session_call("GET", &format!("/element/{e}/screenshot"), None);
        data_encoding::BASE64
            .decode(b64.as_str().unwrap().as_bytes())
            .unwrap()
    }

    /// A PNG of the whole viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let b64 = self.session_call("GET", "/screenshot", None);
        data_encoding::BASE64
            .decode(b64.as_str().unwrap().as_bytes())
            .unwrap()
    }

    /// Presses a key (a WebDriver key code such as `\u{E004}`, Tab) in the focused element.
    pub fn press(&self, key: &str) {
        let v = self.session_call("GET", "/element/active", None);
        let e = v[ELEMENT].as_str().expect("a focused element");
        self.session_call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": key })),
        );
    }

    /// The id of the focused element.
    pub fn focused(&self) -> String {
        self.js("return document.activeElement.id;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn accept_alert(&self) {
        self.session_call("POST", "/alert/accept", Some(json!({})));
    }

    /// Adds a virtual platform authenticator (resident keys, user verification).
    pub fn add_virtual_authenticator(&self) -> String {
        let v = self.session_call(
            "POST",
            "/webauthn/authenticator",
            Some(json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserConsenting": true,
                "isUserVerified": true,
            })),
        );
        v.as_str().expect("an authenticator id").to_string()
    }

    /// The credentials the virtual authenticator holds.
    pub fn credentials(&self, authenticator: &str) -> Vec<Value> {
        let v = self.session_call(
            "GET",
            &format!("/webauthn/authenticator/{authenticator}/credentials"),
            None,
        );
        v.as_array().cloned().unwrap_or_default()
    }

    /// The browser's console entries since the last call.
    pub fn console(&self) -> Vec<Value> {
        let v = self.session_call("POST", "/se/log", Some(json!({ "type": "browser" })));
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Best effort, and never a panic in a drop (a panic while the test is
            // already failing would abort and hide its message): the driver is killed
            // next anyway.
            let path = format!("/session/{}", self.session);
            let raw =
                super::client::request_bytes("DELETE", &path, &[("Connection", "close")], None);
            let _ = super::client::Conn::new(self.addr, Duration::from_secs(10)).request(&raw);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
