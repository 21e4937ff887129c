//! The SQLite engine: opening the file (WAL, foreign keys, busy timeout, `schema.sql`
//! versioned by `PRAGMA user_version`), running transactions with group commit, and
//! the [`Engine`] the queries (`queries.rs`) run on. The server's
//! workers share one [`SqliteDb`]: one connection behind a mutex. Its page cache then stays
//! valid from one request to the next (with a connection per worker, every commit made
//! SQLite drop the other connections' caches and read the pages again), writers queue on
//! the mutex instead of sleeping in SQLite's busy handler, and every hold of the mutex is
//! a few microseconds: nothing slow (PBKDF2, rendering) runs inside one. Writes go
//! through [`SqliteDb::write`], one transaction each.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::engine::{sqlite_params, Dialect, Engine, Param, Row, Value};
use super::Tx;
use crate::durability::Durability;
use crate::error::Error;

const SCHEMA: &str = include_str!("../../schema.sql");
pub const SCHEMA_VERSION: i64 = 4;
/// From each earlier version to the next: `MIGRATIONS[v - 1]` takes version v to v + 1.
const MIGRATIONS: [&str; 3] = [
    // 1 → 2: the current user's times, step-up challenges and their verifications.
    "ALTER TABLE accounts ADD COLUMN updated_at INTEGER;
     ALTER TABLE accounts ADD COLUMN last_connected_at INTEGER;
     ALTER TABLE mfa_challenges ADD COLUMN purpose INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE verifications (
         token_hash  BLOB PRIMARY KEY,
         account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
         method      TEXT NOT NULL,
         verified_at INTEGER NOT NULL,
         expires_at  INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 2 → 3: EdDSA tokens with `amr` and `auth_time`. How an existing login was made
    // was never recorded: it is said to be a password alone (claiming less than what
    // happened, never more), made when its 30 days began. The HS256 tokens issued
    // until now are accepted for an hour from this moment.
    "ALTER TABLE refresh_tokens ADD COLUMN sign_in TEXT NOT NULL DEFAULT 'pwd';
     ALTER TABLE refresh_tokens ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
     UPDATE refresh_tokens SET auth_time = expires_at - 2592000;
     INSERT OR REPLACE INTO meta (name, value)
         VALUES ('hs256_upgraded_at', CAST(strftime('%s', 'now') AS BLOB));",
    // 3 → 4: passkeys, their ceremonies, and each account's WebAuthn user handle.
    "ALTER TABLE accounts ADD COLUMN user_handle BLOB;
     CREATE UNIQUE INDEX accounts_user_handle ON accounts(user_handle);
     CREATE TABLE passkeys (
         id            BLOB PRIMARY KEY,
         account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
         credential_id BLOB NOT NULL UNIQUE,
         public_key    BLOB NOT NULL,
         alg           INTEGER NOT NULL,
         sign_count    INTEGER NOT NULL DEFAULT 0,
         name          TEXT NOT NULL,
         created_at    INTEGER NOT NULL,
         last_used_at  INTEGER
     ) WITHOUT ROWID;
     CREATE INDEX passkeys_account ON passkeys(account_id);
     CREATE TABLE passkey_ceremonies (
         challenge_hash BLOB PRIMARY KEY,
         purpose        INTEGER NOT NULL,
         account_id     INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
         bound_to       BLOB,
         expires_at     INTEGER NOT NULL
     ) WITHOUT ROWID;",
];
/// SQLite's page cache per connection, in KiB.
const PAGE_CACHE_KIB: u32 = 256;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        // Logged in full here; the client only learns that storage failed.
        crate::metrics::METRICS.storage_error();
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
/// The mutex is not reentrant: a closure given to [`SqliteDb::read`] or [`SqliteDb::write`] must not
/// use the `SqliteDb` again (it gets the connection for that).
pub struct SqliteDb {
    state: Mutex<State>,
    /// Writers waiting for `state`: while there are any, a finished writer leaves the
    /// transaction open for them instead of committing.
    writers_waiting: AtomicUsize,
    /// Transactions committed through [`SqliteDb::write`], for the janitor to see activity.
    commits: AtomicU64,
    /// Where the file is, and how it was opened: the janitor opens its own connection.
    path: PathBuf,
    durability: Durability,
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

impl SqliteDb {
    /// Opens the database, creating it and applying the schema if needed.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteDb, OpenError> {
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_error(path, e))?;
        // Before anything writes to it (switching to WAL rewrites the header): a
        // database of another program (tables, no version of ours) is not ours to touch.
        let (version, tables): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT count(*) FROM sqlite_schema)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| open_error(path, e))?;
        if version == 0 && tables > 0 {
            return Err(open_error(
                path,
                "it is not an mfad database (it has tables but no mfad schema version)",
            ));
        }
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
        let db = SqliteDb {
            state: Mutex::new(State { conn, batch: None }),
            writers_waiting: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            path: path.to_path_buf(),
            durability,
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
            v @ 1.. => {
                // In the same transaction: a migration that fails leaves the file as it was.
                for (from, sql) in MIGRATIONS.iter().enumerate().skip(v as usize - 1) {
                    tx.execute_batch(sql)
                        .map_err(|e| format!("migrating from schema {}: {e}", from + 1))?;
                }
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                    .map_err(|e| e.to_string())?;
                tx.commit().map_err(|e| e.to_string())?;
                log::info!("database schema migrated from version {v} to {SCHEMA_VERSION}");
                Ok(())
            }
            v => Err(format!("unknown schema version {v}")),
        }
    }

    /// `PRAGMA integrity_check`: every page, every index against its table, every
    /// constraint. `Ok(())`, or the first problem SQLite reports. It reads the whole
    /// file (about 2 s per GB here); `quick_check`, which skips the index-to-table
    /// comparison, missed damage that this finds.
    pub fn integrity_check(&self) -> Result<(), String> {
        let first: String = self
            .conn()
            .conn
            .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if first == "ok" {
            Ok(())
        } else {
            Err(first)
        }
    }

    /// Runs `f` on the connection, outside a transaction (each statement is its own).
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let state = self.conn();
        f(&Tx::new(&SqliteEngine { conn: &state.conn }))
    }

    /// A consistent copy of the database in a new file `target` (`VACUUM INTO`: one read
    /// transaction, so a server writing meanwhile is neither stopped nor half-copied),
    /// then opened and checked (`integrity_check`, the schema version). The file is made
    /// first, exclusively and mode 0600: an existing one is never overwritten. Returns
    /// the copy's size in bytes.
    pub fn backup_to(&self, target: &Path) -> Result<u64, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let shown = target.display();
        let name = target
            .to_str()
            .ok_or_else(|| format!("{shown}: the path must be UTF-8"))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    format!("{shown} exists: a backup never overwrites a file; name a new one")
                }
                _ => format!("cannot create {shown}: {e}"),
            })?;
        let copied = self.conn().conn.execute("VACUUM INTO ?1", [name]).map(drop);
        let checked = copied
            .map_err(|e| e.to_string())
            .and_then(|()| check_copy(target));
        match checked {
            Ok(()) => std::fs::metadata(target)
                .map(|m| m.len())
                .map_err(|e| format!("cannot read {shown}: {e}")),
            Err(e) => {
                let _ = std::fs::remove_file(target);
                Err(format!(
                    "the backup to {shown} failed ({e}); nothing was kept"
                ))
            }
        }
    }

    /// Runs `f` on the connection inside one read transaction: everything it reads is
    /// of one moment, whatever a server writes meanwhile (`mfad migrate`).
    pub(super) fn with_snapshot<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, String>,
    ) -> Result<T, String> {
        let state = self.conn();
        let c = &state.conn;
        c.execute_batch("BEGIN").map_err(|e| e.to_string())?;
        let out = f(c);
        let _ = c.execute_batch("COMMIT");
        out
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens another connection to the same file (for the janitor's checkpoints).
    pub(super) fn reopen(&self) -> Result<SqliteDb, OpenError> {
        SqliteDb::open(&self.path, self.durability)
    }

    /// Runs `f` in a transaction and returns once that is committed; an error from `f`
    /// rolls back everything `f` did (and nothing else). See [`SqliteDb`] on group commit.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        self.write_conn(|conn| f(&Tx::new(&SqliteEngine { conn })))
    }

    fn write_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
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
            crate::metrics::METRICS.batch(batch.members);
        }
        batch.outcome.set(result.clone());
        Some(result)
    }

    /// How many transactions [`SqliteDb::write`] has committed.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Sets SQLite's automatic checkpoint mark, in WAL pages (0: never).
    pub fn set_autocheckpoint(&self, pages: u32) -> Result<(), Error> {
        Ok(self
            .conn()
            .conn
            .pragma_update(None, "wal_autocheckpoint", pages)?)
    }

    /// A PASSIVE WAL checkpoint: copies what it can without waiting for anyone.
    pub(super) fn checkpoint(&self) -> rusqlite::Result<()> {
        self.conn()
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }

    /// The health check: one indexed read of the accounts table, so a database whose
    /// file cannot be read (not merely an open connection) fails it.
    pub(crate) fn ping(&self) -> Result<(), Error> {
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
    db: &'a SqliteDb,
    state: &'a mut State,
    left: bool,
}

impl<'a> Member<'a> {
    fn join(db: &'a SqliteDb, state: &'a mut State) -> Result<Member<'a>, Error> {
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

/// The queries' [`Engine`] on a connection of this file (inside a transaction or not).
struct SqliteEngine<'c> {
    conn: &'c Connection,
}

impl Engine for SqliteEngine<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, Error> {
        let n = self
            .conn
            .prepare_cached(&sqlite_params(sql))?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    fn query(
        &self,
        sql: &str,
        params: &[Param<'_>],
        each: &mut dyn FnMut(&dyn Row) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut statement = self.conn.prepare_cached(&sqlite_params(sql))?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            each(&SqliteRow(row))?;
        }
        Ok(())
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef;
        let v = match *self {
            Param::Int(Some(n)) => ValueRef::Integer(n),
            Param::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            Param::Bytes(Some(b)) => ValueRef::Blob(b),
            Param::Bool(b) => ValueRef::Integer(i64::from(b)),
            Param::Int(None) | Param::Text(None) | Param::Bytes(None) => ValueRef::Null,
        };
        Ok(rusqlite::types::ToSqlOutput::Borrowed(v))
    }
}

struct SqliteRow<'a, 's>(&'a rusqlite::Row<'s>);

impl Row for SqliteRow<'_, '_> {
    fn value(&self, i: usize) -> Result<Value<'_>, Error> {
        use rusqlite::types::ValueRef;
        Ok(match self.0.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Blob(b) => Value::Bytes(b),
            ValueRef::Text(t) => Value::Text(std::str::from_utf8(t).map_err(|_| {
                log::error!("database error: column {i} holds text that is not UTF-8");
                Error::Internal
            })?),
            ValueRef::Real(_) => {
                log::error!("database error: column {i} holds a real number");
                return Err(Error::Internal);
            }
        })
    }
}

/// Runs one statement through the statement cache (these run several times per request;
/// `execute_batch` would compile them every time).
/// Opens a backup read-only and checks it: every page and index, and today's schema.
fn check_copy(path: &Path) -> Result<(), String> {
    let copy = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    let verdict: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    let version: i64 = copy
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    match (verdict.as_str(), version) {
        ("ok", SCHEMA_VERSION) => Ok(()),
        ("ok", v) => Err(format!("the copy has schema version {v}")),
        (v, _) => Err(format!("the copy failed its integrity check: {v}")),
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

impl SqliteDb {
    /// Commits the batch unless another writer is queued to join it and it has room.
    fn close_if_last(&self, state: &mut State) -> Option<Result<(), Error>> {
        let members = state.batch.as_ref().map_or(0, |b| b.members);
        if self.writers_waiting.load(Ordering::SeqCst) > 0 && members < MAX_BATCH {
            return None;
        }
        self.commit_batch(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Account, Totp};

    impl SqliteDb {
        /// The bare connection, for tests that look under the API.
        fn raw<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
            f(&self.conn().conn)
        }
    }

    /// A database with one account whose TOTP setup is pending (secret `b"s"`).
    fn account_with_pending_secret() -> (tempfile::TempDir, SqliteDb, i64) {
        let (d, db) = db();
        let id = db
            .write(|tx| tx.create_account("a@b.c", None, 1))
            .unwrap()
            .unwrap();
        db.write(|tx| tx.set_pending_secret(id, b"s")).unwrap();
        (d, db, id)
    }

    fn db() -> (tempfile::TempDir, SqliteDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
        (dir, db)
    }

    #[test]
    fn schema_is_applied_once_and_versioned() {
        let (dir, db) = db();
        let v: i64 = db
            .raw(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        drop(db);
        // Opening again must not re-run CREATE TABLE (which would fail).
        SqliteDb::open(&dir.path().join("t.db"), Durability::Full).unwrap();
    }

    /// A database as an earlier release left it: its `schema.sql`, then `rows` (which
    /// set `user_version`).
    fn old_database(path: &std::path::Path, schema: &str, rows: &str) {
        let c = Connection::open(path).unwrap();
        c.execute_batch(schema).unwrap();
        c.execute_batch(rows).unwrap();
    }

    /// Schema 2's refresh tokens gain how their login was made (a password, as far as
    /// anyone can tell) and when (the start of their 30 days); the moment of the
    /// upgrade is recorded for the HS256 tokens of before. A new database has no such
    /// moment: it never knew HS256.
    #[test]
    fn a_version_2_database_is_migrated_with_its_logins_and_the_upgrade_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        old_database(
            &path,
            include_str!("../../tests/fixtures/schema-v2.sql"),
            "PRAGMA user_version = 2;
             INSERT INTO accounts (email, created_at) VALUES ('old@example.com', 7);
             INSERT INTO refresh_tokens (token_hash, account_id, family, expires_at)
                 VALUES (x'02', 1, x'aa', 2592100);",
        );
        let before = crate::unix_now();
        let db = SqliteDb::open(&path, Durability::Normal).unwrap();
        let row = db.raw(|c| {
            c.query_row(
                "SELECT sign_in, auth_time FROM refresh_tokens WHERE token_hash = x'02'",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
        });
        assert_eq!(row.unwrap(), ("pwd".to_string(), 100));
        let at = db.read(|tx| tx.meta("hs256_upgraded_at")).unwrap().unwrap();
        let at: i64 = std::str::from_utf8(&at).unwrap().parse().unwrap();
        assert!((before..=crate::unix_now()).contains(&at), "{at}");
        assert_eq!(db.integrity_check(), Ok(()));
        let (_d, fresh) = super::tests::db();
        assert_eq!(fresh.read(|tx| tx.meta("hs256_upgraded_at")).unwrap(), None);
    }

    /// Every table, column and index of a database, as SQLite describes them.
    fn shape(db: &SqliteDb) -> Vec<String> {
        db.raw(|c| {
            let mut out = Vec::new();
            let mut objects = c
                .prepare("SELECT type, name, tbl_name FROM sqlite_master ORDER BY name")
                .unwrap();
            let rows = objects
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<Vec<(String, String, String)>>>()
                .unwrap();
            for (kind, name, table) in rows {
                out.push(format!("{kind} {name} on {table}"));
                if kind == "table" {
                    let mut cols = c.prepare(&format!("PRAGMA table_xinfo({name})")).unwrap();
                    let described = cols
                        .query_map([], |r| {
                            Ok(format!(
                                "  {name}.{}: {} notnull={} default={:?} pk={}",
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, Option<String>>(4)?,
                                r.get::<_, i64>(5)?
                            ))
                        })
                        .unwrap();
                    out.extend(described.map(Result::unwrap));
                }
            }
            out
        })
    }

    /// A database of schema 3 gains passkeys, their ceremonies and user handles, and
    /// ends up with exactly the tables, columns and indexes of a new database, so the
    /// migration and `schema.sql` cannot drift apart.
    #[test]
    fn a_version_3_database_is_migrated_to_the_shape_of_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        old_database(
            &path,
            include_str!("../../tests/fixtures/schema-v3.sql"),
            "PRAGMA user_version = 3;
             INSERT INTO accounts (email, created_at) VALUES ('old@example.com', 7);",
        );
        let db = SqliteDb::open(&path, Durability::Normal).unwrap();
        let (_d, fresh) = super::tests::db();
        assert_eq!(shape(&db), shape(&fresh));
        let a = db
            .read(|tx| tx.account_by_email("old@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(db.read(|tx| tx.user_handle(a.id)).unwrap(), None);
        assert_eq!(db.read(|tx| tx.passkeys(a.id)).unwrap(), vec![]);
        assert_eq!(db.integrity_check(), Ok(()));
        // From the first schema too, through every migration.
        let path = dir.path().join("v1.db");
        old_database(
            &path,
            include_str!("../../tests/fixtures/schema-v1.sql"),
            "PRAGMA user_version = 1;",
        );
        let db = SqliteDb::open(&path, Durability::Normal).unwrap();
        assert_eq!(shape(&db), shape(&fresh));
    }

    /// A database made by the first release (schema 1, as `schema.sql` was then) opens
    /// as today's schema with its rows kept.
    #[test]
    fn a_version_1_database_is_migrated_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        old_database(
            &path,
            include_str!("../../tests/fixtures/schema-v1.sql"),
            "PRAGMA user_version = 1;
             INSERT INTO accounts (email, created_at) VALUES ('old@example.com', 7);
             INSERT INTO mfa_challenges (token_hash, account_id, expires_at)
                 VALUES (x'01', 1, 99);",
        );
        let db = SqliteDb::open(&path, Durability::Normal).unwrap();
        let v: i64 = db
            .raw(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let a = db
            .read(|tx| tx.account_by_email("old@example.com"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.created_at, a.updated_at, a.last_connected_at),
            (7, None, None)
        );
        let mut hash = [0u8; 32];
        hash[0] = 1;
        let old = db.raw(|c| {
            c.query_row("SELECT purpose FROM mfa_challenges", [], |r| {
                r.get::<_, i64>(0)
            })
        });
        assert_eq!(old.unwrap(), 0, "an old challenge is a login challenge");
        db.write(|tx| tx.insert_verification(&hash, a.id, "totp", 1, 2))
            .unwrap();
        assert_eq!(db.integrity_check(), Ok(()));
    }

    #[test]
    fn newer_schema_is_refused() {
        let (dir, db) = db();
        db.raw(|c| c.execute_batch("PRAGMA user_version = 99"))
            .unwrap();
        drop(db);
        let e = SqliteDb::open(&dir.path().join("t.db"), Durability::Normal)
            .err()
            .unwrap();
        assert!(e.0.contains("newer"), "{e}");
    }

    #[test]
    fn emails_are_case_insensitive_and_unique() {
        let (_d, db) = db();
        let id = db
            .write(|tx| tx.create_account("User@Example.COM", None, 1))
            .unwrap()
            .unwrap();
        assert_eq!(
            db.read(|tx| tx.account_by_email("user@example.com"))
                .unwrap()
                .unwrap()
                .id,
            id
        );
        assert_eq!(
            db.write(|tx| tx.create_account("USER@example.com", None, 1))
                .unwrap(),
            None
        );
    }

    #[test]
    fn pending_secret_cannot_replace_an_active_one() {
        let (_d, db) = db();
        let id = db
            .write(|tx| tx.create_account("a@b.c", None, 1))
            .unwrap()
            .unwrap();
        assert!(db.write(|tx| tx.set_pending_secret(id, b"one")).unwrap());
        assert!(db.write(|tx| tx.set_pending_secret(id, b"two")).unwrap());
        assert!(!db
            .write(|tx| tx.activate_secret(id, b"one", 5, b"salt", 1))
            .unwrap());
        assert!(db
            .write(|tx| tx.activate_secret(id, b"two", 5, b"salt", 1))
            .unwrap());
        assert!(!db.write(|tx| tx.set_pending_secret(id, b"three")).unwrap());
        let t = db.read(|tx| tx.totp(id)).unwrap().unwrap();
        assert_eq!(t.active_secret.as_deref(), Some(&b"two"[..]));
        assert_eq!(t.pending_secret, None);
        assert_eq!(t.last_step, 5);
    }

    #[test]
    fn raise_last_step_only_moves_forward() {
        let (_d, db, id) = account_with_pending_secret();
        db.write(|tx| tx.activate_secret(id, b"s", 10, b"salt", 1))
            .unwrap();
        assert!(!db.write(|tx| tx.raise_last_step(id, 10)).unwrap());
        assert!(!db.write(|tx| tx.raise_last_step(id, 9)).unwrap());
        assert!(db.write(|tx| tx.raise_last_step(id, 11)).unwrap());
        assert!(!db.write(|tx| tx.raise_last_step(id, 11)).unwrap());
    }

    #[test]
    fn a_failed_write_rolls_back() {
        let (_d, db) = db();
        let r: Result<(), Error> = db.write(|tx| {
            tx.create_account("a@b.c", None, 1)?;
            Err(Error::Conflict("no"))
        });
        assert_eq!(r, Err(Error::Conflict("no")));
        assert_eq!(db.read(|tx| tx.account_by_email("a@b.c")).unwrap(), None);
    }

    fn meta_names(db: &SqliteDb) -> Vec<String> {
        db.raw(|c| {
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
                        let r = db.write(|tx| {
                            tx.set_meta(&name, b"x")?;
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
                db.write(|tx| -> Result<(), Error> {
                    tx.set_meta("panicker", b"x")?;
                    panic!("a bug in a handler");
                })
            })
        };
        assert!(panicker.join().is_err());
        db.write(|tx| tx.set_meta("after", b"x")).unwrap();
        assert_eq!(meta_names(&db), ["after"]);
    }

    /// Two writers in one batch (the second queued while the first runs), whose COMMIT
    /// fails: both get the error, and neither change is in the database.
    #[test]
    fn a_failed_commit_fails_every_writer_of_its_batch() {
        let (_d, db) = db();
        let db = Arc::new(db);
        // A deferred foreign key is checked only at COMMIT: a way to make one fail.
        db.write_conn(|c| {
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
                db.write(|tx| tx.set_meta("second", b"x"))
            })
        };
        let first = db.write_conn(|c| {
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
            .raw(|c| c.query_row("SELECT count(*) FROM later", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 0);
        // And the connection is usable afterwards.
        db.write(|tx| tx.set_meta("after", b"x")).unwrap();
        assert_eq!(meta_names(&db), ["after"]);
    }

    #[test]
    fn debug_output_holds_no_secret_material() {
        let a = Account {
            id: 1,
            email: Some("a@b.c".into()),
            password_hash: Some("pbkdf2-sha256$600000$c2FsdA$aGFzaA".into()),
            external_subject: None,
            created_at: 1,
            updated_at: None,
            last_connected_at: None,
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
        let (_d, db, id) = account_with_pending_secret();
        for i in 1..3 {
            assert_eq!(
                db.write(|tx| tx.count_verify_failure(id, 3, 900)).unwrap(),
                (i, 0)
            );
        }
        assert_eq!(
            db.write(|tx| tx.count_verify_failure(id, 3, 900)).unwrap(),
            (0, 900)
        );
    }

    fn passkey(id: u8, account_id: i64, credential: &[u8]) -> crate::store::Passkey {
        crate::store::Passkey {
            id: [id; 16],
            account_id,
            credential_id: credential.to_vec(),
            public_key: vec![0xa0],
            alg: -8,
            sign_count: 0,
            name: "key".into(),
            created_at: 1,
            last_used_at: None,
        }
    }

    /// A credential id is one account's; the counter only grows (both-zero stays
    /// allowed); a delete names the account; the user handle is made once.
    #[test]
    fn passkeys_are_unique_their_counters_only_grow() {
        let (_d, db, a) = account_with_pending_secret();
        let b = db
            .write(|tx| tx.create_account("b@b.c", None, 1))
            .unwrap()
            .unwrap();
        assert!(db
            .write(|tx| tx.insert_passkey(&passkey(1, a, b"cred")))
            .unwrap());
        assert!(!db
            .write(|tx| tx.insert_passkey(&passkey(2, b, b"cred")))
            .unwrap());
        let id = [1u8; 16];
        assert!(
            db.write(|tx| tx.use_passkey(&id, 0, 5)).unwrap(),
            "both zero"
        );
        assert!(db.write(|tx| tx.use_passkey(&id, 3, 6)).unwrap());
        assert!(!db.write(|tx| tx.use_passkey(&id, 3, 7)).unwrap(), "equal");
        assert!(
            !db.write(|tx| tx.use_passkey(&id, 0, 7)).unwrap(),
            "back to zero"
        );
        let found = db
            .read(|tx| tx.passkey_by_credential(b"cred"))
            .unwrap()
            .unwrap();
        assert_eq!((found.sign_count, found.last_used_at), (3, Some(6)));
        let f = db.read(|tx| tx.second_factors(a)).unwrap();
        assert_eq!((f.totp, f.passkeys, f.any()), (false, 1, true));
        assert_eq!(f.methods(), ["passkey"]);
        assert!(
            !db.write(|tx| tx.delete_passkey(b, &id)).unwrap(),
            "not b's"
        );
        assert!(db.write(|tx| tx.delete_passkey(a, &id)).unwrap());
        assert!(!db.read(|tx| tx.second_factors(a)).unwrap().any());
        let first = db.write(|tx| tx.ensure_user_handle(a, &[7; 16])).unwrap();
        let second = db.write(|tx| tx.ensure_user_handle(a, &[8; 16])).unwrap();
        assert_eq!((first.clone(), second), (vec![7; 16], vec![7; 16]));
        // Another account cannot be given the same handle.
        assert!(db.write(|tx| tx.ensure_user_handle(b, &first)).is_err());
    }

    /// A ceremony is taken once, only as what it was made for, and only in time.
    #[test]
    fn ceremonies_are_single_use_and_bound() {
        use crate::store::Ceremony;
        let (_d, db, a) = account_with_pending_secret();
        let (c, mfa, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let second = Ceremony::SecondFactor {
            account: a,
            challenge: &mfa,
        };
        db.write(|tx| tx.insert_ceremony(&c, second, 100)).unwrap();
        for wrong in [
            Ceremony::Register { account: a },
            Ceremony::Login { session: &mfa },
            Ceremony::SecondFactor {
                account: a + 1,
                challenge: &mfa,
            },
            Ceremony::SecondFactor {
                account: a,
                challenge: &other,
            },
        ] {
            assert!(
                !db.write(|tx| tx.take_ceremony(&c, wrong, 50)).unwrap(),
                "{wrong:?}"
            );
        }
        assert!(
            !db.write(|tx| tx.take_ceremony(&c, second, 100)).unwrap(),
            "expired"
        );
        assert!(db.write(|tx| tx.take_ceremony(&c, second, 99)).unwrap());
        assert!(
            !db.write(|tx| tx.take_ceremony(&c, second, 99)).unwrap(),
            "once"
        );
        let login = Ceremony::Login { session: &other };
        db.write(|tx| tx.insert_ceremony(&c, login, 100)).unwrap();
        assert_eq!(db.write(|tx| tx.purge_expired(100)).unwrap(), 1);
        assert!(
            !db.write(|tx| tx.take_ceremony(&c, login, 99)).unwrap(),
            "purged"
        );
    }

    /// The trail reads back in order, by account and by time, and the retention purge
    /// deletes only what is older than its limit.
    #[test]
    fn the_audit_trail_filters_and_is_pruned_by_age() {
        let (_d, db, a) = account_with_pending_secret();
        for (at, who, event) in [
            (10, Some(a), "old"),
            (20, None, "anon"),
            (30, Some(a), "new"),
        ] {
            db.write(|tx| tx.audit(who, at, event, Some("d"))).unwrap();
        }
        let events = |who, since| -> Vec<String> {
            db.read(|tx| tx.audit_trail(who, since))
                .unwrap()
                .into_iter()
                .map(|r| r.event)
                .collect()
        };
        assert_eq!(events(None, 0), ["old", "anon", "new"]);
        assert_eq!(events(Some(a), 0), ["old", "new"]);
        assert_eq!(events(None, 20), ["anon", "new"]);
        let row = &db.read(|tx| tx.audit_trail(Some(a), 30)).unwrap()[0];
        assert_eq!(row.email.as_deref(), Some("a@b.c"));
        assert_eq!(db.write(|tx| tx.purge_audit(20)).unwrap(), 1);
        assert_eq!(events(None, 0), ["anon", "new"]);
    }
}
