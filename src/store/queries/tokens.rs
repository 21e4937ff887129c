//! Refresh tokens, step-up verifications, and the janitor's purge of what expired.

use super::Tx;
use crate::auth::{Login, SignIn};
use crate::error::Error;
use crate::store::engine::{params, Dialect};
use crate::store::RefreshToken;

impl Tx<'_> {
    // Refresh tokens and step-up verifications

    /// Stores a refresh token of the login `family`: mfad's own (`client_id` `None`) or
    /// one issued to an app.
    pub fn insert_refresh_token(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        family: &[u8],
        expires_at: i64,
        login: Login,
        client_id: Option<&str>,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO refresh_tokens
                 (token_hash, account_id, family, expires_at, sign_in, auth_time, client_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![
                hash,
                account_id,
                family,
                expires_at,
                login.how.as_str(),
                login.at,
                client_id
            ],
        )?;
        Ok(())
    }

    /// One of mfad's own refresh tokens (an app's is not: it is refreshed only at
    /// `/oidc/token`, by its client).
    pub fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshToken>, Error> {
        self.refresh_row(hash, None)
    }

    /// A refresh token issued to the app `client_id`.
    pub fn app_refresh_token(
        &self,
        hash: &[u8; 32],
        client_id: &str,
    ) -> Result<Option<RefreshToken>, Error> {
        self.refresh_row(hash, Some(client_id))
    }

    fn refresh_row(
        &self,
        hash: &[u8; 32],
        client_id: Option<&str>,
    ) -> Result<Option<RefreshToken>, Error> {
        self.opt(
            "SELECT account_id, family, expires_at, rotated, sign_in, auth_time
             FROM refresh_tokens
             WHERE token_hash = $1 AND client_id IS NOT DISTINCT FROM $2",
            params![hash, client_id],
            |r| {
                let how: String = r.get(4)?;
                let at: i64 = r.get(5)?;
                Ok(RefreshToken {
                    account_id: r.get(0)?,
                    family: r.get(1)?,
                    expires_at: r.get(2)?,
                    rotated: r.get(3)?,
                    login: SignIn::from_stored(&how).map(|how| Login { how, at }),
                })
            },
        )
    }

    /// Marks a token as exchanged; `false` if it already was (a concurrent refresh won).
    pub fn rotate_refresh_token(&self, hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE refresh_tokens SET rotated = TRUE WHERE token_hash = $1 AND NOT rotated",
            params![hash],
        )? == 1)
    }

    /// Revokes every token descended from one login, and its browser sessions.
    pub fn revoke_family(&self, family: &[u8]) -> Result<usize, Error> {
        self.exec("DELETE FROM sessions WHERE family = $1", params![family])?;
        let n = self.exec(
            "DELETE FROM refresh_tokens WHERE family = $1",
            params![family],
        )?;
        Ok(n as usize)
    }

    /// Revokes every refresh token of an account: every login of it ends, and every
    /// browser session and app grant with them.
    pub fn revoke_sessions(&self, account_id: i64) -> Result<usize, Error> {
        self.exec(
            "DELETE FROM sessions WHERE account_id = $1",
            params![account_id],
        )?;
        self.exec(
            "DELETE FROM oidc_grants WHERE account_id = $1",
            params![account_id],
        )?;
        let n = self.exec(
            "DELETE FROM refresh_tokens WHERE account_id = $1",
            params![account_id],
        )?;
        Ok(n as usize)
    }

    /// Stores a passed step-up until it is redeemed or expires.
    pub fn insert_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        method: &str,
        verified_at: i64,
        expires_at: i64,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO verifications (token_hash, account_id, method, verified_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            params![hash, account_id, method, verified_at, expires_at],
        )?;
        Ok(())
    }

    /// Redeems a verification of `account_id` that has not expired: its method and when
    /// it was made, once (the delete is the check). Another account's is left alone.
    pub fn take_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        now: i64,
    ) -> Result<Option<(String, i64)>, Error> {
        self.opt(
            "DELETE FROM verifications
             WHERE token_hash = $1 AND account_id = $2 AND expires_at > $3
             RETURNING method, verified_at",
            params![hash, account_id, now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Deletes expired challenges (MFA and passkey), verifications, refresh tokens and
    /// browser sessions (at their login's end; an idle one is refused, not deleted);
    /// the janitor's. PostgreSQL's throttle table too: SQLite's one node keeps its
    /// throttles in memory and has no such table.
    pub fn purge_expired(&self, now: i64) -> Result<usize, Error> {
        const BOTH: [&str; 6] = [
            "DELETE FROM oidc_grants WHERE expires_at <= $1",
            "DELETE FROM mfa_challenges WHERE expires_at <= $1",
            "DELETE FROM passkey_ceremonies WHERE expires_at <= $1",
            "DELETE FROM verifications WHERE expires_at <= $1",
            "DELETE FROM refresh_tokens WHERE expires_at <= $1",
            "DELETE FROM sessions WHERE expires_at <= $1",
        ];
        /// The throttles' attempts older than their minute.
        const POSTGRES: &str = "DELETE FROM throttle WHERE at <= CAST($1 AS BIGINT) - 60";
        let mut n = 0;
        for sql in BOTH {
            n += self.exec(sql, params![now])?;
        }
        if self.e.dialect() == Dialect::Postgres {
            n += self.exec(POSTGRES, params![now])?;
        }
        Ok(n as usize)
    }
}
