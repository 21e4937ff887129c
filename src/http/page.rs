//! The self-service page (`GET /`): three files embedded in the binary, served with the
//! headers API.md fixes (a strict CSP: no inline script or style, no other host; no
//! framing; no referrer). The page is a client of the JSON API like any other: nothing
//! here knows an account.

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asset {
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// Sent with it, beside the common headers.
    pub headers: &'static [(&'static str, &'static str)],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../page/index.html"),
    headers: &HEADERS,
};
const CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../page/app.css"),
    headers: &HEADERS,
};
const JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../page/app.js"),
    headers: &HEADERS,
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
        assert!(!js.contains("localStorage") && !js.contains("sessionStorage"));
        assert!(
            !js.contains("innerHTML"),
            "text only, never markup from data"
        );
        assert!(total_bytes() < 60 * 1024, "{} bytes", total_bytes());
    }
}
