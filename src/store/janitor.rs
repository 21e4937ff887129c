//! Storage upkeep off the request path: WAL checkpoints on a connection of their own,
//! and the purge of expired challenges and refresh tokens. Started with the server,
//! stopped (and joined) after its workers.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Db, SqliteDb};

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
    /// Starts the janitor of `db`. On SQLite, checkpoints run here, on a connection of
    /// their own, rather than inside whichever request's commit crossed SQLite's
    /// 1,000-page mark: a PASSIVE checkpoint takes no lock that writers wait for, so its
    /// copying and its fsync leave the request path. (The shared connection keeps an
    /// automatic checkpoint at a much higher mark, a backstop should this thread fall
    /// behind.) On PostgreSQL it only purges, and of several nodes one at a time.
    pub fn start(db: Arc<Db>, audit_retention_secs: i64) -> Result<Janitor, String> {
        let checkpoints = match db.sqlite() {
            Some(sqlite) => {
                let own = sqlite.reopen().map_err(|e| e.to_string())?;
                sqlite
                    .set_autocheckpoint(BACKSTOP_CHECKPOINT_PAGES)
                    .map_err(|_| "cannot configure the database (see the log above)".to_string())?;
                Some(own)
            }
            None => None,
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("mfad-janitor".into())
            .spawn(move || run(&db, checkpoints.as_ref(), &stopped, audit_retention_secs))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Janitor { stop, handle })
    }

    /// Stops the janitor and waits for it.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.handle.join();
    }
}

fn run(
    db: &Db,
    checkpoints: Option<&SqliteDb>,
    stopped: &mpsc::Receiver<()>,
    audit_retention_secs: i64,
) {
    let mut last_purge = Instant::now();
    let commits = || db.sqlite().map_or(0, SqliteDb::commits);
    let mut checkpointed_at = commits();
    let mut wait = IDLE_LOOK_EVERY;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        wait = IDLE_LOOK_EVERY;
        if let Some(checkpoints) = checkpoints {
            let now_commits = commits();
            if now_commits != checkpointed_at {
                checkpointed_at = now_commits;
                wait = CHECKPOINT_EVERY;
                if let Err(e) = checkpoints.checkpoint() {
                    log::warn!("WAL checkpoint failed: {e}");
                }
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = Instant::now();
            purge(db, crate::unix_now(), audit_retention_secs);
        }
    }
}

/// Deletes what has expired and the audit past its retention. On PostgreSQL only the
/// node that holds the janitor's advisory lock does it (the others find it taken).
fn purge(db: &Db, now: i64, audit_retention_secs: i64) {
    let work = |tx: &super::Tx<'_>| {
        Ok((
            tx.purge_expired(now)?,
            tx.purge_audit(now - audit_retention_secs)?,
        ))
    };
    let done = match db {
        Db::Sqlite(_) => db.write(work).map(Some),
        #[cfg(feature = "postgres")]
        Db::Postgres(pg) => pg.exclusively(work),
    };
    match done {
        Ok(Some((expired, audit))) => {
            if expired > 0 {
                log::debug!("purged {expired} expired challenges and refresh tokens");
            }
            if audit > 0 {
                log::info!("deleted {audit} audit events past the retention");
            }
        }
        Ok(None) => log::debug!("another node is purging"),
        Err(_) => {} // already logged by the store
    }
}
