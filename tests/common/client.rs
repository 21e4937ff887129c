//! The one small HTTP/1.1 client of mfad's tests and benchmarks: request bytes, a
//! response read off any `BufRead` (Content-Length or chunked framing), and [`Conn`], a
//! keep-alive connection that reconnects after an error. `tests/common/mod.rs` wraps it
//! for the tests; `benches/loadgen` and `benches/soak.rs` include this file by `#[path]`.
//! std and serde_json only, no async, no TLS: it talks to mfad on loopback.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Larger bodies are refused rather than allocated: a test must not be able to make
/// itself run out of memory on a broken length.
const MAX_BODY: usize = 16 << 20;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON; panics (with the body) if it is not, which is what a test wants.
    // The benchmarks include this file too and never call it.
    #[allow(dead_code)]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as JSON, or `None`: for the benchmarks, which count a bad body instead.
    // Only loadgen calls it; the tests and the soak include this file too.
    #[allow(dead_code)]
    pub fn try_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    // loadgen includes this file too and never calls it.
    #[allow(dead_code)]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The bytes of one request. `Host` is `127.0.0.1` unless `headers` name one;
/// `Content-Length` is added when there is a body.
pub fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("Host")) {
        head.push_str("Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    raw
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn read_line(stream: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    line.clear();
    if stream.read_line(line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(())
}

/// Reads one response. Framed by Content-Length (as mfad always answers) or chunked (as
/// tiny_http answers large bodies); neither means no body.
pub fn read_response(stream: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = String::new();
    read_line(stream, &mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&line))?;
    let mut headers = Vec::new();
    loop {
        read_line(stream, &mut line)?;
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            read_line(stream, &mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if resp.body.len() + size > MAX_BODY {
                return Err(bad("body too large"));
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            stream.read_exact(&mut resp.body[start..])?;
            // The CRLF after the chunk; after the last one, the end of (no) trailers.
            read_line(stream, &mut line)?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        resp.body = vec![0; len];
        stream.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

/// One keep-alive connection; reconnects after an error or a `Connection: close`.
pub struct Conn {
    addr: SocketAddr,
    read_timeout: Duration,
    /// Reads go through the buffer, writes to `get_mut()`.
    stream: Option<BufReader<TcpStream>>,
    /// Requests sent again because the server had closed the kept-alive connection.
    pub resent: u64,
}

impl Conn {
    /// Not connected yet: the first request (or [`Conn::connect`]) connects.
    pub fn new(addr: SocketAddr, read_timeout: Duration) -> Conn {
        Conn {
            addr,
            read_timeout,
            stream: None,
            resent: 0,
        }
    }

    pub fn connect(&mut self) -> io::Result<()> {
        self.stream = None;
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.read_timeout))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        self.stream = Some(BufReader::with_capacity(16 * 1024, s));
        Ok(())
    }

    /// Sends `req` (whole request bytes) and reads the response.
    ///
    /// A kept-alive connection that the server closed before answering a single byte is
    /// replaced and the request sent again, once, as browsers do (counted in `resent`).
    pub fn request(&mut self, req: &[u8]) -> io::Result<Resp> {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        let reused = self.stream.is_some();
        if !reused {
            self.connect()?;
        }
        let (first, answered) = self.exchange(req);
        let err = match first {
            Ok(r) => return Ok(r),
            Err(e) => e,
        };
        self.stream = None;
        let stale = reused
            && !answered
            && matches!(
                err.kind(),
                UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
            );
        if !stale {
            return Err(err);
        }
        self.resent += 1;
        self.connect()?;
        let (again, _) = self.exchange(req);
        if again.is_err() {
            self.stream = None;
        }
        again
    }

    /// One request and response on the current connection; also says whether any byte
    /// of a response arrived (if none did, the request may be sent again).
    fn exchange(&mut self, req: &[u8]) -> (io::Result<Resp>, bool) {
        let Some(stream) = self.stream.as_mut() else {
            return (Err(io::ErrorKind::NotConnected.into()), false);
        };
        if let Err(e) = stream.get_mut().write_all(req) {
            return (Err(e), false);
        }
        // A signal may interrupt the wait (the std readers above retry; `fill_buf` does
        // not): wait again, as any client does.
        loop {
            match stream.fill_buf() {
                Ok([]) => return (Err(io::ErrorKind::UnexpectedEof.into()), false),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), false),
            }
        }
        let resp = read_response(stream);
        if resp.as_ref().map_or(true, |r| {
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        }) {
            self.stream = None;
        }
        (resp, true)
    }
}
