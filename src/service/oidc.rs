//! The OpenID provider's endpoints (API.md, "OpenID Connect provider"): an authorization
//! gives a code to a registered redirect URI once the person's browser session (the
//! same `mfad_session` forward-auth reads) satisfies the client's policy; the token
//! endpoint exchanges the code, once, for an ID token, an access token for the app and,
//! where allowed, a refresh token rotated by mfad's own rule; userinfo answers for a
//! live grant only. Errors are OAuth's (RFC 6749 §4.1.2.1, §5.2), not mfad's sentences.

use std::sync::OnceLock;

use data_encoding::BASE64URL_NOPAD;
use serde_json::{json, Value};

use crate::auth::TokenError;
use crate::crypto::{self, RsaKey};
use crate::error::Error;
use crate::oidc::tokens::{self as claims, Audience, Subject};
use crate::oidc::{self, AuthorizeError, ClientPolicy, ClientRules, IdTokenAlg, Params, Prompt};
use crate::store::{Account, Db, Grant, OidcClient, Redeemed, Tx};

use super::{clients, session, App};
use crate::metrics::{Oidc, METRICS};

/// How long a code may wait for its exchange (API.md: 60 s).
pub const CODE_TTL: i64 = 60;

/// A grant, and every refresh token issued from it, lives this long at most.
const GRANT_TTL: i64 = super::REFRESH_TTL;

/// The provider's settings and its RSA key, once read.
#[derive(Default)]
pub struct Provider {
    /// `--public-url`, when it may be the issuer: without it, mfad is no provider.
    pub issuer: Option<String>,
    rsa: OnceLock<RsaKey>,
}

impl Provider {
    pub fn new(issuer: Option<String>) -> Provider {
        Provider {
            issuer: issuer.filter(|i| oidc::issuer_ok(i)),
            rsa: OnceLock::new(),
        }
    }
}

/// The RSA key, if `mfad client add` has made one (read once: it never changes).
fn rsa(app: &App) -> Result<Option<&RsaKey>, Error> {
    if let Some(k) = app.oidc.rsa.get() {
        return Ok(Some(k));
    }
    match clients::existing_provider_key(&app.db, &app.keys)? {
        Some(k) => Ok(Some(app.oidc.rsa.get_or_init(|| k))),
        None => Ok(None),
    }
}

/// `GET /.well-known/jwks.json`: mfad's Ed25519 key, and the RSA key once made.
pub(crate) fn jwks(app: &App) -> Result<Value, Error> {
    Ok(app.tokens.jwks(rsa(app)?))
}

/// `GET /.well-known/openid-configuration`: the provider's metadata once there is an
/// issuer; before, where a relying service finds the keys of mfad's own tokens.
pub(crate) fn configuration(app: &App, base_url: &str) -> Value {
    match &app.oidc.issuer {
        Some(issuer) => oidc::discovery(issuer),
        None => json!({
            "issuer": app.tokens.issuer(),
            "jwks_uri": format!("{base_url}/.well-known/jwks.json"),
        }),
    }
}

/// `GET /oidc/client-name?client_id=…`: the name the page says a person signs in to
/// (taken from the registry, never from the address the person was sent to).
pub(crate) fn client_name(app: &App, query: &str) -> Result<Value, Error> {
    let p = Params::parse(query).map_err(|_| Error::BadRequest("The query cannot be read."))?;
    let id = p
        .get("client_id")
        .ok_or(Error::BadRequest("client_id is missing."))?;
    match app.db.read(|tx| tx.client(id))? {
        Some(c) => Ok(json!({ "name": c.name })),
        None => Err(Error::NoSuch("No app with this client_id is registered.")),
    }
}

/// What an authorization request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorized {
    /// `302` here: the client with its code or error, or mfad's page to sign in first.
    Redirect(String),
    /// `400` with this sentence, to the person: never a redirect to an unchecked URI.
    Refused(&'static str),
}

/// `GET /oidc/authorize` with the query `query` and the browser's session cookies.
pub fn authorize(app: &App, query: &str, cookies: &[&str], now: i64) -> Result<Authorized, Error> {
    let Some(issuer) = app.oidc.issuer.as_deref() else {
        return Ok(Authorized::Refused(
            "This mfad is not an OpenID provider: it has no https --public-url.",
        ));
    };
    let Ok(p) = Params::parse(query) else {
        return Ok(Authorized::Refused(
            "The request's parameters cannot be read (a parameter sent twice, or bad encoding).",
        ));
    };
    let Some(client_id) = p.get("client_id") else {
        return Ok(Authorized::Refused("The request names no app (client_id)."));
    };
    let db: &Db = &app.db;
    let Some(client) = db.read(|tx| tx.client(client_id))? else {
        return Ok(Authorized::Refused(
            "The app (client_id) is not registered here.",
        ));
    };
    let rules = ClientRules {
        redirect_uris: &client.redirect_uris,
        public: client.secret_hash.is_none(),
    };
    let req = match oidc::request::check(&p, rules) {
        Ok(req) => req,
        Err(AuthorizeError::NoRedirect(why)) => return Ok(Authorized::Refused(why)),
        Err(AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        }) => {
            METRICS.oidc(&client.id, Oidc::Authorization("error"));
            return Ok(Authorized::Redirect(oidc::request::redirect_with(
                &redirect_uri,
                &[
                    ("error", Some(error)),
                    ("error_description", Some(description)),
                    ("state", state.as_deref()),
                    ("iss", Some(issuer)),
                ],
            )));
        }
    };
    let back_with_error = |error: &str, description: &str| {
        METRICS.oidc(&client.id, Oidc::Authorization("error"));
        Authorized::Redirect(oidc::request::redirect_with(
            &req.redirect_uri,
            &[
                ("error", Some(error)),
                ("error_description", Some(description)),
                ("state", req.state.as_deref()),
                ("iss", Some(issuer)),
            ],
        ))
    };
    let person = session::person(app, cookies, app.forward.session_idle, now)?;
    // A sign-in on mfad's page after this request was made, when the request asks
    // for a fresh one (`prompt=login`, `max_age`): the page comes back with `mfad_since`.
    let since = p.get("mfad_since").and_then(|s| s.parse::<i64>().ok());
    let wants_fresh = req.prompt == Prompt::Login || req.max_age.is_some();
    let login = person.as_ref().and_then(|p| p.login);
    let fresh = login.is_some_and(|l| {
        let recent = since.is_some_and(|s| l.at >= s);
        let young = req.max_age.is_some_and(|m| l.at.saturating_add(m) >= now);
        match req.prompt {
            Prompt::Login => recent,
            _ => !wants_fresh || recent || young,
        }
    });
    let policy = ClientPolicy::parse(&client.policy).unwrap_or(ClientPolicy::TwoFactor);
    let strong = login.is_some_and(|l| l.how.amr().iter().any(|a| *a == "otp" || *a == "hwk"));
    let enough = policy == ClientPolicy::OneFactor || strong;
    match (person, login) {
        (Some(person), Some(login)) if fresh && enough => {
            let code: [u8; 32] = crypto::random()?;
            let code = BASE64URL_NOPAD.encode(&code);
            let family: [u8; 16] = crypto::random()?;
            let grant = Grant {
                family: family.to_vec(),
                client_id: client.id.clone(),
                account_id: person.account_id,
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                scope: req.scope.clone(),
                login: Some(login),
                code_expires_at: now + CODE_TTL,
                expires_at: now + GRANT_TTL,
            };
            let hash = app.keys.token_hash(code.as_bytes());
            db.write(|tx| {
                tx.insert_grant(&hash, &grant)?;
                let detail = format!("client {}", client.id);
                tx.audit(
                    Some(person.account_id),
                    now,
                    "oidc_authorized",
                    Some(&detail),
                )?;
                Ok(())
            })?;
            log::info!(
                "audit: oidc_authorized account={} client={}",
                person.account_id,
                client.id
            );
            METRICS.oidc(&client.id, Oidc::Authorization("code"));
            Ok(Authorized::Redirect(oidc::request::redirect_with(
                &req.redirect_uri,
                &[
                    ("code", Some(&code)),
                    ("state", req.state.as_deref()),
                    ("iss", Some(issuer)),
                ],
            )))
        }
        _ if req.prompt == Prompt::None => Ok(back_with_error(
            "login_required",
            "The person is not signed in to mfad as this app needs.",
        )),
        (session_found, _) => {
            // To mfad's page, which signs the person in (again, with `prompt=login`;
            // with a second factor for a two_factor app) and comes back here.
            let mut again = format!("{issuer}/oidc/authorize?{}", without_since(query));
            if wants_fresh && session_found.is_some() && !fresh {
                again.push_str(&format!("&mfad_since={now}"));
            }
            let mut page = format!("{issuer}/?rd={}", crate::web::query_value(&again));
            if policy == ClientPolicy::TwoFactor {
                page.push_str("&need=2fa");
            }
            if req.prompt == Prompt::Login || (wants_fresh && !fresh) {
                page.push_str("&prompt=login");
            }
            if let Some(hint) = &req.login_hint {
                page.push_str(&format!("&login_hint={}", crate::web::query_value(hint)));
            }
            METRICS.oidc(&client.id, Oidc::Authorization("sign_in"));
            Ok(Authorized::Redirect(page))
        }
    }
}

/// The query without a `mfad_since` of an earlier round (a new one is added).
fn without_since(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.starts_with("mfad_since="))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /oidc/logout` (RP-Initiated Logout 1.0) with the query `query` and the
/// browser's session cookies: where the browser goes next. With an `id_token_hint` of
/// mfad's, the sessions end (and their logins), and the browser goes to the
/// `post_logout_redirect_uri` if the hint's client registered it exactly (with
/// `state`), else to the page saying so. Without one, nothing ends here: the page asks
/// the person to confirm (an app's link alone must not sign anyone out). Also whether
/// the sessions were ended (their cookie is then cleared).
pub fn logout(
    app: &App,
    query: &str,
    cookies: &[&str],
    now: i64,
) -> Result<(Authorized, bool), Error> {
    let Some(issuer) = app.oidc.issuer.as_deref() else {
        return Ok((
            Authorized::Refused(
                "This mfad is not an OpenID provider: it has no https --public-url.",
            ),
            false,
        ));
    };
    let p = Params::parse(query).unwrap_or_default();
    let hint = p
        .get("id_token_hint")
        .and_then(|t| app.tokens.id_token_hint(t, issuer, rsa(app).ok().flatten()));
    let Some(hint) = hint else {
        return Ok((
            Authorized::Redirect(format!("{issuer}/?logout=confirm")),
            false,
        ));
    };
    session::end(app, cookies, now)?;
    let client_id = hint.get("aud").and_then(Value::as_str).unwrap_or_default();
    let client = app.db.read(|tx| tx.client(client_id))?;
    let back = p.get("post_logout_redirect_uri").filter(|uri| {
        client
            .as_ref()
            .is_some_and(|c| c.post_logout_uris.iter().any(|u| u == uri))
    });
    let to = match back {
        Some(uri) => oidc::request::redirect_with(uri, &[("state", p.get("state"))]),
        None => format!("{issuer}/?logout=done"),
    };
    Ok((Authorized::Redirect(to), true))
}

/// An OAuth error answer (RFC 6749 §5.2; RFC 6750 §3 at userinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: &'static str,
    /// `WWW-Authenticate`, for `invalid_client` and `invalid_token`.
    pub challenge: Option<&'static str>,
}

impl OAuthError {
    fn new(error: &'static str, description: &'static str) -> OAuthError {
        OAuthError {
            status: 400,
            error,
            description,
            challenge: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

const BAD_CLIENT: OAuthError = OAuthError {
    status: 401,
    error: "invalid_client",
    description: "The app's credentials are not right.",
    challenge: Some("Basic realm=\"mfad\""),
};

const BAD_GRANT: &str = "invalid_grant";

fn grant_refused(description: &'static str) -> OAuthError {
    OAuthError::new(BAD_GRANT, description)
}

/// A storage failure at an OAuth endpoint: logged where it happened; the app is told
/// only that the server failed.
fn server_error(_: Error) -> OAuthError {
    OAuthError {
        status: 500,
        error: "server_error",
        description: "The server could not answer; try again.",
        challenge: None,
    }
}

/// The client a token or revocation request authenticates as (RFC 6749 §2.3.1:
/// `client_secret_basic` or `client_secret_post`, never both; a public client sends
/// its `client_id` alone).
fn authenticate_client(
    app: &App,
    p: &Params,
    authorization: Option<&str>,
) -> Result<OidcClient, OAuthError> {
    let basic = match authorization {
        Some(h) => {
            let (scheme, rest) = h.trim().split_once(' ').ok_or(BAD_CLIENT)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(BAD_CLIENT);
            }
            let decoded = data_encoding::BASE64
                .decode(rest.trim().as_bytes())
                .map_err(|_| BAD_CLIENT)?;
            let text = String::from_utf8(decoded).map_err(|_| BAD_CLIENT)?;
            let (id, secret) = text.split_once(':').ok_or(BAD_CLIENT)?;
            // Each part form-encoded (RFC 6749 §2.3.1).
            let id = Params::parse(&format!("v={id}")).map_err(|_| BAD_CLIENT)?;
            let secret = Params::parse(&format!("v={secret}")).map_err(|_| BAD_CLIENT)?;
            Some((
                id.get("v").unwrap_or_default().to_string(),
                secret.get("v").unwrap_or_default().to_string(),
            ))
        }
        None => None,
    };
    if basic.is_some() && p.get("client_secret").is_some() {
        return Err(OAuthError::new(
            "invalid_request",
            "The app authenticated twice (Basic and client_secret).",
        ));
    }
    let (id, secret) = match basic {
        Some((id, secret)) => (id, Some(secret)),
        None => (
            p.get("client_id").ok_or(BAD_CLIENT)?.to_string(),
            p.get("client_secret").map(str::to_string),
        ),
    };
    if let (Some(basic_id), Some(body_id)) = (authorization.and(Some(&id)), p.get("client_id")) {
        if basic_id != body_id {
            return Err(BAD_CLIENT);
        }
    }
    let client = app
        .db
        .read(|tx| tx.client(&id))
        .map_err(server_error)?
        .ok_or(BAD_CLIENT)?;
    match (&client.secret_hash, secret) {
        (Some(stored), Some(given)) => {
            let given = app.keys.token_hash(given.as_bytes());
            match crypto::ct_eq(&given, stored) {
                true => Ok(client),
                false => Err(BAD_CLIENT),
            }
        }
        // A public client proves itself with PKCE; a secret it sends is not its own.
        (None, None) => Ok(client),
        _ => Err(BAD_CLIENT),
    }
}

/// The parameters of a token or revocation request's body, which must be form-encoded
/// (`form`: the request said so) and readable.
fn form_params(body: &[u8], form: bool) -> Result<Params, OAuthError> {
    if !form {
        return Err(OAuthError::new(
            "invalid_request",
            "The request must be form-encoded (application/x-www-form-urlencoded).",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::new("invalid_request", "The form is not UTF-8."))?;
    Params::parse(text).map_err(|_| {
        OAuthError::new(
            "invalid_request",
            "The form cannot be read (a parameter sent twice, or bad encoding).",
        )
    })
}

/// `POST /oidc/token`: `body` form-encoded (`form` says the request said so).
pub fn token(
    app: &App,
    body: &[u8],
    form: bool,
    authorization: Option<&str>,
    now: i64,
) -> Result<Value, OAuthError> {
    let p = form_params(body, form)?;
    let issuer = app.oidc.issuer.as_deref().ok_or(BAD_CLIENT)?;
    let client = authenticate_client(app, &p, authorization)?;
    let counted = |grant: &'static str, answer: Result<Value, OAuthError>| {
        let result = answer.as_ref().map_or_else(|e| e.error, |_| "issued");
        METRICS.oidc(&client.id, Oidc::Token { grant, result });
        answer
    };
    match p.get("grant_type") {
        Some("authorization_code") => counted(
            "authorization_code",
            exchange_code(app, issuer, &client, &p, now),
        ),
        Some("refresh_token") => counted("refresh_token", refresh(app, issuer, &client, &p, now)),
        Some(_) => Err(OAuthError::new(
            "unsupported_grant_type",
            "Only authorization_code and refresh_token are supported.",
        )),
        None => Err(OAuthError::new("invalid_request", "grant_type is missing.")),
    }
}

/// `POST /oidc/revoke` (RFC 7009), client authentication as at the token endpoint: a
/// refresh token of this client ends its grant (and with it the access tokens issued
/// from it); so does an access token of this client. Anything else is no one's business:
/// `200` all the same.
pub fn revoke(
    app: &App,
    body: &[u8],
    form: bool,
    authorization: Option<&str>,
    now: i64,
) -> Result<Value, OAuthError> {
    let p = form_params(body, form)?;
    let issuer = app.oidc.issuer.as_deref().ok_or(BAD_CLIENT)?;
    let client = authenticate_client(app, &p, authorization)?;
    let token = p
        .get("token")
        .ok_or(OAuthError::new("invalid_request", "token is missing."))?;
    let hash = app.keys.token_hash(token.as_bytes());
    // An access token of this client names its grant.
    let by_access = app
        .tokens
        .verify_app(token, issuer, now)
        .ok()
        .filter(|c| c.get("aud").and_then(Value::as_str) == Some(client.id.as_str()))
        .and_then(|c| c.get("sid").and_then(Value::as_str).map(str::to_string))
        .and_then(|sid| BASE64URL_NOPAD.decode(sid.as_bytes()).ok());
    app.db
        .write(|tx| {
            let family = match tx.app_refresh_token(&hash, &client.id)? {
                Some(row) => Some(row.family),
                None => by_access.clone(),
            };
            if let Some(family) = family {
                if let Some(g) = tx.live_grant(&family, now)? {
                    if g.client_id == client.id && tx.revoke_grant(&family)? {
                        let detail = format!("client {}", client.id);
                        tx.audit(Some(g.account_id), now, "oidc_revoked", Some(&detail))?;
                    }
                }
            }
            Ok(())
        })
        .map_err(server_error)?;
    Ok(json!({}))
}

/// Either an answer or an OAuth error, from inside a transaction that must commit
/// either way (a reused code's revocation is the point).
type Outcome = Result<Value, OAuthError>;

fn exchange_code(
    app: &App,
    issuer: &str,
    client: &OidcClient,
    p: &Params,
    now: i64,
) -> Result<Value, OAuthError> {
    let code = p
        .get("code")
        .ok_or(OAuthError::new("invalid_request", "code is missing."))?;
    let hash = app.keys.token_hash(code.as_bytes());
    let outcome: Outcome = app
        .db
        .write(|tx| {
            let g = match tx.redeem_code(&hash, &client.id)? {
                Redeemed::Unknown => return Ok(Err(grant_refused("The code is not valid."))),
                Redeemed::Again(g) => {
                    tx.revoke_grant(&g.family)?;
                    let detail = format!("client {}", client.id);
                    tx.audit(Some(g.account_id), now, "oidc_code_reused", Some(&detail))?;
                    log::warn!(
                        "audit: oidc_code_reused account={} client={}: what it issued is revoked",
                        g.account_id,
                        client.id
                    );
                    return Ok(Err(grant_refused("The code was used already.")));
                }
                Redeemed::First(g) => g,
            };
            if g.code_expires_at <= now {
                return Ok(Err(grant_refused("The code has expired.")));
            }
            if p.get("redirect_uri") != Some(g.redirect_uri.as_str()) {
                return Ok(Err(grant_refused(
                    "The redirect_uri is not the one of the authorization.",
                )));
            }
            let pkce = match (&g.code_challenge, p.get("code_verifier")) {
                (Some(challenge), Some(verifier)) => oidc::pkce_s256_matches(verifier, challenge),
                (None, None) => true,
                _ => false,
            };
            if !pkce {
                return Ok(Err(grant_refused(
                    "The code_verifier does not match the code_challenge.",
                )));
            }
            issue(app, tx, issuer, client, &g, g.nonce.as_deref(), None, now)
        })
        .map_err(server_error)?;
    outcome
}

fn refresh(
    app: &App,
    issuer: &str,
    client: &OidcClient,
    p: &Params,
    now: i64,
) -> Result<Value, OAuthError> {
    let presented = p.get("refresh_token").ok_or(OAuthError::new(
        "invalid_request",
        "refresh_token is missing.",
    ))?;
    let hash = app.keys.token_hash(presented.as_bytes());
    let outcome: Outcome = app
        .db
        .write(|tx| {
            let Some(row) = tx.app_refresh_token(&hash, &client.id)? else {
                return Ok(Err(grant_refused("The refresh token is not valid.")));
            };
            if row.rotated {
                // mfad's own rule: a token exchanged before ends its whole family.
                tx.revoke_grant(&row.family)?;
                let detail = format!("client {}", client.id);
                tx.audit(
                    Some(row.account_id),
                    now,
                    "refresh_reuse_detected",
                    Some(&detail),
                )?;
                crate::metrics::METRICS.event(crate::metrics::Event::RefreshReuseDetected);
                return Ok(Err(grant_refused("The refresh token was used already.")));
            }
            let Some(g) = tx.live_grant(&row.family, now)? else {
                return Ok(Err(grant_refused("The refresh token is not valid.")));
            };
            if row.expires_at <= now || !tx.rotate_refresh_token(&hash)? {
                return Ok(Err(grant_refused("The refresh token is not valid.")));
            }
            issue(app, tx, issuer, client, &g, None, Some(row.expires_at), now)
        })
        .map_err(server_error)?;
    outcome
}

/// The stable `sub` of an account for every app: its WebAuthn user handle (random,
/// never reused, not the email), made here if it has none yet.
fn subject_of(tx: &Tx<'_>, account: &Account) -> Result<String, Error> {
    let handle: [u8; 16] = crypto::random()?;
    let handle = tx.ensure_user_handle(account.id, &handle)?;
    Ok(BASE64URL_NOPAD.encode(&handle))
}

/// The tokens of grant `g` for `client`: an access token, an ID token (with `nonce` on
/// a code's exchange), and a refresh token of the grant's family when the scope holds
/// `offline_access` or the client is confidential (ending when `refresh_ends`, else
/// when the grant does).
#[allow(clippy::too_many_arguments)]
fn issue(
    app: &App,
    tx: &Tx<'_>,
    issuer: &str,
    client: &OidcClient,
    g: &Grant,
    nonce: Option<&str>,
    refresh_ends: Option<i64>,
    now: i64,
) -> Result<Outcome, Error> {
    let Some(login) = g.login else {
        return Ok(Err(grant_refused(
            "The sign-in of this grant is not known.",
        )));
    };
    let Some(account) = tx.account_by_id(g.account_id)? else {
        return Ok(Err(grant_refused("The account of this grant is gone.")));
    };
    let sub = subject_of(tx, &account)?;
    let who = Subject {
        sub: &sub,
        email: account.email.as_deref(),
        amr: login.how.amr(),
        auth_time: login.at,
    };
    let to = Audience {
        client_id: &client.id,
        scope: &g.scope,
        nonce,
    };
    let sid = BASE64URL_NOPAD.encode(&g.family);
    let access = app
        .tokens
        .sign_claims(&claims::access_token_claims(issuer, &sub, &to, &sid, now));
    let id_claims = claims::id_token_claims(issuer, &who, &to, now);
    let id_token = match IdTokenAlg::parse(&client.id_token_alg) {
        Some(IdTokenAlg::EdDsa) => app.tokens.sign_claims(&id_claims),
        _ => {
            let key = match rsa(app)? {
                Some(k) => k,
                None => clients::provider_key(&app.db, &app.keys)
                    .map(|k| app.oidc.rsa.get_or_init(|| k))?,
            };
            claims::rs256_jwt(key, &id_claims)?
        }
    };
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": claims::TOKEN_TTL,
        "id_token": id_token,
        "scope": g.scope,
    });
    let offline = g.scope.split(' ').any(|s| s == "offline_access");
    if offline || client.secret_hash.is_some() {
        let raw: [u8; 32] = crypto::random()?;
        let refresh = BASE64URL_NOPAD.encode(&raw);
        tx.insert_refresh_token(
            &app.keys.token_hash(refresh.as_bytes()),
            account.id,
            &g.family,
            refresh_ends.unwrap_or(g.expires_at),
            login,
            Some(&client.id),
        )?;
        answer["refresh_token"] = json!(refresh);
    }
    Ok(Ok(answer))
}

const BAD_TOKEN: OAuthError = OAuthError {
    status: 401,
    error: "invalid_token",
    description: "The access token is not valid.",
    challenge: Some("Bearer error=\"invalid_token\""),
};

/// `GET /oidc/userinfo`: the claims of an app's access token's scopes, while its grant
/// lives.
pub fn userinfo(app: &App, authorization: Option<&str>, now: i64) -> Result<Value, OAuthError> {
    let issuer = app.oidc.issuer.as_deref().ok_or(BAD_TOKEN)?;
    let token = authorization
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(OAuthError {
            description: "An access token is needed (Authorization: Bearer).",
            ..BAD_TOKEN
        })?;
    let c = app
        .tokens
        .verify_app(token, issuer, now)
        .map_err(|e| match e {
            TokenError::Expired => OAuthError {
                description: "The access token has expired.",
                ..BAD_TOKEN
            },
            TokenError::Invalid => BAD_TOKEN,
        })?;
    let family = c
        .get("sid")
        .and_then(Value::as_str)
        .and_then(|s| BASE64URL_NOPAD.decode(s.as_bytes()).ok())
        .ok_or(BAD_TOKEN)?;
    let found = app
        .db
        .read(|tx| {
            let Some(g) = tx.live_grant(&family, now)? else {
                return Ok(None);
            };
            Ok(tx.account_by_id(g.account_id)?.map(|a| (g, a)))
        })
        .map_err(server_error)?;
    let (g, account) = found.ok_or(BAD_TOKEN)?;
    if c.get("aud").and_then(Value::as_str) != Some(g.client_id.as_str()) {
        return Err(BAD_TOKEN);
    }
    let sub = c.get("sub").and_then(Value::as_str).ok_or(BAD_TOKEN)?;
    let who = Subject {
        sub,
        email: account.email.as_deref(),
        amr: &[],
        auth_time: 0,
    };
    Ok(claims::userinfo(&who, &g.scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Login, SignIn};
    use crate::oidc::ClientSpec;

    /// A code with a clock we hold: good for 60 s, refused after (and not revived).
    #[test]
    fn a_code_is_good_for_sixty_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut app) = crate::service::test_app(dir.path());
        app.oidc = Provider::new(Some("https://auth.example.com".into()));
        let spec = ClientSpec {
            id: "app".into(),
            name: "App".into(),
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_uris: vec![],
            public: false,
            policy: ClientPolicy::OneFactor,
            alg: IdTokenAlg::EdDsa,
        };
        let clients::Added::Registered(Some(secret)) =
            clients::add(&db, &app.keys, &spec, 1).unwrap()
        else {
            panic!("registered");
        };
        let t0 = 1_800_000_000;
        let account = db
            .write(|tx| tx.create_account("a@example.com", None, 1))
            .unwrap()
            .unwrap();
        let grant = |code: &str| {
            let g = Grant {
                family: code.as_bytes()[..4].to_vec(),
                client_id: "app".into(),
                account_id: account,
                redirect_uri: "https://app.example.com/cb".into(),
                code_challenge: None,
                nonce: None,
                scope: "openid".into(),
                login: Some(Login {
                    how: SignIn::Password,
                    at: t0,
                }),
                code_expires_at: t0 + CODE_TTL,
                expires_at: t0 + GRANT_TTL,
            };
            let hash = app.keys.token_hash(code.as_bytes());
            db.write(|tx| tx.insert_grant(&hash, &g)).unwrap();
        };
        let basic = format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("app:{secret}").as_bytes())
        );
        let exchange = |code: &str, now: i64| {
            let form = format!(
                "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
            );
            token(&app, form.as_bytes(), true, Some(&basic), now)
        };
        grant("late-code");
        let late = exchange("late-code", t0 + CODE_TTL).unwrap_err();
        assert_eq!(
            (late.error, late.description),
            ("invalid_grant", "The code has expired.")
        );
        // Refused once expired, it is spent: presented again it is a reuse.
        let again = exchange("late-code", t0 + 1).unwrap_err();
        assert_eq!(again.description, "The code was used already.");
        grant("in-time");
        let answer = exchange("in-time", t0 + CODE_TTL - 1).unwrap();
        assert!(answer["id_token"].is_string() && answer["refresh_token"].is_string());
    }
}
