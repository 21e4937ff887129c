//! The forward-auth decision: which rule a resource falls under, who is asking (the
//! session cookie, else a bearer token of mfad's own), and whether that person may pass.
//! The decision itself ([`decide`]) is pure; reading the person is one read of the
//! database (`session.rs`), skipped when the rule needs nobody (`bypass`, `deny`).
//! Denials are audited once per session and host an hour ([`Denials`]).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::access::{AccessRules, Policy, Resource};
use crate::auth::Subject;
use crate::error::Error;
use crate::metrics::{Event, METRICS};
use crate::store::Db;

use super::session::{self, Person};
use super::App;

/// How forward-auth is set up: the rules and how long a session may sit unused.
#[derive(Debug, Clone)]
pub struct Forward {
    pub rules: AccessRules,
    /// `--session-idle`, seconds.
    pub session_idle: i64,
}

impl Default for Forward {
    fn default() -> Self {
        Forward {
            rules: AccessRules::default(),
            session_idle: 86_400,
        }
    }
}

/// Who passed, for the headers the proxy copies to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `Remote-User`.
    pub user: String,
    /// `Remote-Email` (absent for an account without one).
    pub email: Option<String>,
    /// `Remote-Amr`: the login's `amr`, comma-separated.
    pub amr: String,
}

/// The answer of forward-auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let through; with who it is, unless the rule is `bypass`.
    Allowed(Option<Identity>),
    /// Not signed in (or the session ended); `need_2fa`: signed in, but with one factor
    /// where the rule asks for two.
    SignIn { need_2fa: bool },
    /// The rule denies, or the person is not on its list.
    Denied,
}

/// What [`decide`] concludes for one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allow,
    SignIn,
    NeedTwoFactor,
    Deny,
}

/// The rule's policy and list applied to a person (or nobody). The list is checked
/// before the factors: someone not on it is refused, not asked for a second factor.
fn decide(
    policy: Policy,
    emails: &[String],
    person: Option<(&[String], Option<&str>)>,
) -> Decision {
    let (amr, email) = match (policy, person) {
        (Policy::Bypass, _) => return Decision::Allow,
        (Policy::Deny, _) => return Decision::Deny,
        (_, None) => return Decision::SignIn,
        (_, Some(p)) => p,
    };
    if !emails.is_empty() && !email.is_some_and(|e| emails.iter().any(|l| l == e)) {
        return Decision::Deny;
    }
    let two = amr.iter().any(|a| a == "otp" || a == "hwk");
    match (policy, two) {
        (Policy::TwoFactor, false) => Decision::NeedTwoFactor,
        _ => Decision::Allow,
    }
}

/// `GET /api/authz/forward-auth` and `/api/authz/auth-request`, once the resource is
/// read: the verdict for the person of `sessions` (the `mfad_session` cookie values of
/// the forwarded request) or of `authorization`.
pub fn forward_auth(
    app: &App,
    resource: &Resource,
    sessions: &[&str],
    authorization: Option<&str>,
    now: i64,
) -> Result<Verdict, Error> {
    let (policy, emails) = app.forward.rules.rule_for(&resource.host, resource.path());
    // A `deny` looks the person up too, only for its audit event.
    let person = match policy {
        Policy::Bypass => None,
        Policy::OneFactor | Policy::TwoFactor | Policy::Deny => {
            match session::person(app, sessions, app.forward.session_idle, now)? {
                Some(p) => Some(p),
                None => bearer(app, authorization, now)?,
            }
        }
    };
    let decision = decide(
        policy,
        emails,
        person.as_ref().map(|p| (&p.amr[..], p.email.as_deref())),
    );
    let verdict = match decision {
        Decision::Allow => {
            METRICS.event(Event::AuthzAllowed);
            Verdict::Allowed(person.map(|p| Identity {
                user: p.name,
                email: p.email,
                amr: p.amr.join(","),
            }))
        }
        Decision::SignIn => {
            METRICS.event(Event::AuthzSignIn);
            Verdict::SignIn { need_2fa: false }
        }
        Decision::NeedTwoFactor => {
            METRICS.event(Event::AuthzNeedTwoFactor);
            Verdict::SignIn { need_2fa: true }
        }
        Decision::Deny => {
            METRICS.event(Event::AuthzDenied);
            if let Some(p) = &person {
                app.denials.audit(&app.db, p, &resource.host, now)?;
            }
            Verdict::Denied
        }
    };
    Ok(verdict)
}

/// The person of `Authorization: Bearer …`, for a token of mfad's own only (an external
/// issuer's token would create its account: not on this path), and while its login
/// lives: a logout ends the access of its tokens here at once, not at their `exp`. A
/// bad token is nobody.
fn bearer(app: &App, authorization: Option<&str>, now: i64) -> Result<Option<Person>, Error> {
    let Some((scheme, token)) = authorization.and_then(|h| h.trim().split_once(' ')) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let Ok(verified) = app.tokens.verify(token.trim(), now) else {
        return Ok(None);
    };
    let Subject::Account(id) = verified.subject else {
        return Ok(None);
    };
    let db: &Db = &app.db;
    let family = verified
        .sid
        .as_deref()
        .map(|sid| session::family_of(sid).unwrap_or_default());
    let account = db.read(|tx| match &family {
        Some(family) if tx.live_login(family, now)?.is_none() => Ok(None),
        _ => tx.account_by_id(id),
    })?;
    Ok(account.map(|account| session::bearer_person(account, verified.amr)))
}

/// When each (session, host) denial was last audited: at most once an hour each, so a
/// page of fifty refused images writes one event, not fifty.
#[derive(Debug, Default)]
pub struct Denials {
    seen: Mutex<HashMap<(Vec<u8>, String), i64>>,
}

/// Denials remembered at most; past that the oldest hour is forgotten (then all).
const MAX_DENIALS: usize = 10_000;
const DENIAL_AUDIT_SECS: i64 = 3600;

impl Denials {
    fn audit(&self, db: &Db, person: &Person, host: &str, now: i64) -> Result<(), Error> {
        let who = match &person.session {
            Some(hash) => hash.to_vec(),
            None => person.account_id.to_be_bytes().to_vec(),
        };
        let key = (who, host.to_string());
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Ok(());
            };
            if seen
                .get(&key)
                .is_some_and(|at| *at > now - DENIAL_AUDIT_SECS)
            {
                return Ok(());
            }
            if seen.len() >= MAX_DENIALS {
                seen.retain(|_, at| *at > now - DENIAL_AUDIT_SECS);
                if seen.len() >= MAX_DENIALS {
                    seen.clear();
                }
            }
            seen.insert(key, now);
        }
        let detail = format!("host {host}");
        db.write(|tx| tx.audit(Some(person.account_id), now, "access_denied", Some(&detail)))?;
        log::info!("audit: access_denied account={}", person.account_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn each_policy_decides_as_api_md_says() {
        let pwd = s(&["pwd"]);
        let otp = s(&["pwd", "otp"]);
        let hwk = s(&["hwk", "user"]);
        let ana = Some("ana@example.com");
        use Decision::*;
        for (policy, person, want) in [
            (Policy::Bypass, None, Allow),
            (Policy::Deny, None, Deny),
            (Policy::Deny, Some((&otp[..], ana)), Deny),
            (Policy::OneFactor, None, SignIn),
            (Policy::OneFactor, Some((&pwd[..], ana)), Allow),
            (Policy::TwoFactor, None, SignIn),
            (Policy::TwoFactor, Some((&pwd[..], ana)), NeedTwoFactor),
            (Policy::TwoFactor, Some((&otp[..], ana)), Allow),
            (Policy::TwoFactor, Some((&hwk[..], ana)), Allow),
            (Policy::TwoFactor, Some((&[][..], ana)), NeedTwoFactor),
        ] {
            assert_eq!(decide(policy, &[], person), want, "{policy:?} {person:?}");
        }
    }

    #[test]
    fn the_list_is_checked_before_the_factors() {
        let list = s(&["ana@example.com"]);
        let pwd = s(&["pwd"]);
        let d = |email| decide(Policy::TwoFactor, &list, Some((&pwd[..], email)));
        assert_eq!(d(Some("bo@example.com")), Decision::Deny);
        assert_eq!(d(None), Decision::Deny);
        assert_eq!(d(Some("ana@example.com")), Decision::NeedTwoFactor);
        assert_eq!(decide(Policy::OneFactor, &list, None), Decision::SignIn);
    }
}
