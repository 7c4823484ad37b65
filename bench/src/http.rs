//! The HTTP side of an HTTP-FLV player: the request, the response head and a chunked body
//! decoder. The body (after de-chunking) is an FLV stream for `rill_core::flv::FlvDemuxer`.

use std::fmt;

use crate::url::HttpUrl;

/// Largest response head accepted.
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 32;
/// Largest response (head and body) an HLS player buffers.
const MAX_RESPONSE: usize = 32 << 20;
/// Largest chunk size accepted in a chunked body.
const MAX_CHUNK_LEN: u64 = 64 * 1024 * 1024;
/// Longest chunk size line (digits and extensions).
const MAX_SIZE_LINE: usize = 1024;

/// Why an HTTP-FLV response was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The response head did not end within [`MAX_HEAD_LEN`] bytes.
    HeadTooLarge,
    /// The response head does not parse.
    BadHead {
        /// httparse's description.
        reason: String,
    },
    /// The status is not 200.
    Status {
        /// The status code.
        code: u16,
    },
    /// The chunked body is malformed.
    Chunked {
        /// What is wrong.
        what: &'static str,
        /// Offset in the body (after the head).
        offset: u64,
    },
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge => {
                write!(f, "http: response head exceeds {MAX_HEAD_LEN} bytes")
            }
            HttpError::BadHead { reason } => write!(f, "http: bad response head: {reason}"),
            HttpError::Status { code } => write!(f, "http: status {code}"),
            HttpError::Chunked { what, offset } => {
                write!(f, "http: chunked body: {what} at body offset {offset}")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// The `GET` request for `url`.
pub fn request(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rill-bench\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        url.path, url.host_header
    )
    .into_bytes()
}

/// What the response head says about the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code (always 200 when returned by [`HeadReader::feed`]).
    pub status: u16,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

/// Collects and parses the response head.
#[derive(Debug, Default)]
pub struct HeadReader {
    buf: Vec<u8>,
}

impl HeadReader {
    /// Feeds received bytes. Returns the head and how many bytes of `data` it used (the rest
    /// is body) once the head is complete, `None` while more bytes are needed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
        let before = self.buf.len();
        let room = MAX_HEAD_LEN.saturating_sub(before);
        self.buf
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let code = response.code.unwrap_or(0);
                if code != 200 {
                    return Err(HttpError::Status { code });
                }
                let chunked = response.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("chunked")
                });
                let used = n.saturating_sub(before);
                self.buf = Vec::new();
                Ok(Some((
                    ResponseHead {
                        status: code,
                        chunked,
                    },
                    used,
                )))
            }
            Ok(httparse::Status::Partial) if self.buf.len() >= MAX_HEAD_LEN => {
                Err(HttpError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(HttpError::BadHead {
                reason: e.to_string(),
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading the size line: value so far, hex digits, line length, inside an extension.
    Size {
        value: u64,
        digits: u32,
        line: usize,
        ext: bool,
    },
    /// Got CR after the size line.
    SizeLf { value: u64, digits: u32 },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// The last (zero-size) chunk arrived.
    Done,
}

const SIZE_START: ChunkState = ChunkState::Size {
    value: 0,
    digits: 0,
    line: 0,
    ext: false,
};

/// Decodes a `Transfer-Encoding: chunked` body incrementally.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
    offset: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: SIZE_START,
            offset: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Decodes `input`, handing each run of body data to `sink` (zero-copy slices of `input`).
    pub fn decode(&mut self, input: &[u8], mut sink: impl FnMut(&[u8])) -> Result<(), HttpError> {
        let mut rest = input;
        while !rest.is_empty() {
            if let ChunkState::Data(left) = self.state {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                let (data, after) = rest.split_at(n);
                sink(data);
                rest = after;
                self.offset += n as u64;
                let left = left - n as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data(left)
                };
                continue;
            }
            let Some((&b, after)) = rest.split_first() else {
                break;
            };
            self.step(b)?;
            self.offset += 1;
            rest = after;
        }
        Ok(())
    }

    /// True once the terminating zero-size chunk arrived.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn err(&self, what: &'static str) -> HttpError {
        HttpError::Chunked {
            what,
            offset: self.offset,
        }
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            ChunkState::Size {
                value,
                digits,
                line,
                ext,
            } => {
                if line >= MAX_SIZE_LINE {
                    return Err(self.err("size line too long"));
                }
                let line = line + 1;
                match b {
                    b'\r' => ChunkState::SizeLf { value, digits },
                    b'\n' => self.end_size_line(value, digits)?,
                    _ if ext => ChunkState::Size {
                        value,
                        digits,
                        line,
                        ext,
                    },
                    b';' | b' ' | b'\t' => ChunkState::Size {
                        value,
                        digits,
                        line,
                        ext: true,
                    },
                    _ => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or_else(|| self.err("chunk size is not hex"))?;
                        let value = value * 16 + u64::from(d);
                        if value > MAX_CHUNK_LEN {
                            return Err(self.err("chunk size over the limit"));
                        }
                        ChunkState::Size {
                            value,
                            digits: digits + 1,
                            line,
                            ext,
                        }
                    }
                }
            }
            ChunkState::SizeLf { value, digits } => {
                if b != b'\n' {
                    return Err(self.err("expected LF after chunk size"));
                }
                self.end_size_line(value, digits)?
            }
            ChunkState::DataCr => match b {
                b'\r' => ChunkState::DataLf,
                b'\n' => SIZE_START,
                _ => return Err(self.err("expected CRLF after chunk data")),
            },
            ChunkState::DataLf => {
                if b != b'\n' {
                    return Err(self.err("expected LF after chunk data"));
                }
                SIZE_START
            }
            // Trailers and anything after the last chunk are ignored; Data is handled by decode.
            state @ (ChunkState::Done | ChunkState::Data(_)) => state,
        };
        Ok(())
    }

    fn end_size_line(&self, value: u64, digits: u32) -> Result<ChunkState, HttpError> {
        if digits == 0 {
            return Err(self.err("empty chunk size"));
        }
        Ok(if value == 0 {
            ChunkState::Done
        } else {
            ChunkState::Data(value)
        })
    }
}

/// A complete response with a `Content-Length` at the front of `buf` (HLS playlists, parts
/// and segments): its status and body range; `None` until all of it is there.
pub fn take_response(buf: &[u8]) -> Result<Option<(u16, std::ops::Range<usize>)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let len = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .ok_or("response without Content-Length")?;
            if n.saturating_add(len) > MAX_RESPONSE {
                return Err("response too large".into());
            }
            Ok((buf.len() >= n + len).then(|| (r.code.unwrap_or(0), n..n + len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_RESPONSE => {
            Err("response head too large".into())
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("bad response head: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), HttpError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            d.decode(piece, |b| out.extend_from_slice(b))?;
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn request_line() {
        let url = crate::url::parse_http("http://127.0.0.1:8080/live/a.flv", false).unwrap();
        let r = String::from_utf8(request(&url)).unwrap();
        assert!(r.starts_with("GET /live/a.flv HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn head_in_pieces_with_body_after() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nTransfer-Encoding: chunked\r\n\r\nFLV";
        let mut r = HeadReader::default();
        assert_eq!(r.feed(&resp[..20]), Ok(None));
        let (head, used) = r.feed(&resp[20..]).unwrap().unwrap();
        assert!(head.chunked);
        assert_eq!(head.status, 200);
        assert_eq!(&resp[20 + used..], b"FLV");
    }

    #[test]
    fn head_errors() {
        let mut r = HeadReader::default();
        assert_eq!(
            r.feed(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(HttpError::Status { code: 404 })
        );
        let mut r = HeadReader::default();
        assert!(matches!(
            r.feed(b"garbage\r\n\r\n"),
            Err(HttpError::BadHead { .. })
        ));
        let mut r = HeadReader::default();
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN));
        assert!(matches!(
            r.feed(&big),
            Err(HttpError::HeadTooLarge) | Err(HttpError::BadHead { .. })
        ));
        let mut r = HeadReader::default();
        let plain = r.feed(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap().0;
        assert!(!plain.chunked);
    }

    #[test]
    fn chunked_any_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for step in 1..body.len() {
            let (out, done) = decode_all(body, step).unwrap();
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz");
            assert!(done);
        }
        // Bare LF line ends are accepted.
        let (out, done) = decode_all(b"3\nabc\n0\n", 2).unwrap();
        assert_eq!((out.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn chunked_errors() {
        assert!(matches!(
            decode_all(b"zz\r\n", 4),
            Err(HttpError::Chunked { offset: 0, .. })
        ));
        assert!(decode_all(b"\r\n", 4).is_err());
        assert!(decode_all(b"3\r\nabcX", 8).is_err());
        assert!(decode_all(b"fffffffffffffffffff\r\n", 64).is_err());
        let long = [b"1;".as_slice(), &[b'x'; MAX_SIZE_LINE]].concat();
        assert!(decode_all(&long, 100).is_err());
    }

    #[test]
    fn responses_are_taken_whole() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1";
        assert_eq!(take_response(r).unwrap(), Some((200, 38..41)));
        assert_eq!(take_response(&r[..39]).unwrap(), None);
        assert!(take_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
