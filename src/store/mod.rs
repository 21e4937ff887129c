//! The storage boundary. `service` sees only what this file names: the row types, the
//! [`Tx`] trait (one method per thing the use cases need, each one statement or one
//! small fixed set of them), and [`Db`], which runs a closure in a read or in a write
//! transaction and hands it a `&dyn Tx`. No engine type crosses this line, so a second
//! engine (PostgreSQL) is a second implementation of `Tx` and of `Db`'s few methods,
//! not a rewrite of `service`.
//!
//! Two engines: SQLite, the default (`sqlite.rs` opens the file, applies `schema.sql`
//! and runs the group commit; `queries.rs` holds its SQL), and PostgreSQL for more than
//! one node (`postgres.rs`: a pool, `schema.pg.sql`, its SQL). `janitor.rs` checkpoints
//! SQLite's WAL and purges expired rows off the request path.

mod janitor;
mod migrate;
mod postgres;
mod queries;
mod sqlite;

use std::path::Path;

pub use janitor::Janitor;
pub use migrate::sqlite_to_postgres;
pub use postgres::PgDb;
pub use sqlite::{OpenError, SqliteDb, MAX_BATCH, SCHEMA_VERSION};

/// The database: the embedded SQLite file, or a PostgreSQL server shared by nodes.
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl Db {
    /// Opens (creating) the SQLite database at `path`.
    pub fn open(path: &Path, durability: crate::config::Durability) -> Result<Db, OpenError> {
        SqliteDb::open(path, durability).map(Db::Sqlite)
    }

    /// Connects to the PostgreSQL database at `url`, creating its schema when empty.
    pub fn connect_postgres(url: &str) -> Result<Db, OpenError> {
        PgDb::connect(url).map(Db::Postgres)
    }

    /// Runs `f` on the database outside a transaction (each statement is its own).
    pub fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, Error>) -> Result<T, Error> {
        match self {
            Db::Sqlite(db) => db.read(f),
            Db::Postgres(db) => db.read(f),
        }
    }

    /// Runs `f` in a transaction and returns once it is committed; an error from `f`
    /// rolls back everything `f` did.
    pub fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, Error>) -> Result<T, Error> {
        match self {
            Db::Sqlite(db) => db.write(f),
            Db::Postgres(db) => db.write(f),
        }
    }

    /// The engine's own throttle of many nodes, if it has one (PostgreSQL; SQLite's one
    /// node keeps its throttles in memory).
    pub fn shared(&self) -> Option<&PgDb> {
        match self {
            Db::Sqlite(_) => None,
            Db::Postgres(db) => Some(db),
        }
    }

    /// The SQLite engine, for what only it has (checkpoints, backups, the file).
    pub fn sqlite(&self) -> Option<&SqliteDb> {
        match self {
            Db::Sqlite(db) => Some(db),
            Db::Postgres(_) => None,
        }
    }

    /// Where the database is, for messages (a PostgreSQL URL without its password).
    pub fn shown(&self) -> String {
        match self {
            Db::Sqlite(db) => db.path().display().to_string(),
            Db::Postgres(db) => db.shown().to_string(),
        }
    }

    /// The health check: the database answers a query.
    pub(crate) fn ping(&self) -> Result<(), Error> {
        match self {
            Db::Sqlite(db) => db.ping(),
            Db::Postgres(db) => db.ping(),
        }
    }

    /// SQLite's `integrity_check` (PostgreSQL checks its own pages).
    pub fn integrity_check(&self) -> Result<(), String> {
        match self {
            Db::Sqlite(db) => db.integrity_check(),
            Db::Postgres(_) => Ok(()),
        }
    }

    /// A consistent copy in a new file (SQLite); PostgreSQL has its own tools.
    pub fn backup_to(&self, target: &Path) -> Result<u64, String> {
        match self {
            Db::Sqlite(db) => db.backup_to(target),
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

/// What a transaction can do. Every method that changes state is written so that two
/// transactions racing on the same row cannot both succeed (the `bool`s say who won).
pub trait Tx {
    // Accounts
    fn account_by_id(&self, id: i64) -> Result<Option<Account>, Error>;
    fn account_by_email(&self, email: &str) -> Result<Option<Account>, Error>;
    fn account_by_subject(&self, subject: &str) -> Result<Option<Account>, Error>;
    /// Creates a local account; `None` when the email is taken.
    fn create_account(
        &self,
        email: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, Error>;
    /// Finds or creates the account of an external token's subject.
    fn ensure_external_account(&self, subject: &str, now: i64) -> Result<Account, Error>;
    fn set_password(&self, id: i64, hash: &str) -> Result<bool, Error>;
    /// Records a change of the account itself (`updatedAt`).
    fn touch_updated(&self, id: i64, now: i64) -> Result<(), Error>;
    /// Records a successful login or refresh (`lastConnectedAt`).
    fn touch_connected(&self, id: i64, now: i64) -> Result<(), Error>;
    fn delete_account(&self, id: i64) -> Result<bool, Error>;
    fn list_accounts(&self) -> Result<Vec<AccountSummary>, Error>;

    // TOTP and backup codes
    fn totp(&self, account_id: i64) -> Result<Option<Totp>, Error>;
    /// Whether TOTP is on, the backup codes left and the passkeys, in one query.
    fn second_factors(&self, account_id: i64) -> Result<SecondFactors, Error>;
    fn totp_enabled(&self, account_id: i64) -> Result<bool, Error>;
    /// Stores a new pending secret, replacing an earlier pending one. Refused (`false`)
    /// when TOTP is already enabled, in the same statement.
    fn set_pending_secret(&self, account_id: i64, sealed: &[u8]) -> Result<bool, Error>;
    /// Makes `pending` (exactly the sealed bytes that were checked) the active secret and
    /// records the step its code matched. `false` if the state moved meanwhile.
    fn activate_secret(
        &self,
        account_id: i64,
        pending: &[u8],
        step: i64,
        backup_salt: &[u8],
        now: i64,
    ) -> Result<bool, Error>;
    /// Records that a code of `step` was accepted. `false` — the code is a replay — when
    /// a step at or after it was already accepted (RFC 6238 §5.2).
    fn raise_last_step(&self, account_id: i64, step: i64) -> Result<bool, Error>;
    /// Deletes every TOTP secret and backup code of an account; `true` if TOTP was on.
    fn clear_totp(&self, account_id: i64) -> Result<bool, Error>;
    /// Replaces all backup codes (and their salt) of an enabled account.
    fn replace_backup_codes(
        &self,
        account_id: i64,
        salt: &[u8],
        hashes: &[[u8; 32]],
    ) -> Result<(), Error>;
    /// Spends a backup code: `true` if it existed (the delete is the check).
    fn spend_backup_code(&self, account_id: i64, hash: &[u8; 32]) -> Result<bool, Error>;
    fn backup_codes_remaining(&self, account_id: i64) -> Result<i64, Error>;
    /// Counts a wrong second factor or password confirmation; locks the account when
    /// the count reaches `limit`. Returns the new count and the lock's end (0 when not
    /// locked).
    fn count_verify_failure(
        &self,
        account_id: i64,
        limit: i64,
        lock_until: i64,
    ) -> Result<(i64, i64), Error>;
    fn reset_verify_failures(&self, account_id: i64) -> Result<(), Error>;

    // MFA challenges
    fn insert_challenge(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        expires_at: i64,
        purpose: Purpose,
    ) -> Result<(), Error>;
    fn challenge(&self, hash: &[u8; 32]) -> Result<Option<Challenge>, Error>;
    /// Deletes a challenge; `true` if it was still there (so exactly one caller wins it).
    fn take_challenge(&self, hash: &[u8; 32]) -> Result<bool, Error>;
    /// Counts a wrong code against a challenge; the new count (0 if it is gone).
    fn count_challenge_failure(&self, hash: &[u8; 32]) -> Result<i64, Error>;

    // Passkeys and their ceremonies
    /// The account's WebAuthn user handle, if it has one yet.
    fn user_handle(&self, account_id: i64) -> Result<Option<Vec<u8>>, Error>;
    /// Gives the account `handle` unless it already has one; returns the one it has.
    fn ensure_user_handle(&self, account_id: i64, handle: &[u8]) -> Result<Vec<u8>, Error>;
    /// The account's passkeys, oldest first.
    fn passkeys(&self, account_id: i64) -> Result<Vec<Passkey>, Error>;
    fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<Passkey>, Error>;
    /// Stores a new passkey; `false` when its credential id is registered already (to
    /// anyone), in the same statement.
    fn insert_passkey(&self, passkey: &Passkey) -> Result<bool, Error>;
    /// Records a use: the new counter and the time. `false` — a replayed or cloned
    /// authenticator — when the counter does not grow (unless both are zero), in the
    /// same statement.
    fn use_passkey(&self, id: &[u8; 16], sign_count: i64, now: i64) -> Result<bool, Error>;
    /// Deletes one passkey of `account_id`; `false` if it has none of that id.
    fn delete_passkey(&self, account_id: i64, id: &[u8; 16]) -> Result<bool, Error>;
    /// Deletes every passkey of an account; how many there were.
    fn delete_passkeys(&self, account_id: i64) -> Result<usize, Error>;
    fn insert_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        expires_at: i64,
    ) -> Result<(), Error>;
    /// Ends the ceremony of this challenge if it is `ceremony` (same purpose, account and
    /// binding) and has not expired: `true` once (the delete is the check).
    fn take_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        now: i64,
    ) -> Result<bool, Error>;

    // Refresh tokens
    fn insert_refresh_token(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        family: &[u8],
        expires_at: i64,
        login: Login,
    ) -> Result<(), Error>;
    fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshToken>, Error>;
    /// Marks a token as exchanged; `false` if it already was (a concurrent refresh won).
    fn rotate_refresh_token(&self, hash: &[u8; 32]) -> Result<bool, Error>;
    /// Revokes every token descended from one login.
    fn revoke_family(&self, family: &[u8]) -> Result<usize, Error>;
    /// Revokes every refresh token of an account: every login of it ends.
    fn revoke_sessions(&self, account_id: i64) -> Result<usize, Error>;
    /// Stores a passed step-up until it is redeemed or expires.
    fn insert_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        method: &str,
        verified_at: i64,
        expires_at: i64,
    ) -> Result<(), Error>;
    /// Redeems a verification of `account_id` that has not expired: its method and when
    /// it was made, once (the delete is the check). Another account's is left alone.
    fn take_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        now: i64,
    ) -> Result<Option<(String, i64)>, Error>;
    /// Deletes expired challenges (MFA and passkey), verifications and refresh tokens;
    /// the janitor's.
    fn purge_expired(&self, now: i64) -> Result<usize, Error>;

    // Instance facts and the audit trail
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error>;
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), Error>;
    fn audit(
        &self,
        account_id: Option<i64>,
        now: i64,
        event: &str,
        detail: Option<&str>,
    ) -> Result<(), Error>;
    /// The newest `limit` events of an account, newest first.
    fn recent_audit(&self, account_id: i64, limit: i64) -> Result<Vec<AuditEvent>, Error>;
    /// Every event at or after `since` (of one account, or of all), oldest first.
    fn audit_trail(&self, account_id: Option<i64>, since: i64) -> Result<Vec<AuditRow>, Error>;
    /// Deletes the events older than `before` (`--audit-retention`); how many.
    fn purge_audit(&self, before: i64) -> Result<usize, Error>;
}
