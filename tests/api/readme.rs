//! The README's first steps, run as a newcomer runs them on a fresh clone: the server
//! started as "## Two commands" starts it, then every shell block of "## First steps"
//! typed, command by command, into one shell in a second terminal in the same
//! directory, with a password typed where one is asked for and the six digits an
//! authenticator app would show (from the tests' own TOTP) in place of the README's
//! `123456`; then what "## The page" says of the running server. And what those steps
//! rely on: the banner naming the page at `localhost`, and `user add` / `user passwd`
//! refusing an email before they ask for a password.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::terminal::{ends_by_itself, prompts, pty, Started, Terminal};
use crate::common::{code_at, database_env, decode_qr, now, request, Server, BIN};
use crate::settings::{readme, section};

/// What the newcomer types at the password prompt.
const PASSWORD: &str = "correct horse battery";

/// The one change made to the README's commands, the code typed for `123456` aside:
/// `cargo run --release [-q] --` builds and runs this crate's binary, which `cargo
/// test` has built already (`BIN`). Cargo itself, from inside a test, would wait on the
/// build directory's lock that the test run holds, and then build a second, release
/// copy.
const CARGO_RUN: [&str; 3] = [
    "cargo run --release -q --",
    "cargo run --release --",
    "cargo run --release",
];

fn as_run_here(command: &str) -> String {
    let mut here = command.to_string();
    let mut rest = command.to_string();
    for c in CARGO_RUN {
        here = here.replace(c, &format!("'{BIN}'"));
        rest = rest.replace(c, "");
    }
    assert!(
        !rest.contains("cargo"),
        "a first step runs cargo otherwise than `cargo run --release [-q] [--]`: {command}"
    );
    here
}

/// The bodies of the ```sh blocks of `text`, in order.
fn sh_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + "```sh\n".len()..];
        let end = body
            .find("\n```")
            .expect("a ```sh block that is never closed");
        blocks.push(&body[..end + 1]);
        rest = &body[end + "\n```".len()..];
    }
    blocks
}

/// The commands of a block, one a line; a line ending in `\` goes on with the next, as
/// the shell reads it. Blank lines and comment lines are no commands.
fn commands(block: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        current.push_str(line);
        if line.ends_with('\\') {
            current.push('\n');
            continue;
        }
        let command = std::mem::take(&mut current);
        if !command.trim().is_empty() && !command.trim_start().starts_with('#') {
            all.push(command);
        }
    }
    assert!(current.is_empty(), "a block ends in `\\`: {block}");
    all
}

/// `sh` as the newcomer's terminal runs it: in `dir`, in [`newcomer`]'s environment.
fn sh(dir: &Path, data: &Path, home: &Path) -> Command {
    let mut cmd = Command::new("sh");
    newcomer(&mut cmd, data, home);
    cmd.current_dir(dir);
    cmd
}

/// The environment of a newcomer's terminal: none of the developer's `MFAD_*`
/// settings, systemd's directories or proxies; the database of data directory `data`
/// (a PostgreSQL one on the PostgreSQL run); curl's configuration from `home`.
fn newcomer(cmd: &mut Command, data: &Path, home: &Path) {
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy().to_ascii_lowercase();
        if name.starts_with("mfad_") || name.ends_with("_proxy") {
            cmd.env_remove(&k);
        }
    }
    cmd.env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("CURL_HOME", home)
        .envs(database_env(data));
}

#[test]
fn the_first_steps_run_as_written_on_a_fresh_data_directory() {
    if Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, and the README's first steps need curl"
        );
        eprintln!("SKIPPED: the README's first steps need curl");
        return;
    }
    let doc = readme();
    let serve = commands(sh_blocks(section(&doc, "Two commands"))[0])[0].clone();
    assert_eq!(
        serve.split('#').next().unwrap().trim(),
        "cargo run --release",
        "the first of the two commands starts the server"
    );
    let first = section(&doc, "First steps");
    let page_line = first
        .split("`mfad page on ")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .expect("## First steps names the banner's page line: `mfad page on URL`");
    let steps: Vec<String> = sh_blocks(first).into_iter().flat_map(commands).collect();

    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("clone");
    // Where curl finds its configuration (CURL_HOME), and the FIFO the terminal reads.
    let home = tmp.path().join("home");
    std::fs::create_dir(&clone).unwrap();
    std::fs::create_dir(&home).unwrap();
    // "data in ./data": the directory the commands run in.
    let data = clone.join("data");

    // 8080 may be taken (by another test, another checkout's server): this server
    // listens on a port of its own, and curl, which the README points at
    // localhost:8080, is told where that is in its own configuration (below). The
    // commands stay as written.
    let mut serving = sh(&clone, &data, &home);
    serving
        .args(["-c", &as_run_here(&serve)])
        .env("MFAD_LISTEN", "127.0.0.1:0");
    let server = Started::start(serving);
    let port: u16 = server.banner[0]
        .strip_prefix("mfad listening on http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the banner's first line: {:?}", server.banner));
    assert_eq!(
        server.banner,
        [
            format!("mfad listening on http://127.0.0.1:{port}"),
            format!(
                "mfad page on {}",
                page_line.replace(":8080/", &format!(":{port}/"))
            ),
        ],
        "the banner the README shows (its 8080 being this server's port)"
    );
    assert!(
        data.join("mfad.key").exists(),
        "the first start creates ./data"
    );
    std::fs::write(
        home.join(".curlrc"),
        format!("connect-to = \"localhost:8080:127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let mut terminal = Terminal::open(sh(&clone, &data, &home), &home.join("typed"), PASSWORD);
    let (mut email, mut secret, mut enabled_at) = (None, None, None);
    let mut seen = Vec::new();
    for step in &steps {
        let command = as_run_here(step);
        let named = step
            .split("--email ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(|e| e.trim_end_matches(')'));
        if let (Some(e), Some(before)) = (named, &email) {
            assert_eq!(e, before, "the first steps are about one account");
        }
        email = named.map(String::from).or(email);
        if step.contains(" user add ") {
            let r = terminal.run(&command);
            let e = named.expect("user add names the email");
            assert_eq!(
                (r.status, prompts(&r.err)),
                (0, 2),
                "`{step}` asks for the password twice and adds the account \
                 (it fails when an earlier step made the account): {r:?}"
            );
            assert!(
                r.out.starts_with("added account ") && r.out.ends_with(&format!(" ({e})\n")),
                "{r:?}"
            );
            seen.push("user add");
        } else if step.starts_with("TOKEN=$(") && step.contains(" token ") {
            let r = terminal.run(&command);
            assert_eq!(
                (r.status, prompts(&r.err), r.out.as_str()),
                (0, 0, ""),
                "{r:?}"
            );
            // The test's own look at what the step left; not a README step.
            let token = terminal.run("printf %s \"$TOKEN\"");
            assert_eq!(
                token.out.split('.').count(),
                3,
                "no JWT in TOKEN: {token:?}"
            );
            seen.push("token");
        } else if step.contains("/api/v1/me/mfa/totp/setup") {
            let r = terminal.run(&command);
            assert_eq!(r.status, 0, "{r:?}");
            let v: Value = serde_json::from_str(&r.out)
                .unwrap_or_else(|e| panic!("`{step}` printed no JSON ({e}): {r:?}"));
            let e = email
                .as_deref()
                .expect("a step before setup names the account");
            let s = v["secret"]
                .as_str()
                .unwrap_or_else(|| panic!("{v}"))
                .to_string();
            let uri = format!("otpauth://totp/Storno:{e}?secret={s}&issuer=Storno");
            assert_eq!(v["otpauthUri"], uri.as_str());
            assert_eq!(decode_qr(v["qrCode"].as_str().unwrap()).2, uri);
            secret = Some(s);
            seen.push("setup");
        } else if step.contains("/api/v1/me/mfa/totp/enable") {
            let s = secret.as_deref().expect("setup comes before enable");
            // What the person reads off their app and types in place of the example.
            assert_eq!(step.matches("\"123456\"").count(), 1, "{step}");
            let at = now();
            let r = terminal.run(&command.replace("123456", &code_at(s, at)));
            assert_eq!(r.status, 0, "{r:?}");
            let v: Value = serde_json::from_str(&r.out)
                .unwrap_or_else(|e| panic!("`{step}` printed no JSON ({e}): {r:?}"));
            assert_eq!(v["enabled"], true, "{v}");
            let codes = v["backupCodes"].as_array().unwrap();
            assert_eq!(codes.len(), 10, "{v}");
            assert!(codes.iter().all(|c| c.as_str().unwrap().len() == 9), "{v}");
            enabled_at = Some(at);
            seen.push("enable");
        } else {
            panic!("a first step this test does not know how to check: {step}");
        }
    }
    assert_eq!(seen, ["user add", "token", "setup", "enable"]);
    drop(terminal);

    // "## The page": the running server serves it, a second start is refused, and the
    // password from above, then a code, signs in.
    let r = request(addr, "GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/html"));
    let second = sh(&clone, &data, &home)
        .args(["-c", &as_run_here(&serve)])
        .env("MFAD_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, err) = ends_by_itself(second, "a second cargo run --release");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is already serving from"), "{err}");
    let body = json!({"email": email.unwrap(), "password": PASSWORD}).to_string();
    let json = [("Content-Type", "application/json")];
    let v = request(addr, "POST", "/api/auth", &json, Some(&body)).json();
    assert_eq!(v["mfa_required"], true, "{v}");
    let code = code_at(secret.as_deref().unwrap(), enabled_at.unwrap() + 30);
    let body = json!({"mfaToken": v["mfa_token"], "code": code}).to_string();
    let r = request(addr, "POST", "/api/auth/mfa/verify", &json, Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["token"].is_string());
    drop(server);
}

#[test]
fn the_banner_names_the_page_at_localhost_or_the_public_url() {
    // The helper has read the first line (`mfad listening on http://127.0.0.1:PORT`,
    // which scripts read the port from) and the metrics one before it.
    let s = Server::start(&["--metrics-listen", "127.0.0.1:0"]);
    assert_eq!(s.page, format!("http://localhost:{}/", s.addr.port()));
    let s = Server::start(&["--public-url", "https://auth.example.com"]);
    assert_eq!(s.page, "https://auth.example.com/");
}

#[test]
fn user_add_and_passwd_refuse_an_email_before_asking_for_a_password() {
    let s = Server::start(&[]);
    s.token("dev@example.com");
    s.add_user("user@example.com", PASSWORD);
    let cases = [
        (
            ["user", "add", "--email", "dev@example.com"],
            "an account with email dev@example.com already exists without a password (mfad \
             token creates it so): give it a password with mfad user passwd --email \
             dev@example.com",
        ),
        (
            ["user", "add", "--email", "User@Example.com"],
            "an account with email user@example.com already exists: give it a new password \
             with mfad user passwd --email user@example.com",
        ),
        (
            ["user", "passwd", "--email", "nobody@example.com"],
            "no account with email nobody@example.com: add it with mfad user add --email \
             nobody@example.com",
        ),
    ];
    let start = |args: &[&str], stdin: Stdio| {
        Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(&s.dir)
            .envs(database_env(&s.dir))
            .env_remove("STATE_DIRECTORY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for (args, sentence) in cases {
        // At a terminal nobody types at, a prompt would wait for ever.
        let (_keyboard, terminal) = pty();
        let (code, err) = ends_by_itself(start(&args, Stdio::from(terminal)), &args.join(" "));
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(prompts(&err), 0, "it asked: {err}");
        assert_eq!(
            err.lines().last(),
            Some(format!("mfad: {sentence}").as_str())
        );
        // With --password-stdin on a pipe held open and empty, so would a read.
        let with_stdin = [&args[..], &["--password-stdin"]].concat();
        let (code, err) = ends_by_itself(start(&with_stdin, Stdio::piped()), &args.join(" "));
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(
            err.lines().last(),
            Some(format!("mfad: {sentence}").as_str())
        );
    }
    let (_, list, _) = s.cli(&["user", "list"], None);
    assert!(!list.contains("nobody@"), "{list}");
    // The advice works: the account mfad token made gets a password and signs in.
    let (ok, _, err) = s.cli(
        &[
            "user",
            "passwd",
            "--email",
            "dev@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(ok, "{err}");
    let r = s.post(
        "/api/auth",
        None,
        &json!({"email": "dev@example.com", "password": PASSWORD}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["token"].is_string());
}
