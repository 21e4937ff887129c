//! The PostgreSQL engine (`--database postgres://…`): a small pool of synchronous
//! connections (the `postgres` crate), `schema.pg.sql` applied by the first node that
//! finds the database empty, the throttle shared by every node, and the [`Engine`] the
//! queries run on (statements prepared once per connection). Errors are classified by
//! SQLSTATE: connection, resource and operator classes (08, 53, 57) are `503`.
//!
//! A connection that fails is dropped and a new one made at the next request, so the
//! server recovers by itself when PostgreSQL is back; meanwhile requests get `503`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Statement};

use super::engine::{Dialect, Each, Engine, Param, Row, Value};
use super::{OpenError, Tx, SCHEMA_VERSION};
use crate::error::Error;

/// The schema, applied to an empty database.
const SCHEMA: &str = include_str!("../../schema.pg.sql");

/// Connections at most (each request holds one for its transaction).
const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection before `503`.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long a request whose COMMIT lost its answer waits to learn whether it landed.
const RESOLVE_WAIT: Duration = Duration::from_secs(10);
/// A statement running longer is cancelled (the request gets `503`).
const STATEMENT_TIMEOUT: &str = "5s";
/// Advisory lock keys: the schema's creation, the janitor's purge.
const SCHEMA_LOCK: i64 = 0x6d66_6164_0001;
const JANITOR_LOCK: i64 = 0x6d66_6164_0002;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        crate::metrics::METRICS.storage_error();
        // Connection lost, server shutting down or starting, out of resources, a
        // statement cancelled by its timeout: storage is unavailable, try again.
        let io = std::error::Error::source(&e).is_some_and(|c| c.is::<std::io::Error>());
        let unavailable = match e.as_db_error() {
            // The connect timeout is an I/O error (`TimedOut`) in the source.
            None => e.is_closed() || io,
            Some(db) => {
                let code = db.code().code();
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57")
            }
        };
        // The cause of a connection error is in its source (refused, timed out, …).
        let e = match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        if unavailable {
            log::error!("storage unavailable: PostgreSQL: {e}");
            Error::Unavailable
        } else {
            log::error!("database error: PostgreSQL: {e}");
            Error::Internal
        }
    }
}

/// One connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

struct Pool {
    idle: Vec<Conn>,
    /// Connections open or being opened, idle ones included.
    open: usize,
}

/// How a connection is encrypted: libpq's `sslmode`, with rustls (no OpenSSL).
#[derive(Clone)]
enum Tls {
    /// `sslmode=disable`, `prefer` (the default), or a Unix socket.
    None,
    /// `require` (encrypted, certificate not checked, as libpq does) or `verify-full`
    /// (the chain to `sslrootcert` and the host name checked).
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// A PostgreSQL database shared by every node.
pub struct PgDb {
    config: postgres::Config,
    tls: Tls,
    /// The URL as logs may show it (no password).
    shown: String,
    pool: Mutex<Pool>,
    freed: Condvar,
}

/// Whether an error answering COMMIT says for certain that it did not commit: an
/// `ERROR` (a deferred constraint, a serialization failure), after which the session
/// goes on. Not a lost connection, nor a `FATAL`: a backend told to terminate (a fast
/// shutdown) may commit and then send `FATAL` in place of the COMMIT's answer, as a
/// restart under load showed.
fn refused(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(postgres::error::Severity::Error))
}

/// A connection taken from the pool; back to it when dropped, unless it broke.
struct Taken<'a> {
    db: &'a PgDb,
    conn: Option<Conn>,
}

impl Taken<'_> {
    /// The connection: there is one once [`PgDb::take`] has returned it.
    fn conn(&mut self) -> Result<&mut Conn, Error> {
        self.conn.as_mut().ok_or(Error::Unavailable)
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut pool = self.db.pool.lock().unwrap_or_else(PoisonError::into_inner);
        match self.conn.take() {
            Some(c) if !c.client.is_closed() => pool.idle.push(c),
            _ => pool.open -= 1,
        }
        self.db.freed.notify_one();
    }
}

/// The URL without the TLS settings the `postgres` crate does not read (`sslmode`
/// beyond `require`, `sslrootcert`), and the connector they ask for.
fn tls_of(url: &str) -> Result<(String, Tls), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = "prefer".to_string();
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = v.to_string(),
            Some(("sslrootcert", v)) => root = Some(v.replace("%2F", "/").replace("%2f", "/")),
            _ => kept.push(pair),
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match (mode.as_str(), root) {
        ("disable" | "prefer", _) => None,
        ("require", _) => Some(
            builder
                .dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(Unverified(provider)))
                .with_no_client_auth(),
        ),
        ("verify-full", Some(root)) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&root)
                .map_err(|e| format!("sslrootcert {root}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert {root}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {root}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {root}: no certificate in it"));
            }
            Some(builder.with_root_certificates(roots).with_no_client_auth())
        }
        ("verify-full", None) => {
            return Err("sslmode=verify-full needs sslrootcert=FILE (the CA's PEM)".into())
        }
        (other, _) => {
            return Err(format!(
                "sslmode={other} is not one mfad knows: disable, prefer, require or verify-full"
            ))
        }
    };
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let tls = match config {
        Some(c) => Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(c)),
        None => Tls::None,
    };
    Ok((url, tls))
}

/// `sslmode=require`: the connection is encrypted, the server's certificate taken as it
/// is (libpq's meaning of `require`); its signatures are still checked.
#[derive(Debug)]
struct Unverified(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl PgDb {
    /// Connects to `url`, creating the schema in an empty database (under an advisory
    /// lock: two nodes starting at once make it once) and refusing any other database.
    pub fn connect(url: &str) -> Result<PgDb, OpenError> {
        let shown = redact(url);
        let named = shown.clone();
        let fail =
            |e: &dyn std::fmt::Display| OpenError(format!("cannot use database {named}: {e}"));
        let (url, tls) = tls_of(url).map_err(|e| fail(&e))?;
        let mut config: postgres::Config = url.parse().map_err(|e| fail(&e))?;
        if !matches!(tls, Tls::None) {
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives(true);
        config.application_name("mfad");
        let db = PgDb {
            config,
            tls,
            shown,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        let mut taken = db
            .take()
            .map_err(|_| fail(&"cannot connect (see the log above)"))?;
        let conn = taken.conn().map_err(|_| fail(&"no connection"))?;
        migrate(&mut conn.client).map_err(|e| fail(&e))?;
        drop(taken);
        Ok(db)
    }

    /// Where it is, without the password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn connect_one(&self) -> Result<Conn, Error> {
        let mut client = match &self.tls {
            Tls::None => self.config.connect(NoTls)?,
            Tls::Rustls(tls) => self.config.connect(tls.clone())?,
        };
        client.batch_execute(&format!(
            "SET statement_timeout = '{STATEMENT_TIMEOUT}'; \
             SET lock_timeout = '{STATEMENT_TIMEOUT}'; \
             SET idle_in_transaction_session_timeout = '30s'"
        ))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// A connection: an idle one, a new one while there are fewer than [`POOL_SIZE`],
    /// or the first one freed within [`POOL_WAIT`].
    fn take(&self) -> Result<Taken<'_>, Error> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(Taken {
                    db: self,
                    conn: Some(conn),
                });
            }
            if pool.open < POOL_SIZE {
                pool.open += 1;
                drop(pool);
                // Counted as open before it is, so that the slot is given back (by the
                // drop) when connecting fails.
                let mut taken = Taken {
                    db: self,
                    conn: None,
                };
                taken.conn = Some(self.connect_one()?);
                return Ok(taken);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("all {POOL_SIZE} PostgreSQL connections are busy");
                return Err(Error::Unavailable);
            }
            pool = self
                .freed
                .wait_timeout(pool, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Runs `f` outside a transaction (each statement is its own).
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let mut taken = self.take()?;
        let Conn { client, statements } = taken.conn()?;
        f(&Tx::new(&PgEngine::new(client, statements)))
    }

    /// Runs `f` in a transaction (READ COMMITTED) and commits it; an error from `f`
    /// rolls it back.
    pub fn write<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let mut taken = self.take()?;
        let Conn { client, statements } = taken.conn()?;
        let mut t = client.transaction()?;
        let out = f(&Tx::new(&PgEngine::new(&mut t, statements)));
        let v = match out {
            Ok(v) => v,
            Err(e) => {
                let _ = t.rollback();
                return Err(e);
            }
        };
        // The transaction's id, if it wrote anything: should the answer to COMMIT be
        // lost, a fresh connection can ask whether it landed.
        let xid: Option<String> = t
            .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])?
            .try_get(0)?;
        match (t.commit(), xid) {
            (Ok(()), _) => {}
            (Err(e), Some(xid)) if !refused(&e) => self.landed(&xid, &e)?,
            // PostgreSQL refused it (an ERROR, its session going on), or nothing was
            // written: the transaction did not commit, and a 503 says so truthfully.
            (Err(e), _) => return Err(e.into()),
        }
        // Each transaction is its own COMMIT here: a batch of one writer.
        crate::metrics::METRICS.batch(1);
        Ok(v)
    }

    /// After a COMMIT whose answer was lost (the connection broke: a restart, a cut),
    /// asks new connections whether transaction `xid` committed, for up to
    /// [`RESOLVE_WAIT`]. `Ok` if it did: the request succeeded and is answered so. A
    /// `503` (`Unavailable`) only if it did not, so that a client retrying as told never
    /// presents again what was in fact consumed (a rotated refresh token would revoke its
    /// login as stolen; a backup code or a TOTP step would be spent). If PostgreSQL does
    /// not say in time, `500`: the outcome is unknown, and `503` would claim too much.
    fn landed(&self, xid: &str, e: &postgres::Error) -> Result<(), Error> {
        log::warn!(
            "PostgreSQL: the COMMIT of transaction {xid} was sent but its answer was lost \
             ({e}); asking whether it landed"
        );
        let deadline = Instant::now() + RESOLVE_WAIT;
        loop {
            let status = self.connect_one().and_then(|mut c| {
                let row = c
                    .client
                    .query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid])?;
                Ok(row.try_get::<_, Option<String>>(0)?)
            });
            match status.as_ref().map(Option::as_deref) {
                Ok(Some("committed")) => {
                    log::warn!("PostgreSQL: transaction {xid} had committed; answered as done");
                    return Ok(());
                }
                Ok(Some("aborted")) => {
                    log::warn!("PostgreSQL: transaction {xid} did not commit; answered 503");
                    return Err(Error::Unavailable);
                }
                // Still in progress (its backend has not seen the cut yet), or PostgreSQL
                // not back yet: ask again.
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => break,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        log::error!(
            "PostgreSQL: whether transaction {xid} committed is unknown; answered 500 (a 503 \
             would say it had not)"
        );
        Err(Error::Internal)
    }

    /// The health check: one statement on a connection.
    pub fn ping(&self) -> Result<(), Error> {
        self.read(|tx| tx.meta("key_check").map(drop))
    }

    /// Runs `f` in a transaction only if no other node holds the janitor's lock then;
    /// `None` if one does (it is doing the same work).
    pub(super) fn exclusively<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        let mut taken = self.take()?;
        let Conn { client, statements } = taken.conn()?;
        let mut t = client.transaction()?;
        let locked: bool = t
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&JANITOR_LOCK])?
            .try_get(0)?;
        if !locked {
            return Ok(None);
        }
        let out = f(&Tx::new(&PgEngine::new(&mut t, statements)))?;
        t.commit()?;
        Ok(Some(out))
    }
}

impl PgDb {
    /// Takes a place in the throttle `name` for `client`: `Ok(id)` of the attempt, or
    /// `Err(oldest)` (when the oldest attempt of the minute was) when `limit` attempts of
    /// the last 60 s are there already. One transaction under an advisory lock of this
    /// throttle and client, so nodes counting at once cannot both take the last place.
    pub fn throttle_reserve(
        &self,
        name: &str,
        client: &str,
        limit: u32,
        now: i64,
    ) -> Result<Result<i64, i64>, Error> {
        let mut taken = self.take()?;
        let c = &mut taken.conn()?.client;
        let mut t = c.transaction()?;
        t.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
            &[&name, &client],
        )?;
        t.execute(
            "DELETE FROM throttle WHERE name = $1 AND client = $2 AND at <= $3::BIGINT - 60",
            &[&name, &client, &now],
        )?;
        let row = t.query_one(
            "SELECT count(*), min(at) FROM throttle WHERE name = $1 AND client = $2",
            &[&name, &client],
        )?;
        let (count, oldest): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let out = if count >= i64::from(limit) {
            Err(oldest.unwrap_or(now))
        } else {
            Ok(t.query_one(
                "INSERT INTO throttle (name, client, at) VALUES ($1, $2, $3) RETURNING id",
                &[&name, &client, &now],
            )?
            .try_get(0)?)
        };
        t.commit()?;
        Ok(out)
    }

    /// Runs `f` in one transaction of its own, committed if `f` succeeds (`mfad migrate`).
    pub(super) fn with_transaction<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut taken = self
            .take()
            .map_err(|_| "cannot connect (see the log above)")?;
        let conn = taken.conn().map_err(|_| "cannot connect")?;
        // A copy may take longer than a request's statement timeout.
        conn.client
            .batch_execute("SET statement_timeout = 0")
            .map_err(|e| e.to_string())?;
        let mut t = conn.client.transaction().map_err(|e| e.to_string())?;
        let out = f(&mut t)?;
        t.commit().map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Gives back the place of attempt `id` (it succeeded).
    pub fn throttle_release(&self, id: i64) -> Result<(), Error> {
        let mut taken = self.take()?;
        let conn = taken.conn()?;
        conn.client
            .execute("DELETE FROM throttle WHERE id = $1", &[&id])?;
        Ok(())
    }
}

/// From each earlier version to the next, word for word as in `schema.pg.sql` (a test
/// checks a migrated database has its shape): `(from, sql)`.
const PG_MIGRATIONS: [(i64, &str); 4] = [
    // 4 → 5: browser sessions.
    (
        4,
        "CREATE TABLE sessions (
    token_hash   BYTEA PRIMARY KEY,
    account_id   BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    family       BYTEA NOT NULL,
    sign_in      TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
);
CREATE INDEX sessions_family ON sessions(family);
CREATE INDEX sessions_account ON sessions(account_id);
",
    ),
    // 5 → 6: the OpenID provider's clients.
    (
        5,
        "CREATE TABLE oidc_clients (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    secret_hash      BYTEA,
    redirect_uris    TEXT NOT NULL,
    post_logout_uris TEXT NOT NULL,
    policy           TEXT NOT NULL,
    id_token_alg     TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
",
    ),
    // 6 → 7: the OpenID provider's grants, and refresh tokens issued to apps (the
    // column that schema.pg.sql has last in refresh_tokens).
    (6, "ALTER TABLE refresh_tokens ADD COLUMN client_id TEXT;"),
    (
        6,
        "CREATE TABLE oidc_grants (
    family          BYTEA PRIMARY KEY,
    code_hash       BYTEA NOT NULL UNIQUE,
    client_id       TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    account_id      BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT,
    nonce           TEXT,
    scope           TEXT NOT NULL,
    sign_in         TEXT NOT NULL,
    auth_time       BIGINT NOT NULL,
    code_expires_at BIGINT NOT NULL,
    redeemed        BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX oidc_grants_account ON oidc_grants(account_id);
CREATE INDEX oidc_grants_client ON oidc_grants(client_id);
",
    ),
];

/// Creates the schema in an empty database, or checks the version of an existing one.
fn migrate(client: &mut Client) -> Result<(), String> {
    let mut t = client.transaction().map_err(|e| e.to_string())?;
    t.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(|e| e.to_string())?;
    let ours: bool = t
        .query_one("SELECT to_regclass('mfad_schema') IS NOT NULL", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| e.to_string())?;
    if !ours {
        let tables: i64 = t
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| e.to_string())?;
        if tables > 0 {
            return Err(
                "it is not an mfad database (it has tables but no mfad_schema); give mfad \
                 an empty database of its own"
                    .into(),
            );
        }
        t.batch_execute(SCHEMA).map_err(|e| e.to_string())?;
        commit_version(t)?;
        log::info!("created the mfad schema (version {SCHEMA_VERSION}) in PostgreSQL");
        return Ok(());
    }
    let version: i32 = t
        .query_one("SELECT max(version) FROM mfad_schema", &[])
        .and_then(|r| r.try_get::<_, Option<i32>>(0))
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    match i64::from(version) {
        SCHEMA_VERSION => t.commit().map_err(|e| e.to_string()),
        v @ 4.. if v < SCHEMA_VERSION => {
            // In the same transaction: a migration that fails leaves the database as it was.
            for (from, sql) in PG_MIGRATIONS.iter().filter(|(from, _)| *from >= v) {
                t.batch_execute(sql)
                    .map_err(|e| format!("migrating from schema {from}: {e}"))?;
            }
            commit_version(t)?;
            log::info!("PostgreSQL schema migrated from version {v} to {SCHEMA_VERSION}");
            Ok(())
        }
        v if v > SCHEMA_VERSION => Err(format!(
            "its schema version is {v}, newer than this mfad's {SCHEMA_VERSION}; run a newer \
             mfad"
        )),
        v => Err(format!("unknown schema version {v}")),
    }
}

/// Records that the schema is now this mfad's, and commits what made it so.
fn commit_version(mut t: postgres::Transaction) -> Result<(), String> {
    t.execute(
        "INSERT INTO mfad_schema (version) VALUES ($1)",
        &[&(SCHEMA_VERSION as i32)],
    )
    .map_err(|e| e.to_string())?;
    t.commit().map_err(|e| e.to_string())
}

/// The queries' [`Engine`] on a connection (or a transaction on one), with the
/// statements prepared on that connection.
struct PgEngine<'a, C: GenericClient> {
    c: RefCell<&'a mut C>,
    statements: RefCell<&'a mut HashMap<String, Statement>>,
}

impl<'a, C: GenericClient> PgEngine<'a, C> {
    fn new(c: &'a mut C, statements: &'a mut HashMap<String, Statement>) -> Self {
        PgEngine {
            c: RefCell::new(c),
            statements: RefCell::new(statements),
        }
    }

    /// `sql`, prepared once per connection.
    fn statement(&self, sql: &str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.borrow_mut().prepare(sql)?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// A parameter as the `postgres` crate takes it: typed even when NULL.
fn pg_param<'p>(p: &'p Param<'_>) -> &'p (dyn ToSql + Sync) {
    match p {
        Param::Int(v) => v,
        Param::Text(v) => v,
        Param::Bytes(v) => v,
        Param::Bool(v) => v,
    }
}

impl<C: GenericClient> Engine for PgEngine<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, Error> {
        let s = self.statement(sql)?;
        let params: Vec<_> = params.iter().map(pg_param).collect();
        Ok(self.c.borrow_mut().execute(&s, &params)?)
    }

    fn query(&self, sql: &str, params: &[Param<'_>], each: Each<'_>) -> Result<(), Error> {
        let s = self.statement(sql)?;
        let params: Vec<_> = params.iter().map(pg_param).collect();
        for row in self.c.borrow_mut().query(&s, &params)? {
            each(&PgRow(row))?;
        }
        Ok(())
    }
}

struct PgRow(postgres::Row);

impl Row for PgRow {
    fn value(&self, i: usize) -> Result<Value<'_>, Error> {
        use postgres::types::Type;
        let r = &self.0;
        let Some(column) = r.columns().get(i) else {
            log::error!("database error: PostgreSQL: no column {i}");
            return Err(Error::Internal);
        };
        let v = match *column.type_() {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|n| Value::Int(n.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|n| Value::Int(n.into())),
            Type::BOOL => r.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
            Type::TEXT | Type::VARCHAR => r.try_get::<_, Option<&str>>(i)?.map(Value::Text),
            Type::BYTEA => r.try_get::<_, Option<&[u8]>>(i)?.map(Value::Bytes),
            ref other => {
                log::error!("database error: PostgreSQL: column {i} is of type {other}");
                return Err(Error::Internal);
            }
        };
        Ok(v.unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    /// Each migration's statements are those of `schema.pg.sql`, word for word, and
    /// they lead from 4 to this mfad's version, one step each.
    #[test]
    fn each_migration_makes_the_tables_of_a_new_database() {
        for (from, sql) in super::PG_MIGRATIONS {
            // A column added is the last of its table in schema.pg.sql.
            let made = match sql.strip_prefix("ALTER TABLE ") {
                Some(rest) => {
                    let (table, column) = rest
                        .trim_end_matches(';')
                        .split_once(" ADD COLUMN ")
                        .unwrap();
                    let start = super::SCHEMA
                        .find(&format!("CREATE TABLE {table} ("))
                        .unwrap();
                    let body = &super::SCHEMA[start..];
                    let last = body[..body.find("\n);").unwrap()].lines().last().unwrap();
                    let words =
                        |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
                    words(last) == words(column)
                }
                None => super::SCHEMA.contains(sql),
            };
            assert!(made, "the migration from {from}: {sql}");
        }
        let mut froms: Vec<i64> = super::PG_MIGRATIONS.iter().map(|(f, _)| *f).collect();
        froms.dedup();
        assert_eq!(froms, (4..super::SCHEMA_VERSION).collect::<Vec<_>>());
    }
}
