//! The storage boundary. `service` sees only what this file names: the row types,
//! [`Tx`] (one method per thing the use cases need, each one statement or one small
//! fixed set of them) and [`Db`], which runs a closure in a read or in a write
//! transaction and hands it a `&Tx<'_>`. No engine type crosses this line.
//!
//! Every rule is written once (`queries/`, in one dialect) over the small [`engine`]
//! trait that both engines' connections implement; the engines differ only in how
//! they connect and commit. SQLite, the default (`sqlite.rs`: the file, `schema.sql`,
//! the group commit), and PostgreSQL for more than one node (`postgres.rs`: a pool,
//! `schema.pg.sql`, advisory locks, the shared throttle; the cargo feature `postgres`,
//! on by default). `janitor.rs` checkpoints SQLite's WAL and purges expired rows off
//! the request path; `migrate.rs` copies an SQLite database into PostgreSQL;
//! `session_cache.rs` keeps SQLite's session rows for forward-auth while nothing is
//! committed.

mod backup;
mod engine;
mod janitor;
#[cfg(feature = "postgres")]
mod migrate;
#[cfg(feature = "postgres")]
mod postgres;
mod queries;
mod schema;
#[cfg(test)]
mod schema_tests;
mod session_cache;
mod sqlite;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use janitor::Janitor;
#[cfg(feature = "postgres")]
pub use postgres::PgDb;
pub use queries::{Redeemed, Tx, SESSION_TOUCH_SECS};
pub use schema::SCHEMA_VERSION;
pub use sqlite::{OpenError, SqliteDb, MAX_BATCH};

/// The database: the embedded SQLite file, or a PostgreSQL server shared by nodes.
pub enum Db {
    Sqlite(SqliteDb),
    #[cfg(feature = "postgres")]
    Postgres(PgDb),
}

impl Db {
    /// Opens (creating) the SQLite database at `path`.
    pub fn open(path: &Path, durability: crate::durability::Durability) -> Result<Db, OpenError> {
        SqliteDb::open(path, durability).map(Db::Sqlite)
    }

    /// Connects to the PostgreSQL database at `url`, creating its schema when empty.
    pub fn connect_postgres(url: &str) -> Result<Db, OpenError> {
        #[cfg(feature = "postgres")]
        return PgDb::connect(url).map(Db::Postgres);
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            Err(OpenError(
                "this mfad was built without PostgreSQL (cargo feature `postgres`); build \
                 it with the default features, or use SQLite"
                    .into(),
            ))
        }
    }

    /// Runs `f` on the database outside a transaction (each statement is its own).
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        match self {
            Db::Sqlite(db) => db.read(f),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.read(f),
        }
    }

    /// The browser session of keyed hash `hash` with its account's names, whatever its
    /// age (the caller judges it). SQLite answers from a cache while nothing was
    /// committed since the row was read; PostgreSQL reads it every time (another node
    /// may have ended it).
    pub fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, Error> {
        match self {
            Db::Sqlite(db) => db.session(hash),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.read(|tx| tx.session(hash)),
        }
    }

    /// Runs `f` in a transaction and returns once it is committed; an error from `f`
    /// rolls back everything `f` did.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        match self {
            Db::Sqlite(db) => db.write(f),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.write(f),
        }
    }

    /// Takes a place in the throttle `name` shared by every node for `client`:
    /// `Some(Ok(id))` of the attempt, `Some(Err(oldest))` when `limit` attempts of the last
    /// 60 s are there already, or `None` when this engine has no shared throttle (SQLite's
    /// one node counts its attempts in memory).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub fn throttle_reserve(
        &self,
        name: &str,
        client: &str,
        limit: u32,
        now: i64,
    ) -> Result<Option<Result<i64, i64>>, Error> {
        match self {
            Db::Sqlite(_) => Ok(None),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.throttle_reserve(name, client, limit, now).map(Some),
        }
    }

    /// Gives back the place of attempt `id` of the shared throttle (it succeeded).
    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    pub fn throttle_release(&self, id: i64) -> Result<(), Error> {
        match self {
            Db::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.throttle_release(id),
        }
    }

    /// The SQLite engine, for what only it has (checkpoints, backups, the file).
    pub fn sqlite(&self) -> Option<&SqliteDb> {
        match self {
            Db::Sqlite(db) => Some(db),
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => None,
        }
    }

    /// Where the database is, for messages (a PostgreSQL URL without its password).
    pub fn shown(&self) -> String {
        match self {
            Db::Sqlite(db) => db.path().display().to_string(),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.shown().to_string(),
        }
    }

    /// The health check: the database answers a query.
    pub(crate) fn ping(&self) -> Result<(), Error> {
        match self {
            Db::Sqlite(db) => db.ping(),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => db.ping(),
        }
    }

    /// SQLite's `integrity_check` (PostgreSQL checks its own pages).
    pub fn integrity_check(&self) -> Result<(), String> {
        match self {
            Db::Sqlite(db) => db.integrity_check(),
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => Ok(()),
        }
    }

    /// A consistent copy in a new file (SQLite); PostgreSQL has its own tools.
    pub fn backup_to(&self, target: &Path) -> Result<u64, String> {
        match self {
            Db::Sqlite(db) => db.backup_to(target),
            #[cfg(feature = "postgres")]
            Db::Postgres(db) => Err(format!(
                "the database is PostgreSQL ({}): back it up with pg_dump (or your \
                 server's backups); mfad backup copies SQLite databases",
                db.shown()
            )),
        }
    }
}

use crate::auth::Login;
use crate::error::Error;

/// Copies the SQLite database `source` into `target`, an empty PostgreSQL database
/// (`mfad migrate`); the rows copied per table.
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub fn sqlite_to_postgres(
    source: &SqliteDb,
    target: &Db,
) -> Result<Vec<(&'static str, i64)>, String> {
    match target {
        #[cfg(feature = "postgres")]
        Db::Postgres(pg) => migrate::sqlite_to_postgres(source, pg),
        _ => Err("mfad migrate copies into PostgreSQL only".into()),
    }
}

/// An account row.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub external_subject: Option<String>,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub last_connected_at: Option<i64>,
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
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Emails are compared case-insensitively: they are stored and looked up lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// One line of `mfad user list`.
#[derive(Debug, Clone)]
pub struct AccountSummary {
    pub id: i64,
    pub name: String,
    pub has_password: bool,
    pub totp_enabled: bool,
    pub passkeys: i64,
    pub created_at: i64,
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

/// What an MFA challenge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The second step of a login.
    Login,
    /// A fresh second factor from an account already signed in (step-up).
    StepUp,
}

impl Purpose {
    fn code(self) -> i64 {
        match self {
            Purpose::Login => 0,
            Purpose::StepUp => 1,
        }
    }

    fn from_code(code: i64) -> Option<Purpose> {
        match code {
            0 => Some(Purpose::Login),
            1 => Some(Purpose::StepUp),
            _ => None,
        }
    }
}

/// The second factors an account has: what login and step-up offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondFactors {
    pub totp: bool,
    pub backup_codes: i64,
    pub passkeys: i64,
}

impl SecondFactors {
    /// Whether a login must ask for a second factor.
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }

    /// The methods that can answer a challenge, in Storno's order.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = Vec::with_capacity(3);
        if self.totp {
            m.push("totp");
        }
        if self.passkeys > 0 {
            m.push("passkey");
        }
        if self.totp && self.backup_codes > 0 {
            m.push("backup_code");
        }
        m
    }
}

/// A registered passkey. Nothing of it is secret: a public key and its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// mfad's own id of it (shown as a UUID), not the authenticator's.
    pub id: [u8; 16],
    pub account_id: i64,
    pub credential_id: Vec<u8>,
    /// The COSE key, as registered.
    pub public_key: Vec<u8>,
    pub alg: i64,
    pub sign_count: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// What a passkey ceremony is for, and what its answer must come with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony<'a> {
    /// `account` registering a passkey.
    Register { account: i64 },
    /// A passwordless login, finished with the keyed hash of its `sessionId`.
    Login { session: &'a [u8; 32] },
    /// A second factor of `account` for the MFA or step-up challenge (keyed hash).
    SecondFactor {
        account: i64,
        challenge: &'a [u8; 32],
    },
}

impl Ceremony<'_> {
    fn code(&self) -> i64 {
        match self {
            Ceremony::Register { .. } => 0,
            Ceremony::Login { .. } => 1,
            Ceremony::SecondFactor { .. } => 2,
        }
    }

    fn account(&self) -> Option<i64> {
        match self {
            Ceremony::Register { account } | Ceremony::SecondFactor { account, .. } => {
                Some(*account)
            }
            Ceremony::Login { .. } => None,
        }
    }

    fn bound_to(&self) -> Option<&[u8]> {
        match self {
            Ceremony::Register { .. } => None,
            Ceremony::Login { session: h } | Ceremony::SecondFactor { challenge: h, .. } => {
                Some(&h[..])
            }
        }
    }
}

/// An MFA challenge row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub account_id: i64,
    pub expires_at: i64,
    /// `None` for a purpose this mfad does not know (a newer one wrote it): never valid.
    pub purpose: Option<Purpose>,
}

/// A refresh token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub account_id: i64,
    pub family: Vec<u8>,
    pub expires_at: i64,
    pub rotated: bool,
    /// How and when its login was made; `None` for a way this mfad does not know (a
    /// newer one wrote it): never refreshed.
    pub login: Option<Login>,
}

/// A browser session row, with its account's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub account_id: i64,
    pub email: Option<String>,
    /// An external account's `sub`.
    pub subject: Option<String>,
    pub family: Vec<u8>,
    /// How and when its login was made; `None` for a way this mfad does not know.
    pub login: Option<Login>,
    /// The login's end.
    pub expires_at: i64,
    /// The last recorded use (at most a minute behind).
    pub last_used_at: i64,
}

/// An app registered with the OpenID provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClient {
    /// `client_id`.
    pub id: String,
    /// What the page calls it.
    pub name: String,
    /// The keyed hash of its secret; `None` for a public client.
    pub secret_hash: Option<Vec<u8>>,
    /// Compared exactly.
    pub redirect_uris: Vec<String>,
    pub post_logout_uris: Vec<String>,
    /// `one_factor` or `two_factor`.
    pub policy: String,
    /// `RS256` or `EdDSA`.
    pub id_token_alg: String,
    pub created_at: i64,
}

/// One authorization of an app: what its code is bound to, and what was issued from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The refresh family of what it issued; the `sid` of its access tokens.
    pub family: Vec<u8>,
    pub client_id: String,
    pub account_id: i64,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    /// Space-separated.
    pub scope: String,
    /// How and when the person signed in; `None` for a way this mfad does not know.
    pub login: Option<Login>,
    pub code_expires_at: i64,
    /// When nothing issued from it lives on.
    pub expires_at: i64,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub event: String,
    pub detail: Option<String>,
}

/// One event of the audit trail, with the account's email if it still exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub account_id: Option<i64>,
    pub email: Option<String>,
    pub at: i64,
    pub event: String,
    pub detail: Option<String>,
}
