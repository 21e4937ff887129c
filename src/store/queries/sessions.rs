//! Browser sessions (the `mfad_session` cookie): made from a live login, read by every
//! forward-auth check, their use recorded at most once a minute, ended with their login
//! (`tokens.rs`'s revocations delete them in the same statement set).

use super::Tx;
use crate::auth::{Login, SignIn};
use crate::error::Error;
use crate::store::engine::params;
use crate::store::Session;

/// A session's use is written at most this often (seconds): a check is a read.
pub const SESSION_TOUCH_SECS: i64 = 60;

impl Tx<'_> {
    /// The login (refresh family) `family` while it lives: its account, how and when it
    /// was made, and when it ends. `None` once it ended or expired.
    pub fn live_login(&self, family: &[u8], now: i64) -> Result<Option<(i64, Login, i64)>, Error> {
        let row = self.opt(
            "SELECT account_id, sign_in, auth_time, expires_at FROM refresh_tokens
             WHERE family = $1 AND expires_at > $2 LIMIT 1",
            params![family, now],
            |r| {
                let how: String = r.get(1)?;
                Ok((r.get::<i64>(0)?, how, r.get::<i64>(2)?, r.get::<i64>(3)?))
            },
        )?;
        Ok(row.and_then(|(account, how, at, ends)| {
            SignIn::from_stored(&how).map(|how| (account, Login { how, at }, ends))
        }))
    }

    /// Stores a new session of the login `family`.
    pub fn insert_session(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        family: &[u8],
        login: Login,
        expires_at: i64,
        now: i64,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO sessions
                 (token_hash, account_id, family, sign_in, auth_time, expires_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![
                hash,
                account_id,
                family,
                login.how.as_str(),
                login.at,
                expires_at,
                now
            ],
        )?;
        Ok(())
    }

    /// A session with its account's names, whatever its age (the caller judges it).
    /// The names come by subqueries, not a join: SQLite re-prepares the join form of
    /// this statement at every run (its parameter marks the plan as value-dependent),
    /// which made a forward-auth check parse SQL each time.
    pub fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, Error> {
        self.opt(
            "SELECT s.account_id,
                    (SELECT email FROM accounts WHERE id = s.account_id),
                    (SELECT external_subject FROM accounts WHERE id = s.account_id),
                    s.family, s.sign_in, s.auth_time, s.expires_at, s.last_used_at
             FROM sessions s
             WHERE s.token_hash = $1",
            params![hash],
            |r| {
                let how: String = r.get(4)?;
                let at: i64 = r.get(5)?;
                Ok(Session {
                    account_id: r.get(0)?,
                    email: r.get(1)?,
                    subject: r.get(2)?,
                    family: r.get(3)?,
                    login: SignIn::from_stored(&how).map(|how| Login { how, at }),
                    expires_at: r.get(6)?,
                    last_used_at: r.get(7)?,
                })
            },
        )
    }

    /// Records a session's use unless it was recorded in the last minute (another node
    /// may just have): `true` if this call wrote.
    pub fn touch_session(&self, hash: &[u8; 32], now: i64) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE sessions SET last_used_at = $2
             WHERE token_hash = $1 AND last_used_at <= CAST($2 AS BIGINT) - $3",
            params![hash, now, SESSION_TOUCH_SECS],
        )? == 1)
    }
}
