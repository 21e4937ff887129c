//! mfad patch: what the application decides about the HTTP layer — its bounds on a
//! request and the answers the layer writes itself — instead of constants in this crate.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::{Header, StatusCode};

/// The bounds on one request and the shape of the layer's own answers.
#[derive(Clone, Debug)]
pub struct Options {
    /// The request line (method, target, version) at most this long, else `414`.
    pub request_line: usize,
    /// The header section, all lines together, at most this long, else `431`.
    pub header_section: usize,
    /// The whole request — line, headers and a body read eagerly — must arrive within
    /// this time of its first byte; a client trickling bytes gets `408`.
    pub request_deadline: Duration,
    /// Receive and send timeout of every accepted socket (idle keep-alive included), and
    /// how long an answer may wait for a client that does not read. `None`: no timeout.
    pub socket_timeout: Option<Duration>,
    /// Headers on every answer the layer writes itself (`400`, `408`, `414`, `417`,
    /// `431`, `505`, and the `500` of a request dropped unanswered).
    pub error_headers: Vec<Header>,
    /// The body of such an answer, from its status.
    pub error_body: fn(StatusCode) -> Vec<u8>,
    /// The connections open now (accepted, not yet closed): the layer counts them here
    /// for the application to read.
    pub open_connections: Arc<AtomicUsize>,
}

fn no_body(_: StatusCode) -> Vec<u8> {
    Vec::new()
}

impl Default for Options {
    fn default() -> Options {
        Options {
            request_line: 8 * 1024,
            header_section: 16 * 1024,
            request_deadline: Duration::from_secs(20),
            socket_timeout: Some(Duration::from_secs(10)),
            error_headers: Vec::new(),
            error_body: no_body,
            open_connections: Arc::default(),
        }
    }
}
