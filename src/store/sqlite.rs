//! The SQLite engine: opening the file (WAL, foreign keys, busy timeout, `schema.sql`
//! versioned by `PRAGMA user_version`), running transactions with group commit, and
//! the [`Engine`] the queries (`queries.rs`) run on. The server's workers share one
//! [`SqliteDb`]: one writing connection behind a mutex, so writers queue on the mutex
//! instead of sleeping in SQLite's busy handler and every hold of it is a few
//! microseconds (nothing slow, PBKDF2 or rendering, runs inside one); and a few
//! read-only connections beside it for [`SqliteDb::read`], which WAL lets read while the
//! writer writes. A commit makes SQLite drop a reader's page cache, so the readers map
//! the file (`mmap_size`): their pages come from the kernel's cache, shared by all.
//! Writes go through [`SqliteDb::write`], one transaction each.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::engine::{sqlite_params, Dialect, Each, Engine, Param, Row, Value};
use super::schema;
use super::session_cache::{SessionCache, WalIndex};
use super::{Session, Tx};
use crate::durability::Durability;
use crate::error::Error;

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
/// theirs was acknowledged. A reader never sees a batch that is not committed: it reads
/// on a connection of its own, which sees only what was committed.
///
/// The mutex is not reentrant: a closure given to [`SqliteDb::read`] or [`SqliteDb::write`] must not
/// use the `SqliteDb` again (it gets the connection for that).
pub struct SqliteDb {
    /// Read-only connections of their own for [`SqliteDb::read`]: WAL lets them read
    /// beside the writer, each seeing what was committed when its statement began, so a
    /// check never waits behind another worker's write (nor another's read). Declared
    /// before the writer so that they close first: the last connection to close
    /// checkpoints the WAL into the file and removes it, which a read-only one cannot.
    readers: Vec<Mutex<Connection>>,
    /// The wal-index header's mapping (a connection of its own, also closed before the
    /// writer), when SQLite hands it out: what [`SqliteDb::session`]'s cache is checked
    /// against.
    wal_index: Option<WalIndex>,
    /// Session rows, current while the wal-index header is as it was (see
    /// `session_cache.rs`).
    sessions: SessionCache,
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

/// Reader connections: one per worker thread of the default four.
const READERS: usize = 4;

/// How much of the file a reader maps (more than a small install's whole database).
const READER_MMAP_BYTES: u64 = 256 << 20;

/// Which reader a new thread starts from.
static NEXT_READER: AtomicUsize = AtomicUsize::new(0);

/// A read-only connection to `path` (an attempt to write through it fails), with the
/// writer's statement cache and page cache sizes.
fn reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{PAGE_CACHE_KIB}; PRAGMA mmap_size = {READER_MMAP_BYTES}"
    ))?;
    Ok(conn)
}

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
        let mut db = SqliteDb {
            readers: Vec::new(),
            wal_index: None,
            sessions: SessionCache::new(),
            state: Mutex::new(State { conn, batch: None }),
            writers_waiting: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            path: path.to_path_buf(),
            durability,
        };
        db.migrate().map_err(|e| open_error(path, e))?;
        // After the migration: a reader never sees a schema older than its statements.
        for _ in 0..READERS {
            db.readers
                .push(Mutex::new(reader(path).map_err(|e| open_error(path, e))?));
        }
        db.wal_index = WalIndex::map(path);
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
        schema::migrate(&mut self.conn().conn)
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

    /// Runs `f` on the bare connection, no batch open (`mfad backup`).
    pub(super) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&self.conn().conn)
    }

    /// Runs `f` on the connection, outside a transaction (each statement is its own).
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let conn = self.reader();
        f(&Tx::new(&SqliteEngine { conn: &conn }))
    }

    /// The session row of `hash`, as [`Tx::session`] reads it, from the cache while
    /// nothing was committed since it was read (see `session_cache.rs`).
    pub fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, Error> {
        // Before the read: a commit after this point leaves the row tagged as older
        // than it may be, never as newer.
        let seen = self.wal_index.as_ref().and_then(WalIndex::header);
        if let Some(seen) = seen {
            if let Some(row) = self.sessions.get(hash, seen) {
                return Ok(Some(row));
            }
        }
        let row = self.read(|tx| tx.session(hash))?;
        if let (Some(seen), Some(row)) = (seen, &row) {
            self.sessions.put(hash, seen, row.clone());
        }
        Ok(row)
    }

    /// A reader connection: this thread's own if free, else any free one, else a wait
    /// for this thread's own.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        thread_local! {
            static MINE: usize = NEXT_READER.fetch_add(1, Ordering::Relaxed);
        }
        let start = MINE.with(|m| *m) % self.readers.len();
        for i in 0..self.readers.len() {
            let r = &self.readers[(start + i) % self.readers.len()];
            if let Ok(conn) = r.try_lock() {
                return conn;
            }
        }
        self.readers[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the connection inside one read transaction: everything it reads is
    /// of one moment, whatever a server writes meanwhile (`mfad migrate`).
    #[cfg(feature = "postgres")]
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

    fn query(&self, sql: &str, params: &[Param<'_>], each: Each<'_>) -> Result<(), Error> {
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
pub(super) mod tests {
    use super::*;

    /// A new database in a directory of its own (which must outlive it).
    pub(in crate::store) fn db() -> (tempfile::TempDir, SqliteDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
        (dir, db)
    }

    fn meta_names(db: &SqliteDb) -> Vec<String> {
        db.with_conn(|c| {
            c.prepare("SELECT name FROM meta ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .unwrap()
    }

    #[test]
    fn the_header_moves_with_every_commit_of_any_connection_and_only_then() {
        let (dir, db) = db();
        let path = dir.path().join("t.db");
        let index = WalIndex::map(&path).expect("the wal-index maps");
        let h0 = index.header().unwrap();
        // Reads and a checkpoint change nothing.
        db.ping().unwrap();
        db.checkpoint().unwrap();
        assert_eq!(index.header(), Some(h0));
        // A commit through the server's writer.
        db.write(|tx| tx.set_meta("a", b"x")).unwrap();
        let h1 = index.header().unwrap();
        assert_ne!(h1, h0);
        // A commit of another connection, as another process makes (`mfad user …`).
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE IF NOT EXISTS t (x); INSERT INTO t VALUES (1)")
            .unwrap();
        let h2 = index.header().unwrap();
        assert_ne!(h2, h1);
        other.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        assert_ne!(index.header().unwrap(), h2);
    }

    #[test]
    fn a_session_is_answered_from_the_cache_until_anything_is_committed() {
        let (_d, db) = db();
        let hash = [9u8; 32];
        assert_eq!(db.session(&hash).unwrap(), None);
        // A row only the cache has is given while nothing is committed...
        let seen = db.wal_index.as_ref().expect("mapped").header().unwrap();
        let row = crate::store::session_cache::tests::row(7);
        db.sessions.put(&hash, seen, row.clone());
        assert_eq!(db.session(&hash).unwrap(), Some(row.clone()));
        assert_eq!(db.session(&hash).unwrap(), Some(row));
        // ...and never after a commit, however unrelated: the database has no such row.
        db.write(|tx| tx.set_meta("other", b"x")).unwrap();
        assert_eq!(db.session(&hash).unwrap(), None);
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
            .with_conn(|c| c.query_row("SELECT count(*) FROM later", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 0);
        // And the connection is usable afterwards.
        db.write(|tx| tx.set_meta("after", b"x")).unwrap();
        assert_eq!(meta_names(&db), ["after"]);
    }
}
