use std::io::Error as IoError;
use std::io::{self, BufRead, Cursor, ErrorKind, Read, Write};
use std::sync::Arc;

use std::fmt;
use std::net::SocketAddr;


use crate::util::{EqualReader, FusedReader, ResponseSink};
use crate::{HTTPVersion, Header, Method, Options, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<ResponseSink>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // mfad patch: part of the body is still on the socket (over the eager limit): the
    // connection takes no more requests after this one.
    pub(crate) unread_body: bool,

    // mfad patch: the shape of the layer's own answers (the 500 of a dropped request)
    options: Arc<Options>,
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// mfad patch: a chunked body that does not follow RFC 9112 §7.1.
    BadFraming,
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// mfad patch: bodies up to this size (and chunked bodies, up to one byte more) are read
/// before the request is handed to a worker.
pub(crate) const EAGER_BODY_LIMIT: usize = 16 * 1024;

fn past_deadline(deadline: Option<std::time::Instant>) -> Result<(), RequestCreationError> {
    match deadline {
        Some(d) if std::time::Instant::now() > d => Err(RequestCreationError::CreationIoError(
            IoError::new(ErrorKind::TimedOut, "request deadline passed"),
        )),
        _ => Ok(()),
    }
}

/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_request<R>(
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    mut writer: ResponseSink,
    deadline: Option<std::time::Instant>,
    options: Arc<Options>,
) -> Result<Request, RequestCreationError>
where
    R: BufRead + Send + 'static,
{
    // finding the transfer-encoding header (client.rs admits only `chunked`, alone)
    let chunked = headers
        .iter()
        .any(|h: &Header| h.field.equiv("Transfer-Encoding"));

    // finding the content-length header
    let content_length = if chunked {
        None
    } else {
        headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Content-Length"))
            .and_then(|h| h.value.as_str().parse::<usize>().ok())
    };

    // true if the client sent a `Expect: 100-continue` header
    let mut must_send_continue = true;
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // mfad patch: `Connection: upgrade` no longer hands the handler the whole socket as
    // the body (curl --http2 sends it on every request): nothing is upgraded, and the
    // body is framed by Content-Length or chunked like any other.
    let mut unread_body = false;
    let reader = if let Some(content_length) = content_length {
        if content_length == 0 {
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= EAGER_BODY_LIMIT {
            // mfad patch: bodies up to EAGER_BODY_LIMIT are read here, on the connection's
            // own thread and within the request deadline, so that a client trickling its
            // body never holds one of the application's worker threads.
            if expects_continue {
                send_continue(&mut writer)?;
                must_send_continue = false;
            }
            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }
                past_deadline(deadline)?;

                offset += read;
            }

            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            unread_body = true;
            let (data_reader, _) = EqualReader::new(source_data, content_length); // TODO:
            Box::new(FusedReader::new(data_reader)) as Box<dyn Read + Send + 'static>
        }
    } else if chunked {
        // mfad patch: read eagerly, as above, up to one byte past EAGER_BODY_LIMIT; a
        // longer body shows the handler that it is too long, and the connection closes
        // after the response (client.rs).
        if expects_continue {
            send_continue(&mut writer)?;
            must_send_continue = false;
        }
        let (buffer, complete) = read_chunked(&mut source_data, deadline, EAGER_BODY_LIMIT + 1)?;
        unread_body = !complete;
        Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(writer),
        remote_addr,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: must_send_continue && expects_continue,
        unread_body,
        options,
    })
}

fn send_continue(writer: &mut ResponseSink) -> Result<(), RequestCreationError> {
    writer
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .and_then(|()| writer.flush())
        .map_err(RequestCreationError::CreationIoError)
}

/// A line of a chunked body (size line, CRLF after data, trailer field) at most this long.
const CHUNK_LINE_LIMIT: usize = 4 * 1024;
/// The trailer section at most this long, as the header section.
const TRAILER_LIMIT: usize = 16 * 1024;

/// Reads one CRLF-terminated line (without it), at most `limit` bytes, or `BadFraming`.
fn chunk_line<R: BufRead>(source: &mut R, limit: usize) -> Result<Vec<u8>, RequestCreationError> {
    let mut line = Vec::new();
    (&mut *source)
        .take(limit as u64 + 2)
        .read_until(b'\n', &mut line)?;
    match line.len() {
        0 => Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF").into()),
        n if n >= 2 && line.ends_with(b"\r\n") => {
            line.truncate(n - 2);
            Ok(line)
        }
        _ if !line.ends_with(b"\n") && line.len() < limit + 2 => {
            Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF").into())
        }
        _ => Err(RequestCreationError::BadFraming),
    }
}

/// mfad patch: a strict chunked decoder (RFC 9112 §7.1), in place of the
/// `chunked_transfer` crate's, which failed on a trailer section and read sizes loosely.
/// Reads the body up to `limit` bytes: `(body, true)` if it ended within them (its
/// trailer section read and checked), `(first limit bytes, false)` otherwise. A size that
/// is not 1–15 hex digits, chunk data not followed by CRLF, or a malformed trailer line
/// is `BadFraming`. Chunk extensions (`;name=value`) are ignored, as §7.1.1 allows.
pub(crate) fn read_chunked<R: BufRead>(
    source: &mut R,
    deadline: Option<std::time::Instant>,
    limit: usize,
) -> Result<(Vec<u8>, bool), RequestCreationError> {
    let mut body = Vec::new();
    loop {
        past_deadline(deadline)?;
        let line = chunk_line(source, CHUNK_LINE_LIMIT)?;
        let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let digits = trim_trailing_ws(digits);
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(RequestCreationError::BadFraming);
        }
        let size = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| usize::from_str_radix(d, 16).ok())
            .ok_or(RequestCreationError::BadFraming)?;
        if size == 0 {
            break;
        }
        let want = size.min(limit - body.len());
        let start = body.len();
        body.resize(start + want, 0);
        let mut filled = start;
        while filled < body.len() {
            let n = source.read(&mut body[filled..])?;
            if n == 0 {
                return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF").into());
            }
            filled += n;
            past_deadline(deadline)?;
        }
        if want < size {
            return Ok((body, false));
        }
        if !chunk_line(source, 0)?.is_empty() {
            return Err(RequestCreationError::BadFraming);
        }
    }
    // The trailer section: header fields, then an empty line.
    let mut budget = TRAILER_LIMIT;
    loop {
        past_deadline(deadline)?;
        let line = chunk_line(source, budget.min(CHUNK_LINE_LIMIT))?;
        if line.is_empty() {
            return Ok((body, true));
        }
        budget = budget.saturating_sub(line.len() + 2);
        let colon = line.iter().position(|&b| b == b':');
        let well_formed = colon.is_some_and(|c| {
            c > 0
                && line[..c]
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                && line[c + 1..]
                    .iter()
                    .all(|&b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
        });
        if !well_formed || budget == 0 {
            return Err(RequestCreationError::BadFraming);
        }
    }
}

fn trim_trailing_ws(mut v: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

impl Request {
    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # extern crate rustc_serialize;
    /// # extern crate tiny_http;
    /// # use rustc_serialize::json::Json;
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # fn main() {
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    ///     let json: Json = content.parse().unwrap();
    /// }
    /// # }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            if let Some(writer) = self.response_writer.as_mut() {
                let msg = Response::new_empty(StatusCode(100));
                msg.raw_print(
                    writer.by_ref(),
                    self.http_version.clone(),
                    &self.headers,
                    true,
                    None,
                )
                .ok();
                writer.flush().ok();
            }
            self.must_send_continue = false;
        }

        match self.data_reader.as_mut() {
            Some(reader) => reader,
            None => unreachable!("the reader is only taken when the request is consumed"),
        }
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        Box::new(self.extract_writer_impl())
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> ResponseSink {
        // mfad patch: a request consumed twice would be a bug of this crate; an empty
        // sink instead of a panic on the request path.
        self.response_writer
            .take()
            .unwrap_or_else(ResponseSink::discard)
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();
        if response.closes() {
            writer.close_after();
        }

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            // mfad patch: in the application's shape, like every answer of the layer
            let response = crate::response::layer_error(&self.options, 500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    fn chunked(text: &[u8], limit: usize) -> Result<(Vec<u8>, bool), &'static str> {
        let mut source = std::io::Cursor::new(text.to_vec());
        super::read_chunked(&mut source, None, limit).map_err(|e| match e {
            super::RequestCreationError::BadFraming => "bad framing",
            _ => "io",
        })
    }

    #[test]
    fn chunked_bodies_are_read_strictly() {
        let ok = |t: &[u8]| chunked(t, 100).map(|(b, done)| (String::from_utf8(b).unwrap(), done));
        assert_eq!(ok(b"2\r\n{}\r\n0\r\n\r\n"), Ok(("{}".into(), true)));
        assert_eq!(
            ok(b"1;a=b\r\n{\r\n1\r\n}\r\n0\r\n\r\n"),
            Ok(("{}".into(), true))
        );
        assert_eq!(
            ok(b"A\r\n0123456789\r\n0\r\n\r\n"),
            Ok(("0123456789".into(), true))
        );
        // Trailers are read and checked.
        assert_eq!(
            ok(b"2\r\n{}\r\n0\r\nX-A: b\r\nX-C:\r\n\r\n"),
            Ok(("{}".into(), true))
        );
        for bad in [
            &b"zz\r\n{}\r\n0\r\n\r\n"[..],
            b"-1\r\n{}\r\n0\r\n\r\n",
            b"\r\n{}\r\n0\r\n\r\n",
            b"1000000000000000000\r\n{}\r\n0\r\n\r\n",
            b"+2\r\n{}\r\n0\r\n\r\n",
            b"2\r\n{}  \r\n0\r\n\r\n",
            b"2\n{}\r\n0\r\n\r\n",
            b"2\r\n{}\r\n0\r\nno colon\r\n\r\n",
            b"2\r\n{}\r\n0\r\n: empty name\r\n\r\n",
            b"2\r\n{}\r\n0\r\nX-A: \x01\r\n\r\n",
        ] {
            assert_eq!(
                chunked(bad, 100),
                Err("bad framing"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Cut off: EOF is not a framing error (the client went away).
        assert_eq!(chunked(b"5\r\nab", 100), Err("io"));
        // Over the limit: the first `limit` bytes, not complete.
        assert_eq!(
            chunked(b"5\r\nabcde\r\n0\r\n\r\n", 3),
            Ok((b"abc".to_vec(), false))
        );
    }

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
