//! An authorization request (`GET /oidc/authorize`) checked in the order RFC 6749
//! §4.1.2.1 sets: first what decides whether the client may be answered at all (the
//! client, and a redirect URI registered exactly), which is told to the person only,
//! never by a redirect; then everything else, sent back to that URI with the `state`.

use super::{is_pkce_value, Params, SCOPES};
use crate::web::query_value;

/// What of a registered client the request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ClientRules<'a> {
    pub redirect_uris: &'a [String],
    /// A public client (no secret) must use PKCE.
    pub public: bool,
}

/// `prompt`: what the person must do, whatever their session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Sign in only when there is no usable session.
    Default,
    /// Never show the page: `login_required` instead.
    None,
    /// Sign in again, even with a session.
    Login,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorize {
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes asked that mfad knows, `openid` among them, space-separated.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 PKCE challenge, when sent.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Said on mfad's own page (`400`): no redirect to a URI the client did not register.
    NoRedirect(&'static str),
    /// Sent back to the registered `redirect_uri` (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: &'static str,
        state: Option<String>,
    },
}

/// Checks `p`, the query of an authorization request for the client `client` (already
/// found by its `client_id`).
pub fn check(p: &Params, client: ClientRules) -> Result<Authorize, AuthorizeError> {
    let client_id = p.get("client_id").ok_or(AuthorizeError::NoRedirect(
        "The request names no client (client_id).",
    ))?;
    let redirect_uri = p.get("redirect_uri").ok_or(AuthorizeError::NoRedirect(
        "The request has no redirect_uri.",
    ))?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(AuthorizeError::NoRedirect(
            "The redirect_uri is not one this app registered.",
        ));
    }
    let state = p.get("state").map(str::to_string);
    let refuse = |error, description| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_string(),
        error,
        description,
        state: state.clone(),
    };
    if p.get("request").is_some() {
        return Err(refuse(
            "request_not_supported",
            "Request objects are not supported.",
        ));
    }
    if p.get("request_uri").is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "request_uri is not supported.",
        ));
    }
    match p.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            ))
        }
        None => return Err(refuse("invalid_request", "response_type is missing.")),
    }
    if let Some(mode) = p.get("response_mode") {
        if mode != "query" {
            return Err(refuse(
                "invalid_request",
                "Only response_mode=query is supported.",
            ));
        }
    }
    let asked: Vec<&str> = p.get("scope").unwrap_or("").split(' ').collect();
    if !asked.contains(&"openid") {
        return Err(refuse("invalid_scope", "The scope must contain openid."));
    }
    let scope: Vec<&str> = SCOPES.into_iter().filter(|s| asked.contains(s)).collect();
    let code_challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) if client.public => {
            return Err(refuse(
                "invalid_request",
                "A public client must send a PKCE code_challenge (S256).",
            ))
        }
        (None, None) => None,
        (Some(c), Some("S256")) if is_pkce_value(c) && c.len() == 43 => Some(c.to_string()),
        (Some(_), Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "The code_challenge is malformed.",
            ))
        }
        (None, Some(_)) => return Err(refuse("invalid_request", "code_challenge is missing.")),
        (Some(_), _) => {
            return Err(refuse(
                "invalid_request",
                "Only the S256 code_challenge_method is supported.",
            ))
        }
    };
    let mut prompt = Prompt::Default;
    for value in p
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|v| !v.is_empty())
    {
        prompt = match (value, prompt) {
            ("none", Prompt::Default) => Prompt::None,
            ("login", Prompt::Default | Prompt::Login) => Prompt::Login,
            // Consent is the operator's, given at registration; one account a browser.
            ("consent" | "select_account", p) if p != Prompt::None => p,
            ("none" | "login" | "consent" | "select_account", _) => {
                return Err(refuse(
                    "invalid_request",
                    "prompt=none cannot be combined with another value.",
                ))
            }
            _ => return Err(refuse("invalid_request", "Unknown prompt value.")),
        };
    }
    let max_age = match p.get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 && v.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(refuse(
                    "invalid_request",
                    "max_age must be a number of seconds.",
                ))
            }
        },
    };
    Ok(Authorize {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scope: scope.join(" "),
        state,
        nonce: p.get("nonce").map(str::to_string),
        code_challenge,
        prompt,
        max_age,
        login_hint: p.get("login_hint").map(str::to_string),
    })
}

/// `redirect_uri` with `params` added to its query (RFC 6749 §3.1.2: keeping the query it
/// has), each value percent-encoded.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut out = redirect_uri.to_string();
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        if let Some(v) = value {
            out.push(sep);
            out.push_str(name);
            out.push('=');
            out.push_str(&query_value(v));
            sep = '&';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CB: &str = "https://app.example.com/cb";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn ask(query: &str, public: bool) -> Result<Authorize, AuthorizeError> {
        let uris = [CB.to_string(), "https://app.example.com/cb?x=1".to_string()];
        let p = Params::parse(query).unwrap();
        check(
            &p,
            ClientRules {
                redirect_uris: &uris,
                public,
            },
        )
    }

    fn base() -> String {
        format!(
            "client_id=app&redirect_uri={}&response_type=code&scope=openid%20email&state=s1\
             &nonce=n1&code_challenge={CHALLENGE}&code_challenge_method=S256",
            query_value(CB)
        )
    }

    fn error_of(r: Result<Authorize, AuthorizeError>) -> &'static str {
        match r {
            Err(AuthorizeError::Redirect {
                error,
                state,
                redirect_uri,
                ..
            }) => {
                assert_eq!(state.as_deref(), Some("s1"));
                assert_eq!(redirect_uri, CB);
                error
            }
            other => panic!("not a redirected error: {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_with_what_it_asked() {
        let a = ask(&base(), true).unwrap();
        assert_eq!(a.scope, "openid email");
        assert_eq!(a.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(
            (a.state.as_deref(), a.nonce.as_deref()),
            (Some("s1"), Some("n1"))
        );
        assert_eq!(a.prompt, Prompt::Default);
        let a = ask(
            &format!("{}&prompt=login&max_age=0&login_hint=a%40b.c", base()),
            true,
        )
        .unwrap();
        assert_eq!((a.prompt, a.max_age), (Prompt::Login, Some(0)));
        assert_eq!(a.login_hint.as_deref(), Some("a@b.c"));
        // Unknown scopes are dropped; a confidential client may skip PKCE.
        let q = base().replace("openid%20email", "openid%20phone").replace(
            &format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"),
            "",
        );
        let a = ask(&q, false).unwrap();
        assert_eq!((a.scope.as_str(), a.code_challenge), ("openid", None));
    }

    #[test]
    fn no_redirect_to_an_unregistered_or_prefix_matching_uri() {
        for uri in [
            "https://app.example.com/cb/more",
            "https://app.example.com/c",
            "https://app.example.com/cb?x=2",
            "https://APP.example.com/cb",
            "https://evil.example/cb",
        ] {
            let q = base().replace(&query_value(CB), &query_value(uri));
            assert!(
                matches!(ask(&q, true), Err(AuthorizeError::NoRedirect(_))),
                "{uri}"
            );
        }
        let q = base().replace(&format!("redirect_uri={}&", query_value(CB)), "");
        assert!(matches!(ask(&q, true), Err(AuthorizeError::NoRedirect(_))));
        let q = base().replace("client_id=app&", "");
        assert!(matches!(ask(&q, true), Err(AuthorizeError::NoRedirect(_))));
    }

    #[test]
    fn every_other_error_goes_back_with_the_state() {
        let cases = [
            (
                base().replace("response_type=code", "response_type=token"),
                "unsupported_response_type",
            ),
            (base().replace("response_type=code&", ""), "invalid_request"),
            (base().replace("openid%20email", "email"), "invalid_scope"),
            (base().replace("S256", "plain"), "invalid_request"),
            (
                base().replace("&code_challenge_method=S256", ""),
                "invalid_request",
            ),
            (base().replace(CHALLENGE, "short"), "invalid_request"),
            (
                base().replace(
                    &format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"),
                    "",
                ),
                "invalid_request",
            ),
            (format!("{}&prompt=none%20login", base()), "invalid_request"),
            (format!("{}&prompt=bogus", base()), "invalid_request"),
            (format!("{}&max_age=-1", base()), "invalid_request"),
            (format!("{}&max_age=%2B5", base()), "invalid_request"),
            (format!("{}&request=eyJ", base()), "request_not_supported"),
            (
                format!("{}&response_mode=fragment", base()),
                "invalid_request",
            ),
        ];
        for (q, error) in cases {
            assert_eq!(error_of(ask(&q, true)), error, "{q}");
        }
    }

    #[test]
    fn the_answer_keeps_the_uris_own_query() {
        assert_eq!(
            redirect_with(
                CB,
                &[
                    ("code", Some("c d")),
                    ("state", None),
                    ("iss", Some("https://i"))
                ]
            ),
            "https://app.example.com/cb?code=c%20d&iss=https%3A%2F%2Fi"
        );
        assert_eq!(
            redirect_with("https://app.example.com/cb?x=1", &[("code", Some("c"))]),
            "https://app.example.com/cb?x=1&code=c"
        );
    }
}
