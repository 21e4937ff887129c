//! What an operator relies on without looking: the shipped systemd unit lets the
//! password lane lower its priority, a failed `setpriority`/`setrlimit` is said in the
//! log, and the HTTP layer's own warnings and errors reach the log.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const UNIT: &str = include_str!("../../systemd/mfad.service");

/// Whether a tool is on PATH; under `CI=true` a missing one fails the test.
pub(crate) fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing, and CI must have it (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

fn unit_lines() -> Vec<&'static str> {
    UNIT.lines().map(str::trim).collect()
}

#[test]
fn the_unit_takes_setpriority_back_from_the_resources_group() {
    let lines = unit_lines();
    let deny = lines
        .iter()
        .position(|l| *l == "SystemCallFilter=~@privileged @resources")
        .expect("the unit denies @privileged and @resources");
    let allow = lines
        .iter()
        .position(|l| *l == "SystemCallFilter=setpriority")
        .expect("the unit allows setpriority again");
    // systemd applies SystemCallFilter= lines in order: the allow must come after the deny.
    assert!(
        allow > deny,
        "SystemCallFilter=setpriority must follow the deny line"
    );
    if !have("systemd-analyze") {
        return;
    }
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "@resources"])
        .output()
        .unwrap();
    let group = String::from_utf8_lossy(&out.stdout);
    let calls: Vec<&str> = group.lines().map(str::trim).collect();
    assert!(
        calls.contains(&"setpriority") && calls.contains(&"setrlimit"),
        "@resources as this systemd defines it: {group}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/mfad.service"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let resources = report
        .lines()
        .find(|l| l.contains("SystemCallFilter=~@resources"))
        .unwrap_or_else(|| panic!("no @resources line in:\n{report}"));
    assert!(resources.contains("setpriority"), "{resources}");
    let overall = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for mfad.service: ").nth(1))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    let exposure: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= 1.0, "exposure {exposure} > 1.0:\n{report}");
}

#[test]
fn the_unit_names_the_external_issuer_setting_it_means() {
    let lines = unit_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("#Environment=MFAD_JWT_EXTERNAL_ISSUER=https://")),
        "the external issuer example"
    );
    assert!(
        !lines.iter().any(|l| l.contains("MFAD_JWT_ISSUER=https://")),
        "MFAD_JWT_ISSUER is mfad's own `iss`, not the external issuer's"
    );
}

/// `(thread name, nice value)` of every thread of `pid`, from `/proc/<pid>/task/*/stat`.
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        // `pid (comm) state …`: the name may hold spaces, so split after the last ')'.
        let (name, rest) = stat.rsplit_once(") ").unwrap();
        let name = name.split_once(" (").unwrap().1.to_string();
        // Fields after comm start at field 3 (state); nice is field 19.
        let nice: i64 = rest
            .split_whitespace()
            .nth(19 - 3)
            .unwrap()
            .parse()
            .unwrap();
        out.push((name, nice));
    }
    out
}

#[test]
fn the_password_lane_runs_at_nice_5_and_the_workers_do_not() {
    let s = Server::start(&[]);
    // A thread takes its name, and a lane thread its priority, as its first acts; give
    // just-started ones a moment (under load, a read can find them still unnamed).
    let deadline = Instant::now() + Duration::from_secs(5);
    let threads = loop {
        let threads = thread_nice(s.pid());
        let named = |prefix: &str| threads.iter().any(|(n, _)| n.starts_with(prefix));
        let settled = named("mfad-slow")
            && named("mfad-worker")
            && threads
                .iter()
                .filter(|(n, _)| n.starts_with("mfad-slow"))
                .all(|(_, nice)| *nice == 5);
        if settled || Instant::now() > deadline {
            break threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let slow: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("mfad-slow"))
        .collect();
    let workers: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("mfad-worker"))
        .collect();
    assert!(!slow.is_empty() && !workers.is_empty(), "{threads:?}");
    assert!(slow.iter().all(|(_, nice)| *nice == 5), "{threads:?}");
    assert!(workers.iter().all(|(_, nice)| *nice == 0), "{threads:?}");
}

/// Installs a seccomp filter in the child that makes `setpriority` and `setrlimit`
/// (and `prlimit64`, which glibc's `setrlimit` uses) fail with EPERM, as the systemd
/// unit's `~@resources` did to `setpriority` before it took it back; and lowers the
/// open-file soft limit so that mfad tries to raise it.
fn deny_resources(cmd: &mut Command) {
    let hook = || -> std::io::Result<()> {
        let ins = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
        let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        let ret = (libc::BPF_RET | libc::BPF_K) as u16;
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        // struct seccomp_data: nr at offset 0, args[2] at 32 (low half) and 36 (high).
        let (allow, deny) = (libc::SECCOMP_RET_ALLOW, eperm);
        let mut prog = [
            /* 0 */ ins(ld, 0, 0, 0),
            /* 1 */ ins(jeq, libc::SYS_setpriority as u32, 7, 0),
            /* 2 */ ins(jeq, libc::SYS_setrlimit as u32, 6, 0),
            // glibc's setrlimit and getrlimit are prlimit64, with and without a new limit.
            /* 3 */
            ins(jeq, libc::SYS_prlimit64 as u32, 1, 0),
            /* 4 */ ins(ret, allow, 0, 0),
            /* 5 */ ins(ld, 32, 0, 0),
            /* 6 */ ins(jeq, 0, 0, 2),
            /* 7 */ ins(ld, 36, 0, 0),
            /* 8 */ ins(jeq, 0, 1, 0),
            /* 9 */ ins(ret, deny, 0, 0),
            /* 10 */ ins(ret, allow, 0, 0),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: plain libc calls in the child between fork and exec, on data owned here.
        unsafe {
            let mut lim: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_cur.min(lim.rlim_max).min(512);
            if lim.rlim_max <= lim.rlim_cur {
                lim.rlim_max = lim.rlim_cur + 1;
            }
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe system calls.
    unsafe { cmd.pre_exec(hook) };
}

#[test]
fn a_refused_setpriority_or_setrlimit_is_a_warning_not_silence() {
    let s = Server::start_with(&[], deny_resources);
    assert!(
        s.log_has("<4>setpriority failed (Operation not permitted"),
        "{:#?}",
        s.log()
    );
    assert!(
        s.log_has("<4>setrlimit failed (Operation not permitted"),
        "{:#?}",
        s.log()
    );
    // Still serving, at the workers' priority.
    assert_eq!(s.get("/healthz", None).status, 200);
    let threads = thread_nice(s.pid());
    assert!(
        threads
            .iter()
            .filter(|(n, _)| n.starts_with("mfad-slow"))
            .all(|(_, nice)| *nice == 0),
        "{threads:?}"
    );
}

/// Out of file descriptors, `accept()` fails with EMFILE; the vendored HTTP layer logs
/// that as an error, which must reach the log (it used to be dropped for not being
/// mfad's own target).
#[test]
fn the_http_layers_errors_reach_the_log() {
    let s = Server::start_with(&[], |cmd| {
        let hook = || {
            // SAFETY: setrlimit in the child before exec, on a struct owned here.
            unsafe {
                let lim = libc::rlimit {
                    rlim_cur: 48,
                    rlim_max: 48,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        };
        // SAFETY: the hook only makes an async-signal-safe system call.
        unsafe { cmd.pre_exec(hook) };
    });
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s
        .log()
        .iter()
        .any(|l| l.contains("Error accepting new client"))
    {
        assert!(
            Instant::now() < deadline,
            "no accept error logged: {:#?}",
            s.log()
        );
        for _ in 0..8 {
            if let Ok(mut c) = TcpStream::connect(s.addr) {
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
                held.push(c);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = s
        .log()
        .into_iter()
        .find(|l| l.contains("Error accepting new client"))
        .unwrap();
    assert!(line.starts_with("<3>"), "{line}");
    // Once the connections go, it serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = std::panic::catch_unwind(|| s.get("/healthz", None)) {
            assert_eq!(r.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `mfad backup --to` never writes where another user could swap the name: a directory
/// others can write is refused (nothing is left in it), a sticky one of ours is used,
/// and a name that is a symlink (to an existing file, or dangling) is never written
/// through (#23: the target was created, closed, then reopened by name).
#[test]
fn a_backup_refuses_a_directory_others_can_write_and_never_follows_a_symlink() {
    if sqlite_only("mfad backup (a copy of the database file)") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(&[]);
    s.add_user("a@example.com", "correct horse battery");
    let out = tempfile::tempdir().unwrap();
    let open = out.path().join("shared");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = open.join("copy.db");
    let (ok, _, err) = s.cli(&["backup", "--to", target.to_str().unwrap()], None);
    assert!(
        !ok && err.contains("other users can write in this directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "nothing left");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (ok, printed, err) = s.cli(&["backup", "--to", target.to_str().unwrap()], None);
    assert!(ok && printed.contains("integrity check ok"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&open)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["copy.db"], "no temporary file left beside it");

    let victim = out.path().join("theirs");
    std::fs::write(&victim, b"not a database").unwrap();
    let link = out.path().join("link.db");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let dangling = out.path().join("dangling.db");
    std::os::unix::fs::symlink(out.path().join("nowhere"), &dangling).unwrap();
    for name in [&link, &dangling] {
        let (ok, _, err) = s.cli(&["backup", "--to", name.to_str().unwrap()], None);
        assert!(
            !ok && err.contains("exists: a backup never overwrites"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"not a database");
    assert!(!out.path().join("nowhere").exists());
}

/// `mfad backup` while a client keeps writing: the copy, restored with the same key,
/// accepts every token and code the original accepted when it was taken (refresh tokens,
/// access tokens, unused backup codes, TOTP), and a second backup to the same file is
/// refused.
#[test]
fn a_backup_taken_under_write_load_restores_what_was_accepted_then() {
    if sqlite_only("mfad backup (a copy of the database file)") {
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use serde_json::json;

    use super::{challenge, enable, verify, PASSWORD, REFRESH, STATUS};

    let s = Server::start(&[]);
    struct Held {
        email: String,
        secret: String,
        unused_codes: Vec<String>,
        refresh_token: String,
        access_token: String,
    }
    let mut held = Vec::new();
    for i in 0..3 {
        let email = format!("held{i}@example.com");
        s.add_user(&email, PASSWORD);
        let (secret, _, codes) = enable(&s, &s.token(&email));
        let r = verify(&s, &challenge(&s, &email), &codes[0]);
        assert_eq!(r.status, 200, "{}", r.text());
        held.push(Held {
            email,
            secret,
            unused_codes: codes[1..].to_vec(),
            refresh_token: r.json()["refresh_token"].as_str().unwrap().to_string(),
            access_token: r.json()["token"].as_str().unwrap().to_string(),
        });
    }
    let load_token = s.token("load@example.com");
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("mfad-backup.db");
    let (stop, writes) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (during, backup) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let r = s.post("/api/v1/me/mfa/totp/setup", Some(&load_token), &json!({}));
                assert_eq!(r.status, 200, "{}", r.text());
                writes.fetch_add(1, Ordering::Relaxed);
            }
        });
        while writes.load(Ordering::Relaxed) < 20 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = writes.load(Ordering::Relaxed);
        let backup = s.cli(&["backup", "--to", copy.to_str().unwrap()], None);
        let during = writes.load(Ordering::Relaxed) - before;
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        (during, backup)
    });
    let (ok, printed, err) = backup;
    assert!(ok, "{err}");
    assert!(printed.contains("integrity check ok"), "{printed}");
    let size = std::fs::metadata(&copy).unwrap().len();
    assert!(printed.contains(&format!(": {size} bytes")), "{printed}");
    eprintln!(
        "backup: {size} bytes, {during} setups answered while it ran, {} in all",
        writes.load(Ordering::Relaxed)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, _, err) = s.cli(&["backup", "--to", copy.to_str().unwrap()], None);
    assert!(
        !ok && err.contains("exists: a backup never overwrites a file"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&copy).unwrap().len(),
        size,
        "left as it was"
    );

    // Restore: the copy as mfad.db beside the same key, in a new data directory.
    let restored_dir = out.path().join("restored");
    std::fs::create_dir(&restored_dir).unwrap();
    std::fs::set_permissions(&restored_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(s.dir.join("mfad.key"), restored_dir.join("mfad.key")).unwrap();
    std::fs::copy(&copy, restored_dir.join("mfad.db")).unwrap();
    drop(s);
    let r = Server::start_in(&restored_dir, &[]);
    for h in &held {
        assert_eq!(
            r.get(STATUS, Some(&h.access_token)).status,
            200,
            "{}",
            h.email
        );
        let refreshed = r.post(REFRESH, None, &json!({ "refresh_token": h.refresh_token }));
        assert_eq!(refreshed.status, 200, "{}: {}", h.email, refreshed.text());
        let by_code = verify(&r, &challenge(&r, &h.email), &h.unused_codes[0]);
        assert_eq!(by_code.status, 200, "{}: {}", h.email, by_code.text());
        // The next step's code: the enable's step was accepted already (replay rule).
        let next = code_at(&h.secret, now() + 30);
        let by_totp = verify(&r, &challenge(&r, &h.email), &next);
        assert_eq!(by_totp.status, 200, "{}: {}", h.email, by_totp.text());
    }
}

/// `mfad audit`: the whole trail or one account's, from a time on, as text or JSON lines
/// with RFC 3339 times; `user show` prints the same times.
#[test]
fn the_audit_command_reads_the_trail_as_text_or_json_lines() {
    use super::PASSWORD;

    let s = Server::start(&[]);
    s.add_user("ann@example.com", PASSWORD);
    s.add_user("bob@example.com", PASSWORD);
    let wrong = serde_json::json!({ "email": "ann@example.com", "password": "nope" });
    assert_eq!(s.post("/api/auth", None, &wrong).status, 401);
    let (ok, out, err) = s.cli(&["audit"], None);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("account 1 (ann@example.com)  account_created (by mfad user add)"));
    assert!(
        lines[2].contains("account 1 (ann@example.com)  login_failed"),
        "{out}"
    );
    let stamp = &lines[0][..20];
    assert!(
        mfad::time::parse_rfc3339(stamp).is_some() && stamp.ends_with('Z'),
        "{stamp}"
    );

    let (ok, out, _) = s.cli(&["audit", "--email", "bob@example.com", "--json"], None);
    assert!(ok);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["email"], "bob@example.com");
    assert_eq!(rows[0]["event"], "account_created");
    let at = mfad::time::parse_rfc3339(rows[0]["time"].as_str().unwrap()).unwrap();
    assert!((at - now() as i64).abs() < 60);

    let tomorrow = mfad::time::rfc3339(now() as i64 + 86_400);
    let (ok, out, _) = s.cli(&["audit", "--since", &tomorrow], None);
    assert!(ok && out.is_empty(), "{out}");
    let (ok, out, _) = s.cli(&["audit", "--since", "2000-01-01"], None);
    assert!(ok && out.lines().count() == 3, "{out}");
    let (ok, _, err) = s.cli(&["audit", "--since", "yesterday"], None);
    assert!(!ok && err.contains("--since"), "{err}");
    let (ok, _, err) = s.cli(&["user", "list", "--json"], None);
    assert!(!ok && err.contains("belong to mfad audit"), "{err}");
    let (_, shown, _) = s.cli(&["user", "show", "--email", "ann@example.com"], None);
    assert!(
        shown.contains(&format!("    {}", &stamp[..11])),
        "RFC 3339 times: {shown}"
    );
}
