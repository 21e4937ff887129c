//! The OpenID provider's grants: an authorization code, single use, and then what was
//! issued from it (its refresh tokens share its family; its access tokens name it).

use super::Tx;
use crate::auth::{Login, SignIn};
use crate::error::Error;
use crate::store::engine::{params, Row};
use crate::store::Grant;

/// The columns [`grant`] reads, in its order.
const COLUMNS: &str = "family, client_id, account_id, redirect_uri, code_challenge, nonce, \
                       scope, sign_in, auth_time, code_expires_at, expires_at";

fn grant(r: &dyn Row) -> Result<Grant, Error> {
    let how: String = r.get(7)?;
    let at: i64 = r.get(8)?;
    Ok(Grant {
        family: r.get(0)?,
        client_id: r.get(1)?,
        account_id: r.get(2)?,
        redirect_uri: r.get(3)?,
        code_challenge: r.get(4)?,
        nonce: r.get(5)?,
        scope: r.get(6)?,
        login: SignIn::from_stored(&how).map(|how| Login { how, at }),
        code_expires_at: r.get(9)?,
        expires_at: r.get(10)?,
    })
}

/// What presenting a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The first time: the grant.
    First(Grant),
    /// Presented before: the grant it was (to be revoked).
    Again(Grant),
    /// No such code of this client.
    Unknown,
}

impl Tx<'_> {
    /// Stores a new grant under its code's keyed hash.
    pub fn insert_grant(&self, code_hash: &[u8; 32], g: &Grant) -> Result<(), Error> {
        let (how, at) = match g.login {
            Some(l) => (l.how.as_str(), l.at),
            None => return Err(Error::Internal),
        };
        self.exec(
            "INSERT INTO oidc_grants
                 (family, code_hash, client_id, account_id, redirect_uri, code_challenge, nonce,
                  scope, sign_in, auth_time, code_expires_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            params![
                g.family.as_slice(),
                code_hash,
                g.client_id.as_str(),
                g.account_id,
                g.redirect_uri.as_str(),
                g.code_challenge.as_deref(),
                g.nonce.as_deref(),
                g.scope.as_str(),
                how,
                at,
                g.code_expires_at,
                g.expires_at
            ],
        )?;
        Ok(())
    }

    /// Presents a code as `client_id`'s: marks it redeemed the first time (the `UPDATE`
    /// is the check, so two at once cannot both be first), whatever its age (the caller
    /// judges). Another client's code is left as it was.
    pub fn redeem_code(&self, code_hash: &[u8; 32], client_id: &str) -> Result<Redeemed, Error> {
        let first = self.opt(
            &format!(
                "UPDATE oidc_grants SET redeemed = TRUE
                 WHERE code_hash = $1 AND client_id = $2 AND NOT redeemed
                 RETURNING {COLUMNS}"
            ),
            params![code_hash, client_id],
            grant,
        )?;
        if let Some(g) = first {
            return Ok(Redeemed::First(g));
        }
        let again = self.opt(
            &format!("SELECT {COLUMNS} FROM oidc_grants WHERE code_hash = $1 AND client_id = $2"),
            params![code_hash, client_id],
            grant,
        )?;
        Ok(again.map_or(Redeemed::Unknown, Redeemed::Again))
    }

    /// The grant of `family` while what it issued may live (redeemed, not expired).
    pub fn live_grant(&self, family: &[u8], now: i64) -> Result<Option<Grant>, Error> {
        self.opt(
            &format!(
                "SELECT {COLUMNS} FROM oidc_grants
                 WHERE family = $1 AND redeemed AND expires_at > $2"
            ),
            params![family, now],
            grant,
        )
    }

    /// Ends a grant and every refresh token issued from it: `true` if there was one.
    pub fn revoke_grant(&self, family: &[u8]) -> Result<bool, Error> {
        self.exec(
            "DELETE FROM refresh_tokens WHERE family = $1",
            params![family],
        )?;
        Ok(self.exec("DELETE FROM oidc_grants WHERE family = $1", params![family])? == 1)
    }
}
