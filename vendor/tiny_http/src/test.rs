use crate::util::ResponseSink;
use crate::{request::new_request, HTTPVersion, Header, HeaderField, Method, Request};
use ascii::AsciiString;
use std::net::SocketAddr;
use std::str::FromStr;

/// A simpler version of [`Request`] that is useful for testing. No data actually goes anywhere.
///
/// By default, `TestRequest` pretends to be an insecure GET request for the server root (`/`)
/// with no headers. To create a `TestRequest` with different parameters, use the builder pattern:
///
/// ```
/// # use tiny_http::{Method, TestRequest};
/// let request = TestRequest::new()
///     .with_method(Method::Post)
///     .with_path("/api/widgets")
///     .with_body("42");
/// ```
///
/// Then, convert the `TestRequest` into a real `Request` and pass it to the server under test:
///
/// ```
/// # use tiny_http::{Method, Request, Response, Server, StatusCode, TestRequest};
/// # use std::io::Cursor;
/// # let request = TestRequest::new()
/// #     .with_method(Method::Post)
/// #     .with_path("/api/widgets")
/// #     .with_body("42");
/// # struct TestServer {
/// #     listener: Server,
/// # }
/// # let server = TestServer {
/// #     listener: Server::http("0.0.0.0:0").unwrap(),
/// # };
/// # impl TestServer {
/// #     fn handle_request(&self, request: Request) -> Response<Cursor<Vec<u8>>> {
/// #         Response::from_string("test")
/// #     }
/// # }
/// let response = server.handle_request(request.into());
/// assert_eq!(response.status_code(), StatusCode(200));
/// ```
#[derive(Clone)]
pub struct TestRequest {
    body: Vec<u8>,
    remote_addr: SocketAddr,
    method: Method,
    path: String,
    http_version: HTTPVersion,
    headers: Vec<Header>,
}

impl From<TestRequest> for Request {
    /// A body its headers frame wrongly becomes an empty body (see [`TestRequest::build`]).
    fn from(mock: TestRequest) -> Request {
        let empty = TestRequest {
            body: Vec::new(),
            ..mock.clone()
        };
        match mock.build() {
            Ok(rq) => rq,
            Err(_) => match empty.build() {
                Ok(rq) => rq,
                Err(_) => unreachable!("an empty body always frames"),
            },
        }
    }
}

impl TestRequest {
    /// mfad patch: the request, or the reason the layer would refuse its body (a
    /// malformed chunked coding, a body shorter than its Content-Length): what a client
    /// would get a `400` (or a close) for. The request owns its body.
    pub fn build(mut self) -> Result<Request, String> {
        // if the user didn't set the Content-Length header, then set it for them
        // otherwise, leave it alone (it may be under test)
        if !self.headers.iter().any(|h| h.field.equiv("Content-Length")) {
            if let Ok(value) = AsciiString::from_ascii(self.body.len().to_string()) {
                if let Ok(field) = HeaderField::from_str("Content-Length") {
                    self.headers.push(Header { field, value });
                }
            }
        }
        new_request(
            self.method,
            self.path,
            self.http_version,
            self.headers,
            Some(self.remote_addr),
            std::io::Cursor::new(self.body),
            ResponseSink::discard(),
            None,
            std::sync::Arc::new(crate::Options::default()),
        )
        .map_err(|e| match e {
            crate::request::RequestCreationError::BadFraming => "malformed chunked body".into(),
            crate::request::RequestCreationError::ExpectationFailed => "expectation failed".into(),
            crate::request::RequestCreationError::CreationIoError(e) => e.to_string(),
        })
    }
}

impl Default for TestRequest {
    fn default() -> Self {
        TestRequest {
            body: Vec::new(),
            remote_addr: "127.0.0.1:23456".parse().unwrap(),
            method: Method::Get,
            path: "/".to_string(),
            http_version: HTTPVersion::from((1, 1)),
            headers: Vec::new(),
        }
    }
}

impl TestRequest {
    pub fn new() -> Self {
        TestRequest::default()
    }
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn with_remote_addr(mut self, remote_addr: SocketAddr) -> Self {
        self.remote_addr = remote_addr;
        self
    }
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = path.to_string();
        self
    }
    pub fn with_http_version(mut self, version: HTTPVersion) -> Self {
        self.http_version = version;
        self
    }
    pub fn with_header(mut self, header: Header) -> Self {
        self.headers.push(header);
        self
    }
}
