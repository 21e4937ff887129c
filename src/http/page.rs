//! The self-service page (`GET /`): three files embedded in the binary, served with the
//! headers API.md fixes (a strict CSP: no inline script or style, no other host; no
//! framing; no referrer), gzip-compressed to a client that accepts it. The script and
//! the style are compressed when mfad is built (`build.rs`); the HTML names the service
//! (`--rp-name`) and tells the script where it may send a person back to (the session
//! domain, and whether plain `http` is allowed), so it is filled in when the server
//! starts and compressed once, at the first request that accepts gzip. The page is a client of the JSON API like any
//! other: nothing here knows an account.

use std::io::Write;
use std::sync::OnceLock;

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// The same, gzip-compressed; empty when it is not kept compressed.
    pub gzip: &'static [u8],
    /// Sent with it, beside the common headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// Whether it is the HTML, which is sent as [`Pages`] made it.
    pub named: bool,
}

/// The HTML, with `{{service}}`, `{{session_domain}}` and `{{http_back}}` where
/// [`Pages`] puts this server's values.
pub(crate) const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../page/index.html"),
    gzip: b"",
    headers: &HEADERS,
    named: true,
};
const CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../page/app.css"),
    gzip: include_bytes!(concat!(env!("OUT_DIR"), "/app.css.gz")),
    headers: &HEADERS,
    named: false,
};
const JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../page/app.js"),
    gzip: include_bytes!(concat!(env!("OUT_DIR"), "/app.js.gz")),
    headers: &HEADERS,
    named: false,
};

/// The file at `path`, if it is one of the page's.
pub(crate) fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" => Some(INDEX),
        "/assets/app.css" => Some(CSS),
        "/assets/app.js" => Some(JS),
        _ => None,
    }
}

/// The headers every file of the page carries, beside `nosniff` and `no-store`.
const HEADERS: [(&str, &str); 3] = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// The HTML of this server, named for its service, plain and compressed: made once.
#[derive(Debug)]
pub(crate) struct Pages {
    index: Vec<u8>,
    /// Made at the first request that accepts it: a listener or a fuzz run that never
    /// serves the page never compresses it.
    index_gzip: OnceLock<Vec<u8>>,
}

impl Pages {
    /// The page named for `service` (HTML-escaped into its title, heading and
    /// description), telling its script the `session_domain` (empty without one: then
    /// it sends nobody back to an app) and whether an app's address may be plain
    /// `http` (`http_back`: only where mfad's own public URL is).
    pub(crate) fn new(service: &str, session_domain: Option<&str>, http_back: bool) -> Pages {
        let html = fill(
            &String::from_utf8_lossy(INDEX.bytes),
            &[
                ("service", service),
                ("session_domain", session_domain.unwrap_or_default()),
                ("http_back", if http_back { "yes" } else { "" }),
            ],
        );
        Pages {
            index: html.into_bytes(),
            index_gzip: OnceLock::new(),
        }
    }

    /// What is sent for `asset`: its bytes, compressed when the client `accepts_gzip`
    /// and a compressed form is kept, and whether they are.
    pub(crate) fn body<'a>(&'a self, asset: &Asset, accepts_gzip: bool) -> (&'a [u8], bool) {
        let (plain, packed): (&[u8], &[u8]) = match (asset.named, accepts_gzip) {
            (true, true) => (
                &self.index,
                self.index_gzip
                    .get_or_init(|| gzip(&self.index).unwrap_or_default()),
            ),
            (true, false) => (&self.index, b""),
            (false, _) => (asset.bytes, asset.gzip),
        };
        match accepts_gzip && !packed.is_empty() {
            true => (packed, true),
            false => (plain, false),
        }
    }
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    out.write_all(bytes)?;
    out.finish()
}

/// `template` with each `{{name}}` of `values` replaced by its value, HTML-escaped, in
/// one pass: a value is never read as a template itself (a service named
/// `{{session_domain}}` keeps its name). An unknown `{{…}}` stays as it is.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find("}}").and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (escape(v), end))
        });
        match value {
            Some((v, end)) => {
                out.push_str(&v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether an `Accept-Encoding` value accepts gzip (RFC 9110 §12.5.3): `gzip` or `*`
/// listed without `q=0`.
pub(crate) fn accepts_gzip(header: Option<&str>) -> bool {
    let Some(header) = header else { return false };
    let mut gzip = None;
    let mut any = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q > 0.0),
            "*" => any = Some(q > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total_bytes() -> usize {
        [INDEX, CSS, JS].iter().map(|a| a.bytes.len()).sum()
    }

    #[test]
    fn the_page_is_three_files_and_references_only_its_own() {
        assert_eq!(asset("/").map(|a| a.content_type), Some(INDEX.content_type));
        assert!(asset("/assets/app.js").is_some() && asset("/assets/other.js").is_none());
        let html = std::str::from_utf8(INDEX.bytes).unwrap();
        // Everything it loads is one of the two assets: no other host, nothing inline.
        for needle in [
            "http://",
            "https://",
            "style=",
            "onclick",
            "<style",
            "javascript:",
        ] {
            assert!(!html.contains(needle), "{needle}");
        }
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(r#"<script src="/assets/app.js" defer></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="/assets/app.css">"#));
        let js = std::str::from_utf8(JS.bytes).unwrap();
        // Storage holds one marker ("this browser signed in"), never a token.
        assert!(!js.contains("sessionStorage"));
        let stored: Vec<&str> = js
            .match_indices("localStorage.")
            .map(|(i, _)| &js[i..])
            .collect();
        assert_eq!(stored.len(), 3, "set, remove and read the marker");
        for s in stored {
            assert!(
                [
                    "setItem(MARKER, \"1\")",
                    "removeItem(MARKER)",
                    "getItem(MARKER)"
                ]
                .iter()
                .any(|call| s["localStorage.".len()..].starts_with(call)),
                "{}",
                &s[..40]
            );
        }
        assert!(
            !js.contains("innerHTML"),
            "text only, never markup from data"
        );
        assert!(total_bytes() < 60 * 1024, "{} bytes", total_bytes());
    }

    #[test]
    fn the_html_names_the_service_escaped() {
        let pages = Pages::new("Ünï <Corp> & \"Sons\"", None, false);
        let (html, packed) = pages.body(&INDEX, false);
        assert!(!packed);
        let html = std::str::from_utf8(html).unwrap();
        assert!(!html.contains("{{service}}"));
        assert!(html.contains("<title>Ünï &lt;Corp&gt; &amp; &quot;Sons&quot;</title>"));
        assert!(html.contains(r#"<span id="service" class="service">Ünï &lt;Corp&gt;"#));
        assert!(html.contains(
            r#"<meta name="application-name" content="Ünï &lt;Corp&gt; &amp; &quot;Sons&quot;">"#
        ));
    }

    fn html_of(pages: &Pages) -> String {
        String::from_utf8(pages.body(&INDEX, false).0.to_vec()).unwrap()
    }

    #[test]
    fn the_html_tells_the_script_where_it_may_send_people_back() {
        let html = html_of(&Pages::new("Storno", Some("example.com"), true));
        assert!(!html.contains("{{"), "every placeholder filled");
        assert!(html.contains(r#"<meta name="mfad-session-domain" content="example.com">"#));
        assert!(html.contains(r#"<meta name="mfad-http-back" content="yes">"#));
        // Without a session domain, nobody is sent back; https only unless told.
        let html = html_of(&Pages::new("Storno", None, false));
        assert!(!html.contains("{{"));
        assert!(html.contains(r#"<meta name="mfad-session-domain" content="">"#));
        assert!(html.contains(r#"<meta name="mfad-http-back" content="">"#));
    }

    #[test]
    fn a_value_is_never_read_as_a_placeholder() {
        let html = html_of(&Pages::new(
            "{{session_domain}}",
            Some("example.com"),
            false,
        ));
        assert!(html.contains("<title>{{session_domain}}</title>"), "{html}");
        assert!(html.contains(r#"<meta name="mfad-session-domain" content="example.com">"#));
        assert_eq!(
            fill("a {{x}} {{y}} {{", &[("x", "<{{y}}>")]),
            "a &lt;{{y}}&gt; {{y}} {{"
        );
        assert_eq!(fill("{{x}}{{x}}}}", &[("x", "1")]), "11}}");
    }

    #[test]
    fn each_file_is_sent_compressed_to_who_accepts_it_and_unpacks_to_itself() {
        use std::io::Read;
        let pages = Pages::new("Storno", None, false);
        for a in [INDEX, CSS, JS] {
            let (plain, packed) = pages.body(&a, false);
            assert!(!packed);
            let (gz, packed) = pages.body(&a, true);
            assert!(packed, "{}", a.content_type);
            assert!(gz.len() * 2 < plain.len(), "{} → {}", plain.len(), gz.len());
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain);
        }
        // A file not kept compressed (the OpenAPI document) goes plain.
        let plain_only = Asset { gzip: b"", ..CSS };
        assert_eq!(pages.body(&plain_only, true), (CSS.bytes, false));
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        for yes in [
            "gzip",
            "gzip, deflate, br",
            "br;q=1.0, GZIP;q=0.5",
            "*",
            "deflate, *;q=0.1",
            "x-gzip",
        ] {
            assert!(accepts_gzip(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "br",
            "identity",
            "gzip;q=0",
            "gzip; q=0.000, *",
            "*;q=0",
            "deflate",
        ] {
            assert!(!accepts_gzip(Some(no)), "{no}");
        }
        assert!(!accepts_gzip(None));
    }
}
