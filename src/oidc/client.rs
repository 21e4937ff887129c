//! What an operator registers an app with (`mfad client add`), checked before anything
//! is stored: an id the protocol can carry, a name the page can show, redirect and
//! post-logout URIs a browser will be sent to only exactly as registered.

use super::registrable_uri;

/// What a client's sign-ins need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPolicy {
    /// A password (or a passkey alone) is enough.
    OneFactor,
    /// A second factor: the session's `amr` holds `otp` or `hwk`.
    TwoFactor,
}

impl ClientPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientPolicy::OneFactor => "one_factor",
            ClientPolicy::TwoFactor => "two_factor",
        }
    }

    pub fn parse(s: &str) -> Option<ClientPolicy> {
        match s {
            "one_factor" => Some(ClientPolicy::OneFactor),
            "two_factor" => Some(ClientPolicy::TwoFactor),
            _ => None,
        }
    }
}

/// How a client's ID tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenAlg {
    /// RSA with SHA-256: what every client library checks (the default).
    Rs256,
    /// Ed25519, with mfad's token key.
    EdDsa,
}

impl IdTokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenAlg::Rs256 => "RS256",
            IdTokenAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<IdTokenAlg> {
        match s {
            "RS256" => Some(IdTokenAlg::Rs256),
            "EdDSA" => Some(IdTokenAlg::EdDsa),
            _ => None,
        }
    }
}

/// A client as the operator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_uris: Vec<String>,
    /// No secret: a browser or mobile app, which must use PKCE.
    pub public: bool,
    pub policy: ClientPolicy,
    pub alg: IdTokenAlg,
}

/// The longest client id and name.
const MAX_ID: usize = 64;
const MAX_NAME: usize = 100;

/// A `client_id`: 1 to 64 of `A-Z a-z 0-9 . _ ~ -`, so that it travels unchanged in a
/// query, a form and HTTP Basic authentication (where a `:` would end it).
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "--id {id:?}: a client id is 1 to {MAX_ID} letters, digits, '.', '_', '~' or '-'"
        )),
    }
}

impl ClientSpec {
    /// Every rule, with a sentence naming the flag and the value that broke one.
    pub fn check(&self) -> Result<(), String> {
        check_id(&self.id)?;
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(format!(
                "--name {:?}: the app's name, as the sign-in page shows it, is 1 to {MAX_NAME} \
                 characters without control characters",
                self.name
            ));
        }
        if self.redirect_uris.is_empty() {
            return Err(
                "mfad client add needs --redirect-uri URI (the app's callback; repeat for more)"
                    .into(),
            );
        }
        for (flag, uris) in [
            ("--redirect-uri", &self.redirect_uris),
            ("--post-logout-uri", &self.post_logout_uris),
        ] {
            for (i, uri) in uris.iter().enumerate() {
                registrable_uri(uri).map_err(|why| format!("{flag} {uri} {why}"))?;
                if uris[..i].contains(uri) {
                    return Err(format!("{flag} {uri} is given twice"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClientSpec {
        ClientSpec {
            id: "grafana".into(),
            name: "Grafana".into(),
            redirect_uris: vec!["https://grafana.example.com/login/generic_oauth".into()],
            post_logout_uris: vec![],
            public: false,
            policy: ClientPolicy::TwoFactor,
            alg: IdTokenAlg::Rs256,
        }
    }

    #[test]
    fn a_spec_is_checked_flag_by_flag() {
        assert_eq!(spec().check(), Ok(()));
        for (change, says) in [
            (
                (|s: &mut ClientSpec| s.id = "a:b".into()) as fn(&mut ClientSpec),
                "--id \"a:b\"",
            ),
            (|s| s.id = String::new(), "--id \"\""),
            (|s| s.id = "x".repeat(65), "--id"),
            (|s| s.name = " ".into(), "--name"),
            (|s| s.name = "a\nb".into(), "--name"),
            (|s| s.redirect_uris.clear(), "needs --redirect-uri"),
            (
                |s| s.redirect_uris = vec!["http://grafana.example.com/cb".into()],
                "--redirect-uri http://grafana.example.com/cb is plain http",
            ),
            (
                |s| s.redirect_uris.push(s.redirect_uris[0].clone()),
                "is given twice",
            ),
            (
                |s| s.post_logout_uris = vec!["https://x.example.com/#out".into()],
                "--post-logout-uri https://x.example.com/#out has a fragment",
            ),
        ] {
            let mut s = spec();
            change(&mut s);
            let e = s.check().unwrap_err();
            assert!(e.contains(says), "{e} should say {says}");
        }
        let mut s = spec();
        s.id = "my-app_2.0~x".into();
        s.redirect_uris.push("http://127.0.0.1:8000/cb".into());
        assert_eq!(s.check(), Ok(()));
    }

    #[test]
    fn policies_and_algorithms_have_one_name_each() {
        for p in [ClientPolicy::OneFactor, ClientPolicy::TwoFactor] {
            assert_eq!(ClientPolicy::parse(p.as_str()), Some(p));
        }
        for a in [IdTokenAlg::Rs256, IdTokenAlg::EdDsa] {
            assert_eq!(IdTokenAlg::parse(a.as_str()), Some(a));
        }
        assert_eq!(ClientPolicy::parse("bypass"), None);
        assert_eq!(IdTokenAlg::parse("HS256"), None);
        assert_eq!(IdTokenAlg::parse("rs256"), None);
    }
}
