//! The SQL behind [`Tx`]: one method per query, each through SQLite's statement cache.
//! Races are settled by the statements themselves (`… WHERE last_step < ?`, a `DELETE`
//! that reports whether it deleted), never by a read followed by a write.

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    normalize_email, Account, AccountSummary, AuditEvent, AuditRow, Ceremony, Challenge, Passkey,
    Purpose, RefreshToken, SecondFactors, Totp, Tx,
};
use crate::auth::{Login, SignIn};
use crate::error::Error;

/// A transaction (or, for reads, the connection between transactions) of the SQLite
/// engine, as `service` sees it through [`Tx`].
pub(super) struct SqliteTx<'c> {
    pub(super) conn: &'c Connection,
}

const ACCOUNT_COLUMNS: &str =
    "id, email, password_hash, external_subject, created_at, updated_at, last_connected_at";

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
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

const PASSKEY_COLUMNS: &str = "id, account_id, credential_id, public_key, alg, sign_count, name, \
                               created_at, last_used_at";

fn passkey_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Passkey> {
    let id: Vec<u8> = r.get(0)?;
    Ok(Passkey {
        // Always 16 bytes as written; another length is a damaged row, never a match.
        id: id.try_into().unwrap_or([0; 16]),
        account_id: r.get(1)?,
        credential_id: r.get(2)?,
        public_key: r.get(3)?,
        alg: r.get(4)?,
        sign_count: r.get(5)?,
        name: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

impl Tx for SqliteTx<'_> {
    fn account_by_id(&self, id: i64) -> Result<Option<Account>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
        ))?
        .query_row([id], account_row)
        .optional()?)
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1"
        ))?
        .query_row([normalize_email(email)], account_row)
        .optional()?)
    }

    fn account_by_subject(&self, subject: &str) -> Result<Option<Account>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE external_subject = ?1"
        ))?
        .query_row([subject], account_row)
        .optional()?)
    }

    fn create_account(
        &self,
        email: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached(
                "INSERT INTO accounts (email, password_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            )?
            .execute(params![normalize_email(email), password_hash, now])?;
        Ok((n == 1).then(|| c.last_insert_rowid()))
    }

    fn ensure_external_account(&self, subject: &str, now: i64) -> Result<Account, Error> {
        let c = self.conn;
        c.prepare_cached(
            "INSERT INTO accounts (external_subject, created_at) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
        )?
        .execute(params![subject, now])?;
        Ok(self
            .account_by_subject(subject)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?)
    }

    fn set_password(&self, id: i64, hash: &str) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached("UPDATE accounts SET password_hash = ?1 WHERE id = ?2")?
            .execute(params![hash, id])?;
        Ok(n == 1)
    }

    fn touch_updated(&self, id: i64, now: i64) -> Result<(), Error> {
        self.conn
            .prepare_cached("UPDATE accounts SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        Ok(())
    }

    fn touch_connected(&self, id: i64, now: i64) -> Result<(), Error> {
        self.conn
            .prepare_cached("UPDATE accounts SET last_connected_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        Ok(())
    }

    fn delete_account(&self, id: i64) -> Result<bool, Error> {
        let c = self.conn;
        Ok(c.prepare_cached("DELETE FROM accounts WHERE id = ?1")?
            .execute([id])?
            == 1)
    }

    fn list_accounts(&self) -> Result<Vec<AccountSummary>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT a.id, coalesce(a.email, 'external:' || a.external_subject),
                a.password_hash IS NOT NULL, t.active_secret IS NOT NULL, a.created_at,
                (SELECT count(*) FROM passkeys p WHERE p.account_id = a.id)
         FROM accounts a LEFT JOIN totp t ON t.account_id = a.id ORDER BY a.id",
        )?
        .query_map([], |r| {
            Ok(AccountSummary {
                id: r.get(0)?,
                name: r.get(1)?,
                has_password: r.get(2)?,
                totp_enabled: r.get::<_, Option<bool>>(3)?.unwrap_or(false),
                created_at: r.get(4)?,
                passkeys: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
    }

    fn totp(&self, account_id: i64) -> Result<Option<Totp>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT pending_secret, active_secret, last_step, backup_salt, failed_verifies,
                locked_until
         FROM totp WHERE account_id = ?1",
        )?
        .query_row([account_id], |r| {
            Ok(Totp {
                pending_secret: r.get(0)?,
                active_secret: r.get(1)?,
                last_step: r.get(2)?,
                backup_salt: r.get(3)?,
                failed_verifies: r.get(4)?,
                locked_until: r.get(5)?,
            })
        })
        .optional()?)
    }

    fn second_factors(&self, account_id: i64) -> Result<SecondFactors, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM totp WHERE account_id = ?1 AND active_secret IS NOT NULL),
                    (SELECT count(*) FROM backup_codes WHERE account_id = ?1),
                    (SELECT count(*) FROM passkeys WHERE account_id = ?1)",
        )?
        .query_row([account_id], |r| {
            Ok(SecondFactors {
                totp: r.get(0)?,
                backup_codes: r.get(1)?,
                passkeys: r.get(2)?,
            })
        })?)
    }

    fn totp_enabled(&self, account_id: i64) -> Result<bool, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT 1 FROM totp WHERE account_id = ?1 AND active_secret IS NOT NULL",
        )?
        .query_row([account_id], |_| Ok(()))
        .optional()?
        .is_some())
    }

    fn set_pending_secret(&self, account_id: i64, sealed: &[u8]) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached(
                "INSERT INTO totp (account_id, pending_secret) VALUES (?1, ?2)
             ON CONFLICT (account_id) DO UPDATE SET pending_secret = excluded.pending_secret
             WHERE totp.active_secret IS NULL",
            )?
            .execute(params![account_id, sealed])?;
        Ok(n == 1)
    }

    fn activate_secret(
        &self,
        account_id: i64,
        pending: &[u8],
        step: i64,
        backup_salt: &[u8],
        now: i64,
    ) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached(
                "UPDATE totp SET active_secret = pending_secret, pending_secret = NULL,
                    last_step = ?3, backup_salt = ?4, enabled_at = ?5,
                    failed_verifies = 0, locked_until = 0
             WHERE account_id = ?1 AND active_secret IS NULL AND pending_secret = ?2",
            )?
            .execute(params![account_id, pending, step, backup_salt, now])?;
        Ok(n == 1)
    }

    fn raise_last_step(&self, account_id: i64, step: i64) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached(
                "UPDATE totp SET last_step = ?2
             WHERE account_id = ?1 AND active_secret IS NOT NULL AND last_step < ?2",
            )?
            .execute(params![account_id, step])?;
        Ok(n == 1)
    }

    fn clear_totp(&self, account_id: i64) -> Result<bool, Error> {
        let c = self.conn;
        let had = self.totp_enabled(account_id)?;
        c.prepare_cached("DELETE FROM totp WHERE account_id = ?1")?
            .execute([account_id])?;
        c.prepare_cached("DELETE FROM backup_codes WHERE account_id = ?1")?
            .execute([account_id])?;
        Ok(had)
    }

    fn replace_backup_codes(
        &self,
        account_id: i64,
        salt: &[u8],
        hashes: &[[u8; 32]],
    ) -> Result<(), Error> {
        let c = self.conn;
        c.prepare_cached("UPDATE totp SET backup_salt = ?2 WHERE account_id = ?1")?
            .execute(params![account_id, salt])?;
        c.prepare_cached("DELETE FROM backup_codes WHERE account_id = ?1")?
            .execute([account_id])?;
        let mut insert =
            c.prepare_cached("INSERT INTO backup_codes (account_id, code_hash) VALUES (?1, ?2)")?;
        for h in hashes {
            insert.execute(params![account_id, &h[..]])?;
        }
        Ok(())
    }

    fn spend_backup_code(&self, account_id: i64, hash: &[u8; 32]) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached("DELETE FROM backup_codes WHERE account_id = ?1 AND code_hash = ?2")?
            .execute(params![account_id, &hash[..]])?;
        Ok(n == 1)
    }

    fn backup_codes_remaining(&self, account_id: i64) -> Result<i64, Error> {
        let c = self.conn;
        Ok(
            c.prepare_cached("SELECT count(*) FROM backup_codes WHERE account_id = ?1")?
                .query_row([account_id], |r| r.get(0))?,
        )
    }

    fn count_verify_failure(
        &self,
        account_id: i64,
        limit: i64,
        lock_until: i64,
    ) -> Result<(i64, i64), Error> {
        let c = self.conn;
        // An account without TOTP gets a row too: wrong password confirmations count.
        Ok(c.prepare_cached(
            "INSERT INTO totp (account_id, failed_verifies, locked_until)
             VALUES (?1, CASE WHEN ?2 <= 1 THEN 0 ELSE 1 END,
                         CASE WHEN ?2 <= 1 THEN ?3 ELSE 0 END)
             ON CONFLICT (account_id) DO UPDATE SET
                 locked_until = CASE WHEN failed_verifies + 1 >= ?2 THEN ?3
                                     ELSE locked_until END,
                 failed_verifies = CASE WHEN failed_verifies + 1 >= ?2 THEN 0
                                        ELSE failed_verifies + 1 END
             RETURNING failed_verifies, locked_until",
        )?
        .query_row(params![account_id, limit, lock_until], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
    }

    fn reset_verify_failures(&self, account_id: i64) -> Result<(), Error> {
        let c = self.conn;
        c.prepare_cached(
            "UPDATE totp SET failed_verifies = 0 WHERE account_id = ?1 AND failed_verifies != 0",
        )?
        .execute([account_id])?;
        Ok(())
    }

    fn insert_challenge(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        expires_at: i64,
        purpose: Purpose,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO mfa_challenges (token_hash, account_id, expires_at, purpose)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![&hash[..], account_id, expires_at, purpose.code()])?;
        Ok(())
    }

    fn challenge(&self, hash: &[u8; 32]) -> Result<Option<Challenge>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT account_id, expires_at, purpose FROM mfa_challenges
                 WHERE token_hash = ?1",
            )?
            .query_row([&hash[..]], |r| {
                Ok(Challenge {
                    account_id: r.get(0)?,
                    expires_at: r.get(1)?,
                    purpose: Purpose::from_code(r.get(2)?),
                })
            })
            .optional()?)
    }

    fn take_challenge(&self, hash: &[u8; 32]) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached("DELETE FROM mfa_challenges WHERE token_hash = ?1")?
            .execute([&hash[..]])?;
        Ok(n == 1)
    }

    fn count_challenge_failure(&self, hash: &[u8; 32]) -> Result<i64, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = ?1
         RETURNING failures",
        )?
        .query_row([&hash[..]], |r| r.get(0))
        .optional()
        .map(|o| o.unwrap_or(0))?)
    }

    fn user_handle(&self, account_id: i64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .conn
            .prepare_cached("SELECT user_handle FROM accounts WHERE id = ?1")?
            .query_row([account_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    fn ensure_user_handle(&self, account_id: i64, handle: &[u8]) -> Result<Vec<u8>, Error> {
        self.conn
            .prepare_cached(
                "UPDATE accounts SET user_handle = ?2 WHERE id = ?1 AND user_handle IS NULL",
            )?
            .execute(params![account_id, handle])?;
        Ok(self
            .user_handle(account_id)?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?)
    }

    fn passkeys(&self, account_id: i64) -> Result<Vec<Passkey>, Error> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE account_id = ?1
                 ORDER BY created_at, id"
            ))?
            .query_map([account_id], passkey_row)?
            .collect::<rusqlite::Result<_>>()?)
    }

    fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<Passkey>, Error> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?1"
            ))?
            .query_row([credential_id], passkey_row)
            .optional()?)
    }

    fn insert_passkey(&self, p: &Passkey) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO passkeys ({PASSKEY_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT DO NOTHING"
            ))?
            .execute(params![
                &p.id[..],
                p.account_id,
                p.credential_id,
                p.public_key,
                p.alg,
                p.sign_count,
                p.name,
                p.created_at,
                p.last_used_at
            ])?;
        Ok(n == 1)
    }

    fn use_passkey(&self, id: &[u8; 16], sign_count: i64, now: i64) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE passkeys SET sign_count = ?2, last_used_at = ?3
                 WHERE id = ?1 AND (sign_count < ?2 OR (sign_count = 0 AND ?2 = 0))",
            )?
            .execute(params![&id[..], sign_count, now])?;
        Ok(n == 1)
    }

    fn delete_passkey(&self, account_id: i64, id: &[u8; 16]) -> Result<bool, Error> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM passkeys WHERE id = ?1 AND account_id = ?2")?
            .execute(params![&id[..], account_id])?;
        Ok(n == 1)
    }

    fn delete_passkeys(&self, account_id: i64) -> Result<usize, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM passkeys WHERE account_id = ?1")?
            .execute([account_id])?)
    }

    fn insert_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        expires_at: i64,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO passkey_ceremonies
                     (challenge_hash, purpose, account_id, bound_to, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &challenge_hash[..],
                ceremony.code(),
                ceremony.account(),
                ceremony.bound_to(),
                expires_at
            ])?;
        Ok(())
    }

    fn take_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        now: i64,
    ) -> Result<bool, Error> {
        // `IS`: equal, NULL included (a registration has no binding, a login no account).
        let n = self
            .conn
            .prepare_cached(
                "DELETE FROM passkey_ceremonies
                 WHERE challenge_hash = ?1 AND purpose = ?2 AND account_id IS ?3
                   AND bound_to IS ?4 AND expires_at > ?5",
            )?
            .execute(params![
                &challenge_hash[..],
                ceremony.code(),
                ceremony.account(),
                ceremony.bound_to(),
                now
            ])?;
        Ok(n == 1)
    }

    fn insert_refresh_token(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        family: &[u8],
        expires_at: i64,
        login: Login,
    ) -> Result<(), Error> {
        let c = self.conn;
        c.prepare_cached(
            "INSERT INTO refresh_tokens
                 (token_hash, account_id, family, expires_at, sign_in, auth_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            &hash[..],
            account_id,
            family,
            expires_at,
            login.how.as_str(),
            login.at
        ])?;
        Ok(())
    }

    fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshToken>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT account_id, family, expires_at, rotated, sign_in, auth_time
         FROM refresh_tokens WHERE token_hash = ?1",
        )?
        .query_row([&hash[..]], |r| {
            let how: String = r.get(4)?;
            let at: i64 = r.get(5)?;
            Ok(RefreshToken {
                account_id: r.get(0)?,
                family: r.get(1)?,
                expires_at: r.get(2)?,
                rotated: r.get(3)?,
                login: SignIn::from_stored(&how).map(|how| Login { how, at }),
            })
        })
        .optional()?)
    }

    fn rotate_refresh_token(&self, hash: &[u8; 32]) -> Result<bool, Error> {
        let c = self.conn;
        let n = c
            .prepare_cached(
                "UPDATE refresh_tokens SET rotated = 1 WHERE token_hash = ?1 AND rotated = 0",
            )?
            .execute([&hash[..]])?;
        Ok(n == 1)
    }

    fn revoke_family(&self, family: &[u8]) -> Result<usize, Error> {
        let c = self.conn;
        Ok(
            c.prepare_cached("DELETE FROM refresh_tokens WHERE family = ?1")?
                .execute([family])?,
        )
    }

    fn revoke_sessions(&self, account_id: i64) -> Result<usize, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM refresh_tokens WHERE account_id = ?1")?
            .execute([account_id])?)
    }

    fn insert_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        method: &str,
        verified_at: i64,
        expires_at: i64,
    ) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO verifications (token_hash, account_id, method, verified_at,
                                            expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &hash[..],
                account_id,
                method,
                verified_at,
                expires_at
            ])?;
        Ok(())
    }

    fn take_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        now: i64,
    ) -> Result<Option<(String, i64)>, Error> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM verifications
                 WHERE token_hash = ?1 AND account_id = ?2 AND expires_at > ?3
                 RETURNING method, verified_at",
            )?
            .query_row(params![&hash[..], account_id, now], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn purge_expired(&self, now: i64) -> Result<usize, Error> {
        let mut n = 0;
        for table in [
            "mfa_challenges",
            "passkey_ceremonies",
            "verifications",
            "refresh_tokens",
        ] {
            n += self
                .conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE expires_at <= ?1"))?
                .execute([now])?;
        }
        Ok(n)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        let c = self.conn;
        c.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")?
            .execute(params![name, value])?;
        Ok(())
    }

    fn audit(
        &self,
        account_id: Option<i64>,
        now: i64,
        event: &str,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        let c = self.conn;
        c.prepare_cached(
            "INSERT INTO audit (account_id, at, event, detail) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![account_id, now, event, detail])?;
        Ok(())
    }

    fn recent_audit(&self, account_id: i64, limit: i64) -> Result<Vec<AuditEvent>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT at, event, detail FROM audit WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?
        .query_map(params![account_id, limit], |r| {
            Ok(AuditEvent {
                at: r.get(0)?,
                event: r.get(1)?,
                detail: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
    }

    fn audit_trail(&self, account_id: Option<i64>, since: i64) -> Result<Vec<AuditRow>, Error> {
        let c = self.conn;
        Ok(c.prepare_cached(
            "SELECT e.account_id, a.email, e.at, e.event, e.detail
             FROM audit e LEFT JOIN accounts a ON a.id = e.account_id
             WHERE e.at >= ?2 AND (?1 IS NULL OR e.account_id = ?1)
             ORDER BY e.id",
        )?
        .query_map(params![account_id, since], |r| {
            Ok(AuditRow {
                account_id: r.get(0)?,
                email: r.get(1)?,
                at: r.get(2)?,
                event: r.get(3)?,
                detail: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
    }

    fn purge_audit(&self, before: i64) -> Result<usize, Error> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM audit WHERE at < ?1")?
            .execute([before])?)
    }
}
