//! `application/x-www-form-urlencoded`, the encoding of the token endpoint's body and of
//! an authorization request's query (RFC 6749 §B): `+` is a space, `%XX` a byte, the
//! result UTF-8. A parameter sent twice is an error (RFC 6749 §3.1, §3.2), and so is
//! anything that does not decode.

/// The decoded parameters of one form or query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// Parameters past which a form is refused (no endpoint here takes more than a dozen).
const MAX_PARAMS: usize = 64;

impl Params {
    /// Decodes `text` (a body, or a query without its `?`).
    pub fn parse(text: &str) -> Result<Params, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in text.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let (name, value) = (decode(name)?, decode(value)?);
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(format!("The parameter {name} is sent more than once."));
            }
            if pairs.len() == MAX_PARAMS {
                return Err("Too many parameters.".into());
            }
            pairs.push((name, value));
        }
        Ok(Params { pairs })
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// One name or value decoded.
fn decode(s: &str) -> Result<String, String> {
    let bad = || "The form is not well encoded.".to_string();
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent_and_refuses_what_does_not_decode() {
        let p = Params::parse("a=b+c&redirect_uri=https%3A%2F%2Fx.test%2Fcb&empty=&flag").unwrap();
        assert_eq!(p.get("a"), Some("b c"));
        assert_eq!(p.get("redirect_uri"), Some("https://x.test/cb"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.get("flag"), None);
        assert_eq!(p.get("missing"), None);
        assert_eq!(Params::parse("").unwrap(), Params::default());
        for bad in ["a=%", "a=%4", "a=%zz", "a=%ff%fe", "a=1&a=2"] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("p{i}=1")).collect();
        assert!(Params::parse(&many.join("&")).is_err());
    }
}
