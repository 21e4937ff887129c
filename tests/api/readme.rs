//! What the README's first steps rely on: the banner naming the page at `localhost`,
//! and `user add` and `user passwd` refusing an email before they ask for a password (a
//! password typed twice for nothing was how a newcomer learnt that `mfad token` had
//! made the account).

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{database_env, Server, BIN};

/// What the newcomer types at the password prompt.
const PASSWORD: &str = "correct horse battery";

/// A pseudo-terminal: the master (the keyboard and screen) and the terminal a program
/// reads from.
fn pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; ptsname_r writes a
    // NUL-terminated name into the buffer it is given.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = File::from_raw_fd(fd);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string();
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        (master, terminal)
    }
}

/// The password prompts in `err`.
fn prompts(err: &str) -> usize {
    err.matches("New password: ").count() + err.matches("Again: ").count()
}

/// Waits up to 30 s for `child` to end by itself; a command that asks for a password
/// nobody types would wait for ever.
fn ends_by_itself(mut child: Child, what: &str) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still waiting after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
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
