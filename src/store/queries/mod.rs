//! Every storage rule, written once for both engines: [`Tx`], one method per thing the
//! use cases need, each one statement or a small fixed set of them, in PostgreSQL's
//! dialect with `$n` parameters (SQLite runs the same text; `engine.rs` says how). Races
//! are settled by the statements themselves (`… WHERE last_step < $2`, a `DELETE` that
//! reports whether it deleted), never by a read followed by a write: at READ COMMITTED,
//! a PostgreSQL statement that finds its row locked by a concurrent one waits for it and
//! checks its `WHERE` again on the new row; SQLite has one writer at a time.
//!
//! SQL that both engines run: `RETURNING`, upserts, `IS NOT DISTINCT FROM`, `TRUE`, and
//! `CAST(… AS BIGINT)` where PostgreSQL could not infer a parameter's type (never
//! `::`, which SQLite does not know). The one real dialect difference is named where it
//! branches ([`Tx::purge_expired`]). Accounts, instance facts and the audit trail are
//! here; `factors.rs` has the second factors and their challenges, `tokens.rs` the
//! refresh tokens, step-up verifications and the purge of what expired, `sessions.rs`
//! the browser sessions, `clients.rs` the OpenID provider's apps, `grants.rs` their
//! authorizations.

mod clients;
mod factors;
mod grants;
mod sessions;
mod tokens;

pub use grants::Redeemed;
pub use sessions::SESSION_TOUCH_SECS;

use super::engine::{params, Engine, Param, Row};
use super::{normalize_email, Account, AccountSummary, AuditEvent, AuditRow};
use crate::error::Error;

/// A transaction (or, for reads, a connection between transactions) of either engine,
/// as `service` sees it. Every method that changes state is written so that two
/// transactions racing on the same row cannot both succeed (the `bool`s say who won).
pub struct Tx<'a> {
    e: &'a dyn Engine,
}

/// The query of an account's columns (read by [`account`]), then `$tail`.
macro_rules! select_account {
    ($tail:literal) => {
        concat!(
            "SELECT id, email, password_hash, external_subject, created_at, updated_at, ",
            "last_connected_at FROM accounts",
            $tail
        )
    };
}

fn account(r: &dyn Row) -> Result<Account, Error> {
    Ok(Account {
        id: r.get(0)?,
        email: r.get(1)?,
        password_hash: r.get(2)?,
        external_subject: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        last_connected_at: r.get(6)?,
    })
}

/// A row that must be there (the statement just wrote it).
fn present<T>(v: Option<T>) -> Result<T, Error> {
    v.ok_or_else(|| {
        log::error!("database error: a row just written is not there");
        Error::Internal
    })
}

/// Text PostgreSQL cannot hold (NUL) matches nothing, on either engine: no stored email
/// or subject has one (every one stored was checked), and asking PostgreSQL would fail.
fn storable(text: &str) -> bool {
    !text.contains('\0')
}

impl<'a> Tx<'a> {
    pub(super) fn new(e: &'a dyn Engine) -> Tx<'a> {
        Tx { e }
    }

    fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, Error> {
        self.e.execute(sql, params)
    }

    /// The first row of `sql`'s result, if any, through `map`.
    fn opt<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        map: impl Fn(&dyn Row) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let mut first = None;
        self.e.query(sql, params, &mut |r| {
            if first.is_none() {
                first = Some(map(r)?);
            }
            Ok(())
        })?;
        Ok(first)
    }

    /// The row of a statement that always answers one (an aggregate, `RETURNING` of an
    /// upsert).
    fn one<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        map: impl Fn(&dyn Row) -> Result<T, Error>,
    ) -> Result<T, Error> {
        present(self.opt(sql, params, map)?)
    }

    fn all<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        map: impl Fn(&dyn Row) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let mut rows = Vec::new();
        self.e.query(sql, params, &mut |r| {
            rows.push(map(r)?);
            Ok(())
        })?;
        Ok(rows)
    }

    // Accounts

    pub fn account_by_id(&self, id: i64) -> Result<Option<Account>, Error> {
        self.opt(select_account!(" WHERE id = $1"), params![id], account)
    }

    pub fn account_by_email(&self, email: &str) -> Result<Option<Account>, Error> {
        if !storable(email) {
            return Ok(None);
        }
        let email = normalize_email(email);
        self.opt(
            select_account!(" WHERE email = $1"),
            params![email.as_str()],
            account,
        )
    }

    pub fn account_by_subject(&self, subject: &str) -> Result<Option<Account>, Error> {
        if !storable(subject) {
            return Ok(None);
        }
        self.opt(
            select_account!(" WHERE external_subject = $1"),
            params![subject],
            account,
        )
    }

    /// Creates a local account; `None` when the email is taken.
    pub fn create_account(
        &self,
        email: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, Error> {
        self.opt(
            "INSERT INTO accounts (email, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING id",
            params![normalize_email(email).as_str(), password_hash, now],
            |r| r.get(0),
        )
    }

    /// Finds or creates the account of an external token's subject.
    pub fn ensure_external_account(&self, subject: &str, now: i64) -> Result<Account, Error> {
        self.exec(
            "INSERT INTO accounts (external_subject, created_at) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            params![subject, now],
        )?;
        present(self.account_by_subject(subject)?)
    }

    pub fn set_password(&self, id: i64, hash: &str) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE accounts SET password_hash = $1 WHERE id = $2",
            params![hash, id],
        )? == 1)
    }

    /// Records a change of the account itself (`updatedAt`).
    pub fn touch_updated(&self, id: i64, now: i64) -> Result<(), Error> {
        self.exec(
            "UPDATE accounts SET updated_at = $2 WHERE id = $1",
            params![id, now],
        )?;
        Ok(())
    }

    /// Records a successful login or refresh (`lastConnectedAt`).
    pub fn touch_connected(&self, id: i64, now: i64) -> Result<(), Error> {
        self.exec(
            "UPDATE accounts SET last_connected_at = $2 WHERE id = $1",
            params![id, now],
        )?;
        Ok(())
    }

    pub fn delete_account(&self, id: i64) -> Result<bool, Error> {
        Ok(self.exec("DELETE FROM accounts WHERE id = $1", params![id])? == 1)
    }

    pub fn list_accounts(&self) -> Result<Vec<AccountSummary>, Error> {
        self.all(
            "SELECT a.id, coalesce(a.email, 'external:' || a.external_subject),
                    a.password_hash IS NOT NULL, t.active_secret IS NOT NULL, a.created_at,
                    (SELECT count(*) FROM passkeys p WHERE p.account_id = a.id)
             FROM accounts a LEFT JOIN totp t ON t.account_id = a.id ORDER BY a.id",
            &[],
            |r| {
                Ok(AccountSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    has_password: r.get(2)?,
                    totp_enabled: r.get::<Option<bool>>(3)?.unwrap_or(false),
                    created_at: r.get(4)?,
                    passkeys: r.get(5)?,
                })
            },
        )
    }

    // Instance facts and the audit trail

    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.opt(
            "SELECT value FROM meta WHERE name = $1",
            params![name],
            |r| r.get(0),
        )
    }

    pub fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.exec(
            "INSERT INTO meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    pub fn audit(
        &self,
        account_id: Option<i64>,
        now: i64,
        event: &str,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO audit (account_id, at, event, detail) VALUES ($1, $2, $3, $4)",
            params![account_id, now, event, detail],
        )?;
        Ok(())
    }

    /// The newest `limit` events of an account, newest first.
    pub fn recent_audit(&self, account_id: i64, limit: i64) -> Result<Vec<AuditEvent>, Error> {
        self.all(
            "SELECT at, event, detail FROM audit WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
            params![account_id, limit],
            |r| {
                Ok(AuditEvent {
                    at: r.get(0)?,
                    event: r.get(1)?,
                    detail: r.get(2)?,
                })
            },
        )
    }

    /// Every event at or after `since` (of one account, or of all), oldest first.
    pub fn audit_trail(&self, account_id: Option<i64>, since: i64) -> Result<Vec<AuditRow>, Error> {
        self.all(
            "SELECT e.account_id, a.email, e.at, e.event, e.detail
             FROM audit e LEFT JOIN accounts a ON a.id = e.account_id
             WHERE e.at >= $2 AND (CAST($1 AS BIGINT) IS NULL OR e.account_id = $1)
             ORDER BY e.id",
            params![account_id, since],
            |r| {
                Ok(AuditRow {
                    account_id: r.get(0)?,
                    email: r.get(1)?,
                    at: r.get(2)?,
                    event: r.get(3)?,
                    detail: r.get(4)?,
                })
            },
        )
    }

    /// Deletes the events older than `before` (`--audit-retention`); how many.
    pub fn purge_audit(&self, before: i64) -> Result<usize, Error> {
        let n = self.exec("DELETE FROM audit WHERE at < $1", params![before])?;
        Ok(n as usize)
    }
}
