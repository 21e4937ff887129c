//! The SQLite database: opening it (WAL, foreign keys, busy timeout, `schema.sql`
//! versioned by `PRAGMA user_version`) and one small function per query. The server's
//! workers share one [`Db`]: one connection behind a mutex. Its page cache then stays
//! valid from one request to the next (with a connection per worker, every commit made
//! SQLite drop the other connections' caches and read the pages again), writers queue on
//! the mutex instead of sleeping in SQLite's busy handler, and every hold of the mutex is
//! a few microseconds: nothing slow (PBKDF2, rendering) runs inside one. Writes go
//! through [`Db::write`], one transaction each.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use crate::config::Durability;
use crate::error::Error;

const SCHEMA: &str = include_str!("../schema.sql");
pub const SCHEMA_VERSION: i64 = 1;
/// SQLite's page cache per connection, in KiB.
const PAGE_CACHE_KIB: u32 = 256;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // Logged in full here; the client only learns that storage failed.
        let unavailable = matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::OutOfMemory
            )
        );
        if unavailable {
            log::error!(
                "storage unavailable: {e} (is the data directory's file system full, \
                 read-only or failing?)"
            );
            Error::Unavailable
        } else {
            log::error!("database error: {e}");
            Error::Internal
        }
    }
}

/// One connection behind a mutex, with group commit; share it with `Arc`.
///
/// Writers that queue up behind each other share one transaction: each runs its closure
/// inside a savepoint of the open transaction (an error rolls back its own changes only),
/// and the last writer in the queue commits for all of them — or the one that brings the
/// batch to [`MAX_BATCH`]. A writer returns only once the COMMIT that holds its changes
/// has succeeded; if it fails, every writer of the batch gets the error and nothing of
/// theirs was acknowledged. A reader never sees a batch that is not committed: it
/// commits the open batch (whose writers have all finished) before it reads.
///
/// The mutex is not reentrant: a closure given to [`Db::read`] or [`Db::write`] must not
/// use the `Db` again (it gets the connection for that).
pub struct Db {
    state: Mutex<State>,
    /// Writers waiting for `state`: while there are any, a finished writer leaves the
    /// transaction open for them instead of committing.
    writers_waiting: AtomicUsize,
    /// Transactions committed through [`Db::write`], for the janitor to see activity.
    commits: AtomicU64,
}

/// The most writers whose changes share one COMMIT: a bound on how long the first of
/// them waits for its answer.
pub const MAX_BATCH: usize = 32;

struct State {
    conn: Connection,
    /// The open transaction, if a writer left it open for the next.
    batch: Option<Batch>,
}

struct Batch {
    /// Writers whose changes it holds.
    members: usize,
    outcome: Arc<Outcome>,
}

/// What became of a batch's COMMIT; its writers wait here without holding the mutex.
#[derive(Default)]
struct Outcome {
    result: Mutex<Option<Result<(), Error>>>,
    done: Condvar,
}

impl Outcome {
    fn set(&self, result: Result<(), Error>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<(), Error> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = &*result {
                return r.clone();
            }
            result = self
                .done
                .wait(result)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Why the database could not be opened at start.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> OpenError {
    let e = e.to_string();
    let hint = if e.contains("malformed") || e.contains("not a database") {
        "; the file is damaged: restore it from a backup"
    } else {
        ""
    };
    OpenError(format!("cannot use database {}: {e}{hint}", path.display()))
}

impl Db {
    /// Opens the database, creating it and applying the schema if needed.
    pub fn open(path: &Path, durability: Durability) -> Result<Db, OpenError> {
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_error(path, e))?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
        ))
        .map_err(|e| open_error(path, e))?;
        // Every query this module makes, and then some: none is compiled twice.
        conn.set_prepared_statement_cache_capacity(64);
        // SQLite's own page cache, per connection. The OS caches the file anyway (a miss
        // is a pread of a cached page); SQLite's default of 2 MB only made the server's
        // memory creep up for minutes as the database grew (the soak saw +29% RSS), and
        // the load generator showed no throughput difference at 256 KiB.
        conn.execute_batch(&format!("PRAGMA cache_size = -{PAGE_CACHE_KIB}"))
            .map_err(|e| open_error(path, e))?;
        let db = Db {
            state: Mutex::new(State { conn, batch: None }),
            writers_waiting: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
        };
        db.migrate().map_err(|e| open_error(path, e))?;
        Ok(db)
    }

    /// The connection and the batch. A writer that panicked while holding them rolled
    /// its savepoint back on the way out (see [`Member`]), so a poisoned mutex is still
    /// sound.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, with no batch left open.
    fn conn(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        self.commit_batch(&mut state);
        state
    }

    fn migrate(&self) -> Result<(), String> {
        let mut state = self.conn();
        let tx = state
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                    .map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())
            }
            SCHEMA_VERSION => Ok(()),
            v if v > SCHEMA_VERSION => Err(format!(
                "its schema version is {v}, newer than this mfad's {SCHEMA_VERSION}; \
                 run a newer mfad"
            )),
            v => Err(format!("unknown schema version {v}")),
        }
    }

    /// `PRAGMA quick_check`: `Ok(())` or the first problem SQLite reports.
    pub fn quick_check(&self) -> Result<(), String> {
        let first: String = self
            .conn()
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if first == "ok" {
            Ok(())
        } else {
            Err(first)
        }
    }

    /// Runs `f` on the connection, outside a transaction (each statement is its own).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn().conn)
    }

    /// Runs `f` in a transaction and returns once that is committed; an error from `f`
    /// rolls back everything `f` did (and nothing else). See [`Db`] on group commit.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let mut state = self.lock();
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        let member = Member::join(self, &mut state)?;
        let out = f(&member.state.conn);
        let outcome = member.leave(out.is_ok())?;
        drop(state);
        let out = out?;
        match outcome {
            Some(outcome) => outcome.wait().map(|()| out),
            None => Ok(out),
        }
    }

    /// Commits the open batch, if there is one, and tells its writers how it went.
    fn commit_batch(&self, state: &mut State) -> Option<Result<(), Error>> {
        let batch = state.batch.take()?;
        let result = exec(&state.conn, "COMMIT").map_err(Error::from);
        if result.is_err() && !state.conn.is_autocommit() {
            // Changes of writers that were never acknowledged; nothing to lose.
            let _ = exec(&state.conn, "ROLLBACK");
        }
        if result.is_ok() && batch.members > 0 {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        batch.outcome.set(result.clone());
        Some(result)
    }

    /// How many transactions [`Db::write`] has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Sets SQLite's automatic checkpoint mark, in WAL pages (0: never).
    pub fn set_autocheckpoint(&self, pages: u32) -> rusqlite::Result<()> {
        self.conn()
            .conn
            .pragma_update(None, "wal_autocheckpoint", pages)
    }

    /// A PASSIVE WAL checkpoint: copies what it can without waiting for anyone.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn()
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }

    /// `SELECT 1`, for the health check.
    pub fn ping(&self) -> Result<(), Error> {
        self.conn()
            .conn
            .prepare_cached("SELECT count(*) FROM accounts WHERE id = 0")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

/// One writer inside a batch: its changes sit in the savepoint `member`. Dropped
/// without [`Member::leave`] (its closure panicked) it rolls them back, and still
/// commits the batch for the others if nobody else will.
struct Member<'a> {
    db: &'a Db,
    state: &'a mut State,
    left: bool,
}

impl<'a> Member<'a> {
    fn join(db: &'a Db, state: &'a mut State) -> Result<Member<'a>, Error> {
        if state.batch.is_none() {
            exec(&state.conn, "BEGIN IMMEDIATE")?;
            state.batch = Some(Batch {
                members: 0,
                outcome: Arc::default(),
            });
        }
        if let Err(e) = exec(&state.conn, "SAVEPOINT member") {
            db.close_if_last(state);
            return Err(e.into());
        }
        Ok(Member {
            db,
            state,
            left: false,
        })
    }

    /// Keeps (`ok`) or undoes this writer's changes. Returns the batch outcome to wait
    /// for, or `None` if this writer committed it (successfully) or made no changes.
    fn leave(mut self, ok: bool) -> Result<Option<Arc<Outcome>>, Error> {
        self.left = true;
        let kept = if ok {
            exec(&self.state.conn, "RELEASE member").is_ok()
        } else {
            false
        };
        if !kept {
            self.undo();
        }
        let outcome = match (&mut self.state.batch, kept) {
            (Some(batch), true) => {
                batch.members += 1;
                Some(batch.outcome.clone())
            }
            _ => None,
        };
        match self.db.close_if_last(self.state) {
            Some(result) if kept => result.map(|()| None),
            Some(_) => Ok(None), // the others' commit; this writer changed nothing
            None => Ok(outcome),
        }
    }

    fn undo(&mut self) {
        let conn = &self.state.conn;
        if let Err(e) = exec(conn, "ROLLBACK TO member").and_then(|()| exec(conn, "RELEASE member"))
        {
            log::error!("rolling back a write failed: {e}");
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if !self.left {
            self.undo();
            self.db.close_if_last(self.state);
        }
    }
}

/// Runs one statement through the statement cache (these run several times per request;
/// `execute_batch` would compile them every time).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

impl Db {
    /// Commits the batch unless another writer is queued to join it and it has room.
    fn close_if_last(&self, state: &mut State) -> Option<Result<(), Error>> {
        let members = state.batch.as_ref().map_or(0, |b| b.members);
        if self.writers_waiting.load(Ordering::SeqCst) > 0 && members < MAX_BATCH {
            return None;
        }
        self.commit_batch(state)
    }
}

/// An account row.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub external_subject: Option<String>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("email", &self.email)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "[redacted]"),
            )
            .field("external_subject", &self.external_subject)
            .finish()
    }
}

const ACCOUNT_COLUMNS: &str = "id, email, password_hash, external_subject";

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        external_subject: r.get(3)?,
    })
}

/// Emails are compared case-insensitively: they are stored and looked up lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn account_by_id(c: &Connection, id: i64) -> rusqlite::Result<Option<Account>> {
    c.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
    ))?
    .query_row([id], account_row)
    .optional()
}

pub fn account_by_email(c: &Connection, email: &str) -> rusqlite::Result<Option<Account>> {
    c.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1"
    ))?
    .query_row([normalize_email(email)], account_row)
    .optional()
}

pub fn account_by_subject(c: &Connection, subject: &str) -> rusqlite::Result<Option<Account>> {
    c.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE external_subject = ?1"
    ))?
    .query_row([subject], account_row)
    .optional()
}

/// Creates a local account; `None` when the email is taken.
pub fn create_account(
    c: &Connection,
    email: &str,
    password_hash: Option<&str>,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    let n = c
        .prepare_cached(
            "INSERT INTO accounts (email, password_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![normalize_email(email), password_hash, now])?;
    Ok((n == 1).then(|| c.last_insert_rowid()))
}

/// Finds or creates the account of an external token's subject.
pub fn ensure_external_account(
    c: &Connection,
    subject: &str,
    now: i64,
) -> rusqlite::Result<Account> {
    c.prepare_cached(
        "INSERT INTO accounts (external_subject, created_at) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![subject, now])?;
    account_by_subject(c, subject)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn set_password(c: &Connection, id: i64, hash: &str) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached("UPDATE accounts SET password_hash = ?1 WHERE id = ?2")?
        .execute(params![hash, id])?;
    Ok(n == 1)
}

pub fn delete_account(c: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM accounts WHERE id = ?1")?
        .execute([id])?
        == 1)
}

/// One line of `mfad user list`.
#[derive(Debug, Clone)]
pub struct AccountSummary {
    pub id: i64,
    pub name: String,
    pub has_password: bool,
    pub totp_enabled: bool,
    pub created_at: i64,
}

pub fn list_accounts(c: &Connection) -> rusqlite::Result<Vec<AccountSummary>> {
    c.prepare_cached(
        "SELECT a.id, coalesce(a.email, 'external:' || a.external_subject),
                a.password_hash IS NOT NULL, t.active_secret IS NOT NULL, a.created_at
         FROM accounts a LEFT JOIN totp t ON t.account_id = a.id ORDER BY a.id",
    )?
    .query_map([], |r| {
        Ok(AccountSummary {
            id: r.get(0)?,
            name: r.get(1)?,
            has_password: r.get(2)?,
            totp_enabled: r.get::<_, Option<bool>>(3)?.unwrap_or(false),
            created_at: r.get(4)?,
        })
    })?
    .collect()
}

/// The TOTP state of an account. The secrets are sealed; `Debug` shows only whether
/// they are there.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Totp {
    pub pending_secret: Option<Vec<u8>>,
    pub active_secret: Option<Vec<u8>>,
    pub last_step: i64,
    pub backup_salt: Option<Vec<u8>>,
    pub failed_verifies: i64,
    pub locked_until: i64,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<Vec<u8>>| v.as_ref().map(|_| "[sealed]");
        f.debug_struct("Totp")
            .field("pending_secret", &shown(&self.pending_secret))
            .field("active_secret", &shown(&self.active_secret))
            .field("last_step", &self.last_step)
            .field("failed_verifies", &self.failed_verifies)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

pub fn totp(c: &Connection, account_id: i64) -> rusqlite::Result<Option<Totp>> {
    c.prepare_cached(
        "SELECT pending_secret, active_secret, last_step, backup_salt, failed_verifies,
                locked_until
         FROM totp WHERE account_id = ?1",
    )?
    .query_row([account_id], |r| {
        Ok(Totp {
            pending_secret: r.get(0)?,
            active_secret: r.get(1)?,
            last_step: r.get(2)?,
            backup_salt: r.get(3)?,
            failed_verifies: r.get(4)?,
            locked_until: r.get(5)?,
        })
    })
    .optional()
}

/// Whether TOTP is on, and the backup codes left: one query for the status endpoint.
pub fn mfa_status(c: &Connection, account_id: i64) -> rusqlite::Result<(bool, i64)> {
    c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM totp WHERE account_id = ?1 AND active_secret IS NOT NULL),
                (SELECT count(*) FROM backup_codes WHERE account_id = ?1)",
    )?
    .query_row([account_id], |r| Ok((r.get(0)?, r.get(1)?)))
}

pub fn totp_enabled(c: &Connection, account_id: i64) -> rusqlite::Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM totp WHERE account_id = ?1 AND active_secret IS NOT NULL")?
            .query_row([account_id], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

/// Stores a new pending secret, replacing an earlier pending one. Refused (`false`) when
/// TOTP is already enabled, in the same statement, so no race can slip between check
/// and write.
pub fn set_pending_secret(
    c: &Connection,
    account_id: i64,
    sealed: &[u8],
) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO totp (account_id, pending_secret) VALUES (?1, ?2)
             ON CONFLICT (account_id) DO UPDATE SET pending_secret = excluded.pending_secret
             WHERE totp.active_secret IS NULL",
        )?
        .execute(params![account_id, sealed])?;
    Ok(n == 1)
}

/// Makes `pending` (exactly the sealed bytes that were checked) the active secret and
/// records the step its code matched. `false` if the state moved meanwhile.
pub fn activate_secret(
    c: &Connection,
    account_id: i64,
    pending: &[u8],
    step: i64,
    backup_salt: &[u8],
    now: i64,
) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE totp SET active_secret = pending_secret, pending_secret = NULL,
                    last_step = ?3, backup_salt = ?4, enabled_at = ?5,
                    failed_verifies = 0, locked_until = 0
             WHERE account_id = ?1 AND active_secret IS NULL AND pending_secret = ?2",
        )?
        .execute(params![account_id, pending, step, backup_salt, now])?;
    Ok(n == 1)
}

/// Records that a code of `step` was accepted. `false` — the code is a replay — when a
/// step at or after it was already accepted (RFC 6238 §5.2). Atomic: of two requests
/// racing with one code, exactly one changes the row.
pub fn accept_step(c: &Connection, account_id: i64, step: i64) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE totp SET last_step = ?2
             WHERE account_id = ?1 AND active_secret IS NOT NULL AND last_step < ?2",
        )?
        .execute(params![account_id, step])?;
    Ok(n == 1)
}

/// Deletes every TOTP secret and backup code of an account.
pub fn clear_totp(c: &Connection, account_id: i64) -> rusqlite::Result<bool> {
    let had = totp_enabled(c, account_id)?;
    c.prepare_cached("DELETE FROM totp WHERE account_id = ?1")?
        .execute([account_id])?;
    c.prepare_cached("DELETE FROM backup_codes WHERE account_id = ?1")?
        .execute([account_id])?;
    Ok(had)
}

/// Replaces all backup codes (and their salt) of an enabled account.
pub fn replace_backup_codes(
    c: &Connection,
    account_id: i64,
    salt: &[u8],
    hashes: &[[u8; 32]],
) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE totp SET backup_salt = ?2 WHERE account_id = ?1")?
        .execute(params![account_id, salt])?;
    c.prepare_cached("DELETE FROM backup_codes WHERE account_id = ?1")?
        .execute([account_id])?;
    let mut insert =
        c.prepare_cached("INSERT INTO backup_codes (account_id, code_hash) VALUES (?1, ?2)")?;
    for h in hashes {
        insert.execute(params![account_id, &h[..]])?;
    }
    Ok(())
}

/// Spends a backup code: `true` if it existed. The DELETE is the check, so of N
/// concurrent submissions of one code exactly one gets `true`.
pub fn spend_backup_code(
    c: &Connection,
    account_id: i64,
    hash: &[u8; 32],
) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached("DELETE FROM backup_codes WHERE account_id = ?1 AND code_hash = ?2")?
        .execute(params![account_id, &hash[..]])?;
    Ok(n == 1)
}

pub fn backup_codes_remaining(c: &Connection, account_id: i64) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT count(*) FROM backup_codes WHERE account_id = ?1")?
        .query_row([account_id], |r| r.get(0))
}

/// Counts a wrong code at verify; locks the account when the count reaches `limit`.
/// Returns the new count and the lock's end (0 when not locked).
pub fn count_verify_failure(
    c: &Connection,
    account_id: i64,
    limit: i64,
    lock_until: i64,
) -> rusqlite::Result<(i64, i64)> {
    c.prepare_cached(
        "UPDATE totp SET
             locked_until = CASE WHEN failed_verifies + 1 >= ?2 THEN ?3 ELSE locked_until END,
             failed_verifies = CASE WHEN failed_verifies + 1 >= ?2 THEN 0
                                    ELSE failed_verifies + 1 END
         WHERE account_id = ?1
         RETURNING failed_verifies, locked_until",
    )?
    .query_row(params![account_id, limit, lock_until], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
    .map(|o| o.unwrap_or((0, 0)))
}

pub fn reset_verify_failures(c: &Connection, account_id: i64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE totp SET failed_verifies = 0 WHERE account_id = ?1 AND failed_verifies != 0",
    )?
    .execute([account_id])?;
    Ok(())
}

/// An MFA challenge row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub account_id: i64,
    pub expires_at: i64,
    pub failures: i64,
}

pub fn insert_challenge(
    c: &Connection,
    hash: &[u8; 32],
    account_id: i64,
    expires_at: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO mfa_challenges (token_hash, account_id, expires_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![&hash[..], account_id, expires_at])?;
    Ok(())
}

pub fn challenge(c: &Connection, hash: &[u8; 32]) -> rusqlite::Result<Option<Challenge>> {
    c.prepare_cached(
        "SELECT account_id, expires_at, failures FROM mfa_challenges WHERE token_hash = ?1",
    )?
    .query_row([&hash[..]], |r| {
        Ok(Challenge {
            account_id: r.get(0)?,
            expires_at: r.get(1)?,
            failures: r.get(2)?,
        })
    })
    .optional()
}

/// Deletes a challenge; `true` if it was still there (so exactly one caller wins it).
pub fn take_challenge(c: &Connection, hash: &[u8; 32]) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached("DELETE FROM mfa_challenges WHERE token_hash = ?1")?
        .execute([&hash[..]])?;
    Ok(n == 1)
}

/// Counts a wrong code against a challenge; returns the new count (0 if it is gone).
pub fn count_challenge_failure(c: &Connection, hash: &[u8; 32]) -> rusqlite::Result<i64> {
    c.prepare_cached(
        "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = ?1
         RETURNING failures",
    )?
    .query_row([&hash[..]], |r| r.get(0))
    .optional()
    .map(|o| o.unwrap_or(0))
}

/// A refresh token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub account_id: i64,
    pub family: Vec<u8>,
    pub expires_at: i64,
    pub rotated: bool,
}

pub fn insert_refresh_token(
    c: &Connection,
    hash: &[u8; 32],
    account_id: i64,
    family: &[u8],
    expires_at: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, account_id, family, expires_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![&hash[..], account_id, family, expires_at])?;
    Ok(())
}

pub fn refresh_token(c: &Connection, hash: &[u8; 32]) -> rusqlite::Result<Option<RefreshToken>> {
    c.prepare_cached(
        "SELECT account_id, family, expires_at, rotated FROM refresh_tokens WHERE token_hash = ?1",
    )?
    .query_row([&hash[..]], |r| {
        Ok(RefreshToken {
            account_id: r.get(0)?,
            family: r.get(1)?,
            expires_at: r.get(2)?,
            rotated: r.get(3)?,
        })
    })
    .optional()
}

/// Marks a token as exchanged; `false` if it already was (a concurrent refresh won).
pub fn rotate_refresh_token(c: &Connection, hash: &[u8; 32]) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE refresh_tokens SET rotated = 1 WHERE token_hash = ?1 AND rotated = 0",
        )?
        .execute([&hash[..]])?;
    Ok(n == 1)
}

/// Revokes every token descended from one login.
pub fn revoke_family(c: &Connection, family: &[u8]) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM refresh_tokens WHERE family = ?1")?
        .execute([family])
}

/// Deletes what has expired; run now and then, not on the request path.
pub fn purge_expired(c: &Connection, now: i64) -> rusqlite::Result<usize> {
    let a = c
        .prepare_cached("DELETE FROM mfa_challenges WHERE expires_at <= ?1")?
        .execute([now])?;
    let b = c
        .prepare_cached("DELETE FROM refresh_tokens WHERE expires_at <= ?1")?
        .execute([now])?;
    Ok(a + b)
}

pub fn meta(c: &Connection, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

pub fn set_meta(c: &Connection, name: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")?
        .execute(params![name, value])?;
    Ok(())
}

pub fn audit(
    c: &Connection,
    account_id: Option<i64>,
    now: i64,
    event: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO audit (account_id, at, event, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![account_id, now, event, detail])?;
    Ok(())
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub event: String,
    pub detail: Option<String>,
}

pub fn recent_audit(
    c: &Connection,
    account_id: i64,
    limit: i64,
) -> rusqlite::Result<Vec<AuditEvent>> {
    c.prepare_cached(
        "SELECT at, event, detail FROM audit WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?
    .query_map(params![account_id, limit], |r| {
        Ok(AuditEvent {
            at: r.get(0)?,
            event: r.get(1)?,
            detail: r.get(2)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
        (dir, db)
    }

    #[test]
    fn schema_is_applied_once_and_versioned() {
        let (dir, db) = db();
        let v: i64 = db
            .read(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        drop(db);
        // Opening again must not re-run CREATE TABLE (which would fail).
        Db::open(&dir.path().join("t.db"), Durability::Full).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let (dir, db) = db();
        db.read(|c| c.execute_batch("PRAGMA user_version = 99"))
            .unwrap();
        drop(db);
        let e = Db::open(&dir.path().join("t.db"), Durability::Normal)
            .err()
            .unwrap();
        assert!(e.0.contains("newer"), "{e}");
    }

    #[test]
    fn emails_are_case_insensitive_and_unique() {
        let (_d, db) = db();
        let id = db
            .write(|c| Ok(create_account(c, "User@Example.COM", None, 1)?))
            .unwrap()
            .unwrap();
        assert_eq!(
            db.read(|c| account_by_email(c, "user@example.com"))
                .unwrap()
                .unwrap()
                .id,
            id
        );
        assert_eq!(
            db.write(|c| Ok(create_account(c, "USER@example.com", None, 1)?))
                .unwrap(),
            None
        );
    }

    #[test]
    fn pending_secret_cannot_replace_an_active_one() {
        let (_d, db) = db();
        let id = db
            .write(|c| Ok(create_account(c, "a@b.c", None, 1)?))
            .unwrap()
            .unwrap();
        assert!(db
            .write(|c| Ok(set_pending_secret(c, id, b"one")?))
            .unwrap());
        assert!(db
            .write(|c| Ok(set_pending_secret(c, id, b"two")?))
            .unwrap());
        assert!(!db
            .write(|c| Ok(activate_secret(c, id, b"one", 5, b"salt", 1)?))
            .unwrap());
        assert!(db
            .write(|c| Ok(activate_secret(c, id, b"two", 5, b"salt", 1)?))
            .unwrap());
        assert!(!db
            .write(|c| Ok(set_pending_secret(c, id, b"three")?))
            .unwrap());
        let t = db.read(|c| totp(c, id)).unwrap().unwrap();
        assert_eq!(t.active_secret.as_deref(), Some(&b"two"[..]));
        assert_eq!(t.pending_secret, None);
        assert_eq!(t.last_step, 5);
    }

    #[test]
    fn accept_step_only_moves_forward() {
        let (_d, db) = db();
        let id = db
            .write(|c| Ok(create_account(c, "a@b.c", None, 1)?))
            .unwrap()
            .unwrap();
        db.write(|c| Ok(set_pending_secret(c, id, b"s")?)).unwrap();
        db.write(|c| Ok(activate_secret(c, id, b"s", 10, b"salt", 1)?))
            .unwrap();
        assert!(!db.write(|c| Ok(accept_step(c, id, 10)?)).unwrap());
        assert!(!db.write(|c| Ok(accept_step(c, id, 9)?)).unwrap());
        assert!(db.write(|c| Ok(accept_step(c, id, 11)?)).unwrap());
        assert!(!db.write(|c| Ok(accept_step(c, id, 11)?)).unwrap());
    }

    #[test]
    fn a_failed_write_rolls_back() {
        let (_d, db) = db();
        let r: Result<(), Error> = db.write(|c| {
            create_account(c, "a@b.c", None, 1)?;
            Err(Error::Conflict("no"))
        });
        assert_eq!(r, Err(Error::Conflict("no")));
        assert_eq!(db.read(|c| account_by_email(c, "a@b.c")).unwrap(), None);
    }

    fn meta_names(db: &Db) -> Vec<String> {
        db.read(|c| {
            c.prepare("SELECT name FROM meta ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .unwrap()
    }

    #[test]
    fn concurrent_writers_keep_their_own_changes_and_errors() {
        let (_d, db) = db();
        let db = Arc::new(db);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut kept = Vec::new();
                    for i in 0..150 {
                        let name = format!("t{t}-{i:03}");
                        let fail = i % 3 == 0;
                        let r = db.write(|c| {
                            set_meta(c, &name, b"x")?;
                            if fail {
                                Err(Error::Conflict("no"))
                            } else {
                                Ok(name.clone())
                            }
                        });
                        match r {
                            Ok(n) => kept.push(n),
                            Err(e) => assert!(fail && e == Error::Conflict("no"), "{e:?}"),
                        }
                    }
                    kept
                })
            })
            .collect();
        let mut expected: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        expected.sort();
        assert_eq!(expected.len(), 8 * 100);
        // Exactly the acknowledged writes, each committed, none of the failed ones.
        assert_eq!(meta_names(&db), expected);
        let commits = db.commits();
        assert!((1..=800).contains(&commits), "{commits}");
        println!("800 acknowledged writes in {commits} commits");
    }

    #[test]
    fn a_panicking_writer_loses_only_its_own_changes() {
        let (_d, db) = db();
        let db = Arc::new(db);
        let panicker = {
            let db = db.clone();
            std::thread::spawn(move || {
                db.write(|c| -> Result<(), Error> {
                    set_meta(c, "panicker", b"x")?;
                    panic!("a bug in a handler");
                })
            })
        };
        assert!(panicker.join().is_err());
        db.write(|c| Ok(set_meta(c, "after", b"x")?)).unwrap();
        assert_eq!(meta_names(&db), ["after"]);
    }

    /// Two writers in one batch (the second queued while the first runs), whose COMMIT
    /// fails: both get the error, and neither change is in the database.
    #[test]
    fn a_failed_commit_fails_every_writer_of_its_batch() {
        let (_d, db) = db();
        let db = Arc::new(db);
        // A deferred foreign key is checked only at COMMIT: a way to make one fail.
        db.write(|c| {
            c.execute_batch(
                "CREATE TABLE later (account INTEGER REFERENCES accounts(id) \
                 DEFERRABLE INITIALLY DEFERRED)",
            )?;
            Ok(())
        })
        .unwrap();
        let (queued_tx, queued_rx) = std::sync::mpsc::channel::<()>();
        let second = {
            let db = db.clone();
            std::thread::spawn(move || {
                queued_rx.recv().unwrap();
                db.write(|c| Ok(set_meta(c, "second", b"x")?))
            })
        };
        let first = db.write(|c| {
            c.execute("INSERT INTO later VALUES (12345)", [])?;
            queued_tx.send(()).unwrap();
            // Leave only once the second writer is queued behind this one.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while db.writers_waiting.load(Ordering::SeqCst) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "second writer never queued"
                );
                std::thread::yield_now();
            }
            Ok(())
        });
        assert_eq!(first, Err(Error::Internal));
        assert_eq!(second.join().unwrap(), Err(Error::Internal));
        assert!(meta_names(&db).is_empty());
        let rows: i64 = db
            .read(|c| c.query_row("SELECT count(*) FROM later", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 0);
        // And the connection is usable afterwards.
        db.write(|c| Ok(set_meta(c, "after", b"x")?)).unwrap();
        assert_eq!(meta_names(&db), ["after"]);
    }

    #[test]
    fn debug_output_holds_no_secret_material() {
        let a = Account {
            id: 1,
            email: Some("a@b.c".into()),
            password_hash: Some("pbkdf2-sha256$600000$c2FsdA$aGFzaA".into()),
            external_subject: None,
        };
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("pbkdf2") && shown.contains("[redacted]"),
            "{shown}"
        );
        let t = Totp {
            active_secret: Some(b"SEALED-BYTES".to_vec()),
            backup_salt: Some(b"SALT".to_vec()),
            ..Totp::default()
        };
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("83") && !shown.contains("SALT") && shown.contains("[sealed]"),
            "{shown}"
        );
    }

    #[test]
    fn account_lock_after_limit() {
        let (_d, db) = db();
        let id = db
            .write(|c| Ok(create_account(c, "a@b.c", None, 1)?))
            .unwrap()
            .unwrap();
        db.write(|c| Ok(set_pending_secret(c, id, b"s")?)).unwrap();
        for i in 1..3 {
            assert_eq!(
                db.write(|c| Ok(count_verify_failure(c, id, 3, 900)?))
                    .unwrap(),
                (i, 0)
            );
        }
        assert_eq!(
            db.write(|c| Ok(count_verify_failure(c, id, 3, 900)?))
                .unwrap(),
            (0, 900)
        );
    }
}
