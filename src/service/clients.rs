//! The OpenID provider's registry (`mfad client …`) and its RSA key. A client's secret
//! is made here, shown once, and stored only as a keyed hash; the RSA key is made when
//! the first client is registered (a server that never has one never pays for making
//! it) and stored sealed with the instance key, so every node signs with the same one
//! and a copy of the database without `mfad.key` reveals nothing of it.

use data_encoding::BASE64URL_NOPAD;

use crate::crypto::{self, Keys, RsaKey};
use crate::error::Error;
use crate::oidc::ClientSpec;
use crate::store::{Db, OidcClient};

/// Where the sealed RSA key is kept (`meta`).
const RSA_KEY: &str = "oidc_rsa_key";

/// A new client secret: 32 random bytes, base64url (43 characters).
fn new_secret(keys: &Keys) -> Result<(String, [u8; 32]), Error> {
    let raw: [u8; 32] = crypto::random()?;
    let secret = BASE64URL_NOPAD.encode(&raw);
    let hash = keys.token_hash(secret.as_bytes());
    Ok((secret, hash))
}

/// What `mfad client add` did.
#[derive(Debug)]
pub enum Added {
    /// Registered; the secret to show once (`None` for a public client).
    Registered(Option<String>),
    /// The id is another client's.
    Taken,
}

/// Registers `spec` (already checked), making the provider's RSA key first if there is
/// none yet.
pub fn add(db: &Db, keys: &Keys, spec: &ClientSpec, now: i64) -> Result<Added, Error> {
    provider_key(db, keys)?;
    let (secret, hash) = match spec.public {
        true => (None, None),
        false => {
            let (s, h) = new_secret(keys)?;
            (Some(s), Some(h.to_vec()))
        }
    };
    let row = OidcClient {
        id: spec.id.clone(),
        name: spec.name.trim().to_string(),
        secret_hash: hash,
        redirect_uris: spec.redirect_uris.clone(),
        post_logout_uris: spec.post_logout_uris.clone(),
        policy: spec.policy.as_str().into(),
        id_token_alg: spec.alg.as_str().into(),
        created_at: now,
    };
    db.write(|tx| {
        if !tx.insert_client(&row)? {
            return Ok(Added::Taken);
        }
        tx.audit(
            None,
            now,
            "oidc_client_added",
            Some(&format!("client {}", row.id)),
        )?;
        Ok(Added::Registered(secret))
    })
}

pub fn list(db: &Db) -> Result<Vec<OidcClient>, Error> {
    db.read(|tx| tx.clients())
}

pub fn find(db: &Db, id: &str) -> Result<Option<OidcClient>, Error> {
    db.read(|tx| tx.client(id))
}

/// What `mfad client secret` did.
#[derive(Debug)]
pub enum NewSecret {
    /// The new secret, to show once; the old one no longer works.
    Made(String),
    NoSuchClient,
    /// A public client has no secret.
    Public,
}

/// Gives a confidential client a new secret; the old one ends at once.
pub fn replace_secret(db: &Db, keys: &Keys, id: &str, now: i64) -> Result<NewSecret, Error> {
    let (secret, hash) = new_secret(keys)?;
    db.write(|tx| match tx.client(id)? {
        None => Ok(NewSecret::NoSuchClient),
        Some(c) if c.secret_hash.is_none() => Ok(NewSecret::Public),
        Some(_) => {
            tx.set_client_secret(id, &hash)?;
            tx.audit(
                None,
                now,
                "oidc_client_secret_replaced",
                Some(&format!("client {id}")),
            )?;
            Ok(NewSecret::Made(secret))
        }
    })
}

/// Removes a client: `false` when there was none.
pub fn remove(db: &Db, id: &str, now: i64) -> Result<bool, Error> {
    db.write(|tx| {
        let removed = tx.delete_client(id)?;
        if removed {
            tx.audit(
                None,
                now,
                "oidc_client_removed",
                Some(&format!("client {id}")),
            )?;
        }
        Ok(removed)
    })
}

/// The provider's RSA key: the one in the database, or, when there is none yet, a new
/// one (two processes making one at once both end up with the first that was stored).
pub fn provider_key(db: &Db, keys: &Keys) -> Result<RsaKey, Error> {
    let sealed = match db.read(|tx| tx.meta(RSA_KEY))? {
        Some(sealed) => sealed,
        None => {
            let made = RsaKey::generate()?;
            let sealed = keys.seal_provider_key(made.expose())?;
            db.write(|tx| tx.meta_once(RSA_KEY, &sealed))?
        }
    };
    let pkcs8 = keys.open_provider_key(&sealed).map_err(|_| {
        log::error!("the OpenID provider's RSA key in the database does not open with this key");
        Error::Internal
    })?;
    Ok(RsaKey::from_pkcs8(pkcs8.expose())?)
}

/// The provider's RSA key if one was made (JWKS, ID tokens), without making one.
pub fn existing_provider_key(db: &Db, keys: &Keys) -> Result<Option<RsaKey>, Error> {
    match db.read(|tx| tx.meta(RSA_KEY))? {
        None => Ok(None),
        Some(_) => provider_key(db, keys).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::Durability;
    use crate::oidc::{ClientPolicy, IdTokenAlg};

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
        (dir, db)
    }

    fn keys(b: u8) -> Keys {
        Keys::derive(&[b; 32]).unwrap()
    }

    fn spec(id: &str, public: bool) -> ClientSpec {
        ClientSpec {
            id: id.into(),
            name: " Grafana ".into(),
            redirect_uris: vec!["https://grafana.example.com/cb".into()],
            post_logout_uris: vec!["https://grafana.example.com/".into()],
            public,
            policy: ClientPolicy::OneFactor,
            alg: IdTokenAlg::EdDsa,
        }
    }

    #[test]
    fn a_client_is_stored_with_its_secret_hashed_and_its_id_once() {
        let (_d, db) = db();
        let k = keys(1);
        let Added::Registered(Some(secret)) = add(&db, &k, &spec("grafana", false), 5).unwrap()
        else {
            panic!("a confidential client gets a secret");
        };
        assert_eq!(secret.len(), 43);
        let c = find(&db, "grafana").unwrap().unwrap();
        assert_eq!(c.name, "Grafana");
        assert_eq!(c.redirect_uris, ["https://grafana.example.com/cb"]);
        assert_eq!(c.post_logout_uris, ["https://grafana.example.com/"]);
        assert_eq!(
            (c.policy.as_str(), c.id_token_alg.as_str()),
            ("one_factor", "EdDSA")
        );
        // Only the keyed hash is stored: not the secret, nor its bytes.
        let stored = c.secret_hash.clone().unwrap();
        assert_eq!(stored, k.token_hash(secret.as_bytes()));
        assert!(!stored
            .windows(8)
            .any(|w| secret.as_bytes().windows(8).any(|s| s == w)));
        assert!(matches!(
            add(&db, &k, &spec("grafana", true), 6).unwrap(),
            Added::Taken
        ));
        // A new secret replaces the hash; a public client has none to replace.
        let NewSecret::Made(again) = replace_secret(&db, &k, "grafana", 7).unwrap() else {
            panic!("a new secret");
        };
        assert_ne!(again, secret);
        let c = find(&db, "grafana").unwrap().unwrap();
        assert_eq!(c.secret_hash.unwrap(), k.token_hash(again.as_bytes()));
        assert!(matches!(
            add(&db, &k, &spec("spa", true), 8).unwrap(),
            Added::Registered(None)
        ));
        assert_eq!(find(&db, "spa").unwrap().unwrap().secret_hash, None);
        assert!(matches!(
            replace_secret(&db, &k, "spa", 9).unwrap(),
            NewSecret::Public
        ));
        assert!(matches!(
            replace_secret(&db, &k, "nope", 9).unwrap(),
            NewSecret::NoSuchClient
        ));
        let ids: Vec<String> = list(&db).unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["grafana", "spa"]);
        assert!(remove(&db, "grafana", 10).unwrap());
        assert!(!remove(&db, "grafana", 10).unwrap());
        assert_eq!(find(&db, "grafana").unwrap(), None);
    }

    #[test]
    fn the_rsa_key_is_made_once_sealed_and_opens_only_with_its_instance_key() {
        let (_d, db) = db();
        let k = keys(1);
        assert_eq!(db.read(|tx| tx.meta(RSA_KEY)).unwrap(), None);
        let first = provider_key(&db, &k).unwrap();
        // Another process (a node, the next `client add`) finds the same key.
        assert_eq!(provider_key(&db, &k).unwrap().kid(), first.kid());
        let sealed = db.read(|tx| tx.meta(RSA_KEY)).unwrap().unwrap();
        // The modulus is nowhere in the stored bytes, in any 16-byte piece.
        let (n, _) = first.public_members();
        let n = BASE64URL_NOPAD.decode(n.as_bytes()).unwrap();
        assert!(!sealed.windows(16).any(|w| n.windows(16).any(|m| m == w)));
        // The database without its instance key: the key does not open.
        assert!(keys(2).open_provider_key(&sealed).is_err());
        assert!(provider_key(&db, &keys(2)).is_err());
        // A second make loses to what is stored.
        let other = RsaKey::generate().unwrap();
        let kept = db
            .write(|tx| tx.meta_once(RSA_KEY, &k.seal_provider_key(other.expose()).unwrap()))
            .unwrap();
        assert_eq!(kept, sealed);
    }
}
