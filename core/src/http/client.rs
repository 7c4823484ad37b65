//! HTTP/1.1 client, sans-IO: one request out, one response in.
//!
//! A [`ClientSession`] is built from a [`ClientRequest`]; [`ClientSession::poll_transmit`] gives
//! the request's bytes once. The caller then feeds what the server sends
//! ([`ClientSession::handle_input`]) and reports the end of the connection
//! ([`ClientSession::handle_eof`]), draining [`ClientSession::poll_event`] after each input:
//! the response head ([`ClientEvent::Head`]), the body in pieces as they arrive
//! ([`ClientEvent::Body`], shared `Bytes`, so an endless body such as an HTTP-FLV pull streams
//! through without being held), then [`ClientEvent::End`]. Bodies are framed by
//! `Content-Length`, `Transfer-Encoding: chunked`, or the end of the connection.
//! [`ResponseCollector`] gathers a whole (bounded) response for callers that want it in one go.
//!
//! Everything the server sends is bounded: the head ([`ClientLimits::max_head_bytes`], header
//! count), each chunk-size line and the trailers. Errors name the layer, the field and the byte
//! offset in the response; bad input never panics.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::request::{httparse_what, parse_decimal};

/// Bounds on what a server may make the client buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Largest response head (status line, headers, blank line), interim (1xx) heads included.
    pub max_head_bytes: usize,
    /// Most header fields in the response head.
    pub max_headers: usize,
    /// Longest chunk-size line of a chunked body (size, extensions, line end).
    pub max_chunk_line: usize,
    /// Most bytes of trailer fields after the last chunk.
    pub max_trailer_bytes: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_chunk_line: 1024,
            max_trailer_bytes: 8 * 1024,
        }
    }
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The `Host` header (`host:port`, IPv6 in brackets).
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Further header fields, in order. `Host` and `Content-Length` are added by the session.
    pub headers: Vec<(String, String)>,
    /// The body (sent with a `Content-Length`; empty for none).
    pub body: Bytes,
}

impl ClientRequest {
    /// The request's bytes: head then body. Fails if a field could smuggle a line break or
    /// is not a token, naming the field.
    pub fn encode(&self) -> Result<Bytes, ClientError> {
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        let value = |s: &str| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        if !token(&self.method) || self.method.contains(['(', ')', ',', ':', ';', '"']) {
            return Err(ClientError::InvalidRequest { field: "method" });
        }
        if !token(&self.path) || !self.path.starts_with('/') {
            return Err(ClientError::InvalidRequest { field: "path" });
        }
        if !token(&self.host) {
            return Err(ClientError::InvalidRequest { field: "host" });
        }
        for (name, v) in &self.headers {
            if !token(name) || name.contains(':') || !value(v) {
                return Err(ClientError::InvalidRequest {
                    field: "header field",
                });
            }
        }
        let mut out = BytesMut::with_capacity(256 + self.body.len());
        let mut line = |parts: &[&str]| {
            for p in parts {
                out.extend_from_slice(p.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        line(&[&self.method, " ", &self.path, " HTTP/1.1"]);
        line(&["Host: ", &self.host]);
        for (name, v) in &self.headers {
            line(&[name, ": ", v]);
        }
        let sends_body =
            !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if sends_body {
            line(&["Content-Length: ", &self.body.len().to_string()]);
        }
        line(&[]);
        out.extend_from_slice(&self.body);
        Ok(out.freeze())
    }
}

/// The head of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// `HTTP/1.<version_minor>`.
    pub version_minor: u8,
    /// Header fields in order; values trimmed, non-UTF-8 bytes replaced.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the session read from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The final response head (interim 1xx heads are skipped).
    Head(ResponseHead),
    /// The next piece of the body.
    Body(Bytes),
    /// The response is complete.
    End,
}

/// Why a response could not be read. Offsets count bytes from the start of the response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// A field of the request to send cannot be written as HTTP.
    InvalidRequest {
        /// Which field.
        field: &'static str,
    },
    /// The response head did not end within `limit` bytes.
    HeadTooLarge {
        /// Where the head starts.
        offset: u64,
        /// [`ClientLimits::max_head_bytes`].
        limit: usize,
    },
    /// The response head has more than `limit` header fields.
    TooManyHeaders {
        /// Where the head starts.
        offset: u64,
        /// [`ClientLimits::max_headers`].
        limit: usize,
    },
    /// The response head is not valid HTTP/1.x.
    MalformedHead {
        /// Where the head starts.
        offset: u64,
        /// What is wrong, e.g. "invalid status".
        what: &'static str,
    },
    /// `Content-Length` is not one decimal number (or a list of equal ones).
    BadContentLength {
        /// Where the head starts.
        offset: u64,
    },
    /// A chunk-size line is too long, not hexadecimal or too large.
    BadChunkSize {
        /// Where the line starts.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A chunk's data is not followed by a line end.
    MissingChunkEnd {
        /// Where the line end was expected.
        offset: u64,
    },
    /// The trailer fields after the last chunk exceed `limit` bytes.
    TrailersTooLarge {
        /// Where the trailers start.
        offset: u64,
        /// [`ClientLimits::max_trailer_bytes`].
        limit: usize,
    },
    /// The connection ended before the response did.
    Truncated {
        /// How many response bytes arrived.
        offset: u64,
        /// What was still missing.
        what: &'static str,
    },
    /// A body is larger than what [`ResponseCollector`] accepts.
    BodyTooLarge {
        /// The collector's limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::InvalidRequest { field } => {
                write!(f, "HTTP request: invalid {field}")
            }
            ClientError::HeadTooLarge { offset, limit } => write!(
                f,
                "HTTP response head at byte {offset}: larger than {limit} bytes"
            ),
            ClientError::TooManyHeaders { offset, limit } => write!(
                f,
                "HTTP response head at byte {offset}: more than {limit} header fields"
            ),
            ClientError::MalformedHead { offset, what } => {
                write!(f, "HTTP response head at byte {offset}: {what}")
            }
            ClientError::BadContentLength { offset } => write!(
                f,
                "HTTP response head at byte {offset}: invalid Content-Length"
            ),
            ClientError::BadChunkSize { offset, what } => {
                write!(
                    f,
                    "HTTP chunked body: chunk-size line at byte {offset}: {what}"
                )
            }
            ClientError::MissingChunkEnd { offset } => write!(
                f,
                "HTTP chunked body: no line end after the chunk data at byte {offset}"
            ),
            ClientError::TrailersTooLarge { offset, limit } => write!(
                f,
                "HTTP chunked body: trailers at byte {offset} larger than {limit} bytes"
            ),
            ClientError::Truncated { offset, what } => write!(
                f,
                "HTTP response: connection closed after {offset} bytes, before {what}"
            ),
            ClientError::BodyTooLarge { limit } => {
                write!(f, "HTTP response body: larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Where the response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    /// `Content-Length` bytes still to come.
    Length(u64),
    ChunkSize,
    /// Bytes of the current chunk still to come.
    ChunkData(u64),
    ChunkEnd,
    /// Trailer bytes seen so far.
    Trailers(usize),
    UntilClose,
    Done,
}

/// One request and its response. See the module docs; after each input, drain
/// [`ClientSession::poll_event`] before the next.
#[derive(Debug)]
pub struct ClientSession {
    limits: ClientLimits,
    /// The request's bytes until [`ClientSession::poll_transmit`] takes them.
    request: Option<Bytes>,
    /// A `HEAD` request: the response has no body whatever its head says.
    head_request: bool,
    buf: BytesMut,
    /// Response bytes consumed before `buf`'s first byte.
    offset: u64,
    phase: Phase,
    events: VecDeque<ClientEvent>,
    /// The first error; every later input returns it again.
    failed: Option<ClientError>,
}

impl ClientSession {
    /// A session that sends `request`.
    pub fn new(request: &ClientRequest, limits: ClientLimits) -> Result<Self, ClientError> {
        Ok(ClientSession {
            limits,
            request: Some(request.encode()?),
            head_request: request.method.eq_ignore_ascii_case("HEAD"),
            buf: BytesMut::new(),
            offset: 0,
            phase: Phase::Head,
            events: VecDeque::new(),
            failed: None,
        })
    }

    /// The request's bytes (once).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.request.take()
    }

    /// Bytes from the server. Bytes after a complete response are ignored.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), ClientError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.phase == Phase::Done {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        self.advance().map_err(|e| self.fail(e))
    }

    /// The server closed the connection: ends a body read until the close, and is an error
    /// anywhere else before the response is complete.
    pub fn handle_eof(&mut self) -> Result<(), ClientError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let what = match self.phase {
            Phase::Done => return Ok(()),
            Phase::UntilClose => {
                self.finish();
                return Ok(());
            }
            Phase::Head => "the response head",
            Phase::Length(_) => "the end of the body (Content-Length)",
            _ => "the end of the chunked body",
        };
        let offset = self.offset + self.buf.len() as u64;
        Err(self.fail(ClientError::Truncated { offset, what }))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Whether the whole response was read.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn fail(&mut self, e: ClientError) -> ClientError {
        self.failed = Some(e.clone());
        self.buf.clear();
        e
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.buf.clear();
        self.events.push_back(ClientEvent::End);
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }

    /// Body bytes: up to `n` of what is buffered, as one shared piece.
    fn body_piece(&mut self, n: u64) -> u64 {
        let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
        if take > 0 {
            let piece = self.buf.split_to(take).freeze();
            self.offset += take as u64;
            self.events.push_back(ClientEvent::Body(piece));
        }
        take as u64
    }

    /// Parses as far as the buffered bytes go.
    fn advance(&mut self) -> Result<(), ClientError> {
        loop {
            match self.phase {
                Phase::Done => {
                    self.buf.clear();
                    return Ok(());
                }
                Phase::Head => {
                    if !self.parse_head()? {
                        return Ok(());
                    }
                }
                Phase::Length(left) => {
                    let left = left - self.body_piece(left);
                    if left == 0 {
                        self.finish();
                    } else {
                        self.phase = Phase::Length(left);
                        return Ok(());
                    }
                }
                Phase::UntilClose => {
                    self.body_piece(u64::MAX);
                    return Ok(());
                }
                Phase::ChunkSize => {
                    let start = self.offset;
                    let Some(line) = self.line(self.limits.max_chunk_line, |offset, what| {
                        ClientError::BadChunkSize { offset, what }
                    })?
                    else {
                        return Ok(());
                    };
                    let size = chunk_size(&line).map_err(|what| ClientError::BadChunkSize {
                        offset: start,
                        what,
                    })?;
                    self.phase = match size {
                        0 => Phase::Trailers(0),
                        n => Phase::ChunkData(n),
                    };
                }
                Phase::ChunkData(left) => {
                    let left = left - self.body_piece(left);
                    if left > 0 {
                        self.phase = Phase::ChunkData(left);
                        return Ok(());
                    }
                    self.phase = Phase::ChunkEnd;
                }
                Phase::ChunkEnd => {
                    let end = match self.buf.first() {
                        None => return Ok(()),
                        Some(b'\n') => 1,
                        Some(b'\r') => match self.buf.get(1) {
                            None => return Ok(()),
                            Some(b'\n') => 2,
                            Some(_) => 0,
                        },
                        Some(_) => 0,
                    };
                    if end == 0 {
                        return Err(ClientError::MissingChunkEnd {
                            offset: self.offset,
                        });
                    }
                    self.consume(end);
                    self.phase = Phase::ChunkSize;
                }
                Phase::Trailers(seen) => {
                    let limit = self.limits.max_trailer_bytes;
                    let start = self.offset - seen as u64;
                    let room = limit.saturating_sub(seen).saturating_add(2);
                    let Some(line) = self.line(room, |_, _| ClientError::TrailersTooLarge {
                        offset: start,
                        limit,
                    })?
                    else {
                        return Ok(());
                    };
                    if line.is_empty() {
                        self.finish();
                    } else {
                        self.phase = Phase::Trailers(seen + line.len() + 2);
                    }
                }
            }
        }
    }

    /// Takes one line (without its `\n` or `\r\n`) if a whole one is buffered within `max`
    /// bytes; a longer one is the error `too_long` makes from its offset.
    fn line(
        &mut self,
        max: usize,
        too_long: impl Fn(u64, &'static str) -> ClientError,
    ) -> Result<Option<Bytes>, ClientError> {
        let window = &self.buf[..self.buf.len().min(max)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            if self.buf.len() >= max {
                return Err(too_long(self.offset, "line too long"));
            }
            return Ok(None);
        };
        let mut line = self.buf.split_to(nl + 1).freeze();
        self.offset += line.len() as u64;
        line.truncate(nl);
        if line.last() == Some(&b'\r') {
            line.truncate(nl - 1);
        }
        Ok(Some(line))
    }

    /// Parses a response head if a whole one is buffered; `Ok(false)` to wait for more.
    fn parse_head(&mut self) -> Result<bool, ClientError> {
        let offset = self.offset;
        let limit = self.limits.max_head_bytes;
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut parsed = httparse::Response::new(&mut fields);
        // Only the first `limit` bytes are looked at, so the outcome does not depend on how
        // much arrived at once.
        let window = &self.buf[..self.buf.len().min(limit)];
        let head_len = match parsed.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if self.buf.len() >= limit {
                    return Err(ClientError::HeadTooLarge { offset, limit });
                }
                return Ok(false);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ClientError::TooManyHeaders {
                    offset,
                    limit: self.limits.max_headers,
                })
            }
            Err(e) => {
                return Err(ClientError::MalformedHead {
                    offset,
                    what: httparse_what(e),
                })
            }
        };
        let malformed = |what| ClientError::MalformedHead { offset, what };
        let status = parsed.code.ok_or(malformed("no status"))?;
        let version_minor = parsed.version.ok_or(malformed("no version"))?;
        let head = ResponseHead {
            status,
            reason: parsed.reason.unwrap_or_default().to_owned(),
            version_minor,
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).trim().to_owned();
                    (h.name.to_owned(), value)
                })
                .collect(),
        };
        self.consume(head_len);
        if (100..200).contains(&status) && status != 101 {
            // Interim (100 Continue, 103 Early Hints): the final head follows.
            return Ok(true);
        }
        let phase = self.framing(&head, offset)?;
        self.events.push_back(ClientEvent::Head(head));
        match phase {
            Phase::Length(0) => self.finish(),
            p => self.phase = p,
        }
        Ok(true)
    }

    /// How the body of a response with `head` is delimited (RFC 9112 section 6.3).
    fn framing(&self, head: &ResponseHead, offset: u64) -> Result<Phase, ClientError> {
        if self.head_request || matches!(head.status, 204 | 304) {
            return Ok(Phase::Length(0));
        }
        let mut last_coding = None;
        let mut length: Option<u64> = None;
        for (name, value) in &head.headers {
            if name.eq_ignore_ascii_case("transfer-encoding") {
                if let Some(c) = value.rsplit(',').map(str::trim).find(|c| !c.is_empty()) {
                    last_coding = Some(c);
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                for item in value.split(',') {
                    let n = parse_decimal(item.trim())
                        .ok_or(ClientError::BadContentLength { offset })?;
                    if length.is_some_and(|l| l != n) {
                        return Err(ClientError::BadContentLength { offset });
                    }
                    length = Some(n);
                }
            }
        }
        Ok(match (last_coding, length) {
            (Some(c), _) if c.eq_ignore_ascii_case("chunked") => Phase::ChunkSize,
            // Another final coding: the body runs until the connection closes.
            (Some(_), _) => Phase::UntilClose,
            (None, Some(n)) => Phase::Length(n),
            (None, None) => Phase::UntilClose,
        })
    }
}

/// The size in a chunk-size line (hex digits, then optional `;extensions`).
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits_end = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let digits = &line[..digits_end];
    if digits.is_empty() {
        return Err("no chunk size");
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let d = (b as char)
            .to_digit(16)
            .ok_or("chunk size is not hexadecimal")?;
        acc.checked_mul(16)
            .and_then(|a| a.checked_add(u64::from(d)))
            .ok_or("chunk size too large")
    })
}

/// A whole response: head and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectedResponse {
    /// The head.
    pub head: ResponseHead,
    /// The whole body.
    pub body: Bytes,
}

/// Gathers a [`ClientSession`]'s events into one [`CollectedResponse`], refusing bodies over
/// a limit (checked before buffering).
#[derive(Debug)]
pub struct ResponseCollector {
    limit: usize,
    head: Option<ResponseHead>,
    body: BytesMut,
}

impl ResponseCollector {
    /// A collector for bodies of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ResponseCollector {
            limit,
            head: None,
            body: BytesMut::new(),
        }
    }

    /// Takes one event; the response once [`ClientEvent::End`] arrived.
    pub fn push(&mut self, event: ClientEvent) -> Result<Option<CollectedResponse>, ClientError> {
        match event {
            ClientEvent::Head(head) => self.head = Some(head),
            ClientEvent::Body(piece) => {
                if piece.len() > self.limit.saturating_sub(self.body.len()) {
                    return Err(ClientError::BodyTooLarge { limit: self.limit });
                }
                self.body.extend_from_slice(&piece);
            }
            ClientEvent::End => {
                if let Some(head) = self.head.take() {
                    let body = std::mem::take(&mut self.body).freeze();
                    return Ok(Some(CollectedResponse { head, body }));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(method: &str) -> ClientRequest {
        ClientRequest {
            method: method.into(),
            host: "127.0.0.1:8000".into(),
            path: "/hook?a=b".into(),
            headers: vec![("Connection".into(), "close".into())],
            body: Bytes::new(),
        }
    }

    fn session(method: &str, limits: ClientLimits) -> ClientSession {
        ClientSession::new(&get(method), limits).expect("valid request")
    }

    /// Feeds `chunks`, then the close if `eof`; returns the head, the body and how it ended.
    fn run<'a>(
        s: &mut ClientSession,
        chunks: impl IntoIterator<Item = &'a [u8]>,
        eof: bool,
    ) -> (Option<ResponseHead>, Vec<u8>, Result<bool, ClientError>) {
        let mut head = None;
        let mut body = Vec::new();
        let mut ended = false;
        let mut drain = |s: &mut ClientSession| {
            while let Some(e) = s.poll_event() {
                match e {
                    ClientEvent::Head(h) => {
                        assert!(head.is_none(), "one head");
                        head = Some(h);
                    }
                    ClientEvent::Body(b) => {
                        assert!(!b.is_empty() && !ended);
                        body.extend_from_slice(&b);
                    }
                    ClientEvent::End => ended = true,
                }
            }
        };
        for c in chunks {
            if let Err(e) = s.handle_input(c) {
                drain(s);
                return (head, body, Err(e));
            }
            drain(s);
        }
        if eof {
            if let Err(e) = s.handle_eof() {
                drain(s);
                return (head, body, Err(e));
            }
            drain(s);
        }
        (head, body, Ok(ended))
    }

    /// The outcome of `input` fed whole, then one byte at a time, checked to be the same.
    fn outcome(
        method: &str,
        input: &[u8],
        eof: bool,
    ) -> (Option<ResponseHead>, Vec<u8>, Result<bool, ClientError>) {
        let whole = run(&mut session(method, ClientLimits::default()), [input], eof);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let split = run(&mut session(method, ClientLimits::default()), [a, b], eof);
            assert_eq!(split, whole, "split at {cut}");
        }
        let bytewise = run(
            &mut session(method, ClientLimits::default()),
            input.chunks(1),
            eof,
        );
        assert_eq!(bytewise, whole, "byte by byte");
        whole
    }

    #[test]
    fn the_request_is_http_1_1_with_host_and_length() {
        let mut req = get("POST");
        req.body = Bytes::from_static(b"{\"a\":1}");
        req.headers
            .push(("Content-Type".into(), "application/json".into()));
        let mut s = ClientSession::new(&req, ClientLimits::default()).expect("valid");
        let bytes = s.poll_transmit().expect("the request");
        assert!(s.poll_transmit().is_none(), "sent once");
        assert_eq!(
            &bytes[..],
            &b"POST /hook?a=b HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: close\r\n\
               Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"[..]
        );
        let bytes = session("GET", ClientLimits::default())
            .poll_transmit()
            .expect("request");
        assert!(!bytes.windows(14).any(|w| w == b"Content-Length"));
    }

    #[test]
    fn request_fields_cannot_smuggle_lines() {
        for (field, req) in [
            (
                "path",
                ClientRequest {
                    path: "/a\r\nX: y".into(),
                    ..get("GET")
                },
            ),
            (
                "path",
                ClientRequest {
                    path: "a".into(),
                    ..get("GET")
                },
            ),
            ("method", get("GE T")),
            (
                "host",
                ClientRequest {
                    host: "h\n".into(),
                    ..get("GET")
                },
            ),
            (
                "header field",
                ClientRequest {
                    headers: vec![("X".into(), "v\r\nY: z".into())],
                    ..get("GET")
                },
            ),
            (
                "header field",
                ClientRequest {
                    headers: vec![("X:Y".into(), "v".into())],
                    ..get("GET")
                },
            ),
        ] {
            let e = ClientSession::new(&req, ClientLimits::default()).expect_err("refused");
            assert_eq!(e, ClientError::InvalidRequest { field }, "{req:?}");
            assert!(e.to_string().contains(field));
        }
    }

    #[test]
    fn content_length_bodies_at_every_split() {
        let input =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        let (head, body, end) = outcome("GET", input, false);
        let head = head.expect("head");
        assert_eq!((head.status, head.reason.as_str()), (200, "OK"));
        assert_eq!(head.header("content-type"), Some("text/plain"));
        assert_eq!(body, b"hello");
        assert_eq!(end, Ok(true));
        // Bytes after the response are ignored.
        let mut more = input.to_vec();
        more.extend_from_slice(b"garbage");
        assert_eq!(outcome("GET", &more, true).1, b"hello");
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers_at_every_split() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                      5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n\
                      0\r\nX-Trailer: 1\r\n\r\n";
        let (head, body, end) = outcome("GET", input, false);
        assert_eq!(head.map(|h| h.status), Some(200));
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
        assert_eq!(end, Ok(true));
        // Bare LF line ends are accepted too.
        let lf = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
        assert_eq!(outcome("GET", lf, false).1, b"abc");
    }

    #[test]
    fn bodies_until_close_and_responses_without_a_body() {
        let input = b"HTTP/1.0 200 OK\r\nContent-Type: video/x-flv\r\n\r\nFLV\x01stream";
        let (head, body, end) = outcome("GET", input, true);
        assert_eq!(head.map(|h| h.version_minor), Some(0));
        assert_eq!(body, b"FLV\x01stream");
        assert_eq!(end, Ok(true));
        // Without the close, the body is still running.
        assert_eq!(outcome("GET", input, false).2, Ok(false));

        for (method, input) in [
            ("GET", &b"HTTP/1.1 204 No Content\r\n\r\n"[..]),
            (
                "GET",
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            ),
            ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
            ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (
                "POST",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
        ] {
            let (head, body, end) = outcome(method, input, false);
            assert!(head.is_some_and(|h| h.status >= 200), "{input:?}");
            assert!(body.is_empty());
            assert_eq!(end, Ok(true), "{input:?}");
        }
    }

    #[test]
    fn malformed_responses_are_errors_with_offsets() {
        let cases: &[(&[u8], bool, &str)] = &[
            (b"SSH-2.0-OpenSSH\r\n\r\n", false, "at byte 0"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", false, "invalid status"),
            (b"HTTP/2 200 OK\r\n\r\n", false, "version"),
            (
                b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
                false,
                "header name",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
                false,
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                false,
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                false,
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false,
                "at byte 47: chunk size is not hexadecimal",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
                false,
                "no chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
                false,
                "too large",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
                false,
                "at byte 52",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                true,
                "after 42 bytes, before the end of the body",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                true,
                "chunked",
            ),
            (b"HTTP/1.1 200 OK\r\n", true, "before the response head"),
            (b"", true, "after 0 bytes"),
        ];
        for &(input, eof, expect) in cases {
            let (_, _, end) = outcome("GET", input, eof);
            let e = end.expect_err("an error");
            assert!(e.to_string().contains(expect), "{input:?}: {e}");
        }
    }

    #[test]
    fn everything_buffered_is_bounded() {
        let small = ClientLimits {
            max_head_bytes: 64,
            max_headers: 2,
            max_chunk_line: 8,
            max_trailer_bytes: 16,
        };
        let mut long_head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long_head.extend_from_slice(&[b'a'; 100]);
        let mut s = session("GET", small.clone());
        let e = s.handle_input(&long_head).expect_err("too large");
        assert!(
            matches!(e, ClientError::HeadTooLarge { limit: 64, .. }),
            "{e}"
        );
        assert_eq!(s.handle_input(b"\r\n\r\n"), Err(e), "errors are final");

        let mut s = session("GET", small.clone());
        let e = s
            .handle_input(b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
            .expect_err("too many");
        assert!(
            matches!(e, ClientError::TooManyHeaders { limit: 2, .. }),
            "{e}"
        );

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut s = session("GET", small.clone());
        s.handle_input(chunked).expect("head");
        let e = s.handle_input(b"1;aaaaaaaaaaaaa").expect_err("long line");
        assert!(e.to_string().contains("line too long"), "{e}");

        let mut s = session("GET", small.clone());
        s.handle_input(chunked).expect("head");
        s.handle_input(b"0\r\nX: 1234567890\r\n").expect("within");
        let e = s.handle_input(b"Y: 1\r\n").expect_err("trailers");
        assert!(
            matches!(e, ClientError::TrailersTooLarge { limit: 16, .. }),
            "{e}"
        );

        // An error past the limit is the limit, however the bytes arrive (found by fuzzing).
        let mut late_error = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        late_error.extend_from_slice(&[b'a'; 50]);
        late_error.extend_from_slice(b"\r\nBad Name: 1\r\n\r\n");
        let whole = run(&mut session("GET", small.clone()), [&late_error[..]], false);
        let bytewise = run(
            &mut session("GET", small.clone()),
            late_error.chunks(1),
            false,
        );
        assert!(
            matches!(whole.2, Err(ClientError::HeadTooLarge { .. })),
            "{whole:?}"
        );
        assert_eq!(bytewise, whole);

        let mut c = ResponseCollector::new(4);
        assert_eq!(
            c.push(ClientEvent::Body(Bytes::from_static(b"abc"))),
            Ok(None)
        );
        assert_eq!(
            c.push(ClientEvent::Body(Bytes::from_static(b"de"))),
            Err(ClientError::BodyTooLarge { limit: 4 })
        );
    }

    #[test]
    fn the_collector_gives_the_whole_response() {
        let mut s = session("GET", ClientLimits::default());
        s.handle_input(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n")
            .expect("valid");
        let mut c = ResponseCollector::new(16);
        let mut got = None;
        while let Some(e) = s.poll_event() {
            if let Some(r) = c.push(e).expect("within the limit") {
                got = Some(r);
            }
        }
        let r = got.expect("complete");
        assert_eq!((r.head.status, &r.body[..]), (201, &b"abc"[..]));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap sweep here; the fuzz target `http_client` goes further.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            let mut input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.push(b"0123456789abcdef;\r\n xZ"[(x % 22) as usize]);
            }
            let mut s = session("GET", ClientLimits::default());
            for piece in input.chunks(3) {
                if s.handle_input(piece).is_err() {
                    break;
                }
            }
            let _ = s.handle_eof();
            while s.poll_event().is_some() {}
        }
    }
}
