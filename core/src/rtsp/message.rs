//! RTSP requests and responses, the connection reader, and the writers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{RtspError, RtspLimits};

/// Bytes in front of an interleaved frame: `$`, channel, 16-bit length.
pub const INTERLEAVED_HEADER_LEN: usize = 4;

/// Header fields in order, names compared case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing its first occurrence or appending.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// Appends a field (keeps existing ones of the same name).
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_owned(), value.into()));
    }

    /// The `CSeq` value, if present and a number.
    pub fn cseq(&self) -> Option<u32> {
        self.get("CSeq").and_then(|v| v.trim().parse().ok())
    }

    /// The `Session` id, without parameters such as `;timeout=60`.
    pub fn session_id(&self) -> Option<&str> {
        self.get("Session")
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn write(&self, out: &mut BytesMut, body_len: usize) {
        for (n, v) in &self.0 {
            if body_len > 0 && n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            put_clean(out, n);
            out.put_slice(b": ");
            put_clean(out, v);
            out.put_slice(b"\r\n");
        }
        if body_len > 0 {
            out.put_slice(format!("Content-Length: {body_len}\r\n").as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}

/// Writes `s` with line ends replaced by spaces, so no value can inject a header.
fn put_clean(out: &mut BytesMut, s: &str) {
    for b in s.bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
}

/// An RTSP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `DESCRIBE` (case as sent; RTSP methods are case-sensitive).
    pub method: String,
    /// Request URI (`*` for OPTIONS is allowed).
    pub uri: String,
    /// Header fields.
    pub headers: Headers,
    /// Body (`Content-Length` bytes).
    pub body: Bytes,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: &str, uri: &str) -> Self {
        Request {
            method: method.to_owned(),
            uri: uri.to_owned(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Writes the request; `Content-Length` is set from the body.
    pub fn write(&self, out: &mut BytesMut) {
        put_clean(out, &self.method);
        out.put_u8(b' ');
        put_clean(out, &self.uri.replace(' ', "%20"));
        out.put_slice(b" RTSP/1.0\r\n");
        self.headers.write(out, self.body.len());
        out.extend_from_slice(&self.body);
    }
}

/// An RTSP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
    /// Body (`Content-Length` bytes).
    pub body: Bytes,
}

impl Response {
    /// A response with the standard reason phrase for `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the body and its `Content-Type` (builder style).
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.headers.set("Content-Type", content_type);
        self.body = body;
        self
    }

    /// Writes the response; `Content-Length` is set from the body.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(format!("RTSP/1.0 {} ", self.status).as_bytes());
        put_clean(out, &self.reason);
        out.put_slice(b"\r\n");
        self.headers.write(out, self.body.len());
        out.extend_from_slice(&self.body);
    }
}

/// The reason phrase of an RTSP status code (RFC 2326 section 7.1.1).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        456 => "Header Field Not Valid for Resource",
        457 => "Invalid Range",
        459 => "Aggregate Operation Not Allowed",
        460 => "Only Aggregate Operation Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        551 => "Option Not Supported",
        _ => "Unknown",
    }
}

/// Writes an interleaved frame (`$`, channel, length, payload). Payloads over 65535 bytes are
/// refused.
pub fn write_interleaved(channel: u8, payload: &[u8], out: &mut BytesMut) -> Result<(), RtspError> {
    let len = u16::try_from(payload.len()).map_err(|_| RtspError::InterleavedTooLarge {
        length: payload.len(),
    })?;
    out.reserve(INTERLEAVED_HEADER_LEN + payload.len());
    out.put_u8(b'$');
    out.put_u8(channel);
    out.put_u16(len);
    out.put_slice(payload);
    Ok(())
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

/// What a [`Reader`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A complete request or response.
    Message(Message),
    /// An interleaved binary frame (RTP or RTCP over the RTSP connection).
    Interleaved {
        /// The channel number.
        channel: u8,
        /// The payload, a slice of what was read.
        payload: Bytes,
    },
}

/// Reads RTSP messages and interleaved frames from the bytes of one connection.
///
/// Each line of a message head may be at most `max_line_bytes` long, a head at most
/// `max_headers` header lines, a body at most `max_body_bytes` (`Content-Length`). Blank lines
/// between messages are skipped. An error is final: every later call returns it again; the
/// caller answers with [`RtspError::status`] and closes.
///
/// Use: [`push`](Self::push) what was read, then drain [`poll_item`](Self::poll_item) until `Ok(None)`.
#[derive(Debug)]
pub struct Reader {
    limits: RtspLimits,
    buf: BytesMut,
    /// Connection offset of `buf[0]`.
    offset: u64,
    /// Head scan progress: start of the first line not yet seen whole, and lines seen.
    scan_pos: usize,
    scan_lines: usize,
    /// A parsed head waiting for its body: the message, head length and body length.
    pending: Option<(Message, usize)>,
    error: Option<RtspError>,
}

impl Reader {
    /// A reader for a new connection.
    pub fn new(limits: RtspLimits) -> Self {
        Reader {
            limits,
            buf: BytesMut::new(),
            offset: 0,
            scan_pos: 0,
            scan_lines: 0,
            pending: None,
            error: None,
        }
    }

    fn buffer_limit(&self) -> usize {
        let head = self
            .limits
            .max_line_bytes
            .saturating_mul(self.limits.max_headers.saturating_add(2));
        head.saturating_add(self.limits.max_body_bytes)
            .max(INTERLEAVED_HEADER_LEN + 0xFFFF)
    }

    /// Buffers bytes read from the connection. Fails (for good) when more than the largest
    /// message or interleaved frame would be buffered, which does not happen while each push is
    /// followed by draining [`poll_item`](Self::poll_item) and reads are smaller than that.
    pub fn push(&mut self, data: &[u8]) -> Result<(), RtspError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let limit = self.buffer_limit();
        let buffered = self.buf.len().saturating_add(data.len());
        if buffered > limit {
            return Err(self.fail(RtspError::BufferFull { buffered, limit }));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next message or interleaved frame, `Ok(None)` when more bytes are needed, or the
    /// error to answer before closing.
    pub fn poll_item(&mut self) -> Result<Option<Item>, RtspError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.poll_inner() {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, e: RtspError) -> RtspError {
        self.error = Some(e.clone());
        e
    }

    fn consume(&mut self, n: usize) -> Bytes {
        let b = self.buf.split_to(n.min(self.buf.len())).freeze();
        self.offset = self.offset.saturating_add(b.len() as u64);
        b
    }

    /// Refuses a request or status line as soon as it cannot become one, rather than when its
    /// line ends (binary junk may never bring a line feed): it starts with a token character
    /// (a method, or `RTSP/` of a status line) and holds only printable ASCII.
    fn check_start_line(&self) -> Result<(), RtspError> {
        let max_line = self.limits.max_line_bytes.max(1);
        let line = self
            .buf
            .get(..self.buf.len().min(max_line))
            .unwrap_or_default();
        let line = line
            .iter()
            .position(|&b| b == b'\n')
            .map_or(line, |end| line.get(..end).unwrap_or_default());
        let bad_start = line
            .first()
            .is_some_and(|&b| !(b.is_ascii_alphanumeric() || b"!#%&'*+-.^_`|~".contains(&b)));
        let bad_byte = line
            .iter()
            .position(|&b| !(b == b'\t' || b == b'\r' || (0x20..0x7f).contains(&b)));
        match (bad_start, bad_byte) {
            (true, _) => Err(RtspError::Malformed {
                offset: self.offset,
                what: "a request line must start with a method",
            }),
            (false, Some(at)) => Err(RtspError::Malformed {
                offset: self.offset.saturating_add(at as u64),
                what: "a request line holds only printable ASCII",
            }),
            (false, None) => Ok(()),
        }
    }

    fn poll_inner(&mut self) -> Result<Option<Item>, RtspError> {
        if let Some((_, body_len)) = &self.pending {
            let body_len = *body_len;
            if self.buf.len() < body_len {
                return Ok(None);
            }
            let Some((mut msg, _)) = self.pending.take() else {
                return Ok(None);
            };
            let body = self.consume(body_len);
            match &mut msg {
                Message::Request(r) => r.body = body,
                Message::Response(r) => r.body = body,
            }
            return Ok(Some(Item::Message(msg)));
        }
        while matches!(self.buf.first(), Some(b'\r' | b'\n')) {
            self.buf.advance(1);
            self.offset = self.offset.saturating_add(1);
            self.scan_pos = 0;
            self.scan_lines = 0;
        }
        match self.buf.first() {
            None => return Ok(None),
            Some(b'$') => {
                let Some(&[_, channel, hi, lo]) = self.buf.get(..INTERLEAVED_HEADER_LEN) else {
                    return Ok(None);
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if self.buf.len() < INTERLEAVED_HEADER_LEN + len {
                    return Ok(None);
                }
                self.consume(INTERLEAVED_HEADER_LEN);
                let payload = self.consume(len);
                return Ok(Some(Item::Interleaved { channel, payload }));
            }
            Some(_) => {}
        }
        if self.scan_pos == 0 {
            self.check_start_line()?;
        }
        // Find the blank line that ends the head, one line at a time.
        let max_line = self.limits.max_line_bytes.max(1);
        let head_end = loop {
            let rest = self.buf.get(self.scan_pos..).unwrap_or_default();
            let window = rest.get(..rest.len().min(max_line)).unwrap_or_default();
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line_end = self.scan_pos + i + 1;
                    let blank = i == 0 || (i == 1 && rest.first() == Some(&b'\r'));
                    if blank {
                        break line_end;
                    }
                    self.scan_lines += 1;
                    // The request or status line plus max_headers header lines.
                    if self.scan_lines > self.limits.max_headers.saturating_add(1) {
                        return Err(RtspError::TooManyHeaders {
                            offset: self.offset,
                            limit: self.limits.max_headers,
                        });
                    }
                    self.scan_pos = line_end;
                }
                None if rest.len() >= max_line => {
                    return Err(RtspError::LineTooLong {
                        offset: self.offset.saturating_add(self.scan_pos as u64),
                        limit: max_line,
                    });
                }
                None => return Ok(None),
            }
        };
        let head = self.buf.get(..head_end).unwrap_or_default();
        let (msg, body_len) = parse_head(head, self.offset, &self.limits)?;
        self.consume(head_end);
        self.scan_pos = 0;
        self.scan_lines = 0;
        self.pending = Some((msg, body_len));
        self.poll_inner()
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_version(v: &str) -> bool {
    matches!(v.as_bytes(), [b'R', b'T', b'S', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit())
}

/// Parses a complete head (through its blank line): the message without body and the body
/// length.
fn parse_head(
    head: &[u8],
    offset: u64,
    limits: &RtspLimits,
) -> Result<(Message, usize), RtspError> {
    let malformed = |at: usize, what| RtspError::Malformed {
        offset: offset.saturating_add(at as u64),
        what,
    };
    let text = std::str::from_utf8(head).map_err(|e| malformed(e.valid_up_to(), "not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut at = first.len() + 1;
    let mut headers = Headers::new();
    for line in lines {
        let line_at = at;
        at += line.len() + 1;
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous value.
            match headers.0.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return Err(malformed(line_at, "continuation line before any header")),
            }
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(line_at, "header line without ':'"))?;
        let name = name.trim_end();
        if !is_token(name) {
            return Err(malformed(line_at, "invalid header name"));
        }
        headers.append(name, value.trim());
    }
    let body_len = match headers.get("Content-Length") {
        None => 0,
        Some(v) => {
            let v = v.trim();
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RtspError::BadContentLength { offset });
            }
            let n: u64 = v
                .parse()
                .map_err(|_| RtspError::BadContentLength { offset })?;
            if n > limits.max_body_bytes as u64 {
                return Err(RtspError::BodyTooLarge {
                    offset,
                    length: n,
                    limit: limits.max_body_bytes,
                });
            }
            n as usize
        }
    };
    let msg = if first.starts_with("RTSP/") {
        let mut parts = first.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        if !check_version(version) {
            return Err(malformed(0, "unsupported RTSP version"));
        }
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(0, "invalid status code"));
        }
        Message::Response(Response {
            status: code
                .parse()
                .map_err(|_| malformed(0, "invalid status code"))?,
            reason: parts.next().unwrap_or_default().trim().to_owned(),
            headers,
            body: Bytes::new(),
        })
    } else {
        let mut parts = first.split_ascii_whitespace();
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(0, "request line is not 'METHOD URI RTSP/1.0'"));
        };
        if !is_token(method) {
            return Err(malformed(0, "invalid method"));
        }
        if !check_version(version) {
            return Err(malformed(0, "unsupported RTSP version"));
        }
        Message::Request(Request {
            method: method.to_owned(),
            uri: uri.to_owned(),
            headers,
            body: Bytes::new(),
        })
    };
    Ok((msg, body_len))
}
