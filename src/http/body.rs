//! The request body: the cap (413 past [`MAX_BODY`], with a sentence that names it), the
//! `Content-Length` rules that keep a proxy and mfad reading the same body, and the one
//! JSON object a body may hold. Calls `json` and `error`.

use std::io::Read;

use serde_json::{Map, Value};
use tiny_http::Request;

use crate::error::Error;
use crate::json::BodyError;

/// Request bodies larger than this are refused with 413 (API.md).
pub const MAX_BODY: usize = 16 * 1024;

/// The 413's sentence, written from [`MAX_BODY`] so that the two cannot disagree:
/// "Request body is too large (the limit is 16 KiB)."
const TOO_LARGE: &str = match std::str::from_utf8(&TOO_LARGE_BYTES) {
    Ok(s) => s,
    Err(_) => "Request body is too large.",
};
const TOO_LARGE_HEAD: &[u8] = b"Request body is too large (the limit is ";
/// The limit in KiB when it is a whole number of them, else in bytes.
const TOO_LARGE_LIMIT: (usize, &[u8]) = match MAX_BODY % 1024 {
    0 => (MAX_BODY / 1024, b" KiB)."),
    _ => (MAX_BODY, b" bytes)."),
};
const TOO_LARGE_BYTES: [u8; too_large_len()] = too_large_bytes();

const fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

const fn too_large_len() -> usize {
    TOO_LARGE_HEAD.len() + digits(TOO_LARGE_LIMIT.0) + TOO_LARGE_LIMIT.1.len()
}

const fn too_large_bytes() -> [u8; too_large_len()] {
    let mut out = [0u8; too_large_len()];
    let mut n = 0;
    while n < TOO_LARGE_HEAD.len() {
        out[n] = TOO_LARGE_HEAD[n];
        n += 1;
    }
    let (mut value, unit) = TOO_LARGE_LIMIT;
    let mut at = n + digits(value);
    while at > n {
        at -= 1;
        out[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    n += digits(TOO_LARGE_LIMIT.0);
    let mut i = 0;
    while i < unit.len() {
        out[n + i] = unit[i];
        i += 1;
    }
    out
}

/// Reads the JSON object in the body (see [`read_bytes`]).
pub(super) fn read_body(rq: &mut Request) -> Result<Map<String, Value>, Error> {
    let buf = read_bytes(rq)?;
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    crate::json::parse_object(&buf).map_err(|e| {
        Error::BadRequest(match e {
            BodyError::NotAnObject => "The request body must be a JSON object.",
            BodyError::NotJson => "The request body is not valid JSON.",
            BodyError::DuplicateKey => "The request body names a field twice.",
        })
    })
}

/// Reads the body's bytes. The 413 is decided from `Content-Length` before anything is
/// read; a chunked body is cut off one byte past the cap.
pub(super) fn read_bytes(rq: &mut Request) -> Result<Vec<u8>, Error> {
    // tiny_http ignores a Content-Length it cannot parse and takes the first of several;
    // a proxy in front may read them otherwise (request smuggling), so refuse both.
    let lengths: Vec<&str> = rq
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
        .map(|h| h.value.as_str().trim())
        .collect();
    if lengths.len() > 1
        || lengths
            .iter()
            .any(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::BadRequest("Invalid Content-Length header."));
    }
    if rq.body_length().is_some_and(|n| n > MAX_BODY) || lengths.iter().any(|v| v.len() > 9) {
        return Err(Error::PayloadTooLarge(TOO_LARGE));
    }
    let mut buf = Vec::with_capacity(rq.body_length().unwrap_or(0).min(MAX_BODY));
    rq.as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|_| Error::BadRequest("Could not read the request body."))?;
    if buf.len() > MAX_BODY {
        return Err(Error::PayloadTooLarge(TOO_LARGE));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_413_names_the_cap() {
        assert_eq!(
            TOO_LARGE,
            "Request body is too large (the limit is 16 KiB)."
        );
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(16_384), 5);
    }
}
