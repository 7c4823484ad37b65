//! HTTP/1.x server side and WebSocket (RFC 6455) server frames, sans-IO, and an HTTP/1.1
//! client ([`client`]) for outbound requests.
//!
//! - [`RequestReader`] turns the bytes of one connection into [`Request`]s (pipelining, bounded
//!   heads and bodies, `Content-Length` bodies only);
//! - [`Response`] encodes complete answers (API, playlists, errors) and
//!   [`streaming_response_head`] / [`write_chunk_header`] start endless bodies (HTTP-FLV, HTTP-TS);
//! - [`router`] looks requests up in a table of routes (method set and path pattern);
//! - [`websocket`] answers the upgrade, writes unmasked server frames and reads masked client
//!   frames with [`WsReader`].
//!
//! Every response carries permissive CORS headers (`Access-Control-Allow-Origin: *`) so that
//! browser players on other origins can use the streams.

use std::fmt;

pub mod client;
mod request;
mod response;
pub mod router;
pub mod websocket;

pub use request::{decode_query, Request, RequestReader, CONTINUE_RESPONSE};
pub use response::{
    cors_preflight_response, reason_phrase, streaming_head_only, streaming_response_head,
    write_chunk_header, write_last_chunk, Response,
};
pub use websocket::{
    accept_key, close_frame, upgrade_response, write_frame, write_frame_header, Opcode, WsError,
    WsFrame, WsReader,
};

/// Bounds on what one HTTP client may make the server buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request head (request line and headers, with the blank line) in bytes.
    pub max_head_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// Largest request body (`Content-Length`) in bytes, for the POST API.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head_bytes: 8192,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Why a request could not be read or answered. [`HttpError::status`] gives the status code to
/// answer with (and [`HttpError::response`] a ready response) before closing the connection.
///
/// Offsets count bytes from the start of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request head did not end within `limit` bytes.
    HeadTooLarge {
        /// Offset where the head starts.
        offset: u64,
        /// The configured `max_head_bytes`.
        limit: usize,
    },
    /// The request has more header fields than `max_headers`.
    TooManyHeaders {
        /// Offset where the head starts.
        offset: u64,
        /// The configured `max_headers`.
        limit: usize,
    },
    /// The request head is not valid HTTP/1.x.
    Malformed {
        /// Offset where the head starts.
        offset: u64,
        /// What was wrong, e.g. "invalid header name".
        what: &'static str,
    },
    /// The request target (path or query) cannot be decoded.
    BadTarget {
        /// Offset where the head starts.
        offset: u64,
        /// What was wrong, e.g. "invalid percent escape".
        what: &'static str,
    },
    /// `Content-Length` is not a single decimal number.
    BadContentLength {
        /// Offset where the head starts.
        offset: u64,
    },
    /// The declared body is larger than `max_body_bytes`.
    BodyTooLarge {
        /// Offset where the head starts.
        offset: u64,
        /// The declared `Content-Length`.
        length: u64,
        /// The configured `max_body_bytes`.
        limit: usize,
    },
    /// The request uses `Transfer-Encoding` (chunked bodies are not accepted): send a
    /// `Content-Length` instead.
    LengthRequired {
        /// Offset where the head starts.
        offset: u64,
    },
    /// The request has an `Expect` other than `100-continue` (RFC 9110 section 10.1.1).
    ExpectationFailed {
        /// Offset where the head starts.
        offset: u64,
    },
    /// The peer sent more bytes than one request of the largest allowed size without them being
    /// consumed by [`RequestReader::poll_request`].
    BufferFull {
        /// Bytes that would be buffered.
        buffered: usize,
        /// `max_head_bytes + max_body_bytes`.
        limit: usize,
    },
    /// A path handed to [`split_path`] is not acceptable.
    BadPath {
        /// What was wrong, e.g. "'..' segment".
        what: &'static str,
    },
    /// A WebSocket upgrade request is incomplete or invalid.
    BadUpgrade {
        /// The offending header or condition.
        what: &'static str,
    },
    /// A WebSocket upgrade asked for a protocol version other than 13.
    WebSocketVersion,
}

impl HttpError {
    /// The HTTP status code to answer with: 431, 400, 413, 411, 426...
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::Malformed { .. }
            | HttpError::BadTarget { .. }
            | HttpError::BadContentLength { .. }
            | HttpError::BadPath { .. }
            | HttpError::BadUpgrade { .. } => 400,
            HttpError::BodyTooLarge { .. } | HttpError::BufferFull { .. } => 413,
            HttpError::LengthRequired { .. } => 411,
            HttpError::ExpectationFailed { .. } => 417,
            HttpError::WebSocketVersion => 426,
        }
    }

    /// A complete error response: the status, the message as plain text, `Connection: close`,
    /// and `Sec-WebSocket-Version: 13` for a version mismatch (RFC 6455 section 4.4).
    pub fn response(&self) -> Response {
        let r = Response::text(self.status(), format!("{self}\n")).header("Connection", "close");
        match self {
            HttpError::WebSocketVersion => r.header("Sec-WebSocket-Version", "13"),
            _ => r,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge { offset, limit } => write!(
                f,
                "http: request head at offset {offset} exceeds {limit} bytes"
            ),
            HttpError::TooManyHeaders { offset, limit } => write!(
                f,
                "http: request head at offset {offset} has more than {limit} headers"
            ),
            HttpError::Malformed { offset, what } => {
                write!(f, "http: malformed request head at offset {offset}: {what}")
            }
            HttpError::BadTarget { offset, what } => write!(
                f,
                "http: bad request target in head at offset {offset}: {what}"
            ),
            HttpError::BadContentLength { offset } => write!(
                f,
                "http: invalid Content-Length in head at offset {offset}"
            ),
            HttpError::BodyTooLarge {
                offset,
                length,
                limit,
            } => write!(
                f,
                "http: Content-Length {length} in head at offset {offset} exceeds {limit} bytes"
            ),
            HttpError::LengthRequired { offset } => write!(
                f,
                "http: Transfer-Encoding in head at offset {offset} is not supported, send Content-Length"
            ),
            HttpError::ExpectationFailed { offset } => write!(
                f,
                "http: Expect in head at offset {offset} is not 100-continue"
            ),
            HttpError::BufferFull { buffered, limit } => write!(
                f,
                "http: {buffered} unread bytes buffered, more than {limit}"
            ),
            HttpError::BadPath { what } => write!(f, "http: bad path: {what}"),
            HttpError::BadUpgrade { what } => {
                write!(f, "http: bad WebSocket upgrade: {what}")
            }
            HttpError::WebSocketVersion => {
                write!(f, "http: unsupported Sec-WebSocket-Version (only 13)")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// Splits a decoded request path (as in [`Request::path`]) into its segments for routing:
/// `"/live/cam.flv"` gives `["live", "cam.flv"]` and `"/"` gives `[]`.
///
/// Refuses (with [`HttpError::BadPath`], status 400) a path that does not start with `/`, and any
/// empty, `.` or `..` segment (so also `//` and a trailing `/`), NUL, control characters and
/// backslashes, so that segments are safe to use as file names under a root directory.
pub fn split_path(path: &str) -> Result<Vec<&str>, HttpError> {
    let rest = path.strip_prefix('/').ok_or(HttpError::BadPath {
        what: "does not start with '/'",
    })?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|seg| match seg {
            "" => Err(HttpError::BadPath {
                what: "empty segment",
            }),
            "." | ".." => Err(HttpError::BadPath {
                what: "'.' or '..' segment",
            }),
            _ if seg.chars().any(char::is_control) => Err(HttpError::BadPath {
                what: "control character",
            }),
            _ if seg.contains('\\') => Err(HttpError::BadPath { what: "backslash" }),
            _ => Ok(seg),
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`), refusing a broken escape,
/// invalid UTF-8 and NUL.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&c| hex_value(c));
                let lo = bytes.get(i + 2).and_then(|&c| hex_value(c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err("invalid percent escape"),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    if out.contains(&0) {
        return Err("NUL byte");
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8")
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether the comma-separated header `value` lists `token` (case-insensitive), as in
/// `Connection: keep-alive, Upgrade`.
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_accepts_plain_paths() {
        assert_eq!(split_path("/").unwrap(), Vec::<&str>::new());
        assert_eq!(
            split_path("/live/cam 1.flv").unwrap(),
            vec!["live", "cam 1.flv"]
        );
        assert_eq!(split_path("/a/..b/c.").unwrap(), vec!["a", "..b", "c."]);
    }

    #[test]
    fn split_path_refuses_traversal_and_junk() {
        for p in [
            "",
            "live",
            "/live/",
            "//x",
            "/a//b",
            "/.",
            "/a/./b",
            "/..",
            "/a/../b",
            "/a\0b",
            "/a\nb",
            "/a\x7fb",
            "/a\\..\\b",
            "/\u{85}",
        ] {
            let e = split_path(p).unwrap_err();
            assert_eq!(e.status(), 400, "{p:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b%2Fc", false).unwrap(), "/a b/c");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("%C3%A9", false).unwrap(), "é");
        assert_eq!(percent_decode("%", false), Err("invalid percent escape"));
        assert_eq!(percent_decode("%4", false), Err("invalid percent escape"));
        assert_eq!(percent_decode("%zz", false), Err("invalid percent escape"));
        assert_eq!(percent_decode("%00", false), Err("NUL byte"));
        assert_eq!(percent_decode("%C3", false), Err("invalid UTF-8"));
    }

    #[test]
    fn tokens() {
        assert!(has_token("keep-alive, Upgrade", "upgrade"));
        assert!(!has_token("upgrades", "upgrade"));
    }

    #[test]
    fn error_statuses_and_messages() {
        let e = HttpError::HeadTooLarge {
            offset: 10,
            limit: 8192,
        };
        assert_eq!(e.status(), 431);
        assert_eq!(
            e.to_string(),
            "http: request head at offset 10 exceeds 8192 bytes"
        );
        assert_eq!(HttpError::LengthRequired { offset: 0 }.status(), 411);
        let r = HttpError::WebSocketVersion.response();
        assert_eq!(r.status, 426);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "Sec-WebSocket-Version" && v == "13"));
    }
}
