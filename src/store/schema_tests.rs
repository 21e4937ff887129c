//! The tests of SQLite's schema and its migrations (`schema.rs`), through the engine
//! that applies them: a file of their own, so that `schema.rs` itself needs nothing of
//! `sqlite.rs`.

use rusqlite::Connection;

use super::schema::SCHEMA_VERSION;
use crate::durability::Durability;
use crate::store::sqlite::tests::db as new_db;
use crate::store::SqliteDb;

#[test]
fn schema_is_applied_once_and_versioned() {
    let (dir, db) = new_db();
    let v: i64 = db
        .with_conn(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
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
    let row = db.with_conn(|c| {
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
    let (_d, fresh) = new_db();
    assert_eq!(fresh.read(|tx| tx.meta("hs256_upgraded_at")).unwrap(), None);
}

/// Every table, column and index of a database, as SQLite describes them.
fn shape(db: &SqliteDb) -> Vec<String> {
    db.with_conn(|c| {
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
    let (_d, fresh) = new_db();
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
        .with_conn(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
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
    let old = db.with_conn(|c| {
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
    let (dir, db) = new_db();
    db.with_conn(|c| c.execute_batch("PRAGMA user_version = 99"))
        .unwrap();
    drop(db);
    let e = SqliteDb::open(&dir.path().join("t.db"), Durability::Normal)
        .err()
        .unwrap();
    assert!(e.0.contains("newer"), "{e}");
}
