//! The HTTP load section: the ceiling (before and after), then mfad's endpoints one
//! figure at a time on one seeded data directory, and what the load left behind.

use std::cell::Cell;
use std::process::Command;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::bench::Bench;
use crate::jobs::{
    forward_auth_request, http_request, post_json, Fixed, Items, Job, Login, Outcome, Pair,
    Refresh, Refused, TokenPool, Verify,
};
use crate::opts::Opts;
use crate::procfs::proc_status_kb;
use crate::procs::{cli_token, spawn_mfad, Proc};
use crate::run::{connection, RunResult};
use crate::seed::Seeder;
use crate::sessions;
use crate::start::start_once;
use crate::stats::{spread, Spread};
use crate::{Res, PASSWORD};

pub(crate) struct LoadOut {
    pub(crate) mfad_hwm_kb: Option<u64>,
    pub(crate) bare_hwm_kb: Option<u64>,
    pub(crate) setup_body_bytes: Option<usize>,
    pub(crate) stop: Option<String>,
    pub(crate) hwm_after: Vec<(String, u64)>,
    /// Spawn → first 200 on the data directory the load left behind, and its size.
    pub(crate) start_loaded: Option<(Spread, u64)>,
}

/// The seeded sections size their next run's items by the fastest run so far.
fn keep_highest_rate(rate: &Cell<f64>, r: &RunResult) {
    if r.rate().is_finite() {
        rate.set(rate.get().max(r.rate()));
    }
}

pub(crate) fn load(opts: &Opts, b: &mut Bench<'_>) -> Res<LoadOut> {
    let mut out = LoadOut {
        mfad_hwm_kb: None,
        bare_hwm_kb: None,
        setup_body_bytes: None,
        stop: None,
        hwm_after: Vec::new(),
        start_loaded: None,
    };
    let mut none = |_: &RunResult| {};
    let refused: Refused = Arc::default();
    // The ceiling is measured before and after mfad, its runs pooled, so that a passing
    // disturbance weighs less on the ratios.
    let bare = if opts.want("ceiling") {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.args(["--bare-server", "--workers", &opts.workers.to_string()]);
        let (bare, _) = Proc::spawn(cmd, "bare listening on http://")?;
        eprintln!(
            "ceiling: bare tiny_http on {} (pid {})",
            bare.addr,
            bare.pid()
        );
        b.ceiling(&bare)?;
        Some(bare)
    } else {
        None
    };
    let mfad_sections = [
        "healthz",
        "status",
        "forward-auth",
        "setup",
        "verify",
        "login",
        "refresh",
        "pair",
    ];
    if !mfad_sections.iter().any(|s| opts.want(s)) {
        if let Some(bare) = bare {
            out.bare_hwm_kb = proc_status_kb(bare.pid(), "VmHWM");
            bare.stop();
        }
        return Ok(out);
    }

    let tmp = tempfile::Builder::new()
        .prefix("mfad-loadgen-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let dir = tmp.path().join("data");
    eprintln!("seeding {} ...", dir.display());
    let mut seeder = Seeder::open(&dir)?;
    let (server, _) = spawn_mfad(opts, &dir, opts.workers, &sessions::FORWARD_AUTH_FLAGS)?;
    let (addr, pid) = (server.addr, server.pid());
    eprintln!("mfad on {addr} (pid {pid}), {} workers", opts.workers);
    let result = (|| -> Res<()> {
        let hwm = |name: &str, out: &mut LoadOut| {
            if let Some(kb) = proc_status_kb(pid, "VmHWM") {
                out.hwm_after.push((name.to_string(), kb));
            }
        };
        // Bearer tokens from `mfad token`, one passwordless account per connection.
        let tokens: Vec<String> = (0..opts.max_conns())
            .map(|i| cli_token(opts, &dir, &format!("user{i}@example.com")))
            .collect::<Res<_>>()?;
        // Sanity: the responses are what the workloads expect.
        let mut conn = connection(addr);
        let setup_req = http_request("POST", "/api/v1/me/mfa/totp/setup", Some(&tokens[0]), None);
        match conn.request(&setup_req) {
            Ok(r) if r.status == 200 => {
                let v = r.try_json().unwrap_or(Value::Null);
                let ok = ["secret", "otpauthUri", "qrCode"]
                    .iter()
                    .all(|k| v.get(k).is_some_and(Value::is_string));
                if !ok {
                    return Err(format!("setup answered an unexpected body: {v}"));
                }
                out.setup_body_bytes = Some(r.body.len());
            }
            other => {
                let other = other.map(|r| r.status);
                return Err(format!("setup answered {other:?}: {}", server.log_tail()));
            }
        }
        hwm("start", &mut out);

        // One session per connection, as one browser each.
        let sessions = match opts.want("forward-auth") {
            true => sessions::session_cookies(addr, &mut seeder, opts.max_conns())?,
            false => Vec::new(),
        };
        for (name, path) in [
            ("healthz", "/healthz"),
            ("status", "/api/v1/me/mfa/status"),
            ("forward-auth", "/api/authz/forward-auth"),
            ("setup", "/api/v1/me/mfa/totp/setup"),
        ] {
            if !opts.want(name) {
                continue;
            }
            let method = if name == "setup" { "POST" } else { "GET" };
            let reqs: Vec<Vec<u8>> = match name {
                "forward-auth" => sessions.iter().map(|s| forward_auth_request(s)).collect(),
                _ => tokens
                    .iter()
                    .map(|t| {
                        let bearer = (name != "healthz").then_some(t.as_str());
                        http_request(method, path, bearer, None)
                    })
                    .collect(),
            };
            b.figure(
                name,
                addr,
                pid,
                true,
                &mut |n| {
                    Ok((0..n)
                        .map(|i| Box::new(Fixed(reqs[i % reqs.len()].clone())) as Box<dyn Job>)
                        .collect())
                },
                &mut none,
            )?;
            hwm(name, &mut out);
        }

        if opts.want("verify") {
            // Seeded per run: enough items for the last rate seen, with a margin.
            let rate = Cell::new(5000.0f64);
            let secs = opts.secs.max(opts.warmup);
            b.figure(
                "verify",
                addr,
                pid,
                true,
                &mut |n| {
                    let want = ((rate.get() * secs * 1.5) as usize + 8 * n + 200).min(300_000);
                    let items = Arc::new(Items {
                        list: seeder.totp_items(want, true)?,
                        next: AtomicUsize::new(0),
                    });
                    Ok((0..n)
                        .map(|_| {
                            Box::new(Verify {
                                items: items.clone(),
                                refused: refused.clone(),
                            }) as Box<dyn Job>
                        })
                        .collect())
                },
                &mut |r| keep_highest_rate(&rate, r),
            )?;
            hwm("verify", &mut out);
        }

        let pool: TokenPool = Arc::new(Mutex::new(Vec::new()));
        if opts.want("login") || opts.want("refresh") {
            let emails = seeder.password_accounts(opts.max_conns())?;
            let login_jobs = |n: usize| -> Vec<Box<dyn Job>> {
                (0..n)
                    .map(|i| {
                        let body = serde_json::json!({ "email": emails[i % emails.len()], "password": PASSWORD });
                        Box::new(Login {
                            req: post_json("/api/auth", None, &body),
                            pool: pool.clone(),
                        }) as Box<dyn Job>
                    })
                    .collect()
            };
            if opts.want("login") {
                b.figure(
                    "login",
                    addr,
                    pid,
                    false,
                    &mut |n| Ok(login_jobs(n)),
                    &mut none,
                )?;
                hwm("login", &mut out);
            }
            if opts.want("refresh") {
                // Every connection needs a refresh token to start its chain.
                let have = pool.lock().map_or(0, |p| p.len());
                if have < opts.max_conns() {
                    let need = opts.max_conns() - have;
                    eprintln!("  logging in {need} times for refresh tokens ...");
                    let mut jobs = login_jobs(need.min(8));
                    let mut conn = connection(addr);
                    let mut scratch = Vec::new();
                    for i in 0..need * 2 {
                        if pool.lock().map_or(0, |p| p.len()) >= opts.max_conns() {
                            break;
                        }
                        let j = i % jobs.len();
                        if let Outcome::Bad(e) | Outcome::Io(e) =
                            jobs[j].once(&mut conn, &mut scratch)
                        {
                            return Err(format!("login for refresh tokens: {e}"));
                        }
                    }
                }
                b.figure(
                    "refresh",
                    addr,
                    pid,
                    true,
                    &mut |n| {
                        Ok((0..n)
                            .map(|_| {
                                Box::new(Refresh {
                                    token: None,
                                    pool: pool.clone(),
                                }) as Box<dyn Job>
                            })
                            .collect())
                    },
                    &mut none,
                )?;
                hwm("refresh", &mut out);
            }
        }

        if opts.want("pair") {
            let rate = Cell::new(15.0f64);
            let secs = opts.secs;
            b.figure(
                "pair",
                addr,
                pid,
                false,
                &mut |n| {
                    let want = (rate.get() * secs * 2.0) as usize + 2 * n + 20;
                    let items = Arc::new(Items {
                        list: seeder.totp_items(want, false)?,
                        next: AtomicUsize::new(0),
                    });
                    Ok((0..n)
                        .map(|_| {
                            Box::new(Pair {
                                items: items.clone(),
                                pool: pool.clone(),
                            }) as Box<dyn Job>
                        })
                        .collect())
                },
                &mut |r| keep_highest_rate(&rate, r),
            )?;
            hwm("pair", &mut out);
        }
        Ok(())
    })();
    out.mfad_hwm_kb = proc_status_kb(pid, "VmHWM");
    let code_errors = b
        .groups
        .iter()
        .filter(|g| matches!(g.name, "verify" | "pair"))
        .any(|g| g.errors() > 0);
    if code_errors {
        b.notes.push(format!(
            "audit events in mfad's database (why verify refused): {}",
            seeder.audit_summary()
        ));
        for (email, step) in refused.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            b.notes.push(format!(
                "refused: {email}, code of step {step}: {}",
                seeder.account_state(email)
            ));
        }
    }
    if let Err(e) = result {
        return Err(format!("{e}\nmfad stderr:\n{}", server.log_tail()));
    }
    let tail = server.log_tail();
    out.stop = Some(server.stop());
    if opts.want("start") {
        // mfad checks the database at start (PRAGMA quick_check): a bigger file, a
        // slower start.
        let bytes: u64 = ["mfad.db", "mfad.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum();
        let mut v = Vec::new();
        for _ in 0..opts.runs.min(3) {
            v.push(start_once(opts, &dir)?.1);
        }
        out.start_loaded = Some((spread(&v), bytes));
    }
    if let Some(bare) = bare {
        eprintln!("ceiling again ...");
        b.ceiling(&bare)?;
        out.bare_hwm_kb = proc_status_kb(bare.pid(), "VmHWM");
        bare.stop();
    }
    // Warnings and errors only (journald priorities 0 to 4), not an access log that
    // --serve-arg may have turned on.
    let serious: Vec<&str> = tail
        .lines()
        .filter(|l| matches!(l.get(..3), Some("<0>" | "<1>" | "<2>" | "<3>" | "<4>")))
        .collect();
    if !serious.is_empty() {
        b.notes.push(format!(
            "mfad's last warnings and errors on stderr:\n    {}",
            serious.join("\n    ")
        ));
    }
    Ok(out)
}
