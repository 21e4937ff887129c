//! SQLite's schema: `schema.sql` for a new database, its version in `PRAGMA
//! user_version`, and the migrations that take each earlier version to the next, all
//! in one transaction (a migration that fails leaves the file as it was).

use rusqlite::{Connection, TransactionBehavior};

pub(super) const SCHEMA: &str = include_str!("../../schema.sql");
pub const SCHEMA_VERSION: i64 = 7;
/// From each earlier version to the next: `MIGRATIONS[v - 1]` takes version v to v + 1.
const MIGRATIONS: [&str; 6] = [
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
    // 4 → 5: browser sessions (forward-auth).
    "CREATE TABLE sessions (
         token_hash   BLOB PRIMARY KEY,
         account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
         family       BLOB NOT NULL,
         sign_in      TEXT NOT NULL,
         auth_time    INTEGER NOT NULL,
         expires_at   INTEGER NOT NULL,
         last_used_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX sessions_family ON sessions(family);
     CREATE INDEX sessions_account ON sessions(account_id);",
    // 5 → 6: the OpenID provider's clients.
    "CREATE TABLE oidc_clients (
         id               TEXT PRIMARY KEY,
         name             TEXT NOT NULL,
         secret_hash      BLOB,
         redirect_uris    TEXT NOT NULL,
         post_logout_uris TEXT NOT NULL,
         policy           TEXT NOT NULL,
         id_token_alg     TEXT NOT NULL,
         created_at       INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 6 → 7: the OpenID provider's grants, and refresh tokens issued to apps.
    "ALTER TABLE refresh_tokens ADD COLUMN client_id TEXT;
     CREATE TABLE oidc_grants (
         family          BLOB PRIMARY KEY,
         code_hash       BLOB NOT NULL UNIQUE,
         client_id       TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
         account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
         redirect_uri    TEXT NOT NULL,
         code_challenge  TEXT,
         nonce           TEXT,
         scope           TEXT NOT NULL,
         sign_in         TEXT NOT NULL,
         auth_time       INTEGER NOT NULL,
         code_expires_at INTEGER NOT NULL,
         redeemed        INTEGER NOT NULL DEFAULT 0,
         expires_at      INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX oidc_grants_account ON oidc_grants(account_id);
     CREATE INDEX oidc_grants_client ON oidc_grants(client_id);",
];
/// Applies the schema to a new database, migrates an older one, refuses a newer one.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let tx = conn
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
