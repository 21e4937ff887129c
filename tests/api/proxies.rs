//! Forward-auth behind the real proxies (#25): Debian's nginx (`auth_request`) and Caddy
//! (`forward_auth`), each started here on loopback with the configuration the README's
//! "Protecting apps behind a reverse proxy" shows, in front of a small app that echoes
//! the headers it receives. The README's text is changed only where a test must: the
//! listening address (loopback, a free port, no TLS), the addresses of mfad and the app,
//! and the site's name (every host under `example.test`); each change must find its
//! text, so a README that drifts fails here. Last, a person's whole way in, in real
//! Chromium through each proxy. Without nginx or Caddy (or Chromium) a test says
//! SKIPPED; under `CI=true` it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{code_at, request_unchecked, Resp, Server};
use crate::forward_auth::{session_of, signed_in};
use crate::settings::{readme, section};

const PORTAL: &str = "https://auth.example.test";

/// The rules of every test here: one host per policy, a path bypass, an email list.
const RULES: [&str; 16] = [
    "--public-url",
    PORTAL,
    "--session-domain",
    "example.test",
    "--access-rule",
    "wiki.example.test/public bypass",
    "--access-rule",
    "open.example.test bypass",
    "--access-rule",
    "wiki.example.test one_factor",
    "--access-rule",
    "admin.example.test two_factor",
    "--access-rule",
    "closed.example.test deny",
    "--access-rule",
    "team.example.test one_factor bob@example.com",
];

/// Which proxy.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Caddy,
}

impl Kind {
    fn tool(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        }
    }
}

/// The README's fenced block of `lang` in the proxies' section.
fn readme_block(lang: &str) -> String {
    let doc = readme();
    let text = section(&doc, "Protecting apps behind a reverse proxy");
    let open = format!("```{lang}\n");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("the README's proxy section has no ```{lang} block"))
        + open.len();
    let end = text[start..].find("```").unwrap() + start;
    text[start..end].to_string()
}

/// `text` with `from` replaced by `to`, which must be there.
pub(crate) fn changed(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the README's configuration no longer has {from:?}; update the test that runs it"
    );
    text.replace(from, to)
}

/// The app behind the proxy: answers every request with the JSON of its path and
/// headers (names lower-cased), and counts the requests it saw.
struct EchoApp {
    addr: SocketAddr,
    seen: Arc<AtomicUsize>,
}

impl EchoApp {
    fn start() -> EchoApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || echo(stream));
            }
        });
        EchoApp { addr, seen }
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}

/// One request on `stream` answered with what it carried, then the connection closed.
fn echo(stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push(json!([k, v]));
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let answer = json!({"path": path, "headers": headers}).to_string();
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// A proxy running the README's configuration; killed on drop.
struct Proxy {
    kind: Kind,
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Proxy {
    /// The proxy of `kind` in front of `app`, asking `mfad`; `None` (one SKIPPED line)
    /// where it is not installed, outside CI.
    fn start(kind: Kind, domain: &str, mfad: SocketAddr, app: SocketAddr) -> Option<Proxy> {
        if !crate::operations::have(kind.tool()) {
            eprintln!(
                "SKIPPED: the {0} test needs {0} (Debian's package `{0}`)",
                kind.tool()
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (mfad, app) = (mfad.to_string(), app.to_string());
        let mut command = match kind {
            Kind::Nginx => {
                let site = readme_block("nginx");
                let site = changed(
                    &site,
                    "listen 443 ssl;",
                    &format!("listen 127.0.0.1:{port};"),
                );
                let site: String = site
                    .lines()
                    .filter(|l| !l.contains("ssl_certificate"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let site = changed(
                    &site,
                    "server_name wiki.example.com;",
                    &format!("server_name .{domain};"),
                );
                let site = changed(&site, "127.0.0.1:8080", &mfad);
                let site = changed(&site, "127.0.0.1:3000", &app);
                let d = dir.path().display();
                // The README's block is a site of Debian's nginx.conf; here, the least
                // of one around it, every file in the test's directory.
                let conf = format!(
                    "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
                     error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                     proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                     uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}}}\n"
                );
                std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
                let mut c = Command::new("nginx");
                c.arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(dir.path().join("nginx.conf"));
                c
            }
            Kind::Caddy => {
                let site = readme_block("caddy");
                let site = changed(
                    &site,
                    "wiki.example.com {",
                    &format!("http://*.{domain}:{port} {{"),
                );
                let site = changed(&site, "127.0.0.1:8080", &mfad);
                let site = changed(&site, "127.0.0.1:3000", &app);
                let d = dir.path().display();
                let conf =
                    format!("{{\n\tadmin off\n\tstorage file_system {d}/storage\n}}\n{site}");
                std::fs::write(dir.path().join("Caddyfile"), conf).unwrap();
                let mut c = Command::new("caddy");
                c.args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(dir.path().join("Caddyfile"))
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path())
                    .env("XDG_CONFIG_HOME", dir.path());
                c
            }
        };
        let log = std::fs::File::create(dir.path().join("out.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut proxy = Proxy {
            kind,
            port,
            child,
            dir,
        };
        proxy.wait_listening();
        Some(proxy)
    }

    fn wait_listening(&mut self) {
        let name = format!("{:?}", self.kind);
        wait_listening(&mut self.child, self.port, &name, self.dir.path());
    }

    /// `GET path` on `host` through the proxy, with `headers` beside it.
    fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let h = format!("{host}:{}", self.port);
        let mut all = vec![("Host", h.as_str())];
        all.extend_from_slice(headers);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        request_unchecked(addr, "GET", path, &all, None)
    }

    /// The same, with the session cookie `cookie`.
    fn get_as(&self, host: &str, path: &str, cookie: &str, headers: &[(&str, &str)]) -> Resp {
        let c = format!("mfad_session={cookie}");
        let mut all = vec![("Cookie", c.as_str())];
        all.extend_from_slice(headers);
        self.get(host, path, &all)
    }

    /// The page's URL for someone sent there from `path` on `host`.
    fn portal(&self, host: &str, path: &str, need_2fa: bool) -> String {
        let rd = format!("http://{host}:{}{path}", self.port);
        let rd: String = rd
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let need = if need_2fa { "&need=2fa" } else { "" };
        format!("{PORTAL}/?rd={rd}{need}")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a server the tests started wrote to `out.log` and `error.log` in `dir`.
pub(crate) fn logs_in(dir: &std::path::Path) -> String {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    format!("{}{}", read("out.log"), read("error.log"))
}

/// Waits up to 20 s for `child` (a server called `name`, its logs in `dir`) to listen on
/// loopback `port`; fails with its logs if it stops or does not.
pub(crate) fn wait_listening(child: &mut Child, port: u16, name: &str, dir: &std::path::Path) {
    let log = || logs_in(dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} stopped ({status}): {}", log());
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not listen within 20 s: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The headers the app received, from its echo.
fn received(r: &Resp) -> Vec<(String, String)> {
    assert_eq!(r.status, 200, "the app was not reached: {}", r.text());
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
        .collect()
}

/// The values of `Remote-*` the app received (by any spelling: `Remote_User` too), with
/// empty ones left out: what an app could take for an identity.
fn identity(r: &Resp) -> Vec<(String, String)> {
    received(r)
        .into_iter()
        .filter(|(k, v)| k.replace('_', "-").starts_with("remote-") && !v.is_empty())
        .collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// What a client sends to pass for someone else.
const FORGED: [(&str, &str); 4] = [
    ("Remote-User", "admin@example.com"),
    ("remote-email", "admin@example.com"),
    ("Remote_User", "admin@example.com"),
    ("Remote-Amr", "pwd,otp"),
];

/// A session of an account with TOTP on, signed in with password and code.
fn two_factor_session(s: &Server, email: &str) -> String {
    let (token, _) = signed_in(s, email);
    let (secret, step, _) = crate::enable(s, &token);
    let r = crate::login(s, email, crate::PASSWORD);
    let challenge = r.json()["mfa_token"].as_str().unwrap().to_string();
    // The step after the one enable used: a code is never accepted twice.
    let r = crate::verify(s, &challenge, &code_at(&secret, (step + 1) * 30));
    assert_eq!(r.status, 200, "{}", r.text());
    session_of(s, r.json()["token"].as_str().unwrap())
}

/// Everything the README promises of one proxy.
fn the_readme_configuration_guards_the_app(kind: Kind) {
    let s = Server::start(&RULES);
    let app = EchoApp::start();
    let Some(p) = Proxy::start(kind, "example.test", s.addr, app.addr) else {
        return;
    };

    // Not signed in: to the page, with the way back; the app never sees the request.
    let before = app.seen();
    let r = p.get("wiki.example.test", "/notes?id=7", &FORGED);
    assert_eq!(r.status, 302, "{:?}: {}", kind, r.text());
    assert_eq!(
        r.header("Location"),
        Some(p.portal("wiki.example.test", "/notes?id=7", false).as_str())
    );
    assert_eq!(app.seen(), before, "{kind:?}: the app was reached unsigned");

    // bypass (a host, and a path of a guarded host): the app, and no identity at all,
    // whatever the client claimed.
    for (host, path) in [
        ("open.example.test", "/"),
        ("wiki.example.test", "/public/a.css"),
    ] {
        let r = p.get(host, path, &FORGED);
        assert_eq!(identity(&r), vec![], "{kind:?} {host}{path}");
    }

    // one_factor: the person mfad names, and only that one.
    let (_, ana) = signed_in(&s, "ana@example.com");
    let r = p.get_as("wiki.example.test", "/notes", &ana, &FORGED);
    let mut who = identity(&r);
    who.sort();
    assert_eq!(
        who,
        vec![
            pair("remote-amr", "pwd"),
            pair("remote-email", "ana@example.com"),
            pair("remote-user", "ana@example.com"),
        ],
        "{kind:?}"
    );

    // two_factor: one factor is sent to set up a second; two pass.
    let r = p.get_as("admin.example.test", "/", &ana, &[]);
    assert_eq!(r.status, 302, "{kind:?}");
    assert_eq!(
        r.header("Location"),
        Some(p.portal("admin.example.test", "/", true).as_str())
    );
    let carol = two_factor_session(&s, "carol@example.com");
    let r = p.get_as("admin.example.test", "/", &carol, &FORGED);
    assert!(
        identity(&r).contains(&pair("remote-user", "carol@example.com")),
        "{kind:?}"
    );
    assert!(
        identity(&r).contains(&pair("remote-amr", "pwd,otp")),
        "{kind:?}"
    );

    // deny, and the default deny: 403, signed in or not.
    for host in ["closed.example.test", "elsewhere.example.test"] {
        assert_eq!(p.get(host, "/", &[]).status, 403, "{kind:?} {host}");
        assert_eq!(
            p.get_as(host, "/", &carol, &[]).status,
            403,
            "{kind:?} {host}"
        );
    }

    // The email list: checked before anything else.
    assert_eq!(p.get_as("team.example.test", "/", &ana, &[]).status, 403);
    let (_, bob) = signed_in(&s, "bob@example.com");
    let r = p.get_as("team.example.test", "/", &bob, &[]);
    assert!(identity(&r).contains(&pair("remote-user", "bob@example.com")));

    // Logout ends access at the next request.
    let c = format!("mfad_session={ana}");
    let out = s.request("POST", "/api/auth/logout", &[("Cookie", c.as_str())], None);
    assert_eq!(out.status, 204);
    assert_eq!(
        p.get_as("wiki.example.test", "/notes", &ana, &[]).status,
        302
    );

    // So does `user reset-mfa`.
    let (ok, _, err) = s.cli(&["user", "reset-mfa", "--email", "carol@example.com"], None);
    assert!(ok, "{err}");
    assert_eq!(p.get_as("admin.example.test", "/", &carol, &[]).status, 302);
    assert_eq!(p.get_as("wiki.example.test", "/", &bob, &[]).status, 200);
}

#[test]
fn nginx_with_the_readme_configuration_guards_the_app() {
    the_readme_configuration_guards_the_app(Kind::Nginx);
}

#[test]
fn caddy_with_the_readme_configuration_guards_the_app() {
    the_readme_configuration_guards_the_app(Kind::Caddy);
}

/// Two nodes on one PostgreSQL database, the proxy asking node B: a session made on
/// node A passes there, and ends at B's next check whichever node ended it. (Each check
/// reads the session's row; no node keeps a copy that could outlive it.)
#[test]
fn a_session_made_on_node_a_is_accepted_and_ended_on_node_b() {
    if !crate::common::on_postgres() {
        eprintln!("SKIPPED: two nodes need the PostgreSQL run (MFAD_TEST_DATABASE_URL)");
        return;
    }
    let a = Server::start(&RULES);
    let b = a.second_node(&RULES);
    let app = EchoApp::start();
    for kind in [Kind::Nginx, Kind::Caddy] {
        let Some(p) = Proxy::start(kind, "example.test", b.addr, app.addr) else {
            continue;
        };
        let email = format!("{}@example.com", kind.tool());
        // Ended on B (logout there by the cookie): refused by B and by A.
        let (_, one) = signed_in(&a, &email);
        let r = p.get_as("wiki.example.test", "/", &one, &[]);
        assert!(
            identity(&r).contains(&pair("remote-user", &email)),
            "{kind:?}"
        );
        let c = format!("mfad_session={one}");
        let out = b.request("POST", "/api/auth/logout", &[("Cookie", c.as_str())], None);
        assert_eq!(out.status, 204);
        assert_eq!(p.get_as("wiki.example.test", "/", &one, &[]).status, 302);
        let asked_a = a.request(
            "GET",
            "/api/authz/forward-auth",
            &[
                ("X-Forwarded-Host", "wiki.example.test"),
                ("Cookie", c.as_str()),
            ],
            None,
        );
        assert_eq!(asked_a.status, 302, "{kind:?}");
        // Ended on A (`reset-mfa` on its data directory): refused at B's next check.
        let two = fresh_session(&a, &email);
        assert_eq!(p.get_as("wiki.example.test", "/", &two, &[]).status, 200);
        let (ok, _, err) = a.cli(&["user", "reset-mfa", "--email", &email], None);
        assert!(ok, "{err}");
        assert_eq!(p.get_as("wiki.example.test", "/", &two, &[]).status, 302);
    }
}

/// A new session of an existing account (password only).
fn fresh_session(s: &Server, email: &str) -> String {
    let r = crate::login(s, email, crate::PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    session_of(s, r.json()["token"].as_str().unwrap())
}

/// A person's way in, in real Chromium through each proxy: the app's address → the
/// portal → password and TOTP on mfad's page → back on the app, which the proxy tells
/// who they are. The names are real to the browser (`--host-resolver-rules`): the page
/// at `auth.mfad.test`, the app at `wiki.mfad.test`, so the cookie's `Domain=mfad.test`
/// is what carries the session from one to the other.
#[test]
fn a_person_opens_a_guarded_app_signs_in_on_the_portal_and_is_back_on_it_in_chromium() {
    let s = Server::start(&[
        "--public-url",
        "http://auth.mfad.test",
        "--session-domain",
        "mfad.test",
        "--access-rule",
        "wiki.mfad.test two_factor",
    ]);
    let app = EchoApp::start();
    for kind in [Kind::Nginx, Kind::Caddy] {
        let Some(p) = Proxy::start(kind, "mfad.test", s.addr, app.addr) else {
            continue;
        };
        // An account per proxy: each signs in with a code of its own.
        let email = format!("{}@example.com", kind.tool());
        let token = crate::user_token(&s, &email);
        let (secret, step, _) = crate::enable(&s, &token);
        let Some(b) = crate::page::browser_with(
            1000,
            900,
            false,
            &[
                format!(
                    "--host-resolver-rules=MAP auth.mfad.test 127.0.0.1:{}, MAP wiki.mfad.test 127.0.0.1:{}, MAP * ~NOTFOUND",
                    s.addr.port(),
                    p.port
                ),
                "--unsafely-treat-insecure-origin-as-secure=http://auth.mfad.test".to_string(),
            ],
        ) else {
            return;
        };
        b.goto("http://wiki.mfad.test/notes?id=7");
        b.wait_shown("#signin-email");
        assert_eq!(
            b.url(),
            "http://auth.mfad.test/?rd=http%3A%2F%2Fwiki.mfad.test%2Fnotes%3Fid%3D7",
            "{kind:?}"
        );
        crate::page::sign_in_with_password(&b, &email);
        // The step after the one enable used: a code is never accepted twice.
        let code = code_at(&secret, (step + 1) * 30);
        crate::page::answer_second_step(&b, "totp", &code);
        b.wait("location.host === 'wiki.mfad.test'");
        assert_eq!(b.url(), "http://wiki.mfad.test/notes?id=7", "{kind:?}");
        let shown: Value = serde_json::from_str(&b.text("body")).unwrap();
        let headers = shown["headers"].as_array().unwrap();
        for (name, value) in [("remote-user", email.as_str()), ("remote-amr", "pwd,otp")] {
            assert!(
                headers.contains(&json!([name, value])),
                "{kind:?}: the app saw {headers:?}"
            );
        }
    }
}
