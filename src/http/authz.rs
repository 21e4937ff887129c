//! Forward-auth's two questions (`/api/authz/forward-auth` for Traefik, Caddy and
//! HAProxy, `/api/authz/auth-request` for nginx): the resource read from the proxy's
//! headers, the person's cookie, and the verdict written the way each proxy reads it.

use serde_json::json;
use tiny_http::Request;

use super::{header, Cookie, Reply};
use crate::access::Resource;
use crate::error::Error;
use crate::metrics::{Event, METRICS};
use crate::service::{self, App, AuthzVerdict};
use crate::web::WebPolicy;

const BAD_RESOURCE: &str = "Missing or malformed X-Forwarded-Host (or X-Original-URL): the \
     proxy must say which request it asks about.";

/// Answers one question; `nginx`: the auth-request form (only 2xx, 401 and 403).
pub(super) fn answer(
    app: &App,
    web: &WebPolicy,
    rq: &Request,
    nginx: bool,
    now: i64,
) -> Result<Reply, Error> {
    let method = header(rq, "X-Forwarded-Method").or(header(rq, "X-Original-Method"));
    let original = if nginx {
        header(rq, "X-Original-URL")
    } else {
        None
    };
    let resource = match original {
        Some(url) => Resource::original_url(url, method),
        None => Resource::forwarded(
            header(rq, "X-Forwarded-Proto"),
            header(rq, "X-Forwarded-Host"),
            header(rq, "X-Forwarded-Uri"),
            method.or(Some(rq.method().as_str())),
        ),
    };
    let Some(resource) = resource else {
        METRICS.event(Event::AuthzBadRequest);
        return Err(Error::BadRequest(BAD_RESOURCE));
    };
    let cookies: Vec<&str> = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Cookie"))
        .flat_map(|h| web.session_cookies(h.value.as_str()))
        .collect();
    let verdict =
        service::forward_auth(app, &resource, &cookies, header(rq, "Authorization"), now)?;
    let reply = |status: u16, body, extra| Reply {
        status,
        body: Some(body),
        extra,
        ..Reply::no_content(Cookie::Keep)
    };
    Ok(match verdict {
        AuthzVerdict::Allowed(who) => {
            // A `bypass` names nobody, but still sends the three headers, empty: Caddy
            // 2.6 (Debian's) copies a header the answer lacks as its placeholder's
            // literal text, `{http.reverse_proxy.header.Remote-User}`, which an app
            // would take for a user name. nginx sends no header for an empty value.
            let (user, email, amr) = match who {
                Some(who) => (who.user, who.email.unwrap_or_default(), who.amr),
                None => Default::default(),
            };
            let extra = vec![
                ("Remote-User", user),
                ("Remote-Email", email),
                ("Remote-Amr", amr),
            ];
            reply(200, json!({"status": "allowed"}), extra)
        }
        AuthzVerdict::SignIn { need_2fa } => {
            let portal = web
                .portal(header(rq, "Host"), &resource.url(), need_2fa)
                .ok_or(Error::BadRequest(super::NO_BASE_URL))?;
            let message = match need_2fa {
                true => "A second factor is needed: sign in with it.",
                false => "Sign in first.",
            };
            let navigating = matches!(resource.method.as_str(), "GET" | "HEAD");
            let status = if !nginx && navigating { 302 } else { 401 };
            let location = match status == 302 || nginx {
                true => vec![("Location", portal)],
                false => Vec::new(),
            };
            reply(status, json!({ "error": message }), location)
        }
        AuthzVerdict::Denied => reply(403, json!({"error": "Access denied."}), Vec::new()),
    })
}
