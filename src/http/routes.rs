//! The route table: every endpoint with its path, its one method and its lane (the
//! password checks run in the slow lane), and [`Route`], what a request's path names,
//! looked up once per request and handed to the worker, the handler and the metrics.
//! Calls `page` (the page's files are routes too) and `metrics` (the route count).

use tiny_http::Method;

use super::page;
use crate::error::Error;

/// The endpoints, by path and method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Health,
    Setup,
    Enable,
    Disable,
    Status,
    Regenerate,
    Login,
    Verify,
    Refresh,
    Logout,
    Me,
    StepUpChallenge,
    StepUpVerify,
    Redeem,
    Jwks,
    OpenIdConfiguration,
    PasskeyRegisterOptions,
    PasskeyRegister,
    Passkeys,
    PasskeyDelete,
    PasskeyLoginOptions,
    PasskeyLogin,
    MfaPasskeyOptions,
    StepUpPasskeyOptions,
    OpenApi,
    Session,
    ForwardAuth,
    AuthRequest,
    OidcAuthorize,
    OidcToken,
    OidcUserinfo,
    OidcClientName,
    OidcLogout,
    OidcRevoke,
}

/// Where one passkey is (`DELETE …/{id}`).
pub(super) const PASSKEY_PREFIX: &str = "/api/v1/me/passkeys/";

/// Where a request runs: password checks (PBKDF2, about 0.2 s of a core) in the slow
/// lane, so that a burst of them never takes every worker; everything else on the
/// workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Worker,
    /// Login and the password confirmations of disable and regenerate (600,000 rounds),
    /// and enable, which hashes ten new backup codes (10 × 100,000 rounds).
    Slow,
}

/// Every endpoint: its path, what it is, the one method it takes, its lane. The
/// position in this table is the endpoint's route in the metrics.
#[rustfmt::skip]
const ENDPOINTS: [(&str, Endpoint, &str, Lane); 34] = [
    ("/healthz", Endpoint::Health, "GET", Lane::Worker),
    ("/api/v1/me/mfa/totp/setup", Endpoint::Setup, "POST", Lane::Worker),
    ("/api/v1/me/mfa/totp/enable", Endpoint::Enable, "POST", Lane::Slow),
    ("/api/v1/me/mfa/totp/disable", Endpoint::Disable, "POST", Lane::Slow),
    ("/api/v1/me/mfa/status", Endpoint::Status, "GET", Lane::Worker),
    ("/api/v1/me/mfa/backup-codes/regenerate", Endpoint::Regenerate, "POST", Lane::Slow),
    ("/api/auth", Endpoint::Login, "POST", Lane::Slow),
    ("/api/auth/mfa/verify", Endpoint::Verify, "POST", Lane::Worker),
    ("/api/auth/refresh", Endpoint::Refresh, "POST", Lane::Worker),
    ("/api/auth/logout", Endpoint::Logout, "POST", Lane::Worker),
    ("/api/v1/me", Endpoint::Me, "GET", Lane::Worker),
    ("/api/v1/mfa/challenge", Endpoint::StepUpChallenge, "POST", Lane::Worker),
    ("/api/v1/mfa/verify", Endpoint::StepUpVerify, "POST", Lane::Worker),
    ("/api/v1/mfa/verification/redeem", Endpoint::Redeem, "POST", Lane::Worker),
    ("/.well-known/jwks.json", Endpoint::Jwks, "GET", Lane::Worker),
    ("/.well-known/openid-configuration", Endpoint::OpenIdConfiguration, "GET", Lane::Worker),
    ("/api/v1/passkey/register/options", Endpoint::PasskeyRegisterOptions, "POST", Lane::Worker),
    ("/api/v1/passkey/register", Endpoint::PasskeyRegister, "POST", Lane::Worker),
    ("/api/v1/me/passkeys", Endpoint::Passkeys, "GET", Lane::Worker),
    ("/api/auth/passkey/login/options", Endpoint::PasskeyLoginOptions, "POST", Lane::Worker),
    ("/api/auth/passkey/login", Endpoint::PasskeyLogin, "POST", Lane::Worker),
    ("/api/auth/mfa/passkey/options", Endpoint::MfaPasskeyOptions, "POST", Lane::Worker),
    ("/api/v1/mfa/passkey/options", Endpoint::StepUpPasskeyOptions, "POST", Lane::Worker),
    ("/openapi.json", Endpoint::OpenApi, "GET", Lane::Worker),
    ("/api/auth/session", Endpoint::Session, "POST", Lane::Worker),
    ("/api/authz/forward-auth", Endpoint::ForwardAuth, "GET", Lane::Worker),
    ("/api/authz/auth-request", Endpoint::AuthRequest, "GET", Lane::Worker),
    ("/oidc/authorize", Endpoint::OidcAuthorize, "GET", Lane::Worker),
    ("/oidc/token", Endpoint::OidcToken, "POST", Lane::Worker),
    ("/oidc/userinfo", Endpoint::OidcUserinfo, "GET", Lane::Worker),
    ("/oidc/client-name", Endpoint::OidcClientName, "GET", Lane::Worker),
    ("/oidc/logout", Endpoint::OidcLogout, "GET", Lane::Worker),
    ("/oidc/revoke", Endpoint::OidcRevoke, "POST", Lane::Worker),
    // Matched by its prefix (below); the template is its name in the metrics.
    ("/api/v1/me/passkeys/{id}", Endpoint::PasskeyDelete, "DELETE", Lane::Worker),
];

/// The OpenAPI 3.1 document of this API (`GET /openapi.json`), checked against every
/// answer of the integration tests.
pub(super) const OPENAPI: page::Asset = page::Asset {
    content_type: "application/json",
    bytes: include_bytes!("../../docs/openapi.json"),
    gzip: b"",
    headers: &[],
    named: false,
};

/// The metrics route of the page's assets, and of every path that is no endpoint.
const PAGE_ROUTE: usize = ENDPOINTS.len();
const OTHER_ROUTE: usize = ENDPOINTS.len() + 1;

/// The routes' names in the metrics, by route.
pub(crate) const ROUTE_NAMES: [&str; ENDPOINTS.len() + 2] = {
    let mut names = [""; ENDPOINTS.len() + 2];
    let mut i = 0;
    while i < ENDPOINTS.len() {
        names[i] = ENDPOINTS[i].0;
        i += 1;
    }
    names[PAGE_ROUTE] = "page";
    names[OTHER_ROUTE] = "other";
    names
};
const _: () = assert!(ROUTE_NAMES.len() <= crate::metrics::ROUTES);

/// What a request's path names, looked up once per request (by the worker, which
/// picks the lane) and then handed to the handler and the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Route {
    /// An endpoint, by its position in [`ENDPOINTS`].
    Endpoint(usize),
    /// One of the page's files.
    Page(page::Asset),
    /// No endpoint, no file.
    Other,
}

impl Route {
    pub(crate) fn of(path: &str) -> Route {
        let endpoint = match ENDPOINTS.iter().position(|(p, ..)| *p == path) {
            Some(i) => Some(i),
            None => path
                .strip_prefix(PASSKEY_PREFIX)
                .is_some_and(|id| !id.is_empty() && !id.contains('/'))
                .then_some(ENDPOINTS.len() - 1),
        };
        match (endpoint, page::asset(path)) {
            (Some(i), _) => Route::Endpoint(i),
            (None, Some(asset)) => Route::Page(asset),
            (None, None) => Route::Other,
        }
    }

    /// The endpoint and the one method it takes.
    pub(super) fn endpoint(self) -> Option<(Endpoint, &'static str)> {
        match self {
            Route::Endpoint(i) => ENDPOINTS.get(i).map(|(_, e, m, _)| (*e, *m)),
            _ => None,
        }
    }

    /// Its route in the metrics: its endpoint, the page, or other.
    pub(crate) fn metrics(self) -> usize {
        match self {
            Route::Endpoint(i) => i,
            Route::Page(_) => PAGE_ROUTE,
            Route::Other => OTHER_ROUTE,
        }
    }

    /// Whether a request of `method` here is a password check, for the slow lane.
    pub(crate) fn is_slow(self, method: &Method) -> bool {
        match self {
            Route::Endpoint(i) => ENDPOINTS
                .get(i)
                .is_some_and(|(_, _, m, lane)| *lane == Lane::Slow && method.as_str() == *m),
            _ => false,
        }
    }

    /// The endpoint a request of `method` is for: `404` or `405` otherwise. The
    /// forward-auth questions take any method: nginx's `auth_request` asks with the
    /// original request's, and the answer changes nothing either way. OpenID's userinfo
    /// takes `POST` as well as `GET` (Core §5.3.1).
    pub(super) fn check(self, method: &Method) -> Result<Endpoint, Error> {
        let (endpoint, allow) = self.endpoint().ok_or(Error::NotFound)?;
        let any = matches!(endpoint, Endpoint::ForwardAuth | Endpoint::AuthRequest)
            || (endpoint == Endpoint::OidcUserinfo && method.as_str() == "POST");
        if method.as_str() != allow && !any {
            return Err(Error::MethodNotAllowed(allow));
        }
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_openapi_document_has_exactly_the_routers_endpoints() {
        let doc: Value = serde_json::from_slice(OPENAPI.bytes).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if !["parameters", "options"].contains(&method.as_str()) {
                    documented.push((path.clone(), method.to_ascii_uppercase()));
                }
            }
        }
        let mut routed: Vec<(String, String)> = ENDPOINTS
            .iter()
            .map(|(p, _, m, _)| (p.to_string(), m.to_string()))
            .chain([("/oidc/userinfo".to_string(), "POST".to_string())])
            .chain(["/", "/assets/app.css", "/assets/app.js"].map(|p| {
                assert!(page::asset(p).is_some(), "{p}");
                (p.to_string(), "GET".to_string())
            }))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
        // Each /api/ path (and the provider's token and userinfo) documents its CORS
        // preflight.
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert_eq!(
                path.starts_with("/api/") || super::super::CORS_OIDC.contains(&path.as_str()),
                item.get("options").is_some(),
                "{path}"
            );
        }
    }

    fn route(method: &Method, path: &str) -> Result<Endpoint, Error> {
        Route::of(path).check(method)
    }

    #[test]
    fn the_slow_lane_is_the_password_checks() {
        let slow: Vec<&str> = ENDPOINTS
            .iter()
            .filter(|(p, ..)| Route::of(p).is_slow(&Method::Post))
            .map(|(p, ..)| *p)
            .collect();
        assert_eq!(
            slow,
            [
                "/api/v1/me/mfa/totp/enable",
                "/api/v1/me/mfa/totp/disable",
                "/api/v1/me/mfa/backup-codes/regenerate",
                "/api/auth",
            ]
        );
        assert!(
            !Route::of("/api/auth").is_slow(&Method::Get),
            "a 405 is no work"
        );
        assert_eq!(Route::of("/").metrics(), PAGE_ROUTE);
        assert_eq!(Route::of("/nowhere").metrics(), OTHER_ROUTE);
        assert_eq!(Route::of("/healthz").metrics(), 0);
    }

    #[test]
    fn router_knows_paths_and_methods() {
        assert_eq!(route(&Method::Post, "/api/auth"), Ok(Endpoint::Login));
        assert_eq!(
            route(&Method::Get, "/api/v1/me/mfa/status"),
            Ok(Endpoint::Status)
        );
        assert_eq!(
            route(&Method::Get, "/api/auth"),
            Err(Error::MethodNotAllowed("POST"))
        );
        assert_eq!(
            route(&Method::Post, "/healthz"),
            Err(Error::MethodNotAllowed("GET"))
        );
        assert_eq!(route(&Method::Get, "/api/auth/"), Err(Error::NotFound));
        let one = "/api/v1/me/passkeys/6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab";
        assert_eq!(route(&Method::Delete, one), Ok(Endpoint::PasskeyDelete));
        assert_eq!(
            route(&Method::Get, one),
            Err(Error::MethodNotAllowed("DELETE"))
        );
        assert_eq!(
            route(&Method::Get, "/api/v1/me/passkeys"),
            Ok(Endpoint::Passkeys)
        );
        for none in ["/api/v1/me/passkeys/", "/api/v1/me/passkeys/a/b"] {
            assert_eq!(route(&Method::Delete, none), Err(Error::NotFound), "{none}");
        }
        assert_eq!(route(&Method::Get, "/"), Err(Error::NotFound));
    }
}
