//! Single sign-on through a real OpenID client (#26): Debian's Apache httpd with
//! mod_auth_openidc, started here on loopback, protects a page of two "apps" (a virtual
//! host each, a client each). Real Chromium opens the first, is sent to mfad's page, signs
//! in with password and TOTP, and lands on the protected page, which shows the
//! `OIDC_CLAIM_email` the module passed; the second app then signs in without asking
//! (the same mfad session). The virtual hosts are the README's block, changed only
//! where a test must (addresses, the client, its secret, a cookie name per app: two
//! apps share one host name here). mfad's issuer is `http://localhost:<port>` (loopback: what
//! both the module's back channel and the browser reach). Without Apache, its module or
//! Chromium a test says SKIPPED; under `CI=true` it fails.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::webdriver::Browser;
use crate::common::{code_at, now, Server};
use crate::page::{answer_second_step, browser_with, sign_in_with_password};
use crate::proxies::{changed, logs_in, wait_listening};
use crate::settings::{readme, section};
use crate::{enable, PASSWORD};

const MODULES: &str = "/usr/lib/apache2/modules";

/// The README's mod_auth_openidc virtual host.
fn readme_block() -> String {
    let doc = readme();
    let text = section(&doc, "Single sign-on with OpenID Connect");
    let start = text
        .find("```apache\n")
        .expect("the README's single sign-on section has no ```apache block")
        + "```apache\n".len();
    let end = text[start..].find("```").unwrap() + start;
    text[start..end].to_string()
}

/// A loopback port free at this moment (a server given it must bind it soon).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether Apache and mod_auth_openidc are here; under `CI=true` a missing one fails.
fn have_apache() -> bool {
    let module = Path::new(MODULES).join("mod_auth_openidc.so");
    if crate::operations::have("apache2") && module.exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true, and the single sign-on test needs Debian's apache2 and \
         libapache2-mod-auth-openidc (.ci/run installs them)"
    );
    eprintln!(
        "SKIPPED: the single sign-on test needs Debian's apache2 and libapache2-mod-auth-openidc"
    );
    false
}

/// One app behind Apache: its port, its client id and secret.
struct App {
    port: u16,
    client: &'static str,
    secret: String,
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Apache httpd with a virtual host per app, each asking mfad at `issuer`.
struct Apache {
    child: Child,
    dir: tempfile::TempDir,
}

impl Apache {
    fn start(issuer: &str, apps: &[&App]) -> Apache {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Apache's workers run as www-data: they read the page and write nothing here.
        std::fs::create_dir_all(d.join("htdocs/protected")).unwrap();
        std::fs::write(
            d.join("htdocs/protected/index.shtml"),
            "<!doctype html><title>Protected</title>\
             <p id=\"who\"><!--#echo var=\"OIDC_CLAIM_email\" --></p>\n",
        )
        .unwrap();
        std::fs::write(
            d.join("htdocs/loggedout.html"),
            "<!doctype html><title>Signed out</title><p id=\"out\">Signed out</p>\n",
        )
        .unwrap();
        for p in [d, &d.join("htdocs"), &d.join("htdocs/protected")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut conf = format!(
            "ServerRoot {d}\nServerName localhost\nPidFile {d}/httpd.pid\n\
             ErrorLog {d}/error.log\nLogLevel warn auth_openidc:info\n\
             User www-data\nGroup www-data\n\
             LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n\
             LoadModule authz_core_module {MODULES}/mod_authz_core.so\n\
             LoadModule authn_core_module {MODULES}/mod_authn_core.so\n\
             LoadModule authz_user_module {MODULES}/mod_authz_user.so\n\
             LoadModule mime_module {MODULES}/mod_mime.so\n\
             LoadModule include_module {MODULES}/mod_include.so\n\
             LoadModule auth_openidc_module {MODULES}/mod_auth_openidc.so\n\
             TypesConfig /etc/mime.types\nDocumentRoot {d}/htdocs\n\
             <Directory {d}/htdocs>\n  Options +Includes\n  AddType text/html .shtml\n  \
             AddOutputFilter INCLUDES .shtml\n</Directory>\n",
            d = d.display()
        );
        let block = readme_block();
        for app in apps {
            let p = app.port;
            let host = changed(
                &block,
                "<VirtualHost *:443>",
                &format!("Listen 127.0.0.1:{p}\n<VirtualHost 127.0.0.1:{p}>"),
            );
            let host = changed(&host, "ServerName wiki.example.com", "ServerName 127.0.0.1");
            let host = changed(&host, "https://auth.example.com", issuer);
            let host = changed(
                &host,
                "OIDCClientID wiki",
                &format!("OIDCClientID {}", app.client),
            );
            let host = changed(
                &host,
                "\"the client_secret that mfad client add printed\"",
                &app.secret,
            );
            let host = changed(
                &host,
                "https://wiki.example.com/protected/redirect_uri",
                &format!("http://127.0.0.1:{p}/protected/redirect_uri"),
            );
            let passphrase = data_encoding::HEXLOWER.encode(&rand_bytes());
            let host = changed(&host, "\"a long random string of your own\"", &passphrase);
            // Two apps on one host name (127.0.0.1): each its own session cookie.
            let host = changed(
                &host,
                "OIDCScope \"openid email\"",
                &format!(
                    "OIDCScope \"openid email\"\n    OIDCCookie {}_session",
                    app.client
                ),
            );
            conf.push_str(&host);
        }
        std::fs::write(d.join("httpd.conf"), conf).unwrap();
        let log = std::fs::File::create(d.join("out.log")).unwrap();
        let child = Command::new("apache2")
            .arg("-X")
            .arg("-f")
            .arg(d.join("httpd.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut apache = Apache { child, dir };
        for app in apps {
            wait_listening(&mut apache.child, app.port, "apache2", apache.dir.path());
        }
        apache
    }

    fn log(&self) -> String {
        logs_in(self.dir.path())
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    let f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut &f, &mut b).unwrap();
    b
}

/// Registers `client` for the app on `port`; its secret.
fn register(s: &Server, client: &'static str, name: &str, port: u16) -> App {
    let redirect = format!("http://127.0.0.1:{port}/protected/redirect_uri");
    let after = format!("http://127.0.0.1:{port}/loggedout.html");
    let (ok, out, err) = s.cli(
        &[
            "client",
            "add",
            "--id",
            client,
            "--name",
            name,
            "--redirect-uri",
            &redirect,
            "--post-logout-uri",
            &after,
        ],
        None,
    );
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_string();
    App {
        port,
        client,
        secret,
    }
}

/// mfad on a port of its own with its issuer `http://localhost:<port>`, two apps
/// registered (`two_factor`, the default), Apache in front of them, and Chromium; `None`
/// (SKIPPED) without Apache or Chromium.
fn single_sign_on() -> Option<(Server, String, App, App, Apache, Browser)> {
    if !have_apache() {
        return None;
    }
    let mp = free_port();
    let issuer = format!("http://localhost:{mp}");
    let listen = format!("127.0.0.1:{mp}");
    let s = Server::start(&["--listen", &listen, "--public-url", &issuer]);
    let one = register(&s, "app-one", "App One", free_port());
    let two = register(&s, "app-two", "App Two", free_port());
    let apache = Apache::start(&issuer, &[&one, &two]);
    let b = browser_with(1000, 900, false, &[])?;
    Some((s, issuer, one, two, apache, b))
}

#[test]
fn apache_mod_auth_openidc_signs_in_through_mfad_and_the_second_app_needs_no_prompt() {
    let Some((s, issuer, one, two, apache, b)) = single_sign_on() else {
        return;
    };
    let email = "ana@example.com";
    s.add_user(email, PASSWORD);
    // TOTP on, through the API; the browser then signs in with password and a code.
    let r = s.post(
        "/api/auth",
        None,
        &serde_json::json!({"email": email, "password": PASSWORD}),
    );
    let token = r.json()["token"].as_str().unwrap().to_string();
    let (secret, step, _) = enable(&s, &token);
    b.goto(&one.url("/protected/index.shtml"));
    // mfad's page, for this app by its registered name.
    b.wait_shown("#signin-email");
    assert!(
        b.url().starts_with(&format!("{issuer}/?rd=")),
        "{}",
        b.url()
    );
    b.wait("document.body.innerText.includes('Sign in to continue to App One')");
    sign_in_with_password(&b, email);
    // A code of a later step than enable's: one is never accepted twice.
    while now() / 30 <= step {
        std::thread::sleep(Duration::from_millis(200));
    }
    answer_second_step(&b, "totp", &code_at(&secret, now()));
    b.wait("document.getElementById('who') !== null");
    assert!(
        b.url().starts_with(&one.url("/protected/")),
        "{} ({})",
        b.url(),
        apache.log()
    );
    assert_eq!(b.text("#who"), email, "{}", apache.log());
    // The second app: no sign-in screen, the same person.
    b.goto(&two.url("/protected/index.shtml"));
    b.wait("document.getElementById('who') !== null");
    assert_eq!(b.text("#who"), email, "{}", apache.log());
    let (_, trail, _) = s.cli(&["audit"], None);
    assert!(
        trail.contains("oidc_authorized (client app-one)"),
        "{trail}"
    );
    assert!(
        trail.contains("oidc_authorized (client app-two)"),
        "{trail}"
    );
    // The module's logout: it sends the browser to mfad's end_session_endpoint with
    // its ID token; mfad ends the session and sends it back to the registered page.
    let after = one.url("/loggedout.html");
    b.goto(&one.url(&format!("/protected/redirect_uri?logout={}", enc(&after))));
    b.wait("document.getElementById('out') !== null");
    assert_eq!(b.url(), after, "{}", apache.log());
    // mfad's session is over: the first app sends the browser to sign in again.
    b.goto(&one.url("/protected/index.shtml"));
    b.wait_shown("#signin-email");
    assert!(
        b.url().starts_with(&format!("{issuer}/?rd=")),
        "{}",
        b.url()
    );
    let (_, trail, _) = s.cli(&["audit"], None);
    assert!(trail.contains("  logout"), "{trail}");
}

/// `s` percent-encoded for a query value.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A person with a password only, at an app that asks for two factors: the page says
/// so, they add a passkey (Chromium's virtual authenticator), sign in with it, and the
/// app has them.
#[test]
fn a_two_factor_app_waits_for_a_passkey_and_then_signs_in_with_it() {
    let Some((s, issuer, one, _two, apache, b)) = single_sign_on() else {
        return;
    };
    let email = "bo@example.com";
    s.add_user(email, PASSWORD);
    b.goto(&one.url("/protected/index.shtml"));
    b.wait_shown("#signin-email");
    sign_in_with_password(&b, email);
    b.wait_shown("#passkey-name");
    assert!(
        b.url().starts_with(&format!("{issuer}/?rd=")),
        "{}",
        b.url()
    );
    assert!(
        b.text("main").contains("App One asks for a second step"),
        "{}",
        b.text("main")
    );
    let authenticator = b.add_virtual_authenticator();
    b.type_into("#passkey-name", "Laptop");
    b.click("#passkey-add-submit");
    b.wait_shown("#signin-email");
    assert_eq!(
        b.text("#msg-signin"),
        "Your passkey is added. Sign in again with it to continue to App One."
    );
    assert_eq!(b.credentials(&authenticator).len(), 1);
    b.click("#passkey-signin");
    b.wait("document.getElementById('who') !== null");
    assert_eq!(b.text("#who"), email, "{}", apache.log());
}
