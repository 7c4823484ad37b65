//! WebSocket (RFC 6455), server side: the opening handshake answer, unmasked server frames and
//! a reader for masked client frames.
//!
//! Media goes out as one binary frame per chunk: write the frame header with
//! [`write_frame_header`] into a small buffer and send the shared payload `Bytes` after it,
//! without copying the payload.

use std::fmt;

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::{HttpError, Request};

/// The GUID appended to the client key to make `Sec-WebSocket-Accept` (RFC 6455 section 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Default bound on the payload of one client frame.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Largest payload of a control frame (close, ping, pong).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
pub fn accept_key(sec_websocket_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(sec_websocket_key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Checks a WebSocket opening handshake and writes the `101 Switching Protocols` answer.
///
/// Requires `GET` over HTTP/1.1, `Upgrade: websocket`, `Connection: Upgrade`,
/// `Sec-WebSocket-Version: 13` (else [`HttpError::WebSocketVersion`], status 426) and a
/// `Sec-WebSocket-Key` of 16 base64-encoded bytes. No subprotocol or extension is accepted, so
/// none is echoed. Nothing is written on error.
pub fn upgrade_response(req: &Request, out: &mut BytesMut) -> Result<(), HttpError> {
    let bad = |what| Err(HttpError::BadUpgrade { what });
    if req.method != "GET" {
        return bad("method is not GET");
    }
    if req.version_minor < 1 {
        return bad("HTTP/1.0 cannot upgrade");
    }
    if !req.header_has_token("Upgrade", "websocket") {
        return bad("no Upgrade: websocket");
    }
    if !req.header_has_token("Connection", "upgrade") {
        return bad("no Connection: Upgrade");
    }
    match req.header("Sec-WebSocket-Version") {
        None => return bad("no Sec-WebSocket-Version"),
        Some(v) if v.trim() != "13" => return Err(HttpError::WebSocketVersion),
        Some(_) => {}
    }
    let Some(key) = req.header("Sec-WebSocket-Key") else {
        return bad("no Sec-WebSocket-Key");
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim());
    if decoded.map_or(true, |k| k.len() != 16) {
        return bad("Sec-WebSocket-Key is not 16 bytes in base64");
    }
    out.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.put_slice(accept_key(key).as_bytes());
    out.put_slice(b"\r\nServer: rill\r\n\r\n");
    Ok(())
}

/// A frame opcode (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: continues a fragmented text or binary message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data (media).
    Binary,
    /// 0x8: close, with an optional status code and reason.
    Close,
    /// 0x9: ping; answer with a pong carrying the same payload.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// The opcode for a 4-bit value, `None` for reserved values.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Writes the header of an unmasked (server-to-client) frame with a payload of `payload_len`
/// bytes, using the shortest length form (7-bit, 16-bit or 64-bit); the payload follows.
pub fn write_frame_header(opcode: Opcode, fin: bool, payload_len: usize, out: &mut BytesMut) {
    out.put_u8(u8::from(fin) << 7 | opcode.as_u8());
    if payload_len <= MAX_CONTROL_PAYLOAD {
        // Fits in 7 bits: checked just above.
        out.put_u8(payload_len as u8);
    } else if let Ok(len) = u16::try_from(payload_len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(payload_len as u64);
    }
}

/// Writes a whole unfragmented server frame (header and a copy of `payload`), e.g. a pong
/// answering a ping with its payload.
pub fn write_frame(opcode: Opcode, payload: &[u8], out: &mut BytesMut) {
    write_frame_header(opcode, true, payload.len(), out);
    out.put_slice(payload);
}

/// Writes a close frame with a status code (1000 normal, 1001 going away, 1002 protocol
/// error, 1009 too big...) and a reason, cut at a character boundary to fit the 125-byte
/// control payload.
pub fn close_frame(code: u16, reason: &str, out: &mut BytesMut) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or_default();
    write_frame_header(Opcode::Close, true, 2 + reason.len(), out);
    out.put_u16(code);
    out.put_slice(reason.as_bytes());
}

/// One frame from the client, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    /// The opcode.
    pub opcode: Opcode,
    /// Whether this is the last frame of its message.
    pub fin: bool,
    /// The unmasked payload.
    pub payload: Bytes,
}

impl WsFrame {
    /// For a close frame, its status code, if it has one.
    pub fn close_code(&self) -> Option<u16> {
        if self.opcode != Opcode::Close {
            return None;
        }
        let code = self.payload.get(..2)?;
        Some(u16::from_be_bytes([*code.first()?, *code.get(1)?]))
    }

    /// For a close frame, its reason (empty if none; [`WsReader`] checked it is UTF-8).
    pub fn close_reason(&self) -> &str {
        if self.opcode != Opcode::Close {
            return "";
        }
        self.payload
            .get(2..)
            .and_then(|r| std::str::from_utf8(r).ok())
            .unwrap_or_default()
    }
}

/// Why the client's frames were refused. Offsets count bytes from the first byte pushed into the
/// [`WsReader`] to the start of the offending frame. Close the connection with
/// [`WsError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// RSV1-3 set, but no extension was negotiated.
    ReservedBits {
        /// Offset of the frame.
        offset: u64,
    },
    /// A reserved opcode.
    ReservedOpcode {
        /// Offset of the frame.
        offset: u64,
        /// The 4-bit value.
        opcode: u8,
    },
    /// A client frame without a mask (RFC 6455 section 5.1).
    Unmasked {
        /// Offset of the frame.
        offset: u64,
    },
    /// A control frame without FIN.
    FragmentedControl {
        /// Offset of the frame.
        offset: u64,
    },
    /// A control frame with more than 125 payload bytes.
    ControlTooLong {
        /// Offset of the frame.
        offset: u64,
    },
    /// A payload longer than the reader's limit.
    PayloadTooLarge {
        /// Offset of the frame.
        offset: u64,
        /// The declared payload length.
        length: u64,
        /// The reader's `max_payload`.
        limit: usize,
    },
    /// A continuation frame with no fragmented message in progress.
    UnexpectedContinuation {
        /// Offset of the frame.
        offset: u64,
    },
    /// A new text or binary frame while a fragmented message is still in progress.
    ExpectedContinuation {
        /// Offset of the frame.
        offset: u64,
    },
    /// A close frame whose payload is one byte or whose code may not be sent.
    BadClose {
        /// Offset of the frame.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// A close reason that is not UTF-8.
    InvalidUtf8 {
        /// Offset of the frame.
        offset: u64,
    },
}

impl WsError {
    /// The close code to send before closing: 1009 for a too large payload, 1007 for invalid
    /// UTF-8, 1002 (protocol error) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::PayloadTooLarge { .. } => 1009,
            WsError::InvalidUtf8 { .. } => 1007,
            _ => 1002,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::ReservedBits { offset } => {
                write!(
                    f,
                    "websocket: reserved bits set in frame at offset {offset}"
                )
            }
            WsError::ReservedOpcode { offset, opcode } => write!(
                f,
                "websocket: reserved opcode {opcode:#x} in frame at offset {offset}"
            ),
            WsError::Unmasked { offset } => {
                write!(f, "websocket: unmasked client frame at offset {offset}")
            }
            WsError::FragmentedControl { offset } => {
                write!(f, "websocket: control frame without FIN at offset {offset}")
            }
            WsError::ControlTooLong { offset } => write!(
                f,
                "websocket: control frame payload over 125 bytes at offset {offset}"
            ),
            WsError::PayloadTooLarge {
                offset,
                length,
                limit,
            } => write!(
                f,
                "websocket: payload length {length} of frame at offset {offset} exceeds {limit}"
            ),
            WsError::UnexpectedContinuation { offset } => write!(
                f,
                "websocket: continuation frame without a message at offset {offset}"
            ),
            WsError::ExpectedContinuation { offset } => write!(
                f,
                "websocket: new message before the fragmented one ended at offset {offset}"
            ),
            WsError::BadClose { offset, what } => {
                write!(f, "websocket: close frame at offset {offset}: {what}")
            }
            WsError::InvalidUtf8 { offset } => write!(
                f,
                "websocket: close reason is not UTF-8 in frame at offset {offset}"
            ),
        }
    }
}

impl std::error::Error for WsError {}

/// Reads client-to-server frames: each must be masked; payloads are bounded by `max_payload`
/// (control frames by 125 bytes, and they must not be fragmented); fragmentation order and close
/// payloads are checked. Text payloads are not checked for UTF-8 here.
///
/// Push what the socket gives with [`push`](Self::push), then call
/// [`poll_frame`](Self::poll_frame) until it returns `Ok(None)` before pushing more (this keeps
/// the buffer below one frame plus one read). Payloads are unmasked in place and handed out as
/// slices of the receive buffer. An error is final: later calls return it again.
#[derive(Debug)]
pub struct WsReader {
    max_payload: usize,
    buf: BytesMut,
    /// Connection offset of `buf[0]`.
    offset: u64,
    /// A fragmented text or binary message is in progress.
    in_message: bool,
    error: Option<WsError>,
}

impl Default for WsReader {
    fn default() -> Self {
        WsReader::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl WsReader {
    /// A reader accepting payloads of up to `max_payload` bytes per frame.
    pub fn new(max_payload: usize) -> Self {
        WsReader {
            max_payload,
            buf: BytesMut::new(),
            offset: 0,
            in_message: false,
            error: None,
        }
    }

    /// Buffers bytes read from the connection (ignored after an error).
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the protocol error to
    /// close with.
    pub fn poll_frame(&mut self) -> Result<Option<WsFrame>, WsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let r = self.parse();
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    fn parse(&mut self) -> Result<Option<WsFrame>, WsError> {
        let offset = self.offset;
        // Each check runs as soon as the bytes it needs are there, in wire order, so the same
        // bytes give the same error however they were split.
        let Some(&b0) = self.buf.first() else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits { offset });
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(WsError::ReservedOpcode {
            offset,
            opcode: b0 & 0x0F,
        })?;
        match opcode {
            Opcode::Continuation if !self.in_message => {
                return Err(WsError::UnexpectedContinuation { offset })
            }
            Opcode::Text | Opcode::Binary if self.in_message => {
                return Err(WsError::ExpectedContinuation { offset })
            }
            op if op.is_control() && !fin => return Err(WsError::FragmentedControl { offset }),
            _ => {}
        }

        let Some(&b1) = self.buf.get(1) else {
            return Ok(None);
        };
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked { offset });
        }
        let len7 = b1 & 0x7F;
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlTooLong { offset });
        }
        let (length, header_len) = match len7 {
            126 => match self.buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match self
                .buf
                .get(2..10)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
            {
                Some(b) => (u64::from_be_bytes(b), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let payload_len = usize::try_from(length)
            .ok()
            .filter(|&n| n <= self.max_payload)
            .ok_or(WsError::PayloadTooLarge {
                offset,
                length,
                limit: self.max_payload,
            })?;
        let Some(mask) = self
            .buf
            .get(header_len..header_len + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
        else {
            return Ok(None);
        };
        let total = (header_len + 4).saturating_add(payload_len);
        if self.buf.len() < total {
            return Ok(None);
        }

        let mut frame = self.buf.split_to(total);
        frame.advance(header_len + 4);
        for (i, b) in frame.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        self.offset = self.offset.saturating_add(total as u64);
        let frame = WsFrame {
            opcode,
            fin,
            payload: frame.freeze(),
        };
        match opcode {
            Opcode::Text | Opcode::Binary | Opcode::Continuation => self.in_message = !fin,
            Opcode::Close => check_close(&frame.payload, offset)?,
            Opcode::Ping | Opcode::Pong => {}
        }
        Ok(Some(frame))
    }
}

/// Checks a close payload: empty, or a code that may be sent followed by a UTF-8 reason
/// (RFC 6455 sections 5.5.1 and 7.4).
fn check_close(payload: &[u8], offset: u64) -> Result<(), WsError> {
    let (code, reason) = match payload {
        [] => return Ok(()),
        [_] => {
            return Err(WsError::BadClose {
                offset,
                what: "one-byte payload",
            })
        }
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !allowed {
        return Err(WsError::BadClose {
            offset,
            what: "status code may not be sent",
        });
    }
    std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8 { offset })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HttpLimits, RequestReader};
    use proptest::prelude::*;

    /// Test-only client encoder: a masked frame with the shortest length form.
    fn client_frame(opcode: u8, fin: bool, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_frame_header(Opcode::Binary, fin, payload.len(), &mut out);
        out[0] = u8::from(fin) << 7 | opcode;
        out[1] |= 0x80;
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out.to_vec()
    }

    fn read_all(reader: &mut WsReader, data: &[u8]) -> (Vec<WsFrame>, Option<WsError>) {
        reader.push(data);
        let mut frames = Vec::new();
        loop {
            match reader.poll_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
    }

    fn request(raw: &str) -> Request {
        let mut r = RequestReader::new(HttpLimits::default());
        r.push(raw.as_bytes()).unwrap();
        r.poll_request().unwrap().unwrap()
    }

    #[test]
    fn accept_key_rfc_vector() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    const UPGRADE: &str = "GET /live/a.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn upgrade_answer() {
        let req = request(UPGRADE);
        assert!(req.is_websocket_upgrade());
        let mut out = BytesMut::new();
        upgrade_response(&req, &mut out).unwrap();
        assert_eq!(
            &out[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: rill\r\n\r\n"
        );
    }

    #[test]
    fn bad_upgrades() {
        let cases = [
            (UPGRADE.replace("Version: 13", "Version: 8"), 426),
            (UPGRADE.replace("Sec-WebSocket-Version: 13\r\n", ""), 400),
            (UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "abc"), 400),
            (UPGRADE.replace("Sec-WebSocket-Key", "X"), 400),
            (UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c"), 400),
            (UPGRADE.replace("keep-alive, Upgrade", "keep-alive"), 400),
            (UPGRADE.replace("GET", "POST"), 400),
            (UPGRADE.replace("HTTP/1.1", "HTTP/1.0"), 400),
        ];
        for (raw, status) in cases {
            let mut out = BytesMut::new();
            let e = upgrade_response(&request(&raw), &mut out).unwrap_err();
            assert_eq!(e.status(), status, "{e}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn frame_header_length_forms() {
        let cases: [(usize, &[u8]); 5] = [
            (0, &[0x82, 0]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (len, expected) in cases {
            let mut out = BytesMut::new();
            write_frame_header(Opcode::Binary, true, len, &mut out);
            assert_eq!(&out[..], expected, "{len}");
        }
        let mut out = BytesMut::new();
        write_frame_header(Opcode::Text, false, 3, &mut out);
        assert_eq!(&out[..], &[0x01, 3]);
    }

    #[test]
    fn close_frames() {
        let mut out = BytesMut::new();
        close_frame(1000, "bye", &mut out);
        assert_eq!(&out[..], b"\x88\x05\x03\xe8bye");
        let mut out = BytesMut::new();
        close_frame(1001, &"é".repeat(100), &mut out);
        assert_eq!(out[1], 124); // 2 + 122: the 123rd byte would split a character
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn reads_masked_frames() {
        let mut data = client_frame(0x2, true, [1, 2, 3, 4], b"media");
        data.extend(client_frame(0x9, true, [9, 9, 9, 9], b"ping!"));
        data.extend(client_frame(0x1, false, [0xff, 0, 0xff, 0], b"he"));
        data.extend(client_frame(0xA, true, [5, 6, 7, 8], b""));
        data.extend(client_frame(0x0, true, [7, 7, 7, 7], b"llo"));
        data.extend(client_frame(0x8, true, [1, 1, 1, 1], b"\x03\xe8done"));
        let (frames, err) = read_all(&mut WsReader::default(), &data);
        assert_eq!(err, None);
        let got: Vec<_> = frames
            .iter()
            .map(|f| (f.opcode, f.fin, &f.payload[..]))
            .collect();
        assert_eq!(
            got,
            vec![
                (Opcode::Binary, true, &b"media"[..]),
                (Opcode::Ping, true, b"ping!"),
                (Opcode::Text, false, b"he"),
                (Opcode::Pong, true, b""),
                (Opcode::Continuation, true, b"llo"),
                (Opcode::Close, true, b"\x03\xe8done"),
            ]
        );
        assert_eq!(frames[5].close_code(), Some(1000));
        assert_eq!(frames[5].close_reason(), "done");
        assert_eq!(frames[0].close_code(), None);
    }

    #[test]
    fn reads_long_length_forms() {
        for len in [125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let data = client_frame(0x2, true, [0xde, 0xad, 0xbe, 0xef], &payload);
            let (frames, err) = read_all(&mut WsReader::new(65536), &data);
            assert_eq!(err, None);
            assert_eq!(&frames[0].payload[..], &payload[..], "{len}");
        }
    }

    #[test]
    fn refuses_bad_frames() {
        let mut unmasked = BytesMut::new();
        write_frame(Opcode::Binary, b"x", &mut unmasked);
        let m = [1, 2, 3, 4];
        let cases: Vec<(Vec<u8>, WsError, u16)> = vec![
            (unmasked.to_vec(), WsError::Unmasked { offset: 0 }, 1002),
            (
                client_frame(0x2, true, m, &[0; 11]),
                WsError::PayloadTooLarge {
                    offset: 0,
                    length: 11,
                    limit: 10,
                },
                1009,
            ),
            (
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::PayloadTooLarge {
                    offset: 0,
                    length: 1 << 63,
                    limit: 10,
                },
                1009,
            ),
            (
                client_frame(0x9, false, m, b""),
                WsError::FragmentedControl { offset: 0 },
                1002,
            ),
            (
                vec![0x89, 0xFE],
                WsError::ControlTooLong { offset: 0 },
                1002,
            ),
            (vec![0xC2], WsError::ReservedBits { offset: 0 }, 1002),
            (
                vec![0x83],
                WsError::ReservedOpcode {
                    offset: 0,
                    opcode: 3,
                },
                1002,
            ),
            (
                vec![0x80],
                WsError::UnexpectedContinuation { offset: 0 },
                1002,
            ),
            (
                [client_frame(0x1, false, m, b"a"), vec![0x82]].concat(),
                WsError::ExpectedContinuation { offset: 7 },
                1002,
            ),
            (
                client_frame(0x8, true, m, b"\x03"),
                WsError::BadClose {
                    offset: 0,
                    what: "one-byte payload",
                },
                1002,
            ),
            (
                client_frame(0x8, true, m, b"\x03\xed"),
                WsError::BadClose {
                    offset: 0,
                    what: "status code may not be sent",
                },
                1002,
            ),
            (
                client_frame(0x8, true, m, b"\x03\xe8\xff"),
                WsError::InvalidUtf8 { offset: 0 },
                1007,
            ),
        ];
        for (data, expected, code) in cases {
            let mut reader = WsReader::new(10);
            let (_, err) = read_all(&mut reader, &data);
            let err = err.unwrap();
            assert_eq!(err, expected);
            assert_eq!(err.close_code(), code);
            assert_eq!(
                reader.poll_frame().unwrap_err(),
                expected,
                "errors are final"
            );
        }
    }

    #[test]
    fn waits_for_incomplete_frames() {
        let data = client_frame(0x2, true, [1, 2, 3, 4], &[7; 300]);
        let mut reader = WsReader::default();
        for b in &data[..data.len() - 1] {
            reader.push(&[*b]);
            assert_eq!(reader.poll_frame(), Ok(None));
        }
        reader.push(&data[data.len() - 1..]);
        assert_eq!(
            &reader.poll_frame().unwrap().unwrap().payload[..],
            &[7; 300][..]
        );
    }

    fn frame_strategy() -> impl Strategy<Value = (u8, bool, [u8; 4], Vec<u8>)> {
        (
            prop_oneof![Just(0x2u8), Just(0x9), Just(0xA), Just(0x1)],
            any::<[u8; 4]>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..130),
                proptest::collection::vec(any::<u8>(), 126..300),
            ],
        )
            .prop_map(|(op, mask, mut payload)| {
                if op >= 0x8 {
                    payload.truncate(125);
                }
                (op, true, mask, payload)
            })
    }

    proptest! {
        #[test]
        fn ws_reader_round_trip(
            frames in proptest::collection::vec(frame_strategy(), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let data: Vec<u8> = frames
                .iter()
                .flat_map(|(op, fin, mask, p)| client_frame(*op, *fin, *mask, p))
                .collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
            points.sort_unstable();
            let mut reader = WsReader::default();
            let mut got = Vec::new();
            let mut prev = 0;
            for p in points.into_iter().chain([data.len()]) {
                let (f, err) = read_all(&mut reader, &data[prev..p]);
                prop_assert_eq!(err, None);
                got.extend(f);
                prev = p;
            }
            prop_assert_eq!(got.len(), frames.len());
            for (g, (op, fin, _, p)) in got.iter().zip(&frames) {
                prop_assert_eq!(g.opcode.as_u8(), *op);
                prop_assert_eq!(g.fin, *fin);
                prop_assert_eq!(&g.payload[..], &p[..]);
            }
        }
    }
}
