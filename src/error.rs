//! The one error type of a request, and the HTTP status each kind maps to. It knows no
//! HTTP crate: `http.rs` turns it into a response. Messages are for people and never
//! carry a secret, a query or a path; internal causes are logged where they happen.

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// 400: the request is malformed.
    BadRequest(&'static str),
    /// 401 from the bearer-token check or from login: Storno's shape, with `code` and
    /// `message` beside `error`.
    Unauthenticated(&'static str),
    /// 401 from MFA verification: `{"error": …}` only.
    Rejected(&'static str),
    /// 404: no such endpoint.
    NotFound,
    /// 404: the endpoint is there, the thing its path names is not (or not the caller's).
    NoSuch(&'static str),
    /// 403: a cookie-authenticated request from an origin that is not allowed, or a
    /// CORS preflight from one.
    Forbidden(&'static str),
    /// 405, with the methods the path does take.
    MethodNotAllowed(&'static str),
    /// 409: the request conflicts with the account's state.
    Conflict(&'static str),
    /// 413: the body is over the cap; the sentence names the cap, which is `http`'s.
    PayloadTooLarge(&'static str),
    /// 422: well-formed but wrong (a wrong code).
    Unprocessable(&'static str),
    /// 422: a wrong or missing password confirmation, in Storno's shape (with
    /// `messageKey`).
    WrongPassword,
    /// 429, with the seconds to wait.
    TooManyRequests {
        message: &'static str,
        retry_after: u64,
    },
    /// 503: storage cannot be used right now (full disk, read-only, locked).
    Unavailable,
    /// 503: too many password checks are already queued; sent with `Retry-After`.
    Busy,
    /// 500: a bug or an unexpected failure; the cause has been logged.
    Internal,
}

impl Error {
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::Unauthenticated(_) | Error::Rejected(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound | Error::NoSuch(_) => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Conflict(_) => 409,
            Error::PayloadTooLarge(_) => 413,
            Error::Unprocessable(_) | Error::WrongPassword => 422,
            Error::TooManyRequests { .. } => 429,
            Error::Internal => 500,
            Error::Unavailable | Error::Busy => 503,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Error::BadRequest(m)
            | Error::Unauthenticated(m)
            | Error::Rejected(m)
            | Error::Conflict(m)
            | Error::Forbidden(m)
            | Error::NoSuch(m)
            | Error::Unprocessable(m)
            | Error::PayloadTooLarge(m)
            | Error::TooManyRequests { message: m, .. } => m,
            Error::NotFound => "No such endpoint.",
            Error::WrongPassword => "Password is incorrect.",
            Error::MethodNotAllowed(_) => "Method not allowed on this endpoint.",
            Error::Unavailable => "Storage is unavailable; try again shortly.",
            Error::Busy => "The server is busy; try again shortly.",
            Error::Internal => "Internal error.",
        }
    }
}

impl From<crate::crypto::CryptoError> for Error {
    fn from(e: crate::crypto::CryptoError) -> Self {
        log::error!("crypto failure: {e}");
        Error::Internal
    }
}
