//! Child processes: `mfad` (the build cargo made for this bench, or `--mfad PATH`, with
//! `--serve-arg`s) and the bare tiny_http server; their address from their first line of
//! stdout, the tail of their stderr, a clean stop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::opts::Opts;
use crate::Res;

pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// The last lines of its stderr, to show if something goes wrong.
    pub(crate) log: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    /// Spawns `cmd` and waits (at most 30 s) for `prefix ADDR` on its stdout.
    pub(crate) fn spawn(mut cmd: Command, prefix: &'static str) -> Res<(Proc, Duration)> {
        let t0 = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() == 40 {
                        l.pop_front();
                    }
                    l.push_back(line);
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
                let _ = tx.send(lines.next());
                for _ in lines {}
            });
        }
        let first = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let took = t0.elapsed();
        let mut proc = Proc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let Some(addr) = first
            .as_deref()
            .and_then(|l| l.trim().strip_prefix(prefix))
            .and_then(|a| a.parse().ok())
        else {
            return Err(format!(
                "{cmd:?} did not print its address (first line {first:?}); stderr:\n{}",
                proc.log_tail()
            ));
        };
        proc.addr = addr;
        Ok((proc, took))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then up to 10 s for it to exit (then SIGKILL).
    pub(crate) fn stop(mut self) -> String {
        // SAFETY: signals our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return format!("{status} after SIGTERM, {:.0} ms", ms(t.elapsed()))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return format!("wait failed: {e}"),
            }
        }
        let _ = self.child.kill();
        "did not stop within 10 s of SIGTERM: killed".into()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn mfad_command(opts: &Opts, dir: &Path) -> Command {
    let mut cmd = Command::new(opts.mfad_bin());
    cmd.arg("--data-dir").arg(dir);
    // Settings come from our flags only.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MFAD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("STATE_DIRECTORY")
        .env_remove("CREDENTIALS_DIRECTORY");
    if let Some(url) = crate::seed::database_url(dir) {
        cmd.env("MFAD_DATABASE_URL", url);
    }
    cmd
}

/// `mfad serve` on `dir` with the bench's flags, then `extra`, then the `--serve-arg`s.
pub(crate) fn spawn_mfad(
    opts: &Opts,
    dir: &Path,
    workers: usize,
    extra: &[&str],
) -> Res<(Proc, Duration)> {
    let mut cmd = mfad_command(opts, dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--workers"])
        .arg(workers.to_string())
        // The default log level (info: one access line per request, as deployed).
        .args(["--login-rate", "0"])
        .args(extra)
        .args(&opts.serve_args);
    Proc::spawn(cmd, "mfad listening on http://")
}

/// `mfad token` for an account (created without a password).
pub(crate) fn cli_token(opts: &Opts, dir: &Path, email: &str) -> Res<String> {
    let out = mfad_command(opts, dir)
        .args(["token", "--email", email, "--ttl", "7200"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("mfad token: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mfad token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
