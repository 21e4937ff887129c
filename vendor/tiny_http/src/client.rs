use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, ErrorKind};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::util::{Conn, Flusher, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder};
use crate::{Options, Request};
use ascii::AsciiString;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // mfad patch: the write side, with the state of the one answer in flight
    conn: Arc<Conn>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // mfad patch: the limits set by the application
    options: Arc<Options>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    /// mfad patch: answer with this status (`400`, `408`, `414`, `417`, `431`, `505`),
    /// then close: where the next request would start is unknown.
    Status(u16),
    /// The client went away, was silent past the socket timeout (`true`), or the
    /// connection ended.
    Gone(bool),
}

/// RFC 9110 §5.6.2: the characters of a token (a method, a field name).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn timed_out(e: &IoError) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub(crate) fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        options: Arc<Options>,
        flusher: Arc<Flusher>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = match source.next() {
            Some(s) => s,
            None => unreachable!("SequentialReaderBuilder never ends"),
        };

        ClientConnection {
            source,
            conn: Conn::new(write_socket, flusher, options.socket_timeout),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            options,
        }
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// mfad patch: at most `limit` bytes (else `Ok(None)`), and not past `deadline`;
    /// the bytes as they came (the caller checks them).
    fn read_next_line(&mut self, limit: usize, deadline: Instant) -> IoResult<Option<Vec<u8>>> {
        // mfad patch: scans whole buffers (the original read one byte per `read` call and
        // looked at the clock for every byte). Only CRLF ends a line.
        let mut buf = Vec::new();
        loop {
            if Instant::now() > deadline {
                return Err(IoError::new(ErrorKind::TimedOut, "request deadline passed"));
            }
            let available = match self.next_header_source.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF"));
            }
            let (taken, newline) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            buf.extend_from_slice(&available[..taken]);
            self.next_header_source.consume(taken);
            let end = buf.len();
            // mfad patch 22: a bare LF ends nothing and is refused at once (`400`); left as
            // data, a request line ended by one waited for a CRLF that never came.
            if newline && (end < 2 || buf[end - 2] != b'\r') {
                return Err(IoError::new(ErrorKind::InvalidData, "a bare LF"));
            }
            if newline && end >= 2 && buf[end - 2] == b'\r' {
                // The line without its CRLF must stay under `limit`.
                if end - 1 > limit {
                    return Ok(None);
                }
                buf.truncate(end - 2);
                return Ok(Some(buf));
            }
            if buf.len() > limit {
                return Ok(None);
            }
        }
    }

    fn line(
        &mut self,
        limit: usize,
        deadline: Instant,
        too_long: u16,
    ) -> Result<Vec<u8>, ReadError> {
        match self.read_next_line(limit, deadline) {
            Ok(Some(line)) => Ok(line),
            Ok(None) => Err(ReadError::Status(too_long)),
            Err(e) if e.kind() == ErrorKind::TimedOut => Err(ReadError::Status(408)),
            Err(e) if e.kind() == ErrorKind::InvalidData => Err(ReadError::Status(400)),
            Err(e) => Err(ReadError::Gone(timed_out(&e))),
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // mfad patch: wait for the next request's first byte. A socket timeout while the
        // previous request is still unanswered (waiting for a worker) does not end the
        // connection: that answer would go out on a connection closed under the client.
        // The idle timeout counts once it is sent.
        loop {
            match self.next_header_source.fill_buf() {
                Ok(_) => break, // data, or EOF for read_next_line to report
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                        && self.conn.pending() =>
                {
                    continue
                }
                Err(e) => return Err(ReadError::Gone(timed_out(&e))),
            }
        }
        let deadline = Instant::now() + self.options.request_deadline;
        let line = self.line(self.options.request_line, deadline, 414)?;
        let (method, path, version) = parse_request_line(&line)?;

        let mut headers = Vec::new();
        let mut budget = self.options.header_section;
        loop {
            let line = self.line(budget, deadline, 431)?;
            budget = budget.saturating_sub(line.len() + 2);
            if line.is_empty() {
                break;
            }
            headers.push(parse_header(&line)?);
        }

        // mfad patch: answered here and closed: what follows an HTTP/2 preface is not
        // HTTP/1.
        if version > (1, 1) {
            return Err(ReadError::Status(505));
        }
        check_framing(&version, &headers)?;

        // mfad patch: at most one request of a connection is in flight. A client that
        // pipelines waits here (its next request stays in the socket's buffers) until the
        // previous answer is out; one that waits for each answer finds it finished and
        // costs no wake-up. Before, every pipelined request went to the workers' queue,
        // and each one's worker blocked behind the answer ahead of it.
        if !self.conn.wait_idle() {
            return Err(ReadError::Gone(false));
        }
        let writer = self.conn.sink();

        // follow-up for next potential request
        let mut data_source = match self.source.next() {
            Some(s) => s,
            None => unreachable!("SequentialReaderBuilder never ends"),
        };
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        let remote_addr = match self.remote_addr {
            Ok(a) => a,
            Err(_) => None,
        };
        crate::request::new_request(
            method,
            path,
            version,
            headers,
            remote_addr,
            data_source,
            writer,
            Some(deadline),
            self.options.clone(),
        )
        .map_err(|e| {
            use crate::request::RequestCreationError as E;
            match e {
                E::CreationIoError(e) if e.kind() == ErrorKind::TimedOut => ReadError::Status(408),
                E::CreationIoError(e) => ReadError::Gone(timed_out(&e)),
                E::ExpectationFailed => ReadError::Status(417),
                E::BadFraming => ReadError::Status(400),
            }
        })
    }

    /// mfad patch: the layer's own answer (JSON body and headers from the application),
    /// after the answer in flight, then the connection closes.
    fn answer_error(&mut self, code: u16) {
        if !self.conn.wait_idle() {
            return;
        }
        let mut sink = self.conn.sink();
        sink.close_after();
        let response = crate::response::layer_error(&self.options, code);
        response
            .raw_print(&mut sink, HTTPVersion(1, 1), &[], false, None)
            .ok();
    }
}

/// mfad patch: RFC 9112 §3.2 (Host) and §6.1–6.3 (framing). A request whose length a
/// proxy in front could read differently (request smuggling) is refused, not guessed.
fn check_framing(version: &HTTPVersion, headers: &[Header]) -> Result<(), ReadError> {
    let count = |name: &'static str| headers.iter().filter(|h| h.field.equiv(name)).count();
    // §3.2: an HTTP/1.1 request without Host, or any request with more than one, is 400.
    let hosts = count("Host");
    if hosts > 1 || (hosts == 0 && *version >= (1, 1)) {
        return Err(ReadError::Status(400));
    }
    let codings: Vec<&str> = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"))
        .flat_map(|h| h.value.as_str().split(','))
        .map(str::trim)
        .collect();
    if codings.is_empty() {
        return Ok(());
    }
    // §6.3 point 3: Transfer-Encoding with Content-Length "ought to be handled as an
    // error"; 400 rather than ignoring Content-Length, as a proxy may have used it.
    // Point 4: a final coding other than chunked leaves the length unknown: 400. We
    // decode no other coding, so `chunked` alone is the only one accepted.
    if count("Content-Length") > 0
        || codings.len() != 1
        || !codings[0].eq_ignore_ascii_case("chunked")
    {
        return Err(ReadError::Status(400));
    }
    Ok(())
}

/// mfad patch: one header line, strictly (RFC 9112 §5): a field name that is a token,
/// directly followed by `:`; a value of visible ASCII, spaces and tabs only. A line
/// starting with a space or tab (obsolete folding, §5.2) is 400, not a new header.
fn parse_header(line: &[u8]) -> Result<Header, ReadError> {
    let bad = ReadError::Status(400);
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ReadError::Status(400))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) {
        return Err(bad);
    }
    if !value
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
    {
        return Err(bad);
    }
    let value = trim_ows(value);
    let field = HeaderField::from_bytes(name.to_vec()).map_err(|_| ReadError::Status(400))?;
    let value = AsciiString::from_ascii(value.to_vec()).map_err(|_| ReadError::Status(400))?;
    Ok(Header { field, value })
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        let rq = match self.read() {
            Ok(rq) => rq,
            Err(ReadError::Status(code)) => {
                self.answer_error(code);
                return None;
            }
            Err(ReadError::Gone(timed_out)) => {
                if timed_out {
                    self.conn.abort_if_unsent();
                }
                return None;
            }
        };

        // mfad patch: a body the connection's thread did not read whole (over the eager
        // limit) may be left partly unread by the handler; the bytes after it are not a
        // request, so this connection takes no more requests.
        if rq.unread_body {
            self.no_more_requests = true;
        }

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        // mfad patch: `upgrade` is no longer a reason to stop: nothing is upgraded, the
        // request is framed like any other (Content-Length or chunked).
        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        Some(rq)
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::Status(400)),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
///
/// mfad patch: strictly (RFC 9112 §3): exactly three parts separated by single spaces; a
/// method that is a token (a bare LF or an escape in it reached the access log); a
/// target of visible ASCII.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), ReadError> {
    let bad = ReadError::Status(400);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad),
    };
    if !is_token(method) || target.is_empty() || !target.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(bad);
    }
    let method: Method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or(ReadError::Status(400))?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| ReadError::Status(400))?;
    let version = std::str::from_utf8(version)
        .ok()
        .and_then(|v| parse_http_version(v).ok())
        .ok_or(ReadError::Status(400))?;
    Ok((method, target, version))
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line(b"GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line(b"GET /hello").is_err());
        assert!(super::parse_request_line(b"qsd qsd qsd").is_err());
        assert!(super::parse_request_line(b"GET\n<3>x /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line(b"\x1b[31mGET /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line(b"GET  /hello HTTP/1.1").is_err());
        assert!(super::parse_request_line(b"GET /h\xffllo HTTP/1.1").is_err());
    }

    #[test]
    fn test_parse_header() {
        let h = super::parse_header(b"X-A:  two words \t").unwrap();
        assert_eq!(h.value.as_str(), "two words");
        assert!(super::parse_header(b" X-A: a").is_err());
        assert!(super::parse_header(b"X-A : a").is_err());
        assert!(super::parse_header(b"X-A: a\nb").is_err());
        assert!(super::parse_header(b"X-A: \xff").is_err());
        assert!(super::parse_header(b"no colon").is_err());
    }
}
