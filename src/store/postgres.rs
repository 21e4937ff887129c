//! The PostgreSQL engine (`--database postgres://…`): a small pool of synchronous
//! connections (the `postgres` crate), `schema.pg.sql` applied by the first node that
//! finds the database empty, and [`Tx`] in PostgreSQL's SQL. Every rule that must hold
//! across nodes is one statement that settles its own race (`UPDATE … WHERE last_step <
//! $2`, `DELETE … RETURNING`): at READ COMMITTED, a statement that finds its row locked
//! by a concurrent one waits for it and then checks its `WHERE` again on the new row.
//!
//! A connection that fails is dropped and a new one made at the next request, so the
//! server recovers by itself when PostgreSQL is back; meanwhile requests get `503`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use super::{
    normalize_email, Account, AccountSummary, AuditEvent, AuditRow, Ceremony, Challenge, OpenError,
    Passkey, Purpose, RefreshToken, SecondFactors, Totp, Tx, SCHEMA_VERSION,
};
use crate::auth::{Login, SignIn};
use crate::error::Error;

/// The schema, applied to an empty database.
const SCHEMA: &str = include_str!("../../schema.pg.sql");

/// Connections at most (each request holds one for its transaction).
const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection before `503`.
const POOL_WAIT: Duration = Duration::from_secs(5);
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
            None => e.is_closed() || io || e.to_string().contains("timeout"),
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
    statements: HashMap<&'static str, Statement>,
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
    pub fn read<T>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, Error>) -> Result<T, Error> {
        let mut taken = self.take()?;
        let Conn { client, statements } = taken.conn()?;
        f(&PgTx {
            c: RefCell::new(client),
            statements: RefCell::new(statements),
        })
    }

    /// Runs `f` in a transaction (READ COMMITTED) and commits it; an error from `f`
    /// rolls it back.
    pub fn write<T>(&self, f: impl FnOnce(&dyn Tx) -> Result<T, Error>) -> Result<T, Error> {
        let mut taken = self.take()?;
        let Conn { client, statements } = taken.conn()?;
        let mut t = client.transaction()?;
        let out = f(&PgTx {
            c: RefCell::new(&mut t),
            statements: RefCell::new(statements),
        });
        match out {
            Ok(v) => {
                t.commit()?;
                // Each transaction is its own COMMIT here: a batch of one writer.
                crate::metrics::METRICS.batch(1);
                Ok(v)
            }
            Err(e) => {
                let _ = t.rollback();
                Err(e)
            }
        }
    }

    /// The health check: one statement on a connection.
    pub fn ping(&self) -> Result<(), Error> {
        self.read(|tx| tx.meta("key_check").map(drop))
    }

    /// Runs `f` in a transaction only if no other node holds the janitor's lock then;
    /// `None` if one does (it is doing the same work).
    pub(super) fn exclusively<T>(
        &self,
        f: impl FnOnce(&dyn Tx) -> Result<T, Error>,
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
        let out = f(&PgTx {
            c: RefCell::new(&mut t),
            statements: RefCell::new(statements),
        })?;
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
        t.execute(
            "INSERT INTO mfad_schema (version) VALUES ($1)",
            &[&(SCHEMA_VERSION as i32)],
        )
        .map_err(|e| e.to_string())?;
        t.commit().map_err(|e| e.to_string())?;
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
        v if v > SCHEMA_VERSION => Err(format!(
            "its schema version is {v}, newer than this mfad's {SCHEMA_VERSION}; run a newer \
             mfad"
        )),
        v => Err(format!("unknown schema version {v}")),
    }
}

/// A transaction (or, for reads, the connection) of the PostgreSQL engine.
struct PgTx<'a, C: GenericClient> {
    c: RefCell<&'a mut C>,
    statements: RefCell<&'a mut HashMap<&'static str, Statement>>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> PgTx<'_, C> {
    /// `sql`, prepared once per connection.
    fn statement(&self, sql: &'static str) -> Result<Statement, Error> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.borrow_mut().prepare(sql)?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    fn exec(&self, sql: &'static str, params: Params<'_>) -> Result<u64, Error> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().execute(&s, params)?)
    }

    fn opt(&self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>, Error> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().query_opt(&s, params)?)
    }

    fn one(&self, sql: &'static str, params: Params<'_>) -> Result<Row, Error> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().query_one(&s, params)?)
    }

    fn all(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().query(&s, params)?)
    }
}

/// An account query: the columns of [`account`], then `$tail`.
macro_rules! select_account {
    ($tail:literal) => {
        concat!(
            "SELECT id, email, password_hash, external_subject, created_at, updated_at, ",
            "last_connected_at FROM accounts",
            $tail
        )
    };
}

fn account(r: &Row) -> Result<Account, Error> {
    Ok(Account {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        external_subject: r.try_get(3)?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
        last_connected_at: r.try_get(6)?,
    })
}

fn passkey(r: &Row) -> Result<Passkey, Error> {
    let id: Vec<u8> = r.try_get(0)?;
    Ok(Passkey {
        // Always 16 bytes as written; another length is a damaged row, never a match.
        id: id.try_into().unwrap_or([0; 16]),
        account_id: r.try_get(1)?,
        credential_id: r.try_get(2)?,
        public_key: r.try_get(3)?,
        alg: r.try_get(4)?,
        sign_count: r.try_get(5)?,
        name: r.try_get(6)?,
        created_at: r.try_get(7)?,
        last_used_at: r.try_get(8)?,
    })
}

/// A row that must be there (the statement just wrote it).
fn present<T>(v: Option<T>) -> Result<T, Error> {
    v.ok_or_else(|| {
        log::error!("database error: PostgreSQL: a row just written is not there");
        Error::Internal
    })
}

impl<C: GenericClient> Tx for PgTx<'_, C> {
    fn account_by_id(&self, id: i64) -> Result<Option<Account>, Error> {
        const SQL: &str = select_account!(" WHERE id = $1");
        self.opt(SQL, &[&id])?.as_ref().map(account).transpose()
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>, Error> {
        const SQL: &str = select_account!(" WHERE email = $1");
        // PostgreSQL's text holds no NUL, so no account has one (SQLite's could not
        // either: every email stored was checked).
        if email.contains('\0') {
            return Ok(None);
        }
        self.opt(SQL, &[&normalize_email(email)])?
            .as_ref()
            .map(account)
            .transpose()
    }

    fn account_by_subject(&self, subject: &str) -> Result<Option<Account>, Error> {
        const SQL: &str = select_account!(" WHERE external_subject = $1");
        if subject.contains('\0') {
            return Ok(None);
        }
        self.opt(SQL, &[&subject])?
            .as_ref()
            .map(account)
            .transpose()
    }

    fn create_account(
        &self,
        email: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, Error> {
        let row = self.opt(
            "INSERT INTO accounts (email, password_hash, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING id",
            &[&normalize_email(email), &password_hash, &now],
        )?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    fn ensure_external_account(&self, subject: &str, now: i64) -> Result<Account, Error> {
        self.exec(
            "INSERT INTO accounts (external_subject, created_at) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&subject, &now],
        )?;
        present(self.account_by_subject(subject)?)
    }

    fn set_password(&self, id: i64, hash: &str) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE accounts SET password_hash = $1 WHERE id = $2",
            &[&hash, &id],
        )? == 1)
    }

    fn touch_updated(&self, id: i64, now: i64) -> Result<(), Error> {
        self.exec(
            "UPDATE accounts SET updated_at = $2 WHERE id = $1",
            &[&id, &now],
        )?;
        Ok(())
    }

    fn touch_connected(&self, id: i64, now: i64) -> Result<(), Error> {
        self.exec(
            "UPDATE accounts SET last_connected_at = $2 WHERE id = $1",
            &[&id, &now],
        )?;
        Ok(())
    }

    fn delete_account(&self, id: i64) -> Result<bool, Error> {
        Ok(self.exec("DELETE FROM accounts WHERE id = $1", &[&id])? == 1)
    }

    fn list_accounts(&self) -> Result<Vec<AccountSummary>, Error> {
        self.all(
            "SELECT a.id, coalesce(a.email, 'external:' || a.external_subject),
                    a.password_hash IS NOT NULL, t.active_secret IS NOT NULL, a.created_at,
                    (SELECT count(*) FROM passkeys p WHERE p.account_id = a.id)
             FROM accounts a LEFT JOIN totp t ON t.account_id = a.id ORDER BY a.id",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(AccountSummary {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                has_password: r.try_get(2)?,
                totp_enabled: r.try_get::<_, Option<bool>>(3)?.unwrap_or(false),
                created_at: r.try_get(4)?,
                passkeys: r.try_get(5)?,
            })
        })
        .collect()
    }

    fn totp(&self, account_id: i64) -> Result<Option<Totp>, Error> {
        self.opt(
            "SELECT pending_secret, active_secret, last_step, backup_salt, failed_verifies,
                    locked_until
             FROM totp WHERE account_id = $1",
            &[&account_id],
        )?
        .map(|r| {
            Ok(Totp {
                pending_secret: r.try_get(0)?,
                active_secret: r.try_get(1)?,
                last_step: r.try_get(2)?,
                backup_salt: r.try_get(3)?,
                failed_verifies: r.try_get(4)?,
                locked_until: r.try_get(5)?,
            })
        })
        .transpose()
    }

    fn second_factors(&self, account_id: i64) -> Result<SecondFactors, Error> {
        let r = self.one(
            "SELECT EXISTS (SELECT 1 FROM totp WHERE account_id = $1 AND active_secret IS NOT NULL),
                    (SELECT count(*) FROM backup_codes WHERE account_id = $1),
                    (SELECT count(*) FROM passkeys WHERE account_id = $1)",
            &[&account_id],
        )?;
        Ok(SecondFactors {
            totp: r.try_get(0)?,
            backup_codes: r.try_get(1)?,
            passkeys: r.try_get(2)?,
        })
    }

    fn totp_enabled(&self, account_id: i64) -> Result<bool, Error> {
        Ok(self
            .opt(
                "SELECT 1 FROM totp WHERE account_id = $1 AND active_secret IS NOT NULL",
                &[&account_id],
            )?
            .is_some())
    }

    fn set_pending_secret(&self, account_id: i64, sealed: &[u8]) -> Result<bool, Error> {
        Ok(self.exec(
            "INSERT INTO totp (account_id, pending_secret) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET pending_secret = excluded.pending_secret
             WHERE totp.active_secret IS NULL",
            &[&account_id, &sealed],
        )? == 1)
    }

    fn activate_secret(
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
            &[&account_id, &pending, &step, &backup_salt, &now],
        )? == 1)
    }

    fn raise_last_step(&self, account_id: i64, step: i64) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE totp SET last_step = $2
             WHERE account_id = $1 AND active_secret IS NOT NULL AND last_step < $2",
            &[&account_id, &step],
        )? == 1)
    }

    fn clear_totp(&self, account_id: i64) -> Result<bool, Error> {
        let had = self
            .opt(
                "DELETE FROM totp WHERE account_id = $1 RETURNING active_secret IS NOT NULL",
                &[&account_id],
            )?
            .map(|r| r.try_get::<_, bool>(0))
            .transpose()?
            .unwrap_or(false);
        self.exec(
            "DELETE FROM backup_codes WHERE account_id = $1",
            &[&account_id],
        )?;
        Ok(had)
    }

    fn replace_backup_codes(
        &self,
        account_id: i64,
        salt: &[u8],
        hashes: &[[u8; 32]],
    ) -> Result<(), Error> {
        self.exec(
            "UPDATE totp SET backup_salt = $2 WHERE account_id = $1",
            &[&account_id, &salt],
        )?;
        self.exec(
            "DELETE FROM backup_codes WHERE account_id = $1",
            &[&account_id],
        )?;
        let all: Vec<&[u8]> = hashes.iter().map(|h| &h[..]).collect();
        self.exec(
            "INSERT INTO backup_codes (account_id, code_hash)
             SELECT $1, h FROM unnest($2::BYTEA[]) AS h",
            &[&account_id, &all],
        )?;
        Ok(())
    }

    fn spend_backup_code(&self, account_id: i64, hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM backup_codes WHERE account_id = $1 AND code_hash = $2",
            &[&account_id, &&hash[..]],
        )? == 1)
    }

    fn backup_codes_remaining(&self, account_id: i64) -> Result<i64, Error> {
        Ok(self
            .one(
                "SELECT count(*) FROM backup_codes WHERE account_id = $1",
                &[&account_id],
            )?
            .try_get(0)?)
    }

    fn count_verify_failure(
        &self,
        account_id: i64,
        limit: i64,
        lock_until: i64,
    ) -> Result<(i64, i64), Error> {
        // An account without TOTP gets a row too: wrong password confirmations count.
        // The row is locked by the upsert, so concurrent failures count one by one.
        let r = self.one(
            "INSERT INTO totp (account_id, failed_verifies, locked_until)
             VALUES ($1, CASE WHEN $2::BIGINT <= 1 THEN 0 ELSE 1 END,
                         CASE WHEN $2::BIGINT <= 1 THEN $3::BIGINT ELSE 0 END)
             ON CONFLICT (account_id) DO UPDATE SET
                 locked_until = CASE WHEN totp.failed_verifies + 1 >= $2::BIGINT THEN $3::BIGINT
                                     ELSE totp.locked_until END,
                 failed_verifies = CASE WHEN totp.failed_verifies + 1 >= $2::BIGINT THEN 0
                                        ELSE totp.failed_verifies + 1 END
             RETURNING failed_verifies, locked_until",
            &[&account_id, &limit, &lock_until],
        )?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    fn reset_verify_failures(&self, account_id: i64) -> Result<(), Error> {
        self.exec(
            "UPDATE totp SET failed_verifies = 0 WHERE account_id = $1 AND failed_verifies != 0",
            &[&account_id],
        )?;
        Ok(())
    }

    fn insert_challenge(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        expires_at: i64,
        purpose: Purpose,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO mfa_challenges (token_hash, account_id, expires_at, purpose)
             VALUES ($1, $2, $3, $4)",
            &[&&hash[..], &account_id, &expires_at, &purpose.code()],
        )?;
        Ok(())
    }

    fn challenge(&self, hash: &[u8; 32]) -> Result<Option<Challenge>, Error> {
        self.opt(
            "SELECT account_id, expires_at, purpose FROM mfa_challenges WHERE token_hash = $1",
            &[&&hash[..]],
        )?
        .map(|r| {
            Ok(Challenge {
                account_id: r.try_get(0)?,
                expires_at: r.try_get(1)?,
                purpose: Purpose::from_code(r.try_get(2)?),
            })
        })
        .transpose()
    }

    fn take_challenge(&self, hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM mfa_challenges WHERE token_hash = $1",
            &[&&hash[..]],
        )? == 1)
    }

    fn count_challenge_failure(&self, hash: &[u8; 32]) -> Result<i64, Error> {
        Ok(self
            .opt(
                "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1
                 RETURNING failures",
                &[&&hash[..]],
            )?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0))
    }

    fn user_handle(&self, account_id: i64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .opt(
                "SELECT user_handle FROM accounts WHERE id = $1",
                &[&account_id],
            )?
            .map(|r| r.try_get::<_, Option<Vec<u8>>>(0))
            .transpose()?
            .flatten())
    }

    fn ensure_user_handle(&self, account_id: i64, handle: &[u8]) -> Result<Vec<u8>, Error> {
        self.exec(
            "UPDATE accounts SET user_handle = $2 WHERE id = $1 AND user_handle IS NULL",
            &[&account_id, &handle],
        )?;
        present(self.user_handle(account_id)?)
    }

    fn passkeys(&self, account_id: i64) -> Result<Vec<Passkey>, Error> {
        self.all(
            "SELECT id, account_id, credential_id, public_key, alg, sign_count, name,
                    created_at, last_used_at
             FROM passkeys WHERE account_id = $1 ORDER BY created_at, id",
            &[&account_id],
        )?
        .iter()
        .map(passkey)
        .collect()
    }

    fn passkey_by_credential(&self, credential_id: &[u8]) -> Result<Option<Passkey>, Error> {
        self.opt(
            "SELECT id, account_id, credential_id, public_key, alg, sign_count, name,
                    created_at, last_used_at
             FROM passkeys WHERE credential_id = $1",
            &[&credential_id],
        )?
        .as_ref()
        .map(passkey)
        .transpose()
    }

    fn insert_passkey(&self, p: &Passkey) -> Result<bool, Error> {
        Ok(self.exec(
            "INSERT INTO passkeys (id, account_id, credential_id, public_key, alg, sign_count,
                                   name, created_at, last_used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING",
            &[
                &&p.id[..],
                &p.account_id,
                &p.credential_id,
                &p.public_key,
                &p.alg,
                &p.sign_count,
                &p.name,
                &p.created_at,
                &p.last_used_at,
            ],
        )? == 1)
    }

    fn use_passkey(&self, id: &[u8; 16], sign_count: i64, now: i64) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE passkeys SET sign_count = $2, last_used_at = $3
             WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
            &[&&id[..], &sign_count, &now],
        )? == 1)
    }

    fn delete_passkey(&self, account_id: i64, id: &[u8; 16]) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM passkeys WHERE id = $1 AND account_id = $2",
            &[&&id[..], &account_id],
        )? == 1)
    }

    fn delete_passkeys(&self, account_id: i64) -> Result<usize, Error> {
        Ok(self.exec("DELETE FROM passkeys WHERE account_id = $1", &[&account_id])? as usize)
    }

    fn insert_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        expires_at: i64,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO passkey_ceremonies
                 (challenge_hash, purpose, account_id, bound_to, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &&challenge_hash[..],
                &ceremony.code(),
                &ceremony.account(),
                &ceremony.bound_to(),
                &expires_at,
            ],
        )?;
        Ok(())
    }

    fn take_ceremony(
        &self,
        challenge_hash: &[u8; 32],
        ceremony: Ceremony<'_>,
        now: i64,
    ) -> Result<bool, Error> {
        Ok(self.exec(
            "DELETE FROM passkey_ceremonies
             WHERE challenge_hash = $1 AND purpose = $2
               AND account_id IS NOT DISTINCT FROM $3::BIGINT
               AND bound_to IS NOT DISTINCT FROM $4::BYTEA AND expires_at > $5",
            &[
                &&challenge_hash[..],
                &ceremony.code(),
                &ceremony.account(),
                &ceremony.bound_to(),
                &now,
            ],
        )? == 1)
    }

    fn insert_refresh_token(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        family: &[u8],
        expires_at: i64,
        login: Login,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO refresh_tokens
                 (token_hash, account_id, family, expires_at, sign_in, auth_time)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &&hash[..],
                &account_id,
                &family,
                &expires_at,
                &login.how.as_str(),
                &login.at,
            ],
        )?;
        Ok(())
    }

    fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshToken>, Error> {
        self.opt(
            "SELECT account_id, family, expires_at, rotated, sign_in, auth_time
             FROM refresh_tokens WHERE token_hash = $1",
            &[&&hash[..]],
        )?
        .map(|r| {
            let how: String = r.try_get(4)?;
            let at: i64 = r.try_get(5)?;
            Ok(RefreshToken {
                account_id: r.try_get(0)?,
                family: r.try_get(1)?,
                expires_at: r.try_get(2)?,
                rotated: r.try_get(3)?,
                login: SignIn::from_stored(&how).map(|how| Login { how, at }),
            })
        })
        .transpose()
    }

    fn rotate_refresh_token(&self, hash: &[u8; 32]) -> Result<bool, Error> {
        Ok(self.exec(
            "UPDATE refresh_tokens SET rotated = TRUE WHERE token_hash = $1 AND NOT rotated",
            &[&&hash[..]],
        )? == 1)
    }

    fn revoke_family(&self, family: &[u8]) -> Result<usize, Error> {
        Ok(self.exec("DELETE FROM refresh_tokens WHERE family = $1", &[&family])? as usize)
    }

    fn revoke_sessions(&self, account_id: i64) -> Result<usize, Error> {
        Ok(self.exec(
            "DELETE FROM refresh_tokens WHERE account_id = $1",
            &[&account_id],
        )? as usize)
    }

    fn insert_verification(
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
            &[&&hash[..], &account_id, &method, &verified_at, &expires_at],
        )?;
        Ok(())
    }

    fn take_verification(
        &self,
        hash: &[u8; 32],
        account_id: i64,
        now: i64,
    ) -> Result<Option<(String, i64)>, Error> {
        self.opt(
            "DELETE FROM verifications
             WHERE token_hash = $1 AND account_id = $2 AND expires_at > $3
             RETURNING method, verified_at",
            &[&&hash[..], &account_id, &now],
        )?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
    }

    fn purge_expired(&self, now: i64) -> Result<usize, Error> {
        let mut n = 0;
        for sql in [
            "DELETE FROM mfa_challenges WHERE expires_at <= $1",
            "DELETE FROM passkey_ceremonies WHERE expires_at <= $1",
            "DELETE FROM verifications WHERE expires_at <= $1",
            "DELETE FROM refresh_tokens WHERE expires_at <= $1",
            // The throttles' attempts older than their minute.
            "DELETE FROM throttle WHERE at <= $1::BIGINT - 60",
        ] {
            n += self.exec(sql, &[&now])? as usize;
        }
        Ok(n)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.opt("SELECT value FROM meta WHERE name = $1", &[&name])?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(Error::from)
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.exec(
            "INSERT INTO meta (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )?;
        Ok(())
    }

    fn audit(
        &self,
        account_id: Option<i64>,
        now: i64,
        event: &str,
        detail: Option<&str>,
    ) -> Result<(), Error> {
        self.exec(
            "INSERT INTO audit (account_id, at, event, detail) VALUES ($1, $2, $3, $4)",
            &[&account_id, &now, &event, &detail],
        )?;
        Ok(())
    }

    fn recent_audit(&self, account_id: i64, limit: i64) -> Result<Vec<AuditEvent>, Error> {
        self.all(
            "SELECT at, event, detail FROM audit WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
            &[&account_id, &limit],
        )?
        .iter()
        .map(|r| {
            Ok(AuditEvent {
                at: r.try_get(0)?,
                event: r.try_get(1)?,
                detail: r.try_get(2)?,
            })
        })
        .collect()
    }

    fn audit_trail(&self, account_id: Option<i64>, since: i64) -> Result<Vec<AuditRow>, Error> {
        self.all(
            "SELECT e.account_id, a.email, e.at, e.event, e.detail
             FROM audit e LEFT JOIN accounts a ON a.id = e.account_id
             WHERE e.at >= $2 AND ($1::BIGINT IS NULL OR e.account_id = $1)
             ORDER BY e.id",
            &[&account_id, &since],
        )?
        .iter()
        .map(|r| {
            Ok(AuditRow {
                account_id: r.try_get(0)?,
                email: r.try_get(1)?,
                at: r.try_get(2)?,
                event: r.try_get(3)?,
                detail: r.try_get(4)?,
            })
        })
        .collect()
    }

    fn purge_audit(&self, before: i64) -> Result<usize, Error> {
        Ok(self.exec("DELETE FROM audit WHERE at < $1", &[&before])? as usize)
    }
}
