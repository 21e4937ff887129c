//! mfad: a self-hosted, single-binary authentication server with TOTP two-factor
//! authentication, wire-compatible with Storno's MFA endpoints.
//!
//! Data flows one way: `main` → `cli`/`lib` → `http` → `service` → `store` → leaves
//! (`auth`, `crypto`, `durability`, `error`, `json`, `log`, `metrics`, `qr`, `time`,
//! `totp`, `web`, `webauthn`); `config` is read by all and imports only leaves. `cli`
//! serves the admin commands beside `http`. This file opens the data directory (the
//! instance key and the database) for both. `layers.rs` (a test) keeps the direction.

pub mod access;
pub mod auth;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod durability;
pub mod error;
pub mod http;
pub mod json;
#[cfg(test)]
mod layers;
pub mod log;
pub mod metrics;
pub mod oidc;
pub mod qr;
pub mod service;
pub mod store;
pub mod time;
pub mod totp;
pub mod web;
pub mod webauthn;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use config::Config;
use crypto::{Keys, KEY_LEN};
use store::Db;

/// The clock lives in the leaf `time`; here for the callers that name it `mfad::unix_now`.
pub use time::unix_now;

/// The data directory, opened: the derived keys and the database.
pub struct Instance {
    pub keys: Keys,
    pub db: Db,
}

/// Where the instance key comes from, which says whether mfad may create it and how
/// strictly its mode is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    /// `--key-file`: never created here; readable by its owner only.
    File(PathBuf),
    /// A systemd credential (`$CREDENTIALS_DIRECTORY/mfad.key`): never created here.
    /// systemd gives credentials mode 0400 plus an ACL for the service user, which shows
    /// as group-readable; the directory itself is private to the service.
    Credential(PathBuf),
    /// `DATA_DIR/mfad.key`, beside the database: created on the first start.
    DataDir(PathBuf),
}

impl KeySource {
    fn of(config: &Config) -> KeySource {
        if let Some(p) = &config.key_file {
            return KeySource::File(p.clone());
        }
        if let Some(dir) = &config.credentials_dir {
            let p = dir.join("mfad.key");
            if p.exists() {
                return KeySource::Credential(p);
            }
        }
        KeySource::DataDir(config.data_dir.join("mfad.key"))
    }

    fn path(&self) -> &Path {
        match self {
            KeySource::File(p) | KeySource::Credential(p) | KeySource::DataDir(p) => p,
        }
    }

    /// Kept in the data directory, beside the database, and made there when missing.
    fn in_data_dir(&self) -> bool {
        matches!(self, KeySource::DataDir(_))
    }
}

fn read_key(source: &KeySource) -> Result<[u8; KEY_LEN], String> {
    let path = source.path();
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("cannot read key file {shown}: {e}"))?;
    let loose = match source {
        KeySource::Credential(_) => 0o027,
        KeySource::File(_) | KeySource::DataDir(_) => 0o077,
    };
    if meta.mode() & loose != 0 {
        return Err(format!(
            "key file {shown} has mode {:o}: others can read it; run chmod 600 {shown}",
            meta.mode() & 0o777
        ));
    }
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    fs::File::open(path)
        .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read key file {shown}: {e}"))?;
    let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "key file {shown} holds {}{} bytes, not {KEY_LEN}: it is not an mfad key (or it was \
             truncated); restore it from a backup",
            bytes.len(),
            if bytes.len() > KEY_LEN { "+" } else { "" }
        )
    })?;
    crypto::wipe(&mut bytes);
    Ok(key)
}

/// Creates a new key file (never overwriting one) with 32 bytes from the OS CSPRNG.
fn create_key(path: &Path) -> Result<(), String> {
    let key: [u8; KEY_LEN] = crypto::random().map_err(|e| e.to_string())?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create key file {}: {e}", path.display()))?;
    f.write_all(&key)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write key file {}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    ::log::info!("created a new instance key at {}", path.display());
    Ok(())
}

/// A key beside no usable database is a database lost (a failed restore, a copy onto a
/// full disk, a slip of `rm`): making a new, empty one would silently throw every
/// account away. So with the key in the data directory, a missing or empty `mfad.db`
/// stops every command unless `--init` says to start over. An empty file is refused
/// beside any key; a missing one beside a key kept elsewhere (a systemd credential, made
/// before the first start) is the first start.
fn check_database_is_there(
    config: &Config,
    db: &Path,
    key: &Path,
    key_beside_db: bool,
) -> Result<(), String> {
    if config.init || !key.exists() {
        return Ok(());
    }
    let empty = match fs::metadata(db) {
        Ok(m) if m.len() > 0 => return Ok(()),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !key_beside_db {
                return Ok(());
            }
            false
        }
        Err(e) => return Err(format!("cannot read database {}: {e}", db.display())),
    };
    Err(format!(
        "database {} is {} but key file {} exists: the accounts it held are not there. \
         Restore mfad.db from a backup; to start over with an empty database on purpose, \
         run once with --init",
        db.display(),
        if empty { "empty" } else { "missing" },
        key.display()
    ))
}

/// Creates the data directory (mode 0700) unless it exists.
fn ensure_data_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Opens (creating on first start) the data directory, the key and the database, and
/// checks that the key is the one this database was made with.
pub fn open_instance(config: &Config) -> Result<Instance, String> {
    let dir = &config.data_dir;
    ensure_data_dir(dir)?;
    let source = KeySource::of(config);
    let path = source.path();
    let in_data_dir = source.in_data_dir();
    let postgres = match &config.database {
        Some(config::Database::Postgres(url)) => Some(url.as_str()),
        _ => None,
    };
    let db_path = match &config.database {
        Some(config::Database::Sqlite(p)) => p.clone(),
        _ => dir.join("mfad.db"),
    };
    let key_existed = path.exists();
    if postgres.is_none() {
        check_database_is_there(config, &db_path, path, in_data_dir)?;
    }
    // A server that cannot be reached must not leave a new key behind: the next start
    // would find a key beside an empty database and refuse it.
    let pg = postgres
        .map(|url| Db::connect_postgres(url).map_err(|e| e.to_string()))
        .transpose()?;
    if in_data_dir && !path.exists() {
        if let Some(db) = &pg {
            let owned = db
                .read(|tx| tx.meta("key_check"))
                .map_err(|_| "cannot read the database (see the log above)".to_string())?;
            if owned.is_some() {
                return Err(format!(
                    "database {} already holds an mfad instance, and key file {} is missing: \
                     every node needs the same key; copy mfad.key from a node that serves this \
                     database (mfad will not make a new one)",
                    db.shown(),
                    path.display()
                ));
            }
        }
        if postgres.is_none() && db_path.exists() {
            return Err(format!(
                "key file {} is missing but database {} exists: without its key the database \
                 is useless; restore the key from a backup (mfad will not make a new one)",
                path.display(),
                db_path.display()
            ));
        }
        create_key(path)?;
    }
    let mut master = read_key(&source)?;
    let keys = Keys::derive(&master).map_err(|e| e.to_string());
    crypto::wipe(&mut master);
    let keys = keys?;
    let db = match pg {
        Some(db) => db,
        None => Db::open(&db_path, config.durability).map_err(|e| e.to_string())?,
    };
    // Once per start, before anything is written: a damaged file is reported, not served
    // (and not made worse).
    db.integrity_check().map_err(|e| {
        format!(
            "database {} failed its integrity check ({e}); restore it from a backup",
            db.shown()
        )
    })?;
    let check = keys.key_check();
    let stored = db
        .read(|tx| tx.meta("key_check"))
        .map_err(|_| "cannot read the database (see the log above)".to_string())?;
    match stored {
        Some(v) if crypto::ct_eq(&v, &check) => {}
        Some(_) => {
            return Err(format!(
                "key file {} is not the key of database {}: was it replaced? Restore the right one",
                path.display(),
                db.shown()
            ))
        }
        // An empty PostgreSQL database beside a key of the data directory is what the
        // missing mfad.db is for SQLite (see check_database_is_there): a database lost,
        // or the wrong one named, unless --init says to start over.
        None if postgres.is_some() && key_existed && in_data_dir && !config.init => {
            return Err(format!(
                "database {} is empty but key file {} exists: the accounts it held are not \
                 there. Name the database they are in (or move them there with mfad \
                 migrate); to start over with an empty database on purpose, run once with \
                 --init",
                db.shown(),
                path.display()
            ))
        }
        None => db
            .write(|tx| tx.set_meta("key_check", &check))
            .map_err(|_| "cannot write to the database".to_string())?,
    }
    Ok(Instance { keys, db })
}

/// When this database was brought from an mfad that signed HS256 (the migration to
/// schema 3 records it); `None` for one that never knew such tokens.
pub fn hs256_upgraded_at(db: &store::Db) -> Result<Option<i64>, String> {
    let stored = db
        .read(|tx| tx.meta("hs256_upgraded_at"))
        .map_err(|_| "cannot read the database (see the log above)".to_string())?;
    match stored {
        None => Ok(None),
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| "the database's hs256_upgraded_at is not a number".to_string()),
    }
}

/// Builds the shared request state from the configuration and the opened instance,
/// which it keeps (the [`service::App`] owns the database).
pub fn app(config: &Config, instance: Instance) -> Result<service::App, String> {
    let Instance { keys, db } = instance;
    let hs256_upgraded_at = hs256_upgraded_at(&db)?;
    let external_pem = match &config.jwt_public_key {
        Some(p) => Some(
            fs::read(p)
                .map_err(|e| format!("--jwt-public-key: cannot read {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let external = match (&external_pem, config.jwt_algorithm) {
        (Some(pem), Some(algorithm)) => Some(auth::ExternalIssuer {
            pem: pem.as_slice(),
            algorithm,
            issuer: config.jwt_external_issuer.as_deref(),
            audience: config.jwt_audience.as_deref(),
        }),
        _ => None,
    };
    let tokens = auth::Tokens::new(&keys, &config.jwt_issuer, hs256_upgraded_at, external)
        .map_err(|e| match e {
            auth::SetupError::ExternalKey(e) => format!("--jwt-public-key: {e}"),
            e => e.to_string(),
        })?;
    let registered = service::clients::list(&db)
        .map_err(|_| "cannot read the database (see the log above)".to_string())?;
    if let Some(first) = registered.first() {
        match &config.web.public_origin {
            Some(issuer) if oidc::issuer_ok(issuer) => {}
            shown => {
                return Err(format!(
                    "{} OpenID client(s) are registered (such as {}), so --public-url must be \
                     the issuer the apps were given, https://… (or http://localhost… for a \
                     test); it is {}",
                    registered.len(),
                    first.id,
                    shown.as_deref().unwrap_or("not set")
                ))
            }
        }
    }
    let rp = config.relying_party();
    if !webauthn::valid_rp_id(&rp.id) {
        // An address, not a name: browsers refuse passkeys there. Everything else works.
        ::log::warn!(
            "passkeys: the RP ID {} is not a domain name, so browsers will refuse to register \
             or use passkeys; give --public-url a host name (or set --rp-id)",
            rp.id
        );
    }
    if config.web.plain_http()
        && (!config.access.rules.is_empty() || config.web.session_domain.is_some())
    {
        ::log::warn!(
            "forward-auth: --public-url is plain http, so the session cookie is not Secure \
             and travels in the clear; that is for development only, put TLS in front"
        );
    }
    let db = Arc::new(db);
    let mut app = service::App::new(
        db,
        keys,
        tokens,
        config.issuer.clone(),
        service::ThrottleSettings {
            login_rate: config.login_rate,
            ipv6_prefix: config.throttle_ipv6_prefix,
        },
        rp,
    )
    .map_err(|_| "cannot initialise (the random number generator failed)".to_string())?;
    app.oidc = service::oidc::Provider::new(config.web.public_origin.clone());
    app.forward = service::Forward {
        rules: config.access.clone(),
        session_idle: config.session_idle,
    };
    Ok(app)
}

/// A running server: the HTTP workers, the storage janitor, and the lock that keeps a
/// second server off the same data directory.
pub struct Running {
    http: http::Running,
    metrics: Option<http::MetricsListener>,
    janitor: store::Janitor,
    _lock: fs::File,
}

impl Running {
    /// The address actually bound (the port is known even for `:0`).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.http.addr()
    }

    /// The metrics listener's address, if `--metrics-listen` started one.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(http::MetricsListener::addr)
    }

    /// Finishes the requests in flight, then stops the metrics and the janitor.
    pub fn shutdown(self) {
        self.http.shutdown();
        if let Some(m) = self.metrics {
            m.shutdown();
        }
        self.janitor.stop();
    }
}

/// Takes `DIR/mfad.lock` for this process (an exclusive `flock`, released when the
/// process ends however it ends) and writes its pid there. Two servers on one data
/// directory would each throttle and lock out on their own, and each believe it owns the
/// WAL checkpoints; the admin commands need no lock (SQLite serialises their writes).
fn lock_data_dir(dir: &Path) -> Result<fs::File, String> {
    let path = dir.join("mfad.lock");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
            format!("process {holder}")
        } else {
            "another process".to_string()
        };
        return Err(format!(
            "another mfad ({who}) is already serving from {}; stop it first, or give \
             this one another --data-dir",
            dir.display()
        ));
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| format!("cannot write lock file {}: {e}", path.display()))?;
    Ok(file)
}

/// Starts the server: returns once it is listening.
pub fn serve(config: &Config) -> Result<Running, String> {
    let dir = &config.data_dir;
    ensure_data_dir(dir)?;
    let lock = lock_data_dir(dir)?;
    let app = Arc::new(app(config, open_instance(config)?)?);
    let retention = i64::from(config.audit_retention_days) * 86_400;
    let janitor = store::Janitor::start(app.db.clone(), retention)?;
    let limits = http::Limits {
        socket_timeout: config.test_socket_timeout,
        request_deadline: config.test_request_deadline,
    };
    let http = http::start(
        config.listen,
        app,
        config.workers,
        limits,
        config.web.clone(),
    )?;
    let metrics = match config.metrics_listen {
        Some(listen) => match http::start_metrics(listen, http.open_connections()) {
            Ok(m) => Some(m),
            Err(e) => {
                http.shutdown();
                return Err(e);
            }
        },
        None => None,
    };
    Ok(Running {
        http,
        metrics,
        janitor,
        _lock: lock,
    })
}
