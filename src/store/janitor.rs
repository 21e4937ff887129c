//! Storage upkeep off the request path: WAL checkpoints on a connection of their own,
//! and the purge of expired challenges and refresh tokens. Started with the server,
//! stopped (and joined) after its workers.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Db;

/// How often the janitor copies the WAL back into the database file while there are
/// writes: small, frequent checkpoints kept verify's p99.9 at 24 ms where 200 ms gave
/// 40 ms and 5 s (the backstop then firing inside requests) 83 ms (load generator, 64
/// connections). It also bounds what a power cut can take at synchronous=NORMAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// How often it looks while nothing is written.
const IDLE_LOOK_EVERY: Duration = Duration::from_millis(500);
/// The shared connection's own automatic checkpoint mark (SQLite's default is 1,000).
const BACKSTOP_CHECKPOINT_PAGES: u32 = 20_000;
/// How often it deletes expired challenges and refresh tokens.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The running janitor; [`Janitor::stop`] ends it.
pub struct Janitor {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Janitor {
    /// Starts the janitor of `db`. Checkpoints run here, on a connection of their own,
    /// rather than inside whichever request's commit crossed SQLite's 1,000-page mark: a
    /// PASSIVE checkpoint takes no lock that writers wait for, so its copying and its
    /// fsync leave the request path. (The shared connection keeps an automatic
    /// checkpoint at a much higher mark, a backstop should this thread fall behind.)
    pub fn start(db: Arc<Db>, audit_retention_secs: i64) -> Result<Janitor, String> {
        let checkpoints = db.reopen().map_err(|e| e.to_string())?;
        db.set_autocheckpoint(BACKSTOP_CHECKPOINT_PAGES)
            .map_err(|_| "cannot configure the database (see the log above)".to_string())?;
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("mfad-janitor".into())
            .spawn(move || run(&db, &checkpoints, &stopped, audit_retention_secs))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Janitor { stop, handle })
    }

    /// Stops the janitor and waits for it.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.handle.join();
    }
}

fn run(db: &Db, checkpoints: &Db, stopped: &mpsc::Receiver<()>, audit_retention_secs: i64) {
    let mut last_purge = Instant::now();
    let mut checkpointed_at = db.commits();
    let mut wait = IDLE_LOOK_EVERY;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        let commits = db.commits();
        wait = IDLE_LOOK_EVERY;
        if commits != checkpointed_at {
            checkpointed_at = commits;
            wait = CHECKPOINT_EVERY;
            if let Err(e) = checkpoints.checkpoint() {
                log::warn!("WAL checkpoint failed: {e}");
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            let now = crate::unix_now();
            match db.write(|tx| tx.purge_expired(now)) {
                Ok(0) | Err(_) => {} // an error is already logged by the store
                Ok(n) => log::debug!("purged {n} expired challenges and refresh tokens"),
            }
            match db.write(|tx| tx.purge_audit(now - audit_retention_secs)) {
                Ok(0) | Err(_) => {}
                Ok(n) => log::info!("deleted {n} audit events past the retention"),
            }
        }
    }
}
