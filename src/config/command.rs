//! The commands of the one binary (`serve`, `token`, `user …`, `backup`, `migrate`,
//! `audit`, `client …`) and the flags that belong to one of them: the words after `mfad` become a
//! [`Command`], and a flag given to a command it does not belong to is refused. Calls
//! nothing but `mod.rs`'s error and database types and the OpenID client rules (a leaf).

use std::path::PathBuf;

use super::{ConfigError, Database};
use crate::oidc::{ClientPolicy, ClientSpec, IdTokenAlg};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Token {
        email: String,
        ttl: u64,
    },
    UserAdd {
        email: String,
    },
    UserList,
    UserPasswd {
        email: String,
    },
    UserResetMfa {
        email: String,
        keep_passkeys: bool,
    },
    UserDelete {
        email: String,
    },
    UserShow {
        email: String,
    },
    Backup {
        to: PathBuf,
    },
    /// Copy the SQLite database into an empty PostgreSQL one (always
    /// [`Database::Postgres`]; its `Debug` hides the URL, which may hold a password).
    Migrate {
        to: Database,
    },
    Audit {
        email: Option<String>,
        since: Option<i64>,
        json: bool,
    },
    /// Register an app with the OpenID provider (checked).
    ClientAdd(ClientSpec),
    ClientList,
    ClientShow {
        id: String,
    },
    ClientSecret {
        id: String,
    },
    ClientRemove {
        id: String,
    },
    Help,
    Version,
}

/// The flags that belong to one command or another (the settings aside).
#[derive(Default)]
pub(super) struct CommandFlags {
    pub(super) email: Option<String>,
    pub(super) ttl: u64,
    pub(super) keep_passkeys: bool,
    pub(super) to: Option<PathBuf>,
    pub(super) since: Option<i64>,
    pub(super) json: bool,
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) redirect_uris: Vec<String>,
    pub(super) post_logout_uris: Vec<String>,
    pub(super) public: bool,
    pub(super) policy: Option<ClientPolicy>,
    pub(super) alg: Option<IdTokenAlg>,
}

pub(super) fn command(words: &[String], flags: CommandFlags) -> Result<Command, ConfigError> {
    let CommandFlags {
        email,
        ttl,
        keep_passkeys,
        to,
        since,
        json,
        id,
        name,
        redirect_uris,
        post_logout_uris,
        public,
        policy,
        alg,
    } = flags;
    let need_email = |cmd: &str| {
        email
            .clone()
            .ok_or_else(|| ConfigError(format!("{cmd} needs --email EMAIL")))
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // A flag given to a command it does not belong to is refused, not ignored.
    let owned_by = |set: bool, owner: &[&str], refusal: &str| match set && words != owner {
        true => Err(ConfigError(refusal.into())),
        false => Ok(()),
    };
    let to_owner: &[&str] = if words == ["migrate"] {
        &["migrate"]
    } else {
        &["backup"]
    };
    owned_by(
        to.is_some(),
        to_owner,
        "--to belongs to mfad backup and mfad migrate",
    )?;
    owned_by(
        keep_passkeys,
        &["user", "reset-mfa"],
        "--keep-passkeys belongs to mfad user reset-mfa",
    )?;
    owned_by(
        since.is_some() || json,
        &["audit"],
        "--since and --json belong to mfad audit",
    )?;
    owned_by(
        name.is_some()
            || !redirect_uris.is_empty()
            || !post_logout_uris.is_empty()
            || public
            || policy.is_some()
            || alg.is_some(),
        &["client", "add"],
        "--name, --redirect-uri, --post-logout-uri, --public, --policy and --id-token-alg \
         belong to mfad client add",
    )?;
    let client_command = matches!(
        words.as_slice(),
        ["client", "add" | "show" | "secret" | "remove"]
    );
    if id.is_some() && !client_command {
        return Err(ConfigError(
            "--id belongs to mfad client add, show, secret and remove".into(),
        ));
    }
    let need_id = |cmd: &str| {
        id.clone()
            .ok_or_else(|| ConfigError(format!("{cmd} needs --id CLIENT_ID")))
    };
    Ok(match words.as_slice() {
        ["audit"] => Command::Audit { email, since, json },
        [] | ["serve"] => Command::Serve,
        ["token"] => Command::Token {
            email: need_email("mfad token")?,
            ttl,
        },
        ["user", "add"] => Command::UserAdd {
            email: need_email("mfad user add")?,
        },
        ["user", "list"] => Command::UserList,
        ["user", "passwd"] => Command::UserPasswd {
            email: need_email("mfad user passwd")?,
        },
        ["user", "reset-mfa"] => Command::UserResetMfa {
            email: need_email("mfad user reset-mfa")?,
            keep_passkeys,
        },
        ["user", "delete"] => Command::UserDelete {
            email: need_email("mfad user delete")?,
        },
        ["user", "show"] => Command::UserShow {
            email: need_email("mfad user show")?,
        },
        ["client", "add"] => {
            let spec = ClientSpec {
                id: need_id("mfad client add")?,
                name: name.ok_or_else(|| {
                    ConfigError(
                        "mfad client add needs --name NAME (shown on the sign-in page)".into(),
                    )
                })?,
                redirect_uris,
                post_logout_uris,
                public,
                policy: policy.unwrap_or(ClientPolicy::TwoFactor),
                alg: alg.unwrap_or(IdTokenAlg::Rs256),
            };
            spec.check().map_err(ConfigError)?;
            Command::ClientAdd(spec)
        }
        ["client", "list"] => Command::ClientList,
        ["client", "show"] => Command::ClientShow {
            id: need_id("mfad client show")?,
        },
        ["client", "secret"] => Command::ClientSecret {
            id: need_id("mfad client secret")?,
        },
        ["client", "remove"] => Command::ClientRemove {
            id: need_id("mfad client remove")?,
        },
        ["migrate"] => {
            let url = to
                .as_deref()
                .and_then(|p| p.to_str())
                .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
                .ok_or_else(|| {
                    ConfigError(
                        "mfad migrate needs --to postgres://USER@HOST/DATABASE (with a \
                         password: in MFAD_MIGRATE_TO instead, as flags show in the process \
                         list)"
                            .into(),
                    )
                })?
                .to_string();
            Command::Migrate {
                to: Database::Postgres(url),
            }
        }
        ["backup"] => Command::Backup {
            to: to.ok_or_else(|| ConfigError("mfad backup needs --to FILE".into()))?,
        },
        _ => {
            return Err(ConfigError(format!(
                "unknown command \"{}\" (see mfad --help)",
                words.join(" ")
            )))
        }
    })
}
