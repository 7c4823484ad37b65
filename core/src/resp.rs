//! RESP2, the Redis protocol, sans-IO: commands encoded as arrays of bulk strings, replies
//! decoded incrementally from whatever bytes have arrived.
//!
//! [`encode_command`] writes one command. A [`RespDecoder`] takes bytes with
//! [`RespDecoder::push`] and gives complete values with [`RespDecoder::poll_reply`] (`Ok(None)`:
//! wait for more bytes); every length read from the wire is checked against [`RespLimits`]
//! before anything is allocated, and invalid input is an error naming the field and the byte
//! offset, never a panic. The same decoder reads commands (a test's fake Redis does), and
//! [`Reply::encode`] writes any value, so encode then decode gives back the input.
//!
//! Written for rill's cluster registry (`engine/cluster.rs`): a handful of small commands, so
//! a bulk string is copied out of the input rather than sliced.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Bounds on what a peer may send, checked before allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Largest bulk string (bytes).
    pub max_bulk: usize,
    /// Most elements of one array.
    pub max_array: usize,
    /// Deepest nesting of arrays.
    pub max_depth: usize,
    /// Longest simple string, error or integer line, CRLF excluded (bytes).
    pub max_line: usize,
    /// Most bytes buffered for one value not yet complete.
    pub max_value: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_bulk: 512 * 1024,
            max_array: 64 * 1024,
            max_depth: 8,
            max_line: 64 * 1024,
            max_value: 4 * 1024 * 1024,
        }
    }
}

/// One RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(Bytes),
    /// `-ERR ...`: the server refused the command.
    Error(Bytes),
    /// `:42`.
    Integer(i64),
    /// `$3 abc`; `None` is the null bulk string (`$-1`).
    Bulk(Option<Bytes>),
    /// `*2 ...`; `None` is the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// Appends this value's wire form to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => line(out, b'+', s),
            Reply::Error(s) => line(out, b'-', s),
            Reply::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(None) => out.put_slice(b"$-1\r\n"),
            Reply::Bulk(Some(b)) => bulk(out, b),
            Reply::Array(None) => out.put_slice(b"*-1\r\n"),
            Reply::Array(Some(items)) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// The bytes of a bulk or simple string (`None` for anything else, null included).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Reply::Simple(b) | Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }
}

fn line(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.put_u8(kind);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    line(out, b'$', data.len().to_string().as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends the command `args` (its name first) as an array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    line(out, b'*', args.len().to_string().as_bytes());
    for a in args {
        bulk(out, a.as_ref());
    }
}

/// Why input is not RESP2 within the limits.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespError {
    /// A value starts with a byte that is no RESP2 type.
    UnknownType {
        /// The byte.
        byte: u8,
        /// Its offset in the value.
        offset: usize,
    },
    /// A length or integer is not a decimal number in range.
    BadNumber {
        /// What was read: `length`, `integer`.
        field: &'static str,
        /// Offset of its line.
        offset: usize,
    },
    /// A bulk string is not followed by CRLF.
    MissingCrlf {
        /// Where the CRLF should be.
        offset: usize,
    },
    /// Something exceeds [`RespLimits`].
    TooLarge {
        /// What: `bulk string`, `array`, `line`, `nesting`, `value`.
        what: &'static str,
        /// Its size (or the size read so far).
        len: usize,
        /// The limit.
        limit: usize,
        /// Offset where it starts.
        offset: usize,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::UnknownType { byte, offset } => {
                write!(f, "RESP: unknown type byte 0x{byte:02x} at offset {offset}")
            }
            RespError::BadNumber { field, offset } => {
                write!(f, "RESP: invalid {field} at offset {offset}")
            }
            RespError::MissingCrlf { offset } => {
                write!(f, "RESP: bulk string not ended by CRLF at offset {offset}")
            }
            RespError::TooLarge {
                what,
                len,
                limit,
                offset,
            } => write!(
                f,
                "RESP: {what} of {len} at offset {offset} exceeds the limit of {limit}"
            ),
        }
    }
}

impl std::error::Error for RespError {}

/// Decodes RESP2 values from a byte stream. Feed with [`RespDecoder::push`], then call
/// [`RespDecoder::poll_reply`] until it gives `Ok(None)`. After an error the stream is not
/// RESP any more: drop the connection.
#[derive(Debug, Default)]
pub struct RespDecoder {
    limits: RespLimits,
    buf: BytesMut,
}

impl RespDecoder {
    /// An empty decoder with `limits`.
    pub fn new(limits: RespLimits) -> Self {
        RespDecoder {
            limits,
            buf: BytesMut::new(),
        }
    }

    /// Bytes from the peer.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held for a value not complete yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn too_large(&self, len: usize) -> RespError {
        RespError::TooLarge {
            what: "value",
            len,
            limit: self.limits.max_value,
            offset: 0,
        }
    }

    /// The next complete value; `Ok(None)` when more bytes are needed.
    pub fn poll_reply(&mut self) -> Result<Option<Reply>, RespError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match parse(&self.buf, 0, 0, &self.limits)? {
            Some((_, end)) if end > self.limits.max_value => Err(self.too_large(end)),
            Some((reply, end)) => {
                let _ = self.buf.split_to(end);
                Ok(Some(reply))
            }
            None if self.buf.len() > self.limits.max_value => Err(self.too_large(self.buf.len())),
            None => Ok(None),
        }
    }
}

/// The line starting at `pos` (without its CRLF) and the offset after it; `None`: incomplete.
fn read_line<'a>(
    buf: &'a [u8],
    pos: usize,
    limits: &RespLimits,
) -> Result<Option<(&'a [u8], usize)>, RespError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) if n > limits.max_line => Err(too_long_line(n, pos, limits)),
        Some(n) => Ok(rest.get(..n).map(|text| (text, pos + n + 2))),
        None if rest.len() > limits.max_line + 1 => Err(too_long_line(rest.len(), pos, limits)),
        None => Ok(None),
    }
}

fn too_long_line(len: usize, offset: usize, limits: &RespLimits) -> RespError {
    RespError::TooLarge {
        what: "line",
        len,
        limit: limits.max_line,
        offset,
    }
}

/// A decimal integer (optional leading `-`), checked.
fn number(text: &[u8], field: &'static str, offset: usize) -> Result<i64, RespError> {
    let bad = || RespError::BadNumber { field, offset };
    let (negative, digits) = match text.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        let digit = i64::from(d - b'0');
        n = n.checked_mul(10).ok_or_else(bad)?;
        n = if negative {
            n.checked_sub(digit)
        } else {
            n.checked_add(digit)
        }
        .ok_or_else(bad)?;
    }
    Ok(n)
}

/// A length: -1 (null), or 0..=`limit`.
fn length(
    text: &[u8],
    what: &'static str,
    limit: usize,
    offset: usize,
) -> Result<Option<usize>, RespError> {
    let n = number(text, "length", offset)?;
    if n == -1 {
        return Ok(None);
    }
    let len = usize::try_from(n).map_err(|_| RespError::BadNumber {
        field: "length",
        offset,
    })?;
    if len > limit {
        return Err(RespError::TooLarge {
            what,
            len,
            limit,
            offset,
        });
    }
    Ok(Some(len))
}

/// The value starting at `pos` and the offset after it; `None`: incomplete.
fn parse(
    buf: &[u8],
    pos: usize,
    depth: usize,
    limits: &RespLimits,
) -> Result<Option<(Reply, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((text, next)) = read_line(buf, pos + 1, limits)? else {
        return Ok(None);
    };
    let reply = match kind {
        b'+' => Reply::Simple(Bytes::copy_from_slice(text)),
        b'-' => Reply::Error(Bytes::copy_from_slice(text)),
        b':' => Reply::Integer(number(text, "integer", pos)?),
        b'$' => {
            let Some(len) = length(text, "bulk string", limits.max_bulk, pos)? else {
                return Ok(Some((Reply::Bulk(None), next)));
            };
            let end = next + len;
            let Some(data) = buf.get(next..end) else {
                return Ok(None);
            };
            match buf.get(end..).unwrap_or_default() {
                b"" | b"\r" => return Ok(None),
                t if t.starts_with(b"\r\n") => {}
                _ => return Err(RespError::MissingCrlf { offset: end }),
            }
            return Ok(Some((
                Reply::Bulk(Some(Bytes::copy_from_slice(data))),
                end + 2,
            )));
        }
        b'*' => {
            let Some(len) = length(text, "array", limits.max_array, pos)? else {
                return Ok(Some((Reply::Array(None), next)));
            };
            if depth >= limits.max_depth {
                return Err(RespError::TooLarge {
                    what: "nesting",
                    len: depth + 1,
                    limit: limits.max_depth,
                    offset: pos,
                });
            }
            // Each element takes at least 3 bytes, so what is buffered bounds the allocation.
            let mut items = Vec::with_capacity(len.min(buf.len() / 3));
            let mut at = next;
            for _ in 0..len {
                let Some((item, after)) = parse(buf, at, depth + 1, limits)? else {
                    return Ok(None);
                };
                items.push(item);
                at = after;
            }
            return Ok(Some((Reply::Array(Some(items)), at)));
        }
        byte => return Err(RespError::UnknownType { byte, offset: pos }),
    };
    Ok(Some((reply, next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Reply>, RespError> {
        let mut d = RespDecoder::default();
        d.push(input);
        let mut out = Vec::new();
        while let Some(r) = d.poll_reply()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&["SET", "k", "v a"], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv a\r\n");
    }

    #[test]
    fn every_reply_kind_decodes() {
        let input = b"+OK\r\n-ERR no\r\n:-42\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n:1\r\n$0\r\n\r\n";
        let replies = decode_all(input).unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Simple(Bytes::from_static(b"OK")),
                Reply::Error(Bytes::from_static(b"ERR no")),
                Reply::Integer(-42),
                Reply::Bulk(Some(Bytes::from_static(b"abc"))),
                Reply::Bulk(None),
                Reply::Array(None),
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Bulk(Some(Bytes::new()))
                ])),
            ]
        );
    }

    #[test]
    fn a_reply_split_anywhere_waits_then_decodes() {
        let input = b"*2\r\n$5\r\nhello\r\n+OK\r\n";
        for cut in 0..input.len() {
            let mut d = RespDecoder::default();
            d.push(&input[..cut]);
            assert_eq!(d.poll_reply(), Ok(None), "cut at {cut}");
            d.push(&input[cut..]);
            assert!(d.poll_reply().unwrap().is_some(), "cut at {cut}");
            assert_eq!(d.poll_reply(), Ok(None));
        }
    }

    #[test]
    fn lengths_over_the_limits_are_refused_before_allocating() {
        let mut d = RespDecoder::default();
        d.push(b"$999999999999\r\n");
        assert!(matches!(
            d.poll_reply(),
            Err(RespError::TooLarge {
                what: "bulk string",
                ..
            })
        ));
        assert!(matches!(
            decode_all(b"*9999999\r\n"),
            Err(RespError::TooLarge { what: "array", .. })
        ));
        let deep = b"*1\r\n".repeat(9);
        assert!(matches!(
            decode_all(&deep),
            Err(RespError::TooLarge {
                what: "nesting",
                ..
            })
        ));
        let long = vec![b'a'; 70_000];
        assert!(matches!(
            decode_all(&[b"+", &long[..]].concat()),
            Err(RespError::TooLarge { what: "line", .. })
        ));
    }

    #[test]
    fn invalid_input_names_the_field_and_offset() {
        assert_eq!(
            decode_all(b"+OK\r\n?x\r\n"),
            Err(RespError::UnknownType {
                byte: b'?',
                offset: 0
            })
        );
        assert!(matches!(
            decode_all(b":12a\r\n"),
            Err(RespError::BadNumber { .. })
        ));
        assert!(matches!(
            decode_all(b":99999999999999999999\r\n"),
            Err(RespError::BadNumber { .. })
        ));
        assert!(matches!(
            decode_all(b"$-2\r\n"),
            Err(RespError::BadNumber { .. })
        ));
        assert_eq!(
            decode_all(b"$1\r\nab\r\n"),
            Err(RespError::MissingCrlf { offset: 5 })
        );
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
        let line = "[a-zA-Z0-9 _:.-]{0,30}".prop_map(Bytes::from);
        let leaf = prop_oneof![
            line.clone().prop_map(Reply::Simple),
            line.prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Integer),
            proptest::option::of(bytes).prop_map(Reply::Bulk),
            Just(Reply::Array(None)),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(|v| Reply::Array(Some(v)))
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_gives_back_the_values(
            values in proptest::collection::vec(reply(), 1..5),
            chunk in 1usize..17,
        ) {
            let mut wire = BytesMut::new();
            for v in &values {
                v.encode(&mut wire);
            }
            let mut d = RespDecoder::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.poll_reply().unwrap() {
                    got.push(r);
                }
            }
            prop_assert_eq!(got, values);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn commands_decode_as_arrays_of_bulk_strings(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
        ) {
            let mut wire = BytesMut::new();
            encode_command(&args, &mut wire);
            let got = decode_all(&wire).unwrap();
            let want = Reply::Array(Some(
                args.iter().map(|a| Reply::Bulk(Some(Bytes::copy_from_slice(a)))).collect(),
            ));
            prop_assert_eq!(got, vec![want]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_all(&input);
        }
    }
}
