//! The self-service page (`GET /`): three files embedded in the binary, served with the
//! headers API.md fixes (a strict CSP: no inline script or style, no other host; no
//! framing; no referrer), gzip-compressed to a client that accepts it. The script and
//! the style are compressed when mfad is built (`build.rs`); the HTML names the service
//! (`--rp-name`), so it is filled in when the server starts and compressed once, at the
//! first request that accepts gzip. The page is a client of the JSON API like any
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

/// The HTML, with `{{service}}` where the service's name goes ([`Pages`]).
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
    /// description).
    pub(crate) fn new(service: &str) -> Pages {
        let html = String::from_utf8_lossy(INDEX.bytes).replace("{{service}}", &escape(service));
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
        let pages = Pages::new("Ünï <Corp> & \"Sons\"");
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

    #[test]
    fn each_file_is_sent_compressed_to_who_accepts_it_and_unpacks_to_itself() {
        use std::io::Read;
        let pages = Pages::new("Storno");
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
