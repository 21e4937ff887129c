//! The second factors' rules: TOTP and its replay guard, backup codes, the failure
//! count that locks an account, MFA challenges, passkeys and their ceremonies.

use super::{present, Tx};
use crate::error::Error;
use crate::store::engine::{params, Param, Row};
use crate::store::{Ceremony, Challenge, Passkey, Purpose, SecondFactors, Totp};

/// A passkey's columns, in the order [`passkey`] reads them.
macro_rules! passkey_columns {
    () => {
        "id, account_id, credential_id, public_key, alg, sign_count, name, created_at, \
         last_used_at"
    };
}

fn passkey(r: &dyn Row) -> Result<Passkey, Error> {
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

/// The `INSERT` of `n` backup codes of account `$1`, hashes `$2`…: one statement, so
/// one round trip to PostgreSQL.
fn insert_backup_codes_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n).map(|i| format!("($1, ${})", i + 2)).collect();
    format!(
        "INSERT INTO backup_codes (account_id, code_hash) VALUES {}",
        rows.join(", ")
    )
}

impl Tx<'_> {
    // TOTP and backup codes

    pub fn totp(&self, account_id: i64) -> Result<Option<Totp>, Error> {
        self.opt(
            "SELECT pending_secret, active_secret, last_step, backup_salt, failed_verifies,
                    locked_until
             FROM totp WHERE account_id = $1",
            params![account_id],
            |r| {
                Ok(Totp {
                    pending_secret: r.get(0)?,
                    active_secret: r.get(1)?,
                    last_step: r.get(2)?,
                    backup_salt: r.get(3)?,
                    failed_verifies: r.get(4)?,
                    locked_until: r.get(5)?,
                })
            },
        )
    }

    /// Whether TOTP is on, the backup codes left and the passkeys, in one query.
    pub fn second_factors(&self, account_id: i64) -> Result<SecondFactors, Error> {
        self.one(
            "SELECT EXISTS (SELECT 1 FROM totp
                            WHERE account_id = $1 AND active_secret IS NOT NULL),
                    (SELECT count(*) FROM backup_codes WHERE account_id = $1),
                    (SELECT count(*) FROM passkeys WHERE account_id = $1)",
            params![account_id],
            |r| {
                Ok(SecondFactors {
                    totp: r.get(0)?,
                    backup_codes: r.get(1)?,
                    passkeys: r.get(2)?,
                })
            },
        )
    }

    pub fn totp_enabled(&self, account_id: i64) -> Result<bool, Error> {
        Ok(self
            .opt(
                "SELECT 1 FROM totp WHERE account_id = $1 AND active_secret IS NOT NULL",
                params![account_id],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// Stores a new pending secret, replacing an earlier pending one. Refused (`false`)
    /// when TOTP is already enabled, in the same statement.
    pub fn set_pending_secret(&self, account_id: i64, sealed: &[u8]) -> Result<bool, Error> {
        Ok(self.exec(
            "INSERT INTO totp (account_id, pending_secret) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET pending_secret = excluded.pending_secret
             WHERE totp.active_secret IS NULL",
            params![account_id, sealed],
        )? == 1)
    }

    /// Makes `pending` (exactly the sealed bytes that were checked) the active secret and
    /// records the step its code matched. `false` if the state moved meanwhile.
    pub fn activate_secret(
        &self,
        account_id: i64,
        pending: &[u8],
        step: i64,
        backup_salt: &[u8],
        now: i64,
    ) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE totp SET active_secret = pending_secret, pending_secret = NULL,
                    last_step = $3, backup_salt = $4, enabled_at = $5,
                    failed_verifies = 0, locked_until = 0
             WHERE account_id = $1 AND active_secret IS NULL AND pending_secret = $2",
            params![account_id, pending, step, backup_salt, now],
        )? == 1)
    }

    /// Records that a code of `step` was accepted. `false` — the code is a replay — when
    /// a step at or after it was already accepted (RFC 6238 §5.2).
    pub fn raise_last_step(&self, account_id: i64, step: i64) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE totp SET last_step = $2
             WHERE account_id = $1 AND active_secret IS NOT NULL AND last_step < $2",
            params![account_id, step],
        )? == 1)
    }

    /// Deletes every TOTP secret and backup code of an account; `true` if TOTP was on
    /// (told by the delete itself, not by a read before it).
    pub fn clear_totp(&self, account_id: i64) -> Result<bool, Error> {
        let had = self.opt(
            "DELETE FROM totp WHERE account_id = $1 RETURNING active_secret IS NOT NULL",
            params![account_id],
            |r| r.get::<bool>(0),
        )?;
        self.exec(
            "DELETE FROM backup_codes WHERE account_id = $1",
            params![account_id],
        )?;
        Ok(had.unwrap_or(false))
    }

    /// Replaces all backup codes (and their salt) of an enabled account.
    pub fn replace_backup_codes(
        &self,
        account_id: i64,
        salt: &[u8],
        hashes: &[[u8; 32]],
    ) -> Result<(), Error> {
        self.exec(
            "UPDATE totp SET backup_salt = $2 WHERE account_id = $1",
            params![account_id, salt],
        )?;
        self.exec(
            "DELETE FROM backup_codes WHERE account_id = $1",
            params![account_id],
        )?;
        if hashes.is_empty() {
            return Ok(());
        }
        let mut all = vec![Param::from(account_id)];
        all.extend(hashes.iter().map(Param::from));
        self.exec(&insert_backup_codes_sql(hashes.len()), &all)?;
        Ok(())
    }

    /// Spends a backup code: `true` if it existed (the delete is the check).
    pub fn spend_backup_code(&self, account_id: i64, hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM backup_codes WHERE account_id = $1 AND code_hash = $2",
            params![account_id, hash],
        )? == 1)
    }

    pub fn backup_codes_remaining(&self, account_id: i64) -> Result<i64, Error> {
        self.one(
            "SELECT count(*) FROM backup_codes WHERE account_id = $1",
            params![account_id],
            |r| r.get(0),
        )
    }

    /// Counts a wrong second factor or password confirmation; locks the account when
    /// the count reaches `limit`. Returns the new count and the lock's end (0 when not
    /// locked). An account without TOTP gets a row too: wrong password confirmations
    /// count. The upsert locks the row, so concurrent failures count one by one.
    pub fn count_verify_failure(
        &self,
        account_id: i64,
        limit: i64,
        lock_until: i64,
    ) -> Result<(i64, i64), Error> {
        self.one(
            "INSERT INTO totp (account_id, failed_verifies, locked_until)
             VALUES ($1, CASE WHEN CAST($2 AS BIGINT) <= 1 THEN 0 ELSE 1 END,
                         CASE WHEN CAST($2 AS BIGINT) <= 1 THEN CAST($3 AS BIGINT) ELSE 0 END)
             ON CONFLICT (account_id) DO UPDATE SET
                 locked_until = CASE WHEN totp.failed_verifies + 1 >= CAST($2 AS BIGINT)
                                     THEN CAST($3 AS BIGINT) ELSE totp.locked_until END,
                 failed_verifies = CASE WHEN totp.failed_verifies + 1 >= CAST($2 AS BIGINT)
                                        THEN 0 ELSE totp.failed_verifies + 1 END
             RETURNING failed_verifies, locked_until",
            params![account_id, limit, lock_until],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    pub fn reset_verify_failures(&self, account_id: i64) -> Result<(), Error> {
        self.exec(
            "UPDATE totp SET failed_verifies = 0 WHERE account_id = $1 AND failed_verifies != 0",
            params![account_id],
        )?;
        Ok(())
    }

    // MFA challenges

    pub fn insert_challenge(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        expires_at: i64,
        purpose: Purpose,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO mfa_challenges (token_hash, account_id, expires_at, purpose)
             VALUES ($1, $2, $3, $4)",
            params![hash, account_id, expires_at, purpose.code()],
        )?;
        Ok(())
    }

    pub fn challenge(&self, hash: &[u8; 32]) -> Result<Option<Challenge>, Error> {
        self.opt(
            "SELECT account_id, expires_at, purpose FROM mfa_challenges WHERE token_hash = $1",
            params![hash],
            |r| {
                Ok(Challenge {
                    account_id: r.get(0)?,
                    expires_at: r.get(1)?,
                    purpose: Purpose::from_code(r.get(2)?),
                })
            },
        )
    }

    /// Deletes a challenge; `true` if it was still there (so exactly one caller wins it).
    pub fn take_challenge(&self, hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM mfa_challenges WHERE token_hash = $1",
            params![hash],
        )? == 1)
    }

    /// Counts a wrong code against a challenge; the new count (0 if it is gone).
    pub fn count_challenge_failure(&self, hash: &[u8; 32]) -> Result<i64, Error> {
        Ok(self
            .opt(
                "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1
                 RETURNING failures",
                params![hash],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    // Passkeys and their ceremonies

    /// The account's WebAuthn user handle, if it has one yet.
    pub fn user_handle(&self, account_id: i64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .opt(
                "SELECT user_handle FROM accounts WHERE id = $1",
                params![account_id],
                |r| r.get::<Option<Vec<u8>>>(0),
            )?
            .flatten())
    }

    /// Gives the account `handle` unless it already has one; returns the one it has.
    pub fn ensure_user_handle(&self, account_id: i64, handle: &[u8]) -> Result<Vec<u8>, Error> {
        self.exec(
            "UPDATE accounts SET user_handle = $2 WHERE id = $1 AND user_handle IS NULL",
            params![account_id, handle],
        )?;
        present(self.user_handle(account_id)?)
    }

    /// The account's passkeys, oldest first.
    pub fn passkeys(&self, account_id: i64) -> Result<Vec<Passkey>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE account_id = $1 ORDER BY created_at, id"
        );
        self.all(SQL, params![account_id], passkey)
    }

    pub fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<Passkey>, Error> {
        const SQL: &str = concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE credential_id = $1"
        );
        self.opt(SQL, params![credential_id], passkey)
    }

    /// Stores a new passkey; `false` when its credential id is registered already (to
    /// anyone), in the same statement.
    pub fn insert_passkey(&self, p: &Passkey) -> Result<bool, Error> {
        const SQL: &str = concat!(
            "INSERT INTO passkeys (",
            passkey_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
        );
        let n = self.exec(
            SQL,
            params![
                &p.id,
                p.account_id,
                p.credential_id.as_slice(),
                p.public_key.as_slice(),
                p.alg,
                p.sign_count,
                p.name.as_str(),
                p.created_at,
                p.last_used_at
            ],
        )?;
        Ok(n == 1)
    }

    /// Records a use: the new counter and the time. `false` — a replayed or cloned
    /// authenticator — when the counter does not grow (unless both are zero), in the
    /// same statement.
    pub fn use_passkey(&self, id: &[u8; 16], sign_count: i64, now: i64) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE passkeys SET sign_count = $2, last_used_at = $3
             WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
            params![id, sign_count, now],
        )? == 1)
    }

    /// Deletes one passkey of `account_id`; `false` if it has none of that id.
    pub fn delete_passkey(&self, account_id: i64, id: &[u8; 16]) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM passkeys WHERE id = $1 AND account_id = $2",
            params![id, account_id],
        )? == 1)
    }

    /// Deletes every passkey of an account; how many there were.
    pub fn delete_passkeys(&self, account_id: i64) -> Result<usize, Error> {
        let n = self.exec(
            "DELETE FROM passkeys WHERE account_id = $1",
            params![account_id],
        )?;
        Ok(n as usize)
    }

    pub fn insert_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        expires_at: i64,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO passkey_ceremonies
                 (challenge_hash, purpose, account_id, bound_to, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            params![
                challenge_hash,
                ceremony.code(),
                ceremony.account(),
                ceremony.bound_to(),
                expires_at
            ],
        )?;
        Ok(())
    }

    /// Ends the ceremony of this challenge if it is `ceremony` (same purpose, account and
    /// binding; NULL equal to NULL: a registration has no binding, a login no account)
    /// and has not expired: `true` once (the delete is the check).
    pub fn take_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        now: i64,
    ) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM passkey_ceremonies
             WHERE challenge_hash = $1 AND purpose = $2
               AND account_id IS NOT DISTINCT FROM $3
               AND bound_to IS NOT DISTINCT FROM $4 AND expires_at > $5",
            params![
                challenge_hash,
                ceremony.code(),
                ceremony.account(),
                ceremony.bound_to(),
                now
            ],
        )? == 1)
    }
}
