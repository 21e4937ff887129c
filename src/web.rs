//! What a browser on another page needs, and what protects the cookie it holds: the
//! CORS policy (listed origins only, never `*`), the refresh-token cookie (`HttpOnly;
//! Secure; SameSite`), and the `Origin` rule that refuses cross-site use of that
//! cookie; and who the client is behind a trusted proxy. Pure: header values in,
//! decisions and header values out. A leaf (it imports nothing of ours): `config` parses
//! its settings ([`WebPolicy`], [`Cidr`], [`SameSite`], [`parse_origin`]) and `http`
//! applies them, so neither needs the other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The cookie Storno's backend sets and its frontend relies on.
pub(crate) const REFRESH_COOKIE: &str = "__refresh__token";
/// Its name under `--cookie-name-prefix __Host-`: a cookie no other host can set or
/// shadow (the browser takes it only from this host, `Secure`, with `Path=/`).
const HOST_REFRESH_COOKIE: &str = "__Host-__refresh__token";
/// Refresh-token cookies of one request looked up at most: a browser holds one of
/// mfad's; any others were planted under its name by another host of the domain.
const MAX_REFRESH_COOKIES: usize = 4;
/// Its `Max-Age`: a login's 30 days.
const COOKIE_MAX_AGE: i64 = 30 * 86_400;
/// The browser session's cookie, which forward-auth reads (API.md).
pub(crate) const SESSION_COOKIE: &str = "mfad_session";

/// `SameSite` of the refresh cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// An address range (`--trusted-proxy 10.0.0.0/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Reads `ADDR/BITS` or a bare `ADDR` (all its bits). The bits below the prefix must
    /// be zero: `10.1.2.3/8` is refused rather than guessed at.
    pub fn parse(text: &str) -> Result<Cidr, &'static str> {
        const SHAPE: &str = "an address or a range like 10.0.0.0/8 or fd00::/8";
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| SHAPE)?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or(SHAPE)?,
        };
        let cidr = Cidr { net, bits };
        if cidr.masked(net) != bits_of(net) {
            return Err("a range whose address has no bits set below its prefix (10.0.0.0/8)");
        }
        Ok(cidr)
    }

    /// `ip`'s bits under this range's mask.
    fn masked(&self, ip: IpAddr) -> u128 {
        let shift = if ip.is_ipv4() { 32 } else { 128 } - u32::from(self.bits);
        let mask = u128::MAX.checked_shl(shift).unwrap_or(0) & max_of(ip);
        bits_of(ip) & mask
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.masked(self.net)
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn max_of(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The settings behind this file's decisions.
#[derive(Debug, Clone, Default)]
pub struct WebPolicy {
    /// `scheme://host[:port]` of each origin whose pages may call the API.
    pub cors_origins: Vec<String>,
    /// The origin mfad itself is served from (`--public-url`); without it, the one the
    /// request's `Host` names.
    pub public_origin: Option<String>,
    pub same_site: Option<SameSite>,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// `--cookie-name-prefix __Host-`: the refresh cookie is `__Host-__refresh__token`,
    /// `Path=/`.
    pub host_cookie: bool,
    /// `--session-domain`: the session cookie's `Domain` (sent to every host under it),
    /// and the only hosts the page sends people back to; `None`: host-only, no `rd`.
    pub session_domain: Option<String>,
}

impl WebPolicy {
    /// The client a request is from: the peer, unless the peer is a trusted proxy; then
    /// the right-most address of `X-Forwarded-For` (all its headers, in order) that is
    /// not a trusted proxy. An entry that is no address ends the walk at the hop before
    /// it: everything left of it is the client's own word.
    pub(crate) fn client_ip(&self, peer: Option<IpAddr>, forwarded: &[&str]) -> Option<IpAddr> {
        let peer = peer.map(|p| p.to_canonical());
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|c| c.contains(ip));
        let mut client = peer?;
        if !trusted(client) {
            return Some(client);
        }
        let entries = forwarded
            .iter()
            .flat_map(|h| h.split(','))
            .collect::<Vec<_>>();
        for entry in entries.into_iter().rev() {
            let Some(ip) = forwarded_address(entry) else {
                break;
            };
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        Some(client)
    }

    /// Whether pages of `origin` may read mfad's answers.
    pub(crate) fn cors_allows(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|o| o == origin)
    }

    /// Whether `origin` is mfad's own: the public URL's, else the one `host` names
    /// (whatever its scheme: TLS usually ends at a proxy in front).
    pub(crate) fn is_own(&self, origin: &str, host: Option<&str>) -> bool {
        match &self.public_origin {
            Some(own) => own == origin,
            None => match (origin.split_once("://"), host) {
                (Some((_, authority)), Some(host)) => authority.eq_ignore_ascii_case(host),
                _ => false,
            },
        }
    }

    /// Where mfad is reached, for the addresses it names in its answers: the public
    /// URL's origin, else `http://` and the request's `Host` (a host name or address
    /// and a port, nothing else: it is copied into a document caches keep).
    pub(crate) fn base_url(&self, host: Option<&str>) -> Option<String> {
        if let Some(own) = &self.public_origin {
            return Some(own.clone());
        }
        let host = host?.trim();
        let fits = |b: u8| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b);
        (!host.is_empty() && host.len() <= 255 && host.bytes().all(fits))
            .then(|| format!("http://{host}"))
    }

    /// Where people open the page, as the start banner names it: the public URL, else
    /// the bound address, named `localhost` when that reaches it. A passkey needs a
    /// domain name (WebAuthn refuses an IP address as the relying party, whose default
    /// is `localhost`), so `http://127.0.0.1:8080/` would show a page whose passkeys
    /// fail. Only 127.0.0.1, ::1 and the unspecified addresses (which include them):
    /// the rest of 127/8 is loopback too, but `localhost` does not resolve to it.
    pub fn page_url(&self, bound: SocketAddr) -> String {
        if let Some(own) = &self.public_origin {
            return format!("{own}/");
        }
        let ip = bound.ip();
        let local = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ];
        match local.contains(&ip) {
            true => format!("http://localhost:{}/", bound.port()),
            false => format!("http://{bound}/"),
        }
    }

    /// The origins a passkey ceremony may come from: mfad's own (the public URL's, else
    /// the request's `Host` under either scheme, as TLS usually ends at a proxy in
    /// front) and the listed ones, each only if its host is `rp_id` or under it.
    pub(crate) fn ceremony_origins(&self, host: Option<&str>, rp_id: &str) -> Vec<String> {
        let mut own = Vec::with_capacity(2);
        match &self.public_origin {
            Some(o) => own.push(o.clone()),
            None => {
                if let Some(http) = self.base_url(host) {
                    own.push(format!("https{}", &http[4..]));
                    own.push(http);
                }
            }
        }
        own.into_iter()
            .chain(self.cors_origins.iter().cloned())
            .filter(|o| {
                crate::webauthn::origin_host(o)
                    .is_some_and(|h| crate::webauthn::rp_id_allows(rp_id, h))
            })
            .collect()
    }

    /// The `Origin` rule for requests the cookie alone authenticates (refresh, logout):
    /// a browser sends `Origin` on every cross-origin POST, so one that is neither
    /// mfad's own nor a listed one is a page of another site using the cookie.
    pub(crate) fn cookie_origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => self.is_own(o, host) || self.cors_allows(o),
        }
    }

    /// `Set-Cookie` carrying a refresh token.
    pub(crate) fn set_cookie(&self, token: &str) -> String {
        self.cookie(token, COOKIE_MAX_AGE)
    }

    /// `Set-Cookie` that removes it.
    pub(crate) fn clear_cookie(&self) -> String {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: i64) -> String {
        let (name, path) = match self.host_cookie {
            true => (HOST_REFRESH_COOKIE, "/"),
            false => (REFRESH_COOKIE, "/api/auth"),
        };
        format!(
            "{name}={value}; HttpOnly; Secure; SameSite={}; Path={path}; Max-Age={max_age}",
            self.same_site_word()
        )
    }

    /// The refresh tokens in a `Cookie` header: every value under the cookie's name
    /// that has the shape of mfad's tokens (64 hex digits), in order, each once, at most
    /// [`MAX_REFRESH_COOKIES`]. A browser sends every cookie whose domain and path
    /// match, so a host under the same parent domain can add its own under this name
    /// (with a longer path, first): a value that is not a token is ignored, and which
    /// of several tokens is the browser's own is for the store to tell.
    pub(crate) fn refresh_cookies<'h>(&self, header: &'h str) -> Vec<&'h str> {
        let name = match self.host_cookie {
            true => HOST_REFRESH_COOKIE,
            false => REFRESH_COOKIE,
        };
        token_cookies(header, name)
    }

    /// The token-shaped values of the session cookie in a `Cookie` header, as for the
    /// refresh cookie.
    pub(crate) fn session_cookies<'h>(&self, header: &'h str) -> Vec<&'h str> {
        token_cookies(header, SESSION_COOKIE)
    }

    /// Whether the session cookie is `Secure`: when the public URL is `https`, and only
    /// then (browsers refuse a `Secure` cookie from a plain-`http` origin but
    /// localhost).
    pub fn secure_sessions(&self) -> bool {
        self.public_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("https://"))
    }

    /// Whether the public URL is plain `http` (development): then the session cookie
    /// is not `Secure`, and the page may send people back to `http` apps.
    pub fn plain_http(&self) -> bool {
        self.public_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("http://"))
    }

    /// The session cookie, living `max_age` seconds (`0`: cleared).
    pub(crate) fn session_cookie(&self, value: &str, max_age: i64) -> String {
        let secure = if self.secure_sessions() {
            " Secure;"
        } else {
            ""
        };
        let domain = match &self.session_domain {
            Some(d) => format!("; Domain={d}"),
            None => String::new(),
        };
        format!(
            "{SESSION_COOKIE}={value}; HttpOnly;{secure} SameSite=Lax; Path=/{domain}; \
             Max-Age={max_age}"
        )
    }

    /// The portal's address for a person to sign in and come back to `url` (with
    /// `need=2fa` when a second factor is asked): the public URL's page, else the one
    /// the request's `Host` names.
    pub(crate) fn portal(&self, host: Option<&str>, url: &str, need_2fa: bool) -> Option<String> {
        let base = self.base_url(host)?;
        let need = if need_2fa { "&need=2fa" } else { "" };
        Some(format!("{base}/?rd={}{need}", query_value(url)))
    }

    fn same_site_word(&self) -> &'static str {
        match self.same_site.unwrap_or(SameSite::Strict) {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Checks an origin as written in configuration: `http` or `https`, a host, an optional
/// port, nothing else (no path, no trailing slash, never `*`). Returns it as browsers
/// send it in `Origin`.
/// The token-shaped values (64 hex digits) of the cookie `name` in a `Cookie` header,
/// at most [`MAX_REFRESH_COOKIES`], no repeats: a browser holds one of mfad's, any
/// others were planted under the name by another host of the domain.
fn token_cookies<'h>(header: &'h str, name: &str) -> Vec<&'h str> {
    let mut found: Vec<&str> = Vec::new();
    let values = header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
    for v in values {
        if found.len() == MAX_REFRESH_COOKIES {
            break;
        }
        if !found.contains(&v) {
            found.push(v);
        }
    }
    found
}

/// `s` percent-encoded for a query parameter's value: every byte but the unreserved ones
/// (RFC 3986 §2.3).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn parse_origin(text: &str) -> Result<String, &'static str> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("an origin like https://app.example.com")?;
    if scheme != "http" && scheme != "https" {
        return Err("an http:// or https:// origin");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if !host_ok || host.contains("..") {
        return Err("an origin with a host name (no path, no query, no wildcard)");
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err("an origin with a port from 1 to 65535");
        }
    }
    Ok(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_secure_only_behind_https_and_has_the_domain_asked() {
        let mut p = WebPolicy {
            public_origin: Some("https://auth.example.com".into()),
            session_domain: Some("example.com".into()),
            ..WebPolicy::default()
        };
        assert_eq!(
            p.session_cookie("ab", 60),
            "mfad_session=ab; HttpOnly; Secure; SameSite=Lax; Path=/; Domain=example.com; \
             Max-Age=60"
        );
        p.public_origin = Some("http://auth.example.com".into());
        p.session_domain = None;
        assert_eq!(
            p.session_cookie("", 0),
            "mfad_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"
        );
        let t = "a".repeat(64);
        let header = format!("x=1; mfad_session={t}; mfad_session=junk; mfad_session={t}");
        assert_eq!(p.session_cookies(&header), [t.as_str()]);
    }

    #[test]
    fn the_portal_carries_the_way_back_encoded() {
        let p = WebPolicy {
            public_origin: Some("https://auth.example.com".into()),
            ..WebPolicy::default()
        };
        assert_eq!(
            p.portal(None, "https://wiki.example.com/a?b=c&d", true)
                .unwrap(),
            "https://auth.example.com/?rd=https%3A%2F%2Fwiki.example.com%2Fa%3Fb%3Dc%26d&need=2fa"
        );
    }

    #[test]
    fn the_base_url_is_the_public_one_or_a_plain_host() {
        let p = WebPolicy::default();
        assert_eq!(
            p.base_url(Some("127.0.0.1:8080")).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            p.base_url(Some("[::1]:80")).as_deref(),
            Some("http://[::1]:80")
        );
        for bad in ["", "a/b", "evil.example\"/x", "a b", "x@y", "a?b"] {
            assert_eq!(p.base_url(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(p.base_url(None), None);
        let public = WebPolicy {
            public_origin: Some("https://auth.example.org".into()),
            ..WebPolicy::default()
        };
        assert_eq!(
            public.base_url(Some("evil.example")).as_deref(),
            Some("https://auth.example.org")
        );
    }

    #[test]
    fn the_page_is_named_localhost_on_loopback_and_the_public_url_behind_a_proxy() {
        let p = WebPolicy::default();
        let url = |a: &str| p.page_url(a.parse().unwrap());
        assert_eq!(url("127.0.0.1:8080"), "http://localhost:8080/");
        assert_eq!(url("[::1]:9000"), "http://localhost:9000/");
        assert_eq!(url("0.0.0.0:8080"), "http://localhost:8080/");
        assert_eq!(url("[::]:8080"), "http://localhost:8080/");
        assert_eq!(url("127.0.0.2:8080"), "http://127.0.0.2:8080/");
        assert_eq!(url("192.0.2.7:80"), "http://192.0.2.7:80/");
        assert_eq!(url("[2001:db8::1]:8080"), "http://[2001:db8::1]:8080/");
        let public = WebPolicy {
            public_origin: Some("https://auth.example.org".into()),
            ..WebPolicy::default()
        };
        assert_eq!(
            public.page_url("127.0.0.1:8080".parse().unwrap()),
            "https://auth.example.org/"
        );
    }

    #[test]
    fn trusted_proxies_name_the_client_and_others_are_not_believed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = WebPolicy {
            trusted_proxies: vec![
                Cidr::parse("127.0.0.1").unwrap(),
                Cidr::parse("10.0.0.0/8").unwrap(),
            ],
            ..WebPolicy::default()
        };
        let from = |peer: &str, xff: &[&str]| p.client_ip(Some(ip(peer)), xff);
        // An untrusted peer's header is ignored.
        assert_eq!(from("203.0.113.9", &["1.2.3.4"]), Some(ip("203.0.113.9")));
        // Through the proxy: the right-most untrusted entry, whatever the client wrote
        // to its left.
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6, 198.51.100.7"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6", "198.51.100.7, 10.1.2.3"]),
            Some(ip("198.51.100.7")),
            "two headers, and an inner proxy"
        );
        assert_eq!(
            from("::ffff:127.0.0.1", &["198.51.100.7:4711"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            from("127.0.0.1", &["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            from("127.0.0.1", &[]),
            Some(ip("127.0.0.1")),
            "no header: the proxy"
        );
        assert_eq!(
            from("127.0.0.1", &["198.51.100.7, garbage, 10.0.0.1"]),
            Some(ip("10.0.0.1")),
            "a malformed entry: the last hop before it"
        );
        assert_eq!(
            WebPolicy::default().client_ip(Some(ip("127.0.0.1")), &["1.2.3.4"]),
            Some(ip("127.0.0.1"))
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "fd00::/129",
            "x",
            "10.0.0.0/",
            "/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
    }

    #[test]
    fn ceremonies_run_on_own_and_listed_origins_under_the_rp_id() {
        let p = WebPolicy {
            cors_origins: vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into(),
            ],
            ..WebPolicy::default()
        };
        assert_eq!(
            p.ceremony_origins(Some("localhost:8080"), "localhost"),
            [
                "https://localhost:8080",
                "http://localhost:8080",
                "http://localhost:3000"
            ]
        );
        assert_eq!(
            p.ceremony_origins(Some("127.0.0.1:8080"), "localhost"),
            ["http://localhost:3000"],
            "an address is under no RP ID"
        );
        assert_eq!(
            p.ceremony_origins(Some("evil\"/x"), "localhost"),
            ["http://localhost:3000"]
        );
        let public = WebPolicy {
            public_origin: Some("https://auth.example.com".into()),
            ..p
        };
        assert_eq!(
            public.ceremony_origins(Some("localhost:8080"), "example.com"),
            ["https://auth.example.com", "https://app.example.com"]
        );
    }

    #[test]
    fn origins_are_exact_scheme_host_and_port() {
        assert_eq!(
            parse_origin("http://localhost:3000").as_deref(),
            Ok("http://localhost:3000")
        );
        assert_eq!(
            parse_origin("https://App.Example.com/").as_deref(),
            Ok("https://app.example.com")
        );
        for bad in [
            "*",
            "null",
            "localhost:3000",
            "ftp://x",
            "https://",
            "https://x/path",
            "https://x:0",
            "https://x:99999",
            "https://*.example.com",
            "https://x?y",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cookie_rule_knows_own_listed_and_foreign_origins() {
        let p = WebPolicy {
            cors_origins: vec!["http://localhost:3000".into()],
            ..WebPolicy::default()
        };
        let host = Some("127.0.0.1:8080");
        assert!(
            p.cookie_origin_allowed(None, host),
            "no Origin: not a browser's CORS"
        );
        assert!(p.cookie_origin_allowed(Some("http://127.0.0.1:8080"), host));
        assert!(p.cookie_origin_allowed(Some("http://localhost:3000"), host));
        assert!(!p.cookie_origin_allowed(Some("https://evil.example"), host));
        assert!(!p.cookie_origin_allowed(Some("null"), host));
        let public = WebPolicy {
            public_origin: Some("https://auth.example.com".into()),
            ..WebPolicy::default()
        };
        assert!(public.cookie_origin_allowed(Some("https://auth.example.com"), host));
        assert!(!public.cookie_origin_allowed(Some("http://127.0.0.1:8080"), host));
    }

    #[test]
    fn cookies_are_set_cleared_and_found() {
        let p = WebPolicy::default();
        assert_eq!(
            p.set_cookie("ab12"),
            "__refresh__token=ab12; HttpOnly; Secure; SameSite=Strict; Path=/api/auth; \
             Max-Age=2592000"
        );
        assert!(p.clear_cookie().ends_with("Max-Age=0"));
        let lax = WebPolicy {
            same_site: Some(SameSite::Lax),
            ..WebPolicy::default()
        };
        assert!(lax.set_cookie("x").contains("SameSite=Lax"));
        let host = WebPolicy {
            host_cookie: true,
            ..WebPolicy::default()
        };
        assert_eq!(
            host.set_cookie("ab12"),
            "__Host-__refresh__token=ab12; HttpOnly; Secure; SameSite=Strict; Path=/; \
             Max-Age=2592000"
        );
        assert_eq!(
            host.clear_cookie(),
            "__Host-__refresh__token=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
        );
    }

    #[test]
    fn every_token_shaped_refresh_cookie_is_a_candidate() {
        let p = WebPolicy::default();
        let (a, b) = ("a".repeat(64), "0123456789ABCDEF".repeat(4));
        let found = |header: &str| p.refresh_cookies(header).join(",");
        assert_eq!(found(&format!("x=1; __refresh__token={a}; y=2")), a);
        // Both, in the order sent; a planted one first does not hide the other.
        assert_eq!(
            found(&format!("__refresh__token={b}; __refresh__token=\"{a}\"")),
            format!("{b},{a}")
        );
        // Not a token: ignored, whatever comes first.
        for junk in ["", "xyz", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert_eq!(
                found(&format!("__refresh__token={junk}; __refresh__token={a}")),
                a
            );
        }
        assert_eq!(found(&format!("x__refresh__token={a}")), "");
        assert_eq!(
            found(&format!("__refresh__token={a}; __refresh__token={a}")),
            a
        );
        let many: Vec<String> = (0..9)
            .map(|i| format!("__refresh__token={i}{}", &a[1..]))
            .collect();
        assert_eq!(
            p.refresh_cookies(&many.join("; ")).len(),
            MAX_REFRESH_COOKIES
        );
        // Under the __Host- prefix only that name counts: the plain one is anyone's.
        let host = WebPolicy {
            host_cookie: true,
            ..WebPolicy::default()
        };
        assert!(host
            .refresh_cookies(&format!("__refresh__token={a}"))
            .is_empty());
        assert_eq!(
            host.refresh_cookies(&format!("__Host-__refresh__token={b}")),
            [b.as_str()]
        );
    }
}
