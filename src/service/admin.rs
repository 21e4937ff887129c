//! The admin commands' use cases (`mfad token`, `mfad user …`): the same storage and
//! audit trail as the server's, for `cli.rs` to format. Each change and its audit event
//! are one transaction.

use crate::error::Error;
use crate::store::{Account, AccountSummary, AuditEvent, AuditRow, Db, Passkey, Totp};

/// Events `mfad user show` prints.
pub(crate) const SHOWN_EVENTS: i64 = 20;

/// An account by email.
pub fn find(db: &Db, email: &str) -> Result<Option<Account>, Error> {
    db.read(|tx| tx.account_by_email(email))
}

/// The account `mfad token` signs for, created (without a password) if absent.
pub(crate) fn token_account(db: &Db, email: &str, now: i64) -> Result<Account, Error> {
    db.write(|tx| {
        if let Some(id) = tx.create_account(email, None, now)? {
            tx.audit(Some(id), now, "account_created", Some("by mfad token"))?;
        }
        tx.account_by_email(email)?.ok_or(Error::Internal)
    })
}

/// Adds a local account; `None` when the email is taken.
pub fn add_user(db: &Db, email: &str, password_hash: &str, now: i64) -> Result<Option<i64>, Error> {
    db.write(|tx| {
        let id = tx.create_account(email, Some(password_hash), now)?;
        if let Some(id) = id {
            tx.audit(Some(id), now, "account_created", Some("by mfad user add"))?;
        }
        Ok(id)
    })
}

/// Sets an account's password; every login of the account ends.
pub fn set_password(db: &Db, id: i64, password_hash: &str, now: i64) -> Result<(), Error> {
    db.write(|tx| {
        tx.set_password(id, password_hash)?;
        tx.touch_updated(id, now)?;
        tx.revoke_sessions(id)?;
        tx.audit(Some(id), now, "password_changed", Some("by admin"))
    })
}

pub fn list(db: &Db) -> Result<Vec<AccountSummary>, Error> {
    db.read(|tx| tx.list_accounts())
}

/// What `mfad user show` prints of an account.
#[derive(Debug)]
pub struct Report {
    pub totp_enabled: bool,
    pub backup_codes_remaining: i64,
    pub totp: Totp,
    pub passkeys: Vec<Passkey>,
    pub events: Vec<AuditEvent>,
}

pub fn show(db: &Db, id: i64) -> Result<Report, Error> {
    db.read(|tx| {
        Ok(Report {
            totp_enabled: tx.totp_enabled(id)?,
            backup_codes_remaining: tx.backup_codes_remaining(id)?,
            totp: tx.totp(id)?.unwrap_or_default(),
            passkeys: tx.passkeys(id)?,
            events: tx.recent_audit(id, SHOWN_EVENTS)?,
        })
    })
}

/// What `mfad user reset-mfa` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    pub totp_was_on: bool,
    pub passkeys_removed: usize,
}

/// Turns TOTP off and, unless `keep_passkeys`, removes the passkeys (the lost-device
/// path), and ends every login.
pub(crate) fn reset_mfa(db: &Db, id: i64, keep_passkeys: bool, now: i64) -> Result<Reset, Error> {
    let reset = db.write(|tx| {
        let totp_was_on = tx.clear_totp(id)?;
        let passkeys_removed = if keep_passkeys {
            0
        } else {
            tx.delete_passkeys(id)?
        };
        // The lost device may be a stolen one: its logins end too.
        tx.revoke_sessions(id)?;
        let detail = format!("totp removed; {passkeys_removed} passkeys removed");
        tx.audit(Some(id), now, "mfa_reset_by_admin", Some(&detail))?;
        Ok(Reset {
            totp_was_on,
            passkeys_removed,
        })
    })?;
    log::info!("audit: mfa_reset_by_admin account={id}");
    Ok(reset)
}

/// Deletes an account and everything it owns; the audit trail stays.
pub fn delete(db: &Db, id: i64, now: i64) -> Result<(), Error> {
    db.write(|tx| {
        tx.revoke_sessions(id)?;
        tx.delete_account(id)?;
        tx.audit(Some(id), now, "account_deleted", None)
    })
}

/// The audit trail at or after `since`, of one account or of all, oldest first.
pub fn audit(db: &Db, account: Option<i64>, since: i64) -> Result<Vec<AuditRow>, Error> {
    db.read(|tx| tx.audit_trail(account, since))
}
