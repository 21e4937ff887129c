//! Forward-auth's cache of session rows, for SQLite. A proxy asks about every request of
//! every protected app, and reading the row (a read transaction, one statement, the
//! row's decoding) was the whole difference between a check and `/healthz`
//! (docs/performance.md). A row read once is kept, and counts only while the database
//! is exactly as it was when it was read.
//!
//! "As it was" is SQLite's own test. In WAL mode every connection, of this process or
//! another (`mfad user …` run beside the server), learns what is committed from the
//! wal-index header at the start of the `-shm` file (sqlite.org/walformat.html, "The
//! WAL-Index Header"), and every commit rewrites it: its change counter goes up, its
//! frame count and checksums move, a WAL restart changes its salt. So a row tagged with
//! the header seen *before* it was read is current while the header is unchanged: no
//! commit can have happened since, and none can be seen by anyone before the header
//! shows it. Any write at all ends every cached row; the once-a-minute use record
//! included, which keeps a cached row's idle time right.
//!
//! The header is read through the mapping SQLite made for a connection kept open for
//! the purpose (`xShmMap` of its file), never through a file descriptor of our own:
//! closing one would drop the POSIX locks SQLite holds on the file. SQLite writes the
//! header's second copy, then the first; reading the first, then the second, and
//! taking them only when equal, is how its readers see a whole one (and ours too). If
//! the mapping cannot be had, there is no cache and every check reads the row.
//! PostgreSQL has no such header to watch, and another node may end a session: there,
//! every check reads.

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::path::Path;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use rusqlite::{ffi, Connection};

use super::Session;

/// One copy of the wal-index header: twelve 32-bit words (48 bytes).
const HEADER_WORDS: usize = 12;

/// The header as seen at one moment: a copy both of SQLite's agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header([u32; HEADER_WORDS]);

impl Header {
    /// The header of the two copies read (the first, then the second): `None` while
    /// they differ (a commit is rewriting them) or before SQLite has written one (its
    /// `isInit` byte, the first of the fourth word, is 0).
    pub(super) fn agreed(
        first: [u32; HEADER_WORDS],
        second: [u32; HEADER_WORDS],
    ) -> Option<Header> {
        let is_init = first[3].to_ne_bytes()[0];
        (first == second && is_init != 0).then_some(Header(first))
    }
}

/// The wal-index of the database, mapped: where its header is read.
pub(super) struct WalIndex {
    /// Keeps the mapping alive: SQLite unmaps it when the connection closes. Never used
    /// otherwise (the mutex only makes it shareable).
    _conn: Mutex<Connection>,
    /// The first byte of region 0 of the `-shm` mapping, which starts with both copies.
    shm: *const AtomicU32,
}

// SAFETY: `shm` points into a shared mapping that lives as long as `_conn` (SQLite maps
// each 32 KiB region once and never moves it) and is only read, with atomic loads; the
// connection is behind a mutex and never used. Any thread may own it...
unsafe impl Send for WalIndex {}
// SAFETY: ...and any number may read the header at once (atomic loads of shared memory).
unsafe impl Sync for WalIndex {}

/// The size of a wal-index region (walformat.html): region 0 holds the header.
const REGION_BYTES: i32 = 32 * 1024;

impl WalIndex {
    /// Maps the wal-index of the WAL-mode database at `path` through a read-only
    /// connection of its own. `None` (and a log line) if SQLite will not hand it out:
    /// then there is no cache.
    pub(super) fn map(path: &Path) -> Option<WalIndex> {
        match Self::try_map(path) {
            Ok(index) => Some(index),
            Err(why) => {
                log::warn!(
                    "forward-auth: session rows are not cached ({why}); every check reads \
                     the database"
                );
                None
            }
        }
    }

    fn try_map(path: &Path) -> Result<WalIndex, String> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| e.to_string())?;
        // One read opens the connection's WAL and maps the wal-index.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| e.to_string())?;
        let main: &CStr = c"main";
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: the handle is this open connection's; FILE_POINTER writes the main
        // database's `sqlite3_file*` (which lives as long as the connection) to `file`.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                main.as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&raw mut file).cast::<c_void>(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return Err(format!("no file handle (SQLite code {rc})"));
        }
        // SAFETY: `file` is SQLite's open file; its methods table is static.
        let methods = unsafe { (*file).pMethods.as_ref() }.ok_or("no file methods")?;
        let shm_map = match methods.xShmMap {
            Some(f) if methods.iVersion >= 2 => f,
            _ => return Err("the file system layer has no shared memory".into()),
        };
        let mut region: *mut c_void = std::ptr::null_mut();
        // SAFETY: region 0 already exists (the read above used it) and bExtend = 0 only
        // looks it up; SQLite writes its address to `region`.
        let rc = unsafe { shm_map(file, 0, REGION_BYTES, 0, &raw mut region) };
        if rc != ffi::SQLITE_OK || region.is_null() {
            return Err(format!("the wal-index is not mapped (SQLite code {rc})"));
        }
        let index = WalIndex {
            _conn: Mutex::new(conn),
            shm: region.cast::<AtomicU32>().cast_const(),
        };
        index
            .header()
            .map(|_| index)
            .ok_or_else(|| "the wal-index header is not written".into())
    }

    /// The header now, or `None` while a commit rewrites it.
    pub(super) fn header(&self) -> Option<Header> {
        let word = |i: usize| {
            // SAFETY: the first 96 bytes of region 0 are the two header copies, and the
            // mapping is page-aligned and lives as long as `self`.
            unsafe { &*self.shm.add(i) }.load(Ordering::Relaxed)
        };
        let first: [u32; HEADER_WORDS] = std::array::from_fn(word);
        fence(Ordering::Acquire);
        let second: [u32; HEADER_WORDS] = std::array::from_fn(|i| word(HEADER_WORDS + i));
        // Whatever is read after this (the row) is no older than `first`.
        fence(Ordering::Acquire);
        Header::agreed(first, second)
    }
}

/// Rows kept at most: a cache full of rows (sessions of a busy install, or of
/// somebody's cookie guesses, which are never kept) starts again empty.
const MAX_ROWS: usize = 4096;

/// Parts of the cache with a lock each, chosen by the first byte of the row's key (a
/// keyed hash: evenly spread).
const SHARDS: usize = 16;

/// One part of the cache: rows by their keyed hash, each with the header seen before
/// it was read.
type Shard = HashMap<[u8; 32], (Header, Session)>;

/// Session rows, in [`SHARDS`] parts.
pub(super) struct SessionCache {
    shards: Box<[Mutex<Shard>]>,
}

impl SessionCache {
    pub(super) fn new() -> SessionCache {
        SessionCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
        }
    }

    fn shard(&self, hash: &[u8; 32]) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[usize::from(hash[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The row of `hash` if it was read while the header was `now`.
    pub(super) fn get(&self, hash: &[u8; 32], now: Header) -> Option<Session> {
        match self.shard(hash).get(hash) {
            Some((seen, row)) if *seen == now => Some(row.clone()),
            _ => None,
        }
    }

    /// Keeps `row`, read after the header was `seen`.
    pub(super) fn put(&self, hash: &[u8; 32], seen: Header, row: Session) {
        let mut shard = self.shard(hash);
        if shard.len() >= MAX_ROWS / SHARDS && !shard.contains_key(hash) {
            shard.clear();
        }
        shard.insert(*hash, (seen, row));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::auth::{Login, SignIn};

    fn words(change: u32, init: u8) -> [u32; HEADER_WORDS] {
        let mut w = [7u32; HEADER_WORDS];
        w[2] = change;
        w[3] = u32::from_ne_bytes([init, 0, 0, 0x10]);
        w
    }

    #[test]
    fn a_header_counts_only_when_both_copies_agree_and_it_is_written() {
        assert_eq!(
            Header::agreed(words(5, 1), words(5, 1)),
            Some(Header(words(5, 1)))
        );
        // Mid-commit: the second copy is new, the first not yet.
        assert_eq!(Header::agreed(words(5, 1), words(6, 1)), None);
        // Never written (a fresh wal-index).
        assert_eq!(Header::agreed(words(0, 0), words(0, 0)), None);
    }

    pub(in crate::store) fn row(account_id: i64) -> Session {
        Session {
            account_id,
            email: Some("ana@example.com".into()),
            subject: None,
            family: vec![1; 16],
            login: Some(Login {
                how: SignIn::Password,
                at: 100,
            }),
            expires_at: 1000,
            last_used_at: 100,
        }
    }

    #[test]
    fn a_row_is_given_only_under_the_header_it_was_read_under() {
        let cache = SessionCache::new();
        let before = Header(words(5, 1));
        let after = Header(words(6, 1));
        let key = [3u8; 32];
        assert_eq!(cache.get(&key, before), None);
        cache.put(&key, before, row(1));
        assert_eq!(cache.get(&key, before), Some(row(1)));
        assert_eq!(cache.get(&key, after), None);
        assert_eq!(cache.get(&[4u8; 32], before), None);
        cache.put(&key, after, row(2));
        assert_eq!(cache.get(&key, after), Some(row(2)));
        assert_eq!(cache.get(&key, before), None);
    }

    #[test]
    fn a_full_part_starts_again_empty() {
        let cache = SessionCache::new();
        let h = Header(words(5, 1));
        // Keys of one part (same first byte): its share of MAX_ROWS, then one more.
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[1..9].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        for i in 0..MAX_ROWS / SHARDS {
            cache.put(&key(i), h, row(1));
        }
        assert!(cache.get(&key(0), h).is_some());
        // Rewriting a kept row does not empty it.
        cache.put(&key(0), h, row(2));
        assert_eq!(cache.get(&key(1), h), Some(row(1)));
        cache.put(&key(MAX_ROWS), h, row(3));
        assert_eq!(cache.get(&key(0), h), None);
        assert_eq!(cache.get(&key(MAX_ROWS), h), Some(row(3)));
        assert_eq!(cache.shard(&key(0)).len(), 1);
    }
}
