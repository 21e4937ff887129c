//! The OpenID provider's registered apps (`mfad client …`): one row each, the secret only
//! as a keyed hash, the URIs one per line. Read at every authorization and token request,
//! so a change made by the command is seen at once by every node.

use super::Tx;
use crate::error::Error;
use crate::store::engine::{params, Row};
use crate::store::OidcClient;

/// The columns [`client`] reads, in its order.
const COLUMNS: &str = "id, name, secret_hash, redirect_uris, post_logout_uris, policy, \
                       id_token_alg, created_at";

fn client(r: &dyn Row) -> Result<OidcClient, Error> {
    let lines = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(OidcClient {
        id: r.get(0)?,
        name: r.get(1)?,
        secret_hash: r.get(2)?,
        redirect_uris: lines(r.get(3)?),
        post_logout_uris: lines(r.get(4)?),
        policy: r.get(5)?,
        id_token_alg: r.get(6)?,
        created_at: r.get(7)?,
    })
}

impl Tx<'_> {
    /// Stores a new client; `false` when its id is taken.
    pub fn insert_client(&self, c: &OidcClient) -> Result<bool, Error> {
        let redirect = c.redirect_uris.join("\n");
        let post_logout = c.post_logout_uris.join("\n");
        Ok(self.exec(
            "INSERT INTO oidc_clients (id, name, secret_hash, redirect_uris, post_logout_uris,
                                       policy, id_token_alg, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
            params![
                c.id.as_str(),
                c.name.as_str(),
                c.secret_hash.as_deref(),
                redirect.as_str(),
                post_logout.as_str(),
                c.policy.as_str(),
                c.id_token_alg.as_str(),
                c.created_at
            ],
        )? == 1)
    }

    /// The client of `id`, if registered.
    pub fn client(&self, id: &str) -> Result<Option<OidcClient>, Error> {
        if id.contains('\0') {
            return Ok(None);
        }
        self.opt(
            &format!("SELECT {COLUMNS} FROM oidc_clients WHERE id = $1"),
            params![id],
            client,
        )
    }

    /// Every client, by id.
    pub fn clients(&self) -> Result<Vec<OidcClient>, Error> {
        self.all(
            &format!("SELECT {COLUMNS} FROM oidc_clients ORDER BY id"),
            &[],
            client,
        )
    }

    /// Replaces a confidential client's secret hash: `false` when there is no such
    /// client, or it is public (it has no secret to replace).
    pub fn set_client_secret(&self, id: &str, secret_hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE oidc_clients SET secret_hash = $2
             WHERE id = $1 AND secret_hash IS NOT NULL",
            params![id, secret_hash],
        )? == 1)
    }

    /// Removes a client, and with it its grants and every refresh token issued to it:
    /// `false` when there was none.
    pub fn delete_client(&self, id: &str) -> Result<bool, Error> {
        self.exec(
            "DELETE FROM refresh_tokens WHERE client_id = $1",
            params![id],
        )?;
        self.exec("DELETE FROM oidc_grants WHERE client_id = $1", params![id])?;
        Ok(self.exec("DELETE FROM oidc_clients WHERE id = $1", params![id])? == 1)
    }

    /// Stores `value` under `name` unless something is there already; what is there
    /// afterwards (two nodes making the same instance fact at once keep the first).
    pub fn meta_once(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, Error> {
        self.exec(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            params![name, value],
        )?;
        super::present(self.meta(name)?)
    }
}
