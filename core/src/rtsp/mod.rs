//! RTSP 1.0 (RFC 2326), sans-IO.
//!
//! - [`Reader`] turns the bytes of one TCP connection into [`Item`]s: requests and responses
//!   ([`Message`]) and interleaved `$` frames, mixed on one stream, with bounded line length,
//!   header count and body size;
//! - [`Request::write`] / [`Response::write`] / [`write_interleaved`] produce bytes to send;
//! - [`transport`] parses and writes `Transport` headers;
//! - [`auth`] handles `Authorization` / `WWW-Authenticate` for Basic and Digest (MD5).

use std::fmt;

pub mod auth;
pub mod client;
mod message;
pub mod server;
pub mod transport;

pub use message::{
    reason_phrase, write_interleaved, Headers, Item, Message, Reader, Request, Response,
    INTERLEAVED_HEADER_LEN,
};

/// Bounds on what one RTSP peer may make rill buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtspLimits {
    /// Longest line of a message head (request/status line or header), with its line end.
    pub max_line_bytes: usize,
    /// Most header lines in one message.
    pub max_headers: usize,
    /// Largest `Content-Length` accepted.
    pub max_body_bytes: usize,
}

impl Default for RtspLimits {
    fn default() -> Self {
        RtspLimits {
            max_line_bytes: 4096,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Errors of the RTSP layer. Offsets count bytes from the start of the connection.
/// [`RtspError::status`] gives the status code to answer with before closing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtspError {
    /// A line of a message head did not end within `limit` bytes.
    LineTooLong {
        /// Offset where the line starts.
        offset: u64,
        /// The configured `max_line_bytes`.
        limit: usize,
    },
    /// A message head has more than `limit` header lines.
    TooManyHeaders {
        /// Offset where the head starts.
        offset: u64,
        /// The configured `max_headers`.
        limit: usize,
    },
    /// A message head is not valid RTSP.
    Malformed {
        /// Offset of the offending line.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// `Content-Length` is not a decimal number.
    BadContentLength {
        /// Offset where the head starts.
        offset: u64,
    },
    /// The declared body is larger than `limit`.
    BodyTooLarge {
        /// Offset where the head starts.
        offset: u64,
        /// The declared length.
        length: u64,
        /// The configured `max_body_bytes`.
        limit: usize,
    },
    /// More unread bytes than the largest message or interleaved frame were pushed.
    BufferFull {
        /// Bytes that would be buffered.
        buffered: usize,
        /// The bound.
        limit: usize,
    },
    /// An interleaved frame payload longer than 65535 bytes was to be written.
    InterleavedTooLarge {
        /// Its length.
        length: usize,
    },
    /// A `Transport` header is not valid.
    BadTransport {
        /// What was wrong.
        what: &'static str,
    },
    /// An `Authorization` or `WWW-Authenticate` header is not valid.
    BadAuth {
        /// What was wrong.
        what: &'static str,
    },
}

impl RtspError {
    /// The status code to answer with: 400, 413 or 431 (and 461 for a bad transport).
    pub fn status(&self) -> u16 {
        match self {
            RtspError::LineTooLong { .. } | RtspError::TooManyHeaders { .. } => 431,
            RtspError::BodyTooLarge { .. } | RtspError::BufferFull { .. } => 413,
            RtspError::BadTransport { .. } => 461,
            _ => 400,
        }
    }
}

impl fmt::Display for RtspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtspError::LineTooLong { offset, limit } => {
                write!(f, "rtsp: line at offset {offset} exceeds {limit} bytes")
            }
            RtspError::TooManyHeaders { offset, limit } => write!(
                f,
                "rtsp: message head at offset {offset} has more than {limit} headers"
            ),
            RtspError::Malformed { offset, what } => {
                write!(f, "rtsp: malformed message at offset {offset}: {what}")
            }
            RtspError::BadContentLength { offset } => {
                write!(f, "rtsp: invalid Content-Length in head at offset {offset}")
            }
            RtspError::BodyTooLarge {
                offset,
                length,
                limit,
            } => write!(
                f,
                "rtsp: Content-Length {length} in head at offset {offset} exceeds {limit} bytes"
            ),
            RtspError::BufferFull { buffered, limit } => {
                write!(
                    f,
                    "rtsp: {buffered} unread bytes buffered, more than {limit}"
                )
            }
            RtspError::InterleavedTooLarge { length } => write!(
                f,
                "rtsp: interleaved payload of {length} bytes exceeds 65535"
            ),
            RtspError::BadTransport { what } => write!(f, "rtsp: bad Transport header: {what}"),
            RtspError::BadAuth { what } => write!(f, "rtsp: bad authentication header: {what}"),
        }
    }
}

impl std::error::Error for RtspError {}
