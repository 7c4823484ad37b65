//! HTTP/1.x request heads and `Content-Length` bodies, read incrementally from one connection.

use bytes::{Buf, Bytes, BytesMut};

use super::{has_token, percent_decode, HttpError, HttpLimits};

/// The interim answer to `Expect: 100-continue`, see [`RequestReader::take_expect_continue`].
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One parsed HTTP request with its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent, e.g. `GET` (methods are case-sensitive).
    pub method: String,
    /// The percent-decoded path without the query, e.g. `/live/cam 1.flv`; `*` for
    /// `OPTIONS *`. Not yet checked for traversal: route with [`super::split_path`].
    pub path: String,
    /// The decoded query parameters in order (`+` decodes to a space).
    pub query: Vec<(String, String)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Header fields in order, names as sent (compare case-insensitively, or use
    /// [`Request::header`]); values with invalid UTF-8 replaced by U+FFFD.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; empty without one).
    pub body: Bytes,
}

impl Request {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether any header called `name` lists `token` in its comma-separated value
    /// (case-insensitive), as in `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && has_token(v, token))
    }

    /// The value of the first query parameter called `k` (case-sensitive).
    pub fn query_param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a WebSocket opening handshake: `GET` over HTTP/1.1 with
    /// `Upgrade: websocket` and `Connection: Upgrade`. Answer it with
    /// [`super::upgrade_response`], which checks the rest.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method == "GET"
            && self.version_minor >= 1
            && self.header_has_token("Upgrade", "websocket")
            && self.header_has_token("Connection", "upgrade")
    }

    /// Whether the client wants the connection kept open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("Connection", "close") {
            false
        } else if self.version_minor == 0 {
            self.header_has_token("Connection", "keep-alive")
        } else {
            true
        }
    }
}

/// Reads the requests of one connection from its bytes, in order (pipelined requests included).
///
/// Feed what the socket gives with [`push`](Self::push), then call
/// [`poll_request`](Self::poll_request) until it returns `Ok(None)` before pushing more. Bytes
/// after the last returned request stay buffered: get them with
/// [`take_remaining`](Self::take_remaining), e.g. the first frames after a WebSocket upgrade.
///
/// The head is bounded by [`HttpLimits::max_head_bytes`] and `max_headers`, the body by
/// `max_body_bytes`; only `Content-Length` bodies are accepted (a request with
/// `Transfer-Encoding` fails with [`HttpError::LengthRequired`]). An error is final: every later
/// call returns it again, and the caller answers with [`HttpError::response`] and closes.
///
/// A head is parsed once its blank line has arrived; before that, its complete lines are
/// test-parsed whenever a push brings a new line end, so a bad request line or header is refused
/// early (and the outcome does not depend on how the bytes were split), at a cost of at most one
/// parse per header line.
#[derive(Debug)]
pub struct RequestReader {
    limits: HttpLimits,
    buf: BytesMut,
    /// Connection offset of `buf[0]`.
    offset: u64,
    /// Progress of the search for the end of the head in `buf`.
    scan: HeadScan,
    /// A request whose head is parsed, waiting for this many body bytes.
    pending: Option<(Request, usize)>,
    /// The pending request asked for `100 Continue` and it has not been taken yet.
    expect_continue: bool,
    error: Option<HttpError>,
}

impl RequestReader {
    /// A reader for a new connection.
    pub fn new(limits: HttpLimits) -> Self {
        RequestReader {
            limits,
            buf: BytesMut::new(),
            offset: 0,
            scan: HeadScan::default(),
            pending: None,
            expect_continue: false,
            error: None,
        }
    }

    /// Buffers bytes read from the connection. Fails (for good) when more than one request of
    /// the largest allowed size (`max_head_bytes + max_body_bytes`) would be buffered, which
    /// does not happen while every push is followed by draining [`poll_request`](Self::poll_request)
    /// and reads are smaller than that.
    pub fn push(&mut self, data: &[u8]) -> Result<(), HttpError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let limit = self
            .limits
            .max_head_bytes
            .saturating_add(self.limits.max_body_bytes);
        let buffered = self.buf.len().saturating_add(data.len());
        if buffered > limit {
            return Err(self.fail(HttpError::BufferFull { buffered, limit }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete request, `Ok(None)` if more bytes are needed, or the error to answer
    /// with before closing.
    pub fn poll_request(&mut self) -> Result<Option<Request>, HttpError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.poll_inner() {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// True once after a request head with `Expect: 100-continue` was read while its body has
    /// not all arrived: the caller then writes [`CONTINUE_RESPONSE`] so the client sends the body.
    pub fn take_expect_continue(&mut self) -> bool {
        std::mem::take(&mut self.expect_continue)
    }

    /// The head of the request whose body is still awaited, if any: what a caller answering
    /// `Expect: 100-continue` ([`take_expect_continue`](Self::take_expect_continue)) decides on.
    pub fn pending_head(&self) -> Option<&Request> {
        self.pending.as_ref().map(|(req, _)| req)
    }

    /// Takes every buffered byte not yet returned as part of a request (after a WebSocket
    /// upgrade: the first frames). The reader then continues after them.
    pub fn take_remaining(&mut self) -> Bytes {
        let rest = self.buf.split().freeze();
        self.offset = self.offset.saturating_add(rest.len() as u64);
        self.scan = HeadScan::default();
        rest
    }

    fn fail(&mut self, e: HttpError) -> HttpError {
        self.error = Some(e.clone());
        e
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset = self.offset.saturating_add(n as u64);
    }

    fn poll_inner(&mut self) -> Result<Option<Request>, HttpError> {
        if let Some((_, body_len)) = &self.pending {
            let body_len = *body_len;
            if self.buf.len() < body_len {
                return Ok(None);
            }
            let Some((mut req, _)) = self.pending.take() else {
                return Ok(None);
            };
            req.body = self.buf.split_to(body_len).freeze();
            self.offset = self.offset.saturating_add(body_len as u64);
            self.expect_continue = false;
            return Ok(Some(req));
        }

        // RFC 9112 section 2.2: ignore empty lines before a request line.
        loop {
            let n = if self.buf.starts_with(b"\r\n") {
                2
            } else if self.buf.starts_with(b"\n") {
                1
            } else {
                break;
            };
            self.consume(n);
            // Nothing scanned yet starts with a line end, so nothing scanned is lost.
            self.scan = HeadScan::default();
        }

        let max = self.limits.max_head_bytes;
        let window = self.buf.len().min(max);
        let head_offset = self.offset;
        let head = self.buf.get(..window).unwrap_or_default();
        let parsed = if let Some(end) = self.scan.find_head_end(head) {
            match parse_head(
                head.get(..end).unwrap_or_default(),
                &self.limits,
                head_offset,
            )? {
                Some(p) => p,
                None => {
                    return Err(HttpError::Malformed {
                        offset: head_offset,
                        what: "head ends before it is complete",
                    })
                }
            }
        } else if self.buf.len() >= max {
            match parse_head(head, &self.limits, head_offset)? {
                Some(p) => p,
                None => {
                    return Err(HttpError::HeadTooLarge {
                        offset: head_offset,
                        limit: max,
                    })
                }
            }
        } else if let Some(lines_end) = self.scan.new_lines_end() {
            // Test-parse the complete lines so far: refuses a bad request line or header early,
            // and depends only on the bytes up to the last line end, not on how they arrived.
            match parse_head(
                head.get(..lines_end).unwrap_or_default(),
                &self.limits,
                head_offset,
            )? {
                Some(p) => p,
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };

        let (req, head_len, body_len) = parsed;
        self.consume(head_len);
        self.scan = HeadScan::default();
        if body_len == 0 {
            return Ok(Some(req));
        }
        self.expect_continue = req.version_minor >= 1
            && req
                .header("Expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        self.pending = Some((req, body_len));
        let out = self.poll_inner();
        if !matches!(out, Ok(None)) {
            self.expect_continue = false;
        }
        out
    }
}

/// Incremental search of a buffered head for its end and its line ends.
#[derive(Debug, Default)]
struct HeadScan {
    /// Bytes at the start of the buffer already searched.
    scanned: usize,
    /// Position of the last `\n` found.
    last_nl: Option<usize>,
    /// `last_nl` when the complete lines were last test-parsed.
    parsed_nl: Option<usize>,
}

impl HeadScan {
    /// Finds the end (exclusive) of the blank line that ends a head, resuming the search where
    /// the last call stopped.
    fn find_head_end(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = self.scanned;
        while let Some(pos) = buf
            .get(i..)
            .and_then(|s| s.iter().position(|&b| b == b'\n'))
        {
            let nl = i + pos;
            self.last_nl = Some(nl);
            match (buf.get(nl + 1), buf.get(nl + 2)) {
                (Some(b'\n'), _) => return Some(nl + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = nl;
                    return None;
                }
                _ => i = nl + 1,
            }
        }
        self.scanned = buf.len();
        None
    }

    /// The end of the complete lines found since the last call, if there are new ones.
    fn new_lines_end(&mut self) -> Option<usize> {
        if self.last_nl == self.parsed_nl {
            return None;
        }
        self.parsed_nl = self.last_nl;
        self.last_nl.map(|nl| nl + 1)
    }
}

/// Parses a head with httparse into a request, its head length and its body length;
/// `Ok(None)` if the head is not complete yet.
fn parse_head(
    head: &[u8],
    limits: &HttpLimits,
    offset: u64,
) -> Result<Option<(Request, usize, usize)>, HttpError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders {
                offset,
                limit: limits.max_headers,
            })
        }
        Err(e) => {
            return Err(HttpError::Malformed {
                offset,
                what: httparse_what(e),
            })
        }
    };
    let malformed = |what| HttpError::Malformed { offset, what };
    let method = parsed.method.ok_or(malformed("no method"))?.to_owned();
    let target = parsed.path.ok_or(malformed("no request target"))?;
    let version_minor = parsed.version.ok_or(malformed("no version"))?;
    let (path, query) =
        decode_target(target).map_err(|what| HttpError::BadTarget { offset, what })?;
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();

    let mut content_length: Option<u64> = None;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case("expect") && !value.eq_ignore_ascii_case("100-continue") {
            return Err(HttpError::ExpectationFailed { offset });
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::LengthRequired { offset });
        }
        if name.eq_ignore_ascii_case("content-length") {
            // A list of identical values is allowed (RFC 9110 section 8.6).
            for item in value.split(',') {
                let n = parse_decimal(item.trim()).ok_or(HttpError::BadContentLength { offset })?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HttpError::BadContentLength { offset });
                }
                content_length = Some(n);
            }
        }
    }
    let length = content_length.unwrap_or(0);
    let body_len = usize::try_from(length)
        .ok()
        .filter(|&n| n <= limits.max_body_bytes)
        .ok_or(HttpError::BodyTooLarge {
            offset,
            length,
            limit: limits.max_body_bytes,
        })?;

    let req = Request {
        method,
        path,
        query,
        version_minor,
        headers,
        body: Bytes::new(),
    };
    Ok(Some((req, head_len, body_len)))
}

pub(super) fn httparse_what(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid or unsupported HTTP version",
    }
}

/// A non-empty run of ASCII digits as a number, `None` on anything else or overflow.
pub(super) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Decoded query parameters in order.
type Query = Vec<(String, String)>;

/// Splits a request target into its decoded path and query. Accepts origin form (`/p?q`),
/// absolute form (`http://host/p?q`, RFC 9112 section 3.2.2) and `*`.
fn decode_target(target: &str) -> Result<(String, Query), &'static str> {
    // A fragment is never sent on the wire; ignore one if a client does.
    let target = target.split('#').next().unwrap_or_default();
    if target == "*" {
        return Ok(("*".to_owned(), Vec::new()));
    }
    let origin_form = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let after_scheme = if lower.starts_with("http://") {
            target.get(7..)
        } else if lower.starts_with("https://") {
            target.get(8..)
        } else {
            None
        }
        .ok_or("request target is not a path")?;
        match after_scheme.find(['/', '?']) {
            Some(i) => after_scheme.get(i..).unwrap_or("/"),
            None => "/",
        }
    };
    let (raw_path, raw_query) = match origin_form.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin_form, None),
    };
    let path = if raw_path.is_empty() {
        "/".to_owned()
    } else {
        percent_decode(raw_path, false)?
    };
    Ok((path, decode_query(raw_query.unwrap_or(""))?))
}

/// Decodes a query string (the part after `?`, without it) into its parameters in order:
/// `a=1&b&c=x+y%21` gives `a`=`1`, `b`=``, `c`=`x y!`. Also used for the queries of RTMP
/// stream names and RTSP URLs. Errs on a bad percent escape or one that decodes to non-UTF-8.
pub fn decode_query(raw: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut query = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((percent_decode(k, true)?, percent_decode(v, true)?));
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reader() -> RequestReader {
        RequestReader::new(HttpLimits::default())
    }

    /// Pushes `chunks` one by one, draining after each push; returns the requests and the
    /// error, if any.
    fn feed<'a>(
        limits: &HttpLimits,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Request>, Option<HttpError>) {
        let mut r = RequestReader::new(limits.clone());
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = r.push(c) {
                return (out, Some(e));
            }
            loop {
                match r.poll_request() {
                    Ok(Some(req)) => out.push(req),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    const PIPELINE: &[u8] = b"GET /live/cam.flv?token=a%20b&x=1+2&flag HTTP/1.1\r\nHost: h\r\n\r\n\
POST /api/kick HTTP/1.1\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello\
GET http://example.com/a%2Fb HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
OPTIONS * HTTP/1.1\n\n";

    #[test]
    fn parses_pipelined_requests() {
        let (reqs, err) = feed(&HttpLimits::default(), [PIPELINE]);
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 4);
        let a = &reqs[0];
        assert_eq!(a.method, "GET");
        assert_eq!(a.path, "/live/cam.flv");
        assert_eq!(a.query_param("token"), Some("a b"));
        assert_eq!(a.query_param("x"), Some("1 2"));
        assert_eq!(a.query_param("flag"), Some(""));
        assert_eq!(a.query_param("nope"), None);
        assert_eq!(a.header("HOST"), Some("h"));
        assert_eq!(a.version_minor, 1);
        assert!(a.keep_alive());
        assert!(a.body.is_empty());
        let b = &reqs[1];
        assert_eq!(b.method, "POST");
        assert_eq!(&b.body[..], b"hello");
        let c = &reqs[2];
        assert_eq!(c.path, "/a/b");
        assert_eq!(c.version_minor, 0);
        assert!(c.keep_alive());
        assert_eq!(reqs[3].method, "OPTIONS");
        assert_eq!(reqs[3].path, "*");
    }

    #[test]
    fn split_at_every_byte_gives_the_same_requests() {
        let (whole, _) = feed(&HttpLimits::default(), [PIPELINE]);
        for cut in 0..=PIPELINE.len() {
            let (a, b) = PIPELINE.split_at(cut);
            let (reqs, err) = feed(&HttpLimits::default(), [a, b]);
            assert_eq!(err, None, "cut {cut}");
            assert_eq!(reqs, whole, "cut {cut}");
        }
        let (reqs, err) = feed(&HttpLimits::default(), PIPELINE.chunks(1));
        assert_eq!(err, None);
        assert_eq!(reqs, whole);
    }

    #[test]
    fn remaining_bytes_stay_buffered() {
        let mut r = reader();
        r.push(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x80")
            .unwrap();
        let req = r.poll_request().unwrap().unwrap();
        assert!(req.is_websocket_upgrade());
        assert_eq!(&r.take_remaining()[..], b"\x81\x80");
        assert_eq!(r.poll_request().unwrap(), None);
    }

    #[test]
    fn leading_empty_lines_are_ignored() {
        let (reqs, err) = feed(
            &HttpLimits::default(),
            [&b"\r\n\n\r\nGET / HTTP/1.1\r\n\r\n"[..]],
        );
        assert_eq!(err, None);
        assert_eq!(reqs[0].path, "/");
    }

    #[test]
    fn oversize_head_is_refused() {
        let limits = HttpLimits::default();
        let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        head.resize(limits.max_head_bytes + 10, b'a');
        let (_, err) = feed(&limits, head.chunks(100));
        let err = err.unwrap();
        assert_eq!(
            err,
            HttpError::HeadTooLarge {
                offset: 0,
                limit: 8192
            }
        );
        assert_eq!(err.status(), 431);

        // A head that fits exactly is fine.
        let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        head.resize(limits.max_head_bytes - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        let (reqs, err) = feed(&limits, head.chunks(100));
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 1);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = HttpLimits::default();
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=limits.max_headers {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let (_, err) = feed(&limits, [&head[..]]);
        let err = err.unwrap();
        assert!(matches!(err, HttpError::TooManyHeaders { limit: 64, .. }));
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn bad_request_lines_are_400() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            // A TLS ClientHello start: refused at its first line end.
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
        ] {
            let (reqs, err) = feed(&HttpLimits::default(), [bad]);
            assert!(reqs.is_empty());
            let err = err.unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(err.status(), 400, "{bad:?}");
            assert!(err
                .to_string()
                .starts_with("http: malformed request head at offset 0"));
        }
    }

    #[test]
    fn garbage_without_line_end_waits_until_the_head_limit() {
        let limits = HttpLimits {
            max_head_bytes: 32,
            ..HttpLimits::default()
        };
        let mut r = RequestReader::new(limits);
        r.push(&[0x16; 31]).unwrap();
        assert_eq!(r.poll_request(), Ok(None));
        r.push(&[0x16]).unwrap();
        assert!(matches!(
            r.poll_request(),
            Err(HttpError::Malformed { offset: 0, .. })
        ));
    }

    #[test]
    fn error_offsets_count_from_connection_start() {
        let input = b"GET / HTTP/1.1\r\n\r\nBAD REQUEST\r\n\r\n";
        let (reqs, err) = feed(&HttpLimits::default(), [&input[..]]);
        assert_eq!(reqs.len(), 1);
        assert!(matches!(err, Some(HttpError::Malformed { offset: 18, .. })));
    }

    #[test]
    fn errors_are_final() {
        let mut r = reader();
        r.push(b"GET / HTTP/9.9\r\n\r\n").unwrap();
        let e = r.poll_request().unwrap_err();
        assert_eq!(r.poll_request().unwrap_err(), e);
        assert_eq!(r.push(b"x").unwrap_err(), e);
    }

    #[test]
    fn bad_targets_are_400() {
        for target in [
            "/a%00b",
            "/a%ff",
            "/a%2",
            "/?q=%zz",
            "example.com:80",
            "ftp://x/",
        ] {
            let input = format!("GET {target} HTTP/1.1\r\n\r\n");
            let (_, err) = feed(&HttpLimits::default(), [input.as_bytes()]);
            let err = err.unwrap();
            assert!(
                matches!(err, HttpError::BadTarget { .. }),
                "{target}: {err}"
            );
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn absolute_form_targets() {
        let (reqs, _) = feed(
            &HttpLimits::default(),
            [&b"GET HTTP://h:8080?a=1 HTTP/1.1\r\n\r\nGET https://h HTTP/1.1\r\n\r\n"[..]],
        );
        assert_eq!(reqs[0].path, "/");
        assert_eq!(reqs[0].query_param("a"), Some("1"));
        assert_eq!(reqs[1].path, "/");
    }

    #[test]
    fn bodies_are_bounded_and_content_length_checked() {
        let limits = HttpLimits {
            max_body_bytes: 10,
            ..HttpLimits::default()
        };
        let (_, err) = feed(
            &limits,
            [&b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"[..]],
        );
        let err = err.unwrap();
        assert_eq!(
            err,
            HttpError::BodyTooLarge {
                offset: 0,
                length: 11,
                limit: 10
            }
        );
        assert_eq!(err.status(), 413);
        for cl in ["-1", "", "1 2", "0x5", "5, 6", "99999999999999999999999"] {
            let input = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            let (_, err) = feed(&limits, [input.as_bytes()]);
            assert!(
                matches!(
                    err,
                    Some(HttpError::BadContentLength { .. } | HttpError::BodyTooLarge { .. })
                ),
                "{cl}"
            );
        }
        let (reqs, err) = feed(
            &limits,
            [&b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc"[..]],
        );
        assert_eq!(err, None);
        assert_eq!(&reqs[0].body[..], b"abc");
    }

    #[test]
    fn chunked_request_bodies_are_refused_with_411() {
        let (_, err) = feed(
            &HttpLimits::default(),
            [&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..]],
        );
        assert_eq!(err.unwrap().status(), 411);
    }

    #[test]
    fn buffer_is_bounded() {
        let limits = HttpLimits {
            max_head_bytes: 100,
            max_body_bytes: 100,
            ..HttpLimits::default()
        };
        let mut r = RequestReader::new(limits);
        r.push(&[b'\n'; 200]).unwrap();
        assert!(matches!(
            r.push(b"x"),
            Err(HttpError::BufferFull {
                buffered: 201,
                limit: 200
            })
        ));
    }

    #[test]
    fn expect_continue_is_signalled_once() {
        let mut r = reader();
        r.push(b"POST /api HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .unwrap();
        assert_eq!(r.poll_request().unwrap(), None);
        assert!(r.take_expect_continue());
        assert!(!r.take_expect_continue());
        r.push(b"ok").unwrap();
        assert_eq!(&r.poll_request().unwrap().unwrap().body[..], b"ok");

        // Body already there: no 100 Continue needed.
        r.push(b"POST /api HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        assert!(r.poll_request().unwrap().is_some());
        assert!(!r.take_expect_continue());
    }

    #[test]
    fn the_head_awaiting_its_body_is_visible_and_other_expectations_are_417() {
        let mut r = reader();
        r.push(b"POST /api HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
            .unwrap();
        assert_eq!(r.poll_request().unwrap(), None);
        assert_eq!(r.pending_head().map(|h| h.path.as_str()), Some("/api"));
        r.push(b"ok").unwrap();
        assert!(r.poll_request().unwrap().is_some());
        assert_eq!(r.pending_head(), None);

        let (_, err) = feed(
            &HttpLimits::default(),
            [&b"POST / HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 1\r\n\r\n"[..]],
        );
        assert_eq!(err.unwrap().status(), 417);
    }

    #[test]
    fn keep_alive_rules() {
        let parse = |s: &str| feed(&HttpLimits::default(), [s.as_bytes()]).0.remove(0);
        assert!(parse("GET / HTTP/1.1\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(
            !parse("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
                .is_websocket_upgrade()
        );
        assert!(
            parse("GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n\r\n")
                .is_websocket_upgrade()
        );
    }

    /// Runs `input` cut at `cuts` and returns what came out, errors compared by value.
    fn run_split(
        limits: &HttpLimits,
        input: &[u8],
        cuts: &[usize],
    ) -> (Vec<Request>, Option<HttpError>) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for p in points.into_iter().chain([input.len()]) {
            chunks.push(&input[prev..p]);
            prev = p;
        }
        feed(limits, chunks)
    }

    fn request_strategy() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            Just(b"GET /live/a.flv HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            Just(b"POST /api?x=%41 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody".to_vec()),
            Just(b"\r\nGET / HTTP/1.0\n\n".to_vec()),
            Just(b"GET /%ff HTTP/1.1\r\n\r\n".to_vec()),
            Just(b"OPTIONS * HTTP/1.1\r\nA: b\r\nC: d\r\nE: f\r\n\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), Just(b' ')],
                0..20
            ),
        ];
        proptest::collection::vec(line, 0..6).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn request_reader_is_split_invariant(
            input in request_strategy(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            small in any::<bool>(),
        ) {
            let limits = if small {
                HttpLimits { max_head_bytes: 48, max_headers: 2, max_body_bytes: 3 }
            } else {
                HttpLimits::default()
            };
            let whole = feed(&limits, [&input[..]]);
            let split = run_split(&limits, &input, &cuts);
            let bytewise = feed(&limits, input.chunks(1));
            // `BufferFull` depends on how much one push brings, not on the content: a run that
            // hit it must agree with the others up to there.
            for (a, b) in [(&whole, &split), (&split, &bytewise), (&whole, &bytewise)] {
                let full = |r: &(Vec<Request>, Option<HttpError>)| {
                    matches!(r.1, Some(HttpError::BufferFull { .. }))
                };
                if full(a) || full(b) {
                    let n = a.0.len().min(b.0.len());
                    prop_assert_eq!(&a.0[..n], &b.0[..n]);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
