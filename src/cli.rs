//! The admin commands (`mfad token`, `mfad user …`, `mfad client …`): reading their input
//! and formatting their output. What they do is `service::admin`'s and
//! `service::clients`'; each works on the same data
//! directory as a running server and returns its output as text for `main` to print.

use std::io::{BufRead, IsTerminal};

use crate::config::{Command, Config};
use crate::crypto;
use crate::service::{admin, clients};
use crate::store;
use crate::time::rfc3339;
use crate::Instance;

/// NIST SP 800-63B 5.1.1.2: at least 8 characters, no composition rules.
const MIN_PASSWORD_CHARS: usize = 8;
/// Bounds the PBKDF2 input; far beyond any real passphrase.
const MAX_PASSWORD_BYTES: usize = 1024;

fn check_email(email: &str) -> Result<String, String> {
    let e = store::normalize_email(email);
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !e.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(e)
    } else {
        Err(format!("{email:?} is not an email address"))
    }
}

/// Runs an admin command and returns what to print on stdout.
pub fn run(config: &Config, instance: Instance) -> Result<String, String> {
    let Instance { keys, db } = instance;
    let now = crate::time::unix_now();
    let fail = |_| "the database refused the change (see the log above)".to_string();
    let read = |_| "cannot read the database (see the log above)".to_string();
    let find = |email: &str| -> Result<store::Account, String> {
        admin::find(&db, email)
            .map_err(read)?
            .ok_or_else(|| format!("no account with email {email}"))
    };
    match &config.command {
        Command::Token { email, ttl } => {
            let email = check_email(email)?;
            let account = admin::token_account(&db, &email, now).map_err(fail)?;
            let tokens = crate::auth::Tokens::new(&keys, &config.jwt_issuer, None, None)
                .map_err(|e| e.to_string())?;
            // No sign-in: `amr` is empty, and `auth_time` the moment of issue.
            let login = crate::auth::Login {
                how: crate::auth::SignIn::Issued,
                at: now,
            };
            let token = tokens
                .issue(account.id, Some(&email), login, None, now, *ttl as i64)
                .map_err(|e| format!("cannot sign the token: {e}"))?;
            Ok(format!("{token}\n"))
        }
        Command::UserAdd { email } => {
            let email = check_email(email)?;
            // Before the prompt: a password typed twice for nothing is the wrong way to
            // learn that `mfad token` (or an earlier `user add`) made the account. This
            // is the local admin's command, so saying the account exists reveals nothing.
            if let Some(account) = admin::find(&db, &email).map_err(read)? {
                let (state, what) = match account.password_hash {
                    Some(_) => ("", "a new password"),
                    None => (
                        " without a password (mfad token creates it so)",
                        "a password",
                    ),
                };
                return Err(format!(
                    "an account with email {email} already exists{state}: give it {what} \
                     with mfad user passwd --email {email}"
                ));
            }
            let hash = crypto::hash_password(&read_password(config)?, crypto::PASSWORD_ITERATIONS)
                .map_err(|e| e.to_string())?;
            let id = admin::add_user(&db, &email, &hash, now)
                .map_err(fail)?
                .ok_or_else(|| format!("an account with email {email} already exists"))?;
            Ok(format!("added account {id} ({email})\n"))
        }
        Command::UserPasswd { email } => {
            // Before the prompt, as for `user add`.
            let account = admin::find(&db, email).map_err(read)?.ok_or_else(|| {
                format!("no account with email {email}: add it with mfad user add --email {email}")
            })?;
            let hash = crypto::hash_password(&read_password(config)?, crypto::PASSWORD_ITERATIONS)
                .map_err(|e| e.to_string())?;
            admin::set_password(&db, account.id, &hash, now).map_err(fail)?;
            Ok(format!("password of {email} changed\n"))
        }
        Command::UserList => {
            let rows = admin::list(&db).map_err(read)?;
            let mut out = format!(
                "{:>6}  {:<40}  {:<8}  {:<4}  {:<8}  {}\n",
                "ID", "EMAIL", "PASSWORD", "TOTP", "PASSKEYS", "CREATED"
            );
            for r in rows {
                out.push_str(&format!(
                    "{:>6}  {:<40}  {:<8}  {:<4}  {:<8}  {}\n",
                    r.id,
                    printable(&r.name),
                    if r.has_password { "yes" } else { "no" },
                    if r.totp_enabled { "on" } else { "off" },
                    r.passkeys,
                    rfc3339(r.created_at)
                ));
            }
            Ok(out)
        }
        Command::UserShow { email } => {
            let account = find(email)?;
            let report = admin::show(&db, account.id).map_err(read)?;
            let mut out = format!(
                "account {} ({})\n  password:     {}\n  totp:         {}\n  backup codes: {} left\n",
                account.id,
                printable(account.email.as_deref().unwrap_or("-")),
                if account.password_hash.is_some() { "set" } else { "none" },
                match (report.totp_enabled, report.totp.pending_secret.is_some()) {
                    (true, _) => "enabled",
                    (false, true) => "setup pending",
                    (false, false) => "off",
                },
                report.backup_codes_remaining,
            );
            if report.totp.locked_until > now {
                out.push_str(&format!(
                    "  verify locked for {} s more\n",
                    report.totp.locked_until - now
                ));
            }
            out.push_str(&format!("  passkeys:     {}\n", report.passkeys.len()));
            for p in &report.passkeys {
                out.push_str(&format!(
                    "    {}  created {}  last used {}\n",
                    printable(&p.name),
                    rfc3339(p.created_at),
                    p.last_used_at.map_or("never".to_string(), rfc3339),
                ));
            }
            out.push_str("  last events (newest first):\n");
            for e in report.events {
                out.push_str(&format!("    {}  {}", rfc3339(e.at), printable(&e.event)));
                if let Some(d) = e.detail {
                    out.push_str(&format!(" ({})", printable(&d)));
                }
                out.push('\n');
            }
            Ok(out)
        }
        Command::UserResetMfa {
            email,
            keep_passkeys,
        } => {
            let account = find(email)?;
            let reset = admin::reset_mfa(&db, account.id, *keep_passkeys, now).map_err(fail)?;
            let totp = if reset.totp_was_on {
                "TOTP turned off"
            } else {
                "TOTP was not enabled (any pending setup cleared)"
            };
            let passkeys = if *keep_passkeys {
                "passkeys kept".to_string()
            } else {
                format!("{} passkeys removed", reset.passkeys_removed)
            };
            Ok(format!(
                "{totp} and {passkeys} for {email}; every login ended; they can set up their \
                 second factors again\n"
            ))
        }
        Command::UserDelete { email } => {
            let account = find(email)?;
            admin::delete(&db, account.id, now).map_err(fail)?;
            Ok(format!("deleted account {} ({email})\n", account.id))
        }
        Command::Audit { email, since, json } => {
            let account = match email {
                Some(e) => Some(find(e)?.id),
                None => None,
            };
            let rows = admin::audit(&db, account, since.unwrap_or(0)).map_err(read)?;
            let mut out = String::new();
            for r in rows {
                if *json {
                    let line = serde_json::json!({
                        "time": rfc3339(r.at),
                        "account": r.account_id,
                        "email": r.email,
                        "event": r.event,
                        "detail": r.detail,
                    });
                    out.push_str(&format!("{line}\n"));
                } else {
                    let who = match (r.account_id, &r.email) {
                        (Some(id), Some(e)) => format!("account {id} ({})", printable(e)),
                        (Some(id), None) => format!("account {id}"),
                        (None, _) => "-".to_string(),
                    };
                    out.push_str(&format!(
                        "{}  {who}  {}",
                        rfc3339(r.at),
                        printable(&r.event)
                    ));
                    if let Some(d) = r.detail {
                        out.push_str(&format!(" ({})", printable(&d)));
                    }
                    out.push('\n');
                }
            }
            Ok(out)
        }
        Command::Migrate { to } => {
            let crate::config::Database::Postgres(to) = to else {
                return Err("mfad migrate copies into PostgreSQL only".into());
            };
            let Some(source) = db.sqlite() else {
                return Err(format!(
                    "the database is PostgreSQL already ({}); mfad migrate copies an SQLite \
                     database (name it with --database sqlite:PATH, or leave the data \
                     directory's)",
                    db.shown()
                ));
            };
            let target = store::Db::connect_postgres(to).map_err(|e| e.to_string())?;
            let copied = store::sqlite_to_postgres(source, &target)
                .map_err(|e| format!("nothing was copied: {e}"))?;
            let mut out = format!(
                "copied {} into {} (row counts checked):\n",
                db.shown(),
                target.shown()
            );
            for (table, n) in copied {
                out.push_str(&format!("  {table:<20} {n:>8}\n"));
            }
            out.push_str(
                "The SQLite database is as it was. Serve from PostgreSQL with the same key \
                 file: MFAD_DATABASE_URL=<the URL> mfad serve (on each node, with a copy of \
                 mfad.key).\n",
            );
            Ok(out)
        }
        Command::Backup { to } => {
            let bytes = db.backup_to(to)?;
            Ok(format!(
                "backup of {} written to {}: {bytes} bytes, integrity check ok\n\
                 The key is not in it: keep mfad.key (or its systemd credential) backed up \
                 apart. To restore: stop mfad, put the file in the data directory as mfad.db \
                 (remove mfad.db-wal and mfad.db-shm there), start mfad with the same key.\n",
                db.shown(),
                to.display()
            ))
        }
        Command::ClientAdd(spec) => {
            let issuer = check_issuer(config)?;
            match clients::add(&db, &keys, spec, now).map_err(fail)? {
                clients::Added::Taken => Err(format!(
                    "a client with id {} is registered already (mfad client show --id {})",
                    spec.id, spec.id
                )),
                clients::Added::Registered(secret) => {
                    let mut out = format!(
                        "registered client {} ({}), policy {}, ID tokens {}\n",
                        spec.id,
                        printable(spec.name.trim()),
                        spec.policy.as_str(),
                        spec.alg.as_str()
                    );
                    match secret {
                        Some(secret) => out.push_str(&format!(
                            "client_secret: {secret}\nThe secret is shown only this once: \
                             put it in the app's settings now (mfad client secret --id {} \
                             makes a new one).\n",
                            spec.id
                        )),
                        None => out.push_str(
                            "A public client: no secret; the app must use PKCE (S256).\n",
                        ),
                    }
                    out.push_str(&issuer_note(issuer.as_deref()));
                    Ok(out)
                }
            }
        }
        Command::ClientList => {
            let rows = clients::list(&db).map_err(read)?;
            let mut out = format!(
                "{:<24}  {:<28}  {:<12}  {:<10}  {:<5}  {}\n",
                "id", "name", "kind", "policy", "alg", "created"
            );
            for c in rows {
                out.push_str(&format!(
                    "{:<24}  {:<28}  {:<12}  {:<10}  {:<5}  {}\n",
                    printable(&c.id),
                    printable(&c.name),
                    if c.secret_hash.is_some() {
                        "confidential"
                    } else {
                        "public"
                    },
                    printable(&c.policy),
                    printable(&c.id_token_alg),
                    rfc3339(c.created_at)
                ));
            }
            Ok(out)
        }
        Command::ClientShow { id } => {
            let c = clients::find(&db, id)
                .map_err(read)?
                .ok_or_else(|| format!("no client with id {id} (mfad client list)"))?;
            let mut out = format!(
                "client {}\n  name:      {}\n  kind:      {}\n  policy:    {}\n  ID tokens: {}\n  \
                 created:   {}\n  redirect URIs:\n",
                printable(&c.id),
                printable(&c.name),
                if c.secret_hash.is_some() {
                    "confidential (a secret; shown only when made)"
                } else {
                    "public (no secret; PKCE)"
                },
                printable(&c.policy),
                printable(&c.id_token_alg),
                rfc3339(c.created_at)
            );
            for u in &c.redirect_uris {
                out.push_str(&format!("    {}\n", printable(u)));
            }
            out.push_str("  post-logout URIs:\n");
            if c.post_logout_uris.is_empty() {
                out.push_str("    (none)\n");
            }
            for u in &c.post_logout_uris {
                out.push_str(&format!("    {}\n", printable(u)));
            }
            Ok(out)
        }
        Command::ClientSecret { id } => {
            match clients::replace_secret(&db, &keys, id, now).map_err(fail)? {
                clients::NewSecret::Made(secret) => Ok(format!(
                    "client_secret: {secret}\nThe old secret no longer works; the new one is \
                     shown only this once.\n"
                )),
                clients::NewSecret::NoSuchClient => {
                    Err(format!("no client with id {id} (mfad client list)"))
                }
                clients::NewSecret::Public => Err(format!(
                    "client {id} is public: it has no secret (it proves itself with PKCE)"
                )),
            }
        }
        Command::ClientRemove { id } => match clients::remove(&db, id, now).map_err(fail)? {
            true => Ok(format!("removed client {id}\n")),
            false => Err(format!("no client with id {id} (mfad client list)")),
        },
        Command::Serve | Command::Help | Command::Version => Err("not an admin command".into()),
    }
}

/// The OpenID issuer, `--public-url`, if given: it must be `https` (or `http` to
/// loopback) once a client is registered.
fn check_issuer(config: &Config) -> Result<Option<String>, String> {
    let Some(public) = &config.web.public_origin else {
        return Ok(None);
    };
    match crate::oidc::issuer_ok(public) {
        true => Ok(Some(public.clone())),
        false => Err(format!(
            "--public-url {public} is the OpenID issuer, which must be https (or http to \
             localhost for a test): nothing was registered"
        )),
    }
}

/// Where the app finds the provider, or what the server still needs.
fn issuer_note(issuer: Option<&str>) -> String {
    match issuer {
        Some(i) => format!(
            "The app's issuer (discovery URL): {i} ({i}/.well-known/openid-configuration)\n"
        ),
        None => "The server serves it once started with --public-url https://… (the issuer \
                 the app is given)\n"
            .into(),
    }
}

/// Stored text as it may be shown on an admin's terminal. An external token's `sub`
/// (or anything else a client chose) may hold newlines that forge rows, escape
/// sequences the terminal would obey, or bidirectional overrides that reorder what is
/// read: each such character, and the backslash, is written as an escape instead.
pub(crate) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || bidi {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a new password: from stdin with `--password-stdin`, else from a prompt on the
/// terminal with echo off (typed twice).
fn read_password(config: &Config) -> Result<String, String> {
    let password = if config.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = prompt("New password: ")?;
        if prompt("Again: ")? != first {
            return Err("the passwords do not match".into());
        }
        first
    } else {
        return Err(
            "stdin is not a terminal: pass --password-stdin to read the password from it".into(),
        );
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(password)
}

/// One line from the terminal with echo turned off (and back on, whatever happens).
fn prompt(text: &str) -> Result<String, String> {
    eprint!("{text}");
    // SAFETY: termios is plain data, for which all-zero bytes are a valid value.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills the struct it is given for fd 0, which is a terminal.
    if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
        return Err("cannot read the terminal settings".into());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: a termios from tcgetattr with one flag changed.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn stored_text_cannot_forge_rows_or_steer_the_terminal() {
        assert_eq!(printable("alice@example.com"), "alice@example.com");
        assert_eq!(printable("émile@exämple.com"), "émile@exämple.com");
        assert_eq!(printable("a\n     2  root"), "a\\u{a}     2  root");
        assert_eq!(printable("\u{1b}[2J\0"), "\\u{1b}[2J\\u{0}");
        assert_eq!(printable("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        // The backslash itself is escaped, so an escape in the output is always ours.
        assert_eq!(printable("\\u{a}"), "\\\\u{a}");
    }
}
