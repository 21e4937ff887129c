//! Seeding the database directly, as login and enable would write it, for what would
//! otherwise cost a PBKDF2 per item (challenges, TOTP accounts, password accounts).

use std::ffi::OsString;
use std::path::Path;

use data_encoding::HEXLOWER;
use mfad::config::Config;
use mfad::store::Db;
use mfad::{crypto, totp};

use crate::jobs::Item;
use crate::{Res, PASSWORD};

/// `--database`: a PostgreSQL server on which each data directory of the run gets a new
/// database of its own (created here); without it, each uses its own SQLite file.
pub(crate) static POSTGRES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The PostgreSQL database of data directory `dir`, made the first time it is asked.
pub(crate) fn database_url(dir: &Path) -> Option<String> {
    static MADE: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    let base = POSTGRES.get()?;
    let mut made = MADE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, url)) = made.iter().find(|(d, _)| d == dir) {
        return Some(url.clone());
    }
    let name = format!("mfad_loadgen_{}_{}", std::process::id(), made.len());
    let mut admin = postgres::Client::connect(base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("--database: cannot connect: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("--database: cannot create {name}: {e}"));
    let (server, _) = base.rsplit_once('/').expect("a URL that names a database");
    let url = format!("{server}/{name}");
    made.push((dir.to_path_buf(), url.clone()));
    Some(url)
}

pub(crate) fn instance_for(dir: &Path) -> Res<mfad::Instance> {
    let args: Vec<OsString> = vec!["serve".into(), "--data-dir".into(), dir.into()];
    let url = database_url(dir);
    let env = |k: &str| url.clone().filter(|_| k == "MFAD_DATABASE_URL");
    let config = Config::parse(&env, args).map_err(|e| e.to_string())?;
    mfad::open_instance(&config)
}

pub(crate) fn db_err(e: mfad::error::Error) -> String {
    format!("database: {}", e.message())
}

pub(crate) struct Seeder {
    pub(crate) keys: crypto::Keys,
    pub(crate) db: Db,
    pub(crate) password_hash: String,
    pub(crate) counter: usize,
}

impl Seeder {
    pub(crate) fn open(dir: &Path) -> Res<Seeder> {
        let mfad::Instance { keys, db } = instance_for(dir)?;
        // One real hash, shared by every seeded account: seeding costs one PBKDF2.
        let password_hash = crypto::hash_password(PASSWORD, crypto::PASSWORD_ITERATIONS)
            .map_err(|e| e.to_string())?;
        Ok(Seeder {
            keys,
            db,
            password_hash,
            counter: 0,
        })
    }

    /// A connection of the bench's own to the same file, for the reports that look
    /// under mfad's storage API (the SQL here is the bench's, not mfad's).
    fn raw(&self) -> Result<rusqlite::Connection, String> {
        let sqlite = self.db.sqlite().ok_or("the seeding reports read SQLite")?;
        rusqlite::Connection::open(sqlite.path()).map_err(|e| e.to_string())
    }

    /// How many of each audit event the database holds.
    /// An account's replay state and audit trail, to explain a refused verify.
    pub(crate) fn account_state(&self, email: &str) -> String {
        self.raw()
            .map_or_else(|e| e, |c| Self::account_state_on(&c, email))
    }

    pub(crate) fn account_state_on(c: &rusqlite::Connection, email: &str) -> String {
        let row = c.query_row(
            "SELECT a.id, t.last_step, t.failed_verifies FROM accounts a
             JOIN totp t ON t.account_id = a.id WHERE a.email = ?1",
            [email],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        );
        let Ok((id, last_step, failed)) = row else {
            return "not found".into();
        };
        let events = c
            .prepare("SELECT event, at FROM audit WHERE account_id = ?1 ORDER BY id")
            .and_then(|mut st| {
                st.query_map([id], |r| {
                    Ok(format!(
                        "{}@{}",
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map(|v| v.join(" "))
            .unwrap_or_else(|e| e.to_string());
        format!("id {id}, last_step {last_step}, failed_verifies {failed}, audit: {events}")
    }

    pub(crate) fn audit_summary(&self) -> String {
        let Ok(c) = self.raw() else {
            return "cannot open the database".into();
        };
        let rows = c
            .prepare("SELECT event, count(*) FROM audit GROUP BY event ORDER BY event")
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok(format!(
                        "{} {}",
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            });
        match rows {
            Ok(r) if r.is_empty() => "none".into(),
            Ok(r) => r.join(", "),
            Err(e) => format!("cannot read: {e}"),
        }
    }

    /// Local accounts with the bench password and no TOTP.
    pub(crate) fn password_accounts(&mut self, n: usize) -> Res<Vec<String>> {
        let now = mfad::unix_now();
        let emails: Vec<String> = (0..n)
            .map(|i| format!("login-{}-{i}@bench.test", self.counter))
            .collect();
        self.counter += 1;
        let hash = self.password_hash.clone();
        self.db
            .write(|c| {
                for e in &emails {
                    c.create_account(e, Some(&hash), now)?;
                }
                Ok(())
            })
            .map_err(db_err)?;
        Ok(emails)
    }

    /// `n` accounts with TOTP enabled (and the bench password), one item each: a code
    /// for the current step (accepted while the clock is in that step or the next). With
    /// `challenges`, each item also gets an MFA challenge, stored as login would store
    /// it. One item per account: two items of one account would depend on their order
    /// (the later step first makes the earlier one a replay), and a request can be held
    /// up (see the notes printed with the results).
    pub(crate) fn totp_items(&mut self, n: usize, challenges: bool) -> Res<Vec<Item>> {
        let now = mfad::unix_now() as u64;
        let step = totp::step_at(now);
        let batch = self.counter;
        self.counter += 1;
        let keys = &self.keys;
        let hash = self.password_hash.clone();
        let items = self
            .db
            .write(|c| {
                let mut items = Vec::with_capacity(n);
                let salt: [u8; 16] = crypto::random()?;
                for i in 0..n {
                    let email = format!("totp-{batch}-{i}@bench.test");
                    let Some(id) = c.create_account(&email, Some(&hash), now as i64)? else {
                        return Err(mfad::error::Error::Internal);
                    };
                    let secret: [u8; 20] = crypto::random()?;
                    let sealed = keys.seal(&secret, id)?;
                    c.set_pending_secret(id, &sealed)?;
                    c.activate_secret(id, &sealed, 0, &salt, now as i64)?;
                    let challenge = if challenges {
                        let raw: [u8; 32] = crypto::random()?;
                        let expires = now as i64 + 3600;
                        c.insert_challenge(
                            &keys.token_hash(&raw),
                            id,
                            expires,
                            mfad::store::Purpose::Login,
                        )?;
                        Some(HEXLOWER.encode(&raw))
                    } else {
                        None
                    };
                    let code = totp::code_for_step(&secret, step);
                    items.push(Item {
                        email,
                        challenge,
                        code: String::from_utf8_lossy(&code).into_owned(),
                        step,
                    });
                }
                Ok(items)
            })
            .map_err(db_err)?;
        self.checkpoint();
        Ok(items)
    }

    /// Copies the WAL into the database and empties it, so that a run does not start
    /// with the seeding's pages still to be checkpointed by one of mfad's requests.
    pub(crate) fn checkpoint(&self) {
        if let Ok(c) = self.raw() {
            let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
    }
}
