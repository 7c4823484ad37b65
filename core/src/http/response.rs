//! HTTP/1.1 responses: complete ones with a `Content-Length`, and heads of endless streams.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

/// Methods announced to browsers in CORS headers.
const CORS_METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
/// Request headers browsers may send cross-origin.
const CORS_HEADERS: &str = "Content-Type, Authorization, Range, X-Requested-With";

/// A complete response (API answer, playlist, segment, error).
///
/// [`encode`](Self::encode) adds `Content-Length`, `Server: rill` and CORS headers (unless the
/// same header was set explicitly); `Content-Length` and `Transfer-Encoding` set by hand are
/// ignored because the encoder owns the framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Extra header fields in order.
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// The body, sent after the head.
    pub body: Bytes,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header field (names and values with CR, LF or NUL have those replaced by spaces
    /// when encoded, so a value taken from a request cannot split the response).
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body and its `Content-Type`, replacing an earlier one.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        self.headers
            .push((Cow::Borrowed("Content-Type"), content_type.to_owned()));
        self.body = body.into();
        self
    }

    /// A response with an `application/json` body.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Response::new(status).body("application/json", body)
    }

    /// A response with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Response::new(status).body("text/plain; charset=utf-8", body)
    }

    /// Writes the status line and headers only, as for a `HEAD` request (the `Content-Length`
    /// still gives the body's length).
    pub fn encode_head(&self, out: &mut BytesMut) {
        status_line(self.status, out);
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("content-length")
                || k.eq_ignore_ascii_case("transfer-encoding")
            {
                continue;
            }
            put_header(out, k, v);
        }
        if !has("server") {
            put_header(out, "Server", "rill");
        }
        if !has("access-control-allow-origin") {
            cors_headers(out);
        }
        if has_body(self.status) {
            // Writing to a BytesMut cannot fail.
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.put_slice(b"\r\n");
    }

    /// Writes the whole response: [`encode_head`](Self::encode_head) then the body (none for
    /// 1xx, 204 and 304, which cannot have one).
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_head(out);
        if has_body(self.status) {
            out.put_slice(&self.body);
        }
    }
}

/// Whether responses with this status carry a body (RFC 9110 section 6.4.1).
fn has_body(status: u16) -> bool {
    !(100..200).contains(&status) && status != 204 && status != 304
}

fn status_line(status: u16, out: &mut BytesMut) {
    // Writing to a BytesMut cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
}

/// Writes `name: value\r\n`, replacing CR, LF and NUL with spaces.
fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    let clean = |b: u8| match b {
        b'\r' | b'\n' | 0 => b' ',
        b => b,
    };
    out.reserve(name.len() + value.len() + 4);
    out.extend(name.bytes().map(clean));
    out.put_slice(b": ");
    out.extend(value.bytes().map(clean));
    out.put_slice(b"\r\n");
}

/// Permissive CORS for browser players on any origin. Credentials are not allowed: the Fetch
/// standard forbids `Access-Control-Allow-Credentials: true` together with origin `*`.
fn cors_headers(out: &mut BytesMut) {
    put_header(out, "Access-Control-Allow-Origin", "*");
    put_header(out, "Access-Control-Allow-Methods", CORS_METHODS);
    put_header(out, "Access-Control-Allow-Headers", CORS_HEADERS);
}

/// The head of an endless `200 OK` stream (HTTP-FLV, HTTP-TS): no `Content-Length`,
/// `Connection: close` (the end of the stream is the end of the connection, which suits
/// HTTP/1.0 and HTTP/1.1 clients alike), `Cache-Control: no-cache`, CORS, and
/// `Transfer-Encoding: chunked` if `chunked` (HTTP/1.1 clients only; then frame each piece with
/// [`write_chunk_header`]).
pub fn streaming_response_head(content_type: &str, chunked: bool, out: &mut BytesMut) {
    stream_head(content_type, true, chunked, out);
}

/// The answer to a `HEAD` request for an endless stream: the head a `GET` would start with
/// ([`streaming_response_head`], unchunked), but without `Connection: close` when the
/// connection stays open, since no body follows.
pub fn streaming_head_only(content_type: &str, keep_alive: bool, out: &mut BytesMut) {
    stream_head(content_type, !keep_alive, false, out);
}

fn stream_head(content_type: &str, close: bool, chunked: bool, out: &mut BytesMut) {
    status_line(200, out);
    put_header(out, "Server", "rill");
    put_header(out, "Content-Type", content_type);
    if close {
        put_header(out, "Connection", "close");
    }
    put_header(out, "Cache-Control", "no-cache");
    cors_headers(out);
    if chunked {
        put_header(out, "Transfer-Encoding", "chunked");
    }
    out.put_slice(b"\r\n");
}

/// Writes the size line of one chunk of a chunked body: `{len:x}\r\n`. The caller appends the
/// `len` data bytes and then `\r\n`. A zero `len` would end the body: use [`write_last_chunk`].
pub fn write_chunk_header(len: usize, out: &mut BytesMut) {
    // Writing to a BytesMut cannot fail.
    let _ = write!(out, "{len:x}\r\n");
}

/// Writes the last chunk (`0\r\n\r\n`), ending a chunked body.
pub fn write_last_chunk(out: &mut BytesMut) {
    out.put_slice(b"0\r\n\r\n");
}

/// The answer to a CORS preflight (`OPTIONS`): 204 with the allowed methods and headers,
/// cacheable by the browser for a day.
pub fn cors_preflight_response() -> Response {
    Response::new(204).header("Access-Control-Max-Age", "86400")
}

/// The reason phrase for a status code, empty for codes without a common one.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(r: &Response) -> String {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn json_response() {
        let s = encoded(&Response::json(200, r#"{"ok":true}"#).header("X-Id", "7"));
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\n\
             Content-Type: application/json\r\n\
             X-Id: 7\r\n\
             Server: rill\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Access-Control-Allow-Methods: GET, POST, PUT, DELETE, OPTIONS\r\n\
             Access-Control-Allow-Headers: Content-Type, Authorization, Range, X-Requested-With\r\n\
             Content-Length: 11\r\n\
             \r\n\
             {\"ok\":true}"
        );
    }

    #[test]
    fn framing_headers_are_owned_by_the_encoder() {
        let r = Response::text(404, "nope")
            .header("content-length", "999")
            .header("Transfer-Encoding", "chunked")
            .header("Server", "other")
            .header("Access-Control-Allow-Origin", "https://a.example");
        let s = encoded(&r);
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 4\r\n"));
        assert!(!s.contains("999") && !s.contains("chunked"));
        assert_eq!(s.matches("Server:").count(), 1);
        assert_eq!(s.matches("Access-Control-Allow-Origin").count(), 1);
        assert!(s.ends_with("\r\n\r\nnope"));
    }

    #[test]
    fn header_injection_is_neutralised() {
        let s = encoded(&Response::new(302).header("Location", "/x\r\nSet-Cookie: a=b"));
        assert!(s.contains("Location: /x  Set-Cookie: a=b\r\n"));
        assert!(!s.contains("\r\nSet-Cookie"));
    }

    #[test]
    fn no_body_statuses() {
        let s = encoded(&Response::new(204).body("text/plain", "ignored"));
        assert!(!s.contains("Content-Length"));
        assert!(s.ends_with("\r\n\r\n"));
        let mut head = BytesMut::new();
        Response::text(200, "four").encode_head(&mut head);
        assert!(head.ends_with(b"Content-Length: 4\r\n\r\n"));
    }

    #[test]
    fn body_replaces_content_type() {
        let r = Response::text(200, "a").body("video/mp2t", Bytes::from_static(b"ts"));
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].1, "video/mp2t");
    }

    #[test]
    fn preflight() {
        let s = encoded(&cors_preflight_response());
        assert!(s.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(s.contains("Access-Control-Max-Age: 86400\r\n"));
        assert!(s.contains("Access-Control-Allow-Methods: "));
    }

    #[test]
    fn streaming_head() {
        let mut out = BytesMut::new();
        streaming_response_head("video/x-flv", false, &mut out);
        let s = std::str::from_utf8(&out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Type: video/x-flv\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.contains("Cache-Control: no-cache\r\n"));
        assert!(s.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(!s.contains("Content-Length") && !s.contains("Transfer-Encoding"));
        assert!(s.ends_with("\r\n\r\n"));

        let mut out = BytesMut::new();
        streaming_response_head("video/mp2t", true, &mut out);
        assert!(out.ends_with(b"Transfer-Encoding: chunked\r\n\r\n"));
    }

    #[test]
    fn chunks() {
        let mut out = BytesMut::new();
        write_chunk_header(0x1a2b, &mut out);
        out.put_slice(b"..");
        write_last_chunk(&mut out);
        assert_eq!(&out[..], b"1a2b\r\n..0\r\n\r\n");
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        let s = encoded(&Response::new(599));
        assert!(s.starts_with("HTTP/1.1 599 \r\n"));
    }
}
