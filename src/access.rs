//! The access rules of forward-auth (`--access-rule`, `--access-default`) and the
//! resource a reverse proxy asks about: parsed here, matched here. Pure: text in, rules
//! and matches out. A leaf (it imports nothing of ours): `config` parses the rules and
//! `service::authz` decides with them, so neither needs the other.

/// What a rule asks of the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No sign-in at all.
    Bypass,
    /// Any login.
    OneFactor,
    /// A login whose `amr` holds `otp` or `hwk`.
    TwoFactor,
    /// Nobody, signed in or not.
    Deny,
}

impl Policy {
    pub fn parse(word: &str) -> Option<Policy> {
        match word {
            "bypass" => Some(Policy::Bypass),
            "one_factor" => Some(Policy::OneFactor),
            "two_factor" => Some(Policy::TwoFactor),
            "deny" => Some(Policy::Deny),
            _ => None,
        }
    }
}

/// The host part of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// This host name exactly.
    Exact(String),
    /// Any host under this domain, by one label or more (`*.example.com`; the domain
    /// itself is not under it). Kept with its leading dot: `.example.com`.
    Under(String),
}

/// One `--access-rule`: `HOST[/PATH] POLICY [EMAIL,…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    hosts: Hosts,
    /// A prefix of the path as sent (not decoded, no query); `None`: every path.
    path: Option<String>,
    pub policy: Policy,
    /// Lower-cased; empty: everyone the policy lets through.
    pub emails: Vec<String>,
}

/// Why a rule cannot be used, for the start's one line about it.
const RULE_SHAPE: &str = "a rule is HOST[/PATH] POLICY [EMAIL,...], e.g. \
     \"wiki.example.com/admin two_factor ana@example.com\"";

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (target, policy, emails) = match words.as_slice() {
            [t, p] => (*t, *p, None),
            [t, p, e] => (*t, *p, Some(*e)),
            _ => return Err(RULE_SHAPE.into()),
        };
        let policy = Policy::parse(policy).ok_or_else(|| {
            format!("unknown policy {policy:?}: bypass, one_factor, two_factor or deny")
        })?;
        let (host, path) = match target.find('/') {
            Some(i) => (&target[..i], Some(&target[i..])),
            None => (target, None),
        };
        let host = host.to_ascii_lowercase();
        let hosts = match host.strip_prefix("*.") {
            Some(domain) if host_name(domain) => Hosts::Under(format!(".{domain}")),
            None if host_name(&host) => Hosts::Exact(host),
            _ => {
                return Err(format!(
                    "{host:?} is no host: a host name (wiki.example.com, no port) or \
                     *.example.com for every host under a domain"
                ))
            }
        };
        if let Some(p) = path {
            if p.contains(['?', '#']) || p.bytes().any(|b| b.is_ascii_control()) {
                return Err(format!("{p:?}: a path prefix has no query or fragment"));
            }
        }
        let emails = match emails {
            None => Vec::new(),
            Some(list) => {
                let mut out = Vec::new();
                for e in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let (local, domain) = e.split_once('@').unwrap_or(("", ""));
                    if local.is_empty() || domain.is_empty() || e.len() > 320 {
                        return Err(format!("{e:?} is no email address"));
                    }
                    out.push(e.to_lowercase());
                }
                out
            }
        };
        if policy == Policy::Bypass && !emails.is_empty() {
            return Err(
                "bypass lets everyone through: a list of emails means nothing there".into(),
            );
        }
        Ok(Rule {
            hosts,
            path: path.map(str::to_string),
            policy,
            emails,
        })
    }

    fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = match &self.hosts {
            Hosts::Exact(h) => h == host,
            Hosts::Under(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        };
        host_ok && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

/// Whether `s` is a host name: dot-separated labels of letters, digits and hyphens (an
/// IPv4 address is one too), lower case.
fn host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The rules, in order, and the policy of a request no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRules {
    pub rules: Vec<Rule>,
    pub default: Policy,
}

impl Default for AccessRules {
    fn default() -> Self {
        AccessRules {
            rules: Vec::new(),
            default: Policy::Deny,
        }
    }
}

impl AccessRules {
    /// The policy for `host` (normalised, see [`Resource`]) and `path`, and who alone may
    /// pass it (empty: anyone it lets through): the first rule that matches wins.
    pub fn rule_for(&self, host: &str, path: &str) -> (Policy, &[String]) {
        match self.rules.iter().find(|r| r.matches(host, path)) {
            Some(r) => (r.policy, &r.emails),
            None => (self.default, &[]),
        }
    }
}

/// What a reverse proxy asks about: the original request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `https` or `http`.
    pub scheme: String,
    /// Lower case, without its port or a trailing dot: what rules compare.
    pub host: String,
    /// The host and port as the URL had them (lower case): for the way back.
    pub authority: String,
    /// The path and query as sent.
    pub uri: String,
    pub method: String,
}

impl Resource {
    /// From `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Uri` and
    /// `X-Forwarded-Method` (a missing scheme is `https`, a missing URI `/`, a missing
    /// method `GET`); `None` when the host is missing or malformed, or the URI is not a
    /// path.
    pub fn forwarded(
        proto: Option<&str>,
        host: Option<&str>,
        uri: Option<&str>,
        method: Option<&str>,
    ) -> Option<Resource> {
        let scheme = match proto.map(|p| p.trim().to_ascii_lowercase()).as_deref() {
            None | Some("https") => "https",
            Some("http") => "http",
            Some(_) => return None,
        };
        let (host, authority) = authority(host?.trim())?;
        let uri = uri.map(str::trim).filter(|u| !u.is_empty()).unwrap_or("/");
        if !uri.starts_with('/') || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return None;
        }
        Some(Resource {
            scheme: scheme.into(),
            host,
            authority,
            uri: uri.into(),
            method: method_of(method)?,
        })
    }

    /// From nginx's `X-Original-URL` (`https://host[:port]/path?query`).
    pub fn original_url(url: &str, method: Option<&str>) -> Option<Resource> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://")?;
        let (auth, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.contains(['?', '#']) {
            return None;
        }
        Resource::forwarded(Some(scheme), Some(auth), Some(uri), method)
    }

    /// The path, without the query: what a rule's path is a prefix of.
    pub fn path(&self) -> &str {
        self.uri.split(['?', '#']).next().unwrap_or("/")
    }

    /// The original URL, for `rd`.
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.uri)
    }
}

fn method_of(method: Option<&str>) -> Option<String> {
    match method.map(str::trim) {
        None | Some("") => Some("GET".into()),
        Some(m) if m.len() <= 32 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(m.to_ascii_uppercase())
        }
        Some(_) => None,
    }
}

/// A `Host`-like value (`name[:port]`, `[v6]:port`): the name rules compare (lower
/// case, no port, no trailing dot) and the authority as the URL had it. One value:
/// a list (`a, b`), userinfo, a path or a bad port are malformed.
fn authority(value: &str) -> Option<(String, String)> {
    let lower = value.to_ascii_lowercase();
    if lower.is_empty() || lower.len() > 260 {
        return None;
    }
    let (name, port) = if let Some(rest) = lower.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (format!("[{v6}]"), None),
            p => (format!("[{v6}]"), Some(p.strip_prefix(':')?)),
        }
    } else {
        match lower.rsplit_once(':') {
            Some((n, p)) => (n.to_string(), Some(p)),
            None => (lower.clone(), None),
        }
    };
    if let Some(p) = port {
        p.parse::<u16>().ok().filter(|p| *p > 0)?;
    }
    let bare = name.strip_suffix('.').unwrap_or(&name);
    if !name.starts_with('[') && !host_name(bare) {
        return None;
    }
    Some((bare.to_string(), lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str], default: Policy) -> AccessRules {
        AccessRules {
            rules: list.iter().map(|r| Rule::parse(r).unwrap()).collect(),
            default,
        }
    }

    #[test]
    fn rules_are_read_with_their_path_and_emails() {
        let r = Rule::parse("Wiki.Example.com/admin two_factor Ana@Example.com,bo@example.com")
            .unwrap();
        assert_eq!(r.policy, Policy::TwoFactor);
        assert_eq!(r.emails, ["ana@example.com", "bo@example.com"]);
        assert!(r.matches("wiki.example.com", "/admin/users"));
        assert!(!r.matches("wiki.example.com", "/"));
        assert!(!r.matches("other.example.com", "/admin"));
        let any = Rule::parse("*.example.com one_factor").unwrap();
        assert!(any.matches("a.example.com", "/"));
        assert!(any.matches("a.b.example.com", "/x"));
        assert!(!any.matches("example.com", "/"));
        assert!(!any.matches("badexample.com", "/"));
        assert!(!any.matches("a.example.com.evil.net", "/"));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (rule, says) in [
            ("", "HOST[/PATH] POLICY"),
            ("wiki.example.com", "HOST[/PATH] POLICY"),
            ("wiki.example.com open", "unknown policy \"open\""),
            ("wiki.example.com:8080 deny", "is no host"),
            ("*.*.example.com deny", "is no host"),
            ("wiki..example.com deny", "is no host"),
            ("wi_ki.example.com deny", "is no host"),
            ("https://wiki.example.com deny", "is no host"),
            ("wiki.example.com/a?b deny", "no query"),
            ("wiki.example.com one_factor ana", "is no email"),
            (
                "wiki.example.com bypass ana@example.com",
                "bypass lets everyone",
            ),
            ("a b c d", "HOST[/PATH] POLICY"),
        ] {
            let e = Rule::parse(rule).unwrap_err();
            assert!(e.contains(says), "{rule:?}: {e}");
        }
    }

    #[test]
    fn the_first_matching_rule_wins_and_the_default_takes_the_rest() {
        let r = rules(
            &[
                "wiki.example.com/public bypass",
                "wiki.example.com two_factor",
                "*.example.com one_factor ana@example.com",
            ],
            Policy::Deny,
        );
        assert_eq!(
            r.rule_for("wiki.example.com", "/public/x").0,
            Policy::Bypass
        );
        assert_eq!(
            r.rule_for("wiki.example.com", "/Public").0,
            Policy::TwoFactor
        );
        let (p, emails) = r.rule_for("files.example.com", "/");
        assert_eq!(
            (p, emails),
            (Policy::OneFactor, &["ana@example.com".to_string()][..])
        );
        assert_eq!(r.rule_for("example.com", "/").0, Policy::Deny);
        assert_eq!(r.rule_for("example.net", "/").0, Policy::Deny);
    }

    #[test]
    fn the_forwarded_resource_is_normalised_for_rules_and_kept_for_the_way_back() {
        let r = Resource::forwarded(
            Some("https"),
            Some("Wiki.Example.com.:8443"),
            Some("/a%2Fb?x=1"),
            Some("post"),
        )
        .unwrap();
        assert_eq!(r.host, "wiki.example.com");
        assert_eq!(r.path(), "/a%2Fb");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url(), "https://wiki.example.com.:8443/a%2Fb?x=1");
        let d = Resource::forwarded(None, Some("app.example.com"), None, None).unwrap();
        assert_eq!(
            (d.scheme.as_str(), d.uri.as_str(), d.method.as_str()),
            ("https", "/", "GET")
        );
        let v6 = Resource::forwarded(None, Some("[::1]:8080"), None, None).unwrap();
        assert_eq!(v6.host, "[::1]");
        for host in [
            "",
            "a b",
            "a.example.com, b.example.com",
            "user@a.example.com",
            "a.example.com/x",
            "a.example.com:0",
            "a.example.com:99999",
            "[nope]",
            "a..example.com",
        ] {
            assert_eq!(
                Resource::forwarded(None, Some(host), None, None),
                None,
                "{host:?}"
            );
        }
        assert_eq!(Resource::forwarded(None, None, None, None), None);
        assert_eq!(
            Resource::forwarded(Some("ftp"), Some("a.b"), None, None),
            None
        );
        assert_eq!(
            Resource::forwarded(None, Some("a.b"), Some("x"), None),
            None
        );
        assert_eq!(
            Resource::forwarded(None, Some("a.b"), Some("/a b"), None),
            None
        );
    }

    #[test]
    fn nginx_sends_the_original_url() {
        let r = Resource::original_url("http://app.example.com:8080/x/y?z", None).unwrap();
        assert_eq!(
            (r.scheme.as_str(), r.host.as_str(), r.uri.as_str()),
            ("http", "app.example.com", "/x/y?z")
        );
        assert_eq!(
            Resource::original_url("https://app.example.com", None)
                .unwrap()
                .uri,
            "/"
        );
        assert_eq!(Resource::original_url("app.example.com/x", None), None);
        assert_eq!(
            Resource::original_url("https://a@b.example.com/", None),
            None
        );
    }
}
