//! `mfad migrate --to postgres://…`: every row of the SQLite database copied into an
//! empty PostgreSQL one, in one read transaction on the source (a consistent copy, the
//! file left as it was) and one write transaction on the target, which commits only
//! once each table's row count there equals the source's. The ids are kept, and so is
//! how far they had come (SQLite's AUTOINCREMENT never reuses one; nor will the target).

use postgres::types::ToSql;
use rusqlite::types::Value;

use super::postgres::PgDb;
use super::sqlite::SqliteDb;

/// A column's type on both sides.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
    /// SQLite's 0/1, PostgreSQL's boolean.
    Bool,
}

use Kind::{Bool, Bytes, Int, Text};

/// Every table, parents before children, with its columns.
const TABLES: [(&str, &[(&str, Kind)]); 13] = [
    (
        "accounts",
        &[
            ("id", Int),
            ("email", Text),
            ("password_hash", Text),
            ("external_subject", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("last_connected_at", Int),
            ("user_handle", Bytes),
        ],
    ),
    (
        "totp",
        &[
            ("account_id", Int),
            ("pending_secret", Bytes),
            ("active_secret", Bytes),
            ("last_step", Int),
            ("backup_salt", Bytes),
            ("enabled_at", Int),
            ("failed_verifies", Int),
            ("locked_until", Int),
        ],
    ),
    ("backup_codes", &[("account_id", Int), ("code_hash", Bytes)]),
    (
        "mfa_challenges",
        &[
            ("token_hash", Bytes),
            ("account_id", Int),
            ("expires_at", Int),
            ("failures", Int),
            ("purpose", Int),
        ],
    ),
    (
        "verifications",
        &[
            ("token_hash", Bytes),
            ("account_id", Int),
            ("method", Text),
            ("verified_at", Int),
            ("expires_at", Int),
        ],
    ),
    (
        "refresh_tokens",
        &[
            ("token_hash", Bytes),
            ("account_id", Int),
            ("family", Bytes),
            ("expires_at", Int),
            ("rotated", Bool),
            ("sign_in", Text),
            ("auth_time", Int),
            ("client_id", Text),
        ],
    ),
    (
        "sessions",
        &[
            ("token_hash", Bytes),
            ("account_id", Int),
            ("family", Bytes),
            ("sign_in", Text),
            ("auth_time", Int),
            ("expires_at", Int),
            ("last_used_at", Int),
        ],
    ),
    (
        "oidc_clients",
        &[
            ("id", Text),
            ("name", Text),
            ("secret_hash", Bytes),
            ("redirect_uris", Text),
            ("post_logout_uris", Text),
            ("policy", Text),
            ("id_token_alg", Text),
            ("created_at", Int),
        ],
    ),
    (
        "oidc_grants",
        &[
            ("family", Bytes),
            ("code_hash", Bytes),
            ("client_id", Text),
            ("account_id", Int),
            ("redirect_uri", Text),
            ("code_challenge", Text),
            ("nonce", Text),
            ("scope", Text),
            ("sign_in", Text),
            ("auth_time", Int),
            ("code_expires_at", Int),
            ("redeemed", Bool),
            ("expires_at", Int),
        ],
    ),
    (
        "passkeys",
        &[
            ("id", Bytes),
            ("account_id", Int),
            ("credential_id", Bytes),
            ("public_key", Bytes),
            ("alg", Int),
            ("sign_count", Int),
            ("name", Text),
            ("created_at", Int),
            ("last_used_at", Int),
        ],
    ),
    (
        "passkey_ceremonies",
        &[
            ("challenge_hash", Bytes),
            ("purpose", Int),
            ("account_id", Int),
            ("bound_to", Bytes),
            ("expires_at", Int),
        ],
    ),
    (
        "audit",
        &[
            ("id", Int),
            ("account_id", Int),
            ("at", Int),
            ("event", Text),
            ("detail", Text),
        ],
    ),
    ("meta", &[("name", Text), ("value", Bytes)]),
];

/// One value, typed for PostgreSQL (NULLs too: a parameter's type is fixed).
fn param(v: Value, kind: Kind, at: &str) -> Result<Box<dyn ToSql + Sync>, String> {
    let wrong = || format!("{at}: a value of an unexpected type");
    Ok(match (kind, v) {
        (Int, Value::Integer(i)) => Box::new(Some(i)),
        (Int, Value::Null) => Box::new(None::<i64>),
        (Bool, Value::Integer(i)) => Box::new(i != 0),
        (Text, Value::Text(s)) => Box::new(Some(s)),
        (Text, Value::Null) => Box::new(None::<String>),
        (Bytes, Value::Blob(b)) => Box::new(Some(b)),
        (Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
        _ => return Err(wrong()),
    })
}

/// Copies `source` into `target`, which must hold no row; the rows copied per table.
pub fn sqlite_to_postgres(
    source: &SqliteDb,
    target: &PgDb,
) -> Result<Vec<(&'static str, i64)>, String> {
    source.with_snapshot(|src| {
        target.with_transaction(|dst| {
            for (table, _) in TABLES {
                let n: i64 = dst
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .and_then(|r| r.try_get(0))
                    .map_err(|e| e.to_string())?;
                if n > 0 {
                    return Err(format!(
                        "the target is not empty ({table} has {n} rows): mfad migrate copies \
                         into an empty database only"
                    ));
                }
            }
            let mut copied = Vec::new();
            for (table, columns) in TABLES {
                let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
                let list = names.join(", ");
                let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
                // The identity columns take the source's ids as they are.
                let overriding = if names[0] == "id" && matches!(columns[0].1, Int) {
                    " OVERRIDING SYSTEM VALUE"
                } else {
                    ""
                };
                let insert = dst
                    .prepare(&format!(
                        "INSERT INTO {table} ({list}){overriding} VALUES ({})",
                        marks.join(", ")
                    ))
                    .map_err(|e| format!("{table}: {e}"))?;
                let mut select = src
                    .prepare(&format!("SELECT {list} FROM {table}"))
                    .map_err(|e| format!("{table}: {e}"))?;
                let mut rows = select.query([]).map_err(|e| format!("{table}: {e}"))?;
                let mut n = 0i64;
                while let Some(row) = rows.next().map_err(|e| format!("{table}: {e}"))? {
                    let mut values = Vec::with_capacity(columns.len());
                    for (i, (name, kind)) in columns.iter().enumerate() {
                        let v: Value = row.get(i).map_err(|e| format!("{table}.{name}: {e}"))?;
                        values.push(param(v, *kind, &format!("{table}.{name}"))?);
                    }
                    let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| &**b).collect();
                    dst.execute(&insert, &refs)
                        .map_err(|e| format!("{table}: {e}"))?;
                    n += 1;
                }
                let there: i64 = dst
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .and_then(|r| r.try_get(0))
                    .map_err(|e| e.to_string())?;
                if there != n {
                    return Err(format!("{table}: {n} rows read but {there} in the target"));
                }
                copied.push((table, n));
            }
            // Where the ids go on: past every id SQLite ever gave (a deleted account's
            // too), so that no token naming one can name a new account.
            for table in ["accounts", "audit"] {
                let next: i64 = src
                    .query_row(
                        &format!(
                            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = \
                             '{table}'), 0), coalesce((SELECT max(id) FROM {table}), 0)) + 1"
                        ),
                        [],
                        |r| r.get(0),
                    )
                    .or_else(|_| {
                        src.query_row(
                            &format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"),
                            [],
                            |r| r.get(0),
                        )
                    })
                    .map_err(|e| format!("{table}: {e}"))?;
                dst.batch_execute(&format!(
                    "ALTER TABLE {table} ALTER COLUMN id RESTART WITH {next}"
                ))
                .map_err(|e| format!("{table}: {e}"))?;
            }
            Ok(copied)
        })
    })
}
